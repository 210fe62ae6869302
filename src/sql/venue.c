/* venue.c — the SQL form of the venue report (docs/venues.md): a query
 *
 *   SELECT venue, age_band, COUNT(DISTINCT PSEUDONYMIZE(e.msisdn)) AS subscribers, ...
 *   FROM events AS e
 *   JOIN subscribers FOR SYSTEM_TIME AS OF e.ts AS s ON s.msisdn = PSEUDONYMIZE(e.msisdn)
 *   GROUP BY VENUE(e.ts, e.cell_id, venues), AGE_BAND(s.birth_date) [, s.gender]
 *
 * with `venues` a CREATE TABLE read by the venue loader, is analysed here
 * into the operators `sluice run venue-report` builds: [blur time] ->
 * venue report (early firings, final rows, slices, k, differencing
 * defence, extrapolation) -> [projection] -> sink; the source,
 * pseudonymisation and lookup joins are the planner's usual ones. The
 * report's knobs are sink options, like k_anonymity and dp_* (table
 * VENUE_DEFS). This file does not evaluate anything itself: the operators
 * are the public builders (sl_stream_blur_time, sl_stream_venue_report). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "sql/analyze.h"

/* The report's output columns, in the operator's order (venue_report.c). */
static const char *const OUT_COLS[] = {"venue", "report", "slice_start", "slice_end",
                                       "age_band", "gender", "subscribers", "extrapolated",
                                       "arrivals", "departures", "as_of", "final", NULL};
static const sl_type OUT_TYPES[] = {SL_STRING, SL_STRING, SL_TIMESTAMP, SL_TIMESTAMP,
                                    SL_STRING, SL_STRING, SL_INT64, SL_INT64,
                                    SL_INT64, SL_INT64, SL_TIMESTAMP, SL_BOOL};
enum { OUT_SUBSCRIBERS = 6, SQL_VENUE_MAX_ITEMS = 32 };
/* The upsert key of the report (docs/design.md, upsert contract). */
static const char *const KEY_COLS[] = {"venue", "report", "slice_start", "age_band",
                                       "gender", NULL};

typedef struct {
    int64_t k, emit_every_ms, slice_ms, lateness_ms, blur_ms, blur_bucket_ms, round_to;
} venue_opts;

static const sl__conf_def VENUE_DEFS[] = {
    {"k_anonymity", SL_CONF_INT, "16", 2, 1000000, NULL, offsetof(venue_opts, k),
     "no count below k is published"},
    {"emit_every_ms", SL_CONF_INT, "60000", 0, 86400000, NULL,
     offsetof(venue_opts, emit_every_ms), "early firings, 0 = final rows only"},
    {"slice_ms", SL_CONF_INT, "900000", 0, 86400000, NULL, offsetof(venue_opts, slice_ms),
     "slices (present, arrivals, departures), 0 = none"},
    {"lateness_ms", SL_CONF_INT, "0", 0, 86400000, NULL, offsetof(venue_opts, lateness_ms),
     "allowed lateness after a venue's end"},
    {"blur_ms", SL_CONF_INT, "0", 0, 3600000, NULL, offsetof(venue_opts, blur_ms),
     "time blurring bound B (+-B uniform), 0 = off"},
    {"blur_bucket_ms", SL_CONF_INT, "60000", 1, 86400000, NULL,
     offsetof(venue_opts, blur_bucket_ms), "one noise per subscriber and bucket"},
    {"round_to", SL_CONF_INT, "10", 1, 1000000, NULL, offsetof(venue_opts, round_to),
     "extrapolated counts rounded to a multiple"},
    {NULL, 0, NULL, 0, 0, NULL, 0, NULL},
};

struct sql_venue {
    const sql_stmt *tab;   /* the venues CREATE TABLE */
    char *venues_path, *share_path;
    char *time_col, *cell_col, *sub_col, *birth_col, *gender_col;
    venue_opts o;
    int64_t wm_delay_user; /* the WATERMARK's delay, before blur_ms is added */
    int map[SQL_VENUE_MAX_ITEMS]; /* SELECT item -> report column */
    sl_venues *venues;     /* loaded by the build, borrowed by the job */
};

