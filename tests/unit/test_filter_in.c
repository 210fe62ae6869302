/* test_filter_in.c — the string filter kernel (sl_stream_filter_in) and
 * projection pushdown (sl_job_source_columns) through the public API: a
 * file source over a CSV written here, kernels on a column with a domain
 * (pointer comparison) and one without (length + bytes), IN and NOT IN,
 * NULLs never kept; the rows reaching the sink are checked against the
 * same rule applied directly to the generated values. test_compaction
 * checks every column of the rows a filter keeps, for a filter that drops
 * few rows (runs moved whole) and one that keeps scattered rows (row by
 * row), with an unread (all-NULL) column and without. */
#include <stdio.h>
#include <unistd.h>

#include "testutil.h"

#define N 3000
static const char *const kinds[] = {"view", "click", "purchase", NULL};
static const char *const chans[] = {"web", "app", "spam", "", "webx", "we"};

/* row i: kind kinds[i % 3], chan chans[(i / 3) % 6] ("" = NULL), n = i,
 * note "note-i" */
static const char *chan_of(int i) { return chans[(i / 3) % 6]; }

typedef struct {
    int64_t n[N];
    int rows, notes_valid;
} got_t;

static int collect(const sl_batch *b, void *ud)
{
    got_t *g = ud;
    const sl_schema *s = sl_batch_schema(b);
    int cn = sl_schema_find(s, "n"), cnote = sl_schema_find(s, "note");
    for (size_t i = 0; i < sl_batch_len(b) && g->rows < N; i++) {
        g->n[g->rows++] = sl_batch_i64(b, cn)[i];
        g->notes_valid += sl_batch_valid(b, cnote)[i];
    }
    return 0;
}

static char g_path[256];

static int setup(void **state)
{
    (void)state;
    snprintf(g_path, sizeof g_path, "/tmp/sluice-test-filter-in-%d.csv", (int)getpid());
    FILE *f = fopen(g_path, "w");
    fprintf(f, "kind,chan,n,note\n");
    for (int i = 0; i < N; i++)
        fprintf(f, "%s,%s,%d,note-%d\n", kinds[i % 3], chan_of(i), i, i);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(g_path);
    return 0;
}

static sl_schema *schema(void)
{
    sl_schema *s = sl_schema_new();
    sl_schema_set_domain(s, sl_schema_add(s, "kind", SL_STRING), kinds);
    sl_schema_add(s, "chan", SL_STRING);
    sl_schema_add(s, "n", SL_INT64);
    sl_schema_add(s, "note", SL_STRING);
    return s;
}

/* kind IN kin AND chan [NOT] IN cin; project: read only kind, chan, n */
static void run(const char *const *kin, const char *const *cin, int negate, int project,
                got_t *g)
{
    char err[512];
    sl_job *j = sl_job_new(err, sizeof err);
    assert_int_equal(sl_job_set(j, "parallelism", "1", err, sizeof err), 0);
    assert_int_equal(sl_job_set(j, "output.dir", "/tmp", err, sizeof err), 0);
    assert_int_equal(sl_job_set(j, "metrics.address", "", err, sizeof err), 0);
    sl_schema *s = schema();
    sl_stream *x = sl_job_source(j, "file", s,
                                 (const char *[]){"path", g_path, NULL});
    if (project)
        assert_int_equal(sl_job_source_columns(j, (const char *[]){"kind", "chan", "n", NULL}), 0);
    x = sl_stream_filter_in(x, "kind", kin, 0);
    x = sl_stream_filter_in(x, "chan", cin, negate);
    assert_int_equal(sl_stream_sink_fn(x, collect, g), 0);
    int rc = sl_job_run(j);
    if (rc) fprintf(stderr, "job error: %s\n", sl_job_error(j));
    assert_int_equal(rc, 0);
    sl_job_free(j);
    sl_schema_free(s);
}

static bool in_list(const char *v, const char *const *l)
{
    for (int k = 0; l[k]; k++)
        if (!strcmp(v, l[k])) return true;
    return false;
}

static void check(const got_t *g, const char *const *kin, const char *const *cin, int negate)
{
    int want = 0;
    for (int i = 0; i < N; i++) {
        const char *c = chan_of(i);
        bool keep = in_list(kinds[i % 3], kin) && c[0] != '\0' && in_list(c, cin) != (negate != 0);
        if (!keep) continue;
        assert_true(want < g->rows);
        assert_int_equal(g->n[want], i); /* one task: input order */
        want++;
    }
    assert_int_equal(g->rows, want);
    assert_true(want > 100);
}

static void test_in(void **state)
{
    (void)state;
    const char *const kin[] = {"view", "purchase", NULL}, *const cin[] = {"web", "we", NULL};
    got_t *g = calloc(1, sizeof *g);
    run(kin, cin, 0, 0, g);
    check(g, kin, cin, 0);
    assert_int_equal(g->notes_valid, g->rows); /* every column read */
    free(g);
}

static void test_not_in_projected(void **state)
{
    (void)state;
    const char *const kin[] = {"click", NULL}, *const cin[] = {"spam", "webx", NULL};
    got_t *g = calloc(1, sizeof *g);
    run(kin, cin, 1, 1, g);
    check(g, kin, cin, 1);
    assert_int_equal(g->notes_valid, 0); /* note is never read: NULL */
    free(g);
}

/* ---- compaction after a filter (src/ops/basic.c compact) ---------------- */

