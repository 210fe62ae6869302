/* fuzz_decode.c — libFuzzer target for the CSV and JSON Lines decoders: any
 * input line must be decoded or rejected with a reason, never crash, leak
 * or read out of bounds. The first byte picks the decoder and the header. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const sl_schema *s = schema();
    sl_batch *b = sl__batch_new(s, 4);
    char reason[128];
    const char *line = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] & 1) {
        sl__json_dec d;
        sl__json_init(&d, s);
        sl__json_decode(&d, line, len, b, reason, sizeof reason);
        sl__json_close(&d);
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
