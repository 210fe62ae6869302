/* test_decode_paths.c — the decoders' fast paths against an independent
 * expectation: JSON string bodies of every length 0..80 with a special byte
 * (escaped quote, backslash, \u escape, raw control byte) at every position,
 * CSV lines whose delimiters and quotes fall at every offset of the
 * 16- and 8-byte blocks, and binary VARCHARs of every width 1..70 with
 * their padding broken at every position; plus projection pushdown in the CSV (fast and
 * general path), JSON and binary decoders: unread VARCHAR columns come out
 * NULL, read ones intact, and the same records are rejected as without it.
 *
 * The Makefile builds this file twice: as build/tests/test_decode_paths
 * (SSE2 where the compiler targets it) and as
 * build/tests/test_decode_paths_scalar with csv.c, jsonl.c, binrec.c compiled with
 * SL_NO_SIMD, so the 64-bit-word path non-x86 builds use is tested too.
 * Expectations are built here byte by byte, never by the decoders. */
#include <stdio.h>

#include "testutil.h"
#include "io/decode.h"

static const char *const kinds[] = {"view", "click", NULL};

static void assert_str(const sl_batch *b, int col, uint32_t row, const char *want,
                       size_t wn)
{
    const sl_str *v = &((const sl_str *)b->cols[col].data)[row];
    assert_int_equal(b->cols[col].valid[row], 1);
    assert_int_equal(v->len, wn);
    assert_memory_equal(v->ptr, want, wn);
}

/* ---- JSON string scanning ------------------------------------------------ */
/* {"a":"<body>","b":7} where body is n 'x' bytes with `special` at `at`
 * (or none); want is the decoded value. */
static void json_case(sl__json_dec *d, sl_batch *b, size_t n, int at, int special)
{
    char line[256], want[128];
    size_t k = 0, w = 0;
    k += (size_t)snprintf(line, sizeof line, "{\"a\":\"");
    for (size_t i = 0; i < n; i++) {
        if ((int)i == at) {
            switch (special) {
            case 0: memcpy(line + k, "\\\"", 2); k += 2; want[w++] = '"'; break;
            case 1: memcpy(line + k, "\\\\", 2); k += 2; want[w++] = '\\'; break;
            case 2: memcpy(line + k, "\\u00e9", 6); k += 6; want[w++] = (char)0xC3;
                    want[w++] = (char)0xA9; break;
            default: line[k++] = 0x01; break; /* raw control byte: malformed */
            }
        } else {
            line[k++] = (char)('a' + i % 26);
            want[w++] = (char)('a' + i % 26);
        }
    }
    k += (size_t)snprintf(line + k, sizeof line - k, "\",\"b\":7}");
    char reason[64] = "";
    sl__batch_clear(b);
    int rc = sl__json_decode(d, line, k, b, reason, sizeof reason);
    if (special == 3 && at >= 0 && (size_t)at < n) {
        assert_int_equal(rc, SL_EPARSE);
        assert_string_equal(reason, "malformed_json");
        return;
    }
    assert_int_equal(rc, 0);
    assert_str(b, 0, 0, want, w);
    assert_int_equal(((int64_t *)b->cols[1].data)[0], 7);
}

static void test_json_strings(void **state)
{
    (void)state;
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "a", SL_STRING);
    sl_schema_add(s, "b", SL_INT64);
    sl__json_dec d;
    sl__json_init(&d, s);
    sl_batch *b = sl__batch_new(s, 4);
    for (size_t n = 0; n <= 80; n++) {
        json_case(&d, b, n, -1, 0);
        for (int at = 0; at < (int)n; at++)
            for (int sp = 0; sp < 4; sp++) json_case(&d, b, n, at, sp);
    }
    /* an unterminated string of every length fails, never reads past */
    for (size_t n = 0; n <= 40; n++) {
        char *line = malloc(n + 7);
        memcpy(line, "{\"a\":\"", 6);
        memset(line + 6, 'q', n);
        char reason[64];
        sl__batch_clear(b);
        assert_int_equal(sl__json_decode(&d, line, n + 6, b, reason, sizeof reason),
                         SL_EPARSE);
        free(line);
    }
    sl__batch_free(b);
    sl__json_close(&d);
    sl_schema_free(s);
}

