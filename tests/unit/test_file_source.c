/* test_file_source.c — the "file" source: directories in name order, one
 * partition per file, gzip, bad lines as dead letters with file:line and a
 * masked identifier, position/seek round trips (also through the vtable,
 * over several partitions), long lines, follow mode,
 * and configuration errors. */
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"
#include "io/decode.h"

static const char *const types[] = {"SMS_SENT", "CALL_PLACED", NULL};

typedef struct {
    char dir[64];
    sl_schema *s;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/sl_fsrcXXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->s = sl_schema_new();
    sl_schema_add(f->s, "ts", SL_TIMESTAMP);
    sl_schema_add(f->s, "msisdn", SL_STRING);
    sl_schema_add(f->s, "event_type", SL_STRING);
    sl_schema_add(f->s, "cell_id", SL_INT64);
    sl_schema_set_identifier(f->s, 1);
    sl_schema_set_domain(f->s, 2, types);
    *state = f;
    return 0;
}

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

static int teardown(void **state)
{
    fx *f = *state;
    rm_rf(f->dir);
    sl_schema_free(f->s);
    free(f);
    return 0;
}

static void put(const fx *f, const char *name, const char *text, char *path,
                size_t psz)
{
    char tmp[256];
    snprintf(path, psz, "%s/%s", f->dir, name);
    size_t n = strlen(name);
    if (n > 3 && strcmp(name + n - 3, ".gz") == 0) {
        gzFile gz = gzopen(path, "wb");
        assert_non_null(gz);
        gzwrite(gz, text, (unsigned)strlen(text));
        gzclose(gz);
        return;
    }
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", f->dir, name); /* hidden */
    FILE *fp = fopen(tmp, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    assert_int_equal(rename(tmp, path), 0);
}

typedef struct {
    void *conf, *st;
    sl__ctx ctx;
    char err[512];
} src;

static int src_open(src *r, const fx *f, const char *const *kv, int nparts)
{
    memset(r, 0, sizeof *r);
    r->ctx = tu_ctx();
    int rc = sl__src_file.configure(&r->conf, kv, f->s, r->err, sizeof r->err);
    if (rc != 0) return rc;
    int parts[64];
    if (nparts < 0) nparts = sl__src_file.partitions(r->conf);
    for (int i = 0; i < nparts; i++) parts[i] = i;
    return sl__src_file.open(&r->st, r->conf, f->s, parts, nparts, &r->ctx,
                             r->err, sizeof r->err);
}

static void src_close(src *r)
{
    sl__src_file.close(r->st);
    sl__src_file.conf_free(r->conf);
}

static int64_t i64(const sl_batch *b, int col, uint32_t row)
{
    return ((const int64_t *)b->cols[col].data)[row];
}

/* Reads everything; returns the ts of each row in order, per partition. */
static int drain(src *r, sl_batch *b, int64_t *ts, int *part_of, int max)
{
    int n = 0, rc, part;
    for (;;) {
        sl__batch_clear(b);
        rc = sl__src_file.read(r->st, b, &part, r->err, sizeof r->err);
        if (rc < 0) break;
        assert_int_equal((uint32_t)rc, b->n);
        for (uint32_t i = 0; i < b->n && n < max; i++, n++) {
            ts[n] = i64(b, 0, i);
            part_of[n] = part;
        }
    }
    assert_int_equal(rc, SL_EEOF);
    return n;
}

static void test_directory_order_and_gz(void **state)
{
    fx *f = *state;
    char p[256];
    put(f, "b.csv", "ts,msisdn,event_type,cell_id\n20,4917,SMS_SENT,1\n21,4917,SMS_SENT,1\n", p, sizeof p);
    put(f, "a.csv", "ts,msisdn,event_type,cell_id\n10,4917,SMS_SENT,1\n11,4917,SMS_SENT,1\n12,4917,SMS_SENT,1\n", p, sizeof p);
    put(f, "c.csv.gz", "ts,cell_id\n30,7\n31,7\n", p, sizeof p);
    put(f, ".hidden.csv", "ts\n99\n", p, sizeof p);
    snprintf(p, sizeof p, "%s/sub", f->dir);
    mkdir(p, 0755);
    const char *kv[] = {"path", f->dir, NULL};
    src r;
    assert_int_equal(src_open(&r, f, kv, -1), 0);
    assert_int_equal(sl__src_file.partitions(r.conf), 3);
    sl_batch *b = sl__batch_new(f->s, 2); /* small: forces several reads */
    int64_t ts[32];
    int part[32];
    int n = drain(&r, b, ts, part, 32);
    assert_int_equal(n, 7);
    /* per partition, rows come in file order; a.csv is partition 0 */
    int64_t last[3] = {0, 0, 0};
    int cnt[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        assert_true(part[i] >= 0 && part[i] < 3);
        assert_true(ts[i] > last[part[i]]);
        assert_int_equal(ts[i] / 10, part[i] + 1);
        last[part[i]] = ts[i];
        cnt[part[i]]++;
    }
    assert_int_equal(cnt[0], 3);
    assert_int_equal(cnt[1], 2);
    assert_int_equal(cnt[2], 2);
    src_close(&r);
    sl__batch_free(b);

    /* a pattern keeps only the plain CSV files */
    const char *kv2[] = {"path", f->dir, "pattern", "*.csv", NULL};
    assert_int_equal(src_open(&r, f, kv2, -1), 0);
    assert_int_equal(sl__src_file.partitions(r.conf), 2);
    src_close(&r);
}

static void test_instances_split_partitions(void **state)
{
    fx *f = *state;
    char p[256];
    put(f, "0.csv", "ts\n1\n2\n", p, sizeof p);
    put(f, "1.csv", "ts\n3\n", p, sizeof p);
    put(f, "2.csv", "ts\n4\n5\n6\n", p, sizeof p);
    const char *kv[] = {"path", f->dir, NULL};
    void *conf, *st;
    char err[256];
    assert_int_equal(sl__src_file.configure(&conf, kv, f->s, err, sizeof err), 0);
    sl__ctx ctx = tu_ctx();
    int parts[] = {2, 0};
    assert_int_equal(sl__src_file.open(&st, conf, f->s, parts, 2, &ctx, err,
                                       sizeof err), 0);
    sl_batch *b = sl__batch_new(f->s, 16);
    int part, rc, total = 0;
    while ((rc = sl__src_file.read(st, b, &part, err, sizeof err)) >= 0) {
        for (uint32_t i = b->n - (uint32_t)rc; i < b->n; i++)
            assert_true(part == 0 ? i64(b, 0, i) >= 4 : i64(b, 0, i) <= 2);
        total += rc;
    }
    assert_int_equal(rc, SL_EEOF);
    assert_int_equal(total, 5);
    int bad[] = {3};
    void *st2;
    assert_int_equal(sl__src_file.open(&st2, conf, f->s, bad, 1, &ctx, err,
                                       sizeof err), SL_EINVAL);
    sl__batch_free(b);
    sl__src_file.close(st);
    sl__src_file.conf_free(conf);
}

static void test_dead_letters(void **state)
{
    fx *f = *state;
    char path[256], outdir[256];
    put(f, "in.csv",
        "ts,msisdn,event_type,cell_id\n"
        "1,491701234567,SMS_SENT,1\n"
        "2,491701234568,SMS_LOST,1\n"
        "3,491701234569,SMS_SENT,1\n"
        "4,491701234560,SMS_SENT\n"
        "x5,491701234561,SMS_SENT,1\n",
        path, sizeof path);
    snprintf(outdir, sizeof outdir, "%s/out", f->dir);
    uint64_t before = sl__test_counter(SL__CTR_DEAD_LETTERS);
    const char *kv[] = {"path", path, NULL};
    src r;
    assert_int_equal(src_open(&r, f, kv, 1), 0);
    sl_batch *b = sl__batch_new(f->s, 64);
    int part, rc, total = 0;
    while ((rc = sl__src_file.read(r.st, b, &part, r.err, sizeof r.err)) >= 0)
        total += rc;
    assert_int_equal(rc, SL_EEOF);
    assert_int_equal(total, 2);
    assert_int_equal(sl__test_counter(SL__CTR_DEAD_LETTERS) - before, 3);
    char want[400];
    snprintf(want, sizeof want, "parse_error:ts@%s:6", path);
    assert_string_equal(sl__test_last_dead_letter(), want);
    src_close(&r);

    /* With a job behind the context, the payload is written masked. */
    char err[256];
    sl_job *job = sl_job_new(err, sizeof err);
    assert_non_null(job);
    assert_int_equal(sl_job_set(job, "output.dir", outdir, err, sizeof err), 0);
    assert_int_equal(src_open(&r, f, kv, 1), 0);
    r.ctx.job = job;
    sl__batch_clear(b);
    while ((rc = sl__src_file.read(r.st, b, &part, r.err, sizeof r.err)) >= 0) {}
    src_close(&r);
    sl_job_stats st;
    sl_job_stats_get(job, &st);
    assert_int_equal(st.dead_letters, 3);
    sl_job_free(job);
    char dl[300];
    snprintf(dl, sizeof dl, "%s/dead-letters.jsonl", outdir);
    FILE *fp = fopen(dl, "r");
    assert_non_null(fp);
    char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, fp);
    text[n] = 0;
    fclose(fp);
    assert_null(strstr(text, "49170123456"));
    assert_non_null(strstr(text, "\"2,************,SMS_LOST,1\""));
    assert_non_null(strstr(text, "\"reason\":\"unknown_value:event_type\""));
    snprintf(want, sizeof want, "\"position\":\"%s:3\"", path);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof want, "\"source\":\"file:%s\"", path);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "wrong_field_count"));
    sl__batch_free(b);
}

