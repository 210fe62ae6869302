/* stats.c — read-only snapshots of a job for metrics and the status API:
 * stages and their operator chains, per-task counters, queue fill of the
 * exchange channels, watermarks and checkpoint figures. It takes the job's
 * lock only to keep the plan alive while reading it (the runtime clears
 * j->plan under that lock before freeing it); every figure it reads is an
 * atomic, so it never stalls or races with the workers. It changes nothing. */
#include <stdlib.h>
#include <string.h>

#include "exec.h"

static const char *const delivery_names[] = {"exactly-once", "at-least-once",
                                             "at-most-once"};

static void stage_describe(const sl_job *j, const stage *st, sl__stage_stat *o)
{
    size_t n = 0;
    o->ops[0] = 0;
#define ADD(s)                                                                 \
    do {                                                                       \
        int w = snprintf(o->ops + n, sizeof o->ops - n, "%s%s", n ? " > " : "", \
                         (s));                                                 \
        if (w > 0 && (size_t)w < sizeof o->ops - n) n += (size_t)w;            \
    } while (0)
    if (st->is_source && j->src_vt) ADD(j->src_vt->name);
    for (struct sl_stream *nd = st->first; nd; nd = nd->child) {
        if (nd->kind == NODE_OP && nd->vt) ADD(nd->vt->name);
        if (nd == st->last) break;
    }
    if (st->okind == OUT_SINK && j->sink_vt) ADD(j->sink_vt->name);
#undef ADD
    if (!n) snprintf(o->ops, sizeof o->ops, "exchange");
    switch (st->okind) {
    case OUT_HASH: snprintf(o->output, sizeof o->output, "hash"); break;
    case OUT_SINGLE: snprintf(o->output, sizeof o->output, "single"); break;
    case OUT_SINK:
        snprintf(o->output, sizeof o->output, "sink:%s",
                 j->sink_vt ? j->sink_vt->name : "?");
        break;
    default: snprintf(o->output, sizeof o->output, "none"); break;
    }
}

static void task_read(const task *t, sl__task_stat *o)
{
    o->stage = t->st->idx;
    o->task = t->idx;
    for (int k = 0; k < SL__CTR_N; k++)
        o->ctr[k] = atomic_load_explicit(&((task *)t)->ctr[k], memory_order_relaxed);
    sl__task_obs *ob = (sl__task_obs *)&t->obs;
    o->records_in = atomic_load_explicit(&ob->records_in, memory_order_relaxed);
    o->records_out = atomic_load_explicit(&ob->records_out, memory_order_relaxed);
    o->batches_in = atomic_load_explicit(&ob->batches_in, memory_order_relaxed);
    o->bytes_in = atomic_load_explicit(&ob->bytes_in, memory_order_relaxed);
    o->bytes_out = atomic_load_explicit(&ob->bytes_out, memory_order_relaxed);
    o->busy_ns = atomic_load_explicit(&ob->busy_ns, memory_order_relaxed);
    o->steps = atomic_load_explicit(&ob->steps, memory_order_relaxed);
    o->pauses = atomic_load_explicit(&ob->pauses, memory_order_relaxed);
    o->pause_ns = atomic_load_explicit(&ob->pause_ns, memory_order_relaxed);
    o->pause_max_ns = atomic_load_explicit(&ob->pause_max_ns, memory_order_relaxed);
    for (int c = 0; c < t->nin; c++) {
        o->in_queue += atomic_load_explicit(&t->in[c]->batches, memory_order_relaxed);
        o->in_queue_cap += t->in[c]->batch_cap;
        o->in_queue_bytes += atomic_load_explicit(&t->in[c]->bytes, memory_order_relaxed);
        uint64_t pk = atomic_load_explicit(&t->in[c]->bytes_peak, memory_order_relaxed);
        if (pk > o->in_queue_bytes_peak) o->in_queue_bytes_peak = pk;
    }
    o->nout = (uint32_t)t->nout;
    for (int c = 0; c < t->nout; c++)
        o->out_full += atomic_load_explicit(&t->out[c]->batches, memory_order_relaxed) >=
                       t->out[c]->batch_cap;
    o->watermark = atomic_load_explicit(&((task *)t)->pub_wm, memory_order_relaxed);
}

