/* metrics.c — the runtime's metrics in the Prometheus text exposition
 * format (version 0.0.4), collected at each scrape from core's snapshot of
 * the job (exact counters) and the sampler's derived gauges (rates, back
 * pressure). Every metric here is listed in docs/metrics.md. Labels are
 * stage and task indices, the stage's operator chain and fixed reason
 * strings: never record content, so never a subscriber identifier. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/canary.h"
#include "internal.h"

const double sl__obs_ck_bounds[OBS_CK_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1,
                                                  0.25,  0.5,  1,     2.5,  10};

static void family(sl__obs_text *t, const char *name, const char *type,
                   const char *help)
{
    sl__obs_text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void job_value(sl__obs_text *t, const char *name, const char *type,
                      const char *help, double v)
{
    family(t, name, type, help);
    sl__obs_text_printf(t, "%s %.15g\n", name, v);
}

/* The job's labelled business counters (checkpointed by the operators
 * that count them), one family per name. */
typedef struct {
    sl__obs_text *t;
    const char *name; /* the family being written */
    bool header;      /* its # HELP / # TYPE written */
    char names[16][96];
    int nn;
} jc_walk;

static void jc_name(void *ud, const char *name, const char *help, const char *labels,
                    uint64_t v)
{
    (void)help, (void)labels, (void)v;
    jc_walk *w = ud;
    for (int i = 0; i < w->nn; i++)
        if (!strcmp(w->names[i], name)) return;
    if (w->nn < 16) snprintf(w->names[w->nn++], sizeof w->names[0], "%s", name);
}

static void jc_sample(void *ud, const char *name, const char *help, const char *labels,
                      uint64_t v)
{
    jc_walk *w = ud;
    if (strcmp(name, w->name) != 0) return;
    if (!w->header) {
        family(w->t, name, "counter", help);
        w->header = true;
    }
    sl__obs_text_printf(w->t, "%s{%s} %llu\n", name, labels, (unsigned long long)v);
}

static void render_job_counters(sl__obs_text *t, const sl_job *j)
{
    jc_walk w = {.t = t};
    sl__job_counters_each(j, jc_name, &w);
    for (int i = 0; i < w.nn; i++) {
        jc_walk f = {.t = t, .name = w.names[i]};
        sl__job_counters_each(j, jc_sample, &f);
    }
}

typedef double (*task_fn)(const sl__task_stat *s, const sl__obs_task_rate *r,
                          double now);

static void per_task(sl__obs_text *t, const sl__job_snap *s,
                     const sl__obs_task_rate *r, int nr, const char *name,
                     const char *type, const char *help, const char *extra,
                     task_fn fn, double now, bool skip_nan)
{
    if (!s->ntasks) return;
    family(t, name, type, help);
    for (int i = 0; i < s->ntasks; i++) {
        static const sl__obs_task_rate zero;
        double v = fn(&s->tasks[i], i < nr ? &r[i] : &zero, now);
        if (skip_nan && v != v) continue;
        sl__obs_text_printf(t, "%s{stage=\"%d\",task=\"%d\"%s} %.15g\n", name,
                            s->tasks[i].stage, s->tasks[i].task, extra, v);
    }
}

#define TF(fname, expr)                                                        \
    static double fname(const sl__task_stat *s, const sl__obs_task_rate *r,    \
                        double now)                                            \
    {                                                                          \
        (void)s; (void)r; (void)now;                                           \
        return (double)(expr);                                                 \
    }
TF(f_in, s->records_in)
TF(f_out, s->records_out)
TF(f_batches, s->batches_in)
TF(f_busy, (double)s->busy_ns / 1e9)
TF(f_steps, s->steps)
TF(f_blocked, (double)s->ctr[SL__CTR_BLOCKED_NS] / 1e9)
TF(f_bp, r->backpressure)
TF(f_busy_ratio, r->busy)
TF(f_in_rate, r->in_rate)
TF(f_out_rate, r->out_rate)
TF(f_q, s->in_queue)
TF(f_qcap, s->in_queue_cap)
TF(f_bytes_in, (double)s->bytes_in)
TF(f_bytes_out, (double)s->bytes_out)
TF(f_qbytes, (double)s->in_queue_bytes)
TF(f_qbytes_peak, (double)s->in_queue_bytes_peak)
TF(f_qfill, s->in_queue_cap ? (double)s->in_queue / s->in_queue_cap : 0.0)
TF(f_src, s->ctr[SL__CTR_RECORDS_IN])
TF(f_sink, s->ctr[SL__CTR_RECORDS_OUT])
TF(f_windows, s->ctr[SL__CTR_WINDOWS_FIRED])
TF(f_suppr, s->ctr[SL__CTR_SUPPRESSED])
TF(f_folded, s->ctr[SL__CTR_FOLDED])
TF(f_late, s->ctr[SL__CTR_LATE])
TF(f_dead, s->ctr[SL__CTR_DEAD_LETTERS])
TF(f_pause_sum, (double)s->pause_ns / 1e9)
TF(f_pauses, s->pauses)
TF(f_pause_max, (double)s->pause_max_ns / 1e9)
#undef TF

