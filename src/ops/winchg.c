/* winchg.c — incremental (changelog) checkpoints of the window operator's
 * in-memory state, as Flink's changelog state backend does (FLIP-158): a
 * checkpoint writes what changed since the previous one (a delta), and
 * every so often the whole state (a full materialisation); restore is the
 * latest full materialisation plus the deltas after it, in order.
 *
 * What the task does (all on its own thread):
 * - pass 2 of win_batch_locked gives every group it is about to change a
 *   dirty index (sl__winchg_touch: one load and compare per pair, a store
 *   the first time in a checkpoint interval);
 * - an exact integer distinct-count set appends each value new to it to
 *   the element log (agg.c chlog_put: one append per *new* element, with
 *   the group's dirty index) — within a window a set only grows;
 * - at the barrier (sl__winchg_begin) it walks the open groups once, as the
 *   asynchronous full snapshot does (winsnap.c), copying the key and the
 *   fixed-size states of each dirty group and clearing its index, and
 *   hands the copies, the element log (swapped for an empty one), the open
 *   windows and the operator section to the checkpoint's writer thread.
 * The writer (delta_write) groups the dirty groups by key group (counting
 * sort) and the log's values by group, writes the delta into a file of
 * <checkpoint.dir>/shared and, into the task's snapshot, one reference
 * section per key group the task holds, listing the chain's files (full
 * materialisation first). The shared files are listed in
 * chk-N/rdb-m<op>-<stage>-<task>/FILES, so incr.c's retention keeps every
 * file a retained checkpoint needs and deletes the others.
 *
 * Shared files are snapshot files (store.c's format, checksummed sections
 * of kind SL__SEC_OP and the operator's id):
 *   <id>-<seq>.wf  a full materialisation: window.c's key group sections
 *   <id>-<seq>.wd  a delta: a kg -1 section {u32 DELTA_MAGIC, u64 fp, i64
 *                  watermark, u32 n, n x i64 start of each open window},
 *                  then per key group with dirty groups {u32 DELTA_MAGIC,
 *                  u64 fp, i64 watermark, u32 groups, per group: i64
 *                  window start, str key, per aggregate: logged set ? (u32
 *                  n, n x u64 values added) : str serialised state, and
 *                  with a TTL i64 newest event time}
 * A reference section (key group kg of the task's snapshot):
 *   u32 CHAIN_MAGIC, u64 fp, i64 watermark, str checkpoint root (absolute),
 *   u32 n, n x {str name, u64 size, u32 Adler-32}
 *
 * Invariants:
 * 1. A delta holds every change between the previous checkpoint's barrier
 *    and this one's: a group changed in between has a dirty index (touched
 *    before pass 3 changes it), every value it gained is in the log, the
 *    windows fired are those missing from the open list. What no delta can
 *    say (a TTL reset or sweep, a log past its cap, a write that failed or
 *    was abandoned) forces a full materialisation next (op->chg_force,
 *    log.over, c->broken).
 * 2. The chain (c->files, full_bytes, delta_bytes, broken, seq) is written
 *    only by the writer while a checkpoint of this task is in flight and
 *    read by the task only after reaping it (finished, acquire/release);
 *    sl__winsnap_begin reaps before calling sl__winchg_begin.
 * 3. A shared file is complete before any snapshot names it: written to
 *    <name>.tmp, fsynced, renamed, the folder fsynced (sl__ck_shared_publish),
 *    then FILES and the references written; the manifest follows later.
 * 4. Restore gives exactly what a full snapshot at that barrier would have:
 *    the full materialisation's sections, then each delta's open list and
 *    groups applied in order to a scratch instance, whose synchronous
 *    snapshot of the key group is restored as usual (sl__winchg_restore),
 *    so other parallelism and the RocksDB backend work as with full
 *    snapshots.
 *
 * 5. A compaction (compact_main, a thread of its own) reads only files that
 *    were complete when it started and writes one new file under a name no
 *    other file has (seq), held from retention until a checkpoint lists it
 *    or it is deleted; the chain takes it on only in the writer (compact_adopt)
 *    and only if the chain still begins with the file it began with.
 *
 * Not done here: other operators' state and aggregates whose states own
 * other heap memory (strings, HyperLogLog, sketches) stay full snapshots;
 * savepoints are always full and self-contained (winsnap.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/store.h"
#include "window_int.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define sl__htole64(x) __builtin_bswap64(x)
#else
#define sl__htole64(x) (x)
#endif

#define CHAIN_MAGIC 0x43574c53u /* "SLWC" */
#define DELTA_MAGIC 0x44574c53u /* "SLWD" */
#define LOG_MAX ((size_t)4 << 20) /* log entries between checkpoints (64 MiB) */
#define CHAIN_MAX 100             /* deltas after a full materialisation */
#define COMPACT_NICE 10           /* the compaction thread's nice value */
#ifndef MATERIALISE_RATIO
#define MATERIALISE_RATIO 1 /* a full one once the deltas reach its size times this */
#endif

typedef struct {
    char name[160];
    uint64_t size;
    uint32_t crc;
} cfile;

struct sl__winchg {
    sl__chlog log;  /* task only; entries move to a delta at each barrier */
    bool active;    /* a chain was started: the log is on */
    /* the chain: invariant 2 */
    cfile *files;
    size_t nfiles, capfiles;
    uint64_t full_bytes, delta_bytes;
    bool broken;
    uint64_t seq;
    char id[40];
    struct delta *inflight;
    struct delta *spare; /* the last delta, reaped: reused */
    struct compaction *comp; /* task only: the chain's compaction, running */
};

/* What the task hands to the writer, common to both kinds. */
typedef struct {
    sl__winchg *c;
    char root[PATH_MAX], rdb[PATH_MAX + 64];
    uint32_t op_id;
    uint64_t fp;
    int64_t wm;
    int task;
} target;

struct sl__winchg_full {
    target t;
};

typedef struct {
    int64_t start;
    int32_t kg;
    uint32_t klen;
    size_t koff, soff;
} dgrp;

/* One delta, reused from checkpoint to checkpoint (its buffers keep their
 * size: no fresh pages to fault in every second). The task fills the first
 * part at the barrier; the writer owns the scratch part while in flight. */
typedef struct delta {
    target t;
    const win_op *op; /* aggs, naggs, state_size, ts_off: fixed after open */
    bool logged[64];  /* per aggregate: values come from the log */
    struct compaction *adopt; /* a finished compaction the chain takes on */
    uint32_t ng, nd;
    dgrp *g;
    uint8_t *keys, *states;
    uint32_t *remap; /* dirty index -> g index + 1, 0: gone */
    sl__chlog_ent *e;
    size_t ne, ecap;
    int64_t *open;
    uint32_t nopen;
    int32_t *kgs;
    uint32_t nkgs;
    size_t gcap, kcap, scap, rcap, ocap, kgcap;
    sl__buf opsec;
    atomic_int finished;
    /* the writer's scratch */
    sl__buf b;
    uint64_t *vals;
    size_t *start, *fill;
    uint32_t *ix;
    uint8_t *tmp;
    size_t vcap, stcap, fcap, ixcap, tcap;
} delta;

/* *p holds at least need elements of size sz (grown by half again). */
static void *grow(void *p, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap && p) return p;
    size_t c = *cap + *cap / 2;
    if (c < need) c = need;
    if (c < 16) c = 16;
    *cap = c;
    return sl__xrealloc(p, c * sz);
}

/* ---- set up ----------------------------------------------------------------- */
void sl__winchg_new(win_op *op)
{
    if (op->naggs > 64) return;
    for (size_t a = 0; a < op->naggs; a++)
        if (sl__agg_has_heap(&op->aggs[a]) &&
            (op->aggs[a].kind != SL_AGG_COUNT_DISTINCT || op->aggs[a].in_type == SL_STRING))
            return; /* full snapshots (not done here) */
    sl__winchg *c = sl__xcalloc(1, sizeof *c);
    c->log.max = LOG_MAX;
    uint64_t r[2] = {0, 0};
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
        r[1] = (uint64_t)(uintptr_t)c;
    }
    snprintf(c->id, sizeof c->id, "m%016llx%016llx", (unsigned long long)r[0],
             (unsigned long long)r[1]);
    op->chg = c;
    op->chg_off = op->grp_size;
    op->grp_size += 8; /* u32 dirty index, padded */
}

