/* ijoin.c — the interval join of a keyed stream with itself:
 * sl_stream_interval_join() and its operator.
 *
 * One input, keyed by the join key (sl_stream_key_by). Two batch
 * predicates classify each data row as a left row, a right row, both or
 * neither. A left row a and a right row b of the same key join when
 * a.ts + lower <= b.ts <= a.ts + upper; the pair becomes one output row
 * (the left row's chosen columns, then the right row's). This is Flink's
 * KeyedStream.intervalJoin for the case where both sides come from one
 * stream (a telecom event stream: CALL_PLACED followed by DATA_SESSION),
 * so no two-input runtime is needed. It does not do outer joins, nor
 * joins of two different sources.
 *
 * Invariants (each kept by the function named):
 *  1. A row with ts < wm (the watermark seen so far) is late: counted
 *     (SL__CTR_LATE), never buffered (ij_batch). So every right row that can
 *     match a left row a has arrived once wm > a.ts + upper.
 *  2. A left row is emitted, with all its matches, exactly once: at the
 *     first watermark > a.ts + upper, and then freed (ij_watermark).
 *  3. A right row is kept while a pending or future left row may match it,
 *     i.e. until b.ts + upper - lower < wm (ij_watermark): pending left
 *     rows have a.ts >= wm - upper, future ones a.ts >= wm.
 *  4. The rows emitted at one watermark are sorted by (a.ts, key bytes,
 *     left row bytes, b.ts, right row bytes), a function of the state only,
 *     so a replay after recovery publishes the same rows in the same order
 *     whatever the interleaving of upstream tasks (pair_cmp).
 *  5. Every buffered row has one timer (due time, key) in a min-heap, so
 *     a watermark visits only the keys with a due row (timer_push,
 *     ij_watermark).
 *  6. State holds copies of the needed columns only, encoded (row_put);
 *     raw identifiers reach it only if the caller keys or selects them —
 *     the SQL planner pseudonymises them first.
 *
 * Checkpoints: one section per key group (keys in byte order, each with
 * its left and right rows in arrival order) and one operator-wide section
 * (counters); both carry the watermark and a fingerprint of the definition,
 * so a changed job refuses the snapshot, and a section is restored whole
 * or not at all (ij_restore). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/agg.h"
#include "ops/ijoin.h"

#define SNAP_MAGIC 0x494a4e31u /* "IJN1" */

typedef struct {
    sl_filter_fn pred[2];
    void *udata[2];
    int64_t lower, upper;
    int ncol[2];
    int *cols[2];   /* input column indices per side */
    int nkey;
    int out_time;   /* output column that is the event time */
} ij_conf;

typedef struct {
    int64_t ts;
    uint32_t len;
    uint8_t *p;     /* the row's encoded columns (row_put) */
} ij_row;

typedef struct {
    ij_row *v;
    uint32_t n, cap;
} ij_rows;

typedef struct {
    int32_t kg;
    uint32_t idx;    /* the entry's index in the key map */
    uint64_t mark;   /* the watermark pass that last visited the key */
    ij_rows side[2]; /* 0 = left, 1 = right */
} ij_key;

/* When a buffered row becomes due (see due()), for the key at idx: a
 * min-heap of them tells a watermark which keys to visit, so an advance
 * costs the due rows' keys, not every key. */
typedef struct {
    int64_t due;
    uint32_t idx;
} ij_timer;

typedef struct {
    const ij_conf *conf;
    const sl_schema *in, *out;
    sl__ctx *ctx;
    uint32_t batch_cap;
    int time_col;
    int nkey;
    int key_cols[SL_MAX_COLS];
    sl__wkey kl;
    int64_t wm;
    ij_timer *heap; /* one timer per buffered row */
    size_t nheap, cheap;
    uint64_t pass;
    uint32_t empty; /* keys left without rows (until compact() drops them) */
    int key_groups;
    uint64_t fp;
    bool started, wm_restored;
    sl__bmap keys; /* encoded key -> ij_key */
    uint8_t *kbuf;
    size_t kcap;
    sl__buf rbuf;
    uint64_t late, canaries, null_time, pairs;
} ij_op;

/* ---- definition ------------------------------------------------------------ */
static void conf_free(void *p)
{
    ij_conf *c = p;
    if (!c) return;
    free(c->cols[0]);
    free(c->cols[1]);
    free(c);
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (!__builtin_add_overflow(a, b, &r)) return r;
    return b > 0 ? SL_TS_MAX : SL_TS_MIN;
}

