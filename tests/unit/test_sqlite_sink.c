/* test_sqlite_sink.c — the "sqlite" sink: table creation and validation,
 * inserts, upserts, NULLs, the transaction per flush, configuration errors,
 * and the epoch protocol under exactly-once (staging, commit, recovery
 * after a crash, aborted epochs) and at-least-once; results are read back
 * with the sqlite3 API and compared exactly. */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern const sl__sink_vt sl__sink_sqlite;

/* ---- fixtures ------------------------------------------------------------ */
typedef struct {
    char dir[64];
    char db[128];
    sl_schema *schema;
    sl__delivery delivery; /* for open_sink; at-least-once unless set */
    const char *job_name;
} fx;

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[512];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_rf(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

enum { C_WS, C_TYPE, C_AREA, C_EVENTS, C_AVG, C_OK, NCOLS };

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/sl_sqlite_sink_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    /* a missing parent directory is created by the sink */
    snprintf(f->db, sizeof f->db, "%s/sub/dir/out.db", f->dir);
    f->schema = sl_schema_new();
    assert_int_equal(sl_schema_add(f->schema, "window_start", SL_TIMESTAMP),
                     C_WS);
    assert_int_equal(sl_schema_add(f->schema, "event_type", SL_STRING),
                     C_TYPE);
    assert_int_equal(sl_schema_add(f->schema, "area", SL_STRING), C_AREA);
    assert_int_equal(sl_schema_add(f->schema, "events", SL_INT64), C_EVENTS);
    assert_int_equal(sl_schema_add(f->schema, "avg_s", SL_FLOAT64), C_AVG);
    assert_int_equal(sl_schema_add(f->schema, "ok", SL_BOOL), C_OK);
    f->delivery = SL__AT_LEAST_ONCE;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    rm_rf(f->dir);
    sl_schema_free(f->schema);
    free(f);
    return 0;
}

static void set_row(sl_batch *b, uint32_t r, int64_t ws, const char *type,
                    const char *area, int64_t events, double avg, bool ok)
{
    ((int64_t *)b->cols[C_WS].data)[r] = ws;
    assert_int_equal(sl_batch_set_str(b, C_TYPE, r, type, strlen(type)), 0);
    if (area)
        assert_int_equal(sl_batch_set_str(b, C_AREA, r, area, strlen(area)),
                         0);
    else
        b->cols[C_AREA].valid[r] = 0;
    ((int64_t *)b->cols[C_EVENTS].data)[r] = events;
    ((double *)b->cols[C_AVG].data)[r] = avg;
    ((uint8_t *)b->cols[C_OK].data)[r] = ok;
    if (r >= b->n)
        b->n = r + 1;
}

/* Configures and opens a sink; returns the open rc (conf freed on error). */
static int open_sink(fx *f, const char *const *kv, void **conf, void **st,
                     char *err, size_t errsz)
{
    sl__ctx ctx = tu_ctx();
    ctx.delivery = f->delivery;
    ctx.job_name = f->job_name;
    int rc = sl__sink_sqlite.configure(conf, kv, f->schema, err, errsz);
    if (rc)
        return rc;
    rc = sl__sink_sqlite.open(st, *conf, f->schema, &ctx, err, errsz);
    if (rc) {
        sl__sink_sqlite.conf_free(*conf);
        *conf = NULL;
    }
    return rc;
}

static void close_sink(void *conf, void *st)
{
    sl__sink_sqlite.close(st);
    sl__sink_sqlite.conf_free(conf);
}

static sqlite3 *reader(const fx *f)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    return db;
}

