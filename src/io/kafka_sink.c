/* kafka_sink.c — the "kafka" sink: writes result rows as CSV or JSON Lines
 * messages to a Kafka topic through librdkafka.
 *
 * At-least-once (and at-most-once): an idempotent producer sends rows as
 * they come; flush waits until the brokers acknowledged every one.
 *
 * Exactly-once: a transactional producer whose transactional.id is stable
 * per (job, topic, task), so a restarted task fences its zombie
 * (init_transactions bumps the producer epoch). The sink stages each
 * epoch's encoded rows and keeps the staged epochs in the checkpoint; when
 * checkpoint n completes, commit(n) opens ONE Kafka transaction holding the
 * rows of every staged epoch <= n plus a marker — the offset `n` committed,
 * in the same transaction, for the consumer group named after the
 * transactional.id — and commits it. Readers with
 * isolation.level=read_committed see each row once.
 * Why stage instead of producing into a transaction as rows come (Flink's
 * KafkaSink): after a crash between checkpoint n and its commit, Flink
 * resumes the pre-committed transaction with the Java client's internal
 * producer id and epoch; librdkafka has no such call, and
 * init_transactions aborts it. So the rows must be reproducible, and the
 * checkpoint is where they are (a write-ahead sink).
 *
 * Invariants:
 * 1. Rows written since the last precommit are in `cur`; precommit(n) moves
 *    them to the staged list as epoch n (sk_precommit). Staged epochs are
 *    in increasing order and are snapshot whole (sk_snapshot).
 * 2. Epoch e's rows become visible only in the transaction that also
 *    commits marker >= e (publish); a transaction that fails is aborted and
 *    rebuilt whole from the staged rows, so a retry never half-publishes.
 * 3. recover(n) reads the marker m after init_transactions (which completes
 *    or aborts whatever a previous incarnation left open, so m is stable),
 *    drops staged epochs <= m (already visible) and > n (not covered by the
 *    restored checkpoint), and publishes the rest with marker n
 *    (sk_recover). recover(0) drops everything and resets the marker to 0.
 * 4. Canary rows never go to the result topic: to canary.topic when set,
 *    otherwise nowhere (sk_write). */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "io/avrofmt.h"
#include "io/encode.h"
#include "io/kafka.h"

enum { FMT_CSV = 0, FMT_JSONL = 1, FMT_AVRO = 2 };

typedef struct {
    char *bootstrap;
    char *topic;
    int format;
    char *delimiter;
    char *key_column;
    char *canary_topic;
    char *txn_prefix;
    int partitioner;
    int64_t txn_timeout_ms;
    int64_t per_message;
    int64_t buffer_max;
    int64_t commit_timeout_ms;
    char *avro_name;
    /* derived */
    char **props;
    char delim;
    int key_ci;
} sk_conf;

