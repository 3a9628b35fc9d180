/* Image decoding, PNG writing and resizes against reference outputs of PyTorch, Pillow and
 * OpenCV (tests/data/image, written by scripts/image_reference.py; cases.txt lists them). */
#include "harness/error.h"
#include "harness/image.h"
#include "tests/test_util.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* ---- reference files ---- */

struct arr {
    int dtype; /* 1 uint8, 2 float32 */
    int ndim;
    size_t dims[4], n;
    void *data;
};

static void arr_load(struct arr *a, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s", hx_testdata("image/"));
    strncat(path, name, sizeof path - strlen(path) - 1);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s (run scripts/image_reference.py)", path);
    char magic[8];
    uint32_t hdr[2], d;
    ck_assert(fread(magic, 1, 8, f) == 8 && !memcmp(magic, "HXARR1\0\0", 8));
    ck_assert(fread(hdr, 4, 2, f) == 2);
    a->dtype = (int)hdr[0];
    a->ndim = (int)hdr[1];
    ck_assert(a->ndim >= 1 && a->ndim <= 4 && (a->dtype == 1 || a->dtype == 2));
    a->n = 1;
    for (int i = 0; i < a->ndim; i++) {
        ck_assert(fread(&d, 4, 1, f) == 1);
        a->dims[i] = d;
        a->n *= d;
    }
    size_t es = a->dtype == 1 ? 1 : 4;
    a->data = malloc(a->n * es + 1);
    ck_assert(a->data != NULL);
    ck_assert_msg(fread(a->data, es, a->n, f) == a->n, "%s is truncated", path);
    fclose(f);
}

/* The lines of cases.txt whose first word is `kind`, one at a time. */
struct cases {
    FILE *f;
    char line[1024];
};

static void cases_open(struct cases *c)
{
    char path[512];
    snprintf(path, sizeof path, "%s", hx_testdata("image/cases.txt"));
    c->f = fopen(path, "r");
    ck_assert_msg(c->f != NULL, "cannot open %s (run scripts/image_reference.py)", path);
}

static int cases_next(struct cases *c, const char *kind)
{
    size_t k = strlen(kind);
    while (fgets(c->line, sizeof c->line, c->f))
        if (!strncmp(c->line, kind, k) && c->line[k] == ' ')
            return 1;
    fclose(c->f);
    return 0;
}

/* Exact comparison of bytes; prints the first mismatches. Returns the count. */
static size_t count_byte_diffs(const char *what, const uint8_t *got, const uint8_t *exp,
                               size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (got[i] != exp[i] && bad++ < 4)
            fprintf(stderr, "  %s: [%zu] got %d, expected %d\n", what, i, got[i], exp[i]);
    return bad;
}

/* ---- PyTorch F.interpolate ---- */

