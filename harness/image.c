/* Image decoding, PNG writing and the resampling kernels of PyTorch, Pillow and OpenCV.
 *
 * Each resize reproduces the arithmetic of its reference library, including the type
 * (float, double or fixed point) in which each intermediate is computed, because the
 * evaluation protocols depend on bit-exact preprocessing. Indices and weights are computed
 * once per call per output row and column; the pixel loops only read tables. */
#include "harness/image.h"
#include "harness/simd.h"

#include "harness/atomicio.h"
#include "harness/error.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

/* ---------------------------------------------------------------------------------------- */
/* Decoding                                                                                 */

/* JPEG decoding is stb_image's, which differs from PIL 9.4 (libjpeg-turbo: ISLOW IDCT, its
 * own chroma upsampling and colour conversion rounding). Measured on the 46 fixture JPEGs
 * (voc, cocostuff, ade20k, demo_images; `scripts/image_reference.py --jpeg-diff` reprints
 * it): max |diff| 3 grey levels, mean |diff| 0.046 per channel value, 3.6% of values differ
 * (by 1: 2.6%, by 2: 1.0%, by 3: 0.002%); per file the mean ranges 0.008 (COCO) to 0.095
 * (ADE20K), voc/2007_000033.jpg 0.025 with 1.9% of values differing. The grey test JPEG
 * decodes identically. 8-bit PNG decoding matches PIL exactly. A protocol that needs PIL's exact pixels
 * must decode with libjpeg; the resizes below are exact given the same decoded pixels. */

static int check_dims(const char *path, long w, long h)
{
    if (w <= 0 || h <= 0 || w > HX_IMAGE_MAX_SIDE || h > HX_IMAGE_MAX_SIDE ||
        w * h > HX_IMAGE_MAX_PIXELS)
        return hx_err(HX_EFORMAT, "image %s has absurd dimensions %ldx%ld (limit %d per side, "
                                  "%ld pixels)", path, w, h, HX_IMAGE_MAX_SIDE,
                      (long)HX_IMAGE_MAX_PIXELS);
    return 0;
}

/* Accept JPEG and PNG only. A PNG's IHDR is checked here: stb refuses very large PNGs with
 * a misleading "unknown image type", so the limit is applied before it looks. */
static int sniff_format(FILE *f, const char *path)
{
    unsigned char m[24] = {0};
    size_t n = fread(m, 1, sizeof m, f);
    if (ferror(f))
        return hx_err(HX_EIO, "cannot read image %s: %s", path, strerror(errno));
    rewind(f);
    if (n >= 3 && m[0] == 0xFF && m[1] == 0xD8 && m[2] == 0xFF)
        return 0;
    if (n >= 8 && !memcmp(m, "\x89PNG\r\n\x1a\n", 8)) {
        if (n == 24 && !memcmp(m + 12, "IHDR", 4)) {
            long w = (long)m[16] << 24 | (long)m[17] << 16 | (long)m[18] << 8 | m[19];
            long h = (long)m[20] << 24 | (long)m[21] << 16 | (long)m[22] << 8 | m[23];
            return check_dims(path, w, h);
        }
        return 0; /* stb reports what is wrong */
    }
    if (n == 0)
        return hx_err(HX_EFORMAT, "image %s is empty", path);
    return hx_err(HX_EFORMAT, "image %s is neither JPEG nor PNG (unsupported format)", path);
}

int hx_image_load(struct hx_image *out, const char *path)
{
    int rc = 0, w = 0, h = 0, n = 0;
    unsigned char *px = NULL;
    FILE *f = NULL;

    out->w = out->h = 0;
    out->px = NULL;
    f = fopen(path, "rb");
    if (!f) {
        rc = hx_err(HX_EIO, "cannot open image %s: %s", path, strerror(errno));
        goto done;
    }
    if ((rc = sniff_format(f, path)) < 0)
        goto done;
    if (!stbi_info_from_file(f, &w, &h, &n)) {
        rc = hx_err(HX_EFORMAT, "cannot decode image %s: %s", path, stbi_failure_reason());
        goto done;
    }
    if ((rc = check_dims(path, w, h)) < 0)
        goto done;
    px = stbi_load_from_file(f, &w, &h, &n, 3);
    if (!px) {
        const char *why = stbi_failure_reason();
        rc = hx_err(strcmp(why ? why : "", "outofmem") ? HX_EFORMAT : HX_ENOMEM,
                    "cannot decode image %s: %s", path, why ? why : "unknown reason");
        goto done;
    }
    out->w = w;
    out->h = h;
    out->px = px; /* stb allocates with malloc (the Debian build keeps the default) */
    px = NULL;
done:
    if (f)
        fclose(f);
    stbi_image_free(px);
    return rc;
}

