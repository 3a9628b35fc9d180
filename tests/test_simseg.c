/* SimSeg against the plain-PyTorch reference in tests/data/simseg (written by
 * scripts/simseg_reference.py through scripts/convert_simseg.py): preprocessing, every ViT and
 * BERT stage, LoDA pooling, dense features, template-averaged class embeddings and per-class
 * maps, for a pos_embed stored at 18x18 (325 rows) and at 14x14 (197 rows, resized at load);
 * the CRF image's uint8 round trip; and the CLI commands end to end. */
#include "harness/error.h"
#include "harness/h5io.h"
#include "harness/image.h"
#include "harness/safetensors.h"
#include "models/simseg/simseg.h"
#include "models/simseg/wordpiece.h"
#include "tests/test_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const models[] = {"simseg/tiny325", "simseg/tiny197"};

/* 1e-4 relative, measured against the tensor's largest magnitude near zero */
static void check(const char *what, const float *got, const float *want, size_t n)
{
    double scale = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    hx_assert_close(what, got, want, n, 1e-4, 1e-4 * scale);
}

static float *expect(const struct hx_safetensors *st, const char *name, size_t *n)
{
    float *p = NULL;
    const struct hx_st_tensor *t = hx_st_find(st, name);
    ck_assert_msg(t != NULL, "reference tensor %s missing", name);
    ck_assert_msg(hx_st_load_f32(st, name, -1, NULL, &p) == 0, "%s", hx_errmsg());
    if (n)
        *n = (size_t)t->numel;
    return p;
}

static int32_t *expect_i32(const struct hx_safetensors *st, const char *name, size_t *n)
{
    const struct hx_st_tensor *t = hx_st_find(st, name);
    ck_assert_msg(t && t->dtype == HX_I64, "reference tensor %s missing or not I64", name);
    int32_t *p = malloc(sizeof(int32_t) * (size_t)t->numel);
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t v;
        memcpy(&v, (const char *)t->data + 8 * i, 8);
        p[i] = (int32_t)v;
    }
    *n = (size_t)t->numel;
    return p;
}

struct cases {
    cJSON *root;
    const char **texts, **classes, **templates;
    int nt, nc, ntpl;
};

static const char **strings(cJSON *arr, int *n)
{
    *n = cJSON_GetArraySize(arr);
    const char **s = calloc((size_t)*n + 1, sizeof *s);
    for (int i = 0; i < *n; i++)
        s[i] = cJSON_GetArrayItem(arr, i)->valuestring;
    return s;
}

static void read_cases(struct cases *c)
{
    const char *path = hx_testdata("simseg/tiny_cases.json");
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s missing", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    c->root = cJSON_Parse(buf);
    ck_assert_ptr_nonnull(c->root);
    c->texts = strings(cJSON_GetObjectItem(c->root, "texts"), &c->nt);
    c->classes = strings(cJSON_GetObjectItem(c->root, "classes"), &c->nc);
    c->templates = strings(cJSON_GetObjectItem(c->root, "templates"), &c->ntpl);
}

static void free_cases(struct cases *c)
{
    free(c->texts);
    free(c->classes);
    free(c->templates);
    cJSON_Delete(c->root);
}

static void open_model(const char *name, struct hx_simseg **m, struct hx_safetensors **ref)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", hx_testdata(name));
    ck_assert_msg(hx_simseg_open(m, dir, HX_SIMSEG_VISION | HX_SIMSEG_TEXT) == 0, "%s",
                  hx_errmsg());
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    ck_assert_msg(hx_st_open(ref, path) == 0, "%s", hx_errmsg());
}

