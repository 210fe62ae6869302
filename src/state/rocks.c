/* rocks.c — the RocksDB keyed-state store (sl__ks, state.h): one RocksDB
 * instance per process under state.rocksdb.dir, one column family per
 * state (a lookup table today), all sharing one LRU block cache and one
 * total write-buffer size (db_write_buffer_size) so that the memory RocksDB
 * uses stays under state.memory.bound however large the state grows. The
 * shares below are of the bound less SL__STATE_RESERVE (4 MiB, at most half
 * the bound: sl__state_shares), what the process needs beyond them
 * whatever the bound (blocks in flight, iterators, glibc's slack):
 *
 *   row caches          1/4 of the bound: hot lookup-table rows in front
 *                       of RocksDB, per task (rowcache.c, tabledisk.c)
 *   block cache         1/4 of the bound (data, index and filter blocks:
 *                       cache_index_and_filter_blocks, so they count too;
 *                       partitioned, so a lookup loads only what it needs)
 *   write buffers       1/8 (all memtables of all column families; one
 *                       column family's memtable 1/16, at most 64 MiB)
 *   the rest (3/8)      table readers, iterators, blocks being read or
 *                       compacted, and the allocator's slack
 *
 * glibc's malloc gives each thread its own arena, and RocksDB's blocks
 * freed on one thread and allocated on another fragment them: measured,
 * that doubled the process's private memory above the bound. So the first
 * open caps the arenas at 2 (mallopt M_ARENA_MAX) unless MALLOC_ARENA_MAX
 * is set; Flink ships jemalloc for the same reason. sluice's hot path
 * allocates from its own per-batch arenas, so the cap costs no contention
 * there.
 *
 * Debian 12's RocksDB 7.8 C API has no write-buffer-manager calls, hence
 * the db-wide write-buffer size. The first sl__ks_open of a process opens
 * the instance (its directory is emptied first: nothing in it outlives a
 * run yet, lookup tables are reloaded at start); the last sl__ks_drop
 * closes it and removes its files. Writes skip the WAL for the same
 * reason. Reads (sl__ks_multi_get, sl__ks_scan) are safe from any number
 * of threads at once; writes to one column family come from one thread.
 *
 * Invariant: g.db is open exactly while g.refs > 0, with g.dir and g.bound
 * the configuration it was opened with. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <malloc.h>
#include <rocksdb/c.h>

#include "core/store.h"
#include "state/state.h"

struct sl__ks {
    rocksdb_t *db; /* g.db, or the state's own instance (sl__ks_open_own) */
    rocksdb_readoptions_t *ro; /* g.ro, or a read-only instance's own */
    rocksdb_column_family_handle_t *cf;
    char name[32];
    rocksdb_block_based_table_options_t *bbto; /* its own, or NULL (g.bbto) */
    struct ks_own *own; /* an instance of its own (rockscut section below) */
};

static void lookup_table_options(rocksdb_options_t *o, sl__ks *ks);
/* A TTL compaction filter (sl__ks_open_filtered); kept until the instance
 * closes, since a compaction of a dropped column family may still run. */
typedef struct ks_filter {
    rocksdb_compactionfilter_t *f; /* or NULL */
    rocksdb_mergeoperator_t *mo;   /* or NULL; owned by the column family */
    bool (*drop)(void *arg, const char *k, size_t kl, const char *v, size_t vl);
    void *arg;
    struct ks_filter *next;
} ks_filter;

