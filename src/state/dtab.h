/* dtab.h — private to the state layer: the rows of a lookup table kept in
 * RocksDB (tabledisk.c), behind the sl_table functions of table.c. */
#ifndef SL_STATE_DTAB_H
#define SL_STATE_DTAB_H

#include "state/state.h"

typedef struct sl__dtab sl__dtab;
sl__dtab *sl__dtab_new(const sl_schema *s, int key_col, const sl__state_conf *sc,
                       char *errstr, size_t errstr_size);
void sl__dtab_free(sl__dtab *d);
/* Stores the rows of b with a non-NULL key (the last of equal keys wins);
 * adds to *stored the rows, and sets nulls[c] when a stored row is NULL in
 * column c. */
int sl__dtab_append(sl__dtab *d, const sl_batch *b, size_t *stored,
                    bool *nulls, char *errstr, size_t errstr_size);
/* Lookups through cache (NULL: none), see sl__table_fetch_cached. */
int sl__dtab_fetch(const sl__dtab *d, sl__rowcache *cache, const sl_batch *b,
                   int bkey, sl_batch *dst, uint32_t *row_of,
                   sl__rowcache_counts *n, char *errstr, size_t errstr_size);
/* d's shared row cache, made on the first call from the process's
 * row-cache budget, freed with d (NULL: no bytes left). */
sl__rowcache *sl__dtab_cache(sl__dtab *d);
uint64_t sl__dtab_disk_bytes(const sl__dtab *d);
/* Flushes the memtables and counts the distinct keys into *nkeys. */
int sl__dtab_seal(sl__dtab *d, size_t *nkeys, char *errstr, size_t errstr_size);

#endif
