"""Fault tests of checkpoints and recovery: the reference job over a fixed
input is killed with SIGKILL at random instants and at the dangerous moments
of the checkpoint protocol, its checkpoints are corrupted, its checkpoint
directory fills up or turns read-only, and it is restarted from savepoints.
Every finished result is compared with an uninterrupted run and with the
independent SQL reference (tests/golden/reference.sql):

- exactly-once: identical row for row, and no result row ever written twice
  (an upsert trigger counts rewrites, which the upserting sink would hide);
- at-least-once: identical, rewrites allowed, counted and printed, but a
  rewritten row must keep its values;
- at-most-once: every row present is a reference row's key with counts no
  larger than the reference's.

Between lives (never while a process writes) the visible rows are checked
too: under exactly-once and at-least-once every visible row is final (equal
to a baseline row), and under exactly-once the visible set only grows."""
import glob
import os
import random
import re
import signal
import time

import pytest

from harness import (KILL_MAX, KILL_MIN, Job, complete_checkpoints,
                      db_count, db_tables, fill, install_upsert_counter, key_of,
                      kill_counts, poll, remount, rerun_hint, sluice, upsert_counts)

KILLED = -signal.SIGKILL
FAILURE = re.compile(r"checkpoint.*(fail|error|no space|read-only)", re.I)
SUMMARY = re.compile(r"^sluice: (done|failed): ")  # ends "N checkpoints (M failed)"


def reported_lines(out, pattern):
    """Lines of a life's output matching pattern, leaving out the summary."""
    return [l for l in out.splitlines() if not SUMMARY.match(l) and re.search(pattern, l)]


def diff(got, want, limit=5):
    """A short account of how two sorted row lists differ."""
    g, w = set(got), set(want)
    gk, wk = {key_of(r): r for r in got}, {key_of(r): r for r in want}
    missing = sorted(wk.keys() - gk.keys())
    extra = sorted(gk.keys() - wk.keys())
    changed = sorted(k for k in gk.keys() & wk.keys() if gk[k] != wk[k])
    lines = [f"{len(got)} rows, expected {len(want)}; {len(missing)} missing, "
             f"{len(extra)} unexpected, {len(changed)} with other values, "
             f"{len(got) - len(g)} exact duplicates"]
    lines += [f"  missing {wk[k]}" for k in missing[:limit]]
    lines += [f"  unexpected {gk[k]}" for k in extra[:limit]]
    lines += [f"  got {gk[k]}, expected {wk[k]}" for k in changed[:limit]]
    return "\n".join(lines)


def assert_rows(got, want, what, context=""):
    assert got == want, f"{what}: {diff(got, want)}{context}"


def assert_exactly_once_bookkeeping(job):
    """After a clean finish under exactly-once, every staged row has been
    published and the sink has recorded the epochs it committed."""
    staged = db_count(job.db, "age_distribution__staged")
    assert staged in (None, 0), f"{staged} rows are still staged after the job finished"
    assert "sluice_epochs" in db_tables(job.db), \
        "no sluice_epochs table: the sink did not run the exactly-once protocol"
    assert db_count(job.db, "sluice_epochs") > 0, "sluice_epochs is empty"


def check_restore(job, life, expected, finished):
    """A life restores the newest complete checkpoint that existed when it
    started (expected; None if there was none). A life that was killed early
    may not have printed the line yet; one that made progress must have."""
    got = life.restored()
    if got is not None:
        assert expected is not None and got == expected, \
            f"restored checkpoint {got}, but the newest complete one was {expected}: " \
            f"{life.describe()}"
    elif expected is not None:
        progressed = finished or (job.newest_checkpoint() or 0) > expected
        assert not progressed, \
            f"did not say it restored checkpoint {expected}: {life.describe()}"


