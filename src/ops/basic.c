/* basic.c — the stateless operators: map and filter with user functions
 * over whole batches, project, and the specialised filter kernel for
 * `string column [NOT] IN (constants)` (sl_stream_filter_in, what the SQL
 * planner uses for `col = 'x'` instead of its general evaluator). They
 * chain inside a task without copies where they can (filter and project
 * work in place). */
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"

/* ---- map ----------------------------------------------------------------- */
typedef struct {
    sl_map_fn fn;
    void *ud;
    char *name;
} map_conf;

typedef struct {
    const map_conf *c;
    const sl_schema *out;
} map_op;

static void map_conf_free(void *p)
{
    map_conf *c = p;
    if (c) free(c->name);
    free(c);
}

static int map_open(void **st, const void *conf, const sl__opinfo *info,
                    sl__ctx *ctx, char *err, size_t errsz)
{
    (void)ctx, (void)err, (void)errsz;
    map_op *m = sl__xcalloc(1, sizeof *m);
    m->c = conf;
    m->out = info->out;
    *st = m;
    return 0;
}

static int map_batch(void *st, sl_batch *b, sl__out *out)
{
    map_op *m = st;
    sl_batch *o = sl__batch_new(m->out, b->n > out->batch_cap ? b->n : out->batch_cap);
    memcpy(o->kind, b->kind, b->n);
    o->n = b->n;
    sl__arena_adopt(&o->arena, &b->arena); /* in's strings stay valid in o */
    int rc = m->c->fn(b, o, m->c->ud);
    sl__batch_free(b);
    if (rc) {
        sl__batch_free(o);
        return rc;
    }
    return sl__emit(out, o);
}

static void op_free(void *st) { free(st); }

static const sl__op_vt map_vt = {
    .name = "map", .open = map_open, .batch = map_batch, .close = op_free,
    .conf_free = map_conf_free};

sl_stream *sl_stream_map(sl_stream *s, const char *name,
                         const sl_schema *out_schema, sl_map_fn fn, void *udata)
{
    if (!s) return NULL;
    if (!fn || !out_schema || out_schema->n == 0) {
        sl__job_fail(sl__stream_job(s), SL_EINVAL,
                     "map %s: needs a function and a non-empty output schema",
                     name ? name : "");
        return NULL;
    }
    map_conf *c = sl__xcalloc(1, sizeof *c);
    c->fn = fn;
    c->ud = udata;
    c->name = sl__xstrdup(name ? name : "map");
    return sl__stream_add_op(s, &map_vt, c, out_schema);
}

/* ---- filter -------------------------------------------------------------- */
typedef struct {
    sl_filter_fn fn;
    void *ud;
    char *name;
    void (*ud_free)(void *); /* frees ud with the conf, or NULL */
} filter_conf;

/* A run of kept rows: len rows from row `from` move to row `to`. */
typedef struct {
    uint32_t from, to, len;
} run;

typedef struct {
    const filter_conf *c;
    uint8_t *keep;
    uint32_t *rows;
    run *runs;
    uint32_t cap;
} filter_op;

static int filter_open(void **st, const void *conf, const sl__opinfo *info,
                       sl__ctx *ctx, char *err, size_t errsz)
{
    (void)info, (void)ctx, (void)err, (void)errsz;
    filter_op *f = sl__xcalloc(1, sizeof *f);
    f->c = conf;
    *st = f;
    return 0;
}

/* Whether v[0..n) is all zero: a column with no value in the batch (a
 * VARCHAR projection pushdown left unread) needs no compaction at all. */
static bool all_zero(const uint8_t *v, uint32_t n)
{
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, v + i, 8);
        if (w != 0) return false;
    }
    for (; i < n; i++)
        if (v[i] != 0) return false;
    return true;
}

/* Moves the rows of runs[k] = (from, to, len), elements of `size` bytes:
 * a filter that keeps most rows moves a few long runs. */
static void move_runs(void *base, size_t size, const run *runs, uint32_t nrun)
{
    char *d = base;
    for (uint32_t k = 0; k < nrun; k++)
        if (runs[k].from != runs[k].to)
            memmove(d + (size_t)runs[k].to * size, d + (size_t)runs[k].from * size,
                    (size_t)runs[k].len * size);
}

/* Keeps the selected rows of b, compacting it in place (strings stay in the
 * batch's arena, so only the references move). When the kept rows form
 * long runs (a filter that drops few rows) whole runs are moved, else row
 * by row; columns without a value in the batch are left as they are. */
