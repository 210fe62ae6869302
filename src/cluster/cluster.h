/* cluster.h — the distributed mode's narrow header (src/cluster): the
 * repartition record encoding (xcodec.c), the stage-2 watermark map
 * (wmmap.c) and the instance runtime (instance.c, stage1.c, stage2.c).
 *
 * Ownership: encoders append to a caller-owned sl__buf; decoders fill a
 * caller-owned batch, copying strings into its arena. */
#ifndef SL_CLUSTER_H
#define SL_CLUSTER_H

#include "core/runtime.h"

/* ---- repartition records (xcodec.c) ---------------------------------------
 * A message of the repartition topic is either rows or watermarks:
 *   u8 'X', u8 version (1), u8 type
 *   type 1 (rows): u32 schema fingerprint, u32 n, n x u8 kind, then per
 *     column n validity bytes and the n values: INT64/TIMESTAMP as zigzag
 *     varints, FLOAT64 as 8 bytes little-endian, BOOL as 1 byte, STRING as
 *     varint length + bytes (NULL values take no value bytes);
 *   type 2 (watermarks): u32 n, n x (u32 source partition, i64 watermark).
 * Values are what stage 1 produced: pseudonymised, never raw identifiers. */
enum { SL__X_ROWS = 1, SL__X_WM = 2 };
/* A fingerprint of a schema's column names and types. */
uint32_t sl__x_fingerprint(const sl_schema *s);
/* Appends rows[0..n) of b (rows NULL: all) as one rows message. */
void sl__x_encode_rows(sl__buf *out, const sl_batch *b, const uint32_t *rows, uint32_t n);
/* Appends a watermarks message for parts[i] -> wms[i]. */
void sl__x_encode_wm(sl__buf *out, const uint32_t *parts, const int64_t *wms, uint32_t n);
/* The type of a message (SL__X_ROWS, SL__X_WM) or -1 if it is not one. */
int sl__x_type(const void *p, size_t len);
/* Decodes a rows message into a new batch of schema s (*out, freed by the
 * caller). Returns 0, SL_ECORRUPT (bad bytes) or SL_ESTATE (another schema:
 * a different job or version wrote the topic). */
int sl__x_decode_rows(const void *p, size_t len, const sl_schema *s, sl_batch **out);
/* Decodes a watermarks message: calls fn(arg, part, wm) for each entry.
 * Returns 0 or SL_ECORRUPT. */
int sl__x_decode_wm(const void *p, size_t len, void (*fn)(void *, uint32_t, int64_t),
                    void *arg);

/* ---- watermark map (wmmap.c) ----------------------------------------------
 * What one repartition partition (key group) learnt of the source
 * partitions' watermarks: the highest seen per source partition (stage-1
 * instances may repeat a lower one after a takeover; it is ignored). The
 * partition's watermark is the minimum over all source partitions. */
typedef struct {
    int nsrc;
    int64_t *wm; /* per source partition, SL_TS_MIN until heard of */
} sl__wmmap;
void sl__wmmap_init(sl__wmmap *m, int nsrc);
void sl__wmmap_close(sl__wmmap *m);
/* Returns true when the map changed (wm above what it held). Source
 * partitions outside [0, nsrc) are ignored (false). */
bool sl__wmmap_update(sl__wmmap *m, uint32_t src, int64_t wm);
int64_t sl__wmmap_min(const sl__wmmap *m);
/* Serialised as u32 nsrc + nsrc x i64 (the changelog's "wm" record). */
void sl__wmmap_encode(const sl__wmmap *m, sl__buf *out);
/* Merges a serialised map (max per entry). SL_ECORRUPT on bad bytes or a
 * different number of source partitions (the source topics changed). */
int sl__wmmap_decode(sl__wmmap *m, const void *p, size_t len);

#endif
