/* winstore.c — the window operator's state beyond its in-memory maps: the
 * groups of open windows in RocksDB (state.backend = rocksdb) and state TTL
 * (state.ttl.ms) under both backends. window.c calls in here; nothing else
 * does. Session windows and interval joins keep their state in memory.
 *
 * RocksDB layout: one column family per operator instance (a task's
 * window), written only by the task's thread: in the process's instance,
 * or, with incremental checkpoints (state.checkpoints.incremental and a
 * checkpoint.dir), the default column family of an instance of its own.
 *
 *   key   = window end (8 bytes big-endian, sign bit flipped: sorts as the
 *           numbers) | key group (2 bytes big-endian) | encoded group key
 *           (winkey.c: sorts as the key values)
 *   value = each aggregate's sl__agg_serialize, in definition order, then
 *           the event time of the group's newest record (8 bytes LE; 0
 *           without TTL)
 *
 * Window end first, so that firing a window is one range scan (deleting
 * each key it reads: see sl__ws_forget); within a window the keys come by key group, then group
 * key, which is the order of a snapshot's sections (window.c invariant 7),
 * so a snapshot is a merge of one iterator per open window.
 *
 * The in-memory maps are a write-back cache in front of the store: records
 * update groups in memory; when the cache outgrows its share of
 * state.memory.bound (1/8 of it, split between the process's window tasks)
 * groups are evicted, CLOCK-wise (sl__ws_maybe_evict): those not used
 * since the last eviction are written in write batches and dropped, the
 * others lose their mark, and used ones of the oldest windows go too if
 * that is not enough to get under EVICT_KEEP of the budget. A window that
 * lost groups is "spilled". A record whose group is not cached in a
 * spilled window either gets it back by one multi-get per chunk of pairs
 * (sl__ws_load), or, in blind mode (no TTL: can_write_blind), starts an
 * empty group marked partial, written later as a merge operand that
 * RocksDB folds into the stored value with sl__agg_merge (merge_group).
 * Every open of the window's instances sets that merge operator (the
 * task's own, one adopted from a checkpoint, a checkpoint opened read-only
 * by import_open), so merge operands survive incremental checkpoints and
 * every restore path.
 *
 * Invariants:
 * 1. A group is either in its window's map or only in the store; where
 *    both hold it (after a snapshot's write-out), the map's copy is the
 *    newer: sl__ws_load reads the store only for groups pass 2 created.
 *    Blind mode: a partial group's map copy and the store's value together
 *    are the group; it is written only as a merge operand and only once,
 *    leaving the map (evict_window; write_window evicts partial groups
 *    when it keeps the others), and sl__ws_load_window merges the store's
 *    value into it.
 * 2. w->spilled is true exactly when the store may hold groups of w that
 *    its map does not (evict sets it; fire clears the window).
 * 3. The store holds no key of a fired window: sl__ws_fire deletes each
 *    key it emits, sl__ws_forget those of a window fired from memory.
 *    A firing may span calls (SL__MORE, op->ws_firing): nothing but the
 *    same watermark reaches the operator in between (runtime.h).
 * 4. An expired group (sl__ttl_expired on its newest record's time) is
 *    never read back: loads, fires and snapshots skip it; the compaction
 *    filter and the memory sweep only drop groups that are expired.
 *
 * Checkpoints are incremental when the task has an instance of its own
 * (snapshot_incremental, below: the cache written out and emptied, a
 * RocksDB checkpoint moved into the checkpoint store, reference sections);
 * otherwise, and for savepoints, full: a snapshot writes the cache out
 * (keeping it) and reads every group of the store back into key group
 * sections. Restore fills the cache, which spills as it grows, or opens an
 * incremental checkpoint as the task's instance (sl__ws_restore_ref). See
 * docs/state.md, "Checkpoint sizes".
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/store.h"
#include "window_int.h"

#define KEY_HEAD 10              /* window end + key group */
#define WRITE_CHUNK (64u << 10) /* bytes of a write batch: small, since the
                                  * buffers count against the bound too */
#define FIRE_PREFETCH 8
#define FIRE_BATCHES 4 /* full output batches per sl__ws_fire call */
#define EVICT_KEEP 0.75 /* of the cache's budget, left after an eviction */

struct sl__winstore {
    sl__ks *ks;
    _Atomic int64_t wm;   /* the operator's watermark, for the filter */
    int64_t ttl;
    size_t budget;        /* bytes the cache may hold */
    double heap_per_group; /* serialised bytes per group, last write-out */
    sl__buf kb, vb;       /* scratch: keys and values of a write batch */
    size_t *koff, *voff;  /* offsets into kb/vb */
    uint8_t *kmerge;      /* per op: a merge operand (blind mode) */
    bool blind;           /* groups new to a spilled window are not read
                           * back: written as merge operands (see top) */
    struct ws_merger *merger; /* the merge operator's view of op */
    size_t nops, cops;
    char dir[1024];       /* state.rocksdb.dir: its free space is checked */
    uint64_t reserve;     /* bytes a memtable flush may need on top */
    uint64_t peak_disk;   /* largest SST size seen after a write-out */
    uint64_t writeouts, written; /* evictions from the cache, bytes */
    uint64_t evicted, loads, hits; /* groups evicted; read back; found cached */
    uint64_t blind_writes; /* groups written as merge operands */
    /* incremental checkpoints (state.checkpoints.incremental): the store
     * is an instance of its own in odir, named id in <checkpoint.dir>/shared */
    bool own;
    sl__state_conf sc;    /* to reopen odir after adopting a checkpoint */
    int64_t wbuf;         /* write-buffer bytes of the own instance */
    char odir[1100];
    char id[40];          /* this open's identity: unique shared names */
    sl__ck_inherit *inh;  /* SST files adopted from a checkpoint */
    size_t ninh;
    char *adopted;        /* the rdb directory adopted, or NULL */
    bool touched;         /* written or restored into: no adopting now */
    uint8_t *kgs;         /* key groups written (one byte each) */
    uint32_t nkgs;
    uint64_t ck_new, ck_total; /* bytes of the last incremental checkpoint */
    uint64_t peak_readers, peak_memtables, peak_cache, peak_pinned; /* RocksDB's */
    sl__ks_iter *fit;     /* the firing in progress (op->ws_firing) */
    uint64_t fng, fsup;   /* its groups so far, and those suppressed */
    int64_t noted;        /* its cache's bytes in sl__memprof_wincache */
    uint64_t churn, trim_every; /* bytes fired since the last malloc_trim */
};

/* A group's cache marks: the byte after its key group, in the padding
 * window.c leaves before the next 8-byte boundary. */
#define MARK_REF 1     /* used since the last eviction (CLOCK) */
#define MARK_PARTIAL 2 /* blind mode: the store may hold an older part */
static inline uint8_t *grp_mark(const win_op *op, uint8_t *grp)
{
    return grp + op->state_size + sizeof(int32_t);
}

/* ---- encoding ------------------------------------------------------------- */
static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

static void put_le32(uint8_t *p, uint32_t v) /* as sl__buf_put_u32 */
{
    for (int i = 0; i < 4; i++, v >>= 8) p[i] = (uint8_t)v;
}

static void put_end(uint8_t *p, int64_t end)
{
    put_be64(p, (uint64_t)end ^ (1ull << 63));
}

static size_t make_key(uint8_t *p, int64_t end, int32_t kg, const uint8_t *key,
                       uint32_t len)
{
    put_end(p, end);
    p[8] = (uint8_t)((uint32_t)kg >> 8);
    p[9] = (uint8_t)kg;
    memcpy(p + KEY_HEAD, key, len);
    return KEY_HEAD + len;
}

static int32_t key_kg(const uint8_t *k) { return (int32_t)(k[8] << 8 | k[9]); }

static int64_t value_ts(const char *v, size_t vl)
{
    int64_t t = 0;
    if (vl >= 8) {
        uint64_t u = 0;
        for (int i = 7; i >= 0; i--) u = u << 8 | (uint8_t)v[vl - 8 + (size_t)i];
        t = (int64_t)u;
    }
    return t;
}

