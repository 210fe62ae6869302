/* window.c — event-time windows: sl_stream_window() and its operator.
 *
 * Tumbling windows [floor(ts / size) * size, + size) and hop windows of
 * `size` every `slide` (each record falls in size / slide windows), aligned
 * to the epoch. Per open window, a map from the encoded key of a row (its key
 * column values) to a group: the states of the aggregates (agg.h). A window
 * fires once, when the watermark reaches its end plus the allowed lateness,
 * emitting one row per group; its state is then freed.
 *
 * A batch is processed in passes so memory misses overlap: (1) decide each
 * row's fate (canary, NULL time, windows) and encode and hash its key; (2)
 * for a chunk of (row, window) pairs, look up or insert the groups,
 * prefetching a few pairs ahead; (3) update each aggregate over the chunk.
 * Pairs are ordered by row, so every group sees its rows in arrival order
 * whatever the batch boundaries (floating-point sums stay reproducible).
 *
 * Checkpoints: the open windows' groups are snapshotted by key group (each
 * group remembers the key group of the row that created it), the
 * watermark and counters as one operator-wide section; the format is
 * described above win_snapshot.
 *
 * Invariants:
 * 1. wins[0..nw) is sorted by start, starts distinct; since all windows have
 *    one size and one lateness, it is sorted by end and by firing time too
 *    (window_get inserts in place).
 * 2. Every open window has fire > wm: win_watermark fires and frees the
 *    others before it returns, assign_pairs never opens a window whose
 *    fire <= wm (the record is late for it instead), restore_parse refuses
 *    a window whose fire <= the watermark in its section, and restore_wm
 *    keeps the lowest watermark of all restored sections.
 * 3. A record updates a window at most once, and only while it is open
 *    (assign_pairs); a window fires at most once (win_watermark removes it).
 * 4. wm never decreases: win_watermark ignores an older watermark, and
 *    restore_wm (which may lower it) runs only before the first batch or
 *    watermark (win_restore answers SL_ESTATE after).
 * 5. Output order is deterministic: windows by start, then groups by their
 *    encoded key, whose bytes sort like the key values (NULL first, numbers
 *    ascending, strings bytewise) — see sl__wkey_encode and fire_window. It
 *    depends on the set of groups only, so it survives a restore. (A fold
 *    window hands the sorted groups to sl__fold_fire, kanon.c, instead.)
 * 6. Every group's block ends with its key group, set once when the group is
 *    created: from the row in win_batch (row_kg, over the npart columns of
 *    the stream's key only), from the section in restore_parse. The router
 *    sends all rows of a key to the task owning that key group, so a
 *    restored group keeps receiving its rows.
 * 7. A snapshot is a pure function of the state: sections in ascending key
 *    group, windows by start, groups by key bytes (win_snapshot).
 * 8. A restore applies a section whole or not at all: restore_parse reads
 *    and checks all of it into staged groups before restore_commit, which
 *    cannot fail, touches the state; restore_operator likewise.
 * 9. While an asynchronous snapshot is in flight (op->asnap, winsnap.c), no
 *    group open at its barrier changes or is freed before the snapshot has
 *    it: win_batch_locked (pass 2's TTL reset, before pass 3) and
 *    win_watermark_locked (before a window fires, before the TTL sweep)
 *    call sl__winsnap_cow* first.
 *
 * Not done here: early firings, a cap on state memory. Session windows are
 * their own operator (session.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agg.h"
#include "window_int.h"

#define MAX_WINDOWS_PER_RECORD 16384
#define PAIR_CHUNK 4096
#define PREFETCH_AHEAD 8
#define DEFAULT_BATCH_CAP 1024

/* win_conf, win, late_slot and win_op: window_int.h (shared with
 * winquery.c) */

/* ---- configuration ------------------------------------------------------- */
static void conf_free(void *p)
{
    win_conf *c = p;
    if (!c) return;
    free(c->time_col);
    for (int k = 0; k < c->nkey; k++) free(c->keys[k]);
    free(c->keys);
    for (size_t i = 0; i < c->naggs; i++) {
        free((char *)c->aggs[i].col);
        free((char *)c->aggs[i].as);
        free((double *)c->aggs[i].bounds);
    }
    free(c->aggs);
    sl__fold_free(c->fold);
    free(c);
}

void sl__window_conf_fold(void *conf, int npart, sl__fold *f)
{
    win_conf *c = conf;
    SL_ASSERT(npart >= 0 && npart <= c->nkey && !c->fold);
    c->npart = npart;
    c->fold = f;
}

bool sl__window_conf_min_count(void *conf, const char *col, int64_t k)
{
    win_conf *c = conf;
    if (c->fold || c->has_min) return false;
    for (size_t i = 0; i < c->naggs; i++) {
        if (strcmp(c->aggs[i].as, col) != 0) continue;
        if (c->aggs[i].kind != SL_AGG_COUNT && c->aggs[i].kind != SL_AGG_COUNT_DISTINCT)
            return false;
        c->has_min = true;
        c->min_agg = i;
        c->min_count = k;
        return true;
    }
    return false;
}

static bool is_window_col(const char *name)
{
    return strcmp(name, "window_start") == 0 ||
           strcmp(name, "window_end") == 0;
}

static int check_spec(const sl_window_spec *w, char *errstr, size_t errsz)
{
    if (!w)
        return sl__err(errstr, errsz, SL_EINVAL,
                       "window: no window spec (w is NULL)");
    if (w->size_ms <= 0)
        return sl__err(errstr, errsz, SL_EINVAL,
                       "window: size_ms must be > 0 (got %lld)",
                       (long long)w->size_ms);
    if (w->slide_ms < 0 || w->slide_ms > w->size_ms)
        return sl__err(errstr, errsz, SL_EINVAL,
                       "window: slide_ms must be between 0 (tumbling) and "
                       "size_ms = %lld (got %lld)",
                       (long long)w->size_ms, (long long)w->slide_ms);
    if (w->slide_ms > 0 && w->size_ms % w->slide_ms != 0)
        return sl__err(errstr, errsz, SL_EINVAL,
                       "window: size_ms (%lld) must be a multiple of "
                       "slide_ms (%lld)",
                       (long long)w->size_ms, (long long)w->slide_ms);
    if (w->slide_ms > 0 && w->size_ms / w->slide_ms > MAX_WINDOWS_PER_RECORD)
        return sl__err(errstr, errsz, SL_EINVAL,
                       "window: size_ms / slide_ms = %lld windows per "
                       "record; at most %d are allowed",
                       (long long)(w->size_ms / w->slide_ms),
                       MAX_WINDOWS_PER_RECORD);
    if (w->lateness_ms < 0)
        return sl__err(errstr, errsz, SL_EINVAL,
                       "window: lateness_ms must be >= 0 (got %lld)",
                       (long long)w->lateness_ms);
    return 0;
}

