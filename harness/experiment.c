#include "harness/experiment.h"

#include "datasets/datasets.h"
#include "harness/atomicio.h"
#include "harness/crf.h"
#include "harness/error.h"
#include "harness/evaluate.h"
#include "harness/featcache.h"
#include "harness/labelmap.h"
#include "harness/llm.h"
#include "harness/metrics.h"
#include "harness/nn.h"
#include "harness/parallel.h"
#include "harness/prompts.h"
#include "harness/report.h"
#include "harness/score.h"
#include "harness/simseg_protocol.h"
#include "harness/subclasses.h"
#include "models/clip/clip.h"
#include "models/simseg/simseg.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ small helpers */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------ output */

static void say(const struct hx_run_opts *o, int to_log, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(const struct hx_run_opts *o, int to_log, const char *fmt, ...)
{
    if (!o->emit || (to_log && o->quiet))
        return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    o->emit(o->emit_ctx, to_log, buf);
}

/* ------------------------------------------------------------------ the lazily loaded model */

struct model {
    const char *dir;
    char fingerprint[64];
    int simseg;          /* backend simseg: sm, else m */
    struct hx_clip *m;
    struct hx_simseg *sm;
};

static int model_get(struct model *mo)
{
    if (mo->simseg)
        return mo->sm ? 0 : hx_simseg_open(&mo->sm, mo->dir, HX_SIMSEG_VISION | HX_SIMSEG_TEXT);
    if (mo->m)
        return 0;
    return hx_clip_open(&mo->m, mo->dir, HX_CLIP_VISION | HX_CLIP_TEXT);
}

static int encode_texts(void *ctx, const char *const *texts, int n, float *out)
{
    struct model *mo = ctx;
    int rc = model_get(mo);
    if (rc)
        return rc;
    return mo->simseg ? hx_simseg_encode_text(mo->sm, texts, n, out)
                      : hx_clip_encode_text(mo->m, texts, n, out);
}

/* The embedding size from the model's config, without loading the weights. */
static int model_dim(const struct model *mo, int *E)
{
    char cpath[1200];
    int rc;
    snprintf(cpath, sizeof cpath, "%s/config.json", mo->dir);
    if (mo->simseg) {
        struct hx_simseg_config cfg;
        if (!(rc = hx_simseg_config_load(&cfg, cpath)))
            *E = cfg.projection_dim;
    } else {
        struct hx_clip_config cfg;
        if (!(rc = hx_clip_config_load(&cfg, cpath)))
            *E = cfg.projection_dim;
    }
    return rc;
}

/* ------------------------------------------------------------------ per point state */

struct point_state {
    const struct hx_xp_point *p;
    struct hx_classnames cn;
    int *name_class;
    struct hx_text_bank *bank;
    struct hx_queries q;
    struct hx_metrics *metrics;
    char dir[1200];
    size_t images;     /* evaluated: the config's limit or --limit, capped by the dataset */
    const char *fp;    /* the model's fingerprint */
    const struct hx_dataset *d; /* with its split */
    int resumed;
};

static void point_state_free(struct point_state *s)
{
    hx_classnames_free(&s->cn);
    free(s->name_class);
    hx_text_bank_free(s->bank);
    hx_metrics_free(s->metrics);
}

/* The point's subclass lists: a JSON file, or an LLM request answered through the cache
 * (offline: from the cache only, nothing sent). */
static int load_subclasses(const struct hx_xp_point *p, char *const *firsts, int C, int offline,
                           struct hx_subclasses *out)
{
    memset(out, 0, sizeof *out);
    unsigned flags = p->subclasses_dedupe ? HX_SUBCLASSES_DEDUPE : 0;
    if (p->subclasses[0])
        return hx_subclasses_read(p->subclasses, flags, out);
    if (!p->llm_request)
        return 0;
    cJSON *obj = cJSON_Parse(p->llm_request);
    struct hx_llm_request req;
    struct hx_llm_report rep = {0};
    char dir[1200];
    hx_llm_request_defaults(&req);
    int rc = obj ? hx_llm_request_from_json(&req, obj, "subclasses.llm") : HX_ENOMEM;
    if (!rc) {
        req.offline |= offline;
        snprintf(dir, sizeof dir, "%s/llm", p->cache);
        rc = hx_llm_subclasses(&req, (const char *const *)firsts, C, dir, out, &rep);
        if (rc == HX_ENET)
            rc = hx_err(HX_ENET, "subclasses.llm: %d of %d classes got no answer: %s",
                        rep.n_failed, rep.n_classes, hx_errmsg());
    }
    hx_llm_report_free(&rep);
    hx_llm_request_release(&req);
    cJSON_Delete(obj);
    return rc;
}

/* Names of class c that become queries: all its synonyms, or (SimSeg, one embedding per
 * class) the first only. */
static int n_names(const struct point_state *s, int c)
{
    return s->p->simseg ? 1 : s->cn.nsyn[c];
}

/* The class-name file a point reads: its own, ClearCLIP's literal "background" variant of
 * the dataset's when there is one, or the dataset's. */
static void classnames_path(const struct hx_xp_point *p, const struct hx_dataset *d, char *out,
                            size_t len)
{
    if (p->classnames[0]) {
        snprintf(out, len, "%s", p->classnames);
        return;
    }
    if (p->literal_background) {
        snprintf(out, len, "datasets/classnames/%s_plain.txt", d->name);
        if (access(out, R_OK) == 0)
            return;
    }
    snprintf(out, len, "%s", d->classnames);
}

/* A point's prompts: per query name, the name then (first name only) its subclasses, each
 * in every template. */
struct point_texts {
    int N, M, nt;   /* query names, strings (names and subclasses), templates */
    int *name_sub;  /* [N] subclasses of each name */
    char **texts;   /* [M * nt] */
};

static void point_texts_free(struct point_texts *t)
{
    for (int i = 0; t->texts && i < t->M * t->nt; i++)
        free(t->texts[i]);
    free(t->texts), free(t->name_sub);
    memset(t, 0, sizeof *t);
}

/* Classes, names and subclasses -> the point's prompts; sets s->cn and s->name_class.
 * *unmatched receives the classes (other than class 0) that the subclass lists do not name.
 * SimSeg: background (class 0) gets no subclasses. */
static int point_texts(struct point_state *s, const struct hx_dataset *d, int offline,
                       struct point_texts *t, char *unmatched, size_t ulen)
{
    const struct hx_xp_point *p = s->p;
    char list[HX_XP_PATH];
    memset(t, 0, sizeof *t);
    unmatched[0] = 0;
    classnames_path(p, d, list, sizeof list);
    int rc = hx_dataset_classnames(d, list, &s->cn);
    if (rc)
        return rc;
    char **templates = NULL;
    const char **strings = NULL;
    struct hx_subclasses sc = {0};
    int C = s->cn.n, nt = 0, *cls_list = NULL;
    char **firsts = malloc(sizeof *firsts * C);
    if (!firsts)
        return HX_ENOMEM;
    for (int c = 0; c < C; c++) {
        firsts[c] = s->cn.syn[c][0];
        t->N += n_names(s, c);
    }
    if ((rc = hx_templates_read(p->templates, &templates, &nt)) ||
        (rc = load_subclasses(p, firsts, C, offline, &sc)))
        goto done;
    t->nt = nt;
    cls_list = malloc(sizeof *cls_list * C);
    t->name_sub = calloc(t->N, sizeof *t->name_sub);
    s->name_class = calloc(t->N, sizeof *s->name_class);
    if (!cls_list || !t->name_sub || !s->name_class) {
        rc = HX_ENOMEM;
        goto done;
    }
    size_t u = 0;
    for (int c = 0; c < C; c++) {
        cls_list[c] = sc.n ? hx_subclass_match(&sc, &s->cn, c) : -1;
        if (sc.n && cls_list[c] < 0 && c > 0 && u + 2 < ulen)
            u += (size_t)snprintf(unmatched + u, ulen - u, "%s%s", u ? ", " : "", firsts[c]);
    }
    for (int c = 0, k = 0; c < C; c++)
        for (int j = 0; j < n_names(s, c); j++, k++) {
            s->name_class[k] = c;
            t->name_sub[k] = j == 0 && cls_list[c] >= 0 && !(p->simseg && c == 0)
                                 ? sc.nsub[cls_list[c]] : 0;
            t->M += 1 + t->name_sub[k];
        }
    strings = malloc(sizeof *strings * t->M);
    t->texts = calloc((size_t)t->M * t->nt, sizeof *t->texts);
    if (!strings || !t->texts) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int c = 0, k = 0, m = 0; c < C; c++)
        for (int j = 0; j < n_names(s, c); j++, k++) {
            strings[m++] = s->cn.syn[c][j];
            for (int i = 0; i < t->name_sub[k]; i++)
                strings[m++] = sc.sub[cls_list[c]][i];
        }
    for (int m = 0; m < t->M; m++)
        for (int i = 0; i < t->nt; i++)
            if (!(t->texts[(size_t)m * t->nt + i] = hx_template_fill(templates[i], strings[m]))) {
                rc = HX_ENOMEM;
                goto done;
            }
done:
    if (rc)
        point_texts_free(t);
    hx_templates_free(templates, nt);
    hx_subclasses_free(&sc);
    free(strings), free(cls_list), free(firsts);
    return rc;
}

