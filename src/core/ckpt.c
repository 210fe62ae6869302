/* ckpt.c — checkpoints inside the runtime: the coordinator thread, barrier
 * alignment, task snapshots, the end-of-input checkpoint and recovery. The
 * files themselves are the checkpoint store's (store.h).
 *
 * Invariants:
 * 1. At most one checkpoint is in flight; epochs grow and are never reused,
 *    not even across restarts (sl__ck_setup numbers new epochs above every
 *    directory on disk).
 * 2. A task snapshots epoch n exactly once, at a point where it has
 *    processed every record before barrier n on every input and none after
 *    (task_snapshot called from ck_try_align or, for sources and tasks
 *    whose inputs all ended, from sl__ck_task_duties).
 * 3. A sink precommits epoch n inside its task's snapshot, before the task
 *    acknowledges, and commits epoch n only after the manifest of
 *    checkpoint n is durable (sl__ck_task_duties reads `committed`, which
 *    coord_complete sets after sl__manifest_write).
 * 4. A failed checkpoint (I/O error in any task) leaves no manifest, is
 *    deleted, counted and retried at the next interval; the job goes on and
 *    the previous checkpoint stays valid (coord_complete).
 * 5. Recovery restores every section into the task that owns it now: keyed
 *    sections by key group, source sections by partition, other sections
 *    by task index modulo the new parallelism (restore_section).
 * 6. A task pauses at barrier n only to take its snapshot (task_snapshot:
 *    copies of small sections, operators' deferred snapshots); the writer
 *    thread writes, fsyncs and acknowledges it (job_write), in barrier
 *    order, so a task's epoch n is acknowledged only once its file is
 *    durable, and (by 1) before the task's next snapshot is taken.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "exec.h"

static void log_line(const char *msg) { sl__log(SL__LOG_WARN, "checkpoint", msg, NULL); }
static void warn_cb(void *ud, const char *msg) { (void)ud; log_line(msg); }

static bool is_sink_task(const task *t) { return t->st->okind == OUT_SINK; }

/* ---- task snapshots ------------------------------------------------------ */
static int sink_call(task *t, int (*fn)(void *, uint64_t, char *, size_t),
                     uint64_t epoch, const char *what)
{
    char err[512] = "";
    int rc = fn(t->sink, epoch, err, sizeof err);
    if (rc)
        sl__job_fail(t->job, rc, "sink %s: %s of epoch %" PRIu64 ": %s",
                     t->job->sink_vt->name, what, epoch, err[0] ? err : sl_strerror(rc));
    return rc;
}

static int sink_flush_now(task *t)
{
    char err[512] = "";
    int rc = t->job->sink_vt->flush(t->sink, err, sizeof err);
    if (rc)
        sl__job_fail(t->job, rc, "sink %s: %s", t->job->sink_vt->name,
                     err[0] ? err : sl_strerror(rc));
    else sl__ck_canaries_visible(t, UINT64_MAX);
    return rc;
}

void sl__ck_canaries_visible(task *t, uint64_t epoch)
{
    sl_job *j = t->job;
    uint64_t now = sl__clock();
    size_t keep = 0;
    for (size_t i = 0; i < t->nawait; i++) {
        if (t->await[i].epoch > epoch) {
            t->await[keep++] = t->await[i];
            continue;
        }
        pthread_mutex_lock(&j->lock);
        if (!j->canary_log) {
            char path[4200];
            sl__mkdirs(j->conf.output_dir);
            snprintf(path, sizeof path, "%s/canaries.jsonl", j->conf.output_dir);
            j->canary_log = fopen(path, "a");
        }
        sl__canary_commit(&j->canaries, t->await[i].slot, now, j->canary_log);
        pthread_mutex_unlock(&j->lock);
    }
    t->nawait = keep;
}

/* Makes the sink's output up to here part of epoch n. */
static int sink_precommit(task *t, uint64_t n)
{
    const sl__sink_vt *vt = t->job->sink_vt;
    if (t->ctx.delivery == SL__EXACTLY_ONCE && vt->precommit)
        return sink_call(t, vt->precommit, n, "precommit");
    return sink_flush_now(t);
}

static void snap_fail(task *t, uint64_t n, const char *why)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "checkpoint %" PRIu64 ": task %d.%d could not snapshot: %s",
             n, t->st->idx, t->idx, why);
    log_line(msg);
    atomic_fetch_add(&t->pl->fails, 1);
}

/* ---- task snapshots: taken at the barrier, written in the background ---- */
/* A task's snapshot of one epoch as the task took it at the barrier: the
 * sections in file order, each copied bytes or an operator's deferred
 * snapshot (sl__op_vt.snapshot_async), which the writer thread writes. */
typedef struct {
    int kind;
    uint32_t id;
    int32_t kg;
    void *data;
    size_t len;
    bool deferred;
    sl__snap_deferred d;
    const char *op_name;
} ck_item;

