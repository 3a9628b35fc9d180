#include "harness/atomicio.h"
#include "harness/error.h"
#include "harness/labelmap.h"
#include "tests/test_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static void count_values(const struct hx_labelmap *m, long counts[256])
{
    memset(counts, 0, 256 * sizeof counts[0]);
    for (size_t i = 0; i < (size_t)m->w * m->h; i++)
        counts[m->px[i]]++;
}

START_TEST(voc_palette_indices)
{
    const char *f = hx_fixture("voc/2007_000033.png");
    if (!f)
        HX_SKIP("fixture voc/2007_000033.png absent");
    struct hx_labelmap m;
    ck_assert_msg(hx_labelmap_read(&m, f) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(m.w, 500);
    ck_assert_int_eq(m.h, 366);
    ck_assert_int_eq(m.palette, 1);
    long c[256];
    count_values(&m, c);
    ck_assert_int_eq(c[0], 143868);
    ck_assert_int_eq(c[1], 30937);
    ck_assert_int_eq(c[255], 8195);
    ck_assert_int_eq(c[0] + c[1] + c[255], 500 * 366);
    hx_labelmap_free(&m);
}
END_TEST

START_TEST(voc_greyscale_values)
{
    const char *f = hx_fixture("voc/2007_000129.png");
    if (!f)
        HX_SKIP("fixture voc/2007_000129.png absent");
    struct hx_labelmap m;
    ck_assert_msg(hx_labelmap_read(&m, f) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(m.w, 334);
    ck_assert_int_eq(m.h, 500);
    ck_assert_int_eq(m.palette, 0);
    long c[256];
    count_values(&m, c);
    ck_assert_int_eq(c[0], 54389);
    ck_assert_int_eq(c[2], 34183);
    ck_assert_int_eq(c[15], 61143);
    ck_assert_int_eq(c[255], 17285);
    ck_assert_int_eq(c[0] + c[2] + c[15] + c[255], 334 * 500);
    hx_labelmap_free(&m);
}
END_TEST

/* a deterministic pseudo-random label map */
static uint8_t *make_map(int w, int h, unsigned seed)
{
    uint8_t *px = malloc((size_t)w * h);
    ck_assert_ptr_nonnull(px);
    uint32_t s = seed * 2654435761u + 1;
    for (int i = 0; i < w * h; i++) {
        s = s * 1664525u + 1013904223u;
        /* blocks of equal labels with a few random pixels, like a real map */
        px[i] = (s >> 28) == 0 ? (uint8_t)(s >> 8) : (uint8_t)(((i % w) / 7 + (i / w) / 5) * 13);
    }
    return px;
}

START_TEST(write_read_round_trip)
{
    const char *dir = hx_tmpdir();
    char path[600];
    int sizes[][2] = {{1, 1}, {3, 2}, {257, 31}, {640, 480}};
    for (int k = 0; k < 4; k++) {
        int w = sizes[k][0], h = sizes[k][1];
        uint8_t *px = make_map(w, h, (unsigned)k);
        snprintf(path, sizeof path, "%s/rt%d.png", dir, k);
        ck_assert_msg(hx_labelmap_write(path, px, w, h) == 0, "%s", hx_errmsg());
        struct hx_labelmap m;
        ck_assert_msg(hx_labelmap_read(&m, path) == 0, "%s", hx_errmsg());
        ck_assert_int_eq(m.w, w);
        ck_assert_int_eq(m.h, h);
        ck_assert_int_eq(m.palette, 0);
        ck_assert_msg(memcmp(m.px, px, (size_t)w * h) == 0, "round trip %dx%d differs", w, h);
        hx_labelmap_free(&m);
        free(px);
    }
    /* no temporary file is left behind */
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            ck_assert_msg(strstr(e->d_name, ".tmp") == NULL, "left over %s", e->d_name);
            n++;
        }
    closedir(d);
    ck_assert_int_eq(n, 4);
}
END_TEST

static int python_ok(void)
{
    return access("/usr/bin/python3", X_OK) == 0 &&
           system("/usr/bin/python3 -c 'import numpy, PIL' >/dev/null 2>&1") == 0;
}

static void add_dir(char *cmd, size_t cap, const char *rel, const char *suffix)
{
    const char *dir = hx_fixture(rel);
    if (!dir)
        return;
    char dcopy[1024];
    snprintf(dcopy, sizeof dcopy, "%s", dir);
    struct dirent **list;
    int n = scandir(dcopy, &list, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        size_t l = strlen(list[i]->d_name), sl = strlen(suffix);
        if (l > sl && !strcmp(list[i]->d_name + l - sl, suffix)) {
            size_t used = strlen(cmd);
            snprintf(cmd + used, cap - used, " '%s/%s'", dcopy, list[i]->d_name);
        }
        free(list[i]);
    }
    if (n >= 0)
        free(list);
}

/* Every real label map in the fixtures, one written by hx_labelmap_write, and generated PNGs
 * covering all filter types and palette depths must decode exactly as PIL decodes them. */
START_TEST(matches_pil_decode)
{
    if (!python_ok())
        HX_SKIP("/usr/bin/python3 with numpy and PIL not available");
    if (access("scripts/labelmap_cases.py", R_OK) != 0)
        HX_SKIP("scripts/labelmap_cases.py not found (run from the repository root)");
    char dir[512];
    snprintf(dir, sizeof dir, "%s", hx_tmpdir());
    char ours[600];
    snprintf(ours, sizeof ours, "%s/ours.png", dir);
    uint8_t *px = make_map(123, 45, 7);
    ck_assert_int_eq(hx_labelmap_write(ours, px, 123, 45), 0);

    size_t cap = 1 << 16;
    char *cmd = malloc(cap);
    snprintf(cmd, cap, "/usr/bin/python3 scripts/labelmap_cases.py '%s' '%s'", dir, ours);
    add_dir(cmd, cap, "voc", ".png");
    add_dir(cmd, cap, "ade20k/annotations", ".png");
    add_dir(cmd, cap, "cocostuff/stuffthingmaps", ".png");
    add_dir(cmd, cap, "cityscapes/pseudo_cityscapes_dataset/gtFine", "_labelIds.png");
    add_dir(cmd, cap, "cityscapes/pseudo_cityscapes_dataset/gtFine", "_labelTrainIds.png");
    ck_assert_msg(system(cmd) == 0, "reference script failed: %s", cmd);
    free(cmd);

    char man[600];
    snprintf(man, sizeof man, "%s/manifest.tsv", dir);
    FILE *f = fopen(man, "r");
    ck_assert_ptr_nonnull(f);
    char line[4096], png[2048], raw[2048];
    int w, h, ncases = 0, saw_ours = 0;
    while (fgets(line, sizeof line, f)) {
        ck_assert_int_eq(sscanf(line, "%2047[^\t]\t%2047[^\t]\t%d\t%d", png, raw, &w, &h), 4);
        struct hx_labelmap m;
        ck_assert_msg(hx_labelmap_read(&m, png) == 0, "%s", hx_errmsg());
        ck_assert_msg(m.w == w && m.h == h, "%s: %dx%d, PIL says %dx%d", png, m.w, m.h, w, h);
        uint8_t *ref;
        size_t n;
        ck_assert_int_eq(hx_read_file(raw, &ref, &n), 0);
        ck_assert_uint_eq(n, (size_t)w * h);
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < n; i++)
            if (m.px[i] != ref[i] && !bad++)
                first = i;
        ck_assert_msg(bad == 0, "%s: %zu pixels differ from PIL, first at %zu (%d vs %d)", png,
                      bad, first, bad ? m.px[first] : 0, bad ? ref[first] : 0);
        if (!strcmp(png, ours)) {
            saw_ours = 1;
            ck_assert_int_eq(memcmp(ref, px, n), 0);
        }
        free(ref);
        hx_labelmap_free(&m);
        ncases++;
    }
    fclose(f);
    free(px);
    ck_assert(saw_ours);
    ck_assert_int_ge(ncases, 19); /* ours + 18 generated, plus the fixtures present */
}
END_TEST

