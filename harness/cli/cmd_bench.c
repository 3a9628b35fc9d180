/* Times the vision forward pass and sets it against the machine's measured sgemm rate. */
#include "harness/cli/cli.h"
#include "harness/error.h"
#include "harness/nn.h"
#include "models/clip/clip.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static const char usage[] =
    "usage: harness bench --model DIR --size S [--runs N] [--threads T] [--variant V]\n"
    "\n"
    "Time the image forward pass (pooled and dense outputs; model loading excluded) on a\n"
    "random S x S input and print key=value lines:\n"
    "  flops=<count>          floating-point operations of one forward pass (GEMMs)\n"
    "  sgemm_gflops=<rate>    this machine's measured cblas_sgemm rate (2048^3, T threads)\n"
    "  bound_s=<seconds>      flops / sgemm rate: the time if every FLOP ran at that rate\n"
    "  weights_mb, activations_mb, peak_rss_mb\n"
    "  runs=<N> min_s=<s>\n"
    "ending with the line  median_s=<seconds> gflops=<GFLOP/s>\n"
    "\n"
    "  --runs N      timed runs after one warm-up (default 5)\n"
    "  --threads T   OpenBLAS threads (default: OpenBLAS's own choice)\n"
    "  --variant V   dense variant of the last block (default vanilla)\n";

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double vision_flops(const struct hx_clip_config *c, int S)
{
    const struct hx_tower_config *v = &c->vision;
    double g = S / v->patch_size, T = 1 + g * g, D = v->hidden, inter = v->intermediate;
    double block = 2 * T * D * 3 * D + 2 * 2 * T * T * D + 2 * T * D * D + 2 * 2 * T * D * inter;
    double patch = 2 * g * g * (v->channels * v->patch_size * v->patch_size) * D;
    return patch + v->layers * block + 2 * T * D * c->projection_dim;
}

static double sgemm_rate(void)
{
    int n = 2048;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
          *c = malloc(sizeof(float) * n * n);
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return 0;
    }
    for (long i = 0; i < (long)n * n; i++)
        a[i] = b[i] = (float)(i % 7) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = cli_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        double t = cli_seconds() - t0;
        best = t < best ? t : best;
    }
    free(a), free(b), free(c);
    return 2.0 * n * n * n / best / 1e9;
}

static int run(int argc, char **argv)
{
    const char *model = NULL, *vname = "vanilla";
    int size = 0, runs = 5, threads = 0, n, rc, code;
    struct cli_opt opts[] = {{"model", CLI_STR, &model}, {"size", CLI_INT, &size},
                             {"runs", CLI_INT, &runs},   {"threads", CLI_INT, &threads},
                             {"variant", CLI_STR, &vname}};
    char *pos[argc];
    enum hx_variant v;
    if ((code = cli_parse(argv[0], argc, argv, opts, 5, pos, &n)))
        return code;
    if (n)
        return cli_usage_error(argv[0], "unexpected argument '%s'", pos[0]);
    if ((code = cli_require(argv[0], model, "model")))
        return code;
    if (size <= 0)
        return cli_usage_error(argv[0], "--size S is required and must be positive");
    if (runs <= 0 || threads < 0)
        return cli_usage_error(argv[0], "--runs must be positive and --threads non-negative");
    if (hx_variant_parse(vname, &v))
        return cli_usage_error(argv[0], "%s", hx_errmsg());
    hx_set_threads(threads);

    struct hx_clip *m;
    if ((rc = hx_clip_open(&m, model, HX_CLIP_VISION)))
        return cli_fail(argv[0], rc);
    const struct hx_clip_config *cfg = hx_clip_cfg(m);
    int E = cfg->projection_dim, g = size / cfg->vision.patch_size;
    size_t npx = 3 * (size_t)size * size;
    float *img = malloc(sizeof(float) * npx), *pooled = malloc(sizeof(float) * E);
    float *dense = malloc(sizeof(float) * (size_t)g * g * E);
    double *times = malloc(sizeof(double) * runs);
    code = 1;
    if (!img || !pooled || !dense || !times) {
        fprintf(stderr, "harness bench: out of memory\n");
        goto done;
    }
    unsigned s = 1;
    for (size_t i = 0; i < npx; i++) {
        s = s * 1664525u + 1013904223u;
        img[i] = (float)((s >> 8) / 16777216.0 * 4 - 2);
    }
    if ((rc = hx_clip_encode_image(m, img, size, size, v, pooled, dense, NULL, NULL))) {
        code = cli_fail(argv[0], rc);
        goto done;
    }
    for (int r = 0; r < runs; r++) {
        double t0 = cli_seconds();
        hx_clip_encode_image(m, img, size, size, v, pooled, dense, NULL, NULL);
        times[r] = cli_seconds() - t0;
    }
    qsort(times, runs, sizeof *times, cmp_double);
    double rss = cli_peak_rss_mb(); /* before the sgemm probe's own 48 MB of matrices */
    double median = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
    double flops = vision_flops(cfg, size), rate = sgemm_rate();
    double T = 1.0 + (double)g * g, D = cfg->vision.hidden;
    double act = 4.0 * (T * D * 6 + T * cfg->vision.intermediate + 2 * T * T +
                        T * 3 * cfg->vision.patch_size * cfg->vision.patch_size);
    printf("threads=%d\n", hx_get_threads());
    printf("flops=%.0f\n", flops);
    printf("sgemm_gflops=%.2f\n", rate);
    printf("bound_s=%.6f\n", rate > 0 ? flops / (rate * 1e9) : 0.0);
    printf("weights_mb=%.1f\n", hx_clip_weight_bytes(m) / 1048576.0);
    printf("activations_mb=%.1f\n", act / 1048576.0);
    printf("peak_rss_mb=%.1f\n", rss);
    printf("runs=%d min_s=%.6f\n", runs, times[0]);
    printf("median_s=%.6f gflops=%.2f\n", median, flops / median / 1e9);
    code = 0;
done:
    free(img), free(pooled), free(dense), free(times);
    hx_clip_free(m);
    return code;
}

const struct hx_command hx_cmd_bench = {"bench", "time the image forward pass", usage, run};
