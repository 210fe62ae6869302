/* table.c — in-memory lookup tables: rows column-wise in chunks (batches
 * of SL__TABLE_CHUNK rows, doubling up to SL__TABLE_CHUNK_MAX) plus an
 * open-addressing index (linear probing, load factor <= 3/4: 16-byte
 * slots, so 10 M keys take 256 MiB) from key to (chunk, row). The index and the large chunks
 * live on huge pages (sl__huge_alloc), as every probe and every gather of
 * a join lands at random in them and would otherwise miss the TLB. Equal
 * strings of a column share one copy (intern) while the column has few
 * distinct values. Tables
 * are built single-threaded by sl__table_append and never change
 * afterwards, so lookups need no locks; a refreshed table gets changed
 * rows as an overlay, a whole new table published atomically
 * (sl__table_set_overlay). They are not snapshotted: a job
 * reloads its tables at start. With state.backend = rocksdb the rows go
 * to RocksDB instead (tabledisk.c) and the chunks and index stay empty.
 *
 * Invariants:
 * 1. Every stored row has a non-NULL key (sl__table_append skips others).
 * 2. The index holds exactly one slot per distinct key, pointing to the last
 *    row appended with that key (index_put replaces).
 * 3. Slot key field: the key itself for INT64 tables, the key's hash for
 *    STRING tables (index_put, probe_*).
 * 4. A slot is free when its chunk field is 0, else it points to row `row`
 *    of chunk `chunk - 1`; so a zero-filled index is empty.
 * 5. A projection (sl__table_proj) of an 8-byte column holds, for every
 *    key whose row has a non-NULL value there, the pair (key, value) in a
 *    slot of its own open-addressing array (hashed as the index), so a join
 *    reading only that column touches one cache line per probe; key 0 (the
 *    free mark) is kept beside the array. Built once per column on first
 *    request (proj_build, under proj_lock) from the finished table, which
 *    therefore must not change afterwards (sl__table_append asserts it). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/hashmap.h"
#include "state/dtab.h"
#include "state/state.h"
#include "state/table_int.h"

#define STR_SEED 0x7461626c65ULL
#define INTERN_SEED SL__TABLE_INTERN_SEED
#define INTERN_MAX SL__TABLE_INTERN_MAX

slot *sl__table_slots_new(uint64_t n) { return sl__huge_alloc(n * sizeof(slot)); }
static slot *slots_new(uint64_t n) { return sl__table_slots_new(n); }

sl_table *sl__table_new(const sl_schema *s, int key_col)
{
    if (!s || key_col < 0 || key_col >= s->n) return NULL;
    sl_type kt = s->cols[key_col].type;
    if (kt != SL_INT64 && kt != SL_STRING) return NULL;
    sl_table *t = sl__xcalloc(1, sizeof *t);
    t->schema = sl__schema_copy(s);
    t->key_col = key_col;
    t->str_key = kt == SL_STRING;
    t->mask = 1023;
    t->slots = slots_new(t->mask + 1);
    pthread_mutex_init(&t->proj_lock, NULL);
    return t;
}

sl_table *sl__table_new_on(const sl_schema *s, int key_col,
                           const sl__state_conf *sc, char *errstr,
                           size_t errstr_size)
{
    sl_table *t = sl__table_new(s, key_col);
    if (!t) {
        sl__err(errstr, errstr_size, SL_EINVAL, "table: bad key column");
        return NULL;
    }
    if (!sc || sc->backend != SL__STATE_ROCKSDB) return t;
    t->disk = sl__dtab_new(t->schema, key_col, sc, errstr, errstr_size);
    if (!t->disk) {
        sl_table_free(t);
        return NULL;
    }
    return t;
}

bool sl__table_on_disk(const sl_table *t) { return t && t->disk; }

int sl__table_fetch(const sl_table *t, const sl_batch *b, int bkey,
                    sl_batch *dst, uint32_t *row_of, char *errstr,
                    size_t errstr_size)
{
    if (!t->disk)
        return sl__err(errstr, errstr_size, SL_EINTERNAL,
                       "table: fetch on a memory table");
    return sl__dtab_fetch(t->disk, NULL, b, bkey, dst, row_of, NULL, errstr,
                          errstr_size);
}

int sl__table_fetch_cached(const sl_table *t, sl__rowcache *c,
                           const sl_batch *b, int bkey, sl_batch *dst,
                           uint32_t *row_of, sl__rowcache_counts *n,
                           char *errstr, size_t errstr_size)
{
    if (!t->disk)
        return sl__err(errstr, errstr_size, SL_EINTERNAL,
                       "table: fetch on a memory table");
    return sl__dtab_fetch(t->disk, c, b, bkey, dst, row_of, n, errstr,
                          errstr_size);
}

sl__rowcache *sl__table_cache(const sl_table *t)
{
    return t && t->disk ? sl__dtab_cache(t->disk) : NULL;
}

int sl__table_seal(sl_table *t, char *errstr, size_t errstr_size)
{
    return t && t->disk ? sl__dtab_seal(t->disk, &t->nkeys, errstr, errstr_size)
                        : 0;
}

uint64_t sl__table_disk_bytes(const sl_table *t)
{
    return t && t->disk ? sl__dtab_disk_bytes(t->disk) : 0;
}

void sl_table_free(sl_table *t)
{
    if (!t) return;
    sl__dtab_free(t->disk);
    if (t->on_free) t->on_free(t->on_free_arg);
    if (t->ext_free) t->ext_free(t->ext);
    sl_table_free(atomic_load(&t->overlay));
    for (size_t i = 0; i < t->nretired; i++) sl_table_free(t->retired[i]);
    free(t->retired);
    for (size_t i = 0; i < t->nchunks; i++) sl__batch_free(t->chunks[i]);
    free(t->chunks);
    sl__huge_free(t->slots, (t->mask + 1) * sizeof(slot));
    for (int c = 0; c < SL_MAX_COLS; c++) {
        sl__tproj *pj = atomic_load(&t->proj[c]);
        if (pj) sl__huge_free(pj->s, (pj->mask + 1) * sizeof(pslot));
        free(pj);
    }
    pthread_mutex_destroy(&t->proj_lock);
    for (int c = 0; c < SL_MAX_COLS; c++) {
        if (!t->intern[c]) continue;
        sl__bmap_close(t->intern[c]);
        free(t->intern[c]);
    }
    sl_schema_free(t->schema);
    free(t);
}

size_t sl_table_rows(const sl_table *t) { return t ? t->nkeys : 0; }
size_t sl__table_stored(const sl_table *t) { return t ? t->stored : 0; }
const sl_schema *sl__table_schema(const sl_table *t) { return t ? t->schema : NULL; }
int sl__table_key_col(const sl_table *t) { return t ? t->key_col : -1; }
bool sl__table_has_nulls(const sl_table *t, int col) { return t->nulls[col]; }

uint64_t sl__table_hash_i64(int64_t key) { return sl__mix64((uint64_t)key); }

uint64_t sl__table_hash_str(const char *key, size_t len)
{
    return sl__hash_bytes(key, len, STR_SEED);
}

void sl__table_prefetch(const sl_table *t, uint64_t hash)
{
    __builtin_prefetch(&t->slots[hash & t->mask]);
}

static const sl_str *slot_key_str(const sl_table *t, const slot *s)
{
    const sl_batch *c = t->chunks[s->chunk - 1];
    return (const sl_str *)c->cols[t->key_col].data + s->row;
}

static int found(const sl_table *t, const slot *s, const sl_batch **chunk,
                 uint32_t *r)
{
    if (chunk) *chunk = t->chunks[s->chunk - 1];
    if (r) *r = s->row;
    return 1;
}

int sl__table_find_i64_h(const sl_table *t, int64_t key, uint64_t hash,
                         const sl_batch **chunk, uint32_t *row)
{
    if (t->str_key) return 0;
    for (uint64_t i = hash & t->mask;; i = (i + 1) & t->mask) {
        const slot *s = &t->slots[i];
        if (!s->chunk) return 0;
        if (s->k == (uint64_t)key) return found(t, s, chunk, row);
    }
}

int sl__table_find_str_h(const sl_table *t, const char *key, size_t len,
                         uint64_t hash, const sl_batch **chunk, uint32_t *row)
{
    if (!t->str_key) return 0;
    for (uint64_t i = hash & t->mask;; i = (i + 1) & t->mask) {
        const slot *s = &t->slots[i];
        if (!s->chunk) return 0;
        if (s->k != hash) continue;
        const sl_str *k = slot_key_str(t, s);
        if (k->len == len && (len == 0 || memcmp(k->ptr, key, len) == 0))
            return found(t, s, chunk, row);
    }
}

int sl__table_find_i64(const sl_table *t, int64_t key, const sl_batch **chunk,
                       uint32_t *row)
{
    return sl__table_find_i64_h(t, key, sl__table_hash_i64(key), chunk, row);
}

int sl__table_find_str(const sl_table *t, const char *key, size_t len,
                       const sl_batch **chunk, uint32_t *row)
{
    return sl__table_find_str_h(t, key, len, sl__table_hash_str(key, len), chunk,
                                row);
}

/* Hash of row `row`'s key, from the slot key field (invariant 3). */
static uint64_t slot_hash(const sl_table *t, const slot *s)
{
    return t->str_key ? s->k : sl__table_hash_i64((int64_t)s->k);
}