/* ---- CSV field splitting ------------------------------------------------- */
/* ---- JSON: the structural route against the general parser --------------- */

static sl_schema *route_schema(void)
{
    static const char *const kinds[] = {"view", "click", NULL};
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "user_id", SL_STRING);
    sl_schema_add(s, "ad_id", SL_STRING);
    sl_schema_set_domain(s, sl_schema_add(s, "event_type", SL_STRING), kinds);
    sl_schema_add(s, "event_time", SL_TIMESTAMP);
    sl_schema_add(s, "n", SL_INT64);
    sl_schema_add(s, "x", SL_FLOAT64);
    sl_schema_add(s, "ok", SL_BOOL);
    return s;
}

/* Row r of a and row q of b hold the same values. */
static void assert_same_row(const sl_schema *s, const sl_batch *a, uint32_t r,
                            const sl_batch *b, uint32_t q)
{
    assert_int_equal(a->kind[r], b->kind[q]);
    for (int c = 0; c < s->n; c++) {
        assert_int_equal(a->cols[c].valid[r], b->cols[c].valid[q]);
        if (!a->cols[c].valid[r]) continue;
        switch (s->cols[c].type) {
        case SL_STRING: {
            const sl_str *x = (const sl_str *)a->cols[c].data + r;
            const sl_str *y = (const sl_str *)b->cols[c].data + q;
            assert_int_equal(x->len, y->len);
            assert_memory_equal(x->ptr, y->ptr, x->len);
            break;
        }
        case SL_BOOL:
            assert_int_equal(((uint8_t *)a->cols[c].data)[r], ((uint8_t *)b->cols[c].data)[q]);
            break;
        default:
            assert_memory_equal((int64_t *)a->cols[c].data + r, (int64_t *)b->cols[c].data + q, 8);
        }
    }
}

/* Plain lines take the structural route and give exactly the expected
 * values: a string body of every length 0..300 (its closing quote at every
 * offset of the 64-byte blocks, lines past one block), spaces around every
 * token, non-ASCII bytes, and the longest line the route takes. */
static void route_values(sl__json_dec *d, sl_batch *b)
{
    char line[SL__JSON_FAST_MAX + 64], body[400];
    for (size_t n = 0; n <= 300; n++) {
        for (size_t i = 0; i < n; i++)
            body[i] = i % 7 == 3 ? (char)(0x80 + i % 0x7F) : (char)('a' + i % 26);
        body[n] = 0;
        sl__batch_clear(b);
        int k = snprintf(line, sizeof line,
                         "%*s{ \"ad_id\" :\"%s\",\"event_type\": \"click\" , "
                         "\"event_time\":\"%zu\",\"zz\":[1],\"n\":-%zu,\"x\":1.5e1,"
                         "\"ok\":false,\"user_id\":null}%*s",
                         (int)(n % 3), "", body, 1700000000000 + n, n, (int)(n % 5), "");
        if (n % 11 == 0) { /* the unknown key's array refuses the route */
            assert_false(sl__json_decode_fast(d, line, (size_t)k, b));
            assert_int_equal(b->n, 0);
            continue;
        }
        memmove(strstr(line, "\"zz\":[1],"), strstr(line, "\"zz\":[1],") + 9,
                strlen(strstr(line, "\"zz\":[1],") + 9) + 1);
        k -= 9;
        assert_true(sl__json_decode_fast(d, line, (size_t)k, b));
        assert_int_equal(b->n, 1);
        assert_str(b, 1, 0, body, n);
        assert_str(b, 2, 0, "click", 5);
        assert_int_equal(((int64_t *)b->cols[3].data)[0], 1700000000000 + (int64_t)n);
        assert_int_equal(((int64_t *)b->cols[4].data)[0], -(int64_t)n);
        assert_true(((double *)b->cols[5].data)[0] == 15.0);
        assert_int_equal(b->cols[6].valid[0], 1);
        assert_int_equal(((uint8_t *)b->cols[6].data)[0], 0);
        assert_int_equal(b->cols[0].valid[0], 0);
    }
    /* the longest line the route takes, and one byte more */
    for (size_t len = SL__JSON_FAST_MAX; len <= SL__JSON_FAST_MAX + 1; len++) {
        sl__batch_clear(b);
        size_t pad = len - strlen("{\"ad_id\":\"\"}");
        int k = snprintf(line, sizeof line, "{\"ad_id\":\"%0*d\"}", (int)pad, 7);
        assert_int_equal((size_t)k, len);
        assert_int_equal(sl__json_decode_fast(d, line, len, b), len == SL__JSON_FAST_MAX);
        char reason[64];
        sl__batch_clear(b);
        assert_int_equal(sl__json_decode(d, line, len, b, reason, sizeof reason), 0);
        assert_int_equal(((sl_str *)b->cols[1].data)[0].len, pad);
    }
}

