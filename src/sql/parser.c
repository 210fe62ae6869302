/* parser.c — recursive-descent parser of sluice's SQL dialect (grammar in
 * docs/sql.md) into the syntax tree of sql.h. It checks syntax only; names
 * and types are the analyser's. Every node of a script is allocated from
 * the script's pool, so an error at any depth needs no unwinding: the first
 * error is kept ("line:col: expected X, found Y") and parsing stops. */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "sql/sql.h"

typedef struct {
    sql_tok *t;
    int n, i;
    sql_script *s;
    char *err;
    size_t errsz;
    bool failed;
    int eline, ecol;
    int depth;
} parser;

bool sql_ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
    return *a == *b;
}

static void *palloc(parser *P, size_t n)
{
    sql_script *s = P->s;
    if (s->npool == s->cappool) {
        s->cappool = s->cappool ? s->cappool * 2 : 64;
        s->pool = sl__xrealloc(s->pool, (size_t)s->cappool * sizeof *s->pool);
    }
    void *p = sl__xcalloc(1, n);
    s->pool[s->npool++] = p;
    return p;
}

static char *pstrndup(parser *P, const char *p, size_t n)
{
    char *r = palloc(P, n + 1);
    memcpy(r, p, n);
    return r;
}

static sql_tok *cur(parser *P) { return &P->t[P->i]; }

