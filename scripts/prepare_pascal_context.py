#!/usr/bin/python3
"""Convert the official PASCAL Context annotations to the mmsegmentation layout.

usage:
  prepare_pascal_context.py --voc2010 VOCdevkit/VOC2010 --mat-dir trainval/ [--labels labels.txt]
                            [--splits DIR] [--out DIR] [--limit N]
  prepare_pascal_context.py --voc2010 VOCdevkit/VOC2010 --detail-json trainval_merged.json
                            [--out DIR] [--limit N]
  prepare_pascal_context.py --print-mapping

Inputs (one of the two annotation sources):
  --mat-dir      the official release (trainval.tar.gz): one <id>.mat per image whose LabelMap
                 holds 459-class ids (0 = unlabeled, 1..459 = the lines of labels.txt). Needs
                 scipy (Debian: python3-scipy). The release has no split: train and val are
                 the VOC2010 lists ImageSets/Main/{train,val}.txt under --voc2010 (4,998 and
                 5,105 images, the official PASCAL Context split), or --splits DIR.
  --detail-json  the PASCAL-in-Detail file mmsegmentation's converter reads. Each image has a
                 "phase" (train / val; other phases are skipped) and its annotations are COCO
                 run-length encodings (compressed strings, column-major) with a 459-space
                 category_id; the class map paints them in file order, later ones on top, 0
                 where none covers a pixel. Decoded here without the Detail API.
                 mmsegmentation asserts that this file only uses the 59 ids (and 0); here any
                 other id becomes background like in the .mat route, and the closing line says
                 what share of the pixels that was.

Output, under --out (default: the --voc2010 folder, which the harness reads as
ROOT/VOCdevkit/VOC2010):
  SegmentationClassContext/<id>.png        8-bit greyscale, 0 = background, 1..59 the classes
  ImageSets/SegmentationContext/train.txt  sorted ids, one per line (and val.txt)
Every file is written to a temporary name and renamed. Progress goes to stderr; an error is one
line "prepare_pascal_context: error: ..." and exit status 1.

The 459 -> 60 mapping: the 59 ids below, in ascending order, become 1..59; 0 and every other
id become 0 (background). Sources of the facts:
  - the ids are the official 59-class subset of the PASCAL Context release, numbered as in its
    labels.txt ("N: name", N = 1..459); the names column is that file's spelling;
  - mmsegmentation's tools/dataset_converters/pascal_context.py (tools/convert_datasets/ in
    older versions) lists the same 59 ids plus 0, sorts them and maps with
    np.digitize(right=True) into the key 0..59, so its class index is the rank of the id;
  - the ascending-id order is the order of datasets/classnames/context60.txt lines 2..60; that
    file spells five names for the text encoder (keyboard: computer keyboard, mouse: computer
    mouse, pottedplant: potted plant, track: railway track, tvmonitor: tv monitor), given in the
    third column. --print-mapping prints the table (the tests compare it with context60.txt).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from PIL import Image

PROG = "prepare_pascal_context"

# (459-space id, name in labels.txt, first name on the context60.txt line); index = position + 1
CLASSES = [
    (2, "aeroplane", "aeroplane"), (9, "bag", "bag"), (18, "bed", "bed"),
    (19, "bedclothes", "bedclothes"), (22, "bench", "bench"), (23, "bicycle", "bicycle"),
    (25, "bird", "bird"), (31, "boat", "boat"), (33, "book", "book"), (34, "bottle", "bottle"),
    (44, "building", "building"), (45, "bus", "bus"), (46, "cabinet", "cabinet"),
    (59, "car", "car"), (65, "cat", "cat"), (68, "ceiling", "ceiling"), (72, "chair", "chair"),
    (80, "cloth", "cloth"), (85, "computer", "computer"), (98, "cow", "cow"), (104, "cup", "cup"),
    (105, "curtain", "curtain"), (113, "dog", "dog"), (115, "door", "door"),
    (144, "fence", "fence"), (158, "floor", "floor"), (159, "flower", "flower"),
    (162, "food", "food"), (187, "grass", "grass"), (189, "ground", "ground"),
    (207, "horse", "horse"), (220, "keyboard", "computer keyboard"), (232, "light", "light"),
    (258, "motorbike", "motorbike"), (259, "mountain", "mountain"),
    (260, "mouse", "computer mouse"), (284, "person", "person"), (295, "plate", "plate"),
    (296, "platform", "platform"), (308, "pottedplant", "potted plant"), (324, "road", "road"),
    (326, "rock", "rock"), (347, "sheep", "sheep"), (349, "shelves", "shelves"),
    (354, "sidewalk", "sidewalk"), (355, "sign", "sign"), (360, "sky", "sky"),
    (366, "snow", "snow"), (368, "sofa", "sofa"), (397, "table", "table"),
    (415, "track", "railway track"), (416, "train", "train"), (420, "tree", "tree"),
    (424, "truck", "truck"), (427, "tvmonitor", "tv monitor"), (440, "wall", "wall"),
    (445, "water", "water"), (454, "window", "window"), (458, "wood", "wood"),
]
MAX_ID = 459
OFFICIAL_COUNTS = {"train": 4998, "val": 5105}
SPLITS = ("train", "val")

LUT = np.zeros(MAX_ID + 1, np.uint8)
for _k, (_id, _, _) in enumerate(CLASSES):
    LUT[_id] = _k + 1


class Failure(Exception):
    pass


def fail(msg):
    raise Failure(msg)


def note(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


# ---- 459 -> 60 ----

def to_context60(ids, where):
    """uint8 class map of an integer array of 459-space ids; ids outside 0..459 are an error."""
    ids = np.asarray(ids)
    bad = (ids < 0) | (ids > MAX_ID)
    if bad.any():
        y, x = (int(v[0]) for v in np.nonzero(bad))
        fail(f"{where}: label id {int(ids[y, x])} at pixel (x={x}, y={y}) is outside 0..{MAX_ID}")
    return LUT[ids.astype(np.int64)]


# ---- COCO run-length encodings ----

def rle_counts(s, where):
    """Run lengths of a compressed RLE string: 5 bits per character (offset 48), bit 0x20 =
    more characters follow, bit 0x10 of the last one = negative; from the fourth count on the
    value is a difference to the count two places back."""
    counts = []
    p, n = 0, len(s)
    while p < n:
        x = k = 0
        while True:
            if p >= n:
                fail(f"{where}: truncated RLE string")
            c = ord(s[p]) - 48
            if c < 0 or c > 63:
                fail(f"{where}: invalid character {s[p]!r} in RLE string")
            x |= (c & 0x1f) << (5 * k)
            p += 1
            k += 1
            if not c & 0x20:
                if c & 0x10:
                    x -= 1 << (5 * k)
                break
        if len(counts) > 2:
            x += counts[-2]
        if x < 0:
            fail(f"{where}: negative run length in RLE string")
        counts.append(x)
    return counts


def rle_decode(seg, h, w, where):
    """Boolean h x w mask of a COCO RLE {"size": [h, w], "counts": str or list}."""
    if isinstance(seg, list):
        fail(f"{where}: polygon segmentation; only run-length encodings are supported")
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        fail(f"{where}: segmentation is not a run-length encoding (needs size and counts)")
    if list(seg["size"]) != [h, w]:
        fail(f"{where}: RLE size {seg['size']} differs from the image size [{h}, {w}]")
    cnt = seg["counts"]
    if isinstance(cnt, str):
        cnt = rle_counts(cnt, where)
    elif not (isinstance(cnt, list) and all(isinstance(v, int) and v >= 0 for v in cnt)):
        fail(f"{where}: RLE counts must be a string or a list of non-negative integers")
    if sum(cnt) != h * w:
        fail(f"{where}: RLE runs cover {sum(cnt)} pixels, the image has {h * w}")
    values = np.arange(len(cnt)) % 2 == 1  # runs alternate 0, 1, 0, ...
    flat = np.repeat(values, cnt)
    return flat.reshape(w, h).T  # column-major


# ---- output ----

def atomic_write(path, save):
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_png(path, arr):
    atomic_write(path, lambda t: Image.fromarray(arr).save(t, format="PNG"))


def write_lines(path, lines):
    def save(t):
        with open(t, "w") as f:
            f.writelines(s + "\n" for s in lines)
    atomic_write(path, save)


def check_image(voc, sid, h, w):
    p = os.path.join(voc, "JPEGImages", sid + ".jpg")
    if not os.path.isfile(p):
        fail(f"image {p} does not exist")
    try:
        with Image.open(p) as im:
            iw, ih = im.size
    except OSError as e:
        fail(f"cannot read the image {p}: {e}")
    if (iw, ih) != (w, h):
        fail(f"size mismatch: image {p} is {iw}x{ih}, its annotation is {w}x{h}")


class Progress:
    def __init__(self, split, total, quiet):
        self.split, self.total, self.quiet = split, total, quiet
        self.t0 = time.time()

    def step(self, i):
        if not self.quiet and (i == self.total or i % 500 == 0):
            note(f"{self.split}: {i}/{self.total} ({time.time() - self.t0:.0f} s)")


# ---- the .mat route ----

def read_split(path):
    if not os.path.isfile(path):
        fail(f"split list {path} does not exist (the .mat release has no split: pass --splits "
             f"DIR holding train.txt and val.txt, or use the VOC2010 ImageSets/Main lists)")
    with open(path) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    return sorted(set(ids))


def check_labels_txt(path):
    """Compare the 59 names with the release's labels.txt ("N: name" lines)."""
    names = {}
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            num, sep, name = line.partition(":")
            if not sep or not num.strip().isdigit():
                fail(f"{path}:{ln}: expected 'N: name'")
            names[int(num)] = name.strip()
    for cid, name, _ in CLASSES:
        if names.get(cid) != name:
            fail(f"{path}: id {cid} is {names.get(cid)!r}, the mapping expects {name!r}")


