/* kafka_source.c — the "kafka" source: reads CSV or JSON Lines records from
 * the partitions of one or more Kafka topics through librdkafka. Every topic
 * partition is one source partition, so the runtime keeps a watermark per
 * Kafka partition and spreads partitions over source tasks. A Kafka message
 * may carry several records, one per line (small events batched per
 * message); an empty line is skipped.
 *
 * It does not use the consumer group to place partitions (embedded mode:
 * partitions are assigned explicitly, like Flink's KafkaSource) and never
 * commits offsets to Kafka: the offsets live in sluice checkpoints, and a
 * restore seeks every partition back to them. Bad records go to the
 * dead-letter output with their topic/partition@offset position.
 *
 * Invariants:
 * 1. A partition's position is (offset << SL__KAFKA_LINE_BITS) | line: the
 *    Kafka offset of the first message not completely returned and the
 *    number of its lines already returned. take_lines() keeps `next` and
 *    `line` so that position() always names the first record not returned.
 * 2. Records of one message are returned in line order exactly once per
 *    pass; seek() makes the next message at `next` skip `line` lines.
 * 3. In bounded mode a partition ends at the high watermark read at
 *    configure time (the same for every task, and across a restart while
 *    the topic is unchanged), never earlier.
 * 4. The consumer never blocks a worker: every librdkafka call in read()
 *    has a zero timeout; librdkafka's own fetch queue is bounded
 *    (queued.max.messages.kbytes), so a slow job stops fetching. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "io/avrofmt.h"
#include "io/decode.h"
#include "io/kafka.h"

#define SL__KAFKA_LINE_BITS 20
#define LINE_MAX_PER_MSG ((1 << SL__KAFKA_LINE_BITS) - 1)
#define PEND_MAX 256 /* messages taken from a partition queue at once */

enum { FMT_CSV = 0, FMT_JSONL = 1, FMT_AVRO = 2 };
enum { START_EARLIEST = 0, START_LATEST = 1 };

typedef struct {
    char *bootstrap;
    char *topic;
    int format;
    char *delimiter;
    char *group_id;
    int startup;
    bool bounded;
    char *key_column;
    char *ts_column;
    int64_t connect_ms;
    char *avro_name;
    char *dlq_topic;
    /* derived */
    char **props;
    char delim;
    int key_ci, ts_ci;
    int ntp;
    char **tp_topic;   /* borrowed from topics[] */
    int32_t *tp_part;
    int64_t *tp_end;   /* bounded: offset where the partition ends */
    char **topics;
    int ntopics;
} ks_conf;

