/* agg.h — aggregate accumulators (agg.c) and the window operator built on
 * them (window.c): the ops layer's interface for grouping operators.
 *
 * An aggregate (sl__agg) is resolved once against an input schema. Its state
 * lives inside a caller-owned block of bytes per group (the window operator's
 * group value), at offset a->off, a->size bytes long; an all-zero state is a
 * valid empty one, so a zero-filled block needs no further initialisation.
 * States that grow (exact and approximate distinct counts) own heap memory
 * that sl__agg_state_free releases.
 *
 * Results (NULL inputs are ignored everywhere):
 *   COUNT          INT64   rows (col NULL) or non-NULL values
 *   SUM            INT64 for INT64 input (wraps on overflow), DOUBLE for
 *                  DOUBLE; NULL when the group had no non-NULL value
 *   MIN, MAX       the input type (INT64, TIMESTAMP, DOUBLE); NaN ignored
 *   AVG            DOUBLE over INT64 or DOUBLE; NULL without values
 *   COUNT_DISTINCT INT64, exact: a hash set of the values (any type; strings
 *                  are kept whole, -0.0 counts as 0.0, NaNs as one value)
 *   APPROX_COUNT_DISTINCT INT64, HyperLogLog with 2^14 one-byte registers
 *                  (16 KiB per group, allocated at the first value)
 *   HISTOGRAM      STRING "c0,c1,...,cn" over n ascending bounds: bucket 0 is
 *                  (-inf, b0), bucket i is [b(i-1), b(i)), bucket n is
 *                  [b(n-1), +inf); INT64, TIMESTAMP or DOUBLE input; NaN
 *                  ignored
 *   APPROX_PERCENTILE DOUBLE: a quantile within relative error `accuracy`
 *                  of the exact one, from a DDSketch (quantile.c); INT64,
 *                  TIMESTAMP or DOUBLE input; NaN ignored
 *   UDAF           the user's out_type; a plain-bytes state of the user's
 *                  size, folded by its callbacks and checkpointed as is
 */
#ifndef SL_OPS_AGG_H
#define SL_OPS_AGG_H

#include "core/hashmap.h"
#include "core/runtime.h"

/* ---- HyperLogLog ---------------------------------------------------------- */
#define SL__HLL_P 14
#define SL__HLL_M (1u << SL__HLL_P)

/* Registers are allocated at the first add; an all-zero struct is empty. */
typedef struct {
    uint8_t *reg; /* SL__HLL_M registers, or NULL while empty */
} sl__hll;

void sl__hll_init(sl__hll *h);
void sl__hll_close(sl__hll *h);
/* Adds an element by its 64-bit hash (the top 14 bits pick the register). */
void sl__hll_add_hash(sl__hll *h, uint64_t hash);
/* Cardinality estimate: the raw HyperLogLog estimate, or linear counting
 * when that is at most 5/2 m and some register is still zero. */
uint64_t sl__hll_estimate(const sl__hll *h);
/* dst becomes the sketch of the union: register-wise maximum. */
void sl__hll_merge(sl__hll *dst, const sl__hll *src);
/* Serialised form: a format byte (0 empty, 1 dense, 2 sparse), then
 * SL__HLL_M registers (dense) or a uint32 count and (uint16 index, uint8
 * value) triples (sparse), whichever is smaller. Little-endian. */
size_t sl__hll_serialized_size(const sl__hll *h);
size_t sl__hll_serialize(const sl__hll *h, uint8_t *out);
/* Replaces h's contents; returns bytes read or SL_ECORRUPT. */
int64_t sl__hll_deserialize(sl__hll *h, const uint8_t *in, size_t len);

/* ---- DDSketch (quantile.c) ------------------------------------------------- */
#define SL__DDS_MAX_BUCKETS 2048u
#define SL__DDS_MIN_VALUE 1e-9
/* An all-zero struct is empty; the state is allocated at the first add. */
typedef struct {
    struct sl__dds_state *s;
} sl__dds;
void sl__dds_add(sl__dds *d, double x, double alpha);
void sl__dds_merge(sl__dds *dst, const sl__dds *src);
void sl__dds_close(sl__dds *d);
uint64_t sl__dds_count(const sl__dds *d);
/* The q-quantile estimate; false when empty. */
bool sl__dds_quantile(const sl__dds *d, double q, double alpha, double *out);
size_t sl__dds_serialized_size(const sl__dds *d);
size_t sl__dds_serialize(const sl__dds *d, uint8_t *out);
/* Replaces d's contents; returns bytes read or SL_ECORRUPT. */
int64_t sl__dds_deserialize(sl__dds *d, const uint8_t *in, size_t len);

