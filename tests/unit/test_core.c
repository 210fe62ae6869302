/* test_core.c — schemas, batches, arenas, configuration tables, time
 * parsing and the bounded exchange channel. */
#include "testutil.h"
#include "core/exchange.h"

static void schema_basics(void **st)
{
    (void)st;
    sl_schema *s = sl_schema_new();
    assert_int_equal(sl_schema_add(s, "ts", SL_TIMESTAMP), 0);
    assert_int_equal(sl_schema_add(s, "name", SL_STRING), 1);
    assert_int_equal(sl_schema_add(s, "ts", SL_INT64), SL_EINVAL); /* duplicate */
    assert_int_equal(sl_schema_find(s, "name"), 1);
    assert_int_equal(sl_schema_find(s, "nope"), -1);
    assert_int_equal(sl_schema_set_domain(s, 0, (const char *[]){"a", NULL}), SL_EINVAL);
    assert_int_equal(sl_schema_set_domain(s, 1, (const char *[]){"a", "bb", NULL}), 0);
    assert_int_equal(sl__schema_domain_find(s, 1, "bb", 2), 1);
    assert_int_equal(sl__schema_domain_find(s, 1, "b", 1), -1);
    sl_schema *c = sl__schema_copy(s);
    assert_int_equal(c->n, 2);
    assert_int_equal(sl__schema_domain_find(c, 1, "a", 1), 0);
    sl_schema_free(c);
    sl_schema_free(s);
}

static void batch_append_and_accounting(void **st)
{
    (void)st;
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "x", SL_INT64);
    sl_schema_add(s, "s", SL_STRING);
    sl_schema_add(s, "b", SL_BOOL);
    uint64_t live0;
    sl__batch_stats(&live0, NULL, NULL);
    sl_batch *a = sl__batch_new(s, 8), *b = sl__batch_new(s, 8);
    uint64_t live1;
    sl__batch_stats(&live1, NULL, NULL);
    assert_int_equal(live1, live0 + 2);
    for (int i = 0; i < 5; i++) {
        sl_batch_i64(a, 0)[i] = i * 10;
        char buf[8];
        int n = snprintf(buf, sizeof buf, "v%d", i);
        sl_batch_set_str(a, 1, (size_t)i, buf, (size_t)n);
        sl_batch_bool(a, 2)[i] = (uint8_t)(i & 1);
    }
    sl_batch_valid(a, 0)[3] = 0;
    sl_batch_kind(a)[4] = SL_KIND_CANARY;
    sl_batch_set_len(a, 5);
    uint32_t rows[] = {4, 3, 1};
    sl__batch_append(b, a, rows, 3);
    sl__batch_free(a); /* b must own copies of the strings */
    assert_int_equal(b->n, 3);
    assert_int_equal(sl_batch_i64(b, 0)[0], 40);
    assert_int_equal(sl_batch_valid(b, 0)[1], 0);
    assert_int_equal(sl_batch_kind(b)[0], SL_KIND_CANARY);
    assert_int_equal(sl_batch_kind(b)[1], SL_KIND_DATA);
    assert_memory_equal(sl_batch_str(b, 1)[2].ptr, "v1", 2);
    assert_int_equal(sl_batch_bool(b, 2)[2], 1);
    sl__batch_free(b);
    sl__batch_stats(&live1, NULL, NULL);
    assert_int_equal(live1, live0);
    sl_schema_free(s);
}

typedef struct {
    int64_t n;
    char *name;
    bool flag;
    int mode;
} conf_t;

static const sl__conf_def defs[] = {
    {.key = "n", .type = SL_CONF_INT, .def = "5", .min = 1, .max = 10,
     .offset = offsetof(conf_t, n)},
    {.key = "name", .type = SL_CONF_STR, .min = 1, .offset = offsetof(conf_t, name),
     .desc = "a name"},
    {.key = "flag", .type = SL_CONF_BOOL, .def = "false", .offset = offsetof(conf_t, flag)},
    {.key = "mode", .type = SL_CONF_ENUM, .def = "insert", .allowed = "insert|upsert",
     .offset = offsetof(conf_t, mode)},
    {0}};