static struct {
    pthread_mutex_t mu;
    rocksdb_t *db;
    rocksdb_options_t *opts;      /* db and column family options */
    rocksdb_block_based_table_options_t *bbto;
    rocksdb_cache_t *cache;
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
    char dir[1024];
    int64_t bound;
    int refs;
    unsigned long next_cf;
    ks_filter *filters; /* destroyed when the instance closes */
    struct { rocksdb_t *db; rocksdb_column_family_handle_t *cf; } cfs[64]; /* memprof */
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Notes a column family open (cf) or closing (gone), for
 * sl__ks_mem_props; g.mu held. */
static void cf_note(rocksdb_t *db, rocksdb_column_family_handle_t *cf,
                    rocksdb_column_family_handle_t *gone)
{
    for (size_t i = 0; i < sizeof g.cfs / sizeof g.cfs[0]; i++)
        if (g.cfs[i].cf == gone) {
            g.cfs[i].db = db;
            g.cfs[i].cf = cf;
            return;
        }
}

static uint64_t prop(rocksdb_t *db, rocksdb_column_family_handle_t *cf, const char *name)
{
    char *v = cf ? rocksdb_property_value_cf(db, cf, name) : rocksdb_property_value(db, name);
    uint64_t n = v ? strtoull(v, NULL, 10) : 0;
    free(v);
    return n;
}

void sl__ks_mem_props(FILE *o)
{
    pthread_mutex_lock(&g.mu);
    if (!g.db) {
        pthread_mutex_unlock(&g.mu);
        return;
    }
    uint64_t mem = 0, readers = 0, imm = 0, cfs = 0;
    for (size_t i = 0; i < sizeof g.cfs / sizeof g.cfs[0]; i++) {
        if (!g.cfs[i].cf) continue;
        mem += prop(g.cfs[i].db, g.cfs[i].cf, "rocksdb.cur-size-all-mem-tables");
        imm += prop(g.cfs[i].db, g.cfs[i].cf, "rocksdb.size-all-mem-tables");
        readers += prop(g.cfs[i].db, g.cfs[i].cf, "rocksdb.estimate-table-readers-mem");
        cfs++;
    }
    fprintf(o, "  rocksdb (%llu column families): block cache %llu kB (capacity %zu, "
            "pinned %llu), memtables %llu kB active+imm (%llu kB incl. pinned), "
            "table readers %llu kB\n",
            (unsigned long long)cfs,
            (unsigned long long)(prop(g.db, NULL, "rocksdb.block-cache-usage") >> 10),
            rocksdb_cache_get_capacity(g.cache) >> 10,
            (unsigned long long)(prop(g.db, NULL, "rocksdb.block-cache-pinned-usage") >> 10),
            (unsigned long long)(mem >> 10), (unsigned long long)(imm >> 10),
            (unsigned long long)(readers >> 10));
    pthread_mutex_unlock(&g.mu);
}

static void db_free_opts(void)
{
    if (g.wo) rocksdb_writeoptions_destroy(g.wo);
    if (g.ro) rocksdb_readoptions_destroy(g.ro);
    if (g.opts) rocksdb_options_destroy(g.opts);
    if (g.bbto) rocksdb_block_based_options_destroy(g.bbto);
    if (g.cache) rocksdb_cache_destroy(g.cache);
    g.wo = NULL;
    g.ro = NULL;
    g.opts = NULL;
    g.bbto = NULL;
    g.cache = NULL;
}

/* Removes the window tasks' own instances (win-*, sl__ks_open_own) under
 * dir: nothing in them outlives a run either. */
static void sweep_own_dirs(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "win-", 4) != 0) continue;
        char p[2100];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        sl__rmtree(p);
    }
    closedir(d);
}

int64_t sl__state_shares(int64_t bound)
{
    return bound - SL__STATE_RESERVE > bound / 2 ? bound - SL__STATE_RESERVE : bound / 2;
}

/* Opens the process's instance; g.mu held. */
static int db_open(const sl__state_conf *sc, char *errstr, size_t errstr_size)
{
    int64_t b = sl__state_shares(sc->memory_bound);
    sl__memprof_start();
#ifdef M_ARENA_MAX
    if (!getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 2);
#endif
    /* A fixed mmap threshold: glibc would raise it (and the trim threshold
     * with it, up to 32 MiB) after the first memtable block is freed, and
     * then keep freed memtables and read buffers in its heap */
    if (!getenv("MALLOC_MMAP_THRESHOLD_") && !getenv("GLIBC_TUNABLES")) {
        mallopt(M_MMAP_THRESHOLD, 64 << 10);
        mallopt(M_TRIM_THRESHOLD, 128 << 10);
    }
    if (sl__mkdirs(sc->dir))
        return sl__err(errstr, errstr_size, SL_EIO, "state.rocksdb.dir: %s: "
                       "cannot create: %s", sc->dir, strerror(errno));
    g.cache = rocksdb_cache_create_lru((size_t)(b / 4)); /* 3/8 before row caches */
    g.bbto = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(g.bbto, g.cache);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(g.bbto, 1);
    /* partitioned index and filters: a lookup loads the one partition it
     * needs, not a whole file's filter, so they share the cache with data
     * instead of thrashing it (Flink's and Kafka Streams' advice for
     * bounded memory) */
    rocksdb_block_based_options_set_index_type(
        g.bbto, rocksdb_block_based_table_index_type_two_level_index_search);
    rocksdb_block_based_options_set_partition_filters(g.bbto, 1);
    rocksdb_block_based_options_set_metadata_block_size(g.bbto, 4096);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(
        g.bbto, 1);
    rocksdb_block_based_options_set_format_version(g.bbto, 5);
    rocksdb_block_based_options_set_filter_policy(
        g.bbto, rocksdb_filterpolicy_create_bloom_full(10));
    g.opts = rocksdb_options_create();
    rocksdb_options_set_block_based_table_factory(g.opts, g.bbto);
    rocksdb_options_set_create_if_missing(g.opts, 1);
    rocksdb_options_set_allow_concurrent_memtable_write(g.opts, 0); /* vector rep */
    /* memtables: 1/8 of the bound with the ones being flushed, so the
     * total that triggers a flush is half of it (measured: a column
     * family's full memtable and the one being flushed took 2x the
     * db-wide size) */
    rocksdb_options_set_db_write_buffer_size(g.opts, (size_t)(b / 16));
    int64_t wb = b / 32 < (32 << 20) ? b / 32 : (32 << 20);
    rocksdb_options_set_write_buffer_size(g.opts, (size_t)wb);
    rocksdb_options_set_max_write_buffer_number(g.opts, 2);
    /* flushes and compactions buffer 1 MiB per file written by default */
    rocksdb_options_set_writable_file_max_buffer_size(g.opts, 64u << 10);
    rocksdb_options_set_target_file_size_base(g.opts, 64u << 20);
    rocksdb_options_set_max_background_jobs(g.opts, 2);
    rocksdb_options_set_max_open_files(g.opts, 512);
    rocksdb_options_compaction_readahead_size(g.opts, 0);
    rocksdb_options_set_compression(g.opts, rocksdb_lz4_compression);
    rocksdb_options_set_info_log_level(g.opts, 3); /* errors only */
    char *err = NULL;
    rocksdb_destroy_db(g.opts, sc->dir, &err); /* nothing in it outlives a run */
    if (err) {
        sl__err(errstr, errstr_size, SL_EIO, "state.rocksdb.dir: %s: %s", sc->dir,
                err);
        free(err);
        db_free_opts();
        return SL_EIO;
    }
    sweep_own_dirs(sc->dir); /* window instances a killed run left */
    g.db = rocksdb_open(g.opts, sc->dir, &err);
    if (!g.db) {
        sl__err(errstr, errstr_size, SL_EIO, "state.rocksdb.dir: %s: cannot open "
                "RocksDB: %s", sc->dir, err ? err : "unknown error");
        free(err);
        db_free_opts();
        return SL_EIO;
    }
    g.wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_disable_WAL(g.wo, 1);
    g.ro = rocksdb_readoptions_create();
    snprintf(g.dir, sizeof g.dir, "%s", sc->dir);
    g.bound = sc->memory_bound;
    return 0;
}

