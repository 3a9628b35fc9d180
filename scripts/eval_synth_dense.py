#!/usr/bin/python3
"""Zero-shot dense segmentation of the synthetic world with a CLIP in the Hugging Face layout
(plain PyTorch, scripts/hxref.py): mIoU of the five dense variants (SPEC 1) with class-name
queries, and with the subclass ensembles `max` and `mean` (SPEC 4) over
datasets/subclasses/synth.json.

Per image: dense tokens of the variant -> L2-normalise -> cosine with the L2-normalised
queries (each the normalised mean of the normalised template embeddings) -> bilinear
upsample (align_corners=False) to the label size -> argmax. Class 0 is the literal
"background" query. IoU per class from one confusion matrix over all scenes (mmseg style:
classes absent from both prediction and truth are left out of the mean).

The validation scenes come from `build/harness synth --split val` (must be built).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hxref  # noqa: E402
from train_synth_clip import generate, load_split  # noqa: E402

ROOT = os.path.dirname(HERE)
TEMPLATES = ["a photo of a {}.", "a photo of the {}.", "a {}.", "a photo of a small {}.",
             "a photo of a large {}."]


def read_merges(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#version") or not line.strip():
                continue
            a, b = line.rstrip("\n").split(" ")
            out.append((a, b))
    return out


def load_model(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    w = hxref.read_safetensors(os.path.join(d, "model.safetensors"))
    w = {k: (v.float() if v.is_floating_point() else v) for k, v in w.items()}
    tok = hxref.Tokenizer(read_merges(os.path.join(d, "merges.txt")))
    return cfg, w, tok


def embed_texts(cfg, w, tok, texts):
    t = hxref.pad_ids([tok.encode(t) for t in texts])
    with torch.no_grad():
        return F.normalize(hxref.text_forward(w, cfg, t)["embeds"], dim=-1)


def query(cfg, w, tok, name):
    e = embed_texts(cfg, w, tok, [t.format(name) for t in TEMPLATES])
    return F.normalize(e.mean(0), dim=-1)


def confusion(pred, gt, n):
    return np.bincount(gt.reshape(-1) * n + pred.reshape(-1), minlength=n * n).reshape(n, n)


def iou(conf):
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - np.diag(conf)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = inter / union
    return v  # NaN where the class is absent from both


def main():
    global TEMPLATES
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "synth-clip"))
    ap.add_argument("--harness", default=os.path.join(ROOT, "build", "harness"))
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--templates", default="|".join(TEMPLATES),
                    help="prompt templates separated by '|' (default: %(default)s)")
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("--parity", help="write reference outputs for the C engine here: dense "
                    "tokens of every variant and the pooled embedding of val scene 0, token ids "
                    "and embeddings of the class-name prompts")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    TEMPLATES = args.templates.split("|")
    t0 = time.time()

    names = [l.strip() for l in open(os.path.join(ROOT, "datasets", "classnames", "synth.txt"))
             if l.strip()]
    subs = json.load(open(os.path.join(ROOT, "datasets", "subclasses", "synth.json")))
    n = len(names)
    cfg, w, tok = load_model(args.model)

    tmp = tempfile.mkdtemp(prefix="synth-val-")
    try:
        generate(args.harness, tmp, "val", args.count, args.world_seed, args.size)
        _, imgs, gts = load_split(tmp)
        gts = gts.astype(np.int64)
    finally:
        shutil.rmtree(tmp)

    # query banks: class names; subclass members per class (background: its name)
    q_names = torch.stack([query(cfg, w, tok, nm) for nm in names])            # [n, E]
    members = [[nm] if not subs.get(nm) else subs[nm] for nm in names]
    q_sub = [torch.stack([query(cfg, w, tok, m) for m in ms]) for ms in members]

    pix = torch.stack([hxref.to_pixels(im) for im in imgs])
    H, W = gts.shape[1:]
    confs = {}
    with torch.no_grad():
        for b in range(0, len(pix), 50):
            out = hxref.vision_forward(w, cfg, pix[b:b + 50], variants=hxref.VARIANTS)
            P = cfg["vision_config"]["patch_size"]
            gh, gw = pix.shape[2] // P, pix.shape[3] // P
            for v in hxref.VARIANTS:
                tokens = F.normalize(out["dense." + v], dim=-1)                   # [B, g, E]

                def maps(q):
                    m = (tokens @ q.t()).transpose(1, 2).reshape(-1, q.shape[0], gh, gw)
                    return F.interpolate(m, size=(H, W), mode="bilinear", align_corners=False)

                logits = {"super": maps(q_names)}
                allsub = maps(torch.cat(q_sub))
                per_max, per_mean, o = [], [], 0
                for q in q_sub:
                    part = allsub[:, o:o + q.shape[0]]
                    o += q.shape[0]
                    per_max.append(part.max(1).values)
                    per_mean.append(part.mean(1))
                logits["max"] = torch.stack(per_max, 1)
                logits["mean"] = torch.stack(per_mean, 1)
                for rule, lg in logits.items():
                    pred = lg.argmax(1).numpy()
                    c = confusion(pred, gts[b:b + 50], n)
                    key = (v, rule)
                    confs[key] = confs.get(key, 0) + c

    if args.parity:
        with torch.no_grad():
            out = hxref.vision_forward(w, cfg, pix[:1], variants=hxref.VARIANTS)
            texts = [TEMPLATES[0].format(nm) for nm in names]
            idt = hxref.pad_ids([tok.encode(t) for t in texts])
            temb = hxref.text_forward(w, cfg, idt)["embeds"]
        tensors = [("image_embeds", out["image_embeds"][0])]
        tensors += [("dense." + v, out["dense." + v][0]) for v in hxref.VARIANTS]
        tensors += [("text.input_ids", idt), ("text.embeds", temb)]
        hxref.write_safetensors(args.parity, tensors,
                                {"scene": "val 0, world seed %d, %dx%d" % (args.world_seed, W, H),
                                 "texts": json.dumps(texts)})

    res = {}
    for (v, rule), c in confs.items():
        per = iou(c)
        res.setdefault(v, {})[rule] = {"miou": float(np.nanmean(per) * 100),
                                       "iou": {names[i]: (None if np.isnan(per[i]) else
                                                          float(per[i] * 100))
                                               for i in range(n)}}
    print("scenes %d (val, world seed %d, %dx%d), templates %d, %.0fs"
          % (len(imgs), args.world_seed, W, H, len(TEMPLATES), time.time() - t0))
    print("| variant | super (class names) | max (subclasses) | mean (subclasses) |")
    print("|---|---|---|---|")
    for v in hxref.VARIANTS:
        print("| %s | %.1f | %.1f | %.1f |" % (v, res[v]["super"]["miou"], res[v]["max"]["miou"],
                                                res[v]["mean"]["miou"]))
    print()
    print("per-class IoU, super: | variant | " + " | ".join(names) + " |")
    for v in hxref.VARIANTS:
        print("| %s | " % v + " | ".join("%.1f" % (res[v]["super"]["iou"][nm] or 0)
                                         for nm in names) + " |")
    if args.json:
        hxref.write_json(args.json, res, indent=1)


if __name__ == "__main__":
    main()
