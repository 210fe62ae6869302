/* test_dp.c — differential privacy: the discrete Laplace sampler matches
 * its distribution (fixed PRF inputs, so the test is deterministic and
 * cannot flake; tolerances are many standard errors wide), dp_noise is a
 * pure keyed function of (job, window, group, column), dp_bound bounds
 * contributions, stops a subscriber when the period budget is spent, and
 * continues identically after snapshot/restore; parameter validation. */
#include "testutil.h"

#include <math.h>
#include <unistd.h>

#include "ops/privacy.h"

static void test_distribution(void **state)
{
    const double scale = 2.0;
    const double alpha = exp(-1.0 / scale);
    uint8_t key[32] = {7};
    char err[128];
    sl__hmac *h = sl__hmac_new_raw(key, sizeof key, err, sizeof err);
    enum { N = 200000, K = 6 };
    long hist[2 * K + 1] = {0};
    double sum = 0, sq = 0;
    for (uint32_t i = 0; i < N; i++) {
        uint8_t rnd[32];
        sl__hmac_full(h, &i, sizeof i, rnd);
        int64_t x = sl__dp_discrete_laplace(rnd, scale);
        sum += (double)x;
        sq += (double)x * (double)x;
        if (x >= -K && x <= K) hist[x + K]++;
    }
    sl__hmac_free(h);
    double var = 2 * alpha / ((1 - alpha) * (1 - alpha)); /* ~7.9 */
    double mean = sum / N, evar = sq / N - mean * mean;
    /* standard error of the mean ~ sqrt(var/N) = 0.006: allow 0.05 */
    assert_true(fabs(mean) < 0.05);
    /* variance within 5% (its standard error is ~0.6%) */
    assert_true(fabs(evar / var - 1) < 0.05);
    /* the pmf (1-a)/(1+a) a^|k| within 5 standard errors per bin */
    for (int k = -K; k <= K; k++) {
        double p = (1 - alpha) / (1 + alpha) * pow(alpha, abs(k));
        double se = sqrt(p * (1 - p) / N);
        assert_true(fabs((double)hist[k + K] / N - p) < 5 * se);
    }
}

/* The Gaussian sampler: mean 0, variance sigma^2 (rounding adds 1/12),
 * and the normal's quantiles; sigma from the analytic Gaussian mechanism
 * equals the value published by Balle and Wang (ICML 2018; 3.73 for
 * epsilon = 1, delta = 1e-5, sensitivity 1), scales with the sensitivity
 * and is below the classical sqrt(2 ln(1.25/delta)) / epsilon. */
static void test_gaussian(void **state)
{
    double s1 = sl__dp_gaussian_sigma(1.0, 1e-5, 1.0);
    assert_true(fabs(s1 - 3.7306) < 1e-3);
    assert_true(fabs(sl__dp_gaussian_sigma(1.0, 1e-5, 4.0) - 4 * s1) < 1e-6);
    assert_true(sl__dp_gaussian_sigma(0.5, 1e-6, 1.0) < sqrt(2 * log(1.25e6)) / 0.5);
    assert_true(sl__dp_gaussian_sigma(5.0, 1e-5, 1.0) < sl__dp_gaussian_sigma(1.0, 1e-5, 1.0));

    const double sigma = 3.0;
    uint8_t key[32] = {9};
    char err[128];
    sl__hmac *h = sl__hmac_new_raw(key, sizeof key, err, sizeof err);
    enum { N = 200000 };
    double sum = 0, sq = 0;
    long within1 = 0, within2 = 0;
    for (uint32_t i = 0; i < N; i++) {
        uint8_t rnd[32];
        sl__hmac_full(h, &i, sizeof i, rnd);
        int64_t x = sl__dp_gaussian(rnd, sigma);
        sum += (double)x;
        sq += (double)x * (double)x;
        within1 += llabs(x) <= 3;  /* |z| <= 1 + rounding: P ~ 0.7063 */
        within2 += llabs(x) <= 6;  /* |z| <= 2 + rounding: P ~ 0.9619 */
    }
    sl__hmac_free(h);
    double var = sigma * sigma + 1.0 / 12, mean = sum / N, evar = sq / N - mean * mean;
    assert_true(fabs(mean) < 0.05);                 /* se ~ 0.007 */
    assert_true(fabs(evar / var - 1) < 0.03);       /* se ~ 0.3 % */
    /* P(|round(3z)| <= 3) = P(|z| < 3.5/3), P(|round(3z)| <= 6) = P(|z| < 6.5/3) */
    double p1 = erf(3.5 / 3 / M_SQRT2), p2 = erf(6.5 / 3 / M_SQRT2);
    assert_true(fabs((double)within1 / N - p1) < 5 * sqrt(p1 * (1 - p1) / N));
    assert_true(fabs((double)within2 / N - p2) < 5 * sqrt(p2 * (1 - p2) / N));
}

