/* analyze.c — the semantic checks of a parsed SQL script and its lowering
 * into a plan (struct sl_sql in sql.h): names are resolved (unknown ones get
 * the nearest valid name suggested), types are checked, job options are
 * validated against the job's configuration table, and the SELECT of the
 * sink is cut into the operators the C API offers:
 *
 *   source - pseudonymise(each PSEUDONYMIZE'd column, in place)
 *          - [filter WHERE, when it reads no table column]
 *          - lookup (each JOIN) - [filter WHERE] - map(time, keys, agg inputs)
 *          - key_by(keys) - window(aggregates) - [filter HAVING]
 *          - [map(SELECT)] - [k-anonymity] - sink
 *
 * Every error carries the line and column of the construct at fault; the
 * first one stops the analysis. Nothing here touches files: tables and keys
 * are loaded by sl_sql_build (plan.c). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "sql/analyze.h"



void sl__sql_fail(actx *A, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void sl__sql_fail(actx *A, int line, int col, const char *fmt, ...)
{
    if (A->failed) return;
    A->failed = true;
    A->q->eline = line;
    A->q->ecol = col;
    int off = snprintf(A->err, A->errsz, "%d:%d: ", line, col);
    if (off < 0 || (size_t)off >= A->errsz) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(A->err + off, A->errsz - (size_t)off, fmt, ap);
    va_end(ap);
}

char **sql_kv_push(char **kv, const char *k, const char *v)
{
    int n = 0;
    while (kv && kv[n]) n++;
    kv = sl__xrealloc(kv, sizeof(char *) * (size_t)(n + 3));
    kv[n] = sl__xstrdup(k);
    kv[n + 1] = sl__xstrdup(v);
    kv[n + 2] = NULL;
    return kv;
}

void sql_kv_free(char **kv)
{
    for (int i = 0; kv && kv[i]; i++) free(kv[i]);
    free(kv);
}

char *sl__sql_fmt_expr(const sql_expr *e)
{
    char buf[512];
    sql_expr_print(e, buf, sizeof buf);
    return sl__xstrdup(buf);
}

/* Substitutes ${name} and ${name:-default} from the sl_sql_set variables. */
char *sl__sql_subst(actx *A, const char *v, int line, int col)
{
    size_t cap = strlen(v) + 64, n = 0;
    char *r = sl__xmalloc(cap);
    for (const char *p = v; *p;) {
        if (p[0] == '$' && p[1] == '{') {
            const char *e = strchr(p, '}');
            if (!e) {
                sl__sql_fail(A, line, col, "unterminated ${ in '%s'", v);
                free(r);
                return NULL;
            }
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(e - p - 2), p + 2);
            char *dflt = strstr(name, ":-");
            if (dflt) { *dflt = 0; dflt += 2; }
            const char *val = dflt;
            for (int i = 0; i < A->q->nvars; i++)
                if (!strcmp(A->q->vars[2 * i], name)) {
                    val = A->q->vars[2 * i + 1];
                    A->q->var_used[i] = true;
                }
            if (!val) {
                sl__sql_fail(A, line, col, "variable '${%s}' is not set (sluice run FILE.sql "
                     "--set %s=VALUE, or write ${%s:-default})", name, name, name);
                free(r);
                return NULL;
            }
            size_t l = strlen(val);
            if (n + l + 1 >= cap) { cap = (n + l) * 2 + 64; r = sl__xrealloc(r, cap); }
            memcpy(r + n, val, l);
            n += l;
            p = e + 1;
            continue;
        }
        if (n + 2 >= cap) { cap *= 2; r = sl__xrealloc(r, cap); }
        r[n++] = *p++;
    }
    r[n] = 0;
    return r;
}

const sql_opt *sl__sql_opt_find(const sql_stmt *st, const char *key)
{
    for (int i = 0; i < st->nopts; i++)
        if (sql_ieq(st->opts[i].key, key)) return &st->opts[i];
    return NULL;
}

const sql_stmt *sl__sql_find_stmt(sl_sql *q, sql_skind k, const char *name)
{
    for (int i = 0; i < q->script.n; i++) {
        const sql_stmt *s = &q->script.v[i];
        if (s->k == k && sql_ieq(s->name, name)) return s;
    }
    return NULL;
}

sl_schema *sl__sql_make_schema(actx *A, const sql_stmt *st)
{
    sl_schema *s = sl_schema_new();
    for (int i = 0; i < st->ncols; i++) {
        int c = sl_schema_add(s, st->cols[i].name, st->cols[i].type);
        if (c < 0) {
            sl__sql_fail(A, st->cols[i].line, st->cols[i].col, "column '%s' is declared twice "
                 "(or there are more than 64 columns)", st->cols[i].name);
            break;
        }
        if (st->cols[i].domain) {
            if (st->cols[i].type != SL_STRING) {
                sl__sql_fail(A, st->cols[i].line, st->cols[i].col, "CHECK (... IN ...) needs a "
                     "VARCHAR column; '%s' is %s", st->cols[i].name,
                     sl_type_name(st->cols[i].type));
                break;
            }
            sl_schema_set_domain(s, c, (const char *const *)st->cols[i].domain);
        }
    }
    return s;
}

/* ---- name resolution ----------------------------------------------------- */

static bool is_pseudo(const sl_sql *q, const char *col)
{
    for (int i = 0; i < q->npseudo; i++)
        if (!strcmp(q->pseudo[i], col)) return true;
    return false;
}

void sl__sql_add_pseudo(actx *A, const char *col)
{
    if (is_pseudo(A->q, col)) return;
    if (A->q->npseudo < 8) A->q->pseudo[A->q->npseudo++] = sl__xstrdup(col);
}

/* Adds a table column to a join's appended list (once). */
static void join_use(sql_pjoin *j, const char *col)
{
    for (int i = 0; i < j->ncols; i++)
        if (!strcmp(j->cols[i], col)) return;
    j->cols = sl__xrealloc(j->cols, sizeof(char *) * (size_t)(j->ncols + 2));
    j->cols[j->ncols++] = sl__xstrdup(col);
    j->cols[j->ncols] = NULL;
}

