/* fuzz_venues.c — libFuzzer target for the venue file and market-share
 * parsers (docs/venues.md): the input up to the first NUL is a venue file,
 * the rest a market-share table applied to the venues it gave. Either must
 * be accepted or rejected with a message, never crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/venue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t n1 = nul ? (size_t)(nul - data) : size;
    char *v = sl__xmalloc(n1 + 1);
    memcpy(v, data, n1);
    v[n1] = 0;
    char err[256];
    sl_venues *vs = sl__venues_parse(v, "fuzz", err, sizeof err);
    if (vs && nul) {
        size_t n2 = size - n1 - 1;
        char *m = sl__xmalloc(n2 + 1);
        memcpy(m, nul + 1, n2);
        m[n2] = 0;
        sl__venues_share_parse(vs, m, "fuzz", err, sizeof err);
    }
    sl_venues_free(vs);
    return 0;
}
