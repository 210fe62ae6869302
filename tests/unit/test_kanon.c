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

/* ---- folding ---------------------------------------------------------------
 * A job (file -> key_by(type) -> window_fold over area, band) against an
 * independent model over the raw events, whose distinct sets are bitmasks
 * of the (at most 64) subscribers: the published rows must be exactly the
 * model's, none below k, and events published + suppressed = all events. */
#define NEV 3000
#define NSUB 60
#define FK 5

typedef struct {
    char area[8], band[8];
    int64_t events;
    uint64_t subs; /* bitmask */
    int n;         /* window groups merged in */
} mgroup;

typedef struct {
    int64_t ws;
    char type[4], area[8], band[8];
    int64_t events, subs;
} frow;

typedef struct {
    frow rows[4096];
    int n;
} fout;

static const char *const g_region[] = {"a1", "R1", "a2", "R1", "a3", "R1",
                                       "a4", "R2", "a5", "R2", NULL};
static const char *const g_wide[] = {"b1", "W1", "b2", "W1", "b3", "W2",
                                     "b4", "W2", NULL};
static const sl_fold_level g_levels[] = {
    {"band", g_wide}, {"area", g_region}, {"band", NULL}, {"area", NULL}};

static int fold_collect(const sl_batch *b, void *ud)
{
    fout *o = ud;
    for (uint32_t i = 0; i < sl_batch_len(b); i++) {
        if (sl_batch_kind(b)[i] != SL_KIND_DATA) continue;
        assert_true(o->n < 4096);
        frow *r = &o->rows[o->n++];
        r->ws = sl_batch_i64(b, 0)[i];
        sl_str t = sl_batch_str(b, 2)[i], a = sl_batch_str(b, 3)[i],
               d = sl_batch_str(b, 4)[i];
        snprintf(r->type, sizeof r->type, "%.*s", (int)t.len, t.ptr);
        snprintf(r->area, sizeof r->area, "%.*s", (int)a.len, a.ptr);
        snprintf(r->band, sizeof r->band, "%.*s", (int)d.len, d.ptr);
        r->events = sl_batch_i64(b, 5)[i];
        r->subs = sl_batch_i64(b, 6)[i];
    }
    return 0;
}

static const char *level_map(const sl_fold_level *l, const char *v)
{
    if (!l->map) return "*";
    for (int j = 0; l->map[j]; j += 2)
        if (!strcmp(l->map[j], v)) return l->map[j + 1];
    return v;
}

static int find_group(mgroup *g, int n, const char *area, const char *band)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(g[i].area, area) && !strcmp(g[i].band, band)) return i;
    return -1;
}

/* The model for one (window, type): appends its published rows to want
 * and returns the suppressed events. */
