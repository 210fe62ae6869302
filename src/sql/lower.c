/* lower.c — the second half of the SQL analyser: cuts the sink's SELECT
 * into the operators the C API offers (see analyze.c for the pipeline):
 * the window from GROUP BY, group keys and aggregate inputs for the
 * pre-window map, HAVING and the SELECT list after the window, k-anonymity
 * and the sink's options, then the column slots of every program. */
#include <stdlib.h>
#include <string.h>

#include <math.h>
#include <stddef.h>

#include "core/core.h"
#include "ops/privacy.h"
#include "sql/analyze.h"

/* Whether e calls an aggregate, built in or registered (udafs). */
static bool agg_in(const sl_sql *q, const sql_expr *e)
{
    if (!e) return false;
    if (e->k == E_FUNC) {
        int id;
        const sql_fdef *f = sql_func_find(e->name, &id);
        if (f && f->kind == F_AGG) return true;
        for (int i = 0; !f && i < q->nudafs; i++)
            if (sql_ieq(q->udafs[i]->name, e->name)) return true;
    }
    for (int i = 0; i < e->nargs; i++)
        if (agg_in(q, e->args[i])) return true;
    return false;
}
#define has_agg(e) agg_in(A->q, (e))

static bool only_source(const sl_sql *q, const sql_expr *e)
{
    if (e->k == E_COL && sl_schema_find(q->src_schema, e->name) < 0) return false;
    for (int i = 0; i < e->nargs; i++)
        if (!only_source(q, e->args[i])) return false;
    return true;
}

/* Predicate pushdown: moves the conjuncts of the AND tree *e that read
 * source columns only into *early (ANDed together), so they filter before
 * the lookup joins; *e keeps the rest, or becomes NULL. Filtering by a then
 * by b keeps exactly the rows where a AND b is TRUE, and lookup joins keep
 * or drop a row by its own key only, so the result is the same. */
static void split_where(const sl_sql *q, sql_expr **e, sql_expr **early)
{
    sql_expr *x = *e;
    if (x->k == E_BIN && x->op == OP_AND && x->nargs == 2) {
        split_where(q, &x->args[0], early);
        split_where(q, &x->args[1], early);
        if (x->args[0] && x->args[1]) return;
        *e = x->args[0] ? x->args[0] : x->args[1];
        x->args[0] = x->args[1] = NULL;
        sql_expr_free(x);
        return;
    }
    if (!only_source(q, x)) return;
    if (*early == NULL) {
        *early = x;
    } else {
        sql_expr *a = sl__xcalloc(1, sizeof *a);
        a->k = E_BIN;
        a->op = OP_AND;
        a->line = (*early)->line;
        a->col = (*early)->col;
        a->nargs = 2;
        a->args = sl__xmalloc(2 * sizeof *a->args);
        a->args[0] = *early;
        a->args[1] = x;
        a->type = SL_BOOL;
        *early = a;
    }
    *e = NULL;
}

static void rename_col(sql_expr *e, const char *from, const char *to)
{
    if (!e) return;
    if (e->k == E_COL && !strcmp(e->name, from)) {
        free(e->name);
        e->name = sl__xstrdup(to);
    }
    for (int i = 0; i < e->nargs; i++) rename_col(e->args[i], from, to);
}

static void slotify(actx *A, sql_expr *e, const sl_schema *s)
{
    if (!e || A->failed) return;
    if (e->k == E_COL) {
        e->slot = sl_schema_find(s, e->name);
        if (e->slot < 0) {
            sl__sql_fail(A, e->line, e->col, "internal error: column '%s' not found in the plan",
                 e->name);
            return;
        }
    }
    for (int i = 0; i < e->nargs; i++) slotify(A, e->args[i], s);
}

static sql_prog *prog_new(const char *name, sql_expr **v, int n, const sl_sql *q)
{
    sql_prog *p = sl__xcalloc(1, sizeof *p);
    p->name = sl__xstrdup(name);
    p->exprs = sl__xmalloc(sizeof(*v) * (size_t)(n ? n : 1));
    memcpy(p->exprs, v, sizeof(*v) * (size_t)n);
    p->n = n;
    p->udfs = q->udfs;
    return p;
}

static void prog_schema(sql_prog *p, char **names)
{
    p->out = sl_schema_new();
    for (int i = 0; i < p->n; i++) sl_schema_add(p->out, names[i], p->exprs[i]->type);
}

static bool name_taken(char **names, int n, const char *x)
{
    for (int i = 0; i < n; i++)
        if (names[i] && sql_ieq(names[i], x)) return true;
    return false;
}

/* The window of GROUP BY: TUMBLE(t, size), HOP(t, slide, size) or
 * SESSION(t, gap). */