static void delta_free(delta *d)
{
    if (!d) return;
    free(d->g);
    free(d->keys);
    free(d->states);
    free(d->remap);
    free(d->e);
    free(d->open);
    free(d->kgs);
    sl__buf_free(&d->opsec);
    sl__buf_free(&d->b);
    free(d->vals);
    free(d->start);
    free(d->fill);
    free(d->ix);
    free(d->tmp);
    free(d);
}

void sl__winchg_reap(win_op *op)
{
    sl__winchg *c = op->chg;
    if (!c || !c->inflight) return;
    delta *d = c->inflight;
    while (!atomic_load_explicit(&d->finished, memory_order_acquire)) sched_yield();
    delta_free(c->spare);
    c->spare = d; /* the next barrier reuses it */
    c->inflight = NULL;
}

static void compact_cancel(struct compaction *k);

void sl__winchg_free(win_op *op)
{
    sl__winchg *c = op->chg;
    if (!c) return;
    sl__winchg_reap(op);
    compact_cancel(c->comp); /* closing: not needed any more */
    c->comp = NULL;
    for (size_t a = 0; a < op->naggs; a++) op->aggs[a].log = NULL;
    free(c->log.e);
    delta_free(c->spare);
    free(c->files);
    free(c);
    op->chg = NULL;
}

void sl__winchg_full_free(struct sl__winchg_full *f)
{
    free(f);
}

/* ---- the barrier (task) ----------------------------------------------------- */
static void target_init(target *t, win_op *op, const sl__snap_deferred *d)
{
    t->c = op->chg;
    if (!realpath(d->ck_root, t->root)) snprintf(t->root, sizeof t->root, "%s", d->ck_root);
    char ck[PATH_MAX];
    if (!realpath(d->ck_dir, ck)) snprintf(ck, sizeof ck, "%s", d->ck_dir);
    int stage = op->ctx ? op->ctx->stage : 0;
    t->task = op->ctx ? op->ctx->task : 0;
    snprintf(t->rdb, sizeof t->rdb, "%s/rdb-m%u-%d-%d", ck, d->op_id, stage, t->task);
    t->op_id = d->op_id;
    t->fp = op->fp;
    t->wm = op->wm;
}

/* A full materialisation the task takes at the barrier (winsnap.c's
 * copy-on-write): no chain yet, one that no delta can continue, or one a
 * compaction did not shorten in time. */
static bool need_full(const win_op *op)
{
    const sl__winchg *c = op->chg;
    return !c->active || c->nfiles == 0 || c->broken || op->chg_force || c->log.over ||
           c->nfiles > CHAIN_MAX;
}

/* The chain has grown enough to be folded into a new full materialisation,
 * which a compaction does from the files, off the task. */
static bool want_compact(const sl__winchg *c)
{
    return c->nfiles >= CHAIN_MAX / 2 || c->delta_bytes >= MATERIALISE_RATIO * c->full_bytes;
}

/* The log starts (or restarts) empty with the chain; the caller clears
 * every group's dirty index in the same walk that notes the groups. */
static void start_chain(win_op *op)
{
    sl__winchg *c = op->chg;
    c->log.n = 0;
    c->log.over = false;
    op->chg_nd = 0;
    op->chg_force = false;
    if (!c->active) {
        c->active = true;
        for (size_t a = 0; a < op->naggs; a++) {
            if (!sl__agg_has_heap(&op->aggs[a])) continue;
            op->aggs[a].log = &c->log;
            op->aggs[a].log_off = op->chg_off;
            op->aggs[a].log_idx = (uint32_t)a;
        }
    }
}

static int delta_write(void *ud, sl__snap_writer *w);
static struct compaction *compact_settle(win_op *op, bool full);
static void compact_start(win_op *op, const sl__snap_deferred *dd);

int sl__winchg_begin(win_op *op, sl__snap_deferred *dd, struct sl__winchg_full **full)
{
    sl__winchg *c = op->chg;
    *full = NULL;
    if (!dd->ck_dir || !dd->ck_root || !*dd->ck_root) return SL__SNAP_SYNC; /* savepoint */
    bool cow = need_full(op);
    struct compaction *adopt = compact_settle(op, cow);
    if (cow) {
        struct sl__winchg_full *f = sl__xcalloc(1, sizeof *f);
        target_init(&f->t, op, dd);
        start_chain(op);
        *full = f;
        return SL__SNAP_SYNC;
    }
    delta *d = c->spare ? c->spare : sl__xcalloc(1, sizeof *d);
    c->spare = NULL;
    d->ng = d->nopen = d->nkgs = 0;
    d->adopt = adopt;
    target_init(&d->t, op, dd);
    d->op = op;
    for (size_t a = 0; a < op->naggs; a++) d->logged[a] = op->aggs[a].log != NULL;
    uint64_t n = 0;
    for (size_t i = 0; i < op->nw; i++) n += sl__bmap_count(&op->wins[i]->groups);
    uint32_t nd = op->chg_nd;
    d->nd = nd;
    d->remap = grow(d->remap, &d->rcap, (size_t)nd + 1, sizeof *d->remap);
    memset(d->remap, 0, ((size_t)nd + 1) * sizeof *d->remap);
    size_t gcap = nd < n ? nd : (size_t)n;
    d->g = grow(d->g, &d->gcap, gcap, sizeof *d->g);
    size_t ssz = op->state_size + (op->ts_off ? 8 : 0);
    d->states = grow(d->states, &d->scap, gcap * ssz, 1);
    size_t klen = 0;
    d->keys = grow(d->keys, &d->kcap, 256, 1);
    int32_t kgmax = op->key_groups > 1 ? op->key_groups : 1;
    d->kgs = grow(d->kgs, &d->kgcap, (size_t)kgmax, sizeof *d->kgs);
    uint8_t *seen = sl__xcalloc((size_t)kgmax, 1);
    d->open = grow(d->open, &d->ocap, op->nw, sizeof *d->open);
    for (size_t i = 0; i < op->nw; i++) {
        const sl__bmap *m = &op->wins[i]->groups;
        d->open[d->nopen++] = op->wins[i]->start;
        uint32_t cnt = sl__bmap_count(m);
        for (uint32_t gi = 0; gi < cnt; gi++) {
            const uint8_t *key;
            uint32_t len;
            uint8_t *grp = sl__bmap_at(m, gi, &key, &len);
            int32_t kg = sl__grp_kg(op, grp);
            if (kg >= 0 && kg < kgmax) seen[kg] = 1;
            uint32_t di;
            memcpy(&di, grp + op->chg_off, sizeof di);
            if (!di) continue;
            memset(grp + op->chg_off, 0, sizeof di);
            if (di > nd || d->ng == gcap) continue; /* cannot happen */
            dgrp *g = &d->g[d->ng];
            g->start = op->wins[i]->start;
            g->kg = kg;
            g->klen = len;
            if (klen + len > d->kcap) d->keys = grow(d->keys, &d->kcap, klen + len, 1);
            g->koff = klen;
            if (len) memcpy(d->keys + klen, key, len);
            klen += len;
            g->soff = (size_t)d->ng * ssz;
            memcpy(d->states + g->soff, grp, op->state_size);
            if (op->ts_off) memcpy(d->states + g->soff + op->state_size, grp + op->ts_off, 8);
            d->remap[di] = ++d->ng;
        }
    }
    for (int32_t k = 0; k < kgmax; k++)
        if (seen[k]) d->kgs[d->nkgs++] = k;
    free(seen);
    /* the log moves to the writer; the task goes on with the delta's old
     * one (a swap: neither is allocated again) */
    sl__chlog_ent *e = d->e;
    size_t ecap = d->ecap;
    d->e = c->log.e;
    d->ne = c->log.n;
    d->ecap = c->log.cap;
    c->log.e = e;
    c->log.cap = ecap;
    c->log.n = 0;
    op->chg_nd = 0;
    sl__win_snap_operator_bytes(op, &d->opsec);
    atomic_init(&d->finished, 0);
    /* the chain as it stands (before this delta): a compaction's input */
    if (!c->comp && !adopt && want_compact(c)) compact_start(op, dd);
    c->inflight = d;
    dd->write = delta_write;
    dd->ud = d;
    return 0;
}

