/* test_window.c — the window operator driven directly through its vtable:
 * window assignment, firing, lateness, canaries, dead letters, keyed
 * distinct counts, output order and batching; a randomised comparison with
 * a brute-force model; snapshots restored into one or several fresh
 * instances (rescaling) against an uncrashed run, and restores of corrupt
 * sections; and the validation in sl_stream_window(). */
#include "testutil.h"

#include <inttypes.h>
#include <stdio.h>

#include "core/snap.h"
#include "ops/agg.h"

#include <pthread.h>

/* winsnap.c's test hook: called by the snapshot writer before each group. */
extern void (*sl__winsnap_test_hook)(uint32_t i, uint32_t n);

/* The in-memory snapshot writer (src/core/snapmem.c). */
sl__snap_writer *sl__snap_writer_mem(void);
int sl__snap_writer_mem_next(sl__snap_writer *w, size_t *i, int32_t *kg,
                             const void **data, size_t *len);
void sl__snap_writer_free(sl__snap_writer *w);

/* Input: ts TIMESTAMP, k VARCHAR, u BIGINT, v BIGINT, n BIGINT. */
enum { C_TS, C_K, C_U, C_V, C_N };

static sl_schema *in_schema(void)
{
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "ts", SL_TIMESTAMP);
    sl_schema_add(s, "k", SL_STRING);
    sl_schema_add(s, "u", SL_INT64);
    sl_schema_add(s, "v", SL_INT64);
    sl_schema_add(s, "n", SL_INT64);
    return s;
}

typedef struct {
    int64_t ts;
    const char *k; /* NULL = NULL key */
    int64_t u, v, n;
    int null_ts, canary;
} rec;

/* G for the instances opened next (0: the context of the other tests). */
static int open_key_groups;
/* The state backend of the instances opened next (NULL: memory). */
static const sl__state_conf *open_state;

/* An operator instance with everything it hangs off. */
typedef struct {
    sl_schema *in, *out;
    void *conf, *st;
    int key_cols[4];
    sl__opinfo info;
    sl__ctx ctx;
    tu_sink sink;
} wop;

static const sl_agg_spec COUNT_ONLY[] = {
    {.kind = SL_AGG_COUNT, .as = "events"},
};
static const sl_agg_spec COUNT_AND_DISTINCT[] = {
    {.kind = SL_AGG_COUNT, .as = "events"},
    {.kind = SL_AGG_COUNT_DISTINCT, .col = "u", .as = "subscribers"},
};

static void wop_open_keys(wop *w, sl_window_spec spec, const char *const *keys,
                          const sl_agg_spec *aggs, size_t naggs, uint32_t cap)
{
    memset(w, 0, sizeof *w);
    w->in = in_schema();
    char err[256];
    if (sl__window_conf_new(&w->conf, &w->out, w->in, keys, "ts", &spec, aggs,
                            naggs, err, sizeof err) != 0)
        fail_msg("conf: %s", err);
    int nkey = 0;
    while (keys && keys[nkey]) {
        w->key_cols[nkey] = sl_schema_find(w->in, keys[nkey]);
        nkey++;
    }
    w->info = (sl__opinfo){.in = w->in, .out = w->out, .time_col = C_TS,
                           .key_cols = nkey ? w->key_cols : NULL,
                           .nkey = nkey, .batch_cap = cap};
    w->ctx = tu_ctx();
    w->ctx.key_groups = open_key_groups;
    w->ctx.state = open_state;
    /* the window cache's share of the bound is split between the tasks:
     * as one of 512 tasks, the instance caches 4 KiB and spills often */
    if (open_state && open_state->backend == SL__STATE_ROCKSDB) w->ctx.ntasks = 512;
    tu_sink_init(&w->sink, cap);
    if (sl__window_vt.open(&w->st, w->conf, &w->info, &w->ctx, err,
                           sizeof err) != 0)
        fail_msg("open: %s", err);
}

static void wop_open(wop *w, sl_window_spec spec, bool keyed,
                     const sl_agg_spec *aggs, size_t naggs)
{
    static const char *const key_k[] = {"k", NULL};
    wop_open_keys(w, spec, keyed ? key_k : NULL, aggs, naggs, 1024);
}

static void wop_close(wop *w)
{
    sl__window_vt.close(w->st);
    sl__window_vt.conf_free(w->conf);
    tu_sink_free(&w->sink);
    sl_schema_free(w->out);
    sl_schema_free(w->in);
}

static void feed(wop *w, const rec *r, size_t n)
{
    sl_batch *b = sl__batch_new(w->in, (uint32_t)(n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        ((int64_t *)b->cols[C_TS].data)[i] = r[i].ts;
        b->cols[C_TS].valid[i] = !r[i].null_ts;
        const char *k = r[i].k ? r[i].k : "";
        sl_batch_set_str(b, C_K, i, k, strlen(k));
        b->cols[C_K].valid[i] = r[i].k != NULL;
        ((int64_t *)b->cols[C_U].data)[i] = r[i].u;
        ((int64_t *)b->cols[C_V].data)[i] = r[i].v;
        ((int64_t *)b->cols[C_N].data)[i] = r[i].n;
        b->kind[i] = r[i].canary ? SL_KIND_CANARY : SL_KIND_DATA;
    }
    b->n = (uint32_t)n;
    assert_int_equal(sl__window_vt.batch(w->st, b, &w->sink.out), 0);
}

static void feed1(wop *w, int64_t ts, const char *k, int64_t u)
{
    rec r = {.ts = ts, .k = k, .u = u};
    feed(w, &r, 1);
}

static void wm(wop *w, int64_t t)
{
    int rc; /* SL__MORE: a RocksDB firing goes on, as the runtime would call */
    while ((rc = sl__window_vt.watermark(w->st, t, &w->sink.out)) == SL__MORE) {
    }
    assert_int_equal(rc, 0);
}

/* One output row, flattened from the captured batches. */
typedef struct {
    int64_t start, end;
    int key_null;
    char key[32];
    int64_t agg[2];
} out_row;

static size_t collect(wop *w, out_row *o, size_t max, size_t nagg,
                      bool keyed)
{
    size_t n = 0;
    for (int b = 0; b < w->sink.n; b++) {
        sl_batch *x = w->sink.got[b];
        assert_ptr_equal(x->schema, w->out);
        for (uint32_t r = 0; r < x->n; r++) {
            if (x->kind[r] != SL_KIND_DATA) continue; /* forwarded canaries */
            assert_true(n < max);
            out_row *e = &o[n++];
            memset(e, 0, sizeof *e);
            e->start = ((int64_t *)x->cols[0].data)[r];
            e->end = ((int64_t *)x->cols[1].data)[r];
            int c = 2;
            if (keyed) {
                e->key_null = !x->cols[2].valid[r];
                sl_str s = ((sl_str *)x->cols[2].data)[r];
                if (!e->key_null)
                    snprintf(e->key, sizeof e->key, "%.*s", (int)s.len,
                             s.ptr);
                c = 3;
            }
            for (size_t a = 0; a < nagg; a++) {
                assert_true(x->cols[c + a].valid[r]);
                e->agg[a] = ((int64_t *)x->cols[c + a].data)[r];
            }
        }
    }
    return n;
}

/* ---- assignment ------------------------------------------------------------ */
static void tumbling(void **state)
{
    (void)state;
    wop w;
    wop_open(&w, (sl_window_spec){.size_ms = 10}, false, COUNT_ONLY, 1);
    /* Output schema: window_start, window_end, then the aggregates. */
    assert_int_equal(sl_schema_ncols(w.out), 3);
    assert_string_equal(sl_schema_col_name(w.out, 0), "window_start");
    assert_int_equal(sl_schema_col_type(w.out, 1), SL_TIMESTAMP);
    assert_string_equal(sl_schema_col_name(w.out, 2), "events");
    rec r[] = {{.ts = 0}, {.ts = 5},  {.ts = 9},   {.ts = 10},
               {.ts = 19}, {.ts = -1}, {.ts = -10}, {.ts = -11}};
    feed(&w, r, 8);
    assert_int_equal(w.sink.n, 0);
    wm(&w, SL_TS_MAX); /* end of input fires everything, in order */
    out_row o[8];
    assert_int_equal(collect(&w, o, 8, 1, false), 4);
    int64_t want[4][3] = {{-20, -10, 1}, {-10, 0, 2}, {0, 10, 3}, {10, 20, 2}};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(o[i].start, want[i][0]);
        assert_int_equal(o[i].end, want[i][1]);
        assert_int_equal(o[i].agg[0], want[i][2]);
    }
    sl__window_stats st;
    sl__window_stats_get(w.st, &st);
    assert_int_equal(st.open_windows, 0);
    assert_int_equal(st.fired_windows, 4);
    wop_close(&w);
}

static void hop(void **state)
{
    (void)state;
    wop w;
    wop_open(&w, (sl_window_spec){.size_ms = 10, .slide_ms = 5}, false,
             COUNT_ONLY, 1);
    /* 7 -> [0,10) [5,15); -3 -> [-10,0) [-5,5); 5 -> [0,10) [5,15);
     * -5 -> [-10,0) [-5,5). */
    rec r[] = {{.ts = 7}, {.ts = -3}, {.ts = 5}, {.ts = -5}};
    feed(&w, r, 4);
    sl__window_stats st;
    sl__window_stats_get(w.st, &st);
    assert_int_equal(st.open_windows, 4);
    wm(&w, 5); /* fires [-10,0) and [-5,5) */
    out_row o[8];
    assert_int_equal(collect(&w, o, 8, 1, false), 2);
    assert_int_equal(o[0].start, -10);
    assert_int_equal(o[0].agg[0], 2);
    assert_int_equal(o[1].start, -5);
    assert_int_equal(o[1].end, 5);
    assert_int_equal(o[1].agg[0], 2);
    tu_sink_free(&w.sink);
    wm(&w, SL_TS_MAX);
    assert_int_equal(collect(&w, o, 8, 1, false), 2);
    assert_int_equal(o[0].start, 0);
    assert_int_equal(o[0].agg[0], 2);
    assert_int_equal(o[1].start, 5);
    assert_int_equal(o[1].end, 15);
    assert_int_equal(o[1].agg[0], 2);
    wop_close(&w);
}

