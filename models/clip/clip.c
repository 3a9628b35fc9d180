#include "models/clip/clip.h"

#include "harness/error.h"
#include "harness/featcache.h"
#include "harness/image.h"
#include "harness/nn.h"
#include "harness/safetensors.h"
#include "models/clip/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct block {
    float *ln1_w, *ln1_b;   /* [D] */
    float *qkv_w, *qkv_b;   /* [3D, D], [3D]: q, k, v stacked */
    float *o_w, *o_b;       /* [D, D], [D] */
    float *ln2_w, *ln2_b;   /* [D] */
    float *fc1_w, *fc1_b;   /* [I, D], [I] */
    float *fc2_w, *fc2_b;   /* [D, I], [D] */
};

struct hx_clip {
    struct hx_clip_config cfg;
    char dir[1024];
    unsigned parts;
    float logit_scale;          /* exp of the stored log value */
    /* vision */
    float *class_emb;           /* [D] */
    float *patch_w;             /* [D, 3, P, P] */
    float *pos_emb;             /* [g0*g0 + 1, D] */
    float *pre_ln_w, *pre_ln_b, *post_ln_w, *post_ln_b;
    struct block *vblocks;      /* [L] */
    float *visual_proj;         /* [E, D] */
    float *pos_cache;           /* [1 + gh*gw, D] for the grid below */
    int pos_gh, pos_gw;
    struct hx_vit_ws *ws;       /* encode_image's workspace, kept for the next image */
    /* text */
    float *tok_emb;             /* [V, Dt] */
    float *tpos_emb;            /* [max_positions, Dt] */
    struct block *tblocks;      /* [Lt] */
    float *final_ln_w, *final_ln_b;
    float *text_proj;           /* [E, Dt] */
    struct hx_tokenizer *tok;
    /* bookkeeping */
    struct hx_weights w;        /* every weight array */
    char fingerprint[40];
};

static const char *const variant_names[HX_NVARIANTS] = {"vanilla", "maskclip", "sclip",
                                                        "clearclip", "naclip"};

int hx_variant_parse(const char *name, enum hx_variant *v)
{
    for (int i = 0; i < HX_NVARIANTS; i++)
        if (!strcmp(name, variant_names[i])) {
            *v = (enum hx_variant)i;
            return 0;
        }
    return hx_err(HX_EINVAL,
                  "unknown variant '%s' (expected vanilla, maskclip, sclip, clearclip or naclip)",
                  name);
}

const char *hx_variant_name(enum hx_variant v)
{
    return (unsigned)v < HX_NVARIANTS ? variant_names[v] : "?";
}

/* ---------------------------------------------------------------- loading */

/* Load tensor `name` with the given shape (up to 4 dims) into the model's weight store. */
static int load(struct hx_clip *m, const struct hx_safetensors *st, float **dst, const char *name,
                int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t shape[4] = {d0, d1, d2, d3};
    return hx_weights_load(&m->w, st, dst, name, ndim, shape);
}

/* q, k, v projections stacked into one [3D, D] matrix and [3D] bias. */
static int load_qkv(struct hx_clip *m, const struct hx_safetensors *st, const char *pre, int D,
                    struct block *b)
{
    char name[256];
    const char *parts[3] = {"q", "k", "v"};
    size_t n = (size_t)D * D;
    b->qkv_w = hx_malloc(sizeof(float) * 3 * n, "qkv weights");
    b->qkv_b = hx_malloc(sizeof(float) * 3 * D, "qkv biases");
    if (!b->qkv_w || !b->qkv_b) {
        free(b->qkv_w);
        free(b->qkv_b);
        return HX_ENOMEM;
    }
    int rc = hx_weights_keep(&m->w, b->qkv_w, 3 * n);
    if (rc) {
        free(b->qkv_b);
        return rc;
    }
    if ((rc = hx_weights_keep(&m->w, b->qkv_b, 3 * (size_t)D)))
        return rc;
    for (int i = 0; i < 3; i++) {
        float *w, *bias;
        int64_t sw[2] = {D, D}, sb[1] = {D};
        snprintf(name, sizeof name, "%s.self_attn.%s_proj.weight", pre, parts[i]);
        if ((rc = hx_st_load_f32(st, name, 2, sw, &w)))
            return rc;
        memcpy(b->qkv_w + i * n, w, sizeof(float) * n);
        free(w);
        snprintf(name, sizeof name, "%s.self_attn.%s_proj.bias", pre, parts[i]);
        if ((rc = hx_st_load_f32(st, name, 1, sb, &bias)))
            return rc;
        memcpy(b->qkv_b + i * D, bias, sizeof(float) * D);
        free(bias);
    }
    return 0;
}

