/* instance.c — one instance of the distributed mode (`sluice run JOB
 * --cluster BOOTSTRAP`): checks that the job can run distributed, creates
 * the repartition and changelog topics, and drives both stages of the job
 * in one thread with a consumer group and a transactional producer each.
 * Kafka does the rest: the groups place the partitions (tasks) on the
 * instances and move them when one dies or joins; the transactions make
 * each stage's epoch (outputs, changelog, input offsets) atomic.
 *
 * It implements no membership, consensus or shuffle of its own, and keeps
 * nothing on local disk.
 *
 * Invariants:
 * 1. An epoch of a stage is ONE transaction of that stage's producer: its
 *    outputs, its changelog records and its input offsets, sent with the
 *    group's metadata (KIP-447) so a member of an older generation — a
 *    zombie — cannot commit (epoch_commit).
 * 2. Whatever ends an epoch without a commit (a failed commit, a
 *    revocation) drops the stage's in-memory progress and rewinds it to
 *    the last commit: state restored from the changelog, input from the
 *    committed offsets (stage_rewind, on_rebalance).
 * 3. Nothing is produced outside an open transaction (sl__clu_produce).
 * 4. A bounded job ends on every instance once every repartition
 *    partition's committed offset carries the "done" metadata, i.e. every
 *    key group has seen the end of every source partition and committed
 *    its last results (job_done).
 * 5. A stage whose commit was refused, or whose assignment was lost with
 *    an epoch open, starts its next epoch with a new producer (epoch_abort,
 *    producer_renew). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster/internal.h"
#include "core/log.h"

#define COMMIT_TIMEOUT_MS 60000

int64_t sl__clu_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int sl__clu_fail(clu *c, int code, const char *fmt, ...)
{
    if (!c->fatal) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, sizeof c->err, fmt, ap);
        va_end(ap);
        c->fatal = code ? code : SL_EINTERNAL;
    }
    return code;
}

/* ---- transactions -------------------------------------------------------- */
static int txn_error(clu *c, xstage *x, const char *what, rd_kafka_error_t *e)
{
    char err[512];
    int rc = sl__kafka_err_obj(err, sizeof err, x->idx == 1 ? "cluster stage 1"
                                                            : "cluster stage 2", what, e);
    sl__log(SL__LOG_WARN, "cluster", "epoch failed; rewinding to the last commit",
            "stage=%d epoch=%" PRIu64 " error=\"%s\"", x->idx, x->epoch, err);
    (void)c;
    return rc;
}

int sl__clu_begin(xstage *x)
{
    if (x->txn_open) return 0;
    rd_kafka_error_t *e = rd_kafka_begin_transaction(x->prod);
    if (e) {
        txn_error(x->c, x, "begin_transaction", e);
        x->reset = true;
        return SL_ESTATE;
    }
    x->txn_open = true;
    x->epoch_t0 = sl__clock();
    x->epoch++;
    sl__log(SL__LOG_DEBUG, "cluster", "epoch begun", "stage=%d epoch=%" PRIu64, x->idx,
            x->epoch);
    return 0;
}

int sl__clu_produce(xstage *x, const char *topic, int32_t part, const void *key,
                    size_t klen, const void *val, size_t vlen)
{
    int rc = sl__clu_begin(x);
    if (rc) return rc;
    int64_t t0 = sl__clu_now_ms();
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            x->prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY((void *)key, klen),
            RD_KAFKA_V_VALUE((void *)val, vlen), RD_KAFKA_V_END);
        if (!e) return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || sl__clu_now_ms() - t0 > COMMIT_TIMEOUT_MS) {
            sl__log(SL__LOG_WARN, "cluster", "produce failed; rewinding to the last commit",
                    "stage=%d epoch=%" PRIu64 " topic=%s error=\"%s\"", x->idx, x->epoch,
                    topic, rd_kafka_err2str(e));
            x->reset = true;
            return SL_EIO;
        }
        rd_kafka_poll(x->prod, 50); /* back pressure: the queue is bounded */
    }
}

