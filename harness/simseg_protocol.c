#include "harness/simseg_protocol.h"

#include "harness/crf.h"
#include "harness/error.h"
#include "harness/score.h"
#include "models/simseg/simseg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void hx_ssp_params_default(struct hx_ssp_params *p, const char *dataset)
{
    memset(p, 0, sizeof *p);
    p->size = 288;
    p->top_k = dataset && (!strcmp(dataset, "context60") || !strcmp(dataset, "context59")) ? 30
                                                                                            : 10;
    p->candidates = 5;
    p->std_mult = 1.0f;
    p->crf_iters = 3;
    p->gauss_sxy = 3, p->gauss_compat = 3;
    p->bilat_sxy = 40, p->bilat_srgb = 13, p->bilat_compat = 10;
    p->close_size = 7;
    p->tau = 100;
    p->crf_threads = 1;
}

const char *hx_ssp_classnames(const char *dataset)
{
    static const char *const map[][2] = {
        {"voc21", "datasets/classnames/simseg_pascal_voc.txt"},
        {"context60", "datasets/classnames/simseg_pascal_context.txt"},
        {"coco_object", "datasets/classnames/simseg_coco_stuff.txt"},
    };
    for (size_t i = 0; dataset && i < sizeof map / sizeof *map; i++)
        if (!strcmp(dataset, map[i][0]))
            return map[i][1];
    return NULL;
}

void hx_ssp_view_key(const struct hx_ssp_params *p, char *out, size_t len)
{
    snprintf(out, len, "simseg-s%d", p->size);
}

static int check_params(const struct hx_ssp_params *p)
{
    if (p->size < 1)
        return hx_err(HX_EINVAL, "simseg protocol: input size %d < 1", p->size);
    if (p->top_k < 1)
        return hx_err(HX_EINVAL, "simseg protocol: top_k %d < 1", p->top_k);
    if (p->candidates < 1 || p->candidates > HX_SSP_MAX_CANDIDATES)
        return hx_err(HX_EINVAL, "simseg protocol: candidates %d outside 1..%d", p->candidates,
                      HX_SSP_MAX_CANDIDATES);
    if (p->crf_iters < 0)
        return hx_err(HX_EINVAL, "simseg protocol: crf_iters %d < 0", p->crf_iters);
    if (!(p->gauss_sxy > 0) || !(p->bilat_sxy > 0) || !(p->bilat_srgb > 0))
        return hx_err(HX_EINVAL, "simseg protocol: CRF kernel widths must be > 0");
    if (p->close_size < 0 || (p->close_size > 0 && p->close_size % 2 == 0))
        return hx_err(HX_EINVAL, "simseg protocol: close_size %d must be 0 or odd",
                      p->close_size);
    return 0;
}

/* ------------------------------------------------------------------ steps 1-2 */

int hx_ssp_simseg_encode(void *ctx, const float *img, int H, int W, float *dense, float *pooled,
                         int *gh, int *gw)
{
    struct hx_simseg *m = ctx;
    const struct hx_simseg_config *cfg = hx_simseg_cfg(m);
    if (H != cfg->image_size || W != cfg->image_size)
        return hx_err(HX_EINVAL, "SimSeg encodes %dx%d views, not %dx%d", cfg->image_size,
                      cfg->image_size, W, H);
    *gh = *gw = hx_simseg_grid(m);
    return hx_simseg_encode_image(m, img, pooled, dense);
}

