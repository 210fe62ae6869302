/* qstate.c — queryable state: the registry of operator instances that can
 * answer "what is the current value for this key" (GET /state/<operator>).
 *
 * Operators register each instance when it opens and unregister it when it
 * closes; a query asks every instance of the named operator (each holds the
 * keys of its key groups, so at most one has rows for a key) and
 * concatenates their answers. Instances answer under their own lock (see
 * sl__window_query), so a query never sees a half-applied batch and stays
 * answerable while a checkpoint runs. The registry is process-wide and
 * keyed by job, so several jobs in one process keep their operators apart.
 *
 * Privacy: a job that publishes through k-anonymity (sl_stream_k_anon or a
 * folding window) marks itself here; its instances must then apply k
 * themselves (the window does when k was pushed into it) or refuse. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/runtime.h"

typedef struct {
    sl_job *job;
    uint32_t op_id;
    char name[32];
    void *inst;
    sl__qs_fn fn;
} entry;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static entry *entries;
static size_t n, cap;
static sl_job **kanon_jobs;
static size_t nk, capk;

void sl__qs_register(sl_job *job, uint32_t op_id, const char *name, void *inst,
                     sl__qs_fn fn)
{
    if (!job) return;
    pthread_mutex_lock(&lock);
    if (n == cap) entries = sl__xrealloc(entries, (cap = cap ? 2 * cap : 16) * sizeof *entries);
    entry *e = &entries[n++];
    memset(e, 0, sizeof *e);
    e->job = job;
    e->op_id = op_id;
    snprintf(e->name, sizeof e->name, "%s", name);
    e->inst = inst;
    e->fn = fn;
    pthread_mutex_unlock(&lock);
}

void sl__qs_unregister(void *inst)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n; i++)
        if (entries[i].inst == inst) {
            entries[i] = entries[--n];
            break;
        }
    pthread_mutex_unlock(&lock);
}

void sl__qs_note_kanon(sl_job *job)
{
    if (!job) return;
    pthread_mutex_lock(&lock);
    bool have = false;
    for (size_t i = 0; i < nk; i++) have |= kanon_jobs[i] == job;
    if (!have) {
        if (nk == capk)
            kanon_jobs = sl__xrealloc(kanon_jobs, (capk = capk ? 2 * capk : 4) * sizeof *kanon_jobs);
        kanon_jobs[nk++] = job;
    }
    pthread_mutex_unlock(&lock);
}

void sl__qs_forget_job(sl_job *job)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < nk; i++)
        if (kanon_jobs[i] == job) {
            kanon_jobs[i] = kanon_jobs[--nk];
            break;
        }
    for (size_t i = 0; i < n;) {
        if (entries[i].job == job) entries[i] = entries[--n];
        else i++;
    }
    pthread_mutex_unlock(&lock);
}

bool sl__qs_job_kanon(const sl_job *job)
{
    pthread_mutex_lock(&lock);
    bool have = false;
    for (size_t i = 0; i < nk; i++) have |= kanon_jobs[i] == job;
    pthread_mutex_unlock(&lock);
    return have;
}

/* "window" names the job's first operator of that name, "window@3" the one
 * with stable id 3. */
static bool matches(const entry *e, const char *op)
{
    const char *at = strchr(op, '@');
    size_t len = at ? (size_t)(at - op) : strlen(op);
    if (strlen(e->name) != len || strncmp(e->name, op, len)) return false;
    if (!at) return true;
    int64_t id;
    return sl__parse_i64(at + 1, &id) == 0 && id == (int64_t)e->op_id;
}

int sl__qs_query(sl_job *job, const char *op, const char *const *vals, int nvals,
                 sl__qs_answer *ans, char *err, size_t errsz)
{
    memset(ans, 0, sizeof *ans);
    bool kanon = sl__qs_job_kanon(job);
    pthread_mutex_lock(&lock);
    /* the first operator id that matches, when no id was given */
    int64_t want = -1;
    for (size_t i = 0; i < n && want < 0; i++)
        if (entries[i].job == job && matches(&entries[i], op)) want = entries[i].op_id;
    if (want < 0) {
        pthread_mutex_unlock(&lock);
        return sl__err(err, errsz, SL_ENOENT, "no queryable operator '%s' is running", op);
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const entry *e = &entries[i];
        if (e->job != job || (int64_t)e->op_id != want) continue;
        ans->op_id = e->op_id;
        snprintf(ans->op, sizeof ans->op, "%s", e->name);
        /* under the registry lock: an instance cannot close meanwhile */
        rc = e->fn(e->inst, vals, nvals, kanon, ans, err, errsz);
    }
    pthread_mutex_unlock(&lock);
    if (rc < 0) sl__qs_answer_free(ans);
    return rc;
}

void sl__qs_answer_free(sl__qs_answer *a)
{
    if (a->rows) sl__batch_free(a->rows);
    free(a->suppressed);
    memset(a, 0, sizeof *a);
}
