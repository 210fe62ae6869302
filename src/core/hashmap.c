/* hashmap.c — the open-addressing containers of hashmap.h.
 *
 * Both use linear probing over a power-of-two table kept at most 3/4 full
 * and double it when an insert would pass that. Neither supports deletion:
 * operator state only grows until a window fires and the whole container is
 * dropped, and without deletion there are no tombstones to manage.
 *
 * sl__set64 stores its first few keys inline, sorted, then keys in the
 * slots themselves (0 = empty, key 0 is a flag).
 * sl__bmap stores 8-byte slots {hash tag, entry index} pointing into entries
 * kept in chunks of doubling size, so growing the table rehashes 8-byte slots
 * from the stored hashes and never moves an entry, a value or a key. Short
 * keys are kept in their entry, longer ones in separate key chunks.
 */
#include "hashmap.h"

#include <stdlib.h>
#include <string.h>

/* ---- sl__set64 ------------------------------------------------------------ */
#define SET_MIN_LG 3

void sl__set64_init(sl__set64 *s) { memset(s, 0, sizeof *s); }

void sl__set64_close(sl__set64 *s)
{
    if (s->lg) free(s->slots);
    memset(s, 0, sizeof *s);
}

void sl__set64_clear(sl__set64 *s) { sl__set64_close(s); }

static void set_place(uint64_t *slots, size_t mask, uint64_t k)
{
    size_t i = sl__mix64(k) & mask;
    while (slots[i] != 0) i = (i + 1) & mask;
    slots[i] = k;
}

static void set_grow(sl__set64 *s)
{
    uint8_t lg = s->lg ? (uint8_t)(s->lg + 1) : SET_MIN_LG;
    SL_ASSERT(lg <= 32); /* n is a uint32_t */
    size_t cap = (size_t)1 << lg, mask = cap - 1;
    uint64_t *slots = sl__xcalloc(cap, sizeof *slots);
    if (s->lg) {
        size_t old = (size_t)1 << s->lg;
        for (size_t i = 0; i < old; i++)
            if (s->slots[i]) set_place(slots, mask, s->slots[i]);
        free(s->slots);
    } else {
        for (uint32_t i = 0; i < s->n; i++) set_place(slots, mask, s->small[i]);
    }
    s->slots = slots;
    s->lg = lg;
}

int sl__set64_insert_any(sl__set64 *s, uint64_t k)
{
    if (k == 0) {
        int fresh = !s->has_zero;
        s->has_zero = 1;
        return fresh;
    }
    if (!s->lg) {
        uint32_t i = 0;
        while (i < s->n && s->small[i] < k) i++;
        if (i < s->n && s->small[i] == k) return 0;
        if (s->n < SL__SET64_SMALL) {
            memmove(&s->small[i + 1], &s->small[i], (s->n - i) * sizeof *s->small);
            s->small[i] = k;
            s->n++;
            return 1;
        }
    } else {
        size_t mask = ((size_t)1 << s->lg) - 1;
        size_t i = sl__mix64(k) & mask;
        for (;;) {
            uint64_t v = s->slots[i];
            if (v == k) return 0;
            if (v == 0) break;
            i = (i + 1) & mask;
        }
        if (((uint64_t)s->n + 1) * 4 <= ((uint64_t)3 << s->lg)) {
            s->slots[i] = k;
            s->n++;
            return 1;
        }
    }
    set_grow(s);
    set_place(s->slots, ((size_t)1 << s->lg) - 1, k);
    s->n++;
    return 1;
}

bool sl__set64_contains(const sl__set64 *s, uint64_t k)
{
    if (k == 0) return s->has_zero;
    if (!s->lg) {
        for (uint32_t i = 0; i < s->n; i++)
            if (s->small[i] == k) return true;
        return false;
    }
    size_t mask = ((size_t)1 << s->lg) - 1;
    for (size_t i = sl__mix64(k) & mask;; i = (i + 1) & mask) {
        if (s->slots[i] == k) return true;
        if (s->slots[i] == 0) return false;
    }
}

/* Position 0 stands for key 0, position i + 1 for slot (or inline key) i. */
size_t sl__set64_export_le(const sl__set64 *s, unsigned char *out)
{
    size_t n = 0;
    uint64_t v;
    if (s->has_zero) {
        memset(out, 0, 8);
        n++;
    }
    const uint64_t *keys = s->lg ? s->slots : s->small;
    const size_t cap = s->lg ? (size_t)1 << s->lg : s->n;
    for (size_t i = 0; i < cap; i++) {
        if ((v = keys[i]) == 0) continue;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(out + 8 * n, &v, 8);
#else
        for (int b = 0; b < 8; b++) out[8 * n + b] = (unsigned char)(v >> (8 * b));
#endif
        n++;
    }
    return n;
}

