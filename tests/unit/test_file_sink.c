/* test_file_sink.c — the "file" and "stdout" sinks and their encoders: CSV
 * quoting, JSON escaping (control characters, UTF-8, invalid bytes), the
 * atomic rename of <path>.inprogress at close, the table format,
 * configuration errors, and the epoch protocol: the file sink's snapshot,
 * restore and recovery after a crash (close without commit, or kill -9),
 * and stdout's flush on precommit and commit. */
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/snap.h"
#include "io/encode.h"

extern const sl__sink_vt sl__sink_file, sl__sink_stdout;

/* ---- fixtures ------------------------------------------------------------ */
typedef struct {
    char dir[64];
    char path[128], tmp[160];
    sl_schema *schema;
} fx;

enum { C_TS, C_S, C_N, C_X, C_B, NCOLS };

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[512];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_rf(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/sl_file_sink_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/out/result.csv", f->dir);
    snprintf(f->tmp, sizeof f->tmp, "%s.inprogress", f->path);
    f->schema = sl_schema_new();
    assert_int_equal(sl_schema_add(f->schema, "ts", SL_TIMESTAMP), C_TS);
    assert_int_equal(sl_schema_add(f->schema, "s", SL_STRING), C_S);
    assert_int_equal(sl_schema_add(f->schema, "n", SL_INT64), C_N);
    /* a name that needs quoting in CSV and escaping in JSON */
    assert_int_equal(sl_schema_add(f->schema, "x \"f\"", SL_FLOAT64), C_X);
    assert_int_equal(sl_schema_add(f->schema, "b", SL_BOOL), C_B);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    rm_rf(f->dir);
    sl_schema_free(f->schema);
    free(f);
    return 0;
}

static void set_row(sl_batch *b, uint32_t r, int64_t ts, const char *s,
                    size_t slen, int64_t n, double x, bool v)
{
    ((int64_t *)b->cols[C_TS].data)[r] = ts;
    if (s)
        assert_int_equal(sl_batch_set_str(b, C_S, r, s, slen), 0);
    else
        b->cols[C_S].valid[r] = 0;
    ((int64_t *)b->cols[C_N].data)[r] = n;
    ((double *)b->cols[C_X].data)[r] = x;
    ((uint8_t *)b->cols[C_B].data)[r] = v;
    if (r >= b->n)
        b->n = r + 1;
}
#define S(lit) lit, sizeof lit - 1

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void *open_sink(const sl__sink_vt *vt, const sl_schema *schema,
                       const char *const *kv, void **conf)
{
    char err[512] = "";
    void *st = NULL;
    sl__ctx ctx = tu_ctx();
    ctx.delivery = SL__AT_LEAST_ONCE; /* the exactly-once tests say so */
    if (vt->configure(conf, kv, schema, err, sizeof err) != 0)
        fail_msg("configure: %s", err);
    if (vt->open(&st, *conf, schema, &ctx, err, sizeof err) != 0)
        fail_msg("open: %s", err);
    return st;
}

static void write_flush(const sl__sink_vt *vt, void *st, const sl_batch *b)
{
    char err[512] = "";
    if (vt->write(st, b, err, sizeof err) != 0)
        fail_msg("write: %s", err);
    if (vt->flush(st, err, sizeof err) != 0)
        fail_msg("flush: %s", err);
}

/* Rows that exercise quoting, escaping, NULLs and canaries. */
static sl_batch *tricky_batch(const sl_schema *schema)
{
    sl_batch *b = sl__batch_new(schema, 16);
    set_row(b, 0, 1700000000000, S("plain"), 1, 0.1, true);
    set_row(b, 1, -5, S("a,b"), -2, 3.0, false);
    set_row(b, 2, 0, S("say \"hi\""), INT64_MIN, 1e300, true);
    set_row(b, 3, 1, S("line1\nline2\r"), 0, NAN, false);
    b->cols[C_N].valid[3] = 0;
    b->cols[C_B].valid[3] = 0;
    set_row(b, 4, 0, S(""), 5, -0.5, false); /* "" is not NULL */
    b->cols[C_TS].valid[4] = 0;
    set_row(b, 5, 9, S("canary"), 9, 9, true);
    b->kind[5] = SL_KIND_CANARY;
    set_row(b, 6, 2, NULL, 0, INT64_MAX, 1.0 / 3, true);
    set_row(b, 7, 3, S("ctl\x01\x1f\t\b\f\x7f q\"b\\c é€😀"), 7, -INFINITY,
            true);
    set_row(b, 8, 4, S("bad\xff|\xc3(|\xed\xa0\x80|\xc0\xaf|\xf4\x90\x80\x80"),
            8, 1e-7, true);
    return b;
}

