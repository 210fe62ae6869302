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
 * API example of a venue report. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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
    snprintf(delay, sizeof delay, "%lld", (long long)(o->watermark_delay_ms + o->blur_ms));
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
    bool quiet = false;
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
        int r = venue_set(&o, key, eq + 1);
        if (r == 1 && sl_job_set(job, key, eq + 1, err, sizeof err)) {
            fprintf(stderr, "sluice run: %s\n", err);
            r = 2;
        }
        if (r == 1) r = 0;
        rc = r;
    }
    if (rc) {
        sl_job_free(job);
        return rc;
    }
    venue_res res = {0};
    if ((rc = venue_build(job, &o, &res, err, sizeof err))) {
        fprintf(stderr, "sluice run: venue-report: %s\n", err);
        venue_free(&res);
        sl_job_free(job);
        return 2;
    }
    rc = sl_job_run(job);
    sl_job_stats st;
    sl_job_stats_get(job, &st);
    if (rc) fprintf(stderr, "sluice run: venue-report: %s\n", sl_job_error(job));
    else if (!quiet)
        fprintf(stderr, "sluice: venue-report done: %llu events, %llu rows written, "
                "%llu groups below k withheld, %llu late, %llu dead letters -> %s\n",
                (unsigned long long)st.records_in, (unsigned long long)st.records_out,
                (unsigned long long)st.groups_suppressed,
                (unsigned long long)st.late_records,
                (unsigned long long)st.dead_letters, o.db);
    sl_job_free(job);
    venue_free(&res);
    return rc ? 1 : 0;
}
