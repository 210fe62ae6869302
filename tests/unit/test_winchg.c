/* test_winchg.c — incremental (changelog) checkpoints of the window
 * operator's in-memory state (src/ops/winchg.c), driven through the
 * operator's vtable as the runtime drives it (snapshot_async at the
 * barrier, the deferred write afterwards): the first checkpoint is a full
 * materialisation in <root>/shared; after a small change the next one is a
 * delta holding only that change (bytes bound asserted); the chain
 * full + deltas restores into the memory backend, into RocksDB and into
 * two tasks of another parallelism, each of which then gives exactly the
 * rows of an uninterrupted run and of a restore of a full snapshot taken at
 * the same barrier; when the deltas outgrow the full one, a new full one is
 * taken and retention leaves in shared/ exactly the files the retained
 * checkpoint lists. The input is random with the seed from the commit. */
#include "winfix.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/snap.h"
#include "core/store.h"
#include "ops/window_int.h"

sl__snap_writer *sl__snap_writer_mem(void);
int sl__snap_writer_mem_next(sl__snap_writer *w, size_t *i, int32_t *kg,
                             const void **data, size_t *len);
void sl__snap_writer_free(sl__snap_writer *w);
int sl__group_task(int g, int groups, int ntasks);

#define KEYS 2000

/* n records of keys [0, nkeys), values [0, nvals), times within the first
 * window. */
static void feed_random(wop **ws, int nw, size_t n, uint64_t nkeys, uint64_t nvals)
{
    for (size_t done = 0; done < n;) {
        uint32_t m = n - done < 1024 ? (uint32_t)(n - done) : 1024;
        int64_t ts[1024], u[1024];
        char k[1024][16];
        for (uint32_t i = 0; i < m; i++) {
            uint64_t x = rnd();
            ts[i] = (int64_t)(x % 900000);
            snprintf(k[i], sizeof k[i], "key%06" PRIu64, (x >> 20) % nkeys);
            u[i] = (int64_t)(rnd() % nvals);
        }
        for (int w = 0; w < nw; w++) {
            /* a task of several gets the rows of its key groups only, as
             * the exchange routes them */
            sl_batch *all = sl__batch_new(ws[w]->in, m);
            for (uint32_t i = 0; i < m; i++) {
                sl_batch_set_str(all, C_K, i, k[i], strlen(k[i]));
                all->cols[C_K].valid[i] = 1;
            }
            all->n = m;
            sl_batch *b = sl__batch_new(ws[w]->in, m);
            uint32_t o = 0;
            for (uint32_t i = 0; i < m; i++) {
                int nt = ws[w]->ctx.ntasks;
                if (nt > 1 && sl__group_task(sl__key_group(all, ws[w]->key_cols, 1, i, G), G,
                                             nt) != ws[w]->ctx.task)
                    continue;
                ((int64_t *)b->cols[C_TS].data)[o] = ts[i];
                b->cols[C_TS].valid[o] = 1;
                sl_batch_set_str(b, C_K, o, k[i], strlen(k[i]));
                b->cols[C_K].valid[o] = 1;
                ((int64_t *)b->cols[C_U].data)[o] = u[i];
                b->cols[C_U].valid[o] = 1;
                b->kind[o] = SL_KIND_DATA;
                o++;
            }
            sl__batch_free(all);
            b->n = o;
            assert_int_equal(sl__window_vt.batch(ws[w]->st, b, &ws[w]->sink.out), 0);
        }
        done += m;
    }
}

static char root[300];

/* Checkpoint n of the window into <root>/chk-n as the runtime takes it:
 * snapshot_async at the barrier, then the deferred write; the sections are
 * kept in memory. *new_bytes and *total: what chk-n's FILES list. */
