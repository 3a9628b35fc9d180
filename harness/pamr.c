/* PAMR: affinity once per image (double precision per pixel, stored as float), then row-wise
 * propagation passes over contiguous rows. See pamr.h for the definition. */
#include "harness/pamr.h"

#include "harness/error.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Scratch budget for the propagation: classes are refined in blocks whose ping-pong copy fits
 * in this many bytes (at least one class per block). */
#define PAMR_BLOCK_BYTES ((size_t)16 << 20)

static inline int clampi(int v, int hi)
{
    return v < 0 ? 0 : v > hi ? hi : v;
}

void hx_pamr_free(struct hx_pamr *p)
{
    if (!p)
        return;
    free(p->aff);
    free(p);
}

int hx_pamr_new(struct hx_pamr **out, const float *img, int c, int h, int w,
                const int *dilations, int n_dilations)
{
    int rc = HX_OK;
    struct hx_pamr *p = NULL;
    int tdy[9 * HX_PAMR_MAX_DILATIONS], tdx[9 * HX_PAMR_MAX_DILATIONS];

    if (!out || !img || !dilations)
        return hx_err(HX_EINVAL, "pamr: NULL argument");
    *out = NULL;
    if (c < 1 || h < 1 || w < 1)
        return hx_err(HX_EINVAL, "pamr: image shape [%d, %d, %d] must be positive", c, h, w);
    if ((size_t)h * (size_t)w > (size_t)INT32_MAX)
        return hx_err(HX_EINVAL, "pamr: image %dx%d is too large", h, w);
    if (n_dilations < 1 || n_dilations > HX_PAMR_MAX_DILATIONS)
        return hx_err(HX_EINVAL, "pamr: %d dilations given, 1..%d supported", n_dilations,
                      HX_PAMR_MAX_DILATIONS);
    for (int i = 0; i < n_dilations; i++)
        if (dilations[i] < 1)
            return hx_err(HX_EINVAL, "pamr: dilation %d is %d, must be >= 1", i, dilations[i]);

    p = calloc(1, sizeof *p);
    if (!p)
        return hx_err(HX_ENOMEM, "pamr: out of memory for the affinity of a %dx%d image", h, w);
    p->h = h;
    p->w = w;
    int nt = 0, nn = 0;
    for (int i = 0; i < n_dilations; i++) {
        int d = dilations[i];
        for (int a = -1; a <= 1; a++)
            for (int b = -1; b <= 1; b++) {
                tdy[nt] = a * d, tdx[nt] = b * d, nt++;
                if (a || b)
                    p->dy[nn] = a * d, p->dx[nn] = b * d, nn++;
            }
    }
    p->n_nb = nn;
    size_t hw = (size_t)h * w;
    p->aff = hx_malloc(hw * nn * sizeof *p->aff, "pamr affinity");
    if (!p->aff) {
        rc = HX_ENOMEM;
        goto done;
    }

    for (int y = 0; y < h; y++) {
        int ty[9 * HX_PAMR_MAX_DILATIONS], ny[8 * HX_PAMR_MAX_DILATIONS];
        for (int t = 0; t < nt; t++)
            ty[t] = clampi(y + tdy[t], h - 1) * w;
        for (int n = 0; n < nn; n++)
            ny[n] = clampi(y + p->dy[n], h - 1) * w;
        for (int x = 0; x < w; x++) {
            double acc[8 * HX_PAMR_MAX_DILATIONS] = {0};
            for (int ch = 0; ch < c; ch++) {
                const float *I = img + ch * hw;
                double v[9 * HX_PAMR_MAX_DILATIONS], mean = 0, var = 0;
                for (int t = 0; t < nt; t++) {
                    v[t] = I[ty[t] + clampi(x + tdx[t], w - 1)];
                    mean += v[t];
                }
                mean /= nt;
                for (int t = 0; t < nt; t++)
                    var += (v[t] - mean) * (v[t] - mean);
                double den = 1e-8 + 0.1 * sqrt(var / (nt - 1));
                double ctr = I[(size_t)y * w + x];
                for (int n = 0; n < nn; n++)
                    acc[n] -= fabs(ctr - I[ny[n] + clampi(x + p->dx[n], w - 1)]) / den;
            }
            double mx = -HUGE_VAL, sum = 0;
            for (int n = 0; n < nn; n++) {
                acc[n] /= c;
                if (acc[n] > mx)
                    mx = acc[n];
            }
            for (int n = 0; n < nn; n++)
                sum += acc[n] = exp(acc[n] - mx);
            for (int n = 0; n < nn; n++)
                p->aff[n * hw + (size_t)y * w + x] = (float)(acc[n] / sum);
        }
    }
    *out = p;
    p = NULL;
done:
    hx_pamr_free(p);
    return rc;
}