typedef struct ck_job {
    task *t;
    uint64_t epoch;
    char path[4200];
    ck_item *items;
    size_t n, cap;
    struct ck_job *next;
} ck_job;

static ck_item *job_item(ck_job *jb, int kind, uint32_t id, int32_t kg)
{
    if (jb->n == jb->cap) {
        jb->cap = jb->cap ? jb->cap * 2 : 16;
        jb->items = sl__xrealloc(jb->items, jb->cap * sizeof *jb->items);
    }
    ck_item *it = &jb->items[jb->n++];
    *it = (ck_item){.kind = kind, .id = id, .kg = kg};
    return it;
}

static void job_section(ck_job *jb, int kind, uint32_t id, int32_t kg, const void *data,
                        size_t len)
{
    ck_item *it = job_item(jb, kind, id, kg);
    it->data = sl__xmalloc(len ? len : 1);
    if (len) memcpy(it->data, data, len);
    it->len = len;
}

/* A writer that copies the sections of one kind and id into the job. */
typedef struct {
    sl__snap_writer w;
    ck_job *jb;
    int kind;
    uint32_t id;
} cap_writer;

static int cap_put(sl__snap_writer *w, int32_t kg, const void *data, size_t len)
{
    cap_writer *c = w->impl;
    job_section(c->jb, c->kind, c->id, kg, data, len);
    return 0;
}

static void cap_init(cap_writer *c, ck_job *jb, int kind, uint32_t id)
{
    *c = (cap_writer){.w = {.put = cap_put}, .jb = jb, .kind = kind, .id = id};
    c->w.impl = c;
}

/* Frees the job; deferred snapshots not written are released unwritten. */
static void job_free(ck_job *jb)
{
    for (size_t i = 0; i < jb->n; i++) {
        if (jb->items[i].deferred && jb->items[i].d.write)
            jb->items[i].d.write(jb->items[i].d.ud, NULL);
        free(jb->items[i].data);
    }
    free(jb->items);
    free(jb);
}

/* Writes the job's file and acknowledges the epoch (writer thread). */
static void job_write(plan *pl, ck_job *jb)
{
    task *t = jb->t;
    char err[512] = "";
    sl__snapfile *f = sl__snapfile_create(jb->path, err, sizeof err);
    if (!f) {
        snap_fail(t, jb->epoch, err);
        job_free(jb);
        return;
    }
    int wrc = 0;
    errno = 0;
    for (size_t i = 0; !wrc && i < jb->n; i++) {
        ck_item *it = &jb->items[i];
        if (!it->deferred) {
            wrc = sl__snapfile_section(f, it->kind, it->id, it->kg, it->data, it->len);
            continue;
        }
        sl__snap_writer w = {0}; /* no ck_dir: sections only */
        sl__snapfile_writer(f, SL__SEC_OP, it->id, &w);
        sl__snap_deferred d = it->d;
        it->d.write = NULL; /* written: job_free must not release it again */
        if ((wrc = d.write(d.ud, &w)))
            snprintf(err, sizeof err, "operator %u %s: %s%s%s", it->id, it->op_name,
                     sl_strerror(wrc), errno ? ": " : "", errno ? strerror(errno) : "");
    }
    sl__crash_point("snapshot-write");
    if (wrc) {
        sl__snapfile_abort(f);
        snap_fail(t, jb->epoch, err[0] ? err : "write failed");
    } else if (sl__snapfile_close(f, &t->snap_size, &t->snap_crc, err, sizeof err)) {
        snap_fail(t, jb->epoch, err);
    } else {
        atomic_fetch_add(&pl->acks, 1); /* after snap_size/snap_crc: the coordinator reads them */
    }
    job_free(jb);
}

static void *writer_main(void *arg)
{
    plan *pl = arg;
    pthread_mutex_lock(&pl->wlock);
    for (;;) {
        while (!pl->wq_head && !pl->writer_stop) pthread_cond_wait(&pl->wcond, &pl->wlock);
        ck_job *jb = pl->wq_head;
        if (!jb) break; /* stopped, and the queue is empty */
        pl->wq_head = jb->next;
        if (!pl->wq_head) pl->wq_tail = NULL;
        pthread_mutex_unlock(&pl->wlock);
        job_write(pl, jb);
        pthread_mutex_lock(&pl->wlock);
    }
    pthread_mutex_unlock(&pl->wlock);
    return NULL;
}

static void job_submit(plan *pl, ck_job *jb)
{
    if (!pl->writer_started) { /* no writer thread (tests driving ckpt.c alone) */
        job_write(pl, jb);
        return;
    }
    pthread_mutex_lock(&pl->wlock);
    if (pl->wq_tail) pl->wq_tail->next = jb;
    else pl->wq_head = jb;
    pl->wq_tail = jb;
    pthread_cond_signal(&pl->wcond);
    pthread_mutex_unlock(&pl->wlock);
}