static int64_t count_rows(sqlite3 *db, const char *table)
{
    char sql[128];
    sqlite3_stmt *st;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void exec_sql(const char *path, const char *sql)
{
    sqlite3 *db;
    char *msg = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/* ---- tests --------------------------------------------------------------- */
static void test_create_insert_read_back(void **state)
{
    fx *f = *state;
    char err[512] = "";
    void *conf = NULL, *st = NULL;
    const char *kv[] = {"path", f->db, "table", "results", NULL};
    assert_int_equal(open_sink(f, kv, &conf, &st, err, sizeof err), 0);

    sl_batch *b = sl__batch_new(f->schema, 8);
    set_row(b, 0, 1700000000000, "SMS_SENT", "north", 42, 0.1, true);
    set_row(b, 1, INT64_MIN, "it's \"quoted\", é€😀", "", INT64_MAX,
            -1.5e300, false);
    set_row(b, 2, 0, "CANARY", "x", 1, 1, true);
    b->kind[2] = SL_KIND_CANARY; /* never among the results */
    set_row(b, 3, -1, "CALL_PLACED", NULL, -7, 3.0, true);
    assert_int_equal(sl__sink_sqlite.write(st, b, err, sizeof err), 0);

    /* Before flush the rows are in an open transaction: invisible. */
    sqlite3 *db = reader(f);
    assert_int_equal(count_rows(db, "results"), 0);
    assert_int_equal(sl__sink_sqlite.flush(st, err, sizeof err), 0);
    assert_int_equal(count_rows(db, "results"), 3);

    /* Declared types follow the schema. */
    sqlite3_stmt *q;
    const char *want_types[] = {"INTEGER", "TEXT", "TEXT", "INTEGER", "REAL",
                                "INTEGER"};
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA table_info(results)", -1,
                                        &q, NULL), SQLITE_OK);
    for (int c = 0; c < NCOLS; c++) {
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        assert_string_equal(sqlite3_column_text(q, 1),
                            sl_schema_col_name(f->schema, c));
        assert_string_equal(sqlite3_column_text(q, 2), want_types[c]);
    }
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);

    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT window_start, event_type, area, "
                               "events, avg_s, ok FROM results ORDER BY rowid",
                           -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_type(q, 0), SQLITE_INTEGER);
    assert_int_equal(sqlite3_column_int64(q, 0), 1700000000000);
    assert_string_equal(sqlite3_column_text(q, 1), "SMS_SENT");
    assert_string_equal(sqlite3_column_text(q, 2), "north");
    assert_int_equal(sqlite3_column_int64(q, 3), 42);
    assert_int_equal(sqlite3_column_type(q, 4), SQLITE_FLOAT);
    assert_true(sqlite3_column_double(q, 4) == 0.1);
    assert_int_equal(sqlite3_column_type(q, 5), SQLITE_INTEGER);
    assert_int_equal(sqlite3_column_int64(q, 5), 1);

    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_true(sqlite3_column_int64(q, 0) == INT64_MIN);
    assert_string_equal(sqlite3_column_text(q, 1), "it's \"quoted\", é€😀");
    assert_int_equal(sqlite3_column_type(q, 2), SQLITE_TEXT); /* "" != NULL */
    assert_int_equal(sqlite3_column_bytes(q, 2), 0);
    assert_true(sqlite3_column_int64(q, 3) == INT64_MAX);
    assert_true(sqlite3_column_double(q, 4) == -1.5e300);
    assert_int_equal(sqlite3_column_int64(q, 5), 0);

    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(q, 0), -1);
    assert_string_equal(sqlite3_column_text(q, 1), "CALL_PLACED");
    assert_int_equal(sqlite3_column_type(q, 2), SQLITE_NULL);
    assert_int_equal(sqlite3_column_int64(q, 3), -7);
    assert_true(sqlite3_column_double(q, 4) == 3.0);
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);

    /* WAL mode, as configured. */
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q,
                                        NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal(sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    sqlite3_close(db);

    sl__batch_free(b);
    close_sink(conf, st);
}

static void test_nulls(void **state)
{
    fx *f = *state;
    char err[512] = "";
    void *conf = NULL, *st = NULL;
    const char *kv[] = {"path", f->db, "table", "t", NULL};
    assert_int_equal(open_sink(f, kv, &conf, &st, err, sizeof err), 0);
    sl_batch *b = sl__batch_new(f->schema, 4);
    set_row(b, 0, 5, "A", "a", 1, 1.0, true);
    for (int c = 0; c < NCOLS; c++)
        b->cols[c].valid[0] = 0;
    set_row(b, 1, 6, "B", "b", 2, NAN, true); /* NaN: SQLite keeps NULL */
    assert_int_equal(sl__sink_sqlite.write(st, b, err, sizeof err), 0);
    assert_int_equal(sl__sink_sqlite.flush(st, err, sizeof err), 0);
    close_sink(conf, st);

    sqlite3 *db = reader(f);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT * FROM t ORDER BY rowid",
                                        -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    for (int c = 0; c < NCOLS; c++)
        assert_int_equal(sqlite3_column_type(q, c), SQLITE_NULL);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(q, 0), 6);
    assert_int_equal(sqlite3_column_type(q, C_AVG), SQLITE_NULL);
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    sqlite3_close(db);
    sl__batch_free(b);
}