static void rehash(sl_table *t, uint64_t nmask)
{
    slot *ns = slots_new(nmask + 1);
    for (uint64_t i = 0; i <= t->mask; i++) {
        if (!t->slots[i].chunk) continue;
        uint64_t j = slot_hash(t, &t->slots[i]) & nmask;
        while (ns[j].chunk) j = (j + 1) & nmask;
        ns[j] = t->slots[i];
    }
    sl__huge_free(t->slots, (t->mask + 1) * sizeof(slot));
    t->slots = ns;
    t->mask = nmask;
}

static void grow(sl_table *t) { rehash(t, t->mask * 2 + 1); }

/* The slot key field (invariant 3) and hash of row r of chunk c. */
static void row_key(const sl_table *t, const sl_batch *c, uint32_t r,
                    uint64_t *k, uint64_t *h)
{
    if (t->str_key) {
        const sl_str *ks = (const sl_str *)c->cols[t->key_col].data + r;
        *k = *h = sl__table_hash_str(ks->ptr, ks->len);
    } else {
        *k = (uint64_t)((const int64_t *)c->cols[t->key_col].data)[r];
        *h = sl__table_hash_i64((int64_t)*k);
    }
}

/* Points the key of row r of chunk ci at it, replacing an earlier row with
 * the same key (invariant 2); k and h from row_key. */
