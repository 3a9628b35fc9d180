/* Whole-dataset HDF5 helpers. HDF5's own error stack printing is switched off; every failure
 * becomes one hx_err message naming the file and the dataset. */
#include "harness/h5io.h"

#include "harness/error.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* Does every component of `name` ("/a/b/c") exist as a link? H5Lexists needs each parent to
 * exist, so walk the prefixes. */
static int path_exists(hid_t file, const char *name)
{
    size_t len = strlen(name);
    char *buf = malloc(len + 1);
    if (!buf)
        return 0;
    memcpy(buf, name, len + 1);
    int ok = 1;
    for (size_t i = 1; ok && i <= len; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (buf[i - 1] != '/')
                ok = H5Lexists(file, buf, H5P_DEFAULT) > 0;
            buf[i] = c;
        }
    }
    free(buf);
    return ok;
}

int hx_h5_write(const char *path, const struct hx_h5_dataset *ds, int n)
{
    int rc = 0;
    hid_t file = H5I_INVALID_HID, lcpl = H5I_INVALID_HID, space = H5I_INVALID_HID,
          dset = H5I_INVALID_HID, aspace = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    char *tmp = NULL;
    quiet();

    for (int i = 0; i < n; i++) {
        if (!ds[i].name || !ds[i].name[0] || ds[i].ndim < 0 || ds[i].ndim > 4)
            return hx_err(HX_EINVAL, "%s: dataset %d: missing name or bad rank %d", path, i,
                          ds[i].ndim);
        for (int d = 0; d < ds[i].ndim; d++)
            if (ds[i].shape[d] < 0)
                return hx_err(HX_EINVAL, "%s: dataset '%s': negative dimension", path,
                              ds[i].name);
    }

    size_t plen = strlen(path) + 32;
    tmp = hx_malloc(plen, "temporary path");
    if (!tmp)
        return HX_ENOMEM;
    snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
    file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) {
        rc = hx_err(HX_EIO, "%s: cannot create HDF5 file %s", path, tmp);
        goto done;
    }
    lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        rc = hx_err(HX_EINTERNAL, "%s: HDF5 property list setup failed", path);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const struct hx_h5_dataset *d = &ds[i];
        hsize_t dims[4];
        size_t numel = 1;
        for (int k = 0; k < d->ndim; k++) {
            dims[k] = (hsize_t)d->shape[k];
            numel *= (size_t)d->shape[k];
        }
        if (numel && !d->data) {
            rc = hx_err(HX_EINVAL, "%s: dataset '%s' has no data", path, d->name);
            goto done;
        }
        space = d->ndim ? H5Screate_simple(d->ndim, dims, NULL) : H5Screate(H5S_SCALAR);
        if (space < 0) {
            rc = hx_err(HX_EINTERNAL, "%s: dataset '%s': cannot create its dataspace", path,
                        d->name);
            goto done;
        }
        dset = H5Dcreate2(file, d->name, H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        if (dset < 0) {
            rc = hx_err(HX_EIO, "%s: cannot create dataset '%s' (bad or repeated name?)", path,
                        d->name);
            goto done;
        }
        if (numel && H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, d->data) < 0) {
            rc = hx_err(HX_EIO, "%s: writing dataset '%s' failed", path, d->name);
            goto done;
        }
        for (int a = 0; a < d->nattrs; a++) {
            aspace = H5Screate(H5S_SCALAR);
            attr = aspace < 0 ? H5I_INVALID_HID
                              : H5Acreate2(dset, d->attrs[a].name, H5T_STD_I64LE, aspace,
                                           H5P_DEFAULT, H5P_DEFAULT);
            if (attr < 0 || H5Awrite(attr, H5T_NATIVE_INT64, &d->attrs[a].value) < 0) {
                rc = hx_err(HX_EIO, "%s: dataset '%s': cannot write attribute '%s'", path,
                            d->name, d->attrs[a].name ? d->attrs[a].name : "(null)");
                goto done;
            }
            H5Aclose(attr);
            H5Sclose(aspace);
            attr = aspace = H5I_INVALID_HID;
        }
        H5Dclose(dset);
        H5Sclose(space);
        dset = space = H5I_INVALID_HID;
    }
    herr_t st = H5Fclose(file);
    file = H5I_INVALID_HID;
    if (st < 0) {
        rc = hx_err(HX_EIO, "%s: closing %s failed", path, tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        rc = hx_err(HX_EIO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        goto done;
    }

done:
    if (attr >= 0)
        H5Aclose(attr);
    if (aspace >= 0)
        H5Sclose(aspace);
    if (dset >= 0)
        H5Dclose(dset);
    if (space >= 0)
        H5Sclose(space);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (file >= 0)
        H5Fclose(file);
    if (rc && tmp)
        unlink(tmp);
    free(tmp);
    return rc;
}

static int open_file(const char *path, hid_t *out)
{
    quiet();
    if (access(path, R_OK) != 0)
        return hx_err(HX_EIO, "%s: cannot open: %s", path, strerror(errno));
    *out = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*out < 0)
        return hx_err(HX_EFORMAT, "%s: not a readable HDF5 file", path);
    return 0;
}

