/* The dense protocol end to end on the tiny CLIP model against scripts/dense_reference.py
 * (tests/data/dense): resize, windows, per-name ensemble scores, averaging, label-size
 * resize, PAMR, the decision rule; plus the decision rule alone on hand-made scores and the
 * presets of SPEC 2. */
#include "harness/error.h"
#include "harness/nn.h"
#include "harness/protocol.h"
#include "harness/safetensors.h"
#include "models/clip/clip.h"
#include "tests/test_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double num(const cJSON *c, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const char *str(const cJSON *c, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(c, key)->valuestring;
}

static cJSON *read_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    ck_assert_msg(j != NULL, "%s is not JSON", path);
    return j;
}

static int64_t *i64(const struct hx_safetensors *st, const char *name, size_t *n)
{
    const struct hx_st_tensor *t = hx_st_find(st, name);
    ck_assert_msg(t && t->dtype == HX_I64, "%s missing", name);
    int64_t *p = malloc(t->nbytes + 8);
    memcpy(p, t->data, t->nbytes);
    *n = (size_t)t->numel;
    return p;
}

START_TEST(matches_reference)
{
    struct hx_safetensors *bank_st, *ref;
    ck_assert_int_eq(hx_st_open(&bank_st, hx_testdata("dense/bank.safetensors")), 0);
    ck_assert_int_eq(hx_st_open(&ref, hx_testdata("dense/expected.safetensors")), 0);
    float *emb;
    size_t nn, nc;
    ck_assert_int_eq(hx_st_load_f32(bank_st, "emb", -1, NULL, &emb), 0);
    int64_t *nsub64 = i64(bank_st, "n_sub", &nn), *cls64 = i64(bank_st, "name_class", &nc);
    int N = (int)nn, nsub[16], name_class[16], C = 0;
    for (int k = 0; k < N; k++) {
        nsub[k] = (int)nsub64[k];
        name_class[k] = (int)cls64[k];
        C = name_class[k] + 1 > C ? name_class[k] + 1 : C;
    }
    struct hx_clip *m;
    ck_assert_int_eq(hx_clip_open(&m, hx_testdata("clip/tiny"), HX_CLIP_VISION), 0);
    int E = hx_clip_cfg(m)->projection_dim;
    struct hx_text_bank *bank;
    ck_assert_msg(hx_text_bank_create(&bank, emb, nsub, N, E) == 0, "%s", hx_errmsg());
    struct hx_image im;
    ck_assert_msg(hx_image_load(&im, hx_testdata("dense/image.png")) == 0, "%s", hx_errmsg());
    size_t npx = (size_t)im.w * im.h;
    cJSON *cases = read_json(hx_testdata("dense/cases.json"));
    int ncases = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        const char *name = str(c, "name");
        struct hx_clip_view view = {m, HX_VANILLA};
        ck_assert_int_eq(hx_variant_parse(str(c, "variant"), &view.variant), 0);
        struct hx_dense_encoder enc = {&view, E, hx_clip_cfg(m)->vision.patch_size,
                                       hx_clip_encode_view};
        struct hx_dense_params p = {0};
        p.short_side = (int)num(c, "short_side", 0);
        p.long_max = 2048;
        p.crop = (int)num(c, "crop", 0);
        p.stride = (int)num(c, "stride", 0);
        p.logit_scale = (float)num(c, "logit_scale", 40);
        p.prob_thd = (float)num(c, "prob_thd", 0);
        p.area_thd = (float)num(c, "area_thd", -1);
        p.argmax_cos = (int)num(c, "argmax_cos", 0);
        p.pamr.iters = (int)num(c, "pamr_iters", 0);
        const cJSON *dil = cJSON_GetObjectItemCaseSensitive(c, "pamr_dilations");
        p.pamr.n_dilations = 0;
        const cJSON *d;
        cJSON_ArrayForEach(d, dil) p.pamr.dilations[p.pamr.n_dilations++] = d->valueint;
        p.pamr.threads = 1;
        int imagenet = (int)num(c, "imagenet", 0);
        static const float in_mean[3] = {0.485f, 0.456f, 0.406f}, in_std[3] = {0.229f, 0.224f, 0.225f};
        memcpy(p.mean, imagenet ? in_mean : hx_clip_mean, sizeof p.mean);
        memcpy(p.std, imagenet ? in_std : hx_clip_std, sizeof p.std);
        struct hx_queries q = {bank, name_class, C, {HX_ENS_SUPER, (int)num(c, "k", 0),
                                                     (int)num(c, "include_super", 0)}};
        ck_assert_int_eq(hx_ens_rule_parse(str(c, "rule"), &q.point.rule), 0);

        uint8_t *pred = malloc(npx);
        float *probs = malloc(sizeof(float) * C * npx);
        ck_assert_msg(hx_dense_segment(&enc, &p, &q, &im, im.h, im.w, pred, probs) == 0,
                      "%s: %s", name, hx_errmsg());
        char key[64];
        snprintf(key, sizeof key, "%s.probs", name);
        float *want;
        ck_assert_int_eq(hx_st_load_f32(ref, key, 3, (int64_t[]){C, im.h, im.w}, &want), 0);
        /* probabilities through a softmax at logit scale 40-100 amplify 1e-6 cosine errors */
        hx_assert_close(key, probs, want, C * npx, 1e-3, 2e-4);
        snprintf(key, sizeof key, "%s.pred", name);
        size_t n;
        int64_t *wpred = i64(ref, key, &n);
        ck_assert_uint_eq(n, npx);
        int differ = 0, close_call = 0;
        for (size_t i = 0; i < npx; i++) {
            if (pred[i] == wpred[i])
                continue;
            /* allowed only where the reference's two best classes are within 1e-3 */
            float a = want[(size_t)pred[i] * npx + i], b = want[(size_t)wpred[i] * npx + i];
            if (fabsf(a - b) < 1e-3f)
                close_call++;
            else
                differ++;
        }
        ck_assert_msg(differ == 0, "%s: %d pixels differ from the reference (%d near-ties)",
                      name, differ, close_call);
        free(pred), free(probs), free(want), free(wpred);
        ncases++;
    }
    ck_assert_int_eq(ncases, 5);
    cJSON_Delete(cases);
    hx_image_free(&im);
    hx_text_bank_free(bank);
    hx_clip_free(m);
    free(emb), free(nsub64), free(cls64);
    hx_st_free(bank_st);
    hx_st_free(ref);
}
END_TEST