static int load_blocks(struct hx_clip *m, const struct hx_safetensors *st, const char *tower,
                       const struct hx_tower_config *c, struct block **out)
{
    int D = c->hidden, I = c->intermediate, rc = 0;
    struct block *b = hx_calloc(c->layers, sizeof *b, "transformer blocks");
    if (!b)
        return HX_ENOMEM;
    *out = b;
    char pre[128], name[256];
#define LOAD(field, suffix, ...)                                                               \
    do {                                                                                       \
        snprintf(name, sizeof name, "%s.%s", pre, suffix);                                     \
        if ((rc = load(m, st, &b[i].field, name, __VA_ARGS__)))                               \
            return rc;                                                                         \
    } while (0)
    for (int i = 0; i < c->layers; i++) {
        snprintf(pre, sizeof pre, "%s.encoder.layers.%d", tower, i);
        LOAD(ln1_w, "layer_norm1.weight", 1, D, 0, 0, 0);
        LOAD(ln1_b, "layer_norm1.bias", 1, D, 0, 0, 0);
        if ((rc = load_qkv(m, st, pre, D, &b[i])))
            return rc;
        LOAD(o_w, "self_attn.out_proj.weight", 2, D, D, 0, 0);
        LOAD(o_b, "self_attn.out_proj.bias", 1, D, 0, 0, 0);
        LOAD(ln2_w, "layer_norm2.weight", 1, D, 0, 0, 0);
        LOAD(ln2_b, "layer_norm2.bias", 1, D, 0, 0, 0);
        LOAD(fc1_w, "mlp.fc1.weight", 2, I, D, 0, 0);
        LOAD(fc1_b, "mlp.fc1.bias", 1, I, 0, 0, 0);
        LOAD(fc2_w, "mlp.fc2.weight", 2, D, I, 0, 0);
        LOAD(fc2_b, "mlp.fc2.bias", 1, D, 0, 0, 0);
    }
#undef LOAD
    return 0;
}

static int load_vision(struct hx_clip *m, const struct hx_safetensors *st)
{
    const struct hx_tower_config *c = &m->cfg.vision;
    int D = c->hidden, P = c->patch_size, g0 = c->image_size / c->patch_size, rc;
    if ((rc = load(m, st, &m->class_emb, "vision_model.embeddings.class_embedding", 1, D, 0, 0, 0)) ||
        (rc = load(m, st, &m->patch_w, "vision_model.embeddings.patch_embedding.weight", 4, D,
                   c->channels, P, P)) ||
        (rc = load(m, st, &m->pos_emb, "vision_model.embeddings.position_embedding.weight", 2,
                   (int64_t)g0 * g0 + 1, D, 0, 0)) ||
        (rc = load(m, st, &m->pre_ln_w, "vision_model.pre_layrnorm.weight", 1, D, 0, 0, 0)) ||
        (rc = load(m, st, &m->pre_ln_b, "vision_model.pre_layrnorm.bias", 1, D, 0, 0, 0)) ||
        (rc = load_blocks(m, st, "vision_model", c, &m->vblocks)) ||
        (rc = load(m, st, &m->post_ln_w, "vision_model.post_layernorm.weight", 1, D, 0, 0, 0)) ||
        (rc = load(m, st, &m->post_ln_b, "vision_model.post_layernorm.bias", 1, D, 0, 0, 0)) ||
        (rc = load(m, st, &m->visual_proj, "visual_projection.weight", 2, m->cfg.projection_dim,
                   D, 0, 0)))
        return rc;
    return 0;
}

