/* venue_report.c — the venue-report operator: per venue, the distinct
 * subscribers seen in its cells during its time, by group (age band, and
 * gender when asked), published early and repeatedly while the event runs
 * and finally when it has ended, k-anonymised, with a defence against
 * differencing successive releases. Input: the rows of venue_assign
 * (venue.c), keyed by venue, so all rows of a venue meet in one task.
 *
 * State per venue: a map pseudonym -> (first and last event time, group,
 * bitmap of the slices it was seen in), the number of early firings done,
 * and per group the last published cumulative count. Early firings are
 * driven by the watermark (event time), never by the wall clock, so a
 * replay re-emits identical rows: the firing at tick t counts the
 * subscribers whose first event is before t.
 *
 * Invariants, and the function that keeps each:
 * 1. A published count is >= k, and is the exact distinct count of its
 *    group at its as_of time, or (final row only) the group's previous
 *    published count (emit_cumulative, emit_slices).
 * 2. Two published cumulative counts of one group differ by 0 or by >= k:
 *    a change smaller than k is held back until it reaches k; a final
 *    count whose change is below k repeats the previous one
 *    (emit_cumulative). Cumulative counts therefore never decrease.
 * 3. Tick i (start + i * emit_every) fires once, when the watermark
 *    reaches it, and before the final row; the final row fires once, when
 *    the watermark reaches end + lateness, and the venue's state is then
 *    dropped; later rows of the venue are counted as late (rep_watermark,
 *    rep_batch).
 * 4. A subscriber is counted once per venue and group: the map is keyed
 *    by pseudonym, and its group is that of its earliest event (the
 *    smallest group on a tie), whatever the arrival order (rep_batch).
 * 5. A snapshot is a pure function of the state (venues by key group
 *    then index, subscribers by pseudonym) and a restore checks a section
 *    whole before applying it (rep_snapshot, rep_restore).
 *
 * Not done here: sessions (a subscriber leaving and coming back counts
 * once), live slice rows (slices are published at the end, when
 * departures are known), a cap on state memory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hashmap.h"
#include "ops/venue.h"

#define SNAP_VENUES 0x56454e31u /* "VEN1" */
#define SNAP_META 0x56454d31u   /* "VEM1" */

enum { O_VENUE, O_REPORT, O_SSTART, O_SEND, O_BAND, O_GENDER, O_SUBS, O_EXTRA,
       O_ARR, O_DEP, O_ASOF, O_FINAL, O_N };

sl_schema *sl__venue_report_schema(void)
{
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "venue", SL_STRING);
    sl_schema_add(s, "report", SL_STRING);
    sl_schema_add(s, "slice_start", SL_TIMESTAMP);
    sl_schema_add(s, "slice_end", SL_TIMESTAMP);
    sl_schema_add(s, "age_band", SL_STRING);
    sl_schema_add(s, "gender", SL_STRING);
    sl_schema_add(s, "subscribers", SL_INT64);
    sl_schema_add(s, "extrapolated", SL_INT64);
    sl_schema_add(s, "arrivals", SL_INT64);
    sl_schema_add(s, "departures", SL_INT64);
    sl_schema_add(s, "as_of", SL_TIMESTAMP);
    sl_schema_add(s, "final", SL_BOOL);
    return s;
}

typedef struct {
    int64_t first, last;
    uint32_t grp, pad;
    uint64_t bits[]; /* nw words: slices seen */
} subent;

typedef struct {
    bool seen, done;
    int32_t kg;
    int64_t ticks; /* early firings done */
    uint32_t nw;   /* bitmap words */
    int64_t nslices;
    sl__bmap subs; /* pseudonym (8 bytes) -> subent */
    int64_t *pub;  /* per group: last published cumulative count, 0 = none */
} vstate;

typedef struct {
    const sl__venue_report_conf *c;
    const sl_venues *vv;
    const sl_schema *out;
    sl__ctx *ctx;
    uint32_t cap;
    int ngroups;
    bool keyed;
    int groups;
    int key_col[1];
    vstate *vs;
    int64_t wm;
    bool started;
    uint64_t late, held;
    sl_batch *ob; /* output being filled */
    int64_t *cnt; /* scratch: 3 * nslices * ngroups or ngroups */
    size_t cntcap;
} rep_op;

