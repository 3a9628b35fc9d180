#include "harness/cli/cli.h"
#include "harness/error.h"
#include "harness/report.h"

static const char usage[] =
    "usage: harness table [--out DIR] RESULTS...\n"
    "\n"
    "Regenerate the tables of finished runs: for each RESULTS folder (holding summary.json),\n"
    "write <name>.md, <name>.csv and <name>.tex into DIR (default: paper).\n";

static int run(int argc, char **argv)
{
    const char *out = "paper";
    struct cli_opt opts[] = {{"out", CLI_STR, &out}};
    char *pos[argc];
    int n, code, rc;
    if ((code = cli_parse(argv[0], argc, argv, opts, 1, pos, &n)))
        return code;
    if (n == 0)
        return cli_usage_error(argv[0], "no RESULTS folder given");
    for (int i = 0; i < n; i++)
        if ((rc = hx_report_tables(pos[i], out)))
            return cli_fail(argv[0], rc);
    return 0;
}

const struct hx_command hx_cmd_table = {"table", "regenerate result tables into paper/", usage,
                                        run};
