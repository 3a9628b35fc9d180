/* Hot loops are compiled for AVX-512, AVX2+FMA and baseline x86-64; the loader picks the
 * widest the CPU has. Under AddressSanitizer (and off x86-64/GCC) there is one version. */
#ifndef HX_SIMD_H
#define HX_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define HX_CLONES __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#else
#define HX_CLONES
#endif

#endif
