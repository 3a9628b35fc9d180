#include "datasets/synth.h"
#include "harness/atomicio.h"
#include "harness/cli/cli.h"
#include "harness/error.h"
#include "harness/image.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: harness synth --out DIR --split train|val --count N [--seed S] [--size PX]\n"
    "                     [--start I]\n"
    "\n"
    "Render scenes of the synthetic world (datasets/synth.h): 1-3 shapes (circle, square,\n"
    "triangle, star, ring) with a colour, size and texture on a textured background.\n"
    "Scene ids are <split>_<index, 6 digits>; a scene depends only on (seed, split, index).\n"
    "\n"
    "  --out DIR     output folder (created if missing)\n"
    "  --split S     train or val (different seed streams; they never share scenes)\n"
    "  --count N     number of scenes\n"
    "  --seed S      world seed, >= 0 (default 0)\n"
    "  --size PX     image side in pixels, 8..4096 (default 64)\n"
    "  --start I     index of the first scene (default 0)\n"
    "\n"
    "Writes, each file atomically:\n"
    "  DIR/images/<id>.png   RGB\n"
    "  DIR/labels/<id>.png   8-bit grey: 0 background, 1..5 the classes in the order of\n"
    "                        datasets/classnames/synth.txt\n"
    "  DIR/captions.jsonl    one line per scene: {\"id\", \"caption\", \"objects\": [{\"class\",\n"
    "                        \"colour\", \"size\", \"texture\", \"bbox\": [x0, y0, x1, y1] (visible\n"
    "                        pixels, end exclusive), \"area\" (visible pixels)}] in drawing order,\n"
    "                        \"background\": noise|gradient|stripes|checker}\n"
    "  DIR/split.txt         the ids, one per line\n";

/* Write everything to path.tmp, then rename: readers see the old file or the whole new one. */
struct atomic_file {
    FILE *f;
    char path[4096], tmp[4200];
};

static int afile_open(struct atomic_file *a, const char *dir, const char *name)
{
    snprintf(a->path, sizeof a->path, "%s/%s", dir, name);
    snprintf(a->tmp, sizeof a->tmp, "%s.tmp.%d", a->path, (int)getpid());
    if (!(a->f = fopen(a->tmp, "w")))
        return hx_err(HX_EIO, "cannot write %s: %s", a->tmp, strerror(errno));
    return 0;
}

static int afile_commit(struct atomic_file *a)
{
    int bad = ferror(a->f);
    bad |= fclose(a->f) != 0;
    a->f = NULL;
    if (bad || rename(a->tmp, a->path)) {
        unlink(a->tmp);
        return hx_err(HX_EIO, "cannot write %s: %s", a->path, strerror(errno));
    }
    return 0;
}

static void afile_abort(struct atomic_file *a)
{
    if (a->f) {
        fclose(a->f);
        a->f = NULL;
        unlink(a->tmp);
    }
}

static void write_objects(FILE *f, const struct hx_synth_scene *sc, const uint8_t *inst, int S)
{
    fputs("[", f);
    for (int k = 0; k < sc->nobj; k++) {
        const struct hx_synth_object *o = &sc->obj[k];
        int x0 = S, y0 = S, x1 = 0, y1 = 0;
        long area = 0;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                if (inst[(size_t)y * S + x] == k + 1) {
                    area++;
                    x0 = x < x0 ? x : x0;
                    y0 = y < y0 ? y : y0;
                    x1 = x + 1 > x1 ? x + 1 : x1;
                    y1 = y + 1 > y1 ? y + 1 : y1;
                }
        if (!area)
            x0 = y0 = 0;
        fprintf(f,
                "%s{\"class\": \"%s\", \"colour\": \"%s\", \"size\": \"%s\", \"texture\": "
                "\"%s\", \"bbox\": [%d, %d, %d, %d], \"area\": %ld}",
                k ? ", " : "", hx_synth_class_name(o->cls), hx_synth_colour_name(o->colour),
                hx_synth_size_name(o->size), hx_synth_texture_name(o->texture), x0, y0, x1, y1,
                area);
    }
    fputs("]", f);
}

