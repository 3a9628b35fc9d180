/* CLIP configuration from a Hugging Face config.json (SPEC 1): fields missing from the file
 * take the Hugging Face CLIPConfig defaults. */
#ifndef HX_CLIP_CONFIG_H
#define HX_CLIP_CONFIG_H

enum hx_act { HX_ACT_QUICK_GELU, HX_ACT_GELU /* erf */, HX_ACT_GELU_TANH };

struct hx_tower_config {
    int hidden;        /* D */
    int intermediate;  /* MLP width */
    int heads;
    int layers;
    enum hx_act act;
    float ln_eps;
    /* text only */
    int max_positions; /* 77 */
    int vocab_size;    /* 49408 */
    /* vision only */
    int image_size;    /* trained S */
    int patch_size;    /* P */
    int channels;      /* 3 */
};

struct hx_clip_config {
    struct hx_tower_config text, vision;
    int projection_dim; /* E */
    char model_type[32]; /* "clip" unless the file says otherwise (e.g. "simseg") */
};

/* Read `path` (a config.json). Unknown fields are ignored; fields of the wrong type, a
 * malformed file or non-positive sizes (hidden not divisible by heads, ...) are HX_EFORMAT
 * errors naming the file and the field (e.g. "vision_config.hidden_size"). */
int hx_clip_config_load(struct hx_clip_config *cfg, const char *path);
/* The Hugging Face defaults (what an empty "{}" gives). */
void hx_clip_config_default(struct hx_clip_config *cfg);

#endif