static sl_keyring *keyring(void)
{
    char path[] = "/tmp/sl-dp-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "k1 %s\n",
            "3333333333333333333333333333333333333333333333333333333333333333");
    fclose(f);
    char err[256];
    sl_keyring *k = sl_keyring_load(path, err, sizeof err);
    unlink(path);
    assert_non_null(k);
    return k;
}

static const sl_dp_spec SPEC = {.epsilon = 0.5, .max_contrib = 2, .budget = 1.0,
                                .window_ms = 60000, .period_ms = 180000};

/* window output: window_start, area, events, subscribers */
static sl_schema *out_schema(void)
{
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "window_start", SL_TIMESTAMP);
    sl_schema_add(s, "area", SL_STRING);
    sl_schema_add(s, "events", SL_INT64);
    sl_schema_add(s, "subscribers", SL_INT64);
    return s;
}

static sl_batch *results(const sl_schema *s, int64_t win)
{
    sl_batch *b = sl__batch_new(s, 8);
    const char *areas[] = {"north", "south", "east", "west"};
    for (int i = 0; i < 4; i++) {
        sl_batch_i64(b, 0)[i] = win;
        sl_batch_set_str(b, 1, (size_t)i, areas[i], strlen(areas[i]));
        sl_batch_i64(b, 2)[i] = 1000 + i;
        sl_batch_i64(b, 3)[i] = 100 + i;
    }
    sl_batch_kind(b)[3] = SL_KIND_CANARY;
    sl_batch_set_len(b, 4);
    return b;
}

static sl_batch *noise(const sl_schema *s, sl_keyring *k, const char *job,
                       int64_t win)
{
    sl__dpnoise_conf conf = {.spec = SPEC, .keys = k, .key = 0, .ncols = 2,
                             .cols = {2, 3}};
    int key_cols[] = {1};
    sl__opinfo info = {.in = s, .out = s, .time_col = 0, .key_cols = key_cols,
                       .nkey = 1, .batch_cap = 8};
    sl__ctx ctx = tu_ctx();
    ctx.job_name = job;
    void *st = NULL;
    char err[256];
    assert_int_equal(sl__op_dp_noise.open(&st, &conf, &info, &ctx, err, sizeof err), 0);
    tu_sink sink;
    tu_sink_init(&sink, 8);
    assert_int_equal(sl__op_dp_noise.batch(st, results(s, win), &sink.out), 0);
    sl__op_dp_noise.close(st);
    return sink.got[0];
}

static void test_noise_op(void **state)
{
    sl_keyring *k = keyring();
    sl_schema *s = out_schema();
    sl_batch *a = noise(s, k, "job", 0), *b = noise(s, k, "job", 0);
    sl_batch *c = noise(s, k, "job", 60000), *d = noise(s, k, "other", 0);
    int same_c = 0, same_d = 0, changed = 0;
    for (int r = 0; r < 3; r++)
        for (int col = 2; col <= 3; col++) {
            int64_t x = sl_batch_i64(a, col)[r];
            assert_int_equal(x, sl_batch_i64(b, col)[r]); /* replay: same */
            same_c += x == sl_batch_i64(c, col)[r];
            same_d += x == sl_batch_i64(d, col)[r];
            changed += x != (col == 2 ? 1000 : 100) + r;
            /* scale c*m/eps = 8: 60 is > 7 scales out, P < 1e-3 */
            assert_true(llabs(x - ((col == 2 ? 1000 : 100) + r)) < 60);
        }
    assert_true(changed >= 3);
    assert_true(same_c < 6 && same_d < 6); /* other window/job: other noise */
    /* canaries are never noised */
    assert_int_equal(sl_batch_i64(a, 2)[3], 1003);
    assert_int_equal(sl_batch_i64(a, 3)[3], 103);
    sl__batch_free(a);
    sl__batch_free(b);
    sl__batch_free(c);
    sl__batch_free(d);
    sl_schema_free(s);
    sl_keyring_free(k);
}