static void test_upsert_replaces_row(void **state)
{
    fx *f = *state;
    char err[512] = "";
    void *conf = NULL, *st = NULL;
    const char *kv[] = {"path", f->db, "table", "agg", "mode", "upsert",
                        "key", "window_start, event_type", NULL};
    assert_int_equal(open_sink(f, kv, &conf, &st, err, sizeof err), 0);
    sl_batch *b = sl__batch_new(f->schema, 4);
    set_row(b, 0, 60000, "SMS_SENT", "north", 5, 1.0, true);
    set_row(b, 1, 60000, "CALL_PLACED", "north", 9, 2.0, true);
    assert_int_equal(sl__sink_sqlite.write(st, b, err, sizeof err), 0);
    assert_int_equal(sl__sink_sqlite.flush(st, err, sizeof err), 0);

    sl__batch_clear(b);
    set_row(b, 0, 60000, "SMS_SENT", NULL, 7, 2.5, false); /* replaces */
    set_row(b, 1, 120000, "SMS_SENT", "south", 1, 0.5, true);
    assert_int_equal(sl__sink_sqlite.write(st, b, err, sizeof err), 0);
    assert_int_equal(sl__sink_sqlite.flush(st, err, sizeof err), 0);
    close_sink(conf, st);

    sqlite3 *db = reader(f);
    assert_int_equal(count_rows(db, "agg"), 3);
    sqlite3_stmt *q;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT area, events, avg_s, ok FROM agg "
                               "WHERE window_start = 60000 AND "
                               "event_type = 'SMS_SENT'", -1, &q, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_type(q, 0), SQLITE_NULL);
    assert_int_equal(sqlite3_column_int64(q, 1), 7);
    assert_true(sqlite3_column_double(q, 2) == 2.5);
    assert_int_equal(sqlite3_column_int64(q, 3), 0);
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    sqlite3_close(db);
    sl__batch_free(b);

    /* The created table's PRIMARY KEY is the key, so plain inserts of a
     * duplicate fail with a translated error naming table and path. */
    const char *kv2[] = {"path", f->db, "table", "agg", "key",
                         "window_start,event_type", NULL};
    assert_int_equal(open_sink(f, kv2, &conf, &st, err, sizeof err), 0);
    b = sl__batch_new(f->schema, 4);
    set_row(b, 0, 180000, "SMS_SENT", "east", 3, 1.0, true);
    assert_int_equal(sl__sink_sqlite.write(st, b, err, sizeof err), 0);
    assert_int_equal(sl__sink_sqlite.flush(st, err, sizeof err), 0);
    set_row(b, 0, 240000, "SMS_SENT", "east", 3, 1.0, true);
    set_row(b, 1, 60000, "SMS_SENT", "west", 3, 1.0, true);
    assert_int_equal(sl__sink_sqlite.write(st, b, err, sizeof err),
                     SL_ESQLITE);
    assert_non_null(strstr(err, "UNIQUE"));
    assert_non_null(strstr(err, "\"agg\""));
    assert_non_null(strstr(err, f->db));
    /* Failed: later calls repeat the error; close rolls back the open
     * transaction (the 240000 row), keeping what flush committed. */
    assert_int_equal(sl__sink_sqlite.flush(st, err, sizeof err), SL_ESQLITE);
    close_sink(conf, st);
    db = reader(f);
    assert_int_equal(count_rows(db, "agg"), 4);
    sqlite3_close(db);
    sl__batch_free(b);
}

static void test_existing_table_validated(void **state)
{
    fx *f = *state;
    char err[512] = "";
    void *conf = NULL, *st = NULL;
    /* create the database the sink would write to, by hand */
    const char *kv0[] = {"path", f->db, "table", "first", NULL};
    assert_int_equal(open_sink(f, kv0, &conf, &st, err, sizeof err), 0);
    close_sink(conf, st);

    exec_sql(f->db, "CREATE TABLE wrongtype (window_start INTEGER, "
                    "event_type TEXT, area VARCHAR(20), events TEXT, "
                    "avg_s DOUBLE, ok BOOLEAN)");
    const char *kv1[] = {"path", f->db, "table", "wrongtype", NULL};
    assert_int_equal(open_sink(f, kv1, &conf, &st, err, sizeof err),
                     SL_EINVAL);
    assert_non_null(strstr(err, "\"wrongtype\""));
    assert_non_null(strstr(err, "\"events\""));
    assert_non_null(strstr(err, "TEXT"));

    exec_sql(f->db, "CREATE TABLE missing (window_start INTEGER, "
                    "event_type TEXT, events INTEGER, avg_s REAL, ok INT)");
    const char *kv2[] = {"path", f->db, "table", "missing", NULL};
    assert_int_equal(open_sink(f, kv2, &conf, &st, err, sizeof err),
                     SL_EINVAL);
    assert_non_null(strstr(err, "\"missing\""));
    assert_non_null(strstr(err, "\"area\""));

    /* Compatible declared types and an extra nullable column are fine. */
    exec_sql(f->db, "CREATE TABLE compatible (id INTEGER PRIMARY KEY, "
                    "window_start DATETIME, event_type VARCHAR(16), "
                    "area TEXT, events BIGINT, avg_s FLOAT, ok BOOLEAN, "
                    "note TEXT)");
    const char *kv3[] = {"path", f->db, "table", "compatible", "create",
                         "false", NULL};
    assert_int_equal(open_sink(f, kv3, &conf, &st, err, sizeof err), 0);
    close_sink(conf, st);

    /* create=false and no table */
    const char *kv4[] = {"path", f->db, "table", "nope", "create", "false",
                         NULL};
    assert_int_equal(open_sink(f, kv4, &conf, &st, err, sizeof err),
                     SL_EINVAL);
    assert_non_null(strstr(err, "\"nope\""));

    /* upsert whose key is not a constraint of the existing table */
    const char *kv5[] = {"path", f->db, "table", "compatible", "mode",
                         "upsert", "key", "event_type", NULL};
    assert_int_equal(open_sink(f, kv5, &conf, &st, err, sizeof err),
                     SL_ESQLITE);
    assert_non_null(strstr(err, "\"compatible\""));
    assert_non_null(strstr(err, "PRIMARY KEY"));
}

