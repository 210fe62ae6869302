/* winquery.c — queryable state of the window operator: the current
 * aggregates of every open window holding one key (GET /state/window),
 * read under the instance's lock so an answer never sees a half-applied
 * batch (docs/metrics.md, "Queryable state"). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "window_int.h"

/* Parses one key value for column c of the input schema into row 0 of b. */
static int parse_key_value(win_op *op, sl_batch *b, int c, const char *v, char *err,
                           size_t errsz)
{
    const struct sl__colinfo *f = &op->in->cols[c];
    if (!strcmp(v, "null") || !strcmp(v, "NULL")) {
        b->cols[c].valid[0] = 0;
        return 0;
    }
    b->cols[c].valid[0] = 1;
    switch (f->type) {
    case SL_STRING:
        return sl_batch_set_str(b, c, 0, v, strlen(v)) < 0 ? SL_ENOMEM : 0;
    case SL_FLOAT64: {
        double x;
        if (sl__parse_f64(v, &x))
            return sl__err(err, errsz, SL_EINVAL, "key column '%s' is DOUBLE, got '%s'",
                           f->name, v);
        ((double *)b->cols[c].data)[0] = x;
        return 0;
    }
    case SL_BOOL:
        if (strcmp(v, "true") && strcmp(v, "false"))
            return sl__err(err, errsz, SL_EINVAL, "key column '%s' is BOOLEAN: true or "
                           "false, got '%s'", f->name, v);
        ((uint8_t *)b->cols[c].data)[0] = !strcmp(v, "true");
        return 0;
    default: {
        int64_t x;
        if (sl__parse_i64(v, &x) &&
            (f->type != SL_TIMESTAMP || sl__parse_ts(v, strlen(v), &x)))
            return sl__err(err, errsz, SL_EINVAL, "key column '%s' is %s, got '%s'",
                           f->name, sl_type_name(f->type), v);
        ((int64_t *)b->cols[c].data)[0] = x;
        return 0;
    }
    }
}

/* The current value of every open window for one key (sl__qs_fn). A fold
 * window cannot say which coarser group a key will end in: it refuses, as
 * does any window of a job that applies k-anonymity unless k was pushed
 * into this window (then groups below k are reported suppressed). */
int sl__window_query(void *st, const char *const *vals, int nvals, bool kanon,
                     sl__qs_answer *ans, char *err, size_t errsz)
{
    win_op *op = st;
    const win_conf *c = op->conf;
    if (nvals != op->nkey)
        return sl__err(err, errsz, SL_EINVAL, "the key has %d column%s, got %d value%s",
                       op->nkey, op->nkey == 1 ? "" : "s", nvals, nvals == 1 ? "" : "s");
    if (c->fold || op->nkey != op->npart || (kanon && !c->has_min))
        return sl__err(err, errsz, SL_ESTATE, "this window's groups are published through "
                       "k-anonymity it cannot apply to one key; not queryable");
    if (op->ws)
        return sl__err(err, errsz, SL_ESTATE, "this window keeps its groups in RocksDB "
                       "(state.backend = rocksdb); not queryable");
    sl_batch *kb = sl__batch_new(op->in, 1);
    kb->n = 1;
    int rc = 0;
    for (int k = 0; k < op->nkey && rc == 0; k++)
        rc = parse_key_value(op, kb, op->key_cols[k], vals[k], err, errsz);
    uint8_t kbuf[4096];
    size_t need = 16;
    for (int k = 0; k < op->nkey; k++) need += 2 * strlen(vals[k]) + 10;
    if (rc == 0 && need > sizeof kbuf)
        rc = sl__err(err, errsz, SL_EINVAL, "key too long");
    if (rc) {
        sl__batch_free(kb);
        return rc;
    }
    size_t len = sl__wkey_encode(&op->kl, kb, 0, kbuf);
    uint64_t h = !op->kl.rowhash ? sl__wkey_hash(&op->kl, kbuf, len)
                                 : sl__wkey_mix(sl__key_hash(kb, op->key_cols, op->nkey, 0));
    sl__batch_free(kb);
    /* wait for the task's current batch, but not for ever (back pressure
     * can hold a firing window in the middle of a push) */
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 2;
    int lr = pthread_mutex_timedlock(&op->qlock, &dl);
    if (lr == ETIMEDOUT)
        return sl__err(err, errsz, SL_EAGAIN, "the operator stayed busy for 2 s; try again");
    if (lr) return sl__err(err, errsz, SL_EINTERNAL, "lock: %d", lr);
    ans->schema = op->out;
    ans->nkey = op->nkey;
    for (size_t i = 0; i < op->nw && rc == 0; i++) {
        const win *w = op->wins[i];
        const uint8_t *g = sl__bmap_find(&w->groups, kbuf, len, h);
        if (!g) continue;
        if (!ans->rows) {
            ans->rows = sl__batch_new(op->out, SL__QS_MAX_ROWS);
            ans->suppressed = sl__xcalloc(SL__QS_MAX_ROWS, 1);
        }
        if (ans->rows->n == SL__QS_MAX_ROWS) {
            rc = sl__err(err, errsz, SL_EINVAL, "more than %d open windows", SL__QS_MAX_ROWS);
            break;
        }
        uint32_t r = ans->rows->n++;
        ((int64_t *)ans->rows->cols[0].data)[r] = w->start;
        ((int64_t *)ans->rows->cols[1].data)[r] = w->end;
        sl__wkey_decode(&op->kl, kbuf, (uint32_t)len, ans->rows, r);
        bool small = c->has_min &&
                     sl__agg_count_value(&op->aggs[c->min_agg], g) < c->min_count;
        ans->suppressed[r] = small;
        for (size_t a = 0; a < op->naggs && rc == 0; a++) {
            int col = 2 + op->nkey + (int)a;
            if (small) ans->rows->cols[col].valid[r] = 0;
            else rc = sl__agg_result(&op->aggs[a], g, ans->rows, col, r);
        }
    }
    pthread_mutex_unlock(&op->qlock);
    return rc;
}

