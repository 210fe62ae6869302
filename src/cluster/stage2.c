/* stage2.c — the distributed mode's keyed stage: the repartition
 * partitions (= key groups) this instance was assigned, read with
 * read_committed, through the job's keyed chain (windows, k-anonymity)
 * into the Kafka sink, which produces the results in the stage's
 * transaction. State lives in the compacted changelog topic, one record
 * per (operator, key group) holding that key group's snapshot sections as
 * of the epoch, plus one "wm" record per key group holding its watermark
 * map; compaction keeps the latest. So the existing snapshot/restore code
 * of every operator is reused as is (Kafka Streams logs each key's change
 * instead; recorded in docs/design.md).
 *
 * Invariants:
 * 1. On assignment the operators are fresh and restored, for each owned
 *    key group, from the changelog as committed — read with
 *    read_committed up to its end, AFTER the committed offsets were
 *    fetched stably (instance.c on_assign), so state and offsets come from
 *    the same transaction (s2_assign, restore).
 * 2. Every epoch writes, for every owned key group whose sections changed
 *    since the last commit, the new sections (or a tombstone when the
 *    group's state is empty), and the watermark map of every key group
 *    whose map changed, in the stage's transaction (s2_precommit).
 * 3. The stage's watermark is the minimum over owned key groups of their
 *    maps' minimum, never decreases, and is passed down the chain only in
 *    an open transaction, since windows fire on it (advance_wm).
 * 4. Key group -1 sections (per-instance statistics of window, session,
 *    interval_join) are not kept; instance.c refuses operators whose -1
 *    section is more than that.
 * 5. After a restore, every stateful operator's watermark is at most the
 *    stage's (the minimum over the owned key groups' maps): an operator
 *    keeps one watermark for all its key groups and restores it from the
 *    sections it gets, but a key group without state (never committed, or
 *    emptied) may be behind the others, and its rows must not be taken for
 *    late ones (lower_op_wms). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "core/log.h"

#define RESTORE_TIMEOUT_MS 120000

typedef struct {
    sl__out out;
    clu *c;
    int next; /* op receiving the batch; nops = the sink */
} link2;

struct s2_state {
    bool open;
    void **op;
    link2 *links;
    void *sink;
    bool *owned;
    sl__wmmap *wm;
    bool *wm_dirty;
    int64_t wm_cur;
    bool need_wm;
    uint64_t *base, *pend; /* [op * G + kg]: hash of the committed / written sections */
    sl__buf *val;          /* per key group: sections being assembled */
    sl__buf msg;
};

/* ---- the chain ------------------------------------------------------------ */
static int sink_write(clu *c, sl_batch *b)
{
    s2_state *s = c->st2;
    char err[512] = "";
    int rc = c->cut.sink_vt->write(s->sink, b, err, sizeof err);
    if (rc) {
        sl__log(SL__LOG_WARN, "cluster", "sink write failed; rewinding", "stage=2 epoch=%" PRIu64
                " error=\"%s\"", c->s2.epoch, err);
        c->s2.reset = true;
    } else {
        uint64_t data = 0;
        for (uint32_t r = 0; r < b->n; r++) data += b->kind[r] == SL_KIND_DATA;
        sl__count(&c->ctx, SL__CTR_RECORDS_OUT, data);
    }
    sl__batch_free(b);
    return rc;
}

static int chain_push(sl__out *o, sl_batch *b)
{
    link2 *l = (link2 *)o;
    clu *c = l->c;
    if (b->n == 0) {
        sl__batch_free(b);
        return 0;
    }
    if (l->next == c->cut.nops2) return sink_write(c, b);
    return c->cut.ops2[l->next].vt->batch(c->st2->op[l->next], b, &c->st2->links[l->next + 1].out);
}

/* Invariant 3. */
static int advance_wm(clu *c)
{
    s2_state *s = c->st2;
    int64_t wm = SL_TS_MAX;
    bool any = false;
    for (int g = 0; g < c->G; g++)
        if (s->owned[g]) {
            int64_t w = sl__wmmap_min(&s->wm[g]);
            if (w < wm) wm = w;
            any = true;
        }
    s->need_wm = false;
    if (!any || wm <= s->wm_cur) return 0;
    int rc = sl__clu_begin(&c->s2);
    if (rc) return rc;
    s->wm_cur = wm;
    for (int i = 0; i < c->cut.nops2 && !rc; i++)
        if (c->cut.ops2[i].vt->watermark)
            rc = c->cut.ops2[i].vt->watermark(s->op[i], wm, &s->links[i + 1].out);
    return rc;
}

