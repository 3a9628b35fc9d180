#include "harness/protocol.h"

#include "harness/error.h"
#include "harness/nn.h"
#include "harness/parallel.h"
#include "harness/simd.h"
#include "harness/score.h"
#include "harness/window.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const float hx_clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
const float hx_clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

/* ------------------------------------------------------------------ step 6 */

/* Pixels are decided in blocks of DB so that every pass is a contiguous, vectorisable loop
 * over the block: the max over names, one exp per name and pixel, the sum, the per-class max. */
#define DB 256

struct decide_job {
    const struct hx_dense_params *p;
    const struct hx_queries *q;
    const float *scores;
    int n, pass, rc;
    const float *keep; /* [C] */
    double *area;      /* [threads][C] areas of the argmax in pass 0 */
    int chunk;         /* pixel blocks per thread chunk */
    uint8_t *pred;
    float *probs;
};

HX_CLONES static void decide_range(void *ctx, int t0, int t1)
{
    struct decide_job *jb = ctx;
    const struct hx_dense_params *p = jb->p;
    const struct hx_queries *q = jb->q;
    int N = q->bank->n_classes, C = q->n_classes, n = jb->n;
    float scale = p->logit_scale;
    float *cls = malloc(sizeof(float) * C * DB), *m = malloc(sizeof(float) * DB);
    float *z = malloc(sizeof(float) * DB), *e = malloc(sizeof(float) * DB);
    float *bv = malloc(sizeof(float) * DB);
    int *bi = malloc(sizeof(int) * DB);
    if (!cls || !m || !z || !e || !bv || !bi) {
        jb->rc = HX_ENOMEM;
        goto done;
    }
    for (int t = t0; t < t1; t++) {
        double *area = jb->area + (size_t)t * C;
        int end = (t + 1) * jb->chunk * DB < n ? (t + 1) * jb->chunk * DB : n;
        for (int i0 = t * jb->chunk * DB; i0 < end; i0 += DB) {
            int b = n - i0 < DB ? n - i0 : DB;
            if (p->argmax_cos) {
                for (int j = 0; j < C * DB; j++)
                    cls[j] = -INFINITY;
                for (int k = 0; k < N; k++) {
                    const float *s = jb->scores + (size_t)k * n + i0;
                    float *cc = cls + (size_t)q->name_class[k] * DB;
                    for (int j = 0; j < b; j++)
                        cc[j] = s[j] > cc[j] ? s[j] : cc[j];
                }
            } else {
                /* softmax(scale * s) over names; a class takes its names' largest probability */
                for (int j = 0; j < b; j++)
                    m[j] = -INFINITY, z[j] = 0;
                for (int j = 0; j < C * DB; j++)
                    cls[j] = 0;
                for (int k = 0; k < N; k++) {
                    const float *s = jb->scores + (size_t)k * n + i0;
                    for (int j = 0; j < b; j++)
                        m[j] = s[j] > m[j] ? s[j] : m[j];
                }
                for (int k = 0; k < N; k++) {
                    const float *s = jb->scores + (size_t)k * n + i0;
                    float *cc = cls + (size_t)q->name_class[k] * DB;
                    for (int j = 0; j < b; j++)
                        e[j] = scale * s[j] - scale * m[j];
                    hx_exp_inplace(e, (size_t)b);
                    for (int j = 0; j < b; j++) {
                        z[j] += e[j];
                        cc[j] = e[j] > cc[j] ? e[j] : cc[j];
                    }
                }
                for (int j = 0; j < b; j++)
                    z[j] = 1.0f / z[j];
                for (int c = 0; c < C; c++)
                    for (int j = 0; j < b; j++)
                        cls[(size_t)c * DB + j] *= z[j];
            }
            /* argmax over classes, vectorised across the block's pixels */
            for (int j = 0; j < b; j++)
                bv[j] = cls[j] * jb->keep[0], bi[j] = 0;
            for (int c = 1; c < C; c++) {
                const float *cc = cls + (size_t)c * DB, kc = jb->keep[c];
                for (int j = 0; j < b; j++) {
                    float v = cc[j] * kc;
                    int gt = v > bv[j];
                    bv[j] = gt ? v : bv[j];
                    bi[j] = gt ? c : bi[j];
                }
            }
            for (int j = 0; j < b; j++) {
                int best = bi[j];
                if (jb->pass == 0)
                    area[best] += 1;
                if (!p->argmax_cos && bv[j] < p->prob_thd)
                    best = 0;
                jb->pred[i0 + j] = (uint8_t)best;
                if (jb->probs)
                    for (int c = 0; c < C; c++)
                        jb->probs[(size_t)c * n + i0 + j] = cls[(size_t)c * DB + j] * jb->keep[c];
            }
        }
    }
done:
    free(cls), free(m), free(z), free(e), free(bv), free(bi);
}

