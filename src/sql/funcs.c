/* funcs.c — the SQL built-in function table, and helpers over syntax trees
 * shared by the analyser and the planner: clone, structural equality,
 * printing, nearest-name suggestions and the age function. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "sql/sql.h"

static const sql_fdef funcs[FN_N] = {
    [FN_COUNT] = {"COUNT", F_AGG, 1, 1, "COUNT(*) | COUNT([DISTINCT] x)"},
    [FN_SUM] = {"SUM", F_AGG, 1, 1, "SUM(number)"},
    [FN_MIN] = {"MIN", F_AGG, 1, 1, "MIN(number or timestamp)"},
    [FN_MAX] = {"MAX", F_AGG, 1, 1, "MAX(number or timestamp)"},
    [FN_AVG] = {"AVG", F_AGG, 1, 1, "AVG(number)"},
    [FN_APPROX_COUNT_DISTINCT] = {"APPROX_COUNT_DISTINCT", F_AGG, 1, 1,
                                  "APPROX_COUNT_DISTINCT(x)"},
    [FN_HISTOGRAM] = {"HISTOGRAM", F_AGG, 2, 65,
                      "HISTOGRAM(number, bound1, bound2, ...)"},
    [FN_APPROX_PERCENTILE] = {"APPROX_PERCENTILE", F_AGG, 2, 3,
                              "APPROX_PERCENTILE(number, quantile [, accuracy])"},
    [FN_SESSION] = {"SESSION", F_WINDOW, 2, 2, "SESSION(time, INTERVAL gap)"},
    [FN_TUMBLE] = {"TUMBLE", F_WINDOW, 2, 2, "TUMBLE(time, INTERVAL size)"},
    [FN_HOP] = {"HOP", F_WINDOW, 3, 3, "HOP(time, INTERVAL slide, INTERVAL size)"},
    [FN_PSEUDONYMIZE] = {"PSEUDONYMIZE", F_SPECIAL, 1, 2,
                         "PSEUDONYMIZE(column [, 'key-id'])"},
    [FN_COALESCE] = {"COALESCE", F_SCALAR, 1, -1, "COALESCE(x, y, ...)"},
    [FN_UPPER] = {"UPPER", F_SCALAR, 1, 1, "UPPER(string)"},
    [FN_LOWER] = {"LOWER", F_SCALAR, 1, 1, "LOWER(string)"},
    [FN_LENGTH] = {"LENGTH", F_SCALAR, 1, 1, "LENGTH(string)"},
    [FN_CHAR_LENGTH] = {"CHAR_LENGTH", F_SCALAR, 1, 1, "CHAR_LENGTH(string)"},
    [FN_SUBSTR] = {"SUBSTR", F_SCALAR, 2, 3, "SUBSTR(string, start [, length])"},
    [FN_SUBSTRING] = {"SUBSTRING", F_SCALAR, 2, 3,
                      "SUBSTRING(string, start [, length])"},
    [FN_CONCAT] = {"CONCAT", F_SCALAR, 1, -1, "CONCAT(x, y, ...)"},
    [FN_TRIM] = {"TRIM", F_SCALAR, 1, 1, "TRIM(string)"},
    [FN_REPLACE] = {"REPLACE", F_SCALAR, 3, 3, "REPLACE(string, from, to)"},
    [FN_ABS] = {"ABS", F_SCALAR, 1, 1, "ABS(number)"},
    [FN_FLOOR] = {"FLOOR", F_SCALAR, 1, 1, "FLOOR(number)"},
    [FN_CEIL] = {"CEIL", F_SCALAR, 1, 1, "CEIL(number)"},
    [FN_ROUND] = {"ROUND", F_SCALAR, 1, 1, "ROUND(number)"},
    [FN_MOD] = {"MOD", F_SCALAR, 2, 2, "MOD(integer, integer)"},
    [FN_AGE_YEARS] = {"AGE_YEARS", F_SCALAR, 2, 2,
                      "AGE_YEARS(birth TIMESTAMP, at TIMESTAMP)"},
    [FN_NULLIF] = {"NULLIF", F_SCALAR, 2, 2, "NULLIF(x, y)"},
};

const sql_fdef *sql_func_find(const char *name, int *id)
{
    for (int i = 0; i < FN_N; i++)
        if (sql_ieq(funcs[i].name, name)) {
            if (id) *id = i;
            return &funcs[i];
        }
    return NULL;
}

const sql_fdef *sql_func_at(int id) { return id >= 0 && id < FN_N ? &funcs[id] : NULL; }
int sql_func_count(void) { return FN_N; }

int64_t sql_age_years(int64_t birth_ms, int64_t at_ms)
{
    int64_t by, ay;
    unsigned bm, bd, am, ad;
    sl__civil_from_days(sl__floor_div(birth_ms, 86400000), &by, &bm, &bd);
    sl__civil_from_days(sl__floor_div(at_ms, 86400000), &ay, &am, &ad);
    return ay - by - ((am < bm || (am == bm && ad < bd)) ? 1 : 0);
}

/* ---- trees ---------------------------------------------------------------- */