const sl__conf_def sl__kafka_source_conf[] = {
    {.key = "bootstrap.servers", .type = SL_CONF_STR, .def = NULL, .min = 1,
     .offset = offsetof(ks_conf, bootstrap),
     .desc = "Kafka brokers to contact first, host:port[,host:port...]."},
    {.key = "topic", .type = SL_CONF_STR, .def = NULL, .min = 1,
     .offset = offsetof(ks_conf, topic),
     .desc = "Topic to read, or several separated by commas. Every partition "
             "of every topic is one source partition."},
    {.key = "format", .type = SL_CONF_ENUM, .def = "csv", .allowed = "csv|jsonl|avro",
     .offset = offsetof(ks_conf, format),
     .desc = "Record format: CSV without header, fields in schema order (minus "
             "key.column and timestamp.column), JSON Lines (flat objects), or Avro "
             "(one datum per message, single-object encoding). A CSV or JSON Lines "
             "message may hold several records, one per line."},
    {.key = "avro.name", .type = SL_CONF_STR, .def = SL__AVRO_DEFAULT_NAME,
     .offset = offsetof(ks_conf, avro_name),
     .desc = "format avro: full name of the record schema (part of its "
             "fingerprint; `sluice avro-schema` prints the schema)."},
    {.key = "dead_letter.topic", .type = SL_CONF_STR, .def = NULL,
     .offset = offsetof(ks_conf, dlq_topic),
     .desc = "Also produce undecodable records to this topic (masked value; "
             "headers reason, position, job), at-least-once."},
    {.key = "delimiter", .type = SL_CONF_STR, .def = ",",
     .offset = offsetof(ks_conf, delimiter),
     .desc = "CSV field delimiter: one character, or \\t / tab."},
    {.key = "group.id", .type = SL_CONF_STR, .def = "sluice",
     .offset = offsetof(ks_conf, group_id),
     .desc = "Consumer group id the client reports. Partitions are assigned "
             "explicitly and offsets kept in checkpoints, never committed."},
    {.key = "startup.mode", .type = SL_CONF_ENUM, .def = "earliest",
     .allowed = "earliest|latest", .offset = offsetof(ks_conf, startup),
     .desc = "Where a job without a checkpoint starts: the first retained "
             "record or the end of each partition."},
    {.key = "bounded", .type = SL_CONF_BOOL, .def = "false",
     .offset = offsetof(ks_conf, bounded),
     .desc = "Bounded input: read up to the end offsets found when the job "
             "starts, then end (every window fires, a final checkpoint "
             "commits, the job exits 0)."},
    {.key = "key.column", .type = SL_CONF_STR, .def = NULL,
     .offset = offsetof(ks_conf, key_column),
     .desc = "Column filled from the Kafka record key (as text) instead of "
             "the payload."},
    {.key = "timestamp.column", .type = SL_CONF_STR, .def = NULL,
     .offset = offsetof(ks_conf, ts_column),
     .desc = "Column filled from the Kafka record timestamp (epoch ms) "
             "instead of the payload."},
    {.key = "connect.timeout.ms", .type = SL_CONF_INT, .def = "60000",
     .min = 1000, .max = 3600000, .offset = offsetof(ks_conf, connect_ms),
     .desc = "How long the job waits at start for the brokers to answer "
             "(librdkafka retries with back-off meanwhile)."},
    {.key = NULL},
};

/* ---- configuration ------------------------------------------------------ */

static void ks_conf_free(void *cv)
{
    ks_conf *c = cv;
    if (!c) return;
    sl__kafka_kv_free(c->props);
    for (int i = 0; i < c->ntopics; i++) free(c->topics[i]);
    free(c->topics);
    free(c->tp_topic);
    free(c->tp_part);
    free(c->tp_end);
    sl__conf_free(sl__kafka_source_conf, c);
    free(c);
}

static int column(const sl_schema *s, const char *name, const char *key, int *out,
                  char *err, size_t esz)
{
    *out = -1;
    if (!name) return 0;
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->cols[i].name, name) == 0) {
            *out = i;
            return 0;
        }
    return sl__err(err, esz, SL_EINVAL, "kafka source: %s '%s' is not a column of the "
                   "source", key, name);
}

/* The consumer every instance (and configure) uses. */
static int make_consumer(const ks_conf *c, rd_kafka_t **out, char *err, size_t esz)
{
    static const char *const reserved[] = {"enable.auto.commit", "enable.partition.eof",
                                           "group.id", NULL};
    const char *fixed[] = {"group.id", c->group_id, "enable.auto.commit", "false",
                           "enable.auto.offset.store", "false",
                           "enable.partition.eof", "true",
                           "isolation.level", "read_committed",
                           "auto.offset.reset", "earliest",
                           "client.id", "sluice-source", NULL};
    rd_kafka_conf_t *kc;
    int rc = sl__kafka_conf(&kc, "kafka source", c->bootstrap, fixed,
                            (const char *const *)c->props, reserved, err, esz);
    if (rc) return rc;
    return sl__kafka_new(out, RD_KAFKA_CONSUMER, kc, NULL, "kafka source", err, esz);
}

/* Topic partitions (and in bounded mode their end offsets), waiting up to
 * connect.timeout.ms for the brokers. */
