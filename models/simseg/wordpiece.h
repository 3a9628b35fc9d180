/* BERT's uncased WordPiece tokenizer, as SimSeg calls it (SPEC-simseg 2.4.6):
 * BertTokenizerFast for bert-base-uncased with padding='max_length', truncation=True.
 *
 * Steps, in the order of the Hugging Face `tokenizers` pipeline:
 *  1. Special tokens: the literal strings [PAD] [UNK] [CLS] [SEP] [MASK] in the raw text are
 *     matched first (leftmost, longest) and give their ids directly; the text between them
 *     goes through the steps below.
 *  2. Normaliser (BertNormalizer, lowercase = strip_accents = true):
 *     clean text: drop U+0000, U+FFFD and control characters (categories C*, except \t \n \r),
 *     map whitespace (\t \n \r, Zs, U+2028, U+2029) to a space; put spaces around CJK
 *     ideographs; NFD and drop nonspacing marks (Mn); lowercase character by character
 *     (simple Unicode mapping; the one multi-character full mapping, U+0130, cannot occur
 *     after NFD; no final-sigma context).
 *  3. Pre-tokeniser: split on whitespace, and every punctuation character (ASCII 33-47, 58-64,
 *     91-96, 123-126, or a P* category) is a word of its own.
 *  4. WordPiece: greedy longest match from the left, continuations prefixed "##"; a word of
 *     more than 100 characters, or one with an unmatchable remainder, becomes [UNK].
 *  5. [CLS] pieces [SEP], truncated to max_len (pieces cut, [SEP] kept), padded with [PAD].
 * Unicode data come from utf8proc (Unicode 15).
 *
 * Vocabulary: vocab.txt, one token per line, id = line index (0-based); trailing whitespace
 * of a line is dropped; a token listed twice keeps its last id. [UNK], [CLS], [SEP] and [PAD]
 * must be present.
 * Ownership: hx_wordpiece_open allocates, hx_wordpiece_free frees. A tokenizer is read-only
 * after opening and may be shared between threads. */
#ifndef HX_WORDPIECE_H
#define HX_WORDPIECE_H

#include <stdint.h>

#define HX_WORDPIECE_MAX_CHARS 100 /* longer words become [UNK] */

struct hx_wordpiece;

int hx_wordpiece_open(struct hx_wordpiece **out, const char *vocab_path);
void hx_wordpiece_free(struct hx_wordpiece *t);

/* The id of a token string, or -1 when it is not in the vocabulary. */
int32_t hx_wordpiece_id(const struct hx_wordpiece *t, const char *token);
/* The token string of an id (owned by the tokenizer), or NULL when out of range. */
const char *hx_wordpiece_token(const struct hx_wordpiece *t, int32_t id);
/* Number of lines of vocab.txt, i.e. the rows of the word embedding. */
int hx_wordpiece_vocab_size(const struct hx_wordpiece *t);

/* Encode `text` (UTF-8) as [CLS] pieces [SEP] [PAD]... into ids[max_len] and
 * mask[max_len] (1 up to and including [SEP], 0 after; mask may be NULL). max_len >= 2.
 * Returns the number of valid tokens (2..max_len), or a negative error: invalid UTF-8 is
 * HX_EINVAL quoting the text. */
int hx_wordpiece_encode(const struct hx_wordpiece *t, const char *text, int max_len,
                        int32_t *ids, int32_t *mask);

/* The word pieces of `text` without special tokens, truncation or padding: writes at most
 * `cap` ids and returns the total count (which may exceed cap), or a negative error. */
int hx_wordpiece_pieces(const struct hx_wordpiece *t, const char *text, int32_t *ids, int cap);

#endif
