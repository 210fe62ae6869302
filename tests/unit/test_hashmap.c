/* test_hashmap.c — sl__set64 and sl__bmap against simple models. */
#include "testutil.h"

#include <stdio.h>

#include "core/hashmap.h"

static void set64_basic(void **state)
{
    (void)state;
    sl__set64 s;
    sl__set64_init(&s);
    assert_int_equal(sl__set64_count(&s), 0);
    assert_false(sl__set64_contains(&s, 0));
    assert_false(sl__set64_contains(&s, 7));
    assert_int_equal(sl__set64_mem(&s), 0);

    assert_int_equal(sl__set64_insert(&s, 0), 1);
    assert_int_equal(sl__set64_insert(&s, 0), 0);
    assert_int_equal(sl__set64_count(&s), 1);
    assert_int_equal(sl__set64_mem(&s), 0); /* key 0 needs no slots */
    assert_int_equal(sl__set64_insert(&s, UINT64_MAX), 1);
    assert_int_equal(sl__set64_insert(&s, 1), 1);
    assert_int_equal(sl__set64_insert(&s, UINT64_MAX), 0);
    assert_int_equal(sl__set64_count(&s), 3);
    assert_true(sl__set64_contains(&s, 0));
    assert_true(sl__set64_contains(&s, 1));
    assert_true(sl__set64_contains(&s, UINT64_MAX));
    assert_false(sl__set64_contains(&s, 2));

    sl__set64_clear(&s);
    assert_int_equal(sl__set64_count(&s), 0);
    assert_false(sl__set64_contains(&s, 0));
    assert_int_equal(sl__set64_insert(&s, 5), 1);
    sl__set64_close(&s);
    assert_int_equal(sl__set64_count(&s), 0);
}

/* Inserts 200k keys (half of them twice, including 0) and checks count,
 * membership, iteration and memory per key. */
static void set64_many(void **state)
{
    (void)state;
    sl__set64 s;
    sl__set64_init(&s);
    const uint64_t n = 200000;
    for (uint64_t i = 0; i < n; i++)
        assert_int_equal(sl__set64_insert(&s, i * 0x10000001ULL), 1);
    for (uint64_t i = 0; i < n; i += 2)
        assert_int_equal(sl__set64_insert(&s, i * 0x10000001ULL), 0);
    assert_int_equal(sl__set64_count(&s), n);
    for (uint64_t i = 0; i < n; i++) {
        assert_true(sl__set64_contains(&s, i * 0x10000001ULL));
        assert_false(sl__set64_contains(&s, i * 0x10000001ULL + 1));
    }
    /* Iteration visits each key once. */
    uint8_t *seen = calloc(n, 1);
    size_t it = 0, visited = 0;
    uint64_t k;
    while (sl__set64_next(&s, &it, &k)) {
        assert_int_equal(k % 0x10000001ULL, 0);
        uint64_t i = k / 0x10000001ULL;
        assert_true(i < n);
        assert_int_equal(seen[i], 0);
        seen[i] = 1;
        visited++;
    }
    assert_int_equal(visited, n);
    free(seen);
    /* At most 3/4 full after doubling: <= 8 / (3/8) bytes a key. */
    assert_true(sl__set64_mem(&s) <= n * 8 * 8 / 3 + 64);
    assert_true(sl__set64_mem(&s) >= n * 8 * 4 / 3);
    sl__set64_close(&s);
}

/* The bulk export writes exactly what the iterator yields, in its order,
 * as little-endian bytes: empty, inline (small) and slotted sets, with and
 * without key 0. */
static void set64_export(void **state)
{
    (void)state;
    for (int zero = 0; zero < 2; zero++)
        for (uint64_t n = 0; n <= 3000; n = n < 10 ? n + 1 : n * 3) {
            sl__set64 s;
            sl__set64_init(&s);
            if (zero) sl__set64_insert(&s, 0);
            for (uint64_t i = 1; i <= n; i++) sl__set64_insert(&s, i * 0x9e3779b97f4a7c15ULL);
            size_t cnt = (size_t)sl__set64_count(&s);
            unsigned char *out = malloc(8 * cnt + 8);
            assert_int_equal(sl__set64_export_le(&s, out), cnt);
            size_t it = 0, j = 0;
            uint64_t k;
            while (sl__set64_next(&s, &it, &k)) {
                uint64_t got = 0;
                for (int b = 0; b < 8; b++) got |= (uint64_t)out[8 * j + b] << (8 * b);
                assert_true(got == k);
                j++;
            }
            assert_int_equal(j, cnt);
            free(out);
            sl__set64_close(&s);
        }
}

static void set64_iter_empty(void **state)
{
    (void)state;
    sl__set64 s;
    sl__set64_init(&s);
    size_t it = 0;
    uint64_t k;
    assert_false(sl__set64_next(&s, &it, &k));
    sl__set64_insert(&s, 0);
    it = 0;
    assert_true(sl__set64_next(&s, &it, &k));
    assert_int_equal(k, 0);
    assert_false(sl__set64_next(&s, &it, &k));
    sl__set64_close(&s);
}

static uint64_t h(const char *s) { return sl__hash_bytes(s, strlen(s), 1); }

