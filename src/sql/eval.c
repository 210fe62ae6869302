/* eval.c — the vectorised evaluator of bound SQL expressions. Each node is
 * computed for a whole batch at once into a typed vector (values + validity),
 * children first, so every loop runs over dense arrays; column references
 * borrow the batch's arrays without copying. It serves the planner's map
 * and filter functions (sql_prog_map, sql_prog_filter).
 *
 * It relies on the analyser (analyze.c) for: resolved column slots, a type
 * on every node, CASE with an operand, IN and BETWEEN rewritten into
 * comparisons, and aggregates/window functions removed. NULL semantics are
 * SQL's: operators on NULL give NULL, AND/OR are three-valued, a filter
 * keeps rows whose condition is TRUE. Division or modulo by zero is NULL;
 * integer overflow wraps. Scratch memory lives for one call, so the same
 * program runs in many tasks at once. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "sql/sql.h"

typedef struct {
    void **v;
    int n, cap;
} scratch;

static void *salloc(scratch *S, size_t n)
{
    if (S->n == S->cap) {
        S->cap = S->cap ? S->cap * 2 : 32;
        S->v = sl__xrealloc(S->v, (size_t)S->cap * sizeof *S->v);
    }
    void *p = sl__xmalloc(n ? n : 1);
    S->v[S->n++] = p;
    return p;
}

static void sfree(scratch *S)
{
    for (int i = 0; i < S->n; i++) free(S->v[i]);
    free(S->v);
}

typedef struct {
    sl_type t;
    uint8_t *valid;
    int64_t *i; /* INT64, TIMESTAMP */
    double *f;
    uint8_t *b;
    sl_str *s;
} vec;

static bool is_int(sl_type t) { return t == SL_INT64 || t == SL_TIMESTAMP; }

static void vnew(scratch *S, vec *v, sl_type t, size_t n)
{
    memset(v, 0, sizeof *v);
    v->t = t;
    v->valid = salloc(S, n);
    memset(v->valid, 1, n);
    switch (t) {
    case SL_INT64:
    case SL_TIMESTAMP: v->i = salloc(S, n * sizeof(int64_t)); break;
    case SL_FLOAT64: v->f = salloc(S, n * sizeof(double)); break;
    case SL_BOOL: v->b = salloc(S, n); break;
    case SL_STRING: v->s = salloc(S, n * sizeof(sl_str)); break;
    }
}

static char *sdup(scratch *S, const char *p, size_t n)
{
    char *r = salloc(S, n + 1);
    memcpy(r, p, n);
    r[n] = 0;
    return r;
}

