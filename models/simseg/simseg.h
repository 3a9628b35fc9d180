/* The SimSeg model (SPEC-simseg 2.1-2.6): a timm ViT-S/16 or ViT-B/16 image encoder run at
 * 288x288, a bert-base-uncased text encoder, bias-free projections, and LoDA (top-k) pooling.
 *
 * Model directory (written by scripts/convert_simseg.py):
 *   config.json        {"model_type": "simseg", sizes; see hx_simseg_config below}
 *   model.safetensors  the released state_dict under its original key names, e.g.
 *                      image_encoder.model.model.blocks.0.attn.qkv.weight,
 *                      text_encoder.model.model.encoder.layer.0.attention.self.query.weight,
 *                      image_projection.linear.weight, text_projection.linear.weight
 *                      (float tensors of any float dtype; position_ids and loss.temperature
 *                      are not read)
 *   vocab.txt          the BERT WordPiece vocabulary
 * The stored pos_embed has 1 + g*g rows: g = image_size/patch_size (18) is used as is; any
 * other g is resized once at load to 18x18 with PyTorch's bicubic (align_corners=False), the
 * class row kept, as SimSeg's interpolate_pos_embed does.
 *
 * Ownership: hx_simseg_open allocates the model (weights held as float32); hx_simseg_free
 * frees it. The model holds its own workspaces: use one model per thread.
 * Token layouts: vision x [T = 1 + g*g, D], row 0 the class token, rows 1.. the patches
 * row-major (p = r*g + c); text x [max_length, Dt]. */
#ifndef HX_SIMSEG_H
#define HX_SIMSEG_H

#include "harness/image.h"

#include <stddef.h>
#include <stdint.h>

struct hx_simseg_config {
    char model_type[32]; /* "simseg" */
    char variant[32];    /* "vit-s", "vit-b" or another name (informative) */
    /* vision (timm VisionTransformer) */
    int image_size;      /* 288 */
    int patch_size;      /* 16 */
    int vit_hidden;      /* D: 384 (S) or 768 (B) */
    int vit_heads;       /* D / 64 */
    int vit_layers;      /* 12 */
    int vit_mlp;         /* 4D */
    float vit_ln_eps;    /* 1e-6 */
    int pos_tokens;      /* rows of the stored pos_embed (325, or 197 resized at load) */
    /* text (BertModel) */
    int bert_hidden;     /* 768 */
    int bert_heads;      /* 12 */
    int bert_layers;     /* 12 */
    int bert_intermediate; /* 3072 */
    int vocab_size;      /* 30522 */
    int max_positions;   /* 512 */
    int type_vocab;      /* 2 */
    float bert_ln_eps;   /* 1e-12 */
    int max_length;      /* 25 tokens per text, [CLS] and [SEP] included */
    /* heads */
    int projection_dim;  /* E = 512 */
    int image_topk;      /* 5 (at most 64) */
};

/* config.json keys (all optional except model_type; defaults are SimSeg ViT-S):
 *   model_type, variant, image_size, patch_size, projection_dim, image_topk,
 *   vision_config: {hidden_size, num_heads, depth, mlp_dim, layer_norm_eps, pos_embed_tokens},
 *   text_config: {hidden_size, num_attention_heads, num_hidden_layers, intermediate_size,
 *                 vocab_size, max_position_embeddings, type_vocab_size, layer_norm_eps, max_length}
 * Errors (HX_EFORMAT) name the file and the field. */
int hx_simseg_config_load(struct hx_simseg_config *cfg, const char *path);
void hx_simseg_config_default(struct hx_simseg_config *cfg);

/* 1 when dir/config.json exists and says "model_type": "simseg", else 0 (no error set):
 * lets a command pick the backend of a model directory. */
int hx_simseg_probe(const char *dir);

enum { HX_SIMSEG_VISION = 1, HX_SIMSEG_TEXT = 2 };

struct hx_simseg;
struct hx_wordpiece;

/* Load the parts selected (HX_SIMSEG_VISION | HX_SIMSEG_TEXT) from `dir`. A model_type other
 * than "simseg" is HX_EFORMAT; a missing tensor or a shape mismatch names the tensor. */
int hx_simseg_open(struct hx_simseg **out, const char *dir, unsigned parts);
void hx_simseg_free(struct hx_simseg *m);
const struct hx_simseg_config *hx_simseg_cfg(const struct hx_simseg *m);
/* "simseg-" + hx_model_fingerprint of the directory: the cache key the run engine uses. */
const char *hx_simseg_fingerprint(const struct hx_simseg *m);
/* The tokenizer (loaded with the text part; NULL otherwise). Owned by the model. */
const struct hx_wordpiece *hx_simseg_tokenizer(const struct hx_simseg *m);

/* ---- image ---- */

/* The grid side g = image_size / patch_size (18) and number of patches g*g (324). */
int hx_simseg_grid(const struct hx_simseg *m);

