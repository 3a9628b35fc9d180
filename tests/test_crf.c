/* Dense CRF against (1) pydensecrf's outputs (scripts/crf_reference.py, tests/data/crf/),
 * (2) an exact O(N^2) twin written from the definition (direct Gaussian sums in double), which
 * measures how far the lattice's approximation of the kernels moves Q, (3) the CLI end to end
 * with HDF5 files and its errors. */
#include "harness/crf.h"
#include "harness/error.h"
#include "harness/h5io.h"
#include "harness/image.h"
#include "tests/test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Read exactly `n` bytes of tests/data/crf/<name>. */
static void *load_raw(const char *name, size_t n)
{
    char rel[256];
    snprintf(rel, sizeof rel, "crf/%s", name);
    const char *path = hx_testdata(rel);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s (regenerate with scripts/crf_reference.py)", path);
    char *v = malloc(n + 1);
    size_t got = fread(v, 1, n + 1, f);
    fclose(f);
    ck_assert_msg(got == n, "%s holds %zu bytes, expected %zu", path, got, n);
    return v;
}

struct ref_case {
    char name[64], img[8], unary[16];
    int w, h, labels, iters, has_g, has_b;
    float g[2], b[3];
};

static int read_cases(struct ref_case *cs, int max)
{
    FILE *f = fopen(hx_testdata("crf/cases.txt"), "r");
    ck_assert_msg(f != NULL, "tests/data/crf/cases.txt missing");
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        ck_assert_int_lt(n, max);
        struct ref_case *c = &cs[n];
        char g0[32], g1[32], b0[32], b1[32], b2[32];
        int k = sscanf(line, "%63s %7s %d %d %d %31s %31s %31s %31s %31s %d %15s", c->name,
                       c->img, &c->w, &c->h, &c->labels, g0, g1, b0, b1, b2, &c->iters,
                       c->unary);
        ck_assert_msg(k == 12, "bad line in cases.txt: %s", line);
        c->has_g = strcmp(g0, "-") != 0;
        c->has_b = strcmp(b0, "-") != 0;
        if (c->has_g)
            c->g[0] = strtof(g0, NULL), c->g[1] = strtof(g1, NULL);
        if (c->has_b)
            c->b[0] = strtof(b0, NULL), c->b[1] = strtof(b1, NULL), c->b[2] = strtof(b2, NULL);
        n++;
    }
    fclose(f);
    return n;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        m = d > m ? d : m;
    }
    return m;
}

/* Run one reference case with `threads` threads; the unary from the stored energies, or from
 * the probabilities (from_prob). Returns Q (malloc'd). */
static float *run_case(const struct ref_case *c, int threads, int from_prob)
{
    const size_t n = (size_t)c->w * c->h, nq = n * c->labels;
    char name[128];
    snprintf(name, sizeof name, "%.7s.u8", c->img);
    uint8_t *rgb = load_raw(name, n * 3);
    snprintf(name, sizeof name, "%.63s.%s.f32", c->name, from_prob ? "prob" : "unary");
    float *u = load_raw(name, nq * sizeof(float));
    float *q = malloc(nq * sizeof *q);
    struct hx_crf *crf = NULL;
    ck_assert_int_eq(hx_crf_new(&crf, c->w, c->h, c->labels), 0);
    hx_crf_set_threads(crf, threads);
    ck_assert_int_eq(from_prob ? hx_crf_set_unary_from_prob(crf, u, 1e-8f)
                               : hx_crf_set_unary(crf, u), 0);
    if (c->has_g)
        ck_assert_int_eq(hx_crf_add_gaussian(crf, c->g[0], c->g[1]), 0);
    if (c->has_b)
        ck_assert_int_eq(hx_crf_add_bilateral(crf, c->b[0], c->b[1], rgb, c->b[2]), 0);
    ck_assert_int_eq(hx_crf_infer(crf, c->iters, q), 0);
    hx_crf_free(crf);
    free(rgb);
    free(u);
    return q;
}

