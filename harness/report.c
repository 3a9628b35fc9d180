#include "harness/report.h"

#include "harness/atomicio.h"
#include "harness/error.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

void hx_voc_color(int i, uint8_t rgb[3])
{
    if (i == 255) {
        rgb[0] = rgb[1] = rgb[2] = 255;
        return;
    }
    int r = 0, g = 0, b = 0;
    for (int j = 0; j < 8; j++) {
        r |= ((i >> 0) & 1) << (7 - j);
        g |= ((i >> 1) & 1) << (7 - j);
        b |= ((i >> 2) & 1) << (7 - j);
        i >>= 3;
    }
    rgb[0] = (uint8_t)r, rgb[1] = (uint8_t)g, rgb[2] = (uint8_t)b;
}

int hx_report_overlay(const char *path, const struct hx_image *im, const uint8_t *gt,
                      const uint8_t *pred, int w, int h)
{
    int gap = 4, W = 3 * w + 2 * gap;
    uint8_t *px = hx_malloc((size_t)W * h * 3, "overlay");
    if (!px)
        return HX_ENOMEM;
    memset(px, 255, (size_t)W * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *a = px + ((size_t)y * W + x) * 3;
            if (im->w == w && im->h == h) {
                memcpy(a, im->px + ((size_t)y * w + x) * 3, 3);
            } else { /* nearest, when the label size differs from the image */
                int sx = x * im->w / w, sy = y * im->h / h;
                memcpy(a, im->px + ((size_t)sy * im->w + sx) * 3, 3);
            }
            hx_voc_color(gt[(size_t)y * w + x], a + 3 * (w + gap));
            hx_voc_color(pred[(size_t)y * w + x], a + 3 * (2 * w + 2 * gap));
        }
    int rc = hx_png_write(path, px, W, h, 3);
    free(px);
    return rc;
}

/* ------------------------------------------------------------------ a small raster canvas */

struct canvas {
    int w, h;
    uint8_t *px;
};

static void put(struct canvas *c, int x, int y, const uint8_t col[3])
{
    if (x >= 0 && y >= 0 && x < c->w && y < c->h)
        memcpy(c->px + ((size_t)y * c->w + x) * 3, col, 3);
}

static void rect(struct canvas *c, int x0, int y0, int x1, int y1, const uint8_t col[3])
{
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            put(c, x, y, col);
}

static void line(struct canvas *c, int x0, int y0, int x1, int y1, const uint8_t col[3], int t)
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        rect(c, x0 - t / 2, y0 - t / 2, x0 - t / 2 + t, y0 - t / 2 + t, col);
        if (x0 == x1 && y0 == y1)
            break;
        int e2 = 2 * err;
        if (e2 >= dy)
            err += dy, x0 += sx;
        if (e2 <= dx)
            err += dx, y0 += sy;
    }
}

/* Text at (x, y) top-left, scale 2 (stb_easy_font quads filled). */
static void text(struct canvas *c, int x, int y, const char *s, const uint8_t col[3])
{
    static float buf[60000];
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", s);
    int q = stb_easy_font_print(0, 0, tmp, NULL, buf, sizeof buf);
    for (int i = 0; i < q; i++) {
        const float *v = buf + i * 16; /* 4 vertices of x, y, z, colour */
        int x0 = (int)v[0], y0 = (int)v[1], x1 = (int)v[8], y1 = (int)v[9];
        rect(c, x + 2 * x0, y + 2 * y0, x + 2 * x1, y + 2 * y1, col);
    }
}

static int text_width(const char *s)
{
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", s);
    return 2 * stb_easy_font_width(tmp);
}

static const uint8_t black[3] = {0, 0, 0}, grey[3] = {200, 200, 200};
static const uint8_t series[8][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40},
                                     {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127}};

/* ------------------------------------------------------------------ summary */

