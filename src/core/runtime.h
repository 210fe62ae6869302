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

/* Per-task context handed to every instance. */
typedef struct sl__ctx {
    sl_job *job;
    int stage, task, ntasks; /* this task's index within its stage */
    const char *outdir;      /* job output directory (dead letters, ...) */
} sl__ctx;

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
    SL__CTR_N
} sl__ctr;
void sl__count(sl__ctx *ctx, sl__ctr c, uint64_t n);
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
} sl__opinfo;

typedef struct sl__op_vt {
    const char *name;
    /* Creates an instance from the definition's configuration. */
    int (*open)(void **st, const void *conf, const sl__opinfo *info,
                sl__ctx *ctx, char *errstr, size_t errstr_size);
    /* Processes a batch; takes ownership of b (free it or pass it on). */
    int (*batch)(void *st, sl_batch *b, sl__out *out);
    /* The watermark advanced to wm (SL_TS_MAX at end of input); optional. */
    int (*watermark)(void *st, int64_t wm, sl__out *out);
    void (*close)(void *st);
    void (*conf_free)(void *conf); /* frees the definition's conf; optional */
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
    /* Makes everything written so far durable/visible. */
    int (*flush)(void *st, char *errstr, size_t errstr_size);
    void (*close)(void *st);
    void (*conf_free)(void *conf);
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
/* The job's batch capacity (job key batch.size). */
uint32_t sl__job_batch_cap(const sl_job *job);

/* Connector registries (io layer), looked up by name. */
const sl__source_vt *sl__source_find(const char *name);
const sl__sink_vt *sl__sink_find(const char *name);

#endif