/* ---- instances ----------------------------------------------------------- */
static void close_instances(clu *c)
{
    s2_state *s = c->st2;
    if (!s->open) return;
    for (int i = 0; i < c->cut.nops2; i++)
        if (s->op[i]) c->cut.ops2[i].vt->close(s->op[i]);
    memset(s->op, 0, sizeof(void *) * (size_t)(c->cut.nops2 + 1));
    if (s->sink) c->cut.sink_vt->close(s->sink);
    s->sink = NULL;
    s->open = false;
}

static int open_instances(clu *c, char *err, size_t esz)
{
    s2_state *s = c->st2;
    const sl__cut *k = &c->cut;
    s->open = true;
    for (int i = 0; i < k->nops2; i++) {
        int rc = k->ops2[i].vt->open(&s->op[i], k->ops2[i].conf, &k->ops2[i].info, &c->ctx,
                                     err, esz);
        if (rc) return rc;
    }
    return sl__kafka_sink_open_txn(&s->sink, k->sink_conf, k->out_schema, &c->ctx, c->s2.prod,
                                   err, esz);
}

int sl__s2_open(clu *c, char *err, size_t esz)
{
    (void)err;
    (void)esz;
    s2_state *s = sl__xcalloc(1, sizeof *s);
    c->st2 = s;
    int G = c->G, n = c->cut.nops2;
    s->op = sl__xcalloc((size_t)n + 1, sizeof *s->op);
    s->links = sl__xcalloc((size_t)n + 1, sizeof *s->links);
    for (int i = 0; i <= n; i++)
        s->links[i] = (link2){.out = {.push = chain_push, .batch_cap = c->cut.batch_cap},
                              .c = c, .next = i};
    s->owned = sl__xcalloc((size_t)G, sizeof *s->owned);
    s->wm = sl__xcalloc((size_t)G, sizeof *s->wm);
    s->wm_dirty = sl__xcalloc((size_t)G, sizeof *s->wm_dirty);
    s->base = sl__xcalloc((size_t)G * (size_t)(n + 1), sizeof *s->base);
    s->pend = sl__xcalloc((size_t)G * (size_t)(n + 1), sizeof *s->pend);
    s->val = sl__xcalloc((size_t)G, sizeof *s->val);
    for (int g = 0; g < G; g++) sl__wmmap_init(&s->wm[g], c->src.ntp);
    s->wm_cur = SL_TS_MIN;
    return 0;
}

void sl__s2_revoke(clu *c)
{
    s2_state *s = c->st2;
    close_instances(c);
    for (int g = 0; g < c->G; g++) {
        s->owned[g] = false;
        s->wm_dirty[g] = false;
        sl__wmmap_close(&s->wm[g]);
        sl__wmmap_init(&s->wm[g], c->src.ntp);
    }
    size_t nb = (size_t)c->G * (size_t)(c->cut.nops2 + 1);
    memset(s->base, 0, nb * sizeof *s->base);
    memset(s->pend, 0, nb * sizeof *s->pend);
    s->wm_cur = SL_TS_MIN;
    s->need_wm = false;
}

void sl__s2_close(clu *c)
{
    s2_state *s = c->st2;
    if (!s) return;
    sl__s2_revoke(c);
    for (int g = 0; g < c->G; g++) {
        sl__wmmap_close(&s->wm[g]);
        sl__buf_free(&s->val[g]);
    }
    free(s->op);
    free(s->links);
    free(s->owned);
    free(s->wm);
    free(s->wm_dirty);
    free(s->base);
    free(s->pend);
    free(s->val);
    sl__buf_free(&s->msg);
    free(s);
    c->st2 = NULL;
}

/* ---- restore (invariant 1) ---------------------------------------------- */
static uint64_t val_hash(const void *p, size_t n)
{
    return n ? sl__hash_bytes(p, n, 0x5c1u) | 1 : 0; /* 0 = no state */
}

/* Which op a changelog key names: its index in ops2, -2 for "wm", -1 none. */
static int key_op(clu *c, const void *key, size_t klen)
{
    if (klen == 2 && !memcmp(key, "wm", 2)) return -2;
    char k[32];
    if (klen < 4 || klen >= sizeof k || memcmp(key, "op:", 3)) return -1;
    memcpy(k, key, klen);
    k[klen] = 0;
    uint32_t id = (uint32_t)strtoul(k + 3, NULL, 10);
    for (int i = 0; i < c->cut.nops2; i++)
        if (c->cut.ops2[i].info.op_id == id) return i;
    return -1;
}

