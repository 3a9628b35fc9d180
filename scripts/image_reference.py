#!/usr/bin/python3
"""Reference data for tests/test_image.c, from the libraries whose behaviour harness/image.c
reproduces: PyTorch (F.interpolate), Pillow (Image.resize, image decoding) and OpenCV
(cv2.resize). Regenerate everything with

    scripts/image_reference.py            # writes tests/data/image/
    scripts/image_reference.py --jpeg-diff  # only prints stb vs PIL JPEG decoding differences

Files written to tests/data/image/:
  *.arr        one array: magic b"HXARR1\\0\\0", u32 dtype (1 = uint8, 2 = float32), u32 ndim,
               ndim x u32 dims, then the data in C order, all little-endian.
  *.png        small images for the decoder tests (one per PNG colour type) and expected
               resize outputs of the real fixture image.
  *.jpg        small JPEGs (RGB and grey) written by Pillow, with PIL's decoding as .arr.
  cases.txt    one test case per line, whitespace separated (see the header lines it starts
               with); the C suite runs every line.

Random inputs come from a fixed seed, so a rerun writes identical files. The real fixture
image (voc/2007_000033.jpg) is decoded with stb_image itself (libstb through ctypes, the same
library the C loader links), so that Pillow is fed exactly the pixels the C code resizes.
"""
import argparse
import ctypes
import os
import struct
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "image")
FIXTURES = os.environ.get("HARNESS_FIXTURES") or os.path.join(ROOT, "..", "shared", "fixtures")


def write_arr(name, a):
    a = np.ascontiguousarray(a)
    code = {np.dtype(np.uint8): 1, np.dtype(np.float32): 2}[a.dtype]
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(b"HXARR1\0\0")
        f.write(struct.pack("<II", code, a.ndim))
        f.write(struct.pack("<%dI" % a.ndim, *a.shape))
        f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())
    return name


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


