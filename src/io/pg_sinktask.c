/* pg_sinktask.c — the PostgreSQL sink task of the distributed mode
 * (DESIGN.md "Epoch / checkpoint"): a stateless process that consumes a
 * result topic with isolation.level=read_committed in a consumer group and
 * writes its rows to a PostgreSQL table, storing its input offsets in the
 * SAME database transaction as the rows (table sluice_offsets). So a kill
 * at any instant, then a restart, leaves each row in the table exactly
 * once; rows of aborted Kafka transactions are never read.
 *
 * The rows go through the postgres sink (pg_sink.c) at-least-once: its
 * table creation and checks, COPY, upsert, retries on a lost server and
 * dead letters for refused rows are reused; this file adds the offsets to
 * each chunk's transaction through the sink's hook (pg.h).
 *
 * Also here: sl_avro_schema() (`sluice avro-schema`), which shares the
 * column-list parser of the `schema` key.
 *
 * It does not keep state of its own: several tasks in one group split the
 * partitions; on every assignment a task reads the partitions' offsets
 * from the database (never the group's Kafka commits, which it never
 * makes) and seeks there.
 *
 * Invariants, and the function that keeps each:
 * 1. A partition's row in sluice_offsets names the offset of the first
 *    message whose rows are not in the table (-1: none consumed yet). It
 *    moves only in the transaction that writes those rows (store_offsets,
 *    called by the postgres sink before COMMIT).
 * 2. Rows of a message are sent in the same chunk (commit_now runs only
 *    between messages; the postgres sink's own batch threshold is out of
 *    reach), so a stored offset never splits a message.
 * 3. Ownership: on assignment a task writes a fresh owner token into the
 *    partition's row (on_assign); store_offsets moves the offset only if
 *    the row still has this task's token and the offset it read. A paused
 *    task whose partitions moved to another (a zombie) therefore commits
 *    nothing and exits; a chunk whose COMMIT answer was lost is recognised
 *    (the row already holds its end offset and token) and not sent twice.
 * 4. Dead letters go to the dead-letter topic (if any) and are flushed
 *    before the offsets that pass them are stored (at-least-once). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "io/avrofmt.h"
#include "io/decode.h"
#include "io/kafka.h"
#include "io/pg.h"
#include "sluice.h"

extern const sl__sink_vt sl__sink_postgres;

enum { FMT_CSV = 0, FMT_JSONL = 1, FMT_AVRO = 2 };

typedef struct {
    char *bootstrap;
    char *topic;
    char *group;
    char *name;
    int format;
    char *delimiter;
    char *avro_name;
    char *schema;
    int64_t batch_rows;
    int64_t commit_ms;
    bool bounded;
    char *dlq_topic;
    int64_t connect_ms;
} st_conf;

static const sl__conf_def st_defs[] = {
    {.key = "bootstrap.servers", .type = SL_CONF_STR, .min = 1,
     .offset = offsetof(st_conf, bootstrap),
     .desc = "Kafka brokers to contact first, host:port[,host:port...]."},
    {.key = "topic", .type = SL_CONF_STR, .min = 1, .offset = offsetof(st_conf, topic),
     .desc = "The result topic to read (read_committed)."},
    {.key = "group.id", .type = SL_CONF_STR, .def = NULL,
     .offset = offsetof(st_conf, group),
     .desc = "Consumer group of the sink tasks that share the topic (default "
             "sluice-sink-<table>). Offsets are never committed to it."},
    {.key = "name", .type = SL_CONF_STR, .def = NULL, .offset = offsetof(st_conf, name),
     .desc = "The job column of the task's rows in sluice_offsets (default: the "
             "group id)."},
    {.key = "format", .type = SL_CONF_ENUM, .def = "jsonl", .allowed = "csv|jsonl|avro",
     .offset = offsetof(st_conf, format),
     .desc = "Message format, as the kafka source reads it."},
    {.key = "delimiter", .type = SL_CONF_STR, .def = ",",
     .offset = offsetof(st_conf, delimiter), .desc = "CSV field delimiter."},
    {.key = "avro.name", .type = SL_CONF_STR, .def = SL__AVRO_DEFAULT_NAME,
     .offset = offsetof(st_conf, avro_name),
     .desc = "Full name of the Avro record (part of the schema fingerprint)."},
    {.key = "schema", .type = SL_CONF_STR, .min = 1, .offset = offsetof(st_conf, schema),
     .desc = "The rows' columns: 'name TYPE, ...' with TYPE BIGINT, DOUBLE, BOOLEAN, "
             "VARCHAR or TIMESTAMP."},
    {.key = "batch.rows", .type = SL_CONF_INT, .def = "50000", .min = 1, .max = 1000000,
     .offset = offsetof(st_conf, batch_rows),
     .desc = "Rows buffered before they are written with their offsets in one "
             "transaction."},
    {.key = "commit.interval.ms", .type = SL_CONF_INT, .def = "1000", .min = 10,
     .max = 3600000, .offset = offsetof(st_conf, commit_ms),
     .desc = "Longest time rows wait in the buffer before they are written."},
    {.key = "bounded", .type = SL_CONF_BOOL, .def = "false",
     .offset = offsetof(st_conf, bounded),
     .desc = "Exit 0 once the offsets stored for every partition reach the end "
             "offsets found at start (tests, backfills)."},
    {.key = "dead_letter.topic", .type = SL_CONF_STR, .def = NULL,
     .offset = offsetof(st_conf, dlq_topic),
     .desc = "Topic for undecodable messages (headers reason, position, job)."},
    {.key = "connect.timeout.ms", .type = SL_CONF_INT, .def = "60000", .min = 1000,
     .max = 3600000, .offset = offsetof(st_conf, connect_ms),
     .desc = "How long the task waits at start for the brokers."},
    {.key = NULL},
};


typedef struct {
    bool assigned;
    int64_t stored; /* invariant 1: the offset in the database (-1: none) */
    int64_t next;   /* offset after the last message taken (-1: none) */
} st_part;

