/* The cost of one sweep point over cached features, against the cost of reading them. */
#include "harness/cli/cli.h"
#include "harness/error.h"
#include "harness/featcache.h"
#include "harness/metrics.h"
#include "harness/nn.h"
#include "harness/parallel.h"
#include "harness/protocol.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: harness bench-sweep [--images N] [--windows W] [--tokens T] [--dim E]\n"
    "                           [--classes C] [--members M] [--label HxW] [--rule R]\n"
    "                           [--cache DIR] [--f16]\n"
    "\n"
    "Time one sweep point over cached features: per image, read its W windows of T tokens x E\n"
    "dims from the feature cache, score them against C classes x M members (one GEMM per\n"
    "window), apply the ensemble rule, upsample, average, resize to the label size, decide\n"
    "and accumulate the confusion counts. The features (random, fixed seed) are written to the\n"
    "cache on the first run. Prints key=value lines: read_s (reading every cached feature\n"
    "once: the bound), point_s (the whole point), images_per_s, ratio=point_s/read_s, and\n"
    "peak_rss_mb. Defaults: 1500 images, 3 windows x 441 tokens x 512 dims, 21 classes x 6\n"
    "members, labels 375x500, rule max, cache .cache/bench-sweep.\n";

static uint32_t rng_state = 12345;
static float frand(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) / 16777216.0 * 2 - 1);
}

struct sweep_job {
    struct hx_featcache *fc;
    const struct hx_dense_params *p;
    const struct hx_queries *q;
    int images, lh, lw;
    const uint8_t *lbl;
    struct hx_metrics **wm; /* [workers] */
    int workers, rc;
    char err[1024];
    pthread_mutex_t lock;
};

static void sweep_range(void *ctx, int w0, int w1)
{
    struct sweep_job *j = ctx;
    uint8_t *pred = malloc((size_t)j->lh * j->lw);
    struct hx_dense_feats f = {0};
    int rc = pred ? 0 : HX_ENOMEM;
    for (int w = w0; w < w1 && !rc; w++)
        for (int i = j->images * w / j->workers; i < j->images * (w + 1) / j->workers && !rc; i++) {
            char id[32];
            snprintf(id, sizeof id, "img%05d", i);
            if (!(rc = hx_featcache_get(j->fc, id, &f)) &&
                !(rc = hx_dense_predict(j->p, j->q, &f, NULL, j->lh, j->lw, pred, NULL)))
                rc = hx_metrics_add(j->wm[w], pred, j->lbl, (size_t)j->lh * j->lw);
            hx_dense_feats_free(&f);
        }
    pthread_mutex_lock(&j->lock);
    if (rc && !j->rc) { /* the message is this thread's: hand it over */
        j->rc = rc;
        snprintf(j->err, sizeof j->err, "%s", hx_errmsg());
    }
    pthread_mutex_unlock(&j->lock);
    free(pred);
}

