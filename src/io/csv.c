/* csv.c — decodes one CSV record (RFC 4180: quoted fields, "" escapes,
 * configurable delimiter) into one batch row, or a block of unquoted
 * records into rows a column at a time, maps header lines to schema
 * columns, and holds the typed text conversion shared with the JSON Lines
 * decoder (sl__dec_value).
 *
 * It does not split a file into lines or read files (file_source.c does);
 * a record whose quoted field spans lines is reported as SL__DEC_MORE so the
 * caller can append the next line. This is the hot path of file ingestion:
 * no allocation per field except string copies into the batch arena, and
 * delimiters found 16 bytes a step with SSE2 where the compiler targets it
 * (always on x86-64; SL_NO_SIMD turns it off), else 8 bytes a step in a
 * 64-bit word. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/decode.h"

#if defined(__SSE2__) && !defined(SL_NO_SIMD)
#include <emmintrin.h>
#endif

/* ---- typed conversion --------------------------------------------------- */

void sl__dec_types_init(sl__dec_types *t, const sl_schema *s)
{
    memset(t, 0, sizeof *t);
    t->schema = s;
    for (int c = 0; c < s->n; c++) {
        const struct sl__colinfo *ci = &s->cols[c];
        if (ci->type != SL_STRING || ci->domain == NULL) continue;
        t->dom_len[c] = sl__xcalloc((size_t)ci->ndomain + 1, sizeof(uint32_t));
        for (int k = 0; k < ci->ndomain; k++)
            t->dom_len[c][k] = (uint32_t)strlen(ci->domain[k]);
    }
}

void sl__dec_types_project(sl__dec_types *t, uint64_t used)
{
    t->skip = 0;
    for (int c = 0; c < t->schema->n; c++)
        if (t->schema->cols[c].type == SL_STRING && t->dom_len[c] == NULL &&
            !(used >> c & 1))
            t->skip |= 1ULL << c;
}

void sl__dec_types_close(sl__dec_types *t)
{
    for (int c = 0; c < SL_MAX_COLS; c++) free(t->dom_len[c]);
    memset(t, 0, sizeof *t);
}