void hx_image_free(struct hx_image *im)
{
    if (!im)
        return;
    stbi_image_free(im->px);
    im->px = NULL;
    im->w = im->h = 0;
}

/* stb's encoder streams the PNG into memory; the file is then written atomically. */
struct png_sink {
    uint8_t *buf;
    size_t len, cap;
    int failed;
};

static void png_sink_write(void *ctx, void *data, int size)
{
    struct png_sink *k = ctx;
    if (k->failed || size <= 0)
        return;
    if (k->len + (size_t)size > k->cap) {
        size_t cap = 2 * (k->len + (size_t)size);
        uint8_t *grown = realloc(k->buf, cap);
        if (!grown) {
            k->failed = 1;
            return;
        }
        k->buf = grown, k->cap = cap;
    }
    memcpy(k->buf + k->len, data, (size_t)size);
    k->len += (size_t)size;
}

int hx_png_write(const char *path, const uint8_t *px, int w, int h, int channels)
{
    struct png_sink sink = {NULL, 0, 0, 0};
    /* stb's encoder sizes its buffers with int */
    if (w <= 0 || h <= 0 || (channels != 1 && channels != 3) ||
        (long long)w * h * channels > INT_MAX / 2)
        return hx_err(HX_EINVAL, "cannot write %s: bad image shape %dx%dx%d", path, w, h,
                      channels);
    int rc = 0;
    if (!stbi_write_png_to_func(png_sink_write, &sink, w, h, channels, px, w * channels) ||
        sink.failed)
        rc = hx_err(HX_ENOMEM, "cannot encode PNG for %s (out of memory)", path);
    else
        rc = hx_write_atomic(path, sink.buf, sink.len);
    free(sink.buf);
    return rc;
}

void hx_image_to_tensor(const struct hx_image *im, const float mean[3], const float std[3],
                        float *out)
{
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++)
            lut[c][v] = ((float)v / 255.0f - mean[c]) / std[c];
    size_t n = (size_t)im->w * im->h;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = im->px + 3 * i;
        out[i] = lut[0][p[0]];
        out[n + i] = lut[1][p[1]];
        out[2 * n + i] = lut[2][p[2]];
    }
}

/* ---------------------------------------------------------------------------------------- */
/* PyTorch F.interpolate (torch 1.13 CPU kernels, float32)                                   */

static int check_sizes(const char *what, int c, int h, int w, int oh, int ow)
{
    if (c < 1 || h < 1 || w < 1 || oh < 1 || ow < 1)
        return hx_err(HX_EINVAL, "%s: bad sizes c=%d %dx%d -> %dx%d", what, c, h, w, oh, ow);
    return 0;
}

/* area_pixel_compute_scale: the ratio in float. For align_corners=False and a given output
 * size it is (float)in / out. */
static float torch_scale(int in, int out, int align_corners)
{
    if (align_corners)
        return out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
    return (float)in / (float)out;
}

/* area_pixel_compute_source_index, evaluated in double as torch does (its accumulation type
 * for float): the float scale is widened, scale * (dst + 0.5) - 0.5 is not rounded to float.
 * The linear mode clamps it below at 0, the cubic mode does not. */
static double torch_src_index(float scale, int dst, int align_corners, int cubic)
{
    if (align_corners)
        return (double)scale * dst;
    double s = (double)scale * (dst + 0.5) - 0.5;
    return (!cubic && s < 0.0) ? 0.0 : s;
}

/* Linear taps along one axis: i0, i1 and weights l0, l1 (lambda1 = (float)(src - i0)). */
static void linear_taps(int in, int out, int align_corners, int *i0, int *i1, float *l0, float *l1)
{
    float scale = torch_scale(in, out, align_corners);
    for (int o = 0; o < out; o++) {
        if (in == out) {
            i0[o] = i1[o] = o;
            l0[o] = 1.0f;
            l1[o] = 0.0f;
            continue;
        }
        double r = torch_src_index(scale, o, align_corners, 0);
        int a = (int)r;
        i0[o] = a;
        i1[o] = a + (a < in - 1 ? 1 : 0);
        l1[o] = (float)(r - a);
        l0[o] = 1.0f - l1[o];
    }
}

/* Blocks of sixteen outputs. The taps are non-decreasing, so a block whose sources lie within
 * 32 samples of its first can be read with two (masked) loads from its base and picked out
 * with one two-register permute per tap: base, the load masks and the output mask go to
 * blk[4 * b], the indices relative to base to rel[32 * b]. A wider block has base -1. */
#define LB 16