static void index_put(sl_table *t, uint32_t ci, uint32_t r, uint64_t k,
                      uint64_t h)
{
    if ((t->nkeys + 1) * 4 > (t->mask + 1) * 3) grow(t);
    const sl_batch *c = t->chunks[ci];
    const sl_str *ks = t->str_key ? (const sl_str *)c->cols[t->key_col].data + r
                                  : NULL;
    for (uint64_t i = h & t->mask;; i = (i + 1) & t->mask) {
        slot *s = &t->slots[i];
        if (!s->chunk) {
            *s = (slot){.k = k, .chunk = ci + 1, .row = r};
            t->nkeys++;
            return;
        }
        if (s->k != k) continue;
        if (ks) {
            const sl_str *o = slot_key_str(t, s);
            if (o->len != ks->len || (ks->len && memcmp(o->ptr, ks->ptr, ks->len)))
                continue;
        }
        s->chunk = ci + 1; /* duplicate key: the last row wins */
        s->row = r;
        return;
    }
}

/* Indexes rows [base, base + m) of chunk ci in blocks: hash and prefetch
 * the slots of a block, then put them, so that the misses overlap. */
#define PUT_BLOCK 64
static void index_rows(sl_table *t, uint32_t ci, uint32_t base, uint32_t m)
{
    const sl_batch *c = t->chunks[ci];
    uint64_t k[PUT_BLOCK], h[PUT_BLOCK];
    for (uint32_t j0 = 0; j0 < m; j0 += PUT_BLOCK) {
        uint32_t n = m - j0 < PUT_BLOCK ? m - j0 : PUT_BLOCK;
        for (uint32_t j = 0; j < n; j++) {
            row_key(t, c, base + j0 + j, &k[j], &h[j]);
            __builtin_prefetch(&t->slots[h[j] & t->mask], 1);
        }
        for (uint32_t j = 0; j < n; j++) index_put(t, ci, base + j0 + j, k[j], h[j]);
    }
}