void sl__sql_venue_free(struct sql_venue *v)
{
    if (!v) return;
    free(v->venues_path);
    free(v->share_path);
    free(v->time_col);
    free(v->cell_col);
    free(v->sub_col);
    free(v->birth_col);
    free(v->gender_col);
    sl_venues_free(v->venues);
    free(v);
}

static bool is_call(const sql_expr *e, const char *name)
{
    return e && e->k == E_FUNC && sql_ieq(e->name, name);
}

bool sl__sql_venue_query(const sql_select *sel)
{
    for (int i = 0; i < sel->ngroup; i++)
        if (is_call(sel->group[i], "VENUE")) return true;
    return false;
}

/* A source column of the given type, named by a bare or qualified E_COL. */
static char *source_col(actx *A, const sql_expr *e, sl_type t, const char *what)
{
    const sl_sql *q = A->q;
    if (!e || e->k != E_COL || (e->qual && !sql_ieq(e->qual, q->src_alias))) {
        sl__sql_fail(A, e ? e->line : 0, e ? e->col : 0, "VENUE(time, cell, venues): %s must be "
                     "a column of the source '%s'", what, q->src->name);
        return NULL;
    }
    int c = sl_schema_find(q->src_schema, e->name);
    if (c < 0) {
        sl__sql_fail(A, e->line, e->col, "VENUE(time, cell, venues): '%s' is not a column of "
                     "the source '%s'", e->name, q->src->name);
        return NULL;
    }
    sl_type ct = sl_schema_col_type(q->src_schema, c);
    if (ct != t && !(t == SL_TIMESTAMP && ct == SL_INT64)) {
        sl__sql_fail(A, e->line, e->col, "VENUE(time, cell, venues): %s '%s' must be %s, not "
                     "%s", what, e->name, sl_type_name(t), sl_type_name(ct));
        return NULL;
    }
    return sl__xstrdup(sl_schema_col_name(q->src_schema, c));
}

/* The venues table: columns of the venue file, options of the loader. */
static void venue_table(actx *A, struct sql_venue *v, const sql_expr *arg)
{
    sl_sql *q = A->q;
    if (!arg || arg->k != E_COL || arg->qual) {
        sl__sql_fail(A, arg ? arg->line : 0, arg ? arg->col : 0, "VENUE(time, cell, venues): "
                     "the third argument names a venue table (CREATE TABLE ... WITH "
                     "(connector = 'file', path = ...))");
        return;
    }
    const sql_stmt *t = sl__sql_find_stmt(q, S_TABLE, arg->name);
    if (!t) {
        sl__sql_fail(A, arg->line, arg->col, "VENUE: unknown table '%s' (declare it with "
                     "CREATE TABLE %s (name VARCHAR, start TIMESTAMP, \"end\" TIMESTAMP, "
                     "cells VARCHAR, ...) WITH (connector = 'file', path = ...))", arg->name,
                     arg->name);
        return;
    }
    v->tab = t;
    static const char *const known[] = {"name", "start", "end", "cells", "area", "tz", NULL};
    bool seen[6] = {false};
    for (int i = 0; i < t->ncols && !A->failed; i++) {
        const sql_coldef *c = &t->cols[i];
        int k = 0;
        while (known[k] && !sql_ieq(known[k], c->name)) k++;
        if (!known[k]) {
            sl__sql_fail(A, c->line, c->col, "venue table '%s': column '%s' is not a column "
                         "of a venue file (name, start, end, cells, area, tz)", t->name,
                         c->name);
            return;
        }
        bool time = k == 1 || k == 2;
        if (c->type != SL_STRING && !(time && c->type == SL_TIMESTAMP)) {
            sl__sql_fail(A, c->line, c->col, "venue table '%s': column '%s' must be %s",
                         t->name, c->name, time ? "TIMESTAMP or VARCHAR" : "VARCHAR");
            return;
        }
        seen[k] = true;
    }
    for (int k = 0; k < 4 && !A->failed; k++)
        if (!seen[k])
            sl__sql_fail(A, t->name_line, t->name_col, "venue table '%s' needs the column "
                         "'%s' (a venue file has name, start, end, cells[, area][, tz])",
                         t->name, known[k]);
    if (!A->failed && (!t->pk || !sql_ieq(t->pk, "name")))
        sl__sql_fail(A, t->pk ? t->pk_line : t->name_line, t->pk ? t->pk_col : t->name_col,
                     "venue table '%s' is keyed by name: PRIMARY KEY (name)", t->name);
    if (A->failed) return;
    if (!sl__sql_connector(A, t, (const char *const[]){"file", NULL}, "venue table")) return;
    for (int i = 0; i < t->nopts && !A->failed; i++) {
        const sql_opt *o = &t->opts[i];
        char *val = sl__sql_subst(A, o->value, o->vline, o->vcol);
        if (!val) return;
        if (sql_ieq(o->key, "path")) {
            free(v->venues_path);
            v->venues_path = val;
            val = NULL;
        } else if (sql_ieq(o->key, "market_share")) {
            free(v->share_path);
            v->share_path = *val ? val : NULL;
            if (v->share_path) val = NULL;
        } else if (sql_ieq(o->key, "format")) {
            if (strcmp(val, "csv"))
                sl__sql_fail(A, o->vline, o->vcol, "venue table '%s': format must be 'csv' "
                             "(the venue file), got '%s'", t->name, val);
        } else if (!sql_ieq(o->key, "connector")) {
            sl__sql_fail(A, o->line, o->col, "venue table '%s': unknown option '%s' (allowed: "
                         "connector, path, format, market_share)", t->name, o->key);
        }
        free(val);
    }
    if (!A->failed && !v->venues_path)
        sl__sql_fail(A, t->with_line, t->with_col, "venue table '%s' needs path = 'FILE'",
                     t->name);
}

