/* exec.h — the runtime's private structures (stages, tasks, the plan),
 * shared by exec.c (running) and ckpt.c (checkpoints and recovery). */
#ifndef SL_EXEC_H
#define SL_EXEC_H

#include "exchange.h"
#include "graph.h"
#include "stats.h"
#include "store.h"

typedef enum { OUT_NONE, OUT_HASH, OUT_SINGLE, OUT_SINK } out_kind;

typedef struct stage stage;
typedef struct task task;

struct stage {
    int idx, ntasks;
    struct sl_stream *first, *last; /* op nodes of the chain (inclusive) */
    bool is_source;
    const sl_schema *in_schema;  /* entering the chain */
    const sl_schema *out_schema; /* leaving it */
    out_kind okind;
    int key_cols[SL_MAX_COLS], nkey; /* OUT_HASH: in out_schema */
    stage *next;
    task **tasks;
};

typedef struct {
    sl__out out;
    task *t;
    int next_op; /* index of the op receiving the batch */
} chain_out;

struct task {
    stage *st;
    int idx;
    sl__ctx ctx;
    sl_job *job;
    atomic_flag busy;
    bool finished;
    /* source */
    void *src;
    int *parts, nparts;
    int64_t *part_max;    /* highest event time per partition */
    uint64_t *part_seen;  /* clock of the last record per partition */
    _Atomic int64_t *part_off, *part_end; /* source progress (metrics) */
    int time_col;
    /* chain */
    int nops;
    const sl__op_vt **vt;
    void **op;
    uint32_t *op_id;
    chain_out *links; /* links[i] delivers into op i; links[nops] routes */
    /* inputs */
    int nin;
    sl__chan **in;
    int64_t *in_wm;
    bool *in_end;
    int nin_open, rr;
    int64_t wm; /* watermark already passed down the chain */
    int resume;         /* 1 + the op to call again with wm (SL__MORE), or 0 */
    bool resume_finish; /* and then finish the task (its inputs ended) */
    /* outputs */
    int nout;
    sl__chan **out;
    sl_batch **builder;
    uint64_t *builder_since;
    sl__msgq *pending; /* per output channel */
    uint64_t blocked_since;
    /* sink */
    void *sink;
    uint64_t sink_flushed;
    uint64_t sink_committed; /* last epoch the sink published */
    atomic_int_fast64_t pub_wm;
    /* checkpoints */
    struct plan *pl;
    bool *in_barrier;    /* per input: barrier of align_epoch received */
    uint64_t align_epoch;
    uint64_t ck_epoch;   /* last epoch this task snapshotted */
    bool counted;        /* counted in plan.finished */
    char snap_name[64];
    uint64_t snap_size;
    uint32_t snap_crc;
    uint64_t rate_t0, rate_n; /* source.rate accounting */
    uint64_t *canary_last;    /* per partition: clock of the last canary */
    struct { uint8_t slot; uint64_t epoch; } *await; /* canaries to commit */
    size_t nawait, capawait;
    _Atomic uint64_t ctr[SL__CTR_N]; /* this task's counters (checkpointed) */
    sl__task_obs obs; /* records/batches/busy time for metrics (stats.h) */
};


int sl__plan_parts(const sl_job *j, const struct plan *pl, struct sl__part_stat **out);

enum { STEP_IDLE = 0, STEP_PROGRESS = 1, STEP_BLOCKED = 2 };
enum { SL__MSG_BARRIER = SL__MSG_END + 1 };

typedef struct plan {
    sl_job *job;
    stage *stages;
    int nstages;
    task **tasks;
    int ntasks;
    sl__chan **chans;
    int nchans;
    atomic_int finished; /* tasks finished with nothing pending */
    atomic_int done;     /* the job is over: workers leave */
    /* checkpoints (ckpt.c) */
    bool ck_on;
    uint64_t epoch;                 /* last epoch triggered */
    atomic_uint_fast64_t trigger;   /* epoch tasks must snapshot */
    atomic_uint_fast64_t committed; /* epoch whose manifest is written */
    atomic_int acks, fails;
    uint64_t inflight;              /* 0 = none */
    bool inflight_sp;
    _Atomic uint64_t final_epoch;   /* the end-of-input checkpoint, 0 = not yet;
                                     * written by the coordinator, read by sinks */
    uint64_t t_trigger, t_done;
    atomic_uint_fast64_t pause_ns;  /* longest task snapshot of the epoch */
    atomic_int pause_task;          /* its stage << 16 | task (for the log) */
    char ck_dir[4096];              /* directory of the in-flight epoch */
    int progress_fd;                /* at-most-once source progress, or -1 */
    atomic_int sinks_final;         /* sink tasks that published final_epoch */
    int nsinks;
    pthread_t coord;
    bool coord_started;
    /* the snapshot writer thread (ckpt.c): writes and acknowledges the
     * task snapshots queued at barriers, in queue order */
    pthread_t writer;
    bool writer_started, writer_stop;
    pthread_mutex_t wlock;
    pthread_cond_t wcond;
    struct ck_job *wq_head, *wq_tail;
} plan;

/* exec.c, used by ckpt.c */
void sl__route_control(task *t, int type, int64_t v);
bool sl__task_has_pending(const task *t);
int sl__group_task(int g, int groups, int ntasks);
/* ckpt.c, used by exec.c */
int sl__ck_setup(plan *pl);  /* before workers: restore or fresh start */
void sl__ck_start(plan *pl); /* starts the coordinator thread */
void sl__ck_stop(plan *pl);
/* Duties a task has whatever its state: snapshot when triggered (source
 * tasks and tasks whose inputs all ended), publish a committed epoch. */
int sl__ck_task_duties(task *t);
bool sl__ck_task_quiet(const task *t); /* finished and no duty outstanding */
/* A barrier arrived on input `ch`; snapshots and forwards once aligned. */
int sl__ck_on_barrier(task *t, int ch, uint64_t epoch);
/* An input ended: may complete an alignment. */
int sl__ck_on_input_end(task *t);
/* End of input at a sink task. */
int sl__ck_sink_finish(task *t);
/* Canaries: the sink's output up to `epoch` became visible (UINT64_MAX:
 * all of it). */
void sl__ck_canaries_visible(task *t, uint64_t epoch);
/* A source task read a batch from parts[part] (at-most-once progress). */
void sl__ck_source_progress(task *t, int part);

#endif
