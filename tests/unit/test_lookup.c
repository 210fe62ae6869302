/* test_lookup.c — lookup tables (state/table.c) built directly and through
 * the file source, with INT64, STRING and pseudonymised keys, and the left
 * lookup join operator: matches, missing keys, NULL keys, canaries,
 * duplicates (last row wins); and the builder's validation. The join tests
 * run once per state backend: memory, and RocksDB (state.backend = rocksdb,
 * tables in the process's RocksDB instance, tabledisk.c). */
#include "testutil.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ops/privacy.h"
#include "state/state.h"

#define SECRET "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"

static char g_dir[] = "/tmp/sl_test_lookup_XXXXXX";
static sl_keyring *g_keys;
static sl_schema *g_cells;  /* cell_id BIGINT, area VARCHAR, pop BIGINT */
static sl_schema *g_subs;   /* msisdn VARCHAR, birth_date TIMESTAMP, gender */
static sl_schema *g_events; /* ts, cell_id, msisdn, sub BIGINT */
static const sl__state_conf *g_sc; /* the backend of the tables; NULL memory */
static sl__state_conf g_rocks;

static int use_rocksdb(void **state)
{
    (void)state;
    g_rocks = (sl__state_conf){.backend = SL__STATE_ROCKSDB,
                               .memory_bound = 32 << 20};
    snprintf(g_rocks.dir, sizeof g_rocks.dir, "%s/rocksdb", g_dir);
    g_sc = &g_rocks;
    return 0;
}

static int use_memory(void **state)
{
    (void)state;
    g_sc = NULL;
    return 0;
}

/* A new table on the backend under test. */
static sl_table *new_table(const sl_schema *s, int key_col)
{
    char err[512] = "";
    sl_table *t = sl__table_new_on(s, key_col, g_sc, err, sizeof err);
    if (!t) fail_msg("%s", err);
    assert_int_equal(sl__table_on_disk(t), g_sc != NULL);
    return t;
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(g_dir)) return -1;
    setenv("SL_TEST_LOOKUP_KEYS", "t1 " SECRET, 1);
    g_keys = sl_keyring_load("env:SL_TEST_LOOKUP_KEYS", NULL, 0);
    g_cells = sl_schema_new();
    sl_schema_add(g_cells, "cell_id", SL_INT64);
    sl_schema_add(g_cells, "area", SL_STRING);
    sl_schema_add(g_cells, "pop", SL_INT64);
    g_subs = sl_schema_new();
    sl_schema_set_identifier(g_subs, sl_schema_add(g_subs, "msisdn", SL_STRING));
    sl_schema_add(g_subs, "birth_date", SL_TIMESTAMP);
    sl_schema_add(g_subs, "gender", SL_STRING);
    g_events = sl_schema_new();
    sl_schema_add(g_events, "ts", SL_TIMESTAMP);
    sl_schema_add(g_events, "cell_id", SL_INT64);
    sl_schema_add(g_events, "msisdn", SL_STRING);
    sl_schema_add(g_events, "sub", SL_INT64);
    return g_keys ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sl_keyring_free(g_keys);
    sl_schema_free(g_cells);
    sl_schema_free(g_subs);
    sl_schema_free(g_events);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* area NULL = NULL area; key < 0 = NULL key */
typedef struct { int64_t key; const char *area; int64_t pop; } cell;

static sl_batch *cells_batch(const cell *c, uint32_t n)
{
    sl_batch *b = sl__batch_new(g_cells, n ? n : 1);
    for (uint32_t i = 0; i < n; i++) {
        if (c[i].key >= 0) sl_batch_i64(b, 0)[i] = c[i].key;
        else sl_batch_valid(b, 0)[i] = 0;
        if (c[i].area) sl_batch_set_str(b, 1, i, c[i].area, strlen(c[i].area));
        else sl_batch_valid(b, 1)[i] = 0;
        sl_batch_i64(b, 2)[i] = c[i].pop;
    }
    sl_batch_set_len(b, n);
    return b;
}

static sl_table *cells_table(void)
{
    const cell c[] = {{1, "north", 10}, {2, "south", 20}, {3, NULL, 30},
                      {-1, "nowhere", 99}, {2, "south-2", 25}};
    sl_table *t = new_table(g_cells, 0);
    assert_non_null(t);
    sl_batch *b = cells_batch(c, 5);
    char err[256] = "";
    assert_int_equal(sl__table_append(t, b, err, sizeof err), 0);
    assert_int_equal(sl__table_seal(t, err, sizeof err), 0);
    sl__batch_free(b);
    return t;
}

static void expect_area(const sl_table *t, int64_t key, const char *area)
{
    const sl_batch *ch = NULL;
    uint32_t row = 0;
    if (!area) {
        assert_int_equal(sl__table_find_i64(t, key, &ch, &row), 0);
        return;
    }
    assert_int_equal(sl__table_find_i64(t, key, &ch, &row), 1);
    sl_str s = sl_batch_str(ch, 1)[row];
    assert_int_equal(s.len, strlen(area));
    assert_memory_equal(s.ptr, area, s.len);
}

