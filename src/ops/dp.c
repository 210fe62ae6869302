/* dp.c — differential privacy for windowed counts: two operators.
 *
 * dp_bound runs before the window, on a stream keyed by the subscriber
 * pseudonym. It keeps at most c events per subscriber per window
 * (contribution bounding: one subscriber then changes the whole vector of
 * a window's counts by at most c in L1), and it keeps the epsilon ledger:
 * for every (subscriber, period) the epsilon already spent. A subscriber's
 * first event in a window charges that window's release (epsilon) to the
 * subscriber's period; when the charge would exceed the period's budget,
 * the subscriber's events are no longer released until the period ends
 * (dropped before aggregation, counted, and logged once per period).
 *
 * dp_noise runs after the window (and after k-anonymity, if any). It adds
 * discrete Laplace noise (the two-sided geometric distribution, the integer
 * analogue of Laplace(b)) to the configured count columns: with m noised
 * columns each gets scale b = c * m / epsilon, so one window's release
 * costs epsilon per subscriber (each column has L1 sensitivity c: c events,
 * or presence in at most c groups for a distinct count). The noise comes
 * from a keyed PRF — HMAC-SHA-256 under a subkey of the keyring secret
 * (label "sluice/dp-noise/v1") over (job name, window start, group key,
 * column) — so it is unpredictable without the secret and identical on
 * replay, after any recovery and at any parallelism. Noisy counts are
 * clamped at 0 (post-processing). Canary rows pass unchanged.
 *
 * Invariants of dp_bound (state = open windows' per-subscriber counts and
 * the open periods' ledgers, both by key group of the subscriber):
 * 1. A subscriber's events kept in window w are at most c (bound_row).
 * 2. A subscriber's ledger for period p never exceeds the budget: a charge
 *    is made only if it fits (bound_row), and a window's first event of a
 *    subscriber is kept only if its charge was made.
 * 3. State for a window is dropped only once the watermark has passed its
 *    end plus lateness, a ledger only once the watermark has passed its
 *    period's end plus lateness (dp_watermark): a later event of either is
 *    late for the window operator too.
 * 4. A snapshot is a pure function of the state (dp_snapshot sorts), and
 *    a restore puts every entry back under the same (window, subscriber)
 *    or (period, subscriber) (dp_restore).
 * Which c events of a subscriber are kept follows arrival order, which is
 * deterministic for a subscriber whose events come from one source
 * partition; see docs/privacy.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/hashmap.h"
#include "ops/privacy.h"

#define NOISE_LABEL "sluice/dp-noise/v1"
#define SNAP_ENTRIES 0x44504231u /* "DPB1" */
#define SNAP_META 0x44504d31u    /* "DPM1" */

/* ---- discrete Laplace ---------------------------------------------------- */
static double u01(const uint8_t *p)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x = x << 8 | p[i];
    return ((double)(x >> 11) + 0.5) / 9007199254740992.0; /* in (0, 1) */
}

int64_t sl__dp_discrete_laplace(const uint8_t rnd[32], double scale)
{
    /* G1 - G2 with G geometric on {0, 1, ...}, P(G >= k) = alpha^k */
    double la = -1.0 / scale; /* ln(alpha) */
    double g1 = floor(log(u01(rnd)) / la);
    double g2 = floor(log(u01(rnd + 8)) / la);
    return (int64_t)g1 - (int64_t)g2;
}

/* ---- Gaussian ------------------------------------------------------------ */
int64_t sl__dp_gaussian(const uint8_t rnd[32], double sigma)
{
    double r = sqrt(-2.0 * log(u01(rnd)));
    double z = r * cos(2.0 * M_PI * u01(rnd + 8));
    return (int64_t)llround(sigma * z);
}

static double phi(double x) { return 0.5 * erfc(-x / M_SQRT2); }

/* delta(sigma) of the Gaussian mechanism: the exact privacy profile
 * Phi(l2/(2s) - eps*s/l2) - e^eps * Phi(-l2/(2s) - eps*s/l2), decreasing
 * in sigma. */
