/* The experiment configs under experiments/ stay loadable (hx_xp_load) and say what the
 * paper's tables need; SimSeg's class-name lists equal SimSeg's own files and the keys of the
 * released subclass lists (fixtures, read at run time); scripts/fetch_subclass_lists.sh
 * --print names the files the configs read, with checksums that match the released files;
 * and the SimSeg settings of a run config are checked. */
#include "harness/error.h"
#include "harness/simseg_protocol.h"
#include "harness/subclasses.h"
#include "harness/xpconfig.h"
#include "datasets/datasets.h"
#include "tests/test_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const sets[3][2] = {
    {"voc21", "pascal_voc"}, {"context60", "pascal_context"}, {"coco_object", "coco_stuff"}};

static int ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && !strcmp(s + a - b, tail);
}

START_TEST(configs_load)
{
    DIR *d = opendir("experiments");
    ck_assert_msg(d != NULL, "no experiments/ folder (run the tests from the repository root)");
    struct dirent *e;
    int n = 0, tables = 0;
    while ((e = readdir(d))) {
        if (!ends_with(e->d_name, ".json"))
            continue;
        char path[600];
        snprintf(path, sizeof path, "experiments/%s", e->d_name);
        struct hx_xp *xp;
        ck_assert_msg(hx_xp_load(&xp, path) == 0, "%s", hx_errmsg());
        ck_assert_int_gt(xp->npoints, 0);
        n++;
        for (int i = 0; i < xp->npoints; i++) {
            const struct hx_xp_point *p = &xp->points[i];
            if (!p->simseg)
                continue;
            /* SimSeg's own class names and K for the dataset */
            const char *cn = hx_ssp_classnames(p->dataset);
            ck_assert_msg(cn && !strcmp(p->classnames, cn), "%s: class names %s", path,
                          p->classnames);
            ck_assert_int_eq(p->ssp.top_k, !strcmp(p->dataset, "context60") ? 30 : 10);
            for (int s = 0; s < 3; s++)
                if (!strcmp(p->dataset, sets[s][0])) {
                    char want[96];
                    snprintf(want, sizeof want, "subclasses/paper_top5_%s.json", sets[s][1]);
                    ck_assert_str_eq(p->subclasses, want);
                }
        }
        if (!strncmp(e->d_name, "table1_", 7)) {
            /* two models x (superclass only, top-5 embed-softmax) */
            tables++;
            ck_assert_int_eq(xp->npoints, 4);
            int softmax = 0, super = 0;
            for (int i = 0; i < 4; i++) {
                const struct hx_xp_point *p = &xp->points[i];
                ck_assert(p->simseg);
                ck_assert_int_eq(p->ens.k, 5);
                softmax += p->ens.rule == HX_ENS_EMBED_SOFTMAX;
                super += p->ens.rule == HX_ENS_SUPER;
            }
            ck_assert_int_eq(softmax, 2);
            ck_assert_int_eq(super, 2);
            ck_assert(strcmp(xp->points[0].model, xp->points[3].model));
        }
        hx_xp_free(xp);
    }
    closedir(d);
    ck_assert_int_ge(n, 9);
    ck_assert_int_eq(tables, 3);
}
END_TEST

START_TEST(class_lists_match_simseg)
{
    for (int s = 0; s < 3; s++) {
        char rel[128];
        snprintf(rel, sizeof rel, "subclasses/simseg_classes_%s.txt", sets[s][1]);
        const char *fx = hx_fixture(rel);
        if (!fx)
            HX_SKIP("SimSeg's class-name files absent from the fixtures");
        /* the first name of every line is SimSeg's name, in SimSeg's order (synonyms after it
         * serve the other protocols; SimSeg's path uses the first name only) */
        struct hx_classnames ours, theirs;
        ck_assert_msg(hx_classnames_read(hx_ssp_classnames(sets[s][0]), &ours) == 0, "%s",
                      hx_errmsg());
        ck_assert_msg(hx_classnames_read(fx, &theirs) == 0, "%s", hx_errmsg());
        ck_assert_int_eq(ours.n, theirs.n);
        for (int c = 0; c < ours.n; c++)
            ck_assert_msg(!strcmp(ours.syn[c][0], theirs.syn[c][0]), "%s line %d: '%s', SimSeg "
                          "has '%s'", hx_ssp_classnames(sets[s][0]), c + 1, ours.syn[c][0],
                          theirs.syn[c][0]);
        hx_classnames_free(&ours);
        hx_classnames_free(&theirs);
        /* and the registry accepts the list for the dataset */
        struct hx_classnames cn;
        ck_assert_msg(hx_dataset_classnames(hx_dataset_find(sets[s][0]),
                                            hx_ssp_classnames(sets[s][0]), &cn) == 0, "%s",
                      hx_errmsg());
        /* the released subclass lists are keyed by exactly these first names, in this order */
        snprintf(rel, sizeof rel, "subclasses/paper_top5_%s.json", sets[s][1]);
        if ((fx = hx_fixture(rel))) {
            struct hx_subclasses sc;
            ck_assert_msg(hx_subclasses_read(fx, 0, &sc) == 0, "%s", hx_errmsg());
            ck_assert_int_eq(sc.n, cn.n);
            for (int c = 0; c < cn.n; c++)
                ck_assert_str_eq(sc.cls[c], cn.syn[c][0]);
            hx_subclasses_free(&sc);
        }
        hx_classnames_free(&cn);
    }
}
END_TEST