static int check_names(const sl_schema *in, const char *const *keys,
                       int nkey, const char *time_col,
                       const sl_agg_spec *aggs, size_t naggs, char *errstr,
                       size_t errsz)
{
    if (!time_col)
        return sl__err(errstr, errsz, SL_EINVAL,
                       "window: the stream has no event-time column (set "
                       "time.column on the source)");
    int tc = sl_schema_find(in, time_col);
    if (tc < 0)
        return sl__err(errstr, errsz, SL_EINVAL,
                       "window: event-time column '%s' is not in the stream",
                       time_col);
    sl_type tt = sl_schema_col_type(in, tc);
    if (tt != SL_TIMESTAMP && tt != SL_INT64)
        return sl__err(errstr, errsz, SL_EINVAL,
                       "window: event-time column '%s' has type %s (allowed: "
                       "%s, %s)",
                       time_col, sl_type_name(tt), sl_type_name(SL_TIMESTAMP),
                       sl_type_name(SL_INT64));
    for (int k = 0; k < nkey; k++) {
        if (sl_schema_find(in, keys[k]) < 0)
            return sl__err(errstr, errsz, SL_EINVAL,
                           "window: key column '%s' is not in the stream",
                           keys[k]);
        if (is_window_col(keys[k]))
            return sl__err(errstr, errsz, SL_EINVAL,
                           "window: key column '%s' clashes with the "
                           "window's own output column",
                           keys[k]);
        for (int j = 0; j < k; j++)
            if (strcmp(keys[j], keys[k]) == 0)
                return sl__err(errstr, errsz, SL_EINVAL,
                               "window: key column '%s' appears twice",
                               keys[k]);
    }
    if (naggs > 0 && !aggs)
        return sl__err(errstr, errsz, SL_EINVAL,
                       "window: aggs is NULL but naggs is %zu", naggs);
    if (2 + (size_t)nkey + naggs > SL_MAX_COLS)
        return sl__err(errstr, errsz, SL_EINVAL,
                       "window: %zu output columns (2 + %d keys + %zu "
                       "aggregates); at most %d are allowed",
                       2 + (size_t)nkey + naggs, nkey, naggs, SL_MAX_COLS);
    for (size_t i = 0; i < naggs; i++) {
        const char *as = aggs[i].as;
        if (!as || !*as)
            return sl__err(errstr, errsz, SL_EINVAL,
                           "window: aggregate %zu has no output name (as)", i);
        if (is_window_col(as))
            return sl__err(errstr, errsz, SL_EINVAL,
                           "window: aggregate output name '%s' clashes with "
                           "the window's own output column",
                           as);
        for (int k = 0; k < nkey; k++)
            if (strcmp(keys[k], as) == 0)
                return sl__err(errstr, errsz, SL_EINVAL,
                               "window: aggregate output name '%s' clashes "
                               "with a key column",
                               as);
        for (size_t j = 0; j < i; j++)
            if (strcmp(aggs[j].as, as) == 0)
                return sl__err(errstr, errsz, SL_EINVAL,
                               "window: aggregate output name '%s' is used "
                               "twice",
                               as);
        sl__agg a;
        char msg[256];
        int rc = sl__agg_init(&a, &aggs[i], in, 0, msg, sizeof msg);
        sl__agg_close(&a);
        if (rc < 0) return sl__err(errstr, errsz, rc, "window: %s", msg);
    }
    return 0;
}

static sl_schema *out_schema(const sl_schema *in, const char *const *keys,
                             int nkey, const sl_agg_spec *aggs, size_t naggs)
{
    sl_schema *out = sl_schema_new();
    int rc = 0;
    if (!out) return NULL;
    rc |= sl_schema_add(out, "window_start", SL_TIMESTAMP) < 0;
    rc |= sl_schema_add(out, "window_end", SL_TIMESTAMP) < 0;
    for (int k = 0; k < nkey; k++)
        rc |= sl_schema_add(out, keys[k],
                            sl_schema_col_type(in, sl_schema_find(in, keys[k]))) <
              0;
    for (size_t i = 0; i < naggs; i++) {
        sl__agg a;
        char msg[8];
        sl__agg_init(&a, &aggs[i], in, 0, msg, sizeof msg);
        rc |= sl_schema_add(out, aggs[i].as, a.out_type) < 0;
        sl__agg_close(&a);
    }
    if (rc) {
        sl_schema_free(out);
        return NULL;
    }
    return out;
}

int sl__window_conf_new(void **confp, sl_schema **outp, const sl_schema *in,
                        const char *const *keys, const char *time_col,
                        const sl_window_spec *w, const sl_agg_spec *aggs,
                        size_t naggs, char *errstr, size_t errstr_size)
{
    *confp = NULL;
    *outp = NULL;
    int nkey = 0;
    while (keys && keys[nkey]) nkey++;
    int rc = check_spec(w, errstr, errstr_size);
    if (rc == 0)
        rc = check_names(in, keys, nkey, time_col, aggs, naggs, errstr,
                         errstr_size);
    if (rc < 0) return rc;
    sl_schema *out = out_schema(in, keys, nkey, aggs, naggs);
    if (!out)
        return sl__err(errstr, errstr_size, SL_EINTERNAL,
                       "window: cannot build the output schema");
    win_conf *c = sl__xcalloc(1, sizeof *c);
    c->size = w->size_ms;
    c->slide = w->slide_ms;
    c->lateness = w->lateness_ms;
    c->time_col = sl__xstrdup(time_col);
    c->nkey = c->npart = nkey;
    c->keys = sl__xcalloc((size_t)nkey + 1, sizeof *c->keys);
    for (int k = 0; k < nkey; k++) c->keys[k] = sl__xstrdup(keys[k]);
    c->naggs = naggs;
    c->aggs = sl__xcalloc(naggs ? naggs : 1, sizeof *c->aggs);
    for (size_t i = 0; i < naggs; i++) {
        sl_agg_spec *d = &c->aggs[i];
        d->kind = aggs[i].kind;
        d->col = aggs[i].col ? sl__xstrdup(aggs[i].col) : NULL;
        d->as = sl__xstrdup(aggs[i].as);
        d->udaf = aggs[i].udaf;
        d->quantile = aggs[i].quantile;
        d->accuracy = aggs[i].accuracy;
        if (aggs[i].kind == SL_AGG_HISTOGRAM) {
            double *b = sl__xmalloc(aggs[i].nbounds * sizeof *b);
            memcpy(b, aggs[i].bounds, aggs[i].nbounds * sizeof *b);
            d->bounds = b;
            d->nbounds = aggs[i].nbounds;
        }
    }
    *confp = c;
    *outp = out;
    return 0;
}

sl_stream *sl_stream_window(sl_stream *s, const sl_window_spec *w,
                            const sl_agg_spec *aggs, size_t naggs)
{
    if (!s) return NULL;
    void *conf;
    sl_schema *out;
    char err[512];
    int rc = sl__window_conf_new(&conf, &out, sl_stream_schema(s),
                                 sl__stream_key(s), sl__stream_time_col(s), w,
                                 aggs, naggs, err, sizeof err);
    if (rc < 0) {
        sl__job_fail(sl__stream_job(s), rc, "%s", err);
        return NULL;
    }
    sl_stream *ns = sl__stream_add_op(s, &sl__window_vt, conf, out);
    sl_schema_free(out);
    /* downstream, a result's event time is its window's start */
    sl__stream_set_time_col(ns, "window_start");
    return ns;
}

/* ---- keys ---------------------------------------------------------------- */
/* Group keys are encoded, decoded, hashed and sorted by winkey.c. */
static void decode_key(win_op *op, const uint8_t *key, uint32_t klen, sl_batch *ob,
                       uint32_t row)
{
    sl__wkey_decode(&op->kl, key, klen, ob, row);
}

/* ---- open windows ---------------------------------------------------------- */
static win *window_get(win_op *op, int64_t start)
{
    if (op->last && op->last->start == start) return op->last;
    size_t lo = 0, hi = op->nw;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (op->wins[mid]->start < start) lo = mid + 1;
        else hi = mid;
    }
    if (lo < op->nw && op->wins[lo]->start == start)
        return op->last = op->wins[lo];
    if (op->nw == op->capw) {
        op->capw = op->capw ? op->capw * 2 : 16;
        op->wins = sl__xrealloc(op->wins, op->capw * sizeof *op->wins);
    }
    win *w = sl__xmalloc(sizeof *w);
    w->start = start;
    w->end = start + op->size; /* row_windows checked it cannot overflow */
    w->spilled = w->in_store = false;
    if (__builtin_add_overflow(w->end, op->lateness, &w->fire))
        w->fire = SL_TS_MAX;
    sl__bmap_init(&w->groups, op->grp_size);
    sl__bmap_reserve(&w->groups, op->grp_hint);
    memmove(&op->wins[lo + 1], &op->wins[lo],
            (op->nw - lo) * sizeof *op->wins);
    op->wins[lo] = w;
    op->nw++;
    return op->last = w;
}

static void window_free(win_op *op, win *w)
{
    for (size_t i = 0; op->heap && i < op->naggs; i++) {
        if (!sl__agg_has_heap(&op->aggs[i])) continue;
        sl__agg_states_free(&op->aggs[i], &w->groups);
    }
    op->ngroups -= sl__bmap_count(&w->groups);
    op->grp_hint = sl__bmap_count(&w->groups);
    sl__bmap_close(&w->groups);
    free(w);
}

win *sl__win_get(win_op *op, int64_t start)
{
    return window_get(op, start);
}

void sl__win_drop(win_op *op, size_t i)
{
    window_free(op, op->wins[i]);
    memmove(op->wins + i, op->wins + i + 1, (op->nw - i - 1) * sizeof *op->wins);
    op->nw--;
    op->last = NULL;
}