/* Reads `first` rows, takes the position, reads the rest; a fresh instance
 * seeked to the position must return exactly the rest. */
static void check_seek(fx *f, const char *path, int first, int expect_total)
{
    const char *kv[] = {"path", path, NULL};
    src r;
    assert_int_equal(src_open(&r, f, kv, 1), 0);
    sl_batch *b = sl__batch_new(f->s, (uint32_t)first);
    int part;
    int rc = sl__src_file.read(r.st, b, &part, r.err, sizeof r.err);
    assert_int_equal(rc, first);
    int64_t pos;
    assert_int_equal(sl__file_source_position(r.st, 0, &pos), 0);
    assert_true(pos > 0);
    int64_t rest[64];
    int pt[64];
    sl_batch *b2 = sl__batch_new(f->s, 7);
    int n = drain(&r, b2, rest, pt, 64);
    assert_int_equal(first + n, expect_total);
    int64_t end;
    assert_int_equal(sl__file_source_position(r.st, 0, &end), 0);
    src_close(&r);

    uint64_t dl0 = sl__test_counter(SL__CTR_DEAD_LETTERS);
    src r2;
    assert_int_equal(src_open(&r2, f, kv, 1), 0);
    assert_int_equal(sl__file_source_seek(r2.st, 0, pos), 0);
    int64_t p2;
    assert_int_equal(sl__file_source_position(r2.st, 0, &p2), 0);
    assert_int_equal(p2, pos);
    int64_t again[64];
    int n2 = drain(&r2, b2, again, pt, 64);
    assert_int_equal(n2, n);
    assert_memory_equal(again, rest, (size_t)n * sizeof(int64_t));
    /* the bad line after the seek point keeps its real line number */
    assert_int_equal(sl__test_counter(SL__CTR_DEAD_LETTERS) - dl0, 1);
    char want[400];
    snprintf(want, sizeof want, "parse_error:ts@%s:11", path);
    assert_string_equal(sl__test_last_dead_letter(), want);
    /* seeking to the end reads nothing more */
    assert_int_equal(sl__file_source_seek(r2.st, 0, end), 0);
    sl__batch_clear(b2);
    assert_int_equal(sl__src_file.read(r2.st, b2, &part, r2.err, sizeof r2.err),
                     SL_EEOF);
    assert_int_equal(sl__file_source_seek(r2.st, 0, (int64_t)5 << SL__FILE_POS_SHIFT),
                     SL_EINVAL);
    src_close(&r2);
    sl__batch_free(b);
    sl__batch_free(b2);
}

