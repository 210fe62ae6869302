/* sqlite_sink.c — the "sqlite" sink: writes result rows into a table of a
 * SQLite database file (embedded mode; one task, max_parallelism 1).
 *
 * It creates the table from the stream's schema when it is missing
 * (INT64/TIMESTAMP/BOOL -> INTEGER, FLOAT64 -> REAL, STRING -> TEXT;
 * timestamps are stored as INTEGER epoch milliseconds), or checks an existing
 * table's columns against the schema. Rows are inserted with one prepared
 * statement, or upserted on the result's key (mode=upsert:
 * INSERT ... ON CONFLICT(key) DO UPDATE), which makes replays idempotent.
 * It does not read from SQLite, and it does not record canaries yet.
 *
 * Commit protocol. Invariants, and the function that keeps each:
 * 1. Rows become visible only when a transaction commits, and all rows of a
 *    flush commit together: write() opens a transaction before its first
 *    row (tx_begin) and flush() commits it (tx_commit).
 * 2. At most one transaction is open, and `in_tx` says whether it is:
 *    tx_sync() re-reads SQLite's autocommit state after any failed
 *    statement, because SQLite rolls some errors back on its own.
 * 3. After an error the instance is failed (fail()): write and flush return
 *    the error again, and close() rolls back what is uncommitted.
 * 4. close() is the final flush (sq_close): it commits an open transaction
 *    unless (3) or the job has failed or was cancelled (sl_job_error), in
 *    which case it rolls back.
 * Exactly-once will add precommit(epoch), which inserts the marker row
 * (job, sink, task, epoch) into the transaction that holds the epoch's rows
 * and leaves it open, and commit(epoch), which is tx_commit(); recovery
 * reads the marker to learn whether the epoch committed. Keep transaction
 * control in tx_begin/tx_commit/tx_rollback so those can reuse it. */
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/runtime.h"
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

typedef struct {
    const sq_conf *conf;
    const sl_schema *schema;
    sl_job *job; /* NULL in unit tests */
    sqlite3 *db;
    sqlite3_stmt *ins, *begin, *commit, *rollback;
    bool in_tx;
    int failed; /* 0, or the SL_E* code of the error that stopped us */
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

/* Splits c->key on commas into column indices of the schema. */
static int parse_key(sq_conf *c, const sl_schema *in, char *errstr,
                     size_t errstr_size)
{
    const char *p = c->key;
    c->nkey = 0;
    while (*p) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *e = end;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        char name[256];
        size_t len = (size_t)(e - p);
        if (len == 0 || len >= sizeof name)
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "sqlite sink: 'key' must list column names "
                           "separated by commas, got '%s'", c->key);
        memcpy(name, p, len);
        name[len] = '\0';
        int col = sl_schema_find(in, name);
        if (col < 0)
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "sqlite sink: 'key' column '%s' is not a column "
                           "of the stream", name);
        for (int k = 0; k < c->nkey; k++)
            if (c->key_cols[k] == col)
                return sl__err(errstr, errstr_size, SL_EINVAL,
                               "sqlite sink: 'key' lists column '%s' twice",
                               name);
        c->key_cols[c->nkey++] = col;
        p = comma ? comma + 1 : end;
    }
    if (c->nkey == 0)
        return sl__err(errstr, errstr_size, SL_EINVAL,
                       "sqlite sink: 'key' must name at least one column");
    return 0;
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
    if (rc == 0 && c->key && c->key[0])
        rc = parse_key(c, in, errstr, errstr_size);
    if (rc == 0 && c->mode == MODE_UPSERT && c->nkey == 0)
        rc = sl__err(errstr, errstr_size, SL_EINVAL,
                     "sqlite sink: mode 'upsert' needs 'key' (the result's "
                     "key columns, comma-separated)");
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

