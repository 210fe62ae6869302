/* plan.c — the public SQL entry points (sl_sql_*): compiling a script
 * (parse + analyse), explaining the plan, and building it into a job with
 * the public builders only (sl_job_source, sl_stream_pseudonymise,
 * sl_stream_lookup, sl_stream_filter/map with the SQL evaluator,
 * sl_stream_key_by, sl_stream_window, sl_stream_k_anon, sl_stream_sink),
 * exactly as a C user would. The sl_sql owns what the job borrows (schemas,
 * tables, keyring, evaluator programs), so it is freed after the job. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "sql/analyze.h" /* includes sql/sql.h */

sl_sql *sl_sql_new(void) { return sl__xcalloc(1, sizeof(sl_sql)); }

void sql_plan_reset(sl_sql *q)
{
    sql_kv_free(q->src_conf);
    sl_schema_free(q->src_schema);
    free(q->src_alias);
    free(q->time_col);
    for (int i = 0; i < q->npseudo; i++) free(q->pseudo[i]);
    free(q->pseudo_keyid);
    for (int j = 0; j < q->njoins; j++) {
        sql_pjoin *pj = &q->joins[j];
        free(pj->alias);
        sl_schema_free(pj->schema);
        sql_kv_free(pj->conf);
        free(pj->stream_key);
        free(pj->on_text);
        for (int i = 0; i < pj->ncols; i++) free(pj->cols[i]);
        free(pj->cols);
        sl_table_free(pj->table);
    }
    sql_prog_free(q->where);
    free(q->where_text);
    sql_prog_free(q->where_pre);
    free(q->where_pre_text);
    sql_prog_free(q->pre);
    for (int i = 0; q->keys && q->keys[i]; i++) free(q->keys[i]);
    free(q->keys);
    for (int i = 0; i < q->naggs; i++) {
        free((char *)q->aggs[i].as);
        free((char *)q->aggs[i].col);
        free((double *)q->aggs[i].bounds);
        free(q->agg_text[i]);
    }
    sql_prog_free(q->having);
    free(q->having_text);
    sql_prog_free(q->post);
    sl__sql_ij_free(q->ij);
    sl__sql_venue_free(q->venue);
    free(q->k_col);
    free(q->dp_sub);
    sql_kv_free(q->dp_cols);
    free(q->dp_key);
    free(q->sink_conn);
    sql_kv_free(q->sink_conf);
    sl_keyring_free(q->keyring);
    for (int i = 0; i < q->njobkv * 2; i++) free(q->jobkv[i]);
    free(q->jobkv);
    free(q->key_file);
    free(q->file);
    sql_script_free(&q->script);
    sl_sql *keep_udf_vars = q;
    sql_udf *udfs = keep_udf_vars->udfs;
    int nudfs = q->nudfs;
    const sl_udaf **udafs = q->udafs;
    int nudafs = q->nudafs;
    char **vars = q->vars;
    int nvars = q->nvars;
    bool *used = q->var_used;
    memset(q, 0, sizeof *q);
    q->udfs = udfs;
    q->nudfs = nudfs;
    q->udafs = udafs;
    q->nudafs = nudafs;
    q->vars = vars;
    q->nvars = nvars;
    q->var_used = used;
}

void sl_sql_free(sl_sql *q)
{
    if (!q) return;
    sql_plan_reset(q);
    for (int i = 0; i < q->nudfs; i++) free(q->udfs[i].name);
    free(q->udfs);
    free(q->udafs);
    for (int i = 0; i < 2 * q->nvars; i++) free(q->vars[i]);
    free(q->vars);
    free(q->var_used);
    free(q);
}

