/* LLM subclass generation (harness/llm.c) against a loopback mock server (tests/mock_llm.c),
 * the answer parser, and the subclass-list reader (harness/subclasses.c) on the released
 * lists. */
#include "datasets/datasets.h"
#include "harness/atomicio.h"
#include "harness/error.h"
#include "harness/llm.h"
#include "harness/subclasses.h"
#include "tests/mock_llm.h"
#include "tests/test_util.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */

static void write_text(const char *path, const char *text)
{
    ck_assert_int_eq(hx_write_atomic(path, text, strlen(text)), 0);
}

/* Parse `answer` and compare with the expected items, given as one string joined by "|"
 * ("" for none). */
static void check_parse(const char *answer, const char *cls, int n, const char *expect)
{
    char **items = NULL;
    int count = -1;
    ck_assert_int_eq(hx_llm_parse_list(answer, cls, n, &items, &count), 0);
    char got[2048] = "";
    for (int i = 0; i < count; i++) {
        if (i)
            strcat(got, "|");
        strncat(got, items[i], sizeof got - strlen(got) - 2);
    }
    hx_llm_list_free(items, count);
    ck_assert_msg(!strcmp(got, expect), "answer \"%s\": got \"%s\", expected \"%s\"", answer,
                  got, expect);
}

/* ------------------------------------------------------------------ parser */

START_TEST(parse_comma_lists)
{
    check_parse("beagle, poodle, dachshund, golden retriever, siberian husky", "dog", 5,
                "beagle|poodle|dachshund|golden retriever|siberian husky");
    /* the CHiLS echo of the prompt's last line, a final period, "and" before the last */
    check_parse(">dog: beagle, poodle, and husky.", "dog", 5, "beagle|poodle|husky");
    /* spaces, empties, quotes; a cap at n */
    check_parse("  \"a\" ,, b ,  'c' , d , e , f ", "x", 4, "a|b|c|d");
    /* case-insensitive repeats and the class itself dropped, first spelling kept */
    check_parse("Dog, Poodle, poodle, Beagle, DOG, POODLE", "dog", 10, "Poodle|Beagle");
    /* a comma inside parentheses does not split */
    check_parse("SUV (sport, utility), sedan, coupe", "car", 5, "SUV (sport, utility)|sedan|coupe");
    /* semicolons when there is no comma */
    check_parse("tabby; siamese; persian", "cat", 5, "tabby|siamese|persian");
    /* a sentence leading into the list */
    check_parse("Common types of boat are sailboat, yacht, canoe, and kayak.", "boat", 5,
                "sailboat|yacht|canoe|kayak");
    /* n <= 0: no cap */
    check_parse("a, b, c, d, e, f, g", "x", 0, "a|b|c|d|e|f|g");
    /* the class name is compared trimmed and case-folded */
    check_parse("Bus, minibus, trolleybus", " bus ", 5, "minibus|trolleybus");
}
END_TEST

START_TEST(parse_lines)
{
    check_parse("1. Beagle\n2. Poodle\n3. Dachshund", "dog", 5, "Beagle|Poodle|Dachshund");
    check_parse("1) Beagle\n2) Poodle", "dog", 5, "Beagle|Poodle");
    check_parse("(1) Beagle\n(2) Poodle", "dog", 5, "Beagle|Poodle");
    check_parse("- Beagle\n- Poodle\n* Husky\n+ Boxer", "dog", 5, "Beagle|Poodle|Husky|Boxer");
    check_parse("\xE2\x80\xA2 Beagle\n\xE2\x80\xA2 Poodle", "dog", 5, "Beagle|Poodle");
    /* descriptions and markdown emphasis go */
    check_parse("1. **Beagle**: a small scent hound\n2. **Poodle** - curly coat\n"
                "3. Husky \xE2\x80\x94 a sled dog",
                "dog", 5, "Beagle|Poodle|Husky");
    /* prose around a numbered list */
    check_parse("Sure! Here are 3 types of dog:\n\n1. Beagle\n2. Poodle\n3. Husky\n\n"
                "Let me know if you need more, or other breeds.",
                "dog", 5, "Beagle|Poodle|Husky");
    /* plain short lines, with an introduction line ending in a colon */
    check_parse("Types of dog:\nBeagle\nPoodle\nHusky\n", "dog", 5, "Beagle|Poodle|Husky");
    /* CRLF line ends */
    check_parse("1. Beagle\r\n2. Poodle\r\n", "dog", 5, "Beagle|Poodle");
    /* a hyphenated name in a numbered line is kept whole */
    check_parse("1. Electric Bike (E-bike)\n2. BMX", "bicycle", 5, "Electric Bike (E-bike)|BMX");
}
END_TEST

START_TEST(parse_json_and_prose)
{
    check_parse("[\"beagle\", \"poodle\", \"husky\"]", "dog", 5, "beagle|poodle|husky");
    check_parse("```json\n[\"beagle\", \"Poodle\", \"poodle\"]\n```", "dog", 5, "beagle|Poodle");
    check_parse("{\"subclasses\": [\"beagle\", \"poodle\"]}", "dog", 5, "beagle|poodle");
    /* a bracketed number before the array is not the list */
    check_parse("Here are [3] types: [\"a b\", \"c\"]", "x", 5, "a b|c");
    /* non-JSON brackets fall back to the comma list */
    check_parse("[beagle, poodle, husky]", "dog", 5, "beagle|poodle|husky");
    /* unicode: case folding beyond ASCII, UTF-8 kept */
    check_parse("\xC3\x89" "clair, \xC3\xA9" "clair, cr\xC3\xA8me br\xC3\xBBl\xC3\xA9" "e",
                "dessert", 5, "\xC3\x89" "clair|cr\xC3\xA8me br\xC3\xBBl\xC3\xA9" "e");
    /* a prose paragraph with a list line */
    check_parse("Sure, here you go.\n\nsedan, coupe, hatchback, convertible\n\nI hope this "
                "helps!",
                "car", 5, "sedan|coupe|hatchback|convertible");
    /* a model that goes on with the prompt's pattern: the next ">class:" line is not ours */
    check_parse("beagle, poodle\n\n>cat: siamese, persian, sphynx, manx", "dog", 5,
                "beagle|poodle");
    check_parse(">dog: beagle, poodle\n>cat: siamese, persian, sphynx", "dog", 5,
                "beagle|poodle");
    /* a quoted list is not a continuation */
    check_parse("> beagle\n> poodle\n> husky", "dog", 5, "beagle|poodle|husky");
    /* a comma after a numbered item's name starts its description */
    check_parse("1. Sedan, a car with four doors\n2. Coupe, two doors", "car", 5, "Sedan|Coupe");
    /* a reasoning model's thoughts before the answer */
    check_parse("<think>\nThe user wants dogs, e.g. pug, corgi, collie.\n</think>\n\n"
                "beagle, poodle",
                "dog", 5, "beagle|poodle");
    /* a single short answer (n = 1) */
    check_parse("Beagle", "dog", 1, "Beagle");
    check_parse("dog: Beagle", "dog", 1, "Beagle");
}
END_TEST

