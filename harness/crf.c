/* Dense CRF: permutohedral lattice and mean field with pydensecrf's arithmetic (see crf.h).
 *
 * Layout: inside, label vectors are pixel-major, Q[n][W] with W >= labels lanes (the
 * reference stores Q as an Eigen column-major [labels x N] matrix, i.e. the same order).
 * Lattice values are vertex-major, val[vertex][W], so one splat/blur/slice step moves whole
 * label vectors. Vertex 0 is a zero vertex that stands for "no such neighbour"; lattice
 * vertex v is stored at index v + 1.
 *
 * Float arithmetic is written in the reference's order and with its roundings. There must be
 * no fused multiply-add: the build's -std=c11 turns contraction off (GCC contracts only in its
 * GNU modes), so builds for CPUs with FMA give the same numbers (checked with -march=native). */
#include "harness/crf.h"

#include "harness/error.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define LAT_MAX_D 7 /* feature dimensions a lattice key holds (8 int16, the last one unused) */

struct lattice {
    int d;          /* feature dimension: 2 (Gaussian) or 5 (bilateral) */
    int n;          /* pixels */
    int m;          /* lattice vertices, the padding vertices included */
    float w;        /* Potts weight */
    int32_t *off;   /* [n][d+1] vertex index + 1 of each of the pixel's simplex corners */
    float *bary;    /* [n][d+1] barycentric weights of those corners */
    int32_t *nb;    /* [d+1][m][2] blur neighbours (index + 1; 0: missing) along each axis */
    int reach;      /* largest |neighbour - vertex| in vertex indices */
    float *nrm;     /* [n] 1/sqrt(K(1) + 1e-20) */
};

struct hx_crf {
    int w, h, labels, threads, nk;
    float *negu; /* [n][labels] minus the unary energy */
    struct lattice k[HX_CRF_MAX_KERNELS];
};

/* Large buffers: 2 MB aligned and advised as huge pages, so that first touching them costs a
 * few page faults instead of one per 4 kB (that dominated the lattice construction of a cold
 * process). Freed with free(). */
#define BIG_BYTES ((size_t)1 << 21)

