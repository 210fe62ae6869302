/* sluice.h — the public C API of sluice, a real-time stream processor.
 *
 * A job is a pipeline built from a source, a chain of operators and a sink:
 *
 *     sl_job *job = sl_job_new(err, sizeof err);
 *     sl_stream *s = sl_job_source(job, "file", events_schema, conf);
 *     s = sl_stream_pseudonymise(s, "msisdn", "sub", keyring);
 *     s = sl_stream_key_by(s, (const char *[]){"event_type", NULL});
 *     s = sl_stream_window(s, &(sl_window_spec){.size_ms = 60000}, aggs, 2);
 *     sl_stream_sink(s, "sqlite", sink_conf);
 *     int rc = sl_job_run(job);   // bounded input: returns 0 when every window fired
 *     sl_job_free(job);
 *
 * Conventions (the same in every function below):
 * - Functions returning int return 0 on success or a negative SL_E* code.
 *   sl_strerror() names the code; detail goes into a caller-owned errstr buffer
 *   (or, for stream builders, into the job: see sl_job_error()).
 * - Builder functions on sl_stream never fail loudly: on error they record the
 *   first error in the job and return NULL; every builder accepts NULL and
 *   passes it on, so a chain can be written without checks and the error is
 *   reported once by sl_job_run().
 * - Ownership: the caller owns what it creates with _new/_load and frees it with
 *   _free (_free(NULL) is a no-op). Objects handed to a job (schemas, keyrings,
 *   tables) are borrowed by the job and must outlive sl_job_free(). Streams are
 *   owned by their job. Strings passed in are copied unless stated otherwise.
 * - Configuration is a NULL-terminated array of key, value string pairs:
 *   (const char *[]){"path", "in/events.csv", "format", "csv", NULL}.
 *   An unknown key or a bad value is an error naming the key and what is allowed.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SL_VERSION "0.1.0"
const char *sl_version(void);

/* ---- errors -------------------------------------------------------------- */
#define SL_ERRNO_MAP(X)                                                       \
    X(EINVAL, -1, "invalid argument or configuration")                       \
    X(ENOMEM, -2, "out of memory")                                           \
    X(EIO, -3, "input/output error")                                         \
    X(ENOENT, -4, "no such file or object")                                  \
    X(EPARSE, -5, "malformed input")                                         \
    X(EEOF, -6, "end of input")                                              \
    X(EAGAIN, -7, "try again")                                               \
    X(ECORRUPT, -8, "corrupt data")                                          \
    X(ESTATE, -9, "operation not allowed in this state")                     \
    X(EINTERNAL, -10, "internal error")                                      \
    X(ECANCELED, -11, "canceled")                                            \
    X(ESQLITE, -12, "SQLite error")                                          \
    X(ECRYPTO, -13, "cryptographic library error")

enum {
#define SL__ERR_ENUM(name, val, msg) SL_##name = (val),
    SL_ERRNO_MAP(SL__ERR_ENUM)
#undef SL__ERR_ENUM
};

/* Static string naming an error code; never NULL. */
const char *sl_strerror(int err);

/* ---- types and schemas --------------------------------------------------- */
typedef enum {
    SL_INT64 = 0,
    SL_FLOAT64,
    SL_BOOL,
    SL_STRING,
    SL_TIMESTAMP /* int64 milliseconds since the UNIX epoch, UTC */
} sl_type;

/* Name of a type as used in SQL and configuration ("BIGINT", "DOUBLE", ...). */
const char *sl_type_name(sl_type t);

/* Record kinds: real data, or canary records injected for production checks. */
enum { SL_KIND_DATA = 0, SL_KIND_CANARY = 1 };

typedef struct sl_schema sl_schema;

/* Caller owns the schema; a job borrows it until sl_job_free(). */
sl_schema *sl_schema_new(void);
void sl_schema_free(sl_schema *s);
/* Appends a column; returns its index or a negative SL_E* (duplicate name,
 * more than 64 columns). */
int sl_schema_add(sl_schema *s, const char *name, sl_type t);
/* Restricts a STRING column to a set of values (NULL-terminated); decoders
 * send any other value to the dead-letter output. */
int sl_schema_set_domain(sl_schema *s, int col, const char *const *values);
/* Marks a column as a subscriber identifier: masked in dead letters. */
int sl_schema_set_identifier(sl_schema *s, int col);
int sl_schema_find(const sl_schema *s, const char *name); /* index or -1 */
int sl_schema_ncols(const sl_schema *s);
const char *sl_schema_col_name(const sl_schema *s, int col);
sl_type sl_schema_col_type(const sl_schema *s, int col);

/* ---- batches ------------------------------------------------------------- */
/* A batch is a column-oriented block of records sharing one schema. Batches
 * handed to user callbacks are borrowed for the duration of the call. */