typedef struct {
    st_conf c;
    sl_schema *schema;
    sl__ctx ctx;
    void *pg_conf, *pg;
    rd_kafka_t *rk;
    sl__kafka_dlq *dlq;
    char *offsets; /* "schema"."sluice_offsets" */
    char owner[160];
    int assignments;
    st_part *p;
    int np;
    int64_t *end; /* bounded: per partition */
    int nend;
    sl_batch *batch;
    sl__csv_dec csv;
    sl__json_dec json;
    sl__avro *avro;
    char delim;
    char *mask;
    size_t mask_cap;
    uint64_t rows_pending;
    uint64_t first_pending_ms;
    bool pending;
    /* store_offsets' view of the chunk being committed */
    int *chunk_parts;
    int nchunk;
    char fenced[512];
    int failed;
    char err[1024];
    uint64_t rows_total, msgs_total;
} st_task;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the schema text ----------------------------------------------------- */
static int parse_type(const char *t, size_t n, sl_type *out)
{
    static const struct {
        const char *name;
        sl_type type;
    } types[] = {{"BIGINT", SL_INT64},      {"INT64", SL_INT64},   {"INTEGER", SL_INT64},
                 {"INT", SL_INT64},         {"DOUBLE", SL_FLOAT64}, {"FLOAT64", SL_FLOAT64},
                 {"FLOAT", SL_FLOAT64},     {"BOOLEAN", SL_BOOL},   {"BOOL", SL_BOOL},
                 {"VARCHAR", SL_STRING},    {"STRING", SL_STRING},  {"TEXT", SL_STRING},
                 {"TIMESTAMP", SL_TIMESTAMP}};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (strlen(types[i].name) == n && !strncasecmp(types[i].name, t, n)) {
            *out = types[i].type;
            return 0;
        }
    return -1;
}

static int parse_schema(const char *text, sl_schema **out, char *err, size_t esz)
{
    sl_schema *s = sl_schema_new();
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n') p++;
        const char *name = p;
        while (*p && *p != ' ' && *p != '\t' && *p != ',') p++;
        size_t nl = (size_t)(p - name);
        while (*p == ' ' || *p == '\t') p++;
        const char *type = p;
        while (*p && *p != ' ' && *p != '\t' && *p != ',' && *p != '\n') p++;
        size_t tl = (size_t)(p - type);
        while (*p == ' ' || *p == '\t' || *p == '\n') p++;
        sl_type t;
        char col[128];
        if (nl == 0 || nl >= sizeof col || tl == 0 || parse_type(type, tl, &t) ||
            (*p && *p != ',')) {
            sl_schema_free(s);
            return sl__err(err, esz, SL_EINVAL, "postgres sink task: schema: expected "
                           "'name TYPE, ...' (TYPE BIGINT, DOUBLE, BOOLEAN, VARCHAR or "
                           "TIMESTAMP) at '%.40s'", name);
        }
        memcpy(col, name, nl);
        col[nl] = 0;
        if (sl_schema_add(s, col, t) < 0) {
            sl_schema_free(s);
            return sl__err(err, esz, SL_EINVAL, "postgres sink task: schema: column "
                           "'%s' is repeated or there are more than %d columns", col,
                           SL_MAX_COLS);
        }
        if (!*p) break;
        p++;
    }
    *out = s;
    return 0;
}