/* ---- changelog of exact distinct-count sets (winchg.c) --------------------- */
/* While a window task's checkpoints are incremental, every value newly added
 * to an exact integer distinct-count set is appended here: the group's
 * dirty index (a u32 at log_off in its block, set before the add), the
 * aggregate's index and the set key. The log has a hard cap: past it the
 * entries stop and `over` says the next checkpoint must be a full one. */
typedef struct {
    uint32_t d, agg;
    uint64_t k;
} sl__chlog_ent;
typedef struct sl__chlog {
    sl__chlog_ent *e;
    size_t n, cap, max;
    bool over;
} sl__chlog;

/* ---- aggregates ------------------------------------------------------------ */
typedef struct {
    sl_agg_kind kind;
    int col;          /* input column, -1 for COUNT(*) */
    sl_type in_type;  /* the input column's type (COUNT(*): SL_INT64) */
    sl_type out_type;
    double *bounds;   /* HISTOGRAM: an owned copy of the bounds */
    uint32_t nbounds;
    const sl_udaf *udaf; /* UDAF: the user's aggregate */
    double q, alpha;     /* APPROX_PERCENTILE */
    uint32_t off;     /* offset of the state in a group's block */
    uint32_t size;    /* bytes of state, a multiple of 8 */
    sl__chlog *log;   /* exact integer COUNT_DISTINCT under incremental
                       * checkpoints (winchg.c), else NULL */
    uint32_t log_off, log_idx;
} sl__agg;

/* Resolves spec against the input schema; the state goes at offset `off`
 * (a multiple of 8) of the group block. Errors (SL_EINVAL) name the
 * aggregate by its `as` name: "aggregate 'n': MIN does not accept STRING
 * column 'x' (allowed: BIGINT, TIMESTAMP, DOUBLE)". */
int sl__agg_init(sl__agg *a, const sl_agg_spec *spec, const sl_schema *in,
                 uint32_t off, char *errstr, size_t errstr_size);
void sl__agg_close(sl__agg *a);
/* Whether the kind accepts an input column of type t. */
bool sl__agg_accepts(sl_agg_kind kind, sl_type t);
const char *sl__agg_kind_name(sl_agg_kind kind);

/* Every function below takes `grp`, the base of a group's state block. */
void sl__agg_state_init(const sl__agg *a, uint8_t *grp); /* zero-fills */
void sl__agg_state_free(const sl__agg *a, uint8_t *grp); /* back to empty */
/* Releases a's states in every value of m (groups of a window about to be
 * freed; the states are left as they are, not emptied). */
void sl__agg_states_free(const sl__agg *a, const sl__bmap *m);
/* Whether states of this aggregate own heap memory. */
bool sl__agg_has_heap(const sl__agg *a);
/* Adds n values of the batch: value i is row rows[i] (rows NULL: row i) and
 * goes into the group grp[i] (non-NULL). Rows are not filtered by kind. */
void sl__agg_add(const sl__agg *a, const sl_batch *b, const uint32_t *rows,
                 uint8_t *const *grp, uint32_t n);
/* dst's state becomes the aggregate of both groups' inputs. */
void sl__agg_merge(const sl__agg *a, uint8_t *dst, const uint8_t *src);
/* Writes the result into column `col`, row `row` of out (whose column type
 * is a->out_type); sets the validity. Returns 0 or SL_ENOMEM. */
int sl__agg_result(const sl__agg *a, const uint8_t *grp, sl_batch *out,
                   int col, uint32_t row);
/* The exact value of a COUNT or COUNT_DISTINCT state (what
 * sl__agg_result would write), for decisions such as k-anonymity. */
int64_t sl__agg_count_value(const sl__agg *a, const uint8_t *grp);
/* Checkpoint form of a state (little-endian, self-delimiting). */
/* The result of a COUNT or exact COUNT_DISTINCT into *n (never NULL);
 * false for other kinds. */