/* ---- the writer ----------------------------------------------------------------- */
/* A writer that forwards to a shared snapshot file and notes the key
 * groups of the sections (a full materialisation's). */
typedef struct {
    sl__snap_writer w;
    sl__snapfile *f;
    uint32_t id;
    int32_t *kgs;
    uint32_t nkgs, cap;
} fwd_writer;

static int fwd_put(sl__snap_writer *w, int32_t kg, const void *data, size_t len)
{
    fwd_writer *fw = (fwd_writer *)w;
    if (kg >= 0 && (fw->nkgs == 0 || fw->kgs[fw->nkgs - 1] != kg)) {
        if (fw->nkgs == fw->cap)
            fw->kgs = sl__xrealloc(fw->kgs, (fw->cap = fw->cap ? 2 * fw->cap : 64) *
                                                sizeof *fw->kgs);
        fw->kgs[fw->nkgs++] = kg;
    }
    return sl__snapfile_section(fw->f, SL__SEC_OP, fw->id, kg, data, len);
}

static sl__snapfile *shared_create(const target *t, const char *name, char *err, size_t errsz)
{
    char path[PATH_MAX + 200];
    snprintf(path, sizeof path, "%s/shared", t->root);
    if (sl__mkdirs(path)) {
        sl__err(err, errsz, SL_EIO, "checkpoint: cannot create %s: %s", path, strerror(errno));
        return NULL;
    }
    snprintf(path, sizeof path, "%s/shared/%s.tmp", t->root, name);
    return sl__snapfile_create(path, err, errsz);
}

static int shared_close(const target *t, sl__snapfile *f, const char *name, cfile *out,
                        char *err, size_t errsz)
{
    uint64_t size;
    uint32_t crc;
    if (sl__snapfile_close(f, &size, &crc, err, errsz)) return SL_EIO;
    int rc = sl__ck_shared_publish(t->root, name, err, errsz);
    if (rc) return rc;
    snprintf(out->name, sizeof out->name, "%s", name);
    out->size = size;
    out->crc = crc;
    return 0;
}

/* The reference sections for kgs[0..n), the operator section, FILES. */
static int put_refs(const target *t, sl__snap_writer *w, const int32_t *kgs, uint32_t n,
                    const sl__buf *opsec, bool adopted, char *err, size_t errsz)
{
    const sl__winchg *c = t->c;
    sl__buf b = {0};
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        b.len = 0;
        sl__buf_put_u32(&b, CHAIN_MAGIC);
        sl__buf_put_u64(&b, t->fp);
        sl__buf_put_i64(&b, t->wm);
        sl__buf_put_str(&b, t->root, strlen(t->root));
        sl__buf_put_u32(&b, (uint32_t)c->nfiles);
        for (size_t k = 0; k < c->nfiles; k++) {
            sl__buf_put_str(&b, c->files[k].name, strlen(c->files[k].name));
            sl__buf_put_u64(&b, c->files[k].size);
            sl__buf_put_u32(&b, c->files[k].crc);
        }
        rc = sl__snap_put(w, kgs[i], b.p, b.len);
    }
    sl__buf_free(&b);
    if (rc == 0) rc = sl__snap_put(w, -1, opsec->p, opsec->len);
    if (rc == 0) {
        sl__ck_shared *l = sl__xcalloc(c->nfiles ? c->nfiles : 1, sizeof *l);
        for (size_t k = 0; k < c->nfiles; k++) {
            snprintf(l[k].name, sizeof l[k].name, "%s", c->files[k].name);
            l[k].size = c->files[k].size;
            l[k].fresh = k + 1 == c->nfiles || (adopted && k == 0);
        }
        uint32_t crc;
        rc = sl__ck_shared_list(t->rdb, l, c->nfiles, &crc, err, errsz);
        free(l);
    }
    return rc;
}

static void chain_push(sl__winchg *c, const cfile *f)
{
    if (c->nfiles == c->capfiles)
        c->files = sl__xrealloc(c->files, (c->capfiles = c->capfiles ? 2 * c->capfiles : 8) *
                                              sizeof *c->files);
    c->files[c->nfiles++] = *f;
}

int sl__winchg_write_full(struct sl__winchg_full *f, sl__snap_writer *w,
                          int (*sections)(void *ud, sl__snap_writer *w), void *ud,
                          const sl__buf *opsec)
{
    const target *t = &f->t;
    sl__winchg *c = t->c;
    c->broken = true; /* until this one is written */
    if (!w) return 0; /* abandoned */
    char name[160], err[1024] = "";
    snprintf(name, sizeof name, "%s-%" PRIu64 ".wf", c->id, ++c->seq);
    fwd_writer fw = {.w = {.put = fwd_put}, .id = t->op_id};
    fw.f = shared_create(t, name, err, sizeof err);
    int rc = fw.f ? sections(ud, &fw.w) : SL_EIO;
    sl__crash_point("materialise-write");
    cfile cf = {.size = 0};
    if (rc && fw.f) sl__snapfile_abort(fw.f);
    else if (rc == 0) rc = shared_close(t, fw.f, name, &cf, err, sizeof err);
    if (rc == 0) {
        c->nfiles = 0;
        chain_push(c, &cf);
        c->full_bytes = cf.size;
        c->delta_bytes = 0;
        rc = put_refs(t, w, fw.kgs, fw.nkgs, opsec, false, err, sizeof err);
    }
    if (rc == 0) c->broken = false;
    else
        sl__log(SL__LOG_WARN, "window", "full materialisation failed", "task=%d error=\"%s\"",
                t->task, err[0] ? err : sl_strerror(rc));
    free(fw.kgs);
    return rc;
}

static void put_head(sl__buf *b, const delta *d)
{
    sl__buf_put_u32(b, DELTA_MAGIC);
    sl__buf_put_u64(b, d->t.fp);
    sl__buf_put_i64(b, d->t.wm);
}

/* The delta's sections into f: the open windows, then per key group its
 * dirty groups with the values their sets gained. */