/* Every case of cases.txt against pydensecrf within 1e-5; threads change nothing. */
START_TEST(test_pydensecrf_cases)
{
    struct ref_case cs[64];
    int nc = read_cases(cs, 64);
    ck_assert_int_ge(nc, 22);
    double worst = 0;
    for (int i = 0; i < nc; i++) {
        const struct ref_case *c = &cs[i];
        const size_t nq = (size_t)c->w * c->h * c->labels;
        char name[128];
        snprintf(name, sizeof name, "%.63s.q.f32", c->name);
        float *ref = load_raw(name, nq * sizeof(float));
        float *q = run_case(c, 1, 0);
        double e = max_abs_diff(q, ref, nq);
        fprintf(stderr, "crf %-18s max |Q - pydensecrf| = %.3g\n", c->name, e);
        worst = e > worst ? e : worst;
        hx_assert_close(c->name, q, ref, nq, 0.0, 1e-5);
        for (int t = 2; t <= 3; t++) {
            float *qt = run_case(c, t, 0);
            ck_assert_msg(memcmp(q, qt, nq * sizeof *q) == 0, "%s: %d threads change Q",
                          c->name, t);
            free(qt);
        }
        if (!strcmp(c->unary, "prob")) {
            float *qp = run_case(c, 1, 1);
            hx_assert_close(c->name, qp, ref, nq, 0.0, 1e-5);
            free(qp);
        }
        free(ref);
        free(q);
    }
    fprintf(stderr, "crf: worst max |Q - pydensecrf| over %d cases = %.3g\n", nc, worst);
}
END_TEST

/* The padding quirk: when the pixel count is not a multiple of 4, the reference's SSE init
 * pads the points with zero features and inserts their lattice vertices (the origin's
 * simplex). With distinct colours at unit scale no vertex is shared, so the vertex count shows
 * whether they are there. (Dropping them changes case c_l2_bilat_it5 by 0.056.) */
START_TEST(test_padding_vertices)
{
    /* 8x1: no padding; 9x1: 3 padding points */
    uint8_t rgb[9 * 3];
    for (int i = 0; i < 27; i++)
        rgb[i] = (uint8_t)(i * 37 % 251);
    struct hx_crf *a = NULL, *b = NULL;
    ck_assert_int_eq(hx_crf_new(&a, 8, 1, 2), 0);
    ck_assert_int_eq(hx_crf_new(&b, 9, 1, 2), 0);
    ck_assert_int_eq(hx_crf_add_bilateral(a, 1.0f, 1.0f, rgb, 1.0f), 0);
    ck_assert_int_eq(hx_crf_add_bilateral(b, 1.0f, 1.0f, rgb, 1.0f), 0);
    ck_assert_int_eq(hx_crf_lattice_size(a, 0), 8 * 6);
    ck_assert_int_eq(hx_crf_lattice_size(b, 0), 9 * 6 + 6);
    ck_assert_int_eq(hx_crf_lattice_size(b, 1), -1);
    hx_crf_free(a);
    hx_crf_free(b);
}
END_TEST

/* SimSeg's settings on a 64x48 crop of a real photograph (fixture), decoded at run time. */
START_TEST(test_real_image_crop)
{
    const char *fx = hx_fixture("voc/2007_000033.jpg");
    if (!fx)
        HX_SKIP("fixture voc/2007_000033.jpg absent");
    char path[1024];
    snprintf(path, sizeof path, "%s", fx); /* hx_testdata reuses the static buffer */
    FILE *f = fopen(hx_testdata("crf/voc33.txt"), "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    int x0 = 0, y0 = 0, w = 0, h = 0;
    long long sum = 0;
    while (fgets(line, sizeof line, f))
        if (line[0] != '#')
            ck_assert_int_eq(sscanf(line, "%d %d %d %d %lld", &x0, &y0, &w, &h, &sum), 5);
    fclose(f);
    struct hx_image im = {0};
    ck_assert_int_eq(hx_image_load(&im, path), 0);
    ck_assert(x0 + w <= im.w && y0 + h <= im.h);
    uint8_t *crop = malloc((size_t)w * h * 3);
    long long s = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w * 3; x++)
            s += crop[((size_t)y * w) * 3 + x] = im.px[((size_t)(y0 + y) * im.w + x0) * 3 + x];
    hx_image_free(&im);
    ck_assert_msg(s == sum, "the crop decodes to other pixels (byte sum %lld, reference %lld): "
                  "the JPEG decoder changed", s, sum);
    const size_t nq = (size_t)2 * w * h;
    float *p = load_raw("voc33.prob.f32", nq * sizeof(float));
    float *ref = load_raw("voc33.q.f32", nq * sizeof(float));
    float *q = malloc(nq * sizeof *q);
    struct hx_crf *crf = NULL;
    ck_assert_int_eq(hx_crf_new(&crf, w, h, 2), 0);
    ck_assert_int_eq(hx_crf_set_unary_from_prob(crf, p, 1e-8f), 0);
    ck_assert_int_eq(hx_crf_add_gaussian(crf, 3, 3), 0);
    ck_assert_int_eq(hx_crf_add_bilateral(crf, 40, 13, crop, 10), 0);
    ck_assert_int_eq(hx_crf_infer(crf, 3, q), 0);
    fprintf(stderr, "crf voc33 crop: max |Q - pydensecrf| = %.3g\n", max_abs_diff(q, ref, nq));
    hx_assert_close("voc33", q, ref, nq, 0.0, 1e-5);
    hx_crf_free(crf);
    free(crop);
    free(p);
    free(ref);
    free(q);
}
END_TEST

