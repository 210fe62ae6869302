/* sqlite_sink.c — the "sqlite" sink: writes result rows into a table of a
 * SQLite database file (embedded mode; one task, max_parallelism 1).
 *
 * It creates the table from the stream's schema when it is missing
 * (INT64/TIMESTAMP/BOOL -> INTEGER, FLOAT64 -> REAL, STRING -> TEXT;
 * timestamps are stored as INTEGER epoch milliseconds), or checks an existing
 * table's columns against the schema. Rows are inserted with one prepared
 * statement, or upserted on the result's key (mode=upsert:
 * INSERT ... ON CONFLICT(key) DO UPDATE), which makes replays idempotent.
 * It does not read results back. Canary rows (production checks, never
 * results) are recorded in "sluice_canaries" (job, sink, task, canary slot,
 * seen_at ms, epoch) in the same transaction as the rows around them, so a
 * canary row becomes visible with them; a canary row of an epoch that
 * later aborts stays (the canary did reach the sink).
 *
 * Under at-least-once and at-most-once, rows go straight into the table and
 * every flush (precommit and commit too) commits them: a replay after a
 * failure may insert rows again (upsert mode overwrites them instead).
 *
 * Under exactly-once, rows go first into the staging table "<table>__staged"
 * (the stream's columns plus sluice_job, sluice_task and sluice_epoch, no
 * key), and the table only ever receives whole epochs, applied from staging
 * together with the marker row (job, sink = table, task, epoch) of
 * "sluice_epochs". Both tables are created when missing, whatever 'create'
 * says. An epoch is the rows written between precommit(n-1) and
 * precommit(n).
 *
 * Commit protocol. Invariants, and the function that keeps each:
 * 1. Rows become visible only when a transaction commits, and all rows of a
 *    flush commit together: write() opens a transaction before its first
 *    row (tx_begin) and flush() commits it (tx_commit).
 * 2. At most one transaction is open, and `in_tx` says whether it is:
 *    tx_sync() re-reads SQLite's autocommit state after any failed
 *    statement, because SQLite rolls some errors back on its own.
 * 3. After an error the instance is failed (fail()): every later call
 *    returns the error again, and close() rolls back what is uncommitted.
 * 4. At-least-once and at-most-once: close() is the final flush (sq_close):
 *    it commits an open transaction unless (3) or the job has failed or was
 *    cancelled (sl_job_error), in which case it rolls back.
 * Exactly-once:
 * 5. The table receives staged rows only in eo_apply(), which runs in the
 *    same transaction as the deletion of those rows from staging and the
 *    marker update, and only for epochs <= n where n was precommitted
 *    (sq_commit) or is a complete checkpoint (sq_recover). Readers thus see
 *    either none or all of an epoch, and each staged row at most once.
 * 6. A staged row carries the epoch it belongs to: write() tags rows with
 *    `tag` = the last precommitted epoch + 1, and sq_precommit() retags them
 *    when the runtime's next epoch is not that number, then commits, so the
 *    epoch is durable (synchronous=FULL) once precommit returns.
 * 7. The marker only grows within a run, and a commit(n) whose marker says
 *    >= n changes nothing (sq_commit reads it inside its transaction).
 * 8. Rows of aborted epochs never reach the table: recover(n) deletes staged
 *    epochs > n in the transaction that applies those <= n (sq_recover); a
 *    run that begins with recover(0) (no checkpoint: the runtime's fresh
 *    start) or with anything but recover() is a new run and deletes all
 *    that an earlier run of the same job and task staged, and its marker
 *    (eo_start); close() rolls back, never commits (sq_close).
 * Committing staging rows early (flush(), or commit(n) carrying the open
 * staging transaction along) is harmless: they stay invisible until (5),
 * and (8) removes them if their epoch never completes. */
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/runtime.h"
#include "io/sinkconf.h"
#include "io/encode.h"

enum { MODE_INSERT = 0, MODE_UPSERT = 1 };

typedef struct {
    char *path;
    char *table;
    int mode;
    char *key; /* comma-separated key columns; NULL = none */
    bool create;
    /* derived by configure */
    int nkey;
    int key_cols[SL_MAX_COLS]; /* indices in the input schema */
} sq_conf;

static const sl__conf_def sq_defs[] = {
    {.key = "path", .type = SL_CONF_STR, .min = 1,
     .offset = offsetof(sq_conf, path),
     .desc = "database file; its directory is created if missing"},
    {.key = "table", .type = SL_CONF_STR, .min = 1,
     .offset = offsetof(sq_conf, table),
     .desc = "table to write (letters, digits and _, not starting with a "
             "digit)"},
    {.key = "mode", .type = SL_CONF_ENUM, .def = "insert",
     .allowed = "insert|upsert", .offset = offsetof(sq_conf, mode),
     .desc = "insert every row, or upsert on the key columns"},
    {.key = "key", .type = SL_CONF_STR, .offset = offsetof(sq_conf, key),
     .desc = "comma-separated key columns: the conflict target of upsert "
             "and the PRIMARY KEY of a created table"},
    {.key = "create", .type = SL_CONF_BOOL, .def = "true",
     .offset = offsetof(sq_conf, create),
     .desc = "create the table if it does not exist"},
    {.key = NULL},
};

/* Columns the staging table adds to the stream's. */
static const char *const meta_cols[] = {"sluice_job", "sluice_task",
                                        "sluice_epoch"};