/* The point's prompts, embedded through the text cache and template-averaged -> its text
 * bank and queries. */
static int build_bank(struct point_state *s, const struct hx_dataset *d, struct model *mo,
                      char *unmatched, size_t ulen)
{
    struct point_texts t;
    int rc = point_texts(s, d, 0, &t, unmatched, ulen), E = 0;
    if (rc)
        return rc;
    float *temb = NULL, *emb = NULL;
    if ((rc = model_dim(mo, &E)))
        goto done;
    temb = malloc(sizeof(float) * (size_t)t.M * t.nt * E);
    emb = malloc(sizeof(float) * (size_t)t.M * E);
    if (!temb || !emb) {
        rc = HX_ENOMEM;
        goto done;
    }
    if ((rc = hx_text_cache_embed(s->p->cache, mo->fingerprint, E, encode_texts, mo,
                                  (const char *const *)t.texts, t.M * t.nt, temb, NULL)))
        goto done;
    hx_template_mean(temb, t.M, t.nt, E, emb);
    if ((rc = hx_text_bank_create(&s->bank, emb, t.name_sub, t.N, E)))
        goto done;
    s->q = (struct hx_queries){s->bank, s->name_class, s->cn.n, s->p->ens};
done:
    point_texts_free(&t);
    free(temb), free(emb);
    return rc;
}