/* A new function's name: letters, digits and _, not taken. */
static int check_name(const sl_sql *q, const char *name, char *err, size_t errsz)
{
    bool ok = (name[0] >= 'A' && name[0] <= 'Z') || (name[0] >= 'a' && name[0] <= 'z') ||
              name[0] == '_';
    for (const char *p = name; ok && *p; p++)
        ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_' ||
             (*p >= '0' && *p <= '9');
    if (!ok)
        return sl__err(err, errsz, SL_EINVAL, "sql: function name '%s' must be letters, "
                       "digits and _", name);
    if (sql_func_find(name, NULL))
        return sl__err(err, errsz, SL_EINVAL, "sql: '%s' is a built-in function", name);
    for (int i = 0; i < q->nudfs; i++)
        if (sql_ieq(q->udfs[i].name, name))
            return sl__err(err, errsz, SL_EINVAL, "sql: function '%s' is already "
                           "registered", name);
    for (int i = 0; i < q->nudafs; i++)
        if (sql_ieq(q->udafs[i]->name, name))
            return sl__err(err, errsz, SL_EINVAL, "sql: function '%s' is already "
                           "registered", name);
    return 0;
}

int sl_sql_add_function(sl_sql *q, const char *name, sl_type ret,
                        const sl_type *args, int nargs, sl_sql_udf fn,
                        void *udata, char *err, size_t errsz)
{
    if (!q || !name || !fn || nargs < 0 || nargs > 8 || (nargs && !args))
        return sl__err(err, errsz, SL_EINVAL, "sql: a function needs a name, a "
                       "callback and 0 to 8 argument types");
    int rc = check_name(q, name, err, errsz);
    if (rc) return rc;
    q->udfs = sl__xrealloc(q->udfs, sizeof(*q->udfs) * (size_t)(q->nudfs + 1));
    sql_udf *u = &q->udfs[q->nudfs++];
    memset(u, 0, sizeof *u);
    u->name = sl__xstrdup(name);
    u->ret = ret;
    u->nargs = nargs;
    if (nargs) memcpy(u->args, args, sizeof(*args) * (size_t)nargs);
    u->fn = fn;
    u->udata = udata;
    return 0;
}

int sl_sql_add_aggregate(sl_sql *q, const sl_udaf *a, char *err, size_t errsz)
{
    if (!q || !a || !a->name || !a->add || !a->merge || !a->result ||
        a->state_size < 1 || a->state_size > 4096)
        return sl__err(err, errsz, SL_EINVAL, "sql: an aggregate needs a name, add, "
                       "merge and result callbacks and state_size in [1, 4096]");
    if (!(a->out_type == SL_INT64 || a->out_type == SL_FLOAT64 || a->out_type == SL_BOOL ||
          a->out_type == SL_TIMESTAMP))
        return sl__err(err, errsz, SL_EINVAL, "sql: aggregate '%s' returns %s (allowed: "
                       "BIGINT, DOUBLE, BOOLEAN, TIMESTAMP)", a->name,
                       sl_type_name(a->out_type));
    int rc = check_name(q, a->name, err, errsz);
    if (rc) return rc;
    q->udafs = sl__xrealloc(q->udafs, sizeof(*q->udafs) * (size_t)(q->nudafs + 1));
    q->udafs[q->nudafs++] = a;
    return 0;
}

int sl_sql_set(sl_sql *q, const char *key, const char *value, char *err, size_t errsz)
{
    if (!q || !key || !*key || !value)
        return sl__err(err, errsz, SL_EINVAL, "sql: set needs a key and a value");
    for (int i = 0; i < q->nvars; i++)
        if (!strcmp(q->vars[2 * i], key)) {
            free(q->vars[2 * i + 1]);
            q->vars[2 * i + 1] = sl__xstrdup(value);
            return 0;
        }
    q->vars = sl__xrealloc(q->vars, sizeof(char *) * (size_t)(2 * q->nvars + 2));
    q->var_used = sl__xrealloc(q->var_used, sizeof(bool) * (size_t)(q->nvars + 1));
    q->vars[2 * q->nvars] = sl__xstrdup(key);
    q->vars[2 * q->nvars + 1] = sl__xstrdup(value);
    q->var_used[q->nvars] = false;
    q->nvars++;
    return 0;
}