static int open_dataset(hid_t file, const char *path, const char *name, hid_t *out)
{
    if (!path_exists(file, name))
        return hx_err(HX_ENOTFOUND, "%s: no dataset '%s'", path, name);
    *out = H5Dopen2(file, name, H5P_DEFAULT);
    if (*out < 0)
        return hx_err(HX_EFORMAT, "%s: '%s' exists but is not a readable dataset", path, name);
    return 0;
}

int hx_h5_read(const char *path, const char *name, float **data, int64_t shape[4], int *ndim)
{
    int rc = 0;
    hid_t file, dset = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    float *buf = NULL;
    *data = NULL;

    if ((rc = open_file(path, &file)))
        return rc;
    if ((rc = open_dataset(file, path, name, &dset)))
        goto done;
    type = H5Dget_type(dset);
    if (type < 0 || H5Tget_class(type) != H5T_FLOAT) {
        rc = hx_err(HX_EFORMAT, "%s: dataset '%s' is not floating point", path, name);
        goto done;
    }
    space = H5Dget_space(dset);
    int nd = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    if (nd < 0 || nd > 4) {
        rc = hx_err(HX_EFORMAT, "%s: dataset '%s' has rank %d (at most 4 supported)", path, name,
                    nd);
        goto done;
    }
    hsize_t dims[4] = {0};
    H5Sget_simple_extent_dims(space, dims, NULL);
    size_t numel = 1;
    for (int k = 0; k < nd; k++) {
        if (dims[k] && numel > SIZE_MAX / sizeof(float) / dims[k]) {
            rc = hx_err(HX_EFORMAT, "%s: dataset '%s' is too large", path, name);
            goto done;
        }
        numel *= (size_t)dims[k];
    }
    buf = hx_malloc(numel * sizeof(float), name);
    if (!buf) {
        rc = HX_ENOMEM;
        goto done;
    }
    if (numel && H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        rc = hx_err(HX_EIO, "%s: reading dataset '%s' failed", path, name);
        goto done;
    }
    for (int k = 0; k < 4; k++)
        shape[k] = k < nd ? (int64_t)dims[k] : 0;
    *ndim = nd;
    *data = buf;
    buf = NULL;

done:
    free(buf);
    if (space >= 0)
        H5Sclose(space);
    if (type >= 0)
        H5Tclose(type);
    if (dset >= 0)
        H5Dclose(dset);
    H5Fclose(file);
    return rc;
}

int hx_h5_read_attr(const char *path, const char *dataset, const char *attr, int64_t *value)
{
    int rc = 0;
    hid_t file, dset = H5I_INVALID_HID, a = H5I_INVALID_HID, type = H5I_INVALID_HID,
                space = H5I_INVALID_HID;

    if ((rc = open_file(path, &file)))
        return rc;
    if ((rc = open_dataset(file, path, dataset, &dset)))
        goto done;
    if (H5Aexists(dset, attr) <= 0) {
        rc = hx_err(HX_ENOTFOUND, "%s: dataset '%s' has no attribute '%s'", path, dataset, attr);
        goto done;
    }
    a = H5Aopen(dset, attr, H5P_DEFAULT);
    type = a < 0 ? H5I_INVALID_HID : H5Aget_type(a);
    space = a < 0 ? H5I_INVALID_HID : H5Aget_space(a);
    if (type < 0 || space < 0 || H5Tget_class(type) != H5T_INTEGER ||
        H5Sget_simple_extent_npoints(space) != 1) {
        rc = hx_err(HX_EFORMAT, "%s: dataset '%s': attribute '%s' is not a single integer", path,
                    dataset, attr);
        goto done;
    }
    if (H5Aread(a, H5T_NATIVE_INT64, value) < 0) {
        rc = hx_err(HX_EIO, "%s: dataset '%s': reading attribute '%s' failed", path, dataset,
                    attr);
        goto done;
    }

done:
    if (space >= 0)
        H5Sclose(space);
    if (type >= 0)
        H5Tclose(type);
    if (a >= 0)
        H5Aclose(a);
    if (dset >= 0)
        H5Dclose(dset);
    H5Fclose(file);
    return rc;
}
