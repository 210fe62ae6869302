/* window_int.h — the window operator's private types, shared by window.c
 * (the operator) and winquery.c (queryable state over its open windows).
 * Nothing outside src/ops/window*.c may include it. */
#ifndef SL_OPS_WINDOW_INT_H
#define SL_OPS_WINDOW_INT_H

#include <pthread.h>

#include <string.h>

#include "agg.h"
#include "state/state.h"

#define LATE_SLOTS 64 /* late-record counters kept per window end */

typedef struct {
    int64_t size, slide, lateness; /* slide 0 = tumbling */
    char *time_col;
    char **keys; /* nkey names */
    int nkey;
    sl_agg_spec *aggs; /* deep copies: col, as and bounds are owned */
    size_t naggs;
    int npart;       /* keys[0..npart) are the stream's key, the rest extra
                      * grouping columns (sl_stream_window_fold) */
    sl__fold *fold;  /* owned; NULL = emit every group */
    bool has_min;    /* drop groups whose aggs[min_agg] < min_count */
    size_t min_agg;
    int64_t min_count;
} win_conf;

typedef struct {
    int64_t start, end, fire; /* fire = end + lateness, saturated */
    sl__bmap groups;          /* encoded key -> aggregate states */
    bool spilled;  /* RocksDB holds groups that are not in `groups` */
    bool in_store; /* RocksDB holds some of its groups (winstore.c) */
} win;

typedef struct sl__winstore sl__winstore;
typedef struct sl__winsnap sl__winsnap;
typedef struct sl__winchg sl__winchg;
struct sl__winchg_full;

#define SL__WIN_SNAP_MAGIC 0x4e574c53u /* "SLWN": window.c's state format */

typedef struct {
    int64_t end;
    uint64_t n;
} late_slot;

typedef struct {
    const win_conf *conf;
    const sl_schema *in, *out;
    sl__ctx *ctx;
    uint32_t batch_cap;
    int time_col;
    int nkey, npart; /* grouping columns, of which the partitioning key */
    int key_cols[SL_MAX_COLS];
    sl__agg *aggs;
    size_t naggs;
    uint32_t state_size; /* aggregate states; the key group follows */
    uint32_t grp_size;   /* bytes of a group: states + key group, padded */
    bool heap; /* some aggregate state owns memory */
    sl__wkey kl;  /* the key columns, for winkey.c */
    int64_t size, step, lateness; /* step = slide, or size when tumbling */
    uint32_t nwin;                /* windows per record */
    int64_t wm;
    int key_groups;     /* G of the job; <= 1: every group is in group 0 */
    uint64_t fp;        /* fingerprint of the definition, in snapshots */
    bool started;       /* a batch or watermark arrived: no more restores */
    bool wm_restored;   /* wm comes from a restored section */

    pthread_mutex_t qlock; /* held by every call that changes the state, so
                            * queryable state reads a consistent one */
    bool qreg;             /* registered for queries */

    win **wins; /* open windows, invariant 1 */
    size_t nw, capw;
    win *last; /* the window found last: rows of a batch cluster */
    uint32_t grp_hint; /* groups of the window freed last: a new window's
                        * map is sized for as many (no rehash as it fills) */

    /* per-batch scratch, grown on demand and reused */
    uint8_t *kbuf;
    size_t kcap;
    uint32_t *koff, *klen, *live;
    uint64_t *kh;
    int64_t *latest; /* start of each live row's latest window */
    size_t rcap;
    uint32_t *prow, *pkey;
    win **pwin;
    uint8_t **pgrp;
    size_t pcap;
    char *tmp;
    size_t tmpcap;

    late_slot late[LATE_SLOTS];
    int nlate;
    uint64_t ngroups;   /* groups in open windows (window.max.groups) */
    int64_t max_groups; /* 0 = no cap */
    sl__window_stats st;

    /* state.backend = rocksdb and state TTL (winstore.c) */
    sl__winstore *ws; /* NULL: the groups live in memory only */
    int64_t ttl;      /* state.ttl.ms, 0 = none */
    int64_t next_sweep; /* watermark of the next memory sweep (TTL) */
    uint32_t ts_off;  /* offset of a group's last-update event time (0: not
                       * kept, no TTL), after the key group */
    uint8_t *pfresh;  /* per pair: pass 2 created the group */
    uint8_t *fgrp;    /* one group's block, to fire from RocksDB */
    struct sl__ws_import *imp; /* a checkpoint read during restore (winstore.c) */

    /* the asynchronous snapshot in flight, or NULL (winsnap.c) */
    sl__winsnap *asnap;
    /* incremental checkpoints of the memory state (winchg.c): NULL when
     * off; chg_off is the offset of a group's dirty index (0: unchanged
     * since the last checkpoint), chg_nd the last index given out */
    struct sl__winchg *chg;
    uint32_t chg_off, chg_nd;
    bool chg_force;                 /* the next checkpoint is a full one */
    struct sl__winchg_imp *cimp;    /* chain files read during restore */
    bool ws_firing;   /* wins[0] is part way through sl__ws_fire (SL__MORE) */
} win_op;

