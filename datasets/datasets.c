#include "datasets/datasets.h"
#include "harness/atomicio.h"
#include "harness/error.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stb/stb_image.h>

#define VOC12 "VOCdevkit/VOC2012"
#define VOC10 "VOCdevkit/VOC2010"
#define COCO "coco_stuff164k"
#define ADE "ADEChallengeData2016"

static const struct hx_dataset registry[] = {
    {"voc21", 21, 255, VOC12, "JPEGImages", ".jpg", "SegmentationClass", ".png",
     "ImageSets/Segmentation/val.txt", 20, 0, 0, 0, "datasets/classnames/voc21.txt",
     "PASCAL VOC 2012 val, background + 20 classes", "val",
     {{"train", "JPEGImages", "SegmentationClass", "ImageSets/Segmentation/train.txt"},
      {"trainval", "JPEGImages", "SegmentationClass", "ImageSets/Segmentation/trainval.txt"}}},
    {"voc20", 20, 255, VOC12, "JPEGImages", ".jpg", "SegmentationClass", ".png",
     "ImageSets/Segmentation/val.txt", 20, 1, 0, 0, "datasets/classnames/voc20.txt",
     "PASCAL VOC 2012 val, 20 classes, background ignored", "val",
     {{"train", "JPEGImages", "SegmentationClass", "ImageSets/Segmentation/train.txt"},
      {"trainval", "JPEGImages", "SegmentationClass", "ImageSets/Segmentation/trainval.txt"}}},
    {"context60", 60, 255, VOC10, "JPEGImages", ".jpg", "SegmentationClassContext", ".png",
     "ImageSets/SegmentationContext/val.txt", 59, 0, 0, 0, "datasets/classnames/context60.txt",
     "PASCAL Context val, background + 59 classes", "val",
     {{"train", "JPEGImages", "SegmentationClassContext", "ImageSets/SegmentationContext/train.txt"}}},
    {"context59", 59, 255, VOC10, "JPEGImages", ".jpg", "SegmentationClassContext", ".png",
     "ImageSets/SegmentationContext/val.txt", 59, 1, 0, 0, "datasets/classnames/context59.txt",
     "PASCAL Context val, 59 classes, background ignored", "val",
     {{"train", "JPEGImages", "SegmentationClassContext", "ImageSets/SegmentationContext/train.txt"}}},
    {"coco_stuff171", 171, 255, COCO, "images/val2017", ".jpg", "annotations/val2017",
     "_labelTrainIds.png", NULL, 181, 0, 171, 0, "datasets/classnames/coco_stuff171.txt",
     "COCO-Stuff 164k val2017, 171 classes", "val",
     {{"train", "images/train2017", "annotations/train2017", NULL}}},
    {"coco_object", 81, -1, COCO, "images/val2017", ".jpg", "annotations/val2017",
     "_labelTrainIds.png", NULL, 181, 0, 81, 0, "datasets/classnames/coco_object.txt",
     "COCO-Stuff 164k val2017 as background + 80 things, nothing ignored", "val",
     {{"train", "images/train2017", "annotations/train2017", NULL}}},
    {"ade150", 150, 255, ADE, "images/validation", ".jpg", "annotations/validation", ".png", NULL,
     150, 1, 0, 0, "datasets/classnames/ade150.txt", "ADE20K val (SceneParsing), 150 classes", "val",
     {{"train", "images/training", "annotations/training", NULL}}},
    {"cityscapes", 19, 255, "", "leftImg8bit/val", "_leftImg8bit.png", "gtFine/val",
     "_gtFine_labelTrainIds.png", NULL, 18, 0, 0, 1, "datasets/classnames/cityscapes.txt",
     "Cityscapes val, 19 train ids", "val",
     {{"train", "leftImg8bit/train", "gtFine/train", NULL}}},
    {"synth", 6, 255, "", "images", ".png", "labels", ".png", "split.txt", 5, 0, 0, 0,
     "datasets/classnames/synth.txt",
     "synthetic shapes written by 'harness synth': background + 5 shapes (the root is one split's folder)",
     "val", {{"train", "images", "labels", "split.txt"}}},
};
#define NREG (sizeof registry / sizeof registry[0])

