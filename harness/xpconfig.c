#include "harness/xpconfig.h"

#include "datasets/datasets.h"

#include "harness/atomicio.h"
#include "harness/error.h"
#include "harness/llm.h"
#include "models/clip/clip.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_STR, K_STR_NULL, K_INT, K_NUM, K_NUM_NULL, K_BOOL, K_INTS, K_NUM3, K_OBJ, K_SUBS };

static const struct field {
    const char *path;
    enum kind kind;
} schema[] = {
    {"name", K_STR},
    {"backend", K_STR},
    {"model", K_STR},
    {"method", K_STR_NULL},
    {"variant", K_STR},
    {"dataset", K_OBJ},
    {"dataset.name", K_STR},
    {"dataset.root", K_STR},
    {"dataset.split", K_STR},
    {"dataset.limit", K_INT},
    {"dataset.classnames", K_STR_NULL},
    {"protocol", K_OBJ},
    {"protocol.short_side", K_INT},
    {"protocol.long_max", K_INT},
    {"protocol.crop", K_INT},
    {"protocol.stride", K_INT},
    {"protocol.logit_scale", K_NUM},
    {"protocol.prob_thd", K_NUM},
    {"protocol.area_thd", K_NUM_NULL},
    {"protocol.argmax_cos", K_BOOL},
    {"protocol.pamr_iters", K_INT},
    {"protocol.pamr_dilations", K_INTS},
    {"protocol.mean", K_NUM3},
    {"protocol.std", K_NUM3},
    {"protocol.top_k", K_INT},
    {"protocol.candidates", K_INT},
    {"protocol.std_mult", K_NUM},
    {"protocol.crf_iters", K_INT},
    {"protocol.close_size", K_INT},
    {"protocol.tau", K_NUM},
    {"templates", K_STR},
    {"subclasses", K_SUBS},
    {"subclasses_dedupe", K_BOOL},
    {"k", K_INT},
    {"include_super", K_BOOL},
    {"ensemble", K_STR},
    {"output", K_STR},
    {"cache", K_STR},
    {"cache_f16", K_BOOL},
    {"overlays", K_INT},
    {"bootstrap", K_INT},
    {"save_predictions", K_BOOL},
};
#define NFIELDS (sizeof schema / sizeof schema[0])

struct axis_ref {
    const struct field *f;
    const cJSON *values; /* the array */
};

struct parse {
    cJSON *root;
    int naxes;
    struct axis_ref axes[16];
    const struct field *leaf[NFIELDS]; /* fields present */
    const cJSON *item[NFIELDS];
    int nleaf;
};

static const struct field *find_field(const char *path)
{
    for (size_t i = 0; i < NFIELDS; i++)
        if (!strcmp(schema[i].path, path))
            return &schema[i];
    return NULL;
}

static const char *kind_name(enum kind k)
{
    switch (k) {
    case K_STR: return "a string";
    case K_STR_NULL: return "a string or null";
    case K_INT: return "an integer";
    case K_NUM: return "a number";
    case K_NUM_NULL: return "a number or null";
    case K_BOOL: return "true or false";
    case K_INTS: return "a list of integers";
    case K_NUM3: return "a list of 3 numbers";
    case K_OBJ: return "an object";
    case K_SUBS: return "a file name, null or {\"llm\": {...}}";
    }
    return "?";
}

/* Does v have the scalar (or list-valued) type of kind k? */
static int type_ok(enum kind k, const cJSON *v)
{
    switch (k) {
    case K_STR: return cJSON_IsString(v);
    case K_STR_NULL: return cJSON_IsString(v) || cJSON_IsNull(v);
    case K_INT: return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) &&
                       fabs(v->valuedouble) < 2e9;
    case K_NUM: return cJSON_IsNumber(v);
    case K_NUM_NULL: return cJSON_IsNumber(v) || cJSON_IsNull(v);
    case K_BOOL: return cJSON_IsBool(v);
    case K_INTS: {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) < 1 || cJSON_GetArraySize(v) > 8)
            return 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, v) if (!type_ok(K_INT, e) || e->valueint < 1) return 0;
        return 1;
    }
    case K_NUM3: {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3)
            return 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, v) if (!cJSON_IsNumber(e)) return 0;
        return 1;
    }
    case K_OBJ: return cJSON_IsObject(v);
    case K_SUBS:
        return cJSON_IsString(v) || cJSON_IsNull(v) ||
               (cJSON_IsObject(v) && cJSON_GetArraySize(v) == 1 &&
                cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(v, "llm")));
    }
    return 0;
}

