/* exec.c — the runtime: plans the job graph into stages and tasks, connects
 * them with bounded exchanges, and runs the tasks on a pool of worker
 * threads until the input ends, an error occurs or the job is cancelled.
 *
 * Invariants:
 * 1. A task runs on one worker at a time (task_step is guarded by the
 *    task's `busy` flag), so operator instances need no locks.
 * 2. Memory is bounded: an exchange channel holds at most
 *    exchange.capacity batches; a task whose output cannot be delivered
 *    keeps it as `pending` and reads no new input until it is delivered
 *    (back pressure; kept by task_flush_pending and task_step). A source
 *    reads one batch per step, so the bound reaches the source.
 * 3. Watermarks never overtake data: before a watermark or end marker is
 *    queued on a channel, the channel's partly filled batch is queued first
 *    (route_flush_all). A task's watermark is the minimum over its input
 *    channels and never decreases (task_on_watermark).
 * 4. A bounded input ends with watermark SL_TS_MAX followed by an end
 *    marker on every channel; a task finishes when all its inputs ended, and
 *    the job finishes when every task has finished.
 * 5. An op's output for one watermark is bounded too: an op that answers
 *    SL__MORE is called again with the same watermark once the pending
 *    output is delivered, before the task reads input, takes a checkpoint
 *    or passes the watermark on (chain_watermark, task_resume, task_step).
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "exec.h"

static int default_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ---- routing: the tail of a chain --------------------------------------- */
static void pending_push(task *t, int ch, sl__msg m) { sl__msgq_push(&t->pending[ch], m); }

static void seal_builder(task *t, int ch)
{
    sl_batch *b = t->builder[ch];
    if (!b || b->n == 0) return;
    t->builder[ch] = NULL;
    pending_push(t, ch, (sl__msg){.type = SL__MSG_BATCH, .batch = b});
}

static void route_flush_all(task *t)
{
    for (int c = 0; c < t->nout; c++) seal_builder(t, c);
}

void sl__route_control(task *t, int type, int64_t wm)
{
    route_flush_all(t);
    for (int c = 0; c < t->nout; c++)
        pending_push(t, c, (sl__msg){.type = type, .wm = wm});
}

/* Appends rows (or, with rows NULL, all of b) to the channel's builder,
 * sealing it whenever it fills; b may not fit in the room left. */
static void append_rows(task *t, int ch, sl_batch *b, const uint32_t *rows,
                        uint32_t n, const uint64_t *h)
{
    uint32_t cap = (uint32_t)t->job->conf.batch_size;
    uint32_t *all = NULL;
    while (n > 0) {
        if (!t->builder[ch]) {
            t->builder[ch] = sl__batch_new(b->schema, cap);
            t->builder_since[ch] = sl__clock();
        }
        sl_batch *d = t->builder[ch];
        uint32_t room = d->cap - d->n, k = n < room ? n : room;
        if (!rows && k < n) { /* a part of b: the rest must follow, not its start */
            all = sl__xmalloc(sizeof(uint32_t) * n);
            for (uint32_t i = 0; i < n; i++) all[i] = i;
            rows = all;
        }
        if (h) { /* the key hashes travel with the rows (sl_batch.khash) */
            if (!d->khash) d->khash = sl__arena_alloc(&d->arena, sizeof(uint64_t) * d->cap);
            for (uint32_t i = 0; i < k; i++) d->khash[d->n + i] = h[rows[i]];
        }
        sl__batch_append(d, b, rows, k);
        if (rows) rows += k;
        n -= k;
        if (d->n == d->cap) seal_builder(t, ch);
    }
    free(all);
}

uint64_t sl__key_hash(const sl_batch *b, const int *cols, int ncols, uint32_t r)
{
    uint64_t h = SL__KEY_HASH_SEED;
    for (int k = 0; k < ncols; k++) {
        int c = cols[k];
        uint64_t v = 0;
        if (b->cols[c].valid[r]) {
            switch (b->schema->cols[c].type) {
            case SL_STRING: {
                const sl_str *s = (const sl_str *)b->cols[c].data + r;
                v = sl__hash_bytes(s->ptr, s->len, 0);
                break;
            }
            case SL_BOOL: v = ((const uint8_t *)b->cols[c].data)[r]; break;
            default: v = (uint64_t)((const int64_t *)b->cols[c].data)[r]; break;
            }
        }
        h = sl__key_hash_step(h, v, k);
    }
    return h;
}

