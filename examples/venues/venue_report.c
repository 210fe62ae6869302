/* venue_report.c — the venue report from C, in one file: who is at an
 * event, by age band, live and final, k-anonymous, in SQLite
 * (docs/venues.md). The same job as `sluice run venue-report`.
 *
 *   make && cc -std=c11 -Iinclude examples/venues/venue_report.c \
 *       build/libsluice.a $(pkg-config --libs openssl sqlite3 zlib libmicrohttpd) \
 *       -lpthread -lm -o venue_report
 *   ./venue_report DATA_DIR OUT.db      # DATA_DIR from `sluice gen --set crowd.size=...`
 */
#include <stdio.h>
#include <string.h>

#include <sluice.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s DATA_DIR OUT.db\n", argv[0]);
        return 2;
    }
    char err[512], path[4][1024];
    const char *names[4] = {"keys.txt", "venues.csv", "subscribers.csv", "events"};
    for (int i = 0; i < 4; i++) snprintf(path[i], sizeof path[i], "%s/%s", argv[1], names[i]);

    sl_keyring *keys = sl_keyring_load(path[0], err, sizeof err);
    sl_venues *venues = keys ? sl_venues_load(path[1], err, sizeof err) : NULL;
    if (!venues) {
        fprintf(stderr, "%s\n", err);
        sl_keyring_free(keys);
        return 1;
    }
    sl_schema *ev = sl_schema_new();
    sl_schema_add(ev, "ts", SL_TIMESTAMP);
    sl_schema_set_identifier(ev, sl_schema_add(ev, "msisdn", SL_STRING));
    sl_schema_add(ev, "event_type", SL_STRING);
    sl_schema_add(ev, "cell_id", SL_INT64);
    sl_schema *su = sl_schema_new();
    sl_schema_set_identifier(su, sl_schema_add(su, "msisdn", SL_STRING));
    sl_schema_add(su, "birth_date", SL_TIMESTAMP);
    sl_schema_add(su, "gender", SL_STRING);
    /* the subscriber table is pseudonymised as it loads: joins on pseudonyms */
    sl_table *subs = sl_table_load("file", su, "msisdn",
                                   (const char *[]){"path", path[2], NULL}, keys, err,
                                   sizeof err);
    int rc = 1;
    sl_job *job = subs ? sl_job_new(err, sizeof err) : NULL;
    if (job) {
        sl_stream *s = sl_job_source(job, "file", ev,
                                     (const char *[]){"path", path[3], "time.column", "ts",
                                                      "watermark.delay.ms", "5000", NULL});
        s = sl_stream_pseudonymise(s, "msisdn", "sub", keys);
        s = sl_stream_lookup(s, "sub", subs, (const char *[]){"birth_date", NULL});
        s = sl_stream_venue_report(s, venues, &(sl_venue_report_spec){
                .sub_col = "sub", .cell_col = "cell_id", .birth_col = "birth_date",
                .k = 16, .emit_every_ms = 60000, .slice_ms = 900000, .round_to = 10});
        sl_stream_sink(s, "sqlite",
                       (const char *[]){"path", argv[2], "table", "venue_report",
                                        "mode", "upsert", "key",
                                        "venue,report,slice_start,age_band,gender", NULL});
        rc = sl_job_run(job);
        if (rc) fprintf(stderr, "%s\n", sl_job_error(job));
        sl_job_free(job);
    } else {
        fprintf(stderr, "%s\n", err);
    }
    sl_table_free(subs);
    sl_schema_free(ev);
    sl_schema_free(su);
    sl_venues_free(venues);
    sl_keyring_free(keys);
    return rc ? 1 : 0;
}
