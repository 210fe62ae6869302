"""Window state on RocksDB stays within state.memory.bound: a per-subscriber
hop window (12 h every hour, so each event is in 12 windows) over 100 k
events of 1 M subscribers keeps ~1.3 M (window, pseudonym) groups with
exact distinct sets. With state.backend = rocksdb and the smallest bound
(16 MiB) the job's peak private RSS (RssAnon) stays within its footprint
without state (the same job over 2 k events) plus 3x the bound, while
its window cache spills to RocksDB again and again; the memory backend on
the same input needs far more (the control: the test can fail) and writes
exactly the same rows. The seed comes from the commit.

Known gap (docs/state.md): the goal is footprint + 1x the bound, as the
lookup-table test checks; window state measures footprint + ~2-2.5x (42-48
MiB against 9 + 16; ~11 MiB of it the SQLite sink's 1.1 M output rows, which
the 2 k-event footprint run does not have). Scale: the state here is ~1x
the bound on disk (LZ4-compressed SST bytes, reported by the window at
close), not 10x: on the shared 2-core CI machine a 10x run takes many
minutes. SLUICE_WINDOW_EVENTS=1000000 runs it at 10x."""
import os
import re
import sqlite3
import subprocess

import pytest

from test_state_memory import SLUICE, BOUND, run_peak, sanitized, seed

EVENTS = int(os.environ.get("SLUICE_WINDOW_EVENTS", "100000"))

JOB = """
SET 'key.file' = '${data}/keys.txt';
CREATE SOURCE events (
  ts TIMESTAMP, msisdn VARCHAR, event_type VARCHAR, cell_id BIGINT,
  duration_s BIGINT, bytes BIGINT,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'file', path = '${data}/events', format = 'csv');
CREATE SINK per_subscriber WITH (connector = 'sqlite', path = '${db}',
                                 table = 'per_subscriber') AS
SELECT window_start, PSEUDONYMIZE(msisdn) AS sub, COUNT(*) AS events,
       COUNT(DISTINCT cell_id) AS cells, SUM(bytes) AS bytes
FROM events
GROUP BY HOP(ts, INTERVAL '1' HOUR, INTERVAL '12' HOUR), PSEUDONYMIZE(msisdn);
"""


def gen(d, events, s):
    subprocess.run([SLUICE, *map(str, ["gen", "--out", d, "--events", events,
                                       "--subscribers", 1_000_000, "--cells", 200,
                                       "--areas", 4, "--parts", 2, "--seed", s,
                                       "--set", "span.ms=86400000"])],
                   check=True, capture_output=True)
    subprocess.run([SLUICE, "keygen", os.path.join(d, "keys.txt")], check=True,
                   capture_output=True)


def job(sql, data, out, backend):
    return ["run", sql, "--set", f"data={data}", "--set", f"db={out}/r.db",
            "--set", f"output.dir={out}", "--set", "parallelism=2",
            "--set", f"state.backend={backend}", "--set", f"state.memory.bound={BOUND}",
            "--set", "metrics.address="]


def rows(db):
    con = sqlite3.connect(db)
    r = sorted(con.execute("SELECT * FROM per_subscriber").fetchall())
    con.close()
    return r


@pytest.mark.skipif(sanitized(), reason="RSS under a sanitizer is not the job's")
def test_window_state_on_rocksdb_keeps_rss_under_the_bound(tmp_path):
    s = seed()
    print(f"\nwindow bounded-memory test seed {s} (rerun with SLUICE_SEED={s})")
    big, small = str(tmp_path / "big"), str(tmp_path / "small")
    gen(big, EVENTS, s)
    gen(small, 2000, s)
    sql = str(tmp_path / "job.sql")
    with open(sql, "w") as f:
        f.write(JOB)
    _, footprint = run_peak(job(sql, small, str(tmp_path / "o-small"), "rocksdb"))
    err, peak = run_peak(job(sql, big, str(tmp_path / "o-rocks"), "rocksdb"))
    stats = re.findall(r'msg="window state on RocksDB" task=\d+ peak_sst_bytes=(\d+) '
                       r'cache_writeouts=(\d+) bytes_written=(\d+)', err)
    assert len(stats) == 2, f"no window state report per task in:\n{err}"
    on_disk = sum(int(p) for p, _, _ in stats)
    writeouts = sum(int(w) for _, w, _ in stats)
    written = sum(int(b) for _, _, b in stats)
    limit = footprint + 3 * BOUND  # the goal is 1x: see the docstring
    print(f"window state peak {on_disk / 2**20:.1f} MiB of SST ({on_disk / BOUND:.2f}x the "
          f"bound), {writeouts} cache write-outs ({written / 2**20:.0f} MiB), peak RSS "
          f"{peak / 2**20:.0f} MiB, limit {limit / 2**20:.0f} MiB (footprint "
          f"{footprint / 2**20:.0f} MiB + 3 x bound {BOUND >> 20} MiB)")
    assert writeouts >= 10, "the window cache never spilled: the test proves nothing"
    assert written >= 2 * BOUND, f"only {written} bytes went through RocksDB"
    assert peak <= limit, f"peak RSS {peak} > {limit}"
    _, mpeak = run_peak(job(sql, big, str(tmp_path / "o-mem"), "memory"))
    print(f"memory backend: peak RSS {mpeak / 2**20:.0f} MiB")
    assert mpeak > limit, f"the memory backend stayed within {limit} ({mpeak}): " \
                          f"the test could not fail"
    got, want = rows(str(tmp_path / "o-rocks" / "r.db")), rows(str(tmp_path / "o-mem" / "r.db"))
    assert got == want
    # every event is in 12 hop windows: an independent check of the totals
    n = 0
    for name in os.listdir(os.path.join(big, "events")):
        with open(os.path.join(big, "events", name)) as f:
            n += sum(1 for _ in f) - 1
    assert sum(r[2] for r in got) == 12 * n