static sl__snap_writer *checkpoint(wop *w, int n, uint64_t *new_bytes, uint64_t *total)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/chk-%d", root, n);
    assert_int_equal(sl__mkdirs(dir), 0);
    sl__snap_deferred d = {.ck_dir = dir, .ck_root = root, .op_id = 7};
    assert_int_equal(sl__window_vt.snapshot_async(w->st, &d), 0);
    sl__snap_writer *sw = sl__snap_writer_mem();
    assert_int_equal(d.write(d.ud, sw), 0);
    sl__ck_incr_sizes(dir, new_bytes, total);
    char mf[500];
    snprintf(mf, sizeof mf, "%s/MANIFEST", dir); /* complete, for retention */
    FILE *f = fopen(mf, "w");
    assert_non_null(f);
    fclose(f);
    printf("  checkpoint %d: %" PRIu64 " new bytes of %" PRIu64 " referenced\n", n,
           *new_bytes, *total);
    return sw;
}

/* Restores sw's sections into the tasks ws[0..nt) of a stage of nt tasks,
 * as ckpt.c's restore_section routes them (writer task 0). */
static void restore(wop **ws, int nt, sl__snap_writer *sw)
{
    size_t it = 0, keyed = 0;
    int32_t kg;
    const void *data;
    size_t len;
    while (sl__snap_writer_mem_next(sw, &it, &kg, &data, &len)) {
        keyed += kg >= 0;
        int t = kg >= 0 ? sl__group_task(kg, G, nt) : 0;
        assert_int_equal(sl__window_vt.restore(ws[t]->st, kg, data, len), 0);
    }
    assert_true(keyed > 0);
}

static int count_shared(const char *suffix)
{
    char p[400];
    snprintf(p, sizeof p, "%s/shared", root);
    DIR *d = opendir(p);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        n += l > 3 && strcmp(e->d_name + l - 3, suffix) == 0;
    }
    closedir(d);
    return n;
}

/* Whether chk-n's chain begins with a full materialisation new in chk-n
 * (FILES: "sst NAME SHARED SIZE NEW" lines, the chain's first file first). */
static bool listed_new_full(int n)
{
    char cmd[800];
    snprintf(cmd, sizeof cmd,
             "awk '$1==\"sst\"{print $2, $5; exit}' %s/chk-%d/rdb-*/FILES | grep -q '\\.wf 1$'",
             root, n);
    return system(cmd) == 0;
}

static void fire_all(wop *w)
{
    int rc;
    while ((rc = sl__window_vt.watermark(w->st, SL_TS_MAX, &w->sink.out)) == SL__MORE) {
    }
    assert_int_equal(rc, 0);
}