static void rep_close(void *st)
{
    rep_op *p = st;
    if (!p) return;
    for (size_t v = 0; p->vs && v < p->vv->n; v++) {
        sl__bmap_close(&p->vs[v].subs);
        free(p->vs[v].pub);
    }
    free(p->vs);
    free(p->cnt);
    if (p->ob) sl__batch_free(p->ob);
    free(p);
}

static int rep_open(void **st, const void *confv, const sl__opinfo *info,
                    sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    const sl__venue_report_conf *c = confv;
    if (info->in->n != 4)
        return sl__err(errstr, errstr_size, SL_EINTERNAL,
                       "venue_report: input is not venue_assign's");
    rep_op *p = sl__xcalloc(1, sizeof *p);
    p->c = c;
    p->vv = c->venues;
    p->out = info->out;
    p->ctx = ctx;
    p->cap = info->batch_cap ? info->batch_cap : 1024;
    p->ngroups = SL__VENUE_BANDS * c->ngender;
    p->keyed = info->nkey == 1 && ctx && ctx->key_groups > 0;
    p->groups = ctx ? ctx->key_groups : 0;
    p->key_col[0] = info->nkey == 1 ? info->key_cols[0] : c->in_venue;
    p->wm = SL_TS_MIN;
    p->vs = sl__xcalloc(p->vv->n, sizeof *p->vs);
    for (size_t v = 0; v < p->vv->n; v++) {
        vstate *s = &p->vs[v];
        const sl__venue *ve = &p->vv->v[v];
        s->kg = -1;
        s->nslices = c->spec.slice_ms
            ? (ve->end - ve->start + c->spec.slice_ms - 1) / c->spec.slice_ms : 0;
        s->nw = (uint32_t)((s->nslices + 63) / 64);
        sl__bmap_init(&s->subs, sizeof(subent) + 8 * (size_t)s->nw);
        s->pub = sl__xcalloc((size_t)p->ngroups, sizeof *s->pub);
    }
    *st = p;
    return 0;
}

/* ---- output -------------------------------------------------------------- */
static int flush_out(rep_op *p, sl__out *out)
{
    sl_batch *o = p->ob;
    p->ob = NULL;
    return o ? sl__emit(out, o) : 0;
}

static sl_batch *row_begin(rep_op *p, uint32_t *r)
{
    if (!p->ob) p->ob = sl__batch_new(p->out, p->cap);
    *r = p->ob->n++;
    return p->ob;
}

static int row_end(rep_op *p, sl__out *out)
{
    return p->ob->n == p->ob->cap ? flush_out(p, out) : 0;
}

static void set_i64(sl_batch *o, int col, uint32_t r, int64_t v, bool ok)
{
    ((int64_t *)o->cols[col].data)[r] = ok ? v : 0;
    o->cols[col].valid[r] = ok;
}

static void set_str(sl_batch *o, int col, uint32_t r, sl_str s)
{
    ((sl_str *)o->cols[col].data)[r] = s;
    o->cols[col].valid[r] = 1;
}

typedef struct {
    int64_t sstart, send, subs, arr, dep, as_of; /* arr/dep < 0: NULL */
    bool slice, final;
} row_vals;

static int emit_row(rep_op *p, sl__out *out, size_t v, int g, const row_vals *x)
{
    const sl__venue *ve = &p->vv->v[v];
    uint32_t r;
    sl_batch *o = row_begin(p, &r);
    int ng = p->c->ngender;
    set_str(o, O_VENUE, r, (sl_str){ve->name, (uint32_t)strlen(ve->name)});
    set_str(o, O_REPORT, r, x->slice ? (sl_str){"slice", 5}
                                     : (sl_str){"cumulative", 10});
    set_i64(o, O_SSTART, r, x->sstart, true);
    set_i64(o, O_SEND, r, x->send, true);
    set_str(o, O_BAND, r, sl__venue_band_names[g / ng]);
    set_str(o, O_GENDER, r, ng == 1 ? (sl_str){"*", 1}
                                    : sl__venue_gender_names[g % ng]);
    set_i64(o, O_SUBS, r, x->subs, true);
    double unit = (double)p->c->spec.round_to;
    set_i64(o, O_EXTRA, r, (int64_t)llround((double)x->subs / ve->share / unit) *
                               p->c->spec.round_to, true);
    set_i64(o, O_ARR, r, x->arr, x->arr >= 0);
    set_i64(o, O_DEP, r, x->dep, x->dep >= 0);
    set_i64(o, O_ASOF, r, x->as_of, true);
    ((uint8_t *)o->cols[O_FINAL].data)[r] = x->final;
    o->cols[O_FINAL].valid[r] = 1;
    o->kind[r] = SL_KIND_DATA;
    sl__count(p->ctx, SL__CTR_WINDOWS_FIRED, 1);
    return row_end(p, out);
}