/* Locks g.mu and makes sure the process instance is open with sc's
 * directory and bound (opening it for its first user). Returns 0 with g.mu
 * held, or an error with g.mu released. */
static int g_enter(const sl__state_conf *sc, char *errstr, size_t errstr_size)
{
    pthread_mutex_lock(&g.mu);
    if (g.refs > 0 && (strcmp(g.dir, sc->dir) != 0 || g.bound != sc->memory_bound)) {
        sl__err(errstr, errstr_size, SL_EINVAL, "state.rocksdb.dir: this process "
                "already has RocksDB open at %s with state.memory.bound %lld; "
                "one instance per process", g.dir, (long long)g.bound);
        pthread_mutex_unlock(&g.mu);
        return SL_EINVAL;
    }
    if (g.refs == 0 && db_open(sc, errstr, errstr_size)) {
        pthread_mutex_unlock(&g.mu);
        return SL_EIO;
    }
    return 0;
}

static sl__ks *ks_open(const sl__state_conf *sc, bool bulk, ks_filter *flt,
                      char *errstr, size_t errstr_size);

sl__ks *sl__ks_open(const sl__state_conf *sc, bool bulk, char *errstr,
                    size_t errstr_size)
{
    return ks_open(sc, bulk, NULL, errstr, errstr_size);
}

static void filter_free(ks_filter *f)
{
    if (!f) return;
    if (f->f) rocksdb_compactionfilter_destroy(f->f);
    if (f->mo) rocksdb_mergeoperator_destroy(f->mo);
    free(f);
}

static void filters_free(void)
{
    while (g.filters) {
        ks_filter *f = g.filters;
        g.filters = f->next;
        if (f->f) rocksdb_compactionfilter_destroy(f->f);
        free(f);
    }
}

/* Closes the process instance once its last user has gone (g.mu held,
 * g.refs == 0); destroy also deletes its files. */
static void g_close(bool destroy)
{
    rocksdb_close(g.db);
    g.db = NULL;
    if (destroy) {
        char *err = NULL;
        rocksdb_destroy_db(g.opts, g.dir, &err);
        free(err);
    }
    filters_free();
    db_free_opts();
}

/* Window state's column families and instances: SST files of 1/2 of the
 * shares (1 MiB to 64 MiB). A table builder holds the file's whole
 * partitioned index and its bloom filter partitions in memory until the
 * file is finished (10 bits a key: 2.4 MiB for a 64 MiB file of window
 * groups), outside the block cache and the write buffers; at 8 MiB two
 * compactions writing 64 MiB files took more than the bound's reserve
 * (measured, bench/RESULTS.md). Lookup tables keep 64 MiB: they are
 * compacted once, at load. g.mu held or g.opts stable. */
static void window_options(rocksdb_options_t *o)
{
    int64_t t = sl__state_shares(g.bound) / 2;
    if (t < (1 << 20)) t = 1 << 20;
    if (t > (64 << 20)) t = 64 << 20;
    rocksdb_options_set_target_file_size_base(o, (uint64_t)t);
}