/* Appends grp's value to b; returns its length. */
static size_t put_value(win_op *op, const uint8_t *grp, sl__buf *b)
{
    size_t n = 0;
    for (size_t a = 0; a < op->naggs; a++)
        n += sl__agg_serialized_size(&op->aggs[a], grp);
    size_t at = b->len;
    uint8_t zero[64] = {0};
    for (size_t left = n + 8; left;) { /* grow b by n + 8 bytes */
        size_t k = left < sizeof zero ? left : sizeof zero;
        sl__buf_put(b, zero, k);
        left -= k;
    }
    size_t used = 0;
    for (size_t a = 0; a < op->naggs; a++)
        used += sl__agg_serialize(&op->aggs[a], grp, b->p + at + used);
    SL_ASSERT(used == n);
    uint64_t t = op->ts_off ? (uint64_t)sl__grp_ts(op, grp) : 0;
    for (int i = 0; i < 8; i++, t >>= 8) b->p[at + n + (size_t)i] = (uint8_t)t;
    return n + 8;
}

/* Replaces grp's states (empty, zero-filled) with a stored value's;
 * SL_ECORRUPT when it does not parse. */
static int read_value(win_op *op, uint8_t *grp, const char *v, size_t vl)
{
    if (vl < 8) return SL_ECORRUPT;
    size_t used = 0, n = vl - 8;
    for (size_t a = 0; a < op->naggs; a++) {
        int64_t got = sl__agg_deserialize(&op->aggs[a], grp,
                                          (const uint8_t *)v + used, n - used);
        if (got < 0) return SL_ECORRUPT;
        used += (size_t)got;
    }
    if (used != n) return SL_ECORRUPT;
    if (op->ts_off) sl__grp_set_ts(op, grp, value_ts(v, vl));
    return 0;
}

static void free_states(win_op *op, uint8_t *grp)
{
    for (size_t a = 0; op->heap && a < op->naggs; a++)
        sl__agg_state_free(&op->aggs[a], grp);
}

/* ---- open, close ---------------------------------------------------------- */
/* Compaction filter: RocksDB's threads read the watermark atomically. */
static bool ttl_drop(void *arg, const char *k, size_t kl, const char *v, size_t vl)
{
    (void)k;
    (void)kl;
    const sl__winstore *ws = arg;
    int64_t wm = atomic_load_explicit(&ws->wm, memory_order_relaxed);
    int64_t last = value_ts(v, vl), age;
    if (wm <= last) return false;
    if (__builtin_sub_overflow(wm, last, &age)) return true;
    return age > ws->ttl;
}

/* The merge operator's view of the window (blind mode): RocksDB may call
 * it from its own threads, and after the window closed (a compaction in
 * flight), so it holds op under a lock and sl__ws_close takes op away.
 * Every instance opened with it (the task's, one adopted from a
 * checkpoint, a checkpoint opened read-only) holds a reference, and so
 * does its owner until it takes op away (merger_take). */
typedef struct ws_merger {
    pthread_mutex_t mu;
    win_op *op; /* NULL once closed */
    _Atomic int refs;
} ws_merger;

/* Folds a group's stored value and the parts written after it (merge
 * operands, oldest first) into one value: the states merged with
 * sl__agg_merge (sums add, distinct sets unite, ...). */