/* ---- late records ---------------------------------------------------------- */
/* A bounded table of late counts by window end; when full, the oldest end
 * makes room (its count stays in st.late_pairs only). late_add is also how
 * restore merges a snapshot's table in. */
static void late_add(win_op *op, int64_t end, uint64_t n)
{
    int oldest = 0;
    for (int i = 0; i < op->nlate; i++) {
        if (op->late[i].end == end) {
            op->late[i].n += n;
            return;
        }
        if (op->late[i].end < op->late[oldest].end) oldest = i;
    }
    int i = op->nlate < LATE_SLOTS ? op->nlate++ : oldest;
    if (op->nlate == LATE_SLOTS && i == oldest && op->late[i].end > end)
        return; /* older than everything kept: not worth a slot */
    op->late[i].end = end;
    op->late[i].n = n;
}

static void late_note(win_op *op, int64_t end)
{
    op->st.late_pairs++;
    late_add(op, end, 1);
}

uint64_t sl__window_late_count(const void *st, int64_t window_end)
{
    const win_op *op = st;
    for (int i = 0; i < op->nlate; i++)
        if (op->late[i].end == window_end) return op->late[i].n;
    return 0;
}

void sl__window_stats_get(const void *st, sl__window_stats *out)
{
    const win_op *op = st;
    *out = op->st;
    out->open_windows = op->nw;
    out->open_groups = 0;
    for (size_t i = 0; i < op->nw; i++)
        out->open_groups += op->ws ? sl__ws_count_groups(op, op->wins[i])
                                   : sl__bmap_count(&op->wins[i]->groups);
    out->watermark = op->wm;
}

/* ---- rows that are not aggregated ------------------------------------------ */
/* Canary rows travel apart from real data and are never aggregated: they
 * are counted here (pass 1) and forwarded at once by emit_canaries. */
static void forward_canary(win_op *op, const sl_batch *b, uint32_t row)
{
    (void)b;
    (void)row;
    op->st.canaries++;
}

static bool row_windows(const win_op *op, int64_t ts, int64_t *latest);

/* Forwards the batch's canary rows at once, mapped onto the output schema:
 * the window holding the canary's time, its key columns, NULL aggregates,
 * and its kind (which names the canary) kept. */
static int emit_canaries(win_op *op, const sl_batch *b, sl__out *out)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < b->n; i++) n += b->kind[i] != SL_KIND_DATA;
    if (!n) return 0;
    sl_batch *o = sl__batch_new(op->out, n);
    const int64_t *ts = b->cols[op->time_col].data;
    const uint8_t *tv = b->cols[op->time_col].valid;
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->kind[i] == SL_KIND_DATA) continue;
        uint32_t r = o->n++;
        int64_t start = 0;
        bool ok = tv[i] && row_windows(op, ts[i], &start);
        ((int64_t *)o->cols[0].data)[r] = start;
        ((int64_t *)o->cols[1].data)[r] = ok ? start + op->size : 0;
        o->cols[0].valid[r] = o->cols[1].valid[r] = ok;
        for (int k = 0; k < op->nkey; k++) {
            int ic = op->key_cols[k], oc = 2 + k;
            o->cols[oc].valid[r] = b->cols[ic].valid[i];
            switch (op->in->cols[ic].type) {
            case SL_STRING: {
                const sl_str *v = (const sl_str *)b->cols[ic].data + i;
                if (b->cols[ic].valid[i]) sl_batch_set_str(o, oc, r, v->ptr, v->len);
                break;
            }
            case SL_BOOL:
                ((uint8_t *)o->cols[oc].data)[r] = ((const uint8_t *)b->cols[ic].data)[i];
                break;
            default:
                ((int64_t *)o->cols[oc].data)[r] = ((const int64_t *)b->cols[ic].data)[i];
                break;
            }
        }
        for (int c = 2 + op->nkey; c < op->out->n; c++) o->cols[c].valid[r] = 0;
        o->kind[r] = b->kind[i];
    }
    return sl__emit(out, o);
}

/* Renders a row as comma-separated text for a dead letter, identifier
 * columns replaced by '*' of the same length. */
static size_t row_payload(const win_op *op, const sl_batch *b, uint32_t r,
                          char *buf, size_t size)
{
    size_t used = 0;
    for (int c = 0; c < op->in->n && used + 1 < size; c++) {
        const struct sl__col *col = &b->cols[c];
        char tmp[64] = "";
        const char *txt = tmp;
        size_t len = 0;
        if (col->valid && !col->valid[r]) {
            tmp[0] = 0;
        } else {
            switch (op->in->cols[c].type) {
            case SL_STRING:
                txt = ((const sl_str *)col->data)[r].ptr;
                len = ((const sl_str *)col->data)[r].len;
                break;
            case SL_FLOAT64:
                snprintf(tmp, sizeof tmp, "%.17g",
                         ((const double *)col->data)[r]);
                break;
            case SL_BOOL:
                snprintf(tmp, sizeof tmp, "%s",
                         ((const uint8_t *)col->data)[r] ? "true" : "false");
                break;
            default:
                snprintf(tmp, sizeof tmp, "%lld",
                         (long long)((const int64_t *)col->data)[r]);
                break;
            }
        }
        if (txt == tmp) len = strlen(tmp);
        if (c > 0) buf[used++] = ',';
        for (size_t i = 0; i < len && used + 1 < size; i++)
            buf[used++] = op->in->cols[c].identifier ? '*' : txt[i];
    }
    buf[used] = 0;
    return used;
}

static void dead_letter(win_op *op, const sl_batch *b, uint32_t r,
                        const char *reason)
{
    char payload[1024], pos[32];
    size_t len = row_payload(op, b, r, payload, sizeof payload);
    snprintf(pos, sizeof pos, "batch row %u", r);
    sl__dead_letter(op->ctx, "window", pos, reason, payload, len);
}

/* ---- batches ----------------------------------------------------------------- */
/* Start of the latest window holding ts; false when a window of the record
 * would start or end outside int64. */
static bool row_windows(const win_op *op, int64_t ts, int64_t *latest)
{
    int64_t s, first, end;
    if (__builtin_mul_overflow(sl__floor_div(ts, op->step), op->step, &s))
        return false;
    if (__builtin_sub_overflow(s, (int64_t)(op->nwin - 1) * op->step, &first))
        return false;
    if (__builtin_add_overflow(s, op->size, &end)) return false;
    *latest = s;
    return true;
}

static void grow_rows(win_op *op, size_t n)
{
    if (n <= op->rcap) return;
    op->rcap = n;
    op->koff = sl__xrealloc(op->koff, n * sizeof *op->koff);
    op->klen = sl__xrealloc(op->klen, n * sizeof *op->klen);
    op->live = sl__xrealloc(op->live, n * sizeof *op->live);
    op->kh = sl__xrealloc(op->kh, n * sizeof *op->kh);
    op->latest = sl__xrealloc(op->latest, n * sizeof *op->latest);
}

/* Pass 1: classifies the rows, then encodes (a column at a time) and
 * hashes the keys of live ones. */