typedef struct sl_batch sl_batch;
/* A string value. ptr points either into the batch's own storage (strings
 * set with sl_batch_set_str, or decoded from input) or to memory that
 * outlives the job: a schema's domain values, a lookup table's storage,
 * static text. So a map function may store a pointer to such memory
 * directly (sl_batch_str(out, col)[row] = (sl_str){"65+", 3}, and set the
 * row valid) instead of copying it, and batch copies inside the runtime
 * reference such strings rather than copying their bytes. */
typedef struct {
    const char *ptr; /* not NUL-terminated; valid at least as long as the batch */
    uint32_t len;
} sl_str;

size_t sl_batch_len(const sl_batch *b);
size_t sl_batch_cap(const sl_batch *b);
const sl_schema *sl_batch_schema(const sl_batch *b);
/* Column arrays, sl_batch_len() entries each; the type must match the
 * column's (INT64 and TIMESTAMP both use sl_batch_i64). */
int64_t *sl_batch_i64(const sl_batch *b, int col);
double *sl_batch_f64(const sl_batch *b, int col);
uint8_t *sl_batch_bool(const sl_batch *b, int col);
sl_str *sl_batch_str(const sl_batch *b, int col);
/* Validity per row: 1 = value present, 0 = NULL. */
uint8_t *sl_batch_valid(const sl_batch *b, int col);
/* Record kind per row (SL_KIND_DATA or SL_KIND_CANARY). */
uint8_t *sl_batch_kind(const sl_batch *b);
/* Copies s into the batch's arena and stores it at (col, row). */
int sl_batch_set_str(sl_batch *b, int col, size_t row, const char *s, size_t len);
/* Sets the number of rows (<= cap); used by map functions on their output. */
void sl_batch_set_len(sl_batch *b, size_t n);

/* ---- keys and tables ----------------------------------------------------- */
/* A keyring holds the secret keys for pseudonymisation (HMAC-SHA-256).
 * File format: one key per line, "KEY_ID HEX_SECRET" (secret >= 32 bytes),
 * '#' comments. The last key is the current one. */
typedef struct sl_keyring sl_keyring;
sl_keyring *sl_keyring_load(const char *path, char *errstr, size_t errstr_size);
void sl_keyring_free(sl_keyring *k);
/* Creates a new key file at path (mode 0600, must not exist) holding one
 * fresh 256-bit random key named key_id. */
int sl_keyring_create(const char *path, const char *key_id, char *errstr,
                      size_t errstr_size);
const char *sl_keyring_current_id(const sl_keyring *k);
/* Pseudonym of an identifier under the current key: the first 64 bits of
 * HMAC-SHA-256(key, id), read big-endian, as an int64. Thread-safe but slow
 * (one-shot MAC); the pseudonymise operator keeps a keyed context per task. */
int64_t sl_keyring_pseudonym(const sl_keyring *k, const char *id, size_t len);

/* A lookup table, loaded whole at start and kept in memory. If `pseudo` is
 * not NULL the key column (a STRING identifier) is pseudonymised as it loads
 * and the table is keyed by the INT64 pseudonym. Connector "file" takes the
 * same configuration as the file source. */
typedef struct sl_table sl_table;
sl_table *sl_table_load(const char *connector, const sl_schema *schema,
                        const char *key_col, const char *const *conf,
                        const sl_keyring *pseudo, char *errstr,
                        size_t errstr_size);
void sl_table_free(sl_table *t);
size_t sl_table_rows(const sl_table *t);

/* ---- jobs and streams ---------------------------------------------------- */
typedef struct sl_job sl_job;
typedef struct sl_stream sl_stream;

sl_job *sl_job_new(char *errstr, size_t errstr_size);
void sl_job_free(sl_job *job);
/* Job configuration; JOB KEYS in sluice(1) lists the keys (sl_job_conf_info)
 * (parallelism, workers, batch.size, exchange.capacity, output.dir, ...). */
int sl_job_set(sl_job *job, const char *key, const char *value, char *errstr,
               size_t errstr_size);
/* First error recorded by a builder, or NULL. Lives as long as the job. */
const char *sl_job_error(const sl_job *job);

/* Runs the job to completion (bounded input) or until sl_job_cancel().
 * Returns 0, or a negative SL_E* with the reason in sl_job_error(). */
int sl_job_run(sl_job *job);
/* Runs the job as one instance of the distributed mode on the Kafka
 * cluster `bootstrap_servers` (docs/distributed.md): start it any number of
 * times, on any machines; the instances share the work through consumer
 * groups and commit each epoch as a Kafka transaction. The source must be
 * kafka, the sink kafka, the job must change its key exactly once. Returns
 * 0 when a bounded job has completed everywhere or after sl_job_stop(),
 * else a negative SL_E* with the reason in sl_job_error(). */
int sl_job_run_cluster(sl_job *job, const char *bootstrap_servers);
/* Asks a running job to stop soon; safe from any thread or signal handler. */
void sl_job_cancel(sl_job *job);