static double gauss_delta(double eps, double l2, double s)
{
    double a = l2 / (2 * s), b = eps * s / l2;
    return phi(a - b) - exp(eps) * phi(-a - b);
}

double sl__dp_gaussian_sigma(double epsilon, double delta, double l2)
{
    double lo = l2 * 1e-6, hi = l2;
    while (gauss_delta(epsilon, l2, hi) > delta) hi *= 2;
    for (int i = 0; i < 200 && hi - lo > hi * 1e-12; i++) {
        double mid = (lo + hi) / 2;
        if (gauss_delta(epsilon, l2, mid) > delta) lo = mid;
        else hi = mid;
    }
    return hi; /* the conservative end */
}

/* ---- dp_noise ------------------------------------------------------------ */
typedef struct {
    const sl__dpnoise_conf *conf;
    sl__hmac *mac;
    int time_col;
    int nkey;
    int key_cols[SL_MAX_COLS];
    const char *job;
    double scale; /* Laplace: b; Gaussian: sigma */
    unsigned char *msg;
    size_t cap;
} noise_op;

static void nz_close(void *st)
{
    noise_op *p = st;
    if (!p) return;
    sl__hmac_free(p->mac);
    free(p->msg);
    free(p);
}

static int nz_open(void **st, const void *conf, const sl__opinfo *info,
                   sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    const sl__dpnoise_conf *c = conf;
    if (info->time_col < 0)
        return sl__err(errstr, errstr_size, SL_EINTERNAL,
                       "dp_noise: the stream has no window/time column");
    noise_op *p = sl__xcalloc(1, sizeof *p);
    p->conf = c;
    p->time_col = info->time_col;
    for (int i = 0; i < info->nkey; i++) p->key_cols[p->nkey++] = info->key_cols[i];
    p->job = ctx && ctx->job_name ? ctx->job_name : "";
    if (c->spec.mechanism == SL_DP_GAUSSIAN)
        p->scale = sl__dp_gaussian_sigma(c->spec.epsilon, c->spec.delta,
                                         (double)c->spec.max_contrib * sqrt(c->ncols));
    else
        p->scale = (double)c->spec.max_contrib * c->ncols / c->spec.epsilon;
    uint8_t k[32];
    sl__keyring_derive(c->keys, c->key, NOISE_LABEL, k);
    p->mac = sl__hmac_new_raw(k, sizeof k, errstr, errstr_size);
    OPENSSL_cleanse(k, sizeof k);
    if (!p->mac) {
        nz_close(p);
        return SL_ECRYPTO;
    }
    *st = p;
    return 0;
}

static void put(noise_op *p, size_t *n, const void *d, size_t len)
{
    if (*n + len > p->cap) {
        p->cap = (*n + len) * 2 + 64;
        p->msg = sl__xrealloc(p->msg, p->cap);
    }
    memcpy(p->msg + *n, d, len);
    *n += len;
}

static void put_u64(noise_op *p, size_t *n, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (56 - 8 * i));
    put(p, n, b, 8);
}

/* The PRF input, unambiguous: label, job, window start, each key column as
 * (validity, value; strings length-prefixed), the noised column's name. */
static size_t noise_msg(noise_op *p, const sl_batch *b, uint32_t r,
                        const char *colname)
{
    size_t n = 0;
    put(p, &n, "sluice-dp-v1", 13);
    put_u64(p, &n, strlen(p->job));
    put(p, &n, p->job, strlen(p->job));
    put_u64(p, &n, (uint64_t)((const int64_t *)b->cols[p->time_col].data)[r]);
    for (int k = 0; k < p->nkey; k++) {
        int c = p->key_cols[k];
        uint8_t v = b->cols[c].valid[r];
        put(p, &n, &v, 1);
        if (!v) continue;
        switch (b->schema->cols[c].type) {
        case SL_STRING: {
            sl_str s = ((const sl_str *)b->cols[c].data)[r];
            put_u64(p, &n, s.len);
            put(p, &n, s.ptr, s.len);
            break;
        }
        case SL_BOOL:
            put(p, &n, (const uint8_t *)b->cols[c].data + r, 1);
            break;
        default: {
            uint64_t x;
            memcpy(&x, (const char *)b->cols[c].data + 8 * (size_t)r, 8);
            put_u64(p, &n, x);
        }
        }
    }
    put_u64(p, &n, strlen(colname));
    put(p, &n, colname, strlen(colname));
    return n;
}

