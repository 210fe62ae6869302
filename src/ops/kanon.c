/* kanon.c — the k-anonymity operator: drops result rows whose exact
 * distinct-subscriber count (an INT64 column, usually from a window's
 * COUNT_DISTINCT over pseudonyms) is below k, or NULL, and counts them as
 * suppressed groups. Rows are removed in place, so surviving rows keep
 * their order and their strings stay in the batch's arena. Canary rows
 * always pass: they are never real statistics and must reach the sinks.
 * Folding small groups into coarser ones is a later, separate operator. */
#include <stdlib.h>
#include <string.h>

#include "ops/privacy.h"

typedef struct {
    int col;
    int64_t k;
    sl__ctx *ctx;
} kanon_op;

static int ka_open(void **st, const void *conf, const sl__opinfo *info,
                   sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    const sl__kanon_conf *c = conf;
    if (c->col < 0 || c->col >= info->in->n ||
        info->in->cols[c->col].type != SL_INT64 || c->k < 2)
        return sl__err(errstr, errstr_size, SL_EINTERNAL,
                       "k_anon: configuration does not match the stream");
    kanon_op *p = sl__xcalloc(1, sizeof *p);
    p->col = c->col;
    p->k = c->k;
    p->ctx = ctx;
    *st = p;
    return 0;
}

static void ka_close(void *st) { free(st); }

/* Moves row `from` to row `to` (to < from) in every column. */
static void move_row(sl_batch *b, uint32_t to, uint32_t from)
{
    b->kind[to] = b->kind[from];
    for (int c = 0; c < b->schema->n; c++) {
        b->cols[c].valid[to] = b->cols[c].valid[from];
        switch (b->schema->cols[c].type) {
        case SL_BOOL:
            ((uint8_t *)b->cols[c].data)[to] = ((uint8_t *)b->cols[c].data)[from];
            break;
        case SL_STRING:
            ((sl_str *)b->cols[c].data)[to] = ((sl_str *)b->cols[c].data)[from];
            break;
        default: /* INT64, TIMESTAMP, FLOAT64: 8 bytes, moved as bytes */
            memcpy((char *)b->cols[c].data + 8 * (size_t)to,
                   (const char *)b->cols[c].data + 8 * (size_t)from, 8);
            break;
        }
    }
}

uint32_t sl__ops_compact(sl_batch *b, const uint8_t *keep)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        if (!keep[i]) continue;
        if (kept != i) move_row(b, kept, i);
        kept++;
    }
    b->n = kept;
    return kept;
}

static int ka_batch(void *st, sl_batch *b, sl__out *out)
{
    kanon_op *p = st;
    const int64_t *cnt = b->cols[p->col].data;
    const uint8_t *valid = b->cols[p->col].valid;
    uint32_t n = b->n, kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        bool keep = b->kind[i] != SL_KIND_DATA || (valid[i] && cnt[i] >= p->k);
        if (!keep) continue;
        if (kept != i) move_row(b, kept, i);
        kept++;
    }
    if (kept < n) sl__count(p->ctx, SL__CTR_SUPPRESSED, n - kept);
    if (kept == 0) {
        sl__batch_free(b);
        return 0;
    }
    b->n = kept;
    return sl__emit(out, b);
}

const sl__op_vt sl__op_kanon = {
    .name = "k_anon",
    .open = ka_open,
    .batch = ka_batch,
    .close = ka_close,
    .conf_free = free,
};

sl_stream *sl_stream_k_anon(sl_stream *s, const char *count_col, int64_t k)
{
    if (!s) return NULL;
    sl_job *job = sl__stream_job(s);
    const sl_schema *in = sl_stream_schema(s);
    int c = count_col ? sl_schema_find(in, count_col) : -1;
    if (c < 0) {
        sl__job_fail(job, SL_EINVAL, "k_anon: no column '%s' in the stream",
                     count_col ? count_col : "(null)");
        return NULL;
    }
    if (in->cols[c].type != SL_INT64) {
        sl__job_fail(job, SL_EINVAL, "k_anon: column '%s' is %s; the count of "
                     "distinct subscribers must be BIGINT", count_col,
                     sl_type_name(in->cols[c].type));
        return NULL;
    }
    if (k < 2) {
        sl__job_fail(job, SL_EINVAL, "k_anon: k must be at least 2 (got %lld); "
                     "k = 1 would publish single subscribers",
                     (long long)k);
        return NULL;
    }
    sl__kanon_conf *conf = sl__xcalloc(1, sizeof *conf);
    conf->col = c;
    conf->k = k;
    return sl__stream_add_op(s, &sl__op_kanon, conf, in);
}