static void lerp_blocks(struct hx_lerp *t)
{
    for (int b = 0; b < t->nblk; b++) {
        int o = b * LB, m = t->out - o < LB ? t->out - o : LB, base = t->i0[o];
        int avail = t->in - base, *bk = t->blk + 4 * b, *rel = t->rel + 2 * LB * b;
        int wide = t->i1[o + m - 1] - base >= 2 * LB;
        bk[0] = wide ? -1 : base;
        bk[1] = avail >= LB ? 0xffff : (1 << avail) - 1;
        bk[2] = avail >= 2 * LB ? 0xffff : avail <= LB ? 0 : (1 << (avail - LB)) - 1;
        bk[3] = (1 << m) - 1;
        for (int l = 0; l < LB; l++) {
            rel[l] = l < m && !wide ? t->i0[o + l] - base : 0;
            rel[LB + l] = l < m && !wide ? t->i1[o + l] - base : 0;
        }
    }
}

int hx_lerp_init(struct hx_lerp *t, int in, int out, int align_corners)
{
    memset(t, 0, sizeof *t);
    if (in < 1 || out < 1)
        return hx_err(HX_EINVAL, "linear resize from %d to %d samples", in, out);
    t->nblk = (out + LB - 1) / LB;
    t->i0 = hx_malloc(sizeof(int) * (2 * (size_t)out + (4 + 2 * LB) * (size_t)t->nblk),
                      "resize taps");
    t->l0 = hx_malloc(sizeof(float) * 2 * (size_t)out, "resize weights");
    if (!t->i0 || !t->l0) {
        hx_lerp_free(t);
        return HX_ENOMEM;
    }
    t->in = in, t->out = out, t->i1 = t->i0 + out, t->l1 = t->l0 + out;
    t->blk = t->i1 + out, t->rel = t->blk + 4 * t->nblk;
    linear_taps(in, out, align_corners, t->i0, t->i1, t->l0, t->l1);
    lerp_blocks(t);
    return 0;
}

void hx_lerp_free(struct hx_lerp *t)
{
    free(t->i0), free(t->l0);
    memset(t, 0, sizeof *t);
}

static inline void lerp_span(const struct hx_lerp *t, const float *in, float *out, int o0, int o1)
{
    for (int o = o0; o < o1; o++)
        out[o] = in[t->i0[o]] * t->l0[o] + in[t->i1[o]] * t->l1[o];
}

void hx_lerp_row_ref(const struct hx_lerp *t, const float *in, float *out)
{
    lerp_span(t, in, out, 0, t->out);
}