static void vision(const char *model)
{
    struct hx_simseg *m;
    struct hx_safetensors *ref;
    open_model(model, &m, &ref);
    const struct hx_simseg_config *cfg = hx_simseg_cfg(m);
    int S = cfg->image_size, D = cfg->vit_hidden, E = cfg->projection_dim, g = hx_simseg_grid(m);
    int T = g * g + 1;
    ck_assert_int_eq(S, 288);
    ck_assert_int_eq(g, 18);
    ck_assert_int_eq(cfg->pos_tokens, strstr(model, "197") ? 197 : 325);
    char name[64];
    size_t n;

    /* preprocessing: PIL bilinear to 288x288, ImageNet mean/std */
    struct hx_image im;
    ck_assert_msg(hx_image_load(&im, hx_testdata("simseg/image.png")) == 0, "%s", hx_errmsg());
    float *img = malloc(sizeof(float) * 3 * S * S);
    ck_assert_int_eq(hx_simseg_preprocess(&im, S, img, NULL), 0);
    float *want = expect(ref, "image.pixel_sample", &n), *sample = malloc(sizeof(float) * n);
    int ns = (S + 6) / 7;
    ck_assert_uint_eq(n, 3 * ns * ns);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < ns; y++)
            for (int x = 0; x < ns; x++)
                sample[(c * ns + y) * ns + x] = img[((size_t)c * S + 7 * y) * S + 7 * x];
    hx_assert_close("image.pixel_sample", sample, want, n, 1e-6, 1e-6);
    free(want), free(sample);

    want = expect(ref, "vit.pos_embed", &n);
    ck_assert_uint_eq(n, (size_t)T * D);
    check("vit.pos_embed", hx_simseg_pos_embed(m), want, n);
    free(want);

    float *x = malloc(sizeof(float) * T * D);
    hx_simseg_vit_embed(m, img, x);
    want = expect(ref, "vit.embed", &n);
    check("vit.embed", x, want, n);
    free(want);
    for (int i = 0; i < cfg->vit_layers; i++) {
        hx_simseg_vit_block(m, i, x);
        snprintf(name, sizeof name, "vit.block%d", i);
        want = expect(ref, name, &n);
        check(name, x, want, n);
        free(want);
    }
    hx_simseg_vit_norm(m, x);
    want = expect(ref, "vit.norm", &n);
    check("vit.norm", x, want, n);
    free(want);

    float *P = malloc(sizeof(float) * (T - 1) * E), *pooled = malloc(sizeof(float) * E);
    hx_simseg_image_project(m, x + D, T - 1, P);
    want = expect(ref, "image.patches", &n);
    check("image.patches", P, want, n);
    free(want);
    hx_simseg_image_pool(m, P, T - 1, pooled);
    want = expect(ref, "image.pooled", &n);
    check("image.pooled", pooled, want, n);
    free(want);

    /* the whole path in one call gives the same */
    float *P2 = malloc(sizeof(float) * (T - 1) * E), *pooled2 = malloc(sizeof(float) * E);
    ck_assert_int_eq(hx_simseg_encode_image(m, img, pooled2, P2), 0);
    ck_assert_mem_eq(P2, P, sizeof(float) * (T - 1) * E);
    ck_assert_mem_eq(pooled2, pooled, sizeof(float) * E);

    hx_simseg_dense_features(P, T - 1, E, P2);
    want = expect(ref, "image.dense", &n);
    check("image.dense", P2, want, n);
    free(want);

    /* per-class maps from our own class embeddings */
    struct cases cs;
    read_cases(&cs);
    float *cls = malloc(sizeof(float) * cs.nc * E);
    ck_assert_msg(hx_simseg_class_embeddings(m, cs.classes, cs.nc, cs.templates, cs.ntpl, cls) == 0,
                  "%s", hx_errmsg());
    want = expect(ref, "class.embeddings", &n);
    ck_assert_uint_eq(n, (size_t)cs.nc * E);
    check("class.embeddings", cls, want, n);
    free(want);
    float *maps = malloc(sizeof(float) * cs.nc * (T - 1));
    for (int c = 0; c < cs.nc; c++)
        for (int p = 0; p < T - 1; p++) {
            float s = 0;
            for (int e = 0; e < E; e++)
                s += P2[(size_t)p * E + e] * cls[(size_t)c * E + e];
            maps[(size_t)c * (T - 1) + p] = s;
        }
    want = expect(ref, "class.maps", &n);
    check("class.maps", maps, want, n);
    free(want);

    free_cases(&cs);
    free(maps), free(cls), free(P), free(P2), free(pooled), free(pooled2), free(x), free(img);
    hx_image_free(&im);
    hx_st_free(ref);
    hx_simseg_free(m);
}

START_TEST(vision_325_matches_reference) { vision(models[0]); }
END_TEST
START_TEST(vision_197_matches_reference) { vision(models[1]); }
END_TEST

