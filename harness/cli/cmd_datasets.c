#include "datasets/datasets.h"
#include "harness/cli/cli.h"

#include <stdio.h>

static const char usage[] =
    "usage: harness datasets\n"
    "\n"
    "List the registered datasets: name, number of classes, ignore index, the folder under\n"
    "the root, and a description.\n";

static int run(int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return cli_usage_error("datasets", "takes no arguments");
    printf("%-14s %7s %6s  %-22s %s\n", "name", "classes", "ignore", "layout", "description");
    for (size_t i = 0; i < hx_dataset_count(); i++) {
        const struct hx_dataset *d = hx_dataset_at(i);
        char ign[16];
        if (d->ignore_index < 0)
            snprintf(ign, sizeof ign, "none");
        else
            snprintf(ign, sizeof ign, "%d", d->ignore_index);
        printf("%-14s %7d %6s  %-22s %s\n", d->name, d->num_classes, ign,
               d->base[0] ? d->base : "(root)", d->summary);
    }
    return 0;
}

const struct hx_command hx_cmd_datasets = {"datasets", "list the registered datasets", usage,
                                           run};
