/* The SimSeg segmentation protocol (SPEC 3, SPEC-simseg 2.6: tools/seg_evaluation.py of the
 * released code) and the LLM-supervision rule on top of it.
 *
 * Per image:
 *   1. resize to S x S (S = 288; PIL bilinear, aspect ratio not kept), ImageNet mean/std;
 *   2. the LoDA image embedding g [E] and the projected patch tokens [g*g, E] (the features:
 *      what the cache stores, as a struct hx_dense_feats with one window);
 *   3. class embeddings: the text bank (harness/ensemble.h), member 0 of class c its
 *      template-averaged superclass embedding, then its subclass embeddings;
 *   4. scores s_c = g . e_c over the superclass embeddings; the top-K (K = top_k, 10 for
 *      VOC and COCO, 30 for Context; sorted descending, equal scores in class order);
 *      threshold = mean + std_mult x std of those K, std unbiased (N-1) as torch.std; walk
 *      the first `candidates` (5) of them in order: class 0 (background) is skipped, a
 *      score below the threshold ends the walk, every other class is accepted;
 *   5. per accepted class: map = normalised patch features . class embedding (18x18), where
 *      the class embedding is chosen by the ensemble point: super -> e_c, embed-mean ->
 *      normalise(mean_i s_i), embed-softmax -> normalise(sum_i w_i s_i), w = softmax_i(g .
 *      s_i) (the LLM-supervision rule; a positive scale of the embedding does not matter
 *      after step 6's min-max); the per-pixel rules max, mean, logsumexp, mean-prob and
 *      chils (tau = the `tau` field) give the map from the members' cosines instead; vote
 *      has no map and is refused. Nearest upsampling x patch to S x S, min-max to [0, 1]
 *      (a constant map, NaN in the released code, gives an empty mask: numpy's argmax of
 *      NaN is label 0);
 *   6. binary dense CRF (harness/crf.h) on the S x S uint8 image after the normalise /
 *      denormalise round trip (hx_simseg_crf_image): unary -log([1-p, p] + 1e-8), Gaussian
 *      sxy 3 compat 3, bilateral sxy 40 srgb 13 compat 10, 3 iterations, argmax (ties to
 *      label 0); then a close_size x close_size all-ones dilation followed by one erosion
 *      (cv2.dilate / cv2.erode called once each: their third argument is dst, not
 *      iterations), pixels outside the image ignored by both;
 *   7. OpenCV nearest resize of each mask to the label size; per pixel the accepted class
 *      with the largest mask x score wins. This is the argmax over all classes of a
 *      [C, H, W] array that is 255 x s_c under class c's mask and 0 elsewhere, ties to the
 *      lower index: so a pixel no mask covers, or covered only by classes with a score
 *      <= 0, is class 0 (the background row is always 0).
 * Background (class 0) never reaches step 5, so its subclasses, if the bank has any, are
 * never used; step 4 and step 7 always use the superclass embeddings.
 *
 * K larger than the number of classes is cut to it (torch.topk would raise); with K < 2 the
 * unbiased std is NaN in the released code, so nothing is below the threshold: here too.
 *
 * The LLM-supervision release (seg_evaluation.py at the root of its repository) takes K
 * from a command-line argument rather than the 10/30 rule, and does not normalise the
 * weighted embedding (no effect, see step 5).
 *
 * Ownership: outputs go into caller buffers, except hx_ssp_features, which fills a struct
 * hx_dense_feats (free with hx_dense_feats_free), and the CRF of hx_ssp_crf_new and
 * hx_ssp_predict_shared (free with hx_crf_free). Per-call workspace is freed before
 * returning. */
#ifndef HX_SIMSEG_PROTOCOL_H
#define HX_SIMSEG_PROTOCOL_H

#include "harness/ensemble.h"
#include "harness/image.h"
#include "harness/protocol.h"

#include <stddef.h>
#include <stdint.h>

#define HX_SSP_MAX_CANDIDATES 16

struct hx_ssp_params {
    int size;                 /* S: network input side (288) */
    int top_k;                /* K of the threshold statistics */
    int candidates;           /* classes walked (5), 1..HX_SSP_MAX_CANDIDATES */
    float std_mult;           /* threshold = mean + std_mult * std (1.0) */
    int crf_iters;            /* mean-field iterations (3); 0 = softmax of the unary */
    float gauss_sxy, gauss_compat;                 /* 3, 3 */
    float bilat_sxy, bilat_srgb, bilat_compat;     /* 40, 13, 10 */
    int close_size;           /* side of the square kernel of the close (7); 0 = none */
    float tau;                /* temperature of the per-pixel rules that need one (100) */
    int crf_threads;          /* threads of the CRF (the result does not depend on it) */
};

/* SimSeg's settings for a registry dataset name: K = 30 for context60 / context59 (the
 * released code tests name == 'pascal_context'), 10 otherwise. Never fails. */
void hx_ssp_params_default(struct hx_ssp_params *p, const char *dataset);

