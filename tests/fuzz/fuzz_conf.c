/* fuzz_conf.c — libFuzzer target for the configuration tables: arbitrary
 * key/value pairs (NUL-separated) applied to the job's table must be
 * accepted or rejected with a message, never crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

const sl__conf_def *sl__job_conf_defs(void);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = sl__xmalloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = 0;
    const char *kv[33];
    int n = 0;
    for (char *p = buf; p <= buf + size && n < 32;) {
        kv[n++] = p;
        p += strlen(p) + 1;
    }
    if (n % 2) n--;
    kv[n] = NULL;
    char conf[512] __attribute__((aligned(16)));
    memset(conf, 0, sizeof conf);
    char err[256];
    sl__conf_apply(sl__job_conf_defs(), conf, kv, "job", NULL, err, sizeof err);
    sl__conf_free(sl__job_conf_defs(), conf);
    /* every value also goes through the scalar parsers */
    for (int i = 0; i < n; i++) {
        int64_t v;
        double d;
        sl__parse_i64(kv[i], &v);
        sl__parse_f64(kv[i], &d);
        sl__parse_ts(kv[i], strlen(kv[i]), &v);
    }
    free(buf);
    return 0;
}
