/* Segmentation metrics with the semantics of mmsegmentation's IoUMetric.
 *
 * Per image: pixels whose label equals the ignore index are dropped first; then, over classes
 * 0..C-1 (values outside are not counted), three histograms: intersection (pred == label),
 * prediction and label. They are summed over images. From the sums:
 *   aAcc   = sum_c I_c / sum_c L_c
 *   IoU_c  = I_c / (P_c + L_c - I_c)   NaN when the union is 0 (class absent from both)
 *   Acc_c  = I_c / L_c                 NaN when L_c is 0 (even if the class was predicted)
 *   mIoU, mAcc = means over the classes that are not NaN
 * so a class predicted but never present scores IoU 0 and counts in mIoU, but is left out
 * of mAcc. All reported values are percentages (x100). Counts are exact 64-bit integers.
 *
 * The accumulator also keeps per image the (I, P, L) counts of the classes present in that
 * image (int32 class ids and counts), which is all a bootstrap over images needs.
 *
 * Ownership: hx_metrics_new allocates, hx_metrics_free frees. Result arrays (iou, acc) are
 * provided by the caller with num_classes entries. */
#ifndef HX_METRICS_H
#define HX_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct hx_metrics;

/* num_classes in 1..256. ignore_index: the label value to drop (255 usually); a value
 * outside 0..255 (e.g. -1) ignores nothing. */
int hx_metrics_new(struct hx_metrics **out, int num_classes, int ignore_index);
void hx_metrics_free(struct hx_metrics *m);

/* Add one image of n pixels: pred and label [n] (the same pixel order). */
int hx_metrics_add(struct hx_metrics *m, const uint8_t *pred, const uint8_t *label, size_t n);

/* Append src's images after dst's, in order, as if they had been added to dst one by one
 * (parallel workers over contiguous ranges of images, merged in range order). */
int hx_metrics_append(struct hx_metrics *dst, const struct hx_metrics *src);

int hx_metrics_num_classes(const struct hx_metrics *m);
size_t hx_metrics_num_images(const struct hx_metrics *m);

/* Copy the summed histograms into caller arrays [num_classes] (any may be NULL). */
void hx_metrics_totals(const struct hx_metrics *m, int64_t *inter, int64_t *pred,
                       int64_t *label);

/* The per-image counts of image `i` (0-based, in the order added): *n entries, pointers into
 * the accumulator (valid until the next hx_metrics_add or hx_metrics_free). Only classes with
 * P > 0 or L > 0 in that image appear, in increasing class order. */
void hx_metrics_image(const struct hx_metrics *m, size_t i, const int32_t **cls,
                      const int32_t **inter, const int32_t **pred, const int32_t **label,
                      size_t *n);

struct hx_scores {
    double aAcc, mIoU, mAcc; /* percent; NaN when undefined */
    double *iou, *acc;       /* [num_classes] percent, NaN where undefined; caller-owned,
                                may be NULL when not wanted */
};

/* Scores from summed histograms [num_classes]. */
void hx_scores_from_counts(const int64_t *inter, const int64_t *pred, const int64_t *label,
                           int num_classes, struct hx_scores *out);

/* Scores of everything added so far. */
void hx_metrics_scores(const struct hx_metrics *m, struct hx_scores *out);

/* Percentile bootstrap confidence interval of mIoU over images: `reps` resamples of the
 * images with replacement; level 0.95 gives the 2.5 and 97.5 percentiles (linear
 * interpolation between order statistics, as numpy.percentile). Resample r draws its
 * image indices from one splitmix64 stream seeded with `seed`: index = (x * n) >> 64 for
 * each 64-bit output x. Resamples whose mIoU is NaN are left out. *lo = *hi = NaN when there
 * is no image or no finite resample. Percent, like mIoU. */
int hx_metrics_bootstrap(const struct hx_metrics *m, int reps, uint64_t seed, double level,
                         double *lo, double *hi);

#define HX_BOOTSTRAP_REPS 1000
#define HX_BOOTSTRAP_SEED 20240229u

/* One splitmix64 step (the bootstrap's generator). */
uint64_t hx_splitmix64(uint64_t *state);

#endif
