/* test_generator.c — the synthetic telecom data: determinism per seed,
 * out-of-order jitter within its bound per partition, the unknown fraction,
 * realistic shapes (types, ages, skew, day/night), files and source giving
 * the same rows, rate limiting, position/seek through the vtable and
 * configuration errors. */
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "io/gen.h"

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            rm_rf(p);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, fp);
    fclose(fp);
    s[got] = 0;
    if (len) *len = got;
    return s;
}

static const char *small_conf[] = {
    "subscribers", "20000", "cells", "500", "areas", "20", "events", "30000",
    "parts", "3", "unknown.fraction", "0.2", NULL};

static void conf_small(sl__gen_conf *c, const char *seed)
{
    char err[256];
    sl__gen_conf_init(c);
    for (int i = 0; small_conf[i]; i += 2)
        assert_int_equal(sl__gen_conf_set(c, small_conf[i], small_conf[i + 1],
                                          err, sizeof err), 0);
    assert_int_equal(sl__gen_conf_set(c, "seed", seed, err, sizeof err), 0);
}

typedef struct {
    char dir[64];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/sl_genXXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    rm_rf(f->dir);
    free(f);
    return 0;
}

static char *gen_to_kv(const fx *f, const char *sub, const char *seed,
                       const char *const *extra)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", f->dir, sub);
    sl__gen_conf c;
    conf_small(&c, seed);
    char err[256];
    for (int i = 0; extra && extra[i]; i += 2)
        assert_int_equal(sl__gen_conf_set(&c, extra[i], extra[i + 1], err,
                                          sizeof err), 0);
    assert_int_equal(sl__gen_write(&c, path, err, sizeof err), 0);
    sl__gen_conf_close(&c);
    return path;
}

static char *gen_to(const fx *f, const char *sub, const char *seed)
{
    return gen_to_kv(f, sub, seed, NULL);
}

static bool same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    assert_non_null(x);
    assert_non_null(y);
    bool same = na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static void test_determinism(void **state)
{
    fx *f = *state;
    gen_to(f, "a", "7");
    gen_to(f, "b", "7");
    gen_to(f, "c", "8");
    static const char *files[] = {"events/events-000.csv", "events/events-001.csv",
                                  "events/events-002.csv", "subscribers.csv",
                                  "cells.csv"};
    for (size_t i = 0; i < 5; i++) {
        char pa[300], pb[300], pc[300];
        snprintf(pa, sizeof pa, "%s/a/%s", f->dir, files[i]);
        snprintf(pb, sizeof pb, "%s/b/%s", f->dir, files[i]);
        snprintf(pc, sizeof pc, "%s/c/%s", f->dir, files[i]);
        assert_true(same_file(pa, pb));
        assert_false(same_file(pa, pc));
    }
    /* a rerun with fewer parts leaves no stale event files behind */
    sl__gen_conf c;
    conf_small(&c, "7");
    char err[256], p[300];
    assert_int_equal(sl__gen_conf_set(&c, "parts", "2", err, sizeof err), 0);
    snprintf(p, sizeof p, "%s/a", f->dir);
    assert_int_equal(sl__gen_write(&c, p, err, sizeof err), 0);
    snprintf(p, sizeof p, "%s/a/events/events-002.csv", f->dir);
    assert_int_not_equal(access(p, F_OK), 0);
    sl__gen_conf_close(&c);
}

/* Parses an events file; checks the header, the bound on disorder and the
 * time range; returns the number of rows. */
