/* Text clean-up in front of the CLIP tokenizer (SPEC 1, "Tokenizer"), and the Unicode classes
 * its splitting pattern uses.
 *
 * hx_clip_clean_text does, in this order: HTML unescape twice (Python html.unescape), collapse
 * runs of whitespace (Unicode White_Space, as `\s` of the Python `regex` module) to one space,
 * strip (Python str.strip: White_Space plus U+001C..U+001F), lowercase (Python str.lower: simple
 * mappings plus U+0130 -> "i\u0307" and the final-sigma rule), NFC.
 * Ownership: every char ** output is allocated here and freed by the caller with free(). */
#ifndef HX_CLIP_TEXT_NORM_H
#define HX_CLIP_TEXT_NORM_H

#include <stddef.h>
#include <stdint.h>

/* Python's html.unescape on UTF-8 `in` (length `len`, need not be NUL-terminated; must be
 * valid UTF-8). Named references of the HTML5 table (the legacy ones also without ';', with
 * the longest-prefix rule), numeric references with Python's replacements (NUL, CR, surrogates
 * and values above U+10FFFF -> U+FFFD; 0x80..0x9F via cp1252; non-characters and most C0/C1
 * controls dropped). *out is NUL-terminated, *out_len its length (out_len may be NULL). */
int hx_html_unescape(const char *in, size_t len, char **out, size_t *out_len);

/* The whole clean-up above on the NUL-terminated UTF-8 `text`. Invalid UTF-8 is HX_EINVAL
 * with a message quoting (the start of) the text. */
int hx_clip_clean_text(const char *text, char **out);

/* Python str.lower of one NUL-terminated valid UTF-8 string (exposed for tests). */
int hx_py_lower(const char *text, char **out);

/* The classes of the splitting pattern: \p{L}, \p{N} (utf8proc general categories) and \s
 * (Unicode White_Space). */
int hx_uc_is_letter(int32_t cp);
int hx_uc_is_number(int32_t cp);
int hx_uc_is_space(int32_t cp);

#endif
