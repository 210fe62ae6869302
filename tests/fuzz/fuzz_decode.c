/* fuzz_decode.c — libFuzzer target for the CSV and JSON Lines decoders: any
 * input line must be decoded or rejected with a reason, never crash, leak
 * or read out of bounds. The first byte picks the decoder and the header.
 * The CSV block decoder runs on the whole input as well, and every line it
 * takes must decode to the same values with the line decoder. A JSON line
 * is decoded twice, by the default decoder (structural route first) and by
 * the general parser alone: same code, same reason, same row. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/decode.h"

static sl_schema *schema(void)
{
    static sl_schema *s;
    if (s) return s;
    static const char *const types[] = {"SMS_SENT", "SMS_RECEIVED", "CALL_PLACED",
                                        "CALL_RECEIVED", "DATA_SESSION", NULL};
    s = sl_schema_new();
    sl_schema_add(s, "ts", SL_TIMESTAMP);
    sl_schema_set_identifier(s, sl_schema_add(s, "msisdn", SL_STRING));
    sl_schema_set_domain(s, sl_schema_add(s, "event_type", SL_STRING), types);
    sl_schema_add(s, "cell_id", SL_INT64);
    sl_schema_add(s, "rate", SL_FLOAT64);
    sl_schema_add(s, "ok", SL_BOOL);
    return s;
}

/* Row 0 of a and of b hold the same values. */
static void same_row(const sl_schema *s, const sl_batch *a, const sl_batch *b)
{
    SL_ASSERT(a->kind[0] == b->kind[0]);
    for (int c = 0; c < s->n; c++) {
        SL_ASSERT(a->cols[c].valid[0] == b->cols[c].valid[0]);
        if (!a->cols[c].valid[0]) continue;
        if (s->cols[c].type == SL_STRING) {
            const sl_str *x = (const sl_str *)a->cols[c].data, *y = (const sl_str *)b->cols[c].data;
            SL_ASSERT(x->len == y->len && memcmp(x->ptr, y->ptr, x->len) == 0);
        } else if (s->cols[c].type == SL_BOOL) {
            SL_ASSERT(((uint8_t *)a->cols[c].data)[0] == ((uint8_t *)b->cols[c].data)[0]);
        } else {
            SL_ASSERT(memcmp(a->cols[c].data, b->cols[c].data, 8) == 0);
        }
    }
}

/* The block decoder on text; the lines it consumed, replayed through the
 * line decoder, must give the same rows. */
static void block_vs_lines(const sl__csv_dec *d, const sl_schema *s, const char *text,
                           size_t len)
{
    sl_batch *bb = sl__batch_new(s, 64), *lb = sl__batch_new(s, 64);
    sl__csv_block k = {0};
    size_t used;
    bool failed;
    uint32_t got = sl__csv_decode_block(d, &k, text, len, bb, &used, &failed);
    SL_ASSERT(used <= len && bb->n == got);
    char reason[128];
    for (const char *p = text, *e = text + used; p < e;) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        SL_ASSERT(nl != NULL);
        size_t n = (size_t)(nl - p);
        if (n > 0 && p[n - 1] == '\r') n--;
        SL_ASSERT(sl__csv_decode(d, p, n, lb, reason, sizeof reason) == 0);
        p = nl + 1;
    }
    SL_ASSERT(lb->n == got);
    for (uint32_t r = 0; r < got; r++) {
        SL_ASSERT(bb->kind[r] == lb->kind[r]);
        for (int c = 0; c < s->n; c++) {
            SL_ASSERT(bb->cols[c].valid[r] == lb->cols[c].valid[r]);
            if (!bb->cols[c].valid[r]) continue;
            if (s->cols[c].type == SL_STRING) {
                const sl_str *x = (const sl_str *)bb->cols[c].data + r;
                const sl_str *y = (const sl_str *)lb->cols[c].data + r;
                SL_ASSERT(x->len == y->len && memcmp(x->ptr, y->ptr, x->len) == 0);
            } else if (s->cols[c].type == SL_BOOL) {
                SL_ASSERT(((uint8_t *)bb->cols[c].data)[r] == ((uint8_t *)lb->cols[c].data)[r]);
            } else {
                SL_ASSERT(memcmp((int64_t *)bb->cols[c].data + r,
                                 (int64_t *)lb->cols[c].data + r, 8) == 0);
            }
        }
    }
    sl__csv_block_free(&k);
    sl__batch_free(bb);
    sl__batch_free(lb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const sl_schema *s = schema();
    sl_batch *b = sl__batch_new(s, 4);
    char reason[128];
    const char *line = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] & 1) {
        sl__json_dec d, g;
        sl__json_init(&d, s);
        sl__json_init(&g, s);
        g.general_only = true;
        d.avx2 = d.avx2 && (data[0] & 2); /* half the inputs: the SSE2 blocks */
        sl_batch *gb = sl__batch_new(s, 4);
        char greason[128] = "";
        reason[0] = 0;
        int rc = sl__json_decode(&d, line, len, b, reason, sizeof reason);
        SL_ASSERT(rc == sl__json_decode(&g, line, len, gb, greason, sizeof greason));
        SL_ASSERT(strcmp(reason, greason) == 0 && b->n == gb->n);
        if (rc == 0) same_row(s, b, gb);
        sl__batch_free(gb);
        sl__json_close(&d);
        sl__json_close(&g);
    } else {
        sl__csv_dec d;
        sl__csv_init(&d, s, (data[0] & 2) ? '\t' : ',');
        /* half the time the input's first line is a header */
        const char *nl = memchr(line, '\n', len);
        if ((data[0] & 4) && nl) {
            sl__csv_set_header(&d, line, (size_t)(nl - line));
            len -= (size_t)(nl - line) + 1;
            line = nl + 1;
        }
        if (sl__csv_decode(&d, line, len, b, reason, sizeof reason) == SL__DEC_MORE) {
            /* a quoted field continues: feed the rest again as more lines */
        }
        block_vs_lines(&d, s, line, len);
        sl__csv_close(&d);
    }
    SL_ASSERT(b->n <= 1);
    /* the payload masker must cope with whatever the line was */
    char *masked = sl__xmalloc(len + 1);
    sl__mask_payload(s, NULL, 0, 0, line, len, masked);
    free(masked);
    sl__batch_free(b);
    return 0;
}