static cJSON *read_json(const char *path)
{
    uint8_t *buf;
    size_t len;
    if (hx_read_file(path, &buf, &len))
        return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    if (!j)
        hx_err(HX_EFORMAT, "%s: malformed JSON", path);
    return j;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void fmt(char *out, size_t len, double x)
{
    if (isnan(x))
        snprintf(out, len, "-");
    else
        snprintf(out, len, "%.2f", x);
}

static int write_text(const char *path, const char *s) { return hx_write_atomic(path, s, strlen(s)); }

/* Tables from a summary object into base.md, base.csv, base.tex. */
static int write_tables(const cJSON *sum, const char *base)
{
    const cJSON *axes = cJSON_GetObjectItemCaseSensitive(sum, "axes");
    const cJSON *pts = cJSON_GetObjectItemCaseSensitive(sum, "points");
    int na = cJSON_GetArraySize(axes), np = cJSON_GetArraySize(pts);
    size_t cap = 4096 + (size_t)np * (256 + na * 128);
    char *md = malloc(cap), *csv = malloc(cap), *tex = malloc(cap);
    if (!md || !csv || !tex) {
        free(md), free(csv), free(tex);
        return HX_ENOMEM;
    }
    size_t a = 0, b = 0, t = 0;
    const char *name = cJSON_GetObjectItemCaseSensitive(sum, "name")->valuestring;
    a += (size_t)snprintf(md + a, cap - a, "| # |");
    b += (size_t)snprintf(csv + b, cap - b, "index");
    char cols[64] = "r";
    for (int i = 0; i < na && i < 40; i++)
        strcat(cols, "l");
    strcat(cols, "rlrr");
    t += (size_t)snprintf(tex + t, cap - t,
                          "%% %s: written by harness from its results; do not edit by hand\n"
                          "\\begin{tabular}{%s}\n\\toprule\n\\#", name, cols);
    const cJSON *ax;
    cJSON_ArrayForEach(ax, axes)
    {
        const char *leaf = strrchr(ax->valuestring, '.');
        leaf = leaf ? leaf + 1 : ax->valuestring;
        a += (size_t)snprintf(md + a, cap - a, " %s |", leaf);
        b += (size_t)snprintf(csv + b, cap - b, ",%s", ax->valuestring);
        t += (size_t)snprintf(tex + t, cap - t, " & %s", leaf);
    }
    a += (size_t)snprintf(md + a, cap - a, " mIoU | 95%% CI | aAcc | mAcc | images |\n|---|");
    for (int i = 0; i < na; i++)
        a += (size_t)snprintf(md + a, cap - a, "---|");
    a += (size_t)snprintf(md + a, cap - a, "---:|---|---:|---:|---:|\n");
    b += (size_t)snprintf(csv + b, cap - b, ",mIoU,ci95_lo,ci95_hi,aAcc,mAcc,num_images\n");
    t += (size_t)snprintf(tex + t, cap - t,
                          " & mIoU & 95\\%% CI & aAcc & mAcc \\\\\n\\midrule\n");
    const cJSON *p;
    cJSON_ArrayForEach(p, pts)
    {
        char m[32], lo[32], hi[32], aa[32], ma[32];
        const cJSON *ci = cJSON_GetObjectItemCaseSensitive(p, "mIoU_ci95");
        fmt(m, sizeof m, num(p, "mIoU"));
        fmt(lo, sizeof lo, cJSON_IsArray(ci) && cJSON_IsNumber(cJSON_GetArrayItem(ci, 0))
                               ? cJSON_GetArrayItem(ci, 0)->valuedouble : NAN);
        fmt(hi, sizeof hi, cJSON_IsArray(ci) && cJSON_IsNumber(cJSON_GetArrayItem(ci, 1))
                               ? cJSON_GetArrayItem(ci, 1)->valuedouble : NAN);
        fmt(aa, sizeof aa, num(p, "aAcc"));
        fmt(ma, sizeof ma, num(p, "mAcc"));
        int idx = (int)num(p, "index"), nimg = (int)num(p, "num_images");
        a += (size_t)snprintf(md + a, cap - a, "| %d |", idx);
        b += (size_t)snprintf(csv + b, cap - b, "%d", idx);
        t += (size_t)snprintf(tex + t, cap - t, "%d", idx);
        const cJSON *vals = cJSON_GetObjectItemCaseSensitive(p, "axes");
        cJSON_ArrayForEach(ax, axes)
        {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(vals, ax->valuestring);
            const char *s = cJSON_IsString(v) ? v->valuestring : "";
            a += (size_t)snprintf(md + a, cap - a, " %s |", s);
            b += (size_t)snprintf(csv + b, cap - b, ",\"%s\"", s);
            t += (size_t)snprintf(tex + t, cap - t, " & \\texttt{");
            for (const char *z = s; *z && t + 4 < cap; z++) { /* escape TeX specials */
                if (strchr("_&%#{}$", *z))
                    tex[t++] = '\\';
                tex[t++] = *z;
            }
            t += (size_t)snprintf(tex + t, cap - t, "}");
        }
        a += (size_t)snprintf(md + a, cap - a, " %s | [%s, %s] | %s | %s | %d |\n", m, lo, hi, aa,
                              ma, nimg);
        b += (size_t)snprintf(csv + b, cap - b, ",%s,%s,%s,%s,%s,%d\n", m, lo, hi, aa, ma, nimg);
        t += (size_t)snprintf(tex + t, cap - t, " & %s & [%s, %s] & %s & %s \\\\\n", m, lo, hi,
                              aa, ma);
    }
    t += (size_t)snprintf(tex + t, cap - t, "\\bottomrule\n\\end{tabular}\n");
    char path[1400];
    int rc;
    snprintf(path, sizeof path, "%s.md", base);
    if ((rc = write_text(path, md)))
        goto done;
    snprintf(path, sizeof path, "%s.csv", base);
    if ((rc = write_text(path, csv)))
        goto done;
    snprintf(path, sizeof path, "%s.tex", base);
    rc = write_text(path, tex);
done:
    free(md), free(csv), free(tex);
    return rc;
}

/* mIoU against k, one line per combination of the other axes. */
static int plot_miou_vs_k(const cJSON *sum, const char *path)
{
    const cJSON *axes = cJSON_GetObjectItemCaseSensitive(sum, "axes");
    const cJSON *pts = cJSON_GetObjectItemCaseSensitive(sum, "points");
    int np = cJSON_GetArraySize(pts);
    double kmax = 0, ylo = 100, yhi = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, pts)
    {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(p, "axes"), "k");
        double k = atof(v->valuestring), m = num(p, "mIoU");
        kmax = k > kmax ? k : kmax;
        if (!isnan(m))
            ylo = m < ylo ? m : ylo, yhi = m > yhi ? m : yhi;
    }
    if (yhi < ylo)
        return 0;
    ylo = floor(ylo / 5) * 5, yhi = ceil(yhi / 5) * 5;
    if (yhi <= ylo)
        yhi = ylo + 5;
    if (kmax <= 0)
        kmax = 1;
    struct canvas c = {900, 560, NULL};
    c.px = malloc((size_t)c.w * c.h * 3);
    if (!c.px)
        return HX_ENOMEM;
    memset(c.px, 255, (size_t)c.w * c.h * 3);
    int L = 80, R = 620, T = 50, B = 490;
    for (int i = 0; i <= 5; i++) { /* grid and y ticks */
        int y = B - (B - T) * i / 5;
        line(&c, L, y, R, y, grey, 1);
        char s[32];
        snprintf(s, sizeof s, "%.0f", ylo + (yhi - ylo) * i / 5);
        text(&c, L - 10 - text_width(s), y - 6, s, black);
    }
    line(&c, L, B, R, B, black, 2);
    line(&c, L, T, L, B, black, 2);
    text(&c, L, 14, "mIoU (%) against the number of subclasses k", black);
    text(&c, (L + R) / 2 - 10, B + 36, "k", black);
    /* series: points grouped by the values of all axes but k */
    char keys[64][256];
    int nk = 0;
    int *series_of = calloc(np, sizeof *series_of);
    if (!series_of) {
        free(c.px);
        return HX_ENOMEM;
    }
    int i = 0;
    cJSON_ArrayForEach(p, pts)
    {
        char key[256] = "";
        size_t o = 0;
        const cJSON *ax, *vals = cJSON_GetObjectItemCaseSensitive(p, "axes");
        cJSON_ArrayForEach(ax, axes)
        {
            if (!strcmp(ax->valuestring, "k"))
                continue;
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(vals, ax->valuestring);
            o += (size_t)snprintf(key + o, sizeof key - o, "%s%s", o ? " " : "", v->valuestring);
            if (o >= sizeof key)
                break;
        }
        int s = 0;
        while (s < nk && strcmp(keys[s], key))
            s++;
        if (s == nk && nk < 64)
            snprintf(keys[nk++], sizeof keys[0], "%s", key);
        series_of[i++] = s < 64 ? s : 63;
    }
    for (int s = 0; s < nk; s++) {
        const uint8_t *col = series[s % 8];
        int px = -1, py = -1;
        /* points of a series are in k order within the sweep */
        i = 0;
        cJSON_ArrayForEach(p, pts)
        {
            if (series_of[i++] != s)
                continue;
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(p, "axes"), "k");
            double m = num(p, "mIoU");
            if (isnan(m))
                continue;
            int x = L + (int)((R - L) * atof(v->valuestring) / kmax);
            int y = B - (int)((B - T) * (m - ylo) / (yhi - ylo));
            if (px >= 0)
                line(&c, px, py, x, y, col, 3);
            rect(&c, x - 4, y - 4, x + 5, y + 5, col);
            px = x, py = y;
        }
        rect(&c, R + 20, T + 24 * s + 4, R + 40, T + 24 * s + 14, col);
        text(&c, R + 48, T + 24 * s, keys[s][0] ? keys[s] : "(all)", black);
    }
    for (int k = 0; k <= (int)kmax; k++) {
        if (kmax > 12 && k % (int)ceil(kmax / 12))
            continue;
        char s[16];
        snprintf(s, sizeof s, "%d", k);
        int x = L + (int)((R - L) * k / kmax);
        line(&c, x, B, x, B + 6, black, 1);
        text(&c, x - text_width(s) / 2, B + 12, s, black);
    }
    free(series_of);
    int rc = hx_png_write(path, c.px, c.w, c.h, 3);
    free(c.px);
    return rc;
}

