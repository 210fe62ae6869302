/* hashmap.h — open-addressing hash containers for operator state.
 *
 * sl__set64: a set of uint64 keys (exact distinct counts). Up to
 *   SL__SET64_SMALL keys live in the 40-byte struct itself (most groups of a
 *   window see only a few distinct values, and then cost no allocation);
 *   beyond, 8 bytes a slot, at most 3/4 full, so 10.7–21 bytes a key.
 * sl__bmap:  a map from byte strings to fixed-size values (window groups,
 *   exact distinct counts of strings). The caller hashes the key once
 *   (sl__hash_bytes) and passes the hash in, so it can prefetch the slot
 *   before probing.
 *
 * Both are caller-allocated (_init/_close), owned by one task and not
 * thread-safe. Neither has a hard cap of its own: the operators that own
 * them account for memory with the _mem functions.
 */
#ifndef SL_HASHMAP_H
#define SL_HASHMAP_H

#include <string.h>

#include "core.h"

/* ---- set of uint64 -------------------------------------------------------- */
#define SL__SET64_SMALL 4 /* keys kept inline, sorted, before any allocation */
typedef struct {
    union {
        uint64_t *slots;                 /* lg > 0: 2^lg slots, 0 = empty */
        uint64_t small[SL__SET64_SMALL]; /* lg == 0: the n keys, ascending */
    };
    uint32_t n;       /* keys held (key 0 is not among them) */
    uint8_t lg;       /* log2 of the slot count; 0 = the keys are inline */
    uint8_t has_zero; /* key 0 is a member (kept apart: 0 marks empty) */
} sl__set64;

/* An all-zero sl__set64 is a valid empty set, so init is a memset. */
void sl__set64_init(sl__set64 *s);
/* Frees the slots; the set is empty (and usable) afterwards. */
void sl__set64_close(sl__set64 *s);
/* Removes every key and frees the slots. */
void sl__set64_clear(sl__set64 *s);
/* Adds k; returns 1 if it was new, 0 if it was there already. The inline
 * part handles a small set with room (most sets of a window, and no call
 * in the per-record loop); the rest is sl__set64_insert_any. */
int sl__set64_insert_any(sl__set64 *s, uint64_t k);
static inline int sl__set64_insert(sl__set64 *s, uint64_t k)
{
    const uint32_t n = s->n;
    if (s->lg || k == 0 || n == SL__SET64_SMALL) return sl__set64_insert_any(s, k);
    for (uint32_t j = 0; j < n; j++)
        if (s->small[j] == k) return 0;
    uint32_t j = n; /* insertion keeps the inline keys ascending */
    while (j > 0 && s->small[j - 1] > k) {
        s->small[j] = s->small[j - 1];
        j--;
    }
    s->small[j] = k;
    s->n = n + 1;
    return 1;
}
bool sl__set64_contains(const sl__set64 *s, uint64_t k);
static inline uint64_t sl__set64_count(const sl__set64 *s)
{
    return (uint64_t)s->n + s->has_zero;
}
/* Iterates in unspecified (hash) order: start with *it = 0; returns false
 * when done. The set must not change during an iteration. */
bool sl__set64_next(const sl__set64 *s, size_t *it, uint64_t *k);
/* Bytes allocated (not counting the struct). */
size_t sl__set64_mem(const sl__set64 *s);
/* Writes every key as 8 little-endian bytes to out (room for
 * sl__set64_count(s) keys), in sl__set64_next's order, in one pass over
 * the slots (snapshots of large distinct-count sets). Returns the keys
 * written. */
size_t sl__set64_export_le(const sl__set64 *s, unsigned char *out);
/* dst becomes an independent copy of src with the same slots (so the same
 * iteration and export order); one allocation and a memcpy. */
void sl__set64_copy(sl__set64 *dst, const sl__set64 *src);
/* Hints the cache with the slot k would probe first. */
static inline void sl__set64_prefetch(const sl__set64 *s, uint64_t k)
{
    if (s->lg)
        __builtin_prefetch(&s->slots[sl__mix64(k) &
                                     (((size_t)1 << s->lg) - 1)]);
}

