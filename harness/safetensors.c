/* safetensors reader and F32 writer (SPEC 1). The header is copied out of the mapping,
 * NUL-terminated and parsed with cJSON; every offset and size is checked before a pointer
 * into the mapping is formed, so a malformed file is an error, never an out-of-bounds read. */
#include "harness/safetensors.h"

#include "harness/error.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader assumes a little-endian host"
#endif

static const struct {
    const char *name;
    enum hx_dtype dtype;
    size_t size;
} dtypes[] = {
    {"F32", HX_F32, 4}, {"F16", HX_F16, 2}, {"BF16", HX_BF16, 2}, {"F64", HX_F64, 8},
    {"I64", HX_I64, 8}, {"I32", HX_I32, 4}, {"I16", HX_I16, 2},   {"I8", HX_I8, 1},
    {"U8", HX_U8, 1},   {"BOOL", HX_BOOL, 1},
};

static const char *dtype_name(enum hx_dtype d)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].dtype == d)
            return dtypes[i].name;
    return "?";
}

/* A printable, bounded copy of a tensor name for one-line messages. */
static const char *shown(const char *s, char buf[128])
{
    size_t j = 0;
    for (; s && *s && j < 120; s++)
        buf[j++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    if (s && *s) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j] = 0;
    return buf;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int valid_utf8(const unsigned char *s, size_t n, size_t *bad)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            *bad = i;
            return 0;
        }
        if (n - i < len) {
            *bad = i;
            return 0;
        }
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                *bad = i;
                return 0;
            }
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            *bad = i;
            return 0;
        }
        i += len;
    }
    return 1;
}

/* A JSON number that is a non-negative integer no larger than `max` (all such values up to
 * 2^53 are exact in a double). */
static int json_uint(const cJSON *v, double max, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!(d >= 0) || d > max || d != floor(d))
        return 0;
    *out = (uint64_t)d;
    return 1;
}

/* Work record for the cross-tensor checks: the raw offset stays here, out of the tensor,
 * until the whole layout is known to be valid. */
struct slot {
    uint64_t begin;
    size_t nbytes;
    const char *name;
};

