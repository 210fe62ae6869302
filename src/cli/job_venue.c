/* job_venue.c — the built-in job "venue-report" (`sluice run venue-report`):
 * the age distribution of the people at public events, live and final, in
 * SQLite (docs/venues.md):
 *
 *   events ─ pseudonymise(msisdn) ─ [blur time ±B] ─ lookup(subscribers)
 *          ─ venue report (venues file; early firings every minute, final
 *            rows, 15-minute slices; k-anonymity; differencing defence;
 *            extrapolation by market share) ─ SQLite (upsert on the key)
 *
 * Built on the public API only, like any user's job: it doubles as the C
 * API example of a venue report. A pass-through map before the sink
 * publishes each released cumulative count as the business counter
 * sluice_venue_subscribers{venue,age_band,gender} (released counts only:
 * k-anonymous, and never decreasing), which the dashboard charts. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "obs/obs.h"

static const char venue_usage[] =
    "usage: sluice run venue-report [--set KEY=VALUE ...] [--quiet]\n"
    "\n"
    "People present per venue and age band (distinct pseudonymised subscribers\n"
    "with an event in the venue's cells during the event), emitted every\n"
    "emit.every.ms while the event runs and finally when it ends, plus per\n"
    "slice.ms slice (present, arrivals, departures); k-anonymous; extrapolated\n"
    "by market share. docs/venues.md explains it.\n"
    "\n"
    "keys (default):\n"
    "  events=PATH            event file or directory (data/events)\n"
    "  subscribers=PATH       subscriber table (data/subscribers.csv)\n"
    "  key.file=PATH          pseudonymisation keys (data/keys.txt)\n"
    "  venues=PATH            venue file (data/venues.csv)\n"
    "  market.share=PATH      area,share table (none: share 1)\n"
    "  db=PATH                SQLite result database (out/venues.db)\n"
    "  table=NAME             result table (venue_report)\n"
    "  sink.mode=upsert|insert  upsert: each row replaces the previous one of\n"
    "                         its key; insert: keep every emission (upsert)\n"
    "  k=N                    k-anonymity threshold, >= 2 (16)\n"
    "  emit.every.ms=N        early firings, 0 = final rows only (60000)\n"
    "  slice.ms=N             slices, 0 = none (900000)\n"
    "  lateness.ms=N          allowed lateness (0)\n"
    "  watermark.delay.ms=N   bounded out-of-orderness, blur.ms is added (5000)\n"
    "  blur.ms=N              time blurring bound B: +-B uniform, 0 = off (0)\n"
    "  blur.bucket.ms=N       one noise per subscriber and bucket (60000)\n"
    "  by.gender=true|false   split by gender too (false)\n"
    "  round.to=N             extrapolated counts rounded to a multiple (10)\n"
    "  and any job key: parallelism, checkpoint.dir, delivery, output.dir, ...\n";

typedef struct {
    const char *events, *subscribers, *key_file, *venues, *market_share, *db,
        *table, *sink_mode;
    int64_t k, emit_every_ms, slice_ms, lateness_ms, watermark_delay_ms, blur_ms,
        blur_bucket_ms, round_to;
    bool by_gender;
} venue_opts;

static int set_int(int64_t *dst, const char *key, const char *v, int64_t min,
                   int64_t max)
{
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < min || x > max) {
        fprintf(stderr, "sluice run: venue-report: '%s' must be an integer in "
                "[%lld, %lld], got '%s'\n", key, (long long)min, (long long)max, v);
        return 2;
    }
    *dst = x;
    return 0;
}

/* 0 set, 1 not a venue key, 2 bad value */
static int venue_set(venue_opts *o, const char *key, const char *v)
{
    if (!strcmp(key, "events")) o->events = v;
    else if (!strcmp(key, "subscribers")) o->subscribers = v;
    else if (!strcmp(key, "key.file")) o->key_file = v;
    else if (!strcmp(key, "venues")) o->venues = v;
    else if (!strcmp(key, "market.share")) o->market_share = *v ? v : NULL;
    else if (!strcmp(key, "db")) o->db = v;
    else if (!strcmp(key, "table")) o->table = v;
    else if (!strcmp(key, "sink.mode")) {
        if (strcmp(v, "upsert") && strcmp(v, "insert")) {
            fprintf(stderr, "sluice run: venue-report: 'sink.mode' must be upsert "
                    "or insert, got '%s'\n", v);
            return 2;
        }
        o->sink_mode = v;
    } else if (!strcmp(key, "by.gender")) {
        if (strcmp(v, "true") && strcmp(v, "false")) {
            fprintf(stderr, "sluice run: venue-report: 'by.gender' must be true or "
                    "false, got '%s'\n", v);
            return 2;
        }
        o->by_gender = !strcmp(v, "true");
    }
    else if (!strcmp(key, "k")) return set_int(&o->k, key, v, 2, 1000000);
    else if (!strcmp(key, "emit.every.ms"))
        return set_int(&o->emit_every_ms, key, v, 0, 86400000);
    else if (!strcmp(key, "slice.ms")) return set_int(&o->slice_ms, key, v, 0, 86400000);
    else if (!strcmp(key, "lateness.ms"))
        return set_int(&o->lateness_ms, key, v, 0, 86400000);
    else if (!strcmp(key, "watermark.delay.ms"))
        return set_int(&o->watermark_delay_ms, key, v, 0, 86400000);
    else if (!strcmp(key, "blur.ms")) return set_int(&o->blur_ms, key, v, 0, 3600000);
    else if (!strcmp(key, "blur.bucket.ms"))
        return set_int(&o->blur_bucket_ms, key, v, 1, 86400000);
    else if (!strcmp(key, "round.to")) return set_int(&o->round_to, key, v, 1, 1000000);
    else return 1;
    return 0;
}