/* ---- offsets in the database --------------------------------------------- */
typedef struct {
    st_task *t;
    const rd_kafka_topic_partition_list_t *l;
} assign_arg;

/* Invariant 3: takes ownership of the assigned partitions and reads their
 * offsets, in one transaction. */
static PGresult *on_assign_step(PGconn *db, void *arg)
{
    assign_arg *a = arg;
    st_task *t = a->t;
    sl__pg_buf b = {0};
    sl__pg_adds(&b, "INSERT INTO ");
    sl__pg_adds(&b, t->offsets);
    sl__pg_adds(&b, " AS o (job, topic, partition, next_offset, owner) VALUES ($1, $2, "
                    "$3, -1, $4) ON CONFLICT (job, topic, partition) DO UPDATE SET "
                    "owner = EXCLUDED.owner RETURNING o.next_offset");
    PGresult *r = NULL;
    for (int i = 0; i < a->l->cnt; i++) {
        char part[24];
        snprintf(part, sizeof part, "%d", (int)a->l->elems[i].partition);
        const char *params[4] = {t->c.name, t->c.topic, part, t->owner};
        r = PQexecParams(db, b.p, 4, NULL, params, NULL, NULL, 0);
        if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) break;
        a->l->elems[i].offset = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        r = NULL;
    }
    sl__pg_buf_free(&b);
    if (r) return r;
    return NULL;
}

/* The postgres sink's hook (invariants 1 and 3): moves the offsets of the
 * partitions in this chunk, if this task still owns them. */
static PGresult *store_offsets(PGconn *db, void *arg, bool *done)
{
    st_task *t = arg;
    sl__pg_buf b = {0};
    sl__pg_adds(&b, "UPDATE ");
    sl__pg_adds(&b, t->offsets);
    sl__pg_adds(&b, " SET next_offset = $5, committed_at = now() WHERE job = $1 AND "
                    "topic = $2 AND partition = $3 AND owner = $4 AND next_offset = $6");
    PGresult *r = NULL;
    for (int i = 0; i < t->nchunk; i++) {
        const st_part *p = &t->p[t->chunk_parts[i]];
        char part[24], to[24], from[24];
        snprintf(part, sizeof part, "%d", t->chunk_parts[i]);
        snprintf(to, sizeof to, "%" PRId64, p->next);
        snprintf(from, sizeof from, "%" PRId64, p->stored);
        const char *params[6] = {t->c.name, t->c.topic, part, t->owner, to, from};
        r = PQexecParams(db, b.p, 6, NULL, params, NULL, NULL, 0);
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) break;
        bool moved = strcmp(PQcmdTuples(r), "1") == 0;
        PQclear(r);
        r = NULL;
        if (moved) continue;
        /* not moved: either this chunk committed already (its COMMIT's
         * answer was lost) or another task owns the partition now */
        sl__pg_buf q = {0};
        sl__pg_adds(&q, "SELECT next_offset, owner FROM ");
        sl__pg_adds(&q, t->offsets);
        sl__pg_adds(&q, " WHERE job = $1 AND topic = $2 AND partition = $3");
        r = PQexecParams(db, q.p, 3, NULL, params, NULL, NULL, 0);
        sl__pg_buf_free(&q);
        if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) break;
        bool mine = PQntuples(r) == 1 && !strcmp(PQgetvalue(r, 0, 1), t->owner);
        int64_t now = PQntuples(r) == 1 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
        if (mine && now == p->next && i == 0) {
            PQclear(r);
            r = NULL;
            *done = true;
            break;
        }
        snprintf(t->fenced, sizeof t->fenced,
                 "partition %s/%d: the database holds offset %" PRId64 " of owner '%s', "
                 "this task expected %" PRId64 " of owner '%s': another sink task took "
                 "the partition over (this one was paused or cut off); it stops and "
                 "commits nothing", t->c.topic, t->chunk_parts[i], now,
                 PQntuples(r) == 1 ? PQgetvalue(r, 0, 1) : "(none)", p->stored, t->owner);
        PQclear(r);
        r = PQmakeEmptyPGresult(db, PGRES_BAD_RESPONSE);
        break;
    }
    sl__pg_buf_free(&b);
    return r;
}

