/* test_csv.c — the CSV decoder: quoting, NULLs, types, header mapping,
 * domains, every error reason, and CRLF line ends through the file source. */
#include <stdio.h>
#include <unistd.h>

#include "testutil.h"
#include "io/decode.h"

static const char *const types[] = {"SMS_SENT", "SMS_RECEIVED", "CALL_PLACED",
                                    "CALL_RECEIVED", "DATA_SESSION", NULL};

/* ts, msisdn (identifier), event_type (domain), cell_id, ratio, ok, note */
static sl_schema *mk_schema(void)
{
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "ts", SL_TIMESTAMP);
    int m = sl_schema_add(s, "msisdn", SL_STRING);
    int e = sl_schema_add(s, "event_type", SL_STRING);
    sl_schema_add(s, "cell_id", SL_INT64);
    sl_schema_add(s, "ratio", SL_FLOAT64);
    sl_schema_add(s, "ok", SL_BOOL);
    sl_schema_add(s, "note", SL_STRING);
    sl_schema_set_identifier(s, m);
    sl_schema_set_domain(s, e, types);
    return s;
}

typedef struct {
    sl_schema *s;
    sl__csv_dec d;
    sl_batch *b;
    char reason[128];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->s = mk_schema();
    sl__csv_init(&f->d, f->s, ',');
    f->b = sl__batch_new(f->s, 64);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sl__batch_free(f->b);
    sl__csv_close(&f->d);
    sl_schema_free(f->s);
    free(f);
    return 0;
}

static int dec(fx *f, const char *line)
{
    f->reason[0] = 0;
    return sl__csv_decode(&f->d, line, strlen(line), f->b, f->reason,
                          sizeof f->reason);
}

static void assert_str(const sl_batch *b, int col, uint32_t row,
                       const char *want)
{
    const sl_str *v = &((const sl_str *)b->cols[col].data)[row];
    assert_int_equal(b->cols[col].valid[row], 1);
    assert_int_equal(v->len, strlen(want));
    assert_memory_equal(v->ptr, want, v->len);
}

static int64_t i64(const sl_batch *b, int col, uint32_t row)
{
    return ((const int64_t *)b->cols[col].data)[row];
}

static void test_types(void **state)
{
    fx *f = *state;
    assert_int_equal(dec(f, "1767571200000,491701234567,SMS_SENT,42,0.25,true,hi"), 0);
    assert_int_equal(dec(f, "2026-01-05T00:00:01.5Z,491700000001,DATA_SESSION,-7,1e3,0,x"), 0);
    assert_int_equal(dec(f, "2026-01-05,4917,CALL_PLACED,9223372036854775807,-0.5,FALSE,"), 0);
    sl_batch *b = f->b;
    assert_int_equal(b->n, 3);
    assert_int_equal(i64(b, 0, 0), 1767571200000LL);
    assert_int_equal(i64(b, 0, 1), 1767571201500LL);
    assert_int_equal(i64(b, 0, 2), 1767571200000LL);
    assert_str(b, 1, 0, "491701234567");
    assert_str(b, 2, 1, "DATA_SESSION");
    assert_int_equal(i64(b, 3, 0), 42);
    assert_int_equal(i64(b, 3, 1), -7);
    assert_int_equal(i64(b, 3, 2), INT64_MAX);
    assert_true(((double *)b->cols[4].data)[0] == 0.25);
    assert_true(((double *)b->cols[4].data)[1] == 1000.0);
    assert_int_equal(((uint8_t *)b->cols[5].data)[0], 1);
    assert_int_equal(((uint8_t *)b->cols[5].data)[1], 0);
    assert_int_equal(((uint8_t *)b->cols[5].data)[2], 0);
    assert_int_equal(b->cols[6].valid[2], 0); /* empty = NULL */
    for (uint32_t r = 0; r < 3; r++) assert_int_equal(b->kind[r], SL_KIND_DATA);
}

