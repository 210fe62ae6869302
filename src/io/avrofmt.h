/* avrofmt.h — the Avro single-object message format (avro.c), shared by the
 * Kafka source and sink and the PostgreSQL sink task.
 *
 * Ownership: sl__avro_new borrows the schema (it must outlive the codec)
 * and returns a codec the caller frees with sl__avro_free (NULL: no-op).
 * A codec is not thread-safe: one per instance. */
#ifndef SL_IO_AVROFMT_H
#define SL_IO_AVROFMT_H

#include "core/runtime.h"
#include "io/decode.h"

typedef struct sl__avro sl__avro;

#define SL__AVRO_DEFAULT_NAME "sluice.Record"

/* A codec for records of schema s named `fullname` (e.g. sluice.Record).
 * Errors (a column name Avro does not allow, a bad name) name `component`
 * and the key. */
int sl__avro_new(sl__avro **out, const sl_schema *s, const char *fullname,
                 const char *component, char *err, size_t esz);
void sl__avro_free(sl__avro *a);
/* The writer schema as JSON (with logicalType), its Parsing Canonical
 * Form, and the CRC-64-AVRO fingerprint of the latter. Borrowed. */
const char *sl__avro_schema(const sl__avro *a);
const char *sl__avro_canonical(const sl__avro *a);
uint64_t sl__avro_fingerprint(const sl__avro *a);
uint64_t sl__avro_crc64(const void *data, size_t len);
/* Decodes one message into row b->n (b->n < b->cap) and increments b->n.
 * Returns 0 or SL_EPARSE with the reason: avro_bad_magic,
 * avro_truncated_header, avro_unknown_fingerprint, avro_truncated_datum,
 * avro_trailing_bytes, parse_error:<col> or unknown_value:<col>. */
int sl__avro_decode(sl__avro *a, const void *msg, size_t len, sl_batch *b,
                    char *reason, size_t rsz);
/* Encodes row r as one message, like snprintf: returns the bytes needed;
 * writes them only when they fit in cap. */
size_t sl__avro_encode(sl__avro *a, const sl_batch *b, uint32_t r, char *buf,
                       size_t cap);

#endif
