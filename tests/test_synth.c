/* The synthetic world: determinism (stored hashes and regeneration), split separation, label
 * exactness against an independent re-rasterisation, captions, and the synth command. */
#include "datasets/synth.h"
#include "harness/error.h"
#include "harness/safetensors.h"
#include "models/clip/clip.h"
#include "tests/test_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
/* stb_image as private static functions (no clash with the library's copy); some of its
 * static prototypes have no definition in this configuration, hence the file-wide pragma */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

/* A rendered scene, heap buffers. */
struct shot {
    struct hx_synth_scene sc;
    int w, h;
    uint8_t *rgb, *label, *inst;
};

static void shoot(struct shot *s, uint64_t seed, enum hx_synth_split split, uint64_t index,
                  int w, int h)
{
    s->w = w;
    s->h = h;
    s->rgb = malloc((size_t)w * h * 3);
    s->label = malloc((size_t)w * h);
    s->inst = malloc((size_t)w * h);
    ck_assert(s->rgb && s->label && s->inst);
    hx_synth_scene_make(&s->sc, seed, split, index);
    ck_assert_int_eq(hx_synth_render(&s->sc, w, h, s->rgb, s->label, s->inst), 0);
}

static void unshoot(struct shot *s)
{
    free(s->rgb);
    free(s->label);
    free(s->inst);
}

static uint64_t shot_hash(const struct shot *s)
{
    uint64_t h = fnv1a(0xCBF29CE484222325ull, s->rgb, (size_t)s->w * s->h * 3);
    return fnv1a(h, s->label, (size_t)s->w * s->h);
}

/* Hashes of image + label bytes, recorded from the first run of this generator: any change
 * to the world (PRNG, draw order, geometry, palette) shows here and must be deliberate. */
static const struct {
    uint64_t seed;
    enum hx_synth_split split;
    uint64_t index;
    int w, h;
    uint64_t hash;
} golden[] = {
    {0, HX_SYNTH_TRAIN, 0, 64, 64, 0xfacb693d58adc086ull},
    {0, HX_SYNTH_TRAIN, 1, 64, 64, 0xe4b0102ddf1596f5ull},
    {0, HX_SYNTH_TRAIN, 2, 64, 64, 0x2a87c8e68b3a4fc6ull},
    {0, HX_SYNTH_VAL, 0, 64, 64, 0x5924ed64352ec2f1ull},
    {0, HX_SYNTH_VAL, 299, 64, 64, 0xf28e7d13cb82eb22ull},
    {7, HX_SYNTH_TRAIN, 12345, 64, 64, 0xf82602242248929dull},
    {0, HX_SYNTH_TRAIN, 3, 97, 61, 0x0dde55137720f7cbull},
    {0, HX_SYNTH_VAL, 4, 224, 224, 0xcfeb949a38b560abull},
};

START_TEST(same_seed_same_bytes)
{
    int bad = 0;
    for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
        struct shot a, b;
        shoot(&a, golden[i].seed, golden[i].split, golden[i].index, golden[i].w, golden[i].h);
        shoot(&b, golden[i].seed, golden[i].split, golden[i].index, golden[i].w, golden[i].h);
        size_t n = (size_t)a.w * a.h;
        ck_assert_msg(memcmp(a.rgb, b.rgb, 3 * n) == 0 && memcmp(a.label, b.label, n) == 0,
                      "scene %zu differs between two renders in one process", i);
        uint64_t h = shot_hash(&a);
        if (h != golden[i].hash) {
            fprintf(stderr, "  golden[%zu] (seed %llu, %s, index %llu, %dx%d): hash 0x%016llx, "
                    "expected 0x%016llx\n", i, (unsigned long long)golden[i].seed,
                    hx_synth_split_name(golden[i].split), (unsigned long long)golden[i].index,
                    a.w, a.h, (unsigned long long)h, (unsigned long long)golden[i].hash);
            bad++;
        }
        unshoot(&a);
        unshoot(&b);
    }
    ck_assert_msg(bad == 0, "%d scenes differ from their recorded hashes", bad);
}
END_TEST

