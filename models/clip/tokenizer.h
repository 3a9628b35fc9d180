/* The exact CLIP byte-level BPE tokenizer (SPEC 1, "Tokenizer").
 *
 * Vocabulary sources, tried in this order by hx_tokenizer_open(dir): vocab.json + merges.txt,
 * tokenizer.json (Hugging Face fast-tokenizer JSON), bpe_simple_vocab_16e6.txt.gz (the
 * original OpenAI file; the vocabulary is derived from the merges). A path to a file of one of
 * these kinds can be given to hx_tokenizer_open_file.
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
int hx_tokenizer_vocab_size(const struct hx_tokenizer *t);

/* Encode `text` (UTF-8) as [sot] + ids + [eot], cut to at most `max_len` tokens with eot kept
 * last (max_len >= 2; CLIP uses 77). Writes to ids[max_len]; returns the number of tokens
 * (>= 2), or a negative error (invalid UTF-8 is an HX_EINVAL error quoting the text). */
int hx_tokenize(struct hx_tokenizer *t, const char *text, int32_t *ids, int max_len);

#endif
