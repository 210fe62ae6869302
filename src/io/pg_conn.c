/* pg_conn.c — connections to PostgreSQL for the postgres sink and source:
 * opening one from a dsn or the PG* environment variables, the session
 * settings sluice relies on, telling retriable failures from fatal ones,
 * and the quoting helpers both connectors use to build SQL text.
 *
 * It does not retry by itself: the sink decides when to reconnect (with
 * back-off) and the source gives up at once, since a lookup table is
 * loaded before the job starts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/pg.h"

static void no_notice(void *arg, const char *message)
{
    (void)arg, (void)message; /* "relation already exists, skipping" etc. */
}

/* One line: libpq messages end with a newline and may hold several. */
static void one_line(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ') s[--n] = '\0';
}

/* Messages that say the server answered and refused us. */
static bool refused(const char *msg)
{
    static const char *const fatal[] = {
        "password authentication failed", "does not exist",
        "no password supplied", "no pg_hba.conf entry", "authentication failed",
        "invalid connection option", "missing \"=\"", "invalid URI",
        "invalid sslmode", "permission denied"};
    for (size_t i = 0; i < sizeof fatal / sizeof *fatal; i++)
        if (strstr(msg, fatal[i])) return true;
    return false;
}

int sl__pg_connect(const sl__pg_opts *o, PGconn **out, char *errstr,
                   size_t errstr_size)
{
    char timeout[24];
    snprintf(timeout, sizeof timeout, "%lld", (long long)o->connect_timeout_s);
    const char *const keys[] = {"dbname", "connect_timeout",
                                "fallback_application_name", NULL};
    const char *const vals[] = {o->dsn ? o->dsn : "", timeout, "sluice", NULL};
    *out = NULL;
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c)
        return sl__err(errstr, errstr_size, SL_ENOMEM,
                       "postgres: cannot allocate a connection");
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[768];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
        one_line(msg);
        bool fatal = refused(msg);
        int rc = sl__err(errstr, errstr_size, fatal ? SL_EINVAL : SL_EIO,
                         "postgres: cannot connect to database \"%s\" as "
                         "\"%s\" on %s port %s: %s (%s)",
                         PQdb(c) ? PQdb(c) : "?", PQuser(c) ? PQuser(c) : "?",
                         PQhost(c) ? PQhost(c) : "?",
                         PQport(c) ? PQport(c) : "?", msg,
                         fatal ? "fatal" : "retriable");
        PQfinish(c);
        return rc;
    }
    PQsetNoticeProcessor(c, no_notice, NULL);
    char set[128];
    snprintf(set, sizeof set,
             "SET statement_timeout = %lld; SET client_min_messages = warning; "
             "SET TIME ZONE 'UTC'",
             (long long)o->statement_timeout_ms);
    PGresult *fail = NULL;
    if (sl__pg_exec(c, set, &fail)) {
        char msg[512];
        int rc = sl__err(errstr, errstr_size, SL_EIO,
                         "postgres: setting up the session: %s",
                         sl__pg_message(c, fail, msg, sizeof msg));
        PQclear(fail);
        PQfinish(c);
        return rc;
    }
    *out = c;
    return 0;
}

bool sl__pg_retriable(PGconn *c, const PGresult *r)
{
    if (!c || PQstatus(c) != CONNECTION_OK) return true;
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!st) return r == NULL || PQresultStatus(r) == PGRES_FATAL_ERROR;
    return (!strncmp(st, "08", 2) && strcmp(st, "08P01")) || /* connection
                                      * exception, not a protocol error */
           !strncmp(st, "57P", 3) || /* admin shutdown, crash, starting up */
           !strcmp(st, "40001") ||   /* serialization failure */
           !strcmp(st, "40P01") ||   /* deadlock detected */
           !strcmp(st, "53300");     /* too many connections */
}

bool sl__pg_row_error(const PGresult *r)
{
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return st && (!strncmp(st, "22", 2) || !strncmp(st, "23", 2));
}

const char *sl__pg_message(PGconn *c, const PGresult *r, char *buf,
                           size_t size)
{
    const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *d = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;
    if (m)
        snprintf(buf, size, "%s%s%s (SQLSTATE %s)", m, d ? ": " : "",
                 d ? d : "", st ? st : "?");
    else
        snprintf(buf, size, "%s",
                 c && *PQerrorMessage(c) ? PQerrorMessage(c)
                                         : "connection lost");
    one_line(buf);
    return buf;
}

int sl__pg_exec(PGconn *c, const char *sql, PGresult **fail)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        PQclear(r);
        *fail = NULL;
        return 0;
    }
    *fail = r;
    return SL_EIO;
}

/* ---- text ---------------------------------------------------------------- */
void sl__pg_add(sl__pg_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = sl__xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void sl__pg_adds(sl__pg_buf *b, const char *s) { sl__pg_add(b, s, strlen(s)); }

void sl__pg_ident(sl__pg_buf *b, const char *name)
{
    sl__pg_add(b, "\"", 1);
    for (const char *q = name; *q; q++)
        sl__pg_add(b, *q == '"' ? "\"\"" : q, *q == '"' ? 2 : 1);
    sl__pg_add(b, "\"", 1);
}

void sl__pg_qname(sl__pg_buf *b, const char *name)
{
    const char *dot = strchr(name, '.');
    if (!dot) {
        sl__pg_ident(b, name);
        return;
    }
    char *schema = sl__xstrndup(name, (size_t)(dot - name));
    sl__pg_ident(b, schema);
    free(schema);
    sl__pg_add(b, ".", 1);
    sl__pg_ident(b, dot + 1);
}

void sl__pg_buf_free(sl__pg_buf *b)
{
    free(b->p);
    *b = (sl__pg_buf){0};
}

static bool is_ident(const char *s, size_t n)
{
    if (n == 0 || n > 63 || (s[0] >= '0' && s[0] <= '9')) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

bool sl__pg_is_name(const char *name)
{
    const char *dot = strchr(name, '.');
    if (!dot) return is_ident(name, strlen(name));
    return is_ident(name, (size_t)(dot - name)) &&
           is_ident(dot + 1, strlen(dot + 1));
}

const char *sl__pg_type(sl_type t)
{
    switch (t) {
    case SL_INT64: return "bigint";
    case SL_FLOAT64: return "double precision";
    case SL_BOOL: return "boolean";
    case SL_STRING: return "text";
    case SL_TIMESTAMP: return "timestamp with time zone";
    }
    return "text";
}

bool sl__pg_type_fits(sl_type t, const char *decl)
{
    switch (t) {
    case SL_INT64: return !strcmp(decl, "bigint") || !strcmp(decl, "numeric");
    case SL_FLOAT64: return !strcmp(decl, "double precision");
    case SL_BOOL: return !strcmp(decl, "boolean");
    case SL_STRING:
        return !strcmp(decl, "text") ||
               !strncmp(decl, "character varying", 17);
    case SL_TIMESTAMP:
        return !strcmp(decl, "timestamp with time zone") ||
               !strcmp(decl, "timestamp without time zone");
    }
    return false;
}