static void text(const char *model)
{
    struct hx_simseg *m;
    struct hx_safetensors *ref;
    open_model(model, &m, &ref);
    const struct hx_simseg_config *cfg = hx_simseg_cfg(m);
    int L = cfg->max_length, Dt = cfg->bert_hidden, E = cfg->projection_dim;
    ck_assert_int_eq(L, 25);
    struct cases cs;
    read_cases(&cs);
    size_t n, nm;
    int32_t *wids = expect_i32(ref, "text.ids", &n), *wmask = expect_i32(ref, "text.mask", &nm);
    ck_assert_uint_eq(n, (size_t)cs.nt * L);
    int32_t *ids = malloc(sizeof(int32_t) * n), *mask = malloc(sizeof(int32_t) * n);
    ck_assert_int_eq(hx_simseg_tokenize(m, cs.texts, cs.nt, ids, mask), 0);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(ids[i] == wids[i], "text %zu token %zu: %d, expected %d", i / L, i % L,
                      ids[i], wids[i]);
        ck_assert_int_eq(mask[i], wmask[i]);
    }
    float *x = malloc(sizeof(float) * cs.nt * L * Dt), *pooled = malloc(sizeof(float) * cs.nt * E);
    char name[64];
    for (int t = 0; t < cs.nt; t++)
        ck_assert_int_eq(hx_simseg_bert_embed(m, ids + t * L, x + (size_t)t * L * Dt), 0);
    float *want = expect(ref, "text.embed", &n);
    check("text.embed", x, want, n);
    free(want);
    for (int i = 0; i < cfg->bert_layers; i++) {
        for (int t = 0; t < cs.nt; t++)
            hx_simseg_bert_layer(m, i, mask + t * L, x + (size_t)t * L * Dt);
        snprintf(name, sizeof name, "text.layer%d", i);
        want = expect(ref, name, &n);
        check(name, x, want, n);
        free(want);
    }
    for (int t = 0; t < cs.nt; t++)
        hx_simseg_text_pool(m, x + (size_t)t * L * Dt, mask + t * L, pooled + (size_t)t * E);
    want = expect(ref, "text.pooled", &n);
    check("text.pooled", pooled, want, n);
    ck_assert_int_eq(hx_simseg_encode_text(m, cs.texts, cs.nt, pooled), 0);
    check("encode_text", pooled, want, n);
    /* more texts than one stacked batch: every text as when encoded alone */
    int nrep = 75;
    const char **many = malloc(sizeof *many * nrep);
    for (int i = 0; i < nrep; i++)
        many[i] = cs.texts[(i * 5) % cs.nt];
    float *big = malloc(sizeof(float) * nrep * E);
    ck_assert_int_eq(hx_simseg_encode_text(m, many, nrep, big), 0);
    for (int i = 0; i < nrep; i++)
        check("encode_text in batches", big + (size_t)i * E, want + (size_t)((i * 5) % cs.nt) * E,
              E);
    free(big);
    free(many);
    /* a mask with a hole (not [CLS]..[SEP] then padding) takes the full-length path */
    mask[1] = 0;
    float one[2][512];
    ck_assert_int_le(E, 512);
    ck_assert_int_eq(hx_simseg_encode_tokens(m, ids, mask, 1, one[0]), 0);
    ck_assert_int_eq(hx_simseg_bert_embed(m, ids, x), 0);
    for (int i = 0; i < cfg->bert_layers; i++)
        hx_simseg_bert_layer(m, i, mask, x);
    hx_simseg_text_pool(m, x, mask, one[1]);
    ck_assert_mem_eq(one[0], one[1], sizeof(float) * E);
    double diff = 0;
    for (int i = 0; i < E; i++)
        diff = fmax(diff, fabs(one[0][i] - want[i]));
    ck_assert_msg(diff > 1e-3, "masking token 1 out left the embedding unchanged");
    free(want);
    /* an id past the embedding table is refused */
    ids[3] = cfg->vocab_size;
    ck_assert_int_eq(hx_simseg_encode_tokens(m, ids, mask, 1, pooled), HX_EINVAL);
    free_cases(&cs);
    free(ids), free(mask), free(wids), free(wmask), free(x), free(pooled);
    hx_st_free(ref);
    hx_simseg_free(m);
}

START_TEST(text_325_matches_reference) { text(models[0]); }
END_TEST
START_TEST(text_197_matches_reference) { text(models[1]); }
END_TEST