START_TEST(fetch_script_print)
{
    FILE *p = popen("scripts/fetch_subclass_lists.sh --print", "r");
    ck_assert(p != NULL);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, p)) {
        char url[600], dest[300], sum[100];
        ck_assert_int_eq(sscanf(line, "%599s %299s %99s", url, dest, sum), 3);
        ck_assert_msg(n < 3, "more than three files: %s", line);
        char want[200];
        snprintf(want, sizeof want, "/label_sets/%s/top5.json", sets[n][1]);
        ck_assert_msg(ends_with(url, want), "%s", url);
        ck_assert(!strncmp(url, "https://raw.githubusercontent.com/lmsdss/", 41));
        snprintf(want, sizeof want, "subclasses/paper_top5_%s.json", sets[n][1]);
        ck_assert_str_eq(dest, want);
        ck_assert_int_eq(strlen(sum), 64);
        /* the pinned checksum is that of the released file */
        char rel[128];
        snprintf(rel, sizeof rel, "subclasses/paper_top5_%s.json", sets[n][1]);
        const char *fx = hx_fixture(rel);
        if (fx) {
            char cmd[800], got[100] = "";
            snprintf(cmd, sizeof cmd, "sha256sum '%s'", fx);
            FILE *h = popen(cmd, "r");
            ck_assert(h && fscanf(h, "%99s", got) == 1);
            pclose(h);
            ck_assert_str_eq(got, sum);
        }
        n++;
    }
    ck_assert_int_eq(pclose(p), 0);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(system("scripts/fetch_subclass_lists.sh --nope 2>/dev/null") >> 8, 2);
}
END_TEST

START_TEST(simseg_config_errors)
{
    struct hx_xp *xp;
    const char *head = "{\"backend\": \"simseg\", \"model\": \"m\", "
                       "\"dataset\": {\"name\": \"context60\", \"root\": \"r\"}";
    char js[1024];
    snprintf(js, sizeof js, "%s}", head);
    ck_assert_msg(hx_xp_parse(&xp, js, "t") == 0, "%s", hx_errmsg());
    ck_assert_int_eq(xp->points[0].ssp.top_k, 30);
    ck_assert_int_eq(xp->points[0].ssp.close_size, 7);
    ck_assert_str_eq(xp->points[0].method, "simseg");
    hx_xp_free(xp);
    snprintf(js, sizeof js, "%s, \"protocol\": {\"top_k\": [5, 20], \"crf_iters\": 1}}", head);
    ck_assert_msg(hx_xp_parse(&xp, js, "t") == 0, "%s", hx_errmsg());
    ck_assert_int_eq(xp->npoints, 2);
    ck_assert_int_eq(xp->points[1].ssp.top_k, 20);
    ck_assert_int_eq(xp->points[1].ssp.crf_iters, 1);
    /* the view key is the same for every SimSeg point: one feature group */
    ck_assert_str_eq(xp->points[0].feature_key, xp->points[1].feature_key);
    hx_xp_free(xp);
    const char *bad[] = {
        "%s, \"protocol\": {\"crop\": 224}}",            /* a dense setting */
        "%s, \"method\": \"sclip\"}",                    /* a dense preset */
        "%s, \"variant\": \"sclip\"}",                   /* no dense variants */
        "%s, \"subclasses\": \"s.json\", \"ensemble\": \"vote\"}", /* no map */
        "%s, \"protocol\": {\"close_size\": 6}}",        /* even kernel */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(js, sizeof js, bad[i], head);
        ck_assert_msg(hx_xp_parse(&xp, js, "t") != 0, "accepted: %s", js);
    }
    ck_assert_int_ne(hx_xp_parse(&xp,
                                 "{\"model\": \"m\", \"dataset\": {\"name\": \"voc21\", "
                                 "\"root\": \"r\"}, \"protocol\": {\"top_k\": 3}}",
                                 "t"),
                     0);
    ck_assert_msg(strstr(hx_errmsg(), "protocol.top_k"), "%s", hx_errmsg());
}
END_TEST

Suite *suite_experiments(void)
{
    Suite *s = suite_create("experiments");
    TCase *tc = tcase_create("experiments");
    tcase_add_test(tc, configs_load);
    tcase_add_test(tc, class_lists_match_simseg);
    tcase_add_test(tc, fetch_script_print);
    tcase_add_test(tc, simseg_config_errors);
    suite_add_tcase(s, tc);
    return s;
}
