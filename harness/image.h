/* Images: decoding (stb_image) and resampling with the exact conventions of the reference
 * libraries. Interleaved 8-bit RGB for decoded images; planar float [C,H,W] for tensors.
 * Ownership: hx_image_load allocates px; hx_image_free frees it. Resize functions write into
 * caller-provided buffers (which must not overlap the source) and allocate only their small
 * per-call index/weight tables and row buffers.
 * All functions returning int return 0 or a negative hx_status with the message set. */
#ifndef HX_IMAGE_H
#define HX_IMAGE_H

#include <stdint.h>

struct hx_image {
    int w, h;     /* pixels */
    uint8_t *px;  /* [h][w][3] RGB */
};

/* Limits on decoded images: larger headers are rejected as HX_EFORMAT before decoding. */
#define HX_IMAGE_MAX_SIDE 32768
#define HX_IMAGE_MAX_PIXELS (1L << 27)

/* Decode a JPEG or PNG (8-bit grey, grey+alpha, RGB, RGBA or palette) to RGB. Alpha is
 * dropped (not composited), as PIL's convert("RGB") does. A missing or unreadable file is
 * HX_EIO; a truncated, corrupt or unsupported one (other formats included) is HX_EFORMAT;
 * both name the file. On error *out is {0, 0, NULL}.
 * JPEG: stb_image's decoder is not libjpeg; against PIL 9.4 (libjpeg-turbo) it differs by a
 * few grey levels on some pixels (measured figures in image.c). PNG decoding of 8-bit and
 * lower depths is exact; 16-bit PNGs keep the high byte (PIL clips 16-bit grey instead). */
int hx_image_load(struct hx_image *out, const char *path);
void hx_image_free(struct hx_image *im);

/* Write an 8-bit image [h][w][channels] (channels 1 or 3) as PNG, atomically: a temporary
 * file in the same folder is renamed over `path`. */
int hx_png_write(const char *path, const uint8_t *px, int w, int h, int channels);

/* RGB uint8 [h][w][3] -> planar float [3][h][w]: (px/255 - mean[c]) / std[c], in float32
 * with the operation order of torchvision's ToTensor + Normalize. */
void hx_image_to_tensor(const struct hx_image *im, const float mean[3], const float std[3],
                        float *out);

/* PyTorch (1.13) F.interpolate(size=(oh, ow)) semantics on planar float [c][h][w] ->
 * [c][oh][ow], no antialias. bilinear: align_corners 0 or 1. bicubic: align_corners 0 or 1,
 * A = -0.75, taps clamped to the border. Sizes must be >= 1 (HX_EINVAL otherwise). */
int hx_resize_bilinear(const float *src, int c, int h, int w, float *dst, int oh, int ow,
                       int align_corners);
int hx_resize_bicubic(const float *src, int c, int h, int w, float *dst, int oh, int ow,
                      int align_corners);

/* hx_resize_bilinear (align_corners=False) to oh x ow, added into the window at row y0,
 * column x0 of dst [c, dh, dw] (the resize-then-accumulate of sliding windows, in one pass). */
int hx_resize_bilinear_add(const float *src, int c, int h, int w, float *dst, int dh, int dw,
                           int y0, int x0, int oh, int ow);

/* A 1-D linear resize from `in` to `out` samples with torch's taps,
 * out[o] = in[i0[o]] * l0[o] + in[i1[o]] * l1[o], prepared once and applied to many rows.
 * hx_resize_bilinear applies one along x to each source row, then combines two such rows
 * with the y taps. hx_lerp_row computes each output with the same float operations as
 * hx_lerp_row_ref (the plain loop), bit for bit, with vector permutes instead of gathers
 * where the CPU has them. */
struct hx_lerp {
    int in, out;
    int *i0, *i1;
    float *l0, *l1;
    int nblk, *blk, *rel; /* the vector kernel's tables (image.c) */
};
int hx_lerp_init(struct hx_lerp *t, int in, int out, int align_corners);
void hx_lerp_free(struct hx_lerp *t);
void hx_lerp_row(const struct hx_lerp *t, const float *in, float *out);
void hx_lerp_row_ref(const struct hx_lerp *t, const float *in, float *out);

/* PyTorch F.interpolate(size=(oh, ow), mode="nearest") on planar float:
 * src = min(floor(dst * (float)(in/out)), in-1) in float arithmetic. */
int hx_resize_nearest(const float *src, int c, int h, int w, float *dst, int oh, int ow);

/* PIL Image.resize on 8-bit interleaved images (channels 1..4), bit-exact with Pillow 9:
 * antialiased (support scaled by the downscale factor), fixed-point coefficients, the
 * horizontal pass first, a pass skipped when its size is unchanged. filter: HX_PIL_BILINEAR
 * or HX_PIL_BICUBIC (a = -0.5). Every channel is filtered alike, as for PIL modes L, RGB,
 * RGBX and CMYK; PIL's RGBA/LA resize premultiplies alpha first, which this does not do. */
enum hx_pil_filter { HX_PIL_BILINEAR, HX_PIL_BICUBIC };
int hx_pil_resize(const uint8_t *src, int w, int h, int channels, uint8_t *dst, int ow, int oh,
                  enum hx_pil_filter filter);

/* OpenCV 4 cv2.resize(src, (ow, oh), interpolation=INTER_LINEAR) on 8-bit interleaved images
 * (channels 1..4), bit-exact (11-bit fixed-point weights), as mmcv's imresize uses; and
 * INTER_NEAREST (sx = min(floor(dx / (ow/w)), w-1) in double). */
int hx_cv_resize_linear(const uint8_t *src, int w, int h, int channels, uint8_t *dst, int ow,
                        int oh);
int hx_cv_resize_nearest(const uint8_t *src, int w, int h, int channels, uint8_t *dst, int ow,
                         int oh);

#endif
