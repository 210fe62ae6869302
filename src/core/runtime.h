/* runtime.h — the narrow interface between the runtime (core) and the
 * operators, sources and sinks that plug into it (ops and io layers).
 *
 * An operator, a source and a sink are each a struct of function pointers
 * filled with designated initialisers. The job graph holds one definition per
 * node (vtable + validated configuration); the runtime opens one instance per
 * task. Every call on an instance comes from one thread at a time. */
#ifndef SL_RUNTIME_H
#define SL_RUNTIME_H

#include "core.h"

/* Delivery guarantees (job key `delivery`). */
typedef enum {
    SL__EXACTLY_ONCE = 0, /* sinks stage an epoch, publish it once the
                             checkpoint that covers it is complete */
    SL__AT_LEAST_ONCE = 1, /* sinks publish at once; replay may repeat rows */
    SL__AT_MOST_ONCE = 2   /* sinks publish at once; nothing is replayed */
} sl__delivery;

/* Per-task context handed to every instance. */
typedef struct sl__ctx {
    sl_job *job;
    int stage, task, ntasks; /* this task's index within its stage */
    const char *outdir;      /* job output directory (dead letters, ...) */
    const char *job_name;    /* job key `name`: tags epoch markers */
    sl__delivery delivery;
    int key_groups;          /* G, fixed per job */
    _Atomic uint64_t *ctr;   /* the task's counters (SL__CTR_N), or NULL */
    int64_t window_max_groups; /* job key window.max.groups; 0 = no cap */
    /* the state backend for window state (tests); NULL: the job's
     * (sl__job_state_conf), or memory without a job */
    const struct sl__state_conf *state;
} sl__ctx;

/* ---- state snapshots ----------------------------------------------------- */
/* Growable byte buffer with little-endian put/get helpers, for snapshots. */
typedef struct {
    unsigned char *p;
    size_t len, cap;
} sl__buf;
void sl__buf_put(sl__buf *b, const void *p, size_t n);
void sl__buf_put_u64(sl__buf *b, uint64_t v);
void sl__buf_put_i64(sl__buf *b, int64_t v);
void sl__buf_put_u32(sl__buf *b, uint32_t v);
void sl__buf_put_str(sl__buf *b, const char *s, size_t n); /* u32 len + bytes */
void sl__buf_free(sl__buf *b);
/* Reading side: every get fails softly (sets err, returns 0) past the end. */
typedef struct {
    const unsigned char *p;
    size_t len, off;
    bool err;
} sl__rbuf;
uint64_t sl__rbuf_u64(sl__rbuf *r);
int64_t sl__rbuf_i64(sl__rbuf *r);
uint32_t sl__rbuf_u32(sl__rbuf *r);
const void *sl__rbuf_bytes(sl__rbuf *r, size_t n); /* NULL past the end */
const char *sl__rbuf_str(sl__rbuf *r, uint32_t *len);

/* Where an instance writes its snapshot. State is cut into sections: keyed
 * state by key group (0 <= key_group < G; restored into whichever task owns
 * that group, so parallelism can change), other state with key_group -1
 * (restored into the instance with the same task index). */
typedef struct sl__snap_writer sl__snap_writer;
/* A snapshot taken at a barrier and written later (sl__op_vt.snapshot_async).
 * write(ud, w) writes the sections through w, or with w == NULL (the
 * checkpoint was abandoned) writes nothing; either way it is called exactly
 * once, from another thread than the instance's, and ud is not touched
 * after it returns (the instance frees what it kept when it sees that). */
typedef struct sl__snap_deferred {
    int (*write)(void *ud, sl__snap_writer *w);
    void *ud;
    /* Set by the runtime before snapshot_async: the in-flight checkpoint's
     * directory (NULL for a savepoint, which must be self-contained) and
     * the checkpoint root, for state that keeps files of its own in
     * <root>/shared (incremental checkpoints); borrowed for the call only. */
    const char *ck_dir, *ck_root;
    uint32_t op_id;
} sl__snap_deferred;
#define SL__SNAP_SYNC 1 /* snapshot_async: take this one synchronously */
int sl__snap_put(sl__snap_writer *w, int32_t key_group, const void *data,
                 size_t len);