static sl__ks *ks_open(const sl__state_conf *sc, bool bulk, ks_filter *flt,
                      char *errstr, size_t errstr_size)
{
    if (g_enter(sc, errstr, errstr_size)) {
        filter_free(flt);
        return NULL;
    }
    sl__ks *ks = sl__xcalloc(1, sizeof *ks);
    ks->db = g.db;
    ks->ro = g.ro;
    snprintf(ks->name, sizeof ks->name, "s%lu", g.next_cf++);
    char *err = NULL;
    rocksdb_options_t *o = rocksdb_options_create_copy(g.opts);
    if (bulk) { /* loaded once, then read: compacted once, in sl__ks_compact */
        /* an append-only memtable, sorted when flushed: random keys go in
         * 3-5x faster than into the skip list; it is never read, since a
         * bulk state is only read after sl__ks_compact has flushed it */
        rocksdb_options_set_memtable_vector_rep(o);
        rocksdb_options_set_disable_auto_compactions(o, 1);
        rocksdb_options_set_level0_slowdown_writes_trigger(o, 1 << 30);
        rocksdb_options_set_level0_stop_writes_trigger(o, 1 << 30);
        lookup_table_options(o, ks);
    }
    else window_options(o);
    if (flt) {
        if (flt->f) rocksdb_options_set_compaction_filter(o, flt->f);
        if (flt->mo) rocksdb_options_set_merge_operator(o, flt->mo); /* o shares it */
        flt->mo = NULL;
        flt->next = g.filters;
        g.filters = flt;
    }
    ks->cf = rocksdb_create_column_family(g.db, o, ks->name, &err);
    rocksdb_options_destroy(o);
    if (!ks->cf) {
        if (ks->bbto) rocksdb_block_based_options_destroy(ks->bbto);
        sl__err(errstr, errstr_size, SL_EIO, "state: RocksDB: %s",
                err ? err : "cannot create a column family");
        free(err);
        free(ks);
        if (g.refs == 0) g_close(false);
        pthread_mutex_unlock(&g.mu);
        return NULL;
    }
    g.refs++;
    cf_note(g.db, ks->cf, NULL);
    pthread_mutex_unlock(&g.mu);
    return ks;
}

static void ks_own_drop(sl__ks *ks);

void sl__ks_drop(sl__ks *ks)
{
    if (!ks) return;
    if (ks->own) {
        ks_own_drop(ks);
        return;
    }
    pthread_mutex_lock(&g.mu);
    cf_note(NULL, NULL, ks->cf);
    char *err = NULL;
    rocksdb_drop_column_family(g.db, ks->cf, &err);
    free(err);
    rocksdb_column_family_handle_destroy(ks->cf);
    if (ks->bbto) rocksdb_block_based_options_destroy(ks->bbto);
    free(ks);
    if (--g.refs == 0) g_close(true);
    pthread_mutex_unlock(&g.mu);
}

int sl__ks_write(sl__ks *ks, const sl__ks_op *ops, size_t n, char *errstr,
                 size_t errstr_size)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    for (size_t i = 0; i < n; i++) {
        if (ops[i].val && ops[i].merge)
            rocksdb_writebatch_merge_cf(wb, ks->cf, ops[i].key, ops[i].klen,
                                        ops[i].val, ops[i].vlen);
        else if (ops[i].val)
            rocksdb_writebatch_put_cf(wb, ks->cf, ops[i].key, ops[i].klen,
                                      ops[i].val, ops[i].vlen);
        else
            rocksdb_writebatch_delete_cf(wb, ks->cf, ops[i].key, ops[i].klen);
    }
    char *err = NULL;
    rocksdb_write(ks->db, g.wo, wb, &err);
    rocksdb_writebatch_destroy(wb);
    sl__crash_point("rocksdb-write"); /* fault tests: a kill between writes */
    if (err) {
        sl__err(errstr, errstr_size, SL_EIO, "state: RocksDB write: %s", err);
        free(err);
        return SL_EIO;
    }
    return 0;
}

int sl__ks_multi_get(sl__ks *ks, size_t n, const char *const *keys,
                     const size_t *klen, char **vals, size_t *vlen,
                     char *errstr, size_t errstr_size)
{
    if (n == 0) return 0;
    const rocksdb_column_family_handle_t **cfs = sl__xmalloc(n * sizeof *cfs);
    char **errs = sl__xcalloc(n, sizeof *errs);
    for (size_t i = 0; i < n; i++) cfs[i] = ks->cf;
    rocksdb_multi_get_cf(ks->db, ks->ro, cfs, n, keys, klen, vals, vlen, errs);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (!errs[i]) continue;
        if (!rc)
            rc = sl__err(errstr, errstr_size, SL_EIO, "state: RocksDB read: %s",
                         errs[i]);
        free(errs[i]);
        rocksdb_free(vals[i]);
        vals[i] = NULL;
    }
    free(errs);
    free(cfs);
    return rc;
}

void sl__ks_value_free(char *v) { rocksdb_free(v); }

int sl__ks_scan(sl__ks *ks, const void *prefix, size_t plen,
                int (*fn)(void *arg, const char *k, size_t kl, const char *v,
                          size_t vl),
                void *arg, char *errstr, size_t errstr_size)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(ks->db, ks->ro, ks->cf);
    int rc = 0;
    if (plen) rocksdb_iter_seek(it, prefix, plen);
    else rocksdb_iter_seek_to_first(it);
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < plen || (plen && memcmp(k, prefix, plen) != 0)) break;
        const char *v = rocksdb_iter_value(it, &vl);
        if ((rc = fn(arg, k, kl, v, vl))) break;
    }
    char *err = NULL;
    if (!rc) rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err) {
        rc = sl__err(errstr, errstr_size, SL_EIO, "state: RocksDB scan: %s", err);
        free(err);
    }
    return rc;
}

