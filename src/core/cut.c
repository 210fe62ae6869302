/* cut.c — cuts a job graph at its first key change for the cluster runtime
 * (cut.h). It plans nothing else: stages, tasks and exchanges of the
 * embedded mode stay in exec.c. */
#include <stdlib.h>
#include <string.h>

#include "cut.h"
#include "graph.h"
#include "log.h"

static void cut_op(sl__cut_op *o, const struct sl_stream *n, uint32_t batch_cap)
{
    const struct sl_stream *in = n->parent;
    int nkey = 0;
    for (size_t k = 0; in->key && in->key[k]; k++)
        o->keys[nkey++] = sl_schema_find(in->schema, in->key[k]);
    o->vt = n->vt;
    o->conf = n->conf;
    o->info = (sl__opinfo){
        .in = in->schema, .out = n->schema,
        .time_col = in->time_col ? sl_schema_find(in->schema, in->time_col) : -1,
        .key_cols = in->key ? o->keys : NULL, .nkey = nkey, .batch_cap = batch_cap,
        .op_id = (uint32_t)n->id};
}

int sl__job_cut(sl_job *j, sl__cut *c, char *err, size_t esz)
{
    memset(c, 0, sizeof *c);
    if (j->errcode) return sl__err(err, esz, j->errcode, "%s", j->err);
    if (!j->src_vt) return sl__err(err, esz, SL_EINVAL, "job: it has no source");
    if (!j->sink_vt) return sl__err(err, esz, SL_EINVAL, "job: it has no sink");
    if (j->ran) return sl__err(err, esz, SL_ESTATE, "job: a job runs once");
    j->ran = true;
    if (!j->log_open) {
        int rc = sl__log_open(j->conf.log_file, j->conf.log_level, err, esz);
        if (rc) return rc;
        j->log_open = true;
    }
    c->job = j;
    c->src_vt = j->src_vt;
    c->src_conf = j->src_conf;
    c->src_schema = j->src_schema;
    struct sl_stream *src = j->nodes[0];
    c->time_col = src->time_col ? sl_schema_find(j->src_schema, src->time_col) : -1;
    c->wm_delay_ms = j->wm_delay_ms;
    c->name = j->conf.name;
    c->output_dir = j->conf.output_dir;
    c->key_groups = (int)j->conf.key_groups;
    c->batch_cap = (uint32_t)j->conf.batch_size;
    c->interval_ms = j->conf.checkpoint_interval_ms;
    c->flush_ms = j->conf.flush_ms;
    c->source_rate = j->conf.source_rate;
    c->delivery = (sl__delivery)j->conf.delivery;
    c->instance_id = j->conf.cluster_instance_id;
    c->session_timeout_ms = j->conf.cluster_session_timeout_ms;
    c->txn_timeout_ms = j->conf.cluster_txn_timeout_ms;
    c->replication_factor = j->conf.cluster_replication_factor;
    c->ops1 = sl__xcalloc((size_t)j->nnodes + 1, sizeof *c->ops1);
    c->ops2 = sl__xcalloc((size_t)j->nnodes + 1, sizeof *c->ops2);
    int keyby = 0;
    c->x_schema = src->schema;
    for (struct sl_stream *n = src; n; n = n->child) {
        if (n->kind == NODE_KEYBY) {
            if (++keyby > 1) {
                sl__cut_free(c);
                return sl__err(err, esz, SL_EINVAL,
                               "--cluster: the job changes its key %d times or more; the "
                               "distributed mode runs jobs with exactly one key change "
                               "(one GROUP BY / keyed operator chain), see "
                               "docs/distributed.md", keyby);
            }
            c->x_schema = n->schema;
            for (size_t k = 0; n->key[k]; k++)
                c->key_cols[c->nkey++] = sl_schema_find(n->schema, n->key[k]);
        } else if (n->kind == NODE_OP) {
            if (keyby == 0) cut_op(&c->ops1[c->nops1++], n, c->batch_cap);
            else cut_op(&c->ops2[c->nops2++], n, c->batch_cap);
            c->out_schema = n->schema;
            if (keyby == 0) c->x_schema = n->schema;
        }
        if (n == j->sink_at) break;
    }
    if (!c->out_schema) c->out_schema = c->x_schema;
    if (keyby == 0) {
        sl__cut_free(c);
        return sl__err(err, esz, SL_EINVAL,
                       "--cluster: the job never changes its key (no GROUP BY or keyed "
                       "operator); the distributed mode runs jobs with exactly one key "
                       "change, see docs/distributed.md");
    }
    c->sink_vt = j->sink_vt;
    c->sink_conf = j->sink_conf;
    return 0;
}

void sl__cut_free(sl__cut *c)
{
    if (!c) return;
    free(c->ops1);
    free(c->ops2);
    c->ops1 = c->ops2 = NULL;
}

void sl__job_add_counters(sl_job *j, const uint64_t *ctr)
{
    for (int k = 0; k < SL__CTR_N; k++) atomic_fetch_add(&j->ctr[k], ctr[k]);
}

bool sl__job_stopping(const sl_job *j)
{
    return atomic_load(&((sl_job *)j)->stop_req) || atomic_load(&((sl_job *)j)->cancel);
}
