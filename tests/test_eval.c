#include "harness/error.h"
#include "harness/labelmap.h"
#include "tests/test_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* naive per-class scores over whole label arrays (percent, NaN where undefined) */
struct naive {
    double iou[256], acc[256], aAcc, mIoU, mAcc;
};

static void naive_scores(uint8_t *const *pred, uint8_t *const *label, const size_t *n, int nimg,
                         int C, int ignore, struct naive *r)
{
    double ti = 0, tl = 0, s1 = 0, s2 = 0;
    int n1 = 0, n2 = 0;
    for (int c = 0; c < C; c++) {
        double I = 0, P = 0, L = 0;
        for (int k = 0; k < nimg; k++)
            for (size_t j = 0; j < n[k]; j++) {
                if (label[k][j] == ignore)
                    continue;
                P += pred[k][j] == c;
                L += label[k][j] == c;
                I += pred[k][j] == c && label[k][j] == c;
            }
        ti += I;
        tl += L;
        r->iou[c] = P + L - I > 0 ? 100 * I / (P + L - I) : NAN;
        r->acc[c] = L > 0 ? 100 * I / L : NAN;
        if (!isnan(r->iou[c]))
            s1 += r->iou[c], n1++;
        if (!isnan(r->acc[c]))
            s2 += r->acc[c], n2++;
    }
    r->aAcc = tl > 0 ? 100 * ti / tl : NAN;
    r->mIoU = n1 ? s1 / n1 : NAN;
    r->mAcc = n2 ? s2 / n2 : NAN;
}

static void check_num(const cJSON *j, const char *what, double want)
{
    ck_assert_msg(j != NULL, "%s missing from the JSON", what);
    if (isnan(want)) {
        ck_assert_msg(cJSON_IsNull(j), "%s: expected null", what);
        return;
    }
    ck_assert_msg(cJSON_IsNumber(j), "%s: not a number", what);
    double got = j->valuedouble;
    ck_assert_msg(fabs(got - want) <= 1e-10 * (1 + fabs(want)), "%s: %.17g vs naive %.17g",
                  what, got, want);
}

static cJSON *load_json(const char *path)
{
    char *s = hx_slurp(path);
    ck_assert_msg(s != NULL, "no output %s", path);
    cJSON *j = cJSON_Parse(s);
    ck_assert_msg(j != NULL, "%s is not valid JSON:\n%s", path, s);
    free(s);
    return j;
}

static void check_json(const char *path, const struct naive *r, int C, int nimg)
{
    cJSON *j = load_json(path);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "num_images")->valueint, nimg);
    check_num(cJSON_GetObjectItem(j, "aAcc"), "aAcc", r->aAcc);
    check_num(cJSON_GetObjectItem(j, "mIoU"), "mIoU", r->mIoU);
    check_num(cJSON_GetObjectItem(j, "mAcc"), "mAcc", r->mAcc);
    cJSON *iou = cJSON_GetObjectItem(j, "IoU"), *acc = cJSON_GetObjectItem(j, "Acc");
    ck_assert_int_eq(cJSON_GetArraySize(iou), C);
    ck_assert_int_eq(cJSON_GetArraySize(acc), C);
    char what[32];
    for (int c = 0; c < C; c++) {
        snprintf(what, sizeof what, "IoU[%d]", c);
        check_num(cJSON_GetArrayItem(iou, c), what, r->iou[c]);
        snprintf(what, sizeof what, "Acc[%d]", c);
        check_num(cJSON_GetArrayItem(acc, c), what, r->acc[c]);
    }
    cJSON *ci = cJSON_GetObjectItem(j, "mIoU_ci95");
    ck_assert_int_eq(cJSON_GetArraySize(ci), 2);
    double lo = cJSON_GetArrayItem(ci, 0)->valuedouble, hi = cJSON_GetArrayItem(ci, 1)->valuedouble;
    ck_assert_msg(lo <= r->mIoU + 1e-9 && r->mIoU <= hi + 1e-9, "mIoU %g outside [%g, %g]",
                  r->mIoU, lo, hi);
    cJSON_Delete(j);
}

static uint32_t rs = 77;
static uint32_t rnd(void)
{
    rs = rs * 1664525u + 1013904223u;
    return rs >> 8;
}

static void write_map(const char *dir, const char *name, const uint8_t *px, int w, int h)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    ck_assert_msg(hx_labelmap_write(p, px, w, h) == 0, "%s", hx_errmsg());
}

