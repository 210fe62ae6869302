/* lookup.c — lookup tables loaded from a connector (sl_table_load) and the
 * left lookup join against them (sl_stream_lookup).
 *
 * Loading reads every partition of the "file" source (or the "postgres"
 * source: a table read through a cursor) to its end, before the job starts,
 * into an sl_table (state/table.c); a postgres table may then be refreshed
 * while the job runs (table_refresh.c), and the join probes its overlay of
 * changed rows first. With a keyring, the STRING
 * key column is pseudonymised batch by batch as it loads and the table
 * keeps only the INT64 pseudonym under the key column's name, so joins
 * happen on pseudonyms and no raw identifier is ever stored. Under key
 * rotation (sl_table_load_rotating) every batch is pseudonymised once per
 * key of the domain into the same table: pseudonyms under different keys
 * are distinct 64-bit values, so a record pseudonymised under the key of
 * its period finds its row, and the join needs no notion of time. That
 * costs one copy of the rows per key kept. Bad records go
 * to the file source's dead-letter path like any input; the load has no job,
 * so they are counted in the process-wide counters only. A table that ends
 * up empty is an error, like a missing file.
 *
 * The join appends the requested table columns to each row: the row of the
 * table whose key equals the row's key column, or NULLs when there is none,
 * when the key is NULL, and always for canary rows (which never touch real
 * data). A batch goes through in passes: hash every key and prefetch its
 * index slot, probe, then gather the payload one column at a time. A join
 * that appends one 8-byte column of an INT64-keyed memory table (the
 * reference job's birth date by pseudonym) probes the table's projection
 * of that column instead (sl__table_proj: key and value in one slot), one
 * cache line per row rather than two, unless a refreshed table has an
 * overlay for the batch. A join on the pseudonym made by the pseudonymise
 * operator right before it may be fused with that operator (the rule is
 * in sl_stream_lookup): the batch then arrives joined, in this operator's
 * output schema, and passes on as it is (pjoin.c). Tables
 * are read-only, so every task shares one. The batch is extended in place
 * (sl__batch_extend) and gathered strings point into the table, which
 * outlives the job, so nothing of the input is copied. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "ops/privacy.h"
#include "state/state.h"

#define LOAD_BATCH 4096
#define LOAD_EAGAIN_MAX 10000 /* x 1 ms: a file source should never stall */

/* ---- loading ------------------------------------------------------------- */
/* h[0..nh): one MAC context per key the table is pseudonymised under
 * (nh 0: the key column is kept as it is). Under one key the pseudonyms
 * go through that key's shared cache (sl__hmac_cache), so the
 * pseudonymise operators later find every known subscriber there instead
 * of computing its MAC again; under several keys (rotation) they do not,
 * so that the caches hold only the keys the events use, and neither does
 * a table on disk (state.backend = rocksdb), whose point is to keep
 * memory within state.memory.bound: the cache then holds only what the
 * events bring, as before. */
static int load_flush(sl_table *t, sl_batch *b, sl__hmac *const *h, int nh,
                      int kc, const sl_schema *tschema, char *errstr,
                      size_t errstr_size)
{
    if (b->n == 0) return 0;
    int rc = 0;
    sl__pjoin *pj = nh == 1 ? sl__table_ext(t) : NULL;
    if (pj) sl__pjoin_log(pj, b->cols[kc].data, b->cols[kc].valid, b->n);
    for (int i = 0; i < nh && rc == 0; i++) {
        /* a logged load fills the cache later, and only if a join runs
         * unfused (sl__pjoin_warm) */
        bool fill = nh == 1 && !sl__table_on_disk(t) && !pj;
        sl_batch *p = sl__pseudo_batch(h[i], fill ? sl__hmac_cache(h[i]) : NULL,
                                       b, kc, tschema);
        rc = sl__table_append(t, p, errstr, errstr_size);
        sl__batch_free(p);
    }
    if (nh == 0) rc = sl__table_append(t, b, errstr, errstr_size);
    sl__batch_clear(b);
    return rc;
}

