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
 * operator. Built on the public API only, like any user's job.
 *
 * Options beyond the default (docs/privacy.md):
 * - rotation: when the key file has dated keys (VALID_FROM), each event
 *   takes the key of its UTC day (rotation.period.ms) and the subscriber
 *   table is pseudonymised under every key, so joins work in any period.
 *   An undated key file runs exactly as before (one key).
 * - k.fold: groups below k are folded into coarser ones (age band -> wide
 *   band -> all, area -> all) instead of only suppressed; the window is
 *   then partitioned by event_type alone, so all groups of a coarser group
 *   meet in one task.
 * - dp.*: differential privacy: contribution bounding and the epsilon
 *   ledger before the window (keyed by subscriber), noise after it. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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
                        .lateness_ms = 0,
                        .rotation = "auto",
                        .rotation_period_ms = 86400000,
                        .dp_period_ms = 86400000,
                        .sink = "sqlite",
                        .pg_dsn = "",
                        .subs_pg_refresh_ms = "0"};
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

static int set_double(double *dst, const char *key, const char *v, double min,
                      double max, char *err, size_t errsz)
{
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= min && x <= max)) {
        snprintf(err, errsz, "telecom-age: '%s' must be a number in [%g, %g], "
                 "got '%s'", key, min, max, v);
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
    else if (!strcmp(key, "rotation")) {
        if (strcmp(v, "auto") && strcmp(v, "off")) {
            snprintf(err, errsz, "telecom-age: 'rotation' must be auto or off, "
                     "got '%s'", v);
            return SL_EINVAL;
        }
        o->rotation = v;
    }
    else if (!strcmp(key, "rotation.period.ms"))
        return set_int(&o->rotation_period_ms, key, v, 1000, (int64_t)1 << 52,
                       err, errsz);
    else if (!strcmp(key, "key.domain")) o->key_domain = *v ? v : NULL;
    else if (!strcmp(key, "dp.epsilon"))
        return set_double(&o->dp_epsilon, key, v, 1e-6, 1e6, err, errsz);
    else if (!strcmp(key, "dp.max.contrib"))
        return set_int(&o->dp_max_contrib, key, v, 1, 1000000, err, errsz);
    else if (!strcmp(key, "dp.budget"))
        return set_double(&o->dp_budget, key, v, 1e-6, 1e9, err, errsz);
    else if (!strcmp(key, "dp.mechanism")) {
        if (strcmp(v, "laplace") && strcmp(v, "gaussian")) {
            snprintf(err, errsz, "telecom-age: 'dp.mechanism' must be laplace or "
                     "gaussian, got '%s'", v);
            return SL_EINVAL;
        }
        o->dp_mechanism = strcmp(v, "gaussian") ? SL_DP_LAPLACE : SL_DP_GAUSSIAN;
    }
    else if (!strcmp(key, "dp.delta"))
        return set_double(&o->dp_delta, key, v, 1e-300, 0.01, err, errsz);
    else if (!strcmp(key, "dp.period.ms"))
        return set_int(&o->dp_period_ms, key, v, 1000, (int64_t)1 << 52, err,
                       errsz);
    else if (!strcmp(key, "k.fold")) o->k_fold = *v ? v : NULL;
    else if (!strcmp(key, "sink")) {
        if (strcmp(v, "sqlite") && strcmp(v, "postgres")) {
            snprintf(err, errsz, "telecom-age: 'sink' must be sqlite or postgres, "
                     "got '%s'", v);
            return SL_EINVAL;
        }
        o->sink = v;
    }
    else if (!strcmp(key, "pg.dsn")) o->pg_dsn = v;
    else if (!strcmp(key, "subscribers.pg.table")) o->subs_pg_table = *v ? v : NULL;
    else if (!strcmp(key, "subscribers.pg.refresh.ms")) o->subs_pg_refresh_ms = v;
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

/* days since 1970-01-01 of a civil date (Howard Hinnant) */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool is_leap(int64_t y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

static const sl_str band_str[] = {{"unknown", 7}, {"0-17", 4},  {"18-24", 5},
                                  {"25-34", 5},   {"35-44", 5}, {"45-54", 5},
                                  {"55-64", 5},   {"65+", 3}};
static const int band_lo[] = {0, 18, 25, 35, 45, 55, 65}; /* ages starting a band */

typedef struct {
    int64_t window_ms;
    int in_ts, in_type, in_area, in_birth, in_sub;
    int out_ts, out_type, out_area, out_band, out_sub;
} band_ctx;

/* The age bands at one date, as birth-time thresholds: age >= band_lo[k]
 * exactly when birth_ms < lt[k], so a row's band is the number of
 * thresholds its birth time is below (0 = unknown, an age below 0). The
 * same as telecom_age_band: someone is A or older on (y, m, d) when born
 * on or before (y - A, m, d), or Feb 28 when that year has no Feb 29. */
typedef struct {
    int64_t day; /* the date, days since the epoch */
    int64_t lt[7];
} band_at;

static void band_at_set(band_at *b, int64_t day)
{
    int64_t y;
    int m, d;
    civil(day, &y, &m, &d);
    b->day = day;
    for (int k = 0; k < 7; k++) {
        int64_t by = y - band_lo[k];
        int bd = m == 2 && d == 29 && !is_leap(by) ? 28 : d;
        b->lt[k] = (days_from_civil(by, m, bd) + 1) * 86400000;
    }
}

/* ts, sub, event_type, area, birth_date -> ts, sub, event_type, area,
 * age_band. Age is taken at the start date of the record's window. No
 * string is copied: event_type points to the schema's domain values, area
 * into the cells table, age_band to band_str (sl_str). */
static int age_band_map(const sl_batch *in, sl_batch *out, void *ud)
{
    const band_ctx *c = ud;
    size_t n = sl_batch_len(in);
    const int64_t *ts = sl_batch_i64(in, c->in_ts);
    const int64_t *sub = sl_batch_i64(in, c->in_sub);
    const int64_t *birth = sl_batch_i64(in, c->in_birth);
    const uint8_t *birth_ok = sl_batch_valid(in, c->in_birth);
    const sl_str *type = sl_batch_str(in, c->in_type);
    const uint8_t *type_ok = sl_batch_valid(in, c->in_type);
    const sl_str *area = sl_batch_str(in, c->in_area);
    const uint8_t *area_ok = sl_batch_valid(in, c->in_area);
    const uint8_t *ts_ok = sl_batch_valid(in, c->in_ts);
    const uint8_t *sub_ok = sl_batch_valid(in, c->in_sub);
    memcpy(sl_batch_i64(out, c->out_ts), ts, n * sizeof *ts);
    memcpy(sl_batch_valid(out, c->out_ts), ts_ok, n);
    memcpy(sl_batch_i64(out, c->out_sub), sub, n * sizeof *sub);
    memcpy(sl_batch_valid(out, c->out_sub), sub_ok, n);
    sl_str *otype = sl_batch_str(out, c->out_type);
    sl_str *oarea = sl_batch_str(out, c->out_area);
    sl_str *oband = sl_batch_str(out, c->out_band);
    uint8_t *otype_ok = sl_batch_valid(out, c->out_type);
    uint8_t *oarea_ok = sl_batch_valid(out, c->out_area);
    uint8_t *oband_ok = sl_batch_valid(out, c->out_band);
    band_at at = {.day = INT64_MIN};
    int64_t wlo = 1, whi = 0; /* the window of the last row, [wlo, whi) */
    for (size_t i = 0; i < n; i++) {
        otype[i] = type_ok[i] ? type[i] : (sl_str){"", 0};
        otype_ok[i] = type_ok[i];
        oarea[i] = area_ok[i] ? area[i] : (sl_str){"unknown", 7};
        oarea_ok[i] = 1;
        int band = 0;
        if (birth_ok[i] && ts_ok[i]) {
            if (ts[i] < wlo || ts[i] >= whi) { /* rows of a batch share windows */
                wlo = floor_div(ts[i], c->window_ms) * c->window_ms;
                if (__builtin_add_overflow(wlo, c->window_ms, &whi)) whi = INT64_MAX;
                int64_t day = floor_div(wlo, 86400000);
                if (day != at.day) band_at_set(&at, day);
            }
            for (int k = 0; k < 7; k++) band += birth[i] < at.lt[k];
        }
        oband[i] = band_str[band];
        oband_ok[i] = 1;
    }
    sl_batch_set_len(out, n);
    return 0;
}

static band_ctx g_band; /* one job per process in the CLI */

/* ---- k.fold ----------------------------------------------------------------
 * LEVEL[,LEVEL...], applied in order; LEVEL is COLUMN (every value becomes
 * "*"), age_band:wide (the wider bands below) or COLUMN:VALUE=COARSER[/...]
 * (unlisted values stay). COLUMN is age_band or area: event_type is what
 * the window is partitioned by, so it is never folded. */
static const char *const wide_bands[] = {
    "0-17", "0-34", "18-24", "0-34", "25-34", "0-34", "35-44", "35-54",
    "45-54", "35-54", "55-64", "55+", "65+", "55+", NULL};

#define FOLD_LEVELS 16
#define FOLD_PAIRS 64

typedef struct {
    sl_fold_level lv[FOLD_LEVELS];
    const char *map[FOLD_LEVELS][2 * FOLD_PAIRS + 1];
    char buf[2048];
    size_t n;
} fold_parse;

static int fold_err(char *err, size_t errsz, const char *what, const char *tok)
{
    snprintf(err, errsz, "telecom-age: 'k.fold': %s '%s' (levels separated by "
             "',': age_band, area, age_band:wide, or COLUMN:VALUE=COARSER/...; "
             "COLUMN is age_band or area)", what, tok);
    return SL_EINVAL;
}

static int parse_fold(const char *spec, fold_parse *p, char *err, size_t errsz)
{
    size_t len = strlen(spec);
    if (len >= sizeof p->buf) return fold_err(err, errsz, "too long:", "");
    memcpy(p->buf, spec, len + 1);
    p->n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(p->buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (p->n == FOLD_LEVELS) return fold_err(err, errsz, "too many levels at", tok);
        char *map = strchr(tok, ':');
        if (map) *map++ = 0;
        if (strcmp(tok, "age_band") && strcmp(tok, "area"))
            return fold_err(err, errsz, "unknown column", tok);
        sl_fold_level *l = &p->lv[p->n];
        l->col = tok;
        l->map = NULL;
        if (map && !strcmp(map, "wide") && !strcmp(tok, "age_band")) {
            l->map = wide_bands;
        } else if (map) {
            const char **m = p->map[p->n];
            int np = 0;
            char *s2 = NULL;
            for (char *pair = strtok_r(map, "/", &s2); pair;
                 pair = strtok_r(NULL, "/", &s2)) {
                char *eq = strchr(pair, '=');
                if (!eq || eq == pair || !eq[1] || np == FOLD_PAIRS)
                    return fold_err(err, errsz, "bad VALUE=COARSER pair", pair);
                *eq = 0;
                m[2 * np] = pair;
                m[2 * np + 1] = eq + 1;
                np++;
            }
            if (np == 0) return fold_err(err, errsz, "empty map for", tok);
            m[2 * np] = NULL;
            l->map = m;
        }
        p->n++;
    }
    if (p->n == 0) return fold_err(err, errsz, "no levels in", spec);
    return 0;
}

int telecom_build(sl_job *job, const telecom_opts *o, telecom_res *r, char *err,
                  size_t errsz)
{
    memset(r, 0, sizeof *r);
    r->keys = sl_keyring_load(o->key_file, err, errsz);
    if (!r->keys) return SL_EINVAL;
    /* rotation: on when the key file dates its keys (or names a domain) */
    r->nkeys = sl_keyring_count(r->keys);
    bool dated = o->key_domain != NULL;
    for (int i = 0; i < r->nkeys; i++)
        dated |= sl_keyring_valid_from(r->keys, i) != INT64_MIN;
    r->rotating = dated && strcmp(o->rotation, "off") != 0;
    if (r->rotating && o->rotation_period_ms % o->window_ms != 0) {
        snprintf(err, errsz, "telecom-age: 'rotation.period.ms' (%lld) must be a "
                 "multiple of 'window.ms' (%lld), so that no window mixes two keys",
                 (long long)o->rotation_period_ms, (long long)o->window_ms);
        return SL_EINVAL;
    }
    const sl_rotation rot = {o->rotation_period_ms, o->key_domain};
    fold_parse fold;
    if (o->k_fold && parse_fold(o->k_fold, &fold, err, errsz)) return SL_EINVAL;
    bool dp_on = o->dp_epsilon > 0;
    if (dp_on && (o->dp_max_contrib <= 0 || o->dp_budget <= 0)) {
        snprintf(err, errsz, "telecom-age: 'dp.epsilon' needs 'dp.max.contrib' and "
                 "'dp.budget' too (differential privacy has no defaults)");
        return SL_EINVAL;
    }
    const sl_dp_spec dp = {.epsilon = o->dp_epsilon, .max_contrib = o->dp_max_contrib,
                           .budget = o->dp_budget, .window_ms = o->window_ms,
                           .period_ms = o->dp_period_ms,
                           .lateness_ms = o->lateness_ms,
                           .mechanism = o->dp_mechanism, .delta = o->dp_delta};

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

    /* subscribers from a CSV file, or from a PostgreSQL table
     * (msisdn text, birth_date date, gender text) */
    const char *const fconf[] = {"path", o->subscribers, NULL};
    const char *const pconf[] = {"dsn", o->pg_dsn, "table", o->subs_pg_table,
                                 "refresh.interval.ms", o->subs_pg_refresh_ms, NULL};
    const char *sconn = o->subs_pg_table ? "postgres" : "file";
    const char *const *sconf = o->subs_pg_table ? pconf : fconf;
    r->subscribers = sl_job_table_load(job, sconn, su, "msisdn", sconf, r->keys,
                                       r->rotating ? &rot : NULL, err, errsz);
    if (!r->subscribers) return SL_EINVAL;
    r->cells = sl_job_table_load(job, "file", ce, "cell_id",
                                 (const char *[]){"path", o->cells, NULL}, NULL,
                                 NULL, err, errsz);
    if (!r->cells) return SL_EINVAL;

    char delay[32];
    snprintf(delay, sizeof delay, "%lld", (long long)o->watermark_delay_ms);
    sl_stream *s = sl_job_source(job, "file", ev,
                                 (const char *[]){"path", o->events, "format",
                                                  o->format, "time.column", "ts",
                                                  "watermark.delay.ms", delay,
                                                  NULL});
    s = r->rotating ? sl_stream_pseudonymise_rotating(s, "msisdn", "sub", r->keys,
                                                      &rot)
                    : sl_stream_pseudonymise(s, "msisdn", "sub", r->keys);
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
    /* business metric: events per type, checkpointed (continues after a
     * recovery); per minute is rate(sluice_events_total[1m]) * 60 */
    s = sl_stream_count_by(s, "event_type", "sluice_events_total",
                           "Events per event type reaching the windows "
                           "(checkpointed: continues from the checkpoint after a "
                           "recovery; canaries excluded).");
    s = sl_stream_map(s, "age_band", bs, age_band_map, &g_band);
    if (dp_on) { /* a subscriber's events meet in one task to be bounded */
        s = sl_stream_key_by(s, (const char *[]){"sub", NULL});
        s = sl_stream_dp_bound(s, "sub", &dp);
    }
    sl_agg_spec aggs[] = {
        {.kind = SL_AGG_COUNT, .as = "events"},
        {.kind = SL_AGG_COUNT_DISTINCT, .col = "sub", .as = "subscribers"}};
    const sl_window_spec win = {.size_ms = o->window_ms,
                                .lateness_ms = o->lateness_ms};
    if (o->k_fold) {
        s = sl_stream_key_by(s, (const char *[]){"event_type", NULL});
        s = sl_stream_window_fold(s, &win, (const char *[]){"area", "age_band", NULL},
                                  aggs, 2,
                                  &(sl_fold_spec){.k = o->k,
                                                  .count_col = "subscribers",
                                                  .levels = fold.lv,
                                                  .nlevels = fold.n});
    } else {
        s = sl_stream_key_by(s, (const char *[]){"event_type", "area", "age_band",
                                                 NULL});
        s = sl_stream_window(s, &win, aggs, 2);
    }
    /* with folding every row passes already; kept as the last line of defence */
    s = sl_stream_k_anon(s, "subscribers", o->k);
    if (dp_on)
        s = sl_stream_dp_noise(s, (const char *[]){"events", "subscribers", NULL},
                               &dp, r->keys);
    const bool pg = !strcmp(o->sink, "postgres");
    int rc = sl_stream_sink(s, pg ? "postgres" : "sqlite",
                            (const char *[]){pg ? "dsn" : "path", pg ? o->pg_dsn : o->db,
                                             "table", o->table,
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