sql_expr *sql_expr_clone(const sql_expr *e)
{
    if (!e) return NULL;
    sql_expr *c = sl__xmalloc(sizeof *c);
    *c = *e;
    c->name = e->name ? sl__xstrdup(e->name) : NULL;
    c->qual = e->qual ? sl__xstrdup(e->qual) : NULL;
    c->ls = e->ls ? sl__xstrdup(e->ls) : NULL;
    c->args = e->nargs ? sl__xmalloc(sizeof(*c->args) * (size_t)e->nargs) : NULL;
    for (int i = 0; i < e->nargs; i++) c->args[i] = sql_expr_clone(e->args[i]);
    return c;
}

void sql_expr_free(sql_expr *e)
{
    if (!e) return;
    for (int i = 0; i < e->nargs; i++) sql_expr_free(e->args[i]);
    free(e->args);
    free(e->name);
    free(e->qual);
    free(e->ls);
    free(e);
}

static bool name_eq(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return sql_ieq(a, b);
}

bool sql_expr_equal(const sql_expr *a, const sql_expr *b)
{
    if (!a || !b) return a == b;
    if (a->k != b->k || a->op != b->op || a->distinct != b->distinct ||
        a->negate != b->negate || a->nargs != b->nargs ||
        a->has_operand != b->has_operand || a->has_else != b->has_else)
        return false;
    switch (a->k) {
    case E_COL:
        if (!name_eq(a->name, b->name)) return false;
        /* a qualifier may be left out on one side */
        if (a->qual && b->qual && !name_eq(a->qual, b->qual)) return false;
        break;
    case E_LIT:
        if (a->lnull != b->lnull || a->lt != b->lt) return false;
        if (a->lt == SL_STRING) return strcmp(a->ls, b->ls) == 0;
        if (a->lt == SL_FLOAT64) return a->lf == b->lf;
        return a->li == b->li;
    case E_FUNC:
        if (!name_eq(a->name, b->name)) return false;
        break;
    case E_CAST:
        if (a->cast_to != b->cast_to) return false;
        break;
    default:
        break;
    }
    for (int i = 0; i < a->nargs; i++)
        if (!sql_expr_equal(a->args[i], b->args[i])) return false;
    return true;
}

typedef struct {
    char *p;
    size_t n, used;
} sbuf;

static void put(sbuf *b, const char *s)
{
    size_t l = strlen(s);
    if (b->used + 1 >= b->n) return;
    size_t room = b->n - 1 - b->used;
    if (l > room) l = room;
    memcpy(b->p + b->used, s, l);
    b->used += l;
    b->p[b->used] = 0;
}

static const char *op_text(int op)
{
    static const char *const t[] = {"?", "+", "-", "*", "/", "%", "||", "=",
                                    "<>", "<", "<=", ">", ">=", "AND", "OR",
                                    "LIKE"};
    return op > 0 && op <= OP_LIKE ? t[op] : "?";
}