static void test_table_int(void **state)
{
    (void)state;
    sl_table *t = cells_table();
    assert_int_equal(sl_table_rows(t), 3); /* 1, 2, 3: NULL key dropped */
    assert_int_equal(sl__table_stored(t), 4);
    expect_area(t, 1, "north");
    expect_area(t, 2, "south-2"); /* duplicate: the last row wins */
    expect_area(t, 4, NULL);
    const sl_batch *ch;
    uint32_t row;
    assert_int_equal(sl__table_find_i64(t, 3, &ch, &row), 1);
    assert_int_equal(sl_batch_valid(ch, 1)[row], 0);
    assert_int_equal(sl__table_find_str(t, "1", 1, &ch, &row), 0); /* wrong type */

    /* grows past several chunks and index resizes */
    enum { N = 3 * SL__TABLE_CHUNK + 100 };
    sl_batch *b = sl__batch_new(g_cells, N);
    for (int i = 0; i < N; i++) {
        sl_batch_i64(b, 0)[i] = 1000 + (int64_t)i * 7919;
        char a[32];
        snprintf(a, sizeof a, "a%d", i);
        sl_batch_set_str(b, 1, i, a, strlen(a));
        sl_batch_i64(b, 2)[i] = i;
    }
    sl_batch_set_len(b, N);
    assert_int_equal(sl__table_append(t, b, NULL, 0), 0);
    sl__batch_free(b);
    assert_int_equal(sl_table_rows(t), 3 + N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(sl__table_find_i64(t, 1000 + (int64_t)i * 7919, &ch, &row), 1);
        assert_int_equal(sl_batch_i64(ch, 2)[row], i);
    }
    expect_area(t, 1, "north");

    /* a batch of another schema is refused */
    sl_batch *bad = sl__batch_new(g_subs, 1);
    char err[256] = "";
    assert_int_equal(sl__table_append(t, bad, err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "differs"));
    sl__batch_free(bad);
    sl_table_free(t);
    sl_table_free(NULL);

    assert_null(sl__table_new(g_subs, 1));  /* TIMESTAMP key */
    assert_null(sl__table_new(g_cells, 7)); /* out of range */
}

static sl_batch *subs_batch(const char *const *ids, uint32_t n)
{
    sl_batch *b = sl__batch_new(g_subs, n);
    for (uint32_t i = 0; i < n; i++) {
        sl_batch_set_str(b, 0, i, ids[i], strlen(ids[i]));
        sl_batch_i64(b, 1)[i] = (int64_t)i * 86400000;
        sl_batch_set_str(b, 2, i, i % 2 ? "F" : "M", 1);
    }
    sl_batch_set_len(b, n);
    return b;
}

static void test_table_str(void **state)
{
    (void)state;
    const char *ids[] = {"491700000001", "491700000002", "", "491700000001"};
    sl_table *t = sl__table_new(g_subs, 0);
    sl_batch *b = subs_batch(ids, 4);
    assert_int_equal(sl__table_append(t, b, NULL, 0), 0);
    sl__batch_free(b);
    assert_int_equal(sl_table_rows(t), 3);
    const sl_batch *ch;
    uint32_t row;
    assert_int_equal(sl__table_find_str(t, "491700000001", 12, &ch, &row), 1);
    assert_int_equal(sl_batch_i64(ch, 1)[row], 3 * 86400000LL); /* last wins */
    assert_int_equal(sl__table_find_str(t, "491700000002", 12, &ch, &row), 1);
    assert_int_equal(sl_batch_i64(ch, 1)[row], 86400000LL);
    assert_int_equal(sl__table_find_str(t, "", 0, &ch, &row), 1);
    assert_int_equal(sl__table_find_str(t, "49170000000", 11, &ch, &row), 0);
    assert_int_equal(sl__table_find_i64(t, 1, &ch, &row), 0);
    sl_table_free(t);
}

/* The table the loader builds with a keyring, built by hand the same way. */
static sl_table *pseudo_table(const char *const *ids, uint32_t n)
{
    sl_schema *ts = sl__pseudo_schema(g_subs, 0, "msisdn");
    sl__hmac *h = sl__hmac_new(g_keys, NULL, 0);
    sl_batch *raw = subs_batch(ids, n);
    sl_batch *p = sl__pseudo_batch(h, NULL, raw, 0, ts);
    sl_table *t = new_table(ts, 0);
    assert_int_equal(sl__table_append(t, p, NULL, 0), 0);
    assert_int_equal(sl__table_seal(t, NULL, 0), 0);
    sl__batch_free(raw);
    sl__batch_free(p);
    sl__hmac_free(h);
    sl_schema_free(ts);
    return t;
}

static int64_t pseudo_of(const char *id)
{
    return sl_keyring_pseudonym(g_keys, id, strlen(id));
}

/* ---- the join operator --------------------------------------------------- */
typedef struct {
    sl__opinfo info;
    sl__ctx ctx;
    void *st;
    tu_sink sink;
    sl_schema *out;
} harness;

static void harness_open(harness *hs, const sl__lookup_conf *conf)
{
    memset(hs, 0, sizeof *hs);
    const sl_schema *ts = sl__table_schema(conf->table);
    hs->out = sl__schema_copy(g_events);
    for (int j = 0; j < conf->ncols; j++)
        sl_schema_add(hs->out, ts->cols[conf->tcols[j]].name,
                      ts->cols[conf->tcols[j]].type);
    hs->info = (sl__opinfo){.in = g_events, .out = hs->out, .time_col = 0,
                            .batch_cap = 8};
    hs->ctx = tu_ctx();
    char err[256] = "";
    assert_int_equal(sl__op_lookup.open(&hs->st, conf, &hs->info, &hs->ctx, err,
                                        sizeof err), 0);
    tu_sink_init(&hs->sink, 8);
}