/* Timestamps whose windows leave int64 are dead letters, not wrap-arounds. */
static void extreme_times(void **state)
{
    (void)state;
    wop w;
    wop_open(&w, (sl_window_spec){.size_ms = 60000}, false, COUNT_ONLY, 1);
    uint64_t dl = sl__test_counter(SL__CTR_DEAD_LETTERS);
    rec r[] = {{.ts = INT64_MIN}, {.ts = INT64_MAX}, {.ts = INT64_MIN + 120000},
               {.ts = 0}};
    feed(&w, r, 4);
    assert_int_equal(sl__test_counter(SL__CTR_DEAD_LETTERS) - dl, 2);
    assert_true(strncmp(sl__test_last_dead_letter(), "time_out_of_range@",
                        18) == 0);
    wm(&w, SL_TS_MAX);
    out_row o[4];
    assert_int_equal(collect(&w, o, 4, 1, false), 2);
    assert_true(o[0].start <= INT64_MIN + 120000 && o[0].start > INT64_MIN);
    assert_int_equal(o[1].start, 0);
    wop_close(&w);
}

/* ---- firing and lateness ---------------------------------------------------- */
static void fires_at_end_plus_lateness(void **state)
{
    (void)state;
    wop w;
    wop_open(&w, (sl_window_spec){.size_ms = 10, .lateness_ms = 5}, false,
             COUNT_ONLY, 1);
    uint64_t fired = sl__test_counter(SL__CTR_WINDOWS_FIRED);
    feed1(&w, 3, NULL, 0);
    wm(&w, 10);
    wm(&w, 14);
    assert_int_equal(w.sink.n, 0);
    wm(&w, 15);
    assert_int_equal(tu_sink_rows(&w.sink), 1);
    assert_int_equal(sl__test_counter(SL__CTR_WINDOWS_FIRED) - fired, 1);
    wm(&w, 100); /* fires once */
    wm(&w, SL_TS_MAX);
    assert_int_equal(tu_sink_rows(&w.sink), 1);
    wop_close(&w);

    /* Without lateness: exactly at the end. */
    wop_open(&w, (sl_window_spec){.size_ms = 10}, false, COUNT_ONLY, 1);
    feed1(&w, 9, NULL, 0);
    wm(&w, 9);
    assert_int_equal(w.sink.n, 0);
    wm(&w, 10);
    assert_int_equal(tu_sink_rows(&w.sink), 1);
    wop_close(&w);
}

static void out_of_order_within_bound(void **state)
{
    (void)state;
    wop w;
    wop_open(&w, (sl_window_spec){.size_ms = 10}, false, COUNT_ONLY, 1);
    feed1(&w, 12, NULL, 0);
    wm(&w, 8);
    feed1(&w, 3, NULL, 0); /* behind the newest record, not the watermark */
    feed1(&w, 9, NULL, 0);
    wm(&w, 10);
    out_row o[4];
    assert_int_equal(collect(&w, o, 4, 1, false), 1);
    assert_int_equal(o[0].start, 0);
    assert_int_equal(o[0].agg[0], 2);
    tu_sink_free(&w.sink);
    wm(&w, 20);
    assert_int_equal(collect(&w, o, 4, 1, false), 1);
    assert_int_equal(o[0].start, 10);
    assert_int_equal(o[0].agg[0], 1);
    wop_close(&w);
}

static void late_records(void **state)
{
    (void)state;
    wop w;
    wop_open(&w, (sl_window_spec){.size_ms = 10}, false, COUNT_ONLY, 1);
    uint64_t late0 = sl__test_counter(SL__CTR_LATE);
    feed1(&w, 5, NULL, 0);
    wm(&w, 10);
    assert_int_equal(tu_sink_rows(&w.sink), 1);
    rec r[] = {{.ts = 7}, {.ts = 0}, {.ts = 10}, {.ts = -3}};
    feed(&w, r, 4); /* 7, 0 late for [0,10); -3 for [-10,0); 10 on time */
    assert_int_equal(sl__test_counter(SL__CTR_LATE) - late0, 3);
    assert_int_equal(sl__window_late_count(w.st, 10), 2);
    assert_int_equal(sl__window_late_count(w.st, 0), 1);
    assert_int_equal(sl__window_late_count(w.st, 20), 0);
    sl__window_stats st;
    sl__window_stats_get(w.st, &st);
    assert_int_equal(st.late_records, 3);
    assert_int_equal(st.open_windows, 1); /* late records open nothing */
    wm(&w, SL_TS_MAX);
    out_row o[4];
    assert_int_equal(collect(&w, o, 4, 1, false), 2);
    assert_int_equal(o[0].start, 0);
    assert_int_equal(o[0].agg[0], 1); /* never aggregated */
    assert_int_equal(o[1].start, 10);
    assert_int_equal(o[1].agg[0], 1);
    wop_close(&w);
}

static void lateness_keeps_window_open(void **state)
{
    (void)state;
    wop w;
    wop_open(&w, (sl_window_spec){.size_ms = 10, .lateness_ms = 5}, false,
             COUNT_ONLY, 1);
    uint64_t late0 = sl__test_counter(SL__CTR_LATE);
    feed1(&w, 5, NULL, 0);
    wm(&w, 12); /* past the end, within the lateness */
    feed1(&w, 8, NULL, 0);
    assert_int_equal(sl__test_counter(SL__CTR_LATE), late0);
    wm(&w, 15);
    feed1(&w, 9, NULL, 0); /* now it is late */
    assert_int_equal(sl__test_counter(SL__CTR_LATE) - late0, 1);
    out_row o[4];
    assert_int_equal(collect(&w, o, 4, 1, false), 1);
    assert_int_equal(o[0].agg[0], 2);
    wop_close(&w);
}

/* A hop record late for some of its windows still counts in the others. */
static void hop_partly_late(void **state)
{
    (void)state;
    wop w;
    wop_open(&w, (sl_window_spec){.size_ms = 10, .slide_ms = 5}, false,
             COUNT_ONLY, 1);
    uint64_t late0 = sl__test_counter(SL__CTR_LATE);
    feed1(&w, 1, NULL, 0);
    wm(&w, 10); /* fires [-5,5) and [0,10) */
    assert_int_equal(tu_sink_rows(&w.sink), 2);
    tu_sink_free(&w.sink);
    feed1(&w, 7, NULL, 0); /* [0,10) fired, [5,15) open */
    assert_int_equal(sl__test_counter(SL__CTR_LATE), late0);
    assert_int_equal(sl__window_late_count(w.st, 10), 1);
    sl__window_stats st;
    sl__window_stats_get(w.st, &st);
    assert_int_equal(st.late_pairs, 1);
    assert_int_equal(st.late_records, 0);
    feed1(&w, 2, NULL, 0); /* both windows fired: a late record */
    assert_int_equal(sl__test_counter(SL__CTR_LATE) - late0, 1);
    wm(&w, SL_TS_MAX);
    out_row o[4];
    assert_int_equal(collect(&w, o, 4, 1, false), 1);
    assert_int_equal(o[0].start, 5);
    assert_int_equal(o[0].agg[0], 1);
    wop_close(&w);
}

static void watermark_never_goes_back(void **state)
{
    (void)state;
    wop w;
    wop_open(&w, (sl_window_spec){.size_ms = 10}, false, COUNT_ONLY, 1);
    wm(&w, 20);
    wm(&w, 5);
    uint64_t late0 = sl__test_counter(SL__CTR_LATE);
    feed1(&w, 15, NULL, 0);
    assert_int_equal(sl__test_counter(SL__CTR_LATE) - late0, 1);
    sl__window_stats st;
    sl__window_stats_get(w.st, &st);
    assert_int_equal(st.watermark, 20);
    wop_close(&w);
}

/* ---- rows that are not aggregated ------------------------------------------- */
static void canaries_and_null_time(void **state)
{
    (void)state;
    wop w;
    wop_open(&w, (sl_window_spec){.size_ms = 10}, true, COUNT_AND_DISTINCT, 2);
    uint64_t dl = sl__test_counter(SL__CTR_DEAD_LETTERS);
    rec r[] = {
        {.ts = 1, .k = "SMS", .u = 1},
        {.ts = 2, .k = "SMS", .u = 2, .canary = 1},
        {.k = "SMS", .u = 3, .null_ts = 1},
        {.ts = 3, .k = "CALL", .u = 4, .canary = 1},
    };
    feed(&w, r, 4);
    assert_int_equal(sl__test_counter(SL__CTR_DEAD_LETTERS) - dl, 1);
    assert_true(strncmp(sl__test_last_dead_letter(), "null_time@", 10) == 0);
    sl__window_stats st;
    sl__window_stats_get(w.st, &st);
    assert_int_equal(st.canaries, 2);
    assert_int_equal(st.null_time, 1);
    assert_int_equal(st.open_groups, 1);
    /* the canaries were forwarded at once, before any window fired: their
     * window and key, NULL aggregates, their kind kept */
    assert_int_equal(w.sink.n, 1);
    sl_batch *cb = w.sink.got[0];
    assert_int_equal(cb->n, 2);
    for (uint32_t i = 0; i < 2; i++) {
        assert_int_not_equal(cb->kind[i], SL_KIND_DATA);
        assert_int_equal(((int64_t *)cb->cols[0].data)[i], 0);
        assert_int_equal(((int64_t *)cb->cols[1].data)[i], 10);
        assert_int_equal(cb->cols[3].valid[i], 0);
        assert_int_equal(cb->cols[4].valid[i], 0);
    }
    assert_memory_equal(((sl_str *)cb->cols[2].data)[0].ptr, "SMS", 3);
    assert_memory_equal(((sl_str *)cb->cols[2].data)[1].ptr, "CALL", 4);
    wm(&w, SL_TS_MAX);
    out_row o[4];
    assert_int_equal(collect(&w, o, 4, 2, true), 1);
    assert_string_equal(o[0].key, "SMS");
    assert_int_equal(o[0].agg[0], 1);
    assert_int_equal(o[0].agg[1], 1);
    wop_close(&w);
}

/* ---- keys ----------------------------------------------------------------------- */
static void keyed_distinct(void **state)
{
    (void)state;
    wop w;
    wop_open(&w, (sl_window_spec){.size_ms = 60000}, true, COUNT_AND_DISTINCT,
             2);
    assert_int_equal(sl_schema_ncols(w.out), 5);
    assert_string_equal(sl_schema_col_name(w.out, 2), "k");
    assert_int_equal(sl_schema_col_type(w.out, 2), SL_STRING);
    assert_string_equal(sl_schema_col_name(w.out, 4), "subscribers");
    rec r[] = {
        {.ts = 1000, .k = "SMS_SENT", .u = 42},
        {.ts = 2000, .k = "CALL_PLACED", .u = 42},
        {.ts = 3000, .k = "SMS_SENT", .u = 42},
        {.ts = 4000, .k = "SMS_SENT", .u = 0}, /* pseudonym 0 is a value */
        {.ts = 5000, .k = "SMS_SENT", .u = -7},
        {.ts = 6000, .k = NULL, .u = 1},
        {.ts = 61000, .k = "SMS_SENT", .u = 42},
        {.ts = 7000, .k = "CALL_PLACED", .u = 43},
        {.ts = 8000, .k = "CALL_PLACED", .u = 42},
    };
    feed(&w, r, 5);
    feed(&w, r + 5, 4); /* groups persist across batches */
    wm(&w, SL_TS_MAX);
    out_row o[8];
    assert_int_equal(collect(&w, o, 8, 2, true), 4);
    /* Windows in order; within one, keys ascending with NULL first. */
    assert_int_equal(o[0].start, 0);
    assert_true(o[0].key_null);
    assert_int_equal(o[0].agg[0], 1);
    assert_string_equal(o[1].key, "CALL_PLACED");
    assert_int_equal(o[1].agg[0], 3);
    assert_int_equal(o[1].agg[1], 2);
    assert_string_equal(o[2].key, "SMS_SENT");
    assert_int_equal(o[2].agg[0], 4);
    assert_int_equal(o[2].agg[1], 3);
    assert_int_equal(o[3].start, 60000);
    assert_int_equal(o[3].end, 120000);
    assert_string_equal(o[3].key, "SMS_SENT");
    assert_int_equal(o[3].agg[1], 1);
    wop_close(&w);
}