/* ------------------------------------------------------------------ progress */

struct progress {
    double t0, last;
};

/* A redrawn bar on a terminal, a line every 5 s otherwise; `what` names the phase. */
static void progress(const struct hx_run_opts *o, struct progress *pr, const char *what,
                     size_t done, size_t total)
{
    double t = now(), el = t - pr->t0;
    if (done < total && t - pr->last < (o->tty ? 0.2 : 5.0))
        return;
    pr->last = t;
    double rate = el > 0 ? done / el : 0, eta = rate > 0 ? (total - done) / rate : 0;
    if (o->tty) {
        int width = 30, fill = total ? (int)(width * done / total) : width;
        say(o, 1, "\r%-6s [%.*s%*s] %zu/%zu  %.1f img/s  ETA %.0fs %s", what, fill,
            "##############################", width - fill, "", done, total, rate, eta,
            done == total ? "\n" : "");
    } else {
        say(o, 1, "%s: %zu/%zu images, %.1f img/s, ETA %.0f s\n", what, done, total, rate, eta);
    }
}

/* ------------------------------------------------------------------ outputs */

static int write_text(const char *path, const char *text)
{
    return hx_write_atomic(path, text, strlen(text));
}

/* A file's content hash as 16 hex digits, "" when it is not a readable file (e.g. a named
 * template set). */
static void file_hash(const char *path, char out[17])
{
    uint8_t *buf;
    size_t len;
    out[0] = 0;
    if (path[0] && !hx_read_file(path, &buf, &len)) {
        snprintf(out, 17, "%016llx", (unsigned long long)hx_hash64(buf, len, 0));
        free(buf);
    }
}

static void add_input(cJSON *o, const char *key, const char *path)
{
    char h[17];
    cJSON *i = cJSON_AddObjectToObject(o, key);
    cJSON_AddStringToObject(i, "path", path);
    file_hash(path, h);
    if (h[0])
        cJSON_AddStringToObject(i, "hash", h);
}

static void add_floats(cJSON *o, const char *key, const float *v, int n)
{
    cJSON *a = cJSON_AddArrayToObject(o, key);
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
}

/* Everything a point's result depends on: --resume reuses a point only when this is equal,
 * byte for byte, to what the finished run wrote. */
