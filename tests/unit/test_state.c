/* test_state.c — the RocksDB keyed-state store (state/rocks.c: put, delete,
 * multi-get, prefix scan in key order, flush, one instance per process)
 * and lookup tables on it (state/tabledisk.c) against the memory table as
 * the model: random rows with duplicate, NULL and negative keys, NULL
 * values and strings of every length, loaded into both; every probe must
 * give the same row, and rows/stored/has_nulls must agree. The seed is
 * SEED or a fixed default, printed. */
#include "testutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "state/state.h"

static char g_dir[] = "/tmp/sl_test_state_XXXXXX";
static uint64_t g_seed = 20261124;

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(g_dir)) return -1;
    const char *env = getenv("SEED");
    if (env && *env) g_seed = strtoull(env, NULL, 10);
    printf("  seed %" PRIu64 " (set SEED to reproduce)\n", g_seed);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static sl__state_conf rocks_conf(const char *sub)
{
    sl__state_conf sc = {.backend = SL__STATE_ROCKSDB, .memory_bound = 32 << 20};
    snprintf(sc.dir, sizeof sc.dir, "%s/%s", g_dir, sub);
    return sc;
}

static uint64_t rnd(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ULL;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ---- the store ----------------------------------------------------------- */
typedef struct {
    char keys[8][8];
    int n;
} scan_acc;

static int collect(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    scan_acc *a = arg;
    assert_true(kl < 8 && a->n < 8);
    memcpy(a->keys[a->n], k, kl);
    a->keys[a->n][kl] = 0;
    assert_int_equal(vl, 1);
    assert_int_equal(v[0], k[kl - 1]); /* the value is the key's last byte */
    a->n++;
    return 0;
}

static void test_store(void **state)
{
    (void)state;
    char err[512] = "";
    sl__state_conf sc = rocks_conf("store");
    sl__ks *a = sl__ks_open(&sc, false, err, sizeof err);
    if (!a) fail_msg("%s", err);
    sl__ks *b = sl__ks_open(&sc, true, err, sizeof err); /* a second column family */
    if (!b) fail_msg("%s", err);
    const sl__ks_op ops[] = {
        {"w2:b", 4, "b", 1, false}, {"w1:z", 4, "z", 1, false}, {"w1:a", 4, "a", 1, false},
        {"w10:c", 5, "c", 1, false}, {"w1:m", 4, "m", 1, false}, {"w1:z", 4, NULL, 0, false},
    };
    assert_int_equal(sl__ks_write(a, ops, 6, err, sizeof err), 0);
    assert_int_equal(sl__ks_write(b, ops, 1, err, sizeof err), 0);
    /* prefix scan: only the prefix, in key order, without the deleted key */
    scan_acc acc = {0};
    assert_int_equal(sl__ks_scan(a, "w1:", 3, collect, &acc, err, sizeof err), 0);
    assert_int_equal(acc.n, 2);
    assert_string_equal(acc.keys[0], "w1:a");
    assert_string_equal(acc.keys[1], "w1:m");
    acc.n = 0;
    assert_int_equal(sl__ks_scan(b, "w1:", 3, collect, &acc, err, sizeof err), 0);
    assert_int_equal(acc.n, 0); /* column families are apart */
    /* multi-get */
    const char *keys[] = {"w2:b", "w1:z", "w10:c", "nope"};
    const size_t kl[] = {4, 4, 5, 4};
    char *vals[4];
    size_t vl[4];
    assert_int_equal(sl__ks_multi_get(a, 4, keys, kl, vals, vl, err, sizeof err), 0);
    assert_non_null(vals[0]);
    assert_int_equal(vl[0], 1);
    assert_int_equal(vals[0][0], 'b');
    assert_null(vals[1]);
    assert_non_null(vals[2]);
    assert_int_equal(vals[2][0], 'c');
    assert_null(vals[3]);
    for (int i = 0; i < 4; i++) sl__ks_value_free(vals[i]);
    /* flushed state is on disk */
    assert_int_equal(sl__ks_disk_bytes(a), 0);
    assert_int_equal(sl__ks_flush(a, err, sizeof err), 0);
    assert_true(sl__ks_disk_bytes(a) > 0);
    /* one instance per process: another directory is refused by name */
    sl__state_conf other = rocks_conf("other");
    assert_null(sl__ks_open(&other, false, err, sizeof err));
    assert_non_null(strstr(err, "state.rocksdb.dir"));
    sl__ks_drop(b);
    sl__ks_drop(a);
    /* the last drop closed the instance: now another directory opens */
    sl__ks *c = sl__ks_open(&other, false, err, sizeof err);
    if (!c) fail_msg("%s", err);
    sl__ks_drop(c);
    char cur[1100];
    snprintf(cur, sizeof cur, "%s/CURRENT", other.dir);
    assert_int_not_equal(access(cur, F_OK), 0); /* its files are removed */
}

/* ---- merge operands (window groups written blind) ------------------------ */
/* The test's merge: values are 8-byte little-endian counts, and merging
 * adds them; "bad" does not parse. */
static int sum_merge(void *arg, const char *base, size_t blen, const char *const *ops,
                     const size_t *olen, int n, sl__buf *out)
{
    int *calls = arg;
    (*calls)++;
    uint64_t t = 0, v;
    if (base) {
        if (blen != 8) return -1;
        memcpy(&v, base, 8);
        t += v;
    }
    for (int i = 0; i < n; i++) {
        if (olen[i] != 8) return -1;
        memcpy(&v, ops[i], 8);
        t += v;
    }
    sl__buf_put_u64(out, t);
    return 0;
}

static uint64_t get_sum(sl__ks *ks, const char *key, bool *found, int *rc)
{
    char err[512], *val = NULL;
    const char *keys[1] = {key};
    size_t kl = strlen(key), vl = 0;
    uint64_t v = 0;
    *rc = sl__ks_multi_get(ks, 1, keys, &kl, &val, &vl, err, sizeof err);
    *found = val != NULL;
    if (val && vl == 8) memcpy(&v, val, 8);
    sl__ks_value_free(val);
    return v;
}

static void test_store_merge(void **state)
{
    (void)state;
    char err[512] = "";
    sl__state_conf sc = rocks_conf("merge");
    int calls = 0;
    sl__ks *ks = sl__ks_open_merging(&sc, NULL, NULL, sum_merge, &calls, NULL, err,
                                     sizeof err);
    if (!ks) fail_msg("%s", err);
    /* a base, then operands on top of it, across memtable flushes and a
     * compaction; model: the plain sum per key */
    uint64_t model[3] = {0}, seed = 6;
    const char *keys[3] = {"k0", "k1", "k2"};
    for (int round = 0; round < 40; round++) {
        int k = (int)(rnd(&seed) % 3);
        uint64_t add = 1 + rnd(&seed) % 1000;
        sl__ks_op op = {.key = keys[k], .klen = 2, .val = (const char *)&add, .vlen = 8,
                        .merge = model[k] != 0 || round % 2}; /* a put or a merge */
        if (!op.merge) model[k] = 0;
        model[k] += add;
        assert_int_equal(sl__ks_write(ks, &op, 1, err, sizeof err), 0);
        if (round % 7 == 6) assert_int_equal(sl__ks_flush(ks, err, sizeof err), 0);
        if (round == 30) assert_int_equal(sl__ks_compact(ks, err, sizeof err), 0);
        for (int i = 0; i < 3; i++) {
            bool found;
            int rc;
            uint64_t got = get_sum(ks, keys[i], &found, &rc);
            assert_int_equal(rc, 0);
            assert_int_equal(found, model[i] != 0);
            if (found) assert_int_equal(got, model[i]);
        }
    }
    assert_true(calls > 0);
    /* an operand that does not parse: the read fails, naming RocksDB */
    sl__ks_op bad = {.key = "k0", .klen = 2, .val = "bad", .vlen = 3, .merge = true};
    assert_int_equal(sl__ks_write(ks, &bad, 1, err, sizeof err), 0);
    bool found;
    int rc;
    (void)get_sum(ks, "k0", &found, &rc);
    assert_int_not_equal(rc, 0);
    sl__ks_drop(ks);
}

/* ---- tables: RocksDB against the memory model ----------------------------- */
static sl_schema *table_schema(sl_type key)
{
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "k", key);
    sl_schema_add(s, "name", SL_STRING);
    sl_schema_add(s, "n", SL_INT64);
    sl_schema_add(s, "x", SL_FLOAT64);
    sl_schema_add(s, "flag", SL_BOOL);
    return s;
}