START_TEST(torch_interpolate_matches_reference)
{
    struct cases cs;
    int ncase = 0, nbad = 0;
    cases_open(&cs);
    while (cases_next(&cs, "torch")) {
        char mode[32], in[128], ex[128];
        int ac, c, h, w, oh, ow;
        ck_assert(sscanf(cs.line, "torch %31s %d %d %d %d %d %d %127s %127s", mode, &ac, &c, &h,
                         &w, &oh, &ow, in, ex) == 9);
        struct arr a, e;
        arr_load(&a, in);
        arr_load(&e, ex);
        ck_assert(a.n == (size_t)c * h * w && e.n == (size_t)c * oh * ow);
        float *out = malloc(sizeof(float) * e.n);
        int rc;
        if (!strcmp(mode, "bilinear"))
            rc = hx_resize_bilinear(a.data, c, h, w, out, oh, ow, ac);
        else if (!strcmp(mode, "bicubic"))
            rc = hx_resize_bicubic(a.data, c, h, w, out, oh, ow, ac);
        else
            rc = hx_resize_nearest(a.data, c, h, w, out, oh, ow);
        ck_assert_int_eq(rc, 0);
        const float *ref = e.data;
        double maxrel = 0;
        size_t bad = 0;
        for (size_t i = 0; i < e.n; i++) {
            double d = fabs((double)out[i] - ref[i]);
            /* rtol 1e-5; the inputs are N(0, 1), so 1e-5 is also the absolute scale */
            if (!(d <= 1e-5 * fabs(ref[i]) + 1e-5)) {
                if (bad++ < 3)
                    fprintf(stderr, "  %s ac=%d %dx%d->%dx%d [%zu]: got %.9g expected %.9g\n",
                            mode, ac, h, w, oh, ow, i, out[i], ref[i]);
            }
            if (d / (fabs(ref[i]) + 1e-6) > maxrel)
                maxrel = d / (fabs(ref[i]) + 1e-6);
        }
        if (bad) {
            fprintf(stderr, "torch %s ac=%d %dx%d->%dx%d: %zu of %zu differ (max rel %.3g)\n",
                    mode, ac, h, w, oh, ow, bad, e.n, maxrel);
            nbad++;
        }
        ncase++;
        free(out);
        free(a.data);
        free(e.data);
    }
    ck_assert_msg(ncase >= 40, "only %d torch cases in cases.txt", ncase);
    ck_assert_msg(nbad == 0, "%d of %d torch interpolate cases differ", nbad, ncase);
}
END_TEST

/* ---- Pillow and OpenCV on random images ---- */

static void run_u8_cases(const char *kind, int min_cases)
{
    struct cases cs;
    int ncase = 0, nbad = 0;
    cases_open(&cs);
    while (cases_next(&cs, kind)) {
        char mode[32], in[128], ex[128], fmt[96];
        int c, w, h, ow, oh;
        snprintf(fmt, sizeof fmt, "%s %%31s %%d %%d %%d %%d %%d %%127s %%127s", kind);
        ck_assert(sscanf(cs.line, fmt, mode, &c, &w, &h, &ow, &oh, in, ex) == 8);
        struct arr a, e;
        arr_load(&a, in);
        arr_load(&e, ex);
        ck_assert(a.n == (size_t)c * h * w && e.n == (size_t)c * oh * ow);
        uint8_t *out = malloc(e.n);
        memset(out, 0xA5, e.n);
        int rc;
        if (!strcmp(kind, "pil"))
            rc = hx_pil_resize(a.data, w, h, c, out, ow, oh,
                               !strcmp(mode, "bicubic") ? HX_PIL_BICUBIC : HX_PIL_BILINEAR);
        else if (!strcmp(mode, "linear"))
            rc = hx_cv_resize_linear(a.data, w, h, c, out, ow, oh);
        else
            rc = hx_cv_resize_nearest(a.data, w, h, c, out, ow, oh);
        ck_assert_int_eq(rc, 0);
        char what[128];
        snprintf(what, sizeof what, "%s %s c=%d %dx%d->%dx%d", kind, mode, c, w, h, ow, oh);
        size_t bad = count_byte_diffs(what, out, e.data, e.n);
        if (bad) {
            fprintf(stderr, "%s: %zu of %zu bytes differ\n", what, bad, e.n);
            nbad++;
        }
        ncase++;
        free(out);
        free(a.data);
        free(e.data);
    }
    ck_assert_msg(ncase >= min_cases, "only %d %s cases in cases.txt", ncase, kind);
    ck_assert_msg(nbad == 0, "%d of %d %s cases differ", nbad, ncase, kind);
}

START_TEST(pil_resize_is_bit_exact)
{
    run_u8_cases("pil", 60);
}
END_TEST

START_TEST(cv_resize_is_bit_exact)
{
    run_u8_cases("cv", 60);
}
END_TEST

