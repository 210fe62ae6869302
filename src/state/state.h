/* state.h — the state layer's interface: lookup tables, loaded whole
 * before a job starts and read-only afterwards (so any number of tasks may
 * probe one table at once without locks), kept in memory or, with
 * state.backend = rocksdb, in the process's RocksDB instance (the keyed
 * state store sl__ks below; docs/state.md); an in-memory table may get an
 * overlay of changed rows that a refresher replaces while the job runs.
 *
 * A table keeps its rows column-wise in chunks of up to SL__TABLE_CHUNK_MAX
 * rows (sl_batch, strings in each chunk's arena) and an open-addressing
 * index key -> row. Keys are INT64 or STRING; rows whose key is NULL are not
 * stored (they could never match). When a key appears twice, the last row
 * wins: the index points to it and sl_table_rows() counts the key once. */
#ifndef SL_STATE_H
#define SL_STATE_H

#include <stdio.h>

#include "core/core.h"
#include "core/runtime.h"

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

/* A projection of an in-memory INT64-keyed table onto one of its 8-byte
 * columns (INT64, TIMESTAMP, FLOAT64): key -> value with the value in the
 * slot, one cache line a probe; rows whose value is NULL are left out, so
 * a miss means "no row, or NULL". Built on first request, owned by the
 * table (freed with it); the table must not change afterwards. NULL for a
 * disk or STRING-keyed table or another column type. Thread-safe. */
typedef struct sl__tproj sl__tproj;
const sl__tproj *sl__table_proj(const sl_table *t, int col);
void sl__tproj_prefetch(const sl__tproj *pj, uint64_t hash);
/* hash: sl__table_hash_i64(key). 1 and *v = the value's 8 bytes if found. */
int sl__tproj_find(const sl__tproj *pj, int64_t key, uint64_t hash, uint64_t *v);
size_t sl__tproj_bytes(const sl__tproj *pj);

/* Reads the stored rows of an in-memory INT64-keyed table in append
 * order (duplicates of a key included), from ordinal *ordinal on, up to
 * max at a time: each row's key and its 8-byte value of column col with
 * its validity. Returns how many were read (0 at the end) and advances
 * *ordinal. The table must not change meanwhile. */
size_t sl__table_read_i64(const sl_table *t, int col, size_t *ordinal,
                          int64_t *key, uint64_t *val, uint8_t *valid, size_t max);
/* Grows a memory table's index at once to hold n keys, so that a load of
 * a known size does not double its way there. Never shrinks. */
void sl__table_reserve(sl_table *t, size_t n);

/* One object of the layer above kept with the table and freed with it by
 * ext_free (lookup.c keeps its pseudonym-join memo there, pjoin.c); the
 * table never reads it. Set once, before the table is shared. */
void sl__table_set_ext(sl_table *t, void *ext, void (*ext_free)(void *));
void *sl__table_ext(const sl_table *t);

/* ---- tables on the state backend ---------------------------------------- */
/* As sl__table_new, on the backend sc names (NULL: memory). A RocksDB
 * table keeps its rows in a column family of the process's instance and
 * no row in memory; find_* and prefetch then find nothing: probe it with
 * sl__table_fetch. Returns NULL with errstr set on failure. */
sl_table *sl__table_new_on(const sl_schema *s, int key_col,
                           const sl__state_conf *sc, char *errstr,
                           size_t errstr_size);
/* Whether the table lives on disk (rows come from sl__table_fetch). */
bool sl__table_on_disk(const sl_table *t);
/* Disk tables: for every DATA row i of b whose key (column bkey, same type
 * as the table's key) is not NULL, looks the key up; a found row is
 * appended to dst (the table's schema, cap >= b->n; cleared first, strings
 * in its arena) and row_of[i] is its index there, else row_of[i] is
 * UINT32_MAX. Safe from many threads at once. Returns 0 or SL_EIO. */
int sl__table_fetch(const sl_table *t, const sl_batch *b, int bkey,
                    sl_batch *dst, uint32_t *row_of, char *errstr,
                    size_t errstr_size);
/* After the last append: a disk table's memtables are written out (so
 * the write buffers are free for other states and the SST bytes count
 * every row) and its distinct keys counted (sl_table_rows is exact only
 * after this). A no-op in memory. */
int sl__table_seal(sl_table *t, char *errstr, size_t errstr_size);
/* Bytes of the table's SST files on disk (0 in memory). */
uint64_t sl__table_disk_bytes(const sl_table *t);