static void *big_malloc(size_t bytes, const char *what)
{
    if (bytes < BIG_BYTES)
        return hx_malloc(bytes, what);
    void *p = NULL;
    size_t rounded = (bytes + BIG_BYTES - 1) & ~(BIG_BYTES - 1);
    if (posix_memalign(&p, BIG_BYTES, rounded)) {
        hx_err(HX_ENOMEM, "out of memory for %s (%zu bytes)", what, bytes);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}

static void *big_calloc(size_t count, size_t size, const char *what)
{
    if (size && count > SIZE_MAX / size) {
        hx_err(HX_ENOMEM, "out of memory for %s", what);
        return NULL;
    }
    if (count * size < BIG_BYTES)
        return hx_calloc(count, size, what);
    void *p = big_malloc(count * size, what);
    if (p)
        memset(p, 0, count * size);
    return p;
}

/* ------------------------------------------------------------------------------------------ */
/* Hash table of lattice keys (d int16 coordinates, zero-padded to 8), open addressing with
 * linear probing; vertices are numbered in insertion order. */

struct vkey {
    int16_t c[8];
};

struct vhash {
    uint32_t *slot;    /* [cap] vertex + 1, 0 = empty */
    struct vkey *keys; /* [max] keys by vertex */
    size_t cap, n, max;
};

static inline uint64_t key_hash(const struct vkey *k)
{
    uint64_t a, b;
    memcpy(&a, k->c, 8);
    memcpy(&b, k->c + 4, 8);
    uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full;
    h ^= h >> 31;
    h *= 0xD6E8FEB86659FD93ull;
    return h ^ (h >> 32);
}

static inline int key_eq(const struct vkey *a, const struct vkey *b)
{
    uint64_t a0, a1, b0, b1;
    memcpy(&a0, a->c, 8);
    memcpy(&a1, a->c + 4, 8);
    memcpy(&b0, b->c, 8);
    memcpy(&b1, b->c + 4, 8);
    return a0 == b0 && a1 == b1;
}

static int vhash_init(struct vhash *t, size_t expect, size_t max)
{
    t->cap = 1024;
    while (t->cap < 2 * expect)
        t->cap *= 2;
    t->n = 0;
    t->max = max;
    t->slot = big_calloc(t->cap, sizeof *t->slot, "crf lattice hash table");
    t->keys = big_malloc(max * sizeof *t->keys, "crf lattice keys");
    return t->slot && t->keys ? 0 : HX_ENOMEM;
}

static void vhash_free(struct vhash *t)
{
    free(t->slot);
    free(t->keys);
}

static int vhash_grow(struct vhash *t)
{
    size_t cap = t->cap * 2, mask = cap - 1;
    uint32_t *s = big_calloc(cap, sizeof *s, "crf lattice hash table");
    if (!s)
        return HX_ENOMEM;
    for (size_t v = 0; v < t->n; v++) {
        size_t h = key_hash(&t->keys[v]) & mask;
        while (s[h])
            h = (h + 1) & mask;
        s[h] = (uint32_t)(v + 1);
    }
    free(t->slot);
    t->slot = s;
    t->cap = cap;
    return 0;
}

/* Vertex of `k`, or -1 when absent. */
static inline int32_t vhash_find(const struct vhash *t, const struct vkey *k)
{
    size_t mask = t->cap - 1, h = key_hash(k) & mask;
    for (;;) {
        uint32_t e = t->slot[h];
        if (!e)
            return -1;
        if (key_eq(&t->keys[e - 1], k))
            return (int32_t)(e - 1);
        h = (h + 1) & mask;
    }
}

/* Vertex of `k`, inserted when absent; negative hx_status on allocation failure. */
static inline int32_t vhash_insert(struct vhash *t, const struct vkey *k)
{
    if (2 * t->n >= t->cap) {
        int rc = vhash_grow(t);
        if (rc)
            return rc;
    }
    size_t mask = t->cap - 1, h = key_hash(k) & mask;
    for (;;) {
        uint32_t e = t->slot[h];
        if (!e)
            break;
        if (key_eq(&t->keys[e - 1], k))
            return (int32_t)(e - 1);
        h = (h + 1) & mask;
    }
    if (t->n >= t->max)
        return hx_err(HX_EINTERNAL, "crf: lattice has more vertices than (d+1) x points");
    t->keys[t->n] = *k;
    t->slot[h] = (uint32_t)(++t->n);
    return (int32_t)(t->n - 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Lattice construction: permutohedral.cpp, the SSE variant of Permutohedral::init. */

static void lattice_free(struct lattice *L)
{
    free(L->off);
    free(L->bary);
    free(L->nb);
    free(L->nrm);
    memset(L, 0, sizeof *L);
}

/* Simplex of one feature vector f[d]: the remainder-0 corner rem0[d+1], the rank of each
 * coordinate rank[d+1] and the barycentric weights bary[d+1]. */
static inline void lattice_simplex(int d, const float *f, const float *scale, float *rem0,
                                   float *rank, float *bary)
{
    float el[LAT_MAX_D + 1], b[LAT_MAX_D + 2];
    const float inv = 1.0f / (float)(d + 1), dp1 = (float)(d + 1);

    /* elevate: y = E f */
    float sm = 0.0f;
    for (int j = d; j > 0; j--) {
        float cf = f[j - 1] * scale[j - 1];
        el[j] = sm - (float)j * cf;
        sm += cf;
    }
    el[0] = sm;

    /* closest 0-coloured point (round half to even, as cvtps2dq does) */
    float sum = 0.0f;
    for (int i = 0; i <= d; i++) {
        float v = rintf(inv * el[i]);
        rem0[i] = v * dp1;
        sum += v;
    }

    /* rank of each coordinate's remainder */
    for (int i = 0; i <= d; i++)
        rank[i] = 0.0f;
    for (int i = 0; i < d; i++) {
        float di = el[i] - rem0[i];
        for (int j = i + 1; j <= d; j++) {
            float dj = el[j] - rem0[j];
            float c = di < dj ? 1.0f : 0.0f;
            rank[i] += c;
            rank[j] += 1.0f - c;
        }
    }

    /* back onto the plane */
    for (int i = 0; i <= d; i++) {
        rank[i] += sum;
        float add = rank[i] < 0.0f ? dp1 : 0.0f;
        float sub = rank[i] >= dp1 ? dp1 : 0.0f;
        rank[i] += add - sub;
        rem0[i] += add - sub;
    }

    /* barycentric coordinates */
    for (int i = 0; i <= d + 1; i++)
        b[i] = 0.0f;
    for (int i = 0; i <= d; i++) {
        float v = (el[i] - rem0[i]) * inv;
        int p = (int)((float)d - rank[i]);
        b[p] += v;
        b[p + 1] -= v;
    }
    b[0] += 1.0f + b[d + 1];
    for (int r = 0; r <= d; r++)
        bary[r] = b[r];
}

/* Simplex of one feature vector f[d]: the d+1 keys and barycentric weights. */
static void lattice_point(int d, const float *f, const float *scale, struct vkey *keys,
                          float *bary)
{
    float rem0[LAT_MAX_D + 1], rank[LAT_MAX_D + 1];
    lattice_simplex(d, f, scale, rem0, rank, bary);
    /* corners: remainder-r vertex = rem0 + canonical[r][rank] */
    for (int r = 0; r <= d; r++) {
        struct vkey k;
        memset(&k, 0, sizeof k);
        for (int i = 0; i < d; i++) {
            int ri = (int)rank[i];
            int canon = ri <= d - r ? r : r - (d + 1);
            k.c[i] = (int16_t)(int32_t)(rem0[i] + (float)canon);
        }
        keys[r] = k;
    }
}

/* One width-1 filter of `in` [n] into `out` [n] with the reference's seqCompute arithmetic;
 * val, nval: [m+1] scratch. Used for the normalisation. */
static void lattice_filter1(const struct lattice *L, const float *in, float *out, float *val,
                            float *nval)
{
    const int d = L->d, dp = d + 1, n = L->n, m = L->m;
    const float alpha = 1.0f / (1.0f + powf(2.0f, (float)-d));
    memset(val, 0, (size_t)(m + 1) * sizeof *val);
    memset(nval, 0, (size_t)(m + 1) * sizeof *nval);
    for (int i = 0; i < n; i++)
        for (int r = 0; r < dp; r++)
            val[L->off[(size_t)i * dp + r]] += L->bary[(size_t)i * dp + r] * in[i];
    for (int j = 0; j <= d; j++) {
        const int32_t *nb = L->nb + (size_t)j * m * 2;
        for (int v = 0; v < m; v++)
            nval[v + 1] = val[v + 1] + 0.5f * (val[nb[2 * v]] + val[nb[2 * v + 1]]);
        float *t = val;
        val = nval;
        nval = t;
    }
    for (int i = 0; i < n; i++) {
        float acc = 0.0f;
        for (int r = 0; r < dp; r++)
            acc += L->bary[(size_t)i * dp + r] * val[L->off[(size_t)i * dp + r]] * alpha;
        out[i] = acc;
    }
}

/* ---- packed keys: the fast path ----
 * When interval bounds of every key coordinate (from the features' ranges, with a margin for
 * rounding, simplex corners and blur neighbours) fit in 64 bits together and stay inside the
 * int16 range (so the reference's short arithmetic never wraps), a key is packed into one
 * uint64 (field i holds key[i] - lo[i]). A neighbour is then the key plus a constant per axis,
 * and a hash slot holds the whole key next to its vertex, so a probe touches one cache line. */

struct pslot {
    uint64_t key;
    uint32_t v1; /* vertex + 1; 0 = empty */
    uint32_t pad;
};

struct pcodec {
    int lo[LAT_MAX_D], shift[LAT_MAX_D];
    uint64_t span[LAT_MAX_D]; /* hi - lo */
};

/* Field layout for features f [n][d], or -1 when the keys do not fit. */
static int pcodec_init(struct pcodec *pc, const float *f, int n, int d, const float *scale)
{
    float fmin[LAT_MAX_D], fmax[LAT_MAX_D];
    double cmin[LAT_MAX_D], cmax[LAT_MAX_D];
    for (int k = 0; k < d; k++)
        fmin[k] = fmax[k] = 0.0f; /* the padding points are zero */
    for (int i = 0; i < n; i++)
        for (int k = 0; k < d; k++) {
            float x = f[(size_t)i * d + k];
            fmin[k] = x < fmin[k] ? x : fmin[k];
            fmax[k] = x > fmax[k] ? x : fmax[k];
        }
    for (int k = 0; k < d; k++) {
        if (!isfinite(fmin[k]) || !isfinite(fmax[k]))
            return -1;
        cmin[k] = (double)fmin[k] * scale[k];
        cmax[k] = (double)fmax[k] * scale[k];
    }
    const double margin = 5.0 * (d + 1) + d + 2;
    int bits = 0;
    for (int i = 0; i < d; i++) {
        /* el[i] = sum_{k >= i} cf_k - i * cf_{i-1}  (el[0] = sum of all cf_k) */
        double lo = 0, hi = 0;
        for (int k = i; k < d; k++)
            lo += cmin[k], hi += cmax[k];
        if (i > 0)
            lo -= i * cmax[i - 1], hi -= i * cmin[i - 1];
        lo = floor(lo - margin);
        hi = ceil(hi + margin);
        if (lo < -32000 || hi > 32000)
            return -1;
        pc->lo[i] = (int)lo;
        pc->span[i] = (uint64_t)(hi - lo);
        pc->shift[i] = bits;
        int b = 1;
        while ((1ull << b) <= pc->span[i])
            b++;
        bits += b;
    }
    return bits <= 64 ? 0 : -1;
}

static inline size_t phash(uint64_t key, int bits)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

struct ptable {
    struct pslot *slot; /* [1 << bits] */
    uint64_t *keys;     /* [max] by vertex */
    int bits;
    size_t n, max;
};

static int ptable_grow(struct ptable *t)
{
    int bits = t->bits + 1;
    size_t cap = (size_t)1 << bits;
    struct pslot *s = big_calloc(cap, sizeof *s, "crf lattice hash table");
    if (!s)
        return HX_ENOMEM;
    for (size_t v = 0; v < t->n; v++) {
        size_t h = phash(t->keys[v], bits);
        while (s[h].v1)
            h = (h + 1) & (cap - 1);
        s[h].key = t->keys[v];
        s[h].v1 = (uint32_t)(v + 1);
    }
    free(t->slot);
    t->slot = s;
    t->bits = bits;
    return 0;
}

static inline int32_t ptable_find(const struct ptable *t, uint64_t key)
{
    size_t mask = ((size_t)1 << t->bits) - 1, h = phash(key, t->bits);
    for (;;) {
        const struct pslot *e = &t->slot[h];
        if (!e->v1)
            return -1;
        if (e->key == key)
            return (int32_t)(e->v1 - 1);
        h = (h + 1) & mask;
    }
}

static inline int32_t ptable_insert(struct ptable *t, uint64_t key)
{
    if (2 * t->n >= ((size_t)1 << t->bits)) {
        int rc = ptable_grow(t);
        if (rc)
            return rc;
    }
    size_t mask = ((size_t)1 << t->bits) - 1, h = phash(key, t->bits);
    for (;;) {
        struct pslot *e = &t->slot[h];
        if (!e->v1)
            break;
        if (e->key == key)
            return (int32_t)(e->v1 - 1);
        h = (h + 1) & mask;
    }
    if (t->n >= t->max)
        return hx_err(HX_EINTERNAL, "crf: lattice has more vertices than (d+1) x points");
    t->keys[t->n] = key;
    t->slot[h].key = key;
    t->slot[h].v1 = (uint32_t)(++t->n);
    return (int32_t)(t->n - 1);
}

#define BUILD_AHEAD 8 /* hash slots fetched this many points (or vertices) ahead */
#define SIMPLEX_LANES 8
#define BUILD_CHUNK 4096 /* points per chunk of the lattice construction (one thread) */

/* lattice_simplex for up to SIMPLEX_LANES points at once (structure of arrays, lanes
 * innermost, so the loops vectorise), then packed corners per point. Same arithmetic as
 * lattice_simplex, with rint(x) as (x + 1.5 * 2^23) - 1.5 * 2^23 (round half to even, exact
 * for |x| < 2^22, which the packing bounds guarantee). The barycentric weights come from the
 * ranks' permutation: weight r is v[rank d-r] - v[rank d-r+1], which equals the reference's
 * scattered += and -= whatever their order. Returns -1 when a point does not fit. */
static int simplex_block_packed(int d, const float *f, int i0, int cnt, int n,
                                const float *scale, const struct pcodec *pc, uint64_t ones,
                                uint64_t *keys, float *bary)
{
    enum { LN = SIMPLEX_LANES };
    float fe[LAT_MAX_D][LN], el[LAT_MAX_D + 1][LN], rem0[LAT_MAX_D + 1][LN];
    float rank[LAT_MAX_D + 1][LN], sum[LN], sm[LN];
    const float inv = 1.0f / (float)(d + 1), dp1 = (float)(d + 1), magic = 12582912.0f;
    const int dp = d + 1;

    for (int k = 0; k < d; k++)
        for (int l = 0; l < LN; l++)
            fe[k][l] = l < cnt && i0 + l < n ? f[(size_t)(i0 + l) * d + k] : 0.0f;
    for (int l = 0; l < LN; l++)
        sm[l] = 0.0f, sum[l] = 0.0f;
    for (int j = d; j > 0; j--)
        for (int l = 0; l < LN; l++) {
            float cf = fe[j - 1][l] * scale[j - 1];
            el[j][l] = sm[l] - (float)j * cf;
            sm[l] += cf;
        }
    for (int l = 0; l < LN; l++)
        el[0][l] = sm[l];
    for (int i = 0; i <= d; i++)
        for (int l = 0; l < LN; l++) {
            float v = (inv * el[i][l] + magic) - magic;
            rem0[i][l] = v * dp1;
            sum[l] += v;
            rank[i][l] = 0.0f;
        }
    for (int i = 0; i < d; i++)
        for (int j = i + 1; j <= d; j++)
            for (int l = 0; l < LN; l++) {
                float c = el[i][l] - rem0[i][l] < el[j][l] - rem0[j][l] ? 1.0f : 0.0f;
                rank[i][l] += c;
                rank[j][l] += 1.0f - c;
            }
    for (int i = 0; i <= d; i++)
        for (int l = 0; l < LN; l++) {
            float r = rank[i][l] + sum[l];
            float add = r < 0.0f ? dp1 : 0.0f;
            float sub = r >= dp1 ? dp1 : 0.0f;
            rank[i][l] = r + (add - sub);
            rem0[i][l] += add - sub;
            el[i][l] = (el[i][l] - rem0[i][l]) * inv; /* el now holds v */
        }

    for (int l = 0; l < cnt; l++) {
        uint64_t *k = keys + (size_t)l * dp;
        float *b = bary + (size_t)l * dp;
        int perm[LAT_MAX_D + 1];
        unsigned seen = 0, out = 0;
        uint64_t base = 0;
        for (int i = 0; i <= d; i++) {
            int ri = (int)rank[i][l];
            out |= (unsigned)ri > (unsigned)d;
            ri &= 7; /* keeps the index in bounds; a bad rank fails the checks below */
            seen |= 1u << ri;
            perm[ri] = i;
        }
        for (int i = 0; i < d; i++) {
            int64_t x = (int64_t)rem0[i][l] - pc->lo[i];
            out |= x < dp || x > (int64_t)pc->span[i] - dp;
            base += (uint64_t)x << pc->shift[i];
        }
        if (out || seen != (1u << dp) - 1)
            return -1;
        k[0] = base;
        for (int r = 1; r <= d; r++) {
            int i = perm[d - r + 1];
            k[r] = k[r - 1] + ones - (i < d ? (uint64_t)dp << pc->shift[i] : 0);
        }
        for (int r = 1; r <= d; r++)
            b[r] = el[perm[d - r]][l] - el[perm[d - r + 1]][l];
        b[0] = el[perm[d]][l] + (1.0f + -el[perm[0]][l]);
    }
    return 0;
}

struct build_job {
    const float *f;
    const float *scale;
    const struct pcodec *pc;
    uint64_t ones, d1[LAT_MAX_D + 1];
    int n, d, p0, p1, bad;
    uint64_t *keys; /* [total][d+1] */
    float *bary;    /* [total][d+1] */
    const struct ptable *t;
    int32_t *nb;
    int m;
};

static void *build_simplices(void *arg)
{
    struct build_job *j = arg;
    const int dp = j->d + 1;
    for (int i = j->p0; i < j->p1 && !j->bad; i += SIMPLEX_LANES) {
        int cnt = j->p1 - i < SIMPLEX_LANES ? j->p1 - i : SIMPLEX_LANES;
        if (simplex_block_packed(j->d, j->f, i, cnt, j->n, j->scale, j->pc, j->ones,
                                 j->keys + (size_t)i * dp, j->bary + (size_t)i * dp))
            j->bad = 1;
    }
    return NULL;
}

/* Blur neighbours of vertices [p0, p1) along every axis. */
static void *build_neighbours(void *arg)
{
    struct build_job *j = arg;
    const struct ptable *t = j->t;
    for (int a = 0; a <= j->d; a++) {
        /* n1 = key - 1 in every coordinate, + d at coordinate a (a < d); n2 = key - (n1 - key) */
        const uint64_t d1 = j->d1[a];
        int32_t *nb = j->nb + (size_t)a * j->m * 2;
        for (int v = j->p0; v < j->p1; v++) {
            if (v + BUILD_AHEAD < j->p1) {
                __builtin_prefetch(&t->slot[phash(t->keys[v + BUILD_AHEAD] + d1, t->bits)], 0);
                __builtin_prefetch(&t->slot[phash(t->keys[v + BUILD_AHEAD] - d1, t->bits)], 0);
            }
            nb[2 * v] = ptable_find(t, t->keys[v] + d1) + 1;
            nb[2 * v + 1] = ptable_find(t, t->keys[v] - d1) + 1;
        }
    }
    return NULL;
}

/* Run fn on jobs[0..nt) (jobs[0] on the calling thread); a thread that cannot be started
 * leaves its job to the calling thread. */
static void run_jobs(void *(*fn)(void *), struct build_job *jobs, int nt)
{
    pthread_t tid[HX_CRF_MAX_THREADS];
    int ok[HX_CRF_MAX_THREADS] = {0};
    for (int t = 1; t < nt; t++)
        ok[t] = pthread_create(&tid[t], NULL, fn, &jobs[t]) == 0;
    fn(&jobs[0]);
    for (int t = 1; t < nt; t++) {
        if (ok[t])
            pthread_join(tid[t], NULL);
        else
            fn(&jobs[t]);
    }
}

/* Vertices and neighbours through packed keys, with `nt` threads for the simplices and the
 * neighbours (the insertion is sequential: vertices are numbered in point order). Returns 0,
 * 1 when the keys do not fit (the caller then uses the generic path), or a negative
 * hx_status. */
static int lattice_vertices_packed(struct lattice *L, const float *f, int n, int d,
                                   const float *scale, int nt)
{
    const int dp = d + 1, npad = (4 - n % 4) % 4, total = n + npad;
    struct pcodec pc;
    struct ptable t = {0};
    struct build_job jobs[HX_CRF_MAX_THREADS];
    uint64_t *keys = NULL;
    float *pbary = NULL;
    int rc = 0;
    if (pcodec_init(&pc, f, n, d, scale))
        return 1;
    if (nt < 1)
        nt = 1;
    t.max = (size_t)total * dp;
    t.bits = 10; /* grown as needed: wide kernels have far fewer vertices than points */
    while (((size_t)1 << t.bits) < (size_t)n / 4)
        t.bits++;
    t.slot = big_calloc((size_t)1 << t.bits, sizeof *t.slot, "crf lattice hash table");
    t.keys = big_malloc(t.max * sizeof *t.keys, "crf lattice keys");
    keys = big_malloc(((size_t)(nt > 1 ? total : BUILD_CHUNK) + SIMPLEX_LANES) * dp * sizeof *keys,
                      "crf lattice keys");
    pbary = hx_malloc((size_t)npad * dp * sizeof *pbary + 1, "crf lattice weights");
    if (!t.slot || !t.keys || !keys || !pbary) {
        rc = HX_ENOMEM;
        goto done;
    }
    uint64_t ones = 0;
    for (int i = 0; i < d; i++)
        ones += 1ull << pc.shift[i];

    /* Points go in chunks: 1. their simplices (threads share a chunk's points), 2. their
     * vertices, in point order (a point with the previous point's simplex reuses it). With
     * one thread the chunks are small, so that their keys stay in cache. */
    const int chunk = nt > 1 ? total : BUILD_CHUNK;
    int32_t pv[LAT_MAX_D + 1];
    uint64_t prev[LAT_MAX_D + 1];
    int have_prev = 0;
    for (int c0 = 0; c0 < total; c0 += chunk) {
        const int c1 = c0 + chunk < total ? c0 + chunk : total;
        const int e1 = c1 < n ? c1 : n; /* real points of the chunk: [c0, e1) */
        memset(jobs, 0, sizeof jobs);
        int ntc = e1 > c0 ? nt : 0;
        int per = ntc ? (e1 - c0 + ntc - 1) / ntc : 0;
        per = (per + SIMPLEX_LANES - 1) / SIMPLEX_LANES * SIMPLEX_LANES;
        for (int k = 0; k < ntc; k++) {
            struct build_job *j = &jobs[k];
            j->f = f, j->scale = scale, j->pc = &pc, j->ones = ones, j->n = n, j->d = d;
            j->p0 = c0 + k * per < e1 ? c0 + k * per : e1;
            j->p1 = c0 + (k + 1) * per < e1 ? c0 + (k + 1) * per : e1;
            j->keys = keys - (size_t)c0 * dp; /* indexed by point */
            j->bary = L->bary;
        }
        if (ntc)
            run_jobs(build_simplices, jobs, ntc);
        for (int k = 0; k < ntc; k++)
            if (jobs[k].bad) {
                rc = 1;
                goto done;
            }
        if (c1 > n) { /* the padding points (zero features), weights to a scratch row */
            static const float zero[SIMPLEX_LANES * LAT_MAX_D] = {0};
            if (simplex_block_packed(d, zero, 0, npad, npad, scale, &pc, ones,
                                     keys + (size_t)(n - c0) * dp, pbary)) {
                rc = 1;
                goto done;
            }
        }
        for (int i = c0; i < c1; i++) {
            const uint64_t *key = keys + (size_t)(i - c0) * dp;
            if (i + BUILD_AHEAD < c1)
                for (int r = 0; r < dp; r++)
                    __builtin_prefetch(&t.slot[phash(key[BUILD_AHEAD * dp + r], t.bits)], 1);
            int same = have_prev;
            for (int r = 0; r < dp && same; r++)
                same = key[r] == prev[r];
            if (!same) {
                for (int r = 0; r < dp; r++) {
                    int32_t v = ptable_insert(&t, key[r]);
                    if (v < 0) {
                        rc = v;
                        goto done;
                    }
                    pv[r] = v;
                    prev[r] = key[r];
                }
                have_prev = 1;
            }
            if (i < n)
                for (int r = 0; r < dp; r++)
                    L->off[(size_t)i * dp + r] = pv[r] + 1;
        }
    }

    /* 3. blur neighbours */
    const int m = (int)t.n;
    L->m = m;
    L->nb = big_malloc((size_t)dp * m * 2 * sizeof *L->nb, "crf lattice neighbours");
    if (!L->nb) {
        rc = HX_ENOMEM;
        goto done;
    }
    int ntn = m < 4096 ? 1 : nt;
    for (int k = 0; k < ntn; k++) {
        struct build_job *j = &jobs[k];
        for (int a = 0; a <= d; a++)
            j->d1[a] = (a < d ? (uint64_t)(d + 1) << pc.shift[a] : 0) - ones;
        j->t = &t, j->nb = L->nb, j->m = m;
        j->p0 = (int)((int64_t)m * k / ntn);
        j->p1 = (int)((int64_t)m * (k + 1) / ntn);
    }
    run_jobs(build_neighbours, jobs, ntn);
done:
    free(t.slot);
    free(t.keys);
    free(keys);
    free(pbary);
    if (rc) {
        free(L->nb);
        L->nb = NULL;
        L->m = 0;
    }
    return rc;
}

/* Build the lattice of features f [n][d] (d <= LAT_MAX_D), its blur neighbours and its
 * normalisation. */
static int lattice_build(struct lattice *L, const float *f, int n, int d, float w, int nt)
{
    int rc = 0;
    const int dp = d + 1;
    const int npad = (4 - n % 4) % 4; /* the SSE init pads the points to a multiple of 4 */
    struct vhash t = {0};
    float *ones = NULL, *scratch = NULL;
    float scale[LAT_MAX_D];
    struct vkey keys[LAT_MAX_D + 1];
    float bary[LAT_MAX_D + 1];

    memset(L, 0, sizeof *L);
    L->d = d;
    L->n = n;
    L->w = w;
    L->off = big_malloc((size_t)n * dp * sizeof *L->off, "crf lattice offsets");
    L->bary = big_malloc((size_t)n * dp * sizeof *L->bary, "crf lattice weights");
    L->nrm = big_malloc((size_t)n * sizeof *L->nrm, "crf normalisation");
    if (!L->off || !L->bary || !L->nrm) {
        rc = HX_ENOMEM;
        goto done;
    }
    const float inv_std = (float)(sqrt(2.0 / 3.0) * (double)dp);
    for (int i = 0; i < d; i++)
        scale[i] = (float)(1.0 / sqrt((double)((i + 2) * (i + 1))) * (double)inv_std);

    rc = lattice_vertices_packed(L, f, n, d, scale, nt);
    if (rc < 0)
        goto done;
    if (rc == 0)
        goto normalise;
    rc = 0;
    if ((rc = vhash_init(&t, (size_t)n, (size_t)(n + npad) * dp)))
        goto done;

    for (int i = 0; i < n + npad; i++) {
        static const float zero[LAT_MAX_D] = {0};
        lattice_point(d, i < n ? f + (size_t)i * d : zero, scale, keys, bary);
        for (int r = 0; r < dp; r++) {
            int32_t v = vhash_insert(&t, &keys[r]);
            if (v < 0) {
                rc = v;
                goto done;
            }
            if (i < n) {
                L->off[(size_t)i * dp + r] = v + 1;
                L->bary[(size_t)i * dp + r] = bary[r];
            }
        }
    }

    const int m = (int)t.n;
    L->m = m;
    L->nb = big_malloc((size_t)dp * m * 2 * sizeof *L->nb, "crf lattice neighbours");
    if (!L->nb) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int j = 0; j <= d; j++) {
        int32_t *nb = L->nb + (size_t)j * m * 2;
        for (int v = 0; v < m; v++) {
            struct vkey n1, n2;
            memset(&n1, 0, sizeof n1);
            memset(&n2, 0, sizeof n2);
            for (int k = 0; k < d; k++) {
                n1.c[k] = (int16_t)(t.keys[v].c[k] - 1);
                n2.c[k] = (int16_t)(t.keys[v].c[k] + 1);
            }
            if (j < d) {
                n1.c[j] = (int16_t)(t.keys[v].c[j] + d);
                n2.c[j] = (int16_t)(t.keys[v].c[j] - d);
            }
            nb[2 * v] = vhash_find(&t, &n1) + 1;
            nb[2 * v + 1] = vhash_find(&t, &n2) + 1;
        }
    }

normalise:
    L->reach = 0;
    for (int j = 0; j <= d; j++)
        for (int v = 0; v < L->m; v++)
            for (int e = 0; e < 2; e++) {
                int32_t u = L->nb[((size_t)j * L->m + v) * 2 + e];
                int dist = u ? abs(u - 1 - v) : 0;
                L->reach = dist > L->reach ? dist : L->reach;
            }

    /* normalisation: K(1) with the width-1 arithmetic, then 1/sqrt(. + 1e-20) in double */
    ones = big_malloc((size_t)n * sizeof *ones, "crf normalisation");
    scratch = big_malloc((size_t)2 * (L->m + 1) * sizeof *scratch, "crf lattice values");
    if (!ones || !scratch) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int i = 0; i < n; i++)
        ones[i] = 1.0f;
    lattice_filter1(L, ones, L->nrm, scratch, scratch + L->m + 1);
    for (int i = 0; i < n; i++)
        L->nrm[i] = (float)(1.0 / sqrt((double)L->nrm[i] + 1e-20));

done:
    vhash_free(&t);
    free(ones);
    free(scratch);
    if (rc)
        lattice_free(L);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The hot loops are also compiled for AVX2 (without FMA, which would change the roundings)
 * and chosen at load time on CPUs that have it; the arithmetic is the same on either. */
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__)) && \
    !defined(__SANITIZE_ADDRESS__)
