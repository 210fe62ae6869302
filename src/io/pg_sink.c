/* pg_sink.c — the "postgres" sink: writes result rows into a PostgreSQL
 * table over libpq (embedded mode; one task, max_parallelism 1).
 *
 * It creates the table from the stream's schema when it is missing
 * (INT64 -> bigint, FLOAT64 -> double precision, BOOL -> boolean, STRING ->
 * text, TIMESTAMP -> timestamp with time zone), or checks an existing
 * table's columns against the schema and names the first misfit. Rows are
 * buffered as COPY text (up to batch.rows) and sent with COPY, the fast
 * bulk path; mode=upsert sends them with COPY into a session-local staging
 * table and applies them with INSERT ... ON CONFLICT (key) DO UPDATE, the
 * last row of a key winning, so replays are idempotent.
 *
 * Under exactly-once, rows go with COPY into "<table>__staged" (the
 * stream's columns plus sluice_job, sluice_task, sluice_epoch, sluice_chunk
 * and an ordering sluice_seq), and the table only ever receives whole
 * epochs, applied from staging in the transaction that moves the marker
 * row (job, sink = table, task, epoch) of "sluice_epochs" (the same
 * protocol as the sqlite sink, whose invariants 5-8 hold here with the
 * functions named below).
 *
 * Faults. A lost connection, a server restart or shutdown (retriable
 * SQLSTATEs) makes the sink reconnect with exponential back-off (0.1 s
 * doubling to 5 s) for up to retry.timeout.ms, holding its task, so back
 * pressure stops the sources meanwhile; the rows of the failed transaction
 * are still in memory and are sent again. A row the server refuses for its
 * data (SQLSTATE class 22 or 23: a constraint, a type or encoding error)
 * goes to the dead letters with the server's message, and the others are
 * written (the chunk is retried in halves under savepoints, down to the
 * refused rows: bisect()).
 *
 * Invariants, and the function that keeps each:
 * 1. A chunk of rows is sent in one transaction (send_chunk); under
 *    exactly-once its rows carry a chunk number unique in this run, and a
 *    retry after a failure whose outcome is unknown (the COMMIT's answer
 *    was lost) first deletes that chunk's rows, so a chunk is staged at
 *    most once.
 * 2. Staged rows are published only by eo_apply(), in the transaction that
 *    reads and moves the marker: a commit(n) whose marker is already >= n
 *    publishes nothing (pg_commit), so a retried commit is harmless.
 * 3. recover(n) publishes staged epochs <= n and deletes later ones;
 *    recover(0) or a first call that is not recover() deletes what an
 *    earlier run of the job and task staged and its marker (eo_start).
 * 4. After a fatal error the instance is failed: every later call returns
 *    the error (stopped()), and nothing more is sent.
 * Canary rows are never written among the results. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "io/sinkconf.h"
#include "io/pg.h"

enum { MODE_INSERT = 0, MODE_UPSERT = 1 };

typedef struct {
    char *dsn;
    char *table;
    int mode;
    char *key;
    bool create;
    int64_t batch_rows;
    int64_t connect_timeout_s;
    int64_t statement_timeout_ms;
    int64_t retry_timeout_ms;
    /* derived by configure */
    int nkey;
    int key_cols[SL_MAX_COLS];
} pg_conf;

static const sl__conf_def pg_defs[] = {
    {.key = "dsn", .type = SL_CONF_STR, .def = "",
     .offset = offsetof(pg_conf, dsn),
     .desc = "libpq connection string or URI; empty: the PG* environment "
             "variables (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, ...)"},
    {.key = "table", .type = SL_CONF_STR, .min = 1,
     .offset = offsetof(pg_conf, table),
     .desc = "table to write, [schema.]name (letters, digits and _)"},
    {.key = "mode", .type = SL_CONF_ENUM, .def = "insert",
     .allowed = "insert|upsert", .offset = offsetof(pg_conf, mode),
     .desc = "insert every row (COPY), or upsert on the key columns"},
    {.key = "key", .type = SL_CONF_STR, .offset = offsetof(pg_conf, key),
     .desc = "comma-separated key columns: the ON CONFLICT target of upsert "
             "and the PRIMARY KEY of a created table"},
    {.key = "create", .type = SL_CONF_BOOL, .def = "true",
     .offset = offsetof(pg_conf, create),
     .desc = "create the table if it does not exist"},
    {.key = "batch.rows", .type = SL_CONF_INT, .def = "50000", .min = 1,
     .max = 10000000, .offset = offsetof(pg_conf, batch_rows),
     .desc = "rows buffered before they are sent in one COPY"},
    {.key = "connect.timeout.s", .type = SL_CONF_INT, .def = "10", .min = 1,
     .max = 3600, .offset = offsetof(pg_conf, connect_timeout_s),
     .desc = "timeout of one connection attempt"},
    {.key = "statement.timeout.ms", .type = SL_CONF_INT, .def = "60000",
     .min = 0, .max = 86400000,
     .offset = offsetof(pg_conf, statement_timeout_ms),
     .desc = "server-side statement_timeout of the session (0 = none)"},
    {.key = "retry.timeout.ms", .type = SL_CONF_INT, .def = "300000",
     .min = 0, .max = (int64_t)7 * 86400000,
     .offset = offsetof(pg_conf, retry_timeout_ms),
     .desc = "how long a lost server is retried (back-off 0.1 s to 5 s) "
             "before the job fails"},
    {.key = NULL},
};

typedef struct {
    const pg_conf *conf;
    const sl_schema *schema;
    sl__ctx *ctx;
    sl_job *job;
    PGconn *db;
    sl__pg_opts opts;
    int failed; /* 0, or the SL_E* code of the error that stopped us */
    bool eo;
    char *job_name;
    int64_t task;
    char task_s[24];
    /* SQL text, built once */
    char *tbl;      /* "schema"."table" */
    char *staged;   /* "schema"."table__staged" */
    char *marks;    /* "schema"."sluice_epochs" */
    char *copy;     /* COPY target (cols[, meta]) FROM STDIN */
    char *upsert;   /* at-least-once upsert: from pg_temp.sluice_up */
    char *apply;    /* exactly-once: staged epochs <= $3 into the table */
    char *apply_one;/* ... one staged row ($3 = sluice_seq) */
    char *cols;     /* "a", "b", ... */
    /* rows not yet sent, COPY text lines */
    sl__pg_buf rows;
    uint32_t nrows;
    uint64_t chunk; /* last chunk number used */
    /* exactly-once */
    bool started;
    uint64_t precommitted, committed, tag;
    /* the sink task's hook into every chunk's transaction (pg.h) */
    sl__pg_hook_fn hook;
    void *hook_arg;
} pg_sink;

/* ---- configuration ------------------------------------------------------- */
static void pg_conf_free(void *conf)
{
    if (!conf) return;
    sl__conf_free(pg_defs, conf);
    free(conf);
}

