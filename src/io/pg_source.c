/* pg_source.c — the "postgres" source: reads a PostgreSQL table (or a
 * query's result) once, to its end, as a bounded input of one partition.
 * Lookup tables use it (sl_table_load with connector "postgres"): the
 * subscriber table is streamed in batches of fetch.rows rows through a
 * server-side cursor, so memory stays bounded per batch however large the
 * table, and the loader pseudonymises the key column batch by batch as for
 * files.
 *
 * Each column of the schema is selected by name and converted on the
 * server: BIGINT as ::bigint, DOUBLE as ::float8, BOOLEAN as ::boolean,
 * VARCHAR as ::text, TIMESTAMP as epoch milliseconds (a date, timestamp or
 * timestamptz column; a date is midnight UTC). A column that is missing or
 * cannot be converted is an error at open naming it; the cursor runs in a
 * read-only REPEATABLE READ transaction, so the load sees one snapshot.
 *
 * It does not rewind (no position/seek), so it is no job source for
 * checkpointed jobs, and it does not follow changes. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/pg.h"

typedef struct {
    char *dsn;
    char *table;
    char *where;
    int64_t fetch_rows;
    int64_t connect_timeout_s;
    int64_t statement_timeout_ms;
} ps_conf;

static const sl__conf_def ps_defs[] = {
    {.key = "dsn", .type = SL_CONF_STR, .def = "",
     .offset = offsetof(ps_conf, dsn),
     .desc = "libpq connection string or URI; empty: the PG* environment "
             "variables"},
    {.key = "table", .type = SL_CONF_STR, .min = 1,
     .offset = offsetof(ps_conf, table),
     .desc = "table or view to read, [schema.]name"},
    {.key = "where", .type = SL_CONF_STR,
     .offset = offsetof(ps_conf, where),
     .desc = "optional SQL condition on the rows to read"},
    {.key = "fetch.rows", .type = SL_CONF_INT, .def = "10000", .min = 1,
     .max = 1000000, .offset = offsetof(ps_conf, fetch_rows),
     .desc = "rows fetched from the cursor at a time"},
    {.key = "connect.timeout.s", .type = SL_CONF_INT, .def = "10", .min = 1,
     .max = 3600, .offset = offsetof(ps_conf, connect_timeout_s),
     .desc = "timeout of the connection attempt"},
    {.key = "statement.timeout.ms", .type = SL_CONF_INT, .def = "600000",
     .min = 0, .max = 86400000,
     .offset = offsetof(ps_conf, statement_timeout_ms),
     .desc = "server-side statement_timeout of the session (0 = none)"},
    {.key = NULL},
};

typedef struct {
    const ps_conf *conf;
    const sl_schema *schema;
    PGconn *db;
    PGresult *res; /* the current FETCH, rows [row, ntuples) unread */
    int row;
    bool done;
    char fetch[64];
} ps_src;

static void ps_conf_free(void *conf)
{
    if (!conf) return;
    sl__conf_free(ps_defs, conf);
    free(conf);
}

static int ps_configure(void **conf, const char *const *kv,
                        const sl_schema *schema, char *errstr,
                        size_t errstr_size)
{
    (void)schema;
    ps_conf *c = sl__xcalloc(1, sizeof *c);
    int rc = sl__conf_apply(ps_defs, c, kv, "postgres source", NULL, errstr,
                            errstr_size);
    if (rc == 0 && !sl__pg_is_name(c->table))
        rc = sl__err(errstr, errstr_size, SL_EINVAL,
                     "postgres source: 'table' must be [schema.]name of "
                     "letters, digits and _, got '%s'", c->table);
    if (rc) {
        ps_conf_free(c);
        return rc;
    }
    *conf = c;
    return 0;
}

static int ps_partitions(const void *conf)
{
    (void)conf;
    return 1;
}

static void ps_close(void *st)
{
    ps_src *s = st;
    if (!s) return;
    PQclear(s->res);
    PQfinish(s->db);
    free(s);
}

static char *select_sql(const ps_src *s)
{
    sl__pg_buf b = {0};
    const sl_schema *sc = s->schema;
    sl__pg_adds(&b, "DECLARE sluice_load NO SCROLL CURSOR FOR SELECT ");
    for (int c = 0; c < sc->n; c++) {
        if (c) sl__pg_adds(&b, ", ");
        if (sc->cols[c].type == SL_TIMESTAMP) {
            sl__pg_adds(&b, "(extract(epoch from ");
            sl__pg_ident(&b, sc->cols[c].name);
            sl__pg_adds(&b, ") * 1000)::bigint");
            continue;
        }
        sl__pg_ident(&b, sc->cols[c].name);
        sl__pg_adds(&b, sc->cols[c].type == SL_INT64     ? "::bigint"
                        : sc->cols[c].type == SL_FLOAT64 ? "::float8"
                        : sc->cols[c].type == SL_BOOL    ? "::boolean"
                                                         : "::text");
    }
    sl__pg_adds(&b, " FROM ");
    sl__pg_qname(&b, s->conf->table);
    if (s->conf->where && *s->conf->where) {
        sl__pg_adds(&b, " WHERE ");
        sl__pg_adds(&b, s->conf->where);
    }
    return b.p;
}

