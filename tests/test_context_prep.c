/* scripts/prepare_pascal_context.py: runs its unittest file (tiny made-up inputs, both
 * annotation routes, the output read back by the harness). Skipped without /usr/bin/python3,
 * numpy and PIL; without scipy the .mat route is skipped inside and said so here. */
#include "tests/test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define TESTPY "scripts/test_prepare_pascal_context.py"

START_TEST(prepare_script)
{
    if (access("/usr/bin/python3", X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import numpy, PIL' >/dev/null 2>&1") != 0)
        HX_SKIP("/usr/bin/python3 with numpy and PIL not available");
    if (access(TESTPY, R_OK) != 0)
        HX_SKIP(TESTPY " not found (run from the repository root)");
    if (system("/usr/bin/python3 -c 'import scipy.io' >/dev/null 2>&1") != 0)
        fprintf(stderr, "SKIP %s: python3-scipy missing, the .mat route is not tested\n",
                __func__);
    char log[600], cmd[1400];
    snprintf(log, sizeof log, "%s/log.txt", hx_tmpdir());
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 " TESTPY " >'%s' 2>&1", log);
    int st = system(cmd);
    if (!(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        snprintf(cmd, sizeof cmd, "cat '%s' >&2", log);
        if (system(cmd) != 0)
            fprintf(stderr, "(no log)\n");
    }
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s failed (log above)",
                  TESTPY);
}
END_TEST

Suite *suite_context_prep(void)
{
    Suite *s = suite_create("context_prep");
    TCase *tc = tcase_create("script");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, prepare_script);
    suite_add_tcase(s, tc);
    return s;
}