/* The class names of a point's per_class.csv ("class,name,IoU,Acc" rows), as a JSON array;
 * NULL when the file is unreadable. */
static cJSON *class_names(const char *csv_path)
{
    uint8_t *buf;
    size_t len;
    if (hx_read_file(csv_path, &buf, &len))
        return NULL;
    cJSON *a = cJSON_CreateArray();
    char *s = (char *)buf, *end = s + len, *line = s;
    while (line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl)
            nl = end;
        *nl = 0;
        char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        if (line != s && c1 && c2) { /* past the header */
            *c2 = 0;
            cJSON_AddItemToArray(a, cJSON_CreateString(c1 + 1));
        }
        line = nl + 1;
    }
    free(buf);
    return a;
}

/* Per-class IoU of the best point as horizontal bars, one row per class named on the left
 * (names fit whatever the number of classes), the value after each bar, and a tick where
 * the first point (usually the baseline) stands. */
static int plot_per_class(const cJSON *sum, const char *out, const char *path)
{
    const cJSON *pts = cJSON_GetObjectItemCaseSensitive(sum, "points");
    const cJSON *best = NULL, *first = cJSON_GetArrayItem(pts, 0), *p;
    cJSON_ArrayForEach(p, pts) if (!best || num(p, "mIoU") > num(best, "mIoU")) best = p;
    if (!best)
        return 0;
    char csv[1400]; /* the names from the plotted point's own table (points may differ) */
    snprintf(csv, sizeof csv, "%s/points/%03d/per_class.csv", out, (int)num(best, "index"));
    cJSON *names = class_names(csv);
    const cJSON *iou = cJSON_GetObjectItemCaseSensitive(best, "IoU");
    const cJSON *iou0 = cJSON_GetObjectItemCaseSensitive(first, "IoU");
    int C = cJSON_GetArraySize(iou), RH = 18, BW = 400;
    if (C < 1) {
        cJSON_Delete(names);
        return 0;
    }
    char title[256], legend[256], name[64];
    snprintf(title, sizeof title, "per-class IoU (%%), best point #%d %.180s",
             (int)num(best, "index"), cJSON_GetObjectItemCaseSensitive(best, "label")->valuestring);
    snprintf(legend, sizeof legend, "tick: first point #%d %.180s", (int)num(first, "index"),
             cJSON_GetObjectItemCaseSensitive(first, "label")->valuestring);
    int L = 0;
    for (int k = 0; k < C; k++) {
        const cJSON *n = cJSON_GetArrayItem(names, k);
        snprintf(name, sizeof name, "%.24s", cJSON_IsString(n) ? n->valuestring : "");
        int w = text_width(name[0] ? name : "000");
        L = w > L ? w : L;
    }
    L += 24;
    int T = first != best ? 78 : 58, W = L + BW + 80, tw = text_width(title) + 20;
    struct canvas c = {W > tw ? W : tw, T + C * RH + 40, NULL};
    c.px = malloc((size_t)c.w * c.h * 3);
    if (!c.px) {
        cJSON_Delete(names);
        return HX_ENOMEM;
    }
    memset(c.px, 255, (size_t)c.w * c.h * 3);
    text(&c, 10, 10, title, black);
    if (first != best) {
        rect(&c, 10, 38, 14, 52, series[1]);
        text(&c, 22, 36, legend, black);
    }
    int B = T + C * RH;
    for (int i = 0; i <= 4; i++) { /* grid and scale at 0, 25, ..., 100 */
        int x = L + BW * i / 4;
        line(&c, x, T - 4, x, B, grey, 1);
        char v[8];
        snprintf(v, sizeof v, "%d", 25 * i);
        text(&c, x - text_width(v) / 2, B + 8, v, black);
    }
    for (int k = 0; k < C; k++) {
        const cJSON *v = cJSON_GetArrayItem(iou, k), *v0 = cJSON_GetArrayItem(iou0, k);
        const cJSON *n = cJSON_GetArrayItem(names, k);
        int y = T + k * RH;
        if (cJSON_IsString(n))
            snprintf(name, sizeof name, "%.24s", n->valuestring);
        else
            snprintf(name, sizeof name, "%d", k);
        text(&c, L - 12 - text_width(name), y + 2, name, black);
        if (cJSON_IsNumber(v)) {
            int x = L + (int)(BW * v->valuedouble / 100);
            rect(&c, L, y + 2, x, y + RH - 2, series[0]);
            snprintf(name, sizeof name, "%.1f", v->valuedouble);
            text(&c, x + 6, y + 2, name, black);
        } else {
            text(&c, L + 6, y + 2, "n/a", grey);
        }
        if (first != best && cJSON_IsNumber(v0)) {
            int x = L + (int)(BW * v0->valuedouble / 100);
            rect(&c, x - 1, y, x + 2, y + RH, series[1]);
        }
    }
    line(&c, L, T - 4, L, B, black, 2);
    int rc = hx_png_write(path, c.px, c.w, c.h, 3);
    free(c.px);
    cJSON_Delete(names);
    return rc;
}