/* SimSeg's own class-name list for a registry dataset (its data/label_category files, whose
 * names the released subclass lists use as keys): voc21 -> datasets/classnames/
 * simseg_pascal_voc.txt, context60 -> simseg_pascal_context.txt, coco_object ->
 * simseg_coco_stuff.txt (SimSeg's 81-class "COCO-Stuff"); NULL for other datasets. */
const char *hx_ssp_classnames(const char *dataset);

/* A short key of what the features depend on besides the weights (input side and
 * normalisation), e.g. "simseg-s288"; out >= 32 bytes. */
void hx_ssp_view_key(const struct hx_ssp_params *p, char *out, size_t len);

/* Steps 1-2: features of one image through an encoder that takes a normalised [3, S, S]
 * view and returns the projected patch tokens (dense, not normalised) and the pooled (LoDA)
 * embedding. out: nw = 1, one window covering the S x S view, T = gh*gw, pooled = the LoDA
 * embedding; img_h, img_w the image's size. */
int hx_ssp_features(const struct hx_dense_encoder *enc, const struct hx_ssp_params *p,
                    const struct hx_image *im, struct hx_dense_feats *out);

/* An encoder callback for a SimSeg model (models/simseg/simseg.h): ctx is the struct
 * hx_simseg *; H and W must equal its image_size. Fill struct hx_dense_encoder with
 * dim = projection_dim and patch = patch_size. */
int hx_ssp_simseg_encode(void *ctx, const float *img, int H, int W, float *dense, float *pooled,
                         int *gh, int *gw);

/* The CRF image of step 6: the S x S PIL-bilinear resize, through the uint8 round trip.
 * rgb [S][S][3]. */
int hx_ssp_crf_image(const struct hx_ssp_params *p, const struct hx_image *im, uint8_t *rgb);

/* What happened to one image (all pointers optional; buffers sized by the caller for
 * `candidates` entries). */
struct hx_ssp_trace {
    float *scores;            /* [C] s_c (step 4) */
    double threshold;         /* the threshold of step 4 (-inf when K < 2) */
    int n_accepted;           /* classes accepted, in walk order: */
    int accepted[HX_SSP_MAX_CANDIDATES];
    float *maps;              /* [candidates, g*g] the raw map of step 5 (before min-max) */
    uint8_t *crf;             /* [candidates, S*S] the CRF argmax (0/1) */
    uint8_t *closed;          /* [candidates, S*S] after the close (0/255) */
};

/* Step 4 alone: scores s[C] -> accepted classes (walk order) and the threshold. */
int hx_ssp_gate(const struct hx_ssp_params *p, const float *s, int C, int *accepted, int *n,
                double *threshold);

/* The close of step 6 on a w x h 0/255 mask, in place (k x k all-ones kernel, anchor at the
 * centre; k odd >= 1). tmp [w*h] is scratch. */
void hx_ssp_close(uint8_t *mask, int w, int h, int k, uint8_t *tmp);

/* Step 7: closed masks [n][mh*mw] (0/255) of the accepted classes cls[n] with scores
 * score[n] -> pred [out_h * out_w]. */
int hx_ssp_paint(const uint8_t *masks, const int *cls, const float *score, int n, int mh,
                 int mw, int out_h, int out_w, uint8_t *pred);

/* Steps 3-7 from features. bank: C classes of E = f->E dimensions (member 0 of each class
 * its superclass embedding); pt: the rule of step 5 (k and include_super select the
 * members as in harness/ensemble.h); crf_rgb: hx_ssp_crf_image of the image. */
int hx_ssp_predict(const struct hx_ssp_params *p, const struct hx_text_bank *bank,
                   const struct hx_ens_point *pt, const struct hx_dense_feats *f,
                   const uint8_t *crf_rgb, int out_h, int out_w, uint8_t *pred,
                   struct hx_ssp_trace *trace);

/* The same with the CRF of step 6 shared by several predictions on one image (points of a
 * sweep): its lattices depend on the image and the kernel settings only, and are most of
 * its cost. *crf NULL: built from crf_rgb when a class is first accepted, and left for the
 * next call (the caller frees it with hx_crf_free once done with the image); otherwise used
 * as is, so it must come from the same image and kernel settings (hx_ssp_crf_new). */
struct hx_crf;
int hx_ssp_predict_shared(const struct hx_ssp_params *p, const struct hx_text_bank *bank,
                          const struct hx_ens_point *pt, const struct hx_dense_feats *f,
                          const uint8_t *crf_rgb, struct hx_crf **crf, int out_h, int out_w,
                          uint8_t *pred, struct hx_ssp_trace *trace);
/* The binary CRF of step 6 with both kernels on crf_rgb [S][S][3]. */
int hx_ssp_crf_new(const struct hx_ssp_params *p, const uint8_t *crf_rgb, struct hx_crf **out);

/* Features then prediction for one image; out_h x out_w is the label size. */
int hx_ssp_segment(const struct hx_dense_encoder *enc, const struct hx_ssp_params *p,
                   const struct hx_text_bank *bank, const struct hx_ens_point *pt,
                   const struct hx_image *im, int out_h, int out_w, uint8_t *pred,
                   struct hx_ssp_trace *trace);

#endif