static cJSON *point_json(const struct hx_xp *xp, const struct point_state *s)
{
    const struct hx_xp_point *p = s->p;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", p->index);
    cJSON_AddStringToObject(o, "label", p->label);
    cJSON *vals = cJSON_AddObjectToObject(o, "axes");
    for (int a = 0; a < xp->naxes; a++)
        cJSON_AddStringToObject(vals, xp->axes[a].path, p->values[a]);
    cJSON_AddStringToObject(o, "backend", p->backend);
    cJSON_AddStringToObject(o, "model", p->model);
    cJSON_AddStringToObject(o, "model_fingerprint", s->fp);
    cJSON_AddStringToObject(o, "variant", p->variant);
    cJSON_AddStringToObject(o, "method", p->method);
    cJSON_AddStringToObject(o, "dataset", p->dataset);
    cJSON_AddStringToObject(o, "root", p->root);
    cJSON_AddStringToObject(o, "split", p->split);
    cJSON_AddNumberToObject(o, "limit", p->limit);
    cJSON_AddNumberToObject(o, "images", (double)s->images);
    cJSON *pr = cJSON_AddObjectToObject(o, "protocol");
    if (p->simseg) {
        const struct hx_ssp_params *q = &p->ssp;
        cJSON_AddStringToObject(pr, "name", "simseg");
        cJSON_AddNumberToObject(pr, "size", q->size);
        cJSON_AddNumberToObject(pr, "top_k", q->top_k);
        cJSON_AddNumberToObject(pr, "candidates", q->candidates);
        cJSON_AddNumberToObject(pr, "std_mult", q->std_mult);
        cJSON_AddNumberToObject(pr, "crf_iters", q->crf_iters);
        cJSON_AddNumberToObject(pr, "close_size", q->close_size);
        cJSON_AddNumberToObject(pr, "tau", q->tau);
    } else {
        const struct hx_dense_params *q = &p->params;
        cJSON_AddNumberToObject(pr, "short_side", q->short_side);
        cJSON_AddNumberToObject(pr, "long_max", q->long_max);
        cJSON_AddNumberToObject(pr, "crop", q->crop);
        cJSON_AddNumberToObject(pr, "stride", q->stride);
        add_floats(pr, "mean", q->mean, 3);
        add_floats(pr, "std", q->std, 3);
        cJSON_AddNumberToObject(pr, "logit_scale", q->logit_scale);
        cJSON_AddNumberToObject(pr, "prob_thd", q->prob_thd);
        if (q->area_thd >= 0)
            cJSON_AddNumberToObject(pr, "area_thd", q->area_thd);
        else
            cJSON_AddNullToObject(pr, "area_thd");
        cJSON_AddBoolToObject(pr, "argmax_cos", q->argmax_cos);
        cJSON_AddNumberToObject(pr, "pamr_iters", q->pamr.iters);
        cJSON *dl = cJSON_AddArrayToObject(pr, "pamr_dilations");
        for (int i = 0; i < q->pamr.n_dilations && q->pamr.iters > 0; i++)
            cJSON_AddItemToArray(dl, cJSON_CreateNumber(q->pamr.dilations[i]));
        cJSON_AddBoolToObject(pr, "literal_background", p->literal_background);
    }
    char cn[HX_XP_PATH];
    classnames_path(p, s->d, cn, sizeof cn);
    add_input(o, "classnames", cn);
    add_input(o, "templates", p->templates);
    if (p->subclasses[0])
        add_input(o, "subclasses", p->subclasses);
    else
        cJSON_AddNullToObject(o, "subclasses");
    if (p->llm_request)
        cJSON_AddStringToObject(o, "llm_request", p->llm_request);
    cJSON_AddBoolToObject(o, "subclasses_dedupe", p->subclasses_dedupe);
    cJSON_AddNumberToObject(o, "k", p->ens.k);
    cJSON_AddBoolToObject(o, "include_super", p->ens.include_super);
    cJSON_AddStringToObject(o, "ensemble", hx_ens_rule_name(p->ens.rule));
    cJSON_AddNumberToObject(o, "bootstrap", p->bootstrap);
    return o;
}

static int write_json(const char *path, cJSON *o)
{
    char *s = cJSON_Print(o);
    if (!s)
        return HX_ENOMEM;
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (t) {
        t[n] = '\n';
        t[n + 1] = 0;
        s = t;
    }
    int rc = write_text(path, s);
    free(s);
    return rc;
}

/* Finished point: metrics.json, per_class.csv, point.json. */
static int write_point(const struct hx_xp *xp, struct point_state *s)
{
    char path[1400];
    int rc;
    snprintf(path, sizeof path, "%s/metrics.json", s->dir);
    if ((rc = hx_eval_json_write(path, s->metrics, 255, s->p->bootstrap, 20240601)))
        return rc;
    int C = hx_metrics_num_classes(s->metrics);
    double *iou = malloc(sizeof(double) * C), *acc = malloc(sizeof(double) * C);
    struct hx_scores sc = {0};
    sc.iou = iou, sc.acc = acc;
    if (!iou || !acc) {
        free(iou), free(acc);
        return HX_ENOMEM;
    }
    hx_metrics_scores(s->metrics, &sc);
    size_t cap = 64 + (size_t)C * 160, k = 0;
    char *csv = malloc(cap);
    if (!csv) {
        free(iou), free(acc);
        return HX_ENOMEM;
    }
    k += (size_t)snprintf(csv + k, cap - k, "class,name,IoU,Acc\n");
    for (int c = 0; c < C; c++) {
        char name[96];
        snprintf(name, sizeof name, "%s", c < s->cn.n ? s->cn.syn[c][0] : "?");
        for (char *z = name; *z; z++)
            if (*z == ',' || *z == '"')
                *z = ' ';
        k += (size_t)snprintf(csv + k, cap - k, "%d,%s,%s%.6f,%s%.6f\n", c, name, "",
                              isnan(iou[c]) ? NAN : iou[c], "", isnan(acc[c]) ? NAN : acc[c]);
    }
    snprintf(path, sizeof path, "%s/per_class.csv", s->dir);
    rc = write_text(path, csv);
    free(csv), free(iou), free(acc);
    if (rc)
        return rc;
    cJSON *o = point_json(xp, s);
    snprintf(path, sizeof path, "%s/point.json", s->dir);
    rc = write_json(path, o);
    cJSON_Delete(o);
    return rc;
}

