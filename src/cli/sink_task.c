/* sink_task.c — `sluice sink-task`: runs the PostgreSQL sink task of the
 * distributed mode (a result topic, read_committed, into a PostgreSQL table
 * with its offsets in the same transaction; sl_pg_sink_task_run), and
 * `sluice avro-schema`: prints the Avro schema format='avro' uses for a
 * column list. Options map to the task's keys; --set passes any other. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static volatile int g_stop;

static void on_stop(int sig)
{
    (void)sig;
    g_stop = 1;
}

int cli_sink_task(int argc, char **argv)
{
    /* --flag VALUE options and the key each sets (inside the parser, so
     * tests/package/test_man.py finds them) */
    static const struct {
        const char *flag, *key;
    } flags[] = {{"--from-kafka", "bootstrap.servers"},
                 {"--topic", "topic"},
                 {"--format", "format"},
                 {"--schema", "schema"},
                 {"--pg", "dsn"},
                 {"--table", "table"},
                 {"--group", "group.id"},
                 {"--mode", "mode"},
                 {"--key", "key"}};
    const char **kv = calloc((size_t)argc * 2 + 2, sizeof *kv);
    int n = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help")) {
            free(kv);
            cli_help(stdout, "sink-task");
            return 0;
        }
        if (!strcmp(a, "--bounded")) {
            kv[n++] = "bounded";
            kv[n++] = "true";
            continue;
        }
        const char *key = NULL;
        for (size_t f = 0; f < sizeof flags / sizeof *flags; f++)
            if (!strcmp(a, flags[f].flag)) key = flags[f].key;
        if (key && i + 1 < argc) {
            kv[n++] = key;
            kv[n++] = argv[++i];
            continue;
        }
        if (!strcmp(a, "--set") && i + 1 < argc && strchr(argv[i + 1], '=')) {
            char *eq = strchr(argv[++i], '=');
            *eq = 0;
            kv[n++] = argv[i];
            kv[n++] = eq + 1;
            continue;
        }
        fprintf(stderr, "sluice sink-task: unknown or incomplete option '%s' (see "
                "sluice sink-task --help)\n", a);
        free(kv);
        return 2;
    }
    signal(SIGINT, on_stop);
    signal(SIGTERM, on_stop);
    char err[1024];
    int rc = sl_pg_sink_task_run(kv, &g_stop, err, sizeof err);
    free(kv);
    if (rc) {
        fprintf(stderr, "sluice sink-task: %s\n", err);
        return 1;
    }
    return 0;
}

int cli_avro_schema(int argc, char **argv)
{
    const char *cols = NULL, *name = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            cli_help(stdout, "avro-schema");
            return 0;
        }
        if (!strcmp(argv[i], "--schema") && i + 1 < argc) cols = argv[++i];
        else if (!strcmp(argv[i], "--name") && i + 1 < argc) name = argv[++i];
        else {
            fprintf(stderr, "sluice avro-schema: unknown or incomplete option '%s'\n",
                    argv[i]);
            return 2;
        }
    }
    if (!cols) {
        fprintf(stderr, "sluice avro-schema: --schema 'name TYPE, ...' is required\n");
        return 2;
    }
    char out[16384];
    uint64_t fp = 0;
    if (sl_avro_schema(cols, name, out, sizeof out, &fp)) {
        fprintf(stderr, "sluice avro-schema: %s\n", out);
        return 1;
    }
    printf("%s\n", out);
    fprintf(stderr, "fingerprint (CRC-64-AVRO of the canonical form): 0x%016" PRIx64 "\n",
            fp);
    return 0;
}
