/* batch.c — column-oriented record batches and the arena that holds their
 * strings. A batch is one allocation (header, kinds, columns, validity);
 * its strings live in the arena and die with it, or point to memory that
 * outlives the job (schema domain values, lookup tables, static text), which
 * copies between batches therefore reference instead of copying: a string
 * is copied only when it lies in the source batch's arena. Live batches are
 * counted process-wide, which is how tests assert that memory stays
 * bounded.
 *
 * Freed batches are recycled: each thread keeps up to RECYCLE_MAX freed
 * batches (without their arena's chunks) on a free list, and a new
 * batch of the same byte size takes one from there instead of malloc,
 * free and the page faults of fresh memory. A task runs on one worker
 * thread at a time, so a task's batches mostly come back to its own list.
 * A batch on a list counts as freed (live and flow counters); the lists
 * are freed when their thread exits. Not under AddressSanitizer, whose
 * use-after-free checks need the real free. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

struct sl__chunk {
    struct sl__chunk *next;
    size_t size;
    unsigned char data[];
};

#define ARENA_CHUNK (64 * 1024)

static size_t col_width(sl_type t);

void *sl__arena_alloc(sl__arena *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    if (!a->head || a->used + n > a->size) {
        size_t sz = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        sl__chunk *c = sl__xmalloc(sizeof *c + sz);
        c->size = sz;
        c->next = a->head;
        a->head = c;
        a->used = 0;
        a->size = sz;
    }
    void *p = a->head->data + a->used;
    a->used += n;
    return p;
}

void sl__arena_reset(sl__arena *a)
{
    if (!a->head) return;
    sl__chunk *keep = a->head;
    while (keep->next) { /* keep the oldest (first) chunk */
        sl__chunk *c = keep;
        keep = keep->next;
        free(c);
    }
    a->head = keep;
    a->used = 0;
    a->size = keep->size;
}

bool sl__arena_owns(const sl__arena *a, const void *p)
{
    uintptr_t q = (uintptr_t)p;
    for (const sl__chunk *c = a->head; c; c = c->next)
        if (q - (uintptr_t)c->data < c->size) return true;
    return false;
}

void sl__arena_adopt(sl__arena *dst, sl__arena *src)
{
    if (!src->head) return;
    if (!dst->head) {
        *dst = *src;
    } else { /* dst keeps allocating in its head chunk */
        sl__chunk *t = dst->head;
        while (t->next) t = t->next;
        t->next = src->head;
    }
    memset(src, 0, sizeof *src);
}

size_t sl__batch_mem(const sl_batch *b)
{
    size_t n = b->bytes;
    for (const sl__chunk *c = b->arena.head; c; c = c->next) n += sizeof *c + c->size;
    return n;
}

size_t sl__batch_data_bytes(const sl_batch *b)
{
    size_t w = 1; /* the kind */
    for (int i = 0; i < b->schema->n; i++) w += col_width(b->schema->cols[i].type) + 1;
    size_t n = (size_t)b->n * w;
    for (const sl__chunk *c = b->arena.head; c; c = c->next)
        n += c == b->arena.head ? b->arena.used : c->size;
    return n;
}

