/* test_pcache.c — the shared pseudonym cache (src/ops/pcache.c): every
 * pseudonym through it equals the one-shot HMAC (sl_keyring_pseudonym),
 * for ids it keeps (1..18 digits, leading zeros) and ids it does not; it
 * grows to its bound and no further; the keyring hands every MAC context
 * of a key the same cache; a table load under the keyring fills it (when
 * its join runs unfused, sl__pjoin_warm), so the
 * events' pseudonyms are then all hits; and four threads pseudonymising
 * overlapping ids at once while the table grows under them (the TSan
 * build runs this) get exactly the reference pseudonyms. The seed comes
 * from the commit (tu_seed; SLUICE_SEED reruns), printed. */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "ops/privacy.h"
#include "state/state.h"

#define SECRET "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define SECRET2 "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define NIDS 20000

static sl_keyring *g_keys;
static unsigned g_seed;
static char g_id[NIDS][32];
static sl_str g_ids[NIDS];
static int64_t g_want[NIDS];

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int setup(void **state)
{
    (void)state;
    g_seed = tu_seed("test_pcache");
    setenv("SL_TEST_PCACHE_KEYS", "old " SECRET2 "\nt1 " SECRET "\n", 1);
    char err[256];
    g_keys = sl_keyring_load("env:SL_TEST_PCACHE_KEYS", err, sizeof err);
    if (!g_keys) return -1;
    uint64_t s = g_seed * 2654435761u + 1;
    for (int i = 0; i < NIDS; i++) {
        int kind = (int)(rnd(&s) % 10);
        if (kind == 0) /* not cacheable: letters, or too long */
            snprintf(g_id[i], sizeof g_id[i], "%s%d",
                     rnd(&s) & 1 ? "imsi-" : "4917000000000000000", i);
        else if (kind == 1) /* leading zeros, short */
            snprintf(g_id[i], sizeof g_id[i], "%0*d", 1 + (int)(rnd(&s) % 8), i % 1000);
        else /* digits, 1..18 */
            snprintf(g_id[i], sizeof g_id[i], "%llu%05d",
                     (unsigned long long)(rnd(&s) % 1000000000000ULL), i);
        g_ids[i] = (sl_str){g_id[i], (uint32_t)strlen(g_id[i])};
    }
    /* ids may repeat (short ones): the reference is per position */
    for (int i = 0; i < NIDS; i++)
        g_want[i] = sl_keyring_pseudonym(g_keys, g_ids[i].ptr, g_ids[i].len);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sl_keyring_free(g_keys);
    return 0;
}

/* Pseudonymises rows idx[0..n) of the id pool through c, checks each. */
static void check_rows(sl__pcache *c, sl__hmac *h, const uint32_t *idx, uint32_t n)
{
    sl_str in[1000];
    uint8_t valid[1000];
    int64_t out[1000];
    assert_true(n <= 1000);
    for (uint32_t i = 0; i < n; i++) {
        in[i] = g_ids[idx[i]];
        valid[i] = (uint8_t)(idx[i] % 97 != 0); /* some NULLs */
    }
    sl__pcache_pseudo(c, h, in, valid, out, n);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(out[i], valid[i] ? g_want[idx[i]] : 0);
}

