/* log.c — structured, levelled logging: one logfmt line per event
 * (ts, level, component, msg, then key=value pairs) to stderr or a file,
 * thread-safe, with a SIGHUP-driven reopen for log rotation.
 *
 * It does not mask anything: callers never pass raw subscriber ids. The
 * log is process-wide (as stderr is); a job opens it when it runs and
 * closes it when freed. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"
#include "log.h"

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *g_file;        /* NULL: stderr; guarded by g_lock */
static char *g_path;        /* guarded by g_lock */
static atomic_int g_level = SL__LOG_INFO;
static atomic_int g_reopen; /* set by sl_log_reopen (a signal handler) */

void sl_log_reopen(void) { atomic_store(&g_reopen, 1); }

bool sl__log_enabled(int level) { return level <= atomic_load(&g_level); }

static FILE *open_append(const char *path)
{
    FILE *f = fopen(path, "a");
    if (f) setvbuf(f, NULL, _IOLBF, 0);
    return f;
}

int sl__log_open(const char *path, int level, char *errstr, size_t errstr_size)
{
    pthread_mutex_lock(&g_lock);
    bool same = g_path ? path && !strcmp(path, g_path) : !path || !*path;
    pthread_mutex_unlock(&g_lock);
    if (same) { /* already there: keep the file and a pending reopen */
        atomic_store(&g_level, level);
        return 0;
    }
    FILE *f = NULL;
    if (path && *path) {
        f = open_append(path);
        if (!f)
            return sl__err(errstr, errstr_size, SL_EIO,
                           "job: 'log.file': cannot open '%s' for appending: %s",
                           path, strerror(errno));
    }
    char *copy = f ? sl__xstrdup(path) : NULL; /* not under g_lock: OOM logs */
    pthread_mutex_lock(&g_lock);
    if (g_file) fclose(g_file);
    free(g_path);
    g_file = f;
    g_path = copy;
    pthread_mutex_unlock(&g_lock);
    atomic_store(&g_level, level);
    atomic_store(&g_reopen, 0);
    return 0;
}

void sl__log_close(void)
{
    pthread_mutex_lock(&g_lock);
    if (g_file) fclose(g_file);
    g_file = NULL;
    free(g_path);
    g_path = NULL;
    pthread_mutex_unlock(&g_lock);
    atomic_store(&g_level, SL__LOG_INFO);
}

/* Called with g_lock held. On failure the old file stays in use and the
 * reason goes into it: losing the log is worse than writing to a renamed
 * file. */
static void reopen_locked(char *why, size_t whysz)
{
    why[0] = 0;
    if (!g_path) return;
    FILE *f = open_append(g_path);
    if (!f) {
        snprintf(why, whysz, "%s", strerror(errno));
        return;
    }
    fclose(g_file);
    g_file = f;
}

static void put_ts(char *buf, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000L);
}

/* Appends s quoted, escaping what would split the line or the value. */
static size_t put_quoted(char *o, size_t n, size_t k, const char *s)
{
    if (k + 1 < n) o[k++] = '"';
    for (; *s && k + 3 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { o[k++] = '\\'; o[k++] = (char)c; }
        else if (c == '\n') { o[k++] = '\\'; o[k++] = 'n'; }
        else if (c < 0x20 || c == 0x7f) o[k++] = ' ';
        else o[k++] = (char)c;
    }
    if (k + 1 < n) o[k++] = '"';
    o[k < n ? k : n - 1] = 0;
    return k;
}

static void emit(int level, const char *component, const char *msg,
                 const char *kvfmt, va_list ap)
{
    char line[2048], ts[40];
    put_ts(ts, sizeof ts);
    int k = snprintf(line, sizeof line, "ts=%s level=%s component=%s msg=", ts,
                     level_names[level], component ? component : "sluice");
    size_t len = put_quoted(line, sizeof line - 2, (size_t)k, msg ? msg : "");
    if (kvfmt && *kvfmt && len + 2 < sizeof line) {
        line[len++] = ' ';
        int m = vsnprintf(line + len, sizeof line - 1 - len, kvfmt, ap);
        if (m > 0) len += (size_t)m < sizeof line - 1 - len ? (size_t)m
                                                            : sizeof line - 2 - len;
        /* a value must not split the line */
        for (size_t i = len - (size_t)(m > 0 ? m : 0); i < len; i++)
            if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
    }
    line[len++] = '\n';
    line[len] = 0;
    pthread_mutex_lock(&g_lock);
    FILE *f = g_file ? g_file : stderr;
    fputs(line, f);
    fflush(f);
    pthread_mutex_unlock(&g_lock);
}

static void log_v(int level, const char *component, const char *msg,
                  const char *kvfmt, ...)
{
    va_list ap;
    va_start(ap, kvfmt);
    emit(level, component, msg, kvfmt, ap);
    va_end(ap);
}

void sl__log_tick(void)
{
    if (!atomic_load(&g_reopen) || !atomic_exchange(&g_reopen, 0)) return;
    char why[256];
    pthread_mutex_lock(&g_lock);
    bool had = g_path != NULL;
    reopen_locked(why, sizeof why);
    char path[1024];
    snprintf(path, sizeof path, "%s", g_path ? g_path : "");
    pthread_mutex_unlock(&g_lock);
    if (!had) return;
    if (why[0])
        log_v(SL__LOG_ERROR, "log", "cannot reopen the log file: still writing the "
              "old one", "file=\"%s\" error=\"%s\"", path, why);
    else
        log_v(SL__LOG_INFO, "log", "log file reopened", "file=\"%s\"", path);
}

void sl__log(int level, const char *component, const char *msg, const char *kvfmt,
             ...)
{
    if (level < SL__LOG_ERROR) level = SL__LOG_ERROR;
    if (level > SL__LOG_DEBUG) level = SL__LOG_DEBUG;
    sl__log_tick();
    if (!sl__log_enabled(level)) return;
    va_list ap;
    va_start(ap, kvfmt);
    emit(level, component, msg, kvfmt, ap);
    va_end(ap);
}
