/* test_batch_recycle.c — the per-thread free lists of batches (batch.c):
 * a freed batch comes back for the next batch of the same byte size,
 * cleared (no rows, every value valid, data kind, empty arena) and laid
 * out for its new schema; other sizes are not served from it; a list
 * keeps at most sl__batch_recycle_max() batches; the live-batch counters
 * treat a kept batch as freed; and batches made on one thread and freed
 * on another (as exchanges pass them) stay correct under TSan. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>

static sl_schema *schema3(void)
{
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "ts", SL_TIMESTAMP);
    sl_schema_add(s, "name", SL_STRING);
    sl_schema_add(s, "ok", SL_BOOL);
    return s;
}

static void test_reuse_and_clear(void **state)
{
    (void)state;
    int max = sl__batch_recycle_max();
    sl_schema *s = schema3();
    uint64_t live0;
    sl__batch_stats(&live0, NULL, NULL);
    sl_batch *a = sl__batch_new(s, 100);
    for (uint32_t i = 0; i < 100; i++) {
        sl_batch_i64(a, 0)[i] = i;
        assert_int_equal(sl_batch_set_str(a, 1, i, "some text of a row", 18), 0);
        sl_batch_valid(a, 2)[i] = 0;
        sl_batch_kind(a)[i] = SL_KIND_CANARY;
    }
    sl_batch_set_len(a, 100);
    sl__batch_free(a);
    uint64_t live;
    sl__batch_stats(&live, NULL, NULL);
    assert_int_equal(live, live0); /* a kept batch counts as freed */
    uint64_t r0 = sl__batch_recycled();
    sl_batch *b = sl__batch_new(s, 100);
    assert_int_equal(sl__batch_recycled() - r0, max > 0);
    if (max > 0) assert_ptr_equal(a, b);
    assert_int_equal(sl_batch_len(b), 0);
    assert_ptr_equal(sl_batch_schema(b), s);
    for (uint32_t i = 0; i < 100; i++) {
        assert_int_equal(sl_batch_kind(b)[i], SL_KIND_DATA);
        for (int c = 0; c < 3; c++) assert_int_equal(sl_batch_valid(b, c)[i], 1);
    }
    assert_int_equal(sl__batch_data_bytes(b) - 0, 0); /* no rows, arena empty */
    assert_int_equal(sl_batch_set_str(b, 1, 0, "x", 1), 0);
    assert_memory_equal(sl_batch_str(b, 1)[0].ptr, "x", 1);
    sl__batch_stats(&live, NULL, NULL);
    assert_int_equal(live, live0 + 1);
    /* another size is not served from the list */
    sl__batch_free(b);
    r0 = sl__batch_recycled();
    sl_batch *c = sl__batch_new(s, 101);
    assert_int_equal(sl__batch_recycled(), r0);
    /* same bytes, another schema: laid out for the new one */
    sl_schema *one = sl_schema_new();
    sl_schema_add(one, "v", SL_INT64);
    sl__batch_free(c);
    sl__batch_free(sl__batch_new(s, 100)); /* keep a 100-row s batch */
    sl__batch_free(sl__batch_new(one, 7));
    sl__batch_free(sl__batch_new(s, 100));
    sl_schema_free(one);
    sl_schema_free(s);
}

static void test_bounded(void **state)
{
    (void)state;
    int max = sl__batch_recycle_max();
    sl_schema *s = schema3();
    enum { N = 40 };
    sl_batch *b[N];
    for (int i = 0; i < N; i++) b[i] = sl__batch_new(s, 333);
    for (int i = 0; i < N; i++) sl__batch_free(b[i]);
    uint64_t r0 = sl__batch_recycled();
    for (int i = 0; i < N; i++) b[i] = sl__batch_new(s, 333);
    assert_int_equal(sl__batch_recycled() - r0, (uint64_t)max); /* no more kept */
    for (int i = 0; i < N; i++) sl__batch_free(b[i]);
    sl_schema_free(s);
}

/* ---- made on one thread, freed on another ------------------------------ */
typedef struct {
    const sl_schema *s;
    sl_batch *slot[64];
    _Atomic int ready[64];
    int bad;
} xfer;

static void *producer(void *arg)
{
    xfer *x = arg;
    for (int round = 0; round < 200; round++)
        for (int i = 0; i < 64; i++) {
            while (atomic_load_explicit(&x->ready[i], memory_order_acquire)) {
            }
            sl_batch *b = sl__batch_new(x->s, 64);
            for (uint32_t r = 0; r < 64; r++) {
                x->bad += sl_batch_valid(b, 0)[r] != 1;
                sl_batch_i64(b, 0)[r] = round * 1000 + i;
                char t[16];
                snprintf(t, sizeof t, "r%d", round);
                sl_batch_set_str(b, 1, r, t, strlen(t));
            }
            sl_batch_set_len(b, 64);
            x->slot[i] = b;
            atomic_store_explicit(&x->ready[i], 1, memory_order_release);
        }
    return NULL;
}

static void test_cross_thread(void **state)
{
    (void)state;
    sl_schema *s = schema3();
    static xfer x;
    memset(&x, 0, sizeof x);
    x.s = s;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, producer, &x), 0);
    int bad = 0;
    for (int round = 0; round < 200; round++)
        for (int i = 0; i < 64; i++) {
            while (!atomic_load_explicit(&x.ready[i], memory_order_acquire)) {
            }
            sl_batch *b = x.slot[i];
            char t[16];
            snprintf(t, sizeof t, "r%d", round);
            for (uint32_t r = 0; r < 64; r++) {
                bad += sl_batch_i64(b, 0)[r] != round * 1000 + i;
                bad += sl_batch_str(b, 1)[r].len != strlen(t) ||
                       memcmp(sl_batch_str(b, 1)[r].ptr, t, strlen(t)) != 0;
            }
            sl__batch_free(b); /* onto this thread's list */
            /* and this thread reuses it for something of its own */
            sl_batch *own = sl__batch_new(s, 64);
            sl_batch_i64(own, 0)[0] = -1;
            sl__batch_free(own);
            atomic_store_explicit(&x.ready[i], 0, memory_order_release);
        }
    pthread_join(th, NULL); /* its list is freed with the thread */
    assert_int_equal(bad, 0);
    assert_int_equal(x.bad, 0);
    sl_schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_and_clear),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_cross_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
