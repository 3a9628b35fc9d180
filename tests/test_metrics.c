#include "harness/error.h"
#include "harness/metrics.h"
#include "tests/test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the naive twin: per class, straight from the full label arrays ---- */

struct img {
    uint8_t *pred, *label;
    size_t n;
};

struct naive {
    double iou[256], acc[256], aAcc, mIoU, mAcc;
    long I[256], P[256], L[256];
};

/* images[sel[k]] for k < nsel (sel NULL: all images in order) */
static void naive_eval(const struct img *images, const size_t *sel, size_t nsel, int C,
                       int ignore, struct naive *r)
{
    long tot_i = 0, tot_l = 0;
    for (int c = 0; c < C; c++) {
        long I = 0, P = 0, L = 0;
        for (size_t k = 0; k < nsel; k++) {
            const struct img *im = &images[sel ? sel[k] : k];
            for (size_t j = 0; j < im->n; j++) {
                if (im->label[j] == ignore)
                    continue;
                P += im->pred[j] == c;
                L += im->label[j] == c;
                I += im->pred[j] == c && im->label[j] == c;
            }
        }
        r->I[c] = I;
        r->P[c] = P;
        r->L[c] = L;
        tot_i += I;
        tot_l += L;
        r->iou[c] = (P + L - I) > 0 ? 100.0 * I / (double)(P + L - I) : NAN;
        r->acc[c] = L > 0 ? 100.0 * I / (double)L : NAN;
    }
    double s1 = 0, s2 = 0;
    int n1 = 0, n2 = 0;
    for (int c = 0; c < C; c++) {
        if (r->iou[c] == r->iou[c]) {
            s1 += r->iou[c];
            n1++;
        }
        if (r->acc[c] == r->acc[c]) {
            s2 += r->acc[c];
            n2++;
        }
    }
    r->aAcc = tot_l ? 100.0 * tot_i / (double)tot_l : NAN;
    r->mIoU = n1 ? s1 / n1 : NAN;
    r->mAcc = n2 ? s2 / n2 : NAN;
}

static void assert_same(const char *what, double got, double want)
{
    if (isnan(want)) {
        ck_assert_msg(isnan(got), "%s: got %.17g, expected NaN", what, got);
        return;
    }
    ck_assert_msg(fabs(got - want) <= 1e-9 * (1 + fabs(want)), "%s: got %.17g, expected %.17g",
                  what, got, want);
}

static void check_against_naive(struct hx_metrics *m, const struct img *images, size_t nimg,
                                int C, int ignore)
{
    struct naive r;
    naive_eval(images, NULL, nimg, C, ignore, &r);
    int64_t I[256], P[256], L[256];
    hx_metrics_totals(m, I, P, L);
    for (int c = 0; c < C; c++) {
        ck_assert_msg(I[c] == r.I[c] && P[c] == r.P[c] && L[c] == r.L[c],
                      "class %d: counts (%ld %ld %ld) vs naive (%ld %ld %ld)", c, (long)I[c],
                      (long)P[c], (long)L[c], r.I[c], r.P[c], r.L[c]);
    }
    double iou[256], acc[256];
    struct hx_scores s = {.iou = iou, .acc = acc};
    hx_metrics_scores(m, &s);
    char what[64];
    for (int c = 0; c < C; c++) {
        snprintf(what, sizeof what, "IoU[%d]", c);
        assert_same(what, iou[c], r.iou[c]);
        snprintf(what, sizeof what, "Acc[%d]", c);
        assert_same(what, acc[c], r.acc[c]);
    }
    assert_same("aAcc", s.aAcc, r.aAcc);
    assert_same("mIoU", s.mIoU, r.mIoU);
    assert_same("mAcc", s.mAcc, r.mAcc);
}

