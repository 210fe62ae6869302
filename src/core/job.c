/* job.c — jobs and the generic stream builders: job configuration, sources,
 * sinks, map, filter, project and key_by, and the sticky first error.
 * Operators with state (window, join, privacy) live in the ops layer and
 * join the graph through sl__stream_add_op(). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "graph.h"

#define OFF(f) offsetof(sl__job_conf, f)
static const sl__conf_def job_conf_defs[] = {
    {.key = "parallelism", .type = SL_CONF_INT, .def = "0", .min = 0, .max = 256,
     .offset = OFF(parallelism), .desc = "tasks per stage (0 = one per core)"},
    {.key = "workers", .type = SL_CONF_INT, .def = "0", .min = 0, .max = 256,
     .offset = OFF(workers), .desc = "worker threads (0 = one per core)"},
    {.key = "batch.size", .type = SL_CONF_INT, .def = "1024", .min = 16,
     .max = 65536, .offset = OFF(batch_size), .desc = "records per batch"},
    {.key = "exchange.capacity", .type = SL_CONF_INT, .def = "8", .min = 1,
     .max = 4096, .offset = OFF(exchange_capacity),
     .desc = "batches buffered per exchange channel before the producer blocks"},
    {.key = "key.groups", .type = SL_CONF_INT, .def = "128", .min = 1,
     .max = 32768, .offset = OFF(key_groups),
     .desc = "key groups (maximum parallelism of keyed stages)"},
    {.key = "flush.ms", .type = SL_CONF_INT, .def = "5", .min = 0, .max = 60000,
     .offset = OFF(flush_ms),
     .desc = "a partly filled batch is sent after this long"},
    {.key = "sink.flush.ms", .type = SL_CONF_INT, .def = "200", .min = 0,
     .max = 3600000, .offset = OFF(sink_flush_ms),
     .desc = "sinks commit what they hold at most this often"},
    {.key = "output.dir", .type = SL_CONF_STR, .def = "out",
     .offset = OFF(output_dir), .desc = "directory for dead letters"},
    {.key = "name", .type = SL_CONF_STR, .def = "sluice", .offset = OFF(name),
     .desc = "job name; tags the sinks' epoch markers"},
    {.key = "checkpoint.dir", .type = SL_CONF_STR, .def = "",
     .offset = OFF(checkpoint_dir),
     .desc = "directory for checkpoints (empty: no checkpoints)"},
    {.key = "checkpoint.interval.ms", .type = SL_CONF_INT, .def = "10000",
     .min = 100, .max = 86400000, .offset = OFF(checkpoint_interval_ms),
     .desc = "time between checkpoints"},
    {.key = "checkpoint.retain", .type = SL_CONF_INT, .def = "3", .min = 1,
     .max = 1000, .offset = OFF(checkpoint_retain),
     .desc = "complete checkpoints kept (savepoints are kept until deleted)"},
    {.key = "delivery", .type = SL_CONF_ENUM, .def = "exactly-once",
     .allowed = "exactly-once|at-least-once|at-most-once", .offset = OFF(delivery),
     .desc = "delivery guarantee of the sinks after a failure"},
    {.key = "from.scratch", .type = SL_CONF_BOOL, .def = "false",
     .offset = OFF(from_scratch), .desc = "ignore existing checkpoints"},
    {.key = "restore.from", .type = SL_CONF_STR, .def = "",
     .offset = OFF(restore_from),
     .desc = "start from this checkpoint or savepoint directory"},
    {.key = "canary.interval.ms", .type = SL_CONF_INT, .def = "10000", .min = 0,
     .max = 86400000, .offset = OFF(canary_interval_ms),
     .desc = "a canary record per source partition this often (0: none)"},
    {.key = "canary.timeout.ms", .type = SL_CONF_INT, .def = "60000", .min = 100,
     .max = 86400000, .offset = OFF(canary_timeout_ms),
     .desc = "a canary not seen at the sink by then is reported missing"},
    {.key = "source.rate", .type = SL_CONF_INT, .def = "0", .min = 0,
     .max = INT64_MAX, .offset = OFF(source_rate),
     .desc = "records per second per source task (0: unlimited)"},
    {.key = "metrics.address", .type = SL_CONF_STR, .def = "127.0.0.1:9464",
     .offset = OFF(metrics_address),
     .desc = "HOST:PORT serving /metrics, /status and the dashboard (port 0: any "
             "free port; \"\" or off: no server); read by the obs layer"},
    {.key = "metrics.linger.ms", .type = SL_CONF_INT, .def = "0", .min = 0,
     .max = 3600000, .offset = OFF(metrics_linger_ms),
     .desc = "after the job ends, keep serving its final metrics this long (a "
             "last scrape of a short job)"},
    {.key = "dashboard.dir", .type = SL_CONF_STR, .def = "",
     .offset = OFF(dashboard_dir),
     .desc = "directory of the dashboard's static files (empty: the copy next "
             "to the sluice binary or in share/sluice/dashboard)"},
    {.key = "metrics.token.file", .type = SL_CONF_STR, .def = "",
     .offset = OFF(metrics_token_file),
     .desc = "file holding a bearer token (16+ characters, mode 0600) that "
             "/metrics, /status and the dashboard then require (empty: none)"},
    {.key = "metrics.rate.limit", .type = SL_CONF_INT, .def = "100", .min = 0,
     .max = 1000000, .offset = OFF(metrics_rate_limit),
     .desc = "HTTP requests per second the endpoint serves; more get 429 "
             "(0: no limit)"},
    {.key = "state.backend", .type = SL_CONF_ENUM, .def = "memory",
     .allowed = "memory|rocksdb", .offset = OFF(state_backend),
     .desc = "where keyed state lives: memory, or RocksDB on local disk "
             "(lookup tables; see docs/state.md)"},
    {.key = "state.rocksdb.dir", .type = SL_CONF_STR, .def = "",
     .offset = OFF(state_rocksdb_dir),
     .desc = "RocksDB directory of the process (empty: <output.dir>/rocksdb)"},
    {.key = "state.memory.bound", .type = SL_CONF_INT, .def = "268435456",
     .min = 8 << 20, .max = INT64_MAX, .offset = OFF(state_memory_bound),
     .desc = "bytes RocksDB may use in memory: block cache plus write buffers, "
             "one total for the process"},
    {.key = "state.ttl.ms", .type = SL_CONF_INT, .def = "0", .min = 0,
     .max = INT64_MAX, .offset = OFF(state_ttl_ms),
     .desc = "window groups not updated for longer than this much event time "
             "(behind the watermark) are dropped (0: never; docs/state.md)"},
    {.key = "state.checkpoints.incremental", .type = SL_CONF_ENUM, .def = "true",
     .allowed = "false|true", .offset = OFF(state_incremental),
     .desc = "with state.backend = rocksdb, a checkpoint copies only the RocksDB "
             "files written since the previous one (shared files under "
             "<checkpoint.dir>/shared); false: full checkpoints"},
    {.key = "window.max.groups", .type = SL_CONF_INT, .def = "50000000", .min = 0,
     .max = INT64_MAX, .offset = OFF(window_max_groups),
     .desc = "(window, key) groups a window task holds open at most (0: no cap); "
             "one more stops the job with an error naming this key"},
    {.key = "deadletter.max.count", .type = SL_CONF_INT, .def = "1000000",
     .min = 0, .max = INT64_MAX, .offset = OFF(dl_max_count),
     .desc = "dead letters written to the file at most (0: no cap); beyond, "
             "deadletter.overflow decides"},
    {.key = "deadletter.max.bytes", .type = SL_CONF_INT, .def = "1073741824",
     .min = 0, .max = INT64_MAX, .offset = OFF(dl_max_bytes),
     .desc = "bytes of dead letters written at most (0: no cap)"},
    {.key = "deadletter.overflow", .type = SL_CONF_ENUM, .def = "drop",
     .allowed = "drop|fail", .offset = OFF(dl_overflow),
     .desc = "past a dead-letter cap: drop (count in "
             "sluice_dead_letters_dropped_total, log once) or fail the job"},
    {.key = "exchange.max.bytes", .type = SL_CONF_INT, .def = "0", .min = 0,
     .max = INT64_MAX, .offset = OFF(exchange_max_bytes),
     .desc = "bytes of batches (columns and string arenas) an exchange channel "
             "holds before the producer blocks, as exchange.capacity does for "
             "their number (0: exchange.capacity only; a channel always takes "
             "one batch)"},
    {.key = "log.file", .type = SL_CONF_STR, .def = "", .offset = OFF(log_file),
     .desc = "file the job's log lines are appended to (empty: stderr); SIGHUP "
             "reopens it"},
    {.key = "log.level", .type = SL_CONF_ENUM, .def = "info",
     .allowed = "error|warn|info|debug", .offset = OFF(log_level),
     .desc = "most verbose level logged"},
    {.key = "cluster.instance.id", .type = SL_CONF_STR, .def = "",
     .offset = OFF(cluster_instance_id),
     .desc = "--cluster: this instance's id, part of its transactional ids "
             "(empty: <host>-<pid>); a restarted instance given the same id "
             "fences its predecessor at once instead of after "
             "cluster.transaction.timeout.ms"},
    {.key = "cluster.session.timeout.ms", .type = SL_CONF_INT, .def = "10000",
     .min = 1000, .max = 3600000, .offset = OFF(cluster_session_timeout_ms),
     .desc = "--cluster: consumer group session timeout: how long a silent "
             "instance keeps its partitions before the group moves them"},
    {.key = "cluster.transaction.timeout.ms", .type = SL_CONF_INT, .def = "10000",
     .min = 1000, .max = 900000, .offset = OFF(cluster_txn_timeout_ms),
     .desc = "--cluster: the brokers abort an instance's epoch transaction "
             "open longer than this (a dead instance's open epoch blocks its "
             "successor until then); must exceed checkpoint.interval.ms"},
    {.key = "cluster.replication.factor", .type = SL_CONF_INT, .def = "-1",
     .min = -1, .max = 32767, .offset = OFF(cluster_replication_factor),
     .desc = "--cluster: replication factor of the repartition and changelog "
             "topics sluice creates (-1: the brokers' default)"},
    {.key = "checkpoint.async", .type = SL_CONF_BOOL, .def = "true",
     .offset = OFF(checkpoint_async),
     .desc = "window state is snapshotted asynchronously (copy-on-write): a "
             "task pauses only to note its groups at a barrier (false: it "
             "serialises them before going on; docs/checkpoints.md)"},
    {.key = "table.images", .type = SL_CONF_BOOL, .def = "true",
     .offset = OFF(table_images),
     .desc = "with checkpoint.dir set, file lookup tables kept in memory are "
             "written once as a binary image under <checkpoint.dir>/shared/tables "
             "and read back from it while the file, schema and keys are the "
             "same (docs/state.md)"},
    {0}};
#undef OFF

const sl__conf_def *sl__job_conf_defs(void) { return job_conf_defs; }

sl_job *sl_job_new(char *errstr, size_t errstr_size)
{
    sl_job *j = sl__xcalloc(1, sizeof *j);
    pthread_mutex_init(&j->lock, NULL);
    int rc = sl__conf_apply(job_conf_defs, &j->conf, NULL, "job", NULL, errstr,
                            errstr_size);
    SL_ASSERT(rc == 0);
    atomic_init(&j->watermark, SL_TS_MIN);
    return j;
}

static void node_free(struct sl_stream *n)
{
    if (n->kind == NODE_OP && n->vt && n->vt->conf_free) n->vt->conf_free(n->conf);
    sl_schema_free(n->schema);
    for (size_t i = 0; n->key && n->key[i]; i++) free(n->key[i]);
    free(n->key);
    free(n->time_col);
    free(n);
}

void sl_job_free(sl_job *j)
{
    if (!j) return;
    sl__qs_forget_job(j);
    for (int i = 0; i < j->nnodes; i++) node_free(j->nodes[i]);
    free(j->nodes);
    if (j->src_vt && j->src_vt->conf_free) j->src_vt->conf_free(j->src_conf);
    if (j->sink_vt && j->sink_vt->conf_free) j->sink_vt->conf_free(j->sink_conf);
    if (j->dlq) fclose(j->dlq);
    if (j->canary_log) fclose(j->canary_log);
    if (j->log_open) sl__log_close();
    sl__job_counters_free(j);
    free(j->src_parts);
    sl__conf_free(job_conf_defs, &j->conf);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

int sl_job_set(sl_job *j, const char *key, const char *value, char *errstr,
               size_t errstr_size)
{
    if (!j || !key || !value) return SL_EINVAL;
    if (j->ran) return sl__err(errstr, errstr_size, SL_ESTATE, "job: already run");
    const char *kv[] = {key, value, NULL};
    /* apply onto a copy so a bad value leaves the job unchanged */
    sl__job_conf tmp;
    int rc = sl__conf_apply(job_conf_defs, &tmp, kv, "job", NULL, errstr,
                            errstr_size);
    if (rc) {
        sl__conf_free(job_conf_defs, &tmp);
        return rc;
    }
    /* copy over the one key that changed */
    for (const sl__conf_def *d = job_conf_defs; d->key; d++) {
        if (strcmp(d->key, key) != 0) continue;
        if (d->type == SL_CONF_STR) {
            char **dst = (char **)((char *)&j->conf + d->offset);
            char **src = (char **)((char *)&tmp + d->offset);
            free(*dst);
            *dst = *src;
            *src = NULL;
        } else {
            size_t n = d->type == SL_CONF_BOOL ? sizeof(bool)
                       : d->type == SL_CONF_ENUM ? sizeof(int) : 8;
            memcpy((char *)&j->conf + d->offset, (char *)&tmp + d->offset, n);
        }
    }
    sl__conf_free(job_conf_defs, &tmp);
    /* the log follows its keys at once, so what the job's set-up logs
     * (lookup tables loading, key files) lands there too */
    if (strncmp(key, "log.", 4) == 0) {
        rc = sl__log_open(j->conf.log_file, (int)j->conf.log_level, errstr,
                          errstr_size);
        if (rc) return rc;
        j->log_open = true;
    }
    return 0;
}

