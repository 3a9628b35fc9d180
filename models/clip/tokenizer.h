/* The exact CLIP byte-level BPE tokenizer (SPEC 1, "Tokenizer").
 *
 * Vocabulary sources, tried in this order by hx_tokenizer_open(dir): vocab.json + merges.txt,
 * tokenizer.json (Hugging Face fast-tokenizer JSON), bpe_simple_vocab_16e6.txt.gz (the
 * original OpenAI file; the vocabulary is derived from the merges). A path to a file of one of
 * these kinds can be given to hx_tokenizer_open_file: "*.gz" or "bpe_simple*" is the original
 * file (line 1 a header, then at most 48894 merges), "*merges.txt" pairs with the vocab.json
 * beside it (a first line "#version..." is skipped), and a "*.json" is read as a
 * tokenizer.json when so named or when it has a top-level "model" object, else as a vocab.json
 * paired with the merges.txt beside it.
 * Every merge and its result must be in the vocabulary; errors name the file (and line or
 * merge index). A merge listed twice keeps its last rank, as in the Python code.
 * Ownership: open allocates; hx_tokenizer_free frees. A tokenizer is not thread-safe (it keeps
 * a word -> tokens cache); use one per thread. */
#ifndef HX_TOKENIZER_H
#define HX_TOKENIZER_H

#include <stdint.h>

struct hx_tokenizer;

int hx_tokenizer_open(struct hx_tokenizer **out, const char *model_dir);
int hx_tokenizer_open_file(struct hx_tokenizer **out, const char *path);
void hx_tokenizer_free(struct hx_tokenizer *t);

/* Ids of <|startoftext|> and <|endoftext|> in this vocabulary (49406, 49407 for CLIP). */
int32_t hx_tokenizer_sot(const struct hx_tokenizer *t);
int32_t hx_tokenizer_eot(const struct hx_tokenizer *t);
/* The number of ids: the largest id + 1 (49408 for CLIP), i.e. the rows of the embedding. */
int hx_tokenizer_vocab_size(const struct hx_tokenizer *t);

/* The token string of `id` (byte-level characters, "</w>" ending a word), or NULL for an id
 * out of range or unused. Owned by the tokenizer. */
const char *hx_tokenizer_token(const struct hx_tokenizer *t, int32_t id);
/* The id of the token string `token`, or -1 when it is not in the vocabulary. */
int32_t hx_tokenizer_id(const struct hx_tokenizer *t, const char *token);

/* Encode `text` (UTF-8) as [sot] + ids + [eot], cut to at most `max_len` tokens with eot kept
 * last (max_len >= 2; CLIP uses 77). Writes to ids[max_len]; returns the number of tokens
 * (>= 2), or a negative error (invalid UTF-8 is an HX_EINVAL error quoting the text).
 * The text is cleaned as in models/clip/text_norm.h (hx_clip_clean_text), split with the
 * CLIP pattern, and each piece encoded by BPE; "<|startoftext|>" / "<|endoftext|>" in the
 * text become the special ids. As SPEC 1 says, there is no ftfy step (the original Python
 * code runs ftfy.fix_text first, which for instance uncurls quotes and splits ligatures).
 * A small vocabulary lacking the symbol of some byte makes a word with that byte an HX_EINVAL
 * error naming the word (the original tokenizer fails too; Hugging Face would substitute the
 * unknown token). */
int hx_tokenize(struct hx_tokenizer *t, const char *text, int32_t *ids, int max_len);

#endif