static int pg_configure(void **conf, const char *const *kv,
                        const sl_schema *in, char *errstr, size_t errstr_size)
{
    pg_conf *c = sl__xcalloc(1, sizeof *c);
    int rc = sl__conf_apply(pg_defs, c, kv, "postgres sink", NULL, errstr,
                            errstr_size);
    const char *dot = rc ? NULL : strrchr(c->table, '.');
    if (rc == 0 && (!sl__pg_is_name(c->table) ||
                    strlen(dot ? dot + 1 : c->table) > 50))
        rc = sl__err(errstr, errstr_size, SL_EINVAL,
                     "postgres sink: 'table' must be [schema.]name of "
                     "letters, digits and _ (name at most 50 characters, "
                     "not starting with a digit), got '%s'", c->table);
    if (rc == 0)
        rc = sl__sink_key_conf("postgres sink", c->key, c->mode == MODE_UPSERT, in,
                               c->key_cols, &c->nkey, errstr, errstr_size);
    for (int i = 0; rc == 0 && i < in->n; i++)
        if (!strncasecmp(in->cols[i].name, "sluice_", 7))
            rc = sl__err(errstr, errstr_size, SL_EINVAL,
                         "postgres sink: the stream's column \"%s\" uses the "
                         "prefix sluice_, which the sink's staging tables "
                         "reserve; rename it", in->cols[i].name);
    if (rc) {
        pg_conf_free(c);
        return rc;
    }
    *conf = c;
    return 0;
}

/* ---- errors and connections ---------------------------------------------- */
static int fail_with(pg_sink *s, int code, const char *what,
                     const PGresult *r, char *errstr, size_t errstr_size)
{
    char msg[768];
    s->failed = sl__err(errstr, errstr_size, code,
                        "postgres sink: %s table %s: %s (fatal)", what,
                        s->conf->table, sl__pg_message(s->db, r, msg,
                                                       sizeof msg));
    return s->failed;
}

static int stopped(const pg_sink *s, char *errstr, size_t errstr_size)
{
    return sl__err(errstr, errstr_size, s->failed,
                   "postgres sink: table %s: stopped after an earlier error",
                   s->conf->table);
}