static void test_position_seek(void **state)
{
    fx *f = *state;
    char text[1024] = "ts,cell_id\n";
    for (int i = 1; i <= 12; i++) {
        char line[64];
        if (i == 9)
            snprintf(line, sizeof line, "bad,%d\n", i);
        else
            snprintf(line, sizeof line, "%d,%d\r\n", 1000 + i, i);
        strcat(text, line);
        if (i == 4) strcat(text, "\n"); /* a blank line: line 6 */
    }
    char path[256];
    put(f, "plain.csv", text, path, sizeof path);
    check_seek(f, path, 3, 11);
    put(f, "packed.csv.gz", text, path, sizeof path);
    check_seek(f, path, 5, 11);
}

/* Through the vtable, as the runtime uses it: an instance reading three of
 * four partitions (parts out of order, one file gzipped, lines split across
 * read buffers) is stopped after k reads; a new instance seeked to every
 * partition's position returns exactly what the first one still had to
 * return, partition by partition. */
#define VT_MAXROWS 1000
typedef struct {
    int64_t ts[3][VT_MAXROWS];
    int n[3];
} vt_rows;

static int vt_read_into(void *st, sl_batch *b, vt_rows *out, int max_reads)
{
    int part, rc = 0, reads = 0;
    char err[256];
    while (max_reads < 0 || reads < max_reads) {
        sl__batch_clear(b);
        rc = sl__src_file.read(st, b, &part, err, sizeof err);
        if (rc < 0) break;
        reads++;
        assert_int_equal((uint32_t)rc, b->n);
        assert_true(part >= 0 && part < 3);
        for (uint32_t i = 0; i < b->n; i++) {
            assert_true(out->n[part] < VT_MAXROWS);
            out->ts[part][out->n[part]++] = i64(b, 0, i);
        }
    }
    if (max_reads < 0) assert_int_equal(rc, SL_EEOF);
    return rc;
}