static void harness_close(harness *hs)
{
    tu_sink_free(&hs->sink);
    sl__op_lookup.close(hs->st);
    sl_schema_free(hs->out);
}

/* cell < 0 = NULL cell; ids[i] NULL = NULL msisdn and sub */
static sl_batch *events_batch(const int64_t *cells, const char *const *ids,
                              uint32_t n)
{
    sl_batch *b = sl__batch_new(g_events, n);
    for (uint32_t i = 0; i < n; i++) {
        sl_batch_i64(b, 0)[i] = 1000 + i;
        if (cells[i] >= 0) sl_batch_i64(b, 1)[i] = cells[i];
        else sl_batch_valid(b, 1)[i] = 0;
        if (ids[i]) {
            sl_batch_set_str(b, 2, i, ids[i], strlen(ids[i]));
            sl_batch_i64(b, 3)[i] = pseudo_of(ids[i]);
        } else {
            sl_batch_valid(b, 2)[i] = 0;
            sl_batch_valid(b, 3)[i] = 0;
        }
    }
    sl_batch_set_len(b, n);
    return b;
}

static void expect_str(const sl_batch *b, int col, uint32_t row, const char *v)
{
    if (!v) {
        assert_int_equal(sl_batch_valid(b, col)[row], 0);
        return;
    }
    assert_int_equal(sl_batch_valid(b, col)[row], 1);
    sl_str s = sl_batch_str(b, col)[row];
    assert_int_equal(s.len, strlen(v));
    assert_memory_equal(s.ptr, v, s.len);
}

static void test_join_int(void **state)
{
    (void)state;
    sl_table *t = cells_table();
    assert_int_equal(sl_table_rows(t), 3); /* 1, 2, 3: NULL key dropped */
    assert_int_equal(sl__table_stored(t), 4);
    sl__lookup_conf conf = {.key_col = 1, .table = t, .ncols = 2,
                            .tcols = {1, 2}};
    harness hs;
    harness_open(&hs, &conf);
    const int64_t cells[] = {1, 2, 99, -1, 3, 1, 2};
    const char *ids[] = {"4917a", "4917b", "4917c", "4917d", NULL, "4917f", "x"};
    sl_batch *b = events_batch(cells, ids, 7);
    sl_batch_kind(b)[5] = SL_KIND_CANARY;
    assert_int_equal(sl__op_lookup.batch(hs.st, b, &hs.sink.out), 0);
    assert_int_equal(hs.sink.n, 1);
    sl_batch *o = hs.sink.got[0];
    assert_int_equal(sl_batch_len(o), 7);
    assert_int_equal(sl_schema_ncols(sl_batch_schema(o)), 6);
    /* input columns pass unchanged */
    for (uint32_t i = 0; i < 7; i++) {
        assert_int_equal(sl_batch_i64(o, 0)[i], 1000 + i);
        assert_int_equal(sl_batch_valid(o, 1)[i], cells[i] >= 0);
        expect_str(o, 2, i, ids[i]);
    }
    expect_str(o, 4, 0, "north");
    assert_int_equal(sl_batch_i64(o, 5)[0], 10);
    expect_str(o, 4, 1, "south-2");
    assert_int_equal(sl_batch_i64(o, 5)[1], 25);
    expect_str(o, 4, 2, NULL); /* no such cell */
    assert_int_equal(sl_batch_valid(o, 5)[2], 0);
    expect_str(o, 4, 3, NULL); /* NULL key */
    assert_int_equal(sl_batch_valid(o, 5)[3], 0);
    expect_str(o, 4, 4, NULL); /* matched, NULL area in the table */
    assert_int_equal(sl_batch_i64(o, 5)[4], 30);
    expect_str(o, 4, 5, NULL); /* canary: NULL payload */
    assert_int_equal(sl_batch_valid(o, 5)[5], 0);
    assert_int_equal(sl_batch_kind(o)[5], SL_KIND_CANARY);
    expect_str(o, 4, 6, "south-2");
    /* the output's strings are its own: the table can go */
    harness_close(&hs);
    sl_table_free(t);
}