START_TEST(crf_image_round_trip)
{
    struct hx_safetensors *ref;
    ck_assert_int_eq(hx_st_open(&ref, hx_testdata("simseg/tiny325/expected.safetensors")), 0);
    uint8_t lut[3][256];
    hx_simseg_crf_lut(lut);
    size_t n;
    float *want = expect(ref, "crf.lut", &n);
    ck_assert_uint_eq(n, 768);
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++)
            ck_assert_msg(lut[c][v] == want[c * 256 + v], "channel %d value %d: %d, expected %g",
                          c, v, lut[c][v], want[c * 256 + v]);
    /* SPEC-simseg 2.6: in R, 1-3, 5-59, 61, 64, 65 and 242 drop by one, the rest are kept */
    for (int v = 0; v < 256; v++) {
        int drop = (v >= 1 && v <= 3) || (v >= 5 && v <= 59) || v == 61 || v == 64 || v == 65 ||
                   v == 242;
        ck_assert_msg(lut[0][v] == v - drop, "R %d -> %d", v, lut[0][v]);
    }
    uint8_t px[6] = {2, 2, 2, 242, 100, 200}, out[6];
    hx_simseg_crf_image(px, 2, out);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(out[i], lut[i % 3][px[i]]);
    free(want);
    hx_st_free(ref);
}
END_TEST

START_TEST(dense_features_and_templates)
{
    /* F.normalize clamps the norm at 1e-12: a zero row stays zero */
    float P[6] = {3, 4, 0, 0, 0, 0}, out[6];
    hx_simseg_dense_features(P, 2, 3, out);
    ck_assert_float_eq_tol(out[0], 0.6f, 1e-7f);
    ck_assert_float_eq_tol(out[1], 0.8f, 1e-7f);
    ck_assert_float_eq(out[3], 0.0f);
    ck_assert_str_eq(hx_simseg_templates[0], "a bad photo of a {}.");
    ck_assert_str_eq(hx_simseg_templates[79], "a tattoo of the {}.");
    for (int i = 0; i < 80; i++)
        ck_assert_ptr_nonnull(strstr(hx_simseg_templates[i], "{}"));
}
END_TEST

START_TEST(rejects_bad_models)
{
    struct hx_simseg *m = NULL;
    ck_assert_int_ne(hx_simseg_open(&m, "/nonexistent/model", HX_SIMSEG_VISION), 0);
    ck_assert_ptr_null(m);
    /* a CLIP directory is not a SimSeg model */
    ck_assert_int_eq(hx_simseg_open(&m, hx_testdata("clip/tiny"), HX_SIMSEG_VISION), HX_EFORMAT);
    ck_assert_msg(strstr(hx_errmsg(), "not a SimSeg model") != NULL, "%s", hx_errmsg());
    /* the tiny model's config with its weights lacking: the error names the tensor */
    const char *dir = hx_tmpdir();
    char path[600], cmd[1400];
    snprintf(cmd, sizeof cmd, "cp %s/config.json %s/", hx_testdata("simseg/tiny325"), dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    float cls[32] = {0};
    struct hx_st_write w = {"image_encoder.model.model.cls_token", 3, {1, 1, 32}, cls};
    ck_assert_int_eq(hx_st_write_f32(path, &w, 1), 0);
    ck_assert_int_ne(hx_simseg_open(&m, dir, HX_SIMSEG_VISION), 0);
    ck_assert_msg(strstr(hx_errmsg(), "patch_embed.proj.weight") != NULL, "%s", hx_errmsg());
    /* a bad pos_embed_tokens */
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"model_type\": \"simseg\", \"vision_config\": {\"pos_embed_tokens\": 200}}", f);
    fclose(f);
    struct hx_simseg_config cfg;
    ck_assert_int_eq(hx_simseg_config_load(&cfg, path), HX_EFORMAT);
    ck_assert_msg(strstr(hx_errmsg(), "pos_embed_tokens") != NULL, "%s", hx_errmsg());
    /* vision-only model refuses text */
    ck_assert_int_eq(hx_simseg_open(&m, hx_testdata("simseg/tiny325"), HX_SIMSEG_VISION), 0);
    const char *t[1] = {"cat"};
    float e[64];
    ck_assert_int_eq(hx_simseg_encode_text(m, t, 1, e), HX_EINVAL);
    hx_simseg_free(m);
}
END_TEST

/* ---- the CLI end to end ---- */

