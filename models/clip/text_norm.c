#include "models/clip/text_norm.h"

#include "harness/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

struct html_entity {
    const char *name;  /* as written after '&', with the ';' when the entry has one */
    const char *value; /* UTF-8 */
};
struct html_charref {
    uint32_t cp;
    const char *value; /* UTF-8 */
};
#include "models/clip/html_entities.inc"
#include "models/clip/case_tables.inc"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* A growable byte buffer, always NUL-terminated once anything was appended. */
struct sbuf {
    char *p;
    size_t len, cap;
};

static int sb_reserve(struct sbuf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return hx_err(HX_ENOMEM, "out of memory growing a text buffer to %zu bytes", cap);
    b->p = p;
    b->cap = cap;
    return 0;
}

static int sb_put(struct sbuf *b, const char *s, size_t n)
{
    int rc = sb_reserve(b, n);
    if (rc)
        return rc;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

static int sb_put_cp(struct sbuf *b, int32_t cp)
{
    uint8_t tmp[4];
    utf8proc_ssize_t n = utf8proc_encode_char(cp, tmp);
    return sb_put(b, (const char *)tmp, (size_t)n);
}

/* Decode one code point of valid UTF-8 at s[i] (i < len); returns its byte length. */
static size_t next_cp(const char *s, size_t len, size_t i, int32_t *cp)
{
    utf8proc_ssize_t n = utf8proc_iterate((const uint8_t *)s + i, (utf8proc_ssize_t)(len - i), cp);
    if (n <= 0) { /* callers validate first; keep going byte by byte if not */
        *cp = (unsigned char)s[i];
        return 1;
    }
    return (size_t)n;
}

static int in_ranges(const uint32_t (*r)[2], size_t n, int32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((uint32_t)cp < r[mid][0])
            hi = mid;
        else if ((uint32_t)cp > r[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

/* ---- HTML unescape ------------------------------------------------------------------------ */

static const char *entity_lookup(const char *name, size_t n)
{
    size_t lo = 0, hi = NELEM(html_entities);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *e = html_entities[mid].name;
        size_t el = strlen(e);
        int c = memcmp(name, e, n < el ? n : el);
        if (c == 0)
            c = n < el ? -1 : n > el ? 1 : 0;
        if (c == 0)
            return html_entities[mid].value;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* The replacement of the numeric reference &#num; (num saturated above 0x10FFFF). */
static int put_charref(struct sbuf *b, uint32_t num)
{
    size_t lo = 0, hi = NELEM(html_remapped_charrefs);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (num == html_remapped_charrefs[mid].cp) {
            const char *v = html_remapped_charrefs[mid].value;
            return sb_put(b, v, strlen(v));
        }
        if (num < html_remapped_charrefs[mid].cp)
            hi = mid;
        else
            lo = mid + 1;
    }
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF)
        return sb_put_cp(b, 0xFFFD);
    lo = 0;
    hi = NELEM(html_dropped_codepoints);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (num == html_dropped_codepoints[mid])
            return 0;
        if (num < html_dropped_codepoints[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return sb_put_cp(b, (int32_t)num);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Try a reference at s[i] == '&'. On a match, append its replacement and return the number of
 * bytes consumed; return 0 when nothing matches there (the '&' is then literal). Mirrors the
 * pattern &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?) of html.unescape. */
static int unescape_at(struct sbuf *b, const char *s, size_t len, size_t i, size_t *used)
{
    size_t j = i + 1;
    *used = 0;
    if (j < len && s[j] == '#') {
        j++;
        int base = 10;
        if (j + 1 < len && (s[j] == 'x' || s[j] == 'X') && hexval(s[j + 1]) >= 0) {
            base = 16;
            j++;
        } else if (!(j < len && s[j] >= '0' && s[j] <= '9')) {
            return 0;
        }
        uint32_t num = 0;
        while (j < len && (base == 16 ? hexval(s[j]) >= 0 : (s[j] >= '0' && s[j] <= '9'))) {
            int d = base == 16 ? hexval(s[j]) : s[j] - '0';
            num = num > 0x10FFFF ? 0x110000 : num * (uint32_t)base + (uint32_t)d;
            j++;
        }
        if (j < len && s[j] == ';')
            j++;
        *used = j - i;
        return put_charref(b, num);
    }
    /* A name: 1..32 code points outside "\t\n\f <&#;", then an optional ';'. */
    size_t ends[34]; /* ends[k] = byte offset after k+1 code points of the name */
    int ncp = 0;
    while (j < len && ncp < 32) {
        char c = s[j];
        if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' ||
            c == '#' || c == ';')
            break;
        int32_t cp;
        j += next_cp(s, len, j, &cp);
        ends[ncp++] = j;
    }
    if (ncp == 0)
        return 0;
    if (j < len && s[j] == ';') {
        j++;
        ends[ncp++] = j;
    }
    size_t start = i + 1;
    const char *v = entity_lookup(s + start, j - start);
    *used = j - i;
    if (v)
        return sb_put(b, v, strlen(v));
    /* The longest prefix of at least 2 code points that is an entity, the rest kept as is. */
    for (int x = ncp - 1; x >= 2; x--) {
        size_t pe = ends[x - 1];
        v = entity_lookup(s + start, pe - start);
        if (v) {
            int rc = sb_put(b, v, strlen(v));
            return rc ? rc : sb_put(b, s + pe, j - pe);
        }
    }
    return sb_put(b, s + i, j - i);
}

int hx_html_unescape(const char *in, size_t len, char **out, size_t *out_len)
{
    struct sbuf b = {0};
    int rc = sb_reserve(&b, len);
    if (rc)
        goto fail;
    b.p[0] = 0;
    size_t i = 0;
    while (i < len) {
        const char *amp = memchr(in + i, '&', len - i);
        size_t stop = amp ? (size_t)(amp - in) : len;
        if ((rc = sb_put(&b, in + i, stop - i)))
            goto fail;
        i = stop;
        if (i >= len)
            break;
        size_t used;
        if ((rc = unescape_at(&b, in, len, i, &used)))
            goto fail;
        if (used == 0) {
            if ((rc = sb_put(&b, "&", 1)))
                goto fail;
            used = 1;
        }
        i += used;
    }
    *out = b.p;
    if (out_len)
        *out_len = b.len;
    return 0;
fail:
    free(b.p);
    *out = NULL;
    return rc;
}

/* ---- Unicode classes ---------------------------------------------------------------------- */

int hx_uc_is_letter(int32_t cp)
{
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT ||
           c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_LO;
}

int hx_uc_is_number(int32_t cp)
{
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

int hx_uc_is_space(int32_t cp)
{
    if (cp < 0x80)
        return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Python str.isspace(): White_Space plus the separators U+001C..U+001F. */
static int py_isspace(int32_t cp)
{
    return hx_uc_is_space(cp) || (cp >= 0x1C && cp <= 0x1F);
}

/* ---- Lowercase (Python str.lower) --------------------------------------------------------- */

static int is_case_ignorable(int32_t cp)
{
    return in_ranges(case_ignorable_ranges, NELEM(case_ignorable_ranges), cp);
}

static int is_cased(int32_t cp)
{
    return in_ranges(cased_ranges, NELEM(cased_ranges), cp);
}

/* Final_Sigma: a cased letter before (skipping case-ignorables), none after. */
static int final_sigma(const int32_t *cps, size_t n, size_t i)
{
    size_t j = i;
    while (j > 0 && is_case_ignorable(cps[j - 1]))
        j--;
    if (j == 0 || !is_cased(cps[j - 1]))
        return 0;
    for (j = i + 1; j < n && is_case_ignorable(cps[j]); j++)
        ;
    return j == n || !is_cased(cps[j]);
}

static int lower_cps(struct sbuf *b, const int32_t *cps, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        int32_t c = cps[i];
        if (c == 0x130) /* the one unconditional multi-character lowercase mapping */
            rc = sb_put(b, "i\xcc\x87", 3);
        else if (c == 0x3A3)
            rc = sb_put_cp(b, final_sigma(cps, n, i) ? 0x3C2 : 0x3C3);
        else
            rc = sb_put_cp(b, utf8proc_tolower(c));
    }
    return rc;
}

/* Decode valid UTF-8 into a fresh code point array. */
static int decode(const char *s, size_t len, int32_t **cps, size_t *n)
{
    *cps = hx_malloc((len + 1) * sizeof **cps, "text code points");
    if (!*cps)
        return HX_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < len;)
        i += next_cp(s, len, i, &(*cps)[k++]);
    *n = k;
    return 0;
}

/* The first bytes of `text` for a message: valid UTF-8 as is, other bytes as \xNN. */
static void quote_text(const char *text, size_t len, char *out, size_t cap)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < cap && i < 60;) {
        int32_t cp;
        utf8proc_ssize_t n = utf8proc_iterate(s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (n > 0 && cp >= 0x20) {
            memcpy(out + o, s + i, (size_t)n);
            o += (size_t)n;
            i += (size_t)n;
        } else {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02X", s[i]);
            i++;
        }
    }
    out[o] = 0;
}

static int check_utf8(const char *text)
{
    size_t len = strlen(text);
    const uint8_t *s = (const uint8_t *)text;
    for (size_t i = 0; i < len;) {
        int32_t cp;
        utf8proc_ssize_t n = utf8proc_iterate(s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (n <= 0) {
            char q[320];
            quote_text(text, len, q, sizeof q);
            return hx_err(HX_EINVAL, "text \"%s%s\" is not valid UTF-8 (byte %zu)", q,
                          len > 60 ? "..." : "", i);
        }
        i += (size_t)n;
    }
    return 0;
}

int hx_py_lower(const char *text, char **out)
{
    struct sbuf b = {0};
    int32_t *cps = NULL;
    size_t n;
    *out = NULL;
    int rc = check_utf8(text);
    if (rc || (rc = decode(text, strlen(text), &cps, &n)) || (rc = sb_reserve(&b, n)))
        goto done;
    b.p[0] = 0;
    if ((rc = lower_cps(&b, cps, n)))
        goto done;
    *out = b.p;
    b.p = NULL;
done:
    free(cps);
    free(b.p);
    return rc;
}

int hx_clip_clean_text(const char *text, char **out)
{
    char *u1 = NULL, *u2 = NULL;
    int32_t *cps = NULL;
    struct sbuf low = {0};
    uint8_t *nfc = NULL;
    size_t len2, n;
    *out = NULL;
    int rc = check_utf8(text);
    if (rc || (rc = hx_html_unescape(text, strlen(text), &u1, NULL)) ||
        (rc = hx_html_unescape(u1, strlen(u1), &u2, &len2)) || (rc = decode(u2, len2, &cps, &n)))
        goto done;

    /* Collapse White_Space runs to one space, in place, then strip (str.isspace). */
    size_t k = 0;
    int in_run = 0;
    for (size_t i = 0; i < n; i++) {
        int sp = hx_uc_is_space(cps[i]);
        if (!sp || !in_run)
            cps[k++] = sp ? ' ' : cps[i];
        in_run = sp;
    }
    size_t a = 0, e = k;
    while (a < e && py_isspace(cps[a]))
        a++;
    while (e > a && py_isspace(cps[e - 1]))
        e--;

    if ((rc = sb_reserve(&low, e - a)))
        goto done;
    low.p[0] = 0;
    if ((rc = lower_cps(&low, cps + a, e - a)))
        goto done;

    utf8proc_ssize_t m = utf8proc_map((const uint8_t *)low.p, (utf8proc_ssize_t)low.len, &nfc,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (m < 0) {
        rc = hx_err(m == UTF8PROC_ERROR_NOMEM ? HX_ENOMEM : HX_EINTERNAL,
                    "NFC of text \"%.60s\" failed: %s", text, utf8proc_errmsg(m));
        goto done;
    }
    *out = (char *)nfc;
    nfc = NULL;
done:
    free(u1);
    free(u2);
    free(cps);
    free(low.p);
    free(nfc);
    return rc;
}
