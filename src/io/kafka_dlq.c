/* kafka_dlq.c — the dead-letter topic: undecodable records of a Kafka
 * source (or of the PostgreSQL sink task) are produced to a topic, value =
 * the record's bytes with identifier fields already masked by the caller,
 * headers `reason`, `position` (topic/partition@offset:line) and `job`.
 *
 * Delivery is at-least-once: an idempotent producer (no duplicates from
 * its own retries), and sl__kafka_dlq_flush() before the owner makes its
 * input position durable (a checkpoint, or the sink task's offsets), so a
 * letter is never lost behind a committed position; a replay after a crash
 * may produce a letter again. It never blocks the caller's hot path
 * except in flush: a full local queue drops the letter (counted, logged
 * once every 10 s), because a dead letter must not stop the job.
 * It does not decode, mask or count: the caller does (sl__dead_letter). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "io/kafka.h"

struct sl__kafka_dlq {
    rd_kafka_t *rk;
    char *topic;
    char *job;
    uint64_t dropped;
    time_t last_drop_log;
};

int sl__kafka_dlq_new(sl__kafka_dlq **out, const char *bootstrap, const char *topic,
                      const char *job, const char *const *props, char *errstr,
                      size_t errstr_size)
{
    static const char *const reserved[] = {"enable.idempotence", "transactional.id",
                                           NULL};
    const char *fixed[] = {"enable.idempotence", "true", "acks", "all",
                           "client.id", "sluice-dead-letters", "linger.ms", "50", NULL};
    *out = NULL;
    rd_kafka_conf_t *kc;
    int rc = sl__kafka_conf(&kc, "kafka dead_letter.topic", bootstrap, fixed, props,
                            reserved, errstr, errstr_size);
    if (rc) return rc;
    rd_kafka_t *rk;
    rc = sl__kafka_new(&rk, RD_KAFKA_PRODUCER, kc, NULL, "kafka dead_letter.topic", errstr,
                       errstr_size);
    if (rc) return rc;
    sl__kafka_dlq *d = sl__xcalloc(1, sizeof *d);
    d->rk = rk;
    d->topic = sl__xstrdup(topic);
    d->job = sl__xstrdup(job ? job : "");
    *out = d;
    return 0;
}

void sl__kafka_dlq_send(sl__kafka_dlq *d, const char *position, const char *reason,
                        const char *payload, size_t len)
{
    if (!d) return;
    rd_kafka_poll(d->rk, 0); /* serve delivery reports */
    rd_kafka_resp_err_t e = rd_kafka_producev(
        d->rk, RD_KAFKA_V_TOPIC(d->topic), RD_KAFKA_V_VALUE((void *)payload, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADER("reason", reason, (ssize_t)strlen(reason)),
        RD_KAFKA_V_HEADER("position", position, (ssize_t)strlen(position)),
        RD_KAFKA_V_HEADER("job", d->job, (ssize_t)strlen(d->job)), RD_KAFKA_V_END);
    if (e) {
        time_t now = time(NULL);
        d->dropped++;
        if (now - d->last_drop_log >= 10) {
            d->last_drop_log = now;
            sl__log(SL__LOG_WARN, "kafka-dlq", "dead letter not produced",
                    "topic=%s error=\"%s\" dropped=%" PRIu64, d->topic,
                    rd_kafka_err2str(e), d->dropped);
        }
    }
}

int sl__kafka_dlq_flush(sl__kafka_dlq *d, int timeout_ms, char *errstr,
                        size_t errstr_size)
{
    if (!d || rd_kafka_outq_len(d->rk) == 0) return 0;
    rd_kafka_resp_err_t e = rd_kafka_flush(d->rk, timeout_ms);
    if (e)
        return sl__kafka_err(errstr, errstr_size, "kafka dead_letter.topic",
                             "flushing dead letters", e);
    return 0;
}

void sl__kafka_dlq_free(sl__kafka_dlq *d)
{
    if (!d) return;
    char err[256];
    if (sl__kafka_dlq_flush(d, 10000, err, sizeof err))
        sl__log(SL__LOG_WARN, "kafka-dlq", "dead letters not flushed at close",
                "topic=%s error=\"%s\"", d->topic, err);
    rd_kafka_destroy(d->rk);
    free(d->topic);
    free(d->job);
    free(d);
}
