/* Every kernel in harness/nn.c against a naive twin written straight from its definition,
 * in double precision. */
#include "harness/nn.h"
#include "tests/test_util.h"

#include <math.h>
#include <stdlib.h>

static unsigned rng = 12345;
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

static void naive_linear(const float *x, int n, int in, const float *W, const float *b, int out,
                         float *y)
{
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0;
            for (int k = 0; k < in; k++)
                s += (double)x[i * in + k] * W[o * in + k];
            y[i * out + o] = (float)s;
        }
}

START_TEST(linear_matches_naive)
{
    int n = 7, in = 33, out = 19;
    float *x = randv(n * in, 1), *W = randv(out * in, 0.5f), *b = randv(out, 1);
    float y[7 * 19], r[7 * 19], acc[7 * 19];
    hx_linear(x, n, in, W, b, out, y);
    naive_linear(x, n, in, W, b, out, r);
    hx_assert_close("linear", y, r, n * out, 1e-5, 1e-6);
    hx_linear(x, n, in, W, NULL, out, y);
    naive_linear(x, n, in, W, NULL, out, r);
    hx_assert_close("linear(no bias)", y, r, n * out, 1e-5, 1e-6);
    for (int i = 0; i < n * out; i++)
        acc[i] = 1.5f;
    hx_linear_acc(x, n, in, W, b, out, acc);
    naive_linear(x, n, in, W, b, out, r);
    for (int i = 0; i < n * out; i++)
        r[i] += 1.5f;
    hx_assert_close("linear_acc", acc, r, n * out, 1e-5, 1e-6);
    free(x), free(W), free(b);
}
END_TEST

START_TEST(layernorm_matches_naive)
{
    int n = 5, d = 48;
    float *x = randv(n * d, 3), *g = randv(d, 1), *b = randv(d, 1);
    for (int i = 0; i < d; i++)
        x[i] += 100; /* a large mean must not cost precision */
    float y[5 * 48], r[5 * 48];
    hx_layernorm(x, n, d, g, b, 1e-5f, y);
    for (int i = 0; i < n; i++) {
        double m = 0, v = 0;
        for (int j = 0; j < d; j++)
            m += x[i * d + j];
        m /= d;
        for (int j = 0; j < d; j++)
            v += (x[i * d + j] - m) * (x[i * d + j] - m);
        v /= d;
        for (int j = 0; j < d; j++)
            r[i * d + j] = (float)((x[i * d + j] - m) / sqrt(v + 1e-5) * g[j] + b[j]);
    }
    hx_assert_close("layernorm", y, r, n * d, 1e-5, 1e-5);
    hx_layernorm(x, n, d, g, b, 1e-5f, x); /* in place */
    hx_assert_close("layernorm(in place)", x, r, n * d, 1e-5, 1e-5);
    free(x), free(g), free(b);
}
END_TEST

START_TEST(activations_match_definitions)
{
    float x[201], a[201], b[201], c[201], r[201];
    for (int i = 0; i < 201; i++)
        x[i] = a[i] = b[i] = c[i] = (i - 100) * 0.08f;
    hx_quick_gelu(a, 201);
    hx_gelu_erf(b, 201);
    hx_gelu_tanh(c, 201);
    for (int i = 0; i < 201; i++)
        r[i] = (float)(x[i] / (1 + exp(-1.702 * x[i])));
    hx_assert_close("quick_gelu", a, r, 201, 1e-5, 1e-7);
    for (int i = 0; i < 201; i++)
        r[i] = (float)(0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0))));
    hx_assert_close("gelu_erf", b, r, 201, 1e-5, 1e-7);
    for (int i = 0; i < 201; i++)
        r[i] = (float)(0.5 * x[i] *
                       (1 + tanh(sqrt(2 / M_PI) * (x[i] + 0.044715 * pow(x[i], 3)))));
    hx_assert_close("gelu_tanh", c, r, 201, 1e-5, 1e-7);
}
END_TEST

