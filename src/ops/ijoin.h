/* ijoin.h — the interval join of a keyed stream with itself (ijoin.c):
 * the ops layer's interface for it, shared with its unit test. */
#ifndef SL_OPS_IJOIN_H
#define SL_OPS_IJOIN_H

#include "core/runtime.h"

extern const sl__op_vt sl__ijoin_vt;

/* The checking half of sl_stream_interval_join(): validates spec against
 * the input schema `in` (keys: the stream's key, NULL-terminated or NULL;
 * time_col: its event-time column) and builds the definition (*conf, freed
 * by sl__ijoin_vt.conf_free) and the output schema (*out, freed by the
 * caller). Errors start with "interval_join: " and name the field. */
int sl__ijoin_conf_new(void **conf, sl_schema **out, const sl_schema *in,
                       const char *const *keys, const char *time_col,
                       const sl_interval_join_spec *spec, char *errstr,
                       size_t errstr_size);

#endif
