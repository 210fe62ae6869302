/* test_runtime.c — the runtime end to end through the public API: stages
 * and parallel tasks, key_by routing, event-time windows fed by watermarks
 * from several partitions, out-of-order and late records, end of input,
 * and back pressure from a slow sink with memory held under its bound.
 * A deterministic test source (defined here) feeds the job. */
#include <time.h>

#include "testutil.h"

/* The test source: record i of partition p has ts = base(i) - jitter(i),
 * key = i % keys, val = i. Conf keys: n, parts, step, keys, jitter, late_every. */
typedef struct {
    int64_t n, parts, step, keys, jitter, late_every, late_by, stall_ms;
} vsrc_conf;

/* stall_ms: partition 1 yields nothing until the others have ended and
 * stall_ms more have passed (an idle partition); g_resumed_at_rows records
 * how many result rows the sink had seen when it resumed. */
static int g_resumed = 0;
static _Atomic int g_rows_seen; /* written by the sink's thread */
static int g_rows_at_resume = -1;

typedef struct {
    const vsrc_conf *c;
    int *parts, nparts, cur;
    int64_t *next;
    uint64_t others_done_at;
} vsrc;

static int vsrc_configure(void **conf, const char *const *kv, const sl_schema *s,
                          char *err, size_t errsz)
{
    (void)s;
    static const sl__conf_def defs[] = {
        {.key = "n", .type = SL_CONF_INT, .def = "1000", .min = 0, .max = INT64_MAX / 4, .offset = offsetof(vsrc_conf, n)},
        {.key = "parts", .type = SL_CONF_INT, .def = "1", .min = 1, .max = 64, .offset = offsetof(vsrc_conf, parts)},
        {.key = "step", .type = SL_CONF_INT, .def = "10", .min = 0, .max = 1000000, .offset = offsetof(vsrc_conf, step)},
        {.key = "keys", .type = SL_CONF_INT, .def = "4", .min = 1, .max = 1000000, .offset = offsetof(vsrc_conf, keys)},
        {.key = "jitter", .type = SL_CONF_INT, .def = "0", .min = 0, .max = 1000000, .offset = offsetof(vsrc_conf, jitter)},
        {.key = "late_every", .type = SL_CONF_INT, .def = "0", .min = 0, .max = 1000000, .offset = offsetof(vsrc_conf, late_every)},
        {.key = "late_by", .type = SL_CONF_INT, .def = "0", .min = 0, .max = 100000000, .offset = offsetof(vsrc_conf, late_by)},
        {.key = "stall_ms", .type = SL_CONF_INT, .def = "0", .min = 0, .max = 100000, .offset = offsetof(vsrc_conf, stall_ms)},
        {0}};
    vsrc_conf *c = sl__xcalloc(1, sizeof *c);
    int rc = sl__conf_apply(defs, c, kv, "vsrc", NULL, err, errsz);
    if (rc) { free(c); return rc; }
    *conf = c;
    return 0;
}
static int vsrc_partitions(const void *conf) { return (int)((const vsrc_conf *)conf)->parts; }
static int vsrc_open(void **st, const void *conf, const sl_schema *s, const int *parts,
                     int nparts, sl__ctx *ctx, char *err, size_t errsz)
{
    (void)s, (void)ctx, (void)err, (void)errsz;
    vsrc *v = sl__xcalloc(1, sizeof *v);
    v->c = conf;
    v->parts = sl__xcalloc((size_t)nparts, sizeof(int));
    memcpy(v->parts, parts, sizeof(int) * (size_t)nparts);
    v->nparts = nparts;
    v->next = sl__xcalloc((size_t)nparts, sizeof(int64_t));
    for (int i = 0; i < nparts; i++) v->next[i] = parts[i];
    *st = v;
    return 0;
}
static int64_t vts(const vsrc_conf *c, int64_t i)
{
    int64_t t = i * c->step - (c->jitter ? (int64_t)(sl__mix64((uint64_t)i) % (uint64_t)(c->jitter + 1)) : 0);
    if (c->late_every && i % c->late_every == c->late_every - 1) t -= c->late_by;
    return t;
}

