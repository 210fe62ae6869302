/* store.h — the checkpoint store as the runtime sees it: snapshot files made
 * of checksummed sections, manifests written atomically, discovery of the
 * newest valid checkpoint and retention. Implemented by the checkpoint
 * layer (src/checkpoint/store.c); declared here so core depends on no other
 * layer. */
#ifndef SL_STORE_H
#define SL_STORE_H

#include "snap.h"

#define SL__CK_FORMAT 1

enum { SL__SEC_SOURCE = 1, SL__SEC_OP = 2, SL__SEC_SINK = 3, SL__SEC_TASK = 4 };

/* ---- snapshot files ------------------------------------------------------ */
typedef struct sl__snapfile sl__snapfile;
/* Creates path; sections follow; close fsyncs and returns size and CRC. */
sl__snapfile *sl__snapfile_create(const char *path, char *err, size_t errsz);
int sl__snapfile_section(sl__snapfile *f, int kind, uint32_t id, int32_t kg,
                         const void *data, size_t len);
/* A writer that adds sections of the given kind and id to f. */
void sl__snapfile_writer(sl__snapfile *f, int kind, uint32_t id,
                         sl__snap_writer *w);
int sl__snapfile_close(sl__snapfile *f, uint64_t *size, uint32_t *crc,
                       char *err, size_t errsz);
void sl__snapfile_abort(sl__snapfile *f); /* closes and deletes */

typedef int (*sl__section_fn)(void *ud, int kind, uint32_t id, int32_t kg,
                              const void *data, size_t len);
/* Reads every section of a snapshot file, checking each checksum. */
int sl__snapfile_read(const char *path, sl__section_fn fn, void *ud,
                      char *err, size_t errsz);

/* ---- manifests ----------------------------------------------------------- */
typedef struct {
    char name[64];
    int stage, task;
    uint64_t size;
    uint32_t crc;
} sl__ck_file;

typedef struct {
    uint32_t id, version;
    char name[32];
    char fingerprint[512];
} sl__ck_op;

typedef struct {
    uint64_t epoch;
    bool savepoint;
    int64_t created_ms; /* wall clock, informational */
    int key_groups;
    int nfiles;
    sl__ck_file *files;
    int nops;
    sl__ck_op *ops;
    uint64_t counters[16];
    int ncounters;
} sl__manifest;

void sl__manifest_free(sl__manifest *m);
/* Writes dir/MANIFEST atomically (temp file, fsync, rename, fsync dir). */
int sl__manifest_write(const char *dir, const sl__manifest *m, char *err,
                       size_t errsz);
/* Reads and checks dir/MANIFEST and, with verify_files, each listed file's
 * size and checksum. */
int sl__manifest_read(const char *dir, sl__manifest *m, bool verify_files,
                      char *err, size_t errsz);

/* ---- the checkpoint directory ------------------------------------------- */
/* Finds the newest complete, valid checkpoint (chk-N or sp-N) under root;
 * corrupt or partial ones are reported through warn and skipped. Returns 1
 * with *m and dir_out filled, 0 if there is none, or a negative SL_E*. */
int sl__ck_find_latest(const char *root, sl__manifest *m, char *dir_out,
                       size_t dir_size, void (*warn)(void *, const char *),
                       void *ud, char *err, size_t errsz);
/* Deletes chk-N directories beyond the newest `keep` complete ones, and
 * every incomplete chk-N (no MANIFEST). Savepoints (sp-N) are kept. */
int sl__ck_retain(const char *root, int keep, uint64_t keep_epoch);
/* Highest N among chk-N/sp-N under root (complete or not), 0 if none. */
uint64_t sl__ck_max_epoch(const char *root);
int sl__rmtree(const char *path);

/* ---- incremental RocksDB checkpoints (src/checkpoint/incr.c) ------------- */
/* An SST file a restored instance inherited, and its name in shared/. */
typedef struct {
    char name[64];
    char shared[160];
} sl__ck_inherit;
/* Moves RocksDB checkpoint `cut` into rdb (<root>/chk-N/rdb-X, created):
 * SST files to <root>/shared/ as "<id>-<name>" (or their inherited name),
 * linked or copied unless already there; other files copied into rdb;
 * rdb/FILES lists them. Returns the bytes written (new) and referenced
 * (total), and FILES' CRC-32. */
int sl__ck_incr_put(const char *cut, const char *root, const char *rdb,
                    const char *id, const sl__ck_inherit *inh, size_t ninh,
                    uint64_t *new_bytes, uint64_t *total_bytes,
                    uint32_t *files_crc, char *err, size_t errsz);
/* Rebuilds in dest the RocksDB files rdb lists (FILES checked against
 * files_crc, each file against its size): SST files linked from shared/
 * (copied across file systems), the others copied. *inh (malloc'd, may be
 * NULL) lists the SST files and their shared names. */
int sl__ck_incr_rebuild(const char *rdb, uint32_t files_crc, const char *dest,
                        sl__ck_inherit **inh, size_t *ninh, char *err,
                        size_t errsz);
/* Deletes every file of <root>/shared/ that no chk-N or sp-N directory
 * under root lists; returns how many. */
int sl__ck_incr_gc(const char *root);
/* New and referenced bytes of checkpoint directory ck's RocksDB parts. */
void sl__ck_incr_sizes(const char *ck, uint64_t *new_bytes, uint64_t *total);
/* Files of <root>/shared/ written by other state than RocksDB (the
 * changelog chains of in-memory window state, winchg.c). publish renames
 * <root>/shared/<name>.tmp, already written and fsynced, to <name> and
 * fsyncs the folder; list writes rdb/FILES (rdb = <root>/chk-N/rdb-X,
 * created) naming the shared files n[0..k) with their sizes, fresh[i]
 * when written for this checkpoint, so retention (sl__ck_incr_gc) and the
 * sizes above count them like SST files; returns FILES' CRC-32 in *crc. */
typedef struct {
    char name[160];
    uint64_t size;
    bool fresh;
} sl__ck_shared;
int sl__ck_shared_publish(const char *root, const char *name, char *err, size_t errsz);
int sl__ck_shared_list(const char *rdb, const sl__ck_shared *f, size_t n, uint32_t *crc,
                       char *err, size_t errsz);
/* A shared file written outside a checkpoint (a chain's compaction) is
 * held from sl__ck_incr_gc, as <name> and <name>.tmp, until released: once
 * a checkpoint lists it, or after it is deleted. Process-wide. */
void sl__ck_shared_hold(const char *name);
void sl__ck_shared_release(const char *name);

#endif