/* A resumable point: its point.json matches and metrics.json exists. */
static int finished(const struct hx_xp *xp, struct point_state *s)
{
    char path[1400];
    uint8_t *buf;
    size_t len;
    snprintf(path, sizeof path, "%s/metrics.json", s->dir);
    if (access(path, R_OK))
        return 0;
    snprintf(path, sizeof path, "%s/point.json", s->dir);
    if (hx_read_file(path, &buf, &len))
        return 0;
    cJSON *o = point_json(xp, s);
    char *want = cJSON_Print(o);
    cJSON_Delete(o);
    int same = want && len == strlen(want) + 1 && !memcmp(buf, want, len - 1);
    free(want);
    free(buf);
    return same;
}

/* ------------------------------------------------------------------ the run */

/* ------------------------------------------------------------------ the image loop */

/* The images of a group are split into contiguous ranges, one per worker thread; each worker
 * keeps its own metrics per point, appended in range order at the end, so the results (the
 * bootstrap included, which resamples by image order) do not depend on the thread count.
 * Features missing from the cache are encoded first, one image at a time with every core on
 * the model; the workers then read cached features (the cache serialises its HDF5 calls). */
struct group {
    const struct hx_xp *xp;
    const struct hx_run_opts *o;
    const struct hx_dataset *d;
    const struct hx_xp_point *p0;
    char **ids;
    size_t nids;
    struct point_state *st;
    int nm, need_guide, workers;
    struct model *mo;
    struct hx_clip_view cv;
    struct hx_featcache *fc;
    struct hx_metrics **wm; /* [workers][nm] */
    pthread_mutex_t lock;   /* the fields below, and the model */
    struct progress *pr;
    size_t done, encoded;
    int rc;
    char err[2048];
};

struct worker {
    uint8_t *pred, *crf_rgb;
    float *guide;
    struct hx_crf *crf; /* the SimSeg CRF of the current image, shared by the points */
    struct hx_dense_feats f;
    struct hx_image im;
    struct hx_labelmap lm;
};

static void worker_free(struct worker *w)
{
    free(w->pred), free(w->crf_rgb), free(w->guide);
    hx_crf_free(w->crf);
    hx_dense_feats_free(&w->f);
    hx_image_free(&w->im);
    hx_labelmap_free(&w->lm);
}

static int load_image(const struct group *g, const char *id, struct hx_image *im)
{
    char *img_path = NULL, *label_path = NULL;
    int rc = hx_dataset_paths(g->d, g->p0->root, id, &img_path, &label_path, NULL);
    free(label_path);
    if (!rc)
        rc = hx_image_load(im, img_path);
    free(img_path);
    return rc;
}

/* Encode one image's features and store them (the caller holds the model). */
static int encode(struct group *g, const char *id, const struct hx_image *im,
                  struct hx_dense_feats *f)
{
    int rc;
    if ((rc = model_get(g->mo)))
        return rc;
    if (g->p0->simseg) {
        const struct hx_simseg_config *sc = hx_simseg_cfg(g->mo->sm);
        struct hx_dense_encoder enc = {g->mo->sm, sc->projection_dim, sc->patch_size,
                                       hx_ssp_simseg_encode};
        rc = hx_ssp_features(&enc, &g->p0->ssp, im, f);
    } else {
        g->cv.model = g->mo->m;
        struct hx_dense_encoder enc = {&g->cv, hx_clip_cfg(g->mo->m)->projection_dim,
                                       hx_clip_cfg(g->mo->m)->vision.patch_size,
                                       hx_clip_encode_view};
        rc = hx_dense_features(&enc, &g->p0->params, im, f);
    }
    if (!rc && !(rc = hx_featcache_put(g->fc, id, f)))
        g->encoded++;
    return rc;
}

static int encode_missing(struct group *g)
{
    struct hx_image im = {0};
    struct hx_dense_feats f = {0};
    int rc = 0;
    size_t missing = 0, done = 0;
    for (size_t i = 0; i < g->nids; i++)
        missing += !hx_featcache_has(g->fc, g->ids[i]);
    for (size_t i = 0; i < g->nids && !rc && done < missing; i++) {
        if (hx_featcache_has(g->fc, g->ids[i]))
            continue;
        if (!(rc = load_image(g, g->ids[i], &im)))
            rc = encode(g, g->ids[i], &im, &f);
        hx_dense_feats_free(&f);
        hx_image_free(&im);
        if (!rc)
            progress(g->o, g->pr, "encode", ++done, missing);
    }
    return rc;
}

