/* A strict PNG reader for label maps (greyscale 8-bit and palette indices) and an 8-bit
 * greyscale writer. PNG structure per the W3C PNG specification: signature, chunks of
 * (length, type, data, CRC-32 over type+data), IHDR first, IDAT data concatenated into one
 * zlib stream, per-row filter bytes 0..4, IEND last. */
#include "harness/labelmap.h"
#include "harness/atomicio.h"
#include "harness/error.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const uint8_t png_sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};

/* Larger maps than this are refused rather than allocated (1 Gpixel). */
#define MAX_PIXELS ((uint64_t)1 << 30)

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int paeth(int a, int b, int c)
{
    int p = a + b - c;
    int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc)
        return a;
    return pb <= pc ? b : c;
}

/* Undo the row filters in place. raw holds h rows of (1 + rowbytes) bytes; the filtered
 * bytes are written compactly to out [h][rowbytes]. Every supported format has at most one
 * byte per pixel, so the filter's "previous pixel" is the previous byte. */
static int unfilter(const uint8_t *raw, uint8_t *out, size_t rowbytes, uint32_t h,
                    const char *name)
{
    for (uint32_t y = 0; y < h; y++) {
        const uint8_t *src = raw + (size_t)y * (rowbytes + 1);
        uint8_t *row = out + (size_t)y * rowbytes;
        const uint8_t *up = y ? row - rowbytes : NULL;
        int ft = src[0];
        src++;
        switch (ft) {
        case 0:
            memcpy(row, src, rowbytes);
            break;
        case 1:
            for (size_t x = 0; x < rowbytes; x++)
                row[x] = (uint8_t)(src[x] + (x ? row[x - 1] : 0));
            break;
        case 2:
            for (size_t x = 0; x < rowbytes; x++)
                row[x] = (uint8_t)(src[x] + (up ? up[x] : 0));
            break;
        case 3:
            for (size_t x = 0; x < rowbytes; x++) {
                int a = x ? row[x - 1] : 0, b = up ? up[x] : 0;
                row[x] = (uint8_t)(src[x] + ((a + b) >> 1));
            }
            break;
        case 4:
            for (size_t x = 0; x < rowbytes; x++) {
                int a = x ? row[x - 1] : 0, b = up ? up[x] : 0;
                int c = (x && up) ? up[x - 1] : 0;
                row[x] = (uint8_t)(src[x] + paeth(a, b, c));
            }
            break;
        default:
            return hx_err(HX_EFORMAT, "%s: row %u has an invalid PNG filter type %d", name,
                          (unsigned)y, ft);
        }
    }
    return 0;
}

/* Inflate the concatenated IDAT data into raw, which has room for rawlen + 1 bytes: the
 * extra byte detects a stream that holds more data than the image. */
static int inflate_all(const uint8_t *z, size_t zlen, uint8_t *raw, size_t rawlen,
                       const char *name)
{
    int rc = 0;
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit(&s) != Z_OK)
        return hx_err(HX_EINTERNAL, "%s: cannot initialise zlib", name);
    s.next_in = (Bytef *)z;
    s.next_out = raw;
    size_t in_left = zlen, out_left = rawlen + 1;
    for (;;) { /* avail_in/avail_out are 32-bit: feed in slices */
        if (s.avail_in == 0 && in_left) {
            uInt n = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            s.avail_in = n;
            in_left -= n;
        }
        if (s.avail_out == 0 && out_left) {
            uInt n = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
            s.avail_out = n;
            out_left -= n;
        }
        int zr = inflate(&s, Z_NO_FLUSH);
        if (s.total_out > rawlen) {
            rc = hx_err(HX_EFORMAT, "%s: PNG image data is longer than the image", name);
            goto done;
        }
        if (zr == Z_STREAM_END)
            break;
        if (zr == Z_BUF_ERROR && s.avail_in == 0 && in_left == 0) {
            rc = hx_err(HX_EFORMAT, "%s: truncated PNG image data (the zlib stream ends early)",
                        name);
            goto done;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            rc = hx_err(HX_EFORMAT, "%s: corrupt PNG image data (zlib: %s)", name,
                        s.msg ? s.msg : "error");
            goto done;
        }
    }
    if (s.total_out != rawlen) {
        rc = hx_err(HX_EFORMAT, "%s: PNG image data is too short (%lu of %zu bytes)", name,
                    (unsigned long)s.total_out, rawlen);
        goto done;
    }
    if (s.avail_in || in_left) {
        rc = hx_err(HX_EFORMAT, "%s: trailing bytes after the PNG zlib stream", name);
        goto done;
    }
