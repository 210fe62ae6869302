/* util.c — error codes and messages, allocation that aborts on exhaustion,
 * the always-on assertion, hashing and the injectable clock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

const char *sl_version(void) { return SL_VERSION; }

const char *sl_strerror(int err)
{
    switch (err) {
    case 0: return "success";
#define SL__ERR_STR(name, val, msg) case SL_##name: return msg;
    SL_ERRNO_MAP(SL__ERR_STR)
#undef SL__ERR_STR
    default: return "unknown error";
    }
}

_Noreturn void sl__assert_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "sluice: invariant violated: %s (%s:%d)\n", what, file, line);
    abort();
}

int sl__err(char *errstr, size_t errstr_size, int code, const char *fmt, ...)
{
    if (errstr && errstr_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return code;
}

static _Noreturn void oom(size_t n)
{
    fprintf(stderr, "sluice: out of memory allocating %zu bytes\n", n);
    abort();
}

void *sl__xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *sl__xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p) oom(n * m);
    return p;
}

void *sl__xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *sl__xstrdup(const char *s) { return sl__xstrndup(s, strlen(s)); }

char *sl__xstrndup(const char *s, size_t n)
{
    char *d = sl__xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* A 64-bit hash over bytes: 8-byte words folded through a multiply-xorshift;
 * quality is enough for hash tables and partitioning, not for security. */
uint64_t sl__hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = seed ^ (0x9e3779b97f4a7c15ULL * (n + 1));
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ sl__mix64(w)) * 0x9e3779b97f4a7c15ULL;
        s += 8;
        n -= 8;
    }
    uint64_t t = 0;
    for (size_t i = 0; i < n; i++) t |= (uint64_t)s[i] << (8 * i);
    h = (h ^ sl__mix64(t ^ 0x5bd1e995ULL)) * 0x9e3779b97f4a7c15ULL;
    return sl__mix64(h);
}

uint64_t sl__clock_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

sl__clock_fn sl__clock = sl__clock_monotonic;

void sl__crash_point(const char *name)
{
    static atomic_int hits;
    const char *spec = getenv("SLUICE_CRASH_AT");
    if (!spec) return;
    size_t n = strlen(name);
    if (strncmp(spec, name, n) != 0 || (spec[n] != 0 && spec[n] != ':')) return;
    int k = spec[n] == ':' ? atoi(spec + n + 1) : 1;
    if (atomic_fetch_add(&hits, 1) + 1 == (k > 0 ? k : 1)) {
        fprintf(stderr, "sluice: crash point %s reached, killing the process\n", name);
        kill(getpid(), SIGKILL);
    }
}