START_TEST(parse_no_list)
{
    check_parse("", "dog", 5, "");
    check_parse(NULL, "dog", 5, "");
    check_parse("   \n\n  ", "dog", 5, "");
    check_parse("I am not able to answer that question.", "dog", 5, "");
    check_parse("dog", "dog", 5, "");
    check_parse("[]", "dog", 5, "");
    check_parse("Dog, dog, DOG", "dog", 5, "");
    /* an item longer than 10 words is prose, not a name */
    check_parse("one two three four five six seven eight nine ten eleven, x", "y", 5, "x");
}
END_TEST

START_TEST(prompt_presets_and_render)
{
    const char *t = hx_llm_prompt_preset("chils");
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t, "Generate a comma separated list of {n} types of the following "
                        "{context}:\n\n>{class}:");
    ck_assert_ptr_nonnull(hx_llm_prompt_preset("chils-fewshot"));
    ck_assert_ptr_nonnull(hx_llm_prompt_preset("json"));
    ck_assert_ptr_null(hx_llm_prompt_preset("nope"));
    ck_assert_ptr_null(hx_llm_prompt_preset(NULL));
    int k = 0;
    for (const char *const *p = hx_llm_prompt_names(); *p; p++, k++)
        ck_assert_ptr_nonnull(hx_llm_prompt_preset(*p));
    ck_assert_int_eq(k, 3);
    char *s = NULL;
    ck_assert_int_eq(hx_llm_prompt_render(t, "dog", 5, "objects in a photo", &s), 0);
    ck_assert_str_eq(s, "Generate a comma separated list of 5 types of the following objects in "
                        "a photo:\n\n>dog:");
    free(s);
    ck_assert_int_eq(hx_llm_prompt_render("{class}/{class} {n}{x} {{n}} {context", "a", 12, "c",
                                          &s),
                     0);
    ck_assert_str_eq(s, "a/a 12{x} {12} {context");
    free(s);
}
END_TEST

START_TEST(request_from_json)
{
    struct hx_llm_request r;
    hx_llm_request_defaults(&r);
    ck_assert_int_eq(r.n, 5);
    ck_assert_int_eq(r.max_attempts, 5);
    ck_assert_ptr_null(r.key_env);
    cJSON *o = cJSON_Parse("{\"base_url\": \"http://127.0.0.1:1/v1\", \"model\": \"m\", "
                           "\"prompt\": \"json\", \"n\": 7, \"samples\": 2, \"temperature\": "
                           "0.7, \"seed\": 42, \"key_env\": \"MY_KEY\", \"parallel\": 3, "
                           "\"deadline\": 60, \"offline\": true}");
    ck_assert_int_eq(hx_llm_request_from_json(&r, o, "cfg"), 0);
    ck_assert_str_eq(r.base_url, "http://127.0.0.1:1/v1");
    ck_assert_str_eq(r.prompt, hx_llm_prompt_preset("json"));
    ck_assert_int_eq(r.n, 7);
    ck_assert_int_eq(r.samples, 2);
    ck_assert_double_eq(r.temperature, 0.7);
    ck_assert_int_eq(r.has_seed, 1);
    ck_assert_int_eq((int)r.seed, 42);
    ck_assert_str_eq(r.key_env, "MY_KEY");
    ck_assert_int_eq(r.parallel, 3);
    ck_assert_int_eq(r.offline, 1);
    ck_assert_int_eq(hx_llm_request_check(&r), 0);
    cJSON_Delete(o);

    const char *tmp = hx_tmpdir();
    char pf[512], js[1024];
    snprintf(pf, sizeof pf, "%s/p.txt", tmp);
    write_text(pf, "Name {n} kinds of {class}.\n");
    snprintf(js, sizeof js, "{\"prompt_file\": \"%s\"}", pf);
    o = cJSON_Parse(js);
    ck_assert_int_eq(hx_llm_request_from_json(&r, o, "cfg"), 0);
    ck_assert_str_eq(r.prompt, "Name {n} kinds of {class}.");
    cJSON_Delete(o);
    hx_llm_request_release(&r);

    const char *bad[] = {"{\"api_key\": \"sk-x\"}", "{\"modle\": \"m\"}", "{\"n\": 2.5}",
                         "{\"n\": \"5\"}", "{\"prompt\": \"nope\"}", "[]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o = cJSON_Parse(bad[i]);
        ck_assert_msg(hx_llm_request_from_json(&r, o, "cfg") == HX_EINVAL, "accepted %s",
                      bad[i]);
        cJSON_Delete(o);
    }
    /* the field checks */
    hx_llm_request_defaults(&r);
    ck_assert_int_eq(hx_llm_request_check(&r), HX_EINVAL); /* no URL */
    r.base_url = "ftp://x";
    r.model = "m";
    ck_assert_int_eq(hx_llm_request_check(&r), HX_EINVAL);
    r.base_url = "http://x";
    ck_assert_int_eq(hx_llm_request_check(&r), 0);
    r.n = 0;
    ck_assert_int_eq(hx_llm_request_check(&r), HX_EINVAL);
}
END_TEST

/* ------------------------------------------------------------------ released lists */