START_TEST(interleaved_generation_is_stateless)
{
    /* a scene does not depend on what was generated before it */
    struct shot a, b, c;
    shoot(&a, 3, HX_SYNTH_VAL, 17, 64, 64);
    for (int i = 0; i < 5; i++) {
        shoot(&c, 3, HX_SYNTH_TRAIN, (uint64_t)i, 32, 48);
        unshoot(&c);
    }
    shoot(&b, 3, HX_SYNTH_VAL, 17, 64, 64);
    ck_assert(memcmp(a.rgb, b.rgb, 64 * 64 * 3) == 0);
    ck_assert(memcmp(&a.sc, &b.sc, sizeof a.sc) == 0);
    unshoot(&a);
    unshoot(&b);
}
END_TEST

START_TEST(splits_and_seeds_differ)
{
    int same_split = 0, same_seed = 0, same_index = 0;
    for (int i = 0; i < 50; i++) {
        struct shot t, v, s, n;
        shoot(&t, 0, HX_SYNTH_TRAIN, (uint64_t)i, 64, 64);
        shoot(&v, 0, HX_SYNTH_VAL, (uint64_t)i, 64, 64);
        shoot(&s, 1, HX_SYNTH_TRAIN, (uint64_t)i, 64, 64);
        shoot(&n, 0, HX_SYNTH_TRAIN, (uint64_t)i + 1, 64, 64);
        same_split += memcmp(t.rgb, v.rgb, 64 * 64 * 3) == 0;
        same_seed += memcmp(t.rgb, s.rgb, 64 * 64 * 3) == 0;
        same_index += memcmp(t.rgb, n.rgb, 64 * 64 * 3) == 0;
        unshoot(&t), unshoot(&v), unshoot(&s), unshoot(&n);
    }
    ck_assert_int_eq(same_split, 0);
    ck_assert_int_eq(same_seed, 0);
    ck_assert_int_eq(same_index, 0);
    /* and no train scene of the first 300 equals any of the first 300 val scenes */
    uint64_t th[300], vh[300];
    for (int i = 0; i < 300; i++) {
        struct shot t, v;
        shoot(&t, 0, HX_SYNTH_TRAIN, (uint64_t)i, 32, 32);
        shoot(&v, 0, HX_SYNTH_VAL, (uint64_t)i, 32, 32);
        th[i] = shot_hash(&t);
        vh[i] = shot_hash(&v);
        unshoot(&t), unshoot(&v);
    }
    for (int i = 0; i < 300; i++)
        for (int j = 0; j < 300; j++)
            ck_assert_msg(th[i] != vh[j], "train %d and val %d render the same", i, j);
}
END_TEST

/* ---- an independent rasteriser of the world's shapes, for the exactness checks ---- */

/* sign of the cross product (b - a) x (p - a) */
static double edge(double ax, double ay, double bx, double by, double px, double py)
{
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax);
}

static int in_convex(const double (*v)[2], int n, double x, double y)
{
    int pos = 0, neg = 0;
    for (int i = 0; i < n; i++) {
        double e = edge(v[i][0], v[i][1], v[(i + 1) % n][0], v[(i + 1) % n][1], x, y);
        pos |= e > 0;
        neg |= e < 0;
    }
    return !(pos && neg);
}

/* The shapes in their own frame (radius 1, y down): circle, square of half-side 0.8,
 * equilateral triangle pointing up, five-pointed star with inner radius 0.45 pointing up,
 * ring of inner radius 0.6. Vertices from sin/cos here, not from the generator's tables. */
static int ref_covers(int cls, double x, double y)
{
    const double pi = 3.14159265358979323846;
    switch (cls) {
    case 1: return hypot(x, y) <= 1.0 + 1e-12;
    case 2: return fmax(fabs(x), fabs(y)) <= 0.8;
    case 3: {
        double v[3][2];
        for (int i = 0; i < 3; i++)
            v[i][0] = cos(-pi / 2 + i * 2 * pi / 3), v[i][1] = sin(-pi / 2 + i * 2 * pi / 3);
        return in_convex(v, 3, x, y);
    }
    case 4: {
        /* the star = inner pentagon + five tip triangles */
        double in[5][2], tip[5][2];
        for (int i = 0; i < 5; i++) {
            tip[i][0] = cos(-pi / 2 + i * 2 * pi / 5), tip[i][1] = sin(-pi / 2 + i * 2 * pi / 5);
            in[i][0] = 0.45 * cos(-pi / 2 + pi / 5 + i * 2 * pi / 5);
            in[i][1] = 0.45 * sin(-pi / 2 + pi / 5 + i * 2 * pi / 5);
        }
        if (in_convex(in, 5, x, y))
            return 1;
        for (int i = 0; i < 5; i++) {
            double t[3][2] = {{in[(i + 4) % 5][0], in[(i + 4) % 5][1]},
                              {tip[i][0], tip[i][1]},
                              {in[i][0], in[i][1]}};
            if (in_convex(t, 3, x, y))
                return 1;
        }
        return 0;
    }
    case 5: {
        double d = hypot(x, y);
        return d <= 1.0 + 1e-12 && d >= 0.6 - 1e-12;
    }
    }
    return 0;
}