typedef struct {
    const sq_conf *conf;
    const sl_schema *schema;
    sl_job *job; /* NULL in unit tests */
    sqlite3 *db;
    /* ins writes a row: into the table, or under exactly-once into
     * staging (the stream's columns, then job, task, epoch). */
    sqlite3_stmt *ins, *begin, *commit, *rollback;
    bool in_tx;
    int failed; /* 0, or the SL_E* code of the error that stopped us */
    /* exactly-once */
    bool eo;
    char *job_name, *staged; /* staged = "<table>__staged" */
    int64_t task;
    sqlite3_stmt *apply, *drop_le, *drop_gt, *retag, *mark_get, *mark_set,
        *mark_del;
    bool started;     /* recover() ran, or eo_start() began a new run */
    uint64_t precommitted; /* last epoch precommitted (or recovered) */
    uint64_t committed;    /* the marker as this run last wrote or read it */
    uint64_t tag;          /* epoch written rows are tagged with */
    uint64_t staged_rows;  /* rows tagged `tag` so far */
    sqlite3_stmt *canary;  /* INSERT INTO sluice_canaries */
    char *canary_job;      /* the job name canary rows carry */
} sq_sink;

/* ---- configuration ------------------------------------------------------- */
static bool is_identifier(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return strncasecmp(s, "sqlite_", 7) != 0; /* reserved by SQLite */
}

static void sq_conf_free(void *conf)
{
    if (!conf)
        return;
    sl__conf_free(sq_defs, conf);
    free(conf);
}

static int sq_configure(void **conf, const char *const *kv,
                        const sl_schema *in, char *errstr,
                        size_t errstr_size)
{
    sq_conf *c = sl__xcalloc(1, sizeof *c);
    int rc = sl__conf_apply(sq_defs, c, kv, "sqlite sink", NULL, errstr,
                            errstr_size);
    if (rc == 0 && !is_identifier(c->table))
        rc = sl__err(errstr, errstr_size, SL_EINVAL,
                     "sqlite sink: 'table' must be an SQL identifier "
                     "(letters, digits and _, not starting with a digit or "
                     "sqlite_), got '%s'", c->table);
    if (rc == 0)
        rc = sl__sink_key_conf("sqlite sink", c->key, c->mode == MODE_UPSERT, in,
                               c->key_cols, &c->nkey, errstr, errstr_size);
    if (rc) {
        sq_conf_free(c);
        return rc;
    }
    *conf = c;
    return 0;
}

/* ---- errors and transactions --------------------------------------------- */
/* Translates the connection's last error into SL_ESQLITE; busy and locked
 * databases are tagged retriable, everything else fatal. */
static int sq_error(sq_sink *s, const char *what, char *errstr,
                    size_t errstr_size)
{
    int code = s->db ? sqlite3_errcode(s->db) : SQLITE_CANTOPEN;
    int prim = code & 0xff;
    bool retriable = prim == SQLITE_BUSY || prim == SQLITE_LOCKED;
    return sl__err(errstr, errstr_size, SL_ESQLITE,
                   "%s table \"%s\" in %s: %s (%s)", what, s->conf->table,
                   s->conf->path,
                   s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(code),
                   retriable ? "retriable" : "fatal");
}

static int fail(sq_sink *s, const char *what, char *errstr,
                size_t errstr_size)
{
    int rc = sq_error(s, what, errstr, errstr_size);
    s->failed = rc;
    return rc;
}

static void tx_sync(sq_sink *s)
{
    s->in_tx = s->db && !sqlite3_get_autocommit(s->db);
}

