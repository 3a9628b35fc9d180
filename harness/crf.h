/* Fully connected CRF (Kraehenbuehl & Koltun, NIPS 2011) with Gaussian and bilateral kernels,
 * Potts compatibility and mean-field inference through the permutohedral lattice (Adams,
 * Baek & Davis 2010), reproducing pydensecrf (Kraehenbuehl's 2013 densecrf code as built on
 * x86-64) number for number: SPEC-simseg "Dense CRF as pydensecrf computes it".
 *
 * What is computed, for pixels n = y*W + x and labels l:
 *   Q0 = softmax_l(-U)
 *   Q  <- softmax_l(-U + sum_k w_k * nrm_k(n) * K_k(nrm_k * Q)(n)),   `iters` times,
 *   K_k = the lattice filter of kernel k (splat, blur [0.5 1 0.5] along the d+1 lattice axes,
 *         slice with alpha = 1/(1+2^-d); the pixel's own term is kept),
 *   nrm_k = 1/sqrt(K_k(1) + 1e-20) (NORMALIZE_SYMMETRIC, pydensecrf's default),
 * kernels applied in the order they were added. Features are float32 x/sxy, y/sxy (Gaussian,
 * d = 2) and x/sxy, y/sxy, R/srgb, G/srgb, B/srgb (bilateral, d = 5). The lattice keeps the
 * reference's quirks: SSE rounding (half to even), the extra lattice vertices of the zero
 * features that pad the pixel count to a multiple of 4, the slice arithmetic that depends on
 * the label count (<= 2 labels: (b*v)*alpha, more: (b*alpha)*v), Eigen's exp (Cephes
 * polynomial on whole packets of 4 labels, libm expf on the rest) and its summation order in
 * the softmax. Every operation is float32 in the reference's order: Q agrees with pydensecrf
 * bit for bit on the reference cases of tests/test_crf.c (a unary from probabilities can
 * differ by numpy's log against libm's, an ulp, which moves Q by ~1e-6 after 10 iterations).
 *
 * Work: each kernel's lattice (vertex hash, per-pixel vertices and weights, blur neighbours,
 * normalisation) is built once when the kernel is added and reused by every iteration and
 * label. An iteration is one pass over the pixels that splats whole label vectors into every
 * lattice, the blur of each lattice, and one pass that slices every kernel and takes the
 * softmax. Threads (hx_crf_set_threads, before adding kernels to use them there too): the
 * simplex computation and blur-neighbour lookups of the lattice construction are split by
 * points, the splat and blur by kernels (a kernel's splat stays on one thread), the slice and
 * softmax by pixels. Results do not depend on the thread count.
 *
 * Ownership: hx_crf_new allocates the object, hx_crf_free frees it (and everything it holds).
 * Inputs are copied; the caller keeps its buffers. hx_crf_infer allocates its scratch per call
 * (no per-pixel allocation): Q [H*W, labels'] and two value buffers per kernel
 * [vertices, labels'] (labels' = labels, or rounded up to a multiple of 4), floats.
 * All functions returning int return 0 or a negative hx_status with the message set. */
#ifndef HX_CRF_H
#define HX_CRF_H

#include <stdint.h>

#define HX_CRF_MAX_KERNELS 8
#define HX_CRF_MAX_THREADS 64

struct hx_crf;

/* A CRF on a w x h image with `labels` >= 1 labels; no unary (all zero) and no kernel yet;
 * one thread. */
int hx_crf_new(struct hx_crf **out, int w, int h, int labels);
void hx_crf_free(struct hx_crf *crf);

/* Threads for the kernels added afterwards and for hx_crf_infer (<= 1: the calling thread;
 * capped at HX_CRF_MAX_THREADS). */
void hx_crf_set_threads(struct hx_crf *crf, int threads);

/* The unary energy U [labels, h, w] (setUnaryEnergy; the reference stores it [labels, h*w]). */
int hx_crf_set_unary(struct hx_crf *crf, const float *unary);

/* U = -logf(prob + eps) from probabilities [labels, h, w], in float32 (SimSeg: eps = 1e-8,
 * -np.log(p + 1e-8); numpy's float32 log may differ from libm's logf by one ulp). */
int hx_crf_set_unary_from_prob(struct hx_crf *crf, const float *prob, float eps);

/* addPairwiseGaussian(sxy, compat): features (x/sxy, y/sxy); sxy > 0. */
int hx_crf_add_gaussian(struct hx_crf *crf, float sxy, float compat);

/* addPairwiseBilateral(sxy, srgb, rgbim, compat): features (x/sxy, y/sxy, R/srgb, G/srgb,
 * B/srgb) of `rgb` [h][w][3] 8-bit; sxy, srgb > 0. */
int hx_crf_add_bilateral(struct hx_crf *crf, float sxy, float srgb, const uint8_t *rgb,
                         float compat);

/* inference(iters): writes Q [labels, h, w] (iters >= 0; 0 gives softmax(-U)). May be called
 * again, with a new unary in between. */
int hx_crf_infer(struct hx_crf *crf, int iters, float *q);

/* Vertices of kernel k's lattice (padding vertices included), or -1 if there is no kernel k:
 * for benchmarks and tests. */
int hx_crf_lattice_size(const struct hx_crf *crf, int k);

#endif