int hx_dataset_split(const struct hx_dataset *d, const char *split, struct hx_dataset *out)
{
    *out = *d;
    if (!split || !split[0] || !strcmp(split, d->split_name))
        return 0;
    char names[96];
    int k = snprintf(names, sizeof names, "%s", d->split_name);
    for (int i = 0; i < 2 && d->other[i].name; i++) {
        const struct hx_split *o = &d->other[i];
        if (!strcmp(split, o->name)) {
            out->split_name = o->name, out->image_dir = o->image_dir;
            out->label_dir = o->label_dir, out->split = o->split;
            return 0;
        }
        if ((size_t)k < sizeof names)
            k += snprintf(names + k, sizeof names - (size_t)k, ", %s", o->name);
    }
    return hx_err(HX_EINVAL, "dataset %s has no split '%s' (splits: %s)", d->name, split, names);
}

/* COCO-Stuff ids (0-based, 0..181) that no annotation uses: the 171 others are renumbered
 * contiguously; those below 91 are the 80 thing classes. */
static const int coco_unused[] = {11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90};

size_t hx_dataset_count(void) { return NREG; }

const struct hx_dataset *hx_dataset_at(size_t i) { return i < NREG ? &registry[i] : NULL; }

const struct hx_dataset *hx_dataset_find(const char *name)
{
    for (size_t i = 0; i < NREG; i++)
        if (!strcmp(registry[i].name, name))
            return &registry[i];
    return NULL;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* "a/b/c" joining non-empty parts; malloc'ed */
static char *join(const char *a, const char *b, const char *c, const char *d)
{
    const char *parts[4] = {a, b, c, d};
    size_t len = 1;
    for (int i = 0; i < 4; i++)
        len += (parts[i] ? strlen(parts[i]) : 0) + 1;
    char *s = hx_malloc(len, "path");
    if (!s)
        return NULL;
    s[0] = 0;
    for (int i = 0; i < 4; i++) {
        if (!parts[i] || !parts[i][0])
            continue;
        if (s[0])
            strcat(s, "/");
        strcat(s, parts[i]);
    }
    return s;
}

/* The root and base folder must exist; the message says what layout is expected. */
static int check_root(const struct hx_dataset *d, const char *root)
{
    if (!root || !root[0] || !is_dir(root))
        return hx_err(HX_ENOTFOUND, "dataset %s: root folder %s does not exist", d->name,
                      root && root[0] ? root : "(empty)");
    char *base = join(root, d->base, NULL, NULL);
    if (!base)
        return HX_ENOMEM;
    int rc = 0;
    if (!is_dir(base))
        rc = hx_err(HX_ENOTFOUND, "dataset %s: %s does not exist (expected %s%s%s under the root)",
                    d->name, base, d->base, d->base[0] ? "/" : "", d->label_dir);
    free(base);
    return rc;
}

/* ---- sample ids ---- */

struct strvec {
    char **v;
    size_t n, cap;
};

static int sv_push(struct strvec *s, const char *str, size_t len)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 256;
        char **nv = realloc(s->v, ncap * sizeof *nv);
        if (!nv)
            return hx_err(HX_ENOMEM, "out of memory listing sample ids");
        s->v = nv;
        s->cap = ncap;
    }
    char *c = hx_malloc(len + 1, "sample id");
    if (!c)
        return HX_ENOMEM;
    memcpy(c, str, len);
    c[len] = 0;
    s->v[s->n++] = c;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* stems of dir/<stem><suffix>, with prefix "sub/" when sub is given */
static int list_stems(struct strvec *s, const char *dir, const char *sub, const char *suffix)
{
    DIR *dp = opendir(dir);
    if (!dp)
        return hx_err(HX_ENOTFOUND, "cannot list %s: %s", dir, strerror(errno));
    int rc = 0;
    size_t sl = strlen(suffix);
    struct dirent *e;
    while ((e = readdir(dp))) {
        size_t l = strlen(e->d_name);
        if (l <= sl || strcmp(e->d_name + l - sl, suffix) || e->d_name[0] == '.')
            continue;
        char buf[1024];
        int k = snprintf(buf, sizeof buf, "%s%s%.*s", sub ? sub : "", sub ? "/" : "",
                         (int)(l - sl), e->d_name);
        if (k < 0 || (size_t)k >= sizeof buf) {
            rc = hx_err(HX_EINVAL, "file name too long in %s", dir);
            break;
        }
        if ((rc = sv_push(s, buf, (size_t)k)) != 0)
            break;
    }
    closedir(dp);
    return rc;
}