/* ---- tests --------------------------------------------------------------- */
static void test_csv_quoting_and_atomic_rename(void **state)
{
    fx *f = *state;
    void *conf = NULL;
    const char *kv[] = {"path", f->path, NULL}; /* csv, header by default */
    void *st = open_sink(&sl__sink_file, f->schema, kv, &conf);
    sl_batch *b = tricky_batch(f->schema);
    write_flush(&sl__sink_file, st, b);

    /* Before close only the .inprogress file exists, with every row. */
    assert_true(exists(f->tmp));
    assert_false(exists(f->path));
    const char *want =
        "ts,s,n,\"x \"\"f\"\"\",b\n"
        "1700000000000,plain,1,0.1,true\n"
        "-5,\"a,b\",-2,3.0,false\n"
        "0,\"say \"\"hi\"\"\",-9223372036854775808,1e+300,true\n"
        "1,\"line1\nline2\r\",,NaN,\n"
        ",\"\",5,-0.5,false\n"
        "2,,9223372036854775807,0.3333333333333333,true\n"
        "3,\"ctl\x01\x1f\t\b\f\x7f q\"\"b\\c é€😀\",7,-Infinity,true\n"
        "4,bad\xff|\xc3(|\xed\xa0\x80|\xc0\xaf|\xf4\x90\x80\x80,8,1e-07,"
        "true\n";
    char *got = slurp(f->tmp);
    assert_string_equal(got, want);
    free(got);

    sl__sink_file.close(st);
    assert_false(exists(f->tmp));
    got = slurp(f->path);
    assert_string_equal(got, want);
    free(got);
    sl__sink_file.conf_free(conf);
    sl__batch_free(b);
}

static void test_jsonl_escaping(void **state)
{
    fx *f = *state;
    void *conf = NULL;
    const char *kv[] = {"path", f->path, "format", "jsonl", NULL};
    void *st = open_sink(&sl__sink_file, f->schema, kv, &conf);
    sl_batch *b = tricky_batch(f->schema);
    write_flush(&sl__sink_file, st, b);
    sl__sink_file.close(st);
    sl__sink_file.conf_free(conf);

    const char *want =
        "{\"ts\":1700000000000,\"s\":\"plain\",\"n\":1,\"x \\\"f\\\"\":0.1,"
        "\"b\":true}\n"
        "{\"ts\":-5,\"s\":\"a,b\",\"n\":-2,\"x \\\"f\\\"\":3.0,\"b\":false}\n"
        "{\"ts\":0,\"s\":\"say \\\"hi\\\"\",\"n\":-9223372036854775808,"
        "\"x \\\"f\\\"\":1e+300,\"b\":true}\n"
        "{\"ts\":1,\"s\":\"line1\\nline2\\r\",\"n\":null,"
        "\"x \\\"f\\\"\":null,\"b\":null}\n"
        "{\"ts\":null,\"s\":\"\",\"n\":5,\"x \\\"f\\\"\":-0.5,\"b\":false}\n"
        "{\"ts\":2,\"s\":null,\"n\":9223372036854775807,"
        "\"x \\\"f\\\"\":0.3333333333333333,\"b\":true}\n"
        "{\"ts\":3,\"s\":\"ctl\\u0001\\u001f\\t\\b\\f\x7f q\\\"b\\\\c é€😀\","
        "\"n\":7,\"x \\\"f\\\"\":null,\"b\":true}\n"
        "{\"ts\":4,\"s\":\"bad\\ufffd|\\ufffd(|\\ufffd\\ufffd\\ufffd|"
        "\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd\\ufffd\",\"n\":8,"
        "\"x \\\"f\\\"\":1e-07,\"b\":true}\n";
    char *got = slurp(f->path);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
    sl__batch_free(b);
}

static void test_float_round_trip(void **state)
{
    (void)state;
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "x", SL_FLOAT64);
    sl_batch *b = sl__batch_new(s, 1);
    b->n = 1;
    const double vals[] = {1.0 / 3, 0.1 + 0.2, 5e-324, 1.7976931348623157e308,
                           -0.0, 123456789012345678.0, 2.5};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        char buf[64];
        ((double *)b->cols[0].data)[0] = vals[i];
        size_t n = sl__encode_csv_row(b, 0, ',', buf, sizeof buf);
        assert_true(n < sizeof buf);
        buf[n] = '\0';
        assert_true(strtod(buf, NULL) == vals[i]);
        assert_non_null(strpbrk(buf, ".e")); /* always reads as a float */
    }
    sl__batch_free(b);
    sl_schema_free(s);
}

static void test_encoder_snprintf_semantics(void **state)
{
    fx *f = *state;
    sl_batch *b = tricky_batch(f->schema);
    char full[256], small[8];
    size_t n = sl__encode_jsonl_row(b, 2, full, sizeof full);
    assert_true(n < sizeof full);
    memset(small, 'Z', sizeof small);
    assert_int_equal(sl__encode_jsonl_row(b, 2, small, sizeof small), n);
    char exact[256];
    assert_int_equal(sl__encode_jsonl_row(b, 2, exact, n), n);
    assert_memory_equal(exact, full, n);
    assert_int_equal(sl__encode_csv_row(b, 1, ';', full, sizeof full), 20);
    assert_memory_equal(full, "-5;a,b;-2;3.0;false\n", 20);
    assert_int_equal(sl__encode_json_str(S("\x01"), full, sizeof full), 8);
    assert_memory_equal(full, "\"\\u0001\"", 8);
    sl__batch_free(b);
}

