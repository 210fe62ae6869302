/* confinfo.c — read-only view of the job configuration table for help
 * texts and the man page (sl_job_conf_info), so the CLI documents the keys
 * from the same table that validates them. */
#include "core.h"

const sl__conf_def *sl__job_conf_defs(void); /* job.c */

int sl_job_conf_info(size_t i, sl_conf_info *out)
{
    static const char *const types[] = {
        [SL_CONF_INT] = "integer", [SL_CONF_STR] = "string",
        [SL_CONF_BOOL] = "boolean", [SL_CONF_DOUBLE] = "number",
        [SL_CONF_ENUM] = "enum"};
    const sl__conf_def *d = sl__job_conf_defs();
    for (size_t k = 0; k < i; k++)
        if (!d[k].key) return SL_ENOENT;
    d += i;
    if (!d->key) return SL_ENOENT;
    *out = (sl_conf_info){.key = d->key, .type = types[d->type], .def = d->def,
                          .allowed = d->type == SL_CONF_ENUM ? d->allowed : NULL,
                          .desc = d->desc};
    if (d->type == SL_CONF_INT || d->type == SL_CONF_DOUBLE) {
        out->min = d->min;
        out->max = d->max;
    }
    return 0;
}
