/* test_kanon.c — the k-anonymity operator: small and NULL counts are
 * dropped and counted, order and strings of the survivors are kept, canaries
 * always pass; and the builder's validation. */
#include "testutil.h"

#include <stdio.h>

#include "ops/privacy.h"

static sl_schema *g_in;

static int setup(void **state)
{
    (void)state;
    g_in = sl_schema_new();
    sl_schema_add(g_in, "window_start", SL_TIMESTAMP);
    sl_schema_add(g_in, "area", SL_STRING);
    sl_schema_add(g_in, "subscribers", SL_INT64);
    sl_schema_add(g_in, "share", SL_FLOAT64);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sl_schema_free(g_in);
    return 0;
}

/* counts[i] < 0 = NULL count. */
static sl_batch *make_batch(const int64_t *counts, const uint8_t *kinds,
                            uint32_t n)
{
    sl_batch *b = sl__batch_new(g_in, 16);
    for (uint32_t i = 0; i < n; i++) {
        sl_batch_i64(b, 0)[i] = 60000 * (int64_t)i;
        char a[16];
        snprintf(a, sizeof a, "area%u", i);
        sl_batch_set_str(b, 1, i, a, strlen(a));
        if (counts[i] >= 0) sl_batch_i64(b, 2)[i] = counts[i];
        else sl_batch_valid(b, 2)[i] = 0;
        sl_batch_f64(b, 3)[i] = i + 0.5;
        sl_batch_kind(b)[i] = kinds[i];
    }
    sl_batch_set_len(b, n);
    return b;
}

static void test_operator(void **state)
{
    (void)state;
    sl__kanon_conf conf = {.col = 2, .k = 16};
    sl__opinfo info = {.in = g_in, .out = g_in, .time_col = 0, .batch_cap = 16};
    sl__ctx ctx = tu_ctx();
    void *st = NULL;
    char err[256];
    assert_int_equal(sl__op_kanon.open(&st, &conf, &info, &ctx, err, sizeof err), 0);
    tu_sink sink;
    tu_sink_init(&sink, 16);

    const int64_t counts[] = {20, 3, -1, 16, 15, 1, 0, 1000};
    const uint8_t kinds[] = {SL_KIND_DATA, SL_KIND_DATA, SL_KIND_DATA,
                             SL_KIND_DATA, SL_KIND_DATA, SL_KIND_CANARY,
                             SL_KIND_DATA, SL_KIND_DATA};
    uint64_t before = sl__test_counter(SL__CTR_SUPPRESSED);
    assert_int_equal(sl__op_kanon.batch(st, make_batch(counts, kinds, 8), &sink.out), 0);
    assert_int_equal(sl__test_counter(SL__CTR_SUPPRESSED) - before, 4);
    assert_int_equal(sink.n, 1);
    sl_batch *o = sink.got[0];
    const int keep[] = {0, 3, 5, 7};
    assert_int_equal(sl_batch_len(o), 4);
    for (int j = 0; j < 4; j++) {
        int i = keep[j];
        assert_int_equal(sl_batch_i64(o, 0)[j], 60000 * i);
        assert_int_equal(sl_batch_i64(o, 2)[j], counts[i]);
        assert_true(sl_batch_f64(o, 3)[j] == i + 0.5);
        assert_int_equal(sl_batch_kind(o)[j], kinds[i]);
        char a[16];
        snprintf(a, sizeof a, "area%d", i);
        sl_str s = sl_batch_str(o, 1)[j];
        assert_int_equal(s.len, strlen(a));
        assert_memory_equal(s.ptr, a, s.len);
    }

    /* a batch with nothing left emits nothing */
    const int64_t small[] = {1, 2, -1};
    const uint8_t data[] = {SL_KIND_DATA, SL_KIND_DATA, SL_KIND_DATA};
    before = sl__test_counter(SL__CTR_SUPPRESSED);
    assert_int_equal(sl__op_kanon.batch(st, make_batch(small, data, 3), &sink.out), 0);
    assert_int_equal(sl__test_counter(SL__CTR_SUPPRESSED) - before, 3);
    assert_int_equal(sink.n, 1);

    /* nothing dropped: the same batch goes on */
    const int64_t big[] = {16, 17};
    sl_batch *b = make_batch(big, data, 2);
    assert_int_equal(sl__op_kanon.batch(st, b, &sink.out), 0);
    assert_int_equal(sink.n, 2);
    assert_ptr_equal(sink.got[1], b);
    assert_int_equal(sl_batch_len(b), 2);

    tu_sink_free(&sink);
    sl__op_kanon.close(st);
}

/* ---- the builder --------------------------------------------------------- */
static int fake_configure(void **conf, const char *const *kv,
                          const sl_schema *schema, char *e, size_t n)
{
    *conf = NULL;
    return 0;
}
static const sl__source_vt fake_src = {.name = "fake",
                                       .configure = fake_configure};

static void expect(int64_t k, const char *col, const char *what)
{
    sl_job *job = sl_job_new(NULL, 0);
    sl_stream *s = sl__job_add_source(job, &fake_src, g_in, NULL);
    sl_stream *r = sl_stream_k_anon(s, col, k);
    if (!what) {
        assert_non_null(r);
        assert_null(sl_job_error(job));
        assert_int_equal(sl_schema_ncols(sl_stream_schema(r)), g_in->n);
    } else {
        assert_null(r);
        const char *e = sl_job_error(job);
        if (!e || !strstr(e, what)) fail_msg("error '%s' lacks '%s'", e, what);
    }
    sl_job_free(job);
}

static void test_builder(void **state)
{
    (void)state;
    expect(16, "subscribers", NULL);
    expect(2, "subscribers", NULL);
    expect(1, "subscribers", "k must be at least 2 (got 1)");
    expect(0, "subscribers", "k must be at least 2");
    expect(-5, "subscribers", "k must be at least 2");
    expect(16, "share", "must be BIGINT");
    expect(16, "window_start", "must be BIGINT");
    expect(16, "nope", "no column 'nope'");
    expect(16, NULL, "no column");
    assert_null(sl_stream_k_anon(NULL, "subscribers", 16));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_operator),
        cmocka_unit_test(test_builder),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