static void note_pause(task *t, uint64_t dt)
{
    plan *pl = t->pl;
    uint64_t cur = atomic_load(&pl->pause_ns);
    while (dt > cur) {
        if (atomic_compare_exchange_weak(&pl->pause_ns, &cur, dt)) {
            atomic_store(&pl->pause_task, t->st->idx << 16 | t->idx);
            break;
        }
    }
    sl__task_obs *o = &t->obs;
    atomic_fetch_add_explicit(&o->pauses, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&o->pause_ns, dt, memory_order_relaxed);
    if (dt > atomic_load_explicit(&o->pause_max_ns, memory_order_relaxed))
        atomic_store_explicit(&o->pause_max_ns, dt, memory_order_relaxed);
}

/* Takes the task's snapshot of epoch n: what must be read at the barrier is
 * read here (source positions, sink and counters copied, operators' state
 * kept by snapshot_async or copied by snapshot); the file is written, made
 * durable and acknowledged by the writer thread (job_write), so the task
 * pauses only for this function. */
static int task_snapshot(task *t, uint64_t n)
{
    plan *pl = t->pl;
    sl_job *j = t->job;
    uint64_t t0 = sl__clock();
    t->ck_epoch = n;
    int rc = 0;
    if (is_sink_task(t) && (rc = sink_precommit(t, n))) return rc;
    uint64_t t1 = sl__clock(); /* the sink's precommit is its own cost */
    char err[512] = "";
    snprintf(t->snap_name, sizeof t->snap_name, "t-%d-%d.snap", t->st->idx, t->idx);
    ck_job *jb = sl__xcalloc(1, sizeof *jb);
    jb->t = t;
    jb->epoch = n;
    snprintf(jb->path, sizeof jb->path, "%s/%s", pl->ck_dir, t->snap_name);
    int wrc = 0;
    for (int p = 0; !wrc && p < t->nparts; p++) {
        int64_t pos;
        if ((wrc = j->src_vt->position(t->src, p, &pos))) {
            snprintf(err, sizeof err, "source %s cannot report its position", j->src_vt->name);
            break;
        }
        unsigned char rec[16];
        for (int i = 0; i < 8; i++) rec[i] = (unsigned char)((uint64_t)pos >> (8 * i));
        for (int i = 0; i < 8; i++)
            rec[8 + i] = (unsigned char)((uint64_t)t->part_max[p] >> (8 * i));
        job_section(jb, SL__SEC_SOURCE, (uint32_t)t->parts[p], -1, rec, 16);
    }
    errno = 0;
    for (int i = 0; !wrc && i < t->nops; i++) {
        if (!t->vt[i]->snapshot) continue;
        if (t->vt[i]->snapshot_async && j->conf.checkpoint_async) {
            sl__snap_deferred d = {.ck_dir = pl->inflight_sp ? NULL : pl->ck_dir,
                                   .ck_root = j->conf.checkpoint_dir,
                                   .op_id = t->op_id[i]};
            wrc = t->vt[i]->snapshot_async(t->op[i], &d);
            if (wrc == 0) {
                ck_item *it = job_item(jb, SL__SEC_OP, t->op_id[i], -1);
                it->deferred = true;
                it->d = d;
                it->op_name = t->vt[i]->name;
                continue;
            }
            if (wrc != SL__SNAP_SYNC) {
                snprintf(err, sizeof err, "operator %u %s: %s", t->op_id[i], t->vt[i]->name,
                         sl_strerror(wrc));
                break;
            } /* else synchronously, below */
        }
        cap_writer cw;
        cap_init(&cw, jb, SL__SEC_OP, t->op_id[i]);
        cw.w.ck_dir = pl->inflight_sp ? NULL : pl->ck_dir; /* savepoints: full */
        cw.w.ck_root = j->conf.checkpoint_dir;
        cw.w.op_id = t->op_id[i];
        if ((wrc = t->vt[i]->snapshot(t->op[i], &cw.w)))
            snprintf(err, sizeof err, "operator %u %s: %s%s%s", t->op_id[i], t->vt[i]->name,
                     sl_strerror(wrc), errno ? ": " : "", errno ? strerror(errno) : "");
    }
    if (!wrc && is_sink_task(t) && j->sink_vt->snapshot) {
        cap_writer cw;
        cap_init(&cw, jb, SL__SEC_SINK, 0);
        wrc = j->sink_vt->snapshot(t->sink, &cw.w);
    }
    if (!wrc) {
        uint64_t c[SL__CTR_N];
        for (int k = 0; k < SL__CTR_N; k++) c[k] = atomic_load(&t->ctr[k]);
        c[SL__CTR_BLOCKED_NS] = 0; /* time, not a business count */
        job_section(jb, SL__SEC_TASK, 0, -1, c, sizeof c);
    }
    if (wrc) {
        job_free(jb);
        snap_fail(t, n, err[0] ? err : "snapshot failed");
    } else {
        job_submit(pl, jb);
    }
    uint64_t t2 = sl__clock();
    note_pause(t, t2 - t0);
    sl__log(SL__LOG_DEBUG, "checkpoint", "task paused", "epoch=%" PRIu64 " task=%d.%d "
            "pause_us=%" PRIu64 " precommit_us=%" PRIu64, n, t->st->idx, t->idx,
            (t2 - t0) / 1000, (t1 - t0) / 1000);
    return 0;
}

