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


/* ---- the window hot path's containers (bench/RESULTS.md 2026-11-24) ------- */
static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The set's keys, sorted (export, then sort): equal to the model's. */
static void set_equals_model(const sl__set64 *s, const uint64_t *model, size_t n)
{
    assert_int_equal(sl__set64_count(s), n);
    uint64_t *got = malloc(8 * n + 8), *want = malloc(8 * n + 8);
    assert_int_equal(sl__set64_export_le(s, (unsigned char *)got), n);
    memcpy(want, model, 8 * n);
    qsort(got, n, 8, u64_cmp);
    qsort(want, n, 8, u64_cmp);
    assert_memory_equal(got, want, 8 * n);
    free(got);
    free(want);
}

/* Slots a set of n keys (key 0 apart) holds: none while inline, else the
 * smallest power of two >= 8 that is at least 4/3 of n. */
static size_t set_slots_expected(uint64_t n)
{
    if (n <= SL__SET64_SMALL) return 0;
    size_t cap = 8;
    while (n * 4 > cap * 3) cap *= 2;
    return cap;
}

/* Random keys (seed from the commit), each inserted once new and once
 * again as a duplicate; at every size around each power of two up to 2^17
 * the set equals the model, holds the expected slots, and finds no key it
 * was not given. */
static void set64_every_power_of_two(void **state)
{
    (void)state;
    uint64_t x = tu_seed("set64_every_power_of_two");
    const size_t max = (size_t)1 << 17;
    uint64_t *model = malloc(8 * (max + 2));
    sl__set64 s;
    sl__set64_init(&s);
    size_t n = 0;
    while (n < max + 2) {
        uint64_t k = splitmix(&x) | 1; /* odd: never 0, never an even probe */
        int fresh = sl__set64_insert(&s, k);
        if (!fresh) continue; /* a 64-bit repeat: vanishingly rare */
        model[n++] = k;
        assert_int_equal(sl__set64_insert(&s, k), 0);
        assert_int_equal(sl__set64_insert(&s, model[n / 2]), 0);
        bool edge = false;
        for (size_t p = 1; p <= max; p *= 2) edge |= n + 1 >= p && n <= p + 1;
        if (!edge) continue;
        set_equals_model(&s, model, n);
        assert_int_equal(sl__set64_mem(&s), 8 * set_slots_expected(n));
        for (size_t i = 0; i < n; i++) assert_true(sl__set64_contains(&s, model[i]));
        for (int i = 0; i < 64; i++) assert_false(sl__set64_contains(&s, splitmix(&x) & ~1ULL));
    }
    sl__set64_close(&s);
    free(model);
}

/* Keys that all probe the same first slot in a table of 2^12 slots (found
 * by search: the set's hash is fixed), so every insert and lookup walks
 * one long run of collisions, across the growth from inline to 2^12. */
static void set64_forced_collisions(void **state)
{
    (void)state;
    enum { N = 200 };
    uint64_t keys[N];
    size_t n = 0;
    for (uint64_t k = 1; n < N; k++)
        if ((sl__mix64(k) & 4095) == 77) keys[n++] = k;
    sl__set64 s;
    sl__set64_init(&s);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(sl__set64_insert(&s, keys[i]), 1);
        assert_int_equal(sl__set64_insert(&s, keys[i / 2]), 0);
        for (size_t j = 0; j <= i; j++) assert_true(sl__set64_contains(&s, keys[j]));
    }
    set_equals_model(&s, keys, N);
    /* a key of the same first slot that was never inserted is not found */
    uint64_t k = keys[N - 1] + 1;
    while ((sl__mix64(k) & 4095) != 77) k++;
    assert_false(sl__set64_contains(&s, k));
    sl__set64_close(&s);
}

/* The same keys in another order (and with repeats) give the same set:
 * count, members, and a snapshot (export, then inserts into an empty set)
 * restores it; a copy exports the same bytes in the same order. */
