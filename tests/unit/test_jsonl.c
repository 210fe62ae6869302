/* test_jsonl.c — the JSON Lines decoder: values of every type, escapes and
 * \uXXXX to UTF-8, NULLs and absent keys, and every error reason. */
#include <stdio.h>

#include "testutil.h"
#include "io/decode.h"

static const char *const types[] = {"SMS_SENT", "CALL_PLACED", NULL};

typedef struct {
    sl_schema *s;
    sl__json_dec d;
    sl_batch *b;
    char reason[128];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->s = sl_schema_new();
    sl_schema_add(f->s, "ts", SL_TIMESTAMP);
    sl_schema_add(f->s, "msisdn", SL_STRING);
    sl_schema_add(f->s, "event_type", SL_STRING);
    sl_schema_add(f->s, "n", SL_INT64);
    sl_schema_add(f->s, "x", SL_FLOAT64);
    sl_schema_add(f->s, "ok", SL_BOOL);
    sl_schema_set_identifier(f->s, 1);
    sl_schema_set_domain(f->s, 2, types);
    sl__json_init(&f->d, f->s);
    f->b = sl__batch_new(f->s, 64);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sl__batch_free(f->b);
    sl__json_close(&f->d);
    sl_schema_free(f->s);
    free(f);
    return 0;
}

