/* privacy.h — the ops layer's internal interface for the privacy operators
 * (pseudonymise, k-anonymity) and the lookup join: keyring access, the keyed
 * HMAC-SHA-256 fast path, batch pseudonymisation shared by the pseudonymise
 * operator and the table loader, and the operator definitions that unit
 * tests drive directly.
 *
 * Ownership: everything returned by a _new is freed by the matching _free
 * (_free(NULL) is a no-op). Keyrings and tables are borrowed by the
 * operators and must outlive them. */
#ifndef SL_OPS_PRIVACY_H
#define SL_OPS_PRIVACY_H

#include "core/runtime.h"

/* ---- keyring ------------------------------------------------------------- */
/* Keys in file order; the last one is the current key. A key's VALID_FROM
 * (optional third field, epoch ms) is SL_TS_MIN when absent. These exist for
 * key rotation at event-time boundaries; today only the current key is used. */
int sl__keyring_nkeys(const sl_keyring *k);
const char *sl__keyring_key_id(const sl_keyring *k, int i);
int64_t sl__keyring_valid_from(const sl_keyring *k, int i);

/* ---- keyed HMAC-SHA-256 -------------------------------------------------- */
/* One keyed MAC context: the inner and outer SHA-256 states after the
 * padded key are computed once, and every message costs two compressions
 * plus two state copies. Not thread-safe: one per task. */
typedef struct sl__hmac sl__hmac;

/* Keyed with the keyring's current key. Returns NULL (errstr says why) if
 * OpenSSL cannot provide SHA-256. */
sl__hmac *sl__hmac_new(const sl_keyring *k, char *errstr, size_t errstr_size);
/* Keyed with raw key bytes of any length (RFC 2104: a key longer than the
 * 64-byte block is hashed first). For tests and for sl__hmac_new. */
sl__hmac *sl__hmac_new_raw(const uint8_t *key, size_t keylen, char *errstr,
                           size_t errstr_size);
void sl__hmac_free(sl__hmac *h);
/* The full 32-byte HMAC-SHA-256 of msg. */
void sl__hmac_full(sl__hmac *h, const void *msg, size_t len, uint8_t mac[32]);
/* The pseudonym: the first 64 bits of the MAC, read big-endian, as int64. */
int64_t sl__hmac_pseudo(sl__hmac *h, const void *msg, size_t len);

/* ---- batch pseudonymisation ---------------------------------------------- */
/* The schema `in` with STRING column `col` replaced, at the same index, by
 * an INT64 column `out_col` (identifier flag cleared: a pseudonym is what
 * may travel). Returns NULL if out_col names another column of `in`. */
sl_schema *sl__pseudo_schema(const sl_schema *in, int col, const char *out_col);

/* A bounded raw id -> pseudonym cache (direct-mapped, overwrite on
 * collision), memory only: it is never snapshotted and starts empty after
 * recovery. 2^bits entries of 32 bytes; ids longer than 23 bytes bypass it. */
typedef struct sl__pcache sl__pcache;
sl__pcache *sl__pcache_new(int bits);
void sl__pcache_free(sl__pcache *c);
/* Cache statistics since creation (hits, misses), for tests and metrics. */
void sl__pcache_stats(const sl__pcache *c, uint64_t *hits, uint64_t *misses);

/* Converts `in` (column `col` STRING) into a new batch of schema `out`
 * (from sl__pseudo_schema) and in's capacity: every other
 * column and the record kinds are copied, `col` becomes the pseudonyms
 * (NULL stays NULL) and the raw ids are not copied. `cache` may be NULL.
 * `in` is not modified; the caller frees it. */
sl_batch *sl__pseudo_batch(sl__hmac *h, sl__pcache *cache, const sl_batch *in,
                           int col, const sl_schema *out);

/* Copies column sc of src's rows (0..src->n) into column dc of dst, both
 * of type t, with validity; strings of non-NULL rows go into dst's arena
 * (NULL rows get an empty string, whatever src holds there). dst's length
 * is not changed. A generic batch helper that could move to core. */
void sl__ops_copy_column(sl_batch *dst, int dc, const sl_batch *src, int sc,
                         sl_type t);

/* ---- operator definitions (configurations are heap-owned by the job) ---- */
typedef struct {
    int col;                 /* STRING column of the input to replace */
    const sl_keyring *keys;  /* borrowed */
    int cache_bits;          /* log2 of the cache entries; 0 = no cache */
} sl__pseudo_conf;
extern const sl__op_vt sl__op_pseudonymise;

typedef struct {
    int key_col;             /* key column in the input */
    const sl_table *table;   /* borrowed */
    int ncols;
    int tcols[SL_MAX_COLS];  /* table columns appended, in order */
} sl__lookup_conf;
extern const sl__op_vt sl__op_lookup;

typedef struct {
    int col;   /* INT64 count column */
    int64_t k; /* >= 2 */
} sl__kanon_conf;
extern const sl__op_vt sl__op_kanon;

#endif