void sl__key_hashes(const sl_batch *b, const int *cols, int ncols, uint64_t *h)
{
    uint32_t n = b->n;
    for (uint32_t r = 0; r < n; r++) h[r] = SL__KEY_HASH_SEED;
    for (int k = 0; k < ncols; k++) {
        const struct sl__col *c = &b->cols[cols[k]];
        const uint8_t *ok = c->valid;
        switch (b->schema->cols[cols[k]].type) {
        case SL_STRING: {
            /* Key strings mostly repeat by pointer (domain values, interned
             * table strings, static labels): a small memo by address
             * hashes each once per batch. A batch's strings do not change
             * during the call, so an equal (pointer, length) is an equal
             * string; the hash is the same as without the memo. */
            struct { const char *p; uint32_t len; uint64_t h; } memo[64];
            for (int i = 0; i < 64; i++) memo[i].p = (const char *)memo; /* no string */
            const sl_str *s = c->data;
            for (uint32_t r = 0; r < n; r++) {
                uint64_t v = 0;
                if (ok[r]) {
                    uintptr_t q = (uintptr_t)s[r].ptr;
                    unsigned i = (unsigned)((q >> 3) ^ (q >> 9)) & 63;
                    if (memo[i].p == s[r].ptr && memo[i].len == s[r].len) {
                        v = memo[i].h;
                    } else {
                        v = sl__hash_bytes(s[r].ptr, s[r].len, 0);
                        memo[i].p = s[r].ptr;
                        memo[i].len = s[r].len;
                        memo[i].h = v;
                    }
                }
                h[r] = sl__key_hash_step(h[r], v, k);
            }
            break;
        }
        case SL_BOOL: {
            const uint8_t *d = c->data;
            for (uint32_t r = 0; r < n; r++)
                h[r] = sl__key_hash_step(h[r], ok[r] ? d[r] : 0, k);
            break;
        }
        default: {
            const int64_t *d = c->data;
            for (uint32_t r = 0; r < n; r++)
                h[r] = sl__key_hash_step(h[r], ok[r] ? (uint64_t)d[r] : 0, k);
            break;
        }
        }
    }
}

int sl__key_group(const sl_batch *b, const int *cols, int ncols, uint32_t row,
                  int groups)
{
    return (int)(sl__key_hash(b, cols, ncols, row) % (uint64_t)groups);
}

/* Key groups are contiguous ranges per task, so rescaling moves whole
 * groups: group g belongs to task g * P / G. */
int sl__group_task(int g, int groups, int ntasks)
{
    return (int)((int64_t)g * ntasks / groups);
}

int sl__key_group_task(uint64_t hash, int groups, int ntasks)
{
    return sl__group_task((int)(hash % (uint64_t)groups), groups, ntasks);
}

/* The sink task sees canaries: pipeline latency now, commit latency when
 * the epoch they belong to becomes visible. */
static void sink_canaries(task *t, const sl_batch *b)
{
    for (uint32_t r = 0; r < b->n; r++) {
        if (b->kind[r] == SL_KIND_DATA) continue;
        if (sl__fault("drop-canary")) continue; /* test hook: lost on the way */
        if (!sl__canary_seen(&t->job->canaries, b->kind[r], sl__clock())) continue;
        if (t->nawait == t->capawait) {
            t->capawait = t->capawait ? t->capawait * 2 : 16;
            t->await = sl__xrealloc(t->await, t->capawait * sizeof *t->await);
        }
        t->await[t->nawait].slot = b->kind[r];
        t->await[t->nawait].epoch = t->ck_epoch + 1;
        t->nawait++;
    }
}

static int route_push(sl__out *o, sl_batch *b)
{
    task *t = ((chain_out *)o)->t;
    stage *st = t->st;
    int rc = 0;
    if (b->n == 0) {
        sl__batch_free(b);
        return 0;
    }
    sl__stats_on_batch_out(&t->obs, b->n);
    sl__stats_on_bytes(&t->obs.bytes_out, b);
    switch (st->okind) {
    case OUT_SINK: {
        sink_canaries(t, b);
        char err[512] = "";
        rc = t->job->sink_vt->write(t->sink, b, err, sizeof err);
        if (rc) sl__job_fail(t->job, rc, "sink %s: %s", t->job->sink_vt->name,
                             err[0] ? err : sl_strerror(rc));
        else {
            uint64_t data = 0;
            for (uint32_t r = 0; r < b->n; r++) data += b->kind[r] == SL_KIND_DATA;
            sl__count(&t->ctx, SL__CTR_RECORDS_OUT, data);
        }
        sl__batch_free(b);
        break;
    }
    case OUT_SINGLE:
        append_rows(t, 0, b, NULL, b->n, NULL);
        sl__batch_free(b);
        break;
    case OUT_HASH: {
        int P = t->nout, G = (int)t->job->conf.key_groups;
        SL_ASSERT(P >= 1 && P <= 256); /* parallelism's bound sizes cnt, off, lo */
        uint64_t *h = sl__xmalloc((sizeof(uint64_t) + 2 * sizeof(uint32_t)) * b->n);
        uint32_t *idx = (uint32_t *)(h + b->n), *dst = idx + b->n;
        uint32_t cnt[256] = {0}, off[257], lo[257];
        /* task p owns key groups [lo[p], lo[p + 1]): sl__group_task without
         * a division per row */
        for (int p = 0; p <= P; p++) lo[p] = (uint32_t)(((int64_t)p * G + P - 1) / P);
        sl__key_hashes(b, st->key_cols, st->nkey, h);
        uint64_t gmask = (G & (G - 1)) == 0 ? (uint64_t)G - 1 : 0; /* % G as a mask */
        for (uint32_t r = 0; r < b->n; r++) {
            uint32_t g = (uint32_t)(gmask ? h[r] & gmask : h[r] % (uint64_t)G);
            int a = 0, z = P - 1;
            while (a < z) {
                int m = (a + z + 1) / 2;
                if (lo[m] <= g) a = m;
                else z = m - 1;
            }
            dst[r] = (uint32_t)a;
            cnt[a]++;
        }
        off[0] = 0;
        for (int p = 0; p < P; p++) off[p + 1] = off[p] + cnt[p];
        uint32_t pos[256];
        memcpy(pos, off, sizeof(uint32_t) * (size_t)P);
        for (uint32_t r = 0; r < b->n; r++) idx[pos[dst[r]]++] = r;
        for (int p = 0; p < P; p++)
            if (cnt[p]) append_rows(t, p, b, idx + off[p], cnt[p], h);
        free(h);
        sl__batch_free(b);
        break;
    }
    case OUT_NONE:
        sl__batch_free(b);
        break;
    }
    return rc;
}

