/* Experiment configs: one JSON file names every choice of the flow (DESIGN.md "The one flow");
 * any scalar field may be given as a list, and the run sweeps the Cartesian product of all
 * lists (the axes, in the order they appear in the file).
 *
 *   {
 *     "name": "demo",                       default: the file's stem
 *     "backend": "clip",                     clip (the dense protocol of SPEC 2) or simseg
 *                                            (SimSeg models and the SimSeg protocol, SPEC 3)
 *     "model": "models/synth-clip",          model directory
 *     "method": "sclip",                     optional preset (SPEC 2): sclip, clearclip,
 *                                            naclip, naclip-pamr, maskclip; it sets the
 *                                            variant, templates and protocol defaults
 *     "variant": "sclip",                    vanilla, maskclip, sclip, clearclip, naclip
 *     "dataset": {"name": "voc21", "root": "data/voc", "limit": 0, "classnames": "file"},
 *     "protocol": {"short_side": 336, "long_max": 2048, "crop": 224, "stride": 112,
 *                  "logit_scale": 40, "prob_thd": 0.1, "area_thd": null, "argmax_cos": false,
 *                  "pamr_iters": 0, "pamr_dilations": [8, 16]},
 *                                            with "backend": "simseg" the fields are instead
 *                                            (defaults: SimSeg's settings for the dataset)
 *                                            {"top_k": 10, "candidates": 5, "std_mult": 1.0,
 *                                             "crf_iters": 3, "close_size": 7, "tau": 100}
 *                                            and "method" may only be "simseg"; the class
 *                                            names default to SimSeg's own lists (voc21,
 *                                            context60, coco_object) and background gets no
 *                                            subclasses; "ensemble" shapes the per-class map
 *     "templates": "imagenet80",             imagenet80, maskclip85, single, none, or a file
 *                                            with one template per line ("{}" = the name)
 *     "subclasses": "file.json",             {"class": ["sub", ...]}, or null, or an LLM
 *                                            request {"llm": {"base_url": ..., "model": ...,
 *                                            "n": 5, ...}} (fields as in harness/llm.h),
 *                                            answered through the cache <cache>/llm
 *     "subclasses_dedupe": false,            drop repeated entries inside a list (the
 *                                            released lists are used as released by default)
 *     "k": 5, "include_super": false, "ensemble": "embed-softmax",
 *     "output": "results/demo", "cache": ".cache", "cache_f16": false,
 *     "overlays": 4, "bootstrap": 1000, "save_predictions": false
 *   }
 * Fields whose value is itself a list (pamr_dilations) sweep when given a list of lists.
 * Relative paths are taken from the current directory. Unknown keys, wrong types and bad
 * values are errors naming the key path, e.g. "ensemble[2]: unknown rule 'maxx'".
 *
 * Ownership: hx_xp_load allocates the plan (free with hx_xp_free). */
#ifndef HX_XPCONFIG_H
#define HX_XPCONFIG_H

#include "harness/ensemble.h"
#include "harness/protocol.h"
#include "harness/simseg_protocol.h"

#include <stddef.h>

#define HX_XP_PATH 1024

struct hx_xp_point {
    int index;                     /* 0-based position in the sweep */
    char label[512];               /* "k=3 ensemble=max" (the axis values), "" without axes */
    char values[16][96];           /* [naxes] each axis's value at this point, as printed */
    char backend[32], model[HX_XP_PATH], variant[32], method[32];
    char dataset[32], root[HX_XP_PATH], classnames[HX_XP_PATH];
    char split[32];                /* the dataset's split, resolved ("val" by default) */
    int limit;                     /* images; 0 = all */
    struct hx_dense_params params;    /* backend clip */
    int simseg;                       /* backend simseg: the SimSeg protocol with */
    struct hx_ssp_params ssp;         /* these settings instead of params */
    int literal_background;        /* from a ClearCLIP preset */
    char templates[HX_XP_PATH];
    char subclasses[HX_XP_PATH];   /* a JSON file, "" = none */
    char *llm_request;             /* or the {"llm": ...} object as JSON text (owned by the
                                      plan), NULL = none */
    int subclasses_dedupe;
    struct hx_ens_point ens;
    char output[HX_XP_PATH], cache[HX_XP_PATH];
    int cache_f16, overlays, bootstrap;
    int save_predictions;          /* write each prediction as points/<NNN>/pred/<id>.png */
    char feature_key[4 * HX_XP_PATH + 256]; /* equal for points that share image features */
};

struct hx_xp_axis {
    char path[128];                /* e.g. "protocol.prob_thd" */
    int n;                         /* values */
};

struct hx_xp {
    char name[128];
    char config_path[HX_XP_PATH];
    char *config_text;             /* the file as read */
    int naxes;
    struct hx_xp_axis axes[16];
    int npoints;
    struct hx_xp_point *points;    /* [npoints] */
};

int hx_xp_load(struct hx_xp **out, const char *path);
/* The same from a JSON string (tests); `name` stands in for the file stem. */
int hx_xp_parse(struct hx_xp **out, const char *json, const char *name);
void hx_xp_free(struct hx_xp *xp);

#endif