static void slotify(actx *A, sql_expr *e, const sl_schema *s)
{
    if (!e || A->failed) return;
    if (e->k == E_COL && (e->slot = sl_schema_find(s, e->name)) < 0)
        sl__sql_fail(A, e->line, e->col, "internal error: column '%s' not found in the plan",
                     e->name);
    for (int i = 0; i < e->nargs; i++) slotify(A, e->args[i], s);
}

/* WHERE: a filter on the events before the report, after the lookups (so
 * it may read table columns), over the pseudonymised stream; its column
 * slots are set by where_slots once every lookup column is known. */
static void where_clause(actx *A, const sql_select *sel)
{
    sl_sql *q = A->q;
    A->clause = "WHERE";
    sql_expr *w = sl__sql_bind(A, sel->where, ST_PRE, q->njoins);
    if (!w) return;
    if (w->type != SL_BOOL && !w->is_null_lit) {
        sl__sql_fail(A, sel->where->line, sel->where->col, "WHERE needs a BOOLEAN condition, "
                     "got %s", sl_type_name(w->type));
        sql_expr_free(w);
        return;
    }
    q->where = sl__xcalloc(1, sizeof *q->where);
    q->where->name = sl__xstrdup("WHERE");
    q->where->exprs = sl__xmalloc(sizeof w);
    q->where->exprs[0] = w;
    q->where->n = 1;
    q->where->udfs = q->udfs;
    q->where_early = false;
    q->where_text = sl__sql_fmt_expr(sel->where);
}

static void where_slots(actx *A)
{
    sl_sql *q = A->q;
    sl_schema *s = sl__schema_copy(q->src_schema); /* after pseudonymisation and lookups */
    for (int i = 0; i < q->npseudo; i++) s->cols[sl_schema_find(s, q->pseudo[i])].type = SL_INT64;
    for (int j = 0; j < q->njoins; j++)
        for (int i = 0; i < q->joins[j].ncols; i++) {
            int tc = sl_schema_find(q->joins[j].schema, q->joins[j].cols[i]);
            sl_schema_add(s, q->joins[j].cols[i], sl_schema_col_type(q->joins[j].schema, tc));
        }
    slotify(A, q->where->exprs[0], s);
    sl_schema_free(s);
}

