/* buf.c — growable byte buffers with fixed-width little-endian encoding, the
 * building blocks of state snapshots. Reads past the end fail softly: the
 * reader's err flag is set and zeros are returned, so a truncated snapshot
 * is detected once, at the end of a restore. */
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

void sl__buf_put(sl__buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->p = sl__xrealloc(b->p, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}

void sl__buf_put_u64(sl__buf *b, uint64_t v)
{
    unsigned char x[8];
    for (int i = 0; i < 8; i++) x[i] = (unsigned char)(v >> (8 * i));
    sl__buf_put(b, x, 8);
}

void sl__buf_put_i64(sl__buf *b, int64_t v) { sl__buf_put_u64(b, (uint64_t)v); }

void sl__buf_put_u32(sl__buf *b, uint32_t v)
{
    unsigned char x[4];
    for (int i = 0; i < 4; i++) x[i] = (unsigned char)(v >> (8 * i));
    sl__buf_put(b, x, 4);
}

void sl__buf_put_str(sl__buf *b, const char *s, size_t n)
{
    sl__buf_put_u32(b, (uint32_t)n);
    sl__buf_put(b, s, n);
}

void sl__buf_free(sl__buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

const void *sl__rbuf_bytes(sl__rbuf *r, size_t n)
{
    if (r->err || r->len - r->off < n) {
        r->err = true;
        return NULL;
    }
    const void *p = r->p + r->off;
    r->off += n;
    return p;
}

uint64_t sl__rbuf_u64(sl__rbuf *r)
{
    const unsigned char *x = sl__rbuf_bytes(r, 8);
    uint64_t v = 0;
    for (int i = 0; x && i < 8; i++) v |= (uint64_t)x[i] << (8 * i);
    return v;
}

int64_t sl__rbuf_i64(sl__rbuf *r) { return (int64_t)sl__rbuf_u64(r); }

uint32_t sl__rbuf_u32(sl__rbuf *r)
{
    const unsigned char *x = sl__rbuf_bytes(r, 4);
    uint32_t v = 0;
    for (int i = 0; x && i < 4; i++) v |= (uint32_t)x[i] << (8 * i);
    return v;
}

const char *sl__rbuf_str(sl__rbuf *r, uint32_t *len)
{
    *len = sl__rbuf_u32(r);
    const char *p = sl__rbuf_bytes(r, *len);
    if (!p) *len = 0;
    return p;
}
