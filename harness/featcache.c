#include "harness/featcache.h"

#include "harness/atomicio.h"
#include "harness/error.h"
#include "harness/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <pthread.h>

#define FORMAT_VERSION 2 /* 2: the four-lane hx_hash64 */

/* HDF5 (as Debian builds it) is not thread-safe: the image loop's workers share one cache,
 * so every call into the library goes through this lock. */
static pthread_mutex_t h5_lock = PTHREAD_MUTEX_INITIALIZER;

static inline uint64_t rotl64(uint64_t v, int r) { return v << r | v >> (64 - r); }

uint64_t hx_hash64(const void *data, size_t n, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = seed ^ (0x9e3779b97f4a7c15ull * (n + 1));
    size_t i = 0;
    if (n >= 32) {
        /* four independent lanes over 32-byte strides: the multiplies of one lane do not wait
         * for another's, so large buffers hash at several bytes per cycle */
        uint64_t v[4] = {h, h ^ 0x243f6a8885a308d3ull, h ^ 0x13198a2e03707344ull,
                         h ^ 0xa4093822299f31d0ull};
        for (; i + 32 <= n; i += 32)
            for (int l = 0; l < 4; l++) {
                uint64_t w;
                memcpy(&w, p + i + 8 * l, 8);
                v[l] = rotl64(v[l] ^ w * 0xbf58476d1ce4e5b9ull, 27) * 0x94d049bb133111ebull;
            }
        for (int l = 0; l < 4; l++)
            h = rotl64(h ^ v[l], 31) * 0x9e3779b97f4a7c15ull;
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = rotl64(h ^ w * 0xbf58476d1ce4e5b9ull, 27) * 0x94d049bb133111ebull;
    }
    for (; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    h ^= h >> 31;
    return h * 0x9e3779b97f4a7c15ull;
}

int hx_model_fingerprint(const char *dir, char *out, size_t len)
{
    char path[1200];
    uint8_t *cfg;
    size_t n;
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = hx_read_file(path, &cfg, &n);
    if (rc)
        return rc;
    uint64_t h = hx_hash64(cfg, n, 11);
    free(cfg);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        rc = hx_err(HX_EIO, "cannot open %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    uint64_t size = (uint64_t)st.st_size, hlen = 0;
    h = hx_hash64(&size, sizeof size, h);
    uint8_t block[4096];
    if (pread(fd, &hlen, 8, 0) == 8 && hlen < size) {
        for (uint64_t off = 8; off < 8 + hlen; off += sizeof block) {
            ssize_t r = pread(fd, block, sizeof block, (off_t)off);
            if (r <= 0)
                break;
            h = hx_hash64(block, (size_t)r, h);
        }
    }
    for (int i = 0; i < 64; i++) {
        uint64_t off = size > sizeof block ? (size - sizeof block) / 63 * (uint64_t)i : 0;
        ssize_t r = pread(fd, block, sizeof block, (off_t)off);
        if (r > 0)
            h = hx_hash64(block, (size_t)r, h);
    }
    close(fd);
    snprintf(out, len, "%016llx", (unsigned long long)h);
    return 0;
}

int hx_featcache_open(struct hx_featcache *c, const char *cache_dir, const char *fingerprint,
                      const char *view, int f16)
{
    memset(c, 0, sizeof *c);
    c->f16 = f16;
    if ((size_t)snprintf(c->dir, sizeof c->dir, "%s/features/%s/%s", cache_dir, fingerprint,
                         view) >= sizeof c->dir)
        return hx_err(HX_EINVAL, "cache path too long under %s", cache_dir);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return 0; /* the folder is made by the first put */
}

/* <dir>/<id with '/' as %2F>.h5 */
static int entry_path(const struct hx_featcache *c, const char *id, char *out, size_t len)
{
    size_t k = (size_t)snprintf(out, len, "%s/", c->dir);
    for (const char *s = id; *s && k + 4 < len; s++) {
        if (*s == '/' || *s == '%') {
            k += (size_t)snprintf(out + k, len - k, "%%%02X", (unsigned char)*s);
        } else {
            out[k++] = *s;
        }
    }
    if (k + 4 >= len)
        return hx_err(HX_EINVAL, "image id too long for a cache file name: %s", id);
    snprintf(out + k, len - k, ".h5");
    return 0;
}

int hx_featcache_has(const struct hx_featcache *c, const char *id)
{
    char path[1400];
    return entry_path(c, id, path, sizeof path) == 0 && access(path, R_OK) == 0;
}

/* IEEE half precision as an HDF5 type, so h5py reads it as float16. */
static hid_t half_type(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    return t;
}

static uint64_t checksum(const struct hx_dense_feats *f, const void *dense_bytes,
                         size_t dense_len, const int32_t *wins)
{
    int64_t dims[8] = {f->nw, f->T, f->E, f->img_h, f->img_w, f->view_h, f->view_w,
                       FORMAT_VERSION};
    uint64_t h = hx_hash64(dims, sizeof dims, 1);
    h = hx_hash64(dense_bytes, dense_len, h);
    h = hx_hash64(f->pooled, sizeof(float) * (size_t)f->nw * f->E, h);
    return hx_hash64(wins, sizeof(int32_t) * 6 * (size_t)f->nw, h);
}

static int write_attr_i64(hid_t obj, const char *name, int64_t v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &v);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return e < 0 ? -1 : 0;
}

static int read_attr_i64(hid_t obj, const char *name, int64_t *v)
{
    if (H5Aexists(obj, name) <= 0)
        return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Aread(a, H5T_NATIVE_INT64, v);
    if (a >= 0)
        H5Aclose(a);
    return e < 0 ? -1 : 0;
}

static int write_dataset(hid_t file, const char *name, hid_t ftype, hid_t mtype, int rank,
                         const hsize_t *dims, const hsize_t *chunk, const void *data)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL), pl = H5P_DEFAULT;
    if (chunk) {
        pl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(pl, rank, chunk);
    }
    hid_t d = H5Dcreate2(file, name, ftype, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    herr_t e = d < 0 ? -1 : H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (d >= 0)
        H5Dclose(d);
    if (chunk)
        H5Pclose(pl);
    H5Sclose(sp);
    return e < 0 ? -1 : 0;
}