int sl_sql_compile(sl_sql *q, const char *text, const char *filename, char *err,
                   size_t errsz)
{
    if (!q || !text) return sl__err(err, errsz, SL_EINVAL, "sql: no script");
    sql_plan_reset(q);
    for (int i = 0; i < q->nvars; i++) q->var_used[i] = false;
    const char *fn = filename ? filename : "<sql>";
    q->file = sl__xstrdup(fn);
    char msg[1024] = "";
    int rc = sql_parse(text, &q->script, msg, sizeof msg, &q->eline, &q->ecol);
    if (!rc) rc = sql_analyze(q, msg, sizeof msg);
    if (rc) {
        if (q->eline > 0) sl__err(err, errsz, rc, "%s:%s", fn, msg);
        else {
            /* errors not tied to a place in the script ("0:0: ...") */
            const char *m = strncmp(msg, "0:0: ", 5) ? msg : msg + 5;
            sl__err(err, errsz, rc, "%s: %s", fn, m);
        }
        return rc;
    }
    q->compiled = true;
    return 0;
}

void sl_sql_error_pos(const sl_sql *q, int *line, int *col)
{
    if (line) *line = q ? q->eline : 0;
    if (col) *col = q ? q->ecol : 0;
}

/* ---- explain -------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, used;
} out;

static void say(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->used < o->n ? o->n - o->used : 0;
    int k = vsnprintf(room ? o->p + o->used : NULL, room, fmt, ap);
    va_end(ap);
    if (k > 0) o->used += (size_t)k;
}

static void say_schema(out *o, const sl_schema *s)
{
    for (int i = 0; i < sl_schema_ncols(s); i++)
        say(o, "%s%s %s", i ? ", " : "", sl_schema_col_name(s, i),
            sl_type_name(sl_schema_col_type(s, i)));
}

static void say_kv(out *o, char **kv)
{
    for (int i = 0; kv && kv[i]; i += 2) say(o, "%s%s=%s", i ? " " : "", kv[i], kv[i + 1]);
}

static void say_prog(out *o, const sql_prog *p, const char *indent)
{
    for (int i = 0; i < p->n; i++) {
        char buf[2048];
        sql_expr_print(p->exprs[i], buf, sizeof buf);
        say(o, "%s%s %s = %s\n", indent, sl_schema_col_name(p->out, i),
            sl_type_name(sl_schema_col_type(p->out, i)), buf);
    }
}

static const char *jobkey(const sl_sql *q, const char *k)
{
    const char *v = NULL;
    for (int i = 0; i < q->njobkv; i++)
        if (!strcmp(q->jobkv[2 * i], k)) v = q->jobkv[2 * i + 1];
    return v;
}

static const char *const agg_kind_name[] = {
    "COUNT", "SUM", "MIN", "MAX", "AVG", "COUNT(DISTINCT)", "APPROX_COUNT_DISTINCT",
    "HISTOGRAM"};

/* The values of `c = 'a'`, `c = 'a' OR c = 'b' ...` (how the analyser
 * writes IN lists) or `c IN ('a', ...)` over one VARCHAR column c of the
 * stream, no NULL literal among them: appended to vals (at most 16), the
 * column to *col. False for any other shape. */