const char *sl_job_error(const sl_job *j) { return j && j->errcode ? j->err : NULL; }

int sl__job_fail(sl_job *j, int code, const char *fmt, ...)
{
    if (!j) return code;
    pthread_mutex_lock(&j->lock);
    if (!j->errcode) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(j->err, sizeof j->err, fmt, ap);
        va_end(ap);
        j->errcode = code;
    }
    pthread_mutex_unlock(&j->lock);
    atomic_store(&j->cancel, 1);
    return code;
}

void sl_job_cancel(sl_job *j)
{
    if (j) atomic_store(&j->cancel, 1);
}

sl_job *sl__stream_job(const sl_stream *s) { return s ? s->job : NULL; }
sl__canaries *sl__job_canaries(sl_job *j) { return &j->canaries; }
const char *const *sl__stream_key(const sl_stream *s)
{
    return s ? (const char *const *)s->key : NULL;
}
const char *sl__stream_time_col(const sl_stream *s) { return s ? s->time_col : NULL; }

void *sl__stream_op_conf(const sl_stream *s, const sl__op_vt *vt)
{
    return s && s->kind == NODE_OP && s->vt == vt ? s->conf : NULL;
}

void sl__stream_set_time_col(sl_stream *s, const char *col)
{
    if (!s) return;
    free(s->time_col);
    s->time_col = col ? sl__xstrdup(col) : NULL;
}
const sl_schema *sl_stream_schema(const sl_stream *s) { return s ? s->schema : NULL; }

