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

/* Pixels are decided sixteen at a time (one hx_vf of lanes): the running maximum, the sum
 * and the best class stay in registers while the names stream past. */
#define LN HX_LANES

struct decider {
    const struct hx_dense_params *p;
    const struct hx_queries *q;
    const float *keep; /* [C]: 1, or 0 for a class the area threshold removed */
    int identity;      /* name k is class k, for every class: a class's value is its name's */
};

static struct decider decider_make(const struct hx_dense_params *p, const struct hx_queries *q,
                                   const float *keep)
{
    struct decider d = {p, q, keep, q->bank->n_classes == q->n_classes};
    for (int k = 0; k < q->n_classes && d.identity; k++)
        d.identity = q->name_class[k] == k;
    return d;
}

/* Per-thread scratch: the class values of sixteen pixels [C][LN], then a padded copy of the
 * names' scores for a last group of fewer than sixteen pixels [N][LN]. */
static float *decide_scratch(const struct hx_queries *q)
{
    return hx_malloc(sizeof(float) * ((size_t)q->n_classes + q->bank->n_classes) * LN,
                     "class values");
}

/* Sixteen pixels whose name scores are s[k * stride + l]: the class values (before 1 / z and
 * keep) go to cls[c * LN + l]; returns 1 / z, the best class value and its class. */
static inline __attribute__((always_inline)) hx_vf
decide16(const struct decider *d, float *restrict cls, const float *restrict s, size_t stride,
         hx_vf *best_v, hx_vi *best_c)
{
    const struct hx_dense_params *p = d->p;
    const struct hx_queries *q = d->q;
    const hx_vf zero = {0};
    int N = q->bank->n_classes, C = q->n_classes;
    float scale = p->logit_scale;
    hx_vf z;
    if (p->argmax_cos) {
        for (int c = 0; c < C; c++)
            hx_vstore(cls + c * LN, zero - INFINITY);
        for (int k = 0; k < N; k++) {
            float *cc = cls + q->name_class[k] * LN;
            hx_vf v = hx_vload(s + (size_t)k * stride), o = hx_vload(cc);
            hx_vstore(cc, hx_vsel(v > o, v, o));
        }
        z = zero + 1; /* v * 1 == v: the argmax below reads the cosines as they are */
    } else {
        /* softmax(scale * s) over names; a class takes its names' largest probability, i.e.
         * max(0, e) over its names times 1 / z */
        hx_vf m = zero - INFINITY;
        for (int k = 0; k < N; k++) {
            hx_vf v = hx_vload(s + (size_t)k * stride);
            m = hx_vsel(v > m, v, m);
        }
        m = scale * m;
        z = zero;
        if (d->identity) {
            for (int k = 0; k < N; k++) {
                hx_vf e = hx_fast_expf_v(scale * hx_vload(s + (size_t)k * stride) - m);
                z += e;
                hx_vstore(cls + k * LN, hx_vsel(e > zero, e, zero));
            }
        } else {
            for (int c = 0; c < C; c++)
                hx_vstore(cls + c * LN, zero);
            for (int k = 0; k < N; k++) {
                float *cc = cls + q->name_class[k] * LN;
                hx_vf e = hx_fast_expf_v(scale * hx_vload(s + (size_t)k * stride) - m);
                hx_vf o = hx_vload(cc);
                z += e;
                hx_vstore(cc, hx_vsel(e > o, e, o));
            }
        }
        z = 1.0f / z;
    }
    /* the class values (cls * z) * keep, and their argmax (the first of equal values) */
    hx_vf bv = hx_vload(cls) * z * d->keep[0];
    hx_vi bi = {0};
    for (int c = 1; c < C; c++) {
        hx_vf v = hx_vload(cls + c * LN) * z * d->keep[c];
        hx_vi gt = v > bv;
        bv = hx_vsel(gt, v, bv);
        bi = hx_vseli(gt, (hx_vi){0} + c, bi);
    }
    *best_v = bv, *best_c = bi;
    return z;
}