void sl__arena_free(sl__arena *a)
{
    for (sl__chunk *c = a->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    a->head = NULL;
    a->used = a->size = 0;
}

static atomic_uint_fast64_t g_live, g_peak, g_bytes;
/* bytes of batches that flow (not the long-lived huge ones of lookup
 * tables), and their peak: what memory.batches.max.bytes caps */
static atomic_uint_fast64_t g_flow, g_flow_peak;

uint64_t sl__batch_flow_bytes(uint64_t *peak)
{
    if (peak) *peak = atomic_load(&g_flow_peak);
    return atomic_load(&g_flow);
}

static size_t col_width(sl_type t)
{
    switch (t) {
    case SL_BOOL: return 1;
    case SL_STRING: return sizeof(sl_str);
    default: return 8;
    }
}

#define ROUND16(x) (((x) + 15) & ~(size_t)15)

/* ---- per-thread free lists ------------------------------------------------ */
#if defined(__SANITIZE_ADDRESS__)
#define RECYCLE_MAX 0
#else
#define RECYCLE_MAX 16
#endif
#define RECYCLE_BYTES (4u << 20) /* larger batches go back to malloc */

typedef struct {
    sl_batch *b[RECYCLE_MAX + 1];
    int n;
    bool registered; /* with the key whose destructor frees the list */
} recycle_list;

static _Thread_local recycle_list tl_free;
static pthread_key_t g_free_key;
static pthread_once_t g_free_once = PTHREAD_ONCE_INIT;
static atomic_uint_fast64_t g_recycled; /* batches taken from a list */

static void free_list(void *arg)
{
    recycle_list *l = arg;
    while (l->n > 0) free(l->b[--l->n]);
    l->registered = false; /* a batch freed later registers again */
}

static void free_key_init(void) { pthread_key_create(&g_free_key, free_list); }

/* A batch of exactly `size` bytes from this thread's list, or NULL. */
static sl_batch *recycle_take(size_t size)
{
    recycle_list *l = &tl_free;
    for (int i = l->n - 1; i >= 0; i--) {
        if (l->b[i]->bytes != size) continue;
        sl_batch *b = l->b[i];
        l->b[i] = l->b[--l->n];
        atomic_fetch_add_explicit(&g_recycled, 1, memory_order_relaxed);
        return b;
    }
    return NULL;
}

/* Keeps b (counters already decremented) if there is room; false if not. */
static bool recycle_put(sl_batch *b)
{
    recycle_list *l = &tl_free;
    if (RECYCLE_MAX == 0 || b->huge || b->bytes > RECYCLE_BYTES) return false;
    if (!l->registered) {
        pthread_once(&g_free_once, free_key_init);
        if (pthread_setspecific(g_free_key, l) != 0) return false;
        l->registered = true;
    }
    if (l->n >= RECYCLE_MAX) { /* make room: the oldest goes */
        sl_batch *o = l->b[0];
        memmove(l->b, l->b + 1, sizeof *l->b * (size_t)(RECYCLE_MAX - 1));
        l->n--;
        free(o);
    }
    /* its strings' chunks go: a kept chunk would count in every later
     * user's sl__batch_mem (exchange byte caps) and lengthen
     * sl__arena_owns for batches that hold no strings */
    sl__arena_free(&b->arena);
    l->b[l->n++] = b;
    return true;
}

int sl__batch_recycle_max(void) { return RECYCLE_MAX; }

uint64_t sl__batch_recycled(void)
{
    return atomic_load_explicit(&g_recycled, memory_order_relaxed);
}

static sl_batch *batch_new(const sl_schema *s, uint32_t cap, bool huge)
{
    /* header, kinds, then per column data and validity, each 16-aligned
     * (malloc's alignment is at least 16) */
    size_t head = ROUND16(sizeof(sl_batch));
    size_t size = head + ROUND16((size_t)cap);
    for (int i = 0; i < s->n; i++)
        size += ROUND16(col_width(s->cols[i].type) * cap) + ROUND16((size_t)cap);
    sl_batch *b = huge ? NULL : recycle_take(size);
    if (!b) b = huge ? sl__huge_alloc(size) : sl__xmalloc(size);
    memset(b, 0, sizeof *b);
    b->schema = s;
    b->cap = cap;
    b->bytes = size;
    b->huge = huge;
    unsigned char *p = (unsigned char *)b + head;
    b->kind = p;
    p += ROUND16((size_t)cap);
    for (int i = 0; i < s->n; i++) {
        b->cols[i].data = p;
        p += ROUND16(col_width(s->cols[i].type) * cap);
        b->cols[i].valid = p;
        p += ROUND16((size_t)cap);
    }
    SL_ASSERT((size_t)(p - (unsigned char *)b) == size);
    sl__batch_clear(b);
    uint64_t live = atomic_fetch_add_explicit(&g_live, 1, memory_order_relaxed) + 1;
    atomic_fetch_add_explicit(&g_bytes, size, memory_order_relaxed);
    if (!huge) {
        uint64_t f = atomic_fetch_add_explicit(&g_flow, size, memory_order_relaxed) + size;
        uint64_t fp = atomic_load_explicit(&g_flow_peak, memory_order_relaxed);
        while (f > fp && !atomic_compare_exchange_weak_explicit(
                   &g_flow_peak, &fp, f, memory_order_relaxed, memory_order_relaxed)) {
        }
    }
    uint64_t peak = atomic_load_explicit(&g_peak, memory_order_relaxed);
    while (live > peak && !atomic_compare_exchange_weak_explicit(
               &g_peak, &peak, live, memory_order_relaxed, memory_order_relaxed)) {
    }
    return b;
}

sl_batch *sl__batch_new(const sl_schema *s, uint32_t cap)
{
    return batch_new(s, cap, false);
}

sl_batch *sl__batch_new_huge(const sl_schema *s, uint32_t cap)
{
    return batch_new(s, cap, true);
}

void sl__batch_free(sl_batch *b)
{
    if (!b) return;
    atomic_fetch_sub_explicit(&g_live, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&g_bytes, b->bytes, memory_order_relaxed);
    if (!b->huge) atomic_fetch_sub_explicit(&g_flow, b->bytes, memory_order_relaxed);
    if (recycle_put(b)) return;
    sl__arena_free(&b->arena);
    if (b->huge) sl__huge_free(b, b->bytes);
    else free(b);
}

void sl__batch_clear(sl_batch *b)
{
    b->n = 0;
    b->khash = NULL;
    sl__arena_reset(&b->arena);
    memset(b->kind, SL_KIND_DATA, b->cap);
    for (int i = 0; i < b->schema->n; i++) memset(b->cols[i].valid, 1, b->cap);
}

void sl__batch_stats(uint64_t *live, uint64_t *peak, uint64_t *bytes_live)
{
    if (live) *live = atomic_load(&g_live);
    if (peak) *peak = atomic_load(&g_peak);
    if (bytes_live) *bytes_live = atomic_load(&g_bytes);
}

void sl__batch_stats_reset_peak(void) { atomic_store(&g_peak, atomic_load(&g_live)); }

/* True if p[0..n) are all v (a word at a time). */
static bool all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
    const uint64_t w = 0x0101010101010101ULL * v;
    size_t i = 0;
    uint64_t diff = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        diff |= x ^ w;
    }
    for (; i < n; i++) diff |= (uint64_t)(p[i] ^ v);
    return diff == 0;
}