START_TEST(fast_exp_is_accurate)
{
    double worst = 0;
    for (float x = -87.0f; x < 88.0f; x += 0.0137f) {
        double e = exp((double)x), r = fabs(hx_expf(x) - e) / e;
        worst = r > worst ? r : worst;
    }
    ck_assert_msg(worst < 3e-7, "max relative error %g", worst);
    ck_assert(hx_expf(-INFINITY) == 0.0f);
    ck_assert(hx_expf(-100.0f) == 0.0f);
    ck_assert(hx_expf(0.0f) == 1.0f);
    ck_assert(isfinite(hx_expf(1000.0f)));
}
END_TEST

/* The sixteen-lane exp gives the scalar one's bits: a dense sweep over the range where the
 * polynomial and the scaling matter, both clamps, zero of either sign and infinities. */
START_TEST(vector_exp_equals_scalar)
{
    float x[HX_LANES], y[HX_LANES];
    const float special[] = {-INFINITY, -1000.0f, -87.31f, -87.3f, -87.29f, -0.0f, 0.0f,
                             1e-30f, 88.29f, 88.3f, 88.31f, 1000.0f, INFINITY, -1e-7f, 0.5f, -0.5f};
    long n = 0;
    for (int pass = 0; pass < 2; pass++)
        for (float a = -95.0f; a < 95.0f; a += HX_LANES * 0.00037f) {
            for (int l = 0; l < HX_LANES; l++)
                x[l] = pass ? special[l] : a + l * 0.00037f;
            hx_vstore(y, hx_fast_expf_v(hx_vload(x)));
            for (int l = 0; l < HX_LANES; l++, n++) {
                float want = hx_expf(x[l]);
                ck_assert_msg(memcmp(&y[l], &want, 4) == 0, "exp(%a): vector %a, scalar %a",
                              x[l], y[l], want);
            }
            if (pass)
                break;
        }
    ck_assert_int_gt(n, 500000);
}
END_TEST

START_TEST(softmax_matches_naive)
{
    int rows = 4, cols = 37; /* not a multiple of the 8 partial sums */
    float *x = randv(rows * cols, 20), r[4 * 37];
    x[3] = -INFINITY;
    for (int i = 0; i < rows; i++) {
        double m = -INFINITY, s = 0;
        for (int j = 0; j < cols; j++)
            m = fmax(m, x[i * cols + j]);
        for (int j = 0; j < cols; j++)
            s += exp(x[i * cols + j] - m);
        for (int j = 0; j < cols; j++)
            r[i * cols + j] = (float)(exp(x[i * cols + j] - m) / s);
    }
    hx_softmax_rows(x, rows, cols);
    hx_assert_close("softmax", x, r, rows * cols, 1e-5, 1e-8);
    ck_assert(x[3] == 0.0f);
    free(x);
}
END_TEST

/* Naive attention: loops over heads, queries and keys. */
static void naive_attention(const float *q, const float *k, const float *v, int ld, int T,
                            int heads, int hd, float scale, const float *bias, int causal,
                            float *out, float *probs)
{
    double *p = malloc(sizeof(double) * T);
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < T; i++) {
            double m = -INFINITY, s = 0;
            for (int j = 0; j < T; j++) {
                double d = 0;
                for (int c = 0; c < hd; c++)
                    d += (double)q[i * ld + h * hd + c] * k[j * ld + h * hd + c];
                d = d * scale + (bias ? bias[i * T + j] : 0);
                if (causal && j > i)
                    d = -INFINITY;
                p[j] = d;
                m = d > m ? d : m;
            }
            for (int j = 0; j < T; j++)
                s += (p[j] = exp(p[j] - m));
            for (int c = 0; c < hd; c++) {
                double o = 0;
                for (int j = 0; j < T; j++)
                    o += p[j] / s * v[j * ld + h * hd + c];
                out[i * heads * hd + h * hd + c] = (float)o;
            }
            for (int j = 0; j < T; j++)
                probs[((size_t)h * T + i) * T + j] = (float)(p[j] / s);
        }
    free(p);
}