typedef struct {
    sl_keyring *keys;
    sl_table *subscribers;
    sl_venues *venues;
    sl_schema *ev, *su;
} venue_res;

static void venue_free(venue_res *r)
{
    sl_table_free(r->subscribers);
    sl_venues_free(r->venues);
    sl_keyring_free(r->keys);
    sl_schema_free(r->ev);
    sl_schema_free(r->su);
}

/* ---- live distribution for /metrics and the dashboard ---------------------- */
enum { R_VENUE, R_REPORT, R_BAND = 4, R_GENDER, R_SUBS, R_FINAL = 11, R_NCOLS = 12 };

/* Label values come from the venue file: keep them printable and free of
 * the characters Prometheus' text format would need escaped. */
static void label_value(char *dst, size_t n, sl_str v)
{
    size_t j = 0;
    for (uint32_t i = 0; i < v.len && j + 1 < n; i++) {
        char c = v.ptr[i];
        dst[j++] = (c == '"' || c == '\\' || c < 32 || c == 127) ? '_' : c;
    }
    dst[j] = 0;
}

static int venue_metrics_map(const sl_batch *in, sl_batch *out, void *ud)
{
    (void)ud;
    size_t n = sl_batch_len(in);
    const sl_schema *sc = sl_batch_schema(in);
    for (int c = 0; c < R_NCOLS; c++) {
        switch (sl_schema_col_type(sc, c)) {
        case SL_STRING:
            memcpy(sl_batch_str(out, c), sl_batch_str(in, c), n * sizeof(sl_str));
            break;
        case SL_BOOL:
            memcpy(sl_batch_bool(out, c), sl_batch_bool(in, c), n);
            break;
        default:
            memcpy(sl_batch_i64(out, c), sl_batch_i64(in, c), n * sizeof(int64_t));
        }
        memcpy(sl_batch_valid(out, c), sl_batch_valid(in, c), n);
    }
    memcpy(sl_batch_kind(out), sl_batch_kind(in), n);
    sl_batch_set_len(out, n);
    const uint8_t *kind = sl_batch_kind(in);
    const sl_str *rep = sl_batch_str(in, R_REPORT);
    for (size_t i = 0; i < n; i++) {
        if (kind[i] != SL_KIND_DATA || rep[i].len != 10) continue; /* cumulative */
        char v[128], b[16], g[16], labels[256];
        label_value(v, sizeof v, sl_batch_str(in, R_VENUE)[i]);
        label_value(b, sizeof b, sl_batch_str(in, R_BAND)[i]);
        label_value(g, sizeof g, sl_batch_str(in, R_GENDER)[i]);
        snprintf(labels, sizeof labels, "venue=\"%s\",age_band=\"%s\",gender=\"%s\"",
                 v, b, g);
        atomic_store_explicit(
            sl__obs_counter("sluice_venue_subscribers",
                            "People at a venue per group, as last released (k-anonymous "
                            "cumulative count; docs/venues.md)", labels),
            (uint64_t)sl_batch_i64(in, R_SUBS)[i], memory_order_relaxed);
        if (sl_batch_bool(in, R_FINAL)[i])
            atomic_store_explicit(
                sl__obs_counter("sluice_venue_final",
                                "1 once the venue's final row for the group is out", labels),
                1, memory_order_relaxed);
    }
    return 0;
}