done:
    inflateEnd(&s);
    return rc;
}

int hx_labelmap_decode(struct hx_labelmap *out, const uint8_t *buf, size_t len,
                       const char *name)
{
    int rc = 0;
    uint8_t *idat = NULL, *raw = NULL, *packed = NULL, *px = NULL;
    size_t idat_len = 0, idat_cap = 0;
    memset(out, 0, sizeof *out);

    if (len < 8 || memcmp(buf, png_sig, 8) != 0)
        return hx_err(HX_EFORMAT, "%s: not a PNG file (bad signature)", name);

    uint32_t w = 0, h = 0;
    int depth = 0, ctype = -1, npal = 0, seen_idat = 0, idat_done = 0, seen_iend = 0;
    size_t pos = 8;
    int first = 1;
    while (!seen_iend) {
        if (len - pos < 12) {
            rc = hx_err(HX_EFORMAT, "%s: truncated PNG (chunk header cut at byte %zu)", name,
                        pos);
            goto done;
        }
        uint32_t clen = be32(buf + pos);
        const uint8_t *type = buf + pos + 4;
        char tname[5] = {0};
        for (int i = 0; i < 4; i++) {
            uint8_t c = type[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) {
                rc = hx_err(HX_EFORMAT, "%s: corrupt PNG (invalid chunk type at byte %zu)",
                            name, pos);
                goto done;
            }
            tname[i] = (char)c;
        }
        if (clen > 0x7fffffffu || (size_t)clen > len - pos - 12) {
            rc = hx_err(HX_EFORMAT, "%s: truncated PNG (chunk %s of %u bytes at byte %zu)", name,
                        tname, (unsigned)clen, pos);
            goto done;
        }
        const uint8_t *data = type + 4;
        uint32_t crc = (uint32_t)crc32(0L, type, 4 + clen);
        if (crc != be32(data + clen)) {
            rc = hx_err(HX_EFORMAT, "%s: corrupt PNG (CRC mismatch in chunk %s at byte %zu)",
                        name, tname, pos);
            goto done;
        }
        pos += 12 + (size_t)clen;

        if (first != !strcmp(tname, "IHDR")) {
            rc = hx_err(HX_EFORMAT, "%s: corrupt PNG (%s)", name,
                        first ? "the first chunk is not IHDR" : "a second IHDR chunk");
            goto done;
        }
        if (seen_idat && strcmp(tname, "IDAT"))
            idat_done = 1;
        if (!strcmp(tname, "IHDR")) {
            first = 0;
            if (clen != 13) {
                rc = hx_err(HX_EFORMAT, "%s: corrupt PNG (IHDR has %u bytes, not 13)", name,
                            (unsigned)clen);
                goto done;
            }
            w = be32(data);
            h = be32(data + 4);
            depth = data[8];
            ctype = data[9];
            if (w == 0 || h == 0 || w > 0x7fffffffu || h > 0x7fffffffu ||
                (uint64_t)w * h > MAX_PIXELS) {
                rc = hx_err(HX_EFORMAT, "%s: unsupported PNG size %ux%u", name, (unsigned)w,
                            (unsigned)h);
                goto done;
            }
            if (data[10] != 0 || data[11] != 0) {
                rc = hx_err(HX_EFORMAT, "%s: corrupt PNG (unknown compression or filter method)",
                            name);
                goto done;
            }
            if (data[12] != 0) {
                rc = hx_err(HX_EFORMAT,
                            "%s: interlaced PNG is not supported for label maps (re-save it "
                            "without interlacing)",
                            name);
                goto done;
            }
            switch (ctype) {
            case 0:
                if (depth != 8) {
                    rc = hx_err(HX_EFORMAT,
                                "%s: greyscale PNG with bit depth %d; label maps must be 8-bit",
                                name, depth);
                    goto done;
                }
                break;
            case 3:
                if (depth != 1 && depth != 2 && depth != 4 && depth != 8) {
                    rc = hx_err(HX_EFORMAT, "%s: palette PNG with invalid bit depth %d", name,
                                depth);
                    goto done;
                }
                break;
            case 2:
                rc = hx_err(HX_EFORMAT,
                            "%s: is an RGB PNG; a label map must be 8-bit greyscale or palette "
                            "(class indices), not colours",
                            name);
                goto done;
            case 4:
            case 6:
                rc = hx_err(HX_EFORMAT,
                            "%s: PNG has an alpha channel (colour type %d); a label map must be "
                            "8-bit greyscale or palette",
                            name, ctype);
                goto done;
            default:
                rc = hx_err(HX_EFORMAT, "%s: corrupt PNG (invalid colour type %d)", name,
                            ctype);
                goto done;
            }
        } else if (!strcmp(tname, "PLTE")) {
            if (ctype == 0) {
                rc = hx_err(HX_EFORMAT, "%s: corrupt PNG (PLTE in a greyscale image)", name);
                goto done;
            }
            if (npal || seen_idat) {
                rc = hx_err(HX_EFORMAT, "%s: corrupt PNG (%s)", name,
                            npal ? "two PLTE chunks" : "PLTE after IDAT");
                goto done;
            }
            if (clen == 0 || clen % 3 || clen / 3 > 256 || clen / 3 > (1u << depth)) {
                rc = hx_err(HX_EFORMAT, "%s: corrupt PNG (PLTE of %u bytes)", name,
                            (unsigned)clen);
                goto done;
            }
            npal = (int)(clen / 3);
        } else if (!strcmp(tname, "IDAT")) {
            if (idat_done) {
                rc = hx_err(HX_EFORMAT, "%s: corrupt PNG (IDAT chunks are not consecutive)",
                            name);
                goto done;
            }
            if (ctype == 3 && !npal) {
                rc = hx_err(HX_EFORMAT, "%s: corrupt PNG (palette image without PLTE)", name);
                goto done;
            }
            seen_idat = 1;
            if (idat_len + clen > idat_cap) {
                size_t ncap = idat_cap ? idat_cap : 65536;
                while (ncap < idat_len + clen)
                    ncap *= 2;
                uint8_t *nb = realloc(idat, ncap);
                if (!nb) {
                    rc = hx_err(HX_ENOMEM, "%s: out of memory for PNG data", name);
                    goto done;
                }
                idat = nb;
                idat_cap = ncap;
            }
            memcpy(idat + idat_len, data, clen);
            idat_len += clen;
        } else if (!strcmp(tname, "IEND")) {
            seen_iend = 1;
        } else if (!(tname[0] & 0x20)) {
            rc = hx_err(HX_EFORMAT, "%s: unsupported critical PNG chunk %s", name, tname);
            goto done;
        }
        /* other ancillary chunks (gAMA, tRNS, tEXt, ...) carry nothing a label needs */
    }
    if (!seen_idat) {
        rc = hx_err(HX_EFORMAT, "%s: corrupt PNG (no IDAT chunk)", name);
        goto done;
    }

    size_t rowbytes = ((size_t)w * (size_t)depth + 7) / 8;
    size_t rawlen = (rowbytes + 1) * h;
    raw = hx_malloc(rawlen + 1, "PNG scanlines");
    packed = hx_malloc(rowbytes * h, "PNG rows");
    if (!raw || !packed) {
        rc = HX_ENOMEM;
        goto done;
    }
    if ((rc = inflate_all(idat, idat_len, raw, rawlen, name)) != 0)
        goto done;
    if ((rc = unfilter(raw, packed, rowbytes, h, name)) != 0)
        goto done;
    if (depth == 8) {
        px = packed;
        packed = NULL;
    } else {
        px = hx_malloc((size_t)w * h, "label map");
        if (!px) {
            rc = HX_ENOMEM;
            goto done;
        }
        int per = 8 / depth, mask = (1 << depth) - 1;
        for (uint32_t y = 0; y < h; y++) {
            const uint8_t *r = packed + (size_t)y * rowbytes;
            uint8_t *o = px + (size_t)y * w;
            for (uint32_t x = 0; x < w; x++) {
                int shift = 8 - depth * (int)(x % (uint32_t)per + 1);
                o[x] = (uint8_t)((r[x / (uint32_t)per] >> shift) & mask);
            }
        }
    }
    out->w = (int)w;
    out->h = (int)h;
    out->px = px;
    out->palette = ctype == 3;
    px = NULL;
done:
    free(idat);
    free(raw);
    free(packed);
    free(px);
    return rc;
}

