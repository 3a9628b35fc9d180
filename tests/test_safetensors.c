#include "harness/error.h"
#include "harness/safetensors.h"
#include "tests/test_util.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------------------- */

/* Write a file: 8-byte LE length `hlen` (the true JSON length when hlen < 0), the header text,
 * then `ndata` data bytes (a counting pattern). Returns a static path. */
static const char *raw_file(const char *dir, const char *fname, const char *json, long long hlen,
                            size_t ndata)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, fname);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    uint64_t n = hlen < 0 ? strlen(json) : (uint64_t)hlen;
    for (int i = 0; i < 8; i++)
        fputc((int)((n >> (8 * i)) & 0xff), f);
    fwrite(json, 1, strlen(json), f);
    for (size_t i = 0; i < ndata; i++)
        fputc((int)(i & 0xff), f);
    fclose(f);
    return path;
}

static void write_bytes(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* Expect hx_st_open to fail with HX_EFORMAT and a message naming the file (and `must`). */
static void expect_reject(const char *path, const char *must)
{
    struct hx_safetensors *st = (void *)1;
    hx_err_clear();
    int rc = hx_st_open(&st, path);
    ck_assert_msg(rc == HX_EFORMAT, "%s: expected HX_EFORMAT, got %d (%s)", path, rc,
                  hx_errmsg());
    ck_assert_ptr_null(st);
    const char *m = hx_errmsg();
    ck_assert_msg(strstr(m, path) != NULL, "message does not name the file: %s", m);
    ck_assert_msg(!must || strstr(m, must) != NULL, "message lacks '%s': %s", must, m);
    ck_assert_msg(strchr(m, '\n') == NULL, "message is not one line: %s", m);
}

/* Independent decoders: sign x mantissa x 2^exponent, straight from the format definitions. */
static double naive_half(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp(m, -24);
    else
        v = ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static double naive_bf16(uint16_t h)
{
    int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
    double v;
    if (e == 255)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp(m, -133);
    else
        v = ldexp(128 + m, e - 134);
    return s ? -v : v;
}

/* ---- round trip ------------------------------------------------------------------------- */

START_TEST(write_then_read_round_trip)
{
    const char *dir = hx_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    float a[2 * 3 * 4], b[5], scalar = 4.60517f;
    for (int i = 0; i < 24; i++)
        a[i] = (float)i * 0.25f - 3.0f;
    for (int i = 0; i < 5; i++)
        b[i] = -1e30f * (float)(i + 1);
    struct hx_st_write w[] = {
        {"vision_model.x", 3, {2, 3, 4}, a},
        {"b\"quoted\\name", 1, {5}, b},
        {"logit_scale", 0, {0}, &scalar},
        {"empty", 2, {0, 7}, NULL},
    };
    ck_assert_int_eq(hx_st_write_f32(path, w, 4), 0);

    /* no temporary file left beside it */
    DIR *d = opendir(dir);
    int nfiles = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            nfiles++;
    closedir(d);
    ck_assert_int_eq(nfiles, 1);

    struct hx_safetensors *st;
    ck_assert_msg(hx_st_open(&st, path) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(st->n, 4);
    /* header length is a multiple of 8, so the data is aligned */
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | ((unsigned char *)st->map)[i];
    ck_assert_uint_eq(n % 8, 0);
    ck_assert_uint_eq(8 + n + (24 + 5 + 1) * 4, st->size);

    const struct hx_st_tensor *t = hx_st_find(st, "vision_model.x");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, HX_F32);
    ck_assert_int_eq(t->ndim, 3);
    ck_assert_int_eq(t->shape[0], 2);
    ck_assert_int_eq(t->shape[2], 4);
    ck_assert_int_eq(t->numel, 24);
    ck_assert_uint_eq(t->nbytes, 96);
    ck_assert_ptr_eq(st->tensors[0].name, t->name); /* header order kept */
    ck_assert_ptr_null(hx_st_find(st, "nope"));

    float *f;
    int64_t want[3] = {2, -1, 4};
    ck_assert_int_eq(hx_st_load_f32(st, "vision_model.x", 3, want, &f), 0);
    ck_assert_int_eq(memcmp(f, a, sizeof a), 0);
    free(f);
    ck_assert_int_eq(hx_st_load_f32(st, "b\"quoted\\name", -1, NULL, &f), 0);
    ck_assert_int_eq(memcmp(f, b, sizeof b), 0);
    free(f);
    ck_assert_int_eq(hx_st_load_f32(st, "logit_scale", 0, NULL, &f), 0);
    ck_assert_float_eq(f[0], scalar);
    free(f);
    t = hx_st_find(st, "empty");
    ck_assert_int_eq(t->numel, 0);
    ck_assert_int_eq(t->shape[1], 7);

    /* shape mismatch names file, tensor, both shapes */
    int64_t wrong[3] = {2, 3, 5};
    f = (float *)1;
    ck_assert_int_eq(hx_st_load_f32(st, "vision_model.x", 3, wrong, &f), HX_EFORMAT);
    ck_assert_ptr_null(f);
    const char *m = hx_errmsg();
    ck_assert_msg(strstr(m, path) && strstr(m, "vision_model.x") && strstr(m, "[2,3,5]") &&
                      strstr(m, "[2,3,4]"),
                  "%s", m);
    ck_assert_int_eq(hx_st_load_f32(st, "vision_model.x", 2, wrong, &f), HX_EFORMAT);
    ck_assert_int_eq(hx_st_load_f32(st, "missing.weight", -1, NULL, &f), HX_ENOTFOUND);
    ck_assert_msg(strstr(hx_errmsg(), "missing.weight") && strstr(hx_errmsg(), path), "%s",
                  hx_errmsg());
    hx_st_free(st);

    /* rewriting replaces the file */
    ck_assert_int_eq(hx_st_write_f32(path, w + 2, 1), 0);
    ck_assert_int_eq(hx_st_open(&st, path), 0);
    ck_assert_int_eq(st->n, 1);
    hx_st_free(st);

    /* duplicate names are refused by the writer, nothing is left behind */
    struct hx_st_write dup[] = {{"x", 1, {1}, b}, {"x", 1, {1}, b}};
    snprintf(path, sizeof path, "%s/dup.safetensors", dir);
    ck_assert_int_eq(hx_st_write_f32(path, dup, 2), HX_EINVAL);
    ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

/* F16, BF16 and F64 data at an odd (unaligned) offset, plus metadata and an integer buffer. */
START_TEST(reads_half_bf16_f64_unaligned)
{
    const char *dir = hx_tmpdir();
    /* header of odd length so the data section starts unaligned */
    char json[512];
    snprintf(json, sizeof json,
             "{\"__metadata__\":{\"format\":\"pt\"},"
             "\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[6,10]},"
             "\"d\":{\"dtype\":\"F64\",\"shape\":[1,1],\"data_offsets\":[10,18]},"
             "\"ids\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[18,26]}}");
    if (strlen(json) % 2 == 0)
        strcat(json, " ");
    char path[512];
    snprintf(path, sizeof path, "%s/mixed.safetensors", dir);
    size_t hl = strlen(json);
    unsigned char buf[1024];
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, json, hl);
    unsigned char *p = buf + 8 + hl;
    const uint16_t hv[3] = {0x3c00 /* 1 */, 0xc000 /* -2 */, 0x0001 /* 2^-24 */};
    const uint16_t bv[2] = {0x3f80 /* 1 */, 0x4049 /* 3.140625 */};
    for (int i = 0; i < 3; i++) {
        *p++ = hv[i] & 0xff;
        *p++ = hv[i] >> 8;
    }
    for (int i = 0; i < 2; i++) {
        *p++ = bv[i] & 0xff;
        *p++ = bv[i] >> 8;
    }
    double dv = -0.1;
    memcpy(p, &dv, 8);
    p += 8;
    memset(p, 0, 8);
    p += 8;
    write_bytes(path, buf, (size_t)(p - buf));

    struct hx_safetensors *st;
    ck_assert_msg(hx_st_open(&st, path) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(st->n, 4); /* metadata is not a tensor */
    ck_assert_ptr_null(hx_st_find(st, "__metadata__"));
    ck_assert_uint_eq((uintptr_t)hx_st_find(st, "h")->data % 2, 1);
    float *f;
    ck_assert_int_eq(hx_st_load_f32(st, "h", 1, (int64_t[]){3}, &f), 0);
    ck_assert_float_eq(f[0], 1.0f);
    ck_assert_float_eq(f[1], -2.0f);
    ck_assert_float_eq(f[2], ldexpf(1.0f, -24));
    free(f);
    ck_assert_int_eq(hx_st_load_f32(st, "b", 1, (int64_t[]){-1}, &f), 0);
    ck_assert_float_eq(f[0], 1.0f);
    ck_assert_float_eq(f[1], 3.140625f);
    free(f);
    ck_assert_int_eq(hx_st_load_f32(st, "d", 2, (int64_t[]){1, 1}, &f), 0);
    ck_assert_float_eq(f[0], (float)-0.1);
    free(f);
    ck_assert_int_eq(hx_st_load_f32(st, "ids", -1, NULL, &f), HX_EFORMAT);
    ck_assert_msg(strstr(hx_errmsg(), "ids") && strstr(hx_errmsg(), "I64"), "%s", hx_errmsg());
    hx_st_free(st);
}
END_TEST

/* ---- invalid files ---------------------------------------------------------------------- */

#define T1(dt, shape, b, e)                                                                   \
    "{\"w\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}}"

START_TEST(rejects_malformed_files)
{
    const char *dir = hx_tmpdir();
    const char *two = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[%d,%d]}}";
    char buf[512];

    /* the valid base case opens */
    struct hx_safetensors *st;
    ck_assert_int_eq(hx_st_open(&st, raw_file(dir, "ok.st", T1("F32", "[2,3]", 0, 24), -1, 24)),
                     0);
    hx_st_free(st);

    expect_reject(raw_file(dir, "truncated.st", T1("F32", "[2,3]", 0, 24), -1, 20), "'w'");
    expect_reject(raw_file(dir, "trailing.st", T1("F32", "[2,3]", 0, 24), -1, 28), "'w'");
    /* a header length that lies: shorter than the JSON, longer than the JSON, huge */
    expect_reject(raw_file(dir, "short_len.st", T1("F32", "[2,3]", 0, 24), 20, 24), NULL);
    expect_reject(raw_file(dir, "long_len.st", T1("F32", "[2,3]", 0, 24), 70, 24), NULL);
    expect_reject(raw_file(dir, "huge_len.st", T1("F32", "[2,3]", 0, 24), 1LL << 62, 24),
                  "header length");
    expect_reject(raw_file(dir, "len_gt_file.st", T1("F32", "[2,3]", 0, 24), 200, 24),
                  "header length");
    snprintf(buf, sizeof buf, two, 4, 12);
    expect_reject(raw_file(dir, "overlap.st", buf, -1, 12), "overlap");
    snprintf(buf, sizeof buf, two, 12, 20);
    expect_reject(raw_file(dir, "hole.st", buf, -1, 20), "hole");
    snprintf(buf, sizeof buf, two, 0, 8); /* two tensors on the same bytes */
    expect_reject(raw_file(dir, "same.st", buf, -1, 8), NULL);
    expect_reject(raw_file(dir, "bytelen.st", T1("F32", "[2,3]", 0, 20), -1, 20), "'w'");
    expect_reject(raw_file(dir, "bytelen16.st", T1("F16", "[2,3]", 0, 24), -1, 24), "'w'");
    expect_reject(raw_file(dir, "backwards.st", T1("F32", "[0]", 8, 0), -1, 8), "'w'");
    expect_reject(raw_file(dir, "dtype.st", T1("F8_E4M3", "[2]", 0, 2), -1, 2), "F8_E4M3");
    expect_reject(raw_file(dir, "dtype_num.st",
                           "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 4),
                  "dtype");
    expect_reject(raw_file(dir, "negshape.st", T1("F32", "[-1,2]", 0, 8), -1, 8), "shape");
    expect_reject(raw_file(dir, "fracshape.st", T1("F32", "[1.5]", 0, 4), -1, 4), "shape");
    expect_reject(raw_file(dir, "strshape.st", T1("F32", "[\"2\"]", 0, 8), -1, 8), "shape");
    expect_reject(raw_file(dir, "hugeshape.st",
                           T1("F32", "[4294967296,4294967296,4294967296]", 0, 0), -1, 0),
                  "overflow");
    expect_reject(raw_file(dir, "hugeshape2.st", T1("F64", "[4611686018427387904]", 0, 0), -1, 0),
                  NULL);
    expect_reject(raw_file(dir, "manydims.st", T1("F32", "[1,1,1,1,1,1,1,1,1]", 0, 4), -1, 4),
                  "dimensions");
    expect_reject(raw_file(dir, "hugeoff.st", T1("F32", "[1]", 1e300, 1e300), -1, 4), NULL);
    expect_reject(raw_file(dir, "notjson.st", "{\"w\": [1, 2", -1, 0), "JSON");
    expect_reject(raw_file(dir, "garbage.st", "\x01\x02\x03\x04 not json at all", -1, 0), NULL);
    expect_reject(raw_file(dir, "array.st", "[1,2,3]      ", -1, 0), "object");
    expect_reject(raw_file(dir, "trailjunk.st", "{}   x", -1, 0), "JSON");
    expect_reject(raw_file(dir, "badutf8.st", "{\"w\xff\":{}}", -1, 0), "UTF-8");
    expect_reject(raw_file(dir, "overlong.st", "{\"\xc0\xaf\":{}}", -1, 0), "UTF-8");
    expect_reject(raw_file(dir, "surrogate.st", "{\"\xed\xa0\x80\":{}}", -1, 0), "UTF-8");
    expect_reject(raw_file(dir, "dup.st",
                           "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                           "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                           -1, 8),
                  "twice");
    expect_reject(raw_file(dir, "noshape.st", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}",
                           -1, 4),
                  "'w'");
    expect_reject(raw_file(dir, "offs3.st",
                           "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}",
                           -1, 4),
                  "data_offsets");
    expect_reject(raw_file(dir, "entry_num.st", "{\"w\":3}", -1, 0), "'w'");
    expect_reject(raw_file(dir, "meta.st", "{\"__metadata__\":{\"a\":1}}", -1, 0), "metadata");
    expect_reject(raw_file(dir, "empty_hdr.st", "", -1, 0), NULL);

    /* an empty file and a 5-byte file */
    char path[512];
    snprintf(path, sizeof path, "%s/empty.st", dir);
    write_bytes(path, (const unsigned char *)"", 0);
    expect_reject(path, NULL);
    snprintf(path, sizeof path, "%s/five.st", dir);
    write_bytes(path, (const unsigned char *)"\x02\0\0\0\0", 5);
    expect_reject(path, NULL);

    /* a missing file is an I/O error naming it */
    snprintf(path, sizeof path, "%s/absent.st", dir);
    ck_assert_int_eq(hx_st_open(&st, path), HX_EIO);
    ck_assert_ptr_nonnull(strstr(hx_errmsg(), path));

    /* valid edge cases: no tensors, only metadata, zero-size tensors, trailing spaces */
    ck_assert_int_eq(hx_st_open(&st, raw_file(dir, "e1.st", "{}", -1, 0)), 0);
    ck_assert_int_eq(st->n, 0);
    hx_st_free(st);
    ck_assert_int_eq(
        hx_st_open(&st, raw_file(dir, "e2.st", "{\"__metadata__\":{\"k\":\"v\"}}  ", -1, 0)), 0);
    hx_st_free(st);
    ck_assert_int_eq(
        hx_st_open(&st, raw_file(dir, "e3.st",
                                 "{\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,"
                                 "0]},\"w\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":["
                                 "0,3]}}",
                                 -1, 3)),
        0);
    ck_assert_int_eq(st->n, 2);
    hx_st_free(st);
}
END_TEST

/* ---- conversions ------------------------------------------------------------------------ */

static int same_value(float got, double want)
{
    if (isnan(want))
        return isnan(got);
    return (double)got == want && !signbit(got) == !signbit(want);
}

START_TEST(f16_bf16_all_bit_patterns)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = hx_f16_to_f32((uint16_t)h);
        ck_assert_msg(same_value(f, naive_half((uint16_t)h)), "f16 0x%04x: got %a, want %a", h,
                      (double)f, naive_half((uint16_t)h));
        float g = hx_bf16_to_f32((uint16_t)h);
        ck_assert_msg(same_value(g, naive_bf16((uint16_t)h)), "bf16 0x%04x: got %a, want %a", h,
                      (double)g, naive_bf16((uint16_t)h));
        /* every non-NaN half survives the trip back */
        if (!isnan(f))
            ck_assert_msg(hx_f32_to_f16(f) == h, "f16 0x%04x does not round-trip (0x%04x)", h,
                          hx_f32_to_f16(f));
        else
            ck_assert(isnan(hx_f16_to_f32(hx_f32_to_f16(f))));
    }
}
END_TEST

