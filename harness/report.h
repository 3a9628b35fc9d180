/* Reports of an experiment: tables of all sweep points and a few plots.
 *
 * summary.json   {"name", "axes": [...], "points": [{"index", "label", "axes": {...},
 *                 "mIoU", "mIoU_ci95": [lo, hi], "aAcc", "mAcc", "num_images", "IoU": [...]}]}
 * summary.md / summary.csv / summary.tex   one row per point: the axis values, mIoU with its
 *                 95% bootstrap interval, aAcc, mAcc
 * miou_vs_k.png  when k is swept: mIoU against k, one line per value of the other axes
 * per_class.png  per-class IoU of the best point (and the first point, for contrast)
 * Ownership: nothing is kept; files are written atomically. */
#ifndef HX_REPORT_H
#define HX_REPORT_H

#include "harness/image.h"
#include "harness/xpconfig.h"

#include <stdint.h>

/* Read every point's metrics.json under the points' output folder and write the summary
 * files and plots there. */
int hx_report_summary(const struct hx_xp *xp);

/* Regenerate the tables of one results folder (its summary.json) into out_dir as
 * <name>.md, <name>.csv and <name>.tex. */
int hx_report_tables(const char *results_dir, const char *out_dir);

/* image | ground truth | prediction, side by side; labels coloured with the VOC palette
 * (SPEC 7), 255 drawn white. */
int hx_report_overlay(const char *path, const struct hx_image *im, const uint8_t *gt,
                      const uint8_t *pred, int w, int h);

/* The VOC colour of label i (SPEC 7). */
void hx_voc_color(int i, uint8_t rgb[3]);

#endif