static void unknown_column(actx *A, const sql_expr *e, const char *where,
                           const sl_schema *s1, const sl_schema *s2)
{
    const char *cands[140];
    int n = 0;
    for (int i = 0; s1 && i < sl_schema_ncols(s1); i++) cands[n++] = sl_schema_col_name(s1, i);
    for (int i = 0; s2 && i < sl_schema_ncols(s2); i++) cands[n++] = sl_schema_col_name(s2, i);
    for (int j = 0; !e->qual && j < A->q->njoins && n < 130; j++)
        for (int i = 0; i < sl_schema_ncols(A->q->joins[j].schema) && n < 130; i++)
            cands[n++] = sl_schema_col_name(A->q->joins[j].schema, i);
    if (A->sel && (!s1 || s2 == NULL))
        for (int i = 0; i < A->sel->nitems && n < 138; i++)
            if (A->sel->items[i].alias && A->clause && !strcmp(A->clause, "HAVING"))
                cands[n++] = A->sel->items[i].alias;
    const char *near = sql_nearest(e->name, cands, n);
    if (near)
        sl__sql_fail(A, e->line, e->col, "unknown column '%s'%s; did you mean '%s'?", e->name,
             where, near);
    else
        sl__sql_fail(A, e->line, e->col, "unknown column '%s'%s", e->name, where);
}

/* Resolves a column reference at the pre-window stage into a bound E_COL
 * naming a stream column. `joins_visible`: joins [0, n) may be referenced. */
