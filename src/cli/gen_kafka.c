/* gen_kafka.c — `sluice gen --kafka BOOTSTRAP --topic T`: after the data set
 * is written, produces its events into a Kafka topic (CSV without header,
 * events batched per message) with a job of the public API: the file source
 * over DIR/events and the kafka sink, at-least-once with the idempotent
 * producer (one run without failure produces each event once). Each event
 * file's task writes to one partition (partitioner=fixed), so a partition
 * holds events in file order and watermarks stay tight. The lookup
 * tables stay files: the reference job loads them from there. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

int gen_to_kafka(const char *dir, const char *bootstrap, const char *topic,
                 const char *per_message, char *err, size_t errsz)
{
    static const char *const event_types[] = {"SMS_SENT", "SMS_RECEIVED", "CALL_PLACED",
                                              "CALL_RECEIVED", "DATA_SESSION", NULL};
    sl_schema *ev = sl_schema_new();
    sl_schema_add(ev, "ts", SL_TIMESTAMP);
    sl_schema_set_identifier(ev, sl_schema_add(ev, "msisdn", SL_STRING));
    sl_schema_set_domain(ev, sl_schema_add(ev, "event_type", SL_STRING), event_types);
    sl_schema_add(ev, "cell_id", SL_INT64);
    sl_schema_add(ev, "duration_s", SL_INT64);
    sl_schema_add(ev, "bytes", SL_INT64);
    char events[4200];
    snprintf(events, sizeof events, "%s/events", dir);
    sl_job *job = sl_job_new(err, errsz);
    int rc = job ? 0 : SL_ENOMEM;
    if (!rc) rc = sl_job_set(job, "delivery", "at-least-once", err, errsz);
    if (!rc) rc = sl_job_set(job, "name", "sluice-gen", err, errsz);
    if (!rc) {
        const char *src[] = {"path", events, NULL};
        const char *snk[] = {"bootstrap.servers", bootstrap, "topic", topic, "format", "csv",
                             "records.per.message", per_message, "partitioner", "fixed",
                             "properties.linger.ms", "20", NULL};
        sl_stream *s = sl_job_source(job, "file", ev, src);
        rc = s ? sl_stream_sink(s, "kafka", snk) : SL_EINVAL;
        if (!rc) rc = sl_job_run(job);
        if (rc) snprintf(err, errsz, "%s", sl_job_error(job) ? sl_job_error(job)
                                                              : sl_strerror(rc));
    }
    sl_job_free(job);
    sl_schema_free(ev);
    return rc;
}