static int64_t model(const int64_t *ev_area, const int64_t *ev_band,
                     const int64_t *ev_sub, const uint8_t *sel, int nev,
                     int64_t ws, const char *type, fout *want,
                     uint64_t *folded, uint64_t *suppressed)
{
    static mgroup pub[512], cand[512], merged[512];
    int np = 0, nc = 0;
    for (int i = 0; i < nev; i++) { /* level 0: the window's groups */
        if (!sel[i]) continue;
        char a[8], b[8];
        snprintf(a, sizeof a, "a%lld", (long long)ev_area[i]);
        snprintf(b, sizeof b, "b%lld", (long long)ev_band[i]);
        int g = find_group(cand, nc, a, b);
        if (g < 0) {
            g = nc++;
            memset(&cand[g], 0, sizeof cand[g]);
            strcpy(cand[g].area, a);
            strcpy(cand[g].band, b);
            cand[g].n = 1;
        }
        cand[g].events++;
        cand[g].subs |= (uint64_t)1 << ev_sub[i];
    }
    int nc2 = 0;
    for (int i = 0; i < nc; i++) {
        if (__builtin_popcountll(cand[i].subs) >= FK) pub[np++] = cand[i];
        else cand[nc2++] = cand[i];
    }
    nc = nc2;
    for (size_t l = 0; l < sizeof g_levels / sizeof g_levels[0]; l++) {
        int nm = 0;
        for (int i = 0; i < nc; i++) {
            char a[8], b[8];
            snprintf(a, sizeof a, "%s", !strcmp(g_levels[l].col, "area")
                                            ? level_map(&g_levels[l], cand[i].area)
                                            : cand[i].area);
            snprintf(b, sizeof b, "%s", !strcmp(g_levels[l].col, "band")
                                            ? level_map(&g_levels[l], cand[i].band)
                                            : cand[i].band);
            int g = find_group(merged, nm, a, b);
            if (g < 0) {
                g = nm++;
                memset(&merged[g], 0, sizeof merged[g]);
                strcpy(merged[g].area, a);
                strcpy(merged[g].band, b);
            }
            merged[g].events += cand[i].events;
            merged[g].subs |= cand[i].subs;
            merged[g].n += cand[i].n;
        }
        nc = 0;
        for (int i = 0; i < nm; i++) {
            int p = find_group(pub, np, merged[i].area, merged[i].band);
            if (p >= 0) {
                pub[p].events += merged[i].events;
                pub[p].subs |= merged[i].subs;
                *folded += (uint64_t)merged[i].n;
            } else if (__builtin_popcountll(merged[i].subs) >= FK) {
                pub[np++] = merged[i];
                *folded += (uint64_t)merged[i].n;
            } else {
                cand[nc++] = merged[i];
            }
        }
    }
    int64_t lost = 0;
    for (int i = 0; i < nc; i++) {
        lost += cand[i].events;
        *suppressed += (uint64_t)cand[i].n;
    }
    for (int i = 0; i < np; i++) {
        frow *r = &want->rows[want->n++];
        r->ws = ws;
        snprintf(r->type, sizeof r->type, "%s", type);
        strcpy(r->area, pub[i].area);
        strcpy(r->band, pub[i].band);
        r->events = pub[i].events;
        r->subs = __builtin_popcountll(pub[i].subs);
    }
    return lost;
}

static int frow_cmp(const void *x, const void *y)
{
    const frow *a = x, *b = y;
    if (a->ws != b->ws) return a->ws < b->ws ? -1 : 1;
    int c = strcmp(a->type, b->type);
    if (!c) c = strcmp(a->area, b->area);
    if (!c) c = strcmp(a->band, b->band);
    return c;
}

static char g_dir[] = "/tmp/sl_test_kanon_XXXXXX";

