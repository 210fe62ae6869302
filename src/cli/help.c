/* help.c — the one description of the sluice command line: a table of
 * subcommands and their options from which both `sluice [CMD] --help` and
 * the man page sluice(1) (`sluice --man`, run by `make man`) are printed,
 * so the two cannot drift. The job keys section of the man page comes
 * from the library's own configuration table (sl_job_conf_info). It does
 * not parse options: each subcommand's parser lives with the subcommand,
 * and tests/package/test_man.py fails when a parser accepts a long option
 * this table does not describe. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *flag; /* "--events PATH"; NULL: set with --set KEY=VALUE only */
    const char *key;  /* name for --set, or NULL */
    const char *def;  /* default shown in parentheses, or NULL */
    const char *desc;
} cli_opt;

typedef struct {
    const char *name;    /* subcommand; NULL ends the table */
    const char *args;    /* arguments as shown in the command list */
    const char *summary; /* one line in the command list */
    const char *usage;   /* usage lines after "sluice ", '\n'-separated; a
                            line starting with ' ' continues the one before */
    bool job_keys;       /* takes the job keys (sl_job_conf_info) with --set */
    const char *about;   /* what it does; blank lines separate paragraphs */
    const cli_opt *opts;
    const char *notes;   /* printed after the options */
} cli_cmd;

static const cli_opt run_opts[] = {
    {"--cluster BOOTSTRAP", NULL, NULL,
     "SQL jobs: run as one instance of the distributed mode on the Kafka cluster "
     "BOOTSTRAP (host:port[,...]); start it on any number of machines, Kafka "
     "places the work (keys cluster.*; docs/distributed.md)"},
    {"--events PATH", "events", "data/events", "event file or directory"},
    {"--format csv|jsonl", "format", "csv", "event format"},
    {"--subscribers PATH", "subscribers", "data/subscribers.csv",
     "subscriber table CSV"},
    {"--cells PATH", "cells", "data/cells.csv", "cell table CSV"},
    {"--key-file PATH", "key.file", "data/keys.txt", "pseudonymisation keys"},
    {"--db PATH", "db", "out/demo.db", "SQLite result database"},
    {NULL, "table", "age_distribution", "result table in that database"},
    {"--sink sqlite|postgres", "sink", "sqlite", "where the results go"},
    {"--pg DSN", "pg.dsn", "\"\"",
     "PostgreSQL connection string or URI for the results (\"\" = the PG* "
     "variables); implies --sink postgres (docs/postgres.md)"},
    {NULL, "subscribers.pg.table", "off",
     "read the subscribers from this PostgreSQL table (msisdn text, birth_date "
     "date, gender text), connecting with pg.dsn"},
    {NULL, "subscribers.pg.refresh.ms", "0: never",
     "poll that table this often for rows whose updated_at changed; the windows "
     "processed after a poll use them"},
    {"--k N", "k", "16", "k-anonymity threshold, >= 2"},
    {"--window-ms N", "window.ms", "60000", "window length"},
    {"--watermark-delay-ms N", "watermark.delay.ms", "5000",
     "bounded out-of-orderness"},
    {"--lateness-ms N", "lateness.ms", "0", "allowed lateness"},
    {NULL, "rotation", "auto",
     "key rotation, auto or off: auto rotates when the key file dates its keys "
     "(VALID_FROM), one key per period"},
    {NULL, "rotation.period.ms", "86400000: one UTC day",
     "rotation period, a multiple of the window"},
    {NULL, "key.domain", NULL, "use the keys D and D:... only (implies rotation)"},
    {NULL, "k.fold", "off",
     "fold groups below k into coarser ones instead of only suppressing them, "
     "e.g. age_band:wide,area,age_band (docs/privacy.md)"},
    {NULL, "dp.epsilon", "off",
     "differential privacy per window release; needs dp.max.contrib=C and "
     "dp.budget=B (per subscriber and period dp.period.ms=MS, default 86400000); "
     "dp.mechanism=laplace (default) or gaussian with dp.delta=D in (0, 0.01]"},
    {"--out-dir DIR", "output.dir", "out", "dead letters go here"},
    {"--parallelism N", "parallelism", NULL, "tasks per stage, 0 = one per core"},
    {"--checkpoint-dir DIR", "checkpoint.dir", "off",
     "take checkpoints here and resume from the newest valid one on restart"},
    {"--checkpoint-interval-ms N", "checkpoint.interval.ms", "10000",
     "time between checkpoints, >= 100"},
    {"--delivery G", "delivery", "exactly-once",
     "exactly-once, at-least-once or at-most-once"},
    {"--from-scratch", "from.scratch", NULL, "ignore existing checkpoints"},
    {"--from PATH", "restore.from", NULL, "start from this checkpoint or savepoint"},
    {"--set KEY=VALUE", NULL, NULL,
     "any option above or a job key (listed below; JOB KEYS in sluice(1) "
     "describes them). For FILE.sql: a job key (it overrides the script's SET) "
     "or a variable the script reads as ${KEY} in its strings"},
    {"--quiet", NULL, NULL, "no progress line"},
    {"--help", NULL, NULL, "this text"},
    {0}};

