/* avro.c — the Avro message format of the Kafka connectors (and the
 * PostgreSQL sink task): one Avro binary datum per Kafka message in the
 * single-object encoding of the Avro specification: 0xC3 0x01, the 8-byte
 * little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing
 * Canonical Form, then the datum. No schema registry is needed; a reader
 * knows the writer's schema by its fingerprint.
 *
 * The record schema is derived from the sluice schema: INT64 -> long,
 * FLOAT64 -> double, BOOL -> boolean, STRING -> string, TIMESTAMP -> long
 * with logicalType timestamp-millis; sluice columns are all nullable, so
 * every field is the union ["null", T] with default null. The datum is
 * encoded and decoded by libavro (Debian libavro-dev, avro-c); the schema
 * text and the fingerprint are made here (avro-c has no canonical form).
 *
 * It does not frame several records per message, and does not resolve a
 * writer schema that differs from the reader's (an unknown fingerprint is
 * a dead letter). A codec holds one libavro value: not thread-safe, one per
 * source or sink instance. */
#include <avro.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/avrofmt.h"
#include "io/pg.h"

struct sl__avro {
    const sl_schema *schema;
    sl__dec_types t;
    avro_schema_t as;
    avro_value_iface_t *iface;
    avro_value_t value;
    char *json;      /* the schema, with logicalType */
    char *canonical; /* its Parsing Canonical Form */
    uint64_t fp;
    unsigned char header[10];
    char *scratch; /* a NUL-terminated copy of a string value */
    size_t scratch_cap;
};

/* ---- CRC-64-AVRO (Rabin fingerprint, Avro specification) ---------------- */
#define AVRO_FP_EMPTY 0xc15d213aa4d7a795ULL

static uint64_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (int i = 0; i < 256; i++) {
        uint64_t fp = (uint64_t)i;
        for (int j = 0; j < 8; j++) fp = (fp >> 1) ^ (AVRO_FP_EMPTY & (0 - (fp & 1)));
        crc_table[i] = fp;
    }
}

uint64_t sl__avro_crc64(const void *data, size_t len)
{
    pthread_once(&crc_once, crc_init); /* codecs are made in several tasks at once */
    const uint64_t *table = crc_table;
    uint64_t fp = AVRO_FP_EMPTY;
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) fp = (fp >> 8) ^ table[(fp ^ p[i]) & 0xff];
    return fp;
}

static const char *avro_type(sl_type t)
{
    switch (t) {
    case SL_INT64:
    case SL_TIMESTAMP: return "long";
    case SL_FLOAT64: return "double";
    case SL_BOOL: return "boolean";
    case SL_STRING: return "string";
    }
    return "null";
}

static bool avro_name_ok(const char *s, bool dots)
{
    if (!s || !*s) return false;
    bool start = true;
    for (; *s; s++) {
        if (dots && *s == '.' && !start) {
            start = true;
            continue;
        }
        if (!(isalpha((unsigned char)*s) || *s == '_' || (!start && isdigit((unsigned char)*s))))
            return false;
        start = false;
    }
    return !start;
}

/* The schema JSON: canonical (Parsing Canonical Form) or full. */
static char *schema_json(const sl_schema *s, const char *fullname, bool canonical)
{
    sl__pg_buf b = {0};
    const char *dot = strrchr(fullname, '.');
    if (canonical) {
        sl__pg_adds(&b, "{\"name\":\"");
        sl__pg_adds(&b, fullname);
        sl__pg_adds(&b, "\",\"type\":\"record\",\"fields\":[");
    } else {
        sl__pg_adds(&b, "{\"type\":\"record\",\"name\":\"");
        sl__pg_adds(&b, dot ? dot + 1 : fullname);
        if (dot) {
            sl__pg_adds(&b, "\",\"namespace\":\"");
            sl__pg_add(&b, fullname, (size_t)(dot - fullname));
        }
        sl__pg_adds(&b, "\",\"fields\":[");
    }
    for (int c = 0; c < s->n; c++) {
        if (c) sl__pg_adds(&b, ",");
        sl__pg_adds(&b, "{\"name\":\"");
        sl__pg_adds(&b, s->cols[c].name);
        sl__pg_adds(&b, "\",\"type\":[\"null\",");
        if (!canonical && s->cols[c].type == SL_TIMESTAMP) {
            sl__pg_adds(&b, "{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}");
        } else {
            sl__pg_adds(&b, "\"");
            sl__pg_adds(&b, avro_type(s->cols[c].type));
            sl__pg_adds(&b, "\"");
        }
        sl__pg_adds(&b, canonical ? "]}" : "],\"default\":null}");
    }
    sl__pg_adds(&b, "]}");
    return b.p;
}

