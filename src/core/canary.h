/* canary.h — the canary registry (production checks), private to core;
 * read by the observability layer through sl_job_canaries(). */
#ifndef SL_CANARY_H
#define SL_CANARY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define SL__CANARY_BUCKETS 15

typedef struct {
    _Atomic uint64_t bucket[SL__CANARY_BUCKETS + 1]; /* last: above every bound */
    _Atomic uint64_t count, sum_ns, last_ns;
} sl__canary_hist;

typedef struct {
    uint64_t interval_ns, timeout_ns;
    atomic_uint next;
    struct {
        _Atomic uint64_t inject_ns; /* 0 = free */
        _Atomic uint64_t seen_ns;   /* 0 = not yet at the sink */
        atomic_int partition; /* written at injection, read by the sweep */
    } s[256];
    _Atomic uint64_t injected, seen, committed, missing;
    sl__canary_hist pipeline, commit;
} sl__canaries;

void sl__canary_init(sl__canaries *c, uint64_t interval_ms, uint64_t timeout_ms);
/* Claims a slot for a canary injected now; 0 when none is free. */
int sl__canary_inject(sl__canaries *c, int partition, uint64_t now);
/* The sink saw the canary of `slot`; false if unknown or already seen. */
bool sl__canary_seen(sl__canaries *c, unsigned slot, uint64_t now);
/* The sink's output holding it became visible; frees the slot. */
void sl__canary_commit(sl__canaries *c, unsigned slot, uint64_t now, FILE *log);
/* Declares canaries not seen within the timeout missing; returns how many. */
int sl__canary_sweep(sl__canaries *c, uint64_t now);
/* Upper bounds (ms) of the latency histogram buckets. */
const uint64_t *sl__canary_bounds_ms(void);

struct sl_job;
/* The job's registry, for the observability layer (read with atomics). */
sl__canaries *sl__job_canaries(struct sl_job *job);

#endif