static bool str_in_shape(const sql_expr *e, const sl_schema *in, const char **col,
                         const char **vals, int *nv)
{
    if (e->k == E_BIN && e->op == OP_OR && e->nargs == 2)
        return str_in_shape(e->args[0], in, col, vals, nv) &&
               str_in_shape(e->args[1], in, col, vals, nv);
    const sql_expr *c = NULL;
    int from = 0, to = 0;
    if (e->k == E_BIN && e->op == OP_EQ && e->nargs == 2) {
        c = e->args[0]->k == E_COL ? e->args[0] : e->args[1];
        from = to = c == e->args[0] ? 1 : 0;
    } else if (e->k == E_IN && !e->negate && e->nargs >= 2) {
        c = e->args[0];
        from = 1;
        to = e->nargs - 1;
    }
    if (c == NULL || c->k != E_COL || c->type != SL_STRING || c->name == NULL ||
        sl_schema_find(in, c->name) != c->slot || (*col && strcmp(*col, c->name)))
        return false;
    *col = c->name;
    for (int i = from; i <= to; i++) {
        const sql_expr *l = e->args[i];
        if (*nv >= 16 || l->k != E_LIT || l->lnull || l->is_null_lit ||
            l->lt != SL_STRING || l->ls == NULL)
            return false;
        vals[(*nv)++] = l->ls;
    }
    return true;
}

/* One kernel condition: [NOT] str_in_shape. */
static bool kernel_shape(const sql_expr *e, const sl_schema *in, const char **col,
                         const char **vals, int *nv, bool *negate)
{
    *col = NULL;
    *nv = 0;
    *negate = e->k == E_NOT && e->nargs == 1;
    if (e->k == E_IN && e->negate) { /* NOT IN kept as such */
        sql_expr pos = *e;
        pos.negate = false;
        *negate = true;
        return str_in_shape(&pos, in, col, vals, nv);
    }
    return str_in_shape(*negate ? e->args[0] : e, in, col, vals, nv);
}

static bool all_kernels(const sql_expr *e, const sl_schema *in)
{
    if (e->k == E_BIN && e->op == OP_AND && e->nargs == 2)
        return all_kernels(e->args[0], in) && all_kernels(e->args[1], in);
    const char *col, *vals[17];
    int nv;
    bool neg;
    return kernel_shape(e, in, &col, vals, &nv, &neg);
}

static sl_stream *add_kernels(sl_stream *s, const sql_expr *e)
{
    if (e->k == E_BIN && e->op == OP_AND && e->nargs == 2)
        return add_kernels(add_kernels(s, e->args[0]), e->args[1]);
    const char *col, *vals[17];
    int nv;
    bool neg;
    if (!s || !kernel_shape(e, sl_stream_schema(s), &col, vals, &nv, &neg)) return NULL;
    vals[nv] = NULL;
    return sl_stream_filter_in(s, col, vals, neg);
}