static uint32_t prepare_rows(win_op *op, const sl_batch *b)
{
    const int64_t *ts = b->cols[op->time_col].data;
    const uint8_t *tv = b->cols[op->time_col].valid;
    uint32_t m = 0;
    grow_rows(op, b->n);
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->kind && b->kind[i] != SL_KIND_DATA) {
            forward_canary(op, b, i);
            continue;
        }
        if (tv && !tv[i]) {
            op->st.null_time++;
            dead_letter(op, b, i, "null_time");
            continue;
        }
        if (!row_windows(op, ts[i], &op->latest[m])) {
            op->st.bad_time++;
            dead_letter(op, b, i, "time_out_of_range");
            continue;
        }
        op->live[m++] = i;
    }
    /* Each live row's room (kh holds it for now): its longest encoding (a
     * string's bytes may all be escaped NULs) plus 8 bytes the encoder may
     * write past a value; a NULL's length is not set, so it must not count. */
    uint64_t fixed = 8;
    for (int k = 0; k < op->nkey; k++)
        switch (op->in->cols[op->key_cols[k]].type) {
        case SL_STRING: fixed += 3; break;
        case SL_BOOL: fixed += 2; break;
        default: fixed += 9; break;
        }
    for (uint32_t j = 0; j < m; j++) op->kh[j] = fixed;
    for (int k = 0; k < op->nkey; k++) {
        int c = op->key_cols[k];
        if (op->in->cols[c].type != SL_STRING) continue;
        const sl_str *v = b->cols[c].data;
        const uint8_t *ok = b->cols[c].valid;
        if (!ok)
            for (uint32_t j = 0; j < m; j++) op->kh[j] += 2 * (uint64_t)v[op->live[j]].len;
        else
            for (uint32_t j = 0; j < m; j++) {
                uint32_t r = op->live[j];
                op->kh[j] += 2 * (uint64_t)v[r].len & -(uint64_t)(ok[r] != 0);
            }
    }
    uint64_t need = 0;
    for (uint32_t j = 0; j < m; j++) {
        op->koff[j] = (uint32_t)need;
        need += op->kh[j];
    }
    SL_ASSERT(need <= UINT32_MAX); /* koff is 32 bits */
    if (need > op->kcap) {
        op->kcap = need * 2 > 4096 ? need * 2 : 4096;
        op->kbuf = sl__xrealloc(op->kbuf, op->kcap);
    }
    sl__wkey_encode_rows(&op->kl, b, op->live, m, op->kbuf, op->koff, op->klen);
    if (!op->kl.rowhash)
        for (uint32_t j = 0; j < m; j++)
            op->kh[j] = sl__wkey_hash(&op->kl, op->kbuf + op->koff[j], op->klen[j]);
    else if (b->khash)
        for (uint32_t j = 0; j < m; j++) op->kh[j] = sl__wkey_mix(b->khash[op->live[j]]);
    else
        for (uint32_t j = 0; j < m; j++)
            op->kh[j] = sl__wkey_mix(sl__key_hash(b, op->key_cols, op->nkey, op->live[j]));
    return m;
}

/* Pairs live rows [j0, j1) with their open windows, counting late ones;
 * returns the number of pairs. */
static uint32_t assign_pairs(win_op *op, uint32_t j0, uint32_t j1,
                             uint64_t *late_records)
{
    uint32_t np = 0;
    for (uint32_t j = j0; j < j1; j++) {
        bool any = false;
        for (uint32_t k = 0; k < op->nwin; k++) {
            int64_t start = op->latest[j] - (int64_t)k * op->step;
            int64_t end = start + op->size, fire;
            if (__builtin_add_overflow(end, op->lateness, &fire))
                fire = SL_TS_MAX;
            if (fire <= op->wm) {
                late_note(op, end);
                continue;
            }
            any = true;
            op->prow[np] = op->live[j];
            op->pkey[np] = j;
            op->pwin[np] = window_get(op, start);
            np++;
        }
        if (!any) (*late_records)++;
    }
    return np;
}

/* ---- key groups ---------------------------------------------------------------- */
/* A group's key group sits after its aggregate states. It is computed once,
 * from the row that creates the group, with the function that routes rows
 * between stages, so a snapshot section holds exactly the groups whose rows
 * arrive at the task owning that key group. */
static inline int32_t grp_kg(const win_op *op, const uint8_t *grp)
{
    return sl__grp_kg(op, grp);
}

static inline void grp_set_kg(const win_op *op, uint8_t *grp, int32_t kg)
{
    memcpy(grp + op->state_size, &kg, sizeof kg);
}

static int32_t row_kg(const win_op *op, const sl_batch *b, uint32_t row)
{
    if (op->npart == 0 || op->key_groups <= 1) return 0;
    /* the stream's key is the exchange's: its hash came with the batch */
    if (b->khash) return (int32_t)(b->khash[row] % (uint64_t)op->key_groups);
    return sl__key_group(b, op->key_cols, op->npart, row, op->key_groups);
}

static int too_many_groups(const win_op *op)
{
    return sl__job_fail(op->ctx ? op->ctx->job : NULL, SL_ENOMEM,
                        "window: task %d holds %llu open (window, key) groups, more "
                        "than 'window.max.groups' (%lld): raise it, shorten the "
                        "window or its lateness, or add parallelism",
                        op->ctx ? op->ctx->task : 0, (unsigned long long)op->ngroups,
                        (long long)op->max_groups);
}

static int win_batch_locked(void *st, sl_batch *b, sl__out *out)
{
    win_op *op = st;
    op->started = true;
    if (op->imp) sl__ws_close_import(op); /* restore is over */
    if (op->cimp) sl__winchg_imp_free(op);
    if (op->asnap) sl__winsnap_reap(op, false);
    int crc = emit_canaries(op, b, out);
    if (crc) {
        sl__batch_free(b);
        return crc;
    }
    uint32_t m = prepare_rows(op, b);
    int rc = 0;
    uint32_t chunk = PAIR_CHUNK / op->nwin ? PAIR_CHUNK / op->nwin : 1;
    uint64_t late = 0;
    for (uint32_t j0 = 0; j0 < m; j0 += chunk) {
        uint32_t j1 = m - j0 < chunk ? m : j0 + chunk;
        uint32_t np = assign_pairs(op, j0, j1, &late);
        /* Pass 2: groups, prefetching the slots two distances ahead and
         * the entries they point to one distance ahead. */
        for (uint32_t p = 0; p < np; p++) {
            if (p + 2 * PREFETCH_AHEAD < np)
                sl__bmap_prefetch(&op->pwin[p + 2 * PREFETCH_AHEAD]->groups,
                                  op->kh[op->pkey[p + 2 * PREFETCH_AHEAD]]);
            if (p + PREFETCH_AHEAD < np)
                sl__bmap_prefetch_entry(&op->pwin[p + PREFETCH_AHEAD]->groups,
                                        op->kh[op->pkey[p + PREFETCH_AHEAD]]);
            uint32_t j = op->pkey[p];
            bool fresh;
            uint8_t *g = sl__bmap_upsert(&op->pwin[p]->groups,
                                         op->kbuf + op->koff[j], op->klen[j],
                                         op->kh[j], &fresh);
            if (fresh) {
                grp_set_kg(op, g, row_kg(op, b, op->prow[p]));
                /* window.max.groups: the job stops (its state is dropped);
                 * on RocksDB only the cache is in memory, so no cap */
                if (++op->ngroups > (uint64_t)op->max_groups && op->max_groups &&
                    !op->ws) {
                    sl__batch_free(b);
                    return too_many_groups(op);
                }
                if (op->ts_off) sl__grp_set_ts(op, g, SL_TS_MIN);
            } else if (op->ts_off && sl__ttl_expired(op, op->wm, sl__grp_ts(op, g))) {
                /* state.ttl.ms: an expired group starts afresh */
                if (op->asnap) sl__winsnap_cow(op, g);
                op->chg_force = true; /* a set shrank: no delta says so */
                for (size_t a = 0; a < op->naggs; a++) sl__agg_state_free(&op->aggs[a], g);
                memset(g, 0, op->state_size);
                sl__grp_set_ts(op, g, SL_TS_MIN);
                op->st.expired_groups++;
            }
            if (op->chg) sl__winchg_touch(op, g); /* incremental checkpoints */
            op->pfresh[p] = fresh;
            op->pgrp[p] = g;
        }
        /* Groups of spilled windows come back from RocksDB (winstore.c). */
        if (op->ws && (rc = sl__ws_load(op, np)) != 0) {
            sl__batch_free(b);
            return rc;
        }
        /* A snapshot in flight gets the groups before they change. */
        if (op->asnap) sl__winsnap_cow_pairs(op, np);
        /* Pass 3: aggregates (a zero-filled new group is an empty state). */
        for (size_t a = 0; a < op->naggs; a++)
            sl__agg_add(&op->aggs[a], b, op->prow, op->pgrp, np);
        if (op->ts_off) { /* the newest record's event time, for the TTL */
            const int64_t *ts = b->cols[op->time_col].data;
            for (uint32_t p = 0; p < np; p++)
                if (ts[op->prow[p]] > sl__grp_ts(op, op->pgrp[p]))
                    sl__grp_set_ts(op, op->pgrp[p], ts[op->prow[p]]);
        }
    }
    if (late) {
        op->st.late_records += late;
        sl__count(op->ctx, SL__CTR_LATE, late);
    }
    sl__batch_free(b);
    return op->ws ? sl__ws_maybe_evict(op) : 0;
}

