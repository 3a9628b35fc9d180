/* harness tokenize --model DIR|FILE TEXT...: CLIP token ids, one line per text. */
#include "harness/cli/cli.h"
#include "models/clip/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define CONTEXT_LEN 77

static const char usage[] =
    "usage: harness tokenize --model DIR|FILE TEXT...\n"
    "\n"
    "Print the CLIP token ids of each TEXT on one line, separated by single spaces: the start\n"
    "token, the BPE ids, the end token (no padding; at most 77, a longer text is cut with the\n"
    "end token kept last).\n"
    "\n"
    "options:\n"
    "  --model DIR|FILE  a model directory holding vocab.json + merges.txt, tokenizer.json or\n"
    "                    bpe_simple_vocab_16e6.txt.gz (tried in that order), or the path of\n"
    "                    one of those files\n"
    "  --help            this text\n"
    "\n"
    "A TEXT that starts with \"--\" goes after a \"--\" argument.\n"
    "\n"
    "exit codes: 0 ok, 1 failure, 2 bad usage or input (missing or malformed files, invalid\n"
    "UTF-8 text)\n";

static int run(int argc, char **argv)
{
    const char *model = NULL;
    struct cli_opt opts[] = {{"model", CLI_STR, &model}};
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    struct hx_tokenizer *t = NULL;
    int npos = 0, rc;
    if (!pos) {
        fprintf(stderr, "harness tokenize: out of memory\n");
        return 1;
    }
    if ((rc = cli_parse("tokenize", argc, argv, opts, 1, pos, &npos)) ||
        (rc = cli_require("tokenize", model, "model")))
        goto done;
    if (npos == 0) {
        rc = cli_usage_error("tokenize", "no TEXT given");
        goto done;
    }
    struct stat st;
    int st_rc = stat(model, &st) == 0 && S_ISDIR(st.st_mode) ? hx_tokenizer_open(&t, model)
                                                               : hx_tokenizer_open_file(&t, model);
    if (st_rc) {
        rc = cli_fail("tokenize", st_rc);
        goto done;
    }
    for (int i = 0; i < npos; i++) {
        int32_t ids[CONTEXT_LEN];
        int n = hx_tokenize(t, pos[i], ids, CONTEXT_LEN);
        if (n < 0) {
            fflush(stdout);
            rc = cli_fail("tokenize", n);
            goto done;
        }
        for (int k = 0; k < n; k++)
            printf(k ? " %d" : "%d", (int)ids[k]);
        putchar('\n');
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "harness tokenize: cannot write the output\n");
        rc = 1;
    }
done:
    hx_tokenizer_free(t);
    free(pos);
    return rc;
}

const struct hx_command hx_cmd_tokenize = {"tokenize", "print the CLIP token ids of texts",
                                           usage, run};