const sl__conf_def sl__kafka_sink_conf[] = {
    {.key = "bootstrap.servers", .type = SL_CONF_STR, .def = NULL, .min = 1,
     .offset = offsetof(sk_conf, bootstrap),
     .desc = "Kafka brokers to contact first, host:port[,host:port...]."},
    {.key = "topic", .type = SL_CONF_STR, .def = NULL, .min = 1,
     .offset = offsetof(sk_conf, topic), .desc = "Topic the results go to."},
    {.key = "format", .type = SL_CONF_ENUM, .def = "jsonl", .allowed = "csv|jsonl|avro",
     .offset = offsetof(sk_conf, format),
     .desc = "Message format: JSON Lines (one object per row), CSV without "
             "header, columns in result order, or Avro (one datum per message, "
             "single-object encoding; `sluice avro-schema` prints the schema)."},
    {.key = "avro.name", .type = SL_CONF_STR, .def = SL__AVRO_DEFAULT_NAME,
     .offset = offsetof(sk_conf, avro_name),
     .desc = "format avro: full name of the record schema (part of its "
             "fingerprint)."},
    {.key = "delimiter", .type = SL_CONF_STR, .def = ",",
     .offset = offsetof(sk_conf, delimiter),
     .desc = "CSV field delimiter: one character, or \\t / tab."},
    {.key = "key.column", .type = SL_CONF_STR, .def = NULL,
     .offset = offsetof(sk_conf, key_column),
     .desc = "Column whose value (as text) is the message key; rows with "
             "the same key go to the same partition. Default: no key."},
    {.key = "records.per.message", .type = SL_CONF_INT, .def = "1", .min = 1,
     .max = 1000000, .offset = offsetof(sk_conf, per_message),
     .desc = "Rows batched into one message, one per line (not with "
             "key.column)."},
    {.key = "partitioner", .type = SL_CONF_ENUM, .def = "default",
     .allowed = "default|fixed", .offset = offsetof(sk_conf, partitioner),
     .desc = "default: librdkafka's (by key; keyless messages spread at "
             "random); fixed: sink task i writes to partition i % partitions, "
             "keeping each task's order (Flink's FlinkFixedPartitioner)."},
    {.key = "canary.topic", .type = SL_CONF_STR, .def = NULL,
     .offset = offsetof(sk_conf, canary_topic),
     .desc = "Topic canary records are written to (in the same transaction); "
             "unset: canaries are not written. Never the result topic."},
    {.key = "transactional.id.prefix", .type = SL_CONF_STR, .def = NULL,
     .offset = offsetof(sk_conf, txn_prefix),
     .desc = "Exactly-once: transactional ids are <prefix>-<task>. Default "
             "sluice-<job name>-<topic>. Must be unique per job and sink and "
             "stable across restarts (it is how a restarted task fences the "
             "old one)."},
    {.key = "transaction.timeout.ms", .type = SL_CONF_INT, .def = "60000",
     .min = 1000, .max = 900000, .offset = offsetof(sk_conf, txn_timeout_ms),
     .desc = "Exactly-once: the broker aborts a transaction open longer than "
             "this (at most the broker's transaction.max.timeout.ms)."},
    {.key = "commit.timeout.ms", .type = SL_CONF_INT, .def = "600000",
     .min = 1000, .max = 86400000, .offset = offsetof(sk_conf, commit_timeout_ms),
     .desc = "How long a commit or flush keeps retrying while the brokers "
             "are unreachable (the job waits meanwhile) before the job fails."},
    {.key = "buffer.max.bytes", .type = SL_CONF_INT, .def = "268435456",
     .min = 4096, .max = (int64_t)1 << 40, .offset = offsetof(sk_conf, buffer_max),
     .desc = "Exactly-once: staged bytes (rows of epochs not yet committed) "
             "allowed; more is an error telling to checkpoint more often or "
             "use at-least-once."},
    {.key = NULL},
};

static void sk_conf_free(void *cv)
{
    sk_conf *c = cv;
    if (!c) return;
    sl__kafka_kv_free(c->props);
    sl__conf_free(sl__kafka_sink_conf, c);
    free(c);
}

