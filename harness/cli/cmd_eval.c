#include "harness/cli/cli.h"
#include "harness/error.h"
#include "harness/evaluate.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char usage[] =
    "usage: harness eval --pred DIR --gt DIR --num-classes N [--ignore-index I]\n"
    "                    [--reduce-zero-label] [--bootstrap B] [--seed S] --out FILE.json\n"
    "\n"
    "Score prediction maps against ground-truth label maps (mmsegmentation IoUMetric).\n"
    "Every DIR/*.png of --gt is paired with the --pred file of the same name; both are 8-bit\n"
    "greyscale or palette PNGs (palette indices are the labels).\n"
    "\n"
    "  --pred DIR            predicted label maps (values 0..N-1; others are not counted)\n"
    "  --gt DIR              ground-truth label maps\n"
    "  --num-classes N       number of classes (1..256)\n"
    "  --ignore-index I      ground-truth value to ignore (default 255; -1 for none)\n"
    "  --reduce-zero-label   on the ground truth: 0 -> 255, k -> k-1, 255 stays\n"
    "  --bootstrap B         resamples for the 95% interval of mIoU over images (default 1000)\n"
    "  --seed S              bootstrap seed (default fixed)\n"
    "  --out FILE.json       aAcc, mIoU, mAcc (percent), IoU and Acc per class (null where\n"
    "                        undefined), num_images, mIoU_ci95 [lo, hi]; written atomically\n"
    "\n"
    "Exit codes: 0 ok, 1 failure, 2 bad usage or input (missing prediction, size mismatch).\n";

/* progress on stderr: a rewritten line on a terminal, a line per 10% otherwise */
static void progress(size_t done, size_t total, void *ctx)
{
    int tty = *(int *)ctx;
    if (tty) {
        fprintf(stderr, "\reval: %zu/%zu images", done, total);
        if (done == total)
            fputc('\n', stderr);
    } else if (total >= 20 && (done * 10 / total != (done - 1) * 10 / total)) {
        fprintf(stderr, "eval: %zu/%zu images\n", done, total);
    }
}

static int run(int argc, char **argv)
{
    const char *pred = NULL, *gt = NULL, *out = NULL, *seed_s = NULL;
    int num_classes = 0, ignore = 255, reduce = 0, reps = HX_BOOTSTRAP_REPS;
    struct cli_opt opts[] = {{"pred", CLI_STR, &pred},
                             {"gt", CLI_STR, &gt},
                             {"out", CLI_STR, &out},
                             {"num-classes", CLI_INT, &num_classes},
                             {"ignore-index", CLI_INT, &ignore},
                             {"reduce-zero-label", CLI_FLAG, &reduce},
                             {"bootstrap", CLI_INT, &reps},
                             {"seed", CLI_STR, &seed_s}};
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    int npos = 0, rc;
    if (!pos)
        return 1;
    rc = cli_parse("eval", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, &npos);
    if (rc)
        goto done;
    if (npos) {
        rc = cli_usage_error("eval", "unexpected argument '%s'", pos[0]);
        goto done;
    }
    if ((rc = cli_require("eval", pred, "pred")) || (rc = cli_require("eval", gt, "gt")) ||
        (rc = cli_require("eval", out, "out")))
        goto done;
    if (num_classes < 1 || num_classes > 256) {
        rc = cli_usage_error("eval", "--num-classes must be in 1..256 (got %d)", num_classes);
        goto done;
    }
    if (ignore < -1 || ignore > 255) {
        rc = cli_usage_error("eval", "--ignore-index must be in -1..255 (got %d)", ignore);
        goto done;
    }
    if (reps < 1) {
        rc = cli_usage_error("eval", "--bootstrap must be at least 1 (got %d)", reps);
        goto done;
    }
    unsigned long long seed = HX_BOOTSTRAP_SEED;
    if (seed_s) {
        char *end;
        seed = strtoull(seed_s, &end, 10);
        if (end == seed_s || *end) {
            rc = cli_usage_error("eval", "--seed expects a non-negative integer, got '%s'",
                                 seed_s);
            goto done;
        }
    }
    int tty = isatty(STDERR_FILENO);
    struct hx_eval_opts o = {num_classes, ignore, reduce, progress, &tty};
    struct hx_metrics *m = NULL;
    int st = hx_eval_dirs(pred, gt, &o, &m);
    if (!st)
        st = hx_eval_json_write(out, m, ignore, reps, (uint64_t)seed);
    if (st) {
        rc = cli_fail("eval", st);
    } else {
        struct hx_scores s = {0};
        hx_metrics_scores(m, &s);
        fprintf(stderr, "eval: %zu images, mIoU %.2f, aAcc %.2f, mAcc %.2f -> %s\n",
                hx_metrics_num_images(m), s.mIoU, s.aAcc, s.mAcc, out);
        rc = 0;
    }
    hx_metrics_free(m);
done:
    free(pos);
    return rc;
}

const struct hx_command hx_cmd_eval = {"eval", "score prediction maps against ground truth",
                                       usage, run};