/* Decide n pixels whose name scores are s[k * stride + j]. Writes the label (after the
 * probability threshold) to pred[j], the argmax class before it to best[j] when best is set,
 * counts the argmax into area[C] when area is set, and the class probabilities to
 * probs[c * pstride + j] when probs is set. cls is decide_scratch's. */
HX_CLONES static void decide_block(const struct decider *d, float *cls, const float *s,
                                   size_t stride, int n, uint8_t *pred, uint8_t *best,
                                   double *area, float *probs, size_t pstride)
{
    const struct hx_dense_params *p = d->p;
    int N = d->q->bank->n_classes, C = d->q->n_classes;
    float thd = p->argmax_cos ? -INFINITY : p->prob_thd, *pad = cls + (size_t)C * LN;
    for (int j = 0; j < n; j += LN) {
        int L = n - j < LN ? n - j : LN;
        const float *sj = s + j;
        size_t sst = stride;
        if (L < LN) { /* the last few pixels, padded to sixteen lanes */
            for (int k = 0; k < N; k++)
                for (int l = 0; l < LN; l++)
                    pad[k * LN + l] = l < L ? s[(size_t)k * stride + j + l] : 0;
            sj = pad, sst = LN;
        }
        hx_vf bv;
        hx_vi bi;
        hx_vf z = decide16(d, cls, sj, sst, &bv, &bi);
        hx_vi lab = hx_vseli(bv < thd, (hx_vi){0}, bi);
        int32_t bc[LN], lc[LN];
        memcpy(bc, &bi, sizeof bc), memcpy(lc, &lab, sizeof lc);
        for (int l = 0; l < L; l++)
            pred[j + l] = (uint8_t)lc[l];
        if (best)
            for (int l = 0; l < L; l++)
                best[j + l] = (uint8_t)bc[l];
        if (area)
            for (int l = 0; l < L; l++)
                area[bc[l]] += 1;
        if (probs)
            for (int c = 0; c < C; c++) {
                float v[LN];
                hx_vstore(v, hx_vload(cls + c * LN) * z * d->keep[c]);
                memcpy(probs + (size_t)c * pstride + j, v, sizeof(float) * L);
            }
    }
}

/* The area threshold (SCLIP): a foreground class whose argmax area is at most area_thd x the
 * foreground area loses its probability. area holds [nchunks][C] per-chunk counts, summed
 * here into chunk 0. Sets keep[]; returns whether any class lost it. */
static int area_keep(const struct hx_dense_params *p, int C, int nchunks, double *area,
                     float *keep)
{
    double fg = 0;
    int dropped = 0;
    for (int t = 1; t < nchunks; t++)
        for (int c = 0; c < C; c++)
            area[c] += area[(size_t)t * C + c];
    for (int c = 1; c < C; c++)
        fg += area[c];
    keep[0] = 1;
    for (int c = 1; c < C; c++) {
        keep[c] = area[c] > p->area_thd * fg ? 1.0f : 0.0f;
        dropped |= keep[c] == 0;
    }
    return dropped;
}

static int uses_area(const struct hx_dense_params *p) { return !p->argmax_cos && p->area_thd >= 0; }

/* Threads for a loop over `work` values: all cores (0) only on large maps, since spawning
 * costs tens of microseconds. */
static int par_threads(size_t work) { return work >= (1u << 20) ? 0 : 1; }

struct decide_job {
    struct decider d;
    const float *scores;
    int n, chunk, rc; /* chunk: pixels per parallel chunk */
    double *area;     /* [nchunks][C] argmax areas of the first pass, or NULL */
    uint8_t *pred;
    float *probs;
};

static void decide_range(void *ctx, int t0, int t1)
{
    struct decide_job *jb = ctx;
    int C = jb->d.q->n_classes, n = jb->n;
    float *cls = decide_scratch(jb->d.q);
    if (!cls) {
        jb->rc = HX_ENOMEM;
        return;
    }
    for (int t = t0; t < t1; t++) {
        int i0 = t * jb->chunk, i1 = n - i0 < jb->chunk ? n : i0 + jb->chunk;
        decide_block(&jb->d, cls, jb->scores + i0, (size_t)n, i1 - i0, jb->pred + i0, NULL,
                     jb->area ? jb->area + (size_t)t * C : NULL,
                     jb->probs ? jb->probs + i0 : NULL, (size_t)n);
    }
    free(cls);
}

