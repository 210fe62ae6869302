/* tabledisk.c — lookup tables on RocksDB (state.backend = rocksdb): a
 * table's rows live in a column family of the process's instance
 * (rocks.c), so a 100 M-subscriber table needs disk, not RAM; only the
 * block cache and write buffers under state.memory.bound stay in memory.
 *
 * Encoding (keys sort as their values, so a range or prefix scan reads
 * them in order):
 *   key    INT64: 8 bytes big-endian of the value with its sign bit flipped;
 *          STRING: the bytes as they are.
 *   value  every column but the key, in schema order: 1 byte (1 present,
 *          0 NULL), then for a present value BOOL 1 byte, STRING a 4-byte
 *          little-endian length and the bytes, other types 8 bytes (the
 *          int64/double as stored in the batch, little-endian).
 *
 * Loading keeps the contract of the memory table: rows with a NULL key are
 * skipped, the last of equal keys wins, and sl_table_rows counts distinct
 * keys: sealing the table (after the last append) flushes it and counts
 * them in one sequential scan, far cheaper than a lookup per row while
 * loading, which would read the filters of every file at random.
 *
 * Lookups (sl__dtab_fetch) go through the table's row cache (rowcache.c,
 * shared by the tasks) when it has one: every key of the batch is encoded, hashed
 * and its cache set prefetched, then probed; hits decode from the cache,
 * and the misses, sorted and without duplicates, go to RocksDB in one
 * batched MultiGet, their rows then added to the cache (and the keys not
 * found, as absent). A write to the
 * table after it was sealed bumps its generation (release, after the
 * write), which a fetch loads (acquire) before reading anything, so a
 * cache never serves a row older than the last write it could see.
 *
 * The caches of all tables share the row-cache part of state.memory.bound
 * (sl__ks_row_cache_bytes); sl__dtab_cache makes a table's cache on first
 * use with a water-filled share of it (no more than the table could use:
 * 3 slots per row; the rest split among the other open tables), and
 * never reserves past the total. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "state/dtab.h"

struct sl__dtab {
    sl_schema *schema; /* borrowed from the table */
    int key_col;
    bool str_key;
    sl__ks *ks;
    _Atomic uint64_t gen; /* bumped after every write (sl__dtab_append) */
    size_t max_row;       /* largest encoded key + value written */
    size_t nkeys;         /* distinct keys at the last seal */
    sl__dtab *next;       /* in caches.tables */
    sl__rowcache *cache;  /* made by the first sl__dtab_cache */
    bool cache_made;
};

/* The row caches' budget, process-wide (invariant: reserved <= the
 * row-cache bytes of the open instance). */
static struct {
    pthread_mutex_t mu;
    int64_t reserved;
    sl__dtab *tables; /* every open disk table */
} caches = {.mu = PTHREAD_MUTEX_INITIALIZER};

typedef struct {
    char *p;
    size_t n, cap;
} buf;

static char *buf_room(buf *b, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = sl__xrealloc(b->p, b->cap);
    }
    return b->p + b->n;
}

static void buf_add(buf *b, const void *d, size_t n)
{
    if (n) memcpy(buf_room(b, n), d, n);
    b->n += n;
}

/* Appends the key of row r of column c of batch bt to kb. */
static void key_enc(buf *kb, const sl_batch *bt, int c, uint32_t r, bool str)
{
    if (str) {
        const sl_str *s = (const sl_str *)bt->cols[c].data + r;
        buf_add(kb, s->ptr, s->len);
        return;
    }
    uint64_t v = (uint64_t)((const int64_t *)bt->cols[c].data)[r] ^ (1ULL << 63);
    uint8_t k[8];
    for (int i = 0; i < 8; i++) k[i] = (uint8_t)(v >> (56 - 8 * i));
    buf_add(kb, k, 8);
}

