/* `harness segment` end to end: the label PNG of the SimSeg protocol (with and without the
 * released subclass lists) and of a dense preset equals what the library gives for the same
 * classes, templates and rule; bad usage exits with 2. */
#include "datasets/datasets.h"
#include "harness/error.h"
#include "harness/labelmap.h"
#include "harness/protocol.h"
#include "harness/score.h"
#include "harness/simseg_protocol.h"
#include "harness/subclasses.h"
#include "models/clip/clip.h"
#include "models/simseg/simseg.h"
#include "tests/test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static int sh(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* SimSeg on voc21: SimSeg's VOC names, its 80 templates, subclasses (first k, none for
 * background) from `subs` when not NULL, embed-softmax. */
static uint8_t *simseg_library(const char *image, const char *subs, int k, int *w, int *h)
{
    struct hx_simseg *m;
    ck_assert_msg(hx_simseg_open(&m, hx_testdata("simseg/tiny325"),
                                 HX_SIMSEG_VISION | HX_SIMSEG_TEXT) == 0, "%s", hx_errmsg());
    struct hx_classnames cn;
    ck_assert_msg(hx_classnames_read(hx_ssp_classnames("voc21"), &cn) == 0, "%s", hx_errmsg());
    struct hx_subclasses sc = {0};
    if (subs)
        ck_assert_msg(hx_subclasses_read(subs, 0, &sc) == 0, "%s", hx_errmsg());
    const char *strings[512];
    int nsub[64], M = 0;
    for (int c = 0; c < cn.n; c++) {
        strings[M++] = cn.syn[c][0];
        int i = sc.n ? hx_subclasses_find(&sc, cn.syn[c][0]) : -1;
        nsub[c] = i >= 0 && c > 0 ? (sc.nsub[i] < k ? sc.nsub[i] : k) : 0;
        for (int j = 0; j < nsub[c]; j++)
            strings[M++] = sc.sub[i][j];
    }
    int E = hx_simseg_cfg(m)->projection_dim;
    float *emb = malloc(sizeof(float) * M * E);
    ck_assert_int_eq(hx_simseg_class_embeddings(m, strings, M, hx_simseg_templates, 80, emb), 0);
    struct hx_text_bank *bank;
    ck_assert_int_eq(hx_text_bank_create(&bank, emb, nsub, cn.n, E), 0);
    struct hx_image im;
    ck_assert_int_eq(hx_image_load(&im, image), 0);
    struct hx_ssp_params p;
    hx_ssp_params_default(&p, "voc21");
    struct hx_dense_encoder enc = {m, E, hx_simseg_cfg(m)->patch_size, hx_ssp_simseg_encode};
    struct hx_ens_point pt = {subs ? HX_ENS_EMBED_SOFTMAX : HX_ENS_SUPER, k, 0};
    uint8_t *pred = malloc((size_t)im.w * im.h);
    ck_assert_msg(hx_ssp_segment(&enc, &p, bank, &pt, &im, im.h, im.w, pred, NULL) == 0, "%s",
                  hx_errmsg());
    *w = im.w, *h = im.h;
    hx_image_free(&im);
    hx_text_bank_free(bank);
    free(emb);
    hx_subclasses_free(&sc);
    hx_classnames_free(&cn);
    hx_simseg_free(m);
    return pred;
}