static int64_t check_events(const char *path, int64_t start, int64_t span,
                            int64_t ooo, int64_t *max_jit, int64_t type_n[5],
                            int64_t hour_n[24])
{
    char *s = slurp(path, NULL);
    assert_non_null(s);
    const char *hdr = "ts,msisdn,event_type,cell_id,duration_s,bytes\n";
    assert_memory_equal(s, hdr, strlen(hdr));
    char *p = s + strlen(hdr);
    int64_t maxts = INT64_MIN, n = 0;
    while (*p) {
        char *nl = strchr(p, '\n');
        *nl = 0;
        long long ts, cell;
        char msisdn[32], type[32];
        int k = sscanf(p, "%lld,%12[0-9],%31[A-Z_],%lld", &ts, msisdn, type, &cell);
        assert_int_equal(k, 4);
        assert_int_equal(strlen(msisdn), 12);
        assert_true(ts >= start && ts < start + span);
        if (maxts != INT64_MIN) {
            assert_true(maxts - ts <= ooo);
            if (maxts - ts > *max_jit) *max_jit = maxts - ts;
        }
        if (ts > maxts) maxts = ts;
        int t;
        for (t = 0; t < 5; t++)
            if (strcmp(type, sl__gen_event_types[t]) == 0) break;
        assert_true(t < 5);
        type_n[t]++;
        /* calls carry a duration, data sessions bytes, nothing else */
        const char *tail = strrchr(p, ',');
        const char *mid = tail - 1;
        while (*mid != ',') mid--;
        bool call = t == SL__GEN_CALL_PLACED || t == SL__GEN_CALL_RECEIVED;
        assert_int_equal(tail - mid > 1, call);
        assert_int_equal(tail[1] != 0, t == SL__GEN_DATA_SESSION);
        hour_n[(ts / 3600000) % 24]++;
        n++;
        p = nl + 1;
    }
    free(s);
    return n;
}

static void test_jitter_bound_and_shape(void **state)
{
    fx *f = *state;
    int64_t start;
    assert_int_equal(sl__parse_ts("2026-01-05T00:00:00Z", 20, &start), 0);
    /* Dense events (10 minutes) show disorder; it never exceeds the bound. */
    const char *dense[] = {"span.ms", "600000", "out.of.order.ms", "1500", NULL};
    char *dir = gen_to_kv(f, "d", "3", dense);
    int64_t total = 0, max_jit = 0, types[5] = {0}, hours[24] = {0};
    for (int p = 0; p < 3; p++) {
        char path[300];
        snprintf(path, sizeof path, "%s/events/events-%03d.csv", dir, p);
        total += check_events(path, start, 600000, 1500, &max_jit, types, hours);
    }
    assert_int_equal(total, 30000);
    assert_true(max_jit > 1000); /* the jitter is used, up to the bound */
    /* A whole day: the shapes. */
    dir = gen_to(f, "a", "3");
    total = max_jit = 0;
    memset(types, 0, sizeof types);
    memset(hours, 0, sizeof hours);
    for (int p = 0; p < 3; p++) {
        char path[300];
        snprintf(path, sizeof path, "%s/events/events-%03d.csv", dir, p);
        int64_t n = check_events(path, start, 86400000, 2000, &max_jit, types,
                                 hours);
        assert_true(n == 10000);
        total += n;
    }
    assert_int_equal(total, 30000);
    /* SMS 25% each, calls 15% each, data 20% */
    assert_true(types[0] > 6900 && types[0] < 8100);
    assert_true(types[2] > 4000 && types[2] < 5000);
    assert_true(types[4] > 5500 && types[4] < 6500);
    /* nights are quiet */
    assert_true(hours[3] * 4 < hours[18]);
}