static int nz_batch(void *st, sl_batch *b, sl__out *out)
{
    noise_op *p = st;
    const sl__dpnoise_conf *c = p->conf;
    for (uint32_t r = 0; r < b->n; r++) {
        if (b->kind[r] != SL_KIND_DATA) continue;
        for (int i = 0; i < c->ncols; i++) {
            int col = c->cols[i];
            if (!b->cols[col].valid[r]) continue;
            size_t n = noise_msg(p, b, r, b->schema->cols[col].name);
            uint8_t rnd[32];
            sl__hmac_full(p->mac, p->msg, n, rnd);
            int64_t *v = (int64_t *)b->cols[col].data + r;
            int64_t x = *v + (c->spec.mechanism == SL_DP_GAUSSIAN
                                  ? sl__dp_gaussian(rnd, p->scale)
                                  : sl__dp_discrete_laplace(rnd, p->scale));
            *v = x < 0 ? 0 : x;
        }
    }
    return sl__emit(out, b);
}

const sl__op_vt sl__op_dp_noise = {
    .name = "dp_noise",
    .open = nz_open,
    .batch = nz_batch,
    .close = nz_close,
    .conf_free = free,
};

/* ---- dp_bound ------------------------------------------------------------ */
typedef struct {
    int64_t v;  /* window: events kept, -1 = blocked; period: micro-eps spent */
    int32_t kg; /* key group of the subscriber, -1 when unkeyed */
    int32_t pad;
} entry;

typedef struct {
    int64_t start;
    sl__bmap m; /* subscriber (8 bytes) -> entry */
    bool logged;
} slot;

typedef struct {
    slot *s;
    int n, cap;
} slots;

typedef struct {
    sl_dp_spec spec;
    int sub_col, time_col;
    int key_cols[1];
    bool keyed;
    int groups;
    int64_t eps_u, budget_u;
    int64_t wm;
    slots wins, pers;
    uint64_t over, exhausted, nullsub; /* rows dropped, by reason */
    sl__ctx *ctx;
} bound_op;

static void slots_close(slots *ss)
{
    for (int i = 0; i < ss->n; i++) sl__bmap_close(&ss->s[i].m);
    free(ss->s);
    ss->s = NULL;
    ss->n = ss->cap = 0;
}

static slot *slots_get(slots *ss, int64_t start)
{
    for (int i = 0; i < ss->n; i++)
        if (ss->s[i].start == start) return &ss->s[i];
    if (ss->n == ss->cap) {
        ss->cap = ss->cap ? 2 * ss->cap : 4;
        ss->s = sl__xrealloc(ss->s, sizeof *ss->s * (size_t)ss->cap);
    }
    slot *s = &ss->s[ss->n++];
    memset(s, 0, sizeof *s);
    s->start = start;
    sl__bmap_init(&s->m, sizeof(entry));
    return s;
}

/* Drops every slot whose end (start + len) + lateness <= wm. */
static void slots_expire(slots *ss, int64_t len, int64_t lateness, int64_t wm)
{
    int j = 0;
    for (int i = 0; i < ss->n; i++) {
        int64_t s = ss->s[i].start;
        bool done = s <= INT64_MAX - len - lateness && s + len + lateness <= wm;
        if (done) sl__bmap_close(&ss->s[i].m);
        else ss->s[j++] = ss->s[i];
    }
    ss->n = j;
}

static entry *lookup(slot *s, int64_t sub, int32_t kg, bool *is_new)
{
    entry *e = sl__bmap_upsert(&s->m, &sub, 8, sl__mix64((uint64_t)sub), is_new);
    if (*is_new) e->kg = kg;
    return e;
}

static void bd_close(void *st)
{
    bound_op *p = st;
    if (!p) return;
    slots_close(&p->wins);
    slots_close(&p->pers);
    free(p);
}