/* Decision rule on hand-made scores: 3 classes, class 0 with two names, 4 pixels. */
START_TEST(decision_rule_by_hand)
{
    float e0[5] = {1, 0, 0, 0, 0};
    int nsub[4] = {0, 0, 0, 0}, name_class[4] = {0, 0, 1, 2};
    float emb[4 * 5] = {0};
    for (int k = 0; k < 4; k++)
        emb[k * 5 + k] = 1;
    (void)e0;
    struct hx_text_bank *bank;
    ck_assert_int_eq(hx_text_bank_create(&bank, emb, nsub, 4, 5), 0);
    struct hx_queries q = {bank, name_class, 3, {HX_ENS_SUPER, 0, 0}};
    struct hx_dense_params p = {0};
    p.logit_scale = 1;
    p.area_thd = -1;
    /* scores [4 names, 4 pixels] */
    float s[16] = {
        0.0f, 2.0f, 0.0f, 0.0f,  /* name 0 (class 0) */
        1.0f, 0.0f, 0.0f, 0.0f,  /* name 1 (class 0, synonym) */
        0.0f, 0.0f, 3.0f, 0.0f,  /* name 2 (class 1) */
        0.0f, 0.0f, 0.0f, 0.1f,  /* name 3 (class 2) */
    };
    float work[16], probs[12];
    uint8_t pred[4];
    memcpy(work, s, sizeof s);
    ck_assert_int_eq(hx_dense_decide(&p, &q, work, 4, pred, probs), 0);
    /* pixel 0: softmax(0,1,0,0) -> class 0 takes max(p0,p1) = e/(e+3) */
    double e = exp(1.0);
    ck_assert_double_eq_tol(probs[0 * 4 + 0], e / (e + 3), 1e-6);
    ck_assert_double_eq_tol(probs[1 * 4 + 0], 1 / (e + 3), 1e-6);
    ck_assert_int_eq(pred[0], 0);
    ck_assert_int_eq(pred[2], 1);
    ck_assert_int_eq(pred[3], 2);
    /* pixel 3: probabilities e^0.1/(3+e^0.1) ~ 0.27 < prob_thd 0.3 -> class 0 */
    p.prob_thd = 0.3f;
    memcpy(work, s, sizeof s);
    ck_assert_int_eq(hx_dense_decide(&p, &q, work, 4, pred, NULL), 0);
    ck_assert_int_eq(pred[3], 0);
    ck_assert_int_eq(pred[2], 1);
    /* area_thd: class 2 wins 1 of 2 foreground pixels (0.5): at 0.5 it is removed (strict >) */
    p.prob_thd = 0;
    p.area_thd = 0.5f;
    memcpy(work, s, sizeof s);
    ck_assert_int_eq(hx_dense_decide(&p, &q, work, 4, pred, probs), 0);
    ck_assert_int_eq(pred[3], 0);
    ck_assert_int_eq(pred[2], 0); /* class 1 also holds exactly half: removed too */
    ck_assert_double_eq(probs[2 * 4 + 3], 0);
    /* MaskCLIP: argmax of the scores themselves */
    p.area_thd = -1;
    p.argmax_cos = 1;
    memcpy(work, s, sizeof s);
    ck_assert_int_eq(hx_dense_decide(&p, &q, work, 4, pred, probs), 0);
    ck_assert_int_eq(pred[1], 0);
    ck_assert_double_eq(probs[0 * 4 + 1], 2.0);
    ck_assert_int_eq(pred[3], 2);
    hx_text_bank_free(bank);
}
END_TEST

