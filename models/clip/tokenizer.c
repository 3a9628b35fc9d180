/* The CLIP byte-level BPE tokenizer: vocabulary loading (three file kinds), text splitting,
 * BPE by merge rank, and a word -> ids cache. See tokenizer.h. */
#include "models/clip/tokenizer.h"

#include "harness/error.h"
#include "models/clip/text_norm.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>
#include <zlib.h>

#define SOT_TOKEN "<|startoftext|>"
#define EOT_TOKEN "<|endoftext|>"
#define EOW "</w>"
/* The original vocabulary file holds more merges than CLIP uses: 49152 - 256 - 2 of them. */
#define GZ_MERGES (49152 - 256 - 2)
/* The word cache is dropped and restarted when it grows beyond this. */
#define CACHE_MAX_WORDS 100000

/* ---- an arena of strings that never move -------------------------------------------------- */

struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    char data[];
};

struct arena {
    struct arena_block *head;
    size_t bytes;
};

static char *arena_strdup(struct arena *a, const char *s, size_t n)
{
    struct arena_block *b = a->head;
    if (!b || b->used + n + 1 > b->cap) {
        size_t cap = n + 1 > 65536 ? n + 1 : 65536;
        b = malloc(sizeof *b + cap);
        if (!b) {
            hx_err(HX_ENOMEM, "out of memory allocating %zu bytes of token strings", cap);
            return NULL;
        }
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        a->bytes += cap;
    }
    char *p = b->data + b->used;
    memcpy(p, s, n);
    p[n] = 0;
    b->used += n + 1;
    return p;
}

static void arena_free(struct arena *a)
{
    while (a->head) {
        struct arena_block *n = a->head->next;
        free(a->head);
        a->head = n;
    }
    a->bytes = 0;
}

/* ---- string -> (int32, int32) hash map (open addressing, keys owned by an arena) --------- */

struct str_entry {
    const char *key; /* NULL: empty slot */
    uint32_t len;
    uint32_t hash;
    int32_t a, b;
};

struct strmap {
    struct str_entry *slots;
    size_t cap, count; /* cap is a power of two */
};

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static struct str_entry *strmap_find(const struct strmap *m, const char *s, size_t n, uint32_t h)
{
    if (!m->cap)
        return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        struct str_entry *e = &m->slots[i];
        if (!e->key || (e->hash == h && e->len == n && memcmp(e->key, s, n) == 0))
            return e;
    }
}

static int strmap_grow(struct strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    struct str_entry *slots = hx_calloc(cap, sizeof *slots, "a token hash table");
    if (!slots)
        return HX_ENOMEM;
    struct strmap nm = {slots, cap, m->count};
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            *strmap_find(&nm, m->slots[i].key, m->slots[i].len, m->slots[i].hash) = m->slots[i];
    free(m->slots);
    *m = nm;
    return 0;
}

/* The slot for key s (inserting an empty value when absent, key copied into `a`). */
static struct str_entry *strmap_put(struct strmap *m, struct arena *a, const char *s, size_t n)
{
    if ((m->count + 1) * 2 > m->cap && strmap_grow(m))
        return NULL;
    uint32_t h = hash_bytes(s, n);
    struct str_entry *e = strmap_find(m, s, n, h);
    if (!e->key) {
        const char *k = arena_strdup(a, s, n);
        if (!k)
            return NULL;
        *e = (struct str_entry){k, (uint32_t)n, h, -1, 0};
        m->count++;
    }
    return e;
}

static const struct str_entry *strmap_get(const struct strmap *m, const char *s, size_t n)
{
    const struct str_entry *e = strmap_find(m, s, n, hash_bytes(s, n));
    return e && e->key ? e : NULL;
}

static void strmap_clear(struct strmap *m)
{
    if (m->slots)
        memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->count = 0;
}

/* ---- (left id, right id) -> (rank, merged id) --------------------------------------------- */

struct pair_entry {
    uint64_t key; /* UINT64_MAX: empty */
    int32_t rank, merged;
};

struct pairmap {
    struct pair_entry *slots;
    size_t cap, count;
};

static uint64_t pair_key(int32_t l, int32_t r) { return (uint64_t)(uint32_t)l << 32 | (uint32_t)r; }