static void test_subscribers_and_cells(void **state)
{
    fx *f = *state;
    char *dir = gen_to(f, "a", "5");
    char path[300];
    snprintf(path, sizeof path, "%s/subscribers.csv", dir);
    char *s = slurp(path, NULL);
    char *p = strchr(s, '\n') + 1;
    assert_memory_equal(s, "msisdn,birth_date,gender\n", 25);
    int n = 0, minors = 0, old = 0, g[3] = {0};
    long long prev = 0;
    while (*p) {
        long long msisdn;
        int y, m, d;
        char gender;
        assert_int_equal(sscanf(p, "%lld,%d-%d-%d,%c", &msisdn, &y, &m, &d,
                                &gender), 5);
        assert_true(msisdn > prev); /* unique, in order */
        prev = msisdn;
        assert_true(msisdn >= 491700000000LL && msisdn < 491700020000LL);
        /* completed years on 2026-01-05 */
        int age = 2026 - y - ((m > 1 || (m == 1 && d > 5)) ? 1 : 0);
        assert_true(age >= 12 && age < 90);
        minors += age < 18;
        old += age >= 80;
        g[gender == 'M' ? 0 : gender == 'F' ? 1 : 2]++;
        n++;
        p = strchr(p, '\n') + 1;
    }
    free(s);
    /* unknown.fraction 0.2 of 20000 */
    assert_true(n > 15600 && n < 16400);
    assert_true(minors > 0 && minors < n / 20);
    assert_true(old > 0 && old < n / 10);
    assert_true(g[2] > 0 && g[2] < n / 20 && g[0] > n / 3 && g[1] > n / 3);

    snprintf(path, sizeof path, "%s/cells.csv", dir);
    s = slurp(path, NULL);
    p = strchr(s, '\n') + 1;
    int areas[21] = {0}, cells = 0;
    while (*p) {
        int id, area;
        assert_int_equal(sscanf(p, "%d,A%4d", &id, &area), 2);
        assert_int_equal(id, ++cells);
        assert_true(area >= 1 && area <= 20);
        areas[area]++;
        p = strchr(p, '\n') + 1;
    }
    free(s);
    assert_int_equal(cells, 500);
    for (int a = 1; a <= 20; a++) assert_int_equal(areas[a], 25);

    /* events: the busiest cell and subscriber carry far more than average */
    sl__gen_conf c;
    conf_small(&c, "5");
    char err[256];
    sl__gen *gm = sl__gen_new(&c, err, sizeof err);
    assert_non_null(gm);
    int64_t *cell_n = calloc(501, sizeof(int64_t));
    int64_t *sub_n = calloc(20000, sizeof(int64_t));
    int64_t unknown = 0;
    for (int64_t i = 0; i < 30000; i++) {
        sl__gen_event ev;
        sl__gen_event_at(gm, i, &ev);
        assert_true(ev.cell >= 1 && ev.cell <= 500);
        cell_n[ev.cell]++;
        sub_n[ev.sub]++;
        unknown += !sl__gen_sub_known(gm, ev.sub);
    }
    int64_t top_cell = 0, top_sub = 0;
    for (int i = 1; i <= 500; i++) if (cell_n[i] > top_cell) top_cell = cell_n[i];
    for (int i = 0; i < 20000; i++) if (sub_n[i] > top_sub) top_sub = sub_n[i];
    assert_true(top_cell > 10 * 30000 / 500);
    assert_true(top_sub > 5 * 30000 / 20000);
    assert_true(unknown > 30000 / 10 && unknown < 30000 * 3 / 10);
    free(cell_n);
    free(sub_n);
    sl__gen_free(gm);
    sl__gen_conf_close(&c);
}

static sl_schema *events_schema(void)
{
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "ts", SL_TIMESTAMP);
    sl_schema_add(s, "msisdn", SL_STRING);
    sl_schema_add(s, "event_type", SL_STRING);
    sl_schema_add(s, "cell_id", SL_INT64);
    sl_schema_add(s, "duration_s", SL_INT64);
    sl_schema_add(s, "bytes", SL_INT64);
    sl_schema_add(s, "extra", SL_FLOAT64);
    return s;
}

static void fmt_col(const sl_batch *b, int c, uint32_t r, char *out)
{
    if (!b->cols[c].valid[r]) {
        out[0] = 0;
        return;
    }
    if (b->schema->cols[c].type == SL_STRING) {
        const sl_str *v = &((sl_str *)b->cols[c].data)[r];
        memcpy(out, v->ptr, v->len);
        out[v->len] = 0;
    } else {
        sprintf(out, "%lld", (long long)((int64_t *)b->cols[c].data)[r]);
    }
}

/* Runs the source over all partitions and compares each partition's rows,
 * formatted as CSV, with the file's lines. */
