/* Experiment configs: sweep expansion, presets and overrides, errors naming key paths. */
#include "harness/error.h"
#include "harness/xpconfig.h"
#include "tests/test_util.h"

#include <string.h>

#define BASE "\"model\": \"m\", \"dataset\": {\"name\": \"voc21\", \"root\": \"r\"}"

START_TEST(sweeps_the_cartesian_product_in_order)
{
    struct hx_xp *xp;
    const char *j = "{" BASE ", \"subclasses\": \"s.json\", \"k\": [0, 1, 3],"
                    " \"ensemble\": [\"max\", \"embed-softmax\"],"
                    " \"protocol\": {\"prob_thd\": 0.25, \"pamr_dilations\": [[1, 2], [8, 16]]}}";
    ck_assert_msg(hx_xp_parse(&xp, j, "t") == 0, "%s", hx_errmsg());
    ck_assert_int_eq(xp->naxes, 3);
    ck_assert_str_eq(xp->axes[0].path, "k");
    ck_assert_str_eq(xp->axes[2].path, "protocol.pamr_dilations");
    ck_assert_int_eq(xp->npoints, 12);
    /* the last axis varies fastest */
    ck_assert_str_eq(xp->points[0].label, "k=0 ensemble=max pamr_dilations=[1,2]");
    ck_assert_str_eq(xp->points[1].label, "k=0 ensemble=max pamr_dilations=[8,16]");
    ck_assert_str_eq(xp->points[11].label, "k=3 ensemble=embed-softmax pamr_dilations=[8,16]");
    ck_assert_int_eq(xp->points[11].ens.k, 3);
    ck_assert_int_eq(xp->points[11].ens.rule, HX_ENS_EMBED_SOFTMAX);
    ck_assert_int_eq(xp->points[11].params.pamr.dilations[1], 16);
    ck_assert_str_eq(xp->points[6].values[1], "embed-softmax"); /* k=1: points 4..7 */
    ck_assert_double_eq_tol(xp->points[3].params.prob_thd, 0.25, 1e-7);
    /* nothing that changes image features is swept: one feature group */
    for (int i = 1; i < xp->npoints; i++)
        ck_assert_str_eq(xp->points[i].feature_key, xp->points[0].feature_key);
    ck_assert_str_eq(xp->name, "t");
    ck_assert_str_eq(xp->points[0].output, "results/t");
    hx_xp_free(xp);
}
END_TEST

START_TEST(presets_then_overrides)
{
    struct hx_xp *xp;
    const char *j = "{" BASE ", \"method\": [\"sclip\", \"naclip-pamr\"],"
                    " \"protocol\": {\"logit_scale\": 30}}";
    ck_assert_msg(hx_xp_parse(&xp, j, "p") == 0, "%s", hx_errmsg());
    ck_assert_int_eq(xp->npoints, 2);
    const struct hx_xp_point *s = &xp->points[0], *n = &xp->points[1];
    ck_assert_str_eq(s->variant, "sclip");
    ck_assert_int_eq(s->params.crop, 224);
    ck_assert_double_eq(s->params.logit_scale, 30); /* overridden */
    ck_assert_double_eq_tol(s->params.area_thd, 0.1, 1e-7);
    ck_assert_str_eq(n->variant, "naclip");
    ck_assert_int_eq(n->params.crop, 0); /* VOC: whole image */
    ck_assert_int_eq(n->params.pamr.iters, 10);
    ck_assert_str_ne(s->feature_key, n->feature_key);
    ck_assert_str_eq(s->templates, "imagenet80");
    hx_xp_free(xp);
}
END_TEST

/* dataset.split: "val" unless given, validated against the dataset's splits, and part of
 * what separates feature groups (different images) */
