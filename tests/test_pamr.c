/* PAMR against (1) the PyTorch reference outputs of scripts/pamr_reference.py (affinity and
 * refined masks) and (2) a naive twin written from the definition, in double precision. */
#include "harness/error.h"
#include "harness/pamr.h"
#include "tests/test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned rng = 777;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) / 16777216.0 * 2.0 - 1.0);
}
static float *randv(size_t n, float scale)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = frand() * scale;
    return p;
}

/* Read exactly n little-endian float32 values from tests/data/pamr/<name>. */
static float *load_f32(const char *name, size_t n)
{
    char rel[256];
    snprintf(rel, sizeof rel, "pamr/%s", name);
    const char *path = hx_testdata(rel);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s (regenerate with scripts/pamr_reference.py)", path);
    float *v = malloc((n + 1) * sizeof *v);
    size_t got = fread(v, sizeof *v, n + 1, f);
    fclose(f);
    ck_assert_msg(got == n, "%s holds %zu floats, expected %zu", path, got, n);
    return v;
}

static int cl(int v, int n)
{
    return v < 0 ? 0 : v >= n ? n - 1 : v;
}

/* Straight from the definition: weights w[n][y][x] in double, then iterate in double. */
static void naive_pamr(const float *img, int c, int h, int w, const float *m0, int k,
                       const int *dil, int nd, int iters, float *out, float *aff_out)
{
    int P = 8 * nd, T = 9 * nd;
    double *wt = calloc((size_t)P * h * w, sizeof *wt);
    double *cur = malloc((size_t)k * h * w * sizeof *cur);
    double *nxt = malloc((size_t)k * h * w * sizeof *nxt);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double a[64] = {0};
            for (int ch = 0; ch < c; ch++) {
                const float *I = img + (size_t)ch * h * w;
                double taps[72], mean = 0, var = 0;
                int t = 0, n = 0;
                for (int i = 0; i < nd; i++)
                    for (int dy = -1; dy <= 1; dy++)
                        for (int dx = -1; dx <= 1; dx++)
                            taps[t++] = I[cl(y + dy * dil[i], h) * w + cl(x + dx * dil[i], w)];
                for (t = 0; t < T; t++)
                    mean += taps[t] / T;
                for (t = 0; t < T; t++)
                    var += (taps[t] - mean) * (taps[t] - mean) / (T - 1);
                double sd = sqrt(var);
                for (int i = 0; i < nd; i++)
                    for (int dy = -1; dy <= 1; dy++)
                        for (int dx = -1; dx <= 1; dx++) {
                            if (!dy && !dx)
                                continue;
                            double q = I[cl(y + dy * dil[i], h) * w + cl(x + dx * dil[i], w)];
                            a[n++] += -fabs(I[y * w + x] - q) / (1e-8 + 0.1 * sd) / c;
                        }
            }
            double mx = a[0], s = 0;
            for (int n = 1; n < P; n++)
                mx = fmax(mx, a[n]);
            for (int n = 0; n < P; n++)
                s += exp(a[n] - mx);
            for (int n = 0; n < P; n++)
                wt[((size_t)n * h + y) * w + x] = exp(a[n] - mx) / s;
        }
    for (size_t i = 0; i < (size_t)k * h * w; i++)
        cur[i] = m0[i];
    for (int it = 0; it < iters; it++) {
        for (int j = 0; j < k; j++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    double s = 0;
                    int n = 0;
                    for (int i = 0; i < nd; i++)
                        for (int dy = -1; dy <= 1; dy++)
                            for (int dx = -1; dx <= 1; dx++) {
                                if (!dy && !dx)
                                    continue;
                                s += wt[((size_t)n++ * h + y) * w + x] *
                                     cur[((size_t)j * h + cl(y + dy * dil[i], h)) * w +
                                         cl(x + dx * dil[i], w)];
                            }
                    nxt[((size_t)j * h + y) * w + x] = s;
                }
        double *t = cur;
        cur = nxt;
        nxt = t;
    }
    for (size_t i = 0; i < (size_t)k * h * w; i++)
        out[i] = (float)cur[i];
    if (aff_out)
        for (size_t i = 0; i < (size_t)P * h * w; i++)
            aff_out[i] = (float)wt[i];
    free(wt), free(cur), free(nxt);
}

