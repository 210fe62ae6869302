/* test_session.c — the session-window operator driven through its vtable:
 * sessions per key split by the gap, a late record bridging two open
 * sessions (they merge), a record too late for its own session (counted,
 * dropped), canaries forwarded at once, output order, end of input; a
 * snapshot taken mid-stream and restored into a fresh instance continues
 * exactly like the uncrashed one; a changed definition and damaged bytes
 * are refused; validation. */
#include "testutil.h"

#include "core/snap.h"
#include "ops/agg.h"

/* Input: ts TIMESTAMP, k VARCHAR, v BIGINT. */
static sl_schema *in_schema(void)
{
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "ts", SL_TIMESTAMP);
    sl_schema_add(s, "k", SL_STRING);
    sl_schema_add(s, "v", SL_INT64);
    return s;
}

static const sl_agg_spec AGGS[] = {
    {.kind = SL_AGG_COUNT, .as = "n"},
    {.kind = SL_AGG_SUM, .col = "v", .as = "total"},
};

typedef tu_op sop;

static void sop_open(sop *o, int64_t gap, int64_t lateness)
{
    static const char *const keys[] = {"k", NULL};
    sl_schema *in = in_schema(), *out = NULL;
    void *conf = NULL;
    char err[256];
    sl_session_spec spec = {gap, lateness};
    if (sl__session_conf_new(&conf, &out, in, keys, "ts", &spec, AGGS, 2, err, sizeof err))
        fail_msg("conf: %s", err);
    tu_op_open(o, &sl__session_vt, in, out, conf, 1, 0);
}

#define sop_close tu_op_close

static void feed(sop *o, int64_t ts, const char *k, int64_t v, bool canary)
{
    sl_batch *b = sl__batch_new(o->in, 1);
    ((int64_t *)b->cols[0].data)[0] = ts;
    b->cols[0].valid[0] = 1;
    sl_batch_set_str(b, 1, 0, k, strlen(k));
    b->cols[1].valid[0] = 1;
    ((int64_t *)b->cols[2].data)[0] = v;
    b->cols[2].valid[0] = 1;
    b->kind[0] = canary ? SL_KIND_CANARY : SL_KIND_DATA;
    b->n = 1;
    assert_int_equal(sl__session_vt.batch(o->st, b, &o->sink.out), 0);
}

#define wm tu_op_wm

/* The rows emitted so far as "start-end k n total;" (canaries as "C..."). */
static const char *rows(sop *o)
{
    static char buf[2048];
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < o->sink.n; i++) {
        const sl_batch *b = o->sink.got[i];
        for (uint32_t r = 0; r < b->n; r++) {
            sl_str k = ((const sl_str *)b->cols[2].data)[r];
            used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%lld-%lld %.*s %lld %lld;",
                                     b->kind[r] ? "C" : "",
                                     (long long)((const int64_t *)b->cols[0].data)[r],
                                     (long long)((const int64_t *)b->cols[1].data)[r],
                                     (int)k.len, k.ptr,
                                     b->cols[3].valid[r] ? (long long)((const int64_t *)b->cols[3].data)[r] : -1,
                                     b->cols[4].valid[r] ? (long long)((const int64_t *)b->cols[4].data)[r] : -1);
        }
    }
    return buf;
}

static void test_sessions_merge_and_fire(void **state)
{
    (void)state;
    sop o;
    sop_open(&o, 10, 0);
    feed(&o, 0, "a", 1, false);
    feed(&o, 5, "a", 2, false);   /* a: [0, 15) */
    feed(&o, 22, "a", 4, false);  /* a: [22, 32) a second session */
    feed(&o, 3, "b", 8, false);   /* b: [3, 13) */
    feed(&o, 7, "b", 1, true);    /* a canary: forwarded at once */
    assert_string_equal(rows(&o), "C7-17 b -1 -1;");
    feed(&o, 14, "a", 16, false); /* [14, 24) touches both: a = [0, 32) */
    wm(&o, 13);                   /* b fires (end 13 <= 13) */
    assert_string_equal(rows(&o), "C7-17 b -1 -1;3-13 b 1 8;");
    feed(&o, 2, "b", 32, false);  /* [2, 12) would have fired: late */
    wm(&o, 31);
    assert_string_equal(rows(&o), "C7-17 b -1 -1;3-13 b 1 8;");
    wm(&o, SL_TS_MAX);            /* end of input */
    assert_string_equal(rows(&o), "C7-17 b -1 -1;3-13 b 1 8;0-32 a 4 23;");
    assert_int_equal(sl__test_counter(SL__CTR_LATE) > 0, 1);
    sop_close(&o);
}

