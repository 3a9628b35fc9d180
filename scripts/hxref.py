"""Plain-PyTorch reference pieces shared by the generators and benchmarks under scripts/.

- CLIP in the Hugging Face layout (SPEC 1): configuration defaults, random initialisation,
  the vision tower with the five dense variants, the text tower.
- The CLIP byte-level BPE tokenizer (SPEC 1, "Tokenizer") and a small greedy BPE learner.
- A safetensors writer and reader (no third-party package needed).

Import with scripts/ on sys.path; the scripts run under /usr/bin/python3 (Debian's torch).
"""

import html
import json
import math
import os
import struct
import sys
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# safetensors

_DT_TORCH = {
    torch.float32: ("F32", np.dtype("<f4")),
    torch.float16: ("F16", np.dtype("<f2")),
    torch.float64: ("F64", np.dtype("<f8")),
    torch.int64: ("I64", np.dtype("<i8")),
    torch.int32: ("I32", np.dtype("<i4")),
}
_DT_NAME = {name: npdt for name, npdt in _DT_TORCH.values()}


def write_safetensors(path, tensors, metadata=None):
    """Write `tensors` (a list of (name, torch.Tensor), kept in that order) to `path`.

    Layout: u64 LE header length N, N bytes of JSON padded with spaces to a multiple of 8,
    then the raw little-endian data of each tensor, contiguous in header order. The file is
    written to a temporary name and renamed, so a partial file never appears."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name, t in tensors:
        t = t.detach().contiguous().cpu()
        if t.dtype not in _DT_TORCH:
            raise ValueError("%s: unsupported dtype %s" % (name, t.dtype))
        code, npdt = _DT_TORCH[t.dtype]
        b = t.numpy().astype(npdt, copy=False).tobytes()
        if name in header:
            raise ValueError("duplicate tensor name " + name)
        header[name] = {"dtype": code, "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((-len(hj)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path, select=None):
    """Read a safetensors file into a dict name -> torch.Tensor, checking the layout (contiguous
    offsets, sizes). With `select` (a predicate on names) only those tensors are read."""
    out = {}
    spans = []
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
        size = os.fstat(f.fileno()).st_size
        header.pop("__metadata__", None)
        base = 8 + n
        for name, e in header.items():
            npdt = _DT_NAME[e["dtype"]]
            b, end = e["data_offsets"]
            count = int(np.prod(e["shape"])) if e["shape"] else 1
            if end - b != count * npdt.itemsize:
                raise ValueError("%s: %s: byte length does not match shape" % (path, name))
            spans.append((b, end))
            if select is None or select(name):
                arr = np.empty(count, dtype=npdt)
                f.seek(base + b)
                if f.readinto(memoryview(arr).cast("B")) != end - b:
                    raise ValueError("%s: %s: truncated file" % (path, name))
                out[name] = torch.from_numpy(arr.reshape(e["shape"]))
    spans.sort()
    pos = 0
    for b, end in spans:
        if b != pos:
            raise ValueError("%s: hole or overlap at offset %d" % (path, b))
        pos = end
    if base + pos != size:
        raise ValueError("%s: data size mismatch" % path)
    return out


# ---------------------------------------------------------------------------------------------
# configuration

TEXT_DEFAULTS = dict(hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                     num_hidden_layers=12, max_position_embeddings=77, vocab_size=49408,
                     hidden_act="quick_gelu", layer_norm_eps=1e-5)
VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                       num_hidden_layers=12, image_size=224, patch_size=32, num_channels=3,
                       hidden_act="quick_gelu", layer_norm_eps=1e-5)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def full_config(cfg):
    """A config.json dict -> (text, vision, projection_dim) with the defaults filled in."""
    text = dict(TEXT_DEFAULTS)
    text.update(cfg.get("text_config") or {})
    vision = dict(VISION_DEFAULTS)
    vision.update(cfg.get("vision_config") or {})
    for t in (text, vision):
        if t["hidden_act"] != "quick_gelu":
            raise ValueError("only quick_gelu is implemented here")
    return text, vision, int(cfg.get("projection_dim", 512))


# ---------------------------------------------------------------------------------------------
# weights

def _tower_names(prefix, L):
    for i in range(L):
        p = "%s.encoder.layers.%d." % (prefix, i)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            yield p + "self_attn.%s.weight" % proj, ("qk" if proj in ("q_proj", "k_proj")
                                                     else "lin",)
            yield p + "self_attn.%s.bias" % proj, ("bias",)
        yield p + "layer_norm1.weight", ("lnw",)
        yield p + "layer_norm1.bias", ("lnb",)
        yield p + "mlp.fc1.weight", ("lin",)
        yield p + "mlp.fc1.bias", ("bias",)
        yield p + "mlp.fc2.weight", ("lin",)
        yield p + "mlp.fc2.bias", ("bias",)
        yield p + "layer_norm2.weight", ("lnw",)
        yield p + "layer_norm2.bias", ("lnb",)


def weight_shapes(cfg):
    """(name, shape, kind) for every tensor of the model, in a fixed order."""
    text, vision, E = full_config(cfg)
    Dt, It, Lt = text["hidden_size"], text["intermediate_size"], text["num_hidden_layers"]
    D, I, L = vision["hidden_size"], vision["intermediate_size"], vision["num_hidden_layers"]
    P, S, C = vision["patch_size"], vision["image_size"], vision["num_channels"]
    npos = (S // P) ** 2 + 1
    out = [
        ("logit_scale", [], "logit_scale"),
        ("text_model.embeddings.position_ids", [1, text["max_position_embeddings"]], "ids"),
        ("text_model.embeddings.token_embedding.weight", [text["vocab_size"], Dt], "emb"),
        ("text_model.embeddings.position_embedding.weight",
         [text["max_position_embeddings"], Dt], "emb"),
    ]

    def layer_shapes(prefix, Dm, Im, Lm):
        res = []
        for name, (kind,) in _tower_names(prefix, Lm):
            leaf = name.split(".")
            mod, what = leaf[-2], leaf[-1]
            if mod == "fc1":
                shape = [Im, Dm] if what == "weight" else [Im]
            elif mod == "fc2":
                shape = [Dm, Im] if what == "weight" else [Dm]
            else:
                shape = [Dm, Dm] if what == "weight" and kind in ("lin", "qk") else [Dm]
            res.append((name, shape, kind))
        return res

    out += layer_shapes("text_model", Dt, It, Lt)
    out += [("text_model.final_layer_norm.weight", [Dt], "lnw"),
            ("text_model.final_layer_norm.bias", [Dt], "lnb"),
            ("vision_model.embeddings.class_embedding", [D], "emb"),
            ("vision_model.embeddings.patch_embedding.weight", [D, C, P, P], "conv"),
            ("vision_model.embeddings.position_embedding.weight", [npos, D], "emb"),
            ("vision_model.embeddings.position_ids", [1, npos], "ids"),
            ("vision_model.pre_layrnorm.weight", [D], "lnw"),
            ("vision_model.pre_layrnorm.bias", [D], "lnb")]
    out += layer_shapes("vision_model", D, I, L)
    out += [("vision_model.post_layernorm.weight", [D], "lnw"),
            ("vision_model.post_layernorm.bias", [D], "lnb"),
            ("visual_projection.weight", [E, D], "lin"),
            ("text_projection.weight", [E, Dt], "lin")]
    return out


def init_weights(cfg, seed, emb_std=0.5, qk_gain=2.0):
    """Random weights with well-scaled activations: linear weights N(0, 1/in) (query and key
    projections qk_gain times that std, so attention is peaked rather than near uniform and
    errors in scaling or masking show), biases
    N(0, 0.02), LayerNorm weight 1 + N(0, 0.1) and bias N(0, 0.05), embeddings N(0, emb_std),
    logit_scale = log(100). Deterministic for a given seed (tensors drawn in a fixed order)."""
    g = torch.Generator().manual_seed(seed)
    w = {}
    for name, shape, kind in weight_shapes(cfg):
        if kind == "logit_scale":
            t = torch.tensor(math.log(100.0), dtype=torch.float32)
        elif kind == "ids":
            t = torch.arange(shape[1], dtype=torch.int64).reshape(shape)
        elif kind == "emb":
            t = torch.randn(shape, generator=g) * emb_std
        elif kind == "lin":
            t = torch.randn(shape, generator=g) / math.sqrt(shape[1])
        elif kind == "qk":
            t = torch.randn(shape, generator=g) * (qk_gain / math.sqrt(shape[1]))
        elif kind == "conv":
            t = torch.randn(shape, generator=g) / math.sqrt(shape[1] * shape[2] * shape[3])
        elif kind == "bias":
            t = torch.randn(shape, generator=g) * 0.02
        elif kind == "lnw":
            t = 1.0 + torch.randn(shape, generator=g) * 0.1
        elif kind == "lnb":
            t = torch.randn(shape, generator=g) * 0.05
        else:
            raise AssertionError(kind)
        w[name] = t.contiguous()
    return w


def weights_to(w, dtype):
    """Float tensors cast to `dtype` (integer buffers unchanged)."""
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in w.items()}


# ---------------------------------------------------------------------------------------------
# model

def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def _ln(x, w, prefix, eps):
    return F.layer_norm(x, (x.shape[-1],), w[prefix + ".weight"], w[prefix + ".bias"], eps)


def _lin(x, w, prefix, bias=True):
    return F.linear(x, w[prefix + ".weight"], w[prefix + ".bias"] if bias else None)


def _heads(t, H):
    n, D = t.shape[-2], t.shape[-1]
    return t.reshape(t.shape[:-2] + (n, H, D // H)).transpose(-3, -2)  # [..., H, n, hd]


def _merge(t):
    t = t.transpose(-3, -2)  # [..., n, H, hd]
    return t.reshape(t.shape[:-2] + (t.shape[-2] * t.shape[-1],))


def _mlp(x, w, p, eps):
    h = _ln(x, w, p + "layer_norm2", eps)
    return _lin(quick_gelu(_lin(h, w, p + "mlp.fc1")), w, p + "mlp.fc2")


def block(x, w, p, H, eps, causal=False):
    """One pre-norm transformer block; x [..., n, D]; p = "...layers.i." prefix."""
    y = _ln(x, w, p + "layer_norm1", eps)
    q = _heads(_lin(y, w, p + "self_attn.q_proj"), H)
    k = _heads(_lin(y, w, p + "self_attn.k_proj"), H)
    v = _heads(_lin(y, w, p + "self_attn.v_proj"), H)
    s = q.shape[-1] ** -0.5
    a = torch.matmul(q * s, k.transpose(-1, -2))
    if causal:
        n = a.shape[-1]
        mask = torch.full((n, n), float("-inf")).triu(1)
        a = a + mask
    a = torch.softmax(a, dim=-1)
    x = x + _lin(_merge(torch.matmul(a, v)), w, p + "self_attn.out_proj")
    return x + _mlp(x, w, p, eps)


def naclip_gaussian(gh, gw, sigma=5.0):
    """G [1+gh*gw, 1+gh*gw]: exp(-|p-p'|^2 / (2 sigma^2)) between patch tokens (grid positions,
    row-major), 0 in the class token's row and column."""
    ys, xs = torch.meshgrid(torch.arange(gh, dtype=torch.float32),
                            torch.arange(gw, dtype=torch.float32), indexing="ij")
    pos = torch.stack([ys.reshape(-1), xs.reshape(-1)], dim=1)
    d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)
    g = torch.zeros(1 + gh * gw, 1 + gh * gw)
    g[1:, 1:] = torch.exp(-d2 / (2.0 * sigma * sigma))
    return g