/* GROUP BY VENUE(time, cell, venues), AGE_BAND(birth) [, gender]. */
static void group_by(actx *A, struct sql_venue *v, const sql_select *sel)
{
    sl_sql *q = A->q;
    const sql_expr *venue = NULL, *band = NULL, *gender = NULL;
    for (int i = 0; i < sel->ngroup && !A->failed; i++) {
        const sql_expr *g = sel->group[i];
        const sql_expr **slot = is_call(g, "VENUE") ? &venue : is_call(g, "AGE_BAND") ? &band
                              : g->k == E_COL ? &gender : NULL;
        if (!slot) {
            sl__sql_fail(A, g->line, g->col, "GROUP BY VENUE(...) takes AGE_BAND(birth_date) "
                         "and at most one gender column; this grouping is not supported");
            return;
        }
        if (*slot) {
            char *t = sl__sql_fmt_expr(g);
            sl__sql_fail(A, g->line, g->col, "GROUP BY VENUE(...): '%s' is a second %s; a venue "
                         "report groups by one VENUE, one AGE_BAND and at most one gender "
                         "column", t, slot == &venue ? "VENUE" : slot == &band ? "AGE_BAND"
                                                                                : "column");
            free(t);
            return;
        }
        *slot = g;
    }
    if (A->failed || !venue) return; /* venue: sl__sql_venue_query found it */
    if (venue->nargs != 3) {
        sl__sql_fail(A, venue->line, venue->col, "VENUE takes (time, cell, venue table), got "
                     "%d arguments", venue->nargs);
        return;
    }
    v->time_col = source_col(A, venue->args[0], SL_TIMESTAMP, "the time");
    if (!A->failed && (!q->src->wm_col || !q->time_col || strcmp(q->time_col, v->time_col)))
        sl__sql_fail(A, venue->args[0]->line, venue->args[0]->col, "VENUE's time '%s' must be "
                     "the source's event time: WATERMARK FOR %s AS %s - INTERVAL ...",
                     v->time_col, v->time_col, v->time_col);
    if (!A->failed) v->cell_col = source_col(A, venue->args[1], SL_INT64, "the cell");
    if (!A->failed) venue_table(A, v, venue->args[2]);
    if (A->failed) return;
    if (!band) {
        sl__sql_fail(A, venue->line, venue->col, "GROUP BY VENUE(...) needs AGE_BAND(birth_date) "
                     "beside it (the distribution is by age band)");
        return;
    }
    A->clause = "GROUP BY";
    if (band->nargs != 1) {
        sl__sql_fail(A, band->line, band->col, "AGE_BAND takes one TIMESTAMP (a birth date)");
        return;
    }
    sql_expr *b = sl__sql_bind(A, band->args[0], ST_PRE, q->njoins);
    if (!b) return;
    if (b->k != E_COL || b->type != SL_TIMESTAMP)
        sl__sql_fail(A, band->args[0]->line, band->args[0]->col, "AGE_BAND takes a TIMESTAMP "
                     "column (a birth date from a lookup table)");
    else
        v->birth_col = sl__xstrdup(b->name);
    sql_expr_free(b);
    if (A->failed || !gender) return;
    sql_expr *g = sl__sql_bind(A, gender, ST_PRE, q->njoins);
    if (!g) return;
    if (g->type != SL_STRING)
        sl__sql_fail(A, gender->line, gender->col, "the gender column of a venue report must "
                     "be VARCHAR, '%s' is %s", g->name, sl_type_name(g->type));
    else
        v->gender_col = sl__xstrdup(g->name);
    sql_expr_free(g);
}

/* The SELECT list: report columns by name, and the distinct count as
 * COUNT(DISTINCT PSEUDONYMIZE(col)); a projection map when it is not the
 * report's own order. */
