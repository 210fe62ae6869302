/* agg.c — aggregate accumulators: COUNT, SUM, MIN, MAX, AVG, exact and
 * approximate (HyperLogLog) distinct counts and histograms.
 *
 * The hot path is sl__agg_add: one call per aggregate per batch, with the
 * switch on the kind outside the loop over rows, so the per-row work is a
 * validity test and an update of the group's state. Exact distinct counts
 * prefetch the set slots a few rows ahead, since on large inputs nearly every
 * insert misses the cache.
 *
 * This module does not group or window: callers hand it (row, group state)
 * pairs. It does not hold locks: a task owns its states.
 */
#include "agg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HLL_SEED 0x9e3779b97f4a7c15ULL
#define STR_SEED 0x5175696365616767ULL /* strings: distinct and HLL */
#define HIST_MAX_BOUNDS 1024
#define PREFETCH_AHEAD 8

/* ---- little-endian encoding ------------------------------------------------ */
static inline void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static inline void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static inline uint64_t f64_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}
/* Equal doubles get equal keys: -0.0 is 0.0 and every NaN is one NaN. */
static inline uint64_t f64_key(double d)
{
    if (d != d) return 0x7ff8000000000000ULL;
    if (d == 0) return 0;
    return f64_bits(d);
}

/* ---- HyperLogLog ------------------------------------------------------------ */
void sl__hll_init(sl__hll *h) { h->reg = NULL; }

void sl__hll_close(sl__hll *h)
{
    free(h->reg);
    h->reg = NULL;
}

static inline void hll_add(sl__hll *h, uint64_t hash)
{
    if (!h->reg) h->reg = sl__xcalloc(SL__HLL_M, 1);
    uint32_t idx = (uint32_t)(hash >> (64 - SL__HLL_P));
    /* The guard bit bounds the rank by 64 - P + 1 when the rest is zero. */
    uint64_t w = (hash << SL__HLL_P) | ((uint64_t)1 << (SL__HLL_P - 1));
    uint8_t rank = (uint8_t)(__builtin_clzll(w) + 1);
    if (rank > h->reg[idx]) h->reg[idx] = rank;
}

void sl__hll_add_hash(sl__hll *h, uint64_t hash) { hll_add(h, hash); }

uint64_t sl__hll_estimate(const sl__hll *h)
{
    if (!h->reg) return 0;
    const double m = SL__HLL_M;
    double sum = 0;
    uint32_t zeros = 0;
    for (uint32_t i = 0; i < SL__HLL_M; i++) {
        sum += ldexp(1.0, -(int)h->reg[i]);
        zeros += h->reg[i] == 0;
    }
    double alpha = 0.7213 / (1.0 + 1.079 / m);
    double e = alpha * m * m / sum;
    if (e <= 2.5 * m && zeros > 0) e = m * log(m / zeros);
    return (uint64_t)llround(e);
}

void sl__hll_merge(sl__hll *dst, const sl__hll *src)
{
    if (!src->reg) return;
    if (!dst->reg) dst->reg = sl__xcalloc(SL__HLL_M, 1);
    for (uint32_t i = 0; i < SL__HLL_M; i++)
        if (src->reg[i] > dst->reg[i]) dst->reg[i] = src->reg[i];
}

static uint32_t hll_nonzero(const sl__hll *h)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < SL__HLL_M; i++) n += h->reg[i] != 0;
    return n;
}

size_t sl__hll_serialized_size(const sl__hll *h)
{
    if (!h->reg) return 1;
    size_t sparse = 5 + (size_t)3 * hll_nonzero(h);
    return sparse < 1 + SL__HLL_M ? sparse : 1 + SL__HLL_M;
}

size_t sl__hll_serialize(const sl__hll *h, uint8_t *out)
{
    if (!h->reg) {
        out[0] = 0;
        return 1;
    }
    uint32_t nz = hll_nonzero(h);
    if (5 + (size_t)3 * nz >= 1 + SL__HLL_M) {
        out[0] = 1;
        memcpy(out + 1, h->reg, SL__HLL_M);
        return 1 + SL__HLL_M;
    }
    out[0] = 2;
    put_u32(out + 1, nz);
    uint8_t *p = out + 5;
    for (uint32_t i = 0; i < SL__HLL_M; i++) {
        if (!h->reg[i]) continue;
        p[0] = (uint8_t)i;
        p[1] = (uint8_t)(i >> 8);
        p[2] = h->reg[i];
        p += 3;
    }
    return (size_t)(p - out);
}

