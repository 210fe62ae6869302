/* binrec.c — decodes fixed-width binary records (format = 'binary' of the
 * file source) into batch rows: the schema's columns in order, little-endian,
 * no padding, no framing, no header.
 *
 *   INT64, TIMESTAMP  8 bytes, signed two's complement (epoch ms for
 *                     TIMESTAMP); INT64_MIN is NULL
 *   FLOAT64           8 bytes IEEE-754; any NaN is NULL
 *   BOOL              1 byte: 0 false, 1 true, 0xFF NULL
 *   STRING            `width` bytes (default 16, per column in the
 *                     source's binary.widths), UTF-8 text padded with NUL
 *                     bytes on the right; all NUL is NULL
 *
 * A record that breaks these rules (a BOOL byte other than 0/1/0xFF, a
 * non-NUL byte after a string's padding began, a string outside its
 * column's domain) is rejected with a reason; the file source dead-letters
 * it and goes on with the next record, since records never straddle. A
 * file's trailing bytes shorter than a record are a short record.
 *
 * It does not read files or split them into records (file_source.c does).
 * It does not validate UTF-8 inside strings, like the JSON decoder. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/decode.h"

#if defined(__SSE2__) && !defined(SL_NO_SIMD)
#include <emmintrin.h>
#endif

enum { BIN_DEFAULT_WIDTH = 16, BIN_MAX_WIDTH = 4096 };

static void build_plan(sl__bin_dec *d);

static uint32_t fixed_width(sl_type t)
{
    switch (t) {
    case SL_INT64:
    case SL_TIMESTAMP:
    case SL_FLOAT64:
        return 8;
    case SL_BOOL:
        return 1;
    default:
        return 0;
    }
}

static int find_col(const sl_schema *s, const char *name, size_t n)
{
    for (int c = 0; c < s->n; c++)
        if (strlen(s->cols[c].name) == n && memcmp(s->cols[c].name, name, n) == 0)
            return c;
    return -1;
}

/* Applies "col:bytes,col:bytes" to d->width. */
static int parse_widths(sl__bin_dec *d, const char *w, char *err, size_t esz)
{
    const sl_schema *s = d->t.schema;
    const char *p = w;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', n);
        if (colon == NULL)
            return sl__err(err, esz, SL_EINVAL,
                           "file source: binary.widths: '%.*s' is not "
                           "column:bytes", (int)n, p);
        int col = find_col(s, p, (size_t)(colon - p));
        if (col < 0 || s->cols[col].type != SL_STRING)
            return sl__err(err, esz, SL_EINVAL,
                           "file source: binary.widths: '%.*s' is not a "
                           "STRING column of the source", (int)(colon - p), p);
        char *stop = NULL;
        long v = strtol(colon + 1, &stop, 10);
        if (stop != p + n || stop == colon + 1 || v < 1 || v > BIN_MAX_WIDTH)
            return sl__err(err, esz, SL_EINVAL,
                           "file source: binary.widths: width of '%s' must be "
                           "1..%d bytes", s->cols[col].name, BIN_MAX_WIDTH);
        d->width[col] = (uint32_t)v;
        p += n;
        if (*p == ',') p++;
    }
    return 0;
}

int sl__bin_init(sl__bin_dec *d, const sl_schema *s, const char *widths,
                 char *err, size_t esz)
{
    memset(d, 0, sizeof *d);
    sl__dec_types_init(&d->t, s);
    for (int c = 0; c < s->n; c++) {
        uint32_t w = fixed_width(s->cols[c].type);
        d->width[c] = w != 0 ? w : BIN_DEFAULT_WIDTH;
    }
    if (widths != NULL) {
        int rc = parse_widths(d, widths, err, esz);
        if (rc != 0) {
            sl__bin_close(d);
            return rc;
        }
    }
    uint32_t off = 0;
    for (int c = 0; c < s->n; c++) {
        d->off[c] = off;
        off += d->width[c];
    }
    d->size = off;
    d->copy_lo = 0;
    d->copy_hi = off;
    if (off == 0) {
        sl__bin_close(d);
        return sl__err(err, esz, SL_EINVAL,
                       "file source: format 'binary' needs at least one column");
    }
    build_plan(d);
    return 0;
}