/* Source partitions' progress of a plan; called under the job's lock. */
int sl__plan_parts(const sl_job *j, const plan *pl, sl__part_stat **out)
{
    *out = NULL;
    if (!j->src_vt || !j->src_vt->progress || pl->nstages <= 0) return 0;
    const stage *st = &pl->stages[0];
    int np = 0, n = 0;
    if (!st->tasks) return 0;
    for (int t = 0; t < st->ntasks; t++) np += st->tasks[t] ? st->tasks[t]->nparts : 0;
    sl__part_stat *p = sl__xcalloc((size_t)np + 1, sizeof *p);
    for (int t = 0; t < st->ntasks; t++) {
        const task *tk = st->tasks[t];
        for (int k = 0; tk && tk->part_off && k < tk->nparts; k++)
            p[n++] = (sl__part_stat){
                .stage = st->idx, .task = tk->idx, .partition = tk->parts[k],
                .offset = atomic_load_explicit(&tk->part_off[k], memory_order_relaxed),
                .end = atomic_load_explicit(&tk->part_end[k], memory_order_relaxed)};
    }
    *out = p;
    return n;
}

void sl__job_snap_take(const sl_job *cj, sl__job_snap *s)
{
    memset(s, 0, sizeof *s);
    if (!cj) return;
    sl_job *j = (sl_job *)cj;
    sl_job_stats_get(j, &s->job);
    snprintf(s->name, sizeof s->name, "%s", j->conf.name ? j->conf.name : "");
    s->ck_interval_ms = j->conf.checkpoint_interval_ms;
    s->delivery = delivery_names[j->conf.delivery >= 0 && j->conf.delivery < 3
                                     ? j->conf.delivery : 0];
    s->exchange_capacity = j->conf.exchange_capacity;
    s->key_groups = j->conf.key_groups;
    s->workers = j->conf.workers;
    s->parallelism = j->conf.parallelism;
    s->ck_enabled = j->conf.checkpoint_dir && j->conf.checkpoint_dir[0];
    s->dl_dropped = atomic_load(&j->dl_dropped);
    s->flow_bytes = sl__batch_flow_bytes(&s->flow_bytes_peak);
    s->exchange_max_bytes = j->conf.exchange_max_bytes;
    pthread_mutex_lock(&j->lock);
    plan *pl = j->plan;
    if (pl) {
        s->planned = true;
        s->ck_committed = atomic_load(&pl->committed);
        s->nstages = pl->nstages;
        s->stages = sl__xcalloc((size_t)pl->nstages + 1, sizeof *s->stages);
        for (int i = 0; i < pl->nstages; i++) {
            const stage *st = &pl->stages[i];
            sl__stage_stat *o = &s->stages[i];
            o->idx = st->idx;
            o->ntasks = st->ntasks;
            o->is_source = st->is_source;
            o->is_sink = st->okind == OUT_SINK;
            stage_describe(j, st, o);
        }
        s->ntasks = pl->ntasks;
        s->tasks = sl__xcalloc((size_t)pl->ntasks + 1, sizeof *s->tasks);
        int k = 0;
        for (int i = 0; i < pl->nstages; i++)
            for (int t = 0; t < pl->stages[i].ntasks; t++)
                task_read(pl->stages[i].tasks[t], &s->tasks[k++]);
        s->nparts = sl__plan_parts(j, pl, &s->parts);
    } else if (j->nsrc_parts) { /* after the run: its final offsets */
        s->parts = sl__xcalloc((size_t)j->nsrc_parts, sizeof *s->parts);
        memcpy(s->parts, j->src_parts, (size_t)j->nsrc_parts * sizeof *s->parts);
        s->nparts = j->nsrc_parts;
    }
    /* the source is fixed once the job runs (a builder may still be adding
     * it, unlocked, before then: read it only when there are partitions) */
    s->progress_unit = s->nparts && j->src_vt->progress_unit ? j->src_vt->progress_unit
                                                             : "bytes";
    pthread_mutex_unlock(&j->lock);
}

void sl__job_snap_close(sl__job_snap *s)
{
    if (!s) return;
    free(s->stages);
    free(s->tasks);
    free(s->parts);
    s->parts = NULL;
    s->nparts = 0;
    s->stages = NULL;
    s->tasks = NULL;
}

const char *sl__job_metrics_address(const sl_job *j)
{
    return j && j->conf.metrics_address ? j->conf.metrics_address : "";
}

int64_t sl__job_metrics_linger_ms(const sl_job *j)
{
    return j ? j->conf.metrics_linger_ms : 0;
}

const char *sl__job_metrics_token_file(const sl_job *j)
{
    return j && j->conf.metrics_token_file ? j->conf.metrics_token_file : "";
}

int64_t sl__job_metrics_rate_limit(const sl_job *j)
{
    return j ? j->conf.metrics_rate_limit : 0;
}

const char *sl__job_dashboard_dir(const sl_job *j)
{
    return j && j->conf.dashboard_dir ? j->conf.dashboard_dir : "";
}