static int run_stmt(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int tx_begin(sq_sink *s, char *errstr, size_t errstr_size)
{
    if (s->in_tx)
        return 0;
    if (run_stmt(s->begin) != SQLITE_OK) {
        tx_sync(s);
        return fail(s, "beginning a transaction on", errstr, errstr_size);
    }
    s->in_tx = true;
    return 0;
}

static int tx_commit(sq_sink *s, char *errstr, size_t errstr_size)
{
    if (!s->in_tx)
        return 0;
    if (run_stmt(s->commit) != SQLITE_OK) {
        tx_sync(s);
        return fail(s, "committing to", errstr, errstr_size);
    }
    s->in_tx = false;
    return 0;
}

static void tx_rollback(sq_sink *s)
{
    if (s->in_tx)
        run_stmt(s->rollback);
    tx_sync(s);
}

/* ---- SQL text ------------------------------------------------------------ */
typedef struct {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = sl__xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

/* Appends "name" with embedded quotes doubled. */
static void sb_ident(sbuf *b, const char *name)
{
    sb_add(b, "\"");
    for (const char *q = name; *q; q++) {
        char one[2] = {*q, '\0'};
        sb_add(b, *q == '"' ? "\"\"" : one);
    }
    sb_add(b, "\"");
}

static const char *sql_type(sl_type t)
{
    switch (t) {
    case SL_FLOAT64: return "REAL";
    case SL_STRING: return "TEXT";
    case SL_INT64:
    case SL_BOOL:
    case SL_TIMESTAMP: break;
    }
    return "INTEGER";
}

/* "a" INTEGER, "b" TEXT, ... for the stream's columns. */
static void sb_col_defs(sbuf *b, const sl_schema *sc)
{
    for (int c = 0; c < sc->n; c++) {
        if (c)
            sb_add(b, ", ");
        sb_ident(b, sc->cols[c].name);
        sb_add(b, " ");
        sb_add(b, sql_type(sc->cols[c].type));
    }
}

/* "a", "b", ... for the stream's columns. */
static void sb_col_names(sbuf *b, const sl_schema *sc)
{
    for (int c = 0; c < sc->n; c++) {
        if (c)
            sb_add(b, ", ");
        sb_ident(b, sc->cols[c].name);
    }
}

static char *create_sql(const sq_sink *s)
{
    const sl_schema *sc = s->schema;
    sbuf b = {0};
    sb_add(&b, "CREATE TABLE IF NOT EXISTS ");
    sb_ident(&b, s->conf->table);
    sb_add(&b, " (");
    sb_col_defs(&b, sc);
    if (s->conf->nkey) {
        sb_add(&b, ", PRIMARY KEY (");
        for (int k = 0; k < s->conf->nkey; k++) {
            if (k)
                sb_add(&b, ", ");
            sb_ident(&b, sc->cols[s->conf->key_cols[k]].name);
        }
        sb_add(&b, ")");
    }
    sb_add(&b, ")");
    return b.p;
}

/* The staging table has no key: an epoch may hold several versions of a
 * key's row, and epochs stack up until they are committed. */
static char *create_staged_sql(const sq_sink *s)
{
    sbuf b = {0};
    sb_add(&b, "CREATE TABLE IF NOT EXISTS ");
    sb_ident(&b, s->staged);
    sb_add(&b, " (");
    sb_col_defs(&b, s->schema);
    sb_add(&b, ", sluice_job TEXT, sluice_task INTEGER, "
               "sluice_epoch INTEGER)");
    return b.p;
}

static bool is_key(const sq_conf *c, int col)
{
    for (int k = 0; k < c->nkey; k++)
        if (c->key_cols[k] == col)
            return true;
    return false;
}

/* Upsert mode: ON CONFLICT ("a") DO UPDATE SET "b" = excluded."b". */
static void sb_upsert(sbuf *b, const sq_sink *s)
{
    const sl_schema *sc = s->schema;
    const sq_conf *c = s->conf;
    if (c->mode != MODE_UPSERT)
        return;
    sb_add(b, " ON CONFLICT (");
    for (int k = 0; k < c->nkey; k++) {
        if (k)
            sb_add(b, ", ");
        sb_ident(b, sc->cols[c->key_cols[k]].name);
    }
    sb_add(b, ") DO ");
    if (c->nkey == sc->n) {
        sb_add(b, "NOTHING");
        return;
    }
    sb_add(b, "UPDATE SET ");
    bool first = true;
    for (int i = 0; i < sc->n; i++) {
        if (is_key(c, i))
            continue;
        if (!first)
            sb_add(b, ", ");
        first = false;
        sb_ident(b, sc->cols[i].name);
        sb_add(b, " = excluded.");
        sb_ident(b, sc->cols[i].name);
    }
}

/* INSERT INTO "t" ("a", "b") VALUES (?1, ?2) [upsert]; or, under
 * exactly-once, the plain insert into staging with ?3..?5 = job, task,
 * epoch. */
static char *insert_sql(const sq_sink *s)
{
    const sl_schema *sc = s->schema;
    int nparam = sc->n + (s->eo ? 3 : 0);
    sbuf b = {0};
    char num[16];
    sb_add(&b, "INSERT INTO ");
    sb_ident(&b, s->eo ? s->staged : s->conf->table);
    sb_add(&b, " (");
    sb_col_names(&b, sc);
    if (s->eo)
        sb_add(&b, ", sluice_job, sluice_task, sluice_epoch");
    sb_add(&b, ") VALUES (");
    for (int i = 0; i < nparam; i++) {
        snprintf(num, sizeof num, "%s?%d", i ? ", " : "", i + 1);
        sb_add(&b, num);
    }
    sb_add(&b, ")");
    if (!s->eo)
        sb_upsert(&b, s);
    return b.p;
}

/* Statements on staging rows of one (job, task): ?1 = job, ?2 = task.
 * `tail` follows the WHERE clause's common part. */
static char *staged_sql(const sq_sink *s, const char *head, const char *tail)
{
    sbuf b = {0};
    sb_add(&b, head);
    sb_ident(&b, s->staged);
    sb_add(&b, " WHERE sluice_job = ?1 AND sluice_task = ?2");
    sb_add(&b, tail);
    return b.p;
}

/* Invariant 5: copies the staged epochs <= ?3, in the order they were
 * written (rowid), so the last upsert of a key wins as it would have
 * without staging. The WHERE clause also keeps SQLite's parser from taking
 * ON CONFLICT for a join constraint. */
static char *apply_sql(const sq_sink *s)
{
    sbuf b = {0};
    sb_add(&b, "INSERT INTO ");
    sb_ident(&b, s->conf->table);
    sb_add(&b, " (");
    sb_col_names(&b, s->schema);
    sb_add(&b, ") SELECT ");
    sb_col_names(&b, s->schema);
    sb_add(&b, " FROM ");
    sb_ident(&b, s->staged);
    sb_add(&b, " WHERE sluice_job = ?1 AND sluice_task = ?2 AND "
               "sluice_epoch <= ?3 ORDER BY rowid");
    sb_upsert(&b, s);
    return b.p;
}

/* ---- the table ----------------------------------------------------------- */
/* SQLite's type affinity of a declared column type (section 3.1 of
 * https://sqlite.org/datatype3.html). */
typedef enum { AFF_INTEGER, AFF_TEXT, AFF_BLOB, AFF_REAL, AFF_NUMERIC } aff;

static bool has_ci(const char *s, const char *needle)
{
    size_t n = strlen(needle);
    for (; *s; s++)
        if (strncasecmp(s, needle, n) == 0)
            return true;
    return false;
}

static aff affinity(const char *decl)
{
    if (has_ci(decl, "INT"))
        return AFF_INTEGER;
    if (has_ci(decl, "CHAR") || has_ci(decl, "CLOB") || has_ci(decl, "TEXT"))
        return AFF_TEXT;
    if (!*decl || has_ci(decl, "BLOB"))
        return AFF_BLOB;
    if (has_ci(decl, "REAL") || has_ci(decl, "FLOA") || has_ci(decl, "DOUB"))
        return AFF_REAL;
    return AFF_NUMERIC;
}

/* Whether a column of this affinity keeps values of type t unchanged.
 * Untyped (BLOB affinity) columns keep anything. NUMERIC keeps integers and
 * the value of reals; it would turn strings of digits into numbers. */
static bool type_fits(sl_type t, aff a)
{
    if (a == AFF_BLOB)
        return true;
    switch (t) {
    case SL_INT64:
    case SL_TIMESTAMP:
    case SL_BOOL: return a == AFF_INTEGER || a == AFF_NUMERIC;
    case SL_FLOAT64: return a == AFF_REAL || a == AFF_NUMERIC;
    case SL_STRING: return a == AFF_TEXT;
    }
    return false;
}

/* Reads PRAGMA table_info and checks every stream column against it:
 * present, with a compatible declared type; and that no column the stream
 * does not fill is NOT NULL without a default. *exists = table has columns. */
static int check_table(sq_sink *s, const char *table, bool *exists,
                       char *errstr, size_t errstr_size)
{
    const sl_schema *sc = s->schema;
    sbuf q = {0};
    sqlite3_stmt *st = NULL;
    bool seen[SL_MAX_COLS] = {false};
    int rc = 0, ncols = 0;

    *exists = false; /* defined on every return */
    sb_add(&q, "PRAGMA main.table_info(");
    sb_ident(&q, table);
    sb_add(&q, ")");
    if (sqlite3_prepare_v2(s->db, q.p, -1, &st, NULL) != SQLITE_OK) {
        free(q.p);
        return sq_error(s, "reading the columns of", errstr, errstr_size);
    }
    free(q.p);
    int step = SQLITE_DONE;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);
        const char *decl = (const char *)sqlite3_column_text(st, 2);
        bool notnull = sqlite3_column_int(st, 3) != 0;
        bool has_default = sqlite3_column_type(st, 4) != SQLITE_NULL;
        int col = -1;
        ncols++;
        if (!name)
            continue;
        if (!decl)
            decl = "";
        for (int c = 0; c < sc->n; c++)
            if (strcasecmp(sc->cols[c].name, name) == 0)
                col = c;
        if (col < 0) {
            if (notnull && !has_default)
                rc = sl__err(errstr, errstr_size, SL_EINVAL,
                             "table \"%s\" in %s: column \"%s\" is NOT NULL "
                             "without a default, and the stream has no such "
                             "column", table, s->conf->path, name);
            continue;
        }
        seen[col] = true;
        if (!type_fits(sc->cols[col].type, affinity(decl)))
            rc = sl__err(errstr, errstr_size, SL_EINVAL,
                         "table \"%s\" in %s: column \"%s\" has type %s, "
                         "which cannot hold the stream's %s (use %s)",
                         table, s->conf->path, name,
                         *decl ? decl : "(none)",
                         sl_type_name(sc->cols[col].type),
                         sql_type(sc->cols[col].type));
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = sq_error(s, "reading the columns of", errstr, errstr_size);
    sqlite3_finalize(st);
    *exists = ncols > 0;
    for (int c = 0; rc == 0 && *exists && c < sc->n; c++)
        if (!seen[c])
            rc = sl__err(errstr, errstr_size, SL_EINVAL,
                         "table \"%s\" in %s has no column \"%s\" (the "
                         "stream's %s column)", table,
                         s->conf->path, sc->cols[c].name,
                         sl_type_name(sc->cols[c].type));
    return rc;
}

static int prepare_table(sq_sink *s, char *errstr, size_t errstr_size)
{
    bool exists;
    int rc = check_table(s, s->conf->table, &exists, errstr, errstr_size);
    if (rc || exists)
        return rc;
    if (!s->conf->create)
        return sl__err(errstr, errstr_size, SL_EINVAL,
                       "table \"%s\" does not exist in %s and 'create' is "
                       "false", s->conf->table, s->conf->path);
    char *sql = create_sql(s);
    int src = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    free(sql);
    if (src != SQLITE_OK)
        return sq_error(s, "creating", errstr, errstr_size);
    return check_table(s, s->conf->table, &exists, errstr, errstr_size);
}

/* Open errors reach the user without the runtime's "sink sqlite:" prefix
 * that write and flush errors get. */
static void prefix_err(char *errstr, size_t errstr_size)
{
    char tmp[1024];
    if (!errstr || !errstr_size || !strncmp(errstr, "sqlite sink:", 12))
        return;
    snprintf(tmp, sizeof tmp, "sqlite sink: %s", errstr);
    snprintf(errstr, errstr_size, "%s", tmp);
}

static int prepare(sq_sink *s, const char *sql, sqlite3_stmt **st,
                   const char *what, char *errstr, size_t errstr_size)
{
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st,
                           NULL) != SQLITE_OK)
        return sq_error(s, what, errstr, errstr_size);
    return 0;
}