/* Reads every partition of an opened source into t. */
int sl__table_load_all(const sl__source_vt *vt, void *st, sl_table *t,
                    const sl_schema *schema, sl__hmac *const *h, int nh,
                    int kc, const sl_schema *tschema, char *errstr,
                    size_t errstr_size)
{
    sl_batch *b = sl__batch_new(schema, LOAD_BATCH);
    char err[512] = "";
    int rc = 0, stalls = 0;
    bool reserved = false;
    for (;;) {
        int part = 0;
        int r = vt->read(st, b, &part, err, sizeof err);
        if (r == SL_EEOF) break;
        if (r == SL_EAGAIN) {
            if (++stalls > LOAD_EAGAIN_MAX) {
                rc = sl__err(errstr, errstr_size, SL_EIO,
                             "table: the input did not end within %d s",
                             LOAD_EAGAIN_MAX / 1000);
                break;
            }
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
            continue;
        }
        if (r < 0) {
            rc = sl__err(errstr, errstr_size, r, "table: %s",
                         err[0] ? err : sl_strerror(r));
            break;
        }
        stalls = 0;
        if (!reserved && !sl__table_on_disk(t) && b->n > 0 && vt->progress) {
            /* size the shared pseudonym cache once for the whole input
             * (rows so far x bytes left / bytes read), not by doublings */
            int64_t off = 0, end = 0;
            if (vt->progress(st, part, &off, &end) == 0 && off > 0 && end > off) {
                uint64_t rows = (uint64_t)((double)b->n * (double)end / (double)off);
                if (nh == 1 && !sl__table_ext(t))
                    sl__pcache_reserve(sl__hmac_cache(h[0]), rows);
                /* the index too, at once (a copy of the rows per key) */
                sl__table_reserve(t, rows * (uint64_t)(nh > 1 ? nh : 1));
            }
            reserved = true;
        }
        if (b->n == b->cap &&
            (rc = load_flush(t, b, h, nh, kc, tschema, errstr, errstr_size)))
            break;
    }
    if (rc == 0)
        rc = load_flush(t, b, h, nh, kc, tschema, errstr, errstr_size);
    sl__batch_free(b);
    return rc;
}

static bool has_glob(const char *p) { return strpbrk(p, "*?[") != NULL; }

