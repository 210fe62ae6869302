/* kanon.c — the k-anonymity operator: drops result rows whose exact
 * distinct-subscriber count (an INT64 column, usually from a window's
 * COUNT_DISTINCT over pseudonyms) is below k, or NULL, and counts them as
 * suppressed groups. Rows are removed in place, so surviving rows keep
 * their order and their strings stay in the batch's arena. Canary rows
 * always pass: they are never real statistics and must reach the sinks.
 *
 * Also k-anonymity by folding (sl_stream_window_fold, below): small groups
 * merged into coarser ones inside the window operator as it fires, with
 * the exact distinct count of each merged group. */
#include <stdlib.h>
#include <string.h>

#include "ops/agg.h"
#include "ops/privacy.h"

typedef struct {
    int col;
    int64_t k;
    sl__ctx *ctx;
} kanon_op;

static int ka_open(void **st, const void *conf, const sl__opinfo *info,
                   sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    const sl__kanon_conf *c = conf;
    if (c->col < 0 || c->col >= info->in->n ||
        info->in->cols[c->col].type != SL_INT64 || c->k < 2)
        return sl__err(errstr, errstr_size, SL_EINTERNAL,
                       "k_anon: configuration does not match the stream");
    kanon_op *p = sl__xcalloc(1, sizeof *p);
    p->col = c->col;
    p->k = c->k;
    p->ctx = ctx;
    *st = p;
    return 0;
}

static void ka_close(void *st) { free(st); }

/* Moves row `from` to row `to` (to < from) in every column. */
static void move_row(sl_batch *b, uint32_t to, uint32_t from)
{
    b->khash = NULL; /* rows moved */
    b->kind[to] = b->kind[from];
    for (int c = 0; c < b->schema->n; c++) {
        b->cols[c].valid[to] = b->cols[c].valid[from];
        switch (b->schema->cols[c].type) {
        case SL_BOOL:
            ((uint8_t *)b->cols[c].data)[to] = ((uint8_t *)b->cols[c].data)[from];
            break;
        case SL_STRING:
            ((sl_str *)b->cols[c].data)[to] = ((sl_str *)b->cols[c].data)[from];
            break;
        default: /* INT64, TIMESTAMP, FLOAT64: 8 bytes, moved as bytes */
            memcpy((char *)b->cols[c].data + 8 * (size_t)to,
                   (const char *)b->cols[c].data + 8 * (size_t)from, 8);
            break;
        }
    }
}

uint32_t sl__ops_compact(sl_batch *b, const uint8_t *keep)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        if (!keep[i]) continue;
        if (kept != i) move_row(b, kept, i);
        kept++;
    }
    b->n = kept;
    return kept;
}

static int ka_batch(void *st, sl_batch *b, sl__out *out)
{
    kanon_op *p = st;
    const int64_t *cnt = b->cols[p->col].data;
    const uint8_t *valid = b->cols[p->col].valid;
    uint32_t n = b->n, kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        bool keep = b->kind[i] != SL_KIND_DATA || (valid[i] && cnt[i] >= p->k);
        if (!keep) continue;
        if (kept != i) move_row(b, kept, i);
        kept++;
    }
    if (kept < n) sl__count(p->ctx, SL__CTR_SUPPRESSED, n - kept);
    if (kept == 0) {
        sl__batch_free(b);
        return 0;
    }
    b->n = kept;
    return sl__emit(out, b);
}

const sl__op_vt sl__op_kanon = {
    .name = "k_anon",
    .open = ka_open,
    .batch = ka_batch,
    .close = ka_close,
    .conf_free = free,
};