static int check_schema(const sl_table *t, const sl_schema *s, char *errstr,
                        size_t errstr_size)
{
    if (s->n != t->schema->n)
        return sl__err(errstr, errstr_size, SL_EINVAL,
                       "table: batch has %d columns, the table %d", s->n,
                       t->schema->n);
    for (int i = 0; i < s->n; i++)
        if (s->cols[i].type != t->schema->cols[i].type ||
            strcmp(s->cols[i].name, t->schema->cols[i].name) != 0)
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "table: batch column %d ('%s' %s) differs from the "
                           "table's ('%s' %s)", i, s->cols[i].name,
                           sl_type_name(s->cols[i].type),
                           t->schema->cols[i].name,
                           sl_type_name(t->schema->cols[i].type));
    return 0;
}

/* The table's copy of string v of column c: one copy shared by all equal
 * values while the column has at most INTERN_MAX distinct ones (areas,
 * genders: a join's strings then stay in a few cache lines), else a copy
 * in chunk's arena. */
sl_str sl__table_intern(sl_table *t, int c, sl_batch *chunk, sl_str v)
{
    if (v.len == 0) return (sl_str){"", 0};
    sl__bmap *m = t->intern[c];
    if (!m) {
        m = t->intern[c] = sl__xmalloc(sizeof *m);
        sl__bmap_init(m, sizeof(const char *));
    }
    if (sl__bmap_count(m) <= INTERN_MAX) {
        uint64_t h = sl__hash_bytes(v.ptr, v.len, INTERN_SEED);
        bool fresh = false;
        const char **canon = sl__bmap_count(m) < INTERN_MAX
                                 ? sl__bmap_upsert(m, v.ptr, v.len, h, &fresh)
                                 : sl__bmap_find(m, v.ptr, v.len, h);
        if (fresh) { /* the map's copy of the key never moves */
            const uint8_t *k;
            sl__bmap_at(m, sl__bmap_count(m) - 1, &k, NULL);
            *canon = (const char *)k;
        }
        if (canon) return (sl_str){*canon, v.len};
    }
    char *p = sl__arena_alloc(&chunk->arena, v.len);
    memcpy(p, v.ptr, v.len);
    return (sl_str){p, v.len};
}

/* Appends rows[0..m) of src to chunk dst. Unlike sl__batch_append, reads
 * the string of non-NULL rows only: decoders leave a NULL row's sl_str as
 * it was, which may point into memory the batch no longer owns. */
static void chunk_append(sl_table *t, sl_batch *dst, const sl_batch *src,
                         const uint32_t *rows, uint32_t m)
{
    uint32_t base = dst->n;
    SL_ASSERT(base + m <= dst->cap);
    for (uint32_t i = 0; i < m; i++) dst->kind[base + i] = src->kind[rows[i]];
    for (int c = 0; c < src->schema->n; c++) {
        const uint8_t *sv = src->cols[c].valid;
        uint8_t *dv = dst->cols[c].valid + base;
        for (uint32_t i = 0; i < m; i++) dv[i] = sv[rows[i]];
        switch (src->schema->cols[c].type) {
        case SL_BOOL: {
            const uint8_t *sd = src->cols[c].data;
            uint8_t *dd = (uint8_t *)dst->cols[c].data + base;
            for (uint32_t i = 0; i < m; i++) dd[i] = sd[rows[i]];
            break;
        }
        case SL_STRING: {
            const sl_str *sd = src->cols[c].data;
            sl_str *dd = (sl_str *)dst->cols[c].data + base;
            for (uint32_t i = 0; i < m; i++)
                dd[i] = sl__table_intern(t, c, dst, sv[rows[i]] ? sd[rows[i]] : (sl_str){"", 0});
            break;
        }
        default: {
            const int64_t *sd = src->cols[c].data;
            int64_t *dd = (int64_t *)dst->cols[c].data + base;
            for (uint32_t i = 0; i < m; i++) dd[i] = sd[rows[i]];
            break;
        }
        }
    }
    dst->n = base + m;
}

