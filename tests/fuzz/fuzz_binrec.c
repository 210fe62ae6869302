/* fuzz_binrec.c — libFuzzer target for the fixed-width binary record decoder
 * (src/io/binrec.c) and its binary.widths parser: any bytes must be decoded
 * or rejected with a reason, never crash, leak or read out of bounds. If the
 * first byte is odd, the input up to the first newline is the widths text;
 * the rest is a stream of records, the trailing partial one masked as a dead
 * letter would be. The stream is decoded twice, record by record and in
 * blocks (sl__bin_decode_block, with the record a block stops at decoded
 * alone), with projection pushdown on when the first byte's bit 2 is set:
 * the same records must be kept, with the same values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/decode.h"

static sl_schema *schema(void)
{
    static sl_schema *s;
    if (s) return s;
    static const char *const kinds[] = {"view", "click", "purchase", NULL};
    s = sl_schema_new();
    sl_schema_add(s, "ts", SL_TIMESTAMP);
    sl_schema_set_identifier(s, sl_schema_add(s, "msisdn", SL_STRING));
    sl_schema_set_domain(s, sl_schema_add(s, "kind", SL_STRING), kinds);
    sl_schema_add(s, "n", SL_INT64);
    sl_schema_add(s, "rate", SL_FLOAT64);
    sl_schema_add(s, "ok", SL_BOOL);
    sl_schema_add(s, "text", SL_STRING);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const sl_schema *s = schema();
    const char *p = (const char *)data + 1;
    size_t len = size - 1;
    char *widths = NULL;
    if (data[0] & 1) {
        const char *nl = memchr(p, '\n', len);
        size_t wl = nl != NULL ? (size_t)(nl - p) : len;
        widths = sl__xmalloc(wl + 1);
        memcpy(widths, p, wl);
        widths[wl] = '\0';
        p += nl != NULL ? wl + 1 : wl;
        len -= nl != NULL ? wl + 1 : wl;
    } else if (data[0] & 2) {
        widths = sl__xstrdup("msisdn:12,kind:8,text:3");
    }
    char err[256];
    sl__bin_dec d;
    if (sl__bin_init(&d, s, widths, err, sizeof err) != 0) {
        free(widths);
        return 0;
    }
    if (data[0] & 4) sl__bin_project(&d, 1ULL << 0 | 1ULL << 2 | 1ULL << 5 | 1ULL << 6);
    const size_t nrec = len / d.size;
    sl_batch *b = sl__batch_new(s, (uint32_t)(nrec ? nrec : 1));
    sl_batch *k = sl__batch_new(s, (uint32_t)(nrec ? nrec : 1));
    char reason[128];
    size_t off = 0;
    while (off + d.size <= len) {
        sl__bin_decode(&d, p + off, b, reason, sizeof reason);
        off += d.size;
    }
    for (size_t r = 0; r < nrec;) { /* the file source's way */
        r += sl__bin_decode_block(&d, p + r * d.size, (uint32_t)(nrec - r), k);
        if (r < nrec) {
            SL_ASSERT(sl__bin_decode(&d, p + r * d.size, k, reason, sizeof reason) != 0);
            r++;
        }
    }
    SL_ASSERT(b->n == k->n);
    for (uint32_t r = 0; r < b->n; r++)
        for (int c = 0; c < s->n; c++) {
            SL_ASSERT(b->cols[c].valid[r] == k->cols[c].valid[r]);
            if (!b->cols[c].valid[r]) continue;
            if (s->cols[c].type == SL_STRING) {
                const sl_str *x = (const sl_str *)b->cols[c].data + r;
                const sl_str *y = (const sl_str *)k->cols[c].data + r;
                SL_ASSERT(x->len == y->len && memcmp(x->ptr, y->ptr, x->len) == 0);
            } else if (s->cols[c].type == SL_BOOL) {
                SL_ASSERT(((uint8_t *)b->cols[c].data)[r] == ((uint8_t *)k->cols[c].data)[r]);
            } else {
                SL_ASSERT(memcmp((int64_t *)b->cols[c].data + r, (int64_t *)k->cols[c].data + r,
                                 8) == 0);
            }
        }
    sl__batch_free(k);
    size_t tail = len - off;
    char *masked = sl__xmalloc(2 * tail + 1);
    SL_ASSERT(sl__bin_payload(&d, p + off, tail, masked) == 2 * tail);
    free(masked);
    sl__batch_free(b);
    sl__bin_close(&d);
    free(widths);
    return 0;
}
