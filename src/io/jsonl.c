/* jsonl.c — decodes one JSON Lines record, a flat object such as
 * {"ts":1,"msisdn":"49...","x":null}, into one batch row.
 *
 * A hand-written single-pass parser: strings (all escapes, \uXXXX with
 * surrogate pairs encoded as UTF-8), numbers, true/false/null. Nested
 * objects and arrays are rejected, as is anything after the object. Values
 * are converted with sl__dec_value, like CSV fields, so a number may feed a
 * STRING column and a string may feed a numeric one when its text parses.
 * String bodies are scanned 16 bytes a step with SSE2 where the compiler
 * targets it (always on x86-64; SL_NO_SIMD turns it off), else 8 bytes a step in a 64-bit word.
 * Most lines take a faster route first (sl__json_decode_fast): one pass over the
 * whole line builds a bitmap of its quotes (64 bytes a step: SSE2, or AVX2
 * when the CPU has it, chosen once at init) and checks it holds no
 * backslash and no control byte; the parser then jumps from quote to
 * quote instead of scanning string bodies. It accepts only lines it
 * decodes to exactly the row the general parser would give; everything
 * else (escapes, tabs, errors of any kind) is handed to the general,
 * byte-at-a-time parser, which alone writes reasons, so bad input is
 * reported exactly as before.
 * It does not validate UTF-8 inside strings. */
#include <stdio.h>
#include <string.h>

#include "io/decode.h"

#if defined(__SSE2__) && !defined(SL_NO_SIMD)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(SL_NO_SIMD)
#define SL_JSON_AVX2 1
#include <immintrin.h>
#endif

void sl__json_init(sl__json_dec *d, const sl_schema *s)
{
    memset(d, 0, sizeof *d);
    sl__dec_types_init(&d->t, s);
    for (int c = 0; c < s->n; c++)
        d->name_len[c] = (uint32_t)strlen(s->cols[c].name);
#ifdef SL_JSON_AVX2
    __builtin_cpu_init();
    d->avx2 = __builtin_cpu_supports("avx2") != 0;
#endif
}

void sl__json_close(sl__json_dec *d)
{
    sl__dec_types_close(&d->t);
    memset(d, 0, sizeof *d);
}

static inline const char *skip_ws(const char *p, const char *end)
{
    /* one comparison for the common byte that is no white space */
    while (p < end && (unsigned char)*p <= ' ' &&
           (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* memcmp(a, b, n) == 0 for the short strings of keys, without a call:
 * overlapping loads that stay inside both strings. */
static inline bool same_bytes(const char *a, const char *b, size_t n)
{
    if (n >= 8) {
        uint64_t x, y;
        for (size_t i = 0; i + 8 <= n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            if (x != y) return false;
        }
        memcpy(&x, a + n - 8, 8);
        memcpy(&y, b + n - 8, 8);
        return x == y;
    }
    if (n >= 4) {
        uint32_t x0, y0, x1, y1;
        memcpy(&x0, a, 4);
        memcpy(&y0, b, 4);
        memcpy(&x1, a + n - 4, 4);
        memcpy(&y1, b + n - 4, 4);
        return x0 == y0 && x1 == y1;
    }
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return false;
    return true;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool hex4(const char *p, const char *end, unsigned *out)
{
    if (end - p < 4) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval((unsigned char)p[i]);
        if (h < 0) return false;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return true;
}

/* The 8 bytes at p, loaded little-endian, marked: the high bit of each
 * byte that is a quote, a backslash or a control character (< 0x20). Bits
 * above the first marked byte may be wrong (borrows), the lowest one never
 * is, and 0 means none of the 8 is special. */
static inline uint64_t special_mask(const char *p)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    const uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
    return (((q - ones) & ~q) | ((bs - ones) & ~bs) | ((w - ones * 0x20) & ~w)) & high;
}

/* Scans a string whose opening quote is at p[-1]. Returns the position
 * after the closing quote or NULL; *esc is set if it holds escapes. Plain
 * text is skipped 8 bytes at a time (the hot path of JSON ingestion: most
 * of a line is string bodies). */
static const char *scan_string(const char *p, const char *end, bool *esc)
{
    *esc = false;
    while (p < end) {
#if defined(__SSE2__) && !defined(SL_NO_SIMD)
        if (end - p >= 16) { /* 16 bytes a step (SSE2 is baseline x86-64) */
            const __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
            const __m128i sp = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')),
                             _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))),
                /* unsigned x <= 0x1F: a control byte */
                _mm_cmpeq_epi8(_mm_max_epu8(x, _mm_set1_epi8(0x1F)),
                               _mm_set1_epi8(0x1F)));
            const unsigned m = (unsigned)_mm_movemask_epi8(sp);
            if (m == 0) {
                p += 16;
                continue;
            }
            p += __builtin_ctz(m);
        } else
#endif
        if (end - p >= 8) { /* jump to the first special byte */
            uint64_t m = special_mask(p);
            if (m == 0) {
                p += 8;
                continue;
            }
            p += __builtin_ctzll(m) >> 3;
        }
        unsigned char ch = (unsigned char)*p;
        if (ch == '"') return p + 1;
        if (ch < 0x20) return NULL;
        if (ch == '\\') {
            *esc = true;
            if (++p >= end) return NULL;
            if (*p == 'u') {
                unsigned u;
                if (!hex4(p + 1, end, &u)) return NULL;
                p += 5;
                continue;
            }
            if (strchr("\"\\/bfnrt", *p) == NULL || *p == 0) return NULL;
        }
        p++;
    }
    return NULL;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes the escapes of a scanned string body s[0..n) into out (at least
 * n bytes: no escape grows). Returns the length, or -1 for a lone
 * surrogate. */