/* Two key columns of different types; keys decode back to their values,
 * strings with NUL bytes included, and sort by value. */
static void multi_key_order(void **state)
{
    (void)state;
    static const char *const keys[] = {"n", "k", NULL};
    wop w;
    wop_open_keys(&w, (sl_window_spec){.size_ms = 100}, keys, COUNT_ONLY, 1,
                  1024);
    assert_string_equal(sl_schema_col_name(w.out, 2), "n");
    assert_string_equal(sl_schema_col_name(w.out, 3), "k");
    sl_batch *b = sl__batch_new(w.in, 8);
    struct {
        int64_t n;
        const char *k;
        size_t klen;
    } in[] = {{10, "b", 1}, {-5, "z", 1}, {3, "a\0b", 3}, {3, "a", 1},
              {INT64_MIN, "", 0}, {-5, "z", 1}, {3, "a\0a", 3}};
    for (uint32_t i = 0; i < 7; i++) {
        ((int64_t *)b->cols[C_TS].data)[i] = 50;
        ((int64_t *)b->cols[C_N].data)[i] = in[i].n;
        sl_batch_set_str(b, C_K, i, in[i].k, in[i].klen);
    }
    b->n = 7;
    assert_int_equal(sl__window_vt.batch(w.st, b, &w.sink.out), 0);
    wm(&w, SL_TS_MAX);
    assert_int_equal(w.sink.n, 1);
    sl_batch *x = w.sink.got[0];
    assert_int_equal(x->n, 6);
    int64_t want_n[] = {INT64_MIN, -5, 3, 3, 3, 10};
    const char *want_k[] = {"", "z", "a", "a\0a", "a\0b", "b"};
    size_t want_len[] = {0, 1, 1, 3, 3, 1};
    int64_t want_c[] = {1, 2, 1, 1, 1, 1};
    for (uint32_t r = 0; r < 6; r++) {
        assert_int_equal(((int64_t *)x->cols[2].data)[r], want_n[r]);
        sl_str s = ((sl_str *)x->cols[3].data)[r];
        assert_int_equal(s.len, want_len[r]);
        assert_memory_equal(s.ptr, want_k[r], s.len);
        assert_int_equal(((int64_t *)x->cols[4].data)[r], want_c[r]);
    }
    wop_close(&w);
}

/* Output comes in batches of the output's capacity, across windows. */
static void output_batching(void **state)
{
    (void)state;
    static const char *const keys[] = {"k", NULL};
    wop w;
    wop_open_keys(&w, (sl_window_spec){.size_ms = 10}, keys, COUNT_ONLY, 1, 2);
    rec r[] = {{.ts = 1, .k = "a"}, {.ts = 2, .k = "b"}, {.ts = 3, .k = "c"},
               {.ts = 11, .k = "a"}, {.ts = 12, .k = "b"}};
    feed(&w, r, 5);
    wm(&w, SL_TS_MAX);
    assert_int_equal(w.sink.n, 3);
    assert_int_equal(w.sink.got[0]->n, 2);
    assert_int_equal(w.sink.got[1]->n, 2);
    assert_int_equal(w.sink.got[2]->n, 1);
    out_row o[8];
    assert_int_equal(collect(&w, o, 8, 1, true), 5);
    assert_string_equal(o[2].key, "c");
    assert_int_equal(o[3].start, 10);
    wop_close(&w);
}

/* No aggregates: the distinct keys of each window. */
static void keys_only(void **state)
{
    (void)state;
    static const char *const keys[] = {"k", NULL};
    wop w;
    wop_open_keys(&w, (sl_window_spec){.size_ms = 10}, keys, NULL, 0, 16);
    assert_int_equal(sl_schema_ncols(w.out), 3);
    rec r[] = {{.ts = 1, .k = "b"}, {.ts = 2, .k = "a"}, {.ts = 3, .k = "b"}};
    feed(&w, r, 3);
    wm(&w, SL_TS_MAX);
    out_row o[4];
    assert_int_equal(collect(&w, o, 4, 0, true), 2);
    assert_string_equal(o[0].key, "a");
    assert_string_equal(o[1].key, "b");
    wop_close(&w);
}

/* ---- randomised comparison with a model -------------------------------------- */
/* Records arrive with bounded disorder, in random batches, between random
 * watermarks; the model assigns each record to each of its windows unless
 * that window's end + lateness had been reached by the watermark at
 * arrival, and the output must match it exactly. */
static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state += 0x9e3779b97f4a7c15ULL;
    return sl__mix64(rng_state);
}

#define MODEL_KEYS 5
#define MODEL_USERS 40

typedef struct {
    int64_t start;
    int64_t count[MODEL_KEYS];
    uint64_t users[MODEL_KEYS]; /* bit set of the users seen */
} model_win;

static uint64_t model_spills; /* RocksDB cache write-outs in `randomised` */

static void randomised(void **state)
{
    (void)state;
    uint64_t seed = 20240601;
    const char *env = getenv("SEED");
    if (env) seed = strtoull(env, NULL, 10);
    printf("  seed %" PRIu64 " (set SEED to reproduce)\n", seed);
    rng_state = seed;
    static const char *const names[MODEL_KEYS] = {"CALL", "DATA", "SMS", "X",
                                                  "Y"};
    uint64_t total_rows = 0, total_late = 0, total_late_pairs = 0;
    for (int round = 0; round < 20; round++) {
        int64_t size = 10 * (int64_t)(1 + rnd() % 6);
        int64_t slide = rnd() % 2 ? 0 : size / (int64_t)(1 + rnd() % 2) / 1;
        if (slide && size % slide) slide = 0;
        int64_t lateness = rnd() % 3 == 0 ? 0 : (int64_t)(rnd() % 25);
        int64_t disorder = (int64_t)(rnd() % 40);
        wop w;
        wop_open(&w, (sl_window_spec){.size_ms = size, .slide_ms = slide,
                                      .lateness_ms = lateness},
                 true, COUNT_AND_DISTINCT, 2);
        int64_t step = slide ? slide : size;
        enum { NREC = 3000, NW = 1600 };
        model_win *mw = calloc(NW, sizeof *mw);
        int64_t base = -400; /* some negative times too */
        int64_t wmark = SL_TS_MIN, clock = base;
        uint64_t late = 0, late0 = sl__test_counter(SL__CTR_LATE);
        rec batch[64];
        int nb = 0;
        for (int i = 0; i < NREC; i++) {
            clock += (int64_t)(rnd() % 3);
            rec r = {.ts = clock - (int64_t)(rnd() % (uint64_t)(disorder + 1)),
                     .k = names[rnd() % MODEL_KEYS],
                     .u = (int64_t)(rnd() % MODEL_USERS)};
            /* Model: assign to open windows at this watermark. Records in
             * one batch see the watermark of the batch. */
            int key = 0;
            while (strcmp(names[key], r.k) != 0) key++;
            int64_t last = sl__floor_div(r.ts, step) * step;
            bool any = false;
            for (int64_t s = last; s > r.ts - size; s -= step) {
                if (s + size + lateness <= wmark) continue;
                any = true;
                int64_t idx = sl__floor_div(s - base, step) + 64;
                assert_true(idx >= 0 && idx < NW);
                mw[idx].start = s;
                mw[idx].count[key]++;
                mw[idx].users[key] |= (uint64_t)1 << r.u;
            }
            late += !any;
            batch[nb++] = r;
            if (nb == 64 || rnd() % 8 == 0) {
                feed(&w, batch, (size_t)nb);
                nb = 0;
                if (rnd() % 3 == 0 && clock - disorder > wmark) {
                    /* Watermarks sometimes overtake stragglers on purpose. */
                    wmark = clock - disorder + (int64_t)(rnd() % 10);
                    wm(&w, wmark);
                }
            }
        }
        if (nb) feed(&w, batch, (size_t)nb);
        wm(&w, SL_TS_MAX);
        assert_int_equal(sl__test_counter(SL__CTR_LATE) - late0, late);

        out_row *o = calloc(NW * MODEL_KEYS, sizeof *o);
        size_t n = collect(&w, o, NW * MODEL_KEYS, 2, true);
        size_t k = 0;
        for (int idx = 0; idx < NW; idx++) {
            for (int key = 0; key < MODEL_KEYS; key++) {
                if (!mw[idx].count[key]) continue;
                if (k >= n)
                    fail_msg("round %d: missing window %" PRId64 " %s", round,
                             mw[idx].start, names[key]);
                assert_int_equal(o[k].start, mw[idx].start);
                assert_int_equal(o[k].end, mw[idx].start + size);
                assert_string_equal(o[k].key, names[key]);
                assert_int_equal(o[k].agg[0], mw[idx].count[key]);
                assert_int_equal(o[k].agg[1],
                                 __builtin_popcountll(mw[idx].users[key]));
                k++;
            }
        }
        assert_int_equal(k, n);
        sl__window_stats st;
        sl__window_stats_get(w.st, &st);
        model_spills += st.spills;
        total_rows += n;
        total_late += late;
        total_late_pairs += st.late_pairs;
        free(o);
        free(mw);
        wop_close(&w);
    }
    printf("  %" PRIu64 " groups, %" PRIu64 " late records, %" PRIu64
           " late (record, window) pairs\n",
           total_rows, total_late, total_late_pairs);
    /* The generator must exercise lateness, or the test proves little. */
    assert_true(total_late > 0);
    assert_true(total_late_pairs >= total_late);
}

/* ---- checkpoints ---------------------------------------------------------------------- */
#define CK_G 8 /* key groups in these tests */

