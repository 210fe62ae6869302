/* sinkconf.h — configuration checks the table sinks (SQLite, PostgreSQL)
 * share: the `key` option as column indices, and upsert's need of one. */
#ifndef SL_IO_SINKCONF_H
#define SL_IO_SINKCONF_H

#include "core/core.h"

/* Splits `list` ("a, b,c") on commas into indices of columns of `in`
 * (cols has room for SL_MAX_COLS). Errors name the sink ("sqlite sink"),
 * the key option and the offending column: empty or over-long names,
 * unknown columns, a column listed twice, an empty list. */
int sl__sink_key_cols(const char *sink, const char *list, const sl_schema *in,
                      int *cols, int *ncols, char *errstr, size_t errstr_size);

/* Parses c_key (if set) into cols/ncols and refuses mode upsert without a
 * key. upsert: whether the sink's mode is upsert. */
int sl__sink_key_conf(const char *sink, const char *c_key, bool upsert,
                      const sl_schema *in, int *cols, int *ncols,
                      char *errstr, size_t errstr_size);

#endif
