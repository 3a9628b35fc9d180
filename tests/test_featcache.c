/* The HDF5 feature cache: round trips, corruption detection, the text cache's hit path and
 * concurrent writers. */
#include "harness/error.h"
#include "harness/featcache.h"
#include "tests/test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void make_feats(struct hx_dense_feats *f, int seed)
{
    ck_assert_int_eq(hx_dense_feats_alloc(f, 3, 6, 5), 0);
    f->img_h = 37, f->img_w = 53, f->view_h = 40, f->view_w = 57;
    for (int w = 0; w < 3; w++) {
        f->win[w] = (struct hx_window){0, 24, w * 16, w * 16 + 24};
        f->grid[2 * w] = 2, f->grid[2 * w + 1] = w == 2 ? 2 : 3;
    }
    unsigned s = (unsigned)seed;
    for (size_t i = 0; i < (size_t)3 * 6 * 5; i++) {
        s = s * 1664525u + 1013904223u;
        f->dense[i] = (float)((int)(s >> 9) % 2001 - 1000) / 250.0f;
    }
    for (size_t i = 0; i < 15; i++)
        f->pooled[i] = (float)i - 7.5f;
}

static void assert_same(const struct hx_dense_feats *a, const struct hx_dense_feats *b, double tol)
{
    ck_assert_int_eq(a->nw, b->nw);
    ck_assert_int_eq(a->T, b->T);
    ck_assert_int_eq(a->E, b->E);
    ck_assert_int_eq(a->img_h, b->img_h);
    ck_assert_int_eq(a->view_w, b->view_w);
    for (int w = 0; w < a->nw; w++) {
        ck_assert_int_eq(a->win[w].x1, b->win[w].x1);
        ck_assert_int_eq(a->win[w].y2, b->win[w].y2);
        ck_assert_int_eq(a->grid[2 * w + 1], b->grid[2 * w + 1]);
    }
    hx_assert_close("dense", b->dense, a->dense, (size_t)a->nw * a->T * a->E, tol, 0);
    hx_assert_close("pooled", b->pooled, a->pooled, (size_t)a->nw * a->E, 0, 0);
}

START_TEST(round_trip_f32_and_f16)
{
    const char *dir = hx_tmpdir();
    for (int f16 = 0; f16 < 2; f16++) {
        struct hx_featcache c;
        ck_assert_int_eq(hx_featcache_open(&c, dir, "fp-test", f16 ? "v16" : "v32", f16), 0);
        struct hx_dense_feats a, b;
        make_feats(&a, 1);
        ck_assert_int_eq(hx_featcache_get(&c, "frankfurt/img_001", &b), HX_ENOTFOUND);
        ck_assert(!hx_featcache_has(&c, "frankfurt/img_001"));
        ck_assert_int_eq(hx_featcache_put(&c, "frankfurt/img_001", &a), 0);
        ck_assert(hx_featcache_has(&c, "frankfurt/img_001"));
        ck_assert_msg(hx_featcache_get(&c, "frankfurt/img_001", &b) == 0, "%s", hx_errmsg());
        assert_same(&a, &b, f16 ? 1e-3 : 0); /* float16 keeps 11 significant bits */
        ck_assert_uint_eq(c.hits, 1);
        ck_assert_uint_eq(c.misses, 1);
        hx_dense_feats_free(&a);
        hx_dense_feats_free(&b);
    }
    /* the '/' of the id is escaped into one file name */
    char path[1024];
    snprintf(path, sizeof path, "%s/features/fp-test/v32/frankfurt%%2Fimg_001.h5", dir);
    ck_assert_msg(access(path, R_OK) == 0, "expected %s", path);
}
END_TEST

static void damage(const char *path, long offset, int truncate_to)
{
    if (truncate_to >= 0) {
        ck_assert_int_eq(truncate(path, truncate_to), 0);
        return;
    }
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    fseek(f, offset, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, offset, SEEK_SET);
    fputc(ch ^ 0x55, f);
    fclose(f);
}

