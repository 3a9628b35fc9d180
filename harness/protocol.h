/* The dense segmentation protocol of the training-free CLIP works (SCLIP, ClearCLIP, NACLIP,
 * MaskCLIP): SPEC 2, in the order of their released code.
 *
 * Per image:
 *   1. resize (bilinear, OpenCV's uint8 arithmetic as mmcv) so the short side is S, keeping
 *      the aspect ratio, the long side at most long_max; normalise with mean/std;
 *   2. slide crop x crop windows with the given stride (border windows shifted inward; crop 0
 *      = the whole image); per window: dense tokens -> L2-normalise -> cosine with every
 *      member of the text bank (one GEMM) -> the ensemble rule gives one score per query
 *      name on the token grid -> bilinear resize (align_corners=False) to the window size;
 *   3. average overlapping windows (sum / count);
 *   4. bilinear resize to the output (label) size;
 *   5. optional PAMR on those maps, guided by the normalised image resized to the output size;
 *   6. softmax(logit_scale * score) over all names; a class scores the max over its names;
 *      optional area_thd (a foreground class whose argmax area is at most area_thd x the
 *      foreground area loses its probability); argmax; pixels whose max probability is
 *      below prob_thd become class 0. With argmax_cos (MaskCLIP), step 6 is the argmax of the
 *      scores, no softmax or threshold.
 * Query names: each class has one or more names (synonyms); each name is one "class" of the
 * text bank (its member 0 is the name's own embedding, then its subclasses), so the
 * ensemble rule turns a name's members into one score per name. With the `super` rule and
 * no subclasses this is exactly the released protocol.
 *
 * Ownership: everything here writes into caller buffers; hx_dense_segment allocates its own
 * per-image workspace and frees it before returning. */
#ifndef HX_PROTOCOL_H
#define HX_PROTOCOL_H

#include "harness/ensemble.h"
#include "harness/image.h"
#include "harness/pamr.h"
#include "harness/window.h"

#include <stddef.h>
#include <stdint.h>

/* What the protocol needs of a backend: the dense tokens of one normalised view. */
struct hx_dense_encoder {
    void *ctx;
    int dim;   /* E */
    int patch; /* tokens of an H x W view: (H/patch) x (W/patch) */
    /* img planar [3, H, W]; dense [gh*gw, E] (not normalised); pooled [E] or NULL */
    int (*encode)(void *ctx, const float *img, int H, int W, float *dense, float *pooled,
                  int *gh, int *gw);
};

struct hx_dense_params {
    int short_side;      /* S; 0 keeps the image size */
    int long_max;        /* cap on the long side after resizing (2048) */
    int crop, stride;    /* window side and step in pixels; crop 0 = the whole image */
    float logit_scale;   /* softmax temperature on the cosine */
    float prob_thd;      /* 0 = off */
    float area_thd;      /* < 0 = off */
    int argmax_cos;      /* 1: argmax of the score (MaskCLIP), no softmax, no thresholds */
    struct hx_pamr_opts pamr; /* iters 0 = off */
    float mean[3], std[3];    /* normalisation of [0,1] pixels */
};

/* The query names and how they map to classes. */
struct hx_queries {
    const struct hx_text_bank *bank; /* one bank class per name: [n_names] = bank->n_classes */
    const int *name_class;           /* [n_names]: the class of each name, 0..n_classes-1 */
    int n_classes;
    struct hx_ens_point point;       /* the ensemble rule over each name's members */
};

/* The expensive half of the protocol (steps 1-2 up to the encoder): the dense tokens of each
 * window of one image. What the feature cache stores. */
struct hx_dense_feats {
    int img_h, img_w;        /* the image */
    int view_h, view_w;      /* after the resize of step 1 */
    int nw;                  /* windows */
    int T, E;                /* token capacity per window, dimension */
    struct hx_window *win;   /* [nw] */
    int *grid;               /* [nw, 2]: gh, gw of each window */
    float *dense;            /* [nw, T, E]: rows past gh*gw are zero; not normalised */
    float *pooled;           /* [nw, E] */
};
void hx_dense_feats_free(struct hx_dense_feats *f);
/* Allocate a zeroed feature record for nw windows of at most T tokens. */
int hx_dense_feats_alloc(struct hx_dense_feats *f, int nw, int T, int E);
/* The same with the dense tokens left unset, for a caller that writes every one of them
 * (zeroing megabytes that are overwritten at once is a measurable share of a cached read). */
int hx_dense_feats_alloc_unset(struct hx_dense_feats *f, int nw, int T, int E);

/* Steps 1-2: resize, normalise, slide windows, encode each (pooled embeddings included). */
int hx_dense_features(const struct hx_dense_encoder *enc, const struct hx_dense_params *p,
                      const struct hx_image *im, struct hx_dense_feats *out);

/* The PAMR guide: the normalised network input (step 1) resized bilinearly to out_h x out_w,
 * guide [3, out_h, out_w]. */
int hx_dense_guide(const struct hx_dense_params *p, const struct hx_image *im, int out_h,
                   int out_w, float *guide);

/* Steps 2-6 from features: scores per window, averaging, resize, PAMR (needs `guide` when
 * p->pamr.iters > 0), decision. */
int hx_dense_predict(const struct hx_dense_params *p, const struct hx_queries *q,
                     const struct hx_dense_feats *f, const float *guide, int out_h, int out_w,
                     uint8_t *pred, float *probs);

/* A short key naming what the features depend on besides the weights: the resize, window
 * geometry and normalisation, e.g. "s336-l2048-c224-t112-n1a2b3c4d". out >= 64 bytes. */
void hx_view_key(const struct hx_dense_params *p, char *out, size_t len);

/* Segment one image (features then prediction). out_h x out_w is the label size (usually the
 * image's own).
 *   pred  [out_h * out_w]: class indices;
 *   probs [n_classes, out_h, out_w] or NULL: the class probabilities of step 6 (the class
 *         scores themselves with argmax_cos). */
int hx_dense_segment(const struct hx_dense_encoder *enc, const struct hx_dense_params *p,
                     const struct hx_queries *q, const struct hx_image *im, int out_h, int out_w,
                     uint8_t *pred, float *probs);

/* Step 6 alone, on name scores [n_names, n] of n pixels (modified in place). */
int hx_dense_decide(const struct hx_dense_params *p, const struct hx_queries *q, float *scores,
                    int n, uint8_t *pred, float *probs);

/* Named presets of SPEC 2. method: "sclip", "clearclip", "naclip", "naclip-pamr", "maskclip";
 * dataset: a registry name (voc21, voc20, context60, context59, coco_object, coco_stuff171,
 * cityscapes, ade150). Also returns the dense variant name of the last block and the number
 * of prompt templates the method uses. */
struct hx_dense_preset {
    struct hx_dense_params params;
    const char *variant;  /* "sclip", "clearclip", "naclip", "maskclip" */
    int templates;        /* 80 (ImageNet) or 85 (MaskCLIP) */
    int literal_background; /* ClearCLIP: the background class is the one word "background" */
};
int hx_dense_preset_get(const char *method, const char *dataset, struct hx_dense_preset *out);

/* The CLIP image normalisation (SPEC 1). */
extern const float hx_clip_mean[3], hx_clip_std[3];

#endif