static int ck_try_align(task *t)
{
    bool any = false;
    for (int i = 0; i < t->nin; i++) {
        if (t->in_end[i]) continue;
        if (!t->in_barrier[i]) return 0;
        any = true;
    }
    if (!any && t->nin_open > 0) return 0;
    uint64_t n = t->align_epoch;
    memset(t->in_barrier, 0, sizeof(bool) * (size_t)t->nin);
    if (n <= t->ck_epoch) return 0;
    int rc = task_snapshot(t, n);
    if (!rc && t->nout && !t->finished) sl__route_control(t, SL__MSG_BARRIER, (int64_t)n);
    return rc;
}

int sl__ck_on_barrier(task *t, int ch, uint64_t epoch)
{
    t->in_barrier[ch] = true;
    t->align_epoch = epoch;
    return ck_try_align(t);
}

int sl__ck_on_input_end(task *t)
{
    for (int i = 0; i < t->nin; i++)
        if (t->in_barrier[i]) return ck_try_align(t);
    return 0;
}

int sl__ck_task_duties(task *t)
{
    plan *pl = t->pl;
    if (!pl->ck_on) return 0;
    int rc = 0;
    uint64_t trig = atomic_load(&pl->trigger);
    if (trig > t->ck_epoch && (t->st->is_source || t->nin_open == 0)) {
        /* sources start a checkpoint; tasks whose inputs ended get no barrier */
        if ((rc = task_snapshot(t, trig))) return rc;
        if (t->nout && !t->finished) sl__route_control(t, SL__MSG_BARRIER, (int64_t)trig);
    }
    if (is_sink_task(t)) {
        uint64_t c = atomic_load(&pl->committed);
        if (c > t->sink_committed) {
            const sl__sink_vt *vt = t->job->sink_vt;
            sl__crash_point("sink-commit");
            if (t->ctx.delivery == SL__EXACTLY_ONCE && vt->commit)
                rc = sink_call(t, vt->commit, c, "commit");
            if (rc) return rc;
            sl__ck_canaries_visible(t, c);
            t->sink_committed = c;
            uint64_t fe = atomic_load(&pl->final_epoch); /* may be reset to 0 */
            if (fe && c >= fe) atomic_fetch_add(&pl->sinks_final, 1);
        }
    }
    return 0;
}

bool sl__ck_task_quiet(const task *t)
{
    if (!t->finished || sl__task_has_pending(t)) return false;
    plan *pl = t->pl;
    if (!pl->ck_on) return true;
    if (atomic_load(&pl->trigger) > t->ck_epoch) return false;
    return !is_sink_task(t) || atomic_load(&pl->committed) <= t->sink_committed;
}

int sl__ck_sink_finish(task *t)
{
    const sl__sink_vt *vt = t->job->sink_vt;
    if (t->pl->ck_on) /* the end-of-input checkpoint publishes */
        return t->ctx.delivery == SL__EXACTLY_ONCE ? 0 : sink_flush_now(t);
    if (t->ctx.delivery != SL__EXACTLY_ONCE || !vt->precommit) return sink_flush_now(t);
    uint64_t n = t->pl->epoch + 1;
    int rc = sink_call(t, vt->precommit, n, "precommit");
    if (!rc) rc = sink_call(t, vt->commit, n, "commit");
    if (!rc) sl__ck_canaries_visible(t, UINT64_MAX);
    return rc;
}

void sl__ck_source_progress(task *t, int part)
{
    plan *pl = t->pl;
    if (pl->progress_fd < 0) return;
    int64_t pos;
    if (t->job->src_vt->position(t->src, part, &pos)) return;
    uint64_t v = (uint64_t)pos + 1; /* 0 = no progress recorded */
    if (pwrite(pl->progress_fd, &v, 8, (off_t)t->parts[part] * 8) != 8) {
        /* best effort: at-most-once may then lose more, never repeat */
    }
}

/* ---- operator fingerprints ----------------------------------------------- */
static void schema_text(const sl_schema *s, char *buf, size_t n)
{
    size_t off = 0;
    for (int i = 0; i < s->n && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%s:%s", i ? "," : "", s->cols[i].name,
                                sl_type_name(s->cols[i].type));
}

static void op_fingerprint(const struct sl_stream *n, char *buf, size_t size)
{
    char in[240], out[240];
    schema_text(n->parent->schema, in, sizeof in);
    schema_text(n->schema, out, sizeof out);
    snprintf(buf, size, "(%s)->(%s)", in, out);
}

