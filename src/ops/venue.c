/* venue.c — venues for the venue report: loading the venue file and the
 * market-share table (sl_venues_load, sl_venues_market_share), the
 * venue-assign operator that turns events into (event, venue) rows, and the
 * builder sl_stream_venue_report, which chains
 *
 *     venue_assign - key_by(venue) - venue_report (venue_report.c)
 *
 * venue_assign is stateless: a row whose cell belongs to a venue and whose
 * time lies in [start, end) of that venue becomes one output row per such
 * venue (venues may share cells at different times, or even overlap), with
 * the subscriber's group: its age band at the venue's start date (UTC) and
 * its gender. Rows in no venue are dropped; rows without a time, pseudonym
 * or cell are counted as dead letters by reason. Canary rows pass at once
 * (venue -1) so they reach the sink.
 *
 * Not done here: IANA time-zone names (fixed offsets only), venues whose
 * cells change during the event, quoted CSV fields. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/venue.h"

const sl_str sl__venue_band_names[SL__VENUE_BANDS] = {
    {"unknown", 7}, {"0-17", 4},  {"18-24", 5}, {"25-34", 5},
    {"35-44", 5},   {"45-54", 5}, {"55-64", 5}, {"65+", 3}};
const sl_str sl__venue_gender_names[4] = {{"F", 1}, {"M", 1}, {"X", 1},
                                          {"unknown", 7}};
static const int band_lo[7] = {0, 18, 25, 35, 45, 55, 65};

static bool is_leap(int64_t y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

/* Someone is A or older on (y, m, d) when born on or before (y - A, m, d),
 * or Feb 28 when that year has no Feb 29 (as the reference job). */
int sl__venue_band(int64_t birth_ms, int64_t day)
{
    int64_t y;
    unsigned m, d;
    sl__civil_from_days(day, &y, &m, &d);
    int band = 0;
    for (int k = 0; k < 7; k++) {
        int64_t by = y - band_lo[k];
        unsigned bd = m == 2 && d == 29 && !is_leap(by) ? 28 : d;
        int64_t lt = (sl__days_from_civil(by, m, bd) + 1) * 86400000;
        band += birth_ms < lt;
    }
    return band;
}

/* ---- loading ------------------------------------------------------------- */
static char *slurp(const char *path, char *err, size_t esz)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        sl__err(err, esz, SL_ENOENT, "venues: cannot open '%s': %s", path,
                strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = sl__xmalloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) buf = sl__xrealloc(buf, cap *= 2);
    }
    fclose(f);
    buf[n] = 0;
    return buf;
}

/* Splits a line in place on ','; returns the number of fields (<= max). */
static int split(char *line, char **f, int max)
{
    int n = 0;
    for (char *p = line;;) {
        char *c = strchr(p, ',');
        if (n < max) f[n] = p;
        n++;
        if (!c) break;
        *c = 0;
        p = c + 1;
    }
    for (int i = 0; i < n && i < max; i++) { /* trim spaces and a CR */
        char *s = f[i];
        while (*s == ' ') s++;
        size_t len = strlen(s);
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\r')) s[--len] = 0;
        f[i] = s;
    }
    return n;
}

/* The next line of *p (NUL-terminated in place), or NULL at the end; unlike
 * strtok, empty lines are returned, so line numbers stay right. */
static char *next_line(char **p)
{
    char *s = *p;
    if (!s || !*s) return NULL;
    char *nl = strchr(s, '\n');
    if (nl) {
        *nl = 0;
        *p = nl + 1;
    } else {
        *p = NULL;
    }
    return s;
}

static int col_of(char **hdr, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(hdr[i], name)) return i;
    return -1;
}

