/* Runs every Check suite (one per tests/test_NAME.c), prints a line per suite and a total,
 * and exits non-zero when anything failed. HX_ONLY=NAME runs one suite. */
#include "harness/atomicio.h"
#include "tests/test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define HX_SUITE(n) Suite *suite_##n(void);
#include "suites.inc"
#undef HX_SUITE

static const struct {
    const char *name;
    Suite *(*make)(void);
} suites[] = {
#define HX_SUITE(n) {#n, suite_##n},
#include "suites.inc"
#undef HX_SUITE
};

static char pathbuf[4096];

const char *hx_fixture(const char *rel)
{
    const char *root = getenv("HARNESS_FIXTURES");
    snprintf(pathbuf, sizeof pathbuf, "%s/%s", root && root[0] ? root : "../shared/fixtures", rel);
    return access(pathbuf, R_OK) == 0 ? pathbuf : NULL;
}

const char *hx_testdata(const char *rel)
{
    snprintf(pathbuf, sizeof pathbuf, "tests/data/%s", rel);
    return pathbuf;
}

const char *hx_harness_bin(void)
{
    static char path[512];
    const char *b = getenv("HX_BUILD");
    snprintf(path, sizeof path, "%s/harness", b && b[0] ? b : "build");
    return path;
}

int hx_run_harness(const char *args, const char *out_file, const char *err_file)
{
    char cmd[8192];
    const char *out = out_file ? out_file : "/dev/null", *err = err_file ? err_file : "/dev/null";
    if (out_file && err_file && !strcmp(out_file, err_file))
        snprintf(cmd, sizeof cmd, "%s %s >'%s' 2>&1", hx_harness_bin(), args, out);
    else
        snprintf(cmd, sizeof cmd, "%s %s >'%s' 2>'%s'", hx_harness_bin(), args, out, err);
    int st = system(cmd);
    ck_assert_msg(st != -1 && WIFEXITED(st), "could not run: %s", cmd);
    return WEXITSTATUS(st);
}

static char tmproot[256];
static char tmpbuf[512];

/* One root per run, made before the tests fork (so every test's directories land in it)
 * and removed at the end when everything passed. */
const char *hx_tmpdir(void)
{
    /* mkdtemp, not the pid: forked tests' pids may be reused within one run */
    snprintf(tmpbuf, sizeof tmpbuf, "%s/XXXXXX", tmproot);
    ck_assert_msg(mkdtemp(tmpbuf) != NULL, "cannot create a folder under %s", tmproot);
    return tmpbuf;
}

char *hx_slurp(const char *path)
{
    uint8_t *t = NULL;
    size_t n = 0;
    if (hx_read_file(path, &t, &n))
        return NULL;
    t[n] = 0;
    return (char *)t;
}

void hx_assert_close(const char *what, const float *a, const float *b, size_t n, double rtol,
                     double atol)
{
    double maxerr = 0;
    size_t bad = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= atol + rtol * fabs((double)b[i]))) { /* NaN counts as a mismatch */
            if (bad < 5)
                fprintf(stderr, "  %s[%zu]: got %.8g, expected %.8g\n", what, i, a[i], b[i]);
            bad++;
        }
        if (!(d <= maxerr)) {
            maxerr = d;
            worst = i;
        }
    }
    ck_assert_msg(bad == 0, "%s: %zu of %zu values differ (max abs error %.3g at %zu)", what,
                  bad, n, maxerr, worst);
}

int main(void)
{
    const char *only = getenv("HX_ONLY");
    int total = 0, failed = 0, nsuites = 0;
    snprintf(tmproot, sizeof tmproot, "/tmp/hx-test-XXXXXX");
    if (!mkdtemp(tmproot)) {
        perror("cannot create a temporary directory under /tmp");
        return 2;
    }
    for (size_t i = 0; i < sizeof suites / sizeof suites[0]; i++) {
        if (only && only[0] && strcmp(only, suites[i].name))
            continue;
        SRunner *sr = srunner_create(suites[i].make());
        srunner_run_all(sr, CK_SILENT);
        int n = srunner_ntests_run(sr), f = srunner_ntests_failed(sr);
        TestResult **res = srunner_failures(sr);
        for (int k = 0; k < f; k++)
            fprintf(stderr, "%s:%d: %s: %s\n", tr_lfile(res[k]), tr_lno(res[k]),
                    tr_tcname(res[k]), tr_msg(res[k]));
        free(res);
        printf("%-14s %3d checks, %d failed\n", suites[i].name, n, f);
        fflush(stdout);
        total += n;
        failed += f;
        nsuites++;
        srunner_free(sr);
    }
    if (nsuites == 0) {
        fprintf(stderr, "no suite named '%s'\n", only ? only : "");
        rmdir(tmproot);
        return 2;
    }
    printf("%d passed, %d failed\n", total - failed, failed);
    if (failed) {
        fprintf(stderr, "test files kept in %s\n", tmproot);
    } else {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmproot);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmproot);
    }
    return failed ? 1 : 0;
}