int hx_ssp_features(const struct hx_dense_encoder *enc, const struct hx_ssp_params *p,
                    const struct hx_image *im, struct hx_dense_feats *out)
{
    int rc, S = p->size, gh = 0, gw = 0;
    memset(out, 0, sizeof *out);
    if ((rc = check_params(p)))
        return rc;
    if (enc->patch < 1 || S % enc->patch)
        return hx_err(HX_EINVAL, "simseg protocol: input size %d is not a multiple of the "
                      "patch size %d", S, enc->patch);
    int T = (S / enc->patch) * (S / enc->patch);
    float *img = hx_malloc(sizeof(float) * 3 * (size_t)S * S, "normalised image");
    if (!img)
        return HX_ENOMEM;
    if ((rc = hx_simseg_preprocess(im, S, img, NULL)) ||
        (rc = hx_dense_feats_alloc(out, 1, T, enc->dim)))
        goto done;
    out->img_h = im->h, out->img_w = im->w, out->view_h = S, out->view_w = S;
    out->win[0] = (struct hx_window){0, S, 0, S};
    if ((rc = enc->encode(enc->ctx, img, S, S, out->dense, out->pooled, &gh, &gw)))
        goto done;
    if (gh * gw != T) {
        rc = hx_err(HX_EINVAL, "simseg protocol: the encoder gave a %dx%d grid, expected %d "
                    "tokens", gh, gw, T);
        goto done;
    }
    out->grid[0] = gh, out->grid[1] = gw;
done:
    if (rc)
        hx_dense_feats_free(out);
    free(img);
    return rc;
}

int hx_ssp_crf_image(const struct hx_ssp_params *p, const struct hx_image *im, uint8_t *rgb)
{
    int rc = hx_pil_resize(im->px, im->w, im->h, 3, rgb, p->size, p->size, HX_PIL_BILINEAR);
    if (!rc)
        hx_simseg_crf_image(rgb, (size_t)p->size * p->size, rgb);
    return rc;
}

/* ------------------------------------------------------------------ step 4 */

int hx_ssp_gate(const struct hx_ssp_params *p, const float *s, int C, int *accepted, int *n,
                double *threshold)
{
    int rc = check_params(p);
    *n = 0;
    if (rc)
        return rc;
    if (C < 1)
        return hx_err(HX_EINVAL, "simseg protocol: no classes");
    int K = p->top_k < C ? p->top_k : C;
    int *top = hx_malloc(sizeof(int) * (size_t)K, "top-k");
    if (!top)
        return HX_ENOMEM;
    /* selection of the K largest, descending; equal scores keep class order */
    for (int k = 0; k < K; k++) {
        int best = -1;
        for (int c = 0; c < C; c++) {
            int taken = 0;
            for (int j = 0; j < k && !taken; j++)
                taken = top[j] == c;
            if (!taken && (best < 0 || s[c] > s[best]))
                best = c;
        }
        top[k] = best;
    }
    /* torch: mean and unbiased std of the float32 tensor (accumulated in double, rounded to
     * float), then mean + mult * std in float32 */
    double sum = 0, ss = 0;
    for (int k = 0; k < K; k++)
        sum += s[top[k]];
    double mean = sum / K;
    for (int k = 0; k < K; k++)
        ss += (s[top[k]] - mean) * (s[top[k]] - mean);
    float thr = -INFINITY;
    if (K >= 2) {
        float fm = (float)mean, fs = (float)sqrt(ss / (K - 1));
        thr = fm + p->std_mult * fs;
    }
    *threshold = thr;
    int walk = p->candidates < K ? p->candidates : K;
    for (int k = 0; k < walk; k++) {
        int c = top[k];
        if (c == 0)
            continue;
        if (s[c] < thr)
            break;
        accepted[(*n)++] = c;
    }
    free(top);
    return 0;
}

/* ------------------------------------------------------------------ steps 6-7 */

/* One pass of a k-wide running max (dilate) or min (erode) along rows (dx = 1) or columns,
 * ignoring pixels outside the image. */
static void morph_pass(const uint8_t *src, uint8_t *dst, int w, int h, int r, int vertical,
                       int is_max)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int lo = (vertical ? y : x) - r, hi = (vertical ? y : x) + r;
            int n = vertical ? h : w;
            if (lo < 0)
                lo = 0;
            if (hi > n - 1)
                hi = n - 1;
            uint8_t v = is_max ? 0 : 255;
            for (int i = lo; i <= hi; i++) {
                uint8_t u = vertical ? src[(size_t)i * w + x] : src[(size_t)y * w + i];
                v = is_max ? (u > v ? u : v) : (u < v ? u : v);
            }
            dst[(size_t)y * w + x] = v;
        }
}