/* Invariant 4, then 1: dead letters, then rows and offsets in one
 * transaction. */
static int commit_now(st_task *t)
{
    t->nchunk = 0;
    for (int i = 0; i < t->np; i++)
        if (t->p[i].assigned && t->p[i].next != t->p[i].stored && t->p[i].next >= 0)
            t->chunk_parts[t->nchunk++] = i;
    if (t->nchunk == 0 && t->rows_pending == 0) {
        t->pending = false;
        return 0;
    }
    int rc = sl__kafka_dlq_flush(t->dlq, (int)t->c.connect_ms, t->err, sizeof t->err);
    if (rc == 0) rc = sl__pg_sink_send(t->pg, t->err, sizeof t->err);
    if (rc) {
        if (t->fenced[0])
            snprintf(t->err, sizeof t->err, "postgres sink task: %s", t->fenced);
        return t->failed = rc;
    }
    for (int i = 0; i < t->nchunk; i++) t->p[t->chunk_parts[i]].stored = t->p[t->chunk_parts[i]].next;
    t->rows_pending = 0;
    t->pending = false;
    return 0;
}

static void grow_parts(st_task *t, int32_t part)
{
    if (part < t->np) return;
    int n = part + 1;
    t->p = sl__xrealloc(t->p, (size_t)n * sizeof *t->p);
    t->chunk_parts = sl__xrealloc(t->chunk_parts, (size_t)n * sizeof *t->chunk_parts);
    for (int i = t->np; i < n; i++) t->p[i] = (st_part){.stored = -1, .next = -1};
    t->np = n;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *l, void *opaque)
{
    st_task *t = opaque;
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        if (!t->failed) commit_now(t); /* what was read so far, with its offsets */
        for (int i = 0; i < t->np; i++) t->p[i].assigned = false;
        rd_kafka_assign(rk, NULL);
        sl__log(SL__LOG_INFO, "pg-sink-task", "partitions revoked", "topic=%s count=%d",
                t->c.topic, l->cnt);
        return;
    }
    if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS || t->failed) {
        rd_kafka_assign(rk, NULL);
        return;
    }
    t->assignments++;
    char *member = rd_kafka_memberid(rk);
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    snprintf(t->owner, sizeof t->owner, "%s/%d/%d/%s", host, (int)getpid(), t->assignments,
             member ? member : "");
    rd_kafka_mem_free(rk, member);
    assign_arg a = {t, l};
    int rc = sl__pg_sink_tx(t->pg, on_assign_step, &a, "reading the stored offsets of",
                            t->err, sizeof t->err);
    if (rc) {
        t->failed = rc;
        rd_kafka_assign(rk, NULL);
        return;
    }
    for (int i = 0; i < l->cnt; i++) {
        int32_t part = l->elems[i].partition;
        grow_parts(t, part);
        st_part *p = &t->p[part];
        p->assigned = true;
        p->stored = p->next = l->elems[i].offset;
        if (l->elems[i].offset < 0) l->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
        sl__log(SL__LOG_INFO, "pg-sink-task", "partition assigned",
                "topic=%s partition=%d offset=%" PRId64, t->c.topic, (int)part, p->stored);
    }
    rd_kafka_assign(rk, l);
}

/* ---- messages ------------------------------------------------------------ */
static void dead_letter(st_task *t, const rd_kafka_message_t *m, int64_t line,
                        const char *reason, const char *data, size_t n)
{
    if (n + 1 > t->mask_cap) {
        t->mask_cap = n + 1;
        t->mask = sl__xrealloc(t->mask, t->mask_cap);
    }
    size_t k = sl__mask_payload(t->schema, NULL, 0, 0, data, n, t->mask);
    char pos[400];
    snprintf(pos, sizeof pos, "%s/%d@%" PRId64 ":%" PRId64, t->c.topic, (int)m->partition,
             m->offset, line);
    char source[300];
    snprintf(source, sizeof source, "kafka:%s", t->c.topic);
    sl__dead_letter(&t->ctx, source, pos, reason, t->mask, k);
    sl__kafka_dlq_send(t->dlq, pos, reason, t->mask, k);
}