static int apply_sections(clu *c, int op, int kg, const unsigned char *p, size_t len)
{
    sl__rbuf r = {.p = p, .len = len};
    while (r.off < r.len) {
        uint32_t n = sl__rbuf_u32(&r);
        const void *d = sl__rbuf_bytes(&r, n);
        if (r.err || !d) return SL_ECORRUPT;
        int rc = c->cut.ops2[op].vt->restore(c->st2->op[op], kg, d, n);
        if (rc) return rc;
    }
    return 0;
}

static int make_restorer(clu *c, rd_kafka_t **out, char *err, size_t esz)
{
    char group[600];
    snprintf(group, sizeof group, "%s-restore", c->s2.group);
    const char *fixed[] = {"group.id", group, "enable.auto.commit", "false",
                           "isolation.level", "read_committed", "enable.partition.eof", "true",
                           "auto.offset.reset", "earliest", "client.id", "sluice-cluster-restore",
                           NULL};
    rd_kafka_conf_t *kc;
    int rc = sl__kafka_conf(&kc, "cluster", c->bootstrap, fixed, NULL, NULL, err, esz);
    if (rc) return rc;
    return sl__kafka_new(out, RD_KAFKA_CONSUMER, kc, NULL, "cluster", err, esz);
}

/* Reads the owned changelog partitions from the beginning to their end and
 * applies the latest record of each key. */
static int restore(clu *c, char *err, size_t esz)
{
    s2_state *s = c->st2;
    int G = c->G, nops = c->cut.nops2, rc;
    rd_kafka_t *rk = NULL;
    if ((rc = make_restorer(c, &rk, err, esz))) return rc;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(G);
    for (int g = 0; g < G; g++)
        if (s->owned[g])
            rd_kafka_topic_partition_list_add(l, c->chg_topic, g)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
    /* the latest value per (op, key group) and per key group's "wm" */
    size_t nslots = (size_t)G * (size_t)(nops + 1);
    rd_kafka_message_t **latest = sl__xcalloc(nslots, sizeof *latest);
    int eofs = 0, want = l->cnt;
    uint64_t records = 0;
    bool *eof = sl__xcalloc((size_t)G, sizeof *eof);
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
    if (e) rc = sl__kafka_err(err, esz, "cluster", "assign changelog", e);
    int64_t t0 = sl__clu_now_ms();
    while (!rc && eofs < want) {
        if (sl__clu_now_ms() - t0 > RESTORE_TIMEOUT_MS) {
            rc = sl__err(err, esz, SL_EIO, "cluster: changelog %s not read to its end in %d s",
                         c->chg_topic, RESTORE_TIMEOUT_MS / 1000);
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) continue;
        int g = m->partition;
        if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && g >= 0 && g < G && !eof[g]) {
                eof[g] = true;
                eofs++;
            } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                sl__log(SL__LOG_WARN, "cluster", "changelog read error; retrying",
                        "error=\"%s\"", rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        int op = g >= 0 && g < G ? key_op(c, m->key, m->key_len) : -1;
        if (op == -1) {
            rd_kafka_message_destroy(m);
            continue;
        }
        records++;
        size_t slot = (size_t)g * (size_t)(nops + 1) + (size_t)(op == -2 ? nops : op);
        if (latest[slot]) rd_kafka_message_destroy(latest[slot]);
        latest[slot] = m;
    }
    rd_kafka_topic_partition_list_destroy(l);
    uint64_t bytes = 0;
    for (int g = 0; g < G && !rc; g++) {
        if (!s->owned[g]) continue;
        for (int op = 0; op <= nops && !rc; op++) {
            rd_kafka_message_t *m = latest[(size_t)g * (size_t)(nops + 1) + (size_t)op];
            if (!m || !m->payload) continue; /* none, or a tombstone: no state */
            bytes += m->len;
            if (op == nops) {
                rc = sl__wmmap_decode(&s->wm[g], m->payload, m->len);
                if (rc) rc = sl__err(err, esz, rc, "cluster: changelog %s/%d: watermark map "
                                     "for %d source partitions expected (did the source "
                                     "topics change?)", c->chg_topic, g, c->src.ntp);
            } else {
                rc = apply_sections(c, op, g, m->payload, m->len);
                if (rc) rc = sl__err(err, esz, rc, "cluster: changelog %s/%d: operator %s "
                                     "cannot restore its state: %s", c->chg_topic, g,
                                     c->cut.ops2[op].vt->name, sl_strerror(rc));
                s->base[(size_t)op * (size_t)G + (size_t)g] = val_hash(m->payload, m->len);
            }
        }
    }
    for (size_t i = 0; i < nslots; i++)
        if (latest[i]) rd_kafka_message_destroy(latest[i]);
    free(latest);
    free(eof);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    memcpy(s->pend, s->base, sizeof *s->base * (size_t)G * (size_t)(nops + 1));
    if (!rc)
        sl__log(SL__LOG_INFO, "cluster", "state restored from the changelog",
                "key_groups=%d records=%" PRIu64 " bytes=%" PRIu64 " ms=%" PRId64, want,
                records, bytes, sl__clu_now_ms() - t0);
    return rc;
}