static int merge_group(void *arg, const char *base, size_t blen, const char *const *ops,
                       const size_t *olen, int n, sl__buf *out)
{
    ws_merger *m = arg;
    pthread_mutex_lock(&m->mu);
    win_op *op = m->op;
    if (!op || n < 1) {
        pthread_mutex_unlock(&m->mu);
        return SL_EINVAL;
    }
    uint8_t *acc = sl__xcalloc(2, op->grp_size), *tmp = acc + op->grp_size;
    int i = 0, rc;
    if (base) rc = read_value(op, acc, base, blen);
    else rc = read_value(op, acc, ops[i++], olen[0]);
    for (; rc == 0 && i < n; i++) {
        memset(tmp, 0, op->grp_size);
        rc = read_value(op, tmp, ops[i], olen[i]);
        for (size_t a = 0; rc == 0 && a < op->naggs; a++) sl__agg_merge(&op->aggs[a], acc, tmp);
        free_states(op, tmp);
    }
    if (rc == 0) put_value(op, acc, out);
    free_states(op, acc);
    free(acc);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static void merger_free(void *arg)
{
    ws_merger *m = arg;
    if (atomic_fetch_sub(&m->refs, 1) != 1) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* Whether every aggregate's states merge (a UDAF may not). */
static bool can_merge(const win_op *op)
{
    for (size_t a = 0; a < op->naggs; a++)
        if (op->aggs[a].kind == SL_AGG_UDAF && !op->aggs[a].udaf->merge) return false;
    return true;
}

/* A merger of op, one reference held by the caller; NULL when op's states
 * do not merge (then nothing is ever written as a merge operand). */
static ws_merger *merger_new(win_op *op)
{
    if (!can_merge(op)) return NULL;
    ws_merger *m = sl__xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->op = op;
    atomic_init(&m->refs, 1);
    return m;
}

/* The merge operator of an open, holding a new reference on m; every
 * open of a window's RocksDB instance gets one, read-only opens included,
 * since any instance or checkpoint may hold merge operands. */
static sl__ks_merger merger_ref(ws_merger *m)
{
    if (!m) return (sl__ks_merger){0};
    atomic_fetch_add(&m->refs, 1);
    return (sl__ks_merger){.fn = merge_group, .arg = m, .arg_free = merger_free};
}

/* Takes op away from m (RocksDB may still hold it) and drops the owner's
 * reference. */
static void merger_take(ws_merger *m)
{
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->op = NULL;
    pthread_mutex_unlock(&m->mu);
    merger_free(m);
}

/* Blind writes need every aggregate's states to merge, and no TTL (an
 * expired stored part must not join a fresh group). */
static bool can_write_blind(const win_op *op)
{
    return !op->ttl && can_merge(op);
}

int sl__ws_open(win_op *op, const sl__state_conf *sc, char *errstr, size_t errsz)
{
    op->ttl = sc ? sc->ttl_ms : 0;
    if (!sc || sc->backend != SL__STATE_ROCKSDB) return 0;
    sl__winstore *ws = sl__xcalloc(1, sizeof *ws);
    atomic_init(&ws->wm, SL_TS_MIN);
    ws->ttl = op->ttl;
    int ntasks = op->ctx && op->ctx->ntasks > 0 ? op->ctx->ntasks : 1;
    /* the cache's share is 1/8, split between the window tasks; an
     * eviction rebuilds the map (EVICT_KEEP of the budget) beside the old
     * one, so the budget is the share less that: the peak fits the share */
    int64_t shares = sl__state_shares(sc->memory_bound);
    ws->budget = (size_t)((double)shares / 8.0 / ntasks / (1.0 + EVICT_KEEP));
    if (ws->budget < 4096) ws->budget = 4096;
    ws->heap_per_group = 64;
    /* firing trims the heap after every 1/16 of the shares it scanned (a
     * small window's firing does not trim: the reference job fires
     * 270 k of them) */
    ws->trim_every = (uint64_t)(shares / 16 > (64 << 10) ? shares / 16 : (64 << 10));
    snprintf(ws->dir, sizeof ws->dir, "%s", sc->dir);
    /* a flush writes one memtable (1/32 of the shares, at most 32 MiB:
     * rocks.c); twice that, to be safe */
    ws->reserve = (uint64_t)(shares / 16 < (64 << 20) ? shares / 16 : (64 << 20));
    char msg[512];
    if (sc->incremental) {
        ws->own = true;
        ws->sc = *sc;
        ws->wbuf = shares / 16 / ntasks;
        static _Atomic unsigned seq;
        snprintf(ws->odir, sizeof ws->odir, "%s/win-%d-%d-%u", sc->dir,
                 op->ctx ? op->ctx->stage : 0, op->ctx ? op->ctx->task : 0,
                 atomic_fetch_add(&seq, 1));
        uint64_t r[2] = {0, 0};
        if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            r[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
            r[1] = (uint64_t)(uintptr_t)ws;
        }
        snprintf(ws->id, sizeof ws->id, "%016llx%016llx", (unsigned long long)r[0],
                 (unsigned long long)r[1]);
        ws->nkgs = op->key_groups > 1 ? (uint32_t)op->key_groups : 1;
        ws->kgs = sl__xcalloc(ws->nkgs, 1);
        /* merge-aware, as are its checkpoints' opens (adopt, import_open) */
        ws->blind = can_write_blind(op);
        ws->merger = merger_new(op);
        sl__ks_merger m = merger_ref(ws->merger);
        ws->ks = sl__ks_open_own(sc, ws->odir, true, ws->wbuf, op->ttl ? ttl_drop : NULL,
                                 ws, &m, msg, sizeof msg);
    } else if ((ws->blind = can_write_blind(op))) {
        ws->merger = merger_new(op);
        sl__ks_merger m = merger_ref(ws->merger);
        ws->ks = sl__ks_open_merging(sc, NULL, NULL, m.fn, m.arg, m.arg_free, msg,
                                     sizeof msg);
    } else {
        ws->ks = sl__ks_open_filtered(sc, op->ttl ? ttl_drop : NULL, ws, msg, sizeof msg);
    }
    if (!ws->ks) {
        merger_take(ws->merger);
        free(ws->kgs);
        free(ws);
        return sl__err(errstr, errsz, SL_EIO, "window: %s", msg);
    }
    op->ws = ws;
    op->fgrp = sl__xcalloc(1, op->grp_size);
    return 0;
}

void sl__ws_close(win_op *op)
{
    sl__winstore *ws = op->ws;
    if (!ws) return;
    sl__log(SL__LOG_INFO, "window", "window state on RocksDB",
            "task=%d peak_sst_bytes=%llu cache_writeouts=%llu bytes_written=%llu "
            "cache_budget=%zu groups_evicted=%llu groups_read_back=%llu "
            "groups_written_blind=%llu cache_hits=%llu "
            "peak_table_readers=%llu peak_memtables=%llu peak_block_cache=%llu "
            "peak_pinned=%llu",
            op->ctx ? op->ctx->task : 0, (unsigned long long)ws->peak_disk,
            (unsigned long long)ws->writeouts, (unsigned long long)ws->written, ws->budget,
            (unsigned long long)ws->evicted, (unsigned long long)ws->loads,
            (unsigned long long)ws->blind_writes, (unsigned long long)ws->hits,
            (unsigned long long)ws->peak_readers,
            (unsigned long long)ws->peak_memtables, (unsigned long long)ws->peak_cache,
            (unsigned long long)ws->peak_pinned);
    char msg[64];
    (void)sl__ks_iter_free(ws->fit, msg, sizeof msg); /* a firing cut short */
    merger_take(ws->merger); /* RocksDB frees it when it lets go of it too */
    sl__ks_drop(ws->ks);
    free(ws->inh);
    free(ws->adopted);
    free(ws->kgs);
    sl__buf_free(&ws->kb);
    sl__buf_free(&ws->vb);
    free(ws->koff);
    free(ws->voff);
    free(ws->kmerge);
    free(ws);
    free(op->fgrp);
    op->ws = NULL;
}

uint64_t sl__window_store_keys(const void *st)
{
    const win_op *op = st;
    return op->ws ? sl__ks_count(op->ws->ks) : 0;
}

uint64_t sl__window_store_blind_writes(const void *st)
{
    const win_op *op = st;
    return op->ws ? op->ws->blind_writes : 0;
}

int sl__window_store_compact(const void *st)
{
    const win_op *op = st;
    char msg[256];
    return op->ws ? sl__ks_compact(op->ws->ks, msg, sizeof msg) : 0;
}

uint64_t sl__ws_count_groups(const win_op *op, win *w)
{
    uint64_t n = sl__bmap_count(&w->groups);
    if (!w->in_store) return n;
    uint8_t lo[8];
    put_end(lo, w->end);
    sl__ks_iter *it = sl__ks_iter_new(op->ws->ks);
    for (sl__ks_iter_seek(it, lo, 8); sl__ks_iter_valid(it); sl__ks_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)sl__ks_iter_key(it, &kl);
        if (kl < KEY_HEAD || memcmp(k, lo, 8) != 0) break;
        const char *v = sl__ks_iter_value(it, &vl);
        if (op->ts_off && sl__ttl_expired(op, op->wm, value_ts(v, vl))) continue;
        uint32_t len = (uint32_t)(kl - KEY_HEAD);
        if (!sl__bmap_find(&w->groups, k + KEY_HEAD, len,
                           sl__wkey_hash(&op->kl, k + KEY_HEAD, len)))
            n++;
    }
    char msg[64];
    (void)sl__ks_iter_free(it, msg, sizeof msg);
    return n;
}

/* ---- writing out -------------------------------------------------------- */
/* Room for one more queued write or deletion. */
static void ops_reserve(sl__winstore *ws)
{
    if (ws->nops < ws->cops) return;
    ws->cops = ws->cops ? ws->cops * 2 : 256;
    ws->koff = sl__xrealloc(ws->koff, ws->cops * sizeof *ws->koff);
    ws->voff = sl__xrealloc(ws->voff, ws->cops * sizeof *ws->voff);
    ws->kmerge = sl__xrealloc(ws->kmerge, ws->cops);
}

static void batch_add(win_op *op, int64_t end, const uint8_t *key, uint32_t len,
                      const uint8_t *grp)
{
    sl__winstore *ws = op->ws;
    ops_reserve(ws);
    ws->kmerge[ws->nops] = (*grp_mark(op, (uint8_t *)grp) & MARK_PARTIAL) != 0;
    ws->blind_writes += ws->kmerge[ws->nops];
    uint8_t head[KEY_HEAD];
    int32_t kg = sl__grp_kg(op, grp);
    make_key(head, end, kg, key, 0);
    if (ws->kgs && kg >= 0 && (uint32_t)kg < ws->nkgs) ws->kgs[kg] = 1;
    ws->koff[ws->nops] = ws->kb.len;
    sl__buf_put(&ws->kb, head, KEY_HEAD);
    sl__buf_put(&ws->kb, key, len);
    ws->voff[ws->nops] = ws->vb.len;
    put_value(op, grp, &ws->vb);
    ws->nops++;
}

static int batch_write(win_op *op)
{
    sl__winstore *ws = op->ws;
    if (!ws->nops) return 0;
    sl__ks_op *ops = sl__xmalloc(ws->nops * sizeof *ops);
    size_t kend = ws->kb.len, vend = ws->vb.len; /* where op i's bytes end */
    for (size_t i = ws->nops; i-- > 0;) {
        ops[i] = (sl__ks_op){.key = (const char *)ws->kb.p + ws->koff[i],
                             .klen = kend - ws->koff[i]};
        kend = ws->koff[i];
        if (ws->voff[i] == SIZE_MAX) continue; /* a delete */
        ops[i].val = (const char *)ws->vb.p + ws->voff[i];
        ops[i].vlen = vend - ws->voff[i];
        ops[i].merge = ws->kmerge[i];
        vend = ws->voff[i];
    }
    /* A full disk is refused here, before RocksDB meets it: Debian's
     * RocksDB 7.8 aborts on an assertion when a flush fails with ENOSPC
     * and a later write follows (docs/state.md). */
    struct statvfs fs;
    uint64_t need = ws->kb.len + ws->vb.len + ws->reserve;
    if (statvfs(ws->dir, &fs) == 0 && (uint64_t)fs.f_bavail * fs.f_frsize < need) {
        free(ops);
        ws->nops = 0;
        ws->kb.len = ws->vb.len = 0;
        return sl__job_fail(op->ctx ? op->ctx->job : NULL, SL_EIO,
                            "window: state.rocksdb.dir: %s: %s (%llu bytes free; "
                            "RocksDB needs %llu to write the window state out)",
                            ws->dir, strerror(ENOSPC),
                            (unsigned long long)fs.f_bavail * fs.f_frsize,
                            (unsigned long long)need);
    }
    char msg[512];
    ws->touched = true;
    int rc = sl__ks_write(ws->ks, ops, ws->nops, msg, sizeof msg);
    free(ops);
    ws->nops = 0;
    ws->kb.len = ws->vb.len = 0;
    if (ws->kb.cap > 4 * WRITE_CHUNK) sl__buf_free(&ws->kb); /* a large value */
    if (ws->vb.cap > 4 * WRITE_CHUNK) sl__buf_free(&ws->vb);
    if (rc)
        return sl__job_fail(op->ctx ? op->ctx->job : NULL, rc, "window: %s", msg);
    return 0;
}

/* Queues the deletion of a key of the store (batch_write applies it). */
static void batch_del(win_op *op, const uint8_t *key, size_t len)
{
    sl__winstore *ws = op->ws;
    ops_reserve(ws);
    ws->koff[ws->nops] = ws->kb.len;
    sl__buf_put(&ws->kb, key, len);
    ws->kmerge[ws->nops] = 0;
    ws->voff[ws->nops++] = SIZE_MAX;
}

/* Writes every cached group of w to the store; drop: then empties the
 * map (the window is spilled). Expired groups are dropped, not written. */
static int evict_window(win_op *op, win *w, bool partial_only, uint64_t *extra,
                        size_t *bytes, double *ser, uint64_t *evicted);

static int write_window(win_op *op, win *w, int64_t now, bool drop, size_t *bytes)
{
    sl__winstore *ws = op->ws;
    int rc = 0;
    if (!drop && ws->blind) {
        /* a partial group written as a merge operand must leave the map:
         * written again later, its part would count twice */
        uint64_t extra = 0, evicted = 0;
        size_t b = 0;
        double ser = 0;
        if ((rc = evict_window(op, w, true, &extra, &b, &ser, &evicted)) != 0) return rc;
    }
    uint32_t n = sl__bmap_count(&w->groups);
    for (uint32_t g = 0; g < n && rc == 0; g++) {
        const uint8_t *key;
        uint32_t len;
        uint8_t *grp = sl__bmap_at(&w->groups, g, &key, &len);
        if (op->ts_off && sl__ttl_expired(op, now, sl__grp_ts(op, grp))) {
            if (drop) op->st.expired_groups++;
            continue; /* invariant 4; any older copy expires with it */
        }
        size_t before = ws->vb.len;
        batch_add(op, w->end, key, len, grp);
        if (bytes) *bytes += ws->vb.len - before;
        if (ws->kb.len + ws->vb.len >= WRITE_CHUNK) rc = batch_write(op);
    }
    if (rc == 0) rc = batch_write(op);
    if (rc) return rc;
    if (n) w->in_store = true;
    if (drop) {
        for (uint32_t g = 0; g < n; g++) free_states(op, sl__bmap_at(&w->groups, g, NULL, NULL));
        op->ngroups -= n;
        sl__bmap_clear(&w->groups);
        if (n) w->spilled = true;
    }
    return 0;
}

/* Rebuilds w's map without the groups it evicts, which it writes to the
 * store: unreferenced ones (cold), and referenced ones while *extra > 0
 * (counting it down); the marks of the groups it keeps are cleared, so a
 * group must be used again before the next eviction to stay (CLOCK).
 * Expired groups are dropped, not written. Adds the serialised bytes of
 * every group seen to *ser and of those written to *bytes. */
/* Whether a group with these marks goes: the partial ones only, or the
 * unmarked ones and then marked ones while *extra lasts (counted down). */
static bool evicts(uint8_t mark, bool partial_only, uint64_t *extra)
{
    if (partial_only) return (mark & MARK_PARTIAL) != 0;
    if (!(mark & MARK_REF)) return true;
    if (*extra == 0) return false;
    (*extra)--;
    return true;
}

static int evict_window(win_op *op, win *w, bool partial_only, uint64_t *extra,
                        size_t *bytes, double *ser, uint64_t *evicted)
{
    sl__winstore *ws = op->ws;
    uint32_t n = sl__bmap_count(&w->groups), gone = 0;
    if (!n) return 0;
    sl__bmap fresh;
    sl__bmap_init(&fresh, op->grp_size);
    int rc = 0;
    for (uint32_t g = 0; g < n; g++) {
        const uint8_t *key;
        uint32_t len;
        uint8_t *grp = sl__bmap_at(&w->groups, g, &key, &len);
        size_t sz = 0;
        for (size_t a = 0; a < op->naggs; a++) sz += sl__agg_serialized_size(&op->aggs[a], grp);
        *ser += (double)sz;
        uint8_t *mark = grp_mark(op, grp);
        bool out = rc == 0 && evicts(*mark, partial_only, extra);
        if (out && op->ts_off && sl__ttl_expired(op, op->wm, sl__grp_ts(op, grp))) {
            op->st.expired_groups++; /* invariant 4; any older copy expires with it */
        } else if (out) {
            size_t before = ws->vb.len;
            batch_add(op, w->end, key, len, grp);
            *bytes += ws->vb.len - before;
            if (ws->kb.len + ws->vb.len >= WRITE_CHUNK) rc = batch_write(op);
        }
        if (out) {
            free_states(op, grp);
            gone++;
            continue;
        }
        if (!partial_only) *mark &= (uint8_t)~MARK_REF;
        bool isnew;
        uint8_t *d = sl__bmap_upsert(&fresh, key, len, sl__bmap_hash_at(&w->groups, g), &isnew);
        memcpy(d, grp, op->grp_size); /* the states move */
    }
    if (rc == 0) rc = batch_write(op);
    sl__bmap_close(&w->groups);
    w->groups = fresh;
    op->ngroups -= gone;
    *evicted += gone;
    if (gone) w->in_store = w->spilled = true;
    return rc;
}

/* When the cache holds more than its budget, evicts groups until about
 * EVICT_KEEP of the budget is left: the groups not used since the last
 * eviction first (all of them), then, if that is not enough, used ones
 * from the oldest windows, which fire first and are written then anyway. */
int sl__ws_maybe_evict(win_op *op)
{
    sl__winstore *ws = op->ws;
    if (!ws) return 0;
    atomic_store_explicit(&ws->wm, op->wm, memory_order_relaxed);
    size_t mem = 0;
    for (size_t i = 0; i < op->nw; i++) mem += sl__bmap_mem(&op->wins[i]->groups);
    double have = (double)mem + ws->heap_per_group * (double)op->ngroups;
    atomic_fetch_add(&sl__memprof_wincache, (int64_t)have - ws->noted);
    ws->noted = (int64_t)have;
    if (have <= (double)ws->budget || op->ngroups == 0) return 0;
    /* how many groups must go, at the average size, and how many are cold */
    uint64_t n = op->ngroups, cold = 0;
    double keep = (double)ws->budget * EVICT_KEEP;
    uint64_t need = (uint64_t)((double)n * (1.0 - keep / have)) + 1;
    for (size_t i = 0; i < op->nw; i++) {
        win *w = op->wins[i];
        uint32_t c = sl__bmap_count(&w->groups);
        for (uint32_t g = 0; g < c; g++)
            cold += !(*grp_mark(op, sl__bmap_at(&w->groups, g, NULL, NULL)) & MARK_REF);
    }
    uint64_t extra = need > cold ? need - cold : 0, evicted = 0;
    size_t bytes = 0;
    double ser = 0;
    for (size_t i = 0; i < op->nw; i++) {
        int rc = evict_window(op, op->wins[i], false, &extra, &bytes, &ser, &evicted);
        if (rc) return rc;
    }
    ws->heap_per_group = ser / (double)n;
    op->st.spills++;
    ws->writeouts++;
    ws->written += bytes;
    ws->evicted += evicted;
    sl__ks_trim();
    uint64_t d = sl__ks_disk_bytes(ws->ks);
    if (d > ws->peak_disk) ws->peak_disk = d;
    /* RocksDB's own figures, for the memory tuning notes (docs/state.md) */
    d = sl__ks_property(ws->ks, "rocksdb.estimate-table-readers-mem");
    if (d > ws->peak_readers) ws->peak_readers = d;
    d = sl__ks_property(ws->ks, "rocksdb.cur-size-all-mem-tables");
    if (d > ws->peak_memtables) ws->peak_memtables = d;
    d = sl__ks_property(NULL, "rocksdb.block-cache-usage");
    if (d > ws->peak_cache) ws->peak_cache = d;
    d = sl__ks_property(NULL, "rocksdb.block-cache-pinned-usage");
    if (d > ws->peak_pinned) ws->peak_pinned = d;
    return 0;
}

/* ---- reading back ------------------------------------------------------------ */
int sl__ws_load(win_op *op, uint32_t np)
{
    sl__winstore *ws = op->ws;
    if (!ws) return 0;
    uint32_t n = 0;
    for (uint32_t p = 0; p < np; p++) {
        if (!op->pfresh[p]) *grp_mark(op, op->pgrp[p]) |= MARK_REF; /* used again */
        else if (ws->blind && op->pwin[p]->spilled)
            *grp_mark(op, op->pgrp[p]) = MARK_PARTIAL; /* not read back */
        n += op->pfresh[p] && op->pwin[p]->spilled;
    }
    ws->hits += np - n;
    if (!n || ws->blind) return 0;
    size_t klen_total = 0;
    for (uint32_t p = 0; p < np; p++)
        if (op->pfresh[p] && op->pwin[p]->spilled)
            klen_total += KEY_HEAD + op->klen[op->pkey[p]];
    uint8_t *kbuf = sl__xmalloc(klen_total);
    const char **keys = sl__xmalloc(n * sizeof *keys);
    size_t *kl = sl__xmalloc(n * sizeof *kl), *vl = sl__xmalloc(n * sizeof *vl);
    char **vals = sl__xcalloc(n, sizeof *vals);
    uint32_t *pair = sl__xmalloc(n * sizeof *pair);
    size_t used = 0;
    uint32_t i = 0;
    for (uint32_t p = 0; p < np; p++) {
        if (!op->pfresh[p] || !op->pwin[p]->spilled) continue;
        uint32_t j = op->pkey[p];
        keys[i] = (const char *)kbuf + used;
        kl[i] = make_key(kbuf + used, op->pwin[p]->end, sl__grp_kg(op, op->pgrp[p]),
                         op->kbuf + op->koff[j], op->klen[j]);
        used += kl[i];
        pair[i++] = p;
    }
    char msg[512];
    int rc = sl__ks_multi_get(ws->ks, n, keys, kl, vals, vl, msg, sizeof msg);
    if (rc) rc = sl__job_fail(op->ctx ? op->ctx->job : NULL, rc, "window: %s", msg);
    for (i = 0; i < n; i++) {
        if (rc == 0 && vals[i]) {
            uint8_t *grp = op->pgrp[pair[i]];
            if (op->ts_off && sl__ttl_expired(op, op->wm, value_ts(vals[i], vl[i]))) {
                op->st.expired_groups++; /* starts afresh (invariant 4) */
            } else if (read_value(op, grp, vals[i], vl[i])) {
                rc = sl__job_fail(op->ctx ? op->ctx->job : NULL, SL_ECORRUPT,
                                  "window: a group in RocksDB does not parse");
            } else {
                *grp_mark(op, grp) |= MARK_REF; /* evicted, and used again */
                ws->loads++;
            }
        }
        sl__ks_value_free(vals[i]);
    }
    free(kbuf);
    free(keys);
    free(kl);
    free(vl);
    free(vals);
    free(pair);
    return rc;
}

int sl__ws_merge_restored(win_op *op, win *w, const uint8_t *key, uint32_t len,
                          uint8_t *grp)
{
    if (!op->ws || !w->spilled) return 0;
    uint8_t *k = sl__xmalloc(KEY_HEAD + len);
    size_t kl = make_key(k, w->end, sl__grp_kg(op, grp), key, len), vl = 0;
    const char *keys[1] = {(const char *)k};
    char *val = NULL, msg[512];
    int rc = sl__ks_multi_get(op->ws->ks, 1, keys, &kl, &val, &vl, msg, sizeof msg);
    free(k);
    if (rc == 0 && val) {
        uint8_t *tmp = sl__xcalloc(1, op->grp_size);
        rc = read_value(op, tmp, val, vl);
        if (rc == 0) {
            for (size_t a = 0; a < op->naggs; a++) sl__agg_merge(&op->aggs[a], grp, tmp);
            if (op->ts_off && sl__grp_ts(op, tmp) > sl__grp_ts(op, grp))
                sl__grp_set_ts(op, grp, sl__grp_ts(op, tmp));
        }
        free_states(op, tmp);
        free(tmp);
    }
    sl__ks_value_free(val);
    return rc;
}

int sl__ws_load_window(win_op *op, win *w)
{
    if (!w->spilled) return 0;
    uint8_t lo[8];
    put_end(lo, w->end);
    sl__ks_iter *it = sl__ks_iter_new(op->ws->ks);
    int rc = 0;
    for (sl__ks_iter_seek(it, lo, 8); rc == 0 && sl__ks_iter_valid(it); sl__ks_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)sl__ks_iter_key(it, &kl);
        if (kl < KEY_HEAD || memcmp(k, lo, 8) != 0) break;
        const char *v = sl__ks_iter_value(it, &vl);
        if (op->ts_off && sl__ttl_expired(op, w->fire, value_ts(v, vl))) {
            op->st.expired_groups++;
            continue;
        }
        bool fresh;
        uint8_t *grp = sl__bmap_upsert(&w->groups, k + KEY_HEAD, (uint32_t)(kl - KEY_HEAD),
                                       sl__wkey_hash(&op->kl, k + KEY_HEAD,
                                                     (uint32_t)(kl - KEY_HEAD)),
                                       &fresh);
        if (!fresh && (*grp_mark(op, grp) & MARK_PARTIAL)) {
            /* blind mode: the stored part joins the cached one */
            uint8_t *tmp = sl__xcalloc(1, op->grp_size);
            if (read_value(op, tmp, v, vl)) rc = SL_ECORRUPT;
            else
                for (size_t a = 0; a < op->naggs; a++) sl__agg_merge(&op->aggs[a], grp, tmp);
            free_states(op, tmp);
            free(tmp);
            *grp_mark(op, grp) &= (uint8_t)~MARK_PARTIAL;
            continue;
        }
        if (!fresh) continue; /* the cached copy is newer (invariant 1) */
        op->ngroups++;
        int32_t kg = key_kg(k);
        memcpy(grp + op->state_size, &kg, sizeof kg);
        if (read_value(op, grp, v, vl)) rc = SL_ECORRUPT;
    }
    char msg[512];
    int irc = sl__ks_iter_free(it, msg, sizeof msg);
    if (rc == 0 && irc) rc = irc;
    if (rc) return sl__job_fail(op->ctx ? op->ctx->job : NULL, rc, "window: reading a "
                                "window back from RocksDB failed");
    w->spilled = false;
    return 0;
}