int sl__ijoin_conf_new(void **confp, sl_schema **outp, const sl_schema *in,
                       const char *const *keys, const char *time_col,
                       const sl_interval_join_spec *spec, char *errstr, size_t errsz)
{
    *confp = NULL;
    *outp = NULL;
    if (!spec) return sl__err(errstr, errsz, SL_EINVAL, "interval_join: no spec");
    if (spec->lower_ms > spec->upper_ms)
        return sl__err(errstr, errsz, SL_EINVAL, "interval_join: lower_ms (%lld) must be <= "
                       "upper_ms (%lld)", (long long)spec->lower_ms, (long long)spec->upper_ms);
    int tc = time_col ? sl_schema_find(in, time_col) : -1;
    if (tc < 0)
        return sl__err(errstr, errsz, SL_EINVAL, "interval_join: the stream has no event-time "
                       "column (source key 'time.column')");
    if (spec->nleft + spec->nright == 0 || spec->nleft + spec->nright > SL_MAX_COLS)
        return sl__err(errstr, errsz, SL_EINVAL, "interval_join: 1 to %d output columns "
                       "(left_cols and right_cols), got %zu", SL_MAX_COLS,
                       spec->nleft + spec->nright);
    ij_conf *c = sl__xcalloc(1, sizeof *c);
    c->pred[0] = spec->left;
    c->pred[1] = spec->right;
    c->udata[0] = spec->left_udata;
    c->udata[1] = spec->right_udata;
    c->lower = spec->lower_ms;
    c->upper = spec->upper_ms;
    while (keys && keys[c->nkey]) c->nkey++;
    sl_schema *out = sl_schema_new();
    int first_time = -1;
    for (int side = 0; side < 2; side++) {
        const sl_join_col *jc = side ? spec->right_cols : spec->left_cols;
        int n = (int)(side ? spec->nright : spec->nleft);
        c->ncol[side] = n;
        c->cols[side] = sl__xcalloc((size_t)n + 1, sizeof(int));
        for (int i = 0; i < n; i++) {
            const char *name = jc[i].col ? jc[i].col : "(null)";
            int ic = jc[i].col ? sl_schema_find(in, jc[i].col) : -1;
            if (ic < 0) {
                sl__err(errstr, errsz, SL_EINVAL, "interval_join: %s_cols[%d]: no column '%s' "
                        "in the stream", side ? "right" : "left", i, name);
                goto fail;
            }
            const char *as = jc[i].as ? jc[i].as : jc[i].col;
            int oc = sl_schema_add(out, as, in->cols[ic].type);
            if (oc < 0) {
                sl__err(errstr, errsz, SL_EINVAL, "interval_join: output column '%s' is named "
                        "twice (set a distinct 'as')", as);
                goto fail;
            }
            if (in->cols[ic].identifier) sl_schema_set_identifier(out, oc);
            if (in->cols[ic].ndomain)
                sl_schema_set_domain(out, oc, (const char *const *)in->cols[ic].domain);
            if (ic == tc && first_time < 0) first_time = oc;
            c->cols[side][i] = ic;
        }
    }
    if (spec->time_col) {
        int oc = sl_schema_find(out, spec->time_col);
        if (oc < 0 || (out->cols[oc].type != SL_TIMESTAMP && out->cols[oc].type != SL_INT64)) {
            sl__err(errstr, errsz, SL_EINVAL, "interval_join: time_col '%s' must name a "
                    "TIMESTAMP or BIGINT output column", spec->time_col);
            goto fail;
        }
        c->out_time = oc;
    } else if (first_time >= 0) {
        c->out_time = first_time;
    } else {
        sl__err(errstr, errsz, SL_EINVAL, "interval_join: no output column carries the event "
                "time: take '%s' from one side or set time_col", time_col);
        goto fail;
    }
    *confp = c;
    *outp = out;
    return 0;
fail:
    sl_schema_free(out);
    conf_free(c);
    return SL_EINVAL;
}

