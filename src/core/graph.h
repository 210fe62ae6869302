/* graph.h — the job graph as the runtime sees it: nodes built by the public
 * builders (job.c) and planned into stages and tasks (exec.c). Private to
 * the core layer. */
#ifndef SL_GRAPH_H
#define SL_GRAPH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "canary.h"
#include "runtime.h"

typedef enum { NODE_SOURCE, NODE_OP, NODE_KEYBY } sl__node_kind;

struct sl_stream {
    sl_job *job;
    sl__node_kind kind;
    struct sl_stream *parent, *child;
    sl_schema *schema;   /* output schema, owned */
    char **key;          /* key column names (NULL-terminated) or NULL */
    char *time_col;      /* event-time column name or NULL */
    const sl__op_vt *vt; /* NODE_OP */
    void *conf;
    int id;
};

typedef struct {
    int64_t parallelism, workers, batch_size, exchange_capacity, key_groups;
    int64_t flush_ms, sink_flush_ms;
    char *output_dir;
    char *name;
    char *checkpoint_dir;     /* NULL or "": no checkpoints */
    int64_t checkpoint_interval_ms, checkpoint_retain, source_rate;
    int delivery;             /* sl__delivery */
    bool from_scratch;
    char *restore_from;       /* a checkpoint or savepoint directory */
    int64_t canary_interval_ms, canary_timeout_ms;
    char *metrics_address;    /* HOST:PORT of /metrics, /status, dashboard; "" off */
    char *dashboard_dir;      /* dashboard's static files; "" = built-in search */
    int64_t metrics_linger_ms; /* keep serving this long after the run */
    char *metrics_token_file; /* bearer token for the endpoint; "" = open */
    int64_t metrics_rate_limit; /* requests per second served; 0 = no limit */
    int state_backend;        /* 0 memory, 1 rocksdb (sl__state_conf) */
    char *state_rocksdb_dir;  /* "" = <output.dir>/rocksdb */
    int64_t state_memory_bound; /* bytes: RocksDB block cache + write buffers */
    int64_t window_max_groups;  /* per window task; 0 = no cap */
    int64_t state_ttl_ms;       /* state.ttl.ms; 0 = no TTL */
    int state_incremental;      /* state.checkpoints.incremental: 0 false, 1 true */
    int64_t dl_max_count, dl_max_bytes; /* dead letters written; 0 = no cap */
    int dl_overflow;            /* 0 drop (counted), 1 fail */
    int64_t exchange_max_bytes; /* per channel; 0 = exchange.capacity only */
    char *log_file;           /* "" = stderr */
    int log_level;            /* sl__log_level */
    /* distributed mode (--cluster, src/cluster) */
    char *cluster_instance_id;          /* "" = <host>-<pid> */
    int64_t cluster_session_timeout_ms, cluster_txn_timeout_ms;
    int64_t cluster_replication_factor; /* -1 = the brokers' default */
    bool checkpoint_async;    /* operators' snapshots written in the background */
    bool table_images;        /* table.images (sl__state_conf.table_image_dir) */
} sl__job_conf;

struct sl_job {
    sl__job_conf conf;
    char err[1024];
    int errcode;
    pthread_mutex_t lock; /* guards err, dead-letter file */
    struct sl_stream **nodes;
    int nnodes;
    /* the source */
    const sl__source_vt *src_vt;
    void *src_conf;
    const sl_schema *src_schema; /* == nodes[0]->schema */
    int64_t wm_delay_ms, idle_timeout_ms;
    /* the sink */
    struct sl_stream *sink_at;
    const sl__sink_vt *sink_vt;
    void *sink_conf;
    /* run-time */
    atomic_uint_fast64_t ctr[SL__CTR_N];
    atomic_int cancel;
    atomic_int running;
    atomic_int_fast64_t watermark;
    FILE *dlq;
    uint64_t dl_written, dl_bytes; /* dead letters in the file, under lock */
    atomic_uint_fast64_t dl_dropped; /* past a deadletter.max.* cap */
    bool ran;
    bool log_open;          /* this job pointed the process log (log.c) */
    void *plan;             /* while running; guarded by lock */
    atomic_int savepoint_req;
    atomic_int stop_req;    /* graceful stop: final checkpoint, then exit */
    sl__canaries canaries;  /* production checks (canary.c) */
    FILE *canary_log;       /* <output.dir>/canaries.jsonl, guarded by lock */
    struct sl__jctr *counters; /* labelled business counters (jobctr.c) */
    struct sl__part_stat *src_parts; /* source progress after the run, under lock */
    int nsrc_parts;
    /* checkpoint statistics */
    atomic_uint_fast64_t ck_completed, ck_failed, ck_last_ms, ck_last_bytes,
        ck_last_pause_us, ck_restored;
    /* the last checkpoint's bytes written anew and referenced, RocksDB
     * files of incremental checkpoints included (incr.c) */
    atomic_uint_fast64_t ck_last_new_bytes, ck_last_ref_bytes;
};

void sl__job_counters_free(sl_job *j);

#endif