static const double HIST_BOUNDS[] = {10, 100, 1000};
/* Every kind of aggregate, so every state's serialised form is exercised:
 * integer and string distinct sets, HyperLogLog, sums, averages, extrema,
 * histograms. */
static const sl_agg_spec CK_AGGS_K[] = {
    {.kind = SL_AGG_COUNT, .as = "events"},
    {.kind = SL_AGG_COUNT_DISTINCT, .col = "u", .as = "users"},
    {.kind = SL_AGG_APPROX_COUNT_DISTINCT, .col = "u", .as = "approx"},
    {.kind = SL_AGG_SUM, .col = "v", .as = "sum_v"},
    {.kind = SL_AGG_AVG, .col = "v", .as = "avg_v"},
    {.kind = SL_AGG_MIN, .col = "ts", .as = "first"},
    {.kind = SL_AGG_MAX, .col = "v", .as = "max_v"},
    {.kind = SL_AGG_HISTOGRAM, .col = "v", .as = "hist",
     .bounds = HIST_BOUNDS, .nbounds = 3},
};
static const sl_agg_spec CK_AGGS_N[] = {
    {.kind = SL_AGG_COUNT, .as = "events"},
    {.kind = SL_AGG_COUNT_DISTINCT, .col = "k", .as = "names"},
    {.kind = SL_AGG_SUM, .col = "v", .as = "sum_v"},
    {.kind = SL_AGG_COUNT, .col = "k", .as = "named"},
};