int sl__ks_flush(sl__ks *ks, char *errstr, size_t errstr_size)
{
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    char *err = NULL;
    rocksdb_flush_cf(ks->db, fo, ks->cf, &err);
    rocksdb_flushoptions_destroy(fo);
    if (err) {
        sl__err(errstr, errstr_size, SL_EIO, "state: RocksDB flush: %s", err);
        free(err);
        return SL_EIO;
    }
    return 0;
}

int sl__ks_compact(sl__ks *ks, char *errstr, size_t errstr_size)
{
    int rc = sl__ks_flush(ks, errstr, errstr_size);
    if (rc) return rc;
    rocksdb_compact_range_cf(ks->db, ks->cf, NULL, 0, NULL, 0);
    return 0;
}

uint64_t sl__ks_disk_bytes(sl__ks *ks)
{
    char *v = rocksdb_property_value_cf(ks->db, ks->cf, "rocksdb.total-sst-files-size");
    uint64_t n = v ? strtoull(v, NULL, 10) : 0;
    free(v);
    return n;
}

uint64_t sl__ks_property(sl__ks *ks, const char *name)
{
    /* ks->db: a window task's own instance is not g.db, and its column
     * family handle read through g.db raced with its flushes (a crash) */
    char *v = ks ? rocksdb_property_value_cf(ks->db, ks->cf, name)
                 : rocksdb_property_value(g.db, name);
    uint64_t n = v ? strtoull(v, NULL, 10) : 0;
    free(v);
    return n;
}

/* Gives the pages of free heap memory back to the system (glibc keeps
 * them: RocksDB's blocks and memtables leave holes that trimming the top
 * of the heap never reaches). Costs a walk over the arenas' free lists. */
void sl__ks_trim(void)
{
#ifdef M_ARENA_MAX
    malloc_trim(0);
#endif
}

/* ---- lookup tables' fast path (tabledisk.c, rowcache.c) ------------------ */
/* The row caches in front of lookup tables take 1/4 of the bound, all
 * together (block cache 1/4, write buffers 1/8, the rest 3/8). */
int64_t sl__ks_row_cache_bytes(void)
{
    pthread_mutex_lock(&g.mu);
    int64_t b = g.refs > 0 ? sl__state_shares(g.bound) / 4 : 0;
    pthread_mutex_unlock(&g.mu);
    return b;
}

/* One batched MultiGet (RocksDB's MultiGet with sorted_input: the keys of
 * one data block are found in one pass over it, and values stay pinned in
 * the block cache rather than copied), for lookup tables. */
int sl__ks_multi_get_sorted(sl__ks *ks, size_t n, const char *const *keys,
                            const size_t *klen,
                            void (*fn)(void *arg, size_t i, const char *v,
                                       size_t vl),
                            void *arg, char *errstr, size_t errstr_size)
{
    if (n == 0) return 0;
    /* RocksDB counts into its per-thread perf context on every key unless
     * told not to; sluice never reads it (-3 % instructions on the join) */
    static _Thread_local bool perf_off;
    if (!perf_off) {
        rocksdb_set_perf_level(rocksdb_disable);
        perf_off = true;
    }
    rocksdb_pinnableslice_t **vals = sl__xcalloc(n, sizeof *vals);
    char **errs = sl__xcalloc(n, sizeof *errs);
    rocksdb_batched_multi_get_cf(ks->db, ks->ro, ks->cf, n, keys, klen, vals, errs,
                                 true);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (errs[i]) {
            if (!rc)
                rc = sl__err(errstr, errstr_size, SL_EIO,
                             "state: RocksDB read: %s", errs[i]);
            free(errs[i]);
        } else if (vals[i] && !rc) {
            size_t vl;
            const char *v = rocksdb_pinnableslice_value(vals[i], &vl);
            if (v) fn(arg, i, v, vl);
        }
        rocksdb_pinnableslice_destroy(vals[i]);
    }
    free(errs);
    free(vals);
    return rc;
}

/* A lookup table's column family: read-only once loaded and compacted
 * into one sorted run, probed by point lookups that mostly find their key.
 * Each choice was measured on the reference job (callgrind instructions of
 * the join and CPU time, bench/RESULTS.md "lookup path"):
 *  - no bloom filter: a fully compacted table has one file per key range,
 *    so a filter only saves work for absent keys, and probing the
 *    partitioned filter cost more than it saved (-12 %);
 *  - a hash index inside data blocks (-2 %) and a restart point every 4
 *    keys rather than 16: the key's restart point without a binary search
 *    and at most 3 keys decoded after it (-8 %, for 4 % more bytes; one
 *    per key: -9 % for 12 % more bytes);
 *  - the partitioned index stays: one unpartitioned index block per 64 MiB
 *    file was read into the cache and evicted again under a small bound
 *    (sys time x8 at the quick scale).
 * The block cache and its priorities are the instance's. */