static void test_rename_replaces_old_file_only_at_close(void **state)
{
    fx *f = *state;
    void *conf = NULL;
    char old[200];
    snprintf(old, sizeof old, "%s/out", f->dir);
    mkdir(old, 0777);
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    fputs("old\n", fp);
    fclose(fp);

    const char *kv[] = {"path", f->path, "header", "false", "delimiter",
                        "\\t", NULL};
    void *st = open_sink(&sl__sink_file, f->schema, kv, &conf);
    sl_batch *b = sl__batch_new(f->schema, 2);
    set_row(b, 0, 10, S("a b"), 1, 2.0, true);
    write_flush(&sl__sink_file, st, b);

    /* A reader still sees the complete old file. */
    char *got = slurp(f->path);
    assert_string_equal(got, "old\n");
    free(got);
    got = slurp(f->tmp);
    assert_string_equal(got, "10\ta b\t1\t2.0\ttrue\n");
    free(got);

    sl__sink_file.close(st);
    assert_false(exists(f->tmp));
    got = slurp(f->path);
    assert_string_equal(got, "10\ta b\t1\t2.0\ttrue\n");
    free(got);
    sl__sink_file.conf_free(conf);
    sl__batch_free(b);
}

/* A failed (or cancelled) job must not publish its partial output. */
static void test_failed_job_leaves_inprogress(void **state)
{
    fx *f = *state;
    char err[512] = "";
    void *conf = NULL, *st = NULL;
    sl_job *job = sl_job_new(err, sizeof err);
    assert_non_null(job);
    sl__ctx ctx = tu_ctx();
    ctx.job = job;
    ctx.delivery = SL__AT_LEAST_ONCE;
    const char *kv[] = {"path", f->path, NULL};
    assert_int_equal(sl__sink_file.configure(&conf, kv, f->schema, err,
                                             sizeof err), 0);
    assert_int_equal(sl__sink_file.open(&st, conf, f->schema, &ctx, err,
                                        sizeof err), 0);
    sl_batch *b = sl__batch_new(f->schema, 2);
    set_row(b, 0, 10, S("x"), 1, 2.0, true);
    write_flush(&sl__sink_file, st, b);
    sl__job_fail(job, SL_EIO, "source file: disk on fire");
    sl__sink_file.close(st);
    assert_true(exists(f->tmp));
    assert_false(exists(f->path));
    sl__sink_file.conf_free(conf);
    sl__batch_free(b);
    sl_job_free(job);
}

/* Rows larger than the 64 KiB output buffer, and table cells cut to 60. */
static void test_huge_row(void **state)
{
    fx *f = *state;
    void *conf = NULL;
    size_t big = 200000;
    char *s = malloc(big);
    for (size_t i = 0; i < big; i++)
        s[i] = (char)('a' + i % 26);
    s[big / 2] = '"';
    const char *kv[] = {"path", f->path, "header", "false", NULL};
    void *st = open_sink(&sl__sink_file, f->schema, kv, &conf);
    sl_batch *b = sl__batch_new(f->schema, 2);
    set_row(b, 0, 1, s, big, 2, 0.5, true);
    set_row(b, 1, 3, S("small"), 4, 0.5, true);
    write_flush(&sl__sink_file, st, b);
    sl__sink_file.close(st);
    sl__sink_file.conf_free(conf);

    FILE *fp = fopen(f->path, "rb");
    assert_non_null(fp);
    char *got = malloc(big * 2);
    size_t n = fread(got, 1, big * 2, fp);
    fclose(fp);
    /* 1,"<big with the quote doubled>",2,0.5,true\n3,small,4,0.5,true\n */
    assert_int_equal(n, 3 + big + 1 + 1 + 12 + 19);
    assert_memory_equal(got, "1,\"", 3);
    assert_memory_equal(got + 3, s, big / 2 + 1);
    assert_memory_equal(got + 3 + big / 2 + 1, s + big / 2, big - big / 2);
    assert_memory_equal(got + 3 + big + 1, "\",2,0.5,true\n3,small,4,0.5,true\n",
                        n - (3 + big + 1));
    free(got);

    /* the table cuts the cell: 59 code points and an ellipsis */
    char cell[300];
    size_t len = sl__encode_text_cell(b, 0, C_S, cell, sizeof cell);
    assert_int_equal(len, big);
    free(s);
    sl__batch_free(b);
}

/* Runs fn with standard output captured into a file; returns the text. */
static char *capture_stdout(fx *f, void (*fn)(fx *))
{
    char cap[200];
    snprintf(cap, sizeof cap, "%s/stdout.txt", f->dir);
    fflush(stdout);
    int saved = dup(1);
    int fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 1);
    close(fd);
    fn(f);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    return slurp(cap);
}