#define HOT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HOT_CLONES
#endif

/* Lattice values are reached through index tables (scatter in the splat, neighbours in the
 * blur, gather in the slice): fetching them a few steps ahead hides most of the misses. */
#define PF_AHEAD 12
/* ... but only for lattices whose rows are reached far apart: a lattice that fits in cache,
 * or whose vertices follow the pixels closely (the blur's reach is short, as for the
 * Gaussian kernel), is read nearly in order, and there the prefetches cost more than the
 * misses they hide. */
#define PF_MIN_BYTES ((size_t)256 << 10)
#define LATTICE_BIG(lt, W)                                                                    \
    ((size_t)((lt)->m + 1) * (W) * sizeof(float) > 4 * PF_MIN_BYTES &&                        \
     (size_t)(lt)->reach * (W) * sizeof(float) > PF_MIN_BYTES)

static inline void prefetch_row(const float *p, int w, int write)
{
    if (write) {
        __builtin_prefetch(p, 1);
        if (w > 8)
            __builtin_prefetch(p + w - 1, 1);
    } else {
        __builtin_prefetch(p, 0);
        if (w > 8)
            __builtin_prefetch(p + w - 1, 0);
    }
    if (w > 24)
        __builtin_prefetch(p + 16, write);
}

/* ------------------------------------------------------------------------------------------ */
/* Softmax over labels as Eigen 3.3 computes expAndNormalize on x86-64 (SSE2). */