static int eval_image(struct group *g, int wi, size_t i, struct worker *w)
{
    const struct hx_xp_point *p0 = g->p0;
    const char *id = g->ids[i];
    int want_overlay = 0, rc;
    for (int k = 0; k < g->nm; k++)
        want_overlay |= !g->st[k].resumed && i < (size_t)g->st[k].p->overlays;
    rc = hx_featcache_get(g->fc, id, &w->f);
    if (rc && rc != HX_ENOTFOUND)
        return rc;
    /* SimSeg's CRF needs the image itself */
    int need_image = rc == HX_ENOTFOUND || g->need_guide || want_overlay || p0->simseg;
    if (need_image && (rc = load_image(g, id, &w->im)))
        return rc;
    if (!w->f.dense) { /* damaged or removed since the encoding pass: encode it again */
        pthread_mutex_lock(&g->lock);
        rc = encode(g, id, &w->im, &w->f);
        pthread_mutex_unlock(&g->lock);
        if (rc)
            return rc;
    }
    if (p0->simseg) {
        size_t n = (size_t)3 * p0->ssp.size * p0->ssp.size;
        if (!w->crf_rgb && !(w->crf_rgb = hx_malloc(n, "CRF image")))
            return HX_ENOMEM;
        if ((rc = hx_ssp_crf_image(&p0->ssp, &w->im, w->crf_rgb)))
            return rc;
    }
    if ((rc = hx_dataset_label(g->d, p0->root, id, &w->lm)))
        return rc;
    struct hx_labelmap *lm = &w->lm;
    size_t npx = (size_t)lm->w * lm->h;
    uint8_t *grown = realloc(w->pred, npx);
    if (!grown)
        return hx_err(HX_ENOMEM, "out of memory for a %dx%d prediction", lm->w, lm->h);
    w->pred = grown;
    if (g->need_guide) {
        float *gd = realloc(w->guide, sizeof(float) * 3 * npx);
        if (!gd)
            return hx_err(HX_ENOMEM, "out of memory for a %dx%d PAMR guide", lm->w, lm->h);
        w->guide = gd;
        if ((rc = hx_dense_guide(&p0->params, &w->im, lm->h, lm->w, w->guide)))
            return rc;
    }
    for (int k = 0; k < g->nm; k++) {
        struct point_state *s = &g->st[k];
        if (s->resumed)
            continue;
        if (s->p->simseg) /* one CRF (lattices) per image for all points */
            rc = hx_ssp_predict_shared(&s->p->ssp, s->bank, &s->p->ens, &w->f, w->crf_rgb,
                                       &w->crf, lm->h, lm->w, w->pred, NULL);
        else
            rc = hx_dense_predict(&s->p->params, &s->q, &w->f, w->guide, lm->h, lm->w, w->pred,
                                  NULL);
        if (rc || (rc = hx_metrics_add(g->wm[(size_t)wi * g->nm + k], w->pred, lm->px, npx)))
            return rc;
        if (s->p->save_predictions) {
            char path[1600];
            snprintf(path, sizeof path, "%s/pred/", s->dir);
            size_t n = strlen(path);
            for (const char *z = id; *z && n + 5 < sizeof path; z++)
                path[n++] = *z == '/' ? '_' : *z;
            snprintf(path + n, sizeof path - n, ".png");
            if ((rc = hx_labelmap_write(path, w->pred, lm->w, lm->h)))
                return rc;
        }
        if (i < (size_t)s->p->overlays && w->im.px) {
            char path[1600];
            snprintf(path, sizeof path, "%s/overlays/%03d-%s.png", s->p->output, s->p->index, id);
            for (char *z = path + strlen(s->p->output) + 10; *z; z++)
                if (*z == '/')
                    *z = '_';
            if ((rc = hx_report_overlay(path, &w->im, lm->px, w->pred, lm->w, lm->h)))
                return rc;
        }
    }
    hx_dense_feats_free(&w->f);
    hx_labelmap_free(&w->lm);
    hx_image_free(&w->im);
    hx_crf_free(w->crf);
    w->crf = NULL;
    return 0;
}

static void eval_range(void *ctx, int w0, int w1)
{
    struct group *g = ctx;
    for (int wi = w0; wi < w1; wi++) {
        struct worker w = {0};
        size_t a = g->nids * wi / g->workers, b = g->nids * (wi + 1) / g->workers;
        for (size_t i = a; i < b; i++) {
            pthread_mutex_lock(&g->lock);
            int stop = g->rc != 0;
            pthread_mutex_unlock(&g->lock);
            if (stop)
                break;
            int rc = eval_image(g, wi, i, &w);
            pthread_mutex_lock(&g->lock);
            if (rc && !g->rc) { /* error messages are per thread: keep this one's */
                g->rc = rc;
                snprintf(g->err, sizeof g->err, "%s", hx_errmsg());
            }
            if (!rc)
                progress(g->o, g->pr, "run", ++g->done, g->nids);
            pthread_mutex_unlock(&g->lock);
            if (rc)
                break;
        }
        worker_free(&w);
    }
}

