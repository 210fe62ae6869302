"""Lookup table images across kill -9 (docs/state.md "Table images"): the
first life loads the subscribers and cells from their CSV files and writes
their images under <checkpoint.dir>/shared/tables; it is killed after
checkpoints; the next lives restore the checkpoint and say in their log that
they read both tables from their images; the finished result equals the
independent SQL reference (tests/golden/reference.sql) row for row and the
uninterrupted baseline. The images hold no raw msisdn of the input, neither
as digits nor as an 8-byte number."""
import glob
import os
import re
import signal
import struct

from harness import Job, poll

from test_kill import assert_exactly_once_bookkeeping, assert_rows

KILLED = -signal.SIGKILL
USED = re.compile(r'component=table msg="table image used" source=(\S+)')
WRITTEN = re.compile(r'component=table msg="table image written" source=(\S+)')


def sources(pattern, life):
    return sorted(os.path.basename(s) for s in pattern.findall(life.output()))


def kill_after_checkpoints(job, life, n):
    """Kills the life once n checkpoints are complete."""
    assert poll(lambda: len(job.complete_checkpoints()) >= n or not life.running(), 60)
    assert life.kill() == KILLED, f"the run ended before {n} checkpoints: {life.describe()}"


def test_restart_reads_the_table_images(dataset, tmp_path, procs):
    job = Job(dataset, str(tmp_path / "job"), procs)
    first = job.start()
    kill_after_checkpoints(job, first, 2)
    assert sources(WRITTEN, first) == ["cells.csv", "subscribers.csv"], first.describe()
    assert sources(USED, first) == [], first.describe()
    images = glob.glob(os.path.join(job.ckdir, "shared", "tables", "*.img"))
    assert len(images) == 2, images

    newest = job.newest_checkpoint()
    second = job.start()
    assert poll(lambda: (job.newest_checkpoint() or 0) > newest or not second.running(), 60)
    assert second.kill() == KILLED, f"the run ended too soon: {second.describe()}"
    assert second.restored() == newest, second.describe()
    assert sources(USED, second) == ["cells.csv", "subscribers.csv"], second.describe()
    assert sources(WRITTEN, second) == [], second.describe()

    last = job.run()
    assert last.restored() is not None, last.describe()
    assert sources(USED, last) == ["cells.csv", "subscribers.csv"], last.describe()
    assert_rows(job.rows(), dataset.reference, "restarted from table images vs SQL reference")
    assert_rows(job.rows(), dataset.baseline, "restarted from table images vs baseline")
    assert_exactly_once_bookkeeping(job)

    # no raw identifier in any image
    with open(os.path.join(dataset.data, "subscribers.csv")) as f:
        next(f)
        ids = {line.split(",", 1)[0] for line in f if line.strip()}
    assert len(ids) > 1000
    nums = {int(i) for i in ids}
    for path in images:
        with open(path, "rb") as f:
            blob = f.read()
        for run in re.findall(rb"[0-9]{8,}", blob):
            text = run.decode()
            assert not any(i in text or i[2:] in text for i in ids), f"{path}: raw id in {text}"
        for off in range(len(blob) - 7):
            (v,) = struct.unpack_from("<Q", blob, off)
            assert v not in nums, f"{path}: raw id {v} as a number at offset {off}"
