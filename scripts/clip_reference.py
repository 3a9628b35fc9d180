#!/usr/bin/python3
"""Reference outputs of a tiny random CLIP for the C parity tests (SPEC 1).

Writes, under tests/data/clip/:
  tiny/      config.json, model.safetensors (F32), vocab.json + merges.txt (a small byte-level
             BPE in CLIP's format), texts.json, input_<case>.png, expected.safetensors
  tiny_f16/  the same weights stored as F16 (integer buffers stay I64), same config and
             tokenizer; expected.safetensors computed with the weights rounded to F16 and
             cast back to F32.
expected.safetensors holds every stage of the text tower (input ids, embeddings, each block,
pooled, projected) and, per image case (sq32 32x32, rect 24x40, big 48x48), the pixel values,
the (interpolated) position embeddings, embeddings, pre-LN output, each vanilla block, the
image embedding, and per dense variant the output of the modified last block and the dense
tokens. All float outputs are float32 computed in float32 on one thread.

Run from anywhere, with no arguments:  scripts/clip_reference.py
The output is deterministic: running it again gives byte-identical files.
"""

import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hxref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "clip")
SEED = 1234
N_MERGES = 200

CLASSES = ["person", "cat", "dog", "horse", "sheep", "cow", "bird", "car", "bus", "train",
           "boat", "bicycle", "motorbike", "aeroplane", "bottle", "chair", "table", "sofa",
           "plant", "television", "grass", "sky", "tree", "road", "water", "building", "wall",
           "floor", "mountain", "sand"]
TEMPLATES = ["a photo of a {}.", "a photo of the {}.", "a picture of a {}.",
             "there is a {} in the scene.", "a bad photo of a {}.", "a close-up photo of the {}.",
             "a blurry photo of my {}.", "a cropped photo of a {}.", "a bright photo of the {}.",
             "a dark photo of a {}.", "a good photo of the large {}.", "a drawing of a small {}.",
             "a rendering of the {}.", "a sculpture of a {}.", "itap of my {}.",
             "a low resolution photo of the {}.", "a black and white photo of a {}.",
             "a jpeg corrupted photo of a {}.", "a pixelated photo of the {}.",
             "a plastic {}.", "a toy {}.", "a cartoon {}.", "a tattoo of the {}.",
             "an origami {}.", "a sketch of a {}.", "graffiti of the {}."]

LONG = ("A caf&eacute; &amp;amp; cr\u00e8me br\u00fbl\u00e9e: it's a photo of a cat, a dog, a "
        "horse, a sheep, a cow, a bird, a car, a bus, a train, a boat, a bicycle, a motorbike, "
        "an aeroplane, a bottle, a chair, a table, a sofa, a plant, a television, the grass, "
        "the sky, a tree, the road, the water, a building, a wall, the floor, a mountain and "
        "the sand, all 42 of them in one very long caption.")
TEXTS = ["a photo of a cat.", "sofa", "A DOG on the grass", "", "3 red cars!", LONG]

CASES = [("sq32", 32, 32), ("rect", 24, 40), ("big", 48, 48)]

CONFIG = {
    "model_type": "clip",
    "projection_dim": 24,
    "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
                    "num_hidden_layers": 2, "vocab_size": None},
    "vision_config": {"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 4,
                      "num_hidden_layers": 3, "image_size": 32, "patch_size": 8},
}