uint32_t sl__job_batch_cap(const sl_job *j) { return (uint32_t)j->conf.batch_size; }

static char **strv_dup(const char *const *v)
{
    if (!v) return NULL;
    size_t n = 0;
    while (v[n]) n++;
    char **d = sl__xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) d[i] = sl__xstrdup(v[i]);
    return d;
}

static struct sl_stream *node_new(sl_job *j, sl__node_kind kind,
                                  struct sl_stream *parent, const sl_schema *out)
{
    struct sl_stream *n = sl__xcalloc(1, sizeof *n);
    n->job = j;
    n->kind = kind;
    n->parent = parent;
    n->schema = sl__schema_copy(out);
    n->id = j->nnodes;
    if (parent) {
        parent->child = n;
        /* the key and the time column survive while their columns do */
        bool keep_key = parent->key != NULL;
        for (size_t i = 0; keep_key && parent->key[i]; i++)
            keep_key = sl_schema_find(out, parent->key[i]) >= 0;
        if (keep_key) n->key = strv_dup((const char *const *)parent->key);
        if (parent->time_col && sl_schema_find(out, parent->time_col) >= 0)
            n->time_col = sl__xstrdup(parent->time_col);
    }
    j->nodes = sl__xrealloc(j->nodes, sizeof(*j->nodes) * (size_t)(j->nnodes + 1));
    j->nodes[j->nnodes++] = n;
    return n;
}

