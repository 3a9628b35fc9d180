/* CLIP in the Hugging Face layout (SPEC 1): the vision tower with position-embedding
 * interpolation for any grid and the training-free dense variants of the last block, and the
 * causal text tower pooled at the end token.
 *
 * Ownership: hx_clip_open allocates the model (weights converted to float32 and held in
 * memory; the safetensors mapping is released after loading); hx_clip_free frees it.
 * A model is read-only after loading except for a small cache of interpolated position
 * embeddings and the tokenizer's word cache: use one model per thread.
 *
 * The staged vision API lets a caller run the first blocks once and the last block several
 * times (dense variants, CLIP-as-RNN): embed -> pre_ln -> block 0..L-2 -> last block ->
 * project. Token layout everywhere: row 0 is the class token, rows 1.. the patches row-major
 * over the grid (T = 1 + gh*gw rows of D floats). */
#ifndef HX_CLIP_H
#define HX_CLIP_H

#include "models/clip/config.h"

#include <stddef.h>
#include <stdint.h>

enum hx_variant { HX_VANILLA, HX_MASKCLIP, HX_SCLIP, HX_CLEARCLIP, HX_NACLIP, HX_NVARIANTS };

/* "vanilla", "maskclip", "sclip", "clearclip", "naclip"; returns HX_EINVAL for others. */
int hx_variant_parse(const char *name, enum hx_variant *v);
const char *hx_variant_name(enum hx_variant v);

/* NACLIP's Gaussian neighbourhood width, in patches. */
#define HX_NACLIP_SIGMA 5.0f

enum { HX_CLIP_VISION = 1, HX_CLIP_TEXT = 2 };

struct hx_clip;

/* Load config.json and model.safetensors from `dir`; `parts` selects the towers to load
 * (HX_CLIP_VISION | HX_CLIP_TEXT). Errors name the file and tensor. */
int hx_clip_open(struct hx_clip **out, const char *dir, unsigned parts);
void hx_clip_free(struct hx_clip *m);

const struct hx_clip_config *hx_clip_cfg(const struct hx_clip *m);
float hx_clip_logit_scale(const struct hx_clip *m); /* exp(logit_scale) */
/* "clip-" + hx_model_fingerprint of the directory: part of every cache key. */
const char *hx_clip_fingerprint(const struct hx_clip *m);
/* Bytes of float32 weights held in memory. */
size_t hx_clip_weight_bytes(const struct hx_clip *m);

/* ---- text ---- */

/* Token ids -> projected text embeddings (not normalised).
 *   ids [n, ld] (each row: sot ... eot, anything after the end token is ignored; the end
 *   token is the position of the row's largest id), out [n, E].
 * Texts are processed in batches sorted by length; each batch runs only up to its longest
 * end-token position. */
int hx_clip_encode_tokens(struct hx_clip *m, const int32_t *ids, int n, int ld, float *out);

/* Strings -> projected text embeddings (not normalised), out [n, E]; tokenized with the
 * model directory's tokenizer (opened on first use). */
int hx_clip_encode_text(struct hx_clip *m, const char *const *texts, int n, float *out);

/* ---- vision ---- */

/* Whole forward pass. img: normalised planar [3, H, W] (H, W >= patch; a remainder smaller
 * than a patch at the right/bottom is dropped, as a strided convolution does).
 *   pooled [E] or NULL: visual_projection(post_layernorm(x[0])) of the vanilla forward;
 *   dense [gh*gw, E] or NULL: the dense tokens of `variant`.
 * gh, gw (may be NULL) receive the grid. */
int hx_clip_encode_image(struct hx_clip *m, const float *img, int H, int W,
                         enum hx_variant variant, float *pooled, float *dense, int *gh, int *gw);

/* Adaptor to the dense protocol's encoder callback (harness/protocol.h): ctx points to a
 * struct hx_clip_view; pooled (may be NULL) comes from the vanilla forward. */
struct hx_clip_view {
    struct hx_clip *model;
    enum hx_variant variant;
};
int hx_clip_encode_view(void *ctx, const float *img, int H, int W, float *dense, float *pooled,
                        int *gh, int *gw);

/* Workspace for the staged API at a given number of tokens. */
struct hx_vit_ws;
int hx_vit_ws_new(struct hx_vit_ws **out, const struct hx_clip *m, int T);
void hx_vit_ws_free(struct hx_vit_ws *ws);

/* Patch embedding + class token + (interpolated) position embedding -> x [T, D], before
 * pre_layrnorm. Returns the grid in gh, gw. */
int hx_clip_vision_embed(struct hx_clip *m, struct hx_vit_ws *ws, const float *img, int H, int W,
                         float *x, int *gh, int *gw);
void hx_clip_vision_pre_ln(const struct hx_clip *m, float *x, int T);
/* Run vanilla block i in place on x [T, D]; probs [heads, T, T] or NULL keeps the attention
 * weights. */
void hx_clip_vision_block(const struct hx_clip *m, struct hx_vit_ws *ws, int i, float *x, int T,
                          float *probs);
/* The last block in a dense variant: x [T, D] in, out [T, D] out (distinct buffers). The grid
 * is needed by NACLIP. */
void hx_clip_vision_last(const struct hx_clip *m, struct hx_vit_ws *ws, enum hx_variant v,
                         const float *x, float *out, int gh, int gw);
/* post_layernorm then visual_projection of `rows` rows of x [rows, D] -> out [rows, E]. */
void hx_clip_vision_project(const struct hx_clip *m, struct hx_vit_ws *ws, const float *x,
                            int rows, float *out);
/* The position embedding for a gh x gw grid: [1 + gh*gw, D]; points into the model (valid
 * until the next call with another grid). */
const float *hx_clip_pos_embed(struct hx_clip *m, int gh, int gw);

#endif
