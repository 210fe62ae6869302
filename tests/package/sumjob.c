/* sumjob.c — a user's program built against an installed libsluice
 * (pkg-config --cflags --libs sluice) by tests/package/test_install.py:
 * reads CSV "id,amount" from argv[1] through a one-task job and prints the
 * number of rows, the sum of amount, the number of malformed lines (dead
 * letters) and sl_version(). The test compares the figures with its own
 * sums over the same file. */
#include <sluice.h>
#include <stdio.h>

typedef struct {
    long long rows, sum;
} totals;

static int collect(const sl_batch *b, void *ud)
{
    totals *t = ud;
    const int64_t *amount = sl_batch_i64(b, 1);
    const uint8_t *kind = sl_batch_kind(b);
    for (size_t i = 0; i < sl_batch_len(b); i++) {
        if (kind[i] != SL_KIND_DATA) continue;
        t->rows++;
        t->sum += amount[i];
    }
    return 0;
}

int main(int argc, char **argv)
{
    char err[512];
    if (argc != 3) {
        fprintf(stderr, "usage: sumjob FILE.csv OUT_DIR\n");
        return 2;
    }
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "id", SL_INT64);
    sl_schema_add(s, "amount", SL_INT64);
    sl_job *job = sl_job_new(err, sizeof err);
    if (!job) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (sl_job_set(job, "parallelism", "1", err, sizeof err) ||
        sl_job_set(job, "output.dir", argv[2], err, sizeof err) ||
        sl_job_set(job, "metrics.address", "off", err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    totals t = {0, 0};
    sl_stream *st = sl_job_source(job, "file", s, (const char *[]){"path", argv[1], NULL});
    if (sl_stream_sink_fn(st, collect, &t) || sl_job_run(job)) {
        fprintf(stderr, "job failed: %s\n", sl_job_error(job));
        return 1;
    }
    sl_job_stats stats;
    sl_job_stats_get(job, &stats);
    printf("rows %lld sum %lld dead %llu version %s\n", t.rows, t.sum,
           (unsigned long long)stats.dead_letters, sl_version());
    sl_job_free(job);
    sl_schema_free(s);
    return 0;
}
