"""Golden tests of the interval join in SQL (docs/sql.md, "Stream joins"):
CALL_PLACED joined with the DATA_SESSIONs of the same pseudonymised
subscriber within the following 5 minutes, on generated telecom data, at
two parallelisms, against the same join computed by sqlite3 over the raw
input (joined there on the raw msisdn). Only non-identifying columns are
compared (call time and cell, data time and bytes); the pseudonym column
the job also writes is checked to group the pairs exactly as the raw
msisdn does, and never to hold a raw msisdn. Unsupported forms fail with
their line and column; `sluice explain` shows the join."""
import collections
import glob
import os
import sqlite3

import pytest

from conftest import sluice, sqlite_import

JOB = """
SET 'key.file' = '${data}/keys.txt';
CREATE SOURCE events (ts TIMESTAMP, msisdn VARCHAR, event_type VARCHAR, cell_id BIGINT,
  duration_s BIGINT, bytes BIGINT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
  WITH (connector = 'file', path = '${data}/events');
CREATE SINK call_then_data WITH (connector = 'sqlite', path = '${db}', table = 'pairs') AS
SELECT a.ts AS call_ts, a.cell_id AS call_cell, b.ts AS data_ts, b.bytes AS bytes,
       PSEUDONYMIZE(a.msisdn) AS sub
FROM events AS a JOIN events AS b
  ON PSEUDONYMIZE(a.msisdn) = PSEUDONYMIZE(b.msisdn)
 AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '5' MINUTE
WHERE a.event_type = 'CALL_PLACED' AND b.event_type = 'DATA_SESSION';
"""

