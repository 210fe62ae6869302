/* test_csv_block.c — the CSV block decoder (sl__csv_decode_block) against
 * the line decoder it must agree with: every boundary of the structural
 * index (a delimiter, newline or quote at each offset of the 16-byte
 * steps), integers of every length with signs and overflow, CRLF, empty
 * fields and lines, quotes, domains, wrong field counts; and a randomised
 * differential run that decodes the same text both ways (the block driven
 * as the file source drives it) and compares every value and every
 * rejected line. */
#include <stdio.h>

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

/* What one way of decoding gave: the rows, and the rejected lines. */
typedef struct {
    sl_batch *b;
    int nbad;
    int bad_line[4096];
    char bad_reason[4096][64];
} outcome;

static void bad(outcome *o, int line, const char *reason)
{
    SL_ASSERT(o->nbad < 4096);
    o->bad_line[o->nbad] = line;
    snprintf(o->bad_reason[o->nbad], sizeof o->bad_reason[0], "%s", reason);
    o->nbad++;
}

/* One line at buf[*pos..], as the file source's line path takes it: CR
 * dropped, empty lines skipped, a quoted field spanning lines extended.
 * Returns false when no complete line is left. */
static bool line_path(const sl__csv_dec *d, const char *buf, size_t len,
                      size_t *pos, int *line_no, outcome *o)
{
    size_t start = *pos;
    const char *nl = memchr(buf + start, '\n', len - start);
    if (nl == NULL) return false;
    size_t end = (size_t)(nl - buf), next = end + 1;
    size_t n = end - start;
    if (n > 0 && buf[start + n - 1] == '\r') n--;
    int lines = 1;
    if (n > 0) {
        char reason[128] = "";
        int rc = sl__csv_decode(d, buf + start, n, o->b, reason, sizeof reason);
        while (rc == SL__DEC_MORE) {
            const char *nl2 = memchr(buf + next, '\n', len - next);
            if (nl2 == NULL) {
                rc = SL_EPARSE;
                snprintf(reason, sizeof reason, "malformed_csv");
                next = len;
                break;
            }
            end = (size_t)(nl2 - buf);
            next = end + 1;
            lines++;
            n = end - start;
            if (n > 0 && buf[start + n - 1] == '\r') n--;
            rc = sl__csv_decode(d, buf + start, n, o->b, reason, sizeof reason);
        }
        if (rc != 0) bad(o, *line_no, reason);
    }
    *line_no += lines;
    *pos = next;
    return true;
}

static void decode_lines(const sl__csv_dec *d, const char *buf, size_t len, outcome *o)
{
    size_t pos = 0;
    int line_no = 1;
    while (line_path(d, buf, len, &pos, &line_no, o)) {
    }
}

/* The file source's loop: a block, then the line it stopped at, again,
 * into a batch of `cap` rows that is moved to o->b whenever it fills (one
 * "read"; a failed block turns blocks off until then, as in fs_read). */
static void decode_blocks(const sl__csv_dec *d, const char *buf, size_t len,
                          uint32_t cap, outcome *o, int *blocks_rows)
{
    sl__csv_block k = {0};
    sl_batch *w = sl__batch_new(o->b->schema, cap);
    size_t pos = 0;
    int line_no = 1;
    bool off = false;
    *blocks_rows = 0;
    sl_batch *keep = o->b;
    for (;;) {
        if (w->n == w->cap) {
            sl__batch_append(keep, w, NULL, w->n);
            sl__batch_clear(w);
            off = false;
        }
        if (!off) {
            size_t used;
            bool failed;
            uint32_t got = sl__csv_decode_block(d, &k, buf + pos, len - pos, w,
                                                &used, &failed);
            *blocks_rows += (int)got;
            pos += used;
            line_no += (int)got;
            off = failed;
            if (w->n == w->cap) continue;
        }
        o->b = w;
        bool more = line_path(d, buf, len, &pos, &line_no, o);
        o->b = keep;
        if (!more) break;
    }
    sl__batch_append(keep, w, NULL, w->n);
    sl__batch_free(w);
    sl__csv_block_free(&k);
}

