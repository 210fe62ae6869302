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

#include <string.h>

#include "core/runtime.h"

/* ---- keyring ------------------------------------------------------------- */
/* Keys in file order; the last one is the current key. A key's VALID_FROM
 * (optional third field, epoch ms) is SL_TS_MIN when absent. These exist for
 * key rotation at event-time boundaries; today only the current key is used. */
int sl__keyring_nkeys(const sl_keyring *k);
const char *sl__keyring_key_id(const sl_keyring *k, int i);
int64_t sl__keyring_valid_from(const sl_keyring *k, int i);
/* Index of the key named id, or -1. */
int sl__keyring_find(const sl_keyring *k, const char *id);
/* Processing domains: key i belongs to `domain` if its id is the domain
 * or starts with "domain:" (NULL or "" = every key). */
bool sl__keyring_in_domain(const sl_keyring *k, int i, const char *domain);
/* Rotation: the key of `domain` valid at `at` (epoch ms): the last one in
 * file order whose VALID_FROM <= at; -1 if none. */
int sl__keyring_select(const sl_keyring *k, const char *domain, int64_t at);
/* 0 if the domain has keys and every VALID_FROM is a multiple of
 * period_ms (0 = no rotation); else an error naming the key. */
int sl__keyring_check_rotation(const sl_keyring *k, const char *domain,
                               int64_t period_ms, char *errstr,
                               size_t errstr_size);
/* A 32-byte subkey of key i for one purpose: HMAC-SHA-256(secret, label).
 * Labels in use: "sluice/aes-256-gcm/v1", "sluice/dp-noise/v1". */
void sl__keyring_derive(const sl_keyring *k, int i, const char *label,
                        uint8_t out[32]);

/* ---- keyed HMAC-SHA-256 -------------------------------------------------- */
/* One keyed MAC context: the inner and outer SHA-256 states after the
 * padded key are computed once, and every message costs two compressions
 * plus two state copies. Not thread-safe: one per task. */
typedef struct sl__hmac sl__hmac;

/* Keyed with the keyring's current key. Returns NULL (errstr says why) if
 * OpenSSL cannot provide SHA-256. */
sl__hmac *sl__hmac_new(const sl_keyring *k, char *errstr, size_t errstr_size);
/* Keyed with key i of the keyring (rotation: one context per key in use). */
sl__hmac *sl__hmac_new_key(const sl_keyring *k, int i, char *errstr,
                           size_t errstr_size);
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

/* A bounded raw id -> pseudonym cache (pcache.c: sets of one cache line,
 * 3 ways, the oldest entry of a set makes room), memory only: it is never
 * snapshotted and starts empty after recovery. It grows while full sets
 * keep dropping entries, up to 2^bits / 4 sets of 3 entries; ids other than 1..18
 * digits bypass it. Safe for any number of threads at once: reads take no
 * lock. The keyring owns one per key (sl__keyring_pcache), shared by every
 * task and by the table loads pseudonymising under that key. */
typedef struct sl__pcache sl__pcache;
#define SL__PCACHE_BITS 24 /* the keyring's caches: 2^22 sets, 256 MiB at most */
sl__pcache *sl__pcache_new(int bits);
void sl__pcache_free(sl__pcache *c);
/* Cache statistics since creation (hits, misses), for tests and metrics. */
void sl__pcache_stats(const sl__pcache *c, uint64_t *hits, uint64_t *misses);
/* Grows the table at once to hold about n ids (one a set, within its
 * bound), so a load of a known size does not double its way there
 * (each doubling touches a fresh table). Never shrinks. */
void sl__pcache_reserve(sl__pcache *c, uint64_t n);
/* Bytes of the current table (0 for NULL). */
size_t sl__pcache_bytes(sl__pcache *c);
/* Pseudonyms under h of ids[0..n) into out[0..n) (0 for an invalid row),
 * through cache c (NULL: a MAC per row); out may overlay ids. */
void sl__pcache_pseudo(sl__pcache *c, sl__hmac *h, const sl_str *ids,
                       const uint8_t *valid, int64_t *out, uint32_t n);
/* The exact number an id of 1..18 digits is kept under: 10^len + value
 * (never 0), else 0 (not cached). Eight digits at a time where the byte
 * order allows (as csv.c parses). Inline: it runs once per event. */
