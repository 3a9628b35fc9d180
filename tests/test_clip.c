/* The CLIP towers against the plain-PyTorch reference in tests/data/clip (written by
 * scripts/clip_reference.py): stage by stage for the vision tower (embedding, pre-LN, every
 * block, the last block of each dense variant, dense and pooled outputs), the text tower's
 * embeddings, and the CLI commands end to end. F32 and F16 checkpoints. */
#include "harness/error.h"
#include "harness/h5io.h"
#include "harness/safetensors.h"
#include "models/clip/clip.h"
#include "models/clip/tokenizer.h"
#include "tests/test_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const cases[] = {"sq32", "rect", "big"};

/* max relative error 1e-4, measured against the tensor's largest magnitude near zero */
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

static int64_t *expect_i64(const struct hx_safetensors *st, const char *name, size_t *n)
{
    const struct hx_st_tensor *t = hx_st_find(st, name);
    ck_assert_msg(t && t->dtype == HX_I64, "reference tensor %s missing or not I64", name);
    int64_t *p = malloc(t->nbytes + 1);
    memcpy(p, t->data, t->nbytes);
    *n = (size_t)t->numel;
    return p;
}

static void open_model(const char *name, struct hx_clip **m, struct hx_safetensors **ref)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", hx_testdata(name));
    ck_assert_msg(hx_clip_open(m, dir, HX_CLIP_VISION | HX_CLIP_TEXT) == 0, "%s", hx_errmsg());
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    ck_assert_msg(hx_st_open(ref, path) == 0, "%s", hx_errmsg());
}

static void vision_stages(const char *model)
{
    struct hx_clip *m;
    struct hx_safetensors *ref;
    open_model(model, &m, &ref);
    const struct hx_clip_config *cfg = hx_clip_cfg(m);
    int D = cfg->vision.hidden, E = cfg->projection_dim, L = cfg->vision.layers;
    char name[128];
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const char *cs = cases[c];
        size_t n;
        snprintf(name, sizeof name, "vision.%s.pixel_values", cs);
        const struct hx_st_tensor *pv = hx_st_find(ref, name);
        ck_assert_msg(pv && pv->ndim == 3, "%s missing", name);
        int H = (int)pv->shape[1], W = (int)pv->shape[2];
        float *img = expect(ref, name, NULL);
        int gh, gw, T = 1 + (H / cfg->vision.patch_size) * (W / cfg->vision.patch_size);
        struct hx_vit_ws *ws;
        ck_assert_int_eq(hx_vit_ws_new(&ws, m, T), 0);
        float *x = malloc(sizeof(float) * T * D), *x0 = malloc(sizeof(float) * T * D);
        float *last = malloc(sizeof(float) * T * D), *dense = malloc(sizeof(float) * T * E);
        float *pooled = malloc(sizeof(float) * E);
        ck_assert_int_eq(hx_clip_vision_embed(m, ws, img, H, W, x, &gh, &gw), 0);
        ck_assert_int_eq(1 + gh * gw, T);

        snprintf(name, sizeof name, "vision.%s.grid", cs);
        int64_t *grid = expect_i64(ref, name, &n);
        ck_assert_int_eq(grid[0], gh);
        ck_assert_int_eq(grid[1], gw);
        free(grid);

        float *want;
#define STAGE(got, count, ...)                                                                 \
    do {                                                                                       \
        snprintf(name, sizeof name, __VA_ARGS__);                                              \
        want = expect(ref, name, &n);                                                          \
        ck_assert_uint_eq(n, (size_t)(count));                                                 \
        check(name, got, want, n);                                                             \
        free(want);                                                                            \
    } while (0)
        STAGE(hx_clip_pos_embed(m, gh, gw), T * D, "vision.%s.pos_embed", cs);
        STAGE(x, T * D, "vision.%s.embeddings", cs);
        hx_clip_vision_pre_ln(m, x, T);
        STAGE(x, T * D, "vision.%s.pre_ln", cs);
        for (int i = 0; i < L - 1; i++) {
            hx_clip_vision_block(m, ws, i, x, T, NULL);
            STAGE(x, T * D, "vision.%s.layer%d", cs, i);
        }
        memcpy(x0, x, sizeof(float) * T * D);
        for (int v = 0; v < HX_NVARIANTS; v++) {
            const char *vn = hx_variant_name(v);
            hx_clip_vision_last(m, ws, v, x0, last, gh, gw);
            ck_assert_msg(memcmp(x0, x, sizeof(float) * T * D) == 0, "last block changed its input");
            STAGE(last, T * D, "vision.%s.last.%s", cs, vn);
            if (v == HX_VANILLA)
                STAGE(last, T * D, "vision.%s.layer%d", cs, L - 1);
            hx_clip_vision_project(m, ws, last + D, gh * gw, dense);
            STAGE(dense, gh * gw * E, "vision.%s.dense.%s", cs, vn);
            /* the one-call path gives the same dense and pooled outputs */
            memset(dense, 0, sizeof(float) * gh * gw * E);
            ck_assert_int_eq(hx_clip_encode_image(m, img, H, W, v, pooled, dense, NULL, NULL), 0);
            STAGE(dense, gh * gw * E, "vision.%s.dense.%s", cs, vn);
            STAGE(pooled, E, "vision.%s.image_embeds", cs);
        }
#undef STAGE
        hx_vit_ws_free(ws);
        free(img), free(x), free(x0), free(last), free(dense), free(pooled);
    }
    hx_st_free(ref);
    hx_clip_free(m);
}

