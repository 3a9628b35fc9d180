/* Running an experiment: every point of a sweep over one dataset, with image features
 * computed once per feature group (points that share model, variant, dataset and view) and
 * text embeddings once per text, both through the feature cache.
 *
 * Outputs under each point's output directory (results/<name> by default):
 *   config.json                 the config as given
 *   points/<NNN>/point.json     the point: index, label, axis values, resolved parameters
 *   points/<NNN>/metrics.json   the `eval` format plus the bootstrap interval
 *   points/<NNN>/per_class.csv  class, IoU, Acc
 *   overlays/<NNN>-<id>.png     image | ground truth | prediction, for the first images
 *   summary.json, summary.md, summary.csv, summary.tex   one row per point
 *   plots (harness/report.h)
 * Progress goes to stderr: a bar with rate and ETA on a terminal, a line every few seconds
 * otherwise. */
#ifndef HX_EXPERIMENT_H
#define HX_EXPERIMENT_H

#include "harness/xpconfig.h"

struct hx_run_opts {
    int limit;    /* > 0: at most this many images per dataset (overrides the config) */
    int resume;   /* reuse finished points' results (same resolved point) */
    int dry_run;  /* print points and what is cached, compute nothing */
    int quiet;    /* no progress output */
};

/* Run all points; prints the summary table on stdout. */
int hx_xp_run(const struct hx_xp *xp, const struct hx_run_opts *o);

/* The subclass lists of a JSON file {"class": ["sub", ...]}: for each of n class first names
 * (matched case-insensitively, surrounding spaces ignored), its list in file order, with
 * exact duplicates inside a list kept once. subs[i] is NULL with nsub[i] = 0 for a class the
 * file does not name. Free with hx_subclass_lists_free. */
int hx_subclass_lists(const char *path, char *const *classes, int n, char ****subs, int **nsub);
void hx_subclass_lists_free(char ***subs, int *nsub, int n);

#endif
