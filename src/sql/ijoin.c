/* ijoin.c — the SQL form of the interval join: a self-join of the source,
 *
 *   FROM events AS a JOIN events AS b
 *     ON PSEUDONYMIZE(a.msisdn) = PSEUDONYMIZE(b.msisdn)
 *    AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '5' MINUTE
 *   WHERE a.event_type = 'CALL_PLACED' AND b.event_type = 'DATA_SESSION'
 *
 * analysed into the C API's sl_stream_interval_join (src/ops/ijoin.c):
 * the conditions of ON and WHERE are split at AND; one equality of the same
 * column (or PSEUDONYMIZE(column)) on both sides is the key, comparisons of
 * the two sides' event times give the bounds of b.ts - a.ts, conditions on
 * one side only classify rows as left (a) or right (b) rows, and the SELECT
 * list, over columns of both sides, becomes a map after the join. Anything
 * else (other conditions over both sides, aggregates over the join,
 * unqualified columns) is refused with its line and column. Plan:
 *
 *   source - pseudonymise - filter(left OR right) - key_by(key)
 *          - interval_join - map(SELECT) - sink
 *
 * It does not load or run anything: plan.c builds and explains the plan
 * through sl__sql_ij_build and sl__sql_ij_explain. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "sql/analyze.h"

struct sql_ij {
    char *alias[2];       /* a, b */
    char *key[9];         /* the key columns, NULL-terminated (pseudonymised in
                           * place where written PSEUDONYMIZE) */
    int nkey;
    char *key_text;
    int64_t lower, upper; /* b.ts - a.ts in [lower, upper] */
    sql_prog *pred[2];    /* left/right row conditions, NULL = every row */
    char *pred_text[2];
    sl_join_col *cols[2]; /* output columns per side, names "alias.col" */
    int ncols[2];
    char *time_out;       /* "a.<time column>": the pairs' event time */
};

/* ---- conditions ------------------------------------------------------------ */
static void conjuncts(const sql_expr *e, const sql_expr **v, int *n, int max)
{
    if (!e) return;
    if (e->k == E_BIN && e->op == OP_AND) {
        conjuncts(e->args[0], v, n, max);
        conjuncts(e->args[1], v, n, max);
        return;
    }
    if (*n < max) v[(*n)++] = e;
}

/* Which sides a condition reads: bit 0 = a, bit 1 = b; -1 after an error
 * (an unqualified column or window_start). */
