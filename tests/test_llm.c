/* LLM subclass generation (harness/llm.c) against a loopback mock server (tests/mock_llm.c),
 * the answer parser, and the subclass-list reader (harness/subclasses.c) on the released
 * lists. */
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

__attribute__((unused)) static char *slurp(const char *path)
{
    uint8_t *t = NULL;
    size_t n = 0;
    if (hx_read_file(path, &t, &n))
        return NULL;
    char *s = realloc(t, n + 1);
    if (!s) {
        free(t);
        return NULL;
    }
    s[n] = 0;
    return s;
}

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
    return s;
}
