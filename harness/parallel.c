#include "harness/parallel.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 64

/* Set while this thread runs a chunk of a loop split over several threads: a parallel loop
 * inside such a chunk runs on its caller alone, so nested loops never oversubscribe the
 * cores. */
static _Thread_local int in_chunk;

int hx_default_threads(void)
{
    if (in_chunk)
        return 1;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    const char *env = getenv("HX_THREADS");
    if (env && atoi(env) > 0 && atoi(env) < n)
        n = atoi(env);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

struct chunk {
    void (*fn)(void *, int, int);
    void *ctx;
    int begin, end;
};

static void *run_chunk(void *arg)
{
    struct chunk *c = arg;
    int outer = in_chunk;
    in_chunk = 1;
    c->fn(c->ctx, c->begin, c->end);
    in_chunk = outer;
    return NULL;
}

void hx_parallel_for(int n, int threads, void (*fn)(void *ctx, int begin, int end), void *ctx)
{
    if (n <= 0)
        return;
    int t = in_chunk ? 1 : threads > 0 ? threads : hx_default_threads();
    if (t > n)
        t = n;
    if (t > MAX_THREADS)
        t = MAX_THREADS;
    if (t == 1) { /* not a parallel region: loops inside it may still use the cores */
        fn(ctx, 0, n);
        return;
    }
    struct chunk c[MAX_THREADS];
    pthread_t id[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int i = 0; i < t; i++)
        c[i] = (struct chunk){fn, ctx, (int)((long)n * i / t), (int)((long)n * (i + 1) / t)};
    for (int i = 1; i < t; i++)
        started[i] = pthread_create(&id[i], NULL, run_chunk, &c[i]) == 0;
    run_chunk(&c[0]);
    for (int i = 1; i < t; i++) {
        if (started[i])
            pthread_join(id[i], NULL);
        else
            run_chunk(&c[i]); /* no thread to be had: do the chunk here */
    }
}
