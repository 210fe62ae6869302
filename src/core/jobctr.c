/* jobctr.c — a job's labelled business counters (events per type, ...):
 * a short list of (name, labels) -> atomic count, owned by the job and
 * read by the obs layer through sl__job_counters_each. The checkpointing
 * is the counting operators' (ops/count.c): each keeps its own share in
 * its snapshot and adds it back here on restore. */
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "stats.h"

struct sl__jctr {
    char name[96], help[200], labels[160];
    _Atomic uint64_t v;
    struct sl__jctr *next;
};

_Atomic uint64_t *sl__job_counter(sl_job *j, const char *name, const char *help,
                                  const char *labels)
{
    pthread_mutex_lock(&j->lock);
    struct sl__jctr **at = &j->counters;
    for (; *at; at = &(*at)->next)
        if (!strcmp((*at)->name, name) && !strcmp((*at)->labels, labels)) break;
    if (!*at) {
        struct sl__jctr *c = sl__xcalloc(1, sizeof *c);
        snprintf(c->name, sizeof c->name, "%s", name);
        snprintf(c->help, sizeof c->help, "%s", help ? help : "");
        snprintf(c->labels, sizeof c->labels, "%s", labels ? labels : "");
        atomic_init(&c->v, 0);
        *at = c;
    }
    _Atomic uint64_t *v = &(*at)->v;
    pthread_mutex_unlock(&j->lock);
    return v;
}

void sl__job_counters_each(const sl_job *cj,
                           void (*fn)(void *ud, const char *name, const char *help,
                                      const char *labels, uint64_t v),
                           void *ud)
{
    sl_job *j = (sl_job *)cj;
    pthread_mutex_lock(&j->lock);
    for (struct sl__jctr *c = j->counters; c; c = c->next)
        fn(ud, c->name, c->help, c->labels, atomic_load(&c->v));
    pthread_mutex_unlock(&j->lock);
}

void sl__job_counters_free(sl_job *j)
{
    struct sl__jctr *c = j->counters;
    while (c) {
        struct sl__jctr *n = c->next;
        free(c);
        c = n;
    }
    j->counters = NULL;
}
