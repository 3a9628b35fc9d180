#include "harness/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char msg[2048];

int hx_err(int code, const char *fmt, ...)
{
    /* formatted aside first: callers may pass hx_errmsg() itself to add context */
    char tmp[sizeof msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(msg, tmp, sizeof msg);
    return code;
}

const char *hx_errmsg(void) { return msg; }

void hx_err_clear(void) { msg[0] = 0; }

void *hx_malloc(size_t n, const char *what)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        hx_err(HX_ENOMEM, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *hx_calloc(size_t count, size_t size, const char *what)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        hx_err(HX_ENOMEM, "out of memory allocating %zu x %zu bytes for %s", count, size, what);
    return p;
}