void hx_ssp_close(uint8_t *mask, int w, int h, int k, uint8_t *tmp)
{
    if (k <= 1)
        return;
    int r = k / 2;
    /* a rectangle's max (min) is the max (min) over rows of the max (min) over columns */
    morph_pass(mask, tmp, w, h, r, 0, 1);
    morph_pass(tmp, mask, w, h, r, 1, 1);
    morph_pass(mask, tmp, w, h, r, 0, 0);
    morph_pass(tmp, mask, w, h, r, 1, 0);
}

int hx_ssp_paint(const uint8_t *masks, const int *cls, const float *score, int n, int mh,
                 int mw, int out_h, int out_w, uint8_t *pred)
{
    size_t npx = (size_t)out_h * out_w;
    memset(pred, 0, npx);
    if (n == 0)
        return 0;
    uint8_t *r = hx_malloc(npx, "resized mask");
    double *best = hx_calloc(npx, sizeof(double), "best mask scores");
    int rc = 0;
    if (!r || !best) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int j = 0; j < n; j++) {
        if (cls[j] < 0 || cls[j] > 255) {
            rc = hx_err(HX_EINVAL, "class %d does not fit an 8-bit label map", cls[j]);
            goto done;
        }
        if ((rc = hx_cv_resize_nearest(masks + (size_t)j * mh * mw, mw, mh, 1, r, out_w, out_h)))
            goto done;
        for (size_t i = 0; i < npx; i++) {
            /* temp_pred[c] = mask * score (float64); argmax, ties to the lower index */
            double v = (double)r[i] * (double)score[j];
            if (v > best[i] || (v == best[i] && cls[j] < pred[i]))
                best[i] = v, pred[i] = (uint8_t)cls[j];
        }
    }
done:
    free(r);
    free(best);
    return rc;
}

/* ------------------------------------------------------------------ steps 3-7 */

int hx_ssp_crf_new(const struct hx_ssp_params *p, const uint8_t *crf_rgb, struct hx_crf **out)
{
    struct hx_crf *crf = NULL;
    int rc = check_params(p);
    *out = NULL;
    if (rc || (rc = hx_crf_new(&crf, p->size, p->size, 2)))
        return rc;
    hx_crf_set_threads(crf, p->crf_threads);
    if ((rc = hx_crf_add_gaussian(crf, p->gauss_sxy, p->gauss_compat)) ||
        (rc = hx_crf_add_bilateral(crf, p->bilat_sxy, p->bilat_srgb, crf_rgb, p->bilat_compat))) {
        hx_crf_free(crf);
        return rc;
    }
    *out = crf;
    return 0;
}

int hx_ssp_predict(const struct hx_ssp_params *p, const struct hx_text_bank *bank,
                   const struct hx_ens_point *pt, const struct hx_dense_feats *f,
                   const uint8_t *crf_rgb, int out_h, int out_w, uint8_t *pred,
                   struct hx_ssp_trace *trace)
{
    struct hx_crf *crf = NULL;
    int rc = hx_ssp_predict_shared(p, bank, pt, f, crf_rgb, &crf, out_h, out_w, pred, trace);
    hx_crf_free(crf);
    return rc;
}