static int delta_sections(delta *d, sl__snapfile *f)
{
    const win_op *op = d->op;
    size_t na = op->naggs ? op->naggs : 1;
    /* the log's values by (group, aggregate): a counting sort */
    size_t nb = (size_t)d->ng * na + 1;
    d->start = grow(d->start, &d->stcap, nb + 1, sizeof *d->start);
    size_t *start = d->start;
    memset(start, 0, (nb + 1) * sizeof *start);
    for (size_t i = 0; i < d->ne; i++) {
        const sl__chlog_ent *e = &d->e[i];
        if (e->d == 0 || e->d > d->nd || !d->remap[e->d] || e->agg >= na) continue;
        start[(size_t)(d->remap[e->d] - 1) * na + e->agg + 1]++;
    }
    for (size_t i = 1; i <= nb; i++) start[i] += start[i - 1];
    d->vals = grow(d->vals, &d->vcap, start[nb], sizeof *d->vals);
    uint64_t *vals = d->vals;
    d->fill = grow(d->fill, &d->fcap, nb, sizeof *d->fill);
    size_t *fill = d->fill;
    memcpy(fill, start, nb * sizeof *fill);
    for (size_t i = 0; i < d->ne; i++) {
        const sl__chlog_ent *e = &d->e[i];
        if (e->d == 0 || e->d > d->nd || !d->remap[e->d] || e->agg >= na) continue;
        vals[fill[(size_t)(d->remap[e->d] - 1) * na + e->agg]++] = sl__htole64(e->k);
    }
    /* the groups by key group (a stable counting sort: a section per key
     * group; within one, restore and compaction take groups in any order) */
    d->ix = grow(d->ix, &d->ixcap, d->ng, sizeof *d->ix);
    uint32_t *ix = d->ix;
    int32_t nkg = op->key_groups > 1 ? op->key_groups : 1;
    uint32_t *kc = sl__xcalloc((size_t)nkg + 1, sizeof *kc);
    for (uint32_t i = 0; i < d->ng; i++) {
        SL_ASSERT(d->g[i].kg >= 0 && d->g[i].kg < nkg); /* window.c row_kg */
        kc[d->g[i].kg + 1]++;
    }
    for (int32_t k = 0; k < nkg; k++) kc[k + 1] += kc[k];
    for (uint32_t i = 0; i < d->ng; i++) ix[kc[d->g[i].kg]++] = i;
    free(kc);
    sl__buf b = d->b; /* its pages stay mapped from the last delta */
    b.len = 0;
    put_head(&b, d);
    sl__buf_put_u32(&b, d->nopen);
    for (uint32_t i = 0; i < d->nopen; i++) sl__buf_put_i64(&b, d->open[i]);
    int rc = sl__snapfile_section(f, SL__SEC_OP, d->t.op_id, -1, b.p, b.len);
    uint8_t *tmp = d->tmp;
    size_t tcap = d->tcap;
    for (uint32_t i = 0; i < d->ng && rc == 0;) {
        uint32_t j = i;
        while (j < d->ng && d->g[ix[j]].kg == d->g[ix[i]].kg) j++;
        b.len = 0;
        put_head(&b, d);
        sl__buf_put_u32(&b, j - i);
        for (uint32_t k = i; k < j; k++) {
            const dgrp *g = &d->g[ix[k]];
            const uint8_t *st = d->states + g->soff;
            sl__buf_put_i64(&b, g->start);
            sl__buf_put_str(&b, (const char *)d->keys + g->koff, g->klen);
            for (size_t a = 0; a < op->naggs; a++) {
                if (d->logged[a]) {
                    size_t s0 = start[(size_t)ix[k] * na + a], s1 = start[(size_t)ix[k] * na + a + 1];
                    sl__buf_put_u32(&b, (uint32_t)(s1 - s0));
                    sl__buf_put(&b, vals + s0, (s1 - s0) * 8); /* little-endian */
                    continue;
                }
                size_t n = sl__agg_serialized_size(&op->aggs[a], st);
                if (n > tcap) tmp = sl__xrealloc(tmp, tcap = n);
                sl__agg_serialize(&op->aggs[a], st, tmp);
                sl__buf_put_str(&b, (const char *)tmp, n);
            }
            if (op->ts_off) {
                int64_t ts;
                memcpy(&ts, st + op->state_size, sizeof ts);
                sl__buf_put_i64(&b, ts);
            }
        }
        rc = sl__snapfile_section(f, SL__SEC_OP, d->t.op_id, d->g[ix[i]].kg, b.p, b.len);
        if (rc == 0 && i == 0) sl__crash_point("delta-write");
        i = j;
    }
    d->tmp = tmp;
    d->tcap = tcap;
    d->b = b;
    return rc;
}

struct compaction;
static void compact_adopt(sl__winchg *c, struct compaction *k);
static void compact_discard(struct compaction *k);
static void compact_free(struct compaction *k);

static int delta_write(void *ud, sl__snap_writer *w)
{
    delta *d = ud;
    sl__winchg *c = d->t.c;
    int rc = 0;
    char name[160], err[1024] = "";
    if (!w) {
        c->broken = true; /* abandoned: the next checkpoint is a full one */
        compact_discard(d->adopt);
        d->adopt = NULL;
        goto out;
    }
    if (d->adopt) compact_adopt(c, d->adopt);
    uint64_t t0 = sl__clock();
    snprintf(name, sizeof name, "%s-%" PRIu64 ".wd", c->id, ++c->seq);
    sl__snapfile *f = shared_create(&d->t, name, err, sizeof err);
    rc = f ? delta_sections(d, f) : SL_EIO;
    cfile cf = {.size = 0};
    if (rc && f) sl__snapfile_abort(f);
    else if (rc == 0) rc = shared_close(&d->t, f, name, &cf, err, sizeof err);
    if (rc == 0) {
        chain_push(c, &cf);
        c->delta_bytes += cf.size;
        rc = put_refs(&d->t, w, d->kgs, d->nkgs, &d->opsec, d->adopt != NULL, err,
                      sizeof err);
    }
    if (d->adopt) { /* listed now (or, on failure, collected as an orphan) */
        compact_free(d->adopt);
        d->adopt = NULL;
    }
    if (rc) {
        c->broken = true;
        sl__log(SL__LOG_WARN, "window", "delta checkpoint failed", "task=%d error=\"%s\"",
                d->t.task, err[0] ? err : sl_strerror(rc));
    } else {
        sl__log(SL__LOG_DEBUG, "window", "delta written", "task=%d groups=%u values=%zu "
                "bytes=%" PRIu64 " chain=%zu chain_bytes=%" PRIu64 " ms=%.1f", d->t.task, d->ng,
                d->ne, cf.size, c->nfiles, c->full_bytes + c->delta_bytes,
                (double)(sl__clock() - t0) / 1e6);
    }
out:
    atomic_store_explicit(&d->finished, 1, memory_order_release);
    return rc;
}

/* ---- restore ------------------------------------------------------------------- */
typedef struct {
    int32_t kg;
    uint8_t *data;
    size_t len;
} isec;

typedef struct {
    char path[PATH_MAX + 200];
    isec *s;
    size_t n, cap;
} ifile;

struct sl__winchg_imp {
    ifile *f;
    size_t n;
};

void sl__winchg_imp_free(win_op *op)
{
    struct sl__winchg_imp *im = op->cimp;
    if (!im) return;
    for (size_t i = 0; i < im->n; i++) {
        for (size_t k = 0; k < im->f[i].n; k++) free(im->f[i].s[k].data);
        free(im->f[i].s);
    }
    free(im->f);
    free(im);
    op->cimp = NULL;
}

bool sl__winchg_is_ref(const void *data, size_t len)
{
    const uint8_t *p = data;
    return len >= 4 && (uint32_t)(p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24) ==
                           CHAIN_MAGIC;
}

static int load_sec(void *ud, int kind, uint32_t id, int32_t kg, const void *data, size_t len)
{
    (void)kind;
    (void)id;
    ifile *f = ud;
    if (f->n == f->cap) f->s = sl__xrealloc(f->s, (f->cap = f->cap ? 2 * f->cap : 16) * sizeof *f->s);
    uint8_t *copy = sl__xmalloc(len ? len : 1);
    if (len) memcpy(copy, data, len);
    f->s[f->n++] = (isec){.kg = kg, .data = copy, .len = len};
    return 0;
}

/* The file's sections, read once per restore (checked against the
 * reference's size; store.c checks every section's CRC). */
static int load(win_op *op, const char *path, uint64_t size, ifile **out)
{
    if (!op->cimp) op->cimp = sl__xcalloc(1, sizeof *op->cimp);
    struct sl__winchg_imp *im = op->cimp;
    for (size_t i = 0; i < im->n; i++)
        if (strcmp(im->f[i].path, path) == 0) {
            *out = &im->f[i];
            return 0;
        }
    struct stat st;
    if (stat(path, &st) != 0 || (uint64_t)st.st_size != size) {
        sl__log(SL__LOG_WARN, "window", "chain file missing or of the wrong size",
                "path=\"%s\"", path);
        return SL_ECORRUPT;
    }
    ifile f = {0};
    snprintf(f.path, sizeof f.path, "%s", path);
    char err[512];
    int rc = sl__snapfile_read(path, load_sec, &f, err, sizeof err);
    if (rc) {
        for (size_t k = 0; k < f.n; k++) free(f.s[k].data);
        free(f.s);
        sl__log(SL__LOG_WARN, "window", "cannot read a chain file", "error=\"%s\"", err);
        return SL_ECORRUPT;
    }
    im->f = sl__xrealloc(im->f, (im->n + 1) * sizeof *im->f);
    im->f[im->n] = f;
    *out = &im->f[im->n++];
    return 0;
}

