#include "models/simseg/simseg.h"

#include "harness/error.h"
#include "harness/featcache.h"
#include "harness/nn.h"
#include "harness/safetensors.h"
#include "models/simseg/wordpiece.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VIT "image_encoder.model.model."
#define TEXT_BATCH 32 /* texts per stacked BERT pass */
#define BERT "text_encoder.model.model."

const float hx_simseg_mean[3] = {0.485f, 0.456f, 0.406f};
const float hx_simseg_std[3] = {0.229f, 0.224f, 0.225f};

/* ---------------------------------------------------------------- config */

void hx_simseg_config_default(struct hx_simseg_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->model_type, sizeof c->model_type, "simseg");
    snprintf(c->variant, sizeof c->variant, "vit-s");
    c->image_size = 288;
    c->patch_size = 16;
    c->vit_hidden = 384;
    c->vit_heads = 6;
    c->vit_layers = 12;
    c->vit_mlp = 1536;
    c->vit_ln_eps = 1e-6f;
    c->pos_tokens = 325;
    c->bert_hidden = 768;
    c->bert_heads = 12;
    c->bert_layers = 12;
    c->bert_intermediate = 3072;
    c->vocab_size = 30522;
    c->max_positions = 512;
    c->type_vocab = 2;
    c->bert_ln_eps = 1e-12f;
    c->max_length = 25;
    c->projection_dim = 512;
    c->image_topk = 5;
}

static int get_int(const cJSON *obj, const char *key, int *dst, const char *path,
                   const char *sect)
{
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    if (!v)
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble || v->valueint <= 0)
        return hx_err(HX_EFORMAT, "%s: %s%s%s must be a positive integer", path, sect,
                      sect[0] ? "." : "", key);
    *dst = v->valueint;
    return 0;
}

static int get_float(const cJSON *obj, const char *key, float *dst, const char *path,
                     const char *sect)
{
    const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    if (!v)
        return 0;
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0))
        return hx_err(HX_EFORMAT, "%s: %s.%s must be a positive number", path, sect, key);
    *dst = (float)v->valuedouble;
    return 0;
}

static int get_str(const cJSON *obj, const char *key, char *dst, size_t n, const char *path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return 0;
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= n)
        return hx_err(HX_EFORMAT, "%s: %s must be a string of fewer than %zu bytes", path, key, n);
    snprintf(dst, n, "%s", v->valuestring);
    return 0;
}

/* Parse a JSON object file of at most 1 MiB; *root is freed by the caller. */
static int read_json(const char *path, cJSON **root)
{
    *root = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return hx_err(HX_EIO, "cannot open %s", path);
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        len = ftell(f);
    if (len < 0 || len > (1 << 20) || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        return hx_err(HX_EFORMAT, "%s: unreadable or larger than 1 MiB", path);
    }
    char *buf = hx_malloc((size_t)len + 1, "config.json");
    if (!buf) {
        fclose(f);
        return HX_ENOMEM;
    }
    size_t got = fread(buf, 1, (size_t)len, f);
    fclose(f);
    buf[got] = 0;
    *root = cJSON_Parse(buf);
    free(buf);
    if (!cJSON_IsObject(*root)) {
        cJSON_Delete(*root);
        *root = NULL;
        return hx_err(HX_EFORMAT, "%s: not a JSON object", path);
    }
    return 0;
}