sl_stream *sl_stream_k_anon(sl_stream *s, const char *count_col, int64_t k)
{
    if (!s) return NULL;
    sl_job *job = sl__stream_job(s);
    const sl_schema *in = sl_stream_schema(s);
    int c = count_col ? sl_schema_find(in, count_col) : -1;
    if (c < 0) {
        sl__job_fail(job, SL_EINVAL, "k_anon: no column '%s' in the stream",
                     count_col ? count_col : "(null)");
        return NULL;
    }
    if (in->cols[c].type != SL_INT64) {
        sl__job_fail(job, SL_EINVAL, "k_anon: column '%s' is %s; the count of "
                     "distinct subscribers must be BIGINT", count_col,
                     sl_type_name(in->cols[c].type));
        return NULL;
    }
    if (k < 2) {
        sl__job_fail(job, SL_EINVAL, "k_anon: k must be at least 2 (got %lld); "
                     "k = 1 would publish single subscribers",
                     (long long)k);
        return NULL;
    }
    /* On a window's output, the window itself drops the small groups as it
     * fires, before sorting and emitting them; this operator stays as the
     * check (and for canaries), finding nothing left to drop. */
    void *wconf = sl__stream_op_conf(s, &sl__window_vt);
    if (wconf) sl__window_conf_min_count(wconf, count_col, k);
    sl__qs_note_kanon(job); /* queryable state must apply k too */
    sl__kanon_conf *conf = sl__xcalloc(1, sizeof *conf);
    conf->col = c;
    conf->k = k;
    return sl__stream_add_op(s, &sl__op_kanon, conf, in);
}

/* ---- folding ---------------------------------------------------------------
 * k-anonymity by folding runs inside the window operator at fire time,
 * where the groups' exact distinct sets still exist (sl__fold_fire); the
 * window groups by the stream's key plus the foldable columns, and the
 * stream is partitioned by its key only, so every group of a coarser group
 * is in the same task.
 *
 * Invariants (sl__fold_fire):
 * 1. Every group of the window ends in exactly one published row or in the
 *    suppressed remainder: a group is merged into one coarser group at a
 *    time and never published twice, so totals are preserved.
 * 2. A row is published only with its exact distinct count (the union of
 *    the merged sets, sl__agg_merge) at least k; merging into a published
 *    row only adds to it.
 * 3. Published keys are unique within a window: a coarser group whose key
 *    equals a published one is merged into it instead.
 * 4. The output is a function of the window's groups and the key order
 *    the window hands them in (sorted): groups published as they are come
 *    first in that order, then the coarser rows level by level, each in
 *    the order of its first merged group. */

typedef struct {
    int col;      /* output column */
    int nmap;
    char **from;  /* nmap values and their coarser values */
    char **to;
    bool all;     /* map NULL: everything becomes "*" */
} fold_level;

struct sl__fold {
    int64_t k;
    int count_agg;  /* index of the COUNT_DISTINCT aggregate */
    int nkey;       /* key columns in the output, from column 2 */
    int nlevels;
    fold_level *levels;
};

void sl__fold_free(sl__fold *f)
{
    if (!f) return;
    for (int i = 0; i < f->nlevels; i++) {
        for (int j = 0; j < f->levels[i].nmap; j++) {
            free(f->levels[i].from[j]);
            free(f->levels[i].to[j]);
        }
        free(f->levels[i].from);
        free(f->levels[i].to);
    }
    free(f->levels);
    free(f);
}

/* One group while folding: its states, and where its key columns are. */
typedef struct {
    uint8_t *grp;
    bool owned;          /* a merged state of our own (else the window's) */
    const sl_batch *kb;  /* key columns: row krow of kb */
    uint32_t krow;
    uint64_t norig;      /* window groups merged into it */
} fentry;

typedef struct {
    const sl__fold *f;
    const sl__agg *aggs;
    size_t naggs;
    uint32_t state_size;
    uint8_t *kbuf;
    size_t kcap;
} fold_ctx;