typedef struct {
    uint64_t records_in;      /* records read by sources */
    uint64_t records_out;     /* records written by sinks */
    uint64_t dead_letters;    /* bad records routed to the dead-letter output */
    uint64_t late_records;    /* records behind the watermark, not counted */
    uint64_t windows_fired;   /* (window, key) groups emitted by window ops */
    uint64_t groups_suppressed; /* groups withheld by k-anonymity */
    uint64_t groups_folded;   /* small groups published in a coarser one */
    uint64_t blocked_ns;      /* time producers waited on full exchanges */
    uint64_t batches_live;    /* batches allocated right now */
    uint64_t batches_peak;    /* most batches allocated at once */
    int64_t watermark;        /* lowest task watermark (ms), INT64_MIN before */
    int running;
    uint64_t checkpoints_completed, checkpoints_failed;
    uint64_t last_checkpoint_ms;     /* trigger to manifest, last checkpoint */
    uint64_t last_checkpoint_bytes;  /* size of its snapshot files */
    uint64_t last_snapshot_pause_us; /* longest time a task spent snapshotting */
    uint64_t restored_epoch;         /* checkpoint the run started from, 0 = none */
    /* production checks (canary.interval.ms) */
    uint64_t canaries_injected, canaries_seen, canaries_committed, canaries_missing;
    uint64_t canary_pipeline_last_us; /* injection to sink write, last canary */
    uint64_t canary_commit_last_us;   /* injection to visible output, last canary */
    /* the last checkpoint's bytes: written by it (snapshot files and, with
     * incremental RocksDB checkpoints, the RocksDB files new since the
     * previous one) and referenced by it (snapshot files and every RocksDB
     * file it needs, shared ones included); both equal
     * last_checkpoint_bytes for full checkpoints */
    uint64_t last_checkpoint_new_bytes, last_checkpoint_ref_bytes;
} sl_job_stats;

/* Asks a running job with checkpoints for a savepoint: a checkpoint kept
 * until deleted (directory sp-N). Safe from a signal handler. */
void sl_job_savepoint(sl_job *job);
/* Graceful stop: sources read no more, a final checkpoint takes everything
 * in flight and every open window, sinks commit it, sl_job_run returns 0;
 * a restart resumes from there. Without checkpoints it acts as
 * sl_job_cancel. Safe from a signal handler. */
void sl_job_stop(sl_job *job);
/* Consistent-enough snapshot of the job's counters; safe while it runs. */
void sl_job_stats_get(const sl_job *job, sl_job_stats *out);

/* Sources. connector: "file", "generator" or "kafka" (docs/kafka.md).
 * The source's time column and watermark are configured with the keys "time.column",
 * "watermark.delay.ms" (bounded out-of-orderness) and "idle.timeout.ms". */
sl_stream *sl_job_source(sl_job *job, const char *connector,
                         const sl_schema *schema, const char *const *conf);

/* Per-batch user functions. A map function fills `out` (schema out_schema,
 * capacity >= sl_batch_len(in)) and sets its length; it must copy the record
 * kinds of the rows it keeps. `out` takes over the storage of in's strings,
 * so an sl_str of `in` may be stored in `out` as it is, without a copy.
 * Return 0, or a negative SL_E* to fail the job. */
typedef int (*sl_map_fn)(const sl_batch *in, sl_batch *out, void *udata);
/* A filter sets keep[i] to 1 for the rows to keep. */
typedef void (*sl_filter_fn)(const sl_batch *in, uint8_t *keep, void *udata);

sl_stream *sl_stream_map(sl_stream *s, const char *name,
                         const sl_schema *out_schema, sl_map_fn fn,
                         void *udata);
sl_stream *sl_stream_filter(sl_stream *s, const char *name, sl_filter_fn fn,
                            void *udata);
/* Keeps the named columns, in the given order. */
sl_stream *sl_stream_project(sl_stream *s, const char *const *cols);
/* Counts data records per value of the VARCHAR column `col` (low
 * cardinality, never an identifier: at most 64 values, then "other") into
 * the business counter metric{col="value"} at /metrics; metric must end in
 * _total. The counts are checkpointed, so after a recovery they continue
 * from the checkpoint. Records pass unchanged. */
sl_stream *sl_stream_count_by(sl_stream *s, const char *col, const char *metric,
                              const char *help);
/* Repartitions by the named columns: rows with equal keys reach one task. */
sl_stream *sl_stream_key_by(sl_stream *s, const char *const *cols);

/* Replaces the STRING identifier column `col` with an INT64 pseudonym column
 * named `out_col` (HMAC-SHA-256 under the keyring's current key). */
sl_stream *sl_stream_pseudonymise(sl_stream *s, const char *col,
                                  const char *out_col, const sl_keyring *keys);

/* Left lookup join: appends the table's columns `cols` (NULL-terminated) for
 * the row whose key equals `key_col`; NULLs when there is none. */
sl_stream *sl_stream_lookup(sl_stream *s, const char *key_col,
                            const sl_table *t, const char *const *cols);