int hx_dense_decide(const struct hx_dense_params *p, const struct hx_queries *q, float *scores,
                    int n, uint8_t *pred, float *probs)
{
    int C = q->n_classes, rc = 0;
    if (C > 256)
        return hx_err(HX_EINVAL, "%d classes do not fit an 8-bit label map", C);
    /* fixed chunks (not per thread count), so results never depend on the thread count */
    int blocks = (n + DB - 1) / DB, chunk = 64, nchunks = (blocks + chunk - 1) / chunk;
    float *keep = hx_malloc(sizeof(float) * C, "class mask");
    double *area = hx_calloc((size_t)(nchunks ? nchunks : 1) * C, sizeof(double), "class areas");
    if (!keep || !area) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int c = 0; c < C; c++)
        keep[c] = 1;
    struct decide_job jb = {p, q, scores, n, 0, 0, keep, area, chunk, pred, probs};
    /* threads only pay off on large maps (spawning costs tens of microseconds) */
    int threads = (size_t)n * q->bank->n_classes >= (1u << 20) ? 0 : 1;
    hx_parallel_for(nchunks, threads, decide_range, &jb);
    if ((rc = jb.rc))
        goto done;
    if (!p->argmax_cos && p->area_thd >= 0) {
        /* area_thd: a foreground class whose argmax area is at most area_thd x the foreground
         * area loses its probability; then decide again */
        double fg = 0, *tot = area; /* sum the chunks' areas into chunk 0 */
        for (int t = 1; t < nchunks; t++)
            for (int c = 0; c < C; c++)
                tot[c] += area[(size_t)t * C + c];
        for (int c = 1; c < C; c++)
            fg += tot[c];
        for (int c = 1; c < C; c++)
            keep[c] = tot[c] > p->area_thd * fg ? 1.0f : 0.0f;
        jb.pass = 1;
        hx_parallel_for(nchunks, threads, decide_range, &jb);
        rc = jb.rc;
    }
done:
    free(keep), free(area);
    return rc;
}

/* ------------------------------------------------------------------ steps 1-5 */

static int check_queries(const struct hx_queries *q)
{
    int N = q->bank->n_classes;
    if (q->n_classes < 1)
        return hx_err(HX_EINVAL, "no classes to segment");
    for (int k = 0; k < N; k++)
        if (q->name_class[k] < 0 || q->name_class[k] >= q->n_classes)
            return hx_err(HX_EINVAL, "query name %d maps to class %d, outside 0..%d", k,
                          q->name_class[k], q->n_classes - 1);
    return 0;
}

void hx_dense_feats_free(struct hx_dense_feats *f)
{
    if (!f)
        return;
    free(f->win);
    free(f->grid);
    free(f->dense);
    free(f->pooled);
    memset(f, 0, sizeof *f);
}

int hx_dense_feats_alloc(struct hx_dense_feats *f, int nw, int T, int E)
{
    memset(f, 0, sizeof *f);
    f->nw = nw, f->T = T, f->E = E;
    f->win = hx_calloc(nw, sizeof *f->win, "windows");
    f->grid = hx_calloc((size_t)nw * 2, sizeof *f->grid, "window grids");
    f->dense = hx_calloc((size_t)nw * T * E, sizeof *f->dense, "dense tokens");
    f->pooled = hx_calloc((size_t)nw * E, sizeof *f->pooled, "pooled embeddings");
    if (!f->win || !f->grid || !f->dense || !f->pooled) {
        hx_dense_feats_free(f);
        return HX_ENOMEM;
    }
    return 0;
}

/* Step 1: the resized, normalised network input [3, *H, *W] (caller frees). */
static int network_input(const struct hx_dense_params *p, const struct hx_image *im, float **out,
                         int *H, int *W)
{
    int rc;
    uint8_t *rgb = NULL;
    *H = im->h, *W = im->w;
    if (p->short_side > 0) {
        if ((rc = hx_rescale_size(im->h, im->w, p->long_max, p->short_side, H, W)))
            return rc;
        rgb = hx_malloc((size_t)*H * *W * 3, "resized image");
        if (!rgb)
            return HX_ENOMEM;
        if ((rc = hx_cv_resize_linear(im->px, im->w, im->h, 3, rgb, *W, *H))) {
            free(rgb);
            return rc;
        }
    }
    struct hx_image view = {*W, *H, rgb ? rgb : im->px};
    *out = hx_malloc(sizeof(float) * 3 * (size_t)*H * *W, "normalised image");
    if (*out)
        hx_image_to_tensor(&view, p->mean, p->std, *out);
    free(rgb);
    return *out ? 0 : HX_ENOMEM;
}