static void run_table(fx *f)
{
    (void)f;
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "window_start", SL_TIMESTAMP);
    sl_schema_add(s, "area", SL_STRING);
    sl_schema_add(s, "events", SL_INT64);
    void *conf = NULL;
    const char *kv[] = {NULL};
    void *st = open_sink(&sl__sink_stdout, s, kv, &conf);
    sl_batch *b = sl__batch_new(s, 4);
    b->n = 2;
    ((int64_t *)b->cols[0].data)[0] = 0;
    sl_batch_set_str(b, 1, 0, S("north"));
    ((int64_t *)b->cols[2].data)[0] = 5;
    ((int64_t *)b->cols[0].data)[1] = 60000;
    sl_batch_set_str(b, 1, 1, S("é-south"));
    ((int64_t *)b->cols[2].data)[1] = 12345;
    write_flush(&sl__sink_stdout, st, b);
    sl__batch_clear(b);
    b->n = 1; /* a wider value: the header is printed again */
    ((int64_t *)b->cols[0].data)[0] = 120000;
    sl_batch_set_str(b, 1, 0, S("a\tlong area"));
    b->cols[2].valid[0] = 0;
    write_flush(&sl__sink_stdout, st, b);
    sl__batch_clear(b);
    b->n = 1; /* wider than 60 code points: cut, and ends with an ellipsis */
    char wide[200] = "";
    for (int i = 0; i < 70; i++)
        strcat(wide, i % 2 ? "é" : "z");
    ((int64_t *)b->cols[0].data)[0] = -1;
    sl_batch_set_str(b, 1, 0, wide, strlen(wide));
    ((int64_t *)b->cols[2].data)[0] = 1;
    write_flush(&sl__sink_stdout, st, b);
    sl__sink_stdout.close(st);
    sl__sink_stdout.conf_free(conf);
    sl__batch_free(b);
    sl_schema_free(s);
}