/* ---- the keyed state store: RocksDB, one instance per process ------------ */
/* One column family of the process's RocksDB instance (src/state/rocks.c).
 * All share one block cache and one write-buffer total under
 * sc->memory_bound; the first open creates the instance in sc->dir
 * (emptied first), the last drop closes and removes it. */
typedef struct sl__ks sl__ks;
typedef struct {
    const char *key;
    size_t klen;
    const char *val; /* NULL: delete key */
    size_t vlen;
    bool merge; /* a merge operand (sl__ks_open_merging), not a put */
} sl__ks_op;
/* bulk: the state is loaded once and then only read (a lookup table): no
 * compaction and no write stalls while it loads, one full compaction in
 * sl__ks_compact when it is complete, so reads then see one sorted run. */
sl__ks *sl__ks_open(const sl__state_conf *sc, bool bulk, char *errstr,
                    size_t errstr_size);
void sl__ks_drop(sl__ks *ks);
/* Applies ops[0..n) atomically (one write batch), in order. */
int sl__ks_write(sl__ks *ks, const sl__ks_op *ops, size_t n, char *errstr,
                 size_t errstr_size);
/* vals[i]: a copy of key i's value (free with sl__ks_value_free) or NULL
 * when absent. */
int sl__ks_multi_get(sl__ks *ks, size_t n, const char *const *keys,
                     const size_t *klen, char **vals, size_t *vlen,
                     char *errstr, size_t errstr_size);
void sl__ks_value_free(char *v);
/* Calls fn on every key starting with prefix, in key order, until fn
 * returns non-zero (returned). */
int sl__ks_scan(sl__ks *ks, const void *prefix, size_t plen,
                int (*fn)(void *arg, const char *k, size_t kl, const char *v,
                          size_t vl),
                void *arg, char *errstr, size_t errstr_size);
/* Writes the memtables out to SST files and waits. */
int sl__ks_flush(sl__ks *ks, char *errstr, size_t errstr_size);
/* Flushes, then compacts the whole column family (waits). */
int sl__ks_compact(sl__ks *ks, char *errstr, size_t errstr_size);
uint64_t sl__ks_disk_bytes(sl__ks *ks); /* SST bytes of this column family */
/* Refreshed tables. A table may carry an overlay: a table of the same
 * schema holding the rows changed since it was loaded, which lookups probe
 * first (sl__table_overlay, an acquire load: call it once per batch). The
 * refresher builds a whole new overlay (the old one's rows plus the new
 * changes: sl__table_append_table) and publishes it with
 * sl__table_set_overlay, from one thread; the replaced overlay stays
 * allocated until sl_table_free, as batches in flight may still point into
 * it. sl__table_on_free registers what sl_table_free calls first (to stop
 * the refresher). */
sl_table *sl__table_overlay(const sl_table *t);
void sl__table_set_overlay(sl_table *t, sl_table *ov);
int sl__table_append_table(sl_table *dst, const sl_table *src, char *errstr,
                           size_t errstr_size);
void sl__table_on_free(sl_table *t, void (*fn)(void *), void *arg);
/* Rows of `fresh` (same schema) that differ from, or are missing in, what
 * a lookup in t (overlay first) finds now. */
size_t sl__table_changes(const sl_table *fresh, const sl_table *t);

/* ---- table images (timage.c) -------------------------------------------- */
/* A 64-bit hash of n bytes chained from seed (four lanes, for checksums
 * of large inputs; not for hash tables or security). */
uint64_t sl__timage_hash(const void *p, size_t n, uint64_t seed);
/* Writes the binary image of loaded in-memory table t to path (temp file,
 * fsync, rename) with the caller's identity text. SL_EINVAL if t is not an
 * in-memory table without overlay or still has a STRING identifier column
 * (raw ids are never written); SL_EIO on a write error. */
int sl__timage_write(const sl_table *t, const char *path, const char *ident,
                     char *errstr, size_t errstr_size);
/* The table in the image at path if it is whole (hash), of this version
 * and was written with exactly `ident` for this schema and key column;
 * else NULL and `why` says what did not match ("no image", "source,
 * schema or keys changed", "corrupt ..."). */
sl_table *sl__timage_read(const char *path, const char *ident,
                          const sl_schema *schema, int key_col, char *why,
                          size_t why_size);

/* ---- the row cache in front of a disk table (rowcache.c) ----------------- */
/* A bounded 4-way set-associative cache of encoded rows (key bytes, value
 * bytes), one per disk table, safe from many threads at once (sharded
 * locks). Entries larger than max_row bytes (at most SL__ROWCACHE_MAX_ROW)
 * are not cached. Returns NULL when `bytes` cannot hold one set. */
