/* test_cluster.c — the distributed mode's pure logic: the repartition
 * record encoding (round trip of every type with NULLs, subsets of rows,
 * truncated and foreign messages refused), the stage-2 watermark map, the
 * key group a row is routed to surviving the trip, and the job checks of
 * sl_job_run_cluster that need no broker (key changes, source kind).
 * Randomised cases take their seed from the commit (tu_seed, printed). */
#include "testutil.h"

#include "cluster/cluster.h"

static unsigned g_seed;

static uint64_t rnd(void)
{
    g_seed = g_seed * 1103515245u + 12345u;
    uint64_t a = g_seed >> 8;
    g_seed = g_seed * 1103515245u + 12345u;
    return (a << 24) ^ (g_seed >> 8);
}

static sl_schema *all_types(void)
{
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "i", SL_INT64);
    sl_schema_add(s, "f", SL_FLOAT64);
    sl_schema_add(s, "t", SL_TIMESTAMP);
    sl_schema_add(s, "s", SL_STRING);
    sl_schema_add(s, "b", SL_BOOL);
    return s;
}

static const char *const WORDS[] = {"", "SMS_SENT", "north", "a\0b", "\xc3\xa9t\xc3\xa9",
                                    "0123456789012345678901234567890123456789"};

static sl_batch *random_batch(const sl_schema *s, uint32_t n)
{
    sl_batch *b = sl__batch_new(s, n);
    for (uint32_t r = 0; r < n; r++) {
        for (int c = 0; c < s->n; c++) b->cols[c].valid[r] = rnd() % 7 != 0;
        int64_t v = (int64_t)rnd();
        switch (rnd() % 4) {
        case 0: v = INT64_MIN; break;
        case 1: v = INT64_MAX; break;
        case 2: v = (int64_t)(rnd() % 1000) - 500; break;
        default: break;
        }
        ((int64_t *)b->cols[0].data)[r] = v;
        ((double *)b->cols[1].data)[r] = (double)(int64_t)rnd() / 3.0;
        ((int64_t *)b->cols[2].data)[r] = (int64_t)(rnd() % 4000000000000ULL);
        const char *w = WORDS[rnd() % 6];
        size_t wl = w[0] == 'a' ? 3 : strlen(w);
        ((sl_str *)b->cols[3].data)[r] = (sl_str){.ptr = w, .len = (uint32_t)wl};
        ((uint8_t *)b->cols[4].data)[r] = (uint8_t)(rnd() & 1);
        b->kind[r] = rnd() % 50 == 0 ? 3 : SL_KIND_DATA;
    }
    b->n = n;
    return b;
}

/* Row r of a equals row q of b, column by column (NULL values ignored). */
static void assert_row_equal(const sl_batch *a, uint32_t r, const sl_batch *b, uint32_t q)
{
    assert_int_equal(a->kind[r], b->kind[q]);
    for (int c = 0; c < a->schema->n; c++) {
        assert_int_equal(a->cols[c].valid[r], b->cols[c].valid[q]);
        if (!a->cols[c].valid[r]) continue;
        switch (a->schema->cols[c].type) {
        case SL_STRING: {
            const sl_str *x = (const sl_str *)a->cols[c].data + r;
            const sl_str *y = (const sl_str *)b->cols[c].data + q;
            assert_int_equal(x->len, y->len);
            assert_memory_equal(x->ptr, y->ptr, x->len);
            break;
        }
        case SL_BOOL:
            assert_int_equal(((uint8_t *)a->cols[c].data)[r], ((uint8_t *)b->cols[c].data)[q]);
            break;
        case SL_FLOAT64:
            assert_memory_equal((double *)a->cols[c].data + r, (double *)b->cols[c].data + q,
                                8);
            break;
        default:
            assert_true(((int64_t *)a->cols[c].data)[r] == ((int64_t *)b->cols[c].data)[q]);
        }
    }
}

static void test_rows_round_trip(void **state)
{
    (void)state;
    sl_schema *s = all_types();
    for (int round = 0; round < 50; round++) {
        uint32_t n = (uint32_t)(rnd() % 300);
        sl_batch *b = random_batch(s, n ? n : 1);
        if (!n) b->n = 0;
        sl__buf buf = {0};
        sl__x_encode_rows(&buf, b, NULL, 0);
        assert_int_equal(sl__x_type(buf.p, buf.len), SL__X_ROWS);
        sl_batch *d = NULL;
        assert_int_equal(sl__x_decode_rows(buf.p, buf.len, s, &d), 0);
        assert_int_equal(d->n, b->n);
        for (uint32_t r = 0; r < b->n; r++) assert_row_equal(b, r, d, r);
        sl__batch_free(d);
        /* a subset of the rows, in another order */
        if (b->n > 3) {
            uint32_t rows[3] = {b->n - 1, 0, b->n / 2};
            buf.len = 0;
            sl__x_encode_rows(&buf, b, rows, 3);
            assert_int_equal(sl__x_decode_rows(buf.p, buf.len, s, &d), 0);
            assert_int_equal(d->n, 3);
            for (int k = 0; k < 3; k++) assert_row_equal(b, rows[k], d, (uint32_t)k);
            sl__batch_free(d);
        }
        sl__batch_free(b);
        sl__buf_free(&buf);
    }
    sl_schema_free(s);
}