static void test_nulls_and_quotes(void **state)
{
    fx *f = *state;
    sl_batch *b = f->b;
    assert_int_equal(dec(f, ",,,,,,"), 0);
    for (int c = 0; c < 7; c++) assert_int_equal(b->cols[c].valid[0], 0);
    assert_int_equal(
        dec(f, "\"1\",\"4917\",\"SMS_SENT\",\"3\",\"\",\"true\",\"a,b \"\"q\"\" c\""), 0);
    assert_int_equal(i64(b, 0, 1), 1);
    assert_str(b, 1, 1, "4917");
    assert_str(b, 2, 1, "SMS_SENT");
    assert_int_equal(i64(b, 3, 1), 3);
    assert_int_equal(b->cols[4].valid[1], 0); /* quoted empty number: NULL */
    assert_str(b, 6, 1, "a,b \"q\" c");
    /* a quoted empty string is an empty string, not NULL */
    assert_int_equal(dec(f, "1,,,,,,\"\""), 0);
    assert_str(b, 6, 2, "");
    assert_int_equal(b->cols[1].valid[2], 0);
    /* a bare quote inside an unquoted field is kept */
    assert_int_equal(dec(f, "1,,,,,,ab\"c"), 0);
    assert_str(b, 6, 3, "ab\"c");
    /* a field made only of an escaped quote */
    assert_int_equal(dec(f, "1,,,,,,\"\"\"\""), 0);
    assert_str(b, 6, 4, "\"");
    assert_int_equal(b->n, 5);
}

static void test_unterminated_quote(void **state)
{
    fx *f = *state;
    assert_int_equal(dec(f, "1,4917,SMS_SENT,1,,,\"line one"), SL__DEC_MORE);
    assert_int_equal(f->b->n, 0);
    assert_int_equal(dec(f, "1,4917,SMS_SENT,1,,,\"line one\nline two\""), 0);
    assert_str(f->b, 6, 0, "line one\nline two");
}

