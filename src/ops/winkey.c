/* winkey.c — the group keys of the window operator (window.c): a row's key
 * columns encoded into bytes whose memcmp order is the key order, decoded
 * back into output columns, hashed for the window's group maps, and sorted
 * for firing. It holds no state: the descriptor sl__wkey names the key
 * columns of the operator's input. */
#include <stdlib.h>
#include <string.h>

#include "ops/agg.h"

/* ---- encoding ---------------------------------------------------------- */
/* Key encoding, chosen so memcmp order is key order: per column a presence
 * byte (0 = NULL, nothing follows), then integers big-endian with the sign
 * bit flipped, doubles as their order-preserving bit pattern, bools as one
 * byte, strings with 0x00 escaped as 0x00 0xff and ended by 0x00 0x00. */
static inline void put_be64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
    memcpy(p, &v, 8);
#else
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
#endif
}
static inline uint64_t get_be64(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
#else
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
#endif
}

/* One value's encoding at p (after its presence byte); each returns the
 * end. A string's last bytes may be stored as a whole word: up to 8 bytes
 * past the end are written. */
static inline uint8_t *enc_str(uint8_t *p, const uint8_t *src, uint32_t len)
{
    uint32_t i = 0;
    for (; i + 8 <= len; i += 8) { /* words without a NUL: copied whole */
        uint64_t w;
        memcpy(&w, src + i, 8);
        if ((w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL) break;
        memcpy(p, &w, 8);
        p += 8;
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint32_t t = len - i; /* the last 1..7 bytes in one load and store,
                           * unless they hold a NUL (the caller's
                           * buffer has 8 bytes of slack) */
    if (t > 0 && t < 8) {
        uint64_t w;
        if (len >= 8) {
            memcpy(&w, src + len - 8, 8);
            w >>= 8 * (8 - t);
        } else if (t >= 4) {
            uint32_t lo, hi;
            memcpy(&lo, src, 4);
            memcpy(&hi, src + t - 4, 4);
            w = lo | (uint64_t)hi << (8 * (t - 4));
        } else {
            w = src[0] | (uint64_t)src[t / 2] << (8 * (t / 2)) |
                (uint64_t)src[t - 1] << (8 * (t - 1));
        }
        uint64_t x = w | ~((1ULL << (8 * t)) - 1);
        if (!((x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL)) {
            memcpy(p, &w, 8);
            p += t;
            i = len;
        }
    }
#endif
    for (; i < len; i++) {
        *p++ = src[i];
        if (src[i] == 0) *p++ = 0xff;
    }
    *p++ = 0;
    *p++ = 0;
    return p;
}

static inline uint8_t *enc_f64(uint8_t *p, double d)
{
    uint64_t u;
    if (d == 0) d = 0; /* -0.0 groups with 0.0 */
    memcpy(&u, &d, sizeof u);
    if (d != d) u = 0x7ff8000000000000ULL;
    u = (u >> 63) ? ~u : u | ((uint64_t)1 << 63);
    put_be64(p, u);
    return p + 8;
}

static inline uint8_t *enc_i64(uint8_t *p, int64_t v)
{
    put_be64(p, (uint64_t)v ^ ((uint64_t)1 << 63));
    return p + 8;
}

size_t sl__wkey_encode(const sl__wkey *op, const sl_batch *b, uint32_t r, uint8_t *p)
{
    uint8_t *start = p;
    for (int k = 0; k < op->nkey; k++) {
        const struct sl__col *c = &b->cols[op->cols[k]];
        if (c->valid && !c->valid[r]) {
            *p++ = 0;
            continue;
        }
        *p++ = 1;
        switch (op->in->cols[op->cols[k]].type) {
        case SL_STRING: {
            const sl_str *v = &((const sl_str *)c->data)[r];
            p = enc_str(p, (const uint8_t *)v->ptr, v->len);
            break;
        }
        case SL_BOOL: *p++ = ((const uint8_t *)c->data)[r] != 0; break;
        case SL_FLOAT64: p = enc_f64(p, ((const double *)c->data)[r]); break;
        default: p = enc_i64(p, ((const int64_t *)c->data)[r]); break;
        }
    }
    return (size_t)(p - start);
}

/* Column by column: the column's type, data and validity are looked up
 * once per batch rather than once per value, and each type has its own
 * loop. */
void sl__wkey_encode_rows(const sl__wkey *op, const sl_batch *b, const uint32_t *rows,
                          uint32_t n, uint8_t *out, const uint32_t *off, uint32_t *len)
{
    for (uint32_t j = 0; j < n; j++) len[j] = 0;
    for (int k = 0; k < op->nkey; k++) {
        const struct sl__col *c = &b->cols[op->cols[k]];
        const uint8_t *ok = c->valid;
#define ROWS_LOOP(ENC)                                                         \
    for (uint32_t j = 0; j < n; j++) {                                         \
        uint32_t r = rows[j];                                                  \
        uint8_t *p = out + off[j] + len[j];                                    \
        if (ok && !ok[r]) {                                                    \
            *p = 0;                                                            \
            len[j]++;                                                          \
            continue;                                                          \
        }                                                                      \
        *p++ = 1;                                                              \
        ENC;                                                                   \
        len[j] = (uint32_t)(p - (out + off[j]));                               \
    }
        switch (op->in->cols[op->cols[k]].type) {
        case SL_STRING: {
            const sl_str *v = c->data;
            ROWS_LOOP(p = enc_str(p, (const uint8_t *)v[r].ptr, v[r].len))
            break;
        }
        case SL_BOOL: {
            const uint8_t *v = c->data;
            ROWS_LOOP(*p++ = v[r] != 0)
            break;
        }
        case SL_FLOAT64: {
            const double *v = c->data;
            ROWS_LOOP(p = enc_f64(p, v[r]))
            break;
        }
        default: {
            const int64_t *v = c->data;
            ROWS_LOOP(p = enc_i64(p, v[r]))
            break;
        }
        }
#undef ROWS_LOOP
    }
}

/* The key is copied once into the batch's arena and its strings point
 * into that copy (unescaped in place when they hold NULs, which only
 * shortens them). */
void sl__wkey_decode(const sl__wkey *op, const uint8_t *key, uint32_t klen,
                     sl_batch *ob, uint32_t row)
{
    const uint8_t *p = key;
    uint8_t *copy = NULL;
    for (int k = 0; k < op->nkey; k++) {
        int oc = 2 + k;
        struct sl__col *c = &ob->cols[oc];
        if (*p++ == 0) {
            c->valid[row] = 0;
            continue;
        }
        c->valid[row] = 1;
        switch (op->in->cols[op->cols[k]].type) {
        case SL_STRING: {
            if (!copy) {
                copy = sl__arena_alloc(&ob->arena, klen);
                memcpy(copy, key, klen);
            }
            uint8_t *s = copy + (p - key);
            const uint8_t *z = memchr(p, 0, (size_t)(key + klen - p));
            size_t n = (size_t)(z - p), m = n;
            if (z[1] != 0) { /* an escaped NUL (0x00 0xff): unescape the copy */
                while (!(p[n] == 0 && p[n + 1] == 0)) {
                    s[m++] = p[n];
                    n += p[n] == 0 ? 2 : 1;
                }
            }
            ((sl_str *)c->data)[row] = (sl_str){(const char *)s, (uint32_t)m};
            p += n + 2;
            break;
        }
        case SL_BOOL:
            ((uint8_t *)c->data)[row] = *p++;
            break;
        case SL_FLOAT64: {
            uint64_t u = get_be64(p);
            u = (u >> 63) ? u & ~((uint64_t)1 << 63) : ~u;
            memcpy(&((double *)c->data)[row], &u, sizeof u);
            p += 8;
            break;
        }
        default:
            ((int64_t *)c->data)[row] =
                (int64_t)(get_be64(p) ^ ((uint64_t)1 << 63));
            p += 8;
            break;
        }
    }
}

/* ---- hashing --------------------------------------------------------------- */
/* With rowhash, the hash derives from the routing hash sl__key_hash (which
 * arrives with the rows, sl_batch.khash), recomputed here from the encoded
 * key; FLOAT64 keys never take this way, as -0.0 and 0.0 hash apart. */
uint64_t sl__wkey_hash(const sl__wkey *op, const uint8_t *key, uint32_t len)
{
    if (!op->rowhash) return sl__hash_bytes(key, len, SL__WKEY_SEED);
    const uint8_t *p = key;
    uint64_t h = SL__KEY_HASH_SEED;
    for (int k = 0; k < op->nkey; k++) {
        uint64_t v = 0;
        if (*p++ != 0) {
            switch (op->in->cols[op->cols[k]].type) {
            case SL_STRING: {
                const uint8_t *z = memchr(p, 0, (size_t)(key + len - p));
                size_t n = (size_t)(z - p), m = n;
                if (z[1] == 0) {
                    v = sl__hash_bytes(p, m, 0);
                } else { /* escaped NULs: hash the unescaped bytes */
                    uint8_t *tmp = sl__xmalloc(len);
                    memcpy(tmp, p, n);
                    while (!(p[n] == 0 && p[n + 1] == 0)) {
                        tmp[m++] = p[n];
                        n += p[n] == 0 ? 2 : 1;
                    }
                    v = sl__hash_bytes(tmp, m, 0);
                    free(tmp);
                }
                p += n + 2;
                break;
            }
            case SL_BOOL:
                v = *p++;
                break;
            default:
                v = get_be64(p) ^ ((uint64_t)1 << 63);
                p += 8;
                break;
            }
        }
        h = sl__key_hash_step(h, v, k);
    }
    return sl__wkey_mix(h);
}

/* ---- sorting --------------------------------------------------------------- */
void sl__wkey_ref_init(sl__wkey_ref *r, const uint8_t *key, uint32_t len,
                       const uint8_t *grp)
{
    uint8_t buf[8 * SL__WKEY_PRE] = {0};
    memcpy(buf, key, len < sizeof buf ? len : sizeof buf);
    for (int w = 0; w < SL__WKEY_PRE; w++) r->pre[w] = get_be64(buf + 8 * w);
    r->key = key;
    r->grp = grp;
    r->len = len;
}

static inline bool ref_less(const sl__wkey_ref *a, const sl__wkey_ref *b)
{
    for (int w = 0; w < SL__WKEY_PRE; w++)
        if (a->pre[w] != b->pre[w]) return a->pre[w] < b->pre[w];
    /* equal prefixes: zero padding may hide a length difference */
    int c = memcmp(a->key, b->key, a->len < b->len ? a->len : b->len);
    return c ? c < 0 : a->len < b->len;
}

/* Insertion sort of runs of 16, then bottom-up merges through tmp. Keys are
 * distinct, so any correct sort gives the same order. */
void sl__wkey_sort(const sl__wkey_ref *refs, uint32_t *ix, uint32_t *tmp, uint32_t n)
{
    enum { RUN = 16 };
    for (uint32_t lo = 0; lo < n; lo += RUN) {
        uint32_t hi = n - lo < RUN ? n : lo + RUN;
        for (uint32_t i = lo + 1; i < hi; i++) {
            uint32_t v = ix[i], j = i;
            for (; j > lo && ref_less(&refs[v], &refs[ix[j - 1]]); j--) ix[j] = ix[j - 1];
            ix[j] = v;
        }
    }
    uint32_t *a = ix, *b = tmp;
    for (uint32_t w = RUN; w < n; w *= 2) {
        for (uint32_t lo = 0; lo < n; lo += 2 * w) {
            uint32_t mid = n - lo < w ? n : lo + w, hi = n - lo < 2 * w ? n : lo + 2 * w;
            uint32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                b[k++] = ref_less(&refs[a[j]], &refs[a[i]]) ? a[j++] : a[i++];
            while (i < mid) b[k++] = a[i++];
            while (j < hi) b[k++] = a[j++];
        }
        uint32_t *t = a;
        a = b;
        b = t;
    }
    if (a != ix) memcpy(ix, a, n * sizeof *ix);
}

