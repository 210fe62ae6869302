"""Golden tests of SQL jobs. Each folder tests/golden/<name>/ with a job.sql
holds the raw input under input/ and a reference.sql that computes the
expected rows with SQLite over that raw input (never a saved copy of
sluice's output). The job runs with --set dir=<folder> --set out=<tmp> and
writes table `result` to <tmp>/result.db. Input import: a .csv file becomes
a table of its columns (text), a .jsonl file a table of one `line` column;
the table is named after the file.

The SQL reference job (examples/telecom/age_distribution.sql) is also run on
generated input and must equal both the C reference job (`sluice run
telecom-age`) and tests/golden/reference.sql."""
import glob
import os
import sqlite3

import pytest

from conftest import ROOT, sluice, sqlite_import
from test_golden import reference_rows, run_job

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = sorted(os.path.basename(os.path.dirname(p))
               for p in glob.glob(os.path.join(HERE, "*", "job.sql")))


def import_inputs(db, folder):
    for path in sorted(glob.glob(os.path.join(folder, "input", "*"))):
        name, ext = os.path.splitext(os.path.basename(path))
        if ext == ".csv":
            sqlite_import(db, name, [path])
        elif ext == ".jsonl":
            con = sqlite3.connect(db)
            con.execute(f"CREATE TABLE {name}(line TEXT)")
            with open(path) as f:
                con.executemany(f"INSERT INTO {name} VALUES (?)",
                                ((l.rstrip("\n"),) for l in f if l.strip()))
            con.commit()
            con.close()


def rows(db, table):
    con = sqlite3.connect(db)
    cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})")
            if not r[1].startswith("sluice_")]
    out = con.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
    con.close()
    return cols, sorted(out, key=repr)


@pytest.mark.parametrize("name", CASES)
def test_sql_golden(tmp_path, name):
    folder = os.path.join(HERE, name)
    out = tmp_path / "out"
    sluice("run", os.path.join(folder, "job.sql"), "--set", f"dir={folder}", "--set",
           f"out={out}", "--set", f"output.dir={out}", "--quiet")
    ref = str(tmp_path / "ref.db")
    import_inputs(ref, folder)
    con = sqlite3.connect(ref)
    with open(os.path.join(folder, "reference.sql")) as f:
        con.executescript(f.read())
    con.close()
    got_cols, got = rows(str(out / "result.db"), "result")
    want_cols, want = rows(ref, "expected")
    assert got_cols == want_cols
    assert len(want) > 5, "the input should produce several groups"
    assert got == want


def test_examples_explain():
    for f in ("telecom/age_distribution.sql", "twitter/hello_twitter.sql", "yahoo/yahoo.sql"):
        r = sluice("explain", os.path.join(ROOT, "examples", f), cwd=ROOT)
        assert "stage 1" in r.stdout and "sink" in r.stdout


def test_sql_reference_job_equals_c_job_and_reference(tmp_path, seed):
    data = str(tmp_path / "data")
    sluice("gen", "--out", data, "--events", 150000, "--subscribers", 4000, "--cells", 150,
           "--areas", 5, "--parts", 3, "--seed", seed + 7, "--set", "span.ms=1800000")
    sluice("keygen", os.path.join(data, "keys.txt"))
    c_out = str(tmp_path / "c")
    run_job(data, c_out, "--parallelism", 2)
    s_out = tmp_path / "s"
    sluice("run", os.path.join(ROOT, "examples", "telecom", "age_distribution.sql"),
           "--set", f"data={data}", "--set", f"db={s_out}/result.db",
           "--set", f"output.dir={s_out}", "--set", "parallelism=3", "--quiet")
    q = ("SELECT window_start, window_end, event_type, area, age_band, events, subscribers "
         "FROM age_distribution")
    con = sqlite3.connect(os.path.join(c_out, "result.db"))
    c_rows = sorted(con.execute(q).fetchall())
    con.close()
    con = sqlite3.connect(str(s_out / "result.db"))
    s_rows = sorted(con.execute(q).fetchall())
    con.close()
    assert len(c_rows) > 100
    assert s_rows == c_rows
    assert s_rows == reference_rows(str(tmp_path), data)


def test_sql_error_shows_place(tmp_path):
    job = tmp_path / "bad.sql"
    job.write_text("CREATE SOURCE s (ts TIMESTAMP, x BIGINT) WITH (connector='file', "
                   "path='x');\nCREATE SINK k WITH (connector='stdout') AS\n"
                   "SELECT window_start, COUNT(*) AS n FROM s GROUP BY TUMBLE(tss, "
                   "INTERVAL '1' SECOND);\n")
    r = sluice("run", str(job), check=False)
    assert r.returncode == 2
    assert f"{job}:3:59: unknown time column 'tss' in source 's'; did you mean 'ts'?" in r.stderr
    assert "^" in r.stderr