static int featcache_put_unlocked(struct hx_featcache *c, const char *id,
                                  const struct hx_dense_feats *f)
{
    char path[1400], tmp[1500];
    int rc = entry_path(c, id, path, sizeof path);
    if (rc)
        return rc;
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    if ((rc = hx_mkdirs(c->dir)))
        return rc;
    size_t nd = (size_t)f->nw * f->T * f->E;
    uint16_t *half = NULL;
    int32_t *wins = hx_malloc(sizeof(int32_t) * 6 * (size_t)f->nw, "window table");
    if (!wins)
        return HX_ENOMEM;
    for (int w = 0; w < f->nw; w++) {
        int32_t *r = wins + 6 * w;
        r[0] = f->win[w].y1, r[1] = f->win[w].y2, r[2] = f->win[w].x1, r[3] = f->win[w].x2;
        r[4] = f->grid[2 * w], r[5] = f->grid[2 * w + 1];
    }
    const void *dense_bytes = f->dense;
    size_t dense_len = nd * sizeof(float);
    if (c->f16) {
        half = hx_malloc(nd * sizeof *half, "float16 tokens");
        if (!half) {
            free(wins);
            return HX_ENOMEM;
        }
        for (size_t i = 0; i < nd; i++)
            half[i] = hx_f32_to_f16(f->dense[i]);
        dense_bytes = half, dense_len = nd * sizeof *half;
    }
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), ht = -1;
    if (file < 0) {
        rc = hx_err(HX_EIO, "cannot create cache file %s", tmp);
        goto done;
    }
    hsize_t dd[3] = {(hsize_t)f->nw, (hsize_t)f->T, (hsize_t)f->E}, ch[3] = {1, dd[1], dd[2]};
    hsize_t pd[2] = {(hsize_t)f->nw, (hsize_t)f->E}, wd[2] = {(hsize_t)f->nw, 6};
    if (c->f16)
        ht = half_type();
    int bad = c->f16 ? write_dataset(file, "/dense", ht, ht, 3, dd, ch, half)
                     : write_dataset(file, "/dense", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, dd,
                                     ch, f->dense);
    bad = bad || write_dataset(file, "/pooled", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, pd, NULL,
                               f->pooled);
    bad = bad || write_dataset(file, "/windows", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, wd, NULL,
                               wins);
    bad = bad || write_attr_i64(file, "version", FORMAT_VERSION) ||
          write_attr_i64(file, "img_h", f->img_h) || write_attr_i64(file, "img_w", f->img_w) ||
          write_attr_i64(file, "view_h", f->view_h) || write_attr_i64(file, "view_w", f->view_w) ||
          write_attr_i64(file, "checksum",
                         (int64_t)checksum(f, dense_bytes, dense_len, wins));
    if (ht >= 0)
        H5Tclose(ht);
    if (H5Fclose(file) < 0 || bad) {
        rc = hx_err(HX_EIO, "cannot write cache file %s", tmp);
        goto done;
    }
    if (rename(tmp, path)) {
        rc = hx_err(HX_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto done;
    }
done:
    if (rc)
        unlink(tmp);
    free(half);
    free(wins);
    return rc;
}