static int sk_configure(void **out, const char *const *kv, const sl_schema *in, char *err,
                        size_t esz)
{
    char **own, **props;
    sl__kafka_split(kv, &own, &props);
    sk_conf *c = sl__xcalloc(1, sizeof *c);
    c->props = props;
    c->key_ci = -1;
    int rc = sl__conf_apply(sl__kafka_sink_conf, c, (const char *const *)own, "kafka sink",
                            NULL, err, esz);
    sl__kafka_kv_free(own);
    const char *d = c->delimiter;
    if (rc) {
    } else if (strcmp(d, "\\t") == 0 || strcmp(d, "tab") == 0) {
        c->delim = '\t';
    } else if (strlen(d) == 1 && d[0] != '"' && d[0] != '\n' && d[0] != '\r') {
        c->delim = d[0];
    } else {
        rc = sl__err(err, esz, SL_EINVAL, "kafka sink: delimiter '%s' must be one "
                     "character other than a quote or newline (or \\t)", d);
    }
    if (!rc && c->key_column) {
        for (int i = 0; i < in->n; i++)
            if (strcmp(in->cols[i].name, c->key_column) == 0) c->key_ci = i;
        if (c->key_ci < 0)
            rc = sl__err(err, esz, SL_EINVAL, "kafka sink: key.column '%s' is not a column "
                         "of the result", c->key_column);
        else if (c->per_message > 1)
            rc = sl__err(err, esz, SL_EINVAL, "kafka sink: records.per.message must be 1 "
                         "with key.column (a message has one key)");
    }
    if (!rc && c->format == FMT_AVRO && c->per_message > 1)
        rc = sl__err(err, esz, SL_EINVAL, "kafka sink: records.per.message must be 1 "
                     "with format avro (one datum per message)");
    if (!rc && c->format == FMT_AVRO) { /* names Avro refuses: an error now */
        sl__avro *a = NULL;
        rc = sl__avro_new(&a, in, c->avro_name, "kafka sink", err, esz);
        sl__avro_free(a);
    }
    if (!rc && c->canary_topic && strcmp(c->canary_topic, c->topic) == 0)
        rc = sl__err(err, esz, SL_EINVAL, "kafka sink: canary.topic must differ from topic "
                     "(canaries never go among results)");
    if (!rc) { /* validates properties.* now, not when the job starts */
        rd_kafka_conf_t *kc;
        rc = sl__kafka_conf(&kc, "kafka sink", c->bootstrap, NULL,
                            (const char *const *)c->props, NULL, err, esz);
        if (!rc) rd_kafka_conf_destroy(kc);
    }
    if (rc) {
        sk_conf_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* ---- an instance -------------------------------------------------------- */
/* Staged rows: a sequence of records [u8 canary][u32 klen][key][u32 vlen][v]. */
typedef struct {
    uint64_t epoch;
    sl__buf rows;
} staged;

typedef struct {
    const sk_conf *c;
    const sl_schema *schema;
    sl__ctx *ctx;
    bool eo;
    rd_kafka_t *rk;
    char txn_id[512];
    sl__buf cur;      /* invariant 1 */
    staged *st;
    int nst, capst;
    size_t staged_bytes;
    sl__buf msg;      /* at-least-once: message being batched */
    int64_t msg_rows;
    char *enc;
    size_t enc_cap;
    sl__avro *avro; /* format avro */
    _Atomic uint64_t failed_deliveries;
    char last_dr_err[256];
    bool fatal;
    int32_t partition; /* partitioner=fixed: this task's partition */
    bool borrowed;     /* rk is the cluster runtime's (sl__kafka_sink_open_txn) */
} sk_sink;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    sk_sink *s = opaque;
    if (m->err) {
        if (atomic_fetch_add(&s->failed_deliveries, 1) == 0)
            snprintf(s->last_dr_err, sizeof s->last_dr_err, "%s", rd_kafka_err2str(m->err));
    }
}

static void sleep_ms(long ms)
{
    struct timespec d = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sk_close(void *st)
{
    sk_sink *s = st;
    if (!s) return;
    if (s->rk && !s->borrowed) {
        if (!s->eo && !s->fatal) rd_kafka_flush(s->rk, 10000);
        rd_kafka_destroy(s->rk);
    }
    sl__buf_free(&s->cur);
    sl__buf_free(&s->msg);
    for (int i = 0; i < s->nst; i++) sl__buf_free(&s->st[i].rows);
    free(s->st);
    free(s->enc);
    sl__avro_free(s->avro);
    free(s);
}

static int ensure_topic(sk_sink *s, const char *topic, int *nparts, char *err, size_t esz);

/* The part of opening both kinds of sink share once s->rk exists: the
 * result (and canary) topics checked or created, and the partition this
 * task writes to. Closes s on failure. */
static int sk_attach(sk_sink *s, void **out, char *err, size_t esz)
{
    const sk_conf *c = s->c;
    int np = 1, rc;
    if ((rc = ensure_topic(s, c->topic, &np, err, esz)) ||
        (c->canary_topic && (rc = ensure_topic(s, c->canary_topic, NULL, err, esz)))) {
        sk_close(s);
        return rc;
    }
    s->partition = c->partitioner == 1 ? (int32_t)((s->ctx ? s->ctx->task : 0) % np)
                                       : RD_KAFKA_PARTITION_UA;
    *out = s;
    return 0;
}

static int sk_open(void **out, const void *cv, const sl_schema *in, sl__ctx *ctx, char *err,
                   size_t esz)
{
    const sk_conf *c = cv;
    sk_sink *s = sl__xcalloc(1, sizeof *s);
    s->c = c;
    s->schema = in;
    s->ctx = ctx;
    s->eo = ctx && ctx->delivery == SL__EXACTLY_ONCE;
    if (c->format == FMT_AVRO) {
        int rc = sl__avro_new(&s->avro, in, c->avro_name, "kafka sink", err, esz);
        if (rc) {
            free(s);
            return rc;
        }
    }
    char tmo[32];
    snprintf(tmo, sizeof tmo, "%" PRId64, c->txn_timeout_ms);
    if (c->txn_prefix)
        snprintf(s->txn_id, sizeof s->txn_id, "%s-%d", c->txn_prefix, ctx ? ctx->task : 0);
    else
        snprintf(s->txn_id, sizeof s->txn_id, "sluice-%s-%s-%d",
                 ctx && ctx->job_name ? ctx->job_name : "job", c->topic, ctx ? ctx->task : 0);
    static const char *const reserved[] = {"transactional.id", "enable.idempotence",
                                           "transaction.timeout.ms", NULL};
    const char *eo_fixed[] = {"transactional.id", s->txn_id, "enable.idempotence", "true",
                              "transaction.timeout.ms", tmo, "client.id", "sluice-sink",
                              NULL};
    const char *alo_fixed[] = {"enable.idempotence", "true", "client.id", "sluice-sink",
                               NULL};
    rd_kafka_conf_t *kc;
    int rc = sl__kafka_conf(&kc, "kafka sink", c->bootstrap, s->eo ? eo_fixed : alo_fixed,
                            (const char *const *)c->props, reserved, err, esz);
    if (rc) {
        sk_close(s);
        return rc;
    }
    rd_kafka_conf_set_dr_msg_cb(kc, dr_cb);
    if ((rc = sl__kafka_new(&s->rk, RD_KAFKA_PRODUCER, kc, s, "kafka sink", err, esz))) {
        sk_close(s);
        return rc;
    }
    return sk_attach(s, out, err, esz);
}

int sl__kafka_sink_open_txn(void **out, const void *cv, const sl_schema *in, sl__ctx *ctx,
                            rd_kafka_t *rk, char *err, size_t esz)
{
    const sk_conf *c = cv;
    sk_sink *s = sl__xcalloc(1, sizeof *s);
    s->c = c;
    s->schema = in;
    s->ctx = ctx;
    s->rk = rk;
    s->borrowed = true;
    return sk_attach(s, out, err, esz);
}

/* Waits until `topic` exists (a producer's metadata request creates it
 * where the brokers allow auto-creation): the commit marker lives on its
 * partition 0. A missing topic is an error naming it. */
static int ensure_topic(sk_sink *s, const char *topic, int *nparts, char *err, size_t esz)
{
    int64_t t0 = now_ms();
    rd_kafka_topic_t *t = rd_kafka_topic_new(s->rk, topic, NULL);
    rd_kafka_resp_err_t e;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        e = rd_kafka_metadata(s->rk, 0, t, &md, 5000);
        if (!e) {
            e = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
            if (!e && md->topics[0].partition_cnt < 1) e = RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
            if (!e && nparts) *nparts = md->topics[0].partition_cnt;
            rd_kafka_metadata_destroy(md);
        }
        if (!e) break;
        int64_t waited = now_ms() - t0;
        if ((e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART && waited > 10000) ||
            waited > s->c->commit_timeout_ms) {
            rd_kafka_topic_destroy(t);
            return sl__err(err, esz, SL_ENOENT, "kafka sink: topic '%s' on %s: %s (create it, "
                           "or let the brokers auto-create topics)", topic, s->c->bootstrap,
                           rd_kafka_err2str(e));
        }
        sl__log(SL__LOG_WARN, "kafka-sink", "waiting for topic",
                "topic=%s bootstrap=%s reason=\"%s\"", topic, s->c->bootstrap,
                rd_kafka_err2str(e));
        sleep_ms(500);
    }
    rd_kafka_topic_destroy(t);
    return 0;
}

/* ---- producing ---------------------------------------------------------- */
/* Sends one message, waiting while librdkafka's queue is full (back
 * pressure). */
static int produce(sk_sink *s, const char *topic, const void *key, size_t klen,
                   const void *val, size_t vlen, char *err, size_t esz)
{
    int64_t t0 = now_ms();
    int32_t part = strcmp(topic, s->c->topic) == 0 ? s->partition : RD_KAFKA_PARTITION_UA;
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            s->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_PARTITION(part),
            RD_KAFKA_V_KEY((void *)key, klen), RD_KAFKA_V_VALUE((void *)val, vlen),
            RD_KAFKA_V_END);
        if (!e) return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return sl__kafka_err(err, esz, "kafka sink", "produce", e);
        if (now_ms() - t0 > s->c->commit_timeout_ms)
            return sl__kafka_err(err, esz, "kafka sink", "produce (queue full for "
                                 "commit.timeout.ms)", e);
        rd_kafka_poll(s->rk, 100);
    }
}