static void test_errors(void **state)
{
    fx *f = *state;
    static const struct { const char *line, *reason; } cases[] = {
        {"1,2,SMS_SENT,3,4,true", "wrong_field_count"},
        {"1,2,SMS_SENT,3,4,true,x,y", "wrong_field_count"},
        {"1,2,SMS_SENT,3,4,true,\"x\"y", "malformed_csv"},
        {"abc,2,SMS_SENT,3,4,true,x", "parse_error:ts"},
        {"2026-02-30,2,SMS_SENT,3,4,true,x", "parse_error:ts"},
        {"1,2,SMS_SENT,3x,4,true,x", "parse_error:cell_id"},
        {"1,2,SMS_SENT,123456789x,4,true,x", "parse_error:cell_id"},
        {"1,2,SMS_SENT,12345678x1234,4,true,x", "parse_error:cell_id"},
        {"1,2,SMS_SENT,-,4,true,x", "parse_error:cell_id"},
        {"1,2,SMS_SENT,1-2,4,true,x", "parse_error:cell_id"},
        {"1,2,SMS_SENT,12345678901234567890,4,true,x", "parse_error:cell_id"},
        {"1,2,SMS_SENT,9223372036854775808,4,true,x", "parse_error:cell_id"},
        {"1,2,SMS_SENT, 3,4,true,x", "parse_error:cell_id"},
        {"1,2,SMS_SENT,3,4.5.6,true,x", "parse_error:ratio"},
        {"1,2,SMS_SENT,3,4,yes,x", "parse_error:ok"},
        {"1,2,SMS_LOST,3,4,true,x", "unknown_value:event_type"},
        {"1,2,sms_sent,3,4,true,x", "unknown_value:event_type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(dec(f, cases[i].line), SL_EPARSE);
        assert_string_equal(f->reason, cases[i].reason);
    }
    assert_int_equal(f->b->n, 0);
    /* the decoder still works after errors */
    assert_int_equal(dec(f, "1,2,SMS_SENT,3,4,true,x"), 0);
    assert_int_equal(f->b->n, 1);
}

/* Integers of every length, both signs, through the fast and general
 * paths, against strtoll. */
static void test_integers(void **state)
{
    fx *f = *state;
    uint64_t seed = 42;
    char num[32], line[96];
    for (int len = 1; len <= 19; len++) {
        for (int rep = 0; rep < 20; rep++) {
            int k = 0;
            if (rep & 1) num[k++] = '-';
            for (int i = 0; i < len; i++) {
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                num[k++] = (char)('0' + (seed >> 33) % 10);
            }
            num[k] = 0;
            if (len == 19) num[rep & 1] = '1'; /* stays below 2^63 */
            for (int quoted = 0; quoted < 2; quoted++) {
                snprintf(line, sizeof line, quoted ? "\"%s\",,,%s,,,"
                                                   : "%s,,,%s,,,", num, num);
                sl__batch_clear(f->b);
                assert_int_equal(dec(f, line), 0);
                long long want = strtoll(num, NULL, 10);
                assert_int_equal(i64(f->b, 0, 0), want);
                assert_int_equal(i64(f->b, 3, 0), want);
            }
        }
    }
    assert_int_equal(dec(f, "-9223372036854775808,,,+5,,,"), 0);
    assert_int_equal(i64(f->b, 0, 1), INT64_MIN);
    assert_int_equal(i64(f->b, 3, 1), 5);
}

/* More fields than the fast path handles: the general path maps them. */
static void test_wide_header(void **state)
{
    fx *f = *state;
    char hdr[2048] = "", line[2048] = "";
    for (int i = 0; i < 80; i++) {
        char h[16], v[16];
        snprintf(h, sizeof h, "%sx%d", i ? "," : "", i);
        snprintf(v, sizeof v, "%s%d", i ? "," : "", i);
        if (i == 70) snprintf(h, sizeof h, ",cell_id");
        strcat(hdr, h);
        strcat(line, v);
    }
    assert_int_equal(sl__csv_set_header(&f->d, hdr, strlen(hdr)), 1);
    assert_int_equal(dec(f, line), 0);
    assert_int_equal(i64(f->b, 3, 0), 70);
    assert_int_equal(f->b->cols[0].valid[0], 0);
    strcat(line, ",1");
    assert_int_equal(dec(f, line), SL_EPARSE);
    assert_string_equal(f->reason, "wrong_field_count");
}

static void test_header(void **state)
{
    fx *f = *state;
    sl_batch *b = f->b;
    /* reordered, an extra column, case-insensitive, missing columns */
    const char *h = "extra,\"CELL_ID\",ts,msisdn,event_type";
    assert_int_equal(sl__csv_set_header(&f->d, h, strlen(h)), 4);
    assert_int_equal(dec(f, "zzz,17,5,4917,CALL_RECEIVED"), 0);
    assert_int_equal(i64(b, 3, 0), 17);
    assert_int_equal(i64(b, 0, 0), 5);
    assert_str(b, 1, 0, "4917");
    assert_str(b, 2, 0, "CALL_RECEIVED");
    assert_int_equal(b->cols[4].valid[0], 0);
    assert_int_equal(b->cols[5].valid[0], 0);
    assert_int_equal(b->cols[6].valid[0], 0);
    assert_int_equal(dec(f, "zzz,17,5,4917"), SL_EPARSE);
    assert_string_equal(f->reason, "wrong_field_count");
    /* a repeated name feeds only its first field */
    const char *h2 = "ts,ts,cell_id,msisdn,event_type,ratio,ok,note";
    assert_int_equal(sl__csv_set_header(&f->d, h2, strlen(h2)), 7);
    assert_int_equal(dec(f, "1,2,3,4917,SMS_SENT,,,"), 0);
    assert_int_equal(i64(b, 0, 1), 1);
    /* a line naming no column leaves the mapping positional */
    const char *d = "1,4917,SMS_SENT,3,4,true,x";
    assert_int_equal(sl__csv_set_header(&f->d, d, strlen(d)), 0);
    assert_int_equal(dec(f, d), 0);
    assert_int_equal(i64(b, 3, 2), 3);
    assert_int_equal(sl__csv_set_header(&f->d, "\"ts", 3), SL_EPARSE);
}

static void test_delimiter(void **state)
{
    fx *f = *state;
    sl__csv_dec d;
    sl__csv_init(&d, f->s, ';');
    const char *l = "1;4917;SMS_SENT;2;0.5;1;a,b";
    assert_int_equal(sl__csv_decode(&d, l, strlen(l), f->b, f->reason,
                                    sizeof f->reason), 0);
    assert_str(f->b, 6, 0, "a,b");
    sl__csv_close(&d);
    sl__csv_init(&d, f->s, '\t');
    l = "1\t4917\tSMS_SENT\t2\t\t\t\"x\ty\"";
    assert_int_equal(sl__csv_decode(&d, l, strlen(l), f->b, f->reason,
                                    sizeof f->reason), 0);
    assert_str(f->b, 6, 1, "x\ty");
    assert_int_equal(f->b->cols[4].valid[1], 0);
    sl__csv_close(&d);
}

/* CRLF line ends, a last line without newline and blank lines, through the
 * file source. */
static void test_crlf_file(void **state)
{
    fx *f = *state;
    char dir[] = "/tmp/sl_csvXXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/in.csv", dir);
    FILE *fp = fopen(path, "w");
    fputs("ts,msisdn,event_type,cell_id,ratio,ok,note\r\n"
          "1,4917,SMS_SENT,1,,,\"a\r\nb\"\r\n"
          "\r\n"
          "2,4918,SMS_SENT,2,,,x\r\n"
          "3,4919,SMS_SENT,3,,,y",
          fp);
    fclose(fp);
    const char *kv[] = {"path", path, NULL};
    void *conf, *st;
    char err[256];
    assert_int_equal(sl__src_file.configure(&conf, kv, f->s, err, sizeof err), 0);
    assert_int_equal(sl__src_file.partitions(conf), 1);
    sl__ctx ctx = tu_ctx();
    int parts[] = {0};
    assert_int_equal(sl__src_file.open(&st, conf, f->s, parts, 1, &ctx, err,
                                       sizeof err), 0);
    int part = -1, rc, total = 0;
    while ((rc = sl__src_file.read(st, f->b, &part, err, sizeof err)) >= 0)
        total += rc;
    assert_int_equal(rc, SL_EEOF);
    assert_int_equal(total, 3);
    assert_str(f->b, 6, 0, "a\r\nb");
    assert_str(f->b, 6, 1, "x");
    assert_str(f->b, 6, 2, "y");
    assert_int_equal(i64(f->b, 3, 2), 3);
    int64_t pos;
    assert_int_equal(sl__file_source_position(st, 0, &pos), 0);
    sl__src_file.close(st);
    sl__src_file.conf_free(conf);
    unlink(path);
    rmdir(dir);
}

