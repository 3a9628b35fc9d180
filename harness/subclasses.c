#include "harness/subclasses.h"
#include "harness/atomicio.h"
#include "harness/error.h"

#include <cjson/cJSON.h>
#include <utf8proc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void hx_subclasses_free(struct hx_subclasses *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        if (s->cls)
            free(s->cls[i]);
        if (s->sub && s->sub[i]) {
            for (int k = 0; k < s->nsub[i]; k++)
                free(s->sub[i][k]);
            free(s->sub[i]);
        }
    }
    free(s->cls);
    free(s->nsub);
    free(s->sub);
    memset(s, 0, sizeof *s);
}

static int valid_utf8(const char *s)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    utf8proc_ssize_t len = (utf8proc_ssize_t)strlen(s);
    while (len > 0) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p, len, &cp);
        if (k <= 0)
            return 0;
        p += k;
        len -= k;
    }
    return 1;
}

int hx_subclasses_parse(const char *text, size_t len, const char *what, unsigned flags,
                        struct hx_subclasses *out)
{
    int rc = 0;
    memset(out, 0, sizeof *out);
    if (memchr(text, 0, len))
        return hx_err(HX_EFORMAT, "%s: subclass list contains a NUL byte", what);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        return hx_err(HX_EFORMAT, "%s: not valid JSON (near byte %ld)", what,
                      at ? (long)(at - text) : -1L);
    }
    if (!cJSON_IsObject(root)) {
        rc = hx_err(HX_EFORMAT, "%s: expected an object {\"class\": [\"subclass\", ...]}", what);
        goto done;
    }
    int n = cJSON_GetArraySize(root);
    out->cls = hx_calloc((size_t)n, sizeof(char *), "subclass list");
    out->nsub = hx_calloc((size_t)n, sizeof(int), "subclass list");
    out->sub = hx_calloc((size_t)n, sizeof(char **), "subclass list");
    if (!out->cls || !out->nsub || !out->sub) {
        rc = HX_ENOMEM;
        goto done;
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, root)
    {
        int i = out->n;
        const char *name = c->string;
        if (!name || !name[0]) {
            rc = hx_err(HX_EFORMAT, "%s: class %d has an empty name", what, i + 1);
            goto done;
        }
        if (!valid_utf8(name)) {
            rc = hx_err(HX_EFORMAT, "%s: class %d: name is not valid UTF-8", what, i + 1);
            goto done;
        }
        if (hx_subclasses_find(out, name) >= 0) {
            rc = hx_err(HX_EFORMAT, "%s: class \"%s\" is listed twice", what, name);
            goto done;
        }
        if (!cJSON_IsArray(c)) {
            rc = hx_err(HX_EFORMAT, "%s: class \"%s\": expected an array of strings", what, name);
            goto done;
        }
        out->cls[i] = strdup(name);
        int m = cJSON_GetArraySize(c);
        out->sub[i] = hx_calloc((size_t)m, sizeof(char *), "subclass list");
        out->n = i + 1;
        if (!out->cls[i] || !out->sub[i]) {
            rc = hx_err(HX_ENOMEM, "out of memory reading %s", what);
            goto done;
        }
        const cJSON *e;
        int k = 0;
        cJSON_ArrayForEach(e, c)
        {
            if (!cJSON_IsString(e)) {
                rc = hx_err(HX_EFORMAT, "%s: class \"%s\": entry %d is not a string", what,
                            name, k + 1);
                goto done;
            }
            if (!valid_utf8(e->valuestring)) {
                rc = hx_err(HX_EFORMAT, "%s: class \"%s\": entry %d is not valid UTF-8", what,
                            name, k + 1);
                goto done;
            }
            k++;
            int dup = 0;
            if (flags & HX_SUBCLASSES_DEDUPE)
                for (int j = 0; j < out->nsub[i] && !dup; j++)
                    dup = !strcmp(out->sub[i][j], e->valuestring);
            if (dup)
                continue;
            char *v = strdup(e->valuestring);
            if (!v) {
                rc = hx_err(HX_ENOMEM, "out of memory reading %s", what);
                goto done;
            }
            out->sub[i][out->nsub[i]++] = v;
        }
    }
done:
    cJSON_Delete(root);
    if (rc)
        hx_subclasses_free(out);
    return rc;
}

int hx_subclasses_read(const char *path, unsigned flags, struct hx_subclasses *out)
{
    uint8_t *text = NULL;
    size_t len;
    memset(out, 0, sizeof *out);
    int rc = hx_read_file(path, &text, &len);
    if (rc)
        return rc;
    rc = hx_subclasses_parse((const char *)text, len, path, flags, out);
    free(text);
    return rc;
}

int hx_subclasses_find(const struct hx_subclasses *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (s->cls[i] && !strcmp(s->cls[i], name))
            return i;
    return -1;
}

struct buf {
    char *p;
    size_t len, cap;
};

static int put(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return hx_err(HX_ENOMEM, "out of memory formatting a subclass list");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

/* s as a JSON string literal (UTF-8 kept, control characters, quote and backslash escaped) */
static int put_quoted(struct buf *b, const char *s)
{
    int rc = put(b, "\"", 1);
    for (const char *p = s; !rc && *p; p++) {
        unsigned char ch = (unsigned char)*p;
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            rc = put(b, esc, 2);
        } else if (ch == '\n') {
            rc = put(b, "\\n", 2);
        } else if (ch == '\t') {
            rc = put(b, "\\t", 2);
        } else if (ch == '\r') {
            rc = put(b, "\\r", 2);
        } else if (ch < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            rc = put(b, esc, 6);
        } else {
            rc = put(b, p, 1);
        }
    }
    return rc ? rc : put(b, "\"", 1);
}

int hx_subclasses_format(const struct hx_subclasses *s, char **out, size_t *len)
{
    struct buf b = {0};
    int rc = put(&b, "{", 1);
    for (int i = 0; !rc && i < s->n; i++) {
        rc = put(&b, i ? ",\n  " : "\n  ", i ? 4 : 3);
        if (!rc)
            rc = put_quoted(&b, s->cls[i]);
        if (!rc)
            rc = put(&b, s->nsub[i] ? ": [" : ": []", s->nsub[i] ? 3 : 4);
        for (int k = 0; !rc && k < s->nsub[i]; k++) {
            rc = put(&b, k ? ",\n    " : "\n    ", k ? 6 : 5);
            if (!rc)
                rc = put_quoted(&b, s->sub[i][k]);
        }
        if (!rc && s->nsub[i])
            rc = put(&b, "\n  ]", 4);
    }
    if (!rc)
        rc = put(&b, s->n ? "\n}\n" : "}\n", s->n ? 3 : 2);
    if (rc) {
        free(b.p);
        return rc;
    }
    *out = b.p;
    if (len)
        *len = b.len;
    return 0;
}

int hx_subclasses_write(const char *path, const struct hx_subclasses *s)
{
    char *text = NULL;
    size_t len = 0;
    int rc = hx_subclasses_format(s, &text, &len);
    if (!rc)
        rc = hx_write_atomic(path, text, len);
    free(text);
    return rc;
}
