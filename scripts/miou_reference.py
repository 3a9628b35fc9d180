#!/usr/bin/python3
"""Reference scores for the eval tests, computed the way mmsegmentation's IoUMetric does.

usage: miou_reference.py GT_DIR PRED_DIR NUM_CLASSES IGNORE REDUCE_ZERO(0|1) [--make-preds]

Per image: reduce_zero_label on the ground truth if asked, drop pixels whose label is the
ignore index, torch.histc over 0..C-1 of the intersection, prediction and label; sums over
images; aAcc, IoU, Acc, and NaN-ignoring means, x100. With --make-preds, first writes
PRED_DIR/<name>.png for every ground truth: the label shifted by a few columns, with some
pixels set to random values (some beyond C), saved by PIL as 8-bit greyscale.
Prints JSON: aAcc, mIoU, mAcc, IoU, Acc (null for NaN), num_images.
"""
import json
import math
import os
import sys

import numpy as np
import torch
from PIL import Image


def load(path):
    return np.array(Image.open(path))  # palette PNGs give indices


def main():
    gt_dir, pred_dir, C, ignore, reduce = sys.argv[1:6]
    C, ignore, reduce = int(C), int(ignore), int(reduce)
    names = sorted(f for f in os.listdir(gt_dir) if f.endswith(".png"))
    if "--make-preds" in sys.argv:
        rng = np.random.default_rng(7)
        for n in names:
            g = load(os.path.join(gt_dir, n)).astype(np.int64)
            if reduce:
                g = np.where(g == 0, 255, g - 1)
                g = np.where(g == 254, 255, g)
            p = np.roll(g, 5, axis=1)
            p = np.where(p == 255, 0, p)
            noise = rng.random(p.shape) < 0.05
            p[noise] = rng.integers(0, C + 20, size=int(noise.sum()))
            Image.fromarray(p.astype(np.uint8), mode="L").save(os.path.join(pred_dir, n))
    tot = [torch.zeros(C, dtype=torch.float64) for _ in range(3)]
    for n in names:
        label = torch.from_numpy(load(os.path.join(gt_dir, n)).astype(np.int64))
        pred = torch.from_numpy(load(os.path.join(pred_dir, n)).astype(np.int64))
        if reduce:
            label[label == 0] = 255
            label = label - 1
            label[label == 254] = 255
        mask = label != ignore
        pred, label = pred[mask], label[mask]
        inter = pred[pred == label]
        for k, x in enumerate((inter, pred, label)):
            tot[k] += torch.histc(x.float(), bins=C, min=0, max=C - 1).double()
    I, P, L = tot
    iou = (I / (P + L - I)).numpy()
    acc = (I / L).numpy()
    out = {
        "num_images": len(names),
        "aAcc": float(I.sum() / L.sum()) * 100,
        "mIoU": float(np.nanmean(iou)) * 100,
        "mAcc": float(np.nanmean(acc)) * 100,
        "IoU": [None if math.isnan(v) else float(v) * 100 for v in iou],
        "Acc": [None if math.isnan(v) else float(v) * 100 for v in acc],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