START_TEST(vision_f32_matches_reference) { vision_stages("clip/tiny"); }
END_TEST
START_TEST(vision_f16_matches_reference) { vision_stages("clip/tiny_f16"); }
END_TEST

static char **read_texts(int *n)
{
    FILE *f = fopen(hx_testdata("clip/tiny/texts.json"), "rb");
    ck_assert_ptr_nonnull(f);
    static char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    cJSON *j = cJSON_Parse(buf);
    ck_assert_msg(cJSON_IsArray(j), "texts.json is not a JSON list");
    *n = cJSON_GetArraySize(j);
    char **t = calloc(*n, sizeof *t);
    for (int i = 0; i < *n; i++)
        t[i] = strdup(cJSON_GetArrayItem(j, i)->valuestring);
    cJSON_Delete(j);
    return t;
}

static void free_texts(char **t, int n)
{
    for (int i = 0; i < n; i++)
        free(t[i]);
    free(t);
}

static void text_embeddings(const char *model)
{
    struct hx_clip *m;
    struct hx_safetensors *ref;
    open_model(model, &m, &ref);
    int E = hx_clip_cfg(m)->projection_dim;
    size_t nids, n;
    const struct hx_st_tensor *t = hx_st_find(ref, "text.input_ids");
    ck_assert_ptr_nonnull(t);
    int ntext = (int)t->shape[0], L = (int)t->shape[1];
    int64_t *ids64 = expect_i64(ref, "text.input_ids", &nids);
    int32_t *ids = malloc(sizeof(int32_t) * nids);
    for (size_t i = 0; i < nids; i++)
        ids[i] = (int32_t)ids64[i];
    float *out = malloc(sizeof(float) * ntext * E);
    ck_assert_msg(hx_clip_encode_tokens(m, ids, ntext, L, out) == 0, "%s", hx_errmsg());
    float *want = expect(ref, "text.embeds", &n);
    ck_assert_uint_eq(n, (size_t)ntext * E);
    check("text.embeds", out, want, n);

    /* each text alone gives the same embedding as in the batch */
    float *one = malloc(sizeof(float) * E);
    for (int i = 0; i < ntext; i++) {
        ck_assert_int_eq(hx_clip_encode_tokens(m, ids + (size_t)i * L, 1, L, one), 0);
        check("text.embeds (alone)", one, want + (size_t)i * E, E);
    }
    free(one);

    /* the strings through the model's own tokenizer give the same ids and embeddings */
    int nt;
    char **texts = read_texts(&nt);
    ck_assert_int_eq(nt, ntext);
    struct hx_tokenizer *tok;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", hx_testdata(model));
    ck_assert_msg(hx_tokenizer_open(&tok, dir) == 0, "%s", hx_errmsg());
    int32_t *mine = malloc(sizeof(int32_t) * L);
    for (int i = 0; i < ntext; i++) {
        int k = hx_tokenize(tok, texts[i], mine, L);
        ck_assert_msg(k >= 2, "%s", hx_errmsg());
        for (int p = 0; p < L; p++)
            ck_assert_msg((p < k ? mine[p] : 0) == ids[(size_t)i * L + p],
                          "text %d ('%s') token %d differs", i, texts[i], p);
    }
    ck_assert_msg(hx_clip_encode_text(m, (const char *const *)texts, ntext, out) == 0, "%s",
                  hx_errmsg());
    check("text.embeds (from strings)", out, want, n);
    hx_tokenizer_free(tok);
    free(mine);
    free_texts(texts, nt);
    free(want), free(out), free(ids), free(ids64);
    hx_st_free(ref);
    hx_clip_free(m);
}