static void check_released(const char *name, int nclasses, int with_background_single)
{
    char rel[128];
    snprintf(rel, sizeof rel, "subclasses/paper_top5_%s.json", name);
    const char *p = hx_fixture(rel);
    if (!p)
        HX_SKIP("released subclass lists not present");
    char path[4096];
    snprintf(path, sizeof path, "%s", p);
    struct hx_subclasses s, d;
    ck_assert_msg(hx_subclasses_read(path, 0, &s) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(s.n, nclasses);
    ck_assert_str_eq(s.cls[0], "background");
    int repeats = 0;
    for (int i = 0; i < s.n; i++) {
        int bg = !strcmp(s.cls[i], "background");
        int want = bg && with_background_single ? 1 : 5;
        ck_assert_msg(s.nsub[i] == want, "%s: class %s has %d entries, expected %d", name,
                      s.cls[i], s.nsub[i], want);
        for (int a = 0; a < s.nsub[i]; a++)
            for (int b = 0; b < a; b++)
                repeats += !strcmp(s.sub[i][a], s.sub[i][b]);
    }
    /* the keys are SimSeg's class names, in the order of its class files */
    snprintf(rel, sizeof rel, "subclasses/simseg_classes_%s.txt", name);
    const char *cp = hx_fixture(rel);
    if (cp) {
        struct hx_classnames cn;
        ck_assert_int_eq(hx_classnames_read(cp, &cn), 0);
        ck_assert_int_eq(cn.n, s.n);
        for (int i = 0; i < s.n; i++) {
            ck_assert_int_eq(cn.nsyn[i], 1);
            ck_assert_str_eq(cn.syn[i][0], s.cls[i]);
        }
        hx_classnames_free(&cn);
    }
    /* deduplicated reading drops exactly the repeated entries */
    ck_assert_int_eq(hx_subclasses_read(path, HX_SUBCLASSES_DEDUPE, &d), 0);
    int total = 0, total_d = 0;
    for (int i = 0; i < s.n; i++) {
        total += s.nsub[i];
        total_d += d.nsub[i];
        ck_assert_str_eq(s.cls[i], d.cls[i]);
    }
    ck_assert_int_eq(total - total_d, repeats);

    /* write and read back: the same lists */
    char out[512];
    snprintf(out, sizeof out, "%s/%s.json", hx_tmpdir(), name);
    ck_assert_int_eq(hx_subclasses_write(out, &s), 0);
    struct hx_subclasses back;
    ck_assert_int_eq(hx_subclasses_read(out, 0, &back), 0);
    ck_assert_int_eq(back.n, s.n);
    for (int i = 0; i < s.n; i++) {
        ck_assert_str_eq(back.cls[i], s.cls[i]);
        ck_assert_int_eq(back.nsub[i], s.nsub[i]);
        for (int k = 0; k < s.nsub[i]; k++)
            ck_assert_str_eq(back.sub[i][k], s.sub[i][k]);
    }
    hx_subclasses_free(&back);
    hx_subclasses_free(&d);
    hx_subclasses_free(&s);
}

START_TEST(released_pascal_voc)
{
    check_released("pascal_voc", 21, 0);
    const char *p = hx_fixture("subclasses/paper_top5_pascal_voc.json");
    if (!p)
        return;
    struct hx_subclasses s;
    ck_assert_int_eq(hx_subclasses_read(p, 0, &s), 0);
    /* entries verbatim: the background ones end in a space in the released file */
    ck_assert_str_eq(s.sub[0][0], "Natural background ");
    int i = hx_subclasses_find(&s, "aeroplane");
    ck_assert_int_eq(i, 1);
    ck_assert_str_eq(s.sub[i][3], "Commercial_Jetliner");
    ck_assert_int_eq(hx_subclasses_find(&s, "monitor"), 20);
    ck_assert_int_eq(hx_subclasses_find(&s, "tvmonitor"), -1);
    hx_subclasses_free(&s);
}
END_TEST

START_TEST(released_pascal_context)
{
    check_released("pascal_context", 60, 1);
    const char *p = hx_fixture("subclasses/paper_top5_pascal_context.json");
    if (!p)
        return;
    struct hx_subclasses s, d;
    ck_assert_int_eq(hx_subclasses_read(p, 0, &s), 0);
    ck_assert_str_eq(s.sub[0][0], "background");
    /* the three lists with a repeated entry, kept as released and dropped on request */
    ck_assert_int_eq(hx_subclasses_read(p, HX_SUBCLASSES_DEDUPE, &d), 0);
    const char *rep[] = {"cat", "cow", "sheep"};
    int changed = 0;
    for (int i = 0; i < s.n; i++)
        changed += s.nsub[i] != d.nsub[i];
    ck_assert_int_eq(changed, 3);
    for (int k = 0; k < 3; k++) {
        int i = hx_subclasses_find(&s, rep[k]);
        ck_assert_int_ge(i, 0);
        ck_assert_int_eq(s.nsub[i], 5);
        ck_assert_int_eq(d.nsub[i], 4);
    }
    int cat = hx_subclasses_find(&s, "cat");
    ck_assert_str_eq(s.sub[cat][1], "Maine Coon cat");
    ck_assert_str_eq(s.sub[cat][2], "Maine Coon cat");
    ck_assert_str_eq(d.sub[cat][2], "Manx cat");
    hx_subclasses_free(&d);
    hx_subclasses_free(&s);
}
END_TEST

START_TEST(released_coco_stuff)
{
    check_released("coco_stuff", 81, 1);
    const char *p = hx_fixture("subclasses/paper_top5_coco_stuff.json");
    if (!p)
        return;
    struct hx_subclasses s, d;
    ck_assert_int_eq(hx_subclasses_read(p, 0, &s), 0);
    ck_assert_int_eq(hx_subclasses_read(p, HX_SUBCLASSES_DEDUPE, &d), 0);
    for (int i = 0; i < s.n; i++)
        ck_assert_int_eq(s.nsub[i], d.nsub[i]); /* no repeats in this file */
    hx_subclasses_free(&d);
    hx_subclasses_free(&s);
}
END_TEST

START_TEST(subclasses_reader_errors)
{
    const char *bad[] = {"[]",
                         "{\"a\": \"x\"}",
                         "{\"a\": [1]}",
                         "{\"a\": [\"x\"], \"a\": [\"y\"]}",
                         "{\"\": [\"x\"]}",
                         "{\"a\": [\"x\"]",
                         "{\"a\": [\"\xff\"]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct hx_subclasses s;
        ck_assert_msg(hx_subclasses_parse(bad[i], strlen(bad[i]), "t", 0, &s) == HX_EFORMAT,
                      "accepted %s", bad[i]);
        ck_assert_int_eq(s.n, 0);
    }
    struct hx_subclasses s;
    const char *ok = "{\"a\": [], \"b\\\"q\": [\"x \", \"x \", \"y\\n\"]}";
    ck_assert_int_eq(hx_subclasses_parse(ok, strlen(ok), "t", 0, &s), 0);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.nsub[0], 0);
    ck_assert_str_eq(s.cls[1], "b\"q");
    ck_assert_int_eq(s.nsub[1], 3);
    char *text;
    ck_assert_int_eq(hx_subclasses_format(&s, &text, NULL), 0);
    ck_assert_str_eq(text, "{\n  \"a\": [],\n  \"b\\\"q\": [\n    \"x \",\n    \"x \",\n"
                           "    \"y\\n\"\n  ]\n}\n");
    free(text);
    hx_subclasses_free(&s);
    ck_assert_int_eq(hx_subclasses_read("/nonexistent/x.json", 0, &s), HX_EIO);
}
END_TEST