static sql_expr *resolve_pre(actx *A, const sql_expr *e, int joins_visible)
{
    sl_sql *q = A->q;
    const char *name = e->name;
    if (!e->qual && (sql_ieq(name, "window_start") || sql_ieq(name, "window_end"))) {
        if (!A->tumble) {
            sl__sql_fail(A, e->line, e->col, "%s is only known before the window with "
                 "GROUP BY TUMBLE(...); here it may only be used in the SELECT list "
                 "and HAVING", name);
            return NULL;
        }
        /* the record's (only) window: floor(ts / size) * size [+ size] */
        sql_expr *r = sl__xcalloc(1, sizeof *r);
        r->k = E_FUNC;
        r->line = e->line;
        r->col = e->col;
        r->name = sl__xstrdup(name);
        r->slot = FN_N;
        r->op = sql_ieq(name, "window_end");
        r->li = q->win.size_ms;
        r->type = SL_TIMESTAMP;
        r->nargs = 1;
        r->args = sl__xmalloc(sizeof *r->args);
        r->args[0] = sl__xcalloc(1, sizeof **r->args);
        r->args[0]->k = E_COL;
        r->args[0]->name = sl__xstrdup(q->time_col);
        r->args[0]->type = SL_TIMESTAMP;
        return r;
    }
    bool src_ok = !e->qual || sql_ieq(e->qual, q->src_alias) ||
                  sql_ieq(e->qual, q->src->name);
    int sc = src_ok ? sl_schema_find(q->src_schema, name) : -1;
    if (sc < 0 && src_ok) /* case-insensitive fallback */
        for (int i = 0; i < sl_schema_ncols(q->src_schema); i++)
            if (sql_ieq(sl_schema_col_name(q->src_schema, i), name)) sc = i;
    int hit_j = -1, hit_c = -1, nhits = sc >= 0;
    for (int j = 0; j < joins_visible; j++) {
        sql_pjoin *pj = &q->joins[j];
        if (e->qual && !sql_ieq(e->qual, pj->alias)) continue;
        for (int i = 0; i < sl_schema_ncols(pj->schema); i++)
            if (sql_ieq(sl_schema_col_name(pj->schema, i), name)) {
                hit_j = j;
                hit_c = i;
                nhits++;
            }
    }
    if (e->qual && !src_ok) {
        bool known = false;
        const sql_select *sel = A->sel;
        for (int j = 0; j < sel->njoins; j++)
            known |= sql_ieq(e->qual, sel->joins[j].alias ? sel->joins[j].alias
                                                           : sel->joins[j].table);
        if (!known) {
            const char *cands[SQL_MAX_JOINS + 2];
            int n = 0;
            cands[n++] = q->src_alias;
            for (int j = 0; j < sel->njoins && n < SQL_MAX_JOINS + 1; j++)
                cands[n++] = sel->joins[j].alias ? sel->joins[j].alias : sel->joins[j].table;
            const char *near = sql_nearest(e->qual, cands, n);
            sl__sql_fail(A, e->line, e->col, "unknown table or alias '%s'%s%s%s", e->qual,
                 near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
            return NULL;
        }
        if (hit_j < 0 && joins_visible < sel->njoins) {
            bool later = false;
            for (int j = joins_visible; j < sel->njoins; j++)
                later |= sql_ieq(e->qual, sel->joins[j].alias ? sel->joins[j].alias
                                                               : sel->joins[j].table);
            if (later) {
                sl__sql_fail(A, e->line, e->col, "'%s' is joined later; a join condition can "
                     "only use the source and earlier joins", e->qual);
                return NULL;
            }
        }
    }
    if (nhits == 0) {
        char where[200] = "";
        if (e->qual) snprintf(where, sizeof where, " in '%s'", e->qual);
        const sl_schema *s1 = src_ok ? q->src_schema : NULL, *s2 = NULL;
        if (e->qual && !src_ok)
            for (int j = 0; j < joins_visible; j++)
                if (sql_ieq(e->qual, q->joins[j].alias)) s2 = q->joins[j].schema;
        if (e->qual && src_ok) s2 = q->src_schema, s1 = NULL;
        unknown_column(A, e, where, s1, s2);
        return NULL;
    }
    if (nhits > 1) {
        sl__sql_fail(A, e->line, e->col, "column '%s' is ambiguous: qualify it with the "
             "table's alias", name);
        return NULL;
    }
    sql_expr *r = sl__xcalloc(1, sizeof *r);
    r->k = E_COL;
    r->line = e->line;
    r->col = e->col;
    if (sc >= 0) {
        const char *cn = sl_schema_col_name(q->src_schema, sc);
        r->name = sl__xstrdup(cn);
        r->type = sl_schema_col_type(q->src_schema, sc);
        if (A->in_pseudo) {
            if (r->type != SL_STRING) {
                sl__sql_fail(A, e->line, e->col, "PSEUDONYMIZE needs a VARCHAR identifier; "
                     "'%s' is %s", cn, sl_type_name(r->type));
                sql_expr_free(r);
                return NULL;
            }
            r->type = SL_INT64;
        } else if (is_pseudo(q, cn)) {
            sl__sql_fail(A, e->line, e->col, "column '%s' is pseudonymised in this job: write "
                 "PSEUDONYMIZE(%s) (the raw identifier never passes the first operator)",
                 cn, cn);
            sql_expr_free(r);
            return NULL;
        }
        return r;
    }
    sql_pjoin *pj = &q->joins[hit_j];
    const char *cn = sl_schema_col_name(pj->schema, hit_c);
    if (A->in_pseudo) {
        sl__sql_fail(A, e->line, e->col, "PSEUDONYMIZE applies to a column of the source, not "
             "of table '%s'", pj->alias);
        sql_expr_free(r);
        return NULL;
    }
    if (sql_ieq(cn, pj->tab->pk)) {
        sl__sql_fail(A, e->line, e->col, "'%s.%s' is the table's key, which the lookup does not "
             "append; use the stream's column '%s'", pj->alias, cn, pj->stream_key ? pj->stream_key : "?");
        sql_expr_free(r);
        return NULL;
    }
    if (sl_schema_find(q->src_schema, cn) >= 0) {
        sl__sql_fail(A, e->line, e->col, "column '%s' of table '%s' has the name of a source "
             "column; lookup joins cannot rename yet", cn, pj->alias);
        sql_expr_free(r);
        return NULL;
    }
    join_use(pj, cn);
    r->name = sl__xstrdup(cn);
    r->type = sl_schema_col_type(pj->schema, hit_c);
    return r;
}

/* ---- typing -------------------------------------------------------------- */

static bool num(sl_type t) { return t == SL_INT64 || t == SL_FLOAT64 || t == SL_TIMESTAMP; }

sql_expr *sl__sql_bind(actx *A, const sql_expr *e, stage st, int joins_visible);

/* Unifies the types of value expressions (CASE branches, COALESCE): NULL
 * literals fit anything, numbers widen. Returns false on a clash. */
static bool unify(sql_expr **v, int n, sl_type *out)
{
    bool have = false;
    sl_type t = SL_INT64;
    for (int i = 0; i < n; i++) {
        if (v[i]->is_null_lit) continue;
        sl_type u = v[i]->type;
        if (!have) { t = u; have = true; continue; }
        if (t == u) continue;
        if (num(t) && num(u)) {
            t = (t == SL_FLOAT64 || u == SL_FLOAT64) ? SL_FLOAT64
              : (t == SL_TIMESTAMP || u == SL_TIMESTAMP) ? SL_TIMESTAMP : SL_INT64;
            continue;
        }
        return false;
    }
    *out = t;
    for (int i = 0; i < n; i++)
        if (v[i]->is_null_lit) v[i]->type = t;
    return true;
}

/* A string literal compared with a timestamp becomes a timestamp. */
static void coerce_ts_lit(actx *A, sql_expr *lit, sl_type other)
{
    if (other != SL_TIMESTAMP || lit->k != E_LIT || lit->lnull || lit->lt != SL_STRING)
        return;
    int64_t v;
    if (sl__parse_ts(lit->ls, strlen(lit->ls), &v)) {
        sl__sql_fail(A, lit->line, lit->col, "'%s' is not a timestamp (use 'YYYY-MM-DD "
             "HH:MM:SS' or epoch milliseconds)", lit->ls);
        return;
    }
    lit->lt = lit->type = SL_TIMESTAMP;
    lit->li = v;
}

static const char *tname(const sql_expr *e)
{
    return e->is_null_lit ? "NULL" : sl_type_name(e->type);
}

static sql_expr *mk_bin(int op, sql_expr *l, sql_expr *r, const sql_expr *at)
{
    sql_expr *e = sl__xcalloc(1, sizeof *e);
    e->k = E_BIN;
    e->op = op;
    e->line = at->line;
    e->col = at->col;
    e->nargs = 2;
    e->args = sl__xmalloc(2 * sizeof *e->args);
    e->args[0] = l;
    e->args[1] = r;
    return e;
}

static sql_expr *mk_not(sql_expr *a)
{
    sql_expr *e = sl__xcalloc(1, sizeof *e);
    e->k = E_NOT;
    e->line = a->line;
    e->col = a->col;
    e->nargs = 1;
    e->args = sl__xmalloc(sizeof *e->args);
    e->args[0] = a;
    e->type = SL_BOOL;
    return e;
}

static void check_bin(actx *A, sql_expr *e)
{
    sql_expr *l = e->args[0], *r = e->args[1];
    static const char *const opn[] = {"?", "+", "-", "*", "/", "%", "||", "=", "<>",
                                      "<", "<=", ">", ">=", "AND", "OR", "LIKE"};
    switch (e->op) {
    case OP_AND:
    case OP_OR:
        if ((l->type != SL_BOOL && !l->is_null_lit) || (r->type != SL_BOOL && !r->is_null_lit))
            sl__sql_fail(A, e->line, e->col, "%s needs BOOLEAN operands, got %s and %s",
                 opn[e->op], tname(l), tname(r));
        e->type = SL_BOOL;
        return;
    case OP_CONCAT:
        e->type = SL_STRING;
        return;
    case OP_LIKE:
        if ((l->type != SL_STRING && !l->is_null_lit) || (r->type != SL_STRING && !r->is_null_lit))
            sl__sql_fail(A, e->line, e->col, "LIKE needs VARCHAR operands, got %s and %s",
                 tname(l), tname(r));
        e->type = SL_BOOL;
        return;
    case OP_EQ: case OP_NE: case OP_LT: case OP_LE: case OP_GT: case OP_GE:
        coerce_ts_lit(A, l, r->type);
        coerce_ts_lit(A, r, l->type);
        if (l->is_null_lit) l->type = r->type;
        if (r->is_null_lit) r->type = l->type;
        if (!(l->type == r->type || (num(l->type) && num(r->type))))
            sl__sql_fail(A, e->line, e->col, "cannot compare %s with %s", tname(l), tname(r));
        e->type = SL_BOOL;
        return;
    default:
        if (l->is_null_lit) l->type = r->is_null_lit ? SL_INT64 : r->type;
        if (r->is_null_lit) r->type = l->type;
        if (!num(l->type) || !num(r->type)) {
            sl__sql_fail(A, e->line, e->col, "operator '%s' needs numbers, got %s and %s",
                 opn[e->op], tname(l), tname(r));
            return;
        }
        if (l->type == SL_FLOAT64 || r->type == SL_FLOAT64) e->type = SL_FLOAT64;
        else if (l->type == SL_TIMESTAMP && r->type == SL_TIMESTAMP)
            e->type = e->op == OP_SUB ? SL_INT64 : SL_TIMESTAMP;
        else if ((l->type == SL_TIMESTAMP || r->type == SL_TIMESTAMP) &&
                 (e->op == OP_ADD || e->op == OP_SUB))
            e->type = SL_TIMESTAMP;
        else e->type = SL_INT64;
        if (e->type == SL_TIMESTAMP && e->op == OP_SUB && r->type == SL_TIMESTAMP)
            e->type = SL_INT64;
        return;
    }
}

static sql_expr *bind_func(actx *A, const sql_expr *e, stage st, int jv);

/* Is e (AST) group key i? (window_start/window_end are never keys.) */
static int group_key_of(actx *A, const sql_expr *e)
{
    if (e->k == E_COL && !e->qual &&
        (sql_ieq(e->name, "window_start") || sql_ieq(e->name, "window_end")))
        return -1;
    for (int i = 0; i < A->ngkeys; i++)
        if (sql_expr_equal(A->gkeys[i], e)) return i;
    return -1;
}

sql_expr *sl__sql_bind(actx *A, const sql_expr *e, stage st, int jv)
{
    if (A->failed || !e) return NULL;
    sql_expr *r = NULL;
    if (st == ST_POST) {
        int g = group_key_of(A, e);
        if (g >= 0) {
            r = sl__xcalloc(1, sizeof *r);
            r->k = E_COL;
            r->line = e->line;
            r->col = e->col;
            r->name = sl__xstrdup(A->gnames[g]);
            r->type = A->gtypes[g];
            return r;
        }
    }
    switch (e->k) {
    case E_COL:
        if (st == ST_POST) {
            if (!e->qual && (sql_ieq(e->name, "window_start") || sql_ieq(e->name, "window_end"))) {
                r = sql_expr_clone(e);
                free(r->name);
                r->name = sl__xstrdup(sql_ieq(e->name, "window_start") ? "window_start"
                                                                       : "window_end");
                r->type = SL_TIMESTAMP;
                return r;
            }
            sl__sql_fail(A, e->line, e->col, "column '%s' must appear in GROUP BY or be used in "
                 "an aggregate function", e->name);
            return NULL;
        }
        return resolve_pre(A, e, jv);
    case E_LIT:
        r = sql_expr_clone(e);
        r->type = e->lt;
        r->is_null_lit = e->lnull;
        return r;
    case E_STAR:
        sl__sql_fail(A, e->line, e->col, "'*' is only allowed in COUNT(*)");
        return NULL;
    case E_FUNC:
        return bind_func(A, e, st, jv);
    default:
        break;
    }
    /* operators: bind the children first */
    r = sql_expr_clone(e);
    for (int i = 0; i < r->nargs; i++) sql_expr_free(r->args[i]);
    for (int i = 0; i < e->nargs; i++) {
        r->args[i] = sl__sql_bind(A, e->args[i], st, jv);
        if (!r->args[i]) {
            for (int j = i + 1; j < e->nargs; j++) r->args[j] = NULL;
            sql_expr_free(r);
            return NULL;
        }
    }
    switch (r->k) {
    case E_NEG:
        if (!num(r->args[0]->type)) sl__sql_fail(A, e->line, e->col, "unary '-' needs a number, "
                                         "got %s", tname(r->args[0]));
        r->type = r->args[0]->type == SL_TIMESTAMP ? SL_INT64 : r->args[0]->type;
        break;
    case E_NOT:
        if (r->args[0]->type != SL_BOOL && !r->args[0]->is_null_lit)
            sl__sql_fail(A, e->line, e->col, "NOT needs a BOOLEAN, got %s", tname(r->args[0]));
        r->type = SL_BOOL;
        break;
    case E_BIN:
        check_bin(A, r);
        if (r->op == OP_LIKE && r->negate) {
            /* evaluator handles negate inside LIKE */
        }
        break;
    case E_ISNULL:
        r->type = SL_BOOL;
        break;
    case E_CAST:
        r->type = r->cast_to;
        break;
    case E_IN: {
        /* a IN (x, y) -> a = x OR a = y */
        sql_expr *acc = NULL;
        for (int i = 1; i < r->nargs && !A->failed; i++) {
            sql_expr *eq = mk_bin(OP_EQ, sql_expr_clone(r->args[0]), r->args[i], e);
            r->args[i] = NULL;
            check_bin(A, eq);
            acc = acc ? mk_bin(OP_OR, acc, eq, e) : eq;
            acc->type = SL_BOOL;
        }
        if (acc && r->negate) acc = mk_not(acc);
        sql_expr_free(r);
        if (A->failed) { sql_expr_free(acc); return NULL; }
        return acc;
    }
    case E_BETWEEN: {
        sql_expr *lo = mk_bin(OP_GE, sql_expr_clone(r->args[0]), r->args[1], e);
        sql_expr *hi = mk_bin(OP_LE, r->args[0], r->args[2], e);
        r->nargs = 0;
        check_bin(A, lo);
        check_bin(A, hi);
        sql_expr *acc = mk_bin(OP_AND, lo, hi, e);
        acc->type = SL_BOOL;
        if (r->negate) acc = mk_not(acc);
        sql_expr_free(r);
        if (A->failed) { sql_expr_free(acc); return NULL; }
        return acc;
    }
    case E_CASE: {
        if (r->has_operand) { /* CASE x WHEN v -> CASE WHEN x = v */
            int np = (r->nargs - 1 - (r->has_else ? 1 : 0)) / 2;
            for (int i = 0; i < np; i++) {
                sql_expr *eq = mk_bin(OP_EQ, sql_expr_clone(r->args[0]), r->args[1 + 2 * i], e);
                check_bin(A, eq);
                r->args[1 + 2 * i] = eq;
            }
            sql_expr_free(r->args[0]);
            memmove(r->args, r->args + 1, sizeof(*r->args) * (size_t)(r->nargs - 1));
            r->nargs--;
            r->has_operand = false;
        }
        int np = (r->nargs - (r->has_else ? 1 : 0)) / 2;
        sql_expr *vals[130];
        int nv = 0;
        for (int i = 0; i < np && nv < 128; i++) {
            sql_expr *c = r->args[2 * i];
            if (c->type != SL_BOOL && !c->is_null_lit) {
                sl__sql_fail(A, c->line, c->col, "a WHEN condition must be BOOLEAN, got %s", tname(c));
                break;
            }
            vals[nv++] = r->args[2 * i + 1];
        }
        if (r->has_else && nv < 129) vals[nv++] = r->args[r->nargs - 1];
        if (!A->failed && !unify(vals, nv, &r->type))
            sl__sql_fail(A, e->line, e->col, "the branches of CASE have different types");
        break;
    }
    default:
        break;
    }
    if (A->failed) {
        sql_expr_free(r);
        return NULL;
    }
    return r;
}

static const char *const agg_names[] = {
    [FN_COUNT] = "COUNT", [FN_SUM] = "SUM", [FN_MIN] = "MIN", [FN_MAX] = "MAX",
    [FN_AVG] = "AVG", [FN_APPROX_COUNT_DISTINCT] = "APPROX_COUNT_DISTINCT",
    [FN_HISTOGRAM] = "HISTOGRAM", [FN_APPROX_PERCENTILE] = "APPROX_PERCENTILE"};

/* A numeric literal (possibly negated) as a double. */
static bool lit_number(const sql_expr *e, double *v)
{
    if (e->k == E_NEG) {
        if (!lit_number(e->args[0], v)) return false;
        *v = -*v;
        return true;
    }
    if (e->k != E_LIT || e->lnull) return false;
    if (e->lt == SL_INT64) { *v = (double)e->li; return true; }
    if (e->lt == SL_FLOAT64) { *v = e->lf; return true; }
    return false;
}

/* Registers an aggregate of the post stage; returns its output column. */
static sql_expr *bind_agg(actx *A, const sql_expr *e, int id)
{
    sl_sql *q = A->q;
    for (int i = 0; i < q->naggs; i++)
        if (sql_expr_equal(A->agg_ast[i], e)) {
            sql_expr *r = sl__xcalloc(1, sizeof *r);
            r->k = E_COL;
            r->name = sl__xstrdup(q->aggs[i].as);
            r->type = A->agg_args[i] ? A->agg_args[i]->type : SL_INT64;
            goto typed_again;
        typed_again:;
            /* the output type depends on the kind */
            sl_agg_kind k = q->aggs[i].kind;
            r->type = k == SL_AGG_AVG || k == SL_AGG_APPROX_PERCENTILE ? SL_FLOAT64
                    : k == SL_AGG_HISTOGRAM ? SL_STRING
                    : k == SL_AGG_UDAF ? q->aggs[i].udaf->out_type
                    : (k == SL_AGG_SUM || k == SL_AGG_MIN || k == SL_AGG_MAX) &&
                      A->agg_args[i] ? A->agg_args[i]->type : SL_INT64;
            return r;
        }
    if (q->naggs >= SQL_MAX_AGGS) {
        sl__sql_fail(A, e->line, e->col, "more than %d aggregates", SQL_MAX_AGGS);
        return NULL;
    }
    if (e->distinct && id != FN_COUNT) {
        sl__sql_fail(A, e->line, e->col, "DISTINCT is only supported in COUNT(DISTINCT ...)");
        return NULL;
    }
    const sl_udaf *ua = id <= -2 ? q->udafs[-2 - id] : NULL; /* user-defined */
    if (ua && e->nargs != 1) {
        sl__sql_fail(A, e->line, e->col, "%s takes 1 argument, got %d", ua->name, e->nargs);
        return NULL;
    }
    sl_agg_spec *sp = &q->aggs[q->naggs];
    memset(sp, 0, sizeof *sp);
    sql_expr *arg = NULL;
    bool star = e->nargs == 1 && e->args[0]->k == E_STAR;
    if (star && id != FN_COUNT) {
        sl__sql_fail(A, e->line, e->col, "'*' is only allowed in COUNT(*)");
        return NULL;
    }
    if (!star) {
        const char *saved = A->clause;
        A->clause = "an aggregate's argument";
        arg = sl__sql_bind(A, e->args[0], ST_PRE, q->njoins);
        A->clause = saved;
        if (!arg) return NULL;
    }
    if (ua) {
        if (arg->type != ua->in_type || arg->is_null_lit) {
            sl__sql_fail(A, e->args[0]->line, e->args[0]->col, "%s takes %s, got %s",
                         ua->name, sl_type_name(ua->in_type), tname(arg));
            sql_expr_free(arg);
            return NULL;
        }
        sp->kind = SL_AGG_UDAF;
        sp->udaf = ua;
    } else switch (id) {
    case FN_COUNT:
        sp->kind = e->distinct ? SL_AGG_COUNT_DISTINCT : SL_AGG_COUNT;
        if (e->distinct && star) {
            sl__sql_fail(A, e->line, e->col, "COUNT(DISTINCT *) is not allowed: name a column");
            sql_expr_free(arg);
            return NULL;
        }
        break;
    case FN_SUM: sp->kind = SL_AGG_SUM; break;
    case FN_MIN: sp->kind = SL_AGG_MIN; break;
    case FN_MAX: sp->kind = SL_AGG_MAX; break;
    case FN_AVG: sp->kind = SL_AGG_AVG; break;
    case FN_APPROX_COUNT_DISTINCT: sp->kind = SL_AGG_APPROX_COUNT_DISTINCT; break;
    case FN_APPROX_PERCENTILE: sp->kind = SL_AGG_APPROX_PERCENTILE; break;
    default: sp->kind = SL_AGG_HISTOGRAM; break;
    }
    if (arg && !ua) {
        sl_type t = arg->type;
        bool ok = true;
        if (sp->kind == SL_AGG_SUM || sp->kind == SL_AGG_AVG)
            ok = t == SL_INT64 || t == SL_FLOAT64;
        else if (sp->kind == SL_AGG_MIN || sp->kind == SL_AGG_MAX || sp->kind == SL_AGG_HISTOGRAM ||
                 sp->kind == SL_AGG_APPROX_PERCENTILE)
            ok = num(t);
        if (arg->is_null_lit) ok = false;
        if (!ok) {
            sl__sql_fail(A, e->args[0]->line, e->args[0]->col, "%s does not accept %s values",
                 agg_names[id], tname(arg));
            sql_expr_free(arg);
            return NULL;
        }
    }
    if (sp->kind == SL_AGG_APPROX_PERCENTILE) {
        const sql_expr *x = e->args[1];
        if (!lit_number(x, &sp->quantile) || !(sp->quantile >= 0 && sp->quantile <= 1)) {
            sl__sql_fail(A, x->line, x->col, "APPROX_PERCENTILE's quantile must be a number "
                         "literal in [0, 1]");
            sql_expr_free(arg);
            return NULL;
        }
        x = e->nargs == 3 ? e->args[2] : NULL;
        if (x && (!lit_number(x, &sp->accuracy) ||
                  !(sp->accuracy >= 1e-4 && sp->accuracy <= 0.5))) {
            sl__sql_fail(A, x->line, x->col, "APPROX_PERCENTILE's accuracy must be a number "
                         "literal in [0.0001, 0.5] (relative error)");
            sql_expr_free(arg);
            return NULL;
        }
    }
    if (sp->kind == SL_AGG_HISTOGRAM) {
        size_t nb = (size_t)e->nargs - 1;
        double *b = sl__xmalloc(nb * sizeof *b);
        for (size_t i = 0; i < nb; i++) {
            const sql_expr *x = e->args[i + 1];
            if (!lit_number(x, &b[i]) || (i > 0 && !(b[i] > b[i - 1]))) {
                sl__sql_fail(A, x->line, x->col, "HISTOGRAM bounds must be ascending number "
                     "literals");
                free(b);
                sql_expr_free(arg);
                return NULL;
            }
        }
        sp->bounds = b;
        sp->nbounds = nb;
    }
    int i = q->naggs++;
    A->agg_ast[i] = e;
    A->agg_args[i] = arg;
    char nm[32];
    snprintf(nm, sizeof nm, "$agg%d", i);
    sp->as = sl__xstrdup(nm);
    q->agg_text[i] = sl__sql_fmt_expr(e);
    if (arg) {
        /* the input column; identical inputs share one */
        char an[32];
        snprintf(an, sizeof an, "$in%d", i);
        for (int j = 0; j < i; j++)
            if (A->agg_args[j] && sql_expr_equal(A->agg_args[j], arg) &&
                A->agg_args[j]->type == arg->type) {
                snprintf(an, sizeof an, "%s", A->agg_arg_name[j]);
                break;
            }
        A->agg_arg_name[i] = sl__xstrdup(an);
        sp->col = sl__xstrdup(an);
    }
    return bind_agg(A, e, id);
}

static sql_expr *bind_func(actx *A, const sql_expr *e, stage st, int jv)
{
    sl_sql *q = A->q;
    int id = -1;
    const sql_fdef *f = sql_func_find(e->name, &id);
    int udf = -1, udaf = -1;
    for (int i = 0; !f && i < q->nudfs; i++)
        if (sql_ieq(q->udfs[i].name, e->name)) udf = i;
    for (int i = 0; !f && i < q->nudafs; i++)
        if (sql_ieq(q->udafs[i]->name, e->name)) udaf = i;
    if (udaf >= 0) {
        if (st != ST_POST) {
            sl__sql_fail(A, e->line, e->col, "aggregate %s is not allowed in %s",
                         q->udafs[udaf]->name, A->clause ? A->clause : "this clause");
            return NULL;
        }
        return bind_agg(A, e, -2 - udaf);
    }
    if (!f && udf < 0) {
        const char *cands[FN_N + 128];
        int n = 0;
        for (int i = 0; i < FN_N; i++) cands[n++] = sql_func_at(i)->name;
        for (int i = 0; i < q->nudfs && n < FN_N + 64; i++) cands[n++] = q->udfs[i].name;
        for (int i = 0; i < q->nudafs && n < FN_N + 128; i++) cands[n++] = q->udafs[i]->name;
        const char *near = sql_nearest(e->name, cands, n);
        sl__sql_fail(A, e->line, e->col, "unknown function '%s'%s%s%s", e->name,
             near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
        return NULL;
    }
    if (f) {
        if (e->nargs < f->min_args || (f->max_args >= 0 && e->nargs > f->max_args)) {
            sl__sql_fail(A, e->line, e->col, "%s takes %s: %s", f->name,
                 f->min_args == f->max_args ? (f->min_args == 1 ? "1 argument" :
                 f->min_args == 2 ? "2 arguments" : "3 arguments") : "a different number "
                 "of arguments", f->sig);
            return NULL;
        }
        if (f->kind == F_WINDOW) {
            sl__sql_fail(A, e->line, e->col, "%s is only allowed in GROUP BY", f->name);
            return NULL;
        }
        if (f->kind == F_AGG) {
            if (st != ST_POST) {
                sl__sql_fail(A, e->line, e->col, "aggregate %s is not allowed in %s", f->name,
                     A->clause ? A->clause : "this clause");
                return NULL;
            }
            return bind_agg(A, e, id);
        }
        if (e->distinct) {
            sl__sql_fail(A, e->line, e->col, "DISTINCT is only supported in COUNT(DISTINCT ...)");
            return NULL;
        }
        if (id == FN_PSEUDONYMIZE) {
            if (st == ST_POST) {
                sl__sql_fail(A, e->line, e->col, "PSEUDONYMIZE(...) here must appear in GROUP BY "
                     "or inside an aggregate");
                return NULL;
            }
            const sql_expr *c = e->args[0];
            if (c->k != E_COL) {
                sl__sql_fail(A, c->line, c->col, "PSEUDONYMIZE takes a column of the source");
                return NULL;
            }
            if (e->nargs == 2) {
                const sql_expr *k = e->args[1];
                if (k->k != E_LIT || k->lt != SL_STRING || k->lnull) {
                    sl__sql_fail(A, k->line, k->col, "PSEUDONYMIZE's key id must be a string");
                    return NULL;
                }
                if (q->pseudo_keyid && strcmp(q->pseudo_keyid, k->ls)) {
                    sl__sql_fail(A, k->line, k->col, "one key per job: '%s' was named before",
                         q->pseudo_keyid);
                    return NULL;
                }
                if (!q->pseudo_keyid) q->pseudo_keyid = sl__xstrdup(k->ls);
            }
            A->in_pseudo = true;
            sql_expr *r = resolve_pre(A, c, 0);
            A->in_pseudo = false;
            if (r) sl__sql_add_pseudo(A, r->name);
            return r;
        }
    }
    sql_expr *r = sql_expr_clone(e);
    for (int i = 0; i < r->nargs; i++) sql_expr_free(r->args[i]);
    bool bad = false;
    for (int i = 0; i < e->nargs; i++) {
        r->args[i] = bad ? NULL : sl__sql_bind(A, e->args[i], st, jv);
        if (!r->args[i]) bad = true;
    }
    if (bad) {
        sql_expr_free(r);
        return NULL;
    }
    if (udf >= 0) {
        const sql_udf *u = &q->udfs[udf];
        r->udf = true;
        r->slot = udf;
        r->type = u->ret;
        if (e->nargs != u->nargs) {
            sl__sql_fail(A, e->line, e->col, "%s takes %d argument%s, got %d", u->name, u->nargs,
                 u->nargs == 1 ? "" : "s", e->nargs);
        }
        for (int i = 0; !A->failed && i < e->nargs; i++) {
            sl_type have = r->args[i]->type, want = u->args[i];
            if (r->args[i]->is_null_lit) { r->args[i]->type = want; continue; }
            if (!(have == want || (num(have) && num(want))))
                sl__sql_fail(A, r->args[i]->line, r->args[i]->col, "argument %d of %s must be %s, "
                     "got %s", i + 1, u->name, sl_type_name(want), sl_type_name(have));
        }
        if (A->failed) { sql_expr_free(r); return NULL; }
        return r;
    }
    r->slot = id;
    sql_expr **a = r->args;
    const char *msg = NULL;
    int bad_arg = 0;
    switch (id) {
    case FN_COALESCE:
    case FN_NULLIF:
        if (!unify(a, r->nargs, &r->type)) msg = "arguments of different types";
        break;
    case FN_UPPER: case FN_LOWER: case FN_TRIM:
        if (a[0]->type != SL_STRING && !a[0]->is_null_lit) msg = "a VARCHAR argument";
        r->type = SL_STRING;
        break;
    case FN_LENGTH: case FN_CHAR_LENGTH:
        if (a[0]->type != SL_STRING && !a[0]->is_null_lit) msg = "a VARCHAR argument";
        r->type = SL_INT64;
        break;
    case FN_SUBSTR: case FN_SUBSTRING:
        if (a[0]->type != SL_STRING && !a[0]->is_null_lit) msg = "a VARCHAR first argument";
        for (int i = 1; !msg && i < r->nargs; i++)
            if (a[i]->type != SL_INT64) { msg = "integer start and length"; bad_arg = i; }
        r->type = SL_STRING;
        break;
    case FN_CONCAT:
        r->type = SL_STRING;
        break;
    case FN_REPLACE:
        for (int i = 0; !msg && i < 3; i++)
            if (a[i]->type != SL_STRING && !a[i]->is_null_lit) { msg = "VARCHAR arguments"; bad_arg = i; }
        r->type = SL_STRING;
        break;
    case FN_ABS: case FN_FLOOR: case FN_CEIL: case FN_ROUND:
        if (!(a[0]->type == SL_INT64 || a[0]->type == SL_FLOAT64)) msg = "a number";
        r->type = a[0]->type;
        break;
    case FN_MOD:
        if (a[0]->type != SL_INT64 || a[1]->type != SL_INT64) msg = "integers";
        r->type = SL_INT64;
        break;
    case FN_AGE_YEARS:
        for (int i = 0; i < 2; i++) {
            coerce_ts_lit(A, a[i], SL_TIMESTAMP);
            if (a[i]->is_null_lit) a[i]->type = SL_TIMESTAMP;
            if (!msg && a[i]->type != SL_TIMESTAMP) { msg = "TIMESTAMP arguments"; bad_arg = i; }
        }
        r->type = SL_INT64;
        break;
    default:
        msg = "?";
        break;
    }
    if (msg && !A->failed)
        sl__sql_fail(A, a[bad_arg]->line, a[bad_arg]->col, "%s needs %s, got %s", f->name, msg,
             tname(a[bad_arg]));
    if (A->failed) {
        sql_expr_free(r);
        return NULL;
    }
    return r;
}

/* ---- the pieces of the job ------------------------------------------------ */

static const char *const job_only_keys[] = {"key.file", NULL};

static int64_t parse_duration_ms(const char *v)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || x < 0) return -1;
    while (*end == ' ') end++;
    double m = !*end || !strcmp(end, "ms") ? 1 : !strcmp(end, "s") ? 1000
             : !strcmp(end, "min") || !strcmp(end, "m") ? 60000
             : !strcmp(end, "h") ? 3600000 : -1;
    if (m < 0) return -1;
    return (int64_t)(x * m);
}

