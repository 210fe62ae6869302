/* wmmap.c — the stage-2 watermark map of one repartition partition: the
 * highest watermark heard per source partition, and their minimum (see
 * cluster.h). Pure logic: no Kafka, no clock. */
#include <stdlib.h>

#include "cluster/cluster.h"

void sl__wmmap_init(sl__wmmap *m, int nsrc)
{
    m->nsrc = nsrc;
    m->wm = sl__xcalloc(nsrc > 0 ? (size_t)nsrc : 1, sizeof *m->wm);
    for (int i = 0; i < nsrc; i++) m->wm[i] = SL_TS_MIN;
}

void sl__wmmap_close(sl__wmmap *m)
{
    free(m->wm);
    m->wm = NULL;
    m->nsrc = 0;
}

bool sl__wmmap_update(sl__wmmap *m, uint32_t src, int64_t wm)
{
    if (src >= (uint32_t)m->nsrc || wm <= m->wm[src]) return false;
    m->wm[src] = wm;
    return true;
}

int64_t sl__wmmap_min(const sl__wmmap *m)
{
    int64_t v = SL_TS_MAX;
    for (int i = 0; i < m->nsrc; i++)
        if (m->wm[i] < v) v = m->wm[i];
    return m->nsrc ? v : SL_TS_MIN;
}

void sl__wmmap_encode(const sl__wmmap *m, sl__buf *out)
{
    sl__buf_put_u32(out, (uint32_t)m->nsrc);
    for (int i = 0; i < m->nsrc; i++) sl__buf_put_i64(out, m->wm[i]);
}

int sl__wmmap_decode(sl__wmmap *m, const void *p, size_t len)
{
    sl__rbuf r = {.p = p, .len = len};
    uint32_t n = sl__rbuf_u32(&r);
    if (r.err || n != (uint32_t)m->nsrc || len != 4 + (size_t)n * 8) return SL_ECORRUPT;
    for (uint32_t i = 0; i < n; i++) sl__wmmap_update(m, i, sl__rbuf_i64(&r));
    return r.err ? SL_ECORRUPT : 0;
}