static int load_text(struct hx_clip *m, const struct hx_safetensors *st)
{
    const struct hx_tower_config *c = &m->cfg.text;
    int D = c->hidden, rc;
    if ((rc = load(m, st, &m->tok_emb, "text_model.embeddings.token_embedding.weight", 2,
                   c->vocab_size, D, 0, 0)) ||
        (rc = load(m, st, &m->tpos_emb, "text_model.embeddings.position_embedding.weight", 2,
                   c->max_positions, D, 0, 0)) ||
        (rc = load_blocks(m, st, "text_model", c, &m->tblocks)) ||
        (rc = load(m, st, &m->final_ln_w, "text_model.final_layer_norm.weight", 1, D, 0, 0, 0)) ||
        (rc = load(m, st, &m->final_ln_b, "text_model.final_layer_norm.bias", 1, D, 0, 0, 0)) ||
        (rc = load(m, st, &m->text_proj, "text_projection.weight", 2, m->cfg.projection_dim, D,
                   0, 0)))
        return rc;
    return 0;
}

int hx_clip_open(struct hx_clip **out, const char *dir, unsigned parts)
{
    *out = NULL;
    struct hx_safetensors *st = NULL;
    char path[1200];
    struct hx_clip *m = hx_calloc(1, sizeof *m, "model");
    if (!m)
        return HX_ENOMEM;
    int rc;
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    m->parts = parts;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if ((rc = hx_clip_config_load(&m->cfg, path)))
        goto fail;
    if (strcmp(m->cfg.model_type, "clip") && strcmp(m->cfg.model_type, "clip_model")) {
        rc = hx_err(HX_EFORMAT, "%s: model_type is '%s', not a CLIP model", path,
                    m->cfg.model_type);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((rc = hx_st_open(&st, path)))
        goto fail;
    if ((parts & HX_CLIP_VISION) && (rc = load_vision(m, st)))
        goto fail;
    if ((parts & HX_CLIP_TEXT) && (rc = load_text(m, st)))
        goto fail;
    float *ls;
    int64_t scalar[1] = {1};
    m->logit_scale = 100.0f;
    if (hx_st_find(st, "logit_scale")) {
        if ((rc = hx_st_load_f32(st, "logit_scale", -1, scalar, &ls)))
            goto fail;
        m->logit_scale = expf(ls[0]);
        free(ls);
    }
    char fp[24];
    if ((rc = hx_model_fingerprint(dir, fp, sizeof fp)))
        goto fail;
    snprintf(m->fingerprint, sizeof m->fingerprint, "clip-%s", fp);
    hx_st_free(st);
    *out = m;
    return 0;
fail:
    hx_st_free(st);
    hx_clip_free(m);
    return rc;
}

void hx_clip_free(struct hx_clip *m)
{
    if (!m)
        return;
    hx_weights_free(&m->w);
    free(m->vblocks);
    free(m->tblocks);
    free(m->pos_cache);
    hx_vit_ws_free(m->ws);
    hx_tokenizer_free(m->tok);
    free(m);
}

const struct hx_clip_config *hx_clip_cfg(const struct hx_clip *m) { return &m->cfg; }
float hx_clip_logit_scale(const struct hx_clip *m) { return m->logit_scale; }
const char *hx_clip_fingerprint(const struct hx_clip *m) { return m->fingerprint; }
size_t hx_clip_weight_bytes(const struct hx_clip *m) { return m->w.bytes; }

/* ---------------------------------------------------------------- shared block code */

static void activation(enum hx_act act, float *x, size_t n)
{
    switch (act) {
    case HX_ACT_QUICK_GELU: hx_quick_gelu(x, n); break;
    case HX_ACT_GELU: hx_gelu_erf(x, n); break;
    case HX_ACT_GELU_TANH: hx_gelu_tanh(x, n); break;
    }
}

/* x += fc2(act(fc1(ln2(x)))) over n rows; y [n, D] and h [n, I] are workspace. */
static void mlp_residual(const struct block *b, const struct hx_tower_config *c, float *x, int n,
                         float *y, float *h)
{
    hx_layernorm(x, n, c->hidden, b->ln2_w, b->ln2_b, c->ln_eps, y);
    hx_linear(y, n, c->hidden, b->fc1_w, b->fc1_b, c->intermediate, h);
    activation(c->act, h, (size_t)n * c->intermediate);
    hx_linear_acc(h, n, c->intermediate, b->fc2_w, b->fc2_b, c->hidden, x);
}

/* ---------------------------------------------------------------- vision */

struct hx_vit_ws {
    int T;
    float *y;      /* [T, D]   layer-norm output, scratch */
    float *qkv;    /* [T, 3D] */
    float *attn;   /* [T, D]   attention output */
    float *h;      /* [T, I]   MLP hidden */
    float *scores; /* [T, T] */
    float *bias;   /* [T, T]   NACLIP prior */
    float *cols;   /* [gh*gw, 3*P*P] im2col, sized for T */
    float *x;      /* [T, D]   the residual stream of encode_image */
    float *last;   /* [T, D]   output of a variant's last block */
    float *mem;
};

int hx_vit_ws_new(struct hx_vit_ws **out, const struct hx_clip *m, int T)
{
    const struct hx_tower_config *c = &m->cfg.vision;
    size_t D = c->hidden, I = c->intermediate, K = (size_t)c->channels * c->patch_size * c->patch_size;
    size_t t = T, sizes[] = {t * D, t * 3 * D, t * D, t * I, t * t, t * t, t * K, t * D, t * D};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        total += sizes[i];
    struct hx_vit_ws *w = hx_calloc(1, sizeof *w, "vision workspace");
    if (!w)
        return HX_ENOMEM;
    w->mem = hx_malloc(total * sizeof(float), "vision workspace");
    if (!w->mem) {
        free(w);
        return HX_ENOMEM;
    }
    float *p = w->mem;
    float **slots[] = {&w->y, &w->qkv, &w->attn, &w->h, &w->scores, &w->bias, &w->cols, &w->x, &w->last};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        *slots[i] = p;
        p += sizes[i];
    }
    w->T = T;
    *out = w;
    return 0;
}