/* Conversions of the decode plan. */
enum { BIN_I64, BIN_F64, BIN_BOOL, BIN_STR, BIN_STR_DOMAIN, BIN_STR_UNREAD, BIN_BAD };

/* One step per column, in record order, each with its conversion; a
 * VARCHAR that projection pushdown leaves unread is only checked. */
static void build_plan(sl__bin_dec *d)
{
    const sl_schema *s = d->t.schema;
    d->nstep = s->n;
    for (int c = 0; c < s->n; c++) {
        struct sl__bin_step *st = &d->step[c];
        st->col = (uint8_t)c;
        st->off = d->off[c];
        st->width = d->width[c];
        switch (s->cols[c].type) {
        case SL_INT64:
        case SL_TIMESTAMP: st->op = BIN_I64; break;
        case SL_FLOAT64: st->op = BIN_F64; break;
        case SL_BOOL: st->op = BIN_BOOL; break;
        case SL_STRING:
            st->op = d->t.dom_len[c] != NULL ? BIN_STR_DOMAIN
                     : (d->t.skip >> c & 1)  ? BIN_STR_UNREAD
                                             : BIN_STR;
            break;
        default: st->op = BIN_BAD; break;
        }
    }
}

void sl__bin_project(sl__bin_dec *d, uint64_t used)
{
    sl__dec_types_project(&d->t, used);
    const sl_schema *s = d->t.schema;
    uint32_t lo = d->size, hi = 0;
    for (int c = 0; c < s->n; c++) {
        if (s->cols[c].type != SL_STRING || d->t.dom_len[c] != NULL ||
            (d->t.skip >> c & 1))
            continue;
        if (d->off[c] < lo) lo = d->off[c];
        if (d->off[c] + d->width[c] > hi) hi = d->off[c] + d->width[c];
    }
    d->copy_lo = lo < hi ? lo : 0;
    d->copy_hi = lo < hi ? hi : 0;
    build_plan(d);
}

void sl__bin_close(sl__bin_dec *d)
{
    sl__dec_types_close(&d->t);
    memset(d, 0, sizeof *d);
}

static inline uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&v, p, 8);
#else
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
#endif
    return v;
}

/* Length of the text in v[0..w) (up to its first NUL byte); false if a
 * non-NUL byte follows the padding. Word at a time: most strings are
 * identifiers of tens of bytes. */
static inline bool str_len(const unsigned char *v, uint32_t w, size_t *len)
{
#if defined(__SSE2__) && !defined(SL_NO_SIMD)
    if (w >= 16 && w <= 64) { /* one bit per byte: 1 = NUL, 16 bytes a step */
        const __m128i zero = _mm_setzero_si128();
        uint64_t z = 0;
        uint32_t i = 0;
        for (; i + 16 <= w; i += 16)
            z |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(
                     _mm_loadu_si128((const __m128i *)(const void *)(v + i)), zero)) << i;
        if (i < w) /* the last 16 bytes, overlapping: never past the field */
            z |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(
                     _mm_loadu_si128((const __m128i *)(const void *)(v + w - 16)), zero))
                 << (w - 16);
        if (z == 0) {
            *len = w;
            return true;
        }
        const uint64_t all = w == 64 ? ~0ULL : (1ULL << w) - 1;
        const unsigned first = (unsigned)__builtin_ctzll(z);
        *len = first;
        return ((~z & all) >> first) == 0; /* only NULs after the first */
    }
#endif
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    size_t i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; i + 8 <= w; i += 8) {
        uint64_t x;
        memcpy(&x, v + i, 8);
        uint64_t z = (x - ones) & ~x & high; /* lowest set bit: first NUL */
        if (z != 0) {
            i += (size_t)__builtin_ctzll(z) >> 3;
            break;
        }
    }
#endif
    while (i < w && v[i] != 0) i++;
    *len = i;
    uint64_t rest = 0;
    size_t j = i;
    for (; j + 8 <= w; j += 8) {
        uint64_t x;
        memcpy(&x, v + j, 8);
        rest |= x;
    }
    for (; j < w; j++) rest |= v[j];
    return rest == 0;
}

/* str_len's verdict alone, for a VARCHAR that is checked but not read:
 * the bytes that are not NUL must be a prefix of the field. */