static void compare_source(const char *dir, const char *const *files,
                           const sl_schema *s, const char *dataset, int ncol)
{
    const char *kv[32];
    int k = 0;
    for (int i = 0; small_conf[i]; i++) kv[k++] = small_conf[i];
    kv[k++] = "seed";
    kv[k++] = "11";
    kv[k++] = "dataset";
    kv[k++] = dataset;
    kv[k] = NULL;
    void *conf, *st;
    char err[256];
    assert_int_equal(sl__src_generator.configure(&conf, kv, s, err, sizeof err), 0);
    assert_int_equal(sl__src_generator.partitions(conf), 3);
    sl__ctx ctx = tu_ctx();
    int parts[] = {0, 1, 2};
    assert_int_equal(sl__src_generator.open(&st, conf, s, parts, 3, &ctx, err,
                                            sizeof err), 0);
    char *text[3], *cur[3];
    int nfiles = files[1] ? 3 : 1;
    for (int p = 0; p < nfiles; p++) {
        char path[300];
        snprintf(path, sizeof path, "%s/%s", dir, files[p]);
        text[p] = slurp(path, NULL);
        assert_non_null(text[p]);
        cur[p] = strchr(text[p], '\n') + 1;
    }
    sl_batch *b = sl__batch_new(s, 100);
    int part, rc;
    int64_t rows = 0;
    while ((rc = sl__src_generator.read(st, b, &part, err, sizeof err)) >= 0) {
        int fp = nfiles == 3 ? part : 0;
        for (uint32_t r = 0; r < b->n; r++) {
            char line[256] = "", v[64];
            for (int c = 0; c < ncol; c++) {
                fmt_col(b, c, r, v);
                strcat(line, v);
                strcat(line, c + 1 < ncol ? "," : "\n");
            }
            if (strncmp(cur[fp], line, strlen(line)) != 0)
                fail_msg("partition %d row %lld: source '%s' file '%.60s'",
                         part, (long long)rows, line, cur[fp]);
            cur[fp] += strlen(line);
            if (ncol < s->n) assert_int_equal(b->cols[ncol].valid[r], 0);
            assert_int_equal(b->kind[r], SL_KIND_DATA);
            rows++;
        }
        sl__batch_clear(b);
    }
    assert_int_equal(rc, SL_EEOF);
    if (nfiles == 1) { /* the partitions interleave rows of one file */
        assert_true(rows > 0);
    } else {
        for (int p = 0; p < nfiles; p++) assert_int_equal(*cur[p], 0);
    }
    for (int p = 0; p < nfiles; p++) free(text[p]);
    sl__batch_free(b);
    sl__src_generator.close(st);
    sl__src_generator.conf_free(conf);
}

