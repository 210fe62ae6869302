/* lexer.c — splits SQL text into tokens with line and column: identifiers
 * (bare, case-insensitive; "quoted" or `quoted`, kept as written), 'string'
 * literals ('' escapes a quote), numbers, operators; -- and block comments
 * are skipped. Keywords are plain identifiers: the parser decides. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "sql/sql.h"

const char *sql_tok_name(sql_tok_kind k)
{
    switch (k) {
    case T_EOF: return "end of input";
    case T_IDENT: return "a name";
    case T_STRING: return "a string";
    case T_INT: return "an integer";
    case T_FLOAT: return "a number";
    case T_LPAREN: return "'('";
    case T_RPAREN: return "')'";
    case T_COMMA: return "','";
    case T_SEMI: return "';'";
    case T_DOT: return "'.'";
    case T_STAR: return "'*'";
    case T_PLUS: return "'+'";
    case T_MINUS: return "'-'";
    case T_SLASH: return "'/'";
    case T_PERCENT: return "'%'";
    case T_CONCAT: return "'||'";
    case T_EQ: return "'='";
    case T_NE: return "'<>'";
    case T_LT: return "'<'";
    case T_LE: return "'<='";
    case T_GT: return "'>'";
    case T_GE: return "'>='";
    case T_ERROR: return "an invalid token";
    }
    return "?";
}

typedef struct {
    sql_tok *v;
    int n, cap;
} tokvec;

static void push(tokvec *t, sql_tok k)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->v = sl__xrealloc(t->v, (size_t)t->cap * sizeof *t->v);
    }
    t->v[t->n++] = k;
}

int sql_lex(const char *text, sql_tok **toks, int *ntoks, char *err,
            size_t errsz)
{
    tokvec t = {0};
    const char *p = text;
    int line = 1;
    const char *bol = text; /* beginning of the current line */
    int rc = 0;
    for (;;) {
        /* whitespace and comments */
        for (;;) {
            if (*p == '\n') {
                line++;
                bol = ++p;
            } else if (isspace((unsigned char)*p)) {
                p++;
            } else if (p[0] == '-' && p[1] == '-') {
                while (*p && *p != '\n') p++;
            } else if (p[0] == '/' && p[1] == '*') {
                int l0 = line, c0 = (int)(p - bol) + 1;
                p += 2;
                while (*p && !(p[0] == '*' && p[1] == '/')) {
                    if (*p == '\n') {
                        line++;
                        bol = p + 1;
                    }
                    p++;
                }
                if (!*p) {
                    snprintf(err, errsz, "%d:%d: unterminated comment", l0, c0);
                    push(&t, (sql_tok){.kind = T_ERROR, .p = p, .line = l0, .col = c0});
                    rc = SL_EPARSE;
                    goto done;
                }
                p += 2;
            } else {
                break;
            }
        }
        sql_tok k = {.p = p, .line = line, .col = (int)(p - bol) + 1};
        unsigned char c = (unsigned char)*p;
        if (!c) {
            k.kind = T_EOF;
            push(&t, k);
            break;
        }
        if (isalpha(c) || c == '_') {
            while (isalnum((unsigned char)*p) || *p == '_' || *p == '$') p++;
            k.kind = T_IDENT;
        } else if (c == '"' || c == '`') {
            char q = (char)c;
            p++;
            k.p = p;
            while (*p && *p != q && *p != '\n') p++;
            if (*p != q || p == k.p) {
                snprintf(err, errsz, "%d:%d: %s quoted name", k.line, k.col,
                         p == k.p && *p == q ? "empty" : "unterminated");
                k.kind = T_ERROR;
                push(&t, k);
                rc = SL_EPARSE;
                goto done;
            }
            k.kind = T_IDENT;
            k.quoted = true;
            k.len = (int)(p - k.p);
            p++;
            push(&t, k);
            continue;
        } else if (c == '\'') {
            p++;
            for (;;) {
                if (!*p) {
                    snprintf(err, errsz, "%d:%d: unterminated string", k.line, k.col);
                    k.kind = T_ERROR;
                    push(&t, k);
                    rc = SL_EPARSE;
                    goto done;
                }
                if (*p == '\'' && p[1] == '\'') {
                    p += 2;
                    continue;
                }
                if (*p == '\'') break;
                if (*p == '\n') {
                    line++;
                    bol = p + 1;
                }
                p++;
            }
            p++;
            k.kind = T_STRING;
        } else if (isdigit(c) || (c == '.' && isdigit((unsigned char)p[1]))) {
            bool fl = false;
            while (isdigit((unsigned char)*p)) p++;
            if (*p == '.' && isdigit((unsigned char)p[1])) {
                fl = true;
                p++;
                while (isdigit((unsigned char)*p)) p++;
            } else if (*p == '.' && !isalpha((unsigned char)p[1])) {
                fl = true;
                p++;
            }
            if ((*p == 'e' || *p == 'E') &&
                (isdigit((unsigned char)p[1]) ||
                 ((p[1] == '+' || p[1] == '-') && isdigit((unsigned char)p[2])))) {
                fl = true;
                p += 2;
                while (isdigit((unsigned char)*p)) p++;
            }
            if (isalpha((unsigned char)*p) || *p == '_') {
                snprintf(err, errsz, "%d:%d: malformed number '%.*s'", k.line,
                         k.col, (int)(p - k.p + 1), k.p);
                k.kind = T_ERROR;
                push(&t, k);
                rc = SL_EPARSE;
                goto done;
            }
            k.kind = fl ? T_FLOAT : T_INT;
        } else {
            p++;
            switch (c) {
            case '(': k.kind = T_LPAREN; break;
            case ')': k.kind = T_RPAREN; break;
            case ',': k.kind = T_COMMA; break;
            case ';': k.kind = T_SEMI; break;
            case '.': k.kind = T_DOT; break;
            case '*': k.kind = T_STAR; break;
            case '+': k.kind = T_PLUS; break;
            case '-': k.kind = T_MINUS; break;
            case '/': k.kind = T_SLASH; break;
            case '%': k.kind = T_PERCENT; break;
            case '=': k.kind = T_EQ; if (*p == '=') p++; break;
            case '|':
                if (*p == '|') { p++; k.kind = T_CONCAT; break; }
                goto bad;
            case '!':
                if (*p == '=') { p++; k.kind = T_NE; break; }
                goto bad;
            case '<':
                if (*p == '=') { p++; k.kind = T_LE; }
                else if (*p == '>') { p++; k.kind = T_NE; }
                else k.kind = T_LT;
                break;
            case '>':
                if (*p == '=') { p++; k.kind = T_GE; }
                else k.kind = T_GT;
                break;
            default:
            bad:
                if (c >= 0x20 && c < 0x7f)
                    snprintf(err, errsz, "%d:%d: unexpected character '%c'",
                             k.line, k.col, c);
                else
                    snprintf(err, errsz, "%d:%d: unexpected byte 0x%02x",
                             k.line, k.col, c);
                k.kind = T_ERROR;
                k.len = 1;
                push(&t, k);
                rc = SL_EPARSE;
                goto done;
            }
        }
        k.len = (int)(p - k.p);
        push(&t, k);
    }
done:
    *toks = t.v;
    *ntoks = t.n;
    return rc;
}
