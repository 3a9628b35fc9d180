/* build/harness: a table of commands, each with --help. */
#include "harness/cli/cli.h"

#include <malloc.h>
#include <stdio.h>
#include <string.h>

#define HX_COMMAND(n) extern const struct hx_command hx_cmd_##n;
#include "commands.inc"
#undef HX_COMMAND

static const struct hx_command *const commands[] = {
#define HX_COMMAND(n) &hx_cmd_##n,
#include "commands.inc"
#undef HX_COMMAND
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: harness COMMAND [OPTIONS]\n\n"
               "Open-vocabulary semantic segmentation evaluation harness.\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-14s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(f, "\n'harness COMMAND --help' describes one command.\n");
}

static const struct hx_command *find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    /* Per-image buffers of tens of MB would otherwise be mmapped and unmapped for every image,
     * paying page faults each time: keep freed memory in the heap for reuse. */
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        if (argc > 2 && find(argv[2])) {
            fputs(find(argv[2])->usage, stdout);
            return 0;
        }
        usage(stdout);
        return 0;
    }
    const struct hx_command *c = find(argv[1]);
    if (!c) {
        fprintf(stderr, "harness: unknown command '%s' (see 'harness --help')\n", argv[1]);
        return 2;
    }
    for (int i = 2; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(c->usage, stdout);
            return 0;
        }
    return c->run(argc - 1, argv + 1);
}