/* Label map of the object list, painted in order; pixels within 1e-9 of a boundary are
 * marked ambiguous (255) since two correct rasterisers may round them differently. */
static void ref_labels(const struct hx_synth_scene *sc, int w, int h, uint8_t *lab)
{
    double s = w < h ? w : h;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int top = 0;
            for (int k = 0; k < sc->nobj; k++) {
                const struct hx_synth_object *o = &sc->obj[k];
                double a = atan2(o->sina, o->cosa);
                double dx = (x + 0.5 - o->cx * w) / (o->r * s), dy = (y + 0.5 - o->cy * h) / (o->r * s);
                double lx = dx * cos(a) + dy * sin(a), ly = -dx * sin(a) + dy * cos(a);
                int c = ref_covers(o->cls, lx, ly);
                int amb = 0;
                for (int d = 0; d < 4 && !amb; d++) {
                    double ex = lx + (d == 0 ? 1e-9 : d == 1 ? -1e-9 : 0);
                    double ey = ly + (d == 2 ? 1e-9 : d == 3 ? -1e-9 : 0);
                    amb = ref_covers(o->cls, ex, ey) != c;
                }
                if (amb)
                    top = 255;
                else if (c)
                    top = o->cls;
            }
            lab[(size_t)y * w + x] = (uint8_t)top;
        }
}

START_TEST(labels_are_exact)
{
    static const int sizes[][2] = {{64, 64}, {97, 61}, {40, 128}, {16, 16}};
    long checked = 0, ambiguous = 0;
    for (int si = 0; si < 4; si++)
        for (int i = 0; i < 120; i++) {
            int w = sizes[si][0], h = sizes[si][1];
            struct shot s;
            shoot(&s, 0, i % 2 ? HX_SYNTH_VAL : HX_SYNTH_TRAIN, (uint64_t)i, w, h);
            uint8_t *ref = malloc((size_t)w * h);
            ref_labels(&s.sc, w, h, ref);
            for (int p = 0; p < w * h; p++) {
                int l = s.label[p], k = s.inst[p];
                ck_assert_int_le(l, HX_SYNTH_NCLASSES);
                ck_assert_int_le(k, s.sc.nobj);
                /* label and instance agree; background exactly where no object */
                ck_assert_int_eq(l, k ? s.sc.obj[k - 1].cls : 0);
                if (k) {
                    const struct hx_synth_object *o = &s.sc.obj[k - 1];
                    uint8_t c0[3], c1[3];
                    hx_synth_palette(o->colour, 0, c0);
                    hx_synth_palette(o->colour, 1, c1);
                    int is0 = memcmp(s.rgb + 3 * p, c0, 3) == 0;
                    int is1 = memcmp(s.rgb + 3 * p, c1, 3) == 0;
                    ck_assert_msg(is0 || (is1 && o->texture != 0),
                                  "pixel %d of a %s %s object has colour %d,%d,%d", p,
                                  hx_synth_colour_name(o->colour),
                                  hx_synth_texture_name(o->texture), s.rgb[3 * p],
                                  s.rgb[3 * p + 1], s.rgb[3 * p + 2]);
                }
                if (ref[p] == 255) {
                    ambiguous++;
                    continue;
                }
                ck_assert_msg(ref[p] == l, "%dx%d scene %d pixel (%d,%d): label %d, "
                              "re-rasterised %d", w, h, i, p % w, p / w, l, ref[p]);
                checked++;
            }
            free(ref);
            unshoot(&s);
        }
    ck_assert_int_lt(ambiguous, checked / 10000 + 1);
}
END_TEST

