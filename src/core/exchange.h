/* exchange.h — bounded single-producer/single-consumer channels between the
 * tasks of adjacent stages, and the unbounded local FIFO a task keeps for
 * output its channels could not take yet. Private to the core layer. */
#ifndef SL_EXCHANGE_H
#define SL_EXCHANGE_H

#include <stdatomic.h>
#include <stdbool.h>

#include "core.h"

enum { SL__MSG_BATCH, SL__MSG_WATERMARK, SL__MSG_END };
typedef struct {
    int type;
    sl_batch *batch; /* SL__MSG_BATCH: ownership moves with the message */
    int64_t wm;
} sl__msg;

/* A ring of messages; at most `batch_cap` of them batches, and (with a
 * byte_cap) no further batch once they hold byte_cap bytes, so memory is
 * bounded by configuration while watermarks still get through. One batch
 * is always accepted into an empty channel, so a cap below a batch's size
 * slows the job down but never blocks it. */
typedef struct sl__chan {
    sl__msg *ring;
    uint32_t size; /* power of two */
    uint32_t batch_cap;
    uint64_t byte_cap; /* exchange.max.bytes; 0 = none (set before use) */
    atomic_uint_fast64_t bytes, bytes_peak; /* of queued batches */
    _Alignas(64) atomic_uint head; /* consumer */
    _Alignas(64) atomic_uint tail; /* producer */
    atomic_uint batches;
} sl__chan;

sl__chan *sl__chan_new(uint32_t batch_cap);
/* Frees the channel and any batches still in it. */
void sl__chan_free(sl__chan *c);
bool sl__chan_try_push(sl__chan *c, const sl__msg *m);
bool sl__chan_try_pop(sl__chan *c, sl__msg *m);

typedef struct sl__msgq_node sl__msgq_node;
typedef struct {
    sl__msgq_node *head, *tail;
} sl__msgq;
void sl__msgq_push(sl__msgq *q, sl__msg m);
static inline bool sl__msgq_empty(const sl__msgq *q) { return q->head == NULL; }
const sl__msg *sl__msgq_peek(const sl__msgq *q);
void sl__msgq_pop(sl__msgq *q);
void sl__msgq_clear(sl__msgq *q); /* frees queued batches */

#endif
