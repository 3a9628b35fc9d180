#include "models/simseg/wordpiece.h"

#include "harness/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

struct hx_wordpiece {
    char *path;
    char **tokens;      /* [n] token strings, id = index */
    int n;
    int32_t *slots;     /* open-addressing table of ids, -1 empty; size mask + 1 */
    uint32_t mask;
    int32_t unk, cls, sep, pad;
    int32_t special[5]; /* ids of [PAD] [UNK] [CLS] [SEP] [MASK] (-1 when absent) */
};

static const char *const special_names[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* id of the n bytes at s, or -1 */
static int32_t lookup(const struct hx_wordpiece *t, const char *s, size_t n)
{
    for (uint32_t i = hash_bytes(s, n) & t->mask;; i = (i + 1) & t->mask) {
        int32_t id = t->slots[i];
        if (id < 0)
            return -1;
        const char *tok = t->tokens[id];
        if (strlen(tok) == n && !memcmp(tok, s, n))
            return id;
    }
}

int32_t hx_wordpiece_id(const struct hx_wordpiece *t, const char *token)
{
    return lookup(t, token, strlen(token));
}

const char *hx_wordpiece_token(const struct hx_wordpiece *t, int32_t id)
{
    return id >= 0 && id < t->n ? t->tokens[id] : NULL;
}

int hx_wordpiece_vocab_size(const struct hx_wordpiece *t) { return t->n; }

void hx_wordpiece_free(struct hx_wordpiece *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n; i++)
        free(t->tokens[i]);
    free(t->tokens);
    free(t->slots);
    free(t->path);
    free(t);
}

int hx_wordpiece_open(struct hx_wordpiece **out, const char *vocab_path)
{
    struct hx_wordpiece *t = NULL;
    FILE *f = NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0, captok = 0;
    *out = NULL;
    t = hx_calloc(1, sizeof *t, "WordPiece tokenizer");
    if (!t)
        return HX_ENOMEM;
    if (!(t->path = strdup(vocab_path))) {
        rc = hx_err(HX_ENOMEM, "out of memory reading %s", vocab_path);
        goto fail;
    }
    if (!(f = fopen(vocab_path, "rb"))) {
        rc = hx_err(HX_EIO, "cannot open WordPiece vocabulary %s", vocab_path);
        goto fail;
    }
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
                           line[len - 1] == ' ' || line[len - 1] == '\t'))
            line[--len] = 0;
        if (memchr(line, 0, (size_t)len)) {
            rc = hx_err(HX_EFORMAT, "%s: line %d holds a NUL byte", vocab_path, t->n + 1);
            goto fail;
        }
        if (t->n == captok) {
            captok = captok ? 2 * captok : 1024;
            char **p = realloc(t->tokens, sizeof *p * captok);
            if (!p) {
                rc = hx_err(HX_ENOMEM, "out of memory reading %s", vocab_path);
                goto fail;
            }
            t->tokens = p;
        }
        if (!(t->tokens[t->n] = strdup(line))) {
            rc = hx_err(HX_ENOMEM, "out of memory reading %s", vocab_path);
            goto fail;
        }
        t->n++;
    }
    if (ferror(f)) {
        rc = hx_err(HX_EIO, "error reading %s", vocab_path);
        goto fail;
    }
    if (t->n == 0) {
        rc = hx_err(HX_EFORMAT, "%s: empty WordPiece vocabulary", vocab_path);
        goto fail;
    }
    uint32_t size = 1;
    while (size < 2u * (uint32_t)t->n)
        size <<= 1;
    t->mask = size - 1;
    t->slots = hx_malloc(sizeof *t->slots * size, "WordPiece vocabulary table");
    if (!t->slots) {
        rc = HX_ENOMEM;
        goto fail;
    }
    memset(t->slots, 0xff, sizeof *t->slots * size);
    for (int id = 0; id < t->n; id++) {
        const char *s = t->tokens[id];
        size_t n = strlen(s);
        uint32_t i = hash_bytes(s, n) & t->mask;
        /* a repeated token keeps the last line's id, as a dict filled in order does */
        while (t->slots[i] >= 0 && strcmp(t->tokens[t->slots[i]], s))
            i = (i + 1) & t->mask;
        t->slots[i] = id;
    }
    for (int i = 0; i < 5; i++)
        t->special[i] = hx_wordpiece_id(t, special_names[i]);
    t->pad = t->special[0];
    t->unk = t->special[1];
    t->cls = t->special[2];
    t->sep = t->special[3];
    for (int i = 0; i < 4; i++)
        if (t->special[i] < 0) {
            rc = hx_err(HX_EFORMAT, "%s: the vocabulary has no %s token", vocab_path,
                        special_names[i]);
            goto fail;
        }
    fclose(f);
    free(line);
    *out = t;
    return 0;
