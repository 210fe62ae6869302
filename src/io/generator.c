/* generator.c — synthetic telecom data for the reference job: subscribers
 * (MSISDN, birth date, gender), cells (cell id, area) and events (SMS, calls,
 * data sessions), written as CSV files or produced by the "generator" source.
 *
 * The model, in brief:
 * - Every random choice comes from splitmix64 at a state derived from
 *   (seed, stream, row index), so a row is a pure function of its index and
 *   files and source agree without sharing state. No libc rand.
 * - Event i's base time follows a day/night curve: the span is cut into
 *   bins (one minute by default) weighted by an hourly profile, bin b gets
 *   events cum[b] .. cum[b+1)-1 and spreads them evenly. Base times are thus
 *   non-decreasing in i; partition p takes events i % parts == p, so all
 *   partitions move through time together.
 * - Each event is shifted back by a jitter in [0, out.of.order.ms] (cubic,
 *   so mostly small), and clamped to the start. For events i < j of a
 *   partition, ts_i - ts_j <= jitter_j: the disorder never exceeds the bound.
 * - Cells are drawn Zipf (s = 1.1) over a shuffled rank order, subscribers
 *   with density ~ 1/sqrt(rank) over another shuffle; the unknown fraction
 *   of subscribers is left out of the subscriber table.
 * It does not model sessions, mobility or correlations between fields. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "io/gen.h"

typedef unsigned __int128 u128;

const char *const sl__gen_event_types[SL__GEN_NTYPES] = {
    "SMS_SENT", "SMS_RECEIVED", "CALL_PLACED", "CALL_RECEIVED", "DATA_SESSION"};
/* Cumulative percentages of the event types above. */
static const int type_cum[SL__GEN_NTYPES] = {25, 50, 65, 80, 100};
/* Relative event rate per UTC hour of day (quiet nights, busy evenings). */
static const int64_t hour_w[24] = {22, 14, 10, 8,  8,  11, 20, 38,
                                   60, 75, 85, 90, 95, 93, 90, 90,
                                   92, 96, 100, 98, 90, 75, 55, 35};
/* Age bands of subscribers: [lo, hi) years and weight per mille. */
static const struct { int lo, hi, w; } age_bands[] = {
    {12, 18, 30},  {18, 25, 110}, {25, 35, 165}, {35, 45, 165},
    {45, 55, 175}, {55, 65, 160}, {65, 75, 120}, {75, 90, 75}};
#define NBANDS (int)(sizeof age_bands / sizeof age_bands[0])
#define MSISDN_BASE 491700000000LL
#define GUIDE_BITS 12

/* ---- configuration ------------------------------------------------------ */

#define GEN_COMMON_DEFS                                                       \
    {.key = "seed", .type = SL_CONF_INT, .def = "1", .min = 0,                \
     .max = INT64_MAX, .offset = offsetof(sl__gen_conf, seed),                \
     .desc = "Seed of every random choice; the same seed gives the same "    \
             "data."},                                                        \
    {.key = "subscribers", .type = SL_CONF_INT, .def = "10000000", .min = 1,  \
     .max = 1000000000, .offset = offsetof(sl__gen_conf, subscribers),        \
     .desc = "Number of subscribers (MSISDN 491700000000 + index)."},         \
    {.key = "cells", .type = SL_CONF_INT, .def = "20000", .min = 1,           \
     .max = 10000000, .offset = offsetof(sl__gen_conf, cells),                \
     .desc = "Number of cells (cell_id 1..cells)."},                          \
    {.key = "areas", .type = SL_CONF_INT, .def = "400", .min = 1,             \
     .max = 10000000, .offset = offsetof(sl__gen_conf, areas),                \
     .desc = "Number of areas (A0001..); at most the number of cells."},     \
    {.key = "events", .type = SL_CONF_INT, .def = "1000000", .min = 0,        \
     .max = 1000000000000000LL, .offset = offsetof(sl__gen_conf, events),     \
     .desc = "Number of events over the whole span."},                        \
    {.key = "start", .type = SL_CONF_STR, .def = "2026-01-05T00:00:00Z",      \
     .offset = offsetof(sl__gen_conf, start),                                 \
     .desc = "Time of the first event: epoch ms or ISO-8601 UTC."},           \
    {.key = "span.ms", .type = SL_CONF_INT, .def = "86400000", .min = 1,      \
     .max = 100000000000000LL, .offset = offsetof(sl__gen_conf, span_ms),     \
     .desc = "Milliseconds the events cover."},                               \
    {.key = "out.of.order.ms", .type = SL_CONF_INT, .def = "2000", .min = 0,  \
     .max = 604800000, .offset = offsetof(sl__gen_conf, out_of_order_ms),     \
     .desc = "Largest backwards jitter of an event's time."},                 \
    {.key = "unknown.fraction", .type = SL_CONF_DOUBLE, .def = "0.02",        \
     .min = 0, .max = 1,                                                      \
     .offset = offsetof(sl__gen_conf, unknown_fraction),                      \
     .desc = "Share (0..1) of subscribers missing from the subscriber "      \
             "table."},                                                       \
    {.key = "parts", .type = SL_CONF_INT, .def = "1", .min = 1,               \
     .max = 100000, .offset = offsetof(sl__gen_conf, parts),                  \
     .desc = "Partitions: event files, or source partitions."}