static bool check_tail(sl_stream *s, const char *what)
{
    if (!s) return false;
    if (s->job->errcode) return false;
    if (s->child || s->job->sink_at == s) {
        sl__job_fail(s->job, SL_EINVAL,
                     "%s: the stream already has a consumer (jobs are linear "
                     "pipelines)", what);
        return false;
    }
    return true;
}

sl_stream *sl__stream_add_op(sl_stream *s, const sl__op_vt *vt, void *conf,
                             const sl_schema *out)
{
    if (!check_tail(s, vt->name)) {
        if (vt->conf_free) vt->conf_free(conf);
        return NULL;
    }
    struct sl_stream *n = node_new(s->job, NODE_OP, s, out);
    n->vt = vt;
    n->conf = conf;
    return n;
}

static const char *const source_generic_keys[] = {
    "time.column", "watermark.delay.ms", "idle.timeout.ms", NULL};

sl_stream *sl__job_add_source(sl_job *j, const sl__source_vt *vt,
                              const sl_schema *schema, const char *const *kv)
{
    if (!j || j->errcode) return NULL;
    if (j->src_vt) {
        sl__job_fail(j, SL_EINVAL, "source: a job has one source");
        return NULL;
    }
    if (!schema || schema->n == 0) {
        sl__job_fail(j, SL_EINVAL, "source %s: empty schema", vt->name);
        return NULL;
    }
    const char *tc = sl__kv_get(kv, "time.column");
    if (!tc && sl_schema_find(schema, "ts") >= 0) tc = "ts";
    if (tc) {
        int c = sl_schema_find(schema, tc);
        if (c < 0 || (schema->cols[c].type != SL_TIMESTAMP &&
                      schema->cols[c].type != SL_INT64)) {
            sl__job_fail(j, SL_EINVAL,
                         "source %s: 'time.column' must name a TIMESTAMP or "
                         "BIGINT column of the schema, got '%s'", vt->name, tc);
            return NULL;
        }
    }
    int64_t delay = 0, idle = 0;
    const char *v;
    if ((v = sl__kv_get(kv, "watermark.delay.ms")) &&
        (sl__parse_i64(v, &delay) || delay < 0)) {
        sl__job_fail(j, SL_EINVAL, "source %s: 'watermark.delay.ms' must be an "
                     "integer >= 0, got '%s'", vt->name, v);
        return NULL;
    }
    if ((v = sl__kv_get(kv, "idle.timeout.ms")) &&
        (sl__parse_i64(v, &idle) || idle < 0)) {
        sl__job_fail(j, SL_EINVAL, "source %s: 'idle.timeout.ms' must be an "
                     "integer >= 0 (0 = never idle), got '%s'", vt->name, v);
        return NULL;
    }
    /* the connector sees only its own keys */
    size_t n = 0;
    while (kv && kv[n]) n += 2;
    const char **own = sl__xcalloc(n + 1, sizeof(char *));
    size_t m = 0;
    for (size_t i = 0; i < n; i += 2) {
        bool generic = false;
        for (size_t g = 0; source_generic_keys[g]; g++)
            generic |= strcmp(kv[i], source_generic_keys[g]) == 0;
        if (!generic) {
            own[m++] = kv[i];
            own[m++] = kv[i + 1];
        }
    }
    char err[512] = "";
    void *conf = NULL;
    int rc = vt->configure(&conf, own, schema, err, sizeof err);
    free(own);
    if (rc) {
        sl__job_fail(j, rc, "%s", err[0] ? err : sl_strerror(rc));
        return NULL;
    }
    struct sl_stream *s = node_new(j, NODE_SOURCE, NULL, schema);
    if (tc) s->time_col = sl__xstrdup(tc);
    j->src_vt = vt;
    j->src_conf = conf;
    j->src_schema = s->schema;
    j->wm_delay_ms = delay;
    j->idle_timeout_ms = idle;
    return s;
}