/* ------------------------------------------------------------------ client against the mock */

static void loopback_env(void)
{
    /* a proxy from the environment must not carry loopback requests */
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    unsetenv("HX_TEST_UNSET_KEY");
}

static struct mock_llm *start_mock(void)
{
    struct mock_llm *m = NULL;
    if (mock_llm_start(&m))
        return NULL;
    return m;
}

#define MOCK_OR_SKIP(m)                                                                       \
    struct mock_llm *m = start_mock();                                                        \
    if (!m)                                                                                   \
    HX_SKIP("cannot listen on 127.0.0.1")

static struct hx_llm_request test_req(struct mock_llm *m)
{
    struct hx_llm_request r;
    hx_llm_request_defaults(&r);
    r.base_url = mock_llm_url(m);
    r.model = "test-model";
    r.n = 3;
    r.key_env = "HX_TEST_UNSET_KEY";
    r.backoff_base_ms = 5; /* short waits: the tests exercise the paths, not the timing */
    r.backoff_max_ms = 40;
    r.timeout_s = 5;
    r.deadline_s = 30;
    return r;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* the list of class `cls` joined by "|" */
static void check_list(const struct hx_subclasses *s, const char *cls, const char *expect)
{
    int i = hx_subclasses_find(s, cls);
    ck_assert_msg(i >= 0, "class %s missing from the output", cls);
    char got[2048] = "";
    for (int k = 0; k < s->nsub[i]; k++) {
        if (k)
            strcat(got, "|");
        strncat(got, s->sub[i][k], sizeof got - strlen(got) - 2);
    }
    ck_assert_msg(!strcmp(got, expect), "class %s: got \"%s\", expected \"%s\"", cls, got,
                  expect);
}

static const char *const three[] = {"dog", "cat", "car"};

START_TEST(client_answers_and_request_shape)
{
    loopback_env();
    MOCK_OR_SKIP(m);
    struct hx_llm_request r = test_req(m);
    struct hx_subclasses out;
    struct hx_llm_report rep;
    ck_assert_msg(hx_llm_subclasses(&r, three, 3, NULL, &out, &rep) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(out.n, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_str_eq(out.cls[i], three[i]);
    /* "dog snonea, dog common, dog snoneb, dog": the class itself dropped, cut to n = 3 */
    check_list(&out, "dog", "dog snonea|dog common|dog snoneb");
    check_list(&out, "car", "car snonea|car common|car snoneb");
    ck_assert_int_eq(rep.n_sent, 3);
    ck_assert_int_eq(rep.n_failed, 0);
    ck_assert_int_eq(mock_llm_requests(m), 3);
    /* no key in the environment: no Authorization header */
    ck_assert_int_eq(mock_llm_no_auth(m), 3);
    /* the body: model, the CHiLS prompt, temperature, max_tokens; no seed */
    ck_assert_int_eq(mock_llm_count(m, "\"model\":\"test-model\""), 3);
    ck_assert_int_eq(mock_llm_count(m, "Generate a comma separated list of 3 types of the "
                                       "following objects in a photo:\\n\\n>cat:"),
                     1);
    ck_assert_int_eq(mock_llm_count(m, "\"temperature\":0"), 3);
    ck_assert_int_eq(mock_llm_count(m, "\"max_tokens\":256"), 3);
    ck_assert_int_eq(mock_llm_count(m, "\"seed\""), 0);
    ck_assert_ptr_nonnull(strstr(rep.endpoint, "/v1/chat/completions"));
    ck_assert_ptr_nonnull(rep.cls[1].answers[0].raw);
    ck_assert_str_eq(rep.cls[1].answers[0].raw, "cat snonea, cat common, cat snoneb, cat");
    ck_assert_int_eq(rep.cls[1].answers[0].attempts, 1);
    hx_subclasses_free(&out);
    hx_llm_report_free(&rep);
    mock_llm_stop(m);
}
END_TEST

START_TEST(client_merges_samples)
{
    loopback_env();
    MOCK_OR_SKIP(m);
    struct hx_llm_request r = test_req(m);
    r.n = 4;
    r.samples = 3;
    r.has_seed = 1;
    r.seed = 7;
    r.temperature = 0.7;
    struct hx_subclasses out;
    struct hx_llm_report rep;
    ck_assert_msg(hx_llm_subclasses(&r, three, 2, NULL, &out, &rep) == 0, "%s", hx_errmsg());
    /* samples in order (seeds 7, 8, 9), repeats dropped, cut to 4 */
    check_list(&out, "dog", "dog s7a|dog common|dog s7b|dog s8a");
    ck_assert_int_eq(mock_llm_requests(m), 6);
    ck_assert_int_eq(mock_llm_count(m, "\"seed\":9"), 2);
    ck_assert_int_eq(mock_llm_count(m, "\"temperature\":0.7"), 6);
    ck_assert_int_eq((int)rep.cls[0].answers[2].seed, 9);
    hx_subclasses_free(&out);
    hx_llm_report_free(&rep);
    mock_llm_stop(m);
}
END_TEST

START_TEST(client_retries_every_transient_failure)
{
    loopback_env();
    MOCK_OR_SKIP(m);
    static const char *const cls[] = {"dog", "cat", "car", "bus", "boat", "bird", "horse"};
    mock_llm_rule(m, ">dog:", "500,ok");
    mock_llm_rule(m, ">cat:", "malformed,ok");
    mock_llm_rule(m, ">car:", "empty,ok");
    mock_llm_rule(m, ">bus:", "nolist,503,ok");
    mock_llm_rule(m, ">boat:", "drop,ok");
    mock_llm_rule(m, ">bird:", "prose");
    mock_llm_rule(m, ">horse:", "json");
    struct hx_llm_request r = test_req(m);
    struct hx_subclasses out;
    struct hx_llm_report rep;
    ck_assert_msg(hx_llm_subclasses(&r, cls, 7, NULL, &out, &rep) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(out.n, 7);
    ck_assert_int_eq(mock_llm_count(m, ">dog:"), 2);
    ck_assert_int_eq(mock_llm_count(m, ">cat:"), 2);
    ck_assert_int_eq(mock_llm_count(m, ">car:"), 2);
    ck_assert_int_eq(mock_llm_count(m, ">bus:"), 3);
    ck_assert_int_eq(mock_llm_count(m, ">boat:"), 2);
    ck_assert_int_eq(mock_llm_count(m, ">bird:"), 1);
    ck_assert_int_eq(mock_llm_count(m, ">horse:"), 1);
    check_list(&out, "bus", "bus snonea|bus common|bus snoneb");
    check_list(&out, "bird", "bird snonea|bird common|bird snoneb");
    check_list(&out, "horse", "horse snonea|horse common|horse snoneb");
    ck_assert_int_eq(rep.cls[3].answers[0].attempts, 3);
    /* the raw answer is kept as it came, prose included */
    ck_assert_ptr_nonnull(strstr(rep.cls[5].answers[0].raw, "I hope this helps"));
    hx_subclasses_free(&out);
    hx_llm_report_free(&rep);
    mock_llm_stop(m);
}
END_TEST

START_TEST(client_honours_retry_after_and_timeouts)
{
    loopback_env();
    MOCK_OR_SKIP(m);
    mock_llm_rule(m, ">dog:", "429:1,ok");
    mock_llm_rule(m, ">cat:", "slow:3000,ok");
    struct hx_llm_request r = test_req(m);
    r.timeout_s = 0.4;
    struct hx_subclasses out;
    struct hx_llm_report rep;
    double t0 = now_s();
    ck_assert_msg(hx_llm_subclasses(&r, three, 3, NULL, &out, &rep) == 0, "%s", hx_errmsg());
    double dt = now_s() - t0;
    /* the 5 ms backoff alone would retry at once: the wait is the server's 1 s */
    ck_assert_msg(dt >= 0.95, "retried after %.3f s despite Retry-After: 1", dt);
    ck_assert_msg(dt < 2.5, "took %.3f s", dt);
    ck_assert_int_eq(mock_llm_count(m, ">dog:"), 2);
    ck_assert_int_eq(mock_llm_count(m, ">cat:"), 2); /* the slow one timed out once */
    ck_assert_int_eq(mock_llm_count(m, ">car:"), 1);
    ck_assert_int_eq(out.n, 3);
    hx_subclasses_free(&out);
    hx_llm_report_free(&rep);
    mock_llm_stop(m);
}
END_TEST

START_TEST(client_waits_for_a_slot_without_spinning)
{
    loopback_env();
    MOCK_OR_SKIP(m);
    mock_llm_rule(m, ">dog:", "slow:1000");
    struct hx_llm_request r = test_req(m);
    r.parallel = 1; /* cat and car wait for dog's slot */
    struct hx_subclasses out;
    struct hx_llm_report rep;
    clock_t c0 = clock();
    double t0 = now_s();
    ck_assert_msg(hx_llm_subclasses(&r, three, 3, NULL, &out, &rep) == 0, "%s", hx_errmsg());
    double cpu = (double)(clock() - c0) / CLOCKS_PER_SEC, dt = now_s() - t0;
    ck_assert_msg(dt >= 0.95, "finished in %.3f s: the slow answer was not waited for", dt);
    ck_assert_msg(cpu < 0.15, "%.3f s of CPU for %.3f s of waiting", cpu, dt);
    ck_assert_int_eq(out.n, 3);
    hx_subclasses_free(&out);
    hx_llm_report_free(&rep);
    mock_llm_stop(m);
}
END_TEST

START_TEST(client_reports_a_class_that_keeps_failing)
{
    loopback_env();
    MOCK_OR_SKIP(m);
    mock_llm_rule(m, ">cat:", "500");
    struct hx_llm_request r = test_req(m);
    r.max_attempts = 3;
    struct hx_subclasses out;
    struct hx_llm_report rep;
    ck_assert_int_eq(hx_llm_subclasses(&r, three, 3, NULL, &out, &rep), HX_ENET);
    ck_assert_ptr_nonnull(strstr(hx_errmsg(), "cat"));
    ck_assert_int_eq(mock_llm_count(m, ">cat:"), 3);
    ck_assert_int_eq(rep.n_failed, 1);
    ck_assert_int_eq(rep.cls[1].ok, 0);
    ck_assert_ptr_nonnull(strstr(rep.cls[1].error, "HTTP 500: internal error"));
    ck_assert_ptr_nonnull(strstr(rep.cls[1].error, "after 3 attempts"));
    /* the others are kept */
    ck_assert_int_eq(out.n, 2);
    ck_assert_int_eq(hx_subclasses_find(&out, "cat"), -1);
    check_list(&out, "dog", "dog snonea|dog common|dog snoneb");
    check_list(&out, "car", "car snonea|car common|car snoneb");
    hx_subclasses_free(&out);
    hx_llm_report_free(&rep);
    mock_llm_stop(m);
}
END_TEST

START_TEST(client_fails_at_once_on_client_errors)
{
    loopback_env();
    MOCK_OR_SKIP(m);
    mock_llm_rule(m, ">dog:", "400");
    struct hx_llm_request r = test_req(m);
    struct hx_subclasses out;
    struct hx_llm_report rep;
    ck_assert_int_eq(hx_llm_subclasses(&r, three, 3, NULL, &out, &rep), HX_ENET);
    ck_assert_int_eq(mock_llm_count(m, ">dog:"), 1); /* no retry */
    ck_assert_ptr_nonnull(strstr(rep.cls[0].error, "HTTP 400"));
    ck_assert_ptr_nonnull(strstr(rep.cls[0].error, "unknown parameter"));
    ck_assert_int_eq(out.n, 2); /* a 400 is about that request: the others go on */
    hx_subclasses_free(&out);
    hx_llm_report_free(&rep);

    /* 401: every request would be refused, so the run stops after the first */
    mock_llm_stop(m);
    m = start_mock();
    ck_assert_ptr_nonnull(m);
    mock_llm_rule(m, ">dog:", "401");
    r = test_req(m);
    r.parallel = 1;
    double t0 = now_s();
    ck_assert_int_eq(hx_llm_subclasses(&r, three, 3, NULL, &out, &rep), HX_ENET);
    ck_assert_msg(now_s() - t0 < 1.0, "a 401 was retried");
    ck_assert_int_eq(mock_llm_requests(m), 1);
    ck_assert_int_eq(rep.n_failed, 3);
    ck_assert_int_eq(out.n, 0);
    ck_assert_ptr_nonnull(strstr(rep.cls[0].error, "HTTP 401"));
    ck_assert_ptr_nonnull(strstr(rep.cls[0].error, "Incorrect API key provided"));
    ck_assert_ptr_nonnull(strstr(rep.cls[2].error, "not sent"));
    hx_subclasses_free(&out);
    hx_llm_report_free(&rep);
    mock_llm_stop(m);
}
END_TEST

START_TEST(client_deadline_bounds_the_run)
{
    loopback_env();
    MOCK_OR_SKIP(m);
    mock_llm_rule(m, ">dog:", "slow:5000");
    struct hx_llm_request r = test_req(m);
    r.deadline_s = 0.5;
    struct hx_subclasses out;
    struct hx_llm_report rep;
    double t0 = now_s();
    ck_assert_int_eq(hx_llm_subclasses(&r, three, 3, NULL, &out, &rep), HX_ENET);
    double dt = now_s() - t0;
    ck_assert_msg(dt < 1.5, "took %.3f s for a 0.5 s deadline", dt);
    ck_assert_ptr_nonnull(strstr(rep.cls[0].error, "deadline"));
    ck_assert_int_eq(out.n, 2);
    hx_subclasses_free(&out);
    hx_llm_report_free(&rep);

    /* a Retry-After beyond the deadline fails the request now instead of waiting */
    mock_llm_rule(m, ">cat:", "429:3600");
    r.deadline_s = 20;
    t0 = now_s();
    ck_assert_int_eq(hx_llm_subclasses(&r, three + 1, 2, NULL, &out, &rep), HX_ENET);
    ck_assert_msg(now_s() - t0 < 1.0, "waited for a Retry-After past the deadline");
    ck_assert_ptr_nonnull(strstr(rep.cls[0].error, "HTTP 429: Rate limit reached"));
    ck_assert_ptr_nonnull(strstr(rep.cls[0].error, "would pass the deadline"));
    ck_assert_int_eq(mock_llm_count(m, ">cat:"), 2); /* once in each run */
    ck_assert_int_eq(out.n, 1);
    hx_subclasses_free(&out);
    hx_llm_report_free(&rep);
    mock_llm_stop(m);
}
END_TEST

static int count_json_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        n += l > 5 && !strcmp(e->d_name + l - 5, ".json");
    }
    closedir(d);
    return n;
}

START_TEST(client_cache_hits_send_nothing)
{
    loopback_env();
    MOCK_OR_SKIP(m);
    char cache[512];
    snprintf(cache, sizeof cache, "%s/cache/llm", hx_tmpdir()); /* created on demand */
    struct hx_llm_request r = test_req(m);
    r.samples = 2;
    struct hx_subclasses out, again;
    struct hx_llm_report rep, rep2;
    ck_assert_msg(hx_llm_subclasses(&r, three, 3, cache, &out, &rep) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(mock_llm_requests(m), 6);
    ck_assert_int_eq(count_json_files(cache), 6);
    ck_assert_msg(hx_llm_subclasses(&r, three, 3, cache, &again, &rep2) == 0, "%s",
                  hx_errmsg());
    ck_assert_int_eq(mock_llm_requests(m), 6); /* nothing sent */
    ck_assert_int_eq(rep2.n_sent, 0);
    ck_assert_int_eq(rep2.n_cached, 6);
    ck_assert_int_eq(rep2.cls[0].answers[1].from_cache, 1);
    ck_assert_str_eq(rep2.cls[0].answers[1].time, rep.cls[0].answers[1].time);
    char *a, *b;
    ck_assert_int_eq(hx_subclasses_format(&out, &a, NULL), 0);
    ck_assert_int_eq(hx_subclasses_format(&again, &b, NULL), 0);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    hx_subclasses_free(&again);
    hx_llm_report_free(&rep2);

    /* offline: cached classes answer, an uncached one fails without a request */
    static const char *const four[] = {"dog", "cat", "car", "bus"};
    r.offline = 1;
    ck_assert_int_eq(hx_llm_subclasses(&r, four, 4, cache, &again, &rep2), HX_ENET);
    ck_assert_int_eq(mock_llm_requests(m), 6);
    ck_assert_int_eq(again.n, 3);
    ck_assert_ptr_nonnull(strstr(rep2.cls[3].error, "offline"));
    hx_subclasses_free(&again);
    hx_llm_report_free(&rep2);

    /* any change to what is sent is another key: a new temperature sends again */
    r.offline = 0;
    r.temperature = 0.5;
    ck_assert_int_eq(hx_llm_subclasses(&r, three, 1, cache, &again, &rep2), 0);
    ck_assert_int_eq(mock_llm_requests(m), 8);
    hx_subclasses_free(&again);
    hx_llm_report_free(&rep2);

    /* a cache entry whose stored key differs (a hash collision, an edited file) is a miss */
    r.temperature = 0;
    DIR *d = opendir(cache);
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d)))
        if (strlen(e->d_name) > 5 && !strcmp(e->d_name + strlen(e->d_name) - 5, ".json")) {
            snprintf(path, sizeof path, "%s/%s", cache, e->d_name);
            char *t = hx_slurp(path);
            char *p = strstr(t, "test-model");
            if (p && strstr(t, ">dog:") && strstr(t, "\"sample\":\t0")) {
                memcpy(p, "best", 4);
                write_text(path, t);
            }
            free(t);
        }
    closedir(d);
    ck_assert_int_eq(hx_llm_subclasses(&r, three, 1, cache, &again, &rep2), 0);
    ck_assert_int_eq(rep2.n_cached, 1);
    ck_assert_int_eq(mock_llm_requests(m), 9);
    hx_subclasses_free(&again);
    hx_llm_report_free(&rep2);