/* Whole text as a base-10 int64 with optional sign; false on overflow. */
static inline bool parse_int(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (n == 0) return false;
    if (s[0] == '-' || s[0] == '+') {
        neg = s[0] == '-';
        if (++i == n) return false;
    }
    uint64_t v = 0;
    if (n - i <= 18) { /* cannot overflow */
        for (; i < n; i++) {
            unsigned d = (unsigned)(unsigned char)s[i] - '0';
            if (d > 9) return false;
            v = v * 10 + d;
        }
        *out = neg ? -(int64_t)v : (int64_t)v;
        return true;
    }
    uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9 || v > (lim - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static bool parse_double(const char *s, size_t n, double *out)
{
    char tmp[128];
    if (n == 0 || n >= sizeof tmp) return false;
    if (isspace((unsigned char)s[0])) return false;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    char *end;
    *out = strtod(tmp, &end);
    return end == tmp + n;
}

static bool parse_bool(const char *s, size_t n, uint8_t *out)
{
    if (n == 1 && (s[0] == '1' || s[0] == '0')) {
        *out = s[0] == '1';
        return true;
    }
    if (n == 4 && strncasecmp(s, "true", 4) == 0) {
        *out = 1;
        return true;
    }
    if (n == 5 && strncasecmp(s, "false", 5) == 0) {
        *out = 0;
        return true;
    }
    return false;
}

/* memcmp for the short strings of domains, without a call. */
static inline bool eq_bytes(const char *a, const char *b, size_t n)
{
    if (n >= 8 && n <= 16) {
        uint64_t x0, y0, x1, y1;
        memcpy(&x0, a, 8);
        memcpy(&y0, b, 8);
        memcpy(&x1, a + n - 8, 8);
        memcpy(&y1, b + n - 8, 8);
        return x0 == y0 && x1 == y1;
    }
    return memcmp(a, b, n) == 0;
}

/* "YYYY-MM-DD" exactly, as epoch milliseconds: what sl__parse_ts gives
 * for such a date (impossible dates such as 2026-02-30 rejected alike),
 * without its general scan. False: not this form, or not a date. */
static bool fast_date(const char *s, int64_t *out)
{
    if (s[4] != '-' || s[7] != '-') return false;
    unsigned v[8];
    static const unsigned at[8] = {0, 1, 2, 3, 5, 6, 8, 9};
    for (int i = 0; i < 8; i++) {
        v[i] = (unsigned)(unsigned char)s[at[i]] - '0';
        if (v[i] > 9) return false;
    }
    const int64_t y = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3];
    const unsigned m = v[4] * 10 + v[5], d = v[6] * 10 + v[7];
    static const unsigned dim[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || d < 1) return false;
    const bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    if (d > dim[m] + (m == 2 && leap)) return false;
    *out = sl__days_from_civil(y, m, d) * 86400000;
    return true;
}

static inline int dec_value(const sl__dec_types *t, int col, const char *v,
                            size_t len, bool quoted, bool stable, sl_batch *b,
                            uint32_t row)
{
    const struct sl__colinfo *ci = &t->schema->cols[col];
    struct sl__col *c = &b->cols[col];
    if (len == 0 && !(quoted && ci->type == SL_STRING)) {
        c->valid[row] = 0;
        return SL__CONV_OK;
    }
    switch (ci->type) {
    case SL_INT64: {
        int64_t x;
        if (!parse_int(v, len, &x)) return SL__CONV_BAD;
        ((int64_t *)c->data)[row] = x;
        break;
    }
    case SL_TIMESTAMP: {
        int64_t x; /* epoch ms, else ISO-8601 (a plain date the quick way) */
        if (!(len == 10 && fast_date(v, &x)) && !parse_int(v, len, &x) &&
            (v[0] == '+' || sl__parse_ts(v, len, &x) != 0))
            return SL__CONV_BAD;
        ((int64_t *)c->data)[row] = x;
        break;
    }
    case SL_FLOAT64: {
        double x;
        if (!parse_double(v, len, &x)) return SL__CONV_BAD;
        ((double *)c->data)[row] = x;
        break;
    }
    case SL_BOOL: {
        uint8_t x;
        if (!parse_bool(v, len, &x)) return SL__CONV_BAD;
        ((uint8_t *)c->data)[row] = x;
        break;
    }
    case SL_STRING: {
        sl_str *dst = &((sl_str *)c->data)[row];
        const uint32_t *dl = t->dom_len[col];
        if (dl == NULL && (t->skip >> col & 1)) { /* never read */
            c->valid[row] = 0;
            return SL__CONV_OK;
        }
        if (dl != NULL) {
            int k;
            for (k = 0; k < ci->ndomain; k++) {
                const char *dv = ci->domain[k];
                if (dl[k] == len && dv[0] == v[0] && eq_bytes(dv, v, len))
                    break;
            }
            if (k == ci->ndomain) return SL__CONV_UNKNOWN;
            dst->ptr = ci->domain[k];
            dst->len = (uint32_t)len;
        } else if (len == 0) {
            dst->ptr = "";
            dst->len = 0;
        } else if (stable) {
            dst->ptr = v;
            dst->len = (uint32_t)len;
        } else {
            char *p = sl__arena_alloc(&b->arena, len);
            memcpy(p, v, len);
            dst->ptr = p;
            dst->len = (uint32_t)len;
        }
        break;
    }
    default:
        return SL__CONV_BAD;
    }
    c->valid[row] = 1;
    return SL__CONV_OK;
}

int sl__dec_value(const sl__dec_types *t, int col, const char *v, size_t len,
                  bool quoted, bool stable, sl_batch *b, uint32_t row)
{
    return dec_value(t, col, v, len, quoted, stable, b, row);
}

/* ---- CSV ---------------------------------------------------------------- */

enum { KIND_SKIP, KIND_INT, KIND_STR, KIND_DOM, KIND_OTHER, KIND_NULL };

static void ensure_fields(sl__csv_dec *d, int n)
{
    if (n <= d->field_cap) return;
    int cap = d->field_cap ? d->field_cap : 16;
    while (cap < n) cap *= 2;
    d->field_col = sl__xrealloc(d->field_col, (size_t)cap * sizeof(int));
    d->field_kind = sl__xrealloc(d->field_kind, (size_t)cap);
    d->field_cap = cap;
}

/* How the fast path converts each field. */
static void set_kinds(sl__csv_dec *d)
{
    for (int f = 0; f < d->nfield; f++) {
        int col = d->field_col[f];
        uint8_t k = KIND_SKIP;
        if (col >= 0) {
            const struct sl__colinfo *ci = &d->t.schema->cols[col];
            k = ci->type == SL_INT64 || ci->type == SL_TIMESTAMP ? KIND_INT
                : ci->type == SL_STRING && (d->t.skip >> col & 1) ? KIND_NULL
                : ci->type == SL_STRING && ci->domain == NULL    ? KIND_STR
                : ci->type == SL_STRING                          ? KIND_DOM
                                                                 : KIND_OTHER;
        }
        d->field_kind[f] = k;
    }
}

void sl__csv_init(sl__csv_dec *d, const sl_schema *s, char delim)
{
    memset(d, 0, sizeof *d);
    sl__dec_types_init(&d->t, s);
    d->delim = delim;
    sl__csv_set_positional(d);
}

void sl__csv_close(sl__csv_dec *d)
{
    sl__dec_types_close(&d->t);
    free(d->field_col);
    free(d->field_kind);
    memset(d, 0, sizeof *d);
}

void sl__csv_project(sl__csv_dec *d, uint64_t used)
{
    sl__dec_types_project(&d->t, used);
    set_kinds(d);
}

void sl__csv_set_positional(sl__csv_dec *d)
{
    int n = d->t.schema->n;
    ensure_fields(d, n > 0 ? n : 1);
    for (int i = 0; i < n; i++) d->field_col[i] = i;
    d->nfield = n;
    d->unmapped = 0;
    set_kinds(d);
}

/* Finds the end of the field starting at p. Sets *q0,*q1 to the content
 * (without quotes) and *esc if it holds "" pairs. Returns the position
 * after the field (at a delimiter or end), NULL for bad quoting, or `end`
 * with *more set when a quoted field is unterminated. */
static const char *scan_field(const char *p, const char *end, char delim,
                              const char **q0, const char **q1, bool *quoted,
                              bool *esc, bool *more)
{
    *esc = false;
    *more = false;
    if (p < end && *p == '"') {
        *quoted = true;
        const char *q = p + 1;
        for (;;) {
            const char *e = memchr(q, '"', (size_t)(end - q));
            if (e == NULL) {
                *more = true;
                return end;
            }
            if (e + 1 < end && e[1] == '"') {
                *esc = true;
                q = e + 2;
                continue;
            }
            *q0 = p + 1;
            *q1 = e;
            e++;
            if (e < end && *e != delim) return NULL;
            return e;
        }
    }
    *quoted = false;
    const char *s = p;
    while (p < end && *p != delim) p++;
    *q0 = s;
    *q1 = p;
    return p;
}

/* Copies quoted content with "" pairs collapsed; returns the new length. */
static size_t unescape_quotes(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        out[o++] = s[i];
        if (s[i] == '"') i++; /* skip the second quote of the pair */
    }
    return o;
}

