/* The BERT WordPiece tokenizer: hand-checked cases on a small vocabulary written here, the
 * SPEC's example and edge cases on the real bert-base-uncased vocabulary (shared fixture),
 * and the cases of tests/data/simseg/wordpiece_cases.json, whose ids come from the separate
 * Python implementation scripts/wordpiece_ref.py. */
#include "harness/error.h"
#include "models/simseg/wordpiece.h"
#include "tests/test_util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define L 25

static const char *write_vocab(const char *const *toks, int n)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/vocab.txt", hx_tmpdir());
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s\n", toks[i]);
    fclose(f);
    return path;
}

/* ids 0..: [PAD] [UNK] [CLS] [SEP] [MASK] a photo ##s of the cat ##er ##pillar . , un ##aff
 *          ##able caf ##e é 猫 */
static const char *const small[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a",
                                    "photo", "##s", "of", "the", "cat", "##er", "##pillar",
                                    ".", ",", "un", "##aff", "##able", "caf", "##e", "é",
                                    "猫", "cater"};

static struct hx_wordpiece *open_small(void)
{
    struct hx_wordpiece *t;
    ck_assert_msg(hx_wordpiece_open(&t, write_vocab(small, 23)) == 0, "%s", hx_errmsg());
    return t;
}

static void expect_ids(struct hx_wordpiece *t, const char *text, const int32_t *want, int n)
{
    int32_t ids[L], mask[L];
    int got = hx_wordpiece_encode(t, text, L, ids, mask);
    ck_assert_msg(got == n, "\"%s\": %d tokens, expected %d", text, got, n);
    for (int i = 0; i < L; i++) {
        int32_t w = i < n ? want[i] : hx_wordpiece_id(t, "[PAD]");
        ck_assert_msg(ids[i] == w, "\"%s\": token %d is %d (%s), expected %d", text, i, ids[i],
                      hx_wordpiece_token(t, ids[i]), w);
        ck_assert_int_eq(mask[i], i < n);
    }
}

START_TEST(small_vocabulary)
{
    struct hx_wordpiece *t = open_small();
    ck_assert_int_eq(hx_wordpiece_vocab_size(t), 23);
    ck_assert_int_eq(hx_wordpiece_id(t, "##pillar"), 12);
    ck_assert_int_eq(hx_wordpiece_id(t, "dog"), -1);
    /* greedy longest match: "cater" is whole, "caterpillar" = cater + ##pillar */
    expect_ids(t, "Photos of the CATERPILLAR.", (int32_t[]){2, 6, 7, 8, 9, 22, 12, 13, 3}, 9);
    /* "unaffable" pieces; "catx" cannot finish, so the whole word is [UNK] */
    expect_ids(t, "unaffable catx cat", (int32_t[]){2, 15, 16, 17, 1, 10, 3}, 7);
    /* accents: "café" -> NFD e + U+0301, mark dropped -> caf ##e; a lone "é" -> "e" -> [UNK]
     * (only the continuation ##e exists); "É" is the same */
    expect_ids(t, "caf\xc3\xa9 \xc3\xa9 \xc3\x89", (int32_t[]){2, 18, 19, 1, 1, 3}, 6);
    /* CJK is split out even when glued to other letters */
    expect_ids(t, "cat\xe7\x8c\xab" "cat", (int32_t[]){2, 10, 21, 10, 3}, 5);
    /* punctuation splits words: "a,a.a" -> a , a . a */
    expect_ids(t, "a,a.a", (int32_t[]){2, 5, 14, 5, 13, 5, 3}, 7);
    /* special-token strings in the raw text */
    expect_ids(t, "a[MASK]cat [SEP]", (int32_t[]){2, 5, 4, 10, 3, 3}, 6);
    /* truncation keeps [SEP] last */
    char buf[200] = "";
    for (int i = 0; i < 30; i++)
        strcat(buf, "a ");
    int32_t want[L];
    want[0] = 2;
    for (int i = 1; i < L - 1; i++)
        want[i] = 5;
    want[L - 1] = 3;
    expect_ids(t, buf, want, L);
    int32_t p[4];
    ck_assert_int_eq(hx_wordpiece_pieces(t, buf, p, 4), 30);
    ck_assert_int_eq(p[3], 5);
    hx_wordpiece_free(t);
}
END_TEST