static int is_list_kind(enum kind k) { return k == K_INTS || k == K_NUM3; }

/* Walk an object, checking keys and collecting leaves and sweep axes. */
static int walk(struct parse *ps, const cJSON *obj, const char *prefix)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, obj)
    {
        char path[160];
        snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", v->string);
        const struct field *f = find_field(path);
        if (!f)
            return hx_err(HX_EINVAL, "unknown key '%s'", path);
        for (int i = 0; i < ps->nleaf; i++)
            if (ps->leaf[i] == f)
                return hx_err(HX_EINVAL, "key '%s' appears twice", path);
        if (f->kind == K_OBJ) {
            if (!cJSON_IsObject(v))
                return hx_err(HX_EINVAL, "%s: expected an object", path);
            int rc = walk(ps, v, path);
            if (rc)
                return rc;
            continue;
        }
        int sweep = cJSON_IsArray(v) && (!is_list_kind(f->kind) ||
                                         (cJSON_GetArraySize(v) > 0 &&
                                          cJSON_IsArray(cJSON_GetArrayItem(v, 0))));
        if (sweep) {
            if (cJSON_GetArraySize(v) < 1)
                return hx_err(HX_EINVAL, "%s: an empty list sweeps nothing", path);
            if (ps->naxes == 16)
                return hx_err(HX_EINVAL, "%s: at most 16 swept fields", path);
            int i = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, v)
            {
                if (!type_ok(f->kind, e))
                    return hx_err(HX_EINVAL, "%s[%d]: expected %s", path, i, kind_name(f->kind));
                i++;
            }
            ps->axes[ps->naxes++] = (struct axis_ref){f, v};
        } else if (!type_ok(f->kind, v)) {
            return hx_err(HX_EINVAL, "%s: expected %s (or a list of them to sweep)", path,
                          kind_name(f->kind));
        }
        ps->leaf[ps->nleaf] = f;
        ps->item[ps->nleaf++] = v;
    }
    return 0;
}

/* The value of field `path` at the point with axis indices idx (NULL when absent), and the
 * path to cite in errors. */
static const cJSON *get(const struct parse *ps, const int *idx, const char *path, char *where,
                        size_t wlen)
{
    snprintf(where, wlen, "%s", path);
    for (int a = 0; a < ps->naxes; a++)
        if (!strcmp(ps->axes[a].f->path, path)) {
            snprintf(where, wlen, "%s[%d]", path, idx[a]);
            return cJSON_GetArrayItem(ps->axes[a].values, idx[a]);
        }
    for (int i = 0; i < ps->nleaf; i++)
        if (!strcmp(ps->leaf[i]->path, path))
            return ps->item[i];
    return NULL;
}

static void print_value(const cJSON *v, char *out, size_t len)
{
    if (cJSON_IsString(v))
        snprintf(out, len, "%s", v->valuestring);
    else if (cJSON_IsNumber(v))
        snprintf(out, len, "%g", v->valuedouble);
    else if (cJSON_IsBool(v))
        snprintf(out, len, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNull(v))
        snprintf(out, len, "null");
    else {
        char *s = cJSON_PrintUnformatted(v);
        snprintf(out, len, "%s", s ? s : "?");
        free(s);
    }
}

static void copy_str(char *dst, size_t len, const cJSON *v, const char *dflt)
{
    snprintf(dst, len, "%s", cJSON_IsString(v) ? v->valuestring : dflt);
}

static int resolve_rest(const struct parse *ps, const int *idx, const char *name,
                        struct hx_xp_point *p);

#define GET(path) get(ps, idx, path, where, sizeof where)

/* The SimSeg protocol's fields (backend "simseg"); the text side and outputs follow as for
 * any backend. */
