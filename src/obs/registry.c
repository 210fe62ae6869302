/* registry.c — the metrics registry's open part: application counters
 * registered by name and label set (business metrics a job defines) and
 * external collectors (canaries) that append families at scrape time; plus
 * the text buffer every renderer writes into. The runtime's own metrics are
 * collected from core's snapshot in metrics.c. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void sl__obs_text_put(sl__obs_text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (t->len + n + 1 > cap) cap *= 2;
        t->p = sl__xrealloc(t->p, cap);
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = 0;
}

void sl__obs_text_printf(sl__obs_text *t, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof buf) {
        sl__obs_text_put(t, buf, (size_t)n);
        return;
    }
    char *big = sl__xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sl__obs_text_put(t, big, (size_t)n);
    free(big);
}

void sl__obs_text_free(sl__obs_text *t)
{
    free(t->p);
    memset(t, 0, sizeof *t);
}

void sl__obs_text_json(sl__obs_text *t, const char *s)
{
    sl__obs_text_put(t, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            char e[2] = {'\\', (char)*c};
            sl__obs_text_put(t, e, 2);
        } else if (*c < 0x20) {
            sl__obs_text_printf(t, "\\u%04x", *c);
        } else {
            sl__obs_text_put(t, (const char *)c, 1);
        }
    }
    sl__obs_text_put(t, "\"", 1);
}

void sl__obs_text_label(sl__obs_text *t, const char *s)
{
    sl__obs_text_put(t, "\"", 1);
    for (const char *c = s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            char e[2] = {'\\', *c};
            sl__obs_text_put(t, e, 2);
        } else if (*c == '\n') {
            sl__obs_text_put(t, "\\n", 2);
        } else {
            sl__obs_text_put(t, c, 1);
        }
    }
    sl__obs_text_put(t, "\"", 1);
}

/* ---- application counters ------------------------------------------------ */
typedef struct app_counter {
    char name[96], help[160], labels[160];
    _Atomic uint64_t v;
    struct app_counter *next;
} app_counter;

typedef struct collector {
    sl__obs_collect_fn fn;
    void *udata;
    struct collector *next;
} collector;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static app_counter *g_counters, **g_tail = &g_counters;
static collector *g_collectors;

_Atomic uint64_t *sl__obs_counter(const char *name, const char *help,
                                  const char *labels)
{
    pthread_mutex_lock(&g_lock);
    app_counter *c;
    for (c = g_counters; c; c = c->next)
        if (!strcmp(c->name, name) && !strcmp(c->labels, labels ? labels : "")) break;
    if (!c) {
        c = sl__xcalloc(1, sizeof *c);
        snprintf(c->name, sizeof c->name, "%s", name);
        snprintf(c->help, sizeof c->help, "%s", help ? help : "");
        snprintf(c->labels, sizeof c->labels, "%s", labels ? labels : "");
        atomic_init(&c->v, 0);
        *g_tail = c; /* registration order keeps a family's samples together */
        g_tail = &c->next;
    }
    pthread_mutex_unlock(&g_lock);
    return &c->v;
}

void sl__obs_collector_add(sl__obs_collect_fn fn, void *udata)
{
    collector *c = sl__xcalloc(1, sizeof *c);
    c->fn = fn;
    c->udata = udata;
    pthread_mutex_lock(&g_lock);
    c->next = g_collectors;
    g_collectors = c;
    pthread_mutex_unlock(&g_lock);
}

void sl__obs_registry_render(sl__obs_text *t)
{
    pthread_mutex_lock(&g_lock);
    for (app_counter *c = g_counters; c; c = c->next) {
        bool first = true; /* HELP/TYPE once per family */
        for (app_counter *p = g_counters; p != c; p = p->next)
            if (!strcmp(p->name, c->name)) first = false;
        if (first)
            sl__obs_text_printf(t, "# HELP %s %s\n# TYPE %s counter\n", c->name,
                                c->help, c->name);
        sl__obs_text_printf(t, "%s%s%s%s %llu\n", c->name, c->labels[0] ? "{" : "",
                            c->labels, c->labels[0] ? "}" : "",
                            (unsigned long long)atomic_load_explicit(
                                &c->v, memory_order_relaxed));
    }
    for (collector *c = g_collectors; c; c = c->next) c->fn(t, c->udata);
    pthread_mutex_unlock(&g_lock);
}

typedef struct {
    sl__obs_text *t;
    bool first;
} json_walk;

static void job_counter_json(void *ud, const char *name, const char *help,
                             const char *labels, uint64_t v)
{
    (void)help;
    json_walk *w = ud;
    char key[300];
    snprintf(key, sizeof key, "%s{%s}", name, labels);
    if (!w->first) sl__obs_text_put(w->t, ",", 1);
    w->first = false;
    sl__obs_text_json(w->t, key);
    sl__obs_text_printf(w->t, ":%llu", (unsigned long long)v);
}

void sl__obs_registry_json(sl__obs_text *t, const sl_job *j)
{
    pthread_mutex_lock(&g_lock);
    sl__obs_text_put(t, "{", 1);
    for (app_counter *c = g_counters; c; c = c->next) {
        char key[300];
        snprintf(key, sizeof key, "%s%s%s%s", c->name, c->labels[0] ? "{" : "",
                 c->labels, c->labels[0] ? "}" : "");
        if (c != g_counters) sl__obs_text_put(t, ",", 1);
        sl__obs_text_json(t, key);
        sl__obs_text_printf(t, ":%llu", (unsigned long long)atomic_load_explicit(
                                            &c->v, memory_order_relaxed));
    }
    json_walk w = {.t = t, .first = g_counters == NULL};
    pthread_mutex_unlock(&g_lock);
    if (j) sl__job_counters_each(j, job_counter_json, &w);
    sl__obs_text_put(t, "}", 1);
}