START_TEST(dataset_split)
{
    struct hx_xp *xp;
    const char *j = "{\"model\": \"m\", \"dataset\": {\"name\": \"voc21\", \"root\": \"r\","
                    " \"split\": [\"val\", \"train\"]}}";
    ck_assert_msg(hx_xp_parse(&xp, j, "s") == 0, "%s", hx_errmsg());
    ck_assert_int_eq(xp->npoints, 2);
    ck_assert_str_eq(xp->points[0].split, "val");
    ck_assert_str_eq(xp->points[1].split, "train");
    ck_assert_str_ne(xp->points[0].feature_key, xp->points[1].feature_key);
    hx_xp_free(xp);
    /* a swept cache (or its float16 switch) also separates the groups */
    ck_assert_msg(hx_xp_parse(&xp, "{" BASE ", \"cache\": [\"a\", \"b\"], \"cache_f16\": [false, "
                  "true]}", "s") == 0, "%s", hx_errmsg());
    ck_assert_int_eq(xp->npoints, 4);
    for (int i = 0; i < 4; i++)
        for (int k = i + 1; k < 4; k++)
            ck_assert_str_ne(xp->points[i].feature_key, xp->points[k].feature_key);
    hx_xp_free(xp);
    ck_assert_msg(hx_xp_parse(&xp, "{" BASE "}", "s") == 0, "%s", hx_errmsg());
    ck_assert_str_eq(xp->points[0].split, "val");
    hx_xp_free(xp);
}
END_TEST

static void expect_error(const char *json, const char *fragment)
{
    struct hx_xp *xp = NULL;
    ck_assert_msg(hx_xp_parse(&xp, json, "e") != 0, "accepted: %s", json);
    ck_assert_ptr_null(xp);
    ck_assert_msg(strstr(hx_errmsg(), fragment) != NULL, "message '%s' lacks '%s'", hx_errmsg(),
                  fragment);
}

START_TEST(errors_name_the_key_path)
{
    expect_error("{" BASE ", \"subclasses\": \"s\", \"ensemble\": [\"max\", \"mean\", \"maxx\"]}",
                 "ensemble[2]");
    expect_error("{" BASE ", \"k\": [1, \"three\"]}", "k[1]: expected an integer");
    expect_error("{\"model\": \"m\", \"dataset\": {\"name\": \"voc21\", \"root\": \"r\", "
                 "\"lmit\": 3}}", "unknown key 'dataset.lmit'");
    expect_error("{" BASE ", \"protocol\": {\"prob_thd\": 1.5}}", "protocol.prob_thd");
    expect_error("{" BASE ", \"protocol\": {\"crop\": 100, \"stride\": 200}}", "protocol.stride");
    expect_error("{" BASE ", \"ensemble\": \"max\"}", "needs a subclass list");
    expect_error("{" BASE ", \"variant\": \"sclip2\"}", "variant");
    expect_error("{" BASE ", \"method\": \"segformer\"}", "method");
    expect_error("{\"model\": \"m\"}", "dataset.name");
    expect_error("{" BASE ", \"k\": []}", "empty list");
    expect_error("{" BASE ", \"k\": 1,\n \"k\": 2}", "twice");
    expect_error("{" BASE ",\n \"k\": }", "line 2");
    expect_error("[1, 2]", "JSON object");
    expect_error("{\"model\": \"m\", \"dataset\": {\"name\": \"voc21\", \"root\": \"r\", "
                 "\"split\": \"tset\"}}", "dataset.split: dataset voc21 has no split 'tset' "
                 "(splits: val, train, trainval)");
    expect_error("{\"model\": \"m\", \"dataset\": {\"name\": \"voc21\", \"root\": \"r\", "
                 "\"split\": 1}}", "dataset.split");
    expect_error("{" BASE ", \"subclasses\": {\"llm\": {\"base_url\": \"http://h/v1\", "
                 "\"model\": \"m\", \"bogus\": 1}}}",
                 "subclasses.llm: unknown LLM request field \"bogus\"");
}
END_TEST

Suite *suite_xpconfig(void)
{
    Suite *s = suite_create("xpconfig");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, sweeps_the_cartesian_product_in_order);
    tcase_add_test(tc, presets_then_overrides);
    tcase_add_test(tc, errors_name_the_key_path);
    tcase_add_test(tc, dataset_split);
    suite_add_tcase(s, tc);
    return s;
}
