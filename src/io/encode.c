/* encode.c — text encoders shared by the file and stdout sinks: CSV records
 * (RFC 4180 quoting), JSON Lines objects (RFC 8259 escaping, always valid
 * UTF-8) and the cells of the human-readable table. See encode.h for the
 * rendering of each type.
 *
 * The encoders write into a caller-owned buffer with snprintf semantics and
 * never allocate, so a sink encodes a whole batch into one buffer with no
 * per-row work beyond the formatting itself. They do not parse, and they do
 * not know about files: draining the buffer is the sink's job. */
#include "io/encode.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

/* A bounded writer: counts every byte, stores the ones that fit. Once a
 * write does not fit, len > cap and nothing later is stored either. */
typedef struct {
    char *p;
    size_t cap, len;
} wr;

static inline void wr_put(wr *w, const void *s, size_t n)
{
    if (n && w->len <= w->cap && n <= w->cap - w->len)
        memcpy(w->p + w->len, s, n);
    w->len += n;
}

static inline void wr_byte(wr *w, char c)
{
    if (w->len < w->cap)
        w->p[w->len] = c;
    w->len++;
}

/* ---- numbers ------------------------------------------------------------- */
static size_t fmt_i64(int64_t v, char *out)
{
    char tmp[24];
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    size_t i = 0, n = 0;
    do {
        tmp[i++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[n++] = '-';
    while (i)
        out[n++] = tmp[--i];
    return n;
}

/* Shortest of %.15g..%.17g that reads back to the same double, so values
 * such as 0.1 print as 0.1 and every value round-trips. Finite d only. */
static size_t fmt_f64(double d, char *out, size_t size)
{
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(out, size, "%.*g", prec, d);
        if (prec == 17 || strtod(out, NULL) == d)
            break;
    }
    if (n < 0)
        n = 0;
    if ((size_t)n >= size)
        n = (int)size - 1;
    if (!strpbrk(out, ".eE") && (size_t)n + 2 < size) {
        out[n++] = '.';
        out[n++] = '0';
        out[n] = '\0';
    }
    return (size_t)n;
}

static void wr_i64(wr *w, int64_t v)
{
    char tmp[24];
    wr_put(w, tmp, fmt_i64(v, tmp));
}

/* JSON has no NaN or infinities: there they become null. */
static void wr_f64(wr *w, double d, int json)
{
    char tmp[40];
    if (isnan(d)) {
        if (json)
            wr_put(w, "null", 4);
        else
            wr_put(w, "NaN", 3);
    } else if (isinf(d)) {
        if (json)
            wr_put(w, "null", 4);
        else if (d > 0)
            wr_put(w, "Infinity", 8);
        else
            wr_put(w, "-Infinity", 9);
    } else {
        wr_put(w, tmp, fmt_f64(d, tmp, sizeof tmp));
    }
}

static void wr_bool(wr *w, uint8_t v)
{
    if (v)
        wr_put(w, "true", 4);
    else
        wr_put(w, "false", 5);
}

/* ---- UTF-8 --------------------------------------------------------------- */
/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or 0 if it is not valid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0], c1;
    if (c < 0x80)
        return 1;
    if (c < 0xC2 || c > 0xF4 || n < 2 || (s[1] & 0xC0) != 0x80)
        return 0;
    c1 = s[1];
    if (c < 0xE0)
        return 2;
    if (n < 3 || (s[2] & 0xC0) != 0x80)
        return 0;
    if (c < 0xF0) {
        if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0))
            return 0;
        return 3;
    }
    if (n < 4 || (s[3] & 0xC0) != 0x80)
        return 0;
    if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90))
        return 0;
    return 4;
}

size_t sl__utf8_width(const char *s, size_t len)
{
    size_t w = 0;
    for (size_t i = 0; i < len; i++)
        w += ((unsigned char)s[i] & 0xC0) != 0x80;
    return w;
}

/* ---- JSON ---------------------------------------------------------------- */
static void wr_json_str(wr *w, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;
    wr_byte(w, '"');
    while (i < len) {
        unsigned c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t k = utf8_seq(s + i, len - i);
            if (k) {
                i += k;
                continue;
            }
        }
        wr_put(w, s + run, i - run);
        switch (c) {
        case '"': wr_put(w, "\\\"", 2); break;
        case '\\': wr_put(w, "\\\\", 2); break;
        case '\n': wr_put(w, "\\n", 2); break;
        case '\r': wr_put(w, "\\r", 2); break;
        case '\t': wr_put(w, "\\t", 2); break;
        case '\b': wr_put(w, "\\b", 2); break;
        case '\f': wr_put(w, "\\f", 2); break;
        default:
            if (c >= 0x80) {
                wr_put(w, "\\ufffd", 6);
            } else {
                char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                wr_put(w, u, 6);
            }
        }
        i++;
        run = i;
    }
    wr_put(w, s + run, len - run);
    wr_byte(w, '"');
}

size_t sl__encode_json_str(const char *s, size_t len, char *buf, size_t cap)
{
    wr w = {buf, cap, 0};
    wr_json_str(&w, s, len);
    return w.len;
}