/* Encodes row r without its trailing newline into s->enc; returns length. */
static size_t encode(sk_sink *s, const sl_batch *b, uint32_t r)
{
    while (s->avro) { /* binary: no newline to drop */
        size_t need = sl__avro_encode(s->avro, b, r, s->enc, s->enc_cap);
        if (need <= s->enc_cap) return need;
        s->enc_cap = need * 2;
        s->enc = sl__xrealloc(s->enc, s->enc_cap);
    }
    for (;;) {
        size_t need = s->c->format == FMT_CSV
                          ? sl__encode_csv_row(b, r, s->c->delim, s->enc, s->enc_cap)
                          : sl__encode_jsonl_row(b, r, s->enc, s->enc_cap);
        if (need <= s->enc_cap) return need && s->enc[need - 1] == '\n' ? need - 1 : need;
        s->enc_cap = need * 2;
        s->enc = sl__xrealloc(s->enc, s->enc_cap);
    }
}

static size_t key_of(sk_sink *s, const sl_batch *b, uint32_t r, char *k, size_t cap)
{
    if (s->c->key_ci < 0 || !b->cols[s->c->key_ci].valid[r]) return 0;
    size_t n = sl__encode_text_cell(b, r, s->c->key_ci, k, cap);
    return n <= cap ? n : cap;
}