/* Eigen's pexp<Packet4f> (Cephes), without fused multiply-add. */
static inline float exp_cephes(float x0)
{
    float x = x0 < 88.3762626647950f ? x0 : 88.3762626647950f; /* pmin */
    x = x > -88.3762626647949f ? x : -88.3762626647949f;        /* pmax */
    float fx = x * 1.44269504088896341f + 0.5f;
    fx = floorf(fx);
    float tmp = fx * 0.693359375f;
    float z = fx * -2.12194440e-4f;
    x = x - tmp;
    x = x - z;
    z = x * x;
    float y = 1.9875691500E-4f;
    y = y * x + 1.3981999507E-3f;
    y = y * x + 8.3334519073E-3f;
    y = y * x + 4.1665795894E-2f;
    y = y * x + 1.6666665459E-1f;
    y = y * x + 5.0000001201E-1f;
    y = y * z + x;
    y = y + 1.0f;
    int32_t e = ((int32_t)fx + 127) << 23;
    float p2;
    memcpy(&p2, &e, sizeof p2);
    float r = y * p2;
    return r > x0 ? r : x0; /* pmax(r, x0) */
}

/* Eigen's vectorised sum of a dynamic vector (aligned start; packets of 4, two accumulators,
 * then (a0+a2)+(a1+a3), then the tail in order). */