static void test_files_and_source_agree(void **state)
{
    fx *f = *state;
    char *dir = gen_to(f, "a", "11");
    static const char *ev[] = {"events/events-000.csv", "events/events-001.csv",
                               "events/events-002.csv", NULL};
    sl_schema *s = events_schema();
    compare_source(dir, ev, s, "events", 6);
    sl_schema_free(s);

    /* cells: one partition per row slice; compare against cells.csv by id */
    s = sl_schema_new();
    sl_schema_add(s, "cell_id", SL_INT64);
    sl_schema_add(s, "area", SL_STRING);
    const char *kv[] = {"cells", "500", "areas", "20", "subscribers", "20000",
                        "seed", "11", "dataset", "cells", NULL};
    void *conf, *st;
    char err[256];
    assert_int_equal(sl__src_generator.configure(&conf, kv, s, err, sizeof err), 0);
    sl__ctx ctx = tu_ctx();
    int parts[] = {0};
    assert_int_equal(sl__src_generator.open(&st, conf, s, parts, 1, &ctx, err,
                                            sizeof err), 0);
    sl_batch *b = sl__batch_new(s, 1000);
    int part;
    assert_int_equal(sl__src_generator.read(st, b, &part, err, sizeof err), 500);
    char path[300];
    snprintf(path, sizeof path, "%s/cells.csv", dir);
    char *text = slurp(path, NULL), *p = strchr(text, '\n') + 1;
    for (uint32_t r = 0; r < 500; r++) {
        char line[64], v[32];
        fmt_col(b, 0, r, line);
        strcat(line, ",");
        fmt_col(b, 1, r, v);
        strcat(line, v);
        strcat(line, "\n");
        assert_memory_equal(p, line, strlen(line));
        p += strlen(line);
    }
    free(text);
    sl__batch_free(b);
    sl__src_generator.close(st);
    sl__src_generator.conf_free(conf);
    sl_schema_free(s);

    /* subscribers, single partition: identical to subscribers.csv */
    s = sl_schema_new();
    sl_schema_add(s, "msisdn", SL_STRING);
    sl_schema_add(s, "birth_date", SL_STRING);
    sl_schema_add(s, "gender", SL_STRING);
    const char *kv2[] = {"subscribers", "20000", "cells", "500", "areas", "20",
                         "unknown.fraction", "0.2", "seed", "11",
                         "dataset", "subscribers", NULL};
    assert_int_equal(sl__src_generator.configure(&conf, kv2, s, err, sizeof err), 0);
    assert_int_equal(sl__src_generator.open(&st, conf, s, parts, 1, &ctx, err,
                                            sizeof err), 0);
    b = sl__batch_new(s, 256);
    snprintf(path, sizeof path, "%s/subscribers.csv", dir);
    text = slurp(path, NULL);
    p = strchr(text, '\n') + 1;
    int rc;
    while ((rc = sl__src_generator.read(st, b, &part, err, sizeof err)) >= 0) {
        for (uint32_t r = 0; r < b->n; r++) {
            char line[64] = "", v[32];
            for (int c = 0; c < 3; c++) {
                fmt_col(b, c, r, v);
                strcat(line, v);
                strcat(line, c < 2 ? "," : "\n");
            }
            assert_memory_equal(p, line, strlen(line));
            p += strlen(line);
        }
        sl__batch_clear(b);
    }
    assert_int_equal(*p, 0);
    free(text);
    sl__batch_free(b);
    sl__src_generator.close(st);
    sl__src_generator.conf_free(conf);
    sl_schema_free(s);
}

static uint64_t fake_now;
static uint64_t fake_clock(void) { return fake_now += 10000000; /* 10 ms */ }

static void test_rate_and_seek(void **state)
{
    (void)state;
    sl_schema *s = events_schema();
    const char *kv[] = {"events", "100000", "parts", "2", "rate", "10000",
                        "subscribers", "1000", "cells", "100", "areas", "10", NULL};
    void *conf, *st;
    char err[256];
    assert_int_equal(sl__src_generator.configure(&conf, kv, s, err, sizeof err), 0);
    sl__ctx ctx = tu_ctx();
    int parts[] = {0, 1};
    assert_int_equal(sl__src_generator.open(&st, conf, s, parts, 2, &ctx, err,
                                            sizeof err), 0);
    sl__clock_fn saved = sl__clock;
    sl__clock = fake_clock;
    sl_batch *b = sl__batch_new(s, 1000);
    int part, rc;
    int64_t got = 0;
    for (int i = 0; i < 100; i++) { /* 100 calls x 10 ms = 1 s at 10,000/s */
        sl__batch_clear(b);
        rc = sl__src_generator.read(st, b, &part, err, sizeof err);
        if (rc > 0) got += rc;
        else assert_int_equal(rc, SL_EAGAIN);
    }
    sl__clock = saved;
    assert_true(got >= 9800 && got <= 10200);
    /* position / seek: partition 1 replays from a recorded count */
    int64_t pos;
    assert_int_equal(sl__gen_source_position(st, 1, &pos), 0);
    assert_true(pos > 0);
    sl__src_generator.close(st);
    sl__src_generator.conf_free(conf);

    const char *kv2[] = {"events", "1000", "parts", "2", "subscribers", "1000",
                         "cells", "100", "areas", "10", NULL};
    assert_int_equal(sl__src_generator.configure(&conf, kv2, s, err, sizeof err), 0);
    int one[] = {1};
    assert_int_equal(sl__src_generator.open(&st, conf, s, one, 1, &ctx, err,
                                            sizeof err), 0);
    sl__batch_clear(b);
    assert_int_equal(sl__src_generator.read(st, b, &part, err, sizeof err), 500);
    int64_t ts_all[500];
    memcpy(ts_all, b->cols[0].data, sizeof ts_all);
    assert_int_equal(sl__gen_source_seek(st, 0, 123), 0);
    sl__batch_clear(b);
    assert_int_equal(sl__src_generator.read(st, b, &part, err, sizeof err), 377);
    assert_memory_equal(b->cols[0].data, ts_all + 123, 377 * sizeof(int64_t));
    sl__batch_clear(b);
    assert_int_equal(sl__src_generator.read(st, b, &part, err, sizeof err), SL_EEOF);
    sl__batch_free(b);
    sl__src_generator.close(st);
    sl__src_generator.conf_free(conf);
    sl_schema_free(s);
}