/* Random mutations of valid lines: the decoder must accept or reject each
 * without reading outside the line (run under ASan: exact-size copies). */
static void test_fuzz(void **state)
{
    fx *f = *state;
    static const char *const seeds[] = {
        "1767571200000,491701234567,SMS_SENT,42,0.25,true,hi",
        "\"1\",\"4917\",\"SMS_SENT\",\"3\",\"\",\"true\",\"a,b \"\"q\"\" c\"",
        "2026-01-05T00:00:01.5Z,491700000001,DATA_SESSION,-7,1e3,0,x",
        ",,,,,,"};
    static const char alphabet[] = "\",\\{}[]:0123456789-+.eEtrufalsn \t\r\nSMS_\xC3\xFF";
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    char buf[256];
    for (int it = 0; it < 200000; it++) {
        const char *sd = seeds[it % (int)(sizeof seeds / sizeof seeds[0])];
        size_t n = strlen(sd);
        memcpy(buf, sd, n);
        int edits = 1 + it % 4;
        for (int e = 0; e < edits; e++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = n ? (size_t)(x >> 8) % n : 0;
            char ch = alphabet[(x >> 40) % (sizeof alphabet - 1)];
            switch ((x >> 20) % 3) {
            case 0: if (n) buf[at] = ch; break;
            case 1: if (n < sizeof buf - 1) { memmove(buf + at + 1, buf + at, n - at); buf[at] = ch; n++; } break;
            default: if (n) { memmove(buf + at, buf + at + 1, n - at - 1); n--; } break;
            }
        }
        char *line = malloc(n ? n : 1);
        memcpy(line, buf, n);
        if (f->b->n == f->b->cap) sl__batch_clear(f->b);
        int rc = sl__csv_decode(&f->d, line, n, f->b, f->reason, sizeof f->reason);
        assert_true(rc == 0 || rc == SL_EPARSE || rc == SL__DEC_MORE);
        free(line);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nulls_and_quotes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unterminated_quote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wide_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delimiter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crlf_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fuzz, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