HX_CLONES static void lerp_row_plain(const struct hx_lerp *t, const float *in, float *out)
{
    lerp_span(t, in, out, 0, t->out);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HX_LERP_AVX512 1

/* The products and the sum are the scalar loop's, lane by lane. Masked-off lanes are never
 * loaded (no read past the row) nor stored. */
__attribute__((target("avx512f"))) static void lerp_row_avx512(const struct hx_lerp *t,
                                                                 const float *in, float *out)
{
    for (int b = 0; b < t->nblk; b++) {
        const int *bk = t->blk + 4 * b, *rel = t->rel + 2 * LB * b;
        int o = b * LB;
        if (bk[0] < 0) {
            lerp_span(t, in, out, o, o + LB < t->out ? o + LB : t->out);
            continue;
        }
        __mmask16 k = (__mmask16)bk[3];
        __m512 lo = _mm512_maskz_loadu_ps((__mmask16)bk[1], in + bk[0]);
        __m512 hi = bk[2] ? _mm512_maskz_loadu_ps((__mmask16)bk[2], in + bk[0] + LB)
                          : _mm512_setzero_ps();
        __m512 v0 = _mm512_permutex2var_ps(lo, _mm512_loadu_si512(rel), hi);
        __m512 v1 = _mm512_permutex2var_ps(lo, _mm512_loadu_si512(rel + LB), hi);
        __m512 r = _mm512_add_ps(_mm512_mul_ps(v0, _mm512_maskz_loadu_ps(k, t->l0 + o)),
                                 _mm512_mul_ps(v1, _mm512_maskz_loadu_ps(k, t->l1 + o)));
        _mm512_mask_storeu_ps(out + o, k, r);
    }
}
#endif

void hx_lerp_row(const struct hx_lerp *t, const float *in, float *out)
{
#ifdef HX_LERP_AVX512
    if (__builtin_cpu_supports("avx512f")) {
        lerp_row_avx512(t, in, out);
        return;
    }
#endif
    lerp_row_plain(t, in, out);
}

/* Rows of the source interpolated along x, cached by row index: the rows one output row
 * needs are consecutive (after clamping), so slot = row % nslots never collides. Computing
 * a row once and combining rows afterwards performs the same float operations, in the same
 * order, as torch's per-pixel nested sum. */
struct row_cache {
    float *buf; /* [nslots][ow] */
    int have[4];
};

static const float *lin_row(struct row_cache *rc, const float *s, int w, const struct hx_lerp *x,
                            int row)
{
    float *t = rc->buf + (size_t)(row & 1) * x->out;
    if (rc->have[row & 1] != row) {
        hx_lerp_row(x, s + (size_t)row * w, t);
        rc->have[row & 1] = row;
    }
    return t;
}

/* Bilinear resize of src [c, h, w] to oh x ow, written (add = 0) or added (add = 1) into the
 * window at (y0, x0) of dst [c, dh, dw]. */
HX_CLONES static int bilinear_into(const float *src, int c, int h, int w, float *dst, int dh, int dw,
                         int y0w, int x0w, int oh, int ow, int align_corners, int add)
{
    int rc = check_sizes("bilinear resize", c, h, w, oh, ow);
    if (rc < 0)
        return rc;
    if (y0w < 0 || x0w < 0 || y0w + oh > dh || x0w + ow > dw)
        return hx_err(HX_EINVAL, "bilinear resize: a %dx%d window at (%d, %d) does not fit a "
                      "%dx%d map", ow, oh, x0w, y0w, dw, dh);
    struct hx_lerp x, y;
    struct row_cache cache = {NULL, {-1, -1, -1, -1}};
    hx_lerp_init(&x, w, ow, align_corners), hx_lerp_init(&y, h, oh, align_corners);
    cache.buf = hx_malloc(sizeof(float) * 2 * (size_t)ow, "bilinear resize rows");
    if (!x.i0 || !y.i0 || !cache.buf) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int ch = 0; ch < c; ch++) {
        const float *s = src + (size_t)ch * h * w;
        float *d = dst + (size_t)ch * dh * dw + (size_t)y0w * dw + x0w;
        cache.have[0] = cache.have[1] = -1;
        for (int r = 0; r < oh; r++) {
            /* torch's nested order: x-interpolate each row, then combine the two rows */
            const float *t0 = lin_row(&cache, s, w, &x, y.i0[r]);
            const float *t1 = lin_row(&cache, s, w, &x, y.i1[r]);
            float wy0 = y.l0[r], wy1 = y.l1[r];
            float *o = d + (size_t)r * dw;
            if (add)
                for (int i = 0; i < ow; i++)
                    o[i] += t0[i] * wy0 + t1[i] * wy1;
            else
                for (int i = 0; i < ow; i++)
                    o[i] = t0[i] * wy0 + t1[i] * wy1;
        }
    }
done:
    hx_lerp_free(&x), hx_lerp_free(&y);
    free(cache.buf);
    return rc;
}

int hx_resize_bilinear(const float *src, int c, int h, int w, float *dst, int oh, int ow,
                       int align_corners)
{
    return bilinear_into(src, c, h, w, dst, oh, ow, 0, 0, oh, ow, align_corners, 0);
}

int hx_resize_bilinear_add(const float *src, int c, int h, int w, float *dst, int dh, int dw,
                           int y0, int x0, int oh, int ow)
{
    return bilinear_into(src, c, h, w, dst, dh, dw, y0, x0, oh, ow, 0, 1);
}

/* get_cubic_upsample_coefficients with A = -0.75 in float; x + 1 and 1 - t are double
 * expressions narrowed to float, as in torch. torch's CPU kernels are built for AVX2 with
 * FMA contraction; evaluating the polynomials with fused multiply-adds (fmaf, exact in any
 * build) brings the weights to within an ulp or two of its, against several ulps with
 * separate multiplies and adds. */
static void torch_cubic_coeffs(float t, float k[4])
{
    const float A = -0.75f;
    float x1 = t, x2 = (float)(1.0 - t);
    float u = (float)(x1 + 1.0), v = (float)(x2 + 1.0);
    k[0] = fmaf(fmaf(fmaf(A, u, -5 * A), u, 8 * A), u, -4 * A);
    k[1] = fmaf(fmaf(A + 2, x1, -(A + 3)) * x1, x1, 1.0f);
    k[2] = fmaf(fmaf(A + 2, x2, -(A + 3)) * x2, x2, 1.0f);
    k[3] = fmaf(fmaf(fmaf(A, v, -5 * A), v, 8 * A), v, -4 * A);
}

static void torch_cubic_taps(int in, int out, int align_corners, int *idx, float *wt)
{
    float scale = torch_scale(in, out, align_corners);
    for (int o = 0; o < out; o++) {
        double r = torch_src_index(scale, o, align_corners, 1);
        int i = (int)floor(r);
        torch_cubic_coeffs((float)(r - i), wt + 4 * o);
        for (int j = 0; j < 4; j++) {
            int t = i - 1 + j;
            idx[4 * o + j] = t < 0 ? 0 : (t > in - 1 ? in - 1 : t);
        }
    }
}