START_TEST(matches_pytorch_reference)
{
    FILE *f = fopen(hx_testdata("pamr/cases.txt"), "r");
    ck_assert_msg(f != NULL, "tests/data/pamr/cases.txt missing: run scripts/pamr_reference.py");
    char name[64], img_name[64], line[256];
    int ncases = 0;
    while (fgets(line, sizeof line, f)) {
        int c, h, w, k, iters, nd, dil[HX_PAMR_MAX_DILATIONS], pos;
        ck_assert_int_eq(sscanf(line, "%63s %63s %d %d %d %d %d %d%n", name, img_name, &c, &h,
                                &w, &k, &iters, &nd, &pos), 8);
        ck_assert(nd >= 1 && nd <= HX_PAMR_MAX_DILATIONS);
        char tag[64] = "d", *q = line + pos;
        for (int i = 0; i < nd; i++) {
            int used;
            ck_assert_int_eq(sscanf(q, "%d%n", &dil[i], &used), 1);
            q += used;
            snprintf(tag + strlen(tag), sizeof tag - strlen(tag), i ? "-%d" : "%d", dil[i]);
        }
        size_t hw = (size_t)h * w;
        char file[192];
        snprintf(file, sizeof file, "%s.img.f32", img_name);
        float *img = load_f32(file, (size_t)c * hw);
        snprintf(file, sizeof file, "%s.masks.f32", img_name);
        float *masks = load_f32(file, (size_t)k * hw);
        snprintf(file, sizeof file, "%s_%s.aff.f32", img_name, tag);
        float *aff_ref = load_f32(file, (size_t)8 * nd * hw);
        snprintf(file, sizeof file, "%s.out.f32", name);
        float *out_ref = load_f32(file, (size_t)k * hw);

        struct hx_pamr *p = NULL;
        ck_assert_msg(hx_pamr_new(&p, img, c, h, w, dil, nd) == 0, "%s", hx_errmsg());
        ck_assert_int_eq(p->n_nb, 8 * nd);
        snprintf(file, sizeof file, "%s affinity", name);
        hx_assert_close(file, p->aff, aff_ref, (size_t)8 * nd * hw, 1e-5, 1e-7);
        ck_assert_msg(hx_pamr_apply(p, masks, k, iters) == 0, "%s", hx_errmsg());
        hx_assert_close(name, masks, out_ref, (size_t)k * hw, 0, 1e-5);
        /* the reference must actually have moved the masks, or the comparison proves little */
        float *orig = load_f32(strcat(strcpy(file, img_name), ".masks.f32"), (size_t)k * hw);
        double moved = 0;
        for (size_t i = 0; i < (size_t)k * hw; i++)
            moved = fmax(moved, fabs(orig[i] - out_ref[i]));
        ck_assert_msg(moved > 1e-3, "%s: reference output equals its input", name);
        hx_pamr_free(p);
        free(img), free(masks), free(aff_ref), free(out_ref), free(orig);
        ncases++;
    }
    fclose(f);
    ck_assert_int_ge(ncases, 6);
}
END_TEST

START_TEST(matches_naive_twin)
{
    static const struct {
        int c, h, w, k, iters, nd, dil[3];
    } cases[] = {
        {3, 37, 53, 5, 10, 2, {8, 16}},   /* NACLIP's setting */
        {3, 40, 29, 3, 3, 2, {8, 16}},    /* odd step count: result ends in the scratch */
        {1, 9, 70, 2, 4, 3, {1, 2, 3}},   /* grey image, three dilations */
        {2, 6, 5, 1, 2, 1, {20}},         /* dilation beyond the image: all taps clamped */
        {3, 1, 1, 2, 5, 2, {8, 16}},      /* one pixel */
        {4, 17, 1, 3, 6, 1, {2}},         /* one column */
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int c = cases[t].c, h = cases[t].h, w = cases[t].w, k = cases[t].k;
        size_t hw = (size_t)h * w;
        float *img = randv((size_t)c * hw, 2), *m = randv((size_t)k * hw, 0.5f);
        /* a flat patch, where the tap deviation is 0 and all affinities tie */
        for (int ch = 0; ch < c; ch++)
            for (int y = 0; y < h && y < 4; y++)
                for (int x = 0; x < w && x < 4; x++)
                    img[ch * hw + y * w + x] = 0.25f;
        float *ref = malloc((size_t)k * hw * sizeof *ref);
        float *aff = malloc((size_t)8 * cases[t].nd * hw * sizeof *aff);
        naive_pamr(img, c, h, w, m, k, cases[t].dil, cases[t].nd, cases[t].iters, ref, aff);
        struct hx_pamr *p = NULL;
        ck_assert_msg(hx_pamr_new(&p, img, c, h, w, cases[t].dil, cases[t].nd) == 0, "%s",
                      hx_errmsg());
        hx_assert_close("affinity vs naive", p->aff, aff, (size_t)8 * cases[t].nd * hw, 1e-5,
                        1e-7);
        ck_assert_int_eq(hx_pamr_apply(p, m, k, cases[t].iters), 0);
        hx_assert_close("pamr vs naive", m, ref, (size_t)k * hw, 0, 1e-5);
        hx_pamr_free(p);
        free(img), free(m), free(ref), free(aff);
    }
}
END_TEST