START_TEST(f32_to_f16_rounds_to_nearest_even)
{
    /* every midpoint between consecutive finite halves (all exact in float): ties go to the
     * even pattern; one float ulp either side goes to the nearer one */
    for (uint32_t h = 0; h < 0x7bff; h++) {
        double lo = naive_half((uint16_t)h), hi = naive_half((uint16_t)(h + 1));
        float mid = (float)((lo + hi) / 2);
        ck_assert((double)mid == (lo + hi) / 2);
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        ck_assert_msg(hx_f32_to_f16(mid) == even, "tie %a: got 0x%04x want 0x%04x", (double)mid,
                      hx_f32_to_f16(mid), even);
        ck_assert_msg(hx_f32_to_f16(-mid) == (even | 0x8000), "tie -%a", (double)mid);
        ck_assert_int_eq(hx_f32_to_f16(nextafterf(mid, 0)), h);
        ck_assert_int_eq(hx_f32_to_f16(nextafterf(mid, INFINITY)), h + 1);
    }
    /* overflow: 65504 is the largest half; 65520 is the tie with 2^16 and goes to inf */
    ck_assert_int_eq(hx_f32_to_f16(65504.0f), 0x7bff);
    ck_assert_int_eq(hx_f32_to_f16(nextafterf(65520.0f, 0)), 0x7bff);
    ck_assert_int_eq(hx_f32_to_f16(65520.0f), 0x7c00);
    ck_assert_int_eq(hx_f32_to_f16(-65520.0f), 0xfc00);
    ck_assert_int_eq(hx_f32_to_f16(1e10f), 0x7c00);
    ck_assert_int_eq(hx_f32_to_f16(3.4e38f), 0x7c00);
    ck_assert_int_eq(hx_f32_to_f16(INFINITY), 0x7c00);
    ck_assert_int_eq(hx_f32_to_f16(-INFINITY), 0xfc00);
    uint16_t qn = hx_f32_to_f16(NAN);
    ck_assert((qn & 0x7c00) == 0x7c00 && (qn & 0x3ff) != 0);
    /* underflow: half of the smallest subnormal is a tie with zero (even), above it rounds up */
    ck_assert_int_eq(hx_f32_to_f16(ldexpf(1, -25)), 0x0000);
    ck_assert_int_eq(hx_f32_to_f16(nextafterf(ldexpf(1, -25), 1)), 0x0001);
    ck_assert_int_eq(hx_f32_to_f16(ldexpf(3, -25)), 0x0002); /* 1.5 x 2^-24: tie -> even 2 */
    ck_assert_int_eq(hx_f32_to_f16(ldexpf(5, -25)), 0x0002); /* 2.5 x 2^-24: tie -> even 2 */
    ck_assert_int_eq(hx_f32_to_f16(ldexpf(3, -26)), 0x0001); /* 0.75 x 2^-24 -> 1 */
    ck_assert_int_eq(hx_f32_to_f16(1e-30f), 0x0000);
    ck_assert_int_eq(hx_f32_to_f16(-1e-30f), 0x8000);
    ck_assert_int_eq(hx_f32_to_f16(-0.0f), 0x8000);
    ck_assert_int_eq(hx_f32_to_f16(1.0f), 0x3c00);
    ck_assert_int_eq(hx_f32_to_f16(0.1f), 0x2e66);
}
END_TEST

