#include "harness/llm.h"
#include "harness/atomicio.h"
#include "harness/error.h"

#include <curl/curl.h>
#include <utf8proc.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- request and presets */

void hx_llm_request_defaults(struct hx_llm_request *r)
{
    memset(r, 0, sizeof *r);
    r->n = 5;
    r->samples = 1;
    r->temperature = 0;
    r->max_tokens = 256;
    r->parallel = 4;
    r->max_attempts = 5;
    r->deadline_s = 1800;
    r->timeout_s = 120;
    r->backoff_base_ms = 1000;
    r->backoff_max_ms = 60000;
}

void hx_llm_request_release(struct hx_llm_request *r)
{
    if (!r)
        return;
    free(r->prompt_owned);
    r->prompt_owned = NULL;
}

int hx_llm_request_check(const struct hx_llm_request *r)
{
    if (!r->base_url || !r->base_url[0])
        return hx_err(HX_EINVAL, "LLM request: no base URL (e.g. http://127.0.0.1:8080/v1)");
    if (strncmp(r->base_url, "http://", 7) && strncmp(r->base_url, "https://", 8))
        return hx_err(HX_EINVAL, "LLM request: base URL '%s' is not http:// or https://",
                      r->base_url);
    if (!r->model || !r->model[0])
        return hx_err(HX_EINVAL, "LLM request: no model name");
    if (r->n < 1 || r->n > 1000)
        return hx_err(HX_EINVAL, "LLM request: n must be in 1..1000, got %d", r->n);
    if (r->samples < 1 || r->samples > 1000)
        return hx_err(HX_EINVAL, "LLM request: samples must be in 1..1000, got %d", r->samples);
    if (!(r->temperature >= 0 && r->temperature <= 10))
        return hx_err(HX_EINVAL, "LLM request: temperature must be in 0..10, got %g",
                      r->temperature);
    if (r->max_tokens < 0)
        return hx_err(HX_EINVAL, "LLM request: max tokens must be >= 0, got %d", r->max_tokens);
    if (r->parallel < 1 || r->parallel > 1024)
        return hx_err(HX_EINVAL, "LLM request: parallel must be in 1..1024, got %d",
                      r->parallel);
    if (r->max_attempts < 1 || r->max_attempts > 100)
        return hx_err(HX_EINVAL, "LLM request: max attempts must be in 1..100, got %d",
                      r->max_attempts);
    if (!(r->deadline_s > 0 && r->deadline_s < 1e7))
        return hx_err(HX_EINVAL, "LLM request: deadline must be > 0 seconds, got %g",
                      r->deadline_s);
    if (!(r->timeout_s > 0 && r->timeout_s < 1e7))
        return hx_err(HX_EINVAL, "LLM request: timeout must be > 0 seconds, got %g",
                      r->timeout_s);
    if (r->backoff_base_ms < 0 || r->backoff_max_ms < r->backoff_base_ms)
        return hx_err(HX_EINVAL, "LLM request: backoff must satisfy 0 <= base (%d ms) <= max "
                                 "(%d ms)",
                      r->backoff_base_ms, r->backoff_max_ms);
    return 0;
}

static const char *const preset_names[] = {"chils", "chils-fewshot", "json", NULL};
static const char *const preset_text[] = {
    "Generate a comma separated list of {n} types of the following {context}:\n\n>{class}:",
    "Generate a comma separated list of {n} types of the following {context}:\n\n"
    ">dog: beagle, poodle, dachshund, golden retriever, siberian husky\n\n"
    ">chair: armchair, rocking chair, office chair, folding chair, bar stool\n\n"
    ">{class}:",
    "List {n} types of the following {context}: \"{class}\".\n"
    "Answer with a JSON array of {n} strings and nothing else, for example "
    "[\"first type\", \"second type\"].",
};

const char *hx_llm_prompt_preset(const char *name)
{
    for (int i = 0; name && preset_names[i]; i++)
        if (!strcmp(preset_names[i], name))
            return preset_text[i];
    return NULL;
}

const char *const *hx_llm_prompt_names(void) { return preset_names; }

/* ---------------------------------------------------------------- small strings */

struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(struct sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0)
        sb_add(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* A malloc'ed copy of s with every occurrence of key replaced by "[key]" (keys shorter than
 * 4 bytes are not searched for: they would mangle ordinary text). NULL on allocation
 * failure. */
static char *scrub(const char *s, const char *key)
{
    if (!s)
        return NULL;
    size_t kl = key ? strlen(key) : 0;
    if (kl < 4)
        return strdup(s);
    struct sbuf b = {0};
    const char *p = s, *q;
    while ((q = strstr(p, key))) {
        sb_add(&b, p, (size_t)(q - p));
        sb_str(&b, "[key]");
        p = q + kl;
    }
    sb_str(&b, p);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

int hx_llm_prompt_render(const char *tmpl, const char *cls, int n, const char *context,
                         char **out)
{
    struct sbuf b = {0};
    char num[16];
    snprintf(num, sizeof num, "%d", n);
    sb_add(&b, "", 0);
    for (const char *p = tmpl; *p;) {
        if (!strncmp(p, "{n}", 3)) {
            sb_str(&b, num);
            p += 3;
        } else if (!strncmp(p, "{class}", 7)) {
            sb_str(&b, cls);
            p += 7;
        } else if (!strncmp(p, "{context}", 9)) {
            sb_str(&b, context);
            p += 9;
        } else {
            sb_add(&b, p, 1);
            p++;
        }
    }
    if (b.oom) {
        free(b.p);
        return hx_err(HX_ENOMEM, "out of memory rendering a prompt");
    }
    *out = b.p;
    return 0;
}

/* ---------------------------------------------------------------- answer parsing */

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static int starts_ci(const char *s, const char *w)
{
    for (; *w; s++, w++)
        if (tolower((unsigned char)*s) != *w)
            return 0;
    return 1;
}

/* a comparison key: Unicode case folding (ASCII lowercase when the text is not UTF-8) */
static char *fold(const char *s)
{
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, 0, &dst,
                                      UTF8PROC_NULLTERM | UTF8PROC_STABLE | UTF8PROC_COMPOSE |
                                          UTF8PROC_CASEFOLD);
    if (k >= 0)
        return (char *)dst;
    char *c = strdup(s);
    for (char *p = c; p && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return c;
}

static int count_words(const char *s)
{
    int w = 0, in = 0;
    for (; *s; s++) {
        if (is_space((unsigned char)*s))
            in = 0;
        else if (!in) {
            in = 1;
            w++;
        }
    }
    return w;
}

/* Trim [a, b) of spaces, quotes, brackets, emphasis, a leading "and "/"or " and final
 * punctuation, repeatedly; a malloc'ed copy, or NULL when nothing is left (or no memory). */
static char *clean_item(const char *a, const char *b)
{
    for (int changed = 1; changed && a < b;) {
        changed = 0;
        while (a < b && is_space((unsigned char)*a))
            a++, changed = 1;
        while (b > a && is_space((unsigned char)b[-1]))
            b--, changed = 1;
        if (a >= b)
            break;
        if (*a == '"' || *a == '`' || *a == '*' || *a == '[' || *a == '>' || *a == '_') {
            a++;
            changed = 1;
            continue;
        }
        if (b[-1] == '"' || b[-1] == '`' || b[-1] == '*' || b[-1] == ']' || b[-1] == '.' ||
            b[-1] == ',' || b[-1] == ';' || b[-1] == '!' || b[-1] == '_') {
            b--;
            changed = 1;
            continue;
        }
        /* curly quotes U+201C/U+201D and U+2018/U+2019 at either end */
        if (b - a >= 3 && (unsigned char)a[0] == 0xE2 && (unsigned char)a[1] == 0x80 &&
            ((unsigned char)a[2] == 0x9C || (unsigned char)a[2] == 0x9D ||
             (unsigned char)a[2] == 0x98)) {
            a += 3;
            changed = 1;
            continue;
        }
        if (b - a >= 3 && (unsigned char)b[-3] == 0xE2 && (unsigned char)b[-2] == 0x80 &&
            ((unsigned char)b[-1] == 0x9D || (unsigned char)b[-1] == 0x9C ||
             (unsigned char)b[-1] == 0x99)) {
            b -= 3;
            changed = 1;
            continue;
        }
        if (b - a > 2 && *a == '\'' && b[-1] == '\'') {
            a++, b--;
            changed = 1;
            continue;
        }
        if (b - a > 4 && starts_ci(a, "and ")) {
            a += 4;
            changed = 1;
            continue;
        }
        if (b - a > 3 && starts_ci(a, "or ")) {
            a += 3;
            changed = 1;
            continue;
        }
    }
    if (a >= b)
        return NULL;
    return strndup(a, (size_t)(b - a));
}

struct list {
    char **items;
    char **keys; /* folded, for dedupe */
    int n, cap, limit;
    const char *cls_key;
    int oom;
};

/* Take ownership of item (may be NULL). */
static void list_add(struct list *l, char *item)
{
    if (!item)
        return;
    if ((l->limit > 0 && l->n >= l->limit) || strlen(item) > 100 || count_words(item) > 10) {
        free(item);
        return;
    }
    char *key = fold(item);
    if (!key) {
        free(item);
        l->oom = 1;
        return;
    }
    int drop = l->cls_key && !strcmp(key, l->cls_key);
    for (int i = 0; i < l->n && !drop; i++)
        drop = !strcmp(l->keys[i], key);
    if (drop) {
        free(item);
        free(key);
        return;
    }
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **it = realloc(l->items, (size_t)cap * sizeof *it);
        if (it)
            l->items = it;
        char **ks = realloc(l->keys, (size_t)cap * sizeof *ks);
        if (ks)
            l->keys = ks;
        if (!it || !ks) {
            free(item);
            free(key);
            l->oom = 1;
            return;
        }
        l->cap = cap;
    }
    l->items[l->n] = item;
    l->keys[l->n++] = key;
}