static void assert_same_value(const sl_batch *a, const sl_batch *b, int c,
                              uint32_t r)
{
    assert_int_equal(a->cols[c].valid[r], b->cols[c].valid[r]);
    if (!a->cols[c].valid[r]) return;
    switch (a->schema->cols[c].type) {
    case SL_STRING: {
        const sl_str *x = (const sl_str *)a->cols[c].data + r;
        const sl_str *y = (const sl_str *)b->cols[c].data + r;
        assert_int_equal(x->len, y->len);
        assert_memory_equal(x->ptr, y->ptr, x->len);
        break;
    }
    case SL_BOOL:
        assert_int_equal(((uint8_t *)a->cols[c].data)[r], ((uint8_t *)b->cols[c].data)[r]);
        break;
    default: /* int64, timestamp, float64: the same bits */
        assert_memory_equal((int64_t *)a->cols[c].data + r,
                            (int64_t *)b->cols[c].data + r, 8);
        break;
    }
}

/* Decodes text both ways into batches of `cap` rows and compares. Returns
 * the rows the block decoder produced itself. */
static int compare_ways(const sl__csv_dec *d, const sl_schema *s,
                        const char *text, size_t len, uint32_t cap)
{
    /* an exact-size heap copy, so ASan sees any read past the end */
    char *buf = malloc(len ? len : 1);
    memcpy(buf, text, len);
    outcome *x = calloc(1, sizeof *x), *y = calloc(1, sizeof *y);
    x->b = sl__batch_new(s, 8192);
    y->b = sl__batch_new(s, 8192);
    int brows;
    decode_lines(d, buf, len, x);
    decode_blocks(d, buf, len, cap, y, &brows);
    assert_int_equal(x->b->n, y->b->n);
    for (uint32_t r = 0; r < x->b->n; r++) {
        assert_int_equal(x->b->kind[r], y->b->kind[r]);
        for (int c = 0; c < s->n; c++) assert_same_value(x->b, y->b, c, r);
    }
    assert_int_equal(x->nbad, y->nbad);
    for (int i = 0; i < x->nbad; i++) {
        assert_int_equal(x->bad_line[i], y->bad_line[i]);
        assert_string_equal(x->bad_reason[i], y->bad_reason[i]);
    }
    sl__batch_free(x->b);
    sl__batch_free(y->b);
    free(x);
    free(y);
    free(buf);
    return brows;
}

typedef struct {
    sl_schema *s;
    sl__csv_dec d;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->s = mk_schema();
    sl__csv_init(&f->d, f->s, ',');
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sl__csv_close(&f->d);
    sl_schema_free(f->s);
    free(f);
    return 0;
}

/* Exact values of a block: every type, NULLs, CRLF, the domain pointing
 * at the schema's value, and the bytes after the last newline left. */
