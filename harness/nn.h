/* Neural-network operations shared by the backends.
 *
 * Tensors are row-major float32. Every matrix product goes through OpenBLAS cblas_sgemm; the
 * element-wise passes are single fused loops over contiguous rows. Each function here has a
 * naive twin in tests/test_nn.c that a test compares against.
 *
 * GEMM convention (used everywhere in the project): a weight matrix W is stored [out, in] as
 * in PyTorch's nn.Linear, and y[n, out] = x[n, in] @ W^T + b, i.e.
 * cblas_sgemm(RowMajor, NoTrans, Trans, n, out, in, 1, x, in, W, in, beta, y, out). */
#ifndef HX_NN_H
#define HX_NN_H

#include <stddef.h>
#include <stdint.h>

#include "harness/simd.h"

/* y[n, out] = x[n, in] @ W[out, in]^T + b[out] (b may be NULL). x and y must not overlap. */
void hx_linear(const float *x, int n, int in, const float *W, const float *b, int out, float *y);

/* y[n, out] += x[n, in] @ W^T + b: the residual form (a linear layer added into y). */
void hx_linear_acc(const float *x, int n, int in, const float *W, const float *b, int out,
                   float *y);

/* Row-wise LayerNorm over d (biased variance), affine. y may equal x. */
void hx_layernorm(const float *x, int n, int d, const float *gamma, const float *beta, float eps,
                  float *y);

/* Activations, in place over n values. */
void hx_quick_gelu(float *x, size_t n); /* x * sigmoid(1.702 x) */
void hx_gelu_erf(float *x, size_t n);   /* 0.5 x (1 + erf(x / sqrt 2)) */
void hx_gelu_tanh(float *x, size_t n);  /* 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))) */

/* exp(x) to 2e-7 relative error, vectorisable; exactly 0 below -87.3 (and for -INFINITY).
 * hx_fast_expf is the same function inline, for loops that fuse it with other work. */
float hx_expf(float x);
/* n = round(x log2 e), r = x - n ln 2 (two-part constant),
 * e^r by a degree-6 Taylor/minimax polynomial on |r| <= ln2/2, scaled by 2^n through the
 * exponent bits. Max relative error 2e-7 over [-87, 88]; below -87.3 (and -INFINITY) gives
 * exactly 0; above 88.3 it saturates at e^88.3 (finite). */
static inline float hx_fast_expf(float x)
{
    float xc = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    /* round to nearest through the 2^23 + 2^22 shifter: vectorises, unlike roundf */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693145751953125f - n * 1.428606765330187e-06f;
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union {
        int32_t i;
        float f;
    } scale = {.i = ((int32_t)n + 127) << 23};
    float e = p * scale.f;
    return x < -87.3f ? 0.0f : e;
}

/* hx_fast_expf on sixteen lanes, bit for bit. */
static inline hx_vf hx_fast_expf_v(hx_vf x)
{
    const hx_vf zero = {0};
    hx_vi under = x < -87.3f;
    hx_vf xc = hx_vsel(under, zero - 87.3f, hx_vsel(x > 88.3f, zero + 88.3f, x));
    hx_vf n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    hx_vf r = xc - n * 0.693145751953125f - n * 1.428606765330187e-06f;
    hx_vf p = zero + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    hx_vi scale = (__builtin_convertvector(n, hx_vi) + 127) << 23;
    return hx_vsel(under, zero, p * (hx_vf)scale);
}

/* Softmax over each row of x[rows, cols], in place; -INFINITY entries get weight 0. */
void hx_softmax_rows(float *x, int rows, int cols);

/* Multi-head scaled dot-product attention.
 *   q, k, v: [T, ld] row-major with head h at columns h*hd .. h*hd+hd-1 (ld >= heads*hd;
 *            for a fused qkv buffer pass qkv, qkv + D, qkv + 2D with ld = 3D).
 *   out:     [T, heads*hd], head h at columns h*hd.
 *   scores:  workspace of T*T floats.
 *   bias:    NULL or [T, T] added to every head's scaled scores (e.g. a spatial prior).
 *   causal:  mask keys j > i.
 *   probs:   NULL, or [heads, T, T] receiving each head's softmax weights.
 * Per head: out_h = softmax(scale * q_h k_h^T + bias) v_h, with two GEMMs. */
void hx_attention(const float *q, const float *k, const float *v, int ld, int T, int heads,
                  int hd, float scale, const float *bias, int causal, float *scores, float *out,
                  float *probs);

/* 2-D convolution with stride == kernel (patch embedding), no padding:
 *   x [C, H, W] -> y [(H/P)*(W/P), O] row-major over the output grid (token layout),
 *   W [O, C, P, P], bias [O] or NULL; partial patches at the right/bottom are dropped.
 *   cols: workspace of (H/P)*(W/P)*C*P*P floats (im2col). */
void hx_patch_embed(const float *x, int C, int H, int W, int P, const float *weight,
                    const float *bias, int O, float *cols, float *y);

/* Set or query the number of threads OpenBLAS uses (0 = leave as is). */
void hx_set_threads(int n);
int hx_get_threads(void);

#endif
