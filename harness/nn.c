#include "harness/nn.h"
#include "harness/simd.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>


static void fill_bias(float *y, int n, int out, const float *b)
{
    for (int i = 0; i < n; i++)
        memcpy(y + (size_t)i * out, b, sizeof(float) * out);
}

void hx_linear(const float *x, int n, int in, const float *W, const float *b, int out, float *y)
{
    if (b)
        fill_bias(y, n, out, b);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, W, in,
                b ? 1.0f : 0.0f, y, out);
}

void hx_linear_acc(const float *x, int n, int in, const float *W, const float *b, int out,
                   float *y)
{
    if (b)
        for (int i = 0; i < n; i++) {
            float *yi = y + (size_t)i * out;
            for (int j = 0; j < out; j++)
                yi[j] += b[j];
        }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, W, in, 1.0f,
                y, out);
}

HX_CLONES void hx_layernorm(const float *x, int n, int d, const float *gamma, const float *beta, float eps,
                  float *y)
{
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        float *yi = y + (size_t)i * d;
        /* Two passes in float with a double accumulator: PyTorch's CPU kernel uses a
         * float Welford; double sums keep us within 1e-6 of it for any d we meet. */
        double s = 0;
        for (int j = 0; j < d; j++)
            s += xi[j];
        float mean = (float)(s / d);
        double v = 0;
        for (int j = 0; j < d; j++) {
            float c = xi[j] - mean;
            v += (double)c * c;
        }
        float rstd = (float)(1.0 / sqrt(v / d + eps));
        for (int j = 0; j < d; j++)
            yi[j] = (xi[j] - mean) * rstd * gamma[j] + beta[j];
    }
}

float hx_expf(float x) { return hx_fast_expf(x); }

HX_CLONES void hx_quick_gelu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] / (1.0f + hx_fast_expf(-1.702f * x[i]));
}

void hx_gelu_erf(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void hx_gelu_tanh(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    }
}

/* Sixteen lane-wise partial results per reduction: vectorisable and with a fixed order, so
 * the result does not depend on which clone runs. */
#define LANES 16

HX_CLONES void hx_softmax_rows(float *x, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * cols;
        float mx[LANES], sum[LANES];
        for (int l = 0; l < LANES; l++)
            mx[l] = -INFINITY, sum[l] = 0;
        int body = cols / LANES * LANES;
        for (int j = 0; j < body; j += LANES)
            for (int l = 0; l < LANES; l++)
                mx[l] = xr[j + l] > mx[l] ? xr[j + l] : mx[l];
        float m = -INFINITY;
        for (int j = body; j < cols; j++)
            m = xr[j] > m ? xr[j] : m;
        for (int l = 0; l < LANES; l++)
            m = mx[l] > m ? mx[l] : m;
        for (int j = 0; j < cols; j++)
            xr[j] = hx_fast_expf(xr[j] - m);
        for (int j = 0; j < body; j += LANES)
            for (int l = 0; l < LANES; l++)
                sum[l] += xr[j + l];
        float s = 0;
        for (int j = body; j < cols; j++)
            s += xr[j];
        for (int l = 0; l < LANES; l++)
            s += sum[l];
        float inv = 1.0f / s;
        for (int j = 0; j < cols; j++)
            xr[j] *= inv;
    }
}

void hx_attention(const float *q, const float *k, const float *v, int ld, int T, int heads,
                  int hd, float scale, const float *bias, int causal, float *scores, float *out,
                  float *probs)
{
    int D = heads * hd;
    for (int h = 0; h < heads; h++) {
        float *S = probs ? probs + (size_t)h * T * T : scores;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q + h * hd, ld,
                    k + h * hd, ld, 0.0f, S, T);
        if (bias)
            for (size_t i = 0; i < (size_t)T * T; i++)
                S[i] += bias[i];
        if (causal)
            for (int i = 0; i < T; i++)
                for (int j = i + 1; j < T; j++)
                    S[(size_t)i * T + j] = -INFINITY;
        hx_softmax_rows(S, T, T);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, S, T, v + h * hd,
                    ld, 0.0f, out + h * hd, D);
    }
}

void hx_patch_embed(const float *x, int C, int H, int W, int P, const float *weight,
                    const float *bias, int O, float *cols, float *y)
{
    int gh = H / P, gw = W / P, K = C * P * P;
    for (int r = 0; r < gh; r++)
        for (int c = 0; c < gw; c++) {
            float *col = cols + ((size_t)r * gw + c) * K;
            for (int ch = 0; ch < C; ch++)
                for (int ky = 0; ky < P; ky++) {
                    const float *src = x + ((size_t)ch * H + r * P + ky) * W + c * P;
                    memcpy(col + (ch * P + ky) * P, src, sizeof(float) * P);
                }
        }
    hx_linear(cols, gh * gw, K, weight, bias, O, y);
}

void hx_set_threads(int n)
{
    if (n > 0)
        openblas_set_num_threads(n);
}

int hx_get_threads(void) { return openblas_get_num_threads(); }