START_TEST(objects_visible_and_attributes_in_range)
{
    int hist[HX_SYNTH_NCLASSES + 1] = {0}, nobj[HX_SYNTH_MAX_OBJECTS + 1] = {0};
    for (int i = 0; i < 300; i++) {
        struct shot s;
        shoot(&s, 0, HX_SYNTH_TRAIN, (uint64_t)i, 64, 64);
        ck_assert_int_ge(s.sc.nobj, 1);
        ck_assert_int_le(s.sc.nobj, HX_SYNTH_MAX_OBJECTS);
        nobj[s.sc.nobj]++;
        int vis[HX_SYNTH_MAX_OBJECTS + 1] = {0};
        for (int p = 0; p < 64 * 64; p++)
            vis[s.inst[p]]++;
        for (int k = 0; k < s.sc.nobj; k++) {
            const struct hx_synth_object *o = &s.sc.obj[k];
            ck_assert(hx_synth_class_name(o->cls) && o->cls > 0);
            ck_assert(hx_synth_colour_name(o->colour));
            ck_assert(hx_synth_size_name(o->size));
            ck_assert(hx_synth_texture_name(o->texture));
            ck_assert_msg(vis[k + 1] >= 8, "scene %d object %d has %d visible pixels", i, k,
                          vis[k + 1]);
            hist[o->cls]++;
        }
        for (int p = 0; p < 64 * 64; p++)
            ck_assert_int_ne(s.label[p], 255);
        unshoot(&s);
    }
    for (int c = 1; c <= HX_SYNTH_NCLASSES; c++)
        ck_assert_int_gt(hist[c], 50);
    for (int n = 1; n <= HX_SYNTH_MAX_OBJECTS; n++)
        ck_assert_int_gt(nobj[n], 30);
}
END_TEST

START_TEST(caption_lists_the_objects_drawn)
{
    for (int i = 0; i < 200; i++) {
        struct shot s;
        shoot(&s, 5, HX_SYNTH_VAL, (uint64_t)i, 64, 64);
        char cap[HX_SYNTH_CAPTION_MAX], want[HX_SYNTH_CAPTION_MAX * 2];
        int len = hx_synth_caption(&s.sc, cap, sizeof cap);
        ck_assert_int_gt(len, 0);
        ck_assert_int_eq((int)strlen(cap), len);
        /* built here from the drawn objects: which instances appear in the image */
        int present[HX_SYNTH_MAX_OBJECTS + 1] = {0}, n = 0;
        for (int p = 0; p < 64 * 64; p++)
            present[s.inst[p]] = 1;
        size_t o = (size_t)snprintf(want, sizeof want, "a photo of");
        for (int k = 0; k < s.sc.nobj; k++) {
            ck_assert_msg(present[k + 1], "scene %d: object %d captioned but not drawn", i, k);
            const struct hx_synth_object *ob = &s.sc.obj[k];
            o += (size_t)snprintf(want + o, sizeof want - o, "%s a %s %s %s %s",
                                  k == 0 ? "" : k == s.sc.nobj - 1 ? " and" : ",",
                                  hx_synth_size_name(ob->size), hx_synth_colour_name(ob->colour),
                                  hx_synth_texture_name(ob->texture),
                                  hx_synth_class_name(ob->cls));
            n++;
        }
        for (int k = s.sc.nobj + 1; k <= HX_SYNTH_MAX_OBJECTS; k++)
            ck_assert(!present[k]);
        snprintf(want + o, sizeof want - o, ".");
        ck_assert_str_eq(cap, want);
        /* every class word drawn is in the caption, and no other */
        for (int c = 1; c <= HX_SYNTH_NCLASSES; c++) {
            int drawn = 0;
            for (int p = 0; p < 64 * 64; p++)
                drawn |= s.label[p] == c;
            ck_assert_int_eq(drawn, strstr(cap, hx_synth_class_name(c)) != NULL);
        }
        unshoot(&s);
    }
    /* a too-small buffer is an error, not a truncated caption */
    struct hx_synth_scene sc;
    char tiny[12];
    hx_synth_scene_make(&sc, 0, HX_SYNTH_TRAIN, 0);
    ck_assert_int_lt(hx_synth_caption(&sc, tiny, sizeof tiny), 0);
    char ph[64];
    ck_assert_int_gt(hx_synth_object_phrase(&sc.obj[0], 0, 0, ph, sizeof ph), 0);
    ck_assert_ptr_nonnull(strstr(ph, hx_synth_class_name(sc.obj[0].cls)));
}
END_TEST