static void list_clear(struct list *l)
{
    hx_llm_list_free(l->items, l->n);
    hx_llm_list_free(l->keys, l->n);
    l->items = l->keys = NULL;
    l->n = l->cap = 0;
}

void hx_llm_list_free(char **items, int count)
{
    for (int i = 0; items && i < count; i++)
        free(items[i]);
    free(items);
}

static int try_json(struct list *l, const char *text)
{
    for (const char *p = strchr(text, '['); p; p = strchr(p + 1, '[')) {
        const char *end = NULL;
        cJSON *a = cJSON_ParseWithOpts(p, &end, 0);
        if (!a)
            continue;
        int strings = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, a) strings += cJSON_IsString(e);
        if (cJSON_IsArray(a) && strings > 0) {
            cJSON_ArrayForEach(e, a) if (cJSON_IsString(e))
            {
                const char *s = e->valuestring;
                list_add(l, clean_item(s, s + strlen(s)));
            }
            cJSON_Delete(a);
            if (l->n > 0)
                return 1;
            continue;
        }
        cJSON_Delete(a);
    }
    return 0;
}

/* Length of a list marker at the start of s (after spaces), 0 when none. */
static size_t marker_len(const char *s)
{
    const char *p = s;
    while (*p == ' ' || *p == '\t')
        p++;
    if ((*p == '-' || *p == '*' || *p == '+') && (p[1] == ' ' || p[1] == '\t'))
        return (size_t)(p + 2 - s);
    if ((unsigned char)p[0] == 0xE2 && (unsigned char)p[1] == 0x80 &&
        (unsigned char)p[2] == 0xA2) /* • */
        return (size_t)(p + 3 - s);
    const char *q = p;
    int paren = *q == '(';
    if (paren)
        q++;
    const char *d = q;
    while (*q >= '0' && *q <= '9')
        q++;
    if (q == d || q - d > 3)
        return 0;
    if (paren ? *q == ')' : (*q == '.' || *q == ')' || *q == ':')) {
        q++;
        if (*q == ' ' || *q == '\t')
            return (size_t)(q + 1 - s);
    }
    return 0;
}

/* An item of a marked line: cut a description after ": " or a spaced dash. */
static char *marked_item(const char *a, const char *b)
{
    static const char *const cuts[] = {": ", ", ", " - ", " \xE2\x80\x93 ", " \xE2\x80\x94 ",
                                       NULL};
    const char *end = b;
    for (int i = 0; cuts[i]; i++) {
        size_t cl = strlen(cuts[i]);
        for (const char *p = a; p + cl <= end; p++)
            if (!memcmp(p, cuts[i], cl)) {
                end = p;
                break;
            }
    }
    if (end > a && end[-1] == ':')
        end--;
    return clean_item(a, end);
}

struct line {
    const char *a, *b;
};

static int split_lines(const char *text, struct line **out)
{
    int n = 1;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    struct line *L = malloc((size_t)n * sizeof *L);
    if (!L)
        return -1;
    int k = 0;
    const char *p = text;
    for (;;) {
        const char *e = strchr(p, '\n');
        if (!e)
            e = p + strlen(p);
        const char *a = p, *b = e;
        while (a < b && is_space((unsigned char)*a))
            a++;
        while (b > a && is_space((unsigned char)b[-1]))
            b--;
        if (b > a)
            L[k++] = (struct line){a, b};
        if (!*e)
            break;
        p = e + 1;
    }
    *out = L;
    return k;
}

static int try_marked(struct list *l, const struct line *L, int nl)
{
    int marked = 0;
    for (int i = 0; i < nl; i++)
        marked += marker_len(L[i].a) > 0;
    if (marked < 2)
        return 0;
    for (int i = 0; i < nl; i++) {
        size_t m = marker_len(L[i].a);
        if (m && L[i].a + m < L[i].b)
            list_add(l, marked_item(L[i].a + m, L[i].b));
    }
    return l->n > 0;
}

static int count_sep(const struct line *ln, char sep)
{
    int c = 0, depth = 0;
    for (const char *p = ln->a; p < ln->b; p++) {
        depth += *p == '(';
        depth -= *p == ')' && depth > 0;
        c += *p == sep && depth == 0;
    }
    return c;
}

/* the text after the last of " are ", " include ", " includes " in [a, b) */
static const char *after_intro(const char *a, const char *b)
{
    static const char *const w[] = {" are ", " include ", " includes ", " such as ", NULL};
    const char *best = a;
    for (int i = 0; w[i]; i++) {
        size_t wl = strlen(w[i]);
        for (const char *p = a; p + wl <= b; p++)
            if (!strncasecmp(p, w[i], wl) && p + wl > best)
                best = p + wl;
    }
    return best;
}