static const isec *find_sec(const ifile *f, int32_t kg)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->s[i].kg == kg) return &f->s[i];
    return NULL;
}

static win_op *scratch_new(const win_op *op)
{
    win_op *s = sl__xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->qlock, NULL);
    s->conf = op->conf;
    s->in = op->in;
    s->out = op->out;
    s->nkey = op->nkey;
    s->npart = op->npart;
    memcpy(s->key_cols, op->key_cols, sizeof s->key_cols);
    s->kl = op->kl;
    s->kl.cols = s->key_cols;
    s->aggs = op->aggs; /* shared: restore never adds to them */
    s->naggs = op->naggs;
    s->state_size = op->state_size;
    s->grp_size = op->grp_size;
    s->heap = op->heap;
    s->size = op->size;
    s->step = op->step;
    s->lateness = op->lateness;
    s->nwin = op->nwin;
    s->wm = SL_TS_MIN;
    s->key_groups = op->key_groups;
    s->fp = op->fp;
    s->ts_off = op->ts_off;
    s->ttl = op->ttl;
    return s;
}

static void scratch_free(win_op *s)
{
    while (s->nw) sl__win_drop(s, s->nw - 1);
    free(s->wins);
    free(s->tmp);
    pthread_mutex_destroy(&s->qlock);
    free(s);
}

static int delta_head(const win_op *s, sl__rbuf *r, int64_t *wm)
{
    uint32_t magic = sl__rbuf_u32(r);
    uint64_t fp = sl__rbuf_u64(r);
    *wm = sl__rbuf_i64(r);
    if (r->err || magic != DELTA_MAGIC) return SL_ECORRUPT;
    return fp == s->fp ? 0 : SL_EINVAL;
}

/* A delta's open windows: the others fired since. */
static int apply_open(win_op *s, const isec *sec)
{
    sl__rbuf r = {.p = sec->data, .len = sec->len};
    int64_t wm;
    int rc = delta_head(s, &r, &wm);
    if (rc) return rc;
    uint32_t n = sl__rbuf_u32(&r);
    if (r.err || n > (r.len - r.off) / 8) return SL_ECORRUPT;
    const uint8_t *starts = sl__rbuf_bytes(&r, (size_t)n * 8);
    if (!starts || r.off != r.len) return SL_ECORRUPT;
    for (size_t i = s->nw; i-- > 0;) {
        bool open = false;
        for (uint32_t k = 0; k < n && !open; k++) {
            uint64_t v = 0;
            for (int b = 7; b >= 0; b--) v = v << 8 | starts[(size_t)k * 8 + (size_t)b];
            open = (int64_t)v == s->wins[i]->start;
        }
        if (!open) sl__win_drop(s, i);
    }
    s->wm = wm;
    return 0;
}

/* A delta's groups of one key group: fixed-size states replaced, the
 * values their sets gained added. */
static int apply_groups(win_op *s, int32_t kg, const isec *sec)
{
    sl__rbuf r = {.p = sec->data, .len = sec->len};
    int64_t wm;
    int rc = delta_head(s, &r, &wm);
    if (rc) return rc;
    uint32_t ng = sl__rbuf_u32(&r);
    for (uint32_t i = 0; i < ng && !r.err; i++) {
        int64_t start = sl__rbuf_i64(&r), end;
        uint32_t klen;
        const uint8_t *key = (const uint8_t *)sl__rbuf_str(&r, &klen);
        if (r.err || start % s->step != 0 || __builtin_add_overflow(start, s->size, &end))
            return SL_ECORRUPT;
        win *w = sl__win_get(s, start);
        bool fresh;
        uint8_t *g = sl__bmap_upsert(&w->groups, key, klen, sl__wkey_hash(&s->kl, key, klen),
                                     &fresh);
        if (fresh) {
            memcpy(g + s->state_size, &kg, sizeof kg);
            s->ngroups++;
        }
        for (size_t a = 0; a < s->naggs; a++) {
            const sl__agg *ag = &s->aggs[a];
            if (ag->kind == SL_AGG_COUNT_DISTINCT && ag->in_type != SL_STRING) {
                uint32_t n = sl__rbuf_u32(&r);
                if (r.err || n > (r.len - r.off) / 8) return SL_ECORRUPT;
                for (uint32_t k = 0; k < n; k++)
                    sl__set64_insert((sl__set64 *)(g + ag->off), sl__rbuf_u64(&r));
                continue;
            }
            uint32_t slen;
            const uint8_t *sb = (const uint8_t *)sl__rbuf_str(&r, &slen);
            if (r.err) return SL_ECORRUPT;
            sl__agg_state_free(ag, g);
            int64_t got = sl__agg_deserialize(ag, g, sb, slen);
            if (got < 0 || (uint32_t)got != slen) return SL_ECORRUPT;
        }
        if (s->ts_off) sl__grp_set_ts(s, g, sl__rbuf_i64(&r));
    }
    return r.err || r.off != r.len ? SL_ECORRUPT : 0;
}

/* ---- compaction (its own thread) ---------------------------------------------- */
/* A chain that has grown is folded into a new full materialisation by a
 * thread of its own, off the task, as Flink's changelog backend
 * materialises in the background: the chain's files as they stood at a
 * barrier are merged key group by key group (m_full, m_delta, m_emit) into
 * what a synchronous snapshot at that barrier holds, written as <name> and
 * held from retention (sl__ck_shared_hold) until a checkpoint lists it.
 * At a later barrier the task hands a finished one to the writer
 * (compact_settle, d->adopt), which makes the chain that file plus the
 * deltas written since (compact_adopt). The task copies no group for it:
 * copy-on-write (winsnap.c) of a real-time window's state, whose groups
 * are all hot, meant a burst of copies right after the barrier, the tail of
 * the pipeline latency. While it runs only `done` and `cancel` are shared;
 * the rest is the thread's until `done`, then the task's and the writer's. */
typedef struct compaction {
    pthread_t th;
    target t;
    /* the operator's fixed configuration, copied by the task */
    const sl__agg *aggs; /* read only: kind, off, in_type */
    size_t naggs, grp_size;
    bool logged[64], ts;
    uint64_t fp;
    cfile *files;
    size_t n;
    char name[160];
    cfile out;
    bool published;
    int rc;
    uint64_t ns;
    atomic_int done, cancel;
} compaction;

/* ---- the merge: the chain's sections of one key group, no set rebuilt ---- */
/* Every value a delta logs is new to its set (within a window a set only
 * grows and the log holds only first insertions), so a group's set is the
 * full file's values followed by each delta's: a concatenation. Its other
 * states and its time are the newest file's. A group is found by its
 * window start and key in a map; windows not open at the last barrier are
 * dropped; the groups go out in window.c's order (invariant 7), the bytes
 * of sl__win_group_bytes. */
typedef struct {
    uint32_t g, a; /* group (the map's insertion index), aggregate */
    const uint8_t *p;
    uint32_t n; /* values (8 bytes, little-endian) at p */
} mrun;

typedef struct {
    const uint8_t *p;
    uint32_t len; /* a serialised state */
} mst;

typedef struct {
    const compaction *k;
    const int64_t *open; /* the windows open at the last barrier */
    uint32_t nopen;
    sl__bmap m; /* key: u64 big-endian start ^ sign bit, then the key bytes;
                 * value: const uint8_t *ts, naggs x mst, u32 group index */
    mrun *runs;
    size_t nruns, capruns;
    uint8_t *grp;  /* a group, to measure the full's fixed states */
    uint8_t *mkey; /* the map key being built */
    size_t mkcap;
    uint32_t *ord;
    size_t ordcap;
    sl__buf out, gb;
} merger;

/* Whether a window is still open at the last barrier: groups of the
 * others are skipped unread (most of a chain's bytes when windows come and
 * go quickly). */
static bool m_open(const merger *mg, int64_t start)
{
    uint32_t lo = 0, hi = mg->nopen; /* open[] is sorted */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (mg->open[mid] < start) lo = mid + 1;
        else hi = mid;
    }
    return lo < mg->nopen && mg->open[lo] == start;
}