START_TEST(render_rejects_bad_sizes)
{
    struct hx_synth_scene sc;
    uint8_t px[3];
    hx_synth_scene_make(&sc, 0, HX_SYNTH_TRAIN, 0);
    ck_assert_int_eq(hx_synth_render(&sc, 0, 5, px, NULL, NULL), HX_EINVAL);
    ck_assert_int_eq(hx_synth_render(&sc, 5, HX_SYNTH_MAX_SIDE + 1, px, NULL, NULL), HX_EINVAL);
    ck_assert_int_eq(hx_synth_render(&sc, 1, 1, px, NULL, NULL), 0);
    enum hx_synth_split sp;
    ck_assert_int_eq(hx_synth_split_parse("val", &sp), 0);
    ck_assert_int_eq(sp, HX_SYNTH_VAL);
    ck_assert_int_lt(hx_synth_split_parse("valid", &sp), 0);
}
END_TEST

/* ---- the command ---- */

/* Run `harness synth ARGS`, stderr to errfile; returns the exit code. */
static int run_synth(const char *args, const char *errfile)
{
    char full[4096];
    snprintf(full, sizeof full, "synth %s", args);
    return hx_run_harness(full, NULL, errfile);
}

START_TEST(command_writes_what_it_says)
{
    if (access(hx_harness_bin(), X_OK))
        HX_SKIP("build/harness is not built");
    const char *dir = hx_tmpdir();
    char out[600], args[1024], err[700], path[800];
    snprintf(out, sizeof out, "%s/ds", dir);
    snprintf(err, sizeof err, "%s/err.txt", dir);
    snprintf(args, sizeof args, "--out %s --split val --count 4 --start 2 --size 48 --seed 9",
             out);
    ck_assert_int_eq(run_synth(args, err), 0);

    snprintf(path, sizeof path, "%s/split.txt", out);
    char *split = hx_slurp(path);
    ck_assert_ptr_nonnull(split);
    ck_assert_str_eq(split, "val_000002\nval_000003\nval_000004\nval_000005\n");
    free(split);

    snprintf(path, sizeof path, "%s/captions.jsonl", out);
    char *caps = hx_slurp(path);
    ck_assert_ptr_nonnull(caps);
    char *line = caps;
    for (int i = 0; i < 4; i++) {
        char *nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        *nl = 0;
        cJSON *j = cJSON_Parse(line);
        ck_assert_msg(j != NULL, "captions.jsonl line %d is not JSON", i + 1);
        struct shot s;
        shoot(&s, 9, HX_SYNTH_VAL, (uint64_t)(2 + i), 48, 48);
        char id[32], cap[HX_SYNTH_CAPTION_MAX];
        snprintf(id, sizeof id, "val_%06d", 2 + i);
        hx_synth_caption(&s.sc, cap, sizeof cap);
        ck_assert_str_eq(cJSON_GetObjectItem(j, "id")->valuestring, id);
        ck_assert_str_eq(cJSON_GetObjectItem(j, "caption")->valuestring, cap);
        ck_assert_str_eq(cJSON_GetObjectItem(j, "background")->valuestring,
                         hx_synth_background_name(s.sc.bg.kind));
        cJSON *objs = cJSON_GetObjectItem(j, "objects");
        ck_assert_int_eq(cJSON_GetArraySize(objs), s.sc.nobj);
        for (int k = 0; k < s.sc.nobj; k++) {
            cJSON *o = cJSON_GetArrayItem(objs, k);
            const struct hx_synth_object *ob = &s.sc.obj[k];
            ck_assert_str_eq(cJSON_GetObjectItem(o, "class")->valuestring,
                             hx_synth_class_name(ob->cls));
            ck_assert_str_eq(cJSON_GetObjectItem(o, "colour")->valuestring,
                             hx_synth_colour_name(ob->colour));
            ck_assert_str_eq(cJSON_GetObjectItem(o, "size")->valuestring,
                             hx_synth_size_name(ob->size));
            ck_assert_str_eq(cJSON_GetObjectItem(o, "texture")->valuestring,
                             hx_synth_texture_name(ob->texture));
            long area = 0;
            for (int p = 0; p < 48 * 48; p++)
                area += s.inst[p] == k + 1;
            ck_assert_int_eq((long)cJSON_GetObjectItem(o, "area")->valuedouble, area);
        }
        cJSON_Delete(j);

        /* the PNGs decode to the rendered bytes */
        int w, h, c;
        snprintf(path, sizeof path, "%s/images/%s.png", out, id);
        uint8_t *im = stbi_load(path, &w, &h, &c, 0);
        ck_assert_msg(im != NULL, "%s unreadable", path);
        ck_assert(w == 48 && h == 48 && c == 3);
        ck_assert(memcmp(im, s.rgb, 48 * 48 * 3) == 0);
        stbi_image_free(im);
        snprintf(path, sizeof path, "%s/labels/%s.png", out, id);
        im = stbi_load(path, &w, &h, &c, 0);
        ck_assert_msg(im != NULL, "%s unreadable", path);
        ck_assert(w == 48 && h == 48 && c == 1);
        ck_assert(memcmp(im, s.label, 48 * 48) == 0);
        stbi_image_free(im);
        unshoot(&s);
        line = nl + 1;
    }
    ck_assert_str_eq(line, "");
    free(caps);
    /* nothing temporary left behind */
    snprintf(args, sizeof args, "ls -a %s | grep -c tmp >/dev/null", out);
    ck_assert_int_ne(system(args), 0);
}
END_TEST