/* Converts v to type t (CAST semantics; unconvertible values become NULL). */
static void cast_vec(scratch *S, vec *v, sl_type t, size_t n)
{
    if (v->t == t) return;
    if (is_int(v->t) && is_int(t)) {
        v->t = t;
        return;
    }
    vec r;
    vnew(S, &r, t, n);
    char buf[64];
    for (size_t k = 0; k < n; k++) {
        r.valid[k] = v->valid[k];
        if (!v->valid[k]) continue;
        switch (t) {
        case SL_INT64:
        case SL_TIMESTAMP:
            if (v->t == SL_FLOAT64) {
                double x = v->f[k];
                if (!(x > -9.2e18 && x < 9.2e18)) r.valid[k] = 0;
                else r.i[k] = (int64_t)x;
            } else if (v->t == SL_BOOL) r.i[k] = v->b[k];
            else {
                const sl_str *s = &v->s[k];
                int rc;
                if (t == SL_TIMESTAMP) rc = sl__parse_ts(s->ptr, s->len, &r.i[k]);
                else {
                    snprintf(buf, sizeof buf, "%.*s", (int)(s->len < 63 ? s->len : 63), s->ptr);
                    rc = s->len > 63 || sl__parse_i64(buf, &r.i[k]);
                }
                if (rc) r.valid[k] = 0;
            }
            break;
        case SL_FLOAT64:
            if (is_int(v->t)) r.f[k] = (double)v->i[k];
            else if (v->t == SL_BOOL) r.f[k] = v->b[k];
            else {
                const sl_str *s = &v->s[k];
                snprintf(buf, sizeof buf, "%.*s", (int)(s->len < 63 ? s->len : 63), s->ptr);
                if (s->len > 63 || sl__parse_f64(buf, &r.f[k])) r.valid[k] = 0;
            }
            break;
        case SL_BOOL:
            if (is_int(v->t)) r.b[k] = v->i[k] != 0;
            else if (v->t == SL_FLOAT64) r.b[k] = v->f[k] != 0;
            else {
                const sl_str *s = &v->s[k];
                if ((s->len == 4 && !strncasecmp(s->ptr, "true", 4)) ||
                    (s->len == 1 && s->ptr[0] == '1'))
                    r.b[k] = 1;
                else if ((s->len == 5 && !strncasecmp(s->ptr, "false", 5)) ||
                         (s->len == 1 && s->ptr[0] == '0'))
                    r.b[k] = 0;
                else r.valid[k] = 0;
            }
            break;
        case SL_STRING: {
            int len = 0;
            if (v->t == SL_INT64) len = snprintf(buf, sizeof buf, "%lld", (long long)v->i[k]);
            else if (v->t == SL_TIMESTAMP) len = sl__format_ts(v->i[k], buf, sizeof buf);
            else if (v->t == SL_FLOAT64) len = snprintf(buf, sizeof buf, "%.15g", v->f[k]);
            else len = snprintf(buf, sizeof buf, "%s", v->b[k] ? "true" : "false");
            if (len < 0) len = 0;
            r.s[k] = (sl_str){sdup(S, buf, (size_t)len), (uint32_t)len};
            break;
        }
        }
    }
    *v = r;
}

static int ev(scratch *S, const sql_prog *P, const sql_expr *e,
              const sl_batch *b, size_t n, vec *out);

static bool like(const char *s, size_t sn, const char *p, size_t pn)
{
    /* iterative % matching with one backtrack point */
    size_t si = 0, pi = 0, star_p = (size_t)-1, star_s = 0;
    while (si < sn) {
        if (pi < pn && (p[pi] == '_' || p[pi] == s[si])) { si++; pi++; }
        else if (pi < pn && p[pi] == '%') { star_p = pi++; star_s = si; }
        else if (star_p != (size_t)-1) { pi = star_p + 1; si = ++star_s; }
        else return false;
    }
    while (pi < pn && p[pi] == '%') pi++;
    return pi == pn;
}

static int cmp_rows(const vec *a, const vec *c, size_t k)
{
    switch (a->t) {
    case SL_FLOAT64: return (a->f[k] > c->f[k]) - (a->f[k] < c->f[k]);
    case SL_BOOL: return (a->b[k] > c->b[k]) - (a->b[k] < c->b[k]);
    case SL_STRING: {
        uint32_t m = a->s[k].len < c->s[k].len ? a->s[k].len : c->s[k].len;
        int r = m ? memcmp(a->s[k].ptr, c->s[k].ptr, m) : 0;
        if (r) return r < 0 ? -1 : 1;
        return (a->s[k].len > c->s[k].len) - (a->s[k].len < c->s[k].len);
    }
    default: return (a->i[k] > c->i[k]) - (a->i[k] < c->i[k]);
    }
}

static sl_type common(sl_type a, sl_type b)
{
    if (a == b) return a;
    if (a == SL_FLOAT64 || b == SL_FLOAT64) return SL_FLOAT64;
    if (a == SL_TIMESTAMP || b == SL_TIMESTAMP) return SL_TIMESTAMP;
    return a;
}

