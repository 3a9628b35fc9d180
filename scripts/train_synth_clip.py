#!/usr/bin/python3
"""Train a small CLIP (Hugging Face layout, scripts/hxref.py's model) on the synthetic world.

The training set comes from `build/harness synth` (which must be built). Each step mixes:
  - whole scenes with their full caption ("a photo of a small red striped circle and ..."),
  - crops around one object, captioned with that object only and a random subset of its
    colour and texture ("a photo of a red striped circle.", "a photo of a ring."),
  - crops of bare background ("a photo of the checkered background."),
so that patch tokens, not only the class token, learn local semantics. Crops are resampled to
the model's input size with bilinear grid sampling. Captions that are equal within a batch
are treated as the same target (soft labels), so short captions do not make false negatives.

Deterministic for a seed: torch.manual_seed, numpy RandomState, one process, fixed threads.
Writes OUT/config.json, model.safetensors (F16), vocab.json, merges.txt and train_log.txt.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hxref  # noqa: E402

ROOT = os.path.dirname(HERE)
BG_WORDS = {"noise": "noisy", "gradient": "gradient", "stripes": "striped",
            "checker": "checkered"}


def generate(harness, out, split, count, seed, size):
    if not os.access(harness, os.X_OK):
        sys.exit("%s is missing; run `make` first" % harness)
    cmd = [harness, "synth", "--out", out, "--split", split, "--count", str(count),
           "--seed", str(seed), "--size", str(size)]
    subprocess.run(cmd, check=True)


def load_split(d):
    rows = [json.loads(l) for l in open(os.path.join(d, "captions.jsonl"), encoding="utf-8")]
    imgs = np.stack([np.asarray(Image.open(os.path.join(d, "images", r["id"] + ".png"))
                               .convert("RGB")) for r in rows])
    labels = np.stack([np.asarray(Image.open(os.path.join(d, "labels", r["id"] + ".png")))
                       for r in rows])
    return rows, imgs, labels


def object_caption(o, rng, p_attr):
    words = []
    if rng.rand() < p_attr:
        words.append(o["colour"])
    if rng.rand() < p_attr:
        words.append(o["texture"])
    words.append(o["class"])
    return "a photo of a %s." % " ".join(words)


def make_batch(rows, imgs, labels, idx, rng, S, mix, context, p_attr):
    """-> (list of (image index, crop box x0,y0,x1,y1 in pixels, flip), captions)."""
    H = labels.shape[1]
    out, caps = [], []
    for i in idx:
        r = rows[i]
        u = rng.rand()
        flip = rng.rand() < 0.5
        if u < mix[0]:  # whole scene, full caption
            out.append((i, (0.0, 0.0, float(H), float(H)), flip))
            caps.append(r["caption"])
            continue
        if u < mix[0] + mix[1] and r["objects"]:  # one object
            o = r["objects"][rng.randint(len(r["objects"]))]
            x0, y0, x1, y1 = o["bbox"]
            cx = (x0 + x1) / 2 + rng.uniform(-0.15, 0.15) * (x1 - x0)
            cy = (y0 + y1) / 2 + rng.uniform(-0.15, 0.15) * (y1 - y0)
            side = max(x1 - x0, y1 - y0) * rng.uniform(*context)
            side = min(max(side, 12.0), float(H))
            bx0 = min(max(cx - side / 2, 0.0), H - side)
            by0 = min(max(cy - side / 2, 0.0), H - side)
            out.append((i, (bx0, by0, bx0 + side, by0 + side), flip))
            caps.append(object_caption(o, rng, p_attr))
            continue
        # background: a window with no object pixel, else the whole scene
        lab = labels[i]
        found = None
        for _ in range(8):
            side = rng.randint(10, 28)
            x0, y0 = rng.randint(0, H - side + 1), rng.randint(0, H - side + 1)
            if not lab[y0:y0 + side, x0:x0 + side].any():
                found = (float(x0), float(y0), float(x0 + side), float(y0 + side))
                break
        if found is None:
            out.append((i, (0.0, 0.0, float(H), float(H)), flip))
            caps.append(r["caption"])
        else:
            out.append((i, found, flip))
            caps.append("a photo of the background." if rng.rand() < 0.5 else
                        "a photo of the %s background." % BG_WORDS[r["background"]])
    return out, caps


def crop_pixels(imgs_t, spec, S):
    """imgs_t [N,3,H,W] float normalised; spec list of (i, box, flip) -> [B,3,S,S]."""
    H = imgs_t.shape[2]
    idx = torch.tensor([s[0] for s in spec])
    src = imgs_t[idx]
    theta = torch.zeros(len(spec), 2, 3)
    for b, (_, (x0, y0, x1, y1), flip) in enumerate(spec):
        # normalised coords, align_corners=False: pixel edge 0 -> -1, H -> 1
        sx, sy = (x1 - x0) / H, (y1 - y0) / H
        tx, ty = (x0 + x1) / H - 1.0, (y0 + y1) / H - 1.0
        theta[b, 0, 0] = -sx if flip else sx
        theta[b, 0, 2] = tx
        theta[b, 1, 1] = sy
        theta[b, 1, 2] = ty
    grid = F.affine_grid(theta, (len(spec), 3, S, S), align_corners=False)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)


def init_params(cfg, seed):
    w = hxref.init_weights(cfg, seed, emb_std=0.02, qk_gain=1.0)
    for k, v in w.items():
        if not v.is_floating_point():
            continue
        if k.endswith("layer_norm1.weight") or k.endswith("layer_norm2.weight") or \
                k.endswith("layrnorm.weight") or k.endswith("layernorm.weight") or \
                k.endswith("final_layer_norm.weight"):
            v.fill_(1.0)
        elif k.endswith(".bias"):
            v.zero_()
        elif k.endswith("fc2.weight") or k.endswith("out_proj.weight"):
            v.mul_(0.5)
    w["logit_scale"] = torch.tensor(math.log(1 / 0.07))
    return w


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "synth-clip"))
    ap.add_argument("--harness", default=os.path.join(ROOT, "build", "harness"))
    ap.add_argument("--train-count", type=int, default=20000)
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (on a shared 2-core machine one thread ran 2-4x faster "
                         "than two, which stalled in OpenMP barriers)")
    ap.add_argument("--mix", default="0.25,0.6,0.15",
                    help="fractions of whole scenes, object crops and background crops")
    ap.add_argument("--context", default="1.2,3.5",
                    help="object crop side as a range of multiples of the object's box")
    ap.add_argument("--p-attr", type=float, default=0.6,
                    help="probability that an object caption names the colour, and the texture")
    ap.add_argument("--vision", default="128,4,4,512",
                    help="vision hidden, layers, heads, intermediate")
    ap.add_argument("--text", default="128,4,4,512", help="text hidden, layers, heads, inter")
    ap.add_argument("--proj", type=int, default=128)
    ap.add_argument("--dtype", default="F16", choices=("F16", "F32"))
    ap.add_argument("--data", help="use this already generated training folder")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.RandomState(args.seed)
    S, P = 64, 8
    mix = [float(x) for x in args.mix.split(",")]
    context = [float(x) for x in args.context.split(",")]
    vd, vl, vh, vi = (int(x) for x in args.vision.split(","))
    td, tl, th, ti = (int(x) for x in args.text.split(","))
    t0 = time.time()

    tmp = None
    data = args.data
    if not data:
        tmp = tempfile.mkdtemp(prefix="synth-train-")
        data = tmp
        generate(args.harness, data, "train", args.train_count, args.world_seed, S)
    try:
        rows, imgs, labels = load_split(data)
    finally:
        if tmp:
            shutil.rmtree(tmp)
    N = len(rows)
    print("loaded %d scenes in %.1fs" % (N, time.time() - t0), flush=True)

    # tokenizer: BPE learnt from every caption form the trainer can produce
    corpus = [r["caption"] for r in rows]
    corpus += ["a photo of a %s %s %s." % (c, t, k) for c in
               ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
               for t in ("plain", "striped", "dotted", "checkered")
               for k in ("circle", "square", "triangle", "star", "ring")]
    corpus += ["a photo of the %s background." % b for b in BG_WORDS.values()]
    corpus += ["a photo of the background."] * 50
    merges = hxref.learn_merges(corpus, 1000)
    tok = hxref.Tokenizer(merges)
    vocab = len(tok.encoder)

    cfg = {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": args.proj,
        "logit_scale_init_value": 2.6592,
        "text_config": {"hidden_size": td, "intermediate_size": ti, "num_attention_heads": th,
                        "num_hidden_layers": tl, "vocab_size": vocab,
                        "max_position_embeddings": 77, "bos_token_id": tok.sot,
                        "eos_token_id": tok.eot},
        "vision_config": {"hidden_size": vd, "intermediate_size": vi,
                          "num_attention_heads": vh, "num_hidden_layers": vl,
                          "image_size": S, "patch_size": P},
    }
    w = init_params(cfg, args.seed)
    params = {k: v.requires_grad_(True) for k, v in w.items() if v.is_floating_point()}
    decay = [v for k, v in params.items() if v.dim() >= 2 and "embedding" not in k]
    no_decay = [v for k, v in params.items() if not (v.dim() >= 2 and "embedding" not in k)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)

    mean = torch.tensor(hxref.CLIP_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(hxref.CLIP_STD).reshape(1, 3, 1, 1)
    imgs_t = (torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    del imgs
    tok_cache = {}

    def encode(caps):
        ids = []
        for c in caps:
            if c not in tok_cache:
                tok_cache[c] = tok.encode(c)
            ids.append(tok_cache[c])
        return hxref.pad_ids(ids)

    log = []
    order = rng.permutation(N)
    pos = 0
    t1 = time.time()
    for step in range(args.steps):
        if pos + args.batch > N:
            order, pos = rng.permutation(N), 0
        idx = order[pos:pos + args.batch]
        pos += args.batch
        spec, caps = make_batch(rows, imgs_t, labels, idx, rng, S, mix, context, args.p_attr)
        pix = crop_pixels(imgs_t, spec, S)
        ids = encode(caps)
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * \
            0.5 * (1 + math.cos(math.pi * min(1.0, step / args.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        img = hxref.vision_forward(w, cfg, pix)["image_embeds"]
        txt = hxref.text_forward(w, cfg, ids)["embeds"]
        img = F.normalize(img, dim=-1)
        txt = F.normalize(txt, dim=-1)
        scale = w["logit_scale"].clamp(max=math.log(100.0)).exp()
        logits = scale * img @ txt.t()
        same = torch.tensor([[a == b for b in caps] for a in caps], dtype=torch.float32)
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (-(target * F.log_softmax(logits, 1)).sum(1).mean()
                      - (target * F.log_softmax(logits.t(), 1)).sum(1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        with torch.no_grad():
            w["logit_scale"].clamp_(0, math.log(100.0))
        log.append(loss.item())
        if step % 50 == 0 or step == args.steps - 1:
            avg = sum(log[-50:]) / len(log[-50:])
            el = time.time() - t1
            print("step %5d  loss %.4f  lr %.2e  scale %.1f  %.0fs (eta %.0fs)"
                  % (step, avg, lr, scale.item(), el, el / (step + 1) * (args.steps - step - 1)),
                  flush=True)

    os.makedirs(args.out, exist_ok=True)
    dt = torch.float16 if args.dtype == "F16" else torch.float32
    final = {k: v.detach().contiguous() for k, v in w.items()}
    final = hxref.weights_to(final, dt)
    final["logit_scale"] = final["logit_scale"].float()
    hxref.write_safetensors(os.path.join(args.out, "model.safetensors"), sorted(final.items()),
                            {"format": "pt", "trained_on": "synth world seed %d, %d scenes"
                             % (args.world_seed, N)})
    hxref.write_json(os.path.join(args.out, "config.json"), cfg, indent=2)
    hxref.write_tokenizer(args.out, merges)
    with open(os.path.join(args.out, "train_log.txt"), "w") as f:
        f.write("command: %s\n" % " ".join(
            ["scripts/train_synth_clip.py"] + [a for a in sys.argv[1:]]))
        f.write("arguments: %s\n" % json.dumps(vars(args), sort_keys=True))
        f.write("torch %s, %d threads, %.0f s training, %d scenes, vocab %d\n"
                % (torch.__version__, args.threads, time.time() - t1, N, vocab))
        f.write("step loss (mean over the previous 50 steps)\n")
        for s in range(0, len(log), 50):
            f.write("%d %.4f\n" % (s, sum(log[max(0, s - 49):s + 1]) / len(log[max(0, s - 49):s + 1])))
        f.write("%d %.4f\n" % (len(log) - 1, sum(log[-50:]) / len(log[-50:])))
    print("saved to %s in %.0fs" % (args.out, time.time() - t0))


if __name__ == "__main__":
    main()
