/* sinkconf.c — the `key` option of the table sinks (SQLite, PostgreSQL):
 * column names to indices, with errors that name the sink and the column. */
#include <string.h>

#include "io/sinkconf.h"

int sl__sink_key_cols(const char *sink, const char *list, const sl_schema *in,
                      int *cols, int *ncols, char *errstr, size_t errstr_size)
{
    const char *p = list;
    *ncols = 0;
    while (*p) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        const char *e = end;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t')) e--;
        char name[256];
        size_t len = (size_t)(e - p);
        if (len == 0 || len >= sizeof name)
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "%s: 'key' must list column names separated by "
                           "commas, got '%s'", sink, list);
        memcpy(name, p, len);
        name[len] = '\0';
        int col = sl_schema_find(in, name);
        if (col < 0)
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "%s: 'key' column '%s' is not a column of the "
                           "stream", sink, name);
        for (int k = 0; k < *ncols; k++)
            if (cols[k] == col)
                return sl__err(errstr, errstr_size, SL_EINVAL,
                               "%s: 'key' lists column '%s' twice", sink, name);
        if (*ncols >= SL_MAX_COLS)
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "%s: 'key' lists more than %d columns", sink,
                           SL_MAX_COLS);
        cols[(*ncols)++] = col;
        p = comma ? comma + 1 : end;
    }
    if (*ncols == 0)
        return sl__err(errstr, errstr_size, SL_EINVAL,
                       "%s: 'key' must name at least one column", sink);
    return 0;
}

int sl__sink_key_conf(const char *sink, const char *c_key, bool upsert,
                      const sl_schema *in, int *cols, int *ncols,
                      char *errstr, size_t errstr_size)
{
    *ncols = 0;
    if (c_key && c_key[0]) {
        int rc = sl__sink_key_cols(sink, c_key, in, cols, ncols, errstr,
                                   errstr_size);
        if (rc) return rc;
    }
    if (upsert && *ncols == 0)
        return sl__err(errstr, errstr_size, SL_EINVAL,
                       "%s: mode 'upsert' needs 'key' (the result's key "
                       "columns, comma-separated)", sink);
    return 0;
}
