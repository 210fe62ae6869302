/* canary.c — production checks: the runtime injects canary records at every
 * source partition on a schedule, operators pass them on apart from real
 * data (never counted, never suppressed; windows forward them at once), and
 * the sink task verifies them and measures two latencies: pipeline
 * (injection to sink write) and commit (injection to the commit that makes
 * the sink's output visible). A canary not seen within canary.timeout.ms is
 * reported missing.
 *
 * A canary is a row whose kind byte is not 0: the value (1..255) is its
 * slot in this registry, which holds the injection time. Every operator
 * already copies kinds, so no other side channel is needed. The registry is
 * memory only: after a restart in-flight canaries are forgotten, never
 * reported missing (they were not replayed: the source re-reads the input,
 * which never contained them).
 *
 * Invariants:
 * 1. A slot is owned by at most one outstanding canary: claimed by
 *    sl__canary_inject with a compare-and-swap on inject_ns, released when
 *    the canary commits or is declared missing (sl__canary_commit,
 *    sl__canary_sweep).
 * 2. A canary is counted seen, committed or missing at most once (the
 *    state moves 0 → injected → seen → free, or injected → missing → free).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "canary.h"
#include "log.h"

void sl__canary_init(sl__canaries *c, uint64_t interval_ms, uint64_t timeout_ms)
{
    memset(c, 0, sizeof *c);
    c->interval_ns = interval_ms * 1000000ULL;
    c->timeout_ns = timeout_ms * 1000000ULL;
}

static void hist_add(sl__canary_hist *h, uint64_t ns)
{
    static const uint64_t bounds_ms[SL__CANARY_BUCKETS] = {
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000};
    int b = 0;
    while (b < SL__CANARY_BUCKETS && ns > bounds_ms[b] * 1000000ULL) b++;
    atomic_fetch_add(&h->bucket[b], 1); /* b == BUCKETS: +Inf only */
    atomic_fetch_add(&h->count, 1);
    atomic_fetch_add(&h->sum_ns, ns);
    atomic_store(&h->last_ns, ns);
}

const uint64_t *sl__canary_bounds_ms(void)
{
    static const uint64_t b[SL__CANARY_BUCKETS] = {
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000};
    return b;
}

int sl__canary_inject(sl__canaries *c, int partition, uint64_t now)
{
    for (int k = 0; k < 255; k++) {
        unsigned slot = 1 + (atomic_fetch_add(&c->next, 1) % 255);
        uint64_t zero = 0;
        if (!atomic_compare_exchange_strong(&c->s[slot].inject_ns, &zero, now)) continue;
        atomic_store(&c->s[slot].seen_ns, 0);
        atomic_store(&c->s[slot].partition, partition);
        atomic_fetch_add(&c->injected, 1);
        return (int)slot;
    }
    return 0; /* every slot outstanding: skip this one */
}

bool sl__canary_seen(sl__canaries *c, unsigned slot, uint64_t now)
{
    if (slot == 0 || slot > 255) return false;
    uint64_t inj = atomic_load(&c->s[slot].inject_ns);
    uint64_t zero = 0;
    if (!inj || !atomic_compare_exchange_strong(&c->s[slot].seen_ns, &zero, now)) return false;
    atomic_fetch_add(&c->seen, 1);
    hist_add(&c->pipeline, now - inj);
    return true;
}

void sl__canary_commit(sl__canaries *c, unsigned slot, uint64_t now, FILE *log)
{
    uint64_t inj = atomic_load(&c->s[slot].inject_ns);
    uint64_t seen = atomic_load(&c->s[slot].seen_ns);
    if (!inj || !seen) return;
    hist_add(&c->commit, now - inj);
    atomic_fetch_add(&c->committed, 1);
    if (log) {
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        int64_t wall_ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
        fprintf(log, "{\"slot\":%u,\"partition\":%d,\"committed_at_ms\":%" PRId64
                ",\"pipeline_ms\":%.3f,\"commit_ms\":%.3f}\n", slot,
                atomic_load(&c->s[slot].partition), wall_ms, (double)(seen - inj) / 1e6,
                (double)(now - inj) / 1e6);
    }
    atomic_store(&c->s[slot].inject_ns, 0);
}

int sl__canary_sweep(sl__canaries *c, uint64_t now)
{
    int missing = 0;
    for (unsigned slot = 1; slot <= 255; slot++) {
        uint64_t inj = atomic_load(&c->s[slot].inject_ns);
        /* inj > now: injected after the caller read its clock (a source
         * thread races the sweep); it is not late, and now - inj would wrap */
        if (!inj || atomic_load(&c->s[slot].seen_ns) || inj > now || now - inj < c->timeout_ns)
            continue;
        if (!atomic_compare_exchange_strong(&c->s[slot].inject_ns, &inj, 0)) continue;
        atomic_fetch_add(&c->missing, 1);
        sl__log(SL__LOG_WARN, "canary", "canary missing: not seen at the sink in time",
                "canary=%u partition=%d after_s=%.1f", slot,
                atomic_load(&c->s[slot].partition),
                (double)(now - inj) / 1e9);
        missing++;
    }
    return missing;
}