static inline uint64_t sl__pcache_pack(const char *s, uint32_t len)
{
    static const uint64_t pow10[19] = {
        1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL,
        10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL,
        100000000000ULL, 1000000000000ULL, 10000000000000ULL,
        100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
        100000000000000000ULL, 1000000000000000000ULL};
    if (len == 0 || len > 18) return 0;
    uint64_t v = 0;
    uint32_t i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        /* all eight bytes '0'..'9' */
        if (((w & 0xF0F0F0F0F0F0F0F0ULL) |
             (((w + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4)) !=
            0x3333333333333333ULL)
            return 0;
        w -= 0x3030303030303030ULL;
        w = w * 10 + (w >> 8);
        w = (((w & 0x000000FF000000FFULL) * 0x000F424000000064ULL) +
             (((w >> 16) & 0x000000FF000000FFULL) * 0x0000271000000001ULL)) >> 32;
        v = v * 100000000 + w;
    }
#endif
    for (; i < len; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9) return 0;
        v = v * 10 + d;
    }
    return pow10[len] + v;
}

/* Puts (keys[i], vals[i]) for every i with keys[i] != 0: packed ids
 * (sl__pcache_pack) whose pseudonyms are known (a table load's log,
 * sl__pjoin_warm). Counted as misses. */
void sl__pcache_fill(sl__pcache *c, const uint64_t *keys, const int64_t *vals,
                     uint32_t n);
/* The shared cache of key i of the keyring (i = -1: the current key),
 * created on first use with SL__PCACHE_BITS; owned by the keyring, freed
 * with it. NULL if there is no such key. */
sl__pcache *sl__keyring_pcache(const sl_keyring *k, int i);
/* The cache of the keyring key h was made from (sl__hmac_new,
 * sl__hmac_new_key), NULL for a MAC from a raw key. */
sl__pcache *sl__hmac_cache(const sl__hmac *h);

/* The pseudonym-join memo (pjoin.c): raw id -> (pseudonym, one 8-byte
 * value of a table pseudonymised under the same key), one cache line a
 * probe, for a pseudonymise operator fused with the lookup join after it.
 * Memory only, like the pseudonym cache. The load side: an sl__pjoin kept
 * with the table (sl__table_set_ext, freed by sl__pjoin_free) logs the
 * packed raw id of every stored row (sl__pjoin_log, rows whose id is
 * valid, in append order). */
typedef struct sl__pjoin sl__pjoin;
typedef struct sl__pjidx sl__pjidx;
sl__pjoin *sl__pjoin_new(sl__pcache *under);
void sl__pjoin_free(void *pj);
void sl__pjoin_log(sl__pjoin *pj, const sl_str *ids, const uint8_t *valid,
                   uint32_t n);
/* The memo of table t's 8-byte column col for pseudonyms under the key
 * whose cache is `under`, built on the first call (thread-safe); NULL if
 * t has no log, was loaded under another key, already has a memo of
 * another column, or col is not an 8-byte column. Owned by t; it holds
 * the loaded rows, never an overlay's (sl__pjoin_batch applies those). */
const sl__pjidx *sl__pjoin_index(const sl_table *t, int col,
                                 const sl__pcache *under);
/* Fills the cache of the table's key from its log (raw ids beside the
 * rows' pseudonyms), unless a memo has consumed the log or it was filled
 * already: a join that runs unfused (lookup.c) still finds every loaded
 * subscriber's pseudonym cached, as when loads filled the cache. */
void sl__pjoin_warm(const sl_table *t);
size_t sl__pjidx_entries(const sl__pjidx *x);
size_t sl__pjidx_bytes(const sl__pjidx *x);
/* b's column col holds raw ids (sl_str) and b already has the join's
 * schema (sl__batch_extend) with the joined column at oc: col becomes the
 * pseudonyms under h, in place (NULL id: NULL), and oc table t's column
 * tcol of the row under each pseudonym (NULL when none, for a NULL id and
 * for canary rows), taken from overlay ov (t's changed rows, loaded once
 * for the batch; NULL: none) where it has the pseudonym. Ids the memo
 * lacks go through cache c and the table's index. Adds the memo's hits
 * to *hits (NULL: not counted). */
void sl__pjoin_batch(const sl__pjidx *x, sl__pcache *c, sl__hmac *h,
                     const sl_table *t, const sl_table *ov, int tcol,
                     sl_batch *b, int col, int oc, uint64_t *hits);

/* Converts `in` (column `col` STRING) into a new batch of schema `out`
 * (from sl__pseudo_schema) and in's capacity: every other
 * column and the record kinds are copied, `col` becomes the pseudonyms
 * (NULL stays NULL) and the raw ids are not copied. `cache` may be NULL.
 * `in` is not modified; the caller frees it. */