sl_stream *sl_stream_interval_join(sl_stream *s, const sl_interval_join_spec *spec)
{
    if (!s) return NULL;
    void *conf;
    sl_schema *out;
    char err[512];
    int rc = sl__ijoin_conf_new(&conf, &out, sl_stream_schema(s), sl__stream_key(s),
                                sl__stream_time_col(s), spec, err, sizeof err);
    if (rc < 0) {
        sl__job_fail(sl__stream_job(s), rc, "%s", err);
        return NULL;
    }
    /* read before the job owns conf (it frees it on failure) */
    char *tname = sl__xstrdup(sl_schema_col_name(out, conf ? ((ij_conf *)conf)->out_time : 0));
    sl_stream *ns = sl__stream_add_op(s, &sl__ijoin_vt, conf, out);
    if (ns) sl__stream_set_time_col(ns, tname);
    free(tname);
    sl_schema_free(out);
    return ns;
}

/* ---- rows ------------------------------------------------------------------- */
/* A row's columns of one side: per column a presence byte (0 = NULL), then
 * 8 bytes little-endian (INT64, TIMESTAMP, FLOAT64 bits), 1 byte (BOOL) or
 * a u32 length and the bytes (STRING). */
static void row_put(const ij_op *op, int side, const sl_batch *b, uint32_t r, sl__buf *o)
{
    const ij_conf *c = op->conf;
    o->len = 0;
    for (int i = 0; i < c->ncol[side]; i++) {
        int ic = c->cols[side][i];
        const struct sl__col *col = &b->cols[ic];
        uint8_t present = !col->valid || col->valid[r];
        sl__buf_put(o, &present, 1);
        if (!present) continue;
        switch (op->in->cols[ic].type) {
        case SL_STRING: {
            sl_str v = ((const sl_str *)col->data)[r];
            sl__buf_put_str(o, v.ptr, v.len);
            break;
        }
        case SL_BOOL:
            sl__buf_put(o, (const uint8_t *)col->data + r, 1);
            break;
        default:
            sl__buf_put_u64(o, ((const uint64_t *)col->data)[r]);
        }
    }
}

/* Checks that p[0..len) is a row of `side` (for restores). */
static bool row_valid(const ij_op *op, int side, const uint8_t *p, uint32_t len)
{
    const ij_conf *c = op->conf;
    sl__rbuf r = {.p = p, .len = len};
    for (int i = 0; i < c->ncol[side]; i++) {
        const uint8_t *pr = sl__rbuf_bytes(&r, 1);
        if (!pr || *pr > 1) return false;
        if (!*pr) continue;
        switch (op->in->cols[c->cols[side][i]].type) {
        case SL_STRING: {
            uint32_t n;
            (void)sl__rbuf_str(&r, &n);
            break;
        }
        case SL_BOOL:
            (void)sl__rbuf_bytes(&r, 1);
            break;
        default:
            (void)sl__rbuf_u64(&r);
        }
    }
    return !r.err && r.off == r.len;
}

/* Writes a row of `side` into output columns off.. of ob, row `row`. */
static void row_get(const ij_op *op, int side, const uint8_t *p, uint32_t len, sl_batch *ob,
                    int off, uint32_t row)
{
    const ij_conf *c = op->conf;
    sl__rbuf r = {.p = p, .len = len};
    for (int i = 0; i < c->ncol[side]; i++) {
        int oc = off + i;
        const uint8_t *pr = sl__rbuf_bytes(&r, 1);
        if (!pr || !*pr) {
            ob->cols[oc].valid[row] = 0;
            continue;
        }
        switch (op->out->cols[oc].type) {
        case SL_STRING: {
            uint32_t n;
            const char *s = sl__rbuf_str(&r, &n);
            sl_batch_set_str(ob, oc, row, s ? s : "", s ? n : 0);
            break;
        }
        case SL_BOOL: {
            const uint8_t *v = sl__rbuf_bytes(&r, 1);
            ((uint8_t *)ob->cols[oc].data)[row] = v ? *v : 0;
            break;
        }
        default:
            ((uint64_t *)ob->cols[oc].data)[row] = sl__rbuf_u64(&r);
        }
        ob->cols[oc].valid[row] = 1;
    }
}

static void rows_push(ij_rows *v, int64_t ts, const void *p, uint32_t len)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 4;
        v->v = sl__xrealloc(v->v, v->cap * sizeof *v->v);
    }
    uint8_t *c = sl__xmalloc(len ? len : 1);
    if (len) memcpy(c, p, len);
    v->v[v->n++] = (ij_row){ts, len, c};
}

static void rows_free(ij_rows *v)
{
    for (uint32_t i = 0; i < v->n; i++) free(v->v[i].p);
    free(v->v);
    memset(v, 0, sizeof *v);
}

