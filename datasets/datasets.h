/* The dataset registry: mmsegmentation folder layouts, label remaps and class-name lists.
 *
 * Every dataset gives, for a root folder and a sample id, the image path and the evaluation
 * label map: values 0..num_classes-1 and 255 for pixels to ignore (coco_object has no
 * ignored pixels). Raw label values are checked against the range the dataset stores, and
 * remapped on the fly:
 *   voc21        VOCdevkit/VOC2012: palette indices 0..20, 255 border, as stored
 *   voc20        the same with reduce_zero_label (0 -> 255, k -> k-1)
 *   context60    VOCdevkit/VOC2010 SegmentationClassContext 0..59, as stored
 *   context59    the same with reduce_zero_label
 *   coco_stuff171 coco_stuff164k: *_labelTrainIds.png (0..170) as stored, else the raw
 *                stuffthingmap <id>.png (0..181, 255) with the 11 unused ids dropped and the
 *                rest renumbered 0..170 (unused ids -> 255)
 *   coco_object  thing ids (raw 0..90 that exist) -> 1..80, stuff and unlabeled -> 0
 *   ade150       ADEChallengeData2016 0..150 with reduce_zero_label
 *   cityscapes   gtFine *_gtFine_labelTrainIds.png 0..18, 255, as stored
 *
 * Ownership: registry entries are static; hx_dataset_ids allocates (free with
 * hx_dataset_ids_free); hx_dataset_label fills a struct hx_labelmap (free with
 * hx_labelmap_free); hx_classnames_read fills a struct (free with hx_classnames_free). */
#ifndef HX_DATASETS_H
#define HX_DATASETS_H

#include "harness/labelmap.h"

#include <stddef.h>
#include <stdint.h>

enum hx_label_source {
    HX_LABELS_AS_STORED,  /* values used as they are (after range checks) */
    HX_LABELS_REDUCE_ZERO,/* 0 -> 255, k -> k-1, 255 stays */
    HX_LABELS_COCO182,    /* raw stuffthingmaps: 0..181 + 255 */
    HX_LABELS_COCO171,    /* converted labelTrainIds: 0..170 + 255 */
};

/* Where another split of a dataset lives (relative like the fields of hx_dataset). */
struct hx_split {
    const char *name, *image_dir, *label_dir, *split;
};

struct hx_dataset {
    const char *name;
    int num_classes;
    int ignore_index;          /* 255, or -1 when no pixel is ignored */
    const char *base;          /* folder under the root, e.g. "VOCdevkit/VOC2012" */
    const char *image_dir;     /* under base */
    const char *image_suffix;  /* appended to the id */
    const char *label_dir;     /* under base */
    const char *label_suffix;  /* appended to the id */
    const char *split;         /* id list under base, or NULL: ids from image_dir */
    int raw_max;               /* largest raw label value other than 255 */
    int reduce_zero_label;
    int coco;                  /* 0, 171 or 81: the COCO-Stuff remaps */
    int city_subdirs;          /* ids are "city/name" (Cityscapes) */
    const char *classnames;    /* default class-name list, relative to the repository */
    const char *summary;
    const char *split_name;    /* the split the folders above hold: "val" */
    struct hx_split other[2];  /* the other splits in the standard layout (name NULL: none) */
};

size_t hx_dataset_count(void);
const struct hx_dataset *hx_dataset_at(size_t i);
/* NULL when no dataset has that name. */
const struct hx_dataset *hx_dataset_find(const char *name);

/* d with its folders for the named split ("" or NULL: d's own, usually "val"); HX_EINVAL
 * naming the dataset and its splits when it has no such split. */
int hx_dataset_split(const struct hx_dataset *d, const char *split, struct hx_dataset *out);

/* The sample ids: the split file's lines, or the sorted stems of image_dir (for
 * Cityscapes "city/stem" from one level of city folders). */
int hx_dataset_ids(const struct hx_dataset *d, const char *root, char ***ids, size_t *n);
void hx_dataset_ids_free(char **ids, size_t n);

/* Paths of a sample's image and label map (malloc'ed; caller frees). For COCO the converted
 * *_labelTrainIds.png is preferred and the raw map used otherwise; *source says which label
 * values to expect. Errors name the missing root, base folder, image or label file
 * (HX_ENOTFOUND). source may be NULL. */
int hx_dataset_paths(const struct hx_dataset *d, const char *root, const char *id,
                     char **image, char **label, enum hx_label_source *source);

/* Remap raw label values in place for dataset d read from `source`; `file` names the map in
 * messages. A value outside the stored range is HX_EFORMAT naming the file, the value and
 * the pixel. */
int hx_dataset_remap(const struct hx_dataset *d, enum hx_label_source source, uint8_t *px,
                     int w, int h, const char *file);

/* The evaluation label map of one sample: paths resolved, image dimensions checked against
 * the label map (HX_EFORMAT naming both on mismatch), values checked and remapped. */
int hx_dataset_label(const struct hx_dataset *d, const char *root, const char *id,
                     struct hx_labelmap *out);

/* Class names: one class per line, synonyms separated by ", " (split exactly on ", ", the
 * names kept verbatim, trailing spaces included, because they reach the text encoder). A
 * final newline is optional; a "\r" before a newline is dropped; an empty line is an
 * error. */
struct hx_classnames {
    int n;        /* classes */
    int *nsyn;    /* [n] names per class (>= 1) */
    char ***syn;  /* [n][nsyn[i]] the names; syn[i][0] is the class's first name */
};
int hx_classnames_read(const char *path, struct hx_classnames *out);
/* The list of dataset d: `path` when not NULL, else d->classnames. The number of lines must
 * equal d->num_classes (HX_EFORMAT naming the file otherwise). */
int hx_dataset_classnames(const struct hx_dataset *d, const char *path,
                          struct hx_classnames *out);
void hx_classnames_free(struct hx_classnames *c);

#endif