sl_batch *sl__pseudo_batch(sl__hmac *h, sl__pcache *cache, const sl_batch *in,
                           int col, const sl_schema *out);

/* Copies column sc of src's rows (0..src->n) into column dc of dst, both
 * of type t, with validity; strings of non-NULL rows that lie in src's
 * arena are copied into dst's, others (which outlive the job, see sl_str)
 * are referenced; NULL rows get an empty string, whatever src holds there.
 * dst's length is not changed. A generic batch helper that could move to
 * core. */
void sl__ops_copy_column(sl_batch *dst, int dc, const sl_batch *src, int sc,
                         sl_type t);

/* ---- operator definitions (configurations are heap-owned by the job) ---- */
typedef struct {
    int col;                 /* STRING column of the input to replace */
    const sl_keyring *keys;  /* borrowed */
    int cache_bits;          /* log2 of the cache entries; 0 = no cache */
    /* Set by sl_stream_lookup when a lookup join on the pseudonym follows
     * at once (the fusion rule): its table, the one 8-byte column it
     * appends and its output schema (the lookup node's). */
    const sl_table *join_table; /* borrowed; NULL: not fused */
    int join_tcol;
    const sl_schema *join_out;  /* the job's */
} sl__pseudo_conf;
extern const sl__op_vt sl__op_pseudonymise;

/* Rotating pseudonymisation: a row's key is the domain's key valid at the
 * start of its rotation period floor(ts / period_ms) * period_ms. */
typedef struct {
    int col;                 /* STRING column of the input to replace */
    const sl_keyring *keys;  /* borrowed */
    char *domain;            /* owned; NULL = every key */
    int64_t period_ms;       /* > 0 */
    int cache_bits;
} sl__pseudo_rot_conf;
extern const sl__op_vt sl__op_pseudonymise_rot;

typedef struct {
    int key_col;             /* key column in the input */
    const sl_table *table;   /* borrowed */
    int ncols;
    int tcols[SL_MAX_COLS];  /* table columns appended, in order */
    bool fused;              /* the pseudonymise operator before it may join */
} sl__lookup_conf;
extern const sl__op_vt sl__op_lookup;

/* Lookup-table loading (lookup.c) and refreshing (table_refresh.c). */
int sl__table_load_all(const sl__source_vt *vt, void *st, sl_table *t,
                       const sl_schema *schema, sl__hmac *const *h, int nh,
                       int kc, const sl_schema *tschema, char *errstr,
                       size_t errstr_size);
typedef struct {
    int64_t interval_ms; /* refresh.interval.ms, 0 = never */
    const char *column;  /* refresh.column: when a row last changed */
    int64_t slack_ms;    /* refresh.slack.ms: how far back each poll reaches */
    const char *where;   /* the user's own `where`, or NULL */
} sl__refresh_opts;
/* Takes the refresh.* keys out of a table's configuration: *kv gets the
 * rest (pointers into conf; free the array). Refreshing needs connector
 * "postgres". */
int sl__refresh_opts_parse(const char *connector, const char *const *conf,
                           sl__refresh_opts *o, const char ***kv, char *errstr,
                           size_t errstr_size);
int64_t sl__refresh_wall_ms(void);
/* Starts a thread that polls the source for rows changed since the load
 * began (load_start_ms) and publishes them as t's overlay; sl_table_free(t)
 * stops it. Copies what it keeps. */
int sl__refresh_start(sl_table *t, const sl__source_vt *vt, const char *const *kv,
                      const sl__refresh_opts *o, const sl_schema *schema, int kc,
                      const sl_schema *tschema, const sl_keyring *pseudo,
                      const sl_rotation *rot, int64_t load_start_ms, char *errstr,
                      size_t errstr_size);

typedef struct {
    int col;   /* INT64 count column */
    int64_t k; /* >= 2 */
} sl__kanon_conf;
extern const sl__op_vt sl__op_kanon;

/* Removes the rows with keep[i] == 0 in place (order and strings of the
 * others are kept); returns the new length. */
uint32_t sl__ops_compact(sl_batch *b, const uint8_t *keep);

/* ---- AES-256-GCM (encrypt.c) --------------------------------------------- */
/* One key, reused contexts; not thread-safe. */
typedef struct sl__gcm sl__gcm;
sl__gcm *sl__gcm_new(const uint8_t key[32], char *errstr, size_t errstr_size);
void sl__gcm_free(sl__gcm *g);
/* ct has n bytes. 0 or SL_ECRYPTO. */
int sl__gcm_seal(sl__gcm *g, const uint8_t iv[12], const void *aad,
                 size_t aadlen, const void *pt, size_t n, uint8_t *ct,
                 uint8_t tag[16]);
