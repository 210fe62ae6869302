/* run.c — `sluice run JOB`: builds a built-in job from flags and --set
 * keys, runs it with live progress on a terminal, and prints a summary. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "obs/obs.h"

static sl_job *g_job;

static volatile sig_atomic_t g_stops;

/* The first SIGINT/SIGTERM stops gracefully (final checkpoint, commit,
 * exit 0); a second one cancels at once (still recoverable from the last
 * checkpoint). */
static void on_signal(int sig)
{
    if (sig == SIGHUP) sl_log_reopen();
    else if (sig == SIGUSR1) sl_job_savepoint(g_job);
    else if (g_stops++ == 0) sl_job_stop(g_job);
    else sl_job_cancel(g_job);
}

typedef struct {
    sl_job *job;
    sl__obs *obs; /* rates and back pressure come from the metrics registry */
    atomic_int stop;
    bool tty;
} progress;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fmt_wm(int64_t wm, char *buf, size_t n)
{
    if (wm == INT64_MIN) { snprintf(buf, n, "-"); return; }
    if (wm == INT64_MAX) { snprintf(buf, n, "end"); return; }
    time_t t = (time_t)(wm / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void *progress_main(void *arg)
{
    progress *p = arg;
    double t0 = now_s(), tl = t0;
    uint64_t last = 0;
    while (!atomic_load(&p->stop)) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
        double t = now_s();
        if (t - tl < 0.5) continue;
        sl_job_stats st;
        sl_job_stats_get(p->job, &st);
        char wm[32];
        fmt_wm(st.watermark, wm, sizeof wm);
        double rate = (double)(st.records_in - last) / (t - tl);
        double blocked = (double)st.blocked_ns / 1e9 / (t - t0);
        if (p->obs) { /* the same figures as /metrics and the dashboard */
            sl__obs_rates r;
            sl__obs_rates_get(p->obs, &r);
            rate = r.in_rate;
            blocked = r.backpressure;
        }
        fprintf(stderr, "\r%10.2fM events  %6.2fM/s  watermark %s  windows %llu  "
                "suppressed %llu  dead %llu  back-pressure %.0f%%   ",
                (double)st.records_in / 1e6, rate / 1e6, wm,
                (unsigned long long)st.windows_fired,
                (unsigned long long)st.groups_suppressed,
                (unsigned long long)st.dead_letters, blocked * 100);
        last = st.records_in;
        tl = t;
    }
    return NULL;
}

/* value must outlive the run (it points into argv). */
static bool g_metrics_set; /* the user chose metrics.address */

static int set_opt(sl_job *job, telecom_opts *o, const char *key, const char *value)
{
    if (!strcmp(key, "metrics.address")) g_metrics_set = true;
    char err[512] = "";
    int rc = telecom_set(o, key, value, err, sizeof err);
    if (rc == 1) rc = sl_job_set(job, key, value, err, sizeof err);
    if (rc) {
        fprintf(stderr, "sluice run: %s\n", err);
        return 2;
    }
    return 0;
}

static int set_kv(sl_job *job, telecom_opts *o, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        fprintf(stderr, "sluice run: --set needs KEY=VALUE, got '%s'\n", kv);
        return 2;
    }
    char key[128];
    snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
    return set_opt(job, o, key, eq + 1);
}

int cli_sql_run(int argc, char **argv); /* sql_cmd.c */

/* `sluice run FILE.sql ...` is a SQL job. */
static bool names_sql_file(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (argv[i][0] != '-' && n > 4 && !strcmp(argv[i] + n - 4, ".sql")) return true;
    }
    return false;
}