/* ---- firing -------------------------------------------------------------------- */
/* Emits one row per group of w in key order, filling *ob and pushing it
 * downstream whenever it is full. */
static int fire_window(win_op *op, win *w, sl__out *out, sl_batch **ob)
{
    uint32_t ng = sl__bmap_count(&w->groups);
    uint32_t cap = out->batch_cap ? out->batch_cap
                   : op->batch_cap ? op->batch_cap : DEFAULT_BATCH_CAP;
    sl__wkey_ref *refs = sl__xmalloc((ng ? ng : 1) * (sizeof *refs + 2 * sizeof(uint32_t)));
    uint32_t *ix = (uint32_t *)(refs + ng), *tmp = ix + ng;
    uint32_t ne = 0; /* groups to emit */
    for (uint32_t g = 0; g < ng; g++) {
        const uint8_t *key;
        uint32_t len;
        const uint8_t *grp = sl__bmap_at(&w->groups, g, &key, &len);
        int64_t cnt;
        if (op->ts_off && sl__ttl_expired(op, w->fire, sl__grp_ts(op, grp))) {
            op->st.expired_groups++; /* state.ttl.ms */
            continue;
        }
        if (op->conf->has_min &&
            sl__agg_exact_count(&op->aggs[op->conf->min_agg], grp, &cnt) &&
            cnt < op->conf->min_count)
            continue; /* k-anonymity, pushed down: see sl_stream_k_anon */
        sl__wkey_ref_init(&refs[ne], key, len, grp);
        ix[ne] = ne;
        ne++;
    }
    if (ne < ng) sl__count(op->ctx, SL__CTR_SUPPRESSED, ng - ne);
    sl__wkey_sort(refs, ix, tmp, ne);
    int rc = 0;
    if (op->conf->fold) { /* k-anonymity by folding (kanon.c) */
        sl_batch *keys = sl__batch_new(op->out, ne ? ne : 1);
        uint8_t **grp = sl__xmalloc((ne ? ne : 1) * sizeof *grp);
        for (uint32_t g = 0; g < ne; g++) {
            const sl__wkey_ref *ref = &refs[ix[g]];
            grp[g] = (uint8_t *)ref->grp;
            decode_key(op, ref->key, ref->len, keys, g);
            keys->n = g + 1;
        }
        if (rc == 0)
            rc = sl__fold_fire(op->conf->fold, op->ctx, op->aggs, op->naggs,
                               op->state_size, w->start, w->end, keys, grp,
                               out, ob, cap);
        sl__batch_free(keys);
        free(grp);
    }
    for (uint32_t g = 0; g < ne && rc == 0 && !op->conf->fold; g++) {
        if (!*ob) {
            *ob = sl__batch_new(op->out, cap);
            if (!*ob) {
                rc = SL_ENOMEM;
                break;
            }
        }
        if (g + PREFETCH_AHEAD < ne) { /* key order is random memory order */
            const sl__wkey_ref *a = &refs[ix[g + PREFETCH_AHEAD]];
            __builtin_prefetch(a->key);
            __builtin_prefetch(a->grp);
        }
        sl_batch *b = *ob;
        uint32_t r = b->n;
        const sl__wkey_ref *ref = &refs[ix[g]];
        const uint8_t *grp = ref->grp;
        ((int64_t *)b->cols[0].data)[r] = w->start;
        ((int64_t *)b->cols[1].data)[r] = w->end;
        b->cols[0].valid[r] = 1;
        b->cols[1].valid[r] = 1;
        decode_key(op, ref->key, ref->len, b, r);
        for (size_t a = 0; a < op->naggs && rc == 0; a++)
            rc = sl__agg_result(&op->aggs[a], grp, b,
                                2 + op->nkey + (int)a, r);
        if (rc) break;
        b->kind[r] = SL_KIND_DATA;
        b->n = r + 1;
        if (b->n == b->cap) {
            *ob = NULL;
            rc = sl__emit(out, b);
        }
    }
    free(refs);
    if (rc == 0) {
        op->st.fired_windows++;
        op->st.fired_groups += ng;
        sl__count(op->ctx, SL__CTR_WINDOWS_FIRED, ng);
    }
    return rc;
}

static int win_watermark_locked(void *st, int64_t wm, sl__out *out)
{
    win_op *op = st;
    op->started = true;
    if (op->imp) sl__ws_close_import(op); /* restore is over */
    if (op->cimp) sl__winchg_imp_free(op);
    /* the same wm again: the runtime resumes a firing (SL__MORE) */
    if (wm < op->wm || (wm == op->wm && !op->ws_firing)) return 0;
    op->wm = wm;
    if (op->asnap) sl__winsnap_reap(op, false);
    sl_batch *ob = NULL;
    size_t nf = 0;
    int rc = 0;
    while (nf < op->nw && op->wins[nf]->fire <= wm) {
        win *w = op->wins[nf];
        if (op->asnap) sl__winsnap_cow_window(op, w); /* it is freed below */
        uint32_t cap = out->batch_cap ? out->batch_cap
                       : op->batch_cap ? op->batch_cap : DEFAULT_BATCH_CAP;
        /* RocksDB: every window fires from a scan of the store, so rows
         * come in one order (key group, key) however much had spilled */
        if (op->ws && !op->conf->fold) {
            /* RocksDB firings emit a few batches per call, so a window of
             * millions of groups queues no more than that (winstore.c) */
            rc = sl__ws_fire(op, w, out, &ob, cap);
            if (rc == SL__MORE) break;
        } else {
            if (op->ws && w->spilled) rc = sl__ws_load_window(op, w);
            if (rc == 0) rc = fire_window(op, w, out, &ob);
            if (rc == 0 && op->ws) rc = sl__ws_forget(op, w);
        }
        window_free(op, op->wins[nf]);
        nf++;
        if (rc) break;
    }
    if (nf) {
        memmove(op->wins, op->wins + nf, (op->nw - nf) * sizeof *op->wins);
        op->nw -= nf;
        op->last = NULL;
    }
    if (rc == SL__MORE) {
        int erc = 0;
        if (ob && ob->n > 0) erc = sl__emit(out, ob);
        else sl__batch_free(ob);
        return erc ? erc : SL__MORE;
    }
    /* state.ttl.ms in memory: after firing, so every open window fires
     * later than wm and the sweep drops only what its firing would */
    if (rc == 0 && op->ttl && wm >= op->next_sweep) {
        if (op->asnap) sl__winsnap_cow_all(op); /* the sweep moves groups */
        op->chg_force = true; /* groups removed: the next checkpoint is full */
        sl__ws_sweep(op);
        if (__builtin_add_overflow(wm, op->ttl / 2 + 1, &op->next_sweep))
            op->next_sweep = SL_TS_MAX;
    }
    if (ob) {
        if (rc == 0 && ob->n > 0) rc = sl__emit(out, ob);
        else sl__batch_free(ob);
    }
    if (rc == 0 && op->ws) rc = sl__ws_maybe_evict(op);
    return rc;
}

/* ---- checkpoints ------------------------------------------------------------------ */
/* State format (version 1; all integers little-endian, as sl__buf writes):
 *
 *   header (every section):
 *     u32 SNAP_MAGIC, u64 fingerprint of the definition (definition_fp),
 *     i64 watermark of the instance that wrote it
 *   key group section (0 <= kg < G): the open windows' groups of that kg
 *     u32 nwin, then per window in ascending start:
 *       i64 start, u32 ngroups (>= 1), then per group in ascending key
 *       bytes: u32 klen, the encoded key (sl__wkey_encode), u32 slen, and slen
 *       bytes: each aggregate's sl__agg_serialize in definition order
 *   operator section (kg -1):
 *     u64 late_records, late_pairs, canaries, null_time, bad_time,
 *         fired_windows, fired_groups
 *     u32 nlate (<= LATE_SLOTS), then nlate x (i64 window end, u64 count)
 *         in ascending end
 *
 * A snapshot is a pure function of the state: sections come in ascending
 * key group, then the operator section. */
#define SNAP_MAGIC SL__WIN_SNAP_MAGIC /* "SLWN" */