static void test_join_str_and_pseudo(void **state)
{
    (void)state;
    const char *subs[] = {"491700000001", "491700000002", "491700000003"};
    /* STRING keys: join on the raw column */
    sl_table *ts = new_table(g_subs, 0);
    sl_batch *sb = subs_batch(subs, 3);
    assert_int_equal(sl__table_append(ts, sb, NULL, 0), 0);
    sl__batch_free(sb);
    sl__lookup_conf conf = {.key_col = 2, .table = ts, .ncols = 2,
                            .tcols = {2, 1}};
    harness hs;
    harness_open(&hs, &conf);
    const int64_t cells[] = {1, 1, 1, 1};
    const char *ids[] = {"491700000002", "491700000009", NULL, "491700000001"};
    assert_int_equal(sl__op_lookup.batch(hs.st, events_batch(cells, ids, 4),
                                         &hs.sink.out), 0);
    sl_batch *o = hs.sink.got[0];
    expect_str(o, 4, 0, "F");
    assert_int_equal(sl_batch_i64(o, 5)[0], 86400000LL);
    expect_str(o, 4, 1, NULL);
    assert_int_equal(sl_batch_valid(o, 5)[1], 0);
    expect_str(o, 4, 2, NULL);
    expect_str(o, 4, 3, "M");
    assert_int_equal(sl_batch_i64(o, 5)[3], 0);
    harness_close(&hs);
    sl_table_free(ts);

    /* pseudonymised table: INT64 key, joined on the stream's pseudonym */
    sl_table *tp = pseudo_table(subs, 3);
    const sl_schema *sch = sl__table_schema(tp);
    assert_int_equal(sl_schema_col_type(sch, 0), SL_INT64);
    assert_string_equal(sl_schema_col_name(sch, 0), "msisdn");
    const sl_batch *ch;
    uint32_t row;
    assert_int_equal(sl_table_rows(tp), 3);
    if (!sl__table_on_disk(tp)) {
        assert_int_equal(sl__table_find_i64(tp, pseudo_of(subs[1]), &ch, &row), 1);
        assert_int_equal(sl_batch_i64(ch, 0)[row], pseudo_of(subs[1]));
    }
    conf = (sl__lookup_conf){.key_col = 3, .table = tp, .ncols = 1,
                             .tcols = {1}};
    harness_open(&hs, &conf);
    assert_int_equal(sl__op_lookup.batch(hs.st, events_batch(cells, ids, 4),
                                         &hs.sink.out), 0);
    o = hs.sink.got[0];
    assert_int_equal(sl_batch_i64(o, 4)[0], 86400000LL);
    assert_int_equal(sl_batch_valid(o, 4)[1], 0);
    assert_int_equal(sl_batch_valid(o, 4)[2], 0);
    assert_int_equal(sl_batch_i64(o, 4)[3], 0);
    assert_int_equal(sl_batch_valid(o, 4)[3], 1);
    harness_close(&hs);
    sl_table_free(tp);
}

/* ---- loading through the file source ------------------------------------- */
static bool have_file_source(void)
{
    const sl__source_vt *vt = sl__source_find("file");
    return vt && vt->configure;
}

static void test_load_file(void **state)
{
    (void)state;
    char err[512] = "";
    /* a missing file is an error naming it, file source or not */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nope.csv", g_dir);
    assert_null(sl_table_load("file", g_cells, "cell_id",
                              (const char *[]){"path", missing, NULL}, NULL, err,
                              sizeof err));
    assert_non_null(strstr(err, missing));
    assert_null(sl_table_load("kafka", g_cells, "cell_id", NULL, NULL, err,
                              sizeof err));
    assert_non_null(strstr(err, "unknown connector 'kafka'"));
    assert_null(sl_table_load("file", g_cells, "area_id", NULL, NULL, err,
                              sizeof err));
    assert_non_null(strstr(err, "no key column 'area_id'"));
    assert_null(sl_table_load("file", g_cells, "cell_id", NULL, g_keys, err,
                              sizeof err));
    assert_non_null(strstr(err, "must be a VARCHAR"));
    assert_null(sl_table_load("file", g_subs, "birth_date", NULL, NULL, err,
                              sizeof err));
    assert_non_null(strstr(err, "BIGINT or VARCHAR"));
    assert_null(sl_table_load("file", g_cells, "cell_id",
                              (const char *[]){"path", missing, "follow", "true",
                                               NULL}, NULL, err, sizeof err));
    assert_non_null(strstr(err, "'follow'"));
    if (!have_file_source()) skip();

    const char *cp = write_file("cells.csv", "cell_id,area,pop\n"
                                             "1,north,10\n"
                                             "2,south,20\n"
                                             "3,,30\n"
                                             "2,south-2,25\n"
                                             "x,bad,1\n");
    uint64_t dl = sl__test_counter(SL__CTR_DEAD_LETTERS);
    sl_table *t = sl_table_load("file", g_cells, "cell_id",
                                (const char *[]){"path", cp, "format", "csv", NULL},
                                NULL, err, sizeof err);
    if (!t) fail_msg("%s", err);
    assert_int_equal(sl__test_counter(SL__CTR_DEAD_LETTERS) - dl, 1);
    assert_int_equal(sl_table_rows(t), 3);
    expect_area(t, 1, "north");
    expect_area(t, 2, "south-2");
    const sl_batch *ch;
    uint32_t row;
    assert_int_equal(sl__table_find_i64(t, 3, &ch, &row), 1);
    assert_int_equal(sl_batch_valid(ch, 1)[row], 0);
    sl_table_free(t);

    /* pseudonymised while loading: the raw id is not in the table */
    const char *sp = write_file("subs.csv", "msisdn;birth_date;gender\n"
                                            "491700000001;1980-01-02;F\n"
                                            "491700000002;1999-12-31;M\n");
    t = sl_table_load("file", g_subs, "msisdn",
                      (const char *[]){"path", sp, "delimiter", ";", NULL},
                      g_keys, err, sizeof err);
    if (!t) fail_msg("%s", err);
    assert_int_equal(sl_table_rows(t), 2);
    const sl_schema *s = sl__table_schema(t);
    assert_int_equal(sl_schema_col_type(s, 0), SL_INT64);
    for (int c = 0; c < s->n; c++) assert_true(sl_schema_col_type(s, c) != SL_STRING ||
                                               c == 2);
    assert_int_equal(sl__table_find_i64(t, pseudo_of("491700000002"), &ch, &row), 1);
    assert_int_equal(sl_batch_i64(ch, 1)[row], 946598400000LL);
    expect_str(ch, 2, row, "M");
    assert_int_equal(sl__table_find_i64(t, pseudo_of("491700000003"), &ch, &row), 0);
    sl_table_free(t);

    /* a header and no rows: an empty table is refused */
    const char *hp = write_file("header.csv", "cell_id,area,pop\n");
    assert_null(sl_table_load("file", g_cells, "cell_id",
                              (const char *[]){"path", hp, NULL}, NULL, err,
                              sizeof err));
    assert_non_null(strstr(err, hp));
    assert_non_null(strstr(err, "no rows"));

    /* an empty directory has nothing to load */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/empty", g_dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_null(sl_table_load("file", g_cells, "cell_id",
                              (const char *[]){"path", dir, NULL}, NULL, err,
                              sizeof err));
    assert_non_null(strstr(err, dir));
}

