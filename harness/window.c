/* Sliding windows, crop averaging and the keep-ratio resize size. See window.h. */
#include "harness/window.h"

#include "harness/error.h"

#include <stdlib.h>
#include <string.h>

static int imin(int a, int b)
{
    return a < b ? a : b;
}
static int imax(int a, int b)
{
    return a > b ? a : b;
}

int hx_windows_make(struct hx_windows *out, int h, int w, int ch, int cw, int sh, int sw)
{
    if (!out)
        return hx_err(HX_EINVAL, "windows: NULL output");
    memset(out, 0, sizeof *out);
    if (h < 1 || w < 1)
        return hx_err(HX_EINVAL, "windows: image size %dx%d must be positive", h, w);
    if (ch == 0 && cw == 0) {
        out->win = hx_malloc(sizeof *out->win, "window list");
        if (!out->win)
            return HX_ENOMEM;
        out->n = out->rows = out->cols = 1;
        out->win[0] = (struct hx_window){0, h, 0, w};
        return HX_OK;
    }
    if (ch < 1 || cw < 1)
        return hx_err(HX_EINVAL, "windows: crop %dx%d: both sides must be >= 1, or both 0 for "
                                 "the whole image", ch, cw);
    if (sh < 1 || sw < 1 || sh > ch || sw > cw)
        return hx_err(HX_EINVAL, "windows: stride %dx%d must be between 1 and the crop %dx%d",
                      sh, sw, ch, cw);
    int rows = imax(h - ch + sh - 1, 0) / sh + 1;
    int cols = imax(w - cw + sw - 1, 0) / sw + 1;
    out->win = hx_malloc((size_t)rows * cols * sizeof *out->win, "window list");
    if (!out->win)
        return HX_ENOMEM;
    out->rows = rows;
    out->cols = cols;
    out->n = rows * cols;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            struct hx_window *v = &out->win[i * cols + j];
            v->y2 = imin(i * sh + ch, h);
            v->x2 = imin(j * sw + cw, w);
            v->y1 = imax(v->y2 - ch, 0);
            v->x1 = imax(v->x2 - cw, 0);
        }
    return HX_OK;
}

void hx_windows_free(struct hx_windows *ws)
{
    if (!ws)
        return;
    free(ws->win);
    memset(ws, 0, sizeof *ws);
}

void hx_window_crop(const float *src, int c, int h, int w, const struct hx_window *win,
                    float *dst)
{
    int ww = win->x2 - win->x1;
    for (int ch = 0; ch < c; ch++)
        for (int y = win->y1; y < win->y2; y++) {
            memcpy(dst, src + ((size_t)ch * h + y) * w + win->x1, (size_t)ww * sizeof *dst);
            dst += ww;
        }
}

int hx_accum_init(struct hx_accum *a, int k, int h, int w)
{
    if (!a)
        return hx_err(HX_EINVAL, "accum: NULL argument");
    memset(a, 0, sizeof *a);
    if (k < 1 || h < 1 || w < 1)
        return hx_err(HX_EINVAL, "accum: shape [%d, %d, %d] must be positive", k, h, w);
    size_t hw = (size_t)h * w;
    a->sum = hx_calloc((size_t)k * hw, sizeof *a->sum, "window logit sum");
    a->count = hx_calloc(hw, sizeof *a->count, "window count map");
    if (!a->sum || !a->count) {
        hx_accum_free(a);
        return HX_ENOMEM;
    }
    a->k = k, a->h = h, a->w = w;
    return HX_OK;
}

void hx_accum_free(struct hx_accum *a)
{
    if (!a)
        return;
    free(a->sum);
    free(a->count);
    memset(a, 0, sizeof *a);
}

int hx_accum_add(struct hx_accum *a, const struct hx_window *win, const float *logits)
{
    if (!a || !a->sum || !win || !logits)
        return hx_err(HX_EINVAL, "accum: NULL argument or uninitialised sum");
    if (win->y1 < 0 || win->x1 < 0 || win->y2 > a->h || win->x2 > a->w || win->y1 >= win->y2 ||
        win->x1 >= win->x2)
        return hx_err(HX_EINVAL, "accum: window rows [%d, %d) x columns [%d, %d) is not inside "
                                 "the %dx%d image", win->y1, win->y2, win->x1, win->x2, a->h,
                      a->w);
    int wh = win->y2 - win->y1, ww = win->x2 - win->x1;
    size_t hw = (size_t)a->h * a->w;
    for (int k = 0; k < a->k; k++)
        for (int y = 0; y < wh; y++) {
            float *restrict s = a->sum + k * hw + (size_t)(win->y1 + y) * a->w + win->x1;
            const float *restrict l = logits + ((size_t)k * wh + y) * ww;
            for (int x = 0; x < ww; x++)
                s[x] += l[x];
        }
    return hx_accum_count(a, win);
}

int hx_accum_count(struct hx_accum *a, const struct hx_window *win)
{
    if (win->y1 < 0 || win->x1 < 0 || win->y2 > a->h || win->x2 > a->w || win->y1 >= win->y2 ||
        win->x1 >= win->x2)
        return hx_err(HX_EINVAL, "accum: window rows [%d, %d) x columns [%d, %d) is not inside "
                                 "the %dx%d image", win->y1, win->y2, win->x1, win->x2, a->h,
                      a->w);
    for (int y = win->y1; y < win->y2; y++)
        for (int x = win->x1; x < win->x2; x++)
            a->count[(size_t)y * a->w + x] += 1;
    return HX_OK;
}

int hx_accum_average(const struct hx_accum *a, float *out)
{
    if (!a || !a->sum || !out)
        return hx_err(HX_EINVAL, "accum: NULL argument or uninitialised sum");
    size_t hw = (size_t)a->h * a->w;
    for (size_t i = 0; i < hw; i++)
        if (a->count[i] == 0)
            return hx_err(HX_EINVAL, "accum: pixel (%zu, %zu) of the %dx%d image is in no "
                                     "window", i / a->w, i % a->w, a->h, a->w);
    for (int k = 0; k < a->k; k++)
        for (size_t i = 0; i < hw; i++)
            out[k * hw + i] = a->sum[k * hw + i] / a->count[i];
    return HX_OK;
}

int hx_rescale_size(int h, int w, int a, int b, int *oh, int *ow)
{
    if (!oh || !ow)
        return hx_err(HX_EINVAL, "rescale: NULL output");
    if (h < 1 || w < 1 || a < 1 || b < 1)
        return hx_err(HX_EINVAL, "rescale: image %dx%d and scale (%d, %d) must be positive", h,
                      w, a, b);
    double f1 = (double)imax(a, b) / imax(h, w);
    double f2 = (double)imin(a, b) / imin(h, w);
    double f = f1 < f2 ? f1 : f2;
    /* Python's int(x * f + 0.5): the product and the sum are separate IEEE double steps */
    double th = h * f, tw = w * f;
    th += 0.5, tw += 0.5;
    if (th < 1 || tw < 1)
        return hx_err(HX_EINVAL, "rescale: %dx%d at scale (%d, %d) would have an empty side",
                      h, w, a, b);
    *oh = (int)th;
    *ow = (int)tw;
    return HX_OK;
}