/* Event-time windows over the stream's key (from sl_stream_key_by; a
 * global window when there is none). slide_ms 0 = tumbling. A window
 * [start, start + size) fires once, when the watermark reaches
 * start + size + lateness_ms; later records are counted, not aggregated.
 * Output columns: window_start, window_end (TIMESTAMP), the key columns,
 * then one column per aggregate. */
typedef struct {
    int64_t size_ms;
    int64_t slide_ms;
    int64_t lateness_ms;
} sl_window_spec;

/* Session windows on event time (docs/sql.md, SESSION): per key, records
 * within gap_ms of each other form one session [first ts, last ts +
 * gap_ms); a late record may bridge two sessions, which then merge. A
 * session fires once, when the watermark reaches its end + lateness_ms.
 * Output columns as sl_stream_window's (window_start = session start,
 * window_end = its end). */
typedef struct {
    int64_t gap_ms;      /* > 0 */
    int64_t lateness_ms; /* >= 0 */
} sl_session_spec;

typedef enum {
    SL_AGG_COUNT,          /* INT64, rows (col may be NULL) */
    SL_AGG_SUM,            /* INT64 or DOUBLE as the input column */
    SL_AGG_MIN,
    SL_AGG_MAX,
    SL_AGG_AVG,            /* DOUBLE */
    SL_AGG_COUNT_DISTINCT, /* INT64, exact */
    SL_AGG_APPROX_COUNT_DISTINCT, /* INT64, HyperLogLog (2^14 registers) */
    SL_AGG_HISTOGRAM,      /* STRING "c0,c1,...,cn" over the bucket bounds */
    SL_AGG_UDAF,           /* user-defined: sl_agg_spec.udaf */
    SL_AGG_APPROX_PERCENTILE /* DOUBLE, the `quantile` of the input within
                              * relative error `accuracy` (DDSketch) */
} sl_agg_kind;

struct sl_value;
/* A user-defined aggregate (SL_AGG_UDAF, or from SQL through
 * sl_sql_add_aggregate). Its state is state_size bytes of plain data, all
 * zero when empty: no pointers, since it is copied into checkpoints as it
 * is (so restore on a machine of the same byte order). add folds one
 * non-NULL input value (in_type) into a state; merge makes dst the state
 * of both groups' inputs (used when groups are folded); result writes the
 * output (out_type: BIGINT, DOUBLE, BOOLEAN or TIMESTAMP) or sets
 * out->null. The callbacks run on worker threads, several at once:
 * udata must be read-only or synchronised. The struct must outlive every
 * job that uses it. */
typedef struct sl_udaf {
    const char *name;
    sl_type in_type, out_type;
    uint32_t state_size; /* 1..4096 */
    void (*add)(void *state, const struct sl_value *in, void *udata);
    void (*merge)(void *dst, const void *src, void *udata);
    void (*result)(const void *state, struct sl_value *out, void *udata);
    void *udata;
} sl_udaf;

typedef struct {
    sl_agg_kind kind;
    const char *col;   /* input column; NULL for COUNT(*) */
    const char *as;    /* output column name */
    const double *bounds; /* HISTOGRAM: ascending upper bounds, n of them... */
    size_t nbounds;    /* ...giving n + 1 buckets: (-inf,b0), [b0,b1), ... */
    const sl_udaf *udaf; /* SL_AGG_UDAF: the aggregate (borrowed) */
    double quantile;     /* APPROX_PERCENTILE: in [0, 1], e.g. 0.95 */
    double accuracy;     /* APPROX_PERCENTILE: relative error, (0, 0.5);
                          * 0 = 0.01 */
} sl_agg_spec;

sl_stream *sl_stream_window(sl_stream *s, const sl_window_spec *w,
                            const sl_agg_spec *aggs, size_t naggs);
sl_stream *sl_stream_session(sl_stream *s, const sl_session_spec *spec,
                             const sl_agg_spec *aggs, size_t naggs);

/* Interval join of a keyed stream with itself (docs/sql.md, stream
 * joins). Rows whose `left` predicate keeps them are left rows, rows that
 * `right` keeps are right rows (a row may be both; a NULL predicate keeps
 * every row). A left row a and a right row b of the same key (the
 * stream's key, sl_stream_key_by) join when
 *     a.ts + lower_ms <= b.ts <= a.ts + upper_ms   (event time, inclusive)
 * and the pair is emitted as one row: the left row's `left_cols` then the
 * right row's `right_cols`, under their `as` names. Emission is
 * watermark-driven: a left row's pairs leave once the watermark passes
 * a.ts + upper_ms, sorted by (a.ts, key, left row, b.ts, right row), so a
 * replay emits the same rows in the same order. Rows older than the
 * watermark are late (counted, not joined); right rows are kept until
 * b.ts < watermark - upper_ms + lower_ms. Canary rows pass at once (each
 * output column from the canary's own column); a NULL event time is a dead
 * letter. `time_col` names the output column (TIMESTAMP or BIGINT) that is
 * the event time downstream (NULL: the first output column taken from the
 * input's event-time column). Predicates run on worker threads: udata
 * must be read-only. */