static void deltas_restore_exactly(void **state)
{
    (void)state;
    rng = tu_seed("deltas_restore_exactly") * 2654435761u + 1;
    char base[] = "/tmp/sluice-test-winchg-XXXXXX";
    assert_non_null(mkdtemp(base));
    snprintf(root, sizeof root, "%s/ck", base);
    static sl__state_conf ms, rs;
    ms = (sl__state_conf){.backend = SL__STATE_MEMORY, .incremental = true};
    rs = (sl__state_conf){.backend = SL__STATE_ROCKSDB, .memory_bound = 16 << 20,
                          .incremental = false};
    snprintf(rs.dir, sizeof rs.dir, "%s/rocksdb", base);

    wop a, ref;
    wop_open(&a, &ms, 0, 1);
    wop_open(&ref, NULL, 0, 1);
    wop *both[] = {&a, &ref};
    feed_random(both, 2, 200000, KEYS, 1000000); /* 2 k groups of ~100 values */
    uint64_t nb1, tb1, nb2, tb2, nb3, tb3;
    sl__snap_writer *s1 = checkpoint(&a, 1, &nb1, &tb1);
    assert_int_equal(nb1, tb1); /* the first one is a full materialisation */
    assert_true(tb1 > (1u << 20));
    assert_int_equal(count_shared(".wf"), 1);

    /* one record with a new value: the delta holds one group, one value */
    feed_random(both, 2, 1, KEYS, 1000000);
    sl__snap_writer *s2 = checkpoint(&a, 2, &nb2, &tb2);
    assert_int_equal(count_shared(".wd"), 1);
    assert_true(nb2 > 0);
    assert_true(nb2 < 400); /* headers, one key, three states, one value */
    assert_int_equal(tb2, tb1 + nb2);

    /* 300 records: ~300 values and groups */
    feed_random(both, 2, 300, KEYS, 1000000);
    sl__snap_writer *s3 = checkpoint(&a, 3, &nb3, &tb3);
    assert_true(nb3 < 300 * 80 + 400);
    assert_true(nb3 * 50 < tb3);

    /* a full snapshot at the same barrier, the reference for restores */
    sl__snap_writer *sfull = sl__snap_writer_mem();
    assert_int_equal(sl__window_vt.snapshot(a.st, sfull), 0);

    wop mem, rocks, p0, p1, fullr;
    wop_open(&mem, NULL, 0, 1);
    wop_open(&rocks, &rs, 0, 1);
    wop_open(&p0, NULL, 0, 2);
    wop_open(&p1, NULL, 1, 2);
    wop_open(&fullr, NULL, 0, 1);
    wop *m1[] = {&mem}, *r1[] = {&rocks}, *pp[] = {&p0, &p1}, *f1[] = {&fullr};
    restore(m1, 1, s3);
    restore(r1, 1, s3);
    restore(pp, 2, s3);
    restore(f1, 1, sfull);
    /* the restored state is the full snapshot's (set order aside: rows) */
    sl__snap_writer *again = sl__snap_writer_mem();
    assert_int_equal(sl__window_vt.snapshot(mem.st, again), 0);
    size_t i1 = 0, i2 = 0, l1, l2;
    int32_t k1, k2;
    const void *d1, *d2;
    int nsec = 0;
    while (sl__snap_writer_mem_next(sfull, &i1, &k1, &d1, &l1)) {
        assert_true(sl__snap_writer_mem_next(again, &i2, &k2, &d2, &l2));
        assert_int_equal(k1, k2);
        assert_int_equal(l1, l2); /* same groups, same sizes */
        nsec++;
    }
    assert_false(sl__snap_writer_mem_next(again, &i2, &k2, &d2, &l2));
    assert_true(nsec > 2);
    sl__snap_writer_free(again);

    wop *all[] = {&a, &ref, &mem, &rocks, &p0, &p1, &fullr};
    feed_random(all, 7, 5000, KEYS + 100, 1000000);
    for (int i = 0; i < 7; i++) fire_all(all[i]);
    const tu_sink *sa[] = {&a.sink}, *sm[] = {&mem.sink}, *sr[] = {&rocks.sink},
                  *sp[] = {&p0.sink, &p1.sink}, *sf[] = {&fullr.sink};
    assert_same_rows(&ref.sink, sa, 1, "the checkpointed run");
    assert_same_rows(&ref.sink, sm, 1, "full + 2 deltas restored into memory");
    assert_same_rows(&ref.sink, sr, 1, "full + 2 deltas restored into RocksDB");
    assert_same_rows(&ref.sink, sp, 2, "full + 2 deltas restored into 2 tasks");
    assert_same_rows(&ref.sink, sf, 1, "the full snapshot restored");
    for (int i = 0; i < 7; i++) wop_close(all[i]);
    sl__snap_writer_free(s1);
    sl__snap_writer_free(s2);
    sl__snap_writer_free(s3);
    sl__snap_writer_free(sfull);
    sl__rmtree(base);
}

