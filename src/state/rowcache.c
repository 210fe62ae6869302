/* rowcache.c — a bounded cache of hot rows in front of a RocksDB lookup
 * table (sl__rowcache, state.h), one per table, shared by every task that
 * probes it. tabledisk.c probes it for a whole batch (hash and prefetch
 * every key's set, then probe) and sends only the misses to RocksDB in one
 * sorted multi-get.
 *
 * Shared rather than per task: the reference job's tasks all see every
 * subscriber (the events are not partitioned by subscriber before the
 * join), so per-task caches would each miss on every first sight of a key
 * and each hold the same hot rows; one cache misses once per key and holds
 * twice the rows in the same bytes. The sets are guarded by 256 mutexes
 * (set s by lock s % 256), taken for one probe or one insert (tens of ns,
 * almost never contended), so a reader copies a value out under the lock
 * and decodes it after.
 *
 * An entry is a row as RocksDB stores it (the encoded key, then the
 * encoded value: tabledisk.c), copied into a fixed-size slot, or a key the
 * table does not have (an unknown subscriber: its lookups would otherwise
 * all go to RocksDB); a row larger than a slot is never cached and always
 * read from RocksDB. Slots form 4-way sets (adjacent slots, prefetched
 * together); a key's set is its
 * hash scaled to the number of sets (multiply-shift, any number of sets:
 * the high bits), its tag the low 32 bits. A slot's header is 8 bytes, so
 * a subscriber row (8-byte pseudonym, birth date, gender: 29 bytes) takes
 * a 40-byte slot. Replacement is "not recently used" within a set: a hit
 * sets the slot's referenced bit; an insertion takes a free slot, else
 * the first unreferenced one from a hash-chosen way, else clears the
 * set's bits and takes that way; a new row starts unreferenced, so rows
 * seen once (most first sightings of a subscriber) leave the hot ones be.
 * With 2-way sets and LRU, 2.5 % of the lookups of a 2,000-cell table
 * cached whole (3 slots per row) missed, as hot cells sharing a full set
 * evicted each other; with 4-way sets and NRU, 0.2 %.
 *
 * It does not decide its size: the caller passes the bytes it may use
 * (the table's share of state.memory.bound, tabledisk.c), mapped once
 * (transparent huge pages: probes at random would miss the TLB), zeroed by
 * the kernel, so untouched parts cost no resident memory. It does not
 * know about table writes either: a table that changes bumps a generation,
 * and sl__rowcache_sync clears a cache that saw an older one.
 *
 * Invariants:
 *  1. slot tag 0 means empty; a tag is never 0 (sl__rowcache_hash sets
 *     bit 0), so a zeroed cache is empty (sl__rowcache_new, _clear).
 *  2. an occupied slot holds klen + vlen <= c->data bytes after its
 *     header (vlen 0 for an absent key): sl__rowcache_put refuses anything
 *     larger.
 *  3. a set and its shard's counters are read and written only under its
 *     shard's lock (sl__rowcache_get, _put, _clear, _stats). */
#include <stdbool.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "state/state.h"

typedef struct {
    uint32_t tag;  /* the hash's low 32 bits; 0: empty */
    uint16_t vlen; /* ABSENT: the table has no such key */
    uint16_t klen; /* bits 0-14; bit 15: referenced since the last sweep */
} slot_hdr; /* 8 bytes, followed by the slot's data */

#define KLEN_MASK 0x7fffu
#define ABSENT 0xffffu /* vlen of a key the table does not have */
#define REF_BIT 0x8000u

#define WAYS 4
#define SHARDS 256

typedef struct {
    pthread_mutex_t mu;
    sl__rowcache_counts n;
    bool dirty; /* a put since the last clear */
} shard;

struct sl__rowcache {
    unsigned char *mem;
    uint64_t nsets;
    size_t slot;  /* bytes of one slot: header + data, a multiple of 8 */
    size_t data;  /* bytes of key + value one slot holds */
    size_t bytes; /* allocated for the slots */
    _Atomic uint64_t gen; /* the table generation the entries belong to */
    pthread_mutex_t sync_mu; /* one clear at a time */
    shard sh[SHARDS];
};

