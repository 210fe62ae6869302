/* pcache.c — the pseudonym cache: raw subscriber id -> pseudonym under one
 * key, shared by every task that pseudonymises under that key (the
 * keyring owns one per key, keyring.c sl__keyring_pcache) and filled also
 * by the lookup-table load, which computes the same pseudonyms. It only
 * memoises a deterministic function (the first 64 bits of HMAC-SHA-256),
 * so a lost, torn or evicted entry costs a MAC, never a wrong result.
 *
 * What it holds stays in memory: never snapshotted, logged or counted by
 * id; after recovery it starts empty. An id of 1 to 18 digits (MSISDN,
 * IMSI, IMEI) is kept as the number 10^len + value, which is exact
 * (leading zeros and lengths stay apart) and never 0, the empty mark;
 * other ids bypass the cache and cost a MAC each time.
 *
 * Layout: sets of one cache line (a sequence number, three keys, three
 * pseudonyms), so a probe touches one line; a miss puts its entry first in
 * its set and drops the oldest. The table starts at 2^10 sets and doubles
 * each time it has dropped as many entries as 1/4 of its sets since the
 * last growth (a full set drops its oldest entry: at one entry a set on
 * average about 2 % of the entries do not fit, at two about 12 %), or
 * at once to one id a set when a table load knows its size
 * (sl__pcache_reserve: the reference job's 1 M subscribers take 2^20
 * sets, 64 MiB, and 1.6 % of the events miss), up to
 * 2^bits / 4 sets (the default, bits 24, is 2^22 sets: 256 MiB holding
 * 12.6 M ids, the reference job's 10 M subscribers). Tables of 2 MiB and
 * more are mapped with transparent huge pages (sl__huge_alloc).
 *
 * Concurrency (readers many, writers rare):
 * 1. A set is read without locks under its sequence number (a seqlock):
 *    a reader takes an entry only if the number was even before and is
 *    unchanged after it read key and pseudonym (set_get); all loads of the
 *    entry are acquire loads, so the second read of the number cannot move
 *    before them.
 * 2. A writer makes the number odd with a compare-and-swap, moves the
 *    entries with release stores and makes it even again (set_put); if
 *    another writer holds the set it gives up, since the entry is only a
 *    memo.
 * 3. The table itself is swapped for a larger one only under the write
 *    side of `lock`; every block of probes holds the read side
 *    (sl__pcache_pseudo), so a table is never freed under a reader.
 *    One grower at a time (`growing`) copies the old table into the new
 *    one before taking the lock; entries put meanwhile are lost (misses
 *    later). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ops/privacy.h"

#define WAYS 3
#define SETS_START_LOG2 10
#define BLOCK 256

typedef struct {
    _Atomic uint64_t seq;       /* odd while a writer changes the set */
    _Atomic uint64_t key[WAYS]; /* pack_id of the raw id; 0 = empty */
    _Atomic uint64_t val[WAYS]; /* the pseudonym */
    uint64_t pad;
} pset;
_Static_assert(sizeof(pset) == 64, "a set is one cache line");

struct sl__pcache {
    pthread_rwlock_t lock; /* read: a block of probes; write: the swap */
    pset *sets;            /* mask + 1 sets, replaced under lock */
    uint64_t mask;
    size_t bytes;          /* of the mapping */
    uint64_t max_sets;
    _Atomic uint64_t evictions; /* entries dropped since the last growth */
    atomic_int growing;
    _Atomic uint64_t hits, misses;
};

/* Invariant 1: 1 and the pseudonym if the set holds key, else 0. */
static inline int set_get(pset *s, uint64_t key, int64_t *val)
{
    uint64_t s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
    if (s1 & 1) return 0;
    for (int w = 0; w < WAYS; w++) {
        if (atomic_load_explicit(&s->key[w], memory_order_acquire) != key) continue;
        uint64_t v = atomic_load_explicit(&s->val[w], memory_order_acquire);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) != s1) return 0;
        *val = (int64_t)v;
        return 1;
    }
    return 0;
}

/* Invariant 2: puts (key, val) first in the set, the oldest drops out;
 * 0 if another writer holds the set (nothing put), 2 if an entry was
 * dropped, else 1. */