/* Lines the route must hand to the general parser: escapes, control bytes
 * (tab, CR), and every kind of bad line. */
static void route_refusals(sl__json_dec *d, sl_batch *b)
{
    static const char *const lines[] = {
        "{\"ad_id\":\"a\\\"b\"}", "{\"ad_id\":\"\\u0041\"}", "{\"a\\u0064_id\":\"x\"}",
        "{\"ad_id\":\t\"x\"}", "{\"ad_id\":\"x\"}\r", "{\"ad_id\":\"x\tz\"}",
        "", " ", "}", "{", "{\"n\":1", "{\"n\":1}x", "{\"n\":1,}", "{n:1}", "{\"n\" 1}",
        "{\"n\":01}", "{\"n\":1.}", "{\"n\":-}", "{\"n\":tru}", "{\"n\":nul}",
        "{\"ad_id\":\"abc}", "{\"ad_id\":\"abc\"", "{\"ad_id\":\"abc\" \"n\":1}",
        "{\"n\":{\"a\":1}}", "{\"q\":[1]}", "{\"n\":1.5}", "{\"n\":\"12a\"}",
        "{\"event_time\":\"yesterday\"}", "{\"ok\":\"maybe\"}", "{\"x\":true}",
        "{\"event_type\":\"purchase\"}", "{\"ad_id\":\"x\"}}", "{}}", "{\"\":}",
        "{\"n\":1}{\"n\":2}", "[{\"n\":1}]", "{\"n\":1 }x ", "{\"n\":1;\"x\":2}",
        "{\"n\":1,,\"x\":2}", "{\"n\"::1}", "{,\"n\":1}", "{\"n\":1 \"x\":2}",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        sl__batch_clear(b);
        if (sl__json_decode_fast(d, lines[i], strlen(lines[i]), b))
            fail_msg("the structural route took: %s", lines[i]);
        assert_int_equal(b->n, 0);
    }
}

/* Random edits of plain lines (quotes, braces, colons, commas, spaces,
 * backslashes, control and non-ASCII bytes): the default decoder (route
 * first) and a general-only one return the same code, the same reason and
 * the same row. Fixed seed: the same lines every run. */
