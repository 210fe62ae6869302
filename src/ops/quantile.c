/* quantile.c — approximate quantiles for APPROX_PERCENTILE: a DDSketch
 * (Masson, Rim and Lee, "DDSketch: a fast and fully-mergeable quantile
 * sketch with relative-error guarantees", VLDB 2019).
 *
 * A value x > 0 goes to bucket i = ceil(log_g(x)) with g = (1 + a)/(1 - a);
 * a bucket stands for 2 g^i / (g + 1), which is within relative error a of
 * every value in (g^(i-1), g^i]. Negative values use a second store of
 * |x|; values with |x| below SL__DDS_MIN_VALUE count as zero. The q-quantile
 * estimate is the representative of the bucket holding the item of rank
 * floor(q (n - 1)) (0-based), so it is within a of that item, clamped to
 * the exact minimum and maximum.
 *
 * Why this sketch rather than t-digest or KLL: bucket counts are a pure
 * function of the multiset of inputs, so a sketch is the same whatever the
 * order records arrive in or the order partial sketches merge in. A replay
 * after a recovery, or a run at another parallelism, therefore publishes
 * bit-identical quantiles — which exactly-once output requires — while
 * t-digest and KLL depend on arrival order (and KLL on coin flips).
 *
 * Each store is a dense array of counts over [off, off + len); it grows as
 * needed up to SL__DDS_MAX_BUCKETS, beyond which the lowest buckets are
 * collapsed into the lowest kept one (the guarantee then holds for the
 * quantiles above the collapsed ones: DDSketch's "collapsing lowest" store;
 * with a = 1 % the 2048 buckets span a factor of 10^17).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/agg.h"

typedef struct {
    int32_t off;  /* index of counts[0] */
    uint32_t len; /* buckets in use */
    uint64_t *counts;
} store;

struct sl__dds_state {
    uint64_t n, zero;
    double min, max;
    store pos, neg;
};

static void store_add(store *s, int32_t i, uint64_t c)
{
    if (s->len == 0) {
        s->counts = sl__xcalloc(8, sizeof *s->counts);
        s->off = i;
        s->len = 1;
        s->counts[0] = c;
        return;
    }
    if (i < s->off) {
        int64_t grow = (int64_t)s->off - i;
        if ((int64_t)s->len + grow > SL__DDS_MAX_BUCKETS) {
            /* collapse: everything below the lowest kept bucket joins it */
            int64_t keep_lo = (int64_t)s->off + s->len - SL__DDS_MAX_BUCKETS;
            if (keep_lo > s->off) keep_lo = s->off;
            i = (int32_t)keep_lo;
            grow = (int64_t)s->off - i;
            if (grow == 0) {
                s->counts[0] += c;
                return;
            }
        }
        uint64_t *n = sl__xcalloc((size_t)(s->len + grow), sizeof *n);
        memcpy(n + grow, s->counts, s->len * sizeof *n);
        free(s->counts);
        s->counts = n;
        s->len += (uint32_t)grow;
        s->off = i;
    } else if ((int64_t)i >= (int64_t)s->off + s->len) {
        uint32_t need = (uint32_t)((int64_t)i - s->off + 1);
        if (need > SL__DDS_MAX_BUCKETS) {
            /* collapse the lowest buckets to make room at the top */
            uint32_t drop = need - SL__DDS_MAX_BUCKETS;
            uint64_t sum = 0;
            for (uint32_t k = 0; k <= drop && k < s->len; k++) sum += s->counts[k];
            uint32_t keep = s->len > drop ? s->len - drop : 1;
            uint64_t *n = sl__xcalloc(SL__DDS_MAX_BUCKETS, sizeof *n);
            if (s->len > drop) memcpy(n, s->counts + drop, keep * sizeof *n);
            n[0] = sum;
            free(s->counts);
            s->counts = n;
            s->off += (int32_t)drop;
            s->len = SL__DDS_MAX_BUCKETS;
        } else {
            uint64_t *n = sl__xrealloc(s->counts, need * sizeof *n);
            memset(n + s->len, 0, (need - s->len) * sizeof *n);
            s->counts = n;
            s->len = need;
        }
    }
    s->counts[i - s->off] += c;
}

static double gamma_of(double alpha) { return (1 + alpha) / (1 - alpha); }

void sl__dds_add(sl__dds *d, double x, double alpha)
{
    if (x != x) return; /* NaN */
    struct sl__dds_state *s = d->s;
    if (!s) s = d->s = sl__xcalloc(1, sizeof *s);
    if (s->n == 0 || x < s->min) s->min = x;
    if (s->n == 0 || x > s->max) s->max = x;
    s->n++;
    double m = fabs(x);
    if (m < SL__DDS_MIN_VALUE) {
        s->zero++;
        return;
    }
    if (m > 1e300) m = 1e300;
    int32_t i = (int32_t)ceil(log(m) / log(gamma_of(alpha)));
    store_add(x > 0 ? &s->pos : &s->neg, i, 1);
}

