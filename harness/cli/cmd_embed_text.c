#include "harness/cli/cli.h"
#include "harness/error.h"
#include "harness/h5io.h"
#include "models/clip/clip.h"
#include "models/simseg/simseg.h"

#include <stdlib.h>

static const char usage[] =
    "usage: harness embed-text --model DIR --out FILE.h5 TEXT...\n"
    "\n"
    "Encode each TEXT with the model's text tower and write the HDF5 dataset /text_embeds,\n"
    "float32 [n, E]: the projected text embeddings, not normalised, in argument order.\n"
    "\n"
    "  --model DIR   model directory (config.json, model.safetensors, tokenizer files)\n"
    "  --out FILE    output HDF5 file (written atomically)\n"
    "For a SimSeg model directory (config.json \"model_type\": \"simseg\") /text_embeds holds\n"
    "the LoDA text embeddings (BERT, projection, max over valid tokens), L2-normalised, one per\n"
    "TEXT exactly as given (no prompt template).\n";

static int run(int argc, char **argv)
{
    const char *model = NULL, *out = NULL;
    struct cli_opt opts[] = {{"model", CLI_STR, &model}, {"out", CLI_STR, &out}};
    char **texts = malloc(sizeof(char *) * argc);
    int n, rc, code = 1;
    struct hx_clip *m = NULL;
    struct hx_simseg *sm = NULL;
    float *emb = NULL;
    if (!texts)
        return 1;
    if ((code = cli_parse(argv[0], argc, argv, opts, 2, texts, &n)) ||
        (code = cli_require(argv[0], model, "model")) || (code = cli_require(argv[0], out, "out")))
        goto done;
    if (n == 0) {
        code = cli_usage_error(argv[0], "no TEXT given");
        goto done;
    }
    int E;
    if (hx_simseg_probe(model)) {
        if ((rc = hx_simseg_open(&sm, model, HX_SIMSEG_TEXT))) {
            code = cli_fail(argv[0], rc);
            goto done;
        }
        E = hx_simseg_cfg(sm)->projection_dim;
    } else {
        if ((rc = hx_clip_open(&m, model, HX_CLIP_TEXT))) {
            code = cli_fail(argv[0], rc);
            goto done;
        }
        E = hx_clip_cfg(m)->projection_dim;
    }
    emb = malloc(sizeof(float) * (size_t)n * E);
    if (!emb)
        goto done;
    if ((rc = sm ? hx_simseg_encode_text(sm, (const char *const *)texts, n, emb)
                 : hx_clip_encode_text(m, (const char *const *)texts, n, emb))) {
        code = cli_fail(argv[0], rc);
        goto done;
    }
    struct hx_h5_dataset ds = {"/text_embeds", 2, {n, E}, emb, NULL, 0};
    if ((rc = hx_h5_write(out, &ds, 1))) {
        code = cli_fail(argv[0], rc);
        goto done;
    }
    code = 0;
done:
    free(emb);
    hx_clip_free(m);
    hx_simseg_free(sm);
    free(texts);
    return code;
}

const struct hx_command hx_cmd_embed_text = {"embed-text", "text embeddings of strings -> HDF5",
                                             usage, run};