const sl__conf_def sl__gen_conf_defs[] = {
    GEN_COMMON_DEFS,
    {.key = "gzip", .type = SL_CONF_BOOL, .def = "false",
     .offset = offsetof(sl__gen_conf, gzip),
     .desc = "Write .csv.gz files (zlib level 1)."},
    {.key = "crowd.size", .type = SL_CONF_INT, .def = "0", .min = 0,
     .max = 100000000, .offset = offsetof(sl__gen_conf, crowd_size),
     .desc = "Members of a staged public event (0 = none): see "
             "docs/venues.md."},
    {.key = "crowd.cells", .type = SL_CONF_STR, .def = "1-4",
     .offset = offsetof(sl__gen_conf, crowd_cells),
     .desc = "The staged event's cells: LO-HI or a;b;c."},
    {.key = "crowd.start", .type = SL_CONF_STR, .def = "",
     .offset = offsetof(sl__gen_conf, crowd_start),
     .desc = "Start of the staged event (epoch ms or ISO-8601 UTC); "
             "empty: the middle of the span."},
    {.key = "crowd.span.ms", .type = SL_CONF_INT, .def = "10800000",
     .min = 60000, .max = 604800000,
     .offset = offsetof(sl__gen_conf, crowd_span_ms),
     .desc = "Length of the staged event."},
    {.key = "crowd.events", .type = SL_CONF_INT, .def = "6", .min = 2,
     .max = 10000, .offset = offsetof(sl__gen_conf, crowd_events),
     .desc = "Events per crowd member (arrival, departure and between)."},
    {.key = "crowd.age.lo", .type = SL_CONF_INT, .def = "18", .min = 0,
     .max = 120, .offset = offsetof(sl__gen_conf, crowd_age_lo),
     .desc = "Youngest favoured age of the crowd."},
    {.key = "crowd.age.hi", .type = SL_CONF_INT, .def = "34", .min = 0,
     .max = 120, .offset = offsetof(sl__gen_conf, crowd_age_hi),
     .desc = "Oldest favoured age of the crowd."},
    {.key = "crowd.skew", .type = SL_CONF_DOUBLE, .def = "0.75", .min = 0,
     .max = 1, .offset = offsetof(sl__gen_conf, crowd_skew),
     .desc = "Share of crowd members drawn from the favoured ages."},
    {.key = NULL},
};

const sl__conf_def sl__gen_source_conf_defs[] = {
    GEN_COMMON_DEFS,
    {.key = "rate", .type = SL_CONF_DOUBLE, .def = "0", .min = 0,
     .max = 1000000000000LL,
     .offset = offsetof(sl__gen_conf, rate),
     .desc = "Events per second for the whole source; 0 = as fast as "
             "possible."},
    {.key = "dataset", .type = SL_CONF_ENUM, .def = "events",
     .allowed = "events|subscribers|cells",
     .offset = offsetof(sl__gen_conf, dataset),
     .desc = "Which table to produce (subscribers and cells serve lookup "
             "tables)."},
    {.key = NULL},
};

/* Checks what the table cannot and derives start_ms. */
static int gen_validate(sl__gen_conf *c, bool cross, char *err, size_t esz)
{
    if (c->start == NULL ||
        sl__parse_ts(c->start, strlen(c->start), &c->start_ms) != 0)
        return sl__err(err, esz, SL_EINVAL,
                       "generator: start '%s' is not epoch ms or ISO-8601",
                       c->start ? c->start : "");
    if (!(c->unknown_fraction >= 0 && c->unknown_fraction <= 1))
        return sl__err(err, esz, SL_EINVAL,
                       "generator: unknown.fraction must be in [0, 1]");
    if (!(c->rate >= 0))
        return sl__err(err, esz, SL_EINVAL, "generator: rate must be >= 0");
    if (cross && c->areas > c->cells)
        return sl__err(err, esz, SL_EINVAL,
                       "generator: areas (%lld) must not exceed cells (%lld)",
                       (long long)c->areas, (long long)c->cells);
    return 0;
}

void sl__gen_conf_init(sl__gen_conf *c)
{
    static const char *const none[] = {NULL};
    memset(c, 0, sizeof *c);
    int rc = sl__conf_apply(sl__gen_conf_defs, c, none, "generator", NULL,
                            NULL, 0);
    SL_ASSERT(rc == 0);
    rc = gen_validate(c, true, NULL, 0);
    SL_ASSERT(rc == 0);
}

void sl__gen_conf_close(sl__gen_conf *c)
{
    if (c == NULL) return;
    sl__conf_free(sl__gen_conf_defs, c);
    c->start = NULL;
}

int sl__gen_conf_set(sl__gen_conf *c, const char *key, const char *value,
                     char *err, size_t esz)
{
    const char *kv[] = {key, value, NULL};
    sl__gen_conf tmp;
    memset(&tmp, 0, sizeof tmp);
    int rc = sl__conf_apply(sl__gen_conf_defs, &tmp, kv, "generator", NULL,
                            err, esz);
    /* one key at a time: relations between keys are checked when used */
    if (rc == 0) rc = gen_validate(&tmp, false, err, esz);
    if (rc != 0) {
        sl__conf_free(sl__gen_conf_defs, &tmp);
        return rc;
    }
    for (const sl__conf_def *d = sl__gen_conf_defs; d->key != NULL; d++) {
        if (strcmp(d->key, key) != 0) continue;
        char *dst = (char *)c + d->offset;
        const char *src = (const char *)&tmp + d->offset;
        switch (d->type) {
        case SL_CONF_INT: memcpy(dst, src, sizeof(int64_t)); break;
        case SL_CONF_DOUBLE: memcpy(dst, src, sizeof(double)); break;
        case SL_CONF_BOOL: memcpy(dst, src, sizeof(bool)); break;
        case SL_CONF_ENUM: memcpy(dst, src, sizeof(int)); break;
        case SL_CONF_STR:
            free(*(char **)dst);
            *(char **)dst = *(char *const *)src;
            *(char **)((char *)&tmp + d->offset) = NULL;
            break;
        }
        if (strcmp(key, "start") == 0) c->start_ms = tmp.start_ms;
    }
    sl__conf_free(sl__gen_conf_defs, &tmp);
    return 0;
}

/* ---- the model ---------------------------------------------------------- */

enum { ST_EVENT, ST_SUB, ST_LAYOUT, ST_N };
#define GAMMA 0x9E3779B97F4A7C15ULL