int hx_dataset_ids(const struct hx_dataset *d, const char *root, char ***ids, size_t *n)
{
    int rc;
    struct strvec s = {0};
    char *path = NULL;
    uint8_t *text = NULL;
    *ids = NULL;
    *n = 0;
    if ((rc = check_root(d, root)) != 0)
        return rc;
    if (d->split) {
        size_t len;
        path = join(root, d->base, d->split, NULL);
        if (!path)
            return HX_ENOMEM;
        if (!is_file(path)) {
            rc = hx_err(HX_ENOTFOUND, "dataset %s: split file %s does not exist", d->name, path);
            goto done;
        }
        if ((rc = hx_read_file(path, &text, &len)) != 0)
            goto done;
        size_t i = 0;
        while (i < len) {
            size_t j = i;
            while (j < len && text[j] != '\n')
                j++;
            size_t a = i, b = j;
            while (a < b && (text[a] == ' ' || text[a] == '\t' || text[a] == '\r'))
                a++;
            while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t' || text[b - 1] == '\r'))
                b--;
            if (b > a && (rc = sv_push(&s, (const char *)text + a, b - a)) != 0)
                goto done;
            i = j + 1;
        }
    } else {
        path = join(root, d->base, d->image_dir, NULL);
        if (!path)
            return HX_ENOMEM;
        if (!is_dir(path)) {
            rc = hx_err(HX_ENOTFOUND, "dataset %s: image folder %s does not exist", d->name,
                        path);
            goto done;
        }
        if (d->city_subdirs) {
            DIR *dp = opendir(path);
            if (!dp) {
                rc = hx_err(HX_ENOTFOUND, "cannot list %s: %s", path, strerror(errno));
                goto done;
            }
            struct dirent *e;
            while ((e = readdir(dp))) {
                if (e->d_name[0] == '.')
                    continue;
                char *sub = join(path, e->d_name, NULL, NULL);
                if (!sub) {
                    rc = HX_ENOMEM;
                    break;
                }
                if (is_dir(sub))
                    rc = list_stems(&s, sub, e->d_name, d->image_suffix);
                free(sub);
                if (rc)
                    break;
            }
            closedir(dp);
            if (rc)
                goto done;
        } else if ((rc = list_stems(&s, path, NULL, d->image_suffix)) != 0) {
            goto done;
        }
        qsort(s.v, s.n, sizeof *s.v, cmp_str);
    }
    *ids = s.v;
    *n = s.n;
    s.v = NULL;
    s.n = 0;
done:
    hx_dataset_ids_free(s.v, s.n);
    free(path);
    free(text);
    return rc;
}