static void *m_group(merger *mg, int64_t start, const uint8_t *key, uint32_t klen,
                     uint32_t *gi)
{
    if ((size_t)klen + 8 > mg->mkcap)
        mg->mkey = sl__xrealloc(mg->mkey, mg->mkcap = (size_t)klen + 64);
    uint64_t u = (uint64_t)start ^ ((uint64_t)1 << 63);
    for (int i = 0; i < 8; i++) mg->mkey[i] = (uint8_t)(u >> (56 - 8 * i));
    if (klen) memcpy(mg->mkey + 8, key, klen);
    *gi = sl__bmap_count(&mg->m);
    bool fresh;
    void *v = sl__bmap_upsert(&mg->m, mg->mkey, (size_t)klen + 8,
                              sl__hash_bytes(mg->mkey, (size_t)klen + 8, 0), &fresh);
    /* the group's index (insertion order) is kept after its states */
    uint8_t *ix = (uint8_t *)v + 8 + mg->k->naggs * sizeof(mst);
    if (fresh) memcpy(ix, gi, sizeof *gi);
    else memcpy(gi, ix, sizeof *gi);
    return v;
}

static void m_run(merger *mg, uint32_t g, uint32_t a, const uint8_t *p, uint32_t n)
{
    if (!n) return;
    if (mg->nruns == mg->capruns)
        mg->runs = sl__xrealloc(mg->runs, (mg->capruns = mg->capruns ? 2 * mg->capruns : 1024) *
                                              sizeof *mg->runs);
    mg->runs[mg->nruns++] = (mrun){.g = g, .a = a, .p = p, .n = n};
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* The full file's section of the key group (window.c's format). */
static int m_full(merger *mg, const isec *sec, int64_t *wm)
{
    const compaction *k = mg->k;
    sl__rbuf r = {.p = sec->data, .len = sec->len};
    uint32_t magic = sl__rbuf_u32(&r);
    uint64_t fp = sl__rbuf_u64(&r);
    *wm = sl__rbuf_i64(&r);
    if (r.err || magic != SL__WIN_SNAP_MAGIC || fp != k->fp) return SL_ECORRUPT;
    uint32_t nwin = sl__rbuf_u32(&r);
    for (uint32_t wi = 0; wi < nwin && !r.err; wi++) {
        int64_t start = sl__rbuf_i64(&r);
        uint32_t ng = sl__rbuf_u32(&r);
        bool live = m_open(mg, start);
        for (uint32_t gi = 0; gi < ng && !r.err; gi++) {
            uint32_t klen, slen, g;
            const uint8_t *key = (const uint8_t *)sl__rbuf_str(&r, &klen);
            const uint8_t *sb = (const uint8_t *)sl__rbuf_str(&r, &slen);
            if (r.err || !live) continue;
            uint8_t *v = m_group(mg, start, key, klen, &g);
            mst *st = (mst *)(v + 8);
            size_t off = 0;
            for (size_t a = 0; a < k->naggs; a++) {
                if (k->logged[a]) {
                    if (slen - off < 8) return SL_ECORRUPT;
                    uint64_t n = le64(sb + off);
                    if (n > (slen - off - 8) / 8) return SL_ECORRUPT;
                    m_run(mg, g, (uint32_t)a, sb + off + 8, (uint32_t)n);
                    off += 8 + 8 * (size_t)n;
                    continue;
                }
                int64_t used = sl__agg_deserialize(&k->aggs[a], mg->grp, sb + off, slen - off);
                sl__agg_state_free(&k->aggs[a], mg->grp);
                if (used < 0) return SL_ECORRUPT;
                st[a] = (mst){.p = sb + off, .len = (uint32_t)used};
                off += (size_t)used;
            }
            if (k->ts) {
                if (slen - off < 8) return SL_ECORRUPT;
                const uint8_t *ts = sb + off;
                memcpy(v, &ts, sizeof ts);
                off += 8;
            }
            if (off != slen) return SL_ECORRUPT;
        }
    }
    return r.err || r.off != r.len ? SL_ECORRUPT : 0;
}

/* A delta's section of the key group (delta_sections' format). */
static int m_delta(merger *mg, const isec *sec)
{
    const compaction *k = mg->k;
    sl__rbuf r = {.p = sec->data, .len = sec->len};
    uint32_t magic = sl__rbuf_u32(&r);
    uint64_t fp = sl__rbuf_u64(&r);
    (void)sl__rbuf_i64(&r);
    if (r.err || magic != DELTA_MAGIC || fp != k->fp) return SL_ECORRUPT;
    uint32_t ng = sl__rbuf_u32(&r);
    for (uint32_t i = 0; i < ng && !r.err; i++) {
        int64_t start = sl__rbuf_i64(&r);
        uint32_t klen, g;
        const uint8_t *key = (const uint8_t *)sl__rbuf_str(&r, &klen);
        if (r.err) break;
        if (!m_open(mg, start)) { /* fired since: skipped */
            for (size_t a = 0; a < k->naggs && !r.err; a++) {
                uint32_t n;
                if (k->logged[a]) {
                    n = sl__rbuf_u32(&r);
                    if (!r.err) (void)sl__rbuf_bytes(&r, (size_t)n * 8); /* r.err past the end */
                } else {
                    (void)sl__rbuf_str(&r, &n);
                }
            }
            if (k->ts) (void)sl__rbuf_bytes(&r, 8);
            continue;
        }
        uint8_t *v = m_group(mg, start, key, klen, &g);
        mst *st = (mst *)(v + 8);
        for (size_t a = 0; a < k->naggs && !r.err; a++) {
            if (k->logged[a]) {
                uint32_t n = sl__rbuf_u32(&r);
                if (r.err || n > (r.len - r.off) / 8) return SL_ECORRUPT;
                m_run(mg, g, (uint32_t)a, sl__rbuf_bytes(&r, (size_t)n * 8), n);
                continue;
            }
            uint32_t slen;
            const uint8_t *sb = (const uint8_t *)sl__rbuf_str(&r, &slen);
            st[a] = (mst){.p = sb, .len = slen};
        }
        if (k->ts) {
            const uint8_t *ts = sl__rbuf_bytes(&r, 8);
            memcpy(v, &ts, sizeof ts);
        }
    }
    return r.err || r.off != r.len ? SL_ECORRUPT : 0;
}

static _Thread_local const sl__bmap *g_mord; /* qsort has no context argument */

static int mord_cmp(const void *x, const void *y)
{
    const uint8_t *ka, *kb;
    uint32_t la, lb;
    sl__bmap_at(g_mord, *(const uint32_t *)x, &ka, &la);
    sl__bmap_at(g_mord, *(const uint32_t *)y, &kb, &lb);
    int c = memcmp(ka, kb, la < lb ? la : lb);
    if (c) return c;
    return (la > lb) - (la < lb);
}

static int64_t mkey_start(const uint8_t *mk)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | mk[i];
    return (int64_t)(u ^ ((uint64_t)1 << 63));
}