START_TEST(long_words)
{
    char w100[102], w101[103];
    memset(w100, 'a', 100);
    w100[100] = 0;
    memset(w101, 'a', 101);
    w101[101] = 0;
    const char *toks[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", w100, w101};
    struct hx_wordpiece *t;
    ck_assert_msg(hx_wordpiece_open(&t, write_vocab(toks, 6)) == 0, "%s", hx_errmsg());
    expect_ids(t, w100, (int32_t[]){2, 4, 3}, 3);
    expect_ids(t, w101, (int32_t[]){2, 1, 3}, 3);
    hx_wordpiece_free(t);
}
END_TEST

START_TEST(rejects_bad_input)
{
    const char *no_unk[] = {"[PAD]", "[CLS]", "[SEP]", "a"};
    struct hx_wordpiece *t = NULL;
    ck_assert_int_eq(hx_wordpiece_open(&t, write_vocab(no_unk, 4)), HX_EFORMAT);
    ck_assert_ptr_nonnull(strstr(hx_errmsg(), "[UNK]"));
    ck_assert_int_eq(hx_wordpiece_open(&t, "/nonexistent/vocab.txt"), HX_EIO);
    t = open_small();
    int32_t ids[L];
    ck_assert_int_eq(hx_wordpiece_encode(t, "bad \xff byte", L, ids, NULL), HX_EINVAL);
    ck_assert_int_eq(hx_wordpiece_encode(t, "a", 1, ids, NULL), HX_EINVAL);
    hx_wordpiece_free(t);
}
END_TEST

static struct hx_wordpiece *open_bert(void)
{
    const char *p = hx_fixture("bert/vocab.txt");
    if (!p)
        return NULL;
    struct hx_wordpiece *t;
    ck_assert_msg(hx_wordpiece_open(&t, p) == 0, "%s", hx_errmsg());
    ck_assert_int_eq(hx_wordpiece_vocab_size(t), 30522);
    return t;
}

START_TEST(bert_spec_example)
{
    struct hx_wordpiece *t = open_bert();
    if (!t)
        HX_SKIP("fixture bert/vocab.txt absent");
    expect_ids(t, "a bad photo of a aeroplane.",
               (int32_t[]){101, 1037, 2919, 6302, 1997, 1037, 18440, 11751, 1012, 102}, 10);
    ck_assert_int_eq(hx_wordpiece_id(t, "[UNK]"), 100);
    ck_assert_int_eq(hx_wordpiece_id(t, "[PAD]"), 0);
    /* accents stripped and lowercased: "Café" == "cafe" */
    int32_t a[L], b[L];
    ck_assert_int_eq(hx_wordpiece_encode(t, "Caf\xc3\xa9 CR\xc3\x88ME", L, a, NULL),
                     hx_wordpiece_encode(t, "cafe creme", L, b, NULL));
    ck_assert_mem_eq(a, b, sizeof a);
    hx_wordpiece_free(t);
}
END_TEST

START_TEST(bert_python_cases)
{
    struct hx_wordpiece *t = open_bert();
    if (!t)
        HX_SKIP("fixture bert/vocab.txt absent");
    const char *path = hx_testdata("simseg/wordpiece_cases.json");
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s missing (run scripts/wordpiece_ref.py)", path);
    static char buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *root = cJSON_Parse(buf), *c;
    ck_assert_ptr_nonnull(root);
    ck_assert_int_eq(cJSON_GetObjectItem(root, "max_length")->valueint, L);
    int count = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases"))
    {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        cJSON *jids = cJSON_GetObjectItem(c, "ids");
        ck_assert_int_eq(cJSON_GetArraySize(jids), L);
        int32_t want[L];
        for (int i = 0; i < L; i++)
            want[i] = cJSON_GetArrayItem(jids, i)->valueint;
        expect_ids(t, text, want, cJSON_GetObjectItem(c, "n_valid")->valueint);
        ck_assert_int_eq(hx_wordpiece_pieces(t, text, NULL, 0),
                         cJSON_GetObjectItem(c, "pieces")->valueint);
        count++;
    }
    ck_assert_int_ge(count, 20);
    cJSON_Delete(root);
    hx_wordpiece_free(t);
}
END_TEST

Suite *suite_wordpiece(void)
{
    Suite *s = suite_create("wordpiece");
    TCase *tc = tcase_create("wordpiece");
    tcase_add_test(tc, small_vocabulary);
    tcase_add_test(tc, long_words);
    tcase_add_test(tc, rejects_bad_input);
    tcase_add_test(tc, bert_spec_example);
    tcase_add_test(tc, bert_python_cases);
    suite_add_tcase(s, tc);
    return s;
}