/* Nearest source indices at realistic sizes: the image codes each pixel's coordinates. */
START_TEST(nearest_indices_match_reference)
{
    struct cases cs;
    int ncase = 0;
    cases_open(&cs);
    while (cases_next(&cs, "nnidx")) {
        char lib[16], fx[128], fy[128];
        int w, h, ow, oh;
        ck_assert(sscanf(cs.line, "nnidx %15s %d %d %d %d %127s %127s", lib, &w, &h, &ow, &oh,
                         fx, fy) == 7);
        struct arr ax, ay;
        arr_load(&ax, fx);
        arr_load(&ay, fy);
        ck_assert(ax.n == (size_t)ow && ay.n == (size_t)oh);
        const float *ex = ax.data, *ey = ay.data;
        size_t bad = 0;
        if (!strcmp(lib, "cv")) {
            uint8_t *src = malloc((size_t)w * h * 3), *out = malloc((size_t)ow * oh * 3);
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    uint8_t *p = src + ((size_t)y * w + x) * 3;
                    p[0] = x & 255;
                    p[1] = y & 255;
                    p[2] = (uint8_t)((x >> 8) | ((y >> 8) << 4));
                }
            ck_assert_int_eq(hx_cv_resize_nearest(src, w, h, 3, out, ow, oh), 0);
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++) {
                    const uint8_t *p = out + ((size_t)y * ow + x) * 3;
                    int sx = p[0] | ((p[2] & 15) << 8), sy = p[1] | ((p[2] >> 4) << 8);
                    if ((sx != (int)ex[x] || sy != (int)ey[y]) && bad++ < 3)
                        fprintf(stderr, "  cv nearest %dx%d->%dx%d at (%d,%d): src (%d,%d), "
                                "expected (%d,%d)\n", w, h, ow, oh, x, y, sx, sy, (int)ex[x],
                                (int)ey[y]);
                }
            free(src);
            free(out);
        } else {
            float *src = malloc(sizeof(float) * w * h), *out = malloc(sizeof(float) * ow * oh);
            for (int i = 0; i < w * h; i++)
                src[i] = (float)i;
            ck_assert_int_eq(hx_resize_nearest(src, 1, h, w, out, oh, ow), 0);
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++) {
                    int v = (int)out[(size_t)y * ow + x];
                    if ((v % w != (int)ex[x] || v / w != (int)ey[y]) && bad++ < 3)
                        fprintf(stderr, "  torch nearest %dx%d->%dx%d at (%d,%d): src (%d,%d)\n",
                                w, h, ow, oh, x, y, v % w, v / w);
                }
            free(src);
            free(out);
        }
        ck_assert_msg(bad == 0, "%s nearest %dx%d->%dx%d: %zu pixels from the wrong source",
                      lib, w, h, ow, oh, bad);
        ncase++;
        free(ax.data);
        free(ay.data);
    }
    ck_assert_msg(ncase >= 8, "only %d nnidx cases", ncase);
}
END_TEST

/* ---- the real fixture: decode with the loader, resize, compare with Pillow ---- */

START_TEST(pil_resize_of_real_image_is_bit_exact)
{
    struct cases cs;
    int ncase = 0;
    cases_open(&cs);
    while (cases_next(&cs, "fixture")) {
        char rel[256], filt[32], png[128];
        unsigned crc;
        int ow, oh;
        ck_assert(sscanf(cs.line, "fixture %255s %x %31s %d %d %127s", rel, &crc, filt, &ow, &oh,
                         png) == 6);
        const char *fp = hx_fixture(rel);
        if (!fp) {
            fclose(cs.f);
            HX_SKIP("fixture voc/2007_000033.jpg absent");
        }
        struct hx_image im, ref;
        ck_assert_msg(hx_image_load(&im, fp) == 0, "%s", hx_errmsg());
        unsigned got_crc = (unsigned)crc32(0L, im.px, (unsigned)(im.w * im.h * 3));
        ck_assert_msg(got_crc == crc, "decoded pixels of %s differ from the generator's (crc %08x,"
                      " expected %08x)", rel, got_crc, crc);
        char rp[512];
        snprintf(rp, sizeof rp, "%s", hx_testdata("image/"));
        strncat(rp, png, sizeof rp - strlen(rp) - 1);
        ck_assert_msg(hx_image_load(&ref, rp) == 0, "%s", hx_errmsg());
        ck_assert(ref.w == ow && ref.h == oh);
        uint8_t *out = malloc((size_t)ow * oh * 3);
        ck_assert_int_eq(hx_pil_resize(im.px, im.w, im.h, 3, out, ow, oh,
                                       !strcmp(filt, "bicubic") ? HX_PIL_BICUBIC
                                                                : HX_PIL_BILINEAR), 0);
        size_t bad = count_byte_diffs(png, out, ref.px, (size_t)ow * oh * 3);
        ck_assert_msg(bad == 0, "%s: %zu bytes differ from Pillow", png, bad);
        free(out);
        hx_image_free(&im);
        hx_image_free(&ref);
        ncase++;
    }
    ck_assert_int_ge(ncase, 2);
}
END_TEST

