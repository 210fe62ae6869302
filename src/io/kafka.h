/* kafka.h — what the Kafka source and sink share: librdkafka configuration
 * built from sluice keys plus `properties.*` pass-through, and translation of
 * librdkafka errors at the connector boundary.
 *
 * Ownership: sl__kafka_split returns arrays the caller frees with
 * sl__kafka_kv_free; sl__kafka_conf returns an rd_kafka_conf_t the caller
 * hands to rd_kafka_new (which takes it) or destroys. */
#ifndef SL_IO_KAFKA_H
#define SL_IO_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "core/runtime.h"

#define SL__KAFKA_PROP_PREFIX "properties."

/* Splits kv into the connector's own keys (*own) and the librdkafka
 * properties given as `properties.<name>` (*props, prefix removed). Both are
 * NULL-terminated key/value arrays. */
void sl__kafka_split(const char *const *kv, char ***own, char ***props);
void sl__kafka_kv_free(char **kv);

/* A librdkafka configuration: bootstrap.servers, then `fixed` pairs (set by
 * the connector, NULL-terminated), then the user's properties. A key
 * librdkafka does not know or a bad value is an error naming the key as the
 * user wrote it (`properties.<name>`) and librdkafka's reason. Keys in
 * `reserved` (NULL-terminated) may not be overridden by the user because the
 * connector's guarantees depend on them. */
int sl__kafka_conf(rd_kafka_conf_t **out, const char *component,
                   const char *bootstrap, const char *const *fixed,
                   const char *const *props, const char *const *reserved,
                   char *errstr, size_t errstr_size);

/* A client from a configuration sl__kafka_conf built: client logs through
 * sl__kafka_log_cb, `opaque` (if not NULL) handed to the callbacks the
 * caller set on kc. Takes kc in every case; a refusal is SL_EINVAL naming
 * the component and librdkafka's reason. */
int sl__kafka_new(rd_kafka_t **out, rd_kafka_type_t type, rd_kafka_conf_t *kc,
                  void *opaque, const char *component, char *errstr,
                  size_t errstr_size);

/* An error from librdkafka as an SL_E* code with detail: retriable and
 * transport errors become SL_EIO, the rest SL_EINVAL or SL_ESTATE. */
int sl__kafka_err(char *errstr, size_t errstr_size, const char *component,
                  const char *what, rd_kafka_resp_err_t err);
int sl__kafka_err_obj(char *errstr, size_t errstr_size, const char *component,
                      const char *what, rd_kafka_error_t *error);

/* Client log lines go to stderr as "sluice: kafka <component>: ..." with no
 * record content. */
void sl__kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                      const char *buf);

/* The dead-letter topic (kafka_dlq.c): an idempotent producer of masked
 * bad records with headers reason, position and job. send never blocks;
 * flush waits up to timeout_ms for every letter sent so far (call it
 * before making an input position durable); free flushes (10 s) and
 * destroys. free(NULL) and send/flush on NULL are no-ops. */
typedef struct sl__kafka_dlq sl__kafka_dlq;
int sl__kafka_dlq_new(sl__kafka_dlq **out, const char *bootstrap, const char *topic,
                      const char *job, const char *const *props, char *errstr,
                      size_t errstr_size);
void sl__kafka_dlq_send(sl__kafka_dlq *d, const char *position, const char *reason,
                        const char *payload, size_t len);
int sl__kafka_dlq_flush(sl__kafka_dlq *d, int timeout_ms, char *errstr,
                        size_t errstr_size);
void sl__kafka_dlq_free(sl__kafka_dlq *d);

extern const sl__source_vt sl__src_kafka;
extern const sl__sink_vt sl__sink_kafka;
extern const sl__conf_def sl__kafka_source_conf[]; /* for the docs */
extern const sl__conf_def sl__kafka_sink_conf[];

/* ---- decoding messages (kafka_source.c), shared with the cluster runtime -- */
/* A decoder of the source's records (format, delimiter, key.column,
 * timestamp.column) for the configuration `conf` made by
 * sl__src_kafka.configure, which must outlive it. Bad lines go to
 * sl__dead_letter(ctx, ...) with the position topic/partition@offset:line,
 * identifier fields masked. Freed with sl__kafka_dec_free (NULL: no-op). */
typedef struct sl__kafka_dec sl__kafka_dec;
int sl__kafka_dec_new(sl__kafka_dec **out, const void *conf, const sl_schema *schema,
                      sl__ctx *ctx, char *errstr, size_t errstr_size);
void sl__kafka_dec_free(sl__kafka_dec *d);
/* Where the decoding of one message stands: byte offset of its next line,
 * lines already passed, lines still to skip (a restore mid-message). */
typedef struct {
    size_t moff;
    int64_t line, skip;
} sl__kafka_msgpos;
/* Decodes lines of m from *pos into b until b is full or the message is
 * done (pos->moff >= m->len). Returns the rows appended plus the lines
 * dead-lettered (> 0 means progress). */
int sl__kafka_dec_message(sl__kafka_dec *d, const rd_kafka_message_t *m,
                          sl__kafka_msgpos *pos, sl_batch *b);
/* The source configuration as the cluster runtime needs it; every pointer
 * is borrowed from conf. tp_* list the topic partitions (source partition
 * i is tp_topic[i]/tp_part[i]); tp_end[i] is where a bounded one ends. */
typedef struct {
    const char *bootstrap;
    const char *const *props; /* properties.* pass-through, prefix removed */
    const char *const *topics;
    int ntopics;
    bool bounded, latest;
    int ntp;
    const char *const *tp_topic;
    const int32_t *tp_part;
    const int64_t *tp_end;
} sl__kafka_src_info;
void sl__kafka_source_info(const void *conf, sl__kafka_src_info *out);

/* Cluster mode (src/cluster): an instance of the kafka sink `conf` that
 * produces into rk — the cluster runtime's transactional producer, borrowed
 * — inside the transaction the runtime opened and commits. write encodes
 * and produces; flush only sends a partly batched message. Closed with
 * sl__sink_kafka.close, which leaves rk alone. */
int sl__kafka_sink_open_txn(void **out, const void *conf, const sl_schema *in,
                            sl__ctx *ctx, rd_kafka_t *rk, char *errstr,
                            size_t errstr_size);

#endif