/* When a buffered row stops mattering: a left row is emitted once the
 * watermark exceeds ts + upper, a right row dropped once it exceeds
 * ts + upper - lower. */
static int64_t due(const ij_op *op, int side, int64_t ts)
{
    const ij_conf *c = op->conf;
    return side ? sat_add(sat_add(ts, c->upper), -c->lower) : sat_add(ts, c->upper);
}

static void timer_push(ij_op *op, int64_t d, uint32_t idx)
{
    if (op->nheap == op->cheap)
        op->heap = sl__xrealloc(op->heap, (op->cheap = op->cheap ? 2 * op->cheap : 256) *
                                              sizeof *op->heap);
    size_t i = op->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (op->heap[p].due <= d) break;
        op->heap[i] = op->heap[p];
        i = p;
    }
    op->heap[i] = (ij_timer){d, idx};
}

static ij_timer timer_pop(ij_op *op)
{
    ij_timer top = op->heap[0], last = op->heap[--op->nheap];
    size_t i = 0, n = op->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && op->heap[c + 1].due < op->heap[c].due) c++;
        if (last.due <= op->heap[c].due) break;
        op->heap[i] = op->heap[c];
        i = c;
    }
    if (n) op->heap[i] = last;
    return top;
}

/* ---- input ------------------------------------------------------------------ */
static size_t key_bound(const ij_op *op, const sl_batch *b, uint32_t r)
{
    size_t n = 16;
    for (int k = 0; k < op->nkey; k++) {
        int c = op->key_cols[k];
        n += 1 + (op->in->cols[c].type == SL_STRING
                      ? 2 * (size_t)((const sl_str *)b->cols[c].data)[r].len + 2 : 8);
    }
    return n;
}

static int32_t row_kg(const ij_op *op, const sl_batch *b, uint32_t row)
{
    if (op->nkey == 0 || op->key_groups <= 1) return 0;
    if (b->khash) return (int32_t)(b->khash[row] % (uint64_t)op->key_groups);
    return sl__key_group(b, op->key_cols, op->nkey, row, op->key_groups);
}

static void copy_cell(sl_batch *o, int oc, uint32_t orow, const sl_batch *b, int ic, uint32_t r)
{
    const struct sl__col *c = &b->cols[ic];
    if (c->valid && !c->valid[r]) {
        o->cols[oc].valid[orow] = 0;
        return;
    }
    switch (o->schema->cols[oc].type) {
    case SL_STRING: {
        sl_str v = ((const sl_str *)c->data)[r];
        sl_batch_set_str(o, oc, orow, v.ptr, v.len);
        break;
    }
    case SL_BOOL:
        ((uint8_t *)o->cols[oc].data)[orow] = ((const uint8_t *)c->data)[r];
        break;
    default:
        ((uint64_t *)o->cols[oc].data)[orow] = ((const uint64_t *)c->data)[r];
    }
    o->cols[oc].valid[orow] = 1;
}

/* Canary rows leave at once, each output column taken from the canary's
 * own input column (both sides from the same row), their kind kept. */
static int emit_canaries(ij_op *op, const sl_batch *b, sl__out *out)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < b->n; i++) n += b->kind[i] != SL_KIND_DATA;
    if (!n) return 0;
    const ij_conf *c = op->conf;
    sl_batch *o = sl__batch_new(op->out, n);
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->kind[i] == SL_KIND_DATA) continue;
        uint32_t r = o->n++;
        int oc = 0;
        for (int side = 0; side < 2; side++)
            for (int j = 0; j < c->ncol[side]; j++) copy_cell(o, oc++, r, b, c->cols[side][j], i);
        o->kind[r] = b->kind[i];
        op->canaries++;
    }
    return sl__emit(out, o);
}