static void set64_order_independent_round_trip(void **state)
{
    (void)state;
    uint64_t x = tu_seed("set64_order_independent_round_trip");
    for (size_t n = 0; n <= 5000; n = n < 12 ? n + 1 : n * 2) {
        uint64_t *keys = malloc(8 * n + 8);
        for (size_t i = 0; i < n; i++) keys[i] = i % 7 == 3 ? 0 : splitmix(&x);
        sl__set64 a, b;
        sl__set64_init(&a);
        sl__set64_init(&b);
        for (size_t i = 0; i < n; i++) sl__set64_insert(&a, keys[i]);
        for (size_t i = n; i-- > 0;) { /* reversed, every key twice */
            sl__set64_insert(&b, keys[i]);
            sl__set64_insert(&b, keys[(i * 31) % n]);
        }
        size_t cnt = (size_t)sl__set64_count(&a);
        assert_int_equal(sl__set64_count(&b), cnt);
        uint64_t *ea = malloc(8 * cnt + 8), *eb = malloc(8 * cnt + 8);
        sl__set64_export_le(&a, (unsigned char *)ea);
        sl__set64_export_le(&b, (unsigned char *)eb);
        qsort(ea, cnt, 8, u64_cmp);
        qsort(eb, cnt, 8, u64_cmp);
        assert_memory_equal(ea, eb, 8 * cnt);
        /* snapshot round trip */
        sl__set64 r;
        sl__set64_init(&r);
        sl__set64_export_le(&a, (unsigned char *)ea);
        for (size_t i = 0; i < cnt; i++) assert_int_equal(sl__set64_insert(&r, ea[i]), 1);
        set_equals_model(&r, ea, cnt);
        for (size_t i = 0; i < n; i++) assert_true(sl__set64_contains(&r, keys[i]));
        /* a copy keeps the export order */
        sl__set64 c;
        sl__set64_copy(&c, &a);
        sl__set64_export_le(&c, (unsigned char *)eb);
        assert_memory_equal(ea, eb, 8 * cnt);
        sl__set64_close(&a);
        sl__set64_close(&b);
        sl__set64_close(&r);
        sl__set64_close(&c);
        free(ea);
        free(eb);
        free(keys);
    }
}

/* A reserved map takes n inserts without a new slot table, then grows as
 * usual; reserving a map with entries changes nothing; lookups are exact. */
static void bmap_reserve(void **state)
{
    (void)state;
    for (uint32_t n = 0; n <= 5000; n = n < 20 ? n + 1 : n * 3) {
        sl__bmap m;
        sl__bmap_init(&m, 16);
        sl__bmap_reserve(&m, n);
        const sl__bmap_slot *slots = m.slots;
        uint32_t mask = m.mask;
        assert_non_null(slots);
        assert_true((uint64_t)n * 4 <= ((uint64_t)mask + 1) * 3);
        assert_true(mask + 1 == 16 || (uint64_t)n * 4 > ((uint64_t)mask + 1) / 2 * 3);
        char key[48];
        for (uint32_t i = 0; i < n; i++) {
            int len = snprintf(key, sizeof key, "key-%u", i);
            bool fresh;
            uint64_t *v = sl__bmap_upsert(&m, key, (size_t)len, h(key), &fresh);
            assert_true(fresh);
            *v = i;
        }
        assert_ptr_equal(m.slots, slots); /* no rehash */
        sl__bmap_reserve(&m, 10 * n + 100); /* has entries: ignored */
        assert_ptr_equal(m.slots, slots);
        for (uint32_t i = 0; i < n + 10; i++) {
            int len = snprintf(key, sizeof key, "key-%u", i);
            uint64_t *v = sl__bmap_find(&m, key, (size_t)len, h(key));
            if (i < n) {
                assert_non_null(v);
                assert_int_equal(*v, i);
            } else {
                assert_null(v);
            }
        }
        /* keys of every length compare exactly (the word-wise compare) */
        for (size_t len = 0; len <= 40; len++) {
            memset(key, 'a', len);
            bool fresh;
            sl__bmap_upsert(&m, key, len, 7, &fresh); /* one hash: all collide */
            assert_true(fresh);
        }
        for (size_t len = 0; len <= 40; len++) {
            memset(key, 'a', len);
            assert_non_null(sl__bmap_find(&m, key, len, 7));
            if (len) {
                key[len - 1] = 'b';
                assert_null(sl__bmap_find(&m, key, len, 7));
                key[len - 1] = 'a';
                key[0] = 'b';
                assert_null(sl__bmap_find(&m, key, len, 7));
            }
        }
        assert_int_equal(sl__bmap_count(&m), n + 41);
        sl__bmap_close(&m);
    }
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
        cmocka_unit_test(set64_every_power_of_two),
        cmocka_unit_test(set64_forced_collisions),
        cmocka_unit_test(set64_order_independent_round_trip),
        cmocka_unit_test(bmap_reserve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