static void test_vt_position_seek(void **state)
{
    fx *f = *state;
    static const struct {
        const char *name;
        int lines, bad;
    } files[] = {{"a.csv", 700, 0}, {"b.csv.gz", 500, 0}, {"c.csv", 3, 0},
                 {"d.csv", 900, 200}};
    char *text = malloc(64 * 1024), path[256];
    for (int fi = 0; fi < 4; fi++) {
        size_t len = (size_t)sprintf(text, "cell_id,ts\n");
        for (int l = 1; l <= files[fi].lines; l++) {
            if (l == files[fi].bad)
                len += (size_t)sprintf(text + len, "1,notatime\n");
            else
                len += (size_t)sprintf(text + len, "%d,%d%s\n", l,
                                       fi * 100000 + l, fi == 3 ? "\r" : "");
        }
        put(f, files[fi].name, text, path, sizeof path);
    }
    free(text);
    const char *kv[] = {"path", f->dir, "read.bytes", "4096", NULL};
    void *conf;
    char err[256];
    assert_int_equal(sl__src_file.configure(&conf, kv, f->s, err, sizeof err), 0);
    assert_int_equal(sl__src_file.partitions(conf), 4);
    assert_true(sl__src_file.position && sl__src_file.seek);
    sl__ctx ctx = tu_ctx();
    const int parts[] = {3, 0, 1}; /* index i reads file parts[i] */
    const int want_rows[] = {899, 700, 500};
    sl_batch *b = sl__batch_new(f->s, 37);
    static const int stops[] = {0, 1, 3, 10, 40, 70};
    static vt_rows first, rest, again;
    for (size_t si = 0; si < sizeof stops / sizeof stops[0]; si++) {
        memset(&first, 0, sizeof first);
        memset(&rest, 0, sizeof rest);
        memset(&again, 0, sizeof again);
        void *st, *st2;
        assert_int_equal(sl__src_file.open(&st, conf, f->s, parts, 3, &ctx,
                                           err, sizeof err), 0);
        vt_read_into(st, b, &first, stops[si]);
        int64_t pos[3];
        for (int i = 0; i < 3; i++)
            assert_int_equal(sl__src_file.position(st, i, &pos[i]), 0);
        vt_read_into(st, b, &rest, -1);
        sl__src_file.close(st);
        for (int i = 0; i < 3; i++) {
            /* nothing lost or repeated across the stop, in file order */
            int n = first.n[i] + rest.n[i];
            assert_int_equal(n, want_rows[i]);
            for (int k = 0; k < n; k++) {
                int64_t ts = k < first.n[i] ? first.ts[i][k]
                                            : rest.ts[i][k - first.n[i]];
                int line = k + 1 + (parts[i] == 3 && k + 1 >= 200);
                assert_int_equal(ts, parts[i] * 100000 + line);
            }
        }
        /* the runtime seeks right after open, before any read */
        assert_int_equal(sl__src_file.open(&st2, conf, f->s, parts, 3, &ctx,
                                           err, sizeof err), 0);
        for (int i = 2; i >= 0; i--)
            assert_int_equal(sl__src_file.seek(st2, i, pos[i]), 0);
        vt_read_into(st2, b, &again, -1);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(again.n[i], rest.n[i]);
            assert_memory_equal(again.ts[i], rest.ts[i],
                                (size_t)rest.n[i] * sizeof(int64_t));
        }
        int64_t end;
        assert_int_equal(sl__src_file.position(st2, 0, &end), 0);
        assert_true(end >= pos[0]);
        assert_int_equal(sl__src_file.position(st2, 3, &end), SL_EINVAL);
        sl__src_file.close(st2);
    }
    sl__batch_free(b);
    sl__src_file.conf_free(conf);
}