static int run(int argc, char **argv)
{
    int images = 1500, windows = 3, tokens = 441, dim = 512, classes = 21, members = 6, f16 = 0;
    const char *label = "375x500", *rule = "max", *cache = ".cache/bench-sweep";
    struct cli_opt opts[] = {
        {"images", CLI_INT, &images},   {"windows", CLI_INT, &windows}, {"tokens", CLI_INT, &tokens},
        {"dim", CLI_INT, &dim},         {"classes", CLI_INT, &classes}, {"members", CLI_INT, &members},
        {"label", CLI_STR, &label},     {"rule", CLI_STR, &rule},       {"cache", CLI_STR, &cache},
        {"f16", CLI_FLAG, &f16}};
    char *pos[argc];
    int n, code, rc, lh, lw;
    if ((code = cli_parse(argv[0], argc, argv, opts, 10, pos, &n)))
        return code;
    if (n)
        return cli_usage_error(argv[0], "unexpected argument '%s'", pos[0]);
    if (sscanf(label, "%dx%d", &lh, &lw) != 2 || lh < 1 || lw < 1)
        return cli_usage_error(argv[0], "--label expects HxW, got '%s'", label);
    int g = (int)sqrt((double)tokens);
    if (images < 1 || windows < 1 || g * g != tokens || dim < 1 || classes < 2 || classes > 255 ||
        members < 1)
        return cli_usage_error(argv[0], "bad sizes (tokens must be a square number)");
    struct hx_ens_point point = {HX_ENS_MAX, members - 1, 1};
    if (hx_ens_rule_parse(rule, &point.rule))
        return cli_usage_error(argv[0], "%s", hx_errmsg());

    /* geometry: square windows of g*16 pixels side by side with a stride of 2/3 crop */
    int crop = g * 16, stride = crop * 2 / 3, vw = crop + (windows - 1) * stride, vh = crop;
    struct hx_dense_params p = {0};
    p.short_side = vh, p.long_max = 2048, p.crop = crop, p.stride = stride;
    p.logit_scale = 40, p.prob_thd = 0.1f, p.area_thd = -1;
    char key[96], fp[64];
    hx_view_key(&p, key, sizeof key);
    snprintf(fp, sizeof fp, "bench-%dx%d-%d", windows, tokens, dim);
    struct hx_featcache fc;
    if ((rc = hx_featcache_open(&fc, cache, fp, key, f16)))
        return cli_fail(argv[0], rc);

    /* text bank: random unit members */
    int M = classes * members, *nsub = malloc(sizeof(int) * classes), *name_class = malloc(sizeof(int) * classes);
    float *emb = malloc(sizeof(float) * (size_t)M * dim);
    uint8_t *lbl = malloc((size_t)lh * lw);
    struct hx_text_bank *bank = NULL;
    struct hx_metrics *metrics = NULL;
    struct hx_dense_feats f = {0};
    struct sweep_job job;
    memset(&job, 0, sizeof job);
    code = 1;
    if (!nsub || !name_class || !emb || !lbl)
        goto done;
    for (int c = 0; c < classes; c++)
        nsub[c] = members - 1, name_class[c] = c;
    for (size_t i = 0; i < (size_t)M * dim; i++)
        emb[i] = frand();
    if ((rc = hx_text_bank_create(&bank, emb, nsub, classes, dim)) ||
        (rc = hx_metrics_new(&metrics, classes, 255)))
        goto fail;
    for (size_t i = 0; i < (size_t)lh * lw; i++)
        lbl[i] = (uint8_t)(i / lw * classes / lh);
    struct hx_queries q = {bank, name_class, classes, point};

    /* write missing features once */
    size_t written = 0;
    for (int i = 0; i < images; i++) {
        char id[32];
        snprintf(id, sizeof id, "img%05d", i);
        if (hx_featcache_has(&fc, id))
            continue;
        if ((rc = hx_dense_feats_alloc(&f, windows, tokens, dim)))
            goto fail;
        f.img_h = lh, f.img_w = lw, f.view_h = vh, f.view_w = vw;
        for (int w = 0; w < windows; w++) {
            f.win[w] = (struct hx_window){0, crop, w * stride, w * stride + crop};
            f.grid[2 * w] = f.grid[2 * w + 1] = g;
        }
        for (size_t k = 0; k < (size_t)windows * tokens * dim; k++)
            f.dense[k] = frand();
        for (size_t k = 0; k < (size_t)windows * dim; k++)
            f.pooled[k] = frand();
        if ((rc = hx_featcache_put(&fc, id, &f)))
            goto fail;
        hx_dense_feats_free(&f);
        written++;
    }
    if (written)
        fprintf(stderr, "bench-sweep: wrote %zu feature files to %s\n", written, fc.dir);

    /* as `run` does: one BLAS thread, the cores go to workers over contiguous image ranges */
    hx_set_threads(1);
    double t0 = cli_seconds();
    for (int i = 0; i < images; i++) {
        char id[32];
        snprintf(id, sizeof id, "img%05d", i);
        if ((rc = hx_featcache_get(&fc, id, &f)))
            goto fail;
        hx_dense_feats_free(&f);
    }
    double read_s = cli_seconds() - t0;
    job.fc = &fc, job.p = &p, job.q = &q, job.images = images, job.lh = lh, job.lw = lw;
    job.lbl = lbl, job.workers = hx_default_threads();
    pthread_mutex_init(&job.lock, NULL);
    if (job.workers > images)
        job.workers = images;
    if (!(job.wm = calloc(job.workers, sizeof *job.wm)))
        goto done;
    for (int w = 0; w < job.workers; w++)
        if ((rc = hx_metrics_new(&job.wm[w], classes, 255)))
            goto fail;
    t0 = cli_seconds();
    hx_parallel_for(job.workers, job.workers, sweep_range, &job);
    if (job.rc) {
        rc = hx_err(job.rc, "%s", job.err);
        goto fail;
    }
    for (int w = 0; w < job.workers; w++)
        if ((rc = hx_metrics_append(metrics, job.wm[w])))
            goto fail;
    double point_s = cli_seconds() - t0;
    printf("images=%d windows=%d tokens=%d dim=%d members=%d label=%dx%d rule=%s\n", images,
           windows, tokens, dim, M, lh, lw, hx_ens_rule_name(point.rule));
    printf("read_s=%.3f\n", read_s);
    printf("point_s=%.3f\n", point_s);
    printf("images_per_s=%.1f\n", images / point_s);
    printf("peak_rss_mb=%.1f\n", cli_peak_rss_mb());
    printf("ratio=%.2f\n", point_s / read_s);
    code = 0;
    goto done;
fail:
    code = cli_fail(argv[0], rc);
done:
    for (int w = 0; job.wm && w < job.workers; w++)
        hx_metrics_free(job.wm[w]);
    free(job.wm);
    hx_dense_feats_free(&f);
    hx_text_bank_free(bank);
    hx_metrics_free(metrics);
    free(nsub), free(name_class), free(emb), free(lbl);
    return code;
}

const struct hx_command hx_cmd_bench_sweep = {
    "bench-sweep", "time one sweep point over cached features", usage, run};