static void val_enc(buf *vb, const sl_batch *bt, int key_col, uint32_t r)
{
    const sl_schema *s = bt->schema;
    for (int c = 0; c < s->n; c++) {
        if (c == key_col) continue;
        uint8_t ok = bt->cols[c].valid[r] ? 1 : 0;
        buf_add(vb, &ok, 1);
        if (!ok) continue;
        switch (s->cols[c].type) {
        case SL_BOOL:
            buf_add(vb, (const uint8_t *)bt->cols[c].data + r, 1);
            break;
        case SL_STRING: {
            const sl_str *v = (const sl_str *)bt->cols[c].data + r;
            uint8_t l[4] = {(uint8_t)v->len, (uint8_t)(v->len >> 8),
                            (uint8_t)(v->len >> 16), (uint8_t)(v->len >> 24)};
            buf_add(vb, l, 4);
            buf_add(vb, v->ptr, v->len);
            break;
        }
        default:
            buf_add(vb, (const char *)bt->cols[c].data + 8 * (size_t)r, 8);
            break;
        }
    }
}

/* Decodes value v into row r of dst; 0 or SL_EIO when it is malformed. */
static int val_dec(sl_batch *dst, int key_col, uint32_t r, const char *v,
                   size_t vl)
{
    const sl_schema *s = dst->schema;
    size_t o = 0;
    for (int c = 0; c < s->n; c++) {
        if (c == key_col) continue;
        if (o >= vl) return SL_EIO;
        uint8_t ok = (uint8_t)v[o++];
        dst->cols[c].valid[r] = ok;
        sl_type ty = s->cols[c].type;
        if (!ok) {
            if (ty == SL_STRING) ((sl_str *)dst->cols[c].data)[r] = (sl_str){"", 0};
            else if (ty == SL_BOOL) ((uint8_t *)dst->cols[c].data)[r] = 0;
            else memset((char *)dst->cols[c].data + 8 * (size_t)r, 0, 8);
            continue;
        }
        if (ty == SL_BOOL) {
            if (o + 1 > vl) return SL_EIO;
            ((uint8_t *)dst->cols[c].data)[r] = (uint8_t)v[o++];
        } else if (ty == SL_STRING) {
            if (o + 4 > vl) return SL_EIO;
            const uint8_t *l = (const uint8_t *)v + o;
            size_t n = (size_t)l[0] | (size_t)l[1] << 8 | (size_t)l[2] << 16 |
                       (size_t)l[3] << 24;
            o += 4;
            if (o + n > vl) return SL_EIO;
            char *p = n ? sl__arena_alloc(&dst->arena, n) : NULL;
            if (n) memcpy(p, v + o, n);
            ((sl_str *)dst->cols[c].data)[r] = (sl_str){n ? p : "", n};
            o += n;
        } else {
            if (o + 8 > vl) return SL_EIO;
            memcpy((char *)dst->cols[c].data + 8 * (size_t)r, v + o, 8);
            o += 8;
        }
    }
    return o == vl ? 0 : SL_EIO;
}

sl__dtab *sl__dtab_new(const sl_schema *s, int key_col, const sl__state_conf *sc,
                       char *errstr, size_t errstr_size)
{
    sl__ks *ks = sl__ks_open(sc, true, errstr, errstr_size);
    if (!ks) return NULL;
    sl__dtab *d = sl__xcalloc(1, sizeof *d);
    d->schema = (sl_schema *)s;
    d->key_col = key_col;
    d->str_key = s->cols[key_col].type == SL_STRING;
    d->ks = ks;
    pthread_mutex_lock(&caches.mu);
    d->next = caches.tables;
    caches.tables = d;
    pthread_mutex_unlock(&caches.mu);
    return d;
}

