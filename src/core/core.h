/* core.h — the core layer's internal interface: schemas, batches, arenas,
 * configuration tables, hashing and time helpers. Every other layer includes
 * this; core itself includes no other layer. */
#ifndef SL_CORE_H
#define SL_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice.h"
#include "log.h"

#define SL_MAX_COLS 64
#define SL_TS_MIN INT64_MIN
#define SL_TS_MAX INT64_MAX

/* Always-on invariant check for what guards state and committed output. */
#define SL_ASSERT(c)                                                          \
    ((c) ? (void)0 : sl__assert_fail(#c, __FILE__, __LINE__))
_Noreturn void sl__assert_fail(const char *what, const char *file, int line);

/* Formats into errstr (if not NULL) and returns `code`. */
int sl__err(char *errstr, size_t errstr_size, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Out of memory, no caller goes on: the allocation wrappers log
 * `msg="out of memory"` and end the process with exit status SL__EXIT_OOM
 * (no core dump). That is as safe as kill -9: checkpoints are published
 * atomically and sinks commit by epoch, so the next run recovers from the
 * last complete checkpoint (tests/allocfail). */
#define SL__EXIT_OOM 3
void *sl__xmalloc(size_t n);
void *sl__xcalloc(size_t n, size_t m);
void *sl__xrealloc(void *p, size_t n);
char *sl__xstrdup(const char *s);
char *sl__xstrndup(const char *s, size_t n);
/* n zero-filled bytes in their own mapping (2 MiB aligned and marked for
 * transparent huge pages from 2 MiB on: for large tables probed at random,
 * where TLB misses would dominate). Aborts on OOM; free with
 * sl__huge_free(p, n), the same n. */
void *sl__huge_alloc(size_t n);
void sl__huge_free(void *p, size_t n);
/* Allocation-failure sweep (make allocfail builds with -DSL_ALLOC_FAIL):
 * SLUICE_ALLOC_FAIL=N makes the N-th allocation through the wrappers fail;
 * SLUICE_ALLOC_COUNT=1 prints "sluice-alloc: <what> at <count>" at each
 * sl__alloc_mark and at exit. Both are no-ops in a normal build. */
void sl__alloc_mark(const char *what);

/* ---- schema -------------------------------------------------------------- */
struct sl__colinfo {
    char *name;
    sl_type type;
    char **domain;   /* allowed STRING values, or NULL */
    int ndomain;
    bool identifier; /* masked in dead letters */
};
struct sl_schema {
    int n;
    struct sl__colinfo cols[SL_MAX_COLS];
};
sl_schema *sl__schema_copy(const sl_schema *s);
/* Index of `value` in the column's domain, or -1. */
int sl__schema_domain_find(const sl_schema *s, int col, const char *v,
                           size_t len);

/* ---- arena: per-batch scratch, released with the batch ------------------- */
typedef struct sl__chunk sl__chunk;
typedef struct {
    sl__chunk *head;
    size_t used, size; /* of head */
} sl__arena;
void *sl__arena_alloc(sl__arena *a, size_t n);
void sl__arena_reset(sl__arena *a); /* keeps the first chunk */
void sl__arena_free(sl__arena *a);
/* Whether p points into one of a's chunks. */
bool sl__arena_owns(const sl__arena *a, const void *p);
/* Moves src's chunks into dst (src is left empty), so strings allocated in
 * src stay valid as long as dst: how an operator's output batch keeps its
 * input's strings without copying them. */
void sl__arena_adopt(sl__arena *dst, sl__arena *src);

/* ---- batch --------------------------------------------------------------- */
struct sl__col {
    void *data;     /* int64_t[], double[], uint8_t[] (bool) or sl_str[] */
    uint8_t *valid; /* 1 = present, 0 = NULL */
};
struct sl_batch {
    const sl_schema *schema;
    uint32_t n, cap;
    uint8_t *kind;
    struct sl__col cols[SL_MAX_COLS];
    sl__arena arena;
    size_t bytes; /* size of the allocation, for memory accounting */
    bool huge;    /* allocated by sl__batch_new_huge */
    /* The key hash of each row (sl__key_hash) when the batch comes
     * out of a hash exchange, so the stage after it needs not hash the key
     * again; NULL otherwise. In the arena. Whatever moves, drops or adds
     * rows in place must set it to NULL (sl__batch_drop_rows does). */
    uint64_t *khash;
};
/* New batch with all rows valid; live batches are counted process-wide. */
sl_batch *sl__batch_new(const sl_schema *s, uint32_t cap);
/* Bytes of a batch's records: fixed-width columns, validity and kinds of
 * its n rows plus the string bytes in its arena (per-task byte metrics). */
size_t sl__batch_data_bytes(const sl_batch *b);
/* Memory of a batch: its allocation plus its arena's chunks. */
size_t sl__batch_mem(const sl_batch *b);
/* Bytes of non-huge batches alive now (and their peak when peak != NULL):
 * the in-flight batch memory that memory.batches.max.bytes caps. */
uint64_t sl__batch_flow_bytes(uint64_t *peak);
/* Batches taken from a thread's free list instead of allocated (batch.c). */
uint64_t sl__batch_recycled(void);
/* Freed batches a thread keeps for reuse (0 under AddressSanitizer). */
int sl__batch_recycle_max(void);
/* The same in its own mapping (sl__huge_alloc): for large, long-lived
 * batches probed at random, such as lookup-table chunks. */
sl_batch *sl__batch_new_huge(const sl_schema *s, uint32_t cap);
void sl__batch_free(sl_batch *b);
void sl__batch_clear(sl_batch *b); /* n = 0, arena reset, all valid */
/* Appends rows[0..n) of src to dst (same schema; dst must have room);
 * strings in src's arena are copied into dst's, others (which outlive the
 * job, see sl_str) are referenced. rows NULL = all rows of src. */
void sl__batch_append(sl_batch *dst, const sl_batch *src,
                      const uint32_t *rows, uint32_t n);
/* Re-labels b with schema s in place: the same number of columns, each
 * no wider than before (a STRING column may become INT64), so the column
 * arrays b was allocated with still fit. */
void sl__batch_retype(sl_batch *b, const sl_schema *s);
/* The same for a schema with more columns: the first ones as for
 * sl__batch_retype, the added ones get arrays (all rows valid) from b's
 * arena. So an operator appends columns without copying the others. An
 * extended batch must not be cleared (sl__batch_clear), only freed. */
void sl__batch_extend(sl_batch *b, const sl_schema *s);
/* Process-wide batch accounting (live count, peak, bytes). */
void sl__batch_stats(uint64_t *live, uint64_t *peak, uint64_t *bytes_live);
void sl__batch_stats_reset_peak(void);

/* ---- configuration tables ------------------------------------------------ */
typedef enum { SL_CONF_INT, SL_CONF_STR, SL_CONF_BOOL, SL_CONF_DOUBLE,
               SL_CONF_ENUM } sl__conf_type;
typedef struct {
    const char *key;
    sl__conf_type type;
    const char *def;      /* default as text, or NULL for none */
    int64_t min, max;     /* INT/DOUBLE range; for STR, min 1 = required */
    const char *allowed;  /* ENUM: "a|b|c"; the field receives the index */
    size_t offset;        /* offsetof field: int64_t, char *, bool, double, int */
    const char *desc;
} sl__conf_def;
/* Applies defaults, then the key/value pairs, to the struct at `dst`.
 * Unknown keys and bad values are errors naming `component`, the key and
 * what is allowed. Keys listed in `ignore` (NULL-terminated) are skipped. */
int sl__conf_apply(const sl__conf_def *defs, void *dst, const char *const *kv,
                   const char *component, const char *const *ignore,
                   char *errstr, size_t errstr_size);
void sl__conf_free(const sl__conf_def *defs, void *dst); /* frees strings */
/* Looks a key up in a key/value array; NULL if absent. */
const char *sl__kv_get(const char *const *kv, const char *key);
/* mkdir -p; returns 0 or SL_EIO. */
int sl__mkdirs(const char *path);
int sl__parse_i64(const char *s, int64_t *out);  /* whole string, base 10 */
int sl__parse_f64(const char *s, double *out);

/* ---- hashing ------------------------------------------------------------- */
static inline uint64_t sl__mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}
uint64_t sl__hash_bytes(const void *p, size_t n, uint64_t seed);

/* ---- time ---------------------------------------------------------------- */
/* Parses epoch milliseconds ("1700000000000") or ISO-8601 UTC
 * ("YYYY-MM-DD", "YYYY-MM-DD[T ]HH:MM:SS[.fff][Z]") into epoch ms. */
int sl__parse_ts(const char *s, size_t len, int64_t *out);
/* Formats epoch ms as "YYYY-MM-DDTHH:MM:SS.fffZ"; returns length. */
int sl__format_ts(int64_t ms, char *buf, size_t size);
int64_t sl__days_from_civil(int64_t y, unsigned m, unsigned d);
void sl__civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);
static inline int64_t sl__floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* Test hook for fault tests: with SLUICE_CRASH_AT=NAME[:K] in the
 * environment, the K-th call (default 1st) with that name kills the process
 * with SIGKILL. A no-op otherwise. */
void sl__crash_point(const char *name);
/* Test hook for fault injection: true at the K-th call with this name when
 * SLUICE_FAULT=NAME[:K] is set (e.g. drop-canary); false otherwise. */
bool sl__fault(const char *name);

/* The injectable clock: wall-clock nanoseconds (monotonic). Only metrics,
 * flush timeouts and canaries read it; tests may replace it. */
typedef uint64_t (*sl__clock_fn)(void);
extern sl__clock_fn sl__clock;
uint64_t sl__clock_monotonic(void);

#endif
