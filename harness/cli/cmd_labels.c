#include "datasets/datasets.h"
#include "harness/cli/cli.h"
#include "harness/error.h"
#include "harness/labelmap.h"

#include <stdio.h>
#include <stdlib.h>

static const char usage[] =
    "usage: harness labels --dataset NAME --root DIR --id ID --out FILE.png\n"
    "\n"
    "Write the evaluation label map of one sample as an 8-bit greyscale PNG: the dataset's\n"
    "remap applied (values 0..C-1, 255 ignored). 'harness datasets' lists the names.\n"
    "\n"
    "  --dataset NAME   a registered dataset (voc21, ade150, ...)\n"
    "  --root DIR       the dataset root in the mmsegmentation layout\n"
    "  --id ID          the sample id (file stem; Cityscapes: [city/]stem)\n"
    "  --out FILE.png   output, written atomically\n"
    "\n"
    "Exit codes: 0 ok, 1 failure, 2 bad usage or input (unknown dataset, missing file, size\n"
    "mismatch, label values out of range).\n";

static int run(int argc, char **argv)
{
    const char *name = NULL, *root = NULL, *id = NULL, *out = NULL;
    struct cli_opt opts[] = {{"dataset", CLI_STR, &name},
                             {"root", CLI_STR, &root},
                             {"id", CLI_STR, &id},
                             {"out", CLI_STR, &out}};
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    int npos = 0, rc;
    struct hx_labelmap m = {0};
    if (!pos)
        return 1;
    if ((rc = cli_parse("labels", argc, argv, opts, 4, pos, &npos)) != 0)
        goto done;
    if (npos) {
        rc = cli_usage_error("labels", "unexpected argument '%s'", pos[0]);
        goto done;
    }
    if ((rc = cli_require("labels", name, "dataset")) || (rc = cli_require("labels", root, "root")) ||
        (rc = cli_require("labels", id, "id")) || (rc = cli_require("labels", out, "out")))
        goto done;
    const struct hx_dataset *d = hx_dataset_find(name);
    if (!d) {
        rc = cli_usage_error("labels", "unknown dataset '%s' (see 'harness datasets')", name);
        goto done;
    }
    int st = hx_dataset_label(d, root, id, &m);
    if (!st)
        st = hx_labelmap_write(out, m.px, m.w, m.h);
    rc = st ? cli_fail("labels", st) : 0;
done:
    hx_labelmap_free(&m);
    free(pos);
    return rc;
}

const struct hx_command hx_cmd_labels = {"labels", "write the evaluation label map of one sample",
                                         usage, run};