static void route_differential(sl__json_dec *d, sl__json_dec *g, sl_batch *b1, sl_batch *b2)
{
    static const char *const seeds[] = {
        "{\"user_id\": \"ef0fd967-c327-aa06-52e7-486c5d83a140\", \"ad_id\": "
        "\"be112bc1-cfc2-6411-c949-7dc4f3dfe94b\", \"event_type\": \"view\", "
        "\"event_time\": \"1699999999603\", \"ip_address\": \"10.0.217.239\"}",
        "{\"n\":-42,\"x\":1.5e2,\"ok\":true,\"event_time\":1767571200000,\"ad_id\":null}",
        "{ }"};
    static const char alphabet[] = "\",\\{}[]:;/#'0123456789-+.eEtrufalsn \t\r\x01vw_\xC3\xFF";
    uint64_t x = 0x2545F4914F6CDD1DULL;
    char buf[512], r1[128], r2[128];
    long taken = 0;
    for (int it = 0; it < 60000; it++) {
        const char *sd = seeds[it % 3];
        size_t n = strlen(sd);
        memcpy(buf, sd, n);
        for (int e = 0; e < it % 4; e++) { /* a quarter of the lines stay intact */
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = n ? (size_t)(x >> 8) % n : 0;
            char ch = alphabet[(x >> 40) % (sizeof alphabet - 1)];
            switch ((x >> 20) % 3) {
            case 0: if (n) buf[at] = ch; break;
            case 1: if (n < sizeof buf - 1) { memmove(buf + at + 1, buf + at, n - at); buf[at] = ch; n++; } break;
            default: if (n) { memmove(buf + at, buf + at + 1, n - at - 1); n--; } break;
            }
        }
        char *line = malloc(n ? n : 1); /* exact size: ASan sees any overread */
        memcpy(line, buf, n);
        if (b1->n == b1->cap) { sl__batch_clear(b1); sl__batch_clear(b2); }
        r1[0] = r2[0] = 0;
        const uint32_t row = b1->n;
        int rc1 = sl__json_decode(d, line, n, b1, r1, sizeof r1);
        int rc2 = sl__json_decode(g, line, n, b2, r2, sizeof r2);
        if (rc1 != rc2 || strcmp(r1, r2) != 0)
            fail_msg("line %.*s: %d %s vs general %d %s", (int)n, line, rc1, r1, rc2, r2);
        assert_int_equal(b1->n, b2->n);
        if (rc1 == 0) assert_same_row(d->t.schema, b1, row, b2, row);
        sl__batch_clear(b2); /* probe the route alone on a scratch batch */
        if (sl__json_decode_fast(d, line, n, b2)) taken++;
        sl__batch_clear(b2);
        for (uint32_t r = 0; r < b1->n; r++) /* keep b2 row-aligned with b1 */
            assert_int_equal(sl__json_decode(g, "{}", 2, b2, r2, sizeof r2), 0);
        free(line);
    }
    /* the intact quarter, at least, went the structural way */
    assert_true(taken >= 15000);
}

static void test_json_route(void **state)
{
    (void)state;
    sl_schema *s = route_schema();
    sl__json_dec d, g;
    sl__json_init(&d, s);
    sl__json_init(&g, s);
    g.general_only = true;
    sl_batch *b1 = sl__batch_new(s, 64), *b2 = sl__batch_new(s, 64);
    const bool avx2 = d.avx2;
    for (int pass = 0; pass < 2; pass++) { /* AVX2 if the CPU has it, then SSE2/word */
        if (pass == 1) {
            if (!avx2) break;
            d.avx2 = false;
        }
        route_values(&d, b1);
        route_refusals(&d, b1);
        sl__batch_clear(b1);
        sl__batch_clear(b2);
        route_differential(&d, &g, b1, b2);
        sl__batch_clear(b1);
        sl__batch_clear(b2);
    }
    printf("json structural route: %s\n", avx2 ? "AVX2 and SSE2/word tested" : "SSE2/word tested");
    sl__batch_free(b1);
    sl__batch_free(b2);
    sl__json_close(&d);
    sl__json_close(&g);
    sl_schema_free(s);
}