    /* with every answer cached no network is needed: the server is gone and nothing fails */
    char url[128];
    snprintf(url, sizeof url, "%s", mock_llm_url(m));
    mock_llm_stop(m);
    r.base_url = url;
    r.samples = 2;
    r.max_attempts = 1;
    ck_assert_msg(hx_llm_subclasses(&r, three, 3, cache, &again, &rep2) == 0, "%s",
                  hx_errmsg());
    ck_assert_int_eq(rep2.n_sent, 0);
    ck_assert_int_eq(again.n, 3);
    hx_subclasses_free(&again);
    hx_llm_report_free(&rep2);
    /* and the same request for an uncached class does fail there */
    static const char *const bus[] = {"bus"};
    ck_assert_int_eq(hx_llm_subclasses(&r, bus, 1, cache, &again, &rep2), HX_ENET);
    ck_assert_ptr_nonnull(strstr(rep2.cls[0].error, "connection error"));
    hx_subclasses_free(&again);
    hx_llm_report_free(&rep2);

    hx_subclasses_free(&out);
    hx_llm_report_free(&rep);
}
END_TEST

/* ------------------------------------------------------------------ the command */

/* `harness subclasses ARGS`, stdout to outfile (or /dev/null), stderr to errfile. */
static int run_cli(const char *args, const char *outfile, const char *errfile)
{
    char full[8192];
    snprintf(full, sizeof full, "subclasses %s", args);
    return hx_run_harness(full, outfile, errfile);
}