static void conf_tables(void **st)
{
    (void)st;
    conf_t c;
    char err[256];
    assert_int_equal(sl__conf_apply(defs, &c, (const char *[]){"name", "x", "mode", "upsert", NULL},
                                    "t", NULL, err, sizeof err), 0);
    assert_int_equal(c.n, 5);
    assert_string_equal(c.name, "x");
    assert_int_equal(c.mode, 1);
    sl__conf_free(defs, &c);
    assert_int_equal(sl__conf_apply(defs, &c, (const char *[]){"name", "x", "n", "11", NULL},
                                    "t", NULL, err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "'n'"));
    assert_non_null(strstr(err, "[1, 10]"));
    sl__conf_free(defs, &c);
    assert_int_equal(sl__conf_apply(defs, &c, (const char *[]){"name", "x", "bogus", "1", NULL},
                                    "t", NULL, err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "unknown key 'bogus'"));
    sl__conf_free(defs, &c);
    assert_int_equal(sl__conf_apply(defs, &c, NULL, "t", NULL, err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "'name' is required"));
    sl__conf_free(defs, &c);
    assert_int_equal(sl__conf_apply(defs, &c, (const char *[]){"name", "x", "mode", "delete", NULL},
                                    "t", NULL, err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "insert|upsert"));
    sl__conf_free(defs, &c);
}

static void time_parsing(void **st)
{
    (void)st;
    int64_t v;
    assert_int_equal(sl__parse_ts("1700000000123", 13, &v), 0);
    assert_int_equal(v, 1700000000123LL);
    assert_int_equal(sl__parse_ts("1970-01-01", 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(sl__parse_ts("2026-01-05T10:11:12.345Z", 24, &v), 0);
    assert_int_equal(v, 1767607872345LL);
    assert_int_equal(sl__parse_ts("2026-01-05 10:11:12", 19, &v), 0);
    assert_int_equal(v, 1767607872000LL);
    assert_int_equal(sl__parse_ts("1960-02-29", 10, &v), 0);
    assert_int_equal(v, -310521600000LL);
    assert_int_equal(sl__parse_ts("2026-02-30", 10, &v), SL_EPARSE);
    assert_int_equal(sl__parse_ts("2026-1-05", 9, &v), SL_EPARSE);
    assert_int_equal(sl__parse_ts("abc", 3, &v), SL_EPARSE);
    assert_int_equal(sl__parse_ts("", 0, &v), SL_EPARSE);
    char buf[40];
    sl__format_ts(1767607872345LL, buf, sizeof buf);
    assert_string_equal(buf, "2026-01-05T10:11:12.345Z");
    sl__format_ts(-1, buf, sizeof buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
    assert_int_equal(sl__floor_div(-1, 60000), -1);
    assert_int_equal(sl__floor_div(59999, 60000), 0);
}

static void channel_is_bounded(void **st)
{
    (void)st;
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "x", SL_INT64);
    sl__chan *c = sl__chan_new(2);
    sl__msg m = {.type = SL__MSG_BATCH, .batch = sl__batch_new(s, 4)};
    assert_true(sl__chan_try_push(c, &m));
    m.batch = sl__batch_new(s, 4);
    assert_true(sl__chan_try_push(c, &m));
    sl_batch *third = sl__batch_new(s, 4);
    m.batch = third;
    assert_false(sl__chan_try_push(c, &m)); /* full of batches */
    sl__msg w = {.type = SL__MSG_WATERMARK, .wm = 42};
    assert_true(sl__chan_try_push(c, &w)); /* control still passes */
    sl__msg got;
    assert_true(sl__chan_try_pop(c, &got));
    assert_int_equal(got.type, SL__MSG_BATCH);
    sl__batch_free(got.batch);
    assert_true(sl__chan_try_push(c, &m)); /* room again */
    assert_true(sl__chan_try_pop(c, &got));
    sl__batch_free(got.batch);
    assert_true(sl__chan_try_pop(c, &got));
    assert_int_equal(got.type, SL__MSG_WATERMARK);
    assert_int_equal(got.wm, 42);
    sl__chan_free(c); /* frees the batch still queued */
    sl_schema_free(s);
}

static void error_strings(void **st)
{
    (void)st;
    assert_string_equal(sl_strerror(SL_EINVAL), "invalid argument or configuration");
    assert_string_equal(sl_strerror(0), "success");
    assert_string_equal(sl_strerror(-999), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(schema_basics), cmocka_unit_test(batch_append_and_accounting),
        cmocka_unit_test(conf_tables), cmocka_unit_test(time_parsing),
        cmocka_unit_test(channel_is_bounded), cmocka_unit_test(error_strings)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
