/* test_pseudonymise.c — the pseudonymise operator driven directly: the raw
 * column is gone, equal ids give equal pseudonyms, NULL stays NULL, canaries
 * are pseudonymised, the cache never changes a result; and the builder's
 * validation. */
#include "testutil.h"

#include <stdio.h>
#include <unistd.h>

#include "ops/privacy.h"

#define SECRET "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static sl_keyring *g_keys;
static sl_schema *g_in;

static int setup(void **state)
{
    (void)state;
    setenv("SL_TEST_PSEUDO_KEYS", "t1 " SECRET "\n", 1);
    char err[256];
    g_keys = sl_keyring_load("env:SL_TEST_PSEUDO_KEYS", err, sizeof err);
    g_in = sl_schema_new();
    sl_schema_add(g_in, "ts", SL_TIMESTAMP);
    sl_schema_set_identifier(g_in, sl_schema_add(g_in, "msisdn", SL_STRING));
    sl_schema_add(g_in, "event_type", SL_STRING);
    sl_schema_add(g_in, "ok", SL_BOOL);
    sl_schema_add(g_in, "bytes", SL_INT64);
    return g_keys ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sl_keyring_free(g_keys);
    sl_schema_free(g_in);
    return 0;
}

/* ids[i] NULL = a NULL id. */
static sl_batch *make_batch(const char *const *ids, uint32_t n, uint32_t cap)
{
    sl_batch *b = sl__batch_new(g_in, cap);
    for (uint32_t i = 0; i < n; i++) {
        sl_batch_i64(b, 0)[i] = 1700000000000LL + i;
        if (ids[i]) sl_batch_set_str(b, 1, i, ids[i], strlen(ids[i]));
        else sl_batch_valid(b, 1)[i] = 0;
        char et[32];
        snprintf(et, sizeof et, "EV%u", i);
        sl_batch_set_str(b, 2, i, et, strlen(et));
        sl_batch_bool(b, 3)[i] = (uint8_t)(i & 1);
        sl_batch_i64(b, 4)[i] = (int64_t)i * 100;
    }
    sl_batch_set_len(b, n);
    return b;
}

static int64_t pseudo_of(const char *id)
{
    return sl_keyring_pseudonym(g_keys, id, strlen(id));
}

static void test_operator(void **state)
{
    (void)state;
    sl_schema *out = sl__pseudo_schema(g_in, 1, "sub");
    assert_non_null(out);
    assert_int_equal(out->n, g_in->n);
    assert_int_equal(sl_schema_find(out, "msisdn"), -1);
    assert_int_equal(sl_schema_find(out, "sub"), 1);
    assert_int_equal(sl_schema_col_type(out, 1), SL_INT64);
    assert_false(out->cols[1].identifier);

    sl__pseudo_conf conf = {.col = 1, .keys = g_keys, .cache_bits = 20};
    sl__opinfo info = {.in = g_in, .out = out, .time_col = 0, .batch_cap = 16};
    sl__ctx ctx = tu_ctx();
    char err[256] = "";
    void *st = NULL;
    assert_int_equal(sl__op_pseudonymise.open(&st, &conf, &info, &ctx, err,
                                              sizeof err), 0);
    tu_sink sink;
    tu_sink_init(&sink, 16);

    const char *ids[] = {"491700000001", "491700000002", "491700000001", NULL,
                         "491700000003", ""};
    for (int round = 0; round < 2; round++) { /* round 1: cache hits */
        sl_batch *b = make_batch(ids, 6, 16);
        sl_batch_kind(b)[4] = SL_KIND_CANARY;
        assert_int_equal(sl__op_pseudonymise.batch(st, b, &sink.out), 0);
        assert_int_equal(sink.n, round + 1);
        sl_batch *o = sink.got[round];
        assert_ptr_equal(sl_batch_schema(o), out);
        assert_int_equal(sl_batch_len(o), 6);
        const int64_t *p = sl_batch_i64(o, 1);
        const uint8_t *v = sl_batch_valid(o, 1);
        assert_int_equal(p[0], pseudo_of(ids[0]));
        assert_int_equal(p[1], pseudo_of(ids[1]));
        assert_int_equal(p[2], p[0]);
        assert_true(p[0] != p[1]);
        assert_int_equal(v[3], 0);           /* NULL id -> NULL pseudonym */
        assert_int_equal(p[4], pseudo_of(ids[4])); /* canary, like data */
        assert_int_equal(sl_batch_kind(o)[4], SL_KIND_CANARY);
        assert_int_equal(sl_batch_kind(o)[0], SL_KIND_DATA);
        assert_int_equal(p[5], pseudo_of(""));
        for (int i = 0; i < 6; i++) {
            if (i != 3) assert_int_equal(v[i], 1);
            char et[32];
            snprintf(et, sizeof et, "EV%d", i);
            sl_str s = sl_batch_str(o, 2)[i];
            assert_int_equal(s.len, strlen(et));
            assert_memory_equal(s.ptr, et, s.len);
            assert_int_equal(sl_batch_i64(o, 0)[i], 1700000000000LL + i);
            assert_int_equal(sl_batch_bool(o, 3)[i], i & 1);
            assert_int_equal(sl_batch_i64(o, 4)[i], i * 100);
        }
    }
    /* both rounds agree (misses first, hits second) */
    assert_memory_equal(sl_batch_i64(sink.got[0], 1), sl_batch_i64(sink.got[1], 1),
                        6 * sizeof(int64_t));

    /* an empty batch produces nothing */
    assert_int_equal(sl__op_pseudonymise.batch(st, sl__batch_new(g_in, 4),
                                               &sink.out), 0);
    assert_int_equal(sink.n, 2);
    tu_sink_free(&sink);
    sl__op_pseudonymise.close(st);
    sl_schema_free(out);
}