/* A failed (or cancelled) job rolls back what was not flushed. */
static void test_failed_job_rolls_back(void **state)
{
    fx *f = *state;
    char err[512] = "";
    void *conf = NULL, *st = NULL;
    sl_job *job = sl_job_new(err, sizeof err);
    sl__ctx ctx = tu_ctx();
    ctx.job = job;
    ctx.delivery = SL__AT_LEAST_ONCE;
    const char *kv[] = {"path", f->db, "table", "t", NULL};
    assert_int_equal(sl__sink_sqlite.configure(&conf, kv, f->schema, err,
                                               sizeof err), 0);
    assert_int_equal(sl__sink_sqlite.open(&st, conf, f->schema, &ctx, err,
                                          sizeof err), 0);
    sl_batch *b = sl__batch_new(f->schema, 2);
    set_row(b, 0, 1, "A", "a", 1, 1.0, true);
    assert_int_equal(sl__sink_sqlite.write(st, b, err, sizeof err), 0);
    assert_int_equal(sl__sink_sqlite.flush(st, err, sizeof err), 0);
    assert_int_equal(sl__sink_sqlite.write(st, b, err, sizeof err), 0);
    sl__job_fail(job, SL_ECANCELED, "job: cancelled");
    close_sink(conf, st);
    sqlite3 *db = reader(f);
    assert_int_equal(count_rows(db, "t"), 1);
    sqlite3_close(db);

    /* without a failure, close is the final flush */
    sl_job_free(job);
    assert_int_equal(open_sink(f, kv, &conf, &st, err, sizeof err), 0);
    assert_int_equal(sl__sink_sqlite.write(st, b, err, sizeof err), 0);
    close_sink(conf, st);
    db = reader(f);
    assert_int_equal(count_rows(db, "t"), 2);
    sqlite3_close(db);
    sl__batch_free(b);
}

static void test_conf_errors(void **state)
{
    fx *f = *state;
    char err[512] = "";
    void *conf = NULL;
    const char *bad_key[] = {"path", f->db, "table", "t", "tabel", "x", NULL};
    assert_int_equal(sl__sink_sqlite.configure(&conf, bad_key, f->schema, err,
                                               sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "'tabel'"));

    const char *no_table[] = {"path", f->db, NULL};
    assert_int_equal(sl__sink_sqlite.configure(&conf, no_table, f->schema,
                                               err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "'table'"));

    const char *bad_ident[] = {"path", f->db, "table", "t; DROP x", NULL};
    assert_int_equal(sl__sink_sqlite.configure(&conf, bad_ident, f->schema,
                                               err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "'table'"));

    const char *bad_mode[] = {"path", f->db, "table", "t", "mode", "merge",
                              NULL};
    assert_int_equal(sl__sink_sqlite.configure(&conf, bad_mode, f->schema,
                                               err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "'mode'"));

    const char *no_key[] = {"path", f->db, "table", "t", "mode", "upsert",
                            NULL};
    assert_int_equal(sl__sink_sqlite.configure(&conf, no_key, f->schema, err,
                                               sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "'key'"));

    const char *bad_col[] = {"path", f->db, "table", "t", "key", "ws,area",
                             NULL};
    assert_int_equal(sl__sink_sqlite.configure(&conf, bad_col, f->schema, err,
                                               sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "'ws'"));
    assert_null(conf);
}

/* ---- exactly-once -------------------------------------------------------- */
/* The rows a query returns as text: one line per row, columns separated by
 * '|', NULL as "~". Tables are compared with it byte for byte. */
static char *dump(const char *db_path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(1, cap);
    assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY,
                                     NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    while (sqlite3_step(q) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(q); c++) {
            const char *v = sqlite3_column_type(q, c) == SQLITE_NULL
                                ? "~"
                                : (const char *)sqlite3_column_text(q, c);
            len += (size_t)snprintf(out + len, cap - len, "%s%s",
                                    c ? "|" : "", v);
            assert_true(len < cap);
        }
        len += (size_t)snprintf(out + len, cap - len, "\n");
        assert_true(len < cap);
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    return out;
}

static int64_t query_int(const char *db_path, const char *sql)
{
    char *s = dump(db_path, sql);
    int64_t v = s[0] ? strtoll(s, NULL, 10) : -1;
    free(s);
    return v;
}

#define TABLE_ROWS "SELECT * FROM results ORDER BY rowid"
#define STAGED_COUNT "SELECT count(*) FROM results__staged"
#define POISON_COUNT                                                          \
    "SELECT count(*) FROM results WHERE area LIKE 'POISON%'"
#define MARKER                                                                \
    "SELECT epoch FROM sluice_epochs WHERE job = 'j1' AND sink = 'results' " \
    "AND task = 0"

static void must(int rc, const char *what, const char *err)
{
    if (rc)
        fail_msg("%s: %s (%s)", what, err, sl_strerror(rc));
}

/* The rows of epoch e, the same in every run. Keys (window_start,
 * event_type) repeat across epochs, so in upsert mode later epochs
 * overwrite earlier rows. A poisoned epoch stands for what a crashed run
 * wrote in an epoch that then aborted: other values, and one key no real
 * epoch has, so that a leak shows in the final table. */