static int write_batch(st_task *t)
{
    if (t->batch->n == 0) return 0;
    int rc = sl__sink_postgres.write(t->pg, t->batch, t->err, sizeof t->err);
    t->rows_pending += t->batch->n;
    t->rows_total += t->batch->n;
    sl__batch_clear(t->batch);
    if (rc) t->failed = rc;
    return rc;
}

static int take_message(st_task *t, const rd_kafka_message_t *m)
{
    char reason[128];
    const char *pl = m->payload;
    size_t len = m->len;
    if (t->c.format == FMT_AVRO && len > 0) { /* empty: a tombstone, no record */
        int rc = sl__avro_decode(t->avro, pl, len, t->batch, reason, sizeof reason);
        if (rc) dead_letter(t, m, 1, reason, pl, len);
    } else if (t->c.format != FMT_AVRO) {
        size_t off = 0;
        int64_t line = 0;
        while (off < len) {
            const char *s = pl + off;
            const char *nl = memchr(s, '\n', len - off);
            size_t n = nl ? (size_t)(nl - s) : len - off;
            size_t rn = n && s[n - 1] == '\r' ? n - 1 : n;
            off += n + (nl != NULL);
            line++;
            if (rn == 0) continue;
            if (t->batch->n == t->batch->cap && write_batch(t)) return t->failed;
            int rc = t->c.format == FMT_CSV
                         ? sl__csv_decode(&t->csv, s, rn, t->batch, reason, sizeof reason)
                         : sl__json_decode(&t->json, s, rn, t->batch, reason, sizeof reason);
            if (rc == SL__DEC_MORE) { /* a quoted field spans lines: the record is
                                        * the rest of the message (as the source) */
                rn = len - (size_t)(s - pl);
                off = len;
                rc = sl__csv_decode(&t->csv, s, rn, t->batch, reason, sizeof reason);
                if (rc == SL__DEC_MORE) {
                    rc = SL_EPARSE;
                    snprintf(reason, sizeof reason, "malformed_csv");
                }
            }
            if (rc) dead_letter(t, m, line, reason, s, rn);
        }
    }
    t->msgs_total++;
    return write_batch(t);
}

/* ---- set-up -------------------------------------------------------------- */
/* The task's own keys, the postgres sink's (everything else) and the
 * librdkafka properties (properties.*). The sink's array has room for two
 * more entries. */
static void split_kv(const char *const *kv, char ***own, char ***pg, char ***props)
{
    char **rest = NULL;
    sl__kafka_split(kv, &rest, props);
    size_t n = 0;
    while (rest[n]) n++;
    char **mine = sl__xcalloc(n + 1, sizeof *mine), **g = sl__xcalloc(n + 3, sizeof *g);
    size_t nm = 0, ng = 0;
    for (size_t i = 0; rest[i]; i += 2) {
        bool is_mine = false;
        for (const sl__conf_def *d = st_defs; d->key; d++)
            if (!strcmp(d->key, rest[i])) is_mine = true;
        char **dst = is_mine ? mine : g;
        size_t *k = is_mine ? &nm : &ng;
        dst[(*k)++] = sl__xstrdup(rest[i]);
        dst[(*k)++] = sl__xstrdup(rest[i + 1]);
    }
    sl__kafka_kv_free(rest);
    *own = mine;
    *pg = g;
}

/* After a failure nothing more may commit: the postgres sink's final flush
 * at close would store offsets past rows or letters not handled. */
static PGresult *refuse(PGconn *db, void *arg, bool *done)
{
    (void)arg, (void)done;
    return PQmakeEmptyPGresult(db, PGRES_BAD_RESPONSE);
}

static void task_free(st_task *t)
{
    if (!t) return;
    if (t->pg && t->failed) sl__pg_sink_set_hook(t->pg, refuse, t);
    if (t->rk) {
        rd_kafka_consumer_close(t->rk);
        rd_kafka_destroy(t->rk);
    }
    sl__kafka_dlq_free(t->dlq);
    if (t->pg) sl__sink_postgres.close(t->pg);
    if (t->pg_conf) sl__sink_postgres.conf_free(t->pg_conf);
    if (t->c.format == FMT_CSV && t->schema) sl__csv_close(&t->csv);
    if (t->c.format == FMT_JSONL && t->schema) sl__json_close(&t->json);
    sl__avro_free(t->avro);
    sl__batch_free(t->batch);
    sl_schema_free(t->schema);
    sl__conf_free(st_defs, &t->c);
    free(t->offsets);
    free(t->p);
    free(t->chunk_parts);
    free(t->end);
    free(t->mask);
    free(t);
}

