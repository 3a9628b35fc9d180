/* The synthetic benchmark world: deterministic scenes of 1-3 textured shapes on a textured
 * background, with exact label maps and captions in words.
 *
 * A scene is a function of (seed, split, index) alone: its own PRNG (splitmix64 + xoshiro256**),
 * no libm transcendental functions (rotations come from a fixed table), so the same triple
 * gives the same bytes on every machine and at every call. The train, val and test splits use
 * different seed streams. Geometry is kept in resolution-independent units, so one scene can
 * be rendered at any size (the default is 64x64); labels are exact (no anti-aliasing).
 *
 * Labels: 0 = background, 1..HX_SYNTH_NCLASSES = the classes of hx_synth_class_name(); 255 is
 * never used. Later objects occlude earlier ones; every object keeps at least half of its area
 * visible (checked on a 64x64 raster when the scene is made).
 *
 * Ownership: everything here works on caller-provided memory; nothing is allocated. */
#ifndef HX_SYNTH_H
#define HX_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#define HX_SYNTH_NCLASSES 5    /* circle, square, triangle, star, ring */
#define HX_SYNTH_NCOLOURS 8    /* the named palette */
#define HX_SYNTH_NSIZES 3      /* small, medium, large */
#define HX_SYNTH_NTEXTURES 4   /* plain, striped, dotted, checkered */
#define HX_SYNTH_NBACKGROUNDS 4 /* noise, gradient, stripes, checker */
#define HX_SYNTH_MAX_OBJECTS 3
#define HX_SYNTH_DEFAULT_SIZE 64
#define HX_SYNTH_MAX_SIDE 8192
#define HX_SYNTH_CAPTION_MAX 256 /* enough for any caption, with its terminating NUL */

enum hx_synth_split { HX_SYNTH_TRAIN = 0, HX_SYNTH_VAL = 1, HX_SYNTH_TEST = 2 };

struct hx_synth_object {
    int cls;     /* 1..HX_SYNTH_NCLASSES */
    int colour;  /* 0..HX_SYNTH_NCOLOURS-1 */
    int size;    /* 0 small, 1 medium, 2 large */
    int texture; /* 0 plain, 1 striped, 2 dotted, 3 checkered */
    double cx, cy;     /* centre, as fractions of the image width and height */
    double r;          /* radius (circumradius for polygons), as a fraction of min(w, h) */
    double cosa, sina; /* rotation (a multiple of 15 degrees), exact table values */
};

struct hx_synth_background {
    int kind;            /* 0 noise, 1 gradient, 2 stripes, 3 checker */
    uint8_t c0[3], c1[3];
    double cosa, sina;   /* gradient / stripe direction */
    double period;       /* stripe period or checker cell, in pixels of a 64-pixel image */
    uint64_t noise_seed; /* noise: per-pixel hash key */
};

struct hx_synth_scene {
    int nobj; /* 1..HX_SYNTH_MAX_OBJECTS, in drawing order */
    struct hx_synth_object obj[HX_SYNTH_MAX_OBJECTS];
    struct hx_synth_background bg;
};

/* Names. Class 0 is "background"; out-of-range values give NULL. */
const char *hx_synth_class_name(int cls);
const char *hx_synth_colour_name(int colour);
const char *hx_synth_size_name(int size);
const char *hx_synth_texture_name(int texture);
const char *hx_synth_background_name(int kind);
const char *hx_synth_split_name(enum hx_synth_split split);
/* "train", "val" or "test" -> *out; HX_EINVAL naming the value otherwise. */
int hx_synth_split_parse(const char *s, enum hx_synth_split *out);

/* The two colours an object of palette entry `colour` is painted with: shade 0 is the main
 * colour (all of a plain object), shade 1 the pattern colour of striped, dotted and checkered
 * objects. */
void hx_synth_palette(int colour, int shade, uint8_t rgb[3]);

/* Draw the scene (seed, split, index): attributes, geometry and background. */
void hx_synth_scene_make(struct hx_synth_scene *sc, uint64_t seed, enum hx_synth_split split,
                         uint64_t index);

/* Whether pixel (x, y) of a w x h image lies inside the object's shape (pixel centres are
 * sampled; no occlusion). */
int hx_synth_object_covers(const struct hx_synth_object *o, int w, int h, int x, int y);

/* Render the scene at w x h: rgb [h][w][3], label [h][w] (class ids) and inst [h][w] (object
 * index + 1 in drawing order, 0 = background). label and inst may be NULL. HX_EINVAL when w
 * or h is outside 1..HX_SYNTH_MAX_SIDE. */
int hx_synth_render(const struct hx_synth_scene *sc, int w, int h, uint8_t *rgb, uint8_t *label,
                    uint8_t *inst);

/* "small red striped circle": size (if with_size), colour, texture (if with_texture), class.
 * Returns the length, or HX_EINVAL when buf[n] is too small. */
int hx_synth_object_phrase(const struct hx_synth_object *o, int with_size, int with_texture,
                           char *buf, size_t n);

/* "a photo of a small red striped circle, a large blue plain square and a medium green dotted
 * star." - every object, in drawing order, attributes as in hx_synth_object_phrase.
 * Returns the length, or HX_EINVAL when buf[n] is too small. */
int hx_synth_caption(const struct hx_synth_scene *sc, char *buf, size_t n);

#endif