/* Point deletes, not a range delete: RocksDB 7.8 fragments every range
 * tombstone of the memtable again for each new iterator and multi-get,
 * which made firing quadratic in the windows fired (measured: 8x slower
 * on a hop window). Firing scans the keys anyway. */
int sl__ws_forget(win_op *op, win *w)
{
    if (!op->ws || !w->in_store) return 0;
    uint8_t lo[8];
    put_end(lo, w->end);
    sl__ks_iter *it = sl__ks_iter_new(op->ws->ks);
    int rc = 0;
    for (sl__ks_iter_seek(it, lo, 8); rc == 0 && sl__ks_iter_valid(it); sl__ks_iter_next(it)) {
        size_t kl;
        const uint8_t *k = (const uint8_t *)sl__ks_iter_key(it, &kl);
        if (kl < 8 || memcmp(k, lo, 8) != 0) break;
        batch_del(op, k, kl);
        if (op->ws->kb.len >= WRITE_CHUNK) rc = batch_write(op);
    }
    char msg[512];
    int irc = sl__ks_iter_free(it, msg, sizeof msg);
    if (rc == 0) rc = batch_write(op);
    if (rc) return rc;
    if (irc) return sl__job_fail(op->ctx ? op->ctx->job : NULL, irc, "window: %s", msg);
    w->in_store = w->spilled = false;
    return 0;
}