/* A tiny cache (2 slots) overwrites constantly; results equal no cache. */
static void test_cache_hit_equals_miss(void **state)
{
    (void)state;
    sl_schema *out = sl__pseudo_schema(g_in, 1, "sub");
    sl__hmac *h = sl__hmac_new(g_keys, NULL, 0);
    enum { N = 3000 };
    static char idbuf[N][40];
    const char *ids[N];
    for (int i = 0; i < N; i++) {
        /* repeats, and some ids longer than the cache keeps */
        int k = (i * 7919) % 500;
        snprintf(idbuf[i], sizeof idbuf[i], k % 50 ? "4917%08d" :
                 "4917%08d-a-rather-long-identifier", k);
        ids[i] = idbuf[i];
    }
    ids[17] = NULL;
    sl_batch *in = make_batch(ids, N, N);
    sl__pcache *tiny = sl__pcache_new(1), *big = sl__pcache_new(16);
    sl_batch *a = sl__pseudo_batch(h, NULL, in, 1, out);
    sl_batch *b = sl__pseudo_batch(h, tiny, in, 1, out);
    sl_batch *c = sl__pseudo_batch(h, big, in, 1, out);
    sl_batch *d = sl__pseudo_batch(h, big, in, 1, out); /* all hits */
    for (int i = 0; i < N; i++) {
        assert_int_equal(sl_batch_valid(a, 1)[i], i != 17);
        if (i == 17) continue;
        int64_t want = pseudo_of(ids[i]);
        assert_int_equal(sl_batch_i64(a, 1)[i], want);
        assert_int_equal(sl_batch_i64(b, 1)[i], want);
        assert_int_equal(sl_batch_i64(c, 1)[i], want);
        assert_int_equal(sl_batch_i64(d, 1)[i], want);
    }
    uint64_t hits, misses;
    sl__pcache_stats(big, &hits, &misses);
    assert_true(hits > (uint64_t)N); /* the whole second pass at least */
    assert_true(misses < 1000); /* ~450 distinct short ids, few collisions */
    sl__pcache_stats(tiny, &hits, &misses);
    assert_true(misses > 0);
    sl__batch_free(a);
    sl__batch_free(b);
    sl__batch_free(c);
    sl__batch_free(d);
    sl__batch_free(in);
    sl__pcache_free(tiny);
    sl__pcache_free(big);
    sl__pcache_free(NULL);
    sl__hmac_free(h);
    sl_schema_free(out);
}

/* Not a pass/fail test: operator cost per row without a cache (every row
 * a MAC) and on cache hits. */