int sl__csv_set_header(sl__csv_dec *d, const char *line, size_t len)
{
    const sl_schema *s = d->t.schema;
    const char *p = line, *end = line + len;
    int nf = 0, matched = 0;
    uint64_t used = 0;
    int *tmp = NULL;
    size_t tcap = 0;
    char name[256];
    for (;;) {
        const char *q0, *q1;
        bool quoted, esc, more;
        p = scan_field(p, end, d->delim, &q0, &q1, &quoted, &esc, &more);
        if (p == NULL || more) {
            free(tmp);
            return SL_EPARSE;
        }
        size_t n = (size_t)(q1 - q0);
        const char *nm = q0;
        if (esc && n < sizeof name) {
            n = unescape_quotes(q0, n, name);
            nm = name;
        }
        int col = -1;
        for (int pass = 0; pass < 2 && col < 0; pass++) {
            for (int c = 0; c < s->n; c++) {
                const char *cn = s->cols[c].name;
                if (strlen(cn) != n || (used >> c & 1)) continue;
                if (pass == 0 ? memcmp(cn, nm, n) == 0
                              : strncasecmp(cn, nm, n) == 0) {
                    col = c;
                    break;
                }
            }
        }
        if (col >= 0) {
            used |= 1ULL << col;
            matched++;
        }
        if ((size_t)nf >= tcap) {
            tcap = tcap ? tcap * 2 : 16;
            tmp = sl__xrealloc(tmp, tcap * sizeof(int));
        }
        tmp[nf++] = col;
        if (p == end) break;
        p++;
    }
    if (matched > 0) {
        ensure_fields(d, nf);
        memcpy(d->field_col, tmp, (size_t)nf * sizeof(int));
        d->nfield = nf;
        d->unmapped = 0;
        for (int c = 0; c < s->n; c++)
            if (!(used >> c & 1)) d->unmapped |= 1ULL << c;
        set_kinds(d);
    } else {
        sl__csv_set_positional(d);
    }
    free(tmp);
    return matched;
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

/* The general path: any quoting, any number of fields. */
static int decode_general(const sl__csv_dec *d, const char *line, size_t len,
                          sl_batch *b, char *reason, size_t reason_size)
{
    const char *p = line, *end = line + len;
    const uint32_t row = b->n;
    const int nf = d->nfield;
    const char delim = d->delim;
    int f = 0;
    for (;;) {
        if (f >= nf) return fail(reason, reason_size, "wrong_field_count", NULL);
        const int col = d->field_col[f];
        const char *q0, *q1;
        bool quoted, esc, more;
        if (p < end && *p == '"') {
            p = scan_field(p, end, delim, &q0, &q1, &quoted, &esc, &more);
            if (more) return SL__DEC_MORE;
            if (p == NULL) return fail(reason, reason_size, "malformed_csv", NULL);
        } else {
            q0 = p;
            while (p < end && *p != delim) p++;
            q1 = p;
            quoted = esc = false;
        }
        if (col >= 0) {
            size_t n = (size_t)(q1 - q0);
            bool stable = false;
            if (esc) {
                char *u = sl__arena_alloc(&b->arena, n);
                n = unescape_quotes(q0, n, u);
                q0 = u;
                stable = true;
            }
            int rc = dec_value(&d->t, col, q0, n, quoted, stable, b, row);
            if (rc != SL__CONV_OK)
                return fail(reason, reason_size,
                            rc == SL__CONV_BAD ? "parse_error" : "unknown_value",
                            d->t.schema->cols[col].name);
        }
        f++;
        if (p == end) break;
        p++; /* the delimiter */
    }
    if (f != nf) return fail(reason, reason_size, "wrong_field_count", NULL);
    for (uint64_t m = d->unmapped; m != 0; m &= m - 1)
        b->cols[__builtin_ctzll(m)].valid[row] = 0;
    b->kind[row] = SL_KIND_DATA;
    b->n = row + 1;
    return 0;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FAST_PATH 1
#else
#define FAST_PATH 0
#endif
#define FAST_MAX_FIELDS 64

/* 0x80 in every byte of y that is zero, exactly (no false positives). */
static inline uint64_t zero_bytes(uint64_t y)
{
    const uint64_t lo7 = 0x7F7F7F7F7F7F7F7FULL;
    return ~(((y & lo7) + lo7) | y | lo7);
}

/* Offsets of the field ends of a line without quotes (delimiters, then
 * len). Returns the number of fields, -1 if the line holds a quote (the
 * general path decides), or maxf + 1 when there are more than maxf. */
static inline int split_fields(const char *line, size_t len, char delim,
                               int maxf, uint32_t *ends)
{
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t pd = ones * (uint8_t)delim, pq = ones * (uint8_t)'"';
    int n = 0;
    size_t i = 0;
#if defined(__SSE2__) && !defined(SL_NO_SIMD)
    const __m128i vd = _mm_set1_epi8(delim), vq = _mm_set1_epi8('"');
    for (; i + 16 <= len; i += 16) {
        const __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(line + i));
        if (_mm_movemask_epi8(_mm_cmpeq_epi8(x, vq)) != 0) return -1;
        for (unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, vd)); m != 0;
             m &= m - 1) {
            if (n + 1 >= maxf) return maxf + 1;
            ends[n++] = (uint32_t)(i + (size_t)__builtin_ctz(m));
        }
    }