static void drop_conn(pg_sink *s)
{
    PQfinish(s->db);
    s->db = NULL;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
                          .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int session_setup(pg_sink *s, PGresult **fail);

/* Waits for the server after a retriable failure: reconnects with back-off
 * until it answers or retry.timeout.ms has passed since `since`. Returns
 * 0 (connected), or the error, which fails the instance. */
static int reconnect(pg_sink *s, uint64_t since, uint64_t *backoff,
                     const char *what, const PGresult *cause, char *errstr,
                     size_t errstr_size)
{
    char why[768];
    sl__pg_message(s->db, cause, why, sizeof why);
    if (s->db && !*backoff)
        sl__log(SL__LOG_WARN, "postgres-sink", "server lost; reconnecting",
                "what=\"%s\" table=%s error=\"%s\"", what, s->conf->table, why);
    drop_conn(s);
    for (;;) {
        if (s->job && sl_job_error(s->job))
            return s->failed = sl__err(errstr, errstr_size, SL_ECANCELED,
                                       "postgres sink: table %s: the job "
                                       "stopped while the server was away",
                                       s->conf->table);
        if (mono_ms() - since > (uint64_t)s->conf->retry_timeout_ms)
            return s->failed = sl__err(
                       errstr, errstr_size, SL_EIO,
                       "postgres sink: %s table %s: the server did not come "
                       "back within retry.timeout.ms = %lld: %s (fatal)",
                       what, s->conf->table,
                       (long long)s->conf->retry_timeout_ms, why);
        sleep_ms(*backoff);
        *backoff = *backoff ? *backoff * 2 : 100;
        if (*backoff > 5000) *backoff = 5000;
        char err[768];
        PGresult *f = NULL;
        int rc = sl__pg_connect(&s->opts, &s->db, err, sizeof err);
        if (rc == 0 && session_setup(s, &f) == 0) {
            sl__log(SL__LOG_INFO, "postgres-sink", "reconnected", "table=%s",
                    s->conf->table);
            return 0;
        }
        PQclear(f);
        drop_conn(s);
        snprintf(why, sizeof why, "%s", err);
    }
}

/* ---- SQL text ------------------------------------------------------------ */
static char *take(sl__pg_buf *b)
{
    char *p = b->p;
    *b = (sl__pg_buf){0};
    return p;
}

/* "schema"."<name><suffix>" in the table's schema. */
static char *sibling(const char *table, const char *name, const char *suffix)
{
    sl__pg_buf b = {0};
    const char *dot = strchr(table, '.');
    int schema_len = dot ? (int)(dot - table) + 1 : 0;
    size_t n = (size_t)schema_len + strlen(name) + strlen(suffix) + 1;
    char *full = sl__xmalloc(n);
    snprintf(full, n, "%.*s%s%s", schema_len, table, name, suffix);
    sl__pg_qname(&b, full);
    free(full);
    return take(&b);
}

static const char *base_name(const char *table)
{
    const char *dot = strchr(table, '.');
    return dot ? dot + 1 : table;
}

static bool is_key(const pg_conf *c, int col)
{
    for (int k = 0; k < c->nkey; k++)
        if (c->key_cols[k] == col) return true;
    return false;
}

static void add_keys(sl__pg_buf *b, const pg_sink *s)
{
    for (int k = 0; k < s->conf->nkey; k++) {
        if (k) sl__pg_adds(b, ", ");
        sl__pg_ident(b, s->schema->cols[s->conf->key_cols[k]].name);
    }
}

/* ON CONFLICT ("k") DO UPDATE SET "v" = EXCLUDED."v" */
static void add_conflict(sl__pg_buf *b, const pg_sink *s)
{
    const sl_schema *sc = s->schema;
    if (s->conf->mode != MODE_UPSERT) return;
    sl__pg_adds(b, " ON CONFLICT (");
    add_keys(b, s);
    if (s->conf->nkey == sc->n) {
        sl__pg_adds(b, ") DO NOTHING");
        return;
    }
    sl__pg_adds(b, ") DO UPDATE SET ");
    bool first = true;
    for (int i = 0; i < sc->n; i++) {
        if (is_key(s->conf, i)) continue;
        if (!first) sl__pg_adds(b, ", ");
        first = false;
        sl__pg_ident(b, sc->cols[i].name);
        sl__pg_adds(b, " = EXCLUDED.");
        sl__pg_ident(b, sc->cols[i].name);
    }
}

static void add_col_defs(sl__pg_buf *b, const sl_schema *sc)
{
    for (int c = 0; c < sc->n; c++) {
        if (c) sl__pg_adds(b, ", ");
        sl__pg_ident(b, sc->cols[c].name);
        sl__pg_adds(b, " ");
        sl__pg_adds(b, sl__pg_type(sc->cols[c].type));
    }
}

/* INSERT INTO t (cols) SELECT cols FROM <from> WHERE <where>, the last row
 * of a key winning in upsert mode (ON CONFLICT may touch a row only once
 * per statement), in the order the rows were written. */
static char *apply_sql(const pg_sink *s, const char *from, const char *where,
                       bool move)
{
    sl__pg_buf b = {0};
    if (move) { /* one pass: the rows leave staging as they are applied */
        sl__pg_adds(&b, "WITH moved AS (DELETE FROM ");
        sl__pg_adds(&b, from);
        sl__pg_adds(&b, " WHERE ");
        sl__pg_adds(&b, where);
        sl__pg_adds(&b, " RETURNING *) ");
        from = "moved";
        where = "true";
    }
    sl__pg_adds(&b, "INSERT INTO ");
    sl__pg_adds(&b, s->tbl);
    sl__pg_adds(&b, " (");
    sl__pg_adds(&b, s->cols);
    sl__pg_adds(&b, ") SELECT ");
    sl__pg_adds(&b, s->cols);
    sl__pg_adds(&b, " FROM ");
    if (s->conf->mode == MODE_UPSERT) {
        sl__pg_adds(&b, "(SELECT DISTINCT ON (");
        add_keys(&b, s);
        sl__pg_adds(&b, ") * FROM ");
        sl__pg_adds(&b, from);
        sl__pg_adds(&b, " WHERE ");
        sl__pg_adds(&b, where);
        sl__pg_adds(&b, " ORDER BY ");
        add_keys(&b, s);
        sl__pg_adds(&b, ", sluice_seq DESC) z ORDER BY sluice_seq");
    } else { /* no conflicts: the order does not matter */
        sl__pg_adds(&b, from);
        sl__pg_adds(&b, " WHERE ");
        sl__pg_adds(&b, where);
    }
    add_conflict(&b, s);
    return take(&b);
}

static void build_sql(pg_sink *s)
{
    sl__pg_buf b = {0};
    const sl_schema *sc = s->schema;
    sl__pg_qname(&b, s->conf->table);
    s->tbl = take(&b);
    s->staged = sibling(s->conf->table, base_name(s->conf->table), "__staged");
    s->marks = sibling(s->conf->table, "sluice_epochs", "");
    for (int c = 0; c < sc->n; c++) {
        if (c) sl__pg_adds(&b, ", ");
        sl__pg_ident(&b, sc->cols[c].name);
    }
    s->cols = take(&b);
    sl__pg_adds(&b, "COPY ");
    if (s->eo)
        sl__pg_adds(&b, s->staged);
    else if (s->conf->mode == MODE_UPSERT)
        sl__pg_adds(&b, "pg_temp.sluice_up");
    else
        sl__pg_adds(&b, s->tbl);
    sl__pg_adds(&b, " (");
    sl__pg_adds(&b, s->cols);
    if (s->eo)
        sl__pg_adds(&b, ", sluice_job, sluice_task, sluice_epoch, "
                        "sluice_chunk");
    sl__pg_adds(&b, ") FROM STDIN");
    s->copy = take(&b);
    if (!s->eo && s->conf->mode == MODE_UPSERT)
        s->upsert = apply_sql(s, "pg_temp.sluice_up", "true", false);
    if (s->eo) {
        s->apply = apply_sql(s, s->staged, "sluice_job = $1 AND sluice_task "
                                           "= $2 AND sluice_epoch <= $3", true);
        s->apply_one = apply_sql(s, s->staged, "sluice_job = $1 AND "
                                               "sluice_task = $2 AND "
                                               "sluice_seq BETWEEN $3 AND $4 "
                                               "AND sluice_epoch <= $5", false);
    }
}

/* After every (re)connect: the session-local staging table of upsert mode
 * (at-least-once), which a new session does not have. */
static int session_setup(pg_sink *s, PGresult **fail)
{
    *fail = NULL;
    if (s->eo || s->conf->mode != MODE_UPSERT) return 0;
    sl__pg_buf b = {0};
    sl__pg_adds(&b, "CREATE TEMP TABLE IF NOT EXISTS sluice_up (");
    add_col_defs(&b, s->schema);
    sl__pg_adds(&b, ", sluice_seq bigserial) ON COMMIT DELETE ROWS");
    int rc = sl__pg_exec(s->db, b.p, fail);
    sl__pg_buf_free(&b);
    return rc;
}

/* ---- the table ----------------------------------------------------------- */
/* Checks every stream column against the table's: present, of a type that
 * holds it exactly; and that no column the stream does not fill is NOT
 * NULL without a default. *exists = the table exists. */
static int check_table(pg_sink *s, const char *qname, const char *shown,
                       bool *exists, char *errstr, size_t errstr_size)
{
    const sl_schema *sc = s->schema;
    const char *params[1] = {qname};
    *exists = false;
    PGresult *r = PQexecParams(
        s->db,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
        "a.attnotnull, a.atthasdef FROM pg_attribute a WHERE a.attrelid = "
        "to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = fail_with(s, SL_EIO, "reading the columns of", r, errstr,
                           errstr_size);
        PQclear(r);
        return rc;
    }
    bool seen[SL_MAX_COLS] = {false};
    int rc = 0, n = PQntuples(r);
    for (int i = 0; i < n && rc == 0; i++) {
        const char *name = PQgetvalue(r, i, 0), *decl = PQgetvalue(r, i, 1);
        bool notnull = PQgetvalue(r, i, 2)[0] == 't';
        bool hasdef = PQgetvalue(r, i, 3)[0] == 't';
        int col = sl_schema_find(sc, name);
        if (col < 0) {
            /* the staging table's own columns (configure keeps the
             * stream's columns out of this prefix) */
            if (notnull && !hasdef && strncmp(name, "sluice_", 7))
                rc = sl__err(errstr, errstr_size, SL_EINVAL,
                             "postgres sink: table %s: column \"%s\" is NOT "
                             "NULL without a default, and the stream has no "
                             "such column", shown, name);
            continue;
        }
        seen[col] = true;
        if (!sl__pg_type_fits(sc->cols[col].type, decl))
            rc = sl__err(errstr, errstr_size, SL_EINVAL,
                         "postgres sink: table %s: column \"%s\" has type %s, "
                         "which does not hold the stream's %s exactly (use "
                         "%s)", shown, name, decl,
                         sl_type_name(sc->cols[col].type),
                         sl__pg_type(sc->cols[col].type));
    }
    PQclear(r);
    *exists = n > 0;
    for (int c = 0; rc == 0 && *exists && c < sc->n; c++)
        if (!seen[c])
            rc = sl__err(errstr, errstr_size, SL_EINVAL,
                         "postgres sink: table %s has no column \"%s\" (the "
                         "stream's %s column)", shown, sc->cols[c].name,
                         sl_type_name(sc->cols[c].type));
    return rc;
}

static int exec_or_fail(pg_sink *s, const char *sql, const char *what,
                        char *errstr, size_t errstr_size)
{
    PGresult *f = NULL;
    if (sl__pg_exec(s->db, sql, &f) == 0) return 0;
    int rc = fail_with(s, SL_EIO, what, f, errstr, errstr_size);
    PQclear(f);
    return rc;
}

/* Prepares (and so checks) an SQL statement without running it: an upsert
 * whose key matches no unique index fails here, at start. */
static int check_stmt(pg_sink *s, const char *sql, int nparams,
                      const char *what, char *errstr, size_t errstr_size)
{
    PGresult *r = PQprepare(s->db, "", sql, nparams, NULL);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = fail_with(s, SL_EINVAL, what, r, errstr, errstr_size);
    PQclear(r);
    return rc;
}