static int make_producer(clu *c, xstage *x, char *err, size_t esz)
{
    char tmo[32];
    snprintf(tmo, sizeof tmo, "%" PRId64, c->cut.txn_timeout_ms);
    const char *fixed[] = {"transactional.id", x->txn_id, "enable.idempotence", "true",
                           "transaction.timeout.ms", tmo, "linger.ms", "5",
                           "client.id", x->idx == 1 ? "sluice-cluster-s1" : "sluice-cluster-s2",
                           NULL};
    rd_kafka_conf_t *kc;
    int rc = sl__kafka_conf(&kc, "cluster", c->bootstrap, fixed, NULL, NULL, err, esz);
    if (rc) return rc;
    if ((rc = sl__kafka_new(&x->prod, RD_KAFKA_PRODUCER, kc, NULL, "cluster", err, esz)))
        return rc;
    /* fences an older producer with the same transactional.id and aborts
     * whatever it left open */
    rd_kafka_error_t *e = rd_kafka_init_transactions(x->prod, COMMIT_TIMEOUT_MS);
    if (e) return sl__kafka_err_obj(err, esz, "cluster", "init_transactions", e);
    x->txn_open = false;
    return 0;
}

static void stage_drop(clu *c, xstage *x)
{
    if (x->idx == 1) sl__s1_revoke(c);
    else sl__s2_revoke(c);
}

/* A new producer with the same transactional.id (init_transactions fences
 * the old one's epoch and ends whatever it left open). */
static void producer_renew(clu *c, xstage *x, const char *why)
{
    char err[512];
    rd_kafka_destroy(x->prod);
    x->prod = NULL;
    sl__log(SL__LOG_INFO, "cluster", "producer replaced", "stage=%d epoch=%" PRIu64
            " reason=%s", x->idx, x->epoch, why);
    if (make_producer(c, x, err, sizeof err)) sl__clu_fail(c, SL_EIO, "%s", err);
}

/* Ends the open transaction without committing it. The producer is
 * replaced when it is in a fatal state (fenced: a newer instance took its
 * transactional.id, or the brokers aborted its transaction) and when the
 * stage was found a zombie (x->renew): its transactional state (producer
 * epoch, sequence numbers) may be one the brokers dropped while it was
 * away — a kept producer then failed its next epoch with
 * OUT_OF_ORDER_SEQUENCE_NUMBER. Kafka Streams re-initialises its thread
 * producer on the same occasion (TaskManager.handleLostAll, EOS v2). */
static void epoch_abort(clu *c, xstage *x)
{
    const char *renew = x->renew ? "zombie" : NULL;
    x->renew = false;
    if (x->txn_open) {
        rd_kafka_error_t *e = rd_kafka_abort_transaction(x->prod, COMMIT_TIMEOUT_MS);
        x->txn_open = false;
        x->aborts++;
        sl__log(SL__LOG_DEBUG, "cluster", "epoch aborted", "stage=%d epoch=%" PRIu64, x->idx,
                x->epoch);
        if (e) {
            bool fatal = rd_kafka_error_is_fatal(e);
            txn_error(c, x, "abort_transaction", e);
            if (fatal && !renew) renew = "fatal";
        }
    }
    if (renew) producer_renew(c, x, renew);
    if (x->idx == 2) sl__s2_aborted(c);
}

/* Invariant 2: back to the last commit, keeping the assignment. */
static int stage_rewind(clu *c, xstage *x);

static rd_kafka_topic_partition_list_t *positions(clu *c, xstage *x)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(
        x->owned ? x->owned->cnt : 1);
    for (int i = 0; x->owned && i < x->owned->cnt; i++) {
        if (x->pos[i] < 0) continue;
        rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_add(
            l, x->owned->elems[i].topic, x->owned->elems[i].partition);
        p->offset = x->pos[i];
        if (x->idx == 2 && sl__s2_part_done(c, x->owned->elems[i].partition)) {
            p->metadata = sl__xstrdup("done");
            p->metadata_size = 4;
        }
    }
    return l;
}

/* Invariant 1. Returns 0 (committed, or nothing to commit) or a negative
 * code after which the stage has been rewound. */