static sl_batch *epoch_batch(const sl_schema *s, uint64_t e, bool poison)
{
    sl_batch *b = sl__batch_new(s, 8);
    for (uint32_t i = 0; i < 4; i++) {
        char area[32];
        snprintf(area, sizeof area, "%s-%llu-%u", poison ? "POISON" : "a",
                 (unsigned long long)e, i);
        set_row(b, i, (int64_t)((e + i) % 5) * 60000,
                i % 2 ? "SMS_SENT" : "CALL_PLACED", area,
                (int64_t)(e * 10 + i), (double)e + i / 4.0, (e + i) % 2);
    }
    if (poison)
        set_row(b, 4, 999 * 60000, "SMS_SENT", "POISON", -1, -1.0, false);
    return b;
}

static void eo_write(const fx *f, void *st, uint64_t e, bool poison)
{
    char err[512] = "";
    sl_batch *b = epoch_batch(f->schema, e, poison);
    must(sl__sink_sqlite.write(st, b, err, sizeof err), "write", err);
    sl__batch_free(b);
}

static void eo_precommit(void *st, uint64_t e)
{
    char err[512] = "";
    must(sl__sink_sqlite.precommit(st, e, err, sizeof err), "precommit", err);
}

static void eo_commit(void *st, uint64_t e)
{
    char err[512] = "";
    must(sl__sink_sqlite.commit(st, e, err, sizeof err), "commit", err);
}

static void eo_recover(void *st, uint64_t e)
{
    char err[512] = "";
    must(sl__sink_sqlite.recover(st, e, err, sizeof err), "recover", err);
}

enum { NEPOCHS = 5 };

typedef struct {
    char db[160];
    const char *kv[12];
} eo_target;

static void eo_target_init(eo_target *t, const fx *f, const char *name,
                           bool upsert)
{
    const char *kv[] = {"path", t->db, "table", "results", "mode",
                        upsert ? "upsert" : "insert", "key",
                        "window_start,event_type", NULL};
    snprintf(t->db, sizeof t->db, "%s/%s.db", f->dir, name);
    memcpy(t->kv, kv, sizeof kv);
    if (!upsert)
        t->kv[6] = NULL; /* insert: no key, so replayed rows would show */
}

static void *eo_open(fx *f, const eo_target *t, void **conf)
{
    char err[512] = "";
    void *st = NULL;
    f->delivery = SL__EXACTLY_ONCE;
    f->job_name = "j1";
    must(open_sink(f, t->kv, conf, &st, err, sizeof err), "open", err);
    return st;
}

/* Epochs from..NEPOCHS as the runtime drives them: commit(e) arrives late,
 * after precommit(e + 1), and the end of input commits the last one. */
static void eo_run(fx *f, void *st, uint64_t from)
{
    for (uint64_t e = from; e <= NEPOCHS; e++) {
        eo_write(f, st, e, false);
        eo_precommit(st, e);
        if (e > from)
            eo_commit(st, e - 1);
    }
    eo_commit(st, NEPOCHS);
}

/* The table a run without failures leaves. */
static char *eo_reference(fx *f, bool upsert)
{
    eo_target t;
    void *conf;
    eo_target_init(&t, f, upsert ? "ref-upsert" : "ref-insert", upsert);
    void *st = eo_open(f, &t, &conf);
    eo_run(f, st, 1);
    close_sink(conf, st);
    assert_int_equal(query_int(t.db, STAGED_COUNT), 0);
    assert_int_equal(query_int(t.db, MARKER), NEPOCHS);
    return dump(t.db, TABLE_ROWS);
}

/* Rows are staged, invisible until their epoch commits; a late commit
 * publishes every precommitted epoch up to it; commits repeat harmlessly;
 * the marker follows. */
static void test_eo_commit_publishes_whole_epochs(void **state)
{
    fx *f = *state;
    eo_target t;
    void *conf;
    char err[512] = "";
    eo_target_init(&t, f, "seq", false);
    void *st = eo_open(f, &t, &conf);

    eo_write(f, st, 1, false);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results"), 0);
    must(sl__sink_sqlite.flush(st, err, sizeof err), "flush", err);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results"), 0);
    assert_int_equal(query_int(t.db, STAGED_COUNT), 4);
    eo_precommit(st, 1);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results"), 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results__staged "
                                     "WHERE sluice_epoch = 1 AND "
                                     "sluice_job = 'j1' AND "
                                     "sluice_task = 0"), 4);
    eo_write(f, st, 2, false);
    eo_precommit(st, 2);
    eo_commit(st, 1);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results"), 4);
    assert_int_equal(query_int(t.db, "SELECT min(events) FROM results"), 10);
    assert_int_equal(query_int(t.db, "SELECT max(events) FROM results"), 13);
    assert_int_equal(query_int(t.db, MARKER), 1);
    eo_commit(st, 1); /* repeated: nothing changes */
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results"), 4);

    eo_write(f, st, 3, false);
    eo_precommit(st, 3);
    eo_write(f, st, 4, false); /* staged, never precommitted */
    eo_commit(st, 3);          /* commit(2) never came: 3 covers it */
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results"), 12);
    assert_int_equal(query_int(t.db, "SELECT max(events) FROM results"), 33);
    assert_int_equal(query_int(t.db, MARKER), 3);
    eo_commit(st, 2); /* late and covered: no-op */
    eo_commit(st, 3);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results"), 12);
    assert_true(query_int(t.db, "SELECT committed_at FROM sluice_epochs") >
                1600000000000);

    /* Protocol errors are refused without failing the instance. */
    assert_int_equal(sl__sink_sqlite.commit(st, 4, err, sizeof err),
                     SL_ESTATE);
    assert_non_null(strstr(err, "commit(4)"));
    assert_int_equal(sl__sink_sqlite.precommit(st, 3, err, sizeof err),
                     SL_ESTATE);
    assert_int_equal(sl__sink_sqlite.recover(st, 3, err, sizeof err),
                     SL_ESTATE);
    eo_precommit(st, 4);
    eo_commit(st, 4);
    close_sink(conf, st);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results"), 16);
    assert_int_equal(query_int(t.db, STAGED_COUNT), 0);
    assert_int_equal(query_int(t.db, MARKER), 4);
}