typedef struct {
    const char *col; /* input column */
    const char *as;  /* output column name (NULL: col) */
} sl_join_col;

typedef struct {
    sl_filter_fn left, right;
    void *left_udata, *right_udata;
    int64_t lower_ms, upper_ms; /* lower_ms <= upper_ms */
    const sl_join_col *left_cols;
    size_t nleft;
    const sl_join_col *right_cols;
    size_t nright;
    const char *time_col;
} sl_interval_join_spec;

sl_stream *sl_stream_interval_join(sl_stream *s, const sl_interval_join_spec *spec);

/* k-anonymity: drops rows whose INT64 column `count_col` (an exact distinct
 * count of subscribers) is below k, counting them as suppressed groups. */
sl_stream *sl_stream_k_anon(sl_stream *s, const char *count_col, int64_t k);

/* k-anonymity by folding (docs/privacy.md): a window (as sl_stream_window)
 * whose groups are the stream's key plus `group_cols` (NULL-terminated,
 * not part of the key), k-anonymised as it fires. A group with at least k
 * distinct subscribers (the exact COUNT_DISTINCT aggregate named
 * count_col) is published as it is; the others are merged, their distinct
 * sets unioned and other aggregates combined, into coarser groups along
 * the levels: level i rewrites column levels[i].col of every group still
 * unpublished, groups that become equal merge, a merged group with at
 * least k is published (or merged into an already published group of the
 * same key), and the rest go on to the next level; what remains after the
 * last level is suppressed. Every input event is thus in exactly one
 * published row or in a suppressed group, and the k test is exact.
 * Suppressed and folded groups (of the window's own) are counted
 * (sl_job_stats). The stream must be keyed (sl_stream_key_by) by the
 * dimensions never folded, so that all groups of a coarser group meet in
 * one task. */
typedef struct {
    const char *col;        /* a VARCHAR column of group_cols */
    const char *const *map; /* NULL-terminated value, coarser value pairs;
                             * unlisted values and NULL stay as they are.
                             * map NULL: every value becomes "*" */
} sl_fold_level;

typedef struct {
    int64_t k;                   /* >= 2 */
    const char *count_col;       /* the COUNT_DISTINCT aggregate's name */
    const sl_fold_level *levels; /* applied in order */
    size_t nlevels;              /* 0: suppression only */
} sl_fold_spec;

sl_stream *sl_stream_window_fold(sl_stream *s, const sl_window_spec *w,
                                 const char *const *group_cols,
                                 const sl_agg_spec *aggs, size_t naggs,
                                 const sl_fold_spec *fold);

/* Sinks. connector: "sqlite", "file" (CSV or JSON Lines), "stdout", "kafka".
 * Returns 0 or a negative SL_E*; the error is also kept in the job. */
int sl_stream_sink(sl_stream *s, const char *connector,
                   const char *const *conf);

/* A user sink: called with each batch of results in order, from one thread. */
typedef int (*sl_sink_fn)(const sl_batch *b, void *udata);
int sl_stream_sink_fn(sl_stream *s, sl_sink_fn fn, void *udata);

/* Writes the synthetic reference data set (DESIGN: events, subscribers,
 * cells) under dir: events/events-NNN.csv, subscribers.csv, cells.csv.
 * conf keys: seed, subscribers, cells, areas, events, start, span.ms,
 * out.of.order.ms, unknown.fraction, parts. Deterministic for a seed. */
int sl_gen_write(const char *dir, const char *const *conf, char *errstr,
                 size_t errstr_size);

/* The output schema of a stream (owned by the job). */
const sl_schema *sl_stream_schema(const sl_stream *s);

/* ---- SQL ---- */
/* A SQL job (docs/sql.md): CREATE SOURCE / CREATE TABLE / CREATE SINK ... AS
 * SELECT statements and SET options, compiled into a job through the same
 * builders a C user calls:
 *
 *     sl_sql *q = sl_sql_new();
 *     sl_sql_set(q, "data", "/tmp/data", err, sizeof err);  // ${data}
 *     if (sl_sql_compile(q, text, "job.sql", err, sizeof err)) ...;
 *     sl_job *job = sl_job_new(err, sizeof err);
 *     if (sl_sql_build(q, job, err, sizeof err) == 0) sl_job_run(job);
 *     sl_job_free(job);
 *     sl_sql_free(q);  // after the job: it owns the tables, keys, schemas
 *
 * Errors name "FILE:LINE:COL: ..." and, for unknown names, the nearest
 * valid one. */
typedef struct sl_sql sl_sql;

/* One value passed to or returned by a user-defined function. */
typedef struct sl_value {
    sl_type type;
    int null;    /* 1 = SQL NULL (the other fields are then unused) */
    int64_t i;   /* INT64, TIMESTAMP, BOOL (0 or 1) */
    double f;    /* FLOAT64 */
    sl_str s;    /* STRING: borrowed for the duration of the call */
} sl_value;