static const cli_opt explain_opts[] = {
    {"--set KEY=VALUE", NULL, NULL,
     "a job key (it overrides the script's SET) or a variable the script reads "
     "as ${KEY} in its strings"},
    {"--quiet", NULL, NULL, "accepted as for run; explain prints only the plan"},
    {"--cluster BOOTSTRAP", NULL, NULL,
     "accepted as for run; the plan printed is the same (the distributed mode "
     "cuts it at its key change, docs/distributed.md)"},
    {"--help", NULL, NULL, "this text"},
    {0}};

static const cli_opt gen_opts[] = {
    {"--out DIR", NULL, "data", "where the files go"},
    {"--events N", "events", NULL, "number of events"},
    {"--subscribers N", "subscribers", NULL, "number of subscribers"},
    {"--cells N", "cells", NULL, "number of cells"},
    {"--areas N", "areas", NULL, "number of areas the cells lie in"},
    {"--seed N", "seed", NULL, "random seed: same seed, same data"},
    {"--parts N", "parts", NULL, "number of event files"},
    {"--set KEY=VALUE", NULL, NULL,
     "any key above or start (epoch ms or ISO date), span.ms, out.of.order.ms, "
     "unknown.fraction"},
    {"--kafka BOOTSTRAP", NULL, NULL,
     "also produce the events into a Kafka topic (CSV without header; docs/kafka.md)"},
    {"--topic T", NULL, NULL, "the topic for --kafka"},
    {"--per-message N", NULL, "100", "events batched per Kafka message"},
    {"--help", NULL, NULL, "this text"},
    {0}};

static const cli_opt keygen_opts[] = {
    {"--id KEY_ID", NULL, "k1", "name of the key"},
    {"--help", NULL, NULL, "this text"},
    {0}};

static const cli_opt savepoint_opts[] = {
    {"--help", NULL, NULL, "this text"},
    {0}};

static const cli_opt sink_task_opts[] = {
    {"--from-kafka BOOTSTRAP", "bootstrap.servers", NULL, "Kafka brokers"},
    {"--topic T", "topic", NULL, "the result topic to read (read_committed)"},
    {"--format csv|jsonl|avro", "format", "jsonl", "message format"},
    {"--schema COLUMNS", "schema", NULL,
     "the rows' columns, 'name TYPE, ...' (BIGINT, DOUBLE, BOOLEAN, VARCHAR, TIMESTAMP)"},
    {"--pg DSN", "dsn", "\"\"", "PostgreSQL connection string or URI (\"\" = PG*)"},
    {"--table NAME", "table", NULL, "the table to write, [schema.]name"},
    {"--mode insert|upsert", "mode", "insert", "as for the postgres sink"},
    {"--key COLUMNS", "key", NULL, "key columns (upsert; PRIMARY KEY of a created table)"},
    {"--group G", "group.id", "sluice-sink-TABLE",
     "consumer group: tasks in one group split the partitions"},
    {"--bounded", "bounded", NULL,
     "exit 0 once every partition's stored offset reaches the end found at start"},
    {NULL, "commit.interval.ms", "1000", "longest wait before buffered rows are written"},
    {NULL, "batch.rows", "50000", "rows written with their offsets in one transaction"},
    {NULL, "dead_letter.topic", "off", "topic for undecodable messages"},
    {"--set KEY=VALUE", NULL, NULL,
     "any key above, a postgres sink key (docs/postgres.md) or properties.NAME for "
     "librdkafka"},
    {"--help", NULL, NULL, "this text"},
    {0}};