void hx_dataset_ids_free(char **ids, size_t n)
{
    if (!ids)
        return;
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

/* ---- paths ---- */

int hx_dataset_paths(const struct hx_dataset *d, const char *root, const char *id,
                     char **image, char **label, enum hx_label_source *source)
{
    int rc;
    char *img = NULL, *lbl = NULL, *idbuf = NULL, *name = NULL;
    *image = *label = NULL;
    if ((rc = check_root(d, root)) != 0)
        return rc;
    if (!id || !id[0] || strstr(id, ".."))
        return hx_err(HX_EINVAL, "dataset %s: invalid sample id '%s'", d->name, id ? id : "");
    /* Cityscapes ids may omit the city folder: it is the file name's first field */
    if (d->city_subdirs && !strchr(id, '/')) {
        const char *us = strchr(id, '_');
        size_t cl = us ? (size_t)(us - id) : strlen(id);
        idbuf = hx_malloc(strlen(id) + cl + 2, "sample id");
        if (!idbuf)
            return HX_ENOMEM;
        sprintf(idbuf, "%.*s/%s", (int)cl, id, id);
        id = idbuf;
    }
    name = hx_malloc(strlen(id) + 64, "file name");
    if (!name) {
        rc = HX_ENOMEM;
        goto done;
    }
    sprintf(name, "%s%s", id, d->image_suffix);
    img = join(root, d->base, d->image_dir, name);
    sprintf(name, "%s%s", id, d->label_suffix);
    lbl = join(root, d->base, d->label_dir, name);
    if (!img || !lbl) {
        rc = HX_ENOMEM;
        goto done;
    }
    if (!is_file(img)) {
        rc = hx_err(HX_ENOTFOUND, "dataset %s: image %s does not exist", d->name, img);
        goto done;
    }
    enum hx_label_source src = d->reduce_zero_label ? HX_LABELS_REDUCE_ZERO : HX_LABELS_AS_STORED;
    if (d->coco) {
        src = HX_LABELS_COCO171;
        if (!is_file(lbl)) { /* fall back to the raw stuffthingmap */
            sprintf(name, "%s.png", id);
            char *raw = join(root, d->base, d->label_dir, name);
            if (!raw) {
                rc = HX_ENOMEM;
                goto done;
            }
            if (is_file(raw)) {
                free(lbl);
                lbl = raw;
                src = HX_LABELS_COCO182;
            } else {
                rc = hx_err(HX_ENOTFOUND,
                            "dataset %s: label map %s does not exist (nor the raw map %s)",
                            d->name, lbl, raw);
                free(raw);
                goto done;
            }
        }
    } else if (!is_file(lbl)) {
        rc = hx_err(HX_ENOTFOUND, "dataset %s: label map %s does not exist", d->name, lbl);
        goto done;
    }
    if (source)
        *source = src;
    *image = img;
    *label = lbl;
    img = lbl = NULL;
done:
    free(img);
    free(lbl);
    free(idbuf);
    free(name);
    return rc;
}

/* ---- label remaps ---- */

/* lut[v] = evaluation label of raw value v, or -1 when v is out of range */
static void build_lut(const struct hx_dataset *d, enum hx_label_source src, int lut[256],
                      int *raw_max)
{
    for (int v = 0; v < 256; v++)
        lut[v] = -1;
    lut[255] = 255;
    if (src == HX_LABELS_COCO182 || src == HX_LABELS_COCO171) {
        int to171[256];
        if (src == HX_LABELS_COCO182) {
            *raw_max = 181;
            int next = 0;
            for (int v = 0; v <= 181; v++) {
                int unused = 0;
                for (size_t k = 0; k < sizeof coco_unused / sizeof coco_unused[0]; k++)
                    unused |= coco_unused[k] == v;
                to171[v] = unused ? 255 : next++;
            }
        } else {
            *raw_max = 170;
            for (int v = 0; v <= 170; v++)
                to171[v] = v;
        }
        to171[255] = 255;
        for (int v = 0; v <= *raw_max; v++)
            lut[v] = to171[v];
        if (d->coco == 81) /* things 0..79 -> 1..80; stuff, unused and unlabeled -> 0 */
            for (int v = 0; v < 256; v++)
                if (v <= *raw_max || v == 255)
                    lut[v] = (v != 255 && to171[v] < 80) ? to171[v] + 1 : 0;
        return;
    }
    *raw_max = d->raw_max;
    for (int v = 0; v <= d->raw_max; v++)
        lut[v] = src == HX_LABELS_REDUCE_ZERO ? (v == 0 ? 255 : v - 1) : v;
}

int hx_dataset_remap(const struct hx_dataset *d, enum hx_label_source source, uint8_t *px,
                     int w, int h, const char *file)
{
    int lut[256], raw_max;
    build_lut(d, source, lut, &raw_max);
    size_t n = (size_t)w * (size_t)h;
    for (size_t i = 0; i < n; i++)
        if (lut[px[i]] < 0)
            return hx_err(HX_EFORMAT,
                          "%s: label value %d at pixel (x=%zu, y=%zu) is out of range for "
                          "dataset %s (expected 0..%d or 255)",
                          file, px[i], i % (size_t)w, i / (size_t)w, d->name, raw_max);
    for (size_t i = 0; i < n; i++)
        px[i] = (uint8_t)lut[px[i]];
    return 0;
}

int hx_dataset_label(const struct hx_dataset *d, const char *root, const char *id,
                     struct hx_labelmap *out)
{
    char *img = NULL, *lbl = NULL;
    enum hx_label_source src;
    memset(out, 0, sizeof *out);
    int rc = hx_dataset_paths(d, root, id, &img, &lbl, &src);
    if (rc)
        return rc;
    int iw, ih, ic;
    if (!stbi_info(img, &iw, &ih, &ic)) {
        rc = hx_err(HX_EFORMAT, "dataset %s: cannot read the image %s (%s)", d->name, img,
                    stbi_failure_reason());
        goto done;
    }
    if ((rc = hx_labelmap_read(out, lbl)) != 0)
        goto done;
    if (out->w != iw || out->h != ih) {
        rc = hx_err(HX_EFORMAT, "dataset %s: size mismatch: image %s is %dx%d, label map %s is %dx%d",
                    d->name, img, iw, ih, lbl, out->w, out->h);
        goto done;
    }
    rc = hx_dataset_remap(d, src, out->px, out->w, out->h, lbl);
done:
    if (rc)
        hx_labelmap_free(out);
    free(img);
    free(lbl);
    return rc;
}

/* ---- class names ---- */

void hx_classnames_free(struct hx_classnames *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++) {
        if (c->syn && c->syn[i]) {
            for (int k = 0; k < c->nsyn[i]; k++)
                free(c->syn[i][k]);
            free(c->syn[i]);
        }
    }
    free(c->syn);
    free(c->nsyn);
    memset(c, 0, sizeof *c);
}

