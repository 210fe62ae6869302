/* deadletter.c — bad input is never fatal and never silent: dead letters
 * are counted and appended as JSON Lines {source, position, reason,
 * payload} to <output.dir>/dead-letters.jsonl, with identifier fields
 * masked before they get here. Also the job's counters. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "graph.h"
#include "stats.h"

static atomic_uint_fast64_t g_ctr[SL__CTR_N];
static char g_last_dl[512];

uint64_t sl__test_counter(sl__ctr c) { return atomic_load(&g_ctr[c]); }
const char *sl__test_last_dead_letter(void) { return g_last_dl; }

void sl__count(sl__ctx *ctx, sl__ctr c, uint64_t n)
{
    if (ctx && ctx->ctr)
        atomic_fetch_add_explicit(&ctx->ctr[c], n, memory_order_relaxed);
    else if (ctx && ctx->job)
        atomic_fetch_add_explicit(&ctx->job->ctr[c], n, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&g_ctr[c], n, memory_order_relaxed);
}

static void json_str(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void write_letter(FILE *f, const char *source, const char *position,
                         const char *reason, const char *payload, size_t len)
{
    fputs("{\"source\":", f);
    json_str(f, source, strlen(source));
    fputs(",\"position\":", f);
    json_str(f, position, strlen(position));
    fputs(",\"reason\":", f);
    json_str(f, reason, strlen(reason));
    fputs(",\"payload\":", f);
    json_str(f, payload, len);
    fputs("}\n", f);
}

int sl__mkdirs(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof buf) return SL_EINVAL;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0755) && errno != EEXIST) return SL_EIO;
        buf[i] = c;
    }
    return 0;
}

/* Dead letters per reason, process-wide, for metrics. Like the letters
 * themselves they are at-least-once: a replayed bad line counts again. */
enum { DL_REASONS = 32 };
static pthread_mutex_t g_dl_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_dl_reason[DL_REASONS][32];
static uint64_t g_dl_count[DL_REASONS];

static void count_reason(const char *reason)
{
    pthread_mutex_lock(&g_dl_lock);
    int i = 0;
    while (i < DL_REASONS - 1 && g_dl_reason[i][0] &&
           strncmp(g_dl_reason[i], reason, sizeof g_dl_reason[i] - 1))
        i++;
    if (!g_dl_reason[i][0]) /* the last slot collects overflow as "other" */
        snprintf(g_dl_reason[i], sizeof g_dl_reason[i], "%s",
                 i == DL_REASONS - 1 ? "other" : reason);
    g_dl_count[i]++;
    pthread_mutex_unlock(&g_dl_lock);
}

int sl__dead_letter_reasons(char (*names)[32], uint64_t *counts, int max)
{
    pthread_mutex_lock(&g_dl_lock);
    int n = 0;
    for (; n < DL_REASONS && n < max && g_dl_reason[n][0]; n++) {
        memcpy(names[n], g_dl_reason[n], 32);
        counts[n] = g_dl_count[n];
    }
    pthread_mutex_unlock(&g_dl_lock);
    return n;
}

void sl__dead_letter(sl__ctx *ctx, const char *source, const char *position,
                     const char *reason, const char *payload, size_t len)
{
    sl__count(ctx, SL__CTR_DEAD_LETTERS, 1);
    count_reason(reason);
    if (!ctx || !ctx->job) {
        /* no job (a table loading, a unit test): report in the log */
        snprintf(g_last_dl, sizeof g_last_dl, "%s@%s", reason, position);
        char *letter = NULL;
        size_t n = 0;
        FILE *m = open_memstream(&letter, &n);
        if (m) {
            write_letter(m, source, position, reason, payload, len);
            fclose(m);
            if (n && letter[n - 1] == '\n') letter[n - 1] = 0;
        }
        sl__log(SL__LOG_WARN, "deadletter", "dead letter", "reason=\"%s\" letter=%s",
                reason, letter ? letter : "{}");
        free(letter);
        return;
    }
    sl_job *j = ctx->job;
    pthread_mutex_lock(&j->lock);
    if (!j->dlq) {
        char path[4096];
        sl__mkdirs(j->conf.output_dir);
        snprintf(path, sizeof path, "%s/dead-letters.jsonl", j->conf.output_dir);
        j->dlq = fopen(path, "a");
        if (!j->dlq)
            sl__log(SL__LOG_ERROR, "deadletter", "cannot open the dead-letter file: "
                    "dead letters are counted but not written",
                    "file=\"%s\" error=\"%s\"", path, strerror(errno));
    }
    bool over = (j->conf.dl_max_count && j->dl_written >= (uint64_t)j->conf.dl_max_count) ||
                (j->conf.dl_max_bytes && j->dl_bytes >= (uint64_t)j->conf.dl_max_bytes);
    if (over) { /* a cap of deadletter.max.*: drop (counted) or fail */
        bool first = atomic_fetch_add(&j->dl_dropped, 1) == 0;
        bool count_cap = j->conf.dl_max_count &&
                         j->dl_written >= (uint64_t)j->conf.dl_max_count;
        const char *key = count_cap ? "deadletter.max.count" : "deadletter.max.bytes";
        long long cap = count_cap ? (long long)j->conf.dl_max_count
                                  : (long long)j->conf.dl_max_bytes;
        pthread_mutex_unlock(&j->lock);
        if (j->conf.dl_overflow == 1) {
            sl__job_fail(j, SL_ENOMEM, "dead letters: more than '%s' (%lld) and "
                         "'deadletter.overflow' is fail: the input is worse than "
                         "expected (last: %s at %s)", key, cap, reason, position);
        } else if (first) {
            sl__log(SL__LOG_WARN, "deadletter", "dead-letter cap reached: further dead "
                    "letters are counted and dropped", "key=%s cap=%lld", key, cap);
        }
        return;
    }
    if (j->dlq) {
        long before = ftell(j->dlq);
        write_letter(j->dlq, source, position, reason, payload, len);
        /* to the kernel now: a checkpoint may cover this record before the
         * job ends, and a kill -9 must not lose the letter with the buffer */
        fflush(j->dlq);
        long after = ftell(j->dlq);
        j->dl_written++;
        if (before >= 0 && after >= before) j->dl_bytes += (uint64_t)(after - before);
    }
    pthread_mutex_unlock(&j->lock);
}

static size_t mask_digit_runs(const char *in, size_t len, char *out)
{
    size_t i = 0;
    while (i < len) {
        size_t k = i;
        while (k < len && in[k] >= '0' && in[k] <= '9') k++;
        if (k - i >= 5) {
            memset(out + i, '*', k - i);
            i = k;
        } else if (k > i) {
            memcpy(out + i, in + i, k - i);
            i = k;
        } else {
            out[i] = in[i];
            i++;
        }
    }
    return len;
}

size_t sl__mask_payload(const sl_schema *s, const int *field_col, int nfield,
                        char sep, const char *in, size_t len, char *out)
{
    memcpy(out, in, len);
    out[len] = 0;
    if (sep == 0 || !field_col) return mask_digit_runs(in, len, out);
    /* count fields; a mismatch means we cannot trust positions: mask runs */
    int nf = 1;
    for (size_t i = 0; i < len; i++) nf += in[i] == sep;
    if (nf != nfield) return mask_digit_runs(in, len, out);
    size_t start = 0;
    int f = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && in[i] != sep) continue;
        int c = field_col[f];
        if (c >= 0 && c < s->n && s->cols[c].identifier)
            memset(out + start, '*', i - start);
        f++;
        start = i + 1;
    }
    return len;
}
