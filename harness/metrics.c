#include "harness/metrics.h"
#include "harness/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct hx_metrics {
    int num_classes, ignore_index;
    int64_t *tot_i, *tot_p, *tot_l; /* [C] */
    /* per image, compact: image k owns entries start[k] .. start[k+1]-1 */
    size_t nimg, cap_start;
    size_t *start;                   /* [nimg + 1], capacity cap_start */
    size_t nent, cap_ent;
    int32_t *cls, *ei, *ep, *el;     /* [nent] */
    int64_t *scratch;                /* [3C] per-image histograms */
};

int hx_metrics_new(struct hx_metrics **out, int num_classes, int ignore_index)
{
    *out = NULL;
    if (num_classes < 1 || num_classes > 256)
        return hx_err(HX_EINVAL, "metrics: num_classes must be in 1..256, got %d", num_classes);
    struct hx_metrics *m = hx_calloc(1, sizeof *m, "metrics");
    if (!m)
        return HX_ENOMEM;
    m->num_classes = num_classes;
    m->ignore_index = ignore_index;
    m->tot_i = hx_calloc((size_t)num_classes * 3, sizeof(int64_t), "metric totals");
    m->scratch = hx_calloc((size_t)num_classes * 3, sizeof(int64_t), "metric histograms");
    m->start = hx_calloc(1, sizeof(size_t), "metric image index");
    if (!m->tot_i || !m->scratch || !m->start) {
        hx_metrics_free(m);
        return HX_ENOMEM;
    }
    m->tot_p = m->tot_i + num_classes;
    m->tot_l = m->tot_p + num_classes;
    m->cap_start = 1;
    *out = m;
    return 0;
}

void hx_metrics_free(struct hx_metrics *m)
{
    if (!m)
        return;
    free(m->tot_i);
    free(m->scratch);
    free(m->start);
    free(m->cls);
    free(m->ei);
    free(m->ep);
    free(m->el);
    free(m);
}

int hx_metrics_num_classes(const struct hx_metrics *m) { return m->num_classes; }
size_t hx_metrics_num_images(const struct hx_metrics *m) { return m->nimg; }

static size_t next_cap(size_t cap, size_t need)
{
    size_t ncap = cap ? cap : 64;
    while (ncap < need)
        ncap *= 2;
    return ncap;
}

/* Make room for `need` per-image entries in all four entry arrays. On failure the arrays
 * that did grow keep their larger buffers and cap_ent keeps the old (smaller) value. */
static int reserve_entries(struct hx_metrics *m, size_t need)
{
    if (need <= m->cap_ent)
        return 0;
    size_t ncap = next_cap(m->cap_ent, need);
    int32_t **arrs[4] = {&m->cls, &m->ei, &m->ep, &m->el};
    for (int k = 0; k < 4; k++) {
        int32_t *np = realloc(*arrs[k], ncap * sizeof(int32_t));
        if (!np)
            return hx_err(HX_ENOMEM, "out of memory growing the per-image metric counts");
        *arrs[k] = np;
    }
    m->cap_ent = ncap;
    return 0;
}

/* Make room for `need` entries of the per-image start index. */
static int reserve_starts(struct hx_metrics *m, size_t need)
{
    if (need <= m->cap_start)
        return 0;
    size_t ncap = next_cap(m->cap_start, need);
    size_t *np = realloc(m->start, ncap * sizeof(size_t));
    if (!np)
        return hx_err(HX_ENOMEM, "out of memory growing the metric image index");
    m->start = np;
    m->cap_start = ncap;
    return 0;
}

int hx_metrics_append(struct hx_metrics *dst, const struct hx_metrics *src)
{
    if (dst->num_classes != src->num_classes || dst->ignore_index != src->ignore_index)
        return hx_err(HX_EINVAL, "metrics: appending %d classes (ignore %d) to %d (ignore %d)",
                      src->num_classes, src->ignore_index, dst->num_classes, dst->ignore_index);
    int rc = reserve_starts(dst, dst->nimg + src->nimg + 1);
    if (!rc)
        rc = reserve_entries(dst, dst->nent + src->nent);
    if (rc)
        return rc;
    size_t e = dst->nent;
    if (src->nent) { /* an empty src has no arrays yet */
        memcpy(dst->cls + e, src->cls, src->nent * sizeof(int32_t));
        memcpy(dst->ei + e, src->ei, src->nent * sizeof(int32_t));
        memcpy(dst->ep + e, src->ep, src->nent * sizeof(int32_t));
        memcpy(dst->el + e, src->el, src->nent * sizeof(int32_t));
    }
    for (size_t k = 1; k <= src->nimg; k++)
        dst->start[dst->nimg + k] = e + src->start[k];
    for (int c = 0; c < dst->num_classes; c++) {
        dst->tot_i[c] += src->tot_i[c];
        dst->tot_p[c] += src->tot_p[c];
        dst->tot_l[c] += src->tot_l[c];
    }
    dst->nent += src->nent;
    dst->nimg += src->nimg;
    return 0;
}