static void select_list(actx *A, struct sql_venue *v, const sql_select *sel, char **names)
{
    sl_sql *q = A->q;
    if (sel->nitems > SQL_VENUE_MAX_ITEMS) {
        sl__sql_fail(A, sel->items[SQL_VENUE_MAX_ITEMS].line, sel->items[SQL_VENUE_MAX_ITEMS].col,
                     "a venue report has at most %d result columns", SQL_VENUE_MAX_ITEMS);
        return;
    }
    sql_expr **cols = sl__xcalloc((size_t)sel->nitems + 1, sizeof *cols);
    bool identity = sel->nitems == (int)(sizeof OUT_TYPES / sizeof OUT_TYPES[0]);
    for (int i = 0; i < sel->nitems && !A->failed; i++) {
        const sql_expr *e = sel->items[i].expr;
        int c = -1;
        if (is_call(e, "COUNT")) {
            const sql_expr *a = e->nargs == 1 ? e->args[0] : NULL;
            if (!e->distinct || !is_call(a, "PSEUDONYMIZE") || a->nargs < 1 ||
                a->args[0]->k != E_COL) {
                sl__sql_fail(A, e->line, e->col, "a venue report counts COUNT(DISTINCT "
                             "PSEUDONYMIZE(subscriber)); other aggregates are not supported");
                break;
            }
            if (v->sub_col) {
                sl__sql_fail(A, e->line, e->col, "a venue report has one distinct count");
                break;
            }
            char *sub = NULL;
            for (int p = 0; p < q->npseudo && !sub; p++)
                if (sql_ieq(q->pseudo[p], a->args[0]->name)) sub = q->pseudo[p];
            if (!sub) {
                sl__sql_fail(A, a->line, a->col, "PSEUDONYMIZE takes a VARCHAR column of the "
                             "source");
                break;
            }
            v->sub_col = sl__xstrdup(sub);
            c = OUT_SUBSCRIBERS;
        } else if (e->k == E_COL && !e->qual) {
            for (int k = 0; OUT_COLS[k] && c < 0; k++)
                if (sql_ieq(OUT_COLS[k], e->name) && k != OUT_SUBSCRIBERS) c = k;
        }
        if (c < 0) {
            char *t = sl__sql_fmt_expr(e);
            sl__sql_fail(A, e->line, e->col, "a venue report's SELECT takes its columns by name "
                         "(venue, report, slice_start, slice_end, age_band, gender, "
                         "extrapolated, arrivals, departures, as_of, final) and COUNT(DISTINCT "
                         "PSEUDONYMIZE(...)); '%s' is not one of them", t);
            free(t);
            break;
        }
        identity &= c == i && sql_ieq(names[i], OUT_COLS[c]);
        v->map[i] = c;
        sql_expr *x = sl__xcalloc(1, sizeof *x);
        x->k = E_COL;
        x->line = e->line;
        x->col = e->col;
        x->name = sl__xstrdup(OUT_COLS[c]);
        x->slot = c;
        x->type = OUT_TYPES[c];
        cols[i] = x;
    }
    if (!A->failed && !v->sub_col)
        sl__sql_fail(A, sel->items[0].line, sel->items[0].col, "a venue report needs "
                     "COUNT(DISTINCT PSEUDONYMIZE(subscriber)) in its SELECT");
    if (A->failed || identity) {
        for (int i = 0; i < sel->nitems; i++) sql_expr_free(cols[i]);
        free(cols);
        return;
    }
    sql_prog *p = sl__xcalloc(1, sizeof *p);
    p->name = sl__xstrdup("SELECT");
    p->exprs = cols;
    p->n = sel->nitems;
    p->udfs = q->udfs;
    p->out = sl_schema_new();
    for (int i = 0; i < p->n; i++) sl_schema_add(p->out, names[i], cols[i]->type);
    q->post = p;
}

/* Sink: the report's knobs (VENUE_DEFS) are read here, the rest goes to
 * the connector; upsert's default key is the report's key. */