int hx_dense_features(const struct hx_dense_encoder *enc, const struct hx_dense_params *p,
                      const struct hx_image *im, struct hx_dense_feats *out)
{
    int H, W, E = enc->dim, rc;
    float *img = NULL, *crop = NULL;
    struct hx_windows wins = {0};
    memset(out, 0, sizeof *out);
    if ((rc = network_input(p, im, &img, &H, &W)) ||
        (rc = hx_windows_make(&wins, H, W, p->crop, p->crop, p->stride, p->stride)))
        goto done;
    int ch = p->crop > 0 && p->crop < H ? p->crop : H, cw = p->crop > 0 && p->crop < W ? p->crop : W;
    int T = (ch / enc->patch) * (cw / enc->patch);
    if (T < 1) {
        rc = hx_err(HX_EINVAL, "a %dx%d window holds no %d-pixel patch", cw, ch, enc->patch);
        goto done;
    }
    if ((rc = hx_dense_feats_alloc(out, wins.n, T, E)))
        goto done;
    out->img_h = im->h, out->img_w = im->w, out->view_h = H, out->view_w = W;
    crop = hx_malloc(sizeof(float) * 3 * (size_t)ch * cw, "window");
    if (!crop) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int w = 0; w < wins.n; w++) {
        const struct hx_window *win = &wins.win[w];
        int wh = win->y2 - win->y1, ww = win->x2 - win->x1;
        out->win[w] = *win;
        hx_window_crop(img, 3, H, W, win, crop);
        if ((rc = enc->encode(enc->ctx, crop, wh, ww, out->dense + (size_t)w * T * E,
                              out->pooled + (size_t)w * E, &out->grid[2 * w],
                              &out->grid[2 * w + 1])))
            goto done;
    }
done:
    if (rc)
        hx_dense_feats_free(out);
    hx_windows_free(&wins);
    free(img);
    free(crop);
    return rc;
}

int hx_dense_guide(const struct hx_dense_params *p, const struct hx_image *im, int out_h,
                   int out_w, float *guide)
{
    float *img;
    int H, W, rc = network_input(p, im, &img, &H, &W);
    if (rc)
        return rc;
    rc = hx_resize_bilinear(img, 3, H, W, guide, out_h, out_w, 0);
    free(img);
    return rc;
}

/* Per name: add every window's upsampled scores into one view-size plane (which stays in
 * cache across the windows), divide by the window count, resize to the output size. */
struct maps_job {
    const struct hx_dense_feats *f;
    const float *grid;  /* [nw][N, gh*gw] planar name scores of each window */
    const float *count; /* [H, W] windows covering each view pixel */
    int N, H, W, out_h, out_w;
    float *maps;        /* [N, out_h * out_w] */
    int rc;
};

HX_CLONES static void maps_range(void *ctx, int k0, int k1)
{
    struct maps_job *j = ctx;
    const struct hx_dense_feats *f = j->f;
    size_t hw = (size_t)j->H * j->W, n = (size_t)j->out_h * j->out_w;
    float *plane = hx_malloc(sizeof(float) * hw, "score plane");
    if (!plane) {
        j->rc = HX_ENOMEM;
        return;
    }
    for (int k = k0; k < k1 && !j->rc; k++) {
        memset(plane, 0, sizeof(float) * hw);
        const float *g = j->grid;
        for (int w = 0; w < f->nw; w++) {
            const struct hx_window *win = &f->win[w];
            int gh = f->grid[2 * w], gw = f->grid[2 * w + 1], rc;
            rc = hx_resize_bilinear_add(g + (size_t)k * gh * gw, 1, gh, gw, plane, j->H, j->W,
                                        win->y1, win->x1, win->y2 - win->y1, win->x2 - win->x1);
            if (rc) {
                j->rc = rc;
                break;
            }
            g += (size_t)j->N * gh * gw;
        }
        for (size_t i = 0; i < hw; i++)
            plane[i] /= j->count[i];
        int rc = hx_resize_bilinear(plane, 1, j->H, j->W, j->maps + (size_t)k * n, j->out_h,
                                    j->out_w, 0);
        if (rc)
            j->rc = rc;
    }
    free(plane);
}