/* ---- the coordinator ----------------------------------------------------- */
static void coord_trigger(plan *pl, bool sp)
{
    sl_job *j = pl->job;
    uint64_t n = ++pl->epoch;
    snprintf(pl->ck_dir, sizeof pl->ck_dir, "%s/%s-%" PRIu64, j->conf.checkpoint_dir,
             sp ? "sp" : "chk", n);
    if (sl__mkdirs(pl->ck_dir)) {
        char msg[4300];
        snprintf(msg, sizeof msg, "checkpoint %" PRIu64 " failed: cannot create %s: %s", n,
                 pl->ck_dir, strerror(errno));
        log_line(msg);
        atomic_fetch_add(&j->ck_failed, 1);
        pl->t_done = sl__clock();
        if (n == pl->final_epoch) pl->final_epoch = 0;
        return;
    }
    atomic_store(&pl->acks, 0);
    atomic_store(&pl->fails, 0);
    atomic_store(&pl->pause_ns, 0);
    pl->inflight = n;
    pl->inflight_sp = sp;
    pl->t_trigger = sl__clock();
    atomic_store(&pl->trigger, n);
}

static void coord_complete(plan *pl)
{
    sl_job *j = pl->job;
    uint64_t n = pl->inflight;
    char err[1024] = "";
    int rc = atomic_load(&pl->fails) ? SL_EIO : 0;
    sl__manifest m = {.epoch = n, .savepoint = pl->inflight_sp,
                      .key_groups = (int)j->conf.key_groups};
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    m.created_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    uint64_t bytes = 0;
    if (!rc) {
        m.files = sl__xcalloc((size_t)pl->ntasks, sizeof(sl__ck_file));
        for (int i = 0; i < pl->ntasks; i++) {
            task *t = pl->tasks[i];
            sl__ck_file *f = &m.files[m.nfiles++];
            snprintf(f->name, sizeof f->name, "%s", t->snap_name);
            f->stage = t->st->idx;
            f->task = t->idx;
            f->size = t->snap_size;
            f->crc = t->snap_crc;
            bytes += t->snap_size;
        }
        m.ops = sl__xcalloc((size_t)j->nnodes + 1, sizeof(sl__ck_op));
        for (int i = 0; i < j->nnodes; i++) {
            struct sl_stream *nd = j->nodes[i];
            if (nd->kind != NODE_OP || !nd->vt->snapshot) continue;
            sl__ck_op *o = &m.ops[m.nops++];
            o->id = (uint32_t)nd->id;
            o->version = nd->vt->state_version;
            snprintf(o->name, sizeof o->name, "%s", nd->vt->name);
            op_fingerprint(nd, o->fingerprint, sizeof o->fingerprint);
        }
        rc = sl__manifest_write(pl->ck_dir, &m, err, sizeof err);
    }
    sl__manifest_free(&m);
    uint64_t t = sl__clock();
    if (rc) {
        char msg[2048];
        snprintf(msg, sizeof msg, "checkpoint %" PRIu64 " failed%s%s; the job goes on and "
                 "retries", n, err[0] ? ": " : "", err);
        log_line(msg);
        sl__rmtree(pl->ck_dir);
        atomic_fetch_add(&j->ck_failed, 1);
        if (n == pl->final_epoch) pl->final_epoch = 0; /* try the final one again */
    } else {
        sl__crash_point("after-manifest");
        atomic_store(&pl->committed, n);
        atomic_fetch_add(&j->ck_completed, 1);
        atomic_store(&j->ck_last_ms, (t - pl->t_trigger) / 1000000);
        atomic_store(&j->ck_last_bytes, bytes);
        uint64_t nb = 0, tb = 0; /* RocksDB parts of incremental checkpoints */
        sl__ck_incr_sizes(pl->ck_dir, &nb, &tb);
        atomic_store(&j->ck_last_new_bytes, bytes + nb);
        atomic_store(&j->ck_last_ref_bytes, bytes + tb);
        sl__log(tb ? SL__LOG_INFO : SL__LOG_DEBUG, "checkpoint", "checkpoint completed",
                "epoch=%" PRIu64 " ms=%" PRIu64 " snapshot_bytes=%" PRIu64
                " new_bytes=%" PRIu64 " referenced_bytes=%" PRIu64, n,
                (t - pl->t_trigger) / 1000000, bytes, bytes + nb, bytes + tb);
        atomic_store(&j->ck_last_pause_us, atomic_load(&pl->pause_ns) / 1000);
        sl__log(SL__LOG_INFO, "checkpoint", "completed checkpoint",
                "epoch=%" PRIu64 " duration_ms=%" PRIu64 " bytes=%" PRIu64
                " max_task_pause_us=%" PRIu64 " paused_task=%d.%d", n,
                (t - pl->t_trigger) / 1000000, bytes,
                (uint64_t)atomic_load(&pl->pause_ns) / 1000,
                atomic_load(&pl->pause_task) >> 16, atomic_load(&pl->pause_task) & 0xffff);
        sl__ck_retain(j->conf.checkpoint_dir, (int)j->conf.checkpoint_retain, n);
    }
    pl->inflight = 0;
    pl->t_done = t;
}

