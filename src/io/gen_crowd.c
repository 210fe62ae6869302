/* gen_crowd.c — a staged public event for the synthetic data set: a crowd
 * whose age mix differs from the background (by default three quarters of
 * it aged 18-34) converging on a few cells for a few hours, so a venue
 * report shows a visible, checkable effect (docs/venues.md).
 *
 * Member j is a subscriber drawn from splitmix64 at (seed, j, attempt):
 * with probability crowd.skew one whose age at the event's start date is in
 * [crowd.age.lo, crowd.age.hi] (rejection sampling over the subscribers'
 * modelled birth dates), else any subscriber, as in the background (so some
 * are unknown to the subscriber table). A member arrives in the first third
 * of the event, leaves in the last third and has crowd.events events in the
 * event's cells from arrival to departure. Two draws may pick the same
 * subscriber: counts of distinct subscribers stay exact, the crowd is then
 * a little smaller. Events are written sorted by time to
 * events/crowd.csv, a partition of its own beside the background's; the
 * venue to dir/venues.csv and a market share per area to
 * dir/market_share.csv. Deterministic for a configuration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/gen.h"

#define MAX_CELLS 1024

static uint64_t mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t seed, uint64_t a, uint64_t b)
{
    return mix(mix(mix(seed ^ 0x43524f5744ULL) + a) + b);
}

typedef struct {
    int64_t ts, sub, cell;
    int type;
} cev;

static int cev_cmp(const void *x, const void *y)
{
    const cev *a = x, *b = y;
    if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
    if (a->sub != b->sub) return a->sub < b->sub ? -1 : 1;
    return (a->cell > b->cell) - (a->cell < b->cell);
}

static int parse_cells(const char *s, int64_t ncells, int64_t *out, int *n)
{
    *n = 0;
    const char *p = s;
    while (*p) {
        char *e;
        long long lo = strtoll(p, &e, 10), hi = lo;
        if (e == p) return -1;
        if (*e == '-') {
            const char *q = e + 1;
            hi = strtoll(q, &e, 10);
            if (e == q) return -1;
        }
        if (lo < 1 || hi < lo || hi > ncells) return -1;
        for (long long c = lo; c <= hi; c++) {
            if (*n == MAX_CELLS) return -1;
            out[(*n)++] = c;
        }
        if (*e == ';') e++;
        else if (*e) return -1;
        p = e;
    }
    return *n ? 0 : -1;
}

static int age_at(int64_t birth_day, int64_t day)
{
    int64_t by, y;
    unsigned bm, bd, m, d;
    sl__civil_from_days(birth_day, &by, &bm, &bd);
    sl__civil_from_days(day, &y, &m, &d);
    return (int)(y - by - ((m < bm || (m == bm && d < bd)) ? 1 : 0));
}

static void fmt_iso(int64_t ms, char *buf, size_t n)
{
    int64_t day = sl__floor_div(ms, 86400000), rem = ms - day * 86400000, y;
    unsigned m, d;
    sl__civil_from_days(day, &y, &m, &d);
    snprintf(buf, n, "%04lld-%02u-%02uT%02d:%02d:%02dZ", (long long)y, m, d,
             (int)(rem / 3600000), (int)(rem / 60000 % 60), (int)(rem / 1000 % 60));
}

static int fail_io(const char *path, char *err, size_t esz)
{
    return sl__err(err, esz, SL_EIO, "generator: cannot write '%s'", path);
}

static int write_side_files(const sl__gen_conf *c, const sl__gen *g,
                            const char *dir, int64_t cs, int64_t ce,
                            int64_t cell0, char *err, size_t esz)
{
    char path[4096], a[32], b[32];
    snprintf(path, sizeof path, "%s/venues.csv", dir);
    FILE *f = fopen(path, "w");
    if (!f) return fail_io(path, err, esz);
    fmt_iso(cs, a, sizeof a);
    fmt_iso(ce, b, sizeof b);
    fprintf(f, "name,start,end,cells,area\nstaged-event,%s,%s,%s,A%04lld\n", a, b,
            c->crowd_cells, (long long)sl__gen_cell_area(g, cell0));
    if (fclose(f)) return fail_io(path, err, esz);
    snprintf(path, sizeof path, "%s/market_share.csv", dir);
    f = fopen(path, "w");
    if (!f) return fail_io(path, err, esz);
    fputs("area,share\n", f);
    for (int64_t ar = 1; ar <= c->areas; ar++) /* 0.20 .. 0.45 */
        fprintf(f, "A%04lld,%.2f\n", (long long)ar,
                0.20 + (double)(rnd((uint64_t)c->seed, 7, (uint64_t)ar) % 26) / 100);
    if (fclose(f)) return fail_io(path, err, esz);
    return 0;
}