static int ij_batch(void *st, sl_batch *b, sl__out *out)
{
    ij_op *op = st;
    const ij_conf *c = op->conf;
    op->started = true;
    int rc = emit_canaries(op, b, out);
    if (rc < 0) {
        sl__batch_free(b);
        return rc;
    }
    uint8_t *keep[2];
    for (int side = 0; side < 2; side++) {
        keep[side] = sl__xmalloc(b->n ? b->n : 1);
        memset(keep[side], c->pred[side] ? 0 : 1, b->n);
        if (c->pred[side] && b->n) c->pred[side](b, keep[side], c->udata[side]);
    }
    const int64_t *ts = b->cols[op->time_col].data;
    const uint8_t *tv = b->cols[op->time_col].valid;
    uint64_t late = 0;
    for (uint32_t r = 0; r < b->n; r++) {
        if (b->kind[r] != SL_KIND_DATA || !(keep[0][r] || keep[1][r])) continue;
        if (tv && !tv[r]) {
            char pos[32];
            snprintf(pos, sizeof pos, "batch row %u", r);
            op->null_time++;
            sl__dead_letter(op->ctx, "interval_join", pos, "null_time", "", 0);
            continue;
        }
        if (ts[r] < op->wm) {
            late++;
            continue;
        }
        size_t need = key_bound(op, b, r);
        if (need > op->kcap) op->kbuf = sl__xrealloc(op->kbuf, op->kcap = need);
        size_t len = sl__wkey_encode(&op->kl, b, r, op->kbuf);
        bool fresh;
        ij_key *k = sl__bmap_upsert(&op->keys, op->kbuf, len,
                                    sl__wkey_hash(&op->kl, op->kbuf, (uint32_t)len), &fresh);
        if (fresh) {
            k->kg = row_kg(op, b, r);
            k->idx = sl__bmap_count(&op->keys) - 1;
        }
        for (int side = 0; side < 2; side++) {
            if (!keep[side][r]) continue;
            row_put(op, side, b, r, &op->rbuf);
            rows_push(&k->side[side], ts[r], op->rbuf.p, (uint32_t)op->rbuf.len);
            timer_push(op, due(op, side, ts[r]), k->idx);
        }
    }
    free(keep[0]);
    free(keep[1]);
    if (late) {
        op->late += late;
        sl__count(op->ctx, SL__CTR_LATE, late);
    }
    sl__batch_free(b);
    return 0;
}

/* ---- emission --------------------------------------------------------------- */
typedef struct {
    const uint8_t *key;
    uint32_t klen;
    ij_row a, b; /* copies: the bytes stay put until the output is built */
} ij_pair;

static int bytes_cmp(const uint8_t *x, uint32_t xl, const uint8_t *y, uint32_t yl)
{
    uint32_t n = xl < yl ? xl : yl;
    int c = n ? memcmp(x, y, n) : 0;
    if (c) return c;
    return (xl > yl) - (xl < yl);
}

/* Invariant 4: identical keys and rows give identical output rows, so ties
 * need no further order. */
static int pair_cmp(const void *x, const void *y)
{
    const ij_pair *p = x, *q = y;
    if (p->a.ts != q->a.ts) return p->a.ts < q->a.ts ? -1 : 1;
    int c = bytes_cmp(p->key, p->klen, q->key, q->klen);
    if (c) return c;
    if ((c = bytes_cmp(p->a.p, p->a.len, q->a.p, q->a.len))) return c;
    if (p->b.ts != q->b.ts) return p->b.ts < q->b.ts ? -1 : 1;
    return bytes_cmp(p->b.p, p->b.len, q->b.p, q->b.len);
}

static int emit_pairs(ij_op *op, ij_pair *pv, size_t np, sl__out *out)
{
    const ij_conf *c = op->conf;
    if (np > 1) qsort(pv, np, sizeof *pv, pair_cmp);
    uint32_t cap = out->batch_cap ? out->batch_cap : op->batch_cap ? op->batch_cap : 1024;
    sl_batch *ob = NULL;
    int rc = 0;
    for (size_t i = 0; i < np && rc == 0; i++) {
        if (!ob) ob = sl__batch_new(op->out, cap);
        uint32_t r = ob->n++;
        row_get(op, 0, pv[i].a.p, pv[i].a.len, ob, 0, r);
        row_get(op, 1, pv[i].b.p, pv[i].b.len, ob, c->ncol[0], r);
        ob->kind[r] = SL_KIND_DATA;
        if (ob->n == cap) {
            rc = sl__emit(out, ob);
            ob = NULL;
        }
    }
    if (ob && rc == 0 && ob->n) rc = sl__emit(out, ob);
    else if (ob) sl__batch_free(ob);
    return rc;
}