static void bmap_basic(void **state)
{
    (void)state;
    sl__bmap m;
    sl__bmap_init(&m, sizeof(int64_t));
    assert_int_equal(sl__bmap_count(&m), 0);
    assert_null(sl__bmap_find(&m, "a", 1, h("a")));

    bool fresh = false;
    int64_t *a = sl__bmap_upsert(&m, "a", 1, h("a"), &fresh);
    assert_true(fresh);
    assert_int_equal(*a, 0); /* new values are zero-filled */
    *a = 42;
    int64_t *a2 = sl__bmap_upsert(&m, "a", 1, h("a"), &fresh);
    assert_false(fresh);
    assert_ptr_equal(a, a2);
    assert_int_equal(*(int64_t *)sl__bmap_find(&m, "a", 1, h("a")), 42);

    /* The empty key is a key like any other. */
    int64_t *e = sl__bmap_upsert(&m, "", 0, h(""), &fresh);
    assert_true(fresh);
    *e = 7;
    assert_int_equal(*(int64_t *)sl__bmap_find(&m, "", 0, h("")), 7);
    /* Keys with NUL bytes, and keys that are prefixes of each other. */
    uint64_t hab = sl__hash_bytes("a\0b", 3, 1);
    int64_t *nb = sl__bmap_upsert(&m, "a\0b", 3, hab, &fresh);
    assert_true(fresh);
    *nb = 9;
    assert_int_equal(sl__bmap_count(&m), 3);

    /* Insertion order, and the map keeps its own copy of the key. */
    const uint8_t *k;
    uint32_t len;
    assert_int_equal(*(int64_t *)sl__bmap_at(&m, 0, &k, &len), 42);
    assert_int_equal(len, 1);
    assert_memory_equal(k, "a", 1);
    sl__bmap_at(&m, 1, &k, &len);
    assert_int_equal(len, 0);
    sl__bmap_at(&m, 2, &k, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(k, "a\0b", 3);
    assert_int_equal(sl__bmap_hash_at(&m, 2), hab);

    sl__bmap_clear(&m);
    assert_int_equal(sl__bmap_count(&m), 0);
    assert_null(sl__bmap_find(&m, "a", 1, h("a")));
    a = sl__bmap_upsert(&m, "a", 1, h("a"), &fresh);
    assert_true(fresh);
    assert_int_equal(*a, 0);
    sl__bmap_close(&m);
}

/* Many keys, forced hash collisions, stable pointers across growth. */
static void bmap_many(void **state)
{
    (void)state;
    sl__bmap m;
    sl__bmap_init(&m, 24); /* odd-ish value size: rounded to 8 */
    enum { N = 100000 };
    void **ptrs = calloc(N, sizeof *ptrs);
    char key[32];
    for (int i = 0; i < N; i++) {
        int len = snprintf(key, sizeof key, "key-%d", i);
        /* Every 1000th key shares one hash: probing must compare keys. */
        uint64_t hh = i % 1000 == 0 ? 12345 : sl__hash_bytes(key, len, 3);
        bool fresh;
        uint8_t *v = sl__bmap_upsert(&m, key, len, hh, &fresh);
        assert_true(fresh);
        memcpy(v, &i, sizeof i);
        memset(v + 8, 0xab, 16);
        ptrs[i] = v;
    }
    assert_int_equal(sl__bmap_count(&m), N);
    for (int i = 0; i < N; i++) {
        int len = snprintf(key, sizeof key, "key-%d", i);
        uint64_t hh = i % 1000 == 0 ? 12345 : sl__hash_bytes(key, len, 3);
        uint8_t *v = sl__bmap_find(&m, key, len, hh);
        assert_ptr_equal(v, ptrs[i]); /* never moved */
        int got;
        memcpy(&got, v, sizeof got);
        assert_int_equal(got, i);
        assert_int_equal(v[23], 0xab);
        bool fresh;
        assert_ptr_equal(sl__bmap_upsert(&m, key, len, hh, &fresh), v);
        assert_false(fresh);
        assert_ptr_equal(sl__bmap_at(&m, (uint32_t)i, NULL, NULL), v);
        assert_null(sl__bmap_find(&m, key, len, hh + 1));
    }
    assert_null(sl__bmap_find(&m, "key-x", 5, 12345));
    assert_true(sl__bmap_mem(&m) > (size_t)N * 32);
    free(ptrs);
    sl__bmap_close(&m);
}

/* A key larger than a key chunk, and a zero-size value (a set of strings). */
static void bmap_big_key(void **state)
{
    (void)state;
    sl__bmap m;
    sl__bmap_init(&m, 0);
    size_t big = 200000;
    char *k = malloc(big);
    memset(k, 'x', big);
    uint64_t hb = sl__hash_bytes(k, big, 0);
    bool fresh;
    sl__bmap_upsert(&m, "small", 5, h("small"), &fresh);
    assert_true(fresh);
    sl__bmap_upsert(&m, k, big, hb, &fresh);
    assert_true(fresh);
    sl__bmap_upsert(&m, "small2", 6, h("small2"), &fresh);
    assert_true(fresh);
    assert_non_null(sl__bmap_find(&m, k, big, hb));
    assert_non_null(sl__bmap_find(&m, "small", 5, h("small")));
    const uint8_t *kk;
    uint32_t len;
    sl__bmap_at(&m, 2, &kk, &len);
    assert_int_equal(len, 6);
    assert_memory_equal(kk, "small2", 6);
    free(k);
    sl__bmap_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(set64_basic),
        cmocka_unit_test(set64_many),
        cmocka_unit_test(set64_iter_empty),
        cmocka_unit_test(set64_export),
        cmocka_unit_test(bmap_basic),
        cmocka_unit_test(bmap_many),
        cmocka_unit_test(bmap_big_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