static PGresult *create_offsets_step(PGconn *db, void *arg)
{
    st_task *t = arg;
    sl__pg_buf b = {0};
    /* tasks starting at once: CREATE ... IF NOT EXISTS races (pg_type) */
    sl__pg_adds(&b, "SELECT pg_advisory_xact_lock(hashtext('sluice:' || ");
    sl__pg_buf lit = {0};
    sl__pg_adds(&lit, t->offsets);
    char *q = PQescapeLiteral(db, lit.p, lit.len);
    sl__pg_buf_free(&lit);
    if (!q) {
        sl__pg_buf_free(&b);
        return PQmakeEmptyPGresult(db, PGRES_FATAL_ERROR);
    }
    sl__pg_adds(&b, q);
    PQfreemem(q);
    sl__pg_adds(&b, ")); CREATE TABLE IF NOT EXISTS ");
    sl__pg_adds(&b, t->offsets);
    sl__pg_adds(&b, " (job text NOT NULL, topic text NOT NULL, partition integer NOT "
                    "NULL, next_offset bigint NOT NULL, owner text NOT NULL, "
                    "committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job, "
                    "topic, partition))");
    PGresult *f = NULL;
    sl__pg_exec(db, b.p, &f);
    sl__pg_buf_free(&b);
    return f;
}

/* Bounded mode: the end offset of every partition, found at start. */
static int find_ends(st_task *t)
{
    rd_kafka_topic_t *kt = rd_kafka_topic_new(t->rk, t->c.topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    uint64_t t0 = mono_ms();
    rd_kafka_resp_err_t e;
    for (;;) {
        e = rd_kafka_metadata(t->rk, 0, kt, &md, 2000);
        if (!e && md->topic_cnt == 1 && !md->topics[0].err) break;
        if (!e) e = md->topics[0].err;
        if (md) rd_kafka_metadata_destroy(md);
        md = NULL;
        if (mono_ms() - t0 > (uint64_t)t->c.connect_ms) break;
        struct timespec d = {.tv_sec = 0, .tv_nsec = 300000000};
        nanosleep(&d, NULL);
    }
    rd_kafka_topic_destroy(kt);
    if (!md)
        return t->failed = sl__err(t->err, sizeof t->err, SL_EIO, "postgres sink task: "
                                   "topic '%s' on %s: %s", t->c.topic, t->c.bootstrap,
                                   rd_kafka_err2str(e));
    t->nend = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    t->end = sl__xcalloc((size_t)t->nend + 1, sizeof *t->end);
    for (int i = 0; i < t->nend; i++) {
        int64_t lo = 0, hi = 0;
        e = rd_kafka_query_watermark_offsets(t->rk, t->c.topic, i, &lo, &hi,
                                             (int)t->c.connect_ms);
        if (e) return t->failed = sl__kafka_err(t->err, sizeof t->err,
                                                "postgres sink task", "end offsets", e);
        t->end[i] = hi;
    }
    return 0;
}

typedef struct {
    st_task *t;
    bool done;
} ends_arg;

static PGresult *ends_step(PGconn *db, void *arg)
{
    ends_arg *a = arg;
    st_task *t = a->t;
    sl__pg_buf b = {0};
    sl__pg_adds(&b, "SELECT partition, next_offset FROM ");
    sl__pg_adds(&b, t->offsets);
    sl__pg_adds(&b, " WHERE job = $1 AND topic = $2");
    const char *params[2] = {t->c.name, t->c.topic};
    PGresult *r = PQexecParams(db, b.p, 2, NULL, params, NULL, NULL, 0);
    sl__pg_buf_free(&b);
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK)
        return r ? r : PQmakeEmptyPGresult(db, PGRES_FATAL_ERROR);
    int reached = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        int part = atoi(PQgetvalue(r, i, 0));
        int64_t off = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        if (part < t->nend && t->end[part] > 0 && off >= t->end[part]) reached++;
    }
    int want = 0;
    for (int i = 0; i < t->nend; i++) want += t->end[i] > 0;
    a->done = reached == want;
    PQclear(r);
    return NULL;
}

