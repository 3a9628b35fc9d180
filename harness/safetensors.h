/* Reader for Hugging Face safetensors files (SPEC 1).
 *
 * The file is memory-mapped; the header is validated strictly at open: offsets contiguous
 * without holes when sorted, 8+N+last_end == file size, byte length == product(shape) x dtype
 * size, known dtypes only. Any violation is an HX_EFORMAT error naming the file and tensor.
 * Ownership: hx_st_open allocates, hx_st_free releases the mapping and all tensors' records;
 * tensor data pointers point into the mapping and are valid until hx_st_free. */
#ifndef HX_SAFETENSORS_H
#define HX_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

enum hx_dtype { HX_F32, HX_F16, HX_BF16, HX_F64, HX_I64, HX_I32, HX_I16, HX_I8, HX_U8, HX_BOOL };

#define HX_ST_MAXDIM 8

struct hx_st_tensor {
    char *name;
    enum hx_dtype dtype;
    int ndim;
    int64_t shape[HX_ST_MAXDIM];
    int64_t numel;     /* product of shape (1 for a scalar) */
    size_t nbytes;
    const void *data;  /* into the mapping, possibly unaligned */
};

struct hx_safetensors {
    char *path;
    int n;                       /* number of tensors */
    struct hx_st_tensor *tensors; /* [n], in header order */
    void *map;
    size_t size;
};

int hx_st_open(struct hx_safetensors **out, const char *path);
void hx_st_free(struct hx_safetensors *st);

/* The tensor called `name`, or NULL (no error message set). */
const struct hx_st_tensor *hx_st_find(const struct hx_safetensors *st, const char *name);

/* Convert a float tensor (F32, F16, BF16, F64) to newly allocated float32 (caller frees with
 * free()). `shape` gives the expected dims (ndim of them, -1 = any); a missing tensor, a
 * non-float dtype or a shape mismatch is an error naming the file, the tensor and both shapes.
 * Pass ndim < 0 to skip the shape check. */
int hx_st_load_f32(const struct hx_safetensors *st, const char *name, int ndim,
                   const int64_t *shape, float **out);

/* A model's float32 weights, loaded tensor by tensor and freed together.
 * Ownership: the store owns every array kept in it; hx_weights_free frees them all. */
struct hx_weights {
    float **arrays;
    int n, cap;
    size_t bytes; /* float32 bytes held */
};

/* Take ownership of p (count floats). On failure p is freed and HX_ENOMEM returned. */
int hx_weights_keep(struct hx_weights *w, float *p, size_t count);
/* hx_st_load_f32 (shape of ndim dims, -1 = any) into *dst, kept in the store. */
int hx_weights_load(struct hx_weights *w, const struct hx_safetensors *st, float **dst,
                    const char *name, int ndim, const int64_t *shape);
void hx_weights_free(struct hx_weights *w);

/* Write tensors as an F32 safetensors file (for tests and tools); atomic (temp + rename). */
struct hx_st_write {
    const char *name;
    int ndim;
    int64_t shape[HX_ST_MAXDIM];
    const float *data;
};
int hx_st_write_f32(const char *path, const struct hx_st_write *t, int n);

/* Half-precision conversions (round-to-nearest-even for float -> half). */
float hx_f16_to_f32(uint16_t h);
float hx_bf16_to_f32(uint16_t h);
uint16_t hx_f32_to_f16(float f);

#endif