sl__rowcache *sl__rowcache_new(size_t bytes, size_t max_row)
{
    if (max_row > SL__ROWCACHE_MAX_ROW) max_row = SL__ROWCACHE_MAX_ROW;
    size_t data = (max_row + 7) & ~(size_t)7;
    size_t slot = sizeof(slot_hdr) + data;
    uint64_t nsets = bytes / (WAYS * slot);
    if (data == 0 || nsets == 0) return NULL;
    sl__rowcache *c = sl__xcalloc(1, sizeof *c);
    c->slot = slot;
    c->data = data;
    c->nsets = nsets;
    c->bytes = (size_t)nsets * WAYS * slot;
    c->mem = sl__huge_alloc(c->bytes); /* zeroed; huge pages: fewer TLB misses */
    pthread_mutex_init(&c->sync_mu, NULL);
    for (int i = 0; i < SHARDS; i++) pthread_mutex_init(&c->sh[i].mu, NULL);
    return c;
}

void sl__rowcache_free(sl__rowcache *c)
{
    if (!c) return;
    for (int i = 0; i < SHARDS; i++) pthread_mutex_destroy(&c->sh[i].mu);
    pthread_mutex_destroy(&c->sync_mu);
    sl__huge_free(c->mem, c->bytes);
    free(c);
}

/* Sets of shard i: i, i + SHARDS, ... (invariant 3). */
static void clear_shard(sl__rowcache *c, int i)
{
    shard *sh = &c->sh[i];
    pthread_mutex_lock(&sh->mu);
    if (sh->dirty) /* untouched pages stay unresident */
        for (uint64_t s = (uint64_t)i; s < c->nsets; s += SHARDS)
            memset(c->mem + (size_t)s * WAYS * c->slot, 0, WAYS * c->slot);
    sh->dirty = false;
    pthread_mutex_unlock(&sh->mu);
}

void sl__rowcache_clear(sl__rowcache *c)
{
    if (!c) return;
    for (int i = 0; i < SHARDS; i++) clear_shard(c, i);
}

void sl__rowcache_sync(sl__rowcache *c, uint64_t gen)
{
    if (atomic_load_explicit(&c->gen, memory_order_acquire) == gen) return;
    pthread_mutex_lock(&c->sync_mu);
    if (atomic_load_explicit(&c->gen, memory_order_relaxed) != gen) {
        sl__rowcache_clear(c);
        atomic_store_explicit(&c->gen, gen, memory_order_release);
    }
    pthread_mutex_unlock(&c->sync_mu);
}

size_t sl__rowcache_bytes(const sl__rowcache *c) { return c ? c->bytes : 0; }

size_t sl__rowcache_slots(const sl__rowcache *c)
{
    return c ? (size_t)c->nsets * WAYS : 0;
}

uint64_t sl__rowcache_hash(const void *key, size_t klen)
{
    uint64_t h = 0;
    if (klen == 8) { /* an INT64 key, big-endian: hashed as the number, as
                      * the memory table does (read as little-endian, the
                      * small ids of a cell table differed in one top byte
                      * and six of 100 shared a set) */
        const unsigned char *b = key;
        for (int i = 0; i < 8; i++) h = h << 8 | b[i];
        h = sl__table_hash_i64((int64_t)h);
    } else {
        h = sl__table_hash_str(key, klen);
    }
    return h | 1; /* its low 32 bits, the tag, are never 0: invariant 1 */
}

static uint64_t set_index(const sl__rowcache *c, uint64_t h)
{
    return (uint64_t)(((unsigned __int128)h * c->nsets) >> 64);
}

static unsigned char *set_of(const sl__rowcache *c, uint64_t h)
{
    return c->mem + (size_t)set_index(c, h) * WAYS * c->slot;
}

void sl__rowcache_prefetch(const sl__rowcache *c, uint64_t h)
{
    const unsigned char *s = set_of(c, h);
    for (size_t o = 0; o < WAYS * c->slot; o += 64) __builtin_prefetch(s + o);
    __builtin_prefetch(s + WAYS * c->slot - 1);
}

static slot_hdr hdr_at(const unsigned char *p)
{
    slot_hdr h;
    memcpy(&h, p, sizeof h);
    return h;
}

static bool ref_get(const unsigned char *p) { return (hdr_at(p).klen & REF_BIT) != 0; }

