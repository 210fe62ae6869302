/* test_count_by.c — count_by (src/ops/count.c) through the public API: a
 * file source over a CSV written here whose VARCHAR column has no domain
 * (so every record's value is looked up, not matched by pointer), values of
 * every length 1..49 that differ from each other in a single byte at every
 * position (the word-wise comparison), the literal "other" and more than
 * the 64 values told apart; the job's counters must equal the counts the
 * test computes from the rows it wrote, with the first 64 values in order
 * of appearance and everything else under "other" (seed from the commit). */
#include <stdio.h>
#include <unistd.h>

#include "core/stats.h"
#include "testutil.h"

#define ROWS 20000
#define NVAL 90

static char g_path[256];
static char vals[NVAL][64];

static uint64_t next(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct {
    char label[128];
    uint64_t n;
    int found;
} want_t;

static want_t want[NVAL + 1];
static int nwant;

static void got(void *ud, const char *name, const char *help, const char *labels, uint64_t v)
{
    (void)help;
    int *seen = ud;
    if (strcmp(name, "test_values_total") != 0) return;
    for (int i = 0; i < nwant; i++)
        if (!strcmp(want[i].label, labels)) {
            assert_int_equal(want[i].found, 0);
            assert_int_equal(v, want[i].n);
            want[i].found = 1;
            (*seen)++;
            return;
        }
    fail_msg("unexpected counter %s{%s} = %llu", name, labels, (unsigned long long)v);
}

static int sink(const sl_batch *b, void *ud)
{
    (void)b, (void)ud;
    return 0;
}

static void counts_equal_the_rows(void **state)
{
    (void)state;
    uint64_t x = tu_seed("counts_equal_the_rows");
    /* value i: length 1 + i % 49, all 'a' but one byte (at i / 49 * 7 +
     * i % 5, within the value) set to 'b' + i % 20; one "other" literal */
    for (int i = 0; i < NVAL; i++) {
        size_t len = 1 + (size_t)i % 49;
        memset(vals[i], 'a', len);
        vals[i][len] = 0;
        vals[i][((size_t)i / 49 * 7 + (size_t)i % 5) % len] = (char)('b' + i % 20);
    }
    snprintf(vals[NVAL - 1], sizeof vals[NVAL - 1], "other");
    /* duplicates among the generated values would break the model */
    for (int i = 0; i < NVAL; i++)
        for (int j = 0; j < i; j++) assert_string_not_equal(vals[i], vals[j]);

    snprintf(g_path, sizeof g_path, "/tmp/sluice-test-count-by-%d.csv", (int)getpid());
    FILE *f = fopen(g_path, "w");
    assert_non_null(f);
    fprintf(f, "v,n\n");
    /* the model: the first 64 values of length <= 48 (not "other") in
     * order of appearance get their own counter, the rest count as other */
    int slot_of[NVAL];
    for (int i = 0; i < NVAL; i++) slot_of[i] = -1;
    int nslots = 0;
    uint64_t other = 0, per[NVAL] = {0};
    for (int r = 0; r < ROWS; r++) {
        /* skewed: the first values are frequent, so slots fill early */
        int i = (int)(next(&x) % 3 ? next(&x) % 12 : next(&x) % NVAL);
        fprintf(f, "%s,%d\n", vals[i], r);
        if (slot_of[i] < 0 && strlen(vals[i]) <= 48 && i != NVAL - 1 && nslots < 64)
            slot_of[i] = nslots++;
        if (slot_of[i] >= 0) per[i]++;
        else other++;
    }
    fclose(f);
    nwant = 0;
    for (int i = 0; i < NVAL; i++)
        if (slot_of[i] >= 0) {
            snprintf(want[nwant].label, sizeof want[nwant].label, "v=\"%s\"", vals[i]);
            want[nwant++].n = per[i];
        }
    assert_int_equal(nslots, 64); /* the cap is reached */
    assert_true(other > 0);
    snprintf(want[nwant].label, sizeof want[nwant].label, "v=\"other\"");
    want[nwant++].n = other;

    char err[512];
    sl_job *j = sl_job_new(err, sizeof err);
    assert_int_equal(sl_job_set(j, "parallelism", "1", err, sizeof err), 0);
    assert_int_equal(sl_job_set(j, "output.dir", "/tmp", err, sizeof err), 0);
    assert_int_equal(sl_job_set(j, "metrics.address", "", err, sizeof err), 0);
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "v", SL_STRING);
    sl_schema_add(s, "n", SL_INT64);
    sl_stream *st = sl_job_source(j, "file", s, (const char *[]){"path", g_path, NULL});
    st = sl_stream_count_by(st, "v", "test_values_total", "values per v");
    assert_int_equal(sl_stream_sink_fn(st, sink, NULL), 0);
    int rc = sl_job_run(j);
    if (rc) fprintf(stderr, "job error: %s\n", sl_job_error(j));
    assert_int_equal(rc, 0);
    int seen = 0;
    sl__job_counters_each(j, got, &seen);
    assert_int_equal(seen, nwant);
    sl_job_free(j);
    sl_schema_free(s);
    unlink(g_path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(counts_equal_the_rows)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