static int resolve_simseg(const struct parse *ps, const int *idx, struct hx_xp_point *p)
{
    char where[200];
    const cJSON *v;
    static const char *const dense_only[] = {
        "protocol.short_side", "protocol.long_max", "protocol.crop", "protocol.stride",
        "protocol.logit_scale", "protocol.prob_thd", "protocol.area_thd", "protocol.argmax_cos",
        "protocol.pamr_iters", "protocol.pamr_dilations", "protocol.mean", "protocol.std"};
    for (size_t i = 0; i < sizeof dense_only / sizeof *dense_only; i++)
        if (GET(dense_only[i]))
            return hx_err(HX_EINVAL, "%s: not a setting of the SimSeg protocol (backend simseg)",
                          dense_only[i]);
    copy_str(p->method, sizeof p->method, GET("method"), "simseg");
    if (strcmp(p->method, "simseg"))
        return hx_err(HX_EINVAL, "%s: backend simseg runs the SimSeg protocol; method '%s' is a "
                      "dense-protocol preset (backend clip)", where, p->method);
    copy_str(p->variant, sizeof p->variant, GET("variant"), "vanilla");
    if (strcmp(p->variant, "vanilla"))
        return hx_err(HX_EINVAL, "%s: SimSeg models have no dense variants", where);
    copy_str(p->templates, sizeof p->templates, GET("templates"), "imagenet80");
    if (!p->classnames[0] && hx_ssp_classnames(p->dataset))
        snprintf(p->classnames, sizeof p->classnames, "%s", hx_ssp_classnames(p->dataset));
    struct hx_ssp_params *q = &p->ssp;
    hx_ssp_params_default(q, p->dataset);
    q->crf_threads = 2;
    struct {
        const char *path;
        int *dst;
        int min;
    } ints[] = {{"protocol.top_k", &q->top_k, 1},
                {"protocol.candidates", &q->candidates, 1},
                {"protocol.crf_iters", &q->crf_iters, 0},
                {"protocol.close_size", &q->close_size, 0}};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        if ((v = GET(ints[i].path))) {
            if (v->valueint < ints[i].min)
                return hx_err(HX_EINVAL, "%s: must be >= %d", where, ints[i].min);
            *ints[i].dst = v->valueint;
        }
    if (q->candidates > HX_SSP_MAX_CANDIDATES)
        return hx_err(HX_EINVAL, "protocol.candidates: at most %d", HX_SSP_MAX_CANDIDATES);
    if (q->close_size > 0 && q->close_size % 2 == 0)
        return hx_err(HX_EINVAL, "protocol.close_size: must be odd (or 0 for none)");
    if ((v = GET("protocol.std_mult")))
        q->std_mult = (float)v->valuedouble;
    if ((v = GET("protocol.tau"))) {
        if (!(v->valuedouble > 0))
            return hx_err(HX_EINVAL, "%s: must be positive", where);
        q->tau = (float)v->valuedouble;
    }
    return 0;
}

static int resolve_point(const struct parse *ps, const int *idx, const char *name,
                         struct hx_xp_point *p)
{
    char where[200];
    const cJSON *v;
    int rc;
    copy_str(p->backend, sizeof p->backend, GET("backend"), "clip");
    p->simseg = !strcmp(p->backend, "simseg");
    if (strcmp(p->backend, "clip") && !p->simseg)
        return hx_err(HX_EINVAL, "%s: unknown backend '%s' (available: clip, simseg)", where,
                      p->backend);
    if (!cJSON_IsString(v = GET("model")))
        return hx_err(HX_EINVAL, "model: required (a model directory)");
    copy_str(p->model, sizeof p->model, v, "");
    if (!cJSON_IsString(v = GET("dataset.name")))
        return hx_err(HX_EINVAL, "dataset.name: required");
    copy_str(p->dataset, sizeof p->dataset, v, "");
    if (!cJSON_IsString(v = GET("dataset.root")))
        return hx_err(HX_EINVAL, "dataset.root: required");
    copy_str(p->root, sizeof p->root, v, "");
    copy_str(p->split, sizeof p->split, GET("dataset.split"), "");
    const struct hx_dataset *ds = hx_dataset_find(p->dataset);
    if (ds) { /* an unknown dataset is reported when the run needs it */
        struct hx_dataset sp;
        if ((rc = hx_dataset_split(ds, p->split, &sp)))
            return hx_err(rc, "dataset.split: %s", hx_errmsg());
        snprintf(p->split, sizeof p->split, "%s", sp.split_name);
    }
    v = GET("dataset.limit");
    p->limit = v ? v->valueint : 0;
    if (p->limit < 0)
        return hx_err(HX_EINVAL, "%s: must be >= 0", where);
    copy_str(p->classnames, sizeof p->classnames, GET("dataset.classnames"), "");
    if (p->simseg)
        return (rc = resolve_simseg(ps, idx, p)) ? rc : resolve_rest(ps, idx, name, p);

