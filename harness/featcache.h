/* The feature cache: dense image features and text embeddings in HDF5, so that a sweep
 * encodes each image and each text once.
 *
 * Layout under the cache directory (readable with h5py):
 *   features/<fingerprint>/<view>/<image id>.h5     one file per image (a '/' in an id is
 *                                                   written as "%2F")
 *     /dense    float32 or float16 [nw, T, E]  dense tokens of each window (not normalised);
 *                                              rows past a window's gh*gw are zero
 *     /pooled   float32 [nw, E]                pooled embedding of each window
 *     /windows  int32 [nw, 6]                  y1, y2, x1, x2, gh, gw of each window
 *     attributes on "/": version (2), img_h, img_w, view_h, view_w, checksum (a 64-bit
 *     hash of the three datasets' bytes as stored, with the dims)
 *   text/<fingerprint>.h5
 *     /texts    variable-length UTF-8 strings [n]
 *     /emb      float32 [n, E]                 projected text embeddings (not normalised)
 *     attributes: version, checksum
 * <fingerprint> names the backend weights and variant, <view> the preprocessing and window
 * geometry (see hx_view_key in protocol.h).
 *
 * Crash safety: every file is written under a temporary name in the same folder and renamed
 * into place, so a killed run leaves either the old file or the new one; a file whose
 * checksum does not match (corrupted, truncated) is treated as absent and rewritten. The
 * text file is read-merged-written under an exclusive flock on text/<fingerprint>.lock, so
 * two runs sharing a cache do not lose each other's entries; image files need no lock
 * (identical contents, atomic rename).
 *
 * Ownership: hx_feat_load fills a struct hx_dense_feats (free with hx_dense_feats_free). */
#ifndef HX_FEATCACHE_H
#define HX_FEATCACHE_H

#include "harness/protocol.h"

#include <stddef.h>

struct hx_featcache {
    char dir[1024];  /* <cache>/features/<fingerprint>/<view> */
    int f16;         /* store dense tokens as float16 */
    size_t hits, misses, corrupt;
};

/* The folder for one backend fingerprint and view key (made by the first put). */
int hx_featcache_open(struct hx_featcache *c, const char *cache_dir, const char *fingerprint,
                      const char *view, int f16);

/* Load the features of `id`: 0 on a hit; HX_ENOTFOUND when absent or invalid (a corrupt
 * file is counted, removed, and reported as absent); other errors for I/O failures. */
int hx_featcache_get(struct hx_featcache *c, const char *id, struct hx_dense_feats *out);

/* Store the features of `id` (atomically). */
int hx_featcache_put(struct hx_featcache *c, const char *id, const struct hx_dense_feats *f);

/* Whether `id` has a file (without validating it): for dry runs. */
int hx_featcache_has(const struct hx_featcache *c, const char *id);

/* Text embeddings through the cache: out [n, E] for texts[n]. Texts not in
 * text/<fingerprint>.h5 are encoded with one call of `encode` (duplicates once) and added
 * to it. *computed (may be NULL) receives how many were encoded. */
typedef int (*hx_text_encode_fn)(void *ctx, const char *const *texts, int n, float *out);
/* How many distinct texts of texts[n] the cache lacks (read only: for dry runs). */
int hx_text_cache_missing(const char *cache_dir, const char *fingerprint, int E,
                          const char *const *texts, int n, int *missing);
int hx_text_cache_embed(const char *cache_dir, const char *fingerprint, int E,
                        hx_text_encode_fn encode, void *ctx, const char *const *texts, int n,
                        float *out, int *computed);

/* A fingerprint of the model in `dir` without loading it: a hash of config.json, the
 * safetensors header, the file size and 64 sampled 4 KB blocks of its data, as 16 hex
 * digits (out >= 17 bytes). Any change of weights, shapes or config changes it (a change
 * confined to unsampled bytes of an otherwise identical file would not: acceptable for a
 * cache key, and `--no-cache` exists for paranoia). */
int hx_model_fingerprint(const char *dir, char *out, size_t len);

/* A 64-bit hash of bytes (not cryptographic; for checksums and cache keys). */
uint64_t hx_hash64(const void *data, size_t n, uint64_t seed);

#endif
