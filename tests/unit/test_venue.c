/* test_venue.c — venue reports: the time-blurring noise (bounded, uniform,
 * identical on replay, keyed), the venue file loader (values and errors
 * naming the line), age bands at a venue's date, and the venue-report
 * operator on a hand-made case: early firings with the differencing
 * defence (exact emissions written out by hand), the final row, slices,
 * late rows, and a snapshot/restore in the middle that continues with the
 * same rows as an uninterrupted run. */
#include "testutil.h"

#include <unistd.h>

#include "ops/privacy.h"
#include "ops/venue.h"

static sl_keyring *keyring(const char *hex)
{
    char path[] = "/tmp/sl-venue-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "k1 %s\n", hex);
    fclose(f);
    char err[256];
    sl_keyring *k = sl_keyring_load(path, err, sizeof err);
    unlink(path);
    assert_non_null(k);
    return k;
}

#define KEY_A "3333333333333333333333333333333333333333333333333333333333333333"
#define KEY_B "4444444444444444444444444444444444444444444444444444444444444444"

static void test_blur_noise(void **state)
{
    (void)state;
    sl_keyring *ka = keyring(KEY_A), *kb = keyring(KEY_B);
    char err[128];
    sl__hmac *a = sl__blur_mac(ka, err, sizeof err), *a2 = sl__blur_mac(ka, err, sizeof err);
    sl__hmac *b = sl__blur_mac(kb, err, sizeof err);
    const int64_t B = 300000; /* +-5 min */
    enum { N = 100000 };
    double sum = 0;
    int64_t lo = B, hi = -B;
    int same_key = 0, other_key_same = 0, lo_decile = 0, hi_decile = 0;
    for (int64_t i = 0; i < N; i++) {
        int64_t x = sl__blur_noise(a, 1000 + i, 29000000 + i % 7, B);
        assert_true(x >= -B && x <= B);                                /* bounded */
        same_key += x == sl__blur_noise(a2, 1000 + i, 29000000 + i % 7, B); /* replay */
        other_key_same += x == sl__blur_noise(b, 1000 + i, 29000000 + i % 7, B);
        sum += (double)x;
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
        lo_decile += x < -B + B / 5;
        hi_decile += x >= B - B / 5;
    }
    assert_int_equal(same_key, N);
    assert_true(other_key_same < 10); /* P(equal) = 1/600001 per draw */
    /* uniform on [-B, B]: mean 0 (sd of the mean B/sqrt(3N) ~ 550) */
    assert_true(sum / N > -3000 && sum / N < 3000);
    assert_true(lo < -B + 100 && hi > B - 100);
    /* each tenth of the range holds ~N/10 (sd ~ 95) */
    assert_true(lo_decile > N / 10 - 600 && lo_decile < N / 10 + 600);
    assert_true(hi_decile > N / 10 - 600 && hi_decile < N / 10 + 600);
    /* same subscriber, same bucket: same noise; another bucket: another */
    assert_true(sl__blur_noise(a, 7, 1, B) == sl__blur_noise(a, 7, 1, B));
    int differ = 0;
    for (int64_t q = 0; q < 10; q++)
        differ += sl__blur_noise(a, 7, q, B) != sl__blur_noise(a, 7, q + 1, B);
    assert_true(differ >= 9);
    assert_int_equal(sl__blur_noise(a, 7, 1, 0), 0);
    sl__hmac_free(a);
    sl__hmac_free(a2);
    sl__hmac_free(b);
    sl_keyring_free(ka);
    sl_keyring_free(kb);
}