static void *coord_main(void *arg)
{
    plan *pl = arg;
    sl_job *j = pl->job;
    uint64_t interval = (uint64_t)j->conf.checkpoint_interval_ms * 1000000ULL;
    pl->t_done = sl__clock();
    while (!atomic_load(&pl->done) && !atomic_load(&j->cancel)) {
        /* 2 ms while a checkpoint is in flight or due soon (its completion
         * is the sinks' commit latency); between checkpoints 10 ms, so an
         * idle coordinator does not wake 500 times a second */
        struct timespec ts = {0, 2 * 1000000L};
        if (!pl->inflight && sl__clock() - pl->t_done + 20000000ULL < interval)
            ts.tv_nsec = 10 * 1000000L;
        nanosleep(&ts, NULL);
        if (pl->inflight) {
            if (atomic_load(&pl->acks) + atomic_load(&pl->fails) == pl->ntasks)
                coord_complete(pl);
            continue;
        }
        bool all_finished = atomic_load(&pl->finished) == pl->ntasks;
        if (atomic_load(&j->stop_req) && !all_finished) {
            /* graceful stop: sources read no more; one checkpoint carries
             * everything in flight and open, its commit ends the job */
            if (!pl->final_epoch) {
                pl->final_epoch = pl->epoch + 1;
                coord_trigger(pl, false);
            } else if (atomic_load(&pl->sinks_final) >= pl->nsinks) {
                atomic_store(&pl->done, 1);
            }
            continue;
        }
        if (all_finished && pl->final_epoch) {
            if (atomic_load(&pl->sinks_final) >= pl->nsinks) atomic_store(&pl->done, 1);
            continue;
        }
        if (all_finished) { /* end of input: one last checkpoint publishes all */
            pl->final_epoch = pl->epoch + 1;
            coord_trigger(pl, false);
            continue;
        }
        bool sp = atomic_exchange(&j->savepoint_req, 0);
        if (sp || sl__clock() - pl->t_done >= interval) coord_trigger(pl, sp);
    }
    return NULL;
}

void sl_job_savepoint(sl_job *j)
{
    if (j) atomic_store(&j->savepoint_req, 1);
}

void sl_job_stop(sl_job *j)
{
    if (j) atomic_store(&j->stop_req, 1);
}

void sl__ck_start(plan *pl)
{
    if (!pl->ck_on) return;
    pthread_mutex_init(&pl->wlock, NULL);
    pthread_cond_init(&pl->wcond, NULL);
    pl->writer_stop = false;
    pl->writer_started = pthread_create(&pl->writer, NULL, writer_main, pl) == 0;
    if (!pl->writer_started) {
        pthread_mutex_destroy(&pl->wlock);
        pthread_cond_destroy(&pl->wcond);
        sl__job_fail(pl->job, SL_EINTERNAL, "job: cannot start the snapshot writer");
        return;
    }
    pl->coord_started = pthread_create(&pl->coord, NULL, coord_main, pl) == 0;
    if (!pl->coord_started)
        sl__job_fail(pl->job, SL_EINTERNAL, "job: cannot start the checkpoint coordinator");
}

void sl__ck_stop(plan *pl)
{
    if (pl->coord_started) pthread_join(pl->coord, NULL);
    pl->coord_started = false;
    if (pl->writer_started) { /* writes what is queued, then ends */
        pthread_mutex_lock(&pl->wlock);
        pl->writer_stop = true;
        pthread_cond_signal(&pl->wcond);
        pthread_mutex_unlock(&pl->wlock);
        pthread_join(pl->writer, NULL);
        pthread_mutex_destroy(&pl->wlock);
        pthread_cond_destroy(&pl->wcond);
        pl->writer_started = false;
    }
    if (pl->progress_fd >= 0) close(pl->progress_fd);
    pl->progress_fd = -1;
    if (pl->ck_on) {
        char pid[4200];
        snprintf(pid, sizeof pid, "%s/sluice.pid", pl->job->conf.checkpoint_dir);
        unlink(pid);
    }
}

/* ---- recovery ------------------------------------------------------------ */
typedef struct {
    plan *pl;
    int stage, task; /* of the file being read */
    bool all;        /* everything; else (at-most-once) only sink state */
    char *err;
    size_t errsz;
} restore_ctx;

static stage *stage_of_node(plan *pl, uint32_t id, int *op_index_out)
{
    for (int s = 0; s < pl->nstages; s++) {
        task *t = pl->stages[s].tasks[0];
        for (int i = 0; i < t->nops; i++)
            if (t->op_id[i] == id) {
                *op_index_out = i;
                return &pl->stages[s];
            }
    }
    return NULL;
}

