/* Helpers shared by the Check suites. */
#ifndef HX_TEST_UTIL_H
#define HX_TEST_UTIL_H

#include <check.h>
#include <stddef.h>

/* Path of a file under the shared fixtures folder ($HARNESS_FIXTURES, else
 * ../shared/fixtures), or NULL when it is absent: the caller then calls HX_SKIP. The
 * returned string is static storage, valid until the next call. */
const char *hx_fixture(const char *rel);

/* Path of a file under tests/data (the project's own generated test data). Static storage. */
const char *hx_testdata(const char *rel);

/* Path of the built harness binary: $HX_BUILD/harness (default build/harness). */
const char *hx_harness_bin(void);

/* Run `harness ARGS` through the shell, stdout to out_file and stderr to err_file (NULL:
 * /dev/null; the same path for both: both into it). Returns the exit code; a command that did
 * not exit fails the test. */
int hx_run_harness(const char *args, const char *out_file, const char *err_file);

/* A fresh, empty temporary directory for this test, under one root per run that is removed
 * when every test passed (kept, and named, otherwise). Static storage. */
const char *hx_tmpdir(void);

/* A whole file as a NUL-terminated string (malloc'ed), or NULL when it cannot be read. */
char *hx_slurp(const char *path);

/* Compare two float arrays: fails the test, printing the first mismatches and the max error,
 * when |a-b| > atol + rtol*|b| anywhere. `what` names the tensor. */
void hx_assert_close(const char *what, const float *a, const float *b, size_t n, double rtol,
                     double atol);

#define HX_SKIP(why)                                                                          \
    do {                                                                                      \
        fprintf(stderr, "SKIP %s: %s\n", __func__, (why));                                    \
        return;                                                                               \
    } while (0)

#endif
