/* sql.h — the SQL front end's internal interface: tokens, the syntax tree,
 * the analysed plan and the vectorised expression evaluator. The public
 * entry points (sl_sql_*) are in sluice.h; this header is shared only by
 * the files of src/sql/. */
#ifndef SL_SQL_H
#define SL_SQL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice.h"

/* ---- tokens (lexer.c) ---------------------------------------------------- */
typedef enum {
    T_EOF = 0,
    T_IDENT,  /* bare or "quoted" identifier */
    T_STRING, /* 'text' */
    T_INT,
    T_FLOAT,
    T_LPAREN, T_RPAREN, T_COMMA, T_SEMI, T_DOT, T_STAR,
    T_PLUS, T_MINUS, T_SLASH, T_PERCENT, T_CONCAT,
    T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE,
    T_ERROR /* the lexer failed; the message is in the token text */
} sql_tok_kind;

typedef struct {
    sql_tok_kind kind;
    const char *p; /* start in the source text */
    int len;
    int line, col; /* 1-based */
    bool quoted;   /* "identifier": case-sensitive, never a keyword */
} sql_tok;

/* Splits text into tokens (the last is T_EOF or T_ERROR). Caller frees
 * *toks. On T_ERROR, *err receives "line:col: message". */
int sql_lex(const char *text, sql_tok **toks, int *ntoks, char *err,
            size_t errsz);
const char *sql_tok_name(sql_tok_kind k); /* "')'", "a string", ... */

/* ---- syntax tree (parser.c) ---------------------------------------------- */
typedef enum {
    E_COL,      /* [qual.]name; after binding: slot = column index */
    E_LIT,      /* literal (lnull for NULL) */
    E_NEG,      /* -a */
    E_NOT,      /* NOT a */
    E_BIN,      /* a op b: op is a token kind, or T_IDENT with name AND/OR/LIKE */
    E_FUNC,     /* name(args): scalar, aggregate, window or user function */
    E_CASE,     /* args: [operand?] when,then ... [else]; has_operand/has_else */
    E_CAST,     /* CAST(a AS type) */
    E_ISNULL,   /* a IS [NOT] NULL (negate) */
    E_IN,       /* a [NOT] IN (args[1..]) */
    E_BETWEEN,  /* a [NOT] BETWEEN b AND c */
    E_STAR      /* * in COUNT(*) */
} sql_ekind;

typedef struct sql_expr {
    sql_ekind k;
    int line, col;
    int op;          /* E_BIN: operator (see sql_binop) */
    char *name;      /* column or function name (as written) */
    char *qual;      /* column qualifier, or NULL */
    bool distinct;   /* COUNT(DISTINCT ...) */
    bool negate;     /* IS NOT NULL, NOT IN, NOT BETWEEN, NOT LIKE */
    bool has_operand, has_else; /* CASE */
    struct sql_expr **args;
    int nargs;
    /* literals: type and value; intervals are BIGINT milliseconds */
    sl_type lt;
    bool lnull, interval;
    int64_t li;
    double lf;
    char *ls;
    /* binding (analyze.c) */
    sl_type type;
    bool is_null_lit; /* a NULL literal: fits any type */
    int slot;         /* E_COL: input column; E_FUNC: builtin or udf id */
    bool udf;
    sl_type cast_to;
} sql_expr;

/* Binary operators. */
enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_MOD, OP_CONCAT, OP_EQ, OP_NE,
       OP_LT, OP_LE, OP_GT, OP_GE, OP_AND, OP_OR, OP_LIKE };

typedef struct {
    char *key, *value;
    int line, col, vline, vcol;
} sql_opt;

typedef struct {
    char *name;
    sl_type type;
    int line, col;
    char **domain; /* CHECK (c IN ('a', ...)), NULL-terminated, or NULL */
} sql_coldef;

typedef struct {
    sql_expr *expr;
    char *alias;
    int line, col;
} sql_item;

