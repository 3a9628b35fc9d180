#include "harness/ensemble.h"

#include "harness/error.h"
#include "harness/score.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const rule_names[HX_ENS_NRULES] = {
    [HX_ENS_SUPER] = "super",
    [HX_ENS_EMBED_MEAN] = "embed-mean",
    [HX_ENS_EMBED_SOFTMAX] = "embed-softmax",
    [HX_ENS_MAX] = "max",
    [HX_ENS_MEAN] = "mean",
    [HX_ENS_MEAN_PROB] = "mean-prob",
    [HX_ENS_LOGSUMEXP] = "logsumexp",
    [HX_ENS_VOTE] = "vote",
    [HX_ENS_CHILS] = "chils",
};

int hx_ens_rule_parse(const char *name, enum hx_ens_rule *out)
{
    for (int r = 0; name && r < HX_ENS_NRULES; r++)
        if (strcmp(name, rule_names[r]) == 0) {
            *out = (enum hx_ens_rule)r;
            return 0;
        }
    return hx_err(HX_EINVAL,
                  "unknown ensemble rule \"%s\" (valid: super, embed-mean, embed-softmax, max, "
                  "mean, mean-prob, logsumexp, vote, chils)",
                  name ? name : "(null)");
}

const char *hx_ens_rule_name(enum hx_ens_rule r)
{
    return (int)r >= 0 && r < HX_ENS_NRULES ? rule_names[r] : NULL;
}

int hx_ens_rule_needs_global(enum hx_ens_rule r) { return r == HX_ENS_EMBED_SOFTMAX; }

static int rule_needs_tau(enum hx_ens_rule r)
{
    return r == HX_ENS_MEAN_PROB || r == HX_ENS_LOGSUMEXP || r == HX_ENS_CHILS;
}

/* ---- the bank ---- */

void hx_text_bank_free(struct hx_text_bank *b)
{
    if (!b)
        return;
    free(b->offset);
    free(b->n_sub);
    free(b->emb);
    free(b->gram_at);
    free(b->gram);
    free(b);
}

int hx_text_bank_create(struct hx_text_bank **out, const float *emb, const int *n_sub, int C,
                        int E)
{
    int rc = 0;
    struct hx_text_bank *b = NULL;
    *out = NULL;
    if (C < 1 || E < 1)
        return hx_err(HX_EINVAL, "text bank: %d classes of dimension %d (both must be >= 1)",
                      C, E);
    long long M = 0;
    size_t G = 0;
    for (int c = 0; c < C; c++) {
        if (n_sub[c] < 0)
            return hx_err(HX_EINVAL, "text bank: class %d has %d subclasses", c, n_sub[c]);
        M += 1 + (long long)n_sub[c];
        G += (size_t)(1 + n_sub[c]) * (size_t)(1 + n_sub[c]);
        if (M > INT_MAX)
            return hx_err(HX_EINVAL, "text bank: more than %d members", INT_MAX);
    }
    b = hx_calloc(1, sizeof *b, "text bank");
    if (!b)
        return HX_ENOMEM;
    b->n_classes = C;
    b->dim = E;
    b->n_members = (int)M;
    b->offset = hx_malloc(sizeof(int) * C, "text bank offsets");
    b->n_sub = hx_malloc(sizeof(int) * C, "text bank subclass counts");
    b->gram_at = hx_malloc(sizeof(size_t) * C, "text bank Gram offsets");
    b->emb = hx_malloc(sizeof(float) * (size_t)M * E, "text bank embeddings [M, E]");
    b->gram = hx_malloc(sizeof(double) * G, "text bank Gram matrices");
    if (!b->offset || !b->n_sub || !b->gram_at || !b->emb || !b->gram) {
        rc = HX_ENOMEM;
        goto done;
    }
    memcpy(b->emb, emb, sizeof(float) * (size_t)M * E);
    int m = 0;
    size_t g = 0;
    for (int c = 0; c < C; c++) {
        int cnt = 1 + n_sub[c];
        b->offset[c] = m;
        b->n_sub[c] = n_sub[c];
        b->gram_at[c] = g;
        for (int i = 0; i < cnt; i++) {
            float *x = b->emb + (size_t)(m + i) * E;
            double s = 0;
            for (int j = 0; j < E; j++)
                s += (double)x[j] * x[j];
            if (!(s > 0) || !isfinite(s)) {
                rc = hx_err(HX_EINVAL,
                            "text bank: class %d member %d (%s) has %s norm; every embedding "
                            "must be a finite nonzero vector",
                            c, i, i ? "a subclass" : "the superclass",
                            isfinite(s) ? "zero" : "a non-finite");
                goto done;
            }
            float inv = (float)(1.0 / sqrt(s));
            for (int j = 0; j < E; j++)
                x[j] *= inv;
        }
        for (int i = 0; i < cnt; i++)
            for (int k = 0; k <= i; k++) {
                const float *x = b->emb + (size_t)(m + i) * E, *y = b->emb + (size_t)(m + k) * E;
                double s = 0;
                for (int j = 0; j < E; j++)
                    s += (double)x[j] * y[j];
                b->gram[g + (size_t)i * cnt + k] = b->gram[g + (size_t)k * cnt + i] = s;
            }
        m += cnt;
        g += (size_t)cnt * cnt;
    }
    *out = b;
    b = NULL;
done:
    hx_text_bank_free(b);
    return rc;
}