/* An in-memory writer (tests, tools): keeps copies of every section. */
sl__snap_writer *sl__snap_writer_mem(void);
int sl__snap_writer_mem_next(sl__snap_writer *w, size_t *i, int32_t *kg,
                             const void **data, size_t *len);
void sl__snap_writer_free(sl__snap_writer *w);
/* The key group of a row, from its key columns: the same function routes
 * rows between stages, so a group's state lives where its rows arrive. */
int sl__key_group(const sl_batch *b, const int *cols, int ncols, uint32_t row,
                  int groups);
/* The 64-bit key hash that routing uses (key group = hash % G): start from
 * SL__KEY_HASH_SEED and fold in each key column's value v in order with
 * sl__key_hash_step; v is 0 for NULL, sl__hash_bytes(bytes, len, 0) for a
 * string, the byte for a bool and the 64 bits otherwise (so FLOAT64 -0.0 and
 * 0.0 differ). sl__key_hash computes it for one row. */
#define SL__KEY_HASH_SEED 0x2545f4914f6cdd1dULL
static inline uint64_t sl__key_hash_step(uint64_t h, uint64_t v, int k)
{
    return sl__mix64(h ^ v) + (uint64_t)k;
}
uint64_t sl__key_hash(const sl_batch *b, const int *cols, int ncols, uint32_t row);
/* sl__key_hash of every row of b into h[0..b->n), a column at a time. */
void sl__key_hashes(const sl_batch *b, const int *cols, int ncols, uint64_t *h);

/* Dead letters: {source, position, reason, payload} as JSON Lines in
 * <outdir>/dead-letters.jsonl, counted per reason. The payload must already
 * have its identifier fields masked (see sl__mask_payload). Thread-safe. */
void sl__dead_letter(sl__ctx *ctx, const char *source, const char *position,
                     const char *reason, const char *payload, size_t len);
/* Writes into out (size >= len + 1) the payload with every identifier field
 * masked: fields are split on `sep` (0 = not delimited: mask every run of
 * five or more digits); identifier columns of the schema are replaced by
 * '*' characters of the same length. Returns the length written. */
size_t sl__mask_payload(const sl_schema *s, const int *field_col, int nfield,
                        char sep, const char *in, size_t len, char *out);

/* Job-wide counters ops add to (thread-safe, relaxed atomics). */
typedef enum {
    SL__CTR_RECORDS_IN,
    SL__CTR_RECORDS_OUT,
    SL__CTR_DEAD_LETTERS,
    SL__CTR_LATE,
    SL__CTR_WINDOWS_FIRED,
    SL__CTR_SUPPRESSED,
    SL__CTR_BLOCKED_NS,
    SL__CTR_FOLDED, /* groups published folded into a coarser one */
    SL__CTR_N
} sl__ctr;
void sl__count(sl__ctx *ctx, sl__ctr c, uint64_t n);
/* Labelled business counters of a job (jobctr.c), such as events per type:
 * the counter (name, labels), created at 0 on first use, owned by the job
 * and exported at /metrics. Operators that count into one keep their own
 * share in their checkpointed state and add it back on restore, so the
 * figure continues after a recovery. labels is a rendered label set such
 * as `event_type="SMS_SENT"`; never record content that could identify a
 * person. Thread-safe; the pointer lives as long as the job. */
_Atomic uint64_t *sl__job_counter(sl_job *j, const char *name, const char *help,
                                  const char *labels);
/* For unit tests, which run instances with ctx->job == NULL: counters and
 * the last dead letter ("reason@position") land in process-wide globals. */