static inline float eigen_sum(const float *b, int L)
{
    const int as = L / 4 * 4, as2 = L / 8 * 8;
    float s;
    if (!as) {
        s = b[0];
        for (int i = 1; i < L; i++)
            s += b[i];
        return s;
    }
    float r0[4] = {b[0], b[1], b[2], b[3]};
    if (as > 4) {
        float r1[4] = {b[4], b[5], b[6], b[7]};
        for (int i = 8; i < as2; i += 8)
            for (int k = 0; k < 4; k++) {
                r0[k] += b[i + k];
                r1[k] += b[i + 4 + k];
            }
        for (int k = 0; k < 4; k++)
            r0[k] += r1[k];
        if (as > as2)
            for (int k = 0; k < 4; k++)
                r0[k] += b[as2 + k];
    }
    s = (r0[0] + r0[2]) + (r0[1] + r0[3]);
    for (int i = as; i < L; i++)
        s += b[i];
    return s;
}

/* q = softmax(t) over L labels; b: [L] scratch. */
static inline void softmax_one(const float *restrict t, float *restrict q, int L,
                               float *restrict b)
{
    const int np = L / 4 * 4;
    if (L == 2) {
        /* the maximum's term is exp(0) = 1 and the other exp(d0 + d1) (one of d0, d1 is 0):
         * the same floats as below, without a branch on which label is larger */
        float mx2 = t[1] > t[0] ? t[1] : t[0];
        float d0 = t[0] - mx2, d1 = t[1] - mx2, e = expf(d0 + d1);
        float b0 = d0 == 0.0f ? 1.0f : e, b1 = d1 == 0.0f ? 1.0f : e, s2 = b0 + b1;
        q[0] = b0 / s2;
        q[1] = b1 / s2;
        return;
    }
    float mx = t[0];
    for (int l = 1; l < L; l++)
        mx = t[l] > mx ? t[l] : mx;
    for (int l = 0; l < L; l++)
        b[l] = t[l] - mx;
    for (int l = 0; l < np; l++)
        b[l] = exp_cephes(b[l]);
    for (int l = np; l < L; l++)
        b[l] = b[l] == 0.0f ? 1.0f : expf(b[l]); /* the maximum's term is exp(0) = 1 */
    float s = eigen_sum(b, L);
    for (int l = 0; l < L; l++)
        q[l] = b[l] / s;
}