/* Through the vtable, as the runtime uses it: an instance reading two of
 * three partitions (index 0 is partition 2) stops after k reads; a new
 * instance seeked to each partition's position returns exactly the rows the
 * first one still had to return, partition by partition. */
static void vt_drain(void *st, sl_batch *b, char **rows, int *n, int max_reads)
{
    int part, rc = 0, reads = 0;
    char err[256];
    while (max_reads < 0 || reads < max_reads) {
        sl__batch_clear(b);
        rc = sl__src_generator.read(st, b, &part, err, sizeof err);
        if (rc < 0) break;
        reads++;
        assert_true(part == 0 || part == 1);
        for (uint32_t r = 0; r < b->n; r++) {
            char line[256] = "", v[64];
            for (int c = 0; c < 6; c++) {
                fmt_col(b, c, r, v);
                strcat(line, v);
                strcat(line, ",");
            }
            size_t len = strlen(rows[part]);
            rows[part] = realloc(rows[part], len + strlen(line) + 2);
            strcpy(rows[part] + len, line);
            strcat(rows[part] + len, "\n");
            n[part]++;
        }
    }
    if (max_reads < 0) assert_int_equal(rc, SL_EEOF);
}

static void test_vt_position_seek(void **state)
{
    (void)state;
    sl_schema *s = events_schema();
    const char *kv[] = {"events", "3000", "parts", "3", "subscribers", "1000",
                        "cells", "100", "areas", "10", NULL};
    void *conf;
    char err[256];
    assert_int_equal(sl__src_generator.configure(&conf, kv, s, err, sizeof err), 0);
    assert_true(sl__src_generator.position && sl__src_generator.seek);
    sl__ctx ctx = tu_ctx();
    const int parts[] = {2, 0};
    sl_batch *b = sl__batch_new(s, 64);
    static const int stops[] = {0, 1, 4, 9, 40};
    char *all[2] = {NULL, NULL};
    for (size_t si = 0; si < sizeof stops / sizeof stops[0]; si++) {
        char *first[2], *rest[2], *again[2];
        int nf[2] = {0, 0}, nr[2] = {0, 0}, na[2] = {0, 0};
        for (int i = 0; i < 2; i++) {
            first[i] = calloc(1, 1);
            rest[i] = calloc(1, 1);
            again[i] = calloc(1, 1);
        }
        void *st, *st2;
        assert_int_equal(sl__src_generator.open(&st, conf, s, parts, 2, &ctx,
                                                err, sizeof err), 0);
        vt_drain(st, b, first, nf, stops[si]);
        int64_t pos[2];
        for (int i = 0; i < 2; i++)
            assert_int_equal(sl__src_generator.position(st, i, &pos[i]), 0);
        vt_drain(st, b, rest, nr, -1);
        sl__src_generator.close(st);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(nf[i] + nr[i], 1000); /* 3000 events / 3 */
            size_t lf = strlen(first[i]);
            char *whole = malloc(lf + strlen(rest[i]) + 1);
            strcpy(whole, first[i]);
            strcpy(whole + lf, rest[i]);
            if (!all[i]) all[i] = whole; /* stop 0: everything */
            else {
                assert_string_equal(whole, all[i]);
                free(whole);
            }
        }
        assert_int_equal(sl__src_generator.open(&st2, conf, s, parts, 2, &ctx,
                                                err, sizeof err), 0);
        for (int i = 0; i < 2; i++)
            assert_int_equal(sl__src_generator.seek(st2, i, pos[i]), 0);
        vt_drain(st2, b, again, na, -1);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(na[i], nr[i]);
            assert_string_equal(again[i], rest[i]);
        }
        assert_int_equal(sl__src_generator.seek(st2, 2, 0), SL_EINVAL);
        sl__src_generator.close(st2);
        for (int i = 0; i < 2; i++) {
            free(first[i]);
            free(rest[i]);
            free(again[i]);
        }
    }
    for (int i = 0; i < 2; i++) free(all[i]);
    sl__batch_free(b);
    sl__src_generator.conf_free(conf);
    sl_schema_free(s);
}