/* ---- exactly-once: tables and statements -------------------------------- */
static int prepare_sql(sq_sink *s, char *sql, sqlite3_stmt **st,
                       const char *what, char *errstr, size_t errstr_size)
{
    int rc = prepare(s, sql, st, what, errstr, errstr_size);
    free(sql);
    return rc;
}

/* A staging table left by an older version of the job may not fit. */
static int staged_misfit(sq_sink *s, int rc, char *errstr,
                         size_t errstr_size)
{
    char tmp[1024];
    if (!errstr || !errstr_size)
        return rc;
    snprintf(tmp, sizeof tmp, "%s; the staging table \"%s\" does not fit "
             "the stream: drop it if no run of the job needs to recover "
             "from it", errstr, s->staged);
    snprintf(errstr, errstr_size, "%s", tmp);
    return rc;
}

/* Binds ?1 = job and ?2 = task (and ?3 = sink for the marker statements)
 * once: sqlite3_reset keeps bindings. */
static int bind_task(sq_sink *s, sqlite3_stmt *st, int first, bool sink)
{
    if (sqlite3_bind_text(st, first, s->job_name, -1, SQLITE_STATIC) ||
        sqlite3_bind_int64(st, first + 1, s->task))
        return SQLITE_ERROR;
    if (sink)
        return sqlite3_bind_text(st, first + 2, s->conf->table, -1,
                                 SQLITE_STATIC);
    return SQLITE_OK;
}