static int ev_bin(scratch *S, const sql_prog *P, const sql_expr *e,
                  const sl_batch *b, size_t n, vec *out)
{
    vec l, r;
    int rc = ev(S, P, e->args[0], b, n, &l);
    if (!rc) rc = ev(S, P, e->args[1], b, n, &r);
    if (rc) return rc;
    vnew(S, out, e->type, n);
    switch (e->op) {
    case OP_AND:
    case OP_OR: {
        bool is_and = e->op == OP_AND;
        for (size_t k = 0; k < n; k++) {
            bool lv = l.valid[k], rv = r.valid[k];
            bool lb = lv && l.b[k], rb = rv && r.b[k];
            if (is_and) {
                if ((lv && !lb) || (rv && !rb)) { out->b[k] = 0; out->valid[k] = 1; }
                else if (lv && rv) { out->b[k] = 1; out->valid[k] = 1; }
                else out->valid[k] = 0;
            } else {
                if (lb || rb) { out->b[k] = 1; out->valid[k] = 1; }
                else if (lv && rv) { out->b[k] = 0; out->valid[k] = 1; }
                else out->valid[k] = 0;
            }
        }
        return 0;
    }
    case OP_CONCAT:
        cast_vec(S, &l, SL_STRING, n);
        cast_vec(S, &r, SL_STRING, n);
        for (size_t k = 0; k < n; k++) {
            out->valid[k] = l.valid[k] && r.valid[k];
            if (!out->valid[k]) continue;
            char *p = salloc(S, (size_t)l.s[k].len + r.s[k].len + 1);
            if (l.s[k].len) memcpy(p, l.s[k].ptr, l.s[k].len);
            if (r.s[k].len) memcpy(p + l.s[k].len, r.s[k].ptr, r.s[k].len);
            out->s[k] = (sl_str){p, l.s[k].len + r.s[k].len};
        }
        return 0;
    case OP_LIKE:
        for (size_t k = 0; k < n; k++) {
            out->valid[k] = l.valid[k] && r.valid[k];
            if (out->valid[k])
                out->b[k] = like(l.s[k].ptr, l.s[k].len, r.s[k].ptr, r.s[k].len) != e->negate;
        }
        return 0;
    case OP_EQ: case OP_NE: case OP_LT: case OP_LE: case OP_GT: case OP_GE: {
        sl_type t = common(l.t, r.t);
        cast_vec(S, &l, t, n);
        cast_vec(S, &r, t, n);
        for (size_t k = 0; k < n; k++) {
            out->valid[k] = l.valid[k] && r.valid[k];
            if (!out->valid[k]) continue;
            int c = cmp_rows(&l, &r, k);
            bool v = false;
            switch (e->op) {
            case OP_EQ: v = c == 0; break;
            case OP_NE: v = c != 0; break;
            case OP_LT: v = c < 0; break;
            case OP_LE: v = c <= 0; break;
            case OP_GT: v = c > 0; break;
            default: v = c >= 0; break;
            }
            out->b[k] = v;
        }
        return 0;
    }
    default:
        break;
    }
    /* arithmetic */
    if (e->type == SL_FLOAT64) {
        cast_vec(S, &l, SL_FLOAT64, n);
        cast_vec(S, &r, SL_FLOAT64, n);
        for (size_t k = 0; k < n; k++) {
            out->valid[k] = l.valid[k] && r.valid[k];
            double x = l.f[k], y = r.f[k];
            switch (e->op) {
            case OP_ADD: out->f[k] = x + y; break;
            case OP_SUB: out->f[k] = x - y; break;
            case OP_MUL: out->f[k] = x * y; break;
            case OP_DIV:
                if (y == 0) out->valid[k] = 0;
                else out->f[k] = x / y;
                break;
            default:
                if (y == 0) out->valid[k] = 0;
                else out->f[k] = fmod(x, y);
                break;
            }
        }
        return 0;
    }
    for (size_t k = 0; k < n; k++) {
        out->valid[k] = l.valid[k] && r.valid[k];
        uint64_t x = (uint64_t)l.i[k], y = (uint64_t)r.i[k];
        int64_t sy = r.i[k];
        switch (e->op) {
        case OP_ADD: out->i[k] = (int64_t)(x + y); break;
        case OP_SUB: out->i[k] = (int64_t)(x - y); break;
        case OP_MUL: out->i[k] = (int64_t)(x * y); break;
        case OP_DIV:
            if (sy == 0) out->valid[k] = 0;
            else if (sy == -1) out->i[k] = (int64_t)(0 - x);
            else out->i[k] = l.i[k] / sy;
            break;
        default:
            if (sy == 0) out->valid[k] = 0;
            else if (sy == -1) out->i[k] = 0;
            else out->i[k] = l.i[k] % sy;
            break;
        }
    }
    return 0;
}