static int setup(st_task *t, const char *const *kv)
{
    char **own = NULL, **pgkv = NULL, **props = NULL;
    split_kv(kv, &own, &pgkv, &props);
    int rc = sl__conf_apply(st_defs, &t->c, (const char *const *)own,
                            "postgres sink task", NULL, t->err, sizeof t->err);
    sl__kafka_kv_free(own);
    if (!rc) rc = parse_schema(t->c.schema, &t->schema, t->err, sizeof t->err);
    if (!rc) {
        const char *table = sl__kv_get((const char *const *)pgkv, "table");
        if (!t->c.group) {
            size_t n = strlen(table ? table : "") + 16;
            t->c.group = sl__xmalloc(n);
            snprintf(t->c.group, n, "sluice-sink-%s", table ? table : "");
        }
        if (!t->c.name) t->c.name = sl__xstrdup(t->c.group);
        /* the postgres sink sends only when told (invariant 2) */
        size_t n = 0;
        while (pgkv[n]) n += 2;
        pgkv[n] = sl__xstrdup("batch.rows");
        pgkv[n + 1] = sl__xstrdup("10000000");
        rc = sl__sink_postgres.configure(&t->pg_conf, (const char *const *)pgkv, t->schema,
                                         t->err, sizeof t->err);
        const char *unknown = strstr(t->err, "unknown key '");
        if (rc && unknown) { /* name both tables of keys, not the sink's alone */
            char mine[512] = "", theirs[sizeof t->err];
            snprintf(theirs, sizeof theirs, "%s", unknown + strlen("unknown key "));
            for (const sl__conf_def *k = st_defs; k->key; k++)
                snprintf(mine + strlen(mine), sizeof mine - strlen(mine), "%s%s",
                         k == st_defs ? "" : ", ", k->key);
            snprintf(t->err, sizeof t->err, "postgres sink task: unknown key %s; the task's "
                     "keys: %s; properties.<name> for librdkafka", theirs, mine);
        }
    }
    sl__kafka_kv_free(pgkv);
    const char *d = t->c.delimiter;
    if (!rc) {
        if (!strcmp(d, "\\t") || !strcmp(d, "tab")) t->delim = '\t';
        else if (strlen(d) == 1 && d[0] != '"' && d[0] != '\n') t->delim = d[0];
        else rc = sl__err(t->err, sizeof t->err, SL_EINVAL, "postgres sink task: "
                          "delimiter '%s' must be one character (or \\t)", d);
    }
    if (!rc && t->c.format == FMT_AVRO)
        rc = sl__avro_new(&t->avro, t->schema, t->c.avro_name, "postgres sink task",
                          t->err, sizeof t->err);
    if (rc) {
        sl__kafka_kv_free(props);
        return rc;
    }
    if (t->c.format == FMT_CSV) sl__csv_init(&t->csv, t->schema, t->delim);
    if (t->c.format == FMT_JSONL) sl__json_init(&t->json, t->schema);
    t->batch = sl__batch_new(t->schema, 1024);
    t->ctx = (sl__ctx){.job = NULL, .job_name = t->c.name, .delivery = SL__AT_LEAST_ONCE};
    if (!rc && t->c.dlq_topic)
        rc = sl__kafka_dlq_new(&t->dlq, t->c.bootstrap, t->c.dlq_topic, t->c.name,
                               (const char *const *)props, t->err, sizeof t->err);
    if (!rc) {
        static const char *const reserved[] = {"enable.auto.commit", "group.id",
                                               "isolation.level", NULL};
        const char *fixed[] = {"group.id", t->c.group, "enable.auto.commit", "false",
                               "enable.auto.offset.store", "false",
                               "enable.partition.eof", "true",
                               "isolation.level", "read_committed",
                               "auto.offset.reset", "earliest",
                               "client.id", "sluice-pg-sink-task", NULL};
        rd_kafka_conf_t *kc;
        rc = sl__kafka_conf(&kc, "postgres sink task", t->c.bootstrap, fixed,
                            (const char *const *)props, reserved, t->err, sizeof t->err);
        if (!rc) {
            rd_kafka_conf_set_rebalance_cb(kc, rebalance_cb);
            rc = sl__kafka_new(&t->rk, RD_KAFKA_CONSUMER, kc, t, "postgres sink task", t->err,
                               sizeof t->err);
        }
    }
    if (!rc)
        rc = sl__sink_postgres.open(&t->pg, t->pg_conf, t->schema, &t->ctx, t->err,
                                sizeof t->err);
    if (!rc) {
        sl__pg_sink_sibling(t->pg, "sluice_offsets", &t->offsets);
        sl__pg_sink_set_hook(t->pg, store_offsets, t);
        rc = sl__pg_sink_tx(t->pg, create_offsets_step, t, "creating sluice_offsets of",
                            t->err, sizeof t->err);
    }
    sl__kafka_kv_free(props);
    if (!rc && t->c.bounded) rc = find_ends(t);
    if (!rc) {
        rd_kafka_poll_set_consumer(t->rk);
        rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(sub, t->c.topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(t->rk, sub);
        rd_kafka_topic_partition_list_destroy(sub);
        if (e) rc = sl__kafka_err(t->err, sizeof t->err, "postgres sink task", "subscribe", e);
    }
    return rc;
}

/* ---- the loop ------------------------------------------------------------ */
static void handle(st_task *t, rd_kafka_message_t *m, time_t *last_err_log)
{
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        /* past the transaction markers up to the end: store that too, so
         * a bounded run sees the end reached */
        grow_parts(t, m->partition);
        st_part *p = &t->p[m->partition];
        if (p->assigned && m->offset > p->next) {
            p->next = m->offset;
            if (!t->pending) t->first_pending_ms = mono_ms();
            t->pending = true;
        }
        return;
    }
    if (m->err) {
        time_t now = time(NULL);
        if (now - *last_err_log >= 10) {
            *last_err_log = now;
            sl__log(SL__LOG_WARN, "pg-sink-task", "fetch error; retrying",
                    "topic=%s error=\"%s\"", t->c.topic, rd_kafka_message_errstr(m));
        }
        return;
    }
    grow_parts(t, m->partition);
    st_part *p = &t->p[m->partition];
    if (!p->assigned) return;
    if (take_message(t, m)) return;
    p->next = m->offset + 1;
    if (!t->pending) t->first_pending_ms = mono_ms();
    t->pending = true;
}