static void test_equals_hmac_and_bounded(void **state)
{
    (void)state;
    print_message("seed %u\n", g_seed);
    sl__hmac *h = sl__hmac_new(g_keys, NULL, 0);
    sl__pcache *c = sl__pcache_new(14); /* at most 4096 sets */
    assert_int_equal(sl__pcache_bytes(c), 1024 * 64);
    uint32_t idx[1000];
    for (int round = 0; round < 2; round++)
        for (uint32_t b = 0; b < NIDS; b += 1000) {
            for (uint32_t i = 0; i < 1000; i++) idx[i] = b + i;
            check_rows(c, h, idx, 1000);
        }
    /* 20 k ids: grown to the bound, not beyond */
    assert_int_equal(sl__pcache_bytes(c), 4096 * 64);
    uint64_t hits, misses;
    sl__pcache_stats(c, &hits, &misses);
    assert_true(misses >= 14000); /* ~18 k cacheable distinct ids, first round */
    /* the most recent ids are still there: a third pass over the last
     * 1000 is nearly all hits */
    uint64_t h0 = hits;
    for (uint32_t i = 0; i < 1000; i++) idx[i] = NIDS - 1000 + i;
    check_rows(c, h, idx, 1000);
    sl__pcache_stats(c, &hits, &misses);
    assert_true(hits - h0 >= 800);
    /* reserve: at once to one id a set, within the bound, never smaller */
    sl__pcache *r = sl__pcache_new(24);
    sl__pcache_reserve(r, 5000);
    assert_int_equal(sl__pcache_bytes(r), 8192 * 64);
    sl__pcache_reserve(r, 10);
    assert_int_equal(sl__pcache_bytes(r), 8192 * 64);
    sl__pcache_free(r);
    r = sl__pcache_new(14);
    sl__pcache_reserve(r, 1u << 30);
    assert_int_equal(sl__pcache_bytes(r), 4096 * 64);
    check_rows(r, h, idx, 1000);
    sl__pcache_free(r);
    sl__pcache_reserve(NULL, 5);
    /* the same through the uncached path */
    check_rows(NULL, h, idx, 1000);
    sl__pcache_free(c);
    sl__pcache_free(NULL);
    sl__hmac_free(h);
}

static void test_keyring_shares(void **state)
{
    (void)state;
    sl__hmac *a = sl__hmac_new(g_keys, NULL, 0), *b = sl__hmac_new(g_keys, NULL, 0);
    sl__hmac *cur = sl__hmac_new_key(g_keys, 1, NULL, 0);
    sl__hmac *old = sl__hmac_new_key(g_keys, 0, NULL, 0);
    sl__pcache *c = sl__keyring_pcache(g_keys, -1);
    assert_non_null(c);
    assert_ptr_equal(sl__hmac_cache(a), c);
    assert_ptr_equal(sl__hmac_cache(b), c);
    assert_ptr_equal(sl__hmac_cache(cur), c);
    assert_ptr_equal(sl__keyring_pcache(g_keys, 1), c);
    assert_non_null(sl__hmac_cache(old));
    assert_ptr_not_equal(sl__hmac_cache(old), c); /* one cache per key */
    assert_null(sl__keyring_pcache(g_keys, 2));
    assert_null(sl__keyring_pcache(NULL, 0));
    uint8_t raw[32] = {1};
    sl__hmac *r = sl__hmac_new_raw(raw, sizeof raw, NULL, 0);
    assert_null(sl__hmac_cache(r));
    sl__hmac_free(r);
    sl__hmac_free(a);
    sl__hmac_free(b);
    sl__hmac_free(cur);
    sl__hmac_free(old);
}

/* Loading a subscriber table under the keyring computes each pseudonym
 * once and logs the raw ids beside the rows (pjoin.c); a join that runs
 * unfused fills the key's cache from that log at open (sl__pjoin_warm):
 * pseudonymising the same ids afterwards is (nearly: a full set drops its
 * oldest) all hits, with the same values; the cache is sized once from
 * the log. */