static size_t pair_slot(const struct pairmap *m, uint64_t k)
{
    uint64_t h = k * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 32) & (m->cap - 1);
    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != k)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static int pairmap_init(struct pairmap *m, size_t n)
{
    m->cap = 1024;
    while (m->cap < 2 * n + 2)
        m->cap *= 2;
    m->slots = hx_malloc(m->cap * sizeof *m->slots, "the merge table");
    if (!m->slots)
        return HX_ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        m->slots[i].key = UINT64_MAX;
    m->count = 0;
    return 0;
}

static const struct pair_entry *pair_get(const struct pairmap *m, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return NULL;
    const struct pair_entry *e = &m->slots[pair_slot(m, pair_key(l, r))];
    return e->key == UINT64_MAX ? NULL : e;
}

/* ---- the tokenizer ------------------------------------------------------------------------ */

struct hx_tokenizer {
    char *path; /* the vocabulary file, for messages */
    struct arena strings;
    struct strmap vocab;  /* token -> id (a) */
    const char **tokens;  /* [nids] token of each id, NULL for unused ids */
    int32_t nids;         /* largest id + 1 */
    struct pairmap merges;
    int32_t byte_sym[256];     /* id of the mapped byte as a symbol, -1 if absent */
    int32_t byte_sym_eow[256]; /* id of the mapped byte + "</w>", -1 if absent */
    int32_t sot, eot;
    /* word cache: raw piece bytes -> ids pool[a .. a+b) */
    struct strmap cache;
    struct arena cache_strings;
    int32_t *pool;
    size_t pool_len, pool_cap;
    /* scratch for BPE */
    int32_t *sym;
    size_t sym_cap;
};

