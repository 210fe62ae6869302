/* session.c — event-time session windows: sl_stream_session() and its
 * operator.
 *
 * Per key (the stream's key, from sl_stream_key_by), records whose event
 * times lie within `gap` of each other form one session: a record at ts
 * opens [ts, ts + gap), and sessions that touch or overlap it merge into one
 * (Flink's EventTimeSessionWindows: two windows merge when
 * a.start <= b.end and b.start <= a.end). A late record can therefore
 * bridge two open sessions. A session fires once, when the watermark
 * reaches its end plus the allowed lateness, emitting the row
 * (window_start = first record's time, window_end = last record's time +
 * gap, the key, the aggregates) — the same columns as sl_stream_window. A
 * record whose own session [ts, ts + gap) would already have fired is late:
 * counted, not aggregated.
 *
 * State: a map from the encoded key (winkey.c) to the key's open sessions,
 * sorted by start (they are disjoint, so also by end); each session holds
 * the aggregates' states (agg.h). Keys whose sessions have all fired stay
 * in the map as empty entries until they outnumber the live ones, when the
 * map is rebuilt.
 *
 * Checkpoints: one section per key group (keys in byte order, sessions by
 * start, each aggregate state serialised) and one operator-wide section
 * (watermark, counters); both carry a fingerprint of the definition, so a
 * changed job refuses the snapshot. Output order when several sessions
 * fire at one watermark: by start, then by key bytes — a function of the
 * state only, so a replay emits the same rows in the same order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg.h"

#define SNAP_MAGIC 0x53455331u /* "SES1" */

typedef struct {
    int64_t gap, lateness;
    char **keys; /* the stream's key at definition time */
    int nkey;
    sl_agg_spec *aggs; /* deep copies */
    size_t naggs;
} sess_conf;

typedef struct {
    int64_t start, end;
    uint8_t *st; /* the aggregates' states, state_size bytes */
} sess;

typedef struct {
    uint32_t n, cap;
    int32_t kg;
    uint32_t pad;
    sess *s; /* sorted by start, disjoint */
} klist;

typedef struct {
    const sess_conf *conf;
    const sl_schema *in, *out;
    sl__ctx *ctx;
    uint32_t batch_cap;
    int time_col;
    int nkey;
    int key_cols[SL_MAX_COLS];
    sl__agg *aggs;
    size_t naggs;
    uint32_t state_size;
    sl__wkey kl;
    int64_t gap, lateness, wm, min_fire;
    int key_groups;
    uint64_t fp;
    bool started, wm_restored;
    sl__bmap keys; /* encoded key -> klist */
    uint32_t live, dead;
    uint8_t *kbuf;
    size_t kcap;
    uint64_t late, canaries, null_time, fired;
} sess_op;

/* ---- definition ------------------------------------------------------------ */
static void conf_free(void *p)
{
    sess_conf *c = p;
    if (!c) return;
    for (int k = 0; k < c->nkey; k++) free(c->keys[k]);
    free(c->keys);
    for (size_t i = 0; i < c->naggs; i++) {
        free((char *)c->aggs[i].col);
        free((char *)c->aggs[i].as);
        free((double *)c->aggs[i].bounds);
    }
    free(c->aggs);
    free(c);
}