int hx_dense_predict(const struct hx_dense_params *p, const struct hx_queries *q,
                     const struct hx_dense_feats *f, const float *guide, int out_h, int out_w,
                     uint8_t *pred, float *probs)
{
    const struct hx_text_bank *b = q->bank;
    int N = b->n_classes, M = b->n_members, E = f->E, T = f->T, H = f->view_h, W = f->view_w;
    int needs_global = hx_ens_rule_needs_global(q->point.rule), rc;
    float *tok = NULL, *cos = NULL, *gdot = NULL, *pool = NULL, *score = NULL, *grid = NULL;
    float *maps = NULL, *count = NULL;
    if ((rc = check_queries(q)))
        return rc;
    if (E != b->dim)
        return hx_err(HX_EINVAL, "the features have %d dimensions, the text bank %d", E, b->dim);
    if (p->pamr.iters > 0 && !guide)
        return hx_err(HX_EINVAL, "PAMR needs the guide image");
    size_t cells = 0, n = (size_t)out_h * out_w;
    for (int w = 0; w < f->nw; w++)
        cells += (size_t)f->grid[2 * w] * f->grid[2 * w + 1];
    tok = hx_malloc(sizeof(float) * (size_t)T * E, "tokens");
    cos = hx_malloc(sizeof(float) * (size_t)T * M, "member cosines");
    gdot = hx_malloc(sizeof(float) * M, "global dot products");
    pool = hx_malloc(sizeof(float) * E, "pooled embedding");
    score = hx_malloc(sizeof(float) * (size_t)T * N, "name scores");
    grid = hx_malloc(sizeof(float) * cells * N, "name score grids");
    count = hx_calloc((size_t)H * W, sizeof(float), "window counts");
    maps = hx_malloc(sizeof(float) * N * n, "name score maps");
    if (!tok || !cos || !gdot || !pool || !score || !grid || !count || !maps) {
        rc = HX_ENOMEM;
        goto done;
    }
    /* scores per window on the token grid: one GEMM, then the ensemble rule */
    float *gw_out = grid;
    for (int w = 0; w < f->nw; w++) {
        const struct hx_window *win = &f->win[w];
        int gh = f->grid[2 * w], gw = f->grid[2 * w + 1], g = gh * gw;
        if (win->y1 < 0 || win->x1 < 0 || win->y2 > H || win->x2 > W || win->y1 >= win->y2 ||
            win->x1 >= win->x2 || g < 1 || g > T) {
            rc = hx_err(HX_EFORMAT, "features: window %d does not fit the %dx%d view", w, W, H);
            goto done;
        }
        memcpy(tok, f->dense + (size_t)w * T * E, sizeof(float) * (size_t)g * E);
        hx_l2_normalize_rows(tok, g, E);
        hx_score_cos(tok, g, b->emb, M, E, cos);
        if (needs_global) {
            memcpy(pool, f->pooled + (size_t)w * E, sizeof(float) * E);
            hx_l2_normalize_rows(pool, 1, E);
            hx_score_cos(pool, 1, b->emb, M, E, gdot);
        }
        if ((rc = hx_ens_scores(b, &q->point, cos, g, p->logit_scale, needs_global ? gdot : NULL,
                                score)))
            goto done;
        for (int t = 0; t < g; t++) /* [g, N] -> planar [N, gh, gw] */
            for (int k = 0; k < N; k++)
                gw_out[(size_t)k * g + t] = score[(size_t)t * N + k];
        gw_out += (size_t)N * g;
        for (int y = win->y1; y < win->y2; y++)
            for (int x = win->x1; x < win->x2; x++)
                count[(size_t)y * W + x] += 1;
    }
    for (size_t i = 0; i < (size_t)H * W; i++)
        if (count[i] == 0) {
            rc = hx_err(HX_EFORMAT, "features: view pixel (%zu, %zu) is in no window", i % W,
                        i / W);
            goto done;
        }
    struct maps_job job = {f, grid, count, N, H, W, out_h, out_w, maps, 0};
    hx_parallel_for(N, (size_t)N * H * W >= (1u << 20) ? 0 : 1, maps_range, &job);
    if ((rc = job.rc))
        goto done;
    if (p->pamr.iters > 0 && (rc = hx_pamr(guide, 3, out_h, out_w, maps, N, &p->pamr)))
        goto done;
    rc = hx_dense_decide(p, q, maps, (int)n, pred, probs);
done:
    free(tok), free(cos), free(gdot), free(pool), free(score), free(grid), free(maps), free(count);
    return rc;
}