struct sl__gen {
    int64_t subs, cells, areas, events, start, span, ooo, parts;
    uint64_t key[ST_N];  /* splitmix64 state bases per stream */
    uint64_t unknown_thr; /* 53-bit: a subscriber is unknown below it */
    int64_t nbins, bin_ms;
    int64_t *cum;         /* nbins + 1 */
    uint64_t *cdf;        /* cells: cumulative Zipf probability * 2^63 */
    uint32_t guide[(1 << GUIDE_BITS) + 1];
    uint64_t cell_a, cell_c, area_a, area_c, sub_a, sub_c; /* x -> a*x+c mod n */
    int64_t y0;
    unsigned m0, d0;
};

static inline uint64_t splitmix_at(uint64_t state)
{
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Draw k (0-based) of row i in a stream that uses `per` draws per row. */
static inline uint64_t draw(const sl__gen *g, int st, int per, int64_t i,
                            int k)
{
    return splitmix_at(g->key[st] +
                       ((uint64_t)i * (uint64_t)per + (uint64_t)k + 1) * GAMMA);
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b != 0) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* A bijection of [0, n): x -> (a*x + c) mod n with gcd(a, n) = 1. */
static void perm_init(uint64_t h, uint64_t n, uint64_t *a, uint64_t *c)
{
    if (n <= 1) {
        *a = 1;
        *c = 0;
        return;
    }
    /* A multiplier near n * 0.618 scatters neighbours. */
    uint64_t x = ((uint64_t)((double)n * 0.6180339887) + (h % 97)) % n;
    if (x == 0) x = 1;
    while (gcd(x, n) != 1) x = x + 1 < n ? x + 1 : 1;
    *a = x;
    *c = (h >> 17) % n;
}

static inline uint64_t perm(uint64_t x, uint64_t a, uint64_t c, uint64_t n)
{
    return (uint64_t)(((u128)x * a + c) % n);
}

static void build_bins(sl__gen *g)
{
    int64_t bin = 60000;
    if (g->span / bin > (1 << 20)) bin = (g->span + (1 << 20) - 1) >> 20;
    if (bin > g->span) bin = g->span;
    g->bin_ms = bin;
    g->nbins = (g->span + bin - 1) / bin;
    g->cum = sl__xmalloc((size_t)(g->nbins + 1) * sizeof(int64_t));
    u128 *cw = sl__xmalloc((size_t)(g->nbins + 1) * sizeof(u128));
    cw[0] = 0;
    for (int64_t b = 0; b < g->nbins; b++) {
        int64_t b0 = b * bin;
        int64_t len = g->span - b0 < bin ? g->span - b0 : bin;
        int64_t tod = sl__floor_div(g->start + b0 + len / 2, 1000) % 86400;
        if (tod < 0) tod += 86400;
        int64_t h = tod / 3600, f = tod % 3600;
        uint64_t w = (uint64_t)(hour_w[h] * (3600 - f) +
                                hour_w[(h + 1) % 24] * f);
        cw[b + 1] = cw[b] + (u128)w * (uint64_t)len;
    }
    /* span >= 1 ms (configure) and every hour weighs > 0, so the total does;
     * clang-analyzer does not follow the assertion through 128-bit values */
    SL_ASSERT(cw[g->nbins] > 0);
    for (int64_t b = 0; b <= g->nbins; b++)
        g->cum[b] = (int64_t)(((u128)g->events * cw[b]) / cw[g->nbins]); // NOLINT(clang-analyzer-core.DivideZero)
    free(cw);
}

static void build_cells(sl__gen *g)
{
    int64_t n = g->cells;
    g->cdf = sl__xmalloc((size_t)n * sizeof(uint64_t));
    double total = 0;
    for (int64_t r = 0; r < n; r++) total += pow((double)(r + 1), -1.1);
    double acc = 0;
    const double scale = 9223372036854775808.0; /* 2^63 */
    for (int64_t r = 0; r < n; r++) {
        acc += pow((double)(r + 1), -1.1);
        double v = acc / total * scale;
        g->cdf[r] = v >= scale ? (uint64_t)1 << 63 : (uint64_t)v;
    }
    g->cdf[n - 1] = (uint64_t)1 << 63;
    /* guide[k] = first rank whose cdf exceeds k * 2^(63 - GUIDE_BITS) */
    int64_t r = 0;
    for (uint64_t k = 0; k <= (1u << GUIDE_BITS); k++) {
        uint64_t t = k << (63 - GUIDE_BITS);
        while (r < n - 1 && g->cdf[r] <= t) r++;
        g->guide[k] = (uint32_t)r;
    }
}

sl__gen *sl__gen_new(const sl__gen_conf *c, char *err, size_t esz)
{
    sl__gen_conf v = *c;
    if (gen_validate(&v, true, err, esz) != 0) return NULL;
    sl__gen *g = sl__xcalloc(1, sizeof *g);
    g->subs = c->subscribers;
    g->cells = c->cells;
    g->areas = c->areas;
    g->events = c->events;
    g->start = v.start_ms;
    g->span = c->span_ms;
    g->ooo = c->out_of_order_ms;
    g->parts = c->parts;
    uint64_t s = (uint64_t)c->seed;
    for (int k = 0; k < ST_N; k++)
        g->key[k] = splitmix_at(s * 0xD1B54A32D192ED03ULL + (uint64_t)k * GAMMA +
                                0x2545F4914F6CDD1DULL);
    g->unknown_thr = (uint64_t)(c->unknown_fraction * 9007199254740992.0);
    build_bins(g);
    build_cells(g);
    perm_init(draw(g, ST_LAYOUT, 4, 0, 0), (uint64_t)g->cells, &g->cell_a,
              &g->cell_c);
    perm_init(draw(g, ST_LAYOUT, 4, 0, 1), (uint64_t)g->cells, &g->area_a,
              &g->area_c);
    perm_init(draw(g, ST_LAYOUT, 4, 0, 2), (uint64_t)g->subs, &g->sub_a,
              &g->sub_c);
    int64_t day = sl__floor_div(g->start, 86400000);
    sl__civil_from_days(day, &g->y0, &g->m0, &g->d0);
    return g;
}

void sl__gen_free(sl__gen *g)
{
    if (g == NULL) return;
    free(g->cum);
    free(g->cdf);
    free(g);
}

/* Bin of event i, starting the search at *hint (events are mostly asked
 * for in increasing order). */
static inline int64_t find_bin(const sl__gen *g, int64_t i, int64_t hint)
{
    if (hint < 0 || hint >= g->nbins || g->cum[hint] > i) {
        int64_t lo = 0, hi = g->nbins; /* last b with cum[b] <= i */
        while (hi - lo > 1) {
            int64_t mid = (lo + hi) / 2;
            if (g->cum[mid] <= i) lo = mid;
            else hi = mid;
        }
        return lo;
    }
    while (hint + 1 < g->nbins && g->cum[hint + 1] <= i) hint++;
    return hint;
}

static inline int64_t sample_cell(const sl__gen *g, uint64_t u)
{
    u >>= 1; /* 63 bits */
    uint64_t k = u >> (63 - GUIDE_BITS);
    int64_t lo = g->guide[k], hi = g->guide[k + 1];
    while (lo < hi) { /* first rank with cdf > u */
        int64_t mid = (lo + hi) / 2;
        if (g->cdf[mid] > u) hi = mid;
        else lo = mid + 1;
    }
    return (int64_t)perm((uint64_t)lo, g->cell_a, g->cell_c,
                         (uint64_t)g->cells) + 1;
}

static void event_at(const sl__gen *g, int64_t i, sl__gen_event *ev,
                     int64_t *hint)
{
    int64_t b = find_bin(g, i, *hint);
    *hint = b;
    int64_t b0 = b * g->bin_ms;
    int64_t len = g->span - b0 < g->bin_ms ? g->span - b0 : g->bin_ms;
    int64_t nb = g->cum[b + 1] - g->cum[b];
    int64_t base = g->start + b0 +
                   (int64_t)((u128)(uint64_t)(i - g->cum[b]) * (uint64_t)len /
                             (uint64_t)nb);
    uint64_t d0 = draw(g, ST_EVENT, 5, i, 0);
    uint64_t u = d0 >> 54; /* 0..1023, jitter ~ u^3 */
    int64_t jit = (int64_t)((u128)(u * u * u) * (uint64_t)g->ooo /
                            (1023ULL * 1023 * 1023));
    int64_t ts = base - jit;
    ev->ts = ts < g->start ? g->start : ts;

    uint64_t x = draw(g, ST_EVENT, 5, i, 1) >> 32;
    uint64_t rank = (uint64_t)(((u128)(x * x) * (uint64_t)g->subs) >> 64);
    ev->sub = (int64_t)perm(rank, g->sub_a, g->sub_c, (uint64_t)g->subs);
    ev->cell = sample_cell(g, draw(g, ST_EVENT, 5, i, 2));

    uint64_t t = ((draw(g, ST_EVENT, 5, i, 3) >> 32) * 100) >> 32;
    int type = 0;
    while ((int)t >= type_cum[type]) type++;
    ev->type = type;
    uint64_t d4 = draw(g, ST_EVENT, 5, i, 4);
    ev->duration_s = ev->bytes = -1;
    if (type == SL__GEN_CALL_PLACED || type == SL__GEN_CALL_RECEIVED) {
        uint64_t y = d4 >> 32;
        ev->duration_s = 1 + (int64_t)((((y * y) >> 32) * 1800) >> 32);
    } else if (type == SL__GEN_DATA_SESSION) {
        unsigned e = (unsigned)(d4 % 17);
        ev->bytes = 1024 + (int64_t)((d4 >> 8) % (1024ULL << e));
    }
}

void sl__gen_event_at(const sl__gen *g, int64_t i, sl__gen_event *ev)
{
    int64_t hint = -1;
    event_at(g, i, ev, &hint);
}

void sl__gen_msisdn(int64_t sub, char out[12])
{
    uint64_t v = (uint64_t)(MSISDN_BASE + sub);
    for (int k = 11; k >= 0; k--) {
        out[k] = (char)('0' + v % 10);
        v /= 10;
    }
}

bool sl__gen_sub_known(const sl__gen *g, int64_t sub)
{
    return (draw(g, ST_SUB, 3, sub, 0) >> 11) >= g->unknown_thr;
}

int64_t sl__gen_sub_birth_day(const sl__gen *g, int64_t sub)
{
    uint64_t d = draw(g, ST_SUB, 3, sub, 1);
    int r = (int)(d % 1000), band = 0, acc = age_bands[0].w;
    while (r >= acc && band + 1 < NBANDS) acc += age_bands[++band].w;
    int64_t age = age_bands[band].lo +
                  (int64_t)((d >> 10) % (uint64_t)(age_bands[band].hi -
                                                   age_bands[band].lo));
    /* Born in (start - (age+1) years, start - age years]: `age` completed
     * years on the start date. */
    int64_t upper = sl__days_from_civil(g->y0 - age, g->m0, g->d0);
    int64_t lower = sl__days_from_civil(g->y0 - age - 1, g->m0, g->d0) + 1;
    return lower + (int64_t)((d >> 20) % (uint64_t)(upper - lower + 1));
}

char sl__gen_sub_gender(const sl__gen *g, int64_t sub)
{
    uint64_t r = draw(g, ST_SUB, 3, sub, 2) % 100;
    return r < 49 ? 'M' : r < 98 ? 'F' : 'X';
}

int64_t sl__gen_cell_area(const sl__gen *g, int64_t cell)
{
    return (int64_t)(perm((uint64_t)(cell - 1), g->area_a, g->area_c,
                          (uint64_t)g->cells) %
                     (uint64_t)g->areas) + 1;
}

/* ---- formatting --------------------------------------------------------- */

static const char digits2[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536"
    "37383940414243444546474849505152535455565758596061626364656667686970717273"
    "74757677787980818283848586878889909192939495969798990";

/* Writes v in decimal at p; returns the length. */
static inline size_t fmt_i64(char *p, int64_t v)
{
    char tmp[24];
    char *e = tmp + sizeof tmp, *q = e;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    while (u >= 100) {
        unsigned r = (unsigned)(u % 100);
        u /= 100;
        q -= 2;
        memcpy(q, digits2 + 2 * r, 2);
    }
    if (u >= 10) {
        q -= 2;
        memcpy(q, digits2 + 2 * u, 2);
    } else {
        *--q = (char)('0' + u);
    }
    if (v < 0) *--q = '-';
    size_t n = (size_t)(e - q);
    memcpy(p, q, n);
    return n;
}

static size_t fmt_date(char *p, int64_t day)
{
    int64_t y;
    unsigned m, d;
    sl__civil_from_days(day, &y, &m, &d);
    size_t n = fmt_i64(p, y);
    p[n++] = '-';
    memcpy(p + n, digits2 + 2 * m, 2);
    n += 2;
    p[n++] = '-';
    memcpy(p + n, digits2 + 2 * d, 2);
    return n + 2;
}

static size_t fmt_area(char *p, int64_t area)
{
    p[0] = 'A';
    if (area >= 10000) return 1 + fmt_i64(p + 1, area);
    memcpy(p + 1, digits2 + 2 * (area / 100), 2);
    memcpy(p + 3, digits2 + 2 * (area % 100), 2);
    return 5;
}

/* ---- files -------------------------------------------------------------- */

/* printf into a new heap string. */
__attribute__((format(printf, 1, 2))) static char *xfmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = sl__xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

typedef struct {
    char *path, *tmp;
    int fd;
    gzFile gz;
    char *buf;
    size_t n, cap;
    int failed;
} gwriter;

static int gw_open(gwriter *w, const char *path, bool gz, char *err,
                   size_t esz)
{
    memset(w, 0, sizeof *w);
    w->fd = -1;
    w->path = sl__xstrdup(path);
    size_t n = strlen(path) + 5;
    w->tmp = sl__xmalloc(n);
    snprintf(w->tmp, n, "%s.tmp", path);
    if (gz) {
        w->gz = gzopen(w->tmp, "wb1");
    } else {
        w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
    if (w->gz == NULL && w->fd < 0) {
        sl__err(err, esz, SL_EIO, "generator: cannot create '%s': %s", w->tmp,
                strerror(errno));
        free(w->path);
        free(w->tmp);
        return SL_EIO;
    }
    w->cap = 1 << 20;
    w->buf = sl__xmalloc(w->cap);
    return 0;
}

static void gw_flush(gwriter *w)
{
    if (w->failed || w->n == 0) {
        w->n = 0;
        return;
    }
    if (w->gz != NULL) {
        if (gzwrite(w->gz, w->buf, (unsigned)w->n) != (int)w->n) w->failed = EIO;
    } else {
        size_t off = 0;
        while (off < w->n) {
            ssize_t r = write(w->fd, w->buf + off, w->n - off);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                w->failed = errno ? errno : EIO;
                break;
            }
            off += (size_t)r;
        }
    }
    w->n = 0;
}

/* Room for at least `need` bytes at w->buf + w->n. */
static inline char *gw_reserve(gwriter *w, size_t need)
{
    if (w->cap - w->n < need) gw_flush(w);
    return w->buf + w->n;
}

static int gw_close(gwriter *w, char *err, size_t esz)
{
    gw_flush(w);
    if (w->gz != NULL) {
        if (gzclose(w->gz) != Z_OK && !w->failed) w->failed = EIO;
    } else if (close(w->fd) != 0 && !w->failed) {
        w->failed = errno;
    }
    int rc = 0;
    if (w->failed)
        rc = sl__err(err, esz, SL_EIO, "generator: write '%s': %s", w->tmp,
                     strerror(w->failed));
    else if (rename(w->tmp, w->path) != 0)
        rc = sl__err(err, esz, SL_EIO, "generator: rename '%s': %s", w->tmp,
                     strerror(errno));
    if (rc != 0) unlink(w->tmp);
    free(w->path);
    free(w->tmp);
    free(w->buf);
    return rc;
}

static int write_events(const sl__gen *g, const char *dir, int part,
                        int width, bool gz, char *err, size_t esz)
{
    char *path = xfmt("%s/events/events-%0*d.csv%s", dir, width, part,
                      gz ? ".gz" : "");
    gwriter w;
    int rc = gw_open(&w, path, gz, err, esz);
    free(path);
    if (rc != 0) return rc;
    static const char hdr[] = "ts,msisdn,event_type,cell_id,duration_s,bytes\n";
    memcpy(gw_reserve(&w, sizeof hdr), hdr, sizeof hdr - 1);
    w.n += sizeof hdr - 1;
    size_t tlen[SL__GEN_NTYPES];
    for (int t = 0; t < SL__GEN_NTYPES; t++)
        tlen[t] = strlen(sl__gen_event_types[t]);
    int64_t hint = -1;
    sl__gen_event ev;
    for (int64_t i = part; i < g->events; i += g->parts) {
        event_at(g, i, &ev, &hint);
        char *p = gw_reserve(&w, 128), *q = p;
        q += fmt_i64(q, ev.ts);
        *q++ = ',';
        sl__gen_msisdn(ev.sub, q);
        q += 12;
        *q++ = ',';
        memcpy(q, sl__gen_event_types[ev.type], tlen[ev.type]);
        q += tlen[ev.type];
        *q++ = ',';
        q += fmt_i64(q, ev.cell);
        *q++ = ',';
        if (ev.duration_s >= 0) q += fmt_i64(q, ev.duration_s);
        *q++ = ',';
        if (ev.bytes >= 0) q += fmt_i64(q, ev.bytes);
        *q++ = '\n';
        w.n += (size_t)(q - p);
    }
    return gw_close(&w, err, esz);
}

static int write_subscribers(const sl__gen *g, const char *dir, bool gz,
                             char *err, size_t esz)
{
    char *path = xfmt("%s/subscribers.csv%s", dir, gz ? ".gz" : "");
    gwriter w;
    int rc = gw_open(&w, path, gz, err, esz);
    free(path);
    if (rc != 0) return rc;
    static const char hdr[] = "msisdn,birth_date,gender\n";
    memcpy(gw_reserve(&w, sizeof hdr), hdr, sizeof hdr - 1);
    w.n += sizeof hdr - 1;
    for (int64_t s = 0; s < g->subs; s++) {
        if (!sl__gen_sub_known(g, s)) continue;
        char *p = gw_reserve(&w, 64), *q = p;
        sl__gen_msisdn(s, q);
        q += 12;
        *q++ = ',';
        q += fmt_date(q, sl__gen_sub_birth_day(g, s));
        *q++ = ',';
        *q++ = sl__gen_sub_gender(g, s);
        *q++ = '\n';
        w.n += (size_t)(q - p);
    }
    return gw_close(&w, err, esz);
}

static int write_cells(const sl__gen *g, const char *dir, bool gz, char *err,
                       size_t esz)
{
    char *path = xfmt("%s/cells.csv%s", dir, gz ? ".gz" : "");
    gwriter w;
    int rc = gw_open(&w, path, gz, err, esz);
    free(path);
    if (rc != 0) return rc;
    static const char hdr[] = "cell_id,area\n";
    memcpy(gw_reserve(&w, sizeof hdr), hdr, sizeof hdr - 1);
    w.n += sizeof hdr - 1;
    for (int64_t c = 1; c <= g->cells; c++) {
        char *p = gw_reserve(&w, 64), *q = p;
        q += fmt_i64(q, c);
        *q++ = ',';
        q += fmt_area(q, sl__gen_cell_area(g, c));
        *q++ = '\n';
        w.n += (size_t)(q - p);
    }
    return gw_close(&w, err, esz);
}

static int make_dir(const char *path, char *err, size_t esz)
{
    if (sl__mkdirs(path) == 0) return 0;
    return sl__err(err, esz, SL_EIO, "generator: mkdir '%s': %s", path,
                   strerror(errno));
}

/* Removes events-*.csv[.gz] files a previous run left that this run will not
 * write, so a reader of the directory sees exactly this run's files. */
static void remove_stale(const char *edir, int parts, int width, bool gz)
{
    DIR *d = opendir(edir);
    if (d == NULL) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        size_t n = strlen(nm);
        bool ours = strncmp(nm, "events-", 7) == 0 &&
                    ((n > 4 && strcmp(nm + n - 4, ".csv") == 0) ||
                     (n > 7 && strcmp(nm + n - 7, ".csv.gz") == 0));
        if (!ours) continue;
        char *end;
        long k = strtol(nm + 7, &end, 10);
        if (end != nm + 7 && k >= 0 && k < parts) {
            char *keep = xfmt("events-%0*ld.csv%s", width, k, gz ? ".gz" : "");
            int same = strcmp(keep, nm) == 0;
            free(keep);
            if (same) continue;
        }
        char *path = xfmt("%s/%s", edir, nm);
        unlink(path);
        free(path);
    }
    closedir(d);
}

int sl__gen_write(const sl__gen_conf *c, const char *dir, char *err,
                  size_t esz)
{
    sl__gen *g = sl__gen_new(c, err, esz);
    if (g == NULL) return SL_EINVAL;
    char *edir = xfmt("%s/events", dir);
    int rc = make_dir(dir, err, esz);
    if (rc == 0) rc = make_dir(edir, err, esz);
    int width = 3;
    for (int64_t p = 1000; p < g->parts; p *= 10) width++;
    if (rc == 0) remove_stale(edir, (int)g->parts, width, c->gzip);
    for (int p = 0; rc == 0 && p < g->parts; p++)
        rc = write_events(g, dir, p, width, c->gzip, err, esz);
    if (rc == 0) rc = write_subscribers(g, dir, c->gzip, err, esz);
    if (rc == 0) rc = write_cells(g, dir, c->gzip, err, esz);
    if (rc == 0) rc = sl__gen_write_crowd(c, g, dir, err, esz);
    sl__gen_free(g);
    free(edir);
    return rc;
}

/* ---- the source --------------------------------------------------------- */

enum { DS_EVENTS, DS_SUBSCRIBERS, DS_CELLS };
enum { GC_TS, GC_MSISDN, GC_TYPE, GC_CELL, GC_DURATION, GC_BYTES, GC_BIRTH,
       GC_GENDER, GC_AREA, GC_N };
static const char *const gc_names[GC_N] = {
    "ts", "msisdn", "event_type", "cell_id", "duration_s", "bytes",
    "birth_date", "gender", "area"};
static const int gc_dataset[GC_N] = {
    DS_EVENTS, -1, DS_EVENTS, -1, DS_EVENTS, DS_EVENTS,
    DS_SUBSCRIBERS, DS_SUBSCRIBERS, DS_CELLS};

typedef struct {
    sl__gen_conf c; /* first: the conf table's offsets point into it */
    sl__gen *g;
    int col[GC_N];      /* schema column of each generated field, or -1 */
    uint64_t null_cols; /* schema columns the dataset does not produce */
    int64_t rows;       /* rows of the dataset, before unknown subscribers */
} gs_conf;

static void gs_conf_free(void *cv)
{
    gs_conf *c = cv;
    if (c == NULL) return;
    sl__gen_free(c->g);
    sl__conf_free(sl__gen_source_conf_defs, &c->c);
    free(c);
}

static bool type_ok(int f, sl_type t)
{
    switch (f) {
    case GC_TS: return t == SL_TIMESTAMP || t == SL_INT64;
    case GC_BIRTH: return t == SL_STRING || t == SL_TIMESTAMP;
    case GC_CELL: case GC_DURATION: case GC_BYTES: return t == SL_INT64;
    default: return t == SL_STRING;
    }
}

static int gs_configure(void **out, const char *const *kv,
                        const sl_schema *schema, char *err, size_t esz)
{
    gs_conf *c = sl__xcalloc(1, sizeof *c);
    int rc = sl__conf_apply(sl__gen_source_conf_defs, &c->c, kv, "generator",
                            NULL, err, esz);
    if (rc == 0) rc = gen_validate(&c->c, true, err, esz);
    if (rc != 0) {
        gs_conf_free(c);
        return rc;
    }
    int ds = c->c.dataset;
    for (int col = 0; col < schema->n; col++) c->null_cols |= 1ULL << col;
    for (int f = 0; f < GC_N; f++) {
        c->col[f] = -1;
        bool used = gc_dataset[f] == ds ||
                    (f == GC_MSISDN && ds != DS_CELLS) ||
                    (f == GC_CELL && ds != DS_SUBSCRIBERS);
        int col = used ? sl_schema_find(schema, gc_names[f]) : -1;
        if (col < 0) continue;
        sl_type t = schema->cols[col].type;
        if (!type_ok(f, t)) {
            gs_conf_free(c);
            return sl__err(err, esz, SL_EINVAL,
                           "generator: column '%s' cannot be %s", gc_names[f],
                           sl_type_name(t));
        }
        const struct sl__colinfo *ci = &schema->cols[col];
        if (f == GC_TYPE && ci->domain != NULL) {
            for (int k = 0; k < SL__GEN_NTYPES; k++) {
                const char *v = sl__gen_event_types[k];
                if (sl__schema_domain_find(schema, col, v, strlen(v)) < 0) {
                    gs_conf_free(c);
                    return sl__err(err, esz, SL_EINVAL,
                                   "generator: the domain of column "
                                   "'event_type' lacks %s", v);
                }
            }
        }
        c->col[f] = col;
        c->null_cols &= ~(1ULL << col);
    }
    c->g = sl__gen_new(&c->c, err, esz);
    if (c->g == NULL) {
        gs_conf_free(c);
        return SL_EINVAL;
    }
    c->rows = ds == DS_EVENTS ? c->c.events
            : ds == DS_SUBSCRIBERS ? c->c.subscribers : c->c.cells;
    *out = c;
    return 0;
}

static int gs_partitions(const void *cv)
{
    const gs_conf *c = cv;
    return (int)c->c.parts;
}

typedef struct {
    const gs_conf *c;
    int np;
    int *gpart;
    int64_t *next; /* per partition: slice index k of the next row */
    int64_t *hint; /* per partition: time bin of the last event */
    int rr;
    bool started;
    uint64_t t0;
    double rate; /* this instance's share, rows per second */
    uint64_t emitted;
} gs_src;

static void gs_close(void *st)
{
    gs_src *s = st;
    if (s == NULL) return;
    free(s->gpart);
    free(s->next);
    free(s->hint);
    free(s);
}

static int gs_open(void **out, const void *cv, const sl_schema *schema,
                   const int *parts, int nparts, sl__ctx *ctx, char *err,
                   size_t esz)
{
    (void)schema;
    (void)ctx;
    const gs_conf *c = cv;
    gs_src *s = sl__xcalloc(1, sizeof *s);
    s->c = c;
    s->np = nparts;
    size_t n = nparts > 0 ? (size_t)nparts : 1;
    s->gpart = sl__xmalloc(n * sizeof(int));
    s->next = sl__xcalloc(n, sizeof(int64_t));
    s->hint = sl__xmalloc(n * sizeof(int64_t));
    for (int i = 0; i < nparts; i++) {
        if (parts[i] < 0 || parts[i] >= c->c.parts) {
            gs_close(s);
            return sl__err(err, esz, SL_EINVAL,
                           "generator: bad partition %d (of %lld)", parts[i],
                           (long long)c->c.parts);
        }
        s->gpart[i] = parts[i];
        s->hint[i] = -1;
    }
    s->rate = c->c.rate * nparts / (double)c->c.parts;
    *out = s;
    return 0;
}

static inline int64_t row_of(const gs_src *s, int i, int64_t k)
{
    return s->gpart[i] + k * s->c->c.parts;
}

static inline void set_str(sl_batch *b, int col, uint32_t row, const char *p,
                           size_t n)
{
    sl_str *v = &((sl_str *)b->cols[col].data)[row];
    v->ptr = p;
    v->len = (uint32_t)n;
    b->cols[col].valid[row] = 1;
}

static inline void set_i64(sl_batch *b, int col, uint32_t row, int64_t x,
                           bool valid)
{
    ((int64_t *)b->cols[col].data)[row] = x;
    b->cols[col].valid[row] = valid;
}

/* Appends the rows of partition i from slice index k on, up to `max`
 * rows; returns the number appended and advances s->next[i]. */
static uint32_t gen_rows(gs_src *s, int i, sl_batch *b, uint32_t max)
{
    const gs_conf *c = s->c;
    const sl__gen *g = c->g;
    const int *col = c->col;
    const int ds = c->c.dataset;
    uint32_t row = b->n, got = 0;
    /* String bytes per row: MSISDN; MSISDN + date; area name. */
    const size_t stride = ds == DS_EVENTS ? 12 : ds == DS_SUBSCRIBERS ? 24 : 16;
    char *strs = NULL;
    if (col[GC_MSISDN] >= 0 || col[GC_AREA] >= 0 ||
        (col[GC_BIRTH] >= 0 && b->schema->cols[col[GC_BIRTH]].type == SL_STRING))
        strs = sl__arena_alloc(&b->arena, (size_t)max * stride);
    int64_t k = s->next[i];
    while (got < max) {
        int64_t r = row_of(s, i, k);
        if (r >= c->rows) break;
        k++;
        char *sp = strs ? strs + (size_t)got * stride : NULL;
        if (ds == DS_EVENTS) {
            sl__gen_event ev;
            event_at(g, r, &ev, &s->hint[i]);
            if (col[GC_TS] >= 0) set_i64(b, col[GC_TS], row, ev.ts, true);
            if (col[GC_MSISDN] >= 0) {
                sl__gen_msisdn(ev.sub, sp);
                set_str(b, col[GC_MSISDN], row, sp, 12);
            }
            if (col[GC_TYPE] >= 0) {
                static const uint8_t tlen[SL__GEN_NTYPES] = {8, 12, 11, 13, 12};
                set_str(b, col[GC_TYPE], row, sl__gen_event_types[ev.type],
                        tlen[ev.type]);
            }
            if (col[GC_CELL] >= 0) set_i64(b, col[GC_CELL], row, ev.cell, true);
            if (col[GC_DURATION] >= 0)
                set_i64(b, col[GC_DURATION], row,
                        ev.duration_s >= 0 ? ev.duration_s : 0,
                        ev.duration_s >= 0);
            if (col[GC_BYTES] >= 0)
                set_i64(b, col[GC_BYTES], row, ev.bytes >= 0 ? ev.bytes : 0,
                        ev.bytes >= 0);
        } else if (ds == DS_SUBSCRIBERS) {
            if (!sl__gen_sub_known(g, r)) continue;
            if (col[GC_MSISDN] >= 0) {
                sl__gen_msisdn(r, sp);
                set_str(b, col[GC_MSISDN], row, sp, 12);
            }
            if (col[GC_BIRTH] >= 0) {
                int64_t day = sl__gen_sub_birth_day(g, r);
                int bc = col[GC_BIRTH];
                if (b->schema->cols[bc].type == SL_STRING) {
                    SL_ASSERT(sp != NULL); /* strs is allocated for this case */
                    set_str(b, bc, row, sp + 12, fmt_date(sp + 12, day));
                }
                else
                    set_i64(b, bc, row, day * 86400000, true);
            }
            if (col[GC_GENDER] >= 0) {
                static const char *const gs[] = {"M", "F", "X"};
                char gch = sl__gen_sub_gender(g, r);
                set_str(b, col[GC_GENDER], row,
                        gs[gch == 'M' ? 0 : gch == 'F' ? 1 : 2], 1);
            }
        } else {
            if (col[GC_CELL] >= 0) set_i64(b, col[GC_CELL], row, r + 1, true);
            if (col[GC_AREA] >= 0) {
                SL_ASSERT(sp != NULL); /* strs is allocated for this case */
                set_str(b, col[GC_AREA], row, sp,
                        fmt_area(sp, sl__gen_cell_area(g, r + 1)));
            }
        }
        for (uint64_t m = c->null_cols; m != 0; m &= m - 1)
            b->cols[__builtin_ctzll(m)].valid[row] = 0;
        b->kind[row] = SL_KIND_DATA;
        row++;
        got++;
    }
    s->next[i] = k;
    b->n = row;
    return got;
}

static int gs_read(void *st, sl_batch *out, int *part, char *err, size_t esz)
{
    (void)err;
    (void)esz;
    gs_src *s = st;
    *part = 0;
    if (out->n >= out->cap) return 0;
    uint32_t room = out->cap - out->n;
    if (s->rate > 0) {
        uint64_t now = sl__clock();
        if (!s->started) {
            s->started = true;
            s->t0 = now;
        }
        double allowed = (double)(now - s->t0) * 1e-9 * s->rate + 1;
        if (allowed <= (double)s->emitted) return SL_EAGAIN;
        double left = allowed - (double)s->emitted;
        if (left < room) room = (uint32_t)left;
        if (room == 0) return SL_EAGAIN;
    }
    for (int tries = 0; tries < s->np; tries++) {
        int i = s->rr;
        s->rr = (s->rr + 1) % s->np;
        if (row_of(s, i, s->next[i]) >= s->c->rows) continue;
        uint32_t got = gen_rows(s, i, out, room);
        s->emitted += got;
        *part = i;
        return (int)got;
    }
    return SL_EEOF;
}

int sl__gen_source_position(void *st, int part, int64_t *offset)
{
    gs_src *s = st;
    if (s == NULL || part < 0 || part >= s->np) return SL_EINVAL;
    *offset = s->next[part];
    return 0;
}

int sl__gen_source_seek(void *st, int part, int64_t offset)
{
    gs_src *s = st;
    if (s == NULL || part < 0 || part >= s->np || offset < 0) return SL_EINVAL;
    s->next[part] = offset;
    s->hint[part] = -1;
    return 0;
}

const sl__source_vt sl__src_generator = {
    .name = "generator",
    .configure = gs_configure,
    .partitions = gs_partitions,
    .open = gs_open,
    .read = gs_read,
    .close = gs_close,
    .conf_free = gs_conf_free,
    .position = sl__gen_source_position,
    .seek = sl__gen_source_seek,
};

/* ---- public entry point (sluice.h) --------------------------------------- */
int sl_gen_write(const char *dir, const char *const *conf, char *errstr,
                 size_t errstr_size)
{
    if (!dir) return sl__err(errstr, errstr_size, SL_EINVAL, "gen: no directory");
    sl__gen_conf c;
    sl__gen_conf_init(&c);
    int rc = 0;
    for (size_t i = 0; conf && conf[i] && !rc; i += 2) {
        if (!conf[i + 1])
            rc = sl__err(errstr, errstr_size, SL_EINVAL, "gen: key '%s' has no value", conf[i]);
        else
            rc = sl__gen_conf_set(&c, conf[i], conf[i + 1], errstr, errstr_size);
    }
    if (!rc) rc = sl__gen_write(&c, dir, errstr, errstr_size);
    sl__gen_conf_close(&c);
    return rc;
}