START_TEST(corrupt_entries_are_not_read)
{
    const char *dir = hx_tmpdir();
    struct hx_featcache c;
    ck_assert_int_eq(hx_featcache_open(&c, dir, "fp", "v", 0), 0);
    struct hx_dense_feats a, b;
    make_feats(&a, 2);
    char path[1024];
    snprintf(path, sizeof path, "%s/features/fp/v/x.h5", dir);
    struct stat st;
    /* a flipped byte in the token data, then a truncated file */
    for (int kind = 0; kind < 2; kind++) {
        ck_assert_int_eq(hx_featcache_put(&c, "x", &a), 0);
        ck_assert_int_eq(stat(path, &st), 0);
        if (kind == 0) {
            /* the dense block is the largest: its bytes sit somewhere in the file; flip one
             * byte at a time until a read fails, checking no damaged read ever succeeds with
             * different values */
            int detected = 0;
            for (long off = st.st_size - 1; off >= 0 && !detected; off -= 7) {
                damage(path, off, -1);
                int rc = hx_featcache_get(&c, "x", &b);
                if (rc == 0) {
                    assert_same(&a, &b, 0); /* the byte was in unused space */
                    hx_dense_feats_free(&b);
                    damage(path, off, -1); /* undo */
                } else {
                    ck_assert_int_eq(rc, HX_ENOTFOUND);
                    detected = 1;
                }
            }
            ck_assert(detected);
        } else {
            damage(path, 0, (int)(st.st_size / 2));
            ck_assert_int_eq(hx_featcache_get(&c, "x", &b), HX_ENOTFOUND);
        }
        ck_assert_msg(access(path, F_OK) != 0, "a corrupt entry must be removed");
    }
    ck_assert_uint_eq(c.corrupt, 2);
    hx_dense_feats_free(&a);
}
END_TEST

/* A fake text encoder: embedding = (length, first byte, last byte, count of 'a'). */
static int encoder_calls, encoder_texts;
static int fake_encode(void *ctx, const char *const *texts, int n, float *out)
{
    (void)ctx;
    encoder_calls++;
    encoder_texts += n;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(texts[i]);
        int a = 0;
        for (size_t k = 0; k < len; k++)
            a += texts[i][k] == 'a';
        out[4 * i] = (float)len;
        out[4 * i + 1] = len ? (float)(unsigned char)texts[i][0] : -1;
        out[4 * i + 2] = len ? (float)(unsigned char)texts[i][len - 1] : -1;
        out[4 * i + 3] = (float)a;
    }
    return 0;
}

START_TEST(text_cache_encodes_each_text_once)
{
    const char *dir = hx_tmpdir();
    const char *t1[] = {"a photo of a cat.", "sofa", "a photo of a cat.", "", "caf\xc3\xa9"};
    float out[5 * 4], want[5 * 4];
    int computed;
    fake_encode(NULL, t1, 5, want);
    encoder_calls = encoder_texts = 0;
    ck_assert_int_eq(hx_text_cache_embed(dir, "fp", 4, fake_encode, NULL, t1, 5, out, &computed), 0);
    ck_assert_int_eq(computed, 4); /* the duplicate is encoded once */
    ck_assert_int_eq(encoder_calls, 1);
    ck_assert_int_eq(encoder_texts, 4);
    hx_assert_close("text embeddings", out, want, 20, 0, 0);
    /* again: nothing new */
    ck_assert_int_eq(hx_text_cache_embed(dir, "fp", 4, fake_encode, NULL, t1, 5, out, &computed), 0);
    ck_assert_int_eq(computed, 0);
    ck_assert_int_eq(encoder_calls, 1); /* not called again */
    hx_assert_close("text embeddings (cached)", out, want, 20, 0, 0);
    /* a mix: one new text */
    const char *t2[] = {"sofa", "daybed"};
    ck_assert_int_eq(hx_text_cache_embed(dir, "fp", 4, fake_encode, NULL, t2, 2, out, &computed), 0);
    ck_assert_int_eq(computed, 1);
    ck_assert_double_eq(out[0], 4);
    ck_assert_double_eq(out[4], 6);
    /* a corrupted file is ignored and rewritten */
    char path[1024];
    snprintf(path, sizeof path, "%s/text/fp.h5", dir);
    damage(path, 0, 100);
    ck_assert_int_eq(hx_text_cache_embed(dir, "fp", 4, fake_encode, NULL, t2, 2, out, &computed), 0);
    ck_assert_int_eq(computed, 2);
}
END_TEST