static void fill_key(sl_batch *b, uint32_t i, sl_type kt, int64_t k)
{
    if (kt == SL_INT64) {
        sl_batch_i64(b, 0)[i] = k;
    } else {
        char t[32];
        int n = k % 7 == 0 ? 0 : snprintf(t, sizeof t, "s%" PRId64, k);
        sl_batch_set_str(b, 0, i, t, (size_t)n); /* k % 7 == 0: "" */
    }
}

static sl_batch *random_rows(const sl_schema *s, sl_type kt, uint32_t n,
                             uint64_t *rs)
{
    sl_batch *b = sl__batch_new(s, n);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t r = rnd(rs);
        if (r % 23 == 0) sl_batch_valid(b, 0)[i] = 0; /* NULL key */
        else fill_key(b, i, kt, (int64_t)(rnd(rs) % 600) - 300);
        char name[80];
        size_t len = rnd(rs) % 60;
        for (size_t j = 0; j < len; j++) name[j] = (char)('a' + rnd(rs) % 26);
        if (r % 5 == 1) sl_batch_valid(b, 1)[i] = 0;
        else sl_batch_set_str(b, 1, i, name, len);
        if (r % 7 == 2) sl_batch_valid(b, 2)[i] = 0;
        else sl_batch_i64(b, 2)[i] = (int64_t)rnd(rs);
        ((double *)sl_batch_i64(b, 3))[i] = (double)(rnd(rs) % 1000) / 8;
        ((uint8_t *)sl_batch_i64(b, 4))[i] = (uint8_t)(rnd(rs) & 1);
    }
    sl_batch_set_len(b, n);
    return b;
}

