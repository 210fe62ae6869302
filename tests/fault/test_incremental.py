"""Incremental RocksDB checkpoints (state.backend = rocksdb,
state.checkpoints.incremental = true, the default; docs/state.md) under
faults, with the reference job and its fixed input (harness.py):

- a SIGKILL in the middle of the cut (SST files being linked or copied
  into <checkpoint.dir>/shared), then a restart: exactly the rows of the
  uninterrupted run and of the SQL reference, and shared/ then holds
  exactly the files the retained checkpoints list (the killed cut's
  orphans collected);
- a checkpoint taken incrementally at parallelism 2 restores into the
  memory backend and into parallelism 3 (key groups read out of the
  RocksDB checkpoint) with exactly the uninterrupted run's rows.

The sizes (new bytes a small fraction of the state) are checked by
tests/unit/test_incremental.c, where compactions cannot interfere."""
import os
import re

import pytest

from harness import Job, poll
from test_kill import KILLED, ROCKS_SMALL, assert_rows, crash, finish


def listed_and_shared(ckdir):
    """(shared files the chk-N and sp-N directories list, files in shared/;
    shared/tables/ holds the lookup tables' images, kept by their own rule)."""
    listed = set()
    for name in os.listdir(ckdir):
        if not re.fullmatch(r"(chk|sp)-\d+", name):
            continue
        d = os.path.join(ckdir, name)
        for sub in os.listdir(d):
            files = os.path.join(d, sub, "FILES")
            if sub.startswith("rdb-") and os.path.isfile(files):
                with open(files) as f:
                    listed |= {l.split()[2] for l in f if l.startswith("sst ")}
    shared = os.path.join(ckdir, "shared")
    if not os.path.isdir(shared):
        return listed, set()
    return listed, {n for n in os.listdir(shared) if os.path.isfile(os.path.join(shared, n))}


def assert_incremental(job):
    """The checkpoints are incremental ones: RocksDB parts and shared files,
    and nothing in shared/ that no checkpoint lists."""
    newest = job.newest_checkpoint()
    assert newest is not None
    parts = [s for s in os.listdir(job.complete_checkpoints()[newest]) if s.startswith("rdb-")]
    assert parts, f"checkpoint {newest} has no RocksDB part: not incremental"
    listed, shared = listed_and_shared(job.ckdir)
    assert listed, "no checkpoint lists a shared SST file"
    assert shared == listed, \
        f"shared/ holds {len(shared - listed)} files no checkpoint lists " \
        f"({sorted(shared - listed)[:3]}) and lacks {len(listed - shared)} listed ones"


def test_kill_during_the_incremental_cut(dataset, tmp_path, procs):
    job = Job(dataset, str(tmp_path / "job"), procs, extra=ROCKS_SMALL)
    crash(job, "incremental-cut:3")  # the third window task's cut of a life
    crash(job, "incremental-cut:5")
    life = finish(job, "rocksdb incremental, killed during the cut")
    assert life.restored() is not None, f"the last life did not restore: {life.describe()}"
    assert_incremental(job)


@pytest.mark.parametrize("backend,par", [("memory", 2), ("rocksdb", 3)])
def test_incremental_checkpoint_restores_elsewhere(dataset, tmp_path, procs, backend, par):
    """Taken at parallelism 2 on RocksDB, restored with another backend or
    parallelism: the key groups are read out of the RocksDB checkpoint."""
    job = Job(dataset, str(tmp_path / "job"), procs, extra=ROCKS_SMALL)
    life = job.start("--parallelism", 2)
    assert poll(lambda: len(job.complete_checkpoints()) >= 2 or not life.running(), 10)
    assert life.kill() == KILLED, f"the run ended too soon: {life.describe()}"
    assert_incremental(job)
    expected = job.newest_checkpoint()
    life = job.run("--parallelism", par, "--set", f"state.backend={backend}")
    assert life.restored() == expected, f"expected checkpoint {expected}: {life.describe()}"
    assert_rows(job.rows(), dataset.baseline,
                f"incremental checkpoint at p=2 restored on {backend} at p={par} "
                f"vs uninterrupted run")


# ---- incremental checkpoints of in-memory window state (src/ops/winchg.c) ----
def chain_files(job):
    """(.wf, .wd) files of shared/ that the retained checkpoints list through
    their rdb-m* parts (memory window state)."""
    try:  # the job may be writing or retiring checkpoints meanwhile
        listed, _ = listed_and_shared(job.ckdir)
    except OSError:
        return set(), set()
    return ({f for f in listed if f.endswith(".wf")}, {f for f in listed if f.endswith(".wd")})


def assert_memory_chain(job):
    """The memory backend's checkpoints were deltas on a full
    materialisation, and shared/ holds exactly what checkpoints list."""
    full, deltas = chain_files(job)
    assert full, "no checkpoint lists a full materialisation (.wf) of window state"
    listed, shared = listed_and_shared(job.ckdir)
    assert shared == listed, \
        f"shared/ holds {len(shared - listed)} files no checkpoint lists " \
        f"({sorted(shared - listed)[:3]}) and lacks {len(listed - shared)} listed ones"
    return full, deltas


@pytest.mark.parametrize("point", ["delta-write:2", "delta-write:5",
                                   "materialise-write:2", "materialise-write:3"])
def test_kill_during_a_memory_delta_or_materialisation(dataset, tmp_path, procs, point):
    """state.backend = memory (incremental by default): SIGKILL while a
    window task writes a delta into shared/, or a full materialisation;
    the restart restores the last complete checkpoint (its chain) and ends
    with exactly the rows of the uninterrupted run and the SQL reference;
    the killed write's orphan is collected."""
    job = Job(dataset, str(tmp_path / "job"), procs)
    crash(job, point)
    life = finish(job, f"memory incremental, killed at {point}")
    if point.startswith("delta"):
        assert life.restored() is not None, f"the last life did not restore: {life.describe()}"
    full, deltas = assert_memory_chain(job)
    assert deltas or point.startswith("materialise"), "no checkpoint used a delta"


def test_memory_chain_restores_at_another_parallelism(dataset, tmp_path, procs):
    """Deltas taken at parallelism 2 restore at parallelism 3 and into
    RocksDB: the chain's key groups are rebuilt wherever they go now."""
    job = Job(dataset, str(tmp_path / "job"), procs)
    life = job.start("--parallelism", 2)
    assert poll(lambda: len(chain_files(job)[1]) >= 2 or not life.running(), 20)
    assert life.kill() == KILLED, f"the run ended too soon: {life.describe()}"
    assert chain_files(job)[1], "no delta among the checkpoints"
    expected = job.newest_checkpoint()
    life = job.run("--parallelism", 3, "--set", "state.backend=rocksdb")
    assert life.restored() == expected, f"expected checkpoint {expected}: {life.describe()}"
    assert_rows(job.rows(), dataset.baseline,
                "memory deltas at p=2 restored on rocksdb at p=3 vs uninterrupted run")
