#!/usr/bin/python3
"""Reference outputs of the dense segmentation protocol (SPEC 2) on the tiny CLIP model.

    scripts/dense_reference.py        # writes tests/data/dense/

Independent of the C code: the protocol is written here in PyTorch from the SPEC and the
released SCLIP/NACLIP order (resize with OpenCV's uint8 bilinear as mmcv does, mmseg slide
windows, per-name scores on the token grid through the ensemble rule, bilinear upsampling to
each window, sum / count, bilinear resize to the label size, PAMR, softmax over names, max over
a class's names, area_thd, argmax, prob_thd). Needs python3-opencv (only to regenerate).

Files: image.png (the input), bank.safetensors (member embeddings [M, E], the number of
subclasses per name, the class of each name), cases.json (the parameters of each case) and
expected.safetensors (<case>.probs [C, H, W] and <case>.pred [H, W] as I64).
"""

import json
import os
import sys

import cv2
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hxref  # noqa: E402
from pamr_reference import pamr, rescale_size, slide_windows  # noqa: E402

ROOT = os.path.dirname(HERE)
MODEL = os.path.join(ROOT, "tests/data/clip/tiny")
OUT = os.path.join(ROOT, "tests/data/dense")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name -> class; name 1 is a synonym of class 0; subclasses per name
NAME_CLASS = [0, 0, 1, 2, 3]
N_SUB = [0, 0, 3, 4, 2]

CASES = [
    dict(name="sclip", variant="sclip", short_side=40, crop=24, stride=16, logit_scale=40.0,
         prob_thd=0.3, area_thd=0.1, rule="super", k=0, include_super=0),
    dict(name="naclip_pamr", variant="naclip", short_side=32, crop=0, stride=0,
         logit_scale=40.0, prob_thd=0.1, area_thd=-1, pamr_iters=3, pamr_dilations=[1, 2],
         rule="super", k=0, include_super=0),
    dict(name="maskclip", variant="maskclip", short_side=48, crop=0, stride=0,
         logit_scale=100.0, prob_thd=0, area_thd=-1, argmax_cos=1, imagenet=1, rule="super",
         k=0, include_super=0),
    dict(name="ens_max", variant="clearclip", short_side=40, crop=24, stride=16,
         logit_scale=50.0, prob_thd=0, area_thd=-1, rule="max", k=2, include_super=0),
    dict(name="ens_softmax", variant="vanilla", short_side=36, crop=24, stride=12,
         logit_scale=40.0, prob_thd=0.2, area_thd=-1, rule="embed-softmax", k=3,
         include_super=1),
]