static void test_speed(void **state)
{
    (void)state;
    sl_schema *out = sl__pseudo_schema(g_in, 1, "sub");
    sl__hmac *h = sl__hmac_new(g_keys, NULL, 0);
    sl__pcache *cache = sl__pcache_new(20);
    enum { N = 1024, ROUNDS = 100 };
    static char idbuf[N][16];
    const char *ids[N];
    uint64_t ns[2] = {0, 0};
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++) {
            snprintf(idbuf[i], sizeof idbuf[i], "4917%08d", r * N + i);
            ids[i] = idbuf[i];
        }
        sl_batch *in = make_batch(ids, N, N);
        sl__batch_free(sl__pseudo_batch(h, cache, in, 1, out)); /* fill */
        for (int pass = 0; pass < 2; pass++) {
            uint64_t t0 = sl__clock_monotonic();
            sl_batch *o = sl__pseudo_batch(h, pass ? cache : NULL, in, 1, out);
            ns[pass] += sl__clock_monotonic() - t0;
            sl__batch_free(o);
        }
        sl__batch_free(in);
    }
    print_message("pseudonymise: %.0f ns/row computing every MAC, %.0f ns/row "
                  "on cache hits (5 columns, batches of %d)\n",
                  (double)ns[0] / (N * ROUNDS), (double)ns[1] / (N * ROUNDS), N);
    sl__pcache_free(cache);
    sl__hmac_free(h);
    sl_schema_free(out);
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

static sl_stream *source(sl_job **job)
{
    *job = sl_job_new(NULL, 0);
    return sl__job_add_source(*job, &fake_src, g_in, NULL);
}

static void expect_fail(sl_stream *r, sl_job *job, const char *what)
{
    assert_null(r);
    const char *e = sl_job_error(job);
    if (!e || !strstr(e, what)) fail_msg("error '%s' lacks '%s'", e, what);
    sl_job_free(job);
}

static void test_builder(void **state)
{
    (void)state;
    sl_job *job;
    sl_stream *s = source(&job);
    sl_stream *p = sl_stream_pseudonymise(s, "msisdn", "sub", g_keys);
    assert_non_null(p);
    const sl_schema *o = sl_stream_schema(p);
    assert_int_equal(sl_schema_find(o, "msisdn"), -1);
    assert_int_equal(sl_schema_find(o, "sub"), 1);
    assert_int_equal(sl_schema_col_type(o, 1), SL_INT64);
    assert_null(sl_job_error(job));
    sl_job_free(job);

    s = source(&job); /* the same name is fine: the type changes */
    assert_non_null(sl_stream_pseudonymise(s, "msisdn", "msisdn", g_keys));
    sl_job_free(job);

    assert_null(sl_stream_pseudonymise(NULL, "msisdn", "sub", g_keys));
    s = source(&job);
    expect_fail(sl_stream_pseudonymise(s, "imsi", "sub", g_keys), job,
                "no column 'imsi'");
    s = source(&job);
    expect_fail(sl_stream_pseudonymise(s, "bytes", "sub", g_keys), job,
                "must be VARCHAR");
    s = source(&job);
    expect_fail(sl_stream_pseudonymise(s, "msisdn", "event_type", g_keys), job,
                "'event_type' already exists");
    s = source(&job);
    expect_fail(sl_stream_pseudonymise(s, "msisdn", NULL, g_keys), job,
                "no output column");
    s = source(&job);
    expect_fail(sl_stream_pseudonymise(s, "msisdn", "sub", NULL), job,
                "no keyring");
    s = source(&job);
    s = sl_stream_key_by(s, (const char *[]){"msisdn", NULL});
    expect_fail(sl_stream_pseudonymise(s, "msisdn", "sub", g_keys), job,
                "before key_by");
}

/* ---- key rotation -------------------------------------------------------- */
#define SA "aa00000000000000000000000000000000000000000000000000000000000000"
#define SB "bb00000000000000000000000000000000000000000000000000000000000000"
#define SC "cc00000000000000000000000000000000000000000000000000000000000000"

static int64_t mac_of(const sl_keyring *k, int i, const char *id)
{
    char err[128];
    sl__hmac *h = sl__hmac_new_key(k, i, err, sizeof err);
    int64_t v = sl__hmac_pseudo(h, id, strlen(id));
    sl__hmac_free(h);
    return v;
}