typedef struct {
    char *table, *alias; /* the lookup table and its alias */
    int line, col;
    sql_expr *asof;      /* FOR SYSTEM_TIME AS OF expr (checked, not used) */
    sql_expr *on;        /* t.key = expr */
    bool stream;         /* JOIN source ON ...: an interval join (ijoin.c) */
} sql_join;

typedef struct {
    sql_item *items;
    int nitems;
    char *from, *from_alias;
    int from_line, from_col;
    sql_join *joins;
    int njoins;
    sql_expr *where;
    sql_expr **group;
    int ngroup;
    sql_expr *having;
} sql_select;

typedef enum { S_SET, S_SOURCE, S_TABLE, S_SINK } sql_skind;

typedef struct {
    sql_skind k;
    int line, col;
    char *name;
    int name_line, name_col;
    sql_coldef *cols;
    int ncols;
    char *wm_col;      /* WATERMARK FOR wm_col AS wm_col - INTERVAL */
    int64_t wm_delay;  /* ms */
    int wm_line, wm_col_pos;
    char *pk;          /* PRIMARY KEY (pk) */
    int pk_line, pk_col;
    sql_opt *opts;     /* WITH (...); S_SET: one option */
    int nopts;
    int with_line, with_col;
    sql_select *sel;   /* S_SINK */
} sql_stmt;

typedef struct {
    sql_stmt *v;
    int n;
    void **pool; /* every allocation of the tree, freed together */
    int npool, cappool;
} sql_script;

/* Parses a whole script. Returns 0, or SL_EPARSE with "line:col: message"
 * in err and the position in eline and ecol. */
int sql_parse(const char *text, sql_script *out, char *err, size_t errsz,
              int *eline, int *ecol);
void sql_script_free(sql_script *s);
void sql_expr_free(sql_expr *e);
sql_expr *sql_expr_clone(const sql_expr *e);
bool sql_expr_equal(const sql_expr *a, const sql_expr *b);
/* Writes the expression as SQL text (for explain and messages). */
void sql_expr_print(const sql_expr *e, char *buf, size_t size);
bool sql_ieq(const char *a, const char *b); /* ASCII case-insensitive */

/* ---- functions (funcs.c) ------------------------------------------------- */
typedef enum { F_SCALAR, F_AGG, F_WINDOW, F_SPECIAL } sql_fkind;
typedef struct {
    const char *name;
    sql_fkind kind;
    int min_args, max_args; /* max -1: any */
    const char *sig;        /* for docs and messages */
} sql_fdef;
/* Built-in function by name (case-insensitive), or NULL; *id its index. */
const sql_fdef *sql_func_find(const char *name, int *id);
const sql_fdef *sql_func_at(int id);
int sql_func_count(void);
/* Builtin ids the analyser and evaluator need by name. */
enum { FN_COUNT, FN_SUM, FN_MIN, FN_MAX, FN_AVG, FN_APPROX_COUNT_DISTINCT,
       FN_HISTOGRAM, FN_TUMBLE, FN_HOP, FN_PSEUDONYMIZE, FN_COALESCE,
       FN_UPPER, FN_LOWER, FN_LENGTH, FN_CHAR_LENGTH, FN_SUBSTR,
       FN_SUBSTRING, FN_CONCAT, FN_TRIM, FN_REPLACE, FN_ABS, FN_FLOOR,
       FN_CEIL, FN_ROUND, FN_MOD, FN_AGE_YEARS, FN_NULLIF, FN_APPROX_PERCENTILE,
       FN_SESSION, FN_N };

/* Completed years from birth to at (UTC dates), like DESIGN's age. */
int64_t sql_age_years(int64_t birth_ms, int64_t at_ms);

/* ---- user-defined functions ---------------------------------------------- */
typedef struct {
    char *name;
    sl_type ret;
    sl_type args[8];
    int nargs;
    sl_sql_udf fn;
    void *udata;
} sql_udf;

