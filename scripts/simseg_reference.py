#!/usr/bin/python3
"""Reference outputs of a tiny random SimSeg for the C parity tests (SPEC-simseg 2.1-2.6).

The model is written here in plain torch with the official state_dict key names
(image_encoder.model.model.* = timm VisionTransformer, text_encoder.model.model.* = BertModel
without pooler, image_projection.linear / text_projection.linear, loss.temperature), saved as
a .pth shaped like the released checkpoint ({'state_dict': ...}), and converted with
scripts/convert_simseg.py, checked against a key list written from the tiny model itself.

Sizes: ViT width 32 with 2 heads of 16 and depth 2, patch 16 at 288x288 (the real 18x18
grid); BERT width 32, 2 heads of 16, 2 layers, a vocabulary of its own (~200 word pieces);
projection 64. Real SimSeg heads are 64 wide; at head width 64 the tiny model files would
exceed 1 MB, and the head split/merge is the same code for any width.

Writes, under tests/data/simseg/:
  tiny325/  pos_embed stored for the 18x18 grid (325 rows, used as is)
  tiny197/  pos_embed stored for 14x14 (197 rows, resized bicubically to 18x18 at load)
each with config.json, model.safetensors, vocab.txt (from the converter) and
expected.safetensors; and tiny_cases.json (texts, class names, templates) and image.png.

expected.safetensors (float32 computed in float32 on one thread):
  image.pixel_sample [3,42,42]   the preprocessed tensor at rows/cols 0,7,14,...
  vit.pos_embed [325,D]          the position embedding in use (after any resize)
  vit.embed, vit.block{i}, vit.norm [325,D]
  image.patches [324,E]          projected patch tokens
  image.pooled [E]               LoDA (top-5 mean, eps-L2)
  image.dense [324,E]            F.normalize of image.patches
  text.ids, text.mask [n,25] I64
  text.embed, text.layer{i} [n,25,Dt]
  text.pooled [n,E]              LoDA text embeddings
  class.embeddings [C,E]         template-averaged class embeddings
  class.maps [C,18,18]           image.dense . class embedding
  crf.lut [3,256]                the uint8 round trip of the CRF image (as float)

Run from anywhere:  scripts/simseg_reference.py   (deterministic output)
"""

import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hxref  # noqa: E402
import wordpiece_ref as wp  # noqa: E402

ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "data", "simseg")
SEED = 20240
S, P = 288, 16
G = S // P
D, VH, DEPTH, MLP = 32, 2, 2, 128
DT, TH, LAYERS, INTER, MAXPOS = 32, 2, 2, 128, 32
E = 64
MAXLEN = 25
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

TEMPLATES = ["a bad photo of a {}.", "a photo of many {}.", "itap of the {}.",
             "a {} in a video game.", "the origami {}.", "a close-up photo of the {}."]
CLASSES = ["background", "cat", "potted plant", "tvmonitor", "sky"]
TEXTS = ["a bad photo of a aeroplane.", "cat", "A Photo of the DOG, in a video game!",
         "", "café crème", "itap of my tvmonitor-stand",
         "a photo of a cat a photo of a dog a photo of many birds in the sky at night time"]

WORDS = ["a", "the", "of", "my", "many", "in", "photo", "bad", "close", "up", "itap", "video",
         "game", "origami", "cat", "dog", "sky", "background", "plant", "potted", "tv",
         "monitor", "aero", "plane", "bird", "night", "time", "at", "stand", "cafe", "creme",
         "one", "is", "and"]
PIECES = ["##s", "##ed", "##ing", "##er", "##t", "##ted", "##plane", "##monitor", "##e"]


def make_vocab():
    toks = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    toks += list(".,-!?'")
    toks += [chr(c) for c in range(ord("a"), ord("z") + 1) if chr(c) != "a"]
    toks += ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    toks += WORDS + PIECES
    seen, out = set(), []
    for t in toks:
        if t not in seen:
            seen.add(t)
            out.append(t)
    while len(out) < 200:
        out.append("[unused%d]" % len(out))
    return out


# ------------------------------------------------------------------ the model, official names

