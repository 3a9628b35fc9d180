/* Sliding windows, crop averaging and the keep-ratio resize size: hand-computed cases, the
 * Python transcription of mmseg / mmcv in scripts/pamr_reference.py, and a naive twin. */
#include "harness/error.h"
#include "harness/window.h"
#include "tests/test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void expect_windows(int h, int w, int ch, int cw, int sh, int sw,
                           const struct hx_window *want, int n)
{
    struct hx_windows ws;
    ck_assert_msg(hx_windows_make(&ws, h, w, ch, cw, sh, sw) == 0, "%s", hx_errmsg());
    ck_assert_msg(ws.n == n, "%dx%d crop %dx%d stride %dx%d: %d windows, expected %d", h, w, ch,
                  cw, sh, sw, ws.n, n);
    ck_assert_int_eq(ws.rows * ws.cols, ws.n);
    for (int i = 0; i < n; i++)
        ck_assert_msg(ws.win[i].y1 == want[i].y1 && ws.win[i].y2 == want[i].y2 &&
                          ws.win[i].x1 == want[i].x1 && ws.win[i].x2 == want[i].x2,
                      "%dx%d window %d: [%d,%d)x[%d,%d), expected [%d,%d)x[%d,%d)", h, w, i,
                      ws.win[i].y1, ws.win[i].y2, ws.win[i].x1, ws.win[i].x2, want[i].y1,
                      want[i].y2, want[i].x1, want[i].x2);
    hx_windows_free(&ws);
}

START_TEST(hand_computed_windows)
{
    /* VOC-like 336x448, crop 224 stride 112: 2 x 3 grid, the last column ends at 448 */
    struct hx_window a[] = {{0, 224, 0, 224},   {0, 224, 112, 336},   {0, 224, 224, 448},
                            {112, 336, 0, 224}, {112, 336, 112, 336}, {112, 336, 224, 448}};
    expect_windows(336, 448, 224, 224, 112, 112, a, 6);
    /* 100x300: rows shorter than the crop give one row of windows of height 100; the second
     * column starts at 112 and would end at 336, so it shifts in to [76, 300) */
    struct hx_window b[] = {{0, 100, 0, 224}, {0, 100, 76, 300}};
    expect_windows(100, 300, 224, 224, 112, 112, b, 2);
    /* 336x500: columns at 0, 112, then 224 -> ends at 448 < 500, then 336 -> shifted to 276 */
    struct hx_window c[] = {{0, 224, 0, 224},   {0, 224, 112, 336},   {0, 224, 224, 448},
                            {0, 224, 276, 500}, {112, 336, 0, 224},   {112, 336, 112, 336},
                            {112, 336, 224, 448}, {112, 336, 276, 500}};
    expect_windows(336, 500, 224, 224, 112, 112, c, 8);
    /* crop 0: the whole image */
    struct hx_window d[] = {{0, 375, 0, 500}};
    expect_windows(375, 500, 0, 0, 0, 0, d, 1);
    /* crop equal to the image: one window; 1-pixel image with a large crop */
    struct hx_window e[] = {{0, 224, 0, 224}};
    expect_windows(224, 224, 224, 224, 112, 112, e, 1);
    struct hx_window f[] = {{0, 1, 0, 1}};
    expect_windows(1, 1, 224, 224, 112, 112, f, 1);
    /* one pixel past the crop: a second, almost fully overlapping window */
    struct hx_window g[] = {{0, 224, 0, 224}, {0, 224, 1, 225}};
    expect_windows(224, 225, 224, 224, 224, 224, g, 2);
}
END_TEST

START_TEST(windows_match_transcription)
{
    FILE *f = fopen(hx_testdata("pamr/windows.txt"), "r");
    ck_assert_msg(f != NULL, "tests/data/pamr/windows.txt missing: run scripts/pamr_reference.py");
    int h, w, ch, cw, sh, sw, n, ncases = 0, nwin = 0;
    while (fscanf(f, "%d %d %d %d %d %d %d", &h, &w, &ch, &cw, &sh, &sw, &n) == 7) {
        struct hx_window *want = malloc(n * sizeof *want);
        for (int i = 0; i < n; i++)
            ck_assert_int_eq(fscanf(f, "%d %d %d %d", &want[i].y1, &want[i].y2, &want[i].x1,
                                    &want[i].x2), 4);
        expect_windows(h, w, ch, cw, sh, sw, want, n);
        free(want);
        ncases++;
        nwin += n;
    }
    ck_assert(feof(f));
    fclose(f);
    ck_assert_int_ge(ncases, 70);
    ck_assert_int_ge(nwin, 300);
}
END_TEST