/* ---- dp_bound ------------------------------------------------------------ */
static sl_schema *g_ev;

static int setup(void **state)
{
    g_ev = sl_schema_new();
    sl_schema_add(g_ev, "ts", SL_TIMESTAMP);
    sl_schema_add(g_ev, "sub", SL_INT64);
    return 0;
}

static int teardown(void **state)
{
    sl_schema_free(g_ev);
    return 0;
}

static void *bound_open(sl__ctx *ctx)
{
    static sl__dpbound_conf conf;
    conf = (sl__dpbound_conf){.sub_col = 1, .spec = SPEC};
    static int key_cols[] = {1};
    sl__opinfo info = {.in = g_ev, .out = g_ev, .time_col = 0,
                       .key_cols = key_cols, .nkey = 1, .batch_cap = 64};
    void *st = NULL;
    char err[256];
    assert_int_equal(sl__op_dp_bound.open(&st, &conf, &info, ctx, err, sizeof err), 0);
    return st;
}

/* Events: in each minute m of 0..5, subscriber s (1..3) sends s events. */
static sl_batch *minute(int m)
{
    sl_batch *b = sl__batch_new(g_ev, 64);
    uint32_t n = 0;
    for (int s = 1; s <= 3; s++)
        for (int e = 0; e < s; e++) {
            sl_batch_i64(b, 0)[n] = 60000 * m + 1000 * e + s;
            sl_batch_i64(b, 1)[n] = s;
            n++;
        }
    sl_batch_set_len(b, n);
    return b;
}

/* Feeds minutes [from, to) and returns kept events per subscriber. */
static void feed(void *st, int from, int to, int kept[][4])
{
    for (int m = from; m < to; m++) {
        tu_sink sink;
        tu_sink_init(&sink, 64);
        assert_int_equal(sl__op_dp_bound.batch(st, minute(m), &sink.out), 0);
        for (int i = 0; i < sink.n; i++)
            for (uint32_t r = 0; r < sink.got[i]->n; r++)
                kept[m][sl_batch_i64(sink.got[i], 1)[r]]++;
        tu_sink_free(&sink);
        assert_int_equal(sl__op_dp_bound.watermark(st, 60000 * (m + 1), &sink.out), 0);
    }
}

static void test_bound_and_ledger(void **state)
{
    sl__ctx ctx = tu_ctx();
    ctx.key_groups = 8;
    void *st = bound_open(&ctx);
    int kept[6][4] = {{0}};
    feed(st, 0, 6, kept);
    /* budget 1.0 / epsilon 0.5: two windows per 3-minute period; at most
     * c = 2 events per subscriber per window */
    for (int m = 0; m < 6; m++)
        for (int s = 1; s <= 3; s++) {
            int want = (m % 3) < 2 ? (s < 2 ? s : 2) : 0;
            assert_int_equal(kept[m][s], want);
        }
    uint64_t over, exhausted, nul;
    sl__dp_bound_stats(st, &over, &exhausted, &nul);
    assert_int_equal(over, 4 * 1);     /* subscriber 3, 4 windows, 1 each */
    assert_int_equal(exhausted, 2 * 6); /* minutes 2 and 5: 1+2+3 events */
    assert_int_equal(nul, 0);
    sl__op_dp_bound.close(st);
}