static int dec(fx *f, const char *line)
{
    f->reason[0] = 0;
    return sl__json_decode(&f->d, line, strlen(line), f->b, f->reason,
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

static void test_values(void **state)
{
    fx *f = *state;
    sl_batch *b = f->b;
    assert_int_equal(dec(f, "{\"ts\":1767571200000,\"msisdn\":\"491701234567\","
                            "\"event_type\":\"SMS_SENT\",\"n\":-42,\"x\":1.5e2,"
                            "\"ok\":true}"), 0);
    assert_int_equal(i64(b, 0, 0), 1767571200000LL);
    assert_str(b, 1, 0, "491701234567");
    assert_str(b, 2, 0, "SMS_SENT");
    assert_int_equal(i64(b, 3, 0), -42);
    assert_true(((double *)b->cols[4].data)[0] == 150.0);
    assert_int_equal(((uint8_t *)b->cols[5].data)[0], 1);
    /* whitespace, key order, ISO time, a number into a STRING column */
    assert_int_equal(dec(f, "  { \"ok\" : false , \"msisdn\" : 4917 ,\t"
                            "\"ts\": \"2026-01-05T00:00:00Z\" }  "), 0);
    assert_int_equal(((uint8_t *)b->cols[5].data)[1], 0);
    assert_str(b, 1, 1, "4917");
    assert_int_equal(i64(b, 0, 1), 1767571200000LL);
    assert_int_equal(b->cols[3].valid[1], 0); /* absent */
    assert_int_equal(b->cols[2].valid[1], 0);
    /* null, unknown keys of every kind, empty string */
    assert_int_equal(dec(f, "{\"n\":null,\"zz\":[],\"other\":\"v\",\"o2\":1.5,"
                            "\"msisdn\":\"\"}"), SL_EPARSE);
    assert_string_equal(f->reason, "nested_value");
    assert_int_equal(dec(f, "{\"n\":null,\"other\":\"v\\u0041\",\"o2\":-0.5,"
                            "\"o3\":true,\"o4\":null,\"msisdn\":\"\"}"), 0);
    assert_int_equal(b->cols[3].valid[2], 0);
    assert_str(b, 1, 2, "");
    assert_int_equal(dec(f, "{}"), 0);
    for (int c = 0; c < 6; c++) assert_int_equal(b->cols[c].valid[3], 0);
    assert_int_equal(b->n, 4);
    for (uint32_t r = 0; r < 4; r++) assert_int_equal(b->kind[r], SL_KIND_DATA);
}

static void test_escapes(void **state)
{
    fx *f = *state;
    sl_batch *b = f->b;
    assert_int_equal(dec(f, "{\"msisdn\":\"a\\\"b\\\\c\\/d\\n\\t\\r\\b\\f\"}"), 0);
    assert_str(b, 1, 0, "a\"b\\c/d\n\t\r\b\f");
    assert_int_equal(dec(f, "{\"msisdn\":\"\\u00e9\\u20AC\\ud83d\\ude00\\u0000z\"}"), 0);
    const sl_str *v = &((sl_str *)b->cols[1].data)[1];
    static const char want[] = "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\0z";
    assert_int_equal(v->len, sizeof want - 1);
    assert_memory_equal(v->ptr, want, sizeof want - 1);
    /* escaped key */
    assert_int_equal(dec(f, "{\"\\u006e\":7}"), 0);
    assert_int_equal(i64(b, 3, 2), 7);
    /* an escaped value in a domain column */
    assert_int_equal(dec(f, "{\"event_type\":\"CALL\\u005fPLACED\"}"), 0);
    assert_str(b, 2, 3, "CALL_PLACED");
}

static void test_errors(void **state)
{
    fx *f = *state;
    static const struct { const char *line, *reason; } cases[] = {
        {"", "malformed_json"},
        {"[1,2]", "malformed_json"},
        {"{\"n\":1", "malformed_json"},
        {"{\"n\":1}x", "malformed_json"},
        {"{\"n\":1,}", "malformed_json"},
        {"{n:1}", "malformed_json"},
        {"{\"n\" 1}", "malformed_json"},
        {"{\"n\":01}", "malformed_json"},
        {"{\"n\":1.}", "malformed_json"},
        {"{\"n\":-}", "malformed_json"},
        {"{\"n\":tru}", "malformed_json"},
        {"{\"n\":nul}", "malformed_json"},
        {"{\"msisdn\":\"abc}", "malformed_json"},
        {"{\"msisdn\":\"a\\qb\"}", "malformed_json"},
        {"{\"msisdn\":\"a\\u12G4\"}", "malformed_json"},
        {"{\"msisdn\":\"\\ud83d\"}", "malformed_json"},
        {"{\"msisdn\":\"\\ude00\"}", "malformed_json"},
        {"{\"msisdn\":\"a\tb\"}", "malformed_json"},
        {"{\"n\":{\"a\":1}}", "nested_value:n"},
        {"{\"q\":[1]}", "nested_value"},
        {"{\"n\":1.5}", "parse_error:n"},
        {"{\"n\":\"12a\"}", "parse_error:n"},
        {"{\"ts\":\"yesterday\"}", "parse_error:ts"},
        {"{\"ok\":\"maybe\"}", "parse_error:ok"},
        {"{\"x\":true}", "parse_error:x"},
        {"{\"event_type\":\"SMS_LOST\"}", "unknown_value:event_type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(dec(f, cases[i].line), SL_EPARSE);
        if (strcmp(f->reason, cases[i].reason) != 0)
            fail_msg("%s: got %s, want %s", cases[i].line, f->reason,
                     cases[i].reason);
    }
    assert_int_equal(f->b->n, 0);
    assert_int_equal(dec(f, "{\"n\":\"12\",\"ok\":1}"), 0);
    assert_int_equal(i64(f->b, 3, 0), 12);
}

/* Random mutations of valid lines: the decoder must accept or reject each
 * without reading outside the line (run under ASan: exact-size copies). */
static void test_fuzz(void **state)
{
    fx *f = *state;
    static const char *const seeds[] = {
        "{\"ts\":1767571200000,\"msisdn\":\"491701234567\",\"event_type\":\"SMS_SENT\",\"n\":-42,\"x\":1.5e2,\"ok\":true}",
        "{\"msisdn\":\"\\u00e9\\ud83d\\ude00\\n\",\"q\":null,\"n\":\"12\"}",
        "{}"};
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
        int rc = sl__json_decode(&f->d, line, n, f->b, f->reason, sizeof f->reason);
        assert_true(rc == 0 || rc == SL_EPARSE);
        free(line);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fuzz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
