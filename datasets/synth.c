/* The synthetic scene generator (see synth.h). Only +, -, *, /, fabs, comparisons and
 * floor are used on doubles, so results are bit-identical on any IEEE-754 machine. */
#include "datasets/synth.h"
#include "harness/error.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* the world's vocabulary: one table each */

static const char *const class_names[HX_SYNTH_NCLASSES + 1] = {
    "background", "circle", "square", "triangle", "star", "ring"};
static const char *const size_names[HX_SYNTH_NSIZES] = {"small", "medium", "large"};
static const char *const texture_names[HX_SYNTH_NTEXTURES] = {"plain", "striped", "dotted",
                                                              "checkered"};
static const char *const bg_names[HX_SYNTH_NBACKGROUNDS] = {"noise", "gradient", "stripes",
                                                            "checker"};
static const char *const split_names[3] = {"train", "val", "test"};

static const struct {
    const char *name;
    uint8_t rgb[2][3]; /* main colour, pattern colour */
} palette[HX_SYNTH_NCOLOURS] = {
    {"red", {{215, 35, 35}, {120, 10, 10}}},
    {"green", {{40, 170, 60}, {15, 90, 25}}},
    {"blue", {{40, 80, 215}, {15, 35, 120}}},
    {"yellow", {{245, 215, 35}, {150, 120, 10}}},
    {"purple", {{145, 60, 185}, {75, 25, 100}}},
    {"orange", {{245, 135, 30}, {150, 70, 10}}},
    {"white", {{240, 240, 240}, {150, 150, 150}}},
    {"black", {{25, 25, 25}, {110, 110, 110}}},
};

/* radius (fraction of the short side) of each size; drawn x [0.9, 1.1] */
static const double size_radius[HX_SYNTH_NSIZES] = {0.11, 0.17, 0.25};

/* texture scales, in pixels of a 64-pixel image */
#define STRIPE_WIDTH 2.5
#define DOT_SPACING 5.0
#define DOT_RADIUS 1.4
#define CHECKER_CELL 3.0

const char *hx_synth_class_name(int cls)
{
    return cls >= 0 && cls <= HX_SYNTH_NCLASSES ? class_names[cls] : NULL;
}
const char *hx_synth_colour_name(int c)
{
    return c >= 0 && c < HX_SYNTH_NCOLOURS ? palette[c].name : NULL;
}
const char *hx_synth_size_name(int s)
{
    return s >= 0 && s < HX_SYNTH_NSIZES ? size_names[s] : NULL;
}
const char *hx_synth_texture_name(int t)
{
    return t >= 0 && t < HX_SYNTH_NTEXTURES ? texture_names[t] : NULL;
}
const char *hx_synth_background_name(int k)
{
    return k >= 0 && k < HX_SYNTH_NBACKGROUNDS ? bg_names[k] : NULL;
}
const char *hx_synth_split_name(enum hx_synth_split s)
{
    return (int)s >= 0 && (int)s < 3 ? split_names[s] : NULL;
}

int hx_synth_split_parse(const char *s, enum hx_synth_split *out)
{
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, split_names[i]) == 0) {
            *out = (enum hx_synth_split)i;
            return 0;
        }
    return hx_err(HX_EINVAL, "split must be train, val or test, got '%s'", s ? s : "(null)");
}

void hx_synth_palette(int colour, int shade, uint8_t rgb[3])
{
    if (colour < 0 || colour >= HX_SYNTH_NCOLOURS)
        colour = 0;
    memcpy(rgb, palette[colour].rgb[shade ? 1 : 0], 3);
}

/* ------------------------------------------------------------------------------------------ */
/* PRNG: splitmix64 to seed xoshiro256** */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

struct rng {
    uint64_t s[4];
};

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* uniform integer in [0, n) */
static int rng_int(struct rng *r, int n) { return (int)(((rng_next(r) >> 32) * (uint64_t)n) >> 32); }
/* uniform double in [a, b) */
static double rng_unif(struct rng *r, double a, double b)
{
    return a + (b - a) * ((double)(rng_next(r) >> 11) * 0x1p-53);
}

/* Split streams: a different constant per split, mixed with the seed, then the index. */
static const uint64_t split_stream[3] = {0x7261696E5F5F5F31ull, 0x76616C5F5F5F5F32ull,
                                         0x746573745F5F5F33ull};