static void make_dirs(char *root, size_t cap, char *pred, char *gt, size_t pcap)
{
    snprintf(root, cap, "%s", hx_tmpdir());
    snprintf(pred, pcap, "%s/pred", root);
    snprintf(gt, pcap, "%s/gt", root);
    ck_assert_int_eq(mkdir(pred, 0700), 0);
    ck_assert_int_eq(mkdir(gt, 0700), 0);
}

START_TEST(eval_random_dirs_match_naive)
{
    char root[512], pred[600], gt[600], args[2048], out[700], err[700];
    make_dirs(root, sizeof root, pred, gt, sizeof pred);
    enum { NIMG = 4, C = 6 };
    int ws[NIMG] = {17, 40, 3, 64}, hs[NIMG] = {9, 31, 50, 2};
    uint8_t *P[NIMG], *L[NIMG];
    size_t n[NIMG];
    for (int k = 0; k < NIMG; k++) {
        n[k] = (size_t)ws[k] * hs[k];
        P[k] = malloc(n[k]);
        L[k] = malloc(n[k]);
        for (size_t j = 0; j < n[k]; j++) {
            uint32_t a = rnd(), b = rnd();
            /* class 4 never in the ground truth; 255 ignore; a few out-of-range predictions */
            L[k][j] = a % 11 == 0 ? 255 : (uint8_t)(a % 4 == 3 ? 5 : a % 4);
            P[k][j] = b % 3 ? L[k][j] : (uint8_t)((b >> 4) % 9);
            if (P[k][j] == 255)
                P[k][j] = 4;
        }
        char name[32];
        snprintf(name, sizeof name, "img_%d.png", k);
        write_map(gt, name, L[k], ws[k], hs[k]);
        write_map(pred, name, P[k], ws[k], hs[k]);
    }
    /* a prediction without ground truth is not used */
    uint8_t junk[4] = {1, 1, 1, 1};
    write_map(pred, "zzz_extra.png", junk, 2, 2);

    snprintf(out, sizeof out, "%s/scores.json", root);
    snprintf(err, sizeof err, "%s/err.txt", root);
    snprintf(args, sizeof args, "eval --pred '%s' --gt '%s' --num-classes %d --out '%s'", pred,
             gt, C, out);
    ck_assert_int_eq(hx_run_harness(args, NULL, err), 0);
    struct naive r;
    naive_scores(P, L, n, NIMG, C, 255, &r);
    ck_assert(!isnan(r.iou[4]) && r.iou[4] == 0 && isnan(r.acc[4]));
    check_json(out, &r, C, NIMG);

    /* a different ignore index: 255 is then an out-of-range label, 0 is dropped */
    snprintf(args, sizeof args,
             "eval --pred '%s' --gt '%s' --num-classes %d --ignore-index 0 --out '%s'", pred, gt,
             C, out);
    ck_assert_int_eq(hx_run_harness(args, NULL, err), 0);
    naive_scores(P, L, n, NIMG, C, 0, &r);
    check_json(out, &r, C, NIMG);

    /* reduce_zero_label on the ground truth only */
    snprintf(args, sizeof args,
             "eval --pred '%s' --gt '%s' --num-classes %d --reduce-zero-label --out '%s'", pred,
             gt, C, out);
    ck_assert_int_eq(hx_run_harness(args, NULL, err), 0);
    for (int k = 0; k < NIMG; k++)
        for (size_t j = 0; j < n[k]; j++)
            L[k][j] = (L[k][j] == 0 || L[k][j] == 255) ? 255 : (uint8_t)(L[k][j] - 1);
    naive_scores(P, L, n, NIMG, C, 255, &r);
    check_json(out, &r, C, NIMG);

    /* no temporary file left next to the output */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", root);
    ck_assert_int_ne(system(cmd), 0);
    for (int k = 0; k < NIMG; k++) {
        free(P[k]);
        free(L[k]);
    }
}
END_TEST