static int set_put(pset *s, uint64_t key, int64_t val)
{
    uint64_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
    if ((q & 1) || !atomic_compare_exchange_strong_explicit(
                       &s->seq, &q, q + 1, memory_order_acquire,
                       memory_order_relaxed))
        return 0;
    for (int w = WAYS - 1; w > 0; w--) {
        atomic_store_explicit(&s->key[w], atomic_load_explicit(
            &s->key[w - 1], memory_order_relaxed), memory_order_release);
        atomic_store_explicit(&s->val[w], atomic_load_explicit(
            &s->val[w - 1], memory_order_relaxed), memory_order_release);
    }
    atomic_store_explicit(&s->key[0], key, memory_order_release);
    atomic_store_explicit(&s->val[0], (uint64_t)val, memory_order_release);
    int dropped = atomic_load_explicit(&s->key[WAYS - 1], memory_order_relaxed) != 0;
    atomic_store_explicit(&s->seq, q + 2, memory_order_release);
    return 1 + dropped;
}

static inline uint64_t set_of(uint64_t key, uint64_t mask)
{
    return sl__mix64(key) & mask;
}

sl__pcache *sl__pcache_new(int bits)
{
    if (bits < 2) bits = 2;
    if (bits > 28) bits = 28;
    sl__pcache *c = sl__xcalloc(1, sizeof *c);
    /* readers hold it for one block of probes, then decode, join and
     * route for much longer, so a grower finds a gap soon */
    pthread_rwlock_init(&c->lock, NULL);
    c->max_sets = ((uint64_t)1 << bits) / 4;
    uint64_t sets = (uint64_t)1 << SETS_START_LOG2;
    if (sets > c->max_sets) sets = c->max_sets;
    c->mask = sets - 1;
    c->bytes = sets * sizeof(pset);
    c->sets = sl__huge_alloc(c->bytes); /* zero-filled: all empty */
    return c;
}

void sl__pcache_free(sl__pcache *c)
{
    if (!c) return;
    sl__huge_free(c->sets, c->bytes);
    pthread_rwlock_destroy(&c->lock);
    free(c);
}

void sl__pcache_stats(const sl__pcache *c, uint64_t *hits, uint64_t *misses)
{
    sl__pcache *m = (sl__pcache *)c; /* atomic loads need a non-const object */
    if (hits) *hits = c ? atomic_load_explicit(&m->hits, memory_order_relaxed) : 0;
    if (misses) *misses = c ? atomic_load_explicit(&m->misses, memory_order_relaxed) : 0;
}

size_t sl__pcache_bytes(sl__pcache *c)
{
    if (!c) return 0;
    pthread_rwlock_rdlock(&c->lock);
    size_t n = c->bytes;
    pthread_rwlock_unlock(&c->lock);
    return n;
}

/* Invariant 3: to nsets sets (> the current count, <= max_sets). Called
 * by at most one thread at a time (`growing`). */
static void grow(sl__pcache *c, uint64_t nsets)
{
    /* only a grower changes sets/mask, so reading them here needs no lock */
    pset *old = c->sets;
    uint64_t old_sets = c->mask + 1;
    uint64_t nmask = nsets - 1;
    size_t nbytes = (nmask + 1) * sizeof(pset);
    pset *ns = sl__huge_alloc(nbytes);
    for (uint64_t i = 0; i < old_sets; i++) {
        pset *o = &old[i];
        uint64_t s1 = atomic_load_explicit(&o->seq, memory_order_acquire);
        if (s1 & 1) continue;
        uint64_t k[WAYS], v[WAYS];
        for (int w = 0; w < WAYS; w++) {
            k[w] = atomic_load_explicit(&o->key[w], memory_order_acquire);
            v[w] = atomic_load_explicit(&o->val[w], memory_order_acquire);
        }
        if (atomic_load_explicit(&o->seq, memory_order_relaxed) != s1) continue;
        for (int w = WAYS - 1; w >= 0; w--) /* oldest first keeps the order */
            if (k[w]) set_put(&ns[set_of(k[w], nmask)], k[w], (int64_t)v[w]);
    }
    pthread_rwlock_wrlock(&c->lock);
    c->sets = ns;
    c->mask = nmask;
    c->bytes = nbytes;
    atomic_store_explicit(&c->evictions, 0, memory_order_relaxed);
    pthread_rwlock_unlock(&c->lock);
    sl__huge_free(old, old_sets * sizeof(pset));
}

