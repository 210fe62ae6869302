/* test_sqlite_sink.c — the "sqlite" sink: table creation and validation,
 * inserts, upserts, NULLs, the transaction per flush, configuration errors;
 * results are read back with the sqlite3 API and compared exactly. */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

extern const sl__sink_vt sl__sink_sqlite;

/* ---- fixtures ------------------------------------------------------------ */
typedef struct {
    char dir[64];
    char db[128];
    sl_schema *schema;
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
