/* test_table_overlay.c — refreshed lookup tables without a server: the
 * overlay of changed rows (state/table.c) is probed before the loaded
 * table by the lookup join, sl__table_changes counts only rows that
 * differ, replacing an overlay keeps the old one alive; and the PostgreSQL
 * connectors' text helpers (io/pg_conn.c): names, quoting, type checks. */
#include "testutil.h"

#include "io/pg.h"
#include "ops/privacy.h"
#include "state/state.h"

static sl_schema *g_cells; /* cell_id BIGINT, area VARCHAR, pop BIGINT */
static sl_schema *g_events; /* ts BIGINT, cell_id BIGINT */

typedef struct { int64_t key; const char *area; int64_t pop; } cell;

static sl_table *table_of(const cell *c, uint32_t n)
{
    sl_batch *b = sl__batch_new(g_cells, n);
    for (uint32_t i = 0; i < n; i++) {
        sl_batch_i64(b, 0)[i] = c[i].key;
        if (c[i].area) sl_batch_set_str(b, 1, i, c[i].area, strlen(c[i].area));
        else sl_batch_valid(b, 1)[i] = 0;
        sl_batch_i64(b, 2)[i] = c[i].pop;
    }
    sl_batch_set_len(b, n);
    sl_table *t = sl__table_new(g_cells, 0);
    char err[256] = "";
    assert_int_equal(sl__table_append(t, b, err, sizeof err), 0);
    sl__batch_free(b);
    return t;
}

static void expect_row(const sl_batch *o, uint32_t i, const char *area, int64_t pop)
{
    if (!area) {
        assert_int_equal(sl_batch_valid(o, 2)[i], 0);
        return;
    }
    sl_str s = sl_batch_str(o, 2)[i];
    assert_int_equal(s.len, strlen(area));
    assert_memory_equal(s.ptr, area, s.len);
    assert_int_equal(sl_batch_i64(o, 3)[i], pop);
}

static void test_overlay_wins(void **state)
{
    (void)state;
    const cell base[] = {{1, "north", 10}, {2, "south", 20}, {3, "east", 30}};
    sl_table *t = table_of(base, 3);
    /* read again: one row unchanged, one changed (NULL area), one new */
    const cell fresh_rows[] = {{1, "north", 10}, {2, NULL, 21}, {5, "west", 50}};
    sl_table *fresh = table_of(fresh_rows, 3);
    assert_int_equal(sl__table_changes(fresh, t), 2);
    assert_null(sl__table_overlay(t));
    sl_table *ov = sl__table_new(g_cells, 0);
    char err[256] = "";
    assert_int_equal(sl__table_append_table(ov, fresh, err, sizeof err), 0);
    sl__table_set_overlay(t, ov);
    assert_ptr_equal(sl__table_overlay(t), ov);
    assert_int_equal(sl__table_changes(fresh, t), 0); /* nothing new now */
    sl_table_free(fresh);

    /* a second overlay replaces the first; the first stays allocated */
    const cell more[] = {{3, "far east", 31}};
    sl_table *fresh2 = table_of(more, 1);
    assert_int_equal(sl__table_changes(fresh2, t), 1);
    sl_table *ov2 = sl__table_new(g_cells, 0);
    assert_int_equal(sl__table_append_table(ov2, sl__table_overlay(t), err, sizeof err), 0);
    assert_int_equal(sl__table_append_table(ov2, fresh2, err, sizeof err), 0);
    sl__table_set_overlay(t, ov2);
    sl_table_free(fresh2);
    const sl_batch *ch = NULL;
    uint32_t row = 0;
    assert_int_equal(sl__table_find_i64(ov, 5, &ch, &row), 1); /* retired, alive */
    sl_table_free(t); /* frees the overlays too (ASan checks) */
}