static void block(sl__pcache *c, sl__hmac *h, const sl_str *ids,
                  const uint8_t *valid, int64_t *out, uint32_t n)
{
    uint64_t key[BLOCK];
    pset *set[BLOCK];
    uint64_t hits = 0, misses = 0, drops = 0;
    pthread_rwlock_rdlock(&c->lock);
    pset *tab = c->sets;
    uint64_t mask = c->mask;
    bool may_grow = mask + 1 < c->max_sets;
    for (uint32_t i = 0; i < n; i++) {
        key[i] = valid[i] ? sl__pcache_pack(ids[i].ptr, ids[i].len) : 0;
        if (!key[i]) continue;
        set[i] = &tab[set_of(key[i], mask)];
        __builtin_prefetch(set[i]);
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!valid[i]) {
            out[i] = 0;
            continue;
        }
        if (!key[i]) {
            out[i] = sl__hmac_pseudo(h, ids[i].ptr, ids[i].len);
            continue;
        }
        if (set_get(set[i], key[i], &out[i])) {
            hits++;
            continue;
        }
        out[i] = sl__hmac_pseudo(h, ids[i].ptr, ids[i].len);
        misses++;
        drops += set_put(set[i], key[i], out[i]) == 2;
    }
    pthread_rwlock_unlock(&c->lock);
    if (hits) atomic_fetch_add_explicit(&c->hits, hits, memory_order_relaxed);
    if (misses) atomic_fetch_add_explicit(&c->misses, misses, memory_order_relaxed);
    if (!drops) return;
    uint64_t f = atomic_fetch_add_explicit(&c->evictions, drops, memory_order_relaxed) +
                 drops;
    if (may_grow && f >= (mask + 1) / 4 &&
        !atomic_exchange_explicit(&c->growing, 1, memory_order_acquire)) {
        /* another grower may have finished since this block's probes */
        pthread_rwlock_rdlock(&c->lock);
        bool same = c->mask == mask;
        pthread_rwlock_unlock(&c->lock);
        if (same) grow(c, (mask + 1) * 2);
        atomic_store_explicit(&c->growing, 0, memory_order_release);
    }
}

void sl__pcache_reserve(sl__pcache *c, uint64_t n)
{
    if (!c) return;
    uint64_t want = 1;
    while (want < n && want < c->max_sets) want *= 2; /* one entry a set */
    if (want > c->max_sets) want = c->max_sets;
    if (atomic_exchange_explicit(&c->growing, 1, memory_order_acquire)) return;
    pthread_rwlock_rdlock(&c->lock);
    uint64_t sets = c->mask + 1;
    pthread_rwlock_unlock(&c->lock);
    if (want > sets) grow(c, want);
    atomic_store_explicit(&c->growing, 0, memory_order_release);
}

void sl__pcache_fill(sl__pcache *c, const uint64_t *keys, const int64_t *vals,
                     uint32_t n)
{
    if (!c) return;
    uint64_t puts = 0;
    pthread_rwlock_rdlock(&c->lock);
    pset *tab = c->sets;
    uint64_t mask = c->mask;
    for (uint32_t i0 = 0; i0 < n; i0 += BLOCK) {
        uint32_t m = n - i0 < BLOCK ? n - i0 : BLOCK;
        for (uint32_t i = i0; i < i0 + m; i++)
            if (keys[i]) __builtin_prefetch(&tab[set_of(keys[i], mask)], 1);
        for (uint32_t i = i0; i < i0 + m; i++)
            if (keys[i]) puts += set_put(&tab[set_of(keys[i], mask)], keys[i], vals[i]) > 0;
    }
    pthread_rwlock_unlock(&c->lock);
    /* counted as misses: entries the cache did not have, put from outside */
    atomic_fetch_add_explicit(&c->misses, puts, memory_order_relaxed);
}

void sl__pcache_pseudo(sl__pcache *c, sl__hmac *h, const sl_str *ids,
                       const uint8_t *valid, int64_t *out, uint32_t n)
{
    sl_str id[BLOCK];
    for (uint32_t i = 0; i < n; i += BLOCK) {
        uint32_t m = n - i < BLOCK ? n - i : BLOCK;
        /* out may overlay ids (in-place conversion): copy the block first */
        memcpy(id, ids + i, m * sizeof *id);
        if (c) {
            block(c, h, id, valid + i, out + i, m);
            continue;
        }
        for (uint32_t k = 0; k < m; k++)
            out[i + k] = valid[i + k] ? sl__hmac_pseudo(h, id[k].ptr, id[k].len) : 0;
    }
}
