/* internal.h — what the obs layer's files share: the server object, the
 * sampler's derived figures and a growable text buffer. Private to obs. */
#ifndef SL_OBS_INTERNAL_H
#define SL_OBS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "core/stats.h"
#include "obs.h"

struct sl__obs_text {
    char *p;
    size_t len, cap;
};
void sl__obs_text_put(sl__obs_text *t, const char *s, size_t n);
void sl__obs_text_free(sl__obs_text *t);
/* Appends s as a JSON string / a Prometheus label value (quoted, escaped). */
void sl__obs_text_json(sl__obs_text *t, const char *s);
void sl__obs_text_label(sl__obs_text *t, const char *s);
#define SL__PUTS(t, lit) sl__obs_text_put((t), (lit), sizeof(lit) - 1)

/* Per task, derived by the sampler from two snapshots one second apart. */
typedef struct {
    double in_rate, out_rate; /* records/s through the task's chain */
    double busy;              /* fraction of the second spent in steps */
    double backpressure;      /* fraction of time its output was full/blocked */
} sl__obs_task_rate;

enum { OBS_HISTORY = 300, OBS_CK_HISTORY = 50 };

typedef struct {
    double t;        /* unix seconds */
    double in_rate, out_rate, backpressure;
} sl__obs_point;

typedef struct {
    uint64_t epoch;
    double t;        /* unix seconds when the sampler saw it complete */
    uint64_t ms, bytes, pause_us;
    bool failed;
} sl__obs_ck;

/* Histogram bucket bounds of sluice_checkpoint_duration_seconds. */
#define OBS_CK_BUCKETS 10
extern const double sl__obs_ck_bounds[OBS_CK_BUCKETS];

struct sl__obs {
    sl_job *job;
    struct MHD_Daemon *d;
    char url[128];
    char dash_dir[4096];
    double started;             /* unix seconds */
    /* endpoint security (server.c), fixed at start or used only by the
     * HTTP thread */
    char token[256];            /* bearer token; "" = no authentication */
    char files[32][64];         /* the dashboard's files, listed at start */
    int nfiles;
    int64_t rate_limit;         /* requests per second, 0 = none */
    int64_t rate_sec, rate_n;   /* current second (monotonic) and its count */
    pthread_t sampler;
    atomic_int stop;
    pthread_mutex_t lock;       /* guards everything below */
    int ntasks;
    sl__obs_task_rate *rates;
    sl__obs_rates job_rates;
    sl__obs_point hist[OBS_HISTORY];
    int nhist, hist_at;
    sl__obs_ck ck[OBS_CK_HISTORY];
    int nck, ck_at;
    uint64_t ck_seen, ckf_seen;
    double ck_last_t;           /* unix seconds of the last completion seen */
    uint64_t ck_hist[OBS_CK_BUCKETS + 1];
    uint64_t ck_hist_n;
    double ck_hist_sum;
};

double sl__obs_now(void); /* wall clock, unix seconds */
/* /metrics and /status bodies. */
void sl__obs_render_metrics(sl__obs *o, sl__obs_text *t);
void sl__obs_render_status(sl__obs *o, sl__obs_text *t);
/* The registry's application counters and external collectors. */
void sl__obs_registry_render(sl__obs_text *t);
/* {"name{labels}": value, ...}: application counters, then the job's
 * labelled business counters (sl__job_counter) */
void sl__obs_registry_json(sl__obs_text *t, const sl_job *j);

/* GET /state/<op>?key=...: renders the answer (or a JSON error) into t and
 * returns the HTTP status (state.c). */
unsigned sl__obs_render_state(sl__obs *o, const char *op, const char *key,
                              sl__obs_text *t);

#endif