/* A crash after precommit(3) whose checkpoint completed but whose commit
 * never came, with epoch 4 (poisoned) partly staged and durable, partly in
 * an open transaction. Restart from checkpoint 3: recover publishes 3,
 * discards 4, and the replay of 4..5 ends in the reference table. */
static void crash_after_complete_checkpoint(fx *f, bool upsert)
{
    char *ref = eo_reference(f, upsert);
    eo_target t;
    void *conf;
    eo_target_init(&t, f, upsert ? "crash-a-upsert" : "crash-a-insert",
                   upsert);
    void *st = eo_open(f, &t, &conf);
    char err[512] = "";
    for (uint64_t e = 1; e <= 3; e++) {
        eo_write(f, st, e, false);
        eo_precommit(st, e);
        if (e > 1)
            eo_commit(st, e - 1);
    }
    eo_write(f, st, 4, true);
    must(sl__sink_sqlite.flush(st, err, sizeof err), "flush", err);
    eo_write(f, st, 4, true);
    close_sink(conf, st); /* the crash: commit(3) never comes */
    /* epochs 1 and 2, whose keys differ */
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results"), 8);
    assert_int_equal(query_int(t.db, MARKER), 2);

    st = eo_open(f, &t, &conf);
    eo_recover(st, 3);
    assert_int_equal(query_int(t.db, STAGED_COUNT), 0);
    assert_int_equal(query_int(t.db, POISON_COUNT), 0);
    assert_int_equal(query_int(t.db, MARKER), 3);
    eo_run(f, st, 4);
    close_sink(conf, st);
    char *got = dump(t.db, TABLE_ROWS);
    assert_string_equal(got, ref);
    assert_int_equal(query_int(t.db, STAGED_COUNT), 0);
    free(got);
    free(ref);
}

static void test_eo_crash_after_complete_checkpoint_insert(void **state)
{
    crash_after_complete_checkpoint(*state, false);
}

static void test_eo_crash_after_complete_checkpoint_upsert(void **state)
{
    crash_after_complete_checkpoint(*state, true);
}

/* Epoch 3 was precommitted (poisoned) but its checkpoint never completed:
 * restart from 2 aborts it, and the replay of 3..5 ends in the reference. */
static void crash_before_checkpoint_completes(fx *f, bool upsert)
{
    char *ref = eo_reference(f, upsert);
    eo_target t;
    void *conf;
    eo_target_init(&t, f, upsert ? "crash-b-upsert" : "crash-b-insert",
                   upsert);
    void *st = eo_open(f, &t, &conf);
    eo_write(f, st, 1, false);
    eo_precommit(st, 1);
    eo_write(f, st, 2, false);
    eo_precommit(st, 2);
    eo_commit(st, 1);
    eo_write(f, st, 3, true);
    eo_precommit(st, 3);
    eo_commit(st, 2);
    eo_write(f, st, 4, true);
    close_sink(conf, st);

    st = eo_open(f, &t, &conf);
    eo_recover(st, 2);
    assert_int_equal(query_int(t.db, STAGED_COUNT), 0);
    assert_int_equal(query_int(t.db, POISON_COUNT), 0);
    eo_run(f, st, 3);
    close_sink(conf, st);
    char *got = dump(t.db, TABLE_ROWS);
    assert_string_equal(got, ref);
    free(got);
    free(ref);
}

static void test_eo_crash_before_checkpoint_completes_insert(void **state)
{
    crash_before_checkpoint_completes(*state, false);
}

static void test_eo_crash_before_checkpoint_completes_upsert(void **state)
{
    crash_before_checkpoint_completes(*state, true);
}

/* The same as crash_after_complete_checkpoint, with a real crash: a child
 * process killed with SIGKILL inside an open staging transaction. */