START_TEST(eval_palette_ground_truth)
{
    const char *f = hx_fixture("voc/2007_000033.png");
    if (!f)
        HX_SKIP("fixture voc/2007_000033.png absent");
    char root[512], pred[600], gt[600], args[2048], out[700], err[700], link[700];
    char fixture[1024];
    snprintf(fixture, sizeof fixture, "%s", f);
    if (fixture[0] != '/') {
        char cwd[512];
        ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
        snprintf(fixture, sizeof fixture, "%s/%s", cwd, f);
    }
    make_dirs(root, sizeof root, pred, gt, sizeof pred);
    snprintf(link, sizeof link, "%s/2007_000033.png", gt);
    ck_assert_int_eq(symlink(fixture, link), 0);
    /* the prediction: the true map with the left third called class 15 (person) */
    struct hx_labelmap m;
    ck_assert_int_eq(hx_labelmap_read(&m, fixture), 0);
    uint8_t *p = malloc((size_t)m.w * m.h);
    for (int y = 0; y < m.h; y++)
        for (int x = 0; x < m.w; x++) {
            uint8_t v = m.px[(size_t)y * m.w + x];
            p[(size_t)y * m.w + x] = x < m.w / 3 ? 15 : v == 255 ? 0 : v;
        }
    write_map(pred, "2007_000033.png", p, m.w, m.h);
    snprintf(out, sizeof out, "%s/scores.json", root);
    snprintf(err, sizeof err, "%s/err.txt", root);
    snprintf(args, sizeof args, "eval --pred '%s' --gt '%s' --num-classes 21 --out '%s'", pred,
             gt, out);
    ck_assert_int_eq(hx_run_harness(args, NULL, err), 0);
    struct naive r;
    size_t n = (size_t)m.w * m.h;
    naive_scores(&p, &m.px, &n, 1, 21, 255, &r);
    ck_assert(r.iou[1] > 0 && r.iou[15] == 0); /* the palette indices (1 = aeroplane) count */
    check_json(out, &r, 21, 1);
    free(p);
    hx_labelmap_free(&m);
}
END_TEST

START_TEST(eval_errors_name_the_files)
{
    char root[512], pred[600], gt[600], args[2048], out[700], err[700];
    make_dirs(root, sizeof root, pred, gt, sizeof pred);
    snprintf(out, sizeof out, "%s/scores.json", root);
    snprintf(err, sizeof err, "%s/err.txt", root);
    uint8_t a[12] = {0}, b[12] = {0};
    write_map(gt, "one.png", a, 4, 3);
    write_map(gt, "two.png", a, 4, 3);
    write_map(pred, "one.png", b, 4, 3);

    snprintf(args, sizeof args, "eval --pred '%s' --gt '%s' --num-classes 3 --out '%s'", pred,
             gt, out);
    ck_assert_int_eq(hx_run_harness(args, NULL, err), 2);
    char *msg = hx_slurp(err);
    ck_assert_msg(strstr(msg, "two.png") && strstr(msg, "missing prediction"), "%s", msg);
    free(msg);
    ck_assert_int_ne(access(out, F_OK), 0);

    write_map(pred, "two.png", b, 3, 4);
    ck_assert_int_eq(hx_run_harness(args, NULL, err), 2);
    msg = hx_slurp(err);
    char p2[700], g2[700];
    snprintf(p2, sizeof p2, "%s/two.png", pred);
    snprintf(g2, sizeof g2, "%s/two.png", gt);
    ck_assert_msg(strstr(msg, "size mismatch") && strstr(msg, p2) && strstr(msg, g2), "%s", msg);
    free(msg);
    ck_assert_int_ne(access(out, F_OK), 0);

    /* an RGB file where a label map is expected */
    const char *rgb = hx_fixture("cityscapes/pseudo_cityscapes_dataset/leftImg8bit/"
                                 "frankfurt_000000_000294_leftImg8bit.png");
    if (rgb) {
        char dst[700], cmd[2048];
        snprintf(dst, sizeof dst, "%s/two.png", pred);
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", rgb, dst);
        ck_assert_int_eq(system(cmd), 0);
        ck_assert_int_eq(hx_run_harness(args, NULL, err), 2);
        msg = hx_slurp(err);
        ck_assert_msg(strstr(msg, "RGB") && strstr(msg, dst), "%s", msg);
        free(msg);
    }

    /* usage errors */
    snprintf(args, sizeof args, "eval --pred '%s' --gt '%s' --out '%s'", pred, gt, out);
    ck_assert_int_eq(hx_run_harness(args, NULL, err), 2);
    snprintf(args, sizeof args, "eval --pred '%s' --gt '%s' --num-classes 3", pred, gt);
    ck_assert_int_eq(hx_run_harness(args, NULL, err), 2);
    snprintf(args, sizeof args, "eval --pred '%s' --gt '%s/none' --num-classes 3 --out '%s'",
             pred, gt, out);
    ck_assert_int_eq(hx_run_harness(args, NULL, err), 2);
    ck_assert_int_ne(access(out, F_OK), 0);
}
END_TEST

