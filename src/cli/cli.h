/* cli.h — the sluice command's parts: subcommands and the built-in jobs.
 * Built on the public API (sluice.h) only. */
#ifndef SL_CLI_H
#define SL_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice.h"

/* Options of the telecom reference job (telecom-age). */
typedef struct {
    const char *events;      /* file or directory of event files */
    const char *format;      /* csv | jsonl */
    const char *subscribers; /* subscriber table (CSV) */
    const char *cells;       /* cell table (CSV) */
    const char *key_file;    /* pseudonymisation keys */
    const char *db;          /* SQLite result database */
    const char *table;       /* result table */
    int64_t k;               /* k-anonymity threshold */
    int64_t window_ms;
    int64_t watermark_delay_ms;
    int64_t lateness_ms;
    const char *rotation;       /* auto (rotate when keys are dated) | off */
    int64_t rotation_period_ms; /* a multiple of window_ms */
    const char *key_domain;     /* processing domain of the keys, NULL = all */
    double dp_epsilon;          /* 0 = no differential privacy */
    int64_t dp_max_contrib;     /* 0 = not set */
    int dp_mechanism;           /* SL_DP_LAPLACE or SL_DP_GAUSSIAN */
    double dp_delta;            /* Gaussian: per release */
    double dp_budget;           /* 0 = not set */
    int64_t dp_period_ms;
    const char *k_fold;         /* folding levels (docs/privacy.md), NULL = off */
    const char *sink;           /* sqlite | postgres */
    const char *pg_dsn;         /* PostgreSQL connection ("" = PG* variables) */
    const char *subs_pg_table;  /* subscribers from this PostgreSQL table, or NULL */
    const char *subs_pg_refresh_ms; /* poll it for changes this often ("0" = never) */
} telecom_opts;

/* Everything the job borrows, freed after the run. */
typedef struct {
    sl_keyring *keys;
    sl_table *subscribers, *cells;
    sl_schema *events_schema, *subs_schema, *cells_schema, *banded;
    bool rotating; /* keys chosen by event time (dated key file) */
    int nkeys;
} telecom_res;

void telecom_defaults(telecom_opts *o);
/* Sets one option by its --set name (events, subscribers, k, ...);
 * returns 1 if the key is not a telecom option. */
int telecom_set(telecom_opts *o, const char *key, const char *value, char *err,
                size_t errsz);
int telecom_build(sl_job *job, const telecom_opts *o, telecom_res *r, char *err,
                  size_t errsz);
void telecom_free(telecom_res *r);
/* Age band of someone born on birth_ms, at the UTC date of at_ms. */
const char *telecom_age_band(int64_t birth_ms, int64_t at_ms);

int cli_run(int argc, char **argv);
int cli_gen(int argc, char **argv);
int cli_keygen(int argc, char **argv);
/* gen_kafka.c: produces DIR/events into a Kafka topic, per_message events
 * per message (at-least-once, idempotent producer). */
int gen_to_kafka(const char *dir, const char *bootstrap, const char *topic,
                 const char *per_message, char *err, size_t errsz);
int cli_savepoint(int argc, char **argv);
/* `sluice run venue-report`: the venue report (job_venue.c). */
int cli_venue_run(int argc, char **argv);

/* sink_task.c: `sluice sink-task` (the PostgreSQL sink task) and
 * `sluice avro-schema`. */
int cli_sink_task(int argc, char **argv);
int cli_avro_schema(int argc, char **argv);

/* help.c: the command table behind --help and the man page. */
void cli_usage(FILE *f);                   /* `sluice --help` */
int cli_help(FILE *f, const char *command); /* `sluice CMD --help`; -1: unknown */
void cli_man(FILE *f, const char *date);    /* sluice(1) in roff */

#endif