/* SET statements and overrides: validated now against the job table. */
void sl__sql_settings(actx *A)
{
    sl_sql *q = A->q;
    char e2[2048];
    sl_job *scratch = sl_job_new(e2, sizeof e2);
    for (int i = 0; i < q->script.n && !A->failed; i++) {
        const sql_stmt *s = &q->script.v[i];
        if (s->k != S_SET) continue;
        const sql_opt *o = &s->opts[0];
        char *v = sl__sql_subst(A, o->value, o->vline, o->vcol);
        if (!v) break;
        char key[160];
        snprintf(key, sizeof key, "%s", o->key);
        char msv[32];
        const char *val = v;
        /* Flink-style durations: 'checkpoint.interval' = '10s' */
        if (!strcmp(key, "checkpoint.interval") || !strcmp(key, "execution.checkpointing.interval")) {
            int64_t ms = parse_duration_ms(v);
            if (ms < 0) {
                sl__sql_fail(A, o->vline, o->vcol, "'%s' must be a duration such as '10s', "
                     "'500ms' or '1min', got '%s'", key, v);
                free(v);
                break;
            }
            snprintf(key, sizeof key, "checkpoint.interval.ms");
            snprintf(msv, sizeof msv, "%lld", (long long)ms);
            val = msv;
        }
        if (!strcmp(key, "key.file")) {
            free(q->key_file);
            q->key_file = sl__xstrdup(val);
        } else if (sl_job_set(scratch, key, val, e2, sizeof e2)) {
            bool unknown = strstr(e2, "unknown") != NULL;
            sl__sql_fail(A, unknown ? o->line : o->vline, unknown ? o->col : o->vcol, "SET: %s%s", e2,
                 unknown ? " (or key.file)" : "");
        } else {
            q->jobkv = sl__xrealloc(q->jobkv, sizeof(char *) * (size_t)(q->njobkv * 2 + 2));
            q->jobkv[2 * q->njobkv] = sl__xstrdup(key);
            q->jobkv[2 * q->njobkv + 1] = sl__xstrdup(val);
            q->njobkv++;
        }
        free(v);
    }
    /* overrides from sl_sql_set: job keys (others are variables) */
    for (int i = 0; i < q->nvars && !A->failed; i++) {
        const char *k = q->vars[2 * i], *v = q->vars[2 * i + 1];
        if (!strcmp(k, "key.file")) {
            free(q->key_file);
            q->key_file = sl__xstrdup(v);
            q->var_used[i] = true;
        } else if (sl_job_set(scratch, k, v, e2, sizeof e2) == 0) {
            q->jobkv = sl__xrealloc(q->jobkv, sizeof(char *) * (size_t)(q->njobkv * 2 + 2));
            q->jobkv[2 * q->njobkv] = sl__xstrdup(k);
            q->jobkv[2 * q->njobkv + 1] = sl__xstrdup(v);
            q->njobkv++;
            q->var_used[i] = true;
        } else if (!strstr(e2, "unknown")) {
            sl__sql_fail(A, 0, 0, "--set %s: %s", k, e2);
        }
    }
    (void)job_only_keys;
    sl_job_free(scratch);
}