/* The decision against a plain per-pixel loop written from SPEC 2 (softmax over names with
 * hx_expf, a class's largest name probability, the area and probability thresholds, the
 * first of equal values): labels and probabilities bit for bit, for one name per class and
 * subclass names, both rules, a pixel count that leaves a partial group of sixteen, and
 * scores on a coarse grid so that equal values (ties) occur. */
static void naive_decide(const struct hx_dense_params *p, const int *name_class, int N, int C,
                         const float *s, int n, const float *keep, uint8_t *pred, float *probs,
                         double *area)
{
    for (int j = 0; j < n; j++) {
        float cls[8], z = 0, m = -INFINITY;
        for (int c = 0; c < C; c++)
            cls[c] = p->argmax_cos ? -INFINITY : 0;
        for (int k = 0; k < N; k++)
            m = fmaxf(m, s[k * n + j]);
        for (int k = 0; k < N; k++) {
            float v = s[k * n + j], *cc = &cls[name_class[k]];
            if (!p->argmax_cos) {
                v = hx_expf(p->logit_scale * v - p->logit_scale * m);
                z += v;
            }
            *cc = v > *cc ? v : *cc;
        }
        int b = 0;
        float bv = 0;
        for (int c = 0; c < C; c++) {
            float v = p->argmax_cos ? cls[c] * keep[c] : cls[c] * (1.0f / z) * keep[c];
            probs[c * n + j] = v;
            if (c == 0 || v > bv)
                b = c, bv = v;
        }
        area[b] += 1;
        pred[j] = !p->argmax_cos && bv < p->prob_thd ? 0 : (uint8_t)b;
    }
}

