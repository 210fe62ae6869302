/* test_route_order.c — key_by routing end to end through the public API:
 * a source of 3 partitions feeds 3 tasks that route every row by key to
 * 3 downstream tasks while barriers (checkpoints every few ms), watermarks
 * and canaries are interleaved with the rows. Every data row must arrive
 * exactly once with its exact content (a string that lives in the source
 * batch's arena, NULLs, a boolean), and the rows of each (partition, key)
 * in source order: the per-channel FIFO the exchange promises. Batch sizes
 * of 16 (builders sealed in the middle of a source batch) and 1024. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "testutil.h"

enum { N = 120000, PARTS = 3, KEYS = 11 };

typedef struct {
    int64_t n;
} osrc_conf;

typedef struct {
    int *parts, nparts, cur;
    int64_t *next;
    int64_t n;
} osrc;

static int osrc_configure(void **conf, const char *const *kv, const sl_schema *s,
                          char *err, size_t errsz)
{
    (void)s;
    static const sl__conf_def defs[] = {
        {.key = "n", .type = SL_CONF_INT, .def = "1000", .min = 0, .max = INT64_MAX / 4,
         .offset = offsetof(osrc_conf, n)},
        {0}};
    osrc_conf *c = sl__xcalloc(1, sizeof *c);
    int rc = sl__conf_apply(defs, c, kv, "osrc", NULL, err, errsz);
    if (rc) {
        free(c);
        return rc;
    }
    *conf = c;
    return 0;
}

static int osrc_partitions(const void *conf)
{
    (void)conf;
    return PARTS;
}

static int osrc_open(void **st, const void *conf, const sl_schema *s, const int *parts,
                     int nparts, sl__ctx *ctx, char *err, size_t errsz)
{
    (void)s, (void)ctx, (void)err, (void)errsz;
    osrc *v = sl__xcalloc(1, sizeof *v);
    v->n = ((const osrc_conf *)conf)->n;
    v->parts = sl__xcalloc((size_t)nparts, sizeof(int));
    memcpy(v->parts, parts, sizeof(int) * (size_t)nparts);
    v->nparts = nparts;
    v->next = sl__xcalloc((size_t)nparts, sizeof(int64_t));
    for (int i = 0; i < nparts; i++) v->next[i] = parts[i];
    *st = v;
    return 0;
}

/* Row i: ts = i, key = i % KEYS, val = i, note = "n<i>" (NULL when
 * i % 7 == 0), flag = i % 2 (NULL when i % 5 == 0); partition i % PARTS. */
static int osrc_read(void *st, sl_batch *b, int *part, char *err, size_t errsz)
{
    (void)err, (void)errsz;
    osrc *v = st;
    for (int k = 0; k < v->nparts; k++) {
        int p = (v->cur + k) % v->nparts;
        if (v->next[p] >= v->n) continue;
        v->cur = (p + 1) % v->nparts;
        *part = p;
        int64_t *ts = sl_batch_i64(b, 0), *key = sl_batch_i64(b, 1), *val = sl_batch_i64(b, 2);
        uint8_t *flag = sl_batch_bool(b, 4);
        /* a third of a batch at a time, so batches and barriers interleave finely */
        size_t stop = sl_batch_len(b) + sl_batch_cap(b) / 3 + 1;
        if (stop > sl_batch_cap(b)) stop = sl_batch_cap(b);
        size_t r = sl_batch_len(b);
        while (r < stop && v->next[p] < v->n) {
            int64_t i = v->next[p];
            ts[r] = i;
            key[r] = i % KEYS;
            val[r] = i;
            if (i % 7 == 0) {
                sl_batch_valid(b, 3)[r] = 0;
            } else {
                char s[32];
                int n = snprintf(s, sizeof s, "n%lld", (long long)i);
                sl_batch_set_str(b, 3, r, s, (size_t)n);
            }
            flag[r] = (uint8_t)(i % 2);
            sl_batch_valid(b, 4)[r] = i % 5 != 0;
            r++;
            v->next[p] += PARTS;
        }
        sl_batch_set_len(b, r);
        return (int)r;
    }
    return SL_EEOF;
}

static void osrc_close(void *st)
{
    osrc *v = st;
    free(v->parts);
    free(v->next);
    free(v);
}

/* Rewinding, which checkpoints require: a partition's position is its
 * next record; `part` indexes the instance's partitions. */
static int osrc_local(const osrc *v, int part)
{
    return part >= 0 && part < v->nparts ? part : -1;
}

static int osrc_position(void *st, int part, int64_t *pos)
{
    osrc *v = st;
    int k = osrc_local(v, part);
    if (k < 0) return SL_EINVAL;
    *pos = v->next[k];
    return 0;
}

static int osrc_seek(void *st, int part, int64_t pos)
{
    osrc *v = st;
    int k = osrc_local(v, part);
    if (k < 0) return SL_EINVAL;
    v->next[k] = pos;
    return 0;
}

