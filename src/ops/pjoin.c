/* pjoin.c — the pseudonym-join memo: a PSEUDONYMIZE followed at once by a
 * lookup join on the pseudonym against a table pseudonymised under the
 * same key (the reference job's events joined to their subscriber's birth
 * date) costs two random probes a row, the pseudonym cache's set and the
 * table's slot, each a DRAM miss on a large population. This memo maps the
 * raw id straight to both, the pseudonym and the joined 8-byte value, in
 * one cache line, so the fused operator (pseudonymise.c, planned by
 * sl_stream_lookup in lookup.c) makes one probe a row.
 *
 * It is a memo of a deterministic function of the raw id (its HMAC and the
 * table's row under that HMAC), like the pseudonym cache (pcache.c): held
 * in memory only, never snapshotted, logged or counted by id, and rebuilt
 * from the table's load after a restart. An id it does not hold (not in
 * the table, or not 1..18 digits) takes the unfused path: the pseudonym
 * cache and the table's index.
 *
 * How it is made: the table load (lookup.c load_flush) logs each stored
 * row's packed raw id (sl__pcache_pack, 8 bytes a row) in an sl__pjoin
 * kept with the table (sl__table_set_ext); the first fused operator to
 * open asks for the memo of its column (sl__pjoin_index), which is built
 * once from the table's rows in append order (sl__table_read_i64; a
 * later row of the same id replaces the earlier, as in the table) and
 * the log, which is then freed; if two ids share a pseudonym (which the
 * table's index conflates) there is no memo. One column per table gets a memo; a join on
 * another column of the same table runs unfused.
 *
 * Layout: buckets of one cache line holding two entries (packed id with
 * the value's validity in bit 62, pseudonym, value); linear probing over
 * buckets, at most 1.25 entries a bucket (2^20 buckets, 64 MiB, for 1 M
 * subscribers; 512 MiB for 10 M). Read-only once built, so readers take
 * no lock; it is published under `lock`, which every opener takes. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ops/privacy.h"
#include "state/state.h"

#define VALID_BIT (1ULL << 62) /* packed ids stay below 2 * 10^18 < 2^61 */
#define KEY_MASK (VALID_BIT - 1)
#define BLOCK 256

typedef struct {
    uint64_t key[2]; /* packed raw id | VALID_BIT if the value is not NULL */
    uint64_t pseudo[2];
    uint64_t val[2];
    uint64_t pad[2];
} pjb;
_Static_assert(sizeof(pjb) == 64, "a bucket is one cache line");

struct sl__pjidx {
    pjb *b;
    uint64_t mask;
    size_t entries;
};

struct sl__pjoin {
    sl__pcache *under;       /* the key the table's pseudonyms are under */
    pthread_mutex_t lock;
    uint64_t *ids;           /* packed raw id of each stored row; 0 = none */
    size_t nids, cap;
    size_t unpackable;       /* logged rows whose id is not 1..18 digits */
    bool done;               /* a build was tried (the log is gone) */
    bool warmed;             /* the log filled `under` (sl__pjoin_warm) */
    int col;
    sl__pjidx *idx;          /* for column col, or NULL */
};

static void idx_free(sl__pjidx *x);

sl__pjoin *sl__pjoin_new(sl__pcache *under)
{
    sl__pjoin *pj = sl__xcalloc(1, sizeof *pj);
    pj->under = under;
    pj->col = -1;
    pthread_mutex_init(&pj->lock, NULL);
    return pj;
}

void sl__pjoin_free(void *arg)
{
    sl__pjoin *pj = arg;
    if (!pj) return;
    idx_free(pj->idx);
    free(pj->ids);
    pthread_mutex_destroy(&pj->lock);
    free(pj);
}

void sl__pjoin_log(sl__pjoin *pj, const sl_str *ids, const uint8_t *valid,
                   uint32_t n)
{
    if (!pj || pj->done) return;
    if (pj->nids + n > pj->cap) {
        pj->cap = pj->cap ? pj->cap : 4096;
        while (pj->cap < pj->nids + n) pj->cap *= 2;
        pj->ids = sl__xrealloc(pj->ids, sizeof *pj->ids * pj->cap);
    }
    /* the table stores the rows with a key (invariant 1 of table.c) */
    for (uint32_t i = 0; i < n; i++) {
        if (!valid[i]) continue;
        uint64_t k = sl__pcache_pack(ids[i].ptr, ids[i].len);
        pj->ids[pj->nids++] = k;
        pj->unpackable += !k;
    }
}

static inline uint64_t bucket_of(uint64_t key, uint64_t mask)
{
    return sl__mix64(key) & mask;
}

/* Puts key's entry, replacing an earlier one of the same key (a later
 * row of the same id wins, as in the table). */