static const cli_opt avro_schema_opts[] = {
    {"--schema COLUMNS", NULL, NULL, "the columns, 'name TYPE, ...'"},
    {"--name FULLNAME", NULL, "sluice.Record", "the record's full name (key avro.name)"},
    {"--help", NULL, NULL, "this text"},
    {0}};

static const cli_cmd commands[] = {
    {.name = "run", .args = "JOB [options]",
     .summary = "run a job: JOB is a built-in job name (telecom-age, venue-report) or "
                "a SQL file (FILE.sql)",
     .usage = "run telecom-age [options]\n"
              "run FILE.sql [--set KEY=VALUE ...] [--quiet] [--cluster BOOTSTRAP]\n"
              "run venue-report [--set KEY=VALUE ...] [--quiet]",
     .about = "Runs a job written in SQL (docs/sql.md, sluice-sql(7)) or the telecom "
              "reference job: events -> pseudonymise -> join subscribers and cells -> "
              "age band -> 1-minute windows per (event_type, area, age_band) with "
              "events and exact distinct subscribers -> k-anonymity -> SQLite.\n"
              "\n"
              "Options of telecom-age: each is also --set NAME=VALUE with the name in "
              "brackets; the default is in parentheses. A SQL job takes --set, --quiet, "
              "--cluster and --help only.\n"
              "\n"
              "venue-report: the age distribution of the people at public events, "
              "live and final, k-anonymous (docs/venues.md); `sluice run venue-report "
              "--help` lists its keys, each set with --set KEY=VALUE.",
     .opts = run_opts, .job_keys = true,
     .notes = "Signals: SIGINT/SIGTERM stop the job gracefully (a final checkpoint "
              "takes everything in flight, sinks commit, exit 0; the next run "
              "resumes); a second one stops at once. SIGUSR1 takes a savepoint (also "
              "`sluice savepoint DIR`). SIGHUP reopens the log file (log.file)."},
    {.name = "explain", .args = "FILE.sql",
     .summary = "print the plan of a SQL job",
     .usage = "explain FILE.sql [--set KEY=VALUE ...]",
     .about = "Compiles a job written in SQL (docs/sql.md, sluice-sql(7)) and prints "
              "its plan: stages, operators, partitioning. Errors print the line with "
              "a caret under the column.",
     .opts = explain_opts, .job_keys = true},
    {.name = "gen", .args = "[options]",
     .summary = "write the synthetic reference data set (events, subscribers, cells) "
                "as CSV files",
     .usage = "gen [--out DIR] [--events N] [--subscribers N] [--cells N]\n"
              " [--areas N] [--seed N] [--parts N] [--set KEY=VALUE ...]\n"
              " [--kafka BOOTSTRAP --topic T [--per-message N]]",
     .about = "Writes DIR/events/events-NNN.csv, DIR/subscribers.csv and "
              "DIR/cells.csv. Same seed, same data. With --set crowd.size=N also a "
              "staged public event: DIR/events/crowd.csv, DIR/venues.csv and "
              "DIR/market_share.csv (keys crowd.*; docs/venues.md). With --kafka, "
              "also produces the events into topic T; each event file's task writes "
              "one partition (docs/kafka.md).",
     .opts = gen_opts},
    {.name = "keygen", .args = "PATH [--id ID]",
     .summary = "create a pseudonymisation key file",
     .usage = "keygen PATH [--id KEY_ID]",
     .about = "Creates PATH (mode 0600, must not exist) with one random 256-bit key.",
     .opts = keygen_opts},
    {.name = "savepoint", .args = "DIR",
     .summary = "ask the job checkpointing into DIR for a savepoint",
     .usage = "savepoint CHECKPOINT_DIR",
     .about = "Asks the job running with --checkpoint-dir CHECKPOINT_DIR for a "
              "savepoint (a checkpoint kept until deleted) and prints its directory.",
     .opts = savepoint_opts},
    {.name = "sink-task", .args = "--from-kafka B --topic T --pg DSN --table NAME ...",
     .summary = "write a result topic into PostgreSQL exactly once (the PostgreSQL "
                "sink task of the distributed mode)",
     .usage = "sink-task --from-kafka BOOTSTRAP --topic T --schema COLUMNS\n"
              " --pg DSN --table NAME [--format F] [--group G] [--bounded]\n"
              " [--set KEY=VALUE ...]",
     .about = "Consumes topic T with isolation.level=read_committed in a consumer group "
              "and writes its rows to the PostgreSQL table, storing the input offsets "
              "in the same database transaction (table sluice_offsets). A restart, or "
              "another task of the group taking the partitions over, resumes from the "
              "offsets in the database, so each row is in the table exactly once. "
              "Stateless: start several in one group to share the partitions "
              "(docs/postgres.md).",
     .opts = sink_task_opts,
     .notes = "Signals: SIGINT/SIGTERM write what was read, then exit 0."},
    {.name = "avro-schema", .args = "--schema COLUMNS",
     .summary = "print the Avro schema of format='avro' for a column list",
     .usage = "avro-schema --schema COLUMNS [--name FULLNAME]",
     .about = "Prints the Avro record schema (JSON) that the Kafka source, sink and "
              "sink task use with format='avro' for these columns, and on stderr its "
              "CRC-64-AVRO fingerprint, the 8 bytes after 0xC3 0x01 in every message "
              "(docs/kafka.md).",
     .opts = avro_schema_opts},
    {0}};