static int discover(ks_conf *c, char *err, size_t esz)
{
    rd_kafka_t *rk = NULL;
    int rc = make_consumer(c, &rk, err, esz);
    if (rc || !rk) return rc ? rc : SL_EINTERNAL;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int ti = 0; ti < c->ntopics && !rc; ti++) {
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, c->topics[ti], NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e;
        for (;;) {
            e = rd_kafka_metadata(rk, 0, t, &md, 2000);
            if (!e && md->topic_cnt == 1 && !md->topics[0].err) break;
            if (!e && md->topic_cnt == 1 &&
                md->topics[0].err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
                e = md->topics[0].err;
            if (md) rd_kafka_metadata_destroy(md);
            md = NULL;
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            int64_t ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
            if (e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART && ms > 5000) break;
            if (ms > c->connect_ms) break;
            sl__log(SL__LOG_WARN, "kafka-source", "waiting for topic",
                    "topic=%s bootstrap=%s reason=\"%s\"", c->topics[ti], c->bootstrap,
                    e ? rd_kafka_err2str(e) : "no leader yet");
            struct timespec d = {.tv_sec = 0, .tv_nsec = 500000000};
            nanosleep(&d, NULL);
        }
        if (!md) {
            rc = sl__err(err, esz, e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ? SL_ENOENT : SL_EIO,
                         "kafka source: topic '%s' on %s: %s", c->topics[ti], c->bootstrap,
                         rd_kafka_err2str(e));
            rd_kafka_topic_destroy(t);
            break;
        }
        const struct rd_kafka_metadata_topic *mt = &md->topics[0];
        int np = mt->partition_cnt;
        c->tp_topic = sl__xrealloc(c->tp_topic, (size_t)(c->ntp + np) * sizeof *c->tp_topic);
        c->tp_part = sl__xrealloc(c->tp_part, (size_t)(c->ntp + np) * sizeof *c->tp_part);
        c->tp_end = sl__xrealloc(c->tp_end, (size_t)(c->ntp + np) * sizeof *c->tp_end);
        /* partitions in id order, whatever order the metadata lists them */
        for (int32_t id = 0; id < np; id++) {
            c->tp_topic[c->ntp] = c->topics[ti];
            c->tp_part[c->ntp] = id;
            c->tp_end[c->ntp] = -1;
            if (c->bounded) {
                int64_t lo = 0, hi = 0;
                e = rd_kafka_query_watermark_offsets(rk, c->topics[ti], id, &lo, &hi,
                                                     (int)c->connect_ms);
                if (e) {
                    rc = sl__kafka_err(err, esz, "kafka source", "end offsets", e);
                    break;
                }
                c->tp_end[c->ntp] = hi;
            }
            c->ntp++;
        }
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(t);
    }
    rd_kafka_destroy(rk);
    return rc;
}