static void compact(sl_batch *b, const uint32_t *rows, uint32_t n, run *runs)
{
    uint32_t nrun = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (nrun > 0 && runs[nrun - 1].from + runs[nrun - 1].len == rows[i])
            runs[nrun - 1].len++;
        else
            runs[nrun++] = (run){rows[i], i, 1};
    }
    const bool by_run = nrun * 8 <= n; /* runs of 8 rows or more on average */
    for (int c = 0; c < b->schema->n; c++) {
        uint8_t *v = b->cols[c].valid;
        if (all_zero(v, b->n)) continue; /* stays all NULL */
        size_t size;
        switch (b->schema->cols[c].type) {
        case SL_BOOL: size = 1; break;
        case SL_STRING: size = sizeof(sl_str); break;
        default: size = 8; break;
        }
        if (by_run) {
            move_runs(v, 1, runs, nrun);
            move_runs(b->cols[c].data, size, runs, nrun);
            continue;
        }
        for (uint32_t i = 0; i < n; i++) v[i] = v[rows[i]];
        switch (size) {
        case 1: {
            uint8_t *d = b->cols[c].data;
            for (uint32_t i = 0; i < n; i++) d[i] = d[rows[i]];
            break;
        }
        case sizeof(sl_str): {
            sl_str *d = b->cols[c].data;
            for (uint32_t i = 0; i < n; i++) d[i] = d[rows[i]];
            break;
        }
        default: {
            int64_t *d = b->cols[c].data;
            for (uint32_t i = 0; i < n; i++) d[i] = d[rows[i]];
            break;
        }
        }
    }
    for (uint32_t i = 0; i < n; i++) b->kind[i] = b->kind[rows[i]];
    b->n = n;
    b->khash = NULL; /* rows moved */
}

static int filter_batch(void *st, sl_batch *b, sl__out *out)
{
    filter_op *f = st;
    if (b->n > f->cap) {
        f->cap = b->n;
        f->keep = sl__xrealloc(f->keep, f->cap);
        f->rows = sl__xrealloc(f->rows, sizeof(uint32_t) * f->cap);
        f->runs = sl__xrealloc(f->runs, sizeof(run) * f->cap);
    }
    memset(f->keep, 0, b->n);
    f->c->fn(b, f->keep, f->c->ud);
    uint32_t n = 0;
    for (uint32_t r = 0; r < b->n; r++)
        if (f->keep[r] || b->kind[r] != SL_KIND_DATA) f->rows[n++] = r;
    if (n == 0) {
        sl__batch_free(b);
        return 0;
    }
    if (n < b->n) compact(b, f->rows, n, f->runs);
    return sl__emit(out, b);
}

static void filter_close(void *st)
{
    filter_op *f = st;
    free(f->keep);
    free(f->rows);
    free(f->runs);
    free(f);
}

static void filter_conf_free(void *p)
{
    filter_conf *c = p;
    if (c) {
        free(c->name);
        if (c->ud_free) c->ud_free(c->ud);
    }
    free(c);
}

static const sl__op_vt filter_vt = {
    .name = "filter", .open = filter_open, .batch = filter_batch,
    .close = filter_close, .conf_free = filter_conf_free};

sl_stream *sl_stream_filter(sl_stream *s, const char *name, sl_filter_fn fn,
                            void *udata)
{
    if (!s) return NULL;
    if (!fn) {
        sl__job_fail(sl__stream_job(s), SL_EINVAL, "filter %s: needs a function",
                     name ? name : "");
        return NULL;
    }
    filter_conf *c = sl__xcalloc(1, sizeof *c);
    c->fn = fn;
    c->ud = udata;
    c->name = sl__xstrdup(name ? name : "filter");
    return sl__stream_add_op(s, &filter_vt, c, sl_stream_schema(s));
}

/* ---- filter kernel: string column [NOT] IN (constants) ------------------- */
typedef struct {
    int col;
    int n;
    bool negate;
    char **vals;
    uint32_t *lens;
    const char **dom; /* the schema's domain string equal to vals[i], or NULL */
} in_conf;

static void in_conf_free(void *p)
{
    in_conf *c = p;
    if (!c) return;
    for (int i = 0; i < c->n; i++) free(c->vals[i]);
    free(c->vals);
    free(c->lens);
    free(c->dom);
    free(c);
}

static inline bool in_match(const in_conf *c, const sl_str *v)
{
    for (int i = 0; i < c->n; i++) {
        if (c->dom[i] != NULL && v->ptr == c->dom[i]) return true;
        if (v->len == c->lens[i] && memcmp(v->ptr, c->vals[i], v->len) == 0)
            return true;
    }
    return false;
}