    static const char *const simseg_only[] = {"protocol.top_k", "protocol.candidates",
                                              "protocol.std_mult", "protocol.crf_iters",
                                              "protocol.close_size", "protocol.tau"};
    for (size_t i = 0; i < sizeof simseg_only / sizeof *simseg_only; i++)
        if (GET(simseg_only[i]))
            return hx_err(HX_EINVAL, "%s: a setting of the SimSeg protocol (backend simseg)",
                          simseg_only[i]);

    /* method preset first, then explicit fields override it */
    struct hx_dense_preset pre = {0};
    copy_str(p->method, sizeof p->method, GET("method"), "");
    if (p->method[0]) {
        if ((rc = hx_dense_preset_get(p->method, p->dataset, &pre)))
            return hx_err(rc, "%s: %s", where, hx_errmsg());
    } else {
        pre.params.short_side = 336, pre.params.long_max = 2048;
        pre.params.crop = 224, pre.params.stride = 112;
        pre.params.logit_scale = 40, pre.params.area_thd = -1;
        memcpy(pre.params.mean, hx_clip_mean, sizeof pre.params.mean);
        memcpy(pre.params.std, hx_clip_std, sizeof pre.params.std);
        pre.variant = "vanilla";
        pre.templates = 80;
    }
    p->params = pre.params;
    p->literal_background = pre.literal_background;
    copy_str(p->variant, sizeof p->variant, GET("variant"), pre.variant);
    enum hx_variant var;
    if (hx_variant_parse(p->variant, &var))
        return hx_err(HX_EINVAL, "%s: %s", GET("variant") ? where : "method", hx_errmsg());
    copy_str(p->templates, sizeof p->templates, GET("templates"),
             pre.templates == 85 ? "maskclip85" : "imagenet80");

    struct hx_dense_params *q = &p->params;
    struct {
        const char *path;
        int *dst;
        int min;
    } ints[] = {{"protocol.short_side", &q->short_side, 0},
                {"protocol.long_max", &q->long_max, 1},
                {"protocol.crop", &q->crop, 0},
                {"protocol.stride", &q->stride, 0},
                {"protocol.pamr_iters", &q->pamr.iters, 0}};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        if ((v = GET(ints[i].path))) {
            if (v->valueint < ints[i].min)
                return hx_err(HX_EINVAL, "%s: must be >= %d", where, ints[i].min);
            *ints[i].dst = v->valueint;
        }
    if ((q->crop == 0) != (q->stride == 0) || q->stride > q->crop)
        return hx_err(HX_EINVAL, "protocol.stride: must be in 1..crop (both 0 for the whole "
                      "image); got crop %d, stride %d", q->crop, q->stride);
    if ((v = GET("protocol.logit_scale"))) {
        if (!(v->valuedouble > 0))
            return hx_err(HX_EINVAL, "%s: must be positive", where);
        q->logit_scale = (float)v->valuedouble;
    }
    if ((v = GET("protocol.prob_thd"))) {
        if (v->valuedouble < 0 || v->valuedouble > 1)
            return hx_err(HX_EINVAL, "%s: must be in [0, 1]", where);
        q->prob_thd = (float)v->valuedouble;
    }
    if ((v = GET("protocol.area_thd"))) {
        if (cJSON_IsNumber(v) && (v->valuedouble < 0 || v->valuedouble > 1))
            return hx_err(HX_EINVAL, "%s: must be in [0, 1] or null", where);
        q->area_thd = cJSON_IsNumber(v) ? (float)v->valuedouble : -1;
    }
    if ((v = GET("protocol.argmax_cos")))
        q->argmax_cos = cJSON_IsTrue(v);
    if ((v = GET("protocol.pamr_dilations"))) {
        q->pamr.n_dilations = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, v) q->pamr.dilations[q->pamr.n_dilations++] = e->valueint;
    }
    if (q->pamr.iters > 0 && q->pamr.n_dilations == 0)
        q->pamr.n_dilations = 2, q->pamr.dilations[0] = 8, q->pamr.dilations[1] = 16;
    q->pamr.threads = 2;
    float *vec[2] = {q->mean, q->std};
    const char *vp[2] = {"protocol.mean", "protocol.std"};
    for (int k = 0; k < 2; k++)
        if ((v = GET(vp[k]))) {
            for (int c = 0; c < 3; c++) {
                double x = cJSON_GetArrayItem(v, c)->valuedouble;
                if (k == 1 && !(x > 0))
                    return hx_err(HX_EINVAL, "%s: std must be positive", where);
                vec[k][c] = (float)x;
            }
        }

    return resolve_rest(ps, idx, name, p);
}