/* ---- evaluator (eval.c) --------------------------------------------------- */
/* A compiled list of bound expressions over one input schema, evaluated a
 * batch at a time. Thread-safe: scratch memory lives per call. */
typedef struct sql_prog {
    sql_expr **exprs;  /* bound, owned */
    int n;
    const sql_udf *udfs; /* borrowed from the sl_sql */
    sl_schema *out;    /* map output schema (owned), NULL for a filter */
    char *name;
} sql_prog;

int sql_prog_map(const sl_batch *in, sl_batch *out, void *udata);
void sql_prog_filter(const sl_batch *in, uint8_t *keep, void *udata);
void sql_prog_free(sql_prog *p);

/* ---- suggestions --------------------------------------------------------- */
/* The candidate nearest to name (edit distance, case-insensitive) if it is
 * close enough to be a likely typo, else NULL. */
const char *sql_nearest(const char *name, const char *const *cands, int n);

#endif

/* ---- the compiled plan (analyze.c builds it, plan.c runs and explains it) */
#define SQL_MAX_JOINS 8
#define SQL_MAX_AGGS 32

typedef struct {
    const sql_stmt *tab;  /* CREATE TABLE */
    char *alias;
    sl_schema *schema;
    char **conf;          /* NULL-terminated key/value pairs, owned */
    bool pseudo;          /* keyed by a pseudonymised identifier */
    char *stream_key;     /* the stream column matched with the key */
    char *on_text;
    char **cols;          /* table columns appended, owned */
    int ncols;
    sl_table *table;      /* loaded by sl_sql_build */
} sql_pjoin;

struct sl_sql {
    sql_udf *udfs;
    int nudfs;
    const sl_udaf **udafs; /* borrowed (sl_sql_add_aggregate) */
    int nudafs;
    char **vars; /* key, value, key, value... (sl_sql_set) */
    int nvars;
    bool *var_used;
    /* compile */
    char *file;
    sql_script script;
    bool compiled;
    int eline, ecol;
    char **jobkv; /* job keys in order: SET statements then overrides */
    int njobkv;
    char *key_file;
    /* the pipeline */
    const sql_stmt *src;
    char *src_alias;
    sl_schema *src_schema;
    char **src_conf;
    char *time_col;
    int64_t wm_delay;
    char *pseudo[8];
    int npseudo;
    char *pseudo_keyid;
    sql_pjoin joins[SQL_MAX_JOINS];
    int njoins;
    sql_prog *where;
    bool where_early;
    char *where_text;
    bool agg;
    sl_window_spec win;
    int64_t session_gap; /* > 0: GROUP BY SESSION(t, gap), win unused but lateness */
    sql_prog *pre;
    char **keys; /* pre-map key columns, NULL-terminated */
    int nkeys;
    sl_agg_spec aggs[SQL_MAX_AGGS];
    char *agg_text[SQL_MAX_AGGS];
    int naggs;
    sql_prog *having;
    char *having_text;
    sql_prog *post; /* NULL when the window output is already the result */
    char *k_col;
    int64_t k;
    /* differential privacy (sink options dp_*); dp_sub NULL = off */
    char *dp_sub;
    char **dp_cols; /* NULL-terminated SELECT names of the noised counts */
    char *dp_key;
    sl_dp_spec dp;
    const sql_stmt *sink;
    char *sink_conn;
    char **sink_conf;
    sl_keyring *keyring;
    struct sql_ij *ij; /* a stream self-join (interval join), or NULL */
    struct sql_venue *venue; /* a venue report (GROUP BY VENUE), or NULL */
    /* the source-only conjuncts of a WHERE that also reads joined columns,
     * applied before the joins (lower.c split_where), or NULL */
    sql_prog *where_pre;
    char *where_pre_text;
};

/* analyze.c */
int sql_analyze(sl_sql *q, char *err, size_t errsz);
void sql_plan_reset(sl_sql *q);
char **sql_kv_push(char **kv, const char *k, const char *v);
void sql_kv_free(char **kv);
