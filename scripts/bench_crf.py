#!/usr/bin/python3
"""Dense CRF speed: pydensecrf against `build/harness crf` on the same input, same threads.

    scripts/bench_crf.py [--threads N] [--repeat R]
    PYDENSECRF_PATH=/path/to/pydensecrf scripts/bench_crf.py   # with the comparison

Two settings:
  simseg  288x288, 2 labels, 3 iterations, Gaussian (3, 3), bilateral (40, 13, 10)
  car     500x375, 21 labels, 10 iterations, Gaussian (1, 3), bilateral (67, 3, 4)
The image is the fixture voc/2007_000033.jpg resized (PIL, bilinear) to the size, or a
synthetic picture when the fixture is absent; probabilities are smooth random maps.

Timed on both sides: the unary (-log(p + 1e-8)), building both kernels' lattices and the
inference, not the file I/O; the harness reports its own time on stderr (`--repeat R`: R runs
in one process, as pydensecrf's R runs share one Python process). Each figure is the best
of R runs: wall clock, and for one thread also the process CPU time, which a busy machine
disturbs less. pydensecrf is single-threaded, so the ratios compare it with the harness on
one thread; the column harness-Nt (--threads N) shows the harness with N threads. Without
pydensecrf importable (the PYDENSECRF_PATH environment variable names a folder holding the
`pydensecrf` package) only the harness figures are printed.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.environ.get("HARNESS_FIXTURES") or os.path.join(ROOT, "..", "shared", "fixtures")
HARNESS = os.path.join(ROOT, os.environ.get("HX_BUILD", "build"), "harness")

SETTINGS = [
    ("simseg", 288, 288, 2, 3, (3, 3), (40, 13, 10)),
    ("car", 500, 375, 21, 10, (1, 3), (67, 3, 4)),
]


def load_dcrf():
    if os.environ.get("PYDENSECRF_PATH"):
        sys.path.insert(0, os.environ["PYDENSECRF_PATH"])
    try:
        import pydensecrf.densecrf as dcrf
        return dcrf
    except ImportError as e:
        print("pydensecrf not importable (%s): harness figures only" % e, file=sys.stderr)
        return None


def make_image(w, h, rng):
    path = os.path.join(FIXTURES, "voc", "2007_000033.jpg")
    if os.path.exists(path):
        return np.array(Image.open(path).convert("RGB").resize((w, h), Image.BILINEAR))
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, (x ^ y) & 255], -1).astype(np.float64)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_prob(L, w, h, rng):
    g = rng.normal(0, 2, (L, (h + 15) // 16, (w + 15) // 16))
    g = np.repeat(np.repeat(g, 16, 1), 16, 2)[:, :h, :w]
    p = np.exp(g - g.max(0))
    return (p / p.sum(0)).astype(np.float32)


def run_dcrf(dcrf, img, prob, iters, gauss, bil):
    L, h, w = prob.shape
    t0, c0 = time.perf_counter(), time.process_time()
    u = (-np.log(prob + 1e-8)).astype(np.float32).reshape(L, -1)  # the harness times its log too
    d = dcrf.DenseCRF2D(w, h, L)
    d.setUnaryEnergy(u)
    d.addPairwiseGaussian(sxy=gauss[0], compat=gauss[1])
    d.addPairwiseBilateral(sxy=bil[0], srgb=bil[1], rgbim=img, compat=bil[2])
    q = np.array(d.inference(iters), dtype=np.float32)
    return time.perf_counter() - t0, time.process_time() - c0, q.reshape(L, h, w)


def run_harness(tmp, iters, gauss, bil, threads, repeat):
    out = os.path.join(tmp, "q.h5")
    cmd = [HARNESS, "crf", "--image", os.path.join(tmp, "img.png"),
           "--prob", os.path.join(tmp, "prob.h5"), "--out", out,
           "--gaussian", "%g,%g" % gauss, "--bilateral", "%g,%g,%g" % bil,
           "--iters", str(iters), "--threads", str(threads), "--repeat", str(repeat)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit("harness failed: %s" % r.stderr.strip())
    m = re.search(r": ([0-9.]+) ms \(lattices .* cpu ([0-9.]+) ms\)", r.stderr)
    with h5py.File(out, "r") as f:
        q = f["q"][()]
    return float(m.group(1)) / 1e3, float(m.group(2)) / 1e3, q


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="extra harness row with N threads")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if not os.path.exists(HARNESS):
        sys.exit("%s missing: run make first" % HARNESS)
    dcrf = load_dcrf()
    rng = np.random.default_rng(0)
    print("%-7s %-18s %11s %11s %11s %11s %11s %8s %8s %9s" % (
        "setting", "size", "dcrf-wall", "dcrf-cpu", "hx-1t-wall", "hx-1t-cpu",
        "hx-%dt-wall" % args.threads, "x wall", "x cpu", "max|dQ|"))
    for name, w, h, L, iters, gauss, bil in SETTINGS:
        img = make_image(w, h, rng)
        prob = make_prob(L, w, h, rng)
        with tempfile.TemporaryDirectory() as tmp:
            Image.fromarray(img).save(os.path.join(tmp, "img.png"))
            with h5py.File(os.path.join(tmp, "prob.h5"), "w") as f:
                f["prob"] = prob
            h1, c1, q_h = run_harness(tmp, iters, gauss, bil, 1, args.repeat)
            hn = run_harness(tmp, iters, gauss, bil, args.threads, args.repeat)[0]
        size = "%dx%d L=%d it=%d" % (w, h, L, iters)
        if dcrf:
            runs = [run_dcrf(dcrf, img, prob, iters, gauss, bil) for _ in range(args.repeat)]
            tp = min(r[0] for r in runs)
            cp = min(r[1] for r in runs)
            dq = float(np.abs(runs[0][2] - q_h).max())
            print("%-7s %-18s %9.1fms %9.1fms %9.1fms %9.1fms %9.1fms %7.2fx %7.2fx %9.2g" % (
                name, size, 1e3 * tp, 1e3 * cp, 1e3 * h1, 1e3 * c1, 1e3 * hn, tp / h1, cp / c1,
                dq))
        else:
            print("%-7s %-18s %11s %11s %9.1fms %9.1fms %9.1fms %8s %8s %9s" % (
                name, size, "-", "-", 1e3 * h1, 1e3 * c1, 1e3 * hn, "-", "-", "-"))
        sys.stdout.flush()

if __name__ == "__main__":
    main()