/* ------------------------------------------------------------------------------------------ */

int hx_crf_new(struct hx_crf **out, int w, int h, int labels)
{
    if (!out)
        return hx_err(HX_EINVAL, "crf: NULL argument");
    *out = NULL;
    if (w < 1 || h < 1 || labels < 1)
        return hx_err(HX_EINVAL, "crf: size %dx%d with %d labels: all must be positive", w, h,
                      labels);
    if ((int64_t)w * h > (INT32_MAX / 8) / 16 || labels > HX_CRF_MAX_LABELS)
        return hx_err(HX_EINVAL, "crf: %dx%d image with %d labels is too large (at most %d "
                      "labels, %d pixels)", w, h, labels, HX_CRF_MAX_LABELS, (INT32_MAX / 8) / 16);
    struct hx_crf *c = calloc(1, sizeof *c);
    if (!c)
        return hx_err(HX_ENOMEM, "crf: out of memory");
    c->w = w;
    c->h = h;
    c->labels = labels;
    c->threads = 1;
    c->negu = big_calloc((size_t)w * h * labels, sizeof *c->negu, "crf unary");
    if (!c->negu) {
        free(c);
        return HX_ENOMEM;
    }
    *out = c;
    return 0;
}

void hx_crf_free(struct hx_crf *crf)
{
    if (!crf)
        return;
    for (int k = 0; k < crf->nk; k++)
        lattice_free(&crf->k[k]);
    free(crf->negu);
    free(crf);
}

void hx_crf_set_threads(struct hx_crf *crf, int threads)
{
    if (crf)
        crf->threads = threads < 1 ? 1 : threads > HX_CRF_MAX_THREADS ? HX_CRF_MAX_THREADS
                                                                      : threads;
}

int hx_crf_lattice_size(const struct hx_crf *crf, int k)
{
    return crf && k >= 0 && k < crf->nk ? crf->k[k].m : -1;
}

int hx_crf_set_unary(struct hx_crf *crf, const float *unary)
{
    if (!crf || !unary)
        return hx_err(HX_EINVAL, "crf: NULL argument");
    const size_t n = (size_t)crf->w * crf->h;
    const int L = crf->labels;
    for (int l = 0; l < L; l++)
        for (size_t i = 0; i < n; i++)
            crf->negu[i * L + l] = -unary[(size_t)l * n + i];
    return 0;
}

int hx_crf_set_unary_from_prob(struct hx_crf *crf, const float *prob, float eps)
{
    if (!crf || !prob)
        return hx_err(HX_EINVAL, "crf: NULL argument");
    const size_t n = (size_t)crf->w * crf->h;
    const int L = crf->labels;
    for (int l = 0; l < L; l++)
        for (size_t i = 0; i < n; i++) {
            float u = -logf(prob[(size_t)l * n + i] + eps);
            crf->negu[i * L + l] = -u;
        }
    return 0;
}

static int add_kernel(struct hx_crf *crf, const float *f, int d, float compat)
{
    if (crf->nk >= HX_CRF_MAX_KERNELS)
        return hx_err(HX_EINVAL, "crf: at most %d kernels", HX_CRF_MAX_KERNELS);
    int rc = lattice_build(&crf->k[crf->nk], f, crf->w * crf->h, d, compat, crf->threads);
    if (!rc)
        crf->nk++;
    return rc;
}

int hx_crf_add_gaussian(struct hx_crf *crf, float sxy, float compat)
{
    if (!crf)
        return hx_err(HX_EINVAL, "crf: NULL argument");
    if (!(sxy > 0.0f) || !isfinite(sxy) || !isfinite(compat))
        return hx_err(HX_EINVAL, "crf: Gaussian kernel sxy %g, compat %g: sxy must be > 0 and "
                      "both finite", (double)sxy, (double)compat);
    const int w = crf->w, h = crf->h;
    float *f = big_malloc((size_t)w * h * 2 * sizeof *f, "crf features");
    if (!f)
        return HX_ENOMEM;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float *p = f + ((size_t)y * w + x) * 2;
            p[0] = (float)x / sxy;
            p[1] = (float)y / sxy;
        }
    int rc = add_kernel(crf, f, 2, compat);
    free(f);
    return rc;
}

int hx_crf_add_bilateral(struct hx_crf *crf, float sxy, float srgb, const uint8_t *rgb,
                         float compat)
{
    if (!crf || !rgb)
        return hx_err(HX_EINVAL, "crf: NULL argument");
    if (!(sxy > 0.0f) || !(srgb > 0.0f) || !isfinite(sxy) || !isfinite(srgb) ||
        !isfinite(compat))
        return hx_err(HX_EINVAL, "crf: bilateral kernel sxy %g, srgb %g, compat %g: sxy and "
                      "srgb must be > 0, all finite", (double)sxy, (double)srgb,
                      (double)compat);
    const int w = crf->w, h = crf->h;
    float *f = big_malloc((size_t)w * h * 5 * sizeof *f, "crf features");
    if (!f)
        return HX_ENOMEM;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            float *p = f + i * 5;
            p[0] = (float)x / sxy;
            p[1] = (float)y / sxy;
            for (int c = 0; c < 3; c++)
                p[2 + c] = (float)rgb[i * 3 + c] / srgb;
        }
    int rc = add_kernel(crf, f, 5, compat);
    free(f);
    return rc;
}

/* Largest working window of the pipelined blur (beyond it the passes run one after another). */
#define BLUR_WINDOW_BYTES ((size_t)4 << 20)

/* ------------------------------------------------------------------------------------------ */
/* Inference. Label vectors are rows of W lanes (W >= labels, padding lanes zero), Q [n][W];
 * lattice values [m_k + 1][W]. An iteration has two phases:
 *   0. splat Q into a kernel's lattice (one pass over the pixels for all the kernels a thread
 *      owns: kernel k belongs to thread k mod nt) and blur it;
 *   1. for each pixel (threads share the pixels): slice every kernel, add the messages to -U
 *      in the order the kernels were added, take the softmax into Q.
 * Each kernel's splat stays on one thread in pixel order, so every value is computed by the
 * same operations in the same order whatever the thread count. */