void sl__dtab_free(sl__dtab *d)
{
    if (!d) return;
    pthread_mutex_lock(&caches.mu);
    for (sl__dtab **p = &caches.tables; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            break;
        }
    caches.reserved -= (int64_t)sl__rowcache_bytes(d->cache);
    pthread_mutex_unlock(&caches.mu);
    if (d->cache) { /* the figures to size state.memory.bound by */
        sl__rowcache_counts k;
        sl__rowcache_stats(d->cache, &k);
        sl__log(SL__LOG_INFO, "state", "row cache of a RocksDB table",
                "bytes=%zu slots=%zu rows=%zu hits=%llu misses=%llu "
                "inserts=%llu evictions=%llu too_large=%llu",
                sl__rowcache_bytes(d->cache), sl__rowcache_slots(d->cache),
                d->nkeys, (unsigned long long)k.hits, (unsigned long long)k.misses,
                (unsigned long long)k.inserts, (unsigned long long)k.evictions,
                (unsigned long long)k.too_large);
    }
    sl__rowcache_free(d->cache);
    sl__ks_drop(d->ks);
    free(d);
}

uint64_t sl__dtab_disk_bytes(const sl__dtab *d) { return sl__ks_disk_bytes(d->ks); }

static int count_key(void *arg, const char *k, size_t kl, const char *v,
                     size_t vl)
{
    (void)k, (void)kl, (void)v, (void)vl;
    (*(size_t *)arg)++;
    return 0;
}

int sl__dtab_seal(sl__dtab *d, size_t *nkeys, char *errstr, size_t errstr_size)
{
    int rc = sl__ks_compact(d->ks, errstr, errstr_size);
    *nkeys = 0;
    if (!rc) rc = sl__ks_scan(d->ks, NULL, 0, count_key, nkeys, errstr, errstr_size);
    pthread_mutex_lock(&caches.mu);
    d->nkeys = *nkeys;
    pthread_mutex_unlock(&caches.mu);
    return rc;
}

int sl__dtab_append(sl__dtab *d, const sl_batch *b, size_t *stored,
                    bool *nulls, char *errstr, size_t errstr_size)
{
    uint32_t n = b->n, m = 0;
    if (n == 0) return 0;
    const uint8_t *kv = b->cols[d->key_col].valid;
    buf kb = {0}, vb = {0};
    size_t *koff = sl__xmalloc(sizeof *koff * (n + 1));
    size_t *voff = sl__xmalloc(sizeof *voff * (n + 1));
    uint32_t *rows = sl__xmalloc(sizeof *rows * n);
    for (uint32_t i = 0; i < n; i++) {
        if (!kv[i]) continue; /* a NULL key could never match */
        rows[m] = i;
        koff[m] = kb.n;
        voff[m] = vb.n;
        key_enc(&kb, b, d->key_col, i, d->str_key);
        val_enc(&vb, b, d->key_col, i);
        for (int c = 0; c < b->schema->n; c++)
            if (!b->cols[c].valid[i]) nulls[c] = true;
        m++;
    }
    koff[m] = kb.n;
    voff[m] = vb.n;
    int rc = 0;
    if (m == 0) goto out;
    sl__ks_op *ops = sl__xmalloc(sizeof *ops * m);
    size_t max_row = 0;
    for (uint32_t j = 0; j < m; j++) {
        ops[j] = (sl__ks_op){.key = kb.p + koff[j], .klen = koff[j + 1] - koff[j],
                             .val = vb.p + voff[j], .vlen = voff[j + 1] - voff[j]};
        if (ops[j].klen + ops[j].vlen > max_row) max_row = ops[j].klen + ops[j].vlen;
    }
    rc = sl__ks_write(d->ks, ops, m, errstr, errstr_size);
    free(ops);
    if (!rc) *stored += m;
    pthread_mutex_lock(&caches.mu);
    if (max_row > d->max_row) d->max_row = max_row;
    pthread_mutex_unlock(&caches.mu);
    /* after the write: a fetch that sees the new generation sees the rows */
    atomic_fetch_add_explicit(&d->gen, 1, memory_order_release);
out:
    free(kb.p);
    free(vb.p);
    free(koff);
    free(voff);
    free(rows);
    return rc;
}