static int try_separated(struct list *l, const struct line *L, int nl)
{
    int best = -1, bestc = 0;
    char sep = ',';
    for (int i = 0; i < nl; i++) {
        int c = count_sep(&L[i], ',');
        if (c > bestc)
            best = i, bestc = c;
    }
    if (best < 0) {
        sep = ';';
        for (int i = 0; i < nl; i++) {
            int c = count_sep(&L[i], ';');
            if (c > bestc)
                best = i, bestc = c;
        }
    }
    if (best < 0)
        return 0;
    const char *a = L[best].a, *b = L[best].b;
    size_t m = marker_len(a);
    a += m;
    const char *first = memchr(a, sep, (size_t)(b - a));
    for (const char *p = first - 1; p >= a; p--)
        if (*p == ':') {
            a = p + 1;
            break;
        }
    int depth = 0, k = 0;
    for (const char *p = a, *s = a;; p++) {
        if (p == b || (*p == sep && depth == 0)) {
            const char *ia = s;
            if (k++ == 0)
                ia = after_intro(s, p);
            list_add(l, clean_item(ia, p));
            if (p == b)
                break;
            s = p + 1;
        } else if (*p == '(') {
            depth++;
        } else if (*p == ')' && depth > 0) {
            depth--;
        }
    }
    return l->n > 0;
}

static int count_words_n(const char *a, const char *b)
{
    int w = 0, in = 0;
    for (; a < b; a++) {
        if (is_space((unsigned char)*a))
            in = 0;
        else if (!in) {
            in = 1;
            w++;
        }
    }
    return w;
}

static int sentence_like(const char *a, const char *b)
{
    char last = b[-1];
    if (last == ':' || last == '?')
        return 1;
    return (last == '.' || last == '!') && count_words_n(a, b) > 3;
}

static int try_plain(struct list *l, const struct line *L, int nl)
{
    int usable = 0;
    for (int i = 0; i < nl; i++)
        usable += !sentence_like(L[i].a, L[i].b);
    if (usable < 2)
        return 0;
    for (int i = 0; i < nl; i++)
        if (!sentence_like(L[i].a, L[i].b))
            list_add(l, marked_item(L[i].a + marker_len(L[i].a), L[i].b));
    return l->n > 0;
}

static int try_single(struct list *l, const struct line *L, int nl)
{
    if (nl != 1)
        return 0;
    const char *a = L[0].a, *b = L[0].b;
    for (const char *p = b - 1; p > a; p--)
        if (*p == ':') {
            a = p + 1;
            break;
        }
    if (a >= b || b[-1] == '.' || b[-1] == '!' || b[-1] == '?' || count_words_n(a, b) > 5 ||
        memchr(a, ',', (size_t)(b - a)) || memchr(a, ';', (size_t)(b - a)))
        return 0;
    list_add(l, clean_item(a + marker_len(a), b));
    return l->n > 0;
}

int hx_llm_parse_list(const char *answer, const char *cls, int n, char ***items, int *count)
{
    struct list l = {0};
    struct line *L = NULL;
    char *ck = NULL, *work = NULL;
    int rc = 0;
    *items = NULL;
    *count = 0;
    l.limit = n;
    if (cls) {
        const char *a = cls, *b = cls + strlen(cls);
        while (a < b && is_space((unsigned char)*a))
            a++;
        while (b > a && is_space((unsigned char)b[-1]))
            b--;
        char *t = strndup(a, (size_t)(b - a));
        ck = t ? fold(t) : NULL;
        free(t);
        if (!ck) {
            rc = hx_err(HX_ENOMEM, "out of memory parsing an answer");
            goto done;
        }
        l.cls_key = ck;
    }
    if (!answer)
        goto done;
    /* reasoning models may think aloud first: only what follows the last </think> counts */
    for (const char *t = strstr(answer, "</think>"); t; t = strstr(t + 1, "</think>"))
        answer = t + 8;
    if (!(work = strdup(answer))) {
        rc = hx_err(HX_ENOMEM, "out of memory parsing an answer");
        goto done;
    }
    /* a model continuing the prompt's pattern goes on with ">other class: ...": keep what
     * comes before such a line */
    int seen_text = 0;
    for (char *p = work; *p;) {
        char *q = p;
        while (*q == ' ' || *q == '\t' || *q == '\r')
            q++;
        char *e = strchr(q, '\n');
        char *colon = strchr(q, ':');
        if (*q == '>' && seen_text && colon && (!e || colon < e)) {
            *p = 0;
            break;
        }
        for (char *k = q; k < (e ? e : q + strlen(q)); k++)
            seen_text |= !is_space((unsigned char)*k);
        if (!e)
            break;
        p = e + 1;
    }
    answer = work;
    int nl = split_lines(answer, &L);
    if (nl < 0) {
        rc = hx_err(HX_ENOMEM, "out of memory parsing an answer");
        goto done;
    }

    int (*const tries[])(struct list *, const struct line *, int) = {try_marked, try_separated,
                                                                     try_plain, try_single};
    if (!try_json(&l, answer) && !l.oom)
        for (size_t t = 0; t < sizeof tries / sizeof tries[0] && !l.oom; t++) {
            if (tries[t](&l, L, nl))
                break;
            list_clear(&l);
        }
    if (l.oom) {
        rc = hx_err(HX_ENOMEM, "out of memory parsing an answer");
        goto done;
    }
    *items = l.items;
    *count = l.n;
    l.items = NULL;
done:
    if (rc)
        hx_llm_list_free(l.items, l.n);
    hx_llm_list_free(l.keys, l.n);
    free(L);
    free(ck);
    free(work);
    return rc;
}

/* The merged list of a class whose every sample has a raw answer: the samples' lists in
 * order, repeats (case-folded) and the class's own name dropped, cut to n. */
static int merge_answers(const struct hx_llm_class_report *c, int n, char ***items, int *count)
{
    int rc = 0;
    const char *a = c->name, *b = a + strlen(a);
    while (a < b && is_space((unsigned char)*a))
        a++;
    while (b > a && is_space((unsigned char)b[-1]))
        b--;
    char *nm = strndup(a, (size_t)(b - a));
    char *ck = nm ? fold(nm) : NULL;
    struct list l = {.limit = n, .cls_key = ck};
    *items = NULL;
    *count = 0;
    for (int s = 0; s < c->nanswers && ck && !rc; s++) {
        char **it;
        int k;
        if ((rc = hx_llm_parse_list(c->answers[s].raw, nm, n, &it, &k)))
            break;
        for (int i = 0; i < k; i++) {
            list_add(&l, it[i]);
            it[i] = NULL;
        }
        hx_llm_list_free(it, k);
    }
    if (!rc && (!ck || l.oom))
        rc = hx_err(HX_ENOMEM, "out of memory merging answers");
    if (rc) {
        list_clear(&l);
    } else {
        *items = l.items;
        *count = l.n;
        hx_llm_list_free(l.keys, l.n);
    }
    free(ck);
    free(nm);
    return rc;
}

/* ---------------------------------------------------------------- report */

void hx_llm_report_free(struct hx_llm_report *rep)
{
    if (!rep)
        return;
    for (int i = 0; rep->cls && i < rep->n_classes; i++) {
        struct hx_llm_class_report *c = &rep->cls[i];
        for (int s = 0; c->answers && s < c->nanswers; s++) {
            free(c->answers[s].raw);
            free(c->answers[s].time);
        }
        free(c->answers);
        free(c->name);
        free(c->prompt);
        free(c->error);
    }
    free(rep->cls);
    free(rep->endpoint);
    memset(rep, 0, sizeof *rep);
}

/* ---------------------------------------------------------------- the run */

enum job_state { JOB_WAITING, JOB_RUNNING, JOB_DONE, JOB_FAILED };

struct job {
    int cls, sample;
    char *body;       /* the request body (the key's "request") */
    cJSON *key;       /* {"endpoint", "request", "sample"} */
    char *cache_path; /* NULL without a cache */
    enum job_state state;
    int attempts;
    double next_at;   /* monotonic seconds: not before */
    CURL *easy;
    struct sbuf resp;
    double retry_after; /* seconds asked by the server in this attempt, < 0 if none */
    char errbuf[CURL_ERROR_SIZE];
    char *error;      /* last failure (scrubbed) */
};

