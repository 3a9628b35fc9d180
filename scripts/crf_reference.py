#!/usr/bin/python3
"""Reference outputs of pydensecrf for tests/test_crf.c (harness/crf.c).

Run from the repository root with pydensecrf importable, e.g.

    PYDENSECRF_PATH=/path/to/a/pydensecrf/checkout scripts/crf_reference.py

(the folder that holds the built `pydensecrf` package; pydensecrf is not a dependency of
the project and is not shipped with it). Writes tests/data/crf/, deterministically (fixed
seeds), with the exact calls SimSeg and CLIP-as-RNN make:

    d = dcrf.DenseCRF2D(W, H, L)
    d.setUnaryEnergy(U.reshape(L, -1))                 # float32, C-contiguous
    d.addPairwiseGaussian(sxy=gs, compat=gc)           # if the case has a Gaussian kernel
    d.addPairwiseBilateral(sxy=bs, srgb=br, rgbim=img, compat=bc)   # then the bilateral
    Q = np.array(d.inference(iters)).reshape(L, H, W)

Files (little-endian, C order):
  <img>.u8           uint8 [H, W, 3] RGB image
  <case>.unary.f32   float32 [L, H, W] unary energy U
  <case>.prob.f32    float32 [L, H, W] probabilities, for the cases whose U is
                     -np.log(p + 1e-8) in float32 (SimSeg's unary; the C side recomputes it)
  <case>.q.f32       float32 [L, H, W] Q returned by pydensecrf
  cases.txt          one case per line, see its header

The real-image case crops the fixture voc/2007_000033.jpg as stb_image decodes it (libstb
through ctypes, the decoder the C loader links) and stores only the probabilities, the output
and the sum of the crop's bytes (the C test checks it, so a decoder change is reported as
such rather than as a CRF mismatch).
"""
import ctypes
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "crf")
FIXTURES = os.environ.get("HARNESS_FIXTURES") or os.path.join(ROOT, "..", "shared", "fixtures")

if os.environ.get("PYDENSECRF_PATH"):
    sys.path.insert(0, os.environ["PYDENSECRF_PATH"])
import pydensecrf.densecrf as dcrf  # noqa: E402

SIMSEG = ((3, 3), (40, 13, 10))
CAR = ((1, 3), (67, 3, 4))
MID = ((2, 3), (5, 10, 5))


def stb_decode(path):
    """RGB pixels of `path` as stb_image decodes them (req_comp = 3)."""
    lib = ctypes.CDLL("libstb.so.0")
    lib.stbi_load.restype = ctypes.POINTER(ctypes.c_ubyte)
    lib.stbi_load.argtypes = [ctypes.c_char_p] + [ctypes.POINTER(ctypes.c_int)] * 3 + [ctypes.c_int]
    w, h, n = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    p = lib.stbi_load(path.encode(), ctypes.byref(w), ctypes.byref(h), ctypes.byref(n), 3)
    if not p:
        raise RuntimeError("stb cannot decode " + path)
    a = np.ctypeslib.as_array(p, shape=(h.value, w.value, 3)).copy()
    lib.stbi_image_free.argtypes = [ctypes.c_void_p]
    lib.stbi_image_free(ctypes.cast(p, ctypes.c_void_p))
    return a


def crf(img, unary, gauss, bil, iters):
    L, H, W = unary.shape
    d = dcrf.DenseCRF2D(W, H, L)
    d.setUnaryEnergy(np.ascontiguousarray(unary.reshape(L, -1), dtype=np.float32))
    if gauss:
        d.addPairwiseGaussian(sxy=gauss[0], compat=gauss[1])
    if bil:
        d.addPairwiseBilateral(sxy=bil[0], srgb=bil[1], rgbim=np.ascontiguousarray(img),
                               compat=bil[2])
    return np.array(d.inference(iters), dtype=np.float32).reshape(L, H, W)


