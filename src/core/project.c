/* project.c — projection pushdown from the job to its source
 * (sl_job_source_columns): turns the names of the columns the job reads
 * into a column mask and hands it to the source connector's optional
 * `project` hook. It decides nothing about what is skipped; each connector
 * does (see sl__source_vt.project). */
#include "core/graph.h"

int sl_job_source_columns(sl_job *j, const char *const *cols)
{
    if (!j || j->errcode) return SL_EINVAL;
    if (!j->src_vt || j->nnodes == 0)
        return sl__job_fail(j, SL_EINVAL, "source columns: the job has no source yet");
    const sl_schema *s = j->src_schema;
    uint64_t used = 0;
    for (size_t i = 0; cols && cols[i]; i++) {
        int c = sl_schema_find(s, cols[i]);
        if (c < 0)
            return sl__job_fail(j, SL_EINVAL, "source columns: no column '%s' in the "
                                "source's schema", cols[i]);
        used |= 1ULL << c;
    }
    const char *tc = j->nodes[0]->time_col;
    int t = tc ? sl_schema_find(s, tc) : -1;
    if (t >= 0) used |= 1ULL << t;
    if (j->src_vt->project) j->src_vt->project(j->src_conf, used);
    return 0;
}
