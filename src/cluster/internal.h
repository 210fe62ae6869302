/* internal.h — what the cluster runtime's files share (instance.c runs
 * the loop, the transactions and the topics; stage1.c and stage2.c are the
 * two stages). Private to src/cluster. */
#ifndef SL_CLUSTER_INTERNAL_H
#define SL_CLUSTER_INTERNAL_H

#include <librdkafka/rdkafka.h>

#include "cluster/cluster.h"
#include "core/cut.h"
#include "io/kafka.h"

typedef struct clu clu;
typedef struct s1_state s1_state;
typedef struct s2_state s2_state;

/* One stage of an instance: its group consumer, its transactional
 * producer and the epoch (transaction) in progress. */
typedef struct xstage {
    clu *c;
    int idx;                   /* 1 or 2 */
    char group[512], txn_id[512];
    rd_kafka_t *cons, *prod;
    rd_kafka_topic_partition_list_t *owned; /* current assignment, or NULL */
    int64_t *pos;              /* per partition index: next offset, -1 unknown */
    bool txn_open;
    uint64_t epoch_t0;         /* clock when the epoch began */
    uint64_t epoch;            /* epochs begun by this stage (log lines name them) */
    uint64_t commits, aborts;
    bool reset;                /* rewind to the last commit at the next step */
    bool renew;                /* replace the producer at the next abort (zombie) */
    uint64_t assigned_at;      /* clock of the last assignment */
    bool first_commit_logged;
} xstage;

struct clu {
    sl_job *job;
    sl__cut cut;
    const char *bootstrap;
    sl__kafka_src_info src;
    char rep_topic[400], chg_topic[400];
    char iid[200];
    int G;
    sl__ctx ctx;
    _Atomic uint64_t ctr[SL__CTR_N];
    uint64_t published[SL__CTR_N]; /* part of ctr already added to the job's */
    xstage s1, s2;
    s1_state *st1;
    s2_state *st2;
    uint64_t rate_t0;    /* source.rate accounting */
    bool closing;        /* teardown: assignments are not taken any more */
    int fatal;           /* an error that stops the instance (SL_E*) */
    char err[1024];
};

/* instance.c */
int sl__clu_fail(clu *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Opens the stage's transaction if none is open (before producing). */
int sl__clu_begin(xstage *x);
/* Produces a message in the open transaction (waits while the producer's
 * queue is full: back pressure). value NULL = tombstone. */
int sl__clu_produce(xstage *x, const char *topic, int32_t part, const void *key,
                    size_t klen, const void *val, size_t vlen);
int64_t sl__clu_now_ms(void);

/* stage1.c: source partitions -> stateless chain -> repartition topic */
int sl__s1_open(clu *c, char *err, size_t esz);
void sl__s1_close(clu *c);
int sl__s1_assign(clu *c, const rd_kafka_topic_partition_list_t *l);
void sl__s1_revoke(clu *c);
int sl__s1_message(clu *c, const rd_kafka_message_t *m);
int sl__s1_precommit(clu *c); /* flushes rows and watermarks into the txn */
bool sl__s1_has_output(clu *c); /* something to commit even without input */

/* stage2.c: repartition topic -> keyed chain -> sink, changelog */
int sl__s2_open(clu *c, char *err, size_t esz);
void sl__s2_close(clu *c);
int sl__s2_assign(clu *c, const rd_kafka_topic_partition_list_t *l,
                  rd_kafka_topic_partition_list_t *committed);
void sl__s2_revoke(clu *c);
int sl__s2_message(clu *c, const rd_kafka_message_t *m);
int sl__s2_precommit(clu *c); /* sink flush, changelog records */
void sl__s2_committed(clu *c); /* the epoch committed: changelog baseline */
void sl__s2_aborted(clu *c);
/* Whether partition p (key group) has seen the end of every source
 * partition (bounded input), for the offsets' "done" metadata. */
bool sl__s2_part_done(clu *c, int32_t p);
bool sl__s2_has_output(clu *c);

#endif