def test_sql_differential_privacy_equals_c_job(tmp_path, seed):
    """The dp_* sink options give the same noisy release as the C job's
    dp.* options (same PRF inputs: job name, window, group, column), for
    both mechanisms; wrong or missing options are errors naming the key."""
    data = str(tmp_path / "data")
    # one partition: which c events of a subscriber are kept follows arrival order
    sluice("gen", "--out", data, "--events", 60000, "--subscribers", 3000, "--cells", 100,
           "--areas", 4, "--parts", 1, "--seed", seed + 21, "--set", "span.ms=600000")
    sluice("keygen", os.path.join(data, "keys.txt"))
    text = open(os.path.join(ROOT, "examples", "telecom", "age_distribution.sql")).read()
    text = "SET 'name' = 'telecom-age';\n" + text
    q = ("SELECT window_start, window_end, event_type, area, age_band, events, subscribers "
         "FROM age_distribution")

    def sql_run(name, opts, check=True):
        job = tmp_path / f"{name}.sql"
        job.write_text(text.replace("k_column = 'subscribers'",
                                    "k_column = 'subscribers', " + opts))
        out = tmp_path / name
        r = sluice("run", str(job), "--set", f"data={data}", "--set", f"db={out}/result.db",
                   "--set", f"output.dir={out}", "--set", "parallelism=1", "--quiet",
                   check=check)
        return r, out

    plain = reference_rows(str(tmp_path), data)
    releases = {}
    for mech, c_extra, s_extra in (
            ("laplace", [], ""),
            ("gaussian", ["--set", "dp.mechanism=gaussian", "--set", "dp.delta=1e-6"],
             ", dp_mechanism = 'gaussian', dp_delta = '1e-6'")):
        c_out = str(tmp_path / f"c-{mech}")
        run_job(data, c_out, "--parallelism", 1, "--set", "dp.epsilon=1", "--set",
                "dp.max.contrib=5", "--set", "dp.budget=20", *c_extra)
        _, s_out = sql_run(mech, "dp_epsilon = '1', dp_max_contrib = '5', dp_budget = '20', "
                           "dp_subscriber = 'msisdn', dp_columns = 'events, subscribers'"
                           + s_extra)
        con = sqlite3.connect(os.path.join(c_out, "result.db"))
        c_rows = sorted(con.execute(q).fetchall())
        con.close()
        con = sqlite3.connect(str(s_out / "result.db"))
        s_rows = sorted(con.execute(q).fetchall())
        con.close()
        assert len(c_rows) > 10 and s_rows == c_rows, mech
        assert s_rows != plain, "the release must be noised"
        releases[mech] = s_rows
    assert releases["laplace"] != releases["gaussian"]
    r = sluice("explain", str(tmp_path / "gaussian.sql"), "--set", f"data={data}")
    assert "dp_bound: at most 5 events per subscriber" in r.stdout
    assert "dp_noise (Gaussian, epsilon 1, delta 1e-06 per release) on events, subscribers" \
        in r.stdout
    r, _ = sql_run("missing", "dp_epsilon = '1', dp_subscriber = 'msisdn'", check=False)
    assert r.returncode != 0 and "dp_max_contrib" in r.stderr and "dp_budget" in r.stderr
    r, _ = sql_run("badmech", "dp_epsilon = '1', dp_max_contrib = '5', dp_budget = '20', "
                   "dp_subscriber = 'msisdn', dp_mechanism = 'gauss'", check=False)
    assert r.returncode != 0 and "'dp_mechanism' must be one of laplace|gaussian" in r.stderr
    r, _ = sql_run("nodelta", "dp_epsilon = '1', dp_max_contrib = '5', dp_budget = '20', "
                   "dp_subscriber = 'msisdn', dp_mechanism = 'gaussian'", check=False)
    assert r.returncode != 0 and "delta" in r.stderr
    r, _ = sql_run("rawsub", "dp_epsilon = '1', dp_max_contrib = '5', dp_budget = '20', "
                   "dp_subscriber = 'cell_id'", check=False)
    assert r.returncode != 0 and "PSEUDONYMIZE(cell_id)" in r.stderr