static void test_stdout_table(void **state)
{
    fx *f = *state;
    char *got = capture_stdout(f, run_table);
    const char *want =
        "window_start             | area    | events\n"
        "-------------------------+---------+-------\n"
        "1970-01-01T00:00:00.000Z | north   |      5\n"
        "1970-01-01T00:01:00.000Z | é-south |  12345\n"
        "window_start             | area         | events\n"
        "-------------------------+--------------+-------\n"
        "1970-01-01T00:02:00.000Z | a\\tlong area |   NULL\n"
        "window_start             | area                                 "
        "                        | events\n"
        "-------------------------+--------------------------------------"
        "------------------------+-------\n"
        "1969-12-31T23:59:59.999Z | zézézézézézézézézézézézézézézézézézéz"
        "ézézézézézézézézézézéz… |      1\n";
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void run_stdout_csv(fx *f)
{
    void *conf = NULL;
    const char *kv[] = {"format", "csv", "delimiter", ";", NULL};
    void *st = open_sink(&sl__sink_stdout, f->schema, kv, &conf);
    sl_batch *b = sl__batch_new(f->schema, 2);
    set_row(b, 0, 7, S("a;b"), 1, 0.25, false);
    write_flush(&sl__sink_stdout, st, b);
    sl__sink_stdout.close(st);
    sl__sink_stdout.conf_free(conf);
    sl__batch_free(b);
}

static void test_stdout_csv(void **state)
{
    fx *f = *state;
    char *got = capture_stdout(f, run_stdout_csv);
    assert_string_equal(got, "ts;s;n;\"x \"\"f\"\"\";b\n"
                             "7;\"a;b\";1;0.25;false\n");
    free(got);
}

static void test_conf_errors(void **state)
{
    fx *f = *state;
    char err[512] = "";
    void *conf = NULL;
    const char *unknown[] = {"path", f->path, "fromat", "csv", NULL};
    assert_int_equal(sl__sink_file.configure(&conf, unknown, f->schema, err,
                                             sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "'fromat'"));
    const char *nopath[] = {"format", "csv", NULL};
    assert_int_equal(sl__sink_file.configure(&conf, nopath, f->schema, err,
                                             sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "'path'"));
    const char *table[] = {"path", f->path, "format", "table", NULL};
    assert_int_equal(sl__sink_file.configure(&conf, table, f->schema, err,
                                             sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "'format'"));
    const char *delim[] = {"path", f->path, "delimiter", "ab", NULL};
    assert_int_equal(sl__sink_file.configure(&conf, delim, f->schema, err,
                                             sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "'delimiter'"));
    const char *delim2[] = {"format", "csv", "delimiter", "-", NULL};
    assert_int_equal(sl__sink_stdout.configure(&conf, delim2, f->schema, err,
                                               sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "'delimiter'"));
    const char *spath[] = {"path", "x", NULL};
    assert_int_equal(sl__sink_stdout.configure(&conf, spath, f->schema, err,
                                               sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "'path'"));
    assert_null(conf);
}

/* ---- the epoch protocol -------------------------------------------------- */
/* A snapshot writer that keeps the one section the file sink writes. */
typedef struct {
    sl__snap_writer w;
    int n;
    int32_t kg;
    unsigned char data[256];
    size_t len;
} snapcap;

static int cap_put(sl__snap_writer *w, int32_t kg, const void *data,
                   size_t len)
{
    snapcap *c = (snapcap *)w;
    assert_true(len <= sizeof c->data);
    c->n++;
    c->kg = kg;
    memcpy(c->data, data, len);
    c->len = len;
    return 0;
}

static void must(int rc, const char *what, const char *err)
{
    if (rc)
        fail_msg("%s: %s (%s)", what, err, sl_strerror(rc));
}

static void *open_eo(const fx *f, const char *path, const char *const *kv,
                     void **conf)
{
    char err[512] = "";
    void *st = NULL;
    const char *def[] = {"path", path, NULL};
    sl__ctx ctx = tu_ctx();
    ctx.delivery = SL__EXACTLY_ONCE;
    ctx.job_name = "j1";
    must(sl__sink_file.configure(conf, kv ? kv : def, f->schema, err,
                                 sizeof err), "configure", err);
    must(sl__sink_file.open(&st, *conf, f->schema, &ctx, err, sizeof err),
         "open", err);
    return st;
}

static void close_file(void *conf, void *st)
{
    sl__sink_file.close(st);
    sl__sink_file.conf_free(conf);
}

/* The rows of epoch e, the same in every run; a poisoned epoch stands for
 * what a crashed run wrote in an epoch that then aborted. */
static void write_epoch(const fx *f, void *st, uint64_t e, bool poison)
{
    char err[512] = "";
    char s[32];
    sl_batch *b = sl__batch_new(f->schema, 4);
    for (uint32_t i = 0; i < 3; i++) {
        snprintf(s, sizeof s, "%s-%llu-%u", poison ? "POISON" : "e",
                 (unsigned long long)e, i);
        set_row(b, i, (int64_t)(e * 100 + i), s, strlen(s), (int64_t)e,
                (double)e + i / 2.0, i % 2);
    }
    must(sl__sink_file.write(st, b, err, sizeof err), "write", err);
    sl__batch_free(b);
}

/* precommit(e) and the snapshot that follows it. */
static void precommit_snap(void *st, uint64_t e, snapcap *snap)
{
    char err[512] = "";
    snapcap local;
    if (!snap)
        snap = &local;
    memset(snap, 0, sizeof *snap);
    snap->w.put = cap_put;
    must(sl__sink_file.precommit(st, e, err, sizeof err), "precommit", err);
    must(sl__sink_file.snapshot(st, &snap->w), "snapshot", "");
    assert_int_equal(snap->n, 1);
    assert_int_equal(snap->kg, -1);
}

static void commit(void *st, uint64_t e)
{
    char err[512] = "";
    must(sl__sink_file.commit(st, e, err, sizeof err), "commit", err);
}

static void restore_recover(void *st, const snapcap *snap, uint64_t e)
{
    char err[512] = "";
    must(sl__sink_file.restore(st, -1, snap->data, snap->len), "restore",
         "");
    must(sl__sink_file.recover(st, e, err, sizeof err), "recover", err);
}

enum { NEPOCHS = 4 };

/* Epochs from..NEPOCHS, commit(e) late after precommit(e + 1), and the
 * end of input committing the last. */
static void run_epochs(const fx *f, void *st, uint64_t from)
{
    for (uint64_t e = from; e <= NEPOCHS; e++) {
        write_epoch(f, st, e, false);
        precommit_snap(st, e, NULL);
        if (e > from)
            commit(st, e - 1);
    }
    commit(st, NEPOCHS);
}

/* The file a run without failures publishes. */
static char *reference(const fx *f)
{
    char path[200];
    void *conf;
    snprintf(path, sizeof path, "%s/ref.csv", f->dir);
    void *st = open_eo(f, path, NULL, &conf);
    run_epochs(f, st, 1);
    close_file(conf, st);
    char *ref = slurp(path);
    assert_non_null(ref);
    assert_non_null(strstr(ref, "ts,s,n,"));
    assert_non_null(strstr(ref, "e-4-2"));
    return ref;
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* A crashed run: epochs 1..3 precommitted with snapshots snaps[1..3],
 * commits up to 2 (commit(3) lost), then a poisoned epoch 4 written and
 * flushed, and close without a commit. <path> must not appear. */
static void crashed_run(const fx *f, snapcap snaps[4])
{
    char err[512] = "";
    void *conf;
    void *st = open_eo(f, f->path, NULL, &conf);
    for (uint64_t e = 1; e <= 3; e++) {
        write_epoch(f, st, e, false);
        precommit_snap(st, e, &snaps[e]);
        if (e > 1)
            commit(st, e - 1);
    }
    write_epoch(f, st, 4, true);
    must(sl__sink_file.flush(st, err, sizeof err), "flush", err);
    close_file(conf, st);
    assert_false(exists(f->path));
    char *got = slurp(f->tmp);
    assert_non_null(strstr(got, "POISON")); /* really in the file */
    free(got);
}

/* Precommit makes rows durable in .inprogress only; <path> appears at
 * close, once the last epoch is committed. */
static void test_eo_publish_at_close_after_commit(void **state)
{
    fx *f = *state;
    char *ref = reference(f);
    void *conf;
    void *st = open_eo(f, f->path, NULL, &conf);
    run_epochs(f, st, 1);
    commit(st, NEPOCHS); /* repeated: harmless */
    commit(st, 2);
    assert_false(exists(f->path));
    char *got = slurp(f->tmp);
    assert_string_equal(got, ref);
    free(got);
    close_file(conf, st);
    assert_false(exists(f->tmp));
    got = slurp(f->path);
    assert_string_equal(got, ref);
    free(got);
    free(ref);
    assert_true(sl__sink_file.exactly_once);
}

/* Close without the final commit, or with rows after the last precommit,
 * is a crash: nothing is published. */
static void test_eo_close_without_commit_publishes_nothing(void **state)
{
    fx *f = *state;
    char err[512] = "";
    void *conf, *st;
    st = open_eo(f, f->path, NULL, &conf);
    write_epoch(f, st, 1, false);
    precommit_snap(st, 1, NULL);
    close_file(conf, st);
    assert_false(exists(f->path));
    assert_true(exists(f->tmp));

    st = open_eo(f, f->path, NULL, &conf);
    write_epoch(f, st, 1, false);
    precommit_snap(st, 1, NULL);
    commit(st, 1);
    write_epoch(f, st, 2, false);
    must(sl__sink_file.flush(st, err, sizeof err), "flush", err);
    close_file(conf, st);
    assert_false(exists(f->path));

    /* Protocol errors are refused. */
    st = open_eo(f, f->path, NULL, &conf);
    assert_int_equal(sl__sink_file.commit(st, 1, err, sizeof err),
                     SL_ESTATE);
    precommit_snap(st, 3, NULL);
    assert_int_equal(sl__sink_file.precommit(st, 3, err, sizeof err),
                     SL_ESTATE);
    assert_non_null(strstr(err, "precommit(3)"));
    close_file(conf, st);
    assert_false(exists(f->path));
}

/* Restart from the newest complete checkpoint (3): the file is cut back to
 * epoch 3's length, the poisoned rows vanish, the replay of epoch 4 ends in
 * the reference file. */
static void test_eo_crash_restore_latest(void **state)
{
    fx *f = *state;
    char *ref = reference(f);
    snapcap snaps[4];
    crashed_run(f, snaps);

    void *conf;
    void *st = open_eo(f, f->path, NULL, &conf);
    restore_recover(st, &snaps[3], 3);
    char *got = slurp(f->tmp);
    assert_null(strstr(got, "POISON"));
    assert_non_null(strstr(got, "e-3-2"));
    assert_null(strstr(got, "e-4-0"));
    free(got);
    run_epochs(f, st, 4);
    close_file(conf, st);
    got = slurp(f->path);
    assert_string_equal(got, ref);
    assert_false(exists(f->tmp));
    free(got);
    free(ref);
}

/* Restart from checkpoint 2 (3 never completed): epoch 3's precommitted
 * rows go too, and are replayed once. */
static void test_eo_crash_restore_older(void **state)
{
    fx *f = *state;
    char *ref = reference(f);
    snapcap snaps[4];
    crashed_run(f, snaps);
    void *conf;
    void *st = open_eo(f, f->path, NULL, &conf);
    restore_recover(st, &snaps[2], 2);
    run_epochs(f, st, 3);
    close_file(conf, st);
    char *got = slurp(f->path);
    assert_string_equal(got, ref);
    free(got);
    free(ref);
}

/* A run that does not begin with restore() starts the file afresh, also
 * when the runtime announces it with recover(0) (checkpoint 0 being the
 * empty start). */
static void test_eo_new_run_starts_afresh(void **state)
{
    fx *f = *state;
    char *ref = reference(f);
    char err[512] = "";
    snapcap snaps[4];
    for (int zero = 0; zero <= 1; zero++) {
        crashed_run(f, snaps);
        void *conf;
        void *st = open_eo(f, f->path, NULL, &conf);
        if (zero)
            must(sl__sink_file.recover(st, 0, err, sizeof err), "recover",
                 err);
        run_epochs(f, st, 1);
        close_file(conf, st);
        char *got = slurp(f->path);
        assert_string_equal(got, ref);
        free(got);
        unlink(f->path);
    }
    free(ref);
}

/* A real crash: a child killed with SIGKILL after writing poisoned rows
 * past its last checkpoint; its snapshot of epoch 3 reaches the parent
 * through a file, as it would through the checkpoint store. */
static void test_eo_kill9(void **state)
{
    fx *f = *state;
    char *ref = reference(f);
    char snap_path[200];
    snprintf(snap_path, sizeof snap_path, "%s/snap3", f->dir);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* No cmocka asserts here: failures exit instead of dying. */
        char err[512];
        void *conf, *st;
        const char *kv[] = {"path", f->path, NULL};
        sl__ctx ctx = tu_ctx();
        snapcap snap;
        if (sl__sink_file.configure(&conf, kv, f->schema, err, sizeof err) ||
            sl__sink_file.open(&st, conf, f->schema, &ctx, err, sizeof err))
            _exit(2);
        for (uint64_t e = 1; e <= 4; e++) {
            sl_batch *b = sl__batch_new(f->schema, 4);
            for (uint32_t i = 0; i < 3; i++) {
                char s[32];
                snprintf(s, sizeof s, "%s-%llu-%u", e == 4 ? "POISON" : "e",
                         (unsigned long long)e, i);
                set_row(b, i, (int64_t)(e * 100 + i), s, strlen(s),
                        (int64_t)e, (double)e + i / 2.0, i % 2);
            }
            if (sl__sink_file.write(st, b, err, sizeof err) ||
                sl__sink_file.flush(st, err, sizeof err))
                _exit(3);
            if (e == 4)
                raise(SIGKILL);
            memset(&snap, 0, sizeof snap);
            snap.w.put = cap_put;
            if (sl__sink_file.precommit(st, e, err, sizeof err) ||
                sl__sink_file.snapshot(st, &snap.w))
                _exit(4);
            FILE *fp = fopen(snap_path, "wb");
            if (!fp || fwrite(snap.data, 1, snap.len, fp) != snap.len ||
                fclose(fp))
                _exit(5);
            sl__batch_free(b);
        }
        _exit(6);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_false(exists(f->path));

    snapcap snap = {.len = 0};
    FILE *fp = fopen(snap_path, "rb");
    assert_non_null(fp);
    snap.len = fread(snap.data, 1, sizeof snap.data, fp);
    fclose(fp);
    void *conf;
    void *st = open_eo(f, f->path, NULL, &conf);
    restore_recover(st, &snap, 3);
    run_epochs(f, st, 4);
    close_file(conf, st);
    char *got = slurp(f->path);
    assert_string_equal(got, ref);
    free(got);
    free(ref);
}

/* Restore refuses a missing or shorter .inprogress, a malformed snapshot,
 * a keyed section and a changed format; recover repeats the reason, and
 * refuses to run without restored state or for another epoch. */
static void test_eo_restore_errors(void **state)
{
    fx *f = *state;
    char err[1024] = "";
    snapcap snaps[4];
    void *conf, *st;
    crashed_run(f, snaps);
    char *saved = slurp(f->tmp);
    size_t saved_len = strlen(saved);

    unlink(f->tmp);
    st = open_eo(f, f->path, NULL, &conf);
    assert_int_equal(sl__sink_file.restore(st, -1, snaps[3].data,
                                           snaps[3].len), SL_ECORRUPT);
    assert_int_equal(sl__sink_file.recover(st, 3, err, sizeof err),
                     SL_ECORRUPT);
    assert_non_null(strstr(err, "is missing"));
    assert_non_null(strstr(err, f->tmp));
    close_file(conf, st);
    assert_false(exists(f->path));
    assert_false(exists(f->tmp)); /* the empty file open made is gone */

    FILE *fp = fopen(f->tmp, "wb");
    fwrite(saved, 1, saved_len, fp);
    fclose(fp);
    long long need = file_size(f->tmp);
    assert_int_equal(truncate(f->tmp, 20), 0);
    st = open_eo(f, f->path, NULL, &conf);
    assert_int_equal(sl__sink_file.restore(st, -1, snaps[3].data,
                                           snaps[3].len), SL_ECORRUPT);
    assert_int_equal(sl__sink_file.recover(st, 3, err, sizeof err),
                     SL_ECORRUPT);
    assert_non_null(strstr(err, "holds 20 bytes, fewer than"));
    close_file(conf, st);
    assert_int_equal(file_size(f->tmp), 20); /* left as found */
    assert_true(need > 20);

    st = open_eo(f, f->path, NULL, &conf);
    assert_int_equal(sl__sink_file.restore(st, -1, snaps[1].data,
                                           snaps[1].len - 1), SL_ECORRUPT);
    close_file(conf, st);
    st = open_eo(f, f->path, NULL, &conf);
    assert_int_equal(sl__sink_file.restore(st, 3, snaps[1].data,
                                           snaps[1].len), SL_ECORRUPT);
    close_file(conf, st);
    const char *jsonl[] = {"path", f->path, "format", "jsonl", NULL};
    st = open_eo(f, f->path, jsonl, &conf);
    assert_int_equal(sl__sink_file.restore(st, -1, snaps[1].data,
                                           snaps[1].len), SL_EINVAL);
    assert_int_equal(sl__sink_file.recover(st, 1, err, sizeof err),
                     SL_EINVAL);
    assert_non_null(strstr(err, "'format'"));
    close_file(conf, st);

    st = open_eo(f, f->path, NULL, &conf);
    assert_int_equal(sl__sink_file.recover(st, 1, err, sizeof err),
                     SL_ECORRUPT);
    assert_non_null(strstr(err, "without restored state"));
    close_file(conf, st);
    fp = fopen(f->tmp, "wb");
    fwrite(saved, 1, saved_len, fp);
    fclose(fp);
    st = open_eo(f, f->path, NULL, &conf);
    must(sl__sink_file.restore(st, -1, snaps[1].data, snaps[1].len),
         "restore", "");
    assert_int_equal(sl__sink_file.recover(st, 2, err, sizeof err),
                     SL_ECORRUPT);
    close_file(conf, st);
    assert_false(exists(f->path));
    free(saved);
}

/* The crash came after the final rename: <path> is complete and the
 * .inprogress gone. The restart accepts that, publishes nothing again, and
 * refuses rows it could only add to a published file. */
static void test_eo_restart_after_publish(void **state)
{
    fx *f = *state;
    char err[512] = "";
    snapcap last;
    void *conf;
    void *st = open_eo(f, f->path, NULL, &conf);
    for (uint64_t e = 1; e <= 2; e++) {
        write_epoch(f, st, e, false);
        precommit_snap(st, e, &last);
        commit(st, e);
    }
    close_file(conf, st);
    char *done = slurp(f->path);
    assert_false(exists(f->tmp));

    st = open_eo(f, f->path, NULL, &conf);
    restore_recover(st, &last, 2);
    precommit_snap(st, 3, NULL);
    commit(st, 3);
    close_file(conf, st);
    char *got = slurp(f->path);
    assert_string_equal(got, done);
    free(got);
    assert_false(exists(f->tmp));

    st = open_eo(f, f->path, NULL, &conf);
    restore_recover(st, &last, 2);
    sl_batch *b = sl__batch_new(f->schema, 1);
    set_row(b, 0, 1, S("late"), 1, 1.0, true);
    assert_int_equal(sl__sink_file.write(st, b, err, sizeof err),
                     SL_ECORRUPT);
    assert_non_null(strstr(err, "already published"));
    sl__batch_free(b);
    close_file(conf, st);
    got = slurp(f->path);
    assert_string_equal(got, done);
    free(got);
    free(done);
}

/* At-least-once: flush makes rows visible in .inprogress at once and close
 * publishes without a commit. The runtime flushes at a checkpoint instead
 * of precommitting, and the snapshot measures the file itself; a restart
 * cuts the file back to that length all the same, so the replay repeats
 * nothing. */
static void test_at_least_once(void **state)
{
    fx *f = *state;
    char *ref = reference(f);
    char err[512] = "";
    void *conf = NULL, *st = NULL;
    snapcap snap;
    const char *kv[] = {"path", f->path, NULL};
    sl_job *job = sl_job_new(err, sizeof err);
    sl__ctx ctx = tu_ctx();
    ctx.job = job;
    ctx.delivery = SL__AT_LEAST_ONCE;
    must(sl__sink_file.configure(&conf, kv, f->schema, err, sizeof err),
         "configure", err);
    must(sl__sink_file.open(&st, conf, f->schema, &ctx, err, sizeof err),
         "open", err);
    must(sl__sink_file.recover(st, 9, err, sizeof err), "recover", err);
    write_epoch(f, st, 1, false);
    must(sl__sink_file.flush(st, err, sizeof err), "flush", err);
    char *got = slurp(f->tmp);
    assert_non_null(strstr(got, "e-1-2"));
    free(got);
    precommit_snap(st, 1, NULL);
    write_epoch(f, st, 2, false);
    memset(&snap, 0, sizeof snap);
    snap.w.put = cap_put;
    must(sl__sink_file.flush(st, err, sizeof err), "flush", err);
    must(sl__sink_file.snapshot(st, &snap.w), "snapshot", "");
    write_epoch(f, st, 3, true);
    must(sl__sink_file.flush(st, err, sizeof err), "flush", err);
    sl__job_fail(job, SL_EIO, "crash"); /* close must not publish */
    close_file(conf, st);
    sl_job_free(job);
    assert_false(exists(f->path));

    ctx.job = NULL;
    must(sl__sink_file.configure(&conf, kv, f->schema, err, sizeof err),
         "configure", err);
    must(sl__sink_file.open(&st, conf, f->schema, &ctx, err, sizeof err),
         "open", err);
    must(sl__sink_file.restore(st, -1, snap.data, snap.len), "restore", "");
    write_epoch(f, st, 3, false);
    precommit_snap(st, 3, NULL);
    write_epoch(f, st, 4, false);
    close_file(conf, st); /* no commit needed */
    got = slurp(f->path);
    assert_string_equal(got, ref);
    free(got);
    free(ref);
}

/* stdout is at-least-once only: precommit and commit flush what was
 * written; there is no state to snapshot. */
static void run_stdout_epochs(fx *f)
{
    char err[512] = "";
    void *conf = NULL;
    char cap[200];
    const char *kv[] = {"format", "csv", "header", "false", NULL};
    snprintf(cap, sizeof cap, "%s/stdout.txt", f->dir);
    void *st = open_sink(&sl__sink_stdout, f->schema, kv, &conf);
    must(sl__sink_stdout.recover(st, 1, err, sizeof err), "recover", err);
    sl_batch *b = sl__batch_new(f->schema, 2);
    set_row(b, 0, 7, S("one"), 1, 0.25, false);
    must(sl__sink_stdout.write(st, b, err, sizeof err), "write", err);
    must(sl__sink_stdout.precommit(st, 1, err, sizeof err), "precommit",
         err);
    char *got = slurp(cap);
    assert_string_equal(got, "7,one,1,0.25,false\n");
    free(got);
    set_row(b, 0, 8, S("two"), 2, 0.5, true);
    must(sl__sink_stdout.write(st, b, err, sizeof err), "write", err);
    must(sl__sink_stdout.commit(st, 1, err, sizeof err), "commit", err);
    got = slurp(cap);
    assert_string_equal(got, "7,one,1,0.25,false\n8,two,2,0.5,true\n");
    free(got);
    sl__sink_stdout.close(st);
    sl__sink_stdout.conf_free(conf);
    sl__batch_free(b);
}

static void test_stdout_epochs(void **state)
{
    fx *f = *state;
    char *got = capture_stdout(f, run_stdout_epochs);
    assert_string_equal(got, "7,one,1,0.25,false\n8,two,2,0.5,true\n");
    free(got);
    assert_false(sl__sink_stdout.exactly_once);
    assert_null(sl__sink_stdout.snapshot);
    assert_null(sl__sink_stdout.restore);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_csv_quoting_and_atomic_rename,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_jsonl_escaping, setup, teardown),
        cmocka_unit_test(test_float_round_trip),
        cmocka_unit_test_setup_teardown(test_encoder_snprintf_semantics,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_rename_replaces_old_file_only_at_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_job_leaves_inprogress,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_huge_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdout_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdout_csv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conf_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eo_publish_at_close_after_commit,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_eo_close_without_commit_publishes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eo_crash_restore_latest, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_eo_crash_restore_older, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_eo_new_run_starts_afresh, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_eo_kill9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eo_restore_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_eo_restart_after_publish, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_at_least_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdout_epochs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
