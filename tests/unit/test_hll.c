/* test_hll.c — HyperLogLog accuracy, merge and serialisation. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>

#include "ops/agg.h"

/* Standard error of HyperLogLog with 2^14 registers: 1.04 / sqrt(m). */
#define STDERR (1.04 / 128.0)

static uint64_t elem_hash(uint64_t i, uint64_t seed)
{
    return sl__hash_bytes(&i, sizeof i, seed);
}

static void fill(sl__hll *h, uint64_t from, uint64_t to, uint64_t seed)
{
    for (uint64_t i = from; i < to; i++) sl__hll_add_hash(h, elem_hash(i, seed));
}

static void empty(void **state)
{
    (void)state;
    sl__hll h;
    sl__hll_init(&h);
    assert_int_equal(sl__hll_estimate(&h), 0);
    sl__hll_close(&h);
    assert_int_equal(sl__hll_estimate(&h), 0);
}

/* Linear counting is near exact while few registers are set. */
static void small_counts(void **state)
{
    (void)state;
    static const uint64_t ns[] = {1, 2, 10, 100, 500};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        for (uint64_t seed = 1; seed <= 3; seed++) {
            sl__hll h;
            sl__hll_init(&h);
            fill(&h, 0, ns[k], seed);
            fill(&h, 0, ns[k], seed); /* duplicates change nothing */
            double est = (double)sl__hll_estimate(&h);
            double tol = ns[k] <= 10 ? 0 : ns[k] <= 100 ? 1 : 0.01 * ns[k];
            if (fabs(est - (double)ns[k]) > tol)
                fail_msg("n=%llu seed=%llu estimate %.0f",
                         (unsigned long long)ns[k], (unsigned long long)seed,
                         est);
            sl__hll_close(&h);
        }
    }
}

/* Relative error within three standard errors at 1e3, 1e5 and 1e6, for
 * several hash seeds. */
static void accuracy(void **state)
{
    (void)state;
    static const uint64_t ns[] = {1000, 100000, 1000000};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        for (uint64_t seed = 11; seed <= 13; seed++) {
            sl__hll h;
            sl__hll_init(&h);
            fill(&h, 0, ns[k], seed);
            double est = (double)sl__hll_estimate(&h);
            double rel = fabs(est - (double)ns[k]) / (double)ns[k];
            printf("  n=%-8llu seed=%llu estimate=%-8.0f error=%.3f%%\n",
                   (unsigned long long)ns[k], (unsigned long long)seed, est,
                   rel * 100);
            if (rel > 3 * STDERR)
                fail_msg("n=%llu: relative error %.4f > %.4f",
                         (unsigned long long)ns[k], rel, 3 * STDERR);
            sl__hll_close(&h);
        }
    }
}

/* The merge of two overlapping sketches is the sketch of the union. */
static void merge_is_union(void **state)
{
    (void)state;
    sl__hll a, b, u, e;
    sl__hll_init(&a);
    sl__hll_init(&b);
    sl__hll_init(&u);
    sl__hll_init(&e);
    fill(&a, 0, 60000, 5);
    fill(&b, 40000, 100000, 5);
    fill(&u, 0, 100000, 5);
    sl__hll_merge(&a, &b);
    assert_memory_equal(a.reg, u.reg, SL__HLL_M);
    assert_int_equal(sl__hll_estimate(&a), sl__hll_estimate(&u));
    /* Merging an empty sketch changes nothing; merging into one copies. */
    sl__hll_merge(&a, &e);
    assert_memory_equal(a.reg, u.reg, SL__HLL_M);
    sl__hll_merge(&e, &u);
    assert_memory_equal(e.reg, u.reg, SL__HLL_M);
    sl__hll_close(&a);
    sl__hll_close(&b);
    sl__hll_close(&u);
    sl__hll_close(&e);
}

static void round_trip_one(uint64_t n, uint8_t expect_format)
{
    sl__hll h, g;
    sl__hll_init(&h);
    sl__hll_init(&g);
    fill(&h, 0, n, 9);
    size_t size = sl__hll_serialized_size(&h);
    uint8_t *buf = malloc(size);
    assert_int_equal(sl__hll_serialize(&h, buf), size);
    assert_int_equal(buf[0], expect_format);
    assert_int_equal(sl__hll_deserialize(&g, buf, size), (int64_t)size);
    assert_int_equal(sl__hll_estimate(&g), sl__hll_estimate(&h));
    if (n) assert_memory_equal(g.reg, h.reg, SL__HLL_M);
    else assert_null(g.reg);
    /* Truncated input is rejected and leaves an empty sketch. */
    if (size > 1) {
        assert_int_equal(sl__hll_deserialize(&g, buf, size - 1), SL_ECORRUPT);
        assert_int_equal(sl__hll_estimate(&g), 0);
    }
    free(buf);
    sl__hll_close(&h);
    sl__hll_close(&g);
}

static void serialize(void **state)
{
    (void)state;
    round_trip_one(0, 0);      /* empty */
    round_trip_one(100, 2);    /* sparse */
    round_trip_one(200000, 1); /* dense */
    sl__hll g;
    sl__hll_init(&g);
    const uint8_t bad_format[] = {7};
    assert_int_equal(sl__hll_deserialize(&g, bad_format, 1), SL_ECORRUPT);
    const uint8_t bad_rank[] = {2, 1, 0, 0, 0, 5, 0, 60};
    assert_int_equal(sl__hll_deserialize(&g, bad_rank, sizeof bad_rank),
                     SL_ECORRUPT);
    const uint8_t bad_count[] = {2, 0xff, 0xff, 0, 0};
    assert_int_equal(sl__hll_deserialize(&g, bad_count, sizeof bad_count),
                     SL_ECORRUPT);
    const uint8_t one[] = {2, 1, 0, 0, 0, 5, 0, 3};
    assert_int_equal(sl__hll_deserialize(&g, one, sizeof one), 8);
    assert_int_equal(g.reg[5], 3);
    assert_int_equal(sl__hll_estimate(&g), 1);
    sl__hll_close(&g);
}

/* The aggregate hashes INT64 values itself: check it end to end. */
static void via_aggregate(void **state)
{
    (void)state;
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "v", SL_INT64);
    sl__agg a;
    sl_agg_spec spec = {.kind = SL_AGG_APPROX_COUNT_DISTINCT, .col = "v",
                        .as = "n"};
    assert_int_equal(sl__agg_init(&a, &spec, s, 0, NULL, 0), 0);
    uint8_t *grp = calloc(1, a.size);
    enum { CAP = 1000 };
    sl_batch *b = sl__batch_new(s, CAP);
    uint8_t *g[CAP];
    for (int i = 0; i < CAP; i++) g[i] = grp;
    const int64_t n = 300000;
    for (int64_t base = 0; base < n; base += CAP) {
        for (int i = 0; i < CAP; i++)
            ((int64_t *)b->cols[0].data)[i] = base + i;
        b->n = CAP;
        sl__agg_add(&a, b, NULL, g, CAP);
    }
    sl__hll *h = (sl__hll *)grp;
    double rel = fabs((double)sl__hll_estimate(h) - (double)n) / (double)n;
    assert_true(rel <= 3 * STDERR);
    sl__batch_free(b);
    sl__agg_state_free(&a, grp);
    sl__agg_close(&a);
    free(grp);
    sl_schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty),
        cmocka_unit_test(small_counts),
        cmocka_unit_test(accuracy),
        cmocka_unit_test(merge_is_union),
        cmocka_unit_test(serialize),
        cmocka_unit_test(via_aggregate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
