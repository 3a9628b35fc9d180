/* PAMR: affinity once per image (double precision per pixel, stored as float), then row-wise
 * propagation passes over contiguous rows. See pamr.h for the definition. */
#include "harness/pamr.h"

#include "harness/error.h"

#include <math.h>
#include <pthread.h>
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

typedef float v4f __attribute__((vector_size(16)));

static inline v4f load4(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* One output row: o[x] = sum_n a_n[x] * s_n[clamp(x + dx_n)], summed in neighbour order.
 * Columns whose every neighbour is inside the row run 16 at a time with the sums in
 * registers; the few columns within the largest dilation of either end clamp per tap. */
static void row_pass(float *restrict o, int w, int n_nb, const float *const *a,
                     const float *const *s, const int *dx, int maxd)
{
    int xl = maxd < w ? maxd : w;
    int xr = w - maxd > xl ? w - maxd : xl;
    for (int x = 0; x < w; x++) {
        if (x == xl)
            x = xr;
        if (x >= w)
            break;
        float acc = 0;
        for (int n = 0; n < n_nb; n++)
            acc += a[n][x] * s[n][clampi(x + dx[n], w - 1)];
        o[x] = acc;
    }
    int x = xl;
    for (; x + 16 <= xr; x += 16) {
        v4f c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};
        for (int n = 0; n < n_nb; n++) {
            const float *an = a[n] + x, *sn = s[n] + x + dx[n];
            c0 += load4(an) * load4(sn);
            c1 += load4(an + 4) * load4(sn + 4);
            c2 += load4(an + 8) * load4(sn + 8);
            c3 += load4(an + 12) * load4(sn + 12);
        }
        memcpy(o + x, &c0, sizeof c0);
        memcpy(o + x + 4, &c1, sizeof c1);
        memcpy(o + x + 8, &c2, sizeof c2);
        memcpy(o + x + 12, &c3, sizeof c3);
    }
    for (; x < xr; x++) {
        float acc = 0;
        for (int n = 0; n < n_nb; n++)
            acc += a[n][x] * s[n][x + dx[n]];
        o[x] = acc;
    }
}

/* `iters` steps on nk maps m [nk, h, w], ping-ponging with tmp [nk, h, w]. For each output
 * row, the affinity rows of that row are reused across the nk maps. */
static void propagate(const struct hx_pamr *p, float *m, int nk, int iters, float *tmp)
{
    const int h = p->h, w = p->w;
    const size_t hw = (size_t)h * w;
    const float *a[8 * HX_PAMR_MAX_DILATIONS], *s[8 * HX_PAMR_MAX_DILATIONS];
    int maxd = 0;
    for (int n = 0; n < p->n_nb; n++)
        maxd = p->dx[n] > maxd ? p->dx[n] : maxd;
    float *src = m, *dst = tmp;
    for (int it = 0; it < iters; it++) {
        for (int y = 0; y < h; y++) {
            for (int n = 0; n < p->n_nb; n++)
                a[n] = p->aff + n * hw + (size_t)y * w;
            for (int k = 0; k < nk; k++) {
                for (int n = 0; n < p->n_nb; n++)
                    s[n] = src + k * hw + (size_t)clampi(y + p->dy[n], h - 1) * w;
                row_pass(dst + k * hw + (size_t)y * w, w, p->n_nb, a, s, p->dx, maxd);
            }
        }
        float *t = src;
        src = dst;
        dst = t;
    }
    if (src != m)
        memcpy(m, src, (size_t)nk * hw * sizeof *m);
}

struct apply_job {
    const struct hx_pamr *p;
    float *masks; /* first map of this job's classes */
    int nk, block, iters;
    float *tmp;   /* [block, h, w] */
};

static void *apply_job_run(void *arg)
{
    struct apply_job *j = arg;
    size_t hw = (size_t)j->p->h * j->p->w;
    for (int k0 = 0; k0 < j->nk; k0 += j->block) {
        int nk = j->nk - k0 < j->block ? j->nk - k0 : j->block;
        propagate(j->p, j->masks + (size_t)k0 * hw, nk, j->iters, j->tmp);
    }
    return NULL;
}

int hx_pamr_apply_mt(const struct hx_pamr *p, float *masks, int k, int iters, int threads)
{
    struct apply_job jobs[HX_PAMR_MAX_THREADS];
    pthread_t tid[HX_PAMR_MAX_THREADS];
    int started[HX_PAMR_MAX_THREADS] = {0};
    float *tmp = NULL;

    if (!p || (!masks && k > 0))
        return hx_err(HX_EINVAL, "pamr: NULL argument");
    if (k < 0 || iters < 0)
        return hx_err(HX_EINVAL, "pamr: %d masks and %d steps: both must be >= 0", k, iters);
    if (k == 0 || iters == 0)
        return HX_OK;
    int nt = threads < 1 ? 1 : threads > HX_PAMR_MAX_THREADS ? HX_PAMR_MAX_THREADS : threads;
    if (nt > k)
        nt = k;
    size_t hw = (size_t)p->h * p->w;
    size_t fit = PAMR_BLOCK_BYTES / (hw * sizeof(float));
    int per = (k + nt - 1) / nt;
    int block = fit < 1 ? 1 : fit > (size_t)per ? per : (int)fit;
    tmp = hx_malloc((size_t)nt * block * hw * sizeof *tmp, "pamr scratch");
    if (!tmp)
        return HX_ENOMEM;
    for (int t = 0; t < nt; t++) {
        int a = (int)((long long)k * t / nt), b = (int)((long long)k * (t + 1) / nt);
        jobs[t] = (struct apply_job){p, masks + (size_t)a * hw, b - a, block, iters,
                                     tmp + (size_t)t * block * hw};
    }
    /* job 0 runs here; a thread that cannot be started runs here too */
    for (int t = 1; t < nt; t++)
        started[t] = pthread_create(&tid[t], NULL, apply_job_run, &jobs[t]) == 0;
    apply_job_run(&jobs[0]);
    for (int t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            apply_job_run(&jobs[t]);
    }
    free(tmp);
    return HX_OK;
}

int hx_pamr_apply(const struct hx_pamr *p, float *masks, int k, int iters)
{
    return hx_pamr_apply_mt(p, masks, k, iters, 1);
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
    rc = hx_pamr_apply_mt(p, masks, k, opts->iters, opts->threads);
    hx_pamr_free(p);
    return rc;
}