bool sl__set64_next(const sl__set64 *s, size_t *it, uint64_t *k)
{
    if (*it == 0) {
        *it = 1;
        if (s->has_zero) {
            *k = 0;
            return true;
        }
    }
    if (!s->lg) {
        if (*it - 1 >= s->n) return false;
        *k = s->small[*it - 1];
        (*it)++;
        return true;
    }
    size_t cap = (size_t)1 << s->lg;
    while (*it - 1 < cap) {
        uint64_t v = s->slots[*it - 1];
        (*it)++;
        if (v) {
            *k = v;
            return true;
        }
    }
    return false;
}

size_t sl__set64_mem(const sl__set64 *s)
{
    return s->lg ? ((size_t)1 << s->lg) * sizeof(uint64_t) : 0;
}

/* ---- sl__bmap ------------------------------------------------------------- */
#define BMAP_CHUNK0_LG 6 /* the first chunk holds 64 entries */
/* Keys up to this many bytes live in the entry, after the value: comparing
 * a probed key then touches the lines the caller reads the value from,
 * rather than one more line elsewhere. */
#define BMAP_INLINE_KEY 40
#define BMAP_MIN_SLOTS 16
#define KEYS_CHUNK 65536

/* Every entry starts with this header; the value follows at offset 24. */
typedef struct {
    uint64_t hash;
    const uint8_t *key;
    uint32_t len;
    uint32_t pad;
} entry_hdr;

struct sl__bmap_keys {
    sl__bmap_keys *next;
    size_t used, size;
    uint8_t data[];
};

void sl__bmap_init(sl__bmap *m, size_t val_size)
{
    SL_ASSERT(val_size <= UINT32_MAX / 2);
    memset(m, 0, sizeof *m);
    m->vsize = (uint32_t)((val_size + 7) & ~(size_t)7);
    m->stride = (uint32_t)(sizeof(entry_hdr) + m->vsize + BMAP_INLINE_KEY);
}

void sl__bmap_close(sl__bmap *m)
{
    free(m->slots);
    for (int c = 0; c < SL__BMAP_CHUNKS; c++) free(m->chunks[c]);
    for (sl__bmap_keys *k = m->keys, *next; k; k = next) {
        next = k->next;
        free(k);
    }
    sl__bmap_init(m, m->vsize);
}

void sl__bmap_clear(sl__bmap *m) { sl__bmap_close(m); }

/* Entry index -> (chunk, offset): chunk c starts at index 64 * (2^c - 1). */
static inline entry_hdr *bmap_entry(const sl__bmap *m, uint32_t i)
{
    uint64_t q = ((uint64_t)i >> BMAP_CHUNK0_LG) + 1;
    int c = 63 - __builtin_clzll(q);
    uint64_t off = i - ((((uint64_t)1 << c) - 1) << BMAP_CHUNK0_LG);
    return (entry_hdr *)(m->chunks[c] + off * m->stride);
}

static inline bool entry_eq(const entry_hdr *e, const void *key, size_t len,
                            uint64_t h)
{
    return e->hash == h && e->len == len && sl__bytes_eq(e->key, key, len);
}

void sl__bmap_prefetch_entry(const sl__bmap *m, uint64_t h)
{
    if (!m->slots) return;
    sl__bmap_slot s = m->slots[h & m->mask];
    if (s.idx && s.tag == (uint32_t)(h >> 32)) {
        const char *e = (const char *)bmap_entry(m, s.idx - 1);
        __builtin_prefetch(e);
        __builtin_prefetch(e + m->stride - 1);
    }
}

void *sl__bmap_find(const sl__bmap *m, const void *key, size_t len,
                    uint64_t h)
{
    if (!m->slots) return NULL;
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        sl__bmap_slot s = m->slots[i];
        if (s.idx == 0) return NULL;
        if (s.tag == tag) {
            entry_hdr *e = bmap_entry(m, s.idx - 1);
            if (entry_eq(e, key, len, h)) return e + 1;
        }
    }
}

static void bmap_grow(sl__bmap *m)
{
    size_t cap = m->slots ? ((size_t)m->mask + 1) * 2 : BMAP_MIN_SLOTS;
    SL_ASSERT(cap <= ((size_t)1 << 32));
    size_t mask = cap - 1;
    sl__bmap_slot *slots = sl__xcalloc(cap, sizeof *slots);
    for (uint32_t j = 0; j < m->n; j++) {
        uint64_t h = bmap_entry(m, j)->hash;
        size_t i = h & mask;
        while (slots[i].idx) i = (i + 1) & mask;
        slots[i].tag = (uint32_t)(h >> 32);
        slots[i].idx = j + 1;
    }
    m->mem += (cap - (m->slots ? (size_t)m->mask + 1 : 0)) * sizeof *slots;
    free(m->slots);
    m->slots = slots;
    m->mask = (uint32_t)mask;
}