int sl__session_conf_new(void **confp, sl_schema **outp, const sl_schema *in,
                         const char *const *keys, const char *time_col,
                         const sl_session_spec *spec, const sl_agg_spec *aggs,
                         size_t naggs, char *errstr, size_t errsz)
{
    if (!spec || spec->gap_ms <= 0 || spec->lateness_ms < 0)
        return sl__err(errstr, errsz, SL_EINVAL, "session: gap_ms must be > 0 and "
                       "lateness_ms >= 0");
    /* the window's checks and output schema: a session's columns are a
     * tumbling window's (validation of keys, names and aggregates) */
    void *wconf;
    char err[512];
    const sl_window_spec w = {.size_ms = spec->gap_ms, .lateness_ms = spec->lateness_ms};
    int rc = sl__window_conf_new(&wconf, outp, in, keys, time_col, &w, aggs, naggs, err,
                                 sizeof err);
    if (rc < 0)
        return sl__err(errstr, errsz, rc, "session: %s",
                       strncmp(err, "window: ", 8) ? err : err + 8);
    sl__window_vt.conf_free(wconf);
    sess_conf *c = sl__xcalloc(1, sizeof *c);
    c->gap = spec->gap_ms;
    c->lateness = spec->lateness_ms;
    while (keys && keys[c->nkey]) c->nkey++;
    c->keys = sl__xcalloc((size_t)c->nkey + 1, sizeof *c->keys);
    for (int k = 0; keys && k < c->nkey; k++) c->keys[k] = sl__xstrdup(keys[k]);
    c->naggs = naggs;
    c->aggs = sl__xcalloc(naggs ? naggs : 1, sizeof *c->aggs);
    for (size_t i = 0; i < naggs; i++) {
        sl_agg_spec *d = &c->aggs[i];
        *d = aggs[i];
        d->col = aggs[i].col ? sl__xstrdup(aggs[i].col) : NULL;
        d->as = sl__xstrdup(aggs[i].as);
        d->bounds = NULL;
        if (aggs[i].kind == SL_AGG_HISTOGRAM) {
            double *b = sl__xmalloc(aggs[i].nbounds * sizeof *b);
            memcpy(b, aggs[i].bounds, aggs[i].nbounds * sizeof *b);
            d->bounds = b;
        }
    }
    *confp = c;
    return 0;
}

sl_stream *sl_stream_session(sl_stream *s, const sl_session_spec *spec,
                             const sl_agg_spec *aggs, size_t naggs)
{
    if (!s) return NULL;
    void *conf = NULL;
    sl_schema *out = NULL;
    char err[512] = "";
    int rc = sl__session_conf_new(&conf, &out, sl_stream_schema(s), sl__stream_key(s),
                                  sl__stream_time_col(s), spec, aggs, naggs, err, sizeof err);
    if (rc < 0) {
        sl__job_fail(sl__stream_job(s), rc, "%s", err);
        return NULL;
    }
    sl_stream *ns = sl__stream_add_op(s, &sl__session_vt, conf, out);
    sl_schema_free(out);
    if (!ns) return NULL;
    sl__stream_set_time_col(ns, "window_start");
    return ns;
}

/* ---- sessions ---------------------------------------------------------------- */
static void sess_free(const sess_op *op, sess *s)
{
    for (size_t i = 0; i < op->naggs; i++) sl__agg_state_free(&op->aggs[i], s->st);
    free(s->st);
    s->st = NULL;
}

static int64_t fire_at(const sess_op *op, int64_t end)
{
    int64_t f;
    return __builtin_add_overflow(end, op->lateness, &f) ? SL_TS_MAX : f;
}

/* The session of key list l that [ts, ts + gap) falls into, after merging
 * every session it touches; a new one if none. */
static sess *session_for(sess_op *op, klist *l, int64_t ts, int64_t end)
{
    uint32_t lo = 0;
    while (lo < l->n && l->s[lo].end < ts) lo++;
    uint32_t hi = lo;
    while (hi < l->n && l->s[hi].start <= end) hi++;
    if (hi == lo) { /* none touches: insert at lo */
        if (l->n == l->cap) {
            l->cap = l->cap ? 2 * l->cap : 2;
            l->s = sl__xrealloc(l->s, l->cap * sizeof *l->s);
        }
        memmove(l->s + lo + 1, l->s + lo, (l->n - lo) * sizeof *l->s);
        l->n++;
        sess *s = &l->s[lo];
        s->start = ts;
        s->end = end;
        s->st = sl__xcalloc(1, op->state_size ? op->state_size : 1);
        return s;
    }
    sess *s = &l->s[lo];
    if (ts < s->start) s->start = ts;
    for (uint32_t j = lo + 1; j < hi; j++) {
        for (size_t i = 0; i < op->naggs; i++) sl__agg_merge(&op->aggs[i], s->st, l->s[j].st);
        if (l->s[j].end > s->end) s->end = l->s[j].end;
        sess_free(op, &l->s[j]);
    }
    if (end > s->end) s->end = end;
    memmove(l->s + lo + 1, l->s + hi, (l->n - hi) * sizeof *l->s);
    l->n -= hi - lo - 1;
    return s;
}