typedef struct {
    int rows, bad;
    int64_t last;
    int project;
} comp_t;

/* Drops rows n % 97 == 5 (long runs kept: moved run by run) */
static void drop_few(const sl_batch *b, uint8_t *keep, void *ud)
{
    (void)ud;
    const int c = sl_schema_find(sl_batch_schema(b), "n");
    for (size_t i = 0; i < sl_batch_len(b); i++) keep[i] = sl_batch_i64(b, c)[i] % 97 != 5;
}

/* Keeps rows n % 3 == 1 and n % 5 != 0 (short runs: moved row by row) */
static void keep_scattered(const sl_batch *b, uint8_t *keep, void *ud)
{
    (void)ud;
    const int c = sl_schema_find(sl_batch_schema(b), "n");
    for (size_t i = 0; i < sl_batch_len(b); i++) {
        const int64_t n = sl_batch_i64(b, c)[i];
        keep[i] = n % 3 == 1 && n % 5 != 0;
    }
}

static bool str_is(const sl_batch *b, int col, size_t i, const char *want)
{
    const sl_str v = sl_batch_str(b, col)[i];
    return v.len == strlen(want) && memcmp(v.ptr, want, v.len) == 0;
}

/* Every column of every row that arrives is the generated row n's. */
static int check_rows(const sl_batch *b, void *ud)
{
    comp_t *g = ud;
    const sl_schema *s = sl_batch_schema(b);
    const int ck = sl_schema_find(s, "kind"), cc = sl_schema_find(s, "chan"),
              cn = sl_schema_find(s, "n"), cnote = sl_schema_find(s, "note");
    for (size_t i = 0; i < sl_batch_len(b); i++) {
        const int64_t n = sl_batch_i64(b, cn)[i];
        char note[32];
        snprintf(note, sizeof note, "note-%lld", (long long)n);
        const char *chan = chan_of((int)n);
        bool ok = n > g->last && sl_batch_valid(b, cn)[i] && str_is(b, ck, i, kinds[n % 3]) &&
                  sl_batch_valid(b, cc)[i] == (chan[0] != '\0') &&
                  (chan[0] == '\0' || str_is(b, cc, i, chan)) &&
                  (g->project ? !sl_batch_valid(b, cnote)[i]
                              : sl_batch_valid(b, cnote)[i] && str_is(b, cnote, i, note));
        g->bad += !ok;
        g->last = n;
        g->rows++;
    }
    return 0;
}

static void run_compaction(sl_filter_fn fn, int project, comp_t *g)
{
    char err[512];
    sl_job *j = sl_job_new(err, sizeof err);
    assert_int_equal(sl_job_set(j, "parallelism", "1", err, sizeof err), 0);
    assert_int_equal(sl_job_set(j, "output.dir", "/tmp", err, sizeof err), 0);
    assert_int_equal(sl_job_set(j, "metrics.address", "", err, sizeof err), 0);
    sl_schema *s = schema();
    sl_stream *x = sl_job_source(j, "file", s, (const char *[]){"path", g_path, NULL});
    if (project)
        assert_int_equal(sl_job_source_columns(j, (const char *[]){"kind", "chan", "n", NULL}), 0);
    x = sl_stream_filter(x, "f", fn, NULL);
    g->project = project;
    g->last = -1;
    assert_int_equal(sl_stream_sink_fn(x, check_rows, g), 0);
    int rc = sl_job_run(j);
    if (rc) fprintf(stderr, "job error: %s\n", sl_job_error(j));
    assert_int_equal(rc, 0);
    sl_job_free(j);
    sl_schema_free(s);
}

/* Both compaction paths, with every column read and with `note` unread
 * (all NULL in every batch: left unmoved); the rows kept and all their
 * values equal the generator's, in input order. */
static void test_compaction(void **state)
{
    (void)state;
    int want_few = 0, want_scattered = 0;
    for (int i = 0; i < N; i++) {
        want_few += i % 97 != 5;
        want_scattered += i % 3 == 1 && i % 5 != 0;
    }
    for (int project = 0; project < 2; project++) {
        comp_t g = {0};
        run_compaction(drop_few, project, &g);
        assert_int_equal(g.rows, want_few);
        assert_int_equal(g.bad, 0);
        comp_t h = {0};
        run_compaction(keep_scattered, project, &h);
        assert_int_equal(h.rows, want_scattered);
        assert_int_equal(h.bad, 0);
    }
}

static void test_errors(void **state)
{
    (void)state;
    char err[512];
    sl_job *j = sl_job_new(err, sizeof err);
    sl_schema *s = schema();
    sl_stream *x = sl_job_source(j, "file", s, (const char *[]){"path", g_path, NULL});
    assert_int_equal(sl_job_source_columns(j, (const char *[]){"n", "nope", NULL}), SL_EINVAL);
    assert_non_null(strstr(sl_job_error(j), "'nope'"));
    sl_job_free(j);
    j = sl_job_new(err, sizeof err);
    x = sl_job_source(j, "file", s, (const char *[]){"path", g_path, NULL});
    assert_null(sl_stream_filter_in(x, "n", (const char *[]){"1", NULL}, 0));
    assert_non_null(strstr(sl_job_error(j), "not VARCHAR"));
    sl_job_free(j);
    sl_schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in),
        cmocka_unit_test(test_not_in_projected),
        cmocka_unit_test(test_compaction),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