size_t sl__encode_jsonl_row(const sl_batch *b, uint32_t row, char *buf,
                            size_t cap)
{
    const sl_schema *sc = b->schema;
    wr w = {buf, cap, 0};
    wr_byte(&w, '{');
    for (int c = 0; c < sc->n; c++) {
        const struct sl__col *col = &b->cols[c];
        const char *name = sc->cols[c].name;
        if (c)
            wr_byte(&w, ',');
        wr_json_str(&w, name, strlen(name));
        wr_byte(&w, ':');
        if (!col->valid[row]) {
            wr_put(&w, "null", 4);
            continue;
        }
        switch (sc->cols[c].type) {
        case SL_INT64:
        case SL_TIMESTAMP:
            wr_i64(&w, ((const int64_t *)col->data)[row]);
            break;
        case SL_FLOAT64:
            wr_f64(&w, ((const double *)col->data)[row], 1);
            break;
        case SL_BOOL:
            wr_bool(&w, ((const uint8_t *)col->data)[row]);
            break;
        case SL_STRING: {
            const sl_str *v = &((const sl_str *)col->data)[row];
            wr_json_str(&w, v->ptr, v->len);
            break;
        }
        }
    }
    wr_put(&w, "}\n", 2);
    return w.len;
}

/* ---- CSV ----------------------------------------------------------------- */
static void wr_csv_str(wr *w, const char *s, size_t len, char sep)
{
    int quote = len == 0;
    for (size_t i = 0; i < len && !quote; i++) {
        char c = s[i];
        quote = c == sep || c == '"' || c == '\n' || c == '\r';
    }
    if (!quote) {
        wr_put(w, s, len);
        return;
    }
    wr_byte(w, '"');
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"') {
            wr_put(w, s + run, i + 1 - run); /* the quote, then its double */
            run = i;
        }
    }
    wr_put(w, s + run, len - run);
    wr_byte(w, '"');
}

size_t sl__encode_csv_row(const sl_batch *b, uint32_t row, char sep,
                          char *buf, size_t cap)
{
    const sl_schema *sc = b->schema;
    wr w = {buf, cap, 0};
    for (int c = 0; c < sc->n; c++) {
        const struct sl__col *col = &b->cols[c];
        if (c)
            wr_byte(&w, sep);
        if (!col->valid[row])
            continue; /* NULL: empty field */
        switch (sc->cols[c].type) {
        case SL_INT64:
        case SL_TIMESTAMP:
            wr_i64(&w, ((const int64_t *)col->data)[row]);
            break;
        case SL_FLOAT64:
            wr_f64(&w, ((const double *)col->data)[row], 0);
            break;
        case SL_BOOL:
            wr_bool(&w, ((const uint8_t *)col->data)[row]);
            break;
        case SL_STRING: {
            const sl_str *v = &((const sl_str *)col->data)[row];
            wr_csv_str(&w, v->ptr, v->len, sep);
            break;
        }
        }
    }
    wr_byte(&w, '\n');
    return w.len;
}

size_t sl__encode_csv_header(const sl_schema *s, char sep, char *buf,
                             size_t cap)
{
    wr w = {buf, cap, 0};
    for (int c = 0; c < s->n; c++) {
        if (c)
            wr_byte(&w, sep);
        wr_csv_str(&w, s->cols[c].name, strlen(s->cols[c].name), sep);
    }
    wr_byte(&w, '\n');
    return w.len;
}

/* ---- table cells --------------------------------------------------------- */
static void wr_text_str(wr *w, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned c = s[i];
        if (c >= 0x20 && c != 0x7F)
            continue;
        wr_put(w, s + run, i - run);
        if (c == '\n')
            wr_put(w, "\\n", 2);
        else if (c == '\t')
            wr_put(w, "\\t", 2);
        else if (c == '\r')
            wr_put(w, "\\r", 2);
        else
            wr_put(w, (char[4]){'\\', 'x', hex[c >> 4], hex[c & 15]}, 4);
        run = i + 1;
    }
    wr_put(w, s + run, len - run);
}

size_t sl__encode_text_cell(const sl_batch *b, uint32_t row, int col,
                            char *buf, size_t cap)
{
    const struct sl__col *cl = &b->cols[col];
    wr w = {buf, cap, 0};
    if (!cl->valid[row]) {
        wr_put(&w, "NULL", 4);
        return w.len;
    }
    switch (b->schema->cols[col].type) {
    case SL_INT64:
        wr_i64(&w, ((const int64_t *)cl->data)[row]);
        break;
    case SL_TIMESTAMP: {
        char ts[64];
        int n = sl__format_ts(((const int64_t *)cl->data)[row], ts,
                              sizeof ts);
        if (n < 0)
            n = 0;
        if ((size_t)n >= sizeof ts)
            n = (int)sizeof ts - 1;
        wr_put(&w, ts, (size_t)n);
        break;
    }
    case SL_FLOAT64:
        wr_f64(&w, ((const double *)cl->data)[row], 0);
        break;
    case SL_BOOL:
        wr_bool(&w, ((const uint8_t *)cl->data)[row]);
        break;
    case SL_STRING: {
        const sl_str *v = &((const sl_str *)cl->data)[row];
        wr_text_str(&w, v->ptr, v->len);
        break;
    }
    }
    return w.len;
}

/* ---- files --------------------------------------------------------------- */
int sl__mkdir_parents(const char *path, char *errstr, size_t errstr_size)
{
    char *p = sl__xstrdup(path);
    char *slash = strrchr(p, '/');
    int rc = 0;
    if (!slash || slash == p) {
        free(p);
        return 0;
    }
    *slash = '\0';
    for (char *q = p + 1;; q++) {
        char save = *q;
        if (save != '/' && save != '\0')
            continue;
        *q = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            rc = sl__err(errstr, errstr_size, SL_EIO,
                         "cannot create directory %s: %s", p,
                         strerror(errno));
            break;
        }
        *q = save;
        if (!save)
            break;
    }
    if (rc == 0) {
        struct stat st;
        if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
            rc = sl__err(errstr, errstr_size, SL_EIO,
                         "%s is not a directory (needed for %s)", p, path);
    }
    free(p);
    return rc;
}