struct fused_ctx {
    const struct hx_crf *c;
    float *q;                        /* [n][W] */
    int W;
    float *val[HX_CRF_MAX_KERNELS];  /* [m_k + 1][W] x 2 (ping-pong) */
    float *nval[HX_CRF_MAX_KERNELS];
    float *res[HX_CRF_MAX_KERNELS];  /* the blurred values, set in phase 0 */
};

static inline __attribute__((always_inline)) void
fused_phase0(struct fused_ctx *x, const int W, int tid, int nt)
{
    const struct hx_crf *c = x->c;
    const int n = c->w * c->h, nk = c->nk;
    const float *q = x->q;
    int big[HX_CRF_MAX_KERNELS], mine = 0;
    for (int k = 0; k < nk; k++) {
        big[k] = LATTICE_BIG(&c->k[k], W);
        if (k % nt == tid) {
            memset(x->val[k], 0, (size_t)(c->k[k].m + 1) * W * sizeof(float));
            memset(x->nval[k], 0, (size_t)W * sizeof(float));
            mine++;
        }
    }
    if (!mine)
        return;
    for (int i = 0; i < n; i++) {
        const float *qi = q + (size_t)i * W;
        for (int k = tid; k < nk; k += nt) {
            const struct lattice *lt = &c->k[k];
            const int dp = lt->d + 1;
            const int32_t *off = lt->off + (size_t)i * dp;
            const float *bary = lt->bary + (size_t)i * dp;
            float *vk = x->val[k];
            if (big[k] && i + PF_AHEAD < n)
                for (int r = 0; r < dp; r++)
                    prefetch_row(vk + (size_t)off[PF_AHEAD * dp + r] * W, W, 1);
            float xs[W];
            const float nr = lt->nrm[i];
            for (int l = 0; l < W; l++)
                xs[l] = qi[l] * nr;
            for (int r = 0; r < dp; r++) {
                float *v = vk + (size_t)off[r] * W;
                const float bw = bary[r];
                for (int l = 0; l < W; l++)
                    v[l] += bw * xs[l];
            }
        }
    }
    for (int k = tid; k < nk; k += nt) {
        const struct lattice *lt = &c->k[k];
        float *a = x->val[k], *o = x->nval[k];
        /* Pipelined blur: the passes sweep the vertices chunk by chunk, pass j lagging pass
         * j-1 by G chunks, G*S >= S + reach, so that a pass reads only values its predecessor
         * has finished and overwrites only values its successor no longer needs. The
         * passes' working window then stays in cache. Same values as pass after pass. */
        const int S = 128, G = (S + lt->reach + S - 1) / S, nch = (lt->m + S - 1) / S;
        const size_t window = ((size_t)lt->d * G + 1) * S * W * 2 * sizeof(float);
        if (window <= BLUR_WINDOW_BYTES && nch > 2 * G) {
            for (int step = 0; step < nch + lt->d * G; step++)
                for (int j = 0; j <= lt->d; j++) {
                    int ch = step - j * G;
                    if (ch < 0 || ch >= nch)
                        continue;
                    const float *src = j % 2 ? o : a;
                    float *dst = j % 2 ? a : o;
                    const int32_t *nb = lt->nb + (size_t)j * lt->m * 2;
                    const int v1 = (ch + 1) * S < lt->m ? (ch + 1) * S : lt->m;
                    for (int v = ch * S; v < v1; v++) {
                        const float *ov = src + (size_t)(v + 1) * W;
                        const float *n1 = src + (size_t)nb[2 * v] * W;
                        const float *n2 = src + (size_t)nb[2 * v + 1] * W;
                        float *nv = dst + (size_t)(v + 1) * W;
                        for (int l = 0; l < W; l++)
                            nv[l] = ov[l] + 0.5f * (n1[l] + n2[l]);
                    }
                }
            x->res[k] = lt->d % 2 ? a : o; /* pass d wrote into a if d is odd */
            continue;
        }
        for (int j = 0; j <= lt->d; j++) {
            const int32_t *nb = lt->nb + (size_t)j * lt->m * 2;
            for (int v = 0; v < lt->m; v++) {
                if (big[k] && v + PF_AHEAD < lt->m) {
                    prefetch_row(a + (size_t)nb[2 * (v + PF_AHEAD)] * W, W, 0);
                    prefetch_row(a + (size_t)nb[2 * (v + PF_AHEAD) + 1] * W, W, 0);
                }
                const float *ov = a + (size_t)(v + 1) * W;
                const float *n1 = a + (size_t)nb[2 * v] * W;
                const float *n2 = a + (size_t)nb[2 * v + 1] * W;
                float *nv = o + (size_t)(v + 1) * W;
                for (int l = 0; l < W; l++)
                    nv[l] = ov[l] + 0.5f * (n1[l] + n2[l]);
            }
            float *t = a;
            a = o;
            o = t;
        }
        x->res[k] = a;
    }
}

/* b: [labels] scratch of the calling thread. */
static inline __attribute__((always_inline)) void
fused_phase1(struct fused_ctx *x, const int W, int p0, int p1, float *b)
{
    const struct hx_crf *c = x->c;
    const int n = c->w * c->h, L = c->labels, nk = c->nk, seq = L <= 2;
    float alpha[HX_CRF_MAX_KERNELS];
    int big[HX_CRF_MAX_KERNELS];
    for (int k = 0; k < nk; k++) {
        alpha[k] = 1.0f / (1.0f + powf(2.0f, (float)-c->k[k].d));
        big[k] = LATTICE_BIG(&c->k[k], W);
    }
    for (int i = p0; i < p1; i++) {
        float t[W];
        const float *nu = c->negu + (size_t)i * L;
        for (int l = 0; l < W; l++)
            t[l] = l < L ? nu[l] : 0.0f;
        for (int k = 0; k < nk; k++) {
            const struct lattice *lt = &c->k[k];
            const int dp = lt->d + 1;
            const int32_t *off = lt->off + (size_t)i * dp;
            const float *bary = lt->bary + (size_t)i * dp;
            const float al = alpha[k], negw = -lt->w, nr = lt->nrm[i];
            const float *vk = x->res[k];
            if (big[k] && i + PF_AHEAD < n)
                for (int r = 0; r < dp; r++)
                    prefetch_row(vk + (size_t)off[PF_AHEAD * dp + r] * W, W, 0);
            float acc[W];
            for (int l = 0; l < W; l++)
                acc[l] = 0.0f;
            for (int r = 0; r < dp; r++) {
                const float *v = vk + (size_t)off[r] * W;
                const float bw = bary[r];
                if (seq) {
                    for (int l = 0; l < W; l++)
                        acc[l] += bw * v[l] * al;
                } else {
                    const float ba = bw * al;
                    for (int l = 0; l < W; l++)
                        acc[l] += ba * v[l];
                }
            }
            for (int l = 0; l < W; l++)
                t[l] = t[l] - negw * (acc[l] * nr);
        }
        /* fused_width gives W == L when W <= 2: passing the constant W then lets
         * softmax_one's L == 2 case fold */
        softmax_one(t, x->q + (size_t)i * W, W <= 2 ? W : L, b);
    }
}