/* A scalar user-defined function, called once per row (possibly from
 * several threads at once). It sets out->null or the field of its declared
 * return type; a STRING result must stay valid until the function is next
 * called on the same thread (it is copied at once). Return 0, or a negative
 * SL_E* to fail the job. */
typedef int (*sl_sql_udf)(const sl_value *args, int nargs, sl_value *out,
                          void *udata);

sl_sql *sl_sql_new(void);
void sl_sql_free(sl_sql *q); /* only after every job built from q is freed */
/* Makes NAME(args...) callable from SQL (before sl_sql_compile). NULL
 * arguments are passed as such. Up to 8 arguments. */
/* Makes a->name(x) callable from SQL as an aggregate (before
 * sl_sql_compile); x must have type a->in_type (NULLs are skipped). *a is
 * borrowed: it must outlive q and every job built from it. */
int sl_sql_add_aggregate(sl_sql *q, const sl_udaf *a, char *errstr,
                         size_t errstr_size);
int sl_sql_add_function(sl_sql *q, const char *name, sl_type ret,
                        const sl_type *args, int nargs, sl_sql_udf fn,
                        void *udata, char *errstr, size_t errstr_size);
/* Sets a job key (overriding the script's SET) or a variable substituted
 * for ${key} in the script's string literals. Call before compile. */
int sl_sql_set(sl_sql *q, const char *key, const char *value, char *errstr,
               size_t errstr_size);
/* Parses and checks a script. On error returns SL_EPARSE (syntax) or
 * SL_EINVAL (meaning) and sl_sql_error_pos() gives the position. */
int sl_sql_compile(sl_sql *q, const char *text, const char *filename,
                   char *errstr, size_t errstr_size);
void sl_sql_error_pos(const sl_sql *q, int *line, int *col);
/* The plan as text (stages, keys, state, guarantees) into buf; returns the
 * length it needs (like snprintf). */
size_t sl_sql_explain(const sl_sql *q, char *buf, size_t size);
/* Loads the tables and keys and builds the compiled job into `job`. */
int sl_sql_build(sl_sql *q, sl_job *job, char *errstr, size_t errstr_size);

/* ---- privacy ---- */
/* Field encryption (AES-256-GCM). Each listed column becomes a STRING
 * "KEY_ID:BASE64(nonce || ciphertext || tag)" of its canonical text (NULL
 * stays NULL), under a subkey of the keyring's key `key_id` (NULL = the
 * current key); the column name is authenticated with it. Nonces: random
 * (a per-instance random prefix and a counter) or synthetic (derived from
 * the plaintext: deterministic output, equal plaintexts give equal
 * ciphertexts). See docs/privacy.md. */
enum { SL_NONCE_RANDOM = 0, SL_NONCE_SYNTHETIC = 1 };
sl_stream *sl_stream_encrypt(sl_stream *s, const char *const *cols,
                             const sl_keyring *keys, const char *key_id,
                             int nonce_mode);
/* Decrypts one field written by sl_stream_encrypt from column `col` into
 * out (NUL-terminated; out_size must exceed the plaintext length). Returns
 * 0, SL_ENOENT (key id not in the keyring), SL_EPARSE (not a field),
 * SL_ECORRUPT (authentication failed: wrong key or column, or tampered). */
int sl_decrypt_field(const sl_keyring *keys, const char *col, const char *text,
                     size_t len, char *out, size_t out_size, size_t *out_len,
                     char *errstr, size_t errstr_size);

/* Differential privacy for windowed counts (docs/privacy.md). Pass the same
 * spec to both operators:
 *   key_by(sub) - dp_bound(sub) - key_by(group) - window - [k_anon] - dp_noise
 * dp_bound keeps at most max_contrib events per subscriber per window and
 * the epsilon ledger per (subscriber, period): a subscriber whose period
 * budget is spent is no longer released until the period ends (counted and
 * logged). dp_noise adds noise to each count column, drawn from a keyed
 * PRF of (secret, job, window, group, column): identical on replay. The
 * mechanism is SL_DP_LAPLACE (epsilon-DP: discrete Laplace of scale
 * max_contrib * ncols / epsilon) or SL_DP_GAUSSIAN ((epsilon, delta)-DP:
 * Gaussian noise rounded to integers, sigma from the analytic Gaussian
 * mechanism for L2 sensitivity max_contrib * sqrt(ncols); smaller noise
 * than Laplace when many columns are released together). */
enum { SL_DP_LAPLACE = 0, SL_DP_GAUSSIAN = 1 };
typedef struct {
    double epsilon;       /* per release (one window), > 0 */
    int64_t max_contrib;  /* c: events per subscriber per window, >= 1 */
    double budget;        /* epsilon per subscriber per period, >= epsilon */
    int64_t window_ms;    /* the (tumbling) window size of the releases */
    int64_t period_ms;    /* ledger period, a multiple of window_ms */
    int64_t lateness_ms;  /* as the window's */
    const char *key_id;   /* dp_noise: key for the noise (NULL = current) */
    int mechanism;        /* SL_DP_LAPLACE (default) or SL_DP_GAUSSIAN */
    double delta;         /* Gaussian only: in (0, 0.01], per release */
} sl_dp_spec;
sl_stream *sl_stream_dp_bound(sl_stream *s, const char *sub_col,
                              const sl_dp_spec *dp);