static int run(int argc, char **argv)
{
    const char *out = NULL, *split_s = NULL;
    int count = INT_MIN, seed = 0, size = HX_SYNTH_DEFAULT_SIZE, start = 0, n, rc = 0, code;
    struct cli_opt opts[] = {{"out", CLI_STR, &out},   {"split", CLI_STR, &split_s},
                             {"count", CLI_INT, &count}, {"seed", CLI_INT, &seed},
                             {"size", CLI_INT, &size},  {"start", CLI_INT, &start}};
    char *pos[argc];
    enum hx_synth_split split;
    uint8_t *rgb = NULL, *label = NULL, *inst = NULL;
    struct atomic_file cap = {0}, ids = {0};
    char dir[4096], path[4200], caption[HX_SYNTH_CAPTION_MAX];
    if ((code = cli_parse(argv[0], argc, argv, opts, 6, pos, &n)))
        return code;
    if (n)
        return cli_usage_error(argv[0], "unexpected argument '%s'", pos[0]);
    if ((code = cli_require(argv[0], out, "out")) ||
        (code = cli_require(argv[0], split_s, "split")))
        return code;
    if (count == INT_MIN)
        return cli_usage_error(argv[0], "missing required option --count");
    if (count < 0)
        return cli_usage_error(argv[0], "--count must be >= 0, got %d", count);
    if (hx_synth_split_parse(split_s, &split) || split == HX_SYNTH_TEST)
        return cli_usage_error(argv[0], "--split must be train or val, got '%s'", split_s);
    if (seed < 0)
        return cli_usage_error(argv[0], "--seed must be >= 0, got %d", seed);
    if (size < 8 || size > 4096)
        return cli_usage_error(argv[0], "--size must be in 8..4096, got %d", size);
    if (start < 0 || start > 999999 || count > 1000000 - start)
        return cli_usage_error(argv[0], "--start + --count must stay within 0..1000000");
    if (strlen(out) > 3000)
        return cli_usage_error(argv[0], "--out path is too long");

    size_t np = (size_t)size * size;
    rgb = malloc(3 * np);
    label = malloc(np);
    inst = malloc(np);
    if (!rgb || !label || !inst) {
        rc = hx_err(HX_ENOMEM, "out of memory for %dx%d images", size, size);
        goto fail;
    }
    if ((rc = hx_mkdirs(out)))
        goto fail;
    snprintf(dir, sizeof dir, "%s/images", out);
    if ((rc = hx_mkdirs(dir)))
        goto fail;
    snprintf(dir, sizeof dir, "%s/labels", out);
    if ((rc = hx_mkdirs(dir)) || (rc = afile_open(&cap, out, "captions.jsonl")) ||
        (rc = afile_open(&ids, out, "split.txt")))
        goto fail;
    for (int i = 0; i < count; i++) {
        struct hx_synth_scene sc;
        char id[32];
        snprintf(id, sizeof id, "%s_%06d", split_s, start + i);
        hx_synth_scene_make(&sc, (uint64_t)seed, split, (uint64_t)(start + i));
        if ((rc = hx_synth_render(&sc, size, size, rgb, label, inst)) < 0 ||
            (rc = hx_synth_caption(&sc, caption, sizeof caption)) < 0)
            goto fail;
        snprintf(path, sizeof path, "%s/images/%s.png", out, id);
        if ((rc = hx_png_write(path, rgb, size, size, 3)))
            goto fail;
        snprintf(path, sizeof path, "%s/labels/%s.png", out, id);
        if ((rc = hx_png_write(path, label, size, size, 1)))
            goto fail;
        fprintf(cap.f, "{\"id\": \"%s\", \"caption\": \"%s\", \"objects\": ", id, caption);
        write_objects(cap.f, &sc, inst, size);
        fprintf(cap.f, ", \"background\": \"%s\"}\n", hx_synth_background_name(sc.bg.kind));
        fprintf(ids.f, "%s\n", id);
        if ((i + 1) % 5000 == 0)
            fprintf(stderr, "synth: %d/%d scenes\n", i + 1, count);
    }
    if ((rc = afile_commit(&cap)) || (rc = afile_commit(&ids)))
        goto fail;
    fprintf(stderr, "synth: wrote %d %s scenes (%dx%d, seed %d) to %s\n", count, split_s, size,
            size, seed, out);
    code = 0;
    goto done;
fail:
    code = cli_fail(argv[0], rc);
done:
    afile_abort(&cap);
    afile_abort(&ids);
    free(rgb);
    free(label);
    free(inst);
    return code;
}

const struct hx_command hx_cmd_synth = {
    "synth", "render scenes of the synthetic world (images, labels, captions)", usage, run};