static long unescape(const char *s, size_t n, char *out)
{
    const char *p = s, *end = s + n;
    size_t o = 0;
    while (p < end) {
        if (*p != '\\') {
            out[o++] = *p++;
            continue;
        }
        p++;
        char e = *p++;
        switch (e) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            unsigned cp = 0xFFFD, lo; /* U+FFFD only if hex4 could fail */
            hex4(p, end, &cp); /* validated by scan_string */
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
                    !hex4(p + 2, end, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return -1;
            }
            o += put_utf8(out + o, cp);
            break;
        }
        default: out[o++] = e; break; /* " \ / */
        }
    }
    return (long)o;
}

/* Validates a JSON number at p; returns its end or NULL. */
static const char *scan_number(const char *p, const char *end)
{
    if (p < end && *p == '-') p++;
    if (p >= end) return NULL;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return NULL;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    return p;
}

/* The column named k[0..n), trying `hint` (the one after the previous key's
 * column: writers usually keep one key order) before the others. */
static int find_col(const sl__json_dec *d, const char *k, size_t n, int hint)
{
    const sl_schema *s = d->t.schema;
    if (hint < s->n && d->name_len[hint] == n &&
        same_bytes(s->cols[hint].name, k, n))
        return hint;
    for (int c = 0; c < s->n; c++)
        if (d->name_len[c] == n && same_bytes(s->cols[c].name, k, n))
            return c;
    return -1;
}

static int fail(char *reason, size_t rsz, const char *what, const char *col)
{
    if (reason != NULL && rsz > 0) {
        if (col != NULL)
            snprintf(reason, rsz, "%s:%s", what, col);
        else
            snprintf(reason, rsz, "%s", what);
    }
    return SL_EPARSE;
}

#define MALFORMED fail(reason, reason_size, "malformed_json", NULL)

/* ---- the structural route ----------------------------------------------- */

enum { QWORDS = SL__JSON_FAST_MAX / 64 };

/* q[w] bit i: byte 64w + i of the line is a quote. Returns false if the
 * line holds a backslash or a control byte (the general parser's cases).
 * The last partial block is the line's last 64 bytes, its mask shifted
 * down (or, in a line shorter than 64 bytes, a copy padded with spaces),
 * so no byte past the line is touched. */
#if defined(__SSE2__) && !defined(SL_NO_SIMD)
static inline uint64_t block_sse2(const char *p, uint64_t *bad)
{
    uint64_t qm = 0, sp = 0;
    for (int k = 0; k < 4; k++) {
        const __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * k));
        const __m128i s = _mm_or_si128(
            _mm_cmpeq_epi8(x, _mm_set1_epi8('\\')),
            _mm_cmpeq_epi8(_mm_max_epu8(x, _mm_set1_epi8(0x1F)), _mm_set1_epi8(0x1F)));
        qm |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')))
              << (16 * k);
        sp |= (uint64_t)(unsigned)_mm_movemask_epi8(s) << (16 * k);
    }
    *bad |= sp;
    return qm;
}
#else
static inline uint64_t block_sse2(const char *p, uint64_t *bad)
{
    uint64_t qm = 0;
    for (int k = 0; k < 64; k++) {
        const unsigned char ch = (unsigned char)p[k];
        qm |= (uint64_t)(ch == '"') << k;
        *bad |= ch == '\\' || ch < 0x20;
    }
    return qm;
}
#endif

