/* main.c — the sluice command: dispatches to the subcommands (run, gen,
 * keygen) and prints help, version and (--man) the man page. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cli_sql_explain(int argc, char **argv); /* sql_cmd.c */

int main(int argc, char **argv)
{
    if (argc < 2) {
        cli_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        cli_usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("sluice %s\n", sl_version());
        return 0;
    }
    if (!strcmp(cmd, "--man")) { /* hidden: `make man` writes sluice.1 with it */
        cli_man(stdout, argc > 2 ? argv[2] : "");
        return 0;
    }
    if (!strcmp(cmd, "run")) return cli_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "gen")) return cli_gen(argc - 1, argv + 1);
    if (!strcmp(cmd, "explain")) return cli_sql_explain(argc - 1, argv + 1);
    if (!strcmp(cmd, "keygen")) return cli_keygen(argc - 1, argv + 1);
    if (!strcmp(cmd, "savepoint")) return cli_savepoint(argc - 1, argv + 1);
    if (!strcmp(cmd, "sink-task")) return cli_sink_task(argc - 1, argv + 1);
    if (!strcmp(cmd, "avro-schema")) return cli_avro_schema(argc - 1, argv + 1);
    fprintf(stderr, "sluice: unknown command '%s' (commands: run, explain, gen, "
            "keygen, savepoint, sink-task, avro-schema)\n", cmd);
    return 2;
}