static void stage_rec(sl__buf *to, bool canary, const char *k, size_t kn, const char *v,
                      size_t vn)
{
    unsigned char c = canary;
    sl__buf_put(to, &c, 1);
    sl__buf_put_u32(to, (uint32_t)kn);
    sl__buf_put(to, k, kn);
    sl__buf_put_u32(to, (uint32_t)vn);
    sl__buf_put(to, v, vn);
}

/* Sends (or stages) the message being batched. */
static int emit_msg(sk_sink *s, char *err, size_t esz)
{
    int rc = 0;
    if (s->eo)
        stage_rec(&s->cur, false, NULL, 0, (const char *)s->msg.p, s->msg.len);
    else
        rc = produce(s, s->c->topic, NULL, 0, s->msg.p, s->msg.len, err, esz);
    s->msg.len = 0;
    s->msg_rows = 0;
    return rc;
}

/* Appends a row to the message being batched (records.per.message > 1). */
static int batch_row(sk_sink *s, const char *v, size_t vn, char *err, size_t esz)
{
    if (s->msg_rows) sl__buf_put(&s->msg, "\n", 1);
    sl__buf_put(&s->msg, v, vn);
    return ++s->msg_rows < s->c->per_message ? 0 : emit_msg(s, err, esz);
}

static int end_batch(sk_sink *s, char *err, size_t esz)
{
    return s->msg_rows ? emit_msg(s, err, esz) : 0;
}

static int sk_write(void *st, const sl_batch *b, char *err, size_t esz)
{
    sk_sink *s = st;
    if (s->fatal) return sl__err(err, esz, SL_ESTATE, "kafka sink: stopped after an error");
    SL_ASSERT(b->schema->n == s->schema->n);
    char key[512];
    for (uint32_t r = 0; r < b->n; r++) {
        bool canary = b->kind[r] != SL_KIND_DATA;
        if (canary && !s->c->canary_topic) continue; /* invariant 4 */
        size_t vn = encode(s, b, r);
        size_t kn = canary ? 0 : key_of(s, b, r, key, sizeof key);
        int rc = 0;
        if (!canary && s->c->per_message > 1) {
            rc = batch_row(s, s->enc, vn, err, esz);
        } else if (s->eo) {
            stage_rec(&s->cur, canary, key, kn, s->enc, vn);
        } else {
            rc = produce(s, canary ? s->c->canary_topic : s->c->topic, kn ? key : NULL, kn,
                         s->enc, vn, err, esz);
        }
        if (rc) return rc;
        if (s->eo && s->staged_bytes + s->cur.len > (size_t)s->c->buffer_max)
            return sl__err(err, esz, SL_ENOMEM, "kafka sink: buffer.max.bytes (%" PRId64
                           ") exceeded by rows of epochs not yet committed; checkpoint more "
                           "often, raise buffer.max.bytes or use delivery=at-least-once",
                           s->c->buffer_max);
    }
    if (!s->eo) rd_kafka_poll(s->rk, 0);
    return 0;
}