uint64_t sl__test_counter(sl__ctr c);
const char *sl__test_last_dead_letter(void);

/* Where an operator sends its output: the next operator in the task's
 * chain, or the task's exchange or sink. push takes ownership of b. */
typedef struct sl__out {
    int (*push)(struct sl__out *o, sl_batch *b);
    void *impl;
    uint32_t batch_cap; /* capacity to use for batches an operator creates */
} sl__out;
static inline int sl__emit(sl__out *o, sl_batch *b) { return o->push(o, b); }

/* What an operator instance learns about its place in the graph. */
typedef struct {
    const sl_schema *in, *out;
    int time_col;        /* index in `in` of the event-time column, or -1 */
    const int *key_cols; /* indices in `in` of the current key, or NULL */
    int nkey;
    uint32_t batch_cap;
    uint32_t op_id;      /* stable operator id (position in the job) */
} sl__opinfo;

#define SL__MORE 2 /* an op's watermark: call me again (sl__op_vt) */

typedef struct sl__op_vt {
    const char *name;
    /* Creates an instance from the definition's configuration. */
    int (*open)(void **st, const void *conf, const sl__opinfo *info,
                sl__ctx *ctx, char *errstr, size_t errstr_size);
    /* Processes a batch; takes ownership of b (free it or pass it on). */
    int (*batch)(void *st, sl_batch *b, sl__out *out);
    /* The watermark advanced to wm (SL_TS_MAX at end of input); optional.
     * Returns 0, a negative SL_E*, or SL__MORE: it has more output for wm
     * than it should queue at once, and wants to be called again with the
     * same wm once that output is delivered (nothing else reaches it in
     * between: no batch, barrier, snapshot or other watermark). */
    int (*watermark)(void *st, int64_t wm, sl__out *out);
    void (*close)(void *st);
    void (*conf_free)(void *conf); /* frees the definition's conf; optional */
    /* Checkpoints (optional: stateless operators leave them NULL). snapshot
     * writes the instance's whole state with sl__snap_put; restore is then
     * called, on a freshly opened instance and before any batch, once per
     * section this instance owns. A bump of state_version makes old
     * snapshots refuse to restore. */
    int (*snapshot)(void *st, sl__snap_writer *w);
    int (*restore)(void *st, int32_t key_group, const void *data, size_t len);
    uint32_t state_version;
    /* Asynchronous snapshots (optional; ckpt.c prefers it to snapshot).
     * Called at the barrier, it keeps what the snapshot needs in O(state
     * entries) pointer work and fills *d; the checkpoint's writer thread
     * later calls d->write once, while the instance goes on processing, and
     * it writes exactly the sections snapshot would have written at the
     * barrier. Returns 0, SL__SNAP_SYNC to ask for snapshot instead, or a
     * negative SL_E*. */
    int (*snapshot_async)(void *st, struct sl__snap_deferred *d);
} sl__op_vt;