/* A byte encoding of a row's key columns for hashing (not an order). */
static size_t fold_key(fold_ctx *c, const sl_batch *b, uint32_t r)
{
    size_t n = 0;
    for (int k = 0; k < c->f->nkey; k++) {
        int col = 2 + k;
        bool is_str = b->schema->cols[col].type == SL_STRING;
        const sl_str s = is_str ? ((const sl_str *)b->cols[col].data)[r] : (sl_str){0};
        size_t need = n + 1 + (is_str ? 4 + s.len : 8);
        if (need > c->kcap || !c->kbuf) {
            c->kcap = need * 2;
            c->kbuf = sl__xrealloc(c->kbuf, c->kcap);
        }
        bool valid = b->cols[col].valid[r];
        c->kbuf[n++] = valid;
        if (!valid) continue;
        if (is_str) {
            memcpy(c->kbuf + n, &s.len, 4);
            if (s.len) memcpy(c->kbuf + n + 4, s.ptr, s.len); /* "" may be NULL */
            n += 4 + s.len;
        } else if (b->schema->cols[col].type == SL_BOOL) {
            c->kbuf[n++] = ((const uint8_t *)b->cols[col].data)[r];
        } else {
            memcpy(c->kbuf + n, (const int64_t *)b->cols[col].data + r, 8);
            n += 8;
        }
    }
    return n;
}

static int copy_val(sl_batch *d, uint32_t dr, const sl_batch *s, uint32_t sr,
                    int col)
{
    d->cols[col].valid[dr] = s->cols[col].valid[sr];
    switch (s->schema->cols[col].type) {
    case SL_STRING: {
        const sl_str *v = (const sl_str *)s->cols[col].data + sr;
        if (!s->cols[col].valid[sr]) {
            ((sl_str *)d->cols[col].data)[dr] = (sl_str){"", 0};
            return 0;
        }
        return sl_batch_set_str(d, col, dr, v->ptr, v->len);
    }
    case SL_BOOL:
        ((uint8_t *)d->cols[col].data)[dr] = ((const uint8_t *)s->cols[col].data)[sr];
        return 0;
    default:
        ((int64_t *)d->cols[col].data)[dr] = ((const int64_t *)s->cols[col].data)[sr];
        return 0;
    }
}

/* Writes the coarser key of e under level l into row r of kb. */
static int coarsen(const fold_level *l, int nkey, const fentry *e,
                   sl_batch *kb, uint32_t r)
{
    for (int k = 0; k < nkey; k++) {
        int rc = copy_val(kb, r, e->kb, e->krow, 2 + k);
        if (rc) return rc;
    }
    int c = l->col;
    if (l->all) {
        kb->cols[c].valid[r] = 1;
        return sl_batch_set_str(kb, c, r, "*", 1);
    }
    if (!kb->cols[c].valid[r]) return 0;
    const sl_str *v = (const sl_str *)kb->cols[c].data + r;
    for (int j = 0; j < l->nmap; j++)
        if (strlen(l->from[j]) == v->len && !memcmp(l->from[j], v->ptr, v->len))
            return sl_batch_set_str(kb, c, r, l->to[j], strlen(l->to[j]));
    return 0;
}

static void fentry_merge(const fold_ctx *c, fentry *dst, fentry *src)
{
    for (size_t a = 0; a < c->naggs; a++) sl__agg_merge(&c->aggs[a], dst->grp, src->grp);
    dst->norig += src->norig;
    if (src->owned) {
        for (size_t a = 0; a < c->naggs; a++) sl__agg_state_free(&c->aggs[a], src->grp);
        free(src->grp);
    }
    src->grp = NULL;
}

static int64_t fentry_count(const fold_ctx *c, const fentry *e)
{
    return sl__agg_count_value(&c->aggs[c->f->count_agg], e->grp);
}

static void push_entry(fentry **v, size_t *n, size_t *cap, fentry e)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *v = sl__xrealloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = e;
}

/* Adds e to the published rows (pub, index pmap) or, when a row of the same
 * key is published already, merges it in (invariant 3). */