/* Rebuilds the key map without its empty entries, and the timers. */
static void compact(ij_op *op)
{
    sl__bmap m;
    sl__bmap_init(&m, sizeof(ij_key));
    op->nheap = 0;
    for (uint32_t i = 0; i < sl__bmap_count(&op->keys); i++) {
        const uint8_t *key;
        uint32_t klen;
        ij_key *k = sl__bmap_at(&op->keys, i, &key, &klen);
        if (!k->side[0].n && !k->side[1].n) {
            rows_free(&k->side[0]);
            rows_free(&k->side[1]);
            continue;
        }
        ij_key *d = sl__bmap_upsert(&m, key, klen, sl__bmap_hash_at(&op->keys, i), NULL);
        *d = *k;
        d->idx = sl__bmap_count(&m) - 1;
        for (int side = 0; side < 2; side++)
            for (uint32_t j = 0; j < d->side[side].n; j++)
                timer_push(op, due(op, side, d->side[side].v[j].ts), d->idx);
    }
    sl__bmap_close(&op->keys);
    op->keys = m;
}

static int ij_watermark(void *st, int64_t wm, sl__out *out)
{
    ij_op *op = st;
    const ij_conf *c = op->conf;
    op->started = true;
    if (wm <= op->wm) return 0;
    op->wm = wm;
    if (!op->nheap || op->heap[0].due >= wm) return 0;
    /* the keys with a row that is due (each once) */
    uint32_t *ks = NULL;
    size_t nk = 0, ck = 0;
    op->pass++;
    while (op->nheap && op->heap[0].due < wm) {
        ij_timer t = timer_pop(op);
        ij_key *k = sl__bmap_at(&op->keys, t.idx, NULL, NULL);
        if (k->mark == op->pass) continue;
        k->mark = op->pass;
        if (nk == ck) ks = sl__xrealloc(ks, (ck = ck ? 2 * ck : 64) * sizeof *ks);
        ks[nk++] = t.idx;
    }
    ij_pair *pv = NULL;
    size_t np = 0, cp = 0;
    uint8_t **done = NULL; /* bytes of the emitted left rows */
    size_t nd = 0, cd = 0;
    /* invariant 2: emit the left rows that are due, with their matches */
    for (size_t i = 0; i < nk; i++) {
        const uint8_t *key;
        uint32_t klen;
        ij_key *k = sl__bmap_at(&op->keys, ks[i], &key, &klen);
        ij_rows *L = &k->side[0];
        const ij_rows *R = &k->side[1];
        uint32_t kept = 0;
        for (uint32_t j = 0; j < L->n; j++) {
            ij_row a = L->v[j];
            if (due(op, 0, a.ts) >= wm) {
                L->v[kept++] = a;
                continue;
            }
            int64_t lo = sat_add(a.ts, c->lower), hi = sat_add(a.ts, c->upper);
            for (uint32_t x = 0; x < R->n; x++) {
                if (R->v[x].ts < lo || R->v[x].ts > hi) continue;
                if (np == cp) pv = sl__xrealloc(pv, (cp = cp ? 2 * cp : 64) * sizeof *pv);
                pv[np++] = (ij_pair){key, klen, a, R->v[x]};
            }
            if (nd == cd) done = sl__xrealloc(done, (cd = cd ? 2 * cd : 64) * sizeof *done);
            done[nd++] = a.p;
        }
        L->n = kept;
    }
    int rc = emit_pairs(op, pv, np, out);
    if (np) op->pairs += np;
    for (size_t i = 0; i < nd; i++) free(done[i]);
    free(done);
    free(pv);
    /* invariant 3: drop the right rows no left row can match any more */
    for (size_t i = 0; i < nk; i++) {
        ij_key *k = sl__bmap_at(&op->keys, ks[i], NULL, NULL);
        ij_rows *R = &k->side[1];
        uint32_t kept = 0;
        for (uint32_t j = 0; j < R->n; j++) {
            if (due(op, 1, R->v[j].ts) >= wm) R->v[kept++] = R->v[j];
            else free(R->v[j].p);
        }
        R->n = kept;
        if (!k->side[0].n && !R->n) op->empty++;
    }
    free(ks);
    if (op->empty > 4096 && op->empty > sl__bmap_count(&op->keys) / 2) {
        compact(op);
        op->empty = 0;
    }
    return rc;
}