/* ---- the chain ----------------------------------------------------------- */
static int chain_push(sl__out *o, sl_batch *b)
{
    chain_out *l = (chain_out *)o;
    task *t = l->t;
    int i = l->next_op;
    return t->vt[i]->batch(t->op[i], b, &t->links[i + 1].out);
}

static int chain_batch(task *t, sl_batch *b)
{
    sl__stats_on_batch_in(&t->obs, b->n);
    sl__stats_on_bytes(&t->obs.bytes_in, b);
    return sl__emit(&t->links[0].out, b);
}

/* Passes wm to ops [from, nops). An op that answers SL__MORE has more
 * output for wm than one step should queue (a window firing many groups):
 * the chain stops there and task_resume calls that op again, with the
 * same wm, once the task's pending output is delivered (invariant 5). */
static int chain_watermark(task *t, int64_t wm, int from)
{
    for (int i = from; i < t->nops; i++) {
        if (!t->vt[i]->watermark) continue;
        int rc = t->vt[i]->watermark(t->op[i], wm, &t->links[i + 1].out);
        if (rc == SL__MORE) {
            t->resume = i + 1;
            return rc;
        }
        if (rc) return rc;
    }
    return 0;
}

static int sink_flush(task *t)
{
    char err[512] = "";
    int rc = t->job->sink_vt->flush(t->sink, err, sizeof err);
    if (rc) sl__job_fail(t->job, rc, "sink %s: %s", t->job->sink_vt->name,
                         err[0] ? err : sl_strerror(rc));
    else sl__ck_canaries_visible(t, UINT64_MAX);
    t->sink_flushed = sl__clock();
    return rc;
}

static int task_watermark_done(task *t, int64_t wm);

/* The watermark moved to wm: pass it down the chain, then downstream. */
static int task_on_watermark(task *t, int64_t wm)
{
    if (wm <= t->wm) return 0;
    t->wm = wm;
    int rc = chain_watermark(t, wm, 0);
    if (rc == SL__MORE) return 0; /* task_resume finishes it */
    if (rc) return rc;
    return task_watermark_done(t, wm);
}

/* The chain has taken wm: publish it and pass it downstream. */
static int task_watermark_done(task *t, int64_t wm)
{
    atomic_store(&t->pub_wm, wm);
    if (t->st->okind == OUT_SINK) {
        /* under exactly-once only the epoch protocol publishes */
        if (t->ctx.delivery == SL__EXACTLY_ONCE || wm == SL_TS_MAX) return 0;
        uint64_t now = sl__clock();
        if (now - t->sink_flushed >= (uint64_t)t->job->conf.sink_flush_ms * 1000000ULL)
            return sink_flush(t);
        return 0;
    }
    if (t->nout) sl__route_control(t, SL__MSG_WATERMARK, wm);
    return 0;
}

static int task_finish_done(task *t);

static int task_finish(task *t)
{
    int rc = task_on_watermark(t, SL_TS_MAX);
    if (rc) return rc;
    if (t->resume) { /* the chain still fires: task_resume ends the task */
        t->resume_finish = true;
        return 0;
    }
    return task_finish_done(t);
}

static int task_finish_done(task *t)
{
    int rc = 0;
    if (t->st->okind == OUT_SINK) rc = sl__ck_sink_finish(t);
    else if (t->nout) sl__route_control(t, SL__MSG_END, SL_TS_MAX);
    t->finished = true; /* pending output is still delivered by task_step */
    return rc;
}

/* Calls the op that answered SL__MORE again with the task's watermark;
 * once the whole chain has taken it, does what task_on_watermark and
 * task_finish left undone. */
static int task_resume(task *t)
{
    int from = t->resume - 1;
    t->resume = 0;
    int rc = chain_watermark(t, t->wm, from);
    if (rc == SL__MORE) return STEP_PROGRESS;
    if (rc) return rc;
    if ((rc = task_watermark_done(t, t->wm))) return rc;
    if ((rc = sl__ck_on_input_end(t))) return rc; /* one input_step deferred */
    if (t->resume_finish) {
        t->resume_finish = false;
        if ((rc = task_finish_done(t))) return rc;
    }
    return STEP_PROGRESS;
}

/* ---- pending output ------------------------------------------------------ */
bool sl__task_has_pending(const task *t)
{
    for (int c = 0; c < t->nout; c++)
        if (!sl__msgq_empty(&t->pending[c])) return true;
    return false;
}

/* Moves pending messages into their channels while there is room.
 * Returns true when nothing is pending any more. */
static bool task_flush_pending(task *t)
{
    bool all = true;
    for (int c = 0; c < t->nout; c++) {
        sl__msgq *q = &t->pending[c];
        while (!sl__msgq_empty(q)) {
            if (!sl__chan_try_push(t->out[c], sl__msgq_peek(q))) break;
            sl__msgq_pop(q);
        }
        all &= sl__msgq_empty(q);
    }
    uint64_t now = sl__clock();
    if (!all && !t->blocked_since) t->blocked_since = now;
    if (all && t->blocked_since) {
        sl__count(&t->ctx, SL__CTR_BLOCKED_NS, now - t->blocked_since);
        t->blocked_since = 0;
    }
    return all;
}