size_t sl_sql_explain(const sl_sql *q, char *buf, size_t size)
{
    out o = {buf, size, 0};
    if (size) buf[0] = 0;
    if (!q || !q->compiled) {
        say(&o, "(not compiled)\n");
        return o.used;
    }
    const char *par = jobkey(q, "parallelism");
    const char *del = jobkey(q, "delivery");
    const char *ck = jobkey(q, "checkpoint.dir");
    say(&o, "job %s\n", q->file);
    say(&o, "  parallelism %s, delivery %s, checkpoints %s%s\n",
        par && strcmp(par, "0") ? par : "one task per core (0)",
        del ? del : "exactly-once", ck && *ck ? "in " : "off", ck && *ck ? ck : "");
    for (int i = 0; i < q->njobkv; i++)
        say(&o, "  SET %s = %s\n", q->jobkv[2 * i], q->jobkv[2 * i + 1]);
    say(&o, "stage 1: source tasks, one per input partition at most (parallelism)\n");
    const sql_opt *c = NULL;
    for (int i = 0; i < q->src->nopts; i++)
        if (sql_ieq(q->src->opts[i].key, "connector")) c = &q->src->opts[i];
    say(&o, "  source %s (%s): ", q->src->name, c ? c->value : "?");
    say_kv(&o, q->src_conf);
    say(&o, "\n    columns: ");
    say_schema(&o, q->src_schema);
    if (q->time_col)
        say(&o, "\n    event time %s, watermark delay %lld ms\n", q->time_col,
            (long long)q->wm_delay);
    else
        say(&o, "\n    no event time\n");
    for (int i = 0; i < q->npseudo; i++)
        say(&o, "  pseudonymise %s -> BIGINT pseudonym (HMAC-SHA-256, keys %s); the raw "
            "value goes no further\n", q->pseudo[i], q->key_file ? q->key_file : "(unset)");
    if (q->where && q->where_early)
        say(&o, "  filter WHERE %s%s\n", q->where_text,
            all_kernels(q->where->exprs[0], q->src_schema) ? " (string kernel)" : "");
    if (q->where_pre)
        say(&o, "  filter WHERE %s (pushed before the joins%s)\n", q->where_pre_text,
            all_kernels(q->where_pre->exprs[0], q->src_schema) ? "; string kernel" : "");
    for (int j = 0; j < q->njoins; j++) {
        const sql_pjoin *pj = &q->joins[j];
        say(&o, "  lookup join %s AS %s ON %s (left: no match gives NULLs); table loaded "
            "at start%s; appends: ", pj->tab->name, pj->alias, pj->on_text,
            pj->pseudo ? ", keys pseudonymised as it loads" : "");
        for (int i = 0; i < pj->ncols; i++) say(&o, "%s%s", i ? ", " : "", pj->cols[i]);
        say(&o, "%s\n", pj->ncols ? "" : "(nothing)");
    }
    if (q->where && !q->where_early) say(&o, "  filter WHERE %s\n", q->where_text);
    int st = 2;
    if (q->ij) {
        char ij[4096];
        sl__sql_ij_explain(q, st++, ij, sizeof ij);
        say(&o, "%s", ij);
    }
    if (q->dp_sub) {
        say(&o, "stage %d: keyed by (%s), the pseudonymised subscriber\n", st++, q->dp_sub);
        say(&o, "  dp_bound: at most %lld events per subscriber per window; epsilon "
            "ledger per subscriber, budget %g per %lld ms\n", (long long)q->dp.max_contrib,
            q->dp.budget, (long long)q->dp.period_ms);
    }
    if (q->agg) {
        say(&o, "  map (vectorised expressions):\n");
        say_prog(&o, q->pre, "    ");
        if (q->nkeys) {
            say(&o, "stage %d: keyed by (", st++);
            for (int k = 0; k < q->nkeys; k++) say(&o, "%s%s", k ? ", " : "", q->keys[k]);
            say(&o, "), key groups hashed to parallel tasks\n");
        } else {
            say(&o, "stage %d: one task (no key: a global window)\n", st++);
        }
        if (q->session_gap)
            say(&o, "  window SESSION gap %lld ms (per key; sessions merge when a record "
                "bridges them)", (long long)q->session_gap);
        else if (q->win.slide_ms)
            say(&o, "  window HOP size %lld ms, slide %lld ms (each record in %lld windows)",
                (long long)q->win.size_ms, (long long)q->win.slide_ms,
                (long long)(q->win.size_ms / q->win.slide_ms));
        else
            say(&o, "  window TUMBLE %lld ms", (long long)q->win.size_ms);
        say(&o, "; fires when the watermark passes the window's end\n");
        say(&o, "    state per (window, key): ");
        for (int i = 0; i < q->naggs; i++) {
            const sl_agg_spec *a = &q->aggs[i];
            say(&o, "%s%s = %s", i ? ", " : "", a->as, q->agg_text[i]);
            if (a->kind == SL_AGG_COUNT_DISTINCT) say(&o, " [exact set]");
            else if (a->kind == SL_AGG_APPROX_COUNT_DISTINCT) say(&o, " [HyperLogLog, 16 KiB]");
            else if (a->kind == SL_AGG_APPROX_PERCENTILE)
                say(&o, " [DDSketch, relative error %g]", a->accuracy ? a->accuracy : 0.01);
            (void)agg_kind_name;
        }
        say(&o, "\n");
        if (q->having) say(&o, "  filter HAVING %s\n", q->having_text);
    }
    if (q->venue) {
        char vb[4096];
        sl__sql_venue_explain(q, st++, vb, sizeof vb);
        say(&o, "%s", vb);
    }
    if (q->post) {
        say(&o, "  map (vectorised expressions):\n");
        say_prog(&o, q->post, "    ");
    }
    if (q->k_col)
        say(&o, "  k-anonymity: rows with %s < %lld are withheld and counted\n", q->k_col,
            (long long)q->k);
    if (q->dp_sub) {
        say(&o, "  dp_noise (%s, epsilon %g", q->dp.mechanism == SL_DP_GAUSSIAN ? "Gaussian"
            : "discrete Laplace", q->dp.epsilon);
        if (q->dp.mechanism == SL_DP_GAUSSIAN) say(&o, ", delta %g", q->dp.delta);
        say(&o, " per release) on ");
        for (int i = 0; q->dp_cols[i]; i++) say(&o, "%s%s", i ? ", " : "", q->dp_cols[i]);
        say(&o, "\n");
    }
    say(&o, "stage %d: sink %s (%s, single writer): ", st, q->sink->name,
        q->sink_conn);
    say_kv(&o, q->sink_conf);
    say(&o, "\n");
    return o.used;
}