/* The generator's synth_image(): triangle waves with a curved term. */
static uint8_t *synth_image(int w, int h)
{
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                int v = abs((x * (c + 1) + 2 * y + (x * y) / 300) % 512 - 256);
                px[((size_t)y * w + x) * 3 + c] = (uint8_t)(v > 255 ? 255 : v);
            }
    return px;
}

START_TEST(pil_resize_500x375_to_288_is_bit_exact)
{
    struct cases cs;
    int ncase = 0;
    cases_open(&cs);
    while (cases_next(&cs, "synth")) {
        char filt[32], png[128], rp[512];
        int w, h, ow, oh;
        ck_assert(sscanf(cs.line, "synth %d %d %31s %d %d %127s", &w, &h, filt, &ow, &oh, png) ==
                  6);
        uint8_t *src = synth_image(w, h), *out = malloc((size_t)ow * oh * 3);
        snprintf(rp, sizeof rp, "%s", hx_testdata("image/"));
        strncat(rp, png, sizeof rp - strlen(rp) - 1);
        struct hx_image ref;
        ck_assert_msg(hx_image_load(&ref, rp) == 0, "%s", hx_errmsg());
        ck_assert(ref.w == ow && ref.h == oh);
        ck_assert_int_eq(hx_pil_resize(src, w, h, 3, out, ow, oh,
                                       !strcmp(filt, "bicubic") ? HX_PIL_BICUBIC
                                                                : HX_PIL_BILINEAR), 0);
        size_t bad = count_byte_diffs(png, out, ref.px, (size_t)ow * oh * 3);
        ck_assert_msg(bad == 0, "%s: %zu bytes differ from Pillow", png, bad);
        hx_image_free(&ref);
        free(src);
        free(out);
        ncase++;
    }
    ck_assert_int_ge(ncase, 2);
}
END_TEST

/* ---- decoding ---- */

START_TEST(load_matches_pil_convert_rgb)
{
    struct cases cs;
    int ncase = 0;
    cases_open(&cs);
    while (cases_next(&cs, "load")) {
        char file[128], ex[128];
        int maxd;
        double meand;
        ck_assert(sscanf(cs.line, "load %127s %127s %d %lf", file, ex, &maxd, &meand) == 4);
        char p[512];
        snprintf(p, sizeof p, "%s", hx_testdata("image/"));
        strncat(p, file, sizeof p - strlen(p) - 1);
        struct hx_image im;
        struct arr e;
        ck_assert_msg(hx_image_load(&im, p) == 0, "%s", hx_errmsg());
        arr_load(&e, ex);
        ck_assert(e.ndim == 3 && e.dims[2] == 3);
        ck_assert_int_eq(im.h, (int)e.dims[0]);
        ck_assert_int_eq(im.w, (int)e.dims[1]);
        const uint8_t *r = e.data;
        int worst = 0;
        double sum = 0;
        for (size_t i = 0; i < e.n; i++) {
            int d = abs((int)im.px[i] - (int)r[i]);
            worst = d > worst ? d : worst;
            sum += d;
        }
        /* PNG: exact. JPEG: stb's decoder against libjpeg, within what was measured for this
         * file and never more than a few levels. */
        ck_assert_msg(worst <= maxd && worst <= 4, "%s: max |diff| %d vs PIL (allowed %d)", file,
                      worst, maxd);
        ck_assert_msg(sum / e.n <= meand + 1e-4 && sum / e.n <= 0.5,
                      "%s: mean |diff| %.4f vs PIL (allowed %.4f)", file, sum / e.n, meand);
        hx_image_free(&im);
        free(e.data);
        ncase++;
    }
    ck_assert_int_ge(ncase, 9);
}
END_TEST

