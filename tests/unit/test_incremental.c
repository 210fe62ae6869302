/* test_incremental.c — incremental RocksDB checkpoints of window state
 * (winstore.c, src/checkpoint/incr.c), driven through the window operator's
 * vtable: a per-key window holding several MB in RocksDB is checkpointed,
 * a small part of it changes, and the next checkpoint's new bytes must be
 * a small fraction of what it references; that checkpoint restores (1)
 * into the same task on RocksDB (the checkpoint's files opened as its
 * instance), (2) into the memory backend and (3) into another task on
 * RocksDB (key groups read out of it), each of which then must give
 * exactly the rows of an uninterrupted run on the memory backend (the
 * change since the compacted state is written blind: merge operands that
 * every restore path must fold into the stored groups); and
 * retention leaves in shared/ exactly the files the retained checkpoint
 * lists. The input is random with the seed from the commit. */
#include "winfix.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/snap.h"
#include "core/store.h"

sl__snap_writer *sl__snap_writer_mem(void);
int sl__snap_writer_mem_next(sl__snap_writer *w, size_t *i, int32_t *kg,
                             const void **data, size_t *len);
void sl__snap_writer_free(sl__snap_writer *w);

#define KEYS 60000

/* n records of keys [0, nkeys), times within the first window. */
static void feed_random(wop **ws, int nw, size_t n, uint64_t nkeys)
{
    for (size_t done = 0; done < n;) {
        uint32_t m = n - done < 1024 ? (uint32_t)(n - done) : 1024;
        int64_t ts[1024], u[1024];
        char k[1024][16];
        for (uint32_t i = 0; i < m; i++) {
            uint64_t x = rnd();
            ts[i] = (int64_t)(x % 900000);
            snprintf(k[i], sizeof k[i], "key%06" PRIu64, (x >> 20) % nkeys);
            u[i] = (int64_t)((x >> 40) % 50);
        }
        for (int w = 0; w < nw; w++) {
            sl_batch *b = sl__batch_new(ws[w]->in, m);
            for (uint32_t i = 0; i < m; i++) {
                ((int64_t *)b->cols[C_TS].data)[i] = ts[i];
                b->cols[C_TS].valid[i] = 1;
                sl_batch_set_str(b, C_K, i, k[i], strlen(k[i]));
                b->cols[C_K].valid[i] = 1;
                ((int64_t *)b->cols[C_U].data)[i] = u[i];
                b->cols[C_U].valid[i] = 1;
                b->kind[i] = SL_KIND_DATA;
            }
            b->n = m;
            assert_int_equal(sl__window_vt.batch(ws[w]->st, b, &ws[w]->sink.out), 0);
        }
        done += m;
    }
}

static void assert_same_output(const tu_sink *want, const tu_sink *got, const char *what)
{
    const tu_sink *g[] = {got};
    assert_same_rows(want, g, 1, what);
}

static char root[300];

/* Checkpoint n of the window into <root>/chk-n: the sections (kept in
 * memory) and the RocksDB files; returns the writer. */
static sl__snap_writer *checkpoint(wop *w, int n, uint64_t *new_bytes, uint64_t *total)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/chk-%d", root, n);
    assert_int_equal(sl__mkdirs(dir), 0);
    sl__snap_writer *sw = sl__snap_writer_mem();
    sw->ck_dir = dir;
    sw->ck_root = root;
    sw->op_id = 1;
    assert_int_equal(sl__window_vt.snapshot(w->st, sw), 0);
    sw->ck_dir = sw->ck_root = NULL; /* dir is on this stack */
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

static void restore(wop *w, sl__snap_writer *sw)
{
    size_t it = 0, refs = 0;
    int32_t kg;
    const void *data;
    size_t len;
    while (sl__snap_writer_mem_next(sw, &it, &kg, &data, &len)) {
        refs += kg >= 0;
        assert_int_equal(sl__window_vt.restore(w->st, kg, data, len), 0);
    }
    assert_true(refs > 0);
}

