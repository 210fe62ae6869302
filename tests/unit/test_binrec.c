/* test_binrec.c — the fixed-width binary record decoder: layout from the
 * schema and binary.widths, values of every type with their NULL encodings,
 * every error reason, and the masked dead-letter payload. Records are built
 * byte by byte here, independently of the decoder. */
#include <math.h>
#include <stdio.h>

#include "testutil.h"
#include "io/decode.h"

static const char *const kinds[] = {"view", "click", NULL};

/* ts TIMESTAMP, id VARCHAR(6, identifier), kind VARCHAR(16, domain),
 * n BIGINT, x DOUBLE, ok BOOLEAN: 8 + 6 + 16 + 8 + 8 + 1 = 47 bytes. */
typedef struct {
    sl_schema *s;
    sl__bin_dec d;
    sl_batch *b;
    char reason[128];
    unsigned char rec[47];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->s = sl_schema_new();
    sl_schema_add(f->s, "ts", SL_TIMESTAMP);
    sl_schema_set_identifier(f->s, sl_schema_add(f->s, "id", SL_STRING));
    sl_schema_set_domain(f->s, sl_schema_add(f->s, "kind", SL_STRING), kinds);
    sl_schema_add(f->s, "n", SL_INT64);
    sl_schema_add(f->s, "x", SL_FLOAT64);
    sl_schema_add(f->s, "ok", SL_BOOL);
    char err[128];
    assert_int_equal(sl__bin_init(&f->d, f->s, "id:6", err, sizeof err), 0);
    f->b = sl__batch_new(f->s, 8);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sl__batch_free(f->b);
    sl__bin_close(&f->d);
    sl_schema_free(f->s);
    free(f);
    return 0;
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* A valid record: ts, id, kind, n, x, ok. */
static void build(fx *f, int64_t ts, const char *id, const char *kind, int64_t n,
                  double x, unsigned char ok)
{
    memset(f->rec, 0, sizeof f->rec);
    put64(f->rec, (uint64_t)ts);
    memcpy(f->rec + 8, id, strlen(id));
    memcpy(f->rec + 14, kind, strlen(kind));
    put64(f->rec + 30, (uint64_t)n);
    uint64_t u;
    memcpy(&u, &x, 8);
    put64(f->rec + 38, u);
    f->rec[46] = ok;
}

static int dec(fx *f)
{
    f->reason[0] = 0;
    return sl__bin_decode(&f->d, (const char *)f->rec, f->b, f->reason,
                          sizeof f->reason);
}

static void test_layout_and_values(void **state)
{
    fx *f = *state;
    assert_int_equal(f->d.size, 47);
    assert_int_equal(f->d.off[2], 14);
    assert_int_equal(f->d.width[2], 16);
    build(f, 1700000000123, "491701", "click", -42, 2.5, 1);
    assert_int_equal(dec(f), 0);
    build(f, 0, "", "", INT64_MIN, NAN, 0xFF); /* every NULL encoding */
    assert_int_equal(dec(f), 0);
    build(f, -1, "4917", "view", INT64_MAX, -0.0, 0);
    assert_int_equal(dec(f), 0);
    const sl_batch *b = f->b;
    assert_int_equal(b->n, 3);
    int64_t *ts = (int64_t *)b->cols[0].data, *n = (int64_t *)b->cols[3].data;
    double *x = (double *)b->cols[4].data;
    uint8_t *ok = (uint8_t *)b->cols[5].data;
    sl_str *id = (sl_str *)b->cols[1].data, *kind = (sl_str *)b->cols[2].data;
    assert_true(ts[0] == 1700000000123 && n[0] == -42 && x[0] == 2.5 && ok[0] == 1);
    assert_int_equal(id[0].len, 6);
    assert_memory_equal(id[0].ptr, "491701", 6);
    assert_ptr_equal(kind[0].ptr, f->s->cols[2].domain[1]); /* points at the schema */
    for (int c = 1; c < 6; c++) assert_int_equal(b->cols[c].valid[1], 0);
    assert_int_equal(b->cols[0].valid[1], 1); /* ts 0 is a value */
    assert_true(ts[2] == -1 && n[2] == INT64_MAX && ok[2] == 0 && b->cols[5].valid[2]);
    assert_int_equal(id[2].len, 4);
    assert_int_equal(b->kind[0], SL_KIND_DATA);
}

static void test_errors(void **state)
{
    fx *f = *state;
    build(f, 1, "49", "view", 1, 1, 2);
    assert_int_equal(dec(f), SL_EPARSE);
    assert_string_equal(f->reason, "parse_error:ok");
    build(f, 1, "49", "view", 1, 1, 1);
    f->rec[8 + 4] = 'x'; /* after the padding began */
    assert_int_equal(dec(f), SL_EPARSE);
    assert_string_equal(f->reason, "parse_error:id");
    build(f, 1, "49", "buy", 1, 1, 1);
    assert_int_equal(dec(f), SL_EPARSE);
    assert_string_equal(f->reason, "unknown_value:kind");
    assert_int_equal(f->b->n, 0);
    build(f, 1, "491234", "view", 1, 1, 1); /* a string filling its width */
    assert_int_equal(dec(f), 0);
    assert_int_equal(f->b->n, 1);
}

static void test_payload_masks_identifier(void **state)
{
    fx *f = *state;
    build(f, 1, "491234", "view", 1, 1, 1);
    char out[2 * 47 + 1];
    assert_int_equal(sl__bin_payload(&f->d, (const char *)f->rec, 47, out), 94);
    assert_memory_equal(out, "0100000000000000", 16);
    assert_memory_equal(out + 16, "************", 12);
    assert_memory_equal(out + 28, "76696577", 8); /* "view" */
    assert_int_equal(strlen(out), 94);
    assert_int_equal(sl__bin_payload(&f->d, (const char *)f->rec, 10, out), 20); /* short */
    assert_string_equal(out, "0100000000000000****");
}

static void test_widths_errors(void **state)
{
    fx *f = *state;
    sl__bin_dec d;
    char err[256];
    static const struct { const char *w, *msg; } cases[] = {
        {"nosuch:3", "'nosuch' is not a STRING column"},
        {"n:3", "'n' is not a STRING column"},
        {"id:0", "width of 'id' must be 1..4096 bytes"},
        {"id:5000", "width of 'id' must be 1..4096 bytes"},
        {"id:4x", "width of 'id' must be 1..4096 bytes"},
        {"id", "'id' is not column:bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = 0;
        assert_int_equal(sl__bin_init(&d, f->s, cases[i].w, err, sizeof err), SL_EINVAL);
        assert_non_null(strstr(err, "binary.widths"));
        assert_non_null(strstr(err, cases[i].msg));
    }
    assert_int_equal(sl__bin_init(&d, f->s, "id:1,kind:2", err, sizeof err), 0);
    assert_int_equal(d.size, 8 + 1 + 2 + 8 + 8 + 1);
    sl__bin_close(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_layout_and_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_payload_masks_identifier, setup, teardown),
        cmocka_unit_test_setup_teardown(test_widths_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