static const char *write_file(const char *dir, const char *name, const void *data, size_t n)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    ck_assert(f != NULL);
    ck_assert(fwrite(data, 1, n, f) == n);
    fclose(f);
    return p;
}

static void *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    void *buf = malloc((size_t)len + 1);
    ck_assert(fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static void expect_load_error(const char *path, int code, const char *needle)
{
    struct hx_image im = {1, 1, (uint8_t *)1};
    hx_err_clear();
    int rc = hx_image_load(&im, path);
    ck_assert_msg(rc == code, "%s: rc %d, expected %d (%s)", path, rc, code, hx_errmsg());
    ck_assert_msg(strstr(hx_errmsg(), path) != NULL, "message does not name the file: %s",
                  hx_errmsg());
    if (needle)
        ck_assert_msg(strstr(hx_errmsg(), needle) != NULL, "message lacks '%s': %s", needle,
                      hx_errmsg());
    ck_assert(im.px == NULL && im.w == 0 && im.h == 0);
}

START_TEST(load_errors_name_the_file)
{
    const char *dir = hx_tmpdir();
    char missing[512];
    snprintf(missing, sizeof missing, "%s/nope.png", dir);
    expect_load_error(missing, HX_EIO, "No such file");

    size_t n;
    char src[512];
    snprintf(src, sizeof src, "%s", hx_testdata("image/l_rgb.png"));
    uint8_t *png = read_all(src, &n);
    snprintf(src, sizeof src, "%s", hx_testdata("image/l_rgb.jpg"));
    size_t nj;
    uint8_t *jpg = read_all(src, &nj);

    char p[512];
    /* truncated PNG: header and part of the data */
    snprintf(p, sizeof p, "%s", write_file(dir, "trunc.png", png, n / 2));
    expect_load_error(p, HX_EFORMAT, NULL);
    /* PNG signature only */
    snprintf(p, sizeof p, "%s", write_file(dir, "sig.png", png, 8));
    expect_load_error(p, HX_EFORMAT, NULL);
    /* truncated JPEG: only the headers */
    snprintf(p, sizeof p, "%s", write_file(dir, "trunc.jpg", jpg, 200));
    expect_load_error(p, HX_EFORMAT, NULL);
    /* truncated JPEG: cut in the middle of the entropy-coded data */
    snprintf(p, sizeof p, "%s", write_file(dir, "half.jpg", jpg, nj / 2));
    expect_load_error(p, HX_EFORMAT, NULL);
    /* corrupt PNG: the IHDR chunk type is damaged */
    uint8_t *bad = malloc(n);
    memcpy(bad, png, n);
    memcpy(bad + 12, "XXXX", 4);
    snprintf(p, sizeof p, "%s", write_file(dir, "corrupt.png", bad, n));
    expect_load_error(p, HX_EFORMAT, NULL);
    free(bad);
    /* unsupported formats and an empty file */
    snprintf(p, sizeof p, "%s", write_file(dir, "x.gif", "GIF89a\x01\x00\x01\x00\x00\x00\x00;", 14));
    expect_load_error(p, HX_EFORMAT, "neither JPEG nor PNG");
    snprintf(p, sizeof p, "%s", write_file(dir, "x.bmp", "BM\x3a\0\0\0\0\0\0\0\x36\0\0\0", 14));
    expect_load_error(p, HX_EFORMAT, "neither JPEG nor PNG");
    snprintf(p, sizeof p, "%s", write_file(dir, "empty.png", "", 0));
    expect_load_error(p, HX_EFORMAT, "empty");

    /* absurd dimensions: a valid header claiming 100000 x 100000 pixels */
    uint8_t huge[33];
    memcpy(huge, png, 33);
    const uint8_t dims[8] = {0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0};
    memcpy(huge + 16, dims, 8);
    uLong c = crc32(0L, huge + 12, 17);
    huge[29] = (uint8_t)(c >> 24);
    huge[30] = (uint8_t)(c >> 16);
    huge[31] = (uint8_t)(c >> 8);
    huge[32] = (uint8_t)c;
    uint8_t *big = malloc(n);
    memcpy(big, huge, 33);
    memcpy(big + 33, png + 33, n - 33);
    snprintf(p, sizeof p, "%s", write_file(dir, "huge.png", big, n));
    expect_load_error(p, HX_EFORMAT, "dimensions");
    free(big);

    /* a JPEG whose frame header claims 60000 x 60000 */
    uint8_t *bigj = malloc(nj);
    memcpy(bigj, jpg, nj);
    size_t sof = 0;
    for (size_t i = 2; i + 9 < nj; i++)
        if (bigj[i] == 0xFF && (bigj[i + 1] == 0xC0 || bigj[i + 1] == 0xC2)) {
            sof = i;
            break;
        }
    ck_assert_msg(sof > 0, "no frame header in l_rgb.jpg");
    const uint8_t jd[4] = {0xEA, 0x60, 0xEA, 0x60};
    memcpy(bigj + sof + 5, jd, 4);
    snprintf(p, sizeof p, "%s", write_file(dir, "huge.jpg", bigj, nj));
    expect_load_error(p, HX_EFORMAT, "dimensions");
    free(bigj);
    free(png);
    free(jpg);
}
END_TEST

/* ---- PNG writing ---- */

START_TEST(png_write_round_trips_atomically)
{
    const char *dir = hx_tmpdir();
    char p[512];
    int w = 23, h = 11;
    uint8_t rgb[23 * 11 * 3], grey[23 * 11];
    for (int i = 0; i < w * h * 3; i++)
        rgb[i] = (uint8_t)(i * 37 + 11);
    for (int i = 0; i < w * h; i++)
        grey[i] = (uint8_t)(i * 13 + 5);

    snprintf(p, sizeof p, "%s/rgb.png", dir);
    mode_t old = umask(027);
    ck_assert_msg(hx_png_write(p, rgb, w, h, 3) == 0, "%s", hx_errmsg());
    umask(old);
    struct stat st; /* the mode any new file gets, not the temporary file's private 0600 */
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0640);
    struct hx_image im;
    ck_assert_msg(hx_image_load(&im, p) == 0, "%s", hx_errmsg());
    ck_assert(im.w == w && im.h == h);
    ck_assert(count_byte_diffs("rgb round trip", im.px, rgb, sizeof rgb) == 0);
    hx_image_free(&im);

    /* overwrite in place with a grey image: loads back as RGB with equal channels */
    ck_assert_msg(hx_png_write(p, grey, w, h, 1) == 0, "%s", hx_errmsg());
    ck_assert_msg(hx_image_load(&im, p) == 0, "%s", hx_errmsg());
    for (int i = 0; i < w * h; i++)
        ck_assert(im.px[3 * i] == grey[i] && im.px[3 * i + 1] == grey[i] &&
                  im.px[3 * i + 2] == grey[i]);
    hx_image_free(&im);

    /* no temporary file is left behind */
    DIR *d = opendir(dir);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            files++;
            ck_assert_str_eq(e->d_name, "rgb.png");
        }
    closedir(d);
    ck_assert_int_eq(files, 1);

    /* errors name the path */
    snprintf(p, sizeof p, "%s/no/such/dir/x.png", dir);
    ck_assert_int_eq(hx_png_write(p, rgb, w, h, 3), HX_EIO);
    ck_assert_msg(strstr(hx_errmsg(), p) != NULL, "%s", hx_errmsg());
    ck_assert_int_eq(hx_png_write(p, rgb, w, h, 2), HX_EINVAL);
    ck_assert_msg(strstr(hx_errmsg(), p) != NULL, "%s", hx_errmsg());

    /* a failed rename (the target is a directory) leaves no temporary file behind */
    const char *dir2 = hx_tmpdir();
    snprintf(p, sizeof p, "%s/taken.png", dir2);
    ck_assert_int_eq(mkdir(p, 0700), 0);
    ck_assert_int_eq(hx_png_write(p, rgb, w, h, 3), HX_EIO);
    ck_assert_msg(strstr(hx_errmsg(), p) != NULL, "%s", hx_errmsg());
    d = opendir(dir2);
    files = 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            files++;
            ck_assert_str_eq(e->d_name, "taken.png");
        }
    closedir(d);
    ck_assert_int_eq(files, 1);
}
END_TEST