/* record i lives in partition i % parts */
static int vsrc_read(void *st, sl_batch *b, int *part, char *err, size_t errsz)
{
    (void)err, (void)errsz;
    vsrc *v = st;
    const vsrc_conf *c = v->c;
    bool stalled = false;
    if (c->stall_ms) {
        bool others = true;
        for (int q = 0; q < v->nparts; q++)
            if (v->parts[q] != 1 && v->next[q] < c->n) others = false;
        if (others && !v->others_done_at) v->others_done_at = sl__clock();
        /* resume once results flow (they cannot without idleness), or after
         * stall_ms at most */
        stalled = !others || (g_rows_seen == 0 &&
                              sl__clock() - v->others_done_at < (uint64_t)c->stall_ms * 1000000);
    }
    for (int k = 0; k < v->nparts; k++) {
        int p = (v->cur + k) % v->nparts;
        if (v->next[p] >= c->n) continue;
        if (stalled && v->parts[p] == 1) continue;
        if (c->stall_ms && v->parts[p] == 1 && !g_resumed) {
            g_resumed = 1;
            g_rows_at_resume = g_rows_seen;
        }
        v->cur = (p + 1) % v->nparts;
        *part = p;
        int64_t *ts = sl_batch_i64(b, 0), *key = sl_batch_i64(b, 1), *val = sl_batch_i64(b, 2);
        while (b->n < b->cap && v->next[p] < c->n) {
            int64_t i = v->next[p];
            ts[b->n] = vts(c, i);
            key[b->n] = i % c->keys;
            val[b->n] = i;
            b->n++;
            v->next[p] += c->parts;
        }
        return (int)b->n;
    }
    if (stalled) return SL_EAGAIN;
    return SL_EEOF;
}
static void vsrc_close(void *st)
{
    vsrc *v = st;
    free(v->parts);
    free(v->next);
    free(v);
}
static const sl__source_vt vsrc_vt = {
    .name = "vsrc", .configure = vsrc_configure, .partitions = vsrc_partitions,
    .open = vsrc_open, .read = vsrc_read, .close = vsrc_close, .conf_free = free};

static sl_schema *vschema(void)
{
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "ts", SL_TIMESTAMP);
    sl_schema_add(s, "key", SL_INT64);
    sl_schema_add(s, "val", SL_INT64);
    return s;
}

/* collects (window_start, key, count, sum) rows */
typedef struct {
    int64_t ws[100000], key[100000], cnt[100000], sum[100000];
    int n;
    int sleep_us;
} rows_t;