/* Emits a window's groups straight from a scan (the cached ones written
 * out first): one row per group, by key group then key, whatever was
 * cached, so the order does not depend on when the cache spilled. After
 * FIRE_BATCHES full output batches it answers SL__MORE, keeping its
 * iterator, and the runtime calls again once they are delivered
 * (invariant 5): the firing's output never queues more than that. */
int sl__ws_fire(win_op *op, win *w, sl__out *out, sl_batch **ob, uint32_t cap)
{
    sl__winstore *ws = op->ws;
    int rc = 0;
    uint8_t lo[8];
    put_end(lo, w->end);
    if (!op->ws_firing) {
        if ((rc = write_window(op, w, w->fire, true, NULL)) != 0) return rc;
        ws->fit = sl__ks_iter_new(ws->ks);
        sl__ks_iter_seek(ws->fit, lo, 8);
        ws->fng = ws->fsup = 0;
        op->ws_firing = true;
    }
    sl__ks_iter *it = ws->fit;
    uint8_t *grp = op->fgrp;
    uint32_t emitted = 0;
    while (rc == 0 && emitted < FIRE_BATCHES && sl__ks_iter_valid(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)sl__ks_iter_key(it, &kl);
        if (kl < KEY_HEAD || memcmp(k, lo, 8) != 0) break;
        const char *v = sl__ks_iter_value(it, &vl);
        ws->churn += kl + vl;
        batch_del(op, k, kl); /* the iterator reads a snapshot */
        if (ws->kb.len >= WRITE_CHUNK && (rc = batch_write(op)) != 0) break;
        if (op->ts_off && sl__ttl_expired(op, w->fire, value_ts(v, vl))) {
            op->st.expired_groups++;
            sl__ks_iter_next(it);
            continue;
        }
        memset(grp, 0, op->grp_size);
        if (read_value(op, grp, v, vl)) {
            rc = SL_ECORRUPT;
            break;
        }
        ws->fng++;
        int64_t cnt;
        if (op->conf->has_min &&
            sl__agg_exact_count(&op->aggs[op->conf->min_agg], grp, &cnt) &&
            cnt < op->conf->min_count) {
            ws->fsup++;
            free_states(op, grp);
            sl__ks_iter_next(it);
            continue;
        }
        if (!*ob && !(*ob = sl__batch_new(op->out, cap))) rc = SL_ENOMEM;
        sl_batch *b = *ob;
        uint32_t r = b ? b->n : 0;
        if (rc == 0) {
            ((int64_t *)b->cols[0].data)[r] = w->start;
            ((int64_t *)b->cols[1].data)[r] = w->end;
            b->cols[0].valid[r] = b->cols[1].valid[r] = 1;
            sl__wkey_decode(&op->kl, k + KEY_HEAD, (uint32_t)(kl - KEY_HEAD), b, r);
            for (size_t a = 0; a < op->naggs && rc == 0; a++)
                rc = sl__agg_result(&op->aggs[a], grp, b, 2 + op->nkey + (int)a, r);
        }
        free_states(op, grp);
        if (rc) break;
        b->kind[r] = SL_KIND_DATA;
        b->n = r + 1;
        sl__ks_iter_next(it);
        if (b->n == b->cap) {
            *ob = NULL;
            rc = sl__emit(out, b);
            emitted++;
        }
    }
    /* the scan's blocks, its deletes' memtables and the compactions they
     * cause churn the heap as the evictions do: its free pages go back at
     * every 1/16 of the shares scanned (measured: 6.5 MiB of free heap
     * resident at the end of a firing without it, bench/RESULTS.md) */
    if (ws->churn >= ws->trim_every) {
        sl__ks_trim();
        ws->churn = 0;
    }
    if (rc == 0 && emitted == FIRE_BATCHES) return SL__MORE; /* deletes stay queued */
    char msg[512];
    int irc = sl__ks_iter_free(it, msg, sizeof msg);
    ws->fit = NULL;
    op->ws_firing = false;
    if (rc == 0) rc = batch_write(op);
    else ws->nops = ws->kb.len = ws->vb.len = 0;
    if (rc == SL_ECORRUPT)
        return sl__job_fail(op->ctx ? op->ctx->job : NULL, rc,
                            "window: a group in RocksDB does not parse");
    if (rc == 0 && irc)
        return sl__job_fail(op->ctx ? op->ctx->job : NULL, irc, "window: %s", msg);
    if (rc) return rc;
    if (ws->fsup) sl__count(op->ctx, SL__CTR_SUPPRESSED, ws->fsup);
    op->st.fired_windows++;
    op->st.fired_groups += ws->fng;
    sl__count(op->ctx, SL__CTR_WINDOWS_FIRED, ws->fng);
    w->in_store = w->spilled = false; /* every key deleted (invariant 3) */
    return 0;
}