static bool quote_bits(const char *s, size_t len, uint64_t *q)
{
    uint64_t bad = 0;
    size_t i = 0, w = 0;
    for (; i + 64 <= len; i += 64) q[w++] = block_sse2(s + i, &bad);
    if (i < len && len >= 64) { /* the last 64 bytes, overlapping: no copy */
        q[w] = block_sse2(s + len - 64, &bad) >> (64 - (len - i));
    } else if (i < len) {
        char t[64];
        memset(t, ' ', sizeof t);
        memcpy(t, s + i, len - i);
        q[w] = block_sse2(t, &bad);
    }
    return bad == 0;
}

#ifdef SL_JSON_AVX2
__attribute__((target("avx2"))) static bool quote_bits_avx2(const char *s, size_t len,
                                                            uint64_t *q)
{
    const __m256i quote = _mm256_set1_epi8('"'), bs = _mm256_set1_epi8('\\'),
                  ctl = _mm256_set1_epi8(0x1F);
    __m256i bad = _mm256_setzero_si256();
    char t[64];
    size_t i = 0, w = 0;
    while (i < len) {
        const char *p = s + i;
        unsigned shift = 0;
        if (len - i < 64 && len >= 64) { /* the last 64 bytes, overlapping */
            shift = (unsigned)(64 - (len - i));
            p = s + len - 64;
        } else if (len - i < 64) {
            memset(t, ' ', sizeof t);
            memcpy(t, s + i, len - i);
            p = t;
        }
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)(const void *)p);
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)(const void *)(p + 32));
        bad = _mm256_or_si256(bad, _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(x0, bs), _mm256_cmpeq_epi8(x1, bs)),
            _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_max_epu8(x0, ctl), ctl),
                            _mm256_cmpeq_epi8(_mm256_max_epu8(x1, ctl), ctl))));
        q[w++] = ((uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(x0, quote)) |
                  (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(x1, quote)) << 32) >>
                 shift;
        i += 64;
    }
    return _mm256_testz_si256(bad, bad) != 0;
}
#endif

/* The quotes of a line in order: the bitmap read word by word, each
 * quote taken (and cleared) once. */
typedef struct {
    const uint64_t *q;
    size_t nw, w;
    uint64_t cur;
} quote_iter;

/* Offset of the next quote, or SIZE_MAX when none is left. */
static inline size_t next_quote(quote_iter *it)
{
    while (it->cur == 0) {
        if (++it->w >= it->nw) return SIZE_MAX;
        /* words below nw were all written by quote_bits (the analyzer
         * cannot follow the line length through both) */
        it->cur = it->q[it->w]; // NOLINT(clang-analyzer-core.uninitialized.Assign)
    }
    const size_t at = it->w * 64 + (size_t)__builtin_ctzll(it->cur);
    it->cur &= it->cur - 1;
    return at;
}

/* Skips spaces; the caller guarantees a byte that is not one follows. */
static inline const char *sp(const char *p)
{
    while (*p == ' ') p++;
    return p;
}

/* 1..18 decimal digits after an optional '-': the value parse_int (the
 * shared conversion's first choice for INT64 and TIMESTAMP, after a
 * YYYY-MM-DD date, which has dashes) gives, without the call. False for
 * anything else, which the shared conversion then handles. */
static inline bool digits_i64(const char *v, size_t n, int64_t *out)
{
    const bool neg = n > 0 && v[0] == '-';
    v += neg;
    n -= neg;
    if (n == 0 || n > 18) return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned dg = (unsigned)(unsigned char)v[i] - '0';
        if (dg > 9) return false;
        x = x * 10 + dg;
    }
    *out = neg ? -(int64_t)x : (int64_t)x;
    return true;
}

/* Decodes line into row b->n as the general parser would, or returns
 * false (row not committed; values it stored are overwritten by the
 * general parser, arena bytes it took stay with the batch). */