def load_labelmap(path, loadmat):
    try:
        m = loadmat(path, variable_names=["LabelMap"])
    except NotImplementedError as e:  # MATLAB v7.3 (HDF5) files
        fail(f"{path}: cannot read this .mat version: {e}")
    except Exception as e:
        fail(f"{path}: cannot read: {e}")
    if "LabelMap" not in m:
        fail(f"{path}: no LabelMap variable")
    lm = m["LabelMap"]
    if lm.ndim != 2 or lm.size == 0:
        fail(f"{path}: LabelMap has shape {lm.shape}, expected a 2-D array")
    if not np.issubdtype(lm.dtype, np.integer):
        if not np.issubdtype(lm.dtype, np.floating) or not np.all(lm == np.round(lm)):
            fail(f"{path}: LabelMap has non-integer values ({lm.dtype})")
        lm = lm.astype(np.int64)
    return lm


def convert_mats(a):
    try:
        from scipy.io import loadmat
    except ImportError:
        fail("--mat-dir needs scipy (Debian: apt-get install python3-scipy)")
    if not os.path.isdir(a.mat_dir):
        fail(f"--mat-dir {a.mat_dir} is not a folder")
    labels = a.labels
    if labels is None:
        for cand in (os.path.join(a.mat_dir, "labels.txt"),
                     os.path.join(os.path.dirname(os.path.abspath(a.mat_dir)), "labels.txt")):
            if os.path.isfile(cand):
                labels = cand
                break
    if labels:
        if not os.path.isfile(labels):
            fail(f"--labels {labels} does not exist")
        check_labels_txt(labels)
        note(f"class names checked against {labels}")
    else:
        note("no labels.txt given or found next to --mat-dir: class names not checked")
    split_dir = a.splits or os.path.join(a.voc2010, "ImageSets", "Main")
    splits = {s: read_split(os.path.join(split_dir, s + ".txt")) for s in SPLITS}
    mats = {f[:-4] for f in os.listdir(a.mat_dir) if f.endswith(".mat")}
    listed = set(splits["train"]) | set(splits["val"])
    if mats - listed:
        note(f"{len(mats - listed)} .mat files are in neither split and are skipped")
    stats = {"other": 0, "pixels": 0}

    def one(sid):
        p = os.path.join(a.mat_dir, sid + ".mat")
        if sid not in mats:
            fail(f"{p} does not exist (listed in the split)")
        lm = load_labelmap(p, loadmat)
        out = to_context60(lm, p)
        stats["other"] += int(np.count_nonzero((out == 0) & (lm != 0)))
        stats["pixels"] += out.size
        return out

    return splits, one, stats