class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        hd = C // self.heads
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (hd ** -0.5)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(3, D, P, P)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    def __init__(self, pos_tokens):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_tokens, D))
        self.patch_embed = PatchEmbed()
        self.blocks = nn.ModuleList([Block(D, VH, MLP) for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(D, eps=1e-6)


def interpolate_pos_embed(pos, new):
    """SimSeg's interpolate_pos_embed: keep the class row, bicubic-resize the grid."""
    n = pos.shape[1] - 1
    orig = int(n ** 0.5)
    if orig == new:
        return pos
    cls, grid = pos[:, :1], pos[:, 1:]
    grid = grid.reshape(1, orig, orig, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).flatten(1, 2)
    return torch.cat([cls, grid], dim=1)


def vit_forward(vit, pos, x, rec):
    t = vit.patch_embed(x)
    t = torch.cat([vit.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
    t = t + pos
    rec["vit.embed"] = t[0].clone()
    for i, b in enumerate(vit.blocks):
        t = b(t)
        rec["vit.block%d" % i] = t[0].clone()
    t = vit.norm(t)
    rec["vit.norm"] = t[0].clone()
    return t[:, 1:]


class BertEmbeddings(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, DT)
        self.position_embeddings = nn.Embedding(MAXPOS, DT)
        self.token_type_embeddings = nn.Embedding(2, DT)
        self.LayerNorm = nn.LayerNorm(DT, eps=1e-12)
        self.register_buffer("position_ids", torch.arange(MAXPOS).expand((1, -1)))

    def forward(self, ids):
        L = ids.shape[1]
        tt = torch.zeros_like(ids)
        x = self.word_embeddings(ids) + self.token_type_embeddings(tt)
        x = x + self.position_embeddings(self.position_ids[:, :L])
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.query = nn.Linear(DT, DT)
        self.key = nn.Linear(DT, DT)
        self.value = nn.Linear(DT, DT)

    def split(self, x):
        B, L, _ = x.shape
        return x.view(B, L, TH, DT // TH).permute(0, 2, 1, 3)

    def forward(self, x, ext_mask):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(DT // TH)
        s = s + ext_mask
        p = F.softmax(s, dim=-1)
        o = torch.matmul(p, v).permute(0, 2, 1, 3).contiguous()
        return o.view(x.shape[0], x.shape[1], DT)


class DenseLN(nn.Module):
    def __init__(self, din, dout):
        super().__init__()
        self.dense = nn.Linear(din, dout)
        self.LayerNorm = nn.LayerNorm(dout, eps=1e-12)

    def forward(self, h, res):
        return self.LayerNorm(self.dense(h) + res)


class BertAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.self = BertSelfAttention()
        self.output = DenseLN(DT, DT)


class Dense(nn.Module):
    def __init__(self, din, dout):
        super().__init__()
        self.dense = nn.Linear(din, dout)


class BertLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = BertAttention()
        self.intermediate = Dense(DT, INTER)
        self.output = DenseLN(INTER, DT)

    def forward(self, x, ext_mask):
        a = self.attention.output(self.attention.self(x, ext_mask), x)
        h = F.gelu(self.intermediate.dense(a))
        return self.output(h, a)


class BertEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer() for _ in range(LAYERS)])


class Bert(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embeddings = BertEmbeddings(vocab)
        self.encoder = BertEncoder()


def bert_forward(bert, ids, mask, rec):
    x = bert.embeddings(ids)
    rec["text.embed"] = x.clone()
    ext = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    for i, layer in enumerate(bert.encoder.layer):
        x = layer(x, ext)
        rec["text.layer%d" % i] = x.clone()
    return x


class Wrap(nn.Module):
    """x.model.model = inner (ImageEncoder -> ViTModel -> timm model, likewise for text)."""

    def __init__(self, inner):
        super().__init__()
        self.model = nn.Module()
        self.model.model = inner


class Projection(nn.Module):
    def __init__(self, din):
        super().__init__()
        self.linear = nn.Linear(din, E, bias=False)


class SimSeg(nn.Module):
    def __init__(self, pos_tokens, vocab):
        super().__init__()
        self.image_encoder = Wrap(ViT(pos_tokens))
        self.text_encoder = Wrap(Bert(vocab))
        self.image_projection = Projection(D)
        self.text_projection = Projection(DT)
        self.loss = nn.Module()
        self.loss.temperature = nn.Parameter(torch.tensor(0.07))


def l2norm(x, eps=1e-8):
    return x / (x.norm(dim=-1, keepdim=True) + eps)


def topk_pool(x, k, mask=None):
    """TopKPooling: per channel the mean of the k largest along dim 1."""
    x = x.clone()
    if mask is not None:
        x[torch.where(mask == 0)] = -10000
        k = min(k, int(mask.sum(1).min()))
    idx = x.topk(k, dim=1)[1]
    return x.gather(1, idx).mean(1)


def init(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm1.weight", "norm2.weight", "norm.weight", "LayerNorm.weight")):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif p.dim() >= 2 and "embeddings" not in name and "pos_embed" not in name:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) * (1.5 / math.sqrt(fan_in)))
            else:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


def make_image(h, w, seed):
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 30 + 190 * x / (w - 1)
    g = 128 + 100 * np.sin(2 * np.pi * y / h * 1.5)
    b = 230 - 200 * (x + y) / (w + h)
    img = np.stack([r, g, b], -1) + rng.normal(0, 20, (h, w, 3))
    img[h // 3: h // 2, w // 4: w // 2] = (250, 20, 40)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def preprocess(img_u8):
    im = Image.fromarray(img_u8).resize((S, S), Image.BILINEAR)
    a = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (a - mean) / std


def crf_lut():
    v = torch.arange(256, dtype=torch.float32).view(1, 256).expand(3, 256).contiguous()
    mean = torch.tensor(MEAN).view(3, 1)
    std = torch.tensor(STD).view(3, 1)
    x = (v.div(255) - mean) / std
    return ((x * std + mean) * 255).type(torch.uint8)


def compute(model, vocab_map, img_u8):
    rec = {}
    out = []
    vit = model.image_encoder.model.model
    bert = model.text_encoder.model.model
    x = preprocess(img_u8)
    out.append(("image.pixel_sample", x[:, ::7, ::7].contiguous()))
    pos = interpolate_pos_embed(vit.pos_embed, G)
    out.append(("vit.pos_embed", pos[0]))
    feats = vit_forward(vit, pos, x[None], rec)
    out += [(k, rec[k]) for k in ["vit.embed"] + ["vit.block%d" % i for i in range(DEPTH)]
            + ["vit.norm"]]
    pooled = l2norm(topk_pool(model.image_projection.linear(feats), 5))[0]
    patches = model.image_projection.linear(feats)[0]
    dense = F.normalize(patches, dim=-1, p=2)
    out += [("image.patches", patches), ("image.pooled", pooled), ("image.dense", dense)]

    enc = [wp.encode(t, vocab_map, MAXLEN) for t in TEXTS]
    ids = torch.tensor([e[0] for e in enc], dtype=torch.int64)
    mask = torch.tensor([e[1] for e in enc], dtype=torch.int64)
    h = bert_forward(bert, ids, mask, rec)
    tpool = l2norm(topk_pool(model.text_projection.linear(h), 1, mask))
    out += [("text.ids", ids), ("text.mask", mask), ("text.embed", rec["text.embed"])]
    out += [("text.layer%d" % i, rec["text.layer%d" % i]) for i in range(LAYERS)]
    out.append(("text.pooled", tpool))

    # independent check of BERT attention with torch's multi-head attention + key padding mask
    lay = bert.encoder.layer[0]
    sa = lay.attention.self
    e0 = rec["text.embed"].transpose(0, 1)
    in_w = torch.cat([sa.query.weight, sa.key.weight, sa.value.weight])
    in_b = torch.cat([sa.query.bias, sa.key.bias, sa.value.bias])
    a, _ = F.multi_head_attention_forward(
        e0, e0, e0, DT, TH, in_w, in_b, None, None, False, 0.0, torch.eye(DT), torch.zeros(DT),
        training=False, key_padding_mask=mask == 0, need_weights=False)
    a = lay.attention.output(a.transpose(0, 1), rec["text.embed"])
    a = lay.output(F.gelu(lay.intermediate.dense(a)), a)
    d = float((a - rec["text.layer0"]).abs().max())
    assert d < 1e-5, "BERT layer 0 self-check failed: %g" % d

    cls = []
    for c in CLASSES:
        texts = [t.format(c) for t in TEMPLATES]
        enc = [wp.encode(t, vocab_map, MAXLEN) for t in texts]
        ci = torch.tensor([e[0] for e in enc])
        cm = torch.tensor([e[1] for e in enc])
        r = {}
        emb = l2norm(topk_pool(model.text_projection.linear(bert_forward(bert, ci, cm, r)), 1, cm))
        e = emb.mean(dim=0)
        e /= e.norm()
        cls.append(e)
    cls = torch.stack(cls)
    maps = (dense @ cls.t()).t().reshape(len(CLASSES), G, G)
    out += [("class.embeddings", cls), ("class.maps", maps), ("crf.lut", crf_lut().float())]
    return out


def key_list(sd, path):
    with open(path, "w") as f:
        for k, v in sd.items():
            f.write("%s\t%s\t%s\n" % (k, tuple(v.shape), str(v.dtype).replace("torch.", "")))


def convert(pth, outdir, vocab_path, keys):
    cmd = [sys.executable, os.path.join(HERE, "convert_simseg.py"), pth, outdir,
           "--vocab", vocab_path, "--keys", keys, "--vit-head-dim", str(D // VH),
           "--bert-head-dim", str(DT // TH)]
    subprocess.run(cmd, check=True)


def main():
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    os.makedirs(OUT, exist_ok=True)
    vocab = make_vocab()
    vocab_map = {t: i for i, t in enumerate(vocab)}
    img = make_image(150, 200, SEED)
    Image.fromarray(img).save(os.path.join(OUT, "image.png"), optimize=True)
    with open(os.path.join(OUT, "tiny_cases.json"), "w") as f:
        json.dump({"texts": TEXTS, "classes": CLASSES, "templates": TEMPLATES}, f, indent=1,
                  ensure_ascii=True)
        f.write("\n")
    gen = torch.Generator().manual_seed(SEED)
    base = SimSeg(325, len(vocab))
    init(base, gen)
    grid14 = 0.5 * torch.randn((1, 197, D), generator=gen)
    with tempfile.TemporaryDirectory() as tmp:
        vpath = os.path.join(tmp, "vocab.txt")
        with open(vpath, "w") as f:
            f.write("\n".join(vocab) + "\n")
        for name, ntok in (("tiny325", 325), ("tiny197", 197)):
            model = SimSeg(ntok, len(vocab))
            sd = {k: v.clone() for k, v in base.state_dict().items()}
            if ntok == 197:
                sd["image_encoder.model.model.pos_embed"] = grid14.clone()
            model.load_state_dict(sd, strict=True)
            model.eval()
            sd = model.state_dict()
            pth = os.path.join(tmp, name + ".pth")
            torch.save({"state_dict": sd, "epoch": 0}, pth)
            keys = os.path.join(tmp, name + ".keys.tsv")
            key_list(sd, keys)
            outdir = os.path.join(OUT, name)
            convert(pth, outdir, vpath, keys)
            # the converter must refuse a checkpoint that lacks a weight, naming it
            lack = dict(sd)
            del lack["text_encoder.model.model.encoder.layer.1.output.dense.bias"]
            torch.save({"state_dict": lack}, pth)
            r = subprocess.run([sys.executable, os.path.join(HERE, "convert_simseg.py"), pth,
                                os.path.join(tmp, "refused"), "--vocab", vpath, "--keys", keys],
                               capture_output=True, text=True)
            assert r.returncode == 1 and "layer.1.output.dense.bias" in r.stderr, r.stderr
            assert not os.path.exists(os.path.join(tmp, "refused"))
            # an extra key is reported and kept; --no-key-check warns loudly
            extra = dict(sd)
            extra["head.weight"] = torch.zeros(3, D)
            torch.save({"state_dict": extra}, pth)
            conv = [sys.executable, os.path.join(HERE, "convert_simseg.py"), pth,
                    os.path.join(tmp, "extra"), "--vocab", vpath, "--vit-head-dim",
                    str(D // VH), "--bert-head-dim", str(DT // TH)]
            r = subprocess.run(conv + ["--keys", keys], capture_output=True, text=True)
            assert r.returncode == 0 and "unexpected" in r.stderr and "head.weight" in r.stderr, \
                r.stderr
            r = subprocess.run(conv + ["--no-key-check"], capture_output=True, text=True)
            assert r.returncode == 0 and "WARNING" in r.stderr, r.stderr
            with torch.no_grad():
                out = compute(model, vocab_map, img)
            hxref.write_safetensors(os.path.join(outdir, "expected.safetensors"),
                                    [(k, v.detach().contiguous()) for k, v in out])
            print("wrote", outdir)


if __name__ == "__main__":
    main()