bool sl__json_decode_fast(const sl__json_dec *d, const char *line, size_t len,
                          sl_batch *b)
{
    uint64_t q[QWORDS];
    if (len > SL__JSON_FAST_MAX) return false;
#ifdef SL_JSON_AVX2
    if (d->avx2 ? !quote_bits_avx2(line, len, q) : !quote_bits(line, len, q))
        return false;
#else
    if (!quote_bits(line, len, q)) return false;
#endif
    /* The line holds no control byte, so its white space is spaces; the
     * last byte that is not one must close the object. It is then a
     * sentinel that stops every space skip (sp) inside the line, and no
     * quote lies at or after it. */
    size_t e = len;
    while (e > 0 && line[e - 1] == ' ') e--;
    if (e < 2 || line[e - 1] != '}') return false;
    quote_iter it = {q, (len + 63) / 64, 0, q[0]};
    const sl_schema *s = d->t.schema;
    const char *p = line, *end = line + e;
    const uint32_t row = b->n;
    uint64_t seen = 0;
    int hint = 0;
    p = sp(p);
    if (*p != '{') return false;
    p = sp(p + 1);
    if (*p == '}') {
        p++;
        goto done;
    }
    for (;;) {
        /* key: the next two quotes, the first one here */
        const size_t k0 = next_quote(&it);
        if (k0 != (size_t)(p - line)) return false; /* also SIZE_MAX: no quote left */
        const size_t k1 = next_quote(&it);
        if (k1 == SIZE_MAX) return false;
        const size_t kn = k1 - k0 - 1;
        int col;
        if (hint < s->n && d->name_len[hint] == kn &&
            same_bytes(s->cols[hint].name, p + 1, kn))
            col = hint;
        else
            col = find_col(d, p + 1, kn, hint);
        p = sp(line + k1 + 1);
        if (*p != ':') return false;
        p = sp(p + 1);
        /* value */
        const char *v0 = p, *v1;
        bool quoted = false, isnull = false;
        switch (*p) {
        case '"': {
            const size_t a0 = next_quote(&it);
            if (a0 != (size_t)(p - line)) return false; /* also SIZE_MAX */
            const size_t a1 = next_quote(&it);
            if (a1 == SIZE_MAX) return false;
            v0 = p + 1;
            v1 = line + a1;
            p = v1 + 1;
            quoted = true;
            break;
        }
        case 't':
            if (end - p < 4 || memcmp(p, "true", 4) != 0) return false;
            p += 4;
            v1 = p;
            break;
        case 'f':
            if (end - p < 5 || memcmp(p, "false", 5) != 0) return false;
            p += 5;
            v1 = p;
            break;
        case 'n':
            if (end - p < 4 || memcmp(p, "null", 4) != 0) return false;
            p += 4;
            v1 = p;
            isnull = true;
            break;
        default: /* numbers; '{' and '[' fail here too */
            p = scan_number(p, end);
            if (p == NULL) return false;
            v1 = p;
            break;
        }
        if (col >= 0) {
            hint = col + 1;
            seen |= 1ULL << col;
            if (isnull || (d->t.skip >> col & 1)) {
                b->cols[col].valid[row] = 0;
            } else if (quoted && v1 > v0 && s->cols[col].type == SL_STRING &&
                       d->t.dom_len[col] == NULL) { /* the common text value */
                const size_t n = (size_t)(v1 - v0);
                char *m = sl__arena_alloc(&b->arena, n);
                memcpy(m, v0, n);
                ((sl_str *)b->cols[col].data)[row] = (sl_str){m, (uint32_t)n};
                b->cols[col].valid[row] = 1;
            } else if ((s->cols[col].type == SL_TIMESTAMP || s->cols[col].type == SL_INT64) &&
                       digits_i64(v0, (size_t)(v1 - v0),
                                  &((int64_t *)b->cols[col].data)[row])) {
                b->cols[col].valid[row] = 1; /* epoch ms or a count, as text or number */
            } else if (sl__dec_value(&d->t, col, v0, (size_t)(v1 - v0), quoted,
                                     false, b, row) != SL__CONV_OK) {
                return false;
            }
        }
        p = sp(p);
        if (*p == ',') {
            p = sp(p + 1);
            continue;
        }
        if (*p != '}') return false;
        p++;
        break;
    }
done: /* the '}' consumed must be the sentinel: only spaces follow */
    if (p != end) return false;
    for (int c = 0; c < s->n; c++)
        if (!(seen >> c & 1)) b->cols[c].valid[row] = 0;
    b->kind[row] = SL_KIND_DATA;
    b->n = row + 1;
    return true;
}