static void lookup_table_options(rocksdb_options_t *o, sl__ks *ks)
{
    rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(t, g.cache);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(t, 1);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(t, 1);
    rocksdb_block_based_options_set_format_version(t, 5);
    rocksdb_block_based_options_set_index_type(
        t, rocksdb_block_based_table_index_type_two_level_index_search);
    rocksdb_block_based_options_set_metadata_block_size(t, 4096);
    rocksdb_block_based_options_set_data_block_index_type(
        t, rocksdb_block_based_table_data_block_index_type_binary_search_and_hash);
    rocksdb_block_based_options_set_data_block_hash_ratio(t, 0.75);
    rocksdb_block_based_options_set_block_restart_interval(t, 4);
    rocksdb_options_set_block_based_table_factory(o, t);
    ks->bbto = t;
}

/* ---- window state: TTL filter, iterators, range deletes ------------------ */
static unsigned char filter_fn(void *state, int level, const char *key, size_t kl,
                               const char *val, size_t vl, char **nv, size_t *nvl,
                               unsigned char *changed)
{
    (void)level;
    (void)nv;
    (void)nvl;
    *changed = 0;
    const ks_filter *f = state;
    return f->drop(f->arg, key, kl, val, vl) ? 1 : 0;
}

static const char *filter_name(void *state)
{
    (void)state;
    return "sluice.ttl";
}

static void filter_noop(void *state) { (void)state; }

sl__ks *sl__ks_open_filtered(const sl__state_conf *sc,
                             bool (*drop)(void *arg, const char *k, size_t kl,
                                          const char *v, size_t vl),
                             void *arg, char *errstr, size_t errstr_size)
{
    if (!drop) return ks_open(sc, false, NULL, errstr, errstr_size);
    ks_filter *f = sl__xcalloc(1, sizeof *f);
    f->drop = drop;
    f->arg = arg;
    f->f = rocksdb_compactionfilter_create(f, filter_noop, filter_fn, filter_name);
    return ks_open(sc, false, f, errstr, errstr_size); /* owns f */
}

/* ---- merge operator (blind writes of window groups) ---------------------- */
typedef struct {
    sl__ks_merge_fn fn;
    void *arg;
    void (*arg_free)(void *arg);
} ks_merge;

static char *merge_full(void *state, const char *key, size_t kl, const char *base,
                        size_t bl, const char *const *ops, const size_t *opl, int n,
                        unsigned char *ok, size_t *outl)
{
    (void)key;
    (void)kl;
    ks_merge *m = state;
    *outl = 0;
    /* the common case, one value written once: RocksDB still asks */
    if (!base && n == 1) {
        char *v = malloc(opl[0] ? opl[0] : 1);
        if (!v) return *ok = 0, NULL;
        memcpy(v, ops[0], opl[0]);
        *outl = opl[0];
        *ok = 1;
        return v;
    }
    sl__buf out = {0};
    if (m->fn(m->arg, base, bl, ops, opl, n, &out) != 0) {
        sl__buf_free(&out);
        *ok = 0;
        return NULL;
    }
    *ok = 1;
    *outl = out.len;
    return (char *)out.p; /* freed by merge_value_free */
}

/* The merge is associative (sl__ks_merge_fn folds parts), so operands
 * fold into one without their base. RocksDB 7.8's C wrapper reads the
 * value and its length even when a partial merge declines. */
static char *merge_partial(void *state, const char *key, size_t kl,
                           const char *const *ops, const size_t *opl, int n,
                           unsigned char *ok, size_t *outl)
{
    return merge_full(state, key, kl, NULL, 0, ops, opl, n, ok, outl);
}

static void merge_value_free(void *state, const char *v, size_t vl)
{
    (void)state;
    (void)vl;
    free((void *)v);
}

static void merge_destroy(void *state)
{
    ks_merge *m = state;
    if (m->arg_free) m->arg_free(m->arg);
    free(m);
}

static const char *merge_name(void *state)
{
    (void)state;
    return "sluice.window";
}

/* A merge operator calling m (NULL, or m->fn NULL: none); it owns m->arg
 * from here on, freeing it with m->arg_free when RocksDB destroys it. */
static rocksdb_mergeoperator_t *merge_op_new(const sl__ks_merger *m)
{
    if (!m || !m->fn) {
        if (m && m->arg_free) m->arg_free(m->arg);
        return NULL;
    }
    ks_merge *km = sl__xcalloc(1, sizeof *km);
    km->fn = m->fn;
    km->arg = m->arg;
    km->arg_free = m->arg_free;
    return rocksdb_mergeoperator_create(km, merge_destroy, merge_full, merge_partial,
                                        merge_value_free, merge_name);
}