static int restore_source(plan *pl, uint32_t gpart, const void *data, size_t len)
{
    stage *st = &pl->stages[0];
    if (len != 16) return SL_ECORRUPT;
    const unsigned char *p = data;
    uint64_t pos = 0, mx = 0;
    for (int i = 0; i < 8; i++) pos |= (uint64_t)p[i] << (8 * i);
    for (int i = 0; i < 8; i++) mx |= (uint64_t)p[8 + i] << (8 * i);
    task *t = st->tasks[gpart % (uint32_t)st->ntasks];
    for (int k = 0; k < t->nparts; k++) {
        if (t->parts[k] != (int)gpart) continue;
        t->part_max[k] = (int64_t)mx;
        return pl->job->src_vt->seek(t->src, k, (int64_t)pos);
    }
    return 0; /* the partition no longer exists */
}

static int restore_section(void *ud, int kind, uint32_t id, int32_t kg, const void *data,
                           size_t len)
{
    restore_ctx *rc = ud;
    plan *pl = rc->pl;
    sl_job *j = pl->job;
    switch (kind) {
    case SL__SEC_SOURCE:
        return rc->all ? restore_source(pl, id, data, len) : 0;
    case SL__SEC_OP: {
        if (!rc->all) return 0;
        int oi = -1;
        stage *st = stage_of_node(pl, id, &oi);
        if (!st) return 0; /* checked against the manifest before */
        int ti = kg >= 0 ? sl__group_task(kg, (int)j->conf.key_groups, st->ntasks)
                         : rc->task % st->ntasks;
        task *t = st->tasks[ti];
        int r = t->vt[oi]->restore ? t->vt[oi]->restore(t->op[oi], kg, data, len) : 0;
        if (r)
            snprintf(rc->err, rc->errsz, "operator %u '%s' cannot restore its state: %s", id,
                     t->vt[oi]->name,
                     r == SL_EINVAL ? "its definition changed (e.g. window size, slide, "
                                      "lateness, key or aggregates); start with "
                                      "--from-scratch or from a compatible savepoint"
                                    : sl_strerror(r));
        return r;
    }
    case SL__SEC_SINK: {
        stage *st = &pl->stages[pl->nstages - 1];
        task *t = st->tasks[rc->task % st->ntasks];
        return j->sink_vt->restore ? j->sink_vt->restore(t->sink, kg, data, len) : 0;
    }
    case SL__SEC_TASK: {
        if (!rc->all || rc->stage >= pl->nstages || len != sizeof(uint64_t) * SL__CTR_N) return 0;
        stage *st = &pl->stages[rc->stage];
        task *t = st->tasks[rc->task % st->ntasks];
        uint64_t c[SL__CTR_N];
        memcpy(c, data, sizeof c); /* sections are not aligned */
        for (int k = 0; k < SL__CTR_N; k++) atomic_fetch_add(&t->ctr[k], c[k]);
        return 0;
    }
    default:
        return SL_ECORRUPT;
    }
}

static int check_ops(plan *pl, const sl__manifest *m, const char *dir)
{
    sl_job *j = pl->job;
    for (int i = 0; i < m->nops; i++) {
        const sl__ck_op *o = &m->ops[i];
        struct sl_stream *n = o->id < (uint32_t)j->nnodes ? j->nodes[o->id] : NULL;
        char fp[512] = "";
        if (n && n->kind == NODE_OP) op_fingerprint(n, fp, sizeof fp);
        if (!n || n->kind != NODE_OP || !n->vt->snapshot || strcmp(n->vt->name, o->name) ||
            n->vt->state_version != o->version || strcmp(fp, o->fingerprint))
            return sl__job_fail(j, SL_ESTATE,
                                "checkpoint %s does not fit this job: operator %u '%s' "
                                "(state version %u, %s) %s; start with --from-scratch or "
                                "from a compatible savepoint",
                                dir, o->id, o->name, o->version, o->fingerprint,
                                !n || n->kind != NODE_OP ? "is not in the job"
                                : strcmp(n->vt->name, o->name) ? "is another operator now"
                                : n->vt->state_version != o->version
                                    ? "has another state version now"
                                    : "has another input or output now");
    }
    if (m->key_groups != j->conf.key_groups)
        return sl__job_fail(j, SL_ESTATE, "checkpoint %s was taken with key.groups=%d, the "
                            "job has %lld; key groups are fixed per job", dir,
                            m->key_groups, (long long)j->conf.key_groups);
    return 0;
}

static int sinks_recover(plan *pl, uint64_t epoch)
{
    sl_job *j = pl->job;
    stage *st = &pl->stages[pl->nstages - 1];
    for (int i = 0; i < st->ntasks; i++) {
        task *t = st->tasks[i];
        t->sink_committed = epoch;
        if (t->ctx.delivery == SL__EXACTLY_ONCE && j->sink_vt->recover) {
            int rc = sink_call(t, j->sink_vt->recover, epoch, "recovery");
            if (rc) return rc;
        }
    }
    return 0;
}