static void test_csv_offsets(void **state)
{
    (void)state;
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "x", SL_STRING);
    sl_schema_add(s, "n", SL_INT64);
    sl_schema_add(s, "y", SL_STRING);
    sl__csv_dec d;
    sl__csv_init(&d, s, ',');
    sl_batch *b = sl__batch_new(s, 4);
    char line[200], reason[64];
    for (int lx = 0; lx <= 40; lx++)
        for (int ly = 0; ly <= 20; ly++)
            for (int quote = 0; quote < 2; quote++) {
                /* x: lx letters (quoted when `quote`), n: 12345, y: ly letters */
                size_t k = 0;
                if (quote) line[k++] = '"';
                for (int i = 0; i < lx; i++) line[k++] = (char)('A' + i % 26);
                if (quote) line[k++] = '"';
                k += (size_t)snprintf(line + k, sizeof line - k, ",12345,");
                for (int i = 0; i < ly; i++) line[k++] = (char)('a' + i % 26);
                sl__batch_clear(b);
                assert_int_equal(sl__csv_decode(&d, line, k, b, reason, sizeof reason), 0);
                char want[64];
                for (int i = 0; i < lx; i++) want[i] = (char)('A' + i % 26);
                if (lx == 0 && !quote)
                    assert_int_equal(b->cols[0].valid[0], 0); /* unquoted empty: NULL */
                else
                    assert_str(b, 0, 0, want, (size_t)lx);
                assert_int_equal(((int64_t *)b->cols[1].data)[0], 12345);
                for (int i = 0; i < ly; i++) want[i] = (char)('a' + i % 26);
                if (ly == 0)
                    assert_int_equal(b->cols[2].valid[0], 0);
                else
                    assert_str(b, 2, 0, want, (size_t)ly);
                /* one delimiter too many, wherever it falls */
                line[k++] = ',';
                sl__batch_clear(b);
                assert_int_equal(sl__csv_decode(&d, line, k, b, reason, sizeof reason),
                                 SL_EPARSE);
                assert_string_equal(reason, "wrong_field_count");
            }
    sl__batch_free(b);
    sl__csv_close(&d);
    sl_schema_free(s);
}

/* ---- projection pushdown ------------------------------------------------- */
/* id VARCHAR (unread), kind VARCHAR domain (unread), n BIGINT (unread),
 * ad VARCHAR (read), note VARCHAR (unread) */
static sl_schema *proj_schema(void)
{
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "id", SL_STRING);
    sl_schema_set_domain(s, sl_schema_add(s, "kind", SL_STRING), kinds);
    sl_schema_add(s, "n", SL_INT64);
    sl_schema_add(s, "ad", SL_STRING);
    sl_schema_add(s, "note", SL_STRING);
    return s;
}
#define READ_AD (1ULL << 3)

static void assert_projected(const sl_batch *b, uint32_t row, const char *ad, int64_t n)
{
    assert_int_equal(b->cols[0].valid[row], 0); /* id: not read, NULL */
    assert_int_equal(b->cols[4].valid[row], 0); /* note: not read, NULL */
    assert_int_equal(b->cols[1].valid[row], 1); /* kind: a domain, still converted */
    assert_int_equal(((int64_t *)b->cols[2].data)[row], n); /* n: still converted */
    assert_str(b, 3, row, ad, strlen(ad));
}

static void test_project_csv(void **state)
{
    (void)state;
    sl_schema *s = proj_schema();
    sl__csv_dec d;
    sl__csv_init(&d, s, ',');
    sl__csv_project(&d, READ_AD);
    sl_batch *b = sl__batch_new(s, 8);
    char reason[64];
    const char *fast = "u1,view,42,ad-7,hello";
    const char *general = "\"u\"\"1\",click,43,\"ad,8\",\"x\"\"y\"";
    assert_int_equal(sl__csv_decode(&d, fast, strlen(fast), b, reason, sizeof reason), 0);
    assert_int_equal(sl__csv_decode(&d, general, strlen(general), b, reason, sizeof reason), 0);
    assert_projected(b, 0, "ad-7", 42);
    assert_projected(b, 1, "ad,8", 43);
    /* rejected exactly as without the projection */
    const char *bad[] = {"u1,view,4x,ad,n", "u1,vieww,4,ad,n", "\"u1\",view,x,\"ad\",n",
                         "u1,view,4,ad"};
    const char *why[] = {"parse_error:n", "unknown_value:kind", "parse_error:n",
                         "wrong_field_count"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(sl__csv_decode(&d, bad[i], strlen(bad[i]), b, reason, sizeof reason),
                         SL_EPARSE);
        assert_string_equal(reason, why[i]);
    }
    /* all columns read again: id and note are back */
    sl__csv_project(&d, ~0ULL);
    sl__batch_clear(b);
    assert_int_equal(sl__csv_decode(&d, fast, strlen(fast), b, reason, sizeof reason), 0);
    assert_str(b, 0, 0, "u1", 2);
    assert_str(b, 4, 0, "hello", 5);
    sl__batch_free(b);
    sl__csv_close(&d);
    sl_schema_free(s);
}