int hx_labelmap_read(struct hx_labelmap *out, const char *path)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    memset(out, 0, sizeof *out);
    int rc = hx_read_file(path, &buf, &len);
    if (rc)
        return rc;
    rc = hx_labelmap_decode(out, buf, len, path);
    free(buf);
    return rc;
}

void hx_labelmap_free(struct hx_labelmap *m)
{
    if (!m)
        return;
    free(m->px);
    m->px = NULL;
    m->w = m->h = 0;
}

static uint8_t *put_chunk(uint8_t *p, const char *type, const uint8_t *data, uint32_t n)
{
    put32(p, n);
    memcpy(p + 4, type, 4);
    if (n)
        memcpy(p + 8, data, n);
    put32(p + 8 + n, (uint32_t)crc32(0L, p + 4, 4 + n));
    return p + 12 + n;
}

int hx_labelmap_encode(const uint8_t *px, int w, int h, uint8_t **out, size_t *outlen)
{
    int rc = 0;
    uint8_t *raw = NULL, *z = NULL, *png = NULL;
    *out = NULL;
    *outlen = 0;
    if (w <= 0 || h <= 0 || (uint64_t)w * (uint64_t)h > MAX_PIXELS)
        return hx_err(HX_EINVAL, "cannot encode a label map of size %dx%d", w, h);
    size_t rawlen = ((size_t)w + 1) * (size_t)h;
    raw = hx_malloc(rawlen, "PNG scanlines");
    if (!raw)
        return HX_ENOMEM;
    for (int y = 0; y < h; y++) {
        uint8_t *r = raw + (size_t)y * ((size_t)w + 1);
        r[0] = 0; /* filter None: label maps compress well without prediction */
        memcpy(r + 1, px + (size_t)y * w, (size_t)w);
    }
    uLongf zlen = compressBound((uLong)rawlen);
    z = hx_malloc(zlen, "PNG compressed data");
    if (!z) {
        rc = HX_ENOMEM;
        goto done;
    }
    if (compress2(z, &zlen, raw, (uLong)rawlen, 6) != Z_OK) {
        rc = hx_err(HX_EINTERNAL, "zlib failed to compress a %dx%d label map", w, h);
        goto done;
    }
    if (zlen > 0x7fffffffu) {
        rc = hx_err(HX_EINVAL, "label map too large for one PNG chunk");
        goto done;
    }
    size_t total = 8 + (12 + 13) + (12 + (size_t)zlen) + 12;
    png = hx_malloc(total, "PNG file");
    if (!png) {
        rc = HX_ENOMEM;
        goto done;
    }
    uint8_t ihdr[13];
    put32(ihdr, (uint32_t)w);
    put32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8;  /* bit depth */
    ihdr[9] = 0;  /* greyscale */
    ihdr[10] = 0; /* deflate */
    ihdr[11] = 0; /* adaptive filtering */
    ihdr[12] = 0; /* not interlaced */
    uint8_t *p = png;
    memcpy(p, png_sig, 8);
    p = put_chunk(p + 8, "IHDR", ihdr, 13);
    p = put_chunk(p, "IDAT", z, (uint32_t)zlen);
    p = put_chunk(p, "IEND", NULL, 0);
    *out = png;
    *outlen = (size_t)(p - png);
    png = NULL;
done:
    free(raw);
    free(z);
    free(png);
    return rc;
}

int hx_labelmap_write(const char *path, const uint8_t *px, int w, int h)
{
    uint8_t *png = NULL;
    size_t n = 0;
    int rc = hx_labelmap_encode(px, w, h, &png, &n);
    if (rc)
        return rc;
    rc = hx_write_atomic(path, png, n);
    free(png);
    return rc;
}
