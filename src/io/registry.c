/* registry.c — the connector tables: adding a connector is one file and one
 * entry here. Also the "fn" sink that hands result batches to a user
 * callback (sl_stream_sink_fn). */
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"

extern const sl__source_vt sl__src_file, sl__src_generator;
extern const sl__sink_vt sl__sink_sqlite, sl__sink_file, sl__sink_stdout;
extern const sl__source_vt sl__src_kafka, sl__src_postgres;
extern const sl__sink_vt sl__sink_kafka, sl__sink_postgres;

static const sl__source_vt *const sources[] = {&sl__src_file, &sl__src_generator,
                                               &sl__src_kafka, &sl__src_postgres};
static const sl__sink_vt *const sinks[] = {&sl__sink_sqlite, &sl__sink_file,
                                           &sl__sink_stdout, &sl__sink_kafka,
                                           &sl__sink_postgres};

const sl__source_vt *sl__source_find(const char *name)
{
    for (size_t i = 0; i < sizeof sources / sizeof *sources; i++)
        if (strcmp(sources[i]->name, name) == 0) return sources[i];
    return NULL;
}

const sl__sink_vt *sl__sink_find(const char *name)
{
    for (size_t i = 0; i < sizeof sinks / sizeof *sinks; i++)
        if (strcmp(sinks[i]->name, name) == 0) return sinks[i];
    return NULL;
}

/* ---- the user-callback sink ---------------------------------------------- */
typedef struct {
    sl_sink_fn fn;
    void *ud;
} fn_conf;

static int fn_configure(void **conf, const char *const *kv, const sl_schema *in,
                        char *err, size_t errsz)
{
    (void)in;
    if (kv && kv[0]) return sl__err(err, errsz, SL_EINVAL, "fn sink: takes no keys");
    *conf = NULL;
    return 0;
}

static int fn_open(void **st, const void *conf, const sl_schema *in,
                   sl__ctx *ctx, char *err, size_t errsz)
{
    (void)in, (void)ctx, (void)err, (void)errsz;
    *st = (void *)conf;
    return 0;
}

static int fn_write(void *st, const sl_batch *b, char *err, size_t errsz)
{
    fn_conf *c = st;
    int rc = c->fn(b, c->ud);
    return rc ? sl__err(err, errsz, rc, "user sink returned %d", rc) : 0;
}

static int fn_flush(void *st, char *err, size_t errsz)
{
    (void)st, (void)err, (void)errsz;
    return 0;
}

static void fn_close(void *st) { (void)st; }

static const sl__sink_vt fn_sink = {
    .name = "fn", .configure = fn_configure, .max_parallelism = 1,
    .open = fn_open, .write = fn_write, .flush = fn_flush, .close = fn_close,
    .conf_free = free};

int sl_stream_sink_fn(sl_stream *s, sl_sink_fn fn, void *udata)
{
    if (!s) return SL_EINVAL;
    if (!fn) return sl__job_fail(sl__stream_job(s), SL_EINVAL, "sink: no function");
    int rc = sl__stream_add_sink(s, &fn_sink, NULL);
    if (rc) return rc;
    /* the conf carries the callback, which configure cannot see */
    fn_conf *c = sl__xcalloc(1, sizeof *c);
    c->fn = fn;
    c->ud = udata;
    sl__job_set_sink_conf(sl__stream_job(s), c);
    return 0;
}