/* Copies a statement's WITH options (minus `skip`) with ${} substituted. */
char **sl__sql_conf_of(actx *A, const sql_stmt *st, const char *const *skip)
{
    char **kv = NULL;
    for (int i = 0; i < st->nopts && !A->failed; i++) {
        const sql_opt *o = &st->opts[i];
        bool sk = false;
        for (int j = 0; skip && skip[j]; j++) sk |= sql_ieq(o->key, skip[j]);
        if (sk) continue;
        char *v = sl__sql_subst(A, o->value, o->vline, o->vcol);
        if (!v) break;
        kv = sql_kv_push(kv, o->key, v);
        free(v);
    }
    if (!kv) kv = sl__xcalloc(1, sizeof *kv);
    return kv;
}

const char *sl__sql_connector(actx *A, const sql_stmt *st, const char *const *allowed,
                             const char *what)
{
    const sql_opt *o = sl__sql_opt_find(st, "connector");
    if (!o) {
        sl__sql_fail(A, st->with_line, st->with_col, "%s '%s' needs WITH (connector = '...')",
             what, st->name);
        return NULL;
    }
    int n = 0;
    for (; allowed[n]; n++)
        if (!strcmp(allowed[n], o->value)) return allowed[n];
    static const char *const later[] = {"kafka", "postgres", NULL}; /* postgres: no source */
    for (int i = 0; later[i]; i++)
        if (!strcmp(later[i], o->value)) {
            sl__sql_fail(A, o->vline, o->vcol, "connector '%s' is not available yet for a %s",
                 o->value, what);
            return NULL;
        }
    const char *near = sql_nearest(o->value, allowed, n);
    char list[128] = "";
    for (int i = 0; allowed[i]; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, allowed[i], sizeof list - strlen(list) - 1);
    }
    if (near)
        sl__sql_fail(A, o->vline, o->vcol, "unknown connector '%s'; did you mean '%s'?", o->value, near);
    else
        sl__sql_fail(A, o->vline, o->vcol, "unknown connector '%s' (known: %s)", o->value, list);
    return NULL;
}