static size_t key_bound(const sess_op *op, const sl_batch *b, uint32_t r)
{
    size_t n = 16;
    for (int k = 0; k < op->nkey; k++) {
        int c = op->key_cols[k];
        n += 1 + (op->in->cols[c].type == SL_STRING
                      ? 2 * (size_t)((const sl_str *)b->cols[c].data)[r].len + 2 : 8);
    }
    return n;
}

static int32_t row_kg(const sess_op *op, const sl_batch *b, uint32_t row)
{
    if (op->nkey == 0 || op->key_groups <= 1) return 0;
    if (b->khash) return (int32_t)(b->khash[row] % (uint64_t)op->key_groups);
    return sl__key_group(b, op->key_cols, op->nkey, row, op->key_groups);
}

/* Canary rows are forwarded at once: window_start = their time, window_end
 * = time + gap, the key, NULL aggregates, their kind kept. */
static int emit_canaries(sess_op *op, const sl_batch *b, sl__out *out)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < b->n; i++) n += b->kind[i] != SL_KIND_DATA;
    if (!n) return 0;
    sl_batch *o = sl__batch_new(op->out, n);
    const int64_t *ts = b->cols[op->time_col].data;
    const uint8_t *tv = b->cols[op->time_col].valid;
    uint8_t *kb = NULL;
    size_t kc = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->kind[i] == SL_KIND_DATA) continue;
        uint32_t r = o->n++;
        bool ok = tv[i] && ts[i] <= SL_TS_MAX - op->gap;
        ((int64_t *)o->cols[0].data)[r] = ok ? ts[i] : 0;
        ((int64_t *)o->cols[1].data)[r] = ok ? ts[i] + op->gap : 0;
        o->cols[0].valid[r] = o->cols[1].valid[r] = ok;
        size_t need = key_bound(op, b, i);
        if (need > kc) kb = sl__xrealloc(kb, kc = need);
        size_t len = sl__wkey_encode(&op->kl, b, i, kb);
        sl__wkey_decode(&op->kl, kb, (uint32_t)len, o, r);
        for (int c = 2 + op->nkey; c < op->out->n; c++) o->cols[c].valid[r] = 0;
        o->kind[r] = b->kind[i];
        op->canaries++;
    }
    free(kb);
    return sl__emit(out, o);
}

static void dead_letter(sess_op *op, uint32_t r, const char *reason)
{
    char pos[32];
    snprintf(pos, sizeof pos, "batch row %u", r);
    sl__dead_letter(op->ctx, "session", pos, reason, "", 0);
}