static const float *cub_row(struct row_cache *rc, const float *s, int w, int ow, int row,
                            const int *xi, const float *xw)
{
    float *t = rc->buf + (size_t)(row & 3) * ow;
    if (rc->have[row & 3] != row) {
        const float *r = s + (size_t)row * w;
        for (int x = 0; x < ow; x++) {
            const int *rx = xi + 4 * x;
            const float *wx = xw + 4 * x;
            float v = r[rx[0]] * wx[0];
            v += r[rx[1]] * wx[1];
            v += r[rx[2]] * wx[2];
            v += r[rx[3]] * wx[3];
            t[x] = v;
        }
        rc->have[row & 3] = row;
    }
    return t;
}

int hx_resize_bicubic(const float *src, int c, int h, int w, float *dst, int oh, int ow,
                      int align_corners)
{
    int rc = check_sizes("bicubic resize", c, h, w, oh, ow);
    if (rc < 0)
        return rc;
    int *ix = hx_malloc(sizeof(int) * 4 * ((size_t)ow + oh), "bicubic resize indices");
    float *wt = hx_malloc(sizeof(float) * 4 * ((size_t)ow + oh), "bicubic resize weights");
    struct row_cache cache = {hx_malloc(sizeof(float) * 4 * (size_t)ow, "bicubic resize rows"),
                              {-1, -1, -1, -1}};
    if (!ix || !wt || !cache.buf) {
        rc = HX_ENOMEM;
        goto done;
    }
    int *xi = ix, *yi = ix + 4 * (size_t)ow;
    float *xw = wt, *yw = wt + 4 * (size_t)ow;
    torch_cubic_taps(w, ow, align_corners, xi, xw);
    torch_cubic_taps(h, oh, align_corners, yi, yw);
    for (int ch = 0; ch < c; ch++) {
        const float *s = src + (size_t)ch * h * w;
        float *d = dst + (size_t)ch * oh * ow;
        for (int k = 0; k < 4; k++)
            cache.have[k] = -1;
        for (int y = 0; y < oh; y++) {
            const int *ry = yi + 4 * y;
            const float *wy = yw + 4 * y;
            const float *t[4];
            for (int j = 0; j < 4; j++)
                t[j] = cub_row(&cache, s, w, ow, ry[j], xi, xw);
            float *o = d + (size_t)y * ow;
            for (int x = 0; x < ow; x++) {
                float acc = t[0][x] * wy[0];
                acc += t[1][x] * wy[1];
                acc += t[2][x] * wy[2];
                acc += t[3][x] * wy[3];
                o[x] = acc;
            }
        }
    }
done:
    free(ix);
    free(wt);
    free(cache.buf);
    return rc;
}

static void torch_nearest_taps(int in, int out, int *idx)
{
    float scale = (float)in / (float)out;
    for (int o = 0; o < out; o++) {
        long s = (long)floorf((float)o * scale);
        idx[o] = s < in - 1 ? (int)s : in - 1;
    }
}