static char *create_sql(const sq_sink *s)
{
    const sl_schema *sc = s->schema;
    sbuf b = {0};
    sb_add(&b, "CREATE TABLE IF NOT EXISTS ");
    sb_ident(&b, s->conf->table);
    sb_add(&b, " (");
    for (int c = 0; c < sc->n; c++) {
        if (c)
            sb_add(&b, ", ");
        sb_ident(&b, sc->cols[c].name);
        sb_add(&b, " ");
        sb_add(&b, sql_type(sc->cols[c].type));
    }
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

static bool is_key(const sq_conf *c, int col)
{
    for (int k = 0; k < c->nkey; k++)
        if (c->key_cols[k] == col)
            return true;
    return false;
}

/* INSERT INTO "t" ("a", "b") VALUES (?1, ?2), plus for upsert
 * ON CONFLICT ("a") DO UPDATE SET "b" = excluded."b". */
static char *insert_sql(const sq_sink *s)
{
    const sl_schema *sc = s->schema;
    const sq_conf *c = s->conf;
    sbuf b = {0};
    char num[16];
    sb_add(&b, "INSERT INTO ");
    sb_ident(&b, c->table);
    sb_add(&b, " (");
    for (int i = 0; i < sc->n; i++) {
        if (i)
            sb_add(&b, ", ");
        sb_ident(&b, sc->cols[i].name);
    }
    sb_add(&b, ") VALUES (");
    for (int i = 0; i < sc->n; i++) {
        snprintf(num, sizeof num, "%s?%d", i ? ", " : "", i + 1);
        sb_add(&b, num);
    }
    sb_add(&b, ")");
    if (c->mode != MODE_UPSERT)
        return b.p;
    sb_add(&b, " ON CONFLICT (");
    for (int k = 0; k < c->nkey; k++) {
        if (k)
            sb_add(&b, ", ");
        sb_ident(&b, sc->cols[c->key_cols[k]].name);
    }
    sb_add(&b, ") DO ");
    if (c->nkey == sc->n) {
        sb_add(&b, "NOTHING");
        return b.p;
    }
    sb_add(&b, "UPDATE SET ");
    bool first = true;
    for (int i = 0; i < sc->n; i++) {
        if (is_key(c, i))
            continue;
        if (!first)
            sb_add(&b, ", ");
        first = false;
        sb_ident(&b, sc->cols[i].name);
        sb_add(&b, " = excluded.");
        sb_ident(&b, sc->cols[i].name);
    }
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
static int check_table(sq_sink *s, bool *exists, char *errstr,
                       size_t errstr_size)
{
    const sl_schema *sc = s->schema;
    sbuf q = {0};
    sqlite3_stmt *st = NULL;
    bool seen[SL_MAX_COLS] = {false};
    int rc = 0, ncols = 0;

    sb_add(&q, "PRAGMA main.table_info(");
    sb_ident(&q, s->conf->table);
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
                             "column", s->conf->table, s->conf->path, name);
            continue;
        }
        seen[col] = true;
        if (!type_fits(sc->cols[col].type, affinity(decl)))
            rc = sl__err(errstr, errstr_size, SL_EINVAL,
                         "table \"%s\" in %s: column \"%s\" has type %s, "
                         "which cannot hold the stream's %s (use %s)",
                         s->conf->table, s->conf->path, name,
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
                         "stream's %s column)", s->conf->table,
                         s->conf->path, sc->cols[c].name,
                         sl_type_name(sc->cols[c].type));
    return rc;
}

static int prepare_table(sq_sink *s, char *errstr, size_t errstr_size)
{
    bool exists;
    int rc = check_table(s, &exists, errstr, errstr_size);
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
    return check_table(s, &exists, errstr, errstr_size);
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
     * durable at each checkpoint of the WAL and safe against corruption. */
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) ||
        sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL)) {
        rc = sq_error(s, "configuring the database for", errstr, errstr_size);
        goto out;
    }
    rc = prepare_table(s, errstr, errstr_size);
    if (rc)
        goto out;
    char *sql = insert_sql(s);
    rc = prepare(s, sql, &s->ins, s->conf->mode == MODE_UPSERT
                     ? "preparing the upsert (the key must match the "
                       "table's PRIMARY KEY or a UNIQUE index) into"
                     : "preparing the insert into",
                 errstr, errstr_size);
    free(sql);
    if (!rc)
        rc = prepare(s, "BEGIN IMMEDIATE", &s->begin, "preparing BEGIN for",
                     errstr, errstr_size);
    if (!rc)
        rc = prepare(s, "COMMIT", &s->commit, "preparing COMMIT for", errstr,
                     errstr_size);
    if (!rc)
        rc = prepare(s, "ROLLBACK", &s->rollback, "preparing ROLLBACK for",
                     errstr, errstr_size);
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

static int sq_write(void *st, const sl_batch *b, char *errstr,
                    size_t errstr_size)
{
    sq_sink *s = st;
    if (s->failed)
        return sl__err(errstr, errstr_size, s->failed,
                       "table \"%s\" in %s: stopped after an earlier error",
                       s->conf->table, s->conf->path);
    SL_ASSERT(b->schema->n == s->schema->n);
    for (uint32_t r = 0; r < b->n; r++) {
        if (b->kind[r] != SL_KIND_DATA) {
            /* Canaries are verified here and recorded in their own table,
             * never among the results (issue "canaries"); skipped until
             * then, and counted nowhere. */
            continue;
        }
        int rc = tx_begin(s, errstr, errstr_size);
        if (rc)
            return rc;
        if (bind_row(s, b, r) != SQLITE_OK || run_stmt(s->ins) != SQLITE_OK) {
            tx_sync(s);
            return fail(s, "writing to", errstr, errstr_size);
        }
    }
    return 0;
}

static int sq_flush(void *st, char *errstr, size_t errstr_size)
{
    sq_sink *s = st;
    if (s->failed)
        return sl__err(errstr, errstr_size, s->failed,
                       "table \"%s\" in %s: stopped after an earlier error",
                       s->conf->table, s->conf->path);
    return tx_commit(s, errstr, errstr_size);
}

static void sq_close(void *st)
{
    sq_sink *s = st;
    if (!s)
        return;
    if (s->db) {
        if (s->in_tx && !s->failed && !(s->job && sl_job_error(s->job))) {
            char err[512];
            if (tx_commit(s, err, sizeof err))
                fprintf(stderr, "sluice: sqlite sink: %s\n", err);
        }
        if (s->in_tx && s->rollback)
            tx_rollback(s);
        sqlite3_finalize(s->ins);
        sqlite3_finalize(s->begin);
        sqlite3_finalize(s->commit);
        sqlite3_finalize(s->rollback);
    }
    sqlite3_close_v2(s->db);
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
};