int cli_run(int argc, char **argv)
{
    /* SIGHUP reopens the log from the start: --set log.file opens it while
     * the arguments are read, long before the job runs */
    signal(SIGHUP, on_signal);
    if (names_sql_file(argc, argv)) return cli_sql_run(argc, argv);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "venue-report")) return cli_venue_run(argc, argv);
    static const struct option opts[] = {
        {"events", required_argument, 0, 'e'},
        {"format", required_argument, 0, 'F'},
        {"subscribers", required_argument, 0, 's'},
        {"cells", required_argument, 0, 'c'},
        {"key-file", required_argument, 0, 'K'},
        {"db", required_argument, 0, 'd'},
        {"k", required_argument, 0, 'k'},
        {"window-ms", required_argument, 0, 'w'},
        {"watermark-delay-ms", required_argument, 0, 'W'},
        {"lateness-ms", required_argument, 0, 'L'},
        {"out-dir", required_argument, 0, 'o'},
        {"parallelism", required_argument, 0, 'p'},
        {"checkpoint-dir", required_argument, 0, 'C'},
        {"checkpoint-interval-ms", required_argument, 0, 'I'},
        {"delivery", required_argument, 0, 'D'},
        {"from", required_argument, 0, 'R'},
        {"from-scratch", no_argument, 0, 'X'},
        {"set", required_argument, 0, 'S'},
        {"quiet", no_argument, 0, 'q'},
        {"sink", required_argument, 0, 'Z'},
        {"pg", required_argument, 0, 'P'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    char err[1024] = "";
    sl_job *job = sl_job_new(err, sizeof err);
    telecom_opts o;
    telecom_defaults(&o);
    bool quiet = false;
    int c, rc = 0;
    optind = 1;
    static const char *const names[] = {
        ['e'] = "events", ['F'] = "format", ['s'] = "subscribers", ['c'] = "cells",
        ['K'] = "key.file", ['d'] = "db", ['k'] = "k", ['w'] = "window.ms",
        ['W'] = "watermark.delay.ms", ['L'] = "lateness.ms", ['o'] = "output.dir",
        ['p'] = "parallelism", ['C'] = "checkpoint.dir",
        ['I'] = "checkpoint.interval.ms", ['D'] = "delivery", ['R'] = "restore.from",
        ['Z'] = "sink", ['P'] = "pg.dsn"};
    while (!rc && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'q': quiet = true; break;
        case 'X': rc = set_opt(job, &o, "from.scratch", "true"); break;
        case 'h': cli_help(stdout, "run"); sl_job_free(job); return 0;
        case 'S': rc = set_kv(job, &o, optarg); break;
        case 'P':
            rc = set_opt(job, &o, "pg.dsn", optarg);
            if (!rc) rc = set_opt(job, &o, "sink", "postgres");
            break;
        case '?': rc = 2; break;
        default: rc = set_opt(job, &o, names[c], optarg); break;
        }
    }
    if (!rc && optind != argc - 1) {
        fputs("sluice run: name one job (built-in: telecom-age, venue-report)\n", stderr);
        cli_help(stderr, "run");
        rc = 2;
    }
    if (!rc && strcmp(argv[optind], "telecom-age") != 0) {
        fprintf(stderr, "sluice run: unknown job '%s' (built-in: telecom-age, venue-report)\n",
                argv[optind]);
        rc = 2;
    }
    if (rc) {
        sl_job_free(job);
        return rc;
    }
    telecom_res res;
    double t0 = now_s();
    if (sl_job_set(job, "name", "telecom-age", err, sizeof err)) {
        fprintf(stderr, "sluice run: %s\n", err);
        sl_job_free(job);
        return 2;
    }
    /* /metrics, /status and the dashboard, from before the tables load */
    sl__obs *obs = NULL;
    if (sl__obs_start(job, g_metrics_set ? 0 : SL__OBS_ANY_PORT_IF_BUSY, &obs, err,
                      sizeof err)) {
        fprintf(stderr, "sluice run: %s\n", err);
        sl_job_free(job);
        return 2;
    }
    if (obs && !quiet)
        fprintf(stderr, "sluice: dashboard %s  (metrics %smetrics, status %sstatus)\n",
                sl__obs_url(obs), sl__obs_url(obs), sl__obs_url(obs));
    if (telecom_build(job, &o, &res, err, sizeof err)) {
        fprintf(stderr, "sluice run: %s\n", err);
        sl__obs_stop(obs);
        telecom_free(&res);
        sl_job_free(job);
        return 1;
    }
    double t_load = now_s() - t0;
    uint64_t disk = sl_table_disk_bytes(res.subscribers) + sl_table_disk_bytes(res.cells);
    if (!quiet && disk)
        fprintf(stderr, "sluice: state on RocksDB: tables %zu + %zu rows, %llu bytes "
                "on disk, loaded in %.2f s\n", sl_table_rows(res.subscribers),
                sl_table_rows(res.cells), (unsigned long long)disk, t_load);
    if (!quiet && res.rotating)
        fprintf(stderr, "sluice: pseudonymisation key rotation: one key per %lld ms "
                "from %d key(s)\n", (long long)o.rotation_period_ms, res.nkeys);
    g_job = job;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGUSR1, on_signal);
    progress pr = {.job = job, .obs = obs, .tty = isatty(2) && !quiet};
    atomic_init(&pr.stop, 0);
    pthread_t th;
    bool have_th = pr.tty && pthread_create(&th, NULL, progress_main, &pr) == 0;
    double t1 = now_s();
    rc = sl_job_run(job);
    double dt = now_s() - t1;
    atomic_store(&pr.stop, 1);
    if (have_th) {
        pthread_join(th, NULL);
        fputc('\n', stderr);
    }
    sl_job_stats st;
    sl_job_stats_get(job, &st);
    if (!quiet || rc)
        fprintf(stderr,
                "sluice: %s: %llu events in %.2f s (%.2f M events/s; tables loaded "
                "in %.2f s), %llu windows fired, %llu rows written to %s, %llu "
                "groups suppressed (k=%lld), %llu folded, %llu late, %llu dead letters, %llu "
                "checkpoints (%llu failed; last %llu ms, %llu bytes, longest task pause "
                "%llu us), canaries %llu injected / %llu seen / %llu committed / %llu "
                "missing%s%s\n",
                rc ? "failed" : "done", (unsigned long long)st.records_in, dt,
                dt > 0 ? (double)st.records_in / dt / 1e6 : 0.0, t_load,
                (unsigned long long)st.windows_fired,
                (unsigned long long)st.records_out,
                strcmp(o.sink, "postgres") ? o.db : "PostgreSQL",
                (unsigned long long)st.groups_suppressed, (long long)o.k,
                (unsigned long long)st.groups_folded,
                (unsigned long long)st.late_records,
                (unsigned long long)st.dead_letters,
                (unsigned long long)st.checkpoints_completed,
                (unsigned long long)st.checkpoints_failed,
                (unsigned long long)st.last_checkpoint_ms,
                (unsigned long long)st.last_checkpoint_bytes,
                (unsigned long long)st.last_snapshot_pause_us,
                (unsigned long long)st.canaries_injected,
                (unsigned long long)st.canaries_seen,
                (unsigned long long)st.canaries_committed,
                (unsigned long long)st.canaries_missing, rc ? ": " : "",
                rc ? sl_job_error(job) : "");
    sl__obs_stop(obs);
    telecom_free(&res);
    sl_job_free(job);
    return rc ? 1 : 0;
}