void sl__dds_merge(sl__dds *dst, const sl__dds *src)
{
    const struct sl__dds_state *s = src->s;
    if (!s || s->n == 0) return;
    struct sl__dds_state *d = dst->s;
    if (!d) d = dst->s = sl__xcalloc(1, sizeof *d);
    if (d->n == 0 || s->min < d->min) d->min = s->min;
    if (d->n == 0 || s->max > d->max) d->max = s->max;
    d->n += s->n;
    d->zero += s->zero;
    for (uint32_t k = 0; k < s->pos.len; k++)
        if (s->pos.counts[k]) store_add(&d->pos, s->pos.off + (int32_t)k, s->pos.counts[k]);
    for (uint32_t k = 0; k < s->neg.len; k++)
        if (s->neg.counts[k]) store_add(&d->neg, s->neg.off + (int32_t)k, s->neg.counts[k]);
}

void sl__dds_close(sl__dds *d)
{
    if (!d->s) return;
    free(d->s->pos.counts);
    free(d->s->neg.counts);
    free(d->s);
    d->s = NULL;
}

uint64_t sl__dds_count(const sl__dds *d) { return d->s ? d->s->n : 0; }

bool sl__dds_quantile(const sl__dds *d, double q, double alpha, double *out)
{
    const struct sl__dds_state *s = d->s;
    if (!s || s->n == 0) return false;
    double g = gamma_of(alpha);
    uint64_t rank = (uint64_t)floor(q * (double)(s->n - 1));
    uint64_t seen = 0;
    double v = 0;
    bool found = false;
    /* most negative first: the negative store from its highest index */
    for (uint32_t k = s->neg.len; k-- > 0 && !found;) {
        seen += s->neg.counts[k];
        if (seen > rank) {
            v = -2 * pow(g, s->neg.off + (int32_t)k) / (g + 1);
            found = true;
        }
    }
    if (!found) {
        seen += s->zero;
        if (seen > rank) v = 0, found = true;
    }
    for (uint32_t k = 0; k < s->pos.len && !found; k++) {
        seen += s->pos.counts[k];
        if (seen > rank) {
            v = 2 * pow(g, s->pos.off + (int32_t)k) / (g + 1);
            found = true;
        }
    }
    if (!found) v = s->max;
    if (v < s->min) v = s->min;
    if (v > s->max) v = s->max;
    *out = v;
    return true;
}

/* ---- serialisation: u64 n, zero; f64 min, max; per store (pos, neg) an
 * i32 offset, u32 length and that many u64 counts; little-endian. --------- */
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

size_t sl__dds_serialized_size(const sl__dds *d)
{
    const struct sl__dds_state *s = d->s;
    if (!s) return 32 + 16;
    return 32 + 16 + 8 * ((size_t)s->pos.len + s->neg.len);
}

size_t sl__dds_serialize(const sl__dds *d, uint8_t *out)
{
    const struct sl__dds_state *s = d->s;
    static const struct sl__dds_state empty;
    if (!s) s = &empty;
    uint64_t u;
    put64(out, s->n);
    put64(out + 8, s->zero);
    memcpy(&u, &s->min, 8);
    put64(out + 16, u);
    memcpy(&u, &s->max, 8);
    put64(out + 24, u);
    size_t p = 32;
    const store *st[2] = {&s->pos, &s->neg};
    for (int j = 0; j < 2; j++) {
        put32(out + p, (uint32_t)st[j]->off);
        put32(out + p + 4, st[j]->len);
        p += 8;
        for (uint32_t k = 0; k < st[j]->len; k++, p += 8) put64(out + p, st[j]->counts[k]);
    }
    return p;
}

int64_t sl__dds_deserialize(sl__dds *d, const uint8_t *in, size_t len)
{
    sl__dds_close(d);
    if (len < 48) return SL_ECORRUPT;
    struct sl__dds_state *s = sl__xcalloc(1, sizeof *s);
    d->s = s;
    s->n = get64(in);
    s->zero = get64(in + 8);
    uint64_t u = get64(in + 16);
    memcpy(&s->min, &u, 8);
    u = get64(in + 24);
    memcpy(&s->max, &u, 8);
    size_t p = 32;
    uint64_t total = s->zero;
    store *st[2] = {&s->pos, &s->neg};
    for (int j = 0; j < 2; j++) {
        if (len - p < 8) return SL_ECORRUPT;
        int32_t off = (int32_t)get32(in + p);
        uint32_t n = get32(in + p + 4);
        p += 8;
        if (n > SL__DDS_MAX_BUCKETS || (len - p) / 8 < n) return SL_ECORRUPT;
        if (n) {
            st[j]->counts = sl__xcalloc(n, sizeof(uint64_t));
            st[j]->off = off;
            st[j]->len = n;
        }
        for (uint32_t k = 0; k < n; k++, p += 8) {
            st[j]->counts[k] = get64(in + p);
            total += st[j]->counts[k];
        }
    }
    if (total != s->n || (s->n && !(s->min <= s->max))) return SL_ECORRUPT;
    return (int64_t)p;
}
