/* test_rowcache.c — the row cache in front of RocksDB lookup tables
 * (state/rowcache.c) on its own: a hit after an insert gives the bytes put,
 * not-recently-used eviction within a 4-way set, the memory it takes never exceeds the
 * bytes it was given, rows larger than a slot are refused, a generation
 * change clears it, a random sequence of puts and gets against a model
 * (the last value put for each key): a hit must return exactly that value,
 * and four threads probing and filling one cache at once (as the tasks of
 * a job do; run under TSan by `make tsan`): every hit is the key's value.
 * The seed comes from the commit (tu_seed; SLUICE_SEED reruns), printed. */
#include "testutil.h"

#include <pthread.h>

#include "state/state.h"

static uint64_t g_seed;

static uint64_t rnd(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ULL;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* An 8-byte key as tabledisk.c encodes an INT64 (the bytes only matter
 * here as bytes). */
static void key8(int64_t k, char out[8]) { memcpy(out, &k, 8); }

static char g_val[SL__ROWCACHE_MAX_ROW]; /* the last value get found */

/* 1 and *v (g_val), *vl when k is cached. */
static int get(sl__rowcache *c, int64_t k, const char **v, size_t *vl)
{
    char kb[8];
    key8(k, kb);
    size_t n = sl__rowcache_get(c, sl__rowcache_hash(kb, 8), kb, 8, g_val);
    if (n == SIZE_MAX || n == SL__ROWCACHE_ABSENT) return 0;
    *v = g_val;
    *vl = n;
    return 1;
}

static int get_str(sl__rowcache *c, const char *k, const char **v, size_t *vl)
{
    size_t n = sl__rowcache_get(c, sl__rowcache_hash(k, strlen(k)), k, strlen(k),
                                g_val);
    if (n == SIZE_MAX) return 0;
    *v = g_val;
    *vl = n;
    return 1;
}

static void put(sl__rowcache *c, int64_t k, const char *v, size_t vl)
{
    char kb[8];
    key8(k, kb);
    sl__rowcache_put(c, sl__rowcache_hash(kb, 8), kb, 8, v, vl);
}

static void test_hit_after_insert(void **state)
{
    (void)state;
    sl__rowcache *c = sl__rowcache_new(1 << 16, 40);
    assert_non_null(c);
    const char *v = NULL;
    size_t vl = 0;
    assert_int_equal(get(c, 42, &v, &vl), 0);
    put(c, 42, "hello, row", 10);
    assert_int_equal(get(c, 42, &v, &vl), 1);
    assert_int_equal(vl, 10);
    assert_memory_equal(v, "hello, row", 10);
    put(c, 42, "", 0); /* the same key again: replaced, not duplicated */
    assert_int_equal(get(c, 42, &v, &vl), 1);
    assert_int_equal(vl, 0);
    assert_int_equal(get(c, 43, &v, &vl), 0);
    /* string keys of other lengths, and a key that is a prefix of another */
    uint64_t h1 = sl__rowcache_hash("abc", 3), h2 = sl__rowcache_hash("abcd", 4);
    sl__rowcache_put(c, h1, "abc", 3, "1", 1);
    sl__rowcache_put(c, h2, "abcd", 4, "2", 1);
    assert_int_equal(get_str(c, "abc", &v, &vl), 1);
    assert_int_equal(v[0], '1');
    assert_int_equal(get_str(c, "abcd", &v, &vl), 1);
    assert_int_equal(v[0], '2');
    sl__rowcache_counts k;
    sl__rowcache_stats(c, &k);
    assert_int_equal(k.hits, 4);
    assert_int_equal(k.misses, 2);
    assert_int_equal(k.inserts, 4);
    assert_int_equal(k.evictions, 0);
    sl__rowcache_free(c);
    sl__rowcache_free(NULL);
}

static int present(sl__rowcache *c, const int64_t *keys, int n)
{
    const char *v;
    size_t vl;
    int k = 0;
    for (int i = 0; i < n; i++) k += get(c, keys[i], &v, &vl);
    return k;
}

/* Not recently used within a 4-way set: a row that was hit survives an
 * insertion while an unreferenced one is there; when every row was hit,
 * the set starts a new sweep and one of them goes. Which unreferenced way
 * goes first depends on the key's hash, so the test counts survivors. */
static void test_nru_eviction(void **state)
{
    (void)state;
    /* room for exactly one set (4 slots of 8 + 16 bytes): every key
     * lands in it */
    sl__rowcache *c = sl__rowcache_new(96, 16);
    assert_non_null(c);
    assert_int_equal(sl__rowcache_slots(c), 4);
    const char *v;
    size_t vl;
    put(c, 1, "a", 1);
    put(c, 2, "b", 1);
    put(c, 3, "c", 1);
    put(c, 4, "d", 1);
    assert_int_equal(get(c, 1, &v, &vl), 1); /* 1 and 3 referenced */
    assert_int_equal(get(c, 3, &v, &vl), 1);
    put(c, 5, "e", 1);                       /* evicts 2 or 4 */
    assert_int_equal(present(c, (const int64_t[]){1, 3, 5}, 3), 3);
    assert_int_equal(present(c, (const int64_t[]){2, 4}, 2), 1);
    assert_int_equal(get(c, 5, &v, &vl), 1);
    assert_int_equal(v[0], 'e');
    /* now all four were hit: a new sweep evicts exactly one */
    put(c, 6, "f", 1);
    assert_int_equal(get(c, 6, &v, &vl), 1);
    assert_int_equal(present(c, (const int64_t[]){1, 2, 3, 4, 5}, 5), 3);
    /* a row never hit goes before the hit ones: 7 replaces 6 */
    sl__rowcache *d = sl__rowcache_new(96, 16);
    for (int64_t k = 1; k <= 4; k++) put(d, k, "x", 1);
    for (int64_t k = 1; k <= 3; k++) assert_int_equal(get(d, k, &v, &vl), 1);
    put(d, 6, "y", 1); /* replaces 4, the one unreferenced */
    put(d, 7, "z", 1); /* replaces 6, never hit */
    assert_int_equal(present(d, (const int64_t[]){1, 2, 3, 7}, 4), 4);
    assert_int_equal(present(d, (const int64_t[]){4, 6}, 2), 0);
    sl__rowcache_counts k;
    sl__rowcache_stats(c, &k);
    assert_int_equal(k.evictions, 2);
    sl__rowcache_free(c);
    sl__rowcache_free(d);
}

static void test_bound_respected(void **state)
{
    (void)state;
    assert_null(sl__rowcache_new(95, 16));  /* not one set */
    assert_null(sl__rowcache_new(1 << 20, 0));
    uint64_t rs = g_seed;
    for (int i = 0; i < 200; i++) {
        size_t bytes = 64 + rnd(&rs) % (1 << 22), row = 1 + rnd(&rs) % 300;
        sl__rowcache *c = sl__rowcache_new(bytes, row);
        if (!c) {
            assert_true(bytes < 4 * (8 + ((row + 7) & ~(size_t)7)));
            continue;
        }
        size_t slot = 8 + ((row + 7) & ~(size_t)7);
        assert_true(sl__rowcache_bytes(c) <= bytes);
        assert_int_equal(sl__rowcache_bytes(c), sl__rowcache_slots(c) * slot);
        /* less than one set of the budget is left unused */
        assert_true(bytes - sl__rowcache_bytes(c) < 4 * slot);
        sl__rowcache_free(c);
    }
    /* a row larger than a slot is not cached */
    sl__rowcache *c = sl__rowcache_new(4096, 24);
    char big[64] = {0};
    put(c, 7, big, 17); /* 8 + 17 > 24 */
    put(c, 8, big, 16); /* 8 + 16 fits */
    const char *v;
    size_t vl;
    assert_int_equal(get(c, 7, &v, &vl), 0);
    assert_int_equal(get(c, 8, &v, &vl), 1);
    sl__rowcache_counts k;
    sl__rowcache_stats(c, &k);
    assert_int_equal(k.too_large, 1);
    sl__rowcache_free(c);
    /* the largest slot: SL__ROWCACHE_MAX_ROW */
    c = sl__rowcache_new(1 << 20, 100000);
    assert_int_equal(sl__rowcache_bytes(c) % (8 + SL__ROWCACHE_MAX_ROW), 0);
    sl__rowcache_free(c);
}

/* A key the table does not have is remembered as absent, not as an empty
 * row, and a put of its row replaces the absence. */
static void test_absent_keys(void **state)
{
    (void)state;
    sl__rowcache *c = sl__rowcache_new(1 << 16, 24);
    char kb[8], out[SL__ROWCACHE_MAX_ROW];
    key8(9, kb);
    uint64_t h = sl__rowcache_hash(kb, 8);
    assert_true(sl__rowcache_get(c, h, kb, 8, out) == SIZE_MAX);
    sl__rowcache_put(c, h, kb, 8, NULL, SL__ROWCACHE_ABSENT);
    assert_true(sl__rowcache_get(c, h, kb, 8, out) == SL__ROWCACHE_ABSENT);
    put(c, 10, "", 0); /* an empty row is a row */
    const char *v;
    size_t vl;
    assert_int_equal(get(c, 10, &v, &vl), 1);
    assert_int_equal(vl, 0);
    sl__rowcache_put(c, h, kb, 8, "row", 3);
    assert_int_equal(get(c, 9, &v, &vl), 1);
    assert_int_equal(vl, 3);
    assert_memory_equal(v, "row", 3);
    sl__rowcache_counts k;
    sl__rowcache_stats(c, &k);
    assert_int_equal(k.hits, 3); /* a known absence is a hit */
    assert_int_equal(k.misses, 1);
    sl__rowcache_free(c);
}

static void test_generation_clears(void **state)
{
    (void)state;
    sl__rowcache *c = sl__rowcache_new(1 << 16, 32);
    const char *v;
    size_t vl;
    sl__rowcache_sync(c, 5);
    put(c, 1, "old", 3);
    sl__rowcache_sync(c, 5); /* the same generation: kept */
    assert_int_equal(get(c, 1, &v, &vl), 1);
    sl__rowcache_sync(c, 6); /* the table was written: cleared */
    assert_int_equal(get(c, 1, &v, &vl), 0);
    sl__rowcache_free(c);
}

/* Random puts and gets on a small cache (evictions all the time): a hit
 * returns the last value put for the key, and a key just put is a hit. */
static void test_model(void **state)
{
    (void)state;
    uint64_t rs = g_seed;
    enum { KEYS = 500, OPS = 200000 };
    static char model[KEYS][40];
    static size_t mlen[KEYS];
    static bool present[KEYS];
    sl__rowcache *c = sl__rowcache_new(64 * 48, 40); /* 16 sets: 64 slots */
    uint64_t hits = 0;
    for (int i = 0; i < OPS; i++) {
        int64_t k = (int64_t)(rnd(&rs) % KEYS);
        const char *v;
        size_t vl;
        if (rnd(&rs) % 3 == 0) {
            mlen[k] = rnd(&rs) % 33;
            for (size_t j = 0; j < mlen[k]; j++) model[k][j] = (char)rnd(&rs);
            present[k] = true;
            put(c, k, model[k], mlen[k]);
            assert_int_equal(get(c, k, &v, &vl), 1);
        }
        if (get(c, k, &v, &vl)) {
            hits++;
            assert_true(present[k]);
            assert_int_equal(vl, mlen[k]);
            if (vl) assert_memory_equal(v, model[k], vl);
        }
    }
    assert_true(hits > 0);
    sl__rowcache_free(c);
}

/* ---- threads ------------------------------------------------------------ */
enum { TKEYS = 3000, TOPS = 100000, TTHREADS = 4 };

/* Key k's value: its length and bytes follow from k alone, so any thread
 * can check any hit. */
static size_t tval(int64_t k, char *out)
{
    size_t n = (size_t)(k % 29);
    for (size_t j = 0; j < n; j++) out[j] = (char)(k * 31 + (int64_t)j);
    return n;
}

typedef struct {
    sl__rowcache *c;
    uint64_t seed, hits, bad;
} tstate;

static void *hammer(void *arg)
{
    tstate *t = arg;
    char want[64], got[SL__ROWCACHE_MAX_ROW], kb[8];
    for (int i = 0; i < TOPS; i++) {
        int64_t k = (int64_t)(rnd(&t->seed) % TKEYS);
        key8(k, kb);
        uint64_t h = sl__rowcache_hash(kb, 8);
        sl__rowcache_prefetch(t->c, h);
        size_t wl = tval(k, want);
        size_t n = sl__rowcache_get(t->c, h, kb, 8, got);
        if (n == SIZE_MAX) {
            sl__rowcache_put(t->c, h, kb, 8, want, wl);
        } else {
            t->hits++;
            if (n != wl || memcmp(got, want, wl) != 0) t->bad++;
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    sl__rowcache *c = sl__rowcache_new(1000 * 56, 40); /* fewer slots than keys */
    pthread_t th[TTHREADS];
    tstate ts[TTHREADS];
    for (int i = 0; i < TTHREADS; i++) {
        ts[i] = (tstate){.c = c, .seed = g_seed + (uint64_t)i};
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &ts[i]), 0);
    }
    uint64_t hits = 0;
    for (int i = 0; i < TTHREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(ts[i].bad, 0);
        hits += ts[i].hits;
    }
    sl__rowcache_counts k;
    sl__rowcache_stats(c, &k);
    assert_int_equal(k.hits, hits);
    assert_int_equal(k.hits + k.misses, (uint64_t)TTHREADS * TOPS);
    assert_int_equal(k.inserts, k.misses); /* every miss was put back */
    assert_true(hits > 0);
    sl__rowcache_free(c);
}

int main(void)
{
    g_seed = tu_seed("test_rowcache");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_after_insert),
        cmocka_unit_test(test_nru_eviction),
        cmocka_unit_test(test_bound_respected),
        cmocka_unit_test(test_absent_keys),
        cmocka_unit_test(test_generation_clears),
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