static int eo_open(sq_sink *s, sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    const sl_schema *sc = s->schema;
    const char *what = "preparing the epoch statements for";
    size_t n = strlen(s->conf->table) + sizeof "__staged";
    sqlite3_stmt *probe = NULL;
    bool exists;
    int rc;

    SL_ASSERT(ctx != NULL); /* exactly-once (s->eo) comes from a task's ctx */
    s->job_name = sl__xstrdup(ctx->job_name ? ctx->job_name : "job");
    s->task = ctx->task;
    s->staged = sl__xmalloc(n);
    snprintf(s->staged, n, "%s__staged", s->conf->table);
    s->tag = 1;
    for (int c = 0; c < sc->n; c++)
        for (size_t m = 0; m < sizeof meta_cols / sizeof *meta_cols; m++)
            if (!strcasecmp(sc->cols[c].name, meta_cols[m]))
                return sl__err(errstr, errstr_size, SL_EINVAL,
                               "table \"%s\": the stream's column \"%s\" is "
                               "reserved under delivery exactly-once (the "
                               "staging table adds it); rename it",
                               s->conf->table, sc->cols[c].name);
    /* Every epoch must survive power loss once precommit or commit
     * returns: the checkpoint that follows counts on it. */
    if (sqlite3_exec(s->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL))
        return sq_error(s, "configuring the database for", errstr,
                        errstr_size);
    char *sql = create_staged_sql(s);
    int src = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    free(sql);
    if (src != SQLITE_OK)
        return sq_error(s, "creating the staging table of", errstr,
                        errstr_size);
    rc = check_table(s, s->staged, &exists, errstr, errstr_size);
    if (rc)
        return staged_misfit(s, rc, errstr, errstr_size);
    rc = prepare_sql(s, staged_sql(s, "SELECT sluice_epoch FROM ", ""),
                     &probe, "reading the staging table of", errstr,
                     errstr_size);
    sqlite3_finalize(probe);
    if (rc)
        return staged_misfit(s, rc, errstr, errstr_size);
    if (sqlite3_exec(s->db,
                     "CREATE TABLE IF NOT EXISTS sluice_epochs ("
                     "job TEXT NOT NULL, sink TEXT NOT NULL, "
                     "task INTEGER NOT NULL, epoch INTEGER NOT NULL, "
                     "committed_at INTEGER, PRIMARY KEY (job, sink, task))",
                     NULL, NULL, NULL) != SQLITE_OK)
        return sq_error(s, "creating sluice_epochs, the epoch markers of",
                        errstr, errstr_size);

    rc = prepare_sql(s, insert_sql(s), &s->ins,
                     "preparing the insert into the staging table of",
                     errstr, errstr_size);
    if (!rc)
        rc = prepare_sql(s, apply_sql(s), &s->apply,
                         s->conf->mode == MODE_UPSERT
                             ? "preparing the upsert (the key must match "
                               "the table's PRIMARY KEY or a UNIQUE index) "
                               "into"
                             : "preparing the insert into",
                         errstr, errstr_size);
    if (!rc)
        rc = prepare_sql(s, staged_sql(s, "DELETE FROM ",
                                       " AND sluice_epoch <= ?3"),
                         &s->drop_le, what, errstr, errstr_size);
    if (!rc)
        rc = prepare_sql(s, staged_sql(s, "DELETE FROM ",
                                       " AND sluice_epoch > ?3"),
                         &s->drop_gt, what, errstr, errstr_size);
    if (!rc) {
        sbuf b = {0};
        sb_add(&b, "UPDATE ");
        sb_ident(&b, s->staged);
        sb_add(&b, " SET sluice_epoch = ?3 WHERE sluice_job = ?1 AND "
                   "sluice_task = ?2 AND sluice_epoch = ?4");
        rc = prepare_sql(s, b.p, &s->retag, what, errstr, errstr_size);
    }
    if (!rc)
        rc = prepare(s, "SELECT epoch FROM sluice_epochs WHERE job = ?1 AND "
                        "task = ?2 AND sink = ?3",
                     &s->mark_get, what, errstr, errstr_size);
    if (!rc)
        rc = prepare(s, "INSERT INTO sluice_epochs (job, task, sink, epoch, "
                        "committed_at) VALUES (?1, ?2, ?3, ?4, ?5) "
                        "ON CONFLICT (job, sink, task) DO UPDATE SET "
                        "epoch = excluded.epoch, "
                        "committed_at = excluded.committed_at",
                     &s->mark_set, what, errstr, errstr_size);
    if (!rc)
        rc = prepare(s, "DELETE FROM sluice_epochs WHERE job = ?1 AND "
                        "task = ?2 AND sink = ?3",
                     &s->mark_del, what, errstr, errstr_size);
    if (rc)
        return rc;
    if (bind_task(s, s->ins, sc->n + 1, false) ||
        bind_task(s, s->apply, 1, false) ||
        bind_task(s, s->drop_le, 1, false) ||
        bind_task(s, s->drop_gt, 1, false) ||
        bind_task(s, s->retag, 1, false) ||
        bind_task(s, s->mark_get, 1, true) ||
        bind_task(s, s->mark_set, 1, true) ||
        bind_task(s, s->mark_del, 1, true))
        return sq_error(s, what, errstr, errstr_size);
    return 0;
}