static int sides_of(actx *A, const struct sql_ij *ij, const sql_expr *e)
{
    if (!e || A->failed) return -1;
    int m = 0;
    if (e->k == E_COL) {
        if (!e->qual) {
            sl__sql_fail(A, e->line, e->col, "column '%s' is ambiguous in a join of '%s' with "
                         "itself: write %s.%s or %s.%s", e->name, A->q->src->name,
                         ij->alias[0], e->name, ij->alias[1], e->name);
            return -1;
        }
        if (sql_ieq(e->qual, ij->alias[0])) return 1;
        if (sql_ieq(e->qual, ij->alias[1])) return 2;
        const char *cands[2] = {ij->alias[0], ij->alias[1]};
        const char *near = sql_nearest(e->qual, cands, 2);
        sl__sql_fail(A, e->line, e->col, "unknown table or alias '%s'%s%s%s", e->qual,
                     near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
        return -1;
    }
    for (int i = 0; i < e->nargs; i++) {
        int s = sides_of(A, ij, e->args[i]);
        if (s < 0) return -1;
        m |= s;
    }
    return m;
}

/* The column of `side` named by e: side.col or PSEUDONYMIZE(side.col). */
static const sql_expr *key_col(const sql_expr *e, bool *pseudo)
{
    *pseudo = false;
    if (e->k == E_COL) return e;
    if (e->k == E_FUNC && sql_ieq(e->name, "PSEUDONYMIZE") && e->nargs == 1 &&
        e->args[0]->k == E_COL) {
        *pseudo = true;
        return e->args[0];
    }
    return NULL;
}

/* A time term: side.time [+|- constant]; *side 1 = a, 2 = b. */
static bool time_term(const struct sql_ij *ij, const char *tcol, const sql_expr *e, int *side,
                      int64_t *c)
{
    if (e->k == E_COL) {
        if (!e->qual || !sql_ieq(e->name, tcol)) return false;
        *side = sql_ieq(e->qual, ij->alias[0]) ? 1 : sql_ieq(e->qual, ij->alias[1]) ? 2 : 0;
        *c = 0;
        return *side != 0;
    }
    if (e->k == E_BIN && (e->op == OP_ADD || e->op == OP_SUB)) {
        const sql_expr *l = e->args[1];
        bool neg = false;
        if (l->k == E_NEG) {
            neg = true;
            l = l->args[0];
        }
        if (l->k != E_LIT || l->lnull || l->lt != SL_INT64) return false;
        if (!time_term(ij, tcol, e->args[0], side, c)) return false;
        int64_t v = neg ? -l->li : l->li;
        *c += e->op == OP_ADD ? v : -v;
        return true;
    }
    return false;
}

/* Adds "x op y" (x, y time terms of different sides) to the bounds;
 * false if it is not of that form. */
static bool time_bound(struct sql_ij *ij, const char *tcol, int op, const sql_expr *x,
                       const sql_expr *y, bool *lo_set, bool *hi_set)
{
    int sx, sy;
    int64_t cx, cy;
    if (!time_term(ij, tcol, x, &sx, &cx) || !time_term(ij, tcol, y, &sy, &cy) || sx == sy)
        return false;
    /* as b.ts - a.ts  op  k */
    int64_t k;
    if (sx == 2) {
        k = cy - cx;
    } else {
        k = cx - cy;
        op = op == OP_LT ? OP_GT : op == OP_LE ? OP_GE : op == OP_GT ? OP_LT
           : op == OP_GE ? OP_LE : op;
    }
    switch (op) {
    case OP_GE: case OP_GT: case OP_EQ: {
        int64_t lo = op == OP_GT ? k + 1 : k;
        if (!*lo_set || lo > ij->lower) ij->lower = lo;
        *lo_set = true;
        if (op != OP_EQ) return true;
    } /* fall through */
    case OP_LE: case OP_LT: {
        int64_t hi = op == OP_LT ? k - 1 : k;
        if (!*hi_set || hi < ij->upper) ij->upper = hi;
        *hi_set = true;
        return true;
    }
    default:
        return false;
    }
}

static void unqualify(sql_expr *e)
{
    if (!e) return;
    if (e->k == E_COL) {
        free(e->qual);
        e->qual = NULL;
    }
    for (int i = 0; i < e->nargs; i++) unqualify(e->args[i]);
}

static void slots(actx *A, sql_expr *e, const sl_schema *s)
{
    if (!e || A->failed) return;
    if (e->k == E_COL) {
        e->slot = sl_schema_find(s, e->name);
        if (e->slot < 0)
            sl__sql_fail(A, e->line, e->col, "internal error: column '%s' not in the plan",
                         e->name);
    }
    for (int i = 0; i < e->nargs; i++) slots(A, e->args[i], s);
}

static sql_prog *prog(const char *name, sql_expr *e, const sl_sql *q)
{
    sql_prog *p = sl__xcalloc(1, sizeof *p);
    p->name = sl__xstrdup(name);
    p->exprs = sl__xmalloc(sizeof *p->exprs);
    p->exprs[0] = e;
    p->n = 1;
    p->udfs = q->udfs;
    return p;
}

static bool is_pseudo_col(const sl_sql *q, const char *c)
{
    for (int i = 0; i < q->npseudo; i++)
        if (sql_ieq(q->pseudo[i], c)) return true;
    return false;
}

/* Adds side.col to the join's output (once); returns its output name. */
static const char *use_col(struct sql_ij *ij, int side, const char *col)
{
    for (int i = 0; i < ij->ncols[side]; i++)
        if (!strcmp(ij->cols[side][i].col, col)) return ij->cols[side][i].as;
    char *as = sl__xmalloc(strlen(ij->alias[side]) + strlen(col) + 2);
    sprintf(as, "%s.%s", ij->alias[side], col);
    ij->cols[side] = sl__xrealloc(ij->cols[side], sizeof(sl_join_col) * (size_t)(ij->ncols[side] + 1));
    ij->cols[side][ij->ncols[side]++] = (sl_join_col){sl__xstrdup(col), as};
    return as;
}

/* Rewrites a SELECT expression for the schema after the join: side.col and
 * PSEUDONYMIZE(side.col) become the join's output column "side.col". */
static void to_join_cols(actx *A, struct sql_ij *ij, sql_expr *e)
{
    if (!e || A->failed) return;
    const sl_schema *s = A->q->src_schema;
    bool pseudo;
    const sql_expr *c = key_col(e, &pseudo);
    if (c && (pseudo || e->k == E_COL)) {
        int side = sides_of(A, ij, c);
        if (side < 0) return;
        int ic = sl_schema_find(s, c->name);
        for (int i = 0; ic < 0 && i < sl_schema_ncols(s); i++)
            if (sql_ieq(sl_schema_col_name(s, i), c->name)) ic = i;
        if (ic < 0) {
            sl__sql_fail(A, c->line, c->col, "unknown column '%s' in '%s'", c->name, c->qual);
            return;
        }
        const char *cn = sl_schema_col_name(s, ic);
        if (!pseudo && is_pseudo_col(A->q, cn)) {
            sl__sql_fail(A, c->line, c->col, "column '%s' is pseudonymised in this job: write "
                         "PSEUDONYMIZE(%s.%s) (the raw identifier never passes the first "
                         "operator)", cn, c->qual, cn);
            return;
        }
        const char *as = use_col(ij, side - 1, cn);
        sql_expr *r = sl__xcalloc(1, sizeof *r);
        r->k = E_COL;
        r->line = e->line;
        r->col = e->col;
        r->name = sl__xstrdup(as);
        /* e becomes r in place */
        for (int i = 0; i < e->nargs; i++) sql_expr_free(e->args[i]);
        free(e->args);
        free(e->name);
        free(e->qual);
        free(e->ls);
        *e = *r;
        free(r);
        return;
    }
    if (e->k == E_COL && !e->qual &&
        (sql_ieq(e->name, "window_start") || sql_ieq(e->name, "window_end"))) {
        sl__sql_fail(A, e->line, e->col, "%s needs GROUP BY with a window; a stream join has "
                     "none", e->name);
        return;
    }
    for (int i = 0; i < e->nargs; i++) to_join_cols(A, ij, e->args[i]);
}

/* ---- analysis ----------------------------------------------------------------- */
void sl__sql_ij_free(struct sql_ij *ij)
{
    if (!ij) return;
    for (int s = 0; s < 2; s++) {
        free(ij->alias[s]);
        if (ij->pred[s]) sql_prog_free(ij->pred[s]);
        free(ij->pred_text[s]);
        for (int i = 0; i < ij->ncols[s]; i++) {
            free((char *)ij->cols[s][i].col);
            free((char *)ij->cols[s][i].as);
        }
        free(ij->cols[s]);
    }
    for (int i = 0; i < ij->nkey; i++) free(ij->key[i]);
    free(ij->key_text);
    free(ij->time_out);
    free(ij);
}

#define MAXC 64

void sl__sql_ij_analyze(actx *A, const sql_select *sel, char **names)
{
    sl_sql *q = A->q;
    const sql_join *j = &sel->joins[0];
    if (sel->njoins > 1) {
        sl__sql_fail(A, sel->joins[1].line, sel->joins[1].col, "a stream join cannot be "
                     "combined with other joins yet");
        return;
    }
    if (!sql_ieq(j->table, q->src->name)) {
        sl__sql_fail(A, j->line, j->col, "stream joins are self-joins for now: JOIN '%s' "
                     "must name the source of FROM, '%s'%s", j->table, q->src->name,
                     sl__sql_find_stmt(q, S_SOURCE, j->table) ? "" : " (or a table declared "
                     "before, for a lookup join)");
        return;
    }
    if (sel->ngroup || sel->having) {
        const sql_expr *g = sel->ngroup ? sel->group[0] : sel->having;
        sl__sql_fail(A, g->line, g->col, "aggregating the output of a stream join is not "
                     "supported yet: write the pairs to a sink");
        return;
    }
    struct sql_ij *ij = sl__xcalloc(1, sizeof *ij);
    q->ij = ij;
    ij->alias[0] = sl__xstrdup(q->src_alias);
    ij->alias[1] = sl__xstrdup(j->alias ? j->alias : j->table);
    if (sql_ieq(ij->alias[0], ij->alias[1])) {
        sl__sql_fail(A, j->line, j->col, "a join of '%s' with itself needs two aliases: FROM "
                     "%s AS a JOIN %s AS b", j->table, q->src->name, j->table);
        return;
    }
    if (!q->time_col && sl_schema_find(q->src_schema, "ts") >= 0) q->time_col = sl__xstrdup("ts");
    if (!q->time_col) {
        sl__sql_fail(A, sel->from_line, sel->from_col, "a stream join needs the source's event "
                     "time: declare WATERMARK FOR <column> in CREATE SOURCE %s", q->src->name);
        return;
    }
    const sql_expr *cv[MAXC];
    int nc = 0;
    conjuncts(j->on, cv, &nc, MAXC);
    conjuncts(sel->where, cv, &nc, MAXC);
    if (nc == MAXC) {
        sl__sql_fail(A, j->line, j->col, "at most %d conditions in a stream join", MAXC - 1);
        return;
    }
    bool lo_set = false, hi_set = false;
    sql_expr *side_pred[2] = {NULL, NULL};
    for (int i = 0; i < nc && !A->failed; i++) {
        const sql_expr *e = cv[i];
        int m = sides_of(A, ij, e);
        if (m < 0) break;
        if (m == 3) {
            bool pl, pr;
            const sql_expr *l, *r;
            if (e->k == E_BIN && e->op == OP_EQ && (l = key_col(e->args[0], &pl)) &&
                (r = key_col(e->args[1], &pr)) && pl == pr && l->qual && r->qual &&
                !sql_ieq(l->qual, r->qual) && sql_ieq(l->name, r->name) &&
                !sql_ieq(l->name, q->time_col)) {
                if (ij->nkey == 8) {
                    sl__sql_fail(A, e->line, e->col, "at most 8 key equalities");
                    break;
                }
                int c = sl_schema_find(q->src_schema, l->name);
                for (int x = 0; c < 0 && x < sl_schema_ncols(q->src_schema); x++)
                    if (sql_ieq(sl_schema_col_name(q->src_schema, x), l->name)) c = x;
                if (c < 0) {
                    sl__sql_fail(A, l->line, l->col, "unknown column '%s' in '%s'", l->name,
                                 l->qual);
                    break;
                }
                const char *cn = sl_schema_col_name(q->src_schema, c);
                sl_type t = sl_schema_col_type(q->src_schema, c);
                if (pl && t != SL_STRING) {
                    sl__sql_fail(A, l->line, l->col, "PSEUDONYMIZE needs a VARCHAR identifier; "
                                 "'%s' is %s", cn, sl_type_name(t));
                    break;
                }
                if (!pl && is_pseudo_col(q, cn)) {
                    sl__sql_fail(A, l->line, l->col, "column '%s' is pseudonymised in this job: "
                                 "write PSEUDONYMIZE(%s.%s) = PSEUDONYMIZE(%s.%s)", cn,
                                 l->qual, cn, r->qual, cn);
                    break;
                }
                if (!pl && t == SL_STRING) {
                    sl__sql_fail(A, l->line, l->col, "the key of a stream join is kept in its "
                                 "state: a VARCHAR key must be a pseudonym, ON PSEUDONYMIZE(%s.%s) "
                                 "= PSEUDONYMIZE(%s.%s) (raw identifiers never reach state)",
                                 l->qual, cn, r->qual, cn);
                    break;
                }
                ij->key[ij->nkey++] = sl__xstrdup(cn);
                char *txt = sl__sql_fmt_expr(e);
                if (ij->key_text) {
                    char *both = sl__xmalloc(strlen(ij->key_text) + strlen(txt) + 6);
                    sprintf(both, "%s AND %s", ij->key_text, txt);
                    free(txt);
                    txt = both;
                }
                free(ij->key_text);
                ij->key_text = txt;
                continue;
            }
            bool ok = false;
            if (e->k == E_BIN && e->op >= OP_EQ && e->op <= OP_GE && e->op != OP_NE)
                ok = time_bound(ij, q->time_col, e->op, e->args[0], e->args[1], &lo_set, &hi_set);
            else if (e->k == E_BETWEEN && !e->negate)
                ok = time_bound(ij, q->time_col, OP_GE, e->args[0], e->args[1], &lo_set,
                                &hi_set) &&
                     time_bound(ij, q->time_col, OP_LE, e->args[0], e->args[2], &lo_set,
                                &hi_set);
            if (!ok)
                sl__sql_fail(A, e->line, e->col, "this condition over both sides is not "
                             "supported: a stream join takes one key equality (ON "
                             "PSEUDONYMIZE(%s.id) = PSEUDONYMIZE(%s.id) or %s.col = %s.col) and "
                             "bounds on the event times (%s.%s BETWEEN %s.%s - INTERVAL ... "
                             "AND %s.%s + INTERVAL ...), plus conditions on one side",
                             ij->alias[0], ij->alias[1], ij->alias[0], ij->alias[1],
                             ij->alias[1], q->time_col, ij->alias[0], q->time_col,
                             ij->alias[0], q->time_col);
            continue;
        }
        /* one side (or none: a constant, applied to both) */
        for (int s = 0; s < 2; s++) {
            if (m && m != s + 1) continue;
            char *txt = sl__sql_fmt_expr(e); /* as written, qualified */
            if (ij->pred_text[s]) {
                char *both = sl__xmalloc(strlen(ij->pred_text[s]) + strlen(txt) + 6);
                sprintf(both, "%s AND %s", ij->pred_text[s], txt);
                free(txt);
                txt = both;
            }
            free(ij->pred_text[s]);
            ij->pred_text[s] = txt;
            sql_expr *c = sql_expr_clone(e);
            unqualify(c);
            if (!side_pred[s]) {
                side_pred[s] = c;
            } else {
                sql_expr *and = sl__xcalloc(1, sizeof *and);
                and->k = E_BIN;
                and->op = OP_AND;
                and->line = c->line;
                and->col = c->col;
                and->nargs = 2;
                and->args = sl__xmalloc(2 * sizeof *and->args);
                and->args[0] = side_pred[s];
                and->args[1] = c;
                side_pred[s] = and;
            }
        }
    }
    if (!A->failed && !ij->nkey)
        sl__sql_fail(A, j->on ? j->on->line : j->line, j->on ? j->on->col : j->col,
                     "a stream join needs a key equality: ON PSEUDONYMIZE(%s.id) = "
                     "PSEUDONYMIZE(%s.id) (or %s.col = %s.col)", ij->alias[0], ij->alias[1],
                     ij->alias[0], ij->alias[1]);
    if (!A->failed && (!lo_set || !hi_set))
        sl__sql_fail(A, j->on ? j->on->line : j->line, j->on ? j->on->col : j->col,
                     "a stream join needs both bounds on the event times, e.g. %s.%s BETWEEN "
                     "%s.%s AND %s.%s + INTERVAL '5' MINUTE (unbounded joins keep state "
                     "forever)", ij->alias[1], q->time_col, ij->alias[0], q->time_col,
                     ij->alias[0], q->time_col);
    if (!A->failed && ij->lower > ij->upper)
        sl__sql_fail(A, j->on ? j->on->line : j->line, j->on ? j->on->col : j->col,
                     "the time bounds leave no interval: %s.%s - %s.%s in [%lld, %lld] ms",
                     ij->alias[1], q->time_col, ij->alias[0], q->time_col,
                     (long long)ij->lower, (long long)ij->upper);
    /* the side conditions, bound on the source's columns */
    sl_schema *s0 = sl__schema_copy(q->src_schema);
    for (int i = 0; i < q->npseudo; i++) {
        int c = sl_schema_find(s0, q->pseudo[i]);
        if (c >= 0) s0->cols[c].type = SL_INT64;
    }
    for (int s = 0; s < 2 && !A->failed; s++) {
        if (!side_pred[s]) continue;
        A->clause = s ? "the right side's conditions" : "the left side's conditions";
        sql_expr *b = sl__sql_bind(A, side_pred[s], ST_PRE, 0);
        if (b && b->type != SL_BOOL && !b->is_null_lit)
            sl__sql_fail(A, side_pred[s]->line, side_pred[s]->col, "a condition needs a BOOLEAN, "
                         "got %s", sl_type_name(b->type));
        if (A->failed) {
            sql_expr_free(b);
            break;
        }
        slots(A, b, s0);
        ij->pred[s] = prog(s ? "join-right" : "join-left", b, q);
    }
    sql_expr_free(side_pred[0]);
    sql_expr_free(side_pred[1]);
    /* the SELECT list over the join's output */
    sql_expr **items = sl__xcalloc((size_t)sel->nitems + 1, sizeof *items);
    int nitems = 0;
    for (int i = 0; i < sel->nitems && !A->failed; i++) {
        sql_expr *e = sql_expr_clone(sel->items[i].expr);
        to_join_cols(A, ij, e);
        items[nitems++] = e;
    }
    if (!A->failed) {
        ij->time_out = sl__xstrdup(use_col(ij, 0, q->time_col));
        sl_schema *js = sl_schema_new();
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < ij->ncols[s]; i++) {
                int c = sl_schema_find(s0, ij->cols[s][i].col);
                sl_schema_add(js, ij->cols[s][i].as, s0->cols[c].type);
            }
        /* bind as if the join's output were the source */
        sl_schema *keep = q->src_schema;
        q->src_schema = js;
        A->clause = "the SELECT list";
        sql_expr **bound = sl__xcalloc((size_t)nitems + 1, sizeof *bound);
        for (int i = 0; i < nitems && !A->failed; i++) {
            bound[i] = sl__sql_bind(A, items[i], ST_PRE, 0);
            slots(A, bound[i], js);
        }
        q->src_schema = keep;
        if (!A->failed) {
            sql_prog *p = sl__xcalloc(1, sizeof *p);
            p->name = sl__xstrdup("SELECT");
            p->exprs = bound;
            p->n = nitems;
            p->udfs = q->udfs;
            p->out = sl_schema_new();
            for (int i = 0; i < nitems; i++) sl_schema_add(p->out, names[i], bound[i]->type);
            q->post = p;
        } else {
            for (int i = 0; i < nitems; i++) sql_expr_free(bound[i]);
            free(bound);
        }
        sl_schema_free(js);
    }
    for (int i = 0; i < nitems; i++) sql_expr_free(items[i]);
    free(items);
    sl_schema_free(s0);
}