bool sl__agg_exact_count(const sl__agg *a, const uint8_t *grp, int64_t *n);
size_t sl__agg_serialized_size(const sl__agg *a, const uint8_t *grp);
size_t sl__agg_serialize(const sl__agg *a, const uint8_t *grp, uint8_t *out);
/* Replaces the state with the serialised one; returns bytes read, or
 * SL_ECORRUPT (the state is then empty). */
int64_t sl__agg_deserialize(const sl__agg *a, uint8_t *grp,
                            const uint8_t *in, size_t len);

/* ---- window group keys (winkey.c) ------------------------------------------ */
/* The key columns cols[0..nkey) of a window's input schema `in`. rowhash:
 * the key is the stream's routing key without FLOAT64 columns, so groups
 * are hashed from the routing hash (sl__key_hash). */
typedef struct {
    int nkey;
    const int *cols;
    const sl_schema *in;
    bool rowhash;
} sl__wkey;
#define SL__WKEY_SEED 0x77696e646f776b65ULL
/* Encodes row r's key at p (8 bytes of slack past the key are written);
 * returns its length. Per column a presence byte (0 = NULL), then integers
 * big-endian with the sign bit flipped, doubles order-preserving, bools as a
 * byte, strings with 0x00 escaped as 0x00 0xff and ended by 0x00 0x00. */
size_t sl__wkey_encode(const sl__wkey *k, const sl_batch *b, uint32_t r, uint8_t *p);
/* The same encoding for rows rows[0..n) of b, a column at a time: row j's
 * key at out + off[j], its length to len[j]. Row j's room, up to off[j+1],
 * must hold its longest encoding (per column 1 byte, 8 for an integer or
 * double, 1 for a bool, 2 * length + 2 for a string) plus 8 bytes. */
void sl__wkey_encode_rows(const sl__wkey *k, const sl_batch *b, const uint32_t *rows,
                          uint32_t n, uint8_t *out, const uint32_t *off, uint32_t *len);
/* Writes the key into output columns 2.. of row `row` of ob (strings in
 * ob's arena). */
void sl__wkey_decode(const sl__wkey *k, const uint8_t *key, uint32_t len,
                     sl_batch *ob, uint32_t row);
/* The hash of an encoded key in a window's group map. */
uint64_t sl__wkey_hash(const sl__wkey *k, const uint8_t *key, uint32_t len);
/* The group-map hash from a routing hash: mixed once more, since all rows
 * of a task share the routing hash's low bits (their key group). */
static inline uint64_t sl__wkey_mix(uint64_t routing_hash)
{
    return sl__mix64(SL__WKEY_SEED ^ routing_hash);
}
/* A group to sort by its encoded key: the key's first bytes as big-endian
 * words (zero-padded) decide most comparisons without touching the key
 * itself, a cache miss per key in a large window. */
#define SL__WKEY_PRE 3
typedef struct {
    uint64_t pre[SL__WKEY_PRE];
    const uint8_t *key, *grp;
    uint32_t len;
} sl__wkey_ref;
void sl__wkey_ref_init(sl__wkey_ref *r, const uint8_t *key, uint32_t len,
                       const uint8_t *grp);
/* Sorts ix[0..n) (indices into refs) by key; tmp has room for n. */
void sl__wkey_sort(const sl__wkey_ref *refs, uint32_t *ix, uint32_t *tmp, uint32_t n);

/* ---- the window operator (window.c) -------------------------------------- */
extern const sl__op_vt sl__window_vt;
/* ---- snapshot framing of keyed operators (opsnap.c) ------------------------ */
void sl__opsnap_header(sl__buf *b, uint32_t magic, uint64_t fp, int64_t wm);
/* Checks a section's key group and header; 0, SL_EINVAL (wrong key group or
 * a changed definition) or SL_ECORRUPT. *r is then past the header. */
int sl__opsnap_open(sl__rbuf *r, const void *data, size_t len, int32_t kg, int key_groups,
                    uint32_t magic, uint64_t fp, int64_t *wm);
void sl__opsnap_put_counters(sl__buf *b, const uint64_t *c, int n);
/* Adds n counters (n <= 8) read to the end of the section to c. */
int sl__opsnap_add_counters(sl__rbuf *r, uint64_t *c, int n);
/* A restored instance keeps the lowest watermark of its sections. */
void sl__opsnap_restore_wm(int64_t *op_wm, bool *restored, int64_t wm);