/* ---- selection and coefficients ---- */

/* The selected members of class c: the run [lo, hi) of bank rows. */
static void select_range(const struct hx_text_bank *b, const struct hx_ens_point *p, int c,
                         int *lo, int *hi)
{
    int off = b->offset[c], ns = b->n_sub[c];
    int kk = p->k < ns ? p->k : ns;
    if (p->rule == HX_ENS_SUPER || kk == 0) {
        *lo = off, *hi = off + 1;
        return;
    }
    *lo = p->include_super ? off : off + 1;
    *hi = off + 1 + kk;
}

static int check_point(const struct hx_text_bank *b, const struct hx_ens_point *p, float tau,
                       const float *global_dot)
{
    if (!b || !p)
        return hx_err(HX_EINVAL, "ensemble: no bank or no point given");
    if ((int)p->rule < 0 || p->rule >= HX_ENS_NRULES)
        return hx_err(HX_EINVAL, "ensemble: rule %d is not a valid rule", (int)p->rule);
    if (p->k < 0)
        return hx_err(HX_EINVAL, "ensemble: k = %d (must be >= 0)", p->k);
    if (rule_needs_tau(p->rule) && !(tau > 0 && isfinite(tau)))
        return hx_err(HX_EINVAL, "ensemble rule %s: tau = %g (the logit scale must be > 0)",
                      rule_names[p->rule], (double)tau);
    if (hx_ens_rule_needs_global(p->rule) && !global_dot)
        return hx_err(HX_EINVAL,
                      "ensemble rule %s needs the global image embedding's cosines with the "
                      "bank (global_dot)",
                      rule_names[p->rule]);
    return 0;
}

/* Coefficients a[M] of the embedding rules: class c's combined, normalised embedding is
 * sum_{i in [lo, hi)} a_i m_i. */
static int embedding_coefs(const struct hx_text_bank *b, const struct hx_ens_point *p,
                           const float *global_dot, const int *lo, const int *hi, double *a)
{
    for (int c = 0; c < b->n_classes; c++) {
        int off = b->offset[c], cnt = 1 + b->n_sub[c];
        const double *G = b->gram + b->gram_at[c];
        if (p->rule == HX_ENS_SUPER) {
            a[lo[c]] = 1;
            continue;
        }
        if (p->rule == HX_ENS_EMBED_MEAN) {
            for (int i = lo[c]; i < hi[c]; i++)
                a[i] = 1;
        } else { /* embed-softmax: w = softmax(g) over the selected members */
            double mx = -INFINITY, s = 0;
            for (int i = lo[c]; i < hi[c]; i++)
                mx = global_dot[i] > mx ? global_dot[i] : mx;
            for (int i = lo[c]; i < hi[c]; i++)
                s += a[i] = exp(global_dot[i] - mx);
            for (int i = lo[c]; i < hi[c]; i++)
                a[i] /= s;
        }
        double q = 0, asum = 0; /* ||sum_i a_i m_i||^2 = a^T G a; sum_i a_i (a_i > 0) */
        for (int i = lo[c]; i < hi[c]; i++) {
            asum += a[i];
            for (int j = lo[c]; j < hi[c]; j++)
                q += a[i] * a[j] * G[(size_t)(i - off) * cnt + (j - off)];
        }
        /* Below 1e-6 of the weights' sum the combined direction is float rounding noise
         * (the bank and the cosine map carry about 1e-7 relative error). */
        if (!(q > 1e-12 * asum * asum))
            return hx_err(HX_EINVAL,
                          "ensemble rule %s: class %d's members cancel out (their combined "
                          "embedding has norm %.3g of the weights' sum); drop or fix them",
                          rule_names[p->rule], c, sqrt(q > 0 ? q : 0) / asum);
        double inv = 1 / sqrt(q);
        for (int i = lo[c]; i < hi[c]; i++)
            a[i] *= inv;
    }
    return 0;
}

