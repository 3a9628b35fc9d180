/* Evaluation of saved prediction maps against ground-truth label maps, and the JSON report.
 *
 * Ownership: hx_eval_dirs allocates *out (free with hx_metrics_free); hx_eval_json_write
 * only reads. */
#ifndef HX_EVALUATE_H
#define HX_EVALUATE_H

#include "harness/metrics.h"

#include <stdint.h>

struct hx_eval_opts {
    int num_classes;
    int ignore_index;      /* 255 by default */
    int reduce_zero_label; /* on the ground truth: 0 -> 255, k -> k-1, 255 stays */
    /* optional: called after each image with (images done, total, ctx) */
    void (*progress)(size_t done, size_t total, void *ctx);
    void *progress_ctx;
};

/* Every *.png in gt_dir (sorted by name) is paired with pred_dir/<same stem>.png; both are
 * read with hx_labelmap_read (palette PNGs give indices). Errors: no PNG in gt_dir or a
 * missing prediction (HX_ENOTFOUND naming it), a size mismatch (HX_EFORMAT naming both
 * files), unreadable files. Predictions without a ground truth are not used. */
int hx_eval_dirs(const char *pred_dir, const char *gt_dir, const struct hx_eval_opts *o,
                 struct hx_metrics **out);

/* Write the scores of m as JSON, atomically:
 *   {"num_images": n, "num_classes": C, "ignore_index": i, "aAcc": x, "mIoU": x, "mAcc": x,
 *    "mIoU_ci95": [lo, hi], "bootstrap": {"reps": B, "seed": s},
 *    "IoU": [C values], "Acc": [C values]}
 * Percentages printed with %.17g; NaN is written as null. The interval is
 * hx_metrics_bootstrap(m, reps, seed, 0.95). */
int hx_eval_json_write(const char *path, const struct hx_metrics *m, int ignore_index, int reps,
                       uint64_t seed);

/* In place: 0 -> 255, k -> k-1 for 1..254, 255 stays 255 (mmseg's reduce_zero_label). */
void hx_reduce_zero_label(uint8_t *px, size_t n);

#endif
