/* state.c — GET /state/<operator>?key=v1,v2,...: queryable state as JSON.
 *
 * The key is the operator's key columns as comma-separated text, in order
 * (a TIMESTAMP as milliseconds or ISO-8601, "null" for NULL). The answer
 * lists every open window that holds the key with its current aggregate
 * values; a group still below the job's k shows only its window, key and
 * "suppressed": true — the same rule as the sinks. Errors are JSON too:
 * 404 unknown operator, 400 bad key, 403 not queryable (k-anonymity the
 * operator cannot apply to a single key), 503 busy (retry). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/runtime.h"
#include "internal.h"

static void value(sl__obs_text *t, const sl_batch *b, int c, uint32_t r)
{
    if (!b->cols[c].valid[r]) {
        SL__PUTS(t, "null");
        return;
    }
    switch (b->schema->cols[c].type) {
    case SL_STRING: {
        sl_str s = ((const sl_str *)b->cols[c].data)[r];
        char *z = sl__xmalloc((size_t)s.len + 1);
        memcpy(z, s.ptr, s.len);
        z[s.len] = 0;
        sl__obs_text_json(t, z);
        free(z);
        break;
    }
    case SL_FLOAT64: {
        double v = ((const double *)b->cols[c].data)[r];
        if (v != v || v - v != 0) SL__PUTS(t, "null");
        else sl__obs_text_printf(t, "%.17g", v);
        break;
    }
    case SL_BOOL:
        if (((const uint8_t *)b->cols[c].data)[r]) SL__PUTS(t, "true");
        else SL__PUTS(t, "false");
        break;
    default:
        sl__obs_text_printf(t, "%lld", (long long)((const int64_t *)b->cols[c].data)[r]);
        break;
    }
}

static void error_json(sl__obs_text *t, const char *msg)
{
    SL__PUTS(t, "{\"error\":");
    sl__obs_text_json(t, msg);
    SL__PUTS(t, "}\n");
}

unsigned sl__obs_render_state(sl__obs *o, const char *op, const char *key,
                              sl__obs_text *t)
{
    if (!key) {
        error_json(t, "give the key: ?key=v1,v2,... (the operator's key columns in order)");
        return 400;
    }
    char *copy = sl__xstrdup(key);
    const char *vals[SL_MAX_COLS];
    int n = 0;
    for (char *p = copy, *save = NULL, *tok; n < SL_MAX_COLS &&
         (tok = strtok_r(p, ",", &save)); p = NULL)
        vals[n++] = tok;
    if (*key == 0) n = 0;
    sl__qs_answer a;
    char err[256];
    int rc = sl__qs_query(o->job, op, vals, n, &a, err, sizeof err);
    free(copy);
    if (rc < 0) {
        error_json(t, err);
        return rc == SL_ENOENT ? 404 : rc == SL_ESTATE ? 403 : rc == SL_EAGAIN ? 503 : 400;
    }
    SL__PUTS(t, "{\"operator\":");
    sl__obs_text_json(t, a.op);
    sl__obs_text_printf(t, ",\"operator_id\":%u,\"windows\":[", a.op_id);
    for (uint32_t r = 0; a.rows && r < a.rows->n; r++) {
        const sl_schema *s = a.rows->schema;
        if (r) SL__PUTS(t, ",");
        SL__PUTS(t, "{");
        for (int c = 0; c < s->n; c++) {
            bool agg = c >= 2 + a.nkey;
            if (agg && a.suppressed[r]) continue;
            if (c) SL__PUTS(t, ",");
            sl__obs_text_json(t, s->cols[c].name);
            SL__PUTS(t, ":");
            value(t, a.rows, c, r);
        }
        if (a.suppressed[r]) SL__PUTS(t, ",\"suppressed\":true");
        SL__PUTS(t, "}");
    }
    SL__PUTS(t, "]}\n");
    sl__qs_answer_free(&a);
    return 200;
}