static void test_project_json(void **state)
{
    (void)state;
    sl_schema *s = proj_schema();
    sl__json_dec d;
    sl__json_init(&d, s);
    sl__dec_types_project(&d.t, READ_AD);
    sl_batch *b = sl__batch_new(s, 8);
    char reason[64];
    const char *ok = "{\"id\":\"u\\\"1\",\"kind\":\"view\",\"n\":42,\"ad\":\"a\\u00e9\","
                     "\"note\":\"\\ud83d\\ude00 long note\"}";
    assert_int_equal(sl__json_decode(&d, ok, strlen(ok), b, reason, sizeof reason), 0);
    assert_projected(b, 0, "a\xc3\xa9", 42);
    const char *bad[] = {"{\"id\":\"u\",\"kind\":\"view\",\"n\":\"x\",\"ad\":\"a\"}",
                         "{\"kind\":\"viewx\",\"ad\":\"a\"}",
                         "{\"note\":\"\\ud800 lone\",\"ad\":\"a\"}",
                         "{\"note\":{\"nested\":1}}"};
    const char *why[] = {"parse_error:n", "unknown_value:kind", "malformed_json",
                         "nested_value:note"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(sl__json_decode(&d, bad[i], strlen(bad[i]), b, reason, sizeof reason),
                         SL_EPARSE);
        assert_string_equal(reason, why[i]);
    }
    sl__batch_free(b);
    sl__json_close(&d);
    sl_schema_free(s);
}

static void put_str(unsigned char *rec, size_t off, size_t w, const char *v)
{
    memset(rec + off, 0, w);
    memcpy(rec + off, v, strlen(v));
}

static void test_project_binary(void **state)
{
    (void)state;
    sl_schema *s = proj_schema();
    sl__bin_dec d;
    char err[128], reason[64];
    /* id 8 + kind 8 + n 8 + ad 8 + note 8 = 40 bytes */
    assert_int_equal(sl__bin_init(&d, s, "id:8,kind:8,ad:8,note:8", err, sizeof err), 0);
    assert_int_equal(d.size, 40);
    sl__bin_project(&d, READ_AD);
    assert_int_equal(d.copy_lo, 24);
    assert_int_equal(d.copy_hi, 32);
    sl_batch *b = sl__batch_new(s, 8);
    unsigned char rec[40];
    put_str(rec, 0, 8, "user-1");
    put_str(rec, 8, 8, "click");
    int64_t n = 42;
    memcpy(rec + 16, &n, 8); /* little-endian hosts only build this test */
    put_str(rec, 24, 8, "ad-12345");
    put_str(rec, 32, 8, "note");
    assert_int_equal(sl__bin_decode(&d, (const char *)rec, b, reason, sizeof reason), 0);
    assert_projected(b, 0, "ad-12345", 42);
    rec[0] = 0; /* a non-NUL byte after the padding of an unread column */
    rec[3] = 'z';
    assert_int_equal(sl__bin_decode(&d, (const char *)rec, b, reason, sizeof reason),
                     SL_EPARSE);
    assert_string_equal(reason, "parse_error:id");
    /* nothing read: no copy at all, every VARCHAR without a domain NULL */
    sl__bin_project(&d, 0);
    assert_int_equal(d.copy_hi - d.copy_lo, 0);
    put_str(rec, 0, 8, "user-1");
    sl__batch_clear(b);
    assert_int_equal(sl__bin_decode(&d, (const char *)rec, b, reason, sizeof reason), 0);
    assert_int_equal(b->cols[3].valid[0], 0);
    assert_int_equal(b->cols[1].valid[0], 1);
    sl__batch_free(b);
    sl__bin_close(&d);
    sl_schema_free(s);
}

/* Block decoding of binary records against the generator's own verdict
 * and against sl__bin_decode: 3,000 records of every type (read, unread and
 * domain VARCHARs of widths 5, 36 and 70, BOOL, INT64, FLOAT64), a tenth
 * of them broken in one column (a stray byte after the padding, a BOOL of
 * 2, a value outside the domain). Decoded the file source's way (blocks,
 * then the record a block stops at alone), the batch holds exactly the
 * good records, with the values written, and every bad record is rejected
 * with its column's reason. Fixed seed. */
