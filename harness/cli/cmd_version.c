#include "harness/cli/cli.h"

#include <stdio.h>

static int run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    puts("harness 0.1");
    return 0;
}

const struct hx_command hx_cmd_version = {"version", "print the version", "usage: harness version\n", run};
