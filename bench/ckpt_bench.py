#!/usr/bin/env python3
"""Checkpoint size and time, full vs incremental (issue 6): one
per-subscriber job whose state grows through the run (a day-long tumbling
window per pseudonym: COUNT, COUNT(DISTINCT cell_id), SUM(bytes); nothing
fires before the end of input), checkpointed every second, run three ways:

  memory                the memory backend (full checkpoints)
  rocksdb-full          state.backend=rocksdb, state.checkpoints.incremental=false
  rocksdb-incremental   state.backend=rocksdb (incremental, the default)

From the "checkpoint completed" log lines (ckpt.c) it prints, per
configuration, the state's size at the last checkpoint (bytes a restore
needs), the median bytes a checkpoint writes, the bytes all checkpoints
wrote together, and the median and largest checkpoint duration (trigger to
manifest). A Markdown table for bench/RESULTS.md; not a test.

  python3 bench/ckpt_bench.py DATA [--events 600000] [--rate 20000]

DATA is generated when missing (`sluice gen ... --set span.ms=86400000`).
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")

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
GROUP BY TUMBLE(ts, INTERVAL '1' DAY), PSEUDONYMIZE(msisdn);
"""

CONFIGS = [
    ("memory", ["--set", "state.backend=memory"]),
    ("rocksdb-full", ["--set", "state.backend=rocksdb",
                      "--set", "state.checkpoints.incremental=false"]),
    ("rocksdb-incremental", ["--set", "state.backend=rocksdb"]),
]

LINE = re.compile(r'msg="checkpoint completed" epoch=(\d+) ms=(\d+) snapshot_bytes=(\d+) '
                  r'new_bytes=(\d+) referenced_bytes=(\d+)')


def gen(data, events):
    if os.path.isdir(os.path.join(data, "events")):
        return
    subprocess.run([SLUICE, "gen", "--out", data, "--events", str(events),
                    "--subscribers", "1000000", "--cells", "2000", "--areas", "40",
                    "--parts", "2", "--seed", "1", "--set", "span.ms=86400000"],
                   check=True, capture_output=True)
    subprocess.run([SLUICE, "keygen", os.path.join(data, "keys.txt")], check=True,
                   capture_output=True)


def mib(b):
    return f"{b / 1048576:.1f} MiB"


def run(data, name, extra, rate, tmp):
    out = os.path.join(tmp, name)
    sql = os.path.join(tmp, "job.sql")
    with open(sql, "w") as f:
        f.write(JOB)
    cmd = [SLUICE, "run", sql, "--set", f"data={data}", "--set", f"db={out}/r.db",
           "--set", f"output.dir={out}", "--set", "parallelism=2",
           "--set", f"checkpoint.dir={out}/ck", "--set", "checkpoint.interval.ms=1000",
           "--set", f"source.rate={rate}", "--set", "metrics.address=",
           "--set", "log.level=debug", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{name} failed: {r.stderr[-2000:]}")
    cks = [tuple(int(x) for x in m.groups()) for m in LINE.finditer(r.stderr)]
    rows = subprocess.run(["sqlite3", f"{out}/r.db",
                           "SELECT count(*), sum(events), sum(cells) FROM per_subscriber"],
                          capture_output=True, text=True, check=True).stdout.strip()
    shutil.rmtree(out, ignore_errors=True)
    # up to the largest state: the windows fire at the end of input, and
    # the checkpoints after that hold nothing
    if cks:
        top = max(range(len(cks)), key=lambda i: cks[i][4])
        cks = cks[:top + 1]
    return cks, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--events", type=int, default=600000)
    ap.add_argument("--rate", type=int, default=20000)
    a = ap.parse_args()
    gen(a.data, a.events)
    print("| configuration | checkpoints | state at the largest (referenced) | "
          "written per checkpoint (median) | written by all | duration median / max | result |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in CONFIGS:
            cks, rows = run(os.path.abspath(a.data), name, extra, a.rate, tmp)
            if not cks:
                print(f"| {name} | 0 | | | | | {rows} |")
                continue
            ms = [c[1] for c in cks]
            new = [c[3] for c in cks]
            print(f"| {name} | {len(cks)} | {mib(cks[-1][4])} | "
                  f"{mib(statistics.median(new))} | {mib(sum(new))} | "
                  f"{statistics.median(ms):.0f} / {max(ms)} ms | {rows} |")


if __name__ == "__main__":
    main()