static void expect_error(const uint8_t *buf, size_t len, const char *name, const char *what)
{
    struct hx_labelmap m;
    hx_err_clear();
    int rc = hx_labelmap_decode(&m, buf, len, name);
    ck_assert_msg(rc == HX_EFORMAT, "%s: expected a format error, got %d", what, rc);
    ck_assert_ptr_null(m.px);
    ck_assert_msg(strstr(hx_errmsg(), name) != NULL, "%s: message '%s' does not name the file",
                  what, hx_errmsg());
}

static void fix_crc(uint8_t *png, size_t chunk_off)
{
    uint32_t len = (uint32_t)png[chunk_off] << 24 | png[chunk_off + 1] << 16 |
                   png[chunk_off + 2] << 8 | png[chunk_off + 3];
    uint32_t c = (uint32_t)crc32(0L, png + chunk_off + 4, 4 + len);
    uint8_t *p = png + chunk_off + 8 + len;
    p[0] = (uint8_t)(c >> 24);
    p[1] = (uint8_t)(c >> 16);
    p[2] = (uint8_t)(c >> 8);
    p[3] = (uint8_t)c;
}

START_TEST(rejects_corrupt_files)
{
    uint8_t *px = make_map(37, 23, 3), *png;
    size_t len;
    ck_assert_int_eq(hx_labelmap_encode(px, 37, 23, &png, &len), 0);
    struct hx_labelmap m;
    ck_assert_int_eq(hx_labelmap_decode(&m, png, len, "good.png"), 0);
    hx_labelmap_free(&m);

    /* every truncation is an error, never a crash or a silent partial map */
    for (size_t l = 0; l < len; l++)
        expect_error(png, l, "cut.png", "truncated");

    /* a flipped bit anywhere after the signature fails (CRC, header or data checks) */
    uint8_t *bad = malloc(len);
    for (size_t i = 8; i < len; i++) {
        memcpy(bad, png, len);
        bad[i] ^= 0x10;
        expect_error(bad, len, "flip.png", "bit flip");
    }
    /* the message for a damaged IDAT says CRC */
    memcpy(bad, png, len);
    bad[8 + 25 + 10] ^= 1;
    expect_error(bad, len, "crc.png", "bad CRC");
    ck_assert_msg(strstr(hx_errmsg(), "CRC"), "%s", hx_errmsg());

    /* not a PNG */
    expect_error((const uint8_t *)"GIF89a........", 14, "x.gif", "signature");

    /* colour types and depths a label map cannot have (IHDR at offset 8, data at 16) */
    struct {
        int depth, ctype, interlace;
        const char *word;
    } cases[] = {{8, 2, 0, "RGB"},      {8, 6, 0, "alpha"}, {8, 4, 0, "alpha"},
                 {16, 0, 0, "bit depth"}, {8, 0, 1, "interlaced"}, {3, 3, 0, "bit depth"}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        memcpy(bad, png, len);
        bad[16 + 8] = (uint8_t)cases[k].depth;
        bad[16 + 9] = (uint8_t)cases[k].ctype;
        bad[16 + 12] = (uint8_t)cases[k].interlace;
        fix_crc(bad, 8);
        expect_error(bad, len, "odd.png", cases[k].word);
        ck_assert_msg(strstr(hx_errmsg(), cases[k].word), "'%s' lacks '%s'", hx_errmsg(),
                      cases[k].word);
    }
    free(bad);
    free(png);
    free(px);
}
END_TEST