int hx_resize_nearest(const float *src, int c, int h, int w, float *dst, int oh, int ow)
{
    int rc = check_sizes("nearest resize", c, h, w, oh, ow);
    if (rc < 0)
        return rc;
    int *ix = hx_malloc(sizeof(int) * ((size_t)ow + oh), "nearest resize indices");
    if (!ix)
        return HX_ENOMEM;
    int *xi = ix, *yi = ix + ow;
    torch_nearest_taps(w, ow, xi);
    torch_nearest_taps(h, oh, yi);
    for (int ch = 0; ch < c; ch++) {
        const float *s = src + (size_t)ch * h * w;
        float *d = dst + (size_t)ch * oh * ow;
        for (int y = 0; y < oh; y++) {
            const float *r = s + (size_t)yi[y] * w;
            float *o = d + (size_t)y * ow;
            for (int x = 0; x < ow; x++)
                o[x] = r[xi[x]];
        }
    }
    free(ix);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Pillow 9.4 Image.resize (libImaging/Resample.c), 8 bits per channel                       */

#define PIL_PRECISION_BITS (32 - 8 - 2)

static double pil_bilinear(double x)
{
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return 1.0 - x;
    return 0.0;
}

static double pil_bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

struct pil_coeffs {
    int ksize;
    int *bounds;  /* [out][2]: first input index, number of taps */
    int32_t *k;   /* [out][ksize] fixed-point weights */
};

/* precompute_coeffs + normalize_coeffs_8bpc for the box [0, in) -> out. */
static int pil_coeffs(int in, int out, enum hx_pil_filter filter, struct pil_coeffs *c)
{
    double (*fn)(double) = filter == HX_PIL_BICUBIC ? pil_bicubic : pil_bilinear;
    double fsupport = filter == HX_PIL_BICUBIC ? 2.0 : 1.0;
    double scale, filterscale, support;
    double *tmp = NULL;
    int rc = 0;

    c->bounds = NULL;
    c->k = NULL;
    filterscale = scale = (double)((float)in - 0.0f) / out;
    if (filterscale < 1.0)
        filterscale = 1.0;
    support = fsupport * filterscale;
    c->ksize = (int)ceil(support) * 2 + 1;
    if ((size_t)out > SIZE_MAX / sizeof(int32_t) / (size_t)c->ksize)
        return hx_err(HX_ENOMEM, "PIL resize %d -> %d: coefficient table too large", in, out);
    c->k = hx_malloc(sizeof(int32_t) * (size_t)out * c->ksize, "PIL resize coefficients");
    c->bounds = hx_malloc(sizeof(int) * 2 * (size_t)out, "PIL resize bounds");
    tmp = hx_malloc(sizeof(double) * c->ksize, "PIL resize coefficients");
    if (!c->k || !c->bounds || !tmp) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int xx = 0; xx < out; xx++) {
        double center = 0.0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in)
            xmax = in;
        xmax -= xmin;
        int x;
        for (x = 0; x < xmax; x++) {
            double wgt = fn((x + xmin - center + 0.5) * ss);
            tmp[x] = wgt;
            ww += wgt;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0)
                tmp[x] /= ww;
        for (; x < c->ksize; x++)
            tmp[x] = 0;
        int32_t *k = c->k + (size_t)xx * c->ksize;
        for (x = 0; x < c->ksize; x++)
            k[x] = tmp[x] < 0 ? (int)(-0.5 + tmp[x] * (1 << PIL_PRECISION_BITS))
                              : (int)(0.5 + tmp[x] * (1 << PIL_PRECISION_BITS));
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
done:
    free(tmp);
    if (rc < 0) {
        free(c->k);
        free(c->bounds);
        c->k = NULL;
        c->bounds = NULL;
    }
    return rc;
}

static inline uint8_t pil_clip8(int32_t v)
{
    if (v >= (int32_t)(1U << PIL_PRECISION_BITS << 8))
        return 255;
    if (v <= 0)
        return 0;
    return (uint8_t)(v >> PIL_PRECISION_BITS);
}

/* ImagingResampleHorizontal_8bpc for one row. */
static inline __attribute__((always_inline)) void
pil_hrow(const uint8_t *row, uint8_t *o, int ow, const struct pil_coeffs *cx, const int C)
{
    for (int xx = 0; xx < ow; xx++) {
        int xmin = cx->bounds[2 * xx], xn = cx->bounds[2 * xx + 1];
        const int32_t *k = cx->k + (size_t)xx * cx->ksize;
        const uint8_t *p = row + (size_t)xmin * C;
        int32_t s[4];
        for (int ch = 0; ch < C; ch++)
            s[ch] = 1 << (PIL_PRECISION_BITS - 1);
        for (int x = 0; x < xn; x++, p += C)
            for (int ch = 0; ch < C; ch++)
                s[ch] += p[ch] * k[x];
        for (int ch = 0; ch < C; ch++)
            o[(size_t)xx * C + ch] = pil_clip8(s[ch]);
    }
}

int hx_pil_resize(const uint8_t *src, int w, int h, int channels, uint8_t *dst, int ow, int oh,
                  enum hx_pil_filter filter)
{
    struct pil_coeffs cx = {0}, cy = {0};
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    int rc = 0;

    if (w < 1 || h < 1 || ow < 1 || oh < 1 || channels < 1 || channels > 4)
        return hx_err(HX_EINVAL, "PIL resize: bad sizes %dx%dx%d -> %dx%d", w, h, channels, ow,
                      oh);
    if (filter != HX_PIL_BILINEAR && filter != HX_PIL_BICUBIC)
        return hx_err(HX_EINVAL, "PIL resize: unknown filter %d", (int)filter);
    int need_h = ow != w, need_v = oh != h;
    if (!need_h && !need_v) {
        memcpy(dst, src, (size_t)w * h * channels);
        return 0;
    }
    if ((rc = pil_coeffs(w, ow, filter, &cx)) < 0 || (rc = pil_coeffs(h, oh, filter, &cy)) < 0)
        goto done;

    /* rows of the input that the vertical pass reads */
    int yfirst = cy.bounds[0];
    int ylast = cy.bounds[2 * oh - 2] + cy.bounds[2 * oh - 1];
    const uint8_t *vin = src; /* input of the vertical pass, row 0 = input row `vbase` */
    int vbase = 0, vw = w;
    const int C = channels;