static void run_fold(uint32_t seed, const char *parallelism)
{
    /* skewed draws: a few large groups, many small ones, areas a1..a6 and
     * bands b1..b5 (a6 and b5 are outside the coarser maps) */
    static int64_t ts[NEV], area[NEV], band[NEV], sub[NEV];
    static char text[NEV * 48];
    static const char *types[] = {"A", "B"};
    int64_t type[NEV];
    size_t used = (size_t)snprintf(text, sizeof text, "ts,type,area,band,sub\n");
    uint64_t x = seed * 2654435761u + 1;
    for (int i = 0; i < NEV; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t r = (uint32_t)(x >> 33);
        ts[i] = (int64_t)(r % 120000); /* two one-minute windows */
        type[i] = (r >> 17) & 1;
        uint32_t q = (r >> 3) % 100;
        area[i] = q < 50 ? 1 : q < 70 ? 2 : q < 80 ? 3 : q < 88 ? 4 : q < 95 ? 5 : 6;
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        r = (uint32_t)(x >> 33);
        q = r % 100;
        band[i] = q < 40 ? 1 : q < 70 ? 2 : q < 85 ? 3 : q < 95 ? 4 : 5;
        sub[i] = (int64_t)((r >> 8) % NSUB);
        if (band[i] >= 3 || area[i] >= 4) sub[i] %= 12; /* fewer people there */
        used += (size_t)snprintf(text + used, sizeof text - used,
                                 "%lld,%s,a%lld,b%lld,%lld\n", (long long)ts[i],
                                 types[type[i]], (long long)area[i],
                                 (long long)band[i], (long long)sub[i]);
    }
    char path[600];
    snprintf(path, sizeof path, "%s/ev-%u.csv", g_dir, seed);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);

    sl_schema *ev = sl_schema_new();
    sl_schema_add(ev, "ts", SL_TIMESTAMP);
    sl_schema_add(ev, "type", SL_STRING);
    sl_schema_add(ev, "area", SL_STRING);
    sl_schema_add(ev, "band", SL_STRING);
    sl_schema_add(ev, "sub", SL_INT64);
    char err[512];
    sl_job *job = sl_job_new(err, sizeof err);
    assert_int_equal(sl_job_set(job, "parallelism", parallelism, err, sizeof err), 0);
    sl_stream *s = sl_job_source(job, "file", ev,
                                 (const char *[]){"path", path, "time.column", "ts",
                                                  "watermark.delay.ms", "200000",
                                                  NULL});
    s = sl_stream_key_by(s, (const char *[]){"type", NULL});
    sl_agg_spec aggs[] = {{.kind = SL_AGG_COUNT, .as = "events"},
                          {.kind = SL_AGG_COUNT_DISTINCT, .col = "sub",
                           .as = "subscribers"}};
    s = sl_stream_window_fold(s, &(sl_window_spec){.size_ms = 60000},
                              (const char *[]){"area", "band", NULL}, aggs, 2,
                              &(sl_fold_spec){.k = FK, .count_col = "subscribers",
                                              .levels = g_levels, .nlevels = 4});
    static fout got, want;
    got.n = want.n = 0;
    assert_int_equal(sl_stream_sink_fn(s, fold_collect, &got), 0);
    if (sl_job_run(job)) fail_msg("job: %s", sl_job_error(job));
    sl_job_stats st;
    sl_job_stats_get(job, &st);
    sl_job_free(job);
    sl_schema_free(ev);

    uint64_t folded = 0, suppressed = 0;
    int64_t lost = 0;
    static uint8_t sel[NEV];
    for (int64_t ws = 0; ws < 120000; ws += 60000)
        for (int t = 0; t < 2; t++) {
            for (int i = 0; i < NEV; i++)
                sel[i] = ts[i] >= ws && ts[i] < ws + 60000 && type[i] == t;
            lost += model(area, band, sub, sel, NEV, ws, types[t], &want,
                          &folded, &suppressed);
        }
    qsort(got.rows, (size_t)got.n, sizeof got.rows[0], frow_cmp);
    qsort(want.rows, (size_t)want.n, sizeof want.rows[0], frow_cmp);
    int64_t published = 0;
    for (int i = 0; i < got.n; i++) {
        assert_true(got.rows[i].subs >= FK); /* no published group below k */
        published += got.rows[i].events;
        if (i) assert_true(frow_cmp(&got.rows[i - 1], &got.rows[i]) != 0);
    }
    assert_int_equal(got.n, want.n);
    for (int i = 0; i < got.n; i++) {
        const frow *a = &got.rows[i], *b = &want.rows[i];
        if (frow_cmp(a, b) || a->events != b->events || a->subs != b->subs)
            fail_msg("row %d: got %lld %s %s %s %lld %lld, want %lld %s %s %s "
                     "%lld %lld", i, (long long)a->ws, a->type, a->area, a->band,
                     (long long)a->events, (long long)a->subs, (long long)b->ws,
                     b->type, b->area, b->band, (long long)b->events,
                     (long long)b->subs);
    }
    assert_int_equal(published + lost, NEV); /* totals preserved */
    assert_int_equal(st.groups_folded, folded);
    assert_int_equal(st.groups_suppressed, suppressed);
    /* the case is not vacuous: groups were folded, at several levels */
    print_message("fold seed %u: %d rows, %llu folded, %llu suppressed, %lld events withheld\n", seed, got.n, (unsigned long long)folded, (unsigned long long)suppressed, (long long)lost);
    assert_true(folded > 0);
    int coarse = 0;
    for (int i = 0; i < got.n; i++)
        coarse += got.rows[i].area[0] != 'a' || got.rows[i].band[0] != 'b';
    assert_true(coarse >= 2);
}