static int ks_configure(void **out, const char *const *kv, const sl_schema *schema,
                        char *err, size_t esz)
{
    char **own, **props;
    sl__kafka_split(kv, &own, &props);
    ks_conf *c = sl__xcalloc(1, sizeof *c);
    c->props = props;
    int rc = sl__conf_apply(sl__kafka_source_conf, c, (const char *const *)own,
                            "kafka source", NULL, err, esz);
    sl__kafka_kv_free(own);
    if (rc) {
        ks_conf_free(c);
        return rc;
    }
    const char *d = c->delimiter;
    if (strcmp(d, "\\t") == 0 || strcmp(d, "tab") == 0)
        c->delim = '\t';
    else if (strlen(d) == 1 && d[0] != '"' && d[0] != '\n' && d[0] != '\r')
        c->delim = d[0];
    else
        rc = sl__err(err, esz, SL_EINVAL, "kafka source: delimiter '%s' must be one "
                     "character other than a quote or newline (or \\t)", d);
    if (!rc) rc = column(schema, c->key_column, "key.column", &c->key_ci, err, esz);
    if (!rc) rc = column(schema, c->ts_column, "timestamp.column", &c->ts_ci, err, esz);
    for (char *p = c->topic; !rc && p && *p;) {
        size_t n = strcspn(p, ",");
        if (n == 0) {
            rc = sl__err(err, esz, SL_EINVAL, "kafka source: topic '%s' has an empty name",
                         c->topic);
            break;
        }
        c->topics = sl__xrealloc(c->topics, (size_t)(c->ntopics + 1) * sizeof *c->topics);
        c->topics[c->ntopics++] = sl__xstrndup(p, n);
        p += n + (p[n] == ',');
    }
    if (!rc) rc = discover(c, err, esz);
    if (rc) {
        ks_conf_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static int ks_partitions(const void *cv)
{
    return ((const ks_conf *)cv)->ntp;
}

/* ---- an instance -------------------------------------------------------- */
typedef struct {
    int tp;                 /* index into the conf's topic partitions */
    rd_kafka_queue_t *q;    /* this partition's own fetch queue */
    rd_kafka_message_t *msg; /* message being returned, or NULL */
    size_t moff;            /* byte offset of its next line */
    int64_t next;           /* invariant 1: offset of the next record's message */
    int64_t line;           /* lines of message `next` already returned */
    int64_t skip;           /* seek(): lines to skip in message `next` */
    bool sought;            /* next/line come from a seek */
    bool ended;
    rd_kafka_message_t *pend[PEND_MAX]; /* fetched, not yet taken */
    int npend, ipend;
} kpart;

/* Decoding of messages into rows (sl__kafka_dec_message): the source's
 * instances and the cluster runtime's stage 1 share it. */
struct sl__kafka_dec {
    const ks_conf *c;
    const sl_schema *schema;
    sl__ctx *ctx;
    sl__csv_dec csv;
    sl__json_dec json;
    sl__avro *avro;
    sl__kafka_dlq *dlq;
    sl__dec_types meta; /* key.column / timestamp.column conversion */
    char *mask;
    size_t mask_cap;
    char source[300];
};

typedef struct {
    const ks_conf *c;
    const sl_schema *schema;
    sl__ctx *ctx;
    rd_kafka_t *rk;
    kpart *p;
    int np, rr;
    bool assigned;
    sl__kafka_dec d;
    uint64_t errors_logged;
    time_t last_err_log;
} ks_src;

static void drop_pending(kpart *p)
{
    if (p->msg) rd_kafka_message_destroy(p->msg);
    p->msg = NULL;
    while (p->ipend < p->npend) rd_kafka_message_destroy(p->pend[p->ipend++]);
    p->npend = p->ipend = 0;
}

static void dec_close(sl__kafka_dec *d);

static void ks_close(void *st)
{
    ks_src *s = st;
    if (!s) return;
    for (int i = 0; i < s->np; i++) {
        drop_pending(&s->p[i]);
        if (s->p[i].q) rd_kafka_queue_destroy(s->p[i].q);
    }
    if (s->rk) {
        rd_kafka_assign(s->rk, NULL);
        rd_kafka_consumer_close(s->rk);
        rd_kafka_destroy(s->rk);
    }
    dec_close(&s->d);
    free(s->p);
    free(s);
}

static void dec_close(sl__kafka_dec *d)
{
    if (!d->c) return;
    if (d->c->format == FMT_CSV) sl__csv_close(&d->csv);
    if (d->c->format == FMT_JSONL) sl__json_close(&d->json);
    sl__avro_free(d->avro);
    sl__kafka_dlq_free(d->dlq);
    sl__dec_types_close(&d->meta);
    free(d->mask);
    memset(d, 0, sizeof *d);
}

static int dec_init(sl__kafka_dec *d, const ks_conf *c, const sl_schema *schema,
                    sl__ctx *ctx, char *err, size_t esz)
{
    d->c = c;
    d->schema = schema;
    d->ctx = ctx;
    snprintf(d->source, sizeof d->source, "kafka:%s", c->topic);
    sl__dec_types_init(&d->meta, schema);
    if (c->format == FMT_CSV) {
        sl__csv_init(&d->csv, schema, c->delim);
        if (c->key_ci >= 0 || c->ts_ci >= 0) {
            /* the payload's fields are the columns not taken from the
             * record's metadata, in schema order */
            char hdr[SL_MAX_COLS * 130];
            size_t n = 0;
            for (int i = 0; i < schema->n; i++) {
                if (i == c->key_ci || i == c->ts_ci) continue;
                n += (size_t)snprintf(hdr + n, sizeof hdr - n, "%s\"%s\"", n ? "," : "",
                                      schema->cols[i].name);
            }
            for (size_t i = 0; i < n; i++)
                if (hdr[i] == ',') hdr[i] = c->delim;
            if (n && sl__csv_set_header(&d->csv, hdr, n) <= 0) {
                dec_close(d);
                return sl__err(err, esz, SL_EINVAL, "kafka source: cannot map CSV fields");
            }
        }
    } else if (c->format == FMT_JSONL) {
        sl__json_init(&d->json, schema);
    } else {
        int rc = sl__avro_new(&d->avro, schema, c->avro_name, "kafka source", err, esz);
        if (rc) {
            dec_close(d);
            return rc;
        }
    }
    if (c->dlq_topic) {
        int rc = sl__kafka_dlq_new(&d->dlq, c->bootstrap, c->dlq_topic,
                                   ctx && ctx->job_name ? ctx->job_name : "",
                                   (const char *const *)c->props, err, esz);
        if (rc) {
            dec_close(d);
            return rc;
        }
    }
    return 0;
}

int sl__kafka_dec_new(sl__kafka_dec **out, const void *conf, const sl_schema *schema,
                      sl__ctx *ctx, char *err, size_t esz)
{
    sl__kafka_dec *d = sl__xcalloc(1, sizeof *d);
    int rc = dec_init(d, conf, schema, ctx, err, esz);
    if (rc) {
        free(d);
        return rc;
    }
    *out = d;
    return 0;
}

void sl__kafka_dec_free(sl__kafka_dec *d)
{
    if (!d) return;
    dec_close(d);
    free(d);
}

void sl__kafka_source_info(const void *conf, sl__kafka_src_info *out)
{
    const ks_conf *c = conf;
    *out = (sl__kafka_src_info){
        .bootstrap = c->bootstrap, .props = (const char *const *)c->props,
        .topics = (const char *const *)c->topics, .ntopics = c->ntopics,
        .bounded = c->bounded, .latest = c->startup == START_LATEST, .ntp = c->ntp,
        .tp_topic = (const char *const *)c->tp_topic, .tp_part = c->tp_part,
        .tp_end = c->tp_end};
}

static int ks_open(void **out, const void *cv, const sl_schema *schema, const int *parts,
                   int nparts, sl__ctx *ctx, char *err, size_t esz)
{
    const ks_conf *c = cv;
    ks_src *s = sl__xcalloc(1, sizeof *s);
    s->c = c;
    s->schema = schema;
    s->ctx = ctx;
    int rc0 = dec_init(&s->d, c, schema, ctx, err, esz);
    if (rc0) {
        free(s);
        return rc0;
    }
    s->np = nparts;
    s->p = sl__xcalloc(nparts > 0 ? (size_t)nparts : 1, sizeof *s->p);
    for (int i = 0; i < nparts; i++) {
        if (parts[i] < 0 || parts[i] >= c->ntp) {
            int rc = sl__err(err, esz, SL_EINVAL, "kafka source: bad partition %d (of %d)",
                             parts[i], c->ntp);
            ks_close(s);
            return rc;
        }
        s->p[i].tp = parts[i];
        s->p[i].next = c->startup == START_LATEST ? RD_KAFKA_OFFSET_END
                                                  : RD_KAFKA_OFFSET_BEGINNING;
    }
    int rc = make_consumer(c, &s->rk, err, esz);
    if (rc) {
        ks_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* Assigns every partition that has not ended at its position and detaches
 * each partition's queue, so read() can take records from one partition. */
static int assign(ks_src *s, char *err, size_t esz)
{
    const ks_conf *c = s->c;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(s->np);
    for (int i = 0; i < s->np; i++) {
        kpart *p = &s->p[i];
        int64_t end = c->tp_end[p->tp];
        if (c->bounded && (end == 0 || (p->next >= 0 && p->next >= end))) p->ended = true;
        if (p->ended) continue;
        rd_kafka_topic_partition_list_add(l, c->tp_topic[p->tp], c->tp_part[p->tp])->offset =
            p->next;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(s->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) return sl__kafka_err(err, esz, "kafka source", "assign", e);
    for (int i = 0; i < s->np; i++) {
        kpart *p = &s->p[i];
        if (p->ended) continue;
        if (p->q) rd_kafka_queue_destroy(p->q);
        p->q = rd_kafka_queue_get_partition(s->rk, c->tp_topic[p->tp], c->tp_part[p->tp]);
        rd_kafka_queue_forward(p->q, NULL);
    }
    s->assigned = true;
    return 0;
}

/* Client errors (broker down, ...) arrive on the consumer queue: logged at
 * most every 10 s, the client keeps retrying. */
static void serve_errors(ks_src *s)
{
    rd_kafka_message_t *m;
    while ((m = rd_kafka_consumer_poll(s->rk, 0)) != NULL) {
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            time_t now = time(NULL);
            s->errors_logged++;
            if (now - s->last_err_log >= 10) {
                s->last_err_log = now;
                sl__log(SL__LOG_WARN, "kafka-source", "fetch error; retrying",
                        "source=%s error=\"%s\" errors=%" PRIu64, s->d.source,
                        rd_kafka_message_errstr(m), s->errors_logged);
            }
        }
        rd_kafka_message_destroy(m);
    }
}

static void dead_letter(sl__kafka_dec *s, const rd_kafka_message_t *msg, int64_t lineno,
                        const char *reason, const char *line, size_t n)
{
    if (n + 1 > s->mask_cap) {
        s->mask_cap = n + 1;
        s->mask = sl__xrealloc(s->mask, s->mask_cap);
    }
    size_t m;
    if (s->c->format == FMT_CSV)
        m = sl__mask_payload(s->schema, s->csv.field_col, s->csv.nfield, s->c->delim, line,
                             n, s->mask);
    else
        m = sl__mask_payload(s->schema, NULL, 0, 0, line, n, s->mask);
    char pos[400];
    snprintf(pos, sizeof pos, "%s/%d@%" PRId64 ":%" PRId64, rd_kafka_topic_name(msg->rkt),
             (int)msg->partition, msg->offset, lineno + 1);
    sl__dead_letter(s->ctx, s->source, pos, reason, s->mask, m);
    sl__kafka_dlq_send(s->dlq, pos, reason, s->mask, m);
}

/* Fills key.column / timestamp.column of the row just decoded. */
static int set_meta(sl__kafka_dec *s, const rd_kafka_message_t *m, sl_batch *b)
{
    uint32_t row = b->n - 1;
    if (s->c->key_ci >= 0) {
        if (m->key) {
            if (sl__dec_value(&s->meta, s->c->key_ci, m->key, m->key_len, true, false, b,
                              row) != SL__CONV_OK)
                return -1;
        } else {
            b->cols[s->c->key_ci].valid[row] = 0;
        }
    }
    if (s->c->ts_ci >= 0) {
        char t[32];
        int64_t ts = rd_kafka_message_timestamp(m, NULL);
        int n = snprintf(t, sizeof t, "%" PRId64, ts);
        if (ts < 0 ||
            sl__dec_value(&s->meta, s->c->ts_ci, t, (size_t)n, false, false, b, row) !=
                SL__CONV_OK)
            return -1;
    }
    return 0;
}

int sl__kafka_dec_message(sl__kafka_dec *s, const rd_kafka_message_t *m,
                          sl__kafka_msgpos *p, sl_batch *b)
{
    const char *pl = m->payload;
    size_t len = m->len;
    int progress = 0;
    char reason[128];
    if (s->c->format == FMT_AVRO && p->moff == 0 && b->n < b->cap) {
        /* one datum per message: the message is its only "line" */
        if (p->skip > 0) {
            p->skip--;
        } else if (len == 0) {
            /* an empty message (a tombstone) holds no record, as a blank line */
        } else {
            int rc = sl__avro_decode(s->avro, pl, len, b, reason, sizeof reason);
            if (rc == 0 && set_meta(s, m, b) != 0) {
                b->n--;
                rc = SL_EPARSE;
                snprintf(reason, sizeof reason, "parse_error:%s",
                         s->schema->cols[s->c->key_ci >= 0 ? s->c->key_ci : s->c->ts_ci].name);
            }
            if (rc != 0) dead_letter(s, m, p->line, reason, pl, len);
            progress++;
        }
        p->moff = len ? len : 1;
        p->line++;
    }
    while (p->moff < len && b->n < b->cap) {
        const char *line = pl + p->moff;
        const char *nl = memchr(line, '\n', len - p->moff);
        size_t n = nl ? (size_t)(nl - line) : len - p->moff;
        size_t adv = n + (nl != NULL);
        size_t rn = n && line[n - 1] == '\r' ? n - 1 : n;
        if (p->skip > 0) { /* invariant 2: lines returned before the restore */
            p->skip--;
            p->line++;
            p->moff += adv;
            continue;
        }
        if (rn == 0) { /* blank line: nothing to return, not an error */
            p->moff += adv;
            p->line++;
            continue;
        }
        int rc;
        if (p->line >= LINE_MAX_PER_MSG) {
            rc = SL_EPARSE;
            snprintf(reason, sizeof reason, "too_many_lines_in_message");
        } else if (s->c->format == FMT_CSV) {
            rc = sl__csv_decode(&s->csv, line, rn, b, reason, sizeof reason);
            if (rc == SL__DEC_MORE) {
                /* a quoted field spans lines: the record is the rest of
                 * the message, up to where it ends */
                rn = len - p->moff;
                adv = rn;
                rc = sl__csv_decode(&s->csv, line, rn, b, reason, sizeof reason);
                if (rc == SL__DEC_MORE) {
                    rc = SL_EPARSE;
                    snprintf(reason, sizeof reason, "malformed_csv");
                }
            }
        } else {
            rc = sl__json_decode(&s->json, line, rn, b, reason, sizeof reason);
        }
        if (rc == 0 && set_meta(s, m, b) != 0) {
            b->n--;
            rc = SL_EPARSE;
            snprintf(reason, sizeof reason, "parse_error:%s",
                     s->schema->cols[s->c->key_ci >= 0 ? s->c->key_ci : s->c->ts_ci].name);
        }
        if (rc != 0) dead_letter(s, m, p->line, reason, line, rn);
        p->moff += adv;
        p->line++;
        progress++;
    }
    return progress;
}

/* Decodes lines of p's current message into b until it is full or the
 * message is done. Returns the rows appended plus dead letters written (> 0
 * means progress). */
static int take_lines(ks_src *s, kpart *p, sl_batch *b)
{
    rd_kafka_message_t *m = p->msg;
    sl__kafka_msgpos mp = {.moff = p->moff, .line = p->line, .skip = p->skip};
    int progress = sl__kafka_dec_message(&s->d, m, &mp, b);
    p->moff = mp.moff;
    p->line = mp.line;
    p->skip = mp.skip;
    /* message done (an Avro message once decoded: moff > 0): invariant 1 */
    if (p->moff >= m->len && (p->moff > 0 || s->c->format != FMT_AVRO)) {
        p->next = m->offset + 1;
        p->line = 0;
        p->moff = 0;
        rd_kafka_message_destroy(m);
        p->msg = NULL;
    }
    return progress;
}

/* Takes the next message of p from its queue: 1 got one, 0 none now. */
static int next_msg(ks_src *s, kpart *p)
{
    const ks_conf *c = s->c;
    for (;;) {
        if (p->ipend == p->npend) {
            ssize_t n = rd_kafka_consume_batch_queue(p->q, 0, p->pend, PEND_MAX);
            p->ipend = 0;
            p->npend = n > 0 ? (int)n : 0;
            if (p->npend == 0) return 0;
        }
        rd_kafka_message_t *m = p->pend[p->ipend++];
        int64_t end = c->tp_end[p->tp];
        if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                if (c->bounded && m->offset >= end) p->ended = true;
            } else {
                sl__log(SL__LOG_WARN, "kafka-source", "partition error",
                        "topic=%s partition=%d error=\"%s\"", c->tp_topic[p->tp],
                        (int)c->tp_part[p->tp], rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
            if (p->ended) {
                drop_pending(p);
                return 0;
            }
            continue;
        }
        if (c->bounded && m->offset >= end) {
            p->ended = true;
            rd_kafka_message_destroy(m);
            drop_pending(p);
            return 0;
        }
        if (p->sought && m->offset != p->next) p->skip = 0; /* compacted away */
        p->sought = false;
        p->next = m->offset;
        p->msg = m;
        p->moff = 0;
        return 1;
    }
}

static int ks_read(void *st, sl_batch *out, int *part, char *err, size_t esz)
{
    ks_src *s = st;
    int rc;
    if (!s->assigned && (rc = assign(s, err, esz))) return rc;
    serve_errors(s);
    int live = 0;
    for (int k = 0; k < s->np; k++) {
        int i = (s->rr + k) % s->np;
        kpart *p = &s->p[i];
        if (p->ended) continue;
        live++;
        int progress = 0;
        while (out->n < out->cap) {
            if (!p->msg && !next_msg(s, p)) break;
            progress += take_lines(s, p, out);
        }
        if (progress > 0) {
            s->rr = (i + 1) % s->np;
            *part = i;
            return (int)out->n;
        }
    }
    return live ? SL_EAGAIN : SL_EEOF;
}

static int ks_position(void *st, int part, int64_t *pos)
{
    ks_src *s = st;
    if (part < 0 || part >= s->np) return SL_EINVAL;
    /* the dead-letter topic holds every letter before a position that
     * passes it is checkpointed (at-least-once) */
    char err[256];
    if (sl__kafka_dlq_flush(s->d.dlq, (int)s->c->connect_ms, err, sizeof err)) {
        sl__log(SL__LOG_WARN, "kafka-source", "dead letters not flushed; checkpoint "
                "refused", "source=%s error=\"%s\"", s->d.source, err);
        return SL_EAGAIN;
    }
    const kpart *p = &s->p[part];
    if (p->next == RD_KAFKA_OFFSET_BEGINNING) { /* nothing read yet */
        *pos = 0;
        return 0;
    }
    if (p->next < 0) { /* latest: wherever the fetcher started */
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_add(l, s->c->tp_topic[p->tp], s->c->tp_part[p->tp]);
        int64_t off = rd_kafka_position(s->rk, l) ? -1 : tp->offset;
        rd_kafka_topic_partition_list_destroy(l);
        if (off < 0) return SL_EAGAIN; /* not known yet: this checkpoint fails */
        *pos = off << SL__KAFKA_LINE_BITS;
        return 0;
    }
    *pos = (p->next << SL__KAFKA_LINE_BITS) | (p->line + p->skip);
    return 0;
}

static int ks_seek(void *st, int part, int64_t pos)
{
    ks_src *s = st;
    if (part < 0 || part >= s->np || pos < 0) return SL_EINVAL;
    kpart *p = &s->p[part];
    drop_pending(p);
    p->moff = 0;
    p->next = pos >> SL__KAFKA_LINE_BITS;
    p->line = 0;
    p->skip = pos & LINE_MAX_PER_MSG;
    p->sought = true;
    p->ended = false;
    s->assigned = false; /* the next read assigns at the new offsets */
    return 0;
}

/* Progress for metrics, in messages: the offset of the next message and the
 * partition's high watermark as last fetched (librdkafka updates it with
 * every fetch response, so this never blocks). */
static int ks_progress(void *st, int part, int64_t *offset, int64_t *end)
{
    ks_src *s = st;
    if (s == NULL || part < 0 || part >= s->np) return SL_EINVAL;
    const kpart *p = &s->p[part];
    int64_t lo = -1, hi = -1;
    if (!s->rk || rd_kafka_get_watermark_offsets(s->rk, s->c->tp_topic[p->tp],
                                                 s->c->tp_part[p->tp], &lo,
                                                 &hi) != RD_KAFKA_RESP_ERR_NO_ERROR)
        hi = -1;
    *offset = p->next >= 0 ? p->next : lo >= 0 && p->next == RD_KAFKA_OFFSET_BEGINNING ? lo : 0;
    *end = hi >= 0 && hi < *offset ? *offset : hi;
    return 0;
}

const sl__source_vt sl__src_kafka = {
    .name = "kafka",
    .configure = ks_configure,
    .partitions = ks_partitions,
    .open = ks_open,
    .read = ks_read,
    .close = ks_close,
    .conf_free = ks_conf_free,
    .position = ks_position,
    .seek = ks_seek,
    .progress = ks_progress,
    .progress_unit = "messages",
};