/* ---- exact twin: the same model with the kernels summed directly, in double ---- */

/* Q after `iters` mean-field steps with exact kernels k(i,j) = exp(-|f_i - f_j|^2 / 2)
 * (self term included), symmetric normalisation, Potts weights w, unary U [L][n]. */
static void exact_crf(int w, int h, int L, const float *U, const uint8_t *rgb, const float *g,
                      const float *b, int iters, float *qout)
{
    const int n = w * h;
    double *K[2] = {NULL, NULL}, *nrm[2] = {NULL, NULL}, wk[2] = {0, 0};
    int nk = 0;
    for (int k = 0; k < 2; k++) {
        const float *par = k == 0 ? g : b;
        if (!par)
            continue;
        double *M = malloc((size_t)n * n * sizeof *M), *nr = malloc((size_t)n * sizeof *nr);
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int j = 0; j < n; j++) {
                double dx = (i % w - j % w) / (double)par[0], dy = (i / w - j / w) / (double)par[0];
                double d2 = dx * dx + dy * dy;
                if (k == 1)
                    for (int c = 0; c < 3; c++) {
                        double dc = (rgb[i * 3 + c] - rgb[j * 3 + c]) / (double)par[1];
                        d2 += dc * dc;
                    }
                M[(size_t)i * n + j] = exp(-0.5 * d2);
                s += M[(size_t)i * n + j];
            }
            nr[i] = 1.0 / sqrt(s);
        }
        K[nk] = M;
        nrm[nk] = nr;
        wk[nk] = par[k == 0 ? 1 : 2];
        nk++;
    }
    double *Q = malloc((size_t)n * L * sizeof *Q), *T = malloc((size_t)n * L * sizeof *T);
    for (int it = 0; it <= iters; it++) {
        for (int i = 0; i < n; i++)
            for (int l = 0; l < L; l++)
                T[(size_t)l * n + i] = -U[(size_t)l * n + i];
        if (it > 0)
            for (int k = 0; k < nk; k++)
                for (int l = 0; l < L; l++)
                    for (int i = 0; i < n; i++) {
                        double s = 0;
                        for (int j = 0; j < n; j++)
                            s += K[k][(size_t)i * n + j] * nrm[k][j] * Q[(size_t)l * n + j];
                        T[(size_t)l * n + i] += wk[k] * nrm[k][i] * s;
                    }
        for (int i = 0; i < n; i++) {
            double mx = -INFINITY, s = 0;
            for (int l = 0; l < L; l++)
                mx = fmax(mx, T[(size_t)l * n + i]);
            for (int l = 0; l < L; l++)
                s += exp(T[(size_t)l * n + i] - mx);
            for (int l = 0; l < L; l++)
                Q[(size_t)l * n + i] = exp(T[(size_t)l * n + i] - mx) / s;
        }
    }
    for (size_t i = 0; i < (size_t)n * L; i++)
        qout[i] = (float)Q[i];
    for (int k = 0; k < nk; k++)
        free(K[k]), free(nrm[k]);
    free(Q);
    free(T);
}

