/* opsnap.c — the snapshot section framing shared by the keyed operators
 * that keep their own state maps (session.c, ijoin.c): a header of magic,
 * definition fingerprint and watermark on every section, the checks a
 * restore makes before reading one, the operator-wide counters section,
 * and the rule that a restored instance keeps the lowest watermark of its
 * sections. */
#include "agg.h"

void sl__opsnap_header(sl__buf *b, uint32_t magic, uint64_t fp, int64_t wm)
{
    sl__buf_put_u32(b, magic);
    sl__buf_put_u64(b, fp);
    sl__buf_put_i64(b, wm);
}

int sl__opsnap_open(sl__rbuf *r, const void *data, size_t len, int32_t kg, int key_groups,
                    uint32_t magic, uint64_t fp, int64_t *wm)
{
    if (kg < -1 || (kg >= 0 && key_groups > 0 && kg >= key_groups)) return SL_EINVAL;
    if (len && !data) return SL_EINVAL;
    *r = (sl__rbuf){.p = data, .len = len};
    uint32_t m = sl__rbuf_u32(r);
    uint64_t f = sl__rbuf_u64(r);
    *wm = sl__rbuf_i64(r);
    if (r->err || m != magic) return SL_ECORRUPT;
    return f == fp ? 0 : SL_EINVAL;
}

void sl__opsnap_put_counters(sl__buf *b, const uint64_t *c, int n)
{
    for (int i = 0; i < n; i++) sl__buf_put_u64(b, c[i]);
}

int sl__opsnap_add_counters(sl__rbuf *r, uint64_t *c, int n)
{
    uint64_t v[8];
    SL_ASSERT(n <= 8);
    for (int i = 0; i < n; i++) v[i] = sl__rbuf_u64(r);
    if (r->err || r->off != r->len) return SL_ECORRUPT;
    for (int i = 0; i < n; i++) c[i] += v[i];
    return 0;
}

void sl__opsnap_restore_wm(int64_t *op_wm, bool *restored, int64_t wm)
{
    if (!*restored || wm < *op_wm) *op_wm = wm;
    *restored = true;
}