VARIANTS = ("vanilla", "maskclip", "sclip", "clearclip", "naclip")


def last_block(x, w, p, H, eps, variant, grid):
    """The last vision block under a training-free dense variant (SPEC 1)."""
    if variant == "vanilla":
        return block(x, w, p, H, eps)
    y = _ln(x, w, p + "layer_norm1", eps)
    q = _heads(_lin(y, w, p + "self_attn.q_proj"), H)
    k = _heads(_lin(y, w, p + "self_attn.k_proj"), H)
    v = _heads(_lin(y, w, p + "self_attn.v_proj"), H)
    s = q.shape[-1] ** -0.5

    def out(t):
        return _lin(_merge(t), w, p + "self_attn.out_proj")

    if variant == "maskclip":
        x = x + out(v)
        return x + _mlp(x, w, p, eps)
    if variant == "sclip":
        a = (torch.softmax(torch.matmul(q * s, q.transpose(-1, -2)), dim=-1)
             + torch.softmax(torch.matmul(k * s, k.transpose(-1, -2)), dim=-1))
        x = x + out(torch.matmul(a, v))
        return x + _mlp(x, w, p, eps)
    if variant == "clearclip":
        a = torch.softmax(torch.matmul(q * s, q.transpose(-1, -2)), dim=-1)
        return out(torch.matmul(a, v))
    if variant == "naclip":
        g = naclip_gaussian(grid[0], grid[1])
        a = torch.softmax(torch.matmul(k * s, k.transpose(-1, -2)) + g, dim=-1)
        return out(torch.matmul(a, v))
    raise ValueError("unknown variant " + variant)


