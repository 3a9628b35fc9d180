#include "harness/cli/cli.h"
#include "harness/error.h"
#include "harness/h5io.h"
#include "harness/image.h"
#include "models/clip/clip.h"
#include "models/simseg/simseg.h"

#include <stdio.h>
#include <stdlib.h>

static const char usage[] =
    "usage: harness embed-image --model DIR --image FILE --out FILE.h5 [--variant V]\n"
    "                           [--no-resize | --size S]\n"
    "\n"
    "Encode one image with the vision tower and write to HDF5:\n"
    "  /image_embeds  float32 [E]         pooled, projected, from the vanilla forward\n"
    "  /dense         float32 [gh*gw, E]  dense tokens of variant V (attributes grid_h, grid_w)\n"
    "Neither is normalised.\n"
    "\n"
    "  --model DIR    model directory (config.json, model.safetensors)\n"
    "  --image FILE   JPEG or PNG\n"
    "  --variant V    vanilla (default), maskclip, sclip, clearclip or naclip\n"
    "  --size S       resize the short side to S first (PIL bicubic, aspect ratio kept, long\n"
    "                 side truncated); default: the model's image_size\n"
    "  --no-resize    use the image at its own size (both sides must be multiples of the\n"
    "                 patch size)\n"
    "  --out FILE     output HDF5 file (written atomically)\n"
    "With --size, pixels past the last whole patch at the right and bottom are dropped, as the\n"
    "strided patch convolution does. Pixels are scaled to [0,1] and normalised with the CLIP\n"
    "mean and std.\n"
    "\n"
    "SimSeg model directories (config.json \"model_type\": \"simseg\") follow SimSeg's own\n"
    "preprocessing instead: the image is resized to 288x288 with PIL bilinear, aspect ratio not\n"
    "kept, whatever --size says, and normalised with the ImageNet mean and std; --no-resize\n"
    "is accepted only for an image that is already 288x288, and --variant must be vanilla.\n"
    "  /image_embeds  float32 [512]       the LoDA embedding (top-5 mean), L2-normalised\n"
    "  /dense         float32 [324, 512]  the projected patch tokens (18x18), not normalised\n";

/* SimSeg: fixed 288x288 input (SPEC-simseg 2.6). Returns the exit code. */
static int run_simseg(const char *cmd, const char *model, const char *image, const char *out,
                      int no_resize, enum hx_variant v)
{
    struct hx_image im = {0};
    struct hx_simseg *m = NULL;
    float *tensor = NULL, *pooled = NULL, *dense = NULL;
    int rc, code = 1;
    if (v != HX_VANILLA)
        return cli_usage_error(cmd, "SimSeg models have no --variant (got %s)", hx_variant_name(v));
    if ((rc = hx_simseg_open(&m, model, HX_SIMSEG_VISION)) || (rc = hx_image_load(&im, image)))
        goto fail;
    const struct hx_simseg_config *cfg = hx_simseg_cfg(m);
    int S = cfg->image_size, E = cfg->projection_dim, g = hx_simseg_grid(m);
    if (no_resize && (im.w != S || im.h != S)) {
        rc = hx_err(HX_EINVAL, "%s: %dx%d; SimSeg with --no-resize needs a %dx%d image", image,
                    im.w, im.h, S, S);
        goto fail;
    }
    tensor = malloc(sizeof(float) * 3 * (size_t)S * S);
    pooled = malloc(sizeof(float) * E);
    dense = malloc(sizeof(float) * (size_t)g * g * E);
    if (!tensor || !pooled || !dense) {
        rc = hx_err(HX_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = hx_simseg_preprocess(&im, S, tensor, NULL)) ||
        (rc = hx_simseg_encode_image(m, tensor, pooled, dense)))
        goto fail;
    struct hx_h5_attr grid[2] = {{"grid_h", g}, {"grid_w", g}};
    struct hx_h5_dataset ds[2] = {{"/image_embeds", 1, {E}, pooled, NULL, 0},
                                  {"/dense", 2, {(int64_t)g * g, E}, dense, grid, 2}};
    if ((rc = hx_h5_write(out, ds, 2)))
        goto fail;
    code = 0;
    goto done;
fail:
    code = cli_fail(cmd, rc);
done:
    free(tensor);
    free(pooled);
    free(dense);
    hx_image_free(&im);
    hx_simseg_free(m);
    return code;
}