#define FUSED_W(WW)                                                                           \
    HOT_CLONES static void fused_phase0_##WW(struct fused_ctx *x, int tid, int nt)            \
    {                                                                                         \
        fused_phase0(x, WW, tid, nt);                                                         \
    }                                                                                         \
    HOT_CLONES static void fused_phase1_##WW(struct fused_ctx *x, int p0, int p1, float *b)   \
    {                                                                                         \
        fused_phase1(x, WW, p0, p1, b);                                                       \
    }
FUSED_W(1)
FUSED_W(2)
FUSED_W(4)
FUSED_W(8)
FUSED_W(12)
FUSED_W(16)
FUSED_W(20)
FUSED_W(21)
FUSED_W(24)
FUSED_W(32)

HOT_CLONES static void fused_phase0_gen(struct fused_ctx *x, int tid, int nt)
{
    fused_phase0(x, x->W, tid, nt);
}

HOT_CLONES static void fused_phase1_gen(struct fused_ctx *x, int p0, int p1, float *b)
{
    fused_phase1(x, x->W, p0, p1, b);
}

/* Lanes per label vector: the labels themselves for the widths compiled in (21: VOC with
 * background, CLIP-as-RNN's main setting), else padded to a multiple of 4. Memory traffic
 * grows with the lanes, so padding is avoided where a width has its own code. */
static int fused_width(int L)
{
    return L <= 2 || L == 21 ? L : (L + 3) / 4 * 4;
}

#define FUSED_CASES(PH, ...)                                                                  \
    switch (x->W) {                                                                           \
    case 1: fused_##PH##_1(x, __VA_ARGS__); break;                                            \
    case 2: fused_##PH##_2(x, __VA_ARGS__); break;                                            \
    case 4: fused_##PH##_4(x, __VA_ARGS__); break;                                            \
    case 8: fused_##PH##_8(x, __VA_ARGS__); break;                                            \
    case 12: fused_##PH##_12(x, __VA_ARGS__); break;                                          \
    case 16: fused_##PH##_16(x, __VA_ARGS__); break;                                          \
    case 20: fused_##PH##_20(x, __VA_ARGS__); break;                                          \
    case 21: fused_##PH##_21(x, __VA_ARGS__); break;                                          \
    case 24: fused_##PH##_24(x, __VA_ARGS__); break;                                          \
    case 32: fused_##PH##_32(x, __VA_ARGS__); break;                                          \
    default: fused_##PH##_gen(x, __VA_ARGS__); break;                                         \
    }

static void phase0(struct fused_ctx *x, int tid, int nt)
{
    FUSED_CASES(phase0, tid, nt)
}

static void phase1(struct fused_ctx *x, int p0, int p1, float *b)
{
    FUSED_CASES(phase1, p0, p1, b)
}

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state; /* 0 wait, 1 go, -1 give up */
};

struct infer_job {
    struct fused_ctx *x;
    int tid, nt, iters, p0, p1;
    float *b;                /* [labels] */
    pthread_barrier_t *bar;  /* NULL with one thread */
    struct gate *gate;       /* started threads wait here until all could be started */
};

static void *infer_run(void *arg)
{
    struct infer_job *j = arg;
    const struct hx_crf *c = j->x->c;
    const int L = c->labels, W = j->x->W;
    if (j->gate) {
        pthread_mutex_lock(&j->gate->mu);
        while (!j->gate->state)
            pthread_cond_wait(&j->gate->cv, &j->gate->mu);
        int go = j->gate->state > 0;
        pthread_mutex_unlock(&j->gate->mu);
        if (!go)
            return NULL;
    }
    for (int i = j->p0; i < j->p1; i++)
        softmax_one(c->negu + (size_t)i * L, j->x->q + (size_t)i * W, L, j->b);
    for (int it = 0; it < j->iters; it++) {
        if (j->bar)
            pthread_barrier_wait(j->bar);
        phase0(j->x, j->tid, j->nt);
        if (j->bar)
            pthread_barrier_wait(j->bar);
        phase1(j->x, j->p0, j->p1, j->b);
    }
    return NULL;
}

int hx_crf_infer(struct hx_crf *crf, int iters, float *q)
{
    if (!crf || !q)
        return hx_err(HX_EINVAL, "crf: NULL argument");
    if (iters < 0)
        return hx_err(HX_EINVAL, "crf: %d iterations: must be >= 0", iters);

    int rc = 0, started = 1, have_bar = 0;
    const int L = crf->labels, n = crf->w * crf->h, W = fused_width(L);
    int nt = crf->threads < n ? crf->threads : n;
    struct fused_ctx x;
    struct infer_job jobs[HX_CRF_MAX_THREADS];
    pthread_t tid[HX_CRF_MAX_THREADS];
    pthread_barrier_t bar;
    struct gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    memset(&x, 0, sizeof x);
    memset(jobs, 0, sizeof jobs);
    x.c = crf;
    x.W = W;
    x.q = big_calloc((size_t)n * W, sizeof *x.q, "crf Q");
    if (!x.q) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int k = 0; k < crf->nk; k++) {
        x.val[k] = big_malloc((size_t)2 * (crf->k[k].m + 1) * W * sizeof(float),
                              "crf lattice values");
        if (!x.val[k]) {
            rc = HX_ENOMEM;
            goto done;
        }
        x.nval[k] = x.val[k] + (size_t)(crf->k[k].m + 1) * W;
    }
    for (int t = 0; t < nt; t++) {
        struct infer_job *j = &jobs[t];
        j->x = &x;
        j->tid = t;
        j->nt = nt;
        j->iters = iters;
        j->p0 = (int)((int64_t)n * t / nt);
        j->p1 = (int)((int64_t)n * (t + 1) / nt);
        j->b = hx_malloc((size_t)L * sizeof *j->b, "crf softmax scratch");
        if (!j->b) {
            rc = HX_ENOMEM;
            goto done;
        }
    }
    if (nt > 1) {
        if (pthread_barrier_init(&bar, NULL, (unsigned)nt)) {
            rc = hx_err(HX_ENOMEM, "crf: cannot create a thread barrier");
            goto done;
        }
        have_bar = 1;
        for (int t = 0; t < nt; t++)
            jobs[t].bar = &bar;
        for (int t = 1; t < nt; t++)
            jobs[t].gate = &gate;
        for (started = 1; started < nt; started++)
            if (pthread_create(&tid[started], NULL, infer_run, &jobs[started]))
                break;
        pthread_mutex_lock(&gate.mu);
        gate.state = started == nt ? 1 : -1;
        pthread_cond_broadcast(&gate.cv);
        pthread_mutex_unlock(&gate.mu);
        if (started < nt) {
            for (int t = 1; t < started; t++)
                pthread_join(tid[t], NULL);
            rc = hx_err(HX_ENOMEM, "crf: cannot start %d threads", nt);
            goto done;
        }
    }
    infer_run(&jobs[0]);
    for (int t = 1; t < nt; t++)
        pthread_join(tid[t], NULL);

    for (int l = 0; l < L; l++)
        for (int i = 0; i < n; i++)
            q[(size_t)l * n + i] = x.q[(size_t)i * W + l];

done:
    if (have_bar)
        pthread_barrier_destroy(&bar);
    for (int t = 0; t < nt; t++)
        free(jobs[t].b);
    for (int k = 0; k < crf->nk; k++)
        free(x.val[k]);
    free(x.q);
    return rc;
}