# ---- the Detail JSON route ----

def convert_detail(a):
    if not os.path.isfile(a.detail_json):
        fail(f"--detail-json {a.detail_json} does not exist")
    note(f"reading {a.detail_json}")
    try:
        with open(a.detail_json) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{a.detail_json}: cannot parse: {e}")
    if not isinstance(data, dict):
        fail(f"{a.detail_json}: not a JSON object")
    for key in ("images", "annos_segmentation"):
        if not isinstance(data.get(key), list):
            fail(f"{a.detail_json}: no '{key}' list (not a PASCAL-in-Detail file?)")
    cats = {c.get("category_id"): c.get("name") for c in data.get("categories") or []}
    if cats:
        for cid, name, _ in CLASSES:
            if cats.get(cid) != name:
                fail(f"{a.detail_json}: category {cid} is {cats.get(cid)!r}, "
                     f"the mapping expects {name!r}")
    else:
        note("no categories in the JSON: class names not checked")
    images, splits, other_phase = {}, {s: [] for s in SPLITS}, 0
    for img in data["images"]:
        try:
            iid, fn, h, w, ph = (img["image_id"], img["file_name"], int(img["height"]),
                                 int(img["width"]), img.get("phase"))
        except (KeyError, TypeError, ValueError):
            fail(f"{a.detail_json}: image entry without image_id, file_name, height, width: "
                 f"{str(img)[:80]}")
        sid = os.path.splitext(os.path.basename(fn))[0]
        if ph not in splits:
            other_phase += 1
            continue
        images[iid] = (sid, h, w)
        splits[ph].append(sid)
    if other_phase:
        note(f"{other_phase} images of other phases (not train or val) are skipped")
    # annotations by id (a repeated id replaces the earlier entry in its place), then by image
    segs = {}
    for i, ann in enumerate(data["annos_segmentation"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "category_id" not in ann:
            fail(f"{a.detail_json}: annos_segmentation[{i}] lacks image_id or category_id")
        segs[ann.get("id", ("#", i))] = ann
    by_image = {}
    for ann in segs.values():
        by_image.setdefault(ann["image_id"], []).append(ann)
    by_sid = {images[iid][0]: iid for iid in images}
    for s in SPLITS:
        splits[s] = sorted(set(splits[s]))
    stats = {"other": 0, "pixels": 0}

    def one(sid):
        iid = by_sid[sid]
        _, h, w = images[iid]
        ids = np.zeros((h, w), np.int64)
        for ann in by_image.get(iid, []):
            where = f"{a.detail_json}: annotation {ann.get('id', '?')} of {sid}"
            cid = ann["category_id"]
            if not isinstance(cid, int) or not 0 <= cid <= MAX_ID:
                fail(f"{where}: category_id {cid!r} is outside 0..{MAX_ID}")
            ids[rle_decode(ann.get("segmentation"), h, w, where)] = cid
        out = to_context60(ids, f"{a.detail_json}: {sid}")
        stats["other"] += int(np.count_nonzero((out == 0) & (ids != 0)))
        stats["pixels"] += out.size
        return out

    return splits, one, stats


# ---- main ----

def print_mapping():
    print("index\tid459\tlabels.txt\tcontext60.txt")
    print("0\t0\t(unlabeled and other ids)\tbackground")
    for k, (cid, name, cname) in enumerate(CLASSES):
        print(f"{k + 1}\t{cid}\t{name}\t{cname}")


def run(a):
    if a.print_mapping:
        print_mapping()
        return
    if (a.mat_dir is None) == (a.detail_json is None):
        fail("give exactly one of --mat-dir and --detail-json")
    if a.voc2010 is None:
        fail("--voc2010 is required")
    if not os.path.isdir(a.voc2010):
        fail(f"--voc2010 {a.voc2010} is not a folder")
    if not os.path.isdir(os.path.join(a.voc2010, "JPEGImages")):
        fail(f"{os.path.join(a.voc2010, 'JPEGImages')} does not exist (--voc2010 is the "
             f"VOCdevkit/VOC2010 folder)")
    if a.limit is not None and a.limit < 1:
        fail("--limit must be at least 1")
    if a.splits and a.detail_json:
        fail("--splits applies to --mat-dir (the Detail JSON has its own phases)")
    out = a.out or a.voc2010
    out_lbl = os.path.join(out, "SegmentationClassContext")
    out_set = os.path.join(out, "ImageSets", "SegmentationContext")
    if a.mat_dir is not None:
        splits, one, stats = convert_mats(a)
    else:
        splits, one, stats = convert_detail(a)
    both = set(splits["train"]) & set(splits["val"])
    if both:
        fail(f"{len(both)} ids are in both train and val, e.g. {sorted(both)[0]}")
    for s in SPLITS:
        if len(splits[s]) != OFFICIAL_COUNTS[s]:
            note(f"{s}: {len(splits[s])} ids (the official split has {OFFICIAL_COUNTS[s]})")
        if a.limit is not None:
            splits[s] = splits[s][:a.limit]
    os.makedirs(out_lbl, exist_ok=True)
    os.makedirs(out_set, exist_ok=True)
    for s in SPLITS:
        prog = Progress(s, len(splits[s]), a.quiet)
        for i, sid in enumerate(splits[s], 1):
            m = one(sid)
            check_image(a.voc2010, sid, *m.shape)
            write_png(os.path.join(out_lbl, sid + ".png"), m)
            prog.step(i)
        write_lines(os.path.join(out_set, s + ".txt"), splits[s])
    frac = stats["other"] / max(stats["pixels"], 1)
    note(f"wrote {len(splits['train'])} train and {len(splits['val'])} val label maps to "
         f"{out_lbl}{' (partial: --limit)' if a.limit is not None else ''}; "
         f"{100 * frac:.2f}% of the pixels had other classes (now background)")


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog=PROG, description=__doc__.splitlines()[0],
        epilog=__doc__[__doc__.index("Inputs"):], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--voc2010", help="VOCdevkit/VOC2010 (with JPEGImages)")
    ap.add_argument("--mat-dir", help="folder of the official <id>.mat files (trainval/)")
    ap.add_argument("--detail-json", help="the Detail file trainval_merged.json")
    ap.add_argument("--labels", help="labels.txt of the release (default: looked for in and "
                    "next to --mat-dir) to check the class names")
    ap.add_argument("--splits", help="folder with train.txt and val.txt for --mat-dir "
                    "(default: VOC2010/ImageSets/Main)")
    ap.add_argument("--out", help="folder to write into (default: --voc2010); the harness "
                    "reads labels and JPEGImages from the same VOC2010 folder, so link the "
                    "images there when writing elsewhere")
    ap.add_argument("--limit", type=int, help="convert only the first N ids of each split")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument("--print-mapping", action="store_true",
                    help="print the 459 -> 60 table and exit")
    a = ap.parse_args(argv)
    try:
        run(a)
    except Failure as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
