/* analyze.h — shared between the two halves of the SQL analyser:
 * analyze.c (names, types, expressions, joins, settings) and lower.c (the
 * query cut into operators, window, k-anonymity, sink). Private to
 * src/sql/. */
#ifndef SL_SQL_ANALYZE_H
#define SL_SQL_ANALYZE_H

#include "sql/sql.h"

typedef enum { ST_PRE, ST_POST } stage;

typedef struct {
    sl_sql *q;
    char *err;
    size_t errsz;
    bool failed;
    const sql_select *sel;
    const char *clause;   /* "WHERE", "GROUP BY", ... for messages */
    /* post stage */
    sql_expr **gkeys;     /* group key expressions (AST, borrowed) */
    int ngkeys;
    char **gnames;        /* their pre-map column names */
    sl_type *gtypes;
    sql_expr *agg_args[SQL_MAX_AGGS]; /* bound pre-stage inputs, owned */
    const sql_expr *agg_ast[SQL_MAX_AGGS];
    int nagg_args;
    char *agg_arg_name[SQL_MAX_AGGS];
    bool tumble;          /* window_start is known before the window */
    bool in_pseudo;
} actx;

void sl__sql_fail(actx *A, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
char *sl__sql_fmt_expr(const sql_expr *e);
/* ${name} and ${name:-default} substituted; NULL after an error. */
char *sl__sql_subst(actx *A, const char *v, int line, int col);
const sql_opt *sl__sql_opt_find(const sql_stmt *st, const char *key);
const sql_stmt *sl__sql_find_stmt(sl_sql *q, sql_skind k, const char *name);
sl_schema *sl__sql_make_schema(actx *A, const sql_stmt *st);
void sl__sql_add_pseudo(actx *A, const char *col);
/* Binds and types an expression at a stage; NULL after an error. */
sql_expr *sl__sql_bind(actx *A, const sql_expr *e, stage st, int joins_visible);
const char *sl__sql_connector(actx *A, const sql_stmt *st, const char *const *allowed,
                              const char *what);
char **sl__sql_conf_of(actx *A, const sql_stmt *st, const char *const *skip);
void sl__sql_join(actx *A, const sql_join *j, int idx);
void sl__sql_settings(actx *A);

/* ijoin.c: a stream self-join (FROM s AS a JOIN s AS b ON ...), analysed
 * into q->ij and q->post; built and explained by plan.c. */
struct sql_ij;
void sl__sql_ij_analyze(actx *A, const sql_select *sel, char **names);
void sl__sql_ij_free(struct sql_ij *ij);
sl_stream *sl__sql_ij_build(const sl_sql *q, sl_stream *s);
size_t sl__sql_ij_explain(const sl_sql *q, int stage, char *buf, size_t size);

/* venue.c: a venue report (GROUP BY VENUE(time, cell, venues), ...),
 * analysed into q->venue, q->post and the sink; the venue file is loaded
 * by sl__sql_venue_load at build time and owned by q->venue. */
struct sql_venue;
bool sl__sql_venue_query(const sql_select *sel);
void sl__sql_venue_analyze(actx *A, const sql_select *sel, char **names);
void sl__sql_venue_free(struct sql_venue *v);
int sl__sql_venue_load(sl_sql *q, char *err, size_t errsz);
const sql_stmt *sl__sql_venue_table(const sl_sql *q);
sl_stream *sl__sql_venue_build(const sl_sql *q, sl_stream *s);
size_t sl__sql_venue_explain(const sl_sql *q, int stage, char *buf, size_t size);

#endif