static int bd_open(void **st, const void *conf, const sl__opinfo *info,
                   sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    const sl__dpbound_conf *c = conf;
    if (c->sub_col < 0 || c->sub_col >= info->in->n || info->time_col < 0 ||
        info->in->cols[c->sub_col].type != SL_INT64)
        return sl__err(errstr, errstr_size, SL_EINTERNAL,
                       "dp_bound: configuration does not match the stream");
    bound_op *p = sl__xcalloc(1, sizeof *p);
    p->spec = c->spec;
    p->sub_col = c->sub_col;
    p->time_col = info->time_col;
    p->keyed = info->nkey == 1 && info->key_cols[0] == c->sub_col &&
               ctx && ctx->key_groups > 0;
    p->key_cols[0] = c->sub_col;
    p->groups = ctx ? ctx->key_groups : 0;
    p->eps_u = llround(c->spec.epsilon * 1e6);
    p->budget_u = llround(c->spec.budget * 1e6);
    p->wm = SL_TS_MIN;
    p->ctx = ctx;
    *st = p;
    return 0;
}

/* Decides one data row: true = keep. Keeps invariants 1 and 2. */
static bool bound_row(bound_op *p, const sl_batch *b, uint32_t r)
{
    if (!b->cols[p->sub_col].valid[r] || !b->cols[p->time_col].valid[r]) {
        p->nullsub++; /* cannot be bounded, so cannot be released */
        return false;
    }
    int64_t ts = ((const int64_t *)b->cols[p->time_col].data)[r];
    int64_t sub = ((const int64_t *)b->cols[p->sub_col].data)[r];
    int64_t W = p->spec.window_ms, P = p->spec.period_ms;
    int64_t w = sl__floor_div(ts, W) * W;
    if (w <= INT64_MAX - W - p->spec.lateness_ms &&
        w + W + p->spec.lateness_ms <= p->wm)
        return true; /* late: the window operator counts and drops it */
    int32_t kg = p->keyed ? sl__key_group(b, p->key_cols, 1, r, p->groups) : -1;
    bool fresh;
    entry *e = lookup(slots_get(&p->wins, w), sub, kg, &fresh);
    if (fresh) {
        slot *ps = slots_get(&p->pers, sl__floor_div(w, P) * P);
        bool pnew;
        entry *l = lookup(ps, sub, kg, &pnew);
        if (l->v > p->budget_u - p->eps_u) {
            e->v = -1;
            if (!ps->logged) {
                char t[40];
                sl__format_ts(ps->start, t, sizeof t);
                sl__log(SL__LOG_WARN, "dp", "epsilon budget spent for subscribers in "
                        "a period; their events are not released until it ends",
                        "budget=%.6g period_start=%s", p->spec.budget, t);
                ps->logged = true;
            }
        } else {
            l->v += p->eps_u;
        }
    }
    if (e->v < 0) {
        p->exhausted++;
        return false;
    }
    if (e->v >= p->spec.max_contrib) {
        p->over++;
        return false;
    }
    e->v++;
    return true;
}

static int bd_batch(void *st, sl_batch *b, sl__out *out)
{
    bound_op *p = st;
    uint8_t keep[b->n ? b->n : 1];
    for (uint32_t r = 0; r < b->n; r++)
        keep[r] = b->kind[r] != SL_KIND_DATA || bound_row(p, b, r);
    if (sl__ops_compact(b, keep) == 0) {
        sl__batch_free(b);
        return 0;
    }
    return sl__emit(out, b);
}

static int bd_watermark(void *st, int64_t wm, sl__out *out)
{
    (void)out;
    bound_op *p = st;
    if (wm <= p->wm) return 0;
    p->wm = wm;
    slots_expire(&p->wins, p->spec.window_ms, p->spec.lateness_ms, wm);
    slots_expire(&p->pers, p->spec.period_ms, p->spec.lateness_ms, wm);
    return 0;
}

void sl__dp_bound_stats(const void *st, uint64_t *over, uint64_t *exhausted,
                        uint64_t *null_sub)
{
    const bound_op *p = st;
    if (over) *over = p->over;
    if (exhausted) *exhausted = p->exhausted;
    if (null_sub) *null_sub = p->nullsub;
}