/* ---- map from byte strings to fixed-size values -------------------------- */
typedef struct {
    uint32_t tag; /* high 32 bits of the key's hash */
    uint32_t idx; /* entry index + 1; 0 = empty slot */
} sl__bmap_slot;

#define SL__BMAP_CHUNKS 27 /* chunk c holds 64 << c entries: > 2^32 in all */

typedef struct sl__bmap_keys sl__bmap_keys;
typedef struct {
    sl__bmap_slot *slots; /* mask + 1 slots, or NULL before the first insert */
    uint32_t mask;
    uint32_t n;      /* entries */
    uint32_t vsize;  /* value bytes as given to init, rounded up to 8 */
    uint32_t stride; /* entry header + value + inline key */
    uint8_t *chunks[SL__BMAP_CHUNKS]; /* entries, never moved */
    sl__bmap_keys *keys;              /* key bytes, never moved */
    size_t mem;                       /* bytes allocated */
} sl__bmap;

/* Whether a and b hold the same len bytes: 8 bytes or more compared a word
 * at a time, the last word overlapping the one before. Keys and values
 * here are short, and a call to memcmp cost more than the comparison
 * (bench/RESULTS.md, branch win). */
static inline bool sl__bytes_eq(const void *a, const void *b, size_t len)
{
    const uint8_t *pa = a, *pb = b;
    uint64_t x, y;
    if (len < 8) return len == 0 || memcmp(pa, pb, len) == 0;
    for (size_t i = 0; i + 8 < len; i += 8) {
        memcpy(&x, pa + i, 8);
        memcpy(&y, pb + i, 8);
        if (x != y) return false;
    }
    memcpy(&x, pa + len - 8, 8);
    memcpy(&y, pb + len - 8, 8);
    return x == y;
}

/* Values are val_size bytes, 8-byte aligned, zero-filled when inserted. */
void sl__bmap_init(sl__bmap *m, size_t val_size);
void sl__bmap_close(sl__bmap *m);
/* Removes every entry and frees all memory; val_size is kept. */
void sl__bmap_clear(sl__bmap *m);

/* The value for key (len bytes, hash h = the caller's hash of the key,
 * the same for every call with equal keys), or NULL. */
void *sl__bmap_find(const sl__bmap *m, const void *key, size_t len,
                    uint64_t h);
/* The value for key, inserting a zero-filled one (and a copy of the key)
 * if absent; *is_new (may be NULL) tells which. Keys are at most
 * UINT32_MAX bytes. Pointers to values and keys stay valid until
 * sl__bmap_clear or sl__bmap_close: entries never move. */
void *sl__bmap_upsert(sl__bmap *m, const void *key, size_t len, uint64_t h,
                      bool *is_new);

static inline uint32_t sl__bmap_count(const sl__bmap *m) { return m->n; }
/* Sizes an empty map's slot table for n entries, so the first n inserts
 * never rehash (a window's map, sized like the window before it). A map
 * with entries is left as it is. */
void sl__bmap_reserve(sl__bmap *m, uint32_t n);
/* Entry i (0 <= i < count) in insertion order: returns its value and sets
 * *key / *len (either may be NULL) to the map's copy of the key. */
void *sl__bmap_at(const sl__bmap *m, uint32_t i, const uint8_t **key,
                  uint32_t *len);
uint64_t sl__bmap_hash_at(const sl__bmap *m, uint32_t i);
static inline size_t sl__bmap_mem(const sl__bmap *m) { return m->mem; }
/* Hints the cache with the slot a key of hash h would probe first. */
static inline void sl__bmap_prefetch(const sl__bmap *m, uint64_t h)
{
    if (m->slots) __builtin_prefetch(&m->slots[h & m->mask]);
}
/* Hints the cache with the entry (value and inline key) that slot points
 * to if its tag matches h. Reads the slot: prefetch it some keys before. */
void sl__bmap_prefetch_entry(const sl__bmap *m, uint64_t h);

#endif