static const cli_cmd *find(const char *name)
{
    for (const cli_cmd *c = commands; c->name; c++)
        if (!strcmp(c->name, name)) return c;
    return NULL;
}

/* ---- plain text ---------------------------------------------------------- */
#define WIDTH 78
#define DESC_COL 25

/* Prints text from column `col` (the cursor is there), wrapping at WIDTH
 * and indenting continuation lines by `indent`. */
static void wrap(FILE *f, const char *text, int col, int indent)
{
    const char *p = text;
    while (*p) {
        while (*p == ' ') p++;
        size_t w = strcspn(p, " ");
        if (!w) break;
        if (col > indent && col + 1 + (int)w > WIDTH) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%.*s", (int)w, p);
        col += (int)w;
        p += w;
    }
    fputc('\n', f);
}

/* Paragraphs of `text` (blank-line separated), wrapped. */
static void paragraphs(FILE *f, const char *text)
{
    char buf[2048];
    for (const char *p = text; *p;) {
        const char *end = strstr(p, "\n\n");
        size_t n = end ? (size_t)(end - p) : strlen(p);
        snprintf(buf, sizeof buf, "%.*s", (int)n, p);
        for (char *c = buf; *c; c++)
            if (*c == '\n') *c = ' ';
        wrap(f, buf, 0, 0);
        p += n;
        if (*p) {
            fputc('\n', f);
            p += 2;
        }
    }
}

static void print_opt(FILE *f, const cli_opt *o)
{
    char head[128], desc[1024];
    if (o->flag) snprintf(head, sizeof head, "  %s", o->flag);
    else snprintf(head, sizeof head, "  --set %s=...", o->key);
    int n = snprintf(desc, sizeof desc, "%s", o->desc);
    if (o->flag && o->key) n += snprintf(desc + n, sizeof desc - (size_t)n, " [%s]", o->key);
    if (o->def) snprintf(desc + n, sizeof desc - (size_t)n, " (%s)", o->def);
    int col = (int)strlen(head);
    fputs(head, f);
    if (col < DESC_COL - 1) fprintf(f, "%*s", DESC_COL - col, "");
    else fprintf(f, "\n%*s", DESC_COL, ""); /* a long flag: text below it */
    wrap(f, desc, DESC_COL, DESC_COL);
}

void cli_usage(FILE *f)
{
    fputs("usage: sluice <command> [options]\n\ncommands:\n", f);
    for (const cli_cmd *c = commands; c->name; c++) {
        char head[128];
        snprintf(head, sizeof head, "  %s %s", c->name, c->args);
        int col = (int)strlen(head);
        fputs(head, f);
        if (col < DESC_COL - 1) {
            fprintf(f, "%*s", DESC_COL - col, "");
            col = DESC_COL;
        } else {
            fputs("  ", f);
            col += 2;
        }
        wrap(f, c->summary, col, DESC_COL);
    }
    fprintf(f, "  --version%*sprint the version\n", DESC_COL - 11, "");
    fprintf(f, "  --help%*sthis text; `sluice COMMAND --help` for a command\n",
            DESC_COL - 8, "");
}