/* Partly filled batches older than flush.ms go out so latency stays low. */
static void task_flush_old_builders(task *t)
{
    uint64_t now = sl__clock(), lim = (uint64_t)t->job->conf.flush_ms * 1000000ULL;
    for (int c = 0; c < t->nout; c++)
        if (t->builder[c] && t->builder[c]->n && now - t->builder_since[c] >= lim)
            seal_builder(t, c);
}

/* ---- source tasks -------------------------------------------------------- */
static int64_t source_watermark(task *t)
{
    sl_job *j = t->job;
    int64_t wm = SL_TS_MAX, top = SL_TS_MIN;
    bool any = false;
    uint64_t now = sl__clock();
    uint64_t idle = (uint64_t)j->idle_timeout_ms * 1000000ULL;
    for (int p = 0; p < t->nparts; p++) {
        int64_t w = t->part_max[p] == SL_TS_MIN ? SL_TS_MIN
                                                : t->part_max[p] - j->wm_delay_ms;
        if (w > top) top = w;
        if (idle && now - t->part_seen[p] >= idle) continue; /* idle */
        any = true;
        if (w < wm) wm = w;
    }
    /* Every partition idle: what has arrived is taken as complete, and the
     * watermark moves to the most advanced partition's (Kafka Streams'
     * max.task.idle: after the timeout, process what is there). */
    if (!any) return top > t->wm ? top : t->wm;
    return wm;
}

/* A canary per partition every canary.interval.ms, at the partition's
 * event-time frontier (so it is never late), its other fields NULL; in the
 * batch just read, or, when that is full, in a batch of its own returned
 * for the caller to send after it. */
static sl_batch *inject_canary(task *t, sl_batch *b, int part)
{
    sl__canaries *c = &t->job->canaries;
    if (!c->interval_ns || t->time_col < 0 || t->part_max[part] == SL_TS_MIN) return NULL;
    uint64_t now = sl__clock();
    if (!t->canary_last[part]) t->canary_last[part] = now; /* first after one interval */
    if (now - t->canary_last[part] < c->interval_ns) return NULL;
    int slot = sl__canary_inject(c, t->parts[part], now);
    if (!slot) return NULL;
    t->canary_last[part] = now;
    sl_batch *own = NULL;
    if (b->n >= b->cap) b = own = sl__batch_new(b->schema, 1);
    uint32_t r = b->n++;
    for (int k = 0; k < b->schema->n; k++) b->cols[k].valid[r] = 0;
    ((int64_t *)b->cols[t->time_col].data)[r] = t->part_max[part];
    b->cols[t->time_col].valid[r] = 1;
    b->kind[r] = (uint8_t)slot;
    return own;
}

static int source_step(task *t)
{
    sl_job *j = t->job;
    if (atomic_load(&j->stop_req)) return STEP_IDLE; /* stopping: read no more */
    if (j->conf.source_rate) { /* source.rate: records per second per task */
        uint64_t now = sl__clock();
        if (!t->rate_t0) t->rate_t0 = now;
        double allowed = (double)(now - t->rate_t0) / 1e9 * (double)j->conf.source_rate;
        if ((double)t->rate_n >= allowed + 1) return STEP_IDLE;
    }
    sl_batch *b = sl__batch_new(j->src_schema, (uint32_t)j->conf.batch_size);
    int part = 0;
    char err[512] = "";
    int rc = t->nparts ? j->src_vt->read(t->src, b, &part, err, sizeof err) : SL_EEOF;
    if (rc == SL_EAGAIN) {
        sl__batch_free(b);
        int64_t wm = source_watermark(t);
        if (wm > t->wm && (rc = task_on_watermark(t, wm))) return rc;
        return STEP_IDLE;
    }
    if (rc == SL_EEOF) {
        sl__batch_free(b);
        return (rc = task_finish(t)) ? rc : STEP_PROGRESS;
    }
    if (rc < 0) {
        sl__batch_free(b);
        return sl__job_fail(j, rc, "source %s: %s", j->src_vt->name,
                            err[0] ? err : sl_strerror(rc));
    }
    sl__count(&t->ctx, SL__CTR_RECORDS_IN, b->n);
    t->rate_n += b->n;
    sl__ck_source_progress(t, part);
    if (t->time_col >= 0 && b->n) {
        const int64_t *ts = b->cols[t->time_col].data;
        const uint8_t *ok = b->cols[t->time_col].valid;
        int64_t mx = t->part_max[part];
        for (uint32_t r = 0; r < b->n; r++)
            if (ok[r] && b->kind[r] == SL_KIND_DATA && ts[r] > mx) mx = ts[r];
        t->part_max[part] = mx;
    }
    t->part_seen[part] = sl__clock();
    int64_t off, end;
    if (j->src_vt->progress && !j->src_vt->progress(t->src, part, &off, &end)) {
        atomic_store_explicit(&t->part_off[part], off, memory_order_relaxed);
        atomic_store_explicit(&t->part_end[part], end, memory_order_relaxed);
    }
    sl_batch *canary = inject_canary(t, b, part);
    if (b->n == 0) sl__batch_free(b);
    else if ((rc = chain_batch(t, b))) {
        sl__batch_free(canary);
        return rc;
    }
    if (canary && (rc = chain_batch(t, canary))) return rc;
    if (t->time_col >= 0) {
        int64_t wm = source_watermark(t);
        if (wm > t->wm && (rc = task_on_watermark(t, wm))) return rc;
    }
    return STEP_PROGRESS;
}