static void test_join_through_overlay(void **state)
{
    (void)state;
    const cell base[] = {{1, "north", 10}, {2, "south", 20}, {3, "east", 30}};
    sl_table *t = table_of(base, 3);
    const cell changed[] = {{2, NULL, 21}, {5, "west", 50}};
    sl_table *ov = table_of(changed, 2);
    sl__table_set_overlay(t, ov);
    sl__lookup_conf conf = {.key_col = 1, .table = t, .ncols = 2, .tcols = {1, 2}};
    sl_schema *out = sl__schema_copy(g_events);
    sl_schema_add(out, "area", SL_STRING);
    sl_schema_add(out, "pop", SL_INT64);
    sl__opinfo info = {.in = g_events, .out = out, .time_col = 0, .batch_cap = 8};
    sl__ctx ctx = tu_ctx();
    void *st = NULL;
    char err[256] = "";
    assert_int_equal(sl__op_lookup.open(&st, &conf, &info, &ctx, err, sizeof err), 0);
    tu_sink sink;
    tu_sink_init(&sink, 8);
    const int64_t cells[] = {1, 2, 3, 5, 9};
    sl_batch *b = sl__batch_new(g_events, 5);
    for (uint32_t i = 0; i < 5; i++) {
        sl_batch_i64(b, 0)[i] = i;
        sl_batch_i64(b, 1)[i] = cells[i];
    }
    sl_batch_set_len(b, 5);
    assert_int_equal(sl__op_lookup.batch(st, b, &sink.out), 0);
    assert_int_equal(sink.n, 1);
    sl_batch *o = sink.got[0];
    expect_row(o, 0, "north", 10);  /* only in the loaded table */
    assert_int_equal(sl_batch_valid(o, 2)[1], 0); /* the overlay's NULL area wins */
    assert_int_equal(sl_batch_i64(o, 3)[1], 21);
    expect_row(o, 2, "east", 30);
    expect_row(o, 3, "west", 50);   /* only in the overlay: a new row */
    assert_int_equal(sl_batch_valid(o, 2)[4], 0); /* nowhere */
    assert_int_equal(sl_batch_valid(o, 3)[4], 0);
    sl__batch_free(o);
    sl__op_lookup.close(st);
    sl_schema_free(out);
    sl_table_free(t);
}

static void test_pg_text(void **state)
{
    (void)state;
    assert_true(sl__pg_is_name("age_distribution"));
    assert_true(sl__pg_is_name("stats.age_distribution"));
    assert_false(sl__pg_is_name("1abc"));
    assert_false(sl__pg_is_name("a;drop table x"));
    assert_false(sl__pg_is_name("a.b.c"));
    assert_false(sl__pg_is_name(""));
    sl__pg_buf b = {0};
    sl__pg_qname(&b, "stats.t");
    sl__pg_adds(&b, " ");
    sl__pg_ident(&b, "we\"ird");
    assert_string_equal(b.p, "\"stats\".\"t\" \"we\"\"ird\"");
    sl__pg_buf_free(&b);
    assert_true(sl__pg_type_fits(SL_INT64, "bigint"));
    assert_false(sl__pg_type_fits(SL_INT64, "integer")); /* would overflow */
    assert_false(sl__pg_type_fits(SL_INT64, "text"));
    assert_true(sl__pg_type_fits(SL_STRING, "character varying(5)"));
    assert_true(sl__pg_type_fits(SL_TIMESTAMP, "timestamp with time zone"));
    assert_false(sl__pg_type_fits(SL_FLOAT64, "real")); /* loses precision */
    assert_string_equal(sl__pg_type(SL_TIMESTAMP), "timestamp with time zone");
}

static void test_refresh_opts(void **state)
{
    (void)state;
    sl__refresh_opts o;
    const char **kv = NULL;
    char err[256] = "";
    const char *const conf[] = {"dsn", "", "table", "subscribers", "refresh.interval.ms",
                                "500", "refresh.column", "changed", "where", "x > 1", NULL};
    assert_int_equal(sl__refresh_opts_parse("postgres", conf, &o, &kv, err, sizeof err), 0);
    assert_int_equal(o.interval_ms, 500);
    assert_string_equal(o.column, "changed");
    assert_string_equal(o.where, "x > 1");
    assert_string_equal(kv[0], "dsn");
    assert_string_equal(kv[2], "table");
    assert_string_equal(kv[4], "where"); /* the source still gets it */
    assert_null(kv[6]);
    free(kv);
    const char *const file[] = {"path", "x.csv", "refresh.interval.ms", "500", NULL};
    assert_int_equal(sl__refresh_opts_parse("file", file, &o, &kv, err, sizeof err),
                     SL_EINVAL);
    assert_non_null(strstr(err, "'refresh.interval.ms' needs connector 'postgres'"));
    const char *const bad[] = {"refresh.column", "a;b", NULL};
    assert_int_equal(sl__refresh_opts_parse("postgres", bad, &o, &kv, err, sizeof err),
                     SL_EINVAL);
    assert_non_null(strstr(err, "'refresh.column' must be a column name"));
}

int main(void)
{
    g_cells = sl_schema_new();
    sl_schema_add(g_cells, "cell_id", SL_INT64);
    sl_schema_add(g_cells, "area", SL_STRING);
    sl_schema_add(g_cells, "pop", SL_INT64);
    g_events = sl_schema_new();
    sl_schema_add(g_events, "ts", SL_INT64);
    sl_schema_add(g_events, "cell_id", SL_INT64);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overlay_wins),
        cmocka_unit_test(test_join_through_overlay),
        cmocka_unit_test(test_pg_text),
        cmocka_unit_test(test_refresh_opts),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sl_schema_free(g_cells);
    sl_schema_free(g_events);
    return rc;
}