void hx_vit_ws_free(struct hx_vit_ws *ws)
{
    if (ws)
        free(ws->mem);
    free(ws);
}

const float *hx_clip_pos_embed(struct hx_clip *m, int gh, int gw)
{
    const struct hx_tower_config *c = &m->cfg.vision;
    int g0 = c->image_size / c->patch_size, D = c->hidden;
    if (gh == g0 && gw == g0)
        return m->pos_emb;
    if (m->pos_cache && m->pos_gh == gh && m->pos_gw == gw)
        return m->pos_cache;
    float *cache = realloc(m->pos_cache, sizeof(float) * ((size_t)gh * gw + 1) * D);
    if (cache)
        m->pos_cache = cache;
    m->pos_gh = m->pos_gw = 0;
    float *planar = malloc(sizeof(float) * (size_t)D * g0 * g0);
    float *resized = malloc(sizeof(float) * (size_t)D * gh * gw);
    if (!cache || !planar || !resized) {
        free(planar);
        free(resized);
        return NULL;
    }
    /* [g0*g0, D] token rows -> planar [D, g0, g0] -> bicubic -> back to rows */
    for (int p = 0; p < g0 * g0; p++)
        for (int d = 0; d < D; d++)
            planar[(size_t)d * g0 * g0 + p] = m->pos_emb[(size_t)(p + 1) * D + d];
    if (hx_resize_bicubic(planar, D, g0, g0, resized, gh, gw, 0)) {
        free(planar);
        free(resized);
        return NULL;
    }
    memcpy(cache, m->pos_emb, sizeof(float) * D);
    for (int p = 0; p < gh * gw; p++)
        for (int d = 0; d < D; d++)
            cache[(size_t)(p + 1) * D + d] = resized[(size_t)d * gh * gw + p];
    free(planar);
    free(resized);
    m->pos_gh = gh;
    m->pos_gw = gw;
    return cache;
}

int hx_clip_vision_embed(struct hx_clip *m, struct hx_vit_ws *ws, const float *img, int H, int W,
                         float *x, int *gh, int *gw)
{
    const struct hx_tower_config *c = &m->cfg.vision;
    int P = c->patch_size, D = c->hidden;
    *gh = H / P;
    *gw = W / P;
    int T = 1 + *gh * *gw;
    if (*gh < 1 || *gw < 1)
        return hx_err(HX_EINVAL, "image of %dx%d is smaller than one %dx%d patch", W, H, P, P);
    if (T > ws->T)
        return hx_err(HX_EINTERNAL, "workspace for %d tokens used for %d", ws->T, T);
    const float *pos = hx_clip_pos_embed(m, *gh, *gw);
    if (!pos)
        return hx_err(HX_ENOMEM, "out of memory interpolating position embeddings");
    memcpy(x, m->class_emb, sizeof(float) * D);
    hx_patch_embed(img, c->channels, H, W, P, m->patch_w, NULL, D, ws->cols, x + D);
    for (size_t i = 0; i < (size_t)T * D; i++)
        x[i] += pos[i];
    return 0;
}

