#include "harness/cli/cli.h"
#include "harness/crf.h"
#include "harness/error.h"
#include "harness/h5io.h"
#include "harness/image.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: harness crf --image IMG --prob FILE.h5 --out FILE.h5 [--gaussian SXY,COMPAT]\n"
    "                   [--bilateral SXY,SRGB,COMPAT] [--iters N] [--threads N] [--repeat N]\n"
    "\n"
    "Refine class probabilities with a fully connected CRF (pydensecrf's DenseCRF2D: Potts\n"
    "compatibility, symmetric normalisation, mean field through the permutohedral lattice).\n"
    "The unary is -log(p + 1e-8), as SimSeg computes it; the Gaussian kernel is added first,\n"
    "then the bilateral one.\n"
    "\n"
    "  --image IMG          the RGB image (JPEG or PNG), the same size as the prob map\n"
    "  --prob FILE.h5       dataset /prob, float32 [labels, H, W] probabilities\n"
    "  --out FILE.h5        output: dataset /q, float32 [labels, H, W], written atomically\n"
    "  --gaussian SXY,COMPAT         default 3,3 (SimSeg); 'none' leaves it out\n"
    "  --bilateral SXY,SRGB,COMPAT   default 40,13,10 (SimSeg); 'none' leaves it out\n"
    "  --iters N            mean-field iterations, default 3 (SimSeg); CLIP-as-RNN uses\n"
    "                       --gaussian 1,3 --bilateral 67,3,4 --iters 10\n"
    "  --threads N          threads, default 1 (the result does not depend on it)\n"
    "  --repeat N           run the CRF N times in this process (benchmarks), default 1\n"
    "\n"
    "The time spent building the lattices and iterating (wall clock) and the process's CPU\n"
    "time are reported on stderr (with --repeat, the fastest run of each).\n"
    "Exit codes: 0 ok, 1 failure, 2 bad usage or input (bad kernel string, missing file or\n"
    "dataset, image and prob map of different sizes).\n";