/* ---- mutations -------------------------------------------------------------------------- */

/* Open a damaged file: it either fails with a message naming the file, or every tensor lies
 * inside the mapping and the sizes add up. Reading every byte lets a bad pointer fault. */
static void open_or_fail_cleanly(const char *path, unsigned *opened, unsigned *failed)
{
    struct hx_safetensors *st = NULL;
    int rc = hx_st_open(&st, path);
    if (rc) {
        ck_assert_ptr_null(st);
        ck_assert_msg(rc == HX_EFORMAT, "rc %d: %s", rc, hx_errmsg());
        ck_assert_ptr_nonnull(strstr(hx_errmsg(), path));
        (*failed)++;
        return;
    }
    const unsigned char *lo = st->map, *hi = lo + st->size;
    size_t total = 0;
    unsigned sum = 0;
    for (int i = 0; i < st->n; i++) {
        const struct hx_st_tensor *t = &st->tensors[i];
        const unsigned char *p = t->data;
        ck_assert(p >= lo && p <= hi && t->nbytes <= (size_t)(hi - p));
        for (size_t k = 0; k < t->nbytes; k++)
            sum += p[k];
        total += t->nbytes;
        float *f;
        if (hx_st_load_f32(st, t->name, -1, NULL, &f) == 0)
            free(f);
    }
    ck_assert_uint_le(total, st->size);
    (void)sum;
    hx_st_free(st);
    (*opened)++;
}