/* ---- build and explain ---------------------------------------------------- */
/* Keeps rows that are left or right rows (fewer rows cross the exchange). */
static void either_side(const sl_batch *in, uint8_t *keep, void *udata)
{
    const struct sql_ij *ij = udata;
    size_t n = sl_batch_len(in);
    memset(keep, 0, n);
    uint8_t *tmp = sl__xmalloc(n ? n : 1);
    for (int s = 0; s < 2; s++) {
        if (!ij->pred[s]) {
            memset(keep, 1, n);
            break;
        }
        memset(tmp, 0, n);
        sql_prog_filter(in, tmp, ij->pred[s]);
        for (size_t i = 0; i < n; i++) keep[i] |= tmp[i];
    }
    free(tmp);
}

sl_stream *sl__sql_ij_build(const sl_sql *q, sl_stream *s)
{
    const struct sql_ij *ij = q->ij;
    if (ij->pred[0] && ij->pred[1])
        s = sl_stream_filter(s, "join-sides", either_side, (void *)ij);
    s = sl_stream_key_by(s, (const char *const *)ij->key);
    sl_interval_join_spec spec = {
        .left = ij->pred[0] ? sql_prog_filter : NULL, .left_udata = ij->pred[0],
        .right = ij->pred[1] ? sql_prog_filter : NULL, .right_udata = ij->pred[1],
        .lower_ms = ij->lower, .upper_ms = ij->upper,
        .left_cols = ij->cols[0], .nleft = (size_t)ij->ncols[0],
        .right_cols = ij->cols[1], .nright = (size_t)ij->ncols[1],
        .time_col = ij->time_out};
    return sl_stream_interval_join(s, &spec);
}