void hx_clip_vision_pre_ln(const struct hx_clip *m, float *x, int T)
{
    const struct hx_tower_config *c = &m->cfg.vision;
    hx_layernorm(x, T, c->hidden, m->pre_ln_w, m->pre_ln_b, c->ln_eps, x);
}

static float attn_scale(const struct hx_tower_config *c)
{
    return 1.0f / sqrtf((float)(c->hidden / c->heads));
}

void hx_clip_vision_block(const struct hx_clip *m, struct hx_vit_ws *ws, int i, float *x, int T,
                          float *probs)
{
    const struct hx_tower_config *c = &m->cfg.vision;
    const struct block *b = &m->vblocks[i];
    int D = c->hidden, hd = D / c->heads;
    hx_layernorm(x, T, D, b->ln1_w, b->ln1_b, c->ln_eps, ws->y);
    hx_linear(ws->y, T, D, b->qkv_w, b->qkv_b, 3 * D, ws->qkv);
    hx_attention(ws->qkv, ws->qkv + D, ws->qkv + 2 * D, 3 * D, T, c->heads, hd, attn_scale(c),
                 NULL, 0, ws->scores, ws->attn, probs);
    hx_linear_acc(ws->attn, T, D, b->o_w, b->o_b, D, x);
    mlp_residual(b, c, x, T, ws->y, ws->h);
}

/* NACLIP's prior: exp(-|p - p'|^2 / (2 sigma^2)) between patch tokens, 0 for the class token. */
static void naclip_bias(float *G, int gh, int gw)
{
    int T = 1 + gh * gw;
    float inv = 1.0f / (2 * HX_NACLIP_SIGMA * HX_NACLIP_SIGMA);
    memset(G, 0, sizeof(float) * T);
    for (int p = 0; p < gh * gw; p++) {
        float *row = G + (size_t)(p + 1) * T;
        row[0] = 0;
        int r = p / gw, col = p % gw;
        for (int q = 0; q < gh * gw; q++) {
            int dr = r - q / gw, dc = col - q % gw;
            row[q + 1] = expf(-(float)(dr * dr + dc * dc) * inv);
        }
    }
}

void hx_clip_vision_last(const struct hx_clip *m, struct hx_vit_ws *ws, enum hx_variant v,
                         const float *x, float *out, int gh, int gw)
{
    const struct hx_tower_config *c = &m->cfg.vision;
    const struct block *b = &m->vblocks[c->layers - 1];
    int D = c->hidden, hd = D / c->heads, T = 1 + gh * gw, H = c->heads;
    float s = attn_scale(c), *q = ws->qkv, *k = ws->qkv + D, *val = ws->qkv + 2 * D;
    size_t n = (size_t)T * D;
    hx_layernorm(x, T, D, b->ln1_w, b->ln1_b, c->ln_eps, ws->y);
    hx_linear(ws->y, T, D, b->qkv_w, b->qkv_b, 3 * D, ws->qkv);
    switch (v) {
    case HX_VANILLA:
        hx_attention(q, k, val, 3 * D, T, H, hd, s, NULL, 0, ws->scores, ws->attn, NULL);
        break;
    case HX_MASKCLIP: /* attention output = v */
        for (int t = 0; t < T; t++)
            memcpy(ws->attn + (size_t)t * D, val + (size_t)t * 3 * D, sizeof(float) * D);
        break;
    case HX_SCLIP: /* (softmax(s q q^T) + softmax(s k k^T)) v, as the sum of two attentions */
        hx_attention(q, q, val, 3 * D, T, H, hd, s, NULL, 0, ws->scores, ws->attn, NULL);
        hx_attention(k, k, val, 3 * D, T, H, hd, s, NULL, 0, ws->scores, ws->y, NULL);
        for (size_t i = 0; i < n; i++)
            ws->attn[i] += ws->y[i];
        break;
    case HX_CLEARCLIP:
        hx_attention(q, q, val, 3 * D, T, H, hd, s, NULL, 0, ws->scores, ws->attn, NULL);
        break;
    case HX_NACLIP:
        naclip_bias(ws->bias, gh, gw);
        hx_attention(k, k, val, 3 * D, T, H, hd, s, ws->bias, 0, ws->scores, ws->attn, NULL);
        break;
    case HX_NVARIANTS:
        break;
    }
    if (v == HX_CLEARCLIP || v == HX_NACLIP) { /* no residual, no MLP */
        hx_linear(ws->attn, T, D, b->o_w, b->o_b, D, out);
        return;
    }
    memcpy(out, x, sizeof(float) * n);
    hx_linear_acc(ws->attn, T, D, b->o_w, b->o_b, D, out);
    mlp_residual(b, c, out, T, ws->y, ws->h);
}