sl_stream *sl_stream_dp_noise(sl_stream *s, const char *const *count_cols,
                              const sl_dp_spec *dp, const sl_keyring *keys);

/* Key rotation and processing domains (docs/privacy.md). A domain's keys
 * are those with id DOMAIN or DOMAIN:anything (NULL domain = every key);
 * a row's key is the domain's last key whose VALID_FROM <= the start of
 * the row's rotation period floor(ts / period_ms) * period_ms. Make
 * period_ms a multiple of the window size (e.g. 86400000: a key per UTC
 * day) so a window never mixes keys. Every VALID_FROM must lie on a
 * period boundary; a row older than the domain's first key is a dead
 * letter (no_key). */
typedef struct {
    int64_t period_ms;  /* > 0 */
    const char *domain; /* copied */
} sl_rotation;
sl_stream *sl_stream_pseudonymise_rotating(sl_stream *s, const char *col,
                                           const char *out_col,
                                           const sl_keyring *keys,
                                           const sl_rotation *rot);
/* A lookup table for joins under rotation: as sl_table_load with a
 * keyring, but the key column is pseudonymised under every key of the
 * domain, all into one table keyed by pseudonym, so a record pseudonymised
 * under the key of its period (sl_stream_pseudonymise_rotating with the
 * same rotation) finds its row in any period. Holds one copy of the rows
 * per key of the domain (sl_table_rows counts them all). */
sl_table *sl_table_load_rotating(const char *connector,
                                 const sl_schema *schema, const char *key_col,
                                 const char *const *conf,
                                 const sl_keyring *keys,
                                 const sl_rotation *rot, char *errstr,
                                 size_t errstr_size);
/* The keys of a keyring in file order (the last is the current one): how
 * many, and key i's VALID_FROM in epoch ms, or INT64_MIN when the key file
 * gives none. */
int sl_keyring_count(const sl_keyring *k);
int64_t sl_keyring_valid_from(const sl_keyring *k, int i);

/* Describes job configuration key i (0, 1, ... in table order) for help
 * texts and man pages: the strings are static. Returns 0, or SL_ENOENT
 * past the last key. type is "integer", "string", "boolean", "number" or
 * "enum"; allowed lists an enum's values ("a|b|c"), else NULL; min and max
 * bound integers and numbers (equal when unbounded). */
typedef struct {
    const char *key, *type, *def, *allowed, *desc;
    int64_t min, max;
} sl_conf_info;
int sl_job_conf_info(size_t i, sl_conf_info *out);

/* ---- venue reports (docs/venues.md) ---- */
/* Venues: places and times of public events, loaded from a CSV file with
 * the header name,start,end,cells[,area][,tz]: start and end ISO-8601 or
 * epoch ms (end > start; an ISO time without 'Z' is local time of `tz`, a
 * fixed offset such as +01:00, default UTC), cells a ';'-separated list of
 * cell ids or ranges LO-HI, area (optional) the area whose market share
 * scales the venue's counts. The caller owns the venues; a job borrows
 * them until sl_job_free(). */
typedef struct sl_venues sl_venues;
sl_venues *sl_venues_load(const char *path, char *errstr, size_t errstr_size);
void sl_venues_free(sl_venues *v);
size_t sl_venues_count(const sl_venues *v);
/* Reads a market-share table (CSV header area,share; 0 < share <= 1):
 * each venue's counts are extrapolated to the population as
 * subscribers / share of its area. A venue without an area, or whose area
 * is not in the table, is an error naming it. Without a table, share 1. */
int sl_venues_market_share(sl_venues *v, const char *path, char *errstr,
                           size_t errstr_size);

/* Time blurring: adds to the TIMESTAMP column time_col of every row a
 * bounded noise, uniform in [-bound_ms, +bound_ms], drawn from a keyed PRF
 * of (secret, subscriber pseudonym sub_col, floor(ts / bucket_ms)): the
 * same on replay, unpredictable without the key, and the same for all
 * events of one subscriber within a bucket (so the order of a
 * subscriber's events is mostly kept). Put it after pseudonymisation; the
 * source's watermark.delay.ms must include bound_ms (docs/venues.md). */
sl_stream *sl_stream_blur_time(sl_stream *s, const char *time_col,
                               const char *sub_col, int64_t bound_ms,
                               int64_t bucket_ms, const sl_keyring *keys);