#endif
    for (; i + 8 <= len; i += 8) {
        uint64_t x;
        memcpy(&x, line + i, 8);
        if (zero_bytes(x ^ pq)) return -1;
        for (uint64_t m = zero_bytes(x ^ pd); m != 0; m &= m - 1) {
            if (n + 1 >= maxf) return maxf + 1;
            ends[n++] = (uint32_t)(i + (size_t)(__builtin_ctzll(m) >> 3));
        }
    }
    for (; i < len; i++) {
        if (line[i] == '"') return -1;
        if (line[i] == delim) {
            if (n + 1 >= maxf) return maxf + 1;
            ends[n++] = (uint32_t)i;
        }
    }
    ends[n++] = (uint32_t)len;
    return n;
}

static inline bool is_eight_digits(uint64_t v)
{
    return (((v & 0xF0F0F0F0F0F0F0F0ULL) |
             (((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4)) ==
            0x3333333333333333ULL);
}

static inline uint64_t eight_digits(uint64_t v)
{
    v -= 0x3030303030303030ULL;
    v = v * 10 + (v >> 8);
    return (((v & 0x000000FF000000FFULL) * 0x000F424000000064ULL) +
            (((v >> 16) & 0x000000FF000000FFULL) * 0x0000271000000001ULL)) >>
           32;
}

/* 1..18 digits with an optional '-'; false sends the field to the general
 * conversion (ISO times, '+', overflow, errors). Bytes from `lo` up to the
 * field are readable: a run of fewer than 8 digits is then read as one
 * 8-byte word ending at the field's end, its leading bytes made '0'. */
static inline bool fast_int(const char *s, size_t n, const char *lo, int64_t *out)
{
    bool neg = n > 0 && s[0] == '-';
    s += neg;
    n -= neg;
    if (n == 0 || n > 18) return false;
    static const uint64_t pow10[8] = {1, 10, 100, 1000, 10000, 100000,
                                      1000000, 10000000};
    uint64_t v = 0;
    const char *d0 = s, *e = s + n;
    if (n < 8 && (size_t)(e - lo) >= 8) {
        uint64_t x;
        memcpy(&x, e - 8, 8);
        uint64_t keep = ~0ULL << (8 * (8 - n));
        x = (x & keep) | (0x3030303030303030ULL & ~keep);
        if (!is_eight_digits(x)) return false;
        v = eight_digits(x);
        *out = neg ? -(int64_t)v : (int64_t)v;
        return true;
    }
    while (n >= 8) {
        uint64_t x;
        memcpy(&x, s, 8);
        if (!is_eight_digits(x)) return false;
        v = v * 100000000 + eight_digits(x);
        s += 8;
        n -= 8;
    }
    if (n > 0 && e - 8 >= d0) {
        /* 1..7 digits left after at least 8: read the last 8 bytes and
         * turn the already-parsed ones into leading zeros. */
        uint64_t x;
        memcpy(&x, e - 8, 8);
        uint64_t keep = ~0ULL << (8 * (8 - n));
        x = (x & keep) | (0x3030303030303030ULL & ~keep);
        if (!is_eight_digits(x)) return false;
        v = v * pow10[n] + eight_digits(x);
        n = 0;
    }
    for (; n > 0; n--, s++) {
        unsigned dg = (unsigned)(unsigned char)*s - '0';
        if (dg > 9) return false;
        v = v * 10 + dg;
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    return true;
}

int sl__csv_decode(const sl__csv_dec *d, const char *line, size_t len,
                   sl_batch *b, char *reason, size_t reason_size)
{
    const int nf = d->nfield;
    uint32_t ends[FAST_MAX_FIELDS];
    if (!FAST_PATH || nf > FAST_MAX_FIELDS)
        return decode_general(d, line, len, b, reason, reason_size);
    int got = split_fields(line, len, d->delim, nf, ends);
    if (got < 0) return decode_general(d, line, len, b, reason, reason_size);
    if (got != nf) return fail(reason, reason_size, "wrong_field_count", NULL);
    const uint32_t row = b->n;
    uint32_t start = 0;
    for (int f = 0; f < nf; start = ends[f++] + 1) {
        const uint8_t kind = d->field_kind[f];
        if (kind == KIND_SKIP) continue;
        const int col = d->field_col[f];
        const char *v = line + start;
        const size_t n = ends[f] - start;
        struct sl__col *c = &b->cols[col];
        if (n == 0 || kind == KIND_NULL) {
            c->valid[row] = 0;
            continue;
        }
        if (kind == KIND_INT) {
            int64_t x;
            if (fast_int(v, n, line, &x)) {
                ((int64_t *)c->data)[row] = x;
                c->valid[row] = 1;
                continue;
            }
        } else if (kind == KIND_DOM) { /* point at the schema's value */
            const struct sl__colinfo *ci = &d->t.schema->cols[col];
            const uint32_t *dl = d->t.dom_len[col];
            int k = 0;
            while (k < ci->ndomain && !(dl[k] == n && eq_bytes(ci->domain[k], v, n))) k++;
            if (k < ci->ndomain) {
                ((sl_str *)c->data)[row] = (sl_str){ci->domain[k], (uint32_t)n};
                c->valid[row] = 1;
                continue;
            } /* not in the domain: dec_value reports it */
        } else if (kind == KIND_STR) {
            char *dst = sl__arena_alloc(&b->arena, n);
            memcpy(dst, v, n);
            sl_str *sv = &((sl_str *)c->data)[row];
            sv->ptr = dst;
            sv->len = (uint32_t)n;
            c->valid[row] = 1;
            continue;
        }
        int rc = dec_value(&d->t, col, v, n, false, false, b, row);
        if (rc != SL__CONV_OK)
            return fail(reason, reason_size,
                        rc == SL__CONV_BAD ? "parse_error" : "unknown_value",
                        d->t.schema->cols[col].name);
    }
    for (uint64_t m = d->unmapped; m != 0; m &= m - 1)
        b->cols[__builtin_ctzll(m)].valid[row] = 0;
    b->kind[row] = SL_KIND_DATA;
    b->n = row + 1;
    return 0;
}

/* ---- block decoding ------------------------------------------------------ */

void sl__csv_block_free(sl__csv_block *k)
{
    free(k->ends);
    free(k->starts);
    memset(k, 0, sizeof *k);
}

/* ends: one leading slot (the "newline before the buffer", -1), rows x nf
 * structural positions and a 64-slot margin for the last 64-byte step;
 * starts: here the end of each row's last field (before a '\r'). */
static void block_reserve(sl__csv_block *k, size_t rows, int nf)
{
    if (rows <= k->cap && nf == k->nfield) return;
    if (rows < k->cap) rows = k->cap;
    free(k->ends);
    free(k->starts);
    k->ends = sl__xmalloc((rows * (size_t)nf + 65) * sizeof(uint32_t));
    k->starts = sl__xmalloc((rows + 1) * sizeof(uint32_t));
    k->cap = rows;
    k->nfield = nf;
}

/* Bit i set where p[i] is the delimiter, a newline or a quote, for i < n
 * (n <= 64). */
typedef struct {
#if defined(__SSE2__) && !defined(SL_NO_SIMD)
    __m128i d, n, q;
#else
    uint64_t d, n, q;
#endif
} block_pat;

static inline void block_pat_init(block_pat *p, char delim)
{
#if defined(__SSE2__) && !defined(SL_NO_SIMD)
    p->d = _mm_set1_epi8(delim);
    p->n = _mm_set1_epi8('\n');
    p->q = _mm_set1_epi8('"');
#else
    const uint64_t ones = 0x0101010101010101ULL;
    p->d = ones * (uint8_t)delim;
    p->n = ones * (uint8_t)'\n';
    p->q = ones * (uint8_t)'"';
#endif
}

static inline void block_masks(const block_pat *pt, char delim, const char *p,
                               size_t n, uint64_t *md, uint64_t *mn, uint64_t *mq)
{
    uint64_t d = 0, nl = 0, q = 0;
    size_t i = 0;
#if defined(__SSE2__) && !defined(SL_NO_SIMD)
    for (; i + 16 <= n; i += 16) {
        const __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        d |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, pt->d)) << i;
        nl |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, pt->n)) << i;
        q |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, pt->q)) << i;
    }