/* rot NULL: pseudonymise under the current key only (if pseudo is set). */
static sl_table *table_load(const char *connector, const sl_schema *schema,
                            const char *key_col, const char *const *conf,
                            const sl_keyring *pseudo, const sl_rotation *rot,
                            const sl__state_conf *sc, char *errstr,
                            size_t errstr_size)
{
    if (!connector || (strcmp(connector, "file") && strcmp(connector, "postgres"))) {
        sl__err(errstr, errstr_size, SL_EINVAL, "table: unknown connector '%s' "
                "(known: file, postgres)", connector ? connector : "(null)");
        return NULL;
    }
    int kc = schema && key_col ? sl_schema_find(schema, key_col) : -1;
    if (kc < 0) {
        sl__err(errstr, errstr_size, SL_EINVAL, "table: no key column '%s' in "
                "the schema", key_col ? key_col : "(null)");
        return NULL;
    }
    sl_type kt = schema->cols[kc].type;
    if (pseudo && kt != SL_STRING) {
        sl__err(errstr, errstr_size, SL_EINVAL, "table: key column '%s' is %s; "
                "a pseudonymised key must be a VARCHAR identifier", key_col,
                sl_type_name(kt));
        return NULL;
    }
    if (kt != SL_INT64 && kt != SL_STRING) {
        sl__err(errstr, errstr_size, SL_EINVAL, "table: key column '%s' is %s; "
                "keys must be BIGINT or VARCHAR", key_col, sl_type_name(kt));
        return NULL;
    }
    const char *follow = sl__kv_get(conf, "follow");
    if (follow && strcasecmp(follow, "false") != 0 && strcmp(follow, "0") != 0 &&
        strcasecmp(follow, "no") != 0) {
        sl__err(errstr, errstr_size, SL_EINVAL, "table: 'follow' is not "
                "allowed: a table is read to its end before the job starts");
        return NULL;
    }
    bool is_file = !strcmp(connector, "file");
    const char *path = is_file ? sl__kv_get(conf, "path") : sl__kv_get(conf, "table");
    if (is_file && path && !has_glob(path) && access(path, R_OK) != 0) {
        sl__err(errstr, errstr_size, errno == ENOENT ? SL_ENOENT : SL_EIO,
                "table: %s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    const sl__source_vt *vt = sl__source_find(connector);
    if (!vt) {
        sl__err(errstr, errstr_size, SL_EINTERNAL,
                "table: the %s connector is not built in", connector);
        return NULL;
    }
    char err[512] = "";
    void *sconf = NULL, *st = NULL;
    sl__refresh_opts ro;
    const char **kv = NULL;
    int rc = sl__refresh_opts_parse(connector, conf, &ro, &kv, errstr, errstr_size);
    if (rc) return NULL;
    int64_t load_start = sl__refresh_wall_ms();
    rc = vt->configure(&sconf, (const char *const *)kv, schema, err, sizeof err);
    if (rc) {
        sl__err(errstr, errstr_size, rc, "table: %s", err[0] ? err : sl_strerror(rc));
        free(kv);
        return NULL;
    }
    sl_table *t = NULL;
    int nh = 0, nkeys = sl__keyring_nkeys(pseudo);
    sl__hmac **h = sl__xcalloc(nkeys > 0 ? (size_t)nkeys : 1, sizeof *h);
    int *kidx = sl__xcalloc(nkeys > 0 ? (size_t)nkeys : 1, sizeof *kidx);
    sl__limg li = {0};
    sl_schema *tschema = pseudo ? sl__pseudo_schema(schema, kc, key_col)
                                : sl__schema_copy(schema);
    int nparts = vt->partitions(sconf);
    int *parts = sl__xcalloc(nparts > 0 ? (size_t)nparts : 1, sizeof(int));
    for (int i = 0; i < nparts; i++) parts[i] = i;
    sl__ctx ctx = {.job = NULL, .stage = 0, .task = 0, .ntasks = 1,
                   .outdir = NULL};
    if (nparts <= 0) {
        rc = sl__err(errstr, errstr_size, SL_ENOENT, "table: %s: no input files",
                     path ? path : "(no path)");
        goto out;
    }
    if (pseudo && !rot) kidx[nh] = nkeys - 1; /* the current key */
    if (pseudo && !rot && !(h[nh++] = sl__hmac_new(pseudo, errstr, errstr_size))) {
        rc = SL_ECRYPTO;
        goto out;
    }
    for (int i = 0; rot && i < nkeys; i++) { /* every key of the domain */
        if (!sl__keyring_in_domain(pseudo, i, rot->domain)) continue;
        kidx[nh] = i;
        if (!(h[nh++] = sl__hmac_new_key(pseudo, i, errstr, errstr_size))) {
            rc = SL_ECRYPTO;
            goto out;
        }
    }
    /* a table that is not refreshed may come from its image (limage.c):
     * no parse, no MACs, no index build; it then has no pseudonym-join
     * memo (that needs the raw ids, which the image never holds), so a
     * join against it runs unfused */
    if (ro.interval_ms <= 0)
        sl__limg_prepare(&li, sc, connector, conf, schema, kc, tschema, pseudo,
                         kidx, h, nh);
    t = sl__limg_open(&li, tschema, kc);
    if (!t) {
        rc = vt->open(&st, sconf, schema, parts, nparts, &ctx, err, sizeof err);
        if (rc) {
            sl__err(errstr, errstr_size, rc, "table: %s", err[0] ? err : sl_strerror(rc));
            st = NULL;
            goto out;
        }
        t = sl__table_new_on(tschema, kc, sc, errstr, errstr_size);
        if (!t) {
            rc = SL_EIO;
            goto out;
        }
        /* under one key, in memory: log the raw ids for the pseudonym-join
         * memo of a fused pseudonymise + lookup (pjoin.c) */
        if (nh == 1 && !rot && !sl__table_on_disk(t) && sl__hmac_cache(h[0]))
            sl__table_set_ext(t, sl__pjoin_new(sl__hmac_cache(h[0])), sl__pjoin_free);
        rc = sl__table_load_all(vt, st, t, schema, h, nh, kc, tschema, errstr, errstr_size);
        if (rc == 0) rc = sl__table_seal(t, errstr, errstr_size);
        if (rc == 0 && sl_table_rows(t) > 0) sl__limg_save(&li, t);
    }
    /* An empty table is a misconfiguration far more often than a wish (a
     * wrong path or pattern, or every record bad), and every join against
     * it would silently give NULLs. */
    if (rc == 0 && sl_table_rows(t) == 0)
        rc = sl__err(errstr, errstr_size, SL_EINVAL, "table: %s: no rows "
                     "loaded (no input, or no record with a key; bad records "
                     "are in the dead letters)", path ? path : "(no path)");
    /* the overlay of changed rows is an in-memory table probed before the
     * loaded one; a disk table's rows come from sl__table_fetch instead */
    if (rc == 0 && ro.interval_ms > 0 && sl__table_on_disk(t))
        rc = sl__err(errstr, errstr_size, SL_EINVAL, "table: 'refresh.interval.ms' "
                     "needs the table in memory (state.backend=memory)");
    if (rc == 0 && ro.interval_ms > 0)
        rc = sl__refresh_start(t, vt, (const char *const *)kv, &ro, schema, kc,
                               tschema, pseudo, rot, load_start, errstr,
                               errstr_size);
out:
    if (st) vt->close(st);
    if (vt->conf_free) vt->conf_free(sconf);
    free(parts);
    for (int i = 0; i < nh; i++) sl__hmac_free(h[i]);
    free(h);
    free(kidx);
    sl__limg_close(&li);
    sl_schema_free(tschema);
    free(kv);
    if (rc) {
        sl_table_free(t);
        return NULL;
    }
    return t;
}

sl_table *sl_table_load(const char *connector, const sl_schema *schema,
                        const char *key_col, const char *const *conf,
                        const sl_keyring *pseudo, char *errstr,
                        size_t errstr_size)
{
    return table_load(connector, schema, key_col, conf, pseudo, NULL, NULL,
                      errstr, errstr_size);
}

sl_table *sl_table_load_rotating(const char *connector,
                                 const sl_schema *schema, const char *key_col,
                                 const char *const *conf,
                                 const sl_keyring *keys,
                                 const sl_rotation *rot, char *errstr,
                                 size_t errstr_size)
{
    if (!keys || !rot || rot->period_ms <= 0) {
        sl__err(errstr, errstr_size, SL_EINVAL, "table: rotation needs a "
                "keyring and a period_ms > 0");
        return NULL;
    }
    char err[512];
    int rc = sl__keyring_check_rotation(keys, rot->domain, rot->period_ms, err,
                                        sizeof err);
    if (rc) {
        sl__err(errstr, errstr_size, rc, "table: %s", err);
        return NULL;
    }
    return table_load(connector, schema, key_col, conf, keys, rot, NULL, errstr,
                      errstr_size);
}

uint64_t sl_table_disk_bytes(const sl_table *t) { return sl__table_disk_bytes(t); }

sl_table *sl_job_table_load(sl_job *job, const char *connector,
                            const sl_schema *schema, const char *key_col,
                            const char *const *conf, const sl_keyring *keys,
                            const sl_rotation *rot, char *errstr,
                            size_t errstr_size)
{
    if (!job) {
        sl__err(errstr, errstr_size, SL_EINVAL, "table: no job");
        return NULL;
    }
    sl__state_conf sc;
    sl__job_state_conf(job, &sc);
    if (!rot)
        return table_load(connector, schema, key_col, conf, keys, NULL, &sc,
                          errstr, errstr_size);
    if (!keys || rot->period_ms <= 0) {
        sl__err(errstr, errstr_size, SL_EINVAL, "table: rotation needs a "
                "keyring and a period_ms > 0");
        return NULL;
    }
    char err[512];
    int rc = sl__keyring_check_rotation(keys, rot->domain, rot->period_ms, err,
                                        sizeof err);
    if (rc) {
        sl__err(errstr, errstr_size, rc, "table: %s", err);
        return NULL;
    }
    return table_load(connector, schema, key_col, conf, keys, rot, &sc, errstr,
                      errstr_size);
}

/* ---- the join operator --------------------------------------------------- */
typedef struct {
    sl__lookup_conf c;
    const sl_schema *out;
    int nin;          /* input columns, copied first */
    bool str_key;
    size_t width[SL_MAX_COLS]; /* bytes a value of each appended column */
    bool nulls[SL_MAX_COLS];   /* the table column holds NULLs */
    uint32_t cap;     /* of the scratch arrays below */
    uint64_t *hash;
    const sl_batch **chunk; /* matched chunk per row, NULL = no match */
    uint32_t *row;
    sl_batch *fetched; /* disk table: the rows of the current batch */
    sl__rowcache *cache; /* disk table: its hot rows (borrowed), or NULL */
    _Atomic uint64_t *hits, *misses; /* counters at /metrics, or NULL */
    sl_job *job;
    const sl_table *ov; /* the table's overlay for this batch, or NULL */
    const sl__tproj *proj; /* one 8-byte column of a memory table: its projection */
} lookup_op;

static void lk_close(void *st)
{
    lookup_op *p = st;
    if (!p) return;
    free(p->hash);
    free(p->chunk);
    free(p->row);
    sl__batch_free(p->fetched);
    free(p);
}

static void lk_reserve(lookup_op *p, uint32_t n)
{
    if (n <= p->cap) return;
    p->cap = n;
    p->hash = sl__xrealloc(p->hash, sizeof *p->hash * n);
    p->chunk = sl__xrealloc(p->chunk, sizeof *p->chunk * n);
    p->row = sl__xrealloc(p->row, sizeof *p->row * n);
    if (sl__table_on_disk(p->c.table)) {
        sl__batch_free(p->fetched);
        p->fetched = sl__batch_new(sl__table_schema(p->c.table), n);
    }
}

static size_t type_width(sl_type ty)
{
    return ty == SL_BOOL ? 1 : ty == SL_STRING ? sizeof(sl_str) : 8;
}

static int lk_open(void **st, const void *conf, const sl__opinfo *info,
                   sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    const sl__lookup_conf *c = conf;
    const sl_schema *ts = sl__table_schema(c->table);
    if (!ts || c->key_col < 0 || c->key_col >= info->in->n ||
        info->in->cols[c->key_col].type != ts->cols[sl__table_key_col(c->table)].type ||
        info->out->n != info->in->n + c->ncols)
        return sl__err(errstr, errstr_size, SL_EINTERNAL,
                       "lookup: configuration does not match the stream");
    lookup_op *p = sl__xcalloc(1, sizeof *p);
    p->c = *c;
    p->out = info->out;
    p->nin = info->in->n;
    p->str_key = info->in->cols[c->key_col].type == SL_STRING;
    for (int j = 0; j < c->ncols; j++) {
        p->width[j] = type_width(ts->cols[c->tcols[j]].type);
        p->nulls[j] = sl__table_has_nulls(c->table, c->tcols[j]);
    }
    p->job = ctx ? ctx->job : NULL;
    if (sl__table_on_disk(c->table)) {
        p->cache = sl__table_cache(c->table);
        if (p->job) { /* labelled by the join's key column, never by data */
            char lab[160];
            snprintf(lab, sizeof lab, "lookup=\"%s\"", info->in->cols[c->key_col].name);
            p->hits = sl__job_counter(p->job, "sluice_state_cache_hits_total",
                                      "Lookups served by the row cache in front "
                                      "of a RocksDB table", lab);
            p->misses = sl__job_counter(p->job, "sluice_state_cache_misses_total",
                                        "Lookups the row cache sent to RocksDB",
                                        lab);
        }
    } else if (c->ncols == 1 && !p->str_key && !c->fused) {
        p->proj = sl__table_proj(c->table, c->tcols[0]); /* NULL: not 8 bytes */
    }
    /* a join the pseudonymise before it did not take over (opened first,
     * in the same task) gets the loaded ids' pseudonyms cached */
    if (!sl__table_on_disk(c->table)) sl__pjoin_warm(c->table);
    lk_reserve(p, info->batch_cap ? info->batch_cap : 1024);
    *st = p;
    return 0;
}

/* A disk table: its row cache, then one sorted multi-get for the misses
 * (rows into p->fetched); the cache's hits and misses go to /metrics. */
static int lk_fetch(lookup_op *p, const sl_batch *b)
{
    char err[512];
    sl__rowcache_counts n = {0};
    int rc = sl__table_fetch_cached(p->c.table, p->cache, b, p->c.key_col,
                                    p->fetched, p->row, &n, err, sizeof err);
    if (rc) {
        if (p->job) sl__job_fail(p->job, rc, "lookup: %s", err);
        return rc;
    }
    if (p->hits && p->cache) {
        atomic_fetch_add_explicit(p->hits, n.hits, memory_order_relaxed);
        atomic_fetch_add_explicit(p->misses, n.misses, memory_order_relaxed);
    }
    for (uint32_t i = 0; i < b->n; i++)
        p->chunk[i] = p->row[i] == UINT32_MAX ? NULL : p->fetched;
    return 0;
}

/* Pass 1 and 2: find every data row's table row. */
static void lk_probe(lookup_op *p, const sl_batch *b)
{
    uint32_t n = b->n;
    const sl_table *t = p->c.table;
    /* a refreshed table's changed rows win (table_refresh.c); loaded once
     * per batch, so a batch sees one version */
    const sl_table *ov = p->ov = sl__table_overlay(t);
    const uint8_t *kind = b->kind, *valid = b->cols[p->c.key_col].valid;
    const void *keys = b->cols[p->c.key_col].data;
    for (uint32_t i = 0; i < n; i++) {
        if (kind[i] != SL_KIND_DATA || !valid[i]) continue;
        if (p->str_key) {
            const sl_str *k = (const sl_str *)keys + i;
            p->hash[i] = sl__table_hash_str(k->ptr, k->len);
        } else {
            p->hash[i] = sl__table_hash_i64(((const int64_t *)keys)[i]);
        }
        sl__table_prefetch(t, p->hash[i]);
    }
    for (uint32_t i = 0; i < n; i++) {
        p->chunk[i] = NULL;
        if (kind[i] != SL_KIND_DATA || !valid[i]) continue;
        int hit = 0;
        if (p->str_key) {
            const sl_str *k = (const sl_str *)keys + i;
            if (ov)
                hit = sl__table_find_str_h(ov, k->ptr, k->len, p->hash[i],
                                           &p->chunk[i], &p->row[i]);
            if (!hit)
                hit = sl__table_find_str_h(t, k->ptr, k->len, p->hash[i],
                                           &p->chunk[i], &p->row[i]);
        } else {
            int64_t k = ((const int64_t *)keys)[i];
            if (ov)
                hit = sl__table_find_i64_h(ov, k, p->hash[i], &p->chunk[i],
                                           &p->row[i]);
            if (!hit)
                hit = sl__table_find_i64_h(t, k, p->hash[i], &p->chunk[i],
                                           &p->row[i]);
        }
        if (!hit) p->chunk[i] = NULL;
    }
}

/* The one appended column straight from the table's projection: hash and
 * prefetch every key's slot, then probe; one cache line per row (the
 * index slot and the row's value in one). */
static void lk_proj(lookup_op *p, sl_batch *b, int oc)
{
    uint32_t n = b->n;
    const uint8_t *kind = b->kind, *valid = b->cols[p->c.key_col].valid;
    const int64_t *keys = b->cols[p->c.key_col].data;
    uint8_t *ov = b->cols[oc].valid;
    uint64_t *out = b->cols[oc].data;
    for (uint32_t i = 0; i < n; i++) {
        if (kind[i] != SL_KIND_DATA || !valid[i]) continue;
        p->hash[i] = sl__table_hash_i64(keys[i]);
        sl__tproj_prefetch(p->proj, p->hash[i]);
    }
    for (uint32_t i = 0; i < n; i++) {
        out[i] = 0;
        ov[i] = kind[i] == SL_KIND_DATA && valid[i] &&
                sl__tproj_find(p->proj, keys[i], p->hash[i], &out[i]);
    }
}

#define GATHER_AHEAD 16

/* Pass 3: output column oc gets table column j (tc) of each matched row. */
static void lk_gather(lookup_op *p, sl_batch *o, int oc, int j, int tc, sl_type ty)
{
    uint32_t n = o->n;
    uint8_t *ov = o->cols[oc].valid;
    bool nulls = p->nulls[j] || (p->ov && sl__table_has_nulls(p->ov, tc));
    for (uint32_t i = 0; i < n; i++) {
        uint32_t a = i + GATHER_AHEAD;
        if (a < n && p->chunk[a]) {
            const struct sl__col *ca = &p->chunk[a]->cols[tc];
            __builtin_prefetch((const char *)ca->data + p->width[j] * p->row[a]);
            if (nulls) __builtin_prefetch(ca->valid + p->row[a]);
        }
        const sl_batch *c = p->chunk[i];
        uint32_t r = p->row[i];
        ov[i] = c && (!nulls || c->cols[tc].valid[r]);
        switch (ty) {
        case SL_BOOL:
            ((uint8_t *)o->cols[oc].data)[i] =
                ov[i] ? ((const uint8_t *)c->cols[tc].data)[r] : 0;
            break;
        case SL_STRING: /* the table outlives the job: referenced (sl_str) */
            ((sl_str *)o->cols[oc].data)[i] =
                ov[i] ? ((const sl_str *)c->cols[tc].data)[r] : (sl_str){"", 0};
            if (ov[i] && p->fetched && ((sl_str *)o->cols[oc].data)[i].len) {
                /* a disk table's row lives until the next batch: copied */
                sl_str *v = (sl_str *)o->cols[oc].data + i;
                char *cp = sl__arena_alloc(&o->arena, v->len);
                memcpy(cp, v->ptr, v->len);
                v->ptr = cp;
            }
            break;
        default: /* INT64, TIMESTAMP, FLOAT64: 8 bytes, copied as bytes */
            if (ov[i])
                memcpy((char *)o->cols[oc].data + 8 * (size_t)i,
                       (const char *)c->cols[tc].data + 8 * (size_t)r, 8);
            else
                memset((char *)o->cols[oc].data + 8 * (size_t)i, 0, 8);
            break;
        }
    }
}

static int lk_batch(void *st, sl_batch *b, sl__out *out)
{
    lookup_op *p = st;
    uint32_t n = b->n;
    if (n == 0) {
        sl__batch_free(b);
        return 0;
    }
    /* joined already by the pseudonymise operator fused with this one */
    if (b->schema == p->out) return sl__emit(out, b);
    lk_reserve(p, n);
    if (p->c.fused && !p->proj && p->c.ncols == 1 && !p->str_key &&
        !sl__table_on_disk(p->c.table)) /* the fused one did not join: once */
        p->proj = sl__table_proj(p->c.table, p->c.tcols[0]);
    if (p->proj && !sl__table_overlay(p->c.table)) {
        sl__batch_extend(b, p->out);
        lk_proj(p, b, p->nin);
        return sl__emit(out, b);
    }
    if (p->fetched) {
        int rc = lk_fetch(p, b);
        if (rc) {
            sl__batch_free(b);
            return rc;
        }
    } else {
        lk_probe(p, b);
    }
    sl__batch_extend(b, p->out); /* in place: the input columns stay */
    for (int j = 0; j < p->c.ncols; j++)
        lk_gather(p, b, p->nin + j, j, p->c.tcols[j], p->out->cols[p->nin + j].type);
    return sl__emit(out, b);
}

const sl__op_vt sl__op_lookup = {
    .name = "lookup",
    .open = lk_open,
    .batch = lk_batch,
    .close = lk_close,
    .conf_free = free,
};

sl_stream *sl_stream_lookup(sl_stream *s, const char *key_col,
                            const sl_table *t, const char *const *cols)
{
    if (!s) return NULL;
    sl_job *job = sl__stream_job(s);
    const sl_schema *in = sl_stream_schema(s);
    if (!t) {
        sl__job_fail(job, SL_EINVAL, "lookup: no table given");
        return NULL;
    }
    const sl_schema *ts = sl__table_schema(t);
    int tk = sl__table_key_col(t);
    int kc = key_col ? sl_schema_find(in, key_col) : -1;
    if (kc < 0) {
        sl__job_fail(job, SL_EINVAL, "lookup: no column '%s' in the stream",
                     key_col ? key_col : "(null)");
        return NULL;
    }
    if (in->cols[kc].type != ts->cols[tk].type) {
        sl__job_fail(job, SL_EINVAL, "lookup: key column '%s' is %s but the "
                     "table's key '%s' is %s", key_col,
                     sl_type_name(in->cols[kc].type), ts->cols[tk].name,
                     sl_type_name(ts->cols[tk].type));
        return NULL;
    }
    sl__lookup_conf *conf = sl__xcalloc(1, sizeof *conf);
    conf->key_col = kc;
    conf->table = t;
    sl_schema *out = sl__schema_copy(in);
    const char *err = NULL;
    char msg[256];
    /* cols NULL: every table column but the key */
    int n = 0;
    if (cols) while (cols[n]) n++;
    if (cols && n == 0) err = "lookup: no table columns to append";
    for (int j = 0; !err && j < (cols ? n : ts->n); j++) {
        int tc = cols ? sl_schema_find(ts, cols[j]) : j;
        if (!cols && tc == tk) continue;
        if (tc < 0) {
            snprintf(msg, sizeof msg, "lookup: no column '%s' in the table",
                     cols[j]);
            err = msg;
        } else if (sl_schema_find(out, ts->cols[tc].name) >= 0) {
            snprintf(msg, sizeof msg, "lookup: column '%s' is already in the "
                     "stream (or listed twice)", ts->cols[tc].name);
            err = msg;
        } else if (out->n >= SL_MAX_COLS) {
            snprintf(msg, sizeof msg, "lookup: more than %d columns",
                     SL_MAX_COLS);
            err = msg;
        } else {
            int oc = sl_schema_add(out, ts->cols[tc].name, ts->cols[tc].type);
            out->cols[oc].identifier = ts->cols[tc].identifier;
            conf->tcols[conf->ncols++] = tc;
        }
    }
    if (!err && conf->ncols == 0) err = "lookup: the table has no columns to append";
    if (err) {
        sl__job_fail(job, SL_EINVAL, "%s", err);
        free(conf);
        sl_schema_free(out);
        return NULL;
    }
    /* The fusion rule: a join on the pseudonym a pseudonymise operator
     * has just made, of one 8-byte column of a memory table keyed by
     * pseudonyms, lets that operator join through the table's
     * pseudonym-join memo (pjoin.c), one probe a row for both. Whether
     * the memo exists (the table loaded under the operator's key) is
     * known when the operators open; until then both stay as they are. */
    sl__pseudo_conf *pc = sl__stream_op_conf(s, &sl__op_pseudonymise);
    bool fuse = pc && pc->col == kc && !pc->join_table && conf->ncols == 1 &&
                in->cols[kc].type == SL_INT64 && !sl__table_on_disk(t) &&
                sl__table_ext(t);
    conf->fused = fuse;
    int tcol = conf->tcols[0];
    sl_stream *r = sl__stream_add_op(s, &sl__op_lookup, conf, out);
    sl_schema_free(out);
    if (r && fuse) {
        pc->join_table = t;
        pc->join_tcol = tcol;
        pc->join_out = sl_stream_schema(r);
    }
    return r;
}