static int read_dataset(hid_t file, const char *name, hid_t mtype, int rank, const hsize_t *want,
                        void *out)
{
    /* no chunk cache: each whole chunk is read straight into `out`, not copied through it */
    hid_t pl = H5Pcreate(H5P_DATASET_ACCESS);
    H5Pset_chunk_cache(pl, H5D_CHUNK_CACHE_NSLOTS_DEFAULT, 0, H5D_CHUNK_CACHE_W0_DEFAULT);
    hid_t d = H5Dopen2(file, name, pl);
    H5Pclose(pl);
    if (d < 0)
        return -1;
    hid_t sp = H5Dget_space(d);
    hsize_t dims[4] = {0};
    int ok = H5Sget_simple_extent_ndims(sp) == rank &&
             H5Sget_simple_extent_dims(sp, dims, NULL) == rank;
    for (int i = 0; ok && i < rank; i++)
        ok = dims[i] == want[i];
    ok = ok && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0;
    H5Sclose(sp);
    H5Dclose(d);
    return ok ? 0 : -1;
}

/* The dims of /dense (to size the record) and whether it is stored as float16. */
static int dense_shape(hid_t file, hsize_t dims[3], int *is_half)
{
    hid_t d = H5Dopen2(file, "/dense", H5P_DEFAULT);
    if (d < 0)
        return -1;
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
    int ok = H5Sget_simple_extent_ndims(sp) == 3 && H5Sget_simple_extent_dims(sp, dims, NULL) == 3;
    *is_half = H5Tget_size(t) == 2;
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(d);
    return ok ? 0 : -1;
}

