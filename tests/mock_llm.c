#include "tests/mock_llm.h"

#include <cjson/cJSON.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_RULES 16
#define MAX_CONN 256
#define MAX_REQ 4096

struct rule {
    char *match;
    char **actions;
    int nactions, seen;
};

struct mock_llm {
    int lfd;
    char url[64];
    pthread_t acceptor;
    atomic_int stop;
    pthread_mutex_t mu;
    struct rule rules[MAX_RULES];
    int nrules;
    char *key;
    pthread_t conns[MAX_CONN];
    int nconns;
    char *bodies[MAX_REQ];
    int nreq, auth_ok, no_auth;
};

struct conn {
    struct mock_llm *m;
    int fd;
};

static void sleep_ms(struct mock_llm *m, int ms)
{
    for (int t = 0; t < ms && !atomic_load(&m->stop); t += 10) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int respond(int fd, int code, const char *extra_header, const char *body)
{
    const char *reason = code == 200   ? "OK"
                         : code == 400 ? "Bad Request"
                         : code == 401 ? "Unauthorized"
                         : code == 404 ? "Not Found"
                         : code == 429 ? "Too Many Requests"
                                       : "Internal Server Error";
    char head[512];
    int k = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s\r\n",
                     code, reason, strlen(body), extra_header ? extra_header : "");
    if (send_all(fd, head, (size_t)k))
        return -1;
    return send_all(fd, body, strlen(body));
}