/* ---- snapshots -------------------------------------------------------------- */
/* Appends the groups of one window and key group kg that iterator it (seeked
 * to the window's first key at or after kg) reads, in window.c's section
 * format: key, then the states and (with TTL) the newest record's time.
 * Groups expired at watermark wm are skipped; *ng counts those put. */
static int put_groups(const win_op *op, sl__ks_iter *it, const uint8_t *end8,
                      int32_t kg, int64_t wm, sl__buf *b, uint32_t *ng)
{
    for (; sl__ks_iter_valid(it); sl__ks_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)sl__ks_iter_key(it, &kl);
        if (kl < KEY_HEAD || memcmp(k, end8, 8) != 0 || key_kg(k) != kg) break;
        const char *v = sl__ks_iter_value(it, &vl);
        if (vl < 8) return SL_ECORRUPT;
        if (op->ts_off && sl__ttl_expired(op, wm, value_ts(v, vl))) continue;
        sl__buf_put_str(b, (const char *)k + KEY_HEAD, kl - KEY_HEAD);
        sl__buf_put_str(b, v, op->ts_off ? vl : vl - 8);
        (*ng)++;
    }
    return 0;
}

/* One iterator per open window, merged by key group: each key group's
 * section lists its windows by start, each window's groups by key, as
 * window.c's format wants. */
static int snapshot_incremental(win_op *op, sl__snap_writer *sw, sl__buf *b);

int sl__ws_snapshot(win_op *op, sl__snap_writer *sw, sl__buf *b, uint32_t magic)
{
    int rc = 0;
    /* incremental: the cache is written out and emptied, as an eviction
     * does, so the next checkpoint writes only the groups touched since
     * (those read back or new), not the whole cache again */
    bool inc = op->ws->own && sw->ck_dir && sw->ck_root;
    for (size_t i = 0; i < op->nw && rc == 0; i++)
        rc = write_window(op, op->wins[i], op->wm, inc, NULL);
    if (rc) return rc;
    if (inc) {
        rc = snapshot_incremental(op, sw, b);
        sl__ks_trim(); /* the write-out's and the flush's churn, as an eviction's */
        return rc;
    }
    size_t nw = op->nw;
    sl__ks_iter **its = sl__xcalloc(nw ? nw : 1, sizeof *its);
    uint8_t (*pre)[8] = sl__xmalloc((nw ? nw : 1) * sizeof *pre);
    for (size_t i = 0; i < nw; i++) {
        its[i] = sl__ks_iter_new(op->ws->ks);
        put_end(pre[i], op->wins[i]->end);
        sl__ks_iter_seek(its[i], pre[i], 8);
    }
    for (;;) {
        int32_t kg = INT32_MAX; /* the lowest key group left in any window */
        for (size_t i = 0; i < nw; i++) {
            size_t kl;
            if (!sl__ks_iter_valid(its[i])) continue;
            const uint8_t *k = (const uint8_t *)sl__ks_iter_key(its[i], &kl);
            if (kl < KEY_HEAD || memcmp(k, pre[i], 8) != 0) continue;
            if (key_kg(k) < kg) kg = key_kg(k);
        }
        if (kg == INT32_MAX) break;
        b->len = 0;
        sl__buf_put_u32(b, magic);
        sl__buf_put_u64(b, op->fp);
        sl__buf_put_i64(b, op->wm);
        size_t nwin_at = b->len;
        uint32_t nwin = 0;
        sl__buf_put_u32(b, 0);
        for (size_t i = 0; i < nw; i++) {
            size_t win_at = b->len, ng_at;
            uint32_t ng = 0;
            sl__buf_put_i64(b, op->wins[i]->start);
            ng_at = b->len;
            sl__buf_put_u32(b, 0);
            rc = put_groups(op, its[i], pre[i], kg, op->wm, b, &ng);
            if (ng == 0) {
                b->len = win_at;
                continue;
            }
            put_le32(b->p + ng_at, ng);
            nwin++;
        }
        if (rc) break;
        if (nwin == 0) continue;
        put_le32(b->p + nwin_at, nwin);
        if ((rc = sl__snap_put(sw, kg, b->p, b->len)) < 0) break;
    }
    char msg[512];
    for (size_t i = 0; i < nw; i++) {
        int irc = sl__ks_iter_free(its[i], msg, sizeof msg);
        if (rc == 0 && irc) rc = irc;
    }
    free(its);
    free(pre);
    return rc;
}