START_TEST(text_f32_matches_reference) { text_embeddings("clip/tiny"); }
END_TEST
START_TEST(text_f16_matches_reference) { text_embeddings("clip/tiny_f16"); }
END_TEST

START_TEST(rejects_bad_models)
{
    struct hx_clip *m = NULL;
    ck_assert_int_ne(hx_clip_open(&m, "/nonexistent/model", HX_CLIP_VISION), 0);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(hx_errmsg(), "/nonexistent/model") != NULL, "message: %s", hx_errmsg());

    /* a checkpoint without the vision tower's tensors: the error names the first missing one */
    const char *dir = hx_tmpdir();
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"projection_dim\": 4, \"vision_config\": {\"hidden_size\": 8, \"num_attention_heads\""
          ": 2, \"num_hidden_layers\": 1, \"intermediate_size\": 8, \"image_size\": 8, "
          "\"patch_size\": 4}}", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    float cls[8] = {0};
    struct hx_st_write w = {"vision_model.embeddings.class_embedding", 1, {8}, cls};
    ck_assert_int_eq(hx_st_write_f32(path, &w, 1), 0);
    ck_assert_int_ne(hx_clip_open(&m, dir, HX_CLIP_VISION), 0);
    ck_assert_msg(strstr(hx_errmsg(), "patch_embedding") != NULL, "message: %s", hx_errmsg());

    enum hx_variant v;
    ck_assert_int_ne(hx_variant_parse("maskclip2", &v), 0);
    ck_assert_int_eq(hx_variant_parse("naclip", &v), 0);
    ck_assert_int_eq(v, HX_NACLIP);
}
END_TEST

/* ---- the CLI end to end ---- */

