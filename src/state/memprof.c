/* memprof.c — a diagnostic of where the process's private memory is, for
 * the memory tuning notes (docs/state.md): with SLUICE_MEMPROF set when
 * RocksDB state opens, a thread samples RssAnon every 5 ms and, at each
 * new peak (by 256 KiB), records glibc's view (mallinfo2, its arenas
 * from malloc_info), RocksDB's (block cache, pinned, memtables, table
 * readers over every open instance: sl__ks_mem_props), the window caches'
 * own count and the anonymous mappings of /proc/self/smaps; at exit it
 * writes the record of the highest peak to the file SLUICE_MEMPROF names
 * ("-": stderr). Off (no thread) unless the variable is set. */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "state/state.h"

_Atomic int64_t sl__memprof_wincache; /* window caches' bytes (winstore.c) */

static struct {
    pthread_once_t once;
    pthread_mutex_t mu; /* best */
    char *path;
    char *best; /* the record of the highest peak */
    char *line; /* one line per new peak: the timeline */
    size_t line_len;
    FILE *lines;
    size_t best_len;
    long peak_kb;
    struct timespec t0;
} mp = {.once = PTHREAD_ONCE_INIT, .mu = PTHREAD_MUTEX_INITIALIZER};

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    long v = 0;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0) {
            v = strtol(line + kl, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* The anonymous mappings of at least 128 KiB resident, and the totals. */
static void smaps(FILE *o)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return;
    char line[512], head[512] = "";
    long rss = 0, anon = 0, n_small = 0, small_kb = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] >= '0' && line[0] <= 'f' && strchr(line, '-') &&
            strchr(line, ' ') > strchr(line, '-')) {
            snprintf(head, sizeof head, "%s", line);
            head[strcspn(head, "\n")] = 0;
            continue;
        }
        if (strncmp(line, "Rss:", 4) == 0) rss = strtol(line + 4, NULL, 10);
        if (strncmp(line, "Anonymous:", 10) == 0) {
            anon = strtol(line + 10, NULL, 10);
            if (anon >= 128) fprintf(o, "  map %6ld kB anon (rss %ld) %s\n", anon, rss, head);
            else if (anon > 0) n_small++, small_kb += anon;
        }
    }
    fprintf(o, "  maps under 128 kB: %ld, %ld kB anon\n", n_small, small_kb);
    fclose(f);
}

static void record(long kb)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&buf, &len);
    if (!o) return;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double s = (double)(t.tv_sec - mp.t0.tv_sec) + (double)(t.tv_nsec - mp.t0.tv_nsec) / 1e9;
    struct mallinfo2 mi = mallinfo2();
    fprintf(o, "peak RssAnon %ld kB at %.2f s; RssFile %ld kB; threads %ld\n", kb, s,
            status_kb("RssFile:"), status_kb("Threads:"));
    pthread_mutex_lock(&mp.mu);
    if (mp.lines)
        fprintf(mp.lines, "%8.2f s RssAnon %6ld kB: heap in use %6zu free %6zu mmapped %6zu "
                "window caches %lld\n", s, kb, mi.uordblks >> 10, mi.fordblks >> 10,
                mi.hblkhd >> 10, (long long)(atomic_load(&sl__memprof_wincache) >> 10));
    pthread_mutex_unlock(&mp.mu);
    fprintf(o, "  glibc: arena %zu kB (in use %zu, free %zu, top releasable %zu), "
            "mmapped %zu kB in %zu blocks\n", mi.arena >> 10, mi.uordblks >> 10,
            mi.fordblks >> 10, mi.keepcost >> 10, mi.hblkhd >> 10, mi.hblks);
    char *xml = NULL;
    size_t xl = 0;
    FILE *x = open_memstream(&xml, &xl);
    if (x) {
        malloc_info(0, x);
        fclose(x);
        /* per heap: <heap nr="N"> ... <total type="rest" count=".." size=".."/>
         * ... <system type="current" size=".."/> */
        for (char *p = xml; (p = strstr(p, "<heap nr=")); p++) {
            int nr = atoi(p + 10);
            char *end = strstr(p, "</heap>");
            char *cur = strstr(p, "<system type=\"current\" size=\"");
            char *rest = strstr(p, "<total type=\"rest\" count=\"");
            char *fast = strstr(p, "<total type=\"fast\" count=\"");
            if (!end || !cur || cur > end) break;
            long cursz = atol(cur + 30);
            long restsz = 0, fastsz = 0;
            if (rest && rest < end) {
                char *sz = strstr(rest, "size=\"");
                if (sz) restsz = atol(sz + 6);
            }
            if (fast && fast < end) {
                char *sz = strstr(fast, "size=\"");
                if (sz) fastsz = atol(sz + 6);
            }
            fprintf(o, "  arena %d: system %ld kB, free in bins %ld kB, fastbins %ld kB\n",
                    nr, cursz >> 10, restsz >> 10, fastsz >> 10);
        }
        free(xml);
    }
    sl__ks_mem_props(o);
    fprintf(o, "  window caches %lld kB\n",
            (long long)(atomic_load(&sl__memprof_wincache) >> 10));
    smaps(o);
    fclose(o);
    pthread_mutex_lock(&mp.mu);
    free(mp.best);
    mp.best = buf;
    mp.best_len = len;
    pthread_mutex_unlock(&mp.mu);
}

static void *sampler(void *arg)
{
    (void)arg;
    long last = 0;
    for (;;) {
        long kb = status_kb("RssAnon:");
        if (kb > mp.peak_kb) mp.peak_kb = kb;
        if (kb >= last + 256) {
            record(kb);
            last = kb;
        }
        struct timespec d = {0, 5 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    return NULL;
}

static void at_exit(void)
{
    FILE *o = strcmp(mp.path, "-") == 0 ? stderr : fopen(mp.path, "w");
    if (!o) return;
    fprintf(o, "highest RssAnon sampled %ld kB; the record of the last new peak:\n",
            mp.peak_kb);
    pthread_mutex_lock(&mp.mu);
    if (mp.lines) {
        fflush(mp.lines);
        fprintf(o, "timeline of new peaks:\n");
        fwrite(mp.line, 1, mp.line_len, o);
    }
    if (mp.best) fwrite(mp.best, 1, mp.best_len, o);
    pthread_mutex_unlock(&mp.mu);
    if (o != stderr) fclose(o);
}

static void start(void)
{
    const char *p = getenv("SLUICE_MEMPROF");
    if (!p || !*p) return;
    mp.path = strdup(p);
    clock_gettime(CLOCK_MONOTONIC, &mp.t0);
    mp.lines = open_memstream(&mp.line, &mp.line_len);
    pthread_t t;
    if (pthread_create(&t, NULL, sampler, NULL) != 0) return;
    pthread_detach(t);
    atexit(at_exit);
}

void sl__memprof_start(void) { pthread_once(&mp.once, start); }