void hx_clip_vision_project(const struct hx_clip *m, struct hx_vit_ws *ws, const float *x,
                            int rows, float *out)
{
    const struct hx_tower_config *c = &m->cfg.vision;
    hx_layernorm(x, rows, c->hidden, m->post_ln_w, m->post_ln_b, c->ln_eps, ws->y);
    hx_linear(ws->y, rows, c->hidden, m->visual_proj, NULL, m->cfg.projection_dim, out);
}

int hx_clip_encode_image(struct hx_clip *m, const float *img, int H, int W,
                         enum hx_variant variant, float *pooled, float *dense, int *gh_out,
                         int *gw_out)
{
    if (!(m->parts & HX_CLIP_VISION))
        return hx_err(HX_EINVAL, "%s: the vision tower was not loaded", m->dir);
    const struct hx_tower_config *c = &m->cfg.vision;
    int P = c->patch_size, gh = H / P, gw = W / P, T = 1 + gh * gw, D = c->hidden, rc;
    if (gh < 1 || gw < 1)
        return hx_err(HX_EINVAL, "image of %dx%d is smaller than one %dx%d patch", W, H, P, P);
    if (!m->ws || m->ws->T < T) {
        hx_vit_ws_free(m->ws);
        m->ws = NULL;
        if ((rc = hx_vit_ws_new(&m->ws, m, T)))
            return rc;
    }
    struct hx_vit_ws *ws = m->ws;
    float *x = ws->x;
    if ((rc = hx_clip_vision_embed(m, ws, img, H, W, x, &gh, &gw)))
        goto done;
    hx_clip_vision_pre_ln(m, x, T);
    for (int i = 0; i < c->layers - 1; i++)
        hx_clip_vision_block(m, ws, i, x, T, NULL);
    if (dense) {
        hx_clip_vision_last(m, ws, variant, x, ws->last, gh, gw);
        hx_clip_vision_project(m, ws, ws->last + D, gh * gw, dense);
    }
    if (pooled) {
        if (!dense || variant != HX_VANILLA)
            hx_clip_vision_last(m, ws, HX_VANILLA, x, ws->last, gh, gw);
        hx_clip_vision_project(m, ws, ws->last, 1, pooled);
    }
    if (gh_out)
        *gh_out = gh;
    if (gw_out)
        *gw_out = gw;
done:
    return rc;
}

int hx_clip_encode_view(void *ctx, const float *img, int H, int W, float *dense, float *pooled,
                        int *gh, int *gw)
{
    struct hx_clip_view *v = ctx;
    return hx_clip_encode_image(v->model, img, H, W, v->variant, pooled, dense, gh, gw);
}

/* ---------------------------------------------------------------- text */

#define TEXT_BATCH 128

struct text_item {
    int index, eot;
};

static int by_eot(const void *a, const void *b)
{
    const struct text_item *x = a, *y = b;
    return x->eot != y->eot ? x->eot - y->eot : x->index - y->index;
}