static int discard(sl__out *o, sl_batch *b)
{
    (void)o;
    sl__batch_free(b);
    return 0;
}

/* Invariant 5, through the vtable only: a scratch instance of the operator
 * advanced to wm writes its key-group -1 section (no state, zero counters,
 * watermark wm), which the real instance restores; restoring takes the
 * lowest watermark of its sections. */
static int lower_op_wms(clu *c, int64_t wm, char *err, size_t esz)
{
    s2_state *s = c->st2;
    const sl__cut *k = &c->cut;
    sl__out out = {.push = discard, .batch_cap = k->batch_cap};
    int rc = 0;
    for (int i = 0; i < k->nops2 && !rc; i++) {
        const sl__op_vt *vt = k->ops2[i].vt;
        if (!vt->snapshot || !vt->restore) continue;
        void *tmp = NULL;
        if ((rc = vt->open(&tmp, k->ops2[i].conf, &k->ops2[i].info, &c->ctx, err, esz)))
            break;
        if (wm > SL_TS_MIN && vt->watermark) rc = vt->watermark(tmp, wm, &out);
        sl__snap_writer *w = sl__snap_writer_mem();
        if (!rc) rc = vt->snapshot(tmp, w);
        size_t it = 0;
        int32_t kg;
        const void *d;
        size_t n;
        while (!rc && sl__snap_writer_mem_next(w, &it, &kg, &d, &n))
            if (kg == -1) rc = vt->restore(s->op[i], -1, d, n);
        sl__snap_writer_free(w);
        vt->close(tmp);
        if (rc) sl__err(err, esz, rc, "cluster: operator %s: cannot set its restored "
                        "watermark: %s", vt->name, sl_strerror(rc));
    }
    return rc;
}

int sl__s2_assign(clu *c, const rd_kafka_topic_partition_list_t *l,
                  rd_kafka_topic_partition_list_t *committed)
{
    s2_state *s = c->st2;
    (void)committed;
    sl__s2_revoke(c);
    for (int i = 0; i < l->cnt; i++) {
        int32_t g = l->elems[i].partition;
        if (g < 0 || g >= c->G)
            return sl__clu_fail(c, SL_ESTATE, "cluster: repartition partition %d is outside "
                                "the job's %d key groups", (int)g, c->G);
        s->owned[g] = true;
    }
    char err[1024] = "";
    int rc = open_instances(c, err, sizeof err);
    if (rc) return sl__clu_fail(c, rc, "%s", err);
    if (l->cnt && (rc = restore(c, err, sizeof err))) {
        sl__log(SL__LOG_WARN, "cluster", "restore failed; retrying", "error=\"%s\"", err);
        if (rc != SL_EIO) return sl__clu_fail(c, rc, "%s", err);
        return rc;
    }
    int64_t wm = SL_TS_MAX;
    for (int g = 0; g < c->G; g++)
        if (s->owned[g] && sl__wmmap_min(&s->wm[g]) < wm) wm = sl__wmmap_min(&s->wm[g]);
    if (l->cnt && (rc = lower_op_wms(c, wm, err, sizeof err)))
        return sl__clu_fail(c, rc, "%s", err);
    s->need_wm = true;
    return 0;
}

/* ---- processing ---------------------------------------------------------- */
static void on_wm(void *arg, uint32_t src, int64_t wm)
{
    void **a = arg;
    clu *c = a[0];
    int g = *(int *)a[1];
    if (sl__wmmap_update(&c->st2->wm[g], src, wm)) c->st2->wm_dirty[g] = true;
}