int sl__gen_write_crowd(const sl__gen_conf *c, const sl__gen *g,
                        const char *dir, char *err, size_t esz)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/events/crowd.csv", dir);
    if (c->crowd_size == 0) {
        unlink(path); /* a crowd of an earlier run must not linger */
        return 0;
    }
    int64_t cells[MAX_CELLS], start, cs;
    int ncell;
    if (!c->crowd_cells || parse_cells(c->crowd_cells, c->cells, cells, &ncell))
        return sl__err(err, esz, SL_EINVAL, "generator: crowd.cells '%s' must be "
                       "LO-HI or a;b;c with cells in [1, %lld] (at most %d)",
                       c->crowd_cells ? c->crowd_cells : "", (long long)c->cells,
                       MAX_CELLS);
    if (sl__parse_ts(c->start, strlen(c->start), &start))
        return sl__err(err, esz, SL_EINVAL, "generator: bad start '%s'", c->start);
    if (!c->crowd_start || !*c->crowd_start)
        cs = start + c->span_ms / 2 / 60000 * 60000;
    else if (sl__parse_ts(c->crowd_start, strlen(c->crowd_start), &cs))
        return sl__err(err, esz, SL_EINVAL, "generator: crowd.start '%s' is not "
                       "epoch ms or ISO-8601", c->crowd_start);
    if (c->crowd_age_hi < c->crowd_age_lo)
        return sl__err(err, esz, SL_EINVAL, "generator: crowd.age.hi (%lld) must "
                       "be >= crowd.age.lo (%lld)", (long long)c->crowd_age_hi,
                       (long long)c->crowd_age_lo);
    int64_t span = c->crowd_span_ms, ce = cs + span, day = sl__floor_div(cs, 86400000);
    uint64_t seed = (uint64_t)c->seed;
    size_t n = (size_t)c->crowd_size * (size_t)c->crowd_events;
    cev *ev = sl__xmalloc(n * sizeof *ev);
    size_t k = 0;
    for (int64_t j = 0; j < c->crowd_size; j++) {
        uint64_t u = rnd(seed, 1, (uint64_t)j);
        bool skewed = (double)(u >> 11) / 9007199254740992.0 < c->crowd_skew;
        int64_t sub = 0;
        for (uint64_t t = 0; t < 1000; t++) {
            sub = (int64_t)(rnd(seed, 2, (uint64_t)j * 1000 + t) % (uint64_t)c->subscribers);
            if (!skewed) break;
            if (!sl__gen_sub_known(g, sub)) continue;
            int age = age_at(sl__gen_sub_birth_day(g, sub), day);
            if (age >= c->crowd_age_lo && age <= c->crowd_age_hi) break;
        }
        int64_t third = span / 3;
        int64_t arrive = cs + (int64_t)(rnd(seed, 3, (uint64_t)j) % (uint64_t)third);
        int64_t leave = ce - 1 - (int64_t)(rnd(seed, 4, (uint64_t)j) % (uint64_t)third);
        for (int64_t e = 0; e < c->crowd_events; e++) {
            int64_t ts = e == 0 ? arrive : e == 1 ? leave
                : arrive + (int64_t)(rnd(seed, 5, (uint64_t)(j * 10000 + e)) %
                                     (uint64_t)(leave - arrive));
            uint64_t r = rnd(seed, 6, (uint64_t)(j * 10000 + e));
            ev[k++] = (cev){ts, sub, cells[r % (uint64_t)ncell], (int)((r >> 32) % 5)};
        }
    }
    qsort(ev, k, sizeof *ev, cev_cmp);
    FILE *f = fopen(path, "w");
    if (!f) {
        free(ev);
        return fail_io(path, err, esz);
    }
    fputs("ts,msisdn,event_type,cell_id,duration_s,bytes\n", f);
    for (size_t i = 0; i < k; i++) {
        char ms[13];
        sl__gen_msisdn(ev[i].sub, ms);
        ms[12] = 0;
        bool call = ev[i].type == SL__GEN_CALL_PLACED || ev[i].type == SL__GEN_CALL_RECEIVED;
        bool data = ev[i].type == SL__GEN_DATA_SESSION;
        fprintf(f, "%lld,%s,%s,%lld,%s,%s\n", (long long)ev[i].ts, ms,
                sl__gen_event_types[ev[i].type], (long long)ev[i].cell,
                call ? "60" : "", data ? "100000" : "");
    }
    free(ev);
    if (fclose(f)) return fail_io(path, err, esz);
    return write_side_files(c, g, dir, cs, ce, cells[0], err, esz);
}
