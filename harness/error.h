/* Error reporting for the whole library.
 *
 * A function that fails sets one message, where the failure happens, with the file, path or
 * tensor name and a hint, and returns a negative code; callers pass the code up unchanged and
 * never overwrite the message. The CLI prints hx_errmsg() once. Messages are per thread. */
#ifndef HX_ERROR_H
#define HX_ERROR_H

enum hx_status {
    HX_OK = 0,
    HX_EIO = -1,       /* a file could not be opened, read or written */
    HX_EFORMAT = -2,   /* a file or value is malformed */
    HX_ENOMEM = -3,    /* allocation failed */
    HX_EINVAL = -4,    /* bad argument or configuration */
    HX_ENOTFOUND = -5, /* a named item (tensor, key, class, file) does not exist */
    HX_ENET = -6,      /* network or HTTP failure */
    HX_EINTERNAL = -7, /* a library bug: should never happen */
};

/* Set the message (printf format) and return code. Always returns `code`. */
int hx_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last message set on this thread ("" if none). */
const char *hx_errmsg(void);
/* Forget the last message. */
void hx_err_clear(void);

/* Allocation helpers that set HX_ENOMEM with a message naming `what` on failure. */
#include <stddef.h>
void *hx_malloc(size_t n, const char *what);
void *hx_calloc(size_t count, size_t size, const char *what);

#endif
