/* `harness run` end to end on the real VOC samples with the tiny model: a sweep writes one
 * result per point, each point's metrics equal `harness eval` on its saved predictions, the
 * second run reads every image feature from the cache, --resume keeps finished points, and
 * --dry-run reports the cache. */
#include "harness/error.h"
#include "harness/image.h"
#include "harness/labelmap.h"
#include "harness/report.h"
#include "tests/mock_llm.h"
#include "tests/test_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static cJSON *read_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "missing %s", path);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    ck_assert_msg(j != NULL, "%s: not JSON", path);
    return j;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strdup(buf);
}

/* VOC layout under dir with the two fixture samples. */
static int make_voc(const char *dir)
{
    const char *ids[2] = {"2007_000033", "2007_000129"};
    char p[1024], src[1024];
    snprintf(p, sizeof p, "mkdir -p %s/VOCdevkit/VOC2012/JPEGImages %s/VOCdevkit/VOC2012/"
             "SegmentationClass %s/VOCdevkit/VOC2012/ImageSets/Segmentation", dir, dir, dir);
    ck_assert_int_eq(system(p), 0);
    for (int i = 0; i < 2; i++) {
        const char *ext[2] = {"jpg", "png"}, *sub[2] = {"JPEGImages", "SegmentationClass"};
        for (int k = 0; k < 2; k++) {
            char rel[64];
            snprintf(rel, sizeof rel, "voc/%s.%s", ids[i], ext[k]);
            const char *f = hx_fixture(rel);
            if (!f)
                return 0;
            snprintf(src, sizeof src, "%s", f);
            if (src[0] != '/') { /* symlinks need absolute targets */
                char cwd[512];
                ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
                snprintf(src, sizeof src, "%s/%s", cwd, f);
            }
            snprintf(p, sizeof p, "%s/VOCdevkit/VOC2012/%s/%s.%s", dir, sub[k], ids[i], ext[k]);
            ck_assert_int_eq(symlink(src, p), 0);
        }
    }
    snprintf(p, sizeof p, "%s/VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt", dir);
    FILE *f = fopen(p, "w");
    fprintf(f, "2007_000033\n2007_000129\n");
    fclose(f);
    return 1;
}