static void same_row(const sl_batch *m, uint32_t mr, const sl_batch *d, uint32_t dr)
{
    for (int c = 0; c < 5; c++) {
        assert_int_equal(m->cols[c].valid[mr], d->cols[c].valid[dr]);
        if (!m->cols[c].valid[mr]) continue;
        sl_type t = m->schema->cols[c].type;
        if (t == SL_STRING) {
            sl_str a = ((const sl_str *)m->cols[c].data)[mr];
            sl_str b = ((const sl_str *)d->cols[c].data)[dr];
            assert_int_equal(a.len, b.len);
            if (a.len) assert_memory_equal(a.ptr, b.ptr, a.len);
        } else if (t == SL_BOOL) {
            assert_int_equal(((const uint8_t *)m->cols[c].data)[mr],
                             ((const uint8_t *)d->cols[c].data)[dr]);
        } else {
            assert_memory_equal((const char *)m->cols[c].data + 8 * (size_t)mr,
                                (const char *)d->cols[c].data + 8 * (size_t)dr, 8);
        }
    }
}

static void model_check(sl_type kt)
{
    uint64_t rs = g_seed ^ (uint64_t)kt;
    char err[512] = "";
    sl_schema *s = table_schema(kt);
    sl__state_conf sc = rocks_conf("tables");
    sl_table *mem = sl__table_new_on(s, 0, NULL, err, sizeof err);
    sl_table *disk = sl__table_new_on(s, 0, &sc, err, sizeof err);
    if (!mem || !disk) fail_msg("%s", err);
    assert_false(sl__table_on_disk(mem));
    assert_true(sl__table_on_disk(disk));
    for (int round = 0; round < 6; round++) { /* duplicates within and across */
        sl_batch *b = random_rows(s, kt, 50 + (uint32_t)(rnd(&rs) % 300), &rs);
        assert_int_equal(sl__table_append(mem, b, err, sizeof err), 0);
        assert_int_equal(sl__table_append(disk, b, err, sizeof err), 0);
        sl__batch_free(b);
        assert_int_equal(sl__table_seal(disk, err, sizeof err), 0);
        assert_int_equal(sl__table_seal(mem, err, sizeof err), 0);
        assert_int_equal(sl_table_rows(disk), sl_table_rows(mem));
    }
    assert_true(sl__table_disk_bytes(disk) > 0);
    assert_int_equal(sl__table_disk_bytes(mem), 0);
    assert_int_equal(sl__table_stored(disk), sl__table_stored(mem));
    assert_true(sl_table_rows(mem) > 100 && sl_table_rows(mem) < sl__table_stored(mem));
    for (int c = 0; c < 5; c++)
        assert_int_equal(sl__table_has_nulls(disk, c), sl__table_has_nulls(mem, c));
    /* probes: every key of the range and beyond, NULL keys, a canary */
    enum { P = 700 };
    sl_batch *probe = sl__batch_new(s, P);
    for (uint32_t i = 0; i < P; i++) fill_key(probe, i, kt, (int64_t)i - 350);
    sl_batch_valid(probe, 0)[10] = 0;
    sl_batch_kind(probe)[20] = SL_KIND_CANARY;
    sl_batch_set_len(probe, P);
    sl_batch *got = sl__batch_new(s, P);
    uint32_t row_of[P];
    assert_int_equal(sl__table_fetch(disk, probe, 0, got, row_of, err, sizeof err), 0);
    assert_int_equal(sl__table_fetch(mem, probe, 0, got, row_of, err, sizeof err),
                     SL_EINTERNAL);
    assert_int_equal(sl__table_fetch(disk, probe, 0, got, row_of, err, sizeof err), 0);
    uint32_t hits = 0;
    for (uint32_t i = 0; i < P; i++) {
        const sl_batch *ch = NULL;
        uint32_t r = 0;
        int hit = 0;
        if (i != 10 && i != 20) {
            if (kt == SL_INT64) {
                hit = sl__table_find_i64(mem, (int64_t)i - 350, &ch, &r);
            } else {
                sl_str k = sl_batch_str(probe, 0)[i];
                hit = sl__table_find_str(mem, k.ptr, k.len, &ch, &r);
            }
        }
        assert_int_equal(row_of[i] != UINT32_MAX, hit);
        if (!hit) continue;
        hits++;
        same_row(ch, r, got, row_of[i]);
    }
    assert_true(hits > 100);
    assert_int_equal(got->n, hits);
    /* through a row cache: the same rows, cold (all misses) and warm */
    sl__rowcache *cache = sl__table_cache(disk);
    assert_non_null(cache);
    assert_ptr_equal(sl__table_cache(disk), cache); /* one per table */
    assert_null(sl__table_cache(mem));
    sl__rowcache_counts k;
    sl__rowcache_stats(cache, &k); /* warmed with every row: it has room */
    assert_int_equal(k.inserts, sl_table_rows(disk));
    assert_true(sl__rowcache_slots(cache) >= 3 * sl_table_rows(disk));
    sl__rowcache_counts n = {0};
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(sl__table_fetch_cached(disk, cache, probe, 0, got, row_of,
                                                &n, err, sizeof err), 0);
        assert_int_equal(got->n, hits);
        for (uint32_t i = 0; i < P; i++) {
            const sl_batch *ch = NULL;
            uint32_t r = 0;
            int hit = 0;
            if (i != 10 && i != 20) {
                if (kt == SL_INT64) {
                    hit = sl__table_find_i64(mem, (int64_t)i - 350, &ch, &r);
                } else {
                    sl_str k = sl_batch_str(probe, 0)[i];
                    hit = sl__table_find_str(mem, k.ptr, k.len, &ch, &r);
                }
            }
            assert_int_equal(row_of[i] != UINT32_MAX, hit);
            if (hit) same_row(ch, r, got, row_of[i]);
        }
    }
    sl__rowcache_stats(cache, &k);
    printf("  cache: %u rows found, %" PRIu64 " hits %" PRIu64 " misses %" PRIu64
           " inserts %" PRIu64 " evictions\n", hits, k.hits, k.misses, k.inserts,
           k.evictions);
    /* both passes found most rows in the warmed cache (3 slots per row: a
     * few find their set full); a key the table lacks misses once, then
     * its absence is cached (string keys: "" stands for every k % 7 == 0,
     * so fewer distinct absent keys than probes) */
    assert_int_equal(k.hits + k.misses, 2 * (P - 2));
    assert_true(k.hits >= (uint64_t)hits * 2 * 17 / 20);
    assert_true(k.misses < (uint64_t)(P - 2 - hits) + (uint64_t)hits / 5);
    assert_int_equal(n.hits, k.hits); /* what the fetches reported */
    assert_int_equal(n.misses, k.misses);
    sl__batch_free(probe);
    sl__batch_free(got);
    sl_table_free(mem);
    sl_table_free(disk);
    sl_schema_free(s);
}