static void test_long_lines(void **state)
{
    fx *f = *state;
    size_t big = 3 * 4096 + 17;
    char *text = malloc(2 * big + 5256);
    strcpy(text, "ts,msisdn\n1,");
    size_t n = strlen(text);
    memset(text + n, '7', big);
    n += big;
    strcpy(text + n, "\n2,");
    n += 3;
    memset(text + n, '8', big + 5000);
    n += big + 5000;
    strcpy(text + n, "\n3,x");
    char path[256];
    put(f, "long.csv", text, path, sizeof path);
    free(text);
    uint64_t dl0 = sl__test_counter(SL__CTR_DEAD_LETTERS);
    const char *kv[] = {"path", path, "read.bytes", "4096",
                        "max.line.bytes", "14000", NULL};
    src r;
    assert_int_equal(src_open(&r, f, kv, 1), 0);
    sl_batch *b = sl__batch_new(f->s, 16);
    int part, rc, total = 0;
    while ((rc = sl__src_file.read(r.st, b, &part, r.err, sizeof r.err)) >= 0)
        total += rc;
    assert_int_equal(rc, SL_EEOF);
    assert_int_equal(total, 2);
    assert_int_equal(i64(b, 0, 0), 1);
    assert_int_equal(((sl_str *)b->cols[1].data)[0].len, big);
    assert_int_equal(i64(b, 0, 1), 3);
    assert_int_equal(sl__test_counter(SL__CTR_DEAD_LETTERS) - dl0, 1);
    char want[400];
    snprintf(want, sizeof want, "line_too_long@%s:3", path);
    assert_string_equal(sl__test_last_dead_letter(), want);
    src_close(&r);
    sl__batch_free(b);
}

