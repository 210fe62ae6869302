/* fuzz_binrec.c — libFuzzer target for the fixed-width binary record decoder
 * (src/io/binrec.c) and its binary.widths parser: any bytes must be decoded
 * or rejected with a reason, never crash, leak or read out of bounds. If the
 * first byte is odd, the input up to the first newline is the widths text;
 * the rest is a stream of records, the trailing partial one masked as a dead
 * letter would be. */
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
    sl_batch *b = sl__batch_new(s, 8);
    char reason[128];
    size_t off = 0;
    while (off + d.size <= len) {
        if (b->n == 8) sl__batch_clear(b);
        sl__bin_decode(&d, p + off, b, reason, sizeof reason);
        off += d.size;
    }
    SL_ASSERT(b->n <= 8);
    size_t tail = len - off;
    char *masked = sl__xmalloc(2 * tail + 1);
    SL_ASSERT(sl__bin_payload(&d, p + off, tail, masked) == 2 * tail);
    free(masked);
    sl__batch_free(b);
    sl__bin_close(&d);
    free(widths);
    return 0;
}