/* ---- a whole job: file -> pseudonymise -> lookup x2 -> user sink -------- */
typedef struct {
    int rows, matched_birth, matched_area, canaries;
    int64_t sub_of_first; /* pseudonym in the row with ts 1 */
    int64_t birth_of_first;
    char area_of_first[16];
    bool raw_seen;
} job_result;

static int collect(const sl_batch *b, void *ud)
{
    job_result *r = ud;
    const sl_schema *s = sl_batch_schema(b);
    int ts = sl_schema_find(s, "ts"), sub = sl_schema_find(s, "sub");
    int birth = sl_schema_find(s, "birth_date"), area = sl_schema_find(s, "area");
    r->raw_seen |= sl_schema_find(s, "msisdn") >= 0;
    for (uint32_t i = 0; i < sl_batch_len(b); i++) {
        if (sl_batch_kind(b)[i] != SL_KIND_DATA) {
            r->canaries++;
            continue;
        }
        r->rows++;
        r->matched_birth += sl_batch_valid(b, birth)[i];
        r->matched_area += sl_batch_valid(b, area)[i];
        if (sl_batch_i64(b, ts)[i] == 1) {
            r->sub_of_first = sl_batch_i64(b, sub)[i];
            r->birth_of_first = sl_batch_i64(b, birth)[i];
            sl_str a = sl_batch_str(b, area)[i];
            snprintf(r->area_of_first, sizeof r->area_of_first, "%.*s",
                     (int)a.len, a.ptr);
        }
    }
    return 0;
}

static void test_job(void **state)
{
    (void)state;
    if (!have_file_source()) skip();
    char err[512] = "";
    const char *sp = write_file("job_subs.csv", "msisdn,birth_date,gender\n"
                                                "491700000001,1980-01-02,F\n"
                                                "491700000002,1999-12-31,M\n");
    sl_table *subs = sl_table_load("file", g_subs, "msisdn",
                                   (const char *[]){"path", sp, NULL}, g_keys,
                                   err, sizeof err);
    if (!subs) fail_msg("%s", err);
    const char *cp = write_file("job_cells.csv", "cell_id,area,pop\n1,north,1\n"
                                                 "2,south,2\n");
    sl_table *cells = sl_table_load("file", g_cells, "cell_id",
                                    (const char *[]){"path", cp, NULL}, NULL, err,
                                    sizeof err);
    if (!cells) fail_msg("%s", err);

    sl_schema *ev = sl_schema_new();
    sl_schema_add(ev, "ts", SL_TIMESTAMP);
    sl_schema_set_identifier(ev, sl_schema_add(ev, "msisdn", SL_STRING));
    sl_schema_add(ev, "cell_id", SL_INT64);
    char text[4096] = "ts,msisdn,cell_id\n";
    for (int i = 1; i <= 100; i++) /* ids 1..3 (3 is unknown), cells 1..3 */
        snprintf(text + strlen(text), sizeof text - strlen(text),
                 "%d,49170000000%d,%d\n", i, 1 + (i - 1) % 3, 1 + (i - 1) % 3);
    const char *ep = write_file("job_events.csv", text);

    sl_job *job = sl_job_new(err, sizeof err);
    sl_stream *s = sl_job_source(job, "file", ev,
                                 (const char *[]){"path", ep, NULL});
    s = sl_stream_pseudonymise(s, "msisdn", "sub", g_keys);
    s = sl_stream_lookup(s, "sub", subs, (const char *[]){"birth_date", NULL});
    s = sl_stream_lookup(s, "cell_id", cells, (const char *[]){"area", NULL});
    job_result r = {0};
    assert_int_equal(sl_stream_sink_fn(s, collect, &r), 0);
    int rc = sl_job_run(job);
    if (rc) fail_msg("job: %s", sl_job_error(job));
    assert_false(r.raw_seen);
    assert_int_equal(r.rows, 100);
    assert_int_equal(r.matched_birth, 67); /* ids 1 and 2 of each 3 */
    assert_int_equal(r.matched_area, 67);
    assert_int_equal(r.sub_of_first, pseudo_of("491700000001"));
    assert_int_equal(r.birth_of_first, 315619200000LL);
    assert_string_equal(r.area_of_first, "north");
    sl_job_free(job);
    sl_schema_free(ev);
    sl_table_free(subs);
    sl_table_free(cells);
}