static uint32_t rng_state = 12345;
static uint32_t rnd(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

static struct img random_img(size_t n, int C, int extra)
{
    struct img im = {malloc(n), malloc(n), n};
    for (size_t j = 0; j < n; j++) {
        uint32_t a = rnd(), b = rnd();
        im.label[j] = a % 10 == 0 ? 255 : (uint8_t)(a % (uint32_t)(C + extra));
        /* predictions right about half of the time */
        im.pred[j] = b % 2 ? im.label[j] : (uint8_t)(b % (uint32_t)(C + extra));
        if (im.pred[j] == 255)
            im.pred[j] = 0;
    }
    return im;
}

START_TEST(hand_computed_two_classes)
{
    /* pixel 4 is ignored. class 0: L = {0,1}, P = {0,5}, I = {0} -> IoU 1/3, Acc 1/2.
     * class 1: L = {2,3,5}, P = {1,2,3}, I = {2,3} -> IoU 2/4, Acc 2/3. aAcc = 3/5. */
    uint8_t label[] = {0, 0, 1, 1, 255, 1};
    uint8_t pred[] = {0, 1, 1, 1, 0, 0};
    struct hx_metrics *m;
    ck_assert_int_eq(hx_metrics_new(&m, 2, 255), 0);
    ck_assert_int_eq(hx_metrics_add(m, pred, label, 6), 0);
    double iou[2], acc[2];
    struct hx_scores s = {.iou = iou, .acc = acc};
    hx_metrics_scores(m, &s);
    assert_same("IoU0", iou[0], 100.0 / 3);
    assert_same("IoU1", iou[1], 50.0);
    assert_same("Acc0", acc[0], 50.0);
    assert_same("Acc1", acc[1], 200.0 / 3);
    assert_same("aAcc", s.aAcc, 60.0);
    assert_same("mIoU", s.mIoU, (100.0 / 3 + 50.0) / 2);
    assert_same("mAcc", s.mAcc, (50.0 + 200.0 / 3) / 2);
    hx_metrics_free(m);
}
END_TEST

START_TEST(random_maps_match_naive)
{
    for (int C = 2; C <= 171; C = C * 3 + 1) {
        struct hx_metrics *m;
        ck_assert_int_eq(hx_metrics_new(&m, C, 255), 0);
        struct img imgs[9];
        for (int k = 0; k < 9; k++) {
            imgs[k] = random_img(100 + (size_t)k * 37, C, 0);
            ck_assert_int_eq(hx_metrics_add(m, imgs[k].pred, imgs[k].label, imgs[k].n), 0);
        }
        ck_assert_uint_eq(hx_metrics_num_images(m), 9);
        check_against_naive(m, imgs, 9, C, 255);
        /* per-image entries: only present classes, increasing, summing to the totals */
        int64_t sum[3][256] = {{0}};
        for (size_t k = 0; k < 9; k++) {
            const int32_t *cls, *ei, *ep, *el;
            size_t n;
            hx_metrics_image(m, k, &cls, &ei, &ep, &el, &n);
            for (size_t e = 0; e < n; e++) {
                ck_assert(ep[e] > 0 || el[e] > 0);
                ck_assert(e == 0 || cls[e] > cls[e - 1]);
                sum[0][cls[e]] += ei[e];
                sum[1][cls[e]] += ep[e];
                sum[2][cls[e]] += el[e];
            }
        }
        int64_t I[256], P[256], L[256];
        hx_metrics_totals(m, I, P, L);
        for (int c = 0; c < C; c++)
            ck_assert(sum[0][c] == I[c] && sum[1][c] == P[c] && sum[2][c] == L[c]);
        for (int k = 0; k < 9; k++) {
            free(imgs[k].pred);
            free(imgs[k].label);
        }
        hx_metrics_free(m);
    }
}
END_TEST

START_TEST(absent_and_predicted_only_classes)
{
    /* 5 classes: 3 never appears anywhere (NaN, left out); 4 is predicted but never present
     * (IoU 0, counted in mIoU; Acc NaN, left out of mAcc). */
    uint8_t label[] = {0, 1, 2, 0, 1, 2, 255, 0};
    uint8_t pred[] = {0, 1, 2, 4, 1, 4, 3, 0};
    struct hx_metrics *m;
    ck_assert_int_eq(hx_metrics_new(&m, 5, 255), 0);
    ck_assert_int_eq(hx_metrics_add(m, pred, label, 8), 0);
    double iou[5], acc[5];
    struct hx_scores s = {.iou = iou, .acc = acc};
    hx_metrics_scores(m, &s);
    ck_assert(isnan(iou[3]) && isnan(acc[3])); /* predicted only on an ignored pixel */
    assert_same("IoU4", iou[4], 0.0);
    ck_assert(isnan(acc[4]));
    assert_same("IoU0", iou[0], 200.0 / 3);
    assert_same("IoU1", iou[1], 100.0);
    assert_same("IoU2", iou[2], 50.0);
    assert_same("mIoU", s.mIoU, (200.0 / 3 + 100 + 50 + 0) / 4);
    assert_same("mAcc", s.mAcc, (200.0 / 3 + 100 + 50) / 3);
    assert_same("aAcc", s.aAcc, 500.0 / 7);
    struct img im = {pred, label, 8};
    check_against_naive(m, &im, 1, 5, 255);
    hx_metrics_free(m);
}
END_TEST

START_TEST(all_ignore_images)
{
    uint8_t label[16], pred[16];
    memset(label, 255, sizeof label);
    for (int i = 0; i < 16; i++)
        pred[i] = (uint8_t)(i % 3);
    struct hx_metrics *m;
    ck_assert_int_eq(hx_metrics_new(&m, 3, 255), 0);
    ck_assert_int_eq(hx_metrics_add(m, pred, label, 16), 0);
    double iou[3], acc[3];
    struct hx_scores s = {.iou = iou, .acc = acc};
    hx_metrics_scores(m, &s);
    ck_assert(isnan(s.aAcc) && isnan(s.mIoU) && isnan(s.mAcc));
    for (int c = 0; c < 3; c++)
        ck_assert(isnan(iou[c]) && isnan(acc[c]));
    const int32_t *cls, *ei, *ep, *el;
    size_t n;
    hx_metrics_image(m, 0, &cls, &ei, &ep, &el, &n);
    ck_assert_uint_eq(n, 0);
    double lo, hi;
    ck_assert_int_eq(hx_metrics_bootstrap(m, 50, 1, 0.95, &lo, &hi), 0);
    ck_assert(isnan(lo) && isnan(hi));
    /* an all-ignore image next to a normal one changes nothing but the image count */
    struct img imgs[2] = {{pred, label, 16}, random_img(300, 3, 0)};
    ck_assert_int_eq(hx_metrics_add(m, imgs[1].pred, imgs[1].label, 300), 0);
    ck_assert_uint_eq(hx_metrics_num_images(m), 2);
    check_against_naive(m, imgs, 2, 3, 255);
    free(imgs[1].pred);
    free(imgs[1].label);
    hx_metrics_free(m);
}
END_TEST

START_TEST(out_of_range_values)
{
    /* C = 3. pred 7 and 200 are not counted; label 9 (not the ignore index) is not counted
     * in L but its prediction still counts in P. */
    uint8_t label[] = {0, 1, 9, 9, 2, 2};
    uint8_t pred[] = {7, 1, 9, 0, 200, 2};
    struct hx_metrics *m;
    ck_assert_int_eq(hx_metrics_new(&m, 3, 255), 0);
    ck_assert_int_eq(hx_metrics_add(m, pred, label, 6), 0);
    int64_t I[3], P[3], L[3];
    hx_metrics_totals(m, I, P, L);
    ck_assert(I[0] == 0 && P[0] == 1 && L[0] == 1);
    ck_assert(I[1] == 1 && P[1] == 1 && L[1] == 1);
    ck_assert(I[2] == 1 && P[2] == 1 && L[2] == 2);
    struct img im = {pred, label, 6};
    check_against_naive(m, &im, 1, 3, 255);
    hx_metrics_free(m);

    /* random maps with values beyond C in both, and a different ignore index */
    struct img imgs[5];
    ck_assert_int_eq(hx_metrics_new(&m, 19, 0), 0);
    for (int k = 0; k < 5; k++) {
        imgs[k] = random_img(500, 19, 12);
        ck_assert_int_eq(hx_metrics_add(m, imgs[k].pred, imgs[k].label, 500), 0);
    }
    check_against_naive(m, imgs, 5, 19, 0);
    for (int k = 0; k < 5; k++) {
        free(imgs[k].pred);
        free(imgs[k].label);
    }
    hx_metrics_free(m);
    /* no ignore index at all */
    uint8_t l2[] = {255, 0}, p2[] = {255, 0};
    ck_assert_int_eq(hx_metrics_new(&m, 2, -1), 0);
    ck_assert_int_eq(hx_metrics_add(m, p2, l2, 2), 0);
    hx_metrics_totals(m, I, P, L);
    ck_assert(I[0] == 1 && P[0] == 1 && L[0] == 1 && L[1] == 0);
    hx_metrics_free(m);
}
END_TEST

/* an independent splitmix64 (the published constants) */
static uint64_t sm64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

START_TEST(bootstrap_matches_naive)
{
    enum { N = 12, C = 7, B = 200 };
    struct img imgs[N];
    struct hx_metrics *m;
    ck_assert_int_eq(hx_metrics_new(&m, C, 255), 0);
    for (int k = 0; k < N; k++) {
        /* images of different quality so that resampling moves mIoU */
        imgs[k] = random_img(200 + 10 * (size_t)k, C, 0);
        for (size_t j = 0; j < imgs[k].n; j += (size_t)(k + 1))
            imgs[k].pred[j] = (uint8_t)((imgs[k].pred[j] + 1) % C);
        ck_assert_int_eq(hx_metrics_add(m, imgs[k].pred, imgs[k].label, imgs[k].n), 0);
    }
    double lo, hi;
    ck_assert_int_eq(hx_metrics_bootstrap(m, B, 99, 0.95, &lo, &hi), 0);

    double vals[B];
    uint64_t st = 99;
    size_t sel[N];
    for (int r = 0; r < B; r++) {
        for (int k = 0; k < N; k++)
            sel[k] = (size_t)(((unsigned __int128)sm64(&st) * N) >> 64);
        struct naive nr;
        naive_eval(imgs, sel, N, C, 255, &nr);
        vals[r] = nr.mIoU;
    }
    qsort(vals, B, sizeof(double), cmpd);
    /* numpy.percentile, linear: position q * (B - 1) */
    double p_lo = 0.025 * (B - 1), p_hi = 0.975 * (B - 1);
    int a = (int)p_lo, b = (int)p_hi;
    double want_lo = vals[a] + (vals[a + 1] - vals[a]) * (p_lo - a);
    double want_hi = vals[b] + (vals[b + 1] - vals[b]) * (p_hi - b);
    assert_same("ci lo", lo, want_lo);
    assert_same("ci hi", hi, want_hi);
    ck_assert(lo < hi);
    struct hx_scores s = {0};
    hx_metrics_scores(m, &s);
    ck_assert_msg(lo < s.mIoU && s.mIoU < hi, "mIoU %g outside [%g, %g]", s.mIoU, lo, hi);

    /* deterministic for a seed, different for another */
    double lo2, hi2;
    ck_assert_int_eq(hx_metrics_bootstrap(m, B, 99, 0.95, &lo2, &hi2), 0);
    ck_assert(lo2 == lo && hi2 == hi);
    ck_assert_int_eq(hx_metrics_bootstrap(m, B, 100, 0.95, &lo2, &hi2), 0);
    ck_assert(lo2 != lo || hi2 != hi);
    ck_assert_int_eq(hx_metrics_bootstrap(m, 0, 1, 0.95, &lo2, &hi2), HX_EINVAL);
    for (int k = 0; k < N; k++) {
        free(imgs[k].pred);
        free(imgs[k].label);
    }
    hx_metrics_free(m);

    /* one image: every resample is that image, the interval collapses onto mIoU */
    struct img one = random_img(400, 4, 0);
    ck_assert_int_eq(hx_metrics_new(&m, 4, 255), 0);
    ck_assert_int_eq(hx_metrics_add(m, one.pred, one.label, one.n), 0);
    hx_metrics_scores(m, &s);
    ck_assert_int_eq(hx_metrics_bootstrap(m, HX_BOOTSTRAP_REPS, HX_BOOTSTRAP_SEED, 0.95, &lo, &hi),
                     0);
    assert_same("one-image lo", lo, s.mIoU);
    assert_same("one-image hi", hi, s.mIoU);
    free(one.pred);
    free(one.label);
    hx_metrics_free(m);
}
END_TEST

/* Metrics added in three contiguous parts and appended equal the metrics of one stream: the
 * totals, every image's entries and the bootstrap interval (which resamples by image). */
START_TEST(append_equals_one_stream)
{
    enum { N = 9, C = 6 };
    struct img imgs[N];
    struct hx_metrics *all, *part[3], *merged;
    ck_assert_int_eq(hx_metrics_new(&all, C, 255), 0);
    ck_assert_int_eq(hx_metrics_new(&merged, C, 255), 0);
    for (int p = 0; p < 3; p++)
        ck_assert_int_eq(hx_metrics_new(&part[p], C, 255), 0);
    const int cut[4] = {0, 2, 2, N}; /* the middle part is empty */
    for (int k = 0; k < N; k++) {
        imgs[k] = random_img(150 + 7 * (size_t)k, C, 0);
        ck_assert_int_eq(hx_metrics_add(all, imgs[k].pred, imgs[k].label, imgs[k].n), 0);
        int p = k < cut[1] ? 0 : k < cut[2] ? 1 : 2;
        ck_assert_int_eq(hx_metrics_add(part[p], imgs[k].pred, imgs[k].label, imgs[k].n), 0);
    }
    for (int p = 0; p < 3; p++)
        ck_assert_int_eq(hx_metrics_append(merged, part[p]), 0);
    ck_assert_uint_eq(hx_metrics_num_images(merged), N);
    int64_t ia[C], pa[C], la[C], ib[C], pb[C], lb[C];
    hx_metrics_totals(all, ia, pa, la);
    hx_metrics_totals(merged, ib, pb, lb);
    for (int c = 0; c < C; c++)
        ck_assert(ia[c] == ib[c] && pa[c] == pb[c] && la[c] == lb[c]);
    for (size_t k = 0; k < N; k++) {
        const int32_t *c1, *i1, *p1, *l1, *c2, *i2, *p2, *l2;
        size_t n1, n2;
        hx_metrics_image(all, k, &c1, &i1, &p1, &l1, &n1);
        hx_metrics_image(merged, k, &c2, &i2, &p2, &l2, &n2);
        ck_assert_uint_eq(n1, n2);
        for (size_t e = 0; e < n1; e++)
            ck_assert(c1[e] == c2[e] && i1[e] == i2[e] && p1[e] == p2[e] && l1[e] == l2[e]);
    }
    double lo1, hi1, lo2, hi2;
    ck_assert_int_eq(hx_metrics_bootstrap(all, 100, 5, 0.95, &lo1, &hi1), 0);
    ck_assert_int_eq(hx_metrics_bootstrap(merged, 100, 5, 0.95, &lo2, &hi2), 0);
    ck_assert(lo1 == lo2 && hi1 == hi2);
    struct hx_metrics *other;
    ck_assert_int_eq(hx_metrics_new(&other, C + 1, 255), 0);
    ck_assert_int_eq(hx_metrics_append(merged, other), HX_EINVAL);
    hx_metrics_free(other);
    for (int k = 0; k < N; k++)
        free(imgs[k].pred), free(imgs[k].label);
    for (int p = 0; p < 3; p++)
        hx_metrics_free(part[p]);
    hx_metrics_free(all), hx_metrics_free(merged);
}
END_TEST

START_TEST(rejects_bad_class_count)
{
    struct hx_metrics *m;
    ck_assert_int_eq(hx_metrics_new(&m, 0, 255), HX_EINVAL);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(hx_metrics_new(&m, 257, 255), HX_EINVAL);
}
END_TEST

Suite *suite_metrics(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("iou");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, hand_computed_two_classes);
    tcase_add_test(tc, random_maps_match_naive);
    tcase_add_test(tc, absent_and_predicted_only_classes);
    tcase_add_test(tc, all_ignore_images);
    tcase_add_test(tc, out_of_range_values);
    tcase_add_test(tc, bootstrap_matches_naive);
    tcase_add_test(tc, append_equals_one_stream);
    tcase_add_test(tc, rejects_bad_class_count);
    suite_add_tcase(s, tc);
    return s;
}