static int window_of(actx *A, const sql_select *sel)
{
    sl_sql *q = A->q;
    int at = -1;
    for (int i = 0; i < sel->ngroup; i++) {
        const sql_expr *g = sel->group[i];
        int id;
        if (g->k != E_FUNC || !sql_func_find(g->name, &id) ||
            (id != FN_TUMBLE && id != FN_HOP && id != FN_SESSION))
            continue;
        if (at >= 0) {
            sl__sql_fail(A, g->line, g->col, "only one window function per GROUP BY");
            return -1;
        }
        at = i;
        int want = id == FN_HOP ? 3 : 2;
        if (g->nargs != want) {
            sl__sql_fail(A, g->line, g->col, "%s", id == FN_TUMBLE
                 ? "TUMBLE takes 2 arguments: TUMBLE(time, INTERVAL size)"
                 : id == FN_SESSION ? "SESSION takes 2 arguments: SESSION(time, INTERVAL gap)"
                 : "HOP takes 3 arguments: HOP(time, INTERVAL slide, INTERVAL size)");
            return -1;
        }
        for (int k = 1; k < want; k++)
            if (g->args[k]->k != E_LIT || !g->args[k]->interval || g->args[k]->li <= 0) {
                sl__sql_fail(A, g->args[k]->line, g->args[k]->col, "%s needs a positive "
                     "INTERVAL here, as in INTERVAL '1' MINUTE", sql_func_at(id)->name);
                return -1;
            }
        const sql_expr *t = g->args[0];
        if (t->k != E_COL) {
            sl__sql_fail(A, t->line, t->col, "the window's first argument must be the source's "
                 "time column");
            return -1;
        }
        int c = sl_schema_find(q->src_schema, t->name);
        for (int j = 0; c < 0 && j < sl_schema_ncols(q->src_schema); j++)
            if (sql_ieq(sl_schema_col_name(q->src_schema, j), t->name)) c = j;
        if (c < 0 || (t->qual && !sql_ieq(t->qual, q->src_alias) &&
                      !sql_ieq(t->qual, q->src->name))) {
            const char *cands[64];
            int n = sl_schema_ncols(q->src_schema);
            for (int j = 0; j < n; j++) cands[j] = sl_schema_col_name(q->src_schema, j);
            const char *near = c < 0 ? sql_nearest(t->name, cands, n) : NULL;
            sl__sql_fail(A, t->line, t->col, "unknown time column '%s' in source '%s'%s%s%s",
                 t->name, q->src->name, near ? "; did you mean '" : "", near ? near : "",
                 near ? "'?" : "");
            return -1;
        }
        const char *cn = sl_schema_col_name(q->src_schema, c);
        sl_type ct = sl_schema_col_type(q->src_schema, c);
        if (ct != SL_TIMESTAMP && ct != SL_INT64) {
            sl__sql_fail(A, t->line, t->col, "time column '%s' must be TIMESTAMP, not %s", cn,
                 sl_type_name(ct));
            return -1;
        }
        if (q->time_col && strcmp(q->time_col, cn)) {
            sl__sql_fail(A, t->line, t->col, "the window must use the source's event time '%s' "
                 "(WATERMARK FOR %s)", q->time_col, q->time_col);
            return -1;
        }
        if (!q->time_col) q->time_col = sl__xstrdup(cn);
        if (id == FN_TUMBLE) {
            q->win.size_ms = g->args[1]->li;
        } else if (id == FN_SESSION) {
            q->session_gap = g->args[1]->li;
            q->win.size_ms = g->args[1]->li; /* unused: kept valid */
        } else {
            q->win.slide_ms = g->args[1]->li;
            q->win.size_ms = g->args[2]->li;
            if (q->win.size_ms % q->win.slide_ms) {
                sl__sql_fail(A, g->args[2]->line, g->args[2]->col, "HOP's size must be a multiple "
                     "of its slide");
                return -1;
            }
            if (q->win.slide_ms == q->win.size_ms) q->win.slide_ms = 0;
        }
    }
    return at;
}

static const char *auto_name(const sql_expr *e, int i, char *buf, size_t n)
{
    if (e->k == E_COL) return e->name;
    if (e->k == E_FUNC) {
        int id;
        const sql_fdef *f = sql_func_find(e->name, &id);
        if (f && f->kind == F_AGG) {
            size_t j = 0;
            for (; f->name[j] && j + 1 < n; j++)
                buf[j] = (char)(f->name[j] >= 'A' && f->name[j] <= 'Z' ? f->name[j] + 32
                                                                       : f->name[j]);
            buf[j] = 0;
            return buf;
        }
    }
    snprintf(buf, n, "expr%d", i + 1);
    return buf;
}

