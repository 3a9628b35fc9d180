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
    int dry_run;  /* list points and what is cached, compute nothing */
    int quiet;    /* no progress lines */
    int tty;      /* progress as a redrawn bar (a terminal) rather than periodic lines */
    /* Where text goes: to_log 0 = results (the dry-run listing), 1 = progress and warnings.
     * The library never prints; NULL drops everything. */
    void (*emit)(void *ctx, int to_log, const char *text);
    void *emit_ctx;
};

/* Run all points and write their results and the summary (harness/report.h). */
int hx_xp_run(const struct hx_xp *xp, const struct hx_run_opts *o);

#endif