int cli_help(FILE *f, const char *name)
{
    const cli_cmd *c = find(name);
    if (!c) return -1;
    for (const char *p = c->usage, *pre = "usage: sluice "; *p; pre = "       sluice ") {
        size_t n = strcspn(p, "\n");
        if (*p == ' ') pre = "              ";
        fprintf(f, "%s%.*s\n", pre, (int)n, p);
        p += n;
        if (*p) p++;
    }
    fputc('\n', f);
    paragraphs(f, c->about);
    fputs("\noptions:\n", f);
    for (const cli_opt *o = c->opts; o->desc; o++) print_opt(f, o);
    if (c->job_keys) {
        char keys[2048] = "";
        size_t n = 0;
        sl_conf_info ci;
        for (size_t i = 0; sl_job_conf_info(i, &ci) == 0 && n < sizeof keys; i++)
            n += (size_t)snprintf(keys + n, sizeof keys - n, "%s%s", i ? ", " : "", ci.key);
        fputs("\njob keys (--set KEY=VALUE):\n  ", f);
        wrap(f, keys, 2, 2);
    }
    if (c->notes) {
        fputc('\n', f);
        paragraphs(f, c->notes);
    }
    return 0;
}

/* ---- roff (man page) ----------------------------------------------------- */
/* Text safe in roff: backslashes escaped, a leading '.' or '\'' guarded,
 * '-' as \- so options can be searched and copied. */
static void roff(FILE *f, const char *s)
{
    if (*s == '.' || *s == '\'') fputs("\\&", f);
    for (; *s; s++) {
        if (*s == '\\') fputs("\\e", f);
        else if (*s == '-') fputs("\\-", f);
        else if (*s == '\n') {
            fputc('\n', f);
            if (s[1] == '.' || s[1] == '\'') fputs("\\&", f);
        } else fputc(*s, f);
    }
}

static void roff_paragraphs(FILE *f, const char *text)
{
    char buf[2048];
    for (const char *p = text; *p;) {
        const char *end = strstr(p, "\n\n");
        size_t n = end ? (size_t)(end - p) : strlen(p);
        snprintf(buf, sizeof buf, "%.*s", (int)n, p);
        fputs(".PP\n", f);
        roff(f, buf);
        fputc('\n', f);
        p += n;
        if (*p) p += 2;
    }
}

/* "--events PATH" as bold flag, italic argument. */
static void roff_flag(FILE *f, const char *flag)
{
    size_t n = strcspn(flag, " ");
    fputs("\\fB", f);
    char buf[128];
    snprintf(buf, sizeof buf, "%.*s", (int)n, flag);
    roff(f, buf);
    fputs("\\fR", f);
    if (flag[n]) {
        fputs(" \\fI", f);
        roff(f, flag + n + 1);
        fputs("\\fR", f);
    }
    fputc('\n', f);
}

static void man_cmd(FILE *f, const cli_cmd *c)
{
    fprintf(f, ".SS \"sluice %s\"\n", c->name);
    for (const char *p = c->usage; *p;) {
        size_t n = strcspn(p, "\n");
        char buf[256];
        snprintf(buf, sizeof buf, "%.*s", (int)n, p);
        if (*p != ' ') fputs(".PP\n\\fBsluice\\fR ", f);
        roff(f, buf + (*p == ' '));
        fputc('\n', f);
        p += n;
        if (*p) p++;
    }
    roff_paragraphs(f, c->about);
    for (const cli_opt *o = c->opts; o->desc; o++) {
        fputs(".TP\n", f);
        if (o->flag) roff_flag(f, o->flag);
        else {
            char buf[160];
            snprintf(buf, sizeof buf, "--set %s=VALUE", o->key);
            roff_flag(f, buf);
        }
        roff(f, o->desc);
        if (o->flag && o->key) {
            fputs(" [", f);
            roff(f, o->key);
            fputs("]", f);
        }
        if (o->def) {
            fputs(" (default: ", f);
            roff(f, o->def);
            fputs(")", f);
        }
        fputc('\n', f);
    }
    if (c->notes) roff_paragraphs(f, c->notes);
}