static void test_rows_refused(void **state)
{
    (void)state;
    sl_schema *s = all_types();
    sl_batch *b = random_batch(s, 40);
    sl__buf buf = {0};
    sl__x_encode_rows(&buf, b, NULL, 0);
    sl_batch *d = (sl_batch *)1;
    /* every truncation is refused, never misread */
    for (size_t len = 0; len < buf.len; len++) {
        assert_int_equal(sl__x_decode_rows(buf.p, len, s, &d), SL_ECORRUPT);
        assert_null(d);
    }
    /* a trailing byte too */
    sl__buf_put(&buf, "x", 1);
    assert_int_equal(sl__x_decode_rows(buf.p, buf.len, s, &d), SL_ECORRUPT);
    buf.len--;
    /* another schema (a different job or version wrote the topic) */
    sl_schema *o = sl_schema_new();
    sl_schema_add(o, "i", SL_INT64);
    assert_int_equal(sl__x_decode_rows(buf.p, buf.len, o, &d), SL_ESTATE);
    sl_schema_free(o);
    /* a bool byte outside 0/1 */
    sl_schema *bs = sl_schema_new();
    sl_schema_add(bs, "b", SL_BOOL);
    sl_batch *bb = sl__batch_new(bs, 1);
    bb->n = 1;
    ((uint8_t *)bb->cols[0].data)[0] = 1;
    sl__buf bbuf = {0};
    sl__x_encode_rows(&bbuf, bb, NULL, 0);
    bbuf.p[bbuf.len - 1] = 7;
    assert_int_equal(sl__x_decode_rows(bbuf.p, bbuf.len, bs, &d), SL_ECORRUPT);
    assert_int_equal(sl__x_type("nope", 4), -1);
    sl__buf_free(&bbuf);
    sl__batch_free(bb);
    sl_schema_free(bs);
    sl__buf_free(&buf);
    sl__batch_free(b);
    sl_schema_free(s);
}

static void collect_wm(void *arg, uint32_t part, int64_t wm)
{
    int64_t *got = arg;
    got[part] = wm;
}

static void test_wm_record_round_trip(void **state)
{
    (void)state;
    uint32_t parts[3] = {2, 0, 5};
    int64_t wms[3] = {SL_TS_MAX, -7, 1700000000000};
    sl__buf buf = {0};
    sl__x_encode_wm(&buf, parts, wms, 3);
    assert_int_equal(sl__x_type(buf.p, buf.len), SL__X_WM);
    int64_t got[6] = {0};
    assert_int_equal(sl__x_decode_wm(buf.p, buf.len, collect_wm, got), 0);
    assert_true(got[2] == SL_TS_MAX && got[0] == -7 && got[5] == 1700000000000);
    assert_int_equal(sl__x_decode_wm(buf.p, buf.len - 1, collect_wm, got), SL_ECORRUPT);
    sl__buf_free(&buf);
}

static void test_wmmap(void **state)
{
    (void)state;
    sl__wmmap m;
    sl__wmmap_init(&m, 3);
    assert_true(sl__wmmap_min(&m) == SL_TS_MIN); /* nothing heard of yet */
    assert_true(sl__wmmap_update(&m, 0, 100));
    assert_true(sl__wmmap_update(&m, 1, 50));
    assert_true(sl__wmmap_min(&m) == SL_TS_MIN); /* partition 2 not heard of */
    assert_true(sl__wmmap_update(&m, 2, 70));
    assert_true(sl__wmmap_min(&m) == 50);
    /* a lower watermark (an instance took over and restarted) is ignored */
    assert_false(sl__wmmap_update(&m, 1, 10));
    assert_false(sl__wmmap_update(&m, 1, 50));
    assert_false(sl__wmmap_update(&m, 3, 1000)); /* no such source partition */
    assert_true(sl__wmmap_min(&m) == 50);
    assert_true(sl__wmmap_update(&m, 1, SL_TS_MAX));
    assert_true(sl__wmmap_min(&m) == 70);
    /* serialised and merged into a fresh map: the same */
    sl__buf buf = {0};
    sl__wmmap_encode(&m, &buf);
    sl__wmmap r;
    sl__wmmap_init(&r, 3);
    assert_int_equal(sl__wmmap_decode(&r, buf.p, buf.len), 0);
    for (int i = 0; i < 3; i++) assert_true(r.wm[i] == m.wm[i]);
    sl__wmmap other;
    sl__wmmap_init(&other, 4); /* the source topics changed */
    assert_int_equal(sl__wmmap_decode(&other, buf.p, buf.len), SL_ECORRUPT);
    assert_int_equal(sl__wmmap_decode(&r, buf.p, buf.len - 1), SL_ECORRUPT);
    sl__wmmap_close(&other);
    sl__wmmap_close(&r);
    sl__wmmap_close(&m);
    sl__buf_free(&buf);
}