int64_t sl__hll_deserialize(sl__hll *h, const uint8_t *in, size_t len)
{
    const uint8_t max_rank = 64 - SL__HLL_P + 1;
    sl__hll_close(h);
    if (len < 1) return SL_ECORRUPT;
    if (in[0] == 0) return 1;
    if (in[0] == 1) {
        if (len < 1 + SL__HLL_M) return SL_ECORRUPT;
        for (uint32_t i = 0; i < SL__HLL_M; i++)
            if (in[1 + i] > max_rank) return SL_ECORRUPT;
        h->reg = sl__xmalloc(SL__HLL_M);
        memcpy(h->reg, in + 1, SL__HLL_M);
        return 1 + SL__HLL_M;
    }
    if (in[0] != 2 || len < 5) return SL_ECORRUPT;
    uint32_t nz = get_u32(in + 1);
    if (nz > SL__HLL_M || len - 5 < (size_t)3 * nz) return SL_ECORRUPT;
    h->reg = sl__xcalloc(SL__HLL_M, 1);
    const uint8_t *p = in + 5;
    for (uint32_t k = 0; k < nz; k++, p += 3) {
        uint32_t i = p[0] | (uint32_t)p[1] << 8;
        if (i >= SL__HLL_M || p[2] == 0 || p[2] > max_rank) {
            sl__hll_close(h);
            return SL_ECORRUPT;
        }
        h->reg[i] = p[2];
    }
    return (int64_t)(5 + (size_t)3 * nz);
}

/* ---- states ------------------------------------------------------------------ */
typedef struct {
    int64_t v; /* count, int sum, int min/max */
    int64_t n; /* values seen */
} st_i;
typedef struct {
    double v; /* sum or min/max */
    int64_t n;
} st_f;

static const char *const kind_names[] = {
    [SL_AGG_COUNT] = "COUNT",
    [SL_AGG_SUM] = "SUM",
    [SL_AGG_MIN] = "MIN",
    [SL_AGG_MAX] = "MAX",
    [SL_AGG_AVG] = "AVG",
    [SL_AGG_COUNT_DISTINCT] = "COUNT_DISTINCT",
    [SL_AGG_APPROX_COUNT_DISTINCT] = "APPROX_COUNT_DISTINCT",
    [SL_AGG_HISTOGRAM] = "HISTOGRAM",
    [SL_AGG_UDAF] = "UDAF",
    [SL_AGG_APPROX_PERCENTILE] = "APPROX_PERCENTILE",
};

const char *sl__agg_kind_name(sl_agg_kind kind)
{
    if ((unsigned)kind > SL_AGG_APPROX_PERCENTILE) return "UNKNOWN";
    return kind_names[kind];
}

bool sl__agg_accepts(sl_agg_kind kind, sl_type t)
{
    switch (kind) {
    case SL_AGG_COUNT:
    case SL_AGG_COUNT_DISTINCT:
    case SL_AGG_APPROX_COUNT_DISTINCT:
        return t <= SL_TIMESTAMP;
    case SL_AGG_SUM:
    case SL_AGG_AVG:
        return t == SL_INT64 || t == SL_FLOAT64;
    case SL_AGG_MIN:
    case SL_AGG_MAX:
    case SL_AGG_HISTOGRAM:
    case SL_AGG_APPROX_PERCENTILE:
        return t == SL_INT64 || t == SL_TIMESTAMP || t == SL_FLOAT64;
    case SL_AGG_UDAF:
        return true; /* checked against the UDAF's in_type */
    }
    return false;
}

static void allowed_types(sl_agg_kind kind, char *buf, size_t size)
{
    static const sl_type order[] = {SL_INT64, SL_TIMESTAMP, SL_FLOAT64,
                                    SL_BOOL, SL_STRING};
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        if (!sl__agg_accepts(kind, order[i])) continue;
        int k = snprintf(buf + used, size - used, "%s%s", used ? ", " : "",
                         sl_type_name(order[i]));
        if (k < 0 || (size_t)k >= size - used) break;
        used += (size_t)k;
    }
}

static bool is_distinct_str(const sl__agg *a)
{
    return a->kind == SL_AGG_COUNT_DISTINCT && a->in_type == SL_STRING;
}

