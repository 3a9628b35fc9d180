#include "datasets/datasets.h"
#include "harness/atomicio.h"
#include "harness/error.h"
#include "harness/labelmap.h"
#include "tests/test_util.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- building dataset roots from the fixtures ---- */

static void mkdirs(const char *path) { ck_assert_msg(hx_mkdirs(path) == 0, "%s", hx_errmsg()); }

/* symlink fixture `rel` to root/dst (folders created); returns 0 when the fixture is absent */
static int link_fixture(const char *root, const char *dst, const char *rel)
{
    const char *f = hx_fixture(rel);
    if (!f)
        return 0;
    char abs[PATH_MAX], to[2048], dir[2048];
    ck_assert_ptr_nonnull(realpath(f, abs));
    snprintf(to, sizeof to, "%s/%s", root, dst);
    snprintf(dir, sizeof dir, "%s", to);
    *strrchr(dir, '/') = 0;
    mkdirs(dir);
    ck_assert_msg(symlink(abs, to) == 0, "symlink %s", to);
    return 1;
}

static void write_text(const char *root, const char *rel, const char *text)
{
    char p[2048], dir[2048];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    snprintf(dir, sizeof dir, "%s", p);
    *strrchr(dir, '/') = 0;
    mkdirs(dir);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void count_values(const struct hx_labelmap *m, long c[256])
{
    memset(c, 0, 256 * sizeof c[0]);
    for (size_t i = 0; i < (size_t)m->w * m->h; i++)
        c[m->px[i]]++;
}

static const char *voc_root(void)
{
    static char root[512];
    snprintf(root, sizeof root, "%s", hx_tmpdir());
    const char *ids[] = {"2007_000033", "2007_000129"};
    for (int i = 0; i < 2; i++) {
        char src[128], dst[256];
        snprintf(src, sizeof src, "voc/%s.jpg", ids[i]);
        snprintf(dst, sizeof dst, "VOCdevkit/VOC2012/JPEGImages/%s.jpg", ids[i]);
        if (!link_fixture(root, dst, src))
            return NULL;
        snprintf(src, sizeof src, "voc/%s.png", ids[i]);
        snprintf(dst, sizeof dst, "VOCdevkit/VOC2012/SegmentationClass/%s.png", ids[i]);
        if (!link_fixture(root, dst, src))
            return NULL;
    }
    write_text(root, "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt",
               "2007_000033\n2007_000129\r\n\n");
    return root;
}

START_TEST(voc_labels_and_ids)
{
    const char *root = voc_root();
    if (!root)
        HX_SKIP("VOC fixtures absent");
    const struct hx_dataset *d = hx_dataset_find("voc21");
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(d->num_classes, 21);
    char **ids;
    size_t n;
    ck_assert_msg(hx_dataset_ids(d, root, &ids, &n) == 0, "%s", hx_errmsg());
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(ids[0], "2007_000033");
    ck_assert_str_eq(ids[1], "2007_000129");
    hx_dataset_ids_free(ids, n);

    struct hx_labelmap m;
    long c[256];
    ck_assert_msg(hx_dataset_label(d, root, "2007_000033", &m) == 0, "%s", hx_errmsg());
    count_values(&m, c);
    ck_assert(c[0] == 143868 && c[1] == 30937 && c[255] == 8195);
    hx_labelmap_free(&m);
    ck_assert_msg(hx_dataset_label(d, root, "2007_000129", &m) == 0, "%s", hx_errmsg());
    count_values(&m, c);
    ck_assert(c[0] == 54389 && c[2] == 34183 && c[15] == 61143 && c[255] == 17285);
    hx_labelmap_free(&m);

    /* voc20: background joins the ignored border, classes shift down by one */
    d = hx_dataset_find("voc20");
    ck_assert_msg(hx_dataset_label(d, root, "2007_000129", &m) == 0, "%s", hx_errmsg());
    count_values(&m, c);
    ck_assert_int_eq(c[1], 34183);
    ck_assert_int_eq(c[14], 61143);
    ck_assert_int_eq(c[255], 54389 + 17285);
    ck_assert_int_eq(c[0] + c[2] + c[15], 0);
    hx_labelmap_free(&m);
}
END_TEST

/* Another split of the standard layout: its own id list or folders; unknown splits named. */
START_TEST(splits_choose_folders)
{
    const struct hx_dataset *voc = hx_dataset_find("voc21"), *ade = hx_dataset_find("ade150");
    struct hx_dataset d;
    ck_assert_int_eq(hx_dataset_split(voc, "", &d), 0);
    ck_assert_str_eq(d.split, voc->split);
    ck_assert_int_eq(hx_dataset_split(voc, "trainval", &d), 0);
    ck_assert_str_eq(d.split, "ImageSets/Segmentation/trainval.txt");
    ck_assert_str_eq(d.split_name, "trainval");
    ck_assert_int_eq(hx_dataset_split(ade, "train", &d), 0);
    ck_assert_str_eq(d.image_dir, "images/training");
    ck_assert_str_eq(d.label_dir, "annotations/training");
    ck_assert_int_eq(hx_dataset_split(ade, "trainval", &d), HX_EINVAL);
    ck_assert_str_eq(hx_errmsg(), "dataset ade150 has no split 'trainval' (splits: val, train)");

    /* the ids of VOC's train split come from train.txt */
    char dir[512], path[700];
    snprintf(dir, sizeof dir, "%s", hx_tmpdir());
    const char *sub[] = {"JPEGImages", "SegmentationClass", "ImageSets/Segmentation"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/VOCdevkit/VOC2012/%s", dir, sub[i]);
        mkdirs(path);
    }
    snprintf(path, sizeof path, "%s/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "2008_000001\n2008_000002\n");
    fclose(f);
    char **ids;
    size_t n;
    ck_assert_int_eq(hx_dataset_split(voc, "train", &d), 0);
    ck_assert_msg(hx_dataset_ids(&d, dir, &ids, &n) == 0, "%s", hx_errmsg());
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(ids[1], "2008_000002");
    hx_dataset_ids_free(ids, n);
    ck_assert_int_ne(hx_dataset_ids(voc, dir, &ids, &n), 0); /* no val.txt there */
}
END_TEST

START_TEST(voc_errors_name_files)
{
    const char *r = voc_root();
    if (!r)
        HX_SKIP("VOC fixtures absent");
    char root[512], p[1024], q[1024];
    snprintf(root, sizeof root, "%s", r);
    const struct hx_dataset *d = hx_dataset_find("voc21");
    struct hx_labelmap m;

    ck_assert_int_eq(hx_dataset_label(d, "/nonexistent/root", "2007_000033", &m), HX_ENOTFOUND);
    ck_assert_msg(strstr(hx_errmsg(), "/nonexistent/root"), "%s", hx_errmsg());
    ck_assert_int_eq(hx_dataset_label(d, root, "2008_999999", &m), HX_ENOTFOUND);
    ck_assert_msg(strstr(hx_errmsg(), "JPEGImages/2008_999999.jpg"), "%s", hx_errmsg());
    ck_assert_ptr_null(m.px);

    /* a label map of another image: size mismatch naming both files */
    snprintf(p, sizeof p, "%s/VOCdevkit/VOC2012/SegmentationClass/2007_000033.png", root);
    snprintf(q, sizeof q, "%s/VOCdevkit/VOC2012/SegmentationClass/2007_000129.png", root);
    char target[PATH_MAX];
    ssize_t tl = readlink(q, target, sizeof target - 1);
    ck_assert(tl > 0);
    target[tl] = 0;
    ck_assert_int_eq(unlink(p), 0);
    ck_assert_int_eq(symlink(target, p), 0);
    ck_assert_int_eq(hx_dataset_label(d, root, "2007_000033", &m), HX_EFORMAT);
    ck_assert_msg(strstr(hx_errmsg(), "size mismatch") && strstr(hx_errmsg(), p) &&
                      strstr(hx_errmsg(), "2007_000033.jpg"),
                  "%s", hx_errmsg());

    /* a missing label map */
    ck_assert_int_eq(unlink(p), 0);
    ck_assert_int_eq(hx_dataset_label(d, root, "2007_000033", &m), HX_ENOTFOUND);
    ck_assert_msg(strstr(hx_errmsg(), p), "%s", hx_errmsg());

    /* values out of range: an ADE annotation (values up to 150) where VOC expects 0..20 */
    char img[1024];
    snprintf(img, sizeof img, "%s/VOCdevkit/VOC2012/JPEGImages/ADE_val_00000123.jpg", root);
    if (link_fixture(root, "VOCdevkit/VOC2012/JPEGImages/ADE_val_00000123.jpg",
                     "ade20k/images/ADE_val_00000123.jpg") &&
        link_fixture(root, "VOCdevkit/VOC2012/SegmentationClass/ADE_val_00000123.png",
                     "ade20k/annotations/ADE_val_00000123.png")) {
        ck_assert_int_eq(hx_dataset_label(d, root, "ADE_val_00000123", &m), HX_EFORMAT);
        ck_assert_msg(strstr(hx_errmsg(), "SegmentationClass/ADE_val_00000123.png") &&
                          strstr(hx_errmsg(), "out of range"),
                      "%s", hx_errmsg());
    }
    /* missing split file */
    snprintf(p, sizeof p, "%s/VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt", root);
    ck_assert_int_eq(unlink(p), 0);
    char **ids;
    size_t n;
    ck_assert_int_eq(hx_dataset_ids(d, root, &ids, &n), HX_ENOTFOUND);
    ck_assert_msg(strstr(hx_errmsg(), "val.txt"), "%s", hx_errmsg());
}
END_TEST

/* ---- COCO-Stuff: an independent remap ---- */

static const int unused_ids[11] = {11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90};

/* raw 182-space value -> 171 id (255 for unused and unlabeled) */
static int ref171(int v)
{
    if (v == 255)
        return 255;
    int below = 0;
    for (int k = 0; k < 11; k++) {
        if (unused_ids[k] == v)
            return 255;
        below += unused_ids[k] < v;
    }
    return v - below;
}

/* raw value -> coco_object: things (raw < 91, used) 1..80, else 0 */
static int ref81(int v)
{
    if (v == 255 || v > 90)
        return 0;
    int t = ref171(v);
    return t == 255 ? 0 : t + 1;
}

static int coco_root(char *root, size_t cap, char ids[][32], int *nids)
{
    snprintf(root, cap, "%s", hx_tmpdir());
    const char *dir = hx_fixture("cocostuff/stuffthingmaps");
    if (!dir)
        return 0;
    char dcopy[1024];
    snprintf(dcopy, sizeof dcopy, "%s", dir);
    struct dirent **list;
    int n = scandir(dcopy, &list, NULL, alphasort);
    *nids = 0;
    for (int i = 0; i < n; i++) {
        const char *nm = list[i]->d_name;
        size_t l = strlen(nm);
        if (l > 4 && !strcmp(nm + l - 4, ".png") && *nids < 16) {
            char src[256], dst[256];
            snprintf(ids[*nids], 32, "%.*s", (int)(l - 4), nm);
            snprintf(src, sizeof src, "cocostuff/images/%s.jpg", ids[*nids]);
            snprintf(dst, sizeof dst, "coco_stuff164k/images/val2017/%s.jpg", ids[*nids]);
            if (link_fixture(root, dst, src)) {
                snprintf(src, sizeof src, "cocostuff/stuffthingmaps/%s", nm);
                snprintf(dst, sizeof dst, "coco_stuff164k/annotations/val2017/%s", nm);
                link_fixture(root, dst, src);
                (*nids)++;
            }
        }
        free(list[i]);
    }
    if (n >= 0)
        free(list);
    return *nids > 0;
}

START_TEST(coco_remaps_match_reference)
{
    char root[512], ids[16][32];
    int nids;
    if (!coco_root(root, sizeof root, ids, &nids))
        HX_SKIP("COCO-Stuff fixtures absent");
    const struct hx_dataset *d171 = hx_dataset_find("coco_stuff171"),
                            *d81 = hx_dataset_find("coco_object");
    ck_assert(d171 && d81 && d171->num_classes == 171 && d81->num_classes == 81);
    char **list;
    size_t n;
    ck_assert_int_eq(hx_dataset_ids(d171, root, &list, &n), 0);
    ck_assert_uint_eq(n, (size_t)nids);
    for (int i = 0; i < nids; i++)
        ck_assert_str_eq(list[i], ids[i]);
    hx_dataset_ids_free(list, n);

    int things_seen = 0, stuff_seen = 0;
    for (int i = 0; i < nids; i++) {
        char raw_path[1024];
        snprintf(raw_path, sizeof raw_path, "%s/coco_stuff164k/annotations/val2017/%s.png", root,
                 ids[i]);
        struct hx_labelmap raw, a, b;
        ck_assert_int_eq(hx_labelmap_read(&raw, raw_path), 0);
        ck_assert_msg(hx_dataset_label(d171, root, ids[i], &a) == 0, "%s", hx_errmsg());
        ck_assert_msg(hx_dataset_label(d81, root, ids[i], &b) == 0, "%s", hx_errmsg());
        size_t np = (size_t)raw.w * raw.h;
        for (size_t j = 0; j < np; j++) {
            int v = raw.px[j];
            ck_assert_msg(a.px[j] == ref171(v), "%s pixel %zu: raw %d -> %d, expected %d", ids[i],
                          j, v, a.px[j], ref171(v));
            ck_assert_msg(b.px[j] == ref81(v), "%s pixel %zu: raw %d -> %d, expected %d", ids[i],
                          j, v, b.px[j], ref81(v));
            things_seen += b.px[j] > 0;
            stuff_seen += v > 90 && v != 255;
        }
        /* the converted labelTrainIds file, when present, is used as stored (171) and gives
         * the same coco_object map */
        char conv[1024];
        snprintf(conv, sizeof conv, "%s/coco_stuff164k/annotations/val2017/%s_labelTrainIds.png",
                 root, ids[i]);
        ck_assert_int_eq(hx_labelmap_write(conv, a.px, a.w, a.h), 0);
        struct hx_labelmap a2, b2;
        ck_assert_int_eq(hx_dataset_label(d171, root, ids[i], &a2), 0);
        ck_assert_int_eq(hx_dataset_label(d81, root, ids[i], &b2), 0);
        ck_assert_int_eq(memcmp(a2.px, a.px, np), 0);
        ck_assert_int_eq(memcmp(b2.px, b.px, np), 0);
        hx_labelmap_free(&a2);
        hx_labelmap_free(&b2);
        hx_labelmap_free(&raw);
        hx_labelmap_free(&a);
        hx_labelmap_free(&b);
    }
    ck_assert(things_seen > 0 && stuff_seen > 0);

    /* a dropped id is unlabeled in 171 and background in 81; 182+ is out of range */
    uint8_t px[6] = {11, 0, 91, 181, 255, 90};
    ck_assert_int_eq(hx_dataset_remap(d171, HX_LABELS_COCO182, px, 6, 1, "t.png"), 0);
    ck_assert(px[0] == 255 && px[1] == 0 && px[2] == 80 && px[3] == 170 && px[4] == 255 &&
              px[5] == 255);
    uint8_t px2[4] = {0, 89, 91, 255};
    ck_assert_int_eq(hx_dataset_remap(d81, HX_LABELS_COCO182, px2, 4, 1, "t.png"), 0);
    ck_assert(px2[0] == 1 && px2[1] == 80 && px2[2] == 0 && px2[3] == 0);
    uint8_t bad[2] = {3, 182};
    ck_assert_int_eq(hx_dataset_remap(d171, HX_LABELS_COCO182, bad, 2, 1, "bad.png"), HX_EFORMAT);
    ck_assert_msg(strstr(hx_errmsg(), "bad.png") && strstr(hx_errmsg(), "182"), "%s",
                  hx_errmsg());
}
END_TEST

START_TEST(ade_reduce_zero_label)
{
    char root[512];
    snprintf(root, sizeof root, "%s", hx_tmpdir());
    const char *dir = hx_fixture("ade20k/annotations");
    if (!dir)
        HX_SKIP("ADE20K fixtures absent");
    char dcopy[1024];
    snprintf(dcopy, sizeof dcopy, "%s", dir);
    struct dirent **list;
    int n = scandir(dcopy, &list, NULL, alphasort), nids = 0;
    char ids[64][32];
    for (int i = 0; i < n; i++) {
        const char *nm = list[i]->d_name;
        size_t l = strlen(nm);
        if (l > 4 && !strcmp(nm + l - 4, ".png") && nids < 64) {
            char src[256], dst[256];
            snprintf(ids[nids], 32, "%.*s", (int)(l - 4), nm);
            snprintf(src, sizeof src, "ade20k/images/%s.jpg", ids[nids]);
            snprintf(dst, sizeof dst, "ADEChallengeData2016/images/validation/%s.jpg", ids[nids]);
            link_fixture(root, dst, src);
            snprintf(src, sizeof src, "ade20k/annotations/%s", nm);
            snprintf(dst, sizeof dst, "ADEChallengeData2016/annotations/validation/%s", nm);
            link_fixture(root, dst, src);
            nids++;
        }
        free(list[i]);
    }
    if (n >= 0)
        free(list);
    const struct hx_dataset *d = hx_dataset_find("ade150");
    ck_assert_int_eq(d->num_classes, 150);
    char **got;
    size_t ng;
    ck_assert_int_eq(hx_dataset_ids(d, root, &got, &ng), 0);
    ck_assert_uint_eq(ng, (size_t)nids);
    ck_assert_int_ge(nids, 1);
    long zeros = 0, top = 0;
    for (int i = 0; i < nids; i++) {
        ck_assert_str_eq(got[i], ids[i]);
        char p[1024];
        snprintf(p, sizeof p, "%s/ADEChallengeData2016/annotations/validation/%s.png", root,
                 ids[i]);
        struct hx_labelmap raw, m;
        ck_assert_int_eq(hx_labelmap_read(&raw, p), 0);
        ck_assert_msg(hx_dataset_label(d, root, ids[i], &m) == 0, "%s", hx_errmsg());
        for (size_t j = 0; j < (size_t)raw.w * raw.h; j++) {
            int v = raw.px[j], want = v == 0 ? 255 : v - 1;
            ck_assert_int_eq(m.px[j], want);
            zeros += v == 0;
            top += m.px[j] < 150 && m.px[j] > 0;
        }
        hx_labelmap_free(&raw);
        hx_labelmap_free(&m);
    }
    hx_dataset_ids_free(got, ng);
    ck_assert(zeros > 0 && top > 0);
}
END_TEST

#define CITY "cityscapes/pseudo_cityscapes_dataset/"
#define FRAME "frankfurt_000000_000294"

START_TEST(cityscapes_train_ids)
{
    char root[512];
    snprintf(root, sizeof root, "%s", hx_tmpdir());
    if (!link_fixture(root, "leftImg8bit/val/frankfurt/" FRAME "_leftImg8bit.png",
                      CITY "leftImg8bit/" FRAME "_leftImg8bit.png") ||
        !link_fixture(root, "gtFine/val/frankfurt/" FRAME "_gtFine_labelTrainIds.png",
                      CITY "gtFine/" FRAME "_gtFine_labelTrainIds.png"))
        HX_SKIP("Cityscapes fixtures absent");
    const struct hx_dataset *d = hx_dataset_find("cityscapes");
    ck_assert_int_eq(d->num_classes, 19);
    char **ids;
    size_t n;
    ck_assert_int_eq(hx_dataset_ids(d, root, &ids, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(ids[0], "frankfurt/" FRAME);
    struct hx_labelmap raw, m, m2;
    ck_assert_int_eq(hx_labelmap_read(&raw, hx_fixture(CITY "gtFine/" FRAME "_gtFine_labelTrainIds.png")), 0);
    ck_assert_msg(hx_dataset_label(d, root, ids[0], &m) == 0, "%s", hx_errmsg());
    ck_assert_msg(hx_dataset_label(d, root, FRAME, &m2) == 0, "%s", hx_errmsg());
    ck_assert(m.w == 256 && m.h == 128);
    ck_assert_int_eq(memcmp(m.px, raw.px, 256 * 128), 0);
    ck_assert_int_eq(memcmp(m2.px, raw.px, 256 * 128), 0);
    long c[256];
    count_values(&m, c);
    ck_assert(c[0] > 0 && c[255] > 0);
    for (int v = 19; v < 255; v++)
        ck_assert_int_eq(c[v], 0);
    hx_dataset_ids_free(ids, n);
    hx_labelmap_free(&raw);
    hx_labelmap_free(&m);
    hx_labelmap_free(&m2);

    /* labelIds (values up to 33) stored where train ids are expected: out of range */
    char p[1024];
    snprintf(p, sizeof p, "%s/gtFine/val/frankfurt/" FRAME "_gtFine_labelTrainIds.png", root);
    unlink(p);
    link_fixture(root, "gtFine/val/frankfurt/" FRAME "_gtFine_labelTrainIds.png",
                 CITY "gtFine/" FRAME "_gtFine_labelIds.png");
    ck_assert_int_eq(hx_dataset_label(d, root, FRAME, &m), HX_EFORMAT);
    ck_assert_msg(strstr(hx_errmsg(), p) && strstr(hx_errmsg(), "0..18"), "%s", hx_errmsg());
}
END_TEST

/* ---- the commands ---- */

START_TEST(labels_and_datasets_commands)
{
    const char *r = voc_root();
    if (!r)
        HX_SKIP("VOC fixtures absent");
    char root[512], args[4096], out[700], log[700];
    snprintf(root, sizeof root, "%s", r);
    snprintf(out, sizeof out, "%s/l.png", root);
    snprintf(log, sizeof log, "%s/log.txt", root);
    snprintf(args, sizeof args, "labels --dataset voc20 --root '%s' --id 2007_000033 --out '%s'",
             root, out);
    ck_assert_int_eq(hx_run_harness(args, log, log), 0);
    struct hx_labelmap m;
    ck_assert_int_eq(hx_labelmap_read(&m, out), 0);
    ck_assert_int_eq(m.palette, 0);
    long c[256];
    count_values(&m, c);
    ck_assert(c[0] == 30937 && c[255] == 143868 + 8195);
    hx_labelmap_free(&m);

    snprintf(args, sizeof args, "labels --dataset voc99 --root '%s' --id x --out '%s'", root, out);
    ck_assert_int_eq(hx_run_harness(args, log, log), 2);
    snprintf(args, sizeof args, "labels --dataset voc21 --root '%s' --id nope --out '%s'", root,
             out);
    ck_assert_int_eq(hx_run_harness(args, log, log), 2);
    snprintf(args, sizeof args, "labels --dataset voc21 --root '%s' --out '%s'", root, out);
    ck_assert_int_eq(hx_run_harness(args, log, log), 2);

    ck_assert_int_eq(hx_run_harness("datasets", log, log), 0);
    FILE *f = fopen(log, "r");
    char line[512], name[64];
    int classes, found = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%63s %d", name, &classes) == 2) {
            const struct hx_dataset *d = hx_dataset_find(name);
            ck_assert_msg(d != NULL, "unknown name listed: %s", name);
            ck_assert_int_eq(d->num_classes, classes);
            found++;
        }
    fclose(f);
    ck_assert_int_eq(found, (int)hx_dataset_count());
}
END_TEST

/* ---- class names ---- */

START_TEST(classname_lists)
{
    const struct {
        const char *name;
        int classes;
    } want[] = {{"voc21", 21},        {"voc20", 20},       {"context60", 60},
                {"context59", 59},    {"coco_stuff171", 171}, {"coco_object", 81},
                {"ade150", 150},      {"cityscapes", 19}, {"synth", 6}};
    ck_assert_uint_eq(hx_dataset_count(), 9);
    for (size_t i = 0; i < 9; i++) {
        const struct hx_dataset *d = hx_dataset_find(want[i].name);
        ck_assert_msg(d != NULL, "%s not registered", want[i].name);
        ck_assert_int_eq(d->num_classes, want[i].classes);
        struct hx_classnames cn;
        ck_assert_msg(hx_dataset_classnames(d, NULL, &cn) == 0, "%s", hx_errmsg());
        ck_assert_int_eq(cn.n, want[i].classes);
        for (int k = 0; k < cn.n; k++)
            for (int s = 0; s < cn.nsyn[k]; s++) {
                const char *x = cn.syn[k][s];
                ck_assert_msg(x[0] && x[0] != ' ' && x[strlen(x) - 1] != ' ',
                              "%s line %d: '%s'", want[i].name, k + 1, x);
            }
        if (!strcmp(want[i].name, "voc21") || !strcmp(want[i].name, "coco_object"))
            ck_assert_int_gt(cn.nsyn[0], 5); /* a background word list */
        if (!strcmp(want[i].name, "context60"))
            ck_assert_str_eq(cn.syn[0][0], "background");
        hx_classnames_free(&cn);
    }
    const char *plain[] = {"datasets/classnames/voc21_plain.txt",
                           "datasets/classnames/coco_object_plain.txt"};
    for (int i = 0; i < 2; i++) {
        struct hx_classnames cn;
        ck_assert_msg(hx_classnames_read(plain[i], &cn) == 0, "%s", hx_errmsg());
        ck_assert_int_eq(cn.nsyn[0], 1);
        ck_assert_str_eq(cn.syn[0][0], "background");
        ck_assert_int_eq(cn.n, i ? 81 : 21);
        hx_classnames_free(&cn);
    }
    /* the coco_stuff171 list follows the raw 182-name order without the unused ids */
    struct hx_classnames cn;
    ck_assert_int_eq(hx_dataset_classnames(hx_dataset_find("coco_stuff171"), NULL, &cn), 0);
    ck_assert_str_eq(cn.syn[0][0], "person");
    ck_assert_str_eq(cn.syn[11][0], "stop sign");    /* raw 12 after dropping street sign */
    ck_assert_str_eq(cn.syn[79][0], "toothbrush");   /* last thing */
    ck_assert_str_eq(cn.syn[80][0], "banner");       /* first stuff */
    ck_assert_str_eq(cn.syn[170][0], "wood");
    hx_classnames_free(&cn);
}
END_TEST

START_TEST(classname_parsing)
{
    char root[512], p[700];
    snprintf(root, sizeof root, "%s", hx_tmpdir());
    snprintf(p, sizeof p, "%s/a.txt", root);
    FILE *f = fopen(p, "w");
    fputs("sky, wall,tree,  \r\nperson in shirt, person \ncar", f); /* no final newline */
    fclose(f);
    struct hx_classnames cn;
    ck_assert_msg(hx_classnames_read(p, &cn) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(cn.n, 3);
    ck_assert_int_eq(cn.nsyn[0], 3);
    ck_assert_str_eq(cn.syn[0][0], "sky");
    ck_assert_str_eq(cn.syn[0][1], "wall,tree");
    ck_assert_str_eq(cn.syn[0][2], " ");
    ck_assert_int_eq(cn.nsyn[1], 2);
    ck_assert_str_eq(cn.syn[1][1], "person "); /* kept verbatim */
    ck_assert_str_eq(cn.syn[2][0], "car");
    hx_classnames_free(&cn);

    f = fopen(p, "w");
    fputs("a\n\nb\n", f);
    fclose(f);
    ck_assert_int_eq(hx_classnames_read(p, &cn), HX_EFORMAT);
    ck_assert_msg(strstr(hx_errmsg(), "line 2") && strstr(hx_errmsg(), p), "%s", hx_errmsg());

    /* a config may point at another list; its length must match the dataset */
    f = fopen(p, "w");
    fputs("a\nb\n", f);
    fclose(f);
    ck_assert_int_eq(hx_dataset_classnames(hx_dataset_find("voc21"), p, &cn), HX_EFORMAT);
    ck_assert_msg(strstr(hx_errmsg(), "2 classes"), "%s", hx_errmsg());

    /* the published lists of the dense-CLIP works parse to the dataset sizes */
    const struct {
        const char *file, *dataset;
    } pub[] = {{"classnames/sclip_naclip/cls_voc21.txt", "voc21"},
               {"classnames/sclip_naclip/cls_voc20.txt", "voc20"},
               {"classnames/sclip_naclip/cls_context60.txt", "context60"},
               {"classnames/sclip_naclip/cls_context59.txt", "context59"},
               {"classnames/sclip_naclip/cls_coco_stuff.txt", "coco_stuff171"},
               {"classnames/sclip_naclip/cls_coco_object.txt", "coco_object"},
               {"classnames/sclip_naclip/cls_ade20k.txt", "ade150"},
               {"classnames/sclip_naclip/cls_city_scapes.txt", "cityscapes"},
               {"classnames/clearclip/cls_voc21.txt", "voc21"}};
    for (size_t i = 0; i < sizeof pub / sizeof pub[0]; i++) {
        const char *fx = hx_fixture(pub[i].file);
        if (!fx)
            continue;
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", fx);
        ck_assert_msg(hx_dataset_classnames(hx_dataset_find(pub[i].dataset), copy, &cn) == 0,
                      "%s", hx_errmsg());
        if (!strcmp(pub[i].dataset, "voc21") && strstr(pub[i].file, "sclip")) {
            ck_assert_int_eq(cn.nsyn[0], 26);
            ck_assert_str_eq(cn.syn[0][0], "sky");
        }
        hx_classnames_free(&cn);
    }
}
END_TEST

Suite *suite_datasets(void)
{
    Suite *s = suite_create("datasets");
    TCase *tc = tcase_create("registry");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, voc_labels_and_ids);
    tcase_add_test(tc, voc_errors_name_files);
    tcase_add_test(tc, splits_choose_folders);
    tcase_add_test(tc, coco_remaps_match_reference);
    tcase_add_test(tc, ade_reduce_zero_label);
    tcase_add_test(tc, cityscapes_train_ids);
    tcase_add_test(tc, labels_and_datasets_commands);
    tcase_add_test(tc, classname_lists);
    tcase_add_test(tc, classname_parsing);
    suite_add_tcase(s, tc);
    return s;
}