static int python_torch_ok(void)
{
    return access("/usr/bin/python3", X_OK) == 0 &&
           system("/usr/bin/python3 -c 'import numpy, torch, PIL' >/dev/null 2>&1") == 0 &&
           access("scripts/miou_reference.py", R_OK) == 0;
}

static void compare_arrays(const cJSON *ref, const cJSON *got, const char *what)
{
    ck_assert_int_eq(cJSON_GetArraySize(ref), cJSON_GetArraySize(got));
    char w[64];
    for (int c = 0; c < cJSON_GetArraySize(ref); c++) {
        const cJSON *r = cJSON_GetArrayItem(ref, c);
        snprintf(w, sizeof w, "%s[%d]", what, c);
        check_num(cJSON_GetArrayItem(got, c), w, cJSON_IsNull(r) ? NAN : r->valuedouble);
    }
}

/* Real ground truth (ADE20K with reduce_zero_label, VOC palette and grey maps, raw
 * COCO-Stuff maps whose values beyond C are simply not counted) against predictions made by
 * the reference script, scored by torch.histc as mmseg does. */
START_TEST(eval_matches_torch_reference)
{
    if (!python_torch_ok())
        HX_SKIP("/usr/bin/python3 with numpy, torch and PIL not available");
    const struct {
        const char *dir;
        int classes, reduce;
    } cases[] = {{"ade20k/annotations", 150, 1}, {"voc", 21, 0}, {"cocostuff/stuffthingmaps", 171, 0}};
    int ran = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *fx = hx_fixture(cases[k].dir);
        if (!fx)
            continue;
        char gt[1024], root[512], pred[700], ref[700], out[700], err[700], cmd[4096];
        snprintf(gt, sizeof gt, "%s", fx);
        snprintf(root, sizeof root, "%s", hx_tmpdir());
        snprintf(pred, sizeof pred, "%s/pred", root);
        ck_assert_int_eq(mkdir(pred, 0700), 0);
        snprintf(ref, sizeof ref, "%s/ref.json", root);
        snprintf(out, sizeof out, "%s/out.json", root);
        snprintf(err, sizeof err, "%s/err.txt", root);
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 scripts/miou_reference.py '%s' '%s' %d 255 %d --make-preds > '%s'",
                 gt, pred, cases[k].classes, cases[k].reduce, ref);
        ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
        snprintf(cmd, sizeof cmd, "eval --pred '%s' --gt '%s' --num-classes %d %s --out '%s'", pred,
                 gt, cases[k].classes, cases[k].reduce ? "--reduce-zero-label" : "", out);
        ck_assert_int_eq(hx_run_harness(cmd, NULL, err), 0);
        cJSON *r = load_json(ref), *g = load_json(out);
        ck_assert_int_eq(cJSON_GetObjectItem(g, "num_images")->valueint,
                         cJSON_GetObjectItem(r, "num_images")->valueint);
        const char *keys[] = {"aAcc", "mIoU", "mAcc"};
        for (int i = 0; i < 3; i++)
            check_num(cJSON_GetObjectItem(g, keys[i]), keys[i],
                      cJSON_GetObjectItem(r, keys[i])->valuedouble);
        compare_arrays(cJSON_GetObjectItem(r, "IoU"), cJSON_GetObjectItem(g, "IoU"), "IoU");
        compare_arrays(cJSON_GetObjectItem(r, "Acc"), cJSON_GetObjectItem(g, "Acc"), "Acc");
        cJSON_Delete(r);
        cJSON_Delete(g);
        ran++;
    }
    if (!ran)
        HX_SKIP("no label-map fixtures");
}
END_TEST

Suite *suite_eval(void)
{
    Suite *s = suite_create("eval");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, eval_random_dirs_match_naive);
    tcase_add_test(tc, eval_palette_ground_truth);
    tcase_add_test(tc, eval_errors_name_the_files);
    tcase_add_test(tc, eval_matches_torch_reference);
    suite_add_tcase(s, tc);
    return s;
}