def random_kills(ds, tmp, procs, rng, kills, delivery, after_kill, after_finish,
                 extra=()):
    """Starts the job and SIGKILLs it at an instant uniform in [KILL_MIN,
    KILL_MAX] s after the start, restarting with the same checkpoint
    directory and database, until `kills` kills have landed; then lets the
    last life finish. A life that finishes before its kill instant ends a
    round: after_finish checks the round's result and, if kills remain, a new
    round starts with a fresh directory and database, so every kill lands in
    a running job. after_kill(job, life, expected) runs after each kill.
    Returns [(job, kill instants)] per round."""
    rounds, landed = [], 0
    while True:
        job = Job(ds, os.path.join(tmp, f"round-{len(rounds)}"), procs, delivery,
                  extra=extra)
        schedule = []
        while True:
            expected = job.newest_checkpoint()
            life = job.start()
            if landed < kills:
                t = rng.uniform(KILL_MIN, KILL_MAX)
                rc = life.wait_until(t)
                if rc is None:
                    rc = life.kill()
                if rc == KILLED:
                    landed += 1
                    schedule.append(round(t, 3))
                    after_kill(job, life, expected)
                    continue
            else:
                rc = life.wait()
            assert rc == 0, f"the job failed (kills so far {schedule}): {life.describe()}"
            after_finish(job, life, expected)
            break
        rounds.append((job, schedule))
        print(f"round {len(rounds)}: {len(schedule)} kills at {schedule} s, "
              f"{len(job.lives)} lives")
        if landed >= kills:
            return rounds


def context(seed):
    return f"\n(seed {seed}; rerun with {rerun_hint(seed)})"


# ---- 1. the input and its two references ------------------------------------------
def test_baseline_equals_reference(dataset):
    assert len(dataset.reference) > 1000, "the input should publish many groups"
    assert_rows(dataset.baseline, dataset.reference, "uninterrupted run vs SQL reference")
    assert len(set(map(key_of, dataset.baseline))) == len(dataset.baseline)


def test_kill_count_and_seed_settings(monkeypatch):
    from harness import commit_seed
    monkeypatch.setenv("SLUICE_SEED", "4711")
    assert commit_seed() == 4711
    monkeypatch.setenv("KILLS", "100")
    assert kill_counts() == (100, 25)
    monkeypatch.setenv("KILLS", "")
    assert kill_counts() == (20, 5)
    monkeypatch.setenv("SLUICE_SEED", "")  # `make fault` without SEED=
    assert 0 <= commit_seed() < 1000000


def test_checkpointed_run_then_from_scratch(dataset, tmp_path, procs):
    """Checkpointing alone does not change the result, and --from-scratch
    ignores the checkpoints a killed run left behind."""
    job = Job(dataset, str(tmp_path / "job"), procs)
    life = job.start()
    assert poll(lambda: job.complete_checkpoints() or not life.running(), 5)
    assert life.kill() == KILLED, f"the run ended before its first checkpoint: " \
                                  f"{life.describe()}"
    assert job.complete_checkpoints(), "no complete checkpoint after the kill"
    fresh = Job(dataset, str(tmp_path / "fresh"), procs)
    fresh.ckdir = job.ckdir
    life = fresh.run("--from-scratch")
    assert life.restored() is None, f"--from-scratch restored a checkpoint: " \
                                    f"{life.describe()}"
    assert_rows(fresh.rows(), dataset.baseline, "checkpointed run from scratch vs baseline")
    assert_exactly_once_bookkeeping(fresh)