typedef struct sl__source_vt {
    const char *name;
    /* Validates the connector's configuration (generic keys time.column,
     * watermark.delay.ms and idle.timeout.ms are removed before). */
    int (*configure)(void **conf, const char *const *kv,
                     const sl_schema *schema, char *errstr,
                     size_t errstr_size);
    /* Number of partitions the input has now (files, generator slices). */
    int (*partitions)(const void *conf);
    /* Opens an instance reading the given partitions. */
    int (*open)(void **st, const void *conf, const sl_schema *schema,
                const int *parts, int nparts, sl__ctx *ctx, char *errstr,
                size_t errstr_size);
    /* Appends up to sl_batch_cap(out) - out->n records from ONE partition
     * to out and sets *part to its index in `parts`. Returns the number of
     * records appended (>= 0; 0 with bad records only), SL_EAGAIN when no
     * input is available now, SL_EEOF when every partition has ended, or
     * another negative SL_E* (a fatal error, detail in errstr). Bad records
     * go to sl__dead_letter and are not returned. */
    int (*read)(void *st, sl_batch *out, int *part, char *errstr,
                size_t errstr_size);
    void (*close)(void *st);
    void (*conf_free)(void *conf);
    /* Rewinding (required for checkpoints): the position after the last
     * record returned from parts[part], and making the next read of that
     * partition start there. Positions are opaque non-negative int64. */
    int (*position)(void *st, int part, int64_t *pos);
    int (*seek)(void *st, int part, int64_t pos);
    /* Progress for metrics (optional): bytes of parts[part] consumed so far
     * over all its files (*offset) and the bytes it holds now (*end; -1 when
     * unknown, e.g. compressed files). Called after every read, so cheap. */
    int (*progress)(void *st, int part, int64_t *offset, int64_t *end);
    const char *progress_unit; /* what progress counts: NULL = "bytes" */
    /* Projection pushdown (optional): bit c of `used` set = column c is
     * read downstream. A source may then leave the other columns NULL
     * where that saves work, but must still reject (dead-letter) exactly
     * the records it would reject without the hint. Called before open. */
    void (*project)(void *conf, uint64_t used);
} sl__source_vt;

typedef struct sl__sink_vt {
    const char *name;
    int (*configure)(void **conf, const char *const *kv, const sl_schema *in,
                     char *errstr, size_t errstr_size);
    int max_parallelism; /* 1 = the sink runs as a single task */
    int (*open)(void **st, const void *conf, const sl_schema *in,
                sl__ctx *ctx, char *errstr, size_t errstr_size);
    /* Writes a batch (borrowed); may buffer. */
    int (*write)(void *st, const sl_batch *b, char *errstr,
                 size_t errstr_size);
    /* Makes everything written so far durable/visible (at-least-once and
     * at-most-once; under exactly-once only precommit/commit publish). */
    int (*flush)(void *st, char *errstr, size_t errstr_size);
    void (*close)(void *st);
    void (*conf_free)(void *conf);
    /* The epoch protocol (see docs/checkpoints.md). Under exactly-once:
     * precommit(n) makes everything written since precommit(n-1) durable
     * but invisible, tagged with epoch n; commit(n) publishes every staged
     * epoch <= n atomically with a marker (job, sink, task, epoch) so a
     * repeated commit is a no-op; recover(n), called once after open (after
     * restore) when the job restarts from checkpoint n, publishes staged
     * epochs <= n that were not yet published and discards staged epochs
     * > n; recover(0) means a fresh start: discard everything staged and
     * forget the epoch marker. Under the
     * other guarantees precommit and commit may simply flush. Optional for
     * sinks that only offer at-least-once (they set exactly_once = false). */
    int (*precommit)(void *st, uint64_t epoch, char *errstr, size_t errstr_size);
    int (*commit)(void *st, uint64_t epoch, char *errstr, size_t errstr_size);
    int (*recover)(void *st, uint64_t epoch, char *errstr, size_t errstr_size);
    /* Sink state kept in checkpoints (e.g. a file's committed length). */
    int (*snapshot)(void *st, sl__snap_writer *w);
    int (*restore)(void *st, int32_t key_group, const void *data, size_t len);
    bool exactly_once; /* false: the job refuses delivery=exactly-once */
} sl__sink_vt;

/* ---- the graph, for the layers that implement the public builders ------- */
/* Adds an operator node after s. `conf` is owned by the job from now on (freed
 * with vt->conf_free). `out` is the node's output schema (copied). Returns the
 * new stream or NULL (error recorded in the job; conf is freed). */
sl_stream *sl__stream_add_op(sl_stream *s, const sl__op_vt *vt, void *conf,
                             const sl_schema *out);
sl_stream *sl__job_add_source(sl_job *job, const sl__source_vt *vt,
                              const sl_schema *schema,
                              const char *const *kv);
int sl__stream_add_sink(sl_stream *s, const sl__sink_vt *vt,
                        const char *const *kv);