static int restore_progress(plan *pl)
{
    stage *st = &pl->stages[0];
    for (int i = 0; i < st->ntasks; i++) {
        task *t = st->tasks[i];
        for (int k = 0; k < t->nparts; k++) {
            uint64_t v = 0;
            if (pread(pl->progress_fd, &v, 8, (off_t)t->parts[k] * 8) != 8 || v == 0) continue;
            int rc = pl->job->src_vt->seek(t->src, k, (int64_t)(v - 1));
            if (rc) return sl__job_fail(pl->job, rc, "source %s: cannot seek",
                                        pl->job->src_vt->name);
        }
    }
    return 0;
}

int sl__ck_setup(plan *pl)
{
    sl_job *j = pl->job;
    const char *root = j->conf.checkpoint_dir;
    pl->nsinks = pl->stages[pl->nstages - 1].ntasks;
    pl->ck_on = root && *root;
    if (!pl->ck_on) return sinks_recover(pl, 0); /* a fresh start */
    if (!j->src_vt->position || !j->src_vt->seek)
        return sl__job_fail(j, SL_EINVAL, "checkpoints: source %s cannot rewind",
                            j->src_vt->name);
    if (j->conf.delivery == SL__EXACTLY_ONCE && !j->sink_vt->exactly_once)
        return sl__job_fail(j, SL_EINVAL, "delivery: sink %s cannot be exactly-once (it "
                            "cannot take back output); use delivery=at-least-once",
                            j->sink_vt->name);
    if (sl__mkdirs(root))
        return sl__job_fail(j, SL_EIO, "checkpoint.dir: cannot create %s: %s", root,
                            strerror(errno));
    char path[4200];
    snprintf(path, sizeof path, "%s/sluice.pid", root);
    FILE *pf = fopen(path, "w");
    if (pf) {
        fprintf(pf, "%ld\n", (long)getpid());
        fclose(pf);
    }
    if (j->conf.delivery == SL__AT_MOST_ONCE) {
        snprintf(path, sizeof path, "%s/progress", root);
        if (j->conf.from_scratch) unlink(path);
        pl->progress_fd = open(path, O_RDWR | O_CREAT, 0644);
        if (pl->progress_fd < 0)
            return sl__job_fail(j, SL_EIO, "checkpoint.dir: cannot create %s: %s", path,
                                strerror(errno));
    }
    sl__manifest m;
    char dir[4096] = "", err[1024] = "";
    int found = 0;
    if (j->conf.restore_from && *j->conf.restore_from) {
        snprintf(dir, sizeof dir, "%s", j->conf.restore_from);
        if (sl__manifest_read(dir, &m, true, err, sizeof err))
            return sl__job_fail(j, SL_ECORRUPT, "restore.from: %s", err);
        found = 1;
    } else if (!j->conf.from_scratch) {
        found = sl__ck_find_latest(root, &m, dir, sizeof dir, warn_cb, NULL, err, sizeof err);
        if (found < 0) return sl__job_fail(j, found, "checkpoints: %s", err);
    }
    uint64_t top = sl__ck_max_epoch(root);
    pl->epoch = found && m.epoch > top ? m.epoch : top;
    if (!found) {
        int rc = sinks_recover(pl, 0);
        if (!rc && pl->progress_fd >= 0 && !j->conf.from_scratch) rc = restore_progress(pl);
        return rc;
    }
    /* at-most-once replays nothing: operators start empty, sources resume
     * where they had read to, sinks keep what they had published (a file
     * is cut back to the checkpoint's length) */
    bool amo = j->conf.delivery == SL__AT_MOST_ONCE;
    int rc = amo ? 0 : check_ops(pl, &m, dir);
    for (int i = 0; !rc && i < m.nfiles; i++) {
        char fp[4200];
        snprintf(fp, sizeof fp, "%s/%s", dir, m.files[i].name);
        err[0] = 0;
        restore_ctx rctx = {.pl = pl, .stage = m.files[i].stage, .task = m.files[i].task,
                            .all = !amo, .err = err, .errsz = sizeof err};
        if ((rc = sl__snapfile_read(fp, restore_section, &rctx, err, sizeof err)))
            sl__job_fail(j, rc, "restoring %s: %s", fp, err);
    }
    if (!rc && amo) rc = restore_progress(pl);
    if (!rc && !amo) rc = sinks_recover(pl, m.epoch);
    if (!rc) {
        atomic_store(&j->ck_restored, m.epoch);
        sl__log(SL__LOG_INFO, "checkpoint", "restored checkpoint",
                "epoch=%" PRIu64 " dir=\"%s\"", m.epoch, dir);
    }
    sl__manifest_free(&m);
    return rc;
}