/* ---- the general parser -------------------------------------------------- */

static int json_general(const sl__json_dec *d, const char *line, size_t len,
                        sl_batch *b, char *reason, size_t reason_size);

int sl__json_decode(const sl__json_dec *d, const char *line, size_t len,
                    sl_batch *b, char *reason, size_t reason_size)
{
    if (!d->general_only && sl__json_decode_fast(d, line, len, b)) return 0;
    return json_general(d, line, len, b, reason, reason_size);
}

static int json_general(const sl__json_dec *d, const char *line, size_t len,
                        sl_batch *b, char *reason, size_t reason_size)
{
    const sl_schema *s = d->t.schema;
    const char *p = line, *end = line + len;
    const uint32_t row = b->n;
    uint64_t seen = 0;
    int hint = 0;
    p = skip_ws(p, end);
    if (p >= end || *p != '{') return MALFORMED;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
        goto done;
    }
    for (;;) {
        /* key */
        if (p >= end || *p != '"') return MALFORMED;
        bool esc;
        const char *k0 = p + 1;
        p = scan_string(k0, end, &esc);
        if (p == NULL) return MALFORMED;
        size_t kn = (size_t)(p - 1 - k0);
        int col;
        if (!esc) {
            col = find_col(d, k0, kn, hint);
        } else {
            char kb[256];
            long n = kn <= sizeof kb ? unescape(k0, kn, kb) : -2;
            if (n == -1) return MALFORMED;
            col = n >= 0 ? find_col(d, kb, (size_t)n, hint) : -1;
        }
        p = skip_ws(p, end);
        if (p >= end || *p != ':') return MALFORMED;
        p = skip_ws(p + 1, end);
        if (p >= end) return MALFORMED;
        /* value */
        const char *v0 = p, *v1;
        bool quoted = false, stable = false, isnull = false;
        switch (*p) {
        case '"':
            v0 = p + 1;
            p = scan_string(v0, end, &esc);
            if (p == NULL) return MALFORMED;
            v1 = p - 1;
            quoted = true;
            if (esc && col >= 0) { /* unread columns too: a lone surrogate is bad */
                size_t n = (size_t)(v1 - v0);
                char *u = sl__arena_alloc(&b->arena, n ? n : 1);
                long m = unescape(v0, n, u);
                if (m < 0) return MALFORMED;
                v0 = u;
                v1 = u + m;
                stable = true;
            }
            break;
        case 't':
            if (end - p < 4 || memcmp(p, "true", 4) != 0) return MALFORMED;
            p += 4;
            v1 = p;
            break;
        case 'f':
            if (end - p < 5 || memcmp(p, "false", 5) != 0) return MALFORMED;
            p += 5;
            v1 = p;
            break;
        case 'n':
            if (end - p < 4 || memcmp(p, "null", 4) != 0) return MALFORMED;
            p += 4;
            v1 = p;
            isnull = true;
            break;
        case '{':
        case '[':
            return fail(reason, reason_size, "nested_value",
                        col >= 0 ? s->cols[col].name : NULL);
        default:
            p = scan_number(p, end);
            if (p == NULL) return MALFORMED;
            v1 = p;
            break;
        }
        if (col >= 0) {
            hint = col + 1;
            seen |= 1ULL << col;
            if (isnull || (d->t.skip >> col & 1)) { /* skip: unread VARCHAR */
                b->cols[col].valid[row] = 0;
            } else {
                int rc = sl__dec_value(&d->t, col, v0, (size_t)(v1 - v0),
                                       quoted, stable, b, row);
                if (rc != SL__CONV_OK)
                    return fail(reason, reason_size,
                                rc == SL__CONV_BAD ? "parse_error"
                                                   : "unknown_value",
                                s->cols[col].name);
            }
        }
        p = skip_ws(p, end);
        if (p >= end) return MALFORMED;
        if (*p == '}') {
            p++;
            break;
        }
        if (*p != ',') return MALFORMED;
        p = skip_ws(p + 1, end);
    }
done:
    p = skip_ws(p, end);
    if (p != end) return MALFORMED;
    for (int c = 0; c < s->n; c++)
        if (!(seen >> c & 1)) b->cols[c].valid[row] = 0;
    b->kind[row] = SL_KIND_DATA;
    b->n = row + 1;
    return 0;
}