static sl_batch *make_batch(const sl_schema *in, const rec *r, size_t n)
{
    sl_batch *b = sl__batch_new(in, (uint32_t)(n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        ((int64_t *)b->cols[C_TS].data)[i] = r[i].ts;
        b->cols[C_TS].valid[i] = !r[i].null_ts;
        const char *k = r[i].k ? r[i].k : "";
        sl_batch_set_str(b, C_K, (uint32_t)i, k, strlen(k));
        b->cols[C_K].valid[i] = r[i].k != NULL;
        ((int64_t *)b->cols[C_U].data)[i] = r[i].u;
        ((int64_t *)b->cols[C_V].data)[i] = r[i].v;
        ((int64_t *)b->cols[C_N].data)[i] = r[i].n;
        b->kind[i] = r[i].canary ? SL_KIND_CANARY : SL_KIND_DATA;
    }
    b->n = (uint32_t)n;
    return b;
}

/* Routes the rows like the exchange does: key group g < cut goes to lo,
 * the others to hi. */
static void feed_split(wop *lo, wop *hi, int cut, const rec *r, size_t n)
{
    sl_batch *b = make_batch(lo->in, r, n);
    uint32_t rows[2][256], nr[2] = {0, 0};
    assert_true(n <= 256);
    for (uint32_t i = 0; i < b->n; i++) {
        int g = sl__key_group(b, lo->info.key_cols, lo->info.nkey, i, CK_G);
        assert_true(g >= 0 && g < CK_G);
        int t = g >= cut;
        rows[t][nr[t]++] = i;
    }
    wop *dst[2] = {lo, hi};
    for (int t = 0; t < 2; t++) {
        sl_batch *x = sl__batch_new(lo->in, (uint32_t)(n ? n : 1));
        sl__batch_append(x, b, rows[t], nr[t]);
        assert_int_equal(sl__window_vt.batch(dst[t]->st, x,
                                             &dst[t]->sink.out),
                         0);
    }
    sl__batch_free(b);
}

/* One output row as text, with its window and key for ordering. */
typedef struct {
    int64_t start;
    int knull;
    int64_t ki;
    char ks[32];
    char text[256];
} frow;

static void cell_text(const sl_batch *b, int c, uint32_t r, char *out,
                      size_t size)
{
    if (!b->cols[c].valid[r]) {
        snprintf(out, size, "NULL");
        return;
    }
    switch (b->schema->cols[c].type) {
    case SL_STRING: {
        sl_str s = ((const sl_str *)b->cols[c].data)[r];
        snprintf(out, size, "'%.*s'", (int)s.len, s.ptr);
        break;
    }
    case SL_FLOAT64:
        snprintf(out, size, "%.17g", ((const double *)b->cols[c].data)[r]);
        break;
    case SL_BOOL:
        snprintf(out, size, "%d", ((const uint8_t *)b->cols[c].data)[r]);
        break;
    default:
        snprintf(out, size, "%" PRId64, ((const int64_t *)b->cols[c].data)[r]);
        break;
    }
}

/* Appends the rows of the sink's batches [from, n) to *rows. */
static size_t flatten(const tu_sink *s, int from, frow **rows, size_t n)
{
    for (int bi = from; bi < s->n; bi++) {
        const sl_batch *b = s->got[bi];
        for (uint32_t r = 0; r < b->n; r++) {
            if (b->kind[r] != SL_KIND_DATA) continue; /* forwarded canaries */
            *rows = realloc(*rows, (n + 1) * sizeof **rows);
            frow *f = &(*rows)[n++];
            memset(f, 0, sizeof *f);
            f->start = ((const int64_t *)b->cols[0].data)[r];
            f->knull = !b->cols[2].valid[r];
            if (f->knull) {
                /* the key's value is undefined */
            } else if (b->schema->cols[2].type == SL_STRING) {
                sl_str k = ((const sl_str *)b->cols[2].data)[r];
                snprintf(f->ks, sizeof f->ks, "%.*s", (int)k.len, k.ptr);
            } else {
                f->ki = ((const int64_t *)b->cols[2].data)[r];
            }
            size_t used = 0;
            for (int c = 0; c < b->schema->n; c++) {
                char cell[64];
                cell_text(b, c, r, cell, sizeof cell);
                used += (size_t)snprintf(f->text + used, sizeof f->text - used,
                                         "%s%s", c ? "|" : "", cell);
                assert_true(used < sizeof f->text);
            }
        }
    }
    return n;
}

/* The operator's output order: window, then key (NULL first). */
static int frow_cmp(const void *x, const void *y)
{
    const frow *a = x, *b = y;
    if (a->start != b->start) return a->start < b->start ? -1 : 1;
    if (a->knull != b->knull) return a->knull ? -1 : 1;
    if (a->ki != b->ki) return a->ki < b->ki ? -1 : 1;
    return strcmp(a->ks, b->ks);
}

static void assert_same_rows(const frow *a, size_t na, const frow *b,
                             size_t nb)
{
    for (size_t i = 0; i < na && i < nb; i++)
        if (strcmp(a[i].text, b[i].text) != 0)
            fail_msg("row %zu differs:\n  uncrashed %s\n  restored  %s", i,
                     a[i].text, b[i].text);
    assert_int_equal(na, nb);
}

static void assert_same_counters(const sl__window_stats *a,
                                 const sl__window_stats *b)
{
    assert_int_equal(a->late_records, b->late_records);
    assert_int_equal(a->late_pairs, b->late_pairs);
    assert_int_equal(a->canaries, b->canaries);
    assert_int_equal(a->null_time, b->null_time);
    assert_int_equal(a->bad_time, b->bad_time);
    assert_int_equal(a->fired_windows, b->fired_windows);
    assert_int_equal(a->fired_groups, b->fired_groups);
}

/* Disordered input with late records, canaries and NULL times; key n is a
 * small integer, key k one of 24 names or NULL. */
static rec *ck_input(size_t n, int64_t disorder)
{
    static const char *const names[] = {
        "a0", "b1", "c2", "d3", "e4", "f5", "g6", "h7", "i8", "j9", "k10",
        "l11", "m12", "n13", "o14", "p15", "q16", "r17", "s18", "t19", "u20",
        "v21", "w22", "x23"};
    rec *r = calloc(n, sizeof *r);
    int64_t clock = -500;
    for (size_t i = 0; i < n; i++) {
        clock += (int64_t)(rnd() % 3);
        uint64_t x = rnd();
        r[i].ts = clock - (int64_t)(x % (uint64_t)(disorder + 1));
        r[i].k = x % 31 == 0 ? NULL : names[(x >> 8) % 24];
        r[i].u = (int64_t)((x >> 16) % 5000);
        r[i].v = (int64_t)((x >> 32) % 3000) - 100;
        r[i].n = (int64_t)((x >> 48) % 17) - 8;
        r[i].canary = x % 97 == 1;
        r[i].null_ts = x % 499 == 2;
    }
    return r;
}

typedef struct {
    sl_window_spec spec;
    const char *key;
    const sl_agg_spec *aggs;
    size_t naggs;
} ck_case;

static void ck_open(wop *w, const ck_case *c)
{
    const char *keys[] = {c->key, NULL};
    open_key_groups = CK_G;
    wop_open_keys(w, c->spec, keys, c->aggs, c->naggs, 1024);
    open_key_groups = 0;
}

/* The watermark after chunk i of the input (64 records): the chunk's last
 * time, minus a little, plus sometimes enough to overtake stragglers. */
#define CK_CHUNK 64
static int64_t ck_wm_after(const rec *r, size_t i, int64_t disorder)
{
    return r[(i + 1) * CK_CHUNK - 1].ts + (int64_t)(i % 7) * 4 - disorder / 4;
}

/* The uncrashed run A takes a snapshot after `cut` chunks and goes on. The
 * snapshot is restored (1) whole into C, (2) split by key group into B0
 * (groups < G/2 and the operator section) and B1; each continues with the
 * rest of the input (B0 and B1 receiving their groups' rows only). C's
 * output must equal A's after the cut row for row; B0 and B1's together,
 * in the operator's order, too. */
static void ck_run(const ck_case *c, size_t nchunks, size_t cut,
                   int64_t disorder)
{
    rec *in = ck_input(nchunks * CK_CHUNK, disorder);
    wop a, b0, b1, cw;
    ck_open(&a, c);
    int64_t wmark = SL_TS_MIN;
    for (size_t i = 0; i < cut; i++) {
        feed(&a, in + i * CK_CHUNK, CK_CHUNK);
        int64_t t = ck_wm_after(in, i, disorder);
        if (t > wmark) wm(&a, wmark = t);
    }
    sl__window_stats at_cut;
    sl__window_stats_get(a.st, &at_cut);
    assert_true(at_cut.open_groups > 0);
    int a_cut = a.sink.n;

    sl__snap_writer *sw = sl__snap_writer_mem();
    assert_int_equal(sl__window_vt.snapshot(a.st, sw), 0);
    /* A snapshot is a pure function of the state. */
    sl__snap_writer *sw2 = sl__snap_writer_mem();
    assert_int_equal(sl__window_vt.snapshot(a.st, sw2), 0);

    ck_open(&cw, c);
    ck_open(&b0, c);
    ck_open(&b1, c);
    size_t it = 0, it2 = 0, nsec = 0;
    int32_t kg, kg2, prev = -2;
    const void *data, *data2;
    size_t len, len2;
    bool saw_op = false;
    while (sl__snap_writer_mem_next(sw, &it, &kg, &data, &len)) {
        assert_true(sl__snap_writer_mem_next(sw2, &it2, &kg2, &data2, &len2));
        assert_int_equal(kg, kg2);
        assert_int_equal(len, len2);
        assert_memory_equal(data, data2, len);
        /* ascending key groups, then the operator section last */
        assert_false(saw_op);
        if (kg == -1) saw_op = true;
        else assert_true(kg > prev && kg < CK_G);
        prev = kg;
        nsec++;
        assert_int_equal(sl__window_vt.restore(cw.st, kg, data, len), 0);
        wop *half = kg < CK_G / 2 ? &b0 : &b1; /* -1: task 0 */
        assert_int_equal(sl__window_vt.restore(half->st, kg, data, len), 0);
    }
    assert_true(saw_op);
    assert_true(nsec >= 3); /* the keys spread over several groups */
    sl__snap_writer_free(sw);
    sl__snap_writer_free(sw2);

    /* The restored state: the same counters, watermark and groups. */
    sl__window_stats st, s0, s1;
    sl__window_stats_get(cw.st, &st);
    assert_same_counters(&at_cut, &st);
    assert_int_equal(st.watermark, at_cut.watermark);
    assert_int_equal(st.open_windows, at_cut.open_windows);
    assert_int_equal(st.open_groups, at_cut.open_groups);
    sl__window_stats_get(b0.st, &s0);
    sl__window_stats_get(b1.st, &s1);
    assert_int_equal(s0.open_groups + s1.open_groups, at_cut.open_groups);
    assert_true(s0.open_groups > 0 && s1.open_groups > 0);
    assert_int_equal(s1.late_records, 0); /* counters went to task 0 */
    for (int64_t e = -1000; e < 20000; e += c->spec.slide_ms
                                               ? c->spec.slide_ms
                                               : c->spec.size_ms)
        assert_int_equal(sl__window_late_count(cw.st, e),
                         sl__window_late_count(a.st, e));

    /* The rest of the input, the same watermarks, then the end. */
    for (size_t i = cut; i < nchunks; i++) {
        const rec *r = in + i * CK_CHUNK;
        feed(&a, r, CK_CHUNK);
        feed(&cw, r, CK_CHUNK);
        feed_split(&b0, &b1, CK_G / 2, r, CK_CHUNK);
        int64_t t = ck_wm_after(in, i, disorder);
        if (t > wmark) {
            wmark = t;
            wm(&a, t);
            wm(&cw, t);
            wm(&b0, t);
            wm(&b1, t);
        }
    }
    wm(&a, SL_TS_MAX);
    wm(&cw, SL_TS_MAX);
    wm(&b0, SL_TS_MAX);
    wm(&b1, SL_TS_MAX);

    frow *ra = NULL, *rc = NULL, *rb = NULL;
    size_t na = flatten(&a.sink, a_cut, &ra, 0);
    size_t nc = flatten(&cw.sink, 0, &rc, 0);
    size_t nb = flatten(&b0.sink, 0, &rb, 0);
    nb = flatten(&b1.sink, 0, &rb, nb);
    assert_true(na > 0);
    if (open_state && open_state->backend == SL__STATE_ROCKSDB) {
        /* from RocksDB a window's rows come by key group, then key */
        qsort(ra, na, sizeof *ra, frow_cmp);
        qsort(rc, nc, sizeof *rc, frow_cmp);
    }
    assert_same_rows(ra, na, rc, nc);
    qsort(rb, nb, sizeof *rb, frow_cmp);
    assert_same_rows(ra, na, rb, nb);

    sl__window_stats fa, fc;
    sl__window_stats_get(a.st, &fa);
    sl__window_stats_get(cw.st, &fc);
    assert_same_counters(&fa, &fc);
    sl__window_stats_get(b0.st, &s0);
    sl__window_stats_get(b1.st, &s1);
    assert_int_equal(s0.late_records + s1.late_records, fa.late_records);
    assert_int_equal(s0.late_pairs + s1.late_pairs, fa.late_pairs);
    assert_int_equal(s0.fired_groups + s1.fired_groups, fa.fired_groups);
    /* The input must exercise what the state carries across the cut. */
    assert_true(fa.late_pairs > at_cut.late_pairs);
    if (cut > 10) {
        assert_true(at_cut.late_pairs > 0);
        assert_true(at_cut.canaries > 0 && at_cut.null_time > 0);
    }
    free(ra);
    free(rc);
    free(rb);
    free(in);
    wop_close(&a);
    wop_close(&cw);
    wop_close(&b0);
    wop_close(&b1);
}

/* The seed of the randomised checkpoint tests: SEED, or a fixed default. */
static uint64_t ck_seed(uint64_t def)
{
    const char *env = getenv("SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : def;
    printf("  seed %" PRIu64 " (set SEED to reproduce)\n", seed);
    return seed;
}

static void snapshot_restore(void **state)
{
    (void)state;
    rng_state = ck_seed(7);
    const ck_case cases[] = {
        {.spec = {.size_ms = 100}, .key = "k", .aggs = CK_AGGS_K,
         .naggs = sizeof CK_AGGS_K / sizeof CK_AGGS_K[0]},
        {.spec = {.size_ms = 100, .slide_ms = 25, .lateness_ms = 10},
         .key = "n", .aggs = CK_AGGS_N,
         .naggs = sizeof CK_AGGS_N / sizeof CK_AGGS_N[0]},
        {.spec = {.size_ms = 60, .slide_ms = 20}, .key = "k",
         .aggs = CK_AGGS_K, .naggs = sizeof CK_AGGS_K / sizeof CK_AGGS_K[0]},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_run(&cases[i], 60, 31, 40);
        ck_run(&cases[i], 60, 2, 40); /* early: few windows yet */
    }
}

/* ---- asynchronous snapshots (winsnap.c) ---------------------------------- */
/* The writer thread stops before writing group `at` of its snapshot until
 * the task has gone on: at the hook, the task is guaranteed to change and
 * free groups the writer has written and groups it has not. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint32_t at, n;
    bool paused, go;
    sl__snap_deferred d;
    sl__snap_writer *w;
    int rc;
} async_gate;
static async_gate *gate;

static void gate_hook(uint32_t i, uint32_t n)
{
    if (i != gate->at) return;
    pthread_mutex_lock(&gate->mu);
    gate->n = n;
    gate->paused = true;
    pthread_cond_broadcast(&gate->cv);
    while (!gate->go) pthread_cond_wait(&gate->cv, &gate->mu);
    pthread_mutex_unlock(&gate->mu);
}

static void *gate_writer(void *arg)
{
    async_gate *g = arg;
    g->rc = g->d.write(g->d.ud, g->w);
    return NULL;
}

/* A (the uninterrupted run) and S see the same input. At the cut, A's
 * snapshot is taken synchronously and S's asynchronously; the writer of
 * S's stops a third of the way through while S takes every remaining record
 * and the final watermark (records update written and unwritten groups,
 * every window fires and is freed), then finishes. S's sections must be
 * A's byte for byte; restored into C, which then takes the rest of the
 * input, they must give A's output after the cut row for row; and S's own
 * output must be A's whole. */
static void async_run(const ck_case *c, size_t nchunks, size_t cut, int64_t disorder)
{
    rec *in = ck_input(nchunks * CK_CHUNK, disorder);
    wop a, s, cw;
    ck_open(&a, c);
    ck_open(&s, c);
    int64_t wmark = SL_TS_MIN;
    for (size_t i = 0; i < cut; i++) {
        feed(&a, in + i * CK_CHUNK, CK_CHUNK);
        feed(&s, in + i * CK_CHUNK, CK_CHUNK);
        int64_t t = ck_wm_after(in, i, disorder);
        if (t > wmark) {
            wm(&a, wmark = t);
            wm(&s, t);
        }
    }
    sl__window_stats at_cut;
    sl__window_stats_get(a.st, &at_cut);
    assert_true(at_cut.open_groups >= 6);
    int a_cut = a.sink.n;
    int64_t wm_cut = wmark;
    sl__snap_writer *sync = sl__snap_writer_mem();
    assert_int_equal(sl__window_vt.snapshot(a.st, sync), 0);

    async_gate g = {.at = (uint32_t)(at_cut.open_groups / 3), .w = sl__snap_writer_mem()};
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    gate = &g;
    sl__winsnap_test_hook = gate_hook;
    assert_non_null(sl__window_vt.snapshot_async);
    assert_int_equal(sl__window_vt.snapshot_async(s.st, &g.d), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, gate_writer, &g), 0);
    pthread_mutex_lock(&g.mu);
    while (!g.paused) pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    assert_int_equal(g.n, (uint32_t)at_cut.open_groups);
    /* the task goes on while the snapshot is a third written */
    for (size_t i = cut; i < nchunks; i++) {
        feed(&a, in + i * CK_CHUNK, CK_CHUNK);
        feed(&s, in + i * CK_CHUNK, CK_CHUNK);
        int64_t t = ck_wm_after(in, i, disorder);
        if (t > wmark) {
            wm(&a, wmark = t);
            wm(&s, t);
        }
    }
    wm(&a, SL_TS_MAX);
    wm(&s, SL_TS_MAX);
    sl__window_stats fs;
    sl__window_stats_get(s.st, &fs);
    assert_int_equal(fs.open_groups, 0); /* every group fired and was freed */
    pthread_mutex_lock(&g.mu);
    g.go = true;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pthread_join(th, NULL);
    sl__winsnap_test_hook = NULL;
    assert_int_equal(g.rc, 0);

    /* byte for byte the synchronous snapshot at the barrier */
    size_t i1 = 0, i2 = 0, nsec = 0;
    int32_t kg1, kg2;
    const void *d1, *d2;
    size_t l1, l2;
    ck_open(&cw, c);
    while (sl__snap_writer_mem_next(sync, &i1, &kg1, &d1, &l1)) {
        assert_true(sl__snap_writer_mem_next(g.w, &i2, &kg2, &d2, &l2));
        assert_int_equal(kg1, kg2);
        assert_int_equal(l1, l2);
        assert_memory_equal(d1, d2, l1);
        assert_int_equal(sl__window_vt.restore(cw.st, kg2, d2, l2), 0);
        nsec++;
    }
    assert_false(sl__snap_writer_mem_next(g.w, &i2, &kg2, &d2, &l2));
    assert_true(nsec >= 3);
    sl__window_stats st;
    sl__window_stats_get(cw.st, &st);
    assert_int_equal(st.open_groups, at_cut.open_groups);
    assert_int_equal(st.watermark, wm_cut);

    /* restored: the rest of the input gives the uninterrupted output */
    wmark = wm_cut;
    for (size_t i = cut; i < nchunks; i++) {
        feed(&cw, in + i * CK_CHUNK, CK_CHUNK);
        int64_t t = ck_wm_after(in, i, disorder);
        if (t > wmark) wm(&cw, wmark = t);
    }
    wm(&cw, SL_TS_MAX);
    frow *ra = NULL, *rc = NULL, *rall = NULL, *rs = NULL;
    size_t na = flatten(&a.sink, a_cut, &ra, 0);
    size_t nc = flatten(&cw.sink, 0, &rc, 0);
    assert_true(na > 0);
    assert_same_rows(ra, na, rc, nc);
    size_t nall = flatten(&a.sink, 0, &rall, 0);
    size_t ns = flatten(&s.sink, 0, &rs, 0);
    assert_same_rows(rall, nall, rs, ns);
    free(ra);
    free(rc);
    free(rall);
    free(rs);
    sl__snap_writer_free(sync);
    sl__snap_writer_free(g.w);
    pthread_mutex_destroy(&g.mu);
    pthread_cond_destroy(&g.cv);
    free(in);
    wop_close(&a);
    wop_close(&s);
    wop_close(&cw);
}

/* Only integer distinct sets among the heap states (the reference job's
 * aggregates): a group the task changes first is copied set by set (slots
 * memcpy'd) and the writer serialises the copy (winsnap.c ref_copy). */
static const sl_agg_spec CK_AGGS_INT[] = {
    {.kind = SL_AGG_COUNT, .as = "events"},
    {.kind = SL_AGG_COUNT_DISTINCT, .col = "u", .as = "users"},
    {.kind = SL_AGG_SUM, .col = "v", .as = "sum_v"},
    {.kind = SL_AGG_COUNT_DISTINCT, .col = "n", .as = "ns"},
};

static void async_snapshot_while_running(void **state)
{
    (void)state;
    rng_state = ck_seed(11);
    const ck_case cases[] = {
        {.spec = {.size_ms = 100, .slide_ms = 50}, .key = "k", .aggs = CK_AGGS_INT,
         .naggs = sizeof CK_AGGS_INT / sizeof CK_AGGS_INT[0]},
        {.spec = {.size_ms = 100}, .key = "k", .aggs = CK_AGGS_K,
         .naggs = sizeof CK_AGGS_K / sizeof CK_AGGS_K[0]},
        {.spec = {.size_ms = 100, .slide_ms = 25, .lateness_ms = 10},
         .key = "n", .aggs = CK_AGGS_N,
         .naggs = sizeof CK_AGGS_N / sizeof CK_AGGS_N[0]},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        async_run(&cases[i], 60, 31, 40);
        async_run(&cases[i], 60, 5, 40);
    }
}

/* Two asynchronous snapshots in a row, the first written while the task
 * changes groups: the second (taken after the first finished) equals the
 * synchronous snapshot at its own barrier. */
static void async_snapshot_twice(void **state)
{
    (void)state;
    rng_state = ck_seed(13);
    const ck_case c = {.spec = {.size_ms = 100}, .key = "k", .aggs = CK_AGGS_K,
                       .naggs = sizeof CK_AGGS_K / sizeof CK_AGGS_K[0]};
    rec *in = ck_input(40 * CK_CHUNK, 40);
    wop a, s;
    ck_open(&a, &c);
    ck_open(&s, &c);
    int64_t wmark = SL_TS_MIN;
    for (size_t i = 0; i < 40; i++) {
        feed(&a, in + i * CK_CHUNK, CK_CHUNK);
        feed(&s, in + i * CK_CHUNK, CK_CHUNK);
        int64_t t = ck_wm_after(in, i, 40);
        if (t > wmark) {
            wm(&a, wmark = t);
            wm(&s, t);
        }
        if (i % 10 != 9) continue;
        sl__snap_deferred d;
        assert_int_equal(sl__window_vt.snapshot_async(s.st, &d), 0);
        sl__snap_writer *sync = sl__snap_writer_mem(), *w = sl__snap_writer_mem();
        assert_int_equal(sl__window_vt.snapshot(a.st, sync), 0);
        if (i == 19) { /* the next chunk arrives before this one is written */
            feed(&s, in + (i + 1) * CK_CHUNK, CK_CHUNK);
            feed(&a, in + (i + 1) * CK_CHUNK, CK_CHUNK);
            i++;
        }
        assert_int_equal(d.write(d.ud, w), 0);
        size_t i1 = 0, i2 = 0;
        int32_t kg1, kg2;
        const void *d1, *d2;
        size_t l1, l2;
        while (sl__snap_writer_mem_next(sync, &i1, &kg1, &d1, &l1)) {
            assert_true(sl__snap_writer_mem_next(w, &i2, &kg2, &d2, &l2));
            assert_int_equal(kg1, kg2);
            assert_int_equal(l1, l2);
            assert_memory_equal(d1, d2, l1);
        }
        assert_false(sl__snap_writer_mem_next(w, &i2, &kg2, &d2, &l2));
        sl__snap_writer_free(sync);
        sl__snap_writer_free(w);
    }
    free(in);
    wop_close(&a);
    wop_close(&s);
}

/* An unkeyed window run as several tasks keeps partial windows under key
 * group 0 in each; restoring them into one instance merges them. Operator
 * sections from several tasks add their counters and keep the lowest
 * watermark. */
static void restore_merges_sections(void **state)
{
    (void)state;
    wop t[2], m;
    for (int i = 0; i < 2; i++)
        wop_open(&t[i], (sl_window_spec){.size_ms = 10}, false,
                 COUNT_AND_DISTINCT, 2);
    rec r0[] = {{.ts = 1, .u = 1}, {.ts = 12, .u = 2}, {.ts = 3, .u = 3}};
    rec r1[] = {{.ts = 2, .u = 1}, {.ts = 4, .u = 9}, {.ts = 25, .u = 4}};
    feed(&t[0], r0, 3);
    feed(&t[1], r1, 3);
    wm(&t[0], 5);
    wm(&t[1], 8);
    feed1(&t[1], 1, NULL, 7); /* still on time */
    feed1(&t[0], -5, NULL, 7); /* late for [-10, 0) */
    feed1(&t[1], -3, NULL, 7);
    wop_open(&m, (sl_window_spec){.size_ms = 10}, false, COUNT_AND_DISTINCT,
             2);
    for (int i = 0; i < 2; i++) {
        sl__snap_writer *sw = sl__snap_writer_mem();
        assert_int_equal(sl__window_vt.snapshot(t[i].st, sw), 0);
        size_t it = 0, len;
        int32_t kg;
        const void *data;
        int n = 0;
        while (sl__snap_writer_mem_next(sw, &it, &kg, &data, &len)) {
            assert_true(kg == 0 || kg == -1); /* unkeyed: group 0 */
            assert_int_equal(sl__window_vt.restore(m.st, kg, data, len), 0);
            n++;
        }
        assert_int_equal(n, 2);
        sl__snap_writer_free(sw);
    }
    sl__window_stats st;
    sl__window_stats_get(m.st, &st);
    assert_int_equal(st.watermark, 5);
    assert_int_equal(st.late_records, 2);
    assert_int_equal(st.late_pairs, 2);
    assert_int_equal(sl__window_late_count(m.st, 0), 2);
    assert_int_equal(st.open_windows, 3);
    wm(&m, SL_TS_MAX);
    out_row o[4];
    assert_int_equal(collect(&m, o, 4, 2, false), 3);
    int64_t want[3][3] = {{0, 5, 4}, {10, 1, 1}, {20, 1, 1}};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(o[i].start, want[i][0]);
        assert_int_equal(o[i].agg[0], want[i][1]);
        assert_int_equal(o[i].agg[1], want[i][2]); /* [0,10): 1 3 7 9 */
    }
    for (int i = 0; i < 2; i++) wop_close(&t[i]);
    wop_close(&m);
}

