#!/usr/bin/python3
"""Parity of the C SimSeg backend at the real sizes (ViT-S/16 or ViT-B/16 with 64-wide heads,
12 blocks, bert-base), with random weights: nothing is stored in the repository.

    scripts/check_simseg_full.py [--arch vit-s|vit-b] [--fixtures ../shared/fixtures]
                                 [--harness build/harness] [--keep DIR]

Builds the plain-PyTorch model of scripts/simseg_reference.py at full size, saves it as a
released-style .pth with pos_embed at 14x14 (197 rows), converts it with convert_simseg.py
checked against the released key list (fixtures simseg/simseg.<arch>.state_dict_keys.tsv)
and the real BERT vocabulary (fixtures bert/vocab.txt), then compares `harness embed-image`
and `harness embed-text` with the PyTorch outputs. Exit status 1 when an error exceeds 1e-4
relative to the tensor's largest magnitude. Needs about 3 GB of memory.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import simseg_reference as ref  # noqa: E402
import wordpiece_ref as wp  # noqa: E402


def read_h5(path, name):
    with h5py.File(path, "r") as f:
        return torch.from_numpy(np.asarray(f[name], dtype=np.float32)).flatten()


def rel_err(got, want):
    scale = float(want.abs().max())
    return float((got - want).abs().max()) / max(scale, 1e-30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="vit-s", choices=["vit-s", "vit-b"])
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "..", "shared", "fixtures"))
    ap.add_argument("--harness", default=os.path.join(ROOT, "build", "harness"))
    ap.add_argument("--keep", help="write the model directory here instead of a temp dir")
    a = ap.parse_args()
    torch.set_num_threads(4)
    D = 384 if a.arch == "vit-s" else 768
    ref.D, ref.VH, ref.DEPTH, ref.MLP = D, D // 64, 12, 4 * D
    ref.DT, ref.TH, ref.LAYERS, ref.INTER, ref.MAXPOS = 768, 12, 12, 3072, 512
    ref.E = 512
    vocab_path = os.path.join(a.fixtures, "bert", "vocab.txt")
    keys = os.path.join(a.fixtures, "simseg", "simseg.%s.state_dict_keys.tsv" % a.arch)
    vocab = wp.load_vocab(vocab_path)
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(7)
    model = ref.SimSeg(197, 30522)
    ref.init(model, gen)
    with torch.no_grad():  # keep the deep towers in a sane range
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "embeddings" not in name and "pos_embed" not in name:
                p.mul_(0.5)
    model.eval()
    texts = ["a bad photo of a aeroplane.", "a photo of the pottedplant.", "Crème brûlée!",
             "a photo of many tvmonitor"]
    img = np.asarray(Image.open(os.path.join(ROOT, "tests", "data", "simseg", "image.png")))
    with tempfile.TemporaryDirectory() as tmp:
        outdir = a.keep or os.path.join(tmp, "model")
        pth = os.path.join(tmp, "full.pth")
        torch.save({"state_dict": model.state_dict()}, pth)
        subprocess.run([sys.executable, os.path.join(HERE, "convert_simseg.py"), pth, outdir,
                        "--vocab", vocab_path, "--keys", keys], check=True)
        os.remove(pth)
        with torch.no_grad():
            vit = model.image_encoder.model.model
            pos = ref.interpolate_pos_embed(vit.pos_embed, ref.G)
            feats = ref.vit_forward(vit, pos, ref.preprocess(img)[None], {})
            patches = model.image_projection.linear(feats)
            pooled = ref.l2norm(ref.topk_pool(patches, 5))[0]
            enc = [wp.encode(t, vocab) for t in texts]
            ids = torch.tensor([e[0] for e in enc])
            mask = torch.tensor([e[1] for e in enc])
            h = ref.bert_forward(model.text_encoder.model.model, ids, mask, {})
            tpool = ref.l2norm(ref.topk_pool(model.text_projection.linear(h), 1, mask))
        h5i, h5t = os.path.join(tmp, "i.h5"), os.path.join(tmp, "t.h5")
        subprocess.run([a.harness, "embed-image", "--model", outdir, "--image",
                        os.path.join(ROOT, "tests", "data", "simseg", "image.png"), "--out", h5i],
                       check=True)
        subprocess.run([a.harness, "embed-text", "--model", outdir, "--out", h5t, "--"] + texts,
                       check=True)
        errs = {
            "/dense": rel_err(read_h5(h5i, "/dense"), patches[0].flatten()),
            "/image_embeds": rel_err(read_h5(h5i, "/image_embeds"), pooled.flatten()),
            "/text_embeds": rel_err(read_h5(h5t, "/text_embeds"), tpool.flatten()),
        }
    bad = False
    for k, e in errs.items():
        print("%-14s max error / max |value| = %.3g%s" % (k, e, "  FAIL" if e > 1e-4 else ""))
        bad |= e > 1e-4
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