START_TEST(decision_matches_plain_loop)
{
    enum { N = 7, n = 1000 + 7 };
    int one[N] = {0, 1, 2, 3, 4, 5, 6}, subs[N] = {0, 1, 1, 2, 0, 3, 2}, nsub[N] = {0};
    float emb[N * 4] = {0}, *s = malloc(sizeof(float) * N * n), *probs = malloc(sizeof(float) * N * n);
    float *want_p = malloc(sizeof(float) * N * n);
    uint8_t pred[n], want[n];
    uint32_t r = 3;
    for (int i = 0; i < N * n; i++) {
        r = r * 1664525u + 1013904223u;
        s[i] = (float)((r >> 24) % 9) * 0.05f; /* nine levels: many ties */
    }
    for (int k = 0; k < N; k++)
        emb[k * 4 + k % 4] = 1;
    struct hx_text_bank *bank;
    ck_assert_int_eq(hx_text_bank_create(&bank, emb, nsub, N, 4), 0);
    for (int layout = 0; layout < 2; layout++)
        for (int rule = 0; rule < 4; rule++) {
            const int *nc = layout ? subs : one;
            int C = layout ? 4 : N;
            struct hx_queries q = {bank, nc, C, {HX_ENS_SUPER, 0, 0}};
            struct hx_dense_params p = {0};
            p.logit_scale = 40, p.area_thd = -1, p.argmax_cos = rule == 2;
            p.prob_thd = rule == 1 ? 0.4f : 0;
            p.area_thd = rule == 3 ? 0.2f : -1; /* removes the classes under 20% of foreground */
            float keep[N] = {1, 1, 1, 1, 1, 1, 1};
            double area[N] = {0}, fg = 0;
            naive_decide(&p, nc, N, C, s, n, keep, want, want_p, area);
            if (rule == 3) {
                int removed = 0;
                for (int c = 1; c < C; c++)
                    fg += area[c];
                for (int c = 1; c < C; c++)
                    keep[c] = area[c] > p.area_thd * fg, removed += !keep[c];
                ck_assert_int_gt(removed, 0);
                naive_decide(&p, nc, N, C, s, n, keep, want, want_p, area);
            }
            ck_assert_int_eq(hx_dense_decide(&p, &q, s, n, pred, probs), 0);
            for (int j = 0; j < n; j++)
                ck_assert_msg(pred[j] == want[j], "layout %d rule %d pixel %d: %d, plain loop %d",
                              layout, rule, j, pred[j], want[j]);
            ck_assert(memcmp(probs, want_p, sizeof(float) * C * n) == 0);
        }
    hx_text_bank_free(bank);
    free(s), free(probs), free(want_p);
}
END_TEST

/* The streamed path (no probabilities asked for) against the map-by-map path (probabilities
 * asked for), which matches_reference checks against PyTorch: the labels must be identical,
 * byte for byte, over window layouts with 1 to 4 covering windows (3 is not a power of two),
 * up- and downsampling, subclass names, both decision rules and an area threshold that
 * removes classes. */
static uint32_t lcg = 7;
static float urand(void)
{
    lcg = lcg * 1664525u + 1013904223u;
    return (float)((lcg >> 8) / 16777216.0 * 2 - 1);
}

START_TEST(streamed_matches_maps)
{
    enum { E = 24, C = 5 };
    int nsub[C] = {0, 2, 1, 0, 3}, M = 0, name_class[C];
    for (int c = 0; c < C; c++)
        M += 1 + nsub[c], name_class[c] = c;
    float *emb = malloc(sizeof(float) * M * E);
    for (int i = 0; i < M * E; i++)
        emb[i] = urand();
    struct hx_text_bank *bank;
    ck_assert_int_eq(hx_text_bank_create(&bank, emb, nsub, C, E), 0);
    /* view 40 x 52: a 2 x 3 grid of 24 x 24 windows, strides 16 and 14 (covers 1..4 times),
     * plus one 10 x 10 window inside (up to 5); grids of 3 x 3 and 2 x 2 tokens */
    struct hx_dense_feats f;
    int nw = 7;
    ck_assert_int_eq(hx_dense_feats_alloc(&f, nw, 9, E), 0);
    f.img_h = 40, f.img_w = 52, f.view_h = 40, f.view_w = 52;
    for (int w = 0; w < 6; w++) {
        int y = (w / 3) * 16, x = (w % 3) * 14;
        f.win[w] = (struct hx_window){y, y + 24, x, x + 24};
        f.grid[2 * w] = f.grid[2 * w + 1] = 3;
    }
    f.win[6] = (struct hx_window){12, 22, 20, 30};
    f.grid[12] = f.grid[13] = 2;
    for (size_t i = 0; i < (size_t)nw * 9 * E; i++)
        f.dense[i] = urand();
    for (size_t i = 0; i < (size_t)nw * E; i++)
        f.pooled[i] = urand();
    const int sizes[3][2] = {{40, 52}, {23, 71}, {61, 30}};
    const enum hx_ens_rule rules[3] = {HX_ENS_SUPER, HX_ENS_MAX, HX_ENS_MEAN};
    int dropped = 0;
    for (int si = 0; si < 3; si++)
        for (int ri = 0; ri < 3; ri++)
            for (int mode = 0; mode < 4; mode++) {
                int oh = sizes[si][0], ow = sizes[si][1];
                struct hx_queries q = {bank, name_class, C, {rules[ri], 3, 1}};
                struct hx_dense_params p = {0};
                p.logit_scale = 30, p.area_thd = -1;
                if (mode == 1)
                    p.prob_thd = 0.4f;
                if (mode == 2)
                    p.area_thd = 0.22f;
                if (mode == 3)
                    p.argmax_cos = 1;
                uint8_t *a = malloc(oh * ow), *b = malloc(oh * ow), *c = malloc(oh * ow);
                float *probs = malloc(sizeof(float) * C * oh * ow);
                ck_assert_int_eq(hx_dense_predict(&p, &q, &f, NULL, oh, ow, a, NULL), 0);
                ck_assert_int_eq(hx_dense_predict(&p, &q, &f, NULL, oh, ow, b, probs), 0);
                for (int i = 0; i < oh * ow; i++)
                    ck_assert_msg(a[i] == b[i], "size %dx%d rule %d mode %d pixel %d: streamed "
                                  "%d, maps %d", oh, ow, ri, mode, i, a[i], b[i]);
                if (mode == 2) { /* did the threshold remove a class that had won pixels? */
                    p.area_thd = -1;
                    ck_assert_int_eq(hx_dense_predict(&p, &q, &f, NULL, oh, ow, c, NULL), 0);
                    dropped += memcmp(a, c, oh * ow) != 0;
                }
                free(a), free(b), free(c), free(probs);
            }
    ck_assert_msg(dropped > 0, "the area threshold never changed a label: the second pass "
                  "went untested");
    hx_dense_feats_free(&f);
    hx_text_bank_free(bank);
    free(emb);
}
END_TEST