def interp_pos_embed(pos, g0, gh, gw):
    """pos [1+g0*g0, D] -> [1+gh*gw, D]: grid part resized bicubically (align_corners=False),
    the class position kept."""
    if (gh, gw) == (g0, g0):
        return pos
    D = pos.shape[1]
    grid = pos[1:].reshape(1, g0, g0, D).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(gh * gw, D)
    return torch.cat([pos[:1], grid], dim=0)


def vision_forward(w, cfg, pixels, variants=("vanilla",), rec=None):
    """pixels [B,3,H,W] (normalised) -> dict with "image_embeds" [B,E] and "dense.<v>"
    [B,gh*gw,E] per variant. With `rec` (a dict), intermediate stages are stored in it."""
    _, vc, _ = full_config(cfg)
    P, D, H = vc["patch_size"], vc["hidden_size"], vc["num_attention_heads"]
    L, eps = vc["num_hidden_layers"], vc["layer_norm_eps"]
    g0 = vc["image_size"] // P
    B, _, Hh, Ww = pixels.shape
    gh, gw = Hh // P, Ww // P
    pre = "vision_model."
    x = F.conv2d(pixels, w[pre + "embeddings.patch_embedding.weight"], stride=P)
    x = x.flatten(2).transpose(1, 2)  # [B, gh*gw, D], row-major over the grid
    cls = w[pre + "embeddings.class_embedding"].reshape(1, 1, D).expand(B, 1, D)
    x = torch.cat([cls, x], dim=1)
    pos = interp_pos_embed(w[pre + "embeddings.position_embedding.weight"], g0, gh, gw)
    x = x + pos
    if rec is not None:
        rec["grid"] = (gh, gw)
        rec["pos_embed"] = pos
        rec["embeddings"] = x
    x = _ln(x, w, pre + "pre_layrnorm", eps)
    if rec is not None:
        rec["pre_ln"] = x
    for i in range(L - 1):
        x = block(x, w, pre + "encoder.layers.%d." % i, H, eps)
        if rec is not None:
            rec["layer%d" % i] = x
    res = {}
    lp = pre + "encoder.layers.%d." % (L - 1)

    def project(t):
        return F.linear(_ln(t, w, pre + "post_layernorm", eps), w["visual_projection.weight"])

    for v in variants:
        xl = last_block(x, w, lp, H, eps, v, (gh, gw))
        if v == "vanilla":
            res["image_embeds"] = project(xl[:, 0])
            if rec is not None:
                rec["layer%d" % (L - 1)] = xl
        if rec is not None:
            rec["last." + v] = xl
        res["dense." + v] = project(xl[:, 1:])
    return res