/* ---- lookups ------------------------------------------------------------- */
/* A key to read from RocksDB: its bytes, the first 8 of them as a
 * big-endian number (so most comparisons are one integer compare), and
 * the lookup (index into the batch's keys) it came from. */
typedef struct {
    uint64_t prefix;
    const char *p;
    size_t len;
    uint32_t j;
} miss_key;

static int miss_cmp(const void *a, const void *b)
{
    const miss_key *x = a, *y = b;
    if (x->prefix != y->prefix) return x->prefix < y->prefix ? -1 : 1;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->p, y->p, n) : 0;
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

typedef struct {
    const sl__dtab *d;
    sl__rowcache *cache;
    const sl_batch *b;
    int bkey;
    sl_batch *dst;
    uint32_t *row_of;
    const uint32_t *rows;  /* batch row of each lookup j */
    const uint64_t *hash;  /* of each lookup j (with a cache) */
    const char *const *keys;
    const size_t *klen;
    const uint32_t *first; /* first lookup of each distinct missed key */
    const uint32_t *next;  /* the next lookup of the same key, or UINT32_MAX */
    uint8_t *found;        /* per distinct missed key */
    int rc;
} fetch_ctx;

/* Appends batch row i's table row (value v) to dst. */
static int row_out(fetch_ctx *f, uint32_t i, const char *v, size_t vl)
{
    const sl__dtab *d = f->d;
    sl_batch *dst = f->dst;
    uint32_t r = dst->n++;
    dst->kind[r] = SL_KIND_DATA;
    dst->cols[d->key_col].valid[r] = 1;
    if (d->str_key) {
        const sl_str *k = (const sl_str *)f->b->cols[f->bkey].data + i;
        char *p = k->len ? sl__arena_alloc(&dst->arena, k->len) : NULL;
        if (k->len) memcpy(p, k->ptr, k->len);
        ((sl_str *)dst->cols[d->key_col].data)[r] = (sl_str){p ? p : "", k->len};
    } else {
        ((int64_t *)dst->cols[d->key_col].data)[r] =
            ((const int64_t *)f->b->cols[f->bkey].data)[i];
    }
    f->row_of[i] = r;
    return val_dec(dst, d->key_col, r, v, vl);
}

/* sl__ks_multi_get_sorted's callback: distinct missed key u was found. */
static void found(void *arg, size_t u, const char *v, size_t vl)
{
    fetch_ctx *f = arg;
    uint32_t j0 = f->first[u];
    f->found[u] = 1;
    for (uint32_t j = j0; j != UINT32_MAX; j = f->next[j])
        if (row_out(f, f->rows[j], v, vl) && !f->rc) f->rc = SL_EIO;
    if (f->cache)
        sl__rowcache_put(f->cache, f->hash[j0], f->keys[j0], f->klen[j0], v, vl);
}

