/* util.c — error codes and messages, allocation that exits on exhaustion
 * (including large zero-filled regions on huge pages), the always-on
 * assertion, hashing and the injectable clock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
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
    sl__log(SL__LOG_ERROR, "core", "invariant violated", "what=\"%s\" at=%s:%d", what,
            file, line);
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
    sl__log(SL__LOG_ERROR, "core", "out of memory", "bytes=%zu exit=%d", n,
            SL__EXIT_OOM);
    _exit(SL__EXIT_OOM);
}

#ifdef SL_ALLOC_FAIL
static atomic_ullong g_allocs;
static long long g_fail_at = -2; /* -2: not read yet, -1: never */
static int g_count;

static void alloc_report(void) { sl__alloc_mark("exit"); }

static bool alloc_fails(void)
{
    if (g_fail_at == -2) { /* first allocation: single-threaded start-up */
        const char *v = getenv("SLUICE_ALLOC_FAIL");
        g_fail_at = v ? atoll(v) : -1;
        g_count = getenv("SLUICE_ALLOC_COUNT") != NULL;
        if (g_count) atexit(alloc_report);
    }
    unsigned long long k = atomic_fetch_add(&g_allocs, 1) + 1;
    return g_fail_at > 0 && k == (unsigned long long)g_fail_at;
}

void sl__alloc_mark(const char *what)
{
    if (g_count)
        fprintf(stderr, "sluice-alloc: %s at %llu\n", what,
                (unsigned long long)atomic_load(&g_allocs));
}
#else
static inline bool alloc_fails(void) { return false; }
void sl__alloc_mark(const char *what) { (void)what; }
#endif

void *sl__xmalloc(size_t n)
{
    void *p = alloc_fails() ? NULL : malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *sl__xcalloc(size_t n, size_t m)
{
    void *p = alloc_fails() ? NULL : calloc(n ? n : 1, m ? m : 1);
    if (!p) oom(n * m);
    return p;
}

void *sl__xrealloc(void *p, size_t n)
{
    void *q = alloc_fails() ? NULL : realloc(p, n ? n : 1);
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

#define HUGE_PAGE ((size_t)2 << 20)

/* A private anonymous mapping: zero-filled, and pages are only backed once
 * touched. From 2 MiB on, it is aligned to 2 MiB and marked for
 * transparent huge pages (the kernel may or may not use them). */
void *sl__huge_alloc(size_t n)
{
    if (n == 0) n = 1;
    if (alloc_fails()) oom(n);
    if (n < HUGE_PAGE) {
        void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (p == MAP_FAILED) oom(n);
        return p;
    }
    size_t len = (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    char *p = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) oom(n);
    char *a = (char *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (a > p) munmap(p, (size_t)(a - p));
    if (a + len < p + len + HUGE_PAGE) munmap(a + len, (size_t)(p + len + HUGE_PAGE - (a + len)));
#ifdef MADV_HUGEPAGE
    madvise(a, len, MADV_HUGEPAGE);
#endif
    return a;
}

void sl__huge_free(void *p, size_t n)
{
    if (!p) return;
    if (n == 0) n = 1;
    munmap(p, n < HUGE_PAGE ? n : (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1));
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
    /* t = the 0..7 remaining bytes, little-endian, read without a byte
     * loop: from the 8 bytes ending at the end when the key is that long,
     * else from two overlapping loads (the result is the same). */
    uint64_t t = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n > 0 && s - (const unsigned char *)p >= (ptrdiff_t)(8 - n)) {
        memcpy(&t, s + n - 8, 8);
        t >>= 8 * (8 - n);
    } else if (n >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, s, 4);
        memcpy(&hi, s + n - 4, 4);
        t = lo | (uint64_t)hi << (8 * (n - 4));
    } else if (n > 0) {
        t = s[0] | (uint64_t)s[n / 2] << (8 * (n / 2)) | (uint64_t)s[n - 1] << (8 * (n - 1));
    }
#else
    for (size_t i = 0; i < n; i++) t |= (uint64_t)s[i] << (8 * i);
#endif
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
        sl__log(SL__LOG_ERROR, "core", "crash point reached, killing the process",
                "point=%s", name);
        kill(getpid(), SIGKILL);
    }
}

bool sl__fault(const char *name)
{
    static atomic_int hits;
    const char *spec = getenv("SLUICE_FAULT");
    if (!spec) return false;
    size_t n = strlen(name);
    if (strncmp(spec, name, n) != 0 || (spec[n] != 0 && spec[n] != ':')) return false;
    int k = spec[n] == ':' ? atoi(spec + n + 1) : 1;
    return atomic_fetch_add(&hits, 1) + 1 == (k > 0 ? k : 1);
}
