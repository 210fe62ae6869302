/* xcodec.c — the repartition topic's record encoding (format in
 * cluster.h): many rows per message, column by column, compact (varints),
 * checked on the way in so a corrupt or foreign message is refused rather
 * than misread. Pure logic: no Kafka. */
#include <string.h>

#include "cluster/cluster.h"

enum { X_MAGIC = 'X', X_VERSION = 1 };

uint32_t sl__x_fingerprint(const sl_schema *s)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    for (int c = 0; c < s->n; c++) {
        h = sl__mix64(h ^ sl__hash_bytes(s->cols[c].name, strlen(s->cols[c].name), 0));
        h = sl__mix64(h ^ (uint64_t)s->cols[c].type);
    }
    return (uint32_t)(h ^ (h >> 32));
}

static void put_varint(sl__buf *b, uint64_t v)
{
    unsigned char t[10];
    size_t n = 0;
    while (v >= 0x80) {
        t[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    t[n++] = (unsigned char)v;
    sl__buf_put(b, t, n);
}

static bool get_varint(sl__rbuf *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        const unsigned char *c = sl__rbuf_bytes(r, 1);
        if (!c) return false;
        x |= (uint64_t)(*c & 0x7f) << shift;
        if (!(*c & 0x80)) {
            *v = x;
            return true;
        }
    }
    r->err = true;
    return false;
}

static void put_header(sl__buf *out, int type)
{
    unsigned char h[3] = {X_MAGIC, X_VERSION, (unsigned char)type};
    sl__buf_put(out, h, 3);
}

void sl__x_encode_rows(sl__buf *out, const sl_batch *b, const uint32_t *rows, uint32_t n)
{
    if (!rows) n = b->n;
    put_header(out, SL__X_ROWS);
    sl__buf_put_u32(out, sl__x_fingerprint(b->schema));
    sl__buf_put_u32(out, n);
    for (uint32_t i = 0; i < n; i++) sl__buf_put(out, &b->kind[rows ? rows[i] : i], 1);
    for (int c = 0; c < b->schema->n; c++) {
        const struct sl__col *col = &b->cols[c];
        for (uint32_t i = 0; i < n; i++) sl__buf_put(out, &col->valid[rows ? rows[i] : i], 1);
        sl_type t = b->schema->cols[c].type;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t r = rows ? rows[i] : i;
            if (!col->valid[r]) continue;
            switch (t) {
            case SL_STRING: {
                const sl_str *s = (const sl_str *)col->data + r;
                put_varint(out, s->len);
                sl__buf_put(out, s->ptr, s->len);
                break;
            }
            case SL_BOOL:
                sl__buf_put(out, (const uint8_t *)col->data + r, 1);
                break;
            case SL_FLOAT64: {
                uint64_t bits;
                memcpy(&bits, (const double *)col->data + r, 8);
                sl__buf_put_u64(out, bits);
                break;
            }
            default: {
                int64_t v = ((const int64_t *)col->data)[r];
                put_varint(out, ((uint64_t)v << 1) ^ (0 - ((uint64_t)v >> 63)));
                break;
            }
            }
        }
    }
}

void sl__x_encode_wm(sl__buf *out, const uint32_t *parts, const int64_t *wms, uint32_t n)
{
    put_header(out, SL__X_WM);
    sl__buf_put_u32(out, n);
    for (uint32_t i = 0; i < n; i++) {
        sl__buf_put_u32(out, parts[i]);
        sl__buf_put_i64(out, wms[i]);
    }
}

int sl__x_type(const void *p, size_t len)
{
    const unsigned char *c = p;
    if (!p || len < 3 || c[0] != X_MAGIC || c[1] != X_VERSION) return -1;
    return c[2] == SL__X_ROWS || c[2] == SL__X_WM ? c[2] : -1;
}

int sl__x_decode_rows(const void *p, size_t len, const sl_schema *s, sl_batch **out)
{
    *out = NULL;
    if (sl__x_type(p, len) != SL__X_ROWS) return SL_ECORRUPT;
    sl__rbuf r = {.p = p, .len = len, .off = 3};
    uint32_t fp = sl__rbuf_u32(&r), n = sl__rbuf_u32(&r);
    if (r.err) return SL_ECORRUPT;
    if (fp != sl__x_fingerprint(s)) return SL_ESTATE;
    if (n > len) return SL_ECORRUPT; /* every row takes at least a kind byte */
    sl_batch *b = sl__batch_new(s, n ? n : 1);
    const uint8_t *kind = sl__rbuf_bytes(&r, n);
    if (!kind) goto bad;
    memcpy(b->kind, kind, n);
    for (int c = 0; c < s->n; c++) {
        struct sl__col *col = &b->cols[c];
        const uint8_t *valid = sl__rbuf_bytes(&r, n);
        if (!valid) goto bad;
        for (uint32_t i = 0; i < n; i++) {
            if (valid[i] > 1) goto bad;
            col->valid[i] = valid[i];
            if (!valid[i]) continue;
            switch (s->cols[c].type) {
            case SL_STRING: {
                uint64_t l;
                if (!get_varint(&r, &l) || l > len || l > UINT32_MAX) goto bad;
                const void *src = sl__rbuf_bytes(&r, (size_t)l);
                if (!src) goto bad;
                char *dst = sl__arena_alloc(&b->arena, l ? (size_t)l : 1);
                memcpy(dst, src, (size_t)l);
                ((sl_str *)col->data)[i] = (sl_str){.ptr = dst, .len = (uint32_t)l};
                break;
            }
            case SL_BOOL: {
                const uint8_t *v = sl__rbuf_bytes(&r, 1);
                if (!v || *v > 1) goto bad;
                ((uint8_t *)col->data)[i] = *v;
                break;
            }
            case SL_FLOAT64: {
                uint64_t bits = sl__rbuf_u64(&r);
                memcpy((double *)col->data + i, &bits, 8);
                break;
            }
            default: {
                uint64_t z;
                if (!get_varint(&r, &z)) goto bad;
                ((int64_t *)col->data)[i] = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
                break;
            }
            }
        }
    }
    if (r.err || r.off != r.len) goto bad;
    b->n = n;
    *out = b;
    return 0;
bad:
    sl__batch_free(b);
    return SL_ECORRUPT;
}

int sl__x_decode_wm(const void *p, size_t len, void (*fn)(void *, uint32_t, int64_t),
                    void *arg)
{
    if (sl__x_type(p, len) != SL__X_WM) return SL_ECORRUPT;
    sl__rbuf r = {.p = p, .len = len, .off = 3};
    uint32_t n = sl__rbuf_u32(&r);
    if (r.err || (size_t)n * 12 != len - 7) return SL_ECORRUPT;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t part = sl__rbuf_u32(&r);
        int64_t wm = sl__rbuf_i64(&r);
        fn(arg, part, wm);
    }
    return 0;
}
