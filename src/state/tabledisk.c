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
 * loading, which would read the filters of every file at random. */
#include <stdlib.h>
#include <string.h>

#include "state/dtab.h"

struct sl__dtab {
    sl_schema *schema; /* borrowed from the table */
    int key_col;
    bool str_key;
    sl__ks *ks;
};

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
    return d;
}

void sl__dtab_free(sl__dtab *d)
{
    if (!d) return;
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
    return rc ? rc : sl__ks_scan(d->ks, NULL, 0, count_key, nkeys, errstr,
                                 errstr_size);
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
    for (uint32_t j = 0; j < m; j++)
        ops[j] = (sl__ks_op){kb.p + koff[j], koff[j + 1] - koff[j],
                             vb.p + voff[j], voff[j + 1] - voff[j]};
    rc = sl__ks_write(d->ks, ops, m, errstr, errstr_size);
    free(ops);
    if (!rc) *stored += m;
out:
    free(kb.p);
    free(vb.p);
    free(koff);
    free(voff);
    free(rows);
    return rc;
}

int sl__dtab_fetch(const sl__dtab *d, const sl_batch *b, int bkey,
                   sl_batch *dst, uint32_t *row_of, char *errstr,
                   size_t errstr_size)
{
    uint32_t n = b->n, m = 0;
    sl__batch_clear(dst);
    if (n == 0) return 0;
    SL_ASSERT(dst->cap >= n);
    const uint8_t *kind = b->kind, *kv = b->cols[bkey].valid;
    buf kb = {0};
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
    if (m == 0) goto out;
    const char **keys = sl__xmalloc(sizeof *keys * m);
    size_t *kl = sl__xmalloc(sizeof *kl * m);
    for (uint32_t j = 0; j < m; j++) {
        keys[j] = kb.p + koff[j];
        kl[j] = koff[j + 1] - koff[j];
    }
    char **vals = sl__xcalloc(m, sizeof *vals);
    size_t *vls = sl__xcalloc(m, sizeof *vls);
    rc = sl__ks_multi_get(d->ks, m, keys, kl, vals, vls, errstr, errstr_size);
    for (uint32_t j = 0; j < m; j++) {
        if (!rc && vals[j]) {
            uint32_t r = dst->n++, i = rows[j];
            dst->kind[r] = SL_KIND_DATA;
            dst->cols[d->key_col].valid[r] = 1;
            if (d->str_key) {
                const sl_str *k = (const sl_str *)b->cols[bkey].data + i;
                char *p = k->len ? sl__arena_alloc(&dst->arena, k->len) : NULL;
                if (k->len) memcpy(p, k->ptr, k->len);
                ((sl_str *)dst->cols[d->key_col].data)[r] = (sl_str){p ? p : "", k->len};
            } else {
                ((int64_t *)dst->cols[d->key_col].data)[r] =
                    ((const int64_t *)b->cols[bkey].data)[i];
            }
            if (val_dec(dst, d->key_col, r, vals[j], vls[j]))
                rc = sl__err(errstr, errstr_size, SL_EIO,
                             "table: a RocksDB row does not decode (corrupt state)");
            row_of[i] = r;
        }
        sl__ks_value_free(vals[j]);
    }
    free(vals);
    free(vls);
    free(keys);
    free(kl);
out:
    free(kb.p);
    free(koff);
    free(rows);
    return rc;
}