static void in_filter(const sl_batch *b, uint8_t *keep, void *ud)
{
    const in_conf *c = ud;
    const uint8_t *valid = b->cols[c->col].valid;
    const sl_str *d = b->cols[c->col].data;
    const uint32_t n = b->n;
    if (c->n == 1 && !c->negate) { /* the common `col = 'x'` */
        const char *dom = c->dom[0], *val = c->vals[0];
        const uint32_t len = c->lens[0];
        for (uint32_t r = 0; r < n; r++)
            keep[r] = valid[r] && ((dom != NULL && d[r].ptr == dom) ||
                                   (d[r].len == len && memcmp(d[r].ptr, val, len) == 0));
        return;
    }
    for (uint32_t r = 0; r < n; r++)
        keep[r] = valid[r] && in_match(c, &d[r]) != c->negate;
}

sl_stream *sl_stream_filter_in(sl_stream *s, const char *col,
                               const char *const *values, int negate)
{
    if (!s) return NULL;
    const sl_schema *in = sl_stream_schema(s);
    int k = col ? sl_schema_find(in, col) : -1;
    int n = 0;
    while (values && values[n]) n++;
    if (k < 0 || in->cols[k].type != SL_STRING || n == 0) {
        sl__job_fail(sl__stream_job(s), SL_EINVAL,
                     k < 0 ? "filter_in: no column '%s' in the stream"
                     : n == 0 ? "filter_in %s: needs at least one value"
                              : "filter_in: column '%s' is not VARCHAR",
                     col ? col : "(null)");
        return NULL;
    }
    in_conf *ic = sl__xcalloc(1, sizeof *ic);
    ic->col = k;
    ic->n = n;
    ic->negate = negate != 0;
    ic->vals = sl__xcalloc((size_t)n, sizeof(char *));
    ic->lens = sl__xcalloc((size_t)n, sizeof(uint32_t));
    ic->dom = sl__xcalloc((size_t)n, sizeof(char *));
    const struct sl__colinfo *ci = &in->cols[k];
    for (int i = 0; i < n; i++) {
        ic->vals[i] = sl__xstrdup(values[i]);
        ic->lens[i] = (uint32_t)strlen(values[i]);
        for (int j = 0; ci->domain != NULL && j < ci->ndomain; j++)
            if (strcmp(ci->domain[j], values[i]) == 0) ic->dom[i] = ci->domain[j];
    }
    filter_conf *c = sl__xcalloc(1, sizeof *c);
    c->fn = in_filter;
    c->ud = ic;
    c->ud_free = in_conf_free;
    c->name = sl__xstrdup("filter-in");
    return sl__stream_add_op(s, &filter_vt, c, in);
}

/* ---- project ------------------------------------------------------------- */
typedef struct {
    int n;
    int src[SL_MAX_COLS]; /* output column i comes from input column src[i] */
} project_conf;

typedef struct {
    const project_conf *c;
    const sl_schema *out;
} project_op;

static int project_open(void **st, const void *conf, const sl__opinfo *info,
                        sl__ctx *ctx, char *err, size_t errsz)
{
    (void)ctx, (void)err, (void)errsz;
    project_op *p = sl__xcalloc(1, sizeof *p);
    p->c = conf;
    p->out = info->out;
    *st = p;
    return 0;
}

/* Re-labels the batch: the column arrays move, the arena stays. */
static int project_batch(void *st, sl_batch *b, sl__out *out)
{
    project_op *p = st;
    struct sl__col cols[SL_MAX_COLS];
    for (int i = 0; i < p->c->n; i++) cols[i] = b->cols[p->c->src[i]];
    /* only the n entries just filled are copied */
    // cppcheck-suppress uninitvar
    memcpy(b->cols, cols, sizeof(struct sl__col) * (size_t)p->c->n);
    b->schema = p->out;
    return sl__emit(out, b);
}

static const sl__op_vt project_vt = {
    .name = "project", .open = project_open, .batch = project_batch,
    .close = op_free, .conf_free = free};

sl_stream *sl_stream_project(sl_stream *s, const char *const *cols)
{
    if (!s) return NULL;
    const sl_schema *in = sl_stream_schema(s);
    project_conf *c = sl__xcalloc(1, sizeof *c);
    sl_schema *out = sl_schema_new();
    for (size_t i = 0; cols && cols[i]; i++) {
        int k = sl_schema_find(in, cols[i]);
        if (k < 0 || sl_schema_add(out, cols[i], in->cols[k].type) < 0) {
            sl__job_fail(sl__stream_job(s), SL_EINVAL,
                         k < 0 ? "project: no column '%s' in the stream"
                               : "project: column '%s' named twice", cols[i]);
            free(c);
            sl_schema_free(out);
            return NULL;
        }
        out->cols[c->n].identifier = in->cols[k].identifier;
        c->src[c->n++] = k;
    }
    if (c->n == 0) {
        sl__job_fail(sl__stream_job(s), SL_EINVAL, "project: no columns given");
        free(c);
        sl_schema_free(out);
        return NULL;
    }
    sl_stream *r = sl__stream_add_op(s, &project_vt, c, out);
    sl_schema_free(out);
    return r;
}