static int epoch_commit(clu *c, xstage *x)
{
    if (!x->owned) return 0;
    int rc = x->idx == 1 ? sl__s1_precommit(c) : sl__s2_precommit(c);
    if (rc || x->reset || c->fatal) return stage_rewind(c, x);
    if (!x->txn_open) return 0;
    /* from here on the brokers may see this epoch's commit; a test pausing
     * an instance reads this line to know whether its epoch was still open */
    sl__log(SL__LOG_DEBUG, "cluster", "epoch committing", "stage=%d epoch=%" PRIu64, x->idx,
            x->epoch);
    rd_kafka_topic_partition_list_t *offs = positions(c, x);
    rd_kafka_error_t *e = NULL;
    if (offs->cnt > 0) {
        rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata(x->cons);
        e = rd_kafka_send_offsets_to_transaction(x->prod, offs, md, COMMIT_TIMEOUT_MS);
        rd_kafka_consumer_group_metadata_destroy(md);
    }
    rd_kafka_topic_partition_list_destroy(offs);
    if (e) {
        /* ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID: the group
         * moved on without this instance (it was paused or cut off) */
        sl__log(SL__LOG_WARN, "cluster", "fenced: the epoch's offsets were refused, "
                "rejoining", "stage=%d epoch=%" PRIu64 " error=\"%s\"", x->idx, x->epoch,
                rd_kafka_error_string(e));
        txn_error(c, x, "send_offsets_to_transaction", e);
        x->renew = true;
        return stage_rewind(c, x);
    }
    for (int attempt = 0;; attempt++) {
        e = rd_kafka_commit_transaction(x->prod, COMMIT_TIMEOUT_MS);
        if (!e) break;
        if (rd_kafka_error_is_retriable(e) && attempt < 5) {
            rd_kafka_error_destroy(e);
            continue;
        }
        sl__log(SL__LOG_WARN, "cluster", "fenced or failed: the epoch's commit was "
                "refused, rejoining", "stage=%d epoch=%" PRIu64 " error=\"%s\"", x->idx,
                x->epoch, rd_kafka_error_string(e));
        txn_error(c, x, "commit_transaction", e);
        x->renew = true;
        return stage_rewind(c, x);
    }
    x->txn_open = false;
    x->commits++;
    sl__log(SL__LOG_DEBUG, "cluster", "epoch committed", "stage=%d epoch=%" PRIu64, x->idx,
            x->epoch);
    if (x->idx == 2) sl__s2_committed(c);
    if (!x->first_commit_logged) {
        x->first_commit_logged = true;
        sl__log(SL__LOG_INFO, "cluster", "first commit since assignment",
                "stage=%d instance=%s partitions=%d since_assign_ms=%" PRIu64, x->idx,
                c->iid, x->owned->cnt, (sl__clock() - x->assigned_at) / 1000000);
    }
    return 0;
}

/* ---- assignment ---------------------------------------------------------- */
static int on_assign(clu *c, xstage *x, const rd_kafka_topic_partition_list_t *l)
{
    if (x->owned) rd_kafka_topic_partition_list_destroy(x->owned);
    x->owned = rd_kafka_topic_partition_list_copy(l);
    free(x->pos);
    x->pos = sl__xcalloc((size_t)l->cnt + 1, sizeof *x->pos);
    x->assigned_at = sl__clock();
    x->first_commit_logged = false;
    /* the committed offsets, stable: waits for transactions that hold
     * offsets of these partitions to end (read_committed consumer) */
    rd_kafka_topic_partition_list_t *cm = rd_kafka_topic_partition_list_copy(l);
    rd_kafka_resp_err_t e = l->cnt ? rd_kafka_committed(x->cons, cm, COMMIT_TIMEOUT_MS)
                                   : RD_KAFKA_RESP_ERR_NO_ERROR;
    int rc = 0;
    if (e) {
        sl__log(SL__LOG_WARN, "cluster", "committed offsets unavailable; retrying",
                "stage=%d error=\"%s\"", x->idx, rd_kafka_err2str(e));
        x->reset = true;
        rd_kafka_topic_partition_list_destroy(cm);
        return SL_EIO;
    }
    for (int i = 0; i < cm->cnt; i++) x->pos[i] = cm->elems[i].offset >= 0 ? cm->elems[i].offset : -1;
    rc = x->idx == 1 ? sl__s1_assign(c, cm) : sl__s2_assign(c, l, cm);
    if (!rc) {
        rd_kafka_resp_err_t ae = rd_kafka_assign(x->cons, cm);
        if (ae) rc = sl__kafka_err(c->err, sizeof c->err, "cluster", "assign", ae);
    }
    rd_kafka_topic_partition_list_destroy(cm);
    if (rc) x->reset = true;
    char parts[512] = "";
    size_t n = 0;
    for (int i = 0; i < l->cnt && n < sizeof parts - 16; i++)
        n += (size_t)snprintf(parts + n, sizeof parts - n, "%s%d", i ? "," : "",
                              (int)l->elems[i].partition);
    sl__log(SL__LOG_INFO, "cluster", "partitions assigned", "stage=%d instance=%s count=%d "
            "partitions=%s", x->idx, c->iid, l->cnt, parts);
    return rc;
}

