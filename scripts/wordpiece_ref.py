#!/usr/bin/python3
"""A plain-Python BERT uncased WordPiece tokenizer (the rules of SPEC-simseg 2.4.6), used as
the independent reference for models/simseg/wordpiece.c and by scripts/simseg_reference.py.

It follows the Hugging Face `tokenizers` pipeline of BertTokenizerFast: special-token strings
matched in the raw text, then clean text, CJK spacing, NFD + drop Mn, lowercase per character,
split on whitespace and punctuation, greedy longest-match WordPiece, [CLS] ... [SEP], pad.
Unicode data come from Python's unicodedata (independent of utf8proc).

As a script it writes tests/data/simseg/wordpiece_cases.json: strings and their ids under the
bert-base-uncased vocabulary (the shared fixture bert/vocab.txt, not copied):
    scripts/wordpiece_ref.py [--vocab ../shared/fixtures/bert/vocab.txt]
"""

import argparse
import json
import os
import unicodedata

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MAX_CHARS = 100


def load_vocab(path):
    vocab = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line.rstrip("\r\n \t")] = i
    return vocab


def _control(ch):
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch).startswith("C")


def _space(ch):
    return ch in " \t\n\r\u2028\u2029" or unicodedata.category(ch) == "Zs"


def _cjk(cp):
    return any(lo <= cp <= hi for lo, hi in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def _punct(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def normalize(text):
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _control(ch):
            continue
        if _space(ch):
            out.append(" ")
        elif _cjk(cp):
            out.append(" " + ch + " ")
        else:
            out.append(ch)
    s = unicodedata.normalize("NFD", "".join(out))
    s = "".join(c for c in s if unicodedata.category(c) != "Mn")
    # per character, as the Rust pipeline maps each char (no final-sigma context)
    return "".join(c.lower() for c in s)


def pre_tokenize(s):
    words, cur = [], []
    for ch in s:
        if _space(ch) or _punct(ch):
            if cur:
                words.append("".join(cur))
                cur = []
            if _punct(ch):
                words.append(ch)
        else:
            cur.append(ch)
    if cur:
        words.append("".join(cur))
    return words


def wordpiece(word, vocab):
    if len(word) > MAX_CHARS:
        return [vocab["[UNK]"]]
    ids, start = [], 0
    while start < len(word):
        end = len(word)
        found = None
        while end > start:
            piece = word[start:end]
            if start > 0:
                piece = "##" + piece
            if piece in vocab:
                found = vocab[piece]
                break
            end -= 1
        if found is None:
            return [vocab["[UNK]"]]
        ids.append(found)
        start = end
    return ids


def pieces(text, vocab):
    """Word-piece ids of text, special-token strings included, no [CLS]/[SEP]."""
    ids, seg, i = [], 0, 0
    while i < len(text):
        best = None
        if text[i] == "[":
            for sp in SPECIALS:
                if sp in vocab and text.startswith(sp, i) and (best is None or len(sp) > len(best)):
                    best = sp
        if best is None:
            i += 1
            continue
        for w in pre_tokenize(normalize(text[seg:i])):
            ids += wordpiece(w, vocab)
        ids.append(vocab[best])
        i += len(best)
        seg = i
    for w in pre_tokenize(normalize(text[seg:])):
        ids += wordpiece(w, vocab)
    return ids


def encode(text, vocab, max_len=25):
    """([CLS] pieces [SEP] [PAD]..., attention mask), truncated to max_len."""
    p = pieces(text, vocab)[:max_len - 2]
    ids = [vocab["[CLS]"]] + p + [vocab["[SEP]"]]
    mask = [1] * len(ids)
    while len(ids) < max_len:
        ids.append(vocab["[PAD]"])
        mask.append(0)
    return ids, mask


CASES = [
    "a bad photo of a aeroplane.",
    "a photo of a cat.",
    "A PHOTO OF THE Dog!",
    "",
    "   ",
    "itap of my tvmonitor.",
    "a photo of the pottedplant, diningtable and motorbike.",
    "Crème brûlée at the café in São Paulo",
    "Ångström naïve façade Øresund straße",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ",
    "東京タワー and 北京 are 中文字",
    "한국어 텍스트",
    "don't stop-believing... (really?) [yes] {no} <maybe> #1 $5 @home",
    "«quotes» “curly” — dash… ¿qué? ¡sí!",
    "tab\tnew\nline\rcarriage\u00a0nbsp\u2003emspace\u2028ls",
    "zero\u200bwidth soft\u00adhyphen ctrl\u0007bell rep\ufffdl",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "x" * 100,
    "y" * 101,
    "a" + "\u0301" * 120,
    "emoji 😀 🐱 ☃ and symbols ± § ©",
    "Ελληνικά ΟΔΟΣ русский ТЕКСТ",
    "[CLS] a [MASK] photo [SEP] of [UNK][PAD]x [cls] [MASK",
    "numbers 3.14159 1,000,000 42nd 2nd-floor",
    "a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a",
    "a photo of the large background with many really long words in it to overflow",
    "the ﬁne ligature ﬀ ½ ² ℃ ㎏",
    "İstanbul DİYARBAKIR ǅemal",
]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", default=os.path.join(root, "..", "shared", "fixtures", "bert",
                                                    "vocab.txt"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "simseg",
                                                  "wordpiece_cases.json"))
    a = ap.parse_args()
    vocab = load_vocab(a.vocab)
    cases = []
    for text in CASES:
        ids, mask = encode(text, vocab)
        cases.append({"text": text, "ids": ids, "n_valid": sum(mask),
                      "pieces": len(pieces(text, vocab))})
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump({"vocab_lines": len(vocab), "max_length": 25, "cases": cases}, f,
                  ensure_ascii=True, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
