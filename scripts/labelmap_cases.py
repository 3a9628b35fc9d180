#!/usr/bin/python3
"""Reference decodes of label-map PNGs, for the labelmap tests.

usage: labelmap_cases.py OUTDIR [PNG ...]

For every PNG given, writes PIL's decode (np.array(Image.open(f)), palette indices for mode P)
as raw bytes. Also writes generated PNGs that exercise what real label maps rarely do: every
row filter type (0..4, encoded here with Python's zlib and a filter loop of its own), palette
bit depths 1/2/4/8 with odd widths (saved by PIL), and chunks split across several IDATs.
Each case is one line of OUTDIR/manifest.tsv: png path, raw path, width, height.
"""
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xffffffff)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filtered_png(arr, nidat=1):
    """8-bit greyscale PNG; row y uses filter y % 5."""
    h, w = arr.shape
    out = bytearray()
    prev = [0] * w
    for y in range(h):
        row = [int(v) for v in arr[y]]
        ft = y % 5
        out.append(ft)
        for x in range(w):
            a = row[x - 1] if x else 0
            b = prev[x]
            c = prev[x - 1] if x else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ft]
            out.append((row[x] - pred) & 255)
        prev = row
    z = zlib.compress(bytes(out), 9)
    parts = [z[i * len(z) // nidat:(i + 1) * len(z) // nidat] for i in range(nidat)]
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"tEXt", b"Comment\x00test case")
    for p in parts:
        png += chunk(b"IDAT", p)
    return png + chunk(b"IEND", b"")


def main():
    outdir = sys.argv[1]
    manifest = []

    def ref(png_path, tag):
        arr = np.array(Image.open(png_path))
        assert arr.dtype == np.uint8 and arr.ndim == 2, png_path
        raw = os.path.join(outdir, tag + ".raw")
        arr.tofile(raw)
        manifest.append((png_path, raw, arr.shape[1], arr.shape[0]))

    for i, f in enumerate(sys.argv[2:]):
        ref(f, "fixture%03d" % i)

    rng = np.random.default_rng(1234)
    # every filter type, smooth and noisy content, one and several IDAT chunks
    for k, (w, h, nidat) in enumerate([(1, 7, 1), (13, 11, 3), (64, 20, 2)]):
        smooth = (np.add.outer(np.arange(h) * 7, np.arange(w) * 3) % 256).astype(np.uint8)
        noisy = rng.integers(0, 256, size=(h, w), dtype=np.uint8)
        for name, arr in (("smooth", smooth), ("noisy", noisy)):
            p = os.path.join(outdir, "filters_%s_%d.png" % (name, k))
            with open(p, "wb") as f:
                f.write(filtered_png(arr, nidat))
            ref(p, "filters_%s_%d" % (name, k))
    # palette bit depths: PIL picks 1/2/4/8 bits from the palette size
    for ncol in (2, 4, 16, 256):
        for w in (1, 5, 17):
            arr = rng.integers(0, ncol, size=(9, w), dtype=np.uint8)
            im = Image.fromarray(arr, mode="L").convert("P")
            im.putdata(arr.flatten().tolist())
            im.putpalette(list(rng.integers(0, 256, size=3 * ncol).astype(int)))
            p = os.path.join(outdir, "palette_%d_%d.png" % (ncol, w))
            im.save(p)
            ref(p, "palette_%d_%d" % (ncol, w))

    with open(os.path.join(outdir, "manifest.tsv"), "w") as f:
        for png, raw, w, h in manifest:
            f.write("%s\t%s\t%d\t%d\n" % (png, raw, w, h))


if __name__ == "__main__":
    main()