/* ---- downstream tasks ---------------------------------------------------- */
static int64_t inputs_min_wm(const task *t)
{
    int64_t m = SL_TS_MAX;
    for (int i = 0; i < t->nin; i++)
        if (!t->in_end[i] && t->in_wm[i] < m) m = t->in_wm[i];
    return m;
}

static int input_step(task *t)
{
    int progressed = STEP_IDLE, rc;
    for (int budget = 0; budget < 16 && !sl__task_has_pending(t) && !t->finished &&
                         !t->resume;
         budget++) {
        sl__msg m;
        int got = -1;
        for (int k = 0; k < t->nin; k++) {
            int i = (t->rr + k) % t->nin;
            /* an input whose barrier arrived waits for the others (alignment) */
            if (!t->in_end[i] && !t->in_barrier[i] && sl__chan_try_pop(t->in[i], &m)) {
                got = i;
                break;
            }
        }
        if (got < 0) break;
        t->rr = (got + 1) % t->nin;
        progressed = STEP_PROGRESS;
        switch (m.type) {
        case SL__MSG_BATCH:
            if ((rc = chain_batch(t, m.batch))) return rc;
            break;
        case SL__MSG_WATERMARK:
            if (m.wm > t->in_wm[got]) t->in_wm[got] = m.wm;
            if ((rc = task_on_watermark(t, inputs_min_wm(t)))) return rc;
            break;
        case SL__MSG_END:
            t->in_end[got] = true;
            if (--t->nin_open == 0) {
                if ((rc = sl__ck_on_input_end(t))) return rc;
                if ((rc = task_finish(t))) return rc;
            } else {
                if ((rc = task_on_watermark(t, inputs_min_wm(t)))) return rc;
                /* mid-watermark, the alignment waits for task_resume */
                if (!t->resume && (rc = sl__ck_on_input_end(t))) return rc;
            }
            break;
        case SL__MSG_BARRIER:
            if ((rc = sl__ck_on_barrier(t, got, (uint64_t)m.wm))) return rc;
            break;
        }
    }
    return progressed;
}

static int task_step(task *t)
{
    /* no barrier while an op is part way through a watermark (invariant 5) */
    int rc = t->resume ? 0 : sl__ck_task_duties(t);
    if (rc < 0) return rc;
    if (!task_flush_pending(t)) return STEP_BLOCKED;
    if (t->resume) {
        if ((rc = task_resume(t)) < 0) return rc;
        task_flush_pending(t);
        return rc;
    }
    if (t->finished) return STEP_IDLE;
    rc = t->st->is_source ? source_step(t) : input_step(t);
    if (rc < 0) return rc;
    if (!t->finished) task_flush_old_builders(t);
    task_flush_pending(t);
    return rc;
}

/* ---- planning ------------------------------------------------------------ */
static stage *stage_add(plan *pl, int ntasks, const sl_schema *s)
{
    stage *st = &pl->stages[pl->nstages];
    st->idx = pl->nstages++;
    st->ntasks = ntasks;
    st->in_schema = st->out_schema = s;
    return st;
}

static int plan_stages(plan *pl, sl_job *j)
{
    if (!j->src_vt) return sl__job_fail(j, SL_EINVAL, "job: it has no source");
    if (!j->sink_vt) return sl__job_fail(j, SL_EINVAL, "job: it has no sink");
    int P = j->conf.parallelism ? (int)j->conf.parallelism : default_cores();
    if (P > j->conf.key_groups) P = (int)j->conf.key_groups;
    struct sl_stream *src = j->nodes[0];
    int parts = j->src_vt->partitions(j->src_conf);
    pl->stages = sl__xcalloc((size_t)j->nnodes + 2, sizeof(stage));
    stage *cur = stage_add(pl, parts < 1 ? 1 : parts < P ? parts : P, src->schema);
    cur->is_source = true;
    for (struct sl_stream *n = src; n; n = n->child) {
        if (n->kind == NODE_KEYBY) {
            cur->okind = OUT_HASH;
            cur->nkey = 0;
            for (size_t k = 0; n->key[k]; k++)
                cur->key_cols[cur->nkey++] = sl_schema_find(n->schema, n->key[k]);
            stage *nx = stage_add(pl, P, n->schema);
            cur->next = nx;
            cur = nx;
        } else if (n->kind == NODE_OP) {
            if (!cur->first) cur->first = n;
            cur->last = n;
            cur->out_schema = n->schema;
        }
        if (n == j->sink_at) break;
    }
    if (j->sink_vt->max_parallelism == 1 && cur->ntasks > 1) {
        cur->okind = OUT_SINGLE;
        stage *nx = stage_add(pl, 1, cur->out_schema);
        cur->next = nx;
        cur = nx;
    }
    cur->okind = OUT_SINK;
    return 0;
}