static void on_revoke(clu *c, xstage *x)
{
    bool lost = rd_kafka_assignment_lost(x->cons);
    sl__log(SL__LOG_INFO, "cluster", "partitions revoked", "stage=%d instance=%s "
            "open_epoch_aborted=%s epoch=%" PRIu64 " lost=%s", x->idx, c->iid,
            x->txn_open ? "yes" : "no", x->epoch, lost ? "yes" : "no");
    /* lost (session timed out): this instance is the zombie */
    if (lost && x->txn_open) x->renew = true;
    epoch_abort(c, x);
    stage_drop(c, x);
    rd_kafka_assign(x->cons, NULL);
    if (x->owned) rd_kafka_topic_partition_list_destroy(x->owned);
    x->owned = NULL;
    free(x->pos);
    x->pos = NULL;
    x->reset = false;
}

static int stage_rewind(clu *c, xstage *x)
{
    x->reset = false;
    /* the group already gave these partitions to others (the session
     * timed out: the instance was paused or cut off): restoring them would
     * only hold up the rebalance that brings the new assignment */
    if (x->owned && rd_kafka_assignment_lost(x->cons)) {
        on_revoke(c, x);
        return SL_EAGAIN;
    }
    epoch_abort(c, x);
    if (!x->owned) return SL_EAGAIN;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(x->owned);
    stage_drop(c, x);
    rd_kafka_assign(x->cons, NULL);
    on_assign(c, x, l);
    rd_kafka_topic_partition_list_destroy(l);
    return SL_EAGAIN;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *l, void *opaque)
{
    xstage *x = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS && x->c->closing) rd_kafka_assign(rk, NULL);
    else if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) on_assign(x->c, x, l);
    else on_revoke(x->c, x);
}

static int make_consumer(clu *c, xstage *x, char *err, size_t esz)
{
    char st[32];
    snprintf(st, sizeof st, "%" PRId64, c->cut.session_timeout_ms);
    const char *fixed[] = {"group.id", x->group, "enable.auto.commit", "false",
                           "enable.auto.offset.store", "false",
                           "isolation.level", "read_committed",
                           "auto.offset.reset", x->idx == 1 && c->src.latest ? "latest"
                                                                            : "earliest",
                           "session.timeout.ms", st,
                           /* range on the repartition topic: each instance owns a
                            * contiguous range of key groups */
                           "partition.assignment.strategy", x->idx == 1 ? "roundrobin"
                                                                        : "range",
                           "client.id", x->idx == 1 ? "sluice-cluster-s1" : "sluice-cluster-s2",
                           NULL};
    static const char *const reserved[] = {"group.id", "enable.auto.commit",
                                           "isolation.level", "partition.assignment.strategy",
                                           NULL};
    rd_kafka_conf_t *kc;
    int rc = sl__kafka_conf(&kc, "cluster", c->bootstrap, fixed,
                            x->idx == 1 ? c->src.props : NULL, reserved, err, esz);
    if (rc) return rc;
    rd_kafka_conf_set_rebalance_cb(kc, rebalance_cb);
    if ((rc = sl__kafka_new(&x->cons, RD_KAFKA_CONSUMER, kc, x, "cluster", err, esz)))
        return rc;
    rd_kafka_poll_set_consumer(x->cons);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(4);
    if (x->idx == 1)
        for (int i = 0; i < c->src.ntopics; i++)
            rd_kafka_topic_partition_list_add(sub, c->src.topics[i], RD_KAFKA_PARTITION_UA);
    else
        rd_kafka_topic_partition_list_add(sub, c->rep_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(x->cons, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) return sl__kafka_err(err, esz, "cluster", "subscribe", e);
    return 0;
}

/* ---- topics -------------------------------------------------------------- */
static int topic_partitions(rd_kafka_t *rk, const char *topic, int *n)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 10000);
    *n = -1;
    if (!e) {
        if (md->topic_cnt == 1 && !md->topics[0].err) *n = md->topics[0].partition_cnt;
        else e = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(t);
    return (int)e;
}