static int sess_batch(void *st, sl_batch *b, sl__out *out)
{
    sess_op *op = st;
    op->started = true;
    int rc = emit_canaries(op, b, out);
    if (rc < 0) {
        sl__batch_free(b);
        return rc;
    }
    const int64_t *ts = b->cols[op->time_col].data;
    const uint8_t *tv = b->cols[op->time_col].valid;
    uint64_t late = 0;
    for (uint32_t r = 0; r < b->n; r++) {
        if (b->kind[r] != SL_KIND_DATA) continue;
        if (tv && !tv[r]) {
            op->null_time++;
            dead_letter(op, r, "null_time");
            continue;
        }
        int64_t end;
        if (__builtin_add_overflow(ts[r], op->gap, &end)) {
            dead_letter(op, r, "time_out_of_range");
            continue;
        }
        if (fire_at(op, end) <= op->wm) {
            late++;
            continue;
        }
        size_t need = key_bound(op, b, r);
        if (need > op->kcap) op->kbuf = sl__xrealloc(op->kbuf, op->kcap = need);
        size_t len = sl__wkey_encode(&op->kl, b, r, op->kbuf);
        bool fresh;
        klist *l = sl__bmap_upsert(&op->keys, op->kbuf, len,
                                   sl__wkey_hash(&op->kl, op->kbuf, (uint32_t)len), &fresh);
        if (fresh) l->kg = row_kg(op, b, r);
        if (l->n == 0) {
            op->live++;
            if (!fresh) op->dead--;
        }
        sess *s = session_for(op, l, ts[r], end);
        uint8_t *grp = s->st;
        for (size_t i = 0; i < op->naggs; i++) sl__agg_add(&op->aggs[i], b, &r, &grp, 1);
        int64_t f = fire_at(op, s->end);
        if (f < op->min_fire) op->min_fire = f;
    }
    if (late) {
        op->late += late;
        sl__count(op->ctx, SL__CTR_LATE, late);
    }
    sl__batch_free(b);
    return 0;
}

/* ---- firing ------------------------------------------------------------------------ */
typedef struct {
    const uint8_t *key;
    uint32_t len;
    sess s;
} fired;

static int fired_cmp(const void *x, const void *y)
{
    const fired *a = x, *b = y;
    if (a->s.start != b->s.start) return a->s.start < b->s.start ? -1 : 1;
    uint32_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->key, b->key, n);
    if (c) return c;
    return (a->len > b->len) - (a->len < b->len);
}

/* Rebuilds the key map without the empty entries. */
static void compact(sess_op *op)
{
    sl__bmap m;
    sl__bmap_init(&m, sizeof(klist));
    for (uint32_t i = 0; i < sl__bmap_count(&op->keys); i++) {
        const uint8_t *k;
        uint32_t len;
        klist *l = sl__bmap_at(&op->keys, i, &k, &len);
        if (l->n == 0) {
            free(l->s);
            continue;
        }
        klist *d = sl__bmap_upsert(&m, k, len, sl__bmap_hash_at(&op->keys, i), NULL);
        *d = *l;
    }
    sl__bmap_close(&op->keys);
    op->keys = m;
    op->dead = 0;
}