/* clang-analyzer does not follow ev()'s recursion: it assumes a vec that
 * ev() or a helper filled on success (vnew() sets every array) may still
 * be unset or NULL. Only that check is off, and only up to sql_prog_free. */
// NOLINTBEGIN(clang-analyzer-core.NullDereference)
static void str_map(scratch *S, const vec *a, vec *out, size_t n, int fn)
{
    for (size_t k = 0; k < n; k++) {
        out->valid[k] = a->valid[k];
        if (!a->valid[k]) continue;
        const sl_str *s = &a->s[k];
        if (fn == FN_TRIM) {
            uint32_t i = 0, j = s->len;
            while (i < j && isspace((unsigned char)s->ptr[i])) i++;
            while (j > i && isspace((unsigned char)s->ptr[j - 1])) j--;
            out->s[k] = (sl_str){s->ptr + i, j - i};
            continue;
        }
        char *p = salloc(S, s->len + 1);
        for (uint32_t i = 0; i < s->len; i++)
            p[i] = (char)(fn == FN_UPPER ? toupper((unsigned char)s->ptr[i])
                                         : tolower((unsigned char)s->ptr[i]));
        out->s[k] = (sl_str){p, s->len};
    }
}

static int ev_udf(scratch *S, const sql_prog *P, const sql_expr *e,
                  const vec *a, vec *out, size_t n)
{
    const sql_udf *u = &P->udfs[e->slot];
    sl_value args[8];
    for (size_t k = 0; k < n; k++) {
        for (int j = 0; j < e->nargs; j++) {
            sl_value *v = &args[j];
            memset(v, 0, sizeof *v);
            v->type = a[j].t;
            v->null = !a[j].valid[k];
            if (v->null) continue;
            switch (a[j].t) {
            case SL_INT64: case SL_TIMESTAMP: v->i = a[j].i[k]; break;
            case SL_FLOAT64: v->f = a[j].f[k]; break;
            case SL_BOOL: v->i = a[j].b[k]; break;
            case SL_STRING: v->s = a[j].s[k]; break;
            }
        }
        sl_value r = {.type = u->ret};
        int rc = u->fn(args, e->nargs, &r, u->udata);
        if (rc) return rc < 0 ? rc : SL_EINVAL;
        out->valid[k] = !r.null;
        if (r.null) continue;
        switch (u->ret) {
        case SL_INT64: case SL_TIMESTAMP: out->i[k] = r.i; break;
        case SL_FLOAT64: out->f[k] = r.f; break;
        case SL_BOOL: out->b[k] = r.i != 0; break;
        case SL_STRING:
            out->s[k] = (sl_str){r.s.len ? sdup(S, r.s.ptr, r.s.len) : "", r.s.len};
            break;
        }
    }
    return 0;
}