START_TEST(window_errors)
{
    struct hx_windows ws;
    ck_assert_int_eq(hx_windows_make(&ws, 10, 10, 5, 0, 2, 2), HX_EINVAL);
    ck_assert_int_eq(hx_windows_make(&ws, 10, 10, 5, 5, 0, 2), HX_EINVAL);
    ck_assert_int_eq(hx_windows_make(&ws, 10, 10, 5, 5, 6, 2), HX_EINVAL);
    ck_assert(strstr(hx_errmsg(), "stride") != NULL);
    ck_assert_int_eq(hx_windows_make(&ws, 0, 10, 5, 5, 2, 2), HX_EINVAL);
    ck_assert_ptr_null(ws.win);
    hx_windows_free(&ws);
}
END_TEST

START_TEST(crop_copies_the_window)
{
    int c = 2, h = 5, w = 7;
    float img[2 * 5 * 7], out[2 * 3 * 4];
    for (int i = 0; i < c * h * w; i++)
        img[i] = (float)i;
    struct hx_window win = {1, 4, 2, 6};
    hx_window_crop(img, c, h, w, &win, out);
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 4; x++)
                ck_assert_float_eq(out[(ch * 3 + y) * 4 + x], (float)(ch * 35 + (y + 1) * 7 + x + 2));
}
END_TEST

/* 3x5 image, crop 3x3, stride 2: windows over columns [0,3) and [2,5); column 2 is shared. */
START_TEST(average_small_case)
{
    struct hx_windows ws;
    ck_assert_int_eq(hx_windows_make(&ws, 3, 5, 3, 3, 2, 2), 0);
    ck_assert_int_eq(ws.n, 2);
    struct hx_accum acc;
    ck_assert_int_eq(hx_accum_init(&acc, 2, 3, 5), 0);
    float l[2 * 3 * 3];
    for (int i = 0; i < 9; i++)
        l[i] = 1, l[9 + i] = 10;
    ck_assert_int_eq(hx_accum_add(&acc, &ws.win[0], l), 0);
    for (int i = 0; i < 9; i++)
        l[i] = 4, l[9 + i] = 20;
    ck_assert_int_eq(hx_accum_add(&acc, &ws.win[1], l), 0);
    float out[2 * 15];
    ck_assert_int_eq(hx_accum_average(&acc, out), 0);
    static const float want[2][5] = {{1, 1, 2.5f, 4, 4}, {10, 10, 15, 20, 20}};
    for (int k = 0; k < 2; k++)
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 5; x++)
                ck_assert_float_eq(out[(k * 3 + y) * 5 + x], want[k][x]);
    for (int x = 0; x < 5; x++)
        ck_assert_float_eq(acc.count[x], x == 2 ? 2 : 1);
    /* in place */
    ck_assert_int_eq(hx_accum_average(&acc, acc.sum), 0);
    ck_assert(memcmp(acc.sum, out, sizeof out) == 0);
    /* a window outside the image is refused */
    struct hx_window bad = {0, 4, 0, 3};
    ck_assert_int_eq(hx_accum_add(&acc, &bad, l), HX_EINVAL);
    hx_accum_free(&acc);
    hx_windows_free(&ws);

    /* stride smaller than needed is fine, but a pixel in no window is reported */
    ck_assert_int_eq(hx_accum_init(&acc, 1, 2, 2), 0);
    struct hx_window one = {0, 1, 0, 2};
    ck_assert_int_eq(hx_accum_add(&acc, &one, l), 0);
    ck_assert_int_eq(hx_accum_average(&acc, out), HX_EINVAL);
    ck_assert(strstr(hx_errmsg(), "no window") != NULL);
    hx_accum_free(&acc);
}
END_TEST

/* Random window logits on a few geometries against a per-pixel double-precision average over
 * the windows that contain the pixel. */