static void check_attention(int causal, int with_bias)
{
    int T = 13, heads = 3, hd = 8, D = heads * hd, ld = 3 * D;
    float *qkv = randv(T * ld, 1), *bias = with_bias ? randv(T * T, 2) : NULL;
    float *out = malloc(sizeof(float) * T * D), *ref = malloc(sizeof(float) * T * D);
    float *pr = malloc(sizeof(float) * heads * T * T), *rp = malloc(sizeof(float) * heads * T * T);
    float *scores = malloc(sizeof(float) * T * T);
    float scale = 1 / sqrtf((float)hd);
    hx_attention(qkv, qkv + D, qkv + 2 * D, ld, T, heads, hd, scale, bias, causal, scores, out,
                 pr);
    naive_attention(qkv, qkv + D, qkv + 2 * D, ld, T, heads, hd, scale, bias, causal, ref, rp);
    hx_assert_close("attention out", out, ref, T * D, 1e-5, 1e-6);
    hx_assert_close("attention probs", pr, rp, heads * T * T, 1e-5, 1e-7);
    /* without keeping probabilities: same output */
    hx_attention(qkv, qkv + D, qkv + 2 * D, ld, T, heads, hd, scale, bias, causal, scores, out,
                 NULL);
    hx_assert_close("attention out (no probs)", out, ref, T * D, 1e-5, 1e-6);
    free(qkv), free(bias), free(out), free(ref), free(pr), free(rp), free(scores);
}

START_TEST(attention_matches_naive) { check_attention(0, 0); }
END_TEST
START_TEST(causal_attention_matches_naive) { check_attention(1, 0); }
END_TEST
START_TEST(biased_attention_matches_naive) { check_attention(0, 1); }
END_TEST

START_TEST(patch_embed_matches_direct_convolution)
{
    int C = 3, H = 20, W = 27, P = 4, O = 5, gh = H / P, gw = W / P; /* 27: partial column */
    float *x = randv(C * H * W, 1), *w = randv(O * C * P * P, 0.3f), *b = randv(O, 1);
    float *cols = malloc(sizeof(float) * gh * gw * C * P * P);
    float *y = malloc(sizeof(float) * gh * gw * O), *r = malloc(sizeof(float) * gh * gw * O);
    hx_patch_embed(x, C, H, W, P, w, b, O, cols, y);
    for (int o = 0; o < O; o++)
        for (int gy = 0; gy < gh; gy++)
            for (int gx = 0; gx < gw; gx++) {
                double s = b[o];
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < P; ky++)
                        for (int kx = 0; kx < P; kx++)
                            s += (double)w[((o * C + c) * P + ky) * P + kx] *
                                 x[(c * H + gy * P + ky) * W + gx * P + kx];
                r[(gy * gw + gx) * O + o] = (float)s;
            }
    hx_assert_close("patch_embed", y, r, gh * gw * O, 1e-5, 1e-6);
    free(x), free(w), free(b), free(cols), free(y), free(r);
}
END_TEST

Suite *suite_nn(void)
{
    Suite *s = suite_create("nn");
    TCase *tc = tcase_create("kernels");
    tcase_add_test(tc, linear_matches_naive);
    tcase_add_test(tc, layernorm_matches_naive);
    tcase_add_test(tc, activations_match_definitions);
    tcase_add_test(tc, fast_exp_is_accurate);
    tcase_add_test(tc, vector_exp_equals_scalar);
    tcase_add_test(tc, softmax_matches_naive);
    tcase_add_test(tc, attention_matches_naive);
    tcase_add_test(tc, causal_attention_matches_naive);
    tcase_add_test(tc, biased_attention_matches_naive);
    tcase_add_test(tc, patch_embed_matches_direct_convolution);
    suite_add_tcase(s, tc);
    return s;
}
