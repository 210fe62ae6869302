/* exchange.c — the bounded SPSC channel (a lock-free ring with acquire/
 * release ordering) and the task-local FIFO of undelivered output. A full
 * channel refuses the message; the producer keeps it and stops reading:
 * that refusal is what back pressure is made of. */
#include <stdlib.h>

#include "exchange.h"

sl__chan *sl__chan_new(uint32_t batch_cap)
{
    sl__chan *c = sl__xcalloc(1, sizeof *c);
    uint32_t size = 16;
    while (size < batch_cap + 16) size <<= 1;
    c->ring = sl__xcalloc(size, sizeof(sl__msg));
    c->size = size;
    c->batch_cap = batch_cap;
    atomic_init(&c->head, 0);
    atomic_init(&c->tail, 0);
    atomic_init(&c->batches, 0);
    atomic_init(&c->bytes, 0);
    atomic_init(&c->bytes_peak, 0);
    return c;
}

void sl__chan_free(sl__chan *c)
{
    if (!c) return;
    sl__msg m;
    while (sl__chan_try_pop(c, &m))
        if (m.type == SL__MSG_BATCH) sl__batch_free(m.batch);
    free(c->ring);
    free(c);
}

bool sl__chan_try_push(sl__chan *c, const sl__msg *m)
{
    unsigned tail = atomic_load_explicit(&c->tail, memory_order_relaxed);
    unsigned head = atomic_load_explicit(&c->head, memory_order_acquire);
    if (tail - head >= c->size) return false;
    if (m->type == SL__MSG_BATCH) {
        unsigned nb = atomic_load_explicit(&c->batches, memory_order_acquire);
        if (nb >= c->batch_cap) return false;
        uint64_t held = atomic_load_explicit(&c->bytes, memory_order_acquire);
        if (c->byte_cap && nb > 0 && held >= c->byte_cap) return false;
        uint64_t sz = sl__batch_mem(m->batch);
        held = atomic_fetch_add_explicit(&c->bytes, sz, memory_order_acq_rel) + sz;
        if (held > atomic_load_explicit(&c->bytes_peak, memory_order_relaxed))
            atomic_store_explicit(&c->bytes_peak, held, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->batches, 1, memory_order_acq_rel);
    }
    c->ring[tail & (c->size - 1)] = *m;
    atomic_store_explicit(&c->tail, tail + 1, memory_order_release);
    return true;
}

bool sl__chan_try_pop(sl__chan *c, sl__msg *m)
{
    unsigned head = atomic_load_explicit(&c->head, memory_order_relaxed);
    unsigned tail = atomic_load_explicit(&c->tail, memory_order_acquire);
    if (head == tail) return false;
    *m = c->ring[head & (c->size - 1)];
    atomic_store_explicit(&c->head, head + 1, memory_order_release);
    if (m->type == SL__MSG_BATCH) {
        atomic_fetch_sub_explicit(&c->bytes, sl__batch_mem(m->batch), memory_order_acq_rel);
        atomic_fetch_sub_explicit(&c->batches, 1, memory_order_acq_rel);
    }
    return true;
}

struct sl__msgq_node {
    sl__msgq_node *next;
    sl__msg m;
};

void sl__msgq_push(sl__msgq *q, sl__msg m)
{
    sl__msgq_node *n = sl__xmalloc(sizeof *n);
    n->next = NULL;
    n->m = m;
    if (q->tail) q->tail->next = n;
    else q->head = n;
    q->tail = n;
}

const sl__msg *sl__msgq_peek(const sl__msgq *q) { return &q->head->m; }

void sl__msgq_pop(sl__msgq *q)
{
    sl__msgq_node *n = q->head;
    q->head = n->next;
    if (!q->head) q->tail = NULL;
    free(n);
}

void sl__msgq_clear(sl__msgq *q)
{
    while (q->head) {
        if (q->head->m.type == SL__MSG_BATCH) sl__batch_free(q->head->m.batch);
        sl__msgq_pop(q);
    }
}