#else
    /* 0x80 in each matching byte (zero_bytes), gathered to 8 bits */
    const uint64_t gather = 0x0102040810204080ULL;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        d |= ((zero_bytes(x ^ pt->d) >> 7) * gather >> 56) << i;
        nl |= ((zero_bytes(x ^ pt->n) >> 7) * gather >> 56) << i;
        q |= ((zero_bytes(x ^ pt->q) >> 7) * gather >> 56) << i;
    }
#endif
    for (; i < n; i++) {
        d |= (uint64_t)(p[i] == delim) << i;
        nl |= (uint64_t)(p[i] == '\n') << i;
        q |= (uint64_t)(p[i] == '"') << i;
    }
    *md = d;
    *mn = nl;
    *mq = q;
}

/* Pass 1: the structural index. Every delimiter and newline position goes
 * to E[0..] in order; at each newline, its line must have been given
 * exactly nf positions (so the line has nf fields), which is one
 * comparison a line instead of a branch a field. L[r] is the end of row
 * r's last field (before a '\r'). Bytes go 64 at a time. Returns the rows:
 * complete lines with nf fields, up to the first line that is not, one
 * with a quote, or an empty one (it and later ones are left out). */
static uint32_t block_index(const char *buf, size_t len, char delim, int nf,
                            uint32_t room, sl__csv_block *k)
{
    uint32_t *E = k->ends + 1, *L = k->starts;
    const uint32_t unf = (uint32_t)nf, kmax = room * unf;
    uint32_t row = 0, kk = 0, lstart = 0;
    block_pat pt;
    block_pat_init(&pt, delim);
    k->ends[0] = UINT32_MAX; /* start of row 0 = E[-1] + 1 = 0 */
    for (size_t i = 0; i < len && kk < kmax; i += 64) {
        const size_t n = len - i < 64 ? len - i : 64;
        uint64_t md, mn, mq;
        block_masks(&pt, delim, buf + i, n, &md, &mn, &mq);
        uint64_t m = md | mn;
        if (mq) { /* up to the quote: its line is not taken */
            const uint64_t below = (mq & (0 - mq)) - 1;
            m &= below;
            mn &= below;
        }
        for (; mn != 0; mn &= mn - 1) {
            const uint64_t upto = mn ^ (mn - 1); /* through this newline */
            for (uint64_t t = m & upto; t != 0; t &= t - 1)
                E[kk++] = (uint32_t)i + (uint32_t)__builtin_ctzll(t);
            m &= ~upto;
            if (kk != (row + 1) * unf) return row; /* wrong field count */
            const uint32_t nl = E[kk - 1];
            uint32_t end = nl;
            if (end > lstart && buf[end - 1] == '\r') end--;
            if (end == lstart) return row; /* empty line */
            L[row++] = end;
            lstart = nl + 1;
            if (row == room) return row;
        }
        for (; m != 0; m &= m - 1) /* the line the next step ends */
            E[kk++] = (uint32_t)i + (uint32_t)__builtin_ctzll(m);
        if (mq) return row;
    }
    return row;
}