int sl__s2_message(clu *c, const rd_kafka_message_t *m)
{
    s2_state *s = c->st2;
    int g = m->partition, rc;
    if (g < 0 || g >= c->G || !s->owned[g] || !s->open) return 0;
    if ((rc = sl__clu_begin(&c->s2))) return rc;
    if (s->need_wm && (rc = advance_wm(c))) return rc;
    int type = sl__x_type(m->payload, m->len);
    if (type == SL__X_ROWS) {
        sl_batch *b = NULL;
        rc = sl__x_decode_rows(m->payload, m->len, c->cut.x_schema, &b);
        if (rc == SL_ESTATE)
            return sl__clu_fail(c, rc, "cluster: %s/%d@%" PRId64 " holds rows of another "
                                "schema: another job (or version) uses this job name; rename "
                                "the job or delete its sluice-%s-* topics and groups",
                                c->rep_topic, g, m->offset, c->cut.name);
        if (rc) {
            sl__log(SL__LOG_ERROR, "cluster", "corrupt repartition record skipped",
                    "position=%s/%d@%" PRId64, c->rep_topic, g, m->offset);
            return 0;
        }
        return sl__emit(&s->links[0].out, b);
    }
    if (type == SL__X_WM) {
        void *arg[2] = {c, &g};
        if (sl__x_decode_wm(m->payload, m->len, on_wm, arg))
            sl__log(SL__LOG_ERROR, "cluster", "corrupt watermark record skipped",
                    "position=%s/%d@%" PRId64, c->rep_topic, g, m->offset);
        return advance_wm(c);
    }
    sl__log(SL__LOG_ERROR, "cluster", "foreign record in the repartition topic skipped",
            "position=%s/%d@%" PRId64, c->rep_topic, g, m->offset);
    return 0;
}

bool sl__s2_part_done(clu *c, int32_t p)
{
    return p >= 0 && p < c->G && c->st2->owned[p] &&
           sl__wmmap_min(&c->st2->wm[p]) == SL_TS_MAX;
}

bool sl__s2_has_output(clu *c)
{
    if (c->st2->need_wm && !c->st2->open) return false;
    if (c->st2->need_wm) advance_wm(c);
    return c->s2.txn_open;
}

/* ---- epochs (invariant 2) ------------------------------------------------ */
int sl__s2_precommit(clu *c)
{
    s2_state *s = c->st2;
    if (!c->s2.txn_open || !s->open) return 0;
    const sl__cut *k = &c->cut;
    int G = c->G, rc = 0;
    char err[512] = "";
    if ((rc = k->sink_vt->flush(s->sink, err, sizeof err))) {
        sl__log(SL__LOG_WARN, "cluster", "sink flush failed", "error=\"%s\"", err);
        return rc;
    }
    for (int op = 0; op < k->nops2 && !rc; op++) {
        if (!k->ops2[op].vt->snapshot) continue;
        for (int g = 0; g < G; g++) s->val[g].len = 0;
        sl__snap_writer *w = sl__snap_writer_mem();
        rc = k->ops2[op].vt->snapshot(s->op[op], w);
        size_t i = 0;
        int32_t kg;
        const void *d;
        size_t n;
        while (!rc && sl__snap_writer_mem_next(w, &i, &kg, &d, &n)) {
            if (kg < 0) continue; /* invariant 4 */
            if (kg >= G || !s->owned[kg]) {
                rc = sl__clu_fail(c, SL_EINTERNAL, "cluster: operator %s holds state of key "
                                  "group %d, which this instance does not own",
                                  k->ops2[op].vt->name, (int)kg);
                break;
            }
            sl__buf_put_u32(&s->val[kg], (uint32_t)n);
            sl__buf_put(&s->val[kg], d, n);
        }
        sl__snap_writer_free(w);
        char key[32];
        int kl = snprintf(key, sizeof key, "op:%u", k->ops2[op].info.op_id);
        for (int g = 0; g < G && !rc; g++) {
            if (!s->owned[g]) continue;
            size_t slot = (size_t)op * (size_t)G + (size_t)g;
            uint64_t h = val_hash(s->val[g].p, s->val[g].len);
            if (h == s->base[slot]) continue;
            rc = sl__clu_produce(&c->s2, c->chg_topic, g, key, (size_t)kl,
                                 s->val[g].len ? s->val[g].p : NULL, s->val[g].len);
            s->pend[slot] = h;
        }
    }
    for (int g = 0; g < G && !rc; g++) {
        if (!s->owned[g] || !s->wm_dirty[g]) continue;
        s->msg.len = 0;
        sl__wmmap_encode(&s->wm[g], &s->msg);
        rc = sl__clu_produce(&c->s2, c->chg_topic, g, "wm", 2, s->msg.p, s->msg.len);
    }
    return rc;
}

void sl__s2_committed(clu *c)
{
    s2_state *s = c->st2;
    memcpy(s->base, s->pend, sizeof *s->base * (size_t)c->G * (size_t)(c->cut.nops2 + 1));
    memset(s->wm_dirty, 0, sizeof *s->wm_dirty * (size_t)c->G);
}

void sl__s2_aborted(clu *c)
{
    s2_state *s = c->st2;
    memcpy(s->pend, s->base, sizeof *s->pend * (size_t)c->G * (size_t)(c->cut.nops2 + 1));
}