static int resolve_rest(const struct parse *ps, const int *idx, const char *name,
                        struct hx_xp_point *p)
{
    char where[200];
    const cJSON *v;
    int rc;
    v = GET("subclasses");
    copy_str(p->subclasses, sizeof p->subclasses, v, "");
    if (cJSON_IsObject(v)) {
        struct hx_llm_request req;
        hx_llm_request_defaults(&req);
        char llm_where[sizeof where + 8];
        snprintf(llm_where, sizeof llm_where, "%s.llm", where);
        rc = hx_llm_request_from_json(&req, cJSON_GetObjectItemCaseSensitive(v, "llm"),
                                      llm_where);
        hx_llm_request_release(&req);
        if (rc)
            return rc;
        if (!(p->llm_request = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(v, "llm"))))
            return hx_err(HX_ENOMEM, "out of memory");
    }
    v = GET("subclasses_dedupe");
    p->subclasses_dedupe = v && cJSON_IsTrue(v);
    v = GET("k");
    p->ens.k = v ? v->valueint : 0;
    if (p->ens.k < 0)
        return hx_err(HX_EINVAL, "%s: must be >= 0", where);
    v = GET("include_super");
    p->ens.include_super = v && cJSON_IsTrue(v);
    const cJSON *ens = GET("ensemble");
    if (ens) {
        if (hx_ens_rule_parse(ens->valuestring, &p->ens.rule))
            return hx_err(HX_EINVAL, "%s: %s", where, hx_errmsg());
    } else {
        p->ens.rule = HX_ENS_SUPER;
    }
    if (p->ens.rule != HX_ENS_SUPER && !p->subclasses[0] && !p->llm_request)
        return hx_err(HX_EINVAL, "%s: rule '%s' needs a subclass list (\"subclasses\")",
                      ens ? where : "ensemble", hx_ens_rule_name(p->ens.rule));

    char dflt[HX_XP_PATH];
    snprintf(dflt, sizeof dflt, "results/%s", name);
    copy_str(p->output, sizeof p->output, GET("output"), dflt);
    const char *env = getenv("HARNESS_CACHE");
    copy_str(p->cache, sizeof p->cache, GET("cache"), env && env[0] ? env : ".cache");
    v = GET("cache_f16");
    p->cache_f16 = v && cJSON_IsTrue(v);
    v = GET("overlays");
    p->overlays = v ? v->valueint : 4;
    v = GET("bootstrap");
    p->bootstrap = v ? v->valueint : 1000;
    v = GET("save_predictions");
    p->save_predictions = v && cJSON_IsTrue(v);
    if (p->overlays < 0 || p->bootstrap < 0)
        return hx_err(HX_EINVAL, "%s: must be >= 0", where);
#undef GET

    if (p->simseg && p->ens.rule == HX_ENS_VOTE)
        return hx_err(HX_EINVAL, "%s: the vote rule has no per-class map for the SimSeg "
                      "protocol", ens ? where : "ensemble");
    char view[96];
    if (p->simseg)
        hx_ssp_view_key(&p->ssp, view, sizeof view);
    else
        hx_view_key(&p->params, view, sizeof view);
    snprintf(p->feature_key, sizeof p->feature_key, "%s|%s|%s|%s|%s|%s|%d|%s|%s|%d", p->backend,
             p->model, p->variant, p->dataset, p->root, p->split, p->limit, view, p->cache,
             p->cache_f16);
    size_t k = 0;
    p->label[0] = 0;
    for (int a = 0; a < ps->naxes; a++) {
        char *val = p->values[a];
        print_value(cJSON_GetArrayItem(ps->axes[a].values, idx[a]), val, sizeof p->values[a]);
        const char *leafname = strrchr(ps->axes[a].f->path, '.');
        leafname = leafname ? leafname + 1 : ps->axes[a].f->path;
        k += (size_t)snprintf(p->label + k, sizeof p->label - k, "%s%s=%s", a ? " " : "",
                              leafname, val);
        if (k >= sizeof p->label)
            break;
    }
    return 0;
}

