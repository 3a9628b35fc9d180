#include "harness/score.h"

#include "harness/simd.h"

#include <cblas.h>
#include <math.h>
#include <stddef.h>

void hx_score_cos(const float *tok, int n, const float *bank, int m, int e, float *cos)
{
    if (n <= 0 || m <= 0)
        return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, e, 1.0f, tok, e, bank, e, 0.0f,
                cos, m);
}

/* The sum of squares in double over eight interleaved partial sums (a fixed order, so every
 * clone gives the same result): a single running sum is one long chain of dependent adds,
 * bound by the add latency rather than its throughput. */
HX_CLONES static double row_inv_norm(const float *x, int cols)
{
    double part[8] = {0};
    int body = cols / 8 * 8;
    for (int j = 0; j < body; j += 8)
        for (int l = 0; l < 8; l++)
            part[l] += (double)x[j + l] * x[j + l];
    double s = ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
    for (int j = body; j < cols; j++)
        s += (double)x[j] * x[j];
    double nrm = sqrt(s);
    return 1.0 / (nrm > 1e-12 ? nrm : 1e-12);
}

HX_CLONES void hx_l2_normalize_rows_to(const float *x, int rows, int cols, float *out)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * cols;
        float inv = (float)row_inv_norm(xr, cols), *o = out + (size_t)r * cols;
        for (int j = 0; j < cols; j++)
            o[j] = xr[j] * inv;
    }
}

void hx_l2_normalize_rows(float *x, int rows, int cols) { hx_l2_normalize_rows_to(x, rows, cols, x); }

void hx_template_mean(const float *emb, int n, int t, int e, float *out)
{
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * e;
        for (int j = 0; j < e; j++)
            o[j] = 0;
        for (int a = 0; a < t; a++) {
            const float *x = emb + ((size_t)i * t + a) * e;
            float w = (float)row_inv_norm(x, e);
            for (int j = 0; j < e; j++)
                o[j] += w * x[j];
        }
        /* the 1/t of the mean cancels in the final normalisation */
        hx_l2_normalize_rows(o, 1, e);
    }
}
