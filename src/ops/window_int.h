/* window_int.h — the window operator's private types, shared by window.c
 * (the operator) and winquery.c (queryable state over its open windows).
 * Nothing outside src/ops/window*.c may include it. */
#ifndef SL_OPS_WINDOW_INT_H
#define SL_OPS_WINDOW_INT_H

#include <pthread.h>

#include "agg.h"

#define LATE_SLOTS 64 /* late-record counters kept per window end */

typedef struct {
    int64_t size, slide, lateness; /* slide 0 = tumbling */
    char *time_col;
    char **keys; /* nkey names */
    int nkey;
    sl_agg_spec *aggs; /* deep copies: col, as and bounds are owned */
    size_t naggs;
    int npart;       /* keys[0..npart) are the stream's key, the rest extra
                      * grouping columns (sl_stream_window_fold) */
    sl__fold *fold;  /* owned; NULL = emit every group */
    bool has_min;    /* drop groups whose aggs[min_agg] < min_count */
    size_t min_agg;
    int64_t min_count;
} win_conf;

typedef struct {
    int64_t start, end, fire; /* fire = end + lateness, saturated */
    sl__bmap groups;          /* encoded key -> aggregate states */
} win;

typedef struct {
    int64_t end;
    uint64_t n;
} late_slot;

typedef struct {
    const win_conf *conf;
    const sl_schema *in, *out;
    sl__ctx *ctx;
    uint32_t batch_cap;
    int time_col;
    int nkey, npart; /* grouping columns, of which the partitioning key */
    int key_cols[SL_MAX_COLS];
    sl__agg *aggs;
    size_t naggs;
    uint32_t state_size; /* aggregate states; the key group follows */
    uint32_t grp_size;   /* bytes of a group: states + key group, padded */
    bool heap; /* some aggregate state owns memory */
    sl__wkey kl;  /* the key columns, for winkey.c */
    int64_t size, step, lateness; /* step = slide, or size when tumbling */
    uint32_t nwin;                /* windows per record */
    int64_t wm;
    int key_groups;     /* G of the job; <= 1: every group is in group 0 */
    uint64_t fp;        /* fingerprint of the definition, in snapshots */
    bool started;       /* a batch or watermark arrived: no more restores */
    bool wm_restored;   /* wm comes from a restored section */

    pthread_mutex_t qlock; /* held by every call that changes the state, so
                            * queryable state reads a consistent one */
    bool qreg;             /* registered for queries */

    win **wins; /* open windows, invariant 1 */
    size_t nw, capw;
    win *last; /* the window found last: rows of a batch cluster */

    /* per-batch scratch, grown on demand and reused */
    uint8_t *kbuf;
    size_t kcap;
    uint32_t *koff, *klen, *live;
    uint64_t *kh;
    int64_t *latest; /* start of each live row's latest window */
    size_t rcap;
    uint32_t *prow, *pkey;
    win **pwin;
    uint8_t **pgrp;
    size_t pcap;
    char *tmp;
    size_t tmpcap;

    late_slot late[LATE_SLOTS];
    int nlate;
    uint64_t ngroups;   /* groups in open windows (window.max.groups) */
    int64_t max_groups; /* 0 = no cap */
    sl__window_stats st;
} win_op;

/* The current value of every open window for one key (sl__qs_fn), read
 * under op->qlock (winquery.c). */
int sl__window_query(void *st, const char *const *vals, int nvals, bool kanon,
                     sl__qs_answer *ans, char *err, size_t errsz);

#endif
