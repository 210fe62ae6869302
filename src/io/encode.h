/* encode.h — text encoders shared by the file and stdout sinks (CSV, JSON
 * Lines, aligned table cells), plus a small file-system helper the sinks
 * share.
 *
 * Every encoder works like snprintf: it writes at most `cap` bytes into buf
 * and returns the number of bytes the full encoding needs (no NUL is
 * written). A return value greater than `cap` means the output did not fit
 * and buf holds nothing usable: the caller drains or grows its buffer and
 * calls again. Encoders never allocate. Rows end with '\n'.
 *
 * Value rendering, the same for every format unless stated:
 * - INT64 in decimal; TIMESTAMP as integer epoch milliseconds (CSV, JSON)
 *   or ISO-8601 UTC via sl__format_ts (table);
 * - FLOAT64 as the shortest of %.15g/%.16g/%.17g that reads back exactly,
 *   with ".0" appended to integral values; NaN and infinities become null
 *   in JSON and NaN/Infinity/-Infinity in CSV and tables;
 * - BOOL as true/false;
 * - NULL (validity 0) as an empty CSV field, JSON null, or "NULL" in tables.
 */
#ifndef SL_IO_ENCODE_H
#define SL_IO_ENCODE_H

#include "core/core.h"

/* One CSV record (RFC 4180 quoting; records end with LF, not CRLF). A field
 * is quoted when it contains sep, '"', CR or LF, and an empty string is
 * written as "" so that it differs from NULL (an empty field). */
size_t sl__encode_csv_row(const sl_batch *b, uint32_t row, char sep,
                          char *buf, size_t cap);
/* The CSV header record: the schema's column names, quoted as above. */
size_t sl__encode_csv_header(const sl_schema *s, char sep, char *buf,
                             size_t cap);

/* One JSON object {"col":value,...} and '\n'. Strings are escaped per
 * RFC 8259: '"', '\\' and control characters are escaped, valid UTF-8 is
 * copied as is and every byte of an invalid UTF-8 sequence becomes \ufffd,
 * so the output is always valid UTF-8 JSON. */
size_t sl__encode_jsonl_row(const sl_batch *b, uint32_t row, char *buf,
                            size_t cap);
/* A JSON string literal (quotes included) for s[0..len). */
size_t sl__encode_json_str(const char *s, size_t len, char *buf, size_t cap);

/* One cell as the human-readable table shows it: timestamps as ISO-8601,
 * NULL as "NULL", control characters in strings as \n, \t, \r or \xNN so a
 * cell stays on one line. No padding, no newline. */
size_t sl__encode_text_cell(const sl_batch *b, uint32_t row, int col,
                            char *buf, size_t cap);
/* Display width of UTF-8 text: the number of code points (every byte that
 * is not a continuation byte counts as one column). */
size_t sl__utf8_width(const char *s, size_t len);

/* Creates the directories leading to `path` (not path itself), like
 * mkdir -p "$(dirname path)". Returns 0 or SL_EIO naming the directory. */
int sl__mkdir_parents(const char *path, char *errstr, size_t errstr_size);

#endif
