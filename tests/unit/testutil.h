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

#include <zlib.h>

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
/* An operator instance driven through its vtable, with its schemas,
 * configuration and a capturing output: the fixture the keyed-operator
 * tests (sessions, interval joins) share. in, out and conf are the
 * caller's to create and become the fixture's. */
typedef struct {
    const sl__op_vt *vt;
    sl_schema *in, *out;
    void *conf, *st;
    int key_cols[1];
    sl__opinfo info;
    sl__ctx ctx;
    tu_sink sink;
} tu_op;

/* Opens vt over in -> out keyed by column key_col, event time in time_col,
 * 8 key groups, batches of 64 rows. */
static inline void tu_op_open(tu_op *o, const sl__op_vt *vt, sl_schema *in,
                              sl_schema *out, void *conf, int key_col, int time_col)
{
    memset(o, 0, sizeof *o);
    o->vt = vt;
    o->in = in;
    o->out = out;
    o->conf = conf;
    o->key_cols[0] = key_col;
    o->info = (sl__opinfo){.in = in, .out = out, .time_col = time_col,
                           .key_cols = o->key_cols, .nkey = 1, .batch_cap = 64};
    o->ctx = tu_ctx();
    o->ctx.key_groups = 8;
    tu_sink_init(&o->sink, 64);
    char err[256];
    if (vt->open(&o->st, conf, &o->info, &o->ctx, err, sizeof err)) fail_msg("open: %s", err);
}

static inline void tu_op_close(tu_op *o)
{
    o->vt->close(o->st);
    o->vt->conf_free(o->conf);
    tu_sink_free(&o->sink);
    sl_schema_free(o->out);
    sl_schema_free(o->in);
}

static inline void tu_op_wm(tu_op *o, int64_t t)
{
    assert_int_equal(o->vt->watermark(o->st, t, &o->sink.out), 0);
}

/* The seed of a randomised test: SLUICE_SEED if set, else derived from the
 * commit exactly as the pytest suites derive it (crc32 of `git rev-parse
 * HEAD` modulo 10^6), so one commit runs one schedule everywhere. Printed
 * with the way to rerun it. */
static inline unsigned tu_seed(const char *test)
{
    unsigned seed;
    const char *env = getenv("SLUICE_SEED");
    if (env && *env) {
        seed = (unsigned)strtoul(env, NULL, 10);
    } else {
        char head[128] = "no-commit";
        FILE *f = popen("git rev-parse HEAD 2>/dev/null", "r");
        if (f) {
            if (fgets(head, sizeof head, f)) head[strcspn(head, "\n")] = 0;
            else snprintf(head, sizeof head, "no-commit");
            pclose(f);
        }
        if (!head[0]) snprintf(head, sizeof head, "no-commit");
        seed = (unsigned)(crc32(0L, (const Bytef *)head, (uInt)strlen(head)) % 1000000u);
    }
    printf("%s: seed %u (rerun with SLUICE_SEED=%u)\n", test, seed, seed);
    return seed;
}
#endif