static void test_formats_and_headers(void **state)
{
    fx *f = *state;
    char path[256];
    put(f, "a.jsonl", "{\"ts\":1,\"msisdn\":\"491701234567\"}\n\n"
                      "{\"ts\":2,\"event_type\":\"CALL_PLACED\"}\n{bad\n", path,
        sizeof path);
    const char *kv[] = {"path", path, "format", "jsonl", NULL};
    src r;
    assert_int_equal(src_open(&r, f, kv, 1), 0);
    sl_batch *b = sl__batch_new(f->s, 16);
    int part, rc, total = 0;
    while ((rc = sl__src_file.read(r.st, b, &part, r.err, sizeof r.err)) >= 0)
        total += rc;
    assert_int_equal(total, 2);
    assert_int_equal(i64(b, 0, 1), 2);
    char want[400];
    snprintf(want, sizeof want, "malformed_json@%s:4", path);
    assert_string_equal(sl__test_last_dead_letter(), want);
    src_close(&r);

    /* header=false: positional, even for a line that looks like a header */
    put(f, "h.csv", "5;4917;SMS_SENT;9\n6;4918;CALL_PLACED;8\n", path, sizeof path);
    const char *kv2[] = {"path", path, "header", "false", "delimiter", ";", NULL};
    assert_int_equal(src_open(&r, f, kv2, 1), 0);
    sl__batch_clear(b);
    total = 0;
    while ((rc = sl__src_file.read(r.st, b, &part, r.err, sizeof r.err)) >= 0)
        total += rc;
    assert_int_equal(total, 2);
    assert_int_equal(i64(b, 3, 1), 8);
    src_close(&r);
    /* header=true but the file has none: the first line is data */
    const char *kv3[] = {"path", path, "delimiter", ";", NULL};
    assert_int_equal(src_open(&r, f, kv3, 1), 0);
    sl__batch_clear(b);
    total = 0;
    while ((rc = sl__src_file.read(r.st, b, &part, r.err, sizeof r.err)) >= 0)
        total += rc;
    assert_int_equal(total, 2);
    assert_int_equal(i64(b, 0, 0), 5);
    src_close(&r);
    /* a UTF-8 byte order mark before the header is ignored */
    put(f, "bom.csv", "\xEF\xBB\xBF\"cell_id\",ts\n7,8\n", path, sizeof path);
    const char *kv4[] = {"path", path, NULL};
    assert_int_equal(src_open(&r, f, kv4, 1), 0);
    sl__batch_clear(b);
    assert_int_equal(sl__src_file.read(r.st, b, &part, r.err, sizeof r.err), 1);
    assert_int_equal(i64(b, 3, 0), 7);
    assert_int_equal(i64(b, 0, 0), 8);
    src_close(&r);
    sl__batch_free(b);
}

static uint64_t fake_now;
static uint64_t fake_clock(void) { return fake_now += 50000000; /* 50 ms */ }