static int task_open(plan *pl, task *t, char *err, size_t errsz)
{
    sl_job *j = pl->job;
    stage *st = t->st;
    int rc;
    if (st->is_source) {
        int parts = j->src_vt->partitions(j->src_conf);
        t->parts = sl__xcalloc((size_t)parts + 1, sizeof(int));
        for (int p = t->idx; p < parts; p += st->ntasks) t->parts[t->nparts++] = p;
        t->part_max = sl__xcalloc((size_t)t->nparts + 1, sizeof(int64_t));
        t->part_seen = sl__xcalloc((size_t)t->nparts + 1, sizeof(uint64_t));
        t->canary_last = sl__xcalloc((size_t)t->nparts + 1, sizeof(uint64_t));
        t->part_off = sl__xcalloc((size_t)t->nparts + 1, sizeof(*t->part_off));
        t->part_end = sl__xcalloc((size_t)t->nparts + 1, sizeof(*t->part_end));
        for (int p = 0; p < t->nparts; p++) atomic_init(&t->part_end[p], -1);
        uint64_t now = sl__clock();
        for (int p = 0; p < t->nparts; p++) {
            t->part_max[p] = SL_TS_MIN;
            t->part_seen[p] = now;
        }
        t->time_col = j->nodes[0]->time_col
                          ? sl_schema_find(j->src_schema, j->nodes[0]->time_col)
                          : -1;
        if (t->nparts &&
            (rc = j->src_vt->open(&t->src, j->src_conf, j->src_schema, t->parts,
                                  t->nparts, &t->ctx, err, errsz)))
            return rc;
    }
    for (struct sl_stream *n = st->first; n; n = n->child) {
        if (n->kind == NODE_OP) t->nops++;
        if (n == st->last) break;
    }
    t->vt = sl__xcalloc((size_t)t->nops + 1, sizeof(*t->vt));
    t->op = sl__xcalloc((size_t)t->nops + 1, sizeof(void *));
    t->op_id = sl__xcalloc((size_t)t->nops + 1, sizeof(uint32_t));
    t->links = sl__xcalloc((size_t)t->nops + 1, sizeof(chain_out));
    int i = 0;
    for (struct sl_stream *n = st->first; n && i < t->nops; n = n->child) {
        if (n->kind != NODE_OP) continue;
        const struct sl_stream *in = n->parent;
        int keys[SL_MAX_COLS], nkey = 0;
        for (size_t k = 0; in->key && in->key[k]; k++)
            keys[nkey++] = sl_schema_find(in->schema, in->key[k]);
        sl__opinfo info = {
            .in = in->schema, .out = n->schema,
            .time_col = in->time_col ? sl_schema_find(in->schema, in->time_col) : -1,
            .key_cols = in->key ? keys : NULL, .nkey = nkey,
            .batch_cap = (uint32_t)j->conf.batch_size, .op_id = (uint32_t)n->id};
        t->vt[i] = n->vt;
        t->op_id[i] = (uint32_t)n->id;
        if ((rc = n->vt->open(&t->op[i], n->conf, &info, &t->ctx, err, errsz)))
            return rc;
        i++;
    }
    for (i = 0; i <= t->nops; i++) {
        t->links[i].out.push = i < t->nops ? chain_push : route_push;
        t->links[i].out.batch_cap = (uint32_t)j->conf.batch_size;
        t->links[i].t = t;
        t->links[i].next_op = i;
    }
    if (st->okind == OUT_SINK &&
        (rc = j->sink_vt->open(&t->sink, j->sink_conf, st->out_schema, &t->ctx,
                               err, errsz)))
        return rc;
    t->sink_flushed = sl__clock();
    return 0;
}

static int plan_tasks(plan *pl)
{
    sl_job *j = pl->job;
    for (int s = 0; s < pl->nstages; s++) pl->ntasks += pl->stages[s].ntasks;
    pl->tasks = sl__xcalloc((size_t)pl->ntasks, sizeof(task *));
    int k = 0;
    for (int s = 0; s < pl->nstages; s++) {
        stage *st = &pl->stages[s];
        st->tasks = sl__xcalloc((size_t)st->ntasks, sizeof(task *));
        for (int i = 0; i < st->ntasks; i++) {
            task *t = sl__xcalloc(1, sizeof *t);
            t->st = st;
            t->idx = i;
            t->job = j;
            t->wm = SL_TS_MIN;
            atomic_init(&t->pub_wm, SL_TS_MIN);
            atomic_flag_clear(&t->busy);
            t->pl = pl;
            t->ctx = (sl__ctx){.job = j, .stage = s, .task = i,
                               .ntasks = st->ntasks, .outdir = j->conf.output_dir,
                               .job_name = j->conf.name,
                               .delivery = (sl__delivery)j->conf.delivery,
                               .key_groups = (int)j->conf.key_groups,
                               .ctr = t->ctr,
                               .window_max_groups = j->conf.window_max_groups};
            st->tasks[i] = t;
            pl->tasks[k++] = t;
        }
    }
    /* channels: one per (upstream task, downstream task) pair */
    for (int s = 0; s + 1 < pl->nstages; s++) {
        stage *up = &pl->stages[s], *dn = &pl->stages[s + 1];
        for (int d = 0; d < dn->ntasks; d++) {
            task *t = dn->tasks[d];
            t->nin = t->nin_open = up->ntasks;
            t->in = sl__xcalloc((size_t)up->ntasks, sizeof(sl__chan *));
            t->in_wm = sl__xcalloc((size_t)up->ntasks, sizeof(int64_t));
            t->in_end = sl__xcalloc((size_t)up->ntasks, sizeof(bool));
            t->in_barrier = sl__xcalloc((size_t)up->ntasks, sizeof(bool));
            for (int u = 0; u < up->ntasks; u++) t->in_wm[u] = SL_TS_MIN;
        }
        for (int u = 0; u < up->ntasks; u++) {
            task *t = up->tasks[u];
            t->nout = dn->ntasks;
            t->out = sl__xcalloc((size_t)dn->ntasks, sizeof(sl__chan *));
            t->builder = sl__xcalloc((size_t)dn->ntasks, sizeof(sl_batch *));
            t->builder_since = sl__xcalloc((size_t)dn->ntasks, sizeof(uint64_t));
            t->pending = sl__xcalloc((size_t)dn->ntasks, sizeof(sl__msgq));
            for (int d = 0; d < dn->ntasks; d++) {
                sl__chan *c = sl__chan_new((uint32_t)j->conf.exchange_capacity);
                c->byte_cap = (uint64_t)j->conf.exchange_max_bytes;
                pl->chans = sl__xrealloc(pl->chans, sizeof(sl__chan *) *
                                                        (size_t)(pl->nchans + 1));
                pl->chans[pl->nchans++] = c;
                t->out[d] = c;
                dn->tasks[d]->in[u] = c;
            }
        }
    }
    for (int i = 0; i < pl->ntasks; i++) {
        char err[512] = "";
        int rc = task_open(pl, pl->tasks[i], err, sizeof err);
        if (rc) return sl__job_fail(j, rc, "%s", err[0] ? err : sl_strerror(rc));
    }
    return 0;
}

