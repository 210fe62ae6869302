/* winfix.h — the window operator fixture of the tests of its checkpoints
 * (test_winchg.c, test_incremental.c): a per-key window over (ts, k, u)
 * with COUNT, exact COUNT(DISTINCT u) and SUM(u), opened through the
 * operator's vtable as task `task` of `ntasks` with a state configuration
 * (tu_op_open sets neither); its output rows as sorted text, compared
 * against an uninterrupted run; and the check that <root>/shared holds
 * exactly the files the checkpoints list. */
#ifndef SLUICE_TESTS_WINFIX_H
#define SLUICE_TESTS_WINFIX_H

#include "testutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/agg.h"

enum { C_TS, C_K, C_U };
#define G 8 /* key groups */

static const sl_agg_spec WF_AGGS[] = {
    {.kind = SL_AGG_COUNT, .as = "events"},
    {.kind = SL_AGG_COUNT_DISTINCT, .col = "u", .as = "subscribers"},
    {.kind = SL_AGG_SUM, .col = "u", .as = "total"},
};

typedef tu_op wop; /* vt = &sl__window_vt */

static inline void wop_open(wop *w, const sl__state_conf *sc, int task, int ntasks)
{
    memset(w, 0, sizeof *w);
    w->vt = &sl__window_vt;
    w->in = sl_schema_new();
    sl_schema_add(w->in, "ts", SL_TIMESTAMP);
    sl_schema_add(w->in, "k", SL_STRING);
    sl_schema_add(w->in, "u", SL_INT64);
    static const char *const keys[] = {"k", NULL};
    sl_window_spec spec = {.size_ms = 1000000};
    char err[256];
    if (sl__window_conf_new(&w->conf, &w->out, w->in, keys, "ts", &spec, WF_AGGS,
                            sizeof WF_AGGS / sizeof WF_AGGS[0], err, sizeof err))
        fail_msg("conf: %s", err);
    w->key_cols[0] = C_K;
    w->info = (sl__opinfo){.in = w->in, .out = w->out, .time_col = C_TS,
                           .key_cols = w->key_cols, .nkey = 1, .batch_cap = 1024};
    w->ctx = tu_ctx();
    w->ctx.key_groups = G;
    w->ctx.ntasks = ntasks;
    w->ctx.task = task;
    w->ctx.state = sc;
    tu_sink_init(&w->sink, 1024);
    if (sl__window_vt.open(&w->st, w->conf, &w->info, &w->ctx, err, sizeof err))
        fail_msg("open: %s", err);
}

static inline void wop_close(wop *w) { tu_op_close(w); }

static uint64_t rng; /* xorshift; the tests seed it with tu_seed */
static inline uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static inline int wf_str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The output rows of several sinks together (tasks of one run) as text
 * "start|key|events|subscribers|total", sorted. */
static inline char **wf_rows(const tu_sink *const *s, int ns, size_t *n)
{
    char **r = NULL;
    *n = 0;
    for (int si = 0; si < ns; si++)
        for (int bi = 0; bi < s[si]->n; bi++) {
            const sl_batch *b = s[si]->got[bi];
            for (uint32_t i = 0; i < b->n; i++) {
                if (b->kind[i] != SL_KIND_DATA) continue;
                sl_str k = ((const sl_str *)b->cols[2].data)[i];
                char line[128];
                snprintf(line, sizeof line, "%" PRId64 "|%.*s|%" PRId64 "|%" PRId64 "|%" PRId64,
                         ((const int64_t *)b->cols[0].data)[i], (int)k.len, k.ptr,
                         ((const int64_t *)b->cols[3].data)[i],
                         ((const int64_t *)b->cols[4].data)[i],
                         ((const int64_t *)b->cols[5].data)[i]);
                r = realloc(r, (*n + 1) * sizeof *r);
                r[(*n)++] = strdup(line);
            }
        }
    if (*n) qsort(r, *n, sizeof *r, wf_str_cmp);
    return r;
}

/* The rows of got[0..ng) (tasks of one run) are exactly want's. */
static inline void assert_same_rows(const tu_sink *want, const tu_sink *const *got, int ng,
                                    const char *what)
{
    size_t nw, nn;
    char **w = wf_rows(&want, 1, &nw), **g = wf_rows(got, ng, &nn);
    for (size_t i = 0; i < nw && i < nn; i++)
        if (strcmp(w[i], g[i]) != 0)
            fail_msg("%s: row %zu differs:\n  uninterrupted %s\n  restored      %s", what, i,
                     w[i], g[i]);
    if (nw != nn) fail_msg("%s: %zu rows, the uninterrupted run %zu", what, nn, nw);
    printf("  %s: %zu rows, as the uninterrupted run\n", what, nn);
    for (size_t i = 0; i < nw; i++) free(w[i]);
    for (size_t i = 0; i < nn; i++) free(g[i]);
    free(w);
    free(g);
}

/* The shared files on disk are exactly those the chk-dirs under root list. */
static inline void assert_shared_is_listed_in(const char *root)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "cd %s && cat chk-*/rdb-*/FILES | awk '$1==\"sst\"{print $3}' | sort -u > "
             ".listed && ls shared | sort > .present && cmp -s .listed .present",
             root);
    assert_int_equal(system(cmd), 0);
}

#endif
