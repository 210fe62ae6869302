/* decode.h — the io layer's text decoders (CSV and JSON Lines: one line of
 * text becomes one row appended to an sl_batch) and the file source's hooks
 * for checkpoints.
 *
 * Ownership: a decoder borrows its schema, which must outlive it and every
 * batch it fills (STRING values of a column with a domain point at the
 * schema's domain strings instead of being copied). Other strings are copied
 * into the batch's arena. Decoders are immutable after set-up, so one may
 * serve several threads. */
#ifndef SL_IO_DECODE_H
#define SL_IO_DECODE_H

#include "core/runtime.h"

/* Result of the decoders besides 0 (row appended) and SL_EPARSE (bad line,
 * reason written, nothing appended): the CSV line ends inside a quoted
 * field; call again with the record's next line appended (newline kept). */
#define SL__DEC_MORE 1

/* ---- typed conversion shared by both decoders --------------------------- */
typedef struct {
    const sl_schema *schema;
    uint32_t *dom_len[SL_MAX_COLS]; /* lengths of the domain values, or NULL */
    uint64_t skip; /* projection pushdown: columns stored as NULL, unread */
} sl__dec_types;

void sl__dec_types_init(sl__dec_types *t, const sl_schema *s);
/* Projection pushdown: the VARCHAR columns without a domain that are not
 * in `used` (bit c = column c) are stored as NULL without being copied.
 * Only those: a conversion that can fail (numbers, domains) still runs, so
 * the records rejected stay the same. CSV callers use sl__csv_project. */
void sl__dec_types_project(sl__dec_types *t, uint64_t used);
void sl__dec_types_close(sl__dec_types *t);

enum { SL__CONV_OK = 0, SL__CONV_BAD = 1, SL__CONV_UNKNOWN = 2 };
/* Stores the text v[0..len) into (col, row) of b, converted to the column's
 * type. `quoted`: the text was a quoted CSV field or a JSON string, so an
 * empty one is an empty STRING (unquoted empty text is NULL; for other
 * types empty is always NULL). `stable`: v already lives in b's arena and
 * may be referenced rather than copied. Returns SL__CONV_OK, SL__CONV_BAD
 * (not a value of the type) or SL__CONV_UNKNOWN (outside the domain). */
int sl__dec_value(const sl__dec_types *t, int col, const char *v, size_t len,
                  bool quoted, bool stable, sl_batch *b, uint32_t row);

/* ---- CSV (RFC 4180) ----------------------------------------------------- */
typedef struct {
    sl__dec_types t;
    char delim;
    int nfield;      /* fields per record */
    int *field_col;  /* nfield entries: schema column, or -1 (ignored) */
    uint8_t *field_kind; /* nfield entries: how the fast path converts it */
    int field_cap;
    uint64_t unmapped; /* schema columns no field feeds: always NULL */
} sl__csv_dec;

/* Starts positional (field i = column i); sl__csv_set_header() remaps. */
void sl__csv_init(sl__csv_dec *d, const sl_schema *s, char delim);
void sl__csv_close(sl__csv_dec *d);
void sl__csv_set_positional(sl__csv_dec *d);
void sl__csv_project(sl__csv_dec *d, uint64_t used);
/* Maps the fields of a header line to schema columns by name (exact, then
 * case-insensitive); unknown names are ignored, schema columns without a
 * field are NULL, a repeated name feeds only its first field. Returns the
 * number of schema columns matched (0: the mapping is left positional, so
 * the caller can treat the line as data), or SL_EPARSE (bad quoting). */
int sl__csv_set_header(sl__csv_dec *d, const char *line, size_t len);
/* Decodes one record (no trailing newline; b->n < b->cap) into row b->n and
 * increments b->n. Returns 0, SL__DEC_MORE or SL_EPARSE with the reason in
 * `reason`: "wrong_field_count", "malformed_csv", "parse_error:<col>" or
 * "unknown_value:<col>". */
int sl__csv_decode(const sl__csv_dec *d, const char *line, size_t len,
                   sl_batch *b, char *reason, size_t reason_size);

/* Block decoding: the complete, unquoted records of a buffer at once, in
 * two passes (a structural index of delimiters and newlines, then one
 * conversion loop per column), into rows b->n.. of b. The scratch holds the
 * index; it belongs to the caller (one per thread), the decoder stays
 * immutable. */
typedef struct {
    uint32_t *ends;   /* field ends, rows x nfield, offsets into buf */
    uint32_t *starts; /* line starts, rows + 1 */
    size_t cap;       /* rows the arrays hold */
    int nfield;
} sl__csv_block;

void sl__csv_block_free(sl__csv_block *k);
/* Decodes the lines of buf[0..len) from its start, each ending in '\n'
 * (a '\r' before it is dropped), into at most b->cap - b->n rows, and stops
 * before the first line it does not decode to exactly what sl__csv_decode
 * would: a quote, a wrong field count, an empty line, a value whose
 * conversion fails, or bytes after the last newline. The caller gives that
 * line to sl__csv_decode (which reports it) and may call again after it.
 * Returns the rows appended (one per line consumed); *used is the bytes
 * consumed (whole lines). *failed is set when a conversion failed: work
 * past that line was done and discarded, so a caller that sees it often
 * should decode line by line for a while (bounds the cost of bad input). */