#define SL__ROWCACHE_MAX_ROW 1024
typedef struct sl__rowcache sl__rowcache;
typedef struct {
    uint64_t hits, misses, inserts, evictions, too_large;
} sl__rowcache_counts;
sl__rowcache *sl__rowcache_new(size_t bytes, size_t max_row);
void sl__rowcache_free(sl__rowcache *c);
void sl__rowcache_clear(sl__rowcache *c);
/* Clears c if gen differs from the generation it was last synced to. */
void sl__rowcache_sync(sl__rowcache *c, uint64_t gen);
size_t sl__rowcache_bytes(const sl__rowcache *c); /* allocated */
size_t sl__rowcache_slots(const sl__rowcache *c);
uint64_t sl__rowcache_hash(const void *key, size_t klen); /* never 0 */
void sl__rowcache_prefetch(const sl__rowcache *c, uint64_t h);
/* Copies key's value into val (room for SL__ROWCACHE_MAX_ROW bytes) and
 * returns its length; SL__ROWCACHE_ABSENT when the cache knows the table
 * has no such key; SIZE_MAX when the key is not cached. A put of
 * SL__ROWCACHE_ABSENT as vlen (val unused) records an absent key. */
#define SL__ROWCACHE_ABSENT (SIZE_MAX - 1)
size_t sl__rowcache_get(sl__rowcache *c, uint64_t h, const void *key,
                        size_t klen, char *val);
void sl__rowcache_put(sl__rowcache *c, uint64_t h, const void *key, size_t klen,
                      const void *val, size_t vlen);
void sl__rowcache_stats(sl__rowcache *c, sl__rowcache_counts *out);

/* Disk table t's row cache, shared by every task that probes t: made on
 * the first call (after every table of the job is loaded) with t's share
 * of the row-cache part of state.memory.bound (docs/state.md), freed with
 * t. NULL for a memory table or when no bytes are left. */
sl__rowcache *sl__table_cache(const sl_table *t);
/* sl__table_fetch through cache c (NULL: straight to RocksDB): hits are
 * served from c, misses read in one sorted batched multi-get and added to
 * c; n (may be NULL) gets this batch's hits and misses added. c is
 * cleared first if the table was written since c last saw it. */
int sl__table_fetch_cached(const sl_table *t, sl__rowcache *c,
                           const sl_batch *b, int bkey, sl_batch *dst,
                           uint32_t *row_of, sl__rowcache_counts *n,
                           char *errstr, size_t errstr_size);
/* The keyed store: the row caches' part of the memory bound (bytes, all
 * caches of the process together; 0 when no instance is open), and a
 * batched multi-get of keys sorted in key order: fn(arg, i, value, vlen)
 * for every key i found, value borrowed for the call only. */
int64_t sl__ks_row_cache_bytes(void);
/* The part of a state.memory.bound that is split into shares (block
 * cache, row caches, write buffers, window caches): the bound less
 * SL__STATE_RESERVE, what the process needs beyond the shares whatever
 * the bound (blocks in flight in reads and compactions, iterators, write
 * batches, and glibc's slack from RocksDB's churn: measured, see
 * docs/state.md "Memory tuning"). */
#define SL__STATE_RESERVE ((int64_t)4 << 20)
int64_t sl__state_shares(int64_t bound);
/* Diagnostics (memprof.c): SLUICE_MEMPROF=<file> samples the process's
 * private memory and writes a breakdown at its peak when the process
 * exits; sl__ks_mem_props prints RocksDB's memory figures over every open
 * instance; sl__memprof_wincache is the window caches' bytes. */
void sl__memprof_start(void);
void sl__ks_mem_props(FILE *o);
extern _Atomic int64_t sl__memprof_wincache;
int sl__ks_multi_get_sorted(sl__ks *ks, size_t n, const char *const *keys,
                            const size_t *klen,
                            void (*fn)(void *arg, size_t i, const char *v,
                                       size_t vl),
                            void *arg, char *errstr, size_t errstr_size);
/* ---- window state on the store (src/ops/winrocks.c) ---------------------- */
/* As sl__ks_open (not bulk), with a compaction filter: during compactions
 * RocksDB drops every entry for which drop(arg, key, value) is true (state
 * TTL). drop runs on RocksDB's background threads: it may read only what
 * is safe to read concurrently (e.g. an atomic). NULL: no filter. */
sl__ks *sl__ks_open_filtered(const sl__state_conf *sc,
                             bool (*drop)(void *arg, const char *k, size_t kl,
                                          const char *v, size_t vl),
                             void *arg, char *errstr, size_t errstr_size);
