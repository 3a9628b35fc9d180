/* harness subclasses: ask an LLM (OpenAI chat-completions protocol) for subclasses of every
 * class of a class-name list; cached, with a provenance file. */
#include "datasets/datasets.h"
#include "harness/cli/cli.h"
#include "harness/error.h"
#include "harness/llm.h"
#include "harness/subclasses.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CACHE "results/llm_cache"

static const char usage[] =
    "usage: harness subclasses --classes FILE --n N --base-url URL --model M\n"
    "                          [--prompt NAME | --prompt-file F] [--context TEXT]\n"
    "                          [--samples S] [--temperature T] [--out FILE.json]\n"
    "                          [--cache DIR | --no-cache] [--provenance FILE] [options]\n"
    "\n"
    "Ask a chat-completions server (OpenAI, vLLM, llama.cpp's server, Ollama, ...) for N\n"
    "subclasses of every class and write {\"class\": [\"subclass\", ...]} in the layout of the\n"
    "released subclass lists, which 'run' reads directly. Every request is\n"
    "    POST URL/chat/completions  {\"model\": M, \"messages\": [{\"role\": \"user\",\n"
    "    \"content\": PROMPT}], \"temperature\": T, \"max_tokens\": K, \"seed\": SEED + s}\n"
    "for sample s = 0..S-1; the samples' lists are merged in order, repeats (ignoring case)\n"
    "and the class's own name dropped, and cut to N.\n"
    "\n"
    "options:\n"
    "  --classes FILE      class-name list (one class per line, synonyms separated by \", \":\n"
    "                      the first name of a line is the class asked about and the key)\n"
    "  --n N               subclasses per class\n"
    "  --base-url URL      e.g. https://api.openai.com/v1, http://127.0.0.1:8080/v1,\n"
    "                      http://localhost:11434/v1 (Ollama)\n"
    "  --model M           model name\n"
    "  --prompt NAME       prompt preset: chils (default), chils-fewshot, json\n"
    "  --prompt-file F     a prompt template; {n}, {class} and {context} are substituted\n"
    "  --context TEXT      {context} (default \"objects in a photo\")\n"
    "  --samples S         requests per class, merged (default 1)\n"
    "  --temperature T     sampling temperature (default 0)\n"
    "  --max-tokens K      answer length limit (default 256; 0 leaves it to the server)\n"
    "  --seed SEED         send \"seed\": SEED + sample index (default: no seed)\n"
    "  --out FILE.json     the subclass lists (default: standard output)\n"
    "  --provenance FILE   per class the endpoint, model, prompt, parameters, raw answers and\n"
    "                      their times (default: FILE.provenance.json beside --out; none\n"
    "                      without --out)\n"
    "  --cache DIR         answer cache (default " DEFAULT_CACHE "): answered requests are\n"
    "                      never sent again, so an interrupted run resumes\n"
    "  --no-cache          neither read nor write the cache\n"
    "  --offline           use cached answers only; send nothing\n"
    "  --key-env NAME      environment variable holding the API key (default OPENAI_API_KEY;\n"
    "                      unset or empty: no Authorization header, as local servers need)\n"
    "  --parallel P        requests at once (default 4)\n"
    "  --max-attempts A    attempts per request (default 5)\n"
    "  --timeout SEC       one attempt (default 120)\n"
    "  --deadline SEC      the whole run (default 1800)\n"
    "  --backoff-ms MS     first retry delay (default 1000; doubled per attempt, jittered,\n"
    "                      at most 60000, and never shorter than a Retry-After)\n"
    "  --quiet             no progress lines\n"
    "  --help              this text\n"
    "\n"
    "Retried: HTTP 429, 408, 409, 425 and 5xx, timeouts, connection errors, malformed answers\n"
    "and answers without a usable list. HTTP 400, 404 and other 4xx fail at once with the\n"
    "server's message; 401 and 403 stop the run. The key is never written anywhere.\n"
    "\n"
    "exit codes: 0 every class answered, 1 some classes failed (they are named on stderr; the\n"
    "output holds the others) or another failure, 2 bad usage or input\n";