START_TEST(average_matches_naive)
{
    static const int geo[][6] = {{37, 53, 16, 16, 8, 8}, {20, 45, 32, 12, 7, 5},
                                 {9, 9, 4, 3, 4, 3}, {50, 31, 0, 0, 0, 0}};
    unsigned r = 99;
    for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
        int h = geo[g][0], w = geo[g][1], k = 3;
        struct hx_windows ws;
        ck_assert_int_eq(hx_windows_make(&ws, h, w, geo[g][2], geo[g][3], geo[g][4], geo[g][5]), 0);
        float **logits = malloc(ws.n * sizeof *logits);
        struct hx_accum acc;
        ck_assert_int_eq(hx_accum_init(&acc, k, h, w), 0);
        for (int i = 0; i < ws.n; i++) {
            int n = k * (ws.win[i].y2 - ws.win[i].y1) * (ws.win[i].x2 - ws.win[i].x1);
            logits[i] = malloc(n * sizeof **logits);
            for (int j = 0; j < n; j++) {
                r = r * 1664525u + 1013904223u;
                logits[i][j] = (float)((r >> 8) / 16777216.0 - 0.5);
            }
            ck_assert_int_eq(hx_accum_add(&acc, &ws.win[i], logits[i]), 0);
        }
        float *got = malloc((size_t)k * h * w * sizeof *got), *ref = malloc((size_t)k * h * w * sizeof *ref);
        ck_assert_int_eq(hx_accum_average(&acc, got), 0);
        for (int c = 0; c < k; c++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    double s = 0;
                    int cnt = 0;
                    for (int i = 0; i < ws.n; i++) {
                        const struct hx_window *v = &ws.win[i];
                        if (y < v->y1 || y >= v->y2 || x < v->x1 || x >= v->x2)
                            continue;
                        int wh = v->y2 - v->y1, ww = v->x2 - v->x1;
                        s += logits[i][(c * wh + y - v->y1) * ww + x - v->x1];
                        cnt++;
                    }
                    ck_assert_int_gt(cnt, 0);
                    ref[(c * h + y) * w + x] = (float)(s / cnt);
                }
        hx_assert_close("window average", got, ref, (size_t)k * h * w, 1e-6, 1e-6);
        for (int i = 0; i < ws.n; i++)
            free(logits[i]);
        free(logits), free(got), free(ref);
        hx_accum_free(&acc);
        hx_windows_free(&ws);
    }
}
END_TEST

START_TEST(rescale_size_cases)
{
    int oh, ow;
    /* VOC 375x500 at S=336: f = min(2048/500, 336/375) = 0.896 -> 336x448 */
    ck_assert_int_eq(hx_rescale_size(375, 500, 2048, 336, &oh, &ow), 0);
    ck_assert_int_eq(oh, 336); ck_assert_int_eq(ow, 448);
    /* Cityscapes 1024x2048 at S=560: f = 0.546875 -> 560x1120 */
    ck_assert_int_eq(hx_rescale_size(1024, 2048, 2048, 560, &oh, &ow), 0);
    ck_assert_int_eq(oh, 560); ck_assert_int_eq(ow, 1120);
    /* a very long image is capped by the long side: f = 2048/10000 -> 20.98 -> 20 rows */
    ck_assert_int_eq(hx_rescale_size(100, 10000, 2048, 336, &oh, &ow), 0);
    ck_assert_int_eq(oh, 20); ck_assert_int_eq(ow, 2048);
    /* the two scale numbers may come in either order */
    ck_assert_int_eq(hx_rescale_size(500, 375, 336, 2048, &oh, &ow), 0);
    ck_assert_int_eq(oh, 448); ck_assert_int_eq(ow, 336);
    ck_assert_int_eq(hx_rescale_size(1, 100000, 2048, 336, &oh, &ow), HX_EINVAL);
    ck_assert_int_eq(hx_rescale_size(0, 10, 2048, 336, &oh, &ow), HX_EINVAL);

    FILE *f = fopen(hx_testdata("pamr/resize.txt"), "r");
    ck_assert_msg(f != NULL, "tests/data/pamr/resize.txt missing: run scripts/pamr_reference.py");
    int h, w, a, b, eh, ew, n = 0;
    while (fscanf(f, "%d %d %d %d %d %d", &h, &w, &a, &b, &eh, &ew) == 6) {
        ck_assert_int_eq(hx_rescale_size(h, w, a, b, &oh, &ow), 0);
        ck_assert_msg(oh == eh && ow == ew, "%dx%d at (%d, %d): %dx%d, expected %dx%d", h, w, a,
                      b, oh, ow, eh, ew);
        n++;
    }
    fclose(f);
    ck_assert_int_ge(n, 50);
}
END_TEST

Suite *suite_window(void)
{
    Suite *s = suite_create("window");
    TCase *tc = tcase_create("window");
    tcase_add_test(tc, hand_computed_windows);
    tcase_add_test(tc, windows_match_transcription);
    tcase_add_test(tc, window_errors);
    tcase_add_test(tc, crop_copies_the_window);
    tcase_add_test(tc, average_small_case);
    tcase_add_test(tc, average_matches_naive);
    tcase_add_test(tc, rescale_size_cases);
    suite_add_tcase(s, tc);
    return s;
}
