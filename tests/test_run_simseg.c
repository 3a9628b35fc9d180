/* `harness run` with the SimSeg backend on the real VOC samples and the tiny SimSeg model:
 * a sweep over k with the released subclass lists writes each point's predictions, which
 * equal `harness segment` on the same image with the same options; a second run reads both
 * images' features (LoDA embedding and patch tokens) from the cache and gives the same mIoU. */
#include "harness/labelmap.h"
#include "tests/test_util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strdup(buf);
}

static const char *const ids[2] = {"2007_000033", "2007_000129"};

/* VOC layout under dir with the two fixture samples (absolute symlinks). */
static int make_voc(const char *dir)
{
    char p[2048], src[1024], cwd[512];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    snprintf(p, sizeof p, "mkdir -p %.500s/VOCdevkit/VOC2012/JPEGImages %.500s/VOCdevkit/VOC2012/"
             "SegmentationClass %.500s/VOCdevkit/VOC2012/ImageSets/Segmentation", dir, dir, dir);
    ck_assert_int_eq(system(p), 0);
    for (int i = 0; i < 2; i++) {
        const char *ext[2] = {"jpg", "png"}, *sub[2] = {"JPEGImages", "SegmentationClass"};
        for (int k = 0; k < 2; k++) {
            char rel[64];
            snprintf(rel, sizeof rel, "voc/%s.%s", ids[i], ext[k]);
            const char *f = hx_fixture(rel);
            if (!f)
                return 0;
            if (f[0] == '/')
                snprintf(src, sizeof src, "%s", f);
            else
                snprintf(src, sizeof src, "%s/%s", cwd, f);
            snprintf(p, sizeof p, "%.900s/VOCdevkit/VOC2012/%s/%s.%s", dir, sub[k], ids[i],
                     ext[k]);
            ck_assert_int_eq(symlink(src, p), 0);
        }
    }
    snprintf(p, sizeof p, "%.900s/VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt", dir);
    FILE *f = fopen(p, "w");
    fprintf(f, "%s\n%s\n", ids[0], ids[1]);
    fclose(f);
    return 1;
}

static double point_miou(const char *dir, int i)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/results/points/%03d/metrics.json", dir, i);
    char *text = slurp(path);
    cJSON *j = cJSON_Parse(text);
    ck_assert_msg(j != NULL, "%s: not JSON", path);
    double v = cJSON_GetObjectItem(j, "mIoU")->valuedouble;
    cJSON_Delete(j);
    free(text);
    return v;
}

START_TEST(simseg_sweep_end_to_end)
{
    char dir[512], cfg[600], cmd[4096], path[1200], subs[600];
    snprintf(dir, sizeof dir, "%s", hx_tmpdir());
    const char *s = hx_fixture("subclasses/paper_top5_pascal_voc.json");
    if (!s)
        HX_SKIP("released subclass lists absent");
    snprintf(subs, sizeof subs, "%s", s);
    if (!make_voc(dir))
        HX_SKIP("VOC fixtures absent");
    snprintf(cfg, sizeof cfg, "%s/xp.json", dir);
    FILE *f = fopen(cfg, "w");
    fprintf(f,
            "{\"name\": \"t\", \"backend\": \"simseg\", \"model\": \"tests/data/simseg/tiny325\",\n"
            " \"dataset\": {\"name\": \"voc21\", \"root\": \"%s\"},\n"
            " \"subclasses\": \"%s\", \"k\": [0, 3], \"ensemble\": \"embed-softmax\",\n"
            " \"save_predictions\": true, \"overlays\": 0, \"bootstrap\": 10,\n"
            " \"output\": \"%s/results\", \"cache\": \"%s/cache\"}\n",
            dir, subs, dir, dir);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s run %s > %s/out1.txt 2> %s/err1.txt", hx_harness_bin(), cfg, dir, dir);
    ck_assert_msg(system(cmd) == 0, "run failed: %s", cmd);
    snprintf(path, sizeof path, "%s/err1.txt", dir);
    char *err = slurp(path);
    ck_assert_msg(strstr(err, "2 encoded"), "first run should encode both images:\n%s", err);
    free(err);
    double miou[2] = {point_miou(dir, 0), point_miou(dir, 1)};
    snprintf(path, sizeof path, "%s/results/points/001/point.json", dir);
    char *pj = slurp(path);
    ck_assert_msg(strstr(pj, "\"top_k\":\t10") && strstr(pj, "\"name\":\t\"simseg\""),
                  "point.json: %s", pj);
    free(pj);

    /* each saved prediction equals `harness segment` with the point's options */
    for (int pt = 0; pt < 2; pt++)
        for (int i = 0; i < 2; i++) {
            snprintf(cmd, sizeof cmd,
                     "%s segment --model tests/data/simseg/tiny325 --image "
                     "%s/VOCdevkit/VOC2012/JPEGImages/%s.jpg --dataset voc21 --protocol simseg "
                     "--subclasses %s --k %d --ensemble embed-softmax --out %s/seg.png",
                     hx_harness_bin(), dir, ids[i], subs, pt ? 3 : 0, dir);
            ck_assert_msg(system(cmd) == 0, "%s", cmd);
            struct hx_labelmap a, b;
            snprintf(path, sizeof path, "%s/seg.png", dir);
            ck_assert_int_eq(hx_labelmap_read(&a, path), 0);
            snprintf(path, sizeof path, "%s/results/points/%03d/pred/%s.png", dir, pt, ids[i]);
            ck_assert_int_eq(hx_labelmap_read(&b, path), 0);
            ck_assert(a.w == b.w && a.h == b.h);
            int differ = 0;
            for (int k = 0; k < a.w * a.h; k++)
                differ += a.px[k] != b.px[k];
            ck_assert_msg(differ == 0, "point %d, %s: %d pixels differ from segment", pt, ids[i],
                          differ);
            hx_labelmap_free(&a);
            hx_labelmap_free(&b);
        }

    /* the second run reads the features from the cache and gives the same numbers */
    snprintf(cmd, sizeof cmd, "rm -rf %s/results && %s run %s > %s/out2.txt 2> %s/err2.txt",
             dir, hx_harness_bin(), cfg, dir, dir);
    ck_assert_msg(system(cmd) == 0, "second run failed: %s", cmd);
    snprintf(path, sizeof path, "%s/err2.txt", dir);
    err = slurp(path);
    ck_assert_msg(strstr(err, "2 cached, 0 encoded"), "second run should hit the cache:\n%s",
                  err);
    free(err);
    ck_assert_double_eq(point_miou(dir, 0), miou[0]);
    ck_assert_double_eq(point_miou(dir, 1), miou[1]);
}
END_TEST

Suite *suite_run_simseg(void)
{
    Suite *s = suite_create("run_simseg");
    TCase *tc = tcase_create("run_simseg");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, simseg_sweep_end_to_end);
    suite_add_tcase(s, tc);
    return s;
}
