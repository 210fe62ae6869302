/* test_pjoin.c — the pseudonym-join memo (src/ops/pjoin.c) and the fused
 * pseudonymise + lookup operators it serves. A subscriber file with ids of
 * every form (12 digits, leading zeros, letters, 20 digits: the last two
 * not in the memo), duplicate ids (the last row wins) and NULL values is
 * loaded under a keyring; events mixing known, unknown, unpackable and
 * NULL ids and canaries go through the fused operators, the unfused ones
 * and a job built with the public API, each row checked against a model
 * computed from the file (pseudonym = sl_keyring_pseudonym). Also: the
 * memo is built once, for one column, only under the table's own key, and
 * not at all when two ids share a pseudonym; an overlay (a refreshed
 * table) wins over the memo's values; the
 * planner fuses only a lookup right after the pseudonymise on its output;
 * four threads open and join at once (the TSan build runs this). Seed from
 * the commit (tu_seed; SLUICE_SEED reruns), printed. */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "ops/privacy.h"
#include "state/state.h"

#define KEY_OLD "aa00000000000000000000000000000000000000000000000000000000000001"
#define KEY_CUR "bb00000000000000000000000000000000000000000000000000000000000002"
#define NSUB 3000
#define NEV 5000

static char g_dir[] = "/tmp/sl_test_pjoin_XXXXXX";
static sl_keyring *g_keys;   /* old, cur (current) */
static sl_keyring *g_keys_old; /* old only: another current key */
static sl_schema *g_subs;    /* msisdn VARCHAR, score BIGINT, gender VARCHAR */
static sl_schema *g_ev;      /* ts TIMESTAMP, msisdn VARCHAR, cell BIGINT */
static sl_schema *g_pout;    /* ts, sub BIGINT, cell */
static sl_schema *g_jout;    /* ts, sub, cell, score BIGINT */
static char g_path[600];
static unsigned g_seed;