/* The sections of a small snapshot with every aggregate kind. */
typedef struct {
    int32_t kg[64];
    uint8_t *data[64];
    size_t len[64];
    int n;
} sections;

static void take_sections(const ck_case *c, sections *out)
{
    rng_state = 11;
    rec *in = ck_input(4 * CK_CHUNK, 20);
    wop a;
    ck_open(&a, c);
    for (int i = 0; i < 4; i++) feed(&a, in + i * CK_CHUNK, CK_CHUNK);
    wm(&a, in[2 * CK_CHUNK].ts);
    feed(&a, in, CK_CHUNK); /* some late records */
    sl__snap_writer *sw = sl__snap_writer_mem();
    assert_int_equal(sl__window_vt.snapshot(a.st, sw), 0);
    size_t it = 0;
    const void *d;
    out->n = 0;
    while (sl__snap_writer_mem_next(sw, &it, &out->kg[out->n], &d,
                                    &out->len[out->n])) {
        assert_true(out->n < 64);
        out->data[out->n] = malloc(out->len[out->n] + 1);
        memcpy(out->data[out->n], d, out->len[out->n]);
        out->n++;
    }
    sl__snap_writer_free(sw);
    wop_close(&a);
    free(in);
}

/* A failed restore leaves the fresh instance as it was. */
static void assert_untouched(const wop *w)
{
    sl__window_stats st;
    sl__window_stats_get(w->st, &st);
    assert_int_equal(st.open_windows, 0);
    assert_int_equal(st.open_groups, 0);
    assert_int_equal(st.watermark, SL_TS_MIN);
    assert_int_equal(st.late_records + st.late_pairs + st.canaries, 0);
}