static int venue_build(sl_job *job, const venue_opts *o, venue_res *r, char *err,
                       size_t errsz)
{
    r->keys = sl_keyring_load(o->key_file, err, errsz);
    if (!r->keys) return SL_EINVAL;
    r->venues = sl_venues_load(o->venues, err, errsz);
    if (!r->venues) return SL_EINVAL;
    if (o->market_share && sl_venues_market_share(r->venues, o->market_share, err, errsz))
        return SL_EINVAL;
    sl_schema *ev = r->ev = sl_schema_new();
    sl_schema_add(ev, "ts", SL_TIMESTAMP);
    sl_schema_set_identifier(ev, sl_schema_add(ev, "msisdn", SL_STRING));
    sl_schema_add(ev, "event_type", SL_STRING);
    sl_schema_add(ev, "cell_id", SL_INT64);
    sl_schema_add(ev, "duration_s", SL_INT64);
    sl_schema_add(ev, "bytes", SL_INT64);
    sl_schema *su = r->su = sl_schema_new();
    sl_schema_set_identifier(su, sl_schema_add(su, "msisdn", SL_STRING));
    sl_schema_add(su, "birth_date", SL_TIMESTAMP);
    sl_schema_add(su, "gender", SL_STRING);
    r->subscribers = sl_table_load("file", su, "msisdn",
                                   (const char *[]){"path", o->subscribers, NULL},
                                   r->keys, err, errsz);
    if (!r->subscribers) return SL_EINVAL;

    char delay[32];
    snprintf(delay, sizeof delay, "%lld",
             (long long)o->watermark_delay_ms + (long long)o->blur_ms);
    sl_stream *s = sl_job_source(job, "file", ev,
                                 (const char *[]){"path", o->events, "time.column", "ts",
                                                  "watermark.delay.ms", delay, NULL});
    s = sl_stream_pseudonymise(s, "msisdn", "sub", r->keys);
    if (o->blur_ms > 0)
        s = sl_stream_blur_time(s, "ts", "sub", o->blur_ms, o->blur_bucket_ms, r->keys);
    s = sl_stream_lookup(s, "sub", r->subscribers,
                         (const char *[]){"birth_date", "gender", NULL});
    const sl_venue_report_spec spec = {
        .sub_col = "sub", .cell_col = "cell_id", .birth_col = "birth_date",
        .gender_col = o->by_gender ? "gender" : NULL, .k = o->k,
        .emit_every_ms = o->emit_every_ms, .slice_ms = o->slice_ms,
        .lateness_ms = o->lateness_ms, .round_to = o->round_to};
    s = sl_stream_venue_report(s, r->venues, &spec);
    if (s && sl_schema_ncols(sl_stream_schema(s)) == R_NCOLS)
        s = sl_stream_map(s, "venue_metrics", sl_stream_schema(s), venue_metrics_map, NULL);
    /* upsert: each emission replaces the previous one of its key; insert
     * keeps every emission (the history of early firings) */
    bool upsert = !strcmp(o->sink_mode, "upsert");
    int rc = sl_stream_sink(s, "sqlite",
                            (const char *[]){"path", o->db, "table", o->table, "mode",
                                             o->sink_mode, upsert ? "key" : NULL,
                                             "venue,report,slice_start,age_band,gender",
                                             NULL});
    if (rc || sl_job_error(job)) {
        snprintf(err, errsz, "%s", sl_job_error(job) ? sl_job_error(job) : sl_strerror(rc));
        return rc ? rc : SL_EINVAL;
    }
    return 0;
}

static sl_job *g_vjob;
static volatile sig_atomic_t g_vstops;

