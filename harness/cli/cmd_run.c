#include "harness/cli/cli.h"
#include "harness/error.h"
#include "harness/atomicio.h"
#include "harness/experiment.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char usage[] =
    "usage: harness run CONFIG.json [--limit N] [--resume] [--dry-run] [--quiet]\n"
    "\n"
    "Run an experiment: every point of its sweep (any config field given as a list is swept)\n"
    "over the dataset, with image features and text embeddings computed once and kept in the\n"
    "cache. Results go to the config's output folder (results/<name> by default): per point\n"
    "metrics.json (the `eval` format with a 95% bootstrap interval) and per_class.csv, then\n"
    "summary.{json,md,csv,tex}, plots and overlays. The summary table is printed on stdout.\n"
    "\n"
    "  --limit N   use at most N images (overrides dataset.limit)\n"
    "  --resume    keep points whose results exist and match the config; compute the rest\n"
    "  --dry-run   list the points and how many images are cached; compute nothing\n"
    "  --quiet     no progress on stderr\n"
    "\n"
    "The config format is described in harness/xpconfig.h and README.md; experiments/ holds\n"
    "examples (experiments/demo.json runs offline on the synthetic benchmark).\n";

static void emit(void *ctx, int to_log, const char *text)
{
    (void)ctx;
    FILE *f = to_log ? stderr : stdout;
    fputs(text, f);
    fflush(f);
}

static int run(int argc, char **argv)
{
    struct hx_run_opts o = {0};
    o.emit = emit;
    o.tty = isatty(2);
    struct cli_opt opts[] = {{"limit", CLI_INT, &o.limit},
                             {"resume", CLI_FLAG, &o.resume},
                             {"dry-run", CLI_FLAG, &o.dry_run},
                             {"quiet", CLI_FLAG, &o.quiet}};
    char *pos[argc];
    int n, code, rc;
    if ((code = cli_parse(argv[0], argc, argv, opts, 4, pos, &n)))
        return code;
    if (n != 1)
        return cli_usage_error(argv[0], "expected one CONFIG file, got %d arguments", n);
    if (o.limit < 0)
        return cli_usage_error(argv[0], "--limit must be >= 0");
    struct hx_xp *xp;
    if ((rc = hx_xp_load(&xp, pos[0])))
        return cli_fail(argv[0], rc);
    rc = hx_xp_run(xp, &o);
    if (!rc && !o.dry_run) { /* the summary table on stdout */
        char path[1200];
        uint8_t *md;
        size_t len;
        snprintf(path, sizeof path, "%s/summary.md", xp->points[0].output);
        if (hx_read_file(path, &md, &len) == 0) {
            printf("%s (%s)\n\n", xp->name, xp->points[0].output);
            fwrite(md, 1, len, stdout);
            free(md);
        }
    }
    hx_xp_free(xp);
    return rc ? cli_fail(argv[0], rc) : 0;
}

const struct hx_command hx_cmd_run = {"run", "run an experiment config (a sweep) end to end",
                                      usage, run};