/* ---- per-row kernels ---- */

static void rows_linear(const struct hx_text_bank *b, const int *lo, const int *hi,
                        const double *a, const float *cos, int n, float *out)
{
    int C = b->n_classes, M = b->n_members;
    for (int r = 0; r < n; r++) {
        const float *x = cos + (size_t)r * M;
        float *o = out + (size_t)r * C;
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int i = lo[c]; i < hi[c]; i++)
                s += a[i] * x[i];
            o[c] = (float)s;
        }
    }
}

/* log sum_{i in [lo, hi)} exp(tau x_i), stable; also the max of x over the run. */
static double class_lse(const float *x, int lo, int hi, double tau, double *xmax)
{
    double mx = x[lo];
    for (int i = lo + 1; i < hi; i++)
        mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int i = lo; i < hi; i++)
        s += exp(tau * (x[i] - mx));
    *xmax = mx;
    return tau * mx + log(s);
}

/* log sum_c exp(v_c), stable. */
static double lse(const double *v, int n)
{
    double mx = v[0], s = 0;
    for (int i = 1; i < n; i++)
        mx = v[i] > mx ? v[i] : mx;
    for (int i = 0; i < n; i++)
        s += exp(v[i] - mx);
    return mx + log(s);
}

static void rows_map(const struct hx_text_bank *b, const struct hx_ens_point *p, const int *lo,
                     const int *hi, double *w1, double *w2, int *votes, const float *cos, int n,
                     double tau, float *out)
{
    int C = b->n_classes, M = b->n_members;
    for (int r = 0; r < n; r++) {
        const float *x = cos + (size_t)r * M;
        float *o = out + (size_t)r * C;
        switch (p->rule) {
        case HX_ENS_MAX:
            for (int c = 0; c < C; c++) {
                float mx = x[lo[c]];
                for (int i = lo[c] + 1; i < hi[c]; i++)
                    mx = x[i] > mx ? x[i] : mx;
                o[c] = mx;
            }
            break;
        case HX_ENS_MEAN:
            for (int c = 0; c < C; c++) {
                double s = 0;
                for (int i = lo[c]; i < hi[c]; i++)
                    s += x[i];
                o[c] = (float)(s / (hi[c] - lo[c]));
            }
            break;
        case HX_ENS_LOGSUMEXP:
            for (int c = 0; c < C; c++) {
                double mx;
                o[c] = (float)(class_lse(x, lo[c], hi[c], tau, &mx) / tau);
            }
            break;
        case HX_ENS_MEAN_PROB: {
            /* log p_c = lse_c - lse over all selected members = lse_c - lse_c'(lse_c') */
            double mx;
            for (int c = 0; c < C; c++)
                w1[c] = class_lse(x, lo[c], hi[c], tau, &mx);
            double L = lse(w1, C);
            for (int c = 0; c < C; c++)
                o[c] = (float)((w1[c] - L) / tau);
            break;
        }
        case HX_ENS_CHILS: {
            /* log p(class c) = tau e_c - lse_c'(tau e_c');
             * log max_i p(sub_i) = tau max_i cos_i - lse over all selected members */
            for (int c = 0; c < C; c++) {
                w1[c] = class_lse(x, lo[c], hi[c], tau, &w2[c]);
                w2[c] *= tau;
            }
            double L = lse(w1, C);
            for (int c = 0; c < C; c++)
                w1[c] = tau * x[b->offset[c]];
            double A = lse(w1, C);
            for (int c = 0; c < C; c++)
                o[c] = (float)((w1[c] - A + w2[c] - L) / tau);
            break;
        }
        case HX_ENS_VOTE: {
            /* first and second best superclass cosines, first index on ties */
            int b1 = 0, b2 = -1;
            for (int c = 1; c < C; c++) {
                float v = x[b->offset[c]];
                if (v > x[b->offset[b1]])
                    b2 = b1, b1 = c;
                else if (b2 < 0 || v > x[b->offset[b2]])
                    b2 = c;
            }
            for (int c = 0; c < C; c++)
                votes[c] = 0;
            for (int c = 0; c < C; c++) {
                int bo = b1 != c ? b1 : b2; /* best other class, -1 when C == 1 */
                double s = 0;
                for (int i = lo[c]; i < hi[c]; i++) {
                    s += x[i];
                    int win = c;
                    if (bo >= 0) {
                        float vo = x[b->offset[bo]];
                        if (x[i] < vo || (x[i] == vo && bo < c))
                            win = bo;
                    }
                    votes[win]++;
                }
                w1[c] = s / (hi[c] - lo[c]);
            }
            for (int c = 0; c < C; c++)
                o[c] = (float)(votes[c] + 0.25 * (1 + tanh(w1[c])));
            break;
        }
        default:
            break;
        }
    }
}