static void materialisation_and_retention(void **state)
{
    (void)state;
    rng = tu_seed("materialisation_and_retention") * 2654435761u + 7;
    char base[] = "/tmp/sluice-test-winchg-XXXXXX";
    assert_non_null(mkdtemp(base));
    snprintf(root, sizeof root, "%s/ck", base);
    static sl__state_conf ms;
    ms = (sl__state_conf){.backend = SL__STATE_MEMORY, .incremental = true};
    wop a, ref;
    wop_open(&a, &ms, 0, 1);
    wop_open(&ref, NULL, 0, 1);
    wop *both[] = {&a, &ref};
    feed_random(both, 2, 20000, KEYS, 1000000);
    uint64_t nb, tb, full_bytes = 0;
    sl__snap_writer *sw[40] = {0};
    int n = 0, fulls = 0;
    /* deltas of ~1/4 of the first state each: once they reach its size a
     * compaction folds the chain, and a later checkpoint lists its file */
    for (n = 1; n < 40; n++) {
        sw[n] = checkpoint(&a, n, &nb, &tb);
        if (n == 1) full_bytes = nb;
        fulls += listed_new_full(n);
        if (fulls == 2) break;
        feed_random(both, 2, 5000, KEYS, 1000000);
        usleep(20000); /* the compaction's thread runs meanwhile */
    }
    assert_true(full_bytes > 0);
    assert_int_equal(fulls, 2); /* the first one and a compacted one */
    /* a restore of the newest gives the uninterrupted run's rows */
    wop r;
    wop_open(&r, NULL, 0, 1);
    wop *r1[] = {&r};
    restore(r1, 1, sw[n]);
    wop *all[] = {&a, &ref, &r};
    feed_random(all, 3, 3000, KEYS, 1000000);
    for (int i = 0; i < 3; i++) fire_all(all[i]);
    const tu_sink *sr[] = {&r.sink}, *sa[] = {&a.sink};
    assert_same_rows(&ref.sink, sa, 1, "the checkpointed run");
    assert_same_rows(&ref.sink, sr, 1, "restored after a second materialisation");
    /* retention of the newest only: shared/ holds exactly what it lists,
     * and the chain before its full materialisation is gone */
    for (int i = 0; i < 3; i++) wop_close(all[i]); /* a compaction running is dropped */
    sl__ck_retain(root, 1, (uint64_t)n);
    assert_shared_is_listed_in(root);
    assert_int_equal(count_shared(".wf"), 1);
    for (int i = 1; i <= n; i++) sl__snap_writer_free(sw[i]);
    sl__rmtree(base);
}

/* When the deltas outgrow the full materialisation, a compaction folds the
 * chain into a new one on a thread of its own, from the files, and a later
 * checkpoint's chain begins with it: at no barrier after the first does the
 * task keep a copy-on-write snapshot, and each checkpoint, the one that
 * takes the compacted file on included, restores to the rows of a
 * synchronous snapshot at its barrier. A compaction that fails
 * (SLUICE_FAULT=compact) changes nothing: the chain goes on and a later
 * compaction is taken on. Closing drops a compaction still running, and
 * retention then leaves exactly what the retained checkpoint lists. */