START_TEST(cli_embed_image_no_resize)
{
    struct hx_safetensors *ref;
    ck_assert_int_eq(hx_st_open(&ref, hx_testdata("clip/tiny/expected.safetensors")), 0);
    const char *dir = hx_tmpdir();
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char cmd[4096], out[600], name[128];
        snprintf(out, sizeof out, "%s/%s.h5", dir, cases[c]);
        char model[512];
        snprintf(model, sizeof model, "%s", hx_testdata("clip/tiny"));
        snprintf(cmd, sizeof cmd,
                 "%s embed-image --model %s --image %s/input_%s.png --variant naclip "
                 "--no-resize --out %s",
                 hx_harness_bin(), model, model, cases[c], out);
        ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
        float *got;
        int64_t shape[4], gh, gw;
        int nd;
        ck_assert_msg(hx_h5_read(out, "/dense", &got, shape, &nd) == 0, "%s", hx_errmsg());
        snprintf(name, sizeof name, "vision.%s.dense.naclip", cases[c]);
        size_t n;
        float *want = expect(ref, name, &n);
        ck_assert_uint_eq(shape[0] * shape[1], n);
        check(name, got, want, n);
        ck_assert_int_eq(hx_h5_read_attr(out, "/dense", "grid_h", &gh), 0);
        ck_assert_int_eq(hx_h5_read_attr(out, "/dense", "grid_w", &gw), 0);
        ck_assert_int_eq(gh * gw, shape[0]);
        free(got), free(want);
        ck_assert_int_eq(hx_h5_read(out, "/image_embeds", &got, shape, &nd), 0);
        snprintf(name, sizeof name, "vision.%s.image_embeds", cases[c]);
        want = expect(ref, name, &n);
        ck_assert_int_eq(nd, 1);
        check(name, got, want, n);
        free(got), free(want);
    }
    hx_st_free(ref);
}
END_TEST

START_TEST(cli_embed_text)
{
    struct hx_safetensors *ref;
    ck_assert_int_eq(hx_st_open(&ref, hx_testdata("clip/tiny/expected.safetensors")), 0);
    int nt;
    char **texts = read_texts(&nt);
    char model[512], out[600];
    snprintf(model, sizeof model, "%s", hx_testdata("clip/tiny"));
    snprintf(out, sizeof out, "%s/t.h5", hx_tmpdir());
    /* argv without a shell, so that any text survives quoting */
    char **argv = calloc(nt + 8, sizeof *argv);
    int k = 0;
    argv[k++] = (char *)hx_harness_bin();
    argv[k++] = "embed-text";
    argv[k++] = "--model";
    argv[k++] = model;
    argv[k++] = "--out";
    argv[k++] = out;
    argv[k++] = "--";
    for (int i = 0; i < nt; i++)
        argv[k++] = texts[i];
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
    float *want = expect(ref, "text.embeds", &n);
    ck_assert_int_eq(nd, 2);
    ck_assert_int_eq(shape[0], nt);
    ck_assert_uint_eq((size_t)(shape[0] * shape[1]), n);
    check("/text_embeds", got, want, n);
    free(got), free(want), free(argv);
    free_texts(texts, nt);
    hx_st_free(ref);
}
END_TEST

START_TEST(cli_rejects_bad_input)
{
    char cmd[4096];
    const char *dir = hx_tmpdir();
    char model[512];
    snprintf(model, sizeof model, "%s", hx_testdata("clip/tiny"));
    /* 40x24 at patch 8 is fine; a size that is not a multiple fails with exit code 2 */
    snprintf(cmd, sizeof cmd, "%s embed-image --model %s --image %s/missing.png --out %s/x.h5 "
             "2>/dev/null", hx_harness_bin(), model, model, dir);
    ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s embed-image --model %s --image %s/input_rect.png --variant bogus"
             " --out %s/x.h5 2>/dev/null", hx_harness_bin(), model, model, dir);
    ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s embed-text --model %s 2>/dev/null", hx_harness_bin(), model);
    ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
}
END_TEST

Suite *suite_clip(void)
{
    Suite *s = suite_create("clip");
    TCase *tc = tcase_create("reference");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, vision_f32_matches_reference);
    tcase_add_test(tc, vision_f16_matches_reference);
    tcase_add_test(tc, text_f32_matches_reference);
    tcase_add_test(tc, text_f16_matches_reference);
    tcase_add_test(tc, rejects_bad_models);
    tcase_add_test(tc, cli_embed_image_no_resize);
    tcase_add_test(tc, cli_embed_text);
    tcase_add_test(tc, cli_rejects_bad_input);
    suite_add_tcase(s, tc);
    return s;
}