/* ---- the instance -------------------------------------------------------- */
static void sq_close(void *st);

static int sq_open(void **st, const void *conf, const sl_schema *in,
                   sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    sq_sink *s = sl__xcalloc(1, sizeof *s);
    int rc;
    s->conf = conf;
    s->schema = in;
    s->job = ctx ? ctx->job : NULL;
    s->eo = ctx && ctx->delivery == SL__EXACTLY_ONCE;
    rc = sl__mkdir_parents(s->conf->path, errstr, errstr_size);
    if (rc)
        goto out;
    if (sqlite3_open_v2(s->conf->path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rc = sq_error(s, "opening the database for", errstr, errstr_size);
        goto out;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    /* WAL lets readers (dashboards, tests) read while we write; NORMAL is
     * durable at each checkpoint of the WAL and safe against corruption
     * (exactly-once raises it to FULL in eo_open). */
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) ||
        sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL)) {
        rc = sq_error(s, "configuring the database for", errstr, errstr_size);
        goto out;
    }
    rc = prepare_table(s, errstr, errstr_size);
    if (rc)
        goto out;
    if (!s->eo) {
        char *sql = insert_sql(s);
        rc = prepare(s, sql, &s->ins, s->conf->mode == MODE_UPSERT
                         ? "preparing the upsert (the key must match the "
                           "table's PRIMARY KEY or a UNIQUE index) into"
                         : "preparing the insert into",
                     errstr, errstr_size);
        free(sql);
    }
    if (!rc)
        rc = prepare(s, "BEGIN IMMEDIATE", &s->begin, "preparing BEGIN for",
                     errstr, errstr_size);
    if (!rc)
        rc = prepare(s, "COMMIT", &s->commit, "preparing COMMIT for", errstr,
                     errstr_size);
    if (!rc)
        rc = prepare(s, "ROLLBACK", &s->rollback, "preparing ROLLBACK for",
                     errstr, errstr_size);
    if (!rc && s->eo)
        rc = eo_open(s, ctx, errstr, errstr_size);
    if (!rc) {
        s->canary_job = sl__xstrdup(ctx && ctx->job_name ? ctx->job_name : "job");
        if (sqlite3_exec(s->db,
                         "CREATE TABLE IF NOT EXISTS sluice_canaries ("
                         "job TEXT NOT NULL, sink TEXT NOT NULL, task INTEGER NOT NULL, "
                         "canary INTEGER NOT NULL, seen_at INTEGER NOT NULL, "
                         "epoch INTEGER NOT NULL)", NULL, NULL, NULL) != SQLITE_OK)
            rc = sq_error(s, "creating sluice_canaries, the canary table of", errstr,
                          errstr_size);
        else
            rc = prepare(s, "INSERT INTO sluice_canaries (job, sink, task, canary, "
                            "seen_at, epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                         &s->canary, "preparing the canary insert for", errstr,
                         errstr_size);
        if (!rc && (sqlite3_bind_text(s->canary, 1, s->canary_job, -1, SQLITE_STATIC) ||
                    sqlite3_bind_text(s->canary, 2, s->conf->table, -1, SQLITE_STATIC) ||
                    sqlite3_bind_int64(s->canary, 3, ctx ? ctx->task : 0)))
            rc = sq_error(s, "preparing the canary insert for", errstr, errstr_size);
    }
out:
    if (rc) {
        prefix_err(errstr, errstr_size);
        s->failed = rc;
        sq_close(s);
        return rc;
    }
    *st = s;
    return 0;
}

static int bind_row(sq_sink *s, const sl_batch *b, uint32_t r)
{
    sqlite3_stmt *st = s->ins;
    int rc = SQLITE_OK;
    for (int c = 0; c < b->schema->n && rc == SQLITE_OK; c++) {
        const struct sl__col *col = &b->cols[c];
        int i = c + 1;
        if (!col->valid[r]) {
            rc = sqlite3_bind_null(st, i);
            continue;
        }
        switch (b->schema->cols[c].type) {
        case SL_INT64:
        case SL_TIMESTAMP:
            rc = sqlite3_bind_int64(st, i, ((const int64_t *)col->data)[r]);
            break;
        case SL_FLOAT64: /* SQLite stores NaN as NULL */
            rc = sqlite3_bind_double(st, i, ((const double *)col->data)[r]);
            break;
        case SL_BOOL:
            rc = sqlite3_bind_int(st, i, ((const uint8_t *)col->data)[r] != 0);
            break;
        case SL_STRING: {
            const sl_str *v = &((const sl_str *)col->data)[r];
            /* A NULL pointer would bind SQL NULL; the batch outlives the
             * step, so SQLite need not copy. */
            rc = sqlite3_bind_text(st, i, v->ptr ? v->ptr : "", (int)v->len,
                                   SQLITE_STATIC);
            break;
        }
        }
    }
    return rc;
}