/* ---- joins under key rotation -------------------------------------------- */
#define ROT_SA "aa00000000000000000000000000000000000000000000000000000000000000"
#define ROT_SB "bb00000000000000000000000000000000000000000000000000000000000000"
#define ROT_SC "cc00000000000000000000000000000000000000000000000000000000000000"

typedef struct {
    int n;
    int64_t ts[8], sub[8], birth[8];
    uint8_t matched[8];
} rot_result;

static int rot_collect(const sl_batch *b, void *ud)
{
    rot_result *r = ud;
    const sl_schema *s = sl_batch_schema(b);
    int ts = sl_schema_find(s, "ts"), sub = sl_schema_find(s, "sub");
    int birth = sl_schema_find(s, "birth_date");
    for (uint32_t i = 0; i < sl_batch_len(b) && r->n < 8; i++) {
        if (sl_batch_kind(b)[i] != SL_KIND_DATA) continue;
        r->ts[r->n] = sl_batch_i64(b, ts)[i];
        r->sub[r->n] = sl_batch_i64(b, sub)[i];
        r->matched[r->n] = sl_batch_valid(b, birth)[i];
        r->birth[r->n++] = sl_batch_i64(b, birth)[i];
    }
    return 0;
}

/* events (ts, msisdn) -> rotating pseudonymise -> lookup(t) -> rows. */
static void rot_job(const sl_keyring *k, const sl_table *t, const char *ep,
                    rot_result *r)
{
    char err[512];
    sl_schema *ev = sl_schema_new();
    sl_schema_add(ev, "ts", SL_TIMESTAMP);
    sl_schema_set_identifier(ev, sl_schema_add(ev, "msisdn", SL_STRING));
    sl_job *job = sl_job_new(err, sizeof err);
    assert_int_equal(sl_job_set(job, "parallelism", "1", err, sizeof err), 0);
    sl_stream *s = sl_job_source(job, "file", ev,
                                 (const char *[]){"path", ep, "time.column", "ts",
                                                  NULL});
    s = sl_stream_pseudonymise_rotating(s, "msisdn", "sub", k,
                                        &(sl_rotation){86400000, "tel"});
    s = sl_stream_lookup(s, "sub", t, (const char *[]){"birth_date", NULL});
    memset(r, 0, sizeof *r);
    assert_int_equal(sl_stream_sink_fn(s, rot_collect, r), 0);
    if (sl_job_run(job)) fail_msg("job: %s", sl_job_error(job));
    sl_job_free(job);
    sl_schema_free(ev);
}

static void test_join_under_rotation(void **state)
{
    (void)state;
    if (!have_file_source()) skip();
    char err[512] = "";
    /* "x" is another domain's key (and undated); tel:b takes over at the
     * start of 2024-01-02 */
    setenv("SL_TEST_LOOKUP_ROT", "x " ROT_SC "\n"
                                 "tel:a " ROT_SA " 2024-01-01\n"
                                 "tel:b " ROT_SB " 2024-01-02\n", 1);
    sl_keyring *k = sl_keyring_load("env:SL_TEST_LOOKUP_ROT", err, sizeof err);
    if (!k) fail_msg("%s", err);
    assert_int_equal(sl_keyring_count(k), 3);
    assert_true(sl_keyring_valid_from(k, 0) == INT64_MIN);
    assert_int_equal(sl_keyring_valid_from(k, 2), 1704153600000LL);
    char sp[600]; /* write_file's buffer is reused */
    snprintf(sp, sizeof sp, "%s", write_file("rot_subs.csv",
                                             "msisdn,birth_date,gender\n"
                                             "491700000001,1980-01-02,F\n"
                                             "491700000002,1999-12-31,M\n"));
    const sl_rotation rot = {86400000, "tel"};
    sl_table *t = sl_table_load_rotating("file", g_subs, "msisdn",
                                         (const char *[]){"path", sp, NULL}, k,
                                         &rot, err, sizeof err);
    if (!t) fail_msg("%s", err);
    assert_int_equal(sl_table_rows(t), 4); /* 2 subscribers x 2 keys of "tel" */
    char e2[128];
    sl__hmac *ha = sl__hmac_new_key(k, 1, e2, sizeof e2);
    sl__hmac *hb = sl__hmac_new_key(k, 2, e2, sizeof e2);
    sl__hmac *hx = sl__hmac_new_key(k, 0, e2, sizeof e2);
    const char *id = "491700000001";
    int64_t pa = sl__hmac_pseudo(ha, id, strlen(id));
    int64_t pb = sl__hmac_pseudo(hb, id, strlen(id));
    int64_t px = sl__hmac_pseudo(hx, id, strlen(id));
    const sl_batch *ch;
    uint32_t row;
    assert_int_equal(sl__table_find_i64(t, pa, &ch, &row), 1);
    assert_int_equal(sl__table_find_i64(t, pb, &ch, &row), 1);
    assert_int_equal(sl__table_find_i64(t, px, &ch, &row), 0); /* not the domain */
    sl__hmac_free(ha);
    sl__hmac_free(hb);
    sl__hmac_free(hx);

    /* a record just before and one just after the key boundary both find
     * their subscriber, under different pseudonyms */
    const int64_t d2 = 1704153600000LL;
    char text[256];
    snprintf(text, sizeof text, "ts,msisdn\n%lld,491700000001\n"
             "%lld,491700000001\n%lld,491700000002\n",
             (long long)(d2 - 1), (long long)d2, (long long)(d2 + 60000));
    const char *ep = write_file("rot_events.csv", text);
    rot_result r;
    rot_job(k, t, ep, &r);
    assert_int_equal(r.n, 3);
    for (int i = 0; i < 3; i++) assert_int_equal(r.matched[i], 1);
    assert_int_equal(r.ts[0], d2 - 1);
    assert_int_equal(r.sub[0], pa);
    assert_int_equal(r.sub[1], pb);
    assert_int_equal(r.birth[0], 315619200000LL);
    assert_int_equal(r.birth[1], 315619200000LL);
    assert_int_equal(r.birth[2], 946598400000LL);
    sl_table_free(t);

    /* the current key alone (the old way) misses the earlier period */
    t = sl_table_load("file", g_subs, "msisdn", (const char *[]){"path", sp, NULL},
                      k, err, sizeof err);
    if (!t) fail_msg("%s", err);
    rot_job(k, t, ep, &r);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.matched[0], 0);
    assert_int_equal(r.matched[1], 1);
    sl_table_free(t);

    /* the rotation is checked as the operator checks it */
    assert_null(sl_table_load_rotating("file", g_subs, "msisdn",
                                       (const char *[]){"path", sp, NULL}, k,
                                       &(sl_rotation){7 * 86400000LL, "tel"},
                                       err, sizeof err));
    assert_non_null(strstr(err, "rotation boundary"));
    assert_null(sl_table_load_rotating("file", g_subs, "msisdn",
                                       (const char *[]){"path", sp, NULL}, k,
                                       &(sl_rotation){86400000, "nope"}, err,
                                       sizeof err));
    assert_non_null(strstr(err, "nope"));
    assert_null(sl_table_load_rotating("file", g_subs, "msisdn",
                                       (const char *[]){"path", sp, NULL}, k,
                                       NULL, err, sizeof err));
    sl_keyring_free(k);
}

