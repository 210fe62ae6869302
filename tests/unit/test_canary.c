/* test_canary.c — the canary registry's sweep: a canary is missing only once
 * it is older than the timeout and unseen, never when it was injected after
 * the sweeping thread read its clock (a race between source and sweep). */
#include "testutil.h"
#include "core/canary.h"

#define MS 1000000ULL

static void sweep_declares_only_late_unseen_canaries(void **st)
{
    (void)st;
    static sl__canaries c;
    sl__canary_init(&c, 50, 1000);
    const uint64_t t0 = 5000 * MS;
    int a = sl__canary_inject(&c, 0, t0);
    int b = sl__canary_inject(&c, 1, t0);
    assert_true(a > 0 && b > 0 && a != b);
    /* the sweep's clock was read 10 ms before the injections */
    assert_int_equal(sl__canary_sweep(&c, t0 - 10 * MS), 0);
    assert_int_equal(sl__canary_sweep(&c, t0 + 999 * MS), 0);
    assert_true(sl__canary_seen(&c, (unsigned)b, t0 + 5 * MS));
    assert_int_equal(sl__canary_sweep(&c, t0 + 1000 * MS), 1); /* a only */
    assert_int_equal(sl__canary_sweep(&c, t0 + 5000 * MS), 0); /* once */
    assert_int_equal((int)atomic_load(&c.missing), 1);
    /* the end of the job: every unseen canary is missing */
    int d = sl__canary_inject(&c, 0, t0 + 6000 * MS);
    assert_true(d > 0);
    assert_int_equal(sl__canary_sweep(&c, UINT64_MAX), 1);
    assert_int_equal((int)atomic_load(&c.missing), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(sweep_declares_only_late_unseen_canaries)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
