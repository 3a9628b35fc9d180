#include "harness/prompts.h"

#include "harness/atomicio.h"
#include "harness/error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *trim_copy(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = 0;
    }
    return r;
}

int hx_templates_read(const char *spec, char ***out, int *n)
{
    char path[1200];
    if (strchr(spec, '/') || strstr(spec, ".txt"))
        snprintf(path, sizeof path, "%s", spec);
    else
        snprintf(path, sizeof path, "datasets/templates/%s.txt", spec);
    uint8_t *buf;
    size_t len;
    int rc = hx_read_file(path, &buf, &len);
    if (rc)
        return hx_err(rc, "templates '%s': %s", spec, hx_errmsg());
    char **t = NULL;
    int k = 0, cap = 0;
    char *text = (char *)buf, *save = NULL;
    text[len] = 0; /* hx_read_file leaves room for it */
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r')
            line[--l] = 0;
        if (!l)
            continue;
        int rc = 0;
        if (!strstr(line, "{}"))
            rc = hx_err(HX_EFORMAT, "%s: template '%s' has no {} for the name", path, line);
        if (!rc && k == cap) {
            cap = cap ? 2 * cap : 64;
            char **g = realloc(t, sizeof *g * cap);
            if (g)
                t = g;
            else
                rc = HX_ENOMEM;
        }
        if (!rc && !(t[k++] = strdup(line)))
            rc = HX_ENOMEM;
        if (rc) {
            free(text);
            hx_templates_free(t, k);
            return rc == HX_ENOMEM ? hx_err(rc, "out of memory reading %s", path) : rc;
        }
    }
    free(text);
    if (k == 0)
        return hx_err(HX_EFORMAT, "%s: no templates", path);
    *out = t;
    *n = k;
    return 0;
}

char *hx_template_fill(const char *tmpl, const char *name)
{
    const char *at = strstr(tmpl, "{}");
    if (!at)
        return strdup(tmpl);
    size_t a = (size_t)(at - tmpl), b = strlen(name), c = strlen(at + 2);
    char *s = malloc(a + b + c + 1);
    if (s) {
        memcpy(s, tmpl, a);
        memcpy(s + a, name, b);
        memcpy(s + a + b, at + 2, c + 1);
    }
    return s;
}

void hx_templates_free(char **t, int n)
{
    for (int i = 0; t && i < n; i++)
        free(t[i]);
    free(t);
}

int hx_subclass_match(const struct hx_subclasses *s, const struct hx_classnames *cn, int c)
{
    for (int j = 0; j < cn->nsyn[c]; j++) {
        int i = hx_subclasses_find(s, cn->syn[c][j]);
        if (i >= 0)
            return i;
    }
    for (int j = 0; j < cn->nsyn[c]; j++) {
        char *name = trim_copy(cn->syn[c][j]);
        for (int i = 0; name && i < s->n; i++) {
            char *key = trim_copy(s->cls[i]);
            int eq = key && !strcasecmp(key, name);
            free(key);
            if (eq) {
                free(name);
                return i;
            }
        }
        free(name);
    }
    return -1;
}
