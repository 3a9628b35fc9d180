/* hx_parallel_for: every index exactly once, and the nesting rule (a loop inside a chunk of a
 * multi-threaded loop runs on its caller alone; a one-thread loop is no parallel region). */
#include "harness/parallel.h"
#include "tests/test_util.h"

#include <stdatomic.h>

static atomic_int seen[1000];

static void mark(void *ctx, int b, int e)
{
    (void)ctx;
    for (int i = b; i < e; i++)
        atomic_fetch_add(&seen[i], 1);
}

START_TEST(every_index_once)
{
    const int ns[] = {1, 2, 7, 64, 1000};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (int t = 0; t <= 5; t++) { /* 0: the default */
            for (int i = 0; i < 1000; i++)
                atomic_store(&seen[i], 0);
            hx_parallel_for(ns[a], t, mark, NULL);
            for (int i = 0; i < 1000; i++)
                ck_assert_int_eq(atomic_load(&seen[i]), i < ns[a] ? 1 : 0);
        }
}
END_TEST

static atomic_int inner_max;

static void inner(void *ctx, int b, int e)
{
    (void)ctx, (void)b, (void)e;
    int d = hx_default_threads(), m = atomic_load(&inner_max);
    while (d > m && !atomic_compare_exchange_weak(&inner_max, &m, d))
        ;
}

START_TEST(nested_loops_do_not_oversubscribe)
{
    int outer = hx_default_threads();
    atomic_store(&inner_max, 0);
    hx_parallel_for(4, 2, inner, NULL);
    ck_assert_int_eq(atomic_load(&inner_max), 1); /* inside a two-thread loop */
    atomic_store(&inner_max, 0);
    hx_parallel_for(4, 1, inner, NULL);
    ck_assert_int_eq(atomic_load(&inner_max), outer); /* a one-thread loop keeps the cores */
}
END_TEST

Suite *suite_parallel(void)
{
    Suite *s = suite_create("parallel");
    TCase *tc = tcase_create("loops");
    tcase_add_test(tc, every_index_once);
    tcase_add_test(tc, nested_loops_do_not_oversubscribe);
    suite_add_tcase(s, tc);
    return s;
}