/* Replaces the configuration of the job's sink (for sinks whose
 * configuration is not text, such as user callbacks). */
void sl__job_set_sink_conf(sl_job *job, void *conf);
/* Records the job's first error (printf-style) and returns code. */
int sl__job_fail(sl_job *job, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
sl_job *sl__stream_job(const sl_stream *s);
/* Names the event-time column of a node's output (e.g. window_start after a
 * window). */
void sl__stream_set_time_col(sl_stream *s, const char *col);
/* Names of the stream's key columns (NULL-terminated; NULL if unkeyed). */
const char *const *sl__stream_key(const sl_stream *s);
const char *sl__stream_time_col(const sl_stream *s);
/* The configuration of the operator that produces s if it is a vt node
 * (still the job's), else NULL: for builders that fuse with the operator
 * before them. */
void *sl__stream_op_conf(const sl_stream *s, const sl__op_vt *vt);
/* The job's batch capacity (job key batch.size). */
uint32_t sl__job_batch_cap(const sl_job *job);

/* Connector registries (io layer), looked up by name. */
const sl__source_vt *sl__source_find(const char *name);
const sl__sink_vt *sl__sink_find(const char *name);

/* ---- queryable state (qstate.c) ------------------------------------------ */
/* An answer: rows of the operator's output schema (window_start,
 * window_end, the key, the aggregates), one per open window holding the
 * key; suppressed[i] marks a row withheld by k-anonymity (only its window
 * and key are meaningful). */
#define SL__QS_MAX_ROWS 1024
typedef struct {
    char op[32];
    uint32_t op_id;
    const sl_schema *schema;
    int nkey;
    sl_batch *rows; /* capacity SL__QS_MAX_ROWS, or NULL: no open window */
    uint8_t *suppressed;
} sl__qs_answer;
/* An instance's answer for the key given as text values (one per key
 * column, parsed by type); appends to ans. kanon: the job publishes
 * through k-anonymity. Returns 0, SL_EINVAL (bad key: message in err),
 * SL_EAGAIN (busy for too long) or SL_ESTATE (refused). */
typedef int (*sl__qs_fn)(void *inst, const char *const *vals, int nvals, bool kanon,
                         sl__qs_answer *ans, char *err, size_t errsz);
void sl__qs_register(sl_job *job, uint32_t op_id, const char *name, void *inst,
                     sl__qs_fn fn);
void sl__qs_unregister(void *inst);
/* The job publishes through k-anonymity (sl_stream_k_anon, folding). */
void sl__qs_note_kanon(sl_job *job);
bool sl__qs_job_kanon(const sl_job *job);
void sl__qs_forget_job(sl_job *job); /* sl_job_free */
/* op: an operator name ("window", the first of the job's) or "name@id". */
int sl__qs_query(sl_job *job, const char *op, const char *const *vals, int nvals,
                 sl__qs_answer *ans, char *errstr, size_t errstr_size);
void sl__qs_answer_free(sl__qs_answer *a);

/* The job's state backend configuration (state.backend, state.rocksdb.dir,
 * state.memory.bound), read by the state layer when a table loads. */
typedef struct sl__state_conf {
    int backend;          /* SL__STATE_MEMORY or SL__STATE_ROCKSDB */
    char dir[1024];       /* RocksDB directory (always set) */
    int64_t memory_bound; /* bytes */
    int64_t ttl_ms;       /* state.ttl.ms: 0 = state never expires */
    bool incremental;     /* state.checkpoints.incremental (rocksdb) */
    /* where memory tables keep their images (<checkpoint.dir>/shared/tables;
     * "" = none): src/state/timage.c, src/ops/limage.c */
    char table_image_dir[1024];
} sl__state_conf;
enum { SL__STATE_MEMORY = 0, SL__STATE_ROCKSDB = 1 };
void sl__job_state_conf(const sl_job *job, sl__state_conf *out);

#endif
