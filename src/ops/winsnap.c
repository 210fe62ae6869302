/* winsnap.c — asynchronous snapshots of the window operator's in-memory
 * state (copy-on-write per group, as Flink's heap state backend does).
 *
 * At barrier n the task (sl__winsnap_begin) only notes every open group: a
 * reference to its live block, a copy of its key (a few bytes), its key group
 * and window start, and stamps the group with its reference's index. The
 * checkpoint's writer thread (ckpt.c) later calls winsnap_write, which sorts
 * the references as the format requires (window.c invariant 7) and
 * serialises every group into the same sections win_snapshot would have
 * written at the barrier. Meanwhile the task goes on: before it changes or
 * frees a group the writer has not serialised yet (a record updates it, its
 * window fires, the TTL resets or sweeps it) it copies that group first
 * (sl__winsnap_cow: exact integer distinct-count sets slot for slot, a
 * memcpy, which the writer serialises later; other states are serialised
 * at once), so the snapshot keeps the group as it was at the barrier.
 * Nothing is locked on the hot path: each reference has its own atomic state.
 *
 * Invariants:
 * 1. A reference goes PENDING -> BUSY -> DONE exactly once; whoever moves it
 *    to BUSY (writer or task, by compare-and-swap) serialises or copies it
 *    and publishes DONE with release order. The writer reads a live group only
 *    while it holds that group BUSY; the task changes or frees a group only
 *    after its reference is DONE (sl__winsnap_cow waits out a BUSY one, for
 *    that group only).
 * 2. A group's stamp (the u32 after its key group) is its reference index + 1
 *    in the snapshot in flight, or 0 (created after the barrier, or already
 *    copied); groups created after the barrier are zero-filled by the map,
 *    and every group open at a barrier is stamped afresh, so a stale stamp
 *    is never read while its snapshot is in flight (op->asnap, reaped in
 *    sl__winsnap_reap once the writer has finished).
 * 3. The bytes equal the synchronous snapshot's at the barrier: the same
 *    header (watermark taken at the barrier), the same order (key group,
 *    window start, key bytes), each group's serialisation of its state at
 *    the barrier (invariant 1), the operator section built at the barrier.
 * 4. The writer never touches the snapshot after setting `finished`; the
 *    task frees it only after reading `finished` (acquire).
 *
 * With incremental checkpoints (winchg.c) this is the full
 * materialisation of a chain: the same sections, written into a shared
 * file that the deltas after it build on (as->full); most checkpoints are
 * deltas and never come here.
 *
 * Not done here: the RocksDB backend (state.backend=rocksdb) snapshots
 * synchronously (winstore.c).
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "window_int.h"

enum { REF_PENDING = 0, REF_BUSY = 1, REF_DONE = 2 };

/* Waits for a reference another thread holds BUSY (one group's
 * serialisation): yields a few times, then sleeps briefly, so a waiter on a
 * loaded machine does not burn the core the holder needs. */