def pad_ids(ids):
    """Token id lists -> [n, T] int64, zero-padded to the longest (the tokens after the end
    token are never read: the pooled row is the largest id's)."""
    T = max(len(x) for x in ids)
    out = torch.zeros(len(ids), T, dtype=torch.int64)
    for i, x in enumerate(ids):
        out[i, :len(x)] = torch.tensor(x)
    return out


def text_forward(w, cfg, ids, rec=None):
    """ids [n,T] int64 -> dict "pooled" [n,Dt] (final LN at the largest id) and "embeds"
    [n,E]. With `rec`, stores "embeddings" and "layer<i>" [n,T,Dt]."""
    tc, _, _ = full_config(cfg)
    H, L, eps = tc["num_attention_heads"], tc["num_hidden_layers"], tc["layer_norm_eps"]
    pre = "text_model."
    T = ids.shape[1]
    x = (F.embedding(ids, w[pre + "embeddings.token_embedding.weight"])
         + w[pre + "embeddings.position_embedding.weight"][:T])
    if rec is not None:
        rec["embeddings"] = x
    for i in range(L):
        x = block(x, w, pre + "encoder.layers.%d." % i, H, eps, causal=True)
        if rec is not None:
            rec["layer%d" % i] = x
    x = _ln(x, w, pre + "final_layer_norm", eps)
    eot = ids.argmax(dim=-1)
    pooled = x[torch.arange(ids.shape[0]), eot]
    return {"pooled": pooled, "embeds": F.linear(pooled, w["text_projection.weight"]),
            "eot_pos": eot}


