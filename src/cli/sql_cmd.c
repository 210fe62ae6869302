/* sql_cmd.c — `sluice run FILE.sql [--set k=v ...]` and `sluice explain
 * FILE.sql`: reads a SQL job, compiles it (errors print the line with a
 * caret under the column), then runs it or prints its plan. Built on the
 * public API only. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "obs/obs.h"

int cli_sql_run(int argc, char **argv);
int cli_sql_explain(int argc, char **argv);

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t k;
    while (b && (k = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (n + 1 == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) { free(b); b = NULL; }
            else b = nb;
        }
    }
    fclose(f);
    if (b) b[n] = 0;
    return b;
}

/* Prints the script's line `line` with a caret under column `col`. */
static void show_place(const char *text, int line, int col)
{
    if (line <= 0) return;
    const char *p = text;
    for (int l = 1; l < line && p; l++) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    if (!p) return;
    const char *e = strchr(p, '\n');
    int len = e ? (int)(e - p) : (int)strlen(p);
    fprintf(stderr, "  %.*s\n  ", len, p);
    for (int i = 1; i < col && i <= len; i++) fputc(p[i - 1] == '\t' ? '\t' : ' ', stderr);
    fputs("^\n", stderr);
}

typedef struct {
    const char *file;
    char *text;
    sl_sql *q;
    bool quiet;
    const char *cluster; /* --cluster BOOTSTRAP: the distributed mode */
} sqlargs;

static int load(int argc, char **argv, sqlargs *a, const char *cmd)
{
    memset(a, 0, sizeof *a);
    a->q = sl_sql_new();
    char err[1024];
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            cli_help(stdout, cmd);
            return 1;
        }
        if (!strcmp(s, "--quiet")) { a->quiet = true; continue; }
        if (!strcmp(s, "--cluster") || !strncmp(s, "--cluster=", 10)) {
            a->cluster = s[9] == '=' ? s + 10 : (i + 1 < argc ? argv[++i] : NULL);
            if (!a->cluster || !a->cluster[0]) {
                fprintf(stderr, "sluice %s: --cluster needs BOOTSTRAP_SERVERS (sluice run "
                        "JOB.sql --cluster HOST:PORT[,HOST:PORT...])\n", cmd);
                return 2;
            }
            continue;
        }
        if (!strcmp(s, "--set") || !strncmp(s, "--set=", 6)) {
            const char *kv = s[5] == '=' ? s + 6 : (i + 1 < argc ? argv[++i] : NULL);
            const char *eq = kv ? strchr(kv, '=') : NULL;
            if (!eq || eq == kv) {
                fprintf(stderr, "sluice %s: --set needs KEY=VALUE\n", cmd);
                return 2;
            }
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
            if (sl_sql_set(a->q, key, eq + 1, err, sizeof err)) {
                fprintf(stderr, "sluice %s: %s\n", cmd, err);
                return 2;
            }
            continue;
        }
        if (s[0] == '-' || a->file) {
            fprintf(stderr, "sluice %s: unexpected argument '%s'\n", cmd, s);
            cli_help(stderr, cmd);
            return 2;
        }
        a->file = s;
    }
    if (!a->file) {
        fprintf(stderr, "sluice %s: name a .sql file\n", cmd);
        cli_help(stderr, cmd);
        return 2;
    }
    a->text = slurp(a->file);
    if (!a->text) {
        fprintf(stderr, "sluice %s: cannot read '%s'\n", cmd, a->file);
        return 2;
    }
    if (sl_sql_compile(a->q, a->text, a->file, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        int line, col;
        sl_sql_error_pos(a->q, &line, &col);
        show_place(a->text, line, col);
        return 2;
    }
    return 0;
}

static void done(sqlargs *a)
{
    sl_sql_free(a->q);
    free(a->text);
}

int cli_sql_explain(int argc, char **argv)
{
    sqlargs a;
    int rc = load(argc, argv, &a, "explain");
    if (!rc) {
        size_t n = sl_sql_explain(a.q, NULL, 0);
        char *buf = malloc(n + 1);
        if (buf) {
            sl_sql_explain(a.q, buf, n + 1);
            fputs(buf, stdout);
            free(buf);
        }
    }
    done(&a);
    return rc == 1 ? 0 : rc;
}

static sl_job *g_sql_job;
static volatile sig_atomic_t g_sql_stops;

/* As `sluice run telecom-age`: the first SIGINT/SIGTERM stops gracefully,
 * a second one cancels; SIGUSR1 takes a savepoint. */
static void on_sig(int sig)
{
    if (sig == SIGHUP) sl_log_reopen();
    else if (sig == SIGUSR1) sl_job_savepoint(g_sql_job);
    else if (g_sql_stops++ == 0) sl_job_stop(g_sql_job);
    else sl_job_cancel(g_sql_job);
}

int cli_sql_run(int argc, char **argv)
{
    sqlargs a;
    signal(SIGHUP, on_sig); /* before --set log.file opens the log */
    int rc = load(argc, argv, &a, "run");
    if (rc) {
        done(&a);
        return rc == 1 ? 0 : rc;
    }
    char err[1024] = "";
    sl_job *job = sl_job_new(err, sizeof err);
    const char *base = strrchr(a.file, '/');
    base = base ? base + 1 : a.file;
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(base, "."), base);
    sl_job_set(job, "name", name[0] ? name : "sql", err, sizeof err);
    if (sl_sql_build(a.q, job, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        sl_job_free(job);
        done(&a);
        return 1;
    }
    /* /metrics, /status and the dashboard, as for the built-in jobs */
    sl__obs *obs = NULL;
    if (sl__obs_start(job, SL__OBS_ANY_PORT_IF_BUSY, &obs, err, sizeof err)) {
        fprintf(stderr, "sluice run: %s\n", err);
        sl_job_free(job);
        done(&a);
        return 2;
    }
    if (obs && !a.quiet)
        fprintf(stderr, "sluice: dashboard %s  (metrics %smetrics, status %sstatus)\n",
                sl__obs_url(obs), sl__obs_url(obs), sl__obs_url(obs));
    g_sql_job = job;
    signal(SIGINT, on_sig);
    signal(SIGTERM, on_sig);
    signal(SIGUSR1, on_sig);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = a.cluster ? sl_job_run_cluster(job, a.cluster) : sl_job_run(job);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    sl_job_stats st;
    sl_job_stats_get(job, &st);
    if (!a.quiet || rc)
        fprintf(stderr, "sluice: %s: %s: %llu records in %.2f s, %llu windows fired, %llu "
                "rows written, %llu groups suppressed, %llu late, %llu dead letters, "
                "%llu checkpoints (%llu failed)%s%s\n",
                a.file, rc ? "failed" : "done", (unsigned long long)st.records_in, dt,
                (unsigned long long)st.windows_fired, (unsigned long long)st.records_out,
                (unsigned long long)st.groups_suppressed,
                (unsigned long long)st.late_records, (unsigned long long)st.dead_letters,
                (unsigned long long)st.checkpoints_completed,
                (unsigned long long)st.checkpoints_failed, rc ? ": " : "",
                rc ? sl_job_error(job) : "");
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    sl__obs_stop(obs);
    sl_job_free(job);
    done(&a);
    return rc ? 1 : 0;
}
