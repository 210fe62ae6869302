/* job_telecom.c — the reference job "telecom-age": mobile-phone events
 * become the age distribution of subscribers per event type, area and
 * minute, k-anonymised, in SQLite:
 *
 *   events ─ pseudonymise(msisdn) ─ lookup(subscribers) ─ lookup(cells)
 *          ─ age band ─ key_by(event_type, area, age_band)
 *          ─ tumbling window: COUNT, COUNT(DISTINCT sub) ─ k-anonymity ─ SQLite
 *
 * The subscriber table is pseudonymised with the same key as it loads, so
 * the join happens on pseudonyms and no raw msisdn passes the first
 * operator. Built on the public API only, like any user's job. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "obs/obs.h"

static const char *const event_types[] = {"SMS_SENT", "SMS_RECEIVED",
                                          "CALL_PLACED", "CALL_RECEIVED",
                                          "DATA_SESSION", NULL};

void telecom_defaults(telecom_opts *o)
{
    *o = (telecom_opts){.events = "data/events",
                        .format = "csv",
                        .subscribers = "data/subscribers.csv",
                        .cells = "data/cells.csv",
                        .key_file = "data/keys.txt",
                        .db = "out/demo.db",
                        .table = "age_distribution",
                        .k = 16,
                        .window_ms = 60000,
                        .watermark_delay_ms = 5000,
                        .lateness_ms = 0};
}

static int set_int(int64_t *dst, const char *key, const char *v, int64_t min,
                   int64_t max, char *err, size_t errsz)
{
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < min || x > max) {
        snprintf(err, errsz, "telecom-age: '%s' must be an integer in [%lld, %lld], "
                 "got '%s'", key, (long long)min, (long long)max, v);
        return SL_EINVAL;
    }
    *dst = x;
    return 0;
}

int telecom_set(telecom_opts *o, const char *key, const char *v, char *err,
                size_t errsz)
{
    if (!strcmp(key, "events")) o->events = v;
    else if (!strcmp(key, "format")) {
        if (strcmp(v, "csv") && strcmp(v, "jsonl")) {
            snprintf(err, errsz, "telecom-age: 'format' must be csv or jsonl, got '%s'", v);
            return SL_EINVAL;
        }
        o->format = v;
    }
    else if (!strcmp(key, "subscribers")) o->subscribers = v;
    else if (!strcmp(key, "cells")) o->cells = v;
    else if (!strcmp(key, "key.file")) o->key_file = v;
    else if (!strcmp(key, "db")) o->db = v;
    else if (!strcmp(key, "table")) o->table = v;
    else if (!strcmp(key, "k")) return set_int(&o->k, key, v, 2, 1000000, err, errsz);
    else if (!strcmp(key, "window.ms"))
        return set_int(&o->window_ms, key, v, 1000, 86400000, err, errsz);
    else if (!strcmp(key, "watermark.delay.ms"))
        return set_int(&o->watermark_delay_ms, key, v, 0, 86400000, err, errsz);
    else if (!strcmp(key, "lateness.ms"))
        return set_int(&o->lateness_ms, key, v, 0, 86400000, err, errsz);
    else return 1;
    return 0;
}

/* days since 1970-01-01 -> civil date (Howard Hinnant) */
static void civil(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

const char *telecom_age_band(int64_t birth_ms, int64_t at_ms)
{
    int64_t by, ay;
    int bm, bd, am, ad;
    civil(floor_div(birth_ms, 86400000), &by, &bm, &bd);
    civil(floor_div(at_ms, 86400000), &ay, &am, &ad);
    int64_t age = ay - by - ((am < bm || (am == bm && ad < bd)) ? 1 : 0);
    if (age < 0) return "unknown";
    if (age <= 17) return "0-17";
    if (age <= 24) return "18-24";
    if (age <= 34) return "25-34";
    if (age <= 44) return "35-44";
    if (age <= 54) return "45-54";
    if (age <= 64) return "55-64";
    return "65+";
}

typedef struct {
    _Atomic uint64_t *events[5]; /* business metric: events per event_type */
    int64_t window_ms;
    int in_ts, in_type, in_area, in_birth, in_sub;
    int out_ts, out_type, out_area, out_band, out_sub;
} band_ctx;

/* ts, sub, event_type, area, birth_date -> ts, sub, event_type, area,
 * age_band. Age is taken at the start date of the record's window. */
static int age_band_map(const sl_batch *in, sl_batch *out, void *ud)
{
    const band_ctx *c = ud;
    size_t n = sl_batch_len(in);
    const int64_t *ts = sl_batch_i64(in, c->in_ts);
    const int64_t *sub = sl_batch_i64(in, c->in_sub);
    const int64_t *birth = sl_batch_i64(in, c->in_birth);
    const uint8_t *birth_ok = sl_batch_valid(in, c->in_birth);
    const sl_str *type = sl_batch_str(in, c->in_type);
    const sl_str *area = sl_batch_str(in, c->in_area);
    const uint8_t *area_ok = sl_batch_valid(in, c->in_area);
    const uint8_t *ts_ok = sl_batch_valid(in, c->in_ts);
    const uint8_t *sub_ok = sl_batch_valid(in, c->in_sub);
    int64_t *ots = sl_batch_i64(out, c->out_ts);
    int64_t *osub = sl_batch_i64(out, c->out_sub);
    uint8_t *ots_ok = sl_batch_valid(out, c->out_ts);
    uint8_t *osub_ok = sl_batch_valid(out, c->out_sub);
    for (size_t i = 0; i < n; i++) {
        ots[i] = ts[i];
        ots_ok[i] = ts_ok[i];
        osub[i] = sub[i];
        osub_ok[i] = sub_ok[i];
        sl_batch_set_str(out, c->out_type, i, type[i].ptr, type[i].len);
        if (area_ok[i]) sl_batch_set_str(out, c->out_area, i, area[i].ptr, area[i].len);
        else sl_batch_set_str(out, c->out_area, i, "unknown", 7);
        const char *band = "unknown";
        if (birth_ok[i] && ts_ok[i])
            band = telecom_age_band(birth[i], floor_div(ts[i], c->window_ms) * c->window_ms);
        sl_batch_set_str(out, c->out_band, i, band, strlen(band));
    }
    sl_batch_set_len(out, n);
    const uint8_t *kind = sl_batch_kind(in);
    uint64_t per_type[5] = {0};
    for (size_t i = 0; i < n; i++) {
        if (kind[i] != SL_KIND_DATA) continue; /* canaries are not events */
        for (int k = 0; k < 5; k++)
            if (type[i].len == strlen(event_types[k]) &&
                !memcmp(type[i].ptr, event_types[k], type[i].len)) {
                per_type[k]++;
                break;
            }
    }
    for (int k = 0; k < 5; k++)
        if (per_type[k])
            atomic_fetch_add_explicit(c->events[k], per_type[k], memory_order_relaxed);
    return 0;
}

static band_ctx g_band; /* one job per process in the CLI */

int telecom_build(sl_job *job, const telecom_opts *o, telecom_res *r, char *err,
                  size_t errsz)
{
    memset(r, 0, sizeof *r);
    r->keys = sl_keyring_load(o->key_file, err, errsz);
    if (!r->keys) return SL_EINVAL;

    sl_schema *ev = r->events_schema = sl_schema_new();
    sl_schema_add(ev, "ts", SL_TIMESTAMP);
    sl_schema_set_identifier(ev, sl_schema_add(ev, "msisdn", SL_STRING));
    sl_schema_set_domain(ev, sl_schema_add(ev, "event_type", SL_STRING), event_types);
    sl_schema_add(ev, "cell_id", SL_INT64);
    sl_schema_add(ev, "duration_s", SL_INT64);
    sl_schema_add(ev, "bytes", SL_INT64);

    sl_schema *su = r->subs_schema = sl_schema_new();
    sl_schema_set_identifier(su, sl_schema_add(su, "msisdn", SL_STRING));
    sl_schema_add(su, "birth_date", SL_TIMESTAMP);
    sl_schema_add(su, "gender", SL_STRING);

    sl_schema *ce = r->cells_schema = sl_schema_new();
    sl_schema_add(ce, "cell_id", SL_INT64);
    sl_schema_add(ce, "area", SL_STRING);

    r->subscribers = sl_table_load("file", su, "msisdn",
                                   (const char *[]){"path", o->subscribers, NULL},
                                   r->keys, err, errsz);
    if (!r->subscribers) return SL_EINVAL;
    r->cells = sl_table_load("file", ce, "cell_id",
                             (const char *[]){"path", o->cells, NULL}, NULL, err,
                             errsz);
    if (!r->cells) return SL_EINVAL;

    char delay[32];
    snprintf(delay, sizeof delay, "%lld", (long long)o->watermark_delay_ms);
    sl_stream *s = sl_job_source(job, "file", ev,
                                 (const char *[]){"path", o->events, "format",
                                                  o->format, "time.column", "ts",
                                                  "watermark.delay.ms", delay,
                                                  NULL});
    s = sl_stream_pseudonymise(s, "msisdn", "sub", r->keys);
    s = sl_stream_lookup(s, "sub", r->subscribers, (const char *[]){"birth_date", NULL});
    s = sl_stream_lookup(s, "cell_id", r->cells, (const char *[]){"area", NULL});

    sl_schema *bs = r->banded = sl_schema_new();
    sl_schema_add(bs, "ts", SL_TIMESTAMP);
    sl_schema_add(bs, "sub", SL_INT64);
    sl_schema_add(bs, "event_type", SL_STRING);
    sl_schema_add(bs, "area", SL_STRING);
    sl_schema_add(bs, "age_band", SL_STRING);
    const sl_schema *in = sl_stream_schema(s);
    g_band = (band_ctx){.window_ms = o->window_ms,
                        .in_ts = sl_schema_find(in, "ts"),
                        .in_sub = sl_schema_find(in, "sub"),
                        .in_type = sl_schema_find(in, "event_type"),
                        .in_area = sl_schema_find(in, "area"),
                        .in_birth = sl_schema_find(in, "birth_date"),
                        .out_ts = 0, .out_sub = 1, .out_type = 2, .out_area = 3,
                        .out_band = 4};
    for (int k = 0; k < 5; k++) {
        char labels[64];
        snprintf(labels, sizeof labels, "event_type=\"%s\"", event_types[k]);
        g_band.events[k] = sl__obs_counter(
            "sluice_events_total",
            "Events per event type reaching the windows (this process; not "
            "checkpointed: replayed input counts again)", labels);
    }
    s = sl_stream_map(s, "age_band", bs, age_band_map, &g_band);
    s = sl_stream_key_by(s, (const char *[]){"event_type", "area", "age_band", NULL});
    sl_agg_spec aggs[] = {
        {.kind = SL_AGG_COUNT, .as = "events"},
        {.kind = SL_AGG_COUNT_DISTINCT, .col = "sub", .as = "subscribers"}};
    s = sl_stream_window(s, &(sl_window_spec){.size_ms = o->window_ms,
                                              .lateness_ms = o->lateness_ms},
                         aggs, 2);
    s = sl_stream_k_anon(s, "subscribers", o->k);
    int rc = sl_stream_sink(s, "sqlite",
                            (const char *[]){"path", o->db, "table", o->table,
                                             "mode", "upsert", "key",
                                             "window_start,event_type,area,age_band",
                                             NULL});
    if (rc || sl_job_error(job)) {
        snprintf(err, errsz, "%s", sl_job_error(job) ? sl_job_error(job) : sl_strerror(rc));
        return rc ? rc : SL_EINVAL;
    }
    return 0;
}

void telecom_free(telecom_res *r)
{
    sl_table_free(r->subscribers);
    sl_table_free(r->cells);
    sl_keyring_free(r->keys);
    sl_schema_free(r->events_schema);
    sl_schema_free(r->subs_schema);
    sl_schema_free(r->cells_schema);
    sl_schema_free(r->banded);
    memset(r, 0, sizeof *r);
}