static void test_values(void **state)
{
    fx *f = *state;
    const char *text =
        "1767571200000,491701234567,SMS_SENT,42,0.25,true,hi\r\n"
        ",,,,,,\n"
        "-5,x,DATA_SESSION,-9223372036854775808,1e3,0,\n"
        "9223372036854775807,,CALL_PLACED,+7,,1,tail\n"
        "1,2,SMS_SENT,3,4,1,unfinished";
    sl_batch *b = sl__batch_new(f->s, 16);
    sl__csv_block k = {0};
    size_t used;
    bool failed;
    uint32_t got = sl__csv_decode_block(&f->d, &k, text, strlen(text), b, &used, &failed);
    assert_int_equal(got, 4);
    assert_false(failed);
    assert_int_equal(used, strlen(text) - strlen("1,2,SMS_SENT,3,4,1,unfinished"));
    assert_int_equal(b->n, 4);
    const int64_t *ts = (const int64_t *)b->cols[0].data;
    const int64_t *cell = (const int64_t *)b->cols[3].data;
    const double *ratio = (const double *)b->cols[4].data;
    const uint8_t *ok = (const uint8_t *)b->cols[5].data;
    const sl_str *msisdn = (const sl_str *)b->cols[1].data;
    const sl_str *et = (const sl_str *)b->cols[2].data;
    const sl_str *note = (const sl_str *)b->cols[6].data;
    assert_int_equal(ts[0], 1767571200000LL);
    assert_int_equal(msisdn[0].len, 12);
    assert_memory_equal(msisdn[0].ptr, "491701234567", 12);
    assert_ptr_equal(et[0].ptr, f->s->cols[2].domain[0]);
    assert_int_equal(cell[0], 42);
    assert_true(ratio[0] == 0.25);
    assert_int_equal(ok[0], 1);
    assert_int_equal(note[0].len, 2); /* the \r is not part of the value */
    assert_memory_equal(note[0].ptr, "hi", 2);
    for (int c = 0; c < 7; c++) assert_int_equal(b->cols[c].valid[1], 0);
    assert_int_equal(ts[2], -5);
    assert_int_equal(cell[2], INT64_MIN);
    assert_true(ratio[2] == 1000.0);
    assert_int_equal(ok[2], 0);
    assert_int_equal(b->cols[6].valid[2], 0);
    assert_ptr_equal(et[2].ptr, f->s->cols[2].domain[4]);
    assert_int_equal(ts[3], INT64_MAX);
    assert_int_equal(cell[3], 7);
    assert_int_equal(b->cols[1].valid[3], 0);
    assert_int_equal(b->cols[4].valid[3], 0);
    for (uint32_t r = 0; r < 4; r++) assert_int_equal(b->kind[r], SL_KIND_DATA);
    sl__csv_block_free(&k);
    sl__batch_free(b);
}

/* Where the block stops: before a quote, a wrong field count, an empty
 * line, a bad value, and at the batch's room. */