static void ref_set(unsigned char *p, bool on)
{
    slot_hdr h = hdr_at(p);
    h.klen = (uint16_t)((h.klen & KLEN_MASK) | (on ? REF_BIT : 0));
    memcpy(p, &h, sizeof h);
}

/* The way of set s holding key, or -1. */
static int find(const sl__rowcache *c, const unsigned char *s, uint32_t tag,
                const void *key, size_t klen)
{
    for (int w = 0; w < WAYS; w++) {
        const unsigned char *p = s + (size_t)w * c->slot;
        slot_hdr hd = hdr_at(p);
        if (hd.tag == tag && (hd.klen & KLEN_MASK) == klen &&
            (klen == 0 || memcmp(p + sizeof hd, key, klen) == 0))
            return w;
    }
    return -1;
}

size_t sl__rowcache_get(sl__rowcache *c, uint64_t h, const void *key,
                        size_t klen, char *val)
{
    shard *sh = &c->sh[set_index(c, h) % SHARDS];
    unsigned char *s = set_of(c, h);
    size_t r = SIZE_MAX;
    pthread_mutex_lock(&sh->mu);
    int w = find(c, s, (uint32_t)h, key, klen);
    if (w >= 0) {
        const unsigned char *p = s + (size_t)w * c->slot;
        uint16_t vl = hdr_at(p).vlen;
        r = vl == ABSENT ? SL__ROWCACHE_ABSENT : vl;
        if (vl != ABSENT && vl) memcpy(val, p + sizeof(slot_hdr) + klen, vl);
        if (!ref_get(p)) ref_set(s + (size_t)w * c->slot, true);
        sh->n.hits++;
    } else {
        sh->n.misses++;
    }
    pthread_mutex_unlock(&sh->mu);
    return r;
}

void sl__rowcache_put(sl__rowcache *c, uint64_t h, const void *key, size_t klen,
                      const void *val, size_t vlen)
{
    shard *sh = &c->sh[set_index(c, h) % SHARDS];
    pthread_mutex_lock(&sh->mu);
    size_t room = vlen == SL__ROWCACHE_ABSENT ? 0 : vlen;
    if (klen + room > c->data) { /* invariant 2 */
        sh->n.too_large++;
        pthread_mutex_unlock(&sh->mu);
        return;
    }
    unsigned char *s = set_of(c, h);
    int w = find(c, s, (uint32_t)h, key, klen); /* the key itself */
    for (int i = 0; i < WAYS && w < 0; i++) /* or a free slot */
        if (hdr_at(s + (size_t)i * c->slot).tag == 0) w = i;
    if (w < 0) { /* or the first unreferenced way from a hash-chosen one */
        int start = (int)((h >> 40) % WAYS);
        for (int i = 0; i < WAYS && w < 0; i++) {
            int x = (start + i) % WAYS;
            if (!ref_get(s + (size_t)x * c->slot)) w = x;
        }
        if (w < 0) { /* all referenced: a new sweep */
            for (int i = 0; i < WAYS; i++) ref_set(s + (size_t)i * c->slot, false);
            w = start;
        }
        sh->n.evictions++;
    }
    unsigned char *p = s + (size_t)w * c->slot;
    /* unreferenced until its first hit */
    slot_hdr hd = {.tag = (uint32_t)h,
                   .vlen = (uint16_t)(room == vlen ? vlen : ABSENT),
                   .klen = (uint16_t)klen};
    memcpy(p, &hd, sizeof hd);
    if (klen) memcpy(p + sizeof hd, key, klen);
    if (room) memcpy(p + sizeof hd + klen, val, room);
    sh->n.inserts++;
    sh->dirty = true;
    pthread_mutex_unlock(&sh->mu);
}

void sl__rowcache_stats(sl__rowcache *c, sl__rowcache_counts *out)
{
    *out = (sl__rowcache_counts){0};
    for (int i = 0; c && i < SHARDS; i++) {
        pthread_mutex_lock(&c->sh[i].mu);
        const sl__rowcache_counts *n = &c->sh[i].n;
        out->hits += n->hits;
        out->misses += n->misses;
        out->inserts += n->inserts;
        out->evictions += n->evictions;
        out->too_large += n->too_large;
        pthread_mutex_unlock(&c->sh[i].mu);
    }
}