int hx_clip_encode_tokens(struct hx_clip *m, const int32_t *ids, int n, int ld, float *out)
{
    if (!(m->parts & HX_CLIP_TEXT))
        return hx_err(HX_EINVAL, "%s: the text tower was not loaded", m->dir);
    const struct hx_tower_config *c = &m->cfg.text;
    int D = c->hidden, I = c->intermediate, E = m->cfg.projection_dim, hd = D / c->heads;
    int rc = 0;
    if (n <= 0)
        return 0;
    if (ld > c->max_positions)
        ld = c->max_positions;
    struct text_item *items = hx_malloc(sizeof *items * n, "text order");
    if (!items)
        return HX_ENOMEM;
    for (int t = 0; t < n; t++) {
        const int32_t *row = ids + (size_t)t * ld;
        int eot = 0;
        for (int p = 0; p < ld; p++) {
            if (row[p] < 0 || row[p] >= c->vocab_size) {
                free(items);
                return hx_err(HX_EINVAL, "text %d: token id %d at position %d is outside the "
                              "vocabulary of %d", t, row[p], p, c->vocab_size);
            }
            if (row[p] > row[eot])
                eot = p;
        }
        items[t] = (struct text_item){t, eot};
    }
    qsort(items, n, sizeof *items, by_eot);
    int B = n < TEXT_BATCH ? n : TEXT_BATCH, Tmax = items[n - 1].eot + 1;
    size_t rows = (size_t)B * Tmax;
    float *mem = hx_malloc(sizeof(float) * (rows * (3 * D + 3 * D + I) + (size_t)Tmax * Tmax +
                                            (size_t)B * (D + E)),
                           "text workspace");
    if (!mem) {
        free(items);
        return HX_ENOMEM;
    }
    float *x = mem, *y = x + rows * D, *attn = y + rows * D, *qkv = attn + rows * D;
    float *h = qkv + rows * 3 * D, *scores = h + rows * I, *pool = scores + (size_t)Tmax * Tmax;
    float *proj = pool + (size_t)B * D;
    for (int start = 0; start < n; start += B) {
        int nb = n - start < B ? n - start : B;
        int T = items[start + nb - 1].eot + 1; /* sorted: the last is the longest */
        int R = nb * T;
        for (int j = 0; j < nb; j++) {
            const int32_t *row = ids + (size_t)items[start + j].index * ld;
            for (int p = 0; p < T; p++) {
                float *xr = x + ((size_t)j * T + p) * D;
                /* positions past this text's end token cannot reach it (causal); any valid id */
                int32_t id = p < ld ? row[p] : 0;
                const float *te = m->tok_emb + (size_t)id * D, *pe = m->tpos_emb + (size_t)p * D;
                for (int d = 0; d < D; d++)
                    xr[d] = te[d] + pe[d];
            }
        }
        for (int l = 0; l < c->layers; l++) {
            const struct block *b = &m->tblocks[l];
            hx_layernorm(x, R, D, b->ln1_w, b->ln1_b, c->ln_eps, y);
            hx_linear(y, R, D, b->qkv_w, b->qkv_b, 3 * D, qkv);
            for (int j = 0; j < nb; j++) {
                const float *q = qkv + (size_t)j * T * 3 * D;
                hx_attention(q, q + D, q + 2 * D, 3 * D, T, c->heads, hd, attn_scale(c), NULL, 1,
                             scores, attn + (size_t)j * T * D, NULL);
            }
            hx_linear_acc(attn, R, D, b->o_w, b->o_b, D, x);
            mlp_residual(b, c, x, R, y, h);
        }
        for (int j = 0; j < nb; j++)
            memcpy(pool + (size_t)j * D, x + ((size_t)j * T + items[start + j].eot) * D,
                   sizeof(float) * D);
        hx_layernorm(pool, nb, D, m->final_ln_w, m->final_ln_b, c->ln_eps, pool);
        hx_linear(pool, nb, D, m->text_proj, NULL, E, proj);
        for (int j = 0; j < nb; j++)
            memcpy(out + (size_t)items[start + j].index * E, proj + (size_t)j * E,
                   sizeof(float) * E);
    }
    free(mem);
    free(items);
    return rc;
}

int hx_clip_encode_text(struct hx_clip *m, const char *const *texts, int n, float *out)
{
    int L = m->cfg.text.max_positions, rc;
    if (!m->tok && (rc = hx_tokenizer_open(&m->tok, m->dir)))
        return rc;
    int32_t *ids = hx_calloc((size_t)n * L, sizeof *ids, "token ids");
    if (!ids)
        return HX_ENOMEM;
    for (int i = 0; i < n; i++)
        if ((rc = hx_tokenize(m->tok, texts[i], ids + (size_t)i * L, L)) < 0)
            goto done;
    rc = hx_clip_encode_tokens(m, ids, n, L, out);
done:
    free(ids);
    return rc < 0 ? rc : 0;
}