fail:
    if (f)
        fclose(f);
    free(line);
    hx_wordpiece_free(t);
    return rc;
}

/* ------------------------------------------------------------ normaliser */

static int is_control(int32_t c)
{
    if (c == '\t' || c == '\n' || c == '\r')
        return 0;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CS:
        return 1;
    default:
        return 0;
    }
}

/* Whitespace as the normaliser and pre-tokeniser see it (control characters are removed
 * before this is asked, so of the White_Space set only these remain). */
static int is_space(int32_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0x2028 || c == 0x2029 ||
           utf8proc_category(c) == UTF8PROC_CATEGORY_ZS;
}

static int is_cjk(int32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static int is_punct(int32_t c)
{
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
        (c >= 123 && c <= 126))
        return 1;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        return 1;
    default:
        return 0;
    }
}

/* Growable output of ids. */
struct idbuf {
    int32_t *ids;
    int cap, n;
};

static void emit(struct idbuf *b, int32_t id)
{
    if (b->n < b->cap)
        b->ids[b->n] = id;
    b->n++;
}

/* WordPiece of one word given as code points w[n]. `scratch` holds at least 4n + 3 bytes. */
static void wordpiece_word(const struct hx_wordpiece *t, const int32_t *w, int n, char *scratch,
                           size_t *off, struct idbuf *b)
{
    if (n > HX_WORDPIECE_MAX_CHARS) {
        emit(b, t->unk);
        return;
    }
    /* UTF-8 of the word after "##", with off[i] the byte offset of code point i */
    char *s = scratch + 2;
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        off[i] = len;
        len += (size_t)utf8proc_encode_char(w[i], (uint8_t *)s + len);
    }
    off[n] = len;
    int first = b->n, start = 0;
    while (start < n) {
        int end = n;
        int32_t id = -1;
        for (; end > start; end--) {
            char *p = s + off[start];
            size_t l = off[end] - off[start];
            if (start > 0) {
                /* "##" written just before the piece; restore the bytes afterwards */
                char save0 = p[-2], save1 = p[-1];
                p[-2] = '#';
                p[-1] = '#';
                id = lookup(t, p - 2, l + 2);
                p[-2] = save0;
                p[-1] = save1;
            } else {
                id = lookup(t, p, l);
            }
            if (id >= 0)
                break;
        }
        if (id < 0) {
            b->n = first; /* the whole word is unknown */
            emit(b, t->unk);
            return;
        }
        emit(b, id);
        start = end;
    }
}