size_t sl__sql_ij_explain(const sl_sql *q, int stage, char *buf, size_t size)
{
    const struct sql_ij *ij = q->ij;
    size_t used = 0;
#define SAY(...) \
    do { \
        int w_ = snprintf(buf + used, used < size ? size - used : 0, __VA_ARGS__); \
        if (w_ > 0) used += (size_t)w_; \
    } while (0)
    if (size) buf[0] = 0;
    if (ij->pred[0] && ij->pred[1])
        SAY("  filter rows that are left (%s) or right (%s) rows\n", ij->pred_text[0],
            ij->pred_text[1]);
    SAY("stage %d: keyed by (", stage);
    for (int i = 0; i < ij->nkey; i++) SAY("%s%s", i ? ", " : "", ij->key[i]);
    SAY("), key groups hashed to parallel tasks\n");
    SAY("  interval join %s AS %s with %s AS %s ON %s: pairs with %s.%s - %s.%s in "
        "[%lld, %lld] ms\n", q->src->name, ij->alias[0], q->src->name, ij->alias[1],
        ij->key_text, ij->alias[1], q->time_col, ij->alias[0], q->time_col,
        (long long)ij->lower, (long long)ij->upper);
    SAY("    left rows (%s): %s\n    right rows (%s): %s\n", ij->alias[0],
        ij->pred_text[0] ? ij->pred_text[0] : "every row", ij->alias[1],
        ij->pred_text[1] ? ij->pred_text[1] : "every row");
    SAY("    state per key: buffered left rows (");
    for (int i = 0; i < ij->ncols[0]; i++) SAY("%s%s", i ? ", " : "", ij->cols[0][i].col);
    SAY(") and right rows (");
    for (int i = 0; i < ij->ncols[1]; i++) SAY("%s%s", i ? ", " : "", ij->cols[1][i].col);
    SAY(")\n    a left row's pairs leave when the watermark passes %s.%s + %lld ms; "
        "rows behind the watermark are late (counted)\n", ij->alias[0], q->time_col,
        (long long)ij->upper);
#undef SAY
    return used;
}