int hx_metrics_add(struct hx_metrics *m, const uint8_t *pred, const uint8_t *label, size_t n)
{
    const int C = m->num_classes;
    if (n > (size_t)INT32_MAX)
        return hx_err(HX_EINVAL, "metrics: an image of %zu pixels is too large", n);
    int64_t *hi = m->scratch, *hp = hi + C, *hl = hp + C;
    memset(m->scratch, 0, sizeof(int64_t) * 3 * (size_t)C);
    const int ign = m->ignore_index;
    for (size_t k = 0; k < n; k++) {
        int l = label[k], p = pred[k];
        if (l == ign)
            continue;
        if (p < C)
            hp[p]++;
        if (l < C) {
            hl[l]++;
            if (p == l)
                hi[l]++;
        }
    }
    int present = 0;
    for (int c = 0; c < C; c++)
        present += hp[c] || hl[c];
    int rc = reserve_starts(m, m->nimg + 2);
    if (!rc)
        rc = reserve_entries(m, m->nent + (size_t)present);
    if (rc)
        return rc;
    size_t e = m->nent;
    for (int c = 0; c < C; c++) {
        if (!hp[c] && !hl[c])
            continue;
        m->cls[e] = c;
        m->ei[e] = (int32_t)hi[c];
        m->ep[e] = (int32_t)hp[c];
        m->el[e] = (int32_t)hl[c];
        m->tot_i[c] += hi[c];
        m->tot_p[c] += hp[c];
        m->tot_l[c] += hl[c];
        e++;
    }
    m->nent = e;
    m->nimg++;
    m->start[m->nimg] = e;
    return 0;
}

void hx_metrics_totals(const struct hx_metrics *m, int64_t *inter, int64_t *pred,
                       int64_t *label)
{
    size_t sz = sizeof(int64_t) * (size_t)m->num_classes;
    if (inter)
        memcpy(inter, m->tot_i, sz);
    if (pred)
        memcpy(pred, m->tot_p, sz);
    if (label)
        memcpy(label, m->tot_l, sz);
}

void hx_metrics_image(const struct hx_metrics *m, size_t i, const int32_t **cls,
                      const int32_t **inter, const int32_t **pred, const int32_t **label,
                      size_t *n)
{
    size_t a = m->start[i], b = m->start[i + 1];
    *cls = m->cls + a;
    *inter = m->ei + a;
    *pred = m->ep + a;
    *label = m->el + a;
    *n = b - a;
}

void hx_scores_from_counts(const int64_t *inter, const int64_t *pred, const int64_t *label,
                           int num_classes, struct hx_scores *out)
{
    int64_t si = 0, sl = 0;
    double sum_iou = 0, sum_acc = 0;
    int n_iou = 0, n_acc = 0;
    for (int c = 0; c < num_classes; c++) {
        si += inter[c];
        sl += label[c];
        int64_t uni = pred[c] + label[c] - inter[c];
        double iou = uni ? (double)inter[c] / (double)uni : NAN;
        double acc = label[c] ? (double)inter[c] / (double)label[c] : NAN;
        if (!isnan(iou)) {
            sum_iou += iou;
            n_iou++;
        }
        if (!isnan(acc)) {
            sum_acc += acc;
            n_acc++;
        }
        if (out->iou)
            out->iou[c] = iou * 100;
        if (out->acc)
            out->acc[c] = acc * 100;
    }
    out->aAcc = sl ? (double)si / (double)sl * 100 : NAN;
    out->mIoU = n_iou ? sum_iou / n_iou * 100 : NAN;
    out->mAcc = n_acc ? sum_acc / n_acc * 100 : NAN;
}

void hx_metrics_scores(const struct hx_metrics *m, struct hx_scores *out)
{
    hx_scores_from_counts(m->tot_i, m->tot_p, m->tot_l, m->num_classes, out);
}

uint64_t hx_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *sorted, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t k = (size_t)floor(pos);
    if (k + 1 >= n)
        return sorted[n - 1];
    double f = pos - (double)k;
    return sorted[k] + (sorted[k + 1] - sorted[k]) * f;
}

int hx_metrics_bootstrap(const struct hx_metrics *m, int reps, uint64_t seed, double level,
                         double *lo, double *hi)
{
    int rc = 0;
    *lo = *hi = NAN;
    if (reps < 1 || !(level > 0 && level < 1))
        return hx_err(HX_EINVAL, "bootstrap: need reps >= 1 and 0 < level < 1 (got %d, %g)",
                      reps, level);
    if (m->nimg == 0)
        return 0;
    const int C = m->num_classes;
    int64_t *sum = hx_calloc((size_t)C * 3, sizeof(int64_t), "bootstrap sums");
    double *vals = hx_malloc(sizeof(double) * (size_t)reps, "bootstrap values");
    if (!sum || !vals) {
        rc = HX_ENOMEM;
        goto done;
    }
    int64_t *si = sum, *sp = sum + C, *sl = sum + 2 * C;
    uint64_t state = seed;
    size_t nv = 0;
    const unsigned __int128 n = m->nimg;
    for (int r = 0; r < reps; r++) {
        memset(sum, 0, sizeof(int64_t) * 3 * (size_t)C);
        for (size_t k = 0; k < m->nimg; k++) {
            size_t img = (size_t)(((unsigned __int128)hx_splitmix64(&state) * n) >> 64);
            for (size_t e = m->start[img]; e < m->start[img + 1]; e++) {
                int c = m->cls[e];
                si[c] += m->ei[e];
                sp[c] += m->ep[e];
                sl[c] += m->el[e];
            }
        }
        struct hx_scores s = {0};
        hx_scores_from_counts(si, sp, sl, C, &s);
        if (!isnan(s.mIoU))
            vals[nv++] = s.mIoU;
    }
    if (nv) {
        qsort(vals, nv, sizeof(double), cmp_double);
        double a = (1 - level) / 2;
        *lo = percentile(vals, nv, a);
        *hi = percentile(vals, nv, 1 - a);
    }
done:
    free(sum);
    free(vals);
    return rc;
}