static void aggregate_query(actx *A, const sql_select *sel, int wat,
                            sql_expr **items, char **out_names)
{
    sl_sql *q = A->q;
    int ng = sel->ngroup - 1;
    A->gkeys = sl__xcalloc((size_t)ng + 1, sizeof *A->gkeys);
    A->gnames = sl__xcalloc((size_t)ng + 1, sizeof *A->gnames);
    A->gtypes = sl__xcalloc((size_t)ng + 1, sizeof *A->gtypes);
    sql_expr **gb = sl__xcalloc((size_t)ng + 1, sizeof *gb);
    A->clause = "GROUP BY";
    for (int i = 0, k = 0; i < sel->ngroup && !A->failed; i++) {
        if (i == wat) continue;
        const sql_expr *g = sel->group[i];
        /* GROUP BY a SELECT alias */
        if (g->k == E_COL && !g->qual) {
            bool is_col = sl_schema_find(q->src_schema, g->name) >= 0;
            for (int j = 0; j < q->njoins; j++)
                is_col |= sl_schema_find(q->joins[j].schema, g->name) >= 0;
            for (int j = 0; !is_col && j < sel->nitems; j++)
                if (sel->items[j].alias && sql_ieq(sel->items[j].alias, g->name)) {
                    if (has_agg(sel->items[j].expr)) {
                        sl__sql_fail(A, g->line, g->col, "'%s' is an aggregate; it cannot be "
                             "grouped by", g->name);
                        break;
                    }
                    g = sel->items[j].expr;
                    break;
                }
        }
        if (A->failed) break;
        if (has_agg(g)) {
            sl__sql_fail(A, g->line, g->col, "aggregates are not allowed in GROUP BY");
            break;
        }
        gb[k] = sl__sql_bind(A, g, ST_PRE, q->njoins);
        if (!gb[k]) break;
        A->gkeys[k] = (sql_expr *)g;
        A->gtypes[k] = gb[k]->type;
        A->ngkeys = ++k;
    }
    /* key names: the SELECT alias of the same expression, else a column name */
    for (int k = 0; k < A->ngkeys && !A->failed; k++) {
        const char *nm = NULL;
        char buf[32];
        for (int j = 0; j < sel->nitems && !nm; j++)
            if (sql_expr_equal(sel->items[j].expr, A->gkeys[k]))
                nm = sel->items[j].alias ? sel->items[j].alias
                   : sel->items[j].expr->k == E_COL ? sel->items[j].expr->name : NULL;
        if (!nm && gb[k] && gb[k]->k == E_COL) nm = gb[k]->name;
        if (!nm || name_taken(A->gnames, k, nm) || sql_ieq(nm, "window_start") ||
            sql_ieq(nm, "window_end") || sql_ieq(nm, q->time_col) || nm[0] == '$') {
            snprintf(buf, sizeof buf, "$key%d", k);
            nm = buf;
        }
        A->gnames[k] = sl__xstrdup(nm);
    }
    /* SELECT and HAVING after the window */
    A->clause = "the SELECT list";
    for (int i = 0; i < sel->nitems && !A->failed; i++)
        items[i] = sl__sql_bind(A, sel->items[i].expr, ST_POST, q->njoins);
    sql_expr *having = NULL;
    if (sel->having && !A->failed) {
        A->clause = "HAVING";
        having = sl__sql_bind(A, sel->having, ST_POST, q->njoins);
        if (having && having->type != SL_BOOL && !having->is_null_lit)
            sl__sql_fail(A, sel->having->line, sel->having->col, "HAVING needs a BOOLEAN "
                 "condition, got %s", sl_type_name(having->type));
    }
    /* aggregates named after their SELECT alias where the item is just one */
    for (int i = 0; i < sel->nitems && !A->failed; i++) {
        const char *al = out_names[i];
        if (!items[i] || items[i]->k != E_COL || items[i]->name[0] != '$' ||
            strncmp(items[i]->name, "$agg", 4))
            continue;
        if (name_taken(A->gnames, A->ngkeys, al) || sql_ieq(al, "window_start") ||
            sql_ieq(al, "window_end"))
            continue;
        bool dup = false;
        for (int j = 0; j < q->naggs; j++) dup |= sql_ieq(q->aggs[j].as, al);
        if (dup) continue;
        char *old = sl__xstrdup(items[i]->name);
        for (int j = 0; j < q->naggs; j++)
            if (!strcmp(q->aggs[j].as, old)) {
                free((char *)q->aggs[j].as);
                q->aggs[j].as = sl__xstrdup(al);
            }
        for (int j = 0; j < sel->nitems; j++) rename_col(items[j], old, al);
        rename_col(having, old, al);
        free(old);
    }
    if (A->failed) {
        sql_expr_free(having);
        for (int k = 0; k < A->ngkeys; k++) sql_expr_free(gb[k]);
        free(gb);
        return;
    }
    /* the pre-window map: time, keys, aggregate inputs */
    int cap = 1 + A->ngkeys + q->naggs;
    sql_expr **pv = sl__xcalloc((size_t)cap, sizeof *pv);
    char **pn = sl__xcalloc((size_t)cap, sizeof *pn);
    int np = 0;
    sql_expr *tc = sl__xcalloc(1, sizeof *tc);
    tc->k = E_COL;
    tc->name = sl__xstrdup(q->time_col);
    tc->type = sl_schema_col_type(q->src_schema, sl_schema_find(q->src_schema, q->time_col));
    pv[np] = tc;
    pn[np++] = q->time_col;
    for (int k = 0; k < A->ngkeys; k++) {
        pv[np] = gb[k];
        pn[np++] = A->gnames[k];
    }
    for (int i = 0; i < q->naggs; i++) {
        if (!A->agg_args[i] || name_taken(pn, np, A->agg_arg_name[i])) continue;
        pv[np] = A->agg_args[i];
        A->agg_args[i] = NULL;
        pn[np++] = A->agg_arg_name[i];
    }
    q->pre = prog_new("select keys and inputs", pv, np, q);
    prog_schema(q->pre, pn);
    q->keys = sl__xcalloc((size_t)A->ngkeys + 1, sizeof *q->keys);
    for (int k = 0; k < A->ngkeys; k++) q->keys[k] = sl__xstrdup(A->gnames[k]);
    q->nkeys = A->ngkeys;
    free(pv);
    free(pn);
    free(gb);
    /* the window's output schema, for slots after it */
    sl_schema *w = sl_schema_new();
    sl_schema_add(w, "window_start", SL_TIMESTAMP);
    sl_schema_add(w, "window_end", SL_TIMESTAMP);
    for (int k = 0; k < A->ngkeys; k++) sl_schema_add(w, A->gnames[k], A->gtypes[k]);
    for (int i = 0; i < q->naggs; i++) {
        sl_agg_kind kd = q->aggs[i].kind;
        sl_type in = q->aggs[i].col ? sl_schema_col_type(q->pre->out,
                                       sl_schema_find(q->pre->out, q->aggs[i].col))
                                    : SL_INT64;
        sl_type t = kd == SL_AGG_AVG || kd == SL_AGG_APPROX_PERCENTILE ? SL_FLOAT64
                  : kd == SL_AGG_HISTOGRAM ? SL_STRING
                  : kd == SL_AGG_UDAF ? q->aggs[i].udaf->out_type
                  : (kd == SL_AGG_SUM || kd == SL_AGG_MIN || kd == SL_AGG_MAX) ? in : SL_INT64;
        sl_schema_add(w, q->aggs[i].as, t);
    }
    if (having) {
        slotify(A, having, w);
        q->having = prog_new("HAVING", &having, 1, q);
        q->having_text = sl__sql_fmt_expr(sel->having);
    }
    /* is the SELECT the window's output as it is? */
    bool ident = sel->nitems == sl_schema_ncols(w);
    for (int i = 0; ident && i < sel->nitems; i++)
        ident = items[i]->k == E_COL && !strcmp(items[i]->name, sl_schema_col_name(w, i)) &&
                !strcmp(out_names[i], sl_schema_col_name(w, i));
    if (!ident) {
        for (int i = 0; i < sel->nitems; i++) slotify(A, items[i], w);
        q->post = prog_new("SELECT", items, sel->nitems, q);
        prog_schema(q->post, out_names);
    } else {
        for (int i = 0; i < sel->nitems; i++) {
            sql_expr_free(items[i]);
            items[i] = NULL; /* the caller frees items again on a later error */
        }
    }
    sl_schema_free(w);
}