static int64_t *scratch(rep_op *p, size_t n)
{
    if (n > p->cntcap) {
        p->cntcap = n;
        p->cnt = sl__xrealloc(p->cnt, n * sizeof *p->cnt);
    }
    memset(p->cnt, 0, n * sizeof *p->cnt);
    return p->cnt;
}

/* Cumulative counts as of `t` (subscribers whose first event is before
 * t), published under invariants 1 and 2. */
static int emit_cumulative(rep_op *p, sl__out *out, size_t v, int64_t t,
                           bool final)
{
    vstate *s = &p->vs[v];
    const sl__venue *ve = &p->vv->v[v];
    int64_t k = p->c->spec.k;
    int64_t *cnt = scratch(p, (size_t)p->ngroups);
    for (uint32_t i = 0; i < sl__bmap_count(&s->subs); i++) {
        const subent *e = sl__bmap_at(&s->subs, i, NULL, NULL);
        if (e->first < t) cnt[e->grp]++;
    }
    int rc = 0;
    for (int g = 0; g < p->ngroups && !rc; g++) {
        int64_t c = cnt[g], prev = s->pub[g];
        if (c < k) {
            if (final && c > 0) sl__count(p->ctx, SL__CTR_SUPPRESSED, 1);
            continue;
        }
        int64_t pubv = (prev == 0 || c - prev >= k) ? c : prev;
        if (pubv != c) p->held++;
        if (!final && pubv == prev) continue; /* nothing new to publish */
        s->pub[g] = pubv;
        row_vals x = {.sstart = ve->start, .send = ve->end, .subs = pubv,
                      .arr = -1, .dep = -1, .as_of = t, .final = final};
        rc = emit_row(p, out, v, g, &x);
    }
    return rc;
}

/* Per slice: present, arriving and departing subscribers; a count below
 * k is not published (a row needs present >= k). */
static int emit_slices(rep_op *p, sl__out *out, size_t v)
{
    vstate *s = &p->vs[v];
    const sl__venue *ve = &p->vv->v[v];
    int64_t ns = s->nslices, sl = p->c->spec.slice_ms, k = p->c->spec.k;
    if (ns == 0) return 0;
    size_t ng = (size_t)p->ngroups, per = (size_t)ns * ng;
    int64_t *cnt = scratch(p, 3 * per);
    int64_t *pres = cnt, *arr = cnt + per, *dep = cnt + 2 * per;
    for (uint32_t i = 0; i < sl__bmap_count(&s->subs); i++) {
        const subent *e = sl__bmap_at(&s->subs, i, NULL, NULL);
        for (uint32_t w = 0; w < s->nw; w++)
            for (uint64_t b = e->bits[w]; b; b &= b - 1)
                pres[((size_t)w * 64 + (size_t)__builtin_ctzll(b)) * ng + e->grp]++;
        arr[(size_t)((e->first - ve->start) / sl) * ng + e->grp]++;
        dep[(size_t)((e->last - ve->start) / sl) * ng + e->grp]++;
    }
    int rc = 0;
    for (int64_t j = 0; j < ns && !rc; j++)
        for (size_t g = 0; g < ng && !rc; g++) {
            size_t at = (size_t)j * ng + g;
            if (pres[at] < k) {
                if (pres[at] > 0) sl__count(p->ctx, SL__CTR_SUPPRESSED, 1);
                continue;
            }
            int64_t a = ve->start + j * sl;
            row_vals x = {.sstart = a, .send = a + sl < ve->end ? a + sl : ve->end,
                          .subs = pres[at], .arr = arr[at] >= k ? arr[at] : -1,
                          .dep = dep[at] >= k ? dep[at] : -1, .as_of = ve->end,
                          .slice = true, .final = true};
            rc = emit_row(p, out, v, (int)g, &x);
        }
    return rc;
}