START_TEST(rejects_real_rgb_and_16bit)
{
    const char *f = hx_fixture("cityscapes/pseudo_cityscapes_dataset/leftImg8bit/"
                               "frankfurt_000000_000294_leftImg8bit.png");
    if (!f)
        HX_SKIP("cityscapes fixture absent");
    struct hx_labelmap m;
    ck_assert_int_eq(hx_labelmap_read(&m, f), HX_EFORMAT);
    ck_assert_msg(strstr(hx_errmsg(), "RGB") && strstr(hx_errmsg(), "leftImg8bit.png"), "%s",
                  hx_errmsg());
    f = hx_fixture("cityscapes/pseudo_cityscapes_dataset/gtFine/"
                   "frankfurt_000000_000294_gtFine_instanceIds.png");
    if (!f)
        HX_SKIP("cityscapes instanceIds fixture absent");
    ck_assert_int_eq(hx_labelmap_read(&m, f), HX_EFORMAT);
    ck_assert_msg(strstr(hx_errmsg(), "bit depth 16"), "%s", hx_errmsg());
    ck_assert_int_eq(hx_labelmap_read(&m, "/nonexistent/x.png"), HX_EIO);
    ck_assert_msg(strstr(hx_errmsg(), "/nonexistent/x.png"), "%s", hx_errmsg());
}
END_TEST

Suite *suite_labelmap(void)
{
    Suite *s = suite_create("labelmap");
    TCase *tc = tcase_create("png");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, voc_palette_indices);
    tcase_add_test(tc, voc_greyscale_values);
    tcase_add_test(tc, write_read_round_trip);
    tcase_add_test(tc, matches_pil_decode);
    tcase_add_test(tc, rejects_corrupt_files);
    tcase_add_test(tc, rejects_real_rgb_and_16bit);
    suite_add_tcase(s, tc);
    return s;
}
