/* test_sinkconf.c — the table sinks' `key` option: names to column
 * indices in the given order, blanks around names ignored, and every
 * refusal naming the sink, the option and the column. */
#include "testutil.h"

#include "io/sinkconf.h"

static sl_schema *schema(void)
{
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "window_start", SL_TIMESTAMP);
    sl_schema_add(s, "area", SL_STRING);
    sl_schema_add(s, "events", SL_INT64);
    return s;
}

static void test_key_columns(void **state)
{
    (void)state;
    sl_schema *s = schema();
    int cols[SL_MAX_COLS], n = -1;
    char err[256];
    assert_int_equal(sl__sink_key_cols("sqlite sink", " area ,window_start", s, cols, &n,
                                       err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(cols[0], 1);
    assert_int_equal(cols[1], 0);
    /* no key and no upsert: fine, no columns */
    assert_int_equal(sl__sink_key_conf("sqlite sink", NULL, false, s, cols, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    sl_schema_free(s);
}

static void test_refusals(void **state)
{
    (void)state;
    sl_schema *s = schema();
    int cols[SL_MAX_COLS], n;
    char err[256];
    assert_int_equal(sl__sink_key_cols("postgres sink", "area,nope", s, cols, &n, err, sizeof err),
                     SL_EINVAL);
    assert_string_equal(err, "postgres sink: 'key' column 'nope' is not a column of the stream");
    assert_int_equal(sl__sink_key_cols("sqlite sink", "area, area", s, cols, &n, err, sizeof err),
                     SL_EINVAL);
    assert_string_equal(err, "sqlite sink: 'key' lists column 'area' twice");
    assert_int_equal(sl__sink_key_cols("sqlite sink", "area,,events", s, cols, &n, err, sizeof err),
                     SL_EINVAL);
    assert_string_equal(err, "sqlite sink: 'key' must list column names separated by commas, "
                             "got 'area,,events'");
    assert_int_equal(sl__sink_key_conf("postgres sink", "", true, s, cols, &n, err, sizeof err),
                     SL_EINVAL);
    assert_string_equal(err, "postgres sink: mode 'upsert' needs 'key' (the result's key columns, "
                             "comma-separated)");
    sl_schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_columns),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
