/* schema.c — typed column lists (name, type, optional STRING domain and
 * identifier flag) describing records. Schemas are immutable once a job
 * holds them; the job keeps its own copies. */
#include <stdlib.h>
#include <string.h>

#include "core.h"

sl_schema *sl_schema_new(void) { return sl__xcalloc(1, sizeof(sl_schema)); }

static void colinfo_free(struct sl__colinfo *c)
{
    free(c->name);
    for (int i = 0; i < c->ndomain; i++) free(c->domain[i]);
    free(c->domain);
}

void sl_schema_free(sl_schema *s)
{
    if (!s) return;
    for (int i = 0; i < s->n; i++) colinfo_free(&s->cols[i]);
    free(s);
}

int sl_schema_add(sl_schema *s, const char *name, sl_type t)
{
    if (!s || !name || !*name || t < SL_INT64 || t > SL_TIMESTAMP)
        return SL_EINVAL;
    if (s->n >= SL_MAX_COLS || sl_schema_find(s, name) >= 0) return SL_EINVAL;
    struct sl__colinfo *c = &s->cols[s->n];
    memset(c, 0, sizeof *c);
    c->name = sl__xstrdup(name);
    c->type = t;
    return s->n++;
}

int sl_schema_set_domain(sl_schema *s, int col, const char *const *values)
{
    if (!s || col < 0 || col >= s->n || s->cols[col].type != SL_STRING || !values)
        return SL_EINVAL;
    struct sl__colinfo *c = &s->cols[col];
    for (int i = 0; i < c->ndomain; i++) free(c->domain[i]);
    free(c->domain);
    int n = 0;
    while (values[n]) n++;
    c->domain = sl__xcalloc((size_t)n, sizeof(char *));
    for (int i = 0; i < n; i++) c->domain[i] = sl__xstrdup(values[i]);
    c->ndomain = n;
    return 0;
}

int sl_schema_set_identifier(sl_schema *s, int col)
{
    if (!s || col < 0 || col >= s->n) return SL_EINVAL;
    s->cols[col].identifier = true;
    return 0;
}

int sl_schema_find(const sl_schema *s, const char *name)
{
    if (!s || !name) return -1;
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->cols[i].name, name) == 0) return i;
    return -1;
}

int sl_schema_ncols(const sl_schema *s) { return s ? s->n : 0; }

const char *sl_schema_col_name(const sl_schema *s, int col)
{
    return (s && col >= 0 && col < s->n) ? s->cols[col].name : NULL;
}

sl_type sl_schema_col_type(const sl_schema *s, int col)
{
    return (s && col >= 0 && col < s->n) ? s->cols[col].type : SL_INT64;
}

const char *sl_type_name(sl_type t)
{
    switch (t) {
    case SL_INT64: return "BIGINT";
    case SL_FLOAT64: return "DOUBLE";
    case SL_BOOL: return "BOOLEAN";
    case SL_STRING: return "VARCHAR";
    case SL_TIMESTAMP: return "TIMESTAMP";
    }
    return "?";
}

sl_schema *sl__schema_copy(const sl_schema *s)
{
    sl_schema *d = sl_schema_new();
    for (int i = 0; i < s->n; i++) {
        const struct sl__colinfo *c = &s->cols[i];
        sl_schema_add(d, c->name, c->type);
        if (c->ndomain) {
            d->cols[i].domain = sl__xcalloc((size_t)c->ndomain, sizeof(char *));
            for (int j = 0; j < c->ndomain; j++)
                d->cols[i].domain[j] = sl__xstrdup(c->domain[j]);
            d->cols[i].ndomain = c->ndomain;
        }
        d->cols[i].identifier = c->identifier;
    }
    return d;
}

int sl__schema_domain_find(const sl_schema *s, int col, const char *v,
                           size_t len)
{
    const struct sl__colinfo *c = &s->cols[col];
    for (int i = 0; i < c->ndomain; i++)
        if (strlen(c->domain[i]) == len && memcmp(c->domain[i], v, len) == 0)
            return i;
    return -1;
}
