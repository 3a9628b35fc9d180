/* Subclass generation by an LLM over the OpenAI chat-completions protocol (hosted APIs, vLLM,
 * llama.cpp's server, Ollama), cached and reproducible.
 *
 * For every class and every sample index s = 0..samples-1 one request
 *     POST {base_url}/chat/completions
 *     {"model": M, "messages": [{"role": "user", "content": PROMPT}],
 *      "temperature": T, "max_tokens": K, "seed": SEED + s}
 * is sent ("max_tokens" is left out when K = 0, "seed" when no seed is set), with
 * "Authorization: Bearer KEY" when the environment variable named by key_env holds a key.
 * PROMPT is the template with {n}, {class} and {context} substituted. The answer
 * (choices[0].message.content) is parsed into a list (hx_llm_parse_list); the samples' lists
 * of a class are merged in sample order, deduplicated and cut to n.
 *
 * Transport: libcurl multi, at most `parallel` transfers at once, TLS peer and host
 * verification on, http and https only, no redirects. A request is retried on HTTP 429, 408,
 * 409, 425 and 5xx, on timeouts and connection errors, and on answers that are malformed or
 * hold no usable list, up to max_attempts attempts, waiting backoff_base_ms * 2^(a-1)
 * (capped at backoff_max_ms) with jitter (a uniform draw in [d/2, d]), and at least what a
 * Retry-After (seconds or HTTP date) or retry-after-ms header asks. HTTP 400, 404 and other
 * 4xx fail the request at once with the server's message (error.message, else the body);
 * 401 and 403 also stop the run, since every other request would meet the same refusal. The
 * whole run ends at deadline_s: what has not been answered then fails.
 *
 * Cache: with a cache folder, every usable answer is stored as soon as it arrives, in its own
 * file named by a hash of its key (endpoint URL, the request body - model, prompt,
 * temperature, max tokens, seed - and the sample index), written atomically; the file holds
 * the key, which is compared on reading. A request whose answer is cached is not sent, so a
 * re-run sends nothing already answered and an interrupted run resumes. The raw answer is
 * cached and parsed again on reading.
 *
 * Secrets: the key is read from the environment when the run starts and goes only into the
 * Authorization header. Every text the library keeps (raw answers, messages, log lines,
 * cache and provenance files) has occurrences of the key (4 bytes or longer) replaced by
 * "[key]", so a server that echoes it does not leak it either.
 *
 * Use from a run config (a sketch; the config layout is the caller's):
 *     "subclasses": {"llm": {"base_url": "http://127.0.0.1:8080/v1", "model": "llama3",
 *                            "prompt": "chils", "n": 5, "seed": 0}}
 *     struct hx_llm_request q;
 *     hx_llm_request_defaults(&q);
 *     rc = hx_llm_request_from_json(&q, llm_obj, "experiments/x.json");
 *     rc = hx_llm_subclasses(&q, first_names, n_classes, "results/llm_cache", &subs, &rep);
 *     (HX_ENET: some classes failed; rep names them; subs holds the others)
 *     hx_llm_report_free(&rep); hx_llm_request_release(&q); ... hx_subclasses_free(&subs);
 * With every answer cached nothing is sent (the curl library is not even initialised);
 * q.offline = 1 makes a missing answer an error instead of a request.
 *
 * Ownership: the request's strings are borrowed (hx_llm_request_from_json may load a prompt
 * file into prompt_owned, released by hx_llm_request_release). hx_llm_subclasses fills an
 * hx_subclasses (free with hx_subclasses_free) and an hx_llm_report (free with
 * hx_llm_report_free); both accept zeroed structs when freeing. */
#ifndef HX_LLM_H
#define HX_LLM_H

#include "harness/subclasses.h"

#include <cjson/cJSON.h>

#define HX_LLM_DEFAULT_KEY_ENV "OPENAI_API_KEY"
#define HX_LLM_DEFAULT_CONTEXT "objects in a photo"
#define HX_LLM_DEFAULT_PROMPT "chils"

struct hx_llm_request {
    const char *base_url; /* required, e.g. "https://api.openai.com/v1" or
                             "http://127.0.0.1:8080/v1"; a URL that already ends in
                             "/chat/completions" is used as it is */
    const char *model;    /* required */
    const char *prompt;   /* template text; NULL: the preset HX_LLM_DEFAULT_PROMPT */
    const char *context;  /* {context}; NULL: HX_LLM_DEFAULT_CONTEXT */
    int n;                /* subclasses per class ({n} and the cap), >= 1 */
    int samples;          /* requests per class, >= 1 */
    double temperature;   /* >= 0 */
    int max_tokens;       /* >= 0; 0 leaves it to the server */
    int has_seed;         /* nonzero: send "seed": seed + sample index */
    long long seed;
    const char *key_env;  /* name of the variable holding the key; NULL:
                             HX_LLM_DEFAULT_KEY_ENV; "": never send a key. Unset or empty
                             variable: no Authorization header (local servers) */
    int parallel;         /* transfers at once, >= 1 */
    int max_attempts;     /* per request, >= 1 */
    double deadline_s;    /* the whole run, > 0 */
    double timeout_s;     /* one attempt, > 0 */
    int backoff_base_ms;  /* first retry delay before jitter, >= 0 */
    int backoff_max_ms;   /* cap of the exponential delay, >= backoff_base_ms */
    int offline;          /* nonzero: answers only from the cache, nothing is sent */
    /* Optional progress and retry lines (already scrubbed of the key), one per call, without
     * a newline. The library never prints. */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    char *prompt_owned;   /* a template loaded by hx_llm_request_from_json, or NULL */
};