static int collect(const sl_batch *b, void *ud)
{
    rows_t *r = ud;
    const sl_schema *s = sl_batch_schema(b);
    int cws = sl_schema_find(s, "window_start"), ck = sl_schema_find(s, "key"),
        cc = sl_schema_find(s, "cnt"), cs = sl_schema_find(s, "total");
    if (cs < 0) cs = sl_schema_find(s, "val"); /* pipelines without a window */
    g_rows_seen += (int)sl_batch_len(b);
    for (size_t i = 0; i < sl_batch_len(b) && r->n < 100000; i++, r->n++) {
        r->ws[r->n] = cws >= 0 ? sl_batch_i64(b, cws)[i] : 0;
        r->key[r->n] = ck >= 0 ? sl_batch_i64(b, ck)[i] : 0;
        r->cnt[r->n] = cc >= 0 ? sl_batch_i64(b, cc)[i] : 0;
        r->sum[r->n] = cs >= 0 ? sl_batch_i64(b, cs)[i] : 0;
    }
    if (r->sleep_us) {
        struct timespec ts = {0, r->sleep_us * 1000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int run_window_job(rows_t *r, const char *const *src_kv, const char *par,
                          int64_t size, int64_t lateness, sl_job_stats *st)
{
    char err[512];
    sl_job *j = sl_job_new(err, sizeof err);
    assert_int_equal(sl_job_set(j, "parallelism", par, err, sizeof err), 0);
    assert_int_equal(sl_job_set(j, "output.dir", "/tmp/sluice-test-runtime", err, sizeof err), 0);
    sl_schema *s = vschema();
    sl_stream *x = sl__job_add_source(j, &vsrc_vt, s, src_kv);
    x = sl_stream_key_by(x, (const char *[]){"key", NULL});
    sl_agg_spec aggs[] = {{.kind = SL_AGG_COUNT, .as = "cnt"},
                          {.kind = SL_AGG_SUM, .col = "val", .as = "total"}};
    x = sl_stream_window(x, &(sl_window_spec){.size_ms = size, .lateness_ms = lateness}, aggs, 2);
    sl_stream_sink_fn(x, collect, r);
    int rc = sl_job_run(j);
    if (rc) fprintf(stderr, "job error: %s\n", sl_job_error(j));
    sl_job_stats_get(j, st);
    sl_job_free(j);
    sl_schema_free(s);
    return rc;
}

/* expected (window, key) -> count/sum computed directly */
static void check_against_model(const rows_t *r, int64_t n, int64_t step, int64_t keys,
                                int64_t size, int64_t jitter)
{
    vsrc_conf c = {.n = n, .step = step, .keys = keys, .jitter = jitter};
    int64_t nwin = (n * step) / size + 3;
    int64_t *cnt = calloc((size_t)(nwin * keys), 8), *sum = calloc((size_t)(nwin * keys), 8);
    for (int64_t i = 0; i < n; i++) {
        int64_t w = sl__floor_div(vts(&c, i), size) + 1;
        cnt[w * keys + i % keys]++;
        sum[w * keys + i % keys] += i;
    }
    int64_t groups = 0;
    for (int64_t g = 0; g < nwin * keys; g++) groups += cnt[g] > 0;
    assert_int_equal(r->n, groups);
    for (int i = 0; i < r->n; i++) {
        int64_t g = (sl__floor_div(r->ws[i], size) + 1) * keys + r->key[i];
        assert_int_equal(r->cnt[i], cnt[g]);
        assert_int_equal(r->sum[i], sum[g]);
        cnt[g] = -1; /* each group once */
    }
    free(cnt);
    free(sum);
}

static rows_t R;

static void keyed_windows_parallel(void **st)
{
    (void)st;
    memset(&R, 0, sizeof R);
    sl_job_stats s;
    assert_int_equal(run_window_job(&R, (const char *[]){"n", "200000", "parts", "3", "step", "1",
                                                         "keys", "7", NULL},
                                    "2", 1000, 0, &s), 0);
    check_against_model(&R, 200000, 1, 7, 1000, 0);
    assert_int_equal(s.records_in, 200000);
    assert_int_equal(s.late_records, 0);
    assert_int_equal(s.windows_fired, (uint64_t)R.n);
}

static void out_of_order_within_bound_is_exact(void **st)
{
    (void)st;
    memset(&R, 0, sizeof R);
    sl_job_stats s;
    /* timestamps jitter back by up to 500 ms; the watermark delay covers it,
     * so every record lands in its window whatever the interleaving */
    int rc = run_window_job(&R, (const char *[]){"n", "100000", "parts", "2", "step", "1",
                                                 "keys", "3", "jitter", "500", "watermark.delay.ms",
                                                 "500", NULL},
                            "2", 1000, 0, &s);
    assert_int_equal(rc, 0);
    check_against_model(&R, 100000, 1, 3, 1000, 500);
    assert_int_equal(s.late_records, 0);
}

static void late_records_are_counted_not_aggregated(void **st)
{
    (void)st;
    memset(&R, 0, sizeof R);
    sl_job_stats s;
    /* one partition, in order, except every 1000th record is 5 s late:
     * with no watermark delay those records are late, and only those */
    int rc = run_window_job(&R, (const char *[]){"n", "50000", "parts", "1", "step", "1",
                                                 "keys", "1", "late_every", "1000",
                                                 "late_by", "5000", NULL},
                            "1", 1000, 0, &s);
    assert_int_equal(rc, 0);
    /* the watermark moves after each source batch (1024 records), so the
     * late record of the first batch (i = 999) is not yet behind it; the
     * other 49 are */
    assert_int_equal(s.late_records, 49);
    int64_t total = 0;
    for (int i = 0; i < R.n; i++) total += R.cnt[i];
    assert_int_equal(total, 50000 - 49);
}

static void allowed_lateness_keeps_windows_open(void **st)
{
    (void)st;
    memset(&R, 0, sizeof R);
    sl_job_stats s;
    int rc = run_window_job(&R, (const char *[]){"n", "50000", "parts", "1", "step", "1",
                                                 "keys", "1", "late_every", "1000",
                                                 "late_by", "5000", NULL},
                            "1", 1000, 6000, &s);
    assert_int_equal(rc, 0);
    assert_int_equal(s.late_records, 0);
    int64_t total = 0;
    for (int i = 0; i < R.n; i++) total += R.cnt[i];
    assert_int_equal(total, 50000);
}

static void idle_partition_does_not_hold_back_the_watermark(void **st)
{
    (void)st;
    for (int idle = 0; idle <= 1; idle++) {
        memset(&R, 0, sizeof R);
        g_resumed = 0;
        g_rows_seen = 0;
        g_rows_at_resume = -1;
        sl_job_stats s;
        /* partition 1 stalls after partition 0 has ended (until results
         * flow, 5 s at most; 300 ms without idleness, when none can); with
         * an idle timeout of 50 ms the watermark moves on without it,
         * windows fire meanwhile, and its records arrive late */
        int rc = run_window_job(&R, (const char *[]){"n", "20000", "parts", "2", "step", "1",
                                                     "keys", "1", "stall_ms", idle ? "5000" : "300",
                                                     "idle.timeout.ms", idle ? "50" : "0", NULL},
                                "1", 1000, 0, &s);
        assert_int_equal(rc, 0);
        assert_true(g_resumed);
        if (idle) {
            assert_true(g_rows_at_resume > 0);
            /* the watermark stood at 19998 (partition 0's last record): the
             * stalled partition's odd timestamps below 19000 are late */
            assert_int_equal(s.late_records, 9500);
        } else {
            assert_int_equal(g_rows_at_resume, 0);
            assert_int_equal(s.late_records, 0);
            check_against_model(&R, 20000, 1, 1, 1000, 0);
        }
    }
}

static void slow_sink_bounds_memory(void **st)
{
    (void)st;
    memset(&R, 0, sizeof R);
    R.sleep_us = 2000;
    char err[512];
    sl_job *j = sl_job_new(err, sizeof err);
    assert_int_equal(sl_job_set(j, "parallelism", "2", err, sizeof err), 0);
    assert_int_equal(sl_job_set(j, "exchange.capacity", "2", err, sizeof err), 0);
    assert_int_equal(sl_job_set(j, "batch.size", "64", err, sizeof err), 0);
    sl_schema *s = vschema();
    /* a map-only pipeline: every record reaches the slow sink */
    sl_stream *x = sl__job_add_source(j, &vsrc_vt, s,
                                      (const char *[]){"n", "40000", "parts", "2", NULL});
    x = sl_stream_key_by(x, (const char *[]){"key", NULL});
    sl_stream_sink_fn(x, collect, &R);
    sl__batch_stats_reset_peak();
    assert_int_equal(sl_job_run(j), 0);
    sl_job_stats js;
    sl_job_stats_get(j, &js);
    assert_int_equal(R.n, 40000);
    /* every record exactly once: batches that do not fit the room left in
     * an exchange builder are split, never repeated */
    uint8_t *seen = calloc(40000, 1);
    for (int i = 0; i < R.n; i++) {
        assert_true(R.sum[i] >= 0 && R.sum[i] < 40000);
        assert_int_equal(seen[R.sum[i]]++, 0);
    }
    free(seen);
    /* 40000 / 64 = 625 batches went through; with 2 + 2x2 + 2x1 channels of
     * capacity 2, a builder and a step's output per channel and one batch in
     * hand per task, no more than ~40 may be alive at once */
    fprintf(stderr, "peak live batches %llu, blocked %.3f s\n",
            (unsigned long long)js.batches_peak, (double)js.blocked_ns / 1e9);
    assert_true(js.batches_peak <= 48);
    assert_true(js.blocked_ns > 0); /* the producers did wait */
    sl_job_free(j);
    sl_schema_free(s);
}

static void builder_errors_are_sticky_and_named(void **st)
{
    (void)st;
    char err[512];
    sl_job *j = sl_job_new(err, sizeof err);
    assert_int_equal(sl_job_set(j, "batch.size", "3", err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "batch.size"));
    assert_int_equal(sl_job_set(j, "nope", "3", err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "unknown key 'nope'"));
    sl_schema *s = vschema();
    sl_stream *x = sl__job_add_source(j, &vsrc_vt, s, NULL);
    x = sl_stream_key_by(x, (const char *[]){"missing", NULL});
    assert_null(x);
    x = sl_stream_project(x, (const char *[]){"ts", NULL}); /* NULL passes through */
    assert_null(x);
    assert_non_null(strstr(sl_job_error(j), "no column 'missing'"));
    assert_int_equal(sl_job_run(j), SL_EINVAL);
    sl_job_free(j);
    sl_schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keyed_windows_parallel),
        cmocka_unit_test(out_of_order_within_bound_is_exact),
        cmocka_unit_test(late_records_are_counted_not_aggregated),
        cmocka_unit_test(allowed_lateness_keeps_windows_open),
        cmocka_unit_test(idle_partition_does_not_hold_back_the_watermark),
        cmocka_unit_test(slow_sink_bounds_memory),
        cmocka_unit_test(builder_errors_are_sticky_and_named)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