static void incremental_sizes_and_restores(void **state)
{
    (void)state;
    rng = tu_seed("incremental_sizes_and_restores") * 2654435761u + 1;
    char base[] = "/tmp/sluice-test-incr-XXXXXX";
    assert_non_null(mkdtemp(base));
    snprintf(root, sizeof root, "%s/ck", base);
    static sl__state_conf rs, rs2, rs3;
    rs = (sl__state_conf){.backend = SL__STATE_ROCKSDB, .memory_bound = 16 << 20,
                          .incremental = true};
    snprintf(rs.dir, sizeof rs.dir, "%s/rocksdb", base);
    rs2 = rs3 = rs;

    wop a, ref;
    wop_open(&a, &rs, 0, 4);
    wop_open(&ref, NULL, 0, 4);
    wop *both[] = {&a, &ref};
    feed_random(both, 2, 240000, KEYS); /* ~60 k groups of ~4 distinct each */
    uint64_t nb1, tb1, nb2, tb2, nb3, tb3;
    sl__snap_writer *s1 = checkpoint(&a, 1, &nb1, &tb1);
    assert_int_equal(nb1, tb1); /* the first one copies everything */
    assert_true(tb1 > (2u << 20));
    /* one sorted run, so that the next flush cannot trigger a compaction
     * that rewrites the state (which RocksDB may do at any time) */
    assert_int_equal(sl__window_store_compact(a.st), 0);
    sl__snap_writer *s2 = checkpoint(&a, 2, &nb2, &tb2);
    /* ~0.5 % of the groups change: the window spilled, so the groups new
     * to the cache are not read back but written blind, as merge operands
     * folded into their stored values; checkpoint 3 holds them unmerged */
    uint64_t blind = sl__window_store_blind_writes(a.st);
    feed_random(both, 2, 300, KEYS);
    sl__snap_writer *s3 = checkpoint(&a, 3, &nb3, &tb3);
    assert_true(sl__window_store_blind_writes(a.st) > blind + 200);
    assert_true(tb3 > (2u << 20));
    assert_true(nb3 * 50 < tb3); /* under 2 % of the state */
    assert_true(nb3 > 0);

    /* retention keeps chk-3 only: shared/ holds exactly its files */
    sl__ck_retain(root, 1, 3);
    assert_shared_is_listed_in(root);
    char p[500];
    snprintf(p, sizeof p, "%s/chk-1", root);
    assert_int_equal(access(p, F_OK), -1);

    /* restores of checkpoint 3, then the rest of the input everywhere */
    wop same, mem, other;
    wop_open(&same, &rs2, 0, 4); /* the same task: opens the checkpoint */
    wop_open(&mem, NULL, 0, 4);  /* the memory backend */
    wop_open(&other, &rs3, 1, 4); /* another task: reads key groups out */
    restore(&same, s3);
    restore(&mem, s3);
    restore(&other, s3);
    wop *all[] = {&a, &ref, &same, &mem, &other};
    uint64_t rng3 = rng;
    feed_random(all, 5, 10000, KEYS + 5000);
    for (int i = 0; i < 5; i++) {
        int rc; /* SL__MORE: a RocksDB firing goes on, as the runtime would call */
        while ((rc = sl__window_vt.watermark(all[i]->st, SL_TS_MAX, &all[i]->sink.out)) ==
               SL__MORE) {
        }
        assert_int_equal(rc, 0);
    }
    assert_same_output(&ref.sink, &a.sink, "the checkpointed run");
    assert_same_output(&ref.sink, &same.sink, "restored into the same task");
    assert_same_output(&ref.sink, &mem.sink, "restored into memory");
    assert_same_output(&ref.sink, &other.sink, "restored into another task");
    wop_close(&a);
    wop_close(&same);
    wop_close(&mem);
    wop_close(&other);

    /* once more with no other RocksDB instance open in the process: opening
     * the checkpoint must not lose it to the process instance's first open,
     * which empties the RocksDB directory */
    static sl__state_conf rs4;
    rs4 = rs;
    wop solo;
    wop_open(&solo, &rs4, 0, 4);
    restore(&solo, s3);
    rng = rng3;
    wop *one[] = {&solo};
    feed_random(one, 1, 10000, KEYS + 5000);
    int rc;
    while ((rc = sl__window_vt.watermark(solo.st, SL_TS_MAX, &solo.sink.out)) == SL__MORE) {
    }
    assert_int_equal(rc, 0);
    assert_same_output(&ref.sink, &solo.sink, "restored alone in the process");
    wop_close(&solo);
    wop_close(&ref);
    sl__snap_writer_free(s1);
    sl__snap_writer_free(s2);
    sl__snap_writer_free(s3);
    /* the instances are gone, the checkpoint stays */
    snprintf(p, sizeof p, "%s/chk-3/MANIFEST", root);
    assert_int_equal(access(p, F_OK), 0);
    sl__rmtree(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(incremental_sizes_and_restores),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