static void test_lateness_and_order(void **state)
{
    (void)state;
    sop o;
    sop_open(&o, 10, 5);
    feed(&o, 100, "z", 1, false);
    feed(&o, 100, "m", 1, false);
    feed(&o, 90, "q", 1, false);
    wm(&o, 114); /* fire at end + 5: z, m at 115, q at 105 */
    assert_string_equal(rows(&o), "90-100 q 1 1;");
    feed(&o, 108, "z", 2, false); /* within lateness: extends z to 118 */
    wm(&o, 200);
    /* same start: ordered by key bytes */
    assert_string_equal(rows(&o), "90-100 q 1 1;100-110 m 1 1;100-118 z 2 3;");
    sop_close(&o);
}

/* Snapshot after the first half, restore into a fresh instance, feed the
 * rest to both: identical output. */
static void test_snapshot_restore(void **state)
{
    (void)state;
    sop a, b;
    sop_open(&a, 10, 0);
    sop_open(&b, 10, 0);
    const char *keys[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 40; i++) feed(&a, i * 7 % 50, keys[i % 4], i, false);
    wm(&a, 20);
    sl__snap_writer *w = sl__snap_writer_mem();
    assert_int_equal(sl__session_vt.snapshot(a.st, w), 0);
    size_t it = 0, len;
    int32_t kg;
    const void *data;
    int sections = 0;
    while (sl__snap_writer_mem_next(w, &it, &kg, &data, &len)) {
        assert_int_equal(sl__session_vt.restore(b.st, kg, data, len), 0);
        sections++;
    }
    assert_true(sections >= 2);
    for (int i = 40; i < 80; i++) {
        feed(&a, 20 + i * 3 % 60, keys[i % 4], i, false);
        feed(&b, 20 + i * 3 % 60, keys[i % 4], i, false);
    }
    wm(&a, SL_TS_MAX);
    wm(&b, SL_TS_MAX);
    /* a emitted some rows before the snapshot; b's output is the rest */
    char ra[2048];
    snprintf(ra, sizeof ra, "%s", rows(&a));
    const char *rb = rows(&b);
    assert_true(strlen(rb) > 0);
    assert_string_equal(ra + strlen(ra) - strlen(rb), rb);

    /* another gap: refused; damaged bytes: refused, nothing applied */
    sop c;
    sop_open(&c, 11, 0);
    it = 0;
    assert_true(sl__snap_writer_mem_next(w, &it, &kg, &data, &len));
    assert_int_equal(sl__session_vt.restore(c.st, kg, data, len), SL_EINVAL);
    unsigned char *bad = malloc(len);
    memcpy(bad, data, len);
    sop d;
    sop_open(&d, 10, 0);
    assert_int_equal(sl__session_vt.restore(d.st, kg, bad, len - 3), SL_ECORRUPT);
    assert_int_equal(sl__session_vt.restore(d.st, kg, bad, len), 0); /* intact: fine */
    free(bad);
    sl__snap_writer_free(w);
    sop_close(&a);
    sop_close(&b);
    sop_close(&c);
    sop_close(&d);
}

static void test_validation(void **state)
{
    (void)state;
    sl_schema *in = in_schema();
    void *conf;
    sl_schema *out;
    char err[256];
    sl_session_spec spec = {0, 0};
    assert_int_equal(sl__session_conf_new(&conf, &out, in, NULL, "ts", &spec, AGGS, 2, err,
                                          sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "gap_ms"));
    spec.gap_ms = 10;
    sl_agg_spec bad = {.kind = SL_AGG_SUM, .col = "k", .as = "s"};
    assert_int_equal(sl__session_conf_new(&conf, &out, in, NULL, "ts", &spec, &bad, 1, err,
                                          sizeof err), SL_EINVAL);
    assert_true(strncmp(err, "session: ", 9) == 0);
    sl_schema_free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sessions_merge_and_fire),
        cmocka_unit_test(test_lateness_and_order),
        cmocka_unit_test(test_snapshot_restore),
        cmocka_unit_test(test_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