static void publish(fold_ctx *c, sl__bmap *pmap, fentry **pub, size_t *np,
                    size_t *pcap, fentry e)
{
    size_t len = fold_key(c, e.kb, e.krow);
    bool fresh;
    uint32_t *idx = sl__bmap_upsert(pmap, c->kbuf, len,
                                    sl__hash_bytes(c->kbuf, len, 0x666f6c64),
                                    &fresh);
    if (!fresh) { /* a key in pmap is a row of pub */
        SL_ASSERT(*pub != NULL && *idx < *np);
        fentry_merge(c, &(*pub)[*idx], &e);
        return;
    }
    *idx = (uint32_t)*np;
    push_entry(pub, np, pcap, e);
}

static int emit_row(const fold_ctx *c, const fentry *e, int64_t start,
                    int64_t end, sl__out *out, sl_batch **ob, uint32_t cap,
                    const sl_schema *schema)
{
    if (!*ob) *ob = sl__batch_new(schema, cap);
    sl_batch *b = *ob;
    uint32_t r = b->n;
    ((int64_t *)b->cols[0].data)[r] = start;
    ((int64_t *)b->cols[1].data)[r] = end;
    b->cols[0].valid[r] = b->cols[1].valid[r] = 1;
    int rc = 0;
    for (int k = 0; k < c->f->nkey && rc == 0; k++)
        rc = copy_val(b, r, e->kb, e->krow, 2 + k);
    for (size_t a = 0; a < c->naggs && rc == 0; a++)
        rc = sl__agg_result(&c->aggs[a], e->grp, b, 2 + c->f->nkey + (int)a, r);
    if (rc) return rc;
    b->kind[r] = SL_KIND_DATA;
    b->n = r + 1;
    if (b->n == b->cap) {
        *ob = NULL;
        return sl__emit(out, b);
    }
    return 0;
}

int sl__fold_fire(const sl__fold *f, sl__ctx *ctx, const sl__agg *aggs,
                  size_t naggs, uint32_t state_size, int64_t start,
                  int64_t end, const sl_batch *keys, uint8_t *const *grp,
                  sl__out *out, sl_batch **ob, uint32_t cap)
{
    fold_ctx c = {.f = f, .aggs = aggs, .naggs = naggs,
                  .state_size = state_size};
    fentry *pub = NULL, *cand = NULL;
    size_t np = 0, pcap = 0, nc = 0, ccap = 0;
    sl__bmap pmap;
    sl__bmap_init(&pmap, sizeof(uint32_t));
    sl_batch **kbs = sl__xcalloc((size_t)f->nlevels + 1, sizeof *kbs);
    int rc = 0;
    for (uint32_t g = 0; g < keys->n; g++) {
        fentry e = {.grp = grp[g], .kb = keys, .krow = g, .norig = 1};
        if (fentry_count(&c, &e) >= f->k) publish(&c, &pmap, &pub, &np, &pcap, e);
        else push_entry(&cand, &nc, &ccap, e);
    }
    uint64_t folded = 0;
    for (int l = 0; l < f->nlevels && nc > 0 && rc == 0; l++) {
        /* merge the remaining groups by their coarser key */
        sl_batch *kb = kbs[l] = sl__batch_new(keys->schema, (uint32_t)nc);
        sl__bmap m;
        sl__bmap_init(&m, sizeof(uint32_t));
        fentry *merged = NULL;
        size_t nm = 0, mcap = 0;
        for (size_t i = 0; i < nc && rc == 0; i++) {
            uint32_t r = kb->n;
            if ((rc = coarsen(&f->levels[l], f->nkey, &cand[i], kb, r))) break;
            size_t len = fold_key(&c, kb, r);
            bool fresh;
            uint32_t *idx = sl__bmap_upsert(&m, c.kbuf, len,
                                            sl__hash_bytes(c.kbuf, len, 0x666f6c64),
                                            &fresh);
            if (fresh) {
                *idx = (uint32_t)nm;
                kb->n++;
                fentry e = {.grp = sl__xcalloc(1, state_size ? state_size : 8),
                            .owned = true, .kb = kb, .krow = r};
                push_entry(&merged, &nm, &mcap, e);
            }
            SL_ASSERT(merged != NULL && *idx < nm); /* a key in m is a row of merged */
            fentry_merge(&c, &merged[*idx], &cand[i]);
        }
        sl__bmap_close(&m);
        /* publish what reached k; the rest go on */
        nc = 0;
        for (size_t i = 0; i < nm; i++) {
            if (rc) {
                push_entry(&cand, &nc, &ccap, merged[i]);
                continue;
            }
            size_t len = fold_key(&c, merged[i].kb, merged[i].krow);
            bool known = sl__bmap_find(&pmap, c.kbuf, len,
                                       sl__hash_bytes(c.kbuf, len, 0x666f6c64));
            if (known || fentry_count(&c, &merged[i]) >= f->k) {
                folded += merged[i].norig;
                publish(&c, &pmap, &pub, &np, &pcap, merged[i]);
            } else {
                push_entry(&cand, &nc, &ccap, merged[i]);
            }
        }
        free(merged);
    }
    uint64_t suppressed = 0;
    for (size_t i = 0; i < nc; i++) { /* below k at the top: withheld */
        suppressed += cand[i].norig;
        if (cand[i].owned) {
            for (size_t a = 0; a < naggs; a++) sl__agg_state_free(&aggs[a], cand[i].grp);
            free(cand[i].grp);
        }
    }
    for (size_t i = 0; i < np; i++) {
        if (rc == 0) rc = emit_row(&c, &pub[i], start, end, out, ob, cap, keys->schema);
        if (pub[i].owned) {
            for (size_t a = 0; a < naggs; a++) sl__agg_state_free(&aggs[a], pub[i].grp);
            free(pub[i].grp);
        }
    }
    if (suppressed) sl__count(ctx, SL__CTR_SUPPRESSED, suppressed);
    if (folded) sl__count(ctx, SL__CTR_FOLDED, folded);
    for (int l = 0; l < f->nlevels; l++) sl__batch_free(kbs[l]);
    free(kbs);
    free(pub);
    free(cand);
    free(c.kbuf);
    sl__bmap_close(&pmap);
    return rc;
}