/* A run of 1..16 digits with an optional '-' ending at e, as one or two
 * 8-byte words read backwards from e (the bytes from `lo` on are
 * readable; e - lo >= 16 is checked by the caller). False: not such a run
 * (a '+', more digits, a non-digit): the general conversion decides. */
static inline bool digit_run(const char *s, size_t n, int64_t *out)
{
    const char *e = s + n;
    const bool neg = s[0] == '-';
    n -= neg;
    if (n - 1 >= 16) return false; /* 0 or more than 16 digits */
    uint64_t lo8, hi8 = 0x3030303030303030ULL;
    memcpy(&lo8, e - 8, 8);
    if (n < 8) {
        const uint64_t keep = ~0ULL << (8 * (8 - n));
        lo8 = (lo8 & keep) | (0x3030303030303030ULL & ~keep);
    } else if (n > 8) {
        memcpy(&hi8, e - 16, 8);
        const uint64_t keep = ~0ULL << (8 * (16 - n));
        hi8 = (hi8 & keep) | (0x3030303030303030ULL & ~keep);
    }
    if (!is_eight_digits(lo8) || !is_eight_digits(hi8)) return false;
    const uint64_t v = eight_digits(hi8) * 100000000 + eight_digits(lo8);
    *out = neg ? -(int64_t)v : (int64_t)v;
    return true;
}