def synth_image(w, h):
    """Triangle waves with a curved term: smooth areas, sharp ridges, no stored pixels.
    tests/test_image.c computes the same integers."""
    yy, xx = np.mgrid[0:h, 0:w]
    chans = [np.abs(((xx * (c + 1) + 2 * yy + (xx * yy) // 300) % 512) - 256).clip(0, 255)
             for c in range(3)]
    return np.stack(chans, -1).astype(np.uint8)


def fixture_jpegs():
    out = []
    for sub in ("voc", "cocostuff/images", "ade20k/images", "demo_images"):
        d = os.path.join(FIXTURES, sub)
        if os.path.isdir(d):
            out += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".jpg")]
    return out


def jpeg_diff():
    files = fixture_jpegs()
    if not files:
        print("no fixture JPEGs under", FIXTURES)
        return
    tot_px = tot_abs = 0
    worst = 0
    hist = np.zeros(256, np.int64)
    for p in files:
        a = stb_decode(p).astype(np.int16)
        b = np.asarray(Image.open(p).convert("RGB")).astype(np.int16)
        d = np.abs(a - b)
        hist += np.bincount(d.ravel(), minlength=256)
        tot_abs += int(d.sum())
        tot_px += d.size
        worst = max(worst, int(d.max()))
        print("%-60s max %2d mean %.4f  differing %.2f%%" %
              (os.path.relpath(p, FIXTURES), d.max(), d.mean(), 100.0 * (d > 0).mean()))
    print("all %d files: max %d, mean |diff| %.4f per channel value, %.2f%% of values differ"
          % (len(files), worst, tot_abs / tot_px, 100.0 * (1 - hist[0] / tot_px)))
    print("histogram of |diff|:", {i: int(c) for i, c in enumerate(hist) if c})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jpeg-diff", action="store_true", help="only print stb vs PIL JPEG stats")
    args = ap.parse_args()
    if args.jpeg_diff:
        jpeg_diff()
        return
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    rng = np.random.default_rng(20240611)
    lines = [
        "# torch MODE AC C H W OH OW input.arr expected.arr   (planar float, rtol 1e-5)",
        "# pil FILTER C W H OW OH input.arr expected.arr      (interleaved uint8, exact)",
        "# cv MODE C W H OW OH input.arr expected.arr         (interleaved uint8, exact)",
        "# nnidx LIB W H OW OH xidx.arr yidx.arr              (source index per output column/row)",
        "# fixture PATH CRC32 FILTER OW OH expected.png        (decoded fixture, then PIL resize)",
        "# load FILE expected.arr MAXDIFF MEANDIFF            (decoder against PIL convert('RGB'))",
        "# synth W H FILTER OW OH expected.png                (PIL resize of synth_image(), RGB)",
    ]

    # ---- PyTorch F.interpolate on [1, C, H, W] float32 ----
    torch_sizes = [((7, 5), (3, 11)), ((4, 4), (18, 18)), ((14, 14), (18, 18)),
                   ((37, 29), (12, 40)), ((5, 7), (5, 7)), ((40, 30), (9, 7)),
                   ((1, 1), (3, 4)), ((6, 9), (1, 1)), ((3, 8), (16, 5))]
    for (h, w), (oh, ow) in torch_sizes:
        c = 2
        x = rng.standard_normal((c, h, w)).astype(np.float32)
        inp = write_arr("t_in_%dx%d_%dx%d.arr" % (h, w, oh, ow), x)
        t = torch.from_numpy(x)[None]
        for mode in ("bilinear", "bicubic"):
            for ac in (0, 1):
                y = F.interpolate(t, size=(oh, ow), mode=mode, align_corners=bool(ac))[0]
                exp = write_arr("t_%s%d_%dx%d_%dx%d.arr" % (mode, ac, h, w, oh, ow), y.numpy())
                lines.append("torch %s %d %d %d %d %d %d %s %s" % (mode, ac, c, h, w, oh, ow, inp, exp))
        y = F.interpolate(t, size=(oh, ow), mode="nearest")[0]
        exp = write_arr("t_nearest_%dx%d_%dx%d.arr" % (h, w, oh, ow), y.numpy())
        lines.append("torch nearest 0 %d %d %d %d %d %s %s" % (c, h, w, oh, ow, inp, exp))

    # ---- Pillow Image.resize, uint8 ----
    pil_sizes = [((37, 29), (12, 40)), ((7, 5), (3, 11)), ((40, 30), (40, 17)),
                 ((40, 30), (13, 30)), ((16, 16), (45, 45)), ((97, 61), (10, 7)),
                 ((5, 3), (1, 1)), ((1, 1), (3, 2)), ((41, 31), (97, 71)),
                 ((33, 50), (33, 50))]
    modes = {1: "L", 3: "RGB", 4: "RGBX"}
    for c in (1, 3, 4):
        for (w, h), (ow, oh) in pil_sizes:
            x = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
            if (w, h) == (41, 31):  # a smooth image as well: photo-like content
                yy, xx = np.mgrid[0:h, 0:w]
                x = ((np.sin(xx / 5.0 + c) + np.cos(yy / 7.0)) * 60 + 128
                     + rng.integers(-20, 21, (h, w))).clip(0, 255).astype(np.uint8)
                x = np.repeat(x[:, :, None], c, axis=2)
                x[..., 0] = 255 - x[..., 0]
            inp = write_arr("p_in_c%d_%dx%d_%dx%d.arr" % (c, w, h, ow, oh), x)
            im = Image.fromarray(x[..., 0] if c == 1 else x, modes[c])
            for name, flt in (("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)):
                y = np.asarray(im.resize((ow, oh), flt)).reshape(oh, ow, c)
                exp = write_arr("p_%s_c%d_%dx%d_%dx%d.arr" % (name, c, w, h, ow, oh), y)
                lines.append("pil %s %d %d %d %d %d %s %s" % (name, c, w, h, ow, oh, inp, exp))

    # ---- OpenCV cv2.resize, uint8 ----
    import cv2
    cv_sizes = [((7, 5), (3, 11)), ((37, 29), (12, 40)), ((40, 30), (20, 15)),
                ((16, 16), (45, 45)), ((97, 61), (10, 7)), ((5, 3), (1, 1)), ((1, 1), (4, 3)),
                ((10, 10), (10, 4)), ((13, 9), (26, 18)), ((2, 7), (9, 2)), ((50, 40), (31, 40))]
    for c in (1, 3, 4):
        for (w, h), (ow, oh) in cv_sizes:
            x = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
            inp = write_arr("c_in_c%d_%dx%d_%dx%d.arr" % (c, w, h, ow, oh), x)
            src = x[..., 0] if c == 1 else x
            for name, flt in (("linear", cv2.INTER_LINEAR), ("nearest", cv2.INTER_NEAREST)):
                y = cv2.resize(src, (ow, oh), interpolation=flt).reshape(oh, ow, c)
                exp = write_arr("c_%s_c%d_%dx%d_%dx%d.arr" % (name, c, w, h, ow, oh), y)
                lines.append("cv %s %d %d %d %d %d %s %s" % (name, c, w, h, ow, oh, inp, exp))

    # ---- nearest source indices at realistic sizes (masks 288 -> label size, 18 -> 288) ----
    def cv_nn_index(w, h, ow, oh):
        # code each source pixel's coordinates into three channels, resize, decode
        yy, xx = np.mgrid[0:h, 0:w]
        code = np.stack([xx & 255, yy & 255, (xx >> 8) | ((yy >> 8) << 4)], -1).astype(np.uint8)
        y = cv2.resize(code, (ow, oh), interpolation=cv2.INTER_NEAREST).astype(np.int64)
        sx = y[..., 0] | ((y[..., 2] & 15) << 8)
        sy = y[..., 1] | ((y[..., 2] >> 4) << 8)
        assert (sx == sx[:1]).all() and (sy == sy[:, :1]).all()
        return sx[0], sy[:, 0]

    def torch_nn_index(w, h, ow, oh):
        code = torch.arange(h * w, dtype=torch.float64).reshape(1, 1, h, w)
        y = F.interpolate(code, size=(oh, ow), mode="nearest")[0, 0].numpy().astype(np.int64)
        sx, sy = y % w, y // w
        assert (sx == sx[:1]).all() and (sy == sy[:, :1]).all()
        return sx[0], sy[:, 0]

    nn_sizes = [("cv", 288, 288, 500, 375), ("cv", 288, 288, 500, 333), ("cv", 288, 288, 353, 500),
                ("cv", 288, 288, 640, 427), ("cv", 288, 288, 2048, 1024), ("cv", 288, 288, 137, 91),
                ("torch", 18, 18, 288, 288), ("torch", 14, 14, 18, 18), ("torch", 29, 37, 500, 375),
                ("torch", 500, 375, 123, 77)]
    for lib, w, h, ow, oh in nn_sizes:
        sx, sy = (cv_nn_index if lib == "cv" else torch_nn_index)(w, h, ow, oh)
        fx = write_arr("n_%s_%dx%d_%dx%d_x.arr" % (lib, w, h, ow, oh), sx.astype(np.float32))
        fy = write_arr("n_%s_%dx%d_%dx%d_y.arr" % (lib, w, h, ow, oh), sy.astype(np.float32))
        lines.append("nnidx %s %d %d %d %d %s %s" % (lib, w, h, ow, oh, fx, fy))

    # ---- a 500x375 image from a formula (the VOC/SimSeg size), resized to 288x288 ----
    w, h = 500, 375
    im = Image.fromarray(synth_image(w, h), "RGB")
    for name, flt in (("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)):
        out = "s_%s_%dx%d_288x288.png" % (name, w, h)
        im.resize((288, 288), flt).save(os.path.join(OUT, out), optimize=True)
        lines.append("synth %d %d %s 288 288 %s" % (w, h, name, out))

    # ---- the real fixture image, decoded by stb, resized by Pillow ----
    fx_rel = "voc/2007_000033.jpg"
    fx_path = os.path.join(FIXTURES, fx_rel)
    if os.path.exists(fx_path):
        px = stb_decode(fx_path)
        crc = zlib.crc32(px.tobytes())
        im = Image.fromarray(px, "RGB")
        for name, flt, (ow, oh) in (("bilinear", Image.BILINEAR, (288, 288)),
                                    ("bicubic", Image.BICUBIC, (224, 168))):
            out = "f_voc33_%s_%dx%d.png" % (name, ow, oh)
            im.resize((ow, oh), flt).save(os.path.join(OUT, out), optimize=True)
            lines.append("fixture %s %08x %s %d %d %s" % (fx_rel, crc, name, ow, oh, out))
    else:
        print("warning: %s absent, fixture cases not written" % fx_path, file=sys.stderr)

    # ---- decoder inputs: one small file per PNG colour type, and JPEGs ----
    h, w = 13, 17
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (h, w), dtype=np.uint8)
    alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
    pal = Image.fromarray(rgb, "RGB").quantize(colors=37)
    images = {
        "l_grey.png": Image.fromarray(grey, "L"),
        "l_grey_alpha.png": Image.fromarray(np.stack([grey, alpha], -1), "LA"),
        "l_rgb.png": Image.fromarray(rgb, "RGB"),
        "l_rgba.png": Image.fromarray(np.concatenate([rgb, alpha[..., None]], -1), "RGBA"),
        "l_palette.png": pal,
        "l_palette_trns.png": pal,  # saved with a transparent palette entry (tRNS)
        "l_bilevel.png": Image.fromarray(grey > 127).convert("1"),  # 1-bit grey
    }
    for name, im in images.items():
        extra = {"transparency": 3} if name == "l_palette_trns.png" else {}
        im.save(os.path.join(OUT, name), **extra)
        ref = np.asarray(Image.open(os.path.join(OUT, name)).convert("RGB"))
        lines.append("load %s %s 0 0" % (name, write_arr(name.replace(".", "_") + ".arr", ref)))
    # smooth content so the JPEGs look like photos, not noise
    yy, xx = np.mgrid[0:48, 0:64]
    base = np.stack([(np.sin(xx / 6.0) * 90 + 128), (np.cos(yy / 5.0) * 90 + 128),
                     ((xx + yy) * 2.0) % 256], -1).clip(0, 255).astype(np.uint8)
    for name, im in (("l_rgb.jpg", Image.fromarray(base, "RGB")),
                     ("l_grey.jpg", Image.fromarray(base[..., 0], "L"))):
        im.save(os.path.join(OUT, name), quality=90)
        ref = np.asarray(Image.open(os.path.join(OUT, name)).convert("RGB"))
        got = stb_decode(os.path.join(OUT, name)).astype(np.int16)
        d = np.abs(got - ref.astype(np.int16))
        # bounds for the test: the measured difference of stb against PIL on this file
        lines.append("load %s %s %d %.4f" % (name, write_arr(name.replace(".", "_") + ".arr", ref),
                                             int(d.max()), float(d.mean())))

    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("wrote %d cases, %d files, %d bytes to %s" % (
        sum(1 for l in lines if not l.startswith("#")), len(os.listdir(OUT)), total, OUT))


if __name__ == "__main__":
    main()