int hx_ssp_predict_shared(const struct hx_ssp_params *p, const struct hx_text_bank *bank,
                          const struct hx_ens_point *pt, const struct hx_dense_feats *f,
                          const uint8_t *crf_rgb, struct hx_crf **shared, int out_h, int out_w,
                          uint8_t *pred, struct hx_ssp_trace *trace)
{
    int rc = check_params(p);
    if (rc)
        return rc;
    int C = bank->n_classes, M = bank->n_members, E = bank->dim, S = p->size;
    if (f->E != E)
        return hx_err(HX_EINVAL, "the features have %d dimensions, the text bank %d", f->E, E);
    if (f->nw != 1 || f->view_h != S || f->view_w != S || f->grid[0] < 1 ||
        f->grid[0] * f->grid[1] != f->T || S % f->grid[0] || S % f->grid[1])
        return hx_err(HX_EFORMAT, "features: not a SimSeg %dx%d view (%d windows, %dx%d grid)",
                      S, S, f->nw, f->grid ? f->grid[1] : 0, f->grid ? f->grid[0] : 0);
    if (C > 256)
        return hx_err(HX_EINVAL, "%d classes do not fit an 8-bit label map", C);
    if (pt->rule == HX_ENS_VOTE)
        return hx_err(HX_EINVAL, "simseg protocol: the vote rule gives a decision, not a map "
                      "per class (use super, embed-mean, embed-softmax, max, mean, logsumexp, "
                      "mean-prob or chils)");
    int gh = f->grid[0], gw = f->grid[1], T = f->T, ph = S / gh, pw = S / gw;
    int embed_rule = pt->rule == HX_ENS_SUPER || pt->rule == HX_ENS_EMBED_MEAN ||
                     pt->rule == HX_ENS_EMBED_SOFTMAX;
    size_t npx = (size_t)S * S;
    float *s = NULL, *gdot = NULL, *supe = NULL, *cemb = NULL, *tok = NULL, *maps = NULL;
    float *cos = NULL, *prob = NULL, *q = NULL, *acc_score = NULL;
    uint8_t *masks = NULL, *tmp = NULL;
    struct hx_crf *crf;
    int accepted[HX_SSP_MAX_CANDIDATES], na = 0;
    double thr;

    s = hx_malloc(sizeof(float) * C, "class scores");
    gdot = hx_malloc(sizeof(float) * M, "member scores");
    supe = hx_malloc(sizeof(float) * (size_t)C * E, "superclass embeddings");
    if (!s || !gdot || !supe) {
        rc = HX_ENOMEM;
        goto done;
    }
    /* step 4: s_c = g . e_c (superclass rows), gating */
    for (int c = 0; c < C; c++)
        memcpy(supe + (size_t)c * E, bank->emb + (size_t)bank->offset[c] * E, sizeof(float) * E);
    hx_score_cos(f->pooled, 1, supe, C, E, s);
    hx_score_cos(f->pooled, 1, bank->emb, M, E, gdot);
    if ((rc = hx_ssp_gate(p, s, C, accepted, &na, &thr)))
        goto done;
    if (trace) {
        if (trace->scores)
            memcpy(trace->scores, s, sizeof(float) * C);
        trace->threshold = thr;
        trace->n_accepted = na;
        memcpy(trace->accepted, accepted, sizeof(int) * (size_t)na);
    }
    if (na == 0) {
        memset(pred, 0, (size_t)out_h * out_w);
        goto done;
    }

    /* step 5: maps of the accepted classes on the token grid */
    tok = hx_malloc(sizeof(float) * (size_t)T * E, "patch features");
    maps = hx_malloc(sizeof(float) * (size_t)T * C, "class maps");
    if (!tok || !maps) {
        rc = HX_ENOMEM;
        goto done;
    }
    hx_simseg_dense_features(f->dense, T, E, tok);
    if (embed_rule) {
        if (!(cemb = hx_malloc(sizeof(float) * (size_t)C * E, "class embeddings"))) {
            rc = HX_ENOMEM;
            goto done;
        }
        if ((rc = hx_ens_class_embeddings(bank, pt, gdot, cemb)))
            goto done;
        if (pt->rule == HX_ENS_SUPER) /* e_c exactly as stored */
            memcpy(cemb, supe, sizeof(float) * (size_t)C * E);
        hx_score_cos(tok, T, cemb, C, E, maps);
    } else {
        if (!(cos = hx_malloc(sizeof(float) * (size_t)T * M, "member cosines"))) {
            rc = HX_ENOMEM;
            goto done;
        }
        hx_score_cos(tok, T, bank->emb, M, E, cos);
        if ((rc = hx_ens_scores(bank, pt, cos, T, p->tau, gdot, maps)))
            goto done;
    }

    /* step 6: one CRF (its lattices depend on the image only), a unary per class */
    prob = hx_malloc(sizeof(float) * 2 * npx, "mask probabilities");
    q = hx_malloc(sizeof(float) * 2 * npx, "CRF marginals");
    masks = hx_malloc(npx * (size_t)na, "masks");
    tmp = hx_malloc(npx, "morphology scratch");
    acc_score = hx_malloc(sizeof(float) * (size_t)na, "accepted scores");
    if (!prob || !q || !masks || !tmp || !acc_score) {
        rc = HX_ENOMEM;
        goto done;
    }
    if (!*shared && (rc = hx_ssp_crf_new(p, crf_rgb, shared)))
        goto done;
    crf = *shared;
    for (int j = 0; j < na; j++) {
        int c = accepted[j];
        uint8_t *mk = masks + (size_t)j * npx;
        float mn = INFINITY, mx = -INFINITY;
        for (int t = 0; t < T; t++) {
            float v = maps[(size_t)t * C + c];
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
            if (trace && trace->maps)
                trace->maps[(size_t)j * T + t] = v;
        }
        acc_score[j] = s[c];
        if (!(mx > mn)) { /* NaN in the released code: the CRF argmax is then label 0 */
            memset(mk, 0, npx);
            if (trace && trace->crf)
                memset(trace->crf + (size_t)j * npx, 0, npx);
        } else {
            /* nearest x(S/g) upsampling, then (M - min) / (max - min) in float32 */
            float den = mx - mn;
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    float v = (maps[(size_t)((y / ph) * gw + x / pw) * C + c] - mn) / den;
                    prob[(size_t)y * S + x] = 1.0f - v;
                    prob[npx + (size_t)y * S + x] = v;
                }
            if ((rc = hx_crf_set_unary_from_prob(crf, prob, 1e-8f)) ||
                (rc = hx_crf_infer(crf, p->crf_iters, q)))
                goto done;
            for (size_t i = 0; i < npx; i++)
                mk[i] = q[npx + i] > q[i] ? 255 : 0; /* argmax, ties to label 0 */
            if (trace && trace->crf)
                for (size_t i = 0; i < npx; i++)
                    trace->crf[(size_t)j * npx + i] = mk[i] ? 1 : 0;
        }
        hx_ssp_close(mk, S, S, p->close_size, tmp);
        if (trace && trace->closed)
            memcpy(trace->closed + (size_t)j * npx, mk, npx);
    }
    /* step 7 */
    rc = hx_ssp_paint(masks, accepted, acc_score, na, S, S, out_h, out_w, pred);
done:
    free(s), free(gdot), free(supe), free(cemb), free(tok), free(maps), free(cos);
    free(prob), free(q), free(masks), free(tmp), free(acc_score);
    return rc;
}

int hx_ssp_segment(const struct hx_dense_encoder *enc, const struct hx_ssp_params *p,
                   const struct hx_text_bank *bank, const struct hx_ens_point *pt,
                   const struct hx_image *im, int out_h, int out_w, uint8_t *pred,
                   struct hx_ssp_trace *trace)
{
    struct hx_dense_feats f;
    int rc;
    if (enc->dim != bank->dim)
        return hx_err(HX_EINVAL, "the encoder gives %d-dim tokens, the text bank holds %d-dim "
                      "embeddings", enc->dim, bank->dim);
    uint8_t *rgb = hx_malloc((size_t)3 * p->size * p->size, "CRF image");
    if (!rgb)
        return HX_ENOMEM;
    if (!(rc = hx_ssp_features(enc, p, im, &f))) {
        if (!(rc = hx_ssp_crf_image(p, im, rgb)))
            rc = hx_ssp_predict(p, bank, pt, &f, rgb, out_h, out_w, pred, trace);
        hx_dense_feats_free(&f);
    }
    free(rgb);
    return rc;
}