/* ---- tensor conversion ---- */

START_TEST(to_tensor_normalises_per_channel)
{
    uint8_t px[2 * 3 * 3];
    for (int i = 0; i < 18; i++)
        px[i] = (uint8_t)(i * 15);
    px[0] = 0;
    px[1] = 255;
    struct hx_image im = {3, 2, px};
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    float out[18], ref[18];
    hx_image_to_tensor(&im, mean, std, out);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 6; i++)
            ref[c * 6 + i] = (float)((px[3 * i + c] / 255.0 - mean[c]) / std[c]);
    hx_assert_close("tensor", out, ref, 18, 1e-6, 1e-6);
    /* planar layout: the second channel of pixel 0 is 255 */
    ck_assert(fabsf(out[6] - (1.0f - mean[1]) / std[1]) < 1e-5f);
}
END_TEST

START_TEST(resizes_reject_bad_sizes)
{
    float f[4] = {0};
    uint8_t b[4] = {0};
    ck_assert_int_eq(hx_resize_bilinear(f, 1, 2, 2, f, 0, 2, 0), HX_EINVAL);
    ck_assert_int_eq(hx_resize_bicubic(f, 1, 0, 2, f, 2, 2, 0), HX_EINVAL);
    ck_assert_int_eq(hx_resize_nearest(f, 0, 2, 2, f, 2, 2), HX_EINVAL);
    ck_assert_int_eq(hx_pil_resize(b, 2, 2, 5, b, 2, 2, HX_PIL_BILINEAR), HX_EINVAL);
    ck_assert_int_eq(hx_pil_resize(b, 2, 2, 1, b, 2, -1, HX_PIL_BICUBIC), HX_EINVAL);
    ck_assert_int_eq(hx_cv_resize_linear(b, 2, 2, 1, b, 0, 2), HX_EINVAL);
    ck_assert_int_eq(hx_cv_resize_nearest(b, 2, 2, 0, b, 2, 2), HX_EINVAL);
}
END_TEST

