#!/usr/bin/python3
"""Compare `harness tokenize` with a Python implementation of SPEC 1 on random texts.

The Python side uses html.unescape, the `regex` module (Debian: python3-regex) for the CLIP
splitting pattern with IGNORECASE, str.lower and unicodedata NFC, and BPE over the original
merges file. It first checks itself on the fixture cases, then tokenizes random mixtures of
ASCII, whitespace of every kind, entities, contractions, special tokens and Unicode letters,
digits, marks and symbols, through the CLI in batches, and reports every mismatch.

  scripts/check_tokenizer.py [--seed N] [--count N] [--harness build/harness]
                             [--fixtures ../shared/fixtures] [--model DIR|FILE]
  scripts/check_tokenizer.py --table TEXT...   # C rows {"text", {ids}} for the tests

Exit status 0 when everything agrees, 1 otherwise.
"""
import argparse
import gzip
import html
import html.entities
import json
import os
import random
import subprocess
import sys
import unicodedata

try:
    import regex
except ImportError:
    sys.exit("check_tokenizer.py needs the regex module (apt-get install python3-regex)")

PATTERN = (r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|"
           r"[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
CONTEXT = 77


def byte_symbols():
    """Byte -> its one-character symbol (GPT-2 map), and the bytes in vocabulary order."""
    kept = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or b >= 0xAE]
    moved = [b for b in range(256) if b not in kept]
    sym = {b: chr(b) for b in kept}
    sym.update({b: chr(256 + i) for i, b in enumerate(moved)})
    return sym, kept + moved


class Reference:
    def __init__(self, gz_path):
        lines = gzip.open(gz_path).read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1:1 + 49152 - 256 - 2]]
        self.sym, order = byte_symbols()
        tokens = [self.sym[b] for b in order]
        tokens += [s + "</w>" for s in tokens]
        tokens += ["".join(m) for m in merges]
        tokens += ["<|startoftext|>", "<|endoftext|>"]
        self.ids = {tok: i for i, tok in enumerate(tokens)}
        self.rank = {m: r for r, m in enumerate(merges)}
        self.sot, self.eot = self.ids["<|startoftext|>"], self.ids["<|endoftext|>"]
        self.pattern = regex.compile(PATTERN, regex.IGNORECASE)
        self.memo = {}

    @staticmethod
    def clean(text):
        text = html.unescape(html.unescape(text))
        text = regex.sub(r"\s+", " ", text).strip().lower()
        return unicodedata.normalize("NFC", text)

    def word(self, piece):
        if piece in ("<|startoftext|>", "<|endoftext|>"):
            return [self.ids[piece]]
        if piece in self.memo:
            return self.memo[piece]
        syms = [self.sym[b] for b in piece.encode("utf-8")]
        syms[-1] += "</w>"
        while len(syms) > 1:
            ranked = [(self.rank[p], p) for p in zip(syms, syms[1:]) if p in self.rank]
            if not ranked:
                break
            left, right = min(ranked)[1]
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == left and syms[i + 1] == right:
                    out.append(left + right)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            syms = out
        ids = [self.ids[s] for s in syms]
        self.memo[piece] = ids
        return ids

    def encode(self, text):
        ids = [self.sot]
        for piece in self.pattern.findall(self.clean(text)):
            ids += self.word(piece)
        ids.append(self.eot)
        if len(ids) > CONTEXT:
            ids = ids[:CONTEXT - 1] + [self.eot]
        return ids


def random_texts(rng, count):
    assigned = [c for c in range(0x20, 0x30000)
                if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    names = list(html.entities.html5)
    pools = [
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"-&#<>|/()"),
        list(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2009\u200b\u2028\u202f\u3000"),
        ["'s", "'S", "'\u017f", "'LL", "'re", "'ve", "'m", "'d", "'t", "<|startoftext|>",
         "<|endoftext|>", "&lt;|endoftext|&gt;", "&amp;amp;", "&amp;lt;"],
        ["\u0130", "\u03a3", "\u0345", "\u0301", "\u0308", "\u00df", "\ufb01", "\u2160",
         "\u00bd", "\u0660", "\u0967", "\uff21", "\uff11", "\u4e2d", "\u3042", "\uac00",
         "\u1100\u1161", "\U0001F600", "\U0001F44D\U0001F3FD", "\u200d", "\u2019", "\u00b5",
         "\u212a", "\u2126", "\u05d0", "\u0627", "\u0e01"],
        [chr(c) for c in range(0xC0, 0x500) if unicodedata.category(chr(c)) != "Cn"],
        [chr(rng.choice(assigned)) for _ in range(5000)],
        ["&" + rng.choice(names) + rng.choice(["", "x", ";", "abc", " "]) for _ in range(3000)],
        ["&#" + str(rng.choice([0, 9, 13, 65, 127, 128, 150, 159, 931, 0xD800, 0xFFFE,
                                0x110000, 10**30, rng.randint(0, 0x10FFFF)]))
         + rng.choice(["", ";"]) for _ in range(300)],
        ["&#" + rng.choice("xX") + format(rng.randint(0, 0x10FFFF), "x") + rng.choice(["", ";"])
         for _ in range(300)],
    ]
    texts = []
    for _ in range(count):
        n = rng.randint(0, 25) if rng.random() < 0.9 else rng.randint(60, 300)
        texts.append("".join(rng.choice(rng.choice(pools)) for _ in range(n)))
    return texts


def c_string(s):
    out = []
    for b in s.encode("utf-8"):
        out.append(chr(b) if 0x20 <= b < 0x7F and chr(b) not in '"\\?' else "\\%03o" % b)
    return '"' + "".join(out) + '"'


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--harness", default=os.path.join(root, "build/harness"))
    ap.add_argument("--fixtures", default=os.environ.get("HARNESS_FIXTURES") or
                    os.path.join(root, "../shared/fixtures"))
    ap.add_argument("--model", help="what harness tokenize reads (default: the merges file)")
    ap.add_argument("--table", nargs="+", metavar="TEXT")
    args = ap.parse_args()
    gz = os.path.join(args.fixtures, "clip/bpe_simple_vocab_16e6.txt.gz")
    ref = Reference(gz)

    if args.table:
        for text in args.table:
            print("    {%s, {%s}}," % (c_string(text), ", ".join(map(str, ref.encode(text)))))
        return 0

    with open(os.path.join(args.fixtures, "clip/tokenizer_cases.json")) as f:
        cases = json.load(f)
    wrong = [c["text"] for c in cases if ref.encode(c["text"]) != c["ids"]]
    if wrong:
        print("the reference itself disagrees with the fixture on", wrong)
        return 1

    texts = [c["text"] for c in cases] + random_texts(random.Random(args.seed), args.count)
    mismatches = 0
    for k in range(0, len(texts), 400):
        batch = texts[k:k + 400]
        run = subprocess.run([args.harness, "tokenize", "--model", args.model or gz, "--"] + batch,
                             capture_output=True, text=True)
        if run.returncode != 0:
            print("harness failed:", run.stderr.strip())
            return 1
        lines = run.stdout.split("\n")[:-1]
        if len(lines) != len(batch):
            print("harness printed %d lines for %d texts" % (len(lines), len(batch)))
            return 1
        for text, line in zip(batch, lines):
            got, want = [int(x) for x in line.split()], ref.encode(text)
            if got != want:
                mismatches += 1
                if mismatches <= 10:
                    print("MISMATCH %r\n  harness   %s\n  reference %s" % (text, got, want))
    print("%d texts, %d mismatches" % (len(texts), mismatches))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
