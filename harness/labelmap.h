/* Label maps: 8-bit PNGs read exactly as stored, and written as 8-bit greyscale.
 *
 * A label map is one byte per pixel, row-major [h][w]. Reading accepts only what a label map
 * can be: greyscale 8-bit (colour type 0) or palette (colour type 3, bit depth 1/2/4/8), not
 * interlaced. Palette PNGs give the palette INDICES, never the colours, which is what the VOC
 * and Context annotations store (an index beyond the palette's length is returned as stored,
 * as PIL does; ancillary chunks such as tRNS are checked by CRC and skipped). Everything else (RGB, alpha, 16-bit, interlaced, corrupt
 * chunks or data) is an error naming the file.
 *
 * Ownership: hx_labelmap_read / hx_labelmap_decode allocate px; hx_labelmap_free frees it
 * (and is safe on a zeroed struct). hx_labelmap_write only reads the caller's buffer. */
#ifndef HX_LABELMAP_H
#define HX_LABELMAP_H

#include <stddef.h>
#include <stdint.h>

struct hx_labelmap {
    int w, h;     /* pixels */
    uint8_t *px;  /* [h][w] label values (grey values or palette indices) */
    int palette;  /* 1 when the file was a palette PNG */
};

/* Read the PNG at `path`. Errors: HX_EIO (cannot open/read), HX_EFORMAT (not a PNG, bad CRC,
 * truncated, unsupported colour type or depth, interlaced, bad zlib data), each message
 * naming the file. On error *out is left zeroed. */
int hx_labelmap_read(struct hx_labelmap *out, const char *path);

/* The same from a PNG held in memory; `name` is used in messages. */
int hx_labelmap_decode(struct hx_labelmap *out, const uint8_t *buf, size_t len,
                       const char *name);

void hx_labelmap_free(struct hx_labelmap *m);

/* Write px [h][w] as an 8-bit greyscale PNG, atomically (a temporary file in the same
 * folder renamed over `path`). */
int hx_labelmap_write(const char *path, const uint8_t *px, int w, int h);

/* Encode px [h][w] as an 8-bit greyscale PNG in memory: *out is malloc'ed (caller frees),
 * *outlen its size. */
int hx_labelmap_encode(const uint8_t *px, int w, int h, uint8_t **out, size_t *outlen);

#endif