static const sl__source_vt osrc_vt = {
    .name = "osrc", .configure = osrc_configure, .partitions = osrc_partitions,
    .open = osrc_open, .read = osrc_read, .close = osrc_close, .conf_free = free,
    .position = osrc_position, .seek = osrc_seek};

/* What the sink saw. A key is routed to one task, so the entries of a key
 * are only touched by that task's thread; `seen` is per row. */
typedef struct {
    int64_t last[PARTS][KEYS]; /* last val of (partition, key), -1 none */
    uint8_t seen[N];
    _Atomic int64_t rows, canaries, bad_order, bad_content, dup;
} got_t;

static got_t G;

static int check(const sl_batch *b, void *ud)
{
    got_t *g = ud;
    const sl_schema *s = sl_batch_schema(b);
    const int cts = sl_schema_find(s, "ts"), ck = sl_schema_find(s, "key"),
              cv = sl_schema_find(s, "val"), cn = sl_schema_find(s, "note"),
              cf = sl_schema_find(s, "flag");
    const uint8_t *kind = sl_batch_kind(b);
    for (size_t r = 0; r < sl_batch_len(b); r++) {
        if (kind[r] != SL_KIND_DATA) {
            g->canaries++;
            continue;
        }
        int64_t i = sl_batch_i64(b, cv)[r];
        if (i < 0 || i >= N) {
            g->bad_content++;
            continue;
        }
        bool ok = sl_batch_valid(b, cv)[r] && sl_batch_i64(b, cts)[r] == i &&
                  sl_batch_i64(b, ck)[r] == i % KEYS;
        if (i % 7 == 0) {
            ok = ok && !sl_batch_valid(b, cn)[r];
        } else {
            char want[32];
            int n = snprintf(want, sizeof want, "n%lld", (long long)i);
            const sl_str *v = &sl_batch_str(b, cn)[r];
            ok = ok && sl_batch_valid(b, cn)[r] && v->len == (uint32_t)n &&
                 memcmp(v->ptr, want, (size_t)n) == 0;
        }
        if (i % 5 == 0) ok = ok && !sl_batch_valid(b, cf)[r];
        else ok = ok && sl_batch_valid(b, cf)[r] && sl_batch_bool(b, cf)[r] == i % 2;
        if (!ok) g->bad_content++;
        int64_t *last = &g->last[i % PARTS][i % KEYS];
        if (i <= *last) g->bad_order++;
        *last = i;
        if (g->seen[i]++) g->dup++;
        g->rows++;
    }
    return 0;
}

static void run(const char *batch_size)
{
    memset(&G, 0, sizeof G);
    for (int p = 0; p < PARTS; p++)
        for (int k = 0; k < KEYS; k++) G.last[p][k] = -1;
    char dir[] = "/tmp/sluice-route-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char ck[64];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    char err[512];
    sl_job *j = sl_job_new(err, sizeof err);
    const char *kv[][2] = {{"parallelism", "3"}, {"batch.size", batch_size},
                           {"output.dir", dir}, {"checkpoint.dir", ck},
                           {"checkpoint.interval.ms", "100"}, {"canary.interval.ms", "20"},
                           {"source.rate", "300000"},
                           {"flush.ms", "1"}, {"exchange.capacity", "2"},
                           {"metrics.address", ""}, {"delivery", "at-least-once"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (sl_job_set(j, kv[i][0], kv[i][1], err, sizeof err) != 0)
            fail_msg("%s: %s", kv[i][0], err);
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "ts", SL_TIMESTAMP);
    sl_schema_add(s, "key", SL_INT64);
    sl_schema_add(s, "val", SL_INT64);
    sl_schema_add(s, "note", SL_STRING);
    sl_schema_add(s, "flag", SL_BOOL);
    sl_stream *x = sl__job_add_source(j, &osrc_vt, s,
                                      (const char *[]){"n", "120000", "time.column", "ts", NULL});
    x = sl_stream_key_by(x, (const char *[]){"key", NULL});
    sl_stream_sink_fn(x, check, &G);
    int rc = sl_job_run(j);
    if (rc) fprintf(stderr, "job error: %s\n", sl_job_error(j));
    assert_int_equal(rc, 0);
    sl_job_stats st;
    sl_job_stats_get(j, &st);
    sl_job_free(j);
    sl_schema_free(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    printf("batch.size %s: %lld rows, %lld canaries, %llu checkpoints\n", batch_size,
           (long long)G.rows, (long long)G.canaries, (unsigned long long)st.checkpoints_completed);
    assert_int_equal(G.bad_content, 0);
    assert_int_equal(G.bad_order, 0);
    assert_int_equal(G.dup, 0);
    assert_int_equal(G.rows, N);
    assert_true(st.checkpoints_completed >= 1); /* barriers did interleave */
    for (int i = 0; i < N; i++) assert_int_equal(G.seen[i], 1);
}

static void small_batches(void **st)
{
    (void)st;
    run("16");
}

static void default_batches(void **st)
{
    (void)st;
    run("1024");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(small_batches),
        cmocka_unit_test(default_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
