#!/usr/bin/python3
"""Convert a released SimSeg checkpoint into a model directory the C harness reads.

    scripts/convert_simseg.py CKPT.pth OUTDIR --vocab bert/vocab.txt --keys KEYS.tsv
    scripts/convert_simseg.py CKPT.pth OUTDIR --vocab bert/vocab.txt --no-key-check

The checkpoint is read with torch.load; its state_dict is checkpoint['state_dict'] (keys
without "module."; a "module." prefix is removed if present). OUTDIR receives:

  model.safetensors  every tensor of the state_dict under its ORIGINAL key name (floating
                     tensors as F32, integer buffers such as embeddings.position_ids as I64;
                     the C side reads the names listed in models/simseg/simseg.h)
  config.json        {"model_type": "simseg", "variant": "vit-s" | "vit-b" | "custom", sizes
                     detected from the tensor shapes (head size 64 unless --vit-head-dim /
                     --bert-head-dim say otherwise)}
  vocab.txt          a copy of --vocab (the checkpoint does not hold the BERT vocabulary)

Checks, before anything is written:
  * structure: every tensor the forward pass needs (all blocks and layers up to the highest
    index present) must be there, with consistent shapes; a checkpoint that lacks weights is
    refused with the list of missing keys (SimSeg loads with strict=False, so a missing key
    would silently keep a pretrained init: this converter never does that);
  * --keys FILE: the released key list (e.g. fixtures simseg/simseg.vit-s.state_dict_keys.tsv,
    lines "key<TAB>(shape)<TAB>dtype"); a key of the list that the checkpoint lacks, or a shape
    that differs (except pos_embed's token count, 197 or 325 both being valid), is an error;
    keys the list does not have are reported as unexpected, and kept.
  * --no-key-check skips the key list comparison (for test models with fewer layers), with a
    warning on stderr. One of --keys / --no-key-check is required.
Exit status 0 on success, 1 on a refused checkpoint, 2 on bad usage.
"""

import argparse
import json
import math
import os
import re
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hxref  # noqa: E402

VIT = "image_encoder.model.model."
BERT = "text_encoder.model.model."


def fail(msg):
    print("convert_simseg: " + msg, file=sys.stderr)
    sys.exit(1)


def read_key_list(path):
    keys = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2:
                fail("%s:%d: expected 'key<TAB>(shape)<TAB>dtype'" % (path, n))
            shape = tuple(int(x) for x in re.findall(r"-?\d+", parts[1]))
            keys[parts[0]] = shape
    if not keys:
        fail("%s: empty key list" % path)
    return keys


def count_indexed(sd, prefix):
    idx = set()
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    for k in sd:
        m = pat.match(k)
        if m:
            idx.add(int(m.group(1)))
    return (max(idx) + 1) if idx else 0


def required_keys(depth, layers):
    req = [VIT + "cls_token", VIT + "pos_embed", VIT + "patch_embed.proj.weight",
           VIT + "patch_embed.proj.bias", VIT + "norm.weight", VIT + "norm.bias"]
    for i in range(depth):
        p = VIT + "blocks.%d." % i
        for s in ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                  "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
                  "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"):
            req.append(p + s)
    e = BERT + "embeddings."
    req += [e + "word_embeddings.weight", e + "position_embeddings.weight",
            e + "token_type_embeddings.weight", e + "LayerNorm.weight", e + "LayerNorm.bias"]
    for i in range(layers):
        p = BERT + "encoder.layer.%d." % i
        for s in ("attention.self.query", "attention.self.key", "attention.self.value",
                  "attention.output.dense", "intermediate.dense", "output.dense"):
            req += [p + s + ".weight", p + s + ".bias"]
        for s in ("attention.output.LayerNorm", "output.LayerNorm"):
            req += [p + s + ".weight", p + s + ".bias"]
    req += ["image_projection.linear.weight", "text_projection.linear.weight"]
    return req


def shape(sd, k):
    return tuple(sd[k].shape)