/* 1 when any regular file under dir (recursively) contains needle. */
static int tree_contains(const char *dir, const char *needle, char *where, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            found = tree_contains(p, needle, where, cap);
        } else if (S_ISREG(st.st_mode)) {
            char *t = hx_slurp(p);
            if (t && strstr(t, needle)) {
                found = 1;
                snprintf(where, cap, "%s", p);
            }
            free(t);
        }
    }
    closedir(d);
    return found;
}

static void classes_file(const char *path)
{
    /* a class-name list as in datasets/: the first name of a line is the class */
    write_text(path, "dog\ncat\ncar, automobile\nbus");
}

START_TEST(cli_contract)
{
    loopback_env();
    MOCK_OR_SKIP(m);
    mock_llm_rule(m, ">bus:", "500");
    char dir[512], cls[600], out[600], err[600], prov[600], args[4096];
    snprintf(dir, sizeof dir, "%s", hx_tmpdir());
    snprintf(cls, sizeof cls, "%s/classes.txt", dir);
    snprintf(out, sizeof out, "%s/sub.json", dir);
    snprintf(err, sizeof err, "%s/err.log", dir);
    snprintf(prov, sizeof prov, "%s/sub.provenance.json", dir);
    classes_file(cls);
    snprintf(args, sizeof args,
             "--classes '%s' --n 2 --base-url %s --model test-model --out '%s' --cache "
             "'%s/c' --key-env HX_TEST_UNSET_KEY --backoff-ms 5 --max-attempts 2",
             cls, mock_llm_url(m), out, dir);
    /* bus keeps failing: exit 1, named on stderr; the file holds the others */
    ck_assert_int_eq(run_cli(args, NULL, err), 1);
    char *e = hx_slurp(err);
    ck_assert_ptr_nonnull(strstr(e, "class 'bus' failed: HTTP 500"));
    free(e);
    struct hx_subclasses s;
    ck_assert_msg(hx_subclasses_read(out, 0, &s) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(s.n, 3);
    check_list(&s, "dog", "dog snonea|dog common");
    check_list(&s, "car", "car snonea|car common");
    ck_assert_int_eq(hx_subclasses_find(&s, "automobile"), -1);
    hx_subclasses_free(&s);
    /* the provenance beside the output: per class endpoint, model, prompt, parameters, raw
     * answers and times */
    char *p = hx_slurp(prov);
    ck_assert_ptr_nonnull(p);
    cJSON *o = cJSON_Parse(p);
    ck_assert_ptr_nonnull(o);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(o, "classes"), "car");
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItem(c, "endpoint")->valuestring,
                                 "/v1/chat/completions"));
    ck_assert_str_eq(cJSON_GetObjectItem(c, "model")->valuestring, "test-model");
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItem(c, "prompt")->valuestring, ">car:"));
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(c, "parameters"), "n")->valueint, 2);
    const cJSON *a0 = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "answers"), 0);
    ck_assert_str_eq(cJSON_GetObjectItem(a0, "raw")->valuestring,
                     "car snonea, car common, car snoneb, car");
    ck_assert_int_eq((int)strlen(cJSON_GetObjectItem(a0, "time")->valuestring), 24);
    const cJSON *merged = cJSON_GetObjectItem(c, "subclasses");
    ck_assert_int_eq(cJSON_GetArraySize(merged), 2);
    ck_assert_str_eq(cJSON_GetArrayItem(merged, 1)->valuestring, "car common");
    ck_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "failed"), 0)->valuestring,
                     "bus");
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItem(cJSON_GetObjectItem(
                                     cJSON_GetObjectItem(o, "classes"), "bus"), "error")
                                     ->valuestring,
                                 "HTTP 500"));
    cJSON_Delete(o);
    free(p);

    /* without --out the lists go to stdout; the cache answers all but bus */
    int before = mock_llm_requests(m);
    char so[600];
    snprintf(so, sizeof so, "%s/stdout.json", dir);
    snprintf(args, sizeof args,
             "--classes '%s' --n 2 --base-url %s --model test-model --cache '%s/c' "
             "--key-env HX_TEST_UNSET_KEY --backoff-ms 5 --max-attempts 2 --quiet",
             cls, mock_llm_url(m), dir);
    ck_assert_int_eq(run_cli(args, so, err), 1);
    ck_assert_int_eq(mock_llm_requests(m), before + 2); /* bus only, twice */
    ck_assert_int_eq(hx_subclasses_read(so, 0, &s), 0);
    ck_assert_int_eq(s.n, 3);
    hx_subclasses_free(&s);

    /* bad usage: 2 */
    const char *bad[] = {
        "--n 2 --base-url http://127.0.0.1:1/v1 --model m",
        "--classes x --base-url http://127.0.0.1:1/v1 --model m",
        "--classes x --n 2 --model m",
        "--classes x --n 2 --base-url http://127.0.0.1:1/v1 --model m --prompt chils "
        "--prompt-file y",
        "--classes x --n 2 --base-url http://127.0.0.1:1/v1 --model m --prompt nope",
        "--classes /nonexistent --n 2 --base-url http://127.0.0.1:1/v1 --model m",
        "--classes x --n 2 --base-url ftp://x --model m",
        "--classes x --n 2 --base-url http://127.0.0.1:1/v1 --model m --seed 1x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "%s --no-cache", bad[i]);
        ck_assert_msg(run_cli(args, NULL, err) == 2, "not a usage error: %s", bad[i]);
    }
    ck_assert_int_eq(hx_run_harness("subclasses --help", so, so), 0);
    e = hx_slurp(so);
    ck_assert_ptr_nonnull(strstr(e, "--max-attempts"));
    ck_assert_ptr_nonnull(strstr(e, "--provenance"));
    free(e);
    mock_llm_stop(m);
}
END_TEST