REFERENCE = """
SELECT CAST(a.ts AS INTEGER), CAST(a.cell_id AS INTEGER), CAST(b.ts AS INTEGER),
       CAST(b.bytes AS INTEGER), a.msisdn
FROM events AS a JOIN events AS b
  ON a.msisdn = b.msisdn
 AND CAST(b.ts AS INTEGER) BETWEEN CAST(a.ts AS INTEGER) AND CAST(a.ts AS INTEGER) + 300000
WHERE a.event_type = 'CALL_PLACED' AND b.event_type = 'DATA_SESSION'
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory, seed):
    d = str(tmp_path_factory.mktemp("ijoin-data"))
    # out-of-order jitter (2 s) below the watermark delay (5 s): no late rows
    sluice("gen", "--out", d, "--events", 40000, "--subscribers", 800, "--cells", 40,
           "--areas", 3, "--parts", 3, "--seed", seed + 41, "--set", "span.ms=1200000",
           "--set", "out.of.order.ms=2000")
    sluice("keygen", os.path.join(d, "keys.txt"))
    ref = os.path.join(d, "ref.db")
    sqlite_import(ref, "events", sorted(glob.glob(os.path.join(d, "events", "*.csv"))))
    con = sqlite3.connect(ref)
    want = con.execute(REFERENCE).fetchall()
    raw = {r[0] for r in con.execute("SELECT DISTINCT msisdn FROM events")}
    con.close()
    return d, want, raw


def run(tmp_path, data_dir, name, *sets, text=JOB):
    job = tmp_path / f"{name}.sql"
    job.write_text(text)
    out = tmp_path / name
    r = sluice("run", str(job), "--set", f"data={data_dir}", "--set", f"db={out}/r.db",
               "--set", f"output.dir={out}", "--quiet", *sets)
    return r, str(out / "r.db")


@pytest.mark.parametrize("parallelism", [1, 3])
def test_interval_join_equals_sqlite(tmp_path, data, parallelism):
    d, want, raw = data
    _, db = run(tmp_path, d, f"p{parallelism}", "--set", f"parallelism={parallelism}")
    con = sqlite3.connect(db)
    got = con.execute("SELECT call_ts, call_cell, data_ts, bytes, sub FROM pairs").fetchall()
    con.close()
    assert len(want) > 1000, "the input should produce many pairs"
    assert sorted(r[:4] for r in got) == sorted(r[:4] for r in want)
    # the pseudonym groups the pairs exactly as the raw msisdn does ...
    def groups(rows):
        by = collections.defaultdict(list)
        for r in rows:
            by[r[4]].append(r[:4])
        return sorted(sorted(v) for v in by.values())
    assert groups(got) == groups(want)
    # ... and no raw identifier reaches the sink
    assert not ({str(r[4]) for r in got} & raw)
    with open(db, "rb") as f:
        blob = f.read()
    assert not any(m.encode() in blob for m in list(raw)[:200])


def test_interval_join_bounds_and_explain(tmp_path, data):
    """Strict and negative bounds, a.ts BETWEEN b.ts - ... form: the pairs
    with b within (call - 1 min, call + 2 min], again against sqlite3."""
    d, _, _ = data
    text = JOB.replace(
        "b.ts BETWEEN a.ts AND a.ts + INTERVAL '5' MINUTE",
        "a.ts BETWEEN b.ts - INTERVAL '2' MINUTE AND b.ts + INTERVAL '1' MINUTE "
        "AND b.ts > a.ts - INTERVAL '1' MINUTE")
    job = tmp_path / "explain.sql"
    job.write_text(text)
    r = sluice("explain", str(job), "--set", f"data={d}", "--set", "db=x.db")
    assert "interval join events AS a with events AS b" in r.stdout
    assert "b.ts - a.ts in [-59999, 120000] ms" in r.stdout
    _, db = run(tmp_path, d, "bounds", "--set", "parallelism=2", text=text)
    con = sqlite3.connect(db)
    got = sorted(con.execute("SELECT call_ts, call_cell, data_ts, bytes FROM pairs"))
    con.close()
    con = sqlite3.connect(os.path.join(d, "ref.db"))
    want = sorted(con.execute(
        REFERENCE.replace("a.msisdn\n", "1\n").replace(
            "BETWEEN CAST(a.ts AS INTEGER) AND CAST(a.ts AS INTEGER) + 300000",
            "> CAST(a.ts AS INTEGER) - 60000 AND CAST(b.ts AS INTEGER) <= "
            "CAST(a.ts AS INTEGER) + 120000")))
    con.close()
    assert len(want) > 1000
    assert got == [r[:4] for r in want]


ERRORS = [
    ("ON PSEUDONYMIZE(a.msisdn) = PSEUDONYMIZE(b.msisdn)",
     "ON a.msisdn = b.msisdn",
     "10:6: column 'msisdn' is pseudonymised in this job"),
    ("AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '5' MINUTE",
     "AND b.ts >= a.ts",
     "11:2: a stream join needs both bounds on the event times"),
    ("AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '5' MINUTE",
     "AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '5' MINUTE AND a.cell_id < b.cell_id",
     "11:69: this condition over both sides is not supported"),
    ("WHERE a.event_type", "WHERE event_type",
     "12:7: column 'event_type' is ambiguous in a join of 'events' with itself"),
    ("JOIN events AS b", "JOIN events AS a",
     "9:18: a join of 'events' with itself needs two aliases"),
    ("ON PSEUDONYMIZE(a.msisdn) = PSEUDONYMIZE(b.msisdn)",
     "ON a.cell_id = b.cell_id AND a.event_type = b.event_type",
     "10:32: the key of a stream join is kept in its state: a VARCHAR key must be a "
     "pseudonym"),
    ("'DATA_SESSION';", "'DATA_SESSION' GROUP BY TUMBLE(a.ts, INTERVAL '1' MINUTE);",
     "12:79: aggregating the output of a stream join is not supported yet"),
]


@pytest.mark.parametrize("old,new,msg", ERRORS)
def test_interval_join_errors(tmp_path, data, old, new, msg):
    d, _, _ = data
    assert old in JOB
    job = tmp_path / "bad.sql"
    job.write_text(JOB.replace(old, new))
    r = sluice("run", str(job), "--set", f"data={d}", "--set", "db=x.db", check=False)
    assert r.returncode == 2, r.stderr
    assert f"{job}:{msg}" in r.stderr


def test_examples_c_and_sql_agree(tmp_path, data):
    """examples/telecom/call_then_data.c (the C API) and .sql give the
    reference's pairs."""
    import subprocess
    from conftest import ROOT, SLUICE, link_libs
    d, want, _ = data
    exe = str(tmp_path / "call_then_data")
    libs = link_libs()
    # the library of `make sanitize` (build-asan/) needs the sanitizers' runtime
    bdir = os.path.dirname(SLUICE)
    san = (["-fsanitize=address,undefined"] if "asan" in bdir else
           ["-fsanitize=thread"] if "tsan" in bdir else [])
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror",
                    "-I" + os.path.join(ROOT, "include"),
                    os.path.join(ROOT, "examples", "telecom", "call_then_data.c"),
                    os.path.join(os.path.dirname(SLUICE), "libsluice.a"),
                    *libs, "-lpthread", "-lm", "-o", exe, *san], check=True)
    cdb = str(tmp_path / "c.db")
    subprocess.run([exe, d, cdb], check=True, capture_output=True)
    sql = os.path.join(ROOT, "examples", "telecom", "call_then_data.sql")
    r = sluice("explain", sql, "--set", f"data={d}", "--set", "db=x.db")
    assert "interval join events AS a with events AS b" in r.stdout
    sdb = str(tmp_path / "s.db")
    sluice("run", sql, "--set", f"data={d}", "--set", f"db={sdb}", "--set",
           f"output.dir={tmp_path}/s", "--set", "parallelism=2", "--quiet")
    q = "SELECT call_ts, call_cell, data_ts, bytes FROM pairs"
    ref = sorted(r[:4] for r in want)
    for db in (cdb, sdb):
        con = sqlite3.connect(db)
        assert sorted(con.execute(q).fetchall()) == ref, db
        con.close()