static void test_binary_block(void **state)
{
    (void)state;
    static const char *const kinds[] = {"view", "click", "purchase", NULL};
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "user_id", SL_STRING);                                   /* unread, 36 */
    sl_schema_add(s, "n", SL_INT64);
    sl_schema_add(s, "ad_id", SL_STRING);                                     /* read, 36 */
    sl_schema_set_domain(s, sl_schema_add(s, "kind", SL_STRING), kinds);      /* domain, 8 */
    sl_schema_add(s, "ok", SL_BOOL);
    sl_schema_add(s, "tiny", SL_STRING);                                      /* read, 5 */
    sl_schema_add(s, "x", SL_FLOAT64);
    sl_schema_add(s, "note", SL_STRING);                                      /* unread, 70 */
    sl__bin_dec d;
    char err[128], reason[64];
    assert_int_equal(sl__bin_init(&d, s, "user_id:36,ad_id:36,kind:8,tiny:5,note:70", err,
                                  sizeof err), 0);
    sl__bin_project(&d, 1ULL << 1 | 1ULL << 2 | 1ULL << 3 | 1ULL << 4 | 1ULL << 5 | 1ULL << 6);
    const uint32_t R = d.size, N = 3000;
    assert_int_equal(R, 36 + 8 + 36 + 8 + 1 + 5 + 8 + 70);
    unsigned char *buf = calloc(N, R);
    char (*want_ad)[40] = calloc(N, 40);
    int *bad_col = malloc(N * sizeof *bad_col);
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (uint32_t i = 0; i < N; i++) {
        unsigned char *r = buf + (size_t)i * R;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        char t[80];
        snprintf(t, sizeof t, "user-%u", i);
        put_str(r, 0, 36, t);
        int64_t n = (int64_t)(x % 1000) - 500;
        memcpy(r + 36, &n, 8);
        snprintf(want_ad[i], 40, "%.*s", (int)(i % 37), "ad-0123456789abcdef0123456789abcdef01");
        put_str(r, 44, 36, want_ad[i]);
        put_str(r, 80, 8, kinds[i % 3]);
        r[88] = i % 5 == 0 ? 0xFF : (unsigned char)(i & 1);
        put_str(r, 89, 5, i % 4 ? "abcde" : "ab");
        double f = (double)i / 4;
        memcpy(r + 94, &f, 8);
        put_str(r, 102, 70, i % 2 ? "a note" : "");
        bad_col[i] = -1;
        if ((x >> 32) % 10 == 0) { /* break one column */
            static const int cols[] = {0, 2, 3, 4, 5, 7};
            static const uint32_t at[] = {35, 79, 87, 88, 93, 171};
            const int k = (int)((x >> 40) % 6);
            bad_col[i] = cols[k];
            if (cols[k] == 4) r[88] = 2;
            else if (cols[k] == 3) put_str(r, 80, 8, "viewx");
            else r[at[k]] = 'z'; /* after a NUL of the padding */
            if (cols[k] == 5) r[90] = 0; /* "a\0cdz" -> stray bytes */
            if (cols[k] == 2) r[44 + 30] = 0; /* a NUL before it, however long the text */
        }
    }
    sl_batch *b = sl__batch_new(s, 4096);
    uint32_t pos = 0, good = 0;
    long blocks = 0;
    while (pos < N) {
        const uint32_t got = sl__bin_decode_block(&d, (const char *)buf + (size_t)pos * R,
                                                  N - pos, b);
        blocks++;
        for (uint32_t i = pos; i < pos + got; i++) assert_int_equal(bad_col[i], -1);
        pos += got;
        good += got;
        if (pos == N) break;
        /* the record it stopped at: rejected alone, with its column */
        assert_int_not_equal(bad_col[pos], -1);
        assert_int_equal(sl__bin_decode(&d, (const char *)buf + (size_t)pos * R, b, reason,
                                        sizeof reason), SL_EPARSE);
        char want[64];
        snprintf(want, sizeof want, "%s:%s", bad_col[pos] == 3 ? "unknown_value" : "parse_error",
                 s->cols[bad_col[pos]].name);
        assert_string_equal(reason, want);
        pos++;
    }
    assert_int_equal(b->n, good);
    assert_true(blocks > 100); /* the breakages split the input */
    uint32_t row = 0;
    for (uint32_t i = 0; i < N; i++) {
        if (bad_col[i] != -1) continue;
        assert_int_equal(b->kind[row], SL_KIND_DATA);
        assert_int_equal(b->cols[0].valid[row], 0);
        assert_int_equal(b->cols[7].valid[row], 0);
        const unsigned char *r = buf + (size_t)i * R;
        int64_t n;
        memcpy(&n, r + 36, 8);
        assert_int_equal(((int64_t *)b->cols[1].data)[row], n);
        if (i % 37) assert_str(b, 2, row, want_ad[i], strlen(want_ad[i]));
        else assert_int_equal(b->cols[2].valid[row], 0);
        assert_str(b, 3, row, kinds[i % 3], strlen(kinds[i % 3]));
        assert_int_equal(b->cols[4].valid[row], i % 5 != 0);
        if (i % 5) assert_int_equal(((uint8_t *)b->cols[4].data)[row], i & 1);
        assert_str(b, 5, row, i % 4 ? "abcde" : "ab", i % 4 ? 5 : 2);
        assert_true(((double *)b->cols[6].data)[row] == (double)i / 4);
        row++;
    }
    sl__batch_free(b);
    free(buf);
    free(want_ad);
    free(bad_col);
    sl__bin_close(&d);
    sl_schema_free(s);
}