static char *write_tmp(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/sl-venues-XXXXXX");
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_venues_load(void **state)
{
    (void)state;
    char err[512];
    char *p = write_tmp("# venues\nname,start,end,cells,area,tz\n"
                        "arena,2026-01-05T20:00:00,2026-01-05T23:00:00,10-12;20,A0001,+01:00\n"
                        "fair,1767600000000,1767603600000,12,A0002,\n");
    sl_venues *v = sl_venues_load(p, err, sizeof err);
    unlink(p);
    assert_non_null(v);
    assert_int_equal(sl_venues_count(v), 2);
    assert_int_equal(v->v[0].start, 1767639600000); /* 20:00 at +01:00 = 19:00Z */
    assert_int_equal(v->v[0].end, 1767650400000);
    assert_string_equal(v->v[0].area, "A0001");
    assert_int_equal(v->nidx, 5);
    /* sorted by cell: 10 11 12(arena) 12(fair) 20 */
    assert_int_equal(v->idx[2].cell, 12);
    assert_int_equal(v->idx[2].venue, 0);
    assert_int_equal(v->idx[3].venue, 1);
    assert_int_equal(v->idx[4].cell, 20);
    p = write_tmp("area,share\nA0001,0.25\nA0002,0.5\n");
    assert_int_equal(sl_venues_market_share(v, p, err, sizeof err), 0);
    unlink(p);
    assert_true(v->v[0].share == 0.25 && v->v[1].share == 0.5);
    p = write_tmp("area,share\nA0001,0.25\n");
    assert_int_equal(sl_venues_market_share(v, p, err, sizeof err), SL_EINVAL);
    unlink(p);
    assert_non_null(strstr(err, "venue 'fair' has area 'A0002'"));
    sl_venues_free(v);

    static const struct { const char *text, *msg; } bad[] = {
        {"name,start,cells\n", ":1: the header must name"},
        {"name,start,end,cells\na,2026-01-05T20:00:00Z,2026-01-05T19:00:00Z,1\n",
         ":2: start '2026-01-05T20:00:00Z' and end"},
        {"name,start,end,cells\na,1,2,x\n", ":2: cells 'x'"},
        {"name,start,end,cells\na,1,2,5-3\n", ":2: cells '5-3'"},
        {"name,start,end,cells,tz\na,1,2,1,Europe/Berlin\n", ":2: tz 'Europe/Berlin'"},
        {"name,start,end,cells\na,1,2,1\na,3,4,1\n", ":3: venue 'a' is defined twice"},
        {"name,start,end,cells\na,1,2\n", ":2: 3 fields, the header has 4"},
        {"name,start,end,cells\n\n\na,1,2,\n", ":4: cells ''"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = write_tmp(bad[i].text);
        err[0] = 0;
        assert_null(sl_venues_load(p, err, sizeof err));
        unlink(p);
        if (!strstr(err, bad[i].msg)) fail_msg("case %zu: '%s'", i, err);
    }
}

static void test_bands(void **state)
{
    (void)state;
    int64_t day = sl__days_from_civil(2026, 1, 5);
    int64_t ms = 86400000;
    assert_int_equal(sl__venue_band(sl__days_from_civil(2008, 1, 5) * ms, day), 2); /* 18 today */
    assert_int_equal(sl__venue_band(sl__days_from_civil(2008, 1, 6) * ms, day), 1); /* 17 */
    assert_int_equal(sl__venue_band(sl__days_from_civil(1961, 1, 5) * ms, day), 7); /* 65 */
    assert_int_equal(sl__venue_band(sl__days_from_civil(1992, 6, 1) * ms, day), 3); /* 33: 25-34 */
    assert_int_equal(sl__venue_band(sl__days_from_civil(2027, 1, 1) * ms, day), 0); /* unborn */
}

/* ---- the operator --------------------------------------------------------- */
#define T0 1000000000LL
#define MIN 60000LL

static sl_schema *in_schema(void)
{
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "ts", SL_TIMESTAMP);
    sl_schema_add(s, "sub", SL_INT64);
    sl_schema_add(s, "venue_id", SL_INT64);
    sl_schema_add(s, "grp", SL_INT64);
    return s;
}

static sl_batch *rows(const sl_schema *s, const int64_t (*r)[3], int n)
{
    sl_batch *b = sl__batch_new(s, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        sl_batch_i64(b, 0)[i] = r[i][0];
        sl_batch_i64(b, 1)[i] = r[i][1];
        sl_batch_i64(b, 2)[i] = 0;
        sl_batch_i64(b, 3)[i] = r[i][2];
        for (int c = 0; c < 4; c++) sl_batch_valid(b, c)[i] = 1;
    }
    sl_batch_set_len(b, (size_t)n);
    return b;
}

typedef struct {
    sl_venues vs;
    sl__venue v;
    sl__venue_cell cell;
    sl__venue_report_conf conf;
    sl_schema *in, *out;
    sl__opinfo info;
    sl__ctx ctx;
} fixture;

static void fixture_init(fixture *f)
{
    memset(f, 0, sizeof *f);
    f->v = (sl__venue){.name = "arena", .start = T0, .end = T0 + 30 * MIN,
                       .share = 0.25, .day = T0 / 86400000};
    f->cell = (sl__venue_cell){1, 0};
    f->vs = (sl_venues){.v = &f->v, .n = 1, .idx = &f->cell, .nidx = 1};
    f->conf = (sl__venue_report_conf){
        .venues = &f->vs,
        .spec = {.k = 3, .emit_every_ms = 10 * MIN, .slice_ms = 15 * MIN, .round_to = 10},
        .ngender = 1, .in_ts = 0, .in_sub = 1, .in_venue = 2, .in_grp = 3};
    f->in = in_schema();
    f->out = sl__venue_report_schema();
    f->info = (sl__opinfo){.in = f->in, .out = f->out, .time_col = 0, .batch_cap = 64};
    f->ctx = tu_ctx();
}

static void fixture_close(fixture *f)
{
    sl_schema_free(f->in);
    sl_schema_free(f->out);
}

/* Input: group 3 (25-34) gains subscribers 1-3 in the first 10 minutes,
 * 4 in the second, 5-7 in the third; group 2 (18-24) gets 2 people. */
static const int64_t part1[][3] = {
    {T0 + 1 * MIN, 1, 3}, {T0 + 2 * MIN, 2, 3}, {T0 + 3 * MIN, 3, 3},
    {T0 + 4 * MIN, 1, 3}, {T0 + 5 * MIN, 8, 2}, {T0 + 12 * MIN, 4, 3},
};
static const int64_t part2[][3] = {
    {T0 + 21 * MIN, 5, 3}, {T0 + 22 * MIN, 6, 3}, {T0 + 23 * MIN, 7, 3},
    {T0 + 29 * MIN, 9, 2}, {T0 + 29 * MIN, 1, 3},
};

typedef struct {
    char report[16], band[8];
    int64_t sstart, subs, extra, arr, dep, as_of;
    int final;
} orow;

static int collect(tu_sink *s, orow *o, int max)
{
    int n = 0;
    memset(o, 0, sizeof *o * (size_t)max); /* padding compares equal */
    for (int i = 0; i < s->n; i++) {
        sl_batch *b = s->got[i];
        for (uint32_t r = 0; r < b->n && n < max; r++, n++) {
            sl_str rep = sl_batch_str(b, 1)[r], band = sl_batch_str(b, 4)[r];
            snprintf(o[n].report, sizeof o[n].report, "%.*s", (int)rep.len, rep.ptr);
            snprintf(o[n].band, sizeof o[n].band, "%.*s", (int)band.len, band.ptr);
            o[n].sstart = sl_batch_i64(b, 2)[r];
            o[n].subs = sl_batch_i64(b, 6)[r];
            o[n].extra = sl_batch_i64(b, 7)[r];
            o[n].arr = sl_batch_valid(b, 8)[r] ? sl_batch_i64(b, 8)[r] : -1;
            o[n].dep = sl_batch_valid(b, 9)[r] ? sl_batch_i64(b, 9)[r] : -1;
            o[n].as_of = sl_batch_i64(b, 10)[r];
            o[n].final = sl_batch_bool(b, 11)[r];
        }
    }
    return n;
}

/* Runs the case; with `restore`, snapshots after part1 and its watermark,
 * and continues in a fresh instance restored from that snapshot. */
static int run_case(fixture *f, bool restore, orow *o, int max)
{
    void *st = NULL;
    char err[256];
    tu_sink sink;
    tu_sink_init(&sink, 64);
    assert_int_equal(sl__op_venue_report.open(&st, &f->conf, &f->info, &f->ctx, err,
                                              sizeof err), 0);
    assert_int_equal(sl__op_venue_report.batch(st, rows(f->in, part1, 6), &sink.out), 0);
    assert_int_equal(sl__op_venue_report.watermark(st, T0 + 15 * MIN, &sink.out), 0);
    if (restore) {
        sl__snap_writer *w = sl__snap_writer_mem();
        assert_int_equal(sl__op_venue_report.snapshot(st, w), 0);
        sl__op_venue_report.close(st);
        assert_int_equal(sl__op_venue_report.open(&st, &f->conf, &f->info, &f->ctx,
                                                  err, sizeof err), 0);
        size_t it = 0;
        int32_t kg;
        const void *data;
        size_t len;
        int sections = 0;
        while (sl__snap_writer_mem_next(w, &it, &kg, &data, &len)) {
            assert_int_equal(sl__op_venue_report.restore(st, kg, data, len), 0);
            sections++;
        }
        assert_int_equal(sections, 2); /* the venue and the operator's meta */
        sl__snap_writer_free(w);
    }
    assert_int_equal(sl__op_venue_report.batch(st, rows(f->in, part2, 5), &sink.out), 0);
    assert_int_equal(sl__op_venue_report.watermark(st, T0 + 40 * MIN, &sink.out), 0);
    /* a row after the final firing is late, not counted */
    uint64_t late0 = sl__test_counter(SL__CTR_LATE);
    static const int64_t late[][3] = {{T0 + 29 * MIN, 77, 3}};
    assert_int_equal(sl__op_venue_report.batch(st, rows(f->in, late, 1), &sink.out), 0);
    assert_int_equal(sl__test_counter(SL__CTR_LATE), late0 + 1);
    sl__op_venue_report.close(st);
    int n = collect(&sink, o, max);
    tu_sink_free(&sink);
    return n;
}

static void check_rows(const orow *o, int n)
{
    /* tick 10 min: 25-34 has 3 (>= k, first release); 18-24 has 1.
     * tick 20 min: 25-34 has 4, a change of 1 < k: held back.
     * final (30 min): 25-34 has 7 (change 4 >= k): published; 18-24 has 2.
     * slices of 15 min: [0,15): 25-34 present {1,2,3,4} arrivals 4 (1
     * departs later), departures {2,3,4} = 3; [15,30): 25-34 present
     * {5,6,7,1} = 4, arrivals 3, departures {5,6,7,1} = 4. */
    static const orow want[] = {
        {"cumulative", "25-34", T0, 3, 10 * 0 + 10, -1, -1, T0 + 10 * MIN, 0},
        {"cumulative", "25-34", T0, 7, 30, -1, -1, T0 + 30 * MIN, 1},
        {"slice", "25-34", T0, 4, 20, 4, 3, T0 + 30 * MIN, 1},
        {"slice", "25-34", T0 + 15 * MIN, 4, 20, 3, 4, T0 + 30 * MIN, 1},
    };
    assert_int_equal(n, 4);
    for (int i = 0; i < n; i++) {
        assert_string_equal(o[i].report, want[i].report);
        assert_string_equal(o[i].band, want[i].band);
        assert_int_equal(o[i].sstart, want[i].sstart);
        assert_int_equal(o[i].subs, want[i].subs);
        assert_int_equal(o[i].arr, want[i].arr);
        assert_int_equal(o[i].dep, want[i].dep);
        assert_int_equal(o[i].as_of, want[i].as_of);
        assert_int_equal(o[i].final, want[i].final);
    }
    /* extrapolated = subscribers / 0.25, rounded to 10 */
    assert_int_equal(o[0].extra, 10);
    assert_int_equal(o[1].extra, 30);
    assert_int_equal(o[2].extra, 20);
}

static void test_report_and_restore(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f);
    orow a[32], b[32];
    int na = run_case(&f, false, a, 32);
    check_rows(a, na);
    int nb = run_case(&f, true, b, 32);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, sizeof a[0] * (size_t)na);
    fixture_close(&f);
}