/* The lattice approximates the Gaussian kernels (Adams et al.: a coarse, truncated blur on a
 * lattice whose spacing is about one standard deviation); after the symmetric normalisation
 * the messages, and so Q, stay close to the exact model's. Measured (max / mean |dQ| over
 * pixels and labels), after 1 iteration, where the gap is the kernels' error seen through one
 * softmax, and after 10, near the fixed point:
 *   16x12 L=2 SimSeg's kernels       1 it: 0.035 / 0.0071   10 it: 0.0005 / 0.00001
 *   16x12 L=3 g(2,3) b(5,10,5)       1 it: 0.023 / 0.0045   10 it: 0.010  / 0.0004
 *   13x11 L=4 g(3,5) only            1 it: 0.009 / 0.0020   10 it: 0.035  / 0.0018
 *   13x11 L=2 b(6,15,6) only         1 it: 0.022 / 0.0051   10 it: 0.016  / 0.0007
 * In between, pixels near a decision boundary can follow different mean-field paths (up to
 * 0.3 at 6 iterations in the second case) before both settle. The bounds below add a margin;
 * a wrong neighbour, weight or normalisation moves Q by far more, and the pairwise terms
 * themselves move Q by several times the gap (asserted, so the comparison means something). */
START_TEST(test_exact_twin)
{
    static const struct {
        int w, h, L;
        float g[2], b[3];
        int has_g, has_b;
    } cases[] = {
        {16, 12, 2, {3, 3}, {40, 13, 10}, 1, 1},
        {16, 12, 3, {2, 3}, {5, 10, 5}, 1, 1},
        {13, 11, 4, {3, 5}, {0, 0, 0}, 1, 0},
        {13, 11, 2, {0, 0}, {6, 15, 6}, 0, 1},
    };
    static const struct {
        int iters;
        double max, mean;
    } at[] = {{1, 0.05, 0.01}, {10, 0.05, 0.004}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int w = cases[ci].w, h = cases[ci].h, L = cases[ci].L, n = w * h;
        const size_t nq = (size_t)n * L;
        uint8_t *rgb = malloc((size_t)n * 3);
        float *U = malloc(nq * sizeof *U), *qa = malloc(nq * sizeof *qa);
        float *qe = malloc(nq * sizeof *qe), *q0 = malloc(nq * sizeof *q0);
        unsigned r = 12345u + (unsigned)ci;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++) {
                    r = r * 1664525u + 1013904223u;
                    int base = (x < w / 2) ^ (y < h / 2) ? 200 - 60 * c : 40 + 50 * c;
                    rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)(base + (int)(r >> 28));
                }
        for (size_t i = 0; i < nq; i++) {
            r = r * 1664525u + 1013904223u;
            U[i] = (float)((r >> 8) / 16777216.0 * 3.0);
        }
        struct hx_crf *crf = NULL;
        ck_assert_int_eq(hx_crf_new(&crf, w, h, L), 0);
        ck_assert_int_eq(hx_crf_set_unary(crf, U), 0);
        if (cases[ci].has_g)
            ck_assert_int_eq(hx_crf_add_gaussian(crf, cases[ci].g[0], cases[ci].g[1]), 0);
        if (cases[ci].has_b)
            ck_assert_int_eq(
                hx_crf_add_bilateral(crf, cases[ci].b[0], cases[ci].b[1], rgb, cases[ci].b[2]),
                0);
        ck_assert_int_eq(hx_crf_infer(crf, 0, q0), 0); /* the unary alone */
        for (size_t a = 0; a < sizeof at / sizeof at[0]; a++) {
            ck_assert_int_eq(hx_crf_infer(crf, at[a].iters, qa), 0);
            exact_crf(w, h, L, U, rgb, cases[ci].has_g ? cases[ci].g : NULL,
                      cases[ci].has_b ? cases[ci].b : NULL, at[a].iters, qe);
            double gap = max_abs_diff(qa, qe, nq), mean = 0;
            for (size_t i = 0; i < nq; i++)
                mean += fabs((double)qa[i] - qe[i]);
            mean /= (double)nq;
            double moved = max_abs_diff(qe, q0, nq);
            fprintf(stderr, "crf exact twin %dx%d L=%d, %2d it: |Q_lattice - Q_exact| max %.4f "
                    "mean %.5f (pairwise terms move Q by up to %.3f)\n", w, h, L, at[a].iters,
                    gap, mean, moved);
            ck_assert_msg(gap < at[a].max && mean < at[a].mean,
                          "case %zu, %d it: lattice %g (mean %g) from the exact CRF", ci,
                          at[a].iters, gap, mean);
            ck_assert_msg(moved > 4 * gap, "case %zu: kernels too weak to test anything", ci);
        }
        hx_crf_free(crf);
        free(rgb), free(U), free(qa), free(qe), free(q0);
    }
}
END_TEST

