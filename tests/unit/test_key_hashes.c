/* test_key_hashes.c — the batch key hash (sl__key_hashes, which routes rows
 * to key groups and memoises string hashes by address within a batch)
 * equals the row-at-a-time sl__key_hash for every row: strings repeated by
 * pointer (as domain values and interned table strings are), one pointer
 * with different lengths (prefixes of one buffer), equal strings at
 * different addresses, the empty string, NULLs, and an INT64 column beside
 * them; more distinct pointers than the memo has entries. Seed from the
 * commit (printed). */
#include "testutil.h"

static void test_equals_row_hash(void **state)
{
    (void)state;
    unsigned seed = tu_seed("test_key_hashes");
    uint64_t x = seed * 2654435761u + 3;
    static const char *labels[] = {"SMS_SENT", "SMS_RECEIVED", "CALL_PLACED",
                                   "CALL_RECEIVED", "DATA_SESSION"};
    static char buf[] = "area-000000000000000000000000000000";
    static char many[300][12];
    for (int i = 0; i < 300; i++) snprintf(many[i], sizeof many[i], "a%d", i % 150);
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "type", SL_STRING);
    sl_schema_add(s, "n", SL_INT64);
    sl_schema_add(s, "area", SL_STRING);
    enum { N = 2000 };
    sl_batch *b = sl__batch_new(s, N);
    sl_str *t = sl_batch_str(b, 0), *a = sl_batch_str(b, 2);
    for (uint32_t r = 0; r < N; r++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        t[r] = (sl_str){labels[(x >> 33) % 5], 0};
        t[r].len = (uint32_t)strlen(t[r].ptr);
        sl_batch_i64(b, 1)[r] = (int64_t)(x >> 40) % 7;
        switch ((x >> 50) % 5) {
        case 0: a[r] = (sl_str){buf, (uint32_t)(1 + (x >> 20) % 30)}; break; /* one pointer, many lengths */
        case 1: a[r] = (sl_str){many[(x >> 20) % 300], 0};
                a[r].len = (uint32_t)strlen(a[r].ptr); break; /* 300 pointers, 150 strings */
        case 2: a[r] = (sl_str){"", 0}; break;
        case 3: sl_batch_valid(b, 2)[r] = 0; break;
        default: {
            char tmp[16];
            int len = snprintf(tmp, sizeof tmp, "u%u", (unsigned)(x >> 44));
            sl_batch_set_str(b, 2, r, tmp, (size_t)len); /* in the arena */
        }
        }
        if ((x >> 30) % 17 == 0) sl_batch_valid(b, 0)[r] = 0;
    }
    sl_batch_set_len(b, N);
    const int cols[] = {0, 1, 2};
    static uint64_t h[N];
    sl__key_hashes(b, cols, 3, h);
    for (uint32_t r = 0; r < N; r++)
        assert_int_equal(h[r], sl__key_hash(b, cols, 3, r));
    /* equal strings at different addresses hash equally */
    const int one[] = {2};
    sl__key_hashes(b, one, 1, h);
    for (uint32_t r = 0; r < N; r++)
        for (uint32_t q = r + 1; q < N && q < r + 50; q++)
            if (sl_batch_valid(b, 2)[r] && sl_batch_valid(b, 2)[q] &&
                a[r].len == a[q].len && memcmp(a[r].ptr, a[q].ptr, a[r].len) == 0)
                assert_int_equal(h[r], h[q]);
    sl__batch_free(b);
    sl_schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equals_row_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