static int featcache_get_unlocked(struct hx_featcache *c, const char *id,
                                  struct hx_dense_feats *out)
{
    char path[1400];
    int rc = entry_path(c, id, path, sizeof path);
    memset(out, 0, sizeof *out);
    if (rc)
        return rc;
    if (access(path, F_OK)) {
        c->misses++;
        return HX_ENOTFOUND;
    }
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), ht = -1;
    uint16_t *half = NULL;
    int32_t *wins = NULL;
    int valid = 0;
    int64_t a[6];
    hsize_t dd[3];
    int is_half = 0;
    if (file < 0 || dense_shape(file, dd, &is_half) ||
        read_attr_i64(file, "version", &a[0]) || a[0] != FORMAT_VERSION ||
        read_attr_i64(file, "img_h", &a[1]) || read_attr_i64(file, "img_w", &a[2]) ||
        read_attr_i64(file, "view_h", &a[3]) || read_attr_i64(file, "view_w", &a[4]) ||
        read_attr_i64(file, "checksum", &a[5]))
        goto done;
    if ((rc = hx_dense_feats_alloc_unset(out, (int)dd[0], (int)dd[1], (int)dd[2])))
        goto done;
    out->img_h = (int)a[1], out->img_w = (int)a[2], out->view_h = (int)a[3], out->view_w = (int)a[4];
    size_t nd = (size_t)dd[0] * dd[1] * dd[2];
    hsize_t pd[2] = {dd[0], dd[2]}, wd[2] = {dd[0], 6};
    wins = hx_malloc(sizeof(int32_t) * 6 * (size_t)dd[0], "window table");
    if (!wins) {
        rc = HX_ENOMEM;
        goto done;
    }
    const void *dense_bytes = out->dense;
    size_t dense_len = nd * sizeof(float);
    if (is_half) {
        ht = half_type();
        half = hx_malloc(nd * sizeof *half, "float16 tokens");
        if (!half) {
            rc = HX_ENOMEM;
            goto done;
        }
        if (read_dataset(file, "/dense", ht, 3, dd, half))
            goto done;
        for (size_t i = 0; i < nd; i++)
            out->dense[i] = hx_f16_to_f32(half[i]);
        dense_bytes = half, dense_len = nd * sizeof *half;
    } else if (read_dataset(file, "/dense", H5T_NATIVE_FLOAT, 3, dd, out->dense)) {
        goto done;
    }
    if (read_dataset(file, "/pooled", H5T_NATIVE_FLOAT, 2, pd, out->pooled) ||
        read_dataset(file, "/windows", H5T_NATIVE_INT32, 2, wd, wins))
        goto done;
    for (int w = 0; w < out->nw; w++) {
        const int32_t *r = wins + 6 * w;
        out->win[w] = (struct hx_window){r[0], r[1], r[2], r[3]};
        out->grid[2 * w] = r[4], out->grid[2 * w + 1] = r[5];
    }
    valid = (uint64_t)a[5] == checksum(out, dense_bytes, dense_len, wins);
done:
    if (ht >= 0)
        H5Tclose(ht);
    if (file >= 0)
        H5Fclose(file);
    free(half);
    free(wins);
    if (rc) {
        hx_dense_feats_free(out);
        return rc;
    }
    if (!valid) {
        hx_dense_feats_free(out);
        c->corrupt++;
        unlink(path); /* recomputed by the caller */
        return HX_ENOTFOUND;
    }
    c->hits++;
    return 0;
}

/* ------------------------------------------------------------------ text embeddings */

struct text_table {
    int n, E;
    char **texts;
    float *emb; /* [n, E] */
};

static void text_table_free(struct text_table *t)
{
    for (int i = 0; i < t->n; i++)
        free(t->texts[i]);
    free(t->texts);
    free(t->emb);
    memset(t, 0, sizeof *t);
}

static uint64_t text_checksum(const struct text_table *t)
{
    uint64_t h = hx_hash64(&t->n, sizeof t->n, 7);
    for (int i = 0; i < t->n; i++)
        h = hx_hash64(t->texts[i], strlen(t->texts[i]) + 1, h);
    return hx_hash64(t->emb, sizeof(float) * (size_t)t->n * t->E, h);
}