START_TEST(test_api_errors)
{
    struct hx_crf *c = NULL;
    ck_assert_int_eq(hx_crf_new(&c, 0, 5, 2), HX_EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(hx_crf_new(&c, 5, 5, 0), HX_EINVAL);
    ck_assert_int_eq(hx_crf_new(&c, 5, 5, HX_CRF_MAX_LABELS + 1), HX_EINVAL);
    ck_assert(strstr(hx_errmsg(), "labels") != NULL);
    ck_assert_int_eq(hx_crf_new(&c, 5, 4, 2), 0);
    ck_assert_int_eq(hx_crf_add_gaussian(c, 0.0f, 3.0f), HX_EINVAL);
    ck_assert(strstr(hx_errmsg(), "sxy") != NULL);
    ck_assert_int_eq(hx_crf_add_gaussian(c, NAN, 3.0f), HX_EINVAL);
    uint8_t rgb[60] = {0};
    ck_assert_int_eq(hx_crf_add_bilateral(c, 3.0f, -1.0f, rgb, 3.0f), HX_EINVAL);
    ck_assert(strstr(hx_errmsg(), "srgb") != NULL);
    float q[40];
    ck_assert_int_eq(hx_crf_infer(c, -1, q), HX_EINVAL);
    /* no kernel, zero unary: uniform Q */
    ck_assert_int_eq(hx_crf_infer(c, 2, q), 0);
    for (int i = 0; i < 40; i++)
        ck_assert_float_eq(q[i], 0.5f);
    hx_crf_free(c);
    hx_crf_free(NULL);
}
END_TEST

/* ---- CLI ---- */

static int file_has(const char *path, const char *needle)
{
    char buf[4096] = {0};
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strstr(buf, needle) != NULL;
}

/* Write case <name>'s image as PNG and probabilities as /prob into dir. */
static void write_inputs(const char *dir, const struct ref_case *c, char *png, char *h5)
{
    const size_t n = (size_t)c->w * c->h;
    char name[128];
    snprintf(name, sizeof name, "%.7s.u8", c->img);
    uint8_t *rgb = load_raw(name, n * 3);
    snprintf(name, sizeof name, "%.63s.prob.f32", c->name);
    float *p = load_raw(name, n * c->labels * sizeof(float));
    snprintf(png, 512, "%.300s/%.63s.png", dir, c->name);
    snprintf(h5, 512, "%.300s/%.63s.prob.h5", dir, c->name);
    ck_assert_int_eq(hx_png_write(png, rgb, c->w, c->h, 3), 0);
    struct hx_h5_dataset ds = {"/prob", 3, {c->labels, c->h, c->w, 0}, p, NULL, 0};
    ck_assert_int_eq(hx_h5_write(h5, &ds, 1), 0);
    free(rgb);
    free(p);
}

static const struct ref_case *find_case(const struct ref_case *cs, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(cs[i].name, name))
            return &cs[i];
    ck_abort_msg("case %s not in cases.txt", name);
    return NULL;
}

START_TEST(test_cli_end_to_end)
{
    struct ref_case cs[64];
    int nc = read_cases(cs, 64);
    const char *dir = hx_tmpdir();
    char png[512], h5[512], out[512], err[512], args[2048];
    snprintf(err, sizeof err, "%s/err.txt", dir);
    static const struct {
        const char *name, *opts;
    } runs[] = {
        {"a_l2_simseg_it3", ""}, /* the defaults are SimSeg's */
        {"b_l2_mid_it3", "--gaussian 2,3 --bilateral 5,10,5 --iters 3 --threads 2"},
        {"c_l2_bilat_it5", "--gaussian none --bilateral=3,20,8 --iters 5"},
        {"d_l21_car_it10", "--gaussian 1,3 --bilateral 67,3,4 --iters 10 --threads 2"},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        const struct ref_case *c = find_case(cs, nc, runs[r].name);
        write_inputs(dir, c, png, h5);
        snprintf(out, sizeof out, "%.300s/%.63s.q.h5", dir, c->name);
        snprintf(args, sizeof args, "crf --image %s --prob %s --out %s %s", png, h5, out,
                 runs[r].opts);
        ck_assert_msg(hx_run_harness(args, NULL, err) == 0, "harness %s failed", args);
        ck_assert(file_has(err, "crf: "));
        float *q = NULL;
        int64_t shape[4];
        int nd = 0;
        ck_assert_int_eq(hx_h5_read(out, "/q", &q, shape, &nd), 0);
        ck_assert_int_eq(nd, 3);
        ck_assert(shape[0] == c->labels && shape[1] == c->h && shape[2] == c->w);
        const size_t nq = (size_t)c->labels * c->w * c->h;
        char name[128];
        snprintf(name, sizeof name, "%.63s.q.f32", c->name);
        float *ref = load_raw(name, nq * sizeof(float));
        hx_assert_close(c->name, q, ref, nq, 0.0, 1e-5);
        free(q);
        free(ref);
    }
}
END_TEST