int hx_classnames_read(const char *path, struct hx_classnames *out)
{
    uint8_t *text = NULL;
    size_t len;
    memset(out, 0, sizeof *out);
    int rc = hx_read_file(path, &text, &len);
    if (rc)
        return rc;
    if (memchr(text, 0, len)) {
        rc = hx_err(HX_EFORMAT, "%s: class-name list contains a NUL byte", path);
        goto done;
    }
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    if (len && text[len - 1] != '\n')
        lines++;
    if (lines == 0) {
        rc = hx_err(HX_EFORMAT, "%s: class-name list is empty", path);
        goto done;
    }
    out->nsyn = hx_calloc((size_t)lines, sizeof(int), "class names");
    out->syn = hx_calloc((size_t)lines, sizeof(char **), "class names");
    if (!out->nsyn || !out->syn) {
        rc = HX_ENOMEM;
        goto done;
    }
    size_t i = 0;
    for (int ln = 0; ln < lines; ln++) {
        size_t j = i;
        while (j < len && text[j] != '\n')
            j++;
        size_t end = j;
        if (end > i && text[end - 1] == '\r')
            end--;
        out->n = ln + 1;
        if (end == i) {
            rc = hx_err(HX_EFORMAT, "%s: line %d is empty (one class per line)", path, ln + 1);
            goto done;
        }
        /* count ", " separators */
        int ns = 1;
        for (size_t k = i; k + 1 < end; k++)
            if (text[k] == ',' && text[k + 1] == ' ')
                ns++, k++;
        out->syn[ln] = hx_calloc((size_t)ns, sizeof(char *), "class names");
        if (!out->syn[ln]) {
            rc = HX_ENOMEM;
            goto done;
        }
        size_t a = i;
        for (int s = 0; s < ns; s++) {
            size_t b = a;
            while (b < end && !(b + 1 < end && text[b] == ',' && text[b + 1] == ' '))
                b++;
            if (b == a) {
                rc = hx_err(HX_EFORMAT, "%s: line %d has an empty name", path, ln + 1);
                goto done;
            }
            char *name = hx_malloc(b - a + 1, "class name");
            if (!name) {
                rc = HX_ENOMEM;
                goto done;
            }
            memcpy(name, text + a, b - a);
            name[b - a] = 0;
            out->syn[ln][s] = name;
            out->nsyn[ln] = s + 1;
            a = b + 2;
        }
        i = j + 1;
    }
done:
    if (rc)
        hx_classnames_free(out);
    free(text);
    return rc;
}

int hx_dataset_classnames(const struct hx_dataset *d, const char *path,
                          struct hx_classnames *out)
{
    const char *p = path && path[0] ? path : d->classnames;
    int rc = hx_classnames_read(p, out);
    if (rc)
        return rc;
    if (out->n != d->num_classes) {
        rc = hx_err(HX_EFORMAT, "%s: %d classes listed, dataset %s has %d", p, out->n, d->name,
                    d->num_classes);
        hx_classnames_free(out);
    }
    return rc;
}
