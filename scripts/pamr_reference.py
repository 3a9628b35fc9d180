#!/usr/bin/python3
"""Reference outputs for harness/pamr.c and harness/window.c.

Run from the repository root:  scripts/pamr_reference.py
Writes tests/data/pamr/ (deterministic: fixed seeds, float64 arithmetic).

PAMR (Araslanov & Roth 2020) as NACLIP applies it, written here from its definition:
  taps(p)  = I at the 3x3 grid of offsets {-d,0,d}^2 around p, for every dilation d
             (replicate padding: coordinates are clamped to the image), 9 x len(dils) values
  sd_c(p)  = unbiased standard deviation of channel c over all those taps together
  a_n(p)   = mean_c -|I_c(p) - I_c(p + o_n)| / (1e-8 + 0.1 sd_c(p))
             for the 8 non-centre offsets o_n of every dilation
  w_n(p)   = softmax_n a_n(p)
  m(p)    <- sum_n w_n(p) m(p + o_n)          (the centre is not a neighbour), iterated.
Sliding windows and the keep-ratio resize follow mmseg's slide inference and mmcv's
rescale_size, transcribed below.

Files (little-endian float32, row-major):
  <img>.img.f32 [C,H,W], <img>.masks.f32 [K,H,W]
  <img>_d<a>-<b>...aff.f32 [8*nd,H,W]     softmax weights, offsets in order
                                          dilation-major, then dy in (-d,0,d), dx in (-d,0,d)
  <case>.out.f32 [K,H,W]                  refined masks
  cases.txt   one line per case: case img C H W K iters nd d1 .. dnd
  windows.txt per geometry: "H W ch cw sh sw n", then n lines "y1 y2 x1 x2"
  resize.txt  per line: "h w long short oh ow"
"""
import os
import sys

import numpy as np
import torch

OUT = "tests/data/pamr"


def offsets(dils, centre):
    out = []
    for d in dils:
        for i in (-1, 0, 1):
            for j in (-1, 0, 1):
                if i == 0 and j == 0 and not centre:
                    continue
                out.append((i * d, j * d))
    return out


def shift(x, dy, dx):
    """x[..., clamp(y+dy), clamp(x+dx)]: the value of the neighbour with replicate padding."""
    h, w = x.shape[-2:]
    iy = (torch.arange(h) + dy).clamp(0, h - 1)
    ix = (torch.arange(w) + dx).clamp(0, w - 1)
    return x.index_select(-2, iy).index_select(-1, ix)


def pamr_affinity(img, dils):
    taps = torch.stack([shift(img, dy, dx) for dy, dx in offsets(dils, True)], 1)
    sd = taps.std(dim=1, unbiased=True)  # [C,H,W]
    nb = torch.stack([shift(img, dy, dx) for dy, dx in offsets(dils, False)], 1)  # [C,P,H,W]
    a = -(img.unsqueeze(1) - nb).abs() / (1e-8 + 0.1 * sd.unsqueeze(1))
    return torch.softmax(a.mean(0), 0)  # [P,H,W]


def pamr(img, masks, dils, iters):
    w = pamr_affinity(img, dils)
    for _ in range(iters):
        nb = torch.stack([shift(masks, dy, dx) for dy, dx in offsets(dils, False)], 1)
        masks = (nb * w.unsqueeze(0)).sum(1)
    return masks


def slide_windows(h, w, ch, cw, sh, sw):
    """mmseg slide inference window list; crop 0 = one window over the whole image."""
    if ch == 0 and cw == 0:
        return [(0, h, 0, w)]
    hg = max(h - ch + sh - 1, 0) // sh + 1
    wg = max(w - cw + sw - 1, 0) // sw + 1
    out = []
    for i in range(hg):
        for j in range(wg):
            y1, x1 = i * sh, j * sw
            y2, x2 = min(y1 + ch, h), min(x1 + cw, w)
            y1, x1 = max(y2 - ch, 0), max(x2 - cw, 0)
            out.append((y1, y2, x1, x2))
    return out


def rescale_size(h, w, scale):
    """mmcv rescale_size((w, h), scale) for a tuple scale: returns (new_h, new_w)."""
    long_edge, short_edge = max(scale), min(scale)
    f = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(h * float(f) + 0.5), int(w * float(f) + 0.5)


def save(name, t):
    np.ascontiguousarray(t.numpy(), dtype="<f4").tofile(os.path.join(OUT, name))


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(20200614)
    images = {}
    # a: random normalised-image-like values and logit-like masks
    images["a"] = (torch.randn(3, 23, 31, generator=g, dtype=torch.float64),
                   0.3 * torch.randn(4, 23, 31, generator=g, dtype=torch.float64))
    # b: a tiny image smaller than the dilations, quantised so flat patches (sd = 0) occur
    b = torch.randint(0, 3, (3, 5, 4), generator=g).to(torch.float64)
    b[:, :2, :2] = 1.0
    images["b"] = (b, torch.randn(3, 5, 4, generator=g, dtype=torch.float64))
    cases = [("a", (1, 2), 1), ("a", (1, 2), 10), ("a", (8, 16), 1), ("a", (8, 16), 10),
             ("b", (1, 8), 3), ("b", (2,), 2)]
    for name, (img, masks) in images.items():
        save(name + ".img.f32", img)
        save(name + ".masks.f32", masks)
    lines = []
    done = set()
    for name, dils, iters in cases:
        img, masks = images[name]
        tag = "d" + "-".join(map(str, dils))
        if (name, dils) not in done:
            save(f"{name}_{tag}.aff.f32", pamr_affinity(img, dils))
            done.add((name, dils))
        case = f"{name}_{tag}_it{iters}"
        save(case + ".out.f32", pamr(img, masks, dils, iters))
        c, h, w = img.shape
        lines.append(f"{case} {name} {c} {h} {w} {masks.shape[0]} {iters} {len(dils)} "
                     + " ".join(map(str, dils)))
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")

    geo = []
    for h, w in [(336, 448), (336, 500), (448, 336), (224, 224), (100, 300), (336, 2048),
                 (225, 337), (500, 336), (1, 1), (223, 1000), (560, 1120)]:
        for ch, cw, sh, sw in [(224, 224, 112, 112), (448, 448, 224, 224), (224, 224, 224, 224),
                               (224, 336, 100, 150), (0, 0, 0, 0)]:
            geo.append((h, w, ch, cw, sh, sw))
    for h, w in [(1, 1), (31, 47), (32, 48), (33, 49), (60, 100), (100, 61)]:
        for ch, cw, sh, sw in [(32, 48, 7, 13), (16, 16, 16, 16), (20, 10, 3, 10)]:
            geo.append((h, w, ch, cw, sh, sw))
    with open(os.path.join(OUT, "windows.txt"), "w") as f:
        for h, w, ch, cw, sh, sw in geo:
            wins = slide_windows(h, w, ch, cw, sh, sw)
            f.write(f"{h} {w} {ch} {cw} {sh} {sw} {len(wins)}\n")
            for y1, y2, x1, x2 in wins:
                f.write(f"{y1} {y2} {x1} {x2}\n")
    with open(os.path.join(OUT, "resize.txt"), "w") as f:
        sizes = [(375, 500), (500, 375), (333, 500), (1024, 2048), (480, 640), (512, 683),
                 (1, 1), (100, 10000), (10000, 100), (281, 500), (366, 500), (427, 640),
                 (3, 7), (335, 336), (337, 336)]
        for s in (336, 448, 512, 560, 224):
            for h, w in sizes:
                oh, ow = rescale_size(h, w, (2048, s))
                f.write(f"{h} {w} 2048 {s} {oh} {ow}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