static int sess_watermark(void *st, int64_t wm, sl__out *out)
{
    sess_op *op = st;
    op->started = true;
    if (wm <= op->wm) return 0;
    op->wm = wm;
    if (wm < op->min_fire) return 0;
    fired *f = NULL;
    size_t nf = 0, cf = 0;
    int64_t next = SL_TS_MAX;
    for (uint32_t i = 0; i < sl__bmap_count(&op->keys); i++) {
        const uint8_t *k;
        uint32_t len;
        klist *l = sl__bmap_at(&op->keys, i, &k, &len);
        uint32_t j = 0;
        while (j < l->n && fire_at(op, l->s[j].end) <= wm) {
            if (nf == cf) f = sl__xrealloc(f, (cf = cf ? 2 * cf : 64) * sizeof *f);
            f[nf++] = (fired){k, len, l->s[j]};
            j++;
        }
        if (j) {
            memmove(l->s, l->s + j, (l->n - j) * sizeof *l->s);
            l->n -= j;
            if (l->n == 0) op->live--, op->dead++;
        }
        for (uint32_t x = 0; x < l->n; x++) {
            int64_t fa = fire_at(op, l->s[x].end);
            if (fa < next) next = fa;
        }
    }
    op->min_fire = next;
    if (nf > 1) qsort(f, nf, sizeof *f, fired_cmp);
    int rc = 0;
    sl_batch *ob = NULL;
    uint32_t cap = out->batch_cap ? out->batch_cap : op->batch_cap ? op->batch_cap : 1024;
    for (size_t i = 0; i < nf; i++) {
        if (rc == 0) {
            if (!ob) ob = sl__batch_new(op->out, cap);
            uint32_t r = ob->n++;
            ((int64_t *)ob->cols[0].data)[r] = f[i].s.start;
            ((int64_t *)ob->cols[1].data)[r] = f[i].s.end;
            ob->cols[0].valid[r] = ob->cols[1].valid[r] = 1;
            sl__wkey_decode(&op->kl, f[i].key, f[i].len, ob, r);
            for (size_t a = 0; a < op->naggs && rc == 0; a++)
                rc = sl__agg_result(&op->aggs[a], f[i].s.st, ob, 2 + op->nkey + (int)a, r);
            if (rc == 0 && ob->n == cap) {
                rc = sl__emit(out, ob);
                ob = NULL;
            }
        }
        sess_free(op, &f[i].s);
    }
    if (ob && rc == 0 && ob->n) rc = sl__emit(out, ob);
    else if (ob) sl__batch_free(ob);
    if (nf) {
        op->fired += nf;
        sl__count(op->ctx, SL__CTR_WINDOWS_FIRED, nf);
    }
    free(f);
    if (op->dead > 4096 && op->dead > op->live) compact(op);
    return rc;
}

/* ---- checkpoints ------------------------------------------------------------------- */
static uint64_t definition_fp(const sess_op *op)
{
    sl__buf b = {0};
    sl__buf_put_i64(&b, op->gap);
    sl__buf_put_i64(&b, op->lateness);
    sl__buf_put_u32(&b, (uint32_t)op->nkey);
    for (int k = 0; k < op->nkey; k++)
        sl__buf_put_u32(&b, (uint32_t)op->in->cols[op->key_cols[k]].type);
    for (size_t i = 0; i < op->naggs; i++) {
        const sl__agg *a = &op->aggs[i];
        sl__buf_put_u32(&b, (uint32_t)a->kind);
        sl__buf_put_u32(&b, (uint32_t)a->in_type);
        sl__buf_put_u32(&b, a->nbounds);
        sl__buf_put_u32(&b, a->size);
        if (a->udaf) sl__buf_put(&b, a->udaf->name, strlen(a->udaf->name));
    }
    uint64_t h = sl__hash_bytes(b.p, b.len, SNAP_MAGIC);
    sl__buf_free(&b);
    return h;
}

typedef struct {
    const uint8_t *key;
    uint32_t len;
    const klist *l;
} kref;

static int kref_cmp(const void *x, const void *y)
{
    const kref *a = x, *b = y;
    if (a->l->kg != b->l->kg) return a->l->kg < b->l->kg ? -1 : 1;
    uint32_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->key, b->key, n);
    if (c) return c;
    return (a->len > b->len) - (a->len < b->len);
}

static void header(const sess_op *op, sl__buf *b)
{
    sl__opsnap_header(b, SNAP_MAGIC, op->fp, op->wm);
}