# ---- 2-4. random kills under each guarantee ----------------------------------------
@pytest.mark.parametrize("backend", ["memory", "rocksdb", "memory-slow-snapshots"])
def test_exactly_once_random_kills(dataset, tmp_path, procs, seed, backend, monkeypatch):
    """Run once per state backend (docs/state.md): with rocksdb the
    subscriber and cell tables and the window state live in RocksDB (the
    smallest bound, so the window cache spills), and a kill may land while
    they load, are read, spill or are scanned into a checkpoint. With
    memory-slow-snapshots the snapshot writer takes 300 us per window group
    (SLUICE_TEST_SNAPSHOT_DELAY_US), so records keep updating and windows
    keep firing while every checkpoint's window state is being written
    (docs/checkpoints.md, asynchronous snapshots)."""
    kills = kill_counts()[0]
    if backend == "memory-slow-snapshots":
        monkeypatch.setenv("SLUICE_TEST_SNAPSHOT_DELAY_US", "300")
    rng = random.Random(f"{seed}:exactly-once" + ("" if backend == "memory" else
                                                  f":{backend}"))
    ctx = context(seed)
    visible = {}

    def after_kill(job, life, expected):
        check_restore(job, life, expected, finished=False)
        rows = set(job.rows())
        wrong = rows - set(dataset.baseline)
        assert not wrong, f"a visible row is not final: {sorted(wrong)[:5]}; " \
                          f"{life.describe()}{ctx}"
        lost = visible.get(job.dir, set()) - rows
        assert not lost, f"committed rows disappeared: {sorted(lost)[:5]}{ctx}"
        visible[job.dir] = rows
        install_upsert_counter(job.db)

    def after_finish(job, life, expected):
        check_restore(job, life, expected, finished=True)
        assert_rows(job.rows(), dataset.baseline, "exactly-once vs uninterrupted run", ctx)
        assert_rows(job.rows(), dataset.reference, "exactly-once vs SQL reference", ctx)
        updates, changed = upsert_counts(job.db)
        assert updates == 0, f"{updates} result rows were written twice ({changed} " \
                             f"with other values){ctx}"
        assert_exactly_once_bookkeeping(job)

    t0 = time.monotonic()
    rounds = random_kills(dataset, str(tmp_path), procs, rng, kills, "exactly-once",
                          after_kill, after_finish,
                          extra=ROCKS_SMALL if backend == "rocksdb" else ())
    restores = sum(l.restored() is not None for j, _ in rounds for l in j.lives)
    print(f"exactly-once: {kills} kills in {len(rounds)} rounds, {restores} restores, "
          f"{time.monotonic() - t0:.1f} s{ctx}")


def test_at_least_once_random_kills(dataset, tmp_path, procs, seed):
    kills = kill_counts()[1]
    rng = random.Random(f"{seed}:at-least-once")
    ctx = context(seed)
    rewrites = []

    def after_kill(job, life, expected):
        check_restore(job, life, expected, finished=False)
        wrong = set(job.rows()) - set(dataset.baseline)
        assert not wrong, f"a visible row is not final: {sorted(wrong)[:5]}{ctx}"
        install_upsert_counter(job.db)

    def after_finish(job, life, expected):
        check_restore(job, life, expected, finished=True)
        # The sink upserts on the result key, so a replayed row overwrites
        # its first copy: the table holds exactly the reference, and the
        # trigger counts the duplicates that were delivered and absorbed.
        assert_rows(job.rows(), dataset.baseline, "at-least-once vs uninterrupted run", ctx)
        assert_rows(job.rows(), dataset.reference, "at-least-once vs SQL reference", ctx)
        updates, changed = upsert_counts(job.db)
        assert changed == 0, f"{changed} replayed rows had other values than their " \
                             f"first copy{ctx}"
        rewrites.append(updates)

    rounds = random_kills(dataset, str(tmp_path), procs, rng, kills, "at-least-once",
                          after_kill, after_finish)
    print(f"at-least-once: {kills} kills in {len(rounds)} rounds; duplicates delivered "
          f"and absorbed by the upsert: {rewrites} per round (of {len(dataset.baseline)} "
          f"rows){ctx}")


def test_at_most_once_random_kills(dataset, tmp_path, procs, seed):
    kills = kill_counts()[1]
    rng = random.Random(f"{seed}:at-most-once")
    ctx = context(seed)
    ref = dataset.reference_by_key
    outcomes = []

    def check(rows):
        # A group that lost input has at most the reference's counts; with
        # fewer than k subscribers left it is withheld, so a published group
        # always exists, unsuppressed, in the reference.
        for r in rows:
            want = ref.get(key_of(r))
            assert want is not None, f"row {r} has no reference group{ctx}"
            assert r[1] == want[1] and r[5] <= want[5] and r[6] <= want[6], \
                f"row {r} exceeds the reference {want}{ctx}"
        assert len(set(map(key_of, rows))) == len(rows), f"duplicate keys{ctx}"

    def after_kill(job, life, expected):
        check(job.rows())

    def after_finish(job, life, expected):
        rows = job.rows()
        check(rows)
        assert rows, f"the finished job published nothing: {life.describe()}{ctx}"
        exact = len(set(rows) & set(dataset.reference))
        outcomes.append(f"{len(rows)} rows ({exact} equal to the reference, "
                        f"{len(ref) - len(rows)} groups lost)")

    rounds = random_kills(dataset, str(tmp_path), procs, rng, kills, "at-most-once",
                          after_kill, after_finish)
    print(f"at-most-once: {kills} kills in {len(rounds)} rounds; per round: "
          f"{'; '.join(outcomes)} of {len(ref)} reference rows{ctx}")


