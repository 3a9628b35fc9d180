/* Subclass lists: the JSON file {"class": ["sub", ...], ...} released with the
 * LLM-supervision paper, and written by `harness subclasses`.
 *
 * Reading keeps a list exactly as stored: the class order of the file, the entries in their
 * order and verbatim (leading and trailing spaces included, since they reach the text
 * encoder), and repeated entries. The released lists do repeat entries (PASCAL Context:
 * "cat", "cow" and "sheep" each hold one exact duplicate, so 4 distinct names out of 5), and
 * the paper's code used the lists as they are, so a duplicate counts twice in an ensemble
 * exactly as it did there; HX_SUBCLASSES_DEDUPE drops later exact repeats instead. A class
 * may map to a single entry equal to its own name ("background" in the Context and COCO
 * files) or to an empty list; what a rule does with those is the caller's choice.
 *
 * Errors (HX_EFORMAT naming the file and the class): a top level that is not an object, a
 * value that is not an array of strings, a class listed twice, an empty class name, a string
 * that is not valid UTF-8 or holds a NUL.
 *
 * Ownership: hx_subclasses_read fills *out with malloc'ed memory, released by
 * hx_subclasses_free (which also accepts a zeroed struct). hx_subclasses_write only reads. */
#ifndef HX_SUBCLASSES_H
#define HX_SUBCLASSES_H

#include <stddef.h>

struct hx_subclasses {
    int n;         /* classes, in file order */
    char **cls;    /* [n] class names (the object keys) */
    int *nsub;     /* [n] entries per class (>= 0) */
    char ***sub;   /* [n][nsub[i]] the entries */
};

enum {
    HX_SUBCLASSES_DEDUPE = 1, /* drop an entry equal (byte for byte) to an earlier one */
};

int hx_subclasses_read(const char *path, unsigned flags, struct hx_subclasses *out);

/* Parse JSON text (`what` names it in messages). Same rules as hx_subclasses_read. */
int hx_subclasses_parse(const char *text, size_t len, const char *what, unsigned flags,
                        struct hx_subclasses *out);

/* Index of the class named exactly `name`, or -1. */
int hx_subclasses_find(const struct hx_subclasses *s, const char *name);

/* Write s atomically to `path` in the released layout (two-space indent, one entry per
 * line, UTF-8 verbatim, final newline). HX_EIO naming the file on failure. */
int hx_subclasses_write(const char *path, const struct hx_subclasses *s);

/* The same text, malloc'ed (caller frees), NUL-terminated; *len may be NULL. */
int hx_subclasses_format(const struct hx_subclasses *s, char **out, size_t *len);

void hx_subclasses_free(struct hx_subclasses *s);

#endif