def main():
    ap = argparse.ArgumentParser(description="Convert a SimSeg checkpoint to a model directory.")
    ap.add_argument("ckpt")
    ap.add_argument("outdir")
    ap.add_argument("--vocab", required=True, help="bert-base-uncased vocab.txt to copy")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--keys", help="released key list (TSV: key, shape, dtype) to check against")
    g.add_argument("--no-key-check", action="store_true",
                   help="skip the key-list comparison (test models only)")
    ap.add_argument("--vit-head-dim", type=int, default=64)
    ap.add_argument("--bert-head-dim", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=288)
    ap.add_argument("--max-length", type=int, default=25)
    a = ap.parse_args()

    ck = torch.load(a.ckpt, map_location="cpu")
    if not isinstance(ck, dict) or "state_dict" not in ck:
        fail("%s: no 'state_dict' entry (keys: %s)" % (a.ckpt, list(ck)[:10] if isinstance(ck, dict) else type(ck)))
    sd = {}
    for k, v in ck["state_dict"].items():
        if k.startswith("module."):
            k = k[len("module."):]
        if not torch.is_tensor(v):
            fail("%s: entry %s is not a tensor" % (a.ckpt, k))
        sd[k] = v

    depth = count_indexed(sd, VIT + "blocks.")
    layers = count_indexed(sd, BERT + "encoder.layer.")
    if depth == 0 or layers == 0:
        fail("%s: no ViT blocks (%d) or BERT layers (%d) under %s / %s" % (a.ckpt, depth, layers, VIT, BERT))
    missing = [k for k in required_keys(depth, layers) if k not in sd]
    if missing:
        fail("%s lacks %d weight(s) the model needs:\n  %s" % (a.ckpt, len(missing), "\n  ".join(missing)))

    if a.no_key_check:
        print("convert_simseg: WARNING: --no-key-check: the key set is NOT compared with the "
              "released list; use this only for test models", file=sys.stderr)
    else:
        ref = read_key_list(a.keys)
        lacking = [k for k in ref if k not in sd]
        if lacking:
            fail("%s lacks %d key(s) of %s:\n  %s" % (a.ckpt, len(lacking), a.keys, "\n  ".join(lacking)))
        bad = []
        for k, s in ref.items():
            got = shape(sd, k)
            if got == s:
                continue
            if k == VIT + "pos_embed" and len(got) == 3 and got[0] == 1 and got[2] == s[2]:
                continue
            bad.append("%s: %s in the checkpoint, %s in the list" % (k, got, s))
        if bad:
            fail("shape mismatches against %s:\n  %s" % (a.keys, "\n  ".join(bad)))
        extra = [k for k in sd if k not in ref]
        if extra:
            print("convert_simseg: %d unexpected key(s) not in %s (kept):\n  %s"
                  % (len(extra), a.keys, "\n  ".join(extra)), file=sys.stderr)

    # sizes from shapes
    D = shape(sd, VIT + "cls_token")[-1]
    wpe = shape(sd, VIT + "patch_embed.proj.weight")
    P = wpe[2]
    pos_tokens = shape(sd, VIT + "pos_embed")[1]
    g0 = int(round(math.sqrt(pos_tokens - 1)))
    mlp = shape(sd, VIT + "blocks.0.mlp.fc1.weight")[0]
    Dt = shape(sd, BERT + "embeddings.word_embeddings.weight")[1]
    E = shape(sd, "image_projection.linear.weight")[0]
    checks = [
        (wpe == (D, 3, P, P), "patch_embed.proj.weight %s vs D=%d" % (wpe, D)),
        (g0 * g0 + 1 == pos_tokens and shape(sd, VIT + "pos_embed") == (1, pos_tokens, D),
         "pos_embed %s is not (1, 1+g*g, %d)" % (shape(sd, VIT + "pos_embed"), D)),
        (shape(sd, VIT + "blocks.0.attn.qkv.weight") == (3 * D, D), "qkv weight shape"),
        (shape(sd, "image_projection.linear.weight") == (E, D), "image_projection shape"),
        (shape(sd, "text_projection.linear.weight") == (E, Dt), "text_projection shape"),
        (D % a.vit_head_dim == 0, "ViT width %d not a multiple of head dim %d" % (D, a.vit_head_dim)),
        (Dt % a.bert_head_dim == 0, "BERT width %d not a multiple of head dim %d" % (Dt, a.bert_head_dim)),
        (a.image_size % P == 0, "image size %d not a multiple of the patch %d" % (a.image_size, P)),
    ]
    for ok, what in checks:
        if not ok:
            fail("%s: inconsistent shapes: %s" % (a.ckpt, what))
    variant = "custom"
    if depth == 12 and layers == 12 and Dt == 768 and P == 16:
        variant = {384: "vit-s", 768: "vit-b"}.get(D, "custom")

    with open(a.vocab, encoding="utf-8") as f:
        nvocab = sum(1 for _ in f)
    V = shape(sd, BERT + "embeddings.word_embeddings.weight")[0]
    if nvocab > V:
        fail("%s has %d lines, more than the %d word embeddings" % (a.vocab, nvocab, V))
    if nvocab != V:
        print("convert_simseg: note: %s has %d lines for %d word embeddings" % (a.vocab, nvocab, V),
              file=sys.stderr)

    config = {
        "model_type": "simseg",
        "variant": variant,
        "image_size": a.image_size,
        "patch_size": P,
        "projection_dim": E,
        "image_topk": 5,
        "vision_config": {
            "hidden_size": D, "num_heads": D // a.vit_head_dim, "depth": depth, "mlp_dim": mlp,
            "layer_norm_eps": 1e-6, "pos_embed_tokens": pos_tokens,
        },
        "text_config": {
            "hidden_size": Dt, "num_attention_heads": Dt // a.bert_head_dim,
            "num_hidden_layers": layers,
            "intermediate_size": shape(sd, BERT + "encoder.layer.0.intermediate.dense.weight")[0],
            "vocab_size": V,
            "max_position_embeddings": shape(sd, BERT + "embeddings.position_embeddings.weight")[0],
            "type_vocab_size": shape(sd, BERT + "embeddings.token_type_embeddings.weight")[0],
            "layer_norm_eps": 1e-12, "max_length": a.max_length,
        },
    }
    tensors = []
    for k, v in sd.items():
        if v.is_floating_point():
            v = v.float()
        elif v.dtype != torch.int64:
            v = v.long()
        tensors.append((k, v))
    os.makedirs(a.outdir, exist_ok=True)
    hxref.write_safetensors(os.path.join(a.outdir, "model.safetensors"), tensors,
                            metadata={"source": os.path.basename(a.ckpt)})
    tmp = os.path.join(a.outdir, "config.json.tmp")
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(a.outdir, "config.json"))
    shutil.copyfile(a.vocab, os.path.join(a.outdir, "vocab.txt"))
    print("convert_simseg: %s -> %s (%s, %d tensors, ViT D=%d depth %d, pos_embed %d tokens, "
          "BERT %d x %d, E=%d)" % (a.ckpt, a.outdir, variant, len(tensors), D, depth, pos_tokens,
                                   layers, Dt, E), file=sys.stderr)


if __name__ == "__main__":
    main()