/* A group's key group sits after its aggregate states (window.c). */
static inline int32_t sl__grp_kg(const win_op *op, const uint8_t *grp)
{
    int32_t kg;
    memcpy(&kg, grp + op->state_size, sizeof kg);
    return kg;
}
/* Event time of the newest record in a group (when op->ts_off). */
static inline int64_t sl__grp_ts(const win_op *op, const uint8_t *grp)
{
    int64_t t;
    memcpy(&t, grp + op->ts_off, sizeof t);
    return t;
}
static inline void sl__grp_set_ts(const win_op *op, uint8_t *grp, int64_t t)
{
    memcpy(grp + op->ts_off, &t, sizeof t);
}
/* Whether a group whose newest record has event time `last` has expired
 * at event time `now`: more than the TTL past it. `now` is the watermark,
 * or the window's firing time when it fires (so the final watermark,
 * +infinity, expires nothing that its window would not). */
static inline bool sl__ttl_expired(const win_op *op, int64_t now, int64_t last)
{
    int64_t age;
    if (!op->ttl || now <= last) return false;
    if (__builtin_sub_overflow(now, last, &age)) return true;
    return age > op->ttl;
}

/* ---- winstore.c: window groups in RocksDB, state TTL ---------------------- */
/* Opens the RocksDB store when sc says so (op->ws stays NULL in memory). */
int sl__ws_open(win_op *op, const sl__state_conf *sc, char *errstr, size_t errsz);
void sl__ws_close(win_op *op);
/* After pass 2 of a chunk of np pairs: fills the groups pass 2 created in
 * spilled windows from RocksDB (one multi-get). */
int sl__ws_load(win_op *op, uint32_t np);
/* Writes the cache out and empties it when it holds more than its share
 * of state.memory.bound. */
int sl__ws_maybe_evict(win_op *op);
/* Fires w, a window with groups in RocksDB: rows as fire_window's. */
int sl__ws_fire(win_op *op, win *w, sl__out *out, sl_batch **ob, uint32_t cap);
/* Loads w's groups from RocksDB into its map (a folding window fires from
 * memory). */
int sl__ws_load_window(win_op *op, win *w);
/* Removes a fired window's keys from RocksDB. */
int sl__ws_forget(win_op *op, win *w);
/* The key group sections of a snapshot (window.c's format). */
int sl__ws_snapshot(win_op *op, sl__snap_writer *sw, sl__buf *b, uint32_t magic);
/* A restored group new to the map: merged with the copy in RocksDB, if
 * the window has spilled one. */
int sl__ws_merge_restored(win_op *op, win *w, const uint8_t *key, uint32_t len,
                          uint8_t *grp);
/* Groups of w, cached or in the store, not expired: a scan (tests). */
uint64_t sl__ws_count_groups(const win_op *op, win *w);
/* Drops groups of the in-memory map whose TTL passed (memory sweep). */
void sl__ws_sweep(win_op *op);
/* Incremental checkpoints: whether a section is a reference to a RocksDB
 * checkpoint rather than groups. sl__ws_restore_ref applies one for key
 * group kg: it either opens the checkpoint as this task's store (same
 * task, same layout; *starts lists the windows to mark as in the store,
 * malloc'd) or writes key group kg's groups into out as a section of
 * window.c's format (magic, fingerprint, watermark, windows) to restore as
 * usual; *wm is the section's watermark. sl__ws_close_import closes the
 * checkpoint a restore read from. */