static void test_stops(void **state)
{
    fx *f = *state;
    static const struct {
        const char *text;
        uint32_t rows;
        bool failed;
    } cases[] = {
        {"1,a,SMS_SENT,1,,,\n2,\"b\",SMS_SENT,2,,,\n3,c,SMS_SENT,3,,,\n", 1, false},
        {"1,a,SMS_SENT,1,,,\n2,b,SMS_SENT,2,,\n3,c,SMS_SENT,3,,,\n", 1, false},
        {"1,a,SMS_SENT,1,,,\n2,b,SMS_SENT,2,,,,\n", 1, false},
        {"1,a,SMS_SENT,1,,,\n\n3,c,SMS_SENT,3,,,\n", 1, false},
        {"1,a,SMS_SENT,1,,,\n\r\n3,c,SMS_SENT,3,,,\n", 1, false},
        {"1,a,SMS_SENT,1,,,\n2,b,SMS_SENT,x,,,\n", 1, true},
        {"1,a,SMS_SENT,1,,,\n2,b,SMS_GONE,2,,,\n", 1, true},
        {"1,a,SMS_SENT,1,,,\n2,b,SMS_SENT,2,zz,,\n", 1, true},
        {"1,a,SMS_SENT,1,,,\n2,b,SMS_SENT,2,,maybe,\n", 1, true},
        {"1,a,SMS_SENT,1,,,\n2,b,SMS_SENT,99999999999999999999,,,\n", 1, true},
        {"x,a,SMS_SENT,1,,,\n", 0, true},
        {"\"1\",a,SMS_SENT,1,,,\n", 0, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_batch *b = sl__batch_new(f->s, 16);
        sl__csv_block k = {0};
        size_t used;
        bool failed;
        const char *t = cases[i].text;
        uint32_t got = sl__csv_decode_block(&f->d, &k, t, strlen(t), b, &used, &failed);
        if (got != cases[i].rows || failed != cases[i].failed)
            fail_msg("case %zu: %u rows failed=%d", i, got, failed);
        assert_int_equal(b->n, got);
        assert_int_equal(used, got ? (size_t)(strchr(t, '\n') - t) + 1 : 0);
        sl__csv_block_free(&k);
        sl__batch_free(b);
        compare_ways(&f->d, f->s, t, strlen(t), 16);
    }
    /* the room: 3 rows of 5 lines */
    const char *t = "1,,,,,,\n2,,,,,,\n3,,,,,,\n4,,,,,,\n5,,,,,,\n";
    sl_batch *b = sl__batch_new(f->s, 3);
    sl__csv_block k = {0};
    size_t used;
    bool failed;
    assert_int_equal(sl__csv_decode_block(&f->d, &k, t, strlen(t), b, &used, &failed), 3);
    assert_int_equal(used, 24);
    assert_int_equal(sl__csv_decode_block(&f->d, &k, t, strlen(t), b, &used, &failed), 0);
    assert_int_equal(used, 0);
    sl__csv_block_free(&k);
    sl__batch_free(b);
}

/* Digit runs of every length 1..21, with '-', '+' or no sign, in every
 * position of the line, exact or a rejected row on overflow. */
static void test_digit_runs(void **state)
{
    fx *f = *state;
    const char *digits = "912345678901234567890";
    for (int len = 1; len <= 21; len++) {
        for (int sign = 0; sign < 3; sign++) {
            for (int pad = 0; pad < 17; pad++) {
                char text[256];
                char num[32];
                snprintf(num, sizeof num, "%s%.*s", sign == 1 ? "-" : sign == 2 ? "+" : "",
                         len, digits);
                /* pad shifts the number across the 16-byte steps; the
                 * number is both ts (first field) and cell_id */
                int n = snprintf(text, sizeof text, "%s,%.*s,SMS_SENT,%s,,,\n7,a,SMS_SENT,%s,,,\n",
                                 num, pad, "abcdefghijklmnopq", num, num);
                uint32_t rows = (uint32_t)compare_ways(&f->d, f->s, text, (size_t)n, 8);
                /* fits in int64: |v| <= 9223372036854775807 (or -...808) */
                bool fits = len <= 18 || (len == 19 && strncmp(digits, "9223372036854775807", 19) <= 0);
                if (fits) assert_int_equal(rows, 2);
                else assert_int_equal(rows, 0);
                if (fits && sign != 2) { /* the block's value itself */
                    sl_batch *b = sl__batch_new(f->s, 4);
                    sl__csv_block k = {0};
                    size_t used;
                    bool failed;
                    assert_int_equal(sl__csv_decode_block(&f->d, &k, text, (size_t)n, b,
                                                          &used, &failed), 2);
                    int64_t want = (int64_t)strtoll(num, NULL, 10);
                    assert_int_equal(((int64_t *)b->cols[0].data)[0], want);
                    assert_int_equal(((int64_t *)b->cols[3].data)[1], want);
                    sl__csv_block_free(&k);
                    sl__batch_free(b);
                }
            }
        }
    }
    /* the limits exactly */
    static const char *const edge[] = {
        "9223372036854775807", "9223372036854775808", "-9223372036854775808",
        "-9223372036854775809", "-0", "0000000000000000000001", "-", "+", "1-", "12a4",
        "1234567a", "123456789012345a", "99999999999999999", "999999999999999999"};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        char text[128];
        int n = snprintf(text, sizeof text, "1,a,SMS_SENT,%s,,,\n", edge[i]);
        compare_ways(&f->d, f->s, text, (size_t)n, 4);
        n = snprintf(text, sizeof text, "%s\n", edge[i]); /* at the buffer's start */
        compare_ways(&f->d, f->s, text, (size_t)n, 4);
    }
}

/* Every structural byte at every offset: a line of one field grown a byte
 * at a time, so its delimiter, CR, newline and a quote each fall on every
 * position of the 16-byte steps, after lines of every length. */