int hx_ens_scores(const struct hx_text_bank *b, const struct hx_ens_point *p, const float *cos,
                  int n, float tau, const float *global_dot, float *out)
{
    int rc = check_point(b, p, tau, global_dot);
    if (rc)
        return rc;
    if (n < 0)
        return hx_err(HX_EINVAL, "ensemble: %d rows", n);
    int C = b->n_classes, M = b->n_members;
    int *lo = hx_malloc(sizeof(int) * 3 * (size_t)C, "ensemble selection and votes");
    double *a = hx_malloc(sizeof(double) * ((size_t)M + 2 * (size_t)C), "ensemble workspace");
    if (!lo || !a) {
        rc = HX_ENOMEM;
        goto done;
    }
    int *hi = lo + C, *votes = lo + 2 * C;
    for (int c = 0; c < C; c++)
        select_range(b, p, c, &lo[c], &hi[c]);
    switch (p->rule) {
    case HX_ENS_SUPER:
    case HX_ENS_EMBED_MEAN:
    case HX_ENS_EMBED_SOFTMAX:
        rc = embedding_coefs(b, p, global_dot, lo, hi, a);
        if (rc)
            goto done;
        rows_linear(b, lo, hi, a, cos, n, out);
        break;
    default:
        rows_map(b, p, lo, hi, a, a + C, votes, cos, n, tau, out);
        break;
    }
done:
    free(lo);
    free(a);
    return rc;
}

int hx_ens_class_embeddings(const struct hx_text_bank *b, const struct hx_ens_point *p,
                            const float *global_dot, float *out)
{
    int rc = check_point(b, p, 1, global_dot);
    if (rc)
        return rc;
    if (p->rule != HX_ENS_SUPER && p->rule != HX_ENS_EMBED_MEAN &&
        p->rule != HX_ENS_EMBED_SOFTMAX)
        return hx_err(HX_EINVAL,
                      "ensemble rule %s combines member scores, not embeddings: it has no class "
                      "embedding (use super, embed-mean or embed-softmax)",
                      rule_names[p->rule]);
    int C = b->n_classes, M = b->n_members, E = b->dim;
    int *lo = hx_malloc(sizeof(int) * 2 * (size_t)C, "ensemble selection");
    double *a = hx_malloc(sizeof(double) * (size_t)M, "ensemble coefficients");
    if (!lo || !a) {
        rc = HX_ENOMEM;
        goto done;
    }
    int *hi = lo + C;
    for (int c = 0; c < C; c++)
        select_range(b, p, c, &lo[c], &hi[c]);
    rc = embedding_coefs(b, p, global_dot, lo, hi, a);
    if (rc)
        goto done;
    for (int c = 0; c < C; c++) {
        float *o = out + (size_t)c * E;
        for (int j = 0; j < E; j++) {
            double s = 0;
            for (int i = lo[c]; i < hi[c]; i++)
                s += a[i] * b->emb[(size_t)i * E + j];
            o[j] = (float)s;
        }
    }
    hx_l2_normalize_rows(out, C, E);
done:
    free(lo);
    free(a);
    return rc;
}
