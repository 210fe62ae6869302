/* snap.h — the snapshot writer: where an instance's state sections go.
 * The checkpoint store writes them to files, tests keep them in memory. */
#ifndef SL_SNAP_H
#define SL_SNAP_H

#include "runtime.h"

struct sl__snap_writer {
    int (*put)(struct sl__snap_writer *w, int32_t key_group, const void *data,
               size_t len);
    void *impl;
    /* A checkpoint's directory and the checkpoint root, for state that
     * keeps files of its own there (incremental RocksDB checkpoints), and
     * the operator's id; NULL dir: sections only (savepoints, tests). */
    const char *ck_dir, *ck_root;
    uint32_t op_id;
};

#endif