static int ev_func(scratch *S, const sql_prog *P, const sql_expr *e,
                   const sl_batch *b, size_t n, vec *out)
{
    vec a[65];
    if (e->nargs > 65) return SL_EINTERNAL;
    for (int j = 0; j < e->nargs; j++) {
        int rc = ev(S, P, e->args[j], b, n, &a[j]);
        if (rc) return rc;
    }
    vnew(S, out, e->type, n);
    if (e->udf) {
        const sql_udf *u = &P->udfs[e->slot];
        for (int j = 0; j < e->nargs; j++) cast_vec(S, &a[j], u->args[j], n);
        return ev_udf(S, P, e, a, out, n);
    }
    switch (e->slot) {
    case FN_COALESCE:
    case FN_NULLIF:
        for (int j = 0; j < e->nargs; j++) cast_vec(S, &a[j], e->type, n);
        for (size_t k = 0; k < n; k++) {
            int pick = -1;
            if (e->slot == FN_NULLIF) {
                pick = a[0].valid[k] && !(a[1].valid[k] && cmp_rows(&a[0], &a[1], k) == 0) ? 0 : -1;
            } else {
                for (int j = 0; j < e->nargs && pick < 0; j++)
                    if (a[j].valid[k]) pick = j;
            }
            out->valid[k] = pick >= 0;
            if (pick < 0) continue;
            switch (e->type) {
            case SL_FLOAT64: out->f[k] = a[pick].f[k]; break;
            case SL_BOOL: out->b[k] = a[pick].b[k]; break;
            case SL_STRING: out->s[k] = a[pick].s[k]; break;
            default: out->i[k] = a[pick].i[k]; break;
            }
        }
        return 0;
    case FN_UPPER:
    case FN_LOWER:
    case FN_TRIM:
        str_map(S, &a[0], out, n, e->slot);
        return 0;
    case FN_LENGTH:
    case FN_CHAR_LENGTH:
        for (size_t k = 0; k < n; k++) {
            out->valid[k] = a[0].valid[k];
            if (!out->valid[k]) continue;
            int64_t c = 0; /* UTF-8 characters */
            for (uint32_t i = 0; i < a[0].s[k].len; i++)
                c += ((unsigned char)a[0].s[k].ptr[i] & 0xc0) != 0x80;
            out->i[k] = c;
        }
        return 0;
    case FN_SUBSTR:
    case FN_SUBSTRING:
        for (size_t k = 0; k < n; k++) {
            out->valid[k] = a[0].valid[k] && a[1].valid[k] &&
                            (e->nargs < 3 || a[2].valid[k]);
            if (!out->valid[k]) continue;
            int64_t len = a[0].s[k].len, st = a[1].i[k] - 1;
            int64_t cnt = e->nargs == 3 ? a[2].i[k] : len;
            if (cnt < 0) cnt = 0;
            int64_t en = st > INT64_MAX - cnt ? INT64_MAX : st + cnt;
            if (st < 0) st = 0;
            if (en > len) en = len;
            if (st > en) st = en;
            out->s[k] = (sl_str){a[0].s[k].ptr + st, (uint32_t)(en - st)};
        }
        return 0;
    case FN_CONCAT:
        for (int j = 0; j < e->nargs; j++) cast_vec(S, &a[j], SL_STRING, n);
        for (size_t k = 0; k < n; k++) {
            size_t tot = 0;
            for (int j = 0; j < e->nargs; j++)
                if (a[j].valid[k]) tot += a[j].s[k].len;
            char *p = salloc(S, tot + 1);
            size_t o = 0;
            for (int j = 0; j < e->nargs; j++)   /* CONCAT skips NULLs */
                if (a[j].valid[k] && a[j].s[k].len) {
                    memcpy(p + o, a[j].s[k].ptr, a[j].s[k].len);
                    o += a[j].s[k].len;
                }
            out->s[k] = (sl_str){p, (uint32_t)o};
        }
        return 0;
    case FN_REPLACE:
        for (size_t k = 0; k < n; k++) {
            out->valid[k] = a[0].valid[k] && a[1].valid[k] && a[2].valid[k];
            if (!out->valid[k]) continue;
            const sl_str s = a[0].s[k], f = a[1].s[k], t = a[2].s[k];
            if (f.len == 0) { out->s[k] = s; continue; }
            size_t cnt = 0;
            for (uint32_t i = 0; i + f.len <= s.len;)
                if (!memcmp(s.ptr + i, f.ptr, f.len)) { cnt++; i += f.len; } else i++;
            char *p = salloc(S, s.len + cnt * t.len + 1);
            size_t o = 0;
            for (uint32_t i = 0; i < s.len;) {
                if (i + f.len <= s.len && !memcmp(s.ptr + i, f.ptr, f.len)) {
                    if (t.len) memcpy(p + o, t.ptr, t.len);
                    o += t.len;
                    i += f.len;
                } else p[o++] = s.ptr[i++];
            }
            out->s[k] = (sl_str){p, (uint32_t)o};
        }
        return 0;
    case FN_ABS:
    case FN_FLOOR:
    case FN_CEIL:
    case FN_ROUND:
        cast_vec(S, &a[0], e->type, n);
        for (size_t k = 0; k < n; k++) {
            out->valid[k] = a[0].valid[k];
            if (e->type == SL_FLOAT64) {
                double x = a[0].f[k];
                out->f[k] = e->slot == FN_ABS ? fabs(x) : e->slot == FN_FLOOR ? floor(x)
                          : e->slot == FN_CEIL ? ceil(x) : round(x);
            } else {
                int64_t x = a[0].i[k];
                out->i[k] = e->slot == FN_ABS && x < 0 ? (int64_t)(0 - (uint64_t)x) : x;
            }
        }
        return 0;
    case FN_MOD:
        for (size_t k = 0; k < n; k++) {
            out->valid[k] = a[0].valid[k] && a[1].valid[k] && a[1].i[k] != 0;
            if (out->valid[k]) out->i[k] = a[1].i[k] == -1 ? 0 : a[0].i[k] % a[1].i[k];
        }
        return 0;
    case FN_AGE_YEARS:
        for (size_t k = 0; k < n; k++) {
            out->valid[k] = a[0].valid[k] && a[1].valid[k];
            if (out->valid[k]) out->i[k] = sql_age_years(a[0].i[k], a[1].i[k]);
        }
        return 0;
    case FN_N: /* the start (op 0) or end (op 1) of the record's tumbling window */
        for (size_t k = 0; k < n; k++) {
            out->valid[k] = a[0].valid[k];
            if (out->valid[k])
                out->i[k] = sl__floor_div(a[0].i[k], e->li) * e->li + (e->op ? e->li : 0);
        }
        return 0;
    default:
        return SL_EINTERNAL;
    }
}