static void compaction_case(int64_t ttl_ms)
{
    rng = tu_seed("compaction_off_the_task") * 2654435761u + 11 + (uint64_t)ttl_ms;
    char base[] = "/tmp/sluice-test-winchg-XXXXXX";
    assert_non_null(mkdtemp(base));
    snprintf(root, sizeof root, "%s/ck", base);
    static sl__state_conf ms;
    ms = (sl__state_conf){.backend = SL__STATE_MEMORY, .incremental = true, .ttl_ms = ttl_ms};
    wop a, ref;
    wop_open(&a, &ms, 0, 1);
    wop_open(&ref, NULL, 0, 1);
    wop *both[] = {&a, &ref};
    feed_random(both, 2, 20000, KEYS, 1000000);
    uint64_t nb, tb;
    sl__snap_writer *first = checkpoint(&a, 1, &nb, &tb);
    sl__snap_writer_free(first);
    int adopted = 0, n;
    /* each checkpoint's sections and a synchronous snapshot at its barrier:
     * the first adoption's, and the last before the second */
    sl__snap_writer *cur = NULL, *cur_sync = NULL, *comp = NULL, *comp_sync = NULL;
    for (n = 2; n <= 60 && adopted < 2; n++) {
        feed_random(both, 2, 5000, KEYS, 1000000);
        usleep(20000); /* the compaction's thread runs meanwhile */
        char dir[400];
        snprintf(dir, sizeof dir, "%s/chk-%d", root, n);
        assert_int_equal(sl__mkdirs(dir), 0);
        sl__snap_deferred d = {.ck_dir = dir, .ck_root = root, .op_id = 7};
        assert_int_equal(sl__window_vt.snapshot_async(a.st, &d), 0);
        assert_null(((win_op *)a.st)->asnap); /* no copy-on-write snapshot */
        sl__snap_writer *sync = sl__snap_writer_mem();
        assert_int_equal(sl__window_vt.snapshot(a.st, sync), 0);
        feed_random(both, 2, 1000, KEYS, 1000000); /* the task goes on */
        sl__snap_writer *sw = sl__snap_writer_mem();
        assert_int_equal(d.write(d.ud, sw), 0);
        sl__ck_incr_sizes(dir, &nb, &tb);
        char mf[500];
        snprintf(mf, sizeof mf, "%s/MANIFEST", dir);
        FILE *f = fopen(mf, "w");
        assert_non_null(f);
        fclose(f);
        bool took = listed_new_full(n);
        printf("  checkpoint %d: %s, %" PRIu64 " new bytes of %" PRIu64 "\n", n,
               took ? "the chain begins with a compacted full file" : "delta", nb, tb);
        if (took && ++adopted == 1) {
            comp = sw;
            comp_sync = sync;
            setenv("SLUICE_FAULT", "compact", 1); /* the next one fails */
            continue;
        }
        if (adopted == 2) {
            sl__snap_writer_free(sw);
            sl__snap_writer_free(sync);
            break;
        }
        if (cur) sl__snap_writer_free(cur);
        if (cur_sync) sl__snap_writer_free(cur_sync);
        cur = sw;
        cur_sync = sync;
    }
    unsetenv("SLUICE_FAULT");
    assert_int_equal(adopted, 2);
    assert_non_null(cur); /* a checkpoint between the two: the failed one's time */
    static sl__state_conf rconf; /* the same definition (TTL), restored into memory */
    rconf = (sl__state_conf){.backend = SL__STATE_MEMORY, .ttl_ms = ttl_ms};
    wop r, q, rc, qc;
    wop_open(&r, &rconf, 0, 1);
    wop_open(&q, &rconf, 0, 1);
    wop_open(&rc, &rconf, 0, 1);
    wop_open(&qc, &rconf, 0, 1);
    wop *r1[] = {&r}, *q1[] = {&q}, *rc1[] = {&rc}, *qc1[] = {&qc};
    restore(r1, 1, cur);
    restore(q1, 1, cur_sync);
    restore(rc1, 1, comp);
    restore(qc1, 1, comp_sync);
    sl__snap_writer *done[] = {cur, cur_sync, comp, comp_sync};
    for (int i = 0; i < 4; i++) sl__snap_writer_free(done[i]);
    wop *all[] = {&a, &ref, &r, &q, &rc, &qc};
    for (int i = 0; i < 6; i++) fire_all(all[i]);
    const tu_sink *sa[] = {&a.sink}, *sr[] = {&r.sink}, *src[] = {&rc.sink};
    assert_same_rows(&ref.sink, sa, 1, "the checkpointed run");
    assert_same_rows(&qc.sink, src, 1, "the chain that took a compacted file on, restored");
    assert_same_rows(&q.sink, sr, 1, "a chain while a compaction failed, restored");
    for (int i = 0; i < 6; i++) wop_close(all[i]);
    sl__ck_retain(root, 1, (uint64_t)n);
    assert_shared_is_listed_in(root);
    sl__rmtree(base);
}

static void compaction_off_the_task(void **state)
{
    (void)state;
    compaction_case(0);
}

/* The same with state.ttl.ms (groups carry their newest time; none
 * expires within the test's hour): the compacted groups keep it. */
static void compaction_with_ttl(void **state)
{
    (void)state;
    compaction_case(3600 * 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(deltas_restore_exactly),
        cmocka_unit_test(materialisation_and_retention),
        cmocka_unit_test(compaction_off_the_task),
        cmocka_unit_test(compaction_with_ttl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
