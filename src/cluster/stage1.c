/* stage1.c — the distributed mode's first stage: the records of the source
 * partitions this instance was assigned, decoded with the Kafka source's
 * decoder (bad lines dead-lettered as in the embedded mode), through the
 * job's stateless chain (pseudonymisation, lookups, maps), routed by key
 * group into the repartition topic: partition = key group, many rows per
 * message (xcodec.c). At the end of every epoch it tells every repartition
 * partition the watermark of each source partition it owns.
 *
 * It keeps no state worth a changelog: the operators of this stage are
 * stateless (instance.c refuses others), and a source partition's
 * watermark restarts from the first record after a takeover — stage 2
 * keeps the highest it heard per source partition.
 *
 * Invariants:
 * 1. Rows reach the repartition topic only inside the stage's transaction,
 *    and every row consumed before an epoch's offsets is produced in that
 *    epoch (s1_precommit flushes the builders first).
 * 2. A watermark for a source partition is produced after every row read
 *    from it before, in the same transaction, to every repartition
 *    partition (s1_precommit).
 * 3. A bounded source partition ends at the end offset found at start
 *    (the same on every instance): records past it are ignored, and its
 *    watermark becomes SL_TS_MAX. */
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "core/log.h"

typedef struct {
    sl__out out;
    clu *c;
    int next; /* op receiving the batch; nops = the router */
} link1;

struct s1_state {
    sl__kafka_dec *dec;
    int nops;
    void **op;
    link1 *links;
    int ntp, last;
    bool *owned, *ended;
    int64_t *part_max, *sent;
    sl_batch **builder; /* per key group */
    sl__buf msg;
    uint64_t *hash;
    uint32_t *rows, rows_cap;
    uint32_t *start; /* per key group + 1: counting sort of a batch's rows */
    uint32_t *wparts;
    int64_t *wvals;
};

static int flush_builder(clu *c, int kg)
{
    s1_state *s = c->st1;
    sl_batch *b = s->builder[kg];
    if (!b || b->n == 0) return 0;
    s->msg.len = 0;
    sl__x_encode_rows(&s->msg, b, NULL, 0);
    sl__batch_free(b);
    s->builder[kg] = NULL;
    return sl__clu_produce(&c->s1, c->rep_topic, kg, NULL, 0, s->msg.p, s->msg.len);
}

/* The chain's end: rows to their key group's builder. */
static int route(clu *c, sl_batch *b)
{
    s1_state *s = c->st1;
    const sl__cut *k = &c->cut;
    int rc = 0;
    if (b->n > s->rows_cap) {
        s->rows_cap = b->n;
        s->hash = sl__xrealloc(s->hash, sizeof *s->hash * b->n);
        s->rows = sl__xrealloc(s->rows, sizeof *s->rows * b->n);
    }
    /* key groups, then the rows sorted by key group (stable: each group's
     * rows keep their order) in two counting passes */
    sl__key_hashes(b, k->key_cols, k->nkey, s->hash);
    memset(s->start, 0, sizeof *s->start * (size_t)(c->G + 1));
    for (uint32_t r = 0; r < b->n; r++) {
        s->hash[r] %= (uint64_t)c->G;
        s->start[s->hash[r] + 1]++;
    }
    for (int g = 0; g < c->G; g++) s->start[g + 1] += s->start[g];
    for (uint32_t r = 0; r < b->n; r++) s->rows[s->start[s->hash[r]]++] = r;
    /* start[g] is now the end of group g's rows */
    for (int kg = 0, from = 0; kg < c->G && !rc; from = (int)s->start[kg++]) {
        uint32_t i = (uint32_t)from, end = s->start[kg];
        while (i < end && !rc) {
            if (!s->builder[kg]) s->builder[kg] = sl__batch_new(b->schema, k->batch_cap);
            sl_batch *d = s->builder[kg];
            uint32_t room = d->cap - d->n, take = end - i < room ? end - i : room;
            sl__batch_append(d, b, s->rows + i, take);
            i += take;
            if (d->n == d->cap) rc = flush_builder(c, kg);
        }
    }
    sl__batch_free(b);
    return rc;
}