static void test_conf(void **state)
{
    (void)state;
    sl__gen_conf c;
    char err[256];
    sl__gen_conf_init(&c);
    assert_int_equal(c.subscribers, 10000000);
    assert_int_equal(c.cells, 20000);
    assert_int_equal(c.areas, 400);
    assert_int_equal(c.out_of_order_ms, 2000);
    assert_int_equal(c.span_ms, 86400000);
    assert_int_equal(c.start_ms, 1767571200000LL);
    assert_true(c.unknown_fraction == 0.02);
    assert_int_equal(sl__gen_conf_set(&c, "start", "1700000000000", err, sizeof err), 0);
    assert_int_equal(c.start_ms, 1700000000000LL);
    assert_string_equal(c.start, "1700000000000");
    assert_int_equal(sl__gen_conf_set(&c, "start", "2026-13-01", err, sizeof err),
                     SL_EINVAL);
    assert_non_null(strstr(err, "start"));
    assert_int_equal(c.start_ms, 1700000000000LL);
    assert_int_equal(sl__gen_conf_set(&c, "colour", "1", err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "colour"));
    assert_int_equal(sl__gen_conf_set(&c, "cells", "0", err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "cells"));
    assert_int_equal(sl__gen_conf_set(&c, "unknown.fraction", "1.5", err, sizeof err),
                     SL_EINVAL);
    assert_int_equal(sl__gen_conf_set(&c, "gzip", "true", err, sizeof err), 0);
    assert_true(c.gzip);
    sl__gen_conf_close(&c);

    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "ts", SL_STRING);
    const char *kv[] = {"events", "10", NULL};
    void *conf;
    assert_int_equal(sl__src_generator.configure(&conf, kv, s, err, sizeof err),
                     SL_EINVAL);
    assert_non_null(strstr(err, "ts"));
    sl_schema_free(s);
    s = sl_schema_new();
    int e = sl_schema_add(s, "event_type", SL_STRING);
    const char *dom[] = {"SMS_SENT", NULL};
    sl_schema_set_domain(s, e, dom);
    assert_int_equal(sl__src_generator.configure(&conf, kv, s, err, sizeof err),
                     SL_EINVAL);
    assert_non_null(strstr(err, "SMS_RECEIVED"));
    const char *kv2[] = {"gzip", "true", NULL};
    assert_int_equal(sl__src_generator.configure(&conf, kv2, s, err, sizeof err),
                     SL_EINVAL);
    sl_schema_free(s);
}

static void test_gzip_files(void **state)
{
    fx *f = *state;
    sl__gen_conf c;
    conf_small(&c, "2");
    char err[256], path[300];
    assert_int_equal(sl__gen_conf_set(&c, "gzip", "1", err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/z", f->dir);
    assert_int_equal(sl__gen_write(&c, path, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/z/events/events-001.csv.gz", f->dir);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/z/subscribers.csv.gz", f->dir);
    assert_int_equal(access(path, F_OK), 0);
    sl__gen_conf_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_determinism, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jitter_bound_and_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscribers_and_cells, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_and_source_agree, setup, teardown),
        cmocka_unit_test(test_rate_and_seek),
        cmocka_unit_test(test_vt_position_seek),
        cmocka_unit_test(test_conf),
        cmocka_unit_test_setup_teardown(test_gzip_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