int sl__agg_init(sl__agg *a, const sl_agg_spec *spec, const sl_schema *in,
                 uint32_t off, char *errstr, size_t errstr_size)
{
    const char *as = spec->as ? spec->as : "?";
    memset(a, 0, sizeof *a);
    a->col = -1;
    a->off = off;
    SL_ASSERT(off % 8 == 0);
    if ((unsigned)spec->kind > SL_AGG_APPROX_PERCENTILE)
        return sl__err(errstr, errstr_size, SL_EINVAL,
                       "aggregate '%s': unknown kind %d", as, (int)spec->kind);
    a->kind = spec->kind;
    const char *kname = kind_names[a->kind];
    if (a->kind == SL_AGG_UDAF) {
        const sl_udaf *u = spec->udaf;
        if (!u || !u->name || !u->add || !u->merge || !u->result ||
            u->state_size < 1 || u->state_size > 4096)
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "aggregate '%s': a UDAF needs udaf with a name, add, "
                           "merge and result, and state_size in [1, 4096]", as);
        if (!(u->out_type == SL_INT64 || u->out_type == SL_FLOAT64 ||
              u->out_type == SL_BOOL || u->out_type == SL_TIMESTAMP))
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "aggregate '%s': %s returns %s (allowed: BIGINT, "
                           "DOUBLE, BOOLEAN, TIMESTAMP)", as, u->name,
                           sl_type_name(u->out_type));
        kname = u->name;
        if (spec->col && sl_schema_find(in, spec->col) >= 0 &&
            sl_schema_col_type(in, sl_schema_find(in, spec->col)) != u->in_type)
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "aggregate '%s': %s takes %s, column '%s' is %s", as,
                           u->name, sl_type_name(u->in_type), spec->col,
                           sl_type_name(sl_schema_col_type(in, sl_schema_find(in, spec->col))));
        a->udaf = u;
    }
    if (!spec->col) {
        if (a->kind != SL_AGG_COUNT)
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "aggregate '%s': %s needs an input column (col)",
                           as, kname);
        a->in_type = SL_INT64;
    } else {
        a->col = sl_schema_find(in, spec->col);
        if (a->col < 0)
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "aggregate '%s': no input column '%s'", as,
                           spec->col);
        a->in_type = sl_schema_col_type(in, a->col);
        if (!sl__agg_accepts(a->kind, a->in_type)) {
            char allowed[96];
            allowed_types(a->kind, allowed, sizeof allowed);
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "aggregate '%s': %s does not accept %s column "
                           "'%s' (allowed: %s)",
                           as, kname, sl_type_name(a->in_type), spec->col,
                           allowed);
        }
    }
    switch (a->kind) {
    case SL_AGG_COUNT:
        a->out_type = SL_INT64;
        a->size = sizeof(int64_t);
        break;
    case SL_AGG_SUM:
    case SL_AGG_MIN:
    case SL_AGG_MAX:
        a->out_type = a->in_type;
        a->size = sizeof(st_i);
        break;
    case SL_AGG_AVG:
        a->out_type = SL_FLOAT64;
        a->size = sizeof(st_f);
        break;
    case SL_AGG_COUNT_DISTINCT:
        a->out_type = SL_INT64;
        a->size = a->in_type == SL_STRING ? sizeof(sl__bmap *)
                                          : sizeof(sl__set64);
        break;
    case SL_AGG_APPROX_COUNT_DISTINCT:
        a->out_type = SL_INT64;
        a->size = sizeof(sl__hll);
        break;
    case SL_AGG_HISTOGRAM:
        a->out_type = SL_STRING;
        if (!spec->bounds || spec->nbounds == 0)
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "aggregate '%s': HISTOGRAM needs at least one "
                           "bound (bounds, nbounds)", as);
        if (spec->nbounds > HIST_MAX_BOUNDS)
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "aggregate '%s': HISTOGRAM has %zu bounds; at "
                           "most %d are allowed",
                           as, spec->nbounds, HIST_MAX_BOUNDS);
        for (size_t i = 0; i < spec->nbounds; i++) {
            if (!isfinite(spec->bounds[i]) ||
                (i > 0 && !(spec->bounds[i] > spec->bounds[i - 1])))
                return sl__err(errstr, errstr_size, SL_EINVAL,
                               "aggregate '%s': HISTOGRAM bounds must be "
                               "finite and strictly ascending (bound %zu "
                               "is %g)",
                               as, i, spec->bounds[i]);
        }
        a->nbounds = (uint32_t)spec->nbounds;
        a->bounds = sl__xmalloc(spec->nbounds * sizeof(double));
        memcpy(a->bounds, spec->bounds, spec->nbounds * sizeof(double));
        a->size = (a->nbounds + 1) * (uint32_t)sizeof(int64_t);
        break;
    case SL_AGG_UDAF:
        a->out_type = a->udaf->out_type;
        a->size = a->udaf->state_size;
        break;
    case SL_AGG_APPROX_PERCENTILE:
        a->out_type = SL_FLOAT64;
        a->q = spec->quantile;
        a->alpha = spec->accuracy == 0 ? 0.01 : spec->accuracy;
        if (!(a->q >= 0 && a->q <= 1))
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "aggregate '%s': APPROX_PERCENTILE's quantile must "
                           "be in [0, 1], got %g", as, a->q);
        if (!(a->alpha >= 1e-4 && a->alpha <= 0.5))
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "aggregate '%s': APPROX_PERCENTILE's accuracy must "
                           "be in [0.0001, 0.5], got %g", as, a->alpha);
        a->size = sizeof(sl__dds);
        break;
    }
    a->size = (a->size + 7) & ~7u;
    return 0;
}

void sl__agg_close(sl__agg *a)
{
    free(a->bounds);
    a->bounds = NULL;
}

bool sl__agg_has_heap(const sl__agg *a)
{
    return a->kind == SL_AGG_COUNT_DISTINCT ||
           a->kind == SL_AGG_APPROX_COUNT_DISTINCT ||
           a->kind == SL_AGG_APPROX_PERCENTILE;
}

void sl__agg_state_init(const sl__agg *a, uint8_t *grp)
{
    memset(grp + a->off, 0, a->size);
}