static void crash_kill9(fx *f, bool upsert)
{
    char *ref = eo_reference(f, upsert);
    eo_target t;
    eo_target_init(&t, f, upsert ? "kill-upsert" : "kill-insert", upsert);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* No cmocka asserts here: any failure exits instead of dying. */
        sl__ctx ctx = tu_ctx();
        char err[512];
        void *conf, *st;
        sl_batch *b;
        ctx.job_name = "j1";
        if (sl__sink_sqlite.configure(&conf, t.kv, f->schema, err,
                                      sizeof err) ||
            sl__sink_sqlite.open(&st, conf, f->schema, &ctx, err, sizeof err))
            _exit(2);
        for (uint64_t e = 1; e <= 4; e++) {
            b = epoch_batch(f->schema, e, e == 4);
            if (sl__sink_sqlite.write(st, b, err, sizeof err))
                _exit(3);
            if (e == 4)
                raise(SIGKILL); /* mid-epoch, transaction open */
            if (sl__sink_sqlite.precommit(st, e, err, sizeof err) ||
                (e > 1 && e < 3 &&
                 sl__sink_sqlite.commit(st, e - 1, err, sizeof err)))
                _exit(4);
            sl__batch_free(b);
        }
        _exit(5);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    void *conf;
    void *st = eo_open(f, &t, &conf);
    eo_recover(st, 3);
    assert_int_equal(query_int(t.db, STAGED_COUNT), 0);
    eo_run(f, st, 4);
    close_sink(conf, st);
    char *got = dump(t.db, TABLE_ROWS);
    assert_string_equal(got, ref);
    free(got);
    free(ref);
}

static void test_eo_kill9_insert(void **state) { crash_kill9(*state, false); }
static void test_eo_kill9_upsert(void **state) { crash_kill9(*state, true); }

/* A run that does not begin with recover() is new: it discards what an
 * earlier run staged (no checkpoint of it completed) and the earlier run's
 * marker, so its own epoch 1 is not mistaken for one already published.
 * Other jobs' staged rows are left alone. */
static void test_eo_new_run_discards_staged(void **state)
{
    fx *f = *state;
    char *ref = eo_reference(f, false);
    eo_target t;
    void *conf;
    eo_target_init(&t, f, "fresh", false);

    f->job_name = "other";
    f->delivery = SL__EXACTLY_ONCE;
    void *st = NULL;
    char err[512] = "";
    must(open_sink(f, t.kv, &conf, &st, err, sizeof err), "open", err);
    eo_write(f, st, 7, false);
    eo_precommit(st, 1);
    close_sink(conf, st);

    /* j1: a complete earlier run, then one that crashed before its first
     * checkpoint completed. */
    st = eo_open(f, &t, &conf);
    eo_write(f, st, 1, true);
    eo_precommit(st, 1);
    eo_commit(st, 1);
    eo_write(f, st, 2, true);
    eo_precommit(st, 2);
    eo_commit(st, 2);
    close_sink(conf, st);
    st = eo_open(f, &t, &conf);
    eo_write(f, st, 1, true);
    eo_precommit(st, 1);
    eo_write(f, st, 2, true);
    close_sink(conf, st);
    exec_sql(t.db, "DELETE FROM results"); /* keep only the new run's */

    /* The runtime starts a new run with recover(0), checkpoint 0 being the
     * empty start; insert mode must not take the old marker for a newer
     * checkpoint's. */
    st = eo_open(f, &t, &conf);
    eo_recover(st, 0);
    assert_int_equal(query_int(t.db, MARKER), -1); /* no marker row */
    eo_run(f, st, 1);
    close_sink(conf, st);
    char *got = dump(t.db, TABLE_ROWS);
    assert_string_equal(got, ref);
    free(got);
    free(ref);
    assert_int_equal(query_int(t.db, MARKER), NEPOCHS);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results__staged "
                                     "WHERE sluice_job = 'other'"), 4);
    /* recover(0) right after a complete run: a new run, not an error */
    st = eo_open(f, &t, &conf);
    eo_recover(st, 0);
    assert_int_equal(query_int(t.db, MARKER), -1);
    eo_write(f, st, 1, false);
    eo_precommit(st, 1);
    eo_commit(st, 1);
    close_sink(conf, st);
    assert_int_equal(query_int(t.db, MARKER), 1);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results"),
                     4 * NEPOCHS + 4);
    /* "other" restarts from its checkpoint 1 and publishes its epoch. */
    f->job_name = "other";
    must(open_sink(f, t.kv, &conf, &st, err, sizeof err), "open", err);
    eo_recover(st, 1);
    close_sink(conf, st);
    assert_int_equal(query_int(t.db, STAGED_COUNT), 0);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results "
                                     "WHERE events >= 70"), 4);
}

/* The runtime's epochs need not start at 1 or follow each other: rows are
 * retagged when precommit names another epoch than the one expected. */
static void test_eo_epoch_numbers_from_runtime(void **state)
{
    fx *f = *state;
    eo_target t;
    void *conf;
    eo_target_init(&t, f, "numbers", false);
    void *st = eo_open(f, &t, &conf);
    char err[512] = "";
    eo_write(f, st, 1, false);
    must(sl__sink_sqlite.flush(st, err, sizeof err), "flush", err);
    eo_write(f, st, 2, false);
    eo_precommit(st, 40);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results__staged "
                                     "WHERE sluice_epoch = 40"), 8);
    eo_write(f, st, 3, false);
    eo_precommit(st, 42);
    eo_commit(st, 40);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results"), 8);
    eo_commit(st, 42);
    close_sink(conf, st);
    assert_int_equal(query_int(t.db, "SELECT count(*) FROM results"), 12);
    assert_int_equal(query_int(t.db, MARKER), 42);
}

