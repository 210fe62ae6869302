/* snapmem.c — sl__snap_put, the one entry point instances write snapshot
 * sections through, and a snapshot writer that keeps the sections in
 * memory (unit tests, and anything that wants an instance's state as bytes
 * without the checkpoint store). The file writer lives with the store; both
 * fill the same struct sl__snap_writer (snap.h).
 *
 * The memory writer copies every section it is given, in order, so the
 * caller's buffer may be reused as soon as sl__snap_put returns. */
#include <stdlib.h>
#include <string.h>

#include "snap.h"

sl__snap_writer *sl__snap_writer_mem(void);
int sl__snap_writer_mem_next(sl__snap_writer *w, size_t *i, int32_t *kg,
                             const void **data, size_t *len);
void sl__snap_writer_free(sl__snap_writer *w);

int sl__snap_put(sl__snap_writer *w, int32_t key_group, const void *data,
                 size_t len)
{
    if (!w || !w->put || key_group < -1 || (len && !data)) return SL_EINVAL;
    return w->put(w, key_group, data, len);
}

typedef struct {
    int32_t kg;
    void *data;
    size_t len;
} mem_section;

typedef struct {
    sl__snap_writer w; /* first: the writer is the whole object */
    mem_section *sec;
    size_t n, cap;
} mem_writer;

static int mem_put(sl__snap_writer *wp, int32_t kg, const void *data,
                   size_t len)
{
    mem_writer *m = (mem_writer *)wp;
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 16;
        m->sec = sl__xrealloc(m->sec, m->cap * sizeof *m->sec);
    }
    mem_section *s = &m->sec[m->n++];
    s->kg = kg;
    s->len = len;
    s->data = sl__xmalloc(len ? len : 1);
    if (len) memcpy(s->data, data, len);
    return 0;
}

sl__snap_writer *sl__snap_writer_mem(void)
{
    mem_writer *m = sl__xcalloc(1, sizeof *m);
    m->w.put = mem_put;
    m->w.impl = m;
    return &m->w;
}

int sl__snap_writer_mem_next(sl__snap_writer *w, size_t *i, int32_t *kg,
                             const void **data, size_t *len)
{
    if (!w || w->put != mem_put) return 0;
    mem_writer *m = (mem_writer *)w;
    if (*i >= m->n) return 0;
    const mem_section *s = &m->sec[(*i)++];
    *kg = s->kg;
    *data = s->data;
    *len = s->len;
    return 1;
}

void sl__snap_writer_free(sl__snap_writer *w)
{
    if (!w || w->put != mem_put) return;
    mem_writer *m = (mem_writer *)w;
    for (size_t i = 0; i < m->n; i++) free(m->sec[i].data);
    free(m->sec);
    free(m);
}
