/* Hot loops are compiled for AVX-512, AVX2+FMA and baseline x86-64; the loader picks the
 * widest the CPU has. Under AddressSanitizer (and off x86-64/GCC) there is one version. */
#ifndef HX_SIMD_H
#define HX_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define HX_CLONES __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#else
#define HX_CLONES
#endif

#include <stdint.h>
#include <string.h>

/* Sixteen lanes as one value (GCC vector extensions): arithmetic and comparisons act lane by
 * lane with the same IEEE operations as scalar code, so a vector loop gives the scalar loop's
 * values bit for bit. In an HX_CLONES function a value is one AVX-512 register, two AVX2 or
 * four SSE registers. A comparison gives -1 (true) or 0 per lane. */
#define HX_LANES 16
/* (The Makefile's -Wno-psabi: these values only pass between inline functions, so GCC's
 * note that their calling convention differs with and without AVX-512 does not apply.) */
typedef float hx_vf __attribute__((vector_size(4 * HX_LANES)));
typedef int32_t hx_vi __attribute__((vector_size(4 * HX_LANES)));

static inline hx_vf hx_vload(const float *p)
{
    hx_vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void hx_vstore(float *p, hx_vf v) { memcpy(p, &v, sizeof v); }
/* m ? a : b, lane by lane */
static inline hx_vf hx_vsel(hx_vi m, hx_vf a, hx_vf b)
{
    return (hx_vf)((m & (hx_vi)a) | (~m & (hx_vi)b));
}
static inline hx_vi hx_vseli(hx_vi m, hx_vi a, hx_vi b) { return (m & a) | (~m & b); }

#endif