static sl__bmap *str_set_new(void)
{
    sl__bmap *m = sl__xmalloc(sizeof *m);
    sl__bmap_init(m, 0);
    return m;
}

void sl__agg_state_free(const sl__agg *a, uint8_t *grp)
{
    void *st = grp + a->off;
    if (is_distinct_str(a)) {
        sl__bmap *m;
        memcpy(&m, st, sizeof m);
        if (m) {
            sl__bmap_close(m);
            free(m);
        }
    } else if (a->kind == SL_AGG_COUNT_DISTINCT) {
        sl__set64_close(st);
    } else if (a->kind == SL_AGG_APPROX_COUNT_DISTINCT) {
        sl__hll_close(st);
    } else if (a->kind == SL_AGG_APPROX_PERCENTILE) {
        sl__dds_close(st);
    }
    memset(st, 0, a->size);
}

void sl__agg_states_free(const sl__agg *a, const sl__bmap *m)
{
    const uint32_t n = sl__bmap_count(m);
    if (a->kind == SL_AGG_COUNT_DISTINCT && !is_distinct_str(a)) {
        /* most sets of a window are small and inline: nothing to free */
        for (uint32_t g = 0; g < n; g++) {
            const sl__set64 *s =
                (const sl__set64 *)((uint8_t *)sl__bmap_at(m, g, NULL, NULL) + a->off);
            if (s->lg) free(s->slots);
        }
        return;
    }
    for (uint32_t g = 0; g < n; g++) sl__agg_state_free(a, sl__bmap_at(m, g, NULL, NULL));
}

/* ---- add ---------------------------------------------------------------------- */
static inline uint32_t row_at(const uint32_t *rows, uint32_t i)
{
    return rows ? rows[i] : i;
}

/* The 64-bit value a distinct count keys numeric and bool inputs by. */
/* Appends a value new to a set to the changelog (agg.h); cold path. */
static void chlog_put(const sl__agg *a, const uint8_t *grp, uint64_t k)
{
    sl__chlog *l = a->log;
    if (l->n == l->cap) {
        if (l->over || l->cap >= l->max) {
            l->over = true;
            return;
        }
        size_t cap = l->cap ? l->cap * 2 : 4096;
        if (cap > l->max) cap = l->max;
        l->e = sl__xrealloc(l->e, cap * sizeof *l->e);
        l->cap = cap;
    }
    uint32_t d;
    memcpy(&d, grp + a->log_off, sizeof d);
    l->e[l->n++] = (sl__chlog_ent){.d = d, .agg = a->log_idx, .k = k};
}

static inline uint64_t num_key(const struct sl__col *c, sl_type t, uint32_t r)
{
    switch (t) {
    case SL_FLOAT64: return f64_key(((const double *)c->data)[r]);
    case SL_BOOL: return ((const uint8_t *)c->data)[r] != 0;
    default: return (uint64_t)((const int64_t *)c->data)[r];
    }
}

static void add_distinct(const sl__agg *a, const sl_batch *b,
                         const uint32_t *rows, uint8_t *const *grp,
                         uint32_t n)
{
    const struct sl__col *c = &b->cols[a->col];
    const uint8_t *valid = c->valid;
    if (a->in_type == SL_STRING) {
        const sl_str *v = c->data;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t r = row_at(rows, i);
            if (valid && !valid[r]) continue;
            sl__bmap *m;
            memcpy(&m, grp[i] + a->off, sizeof m);
            if (!m) {
                m = str_set_new();
                memcpy(grp[i] + a->off, &m, sizeof m);
            }
            sl__bmap_upsert(m, v[r].ptr, v[r].len,
                            sl__hash_bytes(v[r].ptr, v[r].len, STR_SEED),
                            NULL);
        }
        return;
    }
    /* Two-stage prefetch: the group's set header 2D rows ahead, the slot
     * its key probes first D rows ahead. */
    for (uint32_t i = 0; i < n; i++) {
        if (i + 2 * PREFETCH_AHEAD < n)
            __builtin_prefetch(grp[i + 2 * PREFETCH_AHEAD] + a->off);
        if (i + PREFETCH_AHEAD < n) {
            uint32_t rp = row_at(rows, i + PREFETCH_AHEAD);
            sl__set64_prefetch(
                (const sl__set64 *)(grp[i + PREFETCH_AHEAD] + a->off),
                num_key(c, a->in_type, rp));
        }
        uint32_t r = row_at(rows, i);
        if (valid && !valid[r]) continue;
        uint64_t k = num_key(c, a->in_type, r);
        if (sl__set64_insert((sl__set64 *)(grp[i] + a->off), k) && a->log)
            chlog_put(a, grp[i], k); /* new to the set: one append */
    }
}