/* ---- the builder ------------------------------------------------------------ */
static bool in_list(const char *const *l, const char *name)
{
    for (size_t i = 0; l && l[i]; i++)
        if (!strcmp(l[i], name)) return true;
    return false;
}

static int fold_new(sl__fold **fp, const sl_schema *out, int nkey,
                    const char *const *group_cols, const sl_agg_spec *aggs,
                    size_t naggs, const sl_fold_spec *spec, char *errstr,
                    size_t errsz)
{
    if (spec->k < 2)
        return sl__err(errstr, errsz, SL_EINVAL, "k_anon: k must be at least 2 "
                       "(got %lld); k = 1 would publish single subscribers",
                       (long long)spec->k);
    int ca = -1;
    for (size_t a = 0; spec->count_col && a < naggs; a++)
        if (!strcmp(aggs[a].as, spec->count_col)) ca = (int)a;
    if (ca < 0 || aggs[ca].kind != SL_AGG_COUNT_DISTINCT)
        return sl__err(errstr, errsz, SL_EINVAL, "k_anon: '%s' must name an "
                       "exact COUNT_DISTINCT aggregate of the window (the k "
                       "test needs the exact count)",
                       spec->count_col ? spec->count_col : "(null)");
    if (spec->nlevels && !spec->levels)
        return sl__err(errstr, errsz, SL_EINVAL, "k_anon: fold levels is NULL "
                       "but nlevels is %zu", spec->nlevels);
    for (size_t i = 0; i < spec->nlevels; i++) {
        const sl_fold_level *l = &spec->levels[i];
        int c = l->col ? sl_schema_find(out, l->col) : -1;
        if (!l->col || !in_list(group_cols, l->col) || c < 0 ||
            out->cols[c].type != SL_STRING)
            return sl__err(errstr, errsz, SL_EINVAL, "k_anon: fold level %zu: "
                           "'%s' must be a VARCHAR column of group_cols (not "
                           "the stream's key, which is never folded)", i + 1,
                           l->col ? l->col : "(null)");
        for (size_t j = 0; l->map && l->map[j]; j += 2)
            if (!l->map[j + 1])
                return sl__err(errstr, errsz, SL_EINVAL, "k_anon: fold level "
                               "%zu: value '%s' has no coarser value (map is "
                               "value, coarser value pairs)", i + 1, l->map[j]);
    }
    sl__fold *f = sl__xcalloc(1, sizeof *f);
    f->k = spec->k;
    f->count_agg = ca;
    f->nkey = nkey;
    f->nlevels = (int)spec->nlevels;
    f->levels = sl__xcalloc(spec->nlevels ? spec->nlevels : 1, sizeof *f->levels);
    for (size_t i = 0; i < spec->nlevels; i++) {
        const sl_fold_level *l = &spec->levels[i];
        fold_level *d = &f->levels[i];
        d->col = sl_schema_find(out, l->col);
        d->all = l->map == NULL;
        while (l->map && l->map[2 * d->nmap]) d->nmap++;
        d->from = sl__xcalloc((size_t)d->nmap + 1, sizeof *d->from);
        d->to = sl__xcalloc((size_t)d->nmap + 1, sizeof *d->to);
        for (int j = 0; l->map && j < d->nmap; j++) {
            d->from[j] = sl__xstrdup(l->map[2 * j]);
            d->to[j] = sl__xstrdup(l->map[2 * j + 1]);
        }
    }
    *fp = f;
    return 0;
}