int hx_simseg_config_load(struct hx_simseg_config *c, const char *path)
{
    hx_simseg_config_default(c);
    c->model_type[0] = 0;
    cJSON *root = NULL;
    int rc = read_json(path, &root);
    if (rc)
        return rc;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if ((rc = get_str(root, "model_type", c->model_type, sizeof c->model_type, path)) ||
        (rc = get_str(root, "variant", c->variant, sizeof c->variant, path)) ||
        (rc = get_int(root, "image_size", &c->image_size, path, "")) ||
        (rc = get_int(root, "patch_size", &c->patch_size, path, "")) ||
        (rc = get_int(root, "projection_dim", &c->projection_dim, path, "")) ||
        (rc = get_int(root, "image_topk", &c->image_topk, path, "")) ||
        (rc = get_int(v, "hidden_size", &c->vit_hidden, path, "vision_config")) ||
        (rc = get_int(v, "num_heads", &c->vit_heads, path, "vision_config")) ||
        (rc = get_int(v, "depth", &c->vit_layers, path, "vision_config")) ||
        (rc = get_int(v, "mlp_dim", &c->vit_mlp, path, "vision_config")) ||
        (rc = get_float(v, "layer_norm_eps", &c->vit_ln_eps, path, "vision_config")) ||
        (rc = get_int(v, "pos_embed_tokens", &c->pos_tokens, path, "vision_config")) ||
        (rc = get_int(t, "hidden_size", &c->bert_hidden, path, "text_config")) ||
        (rc = get_int(t, "num_attention_heads", &c->bert_heads, path, "text_config")) ||
        (rc = get_int(t, "num_hidden_layers", &c->bert_layers, path, "text_config")) ||
        (rc = get_int(t, "intermediate_size", &c->bert_intermediate, path, "text_config")) ||
        (rc = get_int(t, "vocab_size", &c->vocab_size, path, "text_config")) ||
        (rc = get_int(t, "max_position_embeddings", &c->max_positions, path, "text_config")) ||
        (rc = get_int(t, "type_vocab_size", &c->type_vocab, path, "text_config")) ||
        (rc = get_float(t, "layer_norm_eps", &c->bert_ln_eps, path, "text_config")) ||
        (rc = get_int(t, "max_length", &c->max_length, path, "text_config")))
        goto done;
    if (!c->model_type[0]) {
        rc = hx_err(HX_EFORMAT, "%s: no model_type", path);
        goto done;
    }
    int g = c->image_size / c->patch_size, g0 = (int)lround(sqrt(c->pos_tokens - 1.0));
    if (c->image_size % c->patch_size)
        rc = hx_err(HX_EFORMAT, "%s: image_size %d is not a multiple of patch_size %d", path,
                    c->image_size, c->patch_size);
    else if (c->vit_hidden % c->vit_heads)
        rc = hx_err(HX_EFORMAT, "%s: vision_config.hidden_size %d is not divisible by num_heads %d",
                    path, c->vit_hidden, c->vit_heads);
    else if (c->bert_hidden % c->bert_heads)
        rc = hx_err(HX_EFORMAT, "%s: text_config.hidden_size %d is not divisible by "
                    "num_attention_heads %d", path, c->bert_hidden, c->bert_heads);
    else if (g0 * g0 + 1 != c->pos_tokens)
        rc = hx_err(HX_EFORMAT, "%s: vision_config.pos_embed_tokens %d is not 1 + a square", path,
                    c->pos_tokens);
    else if (c->max_length < 2 || c->max_length > c->max_positions)
        rc = hx_err(HX_EFORMAT, "%s: text_config.max_length %d is not in [2, %d]", path,
                    c->max_length, c->max_positions);
    else if (c->image_topk > 64)
        rc = hx_err(HX_EFORMAT, "%s: image_topk %d is larger than 64", path, c->image_topk);
    else if (g < 1)
        rc = hx_err(HX_EFORMAT, "%s: image_size %d is smaller than a patch", path, c->image_size);
done:
    cJSON_Delete(root);
    return rc;
}

int hx_simseg_probe(const char *dir)
{
    char path[1200];
    cJSON *root = NULL;
    snprintf(path, sizeof path, "%s/config.json", dir);
    int yes = 0;
    if (read_json(path, &root) == 0) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "model_type");
        yes = cJSON_IsString(t) && !strcmp(t->valuestring, "simseg");
    }
    hx_err_clear();
    cJSON_Delete(root);
    return yes;
}

/* ---------------------------------------------------------------- model */

struct vit_block {
    float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    float *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
};

struct bert_layer {
    float *qkv_w, *qkv_b;       /* [3Dt, Dt], [3Dt]: query, key, value stacked */
    float *o_w, *o_b, *ln1_w, *ln1_b;
    float *i_w, *i_b, *o2_w, *o2_b, *ln2_w, *ln2_b;
};

struct hx_simseg {
    struct hx_simseg_config cfg;
    char dir[1024];
    /* vision */
    float *cls;                 /* [D] */
    float *patch_w, *patch_b;   /* [D, 3, P, P], [D] */
    float *pos;                 /* [T, D] (resized to the model grid) */
    struct vit_block *vb;       /* [layers] */
    float *norm_w, *norm_b;
    float *img_proj;            /* [E, D] */
    /* text */
    float *word, *tpos, *ttype; /* [V, Dt], [max_positions, Dt], [type_vocab, Dt] */
    float *emb_ln_w, *emb_ln_b;
    struct bert_layer *tl;      /* [layers] */
    float *txt_proj;            /* [E, Dt] */
    struct hx_wordpiece *tok;
    /* workspaces */
    float *vws, *tws;
    float *vx, *vy, *vqkv, *vattn, *vh, *vscores, *vcols, *vtok, *vproj;
    float *tx, *ty, *tqkv, *tattn, *th, *tscores, *tbias, *tproj;
    /* bookkeeping */
    struct hx_weights w;        /* every weight array */
    char fingerprint[48];
};

static int load(struct hx_simseg *m, const struct hx_safetensors *st, float **dst,
                const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t shape[4] = {d0, d1, d2, d3};
    return hx_weights_load(&m->w, st, dst, name, ndim, shape);
}