static uint64_t definition_fp(const win_op *op)
{
    sl__buf b = {0};
    sl__buf_put_i64(&b, op->size);
    sl__buf_put_i64(&b, op->step);
    sl__buf_put_i64(&b, op->lateness);
    sl__buf_put_u32(&b, (uint32_t)op->nkey);
    if (op->npart != op->nkey) /* the partitioning decides the key groups */
        sl__buf_put_u32(&b, 0x80000000u | (uint32_t)op->npart);
    for (int k = 0; k < op->nkey; k++)
        sl__buf_put_u32(&b, (uint32_t)op->in->cols[op->key_cols[k]].type);
    sl__buf_put_u64(&b, op->naggs);
    for (size_t i = 0; i < op->naggs; i++) {
        const sl__agg *a = &op->aggs[i];
        sl__buf_put_u32(&b, (uint32_t)a->kind);
        sl__buf_put_u32(&b, (uint32_t)a->in_type);
        sl__buf_put_u32(&b, a->nbounds);
        if (a->kind == SL_AGG_APPROX_PERCENTILE) { /* the sketch's buckets */
            uint64_t u;
            memcpy(&u, &a->alpha, sizeof u);
            sl__buf_put_u64(&b, u);
        }
        if (a->udaf) { /* a different UDAF's state must not be restored */
            sl__buf_put(&b, a->udaf->name, strlen(a->udaf->name));
            sl__buf_put_u32(&b, a->udaf->state_size);
        }
        for (uint32_t j = 0; j < a->nbounds; j++) {
            uint64_t u;
            memcpy(&u, &a->bounds[j], sizeof u);
            sl__buf_put_u64(&b, u);
        }
    }
    if (op->ttl) { /* sections then carry each group's newest time */
        sl__buf_put_u32(&b, 0x54544c31u);
        sl__buf_put_i64(&b, op->ttl);
    }
    uint64_t h = sl__hash_bytes(b.p, b.len, SL__WKEY_SEED);
    sl__buf_free(&b);
    return h;
}

typedef struct {
    int32_t kg;
    uint32_t win; /* index in op->wins: ascending start */
    const uint8_t *key;
    uint32_t len;
    const uint8_t *grp;
} snap_ref;

static int snap_ref_cmp(const void *x, const void *y)
{
    const snap_ref *a = x, *b = y;
    if (a->kg != b->kg) return a->kg < b->kg ? -1 : 1;
    if (a->win != b->win) return a->win < b->win ? -1 : 1;
    int c = memcmp(a->key, b->key, a->len < b->len ? a->len : b->len);
    if (c) return c;
    return (a->len > b->len) - (a->len < b->len);
}

static void snap_header(const win_op *op, sl__buf *b)
{
    sl__buf_put_u32(b, SNAP_MAGIC);
    sl__buf_put_u64(b, op->fp);
    sl__buf_put_i64(b, op->wm);
}

/* Returns 0, or SL_EINVAL for a group whose states outgrow the format's
 * u32 length (billions of distinct values in one group). Reads the group
 * only: the snapshot writer thread calls it too (winsnap.c). */
int sl__win_group_bytes(const win_op *op, const uint8_t *grp, char **buf, size_t *cap,
                        size_t *len)
{
    size_t n = op->ts_off ? 8 : 0; /* with TTL: the newest record's time */
    for (size_t a = 0; a < op->naggs; a++)
        n += sl__agg_serialized_size(&op->aggs[a], grp);
    if (n > UINT32_MAX) return SL_EINVAL;
    if (n > *cap || !*buf) {
        *buf = sl__xrealloc(*buf, n ? n : 1);
        *cap = n;
    }
    char *tmp = *buf;
    size_t used = 0;
    for (size_t a = 0; a < op->naggs; a++)
        used += sl__agg_serialize(&op->aggs[a], grp, (uint8_t *)tmp + used);
    if (op->ts_off) {
        uint64_t t = (uint64_t)sl__grp_ts(op, grp);
        for (int i = 0; i < 8; i++, t >>= 8) tmp[used++] = (char)(uint8_t)t;
    }
    SL_ASSERT(used == n);
    *len = n;
    return 0;
}

static int snap_group(win_op *op, sl__buf *b, const snap_ref *r)
{
    size_t n;
    int rc = sl__win_group_bytes(op, r->grp, &op->tmp, &op->tmpcap, &n);
    if (rc) return rc;
    sl__buf_put_str(b, (const char *)r->key, r->len);
    sl__buf_put_str(b, op->tmp, n);
    return 0;
}

/* Writes the groups refs[0..n) (one key group, sorted) as one section. */
static int snap_key_group(win_op *op, sl__snap_writer *w, sl__buf *b,
                          const snap_ref *refs, size_t n)
{
    b->len = 0;
    snap_header(op, b);
    uint32_t nwin = 0;
    for (size_t i = 0; i < n; i++)
        nwin += i == 0 || refs[i].win != refs[i - 1].win;
    sl__buf_put_u32(b, nwin);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && refs[j].win == refs[i].win) j++;
        sl__buf_put_i64(b, op->wins[refs[i].win]->start);
        sl__buf_put_u32(b, (uint32_t)(j - i));
        for (; i < j; i++) {
            int rc = snap_group(op, b, &refs[i]);
            if (rc < 0) return rc;
        }
    }
    return sl__snap_put(w, refs[0].kg, b->p, b->len);
}

static int late_cmp(const void *x, const void *y)
{
    const late_slot *a = x, *b = y;
    return (a->end > b->end) - (a->end < b->end);
}

void sl__win_snap_operator_bytes(const win_op *op, sl__buf *b)
{
    b->len = 0;
    snap_header(op, b);
    const uint64_t ctr[] = {op->st.late_records, op->st.late_pairs,
                            op->st.canaries,     op->st.null_time,
                            op->st.bad_time,     op->st.fired_windows,
                            op->st.fired_groups};
    for (size_t i = 0; i < sizeof ctr / sizeof ctr[0]; i++)
        sl__buf_put_u64(b, ctr[i]);
    late_slot late[LATE_SLOTS];
    memcpy(late, op->late, (size_t)op->nlate * sizeof *late);
    qsort(late, (size_t)op->nlate, sizeof *late, late_cmp);
    sl__buf_put_u32(b, (uint32_t)op->nlate);
    for (int i = 0; i < op->nlate; i++) {
        sl__buf_put_i64(b, late[i].end);
        sl__buf_put_u64(b, late[i].n);
    }
}

static int snap_operator(win_op *op, sl__snap_writer *w, sl__buf *b)
{
    sl__win_snap_operator_bytes(op, b);
    return sl__snap_put(w, -1, b->p, b->len);
}

static int win_snapshot_locked(void *st, sl__snap_writer *w)
{
    win_op *op = st;
    if (op->ws) { /* groups in RocksDB: sections from a merged scan */
        sl__buf b = {0};
        int rc = sl__ws_snapshot(op, w, &b, SNAP_MAGIC);
        if (rc == 0) rc = snap_operator(op, w, &b);
        sl__buf_free(&b);
        return rc;
    }
    size_t n = 0;
    for (size_t i = 0; i < op->nw; i++) n += sl__bmap_count(&op->wins[i]->groups);
    snap_ref *refs = sl__xmalloc((n ? n : 1) * sizeof *refs);
    size_t k = 0;
    for (size_t i = 0; i < op->nw; i++) {
        const sl__bmap *m = &op->wins[i]->groups;
        for (uint32_t g = 0; g < sl__bmap_count(m); g++) {
            snap_ref *r = &refs[k++];
            r->grp = sl__bmap_at(m, g, &r->key, &r->len);
            r->kg = grp_kg(op, r->grp);
            r->win = (uint32_t)i;
        }
    }
    qsort(refs, n, sizeof *refs, snap_ref_cmp);
    sl__buf b = {0};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t j = i;
        while (j < n && refs[j].kg == refs[i].kg) j++;
        rc = snap_key_group(op, w, &b, refs + i, j - i);
        i = j;
    }
    if (rc == 0) rc = snap_operator(op, w, &b);
    sl__buf_free(&b);
    free(refs);
    return rc;
}

/* Whether key[0..len) is exactly one encoded key of this operator: decode_key
 * trusts the encoding, so a restored key must be checked byte by byte. */