START_TEST(cli_key_never_written)
{
    loopback_env();
    MOCK_OR_SKIP(m);
    static const char key[] = "sk-test-SECRET-4f1d2c3b";
    setenv("HX_TEST_LLM_KEY", key, 1);
    mock_llm_expect_key(m, key);
    mock_llm_rule(m, ">cat:", "500,429,ok"); /* retries leave log lines */
    char dir[512], cls[600], err[600], args[4096];
    snprintf(dir, sizeof dir, "%s", hx_tmpdir());
    snprintf(cls, sizeof cls, "%s/classes.txt", dir);
    snprintf(err, sizeof err, "%s/err.log", dir);
    classes_file(cls);
    snprintf(args, sizeof args,
             "--classes '%s' --n 3 --base-url %s --model test-model --out '%s/sub.json' "
             "--provenance '%s/prov.json' --cache '%s/cache' --key-env HX_TEST_LLM_KEY "
             "--backoff-ms 5",
             cls, mock_llm_url(m), dir, dir, dir);
    ck_assert_int_eq(run_cli(args, NULL, err), 0);
    /* the key went in the Authorization header of every request, nowhere else */
    ck_assert_int_eq(mock_llm_requests(m), 6);
    ck_assert_int_eq(mock_llm_auth_ok(m), 6);
    ck_assert_int_eq(mock_llm_count(m, key), 0);
    char *e = hx_slurp(err);
    ck_assert_ptr_nonnull(strstr(e, "cat: sample 0: HTTP 500"));
    free(e);
    char where[2048];
    ck_assert_msg(!tree_contains(dir, key, where, sizeof where), "the key is in %s", where);
    ck_assert_msg(tree_contains(dir, "cat snonea", where, sizeof where), "no output written");

    /* a wrong key: the 401 echoes what it got; the run stops at once, and the message
     * shows the server's text with the key masked */
    static const char wrong[] = "sk-wrong-KEY-98765";
    setenv("HX_TEST_LLM_KEY", wrong, 1);
    snprintf(args, sizeof args,
             "--classes '%s' --n 3 --base-url %s --model test-model --out '%s/sub2.json' "
             "--no-cache --key-env HX_TEST_LLM_KEY --parallel 1 --backoff-ms 5",
             cls, mock_llm_url(m), dir);
    ck_assert_int_eq(run_cli(args, NULL, err), 1);
    ck_assert_int_eq(mock_llm_requests(m), 7);
    e = hx_slurp(err);
    ck_assert_ptr_nonnull(strstr(e, "HTTP 401"));
    ck_assert_ptr_nonnull(strstr(e, "Incorrect API key provided: Bearer [key]"));
    ck_assert_ptr_null(strstr(e, wrong));
    free(e);
    ck_assert_msg(!tree_contains(dir, wrong, where, sizeof where), "the key is in %s", where);
    mock_llm_stop(m);
}
END_TEST