static void check_png(const char *path, const uint8_t *want, int w, int h)
{
    struct hx_labelmap lm;
    ck_assert_msg(hx_labelmap_read(&lm, path) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(lm.w, w);
    ck_assert_int_eq(lm.h, h);
    int differ = 0;
    for (int i = 0; i < w * h; i++)
        differ += lm.px[i] != want[i];
    ck_assert_msg(differ == 0, "%s: %d pixels differ from the library", path, differ);
    hx_labelmap_free(&lm);
}

START_TEST(simseg_matches_library)
{
    char cmd[3000], out[600], image[600];
    int w, h;
    snprintf(image, sizeof image, "%s", hx_testdata("ssp/b.png"));
    snprintf(out, sizeof out, "%s/s.png", hx_tmpdir());
    uint8_t *want = simseg_library(image, NULL, 0, &w, &h);
    snprintf(cmd, sizeof cmd, "%s segment --model %s --image %s --dataset voc21 --protocol "
             "simseg --out %s", hx_harness_bin(), hx_testdata("simseg/tiny325"), image, out);
    ck_assert_msg(sh(cmd) == 0, "failed: %s", cmd);
    check_png(out, want, w, h);
    free(want);
    const char *subs = hx_fixture("subclasses/paper_top5_pascal_voc.json");
    if (!subs)
        HX_SKIP("no released subclass lists under the fixtures");
    char subs_path[600];
    snprintf(subs_path, sizeof subs_path, "%s", subs);
    want = simseg_library(image, subs_path, 3, &w, &h);
    snprintf(cmd, sizeof cmd, "%s segment --model %s --image %s --dataset voc21 --protocol "
             "simseg --subclasses %s --k 3 --out %s", hx_harness_bin(),
             hx_testdata("simseg/tiny325"), image, subs_path, out);
    ck_assert_msg(sh(cmd) == 0, "failed: %s", cmd);
    check_png(out, want, w, h);
    free(want);
}
END_TEST

START_TEST(dense_matches_library)
{
    struct hx_clip *m;
    ck_assert_int_eq(hx_clip_open(&m, hx_testdata("clip/tiny"), HX_CLIP_VISION | HX_CLIP_TEXT), 0);
    const struct hx_dataset *d = hx_dataset_find("voc21");
    struct hx_classnames cn;
    ck_assert_int_eq(hx_dataset_classnames(d, NULL, &cn), 0);
    /* every synonym a query name, 80 ImageNet templates */
    FILE *f = fopen("datasets/templates/imagenet80.txt", "r");
    ck_assert(f != NULL);
    char line[512], *tmpl[80];
    int nt = 0;
    while (nt < 80 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0])
            tmpl[nt++] = strdup(line);
    }
    fclose(f);
    ck_assert_int_eq(nt, 80);
    int N = 0, name_class[256];
    char *texts[256 * 80];
    for (int c = 0; c < cn.n; c++)
        for (int j = 0; j < cn.nsyn[c]; j++, N++) {
            name_class[N] = c;
            for (int t = 0; t < nt; t++) {
                char *at = strstr(tmpl[t], "{}"), buf[600];
                snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - tmpl[t]), tmpl[t],
                         cn.syn[c][j], at + 2);
                texts[N * nt + t] = strdup(buf);
            }
        }
    int E = hx_clip_cfg(m)->projection_dim, nsub[256] = {0};
    float *temb = malloc(sizeof(float) * N * nt * E), *emb = malloc(sizeof(float) * N * E);
    ck_assert_int_eq(hx_clip_encode_text(m, (const char *const *)texts, N * nt, temb), 0);
    hx_template_mean(temb, N, nt, E, emb);
    struct hx_text_bank *bank;
    ck_assert_int_eq(hx_text_bank_create(&bank, emb, nsub, N, E), 0);
    struct hx_dense_preset pre;
    ck_assert_int_eq(hx_dense_preset_get("sclip", "voc21", &pre), 0);
    struct hx_clip_view view = {m, HX_VANILLA};
    ck_assert_int_eq(hx_variant_parse(pre.variant, &view.variant), 0);
    struct hx_dense_encoder enc = {&view, E, hx_clip_cfg(m)->vision.patch_size,
                                   hx_clip_encode_view};
    struct hx_queries q = {bank, name_class, cn.n, {HX_ENS_SUPER, 5, 0}};
    struct hx_image im;
    char image[600];
    snprintf(image, sizeof image, "%s", hx_testdata("ssp/b.png"));
    ck_assert_int_eq(hx_image_load(&im, image), 0);
    uint8_t *want = malloc((size_t)im.w * im.h);
    ck_assert_msg(hx_dense_segment(&enc, &pre.params, &q, &im, im.h, im.w, want, NULL) == 0,
                  "%s", hx_errmsg());
    char cmd[3000], out[600];
    snprintf(out, sizeof out, "%s/d.png", hx_tmpdir());
    snprintf(cmd, sizeof cmd, "%s segment --model %s --image %s --dataset voc21 --protocol "
             "sclip --out %s", hx_harness_bin(), hx_testdata("clip/tiny"), image, out);
    ck_assert_msg(sh(cmd) == 0, "failed: %s", cmd);
    check_png(out, want, im.w, im.h);
    free(want), free(temb), free(emb);
    for (int i = 0; i < N * nt; i++)
        free(texts[i]);
    for (int t = 0; t < nt; t++)
        free(tmpl[t]);
    hx_image_free(&im);
    hx_text_bank_free(bank);
    hx_classnames_free(&cn);
    hx_clip_free(m);
}
END_TEST

START_TEST(bad_usage)
{
    char cmd[3000], out[600], image[600], clip[600], simseg[600];
    snprintf(image, sizeof image, "%s", hx_testdata("ssp/b.png"));
    snprintf(clip, sizeof clip, "%s", hx_testdata("clip/tiny"));
    snprintf(simseg, sizeof simseg, "%s", hx_testdata("simseg/tiny325"));
    snprintf(out, sizeof out, "%s/x.png", hx_tmpdir());
    const char *bad[][2] = {
        {"simseg", "--protocol simseg"},           /* a CLIP directory for simseg */
        {"clip", "--protocol sclip"},              /* a SimSeg directory for a dense preset */
        {"", "--protocol segformer"},              /* unknown protocol */
        {"", "--protocol simseg --ensemble max"},  /* a rule without subclasses */
        {"", "--protocol simseg --dataset nope"},  /* unknown dataset */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *model = !strcmp(bad[i][0], "clip") ? simseg : !strcmp(bad[i][0], "simseg")
                                                                     ? clip : simseg;
        const char *ds = strstr(bad[i][1], "--dataset") ? "" : "--dataset voc21";
        snprintf(cmd, sizeof cmd, "%s segment --model %s --image %s %s %s --out %s 2>/dev/null",
                 hx_harness_bin(), model, image, ds, bad[i][1], out);
        ck_assert_msg(sh(cmd) == 2, "expected exit 2: %s", cmd);
    }
    snprintf(cmd, sizeof cmd, "%s segment --help >/dev/null", hx_harness_bin());
    ck_assert_int_eq(sh(cmd), 0);
}
END_TEST

Suite *suite_segment(void)
{
    Suite *s = suite_create("segment");
    TCase *tc = tcase_create("segment");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, simseg_matches_library);
    tcase_add_test(tc, dense_matches_library);
    tcase_add_test(tc, bad_usage);
    suite_add_tcase(s, tc);
    return s;
}