/* `iters` steps on nk maps m [nk, h, w], ping-ponging with tmp [nk, h, w]. For each output
 * row, the affinity rows of that row are reused across the nk maps. */
static void propagate(const struct hx_pamr *p, float *m, int nk, int iters, float *tmp)
{
    const int h = p->h, w = p->w;
    const size_t hw = (size_t)h * w;
    float *src = m, *dst = tmp;
    for (int it = 0; it < iters; it++) {
        for (int y = 0; y < h; y++) {
            for (int k = 0; k < nk; k++) {
                float *restrict o = dst + k * hw + (size_t)y * w;
                const float *plane = src + k * hw;
                memset(o, 0, (size_t)w * sizeof *o);
                for (int n = 0; n < p->n_nb; n++) {
                    const float *restrict a = p->aff + n * hw + (size_t)y * w;
                    const float *restrict s = plane + (size_t)clampi(y + p->dy[n], h - 1) * w;
                    int dx = p->dx[n];
                    /* x < lo reads column 0, x >= hi reads column w-1, between: x + dx */
                    int lo = dx < 0 ? (-dx < w ? -dx : w) : 0;
                    int hi = dx > 0 ? (w - dx > 0 ? w - dx : 0) : w;
                    int x = 0;
                    for (; x < lo; x++)
                        o[x] += a[x] * s[0];
                    for (; x < hi; x++)
                        o[x] += a[x] * s[x + dx];
                    for (; x < w; x++)
                        o[x] += a[x] * s[w - 1];
                }
            }
        }
        float *t = src;
        src = dst;
        dst = t;
    }
    if (src != m)
        memcpy(m, src, (size_t)nk * hw * sizeof *m);
}

int hx_pamr_apply(const struct hx_pamr *p, float *masks, int k, int iters)
{
    if (!p || (!masks && k > 0))
        return hx_err(HX_EINVAL, "pamr: NULL argument");
    if (k < 0 || iters < 0)
        return hx_err(HX_EINVAL, "pamr: %d masks and %d steps: both must be >= 0", k, iters);
    if (k == 0 || iters == 0)
        return HX_OK;
    size_t hw = (size_t)p->h * p->w;
    size_t fit = PAMR_BLOCK_BYTES / (hw * sizeof(float));
    int block = fit < 1 ? 1 : fit > (size_t)k ? k : (int)fit;
    float *tmp = hx_malloc((size_t)block * hw * sizeof *tmp, "pamr scratch");
    if (!tmp)
        return HX_ENOMEM;
    for (int k0 = 0; k0 < k; k0 += block) {
        int nk = k - k0 < block ? k - k0 : block;
        propagate(p, masks + (size_t)k0 * hw, nk, iters, tmp);
    }
    free(tmp);
    return HX_OK;
}

int hx_pamr(const float *img, int c, int h, int w, float *masks, int k,
            const struct hx_pamr_opts *opts)
{
    struct hx_pamr *p = NULL;
    if (!opts)
        return hx_err(HX_EINVAL, "pamr: NULL options");
    int rc = hx_pamr_new(&p, img, c, h, w, opts->dilations, opts->n_dilations);
    if (rc)
        return rc;
    rc = hx_pamr_apply(p, masks, k, opts->iters);
    hx_pamr_free(p);
    return rc;
}