int sl__dtab_fetch(const sl__dtab *d, sl__rowcache *cache, const sl_batch *b,
                   int bkey, sl_batch *dst, uint32_t *row_of,
                   sl__rowcache_counts *cn, char *errstr, size_t errstr_size)
{
    uint32_t n = b->n, m = 0;
    sl__batch_clear(dst);
    if (n == 0) return 0;
    SL_ASSERT(dst->cap >= n);
    /* before any read: rows written before this generation are visible */
    if (cache)
        sl__rowcache_sync(cache, atomic_load_explicit(&((sl__dtab *)d)->gen,
                                                      memory_order_acquire));
    const uint8_t *kind = b->kind, *kv = b->cols[bkey].valid;
    buf kb = {0};
    if (!d->str_key) buf_room(&kb, 8 * (size_t)n); /* no growth below */
    size_t *koff = sl__xmalloc(sizeof *koff * (n + 1));
    uint32_t *rows = sl__xmalloc(sizeof *rows * n);
    for (uint32_t i = 0; i < n; i++) {
        row_of[i] = UINT32_MAX;
        if (kind[i] != SL_KIND_DATA || !kv[i]) continue;
        rows[m] = i;
        koff[m++] = kb.n;
        key_enc(&kb, b, bkey, i, d->str_key);
    }
    koff[m] = kb.n;
    int rc = 0;
    if (m == 0) {
        free(kb.p);
        free(koff);
        free(rows);
        return 0;
    }
    const char **keys = sl__xmalloc(sizeof *keys * m);
    size_t *kl = sl__xmalloc(sizeof *kl * m);
    uint64_t *hash = cache ? sl__xmalloc(sizeof *hash * m) : NULL;
    for (uint32_t j = 0; j < m; j++) {
        keys[j] = kb.p + koff[j];
        kl[j] = koff[j + 1] - koff[j];
        if (cache) {
            hash[j] = sl__rowcache_hash(keys[j], kl[j]);
            sl__rowcache_prefetch(cache, hash[j]);
        }
    }
    fetch_ctx f = {.d = d, .cache = cache, .b = b, .bkey = bkey, .dst = dst,
                   .row_of = row_of, .rows = rows, .hash = hash, .keys = keys,
                   .klen = kl};
    miss_key *mk = sl__xmalloc(sizeof *mk * m);
    uint32_t nm = 0;
    char v[SL__ROWCACHE_MAX_ROW];
    for (uint32_t j = 0; j < m; j++) {
        size_t vl = cache ? sl__rowcache_get(cache, hash[j], keys[j], kl[j], v)
                          : SIZE_MAX;
        if (vl == SL__ROWCACHE_ABSENT) continue; /* known not in the table */
        if (vl != SIZE_MAX) {
            if (row_out(&f, rows[j], v, vl) && !f.rc) f.rc = SL_EIO;
            continue;
        }
        uint8_t pre[8] = {0};
        if (kl[j]) memcpy(pre, keys[j], kl[j] < 8 ? kl[j] : 8); /* "": NULL */
        uint64_t x = 0;
        for (int q = 0; q < 8; q++) x = x << 8 | pre[q];
        mk[nm++] = (miss_key){x, keys[j], kl[j], j};
    }
    if (nm) {
        /* sorted and distinct: RocksDB reads each data block once */
        qsort(mk, nm, sizeof *mk, miss_cmp);
        const char **ukeys = sl__xmalloc(sizeof *ukeys * nm);
        size_t *ulen = sl__xmalloc(sizeof *ulen * nm);
        uint32_t *first = sl__xmalloc(sizeof *first * nm);
        uint32_t *next = sl__xmalloc(sizeof *next * m);
        uint32_t nu = 0, last = UINT32_MAX;
        for (uint32_t q = 0; q < nm; q++) {
            uint32_t j = mk[q].j;
            next[j] = UINT32_MAX;
            if (nu && !miss_cmp(&mk[q], &mk[q - 1])) {
                next[last] = j;
            } else {
                ukeys[nu] = mk[q].p;
                ulen[nu] = mk[q].len;
                first[nu++] = j;
            }
            last = j;
        }
        f.first = first;
        f.next = next;
        f.found = sl__xcalloc(nu, 1);
        rc = sl__ks_multi_get_sorted(d->ks, nu, ukeys, ulen, found, &f, errstr,
                                     errstr_size);
        for (uint32_t u = 0; cache && !rc && u < nu; u++) /* remember absences */
            if (!f.found[u])
                sl__rowcache_put(cache, hash[first[u]], ukeys[u], ulen[u], NULL,
                                 SL__ROWCACHE_ABSENT);
        free(f.found);
        free(ukeys);
        free(ulen);
        free(first);
        free(next);
    }
    if (!rc && f.rc)
        rc = sl__err(errstr, errstr_size, SL_EIO,
                     "table: a RocksDB row does not decode (corrupt state)");
    if (cn && cache) {
        cn->hits += m - nm;
        cn->misses += nm;
    }
    free(mk);
    free(hash);
    free(keys);
    free(kl);
    free(kb.p);
    free(koff);
    free(rows);
    return rc;
}