/* The merged key group as a section of the new full file. */
static int m_emit(merger *mg, int32_t kg, int64_t wm, sl__snapfile *f)
{
    const compaction *k = mg->k;
    uint32_t ng = sl__bmap_count(&mg->m);
    /* the runs by (group, aggregate), file order kept: a counting sort */
    size_t nb = (size_t)ng * k->naggs;
    size_t *cnt = sl__xcalloc(nb + 1, sizeof *cnt);
    for (size_t i = 0; i < mg->nruns; i++) cnt[(size_t)mg->runs[i].g * k->naggs + mg->runs[i].a + 1]++;
    for (size_t i = 1; i <= nb; i++) cnt[i] += cnt[i - 1];
    mrun *sorted = sl__xmalloc((mg->nruns ? mg->nruns : 1) * sizeof *sorted);
    size_t *fill = sl__xmalloc((nb ? nb : 1) * sizeof *fill);
    memcpy(fill, cnt, nb * sizeof *fill);
    for (size_t i = 0; i < mg->nruns; i++)
        sorted[fill[(size_t)mg->runs[i].g * k->naggs + mg->runs[i].a]++] = mg->runs[i];
    free(fill);
    /* the groups of the windows still open, in window.c's order */
    if (ng > mg->ordcap) mg->ord = sl__xrealloc(mg->ord, (mg->ordcap = ng) * sizeof *mg->ord);
    uint32_t no = 0;
    for (uint32_t g = 0; g < ng; g++) {
        const uint8_t *mk;
        sl__bmap_at(&mg->m, g, &mk, NULL);
        if (m_open(mg, mkey_start(mk))) mg->ord[no++] = g;
    }
    g_mord = &mg->m;
    qsort(mg->ord, no, sizeof *mg->ord, mord_cmp);
    int rc = 0;
    if (no) {
        sl__buf *b = &mg->out;
        b->len = 0;
        sl__buf_put_u32(b, SL__WIN_SNAP_MAGIC);
        sl__buf_put_u64(b, k->fp);
        sl__buf_put_i64(b, wm);
        uint32_t nwin = 0;
        int64_t prev = 0;
        for (uint32_t i = 0; i < no; i++) {
            const uint8_t *mk;
            sl__bmap_at(&mg->m, mg->ord[i], &mk, NULL);
            int64_t st = mkey_start(mk);
            nwin += i == 0 || st != prev;
            prev = st;
        }
        sl__buf_put_u32(b, nwin);
        for (uint32_t i = 0; i < no && rc == 0;) {
            const uint8_t *mk;
            sl__bmap_at(&mg->m, mg->ord[i], &mk, NULL);
            int64_t start = mkey_start(mk);
            uint32_t j = i;
            for (;; j++) {
                if (j == no) break;
                const uint8_t *mj;
                sl__bmap_at(&mg->m, mg->ord[j], &mj, NULL);
                if (mkey_start(mj) != start) break;
            }
            sl__buf_put_i64(b, start);
            sl__buf_put_u32(b, j - i);
            for (; i < j && rc == 0; i++) {
                uint32_t g = mg->ord[i], klen;
                const uint8_t *key;
                const uint8_t *v = sl__bmap_at(&mg->m, g, &key, &klen);
                const mst *st = (const mst *)(v + 8);
                sl__buf *gb = &mg->gb;
                gb->len = 0;
                for (size_t a = 0; a < k->naggs; a++) {
                    if (!k->logged[a]) {
                        if (!st[a].p) rc = SL_ECORRUPT; /* a state no file gave */
                        else sl__buf_put(gb, st[a].p, st[a].len);
                        continue;
                    }
                    size_t r0 = cnt[(size_t)g * k->naggs + a], r1 = cnt[(size_t)g * k->naggs + a + 1];
                    uint64_t n = 0;
                    for (size_t q = r0; q < r1; q++) n += sorted[q].n;
                    sl__buf_put_u64(gb, n);
                    for (size_t q = r0; q < r1; q++)
                        sl__buf_put(gb, sorted[q].p, (size_t)sorted[q].n * 8);
                }
                if (k->ts) {
                    const uint8_t *ts;
                    memcpy(&ts, v, sizeof ts);
                    if (!ts) rc = SL_ECORRUPT;
                    else sl__buf_put(gb, ts, 8);
                }
                if (gb->len > UINT32_MAX) rc = SL_EINVAL;
                sl__buf_put_str(b, (const char *)key + 8, klen - 8);
                sl__buf_put_str(b, (const char *)gb->p, gb->len);
            }
        }
        if (rc == 0) rc = sl__snapfile_section(f, SL__SEC_OP, k->t.op_id, kg, b->p, b->len);
    }
    free(sorted);
    free(cnt);
    return rc;
}

static int i64_cmp(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static int kg_cmp(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

static void *compact_main(void *arg)
{
    compaction *k = arg;
    /* below the pipeline's threads: nobody waits for it (the task takes it
     * on whenever it is done), so it only takes CPU they leave; Linux sets
     * a thread's nice value through its thread id */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), COMPACT_NICE);
    uint64_t t0 = sl__clock();
    char err[1024] = "";
    /* every file of the chain, read once (a restore reads them the same) */
    win_op holder = {0}; /* load() keeps the files in holder.cimp */
    ifile **fl = sl__xcalloc(k->n ? k->n : 1, sizeof *fl);
    int rc = k->n >= 2 ? 0 : SL_EINVAL;
    for (size_t i = 0; i < k->n && rc == 0; i++) {
        char path[PATH_MAX + 200];
        snprintf(path, sizeof path, "%s/shared/%s", k->t.root, k->files[i].name);
        rc = load(&holder, path, k->files[i].size, &fl[i]);
    }
    for (size_t i = 0; i < k->n && rc == 0; i++) fl[i] = &holder.cimp->f[i]; /* load grows f */
    /* the last delta: the barrier's watermark and open windows */
    int64_t wm = 0;
    uint32_t nopen = 0;
    int64_t *open = NULL;
    const isec *last = rc == 0 ? find_sec(fl[k->n - 1], -1) : NULL;
    if (rc == 0 && !last) rc = SL_ECORRUPT;
    if (rc == 0) {
        sl__rbuf r = {.p = last->data, .len = last->len};
        uint32_t magic = sl__rbuf_u32(&r);
        (void)sl__rbuf_u64(&r);
        wm = sl__rbuf_i64(&r);
        nopen = sl__rbuf_u32(&r);
        if (r.err || magic != DELTA_MAGIC || nopen > (r.len - r.off) / 8) rc = SL_ECORRUPT;
        open = sl__xmalloc((nopen ? nopen : 1) * sizeof *open);
        for (uint32_t i = 0; i < nopen && rc == 0; i++) open[i] = sl__rbuf_i64(&r);
        if (rc == 0 && nopen > 1) qsort(open, nopen, sizeof *open, i64_cmp);
    }
    /* the key groups: any file's */
    int32_t *kgs = NULL;
    size_t nkg = 0, capkg = 0;
    for (size_t i = 0; i < k->n && rc == 0; i++)
        for (size_t j = 0; j < fl[i]->n; j++) {
            int32_t kg = fl[i]->s[j].kg;
            bool seen = kg < 0;
            for (size_t q = 0; q < nkg && !seen; q++) seen = kgs[q] == kg;
            if (seen) continue;
            if (nkg == capkg) kgs = sl__xrealloc(kgs, (capkg = capkg ? 2 * capkg : 64) * sizeof *kgs);
            kgs[nkg++] = kg;
        }
    if (nkg > 1) qsort(kgs, nkg, sizeof *kgs, kg_cmp);
    if (rc == 0 && sl__fault("compact")) rc = SL_EIO; /* test hook: a failed compaction */
    sl__snapfile *f = NULL;
    if (rc == 0 && !(f = shared_create(&k->t, k->name, err, sizeof err))) rc = SL_EIO;
    merger mg = {.k = k, .open = open, .nopen = nopen};
    sl__bmap_init(&mg.m, 8 + k->naggs * sizeof(mst) + sizeof(uint32_t));
    mg.grp = sl__xcalloc(1, k->grp_size ? k->grp_size : 1);
    for (size_t q = 0; q < nkg && rc == 0; q++) {
        if (atomic_load(&k->cancel)) {
            rc = SL_ECANCELED;
            break;
        }
        int32_t kg = kgs[q];
        sl__bmap_clear(&mg.m);
        mg.nruns = 0;
        int64_t fwm = 0;
        const isec *sec = find_sec(fl[0], kg);
        if (sec) rc = m_full(&mg, sec, &fwm);
        for (size_t i = 1; i < k->n && rc == 0; i++)
            if ((sec = find_sec(fl[i], kg))) rc = m_delta(&mg, sec);
        if (rc == 0) rc = m_emit(&mg, kg, wm, f);
    }
    sl__crash_point("materialise-write");
    if (rc && f) sl__snapfile_abort(f);
    else if (rc == 0) rc = shared_close(&k->t, f, k->name, &k->out, err, sizeof err);
    k->published = rc == 0;
    sl__bmap_close(&mg.m);
    free(mg.runs);
    free(mg.grp);
    free(mg.mkey);
    free(mg.ord);
    sl__buf_free(&mg.out);
    sl__buf_free(&mg.gb);
    free(kgs);
    free(open);
    free(fl);
    sl__winchg_imp_free(&holder);
    k->rc = rc;
    k->ns = sl__clock() - t0;
    if (rc == 0)
        sl__log(SL__LOG_INFO, "window", "chain compacted into a full materialisation",
                "task=%d files=%zu bytes=%" PRIu64 " ms=%.1f", k->t.task, k->n, k->out.size,
                (double)k->ns / 1e6);
    else if (rc != SL_ECANCELED)
        sl__log(SL__LOG_WARN, "window", "compacting the chain failed; it goes on as it is",
                "task=%d error=\"%s\"", k->t.task, err[0] ? err : sl_strerror(rc));
    atomic_store_explicit(&k->done, 1, memory_order_release);
    return NULL;
}