/* Waits until every message sent is acknowledged, for commit.timeout.ms. */
static int sk_flush(void *st, char *err, size_t esz)
{
    sk_sink *s = st;
    if (s->eo) return 0; /* only commit publishes */
    int rc = end_batch(s, err, esz);
    if (rc || s->borrowed) return rc; /* cluster: the runtime's commit flushes */
    int64_t t0 = now_ms(), logged = t0;
    while (rd_kafka_outq_len(s->rk) > 0) {
        rd_kafka_flush(s->rk, 1000);
        int64_t now = now_ms();
        if (rd_kafka_outq_len(s->rk) > 0 && now - logged >= 10000) {
            logged = now;
            sl__log(SL__LOG_WARN, "kafka-sink", "messages not yet acknowledged "
                    "(brokers unreachable?); retrying", "topic=%s pending=%d waited_s=%" PRId64,
                    s->c->topic, rd_kafka_outq_len(s->rk), (now - t0) / 1000);
        }
        if (now - t0 > s->c->commit_timeout_ms)
            return sl__err(err, esz, SL_EIO, "kafka sink: %d messages not acknowledged "
                           "within commit.timeout.ms", rd_kafka_outq_len(s->rk));
    }
    if (atomic_load(&s->failed_deliveries))
        return sl__err(err, esz, SL_EIO, "kafka sink: %" PRIu64 " messages could not be "
                       "delivered: %s", (uint64_t)atomic_load(&s->failed_deliveries),
                       s->last_dr_err);
    return 0;
}

/* ---- exactly-once -------------------------------------------------------- */
static int marker_consumer(sk_sink *s, rd_kafka_t **out, char *err, size_t esz)
{
    const char *fixed[] = {"group.id", s->txn_id, "enable.auto.commit", "false",
                           "isolation.level", "read_committed", NULL};
    rd_kafka_conf_t *kc;
    int rc = sl__kafka_conf(&kc, "kafka sink", s->c->bootstrap, fixed, NULL, NULL, err, esz);
    if (rc) return rc;
    return sl__kafka_new(out, RD_KAFKA_CONSUMER, kc, NULL, "kafka sink", err, esz);
}

/* The last epoch committed under this transactional.id (invariant 3). */
static int read_marker(sk_sink *s, uint64_t *m, char *err, size_t esz)
{
    rd_kafka_t *c;
    int rc = marker_consumer(s, &c, err, esz);
    if (rc) return rc;
    int64_t t0 = now_ms();
    for (;;) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(l, s->c->topic, 0);
        rd_kafka_resp_err_t e = rd_kafka_committed(c, l, 10000);
        if (!e) e = tp->err;
        int64_t off = tp->offset;
        rd_kafka_topic_partition_list_destroy(l);
        if (!e) {
            *m = off < 0 ? 0 : (uint64_t)off;
            break;
        }
        if (now_ms() - t0 > s->c->commit_timeout_ms) {
            rc = sl__kafka_err(err, esz, "kafka sink", "reading the commit marker", e);
            break;
        }
        sl__log(SL__LOG_WARN, "kafka-sink", "reading the commit marker failed; retrying",
                "txn=%s error=\"%s\"", s->txn_id, rd_kafka_err2str(e));
        sleep_ms(1000);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return rc;
}

/* Produces the staged records of buf into the open transaction. */
static int produce_staged(sk_sink *s, const sl__buf *b, char *err, size_t esz)
{
    sl__rbuf r = {.p = b->p, .len = b->len};
    while (r.off < r.len) {
        const unsigned char *canary = sl__rbuf_bytes(&r, 1);
        uint32_t kn = sl__rbuf_u32(&r);
        const void *k = sl__rbuf_bytes(&r, kn);
        uint32_t vn = sl__rbuf_u32(&r);
        const void *v = sl__rbuf_bytes(&r, vn);
        if (r.err || !canary) return sl__err(err, esz, SL_ECORRUPT, "kafka sink: staged rows "
                                             "are corrupt");
        int rc = produce(s, *canary ? s->c->canary_topic : s->c->topic, kn ? k : NULL, kn, v,
                         vn, err, esz);
        if (rc) return rc;
    }
    return 0;
}

/* One transaction: every staged epoch <= upto, and marker `marker`
 * (invariant 2). Retries while the brokers are unreachable. */