START_TEST(mutated_headers_fail_cleanly)
{
    const char *dir = hx_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/base.safetensors", dir);
    float a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {7, 8};
    struct hx_st_write w[] = {{"a.weight", 2, {2, 3}, a}, {"b", 1, {2}, b}, {"c", 0, {0}, a}};
    ck_assert_int_eq(hx_st_write_f32(path, w, 3), 0);
    size_t n;
    unsigned char *orig = read_all(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | orig[i];
    size_t region = 8 + (size_t)hlen;
    ck_assert_uint_lt(region, n);
    unsigned char *m = malloc(n);
    unsigned opened = 0, failed = 0;
    char mpath[512];
    snprintf(mpath, sizeof mpath, "%s/mutant.safetensors", dir);

    /* truncation at every length through the header and into the data */
    for (size_t len = 0; len < n; len++) {
        write_bytes(mpath, orig, len);
        open_or_fail_cleanly(mpath, &opened, &failed);
    }
    /* every header byte replaced by a few chosen and random values */
    uint32_t rng = 12345;
    const unsigned char picks[] = {0x00, 0xff, '0', '9', '-', '"', ',', ']', '}', ' '};
    for (size_t pos = 0; pos < region; pos++) {
        for (size_t k = 0; k < sizeof picks + 3; k++) {
            memcpy(m, orig, n);
            if (k < sizeof picks) {
                m[pos] = picks[k];
            } else {
                rng = rng * 1664525u + 1013904223u;
                m[pos] ^= (unsigned char)(1u << ((rng >> 24) & 7));
            }
            write_bytes(mpath, m, n);
            open_or_fail_cleanly(mpath, &opened, &failed);
        }
    }
    /* random multi-byte damage */
    for (int it = 0; it < 300; it++) {
        memcpy(m, orig, n);
        for (int j = 0; j < 4; j++) {
            rng = rng * 1664525u + 1013904223u;
            m[(rng >> 8) % region] = (unsigned char)(rng >> 3);
        }
        write_bytes(mpath, m, n);
        open_or_fail_cleanly(mpath, &opened, &failed);
    }
    ck_assert_uint_gt(failed, 500);
    ck_assert_uint_gt(opened, 10); /* e.g. changed letters in names, spaces in the padding */
    free(m);
    free(orig);
}
END_TEST

Suite *suite_safetensors(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("io");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, write_then_read_round_trip);
    tcase_add_test(tc, reads_half_bf16_f64_unaligned);
    tcase_add_test(tc, rejects_malformed_files);
    tcase_add_test(tc, f16_bf16_all_bit_patterns);
    tcase_add_test(tc, f32_to_f16_rounds_to_nearest_even);
    tcase_add_test(tc, mutated_headers_fail_cleanly);
    suite_add_tcase(s, tc);
    return s;
}