/* Whole image path. img: normalised planar [3, S, S], S = image_size (288).
 *   pooled [E] or NULL: the LoDA embedding, L2-normalised with the eps added to the norm;
 *   patches [g*g, E] or NULL: the projected patch tokens (not normalised). */
int hx_simseg_encode_image(struct hx_simseg *m, const float *img, float *pooled, float *patches);

/* Stages of the vision tower.
 * embed: patch embedding, class token, + pos_embed (18x18 after any resize) -> x [T, D] */
void hx_simseg_vit_embed(struct hx_simseg *m, const float *img, float *x);
/* block i (pre-LN, fused qkv, erf GELU) in place on x [T, D] */
void hx_simseg_vit_block(struct hx_simseg *m, int i, float *x);
/* final LayerNorm in place on x [T, D] */
void hx_simseg_vit_norm(const struct hx_simseg *m, float *x);
/* the position embedding in use: [T, D] (owned by the model) */
const float *hx_simseg_pos_embed(const struct hx_simseg *m);
/* patches [n, D] (rows 1.. of the normed x) @ Wimg^T -> out [n, E] */
void hx_simseg_image_project(const struct hx_simseg *m, const float *patches, int n, float *out);
/* LoDA image pooling of projected patches P [n, E] -> g [E]: per channel the mean of the k
 * largest values (k = image_topk, or n if smaller), then x / (||x|| + 1e-8). */
void hx_simseg_image_pool(const struct hx_simseg *m, const float *P, int n, float *g);

/* ---- text ---- */

/* Tokenize n texts into ids [n, max_length] and mask [n, max_length] (1 = valid). */
int hx_simseg_tokenize(const struct hx_simseg *m, const char *const *texts, int n, int32_t *ids,
                       int32_t *mask);
/* Token ids [n, max_length] + mask -> LoDA text embeddings [n, E] (L2-normalised with the
 * eps added to the norm). Ids must be < vocab_size (HX_EINVAL otherwise).
 * Texts whose mask is ones then zeros (what the tokenizer gives) run 32 at a time with only
 * their valid positions stacked, as one GEMM per linear layer; padded positions cannot change
 * the result (their keys get weight 0 and the pooling skips them). Any other mask runs the
 * full max_length rows through the staged functions below. */
int hx_simseg_encode_tokens(struct hx_simseg *m, const int32_t *ids, const int32_t *mask, int n,
                            float *out);
/* Strings -> LoDA text embeddings [n, E], each text exactly as given. */
int hx_simseg_encode_text(struct hx_simseg *m, const char *const *texts, int n, float *out);
/* Template-averaged class embeddings (SPEC-simseg 2.5, zero_shot_classifier): for class c the
 * texts templates[t] with every "{}" replaced by names[c]; e = mean over templates of their
 * LoDA embeddings, out[c] = e / ||e|| (no eps). out [nc, E]. */
int hx_simseg_class_embeddings(struct hx_simseg *m, const char *const *names, int nc,
                               const char *const *templates, int nt, float *out);

/* Stages of the text tower (L = max_length).
 * embed: LN((word[ids] + type[0]) + pos[0..L-1]) -> x [L, Dt] */
int hx_simseg_bert_embed(const struct hx_simseg *m, const int32_t *ids, float *x);
/* post-LN layer i in place on x [L, Dt]; padded keys (mask 0) get weight 0 */
void hx_simseg_bert_layer(struct hx_simseg *m, int i, const int32_t *mask, float *x);
/* x [L, Dt] @ Wtxt^T, rows with mask 0 set to -10000, per channel max, L2 with eps -> out [E] */
void hx_simseg_text_pool(struct hx_simseg *m, const float *x, const int32_t *mask, float *out);

/* ---- helpers ---- */

/* Dense patch features: F.normalize, each row x / max(||x||, 1e-12); P and out [n, E] (may
 * be the same buffer). */
void hx_simseg_dense_features(const float *P, int n, int E, float *out);

/* The 80 OpenAI ImageNet templates SimSeg uses (simseg/utils/prompt.py), "{}" the class. */
extern const char *const hx_simseg_templates[80];

/* ImageNet normalisation of SimSeg's transforms. */
extern const float hx_simseg_mean[3], hx_simseg_std[3];

/* SimSeg preprocessing: PIL bilinear resize to size x size (aspect ratio not kept), ToTensor,
 * ImageNet mean/std -> tensor [3, size, size]. rgb (may be NULL) [size][size][3] receives
 * the resized uint8 image. */
int hx_simseg_preprocess(const struct hx_image *im, int size, float *tensor, uint8_t *rgb);

/* The image the dense CRF sees (seg_evaluation.py l.105): each resized uint8 value v goes
 * through ((v/255 - mean)/std * std + mean) * 255 in float32 and is truncated to uint8.
 * lut[c][v] for channel c; hx_simseg_crf_image applies it to npix interleaved RGB pixels
 * (src and dst may be the same). */
void hx_simseg_crf_lut(uint8_t lut[3][256]);
void hx_simseg_crf_image(const uint8_t *src, size_t npix, uint8_t *dst);

#endif