int hx_xp_parse(struct hx_xp **out, const char *json, const char *name)
{
    *out = NULL;
    struct parse ps = {0};
    int rc;
    struct hx_xp *xp = hx_calloc(1, sizeof *xp, "experiment");
    if (!xp)
        return HX_ENOMEM;
    ps.root = cJSON_Parse(json);
    if (!ps.root || !cJSON_IsObject(ps.root)) {
        const char *at = cJSON_GetErrorPtr();
        int line = 1;
        for (const char *s = json; at && s < at; s++)
            line += *s == '\n';
        rc = ps.root ? hx_err(HX_EINVAL, "the config is not a JSON object")
                     : hx_err(HX_EINVAL, "malformed JSON near line %d", line);
        goto fail;
    }
    if ((rc = walk(&ps, ps.root, "")))
        goto fail;
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(ps.root, "name");
    if (nm && !cJSON_IsString(nm)) {
        rc = hx_err(HX_EINVAL, "name: cannot be swept");
        goto fail;
    }
    snprintf(xp->name, sizeof xp->name, "%s", nm ? nm->valuestring : name);
    xp->naxes = ps.naxes;
    long total = 1;
    for (int a = 0; a < ps.naxes; a++) {
        snprintf(xp->axes[a].path, sizeof xp->axes[a].path, "%s", ps.axes[a].f->path);
        xp->axes[a].n = cJSON_GetArraySize(ps.axes[a].values);
        total *= xp->axes[a].n;
        if (total > 100000) {
            rc = hx_err(HX_EINVAL, "the sweep has more than 100000 points");
            goto fail;
        }
    }
    xp->npoints = (int)total;
    xp->points = hx_calloc(total, sizeof *xp->points, "sweep points");
    if (!xp->points) {
        rc = HX_ENOMEM;
        goto fail;
    }
    int idx[16] = {0};
    for (int i = 0; i < xp->npoints; i++) {
        /* mixed radix, the last axis fastest */
        for (int a = ps.naxes - 1, r = i; a >= 0; a--) {
            idx[a] = r % xp->axes[a].n;
            r /= xp->axes[a].n;
        }
        xp->points[i].index = i;
        if ((rc = resolve_point(&ps, idx, xp->name, &xp->points[i])))
            goto fail;
    }
    xp->config_text = strdup(json);
    cJSON_Delete(ps.root);
    *out = xp;
    return 0;
fail:
    cJSON_Delete(ps.root);
    hx_xp_free(xp);
    return rc;
}

int hx_xp_load(struct hx_xp **out, const char *path)
{
    uint8_t *buf;
    size_t len;
    int rc = hx_read_file(path, &buf, &len);
    if (rc)
        return rc;
    char stem[128];
    const char *base = strrchr(path, '/');
    snprintf(stem, sizeof stem, "%s", base ? base + 1 : path);
    char *dot = strrchr(stem, '.');
    if (dot)
        *dot = 0;
    char *text = realloc(buf, len + 1);
    if (!text) {
        free(buf);
        return hx_err(HX_ENOMEM, "out of memory reading %s", path);
    }
    text[len] = 0;
    rc = hx_xp_parse(out, text, stem);
    free(text);
    if (rc)
        return hx_err(rc, "%s: %s", path, hx_errmsg());
    snprintf((*out)->config_path, sizeof (*out)->config_path, "%s", path);
    return 0;
}

void hx_xp_free(struct hx_xp *xp)
{
    if (!xp)
        return;
    for (int i = 0; xp->points && i < xp->npoints; i++)
        free(xp->points[i].llm_request);
    free(xp->points);
    free(xp->config_text);
    free(xp);
}

