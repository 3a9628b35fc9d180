/* Pixel-adaptive mask refinement (PAMR, Araslanov & Roth, CVPR 2020), with the conventions of
 * the authors' code (visinf/1-stage-wseg models/mods/pamr.py), which NACLIP ships unchanged.
 *
 * For every dilation d the neighbours of a pixel p are the 8 non-centre points of the 3x3
 * grid p + {-d,0,d}^2; coordinates outside the image are clamped (replicate padding).
 *   sd_c(p) = unbiased (n-1) standard deviation of channel c over the 9 taps of the 3x3 grid
 *             (centre included) of ALL dilations pooled together: 9 x n_dilations values
 *   a(p,q)  = mean over channels c of -|I_c(p) - I_c(q)| / (1e-8 + 0.1 sd_c(p))
 *   w(p,q)  = softmax over the 8 x n_dilations neighbours q of p of a(p,q)
 *   m(p)   <- sum_q w(p,q) m(q), iterated; p itself is not among its neighbours.
 * The affinity depends on the image only, so it is computed once and reused for every mask
 * and every step.
 *
 * Where NACLIP applies it (naclip.py, predict): once per image, after the crops' logits have
 * been averaged and bilinearly resized (align_corners=False) to the label size, and before
 * logit_scale and the softmax. The image is the network input (resized so the short side is
 * S, RGB, normalised with CLIP's mean/std) bilinearly resized (align_corners=False) to the same
 * label size (mmseg's test preprocessor does not pad). The masks are the raw cosine logits
 * [K, H, W] of all queries (synonyms included). Since every channel's term is a ratio of a
 * difference and a standard deviation, the result does not depend on a per-channel affine
 * normalisation of the image or on its channel order (up to the 1e-8).
 * The reference first resizes the masks to the image size (bilinear, align_corners=True);
 * NACLIP passes them at the image size already, where that step is the identity, so here the
 * masks must have the image's size.
 *
 * Ownership: hx_pamr_new allocates the object, hx_pamr_free frees it. Masks are refined in
 * place in the caller's buffer. Objects are read-only after creation (shareable by threads). */
#ifndef HX_PAMR_H
#define HX_PAMR_H

#define HX_PAMR_MAX_DILATIONS 8

struct hx_pamr_opts {
    int iters;                            /* refinement steps; NACLIP: 10; 0 = no change */
    int n_dilations;                      /* 1 .. HX_PAMR_MAX_DILATIONS; NACLIP: 2 */
    int dilations[HX_PAMR_MAX_DILATIONS]; /* each >= 1; NACLIP: 8, 16 */
    int threads;                          /* for the refinement; <= 1: the calling thread */
};

/* NACLIP's setting: 10 steps, dilations (8, 16); one thread. */
#define HX_PAMR_OPTS_NACLIP {10, 2, {8, 16}, 1}

struct hx_pamr {
    int h, w;            /* image (and mask) size */
    int n_nb;            /* neighbours per pixel: 8 x n_dilations */
    int dy[8 * HX_PAMR_MAX_DILATIONS], dx[8 * HX_PAMR_MAX_DILATIONS]; /* [n_nb] offsets */
    float *aff;          /* [n_nb, h, w] softmax weights; they sum to 1 over n at each pixel.
                          * Neighbour order: dilation-major, then dy in (-d,0,d), dx in (-d,0,d),
                          * skipping the centre. */
};

/* Affinity of `img` [c, h, w] (c >= 1 channels) for the given dilations. */
int hx_pamr_new(struct hx_pamr **out, const float *img, int c, int h, int w,
                const int *dilations, int n_dilations);
void hx_pamr_free(struct hx_pamr *p);

/* Refine `masks` [k, h, w] in place with `iters` steps (iters >= 0); h, w are the image's.
 * Allocates one scratch buffer per call: about 16 MB per thread, or one class's map if larger.
 * Memory otherwise: the affinity, 4 x 8 x n_dilations bytes per pixel (64 B with NACLIP's). */
int hx_pamr_apply(const struct hx_pamr *p, float *masks, int k, int iters);

/* The same with the classes shared among up to `threads` threads (capped at
 * HX_PAMR_MAX_THREADS and at k; <= 1: the calling thread only). The result does not depend on
 * the thread count: each class's arithmetic is the same. */
#define HX_PAMR_MAX_THREADS 64
int hx_pamr_apply_mt(const struct hx_pamr *p, float *masks, int k, int iters, int threads);

/* hx_pamr_new + hx_pamr_apply_mt + hx_pamr_free. */
int hx_pamr(const float *img, int c, int h, int w, float *masks, int k,
            const struct hx_pamr_opts *opts);

#endif