/* Normalise, pre-tokenise and WordPiece the bytes s[len] (no special tokens inside). */
static int encode_segment(const struct hx_wordpiece *t, const char *text, const char *s,
                          size_t len, struct idbuf *b)
{
    int rc = 0;
    uint8_t *clean = NULL;
    int32_t *nfd = NULL;
    char *scratch = NULL;
    size_t *off = NULL;
    /* 1. clean text and space out CJK ideographs, re-encoded as UTF-8 (at most 3x + 4) */
    clean = hx_malloc(3 * len + 4, "tokenizer buffer");
    if (!clean)
        return HX_ENOMEM;
    size_t cl = 0;
    for (size_t i = 0; i < len;) {
        int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0) {
            rc = hx_err(HX_EINVAL, "text \"%.60s\" is not valid UTF-8 (byte %zu)", text,
                        (size_t)(s - text) + i);
            goto done;
        }
        i += (size_t)k;
        if (c == 0 || c == 0xFFFD || is_control(c))
            continue;
        if (is_space(c)) {
            clean[cl++] = ' ';
        } else if (is_cjk(c)) {
            clean[cl++] = ' ';
            cl += (size_t)utf8proc_encode_char(c, clean + cl);
            clean[cl++] = ' ';
        } else {
            cl += (size_t)utf8proc_encode_char(c, clean + cl);
        }
    }
    /* 2. NFD (canonical decomposition and ordering) */
    utf8proc_ssize_t n = utf8proc_decompose(clean, (utf8proc_ssize_t)cl, NULL, 0, UTF8PROC_DECOMPOSE);
    if (n < 0) {
        rc = hx_err(HX_EINVAL, "NFD of text \"%.60s\" failed: %s", text, utf8proc_errmsg(n));
        goto done;
    }
    nfd = hx_malloc(sizeof *nfd * ((size_t)n + 1), "tokenizer buffer");
    if (!nfd) {
        rc = HX_ENOMEM;
        goto done;
    }
    n = utf8proc_decompose(clean, (utf8proc_ssize_t)cl, nfd, n, UTF8PROC_DECOMPOSE);
    /* 3. drop nonspacing marks, lowercase */
    utf8proc_ssize_t m = 0;
    for (utf8proc_ssize_t i = 0; i < n; i++)
        if (utf8proc_category(nfd[i]) != UTF8PROC_CATEGORY_MN)
            nfd[m++] = utf8proc_tolower(nfd[i]);
    scratch = hx_malloc(4 * (size_t)m + 8, "tokenizer buffer");
    off = hx_malloc(sizeof *off * ((size_t)m + 1), "tokenizer buffer");
    if (!scratch || !off) {
        rc = HX_ENOMEM;
        goto done;
    }
    /* 4. words between spaces; punctuation characters stand alone */
    utf8proc_ssize_t w0 = 0;
    for (utf8proc_ssize_t i = 0; i <= m; i++) {
        int end = i == m || is_space(nfd[i]) || is_punct(nfd[i]);
        if (!end)
            continue;
        if (i > w0)
            wordpiece_word(t, nfd + w0, (int)(i - w0), scratch, off, b);
        if (i < m && is_punct(nfd[i]))
            wordpiece_word(t, nfd + i, 1, scratch, off, b);
        w0 = i + 1;
    }
done:
    free(clean);
    free(nfd);
    free(scratch);
    free(off);
    return rc;
}

static int encode_all(const struct hx_wordpiece *t, const char *text, struct idbuf *b)
{
    size_t len = strlen(text), seg = 0;
    int rc;
    for (size_t i = 0; i < len; i++) {
        if (text[i] != '[')
            continue;
        int best = -1;
        size_t bl = 0;
        for (int k = 0; k < 5; k++) {
            size_t l = strlen(special_names[k]);
            if (t->special[k] >= 0 && l > bl && !strncmp(text + i, special_names[k], l)) {
                best = k;
                bl = l;
            }
        }
        if (best < 0)
            continue;
        if ((rc = encode_segment(t, text, text + seg, i - seg, b)))
            return rc;
        emit(b, t->special[best]);
        i += bl - 1;
        seg = i + 1;
    }
    return encode_segment(t, text, text + seg, len - seg, b);
}

int hx_wordpiece_pieces(const struct hx_wordpiece *t, const char *text, int32_t *ids, int cap)
{
    struct idbuf b = {ids, cap, 0};
    int rc = encode_all(t, text, &b);
    return rc ? rc : b.n;
}

int hx_wordpiece_encode(const struct hx_wordpiece *t, const char *text, int max_len,
                        int32_t *ids, int32_t *mask)
{
    if (max_len < 2)
        return hx_err(HX_EINVAL, "WordPiece max_len %d < 2", max_len);
    struct idbuf b = {ids + 1, max_len - 2, 0};
    int rc = encode_all(t, text, &b);
    if (rc)
        return rc;
    int k = b.n < max_len - 2 ? b.n : max_len - 2;
    ids[0] = t->cls;
    ids[k + 1] = t->sep;
    for (int i = k + 2; i < max_len; i++)
        ids[i] = t->pad;
    if (mask)
        for (int i = 0; i < max_len; i++)
            mask[i] = i < k + 2;
    return k + 2;
}
