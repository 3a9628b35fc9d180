/* The command table and the small option parser shared by all commands.
 *
 * Each command lives in harness/cli/cmd_NAME.c and defines
 *     const struct hx_command hx_cmd_NAME = { "name", "summary", usage, run };
 * The Makefile lists those files, so a new command needs no other edit.
 * Exit codes: 0 ok, 1 failure, 2 bad usage or input. */
#ifndef HX_CLI_H
#define HX_CLI_H

struct hx_command {
    const char *name;
    const char *summary; /* one line for `harness --help` */
    const char *usage;   /* the whole `harness NAME --help` text */
    int (*run)(int argc, char **argv); /* argv[0] is the command name; returns the exit code */
};

enum cli_kind { CLI_STR, CLI_INT, CLI_FLOAT, CLI_FLAG };

struct cli_opt {
    const char *name; /* without the leading "--" */
    enum cli_kind kind;
    void *dst; /* const char **, int *, double *, or int * (set to 1) */
};

/* Parse `--name value`, `--name=value` and flags from argv[1..]; everything else (and all
 * after `--`) is collected in pos[] (an array of argc pointers owned by the caller).
 * Returns 0, or prints a one-line usage error naming the option and returns 2. */
int cli_parse(const char *cmd, int argc, char **argv, const struct cli_opt *opts, int nopts,
              char **pos, int *npos);

/* Print "harness CMD: <message>" on stderr and return 2 (bad usage or input). */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print the library's last error message for `cmd` and map the status to an exit code
 * (input errors -> 2, everything else -> 1). */
int cli_fail(const char *cmd, int status);

/* Require a string option; prints a usage error naming it when missing. */
int cli_require(const char *cmd, const char *value, const char *name);

/* Monotonic seconds, for timing commands. */
double cli_seconds(void);

/* Peak resident set of this process in MB. VmHWM, unlike getrusage's ru_maxrss, starts
 * afresh at exec, so a parent's size (e.g. a Python driver) does not leak into it. */
double cli_peak_rss_mb(void);

#endif