static uint32_t wait_done(_Atomic uint32_t *st)
{
    uint32_t v;
    for (int i = 0; (v = atomic_load_explicit(st, memory_order_acquire)) == REF_BUSY; i++) {
        if (i < 16) {
            sched_yield();
        } else {
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
    return v;
}

typedef struct {
    _Atomic uint32_t st; /* invariant 1 */
    int32_t kg;
    int64_t start;
    uint32_t klen;
    size_t koff;         /* key copy: keys + koff */
    const uint8_t *grp;  /* the live group (read only while BUSY) */
    uint8_t *shadow;     /* the task's copy of the group block, when it copied
                          * first and its states can be copied (writer frees) */
    char *copy;          /* else the task's serialisation of it */
    size_t ncopy;
    int err;
} aref;

typedef struct {
    int32_t kg;
    int64_t start;
    const uint8_t *key;
    uint32_t len;
    uint32_t i;
} sref;

struct sl__winsnap {
    win_op *op;
    int64_t wm;     /* at the barrier */
    uint32_t n;
    aref *refs;
    uint8_t *keys;
    sl__buf opsec;  /* the operator section, built at the barrier */
    struct sl__winchg_full *full; /* a chain's full materialisation (winchg.c) */
    uint64_t delay_ns; /* SLUICE_TEST_SNAPSHOT_DELAY_US: per group, tests */
    atomic_int finished;
    bool shadow;      /* heap states are exact int sets: copy, not serialise */
    uint32_t copied;  /* groups the task serialised first (task only) */
    uint64_t t_begin; /* clock at the barrier */
    /* the writer's scratch */
    char *tmp;
    size_t tmpcap;
};

void (*sl__winsnap_test_hook)(uint32_t i, uint32_t n);

static inline uint32_t grp_stamp(const win_op *op, const uint8_t *grp)
{
    uint32_t s;
    memcpy(&s, grp + op->state_size + 4, sizeof s);
    return s;
}

static inline void grp_set_stamp(const win_op *op, uint8_t *grp, uint32_t s)
{
    memcpy(grp + op->state_size + 4, &s, sizeof s);
}

static void shadow_free(const win_op *op, uint8_t *sh)
{
    for (size_t a = 0; sh && a < op->naggs; a++)
        if (sl__agg_has_heap(&op->aggs[a])) sl__agg_state_free(&op->aggs[a], sh);
    free(sh);
}

static void snap_free(sl__winsnap *as)
{
    if (!as) return;
    for (uint32_t i = 0; i < as->n; i++) {
        free(as->refs[i].copy);
        shadow_free(as->op, as->refs[i].shadow);
    }
    free(as->refs);
    free(as->keys);
    sl__buf_free(&as->opsec);
    free(as->tmp);
    sl__winchg_full_free(as->full);
    free(as);
}

void sl__winsnap_reap(win_op *op, bool wait)
{
    sl__winsnap *as = op->asnap;
    if (!as) return;
    while (!atomic_load_explicit(&as->finished, memory_order_acquire)) {
        if (!wait) return;
        sched_yield();
    }
    sl__log(SL__LOG_DEBUG, "window", "snapshot written", "task=%d groups=%u "
            "copied_by_task=%u ms_until_reaped=%.1f", op->ctx ? op->ctx->task : 0, as->n, as->copied,
            (double)(sl__clock() - as->t_begin) / 1e6);
    snap_free(as);
    op->asnap = NULL;
}

/* Keeps the group of reference r as it is (held BUSY by the caller): a copy
 * of its block whose exact distinct-count sets are copied slot for slot (a
 * memcpy, several times cheaper for the task than serialising them; the
 * writer serialises the copy into the same bytes), or else its
 * serialisation. */
static void ref_copy(sl__winsnap *as, aref *r)
{
    const win_op *op = as->op;
    if (as->shadow) {
        uint8_t *sh = sl__xmalloc(op->grp_size);
        memcpy(sh, r->grp, op->grp_size);
        for (size_t a = 0; a < op->naggs; a++)
            if (sl__agg_has_heap(&op->aggs[a]))
                sl__set64_copy((sl__set64 *)(sh + op->aggs[a].off),
                               (const sl__set64 *)(r->grp + op->aggs[a].off));
        r->shadow = sh;
        return;
    }
    size_t n = 0, cap = 0;
    char *buf = NULL;
    r->err = sl__win_group_bytes(as->op, r->grp, &buf, &cap, &n);
    r->copy = buf;
    r->ncopy = n;
}

void sl__winsnap_cow(win_op *op, uint8_t *grp)
{
    sl__winsnap *as = op->asnap;
    uint32_t s = grp_stamp(op, grp);
    if (!as || !s) return;
    SL_ASSERT(s <= as->n);
    aref *r = &as->refs[s - 1];
    uint32_t exp = REF_PENDING;
    if (atomic_compare_exchange_strong_explicit(&r->st, &exp, REF_BUSY,
                                                memory_order_acq_rel,
                                                memory_order_acquire)) {
        ref_copy(as, r);
        as->copied++;
        atomic_store_explicit(&r->st, REF_DONE, memory_order_release);
    } else if (exp == REF_BUSY) { /* the writer serialises this very group */
        wait_done(&r->st);
    }
    grp_set_stamp(op, grp, 0); /* the snapshot has it: no more checks */
}

void sl__winsnap_cow_pairs(win_op *op, uint32_t np)
{
    for (uint32_t p = 0; p < np; p++)
        if (grp_stamp(op, op->pgrp[p])) sl__winsnap_cow(op, op->pgrp[p]);
}

void sl__winsnap_cow_window(win_op *op, win *w)
{
    uint32_t ng = sl__bmap_count(&w->groups);
    for (uint32_t g = 0; g < ng; g++) {
        uint8_t *grp = sl__bmap_at(&w->groups, g, NULL, NULL);
        if (grp_stamp(op, grp)) sl__winsnap_cow(op, grp);
    }
}

void sl__winsnap_cow_all(win_op *op)
{
    for (size_t i = 0; op->asnap && i < op->nw; i++) sl__winsnap_cow_window(op, op->wins[i]);
}

static int sref_cmp(const void *x, const void *y)
{
    const sref *a = x, *b = y;
    if (a->kg != b->kg) return a->kg < b->kg ? -1 : 1;
    if (a->start != b->start) return a->start < b->start ? -1 : 1;
    int c = memcmp(a->key, b->key, a->len < b->len ? a->len : b->len);
    if (c) return c;
    return (a->len > b->len) - (a->len < b->len);
}

static void put_header(const sl__winsnap *as, sl__buf *b)
{
    sl__buf_put_u32(b, SL__WIN_SNAP_MAGIC);
    sl__buf_put_u64(b, as->op->fp);
    sl__buf_put_i64(b, as->wm);
}

/* Appends reference r's serialisation to b: the writer's own if it gets
 * the group first, else the task's copy (invariant 1). */
static int put_group(sl__winsnap *as, sl__buf *b, aref *r, uint32_t k)
{
    if (sl__winsnap_test_hook) sl__winsnap_test_hook(k, as->n);
    if (as->delay_ns) {
        struct timespec ts = {(time_t)(as->delay_ns / 1000000000u),
                              (long)(as->delay_ns % 1000000000u)};
        nanosleep(&ts, NULL);
    }
    sl__buf_put_str(b, (const char *)as->keys + r->koff, r->klen);
    uint32_t exp = REF_PENDING;
    if (atomic_compare_exchange_strong_explicit(&r->st, &exp, REF_BUSY,
                                                memory_order_acq_rel,
                                                memory_order_acquire)) {
        size_t n = 0;
        int rc = sl__win_group_bytes(as->op, r->grp, &as->tmp, &as->tmpcap, &n);
        atomic_store_explicit(&r->st, REF_DONE, memory_order_release);
        if (rc) return rc;
        sl__buf_put_str(b, as->tmp, n);
        return 0;
    }
    if (exp == REF_BUSY) wait_done(&r->st); /* the task is copying it */
    if (r->shadow) {
        size_t n = 0;
        int rc = sl__win_group_bytes(as->op, r->shadow, &as->tmp, &as->tmpcap, &n);
        shadow_free(as->op, r->shadow);
        r->shadow = NULL;
        if (rc) return rc;
        sl__buf_put_str(b, as->tmp, n);
        return 0;
    }
    if (r->err) return r->err;
    sl__buf_put_str(b, r->copy, r->ncopy);
    return 0;
}

static int write_sections(sl__winsnap *as, sl__snap_writer *w, bool opsec)
{
    sref *s = sl__xmalloc((as->n ? as->n : 1) * sizeof *s);
    for (uint32_t i = 0; i < as->n; i++) {
        const aref *r = &as->refs[i];
        s[i] = (sref){.kg = r->kg, .start = r->start, .key = as->keys + r->koff,
                      .len = r->klen, .i = i};
    }
    qsort(s, as->n, sizeof *s, sref_cmp);
    sl__buf b = {0};
    int rc = 0;
    for (uint32_t i = 0; i < as->n && rc == 0;) {
        uint32_t j = i, nwin = 0;
        for (; j < as->n && s[j].kg == s[i].kg; j++) nwin += j == i || s[j].start != s[j - 1].start;
        b.len = 0;
        put_header(as, &b);
        sl__buf_put_u32(&b, nwin);
        for (uint32_t k = i; k < j && rc == 0;) {
            uint32_t e = k;
            while (e < j && s[e].start == s[k].start) e++;
            sl__buf_put_i64(&b, s[k].start);
            sl__buf_put_u32(&b, e - k);
            for (; k < e && rc == 0; k++) rc = put_group(as, &b, &as->refs[s[k].i], k);
        }
        if (rc == 0) rc = sl__snap_put(w, s[i].kg, b.p, b.len);
        i = j;
    }
    if (rc == 0 && opsec) rc = sl__snap_put(w, -1, as->opsec.p, as->opsec.len);
    sl__buf_free(&b);
    free(s);
    return rc;
}

static int chain_sections(void *ud, sl__snap_writer *w)
{
    return write_sections(ud, w, false);
}

/* sl__snap_deferred.write: the writer thread's part (invariant 4). */
static int winsnap_write(void *ud, sl__snap_writer *w)
{
    sl__winsnap *as = ud;
    int rc;
    if (as->full) /* incremental: into a shared file, referenced from w */
        rc = sl__winchg_write_full(as->full, w, chain_sections, as, &as->opsec);
    else
        rc = w ? write_sections(as, w, true) : 0;
    atomic_store_explicit(&as->finished, 1, memory_order_release);
    return rc;
}

int sl__winsnap_begin(win_op *op, sl__snap_deferred *d)
{
    if (op->ws) return SL__SNAP_SYNC; /* RocksDB: winstore.c's snapshot */
    sl__winsnap_reap(op, true); /* one checkpoint in flight (ckpt.c inv. 1) */
    sl__winchg_reap(op);
    struct sl__winchg_full *full = NULL;
    if (op->chg) { /* incremental: a delta, unless a full one is due */
        int crc = sl__winchg_begin(op, d, &full);
        if (crc != SL__SNAP_SYNC) return crc;
    }
    uint64_t n = 0, kbytes = 0;
    for (size_t i = 0; i < op->nw; i++) {
        const sl__bmap *m = &op->wins[i]->groups;
        n += sl__bmap_count(m);
        for (uint32_t g = 0; g < sl__bmap_count(m); g++) {
            uint32_t len;
            sl__bmap_at(m, g, NULL, &len);
            kbytes += len;
        }
    }
    if (n >= UINT32_MAX) {
        if (full) op->chg_force = true; /* the chain restarts next time */
        sl__winchg_full_free(full);
        return SL__SNAP_SYNC;
    }
    sl__winsnap *as = sl__xcalloc(1, sizeof *as);
    as->full = full;
    as->op = op;
    as->wm = op->wm;
    as->t_begin = sl__clock();
    as->shadow = true;
    for (size_t a = 0; a < op->naggs; a++)
        if (sl__agg_has_heap(&op->aggs[a]) &&
            (op->aggs[a].kind != SL_AGG_COUNT_DISTINCT || op->aggs[a].in_type == SL_STRING))
            as->shadow = false;
    as->n = (uint32_t)n;
    as->refs = sl__xcalloc(n ? n : 1, sizeof *as->refs);
    as->keys = sl__xmalloc(kbytes ? kbytes : 1);
    const char *delay = getenv("SLUICE_TEST_SNAPSHOT_DELAY_US");
    if (delay && *delay) as->delay_ns = strtoull(delay, NULL, 10) * 1000u;
    size_t k = 0, koff = 0;
    for (size_t i = 0; i < op->nw; i++) {
        const sl__bmap *m = &op->wins[i]->groups;
        for (uint32_t g = 0; g < sl__bmap_count(m); g++) {
            const uint8_t *key;
            uint32_t len;
            uint8_t *grp = sl__bmap_at(m, g, &key, &len);
            aref *r = &as->refs[k];
            atomic_init(&r->st, REF_PENDING);
            r->kg = sl__grp_kg(op, grp);
            r->start = op->wins[i]->start;
            r->klen = len;
            r->koff = koff;
            r->grp = grp;
            if (len) memcpy(as->keys + koff, key, len);
            koff += len;
            grp_set_stamp(op, grp, (uint32_t)++k);
            if (full) memset(grp + op->chg_off, 0, sizeof(uint32_t)); /* a new chain */
        }
    }
    sl__win_snap_operator_bytes(op, &as->opsec);
    atomic_init(&as->finished, 0);
    op->asnap = as;
    d->write = winsnap_write;
    d->ud = as;
    return 0;
}