def make_image(h, w, seed):
    """Smooth colour gradients plus seeded noise, RGB uint8 [h,w,3]."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 40 + 170 * x / max(w - 1, 1)
    g = 128 + 90 * np.sin(2 * np.pi * y / h + 0.5)
    b = 220 - 160 * (x + y) / (w + h)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0.0, 14.0, size=(h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def maxdiff(a, b):
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


class Checks:
    def __init__(self):
        self.worst = 0.0

    def close(self, what, a, b, tol):
        d = maxdiff(a, b)
        ok = d <= tol
        print("  %-48s max|diff| %.3g%s" % (what, d, "" if ok else "   > %.3g  FAIL" % tol))
        if not ok:
            raise SystemExit("self-check failed: " + what)


def mha_block_check(w, cfg, x, prefix, heads, eps, causal):
    """The same block through torch.nn.functional.multi_head_attention_forward (an independent
    implementation of the head split and scaling)."""
    y = hxref._ln(x, w, prefix + "layer_norm1", eps)
    in_w = torch.cat([w[prefix + "self_attn.%s_proj.weight" % p] for p in "qkv"])
    in_b = torch.cat([w[prefix + "self_attn.%s_proj.bias" % p] for p in "qkv"])
    n = y.shape[1]
    mask = torch.full((n, n), float("-inf")).triu(1) if causal else None
    yt = y.transpose(0, 1)  # [n, B, D]
    a, _ = torch.nn.functional.multi_head_attention_forward(
        yt, yt, yt, y.shape[-1], heads, in_w, in_b, None, None, False, 0.0,
        w[prefix + "self_attn.out_proj.weight"], w[prefix + "self_attn.out_proj.bias"],
        training=False, need_weights=False, attn_mask=mask)
    x = x + a.transpose(0, 1)
    return x + hxref._mlp(x, w, prefix, eps)


def compute(w, cfg, tok, images, chk):
    """All expected tensors for one set of weights, as a list of (name, tensor)."""
    tc, vc, E = hxref.full_config(cfg)
    out = []
    ids = [tok.encode(t) for t in TEXTS]
    n = len(ids)
    input_ids = torch.zeros(n, 77, dtype=torch.int64)
    for i, s in enumerate(ids):
        input_ids[i, :len(s)] = torch.tensor(s)
    rec = {}
    r = hxref.text_forward(w, cfg, input_ids, rec)
    eot = r["eot_pos"]
    T = int(eot.max()) + 1
    out += [("text.input_ids", input_ids), ("text.eot_pos", eot.clone()),
            ("text.embeddings", rec["embeddings"][:, :T])]
    Lt = tc["num_hidden_layers"]
    for i in range(Lt):
        out.append(("text.layer%d" % i, rec["layer%d" % i][:, :T]))
    out += [("text.pooled", r["pooled"]), ("text.embeds", r["embeds"])]

    # self-consistency of the text tower
    rec_t = {}
    r_t = hxref.text_forward(w, cfg, input_ids[:, :T], rec_t)
    chk.close("text: run on T positions vs 77 (causal)", r_t["embeds"], r["embeds"], 1e-5)
    ln = hxref._ln(rec["layer%d" % (Lt - 1)], w, "text_model.final_layer_norm",
                   tc["layer_norm_eps"])
    chk.close("text: pooled == final LN of last layer at eot",
              ln[torch.arange(n), eot], r["pooled"], 1e-6)
    chk.close("text: embeds == projection(pooled)",
              r["pooled"] @ w["text_projection.weight"].t(), r["embeds"], 1e-5)
    x0 = rec["embeddings"]
    x1 = mha_block_check(w, cfg, x0, "text_model.encoder.layers.0.",
                         tc["num_attention_heads"], tc["layer_norm_eps"], True)
    chk.close("text: block 0 vs torch multi_head_attention", x1, rec["layer0"], 1e-4)

    L = vc["num_hidden_layers"]
    P = vc["patch_size"]
    for (name, h, wd), img in zip(CASES, images):
        px = hxref.to_pixels(img)
        rec = {}
        r = hxref.vision_forward(w, cfg, px[None], hxref.VARIANTS, rec)
        gh, gw = rec["grid"]
        assert (gh, gw) == (h // P, wd // P)
        p = "vision.%s." % name
        out += [(p + "pixel_values", px), (p + "grid", torch.tensor([gh, gw])),
                (p + "pos_embed", rec["pos_embed"]), (p + "embeddings", rec["embeddings"][0]),
                (p + "pre_ln", rec["pre_ln"][0])]
        for i in range(L):
            out.append((p + "layer%d" % i, rec["layer%d" % i][0]))
        out.append((p + "image_embeds", r["image_embeds"][0]))
        for v in hxref.VARIANTS:
            out.append((p + "last." + v, rec["last." + v][0]))
        for v in hxref.VARIANTS:
            out.append((p + "dense." + v, r["dense." + v][0]))
        # self-consistency of the vision tower
        last = rec["layer%d" % (L - 1)]
        proj = hxref._ln(last, w, "vision_model.post_layernorm", vc["layer_norm_eps"]) \
            @ w["visual_projection.weight"].t()
        chk.close(name + ": dense.vanilla == proj(postLN(layer%d[1:]))" % (L - 1),
                  proj[0, 1:], r["dense.vanilla"][0], 1e-5)
        chk.close(name + ": image_embeds == proj(postLN(layer%d[0]))" % (L - 1),
                  proj[0, 0], r["image_embeds"][0], 1e-5)
        lp = "vision_model.encoder.layers.%d." % (L - 1)
        xm = mha_block_check(w, cfg, rec["layer%d" % (L - 2)], lp, vc["num_attention_heads"],
                             vc["layer_norm_eps"], False)
        chk.close(name + ": last block vs torch multi_head_attention", xm, last, 1e-4)
        if (gh, gw) == (vc["image_size"] // P,) * 2:
            chk.close(name + ": pos_embed == trained table", rec["pos_embed"],
                      w["vision_model.embeddings.position_embedding.weight"], 0.0)
        # maskclip is per-token: a token's output ignores the other tokens
        one = hxref.last_block(rec["layer%d" % (L - 2)][:, 3:4], w, lp,
                               vc["num_attention_heads"], vc["layer_norm_eps"], "maskclip",
                               (1, 1))
        chk.close(name + ": maskclip token 3 alone", one[0, 0], rec["last.maskclip"][0, 3], 1e-5)
    return out


def write_model_dir(d, cfg, weights, dtype, merges, images, tok, chk):
    os.makedirs(d, exist_ok=True)
    hxref.write_json(os.path.join(d, "config.json"), cfg, indent=2)
    stored = hxref.weights_to(weights, dtype)
    names = [n for n, _, _ in hxref.weight_shapes(cfg)]
    hxref.write_safetensors(os.path.join(d, "model.safetensors"),
                            [(n, stored[n]) for n in names], metadata={"format": "pt"})
    hxref.write_tokenizer(d, merges)
    hxref.write_json(os.path.join(d, "texts.json"), TEXTS, indent=1)
    for (name, _, _), img in zip(CASES, images):
        Image.fromarray(img, "RGB").save(os.path.join(d, "input_%s.png" % name), format="PNG")
    # read back what was written and compute from exactly that
    back = hxref.read_safetensors(os.path.join(d, "model.safetensors"))
    for n in names:
        assert back[n].dtype == stored[n].dtype and torch.equal(back[n], stored[n]), n
    w = hxref.weights_to(back, torch.float32)
    for (name, _, _), img in zip(CASES, images):
        got = np.asarray(Image.open(os.path.join(d, "input_%s.png" % name)).convert("RGB"))
        assert np.array_equal(got, img), name
    exp = compute(w, cfg, tok, images, chk)
    hxref.write_safetensors(os.path.join(d, "expected.safetensors"), exp)
    back = hxref.read_safetensors(os.path.join(d, "expected.safetensors"))
    for n, t in exp:
        assert torch.equal(back[n], t.contiguous()), n
    return dict(exp)


def main():
    if len(sys.argv) > 1:
        print(__doc__)
        return 0 if sys.argv[1] in ("-h", "--help") else 2
    torch.set_num_threads(1)
    torch.manual_seed(SEED)

    corpus = [t.format(c) for c in CLASSES for t in TEMPLATES]
    merges = hxref.learn_merges(corpus, N_MERGES)
    tok = hxref.Tokenizer(merges)
    cfg = json.loads(json.dumps(CONFIG))
    cfg["text_config"]["vocab_size"] = len(tok.encoder)

    print("tokenizer: %d merges, vocab %d" % (len(merges), len(tok.encoder)))
    inv = {i: t for t, i in tok.encoder.items()}
    u2b = {u: b for b, u in hxref.bytes_to_unicode().items()}
    for t in TEXTS:
        ids = tok.encode(t)
        body = [inv[i] for i in ids[1:-1]]
        dec = bytearray()
        for piece in body:
            dec += bytes(u2b[c] for c in piece.replace("</w>", ""))
        want = "".join(hxref.clean_text(t).split())
        ok = len(ids) == 77 or dec.decode("utf-8") == want
        print("  %2d tokens %s %r" % (len(ids), "" if ok else "DECODE MISMATCH", t[:40]))
        if not ok:
            raise SystemExit("tokenizer round trip failed")
    if len(tok.encode(LONG)) != 77 or len(pre_count(tok, LONG)) <= 75:
        raise SystemExit("the long text must be truncated")

    weights = hxref.init_weights(cfg, SEED)
    images = [make_image(h, w, SEED + i) for i, (_, h, w) in enumerate(CASES)]
    chk = Checks()
    print("tiny (F32):")
    e32 = write_model_dir(os.path.join(OUT, "tiny"), cfg, weights, torch.float32, merges,
                          images, tok, chk)
    print("tiny_f16 (F16 weights):")
    e16 = write_model_dir(os.path.join(OUT, "tiny_f16"), cfg, weights, torch.float16, merges,
                          images, tok, chk)

    print("F16 weights vs F32 weights (max |diff| / max |value|):")
    worst = 0.0
    for n, a in e32.items():
        if not a.is_floating_point():
            assert torch.equal(a, e16[n]), n
            continue
        d = maxdiff(a, e16[n])
        rel = d / max(float(a.abs().max()), 1e-30)
        worst = max(worst, rel)
        if n.startswith("text.layer") or ".dense." in n or n.endswith("embeds"):
            print("  %-32s %.3g / %.3g = %.2g" % (n, d, float(a.abs().max()), rel))
    print("  worst relative difference over all tensors: %.2g" % worst)
    if worst > 0.05:
        raise SystemExit("F16 and F32 outputs differ too much")
    total = 0
    for sub in ("tiny", "tiny_f16"):
        for f in sorted(os.listdir(os.path.join(OUT, sub))):
            total += os.path.getsize(os.path.join(OUT, sub, f))
    print("wrote %s (%d bytes in all)" % (OUT, total))
    return 0


def pre_count(tok, text):
    ids = []
    for piece in hxref.pre_split(hxref.clean_text(text)):
        ids += tok.bpe(piece)
    return ids


if __name__ == "__main__":
    sys.exit(main())
