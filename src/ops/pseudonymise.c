/* pseudonymise.c — the pseudonymise operator: replaces a STRING subscriber
 * identifier column by an INT64 pseudonym, the first 64 bits of
 * HMAC-SHA-256 under the keyring's current key, at the same column index.
 *
 * The batch is converted in place: the raw column is dropped from the
 * output schema and its array overwritten with the pseudonyms, so no raw
 * identifier travels past this operator (the raw bytes stay unreferenced in
 * the batch's arena, which exchanges never copy). It runs before any key_by
 * (an exchange would carry raw ids otherwise), which
 * sl_stream_pseudonymise enforces.
 *
 * Each task's instance keeps one keyed MAC context and a bounded cache raw
 * id -> pseudonym. The cache is memory only: it is never snapshotted or
 * logged, and after recovery it starts empty and refills, which changes
 * speed, never results. Canary rows are pseudonymised like data; a NULL id
 * gives a NULL pseudonym.
 *
 * The cache is 4-way set associative, 16 bytes an entry, so a set is one
 * cache line: an id of 1 to 18 digits (MSISDN, IMSI, IMEI) is kept as the
 * number 10^len + value, which is exact (leading zeros and lengths stay
 * apart) and never 0, the empty mark. Other ids bypass the cache and cost a
 * MAC each time. A miss puts its entry first in its set and drops the
 * oldest. The cache starts at 2^12 entries and doubles (rehashing its
 * entries) each time as many misses as it has entries have been inserted,
 * up to 2^bits entries: the operator's default, 2^23 entries, is 128 MiB
 * per task at most, reached only when the ids keep missing (the reference
 * job's 10 M subscribers). Tables of 2 MiB and more are mapped with
 * transparent huge pages (sl__huge_alloc), since every probe lands on a
 * random line.
 *
 * Batches are processed in blocks: pack every id of a block and prefetch
 * its set, then probe, so cache misses overlap. */
#include <stdlib.h>
#include <string.h>

#include "ops/privacy.h"

#define CACHE_BITS_DEFAULT 23
#define CACHE_BITS_START 12
#define WAYS 4
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
typedef struct {
    uint64_t key; /* pack_id of the raw id; 0 = empty */
    int64_t pseudo;
} pentry;

struct sl__pcache {
    pentry *e;        /* (mask + 1) * WAYS entries, set s at e[s * WAYS] */
    size_t bytes;     /* of the mapping */
    uint64_t mask;    /* sets - 1 */
    uint64_t max_sets;
    uint64_t fills;   /* entries inserted since the last growth */
    uint64_t hits, misses;
};

/* 10^len + value for ids of 1..18 digits, else 0 (not cached). Eight
 * digits at a time where the byte order allows (as csv.c parses). */
static inline uint64_t pack_id(const char *s, uint32_t len)
{
    static const uint64_t pow10[19] = {
        1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL,
        10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL,
        100000000000ULL, 1000000000000ULL, 10000000000000ULL,
        100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
        100000000000000000ULL, 1000000000000000000ULL};
    if (len == 0 || len > 18) return 0;
    uint64_t v = 0;
    uint32_t i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        /* all eight bytes '0'..'9' */
        if (((w & 0xF0F0F0F0F0F0F0F0ULL) |
             (((w + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4)) !=
            0x3333333333333333ULL)
            return 0;
        w -= 0x3030303030303030ULL;
        w = w * 10 + (w >> 8);
        w = (((w & 0x000000FF000000FFULL) * 0x000F424000000064ULL) +
             (((w >> 16) & 0x000000FF000000FFULL) * 0x0000271000000001ULL)) >> 32;
        v = v * 100000000 + w;
    }
#endif
    for (; i < len; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9) return 0;
        v = v * 10 + d;
    }
    return pow10[len] + v;
}

static inline uint64_t set_of(const sl__pcache *c, uint64_t key)
{
    return sl__mix64(key) & c->mask;
}

static pentry *table_new(uint64_t sets, size_t *bytes)
{
    *bytes = sets * WAYS * sizeof(pentry);
    return sl__huge_alloc(*bytes); /* zero-filled: all empty */
}

/* Puts (key, pseudo) first in its set; the oldest entry drops out. */
static inline void set_put(pentry *set, uint64_t key, int64_t pseudo)
{
    memmove(set + 1, set, (WAYS - 1) * sizeof *set);
    set[0] = (pentry){key, pseudo};
}