/* k-anonymity from the sink's options. */
static void k_anon(actx *A, const sql_stmt *sink, const sql_select *sel, char **names)
{
    sl_sql *q = A->q;
    const sql_opt *k = sl__sql_opt_find(sink, "k_anonymity"), *c = sl__sql_opt_find(sink, "k_column");
    if (!k && !c) return;
    if (!k || !c) {
        const sql_opt *o = k ? k : c;
        sl__sql_fail(A, o->line, o->col, "k-anonymity needs both k_anonymity = 'K' and "
             "k_column = 'COLUMN'");
        return;
    }
    if (!q->agg) {
        sl__sql_fail(A, k->line, k->col, "k-anonymity applies to aggregates (GROUP BY TUMBLE/HOP)");
        return;
    }
    int64_t kv;
    char *kval = sl__sql_subst(A, k->value, k->vline, k->vcol);
    if (!kval) return;
    if (sl__parse_i64(kval, &kv) || kv < 2 || kv > 1000000000) {
        sl__sql_fail(A, k->vline, k->vcol, "k_anonymity must be an integer in [2, 1000000000], "
             "got '%s'", kval);
        free(kval);
        return;
    }
    free(kval);
    for (int i = 0; i < sel->nitems; i++)
        if (sql_ieq(names[i], c->value)) {
            const sql_expr *e = sel->items[i].expr;
            if (!(e->k == E_FUNC && sql_ieq(e->name, "COUNT") && e->distinct)) {
                sl__sql_fail(A, c->vline, c->vcol, "k_column '%s' must be a COUNT(DISTINCT ...) "
                     "of subscribers", c->value);
                return;
            }
            q->k = kv;
            q->k_col = sl__xstrdup(names[i]);
            return;
        }
    const char *near = sql_nearest(c->value, (const char *const *)names, sel->nitems);
    sl__sql_fail(A, c->vline, c->vcol, "k_column '%s' is not a column of the SELECT%s%s%s",
         c->value, near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
}

/* Differential privacy from the sink's dp_* options (docs/sql.md). */
typedef struct {
    double eps, budget, delta;
    int64_t contrib, period;
    int mech;
    char *sub, *cols, *key;
} dp_opts;

static const sl__conf_def DP_DEFS[] = {
    {"dp_epsilon", SL_CONF_DOUBLE, NULL, 0, 0, NULL, offsetof(dp_opts, eps),
     "epsilon per release (one window)"},
    {"dp_budget", SL_CONF_DOUBLE, NULL, 0, 0, NULL, offsetof(dp_opts, budget),
     "epsilon per subscriber per period"},
    {"dp_delta", SL_CONF_DOUBLE, "0", 0, 0, NULL, offsetof(dp_opts, delta),
     "delta per release (gaussian)"},
    {"dp_max_contrib", SL_CONF_INT, NULL, 1, 1000000, NULL, offsetof(dp_opts, contrib),
     "events per subscriber per window"},
    {"dp_period_ms", SL_CONF_INT, "86400000", 1, INT64_MAX / 4, NULL,
     offsetof(dp_opts, period), "ledger period"},
    {"dp_mechanism", SL_CONF_ENUM, "laplace", 0, 0, "laplace|gaussian",
     offsetof(dp_opts, mech), "noise"},
    {"dp_subscriber", SL_CONF_STR, NULL, 1, 0, NULL, offsetof(dp_opts, sub),
     "the PSEUDONYMIZE'd subscriber column of the source"},
    {"dp_columns", SL_CONF_STR, NULL, 0, 0, NULL, offsetof(dp_opts, cols),
     "noised count columns"},
    {"dp_key", SL_CONF_STR, NULL, 0, 0, NULL, offsetof(dp_opts, key), "noise key id"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

/* Appends a copy of v to a NULL-terminated list (freed by sql_kv_free). */
static char **strv_push(char **v, const char *x)
{
    int n = 0;
    while (v && v[n]) n++;
    v = sl__xrealloc(v, sizeof(char *) * (size_t)(n + 2));
    v[n] = sl__xstrdup(x);
    v[n + 1] = NULL;
    return v;
}

static bool is_count(const sql_expr *e)
{
    return e->k == E_FUNC && sql_ieq(e->name, "COUNT");
}

static void dp_conf(actx *A, const sql_stmt *sink, const sql_select *sel, char **names)
{
    sl_sql *q = A->q;
    char **kv = NULL;
    const sql_opt *first = NULL;
    for (int i = 0; i < sink->nopts && !A->failed; i++) {
        const sql_opt *o = &sink->opts[i];
        if (strncasecmp(o->key, "dp_", 3)) continue;
        if (!first) first = o;
        char *v = sl__sql_subst(A, o->value, o->vline, o->vcol);
        if (v) kv = sql_kv_push(kv, o->key, v);
        free(v);
    }
    if (!first || A->failed) {
        sql_kv_free(kv);
        return;
    }
    dp_opts d = {.eps = NAN, .budget = NAN};
    char err[512];
    int rc = sl__conf_apply(DP_DEFS, &d, (const char *const *)kv, "sink", NULL, err, sizeof err);
    sql_kv_free(kv);
    int line = sink->with_line, col = sink->with_col;
    if (rc) {
        sl__sql_fail(A, line, col, "%s", err);
    } else if (isnan(d.eps) || isnan(d.budget) || d.contrib == 0) {
        sl__sql_fail(A, line, col, "differential privacy needs dp_epsilon = 'E' (per "
                     "release), dp_max_contrib = 'C' (events per subscriber per window) "
                     "and dp_budget = 'B' (per subscriber and period): it has no defaults");
    } else if (!q->agg || q->win.slide_ms || q->session_gap) {
        sl__sql_fail(A, first->line, first->col, "differential privacy applies to "
                     "aggregates over TUMBLE windows");
    } else {
        bool pseudo = false;
        for (int i = 0; i < q->npseudo; i++) pseudo |= sql_ieq(q->pseudo[i], d.sub);
        if (!pseudo)
            sl__sql_fail(A, line, col, "dp_subscriber '%s' must be a source column used as "
                         "PSEUDONYMIZE(%s) (contributions are bounded per pseudonymised "
                         "subscriber)", d.sub, d.sub);
    }
    char **cols = NULL;
    if (!A->failed && d.cols) {
        char *list = sl__xstrdup(d.cols), *save = NULL;
        for (char *t = strtok_r(list, ", ", &save); t && !A->failed;
             t = strtok_r(NULL, ", ", &save)) {
            int i = 0;
            while (i < sel->nitems && !sql_ieq(names[i], t)) i++;
            if (i == sel->nitems || !is_count(sel->items[i].expr))
                sl__sql_fail(A, line, col, "dp_columns: '%s' is not a COUNT column of the "
                             "SELECT", t);
            else
                cols = strv_push(cols, names[i]);
        }
        free(list);
    } else if (!A->failed) {
        for (int i = 0; i < sel->nitems; i++)
            if (is_count(sel->items[i].expr)) cols = strv_push(cols, names[i]);
        if (!cols)
            sl__sql_fail(A, line, col, "differential privacy needs a COUNT column in the "
                         "SELECT (or dp_columns)");
    }
    sl_dp_spec spec = {.epsilon = d.eps, .max_contrib = d.contrib, .budget = d.budget,
                       .window_ms = q->win.size_ms, .period_ms = d.period,
                       .lateness_ms = q->win.lateness_ms, .mechanism = d.mech,
                       .delta = d.delta};
    if (!A->failed && sl__dp_spec_check(&spec, err, sizeof err))
        sl__sql_fail(A, line, col, "sink %s", err);
    if (A->failed) {
        sql_kv_free(cols);
        sl__conf_free(DP_DEFS, &d);
        return;
    }
    q->dp = spec;
    q->dp_sub = sl__xstrdup(d.sub);
    q->dp_key = d.key ? sl__xstrdup(d.key) : NULL;
    q->dp_cols = cols;
    sl__conf_free(DP_DEFS, &d);
}

static void sink_conf(actx *A, const sql_stmt *sink, const sql_select *sel, char **names)
{
    sl_sql *q = A->q;
    const char *conn = sl__sql_connector(A, sink, (const char *const[]){"sqlite", "file", "stdout",
                                                                "kafka", "postgres", NULL}, "sink");
    if (!conn) return;
    q->sink_conn = sl__xstrdup(conn);
    q->sink_conf = sl__sql_conf_of(A, sink, (const char *const[]){"connector", "k_anonymity",
                                                          "k_column", "dp_epsilon", "dp_budget", "dp_delta",
                                                          "dp_max_contrib", "dp_period_ms",
                                                          "dp_mechanism", "dp_subscriber",
                                                          "dp_columns", "dp_key", NULL});
    if (A->failed || (strcmp(conn, "sqlite") && strcmp(conn, "postgres"))) return;
    if (!sl__kv_get((const char *const *)q->sink_conf, "table"))
        q->sink_conf = sql_kv_push(q->sink_conf, "table", sink->name);
    const char *mode = sl__kv_get((const char *const *)q->sink_conf, "mode");
    if (mode && !strcmp(mode, "upsert") && !sl__kv_get((const char *const *)q->sink_conf, "key")) {
        if (!q->agg) {
            sl__sql_fail(A, sink->with_line, sink->with_col, "mode 'upsert' needs key = "
                 "'col1,col2,...'");
            return;
        }
        /* window_start and every group key, as SELECT names them */
        char key[512] = "";
        bool ok = false;
        for (int i = 0; i < sel->nitems; i++)
            if (sel->items[i].expr->k == E_COL && sql_ieq(sel->items[i].expr->name, "window_start"))
                ok = true, snprintf(key, sizeof key, "%s", names[i]);
        for (int k = 0; ok && k < A->ngkeys; k++) {
            bool found = false;
            for (int i = 0; i < sel->nitems && !found; i++)
                if (sql_expr_equal(sel->items[i].expr, A->gkeys[k])) {
                    strncat(key, ",", sizeof key - strlen(key) - 1);
                    strncat(key, names[i], sizeof key - strlen(key) - 1);
                    found = true;
                }
            ok = found;
        }
        if (!ok) {
            sl__sql_fail(A, sink->with_line, sink->with_col, "mode 'upsert' needs key = '...': "
                 "the SELECT does not show window_start and every GROUP BY key");
            return;
        }
        q->sink_conf = sql_kv_push(q->sink_conf, "key", key);
    }
}

static void find_pseudo(actx *A, const sql_expr *e)
{
    if (!e) return;
    if (e->k == E_FUNC && sql_ieq(e->name, "PSEUDONYMIZE") && e->nargs >= 1 &&
        e->args[0]->k == E_COL) {
        const sl_schema *s = A->q->src_schema;
        for (int i = 0; i < sl_schema_ncols(s); i++)
            if (sql_ieq(sl_schema_col_name(s, i), e->args[0]->name) &&
                sl_schema_col_type(s, i) == SL_STRING)
                sl__sql_add_pseudo(A, sl_schema_col_name(s, i));
    }
    for (int i = 0; i < e->nargs; i++) find_pseudo(A, e->args[i]);
}

static void source_(actx *A, const sql_select *sel)
{
    sl_sql *q = A->q;
    const sql_stmt *src = sl__sql_find_stmt(q, S_SOURCE, sel->from);
    if (!src) {
        if (sl__sql_find_stmt(q, S_TABLE, sel->from)) {
            sl__sql_fail(A, sel->from_line, sel->from_col, "'%s' is a lookup table; FROM needs a "
                 "source (CREATE SOURCE)", sel->from);
            return;
        }
        const char *cands[64];
        int n = 0;
        for (int i = 0; i < q->script.n && n < 64; i++)
            if (q->script.v[i].k == S_SOURCE) cands[n++] = q->script.v[i].name;
        const char *near = sql_nearest(sel->from, cands, n);
        sl__sql_fail(A, sel->from_line, sel->from_col, "unknown source '%s'%s%s%s", sel->from,
             near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
        return;
    }
    q->src = src;
    q->src_alias = sl__xstrdup(sel->from_alias ? sel->from_alias : src->name);
    q->src_schema = sl__sql_make_schema(A, src);
    if (A->failed) return;
    if (src->wm_col) {
        int c = sl_schema_find(q->src_schema, src->wm_col);
        if (c < 0) {
            sl__sql_fail(A, src->wm_line, src->wm_col_pos, "WATERMARK FOR '%s': no such column",
                 src->wm_col);
            return;
        }
        if (sl_schema_col_type(q->src_schema, c) != SL_TIMESTAMP &&
            sl_schema_col_type(q->src_schema, c) != SL_INT64) {
            sl__sql_fail(A, src->wm_line, src->wm_col_pos, "WATERMARK FOR '%s': the column must be "
                 "TIMESTAMP", src->wm_col);
            return;
        }
        q->time_col = sl__xstrdup(sl_schema_col_name(q->src_schema, c));
        q->wm_delay = src->wm_delay;
    }
    if (!sl__sql_connector(A, src, (const char *const[]){"file", "generator", "kafka", NULL},
                           "source"))
        return;
    /* every PSEUDONYMIZE'd column, first: its raw value is then refused
     * everywhere, whatever the order of the clauses */
    for (int i = 0; i < sel->nitems; i++) find_pseudo(A, sel->items[i].expr);
    find_pseudo(A, sel->where);
    find_pseudo(A, sel->having);
    for (int i = 0; i < sel->ngroup; i++) find_pseudo(A, sel->group[i]);
    for (int j = 0; j < sel->njoins; j++) find_pseudo(A, sel->joins[j].on);
    q->src_conf = sl__sql_conf_of(A, src, (const char *const[]){"connector", NULL});
}

int sql_analyze(sl_sql *q, char *err, size_t errsz)
{
    actx A = {.q = q, .err = err, .errsz = errsz};
    sl__sql_settings(&A);
    const sql_stmt *sink = NULL;
    for (int i = 0; i < q->script.n && !A.failed; i++) {
        const sql_stmt *s = &q->script.v[i];
        if (s->k == S_SET) continue;
        for (int j = 0; j < i; j++) {
            const sql_stmt *t = &q->script.v[j];
            if (t->k != S_SET && sql_ieq(t->name, s->name))
                sl__sql_fail(&A, s->name_line, s->name_col, "'%s' is already defined on line %d",
                     s->name, t->line);
        }
        if (s->k == S_SINK) {
            if (sink)
                sl__sql_fail(&A, s->line, s->col, "one CREATE SINK per job for now (the first is "
                     "on line %d)", sink->line);
            sink = s;
        }
    }
    if (!A.failed && !sink) {
        int l = q->script.n ? q->script.v[q->script.n - 1].line : 1;
        sl__sql_fail(&A, l, 1, "the script has no CREATE SINK ... AS SELECT: nothing to run");
    }
    if (A.failed || !sink) return SL_EINVAL; /* sl__sql_fail set failed if !sink */
    q->sink = sink;
    const sql_select *sel = sink->sel;
    A.sel = sel;
    source_(&A, sel);
    if (!A.failed && sel->njoins > SQL_MAX_JOINS)
        sl__sql_fail(&A, sel->joins[SQL_MAX_JOINS].line, sel->joins[SQL_MAX_JOINS].col,
             "at most %d joins", SQL_MAX_JOINS);
    /* output names */
    char **names = sl__xcalloc((size_t)sel->nitems + 1, sizeof *names);
    for (int i = 0; i < sel->nitems; i++) {
        char buf[32];
        names[i] = sl__xstrdup(sel->items[i].alias ? sel->items[i].alias
                                                   : auto_name(sel->items[i].expr, i, buf, sizeof buf));
        for (int j = 0; j < i && !A.failed; j++)
            if (sql_ieq(names[i], names[j]))
                sl__sql_fail(&A, sel->items[i].line, sel->items[i].col, "two result columns are "
                     "named '%s'; name one with AS", names[i]);
    }
    if (!A.failed && sl__sql_venue_query(sel)) { /* a venue report (venue.c) */
        sl__sql_venue_analyze(&A, sel, names);
        for (int i = 0; i < q->nvars && !A.failed; i++)
            if (!q->var_used[i])
                sl__sql_fail(&A, 0, 0, "--set %s: not a job key and not used as ${%s} in the "
                     "script", q->vars[2 * i], q->vars[2 * i]);
        for (int i = 0; names[i]; i++) free(names[i]);
        free(names);
        return A.failed ? SL_EINVAL : 0;
    }
    if (!A.failed && sel->njoins && sel->joins[0].stream) { /* an interval join */
        sl__sql_ij_analyze(&A, sel, names);
        if (!A.failed) k_anon(&A, sink, sel, names);
        if (!A.failed) dp_conf(&A, sink, sel, names);
        if (!A.failed) sink_conf(&A, sink, sel, names);
        for (int i = 0; i < q->nvars && !A.failed; i++)
            if (!q->var_used[i])
                sl__sql_fail(&A, 0, 0, "--set %s: not a job key and not used as ${%s} in the "
                     "script", q->vars[2 * i], q->vars[2 * i]);
        for (int i = 0; names[i]; i++) free(names[i]);
        free(names);
        return A.failed ? SL_EINVAL : 0;
    }
    int wat = -1;
    bool aggs = false;
    for (int i = 0; i < sel->nitems; i++) aggs |= agg_in(q, sel->items[i].expr);
    aggs |= sel->having != NULL;
    if (!A.failed) wat = window_of(&A, sel);
    if (!A.failed && (aggs || sel->ngroup) && wat < 0) {
        int l = sel->ngroup ? sel->group[0]->line : sel->items[0].line;
        int c = sel->ngroup ? sel->group[0]->col : sel->items[0].col;
        sl__sql_fail(&A, l, c, "an aggregate over a stream needs GROUP BY TUMBLE(time, INTERVAL "
             "...) or HOP(...)");
    }
    q->agg = wat >= 0;
    A.tumble = q->agg && q->win.slide_ms == 0 && !q->session_gap;
    if (!A.failed && !q->time_col) {
        /* no watermark and no window: the source's `ts`, if any, is its time */
        int c = sl_schema_find(q->src_schema, "ts");
        if (c >= 0) q->time_col = sl__xstrdup("ts");
    }
    for (int j = 0; j < sel->njoins && j < SQL_MAX_JOINS && !A.failed; j++) {
        q->njoins = j + 1;
        sl__sql_join(&A, &sel->joins[j], j);
    }
    sql_expr *where = NULL;
    if (!A.failed && sel->where) {
        A.clause = "WHERE";
        if (agg_in(q, sel->where)) {
            sl__sql_fail(&A, sel->where->line, sel->where->col, "aggregates are not allowed in "
                 "WHERE (use HAVING)");
        } else {
            where = sl__sql_bind(&A, sel->where, ST_PRE, q->njoins);
            if (where && where->type != SL_BOOL && !where->is_null_lit)
                sl__sql_fail(&A, sel->where->line, sel->where->col, "WHERE needs a BOOLEAN "
                     "condition, got %s", sl_type_name(where->type));
        }
    }
    sql_expr **items = sl__xcalloc((size_t)sel->nitems + 1, sizeof *items);
    if (!A.failed && q->agg) {
        aggregate_query(&A, sel, wat, items, names);
    } else if (!A.failed) {
        A.clause = "the SELECT list";
        for (int i = 0; i < sel->nitems && !A.failed; i++)
            items[i] = sl__sql_bind(&A, sel->items[i].expr, ST_PRE, q->njoins);
        if (!A.failed) {
            q->post = prog_new("SELECT", items, sel->nitems, q);
            prog_schema(q->post, names);
        }
    }
    if (!A.failed) k_anon(&A, sink, sel, names);
    if (!A.failed) dp_conf(&A, sink, sel, names);
    if (!A.failed) sink_conf(&A, sink, sel, names);
    /* columns of the stream along the pipeline, for the slots */
    if (!A.failed) {
        for (int i = 0; i < q->njoins; i++)
            if (q->joins[i].ncols == 0) {
                /* the join is kept for its meaning only when something is used;
                 * an unused join still runs (LEFT semantics: no row is lost) */
            }
        sl_schema *s0 = sl__schema_copy(q->src_schema);
        for (int i = 0; i < q->npseudo; i++) {
            int c = sl_schema_find(s0, q->pseudo[i]);
            s0->cols[c].type = SL_INT64;
            sl_schema_set_identifier(q->src_schema, c);
        }
        sl_schema *s1 = sl__schema_copy(s0);
        for (int j = 0; j < q->njoins; j++)
            for (int i = 0; i < q->joins[j].ncols; i++) {
                int tc = sl_schema_find(q->joins[j].schema, q->joins[j].cols[i]);
                if (sl_schema_find(s1, q->joins[j].cols[i]) >= 0) {
                    sl__sql_fail(&A, sel->joins[j].line, sel->joins[j].col, "column '%s' of '%s' "
                         "is appended twice (joined by two tables); lookup joins cannot "
                         "rename yet", q->joins[j].cols[i], q->joins[j].alias);
                    break;
                }
                sl_schema_add(s1, q->joins[j].cols[i], sl_schema_col_type(q->joins[j].schema, tc));
            }
        if (where && !q->ij && !only_source(q, where)) {
            sql_expr *early = NULL;
            split_where(q, &where, &early);
            if (early) {
                slotify(&A, early, s0);
                q->where_pre_text = sl__sql_fmt_expr(early);
                q->where_pre = prog_new("WHERE", &early, 1, q);
            }
        }
        if (where) {
            q->where_early = only_source(q, where);
            slotify(&A, where, q->where_early ? s0 : s1);
            q->where = prog_new("WHERE", &where, 1, q);
            q->where_text = sl__sql_fmt_expr(q->where_pre ? q->where->exprs[0] : sel->where);
            where = NULL;
        }
        if (q->pre) for (int i = 0; i < q->pre->n; i++) slotify(&A, q->pre->exprs[i], s1);
        if (!q->agg && q->post)
            for (int i = 0; i < q->post->n; i++) slotify(&A, q->post->exprs[i], s1);
        sl_schema_free(s0);
        sl_schema_free(s1);
    }
    /* an unused variable is most likely a typo */
    for (int i = 0; i < q->nvars && !A.failed; i++)
        if (!q->var_used[i])
            sl__sql_fail(&A, 0, 0, "--set %s: not a job key and not used as ${%s} in the script",
                 q->vars[2 * i], q->vars[2 * i]);
    sql_expr_free(where);
    if (A.failed && !q->post)
        for (int i = 0; i < sel->nitems; i++) sql_expr_free(items[i]);
    free(items);
    for (int i = 0; names[i]; i++) free(names[i]);
    free(names);
    for (int i = 0; i < SQL_MAX_AGGS; i++) {
        sql_expr_free(A.agg_args[i]);
        free(A.agg_arg_name[i]);
    }
    for (int k = 0; k < A.ngkeys; k++) free(A.gnames[k]);
    free(A.gkeys);
    free(A.gnames);
    free(A.gtypes);
    return A.failed ? SL_EINVAL : 0;
}