START_TEST(cli_resumes_after_interruption)
{
    loopback_env();
    MOCK_OR_SKIP(m);
    /* bus hangs on the first run, which is killed once the others are cached */
    mock_llm_rule(m, ">bus:", "slow:20000,ok");
    char dir[512], cls[600], err[600], out[600], cache[600];
    snprintf(dir, sizeof dir, "%s", hx_tmpdir());
    snprintf(cls, sizeof cls, "%s/classes.txt", dir);
    snprintf(err, sizeof err, "%s/err.log", dir);
    snprintf(out, sizeof out, "%s/sub.json", dir);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    classes_file(cls);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        FILE *f = freopen(err, "w", stderr);
        (void)f;
        execl(hx_harness_bin(), "harness", "subclasses", "--classes", cls, "--n", "3",
              "--base-url", mock_llm_url(m), "--model", "test-model", "--out", out, "--cache",
              cache, "--key-env", "HX_TEST_UNSET_KEY", (char *)NULL);
        _exit(127);
    }
    double t0 = now_s();
    while (count_json_files(cache) < 3 && now_s() - t0 < 10) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    ck_assert_int_eq(count_json_files(cache), 3);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    ck_assert(WIFSIGNALED(st));
    ck_assert_int_eq(access(out, F_OK), -1); /* it never finished */
    ck_assert_int_eq(mock_llm_count(m, ">bus:"), 1);

    char args[4096];
    snprintf(args, sizeof args,
             "--classes '%s' --n 3 --base-url %s --model test-model --out '%s' --cache '%s' "
             "--key-env HX_TEST_UNSET_KEY",
             cls, mock_llm_url(m), out, cache);
    ck_assert_int_eq(run_cli(args, NULL, err), 0);
    /* only the missing answer was asked for */
    ck_assert_int_eq(mock_llm_count(m, ">dog:"), 1);
    ck_assert_int_eq(mock_llm_count(m, ">cat:"), 1);
    ck_assert_int_eq(mock_llm_count(m, ">car:"), 1);
    ck_assert_int_eq(mock_llm_count(m, ">bus:"), 2);
    struct hx_subclasses s;
    ck_assert_int_eq(hx_subclasses_read(out, 0, &s), 0);
    ck_assert_int_eq(s.n, 4);
    check_list(&s, "bus", "bus snonea|bus common|bus snoneb");
    hx_subclasses_free(&s);
    char *e = hx_slurp(err);
    ck_assert_ptr_nonnull(strstr(e, "1 request sent, 3 answers from the cache"));
    free(e);
    mock_llm_stop(m);
}
END_TEST

Suite *suite_llm(void)
{
    Suite *s = suite_create("llm");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, parse_comma_lists);
    tcase_add_test(tc, parse_lines);
    tcase_add_test(tc, parse_json_and_prose);
    tcase_add_test(tc, parse_no_list);
    tcase_add_test(tc, prompt_presets_and_render);
    tcase_add_test(tc, request_from_json);
    suite_add_tcase(s, tc);
    tc = tcase_create("released");
    tcase_add_test(tc, released_pascal_voc);
    tcase_add_test(tc, released_pascal_context);
    tcase_add_test(tc, released_coco_stuff);
    tcase_add_test(tc, subclasses_reader_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("client");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, client_answers_and_request_shape);
    tcase_add_test(tc, client_merges_samples);
    tcase_add_test(tc, client_retries_every_transient_failure);
    tcase_add_test(tc, client_honours_retry_after_and_timeouts);
    tcase_add_test(tc, client_waits_for_a_slot_without_spinning);
    tcase_add_test(tc, client_reports_a_class_that_keeps_failing);
    tcase_add_test(tc, client_fails_at_once_on_client_errors);
    tcase_add_test(tc, client_deadline_bounds_the_run);
    tcase_add_test(tc, client_cache_hits_send_nothing);
    suite_add_tcase(s, tc);
    tc = tcase_create("command");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, cli_contract);
    tcase_add_test(tc, cli_key_never_written);
    tcase_add_test(tc, cli_resumes_after_interruption);
    suite_add_tcase(s, tc);
    return s;
}
