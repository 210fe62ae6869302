/* testutil.h — shared helpers for the cmocka unit tests: a capturing
 * operator output and a context with no job behind it. */
#ifndef SL_TESTUTIL_H
#define SL_TESTUTIL_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"

/* Collects every batch an operator emits. */
typedef struct {
    sl__out out;
    sl_batch *got[4096];
    int n;
} tu_sink;

static int tu_push(sl__out *o, sl_batch *b)
{
    tu_sink *s = (tu_sink *)o;
    if (s->n >= 4096) { sl__batch_free(b); return SL_ENOMEM; }
    s->got[s->n++] = b;
    return 0;
}
static inline void tu_sink_init(tu_sink *s, uint32_t cap)
{
    memset(s, 0, sizeof *s);
    s->out.push = tu_push;
    s->out.batch_cap = cap;
}
static inline size_t tu_sink_rows(const tu_sink *s)
{
    size_t n = 0;
    for (int i = 0; i < s->n; i++) n += s->got[i]->n;
    return n;
}
static inline void tu_sink_free(tu_sink *s)
{
    for (int i = 0; i < s->n; i++) sl__batch_free(s->got[i]);
    s->n = 0;
}
/* A context without a job: dead letters and counters go to process-wide
 * counters readable with sl__test_counter(). */
static inline sl__ctx tu_ctx(void)
{
    sl__ctx c = {.job = NULL, .stage = 0, .task = 0, .ntasks = 1,
                 .outdir = NULL};
    return c;
}
#endif