/* Snapshot: sections by key group of {kind, start, subscriber, value}
 * sorted, plus one operator section (watermark, counters, definition). */
typedef struct {
    int32_t kg;
    uint32_t kind; /* 0 window, 1 period */
    int64_t start, sub, v;
} ref;

static int ref_cmp(const void *a, const void *b)
{
    const ref *x = a, *y = b;
    if (x->kg != y->kg) return x->kg < y->kg ? -1 : 1;
    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->sub != y->sub) return x->sub < y->sub ? -1 : 1;
    return 0;
}

static void collect(const slots *ss, uint32_t kind, ref **rs, size_t *n,
                    size_t *cap)
{
    for (int i = 0; i < ss->n; i++) {
        const sl__bmap *m = &ss->s[i].m;
        for (uint32_t j = 0; j < sl__bmap_count(m); j++) {
            const uint8_t *key;
            uint32_t len;
            const entry *e = sl__bmap_at(m, j, &key, &len);
            if (*n == *cap) {
                *cap = *cap ? 2 * *cap : 256;
                *rs = sl__xrealloc(*rs, sizeof **rs * *cap);
            }
            ref *r = &(*rs)[(*n)++];
            r->kg = e->kg;
            r->kind = kind;
            r->start = ss->s[i].start;
            memcpy(&r->sub, key, 8);
            r->v = e->v;
        }
    }
}

static void put_def(const bound_op *p, sl__buf *b)
{
    sl__buf_put_i64(b, p->spec.window_ms);
    sl__buf_put_i64(b, p->spec.period_ms);
    sl__buf_put_i64(b, p->spec.max_contrib);
    sl__buf_put_i64(b, p->eps_u);
    sl__buf_put_i64(b, p->budget_u);
}

static int dp_snapshot(void *st, sl__snap_writer *w)
{
    bound_op *p = st;
    ref *rs = NULL;
    size_t n = 0, cap = 0;
    collect(&p->wins, 0, &rs, &n, &cap);
    collect(&p->pers, 1, &rs, &n, &cap);
    if (n) qsort(rs, n, sizeof *rs, ref_cmp);
    int rc = 0;
    sl__buf b = {0};
    for (size_t i = 0; i < n && rc == 0;) {
        size_t j = i;
        while (j < n && rs[j].kg == rs[i].kg) j++;
        b.len = 0;
        sl__buf_put_u32(&b, SNAP_ENTRIES);
        put_def(p, &b);
        sl__buf_put_u64(&b, j - i);
        for (size_t k = i; k < j; k++) {
            sl__buf_put_u32(&b, rs[k].kind);
            sl__buf_put_i64(&b, rs[k].start);
            sl__buf_put_i64(&b, rs[k].sub);
            sl__buf_put_i64(&b, rs[k].v);
        }
        rc = sl__snap_put(w, rs[i].kg, b.p, b.len);
        i = j;
    }
    if (rc == 0) {
        b.len = 0;
        sl__buf_put_u32(&b, SNAP_META);
        put_def(p, &b);
        sl__buf_put_i64(&b, p->wm);
        sl__buf_put_u64(&b, p->over);
        sl__buf_put_u64(&b, p->exhausted);
        sl__buf_put_u64(&b, p->nullsub);
        rc = sl__snap_put(w, -1, b.p, b.len);
    }
    sl__buf_free(&b);
    free(rs);
    return rc;
}

static bool def_matches(const bound_op *p, sl__rbuf *r)
{
    return sl__rbuf_i64(r) == p->spec.window_ms &&
           sl__rbuf_i64(r) == p->spec.period_ms &&
           sl__rbuf_i64(r) == p->spec.max_contrib &&
           sl__rbuf_i64(r) == p->eps_u && sl__rbuf_i64(r) == p->budget_u &&
           !r->err;
}