/* Creates `topic` with G partitions (compacted or not) unless it exists;
 * an existing one must have G partitions: its partitions are key groups. */
static int ensure_topic(clu *c, rd_kafka_t *rk, const char *topic, bool compact, char *err,
                        size_t esz)
{
    char why[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, c->G,
                                                    (int)c->cut.replication_factor, why,
                                                    sizeof why);
    if (!nt) return sl__err(err, esz, SL_EINVAL, "cluster: topic %s: %s", topic, why);
    if (compact) {
        rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact");
        /* small segments so the cleaner keeps the changelog near one record
         * per (operator, key group) and a restore reads little */
        rd_kafka_NewTopic_set_config(nt, "segment.bytes", "16777216");
        rd_kafka_NewTopic_set_config(nt, "min.cleanable.dirty.ratio", "0.1");
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TIMED_OUT;
    if (ev) {
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t n = 0;
        const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &n)
                                                 : NULL;
        e = rd_kafka_event_error(ev);
        if (!e && n == 1) e = rd_kafka_topic_result_error(tr[0]);
        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            snprintf(why, sizeof why, "%s", n == 1 && rd_kafka_topic_result_error_string(tr[0])
                     ? rd_kafka_topic_result_error_string(tr[0]) : rd_kafka_err2str(e));
        rd_kafka_event_destroy(ev);
    } else {
        snprintf(why, sizeof why, "no answer from the brokers in 30 s");
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        return sl__err(err, esz, SL_EIO, "cluster: cannot create topic %s: %s", topic, why);
    int np = -1;
    for (int i = 0; i < 60 && np < 0; i++) {
        if (topic_partitions(rk, topic, &np) || np < 0) {
            struct timespec d = {0, 250000000};
            nanosleep(&d, NULL);
        }
    }
    if (np != c->G)
        return sl__err(err, esz, SL_EINVAL, "cluster: topic %s has %d partitions but the job "
                       "has key.groups = %d (its partitions are the key groups): delete the "
                       "topic or set key.groups = %d", topic, np, c->G, np);
    return 0;
}

/* ---- checks -------------------------------------------------------------- */
/* Operators whose non-keyed (key group -1) section holds statistics only
 * (counters, late-record tables): in the distributed mode each instance
 * counts its own and the section is not kept. */
static bool stats_only_global(const char *op)
{
    return !strcmp(op, "window") || !strcmp(op, "session") || !strcmp(op, "interval_join");
}

static int check_job(clu *c, char *err, size_t esz)
{
    const sl__cut *k = &c->cut;
    if (k->src_vt != &sl__src_kafka)
        return sl__err(err, esz, SL_EINVAL, "--cluster: source %s: the distributed mode "
                       "reads Kafka topics (connector = 'kafka'); run other sources "
                       "without --cluster", k->src_vt->name);
    if (strcmp(k->sink_vt->name, "kafka") != 0)
        return sl__err(err, esz, SL_EINVAL, "--cluster: sink %s: the distributed mode writes "
                       "its results to Kafka (connector = 'kafka'; PostgreSQL through a "
                       "results topic and the sink task, see docs/distributed.md); %s "
                       "is an embedded-mode sink — run without --cluster",
                       k->sink_vt->name, k->sink_vt->name);
    if (k->delivery != SL__EXACTLY_ONCE)
        return sl__err(err, esz, SL_EINVAL, "--cluster: delivery must be exactly-once (every "
                       "epoch is a Kafka transaction)");
    for (int i = 0; i < k->nops1; i++)
        if (k->ops1[i].vt->snapshot)
            return sl__err(err, esz, SL_EINVAL, "--cluster: operator %s keeps state before "
                           "the job's key change; the distributed mode allows stateful "
                           "operators only after it (in the keyed stage)",
                           k->ops1[i].vt->name);
    for (int i = 0; i < k->nops2; i++)
        if (k->ops2[i].vt->snapshot && !stats_only_global(k->ops2[i].vt->name))
            return sl__err(err, esz, SL_EINVAL, "--cluster: operator %s keeps state that is "
                           "not partitioned by key group; the distributed mode supports "
                           "window, session and interval_join as stateful operators",
                           k->ops2[i].vt->name);
    if (k->txn_timeout_ms <= k->interval_ms)
        return sl__err(err, esz, SL_EINVAL, "cluster.transaction.timeout.ms (%" PRId64 ") must "
                       "exceed checkpoint.interval.ms (%" PRId64 "): an epoch is one "
                       "transaction", k->txn_timeout_ms, k->interval_ms);
    return 0;
}

/* ---- the run ------------------------------------------------------------- */
/* Invariant 4. */
static bool job_done(clu *c)
{
    if (!c->src.bounded) return false;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(c->G);
    for (int p = 0; p < c->G; p++) rd_kafka_topic_partition_list_add(l, c->rep_topic, p);
    bool done = !rd_kafka_committed(c->s2.cons, l, 10000);
    for (int i = 0; done && i < l->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &l->elems[i];
        done = !p->err && p->metadata_size == 4 && !memcmp(p->metadata, "done", 4);
    }
    rd_kafka_topic_partition_list_destroy(l);
    return done;
}

/* source.rate: stage 1 reads at most that many records per second. */
static bool rate_allows(clu *c)
{
    if (!c->cut.source_rate) return true;
    uint64_t now = sl__clock();
    if (!c->rate_t0) c->rate_t0 = now;
    double allowed = (double)(now - c->rate_t0) / 1e9 * (double)c->cut.source_rate;
    return (double)c->ctr[SL__CTR_RECORDS_IN] < allowed + 1;
}

static bool epoch_due(clu *c, xstage *x)
{
    return x->txn_open &&
           sl__clock() - x->epoch_t0 >= (uint64_t)c->cut.interval_ms * 1000000ULL;
}

static int step_stage(clu *c, xstage *x, int timeout_ms)
{
    int n = 0;
    /* an overdue epoch commits before anything else is read: after a pause
     * this is the zombie's late commit, which the group refuses */
    if (epoch_due(c, x) && !c->fatal) epoch_commit(c, x);
    for (; n < 512 && !c->fatal && (x->idx == 2 || rate_allows(c)); n++) {
        if (x->reset) {
            stage_rewind(c, x);
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(x->cons, n == 0 ? timeout_ms : 0);
        if (!m) break;
        int rc = 0;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                sl__log(SL__LOG_WARN, "cluster", "consumer error; retrying",
                        "stage=%d error=\"%s\"", x->idx, rd_kafka_message_errstr(m));
        } else if (x->owned) {
            for (int i = 0; i < x->owned->cnt; i++)
                if (x->owned->elems[i].partition == m->partition &&
                    !strcmp(x->owned->elems[i].topic, rd_kafka_topic_name(m->rkt))) {
                    rc = x->idx == 1 ? sl__s1_message(c, m) : sl__s2_message(c, m);
                    if (!rc) x->pos[i] = m->offset + 1;
                    break;
                }
        }
        rd_kafka_message_destroy(m);
        if (rc) x->reset = true;
    }
    bool due = epoch_due(c, x);
    bool extra = x->owned && !x->txn_open &&
                 (x->idx == 1 ? sl__s1_has_output(c) : sl__s2_has_output(c));
    if ((due || extra) && !c->fatal) epoch_commit(c, x);
    return n;
}

static void instance_id(clu *c)
{
    if (c->cut.instance_id && c->cut.instance_id[0]) {
        snprintf(c->iid, sizeof c->iid, "%s", c->cut.instance_id);
        return;
    }
    char host[128] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    snprintf(c->iid, sizeof c->iid, "%s-%ld", host, (long)getpid());
}

static int setup(clu *c, char *err, size_t esz)
{
    int rc = check_job(c, err, esz);
    if (rc) return rc;
    sl__kafka_source_info(c->cut.src_conf, &c->src);
    c->G = c->cut.key_groups;
    const char *job = c->cut.name ? c->cut.name : "job";
    snprintf(c->rep_topic, sizeof c->rep_topic, "sluice-%s-repartition", job);
    snprintf(c->chg_topic, sizeof c->chg_topic, "sluice-%s-changelog", job);
    instance_id(c);
    c->ctx = (sl__ctx){.job = c->job, .stage = 0, .task = 0, .ntasks = 1,
                       .outdir = c->cut.output_dir, .job_name = job,
                       .delivery = SL__AT_LEAST_ONCE, .key_groups = c->G, .ctr = c->ctr,
                       .window_max_groups = 0};
    for (int s = 1; s <= 2; s++) {
        xstage *x = s == 1 ? &c->s1 : &c->s2;
        x->c = c;
        x->idx = s;
        snprintf(x->group, sizeof x->group, "sluice-%s-s%d", job, s);
        snprintf(x->txn_id, sizeof x->txn_id, "sluice-%s-s%d-%s", job, s, c->iid);
    }
    if ((rc = make_producer(c, &c->s1, err, esz))) return rc;
    if ((rc = ensure_topic(c, c->s1.prod, c->rep_topic, false, err, esz)) ||
        (rc = ensure_topic(c, c->s1.prod, c->chg_topic, true, err, esz)))
        return rc;
    if ((rc = make_producer(c, &c->s2, err, esz))) return rc;
    if ((rc = sl__s1_open(c, err, esz)) || (rc = sl__s2_open(c, err, esz))) return rc;
    if ((rc = make_consumer(c, &c->s2, err, esz)) || (rc = make_consumer(c, &c->s1, err, esz)))
        return rc;
    sl__log(SL__LOG_INFO, "cluster", "instance started", "instance=%s job=%s key_groups=%d "
            "source_partitions=%d repartition=%s changelog=%s", c->iid, job, c->G, c->src.ntp,
            c->rep_topic, c->chg_topic);
    return 0;
}

static void teardown(clu *c)
{
    c->closing = true;
    for (int s = 1; s <= 2; s++) {
        xstage *x = s == 1 ? &c->s1 : &c->s2;
        if (x->cons) {
            rd_kafka_consumer_close(x->cons); /* revokes: aborts an open epoch */
            rd_kafka_destroy(x->cons);
        }
        if (x->prod) {
            if (x->txn_open) rd_kafka_error_destroy(rd_kafka_abort_transaction(x->prod, 10000));
            rd_kafka_destroy(x->prod);
        }
        if (x->owned) rd_kafka_topic_partition_list_destroy(x->owned);
        free(x->pos);
    }
    sl__s1_close(c);
    sl__s2_close(c);
}

/* The instance's counters reach the job (sl_job_stats_get, /metrics) as
 * they grow, not only at the end. */
static void publish_counters(clu *c)
{
    uint64_t d[SL__CTR_N];
    for (int k = 0; k < SL__CTR_N; k++) {
        uint64_t v = c->ctr[k];
        d[k] = v - c->published[k];
        c->published[k] = v;
    }
    sl__job_add_counters(c->job, d);
}

int sl_job_run_cluster(sl_job *job, const char *bootstrap)
{
    if (!job || !bootstrap || !bootstrap[0]) return SL_EINVAL;
    clu *c = sl__xcalloc(1, sizeof *c);
    c->job = job;
    c->bootstrap = bootstrap;
    char err[1024] = "";
    int rc = sl__job_cut(job, &c->cut, err, sizeof err);
    if (!rc) rc = setup(c, err, sizeof err);
    int64_t last_done_check = 0, last_publish = 0;
    while (!rc && !c->fatal && !sl__job_stopping(job)) {
        int n1 = step_stage(c, &c->s1, 0);
        int n2 = step_stage(c, &c->s2, n1 ? 0 : 5);
        if (sl__clu_now_ms() - last_publish >= 500) {
            last_publish = sl__clu_now_ms();
            publish_counters(c);
        }
        if (!n1 && !n2 && c->src.bounded && !c->s1.txn_open && !c->s2.txn_open &&
            sl__clu_now_ms() - last_done_check > 1000) {
            last_done_check = sl__clu_now_ms();
            if (job_done(c)) {
                sl__log(SL__LOG_INFO, "cluster", "every key group has seen the end of the "
                        "input and committed: done", "instance=%s", c->iid);
                break;
            }
        }
    }
    if (!rc && !c->fatal) { /* a graceful stop commits the open epochs */
        epoch_commit(c, &c->s1);
        epoch_commit(c, &c->s2);
    }
    if (!rc && c->fatal) {
        rc = c->fatal;
        snprintf(err, sizeof err, "%s", c->err);
    }
    teardown(c);
    publish_counters(c);
    sl__cut_free(&c->cut);
    free(c);
    if (rc) return sl__job_fail(job, rc, "%s", err[0] ? err : sl_strerror(rc));
    return 0;
}