START_TEST(cli_embed_image)
{
    struct hx_safetensors *ref;
    for (int k = 0; k < 2; k++) {
        char model[512], path[600], out[600], cmd[2400];
        snprintf(model, sizeof model, "%s", hx_testdata(models[k]));
        snprintf(path, sizeof path, "%s/expected.safetensors", model);
        ck_assert_int_eq(hx_st_open(&ref, path), 0);
        snprintf(out, sizeof out, "%s/i.h5", hx_tmpdir());
        /* --size is ignored: SimSeg always runs at 288x288 */
        snprintf(cmd, sizeof cmd, "%s embed-image --model %s --image %s --size 100 --out %s",
                 hx_harness_bin(), model, hx_testdata("simseg/image.png"), out);
        ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
        float *got, *want;
        int64_t shape[4], gh, gw;
        int nd;
        size_t n;
        ck_assert_msg(hx_h5_read(out, "/dense", &got, shape, &nd) == 0, "%s", hx_errmsg());
        want = expect(ref, "image.patches", &n);
        ck_assert_int_eq(nd, 2);
        ck_assert_uint_eq((size_t)(shape[0] * shape[1]), n);
        check("/dense", got, want, n);
        ck_assert_int_eq(hx_h5_read_attr(out, "/dense", "grid_h", &gh), 0);
        ck_assert_int_eq(hx_h5_read_attr(out, "/dense", "grid_w", &gw), 0);
        ck_assert_int_eq(gh, 18);
        ck_assert_int_eq(gw, 18);
        free(got), free(want);
        ck_assert_int_eq(hx_h5_read(out, "/image_embeds", &got, shape, &nd), 0);
        want = expect(ref, "image.pooled", &n);
        ck_assert_int_eq(nd, 1);
        ck_assert_uint_eq((size_t)shape[0], n);
        check("/image_embeds", got, want, n);
        free(got), free(want);
        /* --no-resize needs a 288x288 image */
        snprintf(cmd, sizeof cmd, "%s embed-image --model %s --image %s --no-resize --out %s "
                 "2>/dev/null", hx_harness_bin(), model, hx_testdata("simseg/image.png"), out);
        ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
        hx_st_free(ref);
    }
}
END_TEST

START_TEST(cli_embed_text)
{
    struct hx_safetensors *ref;
    ck_assert_int_eq(hx_st_open(&ref, hx_testdata("simseg/tiny325/expected.safetensors")), 0);
    struct cases cs;
    read_cases(&cs);
    char model[512], out[600];
    snprintf(model, sizeof model, "%s", hx_testdata("simseg/tiny325"));
    snprintf(out, sizeof out, "%s/t.h5", hx_tmpdir());
    char **argv = calloc(cs.nt + 8, sizeof *argv);
    int k = 0;
    argv[k++] = (char *)hx_harness_bin();
    argv[k++] = "embed-text";
    argv[k++] = "--model";
    argv[k++] = model;
    argv[k++] = "--out";
    argv[k++] = out;
    argv[k++] = "--";
    for (int i = 0; i < cs.nt; i++)
        argv[k++] = (char *)cs.texts[i];
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "embed-text failed");
    float *got;
    int64_t shape[4];
    int nd;
    size_t n;
    ck_assert_msg(hx_h5_read(out, "/text_embeds", &got, shape, &nd) == 0, "%s", hx_errmsg());
    float *want = expect(ref, "text.pooled", &n);
    ck_assert_int_eq(nd, 2);
    ck_assert_int_eq(shape[0], cs.nt);
    ck_assert_uint_eq((size_t)(shape[0] * shape[1]), n);
    check("/text_embeds", got, want, n);
    free(got), free(want), free(argv);
    free_cases(&cs);
    hx_st_free(ref);
}
END_TEST

Suite *suite_simseg(void)
{
    Suite *s = suite_create("simseg");
    TCase *tc = tcase_create("reference");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, vision_325_matches_reference);
    tcase_add_test(tc, vision_197_matches_reference);
    tcase_add_test(tc, text_325_matches_reference);
    tcase_add_test(tc, text_197_matches_reference);
    tcase_add_test(tc, crf_image_round_trip);
    tcase_add_test(tc, dense_features_and_templates);
    tcase_add_test(tc, rejects_bad_models);
    tcase_add_test(tc, cli_embed_image);
    tcase_add_test(tc, cli_embed_text);
    suite_add_tcase(s, tc);
    return s;
}