int sl__avro_new(sl__avro **out, const sl_schema *s, const char *fullname,
                 const char *component, char *err, size_t esz)
{
    *out = NULL;
    if (!avro_name_ok(fullname, true))
        return sl__err(err, esz, SL_EINVAL, "%s: avro.name '%s' is not an Avro full "
                       "name (letters, digits and _, parts separated by dots)",
                       component, fullname);
    for (int c = 0; c < s->n; c++)
        if (!avro_name_ok(s->cols[c].name, false))
            return sl__err(err, esz, SL_EINVAL, "%s: format avro: column \"%s\" is not "
                           "an Avro field name (letters, digits and _, not starting with "
                           "a digit)", component, s->cols[c].name);
    sl__avro *a = sl__xcalloc(1, sizeof *a);
    a->schema = s;
    sl__dec_types_init(&a->t, s);
    a->json = schema_json(s, fullname, false);
    a->canonical = schema_json(s, fullname, true);
    a->fp = sl__avro_crc64(a->canonical, strlen(a->canonical));
    a->header[0] = 0xC3;
    a->header[1] = 0x01;
    for (int i = 0; i < 8; i++) a->header[2 + i] = (unsigned char)(a->fp >> (8 * i));
    if (avro_schema_from_json_length(a->json, strlen(a->json), &a->as) ||
        !(a->iface = avro_generic_class_from_schema(a->as)) ||
        avro_generic_value_new(a->iface, &a->value)) {
        int rc = sl__err(err, esz, SL_EINTERNAL, "%s: format avro: libavro refused the "
                         "schema %s: %s", component, a->json, avro_strerror());
        sl__avro_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void sl__avro_free(sl__avro *a)
{
    if (!a) return;
    if (a->value.iface) avro_value_decref(&a->value);
    if (a->iface) avro_value_iface_decref(a->iface);
    if (a->as) avro_schema_decref(a->as);
    sl__dec_types_close(&a->t);
    free(a->json);
    free(a->canonical);
    free(a->scratch);
    free(a);
}

const char *sl__avro_schema(const sl__avro *a) { return a->json; }
const char *sl__avro_canonical(const sl__avro *a) { return a->canonical; }
uint64_t sl__avro_fingerprint(const sl__avro *a) { return a->fp; }

/* ---- decoding ------------------------------------------------------------ */
static int set_field(sl__avro *a, int c, avro_value_t *field, sl_batch *b, uint32_t row,
                     char *reason, size_t rsz)
{
    int disc = -1;
    avro_value_t branch = {0};
    struct sl__col *col = &b->cols[c];
    if (avro_value_get_discriminant(field, &disc) ||
        avro_value_get_current_branch(field, &branch) || disc < 0 || disc > 1) {
        snprintf(reason, rsz, "parse_error:%s", a->schema->cols[c].name);
        return SL_EPARSE;
    }
    if (disc == 0) {
        col->valid[row] = 0;
        return 0;
    }
    int rc = 0;
    col->valid[row] = 1;
    switch (a->schema->cols[c].type) {
    case SL_INT64:
    case SL_TIMESTAMP: {
        int64_t v = 0;
        rc = avro_value_get_long(&branch, &v);
        ((int64_t *)col->data)[row] = v;
        break;
    }
    case SL_FLOAT64: {
        double v = 0;
        rc = avro_value_get_double(&branch, &v);
        ((double *)col->data)[row] = v;
        break;
    }
    case SL_BOOL: {
        int v = 0;
        rc = avro_value_get_boolean(&branch, &v);
        ((uint8_t *)col->data)[row] = v != 0;
        break;
    }
    case SL_STRING: {
        const char *p = NULL;
        size_t n = 0;
        rc = avro_value_get_string(&branch, &p, &n);
        if (rc == 0) {
            int cv = sl__dec_value(&a->t, c, p, n ? n - 1 : 0, true, false, b, row);
            if (cv != SL__CONV_OK) {
                snprintf(reason, rsz, "%s:%s",
                         cv == SL__CONV_UNKNOWN ? "unknown_value" : "parse_error",
                         a->schema->cols[c].name);
                return SL_EPARSE;
            }
        }
        break;
    }
    }
    if (rc) {
        snprintf(reason, rsz, "parse_error:%s", a->schema->cols[c].name);
        return SL_EPARSE;
    }
    return 0;
}

int sl__avro_decode(sl__avro *a, const void *msg, size_t len, sl_batch *b, char *reason,
                    size_t rsz)
{
    const unsigned char *p = msg;
    if (len < 2 || p[0] != 0xC3 || p[1] != 0x01) {
        snprintf(reason, rsz, "avro_bad_magic");
        return SL_EPARSE;
    }
    if (len < 10) {
        snprintf(reason, rsz, "avro_truncated_header");
        return SL_EPARSE;
    }
    if (memcmp(p, a->header, 10) != 0) {
        snprintf(reason, rsz, "avro_unknown_fingerprint");
        return SL_EPARSE;
    }
    avro_value_reset(&a->value);
    avro_reader_t r = avro_reader_memory((const char *)p + 10, (int64_t)(len - 10));
    int rc = avro_value_read(r, &a->value);
    avro_reader_free(r);
    size_t used = 0;
    if (rc == 0 && avro_value_sizeof(&a->value, &used) == 0 && used != len - 10) {
        snprintf(reason, rsz, "avro_trailing_bytes");
        return SL_EPARSE;
    }
    if (rc) {
        snprintf(reason, rsz, "avro_truncated_datum");
        return SL_EPARSE;
    }
    uint32_t row = b->n;
    b->kind[row] = SL_KIND_DATA;
    for (int c = 0; c < a->schema->n; c++) {
        avro_value_t field;
        if (avro_value_get_by_index(&a->value, (size_t)c, &field, NULL)) {
            snprintf(reason, rsz, "parse_error:%s", a->schema->cols[c].name);
            return SL_EPARSE;
        }
        if (set_field(a, c, &field, b, row, reason, rsz)) return SL_EPARSE;
    }
    b->n++;
    return 0;
}

/* ---- encoding ------------------------------------------------------------ */
static int put_field(sl__avro *a, const sl_batch *b, uint32_t r, int c, avro_value_t *field)
{
    avro_value_t branch;
    const struct sl__col *col = &b->cols[c];
    if (!col->valid[r]) return avro_value_set_branch(field, 0, &branch) ||
                               avro_value_set_null(&branch);
    if (avro_value_set_branch(field, 1, &branch)) return -1;
    switch (a->schema->cols[c].type) {
    case SL_INT64:
    case SL_TIMESTAMP: return avro_value_set_long(&branch, ((const int64_t *)col->data)[r]);
    case SL_FLOAT64: return avro_value_set_double(&branch, ((const double *)col->data)[r]);
    case SL_BOOL: return avro_value_set_boolean(&branch, ((const uint8_t *)col->data)[r]);
    case SL_STRING: {
        const sl_str *v = &((const sl_str *)col->data)[r];
        if ((size_t)v->len + 1 > a->scratch_cap) {
            a->scratch_cap = (size_t)v->len + 1;
            a->scratch = sl__xrealloc(a->scratch, a->scratch_cap);
        }
        if (v->len) memcpy(a->scratch, v->ptr, v->len);
        a->scratch[v->len] = 0;
        return avro_value_set_string_len(&branch, a->scratch, (size_t)v->len + 1);
    }
    }
    return -1;
}

size_t sl__avro_encode(sl__avro *a, const sl_batch *b, uint32_t r, char *buf, size_t cap)
{
    avro_value_reset(&a->value);
    for (int c = 0; c < a->schema->n; c++) {
        avro_value_t field;
        int rc = avro_value_get_by_index(&a->value, (size_t)c, &field, NULL);
        if (rc == 0) rc = put_field(a, b, r, c, &field);
        SL_ASSERT(rc == 0); /* the value was built from this very schema */
    }
    size_t size = 0;
    int rc = avro_value_sizeof(&a->value, &size);
    SL_ASSERT(rc == 0);
    size_t need = 10 + size;
    if (need > cap) return need;
    memcpy(buf, a->header, 10);
    avro_writer_t w = avro_writer_memory(buf + 10, (int64_t)size);
    rc = avro_value_write(w, &a->value);
    avro_writer_free(w);
    SL_ASSERT(rc == 0);
    return need;
}