/* ---- session windows (session.c) ------------------------------------------ */
extern const sl__op_vt sl__session_vt;
/* The checking half of sl_stream_session(), as sl__window_conf_new. */
int sl__session_conf_new(void **conf, sl_schema **out, const sl_schema *in,
                         const char *const *keys, const char *time_col,
                         const sl_session_spec *spec, const sl_agg_spec *aggs,
                         size_t naggs, char *errstr, size_t errstr_size);

/* Validates a window definition against the input stream and builds the
 * operator's configuration (*conf, freed by sl__window_vt.conf_free) and
 * output schema (*out, freed by the caller with sl_schema_free). keys is
 * the stream's key (NULL-terminated, NULL = unkeyed), time_col its event
 * time column (NULL = none: an error). Errors start with "window: " and name
 * the offending field. This is the checking half of sl_stream_window(). */
int sl__window_conf_new(void **conf, sl_schema **out, const sl_schema *in,
                        const char *const *keys, const char *time_col,
                        const sl_window_spec *w, const sl_agg_spec *aggs,
                        size_t naggs, char *errstr, size_t errstr_size);

/* k-anonymity pushed into the window (sl_stream_k_anon on a window's
 * output): the window then drops, as it fires, every group whose output
 * column `col` (a COUNT or exact COUNT_DISTINCT) is below k, and counts it
 * as suppressed, so small groups are never sorted or emitted; the k_anon
 * operator after it finds nothing left to drop. Returns false (nothing
 * changed) when col is not such an aggregate or the window folds. */
bool sl__window_conf_min_count(void *conf, const char *col, int64_t k);

/* k-anonymity by folding, applied by the window operator as it fires
 * (kanon.c; built by sl_stream_window_fold). The window groups by the
 * stream's key (npart columns: the partitioning, never folded) plus extra
 * grouping columns; at fire time sl__fold_fire publishes each group with
 * at least k distinct subscribers and merges the others, level by level,
 * into coarser groups (docs/privacy.md). */
typedef struct sl__fold sl__fold;
void sl__fold_free(sl__fold *f);
/* Attaches a fold (owned from then on) and the number of partitioning key
 * columns to a configuration from sl__window_conf_new. */
void sl__window_conf_fold(void *conf, int npart, sl__fold *f);
/* Emits one fired window: keys holds, in rows 0..n, the key columns
 * (output columns 2..) of each group, grp[i] its aggregate states (owned
 * by the window; they may be merged into). Rows go out as fire_window's
 * do: into *ob, pushed when full (cap rows). Counts suppressed and folded
 * groups in ctx. */
int sl__fold_fire(const sl__fold *f, sl__ctx *ctx, const sl__agg *aggs,
                  size_t naggs, uint32_t state_size, int64_t start,
                  int64_t end, const sl_batch *keys, uint8_t *const *grp,
                  sl__out *out, sl_batch **ob, uint32_t cap);

/* Counters of one window operator instance (st from sl__window_vt.open). */
typedef struct {
    uint64_t late_records; /* records whose every window had fired */
    uint64_t late_pairs;   /* (record, fired window) pairs: hop windows */
    uint64_t canaries;     /* canary rows seen, not aggregated */
    uint64_t null_time;    /* rows dead-lettered for a NULL event time */
    uint64_t bad_time;     /* rows dead-lettered: windows outside int64 */
    uint64_t fired_windows;
    uint64_t fired_groups;
    uint64_t open_windows;
    uint64_t open_groups;
    int64_t watermark;     /* SL_TS_MIN before the first */
    uint64_t expired_groups; /* dropped by state.ttl.ms (winstore.c) */
    uint64_t spills;         /* times the RocksDB cache was written out */
} sl__window_stats;
void sl__window_stats_get(const void *st, sl__window_stats *out);
/* state.backend = rocksdb (winstore.c): keys of the instance in its
 * column family (0 in memory), and a full compaction of it (which runs
 * the TTL filter). For tests. */
uint64_t sl__window_store_keys(const void *st);
int sl__window_store_compact(const void *st);
/* Groups the window wrote to RocksDB as merge operands (blind writes). */
uint64_t sl__window_store_blind_writes(const void *st);
/* Late records counted against the window ending at window_end. Only the
 * most recent 64 window ends are kept (older ones are folded into
 * late_pairs only): a bounded table for the stats, not a ledger. */
uint64_t sl__window_late_count(const void *st, int64_t window_end);

#endif