/* Read the table; a missing, foreign-dimension or corrupt file gives an empty table. */
static void text_table_read(const char *path, int E, struct text_table *t)
{
    memset(t, 0, sizeof *t);
    t->E = E;
    if (access(path, F_OK))
        return;
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return;
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    hid_t d = H5Dopen2(file, "/texts", H5P_DEFAULT);
    int64_t sum = 0;
    int ok = d >= 0 && read_attr_i64(file, "checksum", &sum) == 0;
    hsize_t n = 0, ed[2] = {0, 0};
    if (ok) {
        hid_t sp = H5Dget_space(d);
        ok = H5Sget_simple_extent_ndims(sp) == 1 && H5Sget_simple_extent_dims(sp, &n, NULL) == 1;
        H5Sclose(sp);
    }
    if (ok && n > 0) {
        t->texts = calloc(n, sizeof *t->texts);
        char **raw = calloc(n, sizeof *raw);
        ed[0] = n, ed[1] = (hsize_t)E;
        t->emb = malloc(sizeof(float) * n * E);
        ok = t->texts && raw && t->emb &&
             H5Dread(d, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) >= 0;
        if (ok) {
            t->n = (int)n;
            for (hsize_t i = 0; i < n; i++)
                t->texts[i] = strdup(raw[i] ? raw[i] : "");
            hid_t sp = H5Dget_space(d);
            H5Dvlen_reclaim(st, sp, H5P_DEFAULT, raw);
            H5Sclose(sp);
            ok = read_dataset(file, "/emb", H5T_NATIVE_FLOAT, 2, ed, t->emb) == 0 &&
                 (uint64_t)sum == text_checksum(t);
        }
        free(raw);
    }
    if (d >= 0)
        H5Dclose(d);
    H5Tclose(st);
    H5Fclose(file);
    if (!ok)
        text_table_free(t), t->E = E;
}

static int text_table_write(const char *path, const struct text_table *t)
{
    char tmp[1500];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0)
        return hx_err(HX_EIO, "cannot create %s", tmp);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    hsize_t n = (hsize_t)t->n, ed[2] = {n, (hsize_t)t->E};
    int bad = write_dataset(file, "/texts", st, st, 1, &n, NULL, t->texts) ||
              write_dataset(file, "/emb", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, ed, NULL, t->emb) ||
              write_attr_i64(file, "version", FORMAT_VERSION) ||
              write_attr_i64(file, "checksum", (int64_t)text_checksum(t));
    H5Tclose(st);
    if (H5Fclose(file) < 0 || bad || rename(tmp, path)) {
        unlink(tmp);
        return hx_err(HX_EIO, "cannot write %s", path);
    }
    return 0;
}

static int text_table_write_locked(const char *path, const struct text_table *t)
{
    pthread_mutex_lock(&h5_lock);
    int rc = text_table_write(path, t);
    pthread_mutex_unlock(&h5_lock);
    return rc;
}

/* Open-addressing index text -> row. */
struct text_index {
    size_t cap;
    int *slot; /* row + 1, 0 = empty */
};

static size_t text_hash(const char *s) { return (size_t)hx_hash64(s, strlen(s), 3); }

/* An empty index with room for n texts. */
static int index_build(struct text_index *ix, char *const *texts, int n)
{
    (void)texts;
    ix->cap = 16;
    while (ix->cap < 2 * (size_t)n + 16)
        ix->cap *= 2;
    ix->slot = calloc(ix->cap, sizeof *ix->slot);
    return ix->slot ? 0 : HX_ENOMEM;
}

/* Insert row i (texts[i]) unless an equal text is there; the table must have room. */
static void index_insert(struct text_index *ix, char *const *texts, int i)
{
    size_t h = text_hash(texts[i]) & (ix->cap - 1);
    while (ix->slot[h] && strcmp(texts[ix->slot[h] - 1], texts[i]))
        h = (h + 1) & (ix->cap - 1);
    if (!ix->slot[h])
        ix->slot[h] = i + 1;
}

static int index_find(const struct text_index *ix, char *const *texts, const char *s)
{
    size_t h = text_hash(s) & (ix->cap - 1);
    while (ix->slot[h]) {
        if (!strcmp(texts[ix->slot[h] - 1], s))
            return ix->slot[h] - 1;
        h = (h + 1) & (ix->cap - 1);
    }
    return -1;
}

/* The table at path (empty when missing or damaged), with room for n more texts and an index
 * of its own that will not need to grow while they are added. */
static int table_load(const char *path, int E, int n, struct text_table *t,
                      struct text_index *ix)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    pthread_mutex_lock(&h5_lock);
    text_table_read(path, E, t);
    pthread_mutex_unlock(&h5_lock);
    char **grow = realloc(t->texts, sizeof *grow * (size_t)(t->n + n + 1));
    if (!grow)
        return HX_ENOMEM;
    t->texts = grow;
    int rc = index_build(ix, t->texts, t->n + n);
    for (int i = 0; !rc && i < t->n; i++)
        index_insert(ix, t->texts, i);
    return rc;
}

