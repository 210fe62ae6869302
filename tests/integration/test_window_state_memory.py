"""Window state on RocksDB stays within state.memory.bound with state of
more than 10x the bound: a per-subscriber daily profile (a tumbling day
window grouped by pseudonym: events, distinct cells, bytes, call seconds,
first and last event time) over 2 M events of 8 M subscribers keeps ~2 M
groups in RocksDB (> 80 MiB of LZ4-compressed SST at the peak, reported
by the window at close) under the smallest bound, 8 MiB, while its window
cache evicts to RocksDB hundreds of times.

The job's peak private RSS (RssAnon) must stay within its footprint plus
FACTOR x the bound. The footprint is the same input through the same
pipeline with tiny state: the same source, the same pseudonymisation of
every event (its cache of raw ids grows with the distinct subscribers
seen: ~16 MiB here, in both runs), the same window stage, but grouped by
event type (5 groups). The goal is 1x, as the lookup-table test checks;
measured on the shared 2-core machine: 0.96x and 1.34x of the bound over
the footprint (docs/state.md "Memory tuning" explains each MiB), so the
test allows 1.5x. The memory backend on the same input needs far more
(the control: the test can fail) and writes exactly the same rows. The
seed comes from the commit."""
import os
import re
import sqlite3
import subprocess

import pytest

from test_state_memory import SLUICE, run_peak, sanitized, seed

BOUND = 8 << 20  # state.memory.bound: the smallest allowed
FACTOR = 1.5     # the goal is 1: see the docstring
EVENTS = int(os.environ.get("SLUICE_WINDOW_EVENTS", "2000000"))
SUBSCRIBERS = 8_000_000

HEAD = """
SET 'key.file' = '${data}/keys.txt';
CREATE SOURCE events (
  ts TIMESTAMP, msisdn VARCHAR, event_type VARCHAR, cell_id BIGINT,
  duration_s BIGINT, bytes BIGINT,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'file', path = '${data}/events', format = 'csv');
CREATE SINK per_subscriber WITH (connector = 'sqlite', path = '${db}',
                                 table = 'per_subscriber') AS
"""
JOB = HEAD + """
SELECT window_start, PSEUDONYMIZE(msisdn) AS sub, COUNT(*) AS events,
       COUNT(DISTINCT cell_id) AS cells, SUM(bytes) AS bytes,
       SUM(duration_s) AS call_s, MIN(ts) AS first_ts, MAX(ts) AS last_ts
FROM events
GROUP BY TUMBLE(ts, INTERVAL '1' DAY), PSEUDONYMIZE(msisdn);
"""
# the footprint: every event pseudonymised as above, but 5 groups of state
FOOTPRINT = HEAD + """
SELECT window_start, MAX(PSEUDONYMIZE(msisdn)) AS sub, COUNT(*) AS events,
       COUNT(DISTINCT cell_id) AS cells, SUM(bytes) AS bytes,
       SUM(duration_s) AS call_s, MIN(ts) AS first_ts, MAX(ts) AS last_ts
FROM events
GROUP BY TUMBLE(ts, INTERVAL '1' DAY), event_type;
"""


def gen(d, events, s):
    subprocess.run([SLUICE, *map(str, ["gen", "--out", d, "--events", events,
                                       "--subscribers", SUBSCRIBERS, "--cells", 200,
                                       "--areas", 4, "--parts", 2, "--seed", s,
                                       "--set", "span.ms=86400000"])],
                   check=True, capture_output=True)
    os.remove(os.path.join(d, "subscribers.csv"))  # 300 MB the job does not read
    subprocess.run([SLUICE, "keygen", os.path.join(d, "keys.txt")], check=True,
                   capture_output=True)


def job(sql, data, out, backend):
    return ["run", sql, "--set", f"data={data}", "--set", f"db={out}/r.db",
            "--set", f"output.dir={out}", "--set", "parallelism=2",
            "--set", f"state.backend={backend}", "--set", f"state.memory.bound={BOUND}",
            "--set", "metrics.address="]


def differ(a, b):
    """Rows of table per_subscriber in one database and not the other, both
    ways (the databases hold millions of rows: compared inside SQLite)."""
    con = sqlite3.connect(a)
    con.execute("ATTACH DATABASE ? AS other", (b,))
    n = con.execute("SELECT (SELECT COUNT(*) FROM (SELECT * FROM per_subscriber EXCEPT "
                    "SELECT * FROM other.per_subscriber)) + (SELECT COUNT(*) FROM ("
                    "SELECT * FROM other.per_subscriber EXCEPT SELECT * FROM "
                    "per_subscriber))").fetchone()[0]
    rows, events = con.execute("SELECT COUNT(*), SUM(events) FROM per_subscriber").fetchone()
    con.close()
    return n, rows, events


@pytest.mark.skipif(sanitized(), reason="RSS under a sanitizer is not the job's")
def test_window_state_on_rocksdb_keeps_rss_under_the_bound(tmp_path):
    s = seed()
    print(f"\nwindow bounded-memory test seed {s} (rerun with SLUICE_SEED={s})")
    data = str(tmp_path / "data")
    gen(data, EVENTS, s)
    sql, fsql = str(tmp_path / "job.sql"), str(tmp_path / "footprint.sql")
    with open(sql, "w") as f:
        f.write(JOB)
    with open(fsql, "w") as f:
        f.write(FOOTPRINT)
    _, footprint = run_peak(job(fsql, data, str(tmp_path / "o-small"), "rocksdb"))
    err, peak = run_peak(job(sql, data, str(tmp_path / "o-rocks"), "rocksdb"))
    stats = re.findall(r'msg="window state on RocksDB" task=\d+ peak_sst_bytes=(\d+) '
                       r'cache_writeouts=(\d+) bytes_written=(\d+)', err)
    assert len(stats) == 2, f"no window state report per task in:\n{err}"
    on_disk = sum(int(p) for p, _, _ in stats)
    writeouts = sum(int(w) for _, w, _ in stats)
    written = sum(int(b) for _, _, b in stats)
    limit = footprint + FACTOR * BOUND
    print(f"window state peak {on_disk / 2**20:.1f} MiB of SST ({on_disk / BOUND:.1f}x the "
          f"bound), {writeouts} cache evictions ({written / 2**20:.0f} MiB), peak RSS "
          f"{peak / 2**20:.1f} MiB = footprint {footprint / 2**20:.1f} MiB + "
          f"{(peak - footprint) / BOUND:.2f} x bound {BOUND >> 20} MiB (limit "
          f"{FACTOR} x)")
    assert on_disk >= 10 * BOUND, f"state is only {on_disk} bytes of SST"
    assert writeouts >= 100, "the window cache hardly evicted: the test proves little"
    assert peak <= limit, f"peak RSS {peak} > {limit}"
    _, mpeak = run_peak(job(sql, data, str(tmp_path / "o-mem"), "memory"))
    print(f"memory backend: peak RSS {mpeak / 2**20:.0f} MiB")
    assert mpeak > limit, f"the memory backend stayed within {limit} ({mpeak}): " \
                          f"the test could not fail"
    n, rows, events = differ(str(tmp_path / "o-rocks" / "r.db"),
                             str(tmp_path / "o-mem" / "r.db"))
    assert n == 0, f"{n} rows differ between the backends"
    assert rows > 10 * BOUND // 64, f"only {rows} groups"
    # an independent check of the total: every event is in one window
    total = 0
    for name in os.listdir(os.path.join(data, "events")):
        with open(os.path.join(data, "events", name)) as f:
            total += sum(1 for _ in f) - 1
    assert events == total