static int ps_open(void **st, const void *conf, const sl_schema *schema,
                   const int *parts, int nparts, sl__ctx *ctx, char *errstr,
                   size_t errstr_size)
{
    (void)parts, (void)nparts, (void)ctx;
    ps_src *s = sl__xcalloc(1, sizeof *s);
    s->conf = conf;
    s->schema = schema;
    snprintf(s->fetch, sizeof s->fetch, "FETCH %lld FROM sluice_load",
             (long long)s->conf->fetch_rows);
    sl__pg_opts o = {.dsn = s->conf->dsn,
                     .connect_timeout_s = s->conf->connect_timeout_s,
                     .statement_timeout_ms = s->conf->statement_timeout_ms};
    int rc = sl__pg_connect(&o, &s->db, errstr, errstr_size);
    PGresult *f = NULL;
    if (rc == 0 &&
        sl__pg_exec(s->db, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                    &f) == 0) {
        char *sql = select_sql(s);
        sl__pg_exec(s->db, sql, &f);
        free(sql);
    }
    if (rc == 0 && f) {
        char msg[768];
        rc = sl__err(errstr, errstr_size, SL_EINVAL,
                     "postgres source: reading table %s: %s", s->conf->table,
                     sl__pg_message(s->db, f, msg, sizeof msg));
    }
    PQclear(f);
    if (rc) {
        ps_close(s);
        return rc;
    }
    *st = s;
    return 0;
}

static int put_value(sl_batch *out, int c, uint32_t r, sl_type t,
                     const char *v, int len)
{
    switch (t) {
    case SL_INT64:
    case SL_TIMESTAMP:
        return sl__parse_i64(v, &((int64_t *)out->cols[c].data)[r]);
    case SL_FLOAT64:
        return sl__parse_f64(v, &((double *)out->cols[c].data)[r]);
    case SL_BOOL:
        ((uint8_t *)out->cols[c].data)[r] = v[0] == 't';
        return 0;
    case SL_STRING:
        return sl_batch_set_str(out, c, r, v, (size_t)len);
    }
    return SL_EINVAL;
}

static int ps_read(void *st, sl_batch *out, int *part, char *errstr,
                   size_t errstr_size)
{
    ps_src *s = st;
    *part = 0;
    if (s->done) return SL_EEOF;
    if (!s->res || s->row >= PQntuples(s->res)) {
        PQclear(s->res);
        s->row = 0;
        s->res = PQexec(s->db, s->fetch);
        if (PQresultStatus(s->res) != PGRES_TUPLES_OK) {
            char msg[768];
            return sl__err(errstr, errstr_size, SL_EIO,
                           "postgres source: reading table %s: %s",
                           s->conf->table,
                           sl__pg_message(s->db, s->res, msg, sizeof msg));
        }
        if (PQntuples(s->res) == 0) {
            s->done = true;
            PGresult *f = NULL;
            sl__pg_exec(s->db, "COMMIT", &f);
            PQclear(f);
            return SL_EEOF;
        }
    }
    int n = 0;
    const sl_schema *sc = s->schema;
    while (s->row < PQntuples(s->res) && out->n < out->cap) {
        uint32_t r = out->n;
        for (int c = 0; c < sc->n; c++) {
            if (PQgetisnull(s->res, s->row, c)) {
                out->cols[c].valid[r] = 0;
                continue;
            }
            out->cols[c].valid[r] = 1;
            if (put_value(out, c, r, sc->cols[c].type,
                          PQgetvalue(s->res, s->row, c),
                          PQgetlength(s->res, s->row, c)))
                return sl__err(errstr, errstr_size, SL_EPARSE,
                               "postgres source: table %s: column \"%s\": "
                               "cannot read value '%s'", s->conf->table,
                               sc->cols[c].name,
                               sc->cols[c].identifier
                                   ? "(identifier, masked)"
                                   : PQgetvalue(s->res, s->row, c));
        }
        out->kind[r] = SL_KIND_DATA;
        out->n++;
        s->row++;
        n++;
    }
    return n;
}

const sl__source_vt sl__src_postgres = {
    .name = "postgres",
    .configure = ps_configure,
    .partitions = ps_partitions,
    .open = ps_open,
    .read = ps_read,
    .close = ps_close,
    .conf_free = ps_conf_free,
};