/* "+HH:MM" / "-HH:MM" / "" / "UTC" / "Z" -> offset ms */
static int parse_tz(const char *s, int64_t *off)
{
    *off = 0;
    if (!*s || !strcmp(s, "UTC") || !strcmp(s, "Z")) return 0;
    if ((s[0] != '+' && s[0] != '-') || strlen(s) != 6 || s[3] != ':') return -1;
    for (int i = 1; i < 6; i++)
        if (i != 3 && (s[i] < '0' || s[i] > '9')) return -1;
    int h = (s[1] - '0') * 10 + (s[2] - '0'), m = (s[4] - '0') * 10 + (s[5] - '0');
    if (h > 14 || m > 59) return -1;
    *off = (s[0] == '-' ? -1 : 1) * ((int64_t)h * 60 + m) * 60000;
    return 0;
}

static int parse_time(const char *s, int64_t tz, int64_t *out)
{
    size_t len = strlen(s);
    if (sl__parse_ts(s, len, out)) return -1;
    bool local = len >= 10 && s[4] == '-' && s[len - 1] != 'Z';
    if (local) *out -= tz;
    return 0;
}

static int parse_i64(const char *s, const char *e, int64_t *out)
{
    if (s == e || e - s > 18) return -1;
    int64_t v = 0;
    for (const char *p = s; p < e; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 0;
}

#define MAX_RANGE 1000000

static int add_cells(sl_venues *vs, uint32_t vi, const char *s, size_t *cap)
{
    const char *p = s;
    if (!*p) return -1;
    while (*p) {
        const char *e = strchr(p, ';');
        if (!e) e = p + strlen(p);
        const char *dash = memchr(p, '-', (size_t)(e - p));
        int64_t lo, hi;
        if (dash ? parse_i64(p, dash, &lo) || parse_i64(dash + 1, e, &hi)
                 : parse_i64(p, e, &lo))
            return -1;
        if (!dash) hi = lo;
        if (hi < lo || hi - lo > MAX_RANGE) return -1;
        for (int64_t c = lo; c <= hi; c++) {
            if (vs->nidx == *cap) {
                *cap = *cap ? 2 * *cap : 64;
                vs->idx = sl__xrealloc(vs->idx, *cap * sizeof *vs->idx);
            }
            vs->idx[vs->nidx++] = (sl__venue_cell){c, vi};
        }
        p = *e ? e + 1 : e;
    }
    return 0;
}

static int cell_cmp(const void *a, const void *b)
{
    const sl__venue_cell *x = a, *y = b;
    if (x->cell != y->cell) return x->cell < y->cell ? -1 : 1;
    return (x->venue > y->venue) - (x->venue < y->venue);
}

void sl_venues_free(sl_venues *v)
{
    if (!v) return;
    for (size_t i = 0; i < v->n; i++) {
        free(v->v[i].name);
        free(v->v[i].area);
    }
    free(v->v);
    free(v->idx);
    free(v);
}

size_t sl_venues_count(const sl_venues *v) { return v ? v->n : 0; }

#define MAXF 16

static sl_venues *load_fail(sl_venues *vs, char *buf)
{
    sl_venues_free(vs);
    free(buf);
    return NULL;
}

sl_venues *sl_venues_load(const char *path, char *err, size_t esz)
{
    char *buf = slurp(path, err, esz);
    return buf ? sl__venues_parse(buf, path, err, esz) : NULL;
}

sl_venues *sl__venues_parse(char *buf, const char *path, char *err, size_t esz)
{
    sl_venues *vs = sl__xcalloc(1, sizeof *vs);
    char *hdr[MAXF], *f[MAXF];
    int nh = 0, lineno = 0, c_name = -1, c_start = -1, c_end = -1, c_cells = -1,
        c_area = -1, c_tz = -1;
    size_t vcap = 0, icap = 0;
    char *cur = buf;
    for (char *line = next_line(&cur); line; line = next_line(&cur)) {
        lineno++;
        if (line[0] == '#' || line[strspn(line, " \r")] == 0) continue;
        if (nh == 0) {
            nh = split(line, hdr, MAXF);
            if (nh > MAXF) nh = MAXF;
            c_name = col_of(hdr, nh, "name");
            c_start = col_of(hdr, nh, "start");
            c_end = col_of(hdr, nh, "end");
            c_cells = col_of(hdr, nh, "cells");
            c_area = col_of(hdr, nh, "area");
            c_tz = col_of(hdr, nh, "tz");
            if (c_name < 0 || c_start < 0 || c_end < 0 || c_cells < 0) {
                sl__err(err, esz, SL_EINVAL, "venues: %s:%d: the header must name "
                        "the columns name,start,end,cells (and optionally area, "
                        "tz)", path, lineno);
                return load_fail(vs, buf);
            }
            continue;
        }
        int nf = split(line, f, MAXF);
        if (nf != nh) {
            sl__err(err, esz, SL_EINVAL, "venues: %s:%d: %d fields, the header "
                    "has %d", path, lineno, nf, nh);
            return load_fail(vs, buf);
        }
        int64_t tz = 0, start, end;
        if (c_tz >= 0 && parse_tz(f[c_tz], &tz)) {
            sl__err(err, esz, SL_EINVAL, "venues: %s:%d: tz '%s' is not a fixed "
                    "offset +HH:MM or -HH:MM (or UTC)", path, lineno, f[c_tz]);
            return load_fail(vs, buf);
        }
        if (parse_time(f[c_start], tz, &start) || parse_time(f[c_end], tz, &end) ||
            end <= start) {
            sl__err(err, esz, SL_EINVAL, "venues: %s:%d: start '%s' and end '%s' "
                    "must be ISO-8601 or epoch ms times with end > start", path,
                    lineno, f[c_start], f[c_end]);
            return load_fail(vs, buf);
        }
        if (!*f[c_name]) {
            sl__err(err, esz, SL_EINVAL, "venues: %s:%d: empty name", path, lineno);
            return load_fail(vs, buf);
        }
        for (size_t i = 0; i < vs->n; i++)
            if (!strcmp(vs->v[i].name, f[c_name])) {
                sl__err(err, esz, SL_EINVAL, "venues: %s:%d: venue '%s' is "
                        "defined twice", path, lineno, f[c_name]);
                return load_fail(vs, buf);
            }
        if (vs->n == UINT32_MAX - 1) return load_fail(vs, buf);
        if (add_cells(vs, (uint32_t)vs->n, f[c_cells], &icap)) {
            sl__err(err, esz, SL_EINVAL, "venues: %s:%d: cells '%s' must be a "
                    "';'-separated list of cell ids or ranges LO-HI (at most %d "
                    "per range)", path, lineno, f[c_cells], MAX_RANGE);
            return load_fail(vs, buf);
        }
        if (vs->n == vcap) {
            vcap = vcap ? 2 * vcap : 8;
            vs->v = sl__xrealloc(vs->v, vcap * sizeof *vs->v);
        }
        vs->v[vs->n++] = (sl__venue){
            .name = sl__xstrdup(f[c_name]), .start = start, .end = end,
            .area = c_area >= 0 && *f[c_area] ? sl__xstrdup(f[c_area]) : NULL,
            .share = 1.0, .day = sl__floor_div(start, 86400000)};
    }
    free(buf);
    if (vs->n == 0) {
        sl__err(err, esz, SL_EINVAL, "venues: %s: no venues", path);
        sl_venues_free(vs);
        return NULL;
    }
    qsort(vs->idx, vs->nidx, sizeof *vs->idx, cell_cmp);
    return vs;
}

int sl_venues_market_share(sl_venues *vs, const char *path, char *err,
                           size_t esz)
{
    if (!vs) return sl__err(err, esz, SL_EINVAL, "market share: no venues");
    char *buf = slurp(path, err, esz);
    return buf ? sl__venues_share_parse(vs, buf, path, err, esz) : SL_ENOENT;
}

int sl__venues_share_parse(sl_venues *vs, char *buf, const char *path, char *err,
                           size_t esz)
{
    char *hdr[MAXF], *f[MAXF];
    int nh = 0, lineno = 0, c_area = -1, c_share = -1, rc = 0;
    bool *found = sl__xcalloc(vs->n + 1, sizeof *found);
    char *cur = buf;
    for (char *line = next_line(&cur); line && !rc; line = next_line(&cur)) {
        lineno++;
        if (line[0] == '#' || line[strspn(line, " \r")] == 0) continue;
        if (nh == 0) {
            nh = split(line, hdr, MAXF);
            if (nh > MAXF) nh = MAXF;
            c_area = col_of(hdr, nh, "area");
            c_share = col_of(hdr, nh, "share");
            if (c_area < 0 || c_share < 0)
                rc = sl__err(err, esz, SL_EINVAL, "market share: %s:%d: the "
                             "header must name the columns area,share", path,
                             lineno);
            continue;
        }
        if (split(line, f, MAXF) != nh) {
            rc = sl__err(err, esz, SL_EINVAL, "market share: %s:%d: %s fields "
                         "than the header", path, lineno, "other number of");
            break;
        }
        char *e;
        double sh = strtod(f[c_share], &e);
        if (!*f[c_share] || *e || !(sh > 0 && sh <= 1)) {
            rc = sl__err(err, esz, SL_EINVAL, "market share: %s:%d: share '%s' "
                         "must be a number in (0, 1]", path, lineno, f[c_share]);
            break;
        }
        for (size_t i = 0; i < vs->n; i++)
            if (vs->v[i].area && !strcmp(vs->v[i].area, f[c_area])) {
                vs->v[i].share = sh;
                found[i] = true;
            }
    }
    for (size_t i = 0; i < vs->n && !rc; i++)
        if (!found[i])
            rc = sl__err(err, esz, SL_EINVAL, "market share: venue '%s' %s%s%s "
                         "in %s", vs->v[i].name,
                         vs->v[i].area ? "has area '" : "has no area",
                         vs->v[i].area ? vs->v[i].area : "",
                         vs->v[i].area ? "', which has no share" : "", path);
    free(found);
    free(buf);
    return rc;
}

/* ---- venue_assign -------------------------------------------------------- */
typedef struct {
    const sl_venues *venues; /* borrowed */
    int ts, sub, cell, birth, gender; /* input columns; birth/gender -1 = none */
    int ngender;
} assign_conf;

typedef struct {
    const assign_conf *c;
    const sl_schema *out;
    uint32_t cap;
    sl__ctx *ctx;
    uint64_t bad[3];
} assign_op;

static int as_open(void **st, const void *conf, const sl__opinfo *info,
                   sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    (void)errstr;
    (void)errstr_size;
    assign_op *p = sl__xcalloc(1, sizeof *p);
    p->c = conf;
    p->out = info->out;
    p->cap = info->batch_cap ? info->batch_cap : 1024;
    p->ctx = ctx;
    *st = p;
    return 0;
}

static void as_close(void *st) { free(st); }

static int gender_of(const sl_batch *b, int col, uint32_t r)
{
    if (!b->cols[col].valid[r]) return 3;
    sl_str s = ((const sl_str *)b->cols[col].data)[r];
    if (s.len == 1 && (s.ptr[0] == 'F' || s.ptr[0] == 'f')) return 0;
    if (s.len == 1 && (s.ptr[0] == 'M' || s.ptr[0] == 'm')) return 1;
    if (s.len == 1 && (s.ptr[0] == 'X' || s.ptr[0] == 'x')) return 2;
    return 3;
}

/* First index entry of `cell`, or nidx. */
static size_t first_of(const sl_venues *vs, int64_t cell)
{
    size_t lo = 0, hi = vs->nidx;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (vs->idx[mid].cell < cell) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static void bad_row(assign_op *p, const sl_batch *b, uint32_t r, int why)
{
    static const char *const reasons[3] = {"venue: NULL time",
                                           "venue: NULL subscriber",
                                           "venue: NULL cell"};
    char pos[32];
    snprintf(pos, sizeof pos, "row %u of a batch", r);
    (void)b; /* the payload is withheld: the row carries a pseudonym */
    p->bad[why]++;
    sl__dead_letter(p->ctx, "venue_assign", pos, reasons[why], "", 0);
}

static int put_row(assign_op *p, sl_batch **ob, sl__out *out, int64_t ts,
                   int64_t sub, int64_t venue, int64_t grp, uint8_t kind)
{
    if (!*ob) *ob = sl__batch_new(p->out, p->cap);
    sl_batch *o = *ob;
    uint32_t r = o->n++;
    ((int64_t *)o->cols[0].data)[r] = ts;
    ((int64_t *)o->cols[1].data)[r] = sub;
    ((int64_t *)o->cols[2].data)[r] = venue;
    ((int64_t *)o->cols[3].data)[r] = grp;
    for (int c = 0; c < 4; c++) o->cols[c].valid[r] = 1;
    o->kind[r] = kind;
    if (o->n == o->cap) {
        *ob = NULL;
        return sl__emit(out, o);
    }
    return 0;
}

static int as_batch(void *st, sl_batch *b, sl__out *out)
{
    assign_op *p = st;
    const assign_conf *c = p->c;
    const sl_venues *vs = c->venues;
    const int64_t *ts = b->cols[c->ts].data, *sub = b->cols[c->sub].data,
                  *cell = b->cols[c->cell].data;
    const int64_t *birth = c->birth >= 0 ? b->cols[c->birth].data : NULL;
    sl_batch *ob = NULL;
    int rc = 0;
    for (uint32_t r = 0; r < b->n && !rc; r++) {
        if (b->kind[r] != SL_KIND_DATA) {
            rc = put_row(p, &ob, out, b->cols[c->ts].valid[r] ? ts[r] : 0, 0, -1,
                         0, b->kind[r]);
            continue;
        }
        if (!b->cols[c->ts].valid[r]) { bad_row(p, b, r, 0); continue; }
        if (!b->cols[c->sub].valid[r]) { bad_row(p, b, r, 1); continue; }
        if (!b->cols[c->cell].valid[r]) { bad_row(p, b, r, 2); continue; }
        int g = c->ngender > 1 ? gender_of(b, c->gender, r) : 0;
        bool has_birth = birth && b->cols[c->birth].valid[r];
        for (size_t i = first_of(vs, cell[r]); i < vs->nidx && vs->idx[i].cell == cell[r] && !rc;
             i++) {
            const sl__venue *v = &vs->v[vs->idx[i].venue];
            if (ts[r] < v->start || ts[r] >= v->end) continue;
            int band = has_birth ? sl__venue_band(birth[r], v->day) : 0;
            rc = put_row(p, &ob, out, ts[r], sub[r], vs->idx[i].venue,
                         (int64_t)band * c->ngender + g, SL_KIND_DATA);
        }
    }
    sl__batch_free(b);
    if (ob) {
        if (rc) sl__batch_free(ob);
        else rc = sl__emit(out, ob);
    }
    return rc;
}

static const sl__op_vt op_venue_assign = {
    .name = "venue_assign",
    .open = as_open,
    .batch = as_batch,
    .close = as_close,
    .conf_free = free,
};

/* ---- builder ------------------------------------------------------------- */
static int find_col(sl_job *job, const sl_schema *in, const char *name,
                    const char *what, sl_type t1, sl_type t2)
{
    int c = name ? sl_schema_find(in, name) : -1;
    if (c < 0 || (in->cols[c].type != t1 && in->cols[c].type != t2)) {
        sl__job_fail(job, SL_EINVAL, "venue_report: %s '%s' is not a %s column "
                     "of the stream", what, name ? name : "(none)",
                     sl_type_name(t1));
        return -1;
    }
    return c;
}

sl_stream *sl_stream_venue_report(sl_stream *s, const sl_venues *venues,
                                  const sl_venue_report_spec *spec)
{
    if (!s) return NULL;
    sl_job *job = sl__stream_job(s);
    if (!venues || venues->n == 0 || !spec) {
        sl__job_fail(job, SL_EINVAL, "venue_report: no venues or no spec");
        return NULL;
    }
    if (spec->k < 2 || spec->emit_every_ms < 0 || spec->slice_ms < 0 ||
        spec->lateness_ms < 0 || spec->round_to < 0) {
        sl__job_fail(job, SL_EINVAL, "venue_report: k must be >= 2 and "
                     "emit_every_ms, slice_ms, lateness_ms, round_to >= 0 (got "
                     "k=%lld)", (long long)spec->k);
        return NULL;
    }
    for (size_t i = 0; spec->slice_ms && i < venues->n; i++)
        if ((venues->v[i].end - venues->v[i].start) / spec->slice_ms > 4096) {
            sl__job_fail(job, SL_EINVAL, "venue_report: venue '%s' would have "
                         "more than 4096 slices of %lld ms", venues->v[i].name,
                         (long long)spec->slice_ms);
            return NULL;
        }
    const sl_schema *in = sl_stream_schema(s);
    const char *tcol = sl__stream_time_col(s);
    assign_conf *ac = sl__xcalloc(1, sizeof *ac);
    ac->venues = venues;
    ac->ts = find_col(job, in, tcol, "time column", SL_TIMESTAMP, SL_TIMESTAMP);
    ac->sub = find_col(job, in, spec->sub_col, "sub_col", SL_INT64, SL_INT64);
    ac->cell = find_col(job, in, spec->cell_col, "cell_col", SL_INT64, SL_INT64);
    ac->birth = spec->birth_col ? find_col(job, in, spec->birth_col, "birth_col",
                                           SL_TIMESTAMP, SL_INT64)
                                : -1;
    ac->gender = spec->gender_col ? find_col(job, in, spec->gender_col,
                                             "gender_col", SL_STRING, SL_STRING)
                                  : -1;
    ac->ngender = spec->gender_col ? 4 : 1;
    if (ac->ts < 0 || ac->sub < 0 || ac->cell < 0 ||
        (spec->birth_col && ac->birth < 0) || (spec->gender_col && ac->gender < 0)) {
        free(ac);
        return NULL;
    }
    sl_schema *mid = sl_schema_new();
    sl_schema_add(mid, "ts", SL_TIMESTAMP);
    sl_schema_add(mid, "sub", SL_INT64);
    sl_schema_add(mid, "venue_id", SL_INT64);
    sl_schema_add(mid, "grp", SL_INT64);
    int ngender = ac->ngender;
    s = sl__stream_add_op(s, &op_venue_assign, ac, mid);
    sl_schema_free(mid);
    if (!s) return NULL;
    sl__stream_set_time_col(s, "ts");
    s = sl_stream_key_by(s, (const char *[]){"venue_id", NULL});
    if (!s) return NULL;
    sl__venue_report_conf *rc = sl__xcalloc(1, sizeof *rc);
    rc->venues = venues;
    rc->spec = *spec;
    rc->spec.sub_col = rc->spec.cell_col = rc->spec.birth_col =
        rc->spec.gender_col = NULL; /* borrowed strings are not kept */
    if (rc->spec.round_to == 0) rc->spec.round_to = 1;
    rc->ngender = ngender;
    rc->in_ts = 0;
    rc->in_sub = 1;
    rc->in_venue = 2;
    rc->in_grp = 3;
    sl_schema *os = sl__venue_report_schema();
    s = sl__stream_add_op(s, &sl__op_venue_report, rc, os);
    sl_schema_free(os);
    if (s) sl__stream_set_time_col(s, "slice_start");
    return s;
}