/* ---- input --------------------------------------------------------------- */
static int forward_canary(rep_op *p, sl__out *out, const sl_batch *b, uint32_t i)
{
    uint32_t r;
    sl_batch *o = row_begin(p, &r);
    for (int c = 0; c < O_N; c++) o->cols[c].valid[r] = 0;
    int64_t ts = b->cols[p->c->in_ts].valid[i]
                     ? ((const int64_t *)b->cols[p->c->in_ts].data)[i] : 0;
    set_i64(o, O_SSTART, r, ts, b->cols[p->c->in_ts].valid[i]);
    o->kind[r] = b->kind[i];
    return row_end(p, out);
}

static int rep_batch(void *st, sl_batch *b, sl__out *out)
{
    rep_op *p = st;
    const sl__venue_report_conf *c = p->c;
    p->started = true;
    const int64_t *ts = b->cols[c->in_ts].data, *sub = b->cols[c->in_sub].data,
                  *ven = b->cols[c->in_venue].data, *grp = b->cols[c->in_grp].data;
    int rc = 0;
    for (uint32_t r = 0; r < b->n && !rc; r++) {
        if (b->kind[r] != SL_KIND_DATA) {
            rc = forward_canary(p, out, b, r);
            continue;
        }
        int64_t v = ven[r];
        if (v < 0 || (size_t)v >= p->vv->n || grp[r] < 0 || grp[r] >= p->ngroups)
            continue; /* venue_assign makes none */
        vstate *s = &p->vs[v];
        if (s->done) {
            p->late++;
            sl__count(p->ctx, SL__CTR_LATE, 1);
            continue;
        }
        if (!s->seen) {
            s->seen = true;
            s->kg = p->keyed ? sl__key_group(b, p->key_col, 1, r, p->groups) : -1;
        }
        bool fresh;
        uint64_t key = (uint64_t)sub[r];
        subent *e = sl__bmap_upsert(&s->subs, &key, 8, sl__mix64(key), &fresh);
        if (fresh) {
            e->first = e->last = ts[r];
            e->grp = (uint32_t)grp[r];
        } else {
            if (ts[r] < e->first || (ts[r] == e->first && (uint32_t)grp[r] < e->grp)) {
                e->first = ts[r];
                e->grp = (uint32_t)grp[r];
            }
            if (ts[r] > e->last) e->last = ts[r];
        }
        if (s->nw) {
            int64_t j = (ts[r] - p->vv->v[v].start) / c->spec.slice_ms;
            e->bits[j / 64] |= (uint64_t)1 << (j % 64);
        }
    }
    sl__batch_free(b);
    if (rc == 0) rc = flush_out(p, out);
    return rc;
}

static int rep_watermark(void *st, int64_t wm, sl__out *out)
{
    rep_op *p = st;
    p->started = true;
    if (wm <= p->wm) return 0;
    p->wm = wm;
    const sl_venue_report_spec *sp = &p->c->spec;
    int rc = 0;
    for (size_t v = 0; v < p->vv->n && !rc; v++) {
        vstate *s = &p->vs[v];
        const sl__venue *ve = &p->vv->v[v];
        if (s->done) continue;
        for (;;) { /* early firings (invariant 3) */
            if (!sp->emit_every_ms) break;
            int64_t t;
            if (__builtin_mul_overflow(s->ticks + 1, sp->emit_every_ms, &t) ||
                __builtin_add_overflow(t, ve->start, &t) || t >= ve->end || wm < t)
                break;
            s->ticks++;
            if (s->seen && (rc = emit_cumulative(p, out, v, t, false))) break;
        }
        int64_t fire;
        if (__builtin_add_overflow(ve->end, sp->lateness_ms, &fire)) fire = SL_TS_MAX;
        if (rc || wm < fire) continue;
        if (s->seen && !(rc = emit_cumulative(p, out, v, ve->end, true)))
            rc = emit_slices(p, out, v);
        s->done = true;
        sl__bmap_clear(&s->subs);
    }
    if (rc == 0) rc = flush_out(p, out);
    return rc;
}