/* The final row repeats the last published count when the change since
 * is below k (invariant 2): 3 at the tick, 4 at the end. */
static void test_final_held_back(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f);
    f.conf.spec.slice_ms = 0;
    void *st = NULL;
    char err[256];
    tu_sink sink;
    tu_sink_init(&sink, 64);
    assert_int_equal(sl__op_venue_report.open(&st, &f.conf, &f.info, &f.ctx, err,
                                              sizeof err), 0);
    assert_int_equal(sl__op_venue_report.batch(st, rows(f.in, part1, 6), &sink.out), 0);
    assert_int_equal(sl__op_venue_report.watermark(st, SL_TS_MAX, &sink.out), 0);
    sl__op_venue_report.close(st);
    orow o[8];
    int n = collect(&sink, o, 8);
    tu_sink_free(&sink);
    assert_int_equal(n, 2);
    assert_int_equal(o[0].subs, 3);
    assert_int_equal(o[0].final, 0);
    assert_int_equal(o[1].subs, 3); /* exact is 4: held back */
    assert_int_equal(o[1].final, 1);
    fixture_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blur_noise),
        cmocka_unit_test(test_venues_load),
        cmocka_unit_test(test_bands),
        cmocka_unit_test(test_report_and_restore),
        cmocka_unit_test(test_final_held_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