int hx_dense_decide(const struct hx_dense_params *p, const struct hx_queries *q, float *scores,
                    int n, uint8_t *pred, float *probs)
{
    int C = q->n_classes, rc = 0;
    if (C > 256)
        return hx_err(HX_EINVAL, "%d classes do not fit an 8-bit label map", C);
    /* fixed chunks (not per thread count), so results never depend on the thread count */
    int chunk = 8192, nchunks = (n + chunk - 1) / chunk;
    float *keep = hx_malloc(sizeof(float) * C, "class mask");
    double *area = hx_calloc((size_t)(nchunks ? nchunks : 1) * C, sizeof(double), "class areas");
    if (!keep || !area) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int c = 0; c < C; c++)
        keep[c] = 1;
    struct decide_job jb = {decider_make(p, q, keep), scores, n, chunk, 0,
                            uses_area(p) ? area : NULL, pred, probs};
    int threads = par_threads((size_t)n * q->bank->n_classes);
    hx_parallel_for(nchunks, threads, decide_range, &jb);
    if ((rc = jb.rc))
        goto done;
    if (uses_area(p)) {
        area_keep(p, C, nchunks, area, keep);
        jb.area = NULL; /* then decide again */
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

static int feats_alloc(struct hx_dense_feats *f, int nw, int T, int E, int zero)
{
    size_t nd = (size_t)nw * T * E;
    memset(f, 0, sizeof *f);
    f->nw = nw, f->T = T, f->E = E;
    f->win = hx_calloc(nw, sizeof *f->win, "windows");
    f->grid = hx_calloc((size_t)nw * 2, sizeof *f->grid, "window grids");
    f->dense = zero ? hx_calloc(nd, sizeof *f->dense, "dense tokens")
                    : hx_malloc(nd * sizeof *f->dense, "dense tokens");
    f->pooled = hx_calloc((size_t)nw * E, sizeof *f->pooled, "pooled embeddings");
    if (!f->win || !f->grid || !f->dense || !f->pooled) {
        hx_dense_feats_free(f);
        return HX_ENOMEM;
    }
    return 0;
}

int hx_dense_feats_alloc(struct hx_dense_feats *f, int nw, int T, int E)
{
    return feats_alloc(f, nw, T, E, 1);
}

int hx_dense_feats_alloc_unset(struct hx_dense_feats *f, int nw, int T, int E)
{
    return feats_alloc(f, nw, T, E, 0);
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

/* The streamed form of steps 4-6 when no full-size map is asked for (no probabilities, no
 * PAMR): output rows are produced in order, each from two view rows, each view row from its
 * windows' rows, and decided at once, so nothing larger than a few rows per name leaves the
 * cache. Every value is computed by the same float operations, in the same order, as the
 * map-by-map path (window resize-and-add, division by the count, resize to the output), so
 * the labels are identical. */
struct stream_job {
    struct decider d;
    const struct hx_dense_feats *f;
    const float *grid;     /* [nw][N, gh*gw] */
    const float *count;    /* [H, W] */
    const float *rcp;      /* [H, W]: 1 / count */
    const uint8_t *pow2;   /* [H]: every count of the row is a power of two, so x * rcp == x / count */
    const size_t *goff;    /* [nw]: offset of each window's block in grid */
    struct hx_lerp *wx, *wy; /* [nw]: window taps along x (gw -> width) and y (gh -> height) */
    struct hx_lerp ox, oy;   /* view -> output */
    int N, W, out_h, out_w, rows; /* rows: output rows per parallel chunk */
    int wmax;              /* widest window */
    const uint8_t *redo;   /* second pass: rows holding a pixel to decide again, or NULL */
    uint8_t *best;         /* [out_h * out_w] first-pass argmax classes: written, then read */
    uint8_t *pred;
    double *area;          /* [nchunks][C] first-pass argmax areas, or NULL */
    int rc;
};

/* Per-thread row caches: a row is computed once and kept while the rows that use it are
 * consecutive (slot = row & 1). */
struct stream_buf {
    float *wrow;   /* [nw][N][2][wmax]: window rows interpolated along x */
    int *whave;    /* [nw][N][2] */
    float *orow;   /* [N][2][out_w]: view rows resized along x to the output width */
    int *ohave;    /* [N][2] */
    float *view;   /* [W]: one view row of one name */
    float *scores; /* [N][out_w]: one output row, all names */
    uint8_t *lab;  /* [out_w]: second-pass labels */
    float *cls;    /* decide_block's scratch */
};

HX_CLONES static const float *window_row(const struct stream_job *j, struct stream_buf *b,
                                         int w, int k, int gy)
{
    const struct hx_dense_feats *f = j->f;
    size_t slot = ((size_t)w * j->N + k) * 2 + (gy & 1);
    float *t = b->wrow + slot * j->wmax;
    if (b->whave[slot] != gy) {
        int gh = f->grid[2 * w], gw = f->grid[2 * w + 1];
        hx_lerp_row(&j->wx[w], j->grid + j->goff[w] + ((size_t)k * gh + gy) * gw, t);
        b->whave[slot] = gy;
    }
    return t;
}

/* View row y of name k resized along x to the output width. */
HX_CLONES static const float *output_row(const struct stream_job *j, struct stream_buf *b, int k,
                                         int y)
{
    const struct hx_dense_feats *f = j->f;
    size_t slot = (size_t)k * 2 + (y & 1);
    float *t = b->orow + slot * j->out_w, *v = b->view;
    if (b->ohave[slot] == y)
        return t;
    memset(v, 0, sizeof(float) * j->W);
    for (int w = 0; w < f->nw; w++) {
        const struct hx_window *win = &f->win[w];
        if (y < win->y1 || y >= win->y2)
            continue;
        int yy = y - win->y1, ow = win->x2 - win->x1;
        const struct hx_lerp *ty = &j->wy[w];
        const float *t0 = window_row(j, b, w, k, ty->i0[yy]);
        const float *t1 = window_row(j, b, w, k, ty->i1[yy]);
        float wy0 = ty->l0[yy], wy1 = ty->l1[yy], *o = v + win->x1;
        for (int x = 0; x < ow; x++)
            o[x] += t0[x] * wy0 + t1[x] * wy1;
    }
    if (j->pow2[y]) { /* the same value as the division, which is several times slower */
        const float *rcp = j->rcp + (size_t)y * j->W;
        for (int x = 0; x < j->W; x++)
            v[x] *= rcp[x];
    } else {
        const float *cnt = j->count + (size_t)y * j->W;
        for (int x = 0; x < j->W; x++)
            v[x] /= cnt[x];
    }
    hx_lerp_row(&j->ox, v, t);
    b->ohave[slot] = y;
    return t;
}

static void stream_buf_free(struct stream_buf *b)
{
    free(b->wrow), free(b->whave), free(b->orow), free(b->ohave), free(b->view);
    free(b->scores), free(b->lab), free(b->cls);
}

static int stream_buf_init(const struct stream_job *j, struct stream_buf *b)
{
    const struct hx_dense_feats *f = j->f;
    size_t nw = (size_t)f->nw, N = (size_t)j->N, ow = (size_t)j->out_w;
    memset(b, 0, sizeof *b);
    b->wrow = malloc(sizeof(float) * nw * N * 2 * j->wmax);
    b->whave = malloc(sizeof(int) * nw * N * 2);
    b->orow = malloc(sizeof(float) * N * 2 * ow);
    b->ohave = malloc(sizeof(int) * N * 2);
    b->view = malloc(sizeof(float) * j->W);
    b->scores = malloc(sizeof(float) * N * ow);
    b->lab = malloc(ow);
    if (!b->wrow || !b->whave || !b->orow || !b->ohave || !b->view || !b->scores || !b->lab ||
        !(b->cls = decide_scratch(j->d.q))) {
        stream_buf_free(b);
        return HX_ENOMEM;
    }
    for (size_t i = 0; i < nw * N * 2; i++)
        b->whave[i] = -1;
    for (size_t i = 0; i < N * 2; i++)
        b->ohave[i] = -1;
    return 0;
}

HX_CLONES static void stream_range(void *ctx, int c0, int c1)
{
    struct stream_job *j = ctx;
    int C = j->d.q->n_classes, ow = j->out_w;
    struct stream_buf b;
    if (stream_buf_init(j, &b)) {
        j->rc = HX_ENOMEM;
        return;
    }
    for (int c = c0; c < c1; c++) {
        int r1 = (c + 1) * j->rows < j->out_h ? (c + 1) * j->rows : j->out_h;
        for (int r = c * j->rows; r < r1; r++) {
            if (j->redo && !j->redo[r])
                continue;
            float wy0 = j->oy.l0[r], wy1 = j->oy.l1[r];
            for (int k = 0; k < j->N; k++) {
                const float *t0 = output_row(j, &b, k, j->oy.i0[r]);
                const float *t1 = output_row(j, &b, k, j->oy.i1[r]);
                float *o = b.scores + (size_t)k * ow;
                for (int x = 0; x < ow; x++)
                    o[x] = t0[x] * wy0 + t1[x] * wy1;
            }
            size_t at = (size_t)r * ow;
            if (!j->redo) {
                decide_block(&j->d, b.cls, b.scores, (size_t)ow, ow, j->pred + at,
                             j->best ? j->best + at : NULL,
                             j->area ? j->area + (size_t)c * C : NULL, NULL, 0);
                continue;
            }
            /* second pass: only the pixels whose first-pass class lost its probability change */
            decide_block(&j->d, b.cls, b.scores, (size_t)ow, ow, b.lab, NULL, NULL, NULL, 0);
            for (int x = 0; x < ow; x++)
                if (j->d.keep[j->best[at + x]] == 0)
                    j->pred[at + x] = b.lab[x];
        }
    }
    stream_buf_free(&b);
}

/* rcp = 1 / count, and per row whether every count is a power of two (then x * rcp is exactly
 * x / count). Counts are >= 1, so normal floats. */
HX_CLONES static void count_reciprocals(const float *count, int H, int W, float *rcp,
                                        uint8_t *pow2)
{
    for (int y = 0; y < H; y++) {
        const float *c = count + (size_t)y * W;
        float *r = rcp + (size_t)y * W;
        uint32_t mant = 0;
        for (int x = 0; x < W; x++) {
            uint32_t bits;
            memcpy(&bits, &c[x], 4);
            mant |= bits & 0x7fffffu;
            r[x] = 1.0f / c[x];
        }
        pow2[y] = mant == 0;
    }
}

static int stream_predict(const struct hx_dense_params *p, const struct hx_queries *q,
                          const struct hx_dense_feats *f, const float *grid, const float *count,
                          const size_t *goff, int N, int out_h, int out_w, uint8_t *pred)
{
    int nw = f->nw, H = f->view_h, W = f->view_w, C = q->n_classes, rc = 0;
    int rows = 8, nchunks = (out_h + rows - 1) / rows; /* fixed: results never depend on threads */
    struct hx_lerp *wt = hx_calloc((size_t)2 * nw, sizeof *wt, "window taps");
    float *keep = hx_malloc(sizeof(float) * C, "class mask");
    double *area = hx_calloc((size_t)nchunks * C, sizeof(double), "class areas");
    uint8_t *best = hx_malloc((size_t)out_h * out_w, "first-pass classes");
    uint8_t *redo = hx_calloc(out_h, 1, "rows to decide again");
    float *rcp = hx_malloc(sizeof(float) * H * W, "window count reciprocals");
    uint8_t *pow2 = hx_malloc(H, "power-of-two rows");
    struct stream_job j = {decider_make(p, q, keep), f, grid, count, rcp, pow2, goff, wt, wt + nw, {0}, {0},
                           N, W, out_h, out_w, rows, 1, NULL, uses_area(p) ? best : NULL, pred,
                           uses_area(p) ? area : NULL, 0};
    if (!wt || !keep || !area || !best || !redo || !rcp || !pow2) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int w = 0; w < nw && !rc; w++)
        if (!(rc = hx_lerp_init(&wt[w], f->grid[2 * w + 1], f->win[w].x2 - f->win[w].x1, 0)))
            rc = hx_lerp_init(&wt[nw + w], f->grid[2 * w], f->win[w].y2 - f->win[w].y1, 0);
    if (rc || (rc = hx_lerp_init(&j.ox, W, out_w, 0)) || (rc = hx_lerp_init(&j.oy, H, out_h, 0)))
        goto done;
    count_reciprocals(count, H, W, rcp, pow2);
    for (int w = 0; w < nw; w++)
        if (f->win[w].x2 - f->win[w].x1 > j.wmax)
            j.wmax = f->win[w].x2 - f->win[w].x1;
    for (int c = 0; c < C; c++)
        keep[c] = 1;
    int threads = par_threads((size_t)N * out_h * out_w);
    hx_parallel_for(nchunks, threads, stream_range, &j);
    if ((rc = j.rc) || !uses_area(p))
        goto done;
    if (!area_keep(p, C, nchunks, area, keep))
        goto done;
    /* second pass, over the rows holding a pixel whose class lost its probability: with the
     * first-pass class kept, the argmax and its probability cannot change */
    int any = 0;
    for (int r = 0; r < out_h; r++)
        for (int x = 0; x < out_w && !redo[r]; x++)
            redo[r] = keep[best[(size_t)r * out_w + x]] == 0, any |= redo[r];
    if (any) {
        j.redo = redo, j.area = NULL;
        hx_parallel_for(nchunks, threads, stream_range, &j);
        rc = j.rc;
    }
done:
    for (int w = 0; wt && w < 2 * nw; w++)
        hx_lerp_free(&wt[w]);
    hx_lerp_free(&j.ox), hx_lerp_free(&j.oy);
    free(wt), free(keep), free(area), free(best), free(redo), free(rcp), free(pow2);
    return rc;
}

/* Step 3 on the token grids: per window, the normalised tokens against the whole text bank
 * in one GEMM, then the ensemble rule, written planar [N, gh*gw] into the window's block of
 * grid. Windows are independent: the cores go to the windows, one BLAS thread each. */
struct score_job {
    const struct hx_queries *q;
    const struct hx_dense_feats *f;
    float tau;
    const float *gdot;  /* [nw, M] global dot products, or NULL */
    const size_t *goff; /* [nw] */
    float *grid;
    int rc;
};

static void score_range(void *ctx, int w0, int w1)
{
    struct score_job *j = ctx;
    const struct hx_text_bank *b = j->q->bank;
    const struct hx_dense_feats *f = j->f;
    int N = b->n_classes, M = b->n_members, E = f->E, T = f->T;
    float *tok = hx_malloc(sizeof(float) * T * E, "tokens");
    float *cos = hx_malloc(sizeof(float) * T * M, "member cosines");
    float *score = hx_malloc(sizeof(float) * T * N, "name scores");
    if (!tok || !cos || !score) {
        j->rc = HX_ENOMEM;
        goto done;
    }
    for (int w = w0; w < w1; w++) {
        int g = f->grid[2 * w] * f->grid[2 * w + 1], rc;
        hx_l2_normalize_rows_to(f->dense + (size_t)w * T * E, g, E, tok);
        hx_score_cos(tok, g, b->emb, M, E, cos);
        if ((rc = hx_ens_scores(b, &j->q->point, cos, g, j->tau,
                                j->gdot ? j->gdot + (size_t)w * M : NULL, score))) {
            j->rc = rc;
            break;
        }
        float *out = j->grid + j->goff[w]; /* [g, N] -> planar [N, g] */
        for (int i = 0; i < g; i++)
            for (int k = 0; k < N; k++)
                out[(size_t)k * g + i] = score[(size_t)i * N + k];
    }
done:
    free(tok), free(cos), free(score);
}

static int score_windows(const struct hx_dense_params *p, const struct hx_queries *q,
                         const struct hx_dense_feats *f, const size_t *goff, float *grid)
{
    const struct hx_text_bank *b = q->bank;
    int M = b->n_members, E = f->E, rc = 0;
    float *gdot = NULL, *pool = NULL;
    if (hx_ens_rule_needs_global(q->point.rule)) {
        gdot = hx_malloc(sizeof(float) * (size_t)f->nw * M, "global dots");
        pool = hx_malloc(sizeof(float) * E, "pooled embedding");
        if (!gdot || !pool) {
            rc = HX_ENOMEM;
            goto done;
        }
        for (int w = 0; w < f->nw; w++) {
            hx_l2_normalize_rows_to(f->pooled + (size_t)w * E, 1, E, pool);
            hx_score_cos(pool, 1, b->emb, M, E, gdot + (size_t)w * M);
        }
    }
    struct score_job j = {q, f, p->logit_scale, gdot, goff, grid, 0};
    /* one window per core at most; with a single window its GEMM keeps the BLAS threads */
    int threads = (size_t)f->nw * f->T * M * E >= (8u << 20) ? hx_default_threads() : 1;
    threads = threads < f->nw ? threads : f->nw;
    int blas = hx_get_threads();
    if (threads > 1)
        hx_set_threads(1);
    hx_parallel_for(f->nw, threads, score_range, &j);
    if (threads > 1)
        hx_set_threads(blas);
    rc = j.rc;
done:
    free(gdot), free(pool);
    return rc;
}

int hx_dense_predict(const struct hx_dense_params *p, const struct hx_queries *q,
                     const struct hx_dense_feats *f, const float *guide, int out_h, int out_w,
                     uint8_t *pred, float *probs)
{
    const struct hx_text_bank *b = q->bank;
    int N = b->n_classes, E = f->E, T = f->T, H = f->view_h, W = f->view_w, rc;
    float *grid = NULL, *maps = NULL, *count = NULL;
    size_t *goff = NULL;
    if ((rc = check_queries(q)))
        return rc;
    if (E != b->dim)
        return hx_err(HX_EINVAL, "the features have %d dimensions, the text bank %d", E, b->dim);
    if (p->pamr.iters > 0 && !guide)
        return hx_err(HX_EINVAL, "PAMR needs the guide image");
    size_t cells = 0, n = (size_t)out_h * out_w;
    goff = hx_malloc(sizeof(size_t) * (f->nw ? f->nw : 1), "window offsets");
    if (!goff)
        return HX_ENOMEM;
    for (int w = 0; w < f->nw; w++) {
        const struct hx_window *win = &f->win[w];
        int g = f->grid[2 * w] * f->grid[2 * w + 1];
        if (win->y1 < 0 || win->x1 < 0 || win->y2 > H || win->x2 > W || win->y1 >= win->y2 ||
            win->x1 >= win->x2 || f->grid[2 * w] < 1 || f->grid[2 * w + 1] < 1 || g > T) {
            rc = hx_err(HX_EFORMAT, "features: window %d does not fit the %dx%d view", w, W, H);
            goto done;
        }
        goff[w] = cells * N;
        cells += (size_t)g;
    }
    grid = hx_malloc(sizeof(float) * cells * N, "name score grids");
    count = hx_calloc((size_t)H * W, sizeof(float), "window counts");
    if (!grid || !count) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int w = 0; w < f->nw; w++) { /* coverage first: a bad layout costs no scoring */
        const struct hx_window *win = &f->win[w];
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
    if ((rc = score_windows(p, q, f, goff, grid)))
        goto done;
    if (!probs && p->pamr.iters <= 0) {
        rc = stream_predict(p, q, f, grid, count, goff, N, out_h, out_w, pred);
        goto done;
    }
    if (!(maps = hx_malloc(sizeof(float) * N * n, "name score maps"))) {
        rc = HX_ENOMEM;
        goto done;
    }
    struct maps_job job = {f, grid, count, N, H, W, out_h, out_w, maps, 0};
    hx_parallel_for(N, par_threads((size_t)N * H * W), maps_range, &job);
    if ((rc = job.rc))
        goto done;
    if (p->pamr.iters > 0 && (rc = hx_pamr(guide, 3, out_h, out_w, maps, N, &p->pamr)))
        goto done;
    rc = hx_dense_decide(p, q, maps, (int)n, pred, probs);
done:
    free(goff), free(grid), free(maps), free(count);
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
