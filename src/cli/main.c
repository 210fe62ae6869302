/* main.c — the sluice command: dispatches to the subcommands (run, gen,
 * keygen) and prints help and version. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cli_sql_explain(int argc, char **argv); /* sql_cmd.c */

static const char usage[] =
    "usage: sluice <command> [options]\n"
    "\n"
    "commands:\n"
    "  run JOB [options]    run a job: JOB is a built-in job name (telecom-age)\n"
    "                       or a SQL file (FILE.sql)\n"
    "  explain FILE.sql     print the plan of a SQL job\n"
    "  gen [options]        write the synthetic reference data set (events,\n"
    "                       subscribers, cells) as CSV files\n"
    "  keygen PATH [--id ID]  create a pseudonymisation key file\n"
    "  savepoint DIR        ask the job checkpointing into DIR for a savepoint\n"
    "  --version            print the version\n"
    "  --help               this text; `sluice COMMAND --help` for a command\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("sluice %s\n", sl_version());
        return 0;
    }
    if (!strcmp(cmd, "run")) return cli_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "gen")) return cli_gen(argc - 1, argv + 1);
    if (!strcmp(cmd, "explain")) return cli_sql_explain(argc - 1, argv + 1);
    if (!strcmp(cmd, "keygen")) return cli_keygen(argc - 1, argv + 1);
    if (!strcmp(cmd, "savepoint")) return cli_savepoint(argc - 1, argv + 1);
    fprintf(stderr, "sluice: unknown command '%s' (commands: run, explain, gen, "
            "keygen, savepoint)\n", cmd);
    return 2;
}