/* The affinity is a distribution per pixel, so a constant map is a fixed point; and the
 * refinement pulls a noisy map towards the piecewise-constant structure of the image. */
START_TEST(weights_and_edges)
{
    int c = 3, h = 24, w = 32;
    size_t hw = (size_t)h * w;
    float *img = malloc(c * hw * sizeof *img), m[2 * 24 * 32], noisy[24 * 32];
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                img[ch * hw + y * w + x] = x < 16 ? 0.2f : 0.9f;
    struct hx_pamr *p = NULL;
    int dil[2] = {1, 2};
    ck_assert_int_eq(hx_pamr_new(&p, img, c, h, w, dil, 2), 0);
    for (size_t i = 0; i < hw; i++) {
        double s = 0;
        for (int n = 0; n < p->n_nb; n++) {
            ck_assert(p->aff[n * hw + i] >= 0);
            s += p->aff[n * hw + i];
        }
        ck_assert_msg(fabs(s - 1) < 1e-5, "weights at %zu sum to %g", i, s);
    }
    for (size_t i = 0; i < hw; i++)
        m[i] = 0.375f, m[hw + i] = noisy[i] = (i % w < 16 ? 1.0f : 0.0f) + 0.4f * frand();
    ck_assert_int_eq(hx_pamr_apply(p, m, 2, 10), 0);
    for (size_t i = 0; i < hw; i++)
        ck_assert_msg(fabs(m[i] - 0.375f) < 1e-6, "constant map changed at %zu: %g", i, m[i]);
    /* the noisy step edge: the noise shrinks, and nothing leaks across the image's edge */
    double before = 0, after = 0, col15 = 0, col16 = 0;
    for (size_t i = 0; i < hw; i++) {
        double target = i % w < 16 ? 1.0 : 0.0;
        before += fabs(noisy[i] - target) / hw;
        after += fabs(m[hw + i] - target) / hw;
        col15 += (i % w == 15 ? m[hw + i] : 0) / h;
        col16 += (i % w == 16 ? m[hw + i] : 0) / h;
    }
    ck_assert_msg(after < 0.3 * before, "noise %g -> %g: not smoothed", before, after);
    ck_assert_msg(col15 > 0.9 && col16 < 0.1, "edge blurred: columns 15, 16 = %g, %g", col15,
                  col16);
    hx_pamr_free(p);
    free(img);
}
END_TEST

/* Each channel's term is |difference| / deviation, so normalising the image per channel
 * (x - mean_c) / std_c, as the network input is, changes nothing but rounding. */
START_TEST(invariant_to_channel_normalisation)
{
    int c = 3, h = 30, w = 41, k = 3;
    size_t hw = (size_t)h * w;
    float *img = malloc(c * hw * sizeof *img), *norm = malloc(c * hw * sizeof *norm);
    float *a = randv(k * hw, 1), *b = malloc(k * hw * sizeof *b);
    static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    static const float sd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    for (int ch = 0; ch < c; ch++)
        for (size_t i = 0; i < hw; i++) {
            img[ch * hw + i] = (float)((int)((frand() + 1) * 127.5f)); /* 0..255 levels */
            norm[ch * hw + i] = (img[ch * hw + i] / 255.0f - mean[ch]) / sd[ch];
        }
    memcpy(b, a, k * hw * sizeof *a);
    struct hx_pamr_opts o = HX_PAMR_OPTS_NACLIP;
    ck_assert_int_eq(hx_pamr(img, c, h, w, a, k, &o), 0);
    ck_assert_int_eq(hx_pamr(norm, c, h, w, b, k, &o), 0);
    hx_assert_close("raw vs normalised image", a, b, k * hw, 0, 1e-4);
    free(img), free(norm), free(a), free(b);
}
END_TEST

/* Classes are refined in blocks bounded by a scratch budget, and shared among threads: a
 * stack of maps large enough to be split must give what each map gives alone. */