int hx_report_summary(const struct hx_xp *xp)
{
    const char *out = xp->points[0].output;
    cJSON *sum = cJSON_CreateObject();
    cJSON_AddStringToObject(sum, "name", xp->name);
    cJSON *axes = cJSON_AddArrayToObject(sum, "axes");
    int has_k = 0, rc = 0;
    for (int a = 0; a < xp->naxes; a++) {
        cJSON_AddItemToArray(axes, cJSON_CreateString(xp->axes[a].path));
        has_k |= !strcmp(xp->axes[a].path, "k");
    }
    cJSON *pts = cJSON_AddArrayToObject(sum, "points");
    for (int i = 0; i < xp->npoints; i++) {
        const struct hx_xp_point *p = &xp->points[i];
        char path[1400];
        snprintf(path, sizeof path, "%s/points/%03d/metrics.json", p->output, p->index);
        cJSON *m = read_json(path);
        if (!m) {
            rc = hx_err(HX_EIO, "%s: %s", path, hx_errmsg());
            goto done;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", p->index);
        cJSON_AddStringToObject(o, "label", p->label);
        cJSON *vals = cJSON_AddObjectToObject(o, "axes");
        for (int a = 0; a < xp->naxes; a++)
            cJSON_AddStringToObject(vals, xp->axes[a].path, p->values[a]);
        const char *keep[] = {"mIoU", "mIoU_ci95", "aAcc", "mAcc", "num_images", "IoU", "Acc"};
        for (size_t k = 0; k < sizeof keep / sizeof *keep; k++) {
            cJSON *v = cJSON_GetObjectItemCaseSensitive(m, keep[k]);
            if (v)
                cJSON_AddItemToObject(o, keep[k], cJSON_Duplicate(v, 1));
        }
        cJSON_AddItemToArray(pts, o);
        cJSON_Delete(m);
    }
    char path[1400], *s = cJSON_Print(sum);
    snprintf(path, sizeof path, "%s/summary.json", out);
    rc = s ? write_text(path, s) : HX_ENOMEM;
    free(s);
    if (rc)
        goto done;
    snprintf(path, sizeof path, "%s/summary", out);
    if ((rc = write_tables(sum, path)))
        goto done;
    if (has_k) {
        snprintf(path, sizeof path, "%s/miou_vs_k.png", out);
        if ((rc = plot_miou_vs_k(sum, path)))
            goto done;
    }
    snprintf(path, sizeof path, "%s/per_class.png", out);
    if ((rc = plot_per_class(sum, out, path)))
        goto done;
done:
    cJSON_Delete(sum);
    return rc;
}

int hx_report_tables(const char *results_dir, const char *out_dir)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/summary.json", results_dir);
    cJSON *sum = read_json(path);
    if (!sum)
        return hx_err(HX_EIO, "%s: %s", path, hx_errmsg());
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(sum, "name");
    if (!cJSON_IsString(name) || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(sum, "points")) ||
        !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(sum, "axes"))) {
        cJSON_Delete(sum);
        return hx_err(HX_EFORMAT, "%s: not a harness summary (name, axes, points)", path);
    }
    snprintf(path, sizeof path, "%s/%s", out_dir, name->valuestring);
    int rc = hx_mkdirs(out_dir);
    if (!rc)
        rc = write_tables(sum, path);
    cJSON_Delete(sum);
    return rc;
}