sl__ks *sl__ks_open_merging(const sl__state_conf *sc,
                            bool (*drop)(void *arg, const char *k, size_t kl,
                                         const char *v, size_t vl),
                            void *arg, sl__ks_merge_fn merge, void *marg,
                            void (*marg_free)(void *marg), char *errstr,
                            size_t errstr_size)
{
    ks_filter *f = sl__xcalloc(1, sizeof *f);
    if (drop) {
        f->drop = drop;
        f->arg = arg;
        f->f = rocksdb_compactionfilter_create(f, filter_noop, filter_fn, filter_name);
    }
    sl__ks_merger m = {.fn = merge, .arg = marg, .arg_free = marg_free};
    f->mo = merge_op_new(&m);
    return ks_open(sc, false, f, errstr, errstr_size); /* owns f */
}

struct sl__ks_iter {
    rocksdb_iterator_t *it;
};

sl__ks_iter *sl__ks_iter_new(sl__ks *ks)
{
    sl__ks_iter *it = sl__xcalloc(1, sizeof *it);
    it->it = rocksdb_create_iterator_cf(ks->db, ks->ro, ks->cf);
    return it;
}

void sl__ks_iter_seek(sl__ks_iter *it, const void *key, size_t klen)
{
    rocksdb_iter_seek(it->it, key, klen);
}

bool sl__ks_iter_valid(const sl__ks_iter *it) { return rocksdb_iter_valid(it->it); }
void sl__ks_iter_next(sl__ks_iter *it) { rocksdb_iter_next(it->it); }

const char *sl__ks_iter_key(const sl__ks_iter *it, size_t *klen)
{
    return rocksdb_iter_key(it->it, klen);
}

const char *sl__ks_iter_value(const sl__ks_iter *it, size_t *vlen)
{
    return rocksdb_iter_value(it->it, vlen);
}

int sl__ks_iter_free(sl__ks_iter *it, char *errstr, size_t errstr_size)
{
    if (!it) return 0;
    char *err = NULL;
    rocksdb_iter_get_error(it->it, &err);
    rocksdb_iter_destroy(it->it);
    free(it);
    if (!err) return 0;
    sl__err(errstr, errstr_size, SL_EIO, "state: RocksDB scan: %s", err);
    free(err);
    return SL_EIO;
}

int sl__ks_delete_range(sl__ks *ks, const void *begin, size_t blen,
                        const void *end, size_t elen, char *errstr,
                        size_t errstr_size)
{
    char *err = NULL;
    rocksdb_delete_range_cf(ks->db, g.wo, ks->cf, begin, blen, end, elen, &err);
    if (!err) return 0;
    sl__err(errstr, errstr_size, SL_EIO, "state: RocksDB delete: %s", err);
    free(err);
    return SL_EIO;
}

uint64_t sl__ks_count(sl__ks *ks)
{
    uint64_t n = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(ks->db, ks->ro, ks->cf);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it))
        n++;
    rocksdb_iter_destroy(it);
    return n;
}

/* ---- window state in instances of their own (incremental checkpoints) ---- */
/* A window task's state lives in a RocksDB instance of its own, as Flink
 * keeps one per keyed operator subtask: a RocksDB checkpoint (SST files
 * hard-linked, memtables flushed) is of a whole instance, so the task can
 * take a consistent one at its own barrier while the other tasks go on
 * (docs/state.md, "Checkpoint sizes"). The instance shares the process
 * instance's block cache and table options, so the bound still holds; its
 * write buffers are the caller's share. A read-only instance opens a
 * checkpoint's files to read them back into other tasks or the memory
 * backend. */
struct ks_own {
    rocksdb_options_t *opts;
    rocksdb_column_family_handle_t *cfh[1];
    ks_filter *flt;
    char dir[1024];
    bool ro;      /* read-only, no reference on the process instance */
    bool keep;    /* leave the files when dropped */
    rocksdb_readoptions_t *ro_opts; /* a read-only instance's */
};