static int load_vision(struct hx_simseg *m, const struct hx_safetensors *st)
{
    const struct hx_simseg_config *c = &m->cfg;
    int D = c->vit_hidden, P = c->patch_size, I = c->vit_mlp, E = c->projection_dim;
    int g = c->image_size / P, g0 = (int)lround(sqrt(c->pos_tokens - 1.0)), rc;
    char name[256];
    float *pos = NULL;
    if ((rc = load(m, st, &m->cls, VIT "cls_token", 3, 1, 1, D, 0)) ||
        (rc = load(m, st, &m->patch_w, VIT "patch_embed.proj.weight", 4, D, 3, P, P)) ||
        (rc = load(m, st, &m->patch_b, VIT "patch_embed.proj.bias", 1, D, 0, 0, 0)) ||
        (rc = load(m, st, &pos, VIT "pos_embed", 3, 1, c->pos_tokens, D, 0)) ||
        (rc = load(m, st, &m->norm_w, VIT "norm.weight", 1, D, 0, 0, 0)) ||
        (rc = load(m, st, &m->norm_b, VIT "norm.bias", 1, D, 0, 0, 0)) ||
        (rc = load(m, st, &m->img_proj, "image_projection.linear.weight", 2, E, D, 0, 0)))
        return rc;
    if (g0 == g) {
        m->pos = pos;
    } else {
        /* interpolate_pos_embed: class row kept, the g0 x g0 grid resized bicubically */
        size_t T = (size_t)g * g + 1;
        float *planar = hx_malloc(sizeof(float) * (size_t)D * g0 * g0, "pos_embed resize");
        float *resized = hx_malloc(sizeof(float) * (size_t)D * g * g, "pos_embed resize");
        m->pos = hx_malloc(sizeof(float) * T * D, "pos_embed");
        if (!planar || !resized || !m->pos) {
            free(planar);
            free(resized);
            free(m->pos);
            m->pos = NULL;
            return HX_ENOMEM;
        }
        for (int p = 0; p < g0 * g0; p++)
            for (int d = 0; d < D; d++)
                planar[(size_t)d * g0 * g0 + p] = pos[(size_t)(p + 1) * D + d];
        rc = hx_resize_bicubic(planar, D, g0, g0, resized, g, g, 0);
        if (!rc) {
            memcpy(m->pos, pos, sizeof(float) * D);
            for (int p = 0; p < g * g; p++)
                for (int d = 0; d < D; d++)
                    m->pos[(size_t)(p + 1) * D + d] = resized[(size_t)d * g * g + p];
        }
        free(planar);
        free(resized);
        if (rc) {
            free(m->pos);
            m->pos = NULL;
            return rc;
        }
        if ((rc = hx_weights_keep(&m->w, m->pos, T * D)))
            return rc;
    }
    m->vb = hx_calloc(c->vit_layers, sizeof *m->vb, "ViT blocks");
    if (!m->vb)
        return HX_ENOMEM;
    for (int i = 0; i < c->vit_layers; i++) {
        struct vit_block *b = &m->vb[i];
#define L(field, suffix, ...)                                                                  \
    do {                                                                                       \
        snprintf(name, sizeof name, VIT "blocks.%d.%s", i, suffix);                            \
        if ((rc = load(m, st, &b->field, name, __VA_ARGS__)))                                 \
            return rc;                                                                         \
    } while (0)
        L(ln1_w, "norm1.weight", 1, D, 0, 0, 0);
        L(ln1_b, "norm1.bias", 1, D, 0, 0, 0);
        L(qkv_w, "attn.qkv.weight", 2, 3 * D, D, 0, 0);
        L(qkv_b, "attn.qkv.bias", 1, 3 * D, 0, 0, 0);
        L(proj_w, "attn.proj.weight", 2, D, D, 0, 0);
        L(proj_b, "attn.proj.bias", 1, D, 0, 0, 0);
        L(ln2_w, "norm2.weight", 1, D, 0, 0, 0);
        L(ln2_b, "norm2.bias", 1, D, 0, 0, 0);
        L(fc1_w, "mlp.fc1.weight", 2, I, D, 0, 0);
        L(fc1_b, "mlp.fc1.bias", 1, I, 0, 0, 0);
        L(fc2_w, "mlp.fc2.weight", 2, D, I, 0, 0);
        L(fc2_b, "mlp.fc2.bias", 1, D, 0, 0, 0);
#undef L
    }
    /* workspace */
    size_t T = (size_t)g * g + 1, K = 3 * (size_t)P * P;
    size_t sizes[] = {T * D, T * D, T * 3 * D, T * D, T * I, T * T, (T - 1) * K, (T - 1) * D,
                      (T - 1) * (size_t)E};
    float **slots[] = {&m->vx, &m->vy, &m->vqkv, &m->vattn, &m->vh, &m->vscores, &m->vcols,
                       &m->vtok, &m->vproj};
    size_t total = 0;
    for (size_t i = 0; i < 9; i++)
        total += sizes[i];
    if (!(m->vws = hx_malloc(total * sizeof(float), "ViT workspace")))
        return HX_ENOMEM;
    float *p = m->vws;
    for (size_t i = 0; i < 9; i++) {
        *slots[i] = p;
        p += sizes[i];
    }
    return 0;
}

/* query, key and value of one BERT layer stacked into [3Dt, Dt] and [3Dt] */
static int load_bert_qkv(struct hx_simseg *m, const struct hx_safetensors *st, int layer,
                         struct bert_layer *b)
{
    int D = m->cfg.bert_hidden, rc;
    size_t n = (size_t)D * D;
    static const char *const part[3] = {"query", "key", "value"};
    b->qkv_w = hx_malloc(sizeof(float) * 3 * n, "BERT qkv");
    if (!b->qkv_w || (rc = hx_weights_keep(&m->w, b->qkv_w, 3 * n)))
        return b->qkv_w ? rc : HX_ENOMEM;
    b->qkv_b = hx_malloc(sizeof(float) * 3 * D, "BERT qkv");
    if (!b->qkv_b || (rc = hx_weights_keep(&m->w, b->qkv_b, 3 * (size_t)D)))
        return b->qkv_b ? rc : HX_ENOMEM;
    for (int k = 0; k < 3; k++) {
        char name[256];
        float *w, *bias;
        int64_t sw[2] = {D, D}, sb[1] = {D};
        snprintf(name, sizeof name, BERT "encoder.layer.%d.attention.self.%s.weight", layer,
                 part[k]);
        if ((rc = hx_st_load_f32(st, name, 2, sw, &w)))
            return rc;
        memcpy(b->qkv_w + k * n, w, sizeof(float) * n);
        free(w);
        snprintf(name, sizeof name, BERT "encoder.layer.%d.attention.self.%s.bias", layer,
                 part[k]);
        if ((rc = hx_st_load_f32(st, name, 1, sb, &bias)))
            return rc;
        memcpy(b->qkv_b + (size_t)k * D, bias, sizeof(float) * D);
        free(bias);
    }
    return 0;
}

