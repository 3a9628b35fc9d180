/* Whole-file reads and atomic whole-file writes.
 *
 * hx_write_atomic writes to a fresh temporary file in the destination's folder, flushes it
 * and renames it over `path`, so a reader sees the old file or the complete new one, never a
 * partial write. Ownership: hx_read_file allocates *out (caller frees with free()). */
#ifndef HX_ATOMICIO_H
#define HX_ATOMICIO_H

#include <stddef.h>
#include <stdint.h>

/* Read all of `path`. HX_EIO naming the file on failure. The buffer always has room for
 * one byte past *len, so a caller may NUL-terminate it. */
int hx_read_file(const char *path, uint8_t **out, size_t *len);

/* Write `len` bytes atomically to `path`. HX_EIO naming the file on failure (the temporary
 * file is removed). */
int hx_write_atomic(const char *path, const void *data, size_t len);

/* Create a folder and its missing parents (as mkdir -p); an existing folder is fine. Errors
 * name the component that could not be made. */
int hx_mkdirs(const char *path);

#endif