static void task_free(sl_job *j, task *t)
{
    if (t->src) j->src_vt->close(t->src);
    for (int i = 0; i < t->nops; i++)
        if (t->op[i]) t->vt[i]->close(t->op[i]);
    if (t->sink) j->sink_vt->close(t->sink);
    for (int c = 0; c < t->nout; c++) {
        sl__batch_free(t->builder[c]);
        sl__msgq_clear(&t->pending[c]);
    }
    free(t->parts);
    free(t->part_max);
    free(t->part_seen);
    free(t->canary_last);
    free((void *)t->part_off);
    free((void *)t->part_end);
    free(t->await);
    free(t->vt);
    free(t->op);
    free(t->op_id);
    free(t->links);
    free(t->in);
    free(t->in_wm);
    free(t->in_end);
    free(t->in_barrier);
    free(t->out);
    free(t->builder);
    free(t->builder_since);
    free(t->pending);
    free(t);
}

static void plan_free(plan *pl)
{
    for (int i = 0; i < pl->ntasks; i++) task_free(pl->job, pl->tasks[i]);
    for (int i = 0; i < pl->nchans; i++) sl__chan_free(pl->chans[i]);
    for (int s = 0; s < pl->nstages; s++) free(pl->stages[s].tasks);
    free(pl->stages);
    free(pl->tasks);
    free(pl->chans);
}

/* ---- workers ------------------------------------------------------------- */
typedef struct {
    plan *pl;
    int id;
} worker_arg;

static void publish_watermark(plan *pl)
{
    int64_t m = SL_TS_MAX;
    stage *last = &pl->stages[pl->nstages - 1];
    for (int i = 0; i < last->ntasks; i++) {
        int64_t w = atomic_load(&last->tasks[i]->pub_wm);
        if (w < m) m = w;
    }
    atomic_store(&pl->job->watermark, m);
}

