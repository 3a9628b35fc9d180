#include "harness/cli/cli.h"
#include "harness/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "harness %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'harness %s --help')\n", cmd);
    return 2;
}

int cli_fail(const char *cmd, int status)
{
    const char *m = hx_errmsg();
    fprintf(stderr, "harness %s: %s\n", cmd, m[0] ? m : "failed (no message)");
    switch (status) {
    case HX_EIO:
    case HX_EFORMAT:
    case HX_EINVAL:
    case HX_ENOTFOUND:
        return 2;
    default:
        return 1;
    }
}

int cli_require(const char *cmd, const char *value, const char *name)
{
    if (value && value[0])
        return 0;
    return cli_usage_error(cmd, "missing required option --%s", name);
}

static int set_value(const char *cmd, const struct cli_opt *o, const char *v)
{
    char *end;
    switch (o->kind) {
    case CLI_STR:
        *(const char **)o->dst = v;
        return 0;
    case CLI_INT: {
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < -2147483647L || x > 2147483647L)
            return cli_usage_error(cmd, "--%s expects an integer, got '%s'", o->name, v);
        *(int *)o->dst = (int)x;
        return 0;
    }
    case CLI_FLOAT: {
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end)
            return cli_usage_error(cmd, "--%s expects a number, got '%s'", o->name, v);
        *(double *)o->dst = x;
        return 0;
    }
    case CLI_FLAG:
        break;
    }
    return cli_usage_error(cmd, "--%s takes no value", o->name);
}

int cli_parse(const char *cmd, int argc, char **argv, const struct cli_opt *opts, int nopts,
              char **pos, int *npos)
{
    *npos = 0;
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] != '-' || a[2] == 0) {
            if (!only_pos && strcmp(a, "--") == 0) {
                only_pos = 1;
                continue;
            }
            pos[(*npos)++] = argv[i];
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const struct cli_opt *o = NULL;
        for (int k = 0; k < nopts; k++)
            if (strlen(opts[k].name) == len && memcmp(opts[k].name, name, len) == 0)
                o = &opts[k];
        if (!o)
            return cli_usage_error(cmd, "unknown option --%.*s", (int)len, name);
        if (o->kind == CLI_FLAG) {
            if (eq)
                return cli_usage_error(cmd, "--%s takes no value", o->name);
            *(int *)o->dst = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v)
            return cli_usage_error(cmd, "--%s needs a value", o->name);
        int rc = set_value(cmd, o, v);
        if (rc)
            return rc;
    }
    return 0;
}

double cli_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

double cli_peak_rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    if (kb < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = (double)ru.ru_maxrss;
    }
    return kb / 1024.0;
}