/* ---- TTL in memory ------------------------------------------------------------ */
/* Rebuilds each open window's map without its expired groups. Called as
 * the watermark moves on, at most once per half TTL of event time. */
void sl__ws_sweep(win_op *op)
{
    if (!op->ttl) return;
    for (size_t i = 0; i < op->nw; i++) {
        win *w = op->wins[i];
        uint32_t n = sl__bmap_count(&w->groups), dead = 0;
        for (uint32_t g = 0; g < n; g++)
            dead += sl__ttl_expired(op, op->wm,
                                    sl__grp_ts(op, sl__bmap_at(&w->groups, g, NULL, NULL)));
        if (!dead) continue;
        sl__bmap fresh;
        sl__bmap_init(&fresh, op->grp_size);
        for (uint32_t g = 0; g < n; g++) {
            const uint8_t *key;
            uint32_t len;
            uint8_t *grp = sl__bmap_at(&w->groups, g, &key, &len);
            if (sl__ttl_expired(op, op->wm, sl__grp_ts(op, grp))) {
                free_states(op, grp);
                continue;
            }
            bool isnew;
            uint8_t *d = sl__bmap_upsert(&fresh, key, len, sl__bmap_hash_at(&w->groups, g),
                                         &isnew);
            memcpy(d, grp, op->grp_size); /* the states move */
        }
        sl__bmap_close(&w->groups);
        w->groups = fresh;
        op->ngroups -= dead;
        op->st.expired_groups += dead;
    }
}

/* ---- incremental checkpoints ------------------------------------------------ */
/* At its barrier the task's instance holds exactly its state (the cache was
 * just written out, nothing after the barrier has been processed), so a
 * RocksDB checkpoint of it taken now is the task's cut: no other task's
 * progress matters, as each window task has an instance of its own. Its
 * new SST files go to <checkpoint.dir>/shared (incr.c); the snapshot
 * carries, for each key group the task wrote, a reference section:
 *
 *   u32 REF_MAGIC, u64 fingerprint, i64 watermark, u32 tasks, u32 task,
 *   str rdb directory (absolute), u32 CRC-32 of its FILES, u32 windows,
 *   i64 start of each window with groups in the store
 *
 * Restore (sl__ws_restore_ref) opens the checkpoint when the layout is the
 * same, else reads the key group out of it into window.c's format. */
#define REF_MAGIC 0x464e5753u /* "SWNF" */

bool sl__ws_is_ref(const void *data, size_t len)
{
    const uint8_t *p = data;
    return len >= 4 && (uint32_t)(p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24) ==
                           REF_MAGIC;
}

static int snapshot_incremental(win_op *op, sl__snap_writer *sw, sl__buf *b)
{
    sl__winstore *ws = op->ws;
    char cut[1200], rdb[4400], msg[1024], abs[PATH_MAX];
    int stage = op->ctx ? op->ctx->stage : 0, task = op->ctx ? op->ctx->task : 0;
    snprintf(cut, sizeof cut, "%s.cut", ws->odir);
    /* absolute: a restore may run from another working directory */
    const char *ck = realpath(sw->ck_dir, abs) ? abs : sw->ck_dir;
    snprintf(rdb, sizeof rdb, "%s/rdb-%u-%d-%d", ck, sw->op_id, stage, task);
    sl__rmtree(cut);
    uint64_t t0 = sl__clock();
    int rc = sl__ks_checkpoint(ws->ks, cut, msg, sizeof msg);
    uint32_t crc = 0;
    if (rc == 0)
        rc = sl__ck_incr_put(cut, sw->ck_root, rdb, ws->id, ws->inh, ws->ninh, &ws->ck_new,
                             &ws->ck_total, &crc, msg, sizeof msg);
    sl__rmtree(cut);
    if (rc) {
        sl__log(SL__LOG_WARN, "window", "incremental checkpoint failed", "task=%d error=\"%s\"",
                task, msg);
        return rc;
    }
    sl__log(SL__LOG_DEBUG, "window", "incremental checkpoint", "task=%d new_bytes=%llu "
            "total_bytes=%llu ms=%llu", task, (unsigned long long)ws->ck_new,
            (unsigned long long)ws->ck_total,
            (unsigned long long)((sl__clock() - t0) / 1000000));
    int ntasks = op->ctx && op->ctx->ntasks > 0 ? op->ctx->ntasks : 1;
    for (uint32_t kg = 0; kg < ws->nkgs && rc == 0; kg++) {
        if (!ws->kgs[kg]) continue;
        b->len = 0;
        sl__buf_put_u32(b, REF_MAGIC);
        sl__buf_put_u64(b, op->fp);
        sl__buf_put_i64(b, op->wm);
        sl__buf_put_u32(b, (uint32_t)ntasks);
        sl__buf_put_u32(b, (uint32_t)task);
        sl__buf_put_str(b, rdb, strlen(rdb));
        sl__buf_put_u32(b, crc);
        size_t nw_at = b->len;
        uint32_t nw = 0;
        sl__buf_put_u32(b, 0);
        for (size_t i = 0; i < op->nw; i++) {
            if (!op->wins[i]->in_store) continue;
            sl__buf_put_i64(b, op->wins[i]->start);
            nw++;
        }
        put_le32(b->p + nw_at, nw);
        rc = sl__snap_put(sw, (int32_t)kg, b->p, b->len);
    }
    return rc < 0 ? rc : 0;
}

/* One reference section, parsed. */
typedef struct {
    int64_t wm;
    uint32_t ntasks, task, crc, nwin;
    char rdb[4400];
    const uint8_t *starts; /* nwin i64, little-endian, in the section */
} ws_ref;

static int ref_parse(const win_op *op, const void *data, size_t len, ws_ref *ref)
{
    sl__rbuf r = {.p = data, .len = len};
    uint32_t magic = sl__rbuf_u32(&r);
    uint64_t fp = sl__rbuf_u64(&r);
    ref->wm = sl__rbuf_i64(&r);
    ref->ntasks = sl__rbuf_u32(&r);
    ref->task = sl__rbuf_u32(&r);
    uint32_t pl;
    const char *p = sl__rbuf_str(&r, &pl);
    ref->crc = sl__rbuf_u32(&r);
    ref->nwin = sl__rbuf_u32(&r);
    if (r.err || magic != REF_MAGIC || pl == 0 || pl >= sizeof ref->rdb) return SL_ECORRUPT;
    if (fp != op->fp) return SL_EINVAL;
    memcpy(ref->rdb, p, pl);
    ref->rdb[pl] = 0;
    /* only ever <root>/chk-N/rdb-X: nothing else is opened or created */
    const char *base = strrchr(ref->rdb, '/');
    if (!base || strncmp(base + 1, "rdb-", 4) != 0 || strstr(ref->rdb, "/../") ||
        memchr(p, 0, pl))
        return SL_ECORRUPT;
    const char *par = base;
    while (par > ref->rdb && par[-1] != '/') par--;
    if (strncmp(par, "chk-", 4) != 0) return SL_ECORRUPT;
    ref->starts = sl__rbuf_bytes(&r, (size_t)ref->nwin * 8);
    if (!ref->starts || r.off != r.len) return SL_ECORRUPT;
    return 0;
}