    if (need_h) {
        uint8_t *hout = need_v ? NULL : dst;
        if (need_v) {
            tmp = hx_malloc((size_t)ow * (ylast - yfirst) * C, "PIL resize intermediate");
            if (!tmp) {
                rc = HX_ENOMEM;
                goto done;
            }
            hout = tmp;
        } else {
            yfirst = 0;
            ylast = h;
        }
        for (int y = yfirst; y < ylast; y++) {
            const uint8_t *row = src + (size_t)y * w * C;
            uint8_t *o = hout + (size_t)(y - yfirst) * ow * C;
            switch (C) { /* constant channel counts let the compiler unroll the inner loop */
            case 1: pil_hrow(row, o, ow, &cx, 1); break;
            case 2: pil_hrow(row, o, ow, &cx, 2); break;
            case 3: pil_hrow(row, o, ow, &cx, 3); break;
            default: pil_hrow(row, o, ow, &cx, 4); break;
            }
        }
        vin = tmp;
        vbase = yfirst;
        vw = ow;
    }
    if (need_v) {
        size_t n = (size_t)vw * C;
        acc = hx_malloc(sizeof(int32_t) * n, "PIL resize accumulator");
        if (!acc) {
            rc = HX_ENOMEM;
            goto done;
        }
        for (int yy = 0; yy < oh; yy++) {
            int ymin = cy.bounds[2 * yy] - vbase, yn = cy.bounds[2 * yy + 1];
            const int32_t *k = cy.k + (size_t)yy * cy.ksize;
            for (size_t i = 0; i < n; i++)
                acc[i] = 1 << (PIL_PRECISION_BITS - 1);
            /* integer sums: the row-by-row order gives Pillow's result exactly */
            for (int y = 0; y < yn; y++) {
                const uint8_t *r = vin + (size_t)(ymin + y) * n;
                int32_t kk = k[y];
                for (size_t i = 0; i < n; i++)
                    acc[i] += r[i] * kk;
            }
            uint8_t *o = dst + (size_t)yy * n;
            for (size_t i = 0; i < n; i++)
                o[i] = pil_clip8(acc[i]);
        }
    }
done:
    free(cx.k);
    free(cx.bounds);
    free(cy.k);
    free(cy.bounds);
    free(tmp);
    free(acc);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* OpenCV 4 cv::resize, 8-bit (imgproc/src/resize.cpp)                                      */

#define CV_COEF_BITS 11
#define CV_COEF_SCALE (1 << CV_COEF_BITS)

static inline short cv_round_short(float v)
{
    long r = lrintf(v); /* cvRound: round half to even */
    return (short)(r < SHRT_MIN ? SHRT_MIN : (r > SHRT_MAX ? SHRT_MAX : r));
}

/* HResizeLinear for one row: 11-bit weights, the columns from xmax on copy one pixel. */
static void cv_hresize_row(const uint8_t *s, int *d, int ow, int C, const int *xofs,
                           const short *alpha, int xmax)
{
    for (int dx = 0; dx < ow; dx++) {
        const uint8_t *p = s + (size_t)xofs[dx] * C;
        int *o = d + (size_t)dx * C;
        if (dx < xmax) {
            int a0 = alpha[2 * dx], a1 = alpha[2 * dx + 1];
            for (int ch = 0; ch < C; ch++)
                o[ch] = p[ch] * a0 + p[ch + C] * a1;
        } else {
            for (int ch = 0; ch < C; ch++)
                o[ch] = p[ch] * CV_COEF_SCALE;
        }
    }
}

int hx_cv_resize_linear(const uint8_t *src, int w, int h, int channels, uint8_t *dst, int ow,
                        int oh)
{
    int rc = 0;
    int *xofs = NULL, *rows_buf = NULL;
    short *alpha = NULL, *beta = NULL;
    int *yofs = NULL;

    if (w < 1 || h < 1 || ow < 1 || oh < 1 || channels < 1 || channels > 4)
        return hx_err(HX_EINVAL, "OpenCV resize: bad sizes %dx%dx%d -> %dx%d", w, h, channels,
                      ow, oh);
    const int C = channels;
    if (ow == w && oh == h) {
        memcpy(dst, src, (size_t)w * h * C);
        return 0;
    }
    /* cv::resize derives the scales from the sizes, then inverts them */
    double scale_x = 1.0 / ((double)ow / w), scale_y = 1.0 / ((double)oh / h);
    xofs = hx_malloc(sizeof(int) * (size_t)ow, "OpenCV resize offsets");
    alpha = hx_malloc(sizeof(short) * 2 * (size_t)ow, "OpenCV resize weights");
    yofs = hx_malloc(sizeof(int) * (size_t)oh, "OpenCV resize offsets");
    beta = hx_malloc(sizeof(short) * 2 * (size_t)oh, "OpenCV resize weights");
    rows_buf = hx_malloc(sizeof(int) * 2 * (size_t)ow * C, "OpenCV resize row buffer");
    if (!xofs || !alpha || !yofs || !beta || !rows_buf) {
        rc = HX_ENOMEM;
        goto done;
    }
    /* columns from xmax on read one pixel only (their right neighbour is past the edge) */
    int xmax = ow;
    for (int dx = 0; dx < ow; dx++) {
        float fx = (float)((dx + 0.5) * scale_x - 0.5);
        int sx = (int)floorf(fx);
        fx -= (float)sx;
        if (sx < 0) {
            fx = 0;
            sx = 0;
        }
        if (sx + 1 >= w) {
            if (dx < xmax)
                xmax = dx;
            if (sx >= w - 1) {
                fx = 0;
                sx = w - 1;
            }
        }
        xofs[dx] = sx;
        alpha[2 * dx] = cv_round_short((1.f - fx) * CV_COEF_SCALE);
        alpha[2 * dx + 1] = cv_round_short(fx * CV_COEF_SCALE);
    }
    for (int dy = 0; dy < oh; dy++) {
        float fy = (float)((dy + 0.5) * scale_y - 0.5);
        int sy = (int)floorf(fy);
        fy -= (float)sy;
        yofs[dy] = sy; /* not clamped: the rows are, the weights are kept */
        beta[2 * dy] = cv_round_short((1.f - fy) * CV_COEF_SCALE);
        beta[2 * dy + 1] = cv_round_short(fy * CV_COEF_SCALE);
    }

    /* two horizontally resized rows, cached by source row index */
    size_t n = (size_t)ow * C;
    int *rows[2] = {rows_buf, rows_buf + n};
    int have[2] = {-1, -1};
    for (int dy = 0; dy < oh; dy++) {
        int need[2];
        for (int k = 0; k < 2; k++) {
            int sy = yofs[dy] + k;
            need[k] = sy < 0 ? 0 : (sy >= h ? h - 1 : sy);
        }
        int s0 = have[0] == need[0] ? 0 : (have[1] == need[0] ? 1 : -1);
        int s1 = have[0] == need[1] ? 0 : (have[1] == need[1] ? 1 : -1);
        if (s0 < 0) {
            s0 = s1 == 0 ? 1 : 0;
            cv_hresize_row(src + (size_t)need[0] * w * C, rows[s0], ow, C, xofs, alpha, xmax);
            have[s0] = need[0];
        }
        if (s1 < 0) {
            if (need[1] == need[0]) {
                s1 = s0;
            } else {
                s1 = 1 - s0;
                cv_hresize_row(src + (size_t)need[1] * w * C, rows[s1], ow, C, xofs, alpha,
                               xmax);
                have[s1] = need[1];
            }
        }
        const int *r[2] = {rows[s0], rows[s1]};
        int b0 = beta[2 * dy], b1 = beta[2 * dy + 1];
        uint8_t *o = dst + (size_t)dy * n;
        for (size_t i = 0; i < n; i++) {
            int v = (((b0 * (r[0][i] >> 4)) >> 16) + ((b1 * (r[1][i] >> 4)) >> 16) + 2) >> 2;
            o[i] = (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
        }
    }
done:
    free(xofs);
    free(alpha);
    free(yofs);
    free(beta);
    free(rows_buf);
    return rc;
}

int hx_cv_resize_nearest(const uint8_t *src, int w, int h, int channels, uint8_t *dst, int ow,
                         int oh)
{
    if (w < 1 || h < 1 || ow < 1 || oh < 1 || channels < 1 || channels > 4)
        return hx_err(HX_EINVAL, "OpenCV nearest resize: bad sizes %dx%dx%d -> %dx%d", w, h,
                      channels, ow, oh);
    int *xofs = hx_malloc(sizeof(int) * (size_t)ow, "OpenCV nearest offsets");
    if (!xofs)
        return HX_ENOMEM;
    double ifx = 1.0 / ((double)ow / w), ify = 1.0 / ((double)oh / h);
    for (int x = 0; x < ow; x++) {
        int sx = (int)floor(x * ifx);
        xofs[x] = (sx < w - 1 ? sx : w - 1) * channels;
    }
    const int C = channels;
    for (int y = 0; y < oh; y++) {
        int sy = (int)floor(y * ify);
        if (sy > h - 1)
            sy = h - 1;
        const uint8_t *s = src + (size_t)sy * w * C;
        uint8_t *o = dst + (size_t)y * ow * C;
        for (int x = 0; x < ow; x++)
            for (int ch = 0; ch < C; ch++)
                o[(size_t)x * C + ch] = s[xofs[x] + ch];
    }
    free(xofs);
    return 0;
}