static int stopped(const sq_sink *s, char *errstr, size_t errstr_size)
{
    return sl__err(errstr, errstr_size, s->failed,
                   "table \"%s\" in %s: stopped after an earlier error",
                   s->conf->table, s->conf->path);
}

/* ---- exactly-once: epochs ------------------------------------------------ */
/* Runs an epoch statement with ?3 = epoch (job and task are bound). */
static int run_epoch(sqlite3_stmt *st, int64_t epoch)
{
    int rc = sqlite3_bind_int64(st, 3, epoch);
    return rc == SQLITE_OK ? run_stmt(st) : rc;
}

/* The marker of (job, table, task) as the open transaction sees it; 0 when
 * there is none. */
static int mark_read(sq_sink *s, uint64_t *epoch)
{
    int rc = sqlite3_step(s->mark_get);
    *epoch = rc == SQLITE_ROW
                 ? (uint64_t)sqlite3_column_int64(s->mark_get, 0) : 0;
    int rrc = sqlite3_reset(s->mark_get);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rrc;
}

/* Wall-clock milliseconds for the marker's committed_at: bookkeeping for
 * people, never part of the results. */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Invariant 5: in the open transaction, moves the staged epochs <= n into
 * the table and sets the marker to n. */
static int eo_apply(sq_sink *s, uint64_t n)
{
    int rc = run_epoch(s->apply, (int64_t)n);
    if (rc == SQLITE_OK)
        rc = run_epoch(s->drop_le, (int64_t)n);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s->mark_set, 4, (int64_t)n);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s->mark_set, 5, wall_ms());
    if (rc == SQLITE_OK)
        rc = run_stmt(s->mark_set);
    return rc;
}

/* Invariant 8: a run whose first call is not recover() is a new run, so
 * whatever an earlier run of this job and task staged can never be
 * published, and its marker, which numbers that run's epochs, goes too. */
static int eo_start(sq_sink *s, char *errstr, size_t errstr_size)
{
    if (s->started)
        return 0;
    s->started = true;
    int rc = tx_begin(s, errstr, errstr_size);
    if (rc)
        return rc;
    if (run_epoch(s->drop_gt, -1) != SQLITE_OK ||
        run_stmt(s->mark_del) != SQLITE_OK) {
        tx_sync(s);
        return fail(s, "discarding what an earlier run staged for", errstr,
                    errstr_size);
    }
    return tx_commit(s, errstr, errstr_size);
}

static int bad_epoch(const sq_sink *s, const char *call, uint64_t epoch,
                     const char *why, char *errstr, size_t errstr_size)
{
    return sl__err(errstr, errstr_size, SL_ESTATE,
                   "table \"%s\" in %s: %s(%llu) %s", s->conf->table,
                   s->conf->path, call, (unsigned long long)epoch, why);
}

/* ---- the sink calls ------------------------------------------------------ */
static int sq_write(void *st, const sl_batch *b, char *errstr,
                    size_t errstr_size)
{
    sq_sink *s = st;
    int rc;
    if (s->failed)
        return stopped(s, errstr, errstr_size);
    SL_ASSERT(b->schema->n == s->schema->n);
    if (s->eo) {
        if ((rc = eo_start(s, errstr, errstr_size)))
            return rc;
        /* Invariant 6: the epoch is the last bound parameter. */
        if (sqlite3_bind_int64(s->ins, s->schema->n + 3, (int64_t)s->tag))
            return fail(s, "writing to", errstr, errstr_size);
    }
    for (uint32_t r = 0; r < b->n; r++) {
        if (b->kind[r] != SL_KIND_DATA) {
            /* a canary: its own table, never among the results */
            rc = tx_begin(s, errstr, errstr_size);
            if (rc)
                return rc;
            if (sqlite3_bind_int64(s->canary, 4, b->kind[r]) ||
                sqlite3_bind_int64(s->canary, 5, wall_ms()) ||
                sqlite3_bind_int64(s->canary, 6, s->eo ? (int64_t)s->tag : 0) ||
                run_stmt(s->canary) != SQLITE_OK) {
                tx_sync(s);
                return fail(s, "recording a canary in", errstr, errstr_size);
            }
            continue;
        }
        rc = tx_begin(s, errstr, errstr_size);
        if (rc)
            return rc;
        if (bind_row(s, b, r) != SQLITE_OK || run_stmt(s->ins) != SQLITE_OK) {
            tx_sync(s);
            return fail(s, "writing to", errstr, errstr_size);
        }
        s->staged_rows += s->eo;
    }
    return 0;
}

/* Under exactly-once this only makes staged rows durable (invariant 5
 * keeps them invisible). */
static int sq_flush(void *st, char *errstr, size_t errstr_size)
{
    sq_sink *s = st;
    if (s->failed)
        return stopped(s, errstr, errstr_size);
    return tx_commit(s, errstr, errstr_size);
}