static int load_text(struct hx_simseg *m, const struct hx_safetensors *st)
{
    const struct hx_simseg_config *c = &m->cfg;
    int D = c->bert_hidden, I = c->bert_intermediate, E = c->projection_dim, rc;
    char name[256];
    if ((rc = load(m, st, &m->word, BERT "embeddings.word_embeddings.weight", 2, c->vocab_size, D,
                   0, 0)) ||
        (rc = load(m, st, &m->tpos, BERT "embeddings.position_embeddings.weight", 2,
                   c->max_positions, D, 0, 0)) ||
        (rc = load(m, st, &m->ttype, BERT "embeddings.token_type_embeddings.weight", 2,
                   c->type_vocab, D, 0, 0)) ||
        (rc = load(m, st, &m->emb_ln_w, BERT "embeddings.LayerNorm.weight", 1, D, 0, 0, 0)) ||
        (rc = load(m, st, &m->emb_ln_b, BERT "embeddings.LayerNorm.bias", 1, D, 0, 0, 0)) ||
        (rc = load(m, st, &m->txt_proj, "text_projection.linear.weight", 2, E, D, 0, 0)))
        return rc;
    m->tl = hx_calloc(c->bert_layers, sizeof *m->tl, "BERT layers");
    if (!m->tl)
        return HX_ENOMEM;
    for (int i = 0; i < c->bert_layers; i++) {
        struct bert_layer *b = &m->tl[i];
        if ((rc = load_bert_qkv(m, st, i, b)))
            return rc;
#define L(field, suffix, ...)                                                                  \
    do {                                                                                       \
        snprintf(name, sizeof name, BERT "encoder.layer.%d.%s", i, suffix);                    \
        if ((rc = load(m, st, &b->field, name, __VA_ARGS__)))                                 \
            return rc;                                                                         \
    } while (0)
        L(o_w, "attention.output.dense.weight", 2, D, D, 0, 0);
        L(o_b, "attention.output.dense.bias", 1, D, 0, 0, 0);
        L(ln1_w, "attention.output.LayerNorm.weight", 1, D, 0, 0, 0);
        L(ln1_b, "attention.output.LayerNorm.bias", 1, D, 0, 0, 0);
        L(i_w, "intermediate.dense.weight", 2, I, D, 0, 0);
        L(i_b, "intermediate.dense.bias", 1, I, 0, 0, 0);
        L(o2_w, "output.dense.weight", 2, D, I, 0, 0);
        L(o2_b, "output.dense.bias", 1, D, 0, 0, 0);
        L(ln2_w, "output.LayerNorm.weight", 1, D, 0, 0, 0);
        L(ln2_b, "output.LayerNorm.bias", 1, D, 0, 0, 0);
#undef L
    }
    /* the row buffers hold TEXT_BATCH texts; the staged functions use the first L rows */
    size_t Lt = (size_t)c->max_length, R = Lt * TEXT_BATCH;
    size_t sizes[] = {R * D, Lt * D, R * 3 * D, R * D, R * I, Lt * Lt, Lt * Lt, R * E};
    float **slots[] = {&m->tx, &m->ty, &m->tqkv, &m->tattn, &m->th, &m->tscores, &m->tbias,
                       &m->tproj};
    size_t total = 0;
    for (size_t i = 0; i < 8; i++)
        total += sizes[i];
    if (!(m->tws = hx_malloc(total * sizeof(float), "BERT workspace")))
        return HX_ENOMEM;
    float *p = m->tws;
    for (size_t i = 0; i < 8; i++) {
        *slots[i] = p;
        p += sizes[i];
    }
    char vpath[1200];
    snprintf(vpath, sizeof vpath, "%s/vocab.txt", m->dir);
    if ((rc = hx_wordpiece_open(&m->tok, vpath)))
        return rc;
    if (hx_wordpiece_vocab_size(m->tok) > c->vocab_size)
        return hx_err(HX_EFORMAT, "%s has %d tokens, more than the %d rows of %s", vpath,
                      hx_wordpiece_vocab_size(m->tok), c->vocab_size,
                      BERT "embeddings.word_embeddings.weight");
    return 0;
}