/* Merges one key's stored value (base, NULL when none) with the merge
 * operands written after it (oldest first) into out (appended); 0, or
 * nonzero when something does not parse (RocksDB then reports the key as
 * corrupt). Runs on any thread, RocksDB's background threads included. */
typedef int (*sl__ks_merge_fn)(void *arg, const char *base, size_t blen,
                               const char *const *ops, const size_t *olen, int n,
                               sl__buf *out);
/* As sl__ks_open_filtered (drop may be NULL), with a merge operator: ops
 * with .merge are folded into the key's value by merge when it is read
 * or compacted. marg_free(marg) runs when RocksDB lets go of the operator
 * (it may outlive sl__ks_drop: marg must stay safe to call until then). */
/* A merge operator for an instance of its own (sl__ks_open_own,
 * sl__ks_open_ro): fn(arg, ...) as above; arg_free(arg), when not NULL,
 * runs when RocksDB lets go of the operator, or when the open fails. */
typedef struct {
    sl__ks_merge_fn fn;
    void *arg;
    void (*arg_free)(void *arg);
} sl__ks_merger;
sl__ks *sl__ks_open_merging(const sl__state_conf *sc,
                            bool (*drop)(void *arg, const char *k, size_t kl,
                                         const char *v, size_t vl),
                            void *arg, sl__ks_merge_fn merge, void *marg,
                            void (*marg_free)(void *marg), char *errstr,
                            size_t errstr_size);
/* Returns the free pages inside the process's heap to the system
 * (malloc_trim): after a window cache eviction, so the freed groups and
 * RocksDB's churn do not stay resident. */
void sl__ks_trim(void);
/* A RocksDB integer property of ks's column family (ks NULL: of the
 * instance, e.g. "rocksdb.block-cache-usage"); 0 when unknown. */
uint64_t sl__ks_property(sl__ks *ks, const char *name);
/* A forward iterator over one column family, in key order, seeing the
 * state as it was when it was created. The key and value pointers live
 * until the next move. */
typedef struct sl__ks_iter sl__ks_iter;
sl__ks_iter *sl__ks_iter_new(sl__ks *ks);
void sl__ks_iter_seek(sl__ks_iter *it, const void *key, size_t klen);
bool sl__ks_iter_valid(const sl__ks_iter *it);
void sl__ks_iter_next(sl__ks_iter *it);
const char *sl__ks_iter_key(const sl__ks_iter *it, size_t *klen);
const char *sl__ks_iter_value(const sl__ks_iter *it, size_t *vlen);
/* 0, or SL_EIO when the iteration stopped on an error. Frees it. */
int sl__ks_iter_free(sl__ks_iter *it, char *errstr, size_t errstr_size);
/* Deletes every key in [begin, end) (one range tombstone). */
int sl__ks_delete_range(sl__ks *ks, const void *begin, size_t blen,
                        const void *end, size_t elen, char *errstr,
                        size_t errstr_size);
/* Keys in the column family, counted by a full scan (tests, stats). */
uint64_t sl__ks_count(sl__ks *ks);

/* ---- a state in a RocksDB instance of its own (incremental checkpoints) -- */
/* Opens (creating) the instance in dir, emptied first when fresh; it shares
 * the process instance's block cache and options (and holds a reference on
 * it), with wbuf bytes of write buffers; drop as sl__ks_open_filtered;
 * merge (or NULL) as sl__ks_open_merging, taken over even on failure.
 * sl__ks_drop closes it and removes dir unless sl__ks_keep_files. */
sl__ks *sl__ks_open_own(const sl__state_conf *sc, const char *dir, bool fresh,
                        int64_t wbuf,
                        bool (*drop)(void *arg, const char *k, size_t kl,
                                     const char *v, size_t vl),
                        void *arg, const sl__ks_merger *merge, char *errstr,
                        size_t errstr_size);
/* Opens a RocksDB checkpoint's files in dir read-only (its default column
 * family), with merge (or NULL) to fold the merge operands they hold;
 * sl__ks_drop closes it and leaves the files. */
sl__ks *sl__ks_open_ro(const char *dir, const sl__ks_merger *merge, char *errstr,
                       size_t errstr_size);
void sl__ks_keep_files(sl__ks *ks);
/* A RocksDB checkpoint of an own instance into dir (which must not exist,
 * on the same file system for hard links): memtables flushed, SST files
 * hard-linked, MANIFEST, CURRENT and OPTIONS copied. */
int sl__ks_checkpoint(sl__ks *ks, const char *dir, char *errstr, size_t errstr_size);

#endif