int hx_dense_segment(const struct hx_dense_encoder *enc, const struct hx_dense_params *p,
                     const struct hx_queries *q, const struct hx_image *im, int out_h, int out_w,
                     uint8_t *pred, float *probs)
{
    struct hx_dense_feats f;
    float *guide = NULL;
    int rc = check_queries(q);
    if (rc)
        return rc;
    if (enc->dim != q->bank->dim)
        return hx_err(HX_EINVAL, "the encoder gives %d-dim tokens, the text bank holds %d-dim "
                      "embeddings", enc->dim, q->bank->dim);
    if ((rc = hx_dense_features(enc, p, im, &f)))
        return rc;
    if (p->pamr.iters > 0) {
        guide = hx_malloc(sizeof(float) * 3 * (size_t)out_h * out_w, "PAMR guide");
        if (!guide)
            rc = HX_ENOMEM;
        else
            rc = hx_dense_guide(p, im, out_h, out_w, guide);
    }
    if (!rc)
        rc = hx_dense_predict(p, q, &f, guide, out_h, out_w, pred, probs);
    free(guide);
    hx_dense_feats_free(&f);
    return rc;
}

void hx_view_key(const struct hx_dense_params *p, char *out, size_t len)
{
    uint32_t h = 2166136261u;
    const unsigned char *bytes[2] = {(const unsigned char *)p->mean, (const unsigned char *)p->std};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof p->mean; i++)
            h = (h ^ bytes[k][i]) * 16777619u;
    snprintf(out, len, "s%d-l%d-c%d-t%d-n%08x", p->short_side, p->long_max, p->crop, p->stride,
             h);
}

/* ------------------------------------------------------------------ presets (SPEC 2) */

static int is(const char *a, const char *b) { return strcmp(a, b) == 0; }

int hx_dense_preset_get(const char *method, const char *dataset, struct hx_dense_preset *out)
{
    static const char *const datasets[] = {"voc21", "voc20", "context60", "context59",
                                           "coco_object", "coco_stuff171", "cityscapes",
                                           "ade150", "synth"};
    int known = 0;
    for (size_t i = 0; i < sizeof datasets / sizeof *datasets; i++)
        known |= is(dataset, datasets[i]);
    if (!known)
        return hx_err(HX_EINVAL, "no preset for dataset '%s'", dataset);
    struct hx_dense_preset r = {0};
    struct hx_dense_params *p = &r.params;
    memcpy(p->mean, hx_clip_mean, sizeof p->mean);
    memcpy(p->std, hx_clip_std, sizeof p->std);
    p->long_max = 2048;
    p->area_thd = -1;
    r.templates = 80;
    int voc21 = is(dataset, "voc21"), ctx60 = is(dataset, "context60"),
        obj = is(dataset, "coco_object"), city = is(dataset, "cityscapes");
    if (is(method, "sclip")) {
        r.variant = "sclip";
        p->short_side = is(dataset, "coco_stuff171") ? 448 : city ? 560 : 336;
        p->crop = 224, p->stride = 112;
        p->logit_scale = voc21 ? 65 : (ctx60 || obj) ? 50 : 40;
        p->prob_thd = (voc21 || ctx60 || obj) ? 0.1f : 0;
        p->area_thd = voc21 ? 0.1f : -1;
    } else if (is(method, "clearclip")) {
        r.variant = "clearclip";
        r.literal_background = 1;
        p->short_side = 448;
        p->crop = city ? 224 : 448, p->stride = 224;
        p->logit_scale = 50;
        p->prob_thd = voc21 ? 0.5f : ctx60 ? 0.15f : obj ? 0.4f : 0;
    } else if (is(method, "naclip") || is(method, "naclip-pamr")) {
        r.variant = "naclip";
        p->short_side = city ? 560 : 336;
        int voc = voc21 || is(dataset, "voc20");
        p->crop = voc ? 0 : 224, p->stride = voc ? 0 : 112;
        p->logit_scale = 40;
        p->prob_thd = (voc21 || ctx60 || obj) ? 0.1f : 0;
        if (is(method, "naclip-pamr"))
            p->pamr = (struct hx_pamr_opts)HX_PAMR_OPTS_NACLIP;
    } else if (is(method, "maskclip")) {
        r.variant = "maskclip";
        r.templates = 85;
        static const float in_mean[3] = {0.485f, 0.456f, 0.406f}, in_std[3] = {0.229f, 0.224f, 0.225f};
        memcpy(p->mean, in_mean, sizeof p->mean); /* MaskCLIP's mmseg config: ImageNet */
        memcpy(p->std, in_std, sizeof p->std);
        p->short_side = 512;
        p->crop = 0, p->stride = 0;
        p->logit_scale = 100;
        p->argmax_cos = 1;
    } else {
        return hx_err(HX_EINVAL, "unknown method '%s' (expected sclip, clearclip, naclip, "
                      "naclip-pamr or maskclip)", method);
    }
    *out = r;
    return 0;
}