int hx_text_cache_embed(const char *cache_dir, const char *fingerprint, int E,
                        hx_text_encode_fn encode, void *ctx, const char *const *texts, int n,
                        float *out, int *computed)
{
    char dir[1100], path[1300], lock[1300];
    int rc, fd = -1;
    struct text_table t = {0};
    struct text_index ix = {0};
    if (computed)
        *computed = 0;
    snprintf(dir, sizeof dir, "%s/text", cache_dir);
    if ((rc = hx_mkdirs(dir)))
        return rc;
    snprintf(path, sizeof path, "%s/%s.h5", dir, fingerprint);
    snprintf(lock, sizeof lock, "%s/%s.lock", dir, fingerprint);
    fd = open(lock, O_RDWR | O_CREAT, 0666);
    if (fd < 0 || flock(fd, LOCK_EX)) {
        rc = hx_err(HX_EIO, "cannot lock %s: %s", lock, strerror(errno));
        goto done;
    }
    if ((rc = table_load(path, E, n, &t, &ix)))
        goto done;
    int old = t.n, m = 0;
    for (int i = 0; i < n; i++)
        if (index_find(&ix, t.texts, texts[i]) < 0) {
            t.texts[old + m] = strdup(texts[i]);
            if (!t.texts[old + m]) {
                rc = HX_ENOMEM;
                goto done;
            }
            index_insert(&ix, t.texts, old + m);
            t.n = old + ++m; /* owned from here on */
        }
    if (m > 0) {
        float *grow_e = realloc(t.emb, sizeof *grow_e * (size_t)t.n * E);
        if (!grow_e) {
            rc = HX_ENOMEM;
            goto done;
        }
        t.emb = grow_e;
        if ((rc = encode(ctx, (const char *const *)t.texts + old, m, t.emb + (size_t)old * E)) ||
            (rc = text_table_write_locked(path, &t)))
            goto done;
    }
    for (int i = 0; i < n; i++) {
        int r = index_find(&ix, t.texts, texts[i]);
        if (r < 0) {
            rc = hx_err(HX_EINTERNAL, "text cache lost '%s'", texts[i]);
            goto done;
        }
        memcpy(out + (size_t)i * E, t.emb + (size_t)r * E, sizeof(float) * E);
    }
    if (computed)
        *computed = m;
done:
    if (fd >= 0)
        close(fd); /* releases the lock */
    free(ix.slot);
    text_table_free(&t);
    return rc;
}

int hx_text_cache_missing(const char *cache_dir, const char *fingerprint, int E,
                          const char *const *texts, int n, int *missing)
{
    char path[1300];
    struct text_table t;
    struct text_index ix = {0};
    snprintf(path, sizeof path, "%s/text/%s.h5", cache_dir, fingerprint);
    /* the file is replaced by rename: reading it needs no lock file */
    int rc = table_load(path, E, n, &t, &ix), old = t.n;
    if (!rc) {
        *missing = 0;
        for (int i = 0; i < n; i++) /* borrowed pointers past old: counted, never freed */
            if (index_find(&ix, t.texts, texts[i]) < 0) {
                t.texts[old + *missing] = (char *)texts[i];
                index_insert(&ix, t.texts, old + (*missing)++);
            }
    }
    free(ix.slot);
    text_table_free(&t);
    return rc;
}


int hx_featcache_put(struct hx_featcache *c, const char *id, const struct hx_dense_feats *f)
{
    pthread_mutex_lock(&h5_lock);
    int rc = featcache_put_unlocked(c, id, f);
    pthread_mutex_unlock(&h5_lock);
    return rc;
}

int hx_featcache_get(struct hx_featcache *c, const char *id, struct hx_dense_feats *out)
{
    pthread_mutex_lock(&h5_lock);
    int rc = featcache_get_unlocked(c, id, out);
    pthread_mutex_unlock(&h5_lock);
    return rc;
}