static int prepare_tables_locked(pg_sink *s, char *errstr, size_t errstr_size)
{
    bool exists = false;
    int rc = check_table(s, s->tbl, s->conf->table, &exists, errstr,
                         errstr_size);
    if (rc) return rc;
    if (!exists && !s->conf->create)
        return sl__err(errstr, errstr_size, SL_EINVAL,
                       "postgres sink: table %s does not exist and 'create' "
                       "is false", s->conf->table);
    sl__pg_buf b = {0};
    if (!exists) {
        sl__pg_adds(&b, "CREATE TABLE IF NOT EXISTS ");
        sl__pg_adds(&b, s->tbl);
        sl__pg_adds(&b, " (");
        add_col_defs(&b, s->schema);
        if (s->conf->nkey) {
            sl__pg_adds(&b, ", PRIMARY KEY (");
            add_keys(&b, s);
            sl__pg_adds(&b, ")");
        }
        sl__pg_adds(&b, ")");
        rc = exec_or_fail(s, b.p, "creating", errstr, errstr_size);
        sl__pg_buf_free(&b);
        if (rc) return rc;
    }
    if (s->eo) {
        sl__pg_adds(&b, "CREATE TABLE IF NOT EXISTS ");
        sl__pg_adds(&b, s->staged);
        sl__pg_adds(&b, " (");
        add_col_defs(&b, s->schema);
        sl__pg_adds(&b, ", sluice_job text NOT NULL, sluice_task bigint NOT "
                        "NULL, sluice_epoch bigint NOT NULL, sluice_chunk "
                        "bigint NOT NULL, sluice_seq bigserial); "
                        "CREATE INDEX IF NOT EXISTS ");
        char *idx = sibling(s->conf->table, base_name(s->conf->table),
                            "__staged_epoch");
        sl__pg_adds(&b, strchr(idx, '.') ? strrchr(idx, '.') + 1 : idx);
        free(idx);
        sl__pg_adds(&b, " ON ");
        sl__pg_adds(&b, s->staged);
        sl__pg_adds(&b, " (sluice_job, sluice_task, sluice_epoch); "
                        "CREATE TABLE IF NOT EXISTS ");
        sl__pg_adds(&b, s->marks);
        sl__pg_adds(&b, " (job text NOT NULL, sink text NOT NULL, task bigint "
                        "NOT NULL, epoch bigint NOT NULL, committed_at "
                        "timestamptz NOT NULL DEFAULT now(), PRIMARY KEY "
                        "(job, sink, task))");
        rc = exec_or_fail(s, b.p, "creating the staging and marker tables of",
                          errstr, errstr_size);
        sl__pg_buf_free(&b);
        if (rc) return rc;
        char shown[160];
        snprintf(shown, sizeof shown, "%s__staged", s->conf->table);
        rc = check_table(s, s->staged, shown, &exists, errstr, errstr_size);
        if (rc) {
            size_t n = strlen(errstr);
            snprintf(errstr + n, errstr_size - n, "; the staging table does "
                     "not fit the stream: drop it if no run of the job needs "
                     "to recover from it");
            return rc;
        }
        return check_stmt(s, s->apply, 3, s->conf->mode == MODE_UPSERT
                          ? "checking the upsert (the key must match a "
                            "PRIMARY KEY or UNIQUE index) into"
                          : "checking the insert into", errstr, errstr_size);
    }
    PGresult *f = NULL;
    if (session_setup(s, &f)) {
        rc = fail_with(s, SL_EIO, "creating the session staging table of", f,
                       errstr, errstr_size);
        PQclear(f);
        return rc;
    }
    if (s->upsert)
        return check_stmt(s, s->upsert, 0, "checking the upsert (the key "
                          "must match a PRIMARY KEY or UNIQUE index) into",
                          errstr, errstr_size);
    return 0;
}

/* CREATE TABLE IF NOT EXISTS is not safe against a concurrent creator
 * (PostgreSQL raises a unique violation on pg_type): sinks starting at once
 * on the same table (several sink tasks, several jobs) take a session
 * advisory lock named after the table while they check and create. */
static int prepare_tables(pg_sink *s, char *errstr, size_t errstr_size)
{
    const char *params[1] = {s->tbl};
    PGresult *r = PQexecParams(s->db, "SELECT pg_advisory_lock(hashtext('sluice:' || $1))",
                               1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = fail_with(s, SL_EIO, "locking", r, errstr, errstr_size);
        PQclear(r);
        return rc;
    }
    PQclear(r);
    int rc = prepare_tables_locked(s, errstr, errstr_size);
    PQclear(PQexecParams(s->db, "SELECT pg_advisory_unlock(hashtext('sluice:' || $1))", 1,
                         NULL, params, NULL, NULL, 0));
    return rc;
}

/* ---- COPY text ----------------------------------------------------------- */
static void copy_str(sl__pg_buf *b, const char *p, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        const char *esc = c == '\\' ? "\\\\" : c == '\t' ? "\\t"
                        : c == '\n' ? "\\n" : c == '\r' ? "\\r" : NULL;
        if (!esc) continue;
        sl__pg_add(b, p + run, i - run);
        sl__pg_add(b, esc, 2);
        run = i + 1;
    }
    sl__pg_add(b, p + run, n - run);
}

static void copy_ts(sl__pg_buf *b, int64_t ms)
{
    int64_t sec = ms / 1000, frac = ms % 1000;
    if (frac < 0) frac += 1000, sec -= 1;
    time_t t = (time_t)sec;
    struct tm tm;
    char out[64];
    if (!gmtime_r(&t, &tm)) {
        sl__pg_adds(b, "\\N");
        return;
    }
    size_t n = strftime(out, sizeof out, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(out + n, sizeof out - n, ".%03d+00", (int)frac);
    /* years before 1 AD and after 9999 are not in strftime's %Y range */
    sl__pg_adds(b, out);
}

/* Appends row r of b as one COPY text line, without its newline. */
static void copy_row(sl__pg_buf *o, const sl_batch *b, uint32_t r)
{
    char num[40];
    for (int c = 0; c < b->schema->n; c++) {
        const struct sl__col *col = &b->cols[c];
        if (c) sl__pg_add(o, "\t", 1);
        if (!col->valid[r]) {
            sl__pg_add(o, "\\N", 2);
            continue;
        }
        switch (b->schema->cols[c].type) {
        case SL_INT64:
            snprintf(num, sizeof num, "%lld",
                     (long long)((const int64_t *)col->data)[r]);
            sl__pg_adds(o, num);
            break;
        case SL_TIMESTAMP:
            copy_ts(o, ((const int64_t *)col->data)[r]);
            break;
        case SL_FLOAT64: {
            double v = ((const double *)col->data)[r];
            if (v != v) snprintf(num, sizeof num, "NaN");
            else if (v > 1.7976931348623157e308) snprintf(num, sizeof num, "Infinity");
            else if (v < -1.7976931348623157e308) snprintf(num, sizeof num, "-Infinity");
            else snprintf(num, sizeof num, "%.17g", v);
            sl__pg_adds(o, num);
            break;
        }
        case SL_BOOL:
            sl__pg_add(o, ((const uint8_t *)col->data)[r] ? "t" : "f", 1);
            break;
        case SL_STRING: {
            const sl_str *v = &((const sl_str *)col->data)[r];
            copy_str(o, v->ptr ? v->ptr : "", v->len);
            break;
        }
        }
    }
}

/* The chunk's lines as COPY data; under exactly-once each line gets the
 * job, task, epoch and chunk columns. */
static void chunk_data(const pg_sink *s, sl__pg_buf *out, uint64_t epoch,
                       uint64_t chunk)
{
    if (!s->eo) {
        sl__pg_add(out, s->rows.p, s->rows.len);
        return;
    }
    sl__pg_buf meta = {0};
    char num[64];
    sl__pg_add(&meta, "\t", 1);
    copy_str(&meta, s->job_name, strlen(s->job_name));
    snprintf(num, sizeof num, "\t%lld\t%llu\t%llu\n", (long long)s->task,
             (unsigned long long)epoch, (unsigned long long)chunk);
    sl__pg_adds(&meta, num);
    const char *p = s->rows.p, *end = s->rows.p + s->rows.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        sl__pg_add(out, p, (size_t)(nl - p));
        sl__pg_add(out, meta.p, meta.len);
        p = nl + 1;
    }
    sl__pg_buf_free(&meta);
}