static int dp_restore(void *st, int32_t kg, const void *data, size_t len)
{
    bound_op *p = st;
    sl__rbuf r = {.p = data, .len = len};
    uint32_t magic = sl__rbuf_u32(&r);
    if (magic != SNAP_ENTRIES && magic != SNAP_META) return SL_ECORRUPT;
    if (!def_matches(p, &r)) return SL_ECORRUPT; /* another definition */
    if (magic == SNAP_META) {
        int64_t wm = sl__rbuf_i64(&r);
        uint64_t o = sl__rbuf_u64(&r), e = sl__rbuf_u64(&r), z = sl__rbuf_u64(&r);
        if (r.err || r.off != r.len) return SL_ECORRUPT;
        /* sections of several old tasks may meet here: the lowest wins */
        if (p->wm == SL_TS_MIN || wm < p->wm) p->wm = wm;
        p->over += o;
        p->exhausted += e;
        p->nullsub += z;
        return 0;
    }
    uint64_t n = sl__rbuf_u64(&r);
    if (r.err || n > (len - r.off) / 28) return SL_ECORRUPT;
    /* check the whole section before touching the state */
    size_t body = r.off;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t kind = sl__rbuf_u32(&r);
        sl__rbuf_i64(&r);
        sl__rbuf_i64(&r);
        int64_t v = sl__rbuf_i64(&r);
        if (kind > 1 || (kind == 0 && (v < -1 || v > p->spec.max_contrib)) ||
            (kind == 1 && (v < 0 || v > p->budget_u)))
            return SL_ECORRUPT;
    }
    if (r.err || r.off != r.len) return SL_ECORRUPT;
    r.off = body;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t kind = sl__rbuf_u32(&r);
        int64_t start = sl__rbuf_i64(&r), sub = sl__rbuf_i64(&r);
        int64_t v = sl__rbuf_i64(&r);
        bool fresh;
        entry *e = lookup(slots_get(kind ? &p->pers : &p->wins, start), sub,
                          kg, &fresh);
        e->v = v;
    }
    return 0;
}

const sl__op_vt sl__op_dp_bound = {
    .name = "dp_bound",
    .open = bd_open,
    .batch = bd_batch,
    .watermark = bd_watermark,
    .close = bd_close,
    .conf_free = free,
    .snapshot = dp_snapshot,
    .restore = dp_restore,
    .state_version = 1,
};

/* ---- builders ------------------------------------------------------------ */
int sl__dp_spec_check(const sl_dp_spec *d, char *errstr, size_t errstr_size)
{
    if (!d)
        return sl__err(errstr, errstr_size, SL_EINVAL, "dp: no specification");
    if (!(d->epsilon > 0) || !isfinite(d->epsilon) || d->epsilon > 1e6 ||
        llround(d->epsilon * 1e6) < 1)
        return sl__err(errstr, errstr_size, SL_EINVAL, "dp: epsilon must be a "
                       "number in [0.000001, 1e6], got %g (epsilon <= 0 gives "
                       "no privacy)", d->epsilon);
    if (!(d->budget >= d->epsilon) || !isfinite(d->budget) || d->budget > 1e9)
        return sl__err(errstr, errstr_size, SL_EINVAL, "dp: budget must be at "
                       "least epsilon (%g) and at most 1e9, got %g",
                       d->epsilon, d->budget);
    if (d->max_contrib < 1 || d->max_contrib > 1000000)
        return sl__err(errstr, errstr_size, SL_EINVAL, "dp: max_contrib (c) "
                       "must be in [1, 1000000], got %lld",
                       (long long)d->max_contrib);
    if (d->window_ms <= 0 || d->period_ms <= 0 ||
        d->period_ms % d->window_ms != 0)
        return sl__err(errstr, errstr_size, SL_EINVAL, "dp: period_ms (%lld) "
                       "must be a positive multiple of window_ms (%lld)",
                       (long long)d->period_ms, (long long)d->window_ms);
    if (d->lateness_ms < 0)
        return sl__err(errstr, errstr_size, SL_EINVAL,
                       "dp: lateness_ms must be >= 0");
    if (d->mechanism != SL_DP_LAPLACE && d->mechanism != SL_DP_GAUSSIAN)
        return sl__err(errstr, errstr_size, SL_EINVAL, "dp: mechanism must be "
                       "SL_DP_LAPLACE or SL_DP_GAUSSIAN, got %d", d->mechanism);
    if (d->mechanism == SL_DP_GAUSSIAN &&
        (!(d->delta > 0) || !(d->delta <= 0.01) || d->epsilon > 50))
        return sl__err(errstr, errstr_size, SL_EINVAL, "dp: the Gaussian "
                       "mechanism needs delta in (0, 0.01] (got %g) and epsilon "
                       "<= 50 (got %g)", d->delta, d->epsilon);
    return 0;
}

