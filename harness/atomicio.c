#include "harness/atomicio.h"
#include "harness/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int hx_read_file(const char *path, uint8_t **out, size_t *len)
{
    int rc = 0;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return hx_err(HX_EIO, "cannot open %s: %s", path, strerror(errno));
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                rc = hx_err(HX_ENOMEM, "out of memory reading %s", path);
                goto done;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        rc = hx_err(HX_EIO, "error reading %s", path);
        goto done;
    }
    *out = buf;
    *len = n;
    buf = NULL;
done:
    free(buf);
    fclose(f);
    return rc;
}

/* The process's umask, read without changing it (umask() would set it, racing other
 * threads that create files); 022 when /proc is not there. */
static mode_t current_umask(void)
{
    unsigned m = 022;
    char line[128];
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return (mode_t)m;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Umask: %o", &m) == 1)
            break;
    fclose(f);
    return (mode_t)m;
}

int hx_write_atomic(const char *path, const void *data, size_t len)
{
    int rc = 0, fd = -1, created = 0;
    size_t plen = strlen(path);
    char *tmp = hx_malloc(plen + 16, "temporary file name");
    if (!tmp)
        return HX_ENOMEM;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = hx_err(HX_EIO, "cannot create a temporary file for %s: %s", path, strerror(errno));
        goto done;
    }
    created = 1;
    /* mkstemp makes the file private (0600); the result should read like any other file.
     * Best effort: some filesystems refuse modes, and the data matters more. */
    (void)fchmod(fd, 0666 & ~current_umask());
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = hx_err(HX_EIO, "cannot write %s: %s", path, strerror(errno));
            goto done;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        rc = hx_err(HX_EIO, "cannot flush %s: %s", path, strerror(errno));
        goto done;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = hx_err(HX_EIO, "cannot close %s: %s", path, strerror(errno));
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = hx_err(HX_EIO, "cannot rename into %s: %s", path, strerror(errno));
        goto done;
    }
done:
    if (fd >= 0)
        close(fd);
    if (rc && created)
        unlink(tmp);
    free(tmp);
    return rc;
}

int hx_mkdirs(const char *path)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s", path) >= sizeof tmp)
        return hx_err(HX_EINVAL, "path too long: %.80s...", path);
    for (char *s = tmp + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(tmp, 0777) && errno != EEXIST)
                return hx_err(HX_EIO, "cannot create %s: %s", tmp, strerror(errno));
            *s = '/';
        }
    if (mkdir(tmp, 0777) && errno != EEXIST)
        return hx_err(HX_EIO, "cannot create %s: %s", tmp, strerror(errno));
    struct stat st; /* it may have existed as something else */
    if (stat(tmp, &st) != 0 || !S_ISDIR(st.st_mode))
        return hx_err(HX_EIO, "%s exists and is not a folder", tmp);
    return 0;
}