START_TEST(presets_follow_spec)
{
    struct hx_dense_preset r;
    ck_assert_int_eq(hx_dense_preset_get("sclip", "voc21", &r), 0);
    ck_assert_int_eq(r.params.short_side, 336);
    ck_assert_int_eq(r.params.crop, 224);
    ck_assert_int_eq(r.params.stride, 112);
    ck_assert_double_eq(r.params.logit_scale, 65);
    ck_assert_double_eq_tol(r.params.prob_thd, 0.1, 1e-7);
    ck_assert_double_eq_tol(r.params.area_thd, 0.1, 1e-7);
    ck_assert_str_eq(r.variant, "sclip");
    ck_assert_int_eq(hx_dense_preset_get("sclip", "coco_stuff171", &r), 0);
    ck_assert_int_eq(r.params.short_side, 448);
    ck_assert_double_eq(r.params.logit_scale, 40);
    ck_assert_double_eq(r.params.prob_thd, 0);
    ck_assert(r.params.area_thd < 0);
    ck_assert_int_eq(hx_dense_preset_get("clearclip", "context60", &r), 0);
    ck_assert_double_eq_tol(r.params.prob_thd, 0.15, 1e-7);
    ck_assert_int_eq(r.literal_background, 1);
    ck_assert_int_eq(hx_dense_preset_get("clearclip", "cityscapes", &r), 0);
    ck_assert_int_eq(r.params.crop, 224);
    ck_assert_int_eq(hx_dense_preset_get("naclip", "voc21", &r), 0);
    ck_assert_int_eq(r.params.crop, 0);
    ck_assert_int_eq(r.params.pamr.iters, 0);
    ck_assert_int_eq(hx_dense_preset_get("naclip-pamr", "cityscapes", &r), 0);
    ck_assert_int_eq(r.params.short_side, 560);
    ck_assert_int_eq(r.params.pamr.iters, 10);
    ck_assert_int_eq(r.params.pamr.dilations[1], 16);
    ck_assert_int_eq(hx_dense_preset_get("maskclip", "ade150", &r), 0);
    ck_assert_int_eq(r.params.argmax_cos, 1);
    ck_assert_int_eq(r.templates, 85);
    ck_assert_int_ne(hx_dense_preset_get("sclip", "imagenet", &r), 0);
    ck_assert_int_ne(hx_dense_preset_get("segformer", "voc21", &r), 0);
}
END_TEST

Suite *suite_protocol(void)
{
    Suite *s = suite_create("protocol");
    TCase *tc = tcase_create("dense");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, matches_reference);
    tcase_add_test(tc, decision_rule_by_hand);
    tcase_add_test(tc, decision_matches_plain_loop);
    tcase_add_test(tc, streamed_matches_maps);
    tcase_add_test(tc, presets_follow_spec);
    suite_add_tcase(s, tc);
    return s;
}