/* ---- the row caches' budget ---------------------------------------------- */
#define CACHE_SLOT_HDR 8 /* rowcache.c's slot header */

/* Bytes d's cache could use: 3 slots per row, so that few rows find their
 * 4-way set full (~1 % of a table that fits, by a Poisson estimate), and
 * 1024 more, so that a small table's hot rows (a few hundred cells) do
 * not share a full set by bad luck and evict each other for ever. */
static int64_t cache_need(const sl__dtab *d)
{
    size_t row = d->max_row < SL__ROWCACHE_MAX_ROW ? d->max_row : SL__ROWCACHE_MAX_ROW;
    int64_t slot = CACHE_SLOT_HDR + (int64_t)((row + 7) & ~(size_t)7);
    return (int64_t)(3 * d->nkeys + 1024) * slot;
}

typedef struct {
    sl__rowcache *c;
    size_t left;
} warm_ctx;

static int warm_row(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    warm_ctx *w = arg;
    sl__rowcache_put(w->c, sl__rowcache_hash(k, kl), k, kl, v, vl);
    return --w->left == 0;
}

/* Fills d's new cache with the table's first rows in key order, as many as
 * it has slots (Flink's lookup.cache=FULL for a table that fits): one
 * sequential read costs a fraction of a point lookup per row, and every
 * row it brings in would otherwise be a miss at its first lookup. Rows of
 * a table larger than the cache are an arbitrary sample, replaced by the
 * hot ones as lookups go. Best effort: an error only ends the warm-up. */
static void warm(sl__dtab *d)
{
    sl__rowcache_sync(d->cache, atomic_load_explicit(&d->gen, memory_order_acquire));
    warm_ctx w = {d->cache, sl__rowcache_slots(d->cache)};
    char err[256];
    int rc = sl__ks_scan(d->ks, NULL, 0, warm_row, &w, err, sizeof err);
    if (rc < 0)
        sl__log(SL__LOG_WARN, "state", "row cache warm-up stopped", "error=\"%s\"",
                err);
}

sl__rowcache *sl__dtab_cache(sl__dtab *d)
{
    int64_t total = sl__ks_row_cache_bytes();
    pthread_mutex_lock(&caches.mu);
    if (d->cache_made) {
        pthread_mutex_unlock(&caches.mu);
        return d->cache;
    }
    /* water-filling over the open tables that have no cache yet: those
     * needing less than an equal split of what is left keep what they
     * need, the others share the rest equally */
    int nt = 0;
    for (const sl__dtab *t = caches.tables; t; t = t->next) nt += !t->cache_made;
    int64_t left = total - caches.reserved, share = 0;
    bool *done = sl__xcalloc((size_t)nt + 1, sizeof *done);
    for (int k = nt; k > 0; k--) {
        const sl__dtab *small = NULL;
        int si = 0, i = 0;
        for (const sl__dtab *t = caches.tables; t; t = t->next) {
            if (t->cache_made) continue;
            if (!done[i] && (!small || cache_need(t) < cache_need(small))) {
                small = t;
                si = i;
            }
            i++;
        }
        if (!small) break;
        int64_t give = cache_need(small) < left / k ? cache_need(small) : left / k;
        done[si] = true;
        left -= give;
        if (small == d) share = give;
    }
    free(done);
    if (share > total - caches.reserved) share = total - caches.reserved;
    d->cache = share > 0 ? sl__rowcache_new((size_t)share, d->max_row) : NULL;
    d->cache_made = true;
    caches.reserved += (int64_t)sl__rowcache_bytes(d->cache);
    if (d->cache) warm(d); /* under caches.mu: once, before any task probes */
    pthread_mutex_unlock(&caches.mu);
    return d->cache;
}