/* ---- checkpoints ------------------------------------------------------------ */
static uint64_t definition_fp(const ij_op *op)
{
    const ij_conf *c = op->conf;
    sl__buf b = {0};
    sl__buf_put_i64(&b, c->lower);
    sl__buf_put_i64(&b, c->upper);
    sl__buf_put_u32(&b, (uint32_t)op->nkey);
    for (int k = 0; k < op->nkey; k++)
        sl__buf_put_u32(&b, (uint32_t)op->in->cols[op->key_cols[k]].type);
    for (int side = 0; side < 2; side++) {
        sl__buf_put_u32(&b, (uint32_t)c->ncol[side]);
        for (int i = 0; i < c->ncol[side]; i++)
            sl__buf_put_u32(&b, (uint32_t)op->in->cols[c->cols[side][i]].type);
    }
    for (int i = 0; i < op->out->n; i++)
        sl__buf_put_str(&b, op->out->cols[i].name, strlen(op->out->cols[i].name));
    uint64_t h = sl__hash_bytes(b.p, b.len, SNAP_MAGIC);
    sl__buf_free(&b);
    return h;
}

typedef struct {
    const uint8_t *key;
    uint32_t len;
    const ij_key *k;
} kref;

static int kref_cmp(const void *x, const void *y)
{
    const kref *a = x, *b = y;
    if (a->k->kg != b->k->kg) return a->k->kg < b->k->kg ? -1 : 1;
    return bytes_cmp(a->key, a->len, b->key, b->len);
}

static void header(const ij_op *op, sl__buf *b)
{
    sl__opsnap_header(b, SNAP_MAGIC, op->fp, op->wm);
}

static int ij_snapshot(void *st, sl__snap_writer *w)
{
    ij_op *op = st;
    uint32_t nk = sl__bmap_count(&op->keys);
    kref *refs = sl__xmalloc((nk ? nk : 1) * sizeof *refs);
    size_t n = 0;
    for (uint32_t i = 0; i < nk; i++) {
        const uint8_t *key;
        uint32_t len;
        const ij_key *k = sl__bmap_at(&op->keys, i, &key, &len);
        if (k->side[0].n || k->side[1].n) refs[n++] = (kref){key, len, k};
    }
    if (n > 1) qsort(refs, n, sizeof *refs, kref_cmp);
    sl__buf b = {0};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        int32_t kg = refs[i].k->kg;
        size_t j = i;
        while (j < n && refs[j].k->kg == kg) j++;
        b.len = 0;
        header(op, &b);
        sl__buf_put_u32(&b, (uint32_t)(j - i));
        for (; i < j; i++) {
            sl__buf_put_str(&b, (const char *)refs[i].key, refs[i].len);
            for (int side = 0; side < 2; side++) {
                const ij_rows *v = &refs[i].k->side[side];
                sl__buf_put_u32(&b, v->n);
                for (uint32_t x = 0; x < v->n; x++) {
                    sl__buf_put_i64(&b, v->v[x].ts);
                    sl__buf_put_str(&b, (const char *)v->v[x].p, v->v[x].len);
                }
            }
        }
        rc = sl__snap_put(w, kg, b.p, b.len);
    }
    if (rc == 0) {
        b.len = 0;
        header(op, &b);
        sl__opsnap_put_counters(&b, (const uint64_t[]){op->late, op->canaries,
                                                       op->null_time, op->pairs}, 4);
        rc = sl__snap_put(w, -1, b.p, b.len);
    }
    free(refs);
    sl__buf_free(&b);
    return rc;
}

static void restore_wm(ij_op *op, int64_t wm)
{
    sl__opsnap_restore_wm(&op->wm, &op->wm_restored, wm);
}

