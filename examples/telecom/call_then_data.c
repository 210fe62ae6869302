/* call_then_data.c — the interval join from C: every CALL_PLACED paired
 * with the DATA_SESSIONs of the same (pseudonymised) subscriber in the
 * following 5 minutes; the C twin of call_then_data.sql.
 *
 *   cc -Iinclude examples/telecom/call_then_data.c build/libsluice.a \
 *      $(pkg-config --libs openssl sqlite3 zlib libmicrohttpd) -lpthread -lm
 *   ./a.out DATA_DIR OUT.db      (DATA_DIR from `sluice gen`, keys from
 *                                 `sluice keygen DATA_DIR/keys.txt`)
 */
#include <stdio.h>
#include <string.h>

#include "sluice.h"

/* keeps rows whose event_type (column 2) equals the udata string */
static void event_type_is(const sl_batch *in, uint8_t *keep, void *udata)
{
    const char *want = udata;
    size_t n = strlen(want);
    const sl_str *t = sl_batch_str(in, 2);
    const uint8_t *valid = sl_batch_valid(in, 2);
    for (size_t i = 0; i < sl_batch_len(in); i++)
        keep[i] = (!valid || valid[i]) && t[i].len == n && !memcmp(t[i].ptr, want, n);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s DATA_DIR OUT.db\n", argv[0]);
        return 2;
    }
    char err[512], path[4096], keys[4096];
    snprintf(path, sizeof path, "%s/events", argv[1]);
    snprintf(keys, sizeof keys, "%s/keys.txt", argv[1]);
    sl_keyring *kr = sl_keyring_load(keys, err, sizeof err);
    if (!kr) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    sl_schema *ev = sl_schema_new();
    sl_schema_add(ev, "ts", SL_TIMESTAMP);
    sl_schema_add(ev, "msisdn", SL_STRING);
    sl_schema_add(ev, "event_type", SL_STRING);
    sl_schema_add(ev, "cell_id", SL_INT64);
    sl_schema_add(ev, "duration_s", SL_INT64);
    sl_schema_add(ev, "bytes", SL_INT64);

    sl_job *job = sl_job_new(err, sizeof err);
    sl_stream *s = sl_job_source(job, "file", ev,
                                 (const char *const[]){"path", path, "format", "csv",
                                                       "time.column", "ts",
                                                       "watermark.delay.ms", "5000", NULL});
    /* the raw msisdn goes no further than this operator */
    s = sl_stream_pseudonymise(s, "msisdn", "sub", kr);
    s = sl_stream_key_by(s, (const char *const[]){"sub", NULL});
    static const sl_join_col call[] = {{"ts", "call_ts"}, {"cell_id", "call_cell"}};
    static const sl_join_col data[] = {{"ts", "data_ts"}, {"bytes", "bytes"}};
    s = sl_stream_interval_join(s, &(sl_interval_join_spec){
        .left = event_type_is, .left_udata = "CALL_PLACED",
        .right = event_type_is, .right_udata = "DATA_SESSION",
        .lower_ms = 0, .upper_ms = 5 * 60 * 1000, /* b.ts in [a.ts, a.ts + 5 min] */
        .left_cols = call, .nleft = 2, .right_cols = data, .nright = 2,
        .time_col = "call_ts"});
    int rc = sl_stream_sink(s, "sqlite", (const char *const[]){"path", argv[2], "table",
                                                               "pairs", NULL});
    if (rc == 0) rc = sl_job_run(job);
    if (rc) fprintf(stderr, "call_then_data: %s\n", sl_job_error(job) ? sl_job_error(job)
                                                                     : sl_strerror(rc));
    sl_job_free(job);
    sl_schema_free(ev);
    sl_keyring_free(kr);
    return rc ? 1 : 0;
}