/* The first SIGINT/SIGTERM stops gracefully (final checkpoint, exit 0), a
 * second one cancels; SIGUSR1 takes a savepoint. */
static void on_signal(int sig)
{
    if (sig == SIGUSR1) sl_job_savepoint(g_vjob);
    else if (g_vstops++ == 0) sl_job_stop(g_vjob);
    else sl_job_cancel(g_vjob);
}

int cli_venue_run(int argc, char **argv)
{
    venue_opts o = {.events = "data/events", .subscribers = "data/subscribers.csv",
                    .key_file = "data/keys.txt", .venues = "data/venues.csv",
                    .db = "out/venues.db", .table = "venue_report",
                    .sink_mode = "upsert", .k = 16, .emit_every_ms = 60000,
                    .slice_ms = 900000, .watermark_delay_ms = 5000,
                    .blur_bucket_ms = 60000, .round_to = 10};
    char err[1024] = "";
    sl_job *job = sl_job_new(err, sizeof err);
    if (!job) {
        fprintf(stderr, "sluice run: %s\n", err);
        return 1;
    }
    bool quiet = false, metrics_set = false;
    int rc = 0;
    if (sl_job_set(job, "name", "venue-report", err, sizeof err)) rc = 2;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "venue-report")) continue;
        if (!strcmp(a, "--help")) {
            fputs(venue_usage, stdout);
            sl_job_free(job);
            return 0;
        }
        if (!strcmp(a, "--quiet")) { quiet = true; continue; }
        const char *kv = NULL;
        if (!strcmp(a, "--set") && i + 1 < argc) kv = argv[++i];
        else if (!strncmp(a, "--set=", 6)) kv = a + 6;
        const char *eq = kv ? strchr(kv, '=') : NULL;
        if (!eq || eq == kv) {
            fprintf(stderr, "sluice run: venue-report: expected --set KEY=VALUE, got "
                    "'%s'\n%s", kv ? kv : a, venue_usage);
            rc = 2;
            break;
        }
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
        metrics_set |= !strcmp(key, "metrics.address");
        int r = venue_set(&o, key, eq + 1);
        if (r == 1 && sl_job_set(job, key, eq + 1, err, sizeof err)) {
            fprintf(stderr, "sluice run: venue-report: '%s' is not a venue-report key "
                    "(--help lists them), and as a job key: %s\n", key, err);
            r = 2;
        }
        if (r == 1) r = 0;
        rc = r;
    }
    if (rc) {
        sl_job_free(job);
        return rc;
    }
    sl__obs *obs = NULL;
    if (sl__obs_start(job, metrics_set ? 0 : SL__OBS_ANY_PORT_IF_BUSY, &obs, err,
                      sizeof err)) {
        fprintf(stderr, "sluice run: %s\n", err);
        sl_job_free(job);
        return 2;
    }
    if (obs && !quiet)
        fprintf(stderr, "sluice: dashboard %s  (metrics %smetrics, status %sstatus)\n",
                sl__obs_url(obs), sl__obs_url(obs), sl__obs_url(obs));
    venue_res res = {0};
    if (venue_build(job, &o, &res, err, sizeof err) != 0) {
        fprintf(stderr, "sluice run: venue-report: %s\n", err);
        sl__obs_stop(obs);
        venue_free(&res);
        sl_job_free(job);
        return 2;
    }
    g_vjob = job;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    rc = sl_job_run(job);
    sl_job_stats st;
    sl_job_stats_get(job, &st);
    if (!quiet || rc)
        fprintf(stderr, "sluice: %s: venue-report: %llu events, %llu rows written to %s, "
                "%llu groups below k withheld, %llu late, %llu dead letters, %llu "
                "checkpoints%s%s\n", rc ? "failed" : "done",
                (unsigned long long)st.records_in, (unsigned long long)st.records_out,
                o.db, (unsigned long long)st.groups_suppressed,
                (unsigned long long)st.late_records, (unsigned long long)st.dead_letters,
                (unsigned long long)st.checkpoints_completed, rc ? ": " : "",
                rc ? sl_job_error(job) : "");
    sl__obs_stop(obs);
    sl_job_free(job);
    venue_free(&res);
    return rc ? 1 : 0;
}