static void test_boundaries(void **state)
{
    fx *f = *state;
    char text[512];
    for (int lead = 0; lead < 40; lead++) {
        for (int w = 0; w < 24; w++) {
            for (int variant = 0; variant < 4; variant++) {
                int n = 0;
                if (lead > 0) /* a first line of `lead` bytes in its note */
                    n += snprintf(text + n, sizeof text - (size_t)n, "1,a,SMS_SENT,1,,,%.*s\n",
                                  lead, "0123456789012345678901234567890123456789");
                n += snprintf(text + n, sizeof text - (size_t)n, "2,%.*s,CALL_PLACED,2,,,z%s",
                              w, "bbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                              variant == 0 ? "\n" : variant == 1 ? "\r\n"
                              : variant == 2 ? "\"q\"\n" : "\n3,c,SMS_SENT,3,,,");
                n += snprintf(text + n, sizeof text - (size_t)n, "4,d,SMS_SENT,4,,,\n");
                compare_ways(&f->d, f->s, text, (size_t)n, 64);
                compare_ways(&f->d, f->s, text, (size_t)n, 1);
            }
        }
    }
}

/* Header-mapped fields: skipped fields, unmapped columns NULL, a
 * projected-out string column; and a tab delimiter. */
static void test_mapping(void **state)
{
    fx *f = *state;
    const char *h = "extra,cell_id,ts,event_type,msisdn";
    assert_true(sl__csv_set_header(&f->d, h, strlen(h)) > 0);
    const char *t = "zz,5,10,SMS_SENT,4917\n,6,11,DATA_SESSION,\nq,7,12,SMS_SENT,x\n";
    assert_int_equal(compare_ways(&f->d, f->s, t, strlen(t), 8), 3);
    sl__csv_project(&f->d, 1u << 0 | 1u << 3); /* msisdn and note unread */
    assert_int_equal(compare_ways(&f->d, f->s, t, strlen(t), 8), 3);
    sl__csv_dec tab;
    sl__csv_init(&tab, f->s, '\t');
    const char *tt = "1\ta,b\tSMS_SENT\t2\t0.5\tfalse\tx y\n2\t\tSMS_SENT\t3\t\t\t\n";
    assert_int_equal(compare_ways(&tab, f->s, tt, strlen(tt), 8), 2);
    sl__csv_close(&tab);
}

/* One column: an empty line (or a lone CR) is no record, not a NULL row. */
static void test_one_column(void **state)
{
    (void)state;
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "note", SL_STRING);
    sl__csv_dec d;
    sl__csv_init(&d, s, ',');
    const char *t = "a\n\nb\r\n\r\nccccccccccccccccccccc\n\n";
    assert_int_equal(compare_ways(&d, s, t, strlen(t), 16), 3);
    sl_batch *b = sl__batch_new(s, 16);
    sl__csv_block k = {0};
    size_t used;
    bool failed;
    assert_int_equal(sl__csv_decode_block(&d, &k, t, strlen(t), b, &used, &failed), 1);
    assert_int_equal(used, 2);
    sl__csv_block_free(&k);
    sl__batch_free(b);
    sl__csv_close(&d);
    sl_schema_free(s);
}

/* Plain dates (YYYY-MM-DD) take a quick path in the TIMESTAMP conversion:
 * every year, month 00..13 and day 00..32 of a range of years (and the
 * leap-year rules' edges) against sl__parse_ts itself, and broken forms. */