/* ---- checkpoints --------------------------------------------------------- */
static void put_def(const rep_op *p, sl__buf *b)
{
    const sl_venue_report_spec *sp = &p->c->spec;
    sl__buf_put_u64(b, (uint64_t)p->ngroups);
    sl__buf_put_i64(b, sp->k);
    sl__buf_put_i64(b, sp->emit_every_ms);
    sl__buf_put_i64(b, sp->slice_ms);
    sl__buf_put_i64(b, sp->lateness_ms);
}

static bool def_ok(const rep_op *p, sl__rbuf *r)
{
    const sl_venue_report_spec *sp = &p->c->spec;
    return sl__rbuf_u64(r) == (uint64_t)p->ngroups && sl__rbuf_i64(r) == sp->k &&
           sl__rbuf_i64(r) == sp->emit_every_ms && sl__rbuf_i64(r) == sp->slice_ms &&
           sl__rbuf_i64(r) == sp->lateness_ms && !r->err;
}

typedef struct {
    int32_t kg;
    uint32_t v;
} vref;

static int vref_cmp(const void *a, const void *b)
{
    const vref *x = a, *y = b;
    if (x->kg != y->kg) return x->kg < y->kg ? -1 : 1;
    return (x->v > y->v) - (x->v < y->v);
}

typedef struct {
    uint64_t key;
    uint32_t i;
} kref;

static int kref_cmp(const void *a, const void *b)
{
    const kref *x = a, *y = b;
    return (x->key > y->key) - (x->key < y->key);
}

static void snap_venue(const rep_op *p, sl__buf *b, uint32_t v)
{
    const vstate *s = &p->vs[v];
    const char *name = p->vv->v[v].name;
    sl__buf_put_str(b, name, strlen(name));
    sl__buf_put_i64(b, s->ticks);
    for (int g = 0; g < p->ngroups; g++) sl__buf_put_i64(b, s->pub[g]);
    uint32_t n = sl__bmap_count(&s->subs);
    sl__buf_put_u32(b, n);
    kref *ix = sl__xmalloc((n ? n : 1) * sizeof *ix);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *key;
        sl__bmap_at(&s->subs, i, &key, NULL);
        memcpy(&ix[i].key, key, 8);
        ix[i].i = i;
    }
    qsort(ix, n, sizeof *ix, kref_cmp);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *key;
        const subent *e = sl__bmap_at(&s->subs, ix[i].i, &key, NULL);
        sl__buf_put(b, key, 8);
        sl__buf_put_i64(b, e->first);
        sl__buf_put_i64(b, e->last);
        sl__buf_put_u32(b, e->grp);
        for (uint32_t w = 0; w < s->nw; w++) sl__buf_put_u64(b, e->bits[w]);
    }
    free(ix);
}

static int rep_snapshot(void *st, sl__snap_writer *w)
{
    rep_op *p = st;
    vref *rs = sl__xmalloc((p->vv->n ? p->vv->n : 1) * sizeof *rs);
    size_t n = 0;
    for (size_t v = 0; v < p->vv->n; v++)
        if (p->vs[v].seen && !p->vs[v].done) rs[n++] = (vref){p->vs[v].kg, (uint32_t)v};
    qsort(rs, n, sizeof *rs, vref_cmp);
    sl__buf b = {0};
    int rc = 0;
    for (size_t i = 0; i < n && !rc;) {
        size_t j = i;
        while (j < n && rs[j].kg == rs[i].kg) j++;
        b.len = 0;
        sl__buf_put_u32(&b, SNAP_VENUES);
        put_def(p, &b);
        sl__buf_put_u64(&b, j - i);
        for (size_t q = i; q < j; q++) snap_venue(p, &b, rs[q].v);
        rc = sl__snap_put(w, rs[i].kg, b.p, b.len);
        i = j;
    }
    if (!rc) {
        b.len = 0;
        sl__buf_put_u32(&b, SNAP_META);
        put_def(p, &b);
        sl__buf_put_i64(&b, p->wm);
        sl__buf_put_u64(&b, p->late);
        sl__buf_put_u64(&b, p->held);
        rc = sl__snap_put(w, -1, b.p, b.len);
    }
    sl__buf_free(&b);
    free(rs);
    return rc;
}