sl_stream *sl_job_source(sl_job *j, const char *connector,
                         const sl_schema *schema, const char *const *conf)
{
    if (!j || j->errcode) return NULL;
    const sl__source_vt *vt = connector ? sl__source_find(connector) : NULL;
    if (!vt) {
        sl__job_fail(j, SL_EINVAL, "source: unknown connector '%s' (known: file, "
                     "generator)", connector ? connector : "(null)");
        return NULL;
    }
    return sl__job_add_source(j, vt, schema, conf);
}

int sl__stream_add_sink(sl_stream *s, const sl__sink_vt *vt,
                        const char *const *kv)
{
    if (!check_tail(s, vt->name)) return s ? s->job->errcode ? s->job->errcode : SL_EINVAL : SL_EINVAL;
    sl_job *j = s->job;
    if (j->sink_vt)
        return sl__job_fail(j, SL_EINVAL, "sink: a job has one sink");
    char err[512] = "";
    void *conf = NULL;
    int rc = vt->configure(&conf, kv, s->schema, err, sizeof err);
    if (rc) return sl__job_fail(j, rc, "%s", err[0] ? err : sl_strerror(rc));
    j->sink_vt = vt;
    j->sink_conf = conf;
    j->sink_at = s;
    return 0;
}

void sl__job_set_sink_conf(sl_job *j, void *conf)
{
    if (j->sink_vt && j->sink_vt->conf_free) j->sink_vt->conf_free(j->sink_conf);
    j->sink_conf = conf;
}