static inline bool pad_ok(const unsigned char *v, uint32_t w)
{
#if defined(__SSE2__) && !defined(SL_NO_SIMD)
    if (w >= 16 && w <= 64) {
        const __m128i zero = _mm_setzero_si128();
        uint64_t z = 0;
        uint32_t i = 0;
        for (; i + 16 <= w; i += 16)
            z |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(
                     _mm_loadu_si128((const __m128i *)(const void *)(v + i)), zero)) << i;
        if (i < w)
            z |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(
                     _mm_loadu_si128((const __m128i *)(const void *)(v + w - 16)), zero))
                 << (w - 16);
        const uint64_t text = ~z & (w == 64 ? ~0ULL : (1ULL << w) - 1);
        return (text & (text + 1)) == 0; /* ones from bit 0 up, then none */
    }
#endif
    size_t n;
    return str_len(v, w, &n);
}

static int fail(char *reason, size_t rsz, const char *what, const char *col)
{
    snprintf(reason, rsz, "%s:%s", what, col);
    return SL_EPARSE;
}

int sl__bin_decode(const sl__bin_dec *d, const char *rec, sl_batch *b,
                   char *reason, size_t rsz)
{
    const sl_schema *s = d->t.schema;
    const uint32_t row = b->n;
    const unsigned char *r = (const unsigned char *)rec;
    /* One copy of the record (of the span holding the STRING columns read,
     * sl__bin_project) in the batch's arena: STRING values point into it
     * (one allocation per record instead of one per string). */
    const char *copy = NULL;
    for (int k = 0; k < d->nstep; k++) {
        const struct sl__bin_step *st = &d->step[k];
        const unsigned char *v = r + st->off;
        struct sl__col *col = &b->cols[st->col];
        switch (st->op) {
        case BIN_I64: {
            int64_t x = (int64_t)load_le64(v);
            ((int64_t *)col->data)[row] = x;
            col->valid[row] = x != INT64_MIN;
            break;
        }
        case BIN_F64: {
            uint64_t u = load_le64(v);
            double x;
            memcpy(&x, &u, sizeof x);
            ((double *)col->data)[row] = x;
            col->valid[row] = !isnan(x);
            break;
        }
        case BIN_BOOL:
            if (v[0] > 1 && v[0] != 0xFF)
                return fail(reason, rsz, "parse_error", s->cols[st->col].name);
            ((uint8_t *)col->data)[row] = v[0] == 1;
            col->valid[row] = v[0] != 0xFF;
            break;
        case BIN_STR_UNREAD: /* checked, never read: NULL */
            if (!pad_ok(v, st->width))
                return fail(reason, rsz, "parse_error", s->cols[st->col].name);
            col->valid[row] = 0;
            break;
        case BIN_STR: {
            size_t n;
            if (!str_len(v, st->width, &n))
                return fail(reason, rsz, "parse_error", s->cols[st->col].name);
            if (n == 0) {
                col->valid[row] = 0;
                break;
            }
            if (copy == NULL) { /* the span of the columns read */
                const uint32_t span = d->copy_hi - d->copy_lo;
                char *m = sl__arena_alloc(&b->arena, span);
                memcpy(m, rec + d->copy_lo, span);
                copy = m;
            }
            ((sl_str *)col->data)[row] =
                (sl_str){copy + (st->off - d->copy_lo), (uint32_t)n};
            col->valid[row] = 1;
            break;
        }
        case BIN_STR_DOMAIN: {
            size_t n;
            if (!str_len(v, st->width, &n))
                return fail(reason, rsz, "parse_error", s->cols[st->col].name);
            if (n == 0) {
                col->valid[row] = 0;
                break;
            }
            int rc = sl__dec_value(&d->t, st->col, (const char *)v, n, true, false,
                                   b, row);
            if (rc != SL__CONV_OK)
                return fail(reason, rsz,
                            rc == SL__CONV_BAD ? "parse_error" : "unknown_value",
                            s->cols[st->col].name);
            break;
        }
        default:
            return fail(reason, rsz, "parse_error", s->cols[st->col].name);
        }
    }
    b->kind[row] = SL_KIND_DATA;
    b->n = row + 1;
    return 0;
}

