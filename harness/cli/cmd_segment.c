#include "datasets/datasets.h"
#include "harness/cli/cli.h"
#include "harness/error.h"
#include "harness/prompts.h"
#include "harness/labelmap.h"
#include "harness/protocol.h"
#include "harness/score.h"
#include "harness/simseg_protocol.h"
#include "harness/subclasses.h"
#include "models/clip/clip.h"
#include "models/simseg/simseg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: harness segment --model DIR --image IMG --dataset NAME --protocol P\n"
    "                       [--subclasses FILE.json --k K --ensemble RULE] --out PRED.png\n"
    "\n"
    "Segment one image and write its label map (8-bit greyscale PNG, one class index per\n"
    "pixel, the image's own size).\n"
    "\n"
    "  --model DIR       model directory: a SimSeg model (scripts/convert_simseg.py) for\n"
    "                    --protocol simseg, a CLIP model (Hugging Face layout) otherwise\n"
    "  --image IMG       JPEG or PNG\n"
    "  --dataset NAME    a registry dataset (see 'harness datasets'): its classes, and the\n"
    "                    protocol's settings for it\n"
    "  --protocol P      simseg                          SimSeg's protocol (SPEC 3)\n"
    "                    sclip, clearclip, naclip, naclip-pamr, maskclip\n"
    "                                                    the dense presets (SPEC 2)\n"
    "  --subclasses FILE subclass lists {\"class\": [\"sub\", ...]} (e.g. the released\n"
    "                    top-5 lists); a class matches its list by name, exactly, else\n"
    "                    ignoring case and surrounding spaces\n"
    "  --k K             subclasses per class (the first K of each list), default 5\n"
    "  --ensemble RULE   how subclasses make a class score (SPEC 4): super, embed-mean,\n"
    "                    embed-softmax, max, mean, mean-prob, logsumexp, vote, chils;\n"
    "                    default embed-softmax with --subclasses, super without\n"
    "  --out PRED.png    output label map (written atomically)\n"
    "\n"
    "simseg: class names from SimSeg's own lists for voc21, context60 and coco_object\n"
    "(datasets/classnames/simseg_*.txt), the registry's first names for other datasets;\n"
    "SimSeg's 80 templates; K = 30 for Context, 10 otherwise. The rule shapes the per-class\n"
    "map only (embed-softmax: the LLM-supervision rule); selecting the classes and painting\n"
    "use the class names' own embeddings; background gets no subclasses; vote has no map.\n"
    "Dense presets: the registry's class names (ClearCLIP: the plain list with a literal\n"
    "\"background\" where one exists), synonyms scored by their max; the preset's templates\n"
    "(datasets/templates/imagenet80.txt or maskclip85.txt); the rule applies per name.\n"
    "Exit codes: 0 ok, 1 failure, 2 bad usage or input.\n";

struct text_side {
    int N, M;            /* names (bank classes), members */
    int *name_class;     /* [N] */
    int *n_sub;          /* [N] */
    const char **strings;/* [M] each name then its subclasses */
};

static void text_side_free(struct text_side *t)
{
    free(t->name_class), free(t->n_sub), free(t->strings);
}

/* Names (all synonyms, or the first only) and their subclass lists in bank order. Classes
 * (other than background) that the lists do not name are reported on stderr. */
static int text_side(const struct hx_classnames *cn, const struct hx_subclasses *sc, int k,
                     int synonyms, int background_subs, struct text_side *t)
{
    memset(t, 0, sizeof *t);
    int unmatched = 0;
    for (int c = 0; c < cn->n; c++) {
        t->N += synonyms ? cn->nsyn[c] : 1;
        int i = sc->n ? hx_subclass_match(sc, cn, c) : -1;
        if (i >= 0)
            t->M += sc->nsub[i] < k ? sc->nsub[i] : k;
        else if (sc->n && c > 0)
            fprintf(stderr, "%s%s", unmatched++ ? ", " : "harness segment: warning: the "
                    "subclass lists name none of: ", cn->syn[c][0]);
    }
    if (unmatched)
        fprintf(stderr, " (these classes use their names alone)\n");
    t->M += t->N;
    t->name_class = malloc(sizeof(int) * t->N);
    t->n_sub = malloc(sizeof(int) * t->N);
    t->strings = malloc(sizeof(char *) * t->M);
    if (!t->name_class || !t->n_sub || !t->strings)
        return HX_ENOMEM;
    for (int c = 0, n = 0, m = 0; c < cn->n; c++) {
        int i = sc->n ? hx_subclass_match(sc, cn, c) : -1;
        for (int j = 0; j < (synonyms ? cn->nsyn[c] : 1); j++, n++) {
            t->name_class[n] = c;
            t->strings[m++] = cn->syn[c][j];
            int ns = j == 0 && i >= 0 && (c > 0 || background_subs)
                         ? (sc->nsub[i] < k ? sc->nsub[i] : k) : 0;
            t->n_sub[n] = ns;
            for (int s = 0; s < ns; s++)
                t->strings[m++] = sc->sub[i][s];
        }
    }
    /* members actually used (background may have been left out) */
    t->M = 0;
    for (int n = 0; n < t->N; n++)
        t->M += 1 + t->n_sub[n];
    return 0;
}