static int chain_push(sl__out *o, sl_batch *b)
{
    link1 *l = (link1 *)o;
    s1_state *s = l->c->st1;
    if (l->next == s->nops) return route(l->c, b);
    return l->c->cut.ops1[l->next].vt->batch(s->op[l->next], b, &s->links[l->next + 1].out);
}

int sl__s1_open(clu *c, char *err, size_t esz)
{
    s1_state *s = sl__xcalloc(1, sizeof *s);
    c->st1 = s;
    const sl__cut *k = &c->cut;
    int rc = sl__kafka_dec_new(&s->dec, k->src_conf, k->src_schema, &c->ctx, err, esz);
    if (rc) return rc;
    s->nops = k->nops1;
    s->op = sl__xcalloc((size_t)s->nops + 1, sizeof *s->op);
    s->links = sl__xcalloc((size_t)s->nops + 1, sizeof *s->links);
    for (int i = 0; i <= s->nops; i++) {
        s->links[i] = (link1){.out = {.push = chain_push, .batch_cap = k->batch_cap}, .c = c,
                              .next = i};
        if (i < s->nops &&
            (rc = k->ops1[i].vt->open(&s->op[i], k->ops1[i].conf, &k->ops1[i].info, &c->ctx,
                                      err, esz)))
            return rc;
    }
    s->ntp = c->src.ntp;
    s->owned = sl__xcalloc((size_t)s->ntp + 1, sizeof *s->owned);
    s->ended = sl__xcalloc((size_t)s->ntp + 1, sizeof *s->ended);
    s->part_max = sl__xcalloc((size_t)s->ntp + 1, sizeof *s->part_max);
    s->sent = sl__xcalloc((size_t)s->ntp + 1, sizeof *s->sent);
    s->wparts = sl__xcalloc((size_t)s->ntp + 1, sizeof *s->wparts);
    s->wvals = sl__xcalloc((size_t)s->ntp + 1, sizeof *s->wvals);
    s->builder = sl__xcalloc((size_t)c->G, sizeof *s->builder);
    s->start = sl__xcalloc((size_t)c->G + 1, sizeof *s->start);
    sl__s1_revoke(c);
    return 0;
}

void sl__s1_close(clu *c)
{
    s1_state *s = c->st1;
    if (!s) return;
    sl__s1_revoke(c);
    for (int i = 0; i < s->nops; i++)
        if (s->op[i]) c->cut.ops1[i].vt->close(s->op[i]);
    sl__kafka_dec_free(s->dec);
    free(s->op);
    free(s->links);
    free(s->owned);
    free(s->ended);
    free(s->part_max);
    free(s->sent);
    free(s->wparts);
    free(s->wvals);
    free(s->builder);
    free(s->hash);
    free(s->rows);
    free(s->start);
    sl__buf_free(&s->msg);
    free(s);
    c->st1 = NULL;
}

static int find_tp(clu *c, const char *topic, int32_t part)
{
    s1_state *s = c->st1;
    if (s->last >= 0 && s->last < s->ntp && c->src.tp_part[s->last] == part &&
        !strcmp(c->src.tp_topic[s->last], topic))
        return s->last;
    for (int i = 0; i < s->ntp; i++)
        if (c->src.tp_part[i] == part && !strcmp(c->src.tp_topic[i], topic))
            return s->last = i;
    return -1;
}

void sl__s1_revoke(clu *c)
{
    s1_state *s = c->st1;
    for (int i = 0; i < s->ntp; i++) {
        s->owned[i] = s->ended[i] = false;
        s->part_max[i] = s->sent[i] = SL_TS_MIN;
    }
    for (int g = 0; s->builder && g < c->G; g++) {
        sl__batch_free(s->builder[g]);
        s->builder[g] = NULL;
    }
    s->last = -1;
}