START_TEST(concurrent_text_writers_keep_all_entries)
{
    const char *dir = hx_tmpdir();
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            for (int i = 0; i < 40; i++) {
                char buf[32];
                snprintf(buf, sizeof buf, "writer %d text %d", k, i);
                const char *t[1] = {buf};
                float out[4];
                if (hx_text_cache_embed(dir, "shared", 4, fake_encode, NULL, t, 1, out, NULL))
                    _exit(1);
            }
            _exit(0);
        }
    }
    for (int k = 0; k < 2; k++) {
        int status;
        waitpid(kids[k], &status, 0);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* every one of the 80 texts is now cached: asking for all computes nothing */
    char bufs[80][32];
    const char *all[80];
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 40; i++) {
            snprintf(bufs[k * 40 + i], 32, "writer %d text %d", k, i);
            all[k * 40 + i] = bufs[k * 40 + i];
        }
    float out[80 * 4];
    int computed;
    ck_assert_int_eq(hx_text_cache_embed(dir, "shared", 4, fake_encode, NULL, all, 80, out, &computed), 0);
    ck_assert_int_eq(computed, 0);
}
END_TEST

/* Two processes writing the same image entries while a third reads them: every read is a
 * miss or the complete entry, never a damaged one, and no temporary file is left behind.
 * (Entries are written aside under a per-process name and renamed into place.) */
START_TEST(concurrent_feature_writers_never_expose_partial_entries)
{
    const char *dir = hx_tmpdir();
    struct hx_dense_feats want[8];
    for (int i = 0; i < 8; i++)
        make_feats(&want[i], 100 + i);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            struct hx_featcache c;
            if (hx_featcache_open(&c, dir, "fp", "v", 0))
                _exit(1);
            for (int round = 0; round < 15; round++)
                for (int i = 0; i < 8; i++) {
                    char id[16];
                    snprintf(id, sizeof id, "img%d", (i + k * 3) % 8);
                    if (hx_featcache_put(&c, id, &want[(i + k * 3) % 8]))
                        _exit(2);
                }
            _exit(0);
        }
    }
    struct hx_featcache c;
    ck_assert_int_eq(hx_featcache_open(&c, dir, "fp", "v", 0), 0);
    int status[2], running = 2;
    for (int round = 0; running; round++) { /* read for as long as either writer writes */
        char id[16];
        struct hx_dense_feats got;
        snprintf(id, sizeof id, "img%d", round % 8);
        int rc = hx_featcache_get(&c, id, &got);
        ck_assert_msg(rc == 0 || rc == HX_ENOTFOUND, "%s", hx_errmsg());
        if (rc == 0) {
            assert_same(&want[round % 8], &got, 0);
            hx_dense_feats_free(&got);
        }
        for (int k = 0; k < 2; k++)
            if (kids[k] && waitpid(kids[k], &status[k], WNOHANG) == kids[k])
                kids[k] = 0, running--;
    }
    for (int k = 0; k < 2; k++)
        ck_assert(WIFEXITED(status[k]) && WEXITSTATUS(status[k]) == 0);
    ck_assert_uint_eq(c.corrupt, 0);
    for (int i = 0; i < 8; i++) {
        char id[16];
        struct hx_dense_feats got;
        snprintf(id, sizeof id, "img%d", i);
        ck_assert_int_eq(hx_featcache_get(&c, id, &got), 0);
        assert_same(&want[i], &got, 0);
        hx_dense_feats_free(&got);
        hx_dense_feats_free(&want[i]);
    }
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls %s/features/fp/v | grep -qv '\\.h5$'", dir);
    ck_assert_msg(system(cmd) != 0, "temporary files left in %s/features/fp/v", dir);
}
END_TEST

Suite *suite_featcache(void)
{
    Suite *s = suite_create("featcache");
    TCase *tc = tcase_create("cache");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, round_trip_f32_and_f16);
    tcase_add_test(tc, corrupt_entries_are_not_read);
    tcase_add_test(tc, text_cache_encodes_each_text_once);
    tcase_add_test(tc, concurrent_text_writers_keep_all_entries);
    tcase_add_test(tc, concurrent_feature_writers_never_expose_partial_entries);
    suite_add_tcase(s, tc);
    return s;
}