/* 0, SL_ECORRUPT when the tag does not match (pt is wiped), SL_ECRYPTO. */
int sl__gcm_open(sl__gcm *g, const uint8_t iv[12], const void *aad,
                 size_t aadlen, const uint8_t *ct, size_t n,
                 const uint8_t tag[16], uint8_t *pt);

typedef struct {
    const sl_keyring *keys; /* borrowed */
    int key;                /* index of the key in the keyring */
    bool synthetic;         /* SL_NONCE_SYNTHETIC */
    int ncols;
    int cols[SL_MAX_COLS];  /* columns to encrypt (become STRING) */
} sl__encrypt_conf;
extern const sl__op_vt sl__op_encrypt;
sl_schema *sl__encrypt_schema(const sl_schema *in, const int *cols, int n);

/* ---- differential privacy (dp.c) ----------------------------------------- */
/* 0, or SL_EINVAL naming the bad parameter. */
int sl__dp_spec_check(const sl_dp_spec *d, char *errstr, size_t errstr_size);
/* Discrete Laplace (two-sided geometric) noise of scale `scale` from 32
 * random bytes (only the first 16 are used). */
int64_t sl__dp_discrete_laplace(const uint8_t rnd[32], double scale);
/* Gaussian noise N(0, sigma^2) rounded to the nearest integer, from 32
 * uniform bytes (Box-Muller over two 53-bit uniforms). */
int64_t sl__dp_gaussian(const uint8_t rnd[32], double sigma);
/* The smallest sigma for which adding N(0, sigma^2) to a query of L2
 * sensitivity l2 is (epsilon, delta)-DP: the analytic Gaussian mechanism
 * (Balle and Wang, ICML 2018, Theorem 8), solved by bisection; valid for
 * every epsilon > 0 (the classical sqrt(2 ln(1.25/delta)) bound needs
 * epsilon < 1 and is larger). */
double sl__dp_gaussian_sigma(double epsilon, double delta, double l2);

typedef struct {
    int sub_col;     /* INT64 pseudonym column; the stream's key */
    sl_dp_spec spec; /* key_id unused */
} sl__dpbound_conf;
extern const sl__op_vt sl__op_dp_bound;
/* Rows dropped by an open dp_bound instance: over the contribution bound,
 * budget spent, NULL subscriber or time. */
void sl__dp_bound_stats(const void *st, uint64_t *over, uint64_t *exhausted,
                        uint64_t *null_sub);

typedef struct {
    sl_dp_spec spec;        /* key_id resolved into key */
    const sl_keyring *keys; /* borrowed */
    int key;
    int ncols;
    int cols[SL_MAX_COLS];  /* INT64 count columns to noise */
} sl__dpnoise_conf;
extern const sl__op_vt sl__op_dp_noise;

/* ---- time blurring (blur.c) ---------------------------------------------- */
/* The keyed MAC for blurring (subkey "sluice/time-blur/v1" of the current
 * key), and the noise in [-bound, bound] for (pseudonym, bucket). */
sl__hmac *sl__blur_mac(const sl_keyring *keys, char *errstr, size_t errstr_size);
int64_t sl__blur_noise(sl__hmac *mac, int64_t sub, int64_t bucket, int64_t bound);

/* ---- lookup table images (limage.c) ------------------------------------- */
/* Whether a table may come from its image, and the identity it must have. */
typedef struct {
    char *ident;        /* NULL: this table has no image */
    char path[1200], dir[1100], src[4096];
} sl__limg;
/* Fills li for a table of `connector` with options conf (source schema,
 * key column kc, table schema; for a pseudonymised table the nh MAC
 * contexts h[] made from keys' keys kidx[]). Returns 1 if the table has
 * an image path (li->ident set), 0 if not; never fails. */
int sl__limg_prepare(sl__limg *li, const sl__state_conf *sc, const char *connector,
                     const char *const *conf, const sl_schema *schema, int kc,
                     const sl_schema *tschema, const sl_keyring *keys,
                     const int *kidx, sl__hmac *const *h, int nh);
/* The table from the image if it matches (logged either way), else NULL. */
sl_table *sl__limg_open(sl__limg *li, const sl_schema *tschema, int kc);
/* Writes the loaded table's image (a failure is logged, not returned). */
void sl__limg_save(sl__limg *li, const sl_table *t);
void sl__limg_close(sl__limg *li);

#endif