/* ---- sending a chunk ----------------------------------------------------- */
/* NULL when r has status `want`, else a failed result to report (never
 * NULL: libpq returns NULL when it could not even send the command). */
static PGresult *outcome(pg_sink *s, PGresult *r, ExecStatusType want)
{
    if (r && PQresultStatus(r) == want) {
        PQclear(r);
        return NULL;
    }
    return r ? r : PQmakeEmptyPGresult(s->db, PGRES_FATAL_ERROR);
}

/* Runs COPY with data; NULL (success) or the failed result. */
static PGresult *copy_in(pg_sink *s, const char *data, size_t len)
{
    PGresult *r = PQexec(s->db, s->copy);
    if (!r || PQresultStatus(r) != PGRES_COPY_IN)
        return outcome(s, r, PGRES_COPY_IN);
    PQclear(r);
    const size_t step = 1 << 20;
    bool ok = true;
    for (size_t off = 0; ok && off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        ok = PQputCopyData(s->db, data + off, (int)n) == 1;
    }
    /* an error message makes the server fail the COPY: a failed send
     * never reads as success */
    if (PQputCopyEnd(s->db, ok ? NULL : "sluice: send failed") != 1) {
        PGresult *f = PQgetResult(s->db);
        if (f && PQresultStatus(f) != PGRES_COMMAND_OK) return f;
        PQclear(f);
        return PQmakeEmptyPGresult(s->db, PGRES_FATAL_ERROR);
    }
    r = PQgetResult(s->db);
    PGresult *extra;
    while ((extra = PQgetResult(s->db))) PQclear(extra);
    return outcome(s, r, PGRES_COMMAND_OK);
}

static PGresult *exec(pg_sink *s, const char *sql)
{
    PGresult *r = PQexec(s->db, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        PQclear(r);
        return NULL;
    }
    return r ? r : PQmakeEmptyPGresult(s->db, PGRES_FATAL_ERROR);
}

/* Runs sql with $1 = job, $2 = task, $3 = v (if v_set). */
static PGresult *exec3(pg_sink *s, const char *sql, const char *v)
{
    const char *params[3] = {s->job_name, s->task_s, v};
    PGresult *r = PQexecParams(s->db, sql, v ? 3 : 2, NULL, params, NULL,
                               NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        PQclear(r);
        return NULL;
    }
    return r ? r : PQmakeEmptyPGresult(s->db, PGRES_FATAL_ERROR);
}

static void rollback(pg_sink *s)
{
    if (s->db && PQstatus(s->db) == CONNECTION_OK &&
        PQtransactionStatus(s->db) != PQTRANS_IDLE)
        PQclear(PQexec(s->db, "ROLLBACK"));
}

/* Invariant 1: removes a chunk that may have committed before its COMMIT's
 * answer was lost. */
static PGresult *dedupe(pg_sink *s, uint64_t chunk)
{
    if (!s->eo) return NULL;
    sl__pg_buf b = {0};
    char num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)chunk);
    sl__pg_adds(&b, "DELETE FROM ");
    sl__pg_adds(&b, s->staged);
    sl__pg_adds(&b, " WHERE sluice_job = $1 AND sluice_task = $2 AND "
                    "sluice_chunk = $3");
    PGresult *r = exec3(s, b.p, num);
    sl__pg_buf_free(&b);
    return r;
}

static void dead_letter(pg_sink *s, const char *line, size_t len,
                        const char *position, const char *msg)
{
    char *masked = sl__xmalloc(len + 1);
    int field_col[SL_MAX_COLS];
    for (int c = 0; c < s->schema->n; c++) field_col[c] = c;
    size_t n = sl__mask_payload(s->schema, field_col, s->schema->n, '\t',
                                line, len, masked);
    char reason[1024];
    snprintf(reason, sizeof reason, "postgres_rejected: %s", msg);
    char source[160];
    snprintf(source, sizeof source, "postgres sink %s", s->conf->table);
    sl__dead_letter(s->ctx, source, position, reason, masked, n);
    free(masked);
}

/* Rows refused by the server, kept for the dead letters until the
 * transaction that skipped them has committed. */
typedef struct {
    char **lines;
    char **msgs;
    size_t n;
} bad_rows;

static void bad_add(bad_rows *b, char *line, const char *msg)
{
    b->lines = sl__xrealloc(b->lines, (b->n + 1) * sizeof(char *));
    b->msgs = sl__xrealloc(b->msgs, (b->n + 1) * sizeof(char *));
    b->lines[b->n] = line;
    b->msgs[b->n++] = sl__xstrdup(msg);
}

static void bad_rows_free(bad_rows *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->lines[i]);
        free(b->msgs[i]);
    }
    free(b->lines);
    free(b->msgs);
    *b = (bad_rows){0};
}

static void emit_bad(pg_sink *s, bad_rows *bad, const char *pos)
{
    for (size_t i = 0; i < bad->n; i++)
        dead_letter(s, bad->lines[i], strlen(bad->lines[i]), pos,
                    bad->msgs[i]);
    bad_rows_free(bad);
}

/* Writes rows [lo, hi) of a chunk that failed for some row's data: the
 * range under a savepoint, and when the server refuses it for a row's
 * data, each half again, down to single rows, which are refused. k bad
 * rows among n thus cost O(k log n) statements, not n. */
typedef struct {
    PGresult *(*run)(pg_sink *s, void *arg, size_t lo, size_t hi);
    char *(*line)(pg_sink *s, void *arg, size_t i); /* a refused row */
    void *arg;
    bad_rows *bad;
} bisector;

static PGresult *bisect(pg_sink *s, const bisector *b, size_t lo, size_t hi)
{
    if (lo >= hi) return NULL;
    PGresult *r = exec(s, "SAVEPOINT sluice_rows");
    if (!r) r = b->run(s, b->arg, lo, hi);
    if (!r) return exec(s, "RELEASE SAVEPOINT sluice_rows");
    if (!sl__pg_row_error(r)) return r;
    char msg[768];
    sl__pg_message(s->db, r, msg, sizeof msg);
    PQclear(r);
    r = exec(s, "ROLLBACK TO SAVEPOINT sluice_rows");
    if (!r) r = exec(s, "RELEASE SAVEPOINT sluice_rows");
    if (r) return r;
    if (hi - lo == 1) {
        bad_add(b->bad, b->line(s, b->arg, lo), msg);
        return NULL;
    }
    size_t mid = lo + (hi - lo) / 2;
    r = bisect(s, b, lo, mid);
    return r ? r : bisect(s, b, mid, hi);
}