static int cmp_offset(const void *a, const void *b)
{
    const struct slot *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int cmp_name(const void *a, const void *b)
{
    const struct slot *x = a, *y = b;
    return strcmp(x->name, y->name);
}

void hx_st_free(struct hx_safetensors *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->n; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    if (st->map && st->map != MAP_FAILED)
        munmap(st->map, st->size);
    free(st->path);
    free(st);
}

/* Parse one header entry into *t; the data offset goes to *begin_out (t->data stays NULL). */
static int parse_entry(const char *path, const cJSON *e, struct hx_st_tensor *t,
                       uint64_t data_size, uint64_t *begin_out)
{
    char nb[128];
    const char *nm = shown(t->name, nb);
    if (!cJSON_IsObject(e))
        return hx_err(HX_EFORMAT, "%s: tensor '%s': header entry is not an object", path, nm);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return hx_err(HX_EFORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", path, nm);
    size_t esize = 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (!strcmp(dt->valuestring, dtypes[i].name)) {
            t->dtype = dtypes[i].dtype;
            esize = dtypes[i].size;
        }
    if (!esize) {
        char db[128];
        return hx_err(HX_EFORMAT,
                      "%s: tensor '%s': unknown dtype \"%s\" (known: F32 F16 BF16 F64 I64 I32 "
                      "I16 I8 U8 BOOL)",
                      path, nm, shown(dt->valuestring, db));
    }

    if (!cJSON_IsArray(sh))
        return hx_err(HX_EFORMAT, "%s: tensor '%s': missing or non-array \"shape\"", path, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > HX_ST_MAXDIM)
        return hx_err(HX_EFORMAT, "%s: tensor '%s': %d dimensions (at most %d supported)", path,
                      nm, nd, HX_ST_MAXDIM);
    t->ndim = nd;
    uint64_t numel = 1;
    int k = 0;
    for (const cJSON *d = sh->child; d; d = d->next, k++) {
        uint64_t v;
        if (!json_uint(d, 9007199254740992.0, &v))
            return hx_err(HX_EFORMAT,
                          "%s: tensor '%s': shape[%d] is not a non-negative integer", path, nm,
                          k);
        t->shape[k] = (int64_t)v;
        if (v && numel > INT64_MAX / v)
            return hx_err(HX_EFORMAT, "%s: tensor '%s': shape product overflows", path, nm);
        numel *= v;
    }
    t->numel = (int64_t)numel;
    if (numel > SIZE_MAX / esize)
        return hx_err(HX_EFORMAT, "%s: tensor '%s': byte size overflows", path, nm);
    t->nbytes = numel * esize;

    uint64_t begin, end;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        !json_uint(off->child, 9007199254740992.0, &begin) ||
        !json_uint(off->child->next, 9007199254740992.0, &end))
        return hx_err(HX_EFORMAT,
                      "%s: tensor '%s': \"data_offsets\" must be two non-negative integers",
                      path, nm);
    if (begin > end)
        return hx_err(HX_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before begin",
                      path, nm, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return hx_err(HX_EFORMAT,
                      "%s: tensor '%s': data_offsets end %llu beyond the %llu data bytes in the "
                      "file (truncated?)",
                      path, nm, (unsigned long long)end, (unsigned long long)data_size);
    if (end - begin != t->nbytes)
        return hx_err(HX_EFORMAT,
                      "%s: tensor '%s': %llu data bytes but shape x %s needs %zu", path, nm,
                      (unsigned long long)(end - begin), dtype_name(t->dtype), t->nbytes);
    *begin_out = begin;
    return 0;
}

int hx_st_open(struct hx_safetensors **out, const char *path)
{
    int rc = 0, fd = -1;
    char *hdr = NULL;
    cJSON *root = NULL;
    struct slot *order = NULL;
    struct hx_safetensors *st = NULL;
    *out = NULL;

    st = hx_calloc(1, sizeof *st, "safetensors handle");
    if (!st)
        return HX_ENOMEM;
    st->path = strdup(path);
    if (!st->path) {
        rc = hx_err(HX_ENOMEM, "out of memory for path %s", path);
        goto done;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = hx_err(HX_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = hx_err(HX_EIO, "%s: not a regular file", path);
        goto done;
    }
    if (sb.st_size < 8) {
        rc = hx_err(HX_EFORMAT, "%s: %lld bytes, too short for a safetensors header", path,
                    (long long)sb.st_size);
        goto done;
    }
    st->size = (size_t)sb.st_size;
    st->map = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (st->map == MAP_FAILED) {
        st->map = NULL;
        rc = hx_err(HX_EIO, "%s: mmap failed: %s", path, strerror(errno));
        goto done;
    }
    const unsigned char *base = st->map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | base[i];
    if (n > st->size - 8) {
        rc = hx_err(HX_EFORMAT, "%s: header length %llu exceeds the %zu bytes after it", path,
                    (unsigned long long)n, st->size - 8);
        goto done;
    }
    if (n < 2) {
        rc = hx_err(HX_EFORMAT, "%s: header length %llu too small for a JSON object", path,
                    (unsigned long long)n);
        goto done;
    }
    size_t bad;
    if (!valid_utf8(base + 8, n, &bad)) {
        rc = hx_err(HX_EFORMAT, "%s: header is not valid UTF-8 (byte %zu)", path, bad);
        goto done;
    }
    if (memchr(base + 8, 0, n)) {
        rc = hx_err(HX_EFORMAT, "%s: header contains a NUL byte", path);
        goto done;
    }
    hdr = hx_malloc(n + 1, "safetensors header");
    if (!hdr) {
        rc = HX_ENOMEM;
        goto done;
    }
    memcpy(hdr, base + 8, n);
    hdr[n] = 0;
    const char *endp = NULL;
    root = cJSON_ParseWithOpts(hdr, &endp, 1);
    if (!root) {
        rc = hx_err(HX_EFORMAT, "%s: header is not valid JSON (near byte %td)", path,
                    endp ? endp - hdr : (ptrdiff_t)-1);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        rc = hx_err(HX_EFORMAT, "%s: header is not a JSON object", path);
        goto done;
    }

    uint64_t data_size = st->size - 8 - n;
    int count = 0;
    for (const cJSON *e = root->child; e; e = e->next)
        count++;
    st->tensors = hx_calloc((size_t)count, sizeof *st->tensors, "safetensors tensor table");
    order = hx_calloc((size_t)count, sizeof *order, "safetensors tensor order");
    if (!st->tensors || !order) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) {
                rc = hx_err(HX_EFORMAT, "%s: \"__metadata__\" is not an object", path);
                goto done;
            }
            for (const cJSON *m = e->child; m; m = m->next)
                if (!cJSON_IsString(m)) {
                    char mb[128];
                    rc = hx_err(HX_EFORMAT, "%s: \"__metadata__\" value '%s' is not a string",
                                path, shown(m->string, mb));
                    goto done;
                }
            continue;
        }
        struct hx_st_tensor *t = &st->tensors[st->n];
        t->name = strdup(e->string);
        if (!t->name) {
            rc = hx_err(HX_ENOMEM, "%s: out of memory for tensor names", path);
            goto done;
        }
        st->n++;
        rc = parse_entry(path, e, t, data_size, &order[st->n - 1].begin);
        if (rc)
            goto done;
    }

    /* Duplicate names (JSON allows repeated keys; safetensors does not). */
    for (int i = 0; i < st->n; i++) {
        order[i].nbytes = st->tensors[i].nbytes;
        order[i].name = st->tensors[i].name;
    }
    struct slot *byname = hx_malloc((size_t)st->n * sizeof *byname, "safetensors names");
    if (!byname) {
        rc = HX_ENOMEM;
        goto done;
    }
    memcpy(byname, order, (size_t)st->n * sizeof *byname);
    qsort(byname, (size_t)st->n, sizeof *byname, cmp_name);
    for (int i = 1; i < st->n; i++)
        if (!strcmp(byname[i - 1].name, byname[i].name)) {
            char nb[128];
            rc = hx_err(HX_EFORMAT, "%s: tensor '%s' appears twice in the header", path,
                        shown(byname[i].name, nb));
            break;
        }
    free(byname);
    if (rc)
        goto done;

    /* Layout: sorted by begin, each tensor starts where the previous ended, from 0 to the
     * end of the file. */
    for (int i = 0; i < st->n; i++)
        st->tensors[i].data = base + 8 + n + order[i].begin; /* in bounds: end <= data_size */
    qsort(order, (size_t)st->n, sizeof *order, cmp_offset);
    uint64_t pos = 0;
    for (int i = 0; i < st->n; i++) {
        char nb[128];
        if (order[i].begin != pos) {
            rc = hx_err(HX_EFORMAT,
                        "%s: tensor '%s': data begins at %llu but the previous tensor ends at "
                        "%llu (%s)",
                        path, shown(order[i].name, nb), (unsigned long long)order[i].begin,
                        (unsigned long long)pos, order[i].begin < pos ? "overlap" : "hole");
            goto done;
        }
        pos = order[i].begin + order[i].nbytes;
    }
    if (pos != data_size) {
        char nb[128];
        rc = hx_err(HX_EFORMAT,
                    "%s: tensor data ends at %llu (after '%s') but the file holds %llu data "
                    "bytes",
                    path, (unsigned long long)pos,
                    st->n ? shown(order[st->n - 1].name, nb) : "no tensor",
                    (unsigned long long)data_size);
        goto done;
    }
    *out = st;
    st = NULL;

done:
    hx_st_free(st);
    cJSON_Delete(root);
    free(hdr);
    free(order);
    if (fd >= 0)
        close(fd);
    return rc;
}

