/* pseudonymise.c — the pseudonymise operator: replaces a STRING subscriber
 * identifier column by an INT64 pseudonym, the first 64 bits of
 * HMAC-SHA-256 under the keyring's current key, at the same column index.
 *
 * The raw column is dropped from the output schema and never copied into
 * output batches, so no raw identifier travels past this operator. It runs
 * before any key_by (an exchange would carry raw ids otherwise), which
 * sl_stream_pseudonymise enforces.
 *
 * Each task's instance keeps one keyed MAC context and a bounded cache raw
 * id -> pseudonym (2^20 entries, 32 MiB of address space touched lazily,
 * direct-mapped: a new id overwrites whatever shared its slot). The cache is
 * memory only: it is never snapshotted or logged, and after recovery it
 * starts empty and refills, which changes speed, never results. Canary rows
 * are pseudonymised like data; a NULL id gives a NULL pseudonym.
 *
 * Batches are processed in blocks: hash every id of a block and prefetch
 * its cache slot, then probe, so cache misses overlap. */
#include <stdlib.h>
#include <string.h>

#include "ops/privacy.h"

#define CACHE_BITS_DEFAULT 20
#define CACHE_ID_MAX 23
#define CACHE_SEED 0x70736575646f6e79ULL
#define BLOCK 256

/* ---- schema -------------------------------------------------------------- */
sl_schema *sl__pseudo_schema(const sl_schema *in, int col, const char *out_col)
{
    int other = sl_schema_find(in, out_col);
    if (!out_col || !*out_col || (other >= 0 && other != col)) return NULL;
    sl_schema *s = sl__schema_copy(in);
    struct sl__colinfo *c = &s->cols[col];
    free(c->name);
    for (int i = 0; i < c->ndomain; i++) free(c->domain[i]);
    free(c->domain);
    c->domain = NULL;
    c->ndomain = 0;
    c->name = sl__xstrdup(out_col);
    c->type = SL_INT64;
    c->identifier = false;
    return s;
}

/* ---- cache --------------------------------------------------------------- */
struct pentry {
    int64_t pseudo;
    uint8_t len1; /* id length + 1; 0 = empty slot */
    char id[CACHE_ID_MAX];
};

struct sl__pcache {
    struct pentry *e;
    uint64_t mask;
    uint64_t hits, misses;
};

sl__pcache *sl__pcache_new(int bits)
{
    if (bits < 1) bits = 1;
    if (bits > 28) bits = 28;
    sl__pcache *c = sl__xcalloc(1, sizeof *c);
    /* calloc: the pages are only backed as slots get used */
    c->e = sl__xcalloc((size_t)1 << bits, sizeof *c->e);
    c->mask = ((uint64_t)1 << bits) - 1;
    return c;
}

void sl__pcache_free(sl__pcache *c)
{
    if (!c) return;
    free(c->e);
    free(c);
}

void sl__pcache_stats(const sl__pcache *c, uint64_t *hits, uint64_t *misses)
{
    if (hits) *hits = c ? c->hits : 0;
    if (misses) *misses = c ? c->misses : 0;
}

/* ---- batch conversion ---------------------------------------------------- */
void sl__ops_copy_column(sl_batch *dst, int dc, const sl_batch *src, int sc,
                         sl_type t)
{
    uint32_t n = src->n;
    SL_ASSERT(n <= dst->cap);
    memcpy(dst->cols[dc].valid, src->cols[sc].valid, n);
    switch (t) {
    case SL_BOOL:
        memcpy(dst->cols[dc].data, src->cols[sc].data, n);
        break;
    case SL_STRING: {
        const sl_str *s = src->cols[sc].data;
        const uint8_t *v = src->cols[sc].valid;
        sl_str *d = dst->cols[dc].data;
        size_t total = 0;
        for (uint32_t i = 0; i < n; i++) total += v[i] ? s[i].len : 0;
        char *buf = total ? sl__arena_alloc(&dst->arena, total) : NULL;
        for (uint32_t i = 0; i < n; i++) {
            if (!v[i] || s[i].len == 0) {
                d[i].ptr = "";
                d[i].len = 0;
                continue;
            }
            memcpy(buf, s[i].ptr, s[i].len);
            d[i].ptr = buf;
            d[i].len = s[i].len;
            buf += s[i].len;
        }
        break;
    }
    default:
        memcpy(dst->cols[dc].data, src->cols[sc].data, (size_t)n * 8);
        break;
    }
}

static void pseudo_block(sl__hmac *h, sl__pcache *c, const sl_str *ids,
                         const uint8_t *valid, int64_t *out, uint32_t n)
{
    uint32_t slot[BLOCK];
    for (uint32_t i = 0; i < n; i++) {
        slot[i] = UINT32_MAX;
        if (!valid[i] || ids[i].len > CACHE_ID_MAX) continue;
        slot[i] = (uint32_t)(sl__hash_bytes(ids[i].ptr, ids[i].len, CACHE_SEED) &
                             c->mask);
        __builtin_prefetch(&c->e[slot[i]]);
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!valid[i]) {
            out[i] = 0;
            continue;
        }
        if (slot[i] == UINT32_MAX) {
            out[i] = sl__hmac_pseudo(h, ids[i].ptr, ids[i].len);
            continue;
        }
        struct pentry *e = &c->e[slot[i]];
        if (e->len1 == ids[i].len + 1 && memcmp(e->id, ids[i].ptr, ids[i].len) == 0) {
            out[i] = e->pseudo;
            c->hits++;
            continue;
        }
        out[i] = e->pseudo = sl__hmac_pseudo(h, ids[i].ptr, ids[i].len);
        memcpy(e->id, ids[i].ptr, ids[i].len);
        e->len1 = (uint8_t)(ids[i].len + 1);
        c->misses++;
    }
}