static void cache_grow(sl__pcache *c)
{
    pentry *old = c->e;
    size_t old_bytes = c->bytes;
    uint64_t old_sets = c->mask + 1;
    c->mask = old_sets * 2 - 1;
    c->e = table_new(old_sets * 2, &c->bytes);
    for (uint64_t s = 0; s < old_sets; s++)
        for (int w = WAYS - 1; w >= 0; w--) { /* oldest first keeps the order */
            const pentry *o = &old[s * WAYS + (uint64_t)w];
            if (o->key) set_put(&c->e[set_of(c, o->key) * WAYS], o->key, o->pseudo);
        }
    sl__huge_free(old, old_bytes);
    c->fills = 0;
}

sl__pcache *sl__pcache_new(int bits)
{
    if (bits < 2) bits = 2;
    if (bits > 28) bits = 28;
    sl__pcache *c = sl__xcalloc(1, sizeof *c);
    c->max_sets = ((uint64_t)1 << bits) / WAYS;
    uint64_t sets = ((uint64_t)1 << CACHE_BITS_START) / WAYS;
    if (sets > c->max_sets) sets = c->max_sets;
    c->mask = sets - 1;
    c->e = table_new(sets, &c->bytes);
    return c;
}

void sl__pcache_free(sl__pcache *c)
{
    if (!c) return;
    sl__huge_free(c->e, c->bytes);
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
        for (uint32_t i = 0; i < n; i++) {
            if (!v[i] || s[i].len == 0) {
                d[i] = (sl_str){"", 0};
            } else if (sl__arena_owns(&src->arena, s[i].ptr)) {
                char *p = sl__arena_alloc(&dst->arena, s[i].len);
                memcpy(p, s[i].ptr, s[i].len);
                d[i] = (sl_str){p, s[i].len};
            } else {
                d[i] = s[i]; /* outlives the job (sl_str) */
            }
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
    uint64_t key[BLOCK];
    pentry *set[BLOCK];
    for (uint32_t i = 0; i < n; i++) {
        key[i] = valid[i] ? pack_id(ids[i].ptr, ids[i].len) : 0;
        if (!key[i]) continue;
        set[i] = &c->e[set_of(c, key[i]) * WAYS];
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
        pentry *e = set[i];
        int w = 0;
        while (w < WAYS && e[w].key != key[i]) w++;
        if (w < WAYS) {
            out[i] = e[w].pseudo;
            c->hits++;
            continue;
        }
        out[i] = sl__hmac_pseudo(h, ids[i].ptr, ids[i].len);
        set_put(e, key[i], out[i]);
        c->misses++;
        c->fills++;
    }
    /* between blocks: the sets of this block were taken with the old mask */
    if (c->fills >= (c->mask + 1) * WAYS && c->mask + 1 < c->max_sets)
        cache_grow(c);
}

/* Pseudonyms of ids[0..n) into out[0..n); out may overlay ids (the
 * operator converts its batch in place), so each block's ids are copied
 * out first. */
static void pseudo_fill(sl__hmac *h, sl__pcache *cache, const sl_str *ids,
                        const uint8_t *valid, int64_t *out, uint32_t n)
{
    sl_str id[BLOCK];
    for (uint32_t i = 0; i < n; i += BLOCK) {
        uint32_t m = n - i < BLOCK ? n - i : BLOCK;
        memcpy(id, ids + i, m * sizeof *id);
        if (cache) {
            pseudo_block(h, cache, id, valid + i, out + i, m);
            continue;
        }
        for (uint32_t k = 0; k < m; k++)
            out[i + k] = valid[i + k] ? sl__hmac_pseudo(h, id[k].ptr, id[k].len) : 0;
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
    memcpy(b->cols[col].valid, in->cols[col].valid, n);
    pseudo_fill(h, cache, in->cols[col].data, in->cols[col].valid,
                b->cols[col].data, n);
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

/* In place: the id column's array (16-byte sl_str) takes the 8-byte
 * pseudonyms and the batch is re-labelled with the output schema. The raw
 * ids' bytes stay, unreferenced, in the batch's arena until the batch is
 * freed; exchanges copy only the strings a column references, so they
 * never leave the task. */
static int op_batch(void *st, sl_batch *b, sl__out *out)
{
    pseudo_op *p = st;
    if (b->n == 0) {
        sl__batch_free(b);
        return 0;
    }
    pseudo_fill(p->h, p->cache, b->cols[p->col].data, b->cols[p->col].valid,
                b->cols[p->col].data, b->n);
    sl__batch_retype(b, p->out);
    return sl__emit(out, b);
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

/* ---- key rotation ---------------------------------------------------------
 * The rotating variant picks each row's key by event time: the domain's key
 * valid at the start of the row's rotation period, floor(ts / period) *
 * period. With the period a multiple of the window size, every row of a
 * window uses one key, so a window's distinct counts never split one
 * subscriber into two pseudonyms. A row with a NULL time uses the domain's
 * newest key (the window operator dead-letters it anyway); a row older
 * than the domain's first key is dead-lettered here (reason no_key, no
 * payload), since it cannot be pseudonymised. One MAC context and one
 * cache per key in use, created on first use; a batch spanning a boundary
 * is converted once per key and the pseudonyms merged by row. */
typedef struct {
    const sl__pseudo_rot_conf *c;
    const sl_schema *out;
    int time_col;
    int nkeys;
    sl__hmac **h;       /* per key index, lazily */
    sl__pcache **cache;
    int64_t last_epoch; /* memo of the last period's key */
    int last_key;
    sl__ctx *ctx;
} rot_op;

static void rot_close(void *st)
{
    rot_op *p = st;
    if (!p) return;
    for (int i = 0; i < p->nkeys; i++) {
        sl__hmac_free(p->h[i]);
        sl__pcache_free(p->cache[i]);
    }
    free(p->h);
    free(p->cache);
    free(p);
}

static void rot_conf_free(void *conf)
{
    sl__pseudo_rot_conf *c = conf;
    if (!c) return;
    free(c->domain);
    free(c);
}

static int rot_open(void **st, const void *conf, const sl__opinfo *info,
                    sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    const sl__pseudo_rot_conf *c = conf;
    if (c->col < 0 || c->col >= info->in->n || info->time_col < 0 ||
        info->in->cols[c->col].type != SL_STRING || c->period_ms <= 0)
        return sl__err(errstr, errstr_size, SL_EINTERNAL,
                       "pseudonymise: rotation configuration does not match "
                       "the stream");
    int rc = sl__keyring_check_rotation(c->keys, c->domain, c->period_ms,
                                        errstr, errstr_size);
    if (rc) return rc;
    rot_op *p = sl__xcalloc(1, sizeof *p);
    p->c = c;
    p->out = info->out;
    p->time_col = info->time_col;
    p->nkeys = sl__keyring_nkeys(c->keys);
    p->h = sl__xcalloc((size_t)p->nkeys, sizeof *p->h);
    p->cache = sl__xcalloc((size_t)p->nkeys, sizeof *p->cache);
    p->last_epoch = SL_TS_MIN;
    p->last_key = -1;
    p->ctx = ctx;
    *st = p;
    return 0;
}

/* Key index for a row, -1 if no key of the domain was valid then. */
static int rot_key(rot_op *p, const sl_batch *b, uint32_t r)
{
    if (!b->cols[p->time_col].valid[r])
        return sl__keyring_select(p->c->keys, p->c->domain, SL_TS_MAX);
    int64_t ts = ((const int64_t *)b->cols[p->time_col].data)[r];
    int64_t epoch = sl__floor_div(ts, p->c->period_ms) * p->c->period_ms;
    if (epoch != p->last_epoch || p->last_key < 0) {
        p->last_epoch = epoch;
        p->last_key = sl__keyring_select(p->c->keys, p->c->domain, epoch);
    }
    return p->last_key;
}

static int rot_ensure(rot_op *p, int k)
{
    if (p->h[k]) return 0;
    char err[256];
    p->h[k] = sl__hmac_new_key(p->c->keys, k, err, sizeof err);
    if (!p->h[k]) return SL_ECRYPTO;
    if (p->c->cache_bits > 0) p->cache[k] = sl__pcache_new(p->c->cache_bits);
    return 0;
}

static int rot_batch(void *st, sl_batch *b, sl__out *out)
{
    rot_op *p = st;
    uint32_t n = b->n;
    if (n == 0) {
        sl__batch_free(b);
        return 0;
    }
    int16_t *key = sl__xmalloc(sizeof *key * n);
    uint8_t *keep = sl__xmalloc(n);
    int first = -1;
    bool mixed = false, dropped = false;
    for (uint32_t r = 0; r < n; r++) {
        key[r] = (int16_t)rot_key(p, b, r);
        keep[r] = key[r] >= 0;
        if (!keep[r]) {
            char pos[48];
            sl__format_ts(((const int64_t *)b->cols[p->time_col].data)[r],
                          pos, sizeof pos);
            sl__dead_letter(p->ctx, "pseudonymise", pos, "no_key", "", 0);
            dropped = true;
            continue;
        }
        if (first < 0) first = key[r];
        else if (key[r] != first) mixed = true;
    }
    int rc = 0;
    sl_batch *o = NULL;
    if (first >= 0 && (rc = rot_ensure(p, first)) == 0)
        o = sl__pseudo_batch(p->h[first], p->cache[first], b, p->c->col, p->out);
    for (uint32_t r = 0; mixed && rc == 0 && r < n; r++) {
        int k = key[r];
        if (k < 0 || k == first) continue;
        if ((rc = rot_ensure(p, k)) != 0) break;
        sl_batch *o2 = sl__pseudo_batch(p->h[k], p->cache[k], b, p->c->col,
                                        p->out);
        int64_t *dst = o->cols[p->c->col].data;
        const int64_t *src = o2->cols[p->c->col].data;
        for (uint32_t j = r; j < n; j++)
            if (key[j] == k) {
                dst[j] = src[j];
                key[j] = (int16_t)first; /* done */
            }
        sl__batch_free(o2);
    }
    sl__batch_free(b);
    if (o && dropped) sl__ops_compact(o, keep);
    free(key);
    free(keep);
    if (rc || !o || o->n == 0) {
        sl__batch_free(o);
        return rc;
    }
    return sl__emit(out, o);
}

const sl__op_vt sl__op_pseudonymise_rot = {
    .name = "pseudonymise",
    .open = rot_open,
    .batch = rot_batch,
    .close = rot_close,
    .conf_free = rot_conf_free,
};

sl_stream *sl_stream_pseudonymise_rotating(sl_stream *s, const char *col,
                                           const char *out_col,
                                           const sl_keyring *keys,
                                           const sl_rotation *rot)
{
    if (!s) return NULL;
    sl_job *job = sl__stream_job(s);
    if (!rot || rot->period_ms <= 0) {
        sl__job_fail(job, SL_EINVAL, "pseudonymise: rotation period_ms must be "
                     "> 0 (a multiple of the window size, e.g. 86400000)");
        return NULL;
    }
    char err[512];
    int rc = keys ? sl__keyring_check_rotation(keys, rot->domain, rot->period_ms,
                                               err, sizeof err)
                  : SL_EINVAL;
    if (rc) {
        sl__job_fail(job, SL_EINVAL, "pseudonymise: %s",
                     keys ? err : "no keyring given");
        return NULL;
    }
    if (!sl__stream_time_col(s)) {
        sl__job_fail(job, SL_EINVAL, "pseudonymise: rotation needs the stream's "
                     "event time (source key time.column)");
        return NULL;
    }
    const sl_schema *in = sl_stream_schema(s);
    int c = col ? sl_schema_find(in, col) : -1;
    const char *const *key = sl__stream_key(s);
    bool keyed = false;
    for (size_t i = 0; c >= 0 && key && key[i]; i++) keyed |= !strcmp(key[i], col);
    sl_schema *out = c >= 0 && in->cols[c].type == SL_STRING && !keyed
                         ? sl__pseudo_schema(in, c, out_col) : NULL;
    if (!out) {
        sl__job_fail(job, SL_EINVAL, "pseudonymise: '%s' must be a VARCHAR "
                     "column, not part of the key, and '%s' a new column name",
                     col ? col : "(null)", out_col ? out_col : "(null)");
        return NULL;
    }
    sl__pseudo_rot_conf *conf = sl__xcalloc(1, sizeof *conf);
    conf->col = c;
    conf->keys = keys;
    conf->domain = rot->domain ? sl__xstrdup(rot->domain) : NULL;
    conf->period_ms = rot->period_ms;
    conf->cache_bits = CACHE_BITS_DEFAULT;
    sl_stream *r = sl__stream_add_op(s, &sl__op_pseudonymise_rot, conf, out);
    sl_schema_free(out);
    return r;
}