static void add_hll(const sl__agg *a, const sl_batch *b, const uint32_t *rows,
                    uint8_t *const *grp, uint32_t n)
{
    const struct sl__col *c = &b->cols[a->col];
    const uint8_t *valid = c->valid;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t r = row_at(rows, i);
        if (valid && !valid[r]) continue;
        uint64_t h;
        if (a->in_type == SL_STRING) {
            const sl_str *v = &((const sl_str *)c->data)[r];
            h = sl__hash_bytes(v->ptr, v->len, STR_SEED);
        } else {
            h = sl__mix64(num_key(c, a->in_type, r) + HLL_SEED);
        }
        hll_add((sl__hll *)(grp[i] + a->off), h);
    }
}

static void add_dds(const sl__agg *a, const sl_batch *b, const uint32_t *rows,
                    uint8_t *const *grp, uint32_t n)
{
    const struct sl__col *c = &b->cols[a->col];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t r = row_at(rows, i);
        if (c->valid && !c->valid[r]) continue;
        double x = a->in_type == SL_FLOAT64 ? ((const double *)c->data)[r]
                                            : (double)((const int64_t *)c->data)[r];
        sl__dds_add((sl__dds *)(grp[i] + a->off), x, a->alpha);
    }
}

/* Index of the bucket of v: the number of bounds <= v. */
static inline uint32_t hist_bucket(const double *bounds, uint32_t nb, double v)
{
    uint32_t lo = 0, hi = nb;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (bounds[mid] <= v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static void add_hist(const sl__agg *a, const sl_batch *b, const uint32_t *rows,
                     uint8_t *const *grp, uint32_t n)
{
    const struct sl__col *c = &b->cols[a->col];
    const uint8_t *valid = c->valid;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t r = row_at(rows, i);
        if (valid && !valid[r]) continue;
        double v = a->in_type == SL_FLOAT64
                       ? ((const double *)c->data)[r]
                       : (double)((const int64_t *)c->data)[r];
        if (v != v) continue;
        ((int64_t *)(grp[i] + a->off))[hist_bucket(a->bounds, a->nbounds,
                                                   v)]++;
    }
}

static void add_num(const sl__agg *a, const sl_batch *b, const uint32_t *rows,
                    uint8_t *const *grp, uint32_t n)
{
    const struct sl__col *c = &b->cols[a->col];
    const uint8_t *valid = c->valid;
    const uint32_t off = a->off;
    if (a->in_type == SL_FLOAT64) {
        const double *v = c->data;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t r = row_at(rows, i);
            if (valid && !valid[r]) continue;
            st_f *s = (st_f *)(grp[i] + off);
            double x = v[r];
            switch (a->kind) {
            case SL_AGG_SUM:
            case SL_AGG_AVG: s->v += x; break;
            case SL_AGG_MIN:
                if (x != x) continue;
                if (s->n == 0 || x < s->v) s->v = x;
                break;
            default: /* SL_AGG_MAX */
                if (x != x) continue;
                if (s->n == 0 || x > s->v) s->v = x;
                break;
            }
            s->n++;
        }
        return;
    }
    const int64_t *v = c->data;
    switch (a->kind) {
    case SL_AGG_SUM:
        for (uint32_t i = 0; i < n; i++) {
            uint32_t r = row_at(rows, i);
            if (valid && !valid[r]) continue;
            st_i *s = (st_i *)(grp[i] + off);
            s->v = (int64_t)((uint64_t)s->v + (uint64_t)v[r]);
            s->n++;
        }
        break;
    case SL_AGG_AVG:
        for (uint32_t i = 0; i < n; i++) {
            uint32_t r = row_at(rows, i);
            if (valid && !valid[r]) continue;
            st_f *s = (st_f *)(grp[i] + off);
            s->v += (double)v[r];
            s->n++;
        }
        break;
    case SL_AGG_MIN:
        for (uint32_t i = 0; i < n; i++) {
            uint32_t r = row_at(rows, i);
            if (valid && !valid[r]) continue;
            st_i *s = (st_i *)(grp[i] + off);
            if (s->n++ == 0 || v[r] < s->v) s->v = v[r];
        }
        break;
    default: /* SL_AGG_MAX */
        for (uint32_t i = 0; i < n; i++) {
            uint32_t r = row_at(rows, i);
            if (valid && !valid[r]) continue;
            st_i *s = (st_i *)(grp[i] + off);
            if (s->n++ == 0 || v[r] > s->v) s->v = v[r];
        }
        break;
    }
}

/* A user-defined aggregate: one callback per non-NULL value. */
static void add_udaf(const sl__agg *a, const sl_batch *b, const uint32_t *rows,
                     uint8_t *const *grp, uint32_t n)
{
    const struct sl__col *c = &b->cols[a->col];
    const sl_udaf *u = a->udaf;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t r = row_at(rows, i);
        if (c->valid && !c->valid[r]) continue;
        sl_value v = {.type = a->in_type};
        switch (a->in_type) {
        case SL_FLOAT64: v.f = ((const double *)c->data)[r]; break;
        case SL_BOOL: v.i = ((const uint8_t *)c->data)[r] != 0; break;
        case SL_STRING: v.s = ((const sl_str *)c->data)[r]; break;
        default: v.i = ((const int64_t *)c->data)[r]; break;
        }
        u->add(grp[i] + a->off, &v, u->udata);
    }
}