/* GPT-2's reversible byte -> character map: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order. order[i] is the byte of vocabulary id i. */
static void byte_map(uint32_t cp_of_byte[256], uint8_t order[256])
{
    int n = 0, extra = 0;
    for (int b = 0; b < 256; b++)
        cp_of_byte[b] = 0;
    for (int b = '!'; b <= '~'; b++)
        order[n++] = (uint8_t)b;
    for (int b = 0xA1; b <= 0xAC; b++)
        order[n++] = (uint8_t)b;
    for (int b = 0xAE; b <= 0xFF; b++)
        order[n++] = (uint8_t)b;
    for (int i = 0; i < n; i++)
        cp_of_byte[order[i]] = order[i];
    for (int b = 0; b < 256; b++)
        if (!cp_of_byte[b] && !((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
            cp_of_byte[b] = 256 + (uint32_t)extra++;
            order[n++] = (uint8_t)b;
        }
}

static int set_token(struct hx_tokenizer *t, const char *s, size_t n, int32_t id)
{
    struct str_entry *e = strmap_put(&t->vocab, &t->strings, s, n);
    if (!e)
        return HX_ENOMEM;
    e->a = id; /* a repeated token keeps the last id, like a Python dict */
    if (id >= t->nids)
        t->nids = id + 1;
    return 0;
}

static int32_t vocab_id(const struct hx_tokenizer *t, const char *s, size_t n)
{
    const struct str_entry *e = strmap_get(&t->vocab, s, n);
    return e ? e->a : -1;
}

/* After the vocabulary is complete: the id -> token table, byte symbols, special ids. */
static int finish_vocab(struct hx_tokenizer *t)
{
    t->tokens = hx_calloc((size_t)t->nids, sizeof *t->tokens, "the id -> token table");
    if (!t->tokens)
        return HX_ENOMEM;
    for (size_t i = 0; i < t->vocab.cap; i++) {
        const struct str_entry *e = &t->vocab.slots[i];
        if (e->key)
            t->tokens[e->a] = e->key;
    }
    uint32_t cp[256];
    uint8_t order[256];
    byte_map(cp, order);
    for (int b = 0; b < 256; b++) {
        char s[8];
        int n = (int)utf8proc_encode_char((int32_t)cp[b], (uint8_t *)s);
        t->byte_sym[b] = vocab_id(t, s, (size_t)n);
        memcpy(s + n, EOW, 4);
        t->byte_sym_eow[b] = vocab_id(t, s, (size_t)n + 4);
    }
    t->sot = vocab_id(t, SOT_TOKEN, strlen(SOT_TOKEN));
    t->eot = vocab_id(t, EOT_TOKEN, strlen(EOT_TOKEN));
    if (t->sot < 0 || t->eot < 0)
        return hx_err(HX_EFORMAT, "%s: the vocabulary has no %s token", t->path,
                      t->sot < 0 ? SOT_TOKEN : EOT_TOKEN);
    return 0;
}

/* Register merge number `rank` (a, b); `where` names the file and line for messages. */
static int add_merge(struct hx_tokenizer *t, const char *a, size_t na, const char *b, size_t nb,
                     int32_t rank, const char *where)
{
    char buf[512];
    if (na + nb >= sizeof buf)
        return hx_err(HX_EFORMAT, "%s: merge \"%.*s %.*s\" is too long", where, (int)na, a,
                      (int)nb, b);
    int32_t l = vocab_id(t, a, na), r = vocab_id(t, b, nb);
    memcpy(buf, a, na);
    memcpy(buf + na, b, nb);
    int32_t m = vocab_id(t, buf, na + nb);
    if (l < 0 || r < 0 || m < 0)
        return hx_err(HX_EFORMAT, "%s: merge \"%.*s %.*s\": \"%.*s\" is not in the vocabulary",
                      where, (int)na, a, (int)nb, b, l < 0 ? (int)na : r < 0 ? (int)nb : (int)(na + nb),
                      l < 0 ? a : r < 0 ? b : buf);
    struct pairmap *pm = &t->merges;
    if ((pm->count + 1) * 2 > pm->cap)
        return hx_err(HX_EINTERNAL, "%s: merge table full", where);
    size_t i = pair_slot(pm, pair_key(l, r));
    if (pm->slots[i].key == UINT64_MAX)
        pm->count++;
    pm->slots[i] = (struct pair_entry){pair_key(l, r), rank, m}; /* a repeat keeps the last rank */
    return 0;
}

/* Split a merge line into its two symbols (separated by spaces or tabs). */
static int split_merge(const char *line, size_t n, const char **a, size_t *na, const char **b,
                       size_t *nb)
{
    size_t i = 0;
    const char *part[3];
    size_t plen[3];
    int k = 0;
    while (i < n) {
        while (i < n && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i >= n)
            break;
        size_t s = i;
        while (i < n && line[i] != ' ' && line[i] != '\t')
            i++;
        if (k == 3)
            return -1;
        part[k] = line + s;
        plen[k++] = i - s;
    }
    if (k != 2)
        return -1;
    *a = part[0];
    *na = plen[0];
    *b = part[1];
    *nb = plen[1];
    return 0;
}

/* A text of merges, one per line. `skip_first`: 1 skips line 1 always (the original file's
 * header), 2 skips it when it starts with "#version" (merges.txt). At most `max_merges`.
 * With `add_vocab`, each merge's concatenation is appended to the vocabulary as id
 * (*next_id)++ (the original file, whose vocabulary is derived); without, the merges are
 * entered in the merge table, checked against the vocabulary. */
static int load_merge_lines(struct hx_tokenizer *t, const char *file, const char *text,
                            size_t len, int skip_first, int32_t max_merges, int add_vocab,
                            int32_t *next_id)
{
    int rc;
    if (!add_vocab) {
        size_t nlines = 1; /* sizes the merge table */
        for (size_t i = 0; i < len; i++)
            nlines += text[i] == '\n';
        if ((rc = pairmap_init(&t->merges, nlines)))
            return rc;
    }
    int32_t rank = 0;
    size_t lineno = 0, i = 0;
    char where[4200];
    while (i < len && rank < max_merges) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - text) : len;
        const char *line = text + i;
        size_t n = e - i;
        i = nl ? e + 1 : len;
        lineno++;
        if (n && line[n - 1] == '\r')
            n--;
        if (lineno == 1 &&
            (skip_first == 1 || (skip_first == 2 && n >= 8 && !memcmp(line, "#version", 8))))
            continue;
        if (n == 0 && i >= len) /* a final newline */
            break;
        const char *a, *b;
        size_t na, nb;
        snprintf(where, sizeof where, "%s:%zu", file, lineno);
        if (split_merge(line, n, &a, &na, &b, &nb))
            return hx_err(HX_EFORMAT, "%s: expected a merge \"LEFT RIGHT\", got \"%.*s\"",
                          where, (int)(n > 80 ? 80 : n), line);
        if (add_vocab) {
            char buf[512];
            if (na + nb >= sizeof buf)
                return hx_err(HX_EFORMAT, "%s: merge is too long", where);
            memcpy(buf, a, na);
            memcpy(buf + na, b, nb);
            if ((rc = set_token(t, buf, na + nb, (*next_id)++)))
                return rc;
        } else if ((rc = add_merge(t, a, na, b, nb, rank, where))) {
            return rc;
        }
        rank++;
    }
    return 0;
}