START_TEST(command_rejects_bad_arguments)
{
    if (access(hx_harness_bin(), X_OK))
        HX_SKIP("build/harness is not built");
    const char *dir = hx_tmpdir();
    static const struct {
        const char *args; /* %s = output folder */
        const char *field;
    } bad[] = {
        {"--split val --count 3", "--out"},
        {"--out %s --count 3", "--split"},
        {"--out %s --split test --count 3", "--split"},
        {"--out %s --split val", "--count"},
        {"--out %s --split val --count -1", "--count"},
        {"--out %s --split val --count x", "--count"},
        {"--out %s --split val --count 3 --size 4", "--size"},
        {"--out %s --split val --count 3 --size 5000", "--size"},
        {"--out %s --split val --count 3 --seed -2", "--seed"},
        {"--out %s --split val --count 3 --bogus 1", "--bogus"},
        {"--out %s --split val --count 3 extra", "extra"},
    };
    char out[600], args[2048], err[700];
    snprintf(out, sizeof out, "%s/never", dir);
    snprintf(err, sizeof err, "%s/err.txt", dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, bad[i].args, out);
        ck_assert_msg(run_synth(args, err) == 2, "'%s' did not exit with 2", args);
        char *msg = hx_slurp(err);
        ck_assert_ptr_nonnull(msg);
        ck_assert_msg(strstr(msg, bad[i].field) != NULL, "'%s': message '%s' does not name %s",
                      args, msg, bad[i].field);
        free(msg);
        struct stat st;
        ck_assert_msg(stat(out, &st) != 0, "'%s' created the output folder", args);
    }
    /* an output path that is a file: an input error naming it */
    snprintf(args, sizeof args, "--out %s --split val --count 1", err);
    ck_assert_int_eq(run_synth(args, out), 2);
    char *msg = hx_slurp(out);
    ck_assert_ptr_nonnull(strstr(msg, "err.txt"));
    free(msg);
    /* --help succeeds and documents the files */
    ck_assert_int_eq(hx_run_harness("synth --help", err, err), 0);
    msg = hx_slurp(err);
    ck_assert_ptr_nonnull(strstr(msg, "captions.jsonl"));
    ck_assert_ptr_nonnull(strstr(msg, "split.txt"));
    free(msg);
}
END_TEST

/* ---- the CLIP trained on this world, read by the C engine ---- */

static float *ref_tensor(const struct hx_safetensors *st, const char *name, size_t *n)
{
    const struct hx_st_tensor *t = hx_st_find(st, name);
    float *p = NULL;
    ck_assert_msg(t != NULL, "reference tensor %s missing", name);
    ck_assert_msg(hx_st_load_f32(st, name, -1, NULL, &p) == 0, "%s", hx_errmsg());
    *n = (size_t)t->numel;
    return p;
}

static void close_to(const char *what, const float *got, const float *want, size_t n)
{
    double scale = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    hx_assert_close(what, got, want, n, 1e-3, 1e-3 * scale);
}

