#include "harness/cli/cli.h"
#include "tests/test_util.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

START_TEST(parses_options_and_positionals)
{
    const char *model = NULL;
    int runs = 3, flag = 0;
    double t = 0;
    struct cli_opt opts[] = {{"model", CLI_STR, &model},
                             {"runs", CLI_INT, &runs},
                             {"no-resize", CLI_FLAG, &flag},
                             {"temperature", CLI_FLOAT, &t}};
    char *argv[] = {"x", "a", "--model", "dir", "--runs=7", "b", "--no-resize", "--temperature",
                    "0.5", "--", "--c"};
    char *pos[11];
    int npos;
    ck_assert_int_eq(cli_parse("x", 11, argv, opts, 4, pos, &npos), 0);
    ck_assert_str_eq(model, "dir");
    ck_assert_int_eq(runs, 7);
    ck_assert_int_eq(flag, 1);
    ck_assert_double_eq(t, 0.5);
    ck_assert_int_eq(npos, 3);
    ck_assert_str_eq(pos[0], "a");
    ck_assert_str_eq(pos[1], "b");
    ck_assert_str_eq(pos[2], "--c");
}
END_TEST

START_TEST(rejects_bad_usage)
{
    int runs = 0;
    struct cli_opt opts[] = {{"runs", CLI_INT, &runs}};
    char *pos[4];
    int npos;
    char *unknown[] = {"x", "--nope"};
    char *notint[] = {"x", "--runs", "3x"};
    char *novalue[] = {"x", "--runs"};
    /* the parser prints each usage error on stderr: keep them out of the test log */
    fflush(stderr);
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    ck_assert_int_eq(cli_parse("x", 2, unknown, opts, 1, pos, &npos), 2);
    ck_assert_int_eq(cli_parse("x", 3, notint, opts, 1, pos, &npos), 2);
    int rc_novalue = cli_parse("x", 2, novalue, opts, 1, pos, &npos);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    ck_assert_int_eq(rc_novalue, 2);
    ck_assert_int_eq(runs, 0);
}
END_TEST

Suite *suite_cli(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, parses_options_and_positionals);
    tcase_add_test(tc, rejects_bad_usage);
    suite_add_tcase(s, tc);
    return s;
}