/* The address ranges of an arena's chunks, for an inline ownership test
 * of many strings (sl__arena_owns walks the list per call). */
#define OWN_MAX 8
typedef struct {
    uintptr_t lo[OWN_MAX];
    size_t size[OWN_MAX];
    int n; /* -1: more chunks than OWN_MAX, ask sl__arena_owns */
} own_ranges;

static void own_init(own_ranges *o, const sl__arena *a)
{
    o->n = 0;
    for (const sl__chunk *c = a->head; c; c = c->next) {
        if (o->n == OWN_MAX) {
            o->n = -1;
            return;
        }
        o->lo[o->n] = (uintptr_t)c->data;
        o->size[o->n++] = c->size;
    }
}

static inline bool own_has(const own_ranges *o, const sl__arena *a, const void *p)
{
    if (o->n < 0) return sl__arena_owns(a, p);
    uintptr_t q = (uintptr_t)p;
    for (int i = 0; i < o->n; i++)
        if (q - o->lo[i] < o->size[i]) return true;
    return false;
}

/* Copies rows (all of src when NULL) to the end of dst, a column at a
 * time: a column whose rows are all valid (the usual case) is marked
 * valid with one memset instead of a gather, and a string is copied only
 * when it lies in src's arena, tested against the arena's chunk ranges
 * taken once per call. */