const struct hx_st_tensor *hx_st_find(const struct hx_safetensors *st, const char *name)
{
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->tensors[i].name, name))
            return &st->tensors[i];
    return NULL;
}

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t len = 0;
    len += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++) {
        if (shape[i] < 0)
            len += (size_t)snprintf(buf + len, cap - len, "%sany", i ? "," : "");
        else
            len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "",
                                    (long long)shape[i]);
    }
    if (len < cap)
        snprintf(buf + len, cap - len, "]");
}

/* A converted tensor's file pages are not needed again: drop the whole pages inside its byte
 * range from this process's resident set, so that loading a model costs the float32 copies
 * and not the mapping as well (the mapping stays valid; pages re-read on access). */
static void release_pages(const void *data, size_t nbytes)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)data + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)data + nbytes) & ~(page - 1);
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

int hx_st_load_f32(const struct hx_safetensors *st, const char *name, int ndim,
                   const int64_t *shape, float **out)
{
    *out = NULL;
    const struct hx_st_tensor *t = hx_st_find(st, name);
    if (!t)
        return hx_err(HX_ENOTFOUND, "%s: no tensor named '%s'", st->path, name);
    if (t->dtype != HX_F32 && t->dtype != HX_F16 && t->dtype != HX_BF16 && t->dtype != HX_F64)
        return hx_err(HX_EFORMAT, "%s: tensor '%s' has dtype %s, expected a float type",
                      st->path, name, dtype_name(t->dtype));
    if (ndim >= 0) {
        int ok = ndim == t->ndim;
        for (int i = 0; ok && i < ndim; i++)
            ok = shape[i] < 0 || shape[i] == t->shape[i];
        if (!ok) {
            char want[256], got[256];
            format_shape(want, sizeof want, ndim > HX_ST_MAXDIM ? HX_ST_MAXDIM : ndim, shape);
            format_shape(got, sizeof got, t->ndim, t->shape);
            return hx_err(HX_EFORMAT, "%s: tensor '%s': expected shape %s, got %s", st->path,
                          name, want, got);
        }
    }
    float *f = hx_malloc((size_t)t->numel * sizeof *f, name);
    if (!f)
        return HX_ENOMEM;
    const unsigned char *p = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case HX_F32:
        memcpy(f, p, n * 4);
        break;
    case HX_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            f[i] = (float)d;
        }
        break;
    case HX_F16:
        for (size_t i = 0; i < n; i++)
            f[i] = hx_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    default: /* HX_BF16 */
        for (size_t i = 0; i < n; i++)
            f[i] = hx_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    }
    release_pages(p, t->nbytes);
    *out = f;
    return 0;
}