static int publish(sk_sink *s, uint64_t upto, uint64_t marker, char *err, size_t esz)
{
    int64_t t0 = now_ms(), logged = t0;
    long backoff = 100;
    for (;;) {
        rd_kafka_error_t *e = rd_kafka_begin_transaction(s->rk);
        if (e) {
            s->fatal = true;
            return sl__kafka_err_obj(err, esz, "kafka sink", "begin transaction", e);
        }
        int rc = 0;
        for (int i = 0; !rc && i < s->nst && s->st[i].epoch <= upto; i++)
            rc = produce_staged(s, &s->st[i].rows, err, esz);
        if (rc) {
            s->fatal = true;
            return rc;
        }
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, s->c->topic, 0)->offset = (int64_t)marker;
        rd_kafka_consumer_group_metadata_t *gm = rd_kafka_consumer_group_metadata_new(s->txn_id);
        for (;;) {
            e = rd_kafka_send_offsets_to_transaction(s->rk, l, gm, 30000);
            if (!e || !rd_kafka_error_is_retriable(e)) break;
            rd_kafka_error_destroy(e);
        }
        rd_kafka_consumer_group_metadata_destroy(gm);
        rd_kafka_topic_partition_list_destroy(l);
        while (!e) {
            e = rd_kafka_commit_transaction(s->rk, 30000);
            if (!e) {
                int n = 0;
                while (n < s->nst && s->st[n].epoch <= upto) {
                    s->staged_bytes -= s->st[n].rows.len;
                    sl__buf_free(&s->st[n].rows);
                    n++;
                }
                if (n > 0 && s->nst > n)
                    memmove(s->st, s->st + n, (size_t)(s->nst - n) * sizeof *s->st);
                s->nst -= n;
                return 0;
            }
            if (!rd_kafka_error_is_retriable(e)) break;
            rd_kafka_error_destroy(e);
            e = NULL; /* commit again: librdkafka resumes where it was */
        }
        if (rd_kafka_error_is_fatal(e) || !rd_kafka_error_txn_requires_abort(e)) {
            s->fatal = true;
            return sl__kafka_err_obj(err, esz, "kafka sink", "commit transaction", e);
        }
        /* abortable (e.g. messages timed out while the brokers were down):
         * abort, then rebuild the whole transaction from the staged rows */
        int64_t now = now_ms();
        if (now - logged >= 10000 || now - t0 > s->c->commit_timeout_ms) {
            logged = now;
            sl__log(SL__LOG_WARN, "kafka-sink", "transaction aborted; retrying",
                    "txn=%s epoch=%" PRIu64 " error=\"%s\"", s->txn_id, marker,
                    rd_kafka_error_string(e));
        }
        if (now - t0 > s->c->commit_timeout_ms)
            return sl__kafka_err_obj(err, esz, "kafka sink", "commit transaction "
                                     "(commit.timeout.ms reached)", e);
        rd_kafka_error_destroy(e);
        for (;;) {
            e = rd_kafka_abort_transaction(s->rk, 30000);
            if (!e) break;
            if (!rd_kafka_error_is_retriable(e)) {
                s->fatal = true;
                return sl__kafka_err_obj(err, esz, "kafka sink", "abort transaction", e);
            }
            rd_kafka_error_destroy(e);
        }
        sleep_ms(backoff);
        backoff = backoff < 5000 ? backoff * 2 : backoff;
    }
}