/* the model: subscriber ids and the last row's score (or NULL) */
static char g_id[NSUB][32];
static int64_t g_score[NSUB];
static bool g_null[NSUB];
static int g_last[NSUB];   /* index of the last row with the same id */
static int g_packable;     /* distinct table ids of 1..18 digits */

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int setup(void **state)
{
    (void)state;
    g_seed = tu_seed("test_pjoin");
    if (!mkdtemp(g_dir)) return -1;
    setenv("SL_TEST_PJOIN_KEYS", "old " KEY_OLD "\ncur " KEY_CUR "\n", 1);
    setenv("SL_TEST_PJOIN_OLD", "old " KEY_OLD "\n", 1);
    g_keys = sl_keyring_load("env:SL_TEST_PJOIN_KEYS", NULL, 0);
    g_keys_old = sl_keyring_load("env:SL_TEST_PJOIN_OLD", NULL, 0);
    if (!g_keys || !g_keys_old) return -1;
    g_subs = sl_schema_new();
    sl_schema_set_identifier(g_subs, sl_schema_add(g_subs, "msisdn", SL_STRING));
    sl_schema_add(g_subs, "score", SL_INT64);
    sl_schema_add(g_subs, "gender", SL_STRING);
    g_ev = sl_schema_new();
    sl_schema_add(g_ev, "ts", SL_TIMESTAMP);
    sl_schema_set_identifier(g_ev, sl_schema_add(g_ev, "msisdn", SL_STRING));
    sl_schema_add(g_ev, "cell", SL_INT64);
    g_pout = sl__pseudo_schema(g_ev, 1, "sub");
    g_jout = sl__schema_copy(g_pout);
    sl_schema_add(g_jout, "score", SL_INT64);

    uint64_t s = g_seed * 2654435761u + 3;
    snprintf(g_path, sizeof g_path, "%s/subs.csv", g_dir);
    FILE *f = fopen(g_path, "w");
    if (!f) return -1;
    fputs("msisdn,score,gender\n", f);
    for (int i = 0; i < NSUB; i++) {
        int kind = (int)(rnd(&s) % 20);
        if (i > 10 && kind == 0) /* a duplicate of an earlier id */
            memcpy(g_id[i], g_id[rnd(&s) % (uint64_t)i], sizeof g_id[i]);
        else if (kind == 1)
            snprintf(g_id[i], sizeof g_id[i], "imsi-%d", i);
        else if (kind == 2)
            snprintf(g_id[i], sizeof g_id[i], "4917%016d", i); /* 20 digits */
        else if (kind == 3)
            snprintf(g_id[i], sizeof g_id[i], "%0*d", 5 + (int)(rnd(&s) % 4), i);
        else
            snprintf(g_id[i], sizeof g_id[i], "49%010d", i * 7 + 1);
        g_null[i] = rnd(&s) % 9 == 0;
        g_score[i] = (int64_t)(rnd(&s) % 2000000) - 1000000;
        if (g_null[i]) fprintf(f, "%s,,F\n", g_id[i]);
        else fprintf(f, "%s,%lld,M\n", g_id[i], (long long)g_score[i]);
    }
    fclose(f);
    for (int i = 0; i < NSUB; i++) {
        g_last[i] = i;
        for (int j = i + 1; j < NSUB; j++)
            if (!strcmp(g_id[i], g_id[j])) g_last[i] = j;
    }
    for (int i = 0; i < NSUB; i++) {
        bool first = true;
        for (int j = 0; j < i && first; j++) first = strcmp(g_id[i], g_id[j]) != 0;
        g_packable += first && sl__pcache_pack(g_id[i], (uint32_t)strlen(g_id[i])) != 0;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sl_keyring_free(g_keys);
    sl_keyring_free(g_keys_old);
    sl_schema_free(g_subs);
    sl_schema_free(g_ev);
    sl_schema_free(g_pout);
    sl_schema_free(g_jout);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static bool have_file_source(void)
{
    const sl__source_vt *vt = sl__source_find("file");
    return vt && vt->configure;
}

static sl_table *load(const sl_keyring *k)
{
    char err[512] = "";
    sl_table *t = sl_table_load("file", g_subs, "msisdn",
                                (const char *[]){"path", g_path, NULL}, k, err,
                                sizeof err);
    if (!t) fail_msg("%s", err);
    return t;
}

/* ---- events and their expected join -------------------------------------- */
typedef struct {
    char id[NEV][32];
    bool null_id[NEV], canary[NEV];
} events;

static void make_events(events *e, uint64_t *s)
{
    for (int i = 0; i < NEV; i++) {
        int r = (int)(rnd(s) % 20);
        e->null_id[i] = r == 0;
        e->canary[i] = r == 1;
        if (r == 2)
            snprintf(e->id[i], sizeof e->id[i], "49%010llu",
                     (unsigned long long)(rnd(s) % 10000000000ULL) * 7 + 3);
        else if (r == 3)
            snprintf(e->id[i], sizeof e->id[i], "x%llu",
                     (unsigned long long)(rnd(s) % 1000));
        else
            snprintf(e->id[i], sizeof e->id[i], "%s", g_id[rnd(s) % NSUB]);
    }
}

static sl_batch *events_batch(const events *e, int from, int n)
{
    sl_batch *b = sl__batch_new(g_ev, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        int k = from + i;
        sl_batch_i64(b, 0)[i] = k;
        if (e->null_id[k]) sl_batch_valid(b, 1)[i] = 0;
        else sl_batch_set_str(b, 1, (size_t)i, e->id[k], strlen(e->id[k]));
        sl_batch_i64(b, 2)[i] = k % 7;
        if (e->canary[k]) sl_batch_kind(b)[i] = SL_KIND_CANARY;
    }
    sl_batch_set_len(b, (size_t)n);
    return b;
}

/* 1 and the score of the table's row for id (the last one), else 0. */
static int model(const char *id, int64_t *score)
{
    for (int i = NSUB - 1; i >= 0; i--) {
        if (strcmp(g_id[i], id)) continue;
        if (g_null[i]) return 0;
        *score = g_score[i];
        return 1;
    }
    return 0;
}

/* Every row of the joined batches equals the model; returns rows seen. */
static int check_rows(const events *e, sl_batch *const *got, int nb,
                      const sl_keyring *k)
{
    int rows = 0;
    for (int j = 0; j < nb; j++) {
        const sl_batch *b = got[j];
        assert_ptr_equal(sl_batch_schema(b), g_jout);
        for (uint32_t i = 0; i < sl_batch_len(b); i++, rows++) {
            int ev = (int)sl_batch_i64(b, 0)[i];
            assert_int_equal(sl_batch_kind(b)[i],
                             e->canary[ev] ? SL_KIND_CANARY : SL_KIND_DATA);
            if (e->null_id[ev]) {
                assert_int_equal(sl_batch_valid(b, 1)[i], 0);
                assert_int_equal(sl_batch_valid(b, 3)[i], 0);
                continue;
            }
            assert_int_equal(sl_batch_valid(b, 1)[i], 1);
            assert_int_equal(sl_batch_i64(b, 1)[i],
                             sl_keyring_pseudonym(k, e->id[ev], strlen(e->id[ev])));
            int64_t want = 0;
            int has = !e->canary[ev] && k == g_keys && model(e->id[ev], &want);
            assert_int_equal(sl_batch_valid(b, 3)[i], has);
            if (has) assert_int_equal(sl_batch_i64(b, 3)[i], want);
            assert_int_equal(sl_batch_i64(b, 2)[i], ev % 7);
        }
    }
    return rows;
}

/* ---- the two operators, driven directly ---------------------------------- */
typedef struct {
    sl__pseudo_conf pc;
    sl__lookup_conf lc;
    sl__opinfo pinfo, linfo;
    sl__ctx ctx;
    void *pst, *lst;
    tu_sink mid, out;
} chain;

static void chain_open(chain *c, const sl_keyring *k, sl_table *t, bool fused)
{
    memset(c, 0, sizeof *c);
    c->pc = (sl__pseudo_conf){.col = 1, .keys = k, .cache_bits = SL__PCACHE_BITS};
    if (fused) {
        c->pc.join_table = t;
        c->pc.join_tcol = 1;
        c->pc.join_out = g_jout;
    }
    c->lc = (sl__lookup_conf){.key_col = 1, .table = t, .ncols = 1,
                              .tcols = {1}, .fused = fused};
    c->pinfo = (sl__opinfo){.in = g_ev, .out = g_pout, .time_col = 0,
                            .batch_cap = 1024};
    c->linfo = (sl__opinfo){.in = g_pout, .out = g_jout, .time_col = 0,
                            .batch_cap = 1024};
    c->ctx = tu_ctx();
    char err[256] = "";
    assert_int_equal(sl__op_pseudonymise.open(&c->pst, &c->pc, &c->pinfo,
                                              &c->ctx, err, sizeof err), 0);
    assert_int_equal(sl__op_lookup.open(&c->lst, &c->lc, &c->linfo, &c->ctx,
                                        err, sizeof err), 0);
    tu_sink_init(&c->mid, 1024);
    tu_sink_init(&c->out, 1024);
}

/* Through both operators; returns whether the pseudonymise one joined. */
static bool chain_batch(chain *c, sl_batch *b)
{
    int before = c->mid.n;
    assert_int_equal(sl__op_pseudonymise.batch(c->pst, b, &c->mid.out), 0);
    assert_int_equal(c->mid.n, before + 1);
    sl_batch *m = c->mid.got[before];
    c->mid.got[before] = NULL;
    c->mid.n = before;
    bool joined = sl_batch_schema(m) == g_jout;
    if (!joined) assert_ptr_equal(sl_batch_schema(m), g_pout);
    assert_int_equal(sl__op_lookup.batch(c->lst, m, &c->out.out), 0);
    return joined;
}

static void chain_close(chain *c)
{
    sl__op_pseudonymise.close(c->pst);
    sl__op_lookup.close(c->lst);
    tu_sink_free(&c->mid);
    tu_sink_free(&c->out);
}

/* ---- tests --------------------------------------------------------------- */
static void test_memo_build(void **state)
{
    (void)state;
    if (!have_file_source()) skip();
    sl_table *t = load(g_keys);
    sl__pcache *cur = sl__keyring_pcache(g_keys, -1);
    sl__pcache *old = sl__keyring_pcache(g_keys, 0);
    assert_ptr_not_equal(cur, old);
    assert_null(sl__pjoin_index(t, 1, old)); /* another key: none, log kept */
    assert_null(sl__pjoin_index(t, 2, cur)); /* a VARCHAR column */
    assert_null(sl__pjoin_index(t, 0, cur)); /* the key */
    const sl__pjidx *x = sl__pjoin_index(t, 1, cur);
    assert_non_null(x);
    assert_ptr_equal(sl__pjoin_index(t, 1, cur), x); /* built once */
    assert_int_equal(sl__pjidx_entries(x), g_packable);
    size_t buckets = sl__pjidx_bytes(x) / 64; /* a power of 2, >= rows / 1.25 */
    assert_int_equal(buckets & (buckets - 1), 0);
    assert_true(buckets * 5 >= sl_table_rows(t) * 4);
    sl_table_free(t);
    /* a table loaded without a keyring, or on rotation, has no log */
    sl_table *r = load(NULL);
    assert_null(sl__table_ext(r));
    sl_table_free(r);
}

static void test_fused_exact(void **state)
{
    (void)state;
    if (!have_file_source()) skip();
    sl_table *t = load(g_keys);
    uint64_t s = g_seed * 40503u + 11;
    static events e;
    make_events(&e, &s);
    sl__pcache *cur = sl__keyring_pcache(g_keys, -1);
    chain f, u;
    chain_open(&f, g_keys, t, true);
    chain_open(&u, g_keys, t, false);
    uint64_t h0, m0, h1, m1;
    sl__pcache_stats(cur, &h0, &m0);
    for (int i = 0; i < NEV;) {
        int n = 1 + (int)(rnd(&s) % 700);
        if (i + n > NEV) n = NEV - i;
        assert_true(chain_batch(&f, events_batch(&e, i, n)));
        i += n;
    }
    sl__pcache_stats(cur, &h1, &m1);
    /* only ids the memo lacks reached the cache: packable ids not in it */
    uint64_t want = 0;
    for (int i = 0; i < NEV; i++) {
        if (e.null_id[i]) continue;
        bool in = false;
        for (int j = 0; j < NSUB && !in; j++) in = !strcmp(g_id[j], e.id[i]);
        want += !in && sl__pcache_pack(e.id[i], (uint32_t)strlen(e.id[i])) != 0;
    }
    assert_true(want > 0);
    assert_int_equal((h1 - h0) + (m1 - m0), want);
    assert_int_equal(check_rows(&e, f.out.got, f.out.n, g_keys), NEV);
    for (int i = 0; i < NEV; i += 1000)
        assert_false(chain_batch(&u, events_batch(&e, i, 1000)));
    assert_int_equal(check_rows(&e, u.out.got, u.out.n, g_keys), NEV);
    chain_close(&f);
    chain_close(&u);
    sl_table_free(t);
}

/* A table loaded under another current key: no memo for this key, so the
 * operators join unfused (and find nothing: other pseudonyms). */
static void test_other_key(void **state)
{
    (void)state;
    if (!have_file_source()) skip();
    sl_table *t = load(g_keys_old);
    uint64_t s = g_seed * 7u + 5;
    static events e;
    make_events(&e, &s);
    chain c;
    chain_open(&c, g_keys, t, true);
    for (int i = 0; i < NEV; i += 1000)
        assert_false(chain_batch(&c, events_batch(&e, i, 1000)));
    for (int j = 0; j < c.out.n; j++)
        for (uint32_t i = 0; i < sl_batch_len(c.out.got[j]); i++)
            assert_int_equal(sl_batch_valid(c.out.got[j], 3)[i], 0);
    chain_close(&c);
    /* the same table joined under its own key: fused and exact */
    chain_open(&c, g_keys_old, t, true);
    for (int i = 0; i < NEV; i += 1000)
        assert_true(chain_batch(&c, events_batch(&e, i, 1000)));
    int rows = 0;
    for (int j = 0; j < c.out.n; j++) {
        const sl_batch *b = c.out.got[j];
        for (uint32_t i = 0; i < sl_batch_len(b); i++, rows++) {
            int ev = (int)sl_batch_i64(b, 0)[i];
            int64_t want = 0;
            int has = !e.null_id[ev] && !e.canary[ev] && model(e.id[ev], &want);
            assert_int_equal(sl_batch_valid(b, 3)[i], has);
            if (has) assert_int_equal(sl_batch_i64(b, 3)[i], want);
            if (!e.null_id[ev])
                assert_int_equal(sl_batch_i64(b, 1)[i],
                                 sl_keyring_pseudonym(g_keys_old, e.id[ev],
                                                      strlen(e.id[ev])));
        }
    }
    assert_int_equal(rows, NEV);
    chain_close(&c);
    sl_table_free(t);
}

/* Changed rows (a refreshed table's overlay) after the memo was built:
 * the fused join sees the change (the overlay wins, as in lookup.c), and
 * so does the unfused one. */
static void test_overlay(void **state)
{
    (void)state;
    if (!have_file_source()) skip();
    sl_table *t = load(g_keys);
    int k = 0, k2;
    while (g_null[g_last[k]] || sl__pcache_pack(g_id[k], (uint32_t)strlen(g_id[k])) == 0)
        k++;
    for (k2 = k + 1; g_null[g_last[k2]] || !strcmp(g_id[k2], g_id[k]); k2++) {}
    chain f, u;
    chain_open(&f, g_keys, t, true);
    chain_open(&u, g_keys, t, false);
    static events e;
    memset(&e, 0, sizeof e);
    snprintf(e.id[0], sizeof e.id[0], "%s", g_id[k]);
    snprintf(e.id[1], sizeof e.id[1], "%s", g_id[k]);
    snprintf(e.id[2], sizeof e.id[2], "%s", g_id[k2]);
    snprintf(e.id[3], sizeof e.id[3], "777000111"); /* only in the overlay */
    assert_true(chain_batch(&f, events_batch(&e, 0, 1)));
    /* the overlay: id k with score 42, a new id with 7 */
    sl_schema *ts = sl__pseudo_schema(g_subs, 0, "msisdn");
    sl_batch *raw = sl__batch_new(g_subs, 2);
    sl_batch_set_str(raw, 0, 0, g_id[k], strlen(g_id[k]));
    sl_batch_i64(raw, 1)[0] = 42;
    sl_batch_set_str(raw, 0, 1, "777000111", 9);
    sl_batch_i64(raw, 1)[1] = 7;
    for (int i = 0; i < 2; i++) sl_batch_set_str(raw, 2, (size_t)i, "F", 1);
    sl_batch_set_len(raw, 2);
    sl__hmac *h = sl__hmac_new(g_keys, NULL, 0);
    sl_batch *p = sl__pseudo_batch(h, NULL, raw, 0, ts);
    sl_table *ov = sl__table_new(ts, 0);
    assert_int_equal(sl__table_append(ov, p, NULL, 0), 0);
    sl__table_set_overlay(t, ov);
    assert_true(chain_batch(&f, events_batch(&e, 1, 3))); /* still fused */
    assert_false(chain_batch(&u, events_batch(&e, 1, 3)));
    const int64_t want[3] = {42, g_score[g_last[k2]], 7};
    for (int v = 0; v < 2; v++) {
        const sl_batch *o = v ? u.out.got[0] : f.out.got[1];
        assert_int_equal(sl_batch_len(o), 3);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(sl_batch_valid(o, 3)[i], 1);
            assert_int_equal(sl_batch_i64(o, 3)[i], want[i]);
            assert_int_equal(sl_batch_i64(o, 1)[i],
                             sl_keyring_pseudonym(g_keys, e.id[1 + i], strlen(e.id[1 + i])));
        }
    }
    assert_int_equal(sl_batch_i64(f.out.got[0], 3)[0], g_score[g_last[k]]);
    chain_close(&f);
    chain_close(&u);
    sl__hmac_free(h);
    sl__batch_free(raw);
    sl__batch_free(p);
    sl_schema_free(ts);
    sl_table_free(t);
}

/* Two ids under one pseudonym (a 64-bit collision, forged here: the keys
 * are not MACs): the table keeps one row for both, so the memo, which
 * would keep both, is not built; the same rows without the collision get
 * one, and an unpackable id repeated under its one pseudonym does not
 * count as a collision. */
static void collision_case(const int64_t *key, const char *const *id, int n,
                           bool want_memo)
{
    sl_schema *ts = sl__pseudo_schema(g_subs, 0, "msisdn");
    sl_table *t = sl__table_new(ts, 0);
    sl__pcache *c = sl__keyring_pcache(g_keys, -1);
    sl__pjoin *pj = sl__pjoin_new(c);
    sl__table_set_ext(t, pj, sl__pjoin_free);
    sl_batch *b = sl__batch_new(ts, (uint32_t)n);
    sl_str ids[8];
    uint8_t valid[8];
    for (int i = 0; i < n; i++) {
        sl_batch_i64(b, 0)[i] = key[i];
        sl_batch_i64(b, 1)[i] = i;
        sl_batch_set_str(b, 2, (size_t)i, "F", 1);
        ids[i] = (sl_str){id[i], (uint32_t)strlen(id[i])};
        valid[i] = 1;
    }
    sl_batch_set_len(b, (size_t)n);
    sl__pjoin_log(pj, ids, valid, (uint32_t)n);
    assert_int_equal(sl__table_append(t, b, NULL, 0), 0);
    const sl__pjidx *x = sl__pjoin_index(t, 1, c);
    assert_int_equal(x != NULL, want_memo);
    sl__batch_free(b);
    sl_table_free(t);
    sl_schema_free(ts);
}

static void test_collision(void **state)
{
    (void)state;
    const char *ids[] = {"4917001", "4917002", "4917003", "imsi-a", "imsi-a"};
    collision_case((const int64_t[]){111, 111, 222}, ids, 3, false);
    collision_case((const int64_t[]){111, 112, 222}, ids, 3, true);
    collision_case((const int64_t[]){111, 112, 222, 333, 333}, ids, 5, true);
    collision_case((const int64_t[]){111, 112, 222, 333, 112}, ids, 5, false);
}

/* ---- the planner rule, and a whole job ----------------------------------- */
typedef struct {
    const events *e;
    int rows;
} job_out;

static int collect(const sl_batch *b, void *ud)
{
    job_out *o = ud;
    const sl_schema *s = sl_batch_schema(b);
    assert_int_equal(sl_schema_find(s, "msisdn"), -1);
    int sub = sl_schema_find(s, "sub"), sc = sl_schema_find(s, "score");
    for (uint32_t i = 0; i < sl_batch_len(b); i++) {
        if (sl_batch_kind(b)[i] != SL_KIND_DATA) continue;
        int ev = (int)sl_batch_i64(b, 0)[i];
        const events *e = o->e;
        o->rows++;
        assert_int_equal(sl_batch_valid(b, sub)[i], !e->null_id[ev]);
        if (!e->null_id[ev])
            assert_int_equal(sl_batch_i64(b, sub)[i],
                             sl_keyring_pseudonym(g_keys, e->id[ev], strlen(e->id[ev])));
        int64_t want = 0;
        int has = !e->null_id[ev] && model(e->id[ev], &want);
        assert_int_equal(sl_batch_valid(b, sc)[i], has);
        if (has) assert_int_equal(sl_batch_i64(b, sc)[i], want);
    }
    return 0;
}

static void keep_all(const sl_batch *in, uint8_t *keep, void *ud)
{
    (void)ud;
    memset(keep, 1, sl_batch_len(in));
}

static void test_planner_and_job(void **state)
{
    (void)state;
    if (!have_file_source()) skip();
    sl_table *t = load(g_keys);
    uint64_t s = g_seed * 131u + 17;
    static events e;
    make_events(&e, &s);
    char ep[600];
    snprintf(ep, sizeof ep, "%s/events.csv", g_dir);
    FILE *f = fopen(ep, "w");
    assert_non_null(f);
    fputs("ts,msisdn,cell\n", f);
    for (int i = 0; i < NEV; i++) {
        e.canary[i] = false;
        if (e.null_id[i]) fprintf(f, "%d,,%d\n", i, i % 7);
        else fprintf(f, "%d,%s,%d\n", i, e.id[i], i % 7);
    }
    fclose(f);
    char err[512] = "";
    for (int variant = 0; variant < 4; variant++) {
        sl_job *job = sl_job_new(err, sizeof err);
        sl_stream *src = sl_job_source(job, "file", g_ev,
                                       (const char *[]){"path", ep, NULL});
        sl_stream *p = sl_stream_pseudonymise(src, "msisdn", "sub", g_keys);
        sl__pseudo_conf *pc = sl__stream_op_conf(p, &sl__op_pseudonymise);
        assert_non_null(pc);
        sl_stream *q = variant == 1 ? sl_stream_filter(p, "all", keep_all, NULL) : p;
        const char *two[] = {"score", "gender", NULL}, *one[] = {"score", NULL};
        sl_stream *j = variant == 3 ? sl_stream_lookup(q, "cell", NULL, one)
                                    : sl_stream_lookup(q, "sub", t,
                                                       variant == 2 ? two : one);
        if (variant == 3) { /* a failed lookup fuses nothing */
            assert_null(j);
            assert_null(pc->join_table);
            sl_job_free(job);
            continue;
        }
        /* fused only right after the pseudonymise, one 8-byte column */
        assert_ptr_equal(pc->join_table, variant == 0 ? t : NULL);
        if (variant == 0) assert_ptr_equal(pc->join_out, sl_stream_schema(j));
        job_out o = {.e = &e};
        assert_int_equal(sl_stream_sink_fn(j, collect, &o), 0);
        if (sl_job_run(job)) fail_msg("job: %s", sl_job_error(job));
        assert_int_equal(o.rows, NEV);
        sl_job_free(job);
    }
    sl_table_free(t);
}

/* ---- four threads open and join at once ---------------------------------- */
typedef struct {
    sl_table *t;
    const events *e;
    int fails;
    pthread_t th;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    chain c;
    chain_open(&c, g_keys, w->t, true);
    for (int i = 0; i < NEV; i += 500)
        w->fails += !chain_batch(&c, events_batch(w->e, i, 500));
    w->fails += check_rows(w->e, c.out.got, c.out.n, g_keys) != NEV;
    chain_close(&c);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    if (!have_file_source()) skip();
    sl_table *t = load(g_keys);
    uint64_t s = g_seed * 977u + 23;
    static events e;
    make_events(&e, &s);
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){.t = t, .e = &e};
        assert_int_equal(pthread_create(&w[i].th, NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(w[i].th, NULL);
        assert_int_equal(w[i].fails, 0);
    }
    sl_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memo_build),
        cmocka_unit_test(test_fused_exact),
        cmocka_unit_test(test_other_key),
        cmocka_unit_test(test_overlay),
        cmocka_unit_test(test_collision),
        cmocka_unit_test(test_planner_and_job),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
