/* state.h — the state layer's interface. For now: in-memory lookup tables,
 * loaded whole before a job starts and read-only afterwards (so any number
 * of tasks may probe one table at once without locks).
 *
 * A table keeps its rows column-wise in chunks of up to SL__TABLE_CHUNK_MAX
 * rows (sl_batch, strings in each chunk's arena) and an open-addressing
 * index key -> row. Keys are INT64 or STRING; rows whose key is NULL are not
 * stored (they could never match). When a key appears twice, the last row
 * wins: the index points to it and sl_table_rows() counts the key once. */
#ifndef SL_STATE_H
#define SL_STATE_H

#include "core/core.h"

#define SL__TABLE_CHUNK 4096         /* rows of the first chunk */
#define SL__TABLE_CHUNK_MAX (1u << 18) /* later ones double up to this */

/* A new empty table with a copy of schema `s`, keyed by column key_col
 * (INT64 or STRING). Returns NULL if key_col is out of range or of another
 * type. Free with sl_table_free(). */
sl_table *sl__table_new(const sl_schema *s, int key_col);
/* Appends the rows of b (same column names and types as the table's
 * schema; the batch is borrowed). Returns 0, or SL_EINVAL (schema mismatch,
 * too many rows) with errstr set. */
int sl__table_append(sl_table *t, const sl_batch *b, char *errstr,
                     size_t errstr_size);

const sl_schema *sl__table_schema(const sl_table *t);
int sl__table_key_col(const sl_table *t);
/* Whether some stored row is NULL in column col (if not, readers may skip
 * the validity bytes). */
bool sl__table_has_nulls(const sl_table *t, int col);
/* Rows stored, including ones superseded by a later duplicate key. */
size_t sl__table_stored(const sl_table *t);

/* Lookups: 1 and the row's chunk and index in it, or 0 when absent. The
 * chunk is borrowed from the table and lives as long as it. */
int sl__table_find_i64(const sl_table *t, int64_t key, const sl_batch **chunk,
                       uint32_t *row);
int sl__table_find_str(const sl_table *t, const char *key, size_t len,
                       const sl_batch **chunk, uint32_t *row);

/* The same in two passes for batches: hash every key and prefetch its
 * index slot, then probe with the hash. */
uint64_t sl__table_hash_i64(int64_t key);
uint64_t sl__table_hash_str(const char *key, size_t len);
void sl__table_prefetch(const sl_table *t, uint64_t hash);
int sl__table_find_i64_h(const sl_table *t, int64_t key, uint64_t hash,
                         const sl_batch **chunk, uint32_t *row);
int sl__table_find_str_h(const sl_table *t, const char *key, size_t len,
                         uint64_t hash, const sl_batch **chunk, uint32_t *row);

#endif
