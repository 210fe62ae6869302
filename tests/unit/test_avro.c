/* test_avro.c — the Avro single-object format (io/avro.c): the CRC-64-AVRO
 * fingerprint against the specification's known answers, the bytes of an
 * encoded row against ones worked out by hand from the specification
 * (zigzag varints, union branch indices, length-prefixed strings), a
 * round trip with NULLs, and every decoding refusal with its reason. */
#include <string.h>

#include "testutil.h"

#include "io/avrofmt.h"

static sl_schema *schema(void)
{
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "id", SL_INT64);
    sl_schema_add(s, "name", SL_STRING);
    sl_schema_add(s, "score", SL_FLOAT64);
    sl_schema_add(s, "ok", SL_BOOL);
    sl_schema_add(s, "at", SL_TIMESTAMP);
    return s;
}

static void test_fingerprint_known_answers(void **state)
{
    (void)state;
    /* the specification's test vectors, as little-endian bytes:
     * "int" -> 8f5c393f1ad57572, "long" -> b71df49344e154d0 */
    assert_true(sl__avro_crc64("\"int\"", 5) == 0x7275d51a3f395c8fULL);
    assert_true(sl__avro_crc64("\"long\"", 6) == 0xd054e14493f41db7ULL);
}

static void set_row(sl_batch *b, uint32_t r, bool null_score)
{
    ((int64_t *)b->cols[0].data)[r] = 1;
    ((sl_str *)b->cols[1].data)[r] = (sl_str){"ab", 2};
    ((double *)b->cols[2].data)[r] = 0.5;
    b->cols[2].valid[r] = !null_score;
    ((uint8_t *)b->cols[3].data)[r] = 1;
    ((int64_t *)b->cols[4].data)[r] = -1;
    b->kind[r] = SL_KIND_DATA;
}

static void test_encoding_by_hand(void **state)
{
    (void)state;
    sl_schema *s = schema();
    sl__avro *a = NULL;
    char err[256];
    assert_int_equal(sl__avro_new(&a, s, SL__AVRO_DEFAULT_NAME, "t", err, sizeof err), 0);
    assert_string_equal(sl__avro_canonical(a),
                        "{\"name\":\"sluice.Record\",\"type\":\"record\",\"fields\":["
                        "{\"name\":\"id\",\"type\":[\"null\",\"long\"]},"
                        "{\"name\":\"name\",\"type\":[\"null\",\"string\"]},"
                        "{\"name\":\"score\",\"type\":[\"null\",\"double\"]},"
                        "{\"name\":\"ok\",\"type\":[\"null\",\"boolean\"]},"
                        "{\"name\":\"at\",\"type\":[\"null\",\"long\"]}]}");
    sl_batch *b = sl__batch_new(s, 4);
    set_row(b, 0, true);
    b->n = 1;
    char buf[64];
    size_t n = sl__avro_encode(a, b, 0, buf, sizeof buf);
    /* id: branch 1 (0x02), long 1 (0x02); name: branch 1, length 2 (0x04),
     * "ab"; score: branch 0 (null); ok: branch 1, true; at: branch 1,
     * long -1 (zigzag 1) */
    const unsigned char datum[] = {0x02, 0x02, 0x02, 0x04, 'a', 'b', 0x00,
                                   0x02, 0x01, 0x02, 0x01};
    assert_int_equal(n, 10 + sizeof datum);
    assert_int_equal((unsigned char)buf[0], 0xC3);
    assert_int_equal((unsigned char)buf[1], 0x01);
    uint64_t fp = 0;
    for (int i = 0; i < 8; i++) fp |= (uint64_t)(unsigned char)buf[2 + i] << (8 * i);
    assert_true(fp == sl__avro_crc64(sl__avro_canonical(a), strlen(sl__avro_canonical(a))));
    assert_memory_equal(buf + 10, datum, sizeof datum);
    /* too small a buffer: the size needed, nothing promised */
    assert_int_equal(sl__avro_encode(a, b, 0, buf, 5), 10 + sizeof datum);
    sl__batch_free(b);
    sl__avro_free(a);
    sl_schema_free(s);
}

static void test_round_trip_and_refusals(void **state)
{
    (void)state;
    sl_schema *s = schema();
    sl__avro *a = NULL;
    char err[256], reason[128];
    assert_int_equal(sl__avro_new(&a, s, "x.y.Z", "t", err, sizeof err), 0);
    sl_batch *in = sl__batch_new(s, 4), *out = sl__batch_new(s, 8);
    set_row(in, 0, false);
    set_row(in, 1, true);
    in->n = 2;
    char msg[2][64];
    size_t len[2];
    for (uint32_t r = 0; r < 2; r++) len[r] = sl__avro_encode(a, in, r, msg[r], sizeof msg[r]);
    for (uint32_t r = 0; r < 2; r++)
        assert_int_equal(sl__avro_decode(a, msg[r], len[r], out, reason, sizeof reason), 0);
    assert_int_equal(out->n, 2);
    assert_int_equal(((int64_t *)out->cols[0].data)[1], 1);
    assert_int_equal(((sl_str *)out->cols[1].data)[0].len, 2);
    assert_memory_equal(((sl_str *)out->cols[1].data)[0].ptr, "ab", 2);
    assert_true(((double *)out->cols[2].data)[0] == 0.5);
    assert_int_equal(out->cols[2].valid[0], 1);
    assert_int_equal(out->cols[2].valid[1], 0);
    assert_int_equal(((int64_t *)out->cols[4].data)[0], -1);
    struct {
        const char *data;
        size_t len;
        const char *reason;
    } bad[] = {
        {"\xC3\x02xxxxxxxxxx", 12, "avro_bad_magic"},
        {"\xC3\x01\x00\x00", 4, "avro_truncated_header"},
        {"\xC3\x01\x00\x00\x00\x00\x00\x00\x00\x00\x02\x02", 12, "avro_unknown_fingerprint"},
        {msg[0], len[0] - 2, "avro_truncated_datum"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(sl__avro_decode(a, bad[i].data, bad[i].len, out, reason,
                                         sizeof reason), SL_EPARSE);
        assert_string_equal(reason, bad[i].reason);
    }
    char longer[65];
    memcpy(longer, msg[0], len[0]);
    longer[len[0]] = 0;
    assert_int_equal(sl__avro_decode(a, longer, len[0] + 1, out, reason, sizeof reason),
                     SL_EPARSE);
    assert_string_equal(reason, "avro_trailing_bytes");
    assert_int_equal(out->n, 2); /* nothing appended by the refusals */
    sl__batch_free(in);
    sl__batch_free(out);
    sl__avro_free(a);
    /* names Avro does not allow */
    sl_schema *bad_col = sl_schema_new();
    sl_schema_add(bad_col, "9lives", SL_INT64);
    assert_int_equal(sl__avro_new(&a, bad_col, "sluice.Record", "kafka sink", err, sizeof err),
                     SL_EINVAL);
    assert_string_equal(err, "kafka sink: format avro: column \"9lives\" is not an Avro field "
                             "name (letters, digits and _, not starting with a digit)");
    assert_int_equal(sl__avro_new(&a, s, "a..b", "kafka sink", err, sizeof err), SL_EINVAL);
    assert_string_equal(err, "kafka sink: avro.name 'a..b' is not an Avro full name (letters, "
                             "digits and _, parts separated by dots)");
    sl_schema_free(bad_col);
    sl_schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fingerprint_known_answers),
        cmocka_unit_test(test_encoding_by_hand),
        cmocka_unit_test(test_round_trip_and_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