int sl_pg_sink_task_run(const char *const *kv, const volatile int *stop, char *errstr,
                        size_t errstr_size)
{
    st_task *t = sl__xcalloc(1, sizeof *t);
    int rc = setup(t, kv);
    time_t last_err_log = 0;
    uint64_t last_end_check = 0;
    while (!rc && !t->failed && !(stop && *stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(t->rk, 100);
        if (m) {
            handle(t, m, &last_err_log);
            rd_kafka_message_destroy(m);
        }
        if (t->failed) break;
        uint64_t now = mono_ms();
        if (t->pending && (t->rows_pending >= (uint64_t)t->c.batch_rows ||
                           now - t->first_pending_ms >= (uint64_t)t->c.commit_ms ||
                           (!m && t->c.bounded)))
            if (commit_now(t)) break;
        if (t->c.bounded && !m && !t->pending && now - last_end_check >= 200) {
            last_end_check = now;
            ends_arg a = {t, false};
            if (sl__pg_sink_tx(t->pg, ends_step, &a, "reading sluice_offsets of", t->err,
                               sizeof t->err)) {
                t->failed = SL_EIO;
                break;
            }
            if (a.done) break;
        }
    }
    bool ran = rc == 0;
    if (!rc && !t->failed) commit_now(t); /* SIGTERM: what was read, then exit */
    if (!rc) rc = t->failed;
    if (rc) snprintf(errstr, errstr_size, "%s", t->err);
    if (ran)
        sl__log(SL__LOG_INFO, "pg-sink-task", "stopped", "topic=%s messages=%" PRIu64
                " rows=%" PRIu64 " rc=%d", t->c.topic, t->msgs_total, t->rows_total, rc);
    task_free(t);
    return rc;
}

int sl_avro_schema(const char *columns, const char *name, char *out, size_t outsz,
                   uint64_t *fingerprint)
{
    sl_schema *s = NULL;
    sl__avro *a = NULL;
    int rc = parse_schema(columns, &s, out, outsz);
    if (!rc)
        rc = sl__avro_new(&a, s, name ? name : SL__AVRO_DEFAULT_NAME, "avro schema", out,
                          outsz);
    if (!rc) {
        snprintf(out, outsz, "%s", sl__avro_schema(a));
        *fingerprint = sl__avro_fingerprint(a);
    }
    sl__avro_free(a);
    sl_schema_free(s);
    return rc;
}