/* ---- build ------------------------------------------------------------------ */

/* Prefixes a builder error with the place of the WITH option it names. */
static int place_error(const sl_sql *q, const sql_stmt *st, const char *msg, char *err,
                       size_t errsz, int rc)
{
    for (int i = 0; st && i < st->nopts; i++) {
        char pat[160];
        snprintf(pat, sizeof pat, "'%s'", st->opts[i].key);
        if (strstr(msg, pat))
            return sl__err(err, errsz, rc, "%s:%d:%d: %s", q->file, st->opts[i].line,
                           st->opts[i].col, msg);
    }
    if (st)
        return sl__err(err, errsz, rc, "%s:%d:%d: %s", q->file, st->with_line, st->with_col,
                       msg);
    return sl__err(err, errsz, rc, "%s: %s", q->file, msg);
}

/* Projection pushdown: the names of the source columns the plan reads
 * (every E_COL of its expressions, the pseudonymised and join-key columns,
 * keys, aggregate inputs, k and DP columns; names that are not source
 * columns are ignored), added to `v` (n entries, room for SL_MAX_COLS). */
static void cols_of(const sql_expr *e, const sl_schema *src, const char **v, int *n)
{
    if (!e) return;
    if (e->k == E_COL && e->name && sl_schema_find(src, e->name) >= 0) {
        bool have = false;
        for (int i = 0; i < *n && !have; i++) have = !strcmp(v[i], e->name);
        if (!have && *n < SL_MAX_COLS) v[(*n)++] = e->name;
    }
    for (int i = 0; i < e->nargs; i++) cols_of(e->args[i], src, v, n);
}

static void name_of(const char *name, const sl_schema *src, const char **v, int *n)
{
    if (!name) return;
    sql_expr e = {.k = E_COL, .name = (char *)name};
    cols_of(&e, src, v, n);
}

static void prog_cols(const sql_prog *p, const sl_schema *src, const char **v, int *n)
{
    for (int i = 0; p && i < p->n; i++) cols_of(p->exprs[i], src, v, n);
}

/* Tells the source which columns the plan reads (sl_job_source_columns).
 * Interval joins and venue reports read columns their own way: for them
 * every column stays. */