static int ev(scratch *S, const sql_prog *P, const sql_expr *e,
              const sl_batch *b, size_t n, vec *out)
{
    int rc;
    switch (e->k) {
    case E_COL: {
        const sl_schema *sc = sl_batch_schema(b);
        memset(out, 0, sizeof *out);
        out->t = sl_schema_col_type(sc, e->slot);
        out->valid = sl_batch_valid(b, e->slot);
        switch (out->t) {
        case SL_INT64: case SL_TIMESTAMP: out->i = sl_batch_i64(b, e->slot); break;
        case SL_FLOAT64: out->f = sl_batch_f64(b, e->slot); break;
        case SL_BOOL: out->b = sl_batch_bool(b, e->slot); break;
        case SL_STRING: out->s = sl_batch_str(b, e->slot); break;
        }
        return 0;
    }
    case E_LIT:
        vnew(S, out, e->type, n);
        for (size_t k = 0; k < n; k++) {
            out->valid[k] = !e->lnull;
            if (e->lnull) continue;
            switch (e->type) {
            case SL_INT64: case SL_TIMESTAMP: out->i[k] = e->li; break;
            case SL_FLOAT64: out->f[k] = e->lt == SL_FLOAT64 ? e->lf : (double)e->li; break;
            case SL_BOOL: out->b[k] = e->li != 0; break;
            case SL_STRING: out->s[k] = (sl_str){e->ls, (uint32_t)strlen(e->ls)}; break;
            }
        }
        return 0;
    case E_NEG: {
        vec a;
        if ((rc = ev(S, P, e->args[0], b, n, &a))) return rc;
        vnew(S, out, e->type, n);
        for (size_t k = 0; k < n; k++) {
            out->valid[k] = a.valid[k];
            if (e->type == SL_FLOAT64) out->f[k] = -a.f[k];
            else out->i[k] = (int64_t)(0 - (uint64_t)a.i[k]);
        }
        return 0;
    }
    case E_NOT: {
        vec a;
        if ((rc = ev(S, P, e->args[0], b, n, &a))) return rc;
        vnew(S, out, SL_BOOL, n);
        for (size_t k = 0; k < n; k++) {
            out->valid[k] = a.valid[k];
            out->b[k] = !a.b[k];
        }
        return 0;
    }
    case E_ISNULL: {
        vec a;
        if ((rc = ev(S, P, e->args[0], b, n, &a))) return rc;
        vnew(S, out, SL_BOOL, n);
        for (size_t k = 0; k < n; k++) out->b[k] = (a.valid[k] != 0) == e->negate;
        return 0;
    }
    case E_CAST: {
        if ((rc = ev(S, P, e->args[0], b, n, out))) return rc;
        if (out->t != e->cast_to) cast_vec(S, out, e->cast_to, n);
        return 0;
    }
    case E_BIN:
        return ev_bin(S, P, e, b, n, out);
    case E_FUNC:
        return ev_func(S, P, e, b, n, out);
    case E_CASE: {
        /* searched CASE: args are when,then pairs, then else */
        int pairs = (e->nargs - (e->has_else ? 1 : 0)) / 2;
        vnew(S, out, e->type, n);
        uint8_t *done = salloc(S, n);
        memset(done, 0, n);
        memset(out->valid, 0, n);
        for (int j = 0; j <= pairs; j++) {
            vec c, v;
            if (j == pairs && !e->has_else) break;
            if (j < pairs && (rc = ev(S, P, e->args[2 * j], b, n, &c))) return rc;
            if ((rc = ev(S, P, e->args[j < pairs ? 2 * j + 1 : e->nargs - 1], b, n, &v)))
                return rc;
            cast_vec(S, &v, e->type, n);
            for (size_t k = 0; k < n; k++) {
                if (done[k]) continue;
                if (j < pairs && !(c.valid[k] && c.b[k])) continue;
                done[k] = 1;
                out->valid[k] = v.valid[k];
                switch (e->type) {
                case SL_FLOAT64: out->f[k] = v.f[k]; break;
                case SL_BOOL: out->b[k] = v.b[k]; break;
                case SL_STRING: out->s[k] = v.s[k]; break;
                default: out->i[k] = v.i[k]; break;
                }
            }
        }
        return 0;
    }
    default:
        return SL_EINTERNAL;
    }
}