static int sq_precommit(void *st, uint64_t epoch, char *errstr,
                        size_t errstr_size)
{
    sq_sink *s = st;
    int rc;
    if (s->failed)
        return stopped(s, errstr, errstr_size);
    if (!s->eo)
        return tx_commit(s, errstr, errstr_size);
    if ((rc = eo_start(s, errstr, errstr_size)))
        return rc;
    if (epoch <= s->precommitted || epoch > INT64_MAX)
        return bad_epoch(s, "precommit", epoch,
                         "does not follow the last precommitted epoch",
                         errstr, errstr_size);
    if (s->staged_rows && epoch != s->tag) { /* invariant 6 */
        if ((rc = tx_begin(s, errstr, errstr_size)))
            return rc;
        if (sqlite3_bind_int64(s->retag, 4, (int64_t)s->tag) ||
            run_epoch(s->retag, (int64_t)epoch) != SQLITE_OK) {
            tx_sync(s);
            return fail(s, "tagging the epoch of the rows staged for", errstr,
                        errstr_size);
        }
    }
    if ((rc = tx_commit(s, errstr, errstr_size)))
        return rc;
    s->precommitted = epoch;
    s->tag = epoch + 1;
    s->staged_rows = 0;
    return 0;
}

static int sq_commit(void *st, uint64_t epoch, char *errstr,
                     size_t errstr_size)
{
    sq_sink *s = st;
    uint64_t mark;
    int rc;
    if (s->failed)
        return stopped(s, errstr, errstr_size);
    if (!s->eo)
        return tx_commit(s, errstr, errstr_size);
    if ((rc = eo_start(s, errstr, errstr_size)))
        return rc;
    if (epoch > s->precommitted)
        return bad_epoch(s, "commit", epoch, "comes before its precommit",
                         errstr, errstr_size);
    if (epoch <= s->committed)
        return 0; /* invariant 7 */
    /* The staging transaction of the next epoch, if open, commits along:
     * harmless, see the end of the invariants. */
    if ((rc = tx_begin(s, errstr, errstr_size)))
        return rc;
    if (mark_read(s, &mark) != SQLITE_OK ||
        (mark < epoch && eo_apply(s, epoch) != SQLITE_OK)) {
        tx_sync(s);
        return fail(s, "committing an epoch to", errstr, errstr_size);
    }
    if ((rc = tx_commit(s, errstr, errstr_size)))
        return rc;
    s->committed = mark > epoch ? mark : epoch;
    return 0;
}

static int sq_recover(void *st, uint64_t epoch, char *errstr,
                      size_t errstr_size)
{
    sq_sink *s = st;
    uint64_t mark;
    int rc;
    if (s->failed)
        return stopped(s, errstr, errstr_size);
    if (!s->eo)
        return 0; /* nothing was held back */
    if (s->started)
        return bad_epoch(s, "recover", epoch,
                         "must be the first call after open", errstr,
                         errstr_size);
    if (epoch > INT64_MAX)
        return bad_epoch(s, "recover", epoch, "is out of range", errstr,
                         errstr_size);
    if (epoch == 0) /* no checkpoint to restart from: a new run */
        return eo_start(s, errstr, errstr_size);
    s->started = true;
    if ((rc = tx_begin(s, errstr, errstr_size)))
        return rc;
    if (mark_read(s, &mark) != SQLITE_OK) {
        tx_sync(s);
        return fail(s, "reading the epoch marker of", errstr, errstr_size);
    }
    if (mark > epoch && s->conf->mode != MODE_UPSERT) {
        tx_rollback(s);
        s->failed = sl__err(
            errstr, errstr_size, SL_ECORRUPT,
            "table \"%s\" in %s already holds epochs up to %llu of job "
            "'%s' (task %lld), but the job restarts from checkpoint %llu: "
            "the replay would insert those rows again (restart from the "
            "newest checkpoint, or use mode=upsert)",
            s->conf->table, s->conf->path, (unsigned long long)mark,
            s->job_name, (long long)s->task, (unsigned long long)epoch);
        return s->failed;
    }
    /* Epochs <= epoch are complete: publish what is left of them. Later
     * ones were aborted (invariant 8); an upsert table above the
     * checkpoint is rewritten by the replay with the same rows. */
    if (eo_apply(s, epoch) != SQLITE_OK ||
        run_epoch(s->drop_gt, (int64_t)epoch) != SQLITE_OK) {
        tx_sync(s);
        return fail(s, "recovering epochs of", errstr, errstr_size);
    }
    if ((rc = tx_commit(s, errstr, errstr_size)))
        return rc;
    s->precommitted = s->committed = epoch;
    s->tag = epoch + 1;
    return 0;
}

static void sq_close(void *st)
{
    sq_sink *s = st;
    if (!s)
        return;
    if (s->db) {
        /* Invariant 4; under exactly-once, what is not precommitted
         * belongs to an epoch that will never complete (invariant 8). */
        if (!s->eo && s->in_tx && !s->failed &&
            !(s->job && sl_job_error(s->job))) {
            char err[512];
            if (tx_commit(s, err, sizeof err))
                sl__log(SL__LOG_ERROR, "sink", err, "connector=sqlite");
        }
        if (s->in_tx && s->rollback)
            tx_rollback(s);
        sqlite3_stmt *const all[] = {s->ins, s->begin, s->commit,
                                     s->rollback, s->apply, s->drop_le,
                                     s->drop_gt, s->retag, s->mark_get,
                                     s->mark_set, s->mark_del, s->canary};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++)
            sqlite3_finalize(all[i]);
    }
    sqlite3_close_v2(s->db);
    free(s->job_name);
    free(s->canary_job);
    free(s->staged);
    free(s);
}

const sl__sink_vt sl__sink_sqlite = {
    .name = "sqlite",
    .configure = sq_configure,
    .max_parallelism = 1,
    .open = sq_open,
    .write = sq_write,
    .flush = sq_flush,
    .close = sq_close,
    .conf_free = sq_conf_free,
    .precommit = sq_precommit,
    .commit = sq_commit,
    .recover = sq_recover,
    .exactly_once = true,
};