/* ---- file readers ------------------------------------------------------------------------- */

static int read_file(const char *path, char **data, size_t *len)
{
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return hx_err(HX_EIO, "cannot open %s: %s", path, strerror(errno));
    int rc = 0;
    size_t cap = 1 << 16, n = 0;
    char *buf = hx_malloc(cap, path);
    if (!buf) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = hx_err(HX_ENOMEM, "out of memory reading %s", path);
                goto done;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        rc = hx_err(HX_EIO, "error reading %s: %s", path, strerror(errno));
        goto done;
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    buf = NULL;
done:
    free(buf);
    fclose(f);
    return rc;
}

static int read_gz(const char *path, char **data, size_t *len)
{
    *data = NULL;
    gzFile g = gzopen(path, "rb");
    if (!g)
        return hx_err(HX_EIO, "cannot open %s: %s", path, errno ? strerror(errno) : "gzopen failed");
    int rc = 0;
    size_t cap = 1 << 20, n = 0;
    char *buf = hx_malloc(cap, path);
    if (!buf) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = hx_err(HX_ENOMEM, "out of memory decompressing %s", path);
                goto done;
            }
            buf = nb;
            cap *= 2;
        }
        size_t want = cap - n - 1;
        int got = gzread(g, buf + n, want > (1u << 30) ? 1u << 30 : (unsigned)want);
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(g, &zerr);
            rc = hx_err(HX_EFORMAT, "%s: corrupt or truncated gzip data (%s)", path,
                        zerr == Z_ERRNO ? strerror(errno) : msg);
            goto done;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    /* gzread reports a stream cut short only through the error state. */
    int zerr;
    const char *msg = gzerror(g, &zerr);
    if (zerr != Z_OK && zerr != Z_STREAM_END) {
        rc = hx_err(HX_EFORMAT, "%s: corrupt or truncated gzip data (%s)", path, msg);
        goto done;
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    buf = NULL;
done:
    free(buf);
    gzclose(g);
    return rc;
}

static int parse_json(const char *path, const char *text, size_t len, cJSON **out)
{
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (*out)
        return 0;
    if (!end || end < text || end > text + len)
        return hx_err(HX_EFORMAT, "%s: malformed JSON", path);
    size_t line = 1;
    for (const char *p = text; p < end; p++)
        line += *p == '\n';
    return hx_err(HX_EFORMAT, "%s:%zu: malformed JSON near byte %zu", path, line,
                  (size_t)(end - text));
}

static int load_vocab_object(struct hx_tokenizer *t, const char *file, const cJSON *obj)
{
    if (!cJSON_IsObject(obj))
        return hx_err(HX_EFORMAT, "%s: the vocabulary is not a JSON object of token: id", file);
    for (const cJSON *e = obj->child; e; e = e->next) {
        double v = e->valuedouble;
        if (!cJSON_IsNumber(e) || v < 0 || v > 16777216 || v != (double)(int32_t)v)
            return hx_err(HX_EFORMAT, "%s: vocabulary entry \"%.80s\" has no valid integer id",
                          file, e->string);
        int rc = set_token(t, e->string, strlen(e->string), (int32_t)v);
        if (rc)
            return rc;
    }
    if (t->vocab.count == 0)
        return hx_err(HX_EFORMAT, "%s: the vocabulary is empty", file);
    return 0;
}

/* vocab.json (parsed: `root`) + merges.txt, the Hugging Face "slow" CLIPTokenizer files. */
static int load_vocab_merges(struct hx_tokenizer *t, const char *vocab_path, const cJSON *root,
                             const char *merges_path)
{
    char *text = NULL;
    size_t len;
    int rc = load_vocab_object(t, vocab_path, root);
    if (rc || (rc = finish_vocab(t)) || (rc = read_file(merges_path, &text, &len)))
        goto done;
    rc = load_merge_lines(t, merges_path, text, len, 2, INT32_MAX, 0, NULL);
done:
    free(text);
    return rc;
}

/* tokenizer.json (parsed: `root`), the Hugging Face "fast" tokenizer: model.vocab,
 * model.merges, added_tokens. */