/* Parses a whole key-group section before changing anything. */
static int ij_restore(void *st, int32_t kg, const void *data, size_t len)
{
    ij_op *op = st;
    if (op->started) return SL_ESTATE;
    sl__rbuf r;
    int64_t wm;
    int orc = sl__opsnap_open(&r, data, len, kg, op->key_groups, SNAP_MAGIC, op->fp, &wm);
    if (orc) return orc;
    if (kg == -1) {
        uint64_t c[4] = {0};
        if (sl__opsnap_add_counters(&r, c, 4)) return SL_ECORRUPT;
        op->late += c[0];
        op->canaries += c[1];
        op->null_time += c[2];
        op->pairs += c[3];
        restore_wm(op, wm);
        return 0;
    }
    size_t body = r.off;
    /* pass 0: check everything; pass 1: apply */
    for (int pass = 0; pass < 2; pass++) {
        r.off = body;
        uint32_t nk = sl__rbuf_u32(&r);
        if (r.err || nk > len) return SL_ECORRUPT;
        const char *prev = NULL;
        uint32_t prev_len = 0;
        for (uint32_t i = 0; i < nk; i++) {
            uint32_t klen;
            const char *key = sl__rbuf_str(&r, &klen);
            if (r.err || !key) return SL_ECORRUPT;
            if (prev && bytes_cmp((const uint8_t *)prev, prev_len, (const uint8_t *)key,
                                  klen) >= 0)
                return SL_ECORRUPT; /* keys strictly ascending, as written */
            prev = key;
            prev_len = klen;
            uint64_t h = sl__wkey_hash(&op->kl, (const uint8_t *)key, klen);
            ij_key *k = NULL;
            if (pass == 0) {
                const ij_key *have = sl__bmap_find(&op->keys, key, klen, h);
                if (have && (have->side[0].n || have->side[1].n))
                    return SL_ECORRUPT; /* a key in two sections */
            } else {
                bool fresh;
                k = sl__bmap_upsert(&op->keys, key, klen, h, &fresh);
                if (fresh) k->idx = sl__bmap_count(&op->keys) - 1;
                k->kg = kg;
            }
            uint32_t rows = 0;
            for (int side = 0; side < 2; side++) {
                uint32_t nr = sl__rbuf_u32(&r);
                if (r.err || nr > len) return SL_ECORRUPT;
                rows += nr;
                for (uint32_t x = 0; x < nr; x++) {
                    int64_t ts = sl__rbuf_i64(&r);
                    uint32_t rl;
                    const char *rp = sl__rbuf_str(&r, &rl);
                    if (r.err || !rp) return SL_ECORRUPT;
                    if (pass == 0) {
                        if (!row_valid(op, side, (const uint8_t *)rp, rl)) return SL_ECORRUPT;
                        continue;
                    }
                    rows_push(&k->side[side], ts, rp, rl);
                    timer_push(op, due(op, side, ts), k->idx);
                }
            }
            if (rows == 0) return SL_ECORRUPT; /* pass 0 only: empty keys are not written */
        }
        if (r.err || r.off != r.len) return SL_ECORRUPT;
    }
    restore_wm(op, wm);
    return 0;
}

/* ---- lifecycle --------------------------------------------------------------- */
static void ij_close(void *st)
{
    ij_op *op = st;
    if (!op) return;
    for (uint32_t i = 0; i < sl__bmap_count(&op->keys); i++) {
        ij_key *k = sl__bmap_at(&op->keys, i, NULL, NULL);
        rows_free(&k->side[0]);
        rows_free(&k->side[1]);
    }
    sl__bmap_close(&op->keys);
    sl__buf_free(&op->rbuf);
    free(op->heap);
    free(op->kbuf);
    free(op);
}

static int ij_open(void **stp, const void *confv, const sl__opinfo *info, sl__ctx *ctx,
                   char *errstr, size_t errsz)
{
    const ij_conf *c = confv;
    *stp = NULL;
    if (info->time_col < 0 || info->time_col >= info->in->n)
        return sl__err(errstr, errsz, SL_EINVAL, "interval_join: the stream has no event-time "
                       "column");
    if (info->nkey != c->nkey || (c->nkey > 0 && !info->key_cols))
        return sl__err(errstr, errsz, SL_EINTERNAL, "interval_join: defined over %d key "
                       "columns, opened with %d", c->nkey, info->nkey);
    ij_op *op = sl__xcalloc(1, sizeof *op);
    op->conf = c;
    op->in = info->in;
    op->out = info->out;
    op->ctx = ctx;
    op->batch_cap = info->batch_cap;
    op->time_col = info->time_col;
    op->nkey = c->nkey;
    for (int k = 0; k < c->nkey; k++) op->key_cols[k] = info->key_cols[k];
    op->kl = (sl__wkey){.nkey = op->nkey, .cols = op->key_cols, .in = info->in,
                        .rowhash = false};
    sl__bmap_init(&op->keys, sizeof(ij_key));
    op->key_groups = ctx ? ctx->key_groups : 0;
    op->wm = SL_TS_MIN;
    op->fp = definition_fp(op);
    *stp = op;
    return 0;
}

const sl__op_vt sl__ijoin_vt = {
    .name = "interval_join",
    .open = ij_open,
    .batch = ij_batch,
    .watermark = ij_watermark,
    .close = ij_close,
    .conf_free = conf_free,
    .snapshot = ij_snapshot,
    .restore = ij_restore,
    .state_version = 1,
};
