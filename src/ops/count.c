/* count.c — count_by: a pass-through operator that counts data records per
 * value of a low-cardinality STRING column (events per type) into a job
 * business counter `metric{column="value"}`, exported at /metrics.
 *
 * The counts are checkpointed state: after a recovery the counter goes on
 * from the checkpoint, so it equals an uninterrupted run's instead of
 * restarting at zero or counting replayed input twice. Canary records are
 * not counted. It never copies or changes a batch.
 *
 * Invariants:
 * 1. An instance's slot counts are exactly the data records it passed on
 *    since the checkpoint it restored from (plus what that held): cb_batch
 *    counts before emitting, cb_snapshot writes every slot, cb_restore adds
 *    a section's counts to the slots and to the job counter together.
 * 2. The job counter of a value is the sum over instances of their slots
 *    for it, because every increment of a slot goes to both.
 * 3. At most COUNT_SLOTS values are told apart; every further value is
 *    counted under "other", so a high-cardinality column cannot grow the
 *    metrics without bound. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hashmap.h"
#include "core/runtime.h"

enum { COUNT_SLOTS = 64, COUNT_VALUE_MAX = 48, COUNT_SNAP_VERSION = 1 };

typedef struct {
    int col;
    char *col_name, *metric, *help;
} count_conf;

typedef struct {
    char v[COUNT_VALUE_MAX + 1];
    uint32_t len;
    bool used;
    uint64_t n;
    _Atomic uint64_t *job; /* NULL without a job (unit tests) */
} count_slot;

typedef struct {
    const count_conf *c;
    sl__ctx *ctx;
    count_slot s[COUNT_SLOTS + 1]; /* the last one is "other" */
    int ns;
} count_op;

static void count_conf_free(void *p)
{
    count_conf *c = p;
    if (!c) return;
    free(c->col_name);
    free(c->metric);
    free(c->help);
    free(c);
}

static void slot_init(count_op *o, count_slot *s, const char *v, size_t len)
{
    memcpy(s->v, v, len);
    s->v[len] = 0;
    s->len = (uint32_t)len;
    s->used = true;
    s->n = 0;
    s->job = NULL;
    if (!o->ctx || !o->ctx->job) return;
    char labels[160];
    size_t k = (size_t)snprintf(labels, sizeof labels, "%s=\"", o->c->col_name);
    for (size_t i = 0; i < len && k + 3 < sizeof labels; i++) {
        char ch = v[i];
        if (ch == '"' || ch == '\\') labels[k++] = '\\';
        labels[k++] = (unsigned char)ch < 0x20 ? ' ' : ch;
    }
    snprintf(labels + k, sizeof labels - k, "\"");
    s->job = sl__job_counter(o->ctx->job, o->c->metric, o->c->help, labels);
}

static count_slot *slot_find(count_op *o, const char *v, size_t len)
{
    for (int i = 0; i < o->ns; i++)
        if (o->s[i].len == len && sl__bytes_eq(o->s[i].v, v, len)) return &o->s[i];
    count_slot *other = &o->s[COUNT_SLOTS];
    if (len > COUNT_VALUE_MAX || o->ns == COUNT_SLOTS) { /* invariant 3 */
        if (!other->used) slot_init(o, other, "other", 5);
        return other;
    }
    if (len == 5 && !memcmp(v, "other", 5)) {
        if (!other->used) slot_init(o, other, "other", 5);
        return other;
    }
    count_slot *s = &o->s[o->ns++];
    slot_init(o, s, v, len);
    return s;
}

static int cb_open(void **st, const void *conf, const sl__opinfo *info, sl__ctx *ctx,
                   char *err, size_t errsz)
{
    (void)info, (void)err, (void)errsz;
    count_op *o = sl__xcalloc(1, sizeof *o);
    o->c = conf;
    o->ctx = ctx;
    *st = o;
    return 0;
}

static void add(count_slot *s, uint64_t n)
{
    s->n += n;
    if (s->job) atomic_fetch_add_explicit(s->job, n, memory_order_relaxed);
}

