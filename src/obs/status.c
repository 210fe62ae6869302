/* status.c — GET /status: the job as one JSON document for the dashboard
 * and for scripts: the job graph (stages with their operator chains),
 * every task's counters, rates, back pressure, queue fill and watermark,
 * checkpoint figures and history, dead letters by reason, the throughput
 * history of the last five minutes, and a `canaries` member reserved for
 * the canary module (null until it exists). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/canary.h"
#include "internal.h"

static void num(sl__obs_text *t, const char *k, double v, bool comma)
{
    if (v != v) sl__obs_text_printf(t, "\"%s\":null%s", k, comma ? "," : "");
    else sl__obs_text_printf(t, "\"%s\":%.10g%s", k, v, comma ? "," : "");
}

static double wm_s(int64_t wm)
{
    return wm == SL_TS_MIN || wm == SL_TS_MAX ? NAN : (double)wm / 1000.0;
}

void sl__obs_render_status(sl__obs *o, sl__obs_text *t)
{
    sl__job_snap s;
    sl__job_snap_take(o->job, &s);
    double now = sl__obs_now();
    pthread_mutex_lock(&o->lock);
    int nr = o->ntasks == s.ntasks ? o->ntasks : 0;
    const sl_job_stats *js = &s.job;

    sl__obs_text_printf(t, "{\"version\":\"%s\",\"now\":%.3f,\"job\":{\"name\":",
                        SL_VERSION, now);
    sl__obs_text_json(t, s.name);
    const char *state = js->running ? "running" : s.planned ? "starting"
                        : js->records_in || js->checkpoints_completed ? "finished"
                                                                      : "starting";
    sl__obs_text_printf(t, ",\"state\":\"%s\",\"delivery\":\"%s\",", state, s.delivery);
    num(t, "uptime_s", now - o->started, true);
    num(t, "records_in", (double)js->records_in, true);
    num(t, "records_out", (double)js->records_out, true);
    num(t, "in_rate", o->job_rates.in_rate, true);
    num(t, "out_rate", o->job_rates.out_rate, true);
    num(t, "backpressure", o->job_rates.backpressure, true);
    num(t, "dead_letters", (double)js->dead_letters, true);
    num(t, "late_records", (double)js->late_records, true);
    num(t, "windows_emitted", (double)js->windows_fired, true);
    num(t, "groups_suppressed", (double)js->groups_suppressed, true);
    num(t, "groups_folded", (double)js->groups_folded, true);
    num(t, "watermark", wm_s(js->watermark), true);
    num(t, "event_time_lag_s", now - wm_s(js->watermark), true);
    num(t, "batches_live", (double)js->batches_live, true);
    num(t, "exchange_capacity", (double)s.exchange_capacity, true);
    num(t, "key_groups", (double)s.key_groups, false);
    SL__PUTS(t, "},\"stages\":[");
    for (int i = 0; i < s.nstages; i++) {
        const sl__stage_stat *st = &s.stages[i];
        double in = 0, out = 0, bp = 0, busy = 0, q = 0, qc = 0;
        int64_t wm = SL_TS_MAX;
        for (int k = 0; k < s.ntasks; k++) {
            if (s.tasks[k].stage != i) continue;
            if (k < nr) {
                in += o->rates[k].in_rate;
                out += o->rates[k].out_rate;
                if (o->rates[k].backpressure > bp) bp = o->rates[k].backpressure;
                if (o->rates[k].busy > busy) busy = o->rates[k].busy;
            }
            q += s.tasks[k].in_queue;
            qc += s.tasks[k].in_queue_cap;
            if (s.tasks[k].watermark < wm) wm = s.tasks[k].watermark;
        }
        sl__obs_text_printf(t, "%s{\"stage\":%d,\"tasks\":%d,\"source\":%s,\"sink\":%s,"
                            "\"operators\":",
                            i ? "," : "", i, st->ntasks, st->is_source ? "true" : "false",
                            st->is_sink ? "true" : "false");
        sl__obs_text_json(t, st->ops);
        sl__obs_text_printf(t, ",\"output\":\"%s\",", st->output);
        num(t, "in_rate", in, true);
        num(t, "out_rate", out, true);
        num(t, "backpressure", bp, true);
        num(t, "busy", busy, true);
        num(t, "queue_fill", qc > 0 ? q / qc : 0, true);
        num(t, "watermark", wm_s(wm), false);
        SL__PUTS(t, "}");
    }
    SL__PUTS(t, "],\"tasks\":[");
    for (int k = 0; k < s.ntasks; k++) {
        const sl__task_stat *ts = &s.tasks[k];
        static const sl__obs_task_rate zero;
        const sl__obs_task_rate *r = k < nr ? &o->rates[k] : &zero;
        sl__obs_text_printf(t, "%s{\"stage\":%d,\"task\":%d,", k ? "," : "", ts->stage,
                            ts->task);
        num(t, "records_in", (double)ts->records_in, true);
        num(t, "records_out", (double)ts->records_out, true);
        num(t, "in_rate", r->in_rate, true);
        num(t, "out_rate", r->out_rate, true);
        num(t, "busy", r->busy, true);
        num(t, "backpressure", r->backpressure, true);
        num(t, "blocked_s", (double)ts->ctr[SL__CTR_BLOCKED_NS] / 1e9, true);
        num(t, "queue", ts->in_queue, true);
        num(t, "queue_cap", ts->in_queue_cap, true);
        num(t, "watermark", wm_s(ts->watermark), true);
        num(t, "source_records", (double)ts->ctr[SL__CTR_RECORDS_IN], true);
        num(t, "sink_records", (double)ts->ctr[SL__CTR_RECORDS_OUT], true);
        num(t, "windows_emitted", (double)ts->ctr[SL__CTR_WINDOWS_FIRED], true);
        num(t, "groups_suppressed", (double)ts->ctr[SL__CTR_SUPPRESSED], true);
        num(t, "groups_folded", (double)ts->ctr[SL__CTR_FOLDED], true);
        num(t, "late_records", (double)ts->ctr[SL__CTR_LATE], true);
        num(t, "dead_letters", (double)ts->ctr[SL__CTR_DEAD_LETTERS], false);
        SL__PUTS(t, "}");
    }
    SL__PUTS(t, "],\"sources\":[");
    for (int k = 0; k < s.nparts; k++) {
        const sl__part_stat *p = &s.parts[k];
        const char *u = s.progress_unit;
        sl__obs_text_printf(t, "%s{\"partition\":%d,\"stage\":%d,\"task\":%d,"
                            "\"offset_%s\":%lld,\"end_%s\":", k ? "," : "",
                            p->partition, p->stage, p->task, u, (long long)p->offset, u);
        if (p->end < 0) sl__obs_text_printf(t, "null,\"lag_%s\":null}", u);
        else sl__obs_text_printf(t, "%lld,\"lag_%s\":%lld}", (long long)p->end, u,
                                 (long long)(p->end - p->offset));
    }
    sl__obs_text_printf(t, "],\"checkpoints\":{\"enabled\":%s,",
                        s.ck_enabled ? "true" : "false");
    num(t, "completed", (double)js->checkpoints_completed, true);
    num(t, "failed", (double)js->checkpoints_failed, true);
    num(t, "epoch", (double)s.ck_committed, true);
    num(t, "restored_epoch", (double)js->restored_epoch, true);
    num(t, "interval_ms", (double)s.ck_interval_ms, true);
    num(t, "last_ms", (double)js->last_checkpoint_ms, true);
    num(t, "last_bytes", (double)js->last_checkpoint_bytes, true);
    num(t, "last_new_bytes", (double)js->last_checkpoint_new_bytes, true);
    num(t, "last_referenced_bytes", (double)js->last_checkpoint_ref_bytes, true);
    num(t, "last_pause_us", (double)js->last_snapshot_pause_us, true);
    num(t, "age_s", o->ck_last_t > 0 ? now - o->ck_last_t : NAN, true);
    SL__PUTS(t, "\"history\":[");
    for (int i = 0; i < o->nck; i++) {
        const sl__obs_ck *c = &o->ck[(o->ck_at - o->nck + i + OBS_CK_HISTORY) %
                                     OBS_CK_HISTORY];
        sl__obs_text_printf(t, "%s{\"epoch\":%llu,\"t\":%.3f,\"ms\":%llu,\"bytes\":%llu,"
                            "\"pause_us\":%llu,\"failed\":%s}", i ? "," : "",
                            (unsigned long long)c->epoch, c->t,
                            (unsigned long long)c->ms, (unsigned long long)c->bytes,
                            (unsigned long long)c->pause_us,
                            c->failed ? "true" : "false");
    }
    SL__PUTS(t, "]},\"dead_letters\":{");
    char names[32][32];
    uint64_t counts[32];
    int nd = sl__dead_letter_reasons(names, counts, 32);
    for (int i = 0; i < nd; i++) {
        if (i) SL__PUTS(t, ",");
        sl__obs_text_json(t, names[i]);
        sl__obs_text_printf(t, ":%llu", (unsigned long long)counts[i]);
    }
    SL__PUTS(t, "},\"history\":[");
    for (int i = 0; i < o->nhist; i++) {
        const sl__obs_point *p = &o->hist[(o->hist_at - o->nhist + i + OBS_HISTORY) %
                                          OBS_HISTORY];
        sl__obs_text_printf(t, "%s[%.3f,%.1f,%.1f,%.3f]", i ? "," : "", p->t,
                            p->in_rate, p->out_rate, p->backpressure);
    }
    pthread_mutex_unlock(&o->lock);
    SL__PUTS(t, "],\"counters\":");
    sl__obs_registry_json(t, o->job);
    sl__canaries *c = sl__job_canaries(o->job);
    sl__obs_text_printf(t, ",\"canaries\":{\"injected\":%llu,\"seen\":%llu,\"committed\":%llu,"
                        "\"missing\":%llu,\"pipeline_last_ms\":%.3f,\"commit_last_ms\":%.3f}}\n",
                        (unsigned long long)atomic_load(&c->injected),
                        (unsigned long long)atomic_load(&c->seen),
                        (unsigned long long)atomic_load(&c->committed),
                        (unsigned long long)atomic_load(&c->missing),
                        (double)atomic_load(&c->pipeline.last_ns) / 1e6,
                        (double)atomic_load(&c->commit.last_ns) / 1e6);
    sl__job_snap_close(&s);
}