static void log_line(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "harness subclasses: %s\n", line);
}

static char *default_provenance(const char *out)
{
    size_t n = strlen(out);
    if (n > 5 && !strcmp(out + n - 5, ".json"))
        n -= 5;
    char *p = malloc(n + 32);
    if (p)
        snprintf(p, n + 32, "%.*s.provenance.json", (int)n, out);
    return p;
}

static int run(int argc, char **argv)
{
    const char *classes = NULL, *base_url = NULL, *model = NULL, *prompt = NULL,
               *prompt_file = NULL, *context = NULL, *out = NULL, *cache = NULL,
               *provenance = NULL, *key_env = NULL, *seed = NULL;
    int n = 0, samples = 1, max_tokens = 256, parallel = 4, max_attempts = 5,
        backoff_ms = 1000, no_cache = 0, offline = 0, quiet = 0;
    double temperature = 0, timeout = 120, deadline = 1800;
    struct cli_opt opts[] = {
        {"classes", CLI_STR, &classes},     {"n", CLI_INT, &n},
        {"base-url", CLI_STR, &base_url},   {"model", CLI_STR, &model},
        {"prompt", CLI_STR, &prompt},       {"prompt-file", CLI_STR, &prompt_file},
        {"context", CLI_STR, &context},     {"samples", CLI_INT, &samples},
        {"temperature", CLI_FLOAT, &temperature},
        {"max-tokens", CLI_INT, &max_tokens},
        {"seed", CLI_STR, &seed},           {"out", CLI_STR, &out},
        {"provenance", CLI_STR, &provenance},
        {"cache", CLI_STR, &cache},         {"no-cache", CLI_FLAG, &no_cache},
        {"offline", CLI_FLAG, &offline},    {"key-env", CLI_STR, &key_env},
        {"parallel", CLI_INT, &parallel},   {"max-attempts", CLI_INT, &max_attempts},
        {"timeout", CLI_FLOAT, &timeout},   {"deadline", CLI_FLOAT, &deadline},
        {"backoff-ms", CLI_INT, &backoff_ms},
        {"quiet", CLI_FLAG, &quiet},
    };
    const char *cmd = "subclasses";
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    char *prov_owned = NULL;
    const char **names = NULL;
    struct hx_classnames cn = {0};
    struct hx_subclasses subs = {0};
    struct hx_llm_report rep = {0};
    struct hx_llm_request req;
    hx_llm_request_defaults(&req);
    int npos = 0, rc;
    if (!pos) {
        fprintf(stderr, "harness %s: out of memory\n", cmd);
        return 1;
    }
    if ((rc = cli_parse(cmd, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos,
                        &npos)) ||
        (rc = cli_require(cmd, classes, "classes")) ||
        (rc = cli_require(cmd, base_url, "base-url")) || (rc = cli_require(cmd, model, "model")))
        goto done;
    if (npos) {
        rc = cli_usage_error(cmd, "unexpected argument '%s'", pos[0]);
        goto done;
    }
    if (n < 1) {
        rc = cli_usage_error(cmd, n ? "--n must be at least 1" : "missing required option --n");
        goto done;
    }
    if (prompt && prompt_file) {
        rc = cli_usage_error(cmd, "give --prompt or --prompt-file, not both");
        goto done;
    }
    if (cache && no_cache) {
        rc = cli_usage_error(cmd, "give --cache or --no-cache, not both");
        goto done;
    }
    if (offline && no_cache) {
        rc = cli_usage_error(cmd, "--offline needs the cache");
        goto done;
    }
    req.base_url = base_url;
    req.model = model;
    req.context = context;
    req.n = n;
    req.samples = samples;
    req.temperature = temperature;
    req.max_tokens = max_tokens;
    req.key_env = key_env;
    req.parallel = parallel;
    req.max_attempts = max_attempts;
    req.timeout_s = timeout;
    req.deadline_s = deadline;
    req.backoff_base_ms = backoff_ms;
    req.backoff_max_ms = backoff_ms > 60000 ? backoff_ms : 60000;
    req.offline = offline;
    if (!quiet)
        req.log = log_line;
    if (seed) {
        char *end;
        errno = 0;
        req.seed = strtoll(seed, &end, 10);
        if (errno || end == seed || *end) {
            rc = cli_usage_error(cmd, "--seed expects an integer, got '%s'", seed);
            goto done;
        }
        req.has_seed = 1;
    }
    if (prompt) {
        req.prompt = hx_llm_prompt_preset(prompt);
        if (!req.prompt) {
            rc = cli_usage_error(cmd, "unknown prompt preset '%s' (chils, chils-fewshot, json)",
                                 prompt);
            goto done;
        }
    }
    if (prompt_file) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddStringToObject(o, "prompt_file", prompt_file)) {
            cJSON_Delete(o);
            rc = cli_fail(cmd, hx_err(HX_ENOMEM, "out of memory"));
            goto done;
        }
        int st = hx_llm_request_from_json(&req, o, "--prompt-file");
        cJSON_Delete(o);
        if (st) {
            rc = cli_fail(cmd, st);
            goto done;
        }
    }
    int st = hx_llm_request_check(&req);
    if (st || (st = hx_classnames_read(classes, &cn))) {
        rc = cli_fail(cmd, st);
        goto done;
    }
    names = calloc((size_t)cn.n, sizeof *names);
    if (!names) {
        rc = cli_fail(cmd, hx_err(HX_ENOMEM, "out of memory"));
        goto done;
    }
    for (int i = 0; i < cn.n; i++)
        names[i] = cn.syn[i][0];
    if (samples > 1 && temperature == 0 && !quiet)
        fprintf(stderr, "harness %s: %d samples at temperature 0 will mostly repeat each "
                        "other (see --temperature)\n",
                cmd, samples);
    if (key_env && key_env[0] && !quiet && !(getenv(key_env) && getenv(key_env)[0]))
        fprintf(stderr, "harness %s: %s is not set: no API key is sent\n", cmd, key_env);
    if (!provenance && out)
        provenance = prov_owned = default_provenance(out);

    st = hx_llm_subclasses(&req, names, cn.n, no_cache ? NULL : cache ? cache : DEFAULT_CACHE,
                           &subs, &rep);
    if (st && st != HX_ENET) {
        rc = cli_fail(cmd, st);
        goto done;
    }
    for (int i = 0; i < rep.n_classes; i++)
        if (!rep.cls[i].ok)
            fprintf(stderr, "harness %s: class '%s' failed: %s\n", cmd, rep.cls[i].name,
                    rep.cls[i].error ? rep.cls[i].error : "no answer");
    int wst = 0;
    if (out) {
        wst = hx_subclasses_write(out, &subs);
    } else {
        char *text = NULL;
        size_t len = 0;
        wst = hx_subclasses_format(&subs, &text, &len);
        if (!wst && (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0))
            wst = hx_err(HX_EIO, "cannot write the output");
        free(text);
    }
    if (!wst && provenance)
        wst = hx_llm_provenance_write(provenance, &req, &rep);
    if (wst) {
        rc = cli_fail(cmd, wst);
        if (rc == 2) /* the answers are cached; this is an output failure */
            rc = 1;
        goto done;
    }
    if (!quiet)
        fprintf(stderr,
                "harness %s: %d class%s, %d answered, %d failed; %d request%s sent, %d "
                "answer%s from the cache\n",
                cmd, rep.n_classes, rep.n_classes == 1 ? "" : "es",
                rep.n_classes - rep.n_failed, rep.n_failed, rep.n_sent,
                rep.n_sent == 1 ? "" : "s", rep.n_cached, rep.n_cached == 1 ? "" : "s");
    rc = st ? 1 : 0;
done:
    hx_llm_report_free(&rep);
    hx_subclasses_free(&subs);
    hx_classnames_free(&cn);
    hx_llm_request_release(&req);
    free(names);
    free(prov_owned);
    free(pos);
    return rc;
}

const struct hx_command hx_cmd_subclasses = {
    "subclasses", "ask an LLM for the subclasses of every class (cached)", usage, run};
