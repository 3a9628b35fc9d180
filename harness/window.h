/* Sliding-window geometry and crop averaging as mmsegmentation's slide inference does it
 * (EncoderDecoder.slide_inference, copied by SCLIP, ClearCLIP and NACLIP), and the keep-ratio
 * resize size of mmcv's Resize (rescale_size).
 *
 * Windows: h_grids = max(H - ch + sh - 1, 0) / sh + 1 (same for w); for grid cell (i, j):
 *   y1 = i*sh, y2 = min(y1 + ch, H), y1 = max(y2 - ch, 0)   (same for x with j, cw, sw)
 * so the last row/column of windows shifts inward to end at the border, and a crop larger
 * than the image is cut to the image. Windows are listed row-major over the grid (i outer),
 * the order in which mmseg adds them. Crop 0 x 0 means one window over the whole image.
 *
 * Averaging: each window's logits [K, y2-y1, x2-x1] are added into a sum [K, H, W] and 1 into
 * a count map [H, W]; the average is sum / count (float32, like mmseg).
 *
 * Ownership: hx_windows_make fills a caller-owned struct and allocates its array, released by
 * hx_windows_free; likewise hx_accum_init / hx_accum_free. Other buffers are the caller's. */
#ifndef HX_WINDOW_H
#define HX_WINDOW_H

struct hx_window {
    int y1, y2; /* rows [y1, y2) */
    int x1, x2; /* columns [x1, x2) */
};

struct hx_windows {
    int n;                 /* rows * cols */
    int rows, cols;        /* h_grids, w_grids */
    struct hx_window *win; /* [n], row-major over the grid */
};

/* Windows of an h x w image for crop (ch, cw) and stride (sh, sw). Crop (0, 0) gives the one
 * whole-image window (strides ignored). Otherwise crops and strides must be >= 1 and each
 * stride at most its crop (a larger stride would leave pixels in no window). */
int hx_windows_make(struct hx_windows *out, int h, int w, int ch, int cw, int sh, int sw);
void hx_windows_free(struct hx_windows *ws);

/* Copy window `win` of a planar image src [c, h, w] into dst [c, y2-y1, x2-x1]. */
void hx_window_crop(const float *src, int c, int h, int w, const struct hx_window *win,
                    float *dst);

struct hx_accum {
    int k, h, w;
    float *sum;   /* [k, h, w] */
    float *count; /* [h, w] windows covering each pixel */
};

/* Zeroed sum and count for k maps of h x w. */
int hx_accum_init(struct hx_accum *a, int k, int h, int w);
void hx_accum_free(struct hx_accum *a);

/* Add logits [k, y2-y1, x2-x1] of window `win` (which must lie inside the image). */
int hx_accum_add(struct hx_accum *a, const struct hx_window *win, const float *logits);

/* Count window `win` once in the count map (for callers that add into sum themselves, e.g.
 * with hx_resize_bilinear_add). */
int hx_accum_count(struct hx_accum *a, const struct hx_window *win);

/* out [k, h, w] = sum / count; out may be a->sum. A pixel in no window is an error. */
int hx_accum_average(const struct hx_accum *a, float *out);

/* mmcv rescale_size with keep_ratio and a two-number scale (a, b), as in mmseg's
 * Resize(scale=(2048, S), keep_ratio=True): with L = max(a, b) and s = min(a, b),
 *   f = min(L / max(h, w), s / min(h, w)),  ow = int(w f + 0.5),  oh = int(h f + 0.5)
 * in double precision: the short side becomes s unless the long side would pass L.
 * A result of 0 pixels is an error. */
int hx_rescale_size(int h, int w, int a, int b, int *oh, int *ow);

#endif
