#!/usr/bin/python3
"""Tests of prepare_pascal_context.py on tiny made-up inputs (no real dataset needed).

usage (from the repository root, after `make`):  scripts/test_prepare_pascal_context.py [-v]

- the mapping table against datasets/classnames/context60.txt;
- run-length strings decoded against hand-worked values;
- the Detail JSON route end to end (numpy and PIL only);
- the .mat route end to end with LabelMap arrays written by scipy.io.savemat (skipped when
  scipy is missing), including its one-line errors;
- the output read back by `build/harness labels` for context60 and context59 (skipped when
  the harness is not built; HX_BUILD names another build folder).
The Check suite tests/test_context_prep.c runs this file under `make test`.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "prepare_pascal_context.py")
HARNESS = os.path.join(REPO, os.environ.get("HX_BUILD") or "build", "harness")

try:
    import scipy.io
    HAVE_SCIPY = True
except ImportError:
    HAVE_SCIPY = False

_spec = importlib.util.spec_from_file_location("prepare_pascal_context", SCRIPT)
ppc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ppc)

# Expected indices for a few 459-space ids, worked out by hand from the sorted id list
# (0 and ids outside the 59 give background).
KNOWN = {0: 0, 1: 0, 2: 1, 9: 2, 100: 0, 284: 37, 397: 50, 415: 51, 458: 59, 459: 0}


def run(*args):
    p = subprocess.run([sys.executable, SCRIPT, "--quiet", *args], capture_output=True,
                       text=True)
    return p.returncode, p.stderr


def jpeg(path, w, h):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (w, h), (90, 120, 150)).save(path, quality=90)


def rle_string(mask):
    """COCO compressed RLE of a boolean mask (written here from the format description, the
    decoder under test being the script's)."""
    flat = mask.T.ravel()  # column-major
    counts, cur, n = [], False, 0
    for v in flat:
        if v != cur:
            counts.append(n)
            cur, n = v, 0
        n += 1
    counts.append(n)
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        while True:
            c = x & 0x1f
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
            if not more:
                break
    return "".join(out)


def harness_labels(dataset, root, sid, out):
    p = subprocess.run([HARNESS, "labels", "--dataset", dataset, "--root", root, "--id", sid,
                        "--out", out], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


class Mapping(unittest.TestCase):
    def test_table_matches_context60(self):
        with open(os.path.join(REPO, "datasets", "classnames", "context60.txt")) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 60)
        self.assertEqual(lines[0].split(", ")[0], "background")
        ids = [c[0] for c in ppc.CLASSES]
        self.assertEqual(len(ids), 59)
        self.assertEqual(ids, sorted(set(ids)))
        self.assertTrue(all(1 <= i <= 459 for i in ids))
        for k, (cid, name, cname) in enumerate(ppc.CLASSES):
            self.assertEqual(lines[k + 1].split(", ")[0], cname,
                             f"index {k + 1} (459-id {cid}, {name})")
        for i, want in KNOWN.items():
            self.assertEqual(int(ppc.LUT[i]), want, f"id {i}")

    def test_print_mapping(self):
        p = subprocess.run([sys.executable, SCRIPT, "--print-mapping"], capture_output=True,
                           text=True)
        self.assertEqual(p.returncode, 0)
        rows = [r.split("\t") for r in p.stdout.splitlines()[1:]]
        self.assertEqual(len(rows), 60)
        self.assertEqual(rows[51][:3], ["51", "415", "track"])


class RunLength(unittest.TestCase):
    def test_hand_worked_strings(self):
        # one character per small count; "O" is -1 from the fourth count on (delta to two
        # back: 2 - 1 = 1); "T3" is 100 in two 5-bit groups; "hN" is -40 (50 - 40 = 10)
        cases = {"325": [3, 2, 5], "325O": [3, 2, 5, 1], "T3": [100],
                 ":b1:hN": [10, 50, 10, 10], "": []}
        for s, want in cases.items():
            self.assertEqual(ppc.rle_counts(s, "t"), want, s)

    def test_decode_is_column_major(self):
        m = ppc.rle_decode({"size": [2, 3], "counts": [1, 2, 3]}, 2, 3, "t")
        # runs 0, 1 1, 0 0 0 down the columns
        self.assertEqual(m.tolist(), [[False, True, False], [True, False, False]])
        rng = np.random.default_rng(1)
        for _ in range(20):
            h, w = rng.integers(1, 40, 2)
            mask = rng.random((h, w)) < rng.random()
            got = ppc.rle_decode({"size": [int(h), int(w)], "counts": rle_string(mask)},
                                 int(h), int(w), "t")
            self.assertTrue(np.array_equal(got, mask))

    def test_bad_encodings(self):
        for seg, msg in [({"size": [2, 2], "counts": [1, 2]}, "cover 3"),
                         ({"size": [2, 3], "counts": [4]}, "differs"),
                         ([[0, 0, 1, 1, 0, 1]], "polygon"),
                         ({"size": [2, 2], "counts": "3 "}, "invalid character")]:
            with self.assertRaises(ppc.Failure) as cm:
                ppc.rle_decode(seg, 2, 2, "t")
            self.assertIn(msg, str(cm.exception))


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ctxprep-")
        self.root = os.path.join(self.tmp, "root")
        self.voc = os.path.join(self.root, "VOCdevkit", "VOC2010")
        os.makedirs(os.path.join(self.voc, "JPEGImages"))

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def out_png(self, sid):
        return np.array(Image.open(os.path.join(self.voc, "SegmentationClassContext",
                                                sid + ".png")))

    def split(self, name):
        with open(os.path.join(self.voc, "ImageSets", "SegmentationContext",
                               name + ".txt")) as f:
            return f.read().splitlines()

    def check_harness(self, sid, want):
        if not os.access(HARNESS, os.X_OK):
            self.skipTest(f"{HARNESS} not built (run make)")
        out = os.path.join(self.tmp, "h.png")
        rc, log = harness_labels("context60", self.root, sid, out)
        self.assertEqual(rc, 0, log)
        self.assertTrue(np.array_equal(np.array(Image.open(out)), want))
        rc, log = harness_labels("context59", self.root, sid, out)
        self.assertEqual(rc, 0, log)
        want59 = np.where(want == 0, 255, want.astype(np.int64) - 1)
        self.assertTrue(np.array_equal(np.array(Image.open(out)), want59))


class DetailJson(Base):
    def make(self, anns=None, cats=None):
        # image A (train): 5x4 with three overlapping annotations; B (val): 3x6 with one of
        # another class (459-id 100 -> background) and one track; C (test phase): skipped;
        # D (val): no annotations.
        a = np.zeros((4, 5), bool)
        a[0:2, 0:3] = True
        b = np.zeros((4, 5), bool)
        b[1:4, 2:5] = True
        c = np.zeros((4, 5), bool)
        c[3, :] = True
        d = np.zeros((6, 3), bool)
        d[:, 0] = True
        e = np.zeros((6, 3), bool)
        e[4:, :] = True
        self.want = {
            "2008_000001": np.zeros((4, 5), np.uint8),
            "2008_000002": np.zeros((6, 3), np.uint8),
            "2008_000004": np.zeros((2, 2), np.uint8),
        }
        wa = self.want["2008_000001"]
        wa[a] = KNOWN[284]
        wa[b] = KNOWN[2]   # painted after 284: on top
        wa[c] = KNOWN[458]
        wb = self.want["2008_000002"]
        wb[d] = 0          # id 100
        wb[e] = KNOWN[415]
        images = [
            {"image_id": 2008000001, "file_name": "2008_000001.jpg", "height": 4, "width": 5,
             "phase": "train"},
            {"image_id": 2008000002, "file_name": "2008_000002.jpg", "height": 6, "width": 3,
             "phase": "val"},
            {"image_id": 2008000003, "file_name": "2008_000003.jpg", "height": 2, "width": 2,
             "phase": "test"},
            {"image_id": 2008000004, "file_name": "2008_000004.jpg", "height": 2, "width": 2,
             "phase": "val"},
        ]
        for im in images:
            jpeg(os.path.join(self.voc, "JPEGImages", im["file_name"]), im["width"],
                 im["height"])

        def ann(i, img, cid, m):
            return {"id": i, "image_id": img, "category_id": cid, "iscrowd": 0,
                    "segmentation": {"size": list(m.shape), "counts": rle_string(m)}}
        if anns is None:
            anns = [ann(1, 2008000001, 284, a), ann(2, 2008000002, 100, d),
                    ann(3, 2008000001, 2, b), ann(4, 2008000001, 458, c),
                    ann(5, 2008000002, 415, e), ann(6, 2008000003, 2, np.ones((2, 2), bool))]
        if cats is None:
            cats = [{"category_id": i, "name": n} for i, n, _ in ppc.CLASSES]
            cats += [{"category_id": 100, "name": "crabstick"}]
        path = os.path.join(self.tmp, "trainval_merged.json")
        with open(path, "w") as f:
            json.dump({"images": images, "annos_segmentation": anns, "categories": cats}, f)
        return path

    def test_convert_and_read_back(self):
        js = self.make()
        rc, err = run("--voc2010", self.voc, "--detail-json", js)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.split("train"), ["2008_000001"])
        self.assertEqual(self.split("val"), ["2008_000002", "2008_000004"])
        self.assertFalse(os.path.exists(os.path.join(self.voc, "SegmentationClassContext",
                                                     "2008_000003.png")))
        for sid, want in self.want.items():
            got = self.out_png(sid)
            self.assertEqual(got.dtype, np.uint8)
            self.assertTrue(np.array_equal(got, want), f"{sid}:\n{got}\n{want}")
        leftovers = [f for f in os.listdir(os.path.join(self.voc, "SegmentationClassContext"))
                     if ".tmp" in f]
        self.assertEqual(leftovers, [])
        self.check_harness("2008_000002", self.want["2008_000002"])

    def test_limit(self):
        js = self.make()
        rc, err = run("--voc2010", self.voc, "--detail-json", js, "--limit", "1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.split("val"), ["2008_000002"])
        self.assertIn("partial", err)

    def test_errors(self):
        js = self.make(anns=[{"id": 9, "image_id": 2008000001, "category_id": 460,
                              "segmentation": {"size": [4, 5], "counts": [20]}}])
        rc, err = run("--voc2010", self.voc, "--detail-json", js)
        self.assertEqual(rc, 1)
        self.assertIn("category_id 460 is outside 0..459", err)
        self.assertEqual([ln for ln in err.splitlines() if "error" in ln],
                         err.strip().splitlines()[-1:], err)
        js = self.make(cats=[{"category_id": 2, "name": "airplane"}])
        rc, err = run("--voc2010", self.voc, "--detail-json", js)
        self.assertEqual(rc, 1)
        self.assertIn("category 2 is 'airplane'", err)
        rc, err = run("--voc2010", self.voc, "--detail-json", os.path.join(self.tmp, "no.json"))
        self.assertEqual(rc, 1)
        self.assertIn("no.json does not exist", err)
        rc, err = run("--voc2010", os.path.join(self.tmp, "nowhere"), "--detail-json", js)
        self.assertEqual(rc, 1)
        self.assertIn("is not a folder", err)
        # an image whose JPEG has another size than the annotation
        js = self.make()
        jpeg(os.path.join(self.voc, "JPEGImages", "2008_000001.jpg"), 7, 4)
        rc, err = run("--voc2010", self.voc, "--detail-json", js)
        self.assertEqual(rc, 1)
        self.assertIn("size mismatch", err)


@unittest.skipUnless(HAVE_SCIPY, "python3-scipy missing: the .mat route is not tested")
class MatFiles(Base):
    IDS = {"train": ["2008_000010"], "val": ["2008_000011", "2008_000012"]}

    def make(self, lm=None):
        self.mats = os.path.join(self.tmp, "trainval")
        os.makedirs(self.mats)
        main = os.path.join(self.voc, "ImageSets", "Main")
        os.makedirs(main)
        for s, ids in self.IDS.items():
            with open(os.path.join(main, s + ".txt"), "w") as f:
                f.write("".join(i + "\n" for i in ids))
        ids = np.array(sorted(KNOWN), np.uint16)   # every hand-worked id
        self.labelmaps = {
            "2008_000010": np.resize(ids, (3, 7)),
            "2008_000011": np.resize(ids[::-1], (4, 5)),
            "2008_000012": np.full((2, 3), 284, np.uint16),
        }
        if lm:
            self.labelmaps.update(lm)
        for sid, m in self.labelmaps.items():
            scipy.io.savemat(os.path.join(self.mats, sid + ".mat"), {"LabelMap": m})
            h, w = np.shape(m) if np.ndim(m) == 2 else (2, 2)
            jpeg(os.path.join(self.voc, "JPEGImages", sid + ".jpg"), w, h)
        # a .mat in no split: skipped
        scipy.io.savemat(os.path.join(self.mats, "2008_000099.mat"),
                         {"LabelMap": np.zeros((2, 2), np.uint16)})
        with open(os.path.join(self.tmp, "labels.txt"), "w") as f:
            names = {i: n for i, n, _ in ppc.CLASSES}
            f.write("".join(f"{i}: {names.get(i, f'other{i}')}\n" for i in range(1, 460)))

    def test_convert_and_read_back(self):
        self.make()
        rc, err = run("--voc2010", self.voc, "--mat-dir", self.mats)
        self.assertEqual(rc, 0, err)
        self.assertIn("class names checked", err)
        self.assertIn("1 .mat files are in neither split", err)
        self.assertEqual(self.split("train"), self.IDS["train"])
        self.assertEqual(self.split("val"), self.IDS["val"])
        for sid, lm in self.labelmaps.items():
            want = np.vectorize(KNOWN.get)(lm.astype(np.int64)).astype(np.uint8)
            got = self.out_png(sid)
            self.assertTrue(np.array_equal(got, want), f"{sid}:\n{lm}\n{got}")
        self.assertFalse(os.path.exists(os.path.join(self.voc, "SegmentationClassContext",
                                                     "2008_000099.png")))
        self.check_harness("2008_000011", self.out_png("2008_000011"))

    def test_labels_txt_mismatch(self):
        self.make()
        with open(os.path.join(self.tmp, "labels.txt"), "a") as f:
            f.write("415: railway\n")
        rc, err = run("--voc2010", self.voc, "--mat-dir", self.mats)
        self.assertEqual(rc, 1)
        self.assertIn("id 415 is 'railway'", err)

    def test_errors(self):
        self.make({"2008_000011": np.array([[0, 2], [460, 9]], np.uint16)})
        rc, err = run("--voc2010", self.voc, "--mat-dir", self.mats)
        self.assertEqual(rc, 1)
        self.assertIn("label id 460 at pixel (x=0, y=1) is outside 0..459", err)
        self.assertEqual([ln for ln in err.splitlines() if "error" in ln],
                         err.strip().splitlines()[-1:], err)
        scipy.io.savemat(os.path.join(self.mats, "2008_000011.mat"),
                         {"Other": np.zeros((2, 2), np.uint16)})
        rc, err = run("--voc2010", self.voc, "--mat-dir", self.mats)
        self.assertEqual(rc, 1)
        self.assertIn("2008_000011.mat: no LabelMap variable", err)
        os.remove(os.path.join(self.mats, "2008_000011.mat"))
        rc, err = run("--voc2010", self.voc, "--mat-dir", self.mats)
        self.assertEqual(rc, 1)
        self.assertIn("2008_000011.mat does not exist", err)
        rc, err = run("--voc2010", self.voc, "--mat-dir", os.path.join(self.tmp, "none"))
        self.assertEqual(rc, 1)
        self.assertIn("is not a folder", err)
        rc, err = run("--voc2010", self.voc, "--mat-dir", self.mats, "--splits", self.tmp)
        self.assertEqual(rc, 1)
        self.assertIn("train.txt does not exist", err)
        rc, err = run("--voc2010", self.voc)
        self.assertEqual(rc, 1)
        self.assertIn("exactly one of", err)


if __name__ == "__main__":
    unittest.main()