static void fail_at(parser *P, const sql_tok *k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_at(parser *P, const sql_tok *k, const char *fmt, ...)
{
    if (P->failed) return;
    P->failed = true;
    P->eline = k->line;
    P->ecol = k->col;
    int off = snprintf(P->err, P->errsz, "%d:%d: ", k->line, k->col);
    if (off < 0 || (size_t)off >= P->errsz) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(P->err + off, P->errsz - (size_t)off, fmt, ap);
    va_end(ap);
}

/* "'WITH'" or "end of input" for messages. */
static const char *found(const sql_tok *k, char *buf, size_t n)
{
    if (k->kind == T_EOF) return "end of input";
    if (k->kind == T_STRING) snprintf(buf, n, "string %.*s", k->len > 40 ? 40 : k->len, k->p);
    else snprintf(buf, n, "'%.*s'", k->len > 40 ? 40 : k->len, k->p);
    return buf;
}

static void expected(parser *P, const char *what)
{
    char b[64];
    fail_at(P, cur(P), "expected %s, found %s", what, found(cur(P), b, sizeof b));
}

static bool is_kw(const sql_tok *k, const char *kw)
{
    if (k->kind != T_IDENT || k->quoted || (int)strlen(kw) != k->len) return false;
    for (int i = 0; i < k->len; i++)
        if (toupper((unsigned char)k->p[i]) != kw[i]) return false;
    return true;
}

static bool accept_kw(parser *P, const char *kw)
{
    if (P->failed || !is_kw(cur(P), kw)) return false;
    P->i++;
    return true;
}

static bool expect_kw(parser *P, const char *kw, const char *ctx)
{
    if (accept_kw(P, kw)) return true;
    char what[96];
    snprintf(what, sizeof what, "%s%s", kw, ctx);
    expected(P, what);
    return false;
}

static bool accept(parser *P, sql_tok_kind k)
{
    if (P->failed || cur(P)->kind != k) return false;
    P->i++;
    return true;
}

static bool expect(parser *P, sql_tok_kind k, const char *ctx)
{
    if (accept(P, k)) return true;
    char what[96];
    snprintf(what, sizeof what, "%s%s", sql_tok_name(k), ctx);
    expected(P, what);
    return false;
}

/* Words that end an expression or a list, so never read as aliases. */
static const char *const reserved[] = {
    "SELECT", "FROM", "WHERE", "GROUP", "BY", "HAVING", "JOIN", "LEFT", "INNER",
    "ON", "AS", "AND", "OR", "NOT", "IS", "IN", "BETWEEN", "LIKE", "CASE",
    "WHEN", "THEN", "ELSE", "END", "NULL", "TRUE", "FALSE", "WITH", "FOR",
    "CREATE", "SET", "DISTINCT", "INTERVAL", "CAST", "ORDER", "LIMIT", "UNION",
    NULL};

static bool is_reserved(const sql_tok *k)
{
    for (int i = 0; reserved[i]; i++)
        if (is_kw(k, reserved[i])) return true;
    return false;
}

static char *ident(parser *P, const char *what, int *line, int *col)
{
    sql_tok *k = cur(P);
    if (P->failed) return NULL;
    if (k->kind != T_IDENT || (!k->quoted && is_reserved(k))) {
        expected(P, what);
        return NULL;
    }
    if (line) *line = k->line;
    if (col) *col = k->col;
    P->i++;
    return pstrndup(P, k->p, (size_t)k->len);
}

/* The text of a string literal with '' unescaped. */
static char *string_value(parser *P, const sql_tok *k)
{
    char *r = palloc(P, (size_t)k->len);
    size_t o = 0;
    for (int i = 1; i < k->len - 1; i++) {
        r[o++] = k->p[i];
        if (k->p[i] == '\'') i++;
    }
    r[o] = 0;
    return r;
}

static sql_expr *node(parser *P, sql_ekind kind, const sql_tok *at)
{
    sql_expr *e = palloc(P, sizeof *e);
    e->k = kind;
    e->line = at->line;
    e->col = at->col;
    return e;
}

static void add_arg(parser *P, sql_expr *e, sql_expr *a)
{
    sql_expr **v = palloc(P, sizeof(*v) * (size_t)(e->nargs + 1));
    if (e->nargs) memcpy(v, e->args, sizeof(*v) * (size_t)e->nargs);
    v[e->nargs++] = a;
    e->args = v;
}

static sql_expr *expr(parser *P);

/* Parses the unit of INTERVAL 'n' UNIT; returns its length in ms or 0. */
static int64_t interval_unit(parser *P)
{
    static const struct { const char *kw; int64_t ms; } units[] = {
        {"MILLISECOND", 1}, {"MILLISECONDS", 1}, {"SECOND", 1000},
        {"SECONDS", 1000}, {"MINUTE", 60000}, {"MINUTES", 60000},
        {"HOUR", 3600000}, {"HOURS", 3600000}, {"DAY", 86400000},
        {"DAYS", 86400000}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (accept_kw(P, units[i].kw)) return units[i].ms;
    expected(P, "a time unit (MILLISECOND, SECOND, MINUTE, HOUR or DAY)");
    return 0;
}

static sql_expr *interval(parser *P, const sql_tok *at)
{
    sql_tok *v = cur(P);
    int64_t n = 0;
    if (v->kind == T_STRING || v->kind == T_INT) {
        char buf[32];
        const char *s = v->p;
        int len = v->len;
        if (v->kind == T_STRING) { s++; len -= 2; }
        snprintf(buf, sizeof buf, "%.*s", len < 31 ? len : 31, s);
        if (len > 18 || sl__parse_i64(buf, &n) || n < 0) {
            fail_at(P, v, "interval length must be a non-negative integer, "
                    "found %.*s", v->len, v->p);
            return NULL;
        }
        P->i++;
    } else {
        expected(P, "the interval's length, as in INTERVAL '10' SECOND");
        return NULL;
    }
    int64_t ms = interval_unit(P);
    if (P->failed) return NULL;
    sql_expr *e = node(P, E_LIT, at);
    e->lt = SL_INT64;
    e->interval = true;
    e->li = n * ms;
    return e;
}

static bool parse_type(parser *P, sl_type *t)
{
    static const struct { const char *kw; sl_type t; } types[] = {
        {"BIGINT", SL_INT64}, {"INT", SL_INT64}, {"INTEGER", SL_INT64},
        {"SMALLINT", SL_INT64}, {"TINYINT", SL_INT64}, {"DOUBLE", SL_FLOAT64},
        {"FLOAT", SL_FLOAT64}, {"REAL", SL_FLOAT64}, {"DECIMAL", SL_FLOAT64},
        {"BOOLEAN", SL_BOOL}, {"BOOL", SL_BOOL}, {"VARCHAR", SL_STRING},
        {"STRING", SL_STRING}, {"TEXT", SL_STRING}, {"CHAR", SL_STRING},
        {"TIMESTAMP", SL_TIMESTAMP}, {"TIMESTAMP_LTZ", SL_TIMESTAMP},
        {"DATE", SL_TIMESTAMP}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (accept_kw(P, types[i].kw)) {
            *t = types[i].t;
            if (types[i].t == SL_FLOAT64 && is_kw(cur(P), "PRECISION")) P->i++;
            if (accept(P, T_LPAREN)) { /* VARCHAR(20), TIMESTAMP(3): ignored */
                expect(P, T_INT, " in the type's length");
                if (accept(P, T_COMMA)) expect(P, T_INT, " in the type's scale");
                expect(P, T_RPAREN, " after the type's length");
            }
            return !P->failed;
        }
    }
    expected(P, "a type (BIGINT, DOUBLE, BOOLEAN, VARCHAR or TIMESTAMP)");
    return false;
}

static sql_expr *primary(parser *P)
{
    sql_tok *k = cur(P);
    if (P->failed) return NULL;
    if (++P->depth > 200) {
        fail_at(P, k, "expression nested too deeply");
        return NULL;
    }
    sql_expr *e = NULL;
    switch (k->kind) {
    case T_INT:
    case T_FLOAT: {
        e = node(P, E_LIT, k);
        char buf[64];
        snprintf(buf, sizeof buf, "%.*s", k->len < 63 ? k->len : 63, k->p);
        if (k->kind == T_INT && k->len < 19 && !sl__parse_i64(buf, &e->li)) {
            e->lt = SL_INT64;
        } else {
            e->lt = SL_FLOAT64;
            e->lf = strtod(buf, NULL);
        }
        P->i++;
        break;
    }
    case T_STRING:
        e = node(P, E_LIT, k);
        e->lt = SL_STRING;
        e->ls = string_value(P, k);
        P->i++;
        break;
    case T_LPAREN:
        P->i++;
        e = expr(P);
        expect(P, T_RPAREN, " to close '('");
        break;
    case T_STAR:
        fail_at(P, k, "'*' is only allowed in COUNT(*)");
        break;
    case T_IDENT:
        if (!k->quoted) {
            if (accept_kw(P, "NULL")) {
                e = node(P, E_LIT, k);
                e->lnull = true;
                e->lt = SL_INT64;
                break;
            }
            if (accept_kw(P, "TRUE") || accept_kw(P, "FALSE")) {
                e = node(P, E_LIT, k);
                e->lt = SL_BOOL;
                e->li = is_kw(k, "TRUE");
                break;
            }
            if (accept_kw(P, "INTERVAL")) { e = interval(P, k); break; }
            if ((is_kw(k, "TIMESTAMP") || is_kw(k, "DATE")) &&
                P->t[P->i + 1].kind == T_STRING) {
                P->i++;
                sql_tok *v = cur(P);
                P->i++;
                e = node(P, E_LIT, k);
                e->lt = SL_TIMESTAMP;
                char *s = string_value(P, v);
                if (sl__parse_ts(s, strlen(s), &e->li)) {
                    fail_at(P, v, "malformed timestamp %.*s (use 'YYYY-MM-DD "
                            "HH:MM:SS' or epoch milliseconds)", v->len, v->p);
                    return NULL;
                }
                break;
            }
            if (accept_kw(P, "CASE")) {
                e = node(P, E_CASE, k);
                if (!is_kw(cur(P), "WHEN")) {
                    e->has_operand = true;
                    add_arg(P, e, expr(P));
                }
                if (!is_kw(cur(P), "WHEN")) {
                    expected(P, "WHEN in CASE");
                    return NULL;
                }
                while (accept_kw(P, "WHEN")) {
                    add_arg(P, e, expr(P));
                    expect_kw(P, "THEN", " after the WHEN condition");
                    add_arg(P, e, expr(P));
                }
                if (accept_kw(P, "ELSE")) {
                    e->has_else = true;
                    add_arg(P, e, expr(P));
                }
                expect_kw(P, "END", " to close CASE");
                break;
            }
            if (accept_kw(P, "CAST")) {
                e = node(P, E_CAST, k);
                expect(P, T_LPAREN, " after CAST");
                add_arg(P, e, expr(P));
                expect_kw(P, "AS", " in CAST(value AS type)");
                if (!P->failed) parse_type(P, &e->cast_to);
                expect(P, T_RPAREN, " to close CAST(");
                break;
            }
            if (is_reserved(k)) {
                expected(P, "an expression");
                return NULL;
            }
        }
        P->i++;
        if (accept(P, T_LPAREN)) {
            e = node(P, E_FUNC, k);
            e->name = pstrndup(P, k->p, (size_t)k->len);
            if (accept(P, T_RPAREN)) break;
            if (accept_kw(P, "DISTINCT")) e->distinct = true;
            if (cur(P)->kind == T_STAR && P->t[P->i + 1].kind == T_RPAREN) {
                add_arg(P, e, node(P, E_STAR, cur(P)));
                P->i++;
            } else {
                do add_arg(P, e, expr(P)); while (accept(P, T_COMMA));
            }
            expect(P, T_RPAREN, " to close the argument list");
            break;
        }
        e = node(P, E_COL, k);
        e->name = pstrndup(P, k->p, (size_t)k->len);
        if (accept(P, T_DOT)) {
            e->qual = e->name;
            e->name = ident(P, "a column name after '.'", NULL, NULL);
        }
        break;
    default:
        expected(P, "an expression");
        break;
    }
    P->depth--;
    return P->failed ? NULL : e;
}

static sql_expr *unary(parser *P)
{
    sql_tok *k = cur(P);
    if (accept(P, T_MINUS)) {
        if (++P->depth > 200) {
            fail_at(P, k, "expression nested too deeply");
            return NULL;
        }
        sql_expr *e = node(P, E_NEG, k);
        add_arg(P, e, unary(P));
        P->depth--;
        return P->failed ? NULL : e;
    }
    if (accept(P, T_PLUS)) return unary(P);
    return primary(P);
}

static sql_expr *binary(parser *P, int op, const sql_tok *at, sql_expr *l,
                        sql_expr *r)
{
    if (P->failed) return NULL;
    sql_expr *e = node(P, E_BIN, at);
    e->op = op;
    add_arg(P, e, l);
    add_arg(P, e, r);
    return e;
}

static sql_expr *mul(parser *P)
{
    sql_expr *l = unary(P);
    for (;;) {
        sql_tok *k = cur(P);
        int op = k->kind == T_STAR ? OP_MUL : k->kind == T_SLASH ? OP_DIV
               : k->kind == T_PERCENT ? OP_MOD : 0;
        if (!op || P->failed) return l;
        P->i++;
        l = binary(P, op, k, l, unary(P));
    }
}

static sql_expr *add(parser *P)
{
    sql_expr *l = mul(P);
    for (;;) {
        sql_tok *k = cur(P);
        int op = k->kind == T_PLUS ? OP_ADD : k->kind == T_MINUS ? OP_SUB
               : k->kind == T_CONCAT ? OP_CONCAT : 0;
        if (!op || P->failed) return l;
        P->i++;
        l = binary(P, op, k, l, mul(P));
    }
}

static sql_expr *cmp(parser *P)
{
    sql_expr *l = add(P);
    if (P->failed) return NULL;
    sql_tok *k = cur(P);
    int op = 0;
    switch (k->kind) {
    case T_EQ: op = OP_EQ; break;
    case T_NE: op = OP_NE; break;
    case T_LT: op = OP_LT; break;
    case T_LE: op = OP_LE; break;
    case T_GT: op = OP_GT; break;
    case T_GE: op = OP_GE; break;
    default: break;
    }
    if (op) {
        P->i++;
        return binary(P, op, k, l, add(P));
    }
    if (accept_kw(P, "IS")) {
        sql_expr *e = node(P, E_ISNULL, k);
        e->negate = accept_kw(P, "NOT");
        expect_kw(P, "NULL", " after IS [NOT]");
        add_arg(P, e, l);
        return P->failed ? NULL : e;
    }
    bool neg = false;
    if (is_kw(k, "NOT") && (is_kw(&P->t[P->i + 1], "IN") ||
                            is_kw(&P->t[P->i + 1], "BETWEEN") ||
                            is_kw(&P->t[P->i + 1], "LIKE"))) {
        P->i++;
        neg = true;
    }
    sql_tok *kw = cur(P);
    if (accept_kw(P, "IN")) {
        sql_expr *e = node(P, E_IN, kw);
        e->negate = neg;
        add_arg(P, e, l);
        expect(P, T_LPAREN, " after IN");
        do add_arg(P, e, expr(P)); while (accept(P, T_COMMA));
        expect(P, T_RPAREN, " to close the IN list");
        return P->failed ? NULL : e;
    }
    if (accept_kw(P, "BETWEEN")) {
        sql_expr *e = node(P, E_BETWEEN, kw);
        e->negate = neg;
        add_arg(P, e, l);
        add_arg(P, e, add(P));
        expect_kw(P, "AND", " in BETWEEN low AND high");
        add_arg(P, e, add(P));
        return P->failed ? NULL : e;
    }
    if (accept_kw(P, "LIKE")) {
        sql_expr *e = binary(P, OP_LIKE, kw, l, add(P));
        if (e) e->negate = neg;
        return e;
    }
    return l;
}

static sql_expr *not_(parser *P)
{
    sql_tok *k = cur(P);
    if (accept_kw(P, "NOT")) {
        if (++P->depth > 200) {
            fail_at(P, k, "expression nested too deeply");
            return NULL;
        }
        sql_expr *e = node(P, E_NOT, k);
        add_arg(P, e, not_(P));
        P->depth--;
        return P->failed ? NULL : e;
    }
    return cmp(P);
}

static sql_expr *and_(parser *P)
{
    sql_expr *l = not_(P);
    for (;;) {
        sql_tok *k = cur(P);
        if (!accept_kw(P, "AND")) return l;
        l = binary(P, OP_AND, k, l, not_(P));
    }
}

static sql_expr *expr(parser *P)
{
    if (P->failed) return NULL;
    if (++P->depth > 200) {
        fail_at(P, cur(P), "expression nested too deeply");
        return NULL;
    }
    sql_expr *l = and_(P);
    for (;;) {
        sql_tok *k = cur(P);
        if (!accept_kw(P, "OR")) break;
        l = binary(P, OP_OR, k, l, and_(P));
    }
    P->depth--;
    return P->failed ? NULL : l;
}

/* WITH ( 'key' = 'value', ... ): keys are strings or dotted names. */
static void options(parser *P, sql_opt **out, int *n)
{
    expect(P, T_LPAREN, " after WITH");
    if (P->failed) return;
    do {
        sql_tok *k = cur(P);
        sql_opt o = {.line = k->line, .col = k->col};
        if (k->kind == T_STRING) {
            o.key = string_value(P, k);
            P->i++;
        } else if (k->kind == T_IDENT) {
            size_t len = 0;
            char buf[256];
            for (;;) {
                sql_tok *w = cur(P);
                if (w->kind != T_IDENT || len + (size_t)w->len + 2 > sizeof buf) {
                    expected(P, "an option name");
                    return;
                }
                memcpy(buf + len, w->p, (size_t)w->len);
                len += (size_t)w->len;
                P->i++;
                if (!accept(P, T_DOT)) break;
                buf[len++] = '.';
            }
            o.key = pstrndup(P, buf, len);
        } else {
            expected(P, "an option name such as 'connector'");
            return;
        }
        expect(P, T_EQ, " after the option name");
        sql_tok *v = cur(P);
        if (P->failed) return;
        o.vline = v->line;
        o.vcol = v->col;
        if (v->kind == T_STRING) o.value = string_value(P, v);
        else if (v->kind == T_INT || v->kind == T_FLOAT ||
                 (v->kind == T_IDENT && (is_kw(v, "TRUE") || is_kw(v, "FALSE"))))
            o.value = pstrndup(P, v->p, (size_t)v->len);
        else {
            expected(P, "the option's value (a string)");
            return;
        }
        P->i++;
        sql_opt *nv = palloc(P, sizeof(*nv) * (size_t)(*n + 1));
        if (*n) memcpy(nv, *out, sizeof(*nv) * (size_t)*n);
        nv[(*n)++] = o;
        *out = nv;
    } while (accept(P, T_COMMA));
    expect(P, T_RPAREN, " to close the WITH options");
}

static void add_col(parser *P, sql_stmt *st, sql_coldef c)
{
    sql_coldef *v = palloc(P, sizeof(*v) * (size_t)(st->ncols + 1));
    if (st->ncols) memcpy(v, st->cols, sizeof(*v) * (size_t)st->ncols);
    v[st->ncols++] = c;
    st->cols = v;
}

/* ( col TYPE [CHECK (col IN (...))], ..., [WATERMARK ...], [PRIMARY KEY (c)] ) */
static void column_list(parser *P, sql_stmt *st)
{
    expect(P, T_LPAREN, " after the name (the column list)");
    do {
        if (P->failed) return;
        sql_tok *k = cur(P);
        if (is_kw(k, "WATERMARK")) {
            P->i++;
            st->wm_line = k->line;
            st->wm_col_pos = k->col;
            expect_kw(P, "FOR", " after WATERMARK");
            st->wm_col = ident(P, "the time column after WATERMARK FOR", NULL, NULL);
            expect_kw(P, "AS", " in WATERMARK FOR col AS col - INTERVAL ...");
            sql_tok *c2 = cur(P);
            char *again = ident(P, "the time column", NULL, NULL);
            if (again && st->wm_col && !sql_ieq(again, st->wm_col)) {
                fail_at(P, c2, "the watermark must be '%s - INTERVAL ...'", st->wm_col);
                return;
            }
            if (accept(P, T_MINUS)) {
                sql_tok *ik = cur(P);
                expect_kw(P, "INTERVAL", " after '-' in the watermark");
                sql_expr *iv = P->failed ? NULL : interval(P, ik);
                if (iv) st->wm_delay = iv->li;
            }
            continue;
        }
        if (is_kw(k, "PRIMARY")) {
            P->i++;
            expect_kw(P, "KEY", " after PRIMARY");
            expect(P, T_LPAREN, " after PRIMARY KEY");
            st->pk = ident(P, "the key column", &st->pk_line, &st->pk_col);
            if (cur(P)->kind == T_COMMA) {
                fail_at(P, cur(P), "a lookup table has a one-column key");
                return;
            }
            expect(P, T_RPAREN, " after the key column");
            if (accept_kw(P, "NOT")) expect_kw(P, "ENFORCED", " after NOT");
            continue;
        }
        sql_coldef c = {0};
        c.name = ident(P, "a column name", &c.line, &c.col);
        if (P->failed || !parse_type(P, &c.type)) return;
        if (accept_kw(P, "CHECK")) {
            expect(P, T_LPAREN, " after CHECK");
            sql_tok *ck = cur(P);
            char *cn = ident(P, "the column name in CHECK (col IN (...))", NULL, NULL);
            if (cn && !sql_ieq(cn, c.name)) {
                fail_at(P, ck, "CHECK must name its own column '%s'", c.name);
                return;
            }
            expect_kw(P, "IN", " in CHECK (col IN (...))");
            expect(P, T_LPAREN, " after IN");
            int nd = 0;
            do {
                sql_tok *v = cur(P);
                if (!expect(P, T_STRING, " in the list of allowed values")) return;
                char **d = palloc(P, sizeof(*d) * (size_t)(nd + 2));
                if (nd) memcpy(d, c.domain, sizeof(*d) * (size_t)nd);
                d[nd++] = string_value(P, v);
                c.domain = d;
            } while (accept(P, T_COMMA));
            expect(P, T_RPAREN, " to close the IN list");
            expect(P, T_RPAREN, " to close CHECK (");
        }
        add_col(P, st, c);
    } while (accept(P, T_COMMA));
    expect(P, T_RPAREN, " or ',' in the column list");
}

static char *alias_opt(parser *P)
{
    if (accept_kw(P, "AS")) return ident(P, "an alias after AS", NULL, NULL);
    sql_tok *k = cur(P);
    if (k->kind == T_IDENT && (k->quoted || !is_reserved(k)))
        return ident(P, "an alias", NULL, NULL);
    return NULL;
}

/* Whether a CREATE TABLE of that name came before (JOIN of a table is a
 * lookup join, of anything else a stream join). */
static bool declared_table(const parser *P, const char *name)
{
    for (int i = 0; i < P->s->n; i++)
        if (P->s->v[i].k == S_TABLE && sql_ieq(P->s->v[i].name, name)) return true;
    return false;
}

static sql_select *select_(parser *P)
{
    sql_select *s = palloc(P, sizeof *s);
    expect_kw(P, "SELECT", " after AS");
    do {
        if (P->failed) return NULL;
        sql_item it = {.line = cur(P)->line, .col = cur(P)->col};
        if (cur(P)->kind == T_STAR) {
            fail_at(P, cur(P), "SELECT * is not supported: name the columns");
            return NULL;
        }
        it.expr = expr(P);
        it.alias = alias_opt(P);
        sql_item *v = palloc(P, sizeof(*v) * (size_t)(s->nitems + 1));
        if (s->nitems) memcpy(v, s->items, sizeof(*v) * (size_t)s->nitems);
        v[s->nitems++] = it;
        s->items = v;
    } while (accept(P, T_COMMA));
    if (!expect_kw(P, "FROM", " or ',' after the SELECT list")) return NULL;
    s->from = ident(P, "a source name after FROM", &s->from_line, &s->from_col);
    s->from_alias = alias_opt(P);
    for (;;) {
        sql_tok *k = cur(P);
        if (P->failed) return NULL;
        bool left = is_kw(k, "LEFT");
        if (!left && !is_kw(k, "JOIN")) break;
        P->i++;
        if (left) accept_kw(P, "OUTER"), expect_kw(P, "JOIN", " after LEFT");
        sql_join j = {.line = k->line, .col = k->col};
        j.table = ident(P, "a table name after JOIN", NULL, NULL);
        if (!left && j.table && !is_kw(cur(P), "FOR") && !declared_table(P, j.table)) {
            /* a stream join: JOIN source [AS alias] ON condition */
            j.stream = true;
            j.alias = alias_opt(P);
            if (!expect_kw(P, "ON", " after the joined stream")) return NULL;
            j.on = expr(P);
            sql_join *v = palloc(P, sizeof(*v) * (size_t)(s->njoins + 1));
            if (s->njoins) memcpy(v, s->joins, sizeof(*v) * (size_t)s->njoins);
            v[s->njoins++] = j;
            s->joins = v;
            continue;
        }
        if (!expect_kw(P, "FOR", " (lookup joins read FOR SYSTEM_TIME AS OF "
                       "e.ts)"))
            return NULL;
        expect_kw(P, "SYSTEM_TIME", " after FOR");
        expect_kw(P, "AS", " after FOR SYSTEM_TIME");
        expect_kw(P, "OF", " after FOR SYSTEM_TIME AS");
        j.asof = add(P);
        j.alias = alias_opt(P);
        if (!expect_kw(P, "ON", " after the joined table")) return NULL;
        j.on = expr(P);
        sql_join *v = palloc(P, sizeof(*v) * (size_t)(s->njoins + 1));
        if (s->njoins) memcpy(v, s->joins, sizeof(*v) * (size_t)s->njoins);
        v[s->njoins++] = j;
        s->joins = v;
    }
    if (accept_kw(P, "WHERE")) s->where = expr(P);
    if (accept_kw(P, "GROUP")) {
        expect_kw(P, "BY", " after GROUP");
        do {
            sql_expr *g = expr(P);
            sql_expr **v = palloc(P, sizeof(*v) * (size_t)(s->ngroup + 1));
            if (s->ngroup) memcpy(v, s->group, sizeof(*v) * (size_t)s->ngroup);
            v[s->ngroup++] = g;
            s->group = v;
        } while (accept(P, T_COMMA));
    }
    if (accept_kw(P, "HAVING")) s->having = expr(P);
    return P->failed ? NULL : s;
}

static void statement(parser *P, sql_stmt *st)
{
    sql_tok *k = cur(P);
    st->line = k->line;
    st->col = k->col;
    if (accept_kw(P, "SET")) {
        st->k = S_SET;
        sql_tok *kk = cur(P);
        sql_opt o = {.line = kk->line, .col = kk->col};
        if (kk->kind == T_STRING) {
            o.key = string_value(P, kk);
            P->i++;
        } else if (kk->kind == T_IDENT) {
            char buf[256];
            size_t len = 0;
            do {
                sql_tok *w = cur(P);
                if (w->kind != T_IDENT || len + (size_t)w->len + 2 > sizeof buf) {
                    expected(P, "a key name");
                    return;
                }
                memcpy(buf + len, w->p, (size_t)w->len);
                len += (size_t)w->len;
                P->i++;
                if (cur(P)->kind == T_DOT) buf[len++] = '.';
            } while (accept(P, T_DOT));
            o.key = pstrndup(P, buf, len);
        } else {
            expected(P, "a key such as 'parallelism' after SET");
            return;
        }
        expect(P, T_EQ, " after the key");
        sql_tok *v = cur(P);
        if (P->failed) return;
        o.vline = v->line;
        o.vcol = v->col;
        if (v->kind == T_STRING) o.value = string_value(P, v);
        else if (v->kind == T_INT || v->kind == T_FLOAT || v->kind == T_IDENT)
            o.value = pstrndup(P, v->p, (size_t)v->len);
        else {
            expected(P, "a value");
            return;
        }
        P->i++;
        st->opts = palloc(P, sizeof(sql_opt));
        st->opts[0] = o;
        st->nopts = 1;
        return;
    }
    if (!accept_kw(P, "CREATE")) {
        expected(P, "CREATE or SET at the start of a statement");
        return;
    }
    sql_tok *what = cur(P);
    if (accept_kw(P, "SOURCE") || accept_kw(P, "STREAM")) st->k = S_SOURCE;
    else if (accept_kw(P, "TABLE")) st->k = S_TABLE;
    else if (accept_kw(P, "SINK")) st->k = S_SINK;
    else {
        expected(P, "SOURCE, TABLE or SINK after CREATE");
        return;
    }
    (void)what;
    st->name = ident(P, st->k == S_SOURCE ? "the source's name"
                        : st->k == S_TABLE ? "the table's name" : "the sink's name",
                     &st->name_line, &st->name_col);
    if (st->k != S_SINK) column_list(P, st);
    if (st->k == S_SOURCE && st->pk && !P->failed) {
        fail_at(P, &(sql_tok){.line = st->pk_line, .col = st->pk_col},
                "PRIMARY KEY belongs to lookup tables (CREATE TABLE), not sources");
        return;
    }
    if (st->k == S_TABLE && st->wm_col && !P->failed) {
        fail_at(P, &(sql_tok){.line = st->wm_line, .col = st->wm_col_pos},
                "WATERMARK belongs to sources (CREATE SOURCE), not tables");
        return;
    }
    st->with_line = cur(P)->line;
    st->with_col = cur(P)->col;
    if (!expect_kw(P, "WITH", st->k == S_SINK ? " after the sink's name"
                                               : " after the column list"))
        return;
    options(P, &st->opts, &st->nopts);
    if (st->k == S_SINK) {
        if (!expect_kw(P, "AS", " after the sink's options")) return;
        st->sel = select_(P);
    }
}

int sql_parse(const char *text, sql_script *out, char *err, size_t errsz,
              int *eline, int *ecol)
{
    memset(out, 0, sizeof *out);
    parser P = {.s = out, .err = err, .errsz = errsz};
    int rc = sql_lex(text, &P.t, &P.n, err, errsz);
    if (rc) {
        sql_tok *last = &P.t[P.n - 1];
        *eline = last->line;
        *ecol = last->col;
        free(P.t);
        return rc;
    }
    for (;;) {
        while (accept(&P, T_SEMI)) {}
        if (cur(&P)->kind == T_EOF) break;
        sql_stmt st = {0};
        statement(&P, &st);
        if (P.failed) break;
        if (cur(&P)->kind != T_SEMI && cur(&P)->kind != T_EOF) {
            expected(&P, "';' at the end of the statement");
            break;
        }
        sql_stmt *v = palloc(&P, sizeof(*v) * (size_t)(out->n + 1));
        if (out->n) memcpy(v, out->v, sizeof(*v) * (size_t)out->n);
        v[out->n++] = st;
        out->v = v;
    }
    free(P.t);
    if (P.failed) {
        *eline = P.eline;
        *ecol = P.ecol;
        return SL_EPARSE;
    }
    return 0;
}

void sql_script_free(sql_script *s)
{
    if (!s) return;
    for (int i = 0; i < s->npool; i++) free(s->pool[i]);
    free(s->pool);
    memset(s, 0, sizeof *s);
}