struct run {
    const struct hx_llm_request *req;
    struct hx_llm_report *rep;
    const char *url;
    char *key;        /* the API key (never stored elsewhere) */
    struct curl_slist *hdrs;
    CURLM *multi;
    struct job *jobs;
    int njobs, running;
    double t0, deadline;
    uint64_t rng;
    int abort_all;
    char *abort_msg;
};

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *utc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char buf[96];
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ts.tv_nsec / 1000000) % 1000);
    return strdup(buf);
}

static void run_log(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void run_log(struct run *r, const char *fmt, ...)
{
    if (!r->req->log)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    char *clean = scrub(line, r->key);
    if (clean)
        r->req->log(r->req->log_ctx, clean);
    free(clean);
}

static double jitter01(struct run *r)
{
    /* xorshift64*: jitter only, never part of a result */
    r->rng ^= r->rng >> 12;
    r->rng ^= r->rng << 25;
    r->rng ^= r->rng >> 27;
    return (double)((r->rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static uint64_t fnv1a(const char *s, uint64_t h)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* The cache folder, made when missing, and writable. */
static int cache_folder(const char *dir)
{
    int rc = hx_mkdirs(dir);
    if (!rc && access(dir, W_OK) != 0)
        rc = hx_err(HX_EIO, "cache folder %s is not writable", dir);
    return rc;
}

/* The request body for one class and sample (malloc'ed, canonical compact JSON). */
static char *make_body(const struct hx_llm_request *q, const char *prompt, int sample)
{
    cJSON *o = cJSON_CreateObject(), *msgs = cJSON_CreateArray(), *m = cJSON_CreateObject();
    char *s = NULL;
    if (!o || !msgs || !m) {
        cJSON_Delete(o);
        cJSON_Delete(msgs);
        cJSON_Delete(m);
        return NULL;
    }
    cJSON_AddStringToObject(o, "model", q->model);
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", prompt);
    cJSON_AddItemToArray(msgs, m);
    cJSON_AddItemToObject(o, "messages", msgs);
    cJSON_AddNumberToObject(o, "temperature", q->temperature);
    if (q->max_tokens > 0)
        cJSON_AddNumberToObject(o, "max_tokens", q->max_tokens);
    if (q->has_seed)
        cJSON_AddNumberToObject(o, "seed", (double)(q->seed + sample));
    s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* Parse a stored answer; 1 when it yields a usable list. */
static int usable(const char *raw, const char *cls, int n)
{
    char **items;
    int count;
    if (hx_llm_parse_list(raw, cls, n, &items, &count))
        return 0;
    hx_llm_list_free(items, count);
    return count > 0;
}

/* Look the job's answer up in the cache: 1 and the report filled when found. */
static int cache_load(struct run *r, struct job *j, const char *cls_trim)
{
    uint8_t *text = NULL;
    size_t len;
    int found = 0;
    if (!j->cache_path || access(j->cache_path, R_OK) != 0)
        return 0;
    if (hx_read_file(j->cache_path, &text, &len))
        return 0;
    cJSON *e = cJSON_ParseWithLength((const char *)text, len);
    free(text);
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(e, "key");
    const cJSON *raw = cJSON_GetObjectItemCaseSensitive(e, "raw");
    const cJSON *time = cJSON_GetObjectItemCaseSensitive(e, "time");
    if (key && cJSON_Compare(key, j->key, 1) && cJSON_IsString(raw) &&
        usable(raw->valuestring, cls_trim, r->req->n)) {
        struct hx_llm_answer *a = &r->rep->cls[j->cls].answers[j->sample];
        a->raw = scrub(raw->valuestring, r->key);
        a->time = strdup(cJSON_IsString(time) ? time->valuestring : "");
        a->from_cache = 1;
        found = a->raw && a->time;
    }
    cJSON_Delete(e);
    return found;
}

static int cache_store(struct run *r, struct job *j)
{
    const struct hx_llm_answer *a = &r->rep->cls[j->cls].answers[j->sample];
    cJSON *e = cJSON_CreateObject();
    cJSON *k = cJSON_Duplicate(j->key, 1);
    if (!e || !k) {
        cJSON_Delete(e);
        cJSON_Delete(k);
        return hx_err(HX_ENOMEM, "out of memory writing a cache entry");
    }
    cJSON_AddItemToObject(e, "key", k);
    cJSON_AddStringToObject(e, "raw", a->raw);
    cJSON_AddStringToObject(e, "time", a->time);
    cJSON_AddNumberToObject(e, "attempts", a->attempts);
    char *s = cJSON_Print(e);
    cJSON_Delete(e);
    if (!s)
        return hx_err(HX_ENOMEM, "out of memory writing a cache entry");
    int rc = hx_write_atomic(j->cache_path, s, strlen(s));
    free(s);
    return rc;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct job *j = ud;
    size_t n = size * nmemb;
    if (j->resp.len + n > ((size_t)8 << 20)) /* 8 MiB: no chat answer is that long */
        return 0;
    sb_add(&j->resp, p, n);
    return j->resp.oom ? 0 : n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct job *j = ud;
    size_t n = size * nmemb;
    char line[256];
    if (n >= sizeof line)
        return n;
    memcpy(line, p, n);
    line[n] = 0;
    while (n && (line[n - 1] == '\r' || line[n - 1] == '\n'))
        line[--n] = 0;
    if (!strncasecmp(line, "HTTP/", 5)) { /* a new response (e.g. after a 100) */
        j->retry_after = -1;
        return size * nmemb;
    }
    char *v = strchr(line, ':');
    if (!v)
        return size * nmemb;
    *v++ = 0;
    while (*v == ' ' || *v == '\t')
        v++;
    if (!strcasecmp(line, "retry-after-ms")) {
        char *end;
        double ms = strtod(v, &end);
        if (end != v && ms >= 0 && ms / 1000 > j->retry_after)
            j->retry_after = ms / 1000;
    } else if (!strcasecmp(line, "retry-after")) {
        char *end;
        double s = strtod(v, &end);
        if (end == v) {
            time_t t = curl_getdate(v, NULL);
            s = t > 0 ? difftime(t, time(NULL)) : -1;
            if (t > 0 && s < 0)
                s = 0;
        }
        if (s >= 0 && s > j->retry_after)
            j->retry_after = s;
    }
    return size * nmemb;
}

static int start_job(struct run *r, struct job *j, double now)
{
    CURL *e = curl_easy_init();
    if (!e)
        return hx_err(HX_ENOMEM, "cannot create an HTTP handle");
    j->resp.len = 0;
    if (j->resp.p)
        j->resp.p[0] = 0;
    j->resp.oom = 0;
    j->retry_after = -1;
    j->errbuf[0] = 0;
    double left = r->deadline - now;
    double t = r->req->timeout_s < left ? r->req->timeout_s : left;
    long tms = (long)(t * 1000) > 1 ? (long)(t * 1000) : 1;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(j->body));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, tms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, tms < 30000 ? tms : 30000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "harness-subclasses/1");
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, j);
    if (curl_multi_add_handle(r->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        return hx_err(HX_ENET, "cannot start an HTTP transfer");
    }
    j->easy = e;
    j->state = JOB_RUNNING;
    j->attempts++;
    r->running++;
    r->rep->n_sent++;
    return 0;
}

static void stop_job(struct run *r, struct job *j)
{
    if (!j->easy)
        return;
    curl_multi_remove_handle(r->multi, j->easy);
    curl_easy_cleanup(j->easy);
    j->easy = NULL;
    r->running--;
}

static void fail_job(struct run *r, struct job *j, const char *msg)
{
    free(j->error);
    j->error = scrub(msg, r->key);
    j->state = JOB_FAILED;
}

/* The server's message of an error response: error.message, else the body's start. */
static void server_message(const char *body, char *out, size_t cap)
{
    cJSON *o = cJSON_Parse(body);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
    const cJSON *m = cJSON_IsObject(err) ? cJSON_GetObjectItemCaseSensitive(err, "message")
                                         : err;
    if (!cJSON_IsString(m))
        m = cJSON_GetObjectItemCaseSensitive(o, "message");
    if (!cJSON_IsString(m))
        m = cJSON_GetObjectItemCaseSensitive(o, "detail");
    if (cJSON_IsString(m))
        snprintf(out, cap, "%s", m->valuestring);
    else
        snprintf(out, cap, "%.300s", body && body[0] ? body : "(empty body)");
    for (char *p = out; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    cJSON_Delete(o);
}

/* The answer text of a 2xx body, or a reason in why. */
static char *answer_text(const char *body, char *why, size_t cap)
{
    cJSON *o = cJSON_Parse(body);
    char *out = NULL;
    if (!o) {
        snprintf(why, cap, "malformed response: not JSON");
        goto done;
    }
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
    if (!cJSON_IsArray(ch)) {
        snprintf(why, cap, "malformed response: no \"choices\" array");
        goto done;
    }
    if (cJSON_GetArraySize(ch) == 0) {
        snprintf(why, cap, "response has an empty choice list");
        goto done;
    }
    const cJSON *c0 = cJSON_GetArrayItem(ch, 0);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(c0, "message");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    if (!cJSON_IsString(content))
        content = cJSON_GetObjectItemCaseSensitive(c0, "text");
    if (!cJSON_IsString(content)) {
        snprintf(why, cap, "malformed response: choices[0] has no message content");
        goto done;
    }
    out = strdup(content->valuestring);
    if (!out)
        snprintf(why, cap, "out of memory");
done:
    cJSON_Delete(o);
    return out;
}

static const char *trimmed_name(const struct run *r, int cls, char *buf, size_t cap);

/* Schedule another attempt or fail the job for good. */
static void retry_or_fail(struct run *r, struct job *j, const char *why, double now)
{
    const char *name = r->rep->cls[j->cls].name;
    char msg[1024];
    if (j->attempts >= r->req->max_attempts) {
        snprintf(msg, sizeof msg, "%s (after %d attempt%s)", why, j->attempts,
                 j->attempts == 1 ? "" : "s");
        fail_job(r, j, msg);
        run_log(r, "%s: sample %d failed: %s", name, j->sample, msg);
        return;
    }
    double d = r->req->backoff_base_ms / 1000.0 * pow(2.0, j->attempts - 1);
    double cap = r->req->backoff_max_ms / 1000.0;
    if (d > cap)
        d = cap;
    d = d / 2 + d / 2 * jitter01(r);
    if (j->retry_after >= 0 && j->retry_after > d)
        d = j->retry_after;
    if (now + d >= r->deadline) {
        snprintf(msg, sizeof msg, "%s (after %d attempt%s; the next would pass the deadline)",
                 why, j->attempts, j->attempts == 1 ? "" : "s");
        fail_job(r, j, msg);
        run_log(r, "%s: sample %d failed: %s", name, j->sample, msg);
        return;
    }
    j->next_at = now + d;
    j->state = JOB_WAITING;
    run_log(r, "%s: sample %d: %s; retry %d of %d in %.2f s", name, j->sample, why,
            j->attempts + 1, r->req->max_attempts, d);
}

static int finish_job(struct run *r, struct job *j, CURLcode res, double now)
{
    long code = 0;
    char why[800];
    struct hx_llm_class_report *c = &r->rep->cls[j->cls];
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &code);
    stop_job(r, j);
    const char *body = j->resp.p ? j->resp.p : "";
    if (res != CURLE_OK) {
        const char *e = j->errbuf[0] ? j->errbuf : curl_easy_strerror(res);
        switch (res) {
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
        case CURLE_NOT_BUILT_IN:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_ISSUER_ERROR:
            snprintf(why, sizeof why, "%s", e);
            fail_job(r, j, why);
            r->abort_all = 1;
            if (!r->abort_msg)
                r->abort_msg = scrub(why, r->key);
            run_log(r, "%s: %s", c->name, why);
            return 0;
        case CURLE_OPERATION_TIMEDOUT:
            snprintf(why, sizeof why, "timed out: %s", e);
            break;
        case CURLE_WRITE_ERROR:
            snprintf(why, sizeof why, "response too large or out of memory");
            break;
        default:
            snprintf(why, sizeof why, "connection error: %s", e);
        }
        retry_or_fail(r, j, why, now);
        return 0;
    }
    if (code == 429 || code == 408 || code == 409 || code == 425 || code >= 500) {
        char sm[400];
        server_message(body, sm, sizeof sm);
        snprintf(why, sizeof why, "HTTP %ld: %s", code, sm);
        retry_or_fail(r, j, why, now);
        return 0;
    }
    if (code < 200 || code >= 300) {
        char sm[600];
        server_message(body, sm, sizeof sm);
        snprintf(why, sizeof why, "HTTP %ld from %s: %s", code, r->url, sm);
        fail_job(r, j, why);
        run_log(r, "%s: sample %d failed: %s", c->name, j->sample, j->error);
        if (code == 401 || code == 403) {
            r->abort_all = 1;
            if (!r->abort_msg)
                r->abort_msg = scrub(why, r->key);
        }
        return 0;
    }
    char *text = answer_text(body, why, sizeof why);
    if (!text) {
        retry_or_fail(r, j, why, now);
        return 0;
    }
    char *clean = scrub(text, r->key);
    free(text);
    if (!clean)
        return hx_err(HX_ENOMEM, "out of memory keeping an answer");
    char nb[512];
    if (!usable(clean, trimmed_name(r, j->cls, nb, sizeof nb), r->req->n)) {
        snprintf(why, sizeof why, "answer holds no usable list: \"%.160s\"", clean);
        for (char *p = why; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        free(clean);
        retry_or_fail(r, j, why, now);
        return 0;
    }
    struct hx_llm_answer *a = &c->answers[j->sample];
    free(a->raw);
    free(a->time);
    a->raw = clean;
    a->time = utc_now();
    a->attempts = j->attempts;
    a->from_cache = 0;
    if (!a->time)
        return hx_err(HX_ENOMEM, "out of memory keeping an answer");
    j->state = JOB_DONE;
    if (j->cache_path) {
        int rc = cache_store(r, j);
        if (rc) {
            fail_job(r, j, hx_errmsg());
            run_log(r, "%s: %s", c->name, j->error);
        }
    }
    return 0;
}

static const char *trimmed_name(const struct run *r, int cls, char *buf, size_t cap)
{
    const char *a = r->rep->cls[cls].name, *b = a + strlen(a);
    while (a < b && is_space((unsigned char)*a))
        a++;
    while (b > a && is_space((unsigned char)b[-1]))
        b--;
    snprintf(buf, cap, "%.*s", (int)(b - a), a);
    return buf;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static int run_transfers(struct run *r)
{
    int rc = 0;
    for (;;) {
        double now = mono_now();
        int pending = 0;
        double next = r->deadline;
        for (int i = 0; i < r->njobs; i++) {
            struct job *j = &r->jobs[i];
            if (j->state == JOB_RUNNING)
                pending++;
            if (j->state != JOB_WAITING)
                continue;
            if (r->abort_all) {
                char msg[700];
                snprintf(msg, sizeof msg, "not sent: %s", r->abort_msg ? r->abort_msg : "");
                fail_job(r, j, msg);
                continue;
            }
            pending++;
            if (j->next_at <= now && r->running < r->req->parallel) {
                if ((rc = start_job(r, j, now)))
                    return rc;
            } else if (j->next_at > now && j->next_at < next) {
                next = j->next_at; /* a job waiting only for a free slot wakes with it */
            }
        }
        if (!pending)
            return 0;
        if (now >= r->deadline) {
            char msg[128];
            snprintf(msg, sizeof msg, "no answer within the deadline of %g s",
                     r->req->deadline_s);
            for (int i = 0; i < r->njobs; i++) {
                struct job *j = &r->jobs[i];
                if (j->state != JOB_RUNNING && j->state != JOB_WAITING)
                    continue;
                stop_job(r, j);
                char full[900];
                if (j->error)
                    snprintf(full, sizeof full, "%s (last: %.700s)", msg, j->error);
                else
                    snprintf(full, sizeof full, "%s", msg);
                fail_job(r, j, full);
            }
            run_log(r, "deadline of %g s reached", r->req->deadline_s);
            return 0;
        }
        int still = 0;
        curl_multi_perform(r->multi, &still);
        CURLMsg *m;
        int left, finished = 0;
        while ((m = curl_multi_info_read(r->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct job *j = NULL;
            CURLcode res = m->data.result;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
            if ((rc = finish_job(r, j, res, mono_now())))
                return rc;
            finished++;
        }
        if (finished) /* look at the states again before waiting */
            continue;
        now = mono_now();
        double wait = (r->running ? 0.1 : next - now);
        if (next - now < wait)
            wait = next - now;
        if (r->deadline - now < wait)
            wait = r->deadline - now;
        int ms = wait > 0 ? (int)(wait * 1000) + 1 : 0;
        if (ms > 0)
            curl_multi_poll(r->multi, NULL, 0, ms, NULL);
    }
}

int hx_llm_subclasses(const struct hx_llm_request *req, const char *const *classes, int ncls,
                      const char *cache_dir, struct hx_subclasses *out,
                      struct hx_llm_report *rep)
{
    struct run r = {0};
    int rc = 0;
    char *url = NULL;
    memset(out, 0, sizeof *out);
    memset(rep, 0, sizeof *rep);
    r.req = req;
    r.rep = rep;
    if ((rc = hx_llm_request_check(req)))
        return rc;
    if (ncls < 0 || (ncls > 0 && !classes))
        return hx_err(HX_EINVAL, "LLM request: no class list");
    for (int i = 0; i < ncls; i++) {
        if (!classes[i] || !classes[i][0])
            return hx_err(HX_EINVAL, "LLM request: class %d has an empty name", i + 1);
        for (int k = 0; k < i; k++)
            if (!strcmp(classes[i], classes[k]))
                return hx_err(HX_EINVAL, "LLM request: class \"%s\" is listed twice",
                              classes[i]);
    }
    const char *tmpl = req->prompt ? req->prompt : hx_llm_prompt_preset(HX_LLM_DEFAULT_PROMPT);
    const char *context = req->context ? req->context : HX_LLM_DEFAULT_CONTEXT;
    const char *key_env = req->key_env ? req->key_env : HX_LLM_DEFAULT_KEY_ENV;
    const char *key = key_env[0] ? getenv(key_env) : NULL;
    if (key && key[0] && !(r.key = strdup(key)))
        return hx_err(HX_ENOMEM, "out of memory");

    /* the endpoint */
    size_t bl = strlen(req->base_url);
    while (bl > 0 && req->base_url[bl - 1] == '/')
        bl--;
    static const char suffix[] = "/chat/completions";
    int has_suffix = bl >= sizeof suffix - 1 &&
                     !memcmp(req->base_url + bl - (sizeof suffix - 1), suffix, sizeof suffix - 1);
    url = hx_malloc(bl + sizeof suffix, "URL");
    if (!url) {
        rc = HX_ENOMEM;
        goto done;
    }
    snprintf(url, bl + sizeof suffix, "%.*s%s", (int)bl, req->base_url, has_suffix ? "" : suffix);
    r.url = url;
    rep->endpoint = scrub(url, r.key);
    if (!rep->endpoint) {
        rc = hx_err(HX_ENOMEM, "out of memory");
        goto done;
    }
    if (cache_dir && !req->offline && (rc = cache_folder(cache_dir))) /* offline only reads */
        goto done;

    /* the report and the jobs */
    rep->cls = hx_calloc((size_t)(ncls ? ncls : 1), sizeof *rep->cls, "LLM report");
    r.jobs = hx_calloc((size_t)(ncls ? ncls : 1) * (size_t)req->samples, sizeof *r.jobs,
                       "LLM requests");
    if (!rep->cls || !r.jobs) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int i = 0; i < ncls; i++) {
        struct hx_llm_class_report *c = &rep->cls[i];
        rep->n_classes = i + 1;
        char nb[512];
        c->name = strdup(classes[i]);
        c->answers = calloc((size_t)req->samples, sizeof *c->answers);
        if (!c->name || !c->answers) {
            rc = hx_err(HX_ENOMEM, "out of memory");
            goto done;
        }
        c->nanswers = req->samples;
        if ((rc = hx_llm_prompt_render(tmpl, trimmed_name(&r, i, nb, sizeof nb), req->n, context,
                                       &c->prompt)))
            goto done;
        for (int s = 0; s < req->samples; s++) {
            struct job *j = &r.jobs[r.njobs++];
            j->cls = i;
            j->sample = s;
            c->answers[s].sample = s;
            c->answers[s].seed = req->has_seed ? req->seed + s : 0;
            j->body = make_body(req, c->prompt, s);
            cJSON *kb = j->body ? cJSON_Parse(j->body) : NULL;
            j->key = cJSON_CreateObject();
            if (!kb || !j->key) {
                cJSON_Delete(kb);
                rc = hx_err(HX_ENOMEM, "out of memory building a request");
                goto done;
            }
            cJSON_AddStringToObject(j->key, "endpoint", url);
            cJSON_AddItemToObject(j->key, "request", kb);
            cJSON_AddNumberToObject(j->key, "sample", s);
            if (cache_dir) {
                char *ks = cJSON_PrintUnformatted(j->key);
                if (!ks) {
                    rc = hx_err(HX_ENOMEM, "out of memory building a request");
                    goto done;
                }
                uint64_t h1 = fnv1a(ks, 0xcbf29ce484222325ULL);
                uint64_t h2 = fnv1a(ks, 0x84222325cbf29ce4ULL ^ strlen(ks));
                free(ks);
                size_t pl = strlen(cache_dir) + 48;
                j->cache_path = hx_malloc(pl, "cache path");
                if (!j->cache_path) {
                    rc = HX_ENOMEM;
                    goto done;
                }
                snprintf(j->cache_path, pl, "%s/%016llx%016llx.json", cache_dir,
                         (unsigned long long)h1, (unsigned long long)h2);
            }
            if (cache_load(&r, j, nb)) {
                j->state = JOB_DONE;
                rep->n_cached++;
            } else if (req->offline) {
                fail_job(&r, j, "no cached answer (offline: nothing is sent)");
            }
        }
    }

    /* the transfers */
    int need = 0;
    for (int i = 0; i < r.njobs; i++)
        need += r.jobs[i].state == JOB_WAITING;
    if (need) {
        pthread_once(&curl_once, curl_init);
        if (curl_init_rc != CURLE_OK) {
            rc = hx_err(HX_ENET, "cannot initialise libcurl: %s",
                        curl_easy_strerror(curl_init_rc));
            goto done;
        }
        struct curl_slist *h = NULL, *t;
        const char *fixed[] = {"Content-Type: application/json", "Accept: application/json",
                               "Expect:"};
        for (size_t i = 0; i < 3; i++) {
            if (!(t = curl_slist_append(h, fixed[i])))
                break;
            h = t;
        }
        r.hdrs = h;
        if (r.key) {
            size_t al = strlen(r.key) + 32;
            char *auth = malloc(al);
            if (auth) {
                snprintf(auth, al, "Authorization: Bearer %s", r.key);
                t = curl_slist_append(r.hdrs, auth);
                memset(auth, 0, al);
                free(auth);
                if (t)
                    r.hdrs = t;
                else
                    r.hdrs = NULL;
            }
            if (!auth || !r.hdrs) {
                curl_slist_free_all(h);
                r.hdrs = NULL;
                rc = hx_err(HX_ENOMEM, "out of memory building the request headers");
                goto done;
            }
        }
        r.multi = curl_multi_init();
        if (!r.multi || !r.hdrs) {
            rc = hx_err(HX_ENOMEM, "cannot create the HTTP client");
            goto done;
        }
        curl_multi_setopt(r.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)req->parallel);
        r.t0 = mono_now();
        r.deadline = r.t0 + req->deadline_s;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r.rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
        if (!r.rng)
            r.rng = 88172645463325252ULL;
        for (int i = 0; i < r.njobs; i++)
            r.jobs[i].next_at = r.t0;
        run_log(&r, "%d request%s to send, %d answer%s cached", need, need == 1 ? "" : "s",
                rep->n_cached, rep->n_cached == 1 ? "" : "s");
        if ((rc = run_transfers(&r)))
            goto done;
    }

    /* merge the samples, class by class */
    out->cls = hx_calloc((size_t)(ncls ? ncls : 1), sizeof(char *), "subclass list");
    out->nsub = hx_calloc((size_t)(ncls ? ncls : 1), sizeof(int), "subclass list");
    out->sub = hx_calloc((size_t)(ncls ? ncls : 1), sizeof(char **), "subclass list");
    if (!out->cls || !out->nsub || !out->sub) {
        rc = HX_ENOMEM;
        goto done;
    }
    for (int i = 0; i < ncls; i++) {
        struct hx_llm_class_report *c = &rep->cls[i];
        struct sbuf why = {0};
        for (int s = 0; s < req->samples; s++) {
            struct job *j = &r.jobs[i * req->samples + s];
            if (j->state != JOB_DONE) {
                if (why.len)
                    sb_str(&why, "; ");
                if (req->samples > 1)
                    sb_printf(&why, "sample %d: ", s);
                sb_str(&why, j->error ? j->error : "no answer");
            }
        }
        if (why.oom) {
            free(why.p);
            rc = hx_err(HX_ENOMEM, "out of memory");
            goto done;
        }
        if (why.len) {
            c->error = why.p;
            rep->n_failed++;
            continue;
        }
        char **items;
        int count;
        if ((rc = merge_answers(c, req->n, &items, &count)))
            goto done;
        c->ok = 1;
        int k = out->n;
        out->cls[k] = strdup(classes[i]);
        out->sub[k] = items;
        out->nsub[k] = count;
        out->n = k + 1;
        if (!out->cls[k]) {
            rc = hx_err(HX_ENOMEM, "out of memory");
            goto done;
        }
    }
    if (rep->n_failed) {
        struct sbuf m = {0};
        sb_printf(&m, "%d of %d class%s got no answer:", rep->n_failed, ncls,
                  ncls == 1 ? "" : "es");
        for (int i = 0, k = 0; i < ncls; i++)
            if (!rep->cls[i].ok)
                sb_printf(&m, "%s %s (%.200s)", k++ ? "," : "", rep->cls[i].name,
                          rep->cls[i].error);
        rc = hx_err(HX_ENET, "%s", m.p ? m.p : "some classes got no answer");
        free(m.p);
    }
done:
    for (int i = 0; r.jobs && i < r.njobs; i++) {
        struct job *j = &r.jobs[i];
        stop_job(&r, j);
        free(j->body);
        cJSON_Delete(j->key);
        free(j->cache_path);
        free(j->resp.p);
        free(j->error);
    }
    free(r.jobs);
    if (r.multi)
        curl_multi_cleanup(r.multi);
    for (struct curl_slist *h = r.hdrs; h; h = h->next) /* one holds the key */
        memset(h->data, 0, strlen(h->data));
    curl_slist_free_all(r.hdrs);
    if (r.key) {
        memset(r.key, 0, strlen(r.key));
        free(r.key);
    }
    free(r.abort_msg);
    free(url);
    if (rc && rc != HX_ENET)
        hx_subclasses_free(out);
    return rc;
}

/* ---------------------------------------------------------------- provenance */

int hx_llm_provenance_write(const char *path, const struct hx_llm_request *req,
                            const struct hx_llm_report *rep)
{
    int rc = 0;
    char *text = NULL, *created = utc_now();
    const char *key_env = req->key_env ? req->key_env : HX_LLM_DEFAULT_KEY_ENV;
    const char *key = key_env[0] ? getenv(key_env) : NULL;
    cJSON *root = cJSON_CreateObject(), *classes = cJSON_CreateObject();
    cJSON *failed = cJSON_CreateArray();
    if (!root || !classes || !failed || !created) {
        cJSON_Delete(classes);
        cJSON_Delete(failed);
        rc = hx_err(HX_ENOMEM, "out of memory writing the provenance");
        goto done;
    }
    cJSON_AddStringToObject(root, "created", created);
    cJSON_AddStringToObject(root, "endpoint", rep->endpoint ? rep->endpoint : "");
    cJSON_AddStringToObject(root, "model", req->model ? req->model : "");
    cJSON_AddNumberToObject(root, "requests_sent", rep->n_sent);
    cJSON_AddNumberToObject(root, "answers_from_cache", rep->n_cached);
    cJSON_AddItemToObject(root, "classes", classes);
    cJSON_AddItemToObject(root, "failed", failed);
    for (int i = 0; i < rep->n_classes; i++) {
        const struct hx_llm_class_report *c = &rep->cls[i];
        cJSON *o = cJSON_CreateObject(), *p = cJSON_CreateObject(), *ans = cJSON_CreateArray();
        if (!o || !p || !ans) {
            cJSON_Delete(o);
            cJSON_Delete(p);
            cJSON_Delete(ans);
            rc = hx_err(HX_ENOMEM, "out of memory writing the provenance");
            goto done;
        }
        cJSON_AddItemToObject(classes, c->name, o);
        cJSON_AddStringToObject(o, "endpoint", rep->endpoint ? rep->endpoint : "");
        cJSON_AddStringToObject(o, "model", req->model ? req->model : "");
        cJSON_AddStringToObject(o, "prompt", c->prompt ? c->prompt : "");
        cJSON_AddItemToObject(o, "parameters", p);
        cJSON_AddNumberToObject(p, "n", req->n);
        cJSON_AddNumberToObject(p, "samples", req->samples);
        cJSON_AddNumberToObject(p, "temperature", req->temperature);
        if (req->max_tokens > 0)
            cJSON_AddNumberToObject(p, "max_tokens", req->max_tokens);
        if (req->has_seed)
            cJSON_AddNumberToObject(p, "seed", (double)req->seed);
        else
            cJSON_AddNullToObject(p, "seed");
        cJSON_AddStringToObject(p, "context",
                                req->context ? req->context : HX_LLM_DEFAULT_CONTEXT);
        cJSON_AddStringToObject(p, "prompt_template",
                                req->prompt ? req->prompt
                                            : hx_llm_prompt_preset(HX_LLM_DEFAULT_PROMPT));
        cJSON_AddItemToObject(o, "answers", ans);
        for (int s = 0; s < c->nanswers; s++) {
            const struct hx_llm_answer *a = &c->answers[s];
            cJSON *e = cJSON_CreateObject();
            if (!e) {
                rc = hx_err(HX_ENOMEM, "out of memory writing the provenance");
                goto done;
            }
            cJSON_AddItemToArray(ans, e);
            cJSON_AddNumberToObject(e, "sample", a->sample);
            if (req->has_seed)
                cJSON_AddNumberToObject(e, "seed", (double)a->seed);
            if (a->raw) {
                cJSON_AddStringToObject(e, "raw", a->raw);
                cJSON_AddStringToObject(e, "time", a->time ? a->time : "");
                cJSON_AddBoolToObject(e, "from_cache", a->from_cache);
                cJSON_AddNumberToObject(e, "attempts", a->attempts);
            } else {
                cJSON_AddNullToObject(e, "raw");
            }
        }
        if (c->ok) {
            /* the merged list, as hx_llm_subclasses made it */
            char **items;
            int count;
            cJSON *list = cJSON_CreateArray();
            if (!list || (rc = merge_answers(c, req->n, &items, &count))) {
                cJSON_Delete(list);
                rc = rc ? rc : hx_err(HX_ENOMEM, "out of memory writing the provenance");
                goto done;
            }
            cJSON_AddItemToObject(o, "subclasses", list);
            for (int k = 0; k < count; k++)
                cJSON_AddItemToArray(list, cJSON_CreateString(items[k]));
            hx_llm_list_free(items, count);
        } else {
            cJSON_AddStringToObject(o, "error", c->error ? c->error : "");
            cJSON_AddItemToArray(failed, cJSON_CreateString(c->name));
        }
    }
    text = cJSON_Print(root);
    if (!text) {
        rc = hx_err(HX_ENOMEM, "out of memory writing the provenance");
        goto done;
    }
    /* every stored text is scrubbed already; this guards the file as a whole */
    if (key && strlen(key) >= 4 && strstr(text, key)) {
        rc = hx_err(HX_EINTERNAL, "provenance for %s would hold the API key: not written", path);
        goto done;
    }
    size_t len = strlen(text);
    text[len] = '\n';
    rc = hx_write_atomic(path, text, len + 1);
    text[len] = 0;
done:
    free(text);
    free(created);
    cJSON_Delete(root);
    return rc;
}

/* ---------------------------------------------------------------- config */

static int json_int(const cJSON *v, const char *what, const char *name, int lo, int *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > 2147483647.0)
        return hx_err(HX_EINVAL, "%s: \"%s\" must be an integer >= %d", what, name, lo);
    *out = (int)v->valuedouble;
    return 0;
}

static int json_num(const cJSON *v, const char *what, const char *name, double *out)
{
    if (!cJSON_IsNumber(v))
        return hx_err(HX_EINVAL, "%s: \"%s\" must be a number", what, name);
    *out = v->valuedouble;
    return 0;
}

static int json_str(const cJSON *v, const char *what, const char *name, const char **out)
{
    if (!cJSON_IsString(v))
        return hx_err(HX_EINVAL, "%s: \"%s\" must be a string", what, name);
    *out = v->valuestring;
    return 0;
}

int hx_llm_request_from_json(struct hx_llm_request *r, const cJSON *obj, const char *what)
{
    if (!cJSON_IsObject(obj))
        return hx_err(HX_EINVAL, "%s: the LLM request must be an object", what);
    const cJSON *v;
    int rc = 0;
    cJSON_ArrayForEach(v, obj)
    {
        const char *k = v->string ? v->string : "";
        const char *s = NULL;
        if (!strcmp(k, "base_url"))
            rc = json_str(v, what, k, &r->base_url);
        else if (!strcmp(k, "model"))
            rc = json_str(v, what, k, &r->model);
        else if (!strcmp(k, "context"))
            rc = json_str(v, what, k, &r->context);
        else if (!strcmp(k, "key_env"))
            rc = json_str(v, what, k, &r->key_env);
        else if (!strcmp(k, "prompt")) {
            if (!(rc = json_str(v, what, k, &s))) {
                r->prompt = hx_llm_prompt_preset(s);
                if (!r->prompt)
                    rc = hx_err(HX_EINVAL,
                                "%s: unknown prompt preset \"%s\" (chils, chils-fewshot, json; "
                                "a template goes in \"prompt_text\" or \"prompt_file\")",
                                what, s);
            }
        } else if (!strcmp(k, "prompt_text")) {
            rc = json_str(v, what, k, &r->prompt);
        } else if (!strcmp(k, "prompt_file")) {
            uint8_t *t;
            size_t len;
            if (!(rc = json_str(v, what, k, &s)) && !(rc = hx_read_file(s, &t, &len))) {
                if (memchr(t, 0, len)) {
                    free(t);
                    rc = hx_err(HX_EINVAL, "%s: prompt file %s holds a NUL byte", what, s);
                } else {
                    char *p = realloc(t, len + 1);
                    if (!p) {
                        free(t);
                        rc = hx_err(HX_ENOMEM, "out of memory reading %s", s);
                    } else {
                        if (len && p[len - 1] == '\n')
                            len--;
                        if (len && p[len - 1] == '\r')
                            len--;
                        p[len] = 0;
                        free(r->prompt_owned);
                        r->prompt = r->prompt_owned = p;
                    }
                }
            }
        } else if (!strcmp(k, "n"))
            rc = json_int(v, what, k, 1, &r->n);
        else if (!strcmp(k, "samples"))
            rc = json_int(v, what, k, 1, &r->samples);
        else if (!strcmp(k, "max_tokens"))
            rc = json_int(v, what, k, 0, &r->max_tokens);
        else if (!strcmp(k, "parallel"))
            rc = json_int(v, what, k, 1, &r->parallel);
        else if (!strcmp(k, "max_attempts"))
            rc = json_int(v, what, k, 1, &r->max_attempts);
        else if (!strcmp(k, "backoff_base_ms"))
            rc = json_int(v, what, k, 0, &r->backoff_base_ms);
        else if (!strcmp(k, "backoff_max_ms"))
            rc = json_int(v, what, k, 0, &r->backoff_max_ms);
        else if (!strcmp(k, "temperature"))
            rc = json_num(v, what, k, &r->temperature);
        else if (!strcmp(k, "deadline"))
            rc = json_num(v, what, k, &r->deadline_s);
        else if (!strcmp(k, "timeout"))
            rc = json_num(v, what, k, &r->timeout_s);
        else if (!strcmp(k, "seed")) {
            if (cJSON_IsNull(v))
                r->has_seed = 0;
            else if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
                     fabs(v->valuedouble) > 9007199254740992.0)
                rc = hx_err(HX_EINVAL, "%s: \"seed\" must be an integer or null", what);
            else {
                r->has_seed = 1;
                r->seed = (long long)v->valuedouble;
            }
        } else if (!strcmp(k, "offline")) {
            if (!cJSON_IsBool(v))
                rc = hx_err(HX_EINVAL, "%s: \"offline\" must be true or false", what);
            else
                r->offline = cJSON_IsTrue(v);
        } else if (!strcmp(k, "api_key") || !strcmp(k, "key")) {
            rc = hx_err(HX_EINVAL,
                        "%s: \"%s\" is not accepted: put the key in an environment variable "
                        "and name it with \"key_env\"",
                        what, k);
        } else {
            rc = hx_err(HX_EINVAL, "%s: unknown LLM request field \"%s\"", what, k);
        }
        if (rc)
            return rc;
    }
    return 0;
}