void sl__bmap_reserve(sl__bmap *m, uint32_t n)
{
    if (m->n || m->slots) return;
    size_t cap = BMAP_MIN_SLOTS;
    while ((uint64_t)n * 4 > (uint64_t)cap * 3) cap *= 2;
    m->slots = sl__xcalloc(cap, sizeof *m->slots);
    m->mask = (uint32_t)(cap - 1);
    m->mem += cap * sizeof *m->slots;
}

static const uint8_t *bmap_copy_key(sl__bmap *m, entry_hdr *e, const void *key,
                                    size_t len)
{
    if (len <= BMAP_INLINE_KEY) {
        uint8_t *p = (uint8_t *)(e + 1) + m->vsize;
        if (len) memcpy(p, key, len);
        return p;
    }
    sl__bmap_keys *k = m->keys;
    if (!k || k->size - k->used < len) {
        size_t size = len > KEYS_CHUNK ? len : KEYS_CHUNK;
        /* A key bigger than a chunk gets its own chunk behind the head so
         * the head keeps its free space. */
        sl__bmap_keys *nk = sl__xmalloc(sizeof *nk + size);
        nk->used = 0;
        nk->size = size;
        m->mem += sizeof *nk + size;
        if (k && size > KEYS_CHUNK) {
            nk->next = k->next;
            k->next = nk;
        } else {
            nk->next = k;
            m->keys = nk;
        }
        k = nk;
    }
    uint8_t *p = k->data + k->used;
    memcpy(p, key, len);
    k->used += len;
    return p;
}

void *sl__bmap_upsert(sl__bmap *m, const void *key, size_t len, uint64_t h,
                      bool *is_new)
{
    SL_ASSERT(len <= UINT32_MAX);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t i = 0;
    if (m->slots) {
        for (i = h & m->mask;; i = (i + 1) & m->mask) {
            sl__bmap_slot s = m->slots[i];
            if (s.idx == 0) break;
            if (s.tag == tag) {
                entry_hdr *e = bmap_entry(m, s.idx - 1);
                if (entry_eq(e, key, len, h)) {
                    if (is_new) *is_new = false;
                    return e + 1;
                }
            }
        }
    }
    SL_ASSERT(m->n < UINT32_MAX);
    if (!m->slots || ((uint64_t)m->n + 1) * 4 > ((uint64_t)m->mask + 1) * 3) {
        bmap_grow(m);
        for (i = h & m->mask; m->slots[i].idx; i = (i + 1) & m->mask)
            ;
    }
    uint32_t idx = m->n;
    uint64_t q = ((uint64_t)idx >> BMAP_CHUNK0_LG) + 1;
    int c = 63 - __builtin_clzll(q);
    if (!m->chunks[c]) {
        size_t bytes = ((size_t)1 << (c + BMAP_CHUNK0_LG)) * m->stride;
        m->chunks[c] = sl__xmalloc(bytes);
        m->mem += bytes;
    }
    entry_hdr *e = bmap_entry(m, idx);
    e->hash = h;
    e->key = bmap_copy_key(m, e, key, len);
    e->len = (uint32_t)len;
    e->pad = 0;
    memset(e + 1, 0, m->vsize);
    m->slots[i].tag = tag;
    m->slots[i].idx = idx + 1;
    m->n++;
    if (is_new) *is_new = true;
    return e + 1;
}

void *sl__bmap_at(const sl__bmap *m, uint32_t i, const uint8_t **key,
                  uint32_t *len)
{
    SL_ASSERT(i < m->n);
    entry_hdr *e = bmap_entry(m, i);
    if (key) *key = e->key;
    if (len) *len = e->len;
    return e + 1;
}

uint64_t sl__bmap_hash_at(const sl__bmap *m, uint32_t i)
{
    SL_ASSERT(i < m->n);
    return bmap_entry(m, i)->hash;
}

void sl__set64_copy(sl__set64 *dst, const sl__set64 *src)
{
    *dst = *src;
    if (!src->lg) return; /* the keys are inline */
    size_t bytes = ((size_t)1 << src->lg) * sizeof *src->slots;
    dst->slots = sl__xmalloc(bytes);
    memcpy(dst->slots, src->slots, bytes);
}