int sl__table_append(sl_table *t, const sl_batch *b, char *errstr,
                     size_t errstr_size)
{
    int rc = check_schema(t, b->schema, errstr, errstr_size);
    if (rc) return rc;
    for (int c = 0; c < SL_MAX_COLS; c++) /* invariant 5 */
        SL_ASSERT(!atomic_load_explicit(&t->proj[c], memory_order_relaxed));
    if (t->disk)
        return sl__dtab_append(t->disk, b, &t->stored, t->nulls, errstr,
                               errstr_size);
    if (t->nchunks + b->n / SL__TABLE_CHUNK + 2 >= UINT32_MAX)
        return sl__err(errstr, errstr_size, SL_EINVAL, "table: too many rows");
    const uint8_t *kv = b->cols[t->key_col].valid;
    uint32_t *rows = sl__xmalloc(sizeof(uint32_t) * (b->n ? b->n : 1));
    uint32_t i = 0;
    while (i < b->n) {
        sl_batch *c = t->nchunks ? t->chunks[t->nchunks - 1] : NULL;
        if (!c || c->n == c->cap) {
            if (t->nchunks == t->chunks_cap) {
                t->chunks_cap = t->chunks_cap ? 2 * t->chunks_cap : 16;
                t->chunks = sl__xrealloc(t->chunks,
                                         sizeof(*t->chunks) * t->chunks_cap);
            }
            /* chunks double from SL__TABLE_CHUNK rows, so a small table stays
             * small and a large one gets a few big chunks on huge pages */
            uint32_t cap = c ? c->cap : SL__TABLE_CHUNK;
            if (c && cap < SL__TABLE_CHUNK_MAX) cap *= 2;
            c = cap < SL__TABLE_CHUNK_MAX ? sl__batch_new(t->schema, cap)
                                          : sl__batch_new_huge(t->schema, cap);
            t->chunks[t->nchunks++] = c;
        }
        uint32_t room = c->cap - c->n, m = 0;
        for (; i < b->n && m < room; i++)
            if (kv[i]) rows[m++] = i; /* invariant 1 */
        uint32_t base = c->n;
        chunk_append(t, c, b, rows, m);
        for (int k = 0; k < t->schema->n; k++)
            for (uint32_t j = 0; j < m && !t->nulls[k]; j++)
                t->nulls[k] = !c->cols[k].valid[base + j];
        t->stored += m;
        index_rows(t, (uint32_t)(t->nchunks - 1), base, m);
    }
    free(rows);
    return 0;
}