typedef struct {
    const sl__pg_buf *data;
    size_t *off; /* line i is data[off[i], off[i + 1]) */
} chunk_lines;

static PGresult *copy_range(pg_sink *s, void *arg, size_t lo, size_t hi)
{
    const chunk_lines *c = arg;
    PGresult *r = copy_in(s, c->data->p + c->off[lo], c->off[hi] - c->off[lo]);
    if (!r && s->upsert) r = exec(s, s->upsert);
    if (!r && s->upsert) r = exec(s, "DELETE FROM pg_temp.sluice_up");
    return r;
}

/* The line without its newline and the exactly-once columns. */
static char *copy_line(pg_sink *s, void *arg, size_t i)
{
    const chunk_lines *c = arg;
    const char *line = c->data->p + c->off[i];
    size_t len = c->off[i + 1] - c->off[i] - 1;
    for (int tabs = 0, k = 0; s->eo && (size_t)k < len; k++)
        if (line[k] == '\t' && ++tabs == s->schema->n) {
            len = (size_t)k;
            break;
        }
    return sl__xstrndup(line, len);
}

/* After a chunk failed for a row's data: writes the others (bisect) in
 * one transaction; refused rows go to the dead letters once it has
 * committed. NULL or the failed result. */
static PGresult *send_rows_bisect(pg_sink *s, const sl__pg_buf *data,
                                  uint64_t chunk, int attempt)
{
    PGresult *r = exec(s, "BEGIN");
    if (!r && attempt) r = dedupe(s, chunk);
    if (r) return r;
    size_t n = 0, cap = 64;
    size_t *off = sl__xmalloc(cap * sizeof *off);
    off[0] = 0;
    for (size_t i = 0; i < data->len; i++)
        if (data->p[i] == '\n') {
            if (n + 2 > cap) off = sl__xrealloc(off, (cap *= 2) * sizeof *off);
            off[++n] = i + 1;
        }
    chunk_lines lines = {data, off};
    bad_rows bad = {0};
    bisector b = {copy_range, copy_line, &lines, &bad};
    r = bisect(s, &b, 0, n);
    bool done = false;
    if (!r && s->hook) r = s->hook(s->db, s->hook_arg, &done);
    if (!r) r = exec(s, done ? "ROLLBACK" : "COMMIT");
    char pos[64];
    snprintf(pos, sizeof pos, "chunk %llu", (unsigned long long)chunk);
    if (!r) emit_bad(s, &bad, pos);
    bad_rows_free(&bad);
    free(off);
    return r;
}

/* Sends the buffered rows (invariant 1): COPY in one transaction, with
 * reconnects and back-off after retriable failures, bisected after a
 * data error. */
static int send_chunk(pg_sink *s, uint64_t epoch, char *errstr,
                      size_t errstr_size)
{
    if (s->nrows == 0) return 0;
    if (s->failed) return stopped(s, errstr, errstr_size);
    uint64_t chunk = ++s->chunk, since = mono_ms(), backoff = 0;
    sl__pg_buf data = {0};
    chunk_data(s, &data, epoch, chunk);
    bool by_row = false;
    int rc = 0;
    for (int attempt = 0;; attempt++) {
        PGresult *r = NULL;
        if (!s->db) r = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
        else if (by_row) r = send_rows_bisect(s, &data, chunk, attempt);
        else {
            r = exec(s, "BEGIN");
            if (!r && attempt) r = dedupe(s, chunk);
            if (!r) r = copy_in(s, data.p, data.len);
            if (!r && s->upsert) r = exec(s, s->upsert);
            bool done = false; /* the hook knows the chunk committed before */
            if (!r && s->hook) r = s->hook(s->db, s->hook_arg, &done);
            if (!r) r = exec(s, done ? "ROLLBACK" : "COMMIT");
        }
        if (!r) break;
        if (sl__pg_row_error(r) && !by_row) {
            rollback(s);
            PQclear(r);
            by_row = true;
            continue;
        }
        if (sl__pg_retriable(s->db, r)) {
            rc = reconnect(s, since, &backoff, "writing to", r, errstr,
                           errstr_size);
            PQclear(r);
            if (rc) break;
            continue;
        }
        rollback(s);
        rc = fail_with(s, SL_EIO, "writing to", r, errstr, errstr_size);
        PQclear(r);
        break;
    }
    sl__pg_buf_free(&data);
    if (rc == 0) {
        s->rows.len = 0;
        s->nrows = 0;
    }
    return rc;
}

/* Runs `step` in one transaction, again on a new connection after a
 * retriable failure (each step is idempotent: invariants 1 and 2). */
typedef PGresult *(*tx_step)(pg_sink *s, uint64_t epoch, void *out);

static int in_tx(pg_sink *s, tx_step step, uint64_t epoch, void *out,
                 const char *what, char *errstr, size_t errstr_size)
{
    uint64_t since = mono_ms(), backoff = 0;
    for (;;) {
        PGresult *r = s->db ? exec(s, "BEGIN")
                            : PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
        if (!r) r = step(s, epoch, out);
        if (!r) r = exec(s, "COMMIT");
        if (!r) return 0;
        if (sl__pg_retriable(s->db, r)) {
            int rc = reconnect(s, since, &backoff, what, r, errstr,
                               errstr_size);
            PQclear(r);
            if (rc) return rc;
            continue;
        }
        rollback(s);
        int rc = fail_with(s, SL_EIO, what, r, errstr, errstr_size);
        PQclear(r);
        return rc;
    }
}

/* ---- exactly-once: epochs ------------------------------------------------ */
static char *marks_sql(const pg_sink *s, const char *head, const char *tail)
{
    sl__pg_buf b = {0};
    sl__pg_adds(&b, head);
    sl__pg_adds(&b, s->marks);
    sl__pg_adds(&b, tail);
    return take(&b);
}

/* The marker of (job, table, task), locked for this transaction. */
static PGresult *mark_read(pg_sink *s, uint64_t *mark)
{
    char *sql = marks_sql(s, "SELECT epoch FROM ", " WHERE job = $1 AND "
                          "task = $2 AND sink = $3 FOR UPDATE");
    const char *params[3] = {s->job_name, s->task_s, s->conf->table};
    PGresult *r = PQexecParams(s->db, sql, 3, NULL, params, NULL, NULL, 0);
    free(sql);
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK)
        return outcome(s, r, PGRES_TUPLES_OK);
    *mark = PQntuples(r) ? strtoull(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    return NULL;
}

static PGresult *staged_exec(pg_sink *s, const char *head, const char *tail,
                             uint64_t epoch)
{
    sl__pg_buf b = {0};
    char num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)epoch);
    sl__pg_adds(&b, head);
    sl__pg_adds(&b, s->staged);
    sl__pg_adds(&b, " WHERE sluice_job = $1 AND sluice_task = $2");
    sl__pg_adds(&b, tail);
    PGresult *r = exec3(s, b.p, strstr(tail, "$3") ? num : NULL);
    sl__pg_buf_free(&b);
    return r;
}

/* Staged rows of epochs <= n, for applying them by ranges of sluice_seq
 * after the statement that applies them at once failed for a row's data. */
typedef struct {
    PGresult *rows; /* sluice_seq, then the stream's columns */
    char epoch[24];
} staged_rows;