static int run_simseg(const char *model, const struct hx_image *im, const struct hx_dataset *d,
                      const struct hx_subclasses *sc, int k, struct hx_ens_point pt,
                      uint8_t *pred)
{
    struct hx_simseg *m = NULL;
    struct hx_classnames cn = {0};
    struct text_side t = {0};
    struct hx_text_bank *bank = NULL;
    float *emb = NULL;
    int rc;
    if ((rc = hx_simseg_open(&m, model, HX_SIMSEG_VISION | HX_SIMSEG_TEXT)) ||
        (rc = hx_dataset_classnames(d, hx_ssp_classnames(d->name), &cn)) ||
        (rc = text_side(&cn, sc, k, 0, 0, &t)))
        goto done;
    int E = hx_simseg_cfg(m)->projection_dim;
    if (!(emb = hx_malloc(sizeof(float) * (size_t)t.M * E, "text embeddings"))) {
        rc = HX_ENOMEM;
        goto done;
    }
    if ((rc = hx_simseg_class_embeddings(m, t.strings, t.M, hx_simseg_templates, 80, emb)) ||
        (rc = hx_text_bank_create(&bank, emb, t.n_sub, t.N, E)))
        goto done;
    struct hx_ssp_params p;
    hx_ssp_params_default(&p, d->name);
    p.size = hx_simseg_cfg(m)->image_size;
    struct hx_dense_encoder enc = {m, E, hx_simseg_cfg(m)->patch_size, hx_ssp_simseg_encode};
    rc = hx_ssp_segment(&enc, &p, bank, &pt, im, im->h, im->w, pred, NULL);
done:
    free(emb);
    hx_text_bank_free(bank);
    text_side_free(&t);
    hx_classnames_free(&cn);
    hx_simseg_free(m);
    return rc;
}

static int run_dense(const char *model, const char *protocol, const struct hx_image *im,
                     const struct hx_dataset *d, const struct hx_subclasses *sc, int k,
                     struct hx_ens_point pt, uint8_t *pred)
{
    struct hx_dense_preset pre;
    struct hx_clip *m = NULL;
    struct hx_classnames cn = {0};
    struct text_side t = {0};
    struct hx_text_bank *bank = NULL;
    char **tmpl = NULL, **texts = NULL;
    float *temb = NULL, *emb = NULL;
    int nt = 0, rc;
    char plain[256];
    const char *list = NULL;
    if ((rc = hx_dense_preset_get(protocol, d->name, &pre)))
        return rc;
    if (pre.literal_background) {
        snprintf(plain, sizeof plain, "datasets/classnames/%s_plain.txt", d->name);
        if (access(plain, R_OK) == 0)
            list = plain;
    }
    if ((rc = hx_clip_open(&m, model, HX_CLIP_VISION | HX_CLIP_TEXT)) ||
        (rc = hx_dataset_classnames(d, list, &cn)) || (rc = text_side(&cn, sc, k, 1, 1, &t)) ||
        (rc = hx_templates_read(pre.templates == 85 ? "maskclip85" : "imagenet80", &tmpl, &nt)))
        goto done;
    int E = hx_clip_cfg(m)->projection_dim;
    texts = calloc((size_t)t.M * nt, sizeof *texts);
    temb = hx_malloc(sizeof(float) * (size_t)t.M * nt * E, "text embeddings");
    emb = hx_malloc(sizeof(float) * (size_t)t.M * E, "query embeddings");
    if (!texts || !temb || !emb) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int i = 0; i < t.M; i++)
        for (int j = 0; j < nt; j++)
            if (!(texts[(size_t)i * nt + j] = hx_template_fill(tmpl[j], t.strings[i]))) {
                rc = HX_ENOMEM;
                goto done;
            }
    if ((rc = hx_clip_encode_text(m, (const char *const *)texts, t.M * nt, temb)))
        goto done;
    hx_template_mean(temb, t.M, nt, E, emb);
    if ((rc = hx_text_bank_create(&bank, emb, t.n_sub, t.N, E)))
        goto done;
    struct hx_clip_view view = {m, HX_VANILLA};
    if ((rc = hx_variant_parse(pre.variant, &view.variant)))
        goto done;
    struct hx_dense_encoder enc = {&view, E, hx_clip_cfg(m)->vision.patch_size,
                                   hx_clip_encode_view};
    struct hx_queries q = {bank, t.name_class, cn.n, pt};
    pre.params.pamr.threads = 2;
    rc = hx_dense_segment(&enc, &pre.params, &q, im, im->h, im->w, pred, NULL);