static int sess_snapshot(void *st, sl__snap_writer *w)
{
    sess_op *op = st;
    kref *refs = sl__xmalloc((op->live ? op->live : 1) * sizeof *refs);
    size_t n = 0;
    for (uint32_t i = 0; i < sl__bmap_count(&op->keys); i++) {
        const uint8_t *k;
        uint32_t len;
        const klist *l = sl__bmap_at(&op->keys, i, &k, &len);
        if (l->n) refs[n++] = (kref){k, len, l};
    }
    qsort(refs, n, sizeof *refs, kref_cmp);
    sl__buf b = {0};
    uint8_t *tmp = NULL;
    size_t tcap = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        int32_t kg = refs[i].l->kg;
        size_t j = i;
        while (j < n && refs[j].l->kg == kg) j++;
        b.len = 0;
        header(op, &b);
        sl__buf_put_u32(&b, (uint32_t)(j - i));
        for (; i < j; i++) {
            const klist *l = refs[i].l;
            sl__buf_put_str(&b, (const char *)refs[i].key, refs[i].len);
            sl__buf_put_u32(&b, l->n);
            for (uint32_t s = 0; s < l->n; s++) {
                sl__buf_put_i64(&b, l->s[s].start);
                sl__buf_put_i64(&b, l->s[s].end);
                for (size_t a = 0; a < op->naggs; a++) {
                    size_t need = sl__agg_serialized_size(&op->aggs[a], l->s[s].st);
                    if (need > tcap) tmp = sl__xrealloc(tmp, tcap = need);
                    size_t got = sl__agg_serialize(&op->aggs[a], l->s[s].st, tmp);
                    sl__buf_put_str(&b, (const char *)tmp, got);
                }
            }
        }
        rc = sl__snap_put(w, kg, b.p, b.len);
    }
    if (rc == 0) {
        b.len = 0;
        header(op, &b);
        sl__opsnap_put_counters(&b, (const uint64_t[]){op->late, op->canaries,
                                                       op->null_time, op->fired}, 4);
        rc = sl__snap_put(w, -1, b.p, b.len);
    }
    free(tmp);
    free(refs);
    sl__buf_free(&b);
    return rc;
}

static void restore_wm(sess_op *op, int64_t wm)
{
    sl__opsnap_restore_wm(&op->wm, &op->wm_restored, wm);
}

/* Parses a whole key-group section before changing anything. */
static int sess_restore(void *st, int32_t kg, const void *data, size_t len)
{
    sess_op *op = st;
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
        op->fired += c[3];
        restore_wm(op, wm);
        return 0;
    }
    /* pass 1: check; pass 2: apply (the section is whole or nothing) */
    const size_t body = r.off;
    for (int pass = 0; pass < 2; pass++) {
        r.off = body;
        uint32_t nk = sl__rbuf_u32(&r);
        if (r.err || nk > len) return SL_ECORRUPT;
        const char *prev = NULL;
        uint32_t prev_len = 0;
        for (uint32_t i = 0; i < nk; i++) {
            uint32_t klen;
            const char *key = sl__rbuf_str(&r, &klen);
            uint32_t ns = sl__rbuf_u32(&r);
            if (r.err || !key || ns == 0 || ns > len) return SL_ECORRUPT;
            if (prev) { /* keys strictly ascending, as written: no duplicate */
                uint32_t m = prev_len < klen ? prev_len : klen;
                int c = memcmp(prev, key, m);
                if (c > 0 || (c == 0 && prev_len >= klen)) return SL_ECORRUPT;
            }
            prev = key;
            prev_len = klen;
            klist *l = NULL;
            if (pass == 1) {
                bool fresh;
                l = sl__bmap_upsert(&op->keys, key, klen,
                                    sl__wkey_hash(&op->kl, (const uint8_t *)key, klen), &fresh);
                if (!fresh && l->n) return SL_ECORRUPT; /* checked in pass 0 */
                if (!fresh) op->dead--;
                l->kg = kg;
                l->cap = l->n = ns;
                l->s = sl__xcalloc(ns, sizeof *l->s);
                op->live++;
            } else {
                const klist *have = sl__bmap_find(&op->keys, key, klen,
                                                  sl__wkey_hash(&op->kl, (const uint8_t *)key,
                                                                klen));
                if (have && have->n) return SL_ECORRUPT; /* a key in two sections */
            }
            int64_t prev_end = SL_TS_MIN;
            for (uint32_t s = 0; s < ns; s++) {
                int64_t start = sl__rbuf_i64(&r), end = sl__rbuf_i64(&r);
                if (r.err || end <= start || (s && start <= prev_end)) return SL_ECORRUPT;
                prev_end = end;
                uint8_t *grp = sl__xcalloc(1, op->state_size ? op->state_size : 1);
                for (size_t a = 0; a < op->naggs; a++) {
                    uint32_t alen;
                    const char *ab = sl__rbuf_str(&r, &alen);
                    int64_t got = ab ? sl__agg_deserialize(&op->aggs[a], grp,
                                                           (const uint8_t *)ab, alen)
                                     : SL_ECORRUPT;
                    if (got != (int64_t)alen) {
                        for (size_t x = 0; x < op->naggs; x++)
                            sl__agg_state_free(&op->aggs[x], grp);
                        free(grp);
                        return SL_ECORRUPT; /* pass 0 only: pass 1 re-reads checked bytes */
                    }
                }
                if (pass == 1) {
                    l->s[s] = (sess){start, end, grp};
                    int64_t f = fire_at(op, end);
                    if (f < op->min_fire) op->min_fire = f;
                } else {
                    for (size_t x = 0; x < op->naggs; x++) sl__agg_state_free(&op->aggs[x], grp);
                    free(grp);
                }
            }
        }
        if (r.err || r.off != r.len) return SL_ECORRUPT;
    }
    restore_wm(op, wm);
    return 0;
}