static PGresult *apply_range(pg_sink *s, void *arg, size_t lo, size_t hi)
{
    const staged_rows *st = arg;
    const char *params[5] = {s->job_name, s->task_s,
                             PQgetvalue(st->rows, (int)lo, 0),
                             PQgetvalue(st->rows, (int)hi - 1, 0), st->epoch};
    PGresult *r = PQexecParams(s->db, s->apply_one, 5, NULL, params, NULL,
                               NULL, 0);
    if (PQresultStatus(r) == PGRES_COMMAND_OK) {
        PQclear(r);
        return NULL;
    }
    return r ? r : PQmakeEmptyPGresult(s->db, PGRES_FATAL_ERROR);
}

static char *staged_line(pg_sink *s, void *arg, size_t i)
{
    const staged_rows *st = arg;
    sl__pg_buf line = {0};
    for (int c = 0; c < s->schema->n; c++) {
        if (c) sl__pg_add(&line, "\t", 1);
        if (PQgetisnull(st->rows, (int)i, c + 1)) sl__pg_adds(&line, "\\N");
        else sl__pg_adds(&line, PQgetvalue(st->rows, (int)i, c + 1));
    }
    return line.p ? line.p : sl__xstrdup("");
}

static PGresult *apply_bisect(pg_sink *s, uint64_t n, bad_rows *bad)
{
    staged_rows st = {0};
    snprintf(st.epoch, sizeof st.epoch, "%llu", (unsigned long long)n);
    sl__pg_buf b = {0};
    sl__pg_adds(&b, "SELECT sluice_seq, ");
    sl__pg_adds(&b, s->cols);
    sl__pg_adds(&b, " FROM ");
    sl__pg_adds(&b, s->staged);
    sl__pg_adds(&b, " WHERE sluice_job = $1 AND sluice_task = $2 AND "
                    "sluice_epoch <= $3 ORDER BY sluice_seq");
    const char *params[3] = {s->job_name, s->task_s, st.epoch};
    st.rows = PQexecParams(s->db, b.p, 3, NULL, params, NULL, NULL, 0);
    sl__pg_buf_free(&b);
    if (!st.rows || PQresultStatus(st.rows) != PGRES_TUPLES_OK)
        return outcome(s, st.rows, PGRES_TUPLES_OK);
    bisector bs = {apply_range, staged_line, &st, bad};
    PGresult *r = bisect(s, &bs, 0, (size_t)PQntuples(st.rows));
    PQclear(st.rows);
    return r;
}

/* Invariant 2: in the open transaction, moves staged epochs <= n into the
 * table and sets the marker to n. */
static PGresult *eo_apply(pg_sink *s, uint64_t n, bad_rows *bad)
{
    char num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)n);
    PGresult *r = exec(s, "SAVEPOINT sluice_apply");
    if (!r) r = exec3(s, s->apply, num); /* moves the rows out of staging */
    if (r && sl__pg_row_error(r)) {
        PQclear(r);
        r = exec(s, "ROLLBACK TO SAVEPOINT sluice_apply");
        if (!r) r = apply_bisect(s, n, bad); /* copies: delete them after */
        if (!r) r = staged_exec(s, "DELETE FROM ", " AND sluice_epoch <= $3", n);
    }
    if (!r) {
        char *sql = marks_sql(s, "INSERT INTO ", " (job, task, sink, epoch, "
                              "committed_at) VALUES ($1, $2, $4, $3, now()) "
                              "ON CONFLICT (job, sink, task) DO UPDATE SET "
                              "epoch = EXCLUDED.epoch, committed_at = "
                              "EXCLUDED.committed_at");
        const char *params[4] = {s->job_name, s->task_s, num, s->conf->table};
        r = outcome(s, PQexecParams(s->db, sql, 4, NULL, params, NULL, NULL, 0),
                    PGRES_COMMAND_OK);
        free(sql);
    }
    return r;
}

static void emit_bad_epoch(pg_sink *s, bad_rows *bad, uint64_t epoch)
{
    char pos[48];
    snprintf(pos, sizeof pos, "epoch %llu", (unsigned long long)epoch);
    emit_bad(s, bad, pos);
}

static PGresult *step_start(pg_sink *s, uint64_t epoch, void *out)
{
    (void)epoch, (void)out;
    PGresult *r = staged_exec(s, "DELETE FROM ", "", 0);
    if (r) return r;
    char *sql = marks_sql(s, "DELETE FROM ", " WHERE job = $1 AND task = $2 "
                          "AND sink = $3");
    r = exec3(s, sql, s->conf->table);
    free(sql);
    return r;
}

/* Invariant 3: a run whose first call is not recover() is a new run. */
static int eo_start(pg_sink *s, char *errstr, size_t errstr_size)
{
    if (s->started) return 0;
    s->started = true;
    return in_tx(s, step_start, 0, NULL, "discarding what an earlier run "
                 "staged for", errstr, errstr_size);
}

typedef struct {
    uint64_t mark;
    bad_rows bad;
} commit_out;

static PGresult *step_commit(pg_sink *s, uint64_t epoch, void *out)
{
    commit_out *o = out;
    bad_rows_free(&o->bad);
    PGresult *r = mark_read(s, &o->mark);
    if (!r && o->mark < epoch) r = eo_apply(s, epoch, &o->bad);
    return r;
}

static PGresult *step_recover(pg_sink *s, uint64_t epoch, void *out)
{
    commit_out *o = out;
    bad_rows_free(&o->bad);
    PGresult *r = mark_read(s, &o->mark);
    if (r || (o->mark > epoch && s->conf->mode != MODE_UPSERT)) return r;
    r = eo_apply(s, epoch, &o->bad);
    if (!r) r = staged_exec(s, "DELETE FROM ", " AND sluice_epoch > $3", epoch);
    return r;
}

static int bad_epoch(const pg_sink *s, const char *call, uint64_t epoch,
                     const char *why, char *errstr, size_t errstr_size)
{
    return sl__err(errstr, errstr_size, SL_ESTATE,
                   "postgres sink: table %s: %s(%llu) %s", s->conf->table,
                   call, (unsigned long long)epoch, why);
}

/* ---- the instance -------------------------------------------------------- */
static void pg_close(void *st);

static int pg_open(void **st, const void *conf, const sl_schema *in,
                   sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    pg_sink *s = sl__xcalloc(1, sizeof *s);
    s->conf = conf;
    s->schema = in;
    s->ctx = ctx;
    s->job = ctx ? ctx->job : NULL;
    s->eo = ctx && ctx->delivery == SL__EXACTLY_ONCE;
    s->job_name = sl__xstrdup(ctx && ctx->job_name ? ctx->job_name : "job");
    s->task = ctx ? ctx->task : 0;
    snprintf(s->task_s, sizeof s->task_s, "%lld", (long long)s->task);
    s->tag = 1;
    s->opts = (sl__pg_opts){.dsn = s->conf->dsn,
                            .connect_timeout_s = s->conf->connect_timeout_s,
                            .statement_timeout_ms =
                                s->conf->statement_timeout_ms};
    build_sql(s);
    int rc = sl__pg_connect(&s->opts, &s->db, errstr, errstr_size);
    if (rc == 0) rc = prepare_tables(s, errstr, errstr_size);
    if (rc) {
        s->failed = rc;
        pg_close(s);
        return rc;
    }
    *st = s;
    return 0;
}