uint32_t sl__csv_decode_block(const sl__csv_dec *d, sl__csv_block *k,
                              const char *buf, size_t len, sl_batch *b,
                              size_t *used, bool *failed)
{
    const int nf = d->nfield;
    const char delim = d->delim;
    *used = 0;
    *failed = false;
    if (!FAST_PATH || nf < 1 || nf > FAST_MAX_FIELDS || b->n >= b->cap ||
        delim == '"' || delim == '\n' || delim == '\r')
        return 0;
    if (len > UINT32_MAX - 16) len = UINT32_MAX - 16;
    const uint32_t room = b->cap - b->n;
    block_reserve(k, room, nf);
    const uint32_t rows = block_index(buf, len, delim, nf, room, k);
    if (rows == 0) return 0;

    /* Pass 2: one loop per field. Conversions that can fail run first; a
     * failure at row r limits the later loops to rows before r, and the
     * string copies run last, so nothing is copied for discarded rows. */
    const uint32_t *E = k->ends + 1, *L = k->starts;
    const uint32_t base = b->n, unf = (uint32_t)nf;
    uint32_t lim = rows;
    for (int pass = 0; pass < 2; pass++) {
        for (int f = 0; f < nf; f++) {
            const uint8_t kind = d->field_kind[f];
            if (kind == KIND_SKIP || (pass == 0) == (kind == KIND_STR || kind == KIND_NULL))
                continue;
            const int col = d->field_col[f];
            struct sl__col *c = &b->cols[col];
            uint8_t *valid = c->valid + base;
            /* field f of row r: [E[r*nf + f - 1] + 1, end), where end is
             * E[r*nf + f], or L[r] for the last field */
            const uint32_t *ps = E + f - 1;
            const uint32_t *pe = f == nf - 1 ? L : E + f;
            const uint32_t es = f == nf - 1 ? 1 : unf;
            if (kind == KIND_NULL) {
                memset(valid, 0, lim);
            } else if (kind == KIND_INT) {
                int64_t *out = (int64_t *)c->data + base;
                for (uint32_t r = 0; r < lim; r++) {
                    const uint32_t st = ps[(size_t)r * unf] + 1, n = pe[(size_t)r * es] - st;
                    if (n == 0) {
                        valid[r] = 0;
                        continue;
                    }
                    valid[r] = 1;
                    if (st + n >= 16 && digit_run(buf + st, n, &out[r])) continue;
                    if (dec_value(&d->t, col, buf + st, n, false, false, b,
                                  base + r) != SL__CONV_OK) {
                        lim = r;
                        *failed = true;
                    }
                }
            } else if (kind == KIND_DOM) {
                const struct sl__colinfo *ci = &d->t.schema->cols[col];
                const uint32_t *dl = d->t.dom_len[col];
                const int nd = ci->ndomain;
                sl_str *out = (sl_str *)c->data + base;
                for (uint32_t r = 0; r < lim; r++) {
                    const uint32_t st = ps[(size_t)r * unf] + 1, n = pe[(size_t)r * es] - st;
                    if (n == 0) {
                        valid[r] = 0;
                        continue;
                    }
                    const char *v = buf + st;
                    int j = 0;
                    while (j < nd && !(dl[j] == n && eq_bytes(ci->domain[j], v, n))) j++;
                    if (j == nd) {
                        lim = r;
                        *failed = true;
                        break;
                    }
                    out[r] = (sl_str){ci->domain[j], n};
                    valid[r] = 1;
                }
            } else if (kind == KIND_STR) {
                size_t total = 0;
                for (uint32_t r = 0; r < lim; r++) {
                    total += pe[(size_t)r * es] - (ps[(size_t)r * unf] + 1);
                }
                /* one allocation for the column, 16 spare bytes so short
                 * values copy as one 16-byte move */
                char *dst = sl__arena_alloc(&b->arena, total + 16);
                sl_str *out = (sl_str *)c->data + base;
                for (uint32_t r = 0; r < lim; r++) {
                    const uint32_t st = ps[(size_t)r * unf] + 1, n = pe[(size_t)r * es] - st;
                    if (n == 0) {
                        valid[r] = 0;
                        continue;
                    }
                    if (n <= 16 && (size_t)st + 16 <= len) memcpy(dst, buf + st, 16);
                    else memcpy(dst, buf + st, n);
                    out[r] = (sl_str){dst, n};
                    valid[r] = 1;
                    dst += n;
                }
            } else { /* floats, booleans: the general conversion */
                for (uint32_t r = 0; r < lim; r++) {
                    const uint32_t st = ps[(size_t)r * unf] + 1, n = pe[(size_t)r * es] - st;
                    if (n == 0) {
                        valid[r] = 0;
                        continue;
                    }
                    if (dec_value(&d->t, col, buf + st, n, false, false, b,
                                  base + r) != SL__CONV_OK) {
                        lim = r;
                        *failed = true;
                    }
                }
            }
        }
    }
    if (lim == 0) return 0;
    for (uint64_t m = d->unmapped; m != 0; m &= m - 1)
        memset(b->cols[__builtin_ctzll(m)].valid + base, 0, lim);
    memset(b->kind + base, SL_KIND_DATA, lim);
    b->n = base + lim;
    *used = (size_t)E[lim * unf - 1] + 1;
    return lim;
}