static bool key_valid(const win_op *op, const uint8_t *p, size_t len)
{
    size_t i = 0;
    for (int k = 0; k < op->nkey; k++) {
        if (i >= len || p[i] > 1) return false;
        if (p[i++] == 0) continue;
        switch (op->in->cols[op->key_cols[k]].type) {
        case SL_STRING:
            for (;;) {
                if (i >= len) return false;
                if (p[i++] != 0) continue;
                if (i >= len) return false;
                uint8_t next = p[i++];
                if (next == 0) break;      /* the terminator */
                if (next != 0xff) return false; /* not an escaped NUL */
            }
            break;
        case SL_BOOL:
            if (i >= len || p[i] > 1) return false;
            i++;
            break;
        default:
            if (len - i < 8) return false;
            i += 8;
            break;
        }
    }
    return i == len;
}

static int key_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b,
                   uint32_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c) return c;
    return (alen > blen) - (alen < blen);
}

/* A group read from a section, not yet part of the state. */
typedef struct {
    int64_t start;
    const uint8_t *key;
    uint32_t len;
    uint8_t *grp; /* grp_size bytes, owning its aggregate states */
} staged;

static void staged_free(const win_op *op, staged *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t a = 0; a < op->naggs; a++)
            sl__agg_state_free(&op->aggs[a], s[i].grp);
        free(s[i].grp);
    }
    free(s);
}

/* Reads the header; returns 0, SL_ECORRUPT or SL_EINVAL (another
 * definition's state). */
static int restore_header(const win_op *op, sl__rbuf *r, int64_t *wm)
{
    uint32_t magic = sl__rbuf_u32(r);
    uint64_t fp = sl__rbuf_u64(r);
    *wm = sl__rbuf_i64(r);
    if (r->err || magic != SNAP_MAGIC) return SL_ECORRUPT;
    if (fp != op->fp) return SL_EINVAL;
    return 0;
}

/* Parses a key group section into s; nothing of the state changes. */
static int restore_parse(win_op *op, sl__rbuf *r, int64_t wm, int32_t kg,
                         staged **sp, size_t *np)
{
    staged *s = NULL;
    size_t n = 0, cap = 0;
    uint32_t nwin = sl__rbuf_u32(r);
    int64_t prev_start = 0;
    for (uint32_t wi = 0; wi < nwin && !r->err; wi++) {
        int64_t start = sl__rbuf_i64(r), end, fire;
        uint32_t ngroups = sl__rbuf_u32(r);
        if (r->err || ngroups == 0 || start % op->step != 0 ||
            (wi > 0 && start <= prev_start) ||
            __builtin_add_overflow(start, op->size, &end))
            goto corrupt;
        if (__builtin_add_overflow(end, op->lateness, &fire)) fire = SL_TS_MAX;
        if (fire <= wm) goto corrupt; /* invariant 2 in the writer */
        prev_start = start;
        const uint8_t *prev = NULL;
        uint32_t prev_len = 0;
        for (uint32_t g = 0; g < ngroups; g++) {
            uint32_t klen, slen;
            const uint8_t *key = (const uint8_t *)sl__rbuf_str(r, &klen);
            const uint8_t *sb = (const uint8_t *)sl__rbuf_str(r, &slen);
            if (r->err || !key_valid(op, key, klen) ||
                (prev && key_cmp(prev, prev_len, key, klen) >= 0))
                goto corrupt;
            prev = key;
            prev_len = klen;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                s = sl__xrealloc(s, cap * sizeof *s);
            }
            uint8_t *grp = sl__xcalloc(1, op->grp_size);
            s[n++] = (staged){.start = start, .key = key, .len = klen,
                              .grp = grp};
            grp_set_kg(op, grp, kg);
            size_t used = 0, states = slen;
            if (op->ts_off) { /* the newest record's time follows */
                if (slen < 8) goto corrupt;
                states = slen - 8;
                uint64_t t = 0;
                for (int i = 7; i >= 0; i--) t = t << 8 | sb[states + (size_t)i];
                sl__grp_set_ts(op, grp, (int64_t)t);
            }
            for (size_t a = 0; a < op->naggs; a++) {
                int64_t got = sl__agg_deserialize(&op->aggs[a], grp,
                                                  sb + used, states - used);
                if (got < 0) goto corrupt;
                used += (size_t)got;
            }
            if (used != states) goto corrupt;
        }
    }
    if (r->err || r->off != r->len) goto corrupt;
    *sp = s;
    *np = n;
    return 0;
corrupt:
    staged_free(op, s, n);
    return SL_ECORRUPT;
}

/* Moves parsed groups into the state. A group already present (the same
 * window and key from another section: partial state of one unkeyed
 * window written by several tasks) is merged. */
static void restore_commit(win_op *op, staged *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        win *w = window_get(op, s[i].start);
        bool fresh;
        uint8_t *g = sl__bmap_upsert(&w->groups, s[i].key, s[i].len,
                                     sl__wkey_hash(&op->kl, s[i].key, s[i].len), &fresh);
        if (fresh) {
            op->ngroups++;
            memcpy(g, s[i].grp, op->grp_size); /* the states move */
            /* RocksDB: a copy spilled from an earlier section joins it */
            (void)sl__ws_merge_restored(op, w, s[i].key, s[i].len, g);
        } else {
            for (size_t a = 0; a < op->naggs; a++) {
                sl__agg_merge(&op->aggs[a], g, s[i].grp);
                sl__agg_state_free(&op->aggs[a], s[i].grp);
            }
        }
        free(s[i].grp);
    }
    free(s);
}

/* Sections written by several tasks (rescaling) may disagree on the
 * watermark: the lowest one wins, so every restored window still has
 * fire > wm (invariant 2) and nothing fires before its time. */
static void restore_wm(win_op *op, int64_t wm)
{
    if (!op->wm_restored || wm < op->wm) op->wm = wm;
    op->wm_restored = true;
}

static int restore_operator(win_op *op, sl__rbuf *r, int64_t wm)
{
    uint64_t ctr[7];
    for (size_t i = 0; i < 7; i++) ctr[i] = sl__rbuf_u64(r);
    uint32_t nlate = sl__rbuf_u32(r);
    if (r->err || nlate > LATE_SLOTS) return SL_ECORRUPT;
    late_slot late[LATE_SLOTS];
    for (uint32_t i = 0; i < nlate; i++) {
        late[i].end = sl__rbuf_i64(r);
        late[i].n = sl__rbuf_u64(r);
        if (i > 0 && late[i].end <= late[i - 1].end) return SL_ECORRUPT;
    }
    if (r->err || r->off != r->len) return SL_ECORRUPT;
    op->st.late_records += ctr[0];
    op->st.late_pairs += ctr[1];
    op->st.canaries += ctr[2];
    op->st.null_time += ctr[3];
    op->st.bad_time += ctr[4];
    op->st.fired_windows += ctr[5];
    op->st.fired_groups += ctr[6];
    for (uint32_t i = 0; i < nlate; i++) late_add(op, late[i].end, late[i].n);
    restore_wm(op, wm);
    return 0;
}

static int win_restore(void *st, int32_t kg, const void *data, size_t len);

/* A key group section of an incremental checkpoint: a reference to a
 * RocksDB checkpoint, opened as the store or read into a usual section
 * (winstore.c). */
static int restore_ref(win_op *op, int32_t kg, const void *data, size_t len)
{
    sl__buf b = {0};
    int64_t *starts = NULL, wm;
    uint32_t n = 0;
    int rc = sl__ws_restore_ref(op, kg, data, len, SNAP_MAGIC, &b, &starts, &n, &wm);
    if (rc == 0 && b.len) {
        rc = win_restore(op, kg, b.p, b.len);
    } else if (rc == 0) {
        for (uint32_t i = 0; i < n; i++) {
            win *w = window_get(op, starts[i]);
            w->spilled = w->in_store = true;
        }
        restore_wm(op, wm);
    }
    free(starts);
    sl__buf_free(&b);
    return rc;
}

/* Merges one section into a fresh instance. A section is applied whole or
 * not at all: on any error the state is as it was before the call. */