static int push_columns(const sl_sql *q, sl_job *job)
{
    if (q->ij || q->venue) return 0;
    const sl_schema *src = q->src_schema;
    const char *v[SL_MAX_COLS + 1];
    int n = 0;
    prog_cols(q->where, src, v, &n);
    prog_cols(q->where_pre, src, v, &n);
    prog_cols(q->pre, src, v, &n);
    prog_cols(q->having, src, v, &n);
    prog_cols(q->post, src, v, &n);
    name_of(q->time_col, src, v, &n);
    for (int i = 0; i < q->npseudo; i++) name_of(q->pseudo[i], src, v, &n);
    for (int j = 0; j < q->njoins; j++) name_of(q->joins[j].stream_key, src, v, &n);
    for (int i = 0; q->keys && q->keys[i]; i++) name_of(q->keys[i], src, v, &n);
    for (int i = 0; i < q->naggs; i++) name_of(q->aggs[i].col, src, v, &n);
    name_of(q->k_col, src, v, &n);
    name_of(q->dp_sub, src, v, &n);
    for (int i = 0; q->dp_cols && q->dp_cols[i]; i++) name_of(q->dp_cols[i], src, v, &n);
    v[n] = NULL;
    return sl_job_source_columns(job, v);
}

/* A filter for a bound WHERE: when it is an AND of conditions
 * `varchar_col [NOT] IN ('a', ...)` / `varchar_col = 'a'` (no NULL literal,
 * so SQL's three-valued logic is just "NULL is never kept"), one
 * sl_stream_filter_in kernel per condition; otherwise the general
 * evaluator. A NOT over NULL is NULL, never kept, as in the kernel. */
static sl_stream *where_filter(sl_stream *s, sql_prog *p)
{
    if (s && all_kernels(p->exprs[0], sl_stream_schema(s))) return add_kernels(s, p->exprs[0]);
    return sl_stream_filter(s, "WHERE", sql_prog_filter, p);
}

