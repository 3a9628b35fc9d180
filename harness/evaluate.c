#include "harness/evaluate.h"
#include "harness/atomicio.h"
#include "harness/error.h"
#include "harness/labelmap.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void hx_reduce_zero_label(uint8_t *px, size_t n)
{
    for (size_t i = 0; i < n; i++)
        px[i] = px[i] == 0 ? 255 : px[i] == 255 ? 255 : (uint8_t)(px[i] - 1);
}

static int has_png_suffix(const char *name)
{
    size_t l = strlen(name);
    return l > 4 && !strcmp(name + l - 4, ".png");
}

static int png_filter(const struct dirent *e) { return has_png_suffix(e->d_name); }

static int cmp_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

int hx_eval_dirs(const char *pred_dir, const char *gt_dir, const struct hx_eval_opts *o,
                 struct hx_metrics **out)
{
    int rc = 0, n = -1;
    struct dirent **list = NULL;
    struct hx_metrics *m = NULL;
    struct hx_labelmap gt = {0}, pr = {0};
    char *gpath = NULL, *ppath = NULL;
    *out = NULL;

    struct stat st;
    if (stat(pred_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return hx_err(HX_ENOTFOUND, "prediction folder %s does not exist", pred_dir);
    n = scandir(gt_dir, &list, png_filter, cmp_name);
    if (n < 0)
        return hx_err(HX_ENOTFOUND, "cannot read the ground-truth folder %s: %s", gt_dir,
                      strerror(errno));
    if (n == 0) {
        rc = hx_err(HX_ENOTFOUND, "no .png label maps in the ground-truth folder %s", gt_dir);
        goto done;
    }
    if ((rc = hx_metrics_new(&m, o->num_classes, o->ignore_index)) != 0)
        goto done;
    size_t cap = strlen(gt_dir) + strlen(pred_dir) + 512;
    gpath = hx_malloc(cap, "path");
    ppath = hx_malloc(cap, "path");
    if (!gpath || !ppath) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const char *name = list[i]->d_name;
        snprintf(gpath, cap, "%s/%s", gt_dir, name);
        snprintf(ppath, cap, "%s/%s", pred_dir, name);
        if (stat(ppath, &st) != 0) {
            rc = hx_err(HX_ENOTFOUND, "missing prediction %s for the ground truth %s", ppath,
                        gpath);
            goto done;
        }
        if ((rc = hx_labelmap_read(&gt, gpath)) != 0 || (rc = hx_labelmap_read(&pr, ppath)) != 0)
            goto done;
        if (gt.w != pr.w || gt.h != pr.h) {
            rc = hx_err(HX_EFORMAT, "size mismatch: prediction %s is %dx%d, ground truth %s is %dx%d",
                        ppath, pr.w, pr.h, gpath, gt.w, gt.h);
            goto done;
        }
        size_t npx = (size_t)gt.w * (size_t)gt.h;
        if (o->reduce_zero_label)
            hx_reduce_zero_label(gt.px, npx);
        if ((rc = hx_metrics_add(m, pr.px, gt.px, npx)) != 0)
            goto done;
        hx_labelmap_free(&gt);
        hx_labelmap_free(&pr);
        if (o->progress)
            o->progress((size_t)i + 1, (size_t)n, o->progress_ctx);
    }
    *out = m;
    m = NULL;
done:
    hx_labelmap_free(&gt);
    hx_labelmap_free(&pr);
    hx_metrics_free(m);
    free(gpath);
    free(ppath);
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
    return rc;
}

/* a growing text buffer; `failed` sticks after an allocation failure */
struct sbuf {
    char *s;
    size_t len, cap;
    int failed;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->failed = 1;
            return;
        }
        if (b->s && b->len + (size_t)k < b->cap) {
            b->len += (size_t)k;
            return;
        }
        size_t ncap = (b->cap ? b->cap * 2 : 4096) + (size_t)k;
        char *ns = realloc(b->s, ncap);
        if (!ns) {
            b->failed = 1;
            return;
        }
        b->s = ns;
        b->cap = ncap;
    }
}

static void sb_num(struct sbuf *b, double x)
{
    if (isnan(x) || isinf(x))
        sb_printf(b, "null");
    else
        sb_printf(b, "%.17g", x);
}

int hx_eval_json_write(const char *path, const struct hx_metrics *m, int ignore_index, int reps,
                       uint64_t seed)
{
    int rc = 0;
    const int C = hx_metrics_num_classes(m);
    double *iou = hx_malloc(sizeof(double) * 2 * (size_t)C, "per-class scores");
    struct sbuf b = {0};
    if (!iou)
        return HX_ENOMEM;
    double *acc = iou + C;
    struct hx_scores s = {.iou = iou, .acc = acc};
    hx_metrics_scores(m, &s);
    double lo, hi;
    if ((rc = hx_metrics_bootstrap(m, reps, seed, 0.95, &lo, &hi)) != 0)
        goto done;
    sb_printf(&b, "{\n  \"num_images\": %zu,\n  \"num_classes\": %d,\n  \"ignore_index\": %d,\n",
              hx_metrics_num_images(m), C, ignore_index);
    sb_printf(&b, "  \"aAcc\": ");
    sb_num(&b, s.aAcc);
    sb_printf(&b, ",\n  \"mIoU\": ");
    sb_num(&b, s.mIoU);
    sb_printf(&b, ",\n  \"mAcc\": ");
    sb_num(&b, s.mAcc);
    sb_printf(&b, ",\n  \"mIoU_ci95\": [");
    sb_num(&b, lo);
    sb_printf(&b, ", ");
    sb_num(&b, hi);
    sb_printf(&b, "],\n  \"bootstrap\": {\"reps\": %d, \"seed\": %llu},\n", reps,
              (unsigned long long)seed);
    for (int k = 0; k < 2; k++) {
        const double *v = k ? acc : iou;
        sb_printf(&b, "  \"%s\": [", k ? "Acc" : "IoU");
        for (int c = 0; c < C; c++) {
            if (c)
                sb_printf(&b, ", ");
            sb_num(&b, v[c]);
        }
        sb_printf(&b, "]%s\n", k ? "" : ",");
    }
    sb_printf(&b, "}\n");
    if (b.failed) {
        rc = hx_err(HX_ENOMEM, "out of memory formatting %s", path);
        goto done;
    }
    rc = hx_write_atomic(path, b.s, b.len);
done:
    free(b.s);
    free(iou);
    return rc;
}
