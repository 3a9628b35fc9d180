/* Images: decoding (stb_image) and resampling with the exact conventions of the reference
 * libraries. Interleaved 8-bit RGB for decoded images; planar float [C,H,W] for tensors.
 * Ownership: hx_image_load allocates px; hx_image_free frees it. Resize functions write into
 * caller-provided buffers. */
#ifndef HX_IMAGE_H
#define HX_IMAGE_H

#include <stdint.h>

struct hx_image {
    int w, h;     /* pixels */
    uint8_t *px;  /* [h][w][3] RGB */
};

/* Decode a JPEG or PNG (8-bit grey, grey+alpha, RGB, RGBA or palette) to RGB. Alpha is
 * dropped (not composited), as PIL's convert("RGB") does. Unreadable, truncated or
 * unsupported files are HX_EFORMAT / HX_EIO errors naming the file. */
int hx_image_load(struct hx_image *out, const char *path);
void hx_image_free(struct hx_image *im);

/* Write an 8-bit image (channels 1 or 3) as PNG, atomically. */
int hx_png_write(const char *path, const uint8_t *px, int w, int h, int channels);

/* RGB uint8 [h][w][3] -> planar float [3][h][w]: (px/255 - mean[c]) / std[c]. */
void hx_image_to_tensor(const struct hx_image *im, const float mean[3], const float std[3],
                        float *out);

/* PyTorch F.interpolate semantics on planar float [c][h][w] -> [c][oh][ow], no antialias.
 * bilinear: align_corners 0 or 1. bicubic: align_corners 0 or 1, A = -0.75, taps clamped. */
void hx_resize_bilinear(const float *src, int c, int h, int w, float *dst, int oh, int ow,
                        int align_corners);
void hx_resize_bicubic(const float *src, int c, int h, int w, float *dst, int oh, int ow,
                       int align_corners);

/* PyTorch F.interpolate(mode="nearest") on planar float. */
void hx_resize_nearest(const float *src, int c, int h, int w, float *dst, int oh, int ow);

/* PIL Image.resize on 8-bit interleaved images (channels 1..4), bit-exact with Pillow 9:
 * antialiased (support scaled by the downscale factor), fixed-point coefficients, the
 * horizontal pass first. filter: HX_PIL_BILINEAR or HX_PIL_BICUBIC (a = -0.5). */
enum hx_pil_filter { HX_PIL_BILINEAR, HX_PIL_BICUBIC };
int hx_pil_resize(const uint8_t *src, int w, int h, int channels, uint8_t *dst, int ow, int oh,
                  enum hx_pil_filter filter);

/* OpenCV cv2.resize(INTER_LINEAR) on 8-bit interleaved images, bit-exact with OpenCV 4
 * (fixed-point weights), as mmcv's imresize uses; and INTER_NEAREST. */
int hx_cv_resize_linear(const uint8_t *src, int w, int h, int channels, uint8_t *dst, int ow,
                        int oh);
void hx_cv_resize_nearest(const uint8_t *src, int w, int h, int channels, uint8_t *dst, int ow,
                          int oh);

#endif