static void restore_rejects_bad_sections(void **state)
{
    (void)state;
    const ck_case c = {.spec = {.size_ms = 100, .slide_ms = 50},
                       .key = "k", .aggs = CK_AGGS_K,
                       .naggs = sizeof CK_AGGS_K / sizeof CK_AGGS_K[0]};
    sections s;
    take_sections(&c, &s);
    assert_true(s.n >= 3);
    wop w;
    ck_open(&w, &c);

    /* Every truncation of every section is detected. */
    for (int i = 0; i < s.n; i++) {
        for (size_t l = 0; l < s.len[i]; l++)
            assert_int_equal(sl__window_vt.restore(w.st, s.kg[i], s.data[i], l),
                             SL_ECORRUPT);
        /* and so is trailing garbage */
        s.data[i][s.len[i]] = 0;
        assert_int_equal(sl__window_vt.restore(w.st, s.kg[i], s.data[i],
                                               s.len[i] + 1),
                         SL_ECORRUPT);
    }
    assert_untouched(&w);

    /* Random bytes. */
    rng_state = ck_seed(99);
    uint8_t junk[512];
    for (int iter = 0; iter < 4000; iter++) {
        size_t len = rnd() % sizeof junk;
        for (size_t i = 0; i < len; i++) junk[i] = (uint8_t)rnd();
        int32_t kg = (int32_t)(rnd() % (CK_G + 1)) - 1;
        assert_int_equal(sl__window_vt.restore(w.st, kg, junk, len),
                         SL_ECORRUPT);
    }
    assert_untouched(&w);

    /* Valid headers with random bodies, and random byte flips of valid
     * sections: refused without a trace, or accepted and usable. */
    uint64_t refused = 0, accepted = 0;
    for (int iter = 0; iter < 3000; iter++) {
        int i = (int)(rnd() % (uint64_t)s.n);
        uint8_t *m = malloc(s.len[i] + 64);
        size_t len = s.len[i];
        memcpy(m, s.data[i], len);
        if (iter % 3 == 0) {
            len = 20 + rnd() % 44; /* the header is 20 bytes */
            for (size_t j = 20; j < len; j++) m[j] = (uint8_t)rnd();
        } else {
            int flips = 1 + (int)(rnd() % 4);
            for (int f = 0; f < flips; f++)
                m[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
        }
        wop x;
        ck_open(&x, &c);
        int rc = sl__window_vt.restore(x.st, s.kg[i], m, len);
        if (rc < 0) {
            assert_true(rc == SL_ECORRUPT || rc == SL_EINVAL);
            assert_untouched(&x);
            refused++;
        } else {
            assert_int_equal(rc, 0);
            wm(&x, SL_TS_MAX); /* whatever was accepted fires cleanly */
            accepted++;
        }
        free(m);
        wop_close(&x);
    }
    printf("  mutated sections: %" PRIu64 " refused, %" PRIu64 " accepted\n",
           refused, accepted);
    assert_true(refused > 0);

    /* Sections of another definition, group or time are refused. */
    int kgsec = 0;
    while (s.kg[kgsec] < 0) kgsec++;
    assert_int_equal(sl__window_vt.restore(w.st, CK_G, s.data[kgsec],
                                           s.len[kgsec]),
                     SL_EINVAL);
    assert_int_equal(sl__window_vt.restore(w.st, -2, s.data[kgsec],
                                           s.len[kgsec]),
                     SL_EINVAL);
    wop other;
    ck_case c2 = c;
    c2.spec.lateness_ms = 1;
    ck_open(&other, &c2);
    assert_int_equal(sl__window_vt.restore(other.st, s.kg[kgsec],
                                           s.data[kgsec], s.len[kgsec]),
                     SL_EINVAL);
    assert_untouched(&other);
    wop_close(&other);
    assert_untouched(&w);
    feed1(&w, 5, "a0", 1); /* no restore once data has arrived */
    assert_int_equal(sl__window_vt.restore(w.st, s.kg[kgsec], s.data[kgsec],
                                           s.len[kgsec]),
                     SL_ESTATE);
    wop_close(&w);
    for (int i = 0; i < s.n; i++) free(s.data[i]);
}

/* ---- validation --------------------------------------------------------------------- */
static void expect_conf_error(sl_window_spec spec, const char *const *keys,
                              const char *time_col, const sl_agg_spec *aggs,
                              size_t naggs, const char *needle)
{
    sl_schema *in = in_schema();
    void *conf = (void *)1;
    sl_schema *out = (sl_schema *)1;
    char err[256] = "";
    assert_int_equal(sl__window_conf_new(&conf, &out, in, keys, time_col,
                                         &spec, aggs, naggs, err, sizeof err),
                     SL_EINVAL);
    assert_null(conf);
    assert_null(out);
    if (strncmp(err, "window: ", 8) != 0 || !strstr(err, needle))
        fail_msg("error '%s' lacks '%s'", err, needle);
    sl_schema_free(in);
}

static void validation(void **state)
{
    (void)state;
    static const char *const key_k[] = {"k", NULL};
    static const char *const key_bad[] = {"nope", NULL};
    static const char *const key_twice[] = {"k", "k", NULL};
    const sl_window_spec ok = {.size_ms = 60000};
    expect_conf_error((sl_window_spec){.size_ms = 0}, NULL, "ts", COUNT_ONLY,
                      1, "size_ms must be > 0");
    expect_conf_error((sl_window_spec){.size_ms = -5}, NULL, "ts", COUNT_ONLY,
                      1, "size_ms");
    expect_conf_error((sl_window_spec){.size_ms = 10, .slide_ms = 20}, NULL,
                      "ts", COUNT_ONLY, 1, "slide_ms must be between");
    expect_conf_error((sl_window_spec){.size_ms = 10, .slide_ms = -1}, NULL,
                      "ts", COUNT_ONLY, 1, "slide_ms");
    expect_conf_error((sl_window_spec){.size_ms = 10, .slide_ms = 3}, NULL,
                      "ts", COUNT_ONLY, 1, "multiple of slide_ms");
    expect_conf_error((sl_window_spec){.size_ms = 10, .lateness_ms = -1},
                      NULL, "ts", COUNT_ONLY, 1, "lateness_ms must be >= 0");
    expect_conf_error(ok, NULL, NULL, COUNT_ONLY, 1, "no event-time column");
    expect_conf_error(ok, NULL, "k", COUNT_ONLY, 1,
                      "event-time column 'k' has type VARCHAR");
    expect_conf_error(ok, key_bad, "ts", COUNT_ONLY, 1,
                      "key column 'nope' is not in the stream");
    expect_conf_error(ok, key_twice, "ts", COUNT_ONLY, 1, "appears twice");

    sl_agg_spec dup[] = {{.kind = SL_AGG_COUNT, .as = "x"},
                         {.kind = SL_AGG_SUM, .col = "v", .as = "x"}};
    expect_conf_error(ok, NULL, "ts", dup, 2, "'x' is used twice");
    sl_agg_spec clash_key[] = {{.kind = SL_AGG_COUNT, .as = "k"}};
    expect_conf_error(ok, key_k, "ts", clash_key, 1, "clashes with a key");
    sl_agg_spec clash_win[] = {{.kind = SL_AGG_COUNT, .as = "window_end"}};
    expect_conf_error(ok, NULL, "ts", clash_win, 1, "'window_end' clashes");
    sl_agg_spec no_name[] = {{.kind = SL_AGG_COUNT}};
    expect_conf_error(ok, NULL, "ts", no_name, 1,
                      "aggregate 0 has no output name");
    sl_agg_spec bad_type[] = {{.kind = SL_AGG_MIN, .col = "k", .as = "m"}};
    expect_conf_error(ok, NULL, "ts", bad_type, 1,
                      "aggregate 'm': MIN does not accept VARCHAR column 'k'");
    sl_agg_spec bad_col[] = {{.kind = SL_AGG_SUM, .col = "zz", .as = "s"}};
    expect_conf_error(ok, NULL, "ts", bad_col, 1, "no input column 'zz'");
    expect_conf_error(ok, NULL, "ts", NULL, 1, "aggs is NULL");

    /* A valid definition: output columns and types. */
    sl_schema *in = in_schema(), *out;
    void *conf;
    const double bounds[] = {1, 2};
    sl_agg_spec all[] = {
        {.kind = SL_AGG_COUNT, .as = "c"},
        {.kind = SL_AGG_SUM, .col = "v", .as = "s"},
        {.kind = SL_AGG_AVG, .col = "v", .as = "a"},
        {.kind = SL_AGG_MAX, .col = "ts", .as = "last"},
        {.kind = SL_AGG_HISTOGRAM, .col = "v", .as = "h", .bounds = bounds,
         .nbounds = 2},
    };
    assert_int_equal(sl__window_conf_new(&conf, &out, in, key_k, "ts",
                                         &(sl_window_spec){.size_ms = 10,
                                                           .slide_ms = 10},
                                         all, 5, NULL, 0),
                     0);
    static const sl_type want[] = {SL_TIMESTAMP, SL_TIMESTAMP, SL_STRING,
                                   SL_INT64, SL_INT64, SL_FLOAT64,
                                   SL_TIMESTAMP, SL_STRING};
    assert_int_equal(sl_schema_ncols(out), 8);
    for (int c = 0; c < 8; c++)
        assert_int_equal(sl_schema_col_type(out, c), want[c]);
    sl__window_vt.conf_free(conf);
    sl_schema_free(out);
    sl_schema_free(in);
}

/* Through the public builder, with a stand-in source connector. */
static int fake_configure(void **conf, const char *const *kv,
                          const sl_schema *schema, char *errstr,
                          size_t errstr_size)
{
    (void)kv;
    (void)schema;
    (void)errstr;
    (void)errstr_size;
    *conf = NULL;
    return 0;
}
static const sl__source_vt fake_source = {.name = "fake",
                                          .configure = fake_configure};

static void stream_builder(void **state)
{
    (void)state;
    sl_schema *in = in_schema();
    assert_null(sl_stream_window(NULL, &(sl_window_spec){.size_ms = 1},
                                 COUNT_ONLY, 1));

    sl_job *job = sl_job_new(NULL, 0);
    sl_stream *s = sl__job_add_source(job, &fake_source, in,
                                      (const char *[]){"time.column", "ts",
                                                       NULL});
    assert_non_null(s);
    s = sl_stream_key_by(s, (const char *[]){"k", NULL});
    sl_stream *ws = sl_stream_window(s, &(sl_window_spec){.size_ms = 60000},
                                     COUNT_AND_DISTINCT, 2);
    assert_non_null(ws);
    assert_null(sl_job_error(job));
    const sl_schema *out = sl_stream_schema(ws);
    assert_int_equal(sl_schema_ncols(out), 5);
    assert_string_equal(sl_schema_col_name(out, 2), "k");
    assert_string_equal(sl_schema_col_name(out, 4), "subscribers");
    sl_job_free(job);

    job = sl_job_new(NULL, 0);
    s = sl__job_add_source(job, &fake_source, in,
                           (const char *[]){"time.column", "ts", NULL});
    assert_null(sl_stream_window(s, &(sl_window_spec){.size_ms = 10,
                                                       .slide_ms = 4},
                                 COUNT_ONLY, 1));
    assert_non_null(sl_job_error(job));
    assert_non_null(strstr(sl_job_error(job), "window: size_ms (10) must be "
                                              "a multiple of slide_ms (4)"));
    sl_job_free(job);
    sl_schema_free(in);
}

/* ---- the RocksDB backend and state TTL (winstore.c) ------------------------ */
static char rocks_dir[256];

/* state.backend = rocksdb with a 16 MiB bound: the window's cache (1/8 of
 * it over 512 tasks, wop_open_keys) spills to the store every few batches. */
static sl__state_conf rocks_state(const char *sub, int64_t ttl)
{
    sl__state_conf sc = {.backend = SL__STATE_ROCKSDB, .memory_bound = 16 << 20,
                         .ttl_ms = ttl};
    if (!rocks_dir[0]) {
        snprintf(rocks_dir, sizeof rocks_dir, "/tmp/sluice-test-window-XXXXXX");
        assert_non_null(mkdtemp(rocks_dir));
    }
    snprintf(sc.dir, sizeof sc.dir, "%s/%s", rocks_dir, sub);
    return sc;
}

/* The brute-force model test with the groups in RocksDB: the same rows. */
static void randomised_rocksdb(void **state)
{
    static sl__state_conf sc;
    sc = rocks_state("model", 0);
    open_state = &sc;
    model_spills = 0;
    randomised(state);
    open_state = NULL;
    printf("  %" PRIu64 " cache write-outs\n", model_spills);
    assert_true(model_spills > 20); /* the store was really used */
}

/* Snapshots of spilled state (a merged scan of the store) restored whole
 * and split by key group, against an uncrashed run on RocksDB. */
static void snapshot_restore_rocksdb(void **state)
{
    static sl__state_conf sc;
    sc = rocks_state("ck", 0);
    open_state = &sc;
    snapshot_restore(state);
    open_state = NULL;
}

/* The memory backend's snapshot restores on RocksDB and back: one format.
 * RocksDB's snapshot is a merged scan of the store, so it restores only
 * if the store's keys (window end with the sign bit flipped, key group,
 * group key) sort as the snapshot order wants: negative and positive
 * window ends, keys in several key groups. */
static void snapshot_across_backends(void **state)
{
    (void)state;
    rng_state = ck_seed(11);
    static sl__state_conf sc;
    sc = rocks_state("across", 0);
    const ck_case c = {.spec = {.size_ms = 100, .slide_ms = 25}, .key = "k",
                       .aggs = CK_AGGS_K,
                       .naggs = sizeof CK_AGGS_K / sizeof CK_AGGS_K[0]};
    rec *in = ck_input(40 * CK_CHUNK, 30);
    wop mem, rk, back;
    ck_open(&mem, &c);
    open_state = &sc;
    ck_open(&rk, &c);
    open_state = NULL;
    for (size_t i = 0; i < 20; i++) {
        feed(&mem, in + i * CK_CHUNK, CK_CHUNK);
        wm(&mem, ck_wm_after(in, i, 30));
    }
    int mem_cut = mem.sink.n;
    sl__snap_writer *sw = sl__snap_writer_mem();
    assert_int_equal(sl__window_vt.snapshot(mem.st, sw), 0);
    size_t it = 0;
    int32_t kg;
    const void *data;
    size_t len;
    while (sl__snap_writer_mem_next(sw, &it, &kg, &data, &len))
        assert_int_equal(sl__window_vt.restore(rk.st, kg, data, len), 0);
    sl__snap_writer_free(sw);
    /* RocksDB's snapshot has the memory one's sections, each as long (a
     * distinct set may list its members in another order); restoring it
     * into memory checks its windows and keys come in ascending order */
    sl__snap_writer *a = sl__snap_writer_mem(), *b = sl__snap_writer_mem();
    assert_int_equal(sl__window_vt.snapshot(mem.st, a), 0);
    assert_int_equal(sl__window_vt.snapshot(rk.st, b), 0);
    size_t ia = 0, ib = 0, n = 0;
    int32_t ka, kb;
    const void *da, *db;
    size_t la, lb;
    while (sl__snap_writer_mem_next(a, &ia, &ka, &da, &la)) {
        assert_true(sl__snap_writer_mem_next(b, &ib, &kb, &db, &lb));
        assert_int_equal(ka, kb);
        assert_int_equal(la, lb);
        n++;
    }
    assert_false(sl__snap_writer_mem_next(b, &ib, &kb, &db, &lb));
    assert_true(n > 3);
    ck_open(&back, &c); /* and back into memory */
    ib = 0;
    while (sl__snap_writer_mem_next(b, &ib, &kb, &db, &lb))
        assert_int_equal(sl__window_vt.restore(back.st, kb, db, lb), 0);
    sl__snap_writer_free(a);
    sl__snap_writer_free(b);
    assert_true(sl__window_store_keys(rk.st) > 0);
    for (size_t i = 20; i < 40; i++) {
        feed(&mem, in + i * CK_CHUNK, CK_CHUNK);
        feed(&rk, in + i * CK_CHUNK, CK_CHUNK);
        feed(&back, in + i * CK_CHUNK, CK_CHUNK);
        int64_t t = ck_wm_after(in, i, 30);
        wm(&mem, t);
        wm(&rk, t);
        wm(&back, t);
    }
    wm(&mem, SL_TS_MAX);
    wm(&rk, SL_TS_MAX);
    wm(&back, SL_TS_MAX);
    frow *rm = NULL, *rr = NULL, *rb = NULL;
    size_t nm = flatten(&mem.sink, mem_cut, &rm, 0);
    size_t nr = flatten(&rk.sink, 0, &rr, 0);
    size_t nb = flatten(&back.sink, 0, &rb, 0);
    qsort(rm, nm, sizeof *rm, frow_cmp);
    qsort(rr, nr, sizeof *rr, frow_cmp);
    qsort(rb, nb, sizeof *rb, frow_cmp);
    assert_true(nm > 50);
    assert_same_rows(rm, nm, rr, nr);
    assert_same_rows(rm, nm, rb, nb);
    assert_int_equal(sl__window_store_keys(rk.st), 0); /* fired: deleted */
    free(rm);
    free(rr);
    free(rb);
    free(in);
    wop_close(&mem);
    wop_close(&rk);
    wop_close(&back);
}

/* state.ttl.ms = 100 on a 1 s window: key "live" has a record every 50 ms
 * and never expires; 200 "idle" keys stop at 20 ms and expire; "back"
 * stops at 20 ms, expires, and returns at 400 ms with a fresh group. The
 * final watermark (+infinity) expires nothing: a window fires at its own
 * end. */
static void ttl_case(const sl__state_conf *sc)
{
    open_state = sc;
    wop w;
    wop_open(&w, (sl_window_spec){.size_ms = 1000}, true, COUNT_AND_DISTINCT, 2);
    open_state = NULL;
    rec r[203];
    char names[200][8];
    size_t n = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(names[i], sizeof names[i], "i%03d", i);
        r[n++] = (rec){.ts = i % 21, .k = names[i], .u = i};
    }
    r[n++] = (rec){.ts = 0, .k = "live", .u = 0};
    r[n++] = (rec){.ts = 20, .k = "back", .u = 1};
    r[n++] = (rec){.ts = 10, .k = "back", .u = 2};
    feed(&w, r, n);
    uint64_t stored = sl__window_store_keys(w.st);
    /* evicted, but for the groups used again, which the cache keeps
     * (CLOCK: "back" took two records) */
    if (sc->backend == SL__STATE_ROCKSDB) assert_true(stored >= 200 && stored <= 202);
    for (int64_t t = 50; t <= 300; t += 50) {
        feed1(&w, t, "live", t / 50);
        wm(&w, t - 10);
    }
    sl__window_stats st;
    sl__window_stats_get(w.st, &st);
    if (sc->backend == SL__STATE_ROCKSDB) {
        /* the compaction filter drops every expired group; only "live"
         * (written out again whenever the 4 KiB cache spills) stays */
        uint64_t before = sl__window_store_keys(w.st);
        assert_true(before >= 200 && before <= 202);
        assert_int_equal(sl__window_store_compact(w.st), 0);
        assert_true(sl__window_store_keys(w.st) <= 1);
    } else {
        assert_int_equal(st.open_groups, 1); /* swept: only "live" */
        assert_int_equal(st.expired_groups, 201);
    }
    for (int64_t t = 350; t <= 950; t += 50) {
        feed1(&w, t, "live", t / 50);
        if (t >= 400) feed1(&w, t, "back", t / 50);
        wm(&w, t - 10);
    }
    wm(&w, SL_TS_MAX);
    out_row o[8];
    size_t got = collect(&w, o, 8, 2, true);
    assert_int_equal(got, 2);
    size_t bi = strcmp(o[0].key, "back") == 0 ? 0 : 1;
    assert_string_equal(o[bi].key, "back");
    /* only the 12 records after it expired (without TTL: 14) */
    assert_int_equal(o[bi].agg[0], 12);
    assert_int_equal(o[bi].agg[1], 12);
    assert_string_equal(o[1 - bi].key, "live");
    assert_int_equal(o[1 - bi].agg[0], 20);
    assert_int_equal(o[1 - bi].agg[1], 20);
    sl__window_stats_get(w.st, &st);
    /* (on RocksDB the filter drops them unseen: the key count above) */
    if (sc->backend == SL__STATE_MEMORY) assert_true(st.expired_groups >= 201);
    wop_close(&w);
}