/* ---- projections (invariant 5) ------------------------------------------ */
sl__tproj *sl__table_proj_build(const sl_table *t, int col)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i <= t->mask; i++) n += t->slots[i].chunk != 0;
    uint64_t size = 1024;
    while (size * 3 < n * 4) size *= 2; /* load <= 3/4, as the index */
    sl__tproj *pj = sl__xcalloc(1, sizeof *pj);
    pj->mask = size - 1;
    pj->s = sl__huge_alloc(size * sizeof(pslot)); /* zero-filled: empty */
    for (uint64_t i = 0; i <= t->mask; i++) {
        /* the rows lie at random in the chunks: fetch a few slots ahead */
        const slot *a = &t->slots[(i + 16) & t->mask];
        if (a->chunk) {
            const sl_batch *ac = t->chunks[a->chunk - 1];
            __builtin_prefetch((const char *)ac->cols[col].data + 8 * (size_t)a->row);
            __builtin_prefetch(ac->cols[col].valid + a->row);
        }
        const slot *s = &t->slots[i];
        if (!s->chunk) continue;
        const sl_batch *c = t->chunks[s->chunk - 1];
        if (!c->cols[col].valid[s->row]) continue; /* NULL: a miss gives NULL */
        uint64_t v;
        memcpy(&v, (const char *)c->cols[col].data + 8 * (size_t)s->row, 8);
        if (s->k == 0) {
            pj->zero = true;
            pj->zero_v = v;
            continue;
        }
        uint64_t j = sl__table_hash_i64((int64_t)s->k) & pj->mask;
        while (pj->s[j].k) j = (j + 1) & pj->mask;
        pj->s[j] = (pslot){s->k, v};
    }
    return pj;
}

const sl__tproj *sl__table_proj(const sl_table *t, int col)
{
    if (!sl__table_proj_col(t, col)) return NULL;
    sl_table *m = (sl_table *)t; /* a memo of the immutable table */
    sl__tproj *pj = atomic_load_explicit(&m->proj[col], memory_order_acquire);
    if (pj) return pj;
    pthread_mutex_lock(&m->proj_lock);
    pj = atomic_load_explicit(&m->proj[col], memory_order_acquire);
    if (!pj) {
        pj = sl__table_proj_build(t, col);
        atomic_store_explicit(&m->proj[col], pj, memory_order_release);
    }
    pthread_mutex_unlock(&m->proj_lock);
    return pj;
}

bool sl__table_proj_col(const sl_table *t, int col)
{
    if (!t || t->disk || t->str_key || col < 0 || col >= t->schema->n ||
        col == t->key_col)
        return false;
    sl_type ty = t->schema->cols[col].type;
    return ty == SL_INT64 || ty == SL_TIMESTAMP || ty == SL_FLOAT64;
}

void sl__tproj_free(sl__tproj *pj)
{
    if (pj) sl__huge_free(pj->s, (pj->mask + 1) * sizeof(pslot));
    free(pj);
}

void sl__tproj_prefetch(const sl__tproj *pj, uint64_t hash)
{
    __builtin_prefetch(&pj->s[hash & pj->mask]);
}

int sl__tproj_find(const sl__tproj *pj, int64_t key, uint64_t hash, uint64_t *v)
{
    if (key == 0) {
        *v = pj->zero_v;
        return pj->zero;
    }
    for (uint64_t i = hash & pj->mask;; i = (i + 1) & pj->mask) {
        const pslot *s = &pj->s[i];
        if (s->k == (uint64_t)key) {
            *v = s->v;
            return 1;
        }
        if (!s->k) return 0;
    }
}

size_t sl__tproj_bytes(const sl__tproj *pj)
{
    return pj ? (pj->mask + 1) * sizeof(pslot) : 0;
}

size_t sl__table_read_i64(const sl_table *t, int col, size_t *ordinal,
                          int64_t *key, uint64_t *val, uint8_t *valid, size_t max)
{
    if (!t || t->disk || t->str_key || col < 0 || col >= t->schema->n) return 0;
    sl_type ty = t->schema->cols[col].type;
    if (ty != SL_INT64 && ty != SL_TIMESTAMP && ty != SL_FLOAT64) return 0;
    size_t n = 0, base = 0, at = *ordinal;
    for (size_t c = 0; c < t->nchunks && n < max; c++) {
        const sl_batch *ch = t->chunks[c];
        if (at >= base + ch->n) {
            base += ch->n;
            continue;
        }
        const int64_t *k = ch->cols[t->key_col].data;
        const uint64_t *v = ch->cols[col].data;
        const uint8_t *ok = ch->cols[col].valid;
        for (uint32_t r = (uint32_t)(at - base); r < ch->n && n < max; r++, n++, at++) {
            key[n] = k[r];
            val[n] = v[r];
            valid[n] = ok[r];
        }
        base += ch->n;
    }
    *ordinal = at;
    return n;
}