static float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float hx_bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

float hx_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) /* inf, or NaN with its payload */
        return bits_to_f32(sign | 0x7f800000u | mant << 13);
    if (exp == 0) {
        if (mant == 0)
            return bits_to_f32(sign);
        /* subnormal: mant x 2^-24; normalise so the leading 1 moves to bit 10 */
        int e = -1;
        do {
            mant <<= 1;
            e++;
        } while (!(mant & 0x400));
        return bits_to_f32(sign | (uint32_t)(127 - 15 - e) << 23 | (mant & 0x3ff) << 13);
    }
    return bits_to_f32(sign | (exp + 127 - 15) << 23 | mant << 13);
}

uint16_t hx_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: keep it quiet and keep the top payload bits */
        return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
    if (ax >= 0x477ff000u) /* >= 65520 (halfway from 65504 to 2^16, ties to even): inf */
        return (uint16_t)(sign | 0x7c00);
    if (ax >= 0x38800000u) { /* normal half: rebias exponent, round 13 dropped bits */
        uint32_t h = (ax - 0x38000000u) >> 13, rem = ax & 0x1fff;
        if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    if (ax <= 0x33000000u) /* <= 2^-25: rounds (ties to even) to zero */
        return sign;
    /* subnormal half: value / 2^-24 = m x 2^(e-126) with the implicit bit in m */
    uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e, h = m >> shift, rem = m & ((1u << shift) - 1),
             half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

static void json_name(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

int hx_st_write_f32(const char *path, const struct hx_st_write *t, int n)
{
    int rc = 0;
    char *hdr = NULL, *tmp = NULL;
    size_t hlen = 0;
    FILE *mem = NULL, *f = NULL;

    for (int i = 0; i < n; i++) {
        if (!t[i].name || t[i].ndim < 0 || t[i].ndim > HX_ST_MAXDIM)
            return hx_err(HX_EINVAL, "%s: tensor %d: missing name or bad ndim %d", path, i,
                          t[i].ndim);
        if (!strcmp(t[i].name, "__metadata__"))
            return hx_err(HX_EINVAL, "%s: '__metadata__' is not a valid tensor name", path);
        for (int j = 0; j < i; j++)
            if (!strcmp(t[i].name, t[j].name))
                return hx_err(HX_EINVAL, "%s: tensor '%s' given twice", path, t[i].name);
        for (int d = 0; d < t[i].ndim; d++)
            if (t[i].shape[d] < 0)
                return hx_err(HX_EINVAL, "%s: tensor '%s': negative dimension", path,
                              t[i].name);
    }

    mem = open_memstream(&hdr, &hlen);
    if (!mem)
        return hx_err(HX_ENOMEM, "%s: cannot build the header", path);
    fputc('{', mem);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++)
            numel *= (uint64_t)t[i].shape[d];
        fprintf(mem, "%s", i ? "," : "");
        json_name(mem, t[i].name);
        fprintf(mem, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t[i].ndim; d++)
            fprintf(mem, "%s%lld", d ? "," : "", (long long)t[i].shape[d]);
        fprintf(mem, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                (unsigned long long)(off + numel * 4));
        off += numel * 4;
    }
    fputc('}', mem);
    while (ftell(mem) % 8) /* pad so the data starts 8-byte aligned */
        fputc(' ', mem);
    if (fclose(mem) != 0) {
        mem = NULL;
        rc = hx_err(HX_ENOMEM, "%s: cannot build the header", path);
        goto done;
    }
    mem = NULL;

    size_t plen = strlen(path) + 32;
    tmp = hx_malloc(plen, "temporary path");
    if (!tmp) {
        rc = HX_ENOMEM;
        goto done;
    }
    snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
    f = fopen(tmp, "wb");
    if (!f) {
        rc = hx_err(HX_EIO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen;
    for (int i = 0; ok && i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++)
            numel *= (size_t)t[i].shape[d];
        if (numel && !t[i].data) {
            rc = hx_err(HX_EINVAL, "%s: tensor '%s' has no data", path, t[i].name);
            goto done;
        }
        ok = !numel || fwrite(t[i].data, sizeof(float), numel, f) == numel;
    }
    if (ok)
        ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    int cl = fclose(f);
    f = NULL;
    if (!ok || cl != 0) {
        rc = hx_err(HX_EIO, "%s: write failed: %s", tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        rc = hx_err(HX_EIO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        goto done;
    }

done:
    if (mem)
        fclose(mem);
    if (f)
        fclose(f);
    if (rc && tmp)
        unlink(tmp);
    free(tmp);
    free(hdr);
    return rc;
}

int hx_weights_keep(struct hx_weights *w, float *p, size_t count)
{
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 128;
        float **a = realloc(w->arrays, sizeof *a * cap);
        if (!a) {
            free(p);
            return hx_err(HX_ENOMEM, "out of memory keeping model weights");
        }
        w->arrays = a;
        w->cap = cap;
    }
    w->arrays[w->n++] = p;
    w->bytes += count * sizeof(float);
    return 0;
}

int hx_weights_load(struct hx_weights *w, const struct hx_safetensors *st, float **dst,
                    const char *name, int ndim, const int64_t *shape)
{
    int rc = hx_st_load_f32(st, name, ndim, shape, dst);
    if (rc)
        return rc;
    return hx_weights_keep(w, *dst, (size_t)hx_st_find(st, name)->numel);
}

void hx_weights_free(struct hx_weights *w)
{
    for (int i = 0; i < w->n; i++)
        free(w->arrays[i]);
    free(w->arrays);
    memset(w, 0, sizeof *w);
}