static void test_dates(void **state)
{
    fx *f = *state;
    sl_batch *b = sl__batch_new(f->s, 1);
    static const int years[] = {0, 1, 4, 100, 400, 1600, 1700, 1899, 1900, 1904, 1970,
                                1999, 2000, 2001, 2024, 2026, 2100, 2400, 9999};
    int checked = 0;
    for (size_t yi = 0; yi < sizeof years / sizeof years[0]; yi++) {
        for (int m = 0; m <= 13; m++) {
            for (int d = 0; d <= 32; d++) {
                char t[16];
                snprintf(t, sizeof t, "%04d-%02d-%02d", years[yi], m, d);
                int64_t want = 0, got = 0;
                int prc = sl__parse_ts(t, 10, &want);
                int rc = sl__dec_value(&f->d.t, 0, t, 10, false, false, b, 0);
                assert_int_equal(rc == SL__CONV_OK, prc == 0);
                if (prc == 0) {
                    got = ((int64_t *)b->cols[0].data)[0];
                    assert_int_equal(got, want);
                    checked++;
                }
            }
        }
    }
    /* 19 years, 8 of them leap years: 0, 4, 400, 1600, 1904, 2000, 2024, 2400 */
    assert_int_equal(checked, 19 * 365 + 8);
    static const char *const bad[] = {"2026-1-05x", "2026/01/05", "2026-01-5 ", "20a6-01-05",
                                      "2026-0a-05", "2026-01-0a", "+026-01-05", "2026-02-29"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t want;
        int prc = sl__parse_ts(bad[i], 10, &want);
        int rc = sl__dec_value(&f->d.t, 0, bad[i], 10, false, false, b, 0);
        assert_int_equal(rc == SL__CONV_OK, prc == 0);
        assert_int_not_equal(rc, SL__CONV_OK);
    }
    sl__batch_free(b);
}

/* Random documents of valid and broken lines, decoded both ways. */
static void test_differential(void **state)
{
    fx *f = *state;
    unsigned seed = tu_seed("test_csv_block differential");
    uint64_t x = 0x9E3779B97F4A7C15ULL ^ seed;
#define RND() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
    static const char *const vals[][8] = {
        {"1767571200000", "-1", "0", "2026-01-05T00:00:01Z", "9223372036854775807", "", "+3", "x1"},
        {"491701234567", "", "a", "a longer value than sixteen", "\"quoted, with comma\"", "b\"", "c", "\"\"\"\""},
        {"SMS_SENT", "DATA_SESSION", "CALL_RECEIVED", "", "sms_sent", "SMS", "CALL_PLACED", "SMS_RECEIVED"},
        {"42", "-42", "", "12345678", "123456789", "99999999999999999999", "7 ", "1234567"},
        {"0.25", "", "1e3", "-0", "nan", "x", "3", ".5"},
        {"true", "false", "", "1", "0", "TRUE", "yes", "f"},
        {"hi", "", "a b", "\"multi\nline\"", "0123456789abcdefghij", "z", "\"\"", "w"}};
    char *text = malloc(1 << 16);
    for (int doc = 0; doc < 300; doc++) {
        size_t n = 0;
        int lines = 1 + (int)(RND() % 200);
        int noise = (int)(RND() % 4); /* 0: clean documents */
        for (int l = 0; l < lines && n < (1 << 16) - 512; l++) {
            int nf = 7;
            if (noise && RND() % 23 == 0) nf = 6 + (int)(RND() % 3);
            if (noise && RND() % 31 == 0) nf = 0; /* empty line */
            for (int c = 0; c < nf; c++) {
                int pick = noise ? (int)(RND() % 8) : (int)(RND() % 3);
                if (!noise && c == 6) pick = (int)(RND() % 2);
                const char *v = vals[c % 7][pick]; /* an 8th field repeats the first */
                if (!noise && c == 0) v = RND() % 2 ? "1767571200000" : "17";
                n += (size_t)snprintf(text + n, 512, "%s%s", c ? "," : "", v);
            }
            if (noise && RND() % 11 == 0) text[n++] = '\r';
            text[n++] = '\n';
        }
        size_t cut = RND() % 12;
        if (RND() % 3 == 0 && cut < n) n -= cut; /* a cut last line */
        uint32_t cap = RND() % 2 ? 1024 : 1 + (uint32_t)(RND() % 40);
        int brows = compare_ways(&f->d, f->s, text, n, cap);
        if (!noise && cap == 1024 && lines >= 2) assert_true(brows > 0);
    }
    free(text);
#undef RND
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digit_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_boundaries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mapping, setup, teardown),
        cmocka_unit_test(test_one_column),
        cmocka_unit_test_setup_teardown(test_dates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_differential, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