/* Column at a time: each step's conversion runs over all records in one
 * loop. A record a step rejects ends the block there (m shrinks); steps
 * already run wrote rows past it, which stay above b->n and are written
 * again later. */
uint32_t sl__bin_decode_block(const sl__bin_dec *d, const char *buf, uint32_t nrec,
                              sl_batch *b)
{
    const uint32_t row0 = b->n, R = d->size;
    uint32_t m = nrec;
    if (m > b->cap - row0) m = b->cap - row0;
    const uint32_t span = d->copy_hi - d->copy_lo;
    char *copy = NULL;
    for (int k = 0; k < d->nstep && copy == NULL; k++)
        if (d->step[k].op == BIN_STR && span > 0 && m > 0) {
            copy = sl__arena_alloc(&b->arena, (size_t)span * m);
            for (uint32_t i = 0; i < m; i++)
                memcpy(copy + (size_t)i * span, buf + (size_t)i * R + d->copy_lo, span);
        }
    for (int k = 0; k < d->nstep && m > 0; k++) {
        const struct sl__bin_step *st = &d->step[k];
        const unsigned char *v = (const unsigned char *)buf + st->off;
        struct sl__col *col = &b->cols[st->col];
        uint8_t *valid = col->valid + row0;
        const uint32_t w = st->width;
        switch (st->op) {
        case BIN_I64: {
            int64_t *out = (int64_t *)col->data + row0;
            for (uint32_t i = 0; i < m; i++, v += R) {
                const int64_t x = (int64_t)load_le64(v);
                out[i] = x;
                valid[i] = x != INT64_MIN;
            }
            break;
        }
        case BIN_F64: {
            double *out = (double *)col->data + row0;
            for (uint32_t i = 0; i < m; i++, v += R) {
                const uint64_t u = load_le64(v);
                double x;
                memcpy(&x, &u, sizeof x);
                out[i] = x;
                valid[i] = !isnan(x);
            }
            break;
        }
        case BIN_BOOL: {
            uint8_t *out = (uint8_t *)col->data + row0;
            for (uint32_t i = 0; i < m; i++, v += R) {
                if (v[0] > 1 && v[0] != 0xFF) {
                    m = i;
                    break;
                }
                out[i] = v[0] == 1;
                valid[i] = v[0] != 0xFF;
            }
            break;
        }
        case BIN_STR_UNREAD:
            for (uint32_t i = 0; i < m; i++, v += R) {
                if (!pad_ok(v, w)) {
                    m = i;
                    break;
                }
                valid[i] = 0;
            }
            break;
        case BIN_STR: {
            sl_str *out = (sl_str *)col->data + row0;
            const char *at = copy + (st->off - d->copy_lo);
            for (uint32_t i = 0; i < m; i++, v += R, at += span) {
                size_t n;
                if (!str_len(v, w, &n)) {
                    m = i;
                    break;
                }
                out[i] = (sl_str){at, (uint32_t)n};
                valid[i] = n != 0;
            }
            break;
        }
        case BIN_STR_DOMAIN:
            for (uint32_t i = 0; i < m; i++, v += R) {
                size_t n;
                if (!str_len(v, w, &n)) {
                    m = i;
                    break;
                }
                if (n == 0) {
                    valid[i] = 0;
                } else if (sl__dec_value(&d->t, st->col, (const char *)v, n, true, false,
                                         b, row0 + i) != SL__CONV_OK) {
                    m = i;
                    break;
                }
            }
            break;
        default:
            m = 0;
            break;
        }
    }
    for (uint32_t i = 0; i < m; i++) b->kind[row0 + i] = SL_KIND_DATA;
    b->n = row0 + m;
    return m;
}

size_t sl__bin_payload(const sl__bin_dec *d, const char *rec, size_t n,
                       char *out)
{
    static const char hex[] = "0123456789abcdef";
    const sl_schema *s = d->t.schema;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool masked = false;
        for (int c = 0; c < s->n && !masked; c++)
            masked = s->cols[c].identifier && i >= d->off[c] &&
                     i < (size_t)d->off[c] + d->width[c];
        unsigned char ch = (unsigned char)rec[i];
        out[k++] = masked ? '*' : hex[ch >> 4];
        out[k++] = masked ? '*' : hex[ch & 15];
    }
    out[k] = '\0';
    return k;
}