/* ---- lifecycle ----------------------------------------------------------------------- */
static void sess_close(void *st)
{
    sess_op *op = st;
    if (!op) return;
    for (uint32_t i = 0; i < sl__bmap_count(&op->keys); i++) {
        klist *l = sl__bmap_at(&op->keys, i, NULL, NULL);
        for (uint32_t s = 0; s < l->n; s++) sess_free(op, &l->s[s]);
        free(l->s);
    }
    sl__bmap_close(&op->keys);
    for (size_t i = 0; i < op->naggs; i++) sl__agg_close(&op->aggs[i]);
    free(op->aggs);
    free(op->kbuf);
    free(op);
}

static int sess_open(void **stp, const void *confv, const sl__opinfo *info, sl__ctx *ctx,
                     char *errstr, size_t errsz)
{
    const sess_conf *c = confv;
    *stp = NULL;
    if (info->time_col < 0 || info->time_col >= info->in->n)
        return sl__err(errstr, errsz, SL_EINVAL, "session: the stream has no event-time column");
    if (info->nkey != c->nkey || (c->nkey > 0 && !info->key_cols))
        return sl__err(errstr, errsz, SL_EINTERNAL, "session: defined over %d key columns, "
                       "opened with %d", c->nkey, info->nkey);
    sess_op *op = sl__xcalloc(1, sizeof *op);
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
    op->naggs = c->naggs;
    op->aggs = sl__xcalloc(c->naggs ? c->naggs : 1, sizeof *op->aggs);
    uint32_t off = 0;
    for (size_t i = 0; i < c->naggs; i++) {
        char msg[256];
        int rc = sl__agg_init(&op->aggs[i], &c->aggs[i], info->in, off, msg, sizeof msg);
        if (rc < 0) {
            op->naggs = i;
            sess_close(op);
            return sl__err(errstr, errsz, rc, "session: %s", msg);
        }
        off += op->aggs[i].size;
    }
    op->state_size = off;
    sl__bmap_init(&op->keys, sizeof(klist));
    op->gap = c->gap;
    op->lateness = c->lateness;
    op->key_groups = ctx ? ctx->key_groups : 0;
    op->wm = SL_TS_MIN;
    op->min_fire = SL_TS_MAX;
    op->fp = definition_fp(op);
    *stp = op;
    return 0;
}

const sl__op_vt sl__session_vt = {
    .name = "session",
    .open = sess_open,
    .batch = sess_batch,
    .watermark = sess_watermark,
    .close = sess_close,
    .conf_free = conf_free,
    .snapshot = sess_snapshot,
    .restore = sess_restore,
    .state_version = 1,
};