sl__ks *sl__ks_open_own(const sl__state_conf *sc, const char *dir, bool fresh,
                        int64_t wbuf,
                        bool (*drop)(void *arg, const char *k, size_t kl,
                                     const char *v, size_t vl),
                        void *arg, const sl__ks_merger *merge, char *errstr,
                        size_t errstr_size)
{
    rocksdb_mergeoperator_t *mo = merge_op_new(merge);
    if (g_enter(sc, errstr, errstr_size)) {
        if (mo) rocksdb_mergeoperator_destroy(mo);
        return NULL;
    }
    g.refs++;
    pthread_mutex_unlock(&g.mu);
    struct ks_own *own = sl__xcalloc(1, sizeof *own);
    snprintf(own->dir, sizeof own->dir, "%s", dir);
    own->opts = rocksdb_options_create_copy(g.opts); /* g.cache, g.bbto */
    if (wbuf < (256 << 10)) wbuf = 256 << 10;
    rocksdb_options_set_db_write_buffer_size(own->opts, (size_t)wbuf);
    rocksdb_options_set_write_buffer_size(own->opts, (size_t)(wbuf / 2));
    rocksdb_options_set_max_background_jobs(own->opts, 1);
    window_options(own->opts);
    if (drop) {
        own->flt = sl__xcalloc(1, sizeof *own->flt);
        own->flt->drop = drop;
        own->flt->arg = arg;
        own->flt->f = rocksdb_compactionfilter_create(own->flt, filter_noop, filter_fn,
                                                      filter_name);
        rocksdb_options_set_compaction_filter(own->opts, own->flt->f);
    }
    /* merge operands (blind writes) in the instance, or in the checkpoint
     * it opens: the options own the operator from here on */
    if (mo) rocksdb_options_set_merge_operator(own->opts, mo);
    if (fresh) sl__rmtree(dir); /* what a killed run left */
    /* an existing instance (a checkpoint's files) must be there whole */
    rocksdb_options_set_create_if_missing(own->opts, fresh);
    char *err = NULL;
    const char *names[1] = {"default"};
    const rocksdb_options_t *cfo[1] = {own->opts};
    rocksdb_t *db = NULL;
    if (sl__mkdirs(dir) == 0)
        db = rocksdb_open_column_families(own->opts, dir, 1, names, cfo, own->cfh, &err);
    if (!db) {
        sl__err(errstr, errstr_size, SL_EIO, "state.rocksdb.dir: %s: cannot open "
                "RocksDB: %s", dir, err ? err : strerror(errno));
        free(err);
        if (own->flt) filter_free(own->flt);
        rocksdb_options_destroy(own->opts);
        free(own);
        pthread_mutex_lock(&g.mu);
        if (--g.refs == 0) g_close(false);
        pthread_mutex_unlock(&g.mu);
        return NULL;
    }
    pthread_mutex_lock(&g.mu);
    cf_note(db, own->cfh[0], NULL);
    pthread_mutex_unlock(&g.mu);
    sl__ks *ks = sl__xcalloc(1, sizeof *ks);
    ks->db = db;
    ks->ro = g.ro; /* the process instance stays open while this one is */
    ks->cf = own->cfh[0];
    ks->own = own;
    snprintf(ks->name, sizeof ks->name, "own");
    return ks;
}

sl__ks *sl__ks_open_ro(const char *dir, const sl__ks_merger *merge, char *errstr,
                       size_t errstr_size)
{
    struct ks_own *own = sl__xcalloc(1, sizeof *own);
    own->ro = own->keep = true;
    snprintf(own->dir, sizeof own->dir, "%s", dir);
    own->opts = rocksdb_options_create();
    rocksdb_options_set_info_log_level(own->opts, 3);
    rocksdb_mergeoperator_t *mo = merge_op_new(merge);
    if (mo) rocksdb_options_set_merge_operator(own->opts, mo); /* owned by opts */
    char *err = NULL;
    const char *names[1] = {"default"};
    const rocksdb_options_t *cfo[1] = {own->opts};
    rocksdb_t *db = rocksdb_open_for_read_only_column_families(own->opts, dir, 1, names,
                                                               cfo, own->cfh, 0, &err);
    if (!db) {
        sl__err(errstr, errstr_size, SL_EIO, "%s: cannot open the RocksDB checkpoint: %s",
                dir, err ? err : "unknown error");
        free(err);
        rocksdb_options_destroy(own->opts);
        free(own);
        return NULL;
    }
    sl__ks *ks = sl__xcalloc(1, sizeof *ks);
    own->ro_opts = rocksdb_readoptions_create();
    ks->db = db;
    ks->ro = own->ro_opts;
    ks->cf = own->cfh[0];
    ks->own = own;
    snprintf(ks->name, sizeof ks->name, "ro");
    return ks;
}

void sl__ks_keep_files(sl__ks *ks)
{
    if (ks && ks->own) ks->own->keep = true;
}

static void ks_own_drop(sl__ks *ks)
{
    struct ks_own *own = ks->own;
    if (!own->ro) {
        pthread_mutex_lock(&g.mu);
        cf_note(NULL, NULL, ks->cf);
        pthread_mutex_unlock(&g.mu);
    }
    rocksdb_column_family_handle_destroy(ks->cf);
    rocksdb_close(ks->db);
    if (own->flt) filter_free(own->flt); /* no compaction runs after close */
    rocksdb_options_destroy(own->opts);
    if (own->ro_opts) rocksdb_readoptions_destroy(own->ro_opts);
    if (!own->keep) sl__rmtree(own->dir);
    bool ro = own->ro;
    free(own);
    free(ks);
    if (ro) return;
    pthread_mutex_lock(&g.mu);
    if (--g.refs == 0) g_close(true);
    pthread_mutex_unlock(&g.mu);
}

int sl__ks_checkpoint(sl__ks *ks, const char *dir, char *errstr, size_t errstr_size)
{
    char *err = NULL;
    int rc = sl__ks_flush(ks, errstr, errstr_size);
    if (rc) return rc;
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(ks->db, &err);
    if (cp) {
        /* log_size_for_flush 0: the memtables are flushed first (the WAL
         * is off, so nothing else would carry them) */
        rocksdb_checkpoint_create(cp, dir, 0, &err);
        rocksdb_checkpoint_object_destroy(cp);
    }
    if (!err) return 0;
    sl__err(errstr, errstr_size, SL_EIO, "state: RocksDB checkpoint %s: %s", dir, err);
    free(err);
    return SL_EIO;
}