static void print(sbuf *b, const sql_expr *e)
{
    char tmp[64];
    switch (e->k) {
    case E_COL:
        if (e->qual) { put(b, e->qual); put(b, "."); }
        put(b, e->name);
        break;
    case E_LIT:
        if (e->lnull) put(b, "NULL");
        else if (e->interval) {
            snprintf(tmp, sizeof tmp, "INTERVAL '%lld' MILLISECOND", (long long)e->li);
            put(b, tmp);
        } else if (e->lt == SL_STRING) { put(b, "'"); put(b, e->ls); put(b, "'"); }
        else if (e->lt == SL_FLOAT64) { snprintf(tmp, sizeof tmp, "%g", e->lf); put(b, tmp); }
        else if (e->lt == SL_BOOL) put(b, e->li ? "TRUE" : "FALSE");
        else if (e->lt == SL_TIMESTAMP) {
            sl__format_ts(e->li, tmp, sizeof tmp);
            put(b, "TIMESTAMP '"); put(b, tmp); put(b, "'");
        } else { snprintf(tmp, sizeof tmp, "%lld", (long long)e->li); put(b, tmp); }
        break;
    case E_NEG: put(b, "-"); print(b, e->args[0]); break;
    case E_NOT: put(b, "NOT "); print(b, e->args[0]); break;
    case E_BIN:
        put(b, "(");
        print(b, e->args[0]);
        put(b, e->negate ? " NOT " : " ");
        put(b, op_text(e->op));
        put(b, " ");
        print(b, e->args[1]);
        put(b, ")");
        break;
    case E_FUNC:
        put(b, e->name);
        put(b, "(");
        if (e->distinct) put(b, "DISTINCT ");
        for (int i = 0; i < e->nargs; i++) {
            if (i) put(b, ", ");
            print(b, e->args[i]);
        }
        put(b, ")");
        break;
    case E_CASE: {
        put(b, "CASE");
        int i = 0;
        if (e->has_operand) { put(b, " "); print(b, e->args[i++]); }
        int end = e->nargs - (e->has_else ? 1 : 0);
        for (; i + 1 < end + 1 && i < end; i += 2) {
            put(b, " WHEN "); print(b, e->args[i]);
            put(b, " THEN "); print(b, e->args[i + 1]);
        }
        if (e->has_else) { put(b, " ELSE "); print(b, e->args[e->nargs - 1]); }
        put(b, " END");
        break;
    }
    case E_CAST:
        put(b, "CAST(");
        print(b, e->args[0]);
        put(b, " AS ");
        put(b, sl_type_name(e->cast_to));
        put(b, ")");
        break;
    case E_ISNULL:
        print(b, e->args[0]);
        put(b, e->negate ? " IS NOT NULL" : " IS NULL");
        break;
    case E_IN:
        print(b, e->args[0]);
        put(b, e->negate ? " NOT IN (" : " IN (");
        for (int i = 1; i < e->nargs; i++) {
            if (i > 1) put(b, ", ");
            print(b, e->args[i]);
        }
        put(b, ")");
        break;
    case E_BETWEEN:
        print(b, e->args[0]);
        put(b, e->negate ? " NOT BETWEEN " : " BETWEEN ");
        print(b, e->args[1]);
        put(b, " AND ");
        print(b, e->args[2]);
        break;
    case E_STAR: put(b, "*"); break;
    }
}

void sql_expr_print(const sql_expr *e, char *buf, size_t size)
{
    if (!size) return;
    buf[0] = 0;
    sbuf b = {buf, size, 0};
    if (e) print(&b, e);
}

/* ---- suggestions ------------------------------------------------------------ */

static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 1000;
    int d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + c < v) v = d[i - 1][j - 1] + c;
            /* a swap of two neighbours is one typo */
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

const char *sql_nearest(const char *name, const char *const *cands, int n)
{
    const char *best = NULL;
    int bd = 1000;
    for (int i = 0; i < n; i++) {
        if (!cands[i]) continue;
        int d = distance(name, cands[i]);
        if (d < bd) {
            bd = d;
            best = cands[i];
        }
    }
    int len = (int)strlen(name);
    int limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
    return bd <= limit ? best : NULL;
}