START_TEST(sweep_end_to_end)
{
    const char *tmp = hx_tmpdir();
    char dir[512], cfg[600], cmd[4096], path[1200];
    snprintf(dir, sizeof dir, "%s", tmp);
    if (!make_voc(dir))
        HX_SKIP("VOC fixtures absent");
    snprintf(path, sizeof path, "%s/subs.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"person\": [\"man\", \"woman\", \"child\"], \"aeroplane\": [\"jet\", \"airliner\"],"
               " \"bicycle\": [\"bike\"], \"cat\": [\"kitten\", \"tabby\"]}");
    fclose(f);
    snprintf(cfg, sizeof cfg, "%s/xp.json", dir);
    f = fopen(cfg, "w");
    fprintf(f,
            "{\"name\": \"t\", \"model\": \"tests/data/clip/tiny\", \"variant\": \"sclip\",\n"
            " \"dataset\": {\"name\": \"voc21\", \"root\": \"%s\"},\n"
            " \"protocol\": {\"short_side\": 64, \"crop\": 48, \"stride\": 32, \"prob_thd\": 0.05},\n"
            " \"templates\": \"single\", \"subclasses\": \"%s/subs.json\",\n"
            " \"k\": [0, 2], \"ensemble\": [\"max\", \"mean\"], \"save_predictions\": true,\n"
            " \"overlays\": 1, \"bootstrap\": 50,\n"
            " \"output\": \"%s/results\", \"cache\": \"%s/cache\"}\n",
            dir, dir, dir, dir);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s run %s > %s/out1.txt 2> %s/err1.txt", hx_harness_bin(), cfg, dir, dir);
    ck_assert_msg(system(cmd) == 0, "run failed: %s", cmd);
    snprintf(path, sizeof path, "%s/err1.txt", dir);
    char *err = slurp(path);
    ck_assert_msg(strstr(err, "2 encoded"), "first run should encode both images:\n%s", err);
    /* progress off a terminal: plain lines, the last of each phase always printed */
    ck_assert_msg(strstr(err, "encode: 2/2 images") && strstr(err, "run: 2/2 images"),
                  "no progress lines:\n%s", err);
    free(err);

    snprintf(path, sizeof path, "%s/results/summary.json", dir);
    cJSON *sum = read_json(path);
    cJSON *pts = cJSON_GetObjectItem(sum, "points");
    ck_assert_int_eq(cJSON_GetArraySize(pts), 4);
    double miou[4];
    for (int i = 0; i < 4; i++) {
        cJSON *p = cJSON_GetArrayItem(pts, i);
        miou[i] = cJSON_GetObjectItem(p, "mIoU")->valuedouble;
        ck_assert(miou[i] >= 0 && miou[i] <= 100);
        /* the same numbers from `harness eval` on the saved predictions */
        snprintf(cmd, sizeof cmd,
                 "%s eval --pred %s/results/points/%03d/pred --gt %s/VOCdevkit/VOC2012/"
                 "SegmentationClass --num-classes 21 --out %s/eval%d.json 2>/dev/null",
                 hx_harness_bin(), dir, i, dir, dir, i);
        ck_assert_msg(system(cmd) == 0, "%s", cmd);
        snprintf(path, sizeof path, "%s/eval%d.json", dir, i);
        cJSON *ev = read_json(path);
        ck_assert_double_eq_tol(cJSON_GetObjectItem(ev, "mIoU")->valuedouble, miou[i], 1e-9);
        ck_assert_double_eq_tol(cJSON_GetObjectItem(ev, "aAcc")->valuedouble,
                                cJSON_GetObjectItem(p, "aAcc")->valuedouble, 1e-9);
        cJSON_Delete(ev);
    }
    /* k = 0 uses the superclass alone whatever the rule: points 0 and 1 agree */
    ck_assert_double_eq_tol(miou[0], miou[1], 1e-12);
    cJSON_Delete(sum);
    const char *files[] = {"summary.md", "summary.csv", "summary.tex", "miou_vs_k.png",
                           "per_class.png", "config.json", "points/003/per_class.csv"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/results/%s", dir, files[i]);
        ck_assert_msg(access(path, R_OK) == 0, "missing %s", path);
    }
    /* the overlay: the image, the ground truth and the saved prediction side by side */
    {
        struct hx_image ov, im;
        struct hx_labelmap pred, gt;
        snprintf(path, sizeof path, "%s/results/overlays/003-2007_000033.png", dir);
        ck_assert_msg(hx_image_load(&ov, path) == 0, "%s", hx_errmsg());
        snprintf(path, sizeof path, "%s/results/points/003/pred/2007_000033.png", dir);
        ck_assert_msg(hx_labelmap_read(&pred, path) == 0, "%s", hx_errmsg());
        snprintf(path, sizeof path, "%s/VOCdevkit/VOC2012/JPEGImages/2007_000033.jpg", dir);
        ck_assert_msg(hx_image_load(&im, path) == 0, "%s", hx_errmsg());
        snprintf(path, sizeof path, "%s/VOCdevkit/VOC2012/SegmentationClass/2007_000033.png", dir);
        ck_assert_msg(hx_labelmap_read(&gt, path) == 0, "%s", hx_errmsg());
        int w = pred.w, h = pred.h, W = ov.w, bad = 0;
        ck_assert(W == 3 * w + 8 && ov.h == h && im.w == w && gt.w == w);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                uint8_t cg[3], cp[3];
                const uint8_t *row = ov.px + (size_t)y * W * 3;
                hx_voc_color(gt.px[y * w + x], cg);
                hx_voc_color(pred.px[y * w + x], cp);
                bad += memcmp(row + 3 * x, im.px + 3 * ((size_t)y * w + x), 3) != 0;
                bad += memcmp(row + 3 * (w + 4 + x), cg, 3) != 0;
                bad += memcmp(row + 3 * (2 * w + 8 + x), cp, 3) != 0;
            }
        ck_assert_int_eq(bad, 0);
        hx_image_free(&ov), hx_image_free(&im);
        hx_labelmap_free(&pred), hx_labelmap_free(&gt);
    }
    snprintf(path, sizeof path, "%s/out1.txt", dir);
    char *out = slurp(path);
    ck_assert_msg(strstr(out, "| mIoU |") || strstr(out, "mIoU |"), "no table on stdout:\n%s", out);
    free(out);

    /* second run: every feature from the cache, on one thread (the first ran one worker per
     * core), same numbers: metrics files byte for byte, bootstrap interval included */
    char *metrics1[4];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/results/points/%03d/metrics.json", dir, i);
        metrics1[i] = slurp(path);
    }
    snprintf(cmd, sizeof cmd, "HX_THREADS=1 %s run %s > /dev/null 2> %s/err2.txt",
             hx_harness_bin(), cfg, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/err2.txt", dir);
    err = slurp(path);
    ck_assert_msg(strstr(err, "2 cached, 0 encoded"), "second run should hit the cache:\n%s", err);
    free(err);
    snprintf(path, sizeof path, "%s/results/summary.json", dir);
    sum = read_json(path);
    pts = cJSON_GetObjectItem(sum, "points");
    for (int i = 0; i < 4; i++)
        ck_assert_double_eq_tol(
            cJSON_GetObjectItem(cJSON_GetArrayItem(pts, i), "mIoU")->valuedouble, miou[i], 1e-12);
    cJSON_Delete(sum);
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/results/points/%03d/metrics.json", dir, i);
        char *m2 = slurp(path);
        ck_assert_msg(strcmp(metrics1[i], m2) == 0, "point %d: metrics differ between 2 workers "
                      "and 1:\n%s\n%s", i, metrics1[i], m2);
        ck_assert_msg(strstr(m2, "\"mIoU_ci95\": ["), "point %d: no bootstrap interval in\n%s", i, m2);
        free(metrics1[i]), free(m2);
    }

    /* --resume with everything finished computes nothing; --dry-run reports the cache */
    snprintf(cmd, sizeof cmd, "%s run %s --resume > /dev/null 2> %s/err3.txt", hx_harness_bin(), cfg, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/err3.txt", dir);
    err = slurp(path);
    ck_assert_msg(!strstr(err, "encoded") || strstr(err, "0 cached, 0 encoded"),
                  "--resume should not touch finished points:\n%s", err);
    free(err);
    /* ... but a point whose result would differ is run again: fewer images (--limit), then
     * a changed subclass file; and resumed once more when nothing changed */
    const struct {
        int edit_subclasses, rerun;
    } resume_cases[] = {{0, 1}, {0, 0}, {1, 1}, {0, 0}};
    for (int c = 0; c < 4; c++) {
        if (resume_cases[c].edit_subclasses) {
            snprintf(path, sizeof path, "%s/subs.json", dir);
            f = fopen(path, "w");
            fprintf(f, "{\"person\": [\"woman\", \"man\"], \"cat\": [\"kitten\"]}");
            fclose(f);
        }
        snprintf(cmd, sizeof cmd, "%s run %s --resume --limit 1 > /dev/null 2> %s/err4.txt",
                 hx_harness_bin(), cfg, dir);
        ck_assert_int_eq(system(cmd), 0);
        snprintf(path, sizeof path, "%s/err4.txt", dir);
        err = slurp(path);
        if (resume_cases[c].rerun)
            ck_assert_msg(strstr(err, "1 cached, 0 encoded"), "case %d: should run again:\n%s", c,
                          err);
        else
            ck_assert_msg(strstr(err, "0 cached, 0 encoded"), "case %d: should resume:\n%s", c,
                          err);
        free(err);
    }
    snprintf(path, sizeof path, "%s/results/points/000/point.json", dir);
    cJSON *pj = read_json(path);
    ck_assert_int_eq(cJSON_GetObjectItem(pj, "images")->valueint, 1);
    cJSON_Delete(pj);

    snprintf(cmd, sizeof cmd, "%s run %s --dry-run > %s/dry.txt", hx_harness_bin(), cfg, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/dry.txt", dir);
    out = slurp(path);
    ck_assert_msg(strstr(out, "2 cached, 0 to encode"), "dry run:\n%s", out);
    ck_assert_msg(strstr(out, "prompts, 0 to encode"), "dry run, texts:\n%s", out);
    free(out);
    /* against an empty cache: everything to compute, and nothing written */
    snprintf(cmd, sizeof cmd, "sed 's|%s/cache|%s/empty|' %s > %s/xp2.json && %s run "
             "%s/xp2.json --dry-run > %s/dry2.txt", dir, dir, cfg, dir, hx_harness_bin(), dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/dry2.txt", dir);
    out = slurp(path);
    ck_assert_msg(strstr(out, "0 cached, 2 to encode") && !strstr(out, " 0 to encode"),
                  "dry run on an empty cache:\n%s", out);
    free(out);
    snprintf(path, sizeof path, "%s/empty", dir);
    ck_assert_msg(access(path, F_OK) != 0, "a dry run created %s", path);

    /* `table` regenerates the tables elsewhere */
    snprintf(cmd, sizeof cmd, "%s table --out %s/paper/new %s/results", hx_harness_bin(), dir,
             dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/paper/new/t.tex", dir);
    ck_assert_msg(access(path, R_OK) == 0, "missing %s", path);
    /* and by default into paper/ of the working folder */
    char bin[1024] = "";
    if (hx_harness_bin()[0] != '/') {
        ck_assert_ptr_nonnull(getcwd(bin, sizeof bin - 1));
        strcat(bin, "/");
    }
    snprintf(cmd, sizeof cmd, "cd %s && %s%s table results", dir, bin, hx_harness_bin());
    ck_assert_int_eq(system(cmd), 0);
    const char *exts[] = {"md", "csv", "tex"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/paper/t.%s", dir, exts[i]);
        ck_assert_msg(access(path, R_OK) == 0, "missing %s", path);
    }
}
END_TEST

/* A config whose subclass source is an LLM request: the first run asks the (loopback mock)
 * server once per class; a second run with the server gone reads every answer from the
 * cache. */
START_TEST(llm_subclasses_through_the_cache)
{
    const char *tmp = hx_tmpdir();
    char dir[512], cfg[600], cmd[4096];
    snprintf(dir, sizeof dir, "%s", tmp);
    if (!make_voc(dir))
        HX_SKIP("VOC fixtures absent");
    struct mock_llm *mock;
    ck_assert_int_eq(mock_llm_start(&mock), 0);
    char url[256]; /* the same endpoint both times: it is part of the cache key */
    snprintf(url, sizeof url, "%s", mock_llm_url(mock));
    snprintf(cfg, sizeof cfg, "%s/xp.json", dir);
    for (int pass = 0; pass < 2; pass++) {
        FILE *f = fopen(cfg, "w");
        fprintf(f,
                "{\"name\": \"t\", \"model\": \"tests/data/clip/tiny\", \"variant\": \"maskclip\",\n"
                " \"dataset\": {\"name\": \"voc21\", \"root\": \"%s\", \"limit\": 1},\n"
                " \"protocol\": {\"short_side\": 48, \"crop\": 0, \"stride\": 0},\n"
                " \"templates\": \"single\", \"k\": 3, \"ensemble\": \"max\", \"overlays\": 0,\n"
                " \"subclasses\": {\"llm\": {\"base_url\": \"%s\", \"model\": \"mock\", \"n\": 3,"
                " \"key_env\": \"\", \"backoff_base_ms\": 1, \"backoff_max_ms\": 2}},\n"
                " \"output\": \"%s/results%d\", \"cache\": \"%s/cache\"}\n",
                dir, url, dir, pass, dir);
        fclose(f);
        if (pass == 0) { /* a dry run asks nothing and writes nothing: it says the LLM is due */
            char path[1200];
            snprintf(cmd, sizeof cmd, "%s run %s --dry-run > %s/dry.txt", hx_harness_bin(), cfg,
                     dir);
            ck_assert_int_eq(system(cmd), 0);
            snprintf(path, sizeof path, "%s/dry.txt", dir);
            char *out = slurp(path);
            ck_assert_msg(strstr(out, "the run asks the LLM"), "dry run:\n%s", out);
            free(out);
            ck_assert_int_eq(mock_llm_requests(mock), 0);
            snprintf(path, sizeof path, "%s/cache", dir);
            ck_assert_msg(access(path, F_OK) != 0, "a dry run created %s", path);
        }
        snprintf(cmd, sizeof cmd, "%s run %s --quiet > /dev/null 2> %s/llm%d.txt", hx_harness_bin(), cfg,
                 dir, pass);
        ck_assert_msg(system(cmd) == 0, "pass %d failed: %s", pass, cmd);
        if (pass == 0) {
            ck_assert_int_eq(mock_llm_requests(mock), 21); /* one per class */
            mock_llm_stop(mock);                           /* the network is gone */
        }
    }
}
END_TEST

START_TEST(bad_configs_fail_cleanly)
{
    const char *dir = hx_tmpdir();
    char cfg[600], cmd[2048];
    snprintf(cfg, sizeof cfg, "%s/bad.json", dir);
    FILE *f = fopen(cfg, "w");
    fprintf(f, "{\"model\": \"tests/data/clip/tiny\", \"dataset\": {\"name\": \"voc21\", "
               "\"root\": \"%s/nowhere\"}, \"ensemble\": [\"super\", \"mx\"]}", dir);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s run %s 2> %s/e.txt", hx_harness_bin(), cfg, dir);
    ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s/e.txt", dir);
    char *e = slurp(cmd);
    ck_assert_msg(strstr(e, "ensemble[1]"), "message: %s", e);
    free(e);
    /* a valid config on a missing dataset root: exit 2 naming the root */
    f = fopen(cfg, "w");
    fprintf(f, "{\"model\": \"tests/data/clip/tiny\", \"dataset\": {\"name\": \"voc21\", "
               "\"root\": \"%s/nowhere\"}, \"output\": \"%s/r\", \"cache\": \"%s/c\"}", dir, dir, dir);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s run %s 2> %s/e.txt", hx_harness_bin(), cfg, dir);
    ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s/e.txt", dir);
    e = slurp(cmd);
    ck_assert_msg(strstr(e, "nowhere"), "message: %s", e);
    free(e);
}
END_TEST

Suite *suite_run(void)
{
    Suite *s = suite_create("run");
    TCase *tc = tcase_create("run");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, sweep_end_to_end);
    tcase_add_test(tc, llm_subclasses_through_the_cache);
    tcase_add_test(tc, bad_configs_fail_cleanly);
    suite_add_tcase(s, tc);
    return s;
}