static int64_t ref_start(const ws_ref *ref, uint32_t i)
{
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--) v = v << 8 | ref->starts[(size_t)i * 8 + (size_t)k];
    return (int64_t)v;
}

/* A checkpoint's instance opened read-only for reading key groups out of
 * it (another layout, or the memory backend); kept across the sections of
 * one restore, closed by sl__ws_close_import. */
struct sl__ws_import {
    char rdb[4400], tmp[4500];
    sl__ks *ks;
    ws_merger *merger; /* the checkpoint may hold merge operands */
};

void sl__ws_close_import(win_op *op)
{
    struct sl__ws_import *im = op->imp;
    if (!im) return;
    merger_take(im->merger);
    sl__ks_drop(im->ks);
    sl__rmtree(im->tmp);
    free(im);
    op->imp = NULL;
}

static int import_open(win_op *op, const ws_ref *ref, char *msg, size_t msz)
{
    struct sl__ws_import *im = op->imp;
    if (im && strcmp(im->rdb, ref->rdb) == 0) return 0;
    sl__ws_close_import(op);
    im = sl__xcalloc(1, sizeof *im);
    static _Atomic unsigned seq;
    snprintf(im->rdb, sizeof im->rdb, "%s", ref->rdb);
    /* beside the checkpoint's own directory, on the shared files' file
     * system, so the SST files are linked rather than copied */
    snprintf(im->tmp, sizeof im->tmp, "%s", ref->rdb);
    char *slash = strrchr(im->tmp, '/');
    if (slash) *slash = 0;
    size_t l = strlen(im->tmp);
    snprintf(im->tmp + l, sizeof im->tmp - l, "/imp-%ld-%u", (long)getpid(),
             atomic_fetch_add(&seq, 1));
    sl__rmtree(im->tmp);
    int rc = sl__ck_incr_rebuild(ref->rdb, ref->crc, im->tmp, NULL, NULL, msg, msz);
    if (rc == 0) {
        im->merger = merger_new(op); /* op, not op->ws: the memory backend reads too */
        sl__ks_merger m = merger_ref(im->merger); /* the open takes it, failed or not */
        if (!(im->ks = sl__ks_open_ro(im->tmp, &m, msg, msz))) rc = SL_EIO;
    }
    if (rc) {
        merger_take(im->merger);
        sl__rmtree(im->tmp);
        free(im);
        return rc;
    }
    op->imp = im;
    return 0;
}

/* Appends key group kg of the checkpoint's windows to b in window.c's
 * section format (header written by the caller). */
static int import_key_group(win_op *op, const ws_ref *ref, int32_t kg, sl__buf *b)
{
    struct sl__ws_import *im = op->imp;
    sl__ks_iter *it = sl__ks_iter_new(im->ks);
    size_t nwin_at = b->len;
    uint32_t nwin = 0;
    sl__buf_put_u32(b, 0);
    int rc = 0;
    for (uint32_t i = 0; i < ref->nwin && rc == 0; i++) {
        int64_t start = ref_start(ref, i), end;
        if (__builtin_add_overflow(start, op->size, &end)) {
            rc = SL_ECORRUPT;
            break;
        }
        uint8_t pre[KEY_HEAD];
        static const uint8_t none[1];
        make_key(pre, end, kg, none, 0);
        size_t win_at = b->len, ng_at;
        uint32_t ng = 0;
        sl__buf_put_i64(b, start);
        ng_at = b->len;
        sl__buf_put_u32(b, 0);
        sl__ks_iter_seek(it, pre, KEY_HEAD);
        rc = put_groups(op, it, pre, kg, ref->wm, b, &ng);
        if (ng == 0) {
            b->len = win_at;
            continue;
        }
        put_le32(b->p + ng_at, ng);
        nwin++;
    }
    char msg[256];
    int irc = sl__ks_iter_free(it, msg, sizeof msg);
    if (rc == 0 && irc) rc = irc;
    put_le32(b->p + nwin_at, nwin);
    return rc;
}

/* Takes the checkpoint's files as this task's instance: the same task of
 * the same layout, before anything else was restored into it. The files
 * are rebuilt in a new directory and opened before the empty instance is
 * dropped, so the process instance (whose first open empties the RocksDB
 * directory) stays open throughout. */
static int adopt(win_op *op, const ws_ref *ref, char *msg, size_t msz)
{
    sl__winstore *ws = op->ws;
    static _Atomic unsigned seq;
    char dir[sizeof ws->odir];
    snprintf(dir, sizeof dir, "%.1000s-a%u", ws->odir, atomic_fetch_add(&seq, 1));
    sl__rmtree(dir);
    sl__ck_inherit *inh = NULL;
    size_t ninh = 0;
    sl__ks *ks = NULL;
    int rc = sl__ck_incr_rebuild(ref->rdb, ref->crc, dir, &inh, &ninh, msg, msz);
    sl__ks_merger m = merger_ref(ws->merger);
    if (rc == 0 && !(ks = sl__ks_open_own(&ws->sc, dir, false, ws->wbuf,
                                          op->ttl ? ttl_drop : NULL, ws, &m, msg, msz)))
        rc = SL_EIO;
    else if (rc && m.arg_free) m.arg_free(m.arg);
    if (rc) {
        free(inh);
        sl__rmtree(dir);
        return rc;
    }
    sl__ks_drop(ws->ks); /* empty: nothing was written to it */
    ws->ks = ks;
    snprintf(ws->odir, sizeof ws->odir, "%s", dir);
    free(ws->inh);
    ws->inh = inh;
    ws->ninh = ninh;
    ws->adopted = sl__xstrdup(ref->rdb);
    return 0;
}

int sl__ws_restore_ref(win_op *op, int32_t kg, const void *data, size_t len,
                       uint32_t magic, sl__buf *out, int64_t **starts, uint32_t *nstarts,
                       int64_t *wm)
{
    ws_ref ref;
    int rc = ref_parse(op, data, len, &ref);
    if (rc) return rc;
    *wm = ref.wm;
    *starts = NULL;
    *nstarts = 0;
    out->len = 0;
    sl__winstore *ws = op->ws;
    char msg[1024] = "";
    int ntasks = op->ctx && op->ctx->ntasks > 0 ? op->ctx->ntasks : 1;
    int task = op->ctx ? op->ctx->task : 0;
    bool same = ws && ws->own && ref.ntasks == (uint32_t)ntasks && ref.task == (uint32_t)task;
    if (same && !ws->adopted && !ws->touched && op->ngroups == 0 &&
        (rc = adopt(op, &ref, msg, sizeof msg)) != 0) {
        sl__log(SL__LOG_WARN, "window", "cannot open the incremental checkpoint",
                "error=\"%s\"", msg);
        return rc;
    }
    if (ws && ws->adopted && strcmp(ws->adopted, ref.rdb) == 0) {
        if (kg >= 0 && (uint32_t)kg < ws->nkgs) ws->kgs[kg] = 1;
        *starts = sl__xmalloc((ref.nwin ? ref.nwin : 1) * sizeof **starts);
        for (uint32_t i = 0; i < ref.nwin; i++) (*starts)[i] = ref_start(&ref, i);
        *nstarts = ref.nwin;
        return 0;
    }
    if ((rc = import_open(op, &ref, msg, sizeof msg)) != 0) {
        sl__log(SL__LOG_WARN, "window", "cannot read the incremental checkpoint",
                "error=\"%s\"", msg);
        return rc;
    }
    sl__buf_put_u32(out, magic);
    sl__buf_put_u64(out, op->fp);
    sl__buf_put_i64(out, ref.wm);
    rc = import_key_group(op, &ref, kg, out);
    if (ws) ws->touched = true;
    return rc;
}