void sl__agg_add(const sl__agg *a, const sl_batch *b, const uint32_t *rows,
                 uint8_t *const *grp, uint32_t n)
{
    if (a->kind == SL_AGG_COUNT) {
        const uint8_t *valid = a->col >= 0 ? b->cols[a->col].valid : NULL;
        for (uint32_t i = 0; i < n; i++)
            if (!valid || valid[row_at(rows, i)])
                (*(int64_t *)(grp[i] + a->off))++;
        return;
    }
    switch (a->kind) {
    case SL_AGG_COUNT_DISTINCT: add_distinct(a, b, rows, grp, n); break;
    case SL_AGG_APPROX_COUNT_DISTINCT: add_hll(a, b, rows, grp, n); break;
    case SL_AGG_HISTOGRAM: add_hist(a, b, rows, grp, n); break;
    case SL_AGG_UDAF: add_udaf(a, b, rows, grp, n); break;
    case SL_AGG_APPROX_PERCENTILE: add_dds(a, b, rows, grp, n); break;
    default: add_num(a, b, rows, grp, n); break;
    }
}

/* ---- merge --------------------------------------------------------------------- */
void sl__agg_merge(const sl__agg *a, uint8_t *dst, const uint8_t *src)
{
    uint8_t *d = dst + a->off;
    const uint8_t *s = src + a->off;
    switch (a->kind) {
    case SL_AGG_COUNT:
        *(int64_t *)d += *(const int64_t *)s;
        return;
    case SL_AGG_HISTOGRAM:
        for (uint32_t i = 0; i <= a->nbounds; i++)
            ((int64_t *)d)[i] += ((const int64_t *)s)[i];
        return;
    case SL_AGG_APPROX_COUNT_DISTINCT:
        sl__hll_merge((sl__hll *)d, (const sl__hll *)s);
        return;
    case SL_AGG_UDAF:
        a->udaf->merge(d, s, a->udaf->udata);
        return;
    case SL_AGG_APPROX_PERCENTILE:
        sl__dds_merge((sl__dds *)d, (const sl__dds *)s);
        return;
    case SL_AGG_COUNT_DISTINCT:
        if (a->in_type == SL_STRING) {
            sl__bmap *sm, *dm;
            memcpy(&sm, s, sizeof sm);
            memcpy(&dm, d, sizeof dm);
            if (!sm) return;
            if (!dm) {
                dm = str_set_new();
                memcpy(d, &dm, sizeof dm);
            }
            for (uint32_t i = 0; i < sl__bmap_count(sm); i++) {
                const uint8_t *k;
                uint32_t len;
                sl__bmap_at(sm, i, &k, &len);
                sl__bmap_upsert(dm, k, len, sl__bmap_hash_at(sm, i), NULL);
            }
        } else {
            size_t it = 0;
            uint64_t k;
            while (sl__set64_next((const sl__set64 *)s, &it, &k))
                sl__set64_insert((sl__set64 *)d, k);
        }
        return;
    default:
        break;
    }
    if (a->in_type == SL_FLOAT64 || a->kind == SL_AGG_AVG) {
        st_f *x = (st_f *)d;
        const st_f *y = (const st_f *)s;
        if (y->n == 0) return;
        if (a->kind == SL_AGG_SUM || a->kind == SL_AGG_AVG) x->v += y->v;
        else if (x->n == 0 || (a->kind == SL_AGG_MIN ? y->v < x->v
                                                     : y->v > x->v))
            x->v = y->v;
        x->n += y->n;
    } else {
        st_i *x = (st_i *)d;
        const st_i *y = (const st_i *)s;
        if (y->n == 0) return;
        if (a->kind == SL_AGG_SUM)
            x->v = (int64_t)((uint64_t)x->v + (uint64_t)y->v);
        else if (x->n == 0 || (a->kind == SL_AGG_MIN ? y->v < x->v
                                                     : y->v > x->v))
            x->v = y->v;
        x->n += y->n;
    }
}

/* ---- results -------------------------------------------------------------------- */
static int hist_result(const sl__agg *a, const int64_t *cnt, sl_batch *out,
                       int col, uint32_t row)
{
    char stack[512];
    size_t cap = (size_t)(a->nbounds + 1) * 21;
    char *buf = cap <= sizeof stack ? stack : sl__xmalloc(cap);
    size_t len = 0;
    for (uint32_t i = 0; i <= a->nbounds; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "",
                                (long long)cnt[i]);
    int rc = sl_batch_set_str(out, col, row, buf, len);
    if (buf != stack) free(buf);
    return rc < 0 ? rc : 0;
}