done:
    for (int i = 0; texts && i < t.M * nt; i++)
        free(texts[i]);
    free(texts);
    for (int j = 0; j < nt; j++)
        free(tmpl[j]);
    free(tmpl);
    free(temb), free(emb);
    hx_text_bank_free(bank);
    text_side_free(&t);
    hx_classnames_free(&cn);
    hx_clip_free(m);
    return rc;
}

static int run(int argc, char **argv)
{
    const char *model = NULL, *image = NULL, *dataset = NULL, *protocol = NULL, *subs = NULL;
    const char *ens = NULL, *out = NULL;
    int k = 5, n, code;
    struct cli_opt opts[] = {{"model", CLI_STR, &model},       {"image", CLI_STR, &image},
                             {"dataset", CLI_STR, &dataset},   {"protocol", CLI_STR, &protocol},
                             {"subclasses", CLI_STR, &subs},   {"k", CLI_INT, &k},
                             {"ensemble", CLI_STR, &ens},      {"out", CLI_STR, &out}};
    char *pos[argc];
    if ((code = cli_parse(argv[0], argc, argv, opts, 8, pos, &n)))
        return code;
    if (n)
        return cli_usage_error(argv[0], "unexpected argument '%s'", pos[0]);
    if ((code = cli_require(argv[0], model, "model")) ||
        (code = cli_require(argv[0], image, "image")) ||
        (code = cli_require(argv[0], dataset, "dataset")) ||
        (code = cli_require(argv[0], protocol, "protocol")) ||
        (code = cli_require(argv[0], out, "out")))
        return code;
    if (k < 0)
        return cli_usage_error(argv[0], "--k must be >= 0");
    const struct hx_dataset *d = hx_dataset_find(dataset);
    if (!d)
        return cli_usage_error(argv[0], "unknown dataset '%s' (see 'harness datasets')",
                               dataset);
    int simseg = !strcmp(protocol, "simseg");
    struct hx_dense_preset pre;
    if (!simseg && hx_dense_preset_get(protocol, dataset, &pre))
        return cli_usage_error(argv[0], "--protocol: %s (or simseg)", hx_errmsg());
    struct hx_ens_point pt = {subs ? HX_ENS_EMBED_SOFTMAX : HX_ENS_SUPER, k, 0};
    if (ens && hx_ens_rule_parse(ens, &pt.rule))
        return cli_usage_error(argv[0], "--ensemble: %s", hx_errmsg());
    if (pt.rule != HX_ENS_SUPER && !subs)
        return cli_usage_error(argv[0], "--ensemble %s needs --subclasses", ens);
    if (simseg != hx_simseg_probe(model))
        return cli_usage_error(argv[0], "%s is %s model directory; --protocol %s needs %s",
                               model, simseg ? "not a SimSeg" : "a SimSeg", protocol,
                               simseg ? "a SimSeg model" : "a CLIP model");
    struct hx_subclasses sc = {0};
    struct hx_image im = {0};
    uint8_t *pred = NULL;
    int rc;
    if ((subs && (rc = hx_subclasses_read(subs, 0, &sc))) || (rc = hx_image_load(&im, image)))
        goto fail;
    if (!(pred = hx_malloc((size_t)im.w * im.h, "label map"))) {
        rc = HX_ENOMEM;
        goto fail;
    }
    rc = simseg ? run_simseg(model, &im, d, &sc, k, pt, pred)
                : run_dense(model, protocol, &im, d, &sc, k, pt, pred);
    if (rc || (rc = hx_labelmap_write(out, pred, im.w, im.h)))
        goto fail;
    code = 0;
    goto done;
fail:
    code = cli_fail(argv[0], rc);
done:
    free(pred);
    hx_image_free(&im);
    hx_subclasses_free(&sc);
    return code;
}

const struct hx_command hx_cmd_segment = {
    "segment", "segment one image with a protocol (simseg or a dense preset) -> label PNG",
    usage, run};