static void *worker_main(void *arg)
{
    worker_arg *wa = arg;
    plan *pl = wa->pl;
    sl_job *j = pl->job;
    unsigned backoff_us = 0;
    int n = pl->ntasks;
    while (!atomic_load(&j->cancel) && !atomic_load(&pl->done)) {
        bool progress = false;
        for (int k = 0; k < n; k++) {
            /* workers start at different tasks so they rarely collide */
            task *t = pl->tasks[(wa->id + k) % n];
            if (atomic_flag_test_and_set(&t->busy)) continue;
            if (sl__ck_task_quiet(t)) {
                atomic_flag_clear(&t->busy);
                continue;
            }
            uint64_t step_t0 = sl__stats_step_begin();
            int rc = task_step(t);
            sl__stats_step_end(&t->obs, step_t0);
            bool now_done = t->finished && !sl__task_has_pending(t) && !t->counted;
            if (now_done) t->counted = true;
            atomic_flag_clear(&t->busy);
            if (rc < 0) {
                sl__job_fail(j, rc, "task %d.%d failed: %s", t->st->idx, t->idx,
                             sl_strerror(rc));
                return NULL;
            }
            if (now_done && atomic_fetch_add(&pl->finished, 1) + 1 == n && !pl->ck_on)
                atomic_store(&pl->done, 1);
            if (rc == STEP_PROGRESS || now_done) progress = true;
        }
        if (wa->id == 0) {
            publish_watermark(pl);
            sl__log_tick();
            sl__canary_sweep(&j->canaries, sl__clock());
        }
        if (progress) {
            backoff_us = 0;
            continue;
        }
        backoff_us = backoff_us ? (backoff_us < 1000 ? backoff_us * 2 : 1000) : 20;
        struct timespec ts = {0, (long)backoff_us * 1000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int sl_job_run(sl_job *j)
{
    if (!j) return SL_EINVAL;
    if (j->errcode) return j->errcode;
    if (j->ran) return sl__job_fail(j, SL_ESTATE, "job: a job runs once");
    j->ran = true;
    char lerr[1024];
    if (sl__log_open(j->conf.log_file, j->conf.log_level, lerr, sizeof lerr))
        return sl__job_fail(j, SL_EINVAL, "%s", lerr);
    j->log_open = true;
    plan pl = {.job = j, .progress_fd = -1};
    sl__canary_init(&j->canaries, (uint64_t)j->conf.canary_interval_ms,
                    (uint64_t)j->conf.canary_timeout_ms);
    atomic_init(&pl.finished, 0);
    atomic_init(&pl.done, 0);
    int rc = plan_stages(&pl, j);
    if (!rc) rc = plan_tasks(&pl);
    if (!rc) rc = sl__ck_setup(&pl);
    if (!rc) {
        pthread_mutex_lock(&j->lock);
        j->plan = &pl;
        pthread_mutex_unlock(&j->lock);
        sl__ck_start(&pl);
        int W = j->conf.workers ? (int)j->conf.workers : default_cores();
        if (W > pl.ntasks) W = pl.ntasks;
        pthread_t *th = sl__xcalloc((size_t)W, sizeof(pthread_t));
        worker_arg *wa = sl__xcalloc((size_t)W, sizeof(worker_arg));
        atomic_store(&j->running, 1);
        sl__alloc_mark("run");
        for (int i = 0; i < W; i++) {
            wa[i] = (worker_arg){.pl = &pl, .id = i};
            if (pthread_create(&th[i], NULL, worker_main, &wa[i])) {
                sl__job_fail(j, SL_EINTERNAL, "job: cannot start worker thread");
                W = i;
                break;
            }
        }
        for (int i = 0; i < W; i++) pthread_join(th[i], NULL);
        atomic_store(&pl.done, 1);
        sl__ck_stop(&pl);
        /* the input is complete: a canary still unseen can never arrive */
        if (!j->errcode && !atomic_load(&j->cancel) && !atomic_load(&j->stop_req))
            sl__canary_sweep(&j->canaries, UINT64_MAX);
        atomic_store(&j->running, 0);
        publish_watermark(&pl);
        free(th);
        free(wa);
        if (!j->errcode && atomic_load(&j->cancel))
            sl__job_fail(j, SL_ECANCELED, "job: cancelled");
        if (!j->errcode && atomic_load(&j->stop_req) && !pl.ck_on)
            sl__job_fail(j, SL_ECANCELED, "job: stopped without checkpoints (open windows "
                         "are lost; use checkpoint.dir to stop and resume)");
    }
    /* the tasks' counters outlive the run in the job */
    pthread_mutex_lock(&j->lock);
    for (int i = 0; i < pl.ntasks; i++)
        for (int c = 0; c < SL__CTR_N; c++)
            atomic_fetch_add(&j->ctr[c], atomic_load(&pl.tasks[i]->ctr[c]));
    free(j->src_parts);
    j->nsrc_parts = sl__plan_parts(j, &pl, &j->src_parts);
    j->plan = NULL;
    pthread_mutex_unlock(&j->lock);
    plan_free(&pl);
    if (j->dlq) fflush(j->dlq);
    return j->errcode;
}

void sl_job_stats_get(const sl_job *cj, sl_job_stats *o)
{
    memset(o, 0, sizeof *o);
    if (!cj) return;
    sl_job *j = (sl_job *)cj;
    uint64_t c[SL__CTR_N];
    pthread_mutex_lock(&j->lock);
    for (int k = 0; k < SL__CTR_N; k++) c[k] = atomic_load(&j->ctr[k]);
    plan *pl = j->plan;
    for (int i = 0; pl && i < pl->ntasks; i++)
        for (int k = 0; k < SL__CTR_N; k++) c[k] += atomic_load(&pl->tasks[i]->ctr[k]);
    pthread_mutex_unlock(&j->lock);
    o->records_in = c[SL__CTR_RECORDS_IN];
    o->records_out = c[SL__CTR_RECORDS_OUT];
    o->dead_letters = c[SL__CTR_DEAD_LETTERS];
    o->late_records = c[SL__CTR_LATE];
    o->windows_fired = c[SL__CTR_WINDOWS_FIRED];
    o->groups_suppressed = c[SL__CTR_SUPPRESSED];
    o->groups_folded = c[SL__CTR_FOLDED];
    o->blocked_ns = c[SL__CTR_BLOCKED_NS];
    sl__batch_stats(&o->batches_live, &o->batches_peak, NULL);
    o->watermark = atomic_load(&j->watermark);
    o->running = atomic_load(&j->running);
    o->checkpoints_completed = atomic_load(&j->ck_completed);
    o->checkpoints_failed = atomic_load(&j->ck_failed);
    o->last_checkpoint_ms = atomic_load(&j->ck_last_ms);
    o->last_checkpoint_bytes = atomic_load(&j->ck_last_bytes);
    o->last_checkpoint_new_bytes = atomic_load(&j->ck_last_new_bytes);
    o->last_checkpoint_ref_bytes = atomic_load(&j->ck_last_ref_bytes);
    o->last_snapshot_pause_us = atomic_load(&j->ck_last_pause_us);
    o->restored_epoch = atomic_load(&j->ck_restored);
    sl__canaries *cy = &j->canaries;
    o->canaries_injected = atomic_load(&cy->injected);
    o->canaries_seen = atomic_load(&cy->seen);
    o->canaries_committed = atomic_load(&cy->committed);
    o->canaries_missing = atomic_load(&cy->missing);
    o->canary_pipeline_last_us = atomic_load(&cy->pipeline.last_ns) / 1000;
    o->canary_commit_last_us = atomic_load(&cy->commit.last_ns) / 1000;
}
