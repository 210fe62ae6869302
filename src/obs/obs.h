/* obs.h — the observability layer: a metrics registry exported in the
 * Prometheus text format (GET /metrics), a JSON status document (GET
 * /status) and the web dashboard's static files (GET /), served by
 * libmicrohttpd on the job key `metrics.address`.
 *
 * Layering: obs sits on top of core, like the CLI. Core never calls obs;
 * obs reads a running job through core's read-only snapshot (stats.h), so
 * it may be started before sl_job_run and stopped after it returns. The
 * program that runs the job (the CLI) starts and stops the server.
 *
 * Ownership: sl__obs_start returns a server the caller frees with
 * sl__obs_stop; it borrows the job, which must outlive it. */
#ifndef SL_OBS_H
#define SL_OBS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice.h"

typedef struct sl__obs sl__obs;

enum {
    /* When the address's port is in use, bind any free port instead (for the
     * CLI's default address; an address the user chose must bind or fail). */
    SL__OBS_ANY_PORT_IF_BUSY = 1
};

/* Starts serving the job on its `metrics.address`. *out is NULL when the
 * address is "" or "off". Returns 0 or SL_EINVAL/SL_EIO with errstr naming
 * the key and the address. */
int sl__obs_start(sl_job *job, int flags, sl__obs **out, char *errstr,
                  size_t errstr_size);
/* "http://HOST:PORT/" of a started server (lives as long as it). */
const char *sl__obs_url(const sl__obs *o);
/* Waits `metrics.linger.ms` (after the run, so a last scrape sees the final
 * figures), then stops serving and frees o. NULL is a no-op. */
void sl__obs_stop(sl__obs *o);

/* ---- the registry -------------------------------------------------------- */
/* Application counters (business metrics a job knows about, such as events
 * per event type). Returns a counter the caller increments with relaxed
 * atomics; the registry owns it for the life of the process. name must
 * follow Prometheus conventions (…_total); labels is a rendered label set
 * such as `event_type="SMS_SENT"` or "" — never record content that could
 * identify a person. Same (name, labels) twice gives the same counter.
 * Not checkpointed: it counts what this process saw. */
_Atomic uint64_t *sl__obs_counter(const char *name, const char *help,
                                  const char *labels);

/* External collectors append whole metric families at each scrape (the
 * canary module registers one for sluice_canary_*; see docs/metrics.md).
 * The writer appends Prometheus text: "# HELP", "# TYPE" and samples. */
typedef struct sl__obs_text sl__obs_text;
void sl__obs_text_printf(sl__obs_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
typedef void (*sl__obs_collect_fn)(sl__obs_text *t, void *udata);
void sl__obs_collector_add(sl__obs_collect_fn fn, void *udata);

/* Figures the sampler derived over the last second, for the CLI's progress
 * line (the same numbers /metrics and /status show). */
typedef struct {
    double in_rate, out_rate;  /* source records/s, sink records/s */
    double backpressure;       /* highest task back-pressure ratio, 0..1 */
} sl__obs_rates;
void sl__obs_rates_get(sl__obs *o, sl__obs_rates *r);

#endif