sl_batch *sl__pseudo_batch(sl__hmac *h, sl__pcache *cache, const sl_batch *in,
                           int col, const sl_schema *out)
{
    SL_ASSERT(in->schema->cols[col].type == SL_STRING &&
              out->cols[col].type == SL_INT64 && out->n == in->schema->n);
    uint32_t n = in->n;
    sl_batch *b = sl__batch_new(out, in->cap);
    memcpy(b->kind, in->kind, n);
    for (int c = 0; c < out->n; c++)
        if (c != col) sl__ops_copy_column(b, c, in, c, out->cols[c].type);
    const sl_str *ids = in->cols[col].data;
    const uint8_t *valid = in->cols[col].valid;
    int64_t *ps = b->cols[col].data;
    memcpy(b->cols[col].valid, valid, n);
    if (cache) {
        for (uint32_t i = 0; i < n; i += BLOCK)
            pseudo_block(h, cache, ids + i, valid + i, ps + i,
                         n - i < BLOCK ? n - i : BLOCK);
    } else {
        for (uint32_t i = 0; i < n; i++)
            ps[i] = valid[i] ? sl__hmac_pseudo(h, ids[i].ptr, ids[i].len) : 0;
    }
    b->n = n;
    return b;
}

/* ---- the operator -------------------------------------------------------- */
typedef struct {
    int col;
    const sl_schema *out;
    sl__hmac *h;
    sl__pcache *cache;
} pseudo_op;

static void op_close(void *st)
{
    pseudo_op *p = st;
    if (!p) return;
    sl__hmac_free(p->h);
    sl__pcache_free(p->cache);
    free(p);
}

static int op_open(void **st, const void *conf, const sl__opinfo *info,
                   sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    (void)ctx;
    const sl__pseudo_conf *c = conf;
    if (c->col < 0 || c->col >= info->in->n ||
        info->in->cols[c->col].type != SL_STRING ||
        info->out->cols[c->col].type != SL_INT64)
        return sl__err(errstr, errstr_size, SL_EINTERNAL,
                       "pseudonymise: column %d is not a VARCHAR to replace",
                       c->col);
    pseudo_op *p = sl__xcalloc(1, sizeof *p);
    p->col = c->col;
    p->out = info->out;
    p->h = sl__hmac_new(c->keys, errstr, errstr_size);
    if (!p->h) {
        op_close(p);
        return SL_ECRYPTO;
    }
    if (c->cache_bits > 0) p->cache = sl__pcache_new(c->cache_bits);
    *st = p;
    return 0;
}

static int op_batch(void *st, sl_batch *b, sl__out *out)
{
    pseudo_op *p = st;
    if (b->n == 0) {
        sl__batch_free(b);
        return 0;
    }
    sl_batch *o = sl__pseudo_batch(p->h, p->cache, b, p->col, p->out);
    sl__batch_free(b);
    return sl__emit(out, o);
}

const sl__op_vt sl__op_pseudonymise = {
    .name = "pseudonymise",
    .open = op_open,
    .batch = op_batch,
    .close = op_close,
    .conf_free = free,
};

sl_stream *sl_stream_pseudonymise(sl_stream *s, const char *col,
                                  const char *out_col, const sl_keyring *keys)
{
    if (!s) return NULL;
    sl_job *job = sl__stream_job(s);
    const sl_schema *in = sl_stream_schema(s);
    int c = col ? sl_schema_find(in, col) : -1;
    if (c < 0) {
        sl__job_fail(job, SL_EINVAL, "pseudonymise: no column '%s' in the stream",
                     col ? col : "(null)");
        return NULL;
    }
    if (in->cols[c].type != SL_STRING) {
        sl__job_fail(job, SL_EINVAL, "pseudonymise: column '%s' is %s; the "
                     "identifier to pseudonymise must be VARCHAR", col,
                     sl_type_name(in->cols[c].type));
        return NULL;
    }
    if (!out_col || !*out_col) {
        sl__job_fail(job, SL_EINVAL, "pseudonymise: no output column name given");
        return NULL;
    }
    int other = sl_schema_find(in, out_col);
    if (other >= 0 && other != c) {
        sl__job_fail(job, SL_EINVAL, "pseudonymise: output column '%s' already "
                     "exists in the stream", out_col);
        return NULL;
    }
    if (!keys || sl__keyring_nkeys(keys) == 0) {
        sl__job_fail(job, SL_EINVAL, "pseudonymise: no keyring given (identifiers "
                     "must never travel un-pseudonymised)");
        return NULL;
    }
    const char *const *key = sl__stream_key(s);
    for (size_t i = 0; key && key[i]; i++) {
        if (strcmp(key[i], col) == 0) {
            sl__job_fail(job, SL_EINVAL, "pseudonymise: column '%s' is part of "
                         "the stream's key; pseudonymise before key_by so that "
                         "raw identifiers never reach an exchange", col);
            return NULL;
        }
    }
    sl_schema *out = sl__pseudo_schema(in, c, out_col);
    sl__pseudo_conf *conf = sl__xcalloc(1, sizeof *conf);
    conf->col = c;
    conf->keys = keys;
    conf->cache_bits = CACHE_BITS_DEFAULT;
    sl_stream *r = sl__stream_add_op(s, &sl__op_pseudonymise, conf, out);
    sl_schema_free(out);
    return r;
}