/* A VARCHAR of every width 1..70 with its text ending at every length and
 * a stray byte at every position after it: the length, or parse_error. */
static void test_binary_widths(void **state)
{
    (void)state;
    for (uint32_t w = 1; w <= 70; w++) {
        sl_schema *s = sl_schema_new();
        sl_schema_add(s, "v", SL_STRING);
        sl_schema_add(s, "n", SL_INT64);
        char spec[32], err[128], reason[64];
        snprintf(spec, sizeof spec, "v:%u", w);
        sl__bin_dec d;
        assert_int_equal(sl__bin_init(&d, s, spec, err, sizeof err), 0);
        sl_batch *b = sl__batch_new(s, 4);
        unsigned char rec[80];
        for (uint32_t len = 0; len <= w; len++)
            for (uint32_t stray = len; stray <= w; stray++) { /* stray == w: none */
                memset(rec, 0, sizeof rec);
                for (uint32_t i = 0; i < len; i++) rec[i] = (unsigned char)('a' + i % 26);
                if (stray > len && stray < w) rec[stray] = 'z';
                rec[w] = 5; /* n = 5, little-endian */
                sl__batch_clear(b);
                int rc = sl__bin_decode(&d, (const char *)rec, b, reason, sizeof reason);
                if (stray > len && stray < w) {
                    assert_int_equal(rc, SL_EPARSE);
                    assert_string_equal(reason, "parse_error:v");
                    continue;
                }
                assert_int_equal(rc, 0);
                if (len == 0) {
                    assert_int_equal(b->cols[0].valid[0], 0);
                } else {
                    char want[80];
                    for (uint32_t i = 0; i < len; i++) want[i] = (char)('a' + i % 26);
                    assert_str(b, 0, 0, want, len);
                }
                assert_int_equal(((int64_t *)b->cols[1].data)[0], 5);
            }
        sl__batch_free(b);
        sl__bin_close(&d);
        sl_schema_free(s);
    }
}

int main(void)
{
#if defined(SL_NO_SIMD)
    printf("decoders: 64-bit word path (SL_NO_SIMD)\n");
#elif defined(__SSE2__)
    printf("decoders: SSE2 path\n");
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_strings),
        cmocka_unit_test(test_json_route),
        cmocka_unit_test(test_csv_offsets),
        cmocka_unit_test(test_project_csv),
        cmocka_unit_test(test_project_json),
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        cmocka_unit_test(test_project_binary),
        cmocka_unit_test(test_binary_widths),
        cmocka_unit_test(test_binary_block),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
