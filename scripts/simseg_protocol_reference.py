#!/usr/bin/python3
"""Reference outputs of the SimSeg segmentation protocol (SPEC 3, SPEC-simseg 2.6) on the tiny
SimSeg model of tests/data/simseg/tiny325, for tests/test_simseg_protocol.c.

    scripts/simseg_protocol_reference.py [--harness build/harness]   # writes tests/data/ssp/

The protocol is written here in PyTorch, numpy and OpenCV the way tools/seg_evaluation.py of
the released SimSeg code writes it (line numbers in SPEC-simseg 2.6), on the plain-torch
SimSeg model of scripts/simseg_reference.py loaded with the converted weights: PIL bilinear
resize, LoDA pooling, template-averaged class embeddings, torch.topk, mean + 1.0 x
torch.std (unbiased), the walk over the first 5 with `continue` for background and `break`
below the threshold, F.interpolate(scale_factor=16, mode="nearest"), min-max, the uint8
round-trip image of l.105, the literal cv2.dilate(mask, kernel, 5) / cv2.erode(mask, kernel,
3) calls, cv2.resize(INTER_NEAREST) and the argmax over a float64 [C, H, W] array.

The LLM-supervision rule for the map of step 5: normalise(sum_i w_i s_i), w = softmax_i(g .
s_i), g the LoDA embedding, s_i the template-averaged subclass embeddings (first k of the
list); embed-mean: normalise(mean_i s_i); max: per patch the largest cosine with s_i.
Background gets no subclasses.

The dense CRF step is NOT reimplemented here (pydensecrf is not available): the script
writes the 288x288 round-trip image (PNG) and the [1-p, p] probabilities (HDF5) and runs the
harness's own `harness crf` command with SimSeg's settings (tests/test_crf.c checks that
command's CRF against pydensecrf). So this reference checks everything around the CRF
independently, and the CRF itself only through its own tests.

Files under tests/data/ssp/:
  a.png, b.png, c.png  the input images (generated, fixture-free; c is larger than 288)
  classes.json         the class sets (each class with its subclass list), templates, cases
  expected.safetensors per case <n>:
    <n>.scores [C] f32       global . superclass embeddings
    <n>.threshold [1] f32
    <n>.accepted [na] I64    accepted classes in walk order
    <n>.maps [na, 324] f32   the raw per-class maps (before min-max)
    <n>.crf [na, 288, 288] U8  CRF argmax (bit 0) and near-tie flag (bit 1: |q1 - q0| < 1e-3)
    <n>.pred [H, W] U8       the final label map
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import cv2
import h5py
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hxref  # noqa: E402
import simseg_reference as sr  # noqa: E402
import wordpiece_ref as wp  # noqa: E402

ROOT = os.path.dirname(HERE)
MODEL = os.path.join(ROOT, "tests", "data", "simseg", "tiny325")
OUT = os.path.join(ROOT, "tests", "data", "ssp")

CLASS_SETS = {
    # two high scores, then a class below the threshold that ends the walk
    "set1": ["background", "cat", "many cats", "cafe", "video game", "dog", "bird", "time",
             "potted", "bad"],
    # background first in the walk (skipped), then three accepted classes
    "set2": ["background", "night sky", "tv stand", "origami", "cat", "cat cat", "bad",
             "bad cat", "and", "potted"],
}
TEMPLATES = sr.TEMPLATES


def subclasses(name):
    """A made-up list per class (the released lists are LLM answers; these only need words of
    the tiny vocabulary). The list of background exists but is never used."""
    return ["%s at night" % name, "many %s" % name, "origami %s" % name, "the %s" % name]


CASES = [
    dict(name="a1_super", image="a.png", classes="set1", rule="super", k=0, top_k=10),
    dict(name="a1_softmax", image="a.png", classes="set1", rule="embed-softmax", k=3, top_k=10),
    dict(name="b2_super", image="b.png", classes="set2", rule="super", k=0, top_k=10),
    dict(name="b2_softmax", image="b.png", classes="set2", rule="embed-softmax", k=4, top_k=10),
    dict(name="a2_mean", image="a.png", classes="set2", rule="embed-mean", k=2, top_k=10),
    dict(name="b1_max", image="b.png", classes="set1", rule="max", k=3, top_k=10),
    # larger than 288x288: the final nearest resize upsamples
    dict(name="c2_softmax", image="c.png", classes="set2", rule="embed-softmax", k=5, top_k=10),
]


def smooth_image(h, w):
    """Gradients, a disc and a bar, no noise: a large image that stays small as a PNG."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([40 + 180 * x / (w - 1), 200 - 150 * y / (h - 1),
                    128 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0)], -1)
    img[(y - h * 0.4) ** 2 + (x - w * 0.6) ** 2 < (h * 0.25) ** 2] = (240, 230, 30)
    img[h // 6: h // 6 + 40, 20: w // 2] = (20, 40, 200)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def load_model():
    vocab = [l.rstrip("\n") for l in open(os.path.join(MODEL, "vocab.txt"), encoding="utf-8")]
    model = sr.SimSeg(325, len(vocab))
    w = hxref.read_safetensors(os.path.join(MODEL, "model.safetensors"))
    sd = model.state_dict()
    model.load_state_dict({k: w[k].to(sd[k].dtype) for k in sd}, strict=True)
    model.eval()
    return model, {t: i for i, t in enumerate(vocab)}


def text_embed(model, vmap, name):
    """zero_shot_classifier for one name: mean of the eps-normalised LoDA text embeddings over
    the templates, then e / e.norm()."""
    enc = [wp.encode(t.format(name), vmap, sr.MAXLEN) for t in TEMPLATES]
    ids = torch.tensor([e[0] for e in enc])
    mask = torch.tensor([e[1] for e in enc])
    h = sr.bert_forward(model.text_encoder.model.model, ids, mask, {})
    emb = sr.l2norm(sr.topk_pool(model.text_projection.linear(h), 1, mask))
    e = emb.mean(dim=0)
    return e / e.norm()


def run_crf(harness, img_u8, probs):
    """dense_crf of seg_evaluation.py l.31-54 through `harness crf` (SimSeg's settings)."""
    with tempfile.TemporaryDirectory() as tmp:
        ip, pp, qp = (os.path.join(tmp, n) for n in ("img.png", "prob.h5", "q.h5"))
        Image.fromarray(img_u8).save(ip)
        with h5py.File(pp, "w") as f:
            f["prob"] = probs.astype(np.float32)
        subprocess.run([harness, "crf", "--image", ip, "--prob", pp, "--out", qp, "--gaussian",
                        "3,3", "--bilateral", "40,13,10", "--iters", "3"], check=True,
                       capture_output=True)
        with h5py.File(qp, "r") as f:
            return np.array(f["q"])


def segment(model, vmap, harness, img_u8, case, label_emb, sub_emb):
    CLASSES = CLASS_SETS[case["classes"]]
    vit = model.image_encoder.model.model
    x = sr.preprocess(img_u8)[None]  # (1, 3, 288, 288)
    mean = torch.tensor(sr.MEAN).view(1, 3, 1, 1)
    norm = torch.tensor(sr.STD).view(1, 3, 1, 1)
    pos = sr.interpolate_pos_embed(vit.pos_embed, sr.G)
    feat = sr.vit_forward(vit, pos, x, {})  # (1, 324, D)
    pooled = sr.l2norm(sr.topk_pool(model.image_projection.linear(feat), 5))  # l.101
    feat = model.image_projection.linear(feat)  # l.102
    image_raw = (((x * norm) + mean) * 255).type(torch.uint8).permute(0, 2, 3, 1).numpy()
    raw_h, raw_w = img_u8.shape[:2]
    image_a = Image.fromarray(image_raw[0])
    im_f_a = F.normalize(feat[0], dim=-1, p=2)
    im_avg_a = pooled[0]
    scores = torch.sum(im_avg_a.unsqueeze(0) * label_emb, dim=1)
    topk_scores, topk_index = scores.topk(case["top_k"])
    threshold = topk_scores.mean() + 1.0 * topk_scores.std()
    C = len(CLASSES)
    temp_pred = np.zeros((C, raw_h, raw_w))
    accepted, maps, crfs = [], [], []
    for index in topk_index[:5]:
        index = int(index)
        if index in [0, 255]:
            continue
        e = label_emb[index]
        if case["rule"] == "max":  # a per-pixel rule: the best subclass cosine per patch
            s = sub_emb[CLASSES[index]][: case["k"]]
            attn = (im_f_a @ s.t()).max(dim=1).values.unsqueeze(-1)
        elif case["rule"] != "super":
            s = sub_emb[CLASSES[index]][: case["k"]]  # background never gets here
            if case["rule"] == "embed-softmax":
                w = torch.softmax(im_avg_a @ s.t(), dim=0)
                e = (w[:, None] * s).sum(0)
            else:
                e = s.mean(0)
            e = e / e.norm()
        if case["rule"] != "max":
            attn = im_f_a @ e.unsqueeze(-1)
        attn = attn.reshape(sr.G, sr.G)
        raw_map = attn.reshape(-1).clone()
        attn = F.interpolate(attn.unsqueeze(0).unsqueeze(0), scale_factor=sr.P,
                             mode="nearest")[0][0]
        attn = attn.reshape(sr.S, sr.S).numpy()
        score = float(scores[index])
        if score < threshold:
            break
        accepted.append(index)
        maps.append(raw_map)
        mn, mx = attn.min(), attn.max()
        norm_attn = (attn - mn) / (mx - mn)
        probs = np.append(1 - norm_attn[None], norm_attn[None], axis=0)
        q = run_crf(harness, np.array(image_a).astype(np.uint8), probs)
        lab = np.argmax(q, axis=0).reshape(sr.S, sr.S)
        near = np.abs(q[1] - q[0]) < 1e-3
        crfs.append((lab + 2 * near).astype(np.uint8))
        binary_mask = (lab * 255).astype("uint8")
        kernel = np.ones((7, 7), dtype=np.uint8)
        final_mask = cv2.dilate(binary_mask, kernel, 5)
        final_mask = cv2.erode(final_mask, kernel, 3)
        final_mask = cv2.resize(final_mask.astype(np.uint8), dsize=(raw_w, raw_h),
                                interpolation=cv2.INTER_NEAREST)
        temp_pred[index] = final_mask * score
    pred = temp_pred.argmax(0).astype(np.uint8)
    return scores, threshold, accepted, maps, crfs, pred


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--harness", default=os.path.join(ROOT, "build", "harness"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    hxref._DT_TORCH.setdefault(torch.uint8, ("U8", np.dtype("u1")))
    model, vmap = load_model()
    imgs = {"a.png": sr.make_image(150, 200, sr.SEED), "b.png": sr.make_image(97, 130, 77),
            "c.png": smooth_image(311, 403)}
    for n, im in imgs.items():
        Image.fromarray(im).save(os.path.join(OUT, n), optimize=True)
    with torch.no_grad():
        names = sorted(set(n for v in CLASS_SETS.values() for n in v))
        emb = {n: text_embed(model, vmap, n) for n in names}
        sub_emb = {n: torch.stack([text_embed(model, vmap, s) for s in subclasses(n)])
                   for n in names}
        out = []
        for case in CASES:
            img = np.asarray(Image.open(os.path.join(OUT, case["image"])).convert("RGB"))
            CLASSES = CLASS_SETS[case["classes"]]
            label_emb = torch.stack([emb[c] for c in CLASSES])
            scores, thr, acc, maps, crfs, pred = segment(model, vmap, a.harness, img, case,
                                                         label_emb, sub_emb)
            n = case["name"]
            out += [(n + ".scores", scores.contiguous()),
                    (n + ".threshold", thr.reshape(1).float()),
                    (n + ".accepted", torch.tensor(acc, dtype=torch.int64)),
                    (n + ".maps", torch.stack(maps) if maps else torch.zeros(0, sr.G * sr.G)),
                    (n + ".crf", torch.from_numpy(np.stack(crfs)) if crfs else
                     torch.zeros(0, sr.S, sr.S, dtype=torch.uint8)),
                    (n + ".pred", torch.from_numpy(pred))]
            ties = sum(int((c >> 1).sum()) for c in crfs)
            top = sorted(scores.tolist(), reverse=True)
            gap = min(abs(x - y) for x, y in zip(top, top[1:]))
            print("%-10s min score gap %.1e, threshold margin %.1e" % (
                n, gap, min(abs(x - float(thr)) for x in top)))
            print("%-10s threshold %.4f accepted %s  near-tie CRF pixels %d  label counts %s"
                  % (n, float(thr), [CLASSES[i] for i in acc], ties,
                     np.bincount(pred.ravel(), minlength=len(CLASSES)).tolist()))
    hxref.write_safetensors(os.path.join(OUT, "expected.safetensors"), out)
    with open(os.path.join(OUT, "classes.json"), "w") as f:
        sets = {k: [{"name": n, "subclasses": subclasses(n)} for n in v]
                for k, v in CLASS_SETS.items()}
        json.dump({"class_sets": sets, "templates": TEMPLATES, "cases": CASES}, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