static char *error_body(const char *msg)
{
    cJSON *o = cJSON_CreateObject(), *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", "mock_error");
    cJSON_AddItemToObject(o, "error", e);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static char *chat_body(const char *content)
{
    cJSON *o = cJSON_CreateObject(), *ch = cJSON_CreateArray(), *c = cJSON_CreateObject(),
          *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", "chatcmpl-mock");
    cJSON_AddStringToObject(o, "object", "chat.completion");
    cJSON_AddStringToObject(o, "model", "mock");
    cJSON_AddNumberToObject(c, "index", 0);
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON_AddStringToObject(msg, "content", content);
    cJSON_AddItemToObject(c, "message", msg);
    cJSON_AddStringToObject(c, "finish_reason", "stop");
    cJSON_AddItemToArray(ch, c);
    cJSON_AddItemToObject(o, "choices", ch);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* The class and seed of a request body. */
static void request_info(const char *body, char *cls, size_t cap, char *seed, size_t scap)
{
    snprintf(cls, cap, "thing");
    snprintf(seed, scap, "none");
    cJSON *o = cJSON_Parse(body);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
    int n = cJSON_GetArraySize(msgs);
    const cJSON *last = n > 0 ? cJSON_GetArrayItem(msgs, n - 1) : NULL;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(last, "content");
    if (cJSON_IsString(content)) {
        const char *gt = strrchr(content->valuestring, '>');
        const char *colon = gt ? strchr(gt, ':') : NULL;
        if (gt && colon && colon > gt + 1)
            snprintf(cls, cap, "%.*s", (int)(colon - gt - 1), gt + 1);
    }
    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(o, "seed");
    if (cJSON_IsNumber(sd))
        snprintf(seed, scap, "%lld", (long long)sd->valuedouble);
    cJSON_Delete(o);
}

/* Answer one request; -1 to close the connection. */
static int answer(struct mock_llm *m, int fd, const char *method, const char *path,
                  const char *auth, const char *body)
{
    char action[64] = "ok";
    pthread_mutex_lock(&m->mu);
    if (m->nreq < MAX_REQ)
        m->bodies[m->nreq] = strdup(body);
    m->nreq++;
    int key_ok = !m->key || (auth && !strncmp(auth, "Bearer ", 7) && !strcmp(auth + 7, m->key));
    if (m->key && key_ok)
        m->auth_ok++;
    if (!auth)
        m->no_auth++;
    for (int i = 0; i < m->nrules; i++) {
        struct rule *r = &m->rules[i];
        if (!strstr(body, r->match))
            continue;
        int k = r->seen < r->nactions ? r->seen : r->nactions - 1;
        r->seen++;
        snprintf(action, sizeof action, "%s", r->actions[k]);
        break;
    }
    pthread_mutex_unlock(&m->mu);

    char *out = NULL, extra[96] = "";
    int code = 200, rc;
    if (strcmp(method, "POST") || strcmp(path, "/v1/chat/completions")) {
        out = error_body("no such route");
        rc = respond(fd, 404, NULL, out);
        free(out);
        return rc;
    }
    if (!key_ok || !strcmp(action, "401")) {
        char msg[600];
        snprintf(msg, sizeof msg, "Incorrect API key provided: %s", auth ? auth : "(none)");
        out = error_body(msg);
        rc = respond(fd, 401, NULL, out);
        free(out);
        return rc;
    }
    if (!strcmp(action, "drop"))
        return -1;
    char cls[256], seed[32];
    request_info(body, cls, sizeof cls, seed, sizeof seed);
    char list[1200];
    snprintf(list, sizeof list, "%s s%sa, %s common, %s s%sb, %s", cls, seed, cls, cls, seed,
             cls);
    char content[2048];
    if (!strncmp(action, "slow:", 5)) {
        sleep_ms(m, atoi(action + 5));
        snprintf(action, sizeof action, "ok");
    }
    if (!strcmp(action, "ok")) {
        out = chat_body(list);
    } else if (!strcmp(action, "prose")) {
        snprintf(content, sizeof content,
                 "Sure! Here are some types of %s:\n\n%s\n\nI hope this helps, let me know if "
                 "you need more.",
                 cls, list);
        out = chat_body(content);
    } else if (!strcmp(action, "json")) {
        snprintf(content, sizeof content,
                 "```json\n[\"%s s%sa\", \"%s common\", \"%s s%sb\", \"%s\"]\n```", cls, seed,
                 cls, cls, seed, cls);
        out = chat_body(content);
    } else if (!strcmp(action, "nolist")) {
        out = chat_body("I am not able to answer that question.");
    } else if (!strcmp(action, "malformed")) {
        out = strdup("{\"choices\": [{\"message\": {\"content\": \"a, b\"");
    } else if (!strcmp(action, "empty")) {
        out = strdup("{\"id\": \"x\", \"choices\": []}");
    } else if (!strncmp(action, "429", 3)) {
        code = 429;
        if (action[3] == ':')
            snprintf(extra, sizeof extra, "Retry-After: %s\r\n", action + 4);
        out = error_body("Rate limit reached");
    } else if (!strcmp(action, "500")) {
        code = 500;
        out = error_body("internal error");
    } else if (!strcmp(action, "400")) {
        code = 400;
        out = error_body("unknown parameter");
    } else {
        code = 500;
        out = error_body("mock: unknown action");
    }
    rc = respond(fd, code, extra, out ? out : "");
    free(out);
    return rc;
}

/* Read until the buffer holds a complete request; 1 when it does, 0 at EOF/stop, -1 on
 * error. */
static int fill(struct mock_llm *m, int fd, char *buf, size_t cap, size_t *len)
{
    while (!atomic_load(&m->stop)) {
        struct pollfd p = {fd, POLLIN, 0};
        int k = poll(&p, 1, 50);
        if (k < 0 && errno != EINTR)
            return -1;
        if (k <= 0)
            continue;
        if (*len + 1 >= cap)
            return -1;
        ssize_t r = recv(fd, buf + *len, cap - 1 - *len, 0);
        if (r == 0)
            return 0;
        if (r < 0)
            return errno == EINTR ? 1 : -1;
        *len += (size_t)r;
        buf[*len] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (!end)
            continue;
        size_t clen = 0;
        for (char *h = strstr(buf, "\r\n"); h && h < end; h = strstr(h + 2, "\r\n"))
            if (!strncasecmp(h + 2, "Content-Length:", 15))
                clen = (size_t)strtoul(h + 17, NULL, 10);
        if (*len >= (size_t)(end + 4 - buf) + clen)
            return 1;
    }
    return 0;
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct mock_llm *m = c->m;
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    while (buf && fill(m, c->fd, buf, cap, &len) == 1) {
        char *end = strstr(buf, "\r\n\r\n");
        *end = 0;
        char method[16] = "", path[256] = "", auth[512];
        int have_auth = 0;
        size_t clen = 0;
        sscanf(buf, "%15s %255s", method, path);
        for (char *h = strstr(buf, "\r\n"); h; h = strstr(h + 2, "\r\n")) {
            char *l = h + 2, *e = strstr(l, "\r\n");
            size_t ll = e ? (size_t)(e - l) : strlen(l);
            if (!strncasecmp(l, "Content-Length:", 15))
                clen = (size_t)strtoul(l + 15, NULL, 10);
            if (!strncasecmp(l, "Authorization:", 14)) {
                const char *v = l + 14;
                while (*v == ' ')
                    v++;
                snprintf(auth, sizeof auth, "%.*s", (int)(ll - (size_t)(v - l)), v);
                have_auth = 1;
            }
        }
        char *body = end + 4;
        char save = body[clen];
        body[clen] = 0;
        char *copy = strdup(body);
        body[clen] = save;
        size_t used = (size_t)(body - buf) + clen;
        memmove(buf, buf + used, len - used);
        len -= used;
        buf[len] = 0;
        int rc = answer(m, c->fd, method, path, have_auth ? auth : NULL, copy ? copy : "");
        free(copy);
        if (rc)
            break;
    }
    free(buf);
    close(c->fd);
    free(c);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct mock_llm *m = arg;
    while (!atomic_load(&m->stop)) {
        struct pollfd p = {m->lfd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(m->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        struct conn *c = malloc(sizeof *c);
        pthread_mutex_lock(&m->mu);
        int room = m->nconns < MAX_CONN;
        pthread_mutex_unlock(&m->mu);
        if (!c || !room) {
            free(c);
            close(fd);
            continue;
        }
        c->m = m;
        c->fd = fd;
        pthread_t t;
        if (pthread_create(&t, NULL, conn_main, c) != 0) {
            free(c);
            close(fd);
            continue;
        }
        pthread_mutex_lock(&m->mu);
        m->conns[m->nconns++] = t;
        pthread_mutex_unlock(&m->mu);
    }
    return NULL;
}

int mock_llm_start(struct mock_llm **out)
{
    struct mock_llm *m = calloc(1, sizeof *m);
    if (!m)
        return -1;
    pthread_mutex_init(&m->mu, NULL);
    m->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0; /* a free port */
    socklen_t al = sizeof a;
    if (m->lfd < 0 || bind(m->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(m->lfd, 64) != 0 || getsockname(m->lfd, (struct sockaddr *)&a, &al) != 0) {
        fprintf(stderr, "mock_llm: cannot listen on 127.0.0.1: %s\n", strerror(errno));
        if (m->lfd >= 0)
            close(m->lfd);
        free(m);
        return -1;
    }
    snprintf(m->url, sizeof m->url, "http://127.0.0.1:%d/v1", (int)ntohs(a.sin_port));
    if (pthread_create(&m->acceptor, NULL, accept_main, m) != 0) {
        close(m->lfd);
        free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void mock_llm_stop(struct mock_llm *m)
{
    if (!m)
        return;
    atomic_store(&m->stop, 1);
    pthread_join(m->acceptor, NULL);
    for (int i = 0; i < m->nconns; i++)
        pthread_join(m->conns[i], NULL);
    close(m->lfd);
    for (int i = 0; i < m->nrules; i++) {
        free(m->rules[i].match);
        for (int k = 0; k < m->rules[i].nactions; k++)
            free(m->rules[i].actions[k]);
        free(m->rules[i].actions);
    }
    for (int i = 0; i < m->nreq && i < MAX_REQ; i++)
        free(m->bodies[i]);
    free(m->key);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

const char *mock_llm_url(const struct mock_llm *m) { return m->url; }

void mock_llm_rule(struct mock_llm *m, const char *match, const char *script)
{
    pthread_mutex_lock(&m->mu);
    if (m->nrules < MAX_RULES) {
        struct rule *r = &m->rules[m->nrules++];
        r->match = strdup(match);
        char *s = strdup(script), *save = NULL;
        int n = 1;
        for (const char *p = script; *p; p++)
            n += *p == ',';
        r->actions = calloc((size_t)n, sizeof *r->actions);
        for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save))
            r->actions[r->nactions++] = strdup(t);
        free(s);
    }
    pthread_mutex_unlock(&m->mu);
}

void mock_llm_expect_key(struct mock_llm *m, const char *key)
{
    pthread_mutex_lock(&m->mu);
    free(m->key);
    m->key = key ? strdup(key) : NULL;
    pthread_mutex_unlock(&m->mu);
}

int mock_llm_requests(struct mock_llm *m)
{
    pthread_mutex_lock(&m->mu);
    int n = m->nreq;
    pthread_mutex_unlock(&m->mu);
    return n;
}

int mock_llm_count(struct mock_llm *m, const char *match)
{
    pthread_mutex_lock(&m->mu);
    int n = 0;
    for (int i = 0; i < m->nreq && i < MAX_REQ; i++)
        n += m->bodies[i] && strstr(m->bodies[i], match) != NULL;
    pthread_mutex_unlock(&m->mu);
    return n;
}

int mock_llm_auth_ok(struct mock_llm *m)
{
    pthread_mutex_lock(&m->mu);
    int n = m->auth_ok;
    pthread_mutex_unlock(&m->mu);
    return n;
}

int mock_llm_no_auth(struct mock_llm *m)
{
    pthread_mutex_lock(&m->mu);
    int n = m->no_auth;
    pthread_mutex_unlock(&m->mu);
    return n;
}