static double f_wm(const sl__task_stat *s, const sl__obs_task_rate *r, double now)
{
    (void)r; (void)now;
    if (s->watermark == SL_TS_MIN || s->watermark == SL_TS_MAX) return NAN;
    return (double)s->watermark / 1000.0;
}

static double f_lag(const sl__task_stat *s, const sl__obs_task_rate *r, double now)
{
    (void)r;
    if (s->watermark == SL_TS_MIN || s->watermark == SL_TS_MAX) return NAN;
    return now - (double)s->watermark / 1000.0;
}

static void canary_hist(sl__obs_text *t, const char *name, const char *help,
                        sl__canary_hist *h)
{
    family(t, name, "histogram", help);
    const uint64_t *bounds = sl__canary_bounds_ms();
    uint64_t cum = 0;
    for (int b = 0; b < SL__CANARY_BUCKETS; b++) {
        cum += atomic_load(&h->bucket[b]);
        sl__obs_text_printf(t, "%s_bucket{le=\"%g\"} %llu\n", name,
                            (double)bounds[b] / 1000.0, (unsigned long long)cum);
    }
    uint64_t n = atomic_load(&h->count);
    sl__obs_text_printf(t, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n",
                        name, (unsigned long long)n, name,
                        (double)atomic_load(&h->sum_ns) / 1e9, name,
                        (unsigned long long)n);
}

/* Production checks (core/canary.c): counts and both latencies. */
static void render_canaries(sl__obs_text *t, sl__canaries *c)
{
    job_value(t, "sluice_canaries_injected_total", "counter",
              "Canary records injected at the source partitions.",
              (double)atomic_load(&c->injected));
    job_value(t, "sluice_canaries_seen_total", "counter",
              "Canary records that reached the sink.", (double)atomic_load(&c->seen));
    job_value(t, "sluice_canaries_committed_total", "counter",
              "Canary records whose sink output became visible.",
              (double)atomic_load(&c->committed));
    job_value(t, "sluice_canaries_missing_total", "counter",
              "Canary records not seen at the sink within canary.timeout.ms.",
              (double)atomic_load(&c->missing));
    canary_hist(t, "sluice_canary_pipeline_latency_seconds",
                "Canary latency from injection at the source to the sink's write.",
                &c->pipeline);
    canary_hist(t, "sluice_canary_commit_latency_seconds",
                "Canary latency from injection to the commit that makes it visible.",
                &c->commit);
}

