#include "harness/error.h"
#include "models/clip/config.h"
#include "tests/test_util.h"

#include <stdio.h>
#include <string.h>

static const char *write_json(const char *dir, const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* The Hugging Face CLIPConfig defaults, spelled out independently of the library. */
static void check_defaults(const struct hx_clip_config *c)
{
    ck_assert_int_eq(c->text.hidden, 512);
    ck_assert_int_eq(c->text.intermediate, 2048);
    ck_assert_int_eq(c->text.heads, 8);
    ck_assert_int_eq(c->text.layers, 12);
    ck_assert_int_eq(c->text.max_positions, 77);
    ck_assert_int_eq(c->text.vocab_size, 49408);
    ck_assert_int_eq(c->text.act, HX_ACT_QUICK_GELU);
    ck_assert_float_eq(c->text.ln_eps, 1e-5f);
    ck_assert_int_eq(c->vision.hidden, 768);
    ck_assert_int_eq(c->vision.intermediate, 3072);
    ck_assert_int_eq(c->vision.heads, 12);
    ck_assert_int_eq(c->vision.layers, 12);
    ck_assert_int_eq(c->vision.image_size, 224);
    ck_assert_int_eq(c->vision.patch_size, 32);
    ck_assert_int_eq(c->vision.channels, 3);
    ck_assert_int_eq(c->vision.act, HX_ACT_QUICK_GELU);
    ck_assert_float_eq(c->vision.ln_eps, 1e-5f);
    ck_assert_int_eq(c->projection_dim, 512);
    ck_assert_str_eq(c->model_type, "clip");
}

START_TEST(empty_object_gives_defaults)
{
    struct hx_clip_config c;
    memset(&c, 0x5a, sizeof c);
    hx_clip_config_default(&c);
    check_defaults(&c);
    memset(&c, 0x5a, sizeof c);
    const char *p = write_json(hx_tmpdir(), "config.json", "{}\n");
    ck_assert_msg(hx_clip_config_load(&c, p) == 0, "%s", hx_errmsg());
    check_defaults(&c);
    /* null sub-configs also mean defaults */
    p = write_json(hx_tmpdir(), "config.json", "{\"text_config\": null, \"vision_config\": {}}");
    ck_assert_msg(hx_clip_config_load(&c, p) == 0, "%s", hx_errmsg());
    check_defaults(&c);
}
END_TEST

/* Shaped like the published config of openai/clip-vit-base-patch16 (abridged). */
static const char vit_b16[] =
    "{\n"
    "  \"_name_or_path\": \"openai/clip-vit-base-patch16\",\n"
    "  \"architectures\": [\"CLIPModel\"],\n"
    "  \"initializer_factor\": 1.0,\n"
    "  \"logit_scale_init_value\": 2.6592,\n"
    "  \"model_type\": \"clip\",\n"
    "  \"projection_dim\": 512,\n"
    "  \"text_config\": {\n"
    "    \"architectures\": null,\n"
    "    \"bos_token_id\": 0,\n"
    "    \"eos_token_id\": 2,\n"
    "    \"hidden_act\": \"quick_gelu\",\n"
    "    \"hidden_size\": 512,\n"
    "    \"intermediate_size\": 2048,\n"
    "    \"layer_norm_eps\": 1e-05,\n"
    "    \"max_position_embeddings\": 77,\n"
    "    \"model_type\": \"clip_text_model\",\n"
    "    \"num_attention_heads\": 8,\n"
    "    \"num_hidden_layers\": 12,\n"
    "    \"pad_token_id\": 1,\n"
    "    \"projection_dim\": 512,\n"
    "    \"vocab_size\": 49408\n"
    "  },\n"
    "  \"text_config_dict\": {\"hidden_size\": 512, \"projection_dim\": 512},\n"
    "  \"vision_config\": {\n"
    "    \"dropout\": 0.0,\n"
    "    \"hidden_act\": \"quick_gelu\",\n"
    "    \"hidden_size\": 768,\n"
    "    \"image_size\": 224,\n"
    "    \"intermediate_size\": 3072,\n"
    "    \"model_type\": \"clip_vision_model\",\n"
    "    \"num_attention_heads\": 12,\n"
    "    \"num_hidden_layers\": 12,\n"
    "    \"patch_size\": 16,\n"
    "    \"projection_dim\": 512\n"
    "  },\n"
    "  \"vision_config_dict\": {\"patch_size\": 16},\n"
    "  \"torch_dtype\": \"float32\",\n"
    "  \"transformers_version\": null\n"
    "}\n";

START_TEST(vit_b16_config)
{
    struct hx_clip_config c;
    const char *p = write_json(hx_tmpdir(), "config.json", vit_b16);
    ck_assert_msg(hx_clip_config_load(&c, p) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(c.vision.patch_size, 16);
    ck_assert_int_eq(c.vision.image_size, 224);
    ck_assert_int_eq(c.vision.hidden, 768);
    ck_assert_int_eq(c.vision.heads, 12);
    ck_assert_int_eq(c.vision.channels, 3);
    ck_assert_int_eq(c.text.hidden, 512);
    ck_assert_int_eq(c.text.vocab_size, 49408);
    ck_assert_int_eq(c.projection_dim, 512);
    ck_assert_str_eq(c.model_type, "clip");

    /* a minimal file listing only what differs from the defaults gives the same result */
    struct hx_clip_config m;
    p = write_json(hx_tmpdir(), "config.json", "{\"vision_config\": {\"patch_size\": 16}}");
    ck_assert_int_eq(hx_clip_config_load(&m, p), 0);
    ck_assert_int_eq(memcmp(&m, &c, sizeof c), 0);
}
END_TEST

START_TEST(vit_l14_config)
{
    struct hx_clip_config c;
    const char *p = write_json(
        hx_tmpdir(), "config.json",
        "{\"projection_dim\": 768, \"model_type\": \"simseg\",\n"
        " \"text_config\": {\"hidden_size\": 768, \"intermediate_size\": 3072,\n"
        "   \"num_attention_heads\": 12, \"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-6},\n"
        " \"vision_config\": {\"hidden_size\": 1024, \"intermediate_size\": 4096,\n"
        "   \"num_attention_heads\": 16, \"num_hidden_layers\": 24, \"patch_size\": 14,\n"
        "   \"image_size\": 336, \"hidden_act\": \"gelu_pytorch_tanh\"}}");
    ck_assert_msg(hx_clip_config_load(&c, p) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(c.vision.hidden, 1024);
    ck_assert_int_eq(c.vision.intermediate, 4096);
    ck_assert_int_eq(c.vision.heads, 16);
    ck_assert_int_eq(c.vision.layers, 24);
    ck_assert_int_eq(c.vision.patch_size, 14);
    ck_assert_int_eq(c.vision.image_size, 336);
    ck_assert_int_eq(c.vision.act, HX_ACT_GELU_TANH);
    ck_assert_int_eq(c.text.hidden, 768);
    ck_assert_int_eq(c.text.intermediate, 3072);
    ck_assert_int_eq(c.text.heads, 12);
    ck_assert_int_eq(c.text.layers, 12); /* default kept */
    ck_assert_int_eq(c.text.act, HX_ACT_GELU);
    ck_assert_float_eq(c.text.ln_eps, 1e-6f);
    ck_assert_float_eq(c.vision.ln_eps, 1e-5f);
    ck_assert_int_eq(c.projection_dim, 768);
    ck_assert_str_eq(c.model_type, "simseg");

    p = write_json(hx_tmpdir(), "config.json", "{\"text_config\": {\"hidden_act\": \"gelu_new\"}}");
    ck_assert_int_eq(hx_clip_config_load(&c, p), 0);
    ck_assert_int_eq(c.text.act, HX_ACT_GELU_TANH);
}
END_TEST

START_TEST(rejects_malformed_configs)
{
    static const struct {
        const char *json, *field;
    } bad[] = {
        {"{\"vision_config\": {\"hidden_size\": \"768\"}}", "vision_config.hidden_size"},
        {"{\"vision_config\": {\"hidden_size\": 0}}", "vision_config.hidden_size"},
        {"{\"text_config\": {\"num_hidden_layers\": -3}}", "text_config.num_hidden_layers"},
        {"{\"text_config\": {\"intermediate_size\": 2048.5}}", "text_config.intermediate_size"},
        {"{\"text_config\": {\"vocab_size\": 1e12}}", "text_config.vocab_size"},
        {"{\"text_config\": {\"max_position_embeddings\": null}}",
         "text_config.max_position_embeddings"},
        {"{\"vision_config\": {\"num_attention_heads\": 7}}", "vision_config.hidden_size"},
        {"{\"vision_config\": {\"patch_size\": 15}}", "vision_config.image_size"},
        {"{\"vision_config\": {\"num_channels\": 0}}", "vision_config.num_channels"},
        {"{\"vision_config\": {\"hidden_act\": \"relu\"}}", "vision_config.hidden_act"},
        {"{\"text_config\": {\"hidden_act\": 1}}", "text_config.hidden_act"},
        {"{\"text_config\": {\"layer_norm_eps\": \"1e-5\"}}", "text_config.layer_norm_eps"},
        {"{\"vision_config\": {\"layer_norm_eps\": 0}}", "vision_config.layer_norm_eps"},
        {"{\"vision_config\": [1, 2]}", "vision_config"},
        {"{\"text_config\": 5}", "text_config"},
        {"{\"projection_dim\": 0}", "projection_dim"},
        {"{\"projection_dim\": true}", "projection_dim"},
        {"{\"model_type\": 3}", "model_type"},
        {"{\"model_type\": \"a-very-long-model-type-name-beyond-32\"}", "model_type"},
        {"[1, 2]", "object"},
        {"{\"projection_dim\": 512,}", "JSON"},
        {"{\"projection_dim\": 512", "JSON"},
        {"", "JSON"},
        {"{} {}", "after"},
    };
    const char *dir = hx_tmpdir();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.json", i);
        const char *p = write_json(dir, name, bad[i].json);
        struct hx_clip_config c;
        memset(&c, 0x5a, sizeof c);
        hx_err_clear();
        int rc = hx_clip_config_load(&c, p);
        ck_assert_msg(rc == HX_EFORMAT, "%s: rc %d (%s)", bad[i].json, rc, hx_errmsg());
        ck_assert_msg(strstr(hx_errmsg(), p) && strstr(hx_errmsg(), bad[i].field),
                      "%s: message should name %s and %s: %s", bad[i].json, name, bad[i].field,
                      hx_errmsg());
        ck_assert_int_eq(c.projection_dim, 0x5a5a5a5a); /* untouched on failure */
    }

    /* unknown keys and odd token ids are ignored */
    struct hx_clip_config c;
    const char *p = write_json(dir, "extra.json",
                               "{\"text_config\": {\"bos_token_id\": \"x\", \"eos_token_id\": "
                               "[1], \"whatever\": {}}, \"foo\": [null]}");
    ck_assert_msg(hx_clip_config_load(&c, p) == 0, "%s", hx_errmsg());
    check_defaults(&c);

    char missing[512];
    snprintf(missing, sizeof missing, "%s/nope/config.json", dir);
    ck_assert_int_eq(hx_clip_config_load(&c, missing), HX_EIO);
    ck_assert_ptr_nonnull(strstr(hx_errmsg(), missing));
}
END_TEST

Suite *suite_clip_config(void)
{
    Suite *s = suite_create("clip_config");
    TCase *tc = tcase_create("load");
    tcase_add_test(tc, empty_object_gives_defaults);
    tcase_add_test(tc, vit_b16_config);
    tcase_add_test(tc, vit_l14_config);
    tcase_add_test(tc, rejects_malformed_configs);
    suite_add_tcase(s, tc);
    return s;
}