int sl_stream_sink(sl_stream *s, const char *connector, const char *const *conf)
{
    if (!s) return SL_EINVAL;
    if (s->job->errcode) return s->job->errcode;
    const sl__sink_vt *vt = connector ? sl__sink_find(connector) : NULL;
    if (!vt)
        return sl__job_fail(s->job, SL_EINVAL, "sink: unknown connector '%s' "
                            "(known: sqlite, file, stdout)",
                            connector ? connector : "(null)");
    return sl__stream_add_sink(s, vt, conf);
}

/* ---- key_by -------------------------------------------------------------- */
sl_stream *sl_stream_key_by(sl_stream *s, const char *const *cols)
{
    if (!check_tail(s, "key_by")) return NULL;
    if (!cols || !cols[0]) {
        sl__job_fail(s->job, SL_EINVAL, "key_by: no key columns given");
        return NULL;
    }
    for (size_t i = 0; cols[i]; i++) {
        int c = sl_schema_find(s->schema, cols[i]);
        if (c < 0) {
            sl__job_fail(s->job, SL_EINVAL, "key_by: no column '%s' in the stream",
                         cols[i]);
            return NULL;
        }
        if (s->schema->cols[c].type == SL_FLOAT64) {
            sl__job_fail(s->job, SL_EINVAL, "key_by: column '%s' is DOUBLE; keys "
                         "must be BIGINT, TIMESTAMP, BOOLEAN or VARCHAR", cols[i]);
            return NULL;
        }
    }
    struct sl_stream *n = node_new(s->job, NODE_KEYBY, s, s->schema);
    for (size_t i = 0; n->key && n->key[i]; i++) free(n->key[i]);
    free(n->key);
    n->key = strv_dup(cols);
    return n;
}

void sl__job_state_conf(const sl_job *j, sl__state_conf *out)
{
    const char *dir = j->conf.state_rocksdb_dir;
    out->backend = j->conf.state_backend;
    out->memory_bound = j->conf.state_memory_bound;
    out->ttl_ms = j->conf.state_ttl_ms;
    /* an instance per window task only when there are checkpoints to
     * take incrementally (docs/state.md) */
    out->incremental = j->conf.state_incremental == 1 && j->conf.checkpoint_dir &&
                       *j->conf.checkpoint_dir;
    if (dir && *dir)
        snprintf(out->dir, sizeof out->dir, "%s", dir);
    else
        snprintf(out->dir, sizeof out->dir, "%s/rocksdb",
                 j->conf.output_dir && *j->conf.output_dir ? j->conf.output_dir
                                                           : ".");
    out->table_image_dir[0] = 0;
    if (j->conf.table_images && j->conf.checkpoint_dir && *j->conf.checkpoint_dir)
        snprintf(out->table_image_dir, sizeof out->table_image_dir,
                 "%s/shared/tables", j->conf.checkpoint_dir);
}
