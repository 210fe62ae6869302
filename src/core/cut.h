/* cut.h — the job graph cut at its first key change, for the cluster
 * runtime (src/cluster): the source, the stateless chain up to the
 * exchange (stage 1), the keyed chain and the sink (stage 2), with what is
 * needed to open each operator. The same walk over the graph as the
 * embedded planner (exec.c plan_stages). Borrowed pointers live as long as
 * the job. */
#ifndef SL_CORE_CUT_H
#define SL_CORE_CUT_H

#include "runtime.h"

typedef struct {
    const sl__op_vt *vt;
    const void *conf;
    sl__opinfo info; /* info.key_cols points into keys */
    int keys[SL_MAX_COLS];
} sl__cut_op;

typedef struct {
    sl_job *job;
    /* the source */
    const sl__source_vt *src_vt;
    const void *src_conf;
    const sl_schema *src_schema;
    int time_col; /* in src_schema, or -1 */
    int64_t wm_delay_ms;
    /* stage 1: source chain up to the exchange */
    sl__cut_op *ops1;
    int nops1;
    const sl_schema *x_schema; /* the rows crossing the exchange */
    int key_cols[SL_MAX_COLS], nkey; /* in x_schema */
    /* stage 2: keyed chain and sink */
    sl__cut_op *ops2;
    int nops2;
    const sl_schema *out_schema; /* entering the sink */
    const sl__sink_vt *sink_vt;
    const void *sink_conf;
    /* job settings */
    const char *name, *output_dir;
    int key_groups;
    uint32_t batch_cap;
    int64_t interval_ms, flush_ms;
    int64_t source_rate; /* records per second per instance, 0 = no limit */
    sl__delivery delivery;
    const char *instance_id; /* cluster.* keys */
    int64_t session_timeout_ms, txn_timeout_ms, replication_factor;
} sl__cut;

/* Cuts the job (and marks it run, opening its log). A job with no key change or with more than one, or without
 * source or sink, is an error (message in errstr). Free with sl__cut_free. */
int sl__job_cut(sl_job *job, sl__cut *out, char *errstr, size_t errstr_size);
void sl__cut_free(sl__cut *c);
/* Adds the run's counters to the job's (sl_job_stats_get reads them). */
void sl__job_add_counters(sl_job *job, const uint64_t *ctr /* SL__CTR_N */);

/* A graceful stop (sl_job_stop) or a cancel was asked for. */
bool sl__job_stopping(const sl_job *job);

#endif