/* ---- the builder --------------------------------------------------------- */
static int fake_configure(void **conf, const char *const *kv,
                          const sl_schema *schema, char *e, size_t n)
{
    *conf = NULL;
    return 0;
}
static const sl__source_vt fake_src = {.name = "fake",
                                       .configure = fake_configure};

static void expect(const char *key, const sl_table *t, const char *const *cols,
                   const char *what)
{
    sl_job *job = sl_job_new(NULL, 0);
    sl_stream *s = sl__job_add_source(job, &fake_src, g_events, NULL);
    sl_stream *r = sl_stream_lookup(s, key, t, cols);
    if (!what) {
        assert_non_null(r);
        assert_null(sl_job_error(job));
    } else {
        assert_null(r);
        const char *e = sl_job_error(job);
        if (!e || !strstr(e, what)) fail_msg("error '%s' lacks '%s'", e, what);
    }
    sl_job_free(job);
}

static void test_builder(void **state)
{
    (void)state;
    sl_table *t = cells_table();
    sl_job *job = sl_job_new(NULL, 0);
    sl_stream *s = sl__job_add_source(job, &fake_src, g_events, NULL);
    s = sl_stream_lookup(s, "cell_id", t, (const char *[]){"pop", "area", NULL});
    assert_non_null(s);
    const sl_schema *o = sl_stream_schema(s);
    assert_int_equal(sl_schema_ncols(o), 6);
    assert_string_equal(sl_schema_col_name(o, 4), "pop");
    assert_string_equal(sl_schema_col_name(o, 5), "area");
    assert_int_equal(sl_schema_col_type(o, 5), SL_STRING);
    sl_job_free(job);

    expect("cell_id", t, NULL, NULL); /* NULL: every non-key column */
    expect("sub", t, (const char *[]){"area", NULL}, NULL);
    expect("msisdn", t, (const char *[]){"area", NULL}, "is VARCHAR but");
    expect("ts", t, (const char *[]){"area", NULL}, "is TIMESTAMP but");
    expect("nope", t, (const char *[]){"area", NULL}, "no column 'nope'");
    expect("cell_id", t, (const char *[]){"zone", NULL}, "no column 'zone' in the table");
    expect("cell_id", t, (const char *[]){"cell_id", NULL}, "already in the stream");
    expect("cell_id", t, (const char *[]){"area", "area", NULL}, "listed twice");
    expect("cell_id", t, (const char *[]){NULL}, "no table columns");
    expect("cell_id", NULL, NULL, "no table");
    assert_null(sl_stream_lookup(NULL, "cell_id", t, NULL));
    sl_table_free(t);
}

/* A join appending one 8-byte column of an INT64-keyed memory table goes
 * through the table's projection (key and value in one slot): random keys
 * (0 among them, repeats where the last row wins, NULL values) joined
 * against a brute-force model of the table, with NULL keys, unknown keys
 * and canaries; and the projection is only offered where it applies. */