static void rng_init(struct rng *r, uint64_t seed, enum hx_synth_split split, uint64_t index)
{
    uint64_t x = seed ^ split_stream[(int)split % 3];
    uint64_t k = splitmix64(&x);
    x = k ^ (index * 0xD1B54A32D192ED03ull);
    splitmix64(&x);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

/* cos and sin of k * 15 degrees, from exact decimal constants (no libm) */
static void angle15(int k, double *c, double *s)
{
    static const double base_c[6] = {1.0, 0.96592582628906829, 0.86602540378443865,
                                     0.70710678118654752, 0.5, 0.25881904510252076};
    static const double base_s[6] = {0.0, 0.25881904510252076, 0.5, 0.70710678118654752,
                                     0.86602540378443865, 0.96592582628906829};
    k = ((k % 24) + 24) % 24;
    double bc = base_c[k % 6], bs = base_s[k % 6];
    switch (k / 6) {
    case 0: *c = bc, *s = bs; break;
    case 1: *c = -bs, *s = bc; break;
    case 2: *c = -bc, *s = -bs; break;
    default: *c = bs, *s = -bc; break;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* shapes, in the object's frame: radius 1, y pointing down, rotated */

#define C18 0.95105651629515357
#define S18 0.30901699437494742
#define C54 0.58778525229247313
#define S54 0.80901699437494742
#define STAR_IN 0.45
#define C30 0.86602540378443865

static const double star_poly[10][2] = {
    {0, -1},
    {STAR_IN * C54, -STAR_IN * S54},
    {C18, -S18},
    {STAR_IN * C18, STAR_IN * S18},
    {C54, S54},
    {0, STAR_IN},
    {-C54, S54},
    {-STAR_IN * C18, STAR_IN * S18},
    {-C18, -S18},
    {-STAR_IN * C54, -STAR_IN * S54},
};
static const double tri_poly[3][2] = {{0, -1}, {C30, 0.5}, {-C30, 0.5}};

#define SQUARE_HALF 0.8
#define RING_INNER 0.6

static int in_poly(const double (*p)[2], int n, double x, double y)
{
    int in = 0;
    for (int i = 0, j = n - 1; i < n; j = i++) {
        double xi = p[i][0], yi = p[i][1], xj = p[j][0], yj = p[j][1];
        if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi)
            in = !in;
    }
    return in;
}

static int shape_covers(int cls, double lx, double ly)
{
    double d2 = lx * lx + ly * ly;
    switch (cls) {
    case 1: return d2 <= 1.0;
    case 2: return lx >= -SQUARE_HALF && lx <= SQUARE_HALF && ly >= -SQUARE_HALF &&
                   ly <= SQUARE_HALF;
    case 3: return in_poly(tri_poly, 3, lx, ly);
    case 4: return in_poly(star_poly, 10, lx, ly);
    case 5: return d2 <= 1.0 && d2 >= RING_INNER * RING_INNER;
    default: return 0;
    }
}

/* Object-frame coordinates of pixel (x, y), in pixels (px, py) and in radii (lx, ly). */
struct local {
    double px, py, lx, ly;
};

static struct local to_local(const struct hx_synth_object *o, int w, int h, int x, int y)
{
    struct local l;
    double s = w < h ? w : h;
    double dx = (x + 0.5) - o->cx * w, dy = (y + 0.5) - o->cy * h;
    l.px = dx * o->cosa + dy * o->sina;
    l.py = -dx * o->sina + dy * o->cosa;
    double rp = o->r * s;
    l.lx = l.px / rp;
    l.ly = l.py / rp;
    return l;
}

int hx_synth_object_covers(const struct hx_synth_object *o, int w, int h, int x, int y)
{
    struct local l = to_local(o, w, h, x, y);
    return shape_covers(o->cls, l.lx, l.ly);
}

/* Pattern shade (0 main, 1 pattern) at object-frame pixel coordinates; unit = 64-px pixels. */
static int texture_shade(int texture, double u, double v)
{
    switch (texture) {
    case 1: return (int)((long long)floor(u / STRIPE_WIDTH) & 1);
    case 2: {
        double fu = u / DOT_SPACING - floor(u / DOT_SPACING) - 0.5;
        double fv = v / DOT_SPACING - floor(v / DOT_SPACING) - 0.5;
        double rr = DOT_RADIUS / DOT_SPACING;
        return fu * fu + fv * fv <= rr * rr;
    }
    case 3: return (int)(((long long)floor(u / CHECKER_CELL) + (long long)floor(v / CHECKER_CELL)) & 1);
    default: return 0;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* background */

static uint64_t hash3(uint64_t k, uint64_t a, uint64_t b)
{
    uint64_t x = k ^ (a * 0x9E3779B97F4A7C15ull) ^ (b * 0xC2B2AE3D27D4EB4Full);
    return splitmix64(&x);
}

static uint8_t lerp8(uint8_t a, uint8_t b, int t255)
{
    return (uint8_t)((a * (255 - t255) + b * t255 + 127) / 255);
}

static void bg_pixel(const struct hx_synth_background *bg, int w, int h, int x, int y,
                     uint8_t *out)
{
    double s = (w < h ? w : h) / 64.0;
    const uint8_t *c = bg->c0;
    switch (bg->kind) {
    case 0: { /* noise: a per-pixel blend of the two colours */
        int t = (int)(hash3(bg->noise_seed, (uint64_t)x, (uint64_t)y) >> 56);
        for (int i = 0; i < 3; i++)
            out[i] = lerp8(bg->c0[i], bg->c1[i], t);
        return;
    }
    case 1: { /* gradient along the direction, across the whole image */
        double u = ((x + 0.5) / w - 0.5) * bg->cosa + ((y + 0.5) / h - 0.5) * bg->sina;
        double span = fabs(bg->cosa) + fabs(bg->sina);
        double t = 0.5 + u / span;
        int t255 = (int)floor(t * 255.0 + 0.5);
        t255 = t255 < 0 ? 0 : t255 > 255 ? 255 : t255;
        for (int i = 0; i < 3; i++)
            out[i] = lerp8(bg->c0[i], bg->c1[i], t255);
        return;
    }
    case 2: { /* stripes */
        double u = ((x + 0.5) * bg->cosa + (y + 0.5) * bg->sina) / s;
        if ((long long)floor(u / (bg->period * 0.5)) & 1)
            c = bg->c1;
        break;
    }
    default: { /* checker */
        double u = (x + 0.5) / s, v = (y + 0.5) / s;
        if (((long long)floor(u / bg->period) + (long long)floor(v / bg->period)) & 1)
            c = bg->c1;
        break;
    }
    }
    memcpy(out, c, 3);
}

/* ------------------------------------------------------------------------------------------ */
/* scenes */

#define REF 64 /* the raster on which visibility is checked */
#define MIN_VISIBLE_FRACTION 0.5
#define MIN_VISIBLE_PIXELS 8
#define PLACEMENT_TRIES 40

/* Visible pixel counts of the first n objects at REF x REF; full[] = unoccluded areas. */
static void ref_areas(const struct hx_synth_object *obj, int n, int *visible, int *full)
{
    for (int k = 0; k < n; k++)
        visible[k] = full[k] = 0;
    for (int y = 0; y < REF; y++)
        for (int x = 0; x < REF; x++) {
            int top = -1;
            for (int k = 0; k < n; k++)
                if (hx_synth_object_covers(&obj[k], REF, REF, x, y)) {
                    full[k]++;
                    top = k;
                }
            if (top >= 0)
                visible[top]++;
        }
}

static void muted_colour(struct rng *r, uint8_t *c)
{
    int g = 60 + rng_int(r, 131);
    for (int i = 0; i < 3; i++) {
        int v = g + rng_int(r, 71) - 35;
        c[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

void hx_synth_scene_make(struct hx_synth_scene *sc, uint64_t seed, enum hx_synth_split split,
                         uint64_t index)
{
    struct rng r;
    rng_init(&r, seed, split, index);
    memset(sc, 0, sizeof *sc);

    /* background */
    struct hx_synth_background *bg = &sc->bg;
    bg->kind = rng_int(&r, HX_SYNTH_NBACKGROUNDS);
    muted_colour(&r, bg->c0);
    muted_colour(&r, bg->c1);
    if (bg->kind == 0) /* noise: the second colour near the first */
        for (int i = 0; i < 3; i++) {
            int v = bg->c0[i] + rng_int(&r, 81) - 40;
            bg->c1[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    angle15(rng_int(&r, 24), &bg->cosa, &bg->sina);
    bg->period = bg->kind == 2 ? rng_unif(&r, 6.0, 14.0) : rng_unif(&r, 5.0, 12.0);
    bg->noise_seed = rng_next(&r);

    /* objects: each placed so that it and every earlier one stay at least half visible */
    int want = 1 + rng_int(&r, HX_SYNTH_MAX_OBJECTS);
    int visible[HX_SYNTH_MAX_OBJECTS], full[HX_SYNTH_MAX_OBJECTS];
    for (int k = 0; k < want; k++) {
        struct hx_synth_object *o = &sc->obj[sc->nobj];
        o->cls = 1 + rng_int(&r, HX_SYNTH_NCLASSES);
        o->colour = rng_int(&r, HX_SYNTH_NCOLOURS);
        o->size = rng_int(&r, HX_SYNTH_NSIZES);
        o->texture = rng_int(&r, HX_SYNTH_NTEXTURES);
        o->r = size_radius[o->size] * rng_unif(&r, 0.9, 1.1);
        angle15(rng_int(&r, 24), &o->cosa, &o->sina);
        int placed = 0;
        for (int t = 0; t < PLACEMENT_TRIES && !placed; t++) {
            o->cx = rng_unif(&r, o->r, 1.0 - o->r);
            o->cy = rng_unif(&r, o->r, 1.0 - o->r);
            ref_areas(sc->obj, sc->nobj + 1, visible, full);
            placed = 1;
            for (int j = 0; j <= sc->nobj; j++)
                if (visible[j] < MIN_VISIBLE_PIXELS ||
                    visible[j] < MIN_VISIBLE_FRACTION * full[j])
                    placed = 0;
        }
        if (placed)
            sc->nobj++;
        else
            memset(o, 0, sizeof *o);
    }
}

int hx_synth_render(const struct hx_synth_scene *sc, int w, int h, uint8_t *rgb, uint8_t *label,
                    uint8_t *inst)
{
    if (w < 1 || h < 1 || w > HX_SYNTH_MAX_SIDE || h > HX_SYNTH_MAX_SIDE)
        return hx_err(HX_EINVAL, "synth: image size %dx%d outside 1..%d", w, h,
                      HX_SYNTH_MAX_SIDE);
    double s = (w < h ? w : h) / 64.0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            uint8_t *px = rgb + 3 * i;
            int top = -1, shade = 0;
            for (int k = 0; k < sc->nobj; k++) {
                const struct hx_synth_object *o = &sc->obj[k];
                struct local l = to_local(o, w, h, x, y);
                if (shape_covers(o->cls, l.lx, l.ly)) {
                    top = k;
                    shade = texture_shade(o->texture, l.px / s, l.py / s);
                }
            }
            if (top >= 0)
                hx_synth_palette(sc->obj[top].colour, shade, px);
            else
                bg_pixel(&sc->bg, w, h, x, y, px);
            if (label)
                label[i] = (uint8_t)(top >= 0 ? sc->obj[top].cls : 0);
            if (inst)
                inst[i] = (uint8_t)(top + 1);
        }
    return 0;
}

int hx_synth_object_phrase(const struct hx_synth_object *o, int with_size, int with_texture,
                           char *buf, size_t n)
{
    const char *cls = hx_synth_class_name(o->cls), *col = hx_synth_colour_name(o->colour);
    const char *sz = hx_synth_size_name(o->size), *tex = hx_synth_texture_name(o->texture);
    if (!cls || !col || !sz || !tex || o->cls == 0)
        return hx_err(HX_EINVAL, "synth: object with invalid attributes (%d, %d, %d, %d)",
                      o->cls, o->colour, o->size, o->texture);
    int len = snprintf(buf, n, "%s%s%s %s%s%s", with_size ? sz : "", with_size ? " " : "", col,
                       with_texture ? tex : "", with_texture ? " " : "", cls);
    if (len < 0 || (size_t)len >= n)
        return hx_err(HX_EINVAL, "synth: phrase buffer of %zu bytes is too small", n);
    return len;
}

int hx_synth_caption(const struct hx_synth_scene *sc, char *buf, size_t n)
{
    size_t len = 0;
    char phrase[96];
    int rc = snprintf(buf, n, "a photo of ");
    if (rc < 0 || (size_t)rc >= n)
        goto small;
    len = (size_t)rc;
    for (int k = 0; k < sc->nobj; k++) {
        if ((rc = hx_synth_object_phrase(&sc->obj[k], 1, 1, phrase, sizeof phrase)) < 0)
            return rc;
        const char *sep = k == 0 ? "" : k == sc->nobj - 1 ? " and " : ", ";
        rc = snprintf(buf + len, n - len, "%sa %s", sep, phrase);
        if (rc < 0 || (size_t)rc >= n - len)
            goto small;
        len += (size_t)rc;
    }
    if (len + 2 > n)
        goto small;
    buf[len++] = '.';
    buf[len] = 0;
    return (int)len;
small:
    return hx_err(HX_EINVAL, "synth: caption buffer of %zu bytes is too small", n);
}