/* The fused resize-and-add equals a resize followed by adding into the window. */
START_TEST(bilinear_add_matches_resize_then_add)
{
    int c = 3, h = 5, w = 7, oh = 13, ow = 11, dh = 20, dw = 17, y0 = 4, x0 = 6;
    float src[3 * 5 * 7], up[3 * 13 * 11], a[3 * 20 * 17], b[3 * 20 * 17];
    for (int i = 0; i < c * h * w; i++)
        src[i] = (float)((i * 37) % 23) - 11.0f;
    for (int i = 0; i < c * dh * dw; i++)
        a[i] = b[i] = (float)(i % 5);
    ck_assert_int_eq(hx_resize_bilinear(src, c, h, w, up, oh, ow, 0), 0);
    for (int k = 0; k < c; k++)
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++)
                b[(k * dh + y0 + y) * dw + x0 + x] += up[(k * oh + y) * ow + x];
    ck_assert_int_eq(hx_resize_bilinear_add(src, c, h, w, a, dh, dw, y0, x0, oh, ow), 0);
    for (int i = 0; i < c * dh * dw; i++)
        ck_assert_msg(a[i] == b[i], "value %d: %g != %g", i, a[i], b[i]);
    /* a window that does not fit is an error, nothing written */
    ck_assert_int_ne(hx_resize_bilinear_add(src, c, h, w, a, dh, dw, 10, 10, oh, ow), 0);
}
END_TEST