void sl__obs_render_metrics(sl__obs *o, sl__obs_text *t)
{
    sl__job_snap s;
    sl__job_snap_take(o->job, &s);
    double now = sl__obs_now();
    pthread_mutex_lock(&o->lock);
    int nr = o->ntasks == s.ntasks ? o->ntasks : 0;
    sl__obs_task_rate *r = o->rates;

    family(t, "sluice_build_info", "gauge", "Version of sluice; always 1.");
    sl__obs_text_printf(t, "sluice_build_info{version=\"%s\"} 1\n", SL_VERSION);
    family(t, "sluice_job_info", "gauge",
           "The running job's name and delivery guarantee; always 1.");
    sl__obs_text_printf(t, "%s", "sluice_job_info{name=");
    sl__obs_text_label(t, s.name);
    sl__obs_text_printf(t, ",delivery=\"%s\"} 1\n", s.delivery);
    job_value(t, "sluice_job_running", "gauge",
              "1 while the job's workers run, else 0.", s.job.running);
    job_value(t, "sluice_job_start_time_seconds", "gauge",
              "Unix time the metrics server started.", o->started);
    if (s.job.watermark != SL_TS_MIN && s.job.watermark != SL_TS_MAX)
        job_value(t, "sluice_job_watermark_seconds", "gauge",
                  "Lowest watermark published by the sink stage (unix seconds).",
                  (double)s.job.watermark / 1000.0);
    job_value(t, "sluice_batches_live", "gauge", "Batches allocated right now.",
              (double)s.job.batches_live);
    job_value(t, "sluice_batches_peak", "gauge", "Most batches allocated at once.",
              (double)s.job.batches_peak);
    job_value(t, "sluice_batch_memory_bytes", "gauge",
              "Bytes of record batches in flight (exchanges, operators, sinks; "
              "lookup tables excluded).", (double)s.flow_bytes);
    job_value(t, "sluice_batch_memory_peak_bytes", "gauge",
              "Most bytes of record batches in flight at once.",
              (double)s.flow_bytes_peak);
    job_value(t, "sluice_dead_letters_dropped_total", "counter",
              "Dead letters not written because a deadletter.max.* cap was "
              "reached (deadletter.overflow=drop).", (double)s.dl_dropped);

    if (s.nstages) {
        family(t, "sluice_stage_info", "gauge",
               "A stage of the job graph: its operator chain, how its output "
               "leaves and its task count; always 1.");
        for (int i = 0; i < s.nstages; i++) {
            sl__obs_text_printf(t, "sluice_stage_info{stage=\"%d\",operators=", i);
            sl__obs_text_label(t, s.stages[i].ops);
            sl__obs_text_printf(t, ",output=\"%s\",tasks=\"%d\"} 1\n",
                                s.stages[i].output, s.stages[i].ntasks);
        }
    }
    /* activity per task (rates; not checkpointed) */
    per_task(t, &s, r, nr, "sluice_records_in_total", "counter",
             "Records entering the task's operator chain in this process.", "",
             f_in, now, false);
    per_task(t, &s, r, nr, "sluice_records_out_total", "counter",
             "Records leaving the task's chain (to an exchange or the sink).", "",
             f_out, now, false);
    per_task(t, &s, r, nr, "sluice_bytes_in_total", "counter",
             "Bytes of the records entering the task's chain (fixed-width columns, "
             "validity and string bytes).", "", f_bytes_in, now, false);
    per_task(t, &s, r, nr, "sluice_bytes_out_total", "counter",
             "Bytes of the records leaving the task's chain.", "", f_bytes_out, now,
             false);
    per_task(t, &s, r, nr, "sluice_batches_in_total", "counter",
             "Batches entering the task's operator chain.", "", f_batches, now,
             false);
    per_task(t, &s, r, nr, "sluice_task_busy_seconds_total", "counter",
             "Time workers spent running the task (processing time).", "", f_busy,
             now, false);
    per_task(t, &s, r, nr, "sluice_task_steps_total", "counter",
             "Scheduling steps the task ran.", "", f_steps, now, false);
    per_task(t, &s, r, nr, "sluice_checkpoint_task_pause_seconds_total", "counter",
             "Time the task stopped processing to take its checkpoint snapshots "
             "(the rest of a snapshot is written in the background).", "",
             f_pause_sum, now, false);
    per_task(t, &s, r, nr, "sluice_checkpoint_task_pauses_total", "counter",
             "Checkpoint snapshots the task took.", "", f_pauses, now, false);
    per_task(t, &s, r, nr, "sluice_checkpoint_task_pause_max_seconds", "gauge",
             "Longest checkpoint pause of the task in this process.", "", f_pause_max,
             now, false);
    per_task(t, &s, r, nr, "sluice_records_in_per_second", "gauge",
             "Records entering the task's chain per second, last second.", "",
             f_in_rate, now, false);
    per_task(t, &s, r, nr, "sluice_records_out_per_second", "gauge",
             "Records leaving the task's chain per second, last second.", "",
             f_out_rate, now, false);
    per_task(t, &s, r, nr, "sluice_task_busy_ratio", "gauge",
             "Fraction of the last second a worker spent running the task.", "",
             f_busy_ratio, now, false);
    per_task(t, &s, r, nr, "sluice_backpressure_blocked_seconds_total", "counter",
             "Time the task's output waited on a full exchange (ended waits).", "",
             f_blocked, now, false);
    per_task(t, &s, r, nr, "sluice_backpressure_ratio", "gauge",
             "Fraction of the last second the task's output was blocked on a "
             "full exchange (0 = free, 1 = fully back-pressured).", "", f_bp, now,
             false);
    per_task(t, &s, r, nr, "sluice_input_queue_batches", "gauge",
             "Batches waiting in the task's input exchange channels.", "", f_q,
             now, false);
    per_task(t, &s, r, nr, "sluice_input_queue_capacity_batches", "gauge",
             "Batches the task's input channels can hold (exchange.capacity x "
             "inputs).", "", f_qcap, now, false);
    per_task(t, &s, r, nr, "sluice_input_queue_bytes", "gauge",
             "Memory of the batches queued on the task's inputs (columns and "
             "string arenas).", "", f_qbytes, now, false);
    per_task(t, &s, r, nr, "sluice_input_queue_peak_bytes", "gauge",
             "Most memory one of the task's input channels held at once "
             "(exchange.max.bytes caps it, plus one batch).", "", f_qbytes_peak,
             now, false);
    per_task(t, &s, r, nr, "sluice_input_queue_fill_ratio", "gauge",
             "Input queue fill, 0..1; 1 means the task is the bottleneck.", "",
             f_qfill, now, false);
    per_task(t, &s, r, nr, "sluice_watermark_seconds", "gauge",
             "The task's watermark after its chain (unix seconds; absent before "
             "the first and after the final one).", "", f_wm, now, true);
    per_task(t, &s, r, nr, "sluice_event_time_lag_seconds", "gauge",
             "Wall clock minus the task's watermark.", "", f_lag, now, true);
    /* source partitions: offsets, end offsets and lag (sources with a
     * progress hook: the file source in bytes, Kafka in messages) */
    if (s.nparts) {
        bool msgs = !strcmp(s.progress_unit, "messages");
        static const char *const names[2][3][3] = {
            {{"sluice_source_offset_bytes", "gauge",
              "Bytes of the source partition consumed (resumes from the checkpoint "
              "after a restore)."},
             {"sluice_source_end_offset_bytes", "gauge",
              "Bytes the source partition holds now (its files' sizes; absent when "
              "unknown, e.g. compressed files)."},
             {"sluice_source_lag_bytes", "gauge",
              "Bytes of the source partition not yet consumed (end minus offset)."}},
            {{"sluice_source_offset_messages", "gauge",
              "Offset of the next message of the source partition (a Kafka "
              "partition; resumes from the checkpoint after a restore)."},
             {"sluice_source_end_offset_messages", "gauge",
              "The partition's end offset (Kafka high watermark, as last fetched)."},
             {"sluice_source_lag_messages", "gauge",
              "Messages of the source partition not yet consumed (consumer lag)."}}};
        for (int m = 0; m < 3; m++) {
            const char *const *nm = names[msgs][m];
            family(t, nm[0], nm[1], nm[2]);
            for (int k = 0; k < s.nparts; k++) {
                const sl__part_stat *p = &s.parts[k];
                if (m > 0 && p->end < 0) continue;
                long long v = m == 0 ? p->offset : m == 1 ? p->end : p->end - p->offset;
                sl__obs_text_printf(t, "%s{partition=\"%d\",stage=\"%d\",task=\"%d\"} "
                                    "%lld\n", nm[0], p->partition, p->stage,
                                    p->task, v);
            }
        }
    }
    /* business counters per task (checkpointed: they continue after recovery) */
    per_task(t, &s, r, nr, "sluice_source_records_total", "counter",
             "Records read by the source (checkpointed).", "", f_src, now, false);
    per_task(t, &s, r, nr, "sluice_sink_records_total", "counter",
             "Data records written by the sink (checkpointed; canaries excluded).",
             "", f_sink, now, false);
    per_task(t, &s, r, nr, "sluice_windows_emitted_total", "counter",
             "(window, key) groups emitted by window operators (checkpointed).",
             "", f_windows, now, false);
    per_task(t, &s, r, nr, "sluice_groups_suppressed_total", "counter",
             "Groups withheld by k-anonymity (checkpointed).", "", f_suppr, now,
             false);
    per_task(t, &s, r, nr, "sluice_groups_folded_total", "counter",
             "Groups below k published folded into a coarser group "
             "(checkpointed).", "", f_folded, now, false);
    per_task(t, &s, r, nr, "sluice_late_records_total", "counter",
             "Records behind the watermark, counted and not aggregated "
             "(checkpointed).", ",reason=\"behind_watermark\"", f_late, now,
             false);
    per_task(t, &s, r, nr, "sluice_task_dead_letters_total", "counter",
             "Bad records the task routed to the dead-letter output "
             "(checkpointed).", "", f_dead, now, false);

    /* job totals that outlive the run */
    job_value(t, "sluice_job_records_read_total", "counter",
              "Records read by the job's sources (checkpointed).",
              (double)s.job.records_in);
    job_value(t, "sluice_job_records_written_total", "counter",
              "Data records written by the job's sink (checkpointed).",
              (double)s.job.records_out);
    job_value(t, "sluice_job_windows_emitted_total", "counter",
              "(window, key) groups emitted, whole job (checkpointed).",
              (double)s.job.windows_fired);
    job_value(t, "sluice_job_groups_suppressed_total", "counter",
              "Groups withheld by k-anonymity, whole job (checkpointed).",
              (double)s.job.groups_suppressed);
    job_value(t, "sluice_job_groups_folded_total", "counter",
              "Groups below k published folded into a coarser group, whole "
              "job (checkpointed).", (double)s.job.groups_folded);
    job_value(t, "sluice_job_late_records_total", "counter",
              "Late records, whole job (checkpointed).", (double)s.job.late_records);
    job_value(t, "sluice_job_dead_letters_total", "counter",
              "Dead letters, whole job (checkpointed).", (double)s.job.dead_letters);
    job_value(t, "sluice_backpressure_ratio_max", "gauge",
              "Highest task back-pressure ratio over the last second.",
              o->job_rates.backpressure);

    char names[32][32];
    uint64_t counts[32];
    int nd = sl__dead_letter_reasons(names, counts, 32);
    family(t, "sluice_dead_letters_total", "counter",
           "Dead letters by reason, this process (a replayed bad line counts "
           "again, as it is written again).");
    for (int i = 0; i < nd; i++) {
        sl__obs_text_printf(t, "%s", "sluice_dead_letters_total{reason=");
        sl__obs_text_label(t, names[i]);
        sl__obs_text_printf(t, "} %llu\n", (unsigned long long)counts[i]);
    }

    /* checkpoints */
    job_value(t, "sluice_checkpoints_enabled", "gauge",
              "1 when the job takes checkpoints.", s.ck_enabled);
    job_value(t, "sluice_checkpoints_completed_total", "counter",
              "Checkpoints completed (manifest written).",
              (double)s.job.checkpoints_completed);
    job_value(t, "sluice_checkpoints_failed_total", "counter",
              "Checkpoints that failed.", (double)s.job.checkpoints_failed);
    job_value(t, "sluice_checkpoint_epoch", "gauge",
              "Last epoch whose manifest is written.", (double)s.ck_committed);
    job_value(t, "sluice_checkpoint_restored_epoch", "gauge",
              "Checkpoint the run started from (0: none).",
              (double)s.job.restored_epoch);
    job_value(t, "sluice_checkpoint_last_duration_seconds", "gauge",
              "Trigger to manifest, last completed checkpoint.",
              (double)s.job.last_checkpoint_ms / 1e3);
    job_value(t, "sluice_checkpoint_last_size_bytes", "gauge",
              "Snapshot files of the last completed checkpoint.",
              (double)s.job.last_checkpoint_bytes);
    job_value(t, "sluice_checkpoint_last_new_bytes", "gauge",
              "Bytes the last completed checkpoint wrote: snapshot files and "
              "RocksDB files new since the previous one (incremental).",
              (double)s.job.last_checkpoint_new_bytes);
    job_value(t, "sluice_checkpoint_last_referenced_bytes", "gauge",
              "Bytes the last completed checkpoint needs to restore: snapshot "
              "files and every RocksDB file it lists, shared ones included.",
              (double)s.job.last_checkpoint_ref_bytes);
    job_value(t, "sluice_checkpoint_last_pause_seconds", "gauge",
              "Longest time a task spent snapshotting, last checkpoint.",
              (double)s.job.last_snapshot_pause_us / 1e6);
    if (o->ck_last_t > 0)
        job_value(t, "sluice_checkpoint_last_completed_age_seconds", "gauge",
                  "Seconds since the last checkpoint completed (to the sampler's "
                  "second).", now - o->ck_last_t);
    family(t, "sluice_checkpoint_duration_seconds", "histogram",
           "Checkpoint durations, trigger to manifest, as the sampler saw them "
           "complete (one per second at most).");
    uint64_t cum = 0;
    for (int b = 0; b < OBS_CK_BUCKETS; b++) {
        cum += o->ck_hist[b];
        sl__obs_text_printf(t, "sluice_checkpoint_duration_seconds_bucket{le=\"%g\"} "
                            "%llu\n", sl__obs_ck_bounds[b], (unsigned long long)cum);
    }
    sl__obs_text_printf(t, "sluice_checkpoint_duration_seconds_bucket{le=\"+Inf\"} "
                        "%llu\nsluice_checkpoint_duration_seconds_sum %.15g\n"
                        "sluice_checkpoint_duration_seconds_count %llu\n",
                        (unsigned long long)o->ck_hist_n, o->ck_hist_sum,
                        (unsigned long long)o->ck_hist_n);
    pthread_mutex_unlock(&o->lock);
    sl__job_snap_close(&s);
    render_canaries(t, sl__job_canaries(o->job));
    render_job_counters(t, o->job);
    /* application counters (events per type) and collectors */
    sl__obs_registry_render(t);
}