void sl__table_reserve(sl_table *t, size_t n)
{
    if (!t || t->disk) return;
    uint64_t want = t->mask + 1;
    while (want * 3 < (uint64_t)n * 4) want *= 2; /* load <= 3/4, as index_put */
    /* one rehash into the final size instead of a doubling per power of
     * two on the way (each touching a fresh, zeroed table) */
    if (want > t->mask + 1) rehash(t, want - 1);
}

void sl__table_set_ext(sl_table *t, void *ext, void (*ext_free)(void *))
{
    t->ext = ext;
    t->ext_free = ext_free;
}

void *sl__table_ext(const sl_table *t) { return t ? t->ext : NULL; }

/* ---- refreshed tables ---------------------------------------------------- */
sl_table *sl__table_overlay(const sl_table *t)
{
    return atomic_load_explicit(&((sl_table *)t)->overlay, memory_order_acquire);
}

void sl__table_set_overlay(sl_table *t, sl_table *ov)
{
    sl_table *old = atomic_exchange_explicit(&t->overlay, ov, memory_order_acq_rel);
    if (!old) return;
    t->retired = sl__xrealloc(t->retired, (t->nretired + 1) * sizeof *t->retired);
    t->retired[t->nretired++] = old;
}

int sl__table_append_table(sl_table *dst, const sl_table *src, char *errstr,
                           size_t errstr_size)
{
    for (size_t i = 0; src && i < src->nchunks; i++) {
        int rc = sl__table_append(dst, src->chunks[i], errstr, errstr_size);
        if (rc) return rc;
    }
    return 0;
}

void sl__table_on_free(sl_table *t, void (*fn)(void *), void *arg)
{
    t->on_free = fn;
    t->on_free_arg = arg;
}

/* Whether row r of chunk a equals row q of chunk b (same schema). */
static bool same_row(const sl_table *t, const sl_batch *a, uint32_t r,
                     const sl_batch *b, uint32_t q)
{
    for (int c = 0; c < t->schema->n; c++) {
        bool va = a->cols[c].valid[r], vb = b->cols[c].valid[q];
        if (va != vb) return false;
        if (!va) continue;
        switch (t->schema->cols[c].type) {
        case SL_BOOL:
            if (((const uint8_t *)a->cols[c].data)[r] !=
                ((const uint8_t *)b->cols[c].data)[q])
                return false;
            break;
        case SL_STRING: {
            const sl_str *x = (const sl_str *)a->cols[c].data + r;
            const sl_str *y = (const sl_str *)b->cols[c].data + q;
            if (x->len != y->len || (x->len && memcmp(x->ptr, y->ptr, x->len)))
                return false;
            break;
        }
        default:
            if (memcmp((const char *)a->cols[c].data + 8 * (size_t)r,
                       (const char *)b->cols[c].data + 8 * (size_t)q, 8))
                return false;
            break;
        }
    }
    return true;
}

size_t sl__table_changes(const sl_table *fresh, const sl_table *t)
{
    size_t n = 0;
    const sl_table *ov = sl__table_overlay(t);
    for (size_t ci = 0; ci < fresh->nchunks; ci++) {
        const sl_batch *c = fresh->chunks[ci];
        for (uint32_t r = 0; r < c->n; r++) {
            const sl_batch *oc = NULL;
            uint32_t orow = 0;
            int hit = 0;
            const void *k = c->cols[fresh->key_col].data;
            for (int pass = 0; pass < 2 && !hit; pass++) {
                const sl_table *in = pass == 0 ? ov : t;
                if (!in) continue;
                if (fresh->str_key) {
                    const sl_str *s = (const sl_str *)k + r;
                    hit = sl__table_find_str(in, s->ptr, s->len, &oc, &orow);
                } else {
                    hit = sl__table_find_i64(in, ((const int64_t *)k)[r], &oc, &orow);
                }
            }
            n += !hit || !same_row(fresh, c, r, oc, orow);
        }
    }
    return n;
}