static int load_tokenizer_json(struct hx_tokenizer *t, const char *path, const cJSON *root)
{
    int rc = 0;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *eow = cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(model)) {
        rc = hx_err(HX_EFORMAT, "%s: no \"model\" object (not a tokenizer.json file?)", path);
        goto done;
    }
    if (cJSON_IsString(type) && strcmp(type->valuestring, "BPE")) {
        rc = hx_err(HX_EFORMAT, "%s: model.type is \"%s\", expected \"BPE\"", path,
                    type->valuestring);
        goto done;
    }
    if (cJSON_IsString(eow) && strcmp(eow->valuestring, EOW)) {
        rc = hx_err(HX_EFORMAT, "%s: model.end_of_word_suffix is \"%s\", CLIP uses \"%s\"", path,
                    eow->valuestring, EOW);
        goto done;
    }
    if (!cJSON_IsArray(merges)) {
        rc = hx_err(HX_EFORMAT, "%s: model.merges is missing or not an array", path);
        goto done;
    }
    if ((rc = load_vocab_object(t, path, cJSON_GetObjectItemCaseSensitive(model, "vocab"))))
        goto done;
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(content) || id->valueint < 0) {
            rc = hx_err(HX_EFORMAT, "%s: an added_tokens entry lacks \"id\" or \"content\"", path);
            goto done;
        }
        const char *c = content->valuestring;
        if (vocab_id(t, c, strlen(c)) < 0 && (rc = set_token(t, c, strlen(c), id->valueint)))
            goto done;
    }
    if ((rc = finish_vocab(t)) ||
        (rc = pairmap_init(&t->merges, (size_t)cJSON_GetArraySize(merges))))
        goto done;
    int32_t rank = 0;
    char where[4200];
    for (const cJSON *m = merges->child; m; m = m->next, rank++) {
        const char *a, *b;
        size_t na, nb;
        snprintf(where, sizeof where, "%s: model.merges[%d]", path, (int)rank);
        if (cJSON_IsString(m)) {
            const char *s = m->valuestring;
            if (split_merge(s, strlen(s), &a, &na, &b, &nb)) {
                rc = hx_err(HX_EFORMAT, "%s: expected \"LEFT RIGHT\", got \"%.80s\"", where, s);
                goto done;
            }
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
                   cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            a = m->child->valuestring;
            b = m->child->next->valuestring;
            na = strlen(a);
            nb = strlen(b);
        } else {
            rc = hx_err(HX_EFORMAT, "%s: expected a string \"LEFT RIGHT\" or [LEFT, RIGHT]",
                        where);
            goto done;
        }
        if ((rc = add_merge(t, a, na, b, nb, rank, where)))
            goto done;
    }
done:
    return rc;
}

/* bpe_simple_vocab_16e6.txt.gz (the original CLIP file): line 1 a header, then merges; the
 * vocabulary is the 256 mapped bytes, the same with "</w>", one token per merge, then the
 * start and end tokens. */
static int load_bpe_gz(struct hx_tokenizer *t, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    int rc = read_gz(path, &text, &len);
    if (rc)
        goto done;
    uint32_t cp[256];
    uint8_t order[256];
    byte_map(cp, order);
    int32_t id = 0;
    for (int eow = 0; eow < 2; eow++)
        for (int i = 0; i < 256; i++) {
            char s[8];
            int n = (int)utf8proc_encode_char((int32_t)cp[order[i]], (uint8_t *)s);
            if (eow) {
                memcpy(s + n, EOW, 4);
                n += 4;
            }
            if ((rc = set_token(t, s, (size_t)n, id++)))
                goto done;
        }
    /* The vocabulary needs every concatenation before the merges are checked against it. */
    if ((rc = load_merge_lines(t, path, text, len, 1, GZ_MERGES, 1, &id)) ||
        (rc = set_token(t, SOT_TOKEN, strlen(SOT_TOKEN), id++)) ||
        (rc = set_token(t, EOT_TOKEN, strlen(EOT_TOKEN), id++)) || (rc = finish_vocab(t)))
        goto done;
    rc = load_merge_lines(t, path, text, len, 1, GZ_MERGES, 0, NULL);
done:
    free(text);
    return rc;
}