static int init_txn(sk_sink *s, char *err, size_t esz)
{
    int64_t t0 = now_ms();
    for (;;) {
        rd_kafka_error_t *e = rd_kafka_init_transactions(s->rk, 30000);
        if (!e) return 0;
        if (!rd_kafka_error_is_retriable(e) || now_ms() - t0 > s->c->commit_timeout_ms) {
            s->fatal = true;
            return sl__kafka_err_obj(err, esz, "kafka sink", "init transactions", e);
        }
        sl__log(SL__LOG_WARN, "kafka-sink", "init transactions failed; retrying",
                "txn=%s error=\"%s\"", s->txn_id, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        sleep_ms(1000);
    }
}

static int sk_precommit(void *st, uint64_t epoch, char *err, size_t esz)
{
    sk_sink *s = st;
    if (s->fatal) return sl__err(err, esz, SL_ESTATE, "kafka sink: stopped after an error");
    int rc = end_batch(s, err, esz);
    if (rc) return rc;
    if (s->nst && s->st[s->nst - 1].epoch >= epoch)
        return sl__err(err, esz, SL_ESTATE, "kafka sink: epoch %" PRIu64 " after %" PRIu64,
                       epoch, s->st[s->nst - 1].epoch);
    if (s->nst == s->capst) {
        s->capst = s->capst ? s->capst * 2 : 4;
        s->st = sl__xrealloc(s->st, (size_t)s->capst * sizeof *s->st);
    }
    s->st[s->nst].epoch = epoch; /* invariant 1 */
    s->st[s->nst].rows = s->cur;
    s->staged_bytes += s->cur.len;
    s->nst++;
    memset(&s->cur, 0, sizeof s->cur);
    return 0;
}

static int sk_commit(void *st, uint64_t epoch, char *err, size_t esz)
{
    sk_sink *s = st;
    if (s->fatal) return sl__err(err, esz, SL_ESTATE, "kafka sink: stopped after an error");
    return publish(s, epoch, epoch, err, esz);
}

static int sk_recover(void *st, uint64_t epoch, char *err, size_t esz)
{
    sk_sink *s = st;
    int rc = init_txn(s, err, esz); /* fences an older incarnation */
    if (rc) return rc;
    uint64_t m = 0;
    if (epoch > 0 && (rc = read_marker(s, &m, err, esz))) return rc;
    int keep = 0;
    for (int i = 0; i < s->nst; i++) { /* invariant 3 */
        if (epoch > 0 && s->st[i].epoch > m && s->st[i].epoch <= epoch) {
            s->st[keep++] = s->st[i];
        } else {
            s->staged_bytes -= s->st[i].rows.len;
            sl__buf_free(&s->st[i].rows);
        }
    }
    s->nst = keep;
    s->cur.len = 0;
    if (keep)
        sl__log(SL__LOG_INFO, "kafka-sink", "publishing staged epochs of a checkpoint",
                "txn=%s epochs=%d checkpoint=%" PRIu64 " last_committed=%" PRIu64, s->txn_id,
                keep, epoch, m);
    if (keep || epoch == 0) return publish(s, epoch, epoch, err, esz);
    return 0;
}

/* Section: u32 version, u32 count, then per epoch u64 epoch, u32 len, rows. */
static int sk_snapshot(void *st, sl__snap_writer *w)
{
    sk_sink *s = st;
    if (!s->eo) return 0;
    sl__buf b = {0};
    sl__buf_put_u32(&b, 1);
    sl__buf_put_u32(&b, (uint32_t)s->nst);
    for (int i = 0; i < s->nst; i++) {
        sl__buf_put_u64(&b, s->st[i].epoch);
        sl__buf_put_str(&b, (const char *)s->st[i].rows.p, s->st[i].rows.len);
    }
    int rc = sl__snap_put(w, -1, b.p, b.len);
    sl__buf_free(&b);
    return rc;
}

static int sk_restore(void *st, int32_t kg, const void *data, size_t len)
{
    sk_sink *s = st;
    (void)kg;
    sl__rbuf r = {.p = data, .len = len};
    if (sl__rbuf_u32(&r) != 1) return SL_ECORRUPT;
    uint32_t n = sl__rbuf_u32(&r);
    for (uint32_t i = 0; i < n && !r.err; i++) {
        uint64_t e = sl__rbuf_u64(&r);
        uint32_t rl = 0;
        const char *rows = sl__rbuf_str(&r, &rl);
        if (r.err || !rows) break;
        if (s->nst == s->capst) {
            s->capst = s->capst ? s->capst * 2 : 4;
            s->st = sl__xrealloc(s->st, (size_t)s->capst * sizeof *s->st);
        }
        s->st[s->nst].epoch = e;
        memset(&s->st[s->nst].rows, 0, sizeof(sl__buf));
        sl__buf_put(&s->st[s->nst].rows, rows, rl);
        s->staged_bytes += rl;
        s->nst++;
    }
    return r.err ? SL_ECORRUPT : 0;
}

const sl__sink_vt sl__sink_kafka = {
    .name = "kafka",
    .configure = sk_configure,
    .max_parallelism = 0,
    .open = sk_open,
    .write = sk_write,
    .flush = sk_flush,
    .close = sk_close,
    .conf_free = sk_conf_free,
    .precommit = sk_precommit,
    .commit = sk_commit,
    .recover = sk_recover,
    .snapshot = sk_snapshot,
    .restore = sk_restore,
    .exactly_once = true,
};