START_TEST(trained_model_matches_pytorch)
{
    /* models/synth-clip against scripts/eval_synth_dense.py --parity: val scene 0 rendered
     * here, every dense variant, the pooled embedding and the class-prompt text embeddings */
    struct hx_clip *m = NULL;
    struct hx_safetensors *ref = NULL;
    ck_assert_msg(hx_clip_open(&m, "models/synth-clip", HX_CLIP_VISION | HX_CLIP_TEXT) == 0,
                  "%s", hx_errmsg());
    ck_assert_msg(hx_st_open(&ref, hx_testdata("synth/synth_clip_expected.safetensors")) == 0,
                  "%s", hx_errmsg());
    const struct hx_clip_config *cfg = hx_clip_cfg(m);
    int E = cfg->projection_dim, S = cfg->vision.image_size, P = cfg->vision.patch_size;
    int G = (S / P) * (S / P);
    struct shot s;
    shoot(&s, 0, HX_SYNTH_VAL, 0, S, S);
    static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    static const float sd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    float *img = malloc(sizeof(float) * 3 * S * S), *dense = malloc(sizeof(float) * G * E);
    float *pooled = malloc(sizeof(float) * E);
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < S * S; p++)
            img[(size_t)c * S * S + p] = (s.rgb[3 * p + c] / 255.0f - mean[c]) / sd[c];
    size_t n;
    for (int v = 0; v < HX_NVARIANTS; v++) {
        char name[64];
        int gh, gw;
        ck_assert_msg(hx_clip_encode_image(m, img, S, S, (enum hx_variant)v, pooled, dense, &gh,
                                           &gw) == 0, "%s", hx_errmsg());
        ck_assert_int_eq(gh * gw, G);
        snprintf(name, sizeof name, "dense.%s", hx_variant_name((enum hx_variant)v));
        float *want = ref_tensor(ref, name, &n);
        ck_assert_int_eq((int)n, G * E);
        close_to(name, dense, want, n);
        free(want);
    }
    float *want = ref_tensor(ref, "image_embeds", &n);
    ck_assert_int_eq((int)n, E);
    close_to("image_embeds", pooled, want, n);
    free(want);

    const struct hx_st_tensor *t = hx_st_find(ref, "text.input_ids");
    ck_assert(t && t->dtype == HX_I64 && t->ndim == 2);
    int nt = (int)t->shape[0], T = (int)t->shape[1];
    int32_t *ids = malloc(sizeof(int32_t) * nt * T);
    int64_t id64;
    for (int i = 0; i < nt * T; i++) {
        memcpy(&id64, (const uint8_t *)t->data + 8 * (size_t)i, 8);
        ids[i] = (int32_t)id64;
    }
    float *temb = malloc(sizeof(float) * nt * E);
    ck_assert_msg(hx_clip_encode_tokens(m, ids, nt, T, temb) == 0, "%s", hx_errmsg());
    want = ref_tensor(ref, "text.embeds", &n);
    ck_assert_int_eq((int)n, nt * E);
    close_to("text.embeds", temb, want, n);
    free(want);
    free(ids), free(temb), free(img), free(dense), free(pooled);
    unshoot(&s);
    hx_st_free(ref);
    hx_clip_free(m);
}
END_TEST

Suite *suite_synth(void)
{
    Suite *s = suite_create("synth");
    TCase *tc = tcase_create("world");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, same_seed_same_bytes);
    tcase_add_test(tc, interleaved_generation_is_stateless);
    tcase_add_test(tc, splits_and_seeds_differ);
    tcase_add_test(tc, labels_are_exact);
    tcase_add_test(tc, objects_visible_and_attributes_in_range);
    tcase_add_test(tc, caption_lists_the_objects_drawn);
    tcase_add_test(tc, render_rejects_bad_sizes);
    suite_add_tcase(s, tc);
    TCase *cmd = tcase_create("command");
    tcase_set_timeout(cmd, 60);
    tcase_add_test(cmd, command_writes_what_it_says);
    tcase_add_test(cmd, command_rejects_bad_arguments);
    suite_add_tcase(s, cmd);
    TCase *model = tcase_create("model");
    tcase_set_timeout(model, 60);
    tcase_add_test(model, trained_model_matches_pytorch);
    suite_add_tcase(s, model);
    return s;
}