static void put(sl__pjidx *x, uint64_t key, uint64_t bkt, uint64_t pseudo,
                uint64_t val, bool valid)
{
    for (uint64_t b = bkt;; b = (b + 1) & x->mask) {
        pjb *e = &x->b[b];
        for (int w = 0; w < 2; w++) {
            if (e->key[w] && (e->key[w] & KEY_MASK) != key) continue;
            x->entries += !e->key[w];
            e->key[w] = key | (valid ? VALID_BIT : 0);
            e->pseudo[w] = pseudo;
            e->val[w] = valid ? val : 0;
            return;
        }
    }
}

/* Fewer entries than ways, so every probe ends at an empty way. */
static inline int find(const sl__pjidx *x, uint64_t key, uint64_t bkt,
                       int64_t *pseudo, uint64_t *val, uint8_t *valid)
{
    for (uint64_t b = bkt;; b = (b + 1) & x->mask) {
        const pjb *e = &x->b[b];
        for (int w = 0; w < 2; w++) {
            uint64_t k = e->key[w];
            if ((k & KEY_MASK) == key) {
                *pseudo = (int64_t)e->pseudo[w];
                *val = e->val[w];
                *valid = (k & VALID_BIT) != 0;
                return 1;
            }
            if (!k) return 0;
        }
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void idx_free(sl__pjidx *x)
{
    if (x) sl__huge_free(x->b, (x->mask + 1) * sizeof(pjb));
    free(x);
}

/* From the stored rows in append order, read beside the log: sequential
 * reads and one random write a row (prefetched a block ahead). NULL if
 * two ids share a pseudonym (a 64-bit collision, or an id the memo cannot
 * hold twice): the table conflates such rows, the memo would not. */
static sl__pjidx *build(const sl__pjoin *pj, const sl_table *t, int col)
{
    size_t n = sl_table_rows(t);
    uint64_t nb = 1024;
    while ((double)nb * 1.25 < (double)n) nb *= 2;
    sl__pjidx *x = sl__xcalloc(1, sizeof *x);
    x->mask = nb - 1;
    x->b = sl__huge_alloc(nb * sizeof(pjb)); /* zero-filled: empty */
    int64_t key[BLOCK];
    uint64_t val[BLOCK], bkt[BLOCK];
    uint8_t valid[BLOCK];
    size_t ord = 0, m, nu = 0;
    int64_t *other = sl__xmalloc(sizeof *other * (pj->unpackable + 1));
    while ((m = sl__table_read_i64(t, col, &ord, key, val, valid, BLOCK))) {
        const uint64_t *raw = pj->ids + (ord - m);
        for (size_t i = 0; i < m; i++) {
            bkt[i] = bucket_of(raw[i], x->mask);
            if (!raw[i]) {
                if (nu < pj->unpackable) other[nu++] = key[i];
                continue;
            }
            __builtin_prefetch(&x->b[bkt[i]], 1);
        }
        for (size_t i = 0; i < m; i++)
            if (raw[i]) put(x, raw[i], bkt[i], (uint64_t)key[i], val[i], valid[i]);
    }
    /* every stored row's pseudonym is an entry's or an unpackable row's:
     * as many distinct pseudonyms as entries plus distinct pseudonyms of
     * the others means no entry shares its pseudonym */
    qsort(other, nu, sizeof *other, cmp_i64);
    size_t distinct = 0;
    for (size_t i = 0; i < nu; i++) distinct += i == 0 || other[i] != other[i - 1];
    free(other);
    if (x->entries + distinct != n) {
        idx_free(x);
        return NULL;
    }
    return x;
}

const sl__pjidx *sl__pjoin_index(const sl_table *t, int col,
                                 const sl__pcache *under)
{
    sl__pjoin *pj = sl__table_ext(t);
    if (!pj || !under || pj->under != under) return NULL;
    const sl_schema *s = sl__table_schema(t);
    if (col < 0 || col >= s->n || col == sl__table_key_col(t) ||
        s->cols[sl__table_key_col(t)].type != SL_INT64)
        return NULL;
    sl_type ty = s->cols[col].type;
    if (ty != SL_INT64 && ty != SL_TIMESTAMP && ty != SL_FLOAT64) return NULL;
    pthread_mutex_lock(&pj->lock);
    if (!pj->done) {
        pj->done = true;
        /* a log out of step with the stored rows (a row appended without
         * it) cannot be trusted: no memo */
        if (pj->nids == sl__table_stored(t)) {
            pj->idx = build(pj, t, col);
            pj->col = col;
        }
        free(pj->ids);
        pj->ids = NULL;
        pj->nids = pj->cap = 0;
    }
    const sl__pjidx *x = pj->col == col ? pj->idx : NULL;
    pthread_mutex_unlock(&pj->lock);
    return x;
}

void sl__pjoin_warm(const sl_table *t)
{
    sl__pjoin *pj = sl__table_ext(t);
    if (!pj) return;
    pthread_mutex_lock(&pj->lock);
    if (!pj->done && !pj->warmed && pj->ids && pj->nids == sl__table_stored(t)) {
        pj->warmed = true;
        sl__pcache_reserve(pj->under, pj->nids);
        int kc = sl__table_key_col(t);
        int64_t key[BLOCK];
        uint64_t val[BLOCK];
        uint8_t valid[BLOCK];
        size_t ord = 0, m;
        while ((m = sl__table_read_i64(t, kc, &ord, key, val, valid, BLOCK)))
            sl__pcache_fill(pj->under, pj->ids + (ord - m), key, (uint32_t)m);
    }
    pthread_mutex_unlock(&pj->lock);
}

size_t sl__pjidx_entries(const sl__pjidx *x) { return x ? x->entries : 0; }
size_t sl__pjidx_bytes(const sl__pjidx *x)
{
    return x ? (x->mask + 1) * sizeof(pjb) : 0;
}

/* Rows the memo does not hold: their pseudonyms through the cache, their
 * values through the table's index, as the unfused operators would. */
static void block_miss(sl__pcache *c, sl__hmac *h, const sl_table *t,
                       int tcol, const sl_str *id, const uint32_t *miss,
                       uint32_t nmiss, uint32_t base, const uint8_t *kind,
                       int64_t *out, uint64_t *val, uint8_t *vvalid)
{
    sl_str mid[BLOCK];
    uint8_t ones[BLOCK];
    int64_t mout[BLOCK];
    for (uint32_t j = 0; j < nmiss; j++) {
        mid[j] = id[miss[j]];
        ones[j] = 1;
    }
    sl__pcache_pseudo(c, h, mid, ones, mout, nmiss);
    for (uint32_t j = 0; j < nmiss; j++) {
        uint32_t r = base + miss[j];
        out[r] = mout[j];
        const sl_batch *ch = NULL;
        uint32_t row = 0;
        vvalid[r] = kind[r] == SL_KIND_DATA &&
                    sl__table_find_i64(t, mout[j], &ch, &row) &&
                    ch->cols[tcol].valid[row];
        val[r] = 0;
        if (vvalid[r]) memcpy(&val[r], (const char *)ch->cols[tcol].data + 8 * (size_t)row, 8);
    }
}

/* A refreshed table's changed rows win over the loaded ones (as
 * lookup.c's probe: overlay first): the rows' pseudonyms stay, their
 * values are replaced where the overlay has the key. */
static void overlay(const sl_table *ov, int tcol, const int64_t *out,
                    const uint8_t *valid, const uint8_t *kind, uint64_t *val,
                    uint8_t *vvalid, uint32_t n)
{
    for (uint32_t r = 0; r < n; r++) {
        const sl_batch *ch = NULL;
        uint32_t row = 0;
        if (!valid[r] || kind[r] != SL_KIND_DATA ||
            !sl__table_find_i64(ov, out[r], &ch, &row))
            continue;
        vvalid[r] = ch->cols[tcol].valid[row];
        val[r] = 0;
        if (vvalid[r]) memcpy(&val[r], (const char *)ch->cols[tcol].data + 8 * (size_t)row, 8);
    }
}

void sl__pjoin_batch(const sl__pjidx *x, sl__pcache *c, sl__hmac *h,
                     const sl_table *t, const sl_table *ov, int tcol,
                     sl_batch *b, int col, int oc, uint64_t *hits)
{
    uint32_t n = b->n;
    const sl_str *ids = b->cols[col].data;
    const uint8_t *valid = b->cols[col].valid, *kind = b->kind;
    int64_t *out = b->cols[col].data; /* overlays ids: a block is copied first */
    uint64_t *val = b->cols[oc].data;
    uint8_t *vvalid = b->cols[oc].valid;
    sl_str id[BLOCK];
    uint64_t key[BLOCK], bkt[BLOCK];
    uint32_t miss[BLOCK];
    uint64_t nhit = 0;
    for (uint32_t i0 = 0; i0 < n; i0 += BLOCK) {
        uint32_t m = n - i0 < BLOCK ? n - i0 : BLOCK;
        memcpy(id, ids + i0, m * sizeof *id);
        for (uint32_t k = 0; k < m; k++) {
            key[k] = valid[i0 + k] ? sl__pcache_pack(id[k].ptr, id[k].len) : 0;
            bkt[k] = bucket_of(key[k], x->mask);
            if (key[k]) __builtin_prefetch(&x->b[bkt[k]]);
        }
        uint32_t nmiss = 0;
        for (uint32_t k = 0; k < m; k++) {
            uint32_t r = i0 + k;
            if (!valid[r]) { /* NULL id: NULL pseudonym, no row */
                out[r] = 0;
                val[r] = 0;
                vvalid[r] = 0;
                continue;
            }
            uint8_t vv = 0;
            if (key[k] && find(x, key[k], bkt[k], &out[r], &val[r], &vv)) {
                vvalid[r] = vv && kind[r] == SL_KIND_DATA; /* canaries: NULL */
                if (!vvalid[r]) val[r] = 0;
                nhit++;
                continue;
            }
            miss[nmiss++] = k;
        }
        if (nmiss)
            block_miss(c, h, t, tcol, id, miss, nmiss, i0, kind, out, val, vvalid);
    }
    if (ov) overlay(ov, tcol, out, valid, kind, val, vvalid, n);
    if (hits) *hits += nhit;
}