static void test_table_int_model(void **state)
{
    (void)state;
    model_check(SL_INT64);
}

static void test_table_str_model(void **state)
{
    (void)state;
    model_check(SL_STRING);
}

/* A row rewritten after the table was sealed (as a refresh would) is
 * never served stale from a cache that held the old row, and the caches'
 * bytes stay within the row-cache share of state.memory.bound. */
static sl_batch *int_rows(const sl_schema *s, uint32_t n, int64_t step,
                          const char *name, int64_t sign)
{
    sl_batch *b = sl__batch_new(s, n);
    for (uint32_t i = 0; i < n; i++) {
        sl_batch_i64(b, 0)[i] = step * i;
        sl_batch_set_str(b, 1, i, name, strlen(name));
        sl_batch_i64(b, 2)[i] = sign * (int64_t)i;
    }
    sl_batch_set_len(b, n);
    return b;
}

/* A row rewritten after the table was sealed (as a refresh would) is
 * never served stale from a cache that held the old row, and the caches
 * of all tables stay within the row-cache share of state.memory.bound. */
static void test_cache_fresh_and_bounded(void **state)
{
    (void)state;
    char err[512] = "";
    sl_schema *s = table_schema(SL_INT64);
    sl__state_conf sc = rocks_conf("fresh");
    sl_table *disk = sl__table_new_on(s, 0, &sc, err, sizeof err);
    if (!disk) fail_msg("%s", err);
    sl_batch *b = int_rows(s, 1000, 1, "old", 1);
    assert_int_equal(sl__table_append(disk, b, err, sizeof err), 0);
    assert_int_equal(sl__table_seal(disk, err, sizeof err), 0);
    sl__rowcache *cache = sl__table_cache(disk);
    assert_non_null(cache);
    sl_batch *got = sl__batch_new(s, 1000);
    uint32_t row_of[1000];
    for (int pass = 0; pass < 2; pass++) /* the second pass: (nearly) all hits */
        assert_int_equal(sl__table_fetch_cached(disk, cache, b, 0, got, row_of,
                                                NULL, err, sizeof err), 0);
    sl__rowcache_counts k;
    sl__rowcache_stats(cache, &k);
    assert_true(k.hits >= 900);
    /* rewrite the even keys */
    sl_batch *upd = int_rows(s, 500, 2, "new!", -1);
    assert_int_equal(sl__table_append(disk, upd, err, sizeof err), 0);
    assert_int_equal(sl__table_fetch_cached(disk, cache, b, 0, got, row_of, NULL,
                                            err, sizeof err), 0);
    for (uint32_t i = 0; i < 1000; i++) {
        uint32_t r = row_of[i];
        assert_int_not_equal(r, UINT32_MAX);
        sl_str v = sl_batch_str(got, 1)[r];
        if (i % 2 == 0) {
            assert_int_equal(v.len, 4);
            assert_memory_equal(v.ptr, "new!", 4);
            assert_int_equal(sl_batch_i64(got, 2)[r], -(int64_t)(i / 2));
        } else {
            assert_int_equal(v.len, 3);
            assert_memory_equal(v.ptr, "old", 3);
            assert_int_equal(sl_batch_i64(got, 2)[r], i);
        }
    }
    /* a key looked up while absent is found once it is written */
    sl_batch *nk = int_rows(s, 1, 5000, "late", 1); /* key 0 ... */
    sl_batch_i64(nk, 0)[0] = 5000;                   /* ... made 5000 */
    assert_int_equal(sl__table_fetch_cached(disk, cache, nk, 0, got, row_of, NULL,
                                            err, sizeof err), 0);
    assert_int_equal(row_of[0], UINT32_MAX);
    assert_int_equal(sl__table_fetch_cached(disk, cache, nk, 0, got, row_of, NULL,
                                            err, sizeof err), 0);
    assert_int_equal(row_of[0], UINT32_MAX); /* the absence, from the cache */
    assert_int_equal(sl__table_append(disk, nk, err, sizeof err), 0);
    assert_int_equal(sl__table_fetch_cached(disk, cache, nk, 0, got, row_of, NULL,
                                            err, sizeof err), 0);
    assert_int_not_equal(row_of[0], UINT32_MAX);
    assert_memory_equal(sl_batch_str(got, 1)[row_of[0]].ptr, "late", 4);
    sl__batch_free(nk);
    /* the budget: a table whose rows would need more than what is left
     * gets the rest, no more; a table after it gets nothing */
    int64_t total = sl__ks_row_cache_bytes();
    assert_int_equal(total, sl__state_shares(sc.memory_bound) / 4);
    sl_schema *ws = table_schema(SL_INT64);
    sl_table *big = sl__table_new_on(ws, 0, &sc, err, sizeof err);
    sl_table *late = sl__table_new_on(ws, 0, &sc, err, sizeof err);
    if (!big || !late) fail_msg("%s", err);
    for (int64_t part = 0; part < 40; part++) { /* 200 k rows x 3 slots x 48 B: > 8 MiB */
        sl_batch *r = int_rows(ws, 5000, 1, "x", 1);
        for (uint32_t i = 0; i < 5000; i++) sl_batch_i64(r, 0)[i] += part * 5000;
        assert_int_equal(sl__table_append(big, r, err, sizeof err), 0);
        sl__batch_free(r);
    }
    sl_batch *one = int_rows(ws, 1, 1, "y", 1);
    assert_int_equal(sl__table_append(late, one, err, sizeof err), 0);
    sl__batch_free(one);
    assert_int_equal(sl__table_seal(big, err, sizeof err), 0);
    assert_int_equal(sl__table_seal(late, err, sizeof err), 0);
    /* late and big are both open without a cache: water-filling gives late
     * what it needs, big the rest */
    sl__rowcache *cb = sl__table_cache(big);
    int64_t sum = (int64_t)sl__rowcache_bytes(cache) + (int64_t)sl__rowcache_bytes(cb);
    assert_true(sum <= total - (3 + 1024) * 48); /* late's share is kept */
    sl__rowcache *cl = sl__table_cache(late);
    assert_non_null(cl);
    sum += (int64_t)sl__rowcache_bytes(cl);
    assert_true(sum <= total);
    assert_true(sum > total - 4096); /* all of it, but for rounding */
    sl_table_free(late);
    sl_table_free(big);
    sl_schema_free(ws);
    sl__batch_free(upd);
    sl__batch_free(got);
    sl__batch_free(b);
    sl_table_free(disk);
    sl_schema_free(s);
}

static void test_bad_dir(void **state)
{
    (void)state;
    char err[512] = "";
    sl__state_conf sc = {.backend = SL__STATE_ROCKSDB, .memory_bound = 32 << 20};
    snprintf(sc.dir, sizeof sc.dir, "/proc/no/such/dir");
    sl_schema *s = table_schema(SL_INT64);
    assert_null(sl__table_new_on(s, 0, &sc, err, sizeof err));
    assert_non_null(strstr(err, "state.rocksdb.dir"));
    sl_schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_store_merge),
        cmocka_unit_test(test_table_int_model),
        cmocka_unit_test(test_table_str_model),
        cmocka_unit_test(test_cache_fresh_and_bounded),
        cmocka_unit_test(test_bad_dir),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