/* JOIN t ... ON t.key = <stream column or PSEUDONYMIZE(column)>. */
void sl__sql_join(actx *A, const sql_join *j, int idx)
{
    sl_sql *q = A->q;
    const sql_stmt *tab = sl__sql_find_stmt(q, S_TABLE, j->table);
    if (!tab) {
        const char *cands[64];
        int n = 0;
        for (int i = 0; i < q->script.n && n < 64; i++)
            if (q->script.v[i].k == S_TABLE) cands[n++] = q->script.v[i].name;
        const char *near = sql_nearest(j->table, cands, n);
        if (sl__sql_find_stmt(q, S_SOURCE, j->table))
            sl__sql_fail(A, j->line, j->col, "'%s' is a source; only tables (CREATE TABLE) can be "
                 "joined", j->table);
        else
            sl__sql_fail(A, j->line, j->col, "unknown table '%s'%s%s%s", j->table,
                 near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
        return;
    }
    if (!tab->pk) {
        sl__sql_fail(A, tab->name_line, tab->name_col, "table '%s' needs a PRIMARY KEY to be "
             "joined", tab->name);
        return;
    }
    sql_pjoin *pj = &q->joins[idx];
    pj->tab = tab;
    pj->alias = sl__xstrdup(j->alias ? j->alias : tab->name);
    pj->schema = sl__sql_make_schema(A, tab);
    if (A->failed) return;
    if (sl_schema_find(pj->schema, tab->pk) < 0) {
        sl__sql_fail(A, tab->pk_line, tab->pk_col, "PRIMARY KEY column '%s' is not a column of "
             "'%s'", tab->pk, tab->name);
        return;
    }
    if (sql_ieq(pj->alias, q->src_alias)) {
        sl__sql_fail(A, j->line, j->col, "alias '%s' is already used", pj->alias);
        return;
    }
    for (int i = 0; i < idx; i++)
        if (sql_ieq(pj->alias, q->joins[i].alias)) {
            sl__sql_fail(A, j->line, j->col, "alias '%s' is already used", pj->alias);
            return;
        }
    const char *conn = sl__sql_connector(A, tab, (const char *const[]){"file", "postgres", NULL},
                                         "table");
    if (!conn) return;
    pj->conf = sl__sql_conf_of(A, tab, (const char *const[]){"connector", NULL});
    /* FOR SYSTEM_TIME AS OF: must name a column (tables are static) */
    if (j->asof && j->asof->k != E_COL) {
        sl__sql_fail(A, j->asof->line, j->asof->col, "FOR SYSTEM_TIME AS OF takes the source's "
             "time column");
        return;
    }
    const sql_expr *on = j->on;
    if (!on || on->k != E_BIN || on->op != OP_EQ) {
        sl__sql_fail(A, on ? on->line : j->line, on ? on->col : j->col, "a lookup join needs ON "
             "%s.%s = <column of the stream>", pj->alias, tab->pk);
        return;
    }
    const sql_expr *l = on->args[0], *r = on->args[1];
    bool l_key = l->k == E_COL && l->qual && sql_ieq(l->qual, pj->alias);
    bool r_key = r->k == E_COL && r->qual && sql_ieq(r->qual, pj->alias);
    if (l_key == r_key) {
        sl__sql_fail(A, on->line, on->col, "a lookup join needs ON %s.%s = <column of the stream>",
             pj->alias, tab->pk);
        return;
    }
    const sql_expr *k = l_key ? l : r, *s = l_key ? r : l;
    if (!sql_ieq(k->name, tab->pk)) {
        sl__sql_fail(A, k->line, k->col, "the join must match the table's key '%s.%s', not '%s'",
             pj->alias, tab->pk, k->name);
        return;
    }
    A->clause = "ON";
    sql_expr *b = sl__sql_bind(A, s, ST_PRE, idx);
    if (!b) return;
    if (b->k != E_COL) {
        sl__sql_fail(A, s->line, s->col, "the stream side of a lookup join must be a column or "
             "PSEUDONYMIZE(column)");
        sql_expr_free(b);
        return;
    }
    pj->pseudo = s->k == E_FUNC;
    int kc = sl_schema_find(pj->schema, tab->pk);
    sl_type kt = sl_schema_col_type(pj->schema, kc);
    if (pj->pseudo && kt != SL_STRING) {
        sl__sql_fail(A, k->line, k->col, "a table joined on PSEUDONYMIZE(...) needs a VARCHAR "
             "key; '%s' is %s", tab->pk, sl_type_name(kt));
    } else if (!pj->pseudo && kt != b->type) {
        sl__sql_fail(A, on->line, on->col, "cannot join %s key '%s.%s' with %s column '%s'",
             sl_type_name(kt), pj->alias, tab->pk, sl_type_name(b->type), b->name);
    }
    if (pj->pseudo) sl_schema_set_identifier(pj->schema, kc);
    pj->stream_key = sl__xstrdup(b->name);
    pj->on_text = sl__sql_fmt_expr(on);
    sql_expr_free(b);
}