static void test_join_projection(void **state)
{
    (void)state;
    enum { ROWS = 3000, KEYS = 2000, N = 4000 };
    unsigned seed = tu_seed("test_lookup projection");
    uint64_t x = seed * 2654435761u + 7;
    static int64_t key[ROWS], pop[ROWS];
    static bool pop_null[ROWS];
    sl_table *t = new_table(g_cells, 0);
    assert_non_null(t);
    sl_batch *b = sl__batch_new(g_cells, ROWS);
    for (int i = 0; i < ROWS; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        key[i] = i == 7 ? 0 : (int64_t)sl__mix64((x >> 33) % KEYS); /* repeats */
        pop[i] = (int64_t)(x >> 20);
        pop_null[i] = (x >> 60) == 0;
        sl_batch_i64(b, 0)[i] = key[i];
        sl_batch_set_str(b, 1, (size_t)i, "a", 1);
        if (pop_null[i]) sl_batch_valid(b, 2)[i] = 0;
        else sl_batch_i64(b, 2)[i] = pop[i];
    }
    sl_batch_set_len(b, ROWS);
    char err[256] = "";
    assert_int_equal(sl__table_append(t, b, err, sizeof err), 0);
    assert_int_equal(sl__table_seal(t, err, sizeof err), 0);
    sl__batch_free(b);
    bool memory = !sl__table_on_disk(t);
    if (memory) {
        assert_non_null(sl__table_proj(t, 2));
        assert_ptr_equal(sl__table_proj(t, 2), sl__table_proj(t, 2)); /* once */
        assert_null(sl__table_proj(t, 1)); /* a STRING column */
        assert_null(sl__table_proj(t, 0)); /* the key */
    }
    sl__lookup_conf conf = {.key_col = 1, .table = t, .ncols = 1, .tcols = {2}};
    harness hs;
    harness_open(&hs, &conf);
    static int64_t cells[N];
    static const char *ids[N];
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int r = (int)((x >> 33) % 10);
        cells[i] = r == 0 ? -1 /* NULL key */
                 : r == 1 ? (int64_t)((x >> 40) | 1) * 3 /* unknown (mostly) */
                 : key[(x >> 33) % ROWS];
        ids[i] = "4917";
    }
    cells[1] = 0; /* key 0, kept beside the slots */
    cells[2] = key[ROWS - 1];
    sl_batch *in = events_batch(cells, ids, N);
    for (int i = 0; i < N; i += 97) sl_batch_kind(in)[i] = SL_KIND_CANARY;
    assert_int_equal(sl__op_lookup.batch(hs.st, in, &hs.sink.out), 0);
    assert_int_equal(hs.sink.n, 1);
    sl_batch *o = hs.sink.got[0];
    assert_int_equal(sl_batch_len(o), N);
    for (int i = 0; i < N; i++) {
        int last = -1; /* the model: the last row with the key */
        for (int r = 0; cells[i] >= 0 && r < ROWS; r++)
            if (key[r] == cells[i]) last = r;
        bool want = i % 97 != 0 && last >= 0 && !pop_null[last];
        assert_int_equal(sl_batch_valid(o, 4)[i], want);
        if (want) assert_int_equal(sl_batch_i64(o, 4)[i], pop[last]);
        if (cells[i] >= 0) assert_int_equal(sl_batch_i64(o, 1)[i], cells[i]);
    }
    harness_close(&hs);
    sl_table_free(t);
}

/* Not a pass/fail test: join cost per row against a large INT64 table. */
static void test_speed(void **state)
{
    (void)state;
    enum { ROWS = 1 << 20, N = 1024, ROUNDS = 200 };
    sl_table *t = sl__table_new(g_cells, 0);
    sl_batch *b = sl__batch_new(g_cells, SL__TABLE_CHUNK);
    for (int i = 0; i < ROWS; i += SL__TABLE_CHUNK) {
        sl__batch_clear(b);
        for (int j = 0; j < SL__TABLE_CHUNK; j++) {
            sl_batch_i64(b, 0)[j] = (int64_t)sl__mix64((uint64_t)(i + j));
            sl_batch_set_str(b, 1, j, "area-x", 6);
            sl_batch_i64(b, 2)[j] = i + j;
        }
        sl_batch_set_len(b, SL__TABLE_CHUNK);
        sl__table_append(t, b, NULL, 0);
    }
    sl__batch_free(b);
    sl__lookup_conf conf = {.key_col = 1, .table = t, .ncols = 2, .tcols = {1, 2}};
    harness hs;
    harness_open(&hs, &conf);
    uint64_t ns = 0, x = 1;
    int64_t cells[N];
    const char *ids[N];
    for (int i = 0; i < N; i++) ids[i] = "4917";
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            cells[i] = (int64_t)sl__mix64((x >> 33) % ROWS);
        }
        sl_batch *in = events_batch(cells, ids, N);
        uint64_t t0 = sl__clock_monotonic();
        sl__op_lookup.batch(hs.st, in, &hs.sink.out);
        ns += sl__clock_monotonic() - t0;
        tu_sink_free(&hs.sink);
    }
    print_message("lookup: %.0f ns/row (table of %d rows, 2 payload columns)\n",
                  (double)ns / (N * ROUNDS), ROWS);
    harness_close(&hs);
    sl_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_int),
        cmocka_unit_test(test_table_str),
        cmocka_unit_test(test_join_int),
        cmocka_unit_test(test_join_str_and_pseudo),
        cmocka_unit_test_setup_teardown(test_join_int, use_rocksdb, use_memory),
        cmocka_unit_test_setup_teardown(test_join_str_and_pseudo, use_rocksdb,
                                        use_memory),
        cmocka_unit_test(test_join_projection),
        cmocka_unit_test_setup_teardown(test_join_projection, use_rocksdb,
                                        use_memory),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_job),
        cmocka_unit_test(test_join_under_rotation),
        cmocka_unit_test(test_builder),
        cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