/* Stage 1 routes a row to partition sl__key_hash % G; stage 2's operators
 * compute the key group of the decoded row themselves: they must agree. */
static void test_key_group_survives_the_trip(void **state)
{
    (void)state;
    sl_schema *s = all_types();
    sl_batch *b = random_batch(s, 200);
    int keys[2] = {3, 0};
    sl__buf buf = {0};
    sl__x_encode_rows(&buf, b, NULL, 0);
    sl_batch *d = NULL;
    assert_int_equal(sl__x_decode_rows(buf.p, buf.len, s, &d), 0);
    for (uint32_t r = 0; r < b->n; r++) {
        int g = (int)(sl__key_hash(b, keys, 2, r) % 128);
        assert_int_equal(sl__key_group(d, keys, 2, r, 128), g);
    }
    sl__batch_free(d);
    sl__batch_free(b);
    sl__buf_free(&buf);
    sl_schema_free(s);
}

/* ---- job checks that need no broker -------------------------------------- */
static int nsrc_configure(void **conf, const char *const *kv, const sl_schema *s, char *err,
                          size_t esz)
{
    (void)kv, (void)s, (void)err, (void)esz;
    *conf = NULL;
    return 0;
}
static int nsrc_partitions(const void *c) { (void)c; return 1; }
static int nsrc_open(void **st, const void *c, const sl_schema *s, const int *p, int n,
                     sl__ctx *ctx, char *err, size_t esz)
{
    (void)c, (void)s, (void)p, (void)n, (void)ctx, (void)err, (void)esz;
    *st = NULL;
    return 0;
}
static int nsrc_read(void *st, sl_batch *b, int *part, char *err, size_t esz)
{
    (void)st, (void)b, (void)part, (void)err, (void)esz;
    return SL_EEOF;
}
static void nsrc_close(void *st) { (void)st; }
static const sl__source_vt nsrc_vt = {.name = "nothing", .configure = nsrc_configure,
                                      .partitions = nsrc_partitions, .open = nsrc_open,
                                      .read = nsrc_read, .close = nsrc_close};
static int ignore(const sl_batch *b, void *u) { (void)b, (void)u; return 0; }

static const char *run_cluster(int key_changes, sl_schema *s)
{
    static char msg[1024];
    char err[512];
    sl_job *j = sl_job_new(err, sizeof err);
    sl_stream *x = sl__job_add_source(j, &nsrc_vt, s, NULL);
    for (int k = 0; k < key_changes; k++)
        x = sl_stream_key_by(x, (const char *[]){k ? "s" : "i", NULL});
    sl_stream_sink_fn(x, ignore, NULL);
    int rc = sl_job_run_cluster(j, "127.0.0.1:1");
    snprintf(msg, sizeof msg, "%s", rc ? sl_job_error(j) : "");
    sl_job_free(j);
    return msg;
}

static void test_job_checks(void **state)
{
    (void)state;
    sl_schema *s = all_types();
    const char *m = run_cluster(2, s);
    assert_non_null(strstr(m, "exactly one key change"));
    m = run_cluster(0, s);
    assert_non_null(strstr(m, "never changes its key"));
    m = run_cluster(1, s);
    assert_non_null(strstr(m, "--cluster: source nothing"));
    assert_non_null(strstr(m, "connector = 'kafka'"));
    sl_schema_free(s);
}

int main(void)
{
    g_seed = tu_seed("test_cluster");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_round_trip),
        cmocka_unit_test(test_rows_refused),
        cmocka_unit_test(test_wm_record_round_trip),
        cmocka_unit_test(test_wmmap),
        cmocka_unit_test(test_key_group_survives_the_trip),
        cmocka_unit_test(test_job_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