static int cb_batch(void *st, sl_batch *b, sl__out *out)
{
    count_op *o = st;
    const sl_str *v = sl_batch_str(b, o->c->col);
    const uint8_t *ok = sl_batch_valid(b, o->c->col);
    count_slot *last = NULL;
    const char *last_ptr = NULL;
    uint64_t run = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->kind[i] != SL_KIND_DATA || !ok[i]) continue; /* canaries, NULLs */
        /* values of a column often share storage (domain strings) */
        if (last && v[i].ptr == last_ptr && v[i].len == last->len) {
            run++;
            continue;
        }
        if (last) add(last, run);
        last = slot_find(o, v[i].ptr, v[i].len);
        last_ptr = v[i].ptr;
        run = 1;
    }
    if (last) add(last, run);
    return sl__emit(out, b);
}

static int cb_snapshot(void *st, sl__snap_writer *w)
{
    count_op *o = st;
    sl__buf b = {0};
    sl__buf_put_u32(&b, COUNT_SNAP_VERSION);
    uint32_t n = 0;
    for (int i = 0; i <= COUNT_SLOTS; i++) n += o->s[i].used;
    sl__buf_put_u32(&b, n);
    for (int i = 0; i <= COUNT_SLOTS; i++) {
        const count_slot *s = &o->s[i];
        if (!s->used) continue;
        sl__buf_put_str(&b, s->v, s->len);
        sl__buf_put_u64(&b, s->n);
    }
    int rc = sl__snap_put(w, -1, b.p, b.len);
    sl__buf_free(&b);
    return rc;
}

static int cb_restore(void *st, int32_t kg, const void *data, size_t len)
{
    count_op *o = st;
    if (kg != -1) return SL_ECORRUPT;
    sl__rbuf r = {.p = data, .len = len};
    if (sl__rbuf_u32(&r) != COUNT_SNAP_VERSION) return SL_ECORRUPT;
    uint32_t n = sl__rbuf_u32(&r);
    if (r.err || n > COUNT_SLOTS + 1) return SL_ECORRUPT;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t vl;
        const char *v = sl__rbuf_str(&r, &vl);
        uint64_t c = sl__rbuf_u64(&r);
        if (r.err || !v) return SL_ECORRUPT;
        add(slot_find(o, v, vl), c); /* invariant 1 */
    }
    return r.off == r.len ? 0 : SL_ECORRUPT;
}

static void cb_close(void *st) { free(st); }

static const sl__op_vt count_vt = {
    .name = "count_by",
    .open = cb_open,
    .batch = cb_batch,
    .close = cb_close,
    .conf_free = count_conf_free,
    .snapshot = cb_snapshot,
    .restore = cb_restore,
    .state_version = 1,
};

static bool metric_name_ok(const char *m)
{
    size_t n = strlen(m);
    if (n < 7 || n > 90 || strcmp(m + n - 6, "_total") != 0) return false;
    for (size_t i = 0; i < n; i++) {
        char c = m[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

sl_stream *sl_stream_count_by(sl_stream *s, const char *col, const char *metric,
                              const char *help)
{
    if (!s) return NULL;
    sl_job *job = sl__stream_job(s);
    const sl_schema *in = sl_stream_schema(s);
    int c = col ? sl_schema_find(in, col) : -1;
    if (c < 0 || in->cols[c].type != SL_STRING) {
        sl__job_fail(job, SL_EINVAL, "count_by: '%s' is not a VARCHAR column of the "
                     "stream", col ? col : "");
        return NULL;
    }
    if (in->cols[c].identifier) {
        sl__job_fail(job, SL_EINVAL, "count_by: '%s' is an identifier column: its "
                     "values must never become metric labels", col);
        return NULL;
    }
    if (!metric || !metric_name_ok(metric)) {
        sl__job_fail(job, SL_EINVAL, "count_by: metric name '%s' must match "
                     "[a-zA-Z_][a-zA-Z0-9_]* and end in _total (Prometheus counter)",
                     metric ? metric : "");
        return NULL;
    }
    count_conf *cf = sl__xcalloc(1, sizeof *cf);
    cf->col = c;
    cf->col_name = sl__xstrdup(col);
    cf->metric = sl__xstrdup(metric);
    cf->help = sl__xstrdup(help ? help : "Records per value (checkpointed).");
    return sl__stream_add_op(s, &count_vt, cf, in);
}