static void test_table_load_fills(void **state)
{
    (void)state;
    setenv("SL_TEST_PCACHE_KEYS2", "k " SECRET "\n", 1);
    char err[512];
    sl_keyring *k = sl_keyring_load("env:SL_TEST_PCACHE_KEYS2", err, sizeof err);
    assert_non_null(k);
    char dir[] = "/tmp/sl_test_pcache_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[600];
    snprintf(path, sizeof path, "%s/subs.csv", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "msisdn,gender\n");
    enum { ROWS = 5000 };
    for (int i = 0; i < ROWS; i++) fprintf(f, "4917%08d,%c\n", i * 7, i % 2 ? 'f' : 'm');
    fclose(f);
    sl_schema *s = sl_schema_new();
    sl_schema_set_identifier(s, sl_schema_add(s, "msisdn", SL_STRING));
    sl_schema_add(s, "gender", SL_STRING);
    sl_table *t = sl_table_load("file", s, "msisdn",
                                (const char *[]){"path", path, "format", "csv", NULL},
                                k, err, sizeof err);
    if (!t) fail_msg("%s", err);
    assert_int_equal(sl_table_rows(t), ROWS);
    sl__pcache *c = sl__keyring_pcache(k, -1);
    uint64_t hits, misses;
    sl__pcache_stats(c, &hits, &misses);
    assert_int_equal(misses, 0); /* the load logs the ids instead */
    sl__pjoin_warm(t); /* what a join that runs unfused does at open */
    sl__pjoin_warm(t); /* once */
    sl__pcache_stats(c, &hits, &misses);
    assert_int_equal(misses, ROWS);
    sl__hmac *h = sl__hmac_new(k, NULL, 0);
    static char buf[ROWS][16];
    sl_str ids[ROWS];
    uint8_t valid[ROWS];
    int64_t out[ROWS];
    for (int i = 0; i < ROWS; i++) {
        snprintf(buf[i], sizeof buf[i], "4917%08d", i * 7);
        ids[i] = (sl_str){buf[i], 12};
        valid[i] = 1;
    }
    uint64_t h0 = hits;
    sl__pcache_pseudo(c, h, ids, valid, out, ROWS);
    uint64_t m0 = misses;
    sl__pcache_stats(c, &hits, &misses);
    assert_int_equal(hits - h0 + misses - m0, ROWS);
    assert_true(hits - h0 >= ROWS * 95 / 100); /* sized once from the file's size */
    print_message("table load: %llu of %d ids hit, cache %zu bytes\n",
                  (unsigned long long)(hits - h0), ROWS, sl__pcache_bytes(c));
    for (int i = 0; i < ROWS; i++) {
        assert_int_equal(out[i], sl_keyring_pseudonym(k, buf[i], 12));
        /* and the table is keyed by that pseudonym */
        assert_int_equal(sl__table_find_i64(t, out[i], NULL, NULL), 1);
    }
    sl__hmac_free(h);
    sl_table_free(t);
    sl_schema_free(s);
    sl_keyring_free(k);
    unlink(path);
    rmdir(dir);
}

/* ---- four threads at once ------------------------------------------------ */
typedef struct {
    sl__pcache *c;
    uint64_t seed;
    int bad;
    uint64_t rows;
} worker;

static void *run_worker(void *arg)
{
    worker *w = arg;
    sl__hmac *h = sl__hmac_new(g_keys, NULL, 0);
    sl_str in[512];
    uint8_t valid[512];
    int64_t out[512];
    uint32_t idx[512];
    for (int round = 0; round < 120; round++) {
        uint32_t n = 1 + (uint32_t)(rnd(&w->seed) % 512);
        /* a hot range shared by all threads plus a sweep that grows it */
        for (uint32_t i = 0; i < n; i++) {
            idx[i] = (uint32_t)(rnd(&w->seed) % 4 ? rnd(&w->seed) % 2000
                                                  : rnd(&w->seed) % NIDS);
            in[i] = g_ids[idx[i]];
            valid[i] = 1;
        }
        sl__pcache_pseudo(w->c, h, in, valid, out, n);
        for (uint32_t i = 0; i < n; i++) w->bad += out[i] != g_want[idx[i]];
        w->rows += n;
    }
    sl__hmac_free(h);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    enum { T = 4 };
    sl__pcache *c = sl__pcache_new(16); /* 1024 sets growing to 16384 */
    pthread_t th[T];
    worker w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (worker){.c = c, .seed = g_seed * 977u + (uint64_t)i + 1};
        assert_int_equal(pthread_create(&th[i], NULL, run_worker, &w[i]), 0);
    }
    uint64_t rows = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].bad, 0);
        rows += w[i].rows;
    }
    uint64_t hits, misses;
    sl__pcache_stats(c, &hits, &misses);
    /* every cacheable row is a hit or a miss; the others are neither */
    assert_true(hits + misses <= rows && hits + misses >= rows * 8 / 10);
    assert_true(hits > misses); /* the hot range stays */
    assert_true(sl__pcache_bytes(c) > 1024 * 64); /* it grew under the readers */
    sl__pcache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equals_hmac_and_bounded),
        cmocka_unit_test(test_keyring_shares),
        cmocka_unit_test(test_table_load_fills),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