static void test_follow(void **state)
{
    fx *f = *state;
    char path[256];
    put(f, "e-001.csv", "ts\n1\n2\n", path, sizeof path);
    sl__clock_fn saved = sl__clock;
    sl__clock = fake_clock;
    const char *kv[] = {"path", f->dir, "follow", "true", "poll.ms", "100", NULL};
    src r;
    assert_int_equal(src_open(&r, f, kv, -1), 0);
    assert_int_equal(sl__src_file.partitions(r.conf), 1);
    sl_batch *b = sl__batch_new(f->s, 16);
    int part, rc, total = 0;
    while ((rc = sl__src_file.read(r.st, b, &part, r.err, sizeof r.err)) > 0)
        total += rc;
    assert_int_equal(rc, SL_EAGAIN);
    assert_int_equal(total, 2);
    /* an unfinished line waits for its newline */
    FILE *fp = fopen(path, "a");
    fputs("3\n4", fp);
    fclose(fp);
    total = 0;
    for (int i = 0; i < 10; i++) {
        rc = sl__src_file.read(r.st, b, &part, r.err, sizeof r.err);
        if (rc > 0) total += rc;
    }
    assert_int_equal(total, 1);
    assert_int_equal(i64(b, 0, 2), 3);
    /* a new file: picked up by a rescan; the old file's tail then ends */
    char p2[256];
    put(f, "e-002.csv", "ts\n10\n11\n", p2, sizeof p2);
    total = 0;
    for (int i = 0; i < 20; i++) {
        rc = sl__src_file.read(r.st, b, &part, r.err, sizeof r.err);
        assert_true(rc >= 0 || rc == SL_EAGAIN);
        if (rc > 0) total += rc;
    }
    assert_int_equal(total, 3);
    assert_int_equal(i64(b, 0, 3), 4);
    assert_int_equal(i64(b, 0, 4), 10);
    assert_int_equal(i64(b, 0, 5), 11);
    int64_t pos;
    assert_int_equal(sl__file_source_position(r.st, 0, &pos), 0);
    assert_int_equal(pos >> SL__FILE_POS_SHIFT, 1);
    assert_int_equal(pos & 0xffffff, (int64_t)strlen("ts\n10\n11\n"));
    sl__clock = saved;
    src_close(&r);
    sl__batch_free(b);
}

static void test_conf_errors(void **state)
{
    fx *f = *state;
    char missing[256];
    snprintf(missing, sizeof missing, "%s/nope", f->dir);
    src r;
    const char *kv[] = {"path", missing, NULL};
    assert_int_equal(src_open(&r, f, kv, 1), SL_ENOENT);
    assert_non_null(strstr(r.err, missing));
    const char *kv2[] = {"path", f->dir, "colour", "red", NULL};
    assert_int_equal(src_open(&r, f, kv2, 1), SL_EINVAL);
    assert_non_null(strstr(r.err, "colour"));
    const char *kv3[] = {"path", f->dir, "delimiter", ";;", NULL};
    assert_int_equal(src_open(&r, f, kv3, 1), SL_EINVAL);
    assert_non_null(strstr(r.err, "delimiter"));
    const char *kv4[] = {"path", f->dir, "format", "xml", NULL};
    assert_int_equal(src_open(&r, f, kv4, 1), SL_EINVAL);
    assert_non_null(strstr(r.err, "format"));
    const char *kv5[] = {NULL};
    assert_int_equal(src_open(&r, f, kv5, 1), SL_EINVAL);
    assert_non_null(strstr(r.err, "path"));
    /* an empty directory is one partition with no data */
    const char *kv6[] = {"path", f->dir, NULL};
    assert_int_equal(src_open(&r, f, kv6, -1), 0);
    assert_int_equal(sl__src_file.partitions(r.conf), 1);
    sl_batch *b = sl__batch_new(f->s, 4);
    int part;
    assert_int_equal(sl__src_file.read(r.st, b, &part, r.err, sizeof r.err),
                     SL_EEOF);
    sl__batch_free(b);
    src_close(&r);
}

/* Random files (quotes spanning lines, CRLF, blank and bad lines, no final
 * newline) read with the smallest buffer and small batches give the same
 * rows and dead letters as one big read. */
static int read_all(const fx *f, const char *path, const char *rb, uint32_t cap,
                    int64_t *cells, sl_str *notes, char *arena, int max,
                    uint64_t *dead)
{
    const char *kv[] = {"path", path, "read.bytes", rb, NULL};
    src r;
    assert_int_equal(src_open(&r, f, kv, 1), 0);
    sl_batch *b = sl__batch_new(f->s, cap);
    int n = 0, part, rc;
    size_t used = 0;
    uint64_t d0 = sl__test_counter(SL__CTR_DEAD_LETTERS);
    for (;;) {
        sl__batch_clear(b);
        rc = sl__src_file.read(r.st, b, &part, r.err, sizeof r.err);
        if (rc < 0) break;
        for (uint32_t i = 0; i < b->n && n < max; i++, n++) {
            cells[n] = i64(b, 3, i);
            sl_str v = ((sl_str *)b->cols[1].data)[i];
            if (!b->cols[1].valid[i]) v.len = 0;
            if (v.len > 0) memcpy(arena + used, v.ptr, v.len);
            notes[n].ptr = arena + used;
            notes[n].len = v.len;
            used += v.len;
        }
    }
    assert_int_equal(rc, SL_EEOF);
    *dead = sl__test_counter(SL__CTR_DEAD_LETTERS) - d0;
    sl__batch_free(b);
    src_close(&r);
    return n;
}