static void compact_free(compaction *k)
{
    if (!k) return;
    sl__ck_shared_release(k->name);
    free(k->files);
    free(k);
}

/* A compaction not taken on: its file deleted, its name released. */
static void compact_discard(compaction *k)
{
    if (!k) return;
    if (k->published) {
        char path[PATH_MAX + 200];
        snprintf(path, sizeof path, "%s/shared/%s", k->t.root, k->name);
        unlink(path);
    }
    compact_free(k);
}

/* Task, at close: stops a running compaction and deletes what it wrote. */
static void compact_cancel(compaction *k)
{
    if (!k) return;
    atomic_store(&k->cancel, 1);
    pthread_join(k->th, NULL);
    compact_discard(k);
}

/* Task, at a barrier with no checkpoint in flight (the chain is the
 * task's): starts folding the chain as it stands. */
static void compact_start(win_op *op, const sl__snap_deferred *dd)
{
    sl__winchg *c = op->chg;
    compaction *k = sl__xcalloc(1, sizeof *k);
    target_init(&k->t, op, dd);
    k->n = c->nfiles;
    k->files = sl__xmalloc(k->n * sizeof *k->files);
    memcpy(k->files, c->files, k->n * sizeof *k->files);
    snprintf(k->name, sizeof k->name, "%s-%" PRIu64 ".wf", c->id, ++c->seq);
    sl__ck_shared_hold(k->name);
    k->aggs = op->aggs;
    k->naggs = op->naggs;
    k->grp_size = op->grp_size;
    k->ts = op->ts_off != 0;
    k->fp = op->fp;
    for (size_t a = 0; a < op->naggs; a++) k->logged[a] = op->aggs[a].log != NULL;
    atomic_init(&k->done, 0);
    atomic_init(&k->cancel, 0);
    if (pthread_create(&k->th, NULL, compact_main, k) != 0) {
        compact_free(k); /* no thread: the chain goes on, tried again next time */
        return;
    }
    c->comp = k;
}

/* Task, at a barrier after reaping: a finished compaction to take on, or
 * NULL. One the chain has moved away from (a full materialisation since,
 * or `full` now) is discarded; a running one is cancelled if `full`. */
static compaction *compact_settle(win_op *op, bool full)
{
    sl__winchg *c = op->chg;
    compaction *k = c->comp;
    if (!k) return NULL;
    if (full) atomic_store(&k->cancel, 1);
    if (!atomic_load_explicit(&k->done, memory_order_acquire)) return NULL;
    pthread_join(k->th, NULL);
    c->comp = NULL;
    if (k->rc == 0 && !atomic_load(&k->cancel) && c->nfiles >= k->n &&
        strcmp(c->files[0].name, k->files[0].name) == 0)
        return k;
    compact_discard(k);
    return NULL;
}

/* Writer: the chain becomes the compaction's file plus the deltas after
 * the files it folded. */
static void compact_adopt(sl__winchg *c, compaction *k)
{
    size_t rest = c->nfiles - k->n;
    memmove(c->files + 1, c->files + k->n, rest * sizeof *c->files);
    c->files[0] = k->out;
    c->nfiles = rest + 1;
    c->full_bytes = k->out.size;
    c->delta_bytes = 0;
    for (size_t i = 1; i < c->nfiles; i++) c->delta_bytes += c->files[i].size;
}

typedef struct {
    int64_t wm;
    char root[PATH_MAX];
    uint32_t n;
    cfile *f;
} cref;

static int ref_parse(const win_op *op, const void *data, size_t len, cref *ref)
{
    sl__rbuf r = {.p = data, .len = len};
    uint32_t magic = sl__rbuf_u32(&r);
    uint64_t fp = sl__rbuf_u64(&r);
    ref->wm = sl__rbuf_i64(&r);
    uint32_t rl;
    const char *root = sl__rbuf_str(&r, &rl);
    ref->n = sl__rbuf_u32(&r);
    if (r.err || magic != CHAIN_MAGIC || rl == 0 || rl >= sizeof ref->root ||
        memchr(root, 0, rl) || ref->n == 0 || ref->n > CHAIN_MAX + 2)
        return SL_ECORRUPT;
    if (fp != op->fp) return SL_EINVAL;
    memcpy(ref->root, root, rl);
    ref->root[rl] = 0;
    ref->f = sl__xcalloc(ref->n, sizeof *ref->f);
    for (uint32_t i = 0; i < ref->n; i++) {
        uint32_t nl;
        const char *name = sl__rbuf_str(&r, &nl);
        ref->f[i].size = sl__rbuf_u64(&r);
        ref->f[i].crc = sl__rbuf_u32(&r);
        /* a plain name in <root>/shared: nothing else is opened */
        if (r.err || nl == 0 || nl >= sizeof ref->f[i].name || memchr(name, '/', nl) ||
            memchr(name, 0, nl) || name[0] == '.')
            goto corrupt;
        memcpy(ref->f[i].name, name, nl);
        ref->f[i].name[nl] = 0;
        size_t k = strlen(ref->f[i].name);
        bool full = k > 3 && strcmp(ref->f[i].name + k - 3, ".wf") == 0;
        bool dl = k > 3 && strcmp(ref->f[i].name + k - 3, ".wd") == 0;
        if (i == 0 ? !full : !dl) goto corrupt;
    }
    if (r.off != r.len) goto corrupt;
    return 0;
corrupt:
    free(ref->f);
    ref->f = NULL;
    return SL_ECORRUPT;
}

int sl__winchg_restore(win_op *op, int32_t kg, const void *data, size_t len)
{
    cref ref;
    int rc = ref_parse(op, data, len, &ref);
    if (rc) return rc;
    win_op *s = scratch_new(op);
    for (uint32_t i = 0; i < ref.n && rc == 0; i++) {
        char path[PATH_MAX + 200];
        snprintf(path, sizeof path, "%s/shared/%s", ref.root, ref.f[i].name);
        ifile *f;
        if ((rc = load(op, path, ref.f[i].size, &f))) break;
        if (i == 0) {
            const isec *sec = find_sec(f, kg);
            if (sec) rc = sl__window_vt.restore(s, kg, sec->data, sec->len);
            continue;
        }
        const isec *open = find_sec(f, -1), *sec = find_sec(f, kg);
        if (!open) rc = SL_ECORRUPT;
        if (rc == 0) rc = apply_open(s, open);
        if (rc == 0 && sec) rc = apply_groups(s, kg, sec);
    }
    free(ref.f);
    if (rc == 0 && s->wm != ref.wm) rc = SL_ECORRUPT; /* the last file is the barrier's */
    /* the state at the barrier, as a full snapshot's section: restored as
     * usual (invariant 4) */
    sl__snap_writer *mw = rc == 0 ? sl__snap_writer_mem() : NULL;
    if (mw) rc = sl__window_vt.snapshot(s, mw);
    int32_t skg;
    const void *sdata;
    size_t slen, it = 0;
    while (rc == 0 && mw && sl__snap_writer_mem_next(mw, &it, &skg, &sdata, &slen))
        if (skg == kg) rc = sl__window_vt.restore(op, kg, sdata, slen);
    if (mw) sl__snap_writer_free(mw);
    scratch_free(s);
    return rc;
}
