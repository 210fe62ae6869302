/* test_file_sink.c — the "file" and "stdout" sinks and their encoders: CSV
 * quoting, JSON escaping (control characters, UTF-8, invalid bytes), the
 * atomic rename of <path>.inprogress at close, the table format and
 * configuration errors. */
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