int64_t sl__agg_count_value(const sl__agg *a, const uint8_t *grp)
{
    const uint8_t *s = grp + a->off;
    if (a->kind == SL_AGG_COUNT) return *(const int64_t *)s;
    SL_ASSERT(a->kind == SL_AGG_COUNT_DISTINCT);
    if (a->in_type == SL_STRING) {
        const sl__bmap *m;
        memcpy(&m, s, sizeof m);
        return m ? (int64_t)sl__bmap_count(m) : 0;
    }
    return (int64_t)sl__set64_count((const sl__set64 *)s);
}

bool sl__agg_exact_count(const sl__agg *a, const uint8_t *grp, int64_t *n)
{
    const uint8_t *s = grp + a->off;
    switch (a->kind) {
    case SL_AGG_COUNT:
        *n = *(const int64_t *)s;
        return true;
    case SL_AGG_COUNT_DISTINCT:
        if (a->in_type == SL_STRING) {
            const sl__bmap *m;
            memcpy(&m, s, sizeof m);
            *n = m ? (int64_t)sl__bmap_count(m) : 0;
        } else {
            *n = (int64_t)sl__set64_count((const sl__set64 *)s);
        }
        return true;
    default:
        return false;
    }
}

int sl__agg_result(const sl__agg *a, const uint8_t *grp, sl_batch *out,
                   int col, uint32_t row)
{
    const uint8_t *s = grp + a->off;
    struct sl__col *c = &out->cols[col];
    int64_t iv = 0;
    double fv = 0;
    bool null = false;
    switch (a->kind) {
    case SL_AGG_COUNT:
        iv = *(const int64_t *)s;
        break;
    case SL_AGG_COUNT_DISTINCT:
        if (a->in_type == SL_STRING) {
            const sl__bmap *m;
            memcpy(&m, s, sizeof m);
            iv = m ? (int64_t)sl__bmap_count(m) : 0;
        } else {
            iv = (int64_t)sl__set64_count((const sl__set64 *)s);
        }
        break;
    case SL_AGG_APPROX_COUNT_DISTINCT:
        iv = (int64_t)sl__hll_estimate((const sl__hll *)s);
        break;
    case SL_AGG_HISTOGRAM:
        c->valid[row] = 1;
        return hist_result(a, (const int64_t *)s, out, col, row);
    case SL_AGG_APPROX_PERCENTILE:
        null = !sl__dds_quantile((const sl__dds *)s, a->q, a->alpha, &fv);
        break;
    case SL_AGG_UDAF: {
        sl_value v = {.type = a->out_type};
        a->udaf->result(s, &v, a->udaf->udata);
        null = v.null != 0;
        if (a->out_type == SL_BOOL) {
            ((uint8_t *)c->data)[row] = !null && v.i != 0;
            c->valid[row] = !null;
            return 0;
        }
        iv = v.i;
        fv = v.f;
        break;
    }
    case SL_AGG_AVG: {
        const st_f *x = (const st_f *)s;
        null = x->n == 0;
        fv = null ? 0 : x->v / (double)x->n;
        break;
    }
    default: /* SUM, MIN, MAX keep the input type */
        if (a->in_type == SL_FLOAT64) {
            const st_f *x = (const st_f *)s;
            null = x->n == 0;
            fv = null ? 0 : x->v;
        } else {
            const st_i *x = (const st_i *)s;
            null = x->n == 0;
            iv = null ? 0 : x->v;
        }
        break;
    }
    if (a->out_type == SL_FLOAT64) ((double *)c->data)[row] = fv;
    else ((int64_t *)c->data)[row] = iv;
    c->valid[row] = !null;
    return 0;
}

/* ---- serialisation ----------------------------------------------------------------- */
size_t sl__agg_serialized_size(const sl__agg *a, const uint8_t *grp)
{
    const uint8_t *s = grp + a->off;
    switch (a->kind) {
    case SL_AGG_COUNT: return 8;
    case SL_AGG_HISTOGRAM: return 4 + (size_t)(a->nbounds + 1) * 8;
    case SL_AGG_UDAF: return a->udaf->state_size;
    case SL_AGG_APPROX_PERCENTILE: return sl__dds_serialized_size((const sl__dds *)s);
    case SL_AGG_APPROX_COUNT_DISTINCT:
        return sl__hll_serialized_size((const sl__hll *)s);
    case SL_AGG_COUNT_DISTINCT:
        if (a->in_type == SL_STRING) {
            const sl__bmap *m;
            memcpy(&m, s, sizeof m);
            size_t n = 8;
            for (uint32_t i = 0; m && i < sl__bmap_count(m); i++) {
                uint32_t len;
                sl__bmap_at(m, i, NULL, &len);
                n += 4 + (size_t)len;
            }
            return n;
        }
        return 8 + 8 * (size_t)sl__set64_count((const sl__set64 *)s);
    default: return 16;
    }
}