int hx_simseg_open(struct hx_simseg **out, const char *dir, unsigned parts)
{
    struct hx_safetensors *st = NULL;
    char path[1200];
    int rc;
    *out = NULL;
    struct hx_simseg *m = hx_calloc(1, sizeof *m, "SimSeg model");
    if (!m)
        return HX_ENOMEM;
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if ((rc = hx_simseg_config_load(&m->cfg, path)))
        goto fail;
    if (strcmp(m->cfg.model_type, "simseg")) {
        rc = hx_err(HX_EFORMAT, "%s: model_type is '%s', not a SimSeg model", path,
                    m->cfg.model_type);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((rc = hx_st_open(&st, path)))
        goto fail;
    if ((parts & HX_SIMSEG_VISION) && (rc = load_vision(m, st)))
        goto fail;
    if ((parts & HX_SIMSEG_TEXT) && (rc = load_text(m, st)))
        goto fail;
    char fp[24];
    if ((rc = hx_model_fingerprint(dir, fp, sizeof fp)))
        goto fail;
    snprintf(m->fingerprint, sizeof m->fingerprint, "simseg-%s", fp);
    hx_st_free(st);
    *out = m;
    return 0;
fail:
    hx_st_free(st);
    hx_simseg_free(m);
    return rc;
}

void hx_simseg_free(struct hx_simseg *m)
{
    if (!m)
        return;
    hx_weights_free(&m->w);
    free(m->vb);
    free(m->tl);
    free(m->vws);
    free(m->tws);
    hx_wordpiece_free(m->tok);
    free(m);
}

const struct hx_simseg_config *hx_simseg_cfg(const struct hx_simseg *m) { return &m->cfg; }
const char *hx_simseg_fingerprint(const struct hx_simseg *m) { return m->fingerprint; }
const struct hx_wordpiece *hx_simseg_tokenizer(const struct hx_simseg *m) { return m->tok; }
int hx_simseg_grid(const struct hx_simseg *m) { return m->cfg.image_size / m->cfg.patch_size; }
const float *hx_simseg_pos_embed(const struct hx_simseg *m) { return m->pos; }

/* ---------------------------------------------------------------- vision */

void hx_simseg_vit_embed(struct hx_simseg *m, const float *img, float *x)
{
    const struct hx_simseg_config *c = &m->cfg;
    int D = c->vit_hidden, S = c->image_size, g = S / c->patch_size, n = g * g;
    hx_patch_embed(img, 3, S, S, c->patch_size, m->patch_w, m->patch_b, D, m->vcols, x + D);
    memcpy(x, m->cls, sizeof(float) * D);
    for (size_t i = 0; i < (size_t)(n + 1) * D; i++)
        x[i] += m->pos[i];
}

void hx_simseg_vit_block(struct hx_simseg *m, int i, float *x)
{
    const struct hx_simseg_config *c = &m->cfg;
    const struct vit_block *b = &m->vb[i];
    int D = c->vit_hidden, g = c->image_size / c->patch_size, T = g * g + 1, H = c->vit_heads;
    int hd = D / H;
    hx_layernorm(x, T, D, b->ln1_w, b->ln1_b, c->vit_ln_eps, m->vy);
    hx_linear(m->vy, T, D, b->qkv_w, b->qkv_b, 3 * D, m->vqkv);
    /* timm: (q @ k^T) * hd^-0.5 */
    hx_attention(m->vqkv, m->vqkv + D, m->vqkv + 2 * D, 3 * D, T, H, hd, 1.0f / sqrtf((float)hd),
                 NULL, 0, m->vscores, m->vattn, NULL);
    hx_linear_acc(m->vattn, T, D, b->proj_w, b->proj_b, D, x);
    hx_layernorm(x, T, D, b->ln2_w, b->ln2_b, c->vit_ln_eps, m->vy);
    hx_linear(m->vy, T, D, b->fc1_w, b->fc1_b, c->vit_mlp, m->vh);
    hx_gelu_erf(m->vh, (size_t)T * c->vit_mlp);
    hx_linear_acc(m->vh, T, c->vit_mlp, b->fc2_w, b->fc2_b, D, x);
}

void hx_simseg_vit_norm(const struct hx_simseg *m, float *x)
{
    const struct hx_simseg_config *c = &m->cfg;
    int g = c->image_size / c->patch_size;
    hx_layernorm(x, g * g + 1, c->vit_hidden, m->norm_w, m->norm_b, c->vit_ln_eps, x);
}

void hx_simseg_image_project(const struct hx_simseg *m, const float *patches, int n, float *out)
{
    hx_linear(patches, n, m->cfg.vit_hidden, m->img_proj, NULL, m->cfg.projection_dim, out);
}

/* X / (||X|| + 1e-8), SimSeg's L2norm */
static void l2norm_eps(float *x, int n)
{
    float s = 0;
    for (int i = 0; i < n; i++)
        s += x[i] * x[i];
    float d = sqrtf(s) + 1e-8f;
    for (int i = 0; i < n; i++)
        x[i] /= d;
}

void hx_simseg_image_pool(const struct hx_simseg *m, const float *P, int n, float *g)
{
    int E = m->cfg.projection_dim, k = m->cfg.image_topk < n ? m->cfg.image_topk : n;
    float top[64]; /* image_topk <= 64 (checked at load) */
    for (int ch = 0; ch < E; ch++) {
        int have = 0;
        for (int r = 0; r < n; r++) {
            float v = P[(size_t)r * E + ch];
            if (have == k && !(v > top[k - 1]))
                continue;
            int j = have < k ? have++ : k - 1;
            while (j > 0 && top[j - 1] < v) {
                top[j] = top[j - 1];
                j--;
            }
            top[j] = v;
        }
        /* the k largest, summed in descending order, then divided: torch's mean of topk */
        float s = 0;
        for (int j = 0; j < k; j++)
            s += top[j];
        g[ch] = s / (float)k;
    }
    l2norm_eps(g, E);
}

int hx_simseg_encode_image(struct hx_simseg *m, const float *img, float *pooled, float *patches)
{
    if (!m->vb)
        return hx_err(HX_EINVAL, "%s: the SimSeg model was opened without its vision part",
                      m->dir);
    const struct hx_simseg_config *c = &m->cfg;
    int g = c->image_size / c->patch_size, n = g * g, D = c->vit_hidden;
    hx_simseg_vit_embed(m, img, m->vx);
    for (int i = 0; i < c->vit_layers; i++)
        hx_simseg_vit_block(m, i, m->vx);
    hx_simseg_vit_norm(m, m->vx);
    float *P = patches ? patches : m->vproj;
    hx_simseg_image_project(m, m->vx + D, n, P);
    if (pooled)
        hx_simseg_image_pool(m, P, n, pooled);
    return 0;
}

void hx_simseg_dense_features(const float *P, int n, int E, float *out)
{
    for (int r = 0; r < n; r++) {
        const float *x = P + (size_t)r * E;
        float *y = out + (size_t)r * E, s = 0;
        for (int i = 0; i < E; i++)
            s += x[i] * x[i];
        float d = fmaxf(sqrtf(s), 1e-12f);
        for (int i = 0; i < E; i++)
            y[i] = x[i] / d;
    }
}

/* ---------------------------------------------------------------- text */

int hx_simseg_bert_embed(const struct hx_simseg *m, const int32_t *ids, float *x)
{
    const struct hx_simseg_config *c = &m->cfg;
    int D = c->bert_hidden, L = c->max_length;
    for (int t = 0; t < L; t++) {
        if (ids[t] < 0 || ids[t] >= c->vocab_size)
            return hx_err(HX_EINVAL, "token id %d at position %d is outside the vocabulary of %d",
                          ids[t], t, c->vocab_size);
        const float *w = m->word + (size_t)ids[t] * D, *p = m->tpos + (size_t)t * D;
        float *y = x + (size_t)t * D;
        for (int i = 0; i < D; i++)
            y[i] = (w[i] + m->ttype[i]) + p[i];
    }
    hx_layernorm(x, L, D, m->emb_ln_w, m->emb_ln_b, c->bert_ln_eps, x);
    return 0;
}

void hx_simseg_bert_layer(struct hx_simseg *m, int i, const int32_t *mask, float *x)
{
    const struct hx_simseg_config *c = &m->cfg;
    const struct bert_layer *b = &m->tl[i];
    int D = c->bert_hidden, L = c->max_length, H = c->bert_heads, hd = D / H, I = c->bert_intermediate;
    /* padded keys get weight exactly 0, as the finfo.min additive mask gives in float32 */
    for (int q = 0; q < L; q++)
        for (int k = 0; k < L; k++)
            m->tbias[q * L + k] = mask[k] ? 0.0f : -INFINITY;
    hx_linear(x, L, D, b->qkv_w, b->qkv_b, 3 * D, m->tqkv);
    /* scores / sqrt(hd): for hd a power of 4 the division and the multiplication agree */
    hx_attention(m->tqkv, m->tqkv + D, m->tqkv + 2 * D, 3 * D, L, H, hd, 1.0f / sqrtf((float)hd),
                 m->tbias, 0, m->tscores, m->tattn, NULL);
    hx_linear_acc(m->tattn, L, D, b->o_w, b->o_b, D, x);
    hx_layernorm(x, L, D, b->ln1_w, b->ln1_b, c->bert_ln_eps, x);
    hx_linear(x, L, D, b->i_w, b->i_b, I, m->th);
    hx_gelu_erf(m->th, (size_t)L * I);
    hx_linear_acc(m->th, L, I, b->o2_w, b->o2_b, D, x);
    hx_layernorm(x, L, D, b->ln2_w, b->ln2_b, c->bert_ln_eps, x);
}

void hx_simseg_text_pool(struct hx_simseg *m, const float *x, const int32_t *mask, float *out)
{
    const struct hx_simseg_config *c = &m->cfg;
    int L = c->max_length, E = c->projection_dim;
    float *T = m->tproj;
    hx_linear(x, L, c->bert_hidden, m->txt_proj, NULL, E, T);
    for (int ch = 0; ch < E; ch++) {
        float best = -INFINITY;
        for (int t = 0; t < L; t++) {
            float v = mask[t] ? T[(size_t)t * E + ch] : -10000.0f;
            if (v > best)
                best = v;
        }
        out[ch] = best;
    }
    l2norm_eps(out, E);
}

int hx_simseg_tokenize(const struct hx_simseg *m, const char *const *texts, int n, int32_t *ids,
                       int32_t *mask)
{
    if (!m->tok)
        return hx_err(HX_EINVAL, "%s: the SimSeg model was opened without its text part", m->dir);
    int L = m->cfg.max_length;
    for (int i = 0; i < n; i++) {
        int rc = hx_wordpiece_encode(m->tok, texts[i], L, ids + (size_t)i * L,
                                     mask + (size_t)i * L);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Number of valid tokens when mask is 1...1 0...0 with at least one 1, else -1. */
static int prefix_length(const int32_t *mask, int L)
{
    int n = 0;
    while (n < L && mask[n])
        n++;
    for (int t = n; t < L; t++)
        if (mask[t])
            return -1;
    return n > 0 ? n : -1;
}

/* Up to TEXT_BATCH texts whose masks are prefixes, with only their valid rows stacked into
 * one matrix [R, Dt] (R = sum of valid lengths) so that the linear layers run as one GEMM.
 * Padded positions never influence valid ones (their keys get weight 0 and they are excluded
 * from the pooling), so dropping them changes nothing but the work. */
static int encode_batch(struct hx_simseg *m, const int32_t *ids, const int32_t *mask, int nb,
                        float *out)
{
    const struct hx_simseg_config *c = &m->cfg;
    int L = c->max_length, D = c->bert_hidden, H = c->bert_heads, hd = D / H;
    int I = c->bert_intermediate, E = c->projection_dim, len[TEXT_BATCH], off[TEXT_BATCH + 1];
    off[0] = 0;
    for (int b = 0; b < nb; b++) {
        len[b] = prefix_length(mask + (size_t)b * L, L);
        off[b + 1] = off[b] + len[b];
        for (int t = 0; t < L; t++) {
            int32_t id = ids[(size_t)b * L + t];
            if (id < 0 || id >= c->vocab_size)
                return hx_err(HX_EINVAL, "token id %d at position %d is outside the vocabulary "
                              "of %d", id, t, c->vocab_size);
        }
    }
    int R = off[nb];
    float *x = m->tx;
    for (int b = 0; b < nb; b++)
        for (int t = 0; t < len[b]; t++) {
            const float *w = m->word + (size_t)ids[(size_t)b * L + t] * D;
            const float *p = m->tpos + (size_t)t * D;
            float *y = x + (size_t)(off[b] + t) * D;
            for (int i = 0; i < D; i++)
                y[i] = (w[i] + m->ttype[i]) + p[i];
        }
    hx_layernorm(x, R, D, m->emb_ln_w, m->emb_ln_b, c->bert_ln_eps, x);
    for (int l = 0; l < c->bert_layers; l++) {
        const struct bert_layer *ly = &m->tl[l];
        hx_linear(x, R, D, ly->qkv_w, ly->qkv_b, 3 * D, m->tqkv);
        for (int b = 0; b < nb; b++) {
            const float *q = m->tqkv + (size_t)off[b] * 3 * D;
            hx_attention(q, q + D, q + 2 * D, 3 * D, len[b], H, hd, 1.0f / sqrtf((float)hd), NULL,
                         0, m->tscores, m->tattn + (size_t)off[b] * D, NULL);
        }
        hx_linear_acc(m->tattn, R, D, ly->o_w, ly->o_b, D, x);
        hx_layernorm(x, R, D, ly->ln1_w, ly->ln1_b, c->bert_ln_eps, x);
        hx_linear(x, R, D, ly->i_w, ly->i_b, I, m->th);
        hx_gelu_erf(m->th, (size_t)R * I);
        hx_linear_acc(m->th, R, I, ly->o2_w, ly->o2_b, D, x);
        hx_layernorm(x, R, D, ly->ln2_w, ly->ln2_b, c->bert_ln_eps, x);
    }
    hx_linear(x, R, D, m->txt_proj, NULL, E, m->tproj);
    for (int b = 0; b < nb; b++) {
        float *o = out + (size_t)b * E;
        for (int ch = 0; ch < E; ch++) {
            /* padded rows hold -10000 in the reference's max */
            float best = len[b] < L ? -10000.0f : -INFINITY;
            for (int t = 0; t < len[b]; t++) {
                float v = m->tproj[(size_t)(off[b] + t) * E + ch];
                if (v > best)
                    best = v;
            }
            o[ch] = best;
        }
        l2norm_eps(o, E);
    }
    return 0;
}

int hx_simseg_encode_tokens(struct hx_simseg *m, const int32_t *ids, const int32_t *mask, int n,
                            float *out)
{
    if (!m->tl)
        return hx_err(HX_EINVAL, "%s: the SimSeg model was opened without its text part", m->dir);
    const struct hx_simseg_config *c = &m->cfg;
    int L = c->max_length, E = c->projection_dim, rc;
    for (int i = 0; i < n;) {
        int nb = 0;
        while (i + nb < n && nb < TEXT_BATCH && prefix_length(mask + (size_t)(i + nb) * L, L) > 0)
            nb++;
        if (nb) {
            if ((rc = encode_batch(m, ids + (size_t)i * L, mask + (size_t)i * L, nb,
                                   out + (size_t)i * E)))
                return rc;
            i += nb;
            continue;
        }
        /* a mask that is not a prefix of ones: the full-length path */
        const int32_t *id = ids + (size_t)i * L, *mk = mask + (size_t)i * L;
        if ((rc = hx_simseg_bert_embed(m, id, m->tx)))
            return rc;
        for (int l = 0; l < c->bert_layers; l++)
            hx_simseg_bert_layer(m, l, mk, m->tx);
        hx_simseg_text_pool(m, m->tx, mk, out + (size_t)i * E);
        i++;
    }
    return 0;
}

int hx_simseg_encode_text(struct hx_simseg *m, const char *const *texts, int n, float *out)
{
    int L = m->cfg.max_length, rc;
    int32_t *ids = hx_malloc(sizeof(int32_t) * 2 * (size_t)L * (n > 0 ? n : 1), "token ids");
    if (!ids)
        return HX_ENOMEM;
    int32_t *mask = ids + (size_t)L * n;
    if (!(rc = hx_simseg_tokenize(m, texts, n, ids, mask)))
        rc = hx_simseg_encode_tokens(m, ids, mask, n, out);
    free(ids);
    return rc;
}

/* template with every "{}" replaced by name; caller frees */
static char *format_template(const char *tpl, const char *name)
{
    size_t nl = strlen(name), cnt = 0;
    for (const char *p = strstr(tpl, "{}"); p; p = strstr(p + 2, "{}"))
        cnt++;
    char *s = malloc(strlen(tpl) + cnt * nl + 1), *o = s;
    if (!s)
        return NULL;
    for (const char *p = tpl; *p;) {
        if (p[0] == '{' && p[1] == '}') {
            memcpy(o, name, nl);
            o += nl;
            p += 2;
        } else {
            *o++ = *p++;
        }
    }
    *o = 0;
    return s;
}

int hx_simseg_class_embeddings(struct hx_simseg *m, const char *const *names, int nc,
                               const char *const *templates, int nt, float *out)
{
    int E = m->cfg.projection_dim, rc = 0;
    if (nt < 1)
        return hx_err(HX_EINVAL, "no prompt templates given");
    char **texts = hx_calloc((size_t)nt, sizeof *texts, "prompts");
    float *emb = hx_malloc(sizeof(float) * (size_t)nt * E, "prompt embeddings");
    if (!texts || !emb) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int c = 0; c < nc; c++) {
        for (int t = 0; t < nt; t++) {
            free(texts[t]);
            if (!(texts[t] = format_template(templates[t], names[c]))) {
                rc = hx_err(HX_ENOMEM, "out of memory formatting prompts");
                goto done;
            }
        }
        if ((rc = hx_simseg_encode_text(m, (const char *const *)texts, nt, emb)))
            goto done;
        float *e = out + (size_t)c * E, s = 0;
        for (int i = 0; i < E; i++) {
            float a = 0;
            for (int t = 0; t < nt; t++)
                a += emb[(size_t)t * E + i];
            e[i] = a / (float)nt;
            s += e[i] * e[i];
        }
        float norm = sqrtf(s);
        for (int i = 0; i < E; i++)
            e[i] /= norm;
    }
done:
    if (texts)
        for (int t = 0; t < nt; t++)
            free(texts[t]);
    free(texts);
    free(emb);
    return rc;
}

/* ---------------------------------------------------------------- images */

int hx_simseg_preprocess(const struct hx_image *im, int size, float *tensor, uint8_t *rgb)
{
    uint8_t *own = NULL;
    if (size < 1)
        return hx_err(HX_EINVAL, "preprocess size %d < 1", size);
    if (!rgb && !(rgb = own = hx_malloc((size_t)size * size * 3, "resized image")))
        return HX_ENOMEM;
    int rc = hx_pil_resize(im->px, im->w, im->h, 3, rgb, size, size, HX_PIL_BILINEAR);
    if (!rc) {
        struct hx_image r = {size, size, rgb};
        hx_image_to_tensor(&r, hx_simseg_mean, hx_simseg_std, tensor);
    }
    free(own);
    return rc;
}

void hx_simseg_crf_lut(uint8_t lut[3][256])
{
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            /* ToTensor + Normalize, then image * std + mean, * 255, truncating cast */
            volatile float x = (float)v / 255.0f;
            x = (x - hx_simseg_mean[c]) / hx_simseg_std[c];
            x = x * hx_simseg_std[c];
            x = x + hx_simseg_mean[c];
            x = x * 255.0f;
            int t = (int)x;
            lut[c][v] = (uint8_t)(t < 0 ? 0 : t > 255 ? 255 : t);
        }
}

void hx_simseg_crf_image(const uint8_t *src, size_t npix, uint8_t *dst)
{
    uint8_t lut[3][256];
    hx_simseg_crf_lut(lut);
    for (size_t i = 0; i < npix * 3; i++)
        dst[i] = lut[i % 3][src[i]];
}

/* ---------------------------------------------------------------- prompts */

const char *const hx_simseg_templates[80] = {
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.",
    "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.",
    "a photo of a hard to see {}.", "a bright photo of a {}.", "a photo of a clean {}.",
    "a photo of a dirty {}.", "a dark photo of the {}.", "a drawing of a {}.",
    "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.",
    "a painting of the {}.", "a painting of a {}.", "a pixelated photo of the {}.",
    "a sculpture of the {}.", "a bright photo of the {}.", "a cropped photo of a {}.",
    "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.",
    "a rendering of the {}.", "a {} in a video game.", "a photo of one {}.",
    "a doodle of a {}.", "a close-up photo of the {}.", "a photo of a {}.",
    "the origami {}.", "the {} in a video game.", "a sketch of a {}.",
    "a doodle of the {}.", "a origami {}.", "a low resolution photo of a {}.",
    "the toy {}.", "a rendition of the {}.", "a photo of the clean {}.",
    "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.",
    "art of a {}.", "a sketch of the {}.", "a embroidered {}.",
    "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.",
    "a photo of the small {}.", "a photo of the weird {}.", "the cartoon {}.",
    "art of the {}.", "a drawing of the {}.", "a photo of the large {}.",
    "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.",
    "a photo of a cool {}.", "a photo of a small {}.", "a tattoo of the {}.",
};