static void test_snapshot_restore(void **state)
{
    sl__ctx ctx = tu_ctx();
    ctx.key_groups = 8;
    int ref[6][4] = {{0}}, got[6][4] = {{0}};
    void *a = bound_open(&ctx);
    feed(a, 0, 6, ref);
    sl__op_dp_bound.close(a);
    /* the same input with a snapshot and restore in the middle of period 0:
     * the ledger (one window charged) must survive */
    void *b = bound_open(&ctx);
    int before[6][4] = {{0}};
    feed(b, 0, 1, before);
    memcpy(got[0], before[0], sizeof got[0]);
    sl__snap_writer *w = sl__snap_writer_mem();
    assert_int_equal(sl__op_dp_bound.snapshot(b, w), 0);
    sl__op_dp_bound.close(b);
    void *c = bound_open(&ctx);
    size_t it = 0;
    int32_t kg;
    const void *data;
    size_t len;
    int sections = 0;
    while (sl__snap_writer_mem_next(w, &it, &kg, &data, &len)) {
        assert_int_equal(sl__op_dp_bound.restore(c, kg, data, len), 0);
        sections++;
    }
    assert_true(sections >= 2); /* keyed sections and the operator's */
    /* a second snapshot of the restored state is byte-identical */
    sl__snap_writer *w2 = sl__snap_writer_mem();
    assert_int_equal(sl__op_dp_bound.snapshot(c, w2), 0);
    size_t i1 = 0, i2 = 0;
    int32_t k1, k2;
    const void *d1, *d2;
    size_t l1, l2;
    while (sl__snap_writer_mem_next(w, &i1, &k1, &d1, &l1)) {
        assert_true(sl__snap_writer_mem_next(w2, &i2, &k2, &d2, &l2));
        assert_int_equal(k1, k2);
        assert_int_equal(l1, l2);
        assert_memory_equal(d1, d2, l1);
    }
    feed(c, 1, 6, got);
    for (int m = 0; m < 6; m++)
        for (int s = 1; s <= 3; s++) assert_int_equal(got[m][s], ref[m][s]);
    /* corrupt or foreign sections are refused */
    it = 0;
    assert_true(sl__snap_writer_mem_next(w, &it, &kg, &data, &len));
    void *d = bound_open(&ctx);
    assert_int_equal(sl__op_dp_bound.restore(d, kg, data, len - 1), SL_ECORRUPT);
    sl__op_dp_bound.close(d);
    sl__op_dp_bound.close(c);
    sl__snap_writer_free(w);
    sl__snap_writer_free(w2);
}

static void test_validation(void **state)
{
    char err[256];
    sl_dp_spec d = SPEC;
    assert_int_equal(sl__dp_spec_check(&d, err, sizeof err), 0);
    d.epsilon = 0;
    assert_int_equal(sl__dp_spec_check(&d, err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "epsilon"));
    d.epsilon = -1;
    assert_int_equal(sl__dp_spec_check(&d, err, sizeof err), SL_EINVAL);
    d.epsilon = NAN;
    assert_int_equal(sl__dp_spec_check(&d, err, sizeof err), SL_EINVAL);
    d = SPEC;
    d.budget = 0.1;
    assert_int_equal(sl__dp_spec_check(&d, err, sizeof err), SL_EINVAL);
    d = SPEC;
    d.max_contrib = 0;
    assert_int_equal(sl__dp_spec_check(&d, err, sizeof err), SL_EINVAL);
    d = SPEC;
    d.period_ms = 90000;
    assert_int_equal(sl__dp_spec_check(&d, err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "multiple"));
    d = SPEC;
    d.mechanism = SL_DP_GAUSSIAN; /* without delta */
    assert_int_equal(sl__dp_spec_check(&d, err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "delta"));
    d.delta = 0.5;
    assert_int_equal(sl__dp_spec_check(&d, err, sizeof err), SL_EINVAL);
    d.delta = 1e-6;
    assert_int_equal(sl__dp_spec_check(&d, err, sizeof err), 0);
    d.mechanism = 7;
    assert_int_equal(sl__dp_spec_check(&d, err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "mechanism"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_gaussian),
        cmocka_unit_test(test_noise_op),
        cmocka_unit_test(test_bound_and_ledger),
        cmocka_unit_test(test_snapshot_restore),
        cmocka_unit_test(test_validation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