/* The vectorised row resize gives the plain loop's values bit for bit, for up- and
 * downsampling, blocks whose sources span more than one permute (strong downsampling), rows
 * ending mid-block, and inputs exactly as long as the row (no read past its end). */
START_TEST(lerp_row_matches_plain_loop)
{
    const int ins[] = {1, 2, 5, 16, 21, 31, 32, 33, 47, 100, 784};
    const int outs[] = {1, 3, 15, 16, 17, 33, 336, 500, 1000};
    uint32_t r = 1;
    for (size_t a = 0; a < sizeof ins / sizeof *ins; a++)
        for (size_t b = 0; b < sizeof outs / sizeof *outs; b++)
            for (int ac = 0; ac < 2; ac++) {
                int n = ins[a], m = outs[b];
                struct hx_lerp t;
                ck_assert_int_eq(hx_lerp_init(&t, n, m, ac), 0);
                float *in = malloc(sizeof(float) * n), *x = malloc(sizeof(float) * m);
                float *y = malloc(sizeof(float) * m);
                for (int i = 0; i < n; i++) {
                    r = r * 1664525u + 1013904223u;
                    in[i] = ((float)(r >> 8) / 16777216.0f - 0.5f) * (float)(1 << (r & 7));
                }
                hx_lerp_row(&t, in, x);
                hx_lerp_row_ref(&t, in, y);
                for (int o = 0; o < m; o++) {
                    float want = in[t.i0[o]] * t.l0[o] + in[t.i1[o]] * t.l1[o];
                    ck_assert_msg(memcmp(&x[o], &y[o], 4) == 0 && y[o] == want,
                                  "%d -> %d (align %d), output %d: %a, plain %a", n, m, ac, o,
                                  x[o], y[o]);
                }
                free(in), free(x), free(y);
                hx_lerp_free(&t);
            }
    struct hx_lerp t;
    ck_assert_int_eq(hx_lerp_init(&t, 0, 4, 0), HX_EINVAL);
    ck_assert_ptr_null(t.i0);
}
END_TEST

Suite *suite_image(void)
{
    Suite *s = suite_create("image");
    TCase *tl = tcase_create("load");
    tcase_add_test(tl, load_matches_pil_convert_rgb);
    tcase_add_test(tl, load_errors_name_the_file);
    tcase_add_test(tl, png_write_round_trips_atomically);
    tcase_add_test(tl, to_tensor_normalises_per_channel);
    suite_add_tcase(s, tl);
    TCase *tr = tcase_create("resize");
    tcase_set_timeout(tr, 60);
    tcase_add_test(tr, torch_interpolate_matches_reference);
    tcase_add_test(tr, pil_resize_is_bit_exact);
    tcase_add_test(tr, pil_resize_of_real_image_is_bit_exact);
    tcase_add_test(tr, pil_resize_500x375_to_288_is_bit_exact);
    tcase_add_test(tr, cv_resize_is_bit_exact);
    tcase_add_test(tr, nearest_indices_match_reference);
    tcase_add_test(tr, resizes_reject_bad_sizes);
    tcase_add_test(tr, bilinear_add_matches_resize_then_add);
    tcase_add_test(tr, lerp_row_matches_plain_loop);
    suite_add_tcase(s, tr);
    return s;
}