static void test_fold(void **state)
{
    (void)state;
    const sl__source_vt *vt = sl__source_find("file");
    if (!vt || !vt->configure) skip();
    assert_non_null(mkdtemp(g_dir));
    for (uint32_t seed = 1; seed <= 6; seed++)
        run_fold(seed, seed % 2 ? "1" : "2");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    assert_int_equal(system(cmd), 0);
}

static void expect_fold(const char *const *key, const char *const *group,
                        const sl_fold_spec *f, const char *what)
{
    sl_schema *in = sl_schema_new();
    sl_schema_add(in, "ts", SL_TIMESTAMP);
    sl_schema_add(in, "type", SL_STRING);
    sl_schema_add(in, "area", SL_STRING);
    sl_schema_add(in, "subscribers", SL_INT64);
    sl_schema_add(in, "share", SL_FLOAT64);
    sl_job *job = sl_job_new(NULL, 0);
    sl_stream *s = sl__job_add_source(job, &fake_src, in, NULL);
    sl__stream_set_time_col(s, "ts");
    if (key) s = sl_stream_key_by(s, key);
    sl_agg_spec aggs[] = {{.kind = SL_AGG_COUNT, .as = "n"},
                          {.kind = SL_AGG_COUNT_DISTINCT, .col = "subscribers",
                           .as = "subs"}};
    sl_stream *r = sl_stream_window_fold(s, &(sl_window_spec){.size_ms = 60000},
                                         group, aggs, 2, f);
    if (!what) {
        if (!r) fail_msg("unexpected error: %s", sl_job_error(job));
        assert_null(sl_job_error(job));
    } else {
        assert_null(r);
        const char *e = sl_job_error(job);
        if (!e || !strstr(e, what)) fail_msg("error '%s' lacks '%s'", e, what);
    }
    sl_job_free(job);
    sl_schema_free(in);
}

static void test_fold_builder(void **state)
{
    (void)state;
    const char *const area[] = {"area", NULL}, *const share[] = {"share", NULL};
    const char *const type[] = {"type", NULL};
    const sl_fold_level lv[] = {{"area", NULL}};
    const sl_fold_level bad[] = {{"share", NULL}};
    const char *const odd[] = {"x", NULL};
    const sl_fold_level lodd[] = {{"area", odd}};
    sl_fold_spec ok = {.k = 16, .count_col = "subs", .levels = lv, .nlevels = 1};
    expect_fold(type, area, &ok, NULL);
    expect_fold(NULL, area, &ok, "keyed (key_by)");
    expect_fold(area, area, &ok, "part of the stream's key");
    expect_fold(type, area, &(sl_fold_spec){.k = 1, .count_col = "subs"},
                "at least 2");
    expect_fold(type, area, &(sl_fold_spec){.k = 16, .count_col = "n"},
                "COUNT_DISTINCT");
    expect_fold(type, share, &(sl_fold_spec){.k = 16, .count_col = "subs",
                                             .levels = bad, .nlevels = 1},
                "VARCHAR column of group_cols");
    expect_fold(area, (const char *[]){"share", NULL},
                &(sl_fold_spec){.k = 16, .count_col = "subs", .levels = lv,
                                .nlevels = 1},
                "group_cols");
    expect_fold(type, area, &(sl_fold_spec){.k = 16, .count_col = "subs",
                                             .levels = lodd, .nlevels = 1},
                "no coarser value");
    expect_fold(type, area, NULL, "no fold");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_operator),
        cmocka_unit_test(test_builder),
        cmocka_unit_test(test_fold),
        cmocka_unit_test(test_fold_builder),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