static void sink_opts(actx *A, struct sql_venue *v, const sql_select *sel, char **names)
{
    sl_sql *q = A->q;
    const sql_stmt *sink = q->sink;
    char **kv = NULL;
    for (int i = 0; i < sink->nopts && !A->failed; i++) {
        const sql_opt *o = &sink->opts[i];
        if (sql_ieq(o->key, "k_column") || !strncasecmp(o->key, "dp_", 3)) {
            sl__sql_fail(A, o->line, o->col, "'%s' is not used by a venue report: k applies to "
                         "the distinct count, and the release rule replaces noise "
                         "(docs/venues.md)", o->key);
            break;
        }
        bool mine = false;
        for (int d = 0; VENUE_DEFS[d].key; d++) mine |= sql_ieq(VENUE_DEFS[d].key, o->key);
        if (!mine) continue;
        char *val = sl__sql_subst(A, o->value, o->vline, o->vcol);
        if (val) kv = sql_kv_push(kv, o->key, val);
        free(val);
    }
    if (A->failed) {
        sql_kv_free(kv);
        return;
    }
    char err[512];
    if (sl__conf_apply(VENUE_DEFS, &v->o, (const char *const *)kv, "venue report sink", NULL,
                       err, sizeof err)) {
        const sql_opt *at = NULL;
        for (int i = 0; i < sink->nopts && !at; i++) {
            char pat[80];
            snprintf(pat, sizeof pat, "'%s'", sink->opts[i].key);
            if (strstr(err, pat)) at = &sink->opts[i];
        }
        sl__sql_fail(A, at ? at->vline : sink->with_line, at ? at->vcol : sink->with_col, "%s",
                     err);
    }
    sql_kv_free(kv);
    if (A->failed) return;
    const char *conn = sl__sql_connector(A, sink, (const char *const[]){"sqlite", "postgres",
                                                                      "file", "stdout", NULL},
                                         "sink");
    if (!conn) return;
    q->sink_conn = sl__xstrdup(conn);
    const char *skip[16] = {"connector"};
    int n = 1;
    for (int d = 0; VENUE_DEFS[d].key; d++) skip[n++] = VENUE_DEFS[d].key;
    skip[n] = NULL;
    q->sink_conf = sl__sql_conf_of(A, sink, skip);
    if (A->failed || (strcmp(conn, "sqlite") && strcmp(conn, "postgres"))) return;
    if (!sl__kv_get((const char *const *)q->sink_conf, "table"))
        q->sink_conf = sql_kv_push(q->sink_conf, "table", sink->name);
    if (!sl__kv_get((const char *const *)q->sink_conf, "mode"))
        q->sink_conf = sql_kv_push(q->sink_conf, "mode", "upsert");
    const char *mode = sl__kv_get((const char *const *)q->sink_conf, "mode");
    if (strcmp(mode, "upsert") || sl__kv_get((const char *const *)q->sink_conf, "key")) return;
    char key[256] = "";
    for (int k = 0; KEY_COLS[k]; k++) {
        int i = 0;
        while (i < sel->nitems && strcmp(OUT_COLS[v->map[i]], KEY_COLS[k])) i++;
        if (i == sel->nitems) {
            sl__sql_fail(A, sink->with_line, sink->with_col, "mode 'upsert' keys a venue "
                         "report by (venue, report, slice_start, age_band, gender): the SELECT "
                         "must show '%s' (or set key = '...', or mode = 'insert')",
                         KEY_COLS[k]);
            return;
        }
        if (k) strncat(key, ",", sizeof key - strlen(key) - 1);
        strncat(key, names[i], sizeof key - strlen(key) - 1);
    }
    q->sink_conf = sql_kv_push(q->sink_conf, "key", key);
}