/* Runs the rotating operator over (ts, id) rows; returns its output. */
static int rot_run(const sl_keyring *k, const char *domain, int64_t period,
                   const int64_t *ts, const char *const *ids, uint32_t n,
                   tu_sink *sink, char *err, size_t errsz)
{
    sl__pseudo_rot_conf conf = {.col = 1, .keys = k, .domain = (char *)domain,
                                .period_ms = period, .cache_bits = 4};
    sl_schema *out = sl__pseudo_schema(g_in, 1, "sub");
    sl__opinfo info = {.in = g_in, .out = out, .time_col = 0, .batch_cap = 16};
    sl__ctx ctx = tu_ctx();
    void *st = NULL;
    int rc = sl__op_pseudonymise_rot.open(&st, &conf, &info, &ctx, err, errsz);
    if (rc == 0) {
        sl_batch *b = make_batch(ids, n, 16);
        memcpy(sl_batch_i64(b, 0), ts, n * sizeof *ts);
        rc = sl__op_pseudonymise_rot.batch(st, b, &sink->out);
        sl__op_pseudonymise_rot.close(st);
    }
    sl_schema_free(out);
    return rc;
}

static void test_rotation(void **state)
{
    (void)state;
    setenv("SL_TEST_ROT_KEYS",
           "other " SC "\n"
           "tel:1 " SA " 2024-01-01\n"
           "tel:2 " SB " 2024-01-02\n", 1);
    char err[256];
    sl_keyring *k = sl_keyring_load("env:SL_TEST_ROT_KEYS", err, sizeof err);
    assert_non_null(k);
    const int64_t day = 86400000, d2 = 1704153600000LL; /* 2024-01-02 */
    /* interleaved across the boundary, one row before the first key */
    const int64_t ts[] = {d2 - 1, d2, d2 - day, d2 + 5, d2 - day - 1, d2 - 2};
    const char *ids[] = {"316", "316", "316", "316", "316", "317"};
    tu_sink sink;
    tu_sink_init(&sink, 16);
    uint64_t dl = sl__test_counter(SL__CTR_DEAD_LETTERS);
    assert_int_equal(rot_run(k, "tel", day, ts, ids, 6, &sink, err, sizeof err), 0);
    assert_int_equal(sl__test_counter(SL__CTR_DEAD_LETTERS) - dl, 1);
    assert_non_null(strstr(sl__test_last_dead_letter(), "no_key"));
    assert_int_equal(sink.n, 1);
    sl_batch *o = sink.got[0];
    assert_int_equal(sl_batch_len(o), 5);
    int64_t a = mac_of(k, 1, "316"), b = mac_of(k, 2, "316");
    assert_true(a != b);
    /* exactly at the boundary the key switches; before it, the old key */
    const int64_t want[] = {a, b, a, b, mac_of(k, 1, "317")};
    const int64_t wts[] = {d2 - 1, d2, d2 - day, d2 + 5, d2 - 2};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(sl_batch_i64(o, 0)[i], wts[i]);
        assert_int_equal(sl_batch_i64(o, 1)[i], want[i]);
    }
    tu_sink_free(&sink);

    /* a separate processing domain uses its own key */
    assert_int_equal(rot_run(k, "other", day, ts, ids, 1, &sink, err, sizeof err), 0);
    assert_int_equal(sl_batch_i64(sink.got[0], 1)[0], mac_of(k, 0, "316"));
    tu_sink_free(&sink);

    /* unknown domain, and VALID_FROM off the rotation boundary: refused */
    assert_int_equal(rot_run(k, "nope", day, ts, ids, 1, &sink, err, sizeof err),
                     SL_ENOENT);
    assert_non_null(strstr(err, "nope"));
    assert_int_equal(rot_run(k, "tel", 7 * day, ts, ids, 1, &sink, err, sizeof err),
                     SL_EINVAL);
    assert_non_null(strstr(err, "rotation boundary"));
    sl_keyring_free(k);

    /* the builder needs a period and an event time */
    sl_job *job;
    sl_stream *s = source(&job);
    expect_fail(sl_stream_pseudonymise_rotating(s, "msisdn", "sub", g_keys,
                                                &(sl_rotation){0}),
                job, "period_ms");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_operator),
        cmocka_unit_test(test_cache_hit_equals_miss),
        cmocka_unit_test(test_speed),
        cmocka_unit_test(test_builder),
        cmocka_unit_test(test_rotation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