static const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

static int run(int argc, char **argv)
{
    const char *model = NULL, *image = NULL, *out = NULL, *vname = "vanilla";
    int no_resize = 0, size = 0, n, rc, code;
    struct cli_opt opts[] = {{"model", CLI_STR, &model},      {"image", CLI_STR, &image},
                             {"out", CLI_STR, &out},          {"variant", CLI_STR, &vname},
                             {"no-resize", CLI_FLAG, &no_resize}, {"size", CLI_INT, &size}};
    char *pos[argc];
    struct hx_image im = {0};
    struct hx_clip *m = NULL;
    float *tensor = NULL, *pooled = NULL, *dense = NULL;
    uint8_t *resized = NULL;
    enum hx_variant v;
    if ((code = cli_parse(argv[0], argc, argv, opts, 6, pos, &n)))
        return code;
    if (n)
        return cli_usage_error(argv[0], "unexpected argument '%s'", pos[0]);
    if ((code = cli_require(argv[0], model, "model")) ||
        (code = cli_require(argv[0], image, "image")) || (code = cli_require(argv[0], out, "out")))
        return code;
    if (no_resize && size)
        return cli_usage_error(argv[0], "--no-resize and --size exclude each other");
    if (size < 0)
        return cli_usage_error(argv[0], "--size must be positive");
    if (hx_variant_parse(vname, &v))
        return cli_usage_error(argv[0], "%s", hx_errmsg());
    if (hx_simseg_probe(model))
        return run_simseg(argv[0], model, image, out, no_resize, v);
    code = 1;
    if ((rc = hx_clip_open(&m, model, HX_CLIP_VISION)) || (rc = hx_image_load(&im, image)))
        goto fail;
    const struct hx_clip_config *cfg = hx_clip_cfg(m);
    int P = cfg->vision.patch_size, E = cfg->projection_dim, W = im.w, H = im.h;
    if (no_resize) {
        if (W % P || H % P) {
            rc = hx_err(HX_EINVAL, "%s: %dx%d is not a multiple of the patch size %d (use "
                        "--size to resize)", image, W, H, P);
            goto fail;
        }
    } else {
        int S = size ? size : cfg->vision.image_size;
        if (W <= H) {
            W = S;
            H = (int)((long long)S * im.h / im.w);
        } else {
            H = S;
            W = (int)((long long)S * im.w / im.h);
        }
        if (W < P || H < P) {
            rc = hx_err(HX_EINVAL, "%s: resized to %dx%d, smaller than a %d-pixel patch", image,
                        W, H, P);
            goto fail;
        }
        resized = malloc((size_t)W * H * 3);
        if (!resized || (rc = hx_pil_resize(im.px, im.w, im.h, 3, resized, W, H, HX_PIL_BICUBIC)))
            goto fail;
        free(im.px);
        im.px = resized;
        im.w = W;
        im.h = H;
        resized = NULL;
    }
    int gh = H / P, gw = W / P;
    tensor = malloc(sizeof(float) * 3 * (size_t)W * H);
    pooled = malloc(sizeof(float) * E);
    dense = malloc(sizeof(float) * (size_t)gh * gw * E);
    if (!tensor || !pooled || !dense)
        goto fail;
    hx_image_to_tensor(&im, clip_mean, clip_std, tensor);
    if ((rc = hx_clip_encode_image(m, tensor, H, W, v, pooled, dense, &gh, &gw)))
        goto fail;
    struct hx_h5_attr grid[2] = {{"grid_h", gh}, {"grid_w", gw}};
    struct hx_h5_dataset ds[2] = {{"/image_embeds", 1, {E}, pooled, NULL, 0},
                                  {"/dense", 2, {(int64_t)gh * gw, E}, dense, grid, 2}};
    if ((rc = hx_h5_write(out, ds, 2)))
        goto fail;
    code = 0;
    goto done;
fail:
    code = rc ? cli_fail(argv[0], rc) : (fprintf(stderr, "harness %s: out of memory\n", argv[0]), 1);
done:
    free(tensor);
    free(pooled);
    free(dense);
    free(resized);
    hx_image_free(&im);
    hx_clip_free(m);
    return code;
}

const struct hx_command hx_cmd_embed_image = {
    "embed-image", "pooled and dense image embeddings of one image -> HDF5", usage, run};
