/* stats.h — a read-only view of a running job for the observability layer:
 * per-task activity counters the runtime bumps (sl__task_obs), and a
 * snapshot of stages, tasks, channels, watermarks and checkpoint figures
 * (sl__job_snap) taken under the job's lock. Core never calls the obs layer;
 * obs (and tools) pull from here. */
#ifndef SL_STATS_H
#define SL_STATS_H

#include <stdatomic.h>

#include "runtime.h"

/* Activity of one task, bumped by the task's own worker with relaxed
 * atomics and read by anyone. Not checkpointed: these are rates, not
 * business counts. */
typedef struct {
    _Atomic uint64_t records_in;  /* rows entering the task's chain */
    _Atomic uint64_t records_out; /* rows leaving it (exchange or sink) */
    _Atomic uint64_t batches_in;
    _Atomic uint64_t bytes_in, bytes_out; /* sl__batch_data_bytes */
    _Atomic uint64_t busy_ns;     /* time spent in task steps */
    _Atomic uint64_t steps;
    /* checkpoint pauses: time the task spent in its snapshots at barriers */
    _Atomic uint64_t pauses, pause_ns, pause_max_ns;
} sl__task_obs;

static inline void sl__stats_on_bytes(_Atomic uint64_t *c, const sl_batch *b)
{
    atomic_fetch_add_explicit(c, sl__batch_data_bytes(b), memory_order_relaxed);
}
static inline void sl__stats_on_batch_in(sl__task_obs *o, uint32_t n)
{
    atomic_fetch_add_explicit(&o->records_in, n, memory_order_relaxed);
    atomic_fetch_add_explicit(&o->batches_in, 1, memory_order_relaxed);
}
static inline void sl__stats_on_batch_out(sl__task_obs *o, uint32_t n)
{
    atomic_fetch_add_explicit(&o->records_out, n, memory_order_relaxed);
}
static inline uint64_t sl__stats_step_begin(void) { return sl__clock_monotonic(); }
static inline void sl__stats_step_end(sl__task_obs *o, uint64_t t0)
{
    atomic_fetch_add_explicit(&o->busy_ns, sl__clock_monotonic() - t0,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&o->steps, 1, memory_order_relaxed);
}

/* ---- snapshots ----------------------------------------------------------- */
typedef struct {
    int stage, task;
    uint64_t ctr[SL__CTR_N]; /* the task's checkpointed counters */
    uint64_t records_in, records_out, batches_in, busy_ns, steps;
    uint64_t bytes_in, bytes_out;
    uint64_t pauses, pause_ns, pause_max_ns; /* checkpoint pauses */
    uint32_t in_queue, in_queue_cap;   /* batches queued on its inputs / room */
    uint64_t in_queue_bytes, in_queue_bytes_peak; /* their memory; peak of one channel */
    uint32_t out_full, nout;           /* output channels at capacity now */
    int64_t watermark;                 /* SL_TS_MIN before the first */
} sl__task_stat;

/* Progress of one source partition (sources with a progress hook). */
typedef struct sl__part_stat {
    int stage, task, partition; /* partition: global index */
    int64_t offset, end;        /* bytes consumed / held now (-1 unknown) */
} sl__part_stat;

typedef struct {
    int idx, ntasks;
    bool is_source, is_sink;
    char ops[256];   /* operator chain, e.g. "file > pseudonymise > lookup" */
    char output[32]; /* how it leaves: "hash", "single", "sink:sqlite" */
} sl__stage_stat;

typedef struct {
    char name[128];
    bool planned;    /* a plan exists (the job is running) */
    int nstages, ntasks;
    sl__stage_stat *stages;
    sl__task_stat *tasks;       /* stage-major */
    int nparts;
    sl__part_stat *parts;       /* source partitions, in task order */
    const char *progress_unit;  /* what offsets count: "bytes", "messages" */
    sl_job_stats job;           /* the public figures */
    bool ck_enabled;
    uint64_t ck_committed;      /* last epoch whose manifest is written */
    int64_t ck_interval_ms;
    const char *delivery;
    int64_t exchange_capacity, key_groups, workers, parallelism;
    uint64_t dl_dropped;        /* dead letters dropped past a cap */
    uint64_t flow_bytes, flow_bytes_peak; /* batch memory in flight (process) */
    int64_t exchange_max_bytes; /* per channel; 0 = none */
} sl__job_snap;

/* Fills s (caller-allocated; arrays allocated here, freed by
 * sl__job_snap_close). Thread-safe; safe before, during and after a run. */
void sl__job_snap_take(const sl_job *j, sl__job_snap *s);
void sl__job_snap_close(sl__job_snap *s);

/* Job keys read by the obs layer; strings live as long as the job. */
const char *sl__job_metrics_address(const sl_job *j);
const char *sl__job_dashboard_dir(const sl_job *j);
const char *sl__job_metrics_token_file(const sl_job *j);
int64_t sl__job_metrics_rate_limit(const sl_job *j);
int64_t sl__job_metrics_linger_ms(const sl_job *j);

/* The job's labelled business counters (sl__job_counter), in creation
 * order; fn is called under the job's lock, so it must not call back. */
void sl__job_counters_each(const sl_job *j,
                           void (*fn)(void *ud, const char *name, const char *help,
                                      const char *labels, uint64_t v),
                           void *ud);

/* Dead letters counted per reason since the process started (deadletter.c).
 * Copies up to max (reason, count) pairs; returns how many. Reasons are
 * short fixed strings chosen by the code (never record content). */
int sl__dead_letter_reasons(char (*names)[32], uint64_t *counts, int max);

#endif