def to_pixels(img_u8, mean=CLIP_MEAN, std=CLIP_STD):
    """uint8 [H,W,3] -> float32 planar [3,H,W]: (x/255 - mean) / std per channel."""
    x = torch.tensor(img_u8, dtype=torch.float32).permute(2, 0, 1) / 255.0
    m = torch.tensor(mean, dtype=torch.float32).reshape(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).reshape(3, 1, 1)
    return ((x - m) / s).contiguous()


def vit_flops(S, P, D, I, L, E, C=3):
    """Multiply-add FLOPs (2*M*N*K per matmul) of a ViT image forward at S x S: patch
    embedding, per block q/k/v/out, attention scores and weighted sum, MLP; then the pooled
    and dense projections."""
    g = S // P
    N = g * g + 1
    f = 2 * g * g * D * (C * P * P)
    per = 4 * 2 * N * D * D + 2 * 2 * N * N * D + 2 * 2 * N * D * I
    f += L * per
    f += 2 * N * D * E  # projection of the class token and the gh*gw dense tokens
    return f


# ---------------------------------------------------------------------------------------------
# tokenizer

SOT, EOT = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map (dict byte -> str), in its order."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
          + list(range(ord("\xae"), ord("\xff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _cat(ch):
    return unicodedata.category(ch)[0]


def _is_space(ch):
    """\\s of the pattern: Unicode White_Space. Python's str.isspace() also accepts the
    separators U+001C..U+001F, which the pattern does not."""
    return ch.isspace() and not "\x1c" <= ch <= "\x1f"


_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def pre_split(text):
    """The CLIP pattern <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|
    [\\p{N}]|[^\\s\\p{L}\\p{N}]+ as a scanner (findall semantics: leftmost alternative first,
    characters matching nothing skipped)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        hit = None
        for lit in (SOT, EOT) + _CONTRACTIONS:
            if text.startswith(lit, i):
                hit = lit
                break
        if hit is not None:
            out.append(hit)
            i += len(hit)
            continue
        c = text[i]
        if _cat(c) == "L":
            j = i + 1
            while j < n and _cat(text[j]) == "L":
                j += 1
        elif _cat(c) == "N":
            j = i + 1
        elif not _is_space(c):
            j = i + 1
            while j < n and not _is_space(text[j]) and _cat(text[j]) not in "LN":
                j += 1
        else:
            i += 1
            continue
        out.append(text[i:j])
        i = j
    return out


def clean_text(text):
    """html-unescape twice, collapse whitespace runs to one space, strip, lowercase, NFC (the
    order of SPEC 1)."""
    text = html.unescape(html.unescape(text))
    text = " ".join(text.split())
    return unicodedata.normalize("NFC", text.strip().lower())


def _word_symbols(piece, b2u):
    s = "".join(b2u[b] for b in piece.encode("utf-8"))
    return list(s[:-1]) + [s[-1] + "</w>"]


def learn_merges(corpus, n_merges):
    """Greedy BPE on `corpus` (a list of strings) in CLIP's word format: repeatedly merge the
    most frequent adjacent pair (ties: the smallest pair in string order); a pair whose result
    is already a token is skipped, so every merge adds a new token."""
    b2u = bytes_to_unicode()
    freq = {}
    for line in corpus:
        for piece in pre_split(clean_text(line)):
            if piece in (SOT, EOT):
                continue
            key = tuple(_word_symbols(piece, b2u))
            freq[key] = freq.get(key, 0) + 1
    tokens = set(b2u.values()) | {c + "</w>" for c in b2u.values()}
    merges, banned = [], set()
    words = dict(freq)
    while len(merges) < n_merges:
        counts = {}
        for wd, f in words.items():
            for a, b in zip(wd, wd[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + f
        cands = [(-c, p) for p, c in counts.items() if p not in banned]
        if not cands:
            break
        _, best = min(cands)
        if best[0] + best[1] in tokens:
            banned.add(best)
            continue
        merges.append(best)
        tokens.add(best[0] + best[1])
        new = {}
        for wd, f in words.items():
            out, i = [], 0
            while i < len(wd):
                if i + 1 < len(wd) and (wd[i], wd[i + 1]) == best:
                    out.append(wd[i] + wd[i + 1])
                    i += 2
                else:
                    out.append(wd[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + f
        words = new
    return merges


def vocab_from_merges(merges):
    """CLIP's vocabulary order: 256 byte characters, the same with </w>, one token per merge,
    then <|startoftext|> and <|endoftext|>."""
    base = list(bytes_to_unicode().values())
    vocab = base + [v + "</w>" for v in base] + ["".join(m) for m in merges] + [SOT, EOT]
    enc = {}
    for i, t in enumerate(vocab):
        if t in enc:
            raise ValueError("duplicate token %r" % t)
        enc[t] = i
    return enc


class Tokenizer:
    def __init__(self, merges):
        self.b2u = bytes_to_unicode()
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.encoder = vocab_from_merges(merges)
        self.sot, self.eot = self.encoder[SOT], self.encoder[EOT]

    def bpe(self, piece):
        if piece in (SOT, EOT):
            return [piece]
        word = _word_symbols(piece, self.b2u)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == best[0] and word[i + 1] == best[1]:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return word

    def encode(self, text, context=77):
        ids = []
        for piece in pre_split(clean_text(text)):
            ids += [self.encoder[t] for t in self.bpe(piece)]
        ids = [self.sot] + ids + [self.eot]
        if len(ids) > context:
            ids = ids[:context - 1] + [self.eot]
        return ids


def write_tokenizer(dirpath, merges):
    enc = vocab_from_merges(merges)
    with open(os.path.join(dirpath, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(enc, f, ensure_ascii=False)
    with open(os.path.join(dirpath, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (a, b))


def write_json(path, obj, **kw):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, **kw)
        f.write("\n")


if sys.byteorder != "little":
    raise RuntimeError("the safetensors writer assumes a little-endian host")