/* The venue report: per venue, the number of distinct subscribers (INT64
 * pseudonyms) with at least one event in the venue's cells during the
 * venue's time, per age band (at the venue's start date, UTC) and, with
 * gender_col, gender. Output rows (venue, report, slice_start, slice_end,
 * age_band, gender, subscribers, extrapolated, arrivals, departures,
 * as_of, final):
 * - report 'cumulative': every emit_every_ms of event time after the
 *   start (when the watermark passes it) the counts since the start
 *   (final = false), and when the watermark passes end + lateness the
 *   final counts (final = true). Key (venue, report, slice_start,
 *   age_band, gender): write to an upserting sink so each row replaces
 *   the previous one.
 * - report 'slice': at the end, per slice of slice_ms from the start, the
 *   subscribers present, arriving (first event) and departing (last
 *   event) in it (final = true).
 * k-anonymity on the exact distinct count: no count below k is
 * published. Differencing defence: a cumulative row is published only
 * when at least k subscribers joined its group since the group's last
 * published row (so a difference of two releases always involves >= k
 * people); the final row too, else it repeats the last published count.
 * extrapolated = subscribers / market share, rounded to round_to. */
typedef struct {
    const char *sub_col;    /* INT64 pseudonym */
    const char *cell_col;   /* INT64 cell id */
    const char *birth_col;  /* TIMESTAMP birth date, NULL: every band unknown */
    const char *gender_col; /* STRING, NULL: no split by gender ("*") */
    int64_t k;              /* >= 2 */
    int64_t emit_every_ms;  /* early firings; 0 = final rows only */
    int64_t slice_ms;       /* 0 = no slices */
    int64_t lateness_ms;    /* >= 0 */
    int64_t round_to;       /* extrapolated rounded to a multiple; 0 = 1 */
} sl_venue_report_spec;
sl_stream *sl_stream_venue_report(sl_stream *s, const sl_venues *venues,
                                  const sl_venue_report_spec *spec);

/* A lookup table on the job's state backend (state.backend: memory, or
 * RocksDB under state.rocksdb.dir with state.memory.bound; set them on the
 * job first): otherwise as sl_table_load, or sl_table_load_rotating when
 * rot is not NULL. The table must be freed before the job's process ends;
 * a RocksDB table keeps no row in memory. */
sl_table *sl_job_table_load(sl_job *job, const char *connector,
                            const sl_schema *schema, const char *key_col,
                            const char *const *conf, const sl_keyring *keys,
                            const sl_rotation *rot, char *errstr,
                            size_t errstr_size);
/* Bytes a RocksDB table takes on disk (SST files); 0 for a memory table. */
uint64_t sl_table_disk_bytes(const sl_table *t);
/* ---- logging ------------------------------------------------------------- */
/* Asks the library to reopen its log file (job key `log.file`) before its
 * next line: call it from a SIGHUP handler after logrotate moved the file.
 * Async-signal-safe; a no-op when the log goes to stderr. */
void sl_log_reopen(void);

/* ---- the PostgreSQL sink task (distributed mode; docs/postgres.md) -------- */
/* Consumes a result topic (read_committed, consumer group) and writes its
 * rows to a PostgreSQL table with its input offsets in the same database
 * transaction, until *stop becomes nonzero (set it from a signal handler;
 * what was read is written first) or, with bounded=true, until every
 * partition's stored offset reaches the end found at start. kv: the task's
 * keys (bootstrap.servers, topic, schema, format, group.id, ...), the
 * postgres sink's keys (dsn, table, mode, key, ...) and properties.<name>
 * for librdkafka, NULL-terminated. Returns 0 or a negative SL_E* code with
 * the reason in errstr (bad configuration names the key). */
int sl_pg_sink_task_run(const char *const *kv, const volatile int *stop,
                        char *errstr, size_t errstr_size);
/* Writes into out the Avro schema (JSON) that format='avro' uses for rows
 * of `columns` ('name TYPE, ...'), and its CRC-64-AVRO fingerprint into
 * *fingerprint. `name`: the record's full name (NULL: sluice.Record).
 * Returns 0 or SL_EINVAL with the reason in out. */
int sl_avro_schema(const char *columns, const char *name, char *out, size_t outsz,
                   uint64_t *fingerprint);

/* ---- specialised filters -------------------------------------------------- */
/* Keeps the rows whose VARCHAR column `col` equals one of `values`
 * (NULL-terminated, at least one; `negate`: equals none of them). A NULL
 * value is never kept, as in SQL `col [NOT] IN ('a', ...)`. The same
 * result as sl_stream_filter with a function comparing the strings, without
 * a call per batch into a general evaluator: a pointer comparison for
 * values decoded into a column's domain, else a length check and memcmp.
 * `values` is copied. */
sl_stream *sl_stream_filter_in(sl_stream *s, const char *col,
                               const char *const *values, int negate);
/* Projection pushdown: declares that only the source columns `cols`
 * (NULL-terminated; the event-time column is always added) are read by
 * the job's operators and sink. The source may then deliver the others as
 * NULL without converting or copying them (the file source does so for
 * VARCHAR columns without a domain); which records are dead-lettered does
 * not change. Call after sl_job_source and before sl_job_run. Returns 0 or
 * SL_EINVAL naming an unknown column (also recorded in the job). */
int sl_job_source_columns(sl_job *job, const char *const *cols);

#ifdef __cplusplus
}
#endif
#endif