void cli_man(FILE *f, const char *date)
{
    fprintf(f, ".\\\" sluice(1), generated by `sluice --man` from src/cli/help.c and\n"
               ".\\\" the job configuration table; do not edit.\n");
    fprintf(f, ".TH SLUICE 1 \"%s\" \"sluice %s\" \"sluice manual\"\n", date, sl_version());
    fputs(".SH NAME\nsluice \\- real\\-time stream processor\n.SH SYNOPSIS\n", f);
    for (const cli_cmd *c = commands; c->name; c++) {
        fputs(".PP\n\\fBsluice\\fR ", f);
        roff(f, c->name);
        fputc(' ', f);
        roff(f, c->args);
        fputc('\n', f);
    }
    fputs(".PP\n\\fBsluice \\-\\-version\\fR | \\fB\\-\\-help\\fR\n", f);
    fputs(".SH DESCRIPTION\n"
          "sluice runs stream processing jobs written in SQL or built with the C "
          "library libsluice: sources, event\\-time windows, aggregates, lookup "
          "joins, privacy operators (pseudonymisation, k\\-anonymity, differential "
          "privacy) and exactly\\-once sinks, with checkpoints for recovery.\n"
          ".SH COMMANDS\n", f);
    for (const cli_cmd *c = commands; c->name; c++) man_cmd(f, c);
    fputs(".SS \"sluice \\-\\-version\"\nPrints the version.\n"
          ".SS \"sluice \\-\\-help\"\nPrints the list of commands; "
          "\\fBsluice\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR describes a command.\n", f);
    fputs(".SH \"JOB KEYS\"\nEvery job (built\\-in or SQL) takes these keys with "
          "\\fB\\-\\-set\\fR \\fIKEY\\fR=\\fIVALUE\\fR or, in SQL, \\fBSET\\fR. An "
          "unknown key or a bad value is an error naming the key and what is "
          "allowed.\n", f);
    sl_conf_info ci;
    for (size_t i = 0; sl_job_conf_info(i, &ci) == 0; i++) {
        fputs(".TP\n\\fB", f);
        roff(f, ci.key);
        fputs("\\fR\n", f);
        roff(f, ci.desc);
        fputs(". ", f);
        if (ci.allowed) {
            fputs("One of ", f);
            roff(f, ci.allowed);
            fputs("; ", f);
        } else if (ci.min != ci.max && ci.max == INT64_MAX) {
            fprintf(f, "%s >= %lld; ", ci.type, (long long)ci.min);
        } else if (ci.min != ci.max) {
            fprintf(f, "%s in [%lld, %lld]; ", ci.type, (long long)ci.min,
                    (long long)ci.max);
        } else {
            fprintf(f, "%s; ", ci.type);
        }
        fputs("default: ", f);
        roff(f, ci.def && ci.def[0] ? ci.def : "(empty)");
        fputs(".\n", f);
    }
    fputs(".SH \"EXIT STATUS\"\n0: success (also after a graceful stop); 1: the job "
          "failed; 2: bad usage or configuration.\n"
          ".SH FILES\n"
          ".TP\n\\fI/etc/sluice/JOB.sql\\fR\nthe job file run by the service "
          "\\fBsluice@JOB.service\\fR\n"
          ".TP\n\\fI/etc/sluice/JOB.env\\fR\noptional environment of that service "
          "(\\fBSLUICE_OPTS\\fR: more options for \\fBsluice run\\fR)\n"
          ".TP\n\\fI/var/lib/sluice/JOB/\\fR\nthe service's working directory: "
          "checkpoints, savepoints, dead letters\n"
          ".TP\n\\fI/usr/share/sluice/dashboard/\\fR\nthe dashboard's static files\n"
          ".TP\n\\fI/usr/share/sluice/examples/\\fR\nexample jobs and data "
          "generators\n"
          ".SH \"SEE ALSO\"\n\\fBsluice\\-sql\\fR(7), \\fBsystemctl\\fR(1), "
          "\\fBjournalctl\\fR(1); docs/install.md and docs/operations.md in "
          "/usr/share/doc/sluice.\n", f);
}