static int eval_images(struct group *g)
{
    int rc = 0, C = g->d->num_classes;
    g->workers = hx_default_threads();
    if ((size_t)g->workers > g->nids)
        g->workers = g->nids ? (int)g->nids : 1;
    g->wm = calloc((size_t)g->workers * g->nm, sizeof *g->wm);
    if (!g->wm)
        return hx_err(HX_ENOMEM, "out of memory for per-thread metrics");
    for (int wi = 0; wi < g->workers && !rc; wi++)
        for (int k = 0; k < g->nm && !rc; k++)
            if (!g->st[k].resumed)
                rc = hx_metrics_new(&g->wm[(size_t)wi * g->nm + k], C, g->d->ignore_index);
    if (!rc) {
        /* the cores go to the images: one BLAS thread per worker */
        int blas = hx_get_threads();
        if (g->workers > 1)
            hx_set_threads(1);
        hx_parallel_for(g->workers, g->workers, eval_range, g);
        if (g->workers > 1)
            hx_set_threads(blas);
        if ((rc = g->rc))
            hx_err(rc, "%s", g->err);
    }
    for (int wi = 0; wi < g->workers && !rc; wi++)
        for (int k = 0; k < g->nm && !rc; k++)
            if (!g->st[k].resumed)
                rc = hx_metrics_append(g->st[k].metrics, g->wm[(size_t)wi * g->nm + k]);
    for (size_t i = 0; i < (size_t)g->workers * g->nm; i++)
        hx_metrics_free(g->wm[i]);
    free(g->wm);
    return rc;
}

/* A dry run's line for one point: its prompts and how many the text cache lacks, or that its
 * subclass lists still need the LLM. Reads caches only. */
static int dry_point(const struct hx_run_opts *o, const struct hx_xp_point *p,
                     const struct hx_dataset *d, struct model *mo)
{
    struct point_state s;
    memset(&s, 0, sizeof s);
    s.p = p;
    struct point_texts t;
    char unmatched[1024];
    const char *label = p->label[0] ? p->label : "(single point)";
    int E = 0, missing = 0, rc = point_texts(&s, d, 1, &t, unmatched, sizeof unmatched);
    if (rc == HX_ENET) {
        say(o, 0, "  point %3d  %s: subclasses not all cached, the run asks the LLM (%s)\n",
            p->index, label, hx_errmsg());
        rc = 0;
    } else if (!rc && !(rc = model_dim(mo, &E)) &&
               !(rc = hx_text_cache_missing(p->cache, mo->fingerprint, E,
                                            (const char *const *)t.texts, t.M * t.nt, &missing))) {
        say(o, 0, "  point %3d  %s: %d prompts, %d to encode\n", p->index, label, t.M * t.nt,
            missing);
    }
    point_texts_free(&t);
    point_state_free(&s);
    return rc;
}

static int run_group(const struct hx_xp *xp, const struct hx_run_opts *o, int *members, int nm,
                     struct progress *pr)
{
    const struct hx_xp_point *p0 = &xp->points[members[0]];
    const struct hx_dataset *reg = hx_dataset_find(p0->dataset);
    if (!reg)
        return hx_err(HX_EINVAL, "dataset.name: unknown dataset '%s' (see 'harness datasets')",
                      p0->dataset);
    struct hx_dataset split;
    const struct hx_dataset *d = &split;
    char **ids = NULL;
    size_t nall = 0;
    int rc = hx_dataset_split(reg, p0->split, &split);
    if (!rc)
        rc = hx_dataset_ids(d, p0->root, &ids, &nall);
    if (rc)
        return rc;
    size_t limit = o->limit > 0 ? (size_t)o->limit : (size_t)p0->limit, nids = nall;
    if (limit && limit < nids)
        nids = limit;
    struct model mo = {p0->model, "", p0->simseg, NULL, NULL};
    struct point_state *st = calloc(nm, sizeof *st);
    struct hx_featcache fc;
    char fp[32], view[96], fpv[96];
    size_t encoded = 0, evaluated = 0; /* for the features line */
    if (!st) {
        rc = HX_ENOMEM;
        goto done;
    }
    if ((rc = hx_model_fingerprint(p0->model, fp, sizeof fp)))
        goto done;
    if (p0->simseg) {
        snprintf(fpv, sizeof fpv, "simseg-%s", fp);
        snprintf(mo.fingerprint, sizeof mo.fingerprint, "simseg-%s", fp);
        hx_ssp_view_key(&p0->ssp, view, sizeof view);
    } else {
        snprintf(fpv, sizeof fpv, "clip-%s-%s", fp, p0->variant);
        snprintf(mo.fingerprint, sizeof mo.fingerprint, "clip-%s", fp);
        hx_view_key(&p0->params, view, sizeof view);
    }
    if ((rc = hx_featcache_open(&fc, p0->cache, fpv, view, p0->cache_f16)))
        goto done;