def make_image(h, w, seed):
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float64)
    for c in range(3):
        img[..., c] = 128 + 90 * np.sin(x / (4 + 3 * c) + c) * np.cos(y / (5 + 2 * c))
    img[h // 3:, : w // 2] = (200, 40, 40)  # a few flat regions give PAMR edges to follow
    img += g.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def members(bank, n_sub, name, case):
    """Rows of the bank used for one name under (k, include_super)."""
    off = sum(1 + s for s in n_sub[:name])
    k = min(case["k"], n_sub[name])
    if case["rule"] == "super" or k == 0:
        return [off]
    rows = list(range(off + 1, off + 1 + k))
    return rows + [off] if case["include_super"] else rows


def name_scores(tok, pooled, bank, case):
    """tok [g, E] normalised dense tokens -> [N, g] per-name scores."""
    out = []
    for name in range(len(N_SUB)):
        rows = members(bank, N_SUB, name, case)
        m = bank[rows]  # [k, E]
        cos = tok @ m.T  # [g, k]
        if case["rule"] in ("super",):
            out.append(cos[:, 0])
        elif case["rule"] == "max":
            out.append(cos.max(dim=1).values)
        elif case["rule"] == "embed-softmax":
            g = F.normalize(pooled, dim=-1) @ m.T  # [k]
            wts = torch.softmax(g, dim=0)
            e = (wts[:, None] * m).sum(0)
            out.append(tok @ (e / e.norm()))
        else:
            raise ValueError(case["rule"])
    return torch.stack(out, 0)


def run_case(w, cfg, img_u8, bank, case):
    H0, W0 = img_u8.shape[:2]
    P = cfg["vision_config"]["patch_size"]
    h, wd = rescale_size(H0, W0, (2048, case["short_side"]))
    rs = cv2.resize(img_u8, (wd, h), interpolation=cv2.INTER_LINEAR)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if case.get("imagenet") else (hxref.CLIP_MEAN,
                                                                            hxref.CLIP_STD)
    x = hxref.to_pixels(rs, mean, std)  # [3, h, w]
    N, C = len(N_SUB), max(NAME_CLASS) + 1
    acc = torch.zeros(N, h, wd)
    cnt = torch.zeros(1, h, wd)
    for y1, y2, x1, x2 in slide_windows(h, wd, case["crop"], case["crop"], case["stride"],
                                        case["stride"]):
        crop = x[:, y1:y2, x1:x2].unsqueeze(0)
        out = hxref.vision_forward(w, cfg, crop, variants=(case["variant"], "vanilla"))
        tok = F.normalize(out["dense." + case["variant"]][0], dim=-1)
        gh, gw = (y2 - y1) // P, (x2 - x1) // P
        s = name_scores(tok, out["image_embeds"][0], bank, case).reshape(1, N, gh, gw)
        s = F.interpolate(s, size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False)
        acc[:, y1:y2, x1:x2] += s[0]
        cnt[:, y1:y2, x1:x2] += 1
    acc = acc / cnt
    maps = F.interpolate(acc[None], size=(H0, W0), mode="bilinear", align_corners=False)[0]
    if case.get("pamr_iters"):
        guide = F.interpolate(x[None], size=(H0, W0), mode="bilinear", align_corners=False)[0]
        maps = pamr(guide.double(), maps.double(), case["pamr_dilations"],
                    case["pamr_iters"]).float()
    onehot = torch.zeros(C, N)
    onehot[torch.tensor(NAME_CLASS), torch.arange(N)] = 1
    if case.get("argmax_cos"):
        cls = (maps[None] * onehot[:, :, None, None] - 1e9 * (1 - onehot)[:, :, None, None])
        cls = cls.max(1).values
        return cls, cls.argmax(0)
    prob = torch.softmax(case["logit_scale"] * maps.double(), dim=0).float()
    cls = (prob[None] * onehot[:, :, None, None]).max(1).values  # [C, H0, W0]
    if case["area_thd"] >= 0:
        am = cls.argmax(0)
        area = torch.stack([(am == c).sum() for c in range(C)]).double()
        keep = (area[1:] > case["area_thd"] * area[1:].sum()).float()
        cls[1:] *= keep[:, None, None]
    pred = cls.argmax(0)
    pred[cls.max(0).values < case["prob_thd"]] = 0
    return cls, pred


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    cfg = json.load(open(os.path.join(MODEL, "config.json")))
    w = hxref.read_safetensors(os.path.join(MODEL, "model.safetensors"))
    w = {k: v.float() if v.is_floating_point() else v for k, v in w.items()}
    img = make_image(37, 53, 7)
    cv2.imwrite(os.path.join(OUT, "image.png"), img[:, :, ::-1])

    # Members near the image's own tokens, so that the segmentation is not trivial.
    x = hxref.to_pixels(img[:32, :48])
    tok = F.normalize(hxref.vision_forward(w, cfg, x[None], ("vanilla",))["dense.vanilla"][0], dim=-1)
    g = torch.Generator().manual_seed(3)
    rows = []
    for name, n in enumerate(N_SUB):
        base = tok[(name * 5) % tok.shape[0]]
        for i in range(1 + n):
            rows.append(F.normalize(base + 0.6 * torch.randn(base.shape, generator=g), dim=0))
    bank = torch.stack(rows)
    hxref.write_safetensors(os.path.join(OUT, "bank.safetensors"), list({
        "emb": bank, "n_sub": torch.tensor(N_SUB, dtype=torch.int64),
        "name_class": torch.tensor(NAME_CLASS, dtype=torch.int64)}.items()))

    expected = {}
    for case in CASES:
        probs, pred = run_case(w, cfg, img, bank, case)
        expected[case["name"] + ".probs"] = probs.contiguous()
        expected[case["name"] + ".pred"] = pred.to(torch.int64).contiguous()
        counts = np.bincount(pred.numpy().ravel(), minlength=max(NAME_CLASS) + 1)
        print("%-12s class pixel counts %s" % (case["name"], counts.tolist()))
    hxref.write_safetensors(os.path.join(OUT, "expected.safetensors"), list(expected.items()))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(CASES, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