START_TEST(blocks_match_single_maps)
{
    int c = 3, h = 1100, w = 1000, k = 5;
    size_t hw = (size_t)h * w;
    float *img = randv(c * hw, 1), *m = randv(k * hw, 1), *one = malloc(hw * sizeof *one);
    float *orig = malloc(k * hw * sizeof *orig);
    memcpy(orig, m, k * hw * sizeof *m);
    struct hx_pamr *p = NULL;
    int dil[2] = {8, 16};
    ck_assert_int_eq(hx_pamr_new(&p, img, c, h, w, dil, 2), 0);
    ck_assert_int_eq(hx_pamr_apply(p, m, k, 3), 0);
    /* three threads over five classes: 2 + 1 + 2 classes, blocks of one or two */
    float *mt = malloc(k * hw * sizeof *mt);
    memcpy(mt, orig, k * hw * sizeof *mt);
    ck_assert_int_eq(hx_pamr_apply_mt(p, mt, k, 3, 3), 0);
    ck_assert_msg(memcmp(mt, m, k * hw * sizeof *m) == 0, "threaded result differs");
    free(mt);
    for (int j = 0; j < k; j++) {
        memcpy(one, orig + j * hw, hw * sizeof *one);
        ck_assert_int_eq(hx_pamr_apply(p, one, 1, 3), 0);
        ck_assert_msg(memcmp(one, m + j * hw, hw * sizeof *one) == 0, "map %d differs", j);
        ck_assert_msg(memcmp(one, orig + j * hw, hw * sizeof *one) != 0, "map %d unchanged", j);
    }
    hx_pamr_free(p);
    free(img), free(m), free(one), free(orig);
}
END_TEST

START_TEST(one_call_and_errors)
{
    int c = 3, h = 20, w = 19, k = 2;
    size_t hw = (size_t)h * w;
    float *img = randv(c * hw, 1), *a = randv(k * hw, 1), *b = malloc(k * hw * sizeof *b);
    memcpy(b, a, k * hw * sizeof *a);
    struct hx_pamr_opts o = HX_PAMR_OPTS_NACLIP;
    ck_assert_int_eq(o.iters, 10);
    ck_assert_int_eq(o.n_dilations, 2);
    ck_assert_int_eq(o.dilations[0], 8);
    ck_assert_int_eq(o.dilations[1], 16);
    o.threads = 2;
    ck_assert_int_eq(hx_pamr(img, c, h, w, a, k, &o), 0);
    naive_pamr(img, c, h, w, b, k, o.dilations, 2, 10, b, NULL);
    hx_assert_close("hx_pamr", a, b, k * hw, 0, 1e-5);

    struct hx_pamr *p = NULL;
    int bad[2] = {8, 0};
    ck_assert_int_eq(hx_pamr_new(&p, img, c, h, w, bad, 2), HX_EINVAL);
    ck_assert(strstr(hx_errmsg(), "dilation") != NULL);
    ck_assert_int_eq(hx_pamr_new(&p, img, c, h, w, o.dilations, 0), HX_EINVAL);
    ck_assert_int_eq(hx_pamr_new(&p, img, c, h, w, o.dilations, HX_PAMR_MAX_DILATIONS + 1),
                     HX_EINVAL);
    ck_assert_int_eq(hx_pamr_new(&p, img, 0, h, w, o.dilations, 2), HX_EINVAL);
    ck_assert_int_eq(hx_pamr_new(&p, img, c, h, 0, o.dilations, 2), HX_EINVAL);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(hx_pamr_new(&p, img, c, h, w, o.dilations, 2), 0);
    ck_assert_int_eq(hx_pamr_apply(p, a, k, -1), HX_EINVAL);
    memcpy(b, a, k * hw * sizeof *a);
    ck_assert_int_eq(hx_pamr_apply(p, a, k, 0), 0);
    ck_assert(memcmp(a, b, k * hw * sizeof *a) == 0);
    hx_pamr_free(p);
    hx_pamr_free(NULL);
    free(img), free(a), free(b);
}
END_TEST

Suite *suite_pamr(void)
{
    Suite *s = suite_create("pamr");
    TCase *tc = tcase_create("pamr");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, matches_pytorch_reference);
    tcase_add_test(tc, matches_naive_twin);
    tcase_add_test(tc, weights_and_edges);
    tcase_add_test(tc, invariant_to_channel_normalisation);
    tcase_add_test(tc, blocks_match_single_maps);
    tcase_add_test(tc, one_call_and_errors);
    suite_add_tcase(s, tc);
    return s;
}