static void ttl_memory(void **state)
{
    (void)state;
    sl__state_conf sc = {.backend = SL__STATE_MEMORY, .ttl_ms = 100};
    ttl_case(&sc);
}

static void ttl_rocksdb(void **state)
{
    (void)state;
    static sl__state_conf sc;
    sc = rocks_state("ttl", 100);
    ttl_case(&sc);
}

static int rocks_teardown(void **state)
{
    (void)state;
    if (!rocks_dir[0]) return 0;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", rocks_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tumbling),
        cmocka_unit_test(hop),
        cmocka_unit_test(extreme_times),
        cmocka_unit_test(fires_at_end_plus_lateness),
        cmocka_unit_test(out_of_order_within_bound),
        cmocka_unit_test(late_records),
        cmocka_unit_test(lateness_keeps_window_open),
        cmocka_unit_test(hop_partly_late),
        cmocka_unit_test(watermark_never_goes_back),
        cmocka_unit_test(canaries_and_null_time),
        cmocka_unit_test(keyed_distinct),
        cmocka_unit_test(multi_key_order),
        cmocka_unit_test(output_batching),
        cmocka_unit_test(keys_only),
        cmocka_unit_test(randomised),
        cmocka_unit_test(snapshot_restore),
        cmocka_unit_test(async_snapshot_while_running),
        cmocka_unit_test(async_snapshot_twice),
        cmocka_unit_test(restore_merges_sections),
        cmocka_unit_test(restore_rejects_bad_sections),
        cmocka_unit_test(validation),
        cmocka_unit_test(stream_builder),
        cmocka_unit_test(randomised_rocksdb),
        cmocka_unit_test(snapshot_restore_rocksdb),
        cmocka_unit_test(snapshot_across_backends),
        cmocka_unit_test(ttl_memory),
        cmocka_unit_test(ttl_rocksdb),
    };
    return cmocka_run_group_tests(tests, NULL, rocks_teardown);
}
