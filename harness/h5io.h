/* Small HDF5 helpers for the CLI's outputs: whole float32 datasets with integer attributes.
 * Writes are atomic: the file is written under a temporary name and renamed into place, so a
 * killed run never leaves a half-written file at `path`. */
#ifndef HX_H5IO_H
#define HX_H5IO_H

#include <stdint.h>

struct hx_h5_attr {
    const char *name;
    int64_t value;
};

struct hx_h5_dataset {
    const char *name;            /* e.g. "/dense" */
    int ndim;
    int64_t shape[4];
    const float *data;           /* row-major */
    const struct hx_h5_attr *attrs;
    int nattrs;
};

/* Create (or replace) `path` holding the given float32 datasets. */
int hx_h5_write(const char *path, const struct hx_h5_dataset *ds, int n);

/* Read a float32 dataset (any float type on disk is converted). *data is malloc'd (caller
 * frees); shape receives up to 4 dims, *ndim the rank. Errors name the file and dataset. */
int hx_h5_read(const char *path, const char *name, float **data, int64_t shape[4], int *ndim);

/* Read an integer attribute of a dataset. */
int hx_h5_read_attr(const char *path, const char *dataset, const char *attr, int64_t *value);

#endif