bool sl__ws_is_ref(const void *data, size_t len);
int sl__ws_restore_ref(win_op *op, int32_t kg, const void *data, size_t len,
                       uint32_t magic, sl__buf *out, int64_t **starts, uint32_t *nstarts,
                       int64_t *wm);
void sl__ws_close_import(win_op *op);


/* ---- winsnap.c: asynchronous snapshots of the in-memory state ------------- */
/* sl__op_vt.snapshot_async: notes every open group at the barrier. */
int sl__winsnap_begin(win_op *op, sl__snap_deferred *d);
/* Before grp changes or is freed: the snapshot in flight gets it first. */
void sl__winsnap_cow(win_op *op, uint8_t *grp);
void sl__winsnap_cow_pairs(win_op *op, uint32_t np);  /* op->pgrp[0..np) */
void sl__winsnap_cow_window(win_op *op, win *w);     /* every group of w */
void sl__winsnap_cow_all(win_op *op);                /* every open group */
/* Frees the snapshot once the writer finished it (waits for that if wait). */
void sl__winsnap_reap(win_op *op, bool wait);
/* Tests: called by the writer before it writes the i-th of n groups. */
extern void (*sl__winsnap_test_hook)(uint32_t i, uint32_t n);
/* window.c, for winsnap.c: one group's serialised states (the format's
 * slen bytes) into *buf (grown as needed); the operator section's bytes. */
int sl__win_group_bytes(const win_op *op, const uint8_t *grp, char **buf, size_t *cap,
                        size_t *len);
void sl__win_snap_operator_bytes(const win_op *op, sl__buf *b);

/* ---- winchg.c: incremental (changelog) checkpoints of the memory state ---- */
/* Turns them on for op (memory backend, state.checkpoints.incremental, every
 * heap aggregate an exact integer distinct count): reserves the dirty index
 * in the group block (op->grp_size grows). Call before any group exists. */
void sl__winchg_new(win_op *op);
void sl__winchg_free(win_op *op);
/* A group about to change (win_batch_locked, pass 2): gets a dirty index. */
static inline void sl__winchg_touch(win_op *op, uint8_t *grp)
{
    uint32_t d;
    memcpy(&d, grp + op->chg_off, sizeof d);
    if (d) return;
    if (op->chg_nd == UINT32_MAX) {
        op->chg_force = true;
        return;
    }
    d = ++op->chg_nd;
    memcpy(grp + op->chg_off, &d, sizeof d);
}
/* At a checkpoint's barrier (from sl__winsnap_begin): takes a delta and
 * returns 0, or returns SL__SNAP_SYNC when this one must be a full
 * materialisation (*full then says so with the chain to start). */
int sl__winchg_begin(win_op *op, sl__snap_deferred *d, struct sl__winchg_full **full);
/* The writer's part of a full materialisation: sections(ud, w) written into
 * a new shared file, references into w. w NULL: abandoned. */
int sl__winchg_write_full(struct sl__winchg_full *f, sl__snap_writer *w,
                          int (*sections)(void *ud, sl__snap_writer *w), void *ud,
                          const sl__buf *opsec);
void sl__winchg_full_free(struct sl__winchg_full *f);
/* Waits for the delta in flight and frees it. */
void sl__winchg_reap(win_op *op);
/* Restore: whether a section references a chain; restores key group kg
 * from it (the chain's files read once per restore, op->cimp). */
bool sl__winchg_is_ref(const void *data, size_t len);
int sl__winchg_restore(win_op *op, int32_t kg, const void *data, size_t len);
void sl__winchg_imp_free(win_op *op);
/* window.c, for winchg.c: the open window of start (created if need be);
 * frees wins[i] and removes it from the list. */
win *sl__win_get(win_op *op, int64_t start);
void sl__win_drop(win_op *op, size_t i);

/* The current value of every open window for one key (sl__qs_fn), read
 * under op->qlock (winquery.c). */
int sl__window_query(void *st, const char *const *vals, int nvals, bool kanon,
                     sl__qs_answer *ans, char *err, size_t errsz);

#endif