# ---- 5. kills at the dangerous moments ------------------------------------------------
def crash(job, point):
    """Runs a life with SLUICE_CRASH_AT=point; it must die by its own SIGKILL."""
    expected = job.newest_checkpoint()
    life = job.start(crash_at=point)
    rc = life.wait()
    assert rc == KILLED, f"SLUICE_CRASH_AT={point} did not kill the job: {life.describe()}"
    check_restore(job, life, expected, finished=False)
    wrong = set(job.rows()) - set(job.ds.baseline)
    assert not wrong, f"after a crash at {point}, a visible row is not final: " \
                      f"{sorted(wrong)[:5]}"
    install_upsert_counter(job.db)
    return life


def finish(job, what):
    expected = job.newest_checkpoint()
    life = job.run()
    check_restore(job, life, expected, finished=True)
    assert_rows(job.rows(), job.ds.baseline, f"{what} vs uninterrupted run")
    assert_rows(job.rows(), job.ds.reference, f"{what} vs SQL reference")
    updates, changed = upsert_counts(job.db)
    assert updates == 0, f"{what}: {updates} result rows were written twice"
    assert_exactly_once_bookkeeping(job)
    return life


def test_kill_in_the_middle_of_rocksdb_writes(dataset, tmp_path, procs):
    """state.backend = rocksdb: SIGKILL between two RocksDB write batches
    while the subscriber table loads, first before any checkpoint, then on a
    restart from one; the job still ends with exactly the reference rows."""
    job = Job(dataset, str(tmp_path / "job"), procs,
              extra=("--set", "state.backend=rocksdb"))
    crash(job, "rocksdb-write:2")
    life = job.start()
    assert poll(lambda: job.complete_checkpoints() or not life.running(), 10)
    assert life.kill() == KILLED, f"the run ended before its first checkpoint: " \
                                  f"{life.describe()}"
    crash(job, "rocksdb-write:3")
    life = finish(job, "rocksdb, killed in RocksDB writes")
    assert life.restored() is not None, f"the last life did not restore: " \
                                        f"{life.describe()}"


# A checkpoint writes one snapshot file per stateful task (source positions,
# windows, sink), so the 8th snapshot write falls in a later checkpoint.
@pytest.mark.parametrize("point", ["snapshot-write:1", "snapshot-write:8",
                                   "after-manifest:1", "after-manifest:3",
                                   "sink-commit:1", "sink-commit:3"])
def test_targeted_kill(dataset, tmp_path, procs, point):
    job = Job(dataset, str(tmp_path / "job"), procs)
    crash(job, point)
    if not point.startswith("snapshot-write"):
        # the manifest was in place before the crash: recovery must use it
        assert job.complete_checkpoints(), f"no complete checkpoint after a crash at {point}"
    finish(job, f"crash at {point}, then restart")


def test_targeted_kills_in_sequence(dataset, tmp_path, procs):
    """Crashes at each dangerous moment in turn, each life resuming from the
    checkpoint the previous crash left."""
    job = Job(dataset, str(tmp_path / "job"), procs)
    for point in ("sink-commit:2", "after-manifest:2", "snapshot-write:4",
                  "after-manifest:1", "sink-commit:1"):
        crash(job, point)
    finish(job, "five crashes in sequence, then restart")


# ---- 6. corrupt newest checkpoint -------------------------------------------------------
def corrupt_snapshot(chk):
    snaps = [p for p in glob.glob(os.path.join(chk, "*.snap")) if os.path.getsize(p) > 0]
    assert snaps, f"{chk} has no non-empty *.snap file"
    path = max(snaps, key=os.path.getsize)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))
    return path