START_TEST(test_cli_errors)
{
    struct ref_case cs[64];
    int nc = read_cases(cs, 64);
    const char *dir = hx_tmpdir();
    char png[512], h5[512], png2[512], h52[512], err[512], args[2048], out[512];
    snprintf(err, sizeof err, "%s/err.txt", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    write_inputs(dir, find_case(cs, nc, "a_l2_simseg_it3"), png, h5);   /* 24x17 */
    write_inputs(dir, find_case(cs, nc, "b_l2_mid_it3"), png2, h52);    /* 23x17 */

    /* image and prob map of different sizes */
    snprintf(args, sizeof args, "crf --image %s --prob %s --out %s", png2, h5, out);
    ck_assert_int_eq(hx_run_harness(args, NULL, err), 2);
    ck_assert(file_has(err, "17x24") && file_has(err, "17x23"));

    static const struct {
        const char *opt, *needle;
    } bad[] = {
        {"--gaussian 3", "--gaussian '3'"},
        {"--gaussian 3,x", "--gaussian"},
        {"--gaussian 3,3,3", "--gaussian"},
        {"--gaussian 0,3", "SXY must be > 0"},
        {"--bilateral 40,13", "--bilateral '40,13'"},
        {"--bilateral 40,-1,10", "SRGB must be > 0"},
        {"--bilateral 40,13,inf", "--bilateral"},
        {"--iters -1", "--iters"},
        {"--iters x", "--iters"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "crf --image %s --prob %s --out %s %s", png, h5, out,
                 bad[i].opt);
        ck_assert_int_eq(hx_run_harness(args, NULL, err), 2);
        ck_assert_msg(file_has(err, bad[i].needle), "%s: message lacks '%s'", bad[i].opt,
                      bad[i].needle);
    }

    /* missing dataset: a file with /q only */
    float v[24 * 17 * 2] = {0};
    char wrong[512];
    snprintf(wrong, sizeof wrong, "%s/wrong.h5", dir);
    struct hx_h5_dataset ds = {"/q", 3, {2, 17, 24, 0}, v, NULL, 0};
    ck_assert_int_eq(hx_h5_write(wrong, &ds, 1), 0);
    snprintf(args, sizeof args, "crf --image %s --prob %s --out %s", png, wrong, out);
    ck_assert_int_eq(hx_run_harness(args, NULL, err), 2);
    ck_assert(file_has(err, "/prob"));

    /* missing files and options */
    snprintf(args, sizeof args, "crf --image %s/none.png --prob %s --out %s", dir, h5, out);
    ck_assert_int_eq(hx_run_harness(args, NULL, err), 2);
    ck_assert(file_has(err, "none.png"));
    snprintf(args, sizeof args, "crf --image %s --out %s", png, out);
    ck_assert_int_eq(hx_run_harness(args, NULL, err), 2);
    ck_assert(file_has(err, "prob"));
    FILE *f = fopen(out, "r");
    ck_assert_msg(f == NULL, "an output was written by a failing run");
    ck_assert_int_eq(hx_run_harness("crf --help", NULL, err), 0);
}
END_TEST

Suite *suite_crf(void)
{
    Suite *s = suite_create("crf");
    TCase *tc = tcase_create("crf");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_pydensecrf_cases);
    tcase_add_test(tc, test_padding_vertices);
    tcase_add_test(tc, test_real_image_crop);
    tcase_add_test(tc, test_exact_twin);
    tcase_add_test(tc, test_api_errors);
    tcase_add_test(tc, test_cli_end_to_end);
    tcase_add_test(tc, test_cli_errors);
    suite_add_tcase(s, tc);
    return s;
}