int sl_sql_build(sl_sql *q, sl_job *job, char *err, size_t errsz)
{
    if (!q || !q->compiled)
        return sl__err(err, errsz, SL_ESTATE, "sql: compile the script first");
    char e2[1024];
    for (int i = 0; i < q->njobkv; i++)
        if (sl_job_set(job, q->jobkv[2 * i], q->jobkv[2 * i + 1], e2, sizeof e2))
            return sl__err(err, errsz, SL_EINVAL, "%s: %s", q->file, e2);
    bool need_keys = q->npseudo > 0 || q->dp_sub;
    for (int j = 0; j < q->njoins; j++) need_keys |= q->joins[j].pseudo;
    if (need_keys && !q->keyring) {
        if (!q->key_file)
            return sl__err(err, errsz, SL_EINVAL, "%s: PSEUDONYMIZE needs a key file: "
                           "SET 'key.file' = 'PATH' (see sluice keygen)", q->file);
        q->keyring = sl_keyring_load(q->key_file, e2, sizeof e2);
        if (!q->keyring) return sl__err(err, errsz, SL_EINVAL, "%s: %s", q->file, e2);
        if (q->pseudo_keyid && strcmp(q->pseudo_keyid, sl_keyring_current_id(q->keyring)))
            return sl__err(err, errsz, SL_EINVAL, "%s: PSEUDONYMIZE names key '%s' but the "
                           "current key of %s is '%s'", q->file, q->pseudo_keyid,
                           q->key_file, sl_keyring_current_id(q->keyring));
    }
    for (int j = 0; j < q->njoins; j++) {
        sql_pjoin *pj = &q->joins[j];
        if (pj->table) continue;
        const char *conn = "file";
        for (int i = 0; i < pj->tab->nopts; i++)
            if (sql_ieq(pj->tab->opts[i].key, "connector")) conn = pj->tab->opts[i].value;
        pj->table = sl_job_table_load(job, conn, pj->schema, pj->tab->pk,
                                      (const char *const *)pj->conf,
                                      pj->pseudo ? q->keyring : NULL, NULL, e2,
                                      sizeof e2);
        if (!pj->table) return place_error(q, pj->tab, e2, err, errsz, SL_EINVAL);
    }
    if (q->venue && sl__sql_venue_load(q, e2, sizeof e2))
        return place_error(q, sl__sql_venue_table(q), e2, err, errsz, SL_EINVAL);
    char **conf = NULL;
    for (int i = 0; q->src_conf[i]; i += 2) conf = sql_kv_push(conf, q->src_conf[i], q->src_conf[i + 1]);
    if (q->time_col && !sl__kv_get((const char *const *)conf, "time.column"))
        conf = sql_kv_push(conf, "time.column", q->time_col);
    char d[32];
    snprintf(d, sizeof d, "%lld", (long long)q->wm_delay);
    if (q->time_col && !sl__kv_get((const char *const *)conf, "watermark.delay.ms"))
        conf = sql_kv_push(conf, "watermark.delay.ms", d);
    const sql_opt *co = NULL;
    for (int i = 0; i < q->src->nopts; i++)
        if (sql_ieq(q->src->opts[i].key, "connector")) co = &q->src->opts[i];
    if (!co) { /* the analyser requires one (sl__sql_connector) */
        sql_kv_free(conf);
        return place_error(q, q->src, "source has no connector", err, errsz, SL_EINTERNAL);
    }
    sl_stream *s = sl_job_source(job, co->value, q->src_schema, (const char *const *)conf);
    sql_kv_free(conf);
    if (!s) return place_error(q, q->src, sl_job_error(job), err, errsz, SL_EINVAL);
    if (push_columns(q, job))
        return place_error(q, q->src, sl_job_error(job), err, errsz, SL_EINVAL);
    for (int i = 0; i < q->npseudo; i++)
        s = sl_stream_pseudonymise(s, q->pseudo[i], q->pseudo[i], q->keyring);
    if (q->where && q->where_early) s = where_filter(s, q->where);
    if (q->where_pre) s = where_filter(s, q->where_pre);
    for (int j = 0; j < q->njoins; j++) {
        sql_pjoin *pj = &q->joins[j];
        if (pj->ncols == 0) continue; /* left join that adds nothing: a no-op */
        s = sl_stream_lookup(s, pj->stream_key, pj->table, (const char *const *)pj->cols);
    }
    if (q->where && !q->where_early)
        s = sl_stream_filter(s, "WHERE", sql_prog_filter, q->where);
    if (q->ij) s = sl__sql_ij_build(q, s);
    if (q->dp_sub) {
        s = sl_stream_key_by(s, (const char *const[]){q->dp_sub, NULL});
        s = sl_stream_dp_bound(s, q->dp_sub, &q->dp);
    }
    if (q->agg) {
        s = sl_stream_map(s, "sql-keys", q->pre->out, sql_prog_map, q->pre);
        if (q->nkeys) s = sl_stream_key_by(s, (const char *const *)q->keys);
        if (q->session_gap)
            s = sl_stream_session(s, &(sl_session_spec){q->session_gap, q->win.lateness_ms},
                                  q->aggs, (size_t)q->naggs);
        else
            s = sl_stream_window(s, &q->win, q->aggs, (size_t)q->naggs);
        if (q->having) s = sl_stream_filter(s, "HAVING", sql_prog_filter, q->having);
    }
    if (q->venue) s = sl__sql_venue_build(q, s);
    if (q->post) s = sl_stream_map(s, "sql-select", q->post->out, sql_prog_map, q->post);
    if (q->k_col) s = sl_stream_k_anon(s, q->k_col, q->k);
    if (q->dp_sub) {
        q->dp.key_id = q->dp_key;
        s = sl_stream_dp_noise(s, (const char *const *)q->dp_cols, &q->dp, q->keyring);
    }
    int rc = s ? sl_stream_sink(s, q->sink_conn, (const char *const *)q->sink_conf) : SL_EINVAL;
    if (rc || sl_job_error(job))
        return place_error(q, q->sink, sl_job_error(job) ? sl_job_error(job)
                                                         : sl_strerror(rc), err, errsz,
                           rc ? rc : SL_EINVAL);
    return 0;
}