/* Parse "a,b[,c]" into exactly n finite floats; "none" gives *present = 0. */
static int parse_kernel(const char *opt, const char *s, int n, float *v, int *present)
{
    if (!s)
        return 0; /* default kept */
    if (!strcmp(s, "none")) {
        *present = 0;
        return 0;
    }
    const char *p = s;
    for (int i = 0; i < n; i++) {
        char *end;
        double x = strtod(p, &end);
        if (end == p || !isfinite(x) || (i < n - 1 ? *end != ',' : *end != '\0'))
            return cli_usage_error("crf", "--%s '%s': expected %s (numbers separated by commas)",
                                   opt, s, n == 2 ? "SXY,COMPAT" : "SXY,SRGB,COMPAT");
        v[i] = (float)x;
        p = end + 1;
    }
    for (int i = 0; i < n - 1; i++)
        if (!(v[i] > 0.0f))
            return cli_usage_error("crf", "--%s '%s': %s must be > 0", opt, s,
                                   i == 0 ? "SXY" : "SRGB");
    *present = 1;
    return 0;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int run(int argc, char **argv)
{
    const char *image = NULL, *prob = NULL, *out = NULL, *gs = NULL, *bs = NULL;
    int iters = 3, threads = 1, repeat = 1;
    struct cli_opt opts[] = {{"image", CLI_STR, &image},    {"prob", CLI_STR, &prob},
                             {"out", CLI_STR, &out},        {"gaussian", CLI_STR, &gs},
                             {"bilateral", CLI_STR, &bs},   {"iters", CLI_INT, &iters},
                             {"threads", CLI_INT, &threads}, {"repeat", CLI_INT, &repeat}};
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    int npos = 0, rc, st = 0;
    float g[2] = {3.0f, 3.0f}, b[3] = {40.0f, 13.0f, 10.0f};
    int has_g = 1, has_b = 1, ndim = 0;
    int64_t shape[4] = {0};
    float *p = NULL, *q = NULL;
    struct hx_image im = {0};
    struct hx_crf *crf = NULL;
    if (!pos)
        return 1;
    if ((rc = cli_parse("crf", argc, argv, opts, 8, pos, &npos)) != 0)
        goto done;
    if (npos) {
        rc = cli_usage_error("crf", "unexpected argument '%s'", pos[0]);
        goto done;
    }
    if ((rc = cli_require("crf", image, "image")) || (rc = cli_require("crf", prob, "prob")) ||
        (rc = cli_require("crf", out, "out")))
        goto done;
    if ((rc = parse_kernel("gaussian", gs, 2, g, &has_g)) ||
        (rc = parse_kernel("bilateral", bs, 3, b, &has_b)))
        goto done;
    if (iters < 0) {
        rc = cli_usage_error("crf", "--iters %d: must be >= 0", iters);
        goto done;
    }
    if (threads < 1) {
        rc = cli_usage_error("crf", "--threads %d: must be >= 1", threads);
        goto done;
    }
    if (repeat < 1) {
        rc = cli_usage_error("crf", "--repeat %d: must be >= 1", repeat);
        goto done;
    }

    if ((st = hx_image_load(&im, image)) || (st = hx_h5_read(prob, "/prob", &p, shape, &ndim)))
        goto fail;
    if (ndim != 3 || shape[0] < 1) {
        st = hx_err(HX_EFORMAT, "%s: /prob has %d dimensions, expected [labels, H, W]", prob,
                    ndim);
        goto fail;
    }
    if (shape[1] != im.h || shape[2] != im.w) {
        st = hx_err(HX_EINVAL, "%s: /prob is %lldx%lld (HxW) but image %s is %dx%d", prob,
                    (long long)shape[1], (long long)shape[2], image, im.h, im.w);
        goto fail;
    }
    const int L = (int)shape[0];
    q = hx_malloc((size_t)L * im.w * im.h * sizeof *q, "crf output");
    if (!q) {
        st = HX_ENOMEM;
        goto fail;
    }
    double best = INFINITY, best_lat = 0, best_inf = 0, best_cpu = INFINITY;
    for (int r = 0; r < repeat; r++) {
        hx_crf_free(crf);
        crf = NULL;
        double t0 = cli_seconds(), c0 = cpu_now();
        if ((st = hx_crf_new(&crf, im.w, im.h, L)))
            goto fail;
        hx_crf_set_threads(crf, threads);
        if ((st = hx_crf_set_unary_from_prob(crf, p, 1e-8f)) ||
            (has_g && (st = hx_crf_add_gaussian(crf, g[0], g[1]))) ||
            (has_b && (st = hx_crf_add_bilateral(crf, b[0], b[1], im.px, b[2]))))
            goto fail;
        double t1 = cli_seconds();
        if ((st = hx_crf_infer(crf, iters, q)))
            goto fail;
        double t2 = cli_seconds(), c2 = cpu_now();
        if (t2 - t0 < best)
            best = t2 - t0, best_lat = t1 - t0, best_inf = t2 - t1;
        if (c2 - c0 < best_cpu)
            best_cpu = c2 - c0;
    }
    fprintf(stderr, "crf: %dx%d, %d labels, %d iterations, %d thread%s: %.3f ms "
            "(lattices %.3f ms, inference %.3f ms; cpu %.3f ms)%s\n", im.w, im.h, L, iters,
            threads, threads > 1 ? "s" : "", 1e3 * best, 1e3 * best_lat, 1e3 * best_inf,
            1e3 * best_cpu, repeat > 1 ? ", fastest of the runs" : "");
    struct hx_h5_dataset ds = {"/q", 3, {L, im.h, im.w, 0}, q, NULL, 0};
    st = hx_h5_write(out, &ds, 1);
fail:
    rc = st ? cli_fail("crf", st) : 0;
done:
    hx_crf_free(crf);
    hx_image_free(&im);
    free(p);
    free(q);
    free(pos);
    return rc;
}

const struct hx_command hx_cmd_crf = {"crf", "refine probabilities with a dense CRF", usage,
                                      run};