static int win_restore(void *st, int32_t kg, const void *data, size_t len)
{
    win_op *op = st;
    if (op->started) return SL_ESTATE;
    if (kg < -1 || (kg > 0 && op->npart == 0) ||
        (kg >= 0 && op->key_groups > 0 && kg >= op->key_groups))
        return SL_EINVAL;
    if (len && !data) return SL_EINVAL;
    if (kg >= 0 && sl__ws_is_ref(data, len)) return restore_ref(op, kg, data, len);
    if (kg >= 0 && sl__winchg_is_ref(data, len)) return sl__winchg_restore(op, kg, data, len);
    sl__rbuf r = {.p = data, .len = len};
    int64_t wm;
    int rc = restore_header(op, &r, &wm);
    if (rc < 0) return rc;
    if (kg == -1) return restore_operator(op, &r, wm);
    staged *s;
    size_t n;
    rc = restore_parse(op, &r, wm, kg, &s, &n);
    if (rc < 0) return rc;
    restore_commit(op, s, n);
    restore_wm(op, wm);
    return op->ws ? sl__ws_maybe_evict(op) : 0; /* the cache stays bounded */
}

/* ---- locked entry points (queryable state reads under qlock) -------------------------------------------------------------- */
static int win_batch(void *st, sl_batch *b, sl__out *out)
{
    win_op *op = st;
    pthread_mutex_lock(&op->qlock);
    int rc = win_batch_locked(st, b, out);
    pthread_mutex_unlock(&op->qlock);
    return rc;
}

static int win_watermark(void *st, int64_t wm, sl__out *out)
{
    win_op *op = st;
    pthread_mutex_lock(&op->qlock);
    int rc = win_watermark_locked(st, wm, out);
    pthread_mutex_unlock(&op->qlock);
    return rc;
}

static int win_snapshot(void *st, sl__snap_writer *w)
{
    win_op *op = st;
    pthread_mutex_lock(&op->qlock);
    int rc = win_snapshot_locked(st, w);
    pthread_mutex_unlock(&op->qlock);
    return rc;
}

/* ---- lifecycle ------------------------------------------------------------------- */
static int win_snapshot_async(void *st, sl__snap_deferred *d)
{
    win_op *op = st;
    pthread_mutex_lock(&op->qlock);
    int rc = sl__winsnap_begin(op, d);
    pthread_mutex_unlock(&op->qlock);
    return rc;
}

static void win_close(void *st)
{
    win_op *op = st;
    if (!op) return;
    sl__winsnap_reap(op, true); /* the writer is done with it (ckpt.c stops first) */
    sl__winchg_free(op);
    sl__winchg_imp_free(op);
    if (op->qreg) sl__qs_unregister(op);
    pthread_mutex_destroy(&op->qlock);
    for (size_t i = 0; i < op->nw; i++) window_free(op, op->wins[i]);
    free(op->wins);
    sl__ws_close_import(op);
    sl__ws_close(op);
    free(op->pfresh);
    for (size_t i = 0; i < op->naggs; i++) sl__agg_close(&op->aggs[i]);
    free(op->aggs);
    free(op->kbuf);
    free(op->koff);
    free(op->klen);
    free(op->live);
    free(op->kh);
    free(op->latest);
    free(op->prow);
    free(op->pkey);
    free(op->pwin);
    free(op->pgrp);
    free(op->tmp);
    free(op);
}

static int win_open(void **stp, const void *confv, const sl__opinfo *info,
                    sl__ctx *ctx, char *errstr, size_t errsz)
{
    const win_conf *c = confv;
    *stp = NULL;
    if (info->time_col < 0 || info->time_col >= info->in->n)
        return sl__err(errstr, errsz, SL_EINVAL,
                       "window: the stream has no event-time column");
    if (info->nkey != c->npart || (c->npart > 0 && !info->key_cols))
        return sl__err(errstr, errsz, SL_EINTERNAL,
                       "window: defined over %d key columns, opened with %d",
                       c->npart, info->nkey);
    if (info->out->n != 2 + c->nkey + (int)c->naggs)
        return sl__err(errstr, errsz, SL_EINTERNAL,
                       "window: output schema has %d columns, expected %d",
                       info->out->n, 2 + c->nkey + (int)c->naggs);
    win_op *op = sl__xcalloc(1, sizeof *op);
    pthread_mutex_init(&op->qlock, NULL);
    op->conf = c;
    op->in = info->in;
    op->out = info->out;
    op->ctx = ctx;
    op->max_groups = ctx ? ctx->window_max_groups : 0;
    op->batch_cap = info->batch_cap;
    op->time_col = info->time_col;
    op->nkey = c->nkey;
    op->npart = c->npart;
    for (int k = 0; k < c->nkey; k++) {
        /* extra grouping columns (past the stream's key) by name */
        int kc = k < c->npart ? info->key_cols[k]
                              : sl_schema_find(info->in, c->keys[k]);
        if (kc < 0 || kc >= info->in->n ||
            strcmp(info->in->cols[kc].name, c->keys[k]) != 0) {
            win_close(op);
            return sl__err(errstr, errsz, SL_EINTERNAL,
                           "window: key column %d is not '%s'", k,
                           c->keys[k]);
        }
        op->key_cols[k] = kc;
    }
    op->kl = (sl__wkey){.nkey = op->nkey, .cols = op->key_cols, .in = info->in,
                        .rowhash = op->nkey > 0 && op->npart == op->nkey};
    for (int k = 0; k < op->nkey; k++)
        if (info->in->cols[op->key_cols[k]].type == SL_FLOAT64) op->kl.rowhash = false;
    op->naggs = c->naggs;
    op->aggs = sl__xcalloc(c->naggs ? c->naggs : 1, sizeof *op->aggs);
    uint32_t off = 0;
    for (size_t i = 0; i < c->naggs; i++) {
        char msg[256];
        int rc = sl__agg_init(&op->aggs[i], &c->aggs[i], info->in, off, msg,
                              sizeof msg);
        if (rc < 0) {
            op->naggs = i;
            win_close(op);
            return sl__err(errstr, errsz, rc, "window: %s", msg);
        }
        off += op->aggs[i].size;
        op->heap |= sl__agg_has_heap(&op->aggs[i]);
    }
    op->state_size = off;
    op->grp_size = off + 8; /* the key group, padded to keep 8-byte blocks */
    sl__state_conf jsc, *sc = NULL;
    if (ctx && ctx->state) {
        sc = &jsc;
        jsc = *ctx->state;
    } else if (ctx && ctx->job) {
        sc = &jsc;
        sl__job_state_conf(ctx->job, &jsc);
    }
    if (sc && sc->ttl_ms) { /* the newest record's event time follows */
        op->ts_off = op->grp_size;
        op->grp_size += 8;
    }
    op->key_groups = ctx ? ctx->key_groups : 0;
    op->size = c->size;
    op->step = c->slide ? c->slide : c->size;
    op->lateness = c->lateness;
    op->nwin = (uint32_t)(c->size / op->step);
    op->fp = definition_fp(op);
    op->wm = SL_TS_MIN;
    op->st.watermark = SL_TS_MIN;
    op->pcap = PAIR_CHUNK > op->nwin ? PAIR_CHUNK : op->nwin;
    op->prow = sl__xmalloc(op->pcap * sizeof *op->prow);
    op->pkey = sl__xmalloc(op->pcap * sizeof *op->pkey);
    op->pwin = sl__xmalloc(op->pcap * sizeof *op->pwin);
    op->pgrp = sl__xmalloc(op->pcap * sizeof *op->pgrp);
    op->pfresh = sl__xmalloc(op->pcap);
    op->ttl = sc ? sc->ttl_ms : 0;
    op->fp = definition_fp(op);
    /* incremental checkpoints of memory state: a delta per checkpoint */
    if (sc && sc->incremental && sc->backend == SL__STATE_MEMORY) sl__winchg_new(op);
    int wrc = sl__ws_open(op, sc, errstr, errsz);
    if (wrc) {
        win_close(op);
        return wrc;
    }
    if (ctx && ctx->job) {
        sl__qs_register(ctx->job, info->op_id, "window", op, sl__window_query);
        op->qreg = true;
    }
    *stp = op;
    return 0;
}

const sl__op_vt sl__window_vt = {
    .name = "window",
    .open = win_open,
    .batch = win_batch,
    .watermark = win_watermark,
    .close = win_close,
    .conf_free = conf_free,
    .snapshot = win_snapshot,
    .restore = win_restore,
    .state_version = 1,
    .snapshot_async = win_snapshot_async,
};