/* ---- opening ------------------------------------------------------------------------------ */

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int new_tokenizer(struct hx_tokenizer **out, const char *path)
{
    *out = hx_calloc(1, sizeof **out, "a tokenizer");
    if (!*out)
        return HX_ENOMEM;
    (*out)->path = strdup(path);
    if (!(*out)->path) {
        free(*out);
        *out = NULL;
        return hx_err(HX_ENOMEM, "out of memory");
    }
    return 0;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The sibling `name` of `path` (same directory). Caller frees. */
static char *sibling(const char *path, const char *name)
{
    size_t dir = (size_t)(base_name(path) - path);
    char *s = malloc(dir + strlen(name) + 1);
    if (s) {
        memcpy(s, path, dir);
        strcpy(s + dir, name);
    }
    return s;
}

/* A .json file: tokenizer.json when named so or when it has a "model" object, otherwise a
 * vocab.json paired with the merges.txt beside it. */
static int load_json_file(struct hx_tokenizer *t, const char *path)
{
    char *text = NULL, *merges = NULL;
    size_t len;
    cJSON *root = NULL;
    int rc = read_file(path, &text, &len);
    if (rc || (rc = parse_json(path, text, len, &root)))
        goto done;
    const char *name = base_name(path);
    if (!strcmp(name, "tokenizer.json") ||
        (strcmp(name, "vocab.json") && cJSON_IsObject(cJSON_GetObjectItem(root, "model")))) {
        rc = load_tokenizer_json(t, path, root);
        goto done;
    }
    if (!(merges = sibling(path, "merges.txt")))
        rc = hx_err(HX_ENOMEM, "out of memory");
    else if (!file_exists(merges))
        rc = hx_err(HX_ENOTFOUND, "%s: no merges.txt beside this vocabulary (looked for %s)",
                    path, merges);
    else
        rc = load_vocab_merges(t, path, root, merges);
done:
    cJSON_Delete(root);
    free(text);
    free(merges);
    return rc;
}

/* vocab.json (beside `merges_path`) + merges.txt. */
static int load_merges_file(struct hx_tokenizer *t, const char *merges_path)
{
    char *vocab = sibling(merges_path, "vocab.json"), *text = NULL;
    size_t len;
    cJSON *root = NULL;
    int rc = 0;
    if (!vocab)
        rc = hx_err(HX_ENOMEM, "out of memory");
    else if (!file_exists(vocab))
        rc = hx_err(HX_ENOTFOUND, "%s: no vocab.json beside these merges (looked for %s)",
                    merges_path, vocab);
    else if (!(rc = read_file(vocab, &text, &len)) &&
             !(rc = parse_json(vocab, text, len, &root)))
        rc = load_vocab_merges(t, vocab, root, merges_path);
    cJSON_Delete(root);
    free(text);
    free(vocab);
    return rc;
}

int hx_tokenizer_open_file(struct hx_tokenizer **out, const char *path)
{
    struct hx_tokenizer *t = NULL;
    *out = NULL;
    int rc = new_tokenizer(&t, path);
    if (rc)
        return rc;
    const char *name = base_name(path);
    if (ends_with(name, ".gz") || !strncmp(name, "bpe_simple", 10)) {
        rc = load_bpe_gz(t, path);
    } else if (ends_with(name, ".json")) {
        rc = load_json_file(t, path);
    } else if (ends_with(name, "merges.txt")) {
        rc = load_merges_file(t, path);
    } else {
        rc = hx_err(HX_EINVAL,
                    "%s: not a tokenizer file (expected vocab.json, merges.txt, tokenizer.json "
                    "or bpe_simple_vocab_16e6.txt.gz)",
                    path);
    }
    if (rc) {
        hx_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int hx_tokenizer_open(struct hx_tokenizer **out, const char *model_dir)
{
    static const char *const names[] = {"vocab.json", "tokenizer.json",
                                        "bpe_simple_vocab_16e6.txt.gz"};
    *out = NULL;
    struct stat st;
    if (stat(model_dir, &st) != 0)
        return hx_err(HX_EIO, "cannot open model directory %s: %s", model_dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return hx_err(HX_EINVAL, "%s is not a directory", model_dir);
    size_t n = strlen(model_dir);
    char *p = malloc(n + 40);
    char *m = malloc(n + 40);
    int rc = 0;
    if (!p || !m) {
        rc = hx_err(HX_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, n + 40, "%s/%s", model_dir, names[i]);
        if (i == 0) {
            snprintf(m, n + 40, "%s/merges.txt", model_dir);
            if (!file_exists(p) || !file_exists(m))
                continue;
        } else if (!file_exists(p)) {
            continue;
        }
        rc = hx_tokenizer_open_file(out, p);
        goto done;
    }
    rc = hx_err(HX_ENOTFOUND,
                "no tokenizer in %s (looked for vocab.json + merges.txt, tokenizer.json, "
                "bpe_simple_vocab_16e6.txt.gz)",
                model_dir);
done:
    free(p);
    free(m);
    return rc;
}

void hx_tokenizer_free(struct hx_tokenizer *t)
{
    if (!t)
        return;
    free(t->path);
    arena_free(&t->strings);
    free(t->vocab.slots);
    free(t->tokens);
    free(t->merges.slots);
    free(t->cache.slots);
    arena_free(&t->cache_strings);
    free(t->pool);
    free(t->sym);
    free(t);
}

int32_t hx_tokenizer_sot(const struct hx_tokenizer *t) { return t->sot; }
int32_t hx_tokenizer_eot(const struct hx_tokenizer *t) { return t->eot; }
int hx_tokenizer_vocab_size(const struct hx_tokenizer *t) { return t->nids; }

const char *hx_tokenizer_token(const struct hx_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->nids ? t->tokens[id] : NULL;
}

int32_t hx_tokenizer_id(const struct hx_tokenizer *t, const char *token)
{
    return vocab_id(t, token, strlen(token));
}

/* ---- encoding ----------------------------------------------------------------------------- */

/* BPE of one piece (raw UTF-8 bytes): symbols are the mapped bytes, "</w>" on the last; the
 * adjacent pair of lowest merge rank is merged everywhere (left to right) until none is left. */
static int bpe(struct hx_tokenizer *t, const char *w, size_t n, int32_t **ids, size_t *nids)
{
    if (n > t->sym_cap) {
        size_t cap = n < 64 ? 64 : n * 2;
        int32_t *s = realloc(t->sym, cap * sizeof *s);
        if (!s)
            return hx_err(HX_ENOMEM, "out of memory for a word of %zu bytes", n);
        t->sym = s;
        t->sym_cap = cap;
    }
    int32_t *sym = t->sym;
    for (size_t i = 0; i < n; i++)
        sym[i] = i + 1 < n ? t->byte_sym[(uint8_t)w[i]] : t->byte_sym_eow[(uint8_t)w[i]];
    size_t len = n;
    while (len > 1) {
        int32_t best = INT32_MAX, first = -1, second = -1, merged = -1;
        for (size_t i = 0; i + 1 < len; i++) {
            const struct pair_entry *e = pair_get(&t->merges, sym[i], sym[i + 1]);
            if (e && e->rank < best) {
                best = e->rank;
                first = sym[i];
                second = sym[i + 1];
                merged = e->merged;
            }
        }
        if (best == INT32_MAX)
            break;
        size_t k = 0;
        for (size_t i = 0; i < len;) {
            if (i + 1 < len && sym[i] == first && sym[i + 1] == second) {
                sym[k++] = merged;
                i += 2;
            } else {
                sym[k++] = sym[i++];
            }
        }
        len = k;
    }
    for (size_t i = 0; i < len; i++)
        if (sym[i] < 0)
            return hx_err(HX_EINVAL,
                          "the word \"%.*s\" has a byte with no symbol in the vocabulary of %s",
                          (int)(n > 80 ? 80 : n), w, t->path);
    *ids = sym;
    *nids = len;
    return 0;
}

static void cache_reset(struct hx_tokenizer *t)
{
    strmap_clear(&t->cache);
    arena_free(&t->cache_strings);
    t->pool_len = 0;
}

/* The ids of one piece, from the cache or computed and cached. *ids stays valid until the next
 * call. */
static int word_ids(struct hx_tokenizer *t, const char *w, size_t n, const int32_t **ids,
                    size_t *nids)
{
    const struct str_entry *hit = strmap_get(&t->cache, w, n);
    if (hit) {
        *ids = t->pool + hit->a;
        *nids = (size_t)hit->b;
        return 0;
    }
    int32_t *sym = NULL;
    size_t len = 0;
    int rc = bpe(t, w, n, &sym, &len);
    if (rc)
        return rc;
    if (t->cache.count >= CACHE_MAX_WORDS || t->pool_len > (size_t)INT32_MAX / 2)
        cache_reset(t);
    if (t->pool_len + len > t->pool_cap) {
        size_t cap = t->pool_cap ? t->pool_cap : 4096;
        while (cap < t->pool_len + len)
            cap *= 2;
        int32_t *p = realloc(t->pool, cap * sizeof *p);
        if (!p)
            return hx_err(HX_ENOMEM, "out of memory growing the tokenizer cache");
        t->pool = p;
        t->pool_cap = cap;
    }
    struct str_entry *e = strmap_put(&t->cache, &t->cache_strings, w, n);
    if (!e)
        return HX_ENOMEM;
    e->a = (int32_t)t->pool_len;
    e->b = (int32_t)len;
    memcpy(t->pool + t->pool_len, sym, len * sizeof *sym);
    t->pool_len += len;
    *ids = t->pool + e->a;
    *nids = len;
    return 0;
}

/* Case-insensitive match of the ASCII literal `lit` at s[i] (the pattern's IGNORECASE: ASCII
 * letters either case, and U+017F LONG S for 's'). Returns the bytes matched or 0. */
static size_t match_literal(const char *s, size_t len, size_t i, const char *lit)
{
    size_t j = i;
    for (const char *l = lit; *l; l++) {
        if (j >= len)
            return 0;
        unsigned char c = (unsigned char)s[j];
        if (c < 0x80) {
            if ((c | (c >= 'A' && c <= 'Z' ? 0x20 : 0)) != (unsigned char)*l)
                return 0;
            j++;
        } else if (*l == 's' && c == 0xC5 && j + 1 < len && (unsigned char)s[j + 1] == 0xBF) {
            j += 2;
        } else {
            return 0;
        }
    }
    return j - i;
}

static size_t cp_at(const char *s, size_t len, size_t i, int32_t *cp)
{
    utf8proc_ssize_t n = utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(len - i), cp);
    if (n <= 0) {
        *cp = 0xFFFD;
        return 1;
    }
    return (size_t)n;
}

/* A character of the last class [^\s\p{L}\p{N}]. Under IGNORECASE the Python `regex` module
 * tests a negated class against every case variant of the character, so U+0345 COMBINING
 * GREEK YPOGEGRAMMENI (Mn, but a case variant of the letter iota) is in no class of the
 * pattern: it is skipped like whitespace. It is the only such character. */
static int is_other(int32_t cp)
{
    return !hx_uc_is_space(cp) && !hx_uc_is_letter(cp) && !hx_uc_is_number(cp) && cp != 0x345;
}

/* The next piece of the pattern
 *   <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * at or after s[*pos]; returns 0 at the end of the text. *special is set for the two
 * special tokens spelled exactly. */
static int next_piece(const char *s, size_t len, size_t *pos, size_t *start, size_t *end,
                      int *special)
{
    static const char *const lits[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re",
                                       "'ve", "'m", "'ll", "'d"};
    size_t i = *pos;
    while (i < len) {
        *special = 0;
        for (size_t k = 0; k < sizeof lits / sizeof lits[0]; k++) {
            size_t m = match_literal(s, len, i, lits[k]);
            if (m) {
                *start = i;
                *end = *pos = i + m;
                *special = k < 2 && m == strlen(lits[k]) && memcmp(s + i, lits[k], m) == 0;
                return 1;
            }
        }
        int32_t cp;
        size_t n = cp_at(s, len, i, &cp);
        if (hx_uc_is_letter(cp)) {
            size_t j = i + n;
            while (j < len && (n = cp_at(s, len, j, &cp), hx_uc_is_letter(cp)))
                j += n;
            *start = i;
            *end = *pos = j;
            return 1;
        }
        if (hx_uc_is_number(cp)) {
            *start = i;
            *end = *pos = i + n;
            return 1;
        }
        if (is_other(cp)) {
            size_t j = i + n;
            while (j < len && (n = cp_at(s, len, j, &cp), is_other(cp)))
                j += n;
            *start = i;
            *end = *pos = j;
            return 1;
        }
        i += n;
    }
    *pos = len;
    return 0;
}

int hx_tokenize(struct hx_tokenizer *t, const char *text, int32_t *ids, int max_len)
{
    if (max_len < 2)
        return hx_err(HX_EINVAL, "tokenize: max_len must be at least 2, got %d", max_len);
    char *clean = NULL;
    int rc = hx_clip_clean_text(text, &clean);
    if (rc)
        return rc;
    size_t len = strlen(clean), pos = 0, a, b;
    int special, n = 0;
    ids[n++] = t->sot;
    while (n < max_len - 1 && next_piece(clean, len, &pos, &a, &b, &special)) {
        if (special) {
            ids[n++] = clean[a + 2] == 's' ? t->sot : t->eot;
            continue;
        }
        const int32_t *w = NULL;
        size_t nw = 0;
        if ((rc = word_ids(t, clean + a, b - a, &w, &nw)))
            goto done;
        for (size_t k = 0; k < nw && n < max_len - 1; k++)
            ids[n++] = w[k];
    }
    ids[n++] = t->eot;
    rc = n;
done:
    free(clean);
    return rc;
}