void sl__sql_venue_analyze(actx *A, const sql_select *sel, char **names)
{
    sl_sql *q = A->q;
    if (sel->having) {
        sl__sql_fail(A, sel->having->line, sel->having->col, "HAVING is not supported in a "
                     "venue report: k_anonymity decides which groups are published");
        return;
    }
    struct sql_venue *v = sl__xcalloc(1, sizeof *v);
    q->venue = v;
    for (int j = 0; j < sel->njoins && j < SQL_MAX_JOINS && !A->failed; j++) {
        if (sel->joins[j].stream) {
            sl__sql_fail(A, sel->joins[j].line, sel->joins[j].col, "a venue report joins "
                         "lookup tables only");
            return;
        }
        q->njoins = j + 1;
        sl__sql_join(A, &sel->joins[j], j);
    }
    if (!A->failed && sel->where) where_clause(A, sel);
    if (!A->failed) group_by(A, v, sel);
    if (!A->failed) select_list(A, v, sel, names);
    if (!A->failed) sink_opts(A, v, sel, names);
    if (!A->failed && q->where) where_slots(A);
    if (A->failed) return;
    /* blurred times can be up to B earlier: the watermark waits B longer */
    v->wm_delay_user = q->wm_delay;
    q->wm_delay += v->o.blur_ms;
}

int sl__sql_venue_load(sl_sql *q, char *err, size_t errsz)
{
    struct sql_venue *v = q->venue;
    if (v->venues) return 0;
    v->venues = sl_venues_load(v->venues_path, err, errsz);
    if (!v->venues) return SL_EINVAL;
    if (v->share_path && sl_venues_market_share(v->venues, v->share_path, err, errsz)) {
        sl_venues_free(v->venues);
        v->venues = NULL;
        return SL_EINVAL;
    }
    return 0;
}

const sql_stmt *sl__sql_venue_table(const sl_sql *q) { return q->venue->tab; }

sl_stream *sl__sql_venue_build(const sl_sql *q, sl_stream *s)
{
    const struct sql_venue *v = q->venue;
    if (v->o.blur_ms > 0)
        s = sl_stream_blur_time(s, v->time_col, v->sub_col, v->o.blur_ms, v->o.blur_bucket_ms,
                                q->keyring);
    const sl_venue_report_spec spec = {
        .sub_col = v->sub_col, .cell_col = v->cell_col, .birth_col = v->birth_col,
        .gender_col = v->gender_col, .k = v->o.k, .emit_every_ms = v->o.emit_every_ms,
        .slice_ms = v->o.slice_ms, .lateness_ms = v->o.lateness_ms, .round_to = v->o.round_to};
    return sl_stream_venue_report(s, v->venues, &spec);
}

size_t sl__sql_venue_explain(const sl_sql *q, int stage, char *buf, size_t size)
{
    const struct sql_venue *v = q->venue;
    int n = 0;
    if (v->o.blur_ms > 0)
        n += snprintf(buf + n, size - (size_t)n, "  blur_time %s +-%lld ms uniform (keyed PRF "
                      "of %s and %lld ms bucket; watermark delay %lld + %lld ms)\n",
                      v->time_col, (long long)v->o.blur_ms, v->sub_col,
                      (long long)v->o.blur_bucket_ms, (long long)v->wm_delay_user,
                      (long long)v->o.blur_ms);
    if ((size_t)n >= size) return size;
    n += snprintf(buf + n, size - (size_t)n,
                  "  venue_assign: one row per venue of %s (%s%s%s) whose cells hold %s and "
                  "whose time holds %s\n"
                  "stage %d: keyed by venue\n"
                  "  venue_report: distinct pseudonymised %s per venue and age band (AGE_BAND(%s) at the "
                  "venue's start)%s%s; early firings every %lld ms (cumulative), final row "
                  "at end + %lld ms, slices of %lld ms; k = %lld on the raw count, a release "
                  "only when >= k joined since the last; extrapolated rounded to %lld\n"
                  "    state per venue: pseudonyms seen (first and last time, group)\n",
                  v->tab->name, v->venues_path, v->share_path ? ", market share " : "",
                  v->share_path ? v->share_path : "", v->cell_col, v->time_col, stage,
                  v->sub_col, v->birth_col, v->gender_col ? " and " : "",
                  v->gender_col ? v->gender_col : "", (long long)v->o.emit_every_ms,
                  (long long)v->o.lateness_ms, (long long)v->o.slice_ms, (long long)v->o.k,
                  (long long)v->o.round_to);
    return (size_t)n < size ? (size_t)n : size;
}