static int venue_index(const rep_op *p, const char *name, uint32_t len)
{
    for (size_t v = 0; v < p->vv->n; v++)
        if (strlen(p->vv->v[v].name) == len && !memcmp(p->vv->v[v].name, name, len))
            return (int)v;
    return -1;
}

/* Reads (apply = false: checks) one venue section's body. */
static int restore_venues(rep_op *p, sl__rbuf *r, int32_t kg, bool apply)
{
    uint64_t nv = sl__rbuf_u64(r);
    for (uint64_t q = 0; q < nv && !r->err; q++) {
        uint32_t len;
        const char *name = sl__rbuf_str(r, &len);
        int v = name ? venue_index(p, name, len) : -1;
        if (v < 0) return SL_ECORRUPT; /* the venue file changed */
        vstate *s = &p->vs[v];
        int64_t ticks = sl__rbuf_i64(r);
        if (ticks < 0) return SL_ECORRUPT;
        if (apply) {
            s->seen = true;
            s->kg = kg;
            s->ticks = ticks;
        }
        for (int g = 0; g < p->ngroups; g++) {
            int64_t x = sl__rbuf_i64(r);
            if (apply) s->pub[g] = x;
        }
        uint32_t n = sl__rbuf_u32(r);
        if (n > (r->len - r->off) / 28) return SL_ECORRUPT;
        for (uint32_t i = 0; i < n && !r->err; i++) {
            const void *key = sl__rbuf_bytes(r, 8);
            int64_t first = sl__rbuf_i64(r), last = sl__rbuf_i64(r);
            uint32_t grp = sl__rbuf_u32(r);
            if (!key || grp >= (uint32_t)p->ngroups || last < first) return SL_ECORRUPT;
            subent *e = NULL;
            if (apply) {
                uint64_t k;
                memcpy(&k, key, 8);
                e = sl__bmap_upsert(&s->subs, &k, 8, sl__mix64(k), NULL);
                e->first = first;
                e->last = last;
                e->grp = grp;
            }
            for (uint32_t w = 0; w < s->nw; w++) {
                uint64_t bits = sl__rbuf_u64(r);
                if (e) e->bits[w] = bits;
            }
        }
    }
    return r->err || r->off != r->len ? SL_ECORRUPT : 0;
}

static int rep_restore(void *st, int32_t kg, const void *data, size_t len)
{
    rep_op *p = st;
    if (p->started) return SL_ESTATE;
    sl__rbuf r = {.p = data, .len = len};
    uint32_t magic = sl__rbuf_u32(&r);
    if ((magic != SNAP_VENUES && magic != SNAP_META) || !def_ok(p, &r))
        return SL_ECORRUPT;
    if (magic == SNAP_META) {
        int64_t wm = sl__rbuf_i64(&r);
        uint64_t late = sl__rbuf_u64(&r), held = sl__rbuf_u64(&r);
        if (r.err || r.off != r.len) return SL_ECORRUPT;
        if (p->wm == SL_TS_MIN || wm < p->wm) p->wm = wm;
        p->late += late;
        p->held += held;
        /* venues without state: what had fired before the checkpoint is
         * not fired again (a row arriving now cannot change the past) */
        const sl_venue_report_spec *sp = &p->c->spec;
        for (size_t v = 0; v < p->vv->n; v++) {
            vstate *s = &p->vs[v];
            const sl__venue *ve = &p->vv->v[v];
            if (s->seen) continue;
            int64_t fire;
            if (__builtin_add_overflow(ve->end, sp->lateness_ms, &fire)) fire = SL_TS_MAX;
            s->done = fire <= p->wm;
            if (sp->emit_every_ms && p->wm > ve->start) {
                int64_t last = ve->end - 1 < p->wm ? ve->end - 1 : p->wm;
                s->ticks = (last - ve->start) / sp->emit_every_ms;
            }
        }
        return 0;
    }
    size_t body = r.off;
    int rc = restore_venues(p, &r, kg, false);
    if (rc) return rc;
    r.off = body;
    return restore_venues(p, &r, kg, true);
}

const sl__op_vt sl__op_venue_report = {
    .name = "venue_report",
    .open = rep_open,
    .batch = rep_batch,
    .watermark = rep_watermark,
    .close = rep_close,
    .conf_free = free,
    .snapshot = rep_snapshot,
    .restore = rep_restore,
    .state_version = 1,
};
