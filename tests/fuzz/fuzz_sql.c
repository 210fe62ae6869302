/* fuzz_sql.c — libFuzzer target for the SQL front end: any script must
 * compile or be rejected with a positioned error, and a compiled one must
 * explain itself; never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    sl_sql *q = sl_sql_new();
    char err[512];
    if (sl_sql_compile(q, text, "fuzz.sql", err, sizeof err) == 0) {
        char plan[4096];
        sl_sql_explain(q, plan, sizeof plan);
    } else {
        int line, col;
        sl_sql_error_pos(q, &line, &col);
    }
    sl_sql_free(q);
    free(text);
    return 0;
}