def truncate_manifest(chk):
    path = os.path.join(chk, "MANIFEST")
    size = os.path.getsize(path)
    assert size > 1, f"{path} is empty"
    os.truncate(path, size // 2)
    return path


@pytest.mark.parametrize("damage", [corrupt_snapshot, truncate_manifest],
                         ids=["flipped-snapshot-byte", "truncated-manifest"])
def test_corrupt_newest_checkpoint(dataset, tmp_path, procs, damage):
    job = Job(dataset, str(tmp_path / "job"), procs)
    life = job.start()
    poll(lambda: len(job.complete_checkpoints()) >= 3 or not life.running(), 5)
    assert life.kill() == KILLED, f"the run ended too soon: {life.describe()}"
    chks = job.complete_checkpoints()
    assert len(chks) >= 2, f"need two complete checkpoints, have {sorted(chks)}"
    newest = max(chks)
    damaged = damage(chks[newest])
    previous = max(n for n in chks if n != newest)
    install_upsert_counter(job.db)

    life = job.run()
    out = life.output()
    assert life.restored() == previous, \
        f"damaged {damaged}: expected recovery from checkpoint {previous}: {life.describe()}"
    said = [l for l in reported_lines(out, rf"(chk-{newest}\b|checkpoint {newest}\b)")
            if 'msg="restored checkpoint"' not in l]
    assert said, f"damaged {damaged}: nothing on stderr names checkpoint {newest}: " \
                 f"{life.describe()}"
    assert_rows(job.rows(), dataset.baseline, "after falling back to an older checkpoint")
    updates, changed = upsert_counts(job.db)
    # falling back behind a committed epoch replays it: rewrites are
    # expected, but they must rewrite the same values
    assert changed == 0, f"{changed} replayed rows had other values than their first copy"
    print(f"damaged {os.path.relpath(damaged, job.ckdir)}; fell back to checkpoint "
          f"{previous}; {updates} rows rewritten with the same values")


# ---- 7. full or read-only checkpoint directory --------------------------------------
def start_on_tmpfs(dataset, tmp_path, procs, mnt, extra=()):
    job = Job(dataset, str(tmp_path / "job"), procs, extra=extra)
    job.ckdir = os.path.join(mnt, "checkpoints")
    life = job.start()
    poll(lambda: job.complete_checkpoints() or not life.running(), 5)
    assert life.running() and job.complete_checkpoints(), \
        f"no checkpoint completed before the fault: {life.describe()}"
    return job, life


# with rocksdb the window state is in RocksDB, and a checkpoint writes it
# out and scans it back into the snapshot files (docs/state.md); the bound
# is the smallest, so the window cache spills while the job runs
ROCKS_SMALL = ("--set", "state.backend=rocksdb", "--set", "state.memory.bound=16777216")


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
def test_checkpoint_dir_full_job_keeps_running(dataset, tmp_path, procs, tmpfs, backend):
    """The checkpoint file system fills up mid-run: checkpoints fail and are
    reported, the job goes on, retries once there is room again, and
    finishes with the right result."""
    job, life = start_on_tmpfs(dataset, tmp_path, procs, tmpfs,
                               ROCKS_SMALL if backend == "rocksdb" else ())
    before = job.newest_checkpoint()
    filler = os.path.join(tmpfs, "filler")
    fill(filler)
    time.sleep(0.6)  # six checkpoint intervals
    assert life.running(), f"the job stopped while the disk was full: {life.describe()}"
    assert before in job.complete_checkpoints(), \
        f"checkpoint {before} was deleted while newer ones failed"
    during = job.newest_checkpoint()
    os.remove(filler)
    poll(lambda: job.newest_checkpoint() > during or not life.running(), 3)
    retried = job.newest_checkpoint() > during
    life.expect_success()
    assert reported_lines(life.output(), FAILURE), \
        f"no checkpoint failure reported while the disk was full: {life.describe()}"
    assert retried, "no checkpoint completed after space was freed"
    assert_rows(job.rows(), dataset.baseline, "disk full mid-run vs uninterrupted run")


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
def test_checkpoint_dir_full_then_kill(dataset, tmp_path, procs, tmpfs, backend):
    """Killed while its checkpoint disk is full, the job restarts from the
    last checkpoint that completed before."""
    job, life = start_on_tmpfs(dataset, tmp_path, procs, tmpfs,
                               ROCKS_SMALL if backend == "rocksdb" else ())
    filler = os.path.join(tmpfs, "filler")
    fill(filler)
    time.sleep(0.5)
    assert life.kill() == KILLED, f"the run ended too soon: {life.describe()}"
    assert reported_lines(life.output(), FAILURE), \
        f"no checkpoint failure reported while the disk was full: {life.describe()}"
    os.remove(filler)
    expected = job.newest_checkpoint()
    life = job.run()
    assert life.restored() == expected, f"expected checkpoint {expected}: {life.describe()}"
    assert_rows(job.rows(), dataset.baseline, "killed with a full disk vs uninterrupted run")


def test_checkpoint_dir_read_only_then_kill(dataset, tmp_path, procs, tmpfs):
    """The checkpoint directory turns read-only mid-run: the job goes on and
    says so; killed then, it restarts from the last checkpoint before."""
    job, life = start_on_tmpfs(dataset, tmp_path, procs, tmpfs)
    before = job.newest_checkpoint()
    err = remount(tmpfs, "ro")
    if err:
        pytest.skip(f"cannot remount the checkpoint tmpfs read-only while the job "
                    f"runs (a file there stays open for writing?): {err}")
    try:
        time.sleep(0.5)
        assert life.running(), f"the job stopped when its checkpoint dir turned " \
                               f"read-only: {life.describe()}"
        assert before in job.complete_checkpoints()
        assert life.kill() == KILLED
    finally:
        assert remount(tmpfs, "rw") is None
    assert reported_lines(life.output(), FAILURE), \
        f"no checkpoint failure reported while read-only: {life.describe()}"
    expected = job.newest_checkpoint()
    life = job.run()
    assert life.restored() == expected, f"expected checkpoint {expected}: {life.describe()}"
    assert_rows(job.rows(), dataset.baseline, "read-only checkpoint dir vs uninterrupted run")


# ---- 8. savepoints -----------------------------------------------------------------------
def test_savepoint_restores_compatible_job_and_refuses_incompatible(dataset, tmp_path,
                                                                      procs):
    job = Job(dataset, str(tmp_path / "job"), procs)
    life = job.start()
    pidfile = os.path.join(job.ckdir, "sluice.pid")

    def pid_in_file():
        try:
            with open(pidfile) as f:
                return f.read().split()[0] == str(life.pid)
        except (OSError, IndexError):
            return False
    assert poll(pid_in_file, 5), f"{pidfile} does not hold the job's pid {life.pid}"
    life.wait_until(0.8)
    assert life.running(), f"the run ended too soon: {life.describe()}"
    sluice("savepoint", job.ckdir, timeout=30)
    sps = poll(lambda: complete_checkpoints(job.ckdir, "sp-"), 5)
    assert sps, f"no complete sp-N in {job.ckdir} after `sluice savepoint`"
    sp = sps[max(sps)]
    time.sleep(0.3)  # the job goes on past the savepoint
    assert life.kill() == KILLED, f"the run ended too soon: {life.describe()}"

    bad = job.start("--from", sp, "--window-ms", 120000)
    rc = bad.wait()
    assert rc > 0, f"a savepoint was restored into a job with another window length " \
                   f"(or the refusal crashed): {bad.describe()}"
    # the word itself: the failure summary always says "0 windows fired"
    assert re.search(r"\bwindow\b", bad.output(), re.I), \
        f"the refusal does not name the window operator: {bad.describe()}"
    assert bad.restored() is None
    wrong = set(job.rows()) - set(dataset.baseline)
    assert not wrong, f"the refused run changed the results: {sorted(wrong)[:5]}"
    assert os.path.isfile(os.path.join(sp, "MANIFEST")), "the refusal damaged the savepoint"

    good = job.run("--from", sp)
    assert "restored checkpoint" in good.output(), f"nothing restored: {good.describe()}"
    assert_rows(job.rows(), dataset.baseline, "restart from a savepoint vs uninterrupted run")
    assert os.path.isfile(os.path.join(sp, "MANIFEST")), \
        "the savepoint was deleted; savepoints are kept until a user deletes them"


# ---- 9. rescaling ------------------------------------------------------------------------
def test_rescale_2_4_1_across_savepoints(dataset, tmp_path, procs):
    """State is cut by key group: a savepoint taken at parallelism 2 restores
    at 4, whose savepoint restores at 1; the output equals the unscaled run."""
    job = Job(dataset, str(tmp_path / "job"), procs)
    sps_seen = set()
    for par, last in ((2, False), (4, False), (1, True)):
        more = ["--parallelism", par]
        if sps_seen:
            more += ["--from", complete_checkpoints(job.ckdir, "sp-")[max(sps_seen)]]
        if last:
            life = job.run(*more)
            assert "restored checkpoint" in life.output(), life.describe()
            break
        life = job.start(*more)
        pidfile = os.path.join(job.ckdir, "sluice.pid")
        assert poll(lambda: os.path.exists(pidfile) and
                    open(pidfile).read().split()[:1] == [str(life.pid)], 5), life.describe()
        life.wait_until(0.6)
        assert life.running(), f"the run ended too soon: {life.describe()}"
        sluice("savepoint", job.ckdir, timeout=30)
        new = poll(lambda: set(complete_checkpoints(job.ckdir, "sp-")) - sps_seen, 5)
        assert new, f"no new savepoint at parallelism {par}"
        sps_seen |= new
        assert life.kill() == KILLED, f"the run ended too soon: {life.describe()}"
        if par == 4:
            assert life.restored() is not None, f"4 tasks restored nothing: {life.describe()}"
    assert_rows(job.rows(), dataset.baseline, "rescaled 2 -> 4 -> 1 vs unscaled run")


def test_rocksdb_dir_full_fails_the_start_then_recovers(dataset, tmp_path, procs, tmpfs):
    """state.backend = rocksdb with state.rocksdb.dir on a full file system:
    the job stops at start with an error naming RocksDB and the cause (no
    half-loaded table is used), and removes what it wrote; once there is
    room, the same command runs to exactly the reference rows."""
    rdir = os.path.join(tmpfs, "rocksdb")
    job = Job(dataset, str(tmp_path / "job"), procs,
              extra=("--set", "state.backend=rocksdb", "--set", f"state.rocksdb.dir={rdir}"))
    filler = os.path.join(tmpfs, "filler")
    fill(filler)
    os.truncate(filler, os.path.getsize(filler) - (64 << 10))  # 64 KiB left
    life = job.start()
    rc = life.wait()
    out = life.output()
    assert rc == 1, f"a full RocksDB disk did not fail the start: {life.describe()}"
    assert "RocksDB" in out and "No space left on device" in out, life.describe()
    assert not os.path.exists(rdir) or not any(f.endswith(".sst") for f in os.listdir(rdir))
    assert db_count(job.db, "age_distribution") == 0 if os.path.exists(job.db) else True
    os.remove(filler)
    job.run()
    assert_rows(job.rows(), dataset.baseline, "rocksdb after a full disk vs uninterrupted run")


def test_rocksdb_dir_full_mid_run_keeps_the_last_checkpoint(dataset, tmp_path, procs, tmpfs):
    """state.backend = rocksdb with state.rocksdb.dir on a file system that
    fills up while the job runs (its window state spills there, RocksDB
    flushes and compacts there): the job stops with an error naming RocksDB
    and the cause, its checkpoints stay; once there is room, the same
    command restores the last one and ends with exactly the rows of an
    uninterrupted run."""
    rdir = os.path.join(tmpfs, "rocksdb")
    job = Job(dataset, str(tmp_path / "job"), procs,
              extra=ROCKS_SMALL + ("--set", f"state.rocksdb.dir={rdir}"))
    life = job.start()
    poll(lambda: job.complete_checkpoints() or not life.running(), 5)
    assert life.running() and job.complete_checkpoints(), \
        f"no checkpoint completed before the fault: {life.describe()}"
    filler = os.path.join(tmpfs, "filler")
    fill(filler)
    rc = life.wait()
    out = life.output()
    if rc == 0:  # the state fitted in what RocksDB had already written
        os.remove(filler)
        assert_rows(job.rows(), dataset.baseline, "rocksdb dir full vs uninterrupted run")
        return
    assert rc == 1, f"unexpected exit with a full RocksDB disk: {life.describe()}"
    assert "RocksDB" in out and "No space left on device" in out, life.describe()
    assert "Assertion" not in out, life.describe()
    expected = job.newest_checkpoint()
    assert expected is not None
    os.remove(filler)
    life = job.run()
    assert life.restored() == expected, f"expected checkpoint {expected}: {life.describe()}"
    assert_rows(job.rows(), dataset.baseline, "rocksdb dir full mid-run vs uninterrupted run")