static int pg_write(void *st, const sl_batch *b, char *errstr,
                    size_t errstr_size)
{
    pg_sink *s = st;
    int rc;
    if (s->failed) return stopped(s, errstr, errstr_size);
    SL_ASSERT(b->schema->n == s->schema->n);
    if (s->eo && (rc = eo_start(s, errstr, errstr_size))) return rc;
    for (uint32_t r = 0; r < b->n; r++) {
        if (b->kind[r] != SL_KIND_DATA)
            continue; /* canaries never go among the results */
        copy_row(&s->rows, b, r);
        sl__pg_add(&s->rows, "\n", 1);
        if (++s->nrows >= (uint64_t)s->conf->batch_rows &&
            (rc = send_chunk(s, s->tag, errstr, errstr_size)))
            return rc;
    }
    return 0;
}

/* Under exactly-once this only sends rows to staging, where they stay
 * invisible until their epoch commits. */
static int pg_flush(void *st, char *errstr, size_t errstr_size)
{
    pg_sink *s = st;
    if (s->failed) return stopped(s, errstr, errstr_size);
    return send_chunk(s, s->tag, errstr, errstr_size);
}

static int pg_precommit(void *st, uint64_t epoch, char *errstr,
                        size_t errstr_size)
{
    pg_sink *s = st;
    int rc;
    if (s->failed) return stopped(s, errstr, errstr_size);
    if (!s->eo) return send_chunk(s, 0, errstr, errstr_size);
    if ((rc = eo_start(s, errstr, errstr_size))) return rc;
    if (epoch <= s->precommitted || epoch > INT64_MAX)
        return bad_epoch(s, "precommit", epoch, "does not follow the last "
                         "precommitted epoch", errstr, errstr_size);
    if ((rc = send_chunk(s, epoch, errstr, errstr_size))) return rc;
    s->precommitted = epoch;
    s->tag = epoch + 1;
    return 0;
}

static int pg_commit(void *st, uint64_t epoch, char *errstr,
                     size_t errstr_size)
{
    pg_sink *s = st;
    int rc;
    if (s->failed) return stopped(s, errstr, errstr_size);
    if (!s->eo) return send_chunk(s, 0, errstr, errstr_size);
    if ((rc = eo_start(s, errstr, errstr_size))) return rc;
    if (epoch > s->precommitted)
        return bad_epoch(s, "commit", epoch, "comes before its precommit",
                         errstr, errstr_size);
    if (epoch <= s->committed) return 0;
    commit_out o = {0};
    rc = in_tx(s, step_commit, epoch, &o, "committing an epoch to", errstr,
               errstr_size);
    if (rc) {
        bad_rows_free(&o.bad);
        return rc;
    }
    emit_bad_epoch(s, &o.bad, epoch);
    s->committed = o.mark > epoch ? o.mark : epoch;
    return 0;
}

static int pg_recover(void *st, uint64_t epoch, char *errstr,
                      size_t errstr_size)
{
    pg_sink *s = st;
    if (s->failed) return stopped(s, errstr, errstr_size);
    if (!s->eo) return 0;
    if (s->started)
        return bad_epoch(s, "recover", epoch, "must be the first call after "
                         "open", errstr, errstr_size);
    if (epoch > INT64_MAX)
        return bad_epoch(s, "recover", epoch, "is out of range", errstr,
                         errstr_size);
    if (epoch == 0) return eo_start(s, errstr, errstr_size);
    s->started = true;
    commit_out o = {0};
    int rc = in_tx(s, step_recover, epoch, &o, "recovering epochs of", errstr,
                   errstr_size);
    if (rc) {
        bad_rows_free(&o.bad);
        return rc;
    }
    if (o.mark > epoch && s->conf->mode != MODE_UPSERT) {
        rollback(s);
        return s->failed = sl__err(
                   errstr, errstr_size, SL_ECORRUPT,
                   "postgres sink: table %s already holds epochs up to %llu "
                   "of job '%s' (task %lld), but the job restarts from "
                   "checkpoint %llu: the replay would insert those rows "
                   "again (restart from the newest checkpoint, or use "
                   "mode=upsert)", s->conf->table,
                   (unsigned long long)o.mark, s->job_name,
                   (long long)s->task, (unsigned long long)epoch);
    }
    emit_bad_epoch(s, &o.bad, epoch);
    s->precommitted = s->committed = epoch;
    s->tag = epoch + 1;
    return 0;
}

static void pg_close(void *st)
{
    pg_sink *s = st;
    if (!s) return;
    /* At-least-once and at-most-once: the final flush, unless the job
     * failed; under exactly-once unsent rows belong to an epoch that will
     * never complete. */
    if (!s->eo && !s->failed && s->db && s->nrows &&
        !(s->job && sl_job_error(s->job))) {
        char err[1024];
        if (send_chunk(s, 0, err, sizeof err))
            sl__log(SL__LOG_ERROR, "postgres-sink", "final flush failed",
                    "error=\"%s\"", err);
    }
    rollback(s);
    PQfinish(s->db);
    sl__pg_buf_free(&s->rows);
    char *const all[] = {s->job_name, s->tbl, s->staged, s->marks, s->copy,
                         s->upsert, s->apply, s->apply_one, s->cols};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    free(s);
}

/* ---- the sink task's entry points (pg.h) --------------------------------- */
void sl__pg_sink_set_hook(void *st, sl__pg_hook_fn fn, void *arg)
{
    pg_sink *s = st;
    s->hook = fn;
    s->hook_arg = arg;
}

static PGresult *step_hook(pg_sink *s, uint64_t epoch, void *out)
{
    (void)epoch, (void)out;
    bool done = false;
    return s->hook ? s->hook(s->db, s->hook_arg, &done) : NULL;
}

int sl__pg_sink_send(void *st, char *errstr, size_t errstr_size)
{
    pg_sink *s = st;
    if (s->failed) return stopped(s, errstr, errstr_size);
    if (s->nrows) return send_chunk(s, 0, errstr, errstr_size);
    return in_tx(s, step_hook, 0, NULL, "storing offsets with", errstr,
                 errstr_size);
}

typedef struct {
    sl__pg_step_fn fn;
    void *arg;
} tx_call;

static PGresult *step_call(pg_sink *s, uint64_t epoch, void *out)
{
    (void)epoch;
    const tx_call *c = out;
    return c->fn(s->db, c->arg);
}

int sl__pg_sink_tx(void *st, sl__pg_step_fn fn, void *arg, const char *what,
                   char *errstr, size_t errstr_size)
{
    pg_sink *s = st;
    if (s->failed) return stopped(s, errstr, errstr_size);
    tx_call c = {fn, arg};
    return in_tx(s, step_call, 0, &c, what, errstr, errstr_size);
}

const char *sl__pg_sink_sibling(void *st, const char *name, char **out)
{
    pg_sink *s = st;
    *out = sibling(s->conf->table, name, "");
    return *out;
}

const sl__sink_vt sl__sink_postgres = {
    .name = "postgres",
    .configure = pg_configure,
    .max_parallelism = 1,
    .open = pg_open,
    .write = pg_write,
    .flush = pg_flush,
    .close = pg_close,
    .conf_free = pg_conf_free,
    .precommit = pg_precommit,
    .commit = pg_commit,
    .recover = pg_recover,
    .exactly_once = true,
};
