"""Kill -9 and recovery of the interval join (SQL form, exactly-once): the
job is killed once a checkpoint is complete, restarted at another
parallelism (its join state is restored by key group), and its finished
output must equal the join computed by sqlite3 over the raw input, with
every pair exactly once (no pair lost or repeated across the crash). The
moment of the kill comes from the commit's seed (printed)."""
import glob
import os
import random
import sqlite3
import time

from harness import SLUICE, Life, complete_checkpoints, poll, sluice, sqlite_import

JOB = """
SET 'key.file' = '${data}/keys.txt';
CREATE SOURCE events (ts TIMESTAMP, msisdn VARCHAR, event_type VARCHAR, cell_id BIGINT,
  duration_s BIGINT, bytes BIGINT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
  WITH (connector = 'file', path = '${data}/events');
CREATE SINK call_then_data WITH (connector = 'sqlite', path = '${db}', table = 'pairs') AS
SELECT a.ts AS call_ts, a.cell_id AS call_cell, b.ts AS data_ts, b.bytes AS bytes
FROM events AS a JOIN events AS b
  ON PSEUDONYMIZE(a.msisdn) = PSEUDONYMIZE(b.msisdn)
 AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '5' MINUTE
WHERE a.event_type = 'CALL_PLACED' AND b.event_type = 'DATA_SESSION';
"""

REFERENCE = """
SELECT CAST(a.ts AS INTEGER), CAST(a.cell_id AS INTEGER), CAST(b.ts AS INTEGER),
       CAST(b.bytes AS INTEGER)
FROM events AS a JOIN events AS b
  ON a.msisdn = b.msisdn
 AND CAST(b.ts AS INTEGER) BETWEEN CAST(a.ts AS INTEGER) AND CAST(a.ts AS INTEGER) + 300000
WHERE a.event_type = 'CALL_PLACED' AND b.event_type = 'DATA_SESSION'
"""


def test_interval_join_kill_and_rescale(tmp_path, procs, seed):
    data = str(tmp_path / "data")
    sluice("gen", "--out", data, "--events", 30000, "--subscribers", 600, "--cells", 30,
           "--areas", 3, "--parts", 4, "--seed", 4242, "--set", "span.ms=1200000")
    sluice("keygen", os.path.join(data, "keys.txt"))
    ref = str(tmp_path / "ref.db")
    sqlite_import(ref, "events", sorted(glob.glob(os.path.join(data, "events", "*.csv"))))
    con = sqlite3.connect(ref)
    want = sorted(con.execute(REFERENCE).fetchall())
    con.close()
    assert len(want) > 1000

    job = tmp_path / "ijoin.sql"
    job.write_text(JOB)
    ckdir, db, out = str(tmp_path / "ck"), str(tmp_path / "r.db"), str(tmp_path / "out")

    def start(n, parallelism, rate):
        argv = [SLUICE, "run", str(job), "--set", f"data={data}",
                "--set", f"db={db}", "--set", f"output.dir={out}",
                "--set", f"parallelism={parallelism}", "--set", f"checkpoint.dir={ckdir}",
                "--set", "checkpoint.interval.ms=150", "--set", f"source.rate={rate}",
                "--set", "metrics.address=off"]
        life = Life(None, argv, dict(os.environ), str(tmp_path / f"life-{n}.log"))
        procs.append(life)
        return life

    rnd = random.Random(seed)
    # rate-limited (2 source tasks x 2000 rows/s: about 7.5 s) and killed at
    # a random moment in its second half (when pairs are being committed),
    # once a checkpoint is complete; load only slows the job down, so the
    # kill still lands before its end
    first = start(0, 2, 2000)
    first.wait_until(rnd.uniform(4.5, 6.0))
    assert poll(lambda: complete_checkpoints(ckdir) or not first.running(), 30)
    rc = first.kill()
    assert rc != 0, f"the first life ended before the kill: {first.describe()}"
    try:
        con = sqlite3.connect(db)
        before = con.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
        con.close()
    except sqlite3.Error:
        before = 0
    print(f"interval join: killed at {first.killed_at:.2f} s with {before} of {len(want)} "
          f"pairs committed, newest checkpoint {max(complete_checkpoints(ckdir) or [0])}")
    second = start(1, 3, 0)
    second.expect_success()
    assert second.restored() is not None, second.describe()
    con = sqlite3.connect(db)
    got = sorted(con.execute("SELECT call_ts, call_cell, data_ts, bytes FROM pairs"))
    con.close()
    assert got == want
