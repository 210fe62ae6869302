/* pg.h — what the PostgreSQL connectors (pg_sink.c, pg_source.c) share:
 * connecting (pg_conn.c), classifying server errors as retriable or fatal,
 * and quoting SQL text. Only the io layer includes it. */
#ifndef SL_IO_PG_H
#define SL_IO_PG_H

#include <libpq-fe.h>

#include "core/runtime.h"

/* Connection settings every PostgreSQL connector takes. */
typedef struct {
    const char *dsn;          /* libpq conninfo or URI; "" = PG* variables */
    int64_t connect_timeout_s;
    int64_t statement_timeout_ms; /* 0 = none */
} sl__pg_opts;

/* Opens a connection: libpq's defaults and PG* environment variables fill
 * what the dsn leaves out; TLS is used when the server offers it (libpq's
 * sslmode=prefer unless the dsn says otherwise); the statement timeout is
 * set for the session and notices are silenced. On failure *out is NULL
 * and errstr holds the server's message with the target (never the
 * password). Returns 0, SL_EINVAL (the server refused us: wrong password,
 * no such database or role; retrying cannot help) or SL_EIO (unreachable
 * or not ready: retriable). */
int sl__pg_connect(const sl__pg_opts *o, PGconn **out, char *errstr,
                   size_t errstr_size);

/* Whether a failed result or a broken connection is worth retrying on a
 * new connection: the connection is gone, the server shuts down or starts
 * up, or the transaction was a serialisation or deadlock victim. */
bool sl__pg_retriable(PGconn *c, const PGresult *r);
/* Whether the failure is about one row's data (SQLSTATE class 22, data
 * exception, or 23, integrity constraint violation): the row can go to the
 * dead letters and the rest can go on. */
bool sl__pg_row_error(const PGresult *r);
/* The server's message for a failed result (or the connection's), on one
 * line, with its SQLSTATE. Points into buf. */
const char *sl__pg_message(PGconn *c, const PGresult *r, char *buf,
                           size_t size);

/* Runs a command that returns no rows; 0, or the failed result in *fail
 * (the caller PQclear()s it) and SL_EIO. */
int sl__pg_exec(PGconn *c, const char *sql, PGresult **fail);

/* A growable text buffer for SQL and COPY data. */
typedef struct {
    char *p;
    size_t len, cap;
} sl__pg_buf;
void sl__pg_add(sl__pg_buf *b, const char *s, size_t n);
void sl__pg_adds(sl__pg_buf *b, const char *s);
/* "name" with embedded quotes doubled. */
void sl__pg_ident(sl__pg_buf *b, const char *name);
/* A schema-qualified name "a"."b" from a.b (or "b"). */
void sl__pg_qname(sl__pg_buf *b, const char *name);
void sl__pg_buf_free(sl__pg_buf *b);
/* Whether name is [schema.]identifier of letters, digits and _, not
 * starting with a digit. */
bool sl__pg_is_name(const char *name);
/* PostgreSQL type for a column type, and whether a declared type
 * (format_type) holds the stream's type exactly. */
const char *sl__pg_type(sl_type t);
bool sl__pg_type_fits(sl_type t, const char *decl);

/* ---- the PostgreSQL sink task (pg_sinktask.c) drives a postgres sink ----
 * instance (at-least-once) and stores its input offsets in the transaction
 * of every chunk of rows the sink sends. `st` is the instance from
 * sl__sink_postgres.open. */
/* Runs in the open transaction of every chunk, after its rows and before
 * COMMIT: NULL, or the failed result (a retriable one makes the sink send
 * the chunk again on a new connection; PGRES_BAD_RESPONSE fails the sink).
 * *done = true: the chunk is known to be committed already (its offsets
 * are stored), so the transaction is rolled back and the chunk counts as
 * sent. Called again for every attempt, so it must only read its arg. */
typedef PGresult *(*sl__pg_hook_fn)(PGconn *db, void *arg, bool *done);
void sl__pg_sink_set_hook(void *st, sl__pg_hook_fn fn, void *arg);
/* Sends the buffered rows now, in one transaction with the hook; with no
 * rows buffered, runs the hook alone in a transaction. Same retries. */
int sl__pg_sink_send(void *st, char *errstr, size_t errstr_size);
/* Runs fn in a transaction on the sink's connection, again on a new
 * connection after a retriable failure. fn returns NULL or the failed
 * result. */
typedef PGresult *(*sl__pg_step_fn)(PGconn *db, void *arg);
int sl__pg_sink_tx(void *st, sl__pg_step_fn fn, void *arg, const char *what,
                   char *errstr, size_t errstr_size);
/* "schema"."name" in the sink table's schema (*out is malloc'd; returned). */
const char *sl__pg_sink_sibling(void *st, const char *name, char **out);

#endif