sl_stream *sl_stream_dp_bound(sl_stream *s, const char *sub_col,
                              const sl_dp_spec *dp)
{
    if (!s) return NULL;
    sl_job *job = sl__stream_job(s);
    char err[256];
    int rc = sl__dp_spec_check(dp, err, sizeof err);
    if (rc) {
        sl__job_fail(job, rc, "%s", err);
        return NULL;
    }
    const sl_schema *in = sl_stream_schema(s);
    int c = sub_col ? sl_schema_find(in, sub_col) : -1;
    if (c < 0 || in->cols[c].type != SL_INT64) {
        sl__job_fail(job, SL_EINVAL, "dp_bound: '%s' is not a BIGINT "
                     "(pseudonym) column of the stream", sub_col ? sub_col : "");
        return NULL;
    }
    const char *const *key = sl__stream_key(s);
    if (!key || !key[0] || key[1] || strcmp(key[0], sub_col) != 0) {
        sl__job_fail(job, SL_EINVAL, "dp_bound: key the stream by '%s' alone "
                     "first (key_by), so each subscriber's events meet in one "
                     "task", sub_col);
        return NULL;
    }
    if (!sl__stream_time_col(s)) {
        sl__job_fail(job, SL_EINVAL, "dp_bound: the stream has no event time");
        return NULL;
    }
    sl__dpbound_conf *conf = sl__xcalloc(1, sizeof *conf);
    conf->sub_col = c;
    conf->spec = *dp;
    return sl__stream_add_op(s, &sl__op_dp_bound, conf, in);
}

sl_stream *sl_stream_dp_noise(sl_stream *s, const char *const *count_cols,
                              const sl_dp_spec *dp, const sl_keyring *keys)
{
    if (!s) return NULL;
    sl_job *job = sl__stream_job(s);
    char err[256];
    int rc = sl__dp_spec_check(dp, err, sizeof err);
    if (rc) {
        sl__job_fail(job, rc, "%s", err);
        return NULL;
    }
    if (!keys || sl__keyring_nkeys(keys) == 0) {
        sl__job_fail(job, SL_EINVAL, "dp_noise: no keyring (the noise must be "
                     "unpredictable without a secret)");
        return NULL;
    }
    int ki = dp->key_id ? sl__keyring_find(keys, dp->key_id)
                        : sl__keyring_nkeys(keys) - 1;
    if (ki < 0) {
        sl__job_fail(job, SL_EINVAL, "dp_noise: key id '%s' is not in the "
                     "keyring", dp->key_id);
        return NULL;
    }
    if (!sl__stream_time_col(s)) {
        sl__job_fail(job, SL_EINVAL, "dp_noise: the stream has no window "
                     "column; put dp_noise after a window");
        return NULL;
    }
    const sl_schema *in = sl_stream_schema(s);
    sl__dpnoise_conf *conf = sl__xcalloc(1, sizeof *conf);
    conf->spec = *dp;
    conf->keys = keys;
    conf->key = ki;
    for (size_t i = 0; count_cols && count_cols[i]; i++) {
        int c = sl_schema_find(in, count_cols[i]);
        if (c < 0 || in->cols[c].type != SL_INT64 || conf->ncols == SL_MAX_COLS) {
            sl__job_fail(job, SL_EINVAL, "dp_noise: '%s' is not a BIGINT count "
                         "column of the stream", count_cols[i]);
            free(conf);
            return NULL;
        }
        conf->cols[conf->ncols++] = c;
    }
    if (conf->ncols == 0) {
        sl__job_fail(job, SL_EINVAL, "dp_noise: no count columns given");
        free(conf);
        return NULL;
    }
    return sl__stream_add_op(s, &sl__op_dp_noise, conf, in);
}