static void test_chunking_property(void **state)
{
    fx *f = *state;
    uint64_t x = 12345;
    enum { MAXR = 4000 };
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap);
    len += (size_t)sprintf(text, "ts,msisdn,event_type,cell_id\n");
    /* the expectation, built here as the text is: the rows (cell_id, the
     * msisdn's text) and the dead letters */
    static int64_t ec[MAXR];
    static char en[MAXR][400];
    int ne = 0;
    uint64_t edead = 0;
    for (int i = 0; i < 3000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const char *eol = (x & 1) ? "\r\n" : "\n";
        switch ((x >> 8) % 8) {
        case 0: len += (size_t)sprintf(text + len, "%s", eol); break;
        case 1:
            len += (size_t)sprintf(text + len, "%d,x,SMS_LOST,%d%s", i, i, eol);
            edead++;
            break;
        case 2:
            len += (size_t)sprintf(text + len, "%d,\"multi%s line, \"\"q\"\"\",SMS_SENT,%d%s",
                                   i, eol, i, eol);
            ec[ne] = i;
            snprintf(en[ne++], sizeof en[0], "multi%s line, \"q\"", eol);
            break;
        default: {
            int pad = (int)((x >> 20) % 300);
            ec[ne] = i;
            snprintf(en[ne++], sizeof en[0], "%.*s", pad,
                     "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"
                     "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"
                     "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"
                     "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"
                     "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"
                     "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz");
            len += (size_t)sprintf(text + len, "%d,%.*s,CALL_PLACED,%d%s", i, pad,
                                   "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"
                                   "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"
                                   "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"
                                   "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"
                                   "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"
                                   "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
                                   i, eol);
        }
        }
    }
    len += (size_t)sprintf(text + len, "9999,last,SMS_SENT,9999");
    ec[ne] = 9999;
    snprintf(en[ne++], sizeof en[0], "last");
    char path[256];
    put(f, "r.csv", text, path, sizeof path);
    free(text);
    static int64_t c1[MAXR], c2[MAXR];
    static sl_str n1[MAXR], n2[MAXR];
    char *a1 = malloc(cap), *a2 = malloc(cap);
    uint64_t d1, d2;
    int r1 = read_all(f, path, "1048576", 1024, c1, n1, a1, MAXR, &d1);
    int r2 = read_all(f, path, "4096", 7, c2, n2, a2, MAXR, &d2);
    assert_true(r1 > 1500);
    assert_true(d1 > 100);
    assert_int_equal(r1, r2);
    assert_int_equal(d1, d2);
    for (int i = 0; i < r1; i++) {
        assert_int_equal(c1[i], c2[i]);
        assert_int_equal(n1[i].len, n2[i].len);
        assert_memory_equal(n1[i].ptr, n2[i].ptr, n1[i].len);
    }
    assert_int_equal(c1[r1 - 1], 9999);
    /* and both equal the generator's expectation, row by row */
    assert_int_equal(r1, ne);
    assert_int_equal(d1, edead);
    for (int i = 0; i < ne; i++) {
        assert_int_equal(c1[i], ec[i]);
        assert_int_equal(n1[i].len, strlen(en[i]));
        assert_memory_equal(n1[i].ptr, en[i], n1[i].len);
    }
    free(a1);
    free(a2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_directory_order_and_gz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_instances_split_partitions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_position_seek, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vt_position_seek, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_formats_and_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_follow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conf_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunking_property, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