void sl__batch_append(sl_batch *dst, const sl_batch *src, const uint32_t *rows,
                      uint32_t n)
{
    const sl_schema *s = src->schema;
    uint32_t base = dst->n;
    SL_ASSERT(base + n <= dst->cap);
    if (n == 0) return;
    uint32_t sn = n; /* src's rows [0, sn) hold every row read */
    if (rows) {
        sn = 0;
        for (uint32_t i = 0; i < n; i++) sn = rows[i] >= sn ? rows[i] + 1 : sn;
    }
    if (all_bytes(src->kind, sn, SL_KIND_DATA))
        memset(dst->kind + base, SL_KIND_DATA, n);
    else if (!rows)
        memcpy(dst->kind + base, src->kind, n);
    else
        for (uint32_t i = 0; i < n; i++) dst->kind[base + i] = src->kind[rows[i]];
    own_ranges own;
    own_init(&own, &src->arena);
    for (int c = 0; c < s->n; c++) {
        const uint8_t *sv = src->cols[c].valid;
        uint8_t *dv = dst->cols[c].valid + base;
        const bool all_valid = all_bytes(sv, sn, 1);
        if (all_valid) memset(dv, 1, n);
        else if (!rows) memcpy(dv, sv, n);
        else for (uint32_t i = 0; i < n; i++) dv[i] = sv[rows[i]];
        switch (s->cols[c].type) {
        case SL_BOOL: {
            const uint8_t *sd = src->cols[c].data;
            uint8_t *dd = (uint8_t *)dst->cols[c].data + base;
            if (!rows) memcpy(dd, sd, n);
            else for (uint32_t i = 0; i < n; i++) dd[i] = sd[rows[i]];
            break;
        }
        case SL_STRING: {
            const sl_str *sd = src->cols[c].data;
            sl_str *dd = (sl_str *)dst->cols[c].data + base;
            for (uint32_t i = 0; i < n; i++) {
                uint32_t r = rows ? rows[i] : i;
                sl_str v = all_valid || sv[r] ? sd[r] : (sl_str){"", 0}; /* NULL: no bytes */
                if (v.len && own.n != 0 && own_has(&own, &src->arena, v.ptr)) {
                    char *p = sl__arena_alloc(&dst->arena, v.len);
                    memcpy(p, v.ptr, v.len);
                    v.ptr = p;
                }
                dd[i] = v;
            }
            break;
        }
        default: {
            const int64_t *sd = src->cols[c].data;
            int64_t *dd = (int64_t *)dst->cols[c].data + base;
            if (!rows) memcpy(dd, sd, (size_t)n * 8);
            else for (uint32_t i = 0; i < n; i++) dd[i] = sd[rows[i]];
            break;
        }
        }
    }
    dst->n = base + n;
}

/* ---- public accessors ---------------------------------------------------- */
size_t sl_batch_len(const sl_batch *b) { return b->n; }
size_t sl_batch_cap(const sl_batch *b) { return b->cap; }
const sl_schema *sl_batch_schema(const sl_batch *b) { return b->schema; }
int64_t *sl_batch_i64(const sl_batch *b, int col) { return b->cols[col].data; }
double *sl_batch_f64(const sl_batch *b, int col) { return b->cols[col].data; }
uint8_t *sl_batch_bool(const sl_batch *b, int col) { return b->cols[col].data; }
sl_str *sl_batch_str(const sl_batch *b, int col) { return b->cols[col].data; }
uint8_t *sl_batch_valid(const sl_batch *b, int col) { return b->cols[col].valid; }
uint8_t *sl_batch_kind(const sl_batch *b) { return b->kind; }

int sl_batch_set_str(sl_batch *b, int col, size_t row, const char *s, size_t len)
{
    if (!b || col < 0 || col >= b->schema->n || row >= b->cap ||
        b->schema->cols[col].type != SL_STRING || len > UINT32_MAX)
        return SL_EINVAL;
    char *p = len ? sl__arena_alloc(&b->arena, len) : NULL;
    if (len) memcpy(p, s, len);
    sl_str *d = (sl_str *)b->cols[col].data + row;
    d->ptr = p ? p : "";
    d->len = (uint32_t)len;
    b->cols[col].valid[row] = 1;
    return 0;
}

void sl__batch_retype(sl_batch *b, const sl_schema *s)
{
    SL_ASSERT(s->n == b->schema->n);
    for (int i = 0; i < s->n; i++)
        SL_ASSERT(col_width(s->cols[i].type) <= col_width(b->schema->cols[i].type));
    b->schema = s;
}

void sl__batch_extend(sl_batch *b, const sl_schema *s)
{
    const sl_schema *old = b->schema;
    SL_ASSERT(s->n >= old->n);
    for (int i = 0; i < old->n; i++)
        SL_ASSERT(col_width(s->cols[i].type) <= col_width(old->cols[i].type));
    for (int i = old->n; i < s->n; i++) {
        b->cols[i].data = sl__arena_alloc(&b->arena, col_width(s->cols[i].type) * b->cap);
        b->cols[i].valid = sl__arena_alloc(&b->arena, b->cap);
        memset(b->cols[i].valid, 1, b->cap);
    }
    b->schema = s;
}

void sl_batch_set_len(sl_batch *b, size_t n)
{
    SL_ASSERT(n <= b->cap);
    b->n = (uint32_t)n;
}