    if (o->dry_run) {
        size_t cached = 0;
        for (size_t i = 0; i < nids; i++)
            cached += hx_featcache_has(&fc, ids[i]);
        say(o, 0, "group %s / %s / %s: %d point(s), %zu images: %zu cached, %zu to encode\n",
            p0->model, p0->variant, view, nm, nids, cached, nids - cached);
        for (int k = 0; k < nm && !rc; k++)
            rc = dry_point(o, &xp->points[members[k]], d, &mo);
        goto done;
    }

    int need_guide = 0, active = 0;
    for (int k = 0; k < nm; k++) {
        struct point_state *s = &st[k];
        s->p = &xp->points[members[k]];
        snprintf(s->dir, sizeof s->dir, "%s/points/%03d", s->p->output, s->p->index);
        s->images = nids, s->fp = fp, s->d = d;
        if ((rc = hx_mkdirs(s->dir)))
            goto done;
        if (o->resume && finished(xp, s)) {
            s->resumed = 1;
            continue;
        }
        /* the folders the image loop writes into, made once here and not per image */
        char sub[1400];
        snprintf(sub, sizeof sub, "%s/pred", s->dir);
        if (s->p->save_predictions && (rc = hx_mkdirs(sub)))
            goto done;
        snprintf(sub, sizeof sub, "%s/overlays", s->p->output);
        if (s->p->overlays > 0 && (rc = hx_mkdirs(sub)))
            goto done;
        char unmatched[1024];
        if ((rc = build_bank(s, d, &mo, unmatched, sizeof unmatched)) ||
            (rc = hx_metrics_new(&s->metrics, d->num_classes, d->ignore_index)))
            goto done;
        if (unmatched[0] && (k == 0 || strcmp(s->p->subclasses, st[k - 1].p->subclasses)))
            say(o, 1, "warning: point %d: the subclass list names none of: %s (these classes "
                "use their names alone)\n", s->p->index, unmatched);
        need_guide |= !s->p->simseg && s->p->params.pamr.iters > 0;
        active++;
    }
    if (!active)
        goto done;

    struct group g;
    memset(&g, 0, sizeof g);
    g.xp = xp, g.o = o, g.d = d, g.p0 = p0, g.ids = ids, g.nids = nids, g.st = st, g.nm = nm;
    g.need_guide = need_guide, g.mo = &mo, g.fc = &fc;
    g.cv.variant = HX_VANILLA;
    hx_variant_parse(p0->variant, &g.cv.variant);
    pthread_mutex_init(&g.lock, NULL);
    g.pr = pr;
    pr->t0 = now();
    pr->last = 0;
    rc = encode_missing(&g);
    if (!rc) {
        pr->t0 = now();
        rc = eval_images(&g);
    }
    pthread_mutex_destroy(&g.lock);
    encoded = g.encoded, evaluated = nids;
    if (rc)
        goto done;
    for (int k = 0; k < nm; k++)
        if (!st[k].resumed && (rc = write_point(xp, &st[k])))
            goto done;
done:
    for (int k = 0; st && k < nm; k++)
        point_state_free(&st[k]);
    free(st);
    hx_clip_free(mo.m);
    hx_simseg_free(mo.sm);
    hx_dataset_ids_free(ids, nall);
    if (!rc && !o->dry_run)
        say(o, 1, "  features: %zu cached, %zu encoded%s\n", evaluated - encoded, encoded,
            fc.corrupt ? " (damaged cache entries were recomputed)" : "");
    return rc;
}

int hx_xp_run(const struct hx_xp *xp, const struct hx_run_opts *o)
{
    int rc = 0;
    int *done = calloc(xp->npoints, sizeof *done), *members = malloc(sizeof *members * xp->npoints);
    if (!done || !members) {
        free(done), free(members);
        return HX_ENOMEM;
    }
    struct progress pr = {0, 0};
    if (!o->dry_run) {
        const char *out = xp->points[0].output;
        char path[1400];
        if ((rc = hx_mkdirs(out)))
            goto done;
        snprintf(path, sizeof path, "%s/config.json", out);
        if ((rc = write_text(path, xp->config_text)))
            goto done;
    } else {
        say(o, 0, "%s: %d point(s)\n", xp->name, xp->npoints);
    }
    int ngroups = 0;
    for (int i = 0; i < xp->npoints; i++) {
        if (done[i])
            continue;
        int nm = 0;
        for (int j = i; j < xp->npoints; j++)
            if (!done[j] && !strcmp(xp->points[j].feature_key, xp->points[i].feature_key)) {
                members[nm++] = j;
                done[j] = 1;
            }
        ngroups++;
        if (!o->dry_run)
            say(o, 1, "group %d: %s, variant %s, %d point(s)\n", ngroups, xp->points[i].dataset,
                xp->points[i].variant, nm);
        if ((rc = run_group(xp, o, members, nm, &pr)))
            goto done;
    }
    if (!o->dry_run)
        rc = hx_report_summary(xp);
done:
    free(done);
    free(members);
    return rc;
}