def make_image(rng, h, w):
    """A few flat regions with soft edges and noise, so that the bilateral kernel matters."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for _ in range(4):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, max(h, w) / 2)
        col = rng.uniform(0, 255, 3)
        m = 1 / (1 + np.exp(((y - cy) ** 2 + (x - cx) ** 2) ** 0.5 - r))
        img = img * (1 - m[..., None]) + col * m[..., None]
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_prob(rng, L, h, w, sharp):
    logits = rng.normal(0, sharp, (L, h, w))
    p = np.exp(logits - logits.max(0))
    return (p / p.sum(0)).astype(np.float32)


def unary_of(p):
    return (-np.log(p + 1e-8)).astype(np.float32)  # SimSeg: float32 arithmetic throughout


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    # name: (W, H); W*H % 4 is 0, 3, 1, 2 in this order (the lattice pads to a multiple of 4)
    sizes = {"a": (24, 17), "b": (23, 17), "c": (25, 13), "d": (22, 13)}
    images = {k: make_image(rng, h, w) for k, (w, h) in sizes.items()}
    for k, im in images.items():
        im.tofile(os.path.join(OUT, k + ".u8"))

    # (case, image, labels, (gaussian, bilateral), iters, unary kind)
    specs = [
        ("a_l2_simseg_it1", "a", 2, SIMSEG, 1, "prob"),
        ("a_l2_simseg_it3", "a", 2, SIMSEG, 3, "prob"),
        ("a_l2_simseg_it5", "a", 2, SIMSEG, 5, "prob"),
        ("a_l2_mid_it0", "a", 2, MID, 0, "prob"),
        ("a_l5_simseg_it3", "a", 5, SIMSEG, 3, "energy"),
        ("a_l5_car_it5", "a", 5, CAR, 5, "energy"),
        ("a_l5_mid_it1", "a", 5, MID, 1, "energy"),
        ("b_l2_mid_it3", "b", 2, MID, 3, "prob"),
        ("b_l5_mid_it1", "b", 5, MID, 1, "energy"),
        ("b_l5_mid_it5", "b", 5, MID, 5, "energy"),
        ("b_l5_simseg_it3", "b", 5, SIMSEG, 3, "prob"),
        ("c_l9_gauss_it3", "c", 9, (MID[0], None), 3, "energy"),
        ("c_l3_bilat_it3", "c", 3, (None, MID[1]), 3, "energy"),
        ("c_l2_bilat_it5", "c", 2, (None, (3, 20, 8)), 5, "prob"),
        ("c_l12_mid_it3", "c", 12, MID, 3, "energy"),
        ("d_l21_car_it10", "d", 21, CAR, 10, "prob"),
        ("d_l1_simseg_it2", "d", 1, SIMSEG, 2, "energy"),
        ("d_l4_mid_it3", "d", 4, MID, 3, "energy"),
        ("d_l17_mid_it3", "d", 17, MID, 3, "energy"),
        # keys too wide to pack into 64 bits, and keys beyond the int16 range (they wrap)
        ("a_l3_widekeys_it3", "a", 3, ((0.05, 3), (0.01, 0.1, 5)), 3, "energy"),
        ("b_l2_wrapkeys_it2", "b", 2, ((0.0004, 3), None), 2, "energy"),
    ]
    lines = [
        "# case image W H labels gsxy gcompat bsxy bsrgb bcompat iters unary",
        "# '-' for a kernel the case does not add; unary 'energy' (case.unary.f32) or 'prob'",
        "# (case.prob.f32, U = -log(p + 1e-8) in float32; case.unary.f32 holds numpy's U)",
    ]
    for name, imk, L, (g, b), iters, kind in specs:
        w, h = sizes[imk]
        if kind == "prob":
            p = make_prob(rng, L, h, w, 1.5)
            p.tofile(os.path.join(OUT, name + ".prob.f32"))
            u = unary_of(p)
        else:
            u = rng.uniform(0, 4, (L, h, w)).astype(np.float32)
        u.tofile(os.path.join(OUT, name + ".unary.f32"))
        q = crf(images[imk], u, g, b, iters)
        q.tofile(os.path.join(OUT, name + ".q.f32"))
        gs = "%g %g" % g if g else "- -"
        bs = "%g %g %g" % b if b else "- - -"
        lines.append("%s %s %d %d %d %s %s %d %s" % (name, imk, w, h, L, gs, bs, iters, kind))
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")

    # SimSeg's settings on a 64x48 crop of a real image, binary prob from a soft blob
    path = os.path.join(FIXTURES, "voc", "2007_000033.jpg")
    if os.path.exists(path):
        x0, y0, w, h = 180, 120, 64, 48
        crop = np.ascontiguousarray(stb_decode(path)[y0:y0 + h, x0:x0 + w])
        yy, xx = np.mgrid[0:h, 0:w]
        fg = 1 / (1 + np.exp(((yy - 20) ** 2 + (xx - 30) ** 2) ** 0.5 / 4 - 4))
        fg = np.clip(fg + rng.normal(0, 0.15, fg.shape), 0, 1)
        p = np.stack([1 - fg, fg]).astype(np.float32)
        p.tofile(os.path.join(OUT, "voc33.prob.f32"))
        q = crf(crop, unary_of(p), SIMSEG[0], SIMSEG[1], 3)
        q.tofile(os.path.join(OUT, "voc33.q.f32"))
        with open(os.path.join(OUT, "voc33.txt"), "w") as f:
            f.write("# x0 y0 W H byte_sum of the crop of voc/2007_000033.jpg (stb_image)\n")
            f.write("%d %d %d %d %d\n" % (x0, y0, w, h, int(crop.astype(np.int64).sum())))
    else:
        print("fixture %s absent: real-image case not written" % path, file=sys.stderr)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