int sl__s1_assign(clu *c, const rd_kafka_topic_partition_list_t *l)
{
    s1_state *s = c->st1;
    for (int i = 0; i < l->cnt; i++) {
        int tp = find_tp(c, l->elems[i].topic, l->elems[i].partition);
        if (tp < 0) /* the topic grew after the job started */
            return sl__clu_fail(c, SL_ESTATE, "cluster: source partition %s/%d appeared "
                                "after the job started; restart the instances",
                                l->elems[i].topic, (int)l->elems[i].partition);
        s->owned[tp] = true;
        int64_t end = c->src.tp_end[tp], off = l->elems[i].offset;
        if (c->src.bounded && (end == 0 || (off >= 0 && off >= end))) s->ended[tp] = true;
    }
    return 0;
}

int sl__s1_message(clu *c, const rd_kafka_message_t *m)
{
    s1_state *s = c->st1;
    const sl__cut *k = &c->cut;
    int tp = find_tp(c, rd_kafka_topic_name(m->rkt), m->partition);
    if (tp < 0 || !s->owned[tp] || s->ended[tp]) return 0;
    int64_t end = c->src.tp_end[tp];
    if (c->src.bounded && m->offset >= end) { /* invariant 3 */
        s->ended[tp] = true;
        return 0;
    }
    /* the epoch starts with its first record, so it lasts the interval */
    int rc = sl__clu_begin(&c->s1);
    sl__kafka_msgpos mp = {0};
    while (mp.moff < m->len && !rc) {
        sl_batch *b = sl__batch_new(k->src_schema, k->batch_cap);
        size_t before = mp.moff;
        sl__kafka_dec_message(s->dec, m, &mp, b);
        sl__count(&c->ctx, SL__CTR_RECORDS_IN, b->n);
        if (k->time_col >= 0) {
            const int64_t *ts = b->cols[k->time_col].data;
            const uint8_t *ok = b->cols[k->time_col].valid;
            for (uint32_t r = 0; r < b->n; r++)
                if (ok[r] && b->kind[r] == SL_KIND_DATA && ts[r] > s->part_max[tp])
                    s->part_max[tp] = ts[r];
        }
        if (b->n) rc = sl__emit(&s->links[0].out, b);
        else sl__batch_free(b);
        if (mp.moff == before) break; /* nothing left that decodes */
    }
    if (c->src.bounded && m->offset + 1 >= end) s->ended[tp] = true;
    return rc;
}

static int64_t part_wm(clu *c, int tp)
{
    s1_state *s = c->st1;
    if (s->ended[tp]) return SL_TS_MAX;
    if (s->part_max[tp] == SL_TS_MIN) return SL_TS_MIN;
    return s->part_max[tp] - c->cut.wm_delay_ms;
}

bool sl__s1_has_output(clu *c)
{
    s1_state *s = c->st1;
    for (int i = 0; i < s->ntp; i++)
        if (s->owned[i] && part_wm(c, i) > s->sent[i]) return true;
    return false;
}

int sl__s1_precommit(clu *c)
{
    s1_state *s = c->st1;
    int rc = 0;
    for (int g = 0; g < c->G && !rc; g++) rc = flush_builder(c, g); /* invariant 1 */
    if (rc || !sl__s1_has_output(c)) return rc;
    uint32_t n = 0;
    for (int i = 0; i < s->ntp; i++) {
        if (!s->owned[i]) continue;
        s->wparts[n] = (uint32_t)i;
        s->wvals[n++] = part_wm(c, i);
    }
    s->msg.len = 0;
    sl__x_encode_wm(&s->msg, s->wparts, s->wvals, n);
    for (int g = 0; g < c->G && !rc; g++) /* invariant 2 */
        rc = sl__clu_produce(&c->s1, c->rep_topic, g, NULL, 0, s->msg.p, s->msg.len);
    for (uint32_t i = 0; i < n && !rc; i++) s->sent[s->wparts[i]] = s->wvals[i];
    return rc;
}