size_t sl__agg_serialize(const sl__agg *a, const uint8_t *grp, uint8_t *out)
{
    const uint8_t *s = grp + a->off;
    switch (a->kind) {
    case SL_AGG_COUNT:
        put_u64(out, (uint64_t)*(const int64_t *)s);
        return 8;
    case SL_AGG_HISTOGRAM:
        put_u32(out, a->nbounds + 1);
        for (uint32_t i = 0; i <= a->nbounds; i++)
            put_u64(out + 4 + 8 * i, (uint64_t)((const int64_t *)s)[i]);
        return 4 + (size_t)(a->nbounds + 1) * 8;
    case SL_AGG_APPROX_COUNT_DISTINCT:
        return sl__hll_serialize((const sl__hll *)s, out);
    case SL_AGG_UDAF:
        memcpy(out, s, a->udaf->state_size);
        return a->udaf->state_size;
    case SL_AGG_APPROX_PERCENTILE:
        return sl__dds_serialize((const sl__dds *)s, out);
    case SL_AGG_COUNT_DISTINCT:
        if (a->in_type == SL_STRING) {
            const sl__bmap *m;
            memcpy(&m, s, sizeof m);
            uint32_t n = m ? sl__bmap_count(m) : 0;
            put_u64(out, n);
            size_t p = 8;
            for (uint32_t i = 0; i < n; i++) {
                const uint8_t *k;
                uint32_t len;
                sl__bmap_at(m, i, &k, &len);
                put_u32(out + p, len);
                memcpy(out + p + 4, k, len);
                p += 4 + (size_t)len;
            }
            return p;
        } else {
            const sl__set64 *set = (const sl__set64 *)s;
            put_u64(out, sl__set64_count(set));
            return 8 + 8 * sl__set64_export_le(set, out + 8); /* = the _next loop */
        }
    default: {
        /* st_i and st_f share a layout: 8 value bytes, then the count. */
        uint64_t v;
        memcpy(&v, s, 8);
        put_u64(out, v);
        put_u64(out + 8, (uint64_t)((const st_i *)s)->n);
        return 16;
    }
    }
}

static int64_t deserialize(const sl__agg *a, uint8_t *s, const uint8_t *in,
                           size_t len)
{
    switch (a->kind) {
    case SL_AGG_COUNT:
        if (len < 8) return SL_ECORRUPT;
        *(int64_t *)s = (int64_t)get_u64(in);
        return 8;
    case SL_AGG_HISTOGRAM: {
        if (len < 4 || get_u32(in) != a->nbounds + 1) return SL_ECORRUPT;
        size_t need = 4 + (size_t)(a->nbounds + 1) * 8;
        if (len < need) return SL_ECORRUPT;
        for (uint32_t i = 0; i <= a->nbounds; i++)
            ((int64_t *)s)[i] = (int64_t)get_u64(in + 4 + 8 * i);
        return (int64_t)need;
    }
    case SL_AGG_APPROX_COUNT_DISTINCT:
        return sl__hll_deserialize((sl__hll *)s, in, len);
    case SL_AGG_APPROX_PERCENTILE:
        return sl__dds_deserialize((sl__dds *)s, in, len);
    case SL_AGG_UDAF:
        if (len < a->udaf->state_size) return SL_ECORRUPT;
        memcpy(s, in, a->udaf->state_size);
        return a->udaf->state_size;
    case SL_AGG_COUNT_DISTINCT: {
        if (len < 8) return SL_ECORRUPT;
        uint64_t n = get_u64(in);
        size_t p = 8;
        if (a->in_type != SL_STRING) {
            if (n > (len - 8) / 8) return SL_ECORRUPT;
            sl__set64 *set = (sl__set64 *)s;
            for (uint64_t i = 0; i < n; i++, p += 8)
                if (!sl__set64_insert(set, get_u64(in + p)))
                    return SL_ECORRUPT; /* a duplicate: not our encoding */
            return (int64_t)p;
        }
        if (n > (len - 8) / 4) return SL_ECORRUPT;
        sl__bmap *m = n ? str_set_new() : NULL;
        memcpy(s, &m, sizeof m);
        for (uint64_t i = 0; i < n; i++) {
            if (len - p < 4) return SL_ECORRUPT;
            uint32_t klen = get_u32(in + p);
            if (len - p - 4 < klen) return SL_ECORRUPT;
            const uint8_t *k = in + p + 4;
            bool fresh;
            sl__bmap_upsert(m, k, klen, sl__hash_bytes(k, klen, STR_SEED),
                            &fresh);
            if (!fresh) return SL_ECORRUPT;
            p += 4 + (size_t)klen;
        }
        return (int64_t)p;
    }
    default: {
        if (len < 16) return SL_ECORRUPT;
        uint64_t v = get_u64(in);
        int64_t n = (int64_t)get_u64(in + 8);
        if (n < 0) return SL_ECORRUPT;
        memcpy(s, &v, 8);
        ((st_i *)s)->n = n;
        return 16;
    }
    }
}

int64_t sl__agg_deserialize(const sl__agg *a, uint8_t *grp,
                            const uint8_t *in, size_t len)
{
    sl__agg_state_free(a, grp);
    int64_t rc = deserialize(a, grp + a->off, in, len);
    if (rc < 0) sl__agg_state_free(a, grp);
    return rc;
}
