#include "harness/error.h"
#include "harness/h5io.h"
#include "tests/test_util.h"

#include <dirent.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* 1-D, 2-D and 3-D datasets (one nested two groups deep) with attributes. */
static float v1[5], v2[3 * 4], v3[2 * 3 * 4];
static const struct hx_h5_attr at2[] = {{"grid_h", 7}, {"grid_w", -9000000000LL}};
static const struct hx_h5_attr at3[] = {{"version", 3}};

static void fill(void)
{
    for (int i = 0; i < 5; i++)
        v1[i] = 1.5f * (float)i - 2.0f;
    for (int i = 0; i < 12; i++)
        v2[i] = (float)(i * i) / 7.0f;
    for (int i = 0; i < 24; i++)
        v3[i] = (float)i + 0.125f;
}

static int write_sample(const char *path)
{
    fill();
    struct hx_h5_dataset ds[] = {
        {"/pooled", 1, {5}, v1, NULL, 0},
        {"/dense", 2, {3, 4}, v2, at2, 2},
        {"/text/bank/emb", 3, {2, 3, 4}, v3, at3, 1},
    };
    return hx_h5_write(path, ds, 3);
}

START_TEST(round_trip_with_attributes)
{
    const char *dir = hx_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/feat.h5", dir);
    ck_assert_msg(write_sample(path) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(count_files(dir), 1); /* no temporary left behind */

    static const struct {
        const char *name;
        int ndim;
        int64_t shape[4];
        const float *want;
        size_t n;
    } exp[] = {{"/pooled", 1, {5}, v1, 5},
               {"/dense", 2, {3, 4}, v2, 12},
               {"/text/bank/emb", 3, {2, 3, 4}, v3, 24},
               {"text/bank/emb", 3, {2, 3, 4}, v3, 24}};
    for (size_t i = 0; i < sizeof exp / sizeof exp[0]; i++) {
        float *d;
        int64_t shape[4];
        int nd;
        ck_assert_msg(hx_h5_read(path, exp[i].name, &d, shape, &nd) == 0, "%s", hx_errmsg());
        ck_assert_int_eq(nd, exp[i].ndim);
        for (int k = 0; k < nd; k++)
            ck_assert_int_eq(shape[k], exp[i].shape[k]);
        ck_assert_int_eq(memcmp(d, exp[i].want, exp[i].n * sizeof(float)), 0);
        free(d);
    }
    int64_t a;
    ck_assert_int_eq(hx_h5_read_attr(path, "/dense", "grid_h", &a), 0);
    ck_assert_int_eq(a, 7);
    ck_assert_int_eq(hx_h5_read_attr(path, "/dense", "grid_w", &a), 0);
    ck_assert_int_eq(a, -9000000000LL);
    ck_assert_int_eq(hx_h5_read_attr(path, "/text/bank/emb", "version", &a), 0);
    ck_assert_int_eq(a, 3);

    /* rewriting replaces the whole file */
    struct hx_h5_dataset one = {"/only", 1, {2}, v1, NULL, 0};
    ck_assert_int_eq(hx_h5_write(path, &one, 1), 0);
    float *d;
    int64_t shape[4];
    int nd;
    ck_assert_int_eq(hx_h5_read(path, "/dense", &d, shape, &nd), HX_ENOTFOUND);
    ck_assert_int_eq(hx_h5_read(path, "/only", &d, shape, &nd), 0);
    ck_assert_int_eq(shape[0], 2);
    free(d);
    ck_assert_int_eq(count_files(dir), 1);
}
END_TEST

START_TEST(errors_name_file_and_dataset)
{
    const char *dir = hx_tmpdir();
    char path[512], missing[512];
    snprintf(path, sizeof path, "%s/feat.h5", dir);
    snprintf(missing, sizeof missing, "%s/absent.h5", dir);
    ck_assert_int_eq(write_sample(path), 0);
    float *d = (float *)1;
    int64_t shape[4];
    int nd;

    ck_assert_int_eq(hx_h5_read(missing, "/dense", &d, shape, &nd), HX_EIO);
    ck_assert_ptr_null(d);
    ck_assert_msg(strstr(hx_errmsg(), missing), "%s", hx_errmsg());

    const char *names[] = {"/nope", "/text/nope", "/no/such/group", "/text/bank/emb/x"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        hx_err_clear();
        int rc = hx_h5_read(path, names[i], &d, shape, &nd);
        ck_assert_msg(rc == HX_ENOTFOUND || rc == HX_EFORMAT, "%s: rc %d", names[i], rc);
        ck_assert_msg(strstr(hx_errmsg(), path) && strstr(hx_errmsg(), names[i]), "%s",
                      hx_errmsg());
    }
    /* a group is not a dataset */
    ck_assert_int_eq(hx_h5_read(path, "/text/bank", &d, shape, &nd), HX_EFORMAT);
    ck_assert_ptr_nonnull(strstr(hx_errmsg(), "/text/bank"));

    int64_t a;
    ck_assert_int_eq(hx_h5_read_attr(path, "/dense", "nope", &a), HX_ENOTFOUND);
    ck_assert_msg(strstr(hx_errmsg(), "nope") && strstr(hx_errmsg(), "/dense"), "%s",
                  hx_errmsg());
    ck_assert_int_eq(hx_h5_read_attr(path, "/gone", "grid_h", &a), HX_ENOTFOUND);
    ck_assert_int_eq(hx_h5_read_attr(missing, "/dense", "grid_h", &a), HX_EIO);

    /* not an HDF5 file */
    char junk[512];
    snprintf(junk, sizeof junk, "%s/junk.h5", dir);
    FILE *f = fopen(junk, "w");
    fputs("not hdf5\n", f);
    fclose(f);
    ck_assert_int_eq(hx_h5_read(junk, "/dense", &d, shape, &nd), HX_EFORMAT);
    ck_assert_ptr_nonnull(strstr(hx_errmsg(), junk));

    /* a failed write leaves neither the target nor a temporary */
    const char *wdir = hx_tmpdir();
    char wpath[512];
    snprintf(wpath, sizeof wpath, "%s/dup.h5", wdir);
    struct hx_h5_dataset dup[] = {{"/x", 1, {5}, v1, NULL, 0}, {"/x", 1, {5}, v1, NULL, 0}};
    ck_assert_int_ne(hx_h5_write(wpath, dup, 2), 0);
    ck_assert_msg(strstr(hx_errmsg(), wpath) && strstr(hx_errmsg(), "/x"), "%s", hx_errmsg());
    ck_assert_int_eq(count_files(wdir), 0);
}
END_TEST

/* A float64 dataset written directly with the HDF5 API reads back converted to float. */
START_TEST(reads_other_float_types)
{
    char path[512];
    snprintf(path, sizeof path, "%s/f64.h5", hx_tmpdir());
    double src[6] = {0.1, -2.5, 1e-3, 3e5, -0.0, 42};
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {2, 3};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t ds = H5Dcreate2(file, "d", H5T_IEEE_F64BE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, src), 0);
    hid_t is = H5Dcreate2(file, "i", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(is);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(file);

    float *d, want[6];
    int64_t shape[4];
    int nd;
    ck_assert_msg(hx_h5_read(path, "/d", &d, shape, &nd) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(nd, 2);
    ck_assert_int_eq(shape[1], 3);
    for (int i = 0; i < 6; i++)
        want[i] = (float)src[i];
    hx_assert_close("f64 dataset", d, want, 6, 0, 0);
    free(d);
    ck_assert_int_eq(hx_h5_read(path, "/i", &d, shape, &nd), HX_EFORMAT);
    ck_assert_ptr_nonnull(strstr(hx_errmsg(), "/i"));
}
END_TEST

/* The written file is an ordinary HDF5 file: h5py sees the same shapes, values, attributes. */
START_TEST(readable_by_h5py)
{
    if (system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") != 0)
        HX_SKIP("/usr/bin/python3 has no h5py");
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/feat.h5", hx_tmpdir());
    ck_assert_int_eq(write_sample(path), 0);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c '\n"
             "import sys, h5py\n"
             "f = h5py.File(sys.argv[1], \"r\")\n"
             "e = f[\"text/bank/emb\"]\n"
             "assert e.shape == (2, 3, 4) and e.dtype == \"float32\", (e.shape, e.dtype)\n"
             "assert e[1, 2, 3] == 23.125, e[1, 2, 3]\n"
             "assert e.attrs[\"version\"] == 3\n"
             "d = f[\"dense\"]\n"
             "assert d.shape == (3, 4) and abs(d[2, 1] - 81 / 7) < 1e-5, d[2, 1]\n"
             "assert d.attrs[\"grid_h\"] == 7 and d.attrs[\"grid_w\"] == -9000000000\n"
             "assert f[\"pooled\"].shape == (5,) and f[\"pooled\"][4] == 4.0\n"
             "' '%s'",
             path);
    ck_assert_msg(system(cmd) == 0, "h5py rejected %s", path);
}
END_TEST

Suite *suite_h5io(void)
{
    Suite *s = suite_create("h5io");
    TCase *tc = tcase_create("io");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, round_trip_with_attributes);
    tcase_add_test(tc, errors_name_file_and_dataset);
    tcase_add_test(tc, reads_other_float_types);
    tcase_add_test(tc, readable_by_h5py);
    suite_add_tcase(s, tc);
    return s;
}