/* A table that already holds epochs past the checkpoint the job restarts
 * from: inserts would repeat, so insert mode refuses; upserts rewrite the
 * same rows, so upsert mode goes on and lowers the marker. */
static void test_eo_recover_behind_marker(void **state)
{
    fx *f = *state;
    char err[512] = "";
    for (int upsert = 0; upsert <= 1; upsert++) {
        eo_target t;
        void *conf, *st;
        eo_target_init(&t, f, upsert ? "behind-u" : "behind-i", upsert);
        st = eo_open(f, &t, &conf);
        eo_run(f, st, 1);
        close_sink(conf, st);
        char *before = dump(t.db, TABLE_ROWS);

        st = eo_open(f, &t, &conf);
        int rc = sl__sink_sqlite.recover(st, 2, err, sizeof err);
        if (!upsert) {
            assert_int_equal(rc, SL_ECORRUPT);
            assert_non_null(strstr(err, "already holds epochs up to 5"));
            assert_non_null(strstr(err, "checkpoint 2"));
            /* failed: the next call repeats the error */
            assert_int_equal(sl__sink_sqlite.precommit(st, 3, err,
                                                       sizeof err),
                             SL_ECORRUPT);
            close_sink(conf, st);
            assert_int_equal(query_int(t.db, MARKER), NEPOCHS);
        } else {
            must(rc, "recover", err);
            assert_int_equal(query_int(t.db, MARKER), 2);
            eo_run(f, st, 3);
            close_sink(conf, st);
            assert_int_equal(query_int(t.db, MARKER), NEPOCHS);
        }
        char *after = dump(t.db, TABLE_ROWS);
        assert_string_equal(after, before);
        free(before);
        free(after);
    }
}

/* Column names the staging table needs are refused under exactly-once. */
static void test_eo_reserved_column(void **state)
{
    fx *f = *state;
    sl_schema *s = sl_schema_new();
    char err[512] = "";
    void *conf = NULL, *st = NULL;
    sl_schema_add(s, "sluice_epoch", SL_INT64);
    sl__ctx ctx = tu_ctx();
    const char *kv[] = {"path", f->db, "table", "t", NULL};
    assert_int_equal(sl__sink_sqlite.configure(&conf, kv, s, err, sizeof err),
                     0);
    assert_int_equal(sl__sink_sqlite.open(&st, conf, s, &ctx, err,
                                          sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "\"sluice_epoch\" is reserved"));
    /* fine under at-least-once, which stages nothing */
    ctx.delivery = SL__AT_LEAST_ONCE;
    assert_int_equal(sl__sink_sqlite.open(&st, conf, s, &ctx, err,
                                          sizeof err), 0);
    sl__sink_sqlite.close(st);
    sl__sink_sqlite.conf_free(conf);
    sl_schema_free(s);
}

/* At-least-once: rows are visible after each flush, precommit and commit
 * flush, recover does nothing, and no staging or marker table appears. */
static void test_at_least_once_visible_at_flush(void **state)
{
    fx *f = *state;
    char err[512] = "";
    void *conf = NULL, *st = NULL;
    const char *kv[] = {"path", f->db, "table", "results", NULL};
    f->delivery = SL__AT_LEAST_ONCE;
    must(open_sink(f, kv, &conf, &st, err, sizeof err), "open", err);
    must(sl__sink_sqlite.recover(st, 7, err, sizeof err), "recover", err);
    eo_write(f, st, 1, false);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM results"), 0);
    must(sl__sink_sqlite.flush(st, err, sizeof err), "flush", err);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM results"), 4);
    eo_write(f, st, 2, false);
    eo_precommit(st, 8);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM results"), 8);
    eo_write(f, st, 3, false);
    eo_commit(st, 8);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM results"), 12);
    eo_write(f, st, 4, false);
    sl__sink_sqlite.close(st); /* final flush */
    sl__sink_sqlite.conf_free(conf);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM results"), 16);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM sqlite_master "
                                      "WHERE name IN ('results__staged', "
                                      "'sluice_epochs')"), 0);
    assert_true(sl__sink_sqlite.exactly_once);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_insert_read_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nulls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upsert_replaces_row, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_existing_table_validated, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_job_rolls_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_conf_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eo_commit_publishes_whole_epochs,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_eo_crash_after_complete_checkpoint_insert, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_eo_crash_after_complete_checkpoint_upsert, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_eo_crash_before_checkpoint_completes_insert, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_eo_crash_before_checkpoint_completes_upsert, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_eo_kill9_insert, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_eo_kill9_upsert, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_eo_new_run_discards_staged,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_eo_epoch_numbers_from_runtime,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_eo_recover_behind_marker, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_eo_reserved_column, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_at_least_once_visible_at_flush,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
