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
 * Each task's instance keeps one keyed MAC context; the raw id ->
 * pseudonym cache is the keyring's, one per key, shared by every task and
 * by the subscriber table's load (pcache.c), so a subscriber's MAC is
 * computed once in the process, not once per task. The cache is memory
 * only: it is never snapshotted or logged, and a process restarted from a
 * checkpoint starts with it empty and refills it, which changes speed, never results. Canary rows are
 * pseudonymised like data; a NULL id gives a NULL pseudonym.
 *
 * Fused with the lookup join after it (sl_stream_lookup sets join_* in
 * the configuration), the operator also joins: through the table's
 * pseudonym-join memo (pjoin.c), one probe a row gives the pseudonym and
 * the joined value, and the batch leaves in the lookup's output schema. */
#include <stdlib.h>
#include <string.h>

#include "ops/privacy.h"
#include "state/state.h"

#define CACHE_BITS_DEFAULT SL__PCACHE_BITS

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
    sl__pcache_pseudo(cache, h, in->cols[col].data, in->cols[col].valid,
                b->cols[col].data, n);
    b->n = n;
    return b;
}

/* ---- the operator -------------------------------------------------------- */
typedef struct {
    int col;
    const sl_schema *out;
    sl__hmac *h;
    sl__pcache *cache; /* the keyring's (borrowed), NULL: none */
    /* fused with the lookup join after it (sl__pseudo_conf.join_*) */
    const sl__pjidx *pj; /* the table's memo, NULL: not fused */
    const sl_table *jt;
    int jtcol;
    const sl_schema *jout;
} pseudo_op;

static void op_close(void *st)
{
    pseudo_op *p = st;
    if (!p) return;
    sl__hmac_free(p->h);
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
    if (c->cache_bits > 0) p->cache = sl__hmac_cache(p->h);
    /* the memo exists only for a table loaded under this very key (its
     * cache is the key's identity); otherwise the lookup joins as usual */
    if (c->join_table && p->cache &&
        (p->pj = sl__pjoin_index(c->join_table, c->join_tcol, p->cache))) {
        p->jt = c->join_table;
        p->jtcol = c->join_tcol;
        p->jout = c->join_out;
    }
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
    /* fused: the batch leaves joined, in the lookup's schema, which the
     * lookup passes on as it is; a refreshed table's changed rows (its
     * overlay, loaded once per batch so a batch sees one version) win
     * over the memo's loaded ones */
    if (p->pj) {
        sl__batch_extend(b, p->jout);
        sl__pjoin_batch(p->pj, p->cache, p->h, p->jt, sl__table_overlay(p->jt),
                        p->jtcol, b, p->col, p->jout->n - 1, NULL);
        return sl__emit(out, b);
    }
    sl__pcache_pseudo(p->cache, p->h, b->cols[p->col].data,
                      b->cols[p->col].valid, b->cols[p->col].data, b->n);
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
    sl__pcache **cache; /* the keyring's (borrowed) */
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
    if (p->c->cache_bits > 0) p->cache[k] = sl__hmac_cache(p->h[k]);
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