int sql_prog_map(const sl_batch *in, sl_batch *out, void *udata)
{
    const sql_prog *P = udata;
    size_t n = sl_batch_len(in);
    scratch S = {0};
    int rc = 0;
    for (int j = 0; j < P->n && !rc; j++) {
        vec v;
        if ((rc = ev(&S, P, P->exprs[j], in, n, &v))) break;
        sl_type t = sl_schema_col_type(P->out, j);
        cast_vec(&S, &v, t, n);
        uint8_t *ov = sl_batch_valid(out, j);
        memcpy(ov, v.valid, n);
        switch (t) {
        case SL_INT64: case SL_TIMESTAMP:
            memcpy(sl_batch_i64(out, j), v.i, n * sizeof(int64_t));
            break;
        case SL_FLOAT64: memcpy(sl_batch_f64(out, j), v.f, n * sizeof(double)); break;
        case SL_BOOL: memcpy(sl_batch_bool(out, j), v.b, n); break;
        case SL_STRING:
            for (size_t k = 0; k < n; k++)
                if (v.valid[k]) sl_batch_set_str(out, j, k, v.s[k].ptr, v.s[k].len);
            break;
        }
    }
    sfree(&S);
    if (rc) return rc;
    sl_batch_set_len(out, n);
    return 0;
}

void sql_prog_filter(const sl_batch *in, uint8_t *keep, void *udata)
{
    const sql_prog *P = udata;
    size_t n = sl_batch_len(in);
    scratch S = {0};
    vec v;
    if (ev(&S, P, P->exprs[0], in, n, &v) == 0) {
        for (size_t k = 0; k < n; k++) keep[k] = v.valid[k] && v.b[k];
    } else {
        /* a failing user function in WHERE: keep nothing rather than guess */
        memset(keep, 0, n);
    }
    sfree(&S);
}

// NOLINTEND(clang-analyzer-core.NullDereference)

void sql_prog_free(sql_prog *p)
{
    if (!p) return;
    for (int i = 0; i < p->n; i++) sql_expr_free(p->exprs[i]);
    free(p->exprs);
    sl_schema_free(p->out);
    free(p->name);
    free(p);
}
