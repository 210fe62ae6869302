/* table_int.h — the in-memory lookup table's layout, shared by table.c
 * (building and probing it) and timage.c (its binary image on disk, which
 * writes and reads these fields as they are). Private to src/state/. */
#ifndef SL_TABLE_INT_H
#define SL_TABLE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/hashmap.h"
#include "state/dtab.h"
#include "state/state.h"

#define SL__TABLE_INTERN_MAX 65536 /* distinct values shared per STRING column */

typedef struct {
    uint64_t k;     /* INT64 key, or the hash of a STRING key */
    uint32_t chunk; /* chunk index + 1; 0 = free slot */
    uint32_t row;   /* row in the chunk */
} slot;

struct sl_table {
    sl_schema *schema;
    int key_col;
    bool str_key;
    sl_batch **chunks;
    size_t nchunks, chunks_cap;
    size_t stored, nkeys;
    slot *slots;
    uint64_t mask; /* slots: mask + 1 entries */
    bool nulls[SL_MAX_COLS]; /* a stored row is NULL in that column */
    sl__bmap *intern[SL_MAX_COLS]; /* STRING column: value -> shared copy */
    sl__dtab *disk; /* state.backend = rocksdb: the rows (no chunks, no slots used) */
    /* Rows changed since the load (a refreshed table): probed before this
     * table. Replaced whole, never changed in place; replaced overlays are
     * kept until the table is freed, since batches in flight may point
     * into them. */
    _Atomic(sl_table *) overlay;
    sl_table **retired;
    size_t nretired;
    void (*on_free)(void *); /* stops whatever refreshes the table */
    void *on_free_arg;
    void *ext;                 /* the layer above's (sl__table_set_ext) */
    void (*ext_free)(void *);
    pthread_mutex_t proj_lock; /* builds of proj[] (invariant 5) */
    _Atomic(sl__tproj *) proj[SL_MAX_COLS];
};

typedef struct {
    uint64_t k, v;
} pslot;

struct sl__tproj {
    pslot *s;
    uint64_t mask;
    bool zero;       /* key 0 has a non-NULL value: zero_v */
    uint64_t zero_v;
};

#define SL__TABLE_INTERN_SEED 0x696e7465726eULL

/* A zero-filled (empty) index of n slots, on huge pages. */
slot *sl__table_slots_new(uint64_t n);
/* The table's copy of string v of column c (shared while the column has
 * few distinct values, else in chunk's arena). */
sl_str sl__table_intern(sl_table *t, int c, sl_batch *chunk, sl_str v);
/* Whether column col may have a projection (invariant 5 of table.c). */
bool sl__table_proj_col(const sl_table *t, int col);
/* A new projection of col built from the finished table (not attached). */
sl__tproj *sl__table_proj_build(const sl_table *t, int col);
void sl__tproj_free(sl__tproj *pj);

#endif
