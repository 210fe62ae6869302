"""Bounded memory with state.backend = rocksdb: the reference job joins a
subscriber table whose RocksDB state on disk is at least 10x
state.memory.bound, and its peak private RSS (RssAnon, sampled) stays
within the bound plus the job's own footprint without state (the same job
with a 1000-row table). Controls: the memory backend on the
same input exceeds that limit, so the test can fail, and gives exactly the
same result rows. Rows are widened with a random 100-character column (the
generator's `gender`, which the job carries but does not publish) so the
state is large without millions of rows; the seed comes from the commit."""
import os
import random
import re
import sqlite3
import subprocess
import threading
import time
import zlib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")
BOUND = 16 << 20          # state.memory.bound: the smallest allowed
SUBSCRIBERS = 1_400_000   # x ~120 bytes of state each: > 10 x BOUND on disk
EVENTS = 100_000


def sanitized():
    """Whether the binary runs under ASan or TSan, whose shadow memory and
    quarantine are not the job's memory: the bound is not checked there."""
    r = subprocess.run(["ldd", SLUICE], capture_output=True, text=True)
    return any(lib in r.stdout for lib in ("libasan", "libtsan"))


def seed():
    if os.environ.get("SLUICE_SEED"):
        return int(os.environ["SLUICE_SEED"])
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "no-commit"
    return zlib.crc32(head.encode()) % 1000000


def run_peak(args):
    """Runs sluice; returns (stderr, peak private RSS in bytes): the largest
    RssAnon of the process, sampled every 10 ms until it exits. Private
    memory, because the ~18 MiB of shared library code (RssFile) is not the
    job's state; not ru_maxrss, which would count the test's own memory
    (the child inherits it across fork and exec)."""
    p = subprocess.Popen([SLUICE, *map(str, args)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample():
        while p.poll() is None:
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            peak[0] = max(peak[0], int(line.split()[1]) * 1024)
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    err = p.stderr.read()
    p.wait()
    t.join()
    assert p.returncode == 0, f"sluice {' '.join(map(str, args))} failed:\n{err}"
    return err, peak[0]


def rows(db):
    con = sqlite3.connect(db)
    r = sorted(con.execute("SELECT * FROM age_distribution").fetchall())
    con.close()
    return r


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    s = seed()
    print(f"\nbounded-memory test seed {s} (rerun with SLUICE_SEED={s})")
    d = str(tmp_path_factory.mktemp("state-memory"))
    subprocess.run([SLUICE, *map(str, ["gen", "--out", d, "--events", EVENTS,
                                       "--subscribers", SUBSCRIBERS, "--cells", 200,
                                       "--areas", 4, "--parts", 2, "--seed", s,
                                       "--set", "span.ms=3600000"])],
                   check=True, capture_output=True)
    subprocess.run([SLUICE, "keygen", os.path.join(d, "keys.txt")], check=True,
                   capture_output=True)
    rng = random.Random(s)
    distinct = set()
    src = os.path.join(d, "subscribers.csv")
    wide, small = os.path.join(d, "wide.csv"), os.path.join(d, "small.csv")
    with open(src) as f, open(wide, "w") as w, open(small, "w") as sm:
        header = next(f)
        w.write(header)
        sm.write(header)
        for i, line in enumerate(f):
            msisdn, birth, _ = line.rstrip("\n").split(",")
            distinct.add(msisdn)
            row = f"{msisdn},{birth},{rng.getrandbits(400):0100x}\n"
            w.write(row)
            if i < 1000:
                sm.write(row)
    return d, len(distinct)


def job(data, subs, out, backend):
    return ["run", "telecom-age", "--events", os.path.join(data, "events"),
            "--subscribers", os.path.join(data, subs),
            "--cells", os.path.join(data, "cells.csv"),
            "--key-file", os.path.join(data, "keys.txt"),
            "--db", os.path.join(out, "result.db"), "--out-dir", out, "--parallelism", 2,
            "--set", f"state.backend={backend}", "--set", f"state.memory.bound={BOUND}",
            "--set", "metrics.address="]


@pytest.mark.skipif(sanitized(), reason="RSS under a sanitizer is not the job's")
def test_rocksdb_state_10x_the_bound_keeps_rss_under_it(data, tmp_path):
    data, distinct = data
    _, footprint = run_peak(job(data, "small.csv", str(tmp_path / "small"), "rocksdb"))
    err, peak = run_peak(job(data, "wide.csv", str(tmp_path / "rocks"), "rocksdb"))
    m = re.search(r"state on RocksDB: tables (\d+) \+ \d+ rows, (\d+) bytes on disk", err)
    assert m, f"no state report in:\n{err}"
    assert int(m.group(1)) == distinct  # the generator repeats some msisdns
    on_disk = int(m.group(2))
    limit = footprint + BOUND
    print(f"state {on_disk / 2**20:.0f} MiB on disk ({on_disk / BOUND:.1f}x the bound), "
          f"peak RSS {peak / 2**20:.0f} MiB, limit {limit / 2**20:.0f} MiB "
          f"(footprint {footprint / 2**20:.0f} MiB + bound {BOUND >> 20} MiB)")
    assert on_disk >= 10 * BOUND, f"state is only {on_disk} bytes"
    assert peak <= limit, f"peak RSS {peak} > {limit}"
    # control: in memory the same state does not fit, and the result is the same
    _, mpeak = run_peak(job(data, "wide.csv", str(tmp_path / "mem"), "memory"))
    assert mpeak > limit, f"the memory backend stayed within {limit} ({mpeak}): " \
                          f"the test could not fail"
    assert rows(str(tmp_path / "rocks" / "result.db")) == \
        rows(str(tmp_path / "mem" / "result.db"))
    assert len(rows(str(tmp_path / "mem" / "result.db"))) > 100
