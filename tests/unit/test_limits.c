/* test_limits.c — resource caps below the job level: the exchange
 * channel's byte cap (exchange.max.bytes) and the count_by operator's
 * bounded label set and checkpointed counts. */
#include "testutil.h"
#include "core/exchange.h"

static void channel_byte_cap_holds(void **st)
{
    (void)st;
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "x", SL_INT64);
    sl_schema_add(s, "name", SL_STRING);
    sl__chan *c = sl__chan_new(1000); /* the batch count is not what stops it */
    sl_batch *probe = sl__batch_new(s, 64);
    size_t one = sl__batch_mem(probe);
    sl__batch_free(probe);
    c->byte_cap = 5 * one + one / 2;
    sl__msg m = {.type = SL__MSG_BATCH};
    int pushed = 0;
    for (;;) {
        m.batch = sl__batch_new(s, 64);
        if (!sl__chan_try_push(c, &m)) break;
        pushed++;
        assert_true(pushed < 1000);
    }
    /* 6 batches: the sixth starts below the cap and ends past it */
    assert_int_equal(pushed, 6);
    assert_true(atomic_load(&c->bytes) <= c->byte_cap + one);
    assert_int_equal(atomic_load(&c->bytes_peak), 6 * one);
    /* string arenas count: a batch with a 100 KB string is one big batch */
    sl_batch *fat = m.batch;
    static char big[100000];
    memset(big, 'a', sizeof big);
    sl_batch_set_str(fat, 1, 0, big, sizeof big);
    sl_batch_set_len(fat, 1);
    assert_true(sl__batch_mem(fat) > sizeof big);
    sl__msg got;
    while (sl__chan_try_pop(c, &got)) sl__batch_free(got.batch);
    assert_int_equal(atomic_load(&c->bytes), 0);
    /* an empty channel always takes one batch, however big: no deadlock */
    m.batch = fat;
    assert_true(sl__chan_try_push(c, &m));
    m.batch = sl__batch_new(s, 64);
    assert_false(sl__chan_try_push(c, &m));
    sl__batch_free(m.batch);
    sl__chan_free(c);
    sl_schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(channel_byte_cap_holds)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