def test_sql_approx_percentile_within_its_bound(tmp_path, seed):
    """APPROX_PERCENTILE (a DDSketch with 1 % relative error): call-duration
    p50/p95/p99 per area and minute against the exact quantiles computed
    here from the raw input; the same result at another parallelism."""
    import csv
    import math
    data = str(tmp_path / "data")
    sluice("gen", "--out", data, "--events", 80000, "--subscribers", 3000, "--cells", 60,
           "--areas", 3, "--parts", 2, "--seed", seed + 31, "--set", "span.ms=600000")
    job = tmp_path / "q.sql"
    job.write_text(f"""
CREATE SOURCE events (ts TIMESTAMP, msisdn VARCHAR, event_type VARCHAR, cell_id BIGINT,
  duration_s BIGINT, bytes BIGINT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
  WITH (connector = 'file', path = '{data}/events');
CREATE TABLE cells (cell_id BIGINT, area VARCHAR, PRIMARY KEY (cell_id))
  WITH (connector = 'file', path = '{data}/cells.csv');
CREATE SINK q WITH (connector = 'sqlite', path = '${{db}}', table = 'q') AS
SELECT window_start, c.area AS area, COUNT(duration_s) AS n,
       APPROX_PERCENTILE(duration_s, 0.5) AS p50, APPROX_PERCENTILE(duration_s, 0.95) AS p95,
       APPROX_PERCENTILE(duration_s, 0.99, 0.001) AS p99
FROM events AS e JOIN cells FOR SYSTEM_TIME AS OF e.ts AS c ON c.cell_id = e.cell_id
WHERE e.event_type IN ('CALL_PLACED', 'CALL_RECEIVED')
GROUP BY TUMBLE(e.ts, INTERVAL '1' MINUTE), c.area;
""")
    areas = {}
    with open(os.path.join(data, "cells.csv")) as f:
        for r in csv.DictReader(f):
            areas[r["cell_id"]] = r["area"]
    groups = {}
    for path in glob.glob(os.path.join(data, "events", "*.csv")):
        with open(path) as f:
            for r in csv.DictReader(f):
                if r["event_type"] in ("CALL_PLACED", "CALL_RECEIVED") and r["duration_s"]:
                    key = (int(r["ts"]) // 60000 * 60000, areas[r["cell_id"]])
                    groups.setdefault(key, []).append(int(r["duration_s"]))
    results = []
    for par in (1, 3):
        db = tmp_path / f"q{par}.db"
        sluice("run", str(job), "--set", f"db={db}", "--set", f"parallelism={par}",
               "--set", f"output.dir={tmp_path}/out{par}", "--quiet")
        con = sqlite3.connect(str(db))
        results.append(sorted(con.execute(
            "SELECT window_start, area, n, p50, p95, p99 FROM q").fetchall()))
        con.close()
    assert results[0] == results[1], "order-independent sketch: same at any parallelism"
    assert len(results[0]) == len(groups) > 20
    for ws, area, n, p50, p95, p99 in results[0]:
        vals = sorted(groups[(ws, area)])
        assert n == len(vals)
        for q, got, err in ((0.5, p50, 0.01), (0.95, p95, 0.01), (0.99, p99, 0.001)):
            want = vals[math.floor(q * (len(vals) - 1))]
            assert abs(got - want) <= err * want + 1e-9, (ws, area, q, got, want)


def test_sql_session_windows_equal_reference(tmp_path, seed):
    """GROUP BY SESSION(ts, INTERVAL '20' SECOND), cell_id: per cell, events
    closer than the gap form one session; checked against sessions built
    here from the raw input, at two parallelisms."""
    import csv
    data = str(tmp_path / "data")
    sluice("gen", "--out", data, "--events", 20000, "--subscribers", 500, "--cells", 40,
           "--areas", 2, "--parts", 2, "--seed", seed + 41, "--set", "span.ms=1800000")
    gap = 20000
    job = tmp_path / "s.sql"
    job.write_text(f"""
CREATE SOURCE events (ts TIMESTAMP, msisdn VARCHAR, event_type VARCHAR, cell_id BIGINT,
  duration_s BIGINT, bytes BIGINT, WATERMARK FOR ts AS ts - INTERVAL '1' HOUR)
  WITH (connector = 'file', path = '{data}/events');
CREATE SINK s WITH (connector = 'sqlite', path = '${{db}}', table = 's') AS
SELECT window_start, window_end, cell_id, COUNT(*) AS n, MAX(ts) AS last_ts
FROM events GROUP BY SESSION(ts, INTERVAL '20' SECOND), cell_id;
""")
    per_cell = {}
    for path in glob.glob(os.path.join(data, "events", "*.csv")):
        with open(path) as f:
            for r in csv.DictReader(f):
                per_cell.setdefault(int(r["cell_id"]), []).append(int(r["ts"]))
    want = []
    for cell, ts in per_cell.items():
        ts.sort()
        start = last = ts[0]
        n = 1
        for t in ts[1:]:
            if t <= last + gap:   # [t, t + gap) touches [start, last + gap)
                last, n = t, n + 1
            else:
                want.append((start, last + gap, cell, n, last))
                start = last = t
                n = 1
        want.append((start, last + gap, cell, n, last))
    want.sort()
    for par in (1, 2):
        db = tmp_path / f"s{par}.db"
        sluice("run", str(job), "--set", f"db={db}", "--set", f"parallelism={par}",
               "--set", f"output.dir={tmp_path}/out{par}", "--quiet")
        con = sqlite3.connect(str(db))
        got = sorted(con.execute("SELECT window_start, window_end, cell_id, n, last_ts FROM s"))
        con.close()
        assert len(want) > 100 and got == want
    r = sluice("explain", str(job), "--set", "db=x.db")
    assert "window SESSION gap 20000 ms" in r.stdout