/* Defaults: n 5, samples 1, temperature 0, max_tokens 256, no seed, key_env NULL, parallel 4,
 * max_attempts 5, deadline 1800 s, timeout 120 s, backoff 1000..60000 ms; strings NULL. */
void hx_llm_request_defaults(struct hx_llm_request *r);
/* Frees prompt_owned. */
void hx_llm_request_release(struct hx_llm_request *r);
/* Check the fields (HX_EINVAL naming the field). */
int hx_llm_request_check(const struct hx_llm_request *r);

/* Set fields from a config object (`what` names it in messages); keys: "base_url", "model",
 * "prompt" (a preset name), "prompt_text" (a template), "prompt_file" (a template file:
 * its text with one final newline dropped), "context", "n", "samples", "temperature",
 * "max_tokens", "seed", "key_env", "parallel", "max_attempts", "deadline", "timeout",
 * "backoff_base_ms", "backoff_max_ms", "offline". Strings are borrowed from obj (keep it
 * alive); an unknown key, a wrong type, an unknown preset or an "api_key" field (keys
 * belong in the environment) is HX_EINVAL. Fields not named keep their values. */
int hx_llm_request_from_json(struct hx_llm_request *r, const cJSON *obj, const char *what);

/* Prompt presets: "chils" (CHiLS zero-shot), "chils-fewshot" (the same with two worked
 * examples), "json" (asks for a JSON array of strings). NULL for an unknown name. */
const char *hx_llm_prompt_preset(const char *name);
/* The preset names, NULL-terminated. */
const char *const *hx_llm_prompt_names(void);

/* Substitute {n}, {class} and {context} (every occurrence; other braces stay) into a
 * malloc'ed *out (caller frees). */
int hx_llm_prompt_render(const char *tmpl, const char *cls, int n, const char *context,
                         char **out);

/* Parse an answer into at most n items (n <= 0: no cap). Recognised shapes, tried in order:
 * a JSON array of strings anywhere in the text (a code fence or an object around it is
 * fine); numbered or bulleted lines ("1.", "2)", "(3)", "-", "*", "+", "•"), a description
 * after ": " or " - " being cut; the line with the most commas (or semicolons), after a
 * "label:" prefix, "and"/"or" before the last item being dropped; plain short lines; a single
 * short phrase. Text up to a last "</think>" (a reasoning model's thoughts) is skipped
 * first, and text from a later line of the form ">label:" is cut (a model continuing the
 * prompt's pattern with other classes). Items are trimmed of spaces, quotes, brackets, markdown emphasis and a final
 * period; empty items, items over 100 bytes or 10 words, items equal to the class name
 * (case-insensitive) and later case-insensitive repeats are dropped; order is kept.
 * *items is malloc'ed (free with hx_llm_list_free); *count may be 0 (no usable list). */
int hx_llm_parse_list(const char *answer, const char *cls, int n, char ***items, int *count);
void hx_llm_list_free(char **items, int count);

/* One answer of one class. */
struct hx_llm_answer {
    int sample;        /* 0..samples-1 */
    long long seed;    /* the seed sent (when has_seed) */
    char *raw;         /* the answer's text, NULL when there is none */
    char *time;        /* ISO 8601 UTC time of the answer, NULL when there is none */
    int from_cache;    /* the answer was read from the cache */
    int attempts;      /* HTTP attempts this run (0 when cached) */
};

struct hx_llm_class_report {
    char *name;        /* the class name as given */
    char *prompt;      /* the rendered prompt */
    int ok;            /* every sample answered with a usable list */
    char *error;       /* why not (NULL when ok) */
    int nanswers;      /* = samples */
    struct hx_llm_answer *answers; /* [nanswers] */
};

struct hx_llm_report {
    char *endpoint;    /* the chat-completions URL */
    int n_classes, n_failed;
    int n_sent;        /* HTTP attempts made */
    int n_cached;      /* answers read from the cache */
    struct hx_llm_class_report *cls; /* [n_classes] in the order of the classes */
};
void hx_llm_report_free(struct hx_llm_report *rep);

/* Request n subclasses for each of classes[0..ncls-1] (names as they are to appear in the
 * output; they go into {class} trimmed of surrounding spaces). cache_dir may be NULL (no
 * cache) and is created when missing. On return *out holds the classes that got every
 * sample answered, in input order, and *rep describes every class.
 * Returns 0 when every class was answered; HX_ENET when some were not (the message names
 * them; *out and *rep are filled); HX_EINVAL, HX_EIO or HX_ENOMEM for a bad request, an
 * unusable cache folder or a failed allocation (then *out is empty and *rep may be
 * partial). Classes listed twice are HX_EINVAL. */
int hx_llm_subclasses(const struct hx_llm_request *req, const char *const *classes, int ncls,
                      const char *cache_dir, struct hx_subclasses *out,
                      struct hx_llm_report *rep);

/* Write the provenance of a run atomically as JSON: per class the endpoint, model, prompt,
 * parameters, every raw answer with its time, seed, attempts and whether it came from the
 * cache, the merged list, and the error of a failed class. Never holds the key. */
int hx_llm_provenance_write(const char *path, const struct hx_llm_request *req,
                            const struct hx_llm_report *rep);

#endif
