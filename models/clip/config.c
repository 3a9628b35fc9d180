/* CLIP config.json reader: Hugging Face CLIPConfig defaults, overridden by the fields the
 * file lists under "text_config", "vision_config" and at the top level. */
#include "models/clip/config.h"

#include "harness/error.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_BYTES (16u << 20)

void hx_clip_config_default(struct hx_clip_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->text = (struct hx_tower_config){
        .hidden = 512,
        .intermediate = 2048,
        .heads = 8,
        .layers = 12,
        .act = HX_ACT_QUICK_GELU,
        .ln_eps = 1e-5f,
        .max_positions = 77,
        .vocab_size = 49408,
    };
    cfg->vision = (struct hx_tower_config){
        .hidden = 768,
        .intermediate = 3072,
        .heads = 12,
        .layers = 12,
        .act = HX_ACT_QUICK_GELU,
        .ln_eps = 1e-5f,
        .image_size = 224,
        .patch_size = 32,
        .channels = 3,
    };
    cfg->projection_dim = 512;
    strcpy(cfg->model_type, "clip");
}

/* A positive integer field, if present. */
static int get_int(const char *path, const cJSON *obj, const char *prefix, const char *key,
                   int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= 1 && d <= INT_MAX && d == floor(d)))
        return hx_err(HX_EFORMAT, "%s: %s%s must be a positive integer", path, prefix, key);
    *out = (int)d;
    return 0;
}

static int get_eps(const char *path, const cJSON *obj, const char *prefix, float *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "layer_norm_eps");
    if (!v)
        return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d > 0 && d < 1))
        return hx_err(HX_EFORMAT, "%s: %slayer_norm_eps must be a number in (0, 1)", path,
                      prefix);
    *out = (float)d;
    return 0;
}

static int get_act(const char *path, const cJSON *obj, const char *prefix, enum hx_act *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "hidden_act");
    if (!v)
        return 0;
    if (!cJSON_IsString(v))
        return hx_err(HX_EFORMAT, "%s: %shidden_act must be a string", path, prefix);
    const char *s = v->valuestring;
    if (!strcmp(s, "quick_gelu"))
        *out = HX_ACT_QUICK_GELU;
    else if (!strcmp(s, "gelu"))
        *out = HX_ACT_GELU;
    else if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh"))
        *out = HX_ACT_GELU_TANH;
    else
        return hx_err(HX_EFORMAT,
                      "%s: %shidden_act \"%.40s\" is not supported (quick_gelu, gelu, gelu_new, "
                      "gelu_pytorch_tanh)",
                      path, prefix, s);
    return 0;
}

static int read_tower(const char *path, const cJSON *root, const char *key, int vision,
                      struct hx_tower_config *t)
{
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!obj || cJSON_IsNull(obj)) /* absent or null: all defaults, as Hugging Face does */
        return 0;
    if (!cJSON_IsObject(obj))
        return hx_err(HX_EFORMAT, "%s: %s must be an object", path, key);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s.", key);
    int rc;
    if ((rc = get_int(path, obj, prefix, "hidden_size", &t->hidden)) ||
        (rc = get_int(path, obj, prefix, "intermediate_size", &t->intermediate)) ||
        (rc = get_int(path, obj, prefix, "num_attention_heads", &t->heads)) ||
        (rc = get_int(path, obj, prefix, "num_hidden_layers", &t->layers)) ||
        (rc = get_act(path, obj, prefix, &t->act)) || (rc = get_eps(path, obj, prefix, &t->ln_eps)))
        return rc;
    if (vision) {
        if ((rc = get_int(path, obj, prefix, "image_size", &t->image_size)) ||
            (rc = get_int(path, obj, prefix, "patch_size", &t->patch_size)) ||
            (rc = get_int(path, obj, prefix, "num_channels", &t->channels)))
            return rc;
    } else {
        if ((rc = get_int(path, obj, prefix, "max_position_embeddings", &t->max_positions)) ||
            (rc = get_int(path, obj, prefix, "vocab_size", &t->vocab_size)))
            return rc;
    }
    return 0;
}

/* Checks that involve several fields (defaults included). */
static int check_tower(const char *path, const char *key, int vision,
                       const struct hx_tower_config *t)
{
    if (t->hidden % t->heads)
        return hx_err(HX_EFORMAT,
                      "%s: %s.hidden_size %d is not divisible by %s.num_attention_heads %d", path,
                      key, t->hidden, key, t->heads);
    if (vision && (t->patch_size > t->image_size || t->image_size % t->patch_size))
        return hx_err(HX_EFORMAT,
                      "%s: %s.image_size %d is not a whole number of %s.patch_size %d patches",
                      path, key, t->image_size, key, t->patch_size);
    return 0;
}

int hx_clip_config_load(struct hx_clip_config *cfg, const char *path)
{
    int rc = 0;
    char *buf = NULL;
    cJSON *root = NULL;
    struct hx_clip_config c;
    hx_clip_config_default(&c);

    FILE *f = fopen(path, "rb");
    if (!f)
        return hx_err(HX_EIO, "%s: cannot open: %s", path, strerror(errno));
    long len = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (len < 0 || fseek(f, 0, SEEK_SET) != 0) {
        rc = hx_err(HX_EIO, "%s: cannot determine the size: %s", path, strerror(errno));
        goto done;
    }
    if ((unsigned long)len > CONFIG_MAX_BYTES) {
        rc = hx_err(HX_EFORMAT, "%s: %ld bytes, too large for a config.json", path, len);
        goto done;
    }
    buf = hx_malloc((size_t)len + 1, "config.json");
    if (!buf) {
        rc = HX_ENOMEM;
        goto done;
    }
    size_t n = fread(buf, 1, (size_t)len, f);
    if (n != (size_t)len) {
        rc = hx_err(HX_EIO, "%s: read failed", path);
        goto done;
    }
    buf[n] = 0;
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(buf, n, &end, 0);
    if (!root) {
        rc = hx_err(HX_EFORMAT, "%s: not valid JSON (near byte %td)", path,
                    end ? end - buf : (ptrdiff_t)-1);
        goto done;
    }
    /* only whitespace may follow the object */
    for (; end && end < buf + n; end++)
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
            rc = hx_err(HX_EFORMAT, "%s: unexpected text after the JSON (byte %td)", path,
                        end - buf);
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        rc = hx_err(HX_EFORMAT, "%s: top level is not a JSON object", path);
        goto done;
    }
    if ((rc = read_tower(path, root, "text_config", 0, &c.text)) ||
        (rc = read_tower(path, root, "vision_config", 1, &c.vision)) ||
        (rc = get_int(path, root, "", "projection_dim", &c.projection_dim)))
        goto done;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (mt) {
        if (!cJSON_IsString(mt) || !mt->valuestring[0] ||
            strlen(mt->valuestring) >= sizeof c.model_type) {
            rc = hx_err(HX_EFORMAT, "%s: model_type must be a non-empty string of at most %zu "
                                    "characters",
                        path, sizeof c.model_type - 1);
            goto done;
        }
        strcpy(c.model_type, mt->valuestring);
    }
    if ((rc = check_tower(path, "text_config", 0, &c.text)) ||
        (rc = check_tower(path, "vision_config", 1, &c.vision)))
        goto done;
    *cfg = c;

done:
    cJSON_Delete(root);
    free(buf);
    fclose(f);
    return rc;
}
