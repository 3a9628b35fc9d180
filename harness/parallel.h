/* A parallel loop over [0, n) on the machine's cores (or `threads` > 0 of them): fn(ctx, begin,
 * end) runs once per contiguous chunk, the first chunk on the calling thread. Chunks must not
 * share outputs. HX_THREADS in the environment caps the default. Inside a chunk, a nested
 * loop runs on the calling thread and hx_default_threads() is 1. */
#ifndef HX_PARALLEL_H
#define HX_PARALLEL_H

void hx_parallel_for(int n, int threads, void (*fn)(void *ctx, int begin, int end), void *ctx);

/* The default number of threads (online cores, capped by HX_THREADS). */
int hx_default_threads(void);

#endif