sl_stream *sl_stream_window_fold(sl_stream *s, const sl_window_spec *w,
                                 const char *const *group_cols,
                                 const sl_agg_spec *aggs, size_t naggs,
                                 const sl_fold_spec *fold)
{
    if (!s) return NULL;
    sl_job *job = sl__stream_job(s);
    const char *const *key = sl__stream_key(s);
    int npart = 0, ng = 0;
    while (key && key[npart]) npart++;
    while (group_cols && group_cols[ng]) ng++;
    sl__qs_note_kanon(job);
    if (!fold) {
        sl__job_fail(job, SL_EINVAL, "k_anon: no fold specification");
        return NULL;
    }
    if (npart == 0) {
        sl__job_fail(job, SL_EINVAL, "k_anon: folding needs the stream keyed "
                     "(key_by) by the dimensions that are never folded, so "
                     "that the groups of a coarser group meet in one task");
        return NULL;
    }
    for (int i = 0; i < ng; i++)
        if (in_list(key, group_cols[i])) {
            sl__job_fail(job, SL_EINVAL, "k_anon: group column '%s' is part of "
                         "the stream's key already", group_cols[i]);
            return NULL;
        }
    if (npart + ng > SL_MAX_COLS) {
        sl__job_fail(job, SL_EINVAL, "k_anon: too many grouping columns");
        return NULL;
    }
    const char *keys[SL_MAX_COLS + 1];
    for (int i = 0; i < npart; i++) keys[i] = key[i];
    for (int i = 0; i < ng; i++) keys[npart + i] = group_cols[i];
    keys[npart + ng] = NULL;
    void *conf;
    sl_schema *out;
    char err[512];
    int rc = sl__window_conf_new(&conf, &out, sl_stream_schema(s), keys,
                                 sl__stream_time_col(s), w, aggs, naggs, err,
                                 sizeof err);
    sl__fold *f = NULL;
    if (rc == 0 && (rc = fold_new(&f, out, npart + ng, group_cols, aggs, naggs,
                                  fold, err, sizeof err)) != 0) {
        sl__window_vt.conf_free(conf);
        sl_schema_free(out);
    }
    if (rc) {
        sl__job_fail(job, rc, "%s", err);
        return NULL;
    }
    sl__window_conf_fold(conf, npart, f);
    sl_stream *ns = sl__stream_add_op(s, &sl__window_vt, conf, out);
    sl_schema_free(out);
    sl__stream_set_time_col(ns, "window_start");
    return ns;
}