uint32_t sl__csv_decode_block(const sl__csv_dec *d, sl__csv_block *k,
                              const char *buf, size_t len, sl_batch *b,
                              size_t *used, bool *failed);

/* ---- JSON Lines --------------------------------------------------------- */
typedef struct {
    sl__dec_types t;
    uint32_t name_len[SL_MAX_COLS];
    /* Lines of at most SL__JSON_FAST_MAX bytes without a backslash or a
     * control byte go through a structural pass (a bitmap of the line's
     * quotes, SSE2/AVX2) and a parser that jumps from quote to quote; any
     * other line, and any line that pass does not accept as a valid row,
     * goes through the byte-at-a-time parser, which alone writes reasons.
     * `general_only` (tests, fuzzing) skips the structural pass. */
    bool general_only;
    bool avx2; /* the CPU has AVX2 (checked once, at init) */
} sl__json_dec;
#define SL__JSON_FAST_MAX 2048

void sl__json_init(sl__json_dec *d, const sl_schema *s);
void sl__json_close(sl__json_dec *d);
/* Decodes one flat JSON object into row b->n (keys are column names;
 * unknown keys are ignored, absent keys and null are NULL). Returns 0 or
 * SL_EPARSE with the reason: "malformed_json", "nested_value[:<col>]",
 * "parse_error:<col>" or "unknown_value:<col>". */
int sl__json_decode(const sl__json_dec *d, const char *line, size_t len,
                    sl_batch *b, char *reason, size_t reason_size);
/* The structural route alone (sl__json_decode tries it first): true and
 * row b->n appended, or false and nothing appended (the line has escapes,
 * control bytes, is longer than SL__JSON_FAST_MAX or is bad in any way).
 * For tests: whatever it appends equals what the general parser would. */
bool sl__json_decode_fast(const sl__json_dec *d, const char *line, size_t len,
                          sl_batch *b);

/* ---- fixed-width binary records (binrec.c) ------------------------------ */
typedef struct {
    sl__dec_types t;
    uint32_t off[SL_MAX_COLS];   /* byte offset of each column in a record */
    uint32_t width[SL_MAX_COLS]; /* its width in bytes */
    uint32_t size;               /* bytes per record */
    uint32_t copy_lo, copy_hi;   /* bytes of the STRING columns read, copied */
    /* The decode plan (sl__bin_init, sl__bin_project): one step per
     * column, its conversion chosen once instead of per record. */
    struct sl__bin_step {
        uint8_t op, col;
        uint32_t off, width;
    } step[SL_MAX_COLS];
    int nstep;
} sl__bin_dec;

/* `widths`: NULL or "col:bytes,..." for STRING columns (default 16 bytes).
 * Returns 0 or SL_EINVAL with the key and the bad column in err. */
int sl__bin_init(sl__bin_dec *d, const sl_schema *s, const char *widths,
                 char *err, size_t esz);
void sl__bin_close(sl__bin_dec *d);
void sl__bin_project(sl__bin_dec *d, uint64_t used);
/* Decodes the d->size bytes at rec into row b->n (b->n < b->cap). Returns 0
 * or SL_EPARSE with the reason "parse_error:<col>" or "unknown_value:<col>".
 */
int sl__bin_decode(const sl__bin_dec *d, const char *rec, sl_batch *b,
                   char *reason, size_t rsz);
/* Decodes up to nrec consecutive records at buf (at most b->cap - b->n)
 * into rows b->n.., a column at a time, and stops before the first record
 * sl__bin_decode would reject (the caller hands that one to it for the
 * reason). Returns the records appended; they equal sl__bin_decode's. */
uint32_t sl__bin_decode_block(const sl__bin_dec *d, const char *buf, uint32_t nrec,
                              sl_batch *b);
/* Writes n bytes of a record as hex into out (size >= 2n + 1) with the bytes
 * of identifier columns masked as '*'; for dead letters. Returns 2n. */
size_t sl__bin_payload(const sl__bin_dec *d, const char *rec, size_t n,
                       char *out);

/* ---- the file source ---------------------------------------------------- */
extern const sl__source_vt sl__src_file;
extern const sl__conf_def sl__file_source_conf[]; /* for the docs */

/* Position of partition `part` (an index into the instance's parts) as one
 * int64: (k << 40) | byte offset, where k is the index of the current file
 * among the partition's files (always 0 unless follow mode added files) and
 * the offset, in uncompressed bytes, is that of the next unread line. */
#define SL__FILE_POS_SHIFT 40
int sl__file_source_position(void *st, int part, int64_t *offset);
/* Makes the next read of `part` start at a position from
 * sl__file_source_position(). The header is read again and line numbers are
 * recounted; data before the offset is skipped, not decoded. */
int sl__file_source_seek(void *st, int part, int64_t offset);

#endif
