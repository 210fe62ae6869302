"""PostgreSQL mode of the benchmark harness (`python3 bench/harness.py
postgres`): starts its own PostgreSQL server (tests/postgres/pgserver.py,
with PostgreSQL's durable defaults: fsync on) and measures

1. rows/s into PostgreSQL per sink mode: a SQL job copying generated events
   (ts, event_type, cell_id, duration_s, bytes) into a table, as COPY
   under exactly-once (staging + one INSERT ... SELECT per epoch), COPY
   straight into the table (at-least-once, insert) and COPY + upsert
   (at-least-once, ON CONFLICT DO UPDATE), against the SQLite sink;
2. the reference job's events/s with the PostgreSQL sink (and subscribers
   read from PostgreSQL) against SQLite.

It appends one dated entry to bench/RESULTS.md."""
import datetime
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "postgres"))
import pgserver  # noqa: E402

SLUICE = os.path.join(ROOT, "build", "sluice")
ROWS_EVENTS = 2_000_000
JOB_EVENTS, JOB_SUBS = 2_000_000, 200_000

COPY_JOB = """
CREATE SOURCE events (ts TIMESTAMP, msisdn VARCHAR, event_type VARCHAR, cell_id BIGINT,
  duration_s BIGINT, bytes BIGINT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
  WITH (connector = 'file', path = '${data}/events');
CREATE SINK rows_out WITH (%s) AS
SELECT ts, event_type, cell_id, duration_s, bytes FROM events;
"""


def gen(data, events, subs):
    stamp = os.path.join(data, "params")
    params = f"{events} {subs}"
    if os.path.exists(stamp) and open(stamp).read() == params:
        return
    shutil.rmtree(data, ignore_errors=True)
    subprocess.run([SLUICE, "gen", "--out", data, "--events", str(events), "--subscribers",
                    str(subs), "--cells", "20000", "--areas", "400", "--parts", "2",
                    "--seed", "1"], check=True, capture_output=True)
    subprocess.run([SLUICE, "keygen", os.path.join(data, "keys.txt")], check=True)
    with open(stamp, "w") as f:
        f.write(params)


def timed(argv):
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{r.stderr}")
    return wall, r.stderr


def rows_per_mode(pg, data, out):
    results = []
    modes = [
        ("postgres COPY, exactly-once (staging + INSERT ... SELECT per epoch)",
         "connector = 'postgres', dsn = '${pg}', table = 'r_eo'", "exactly-once"),
        ("postgres COPY, at-least-once (insert)",
         "connector = 'postgres', dsn = '${pg}', table = 'r_alo'", "at-least-once"),
        ("postgres COPY + upsert, at-least-once (ON CONFLICT DO UPDATE)",
         "connector = 'postgres', dsn = '${pg}', table = 'r_up', mode = 'upsert', "
         "key = 'ts,event_type,cell_id'", "at-least-once"),
        ("sqlite insert, exactly-once",
         f"connector = 'sqlite', path = '{out}/rows.db', table = 'r_eo'", "exactly-once"),
    ]
    for name, sink, delivery in modes:
        job = os.path.join(out, "copy.sql")
        with open(job, "w") as f:
            f.write(COPY_JOB % sink)
        argv = [SLUICE, "run", job, "--set", f"data={data}",
                "--set", f"delivery={delivery}", "--set", "metrics.address=off",
                "--set", f"output.dir={out}"]
        if "${pg}" in sink:
            argv += ["--set", f"pg={pg.dsn('bench')}"]
        if delivery == "exactly-once":
            argv += ["--set", f"checkpoint.dir={out}/ck-{len(results)}",
                     "--set", "checkpoint.interval.ms=2000"]
        wall, _ = timed(argv)
        table = "r_eo" if "r_eo" in sink else "r_alo" if "r_alo" in sink else "r_up"
        if name.startswith("sqlite"):
            n = int(subprocess.run(["sqlite3", f"{out}/rows.db", f"SELECT count(*) FROM {table}"],
                                   capture_output=True, text=True).stdout)
        else:
            n = int(pg.psql(f"SELECT count(*) FROM {table}", db="bench")[0][0])
        results.append((name, n, wall))
        print(f"{name}: {n} rows in {wall:.1f} s = {n / wall / 1000:.0f} k rows/s", flush=True)
    return results


def reference_job(pg, data, out):
    pg.psql("CREATE TABLE subscribers (msisdn text PRIMARY KEY, birth_date date, gender text, "
            "updated_at timestamptz NOT NULL DEFAULT now())", db="bench")
    pg.psql("CREATE TABLE s_in (msisdn text, birth_date date, gender text)", db="bench")
    pg.copy_in("s_in", os.path.join(data, "subscribers.csv"), db="bench")
    pg.psql("INSERT INTO subscribers (msisdn, birth_date, gender) SELECT * FROM s_in",
            db="bench")
    base = [SLUICE, "run", "telecom-age", "--events", os.path.join(data, "events"),
            "--cells", os.path.join(data, "cells.csv"), "--key-file",
            os.path.join(data, "keys.txt"), "--out-dir", out, "--set", "metrics.address=off"]
    runs = [("sqlite sink, subscribers from CSV",
             base + ["--subscribers", os.path.join(data, "subscribers.csv"),
                     "--db", os.path.join(out, "job.db")]),
            ("postgres sink, subscribers from CSV",
             base + ["--subscribers", os.path.join(data, "subscribers.csv"),
                     "--pg", pg.dsn("bench")]),
            ("postgres sink, subscribers from PostgreSQL",
             base + ["--set", "subscribers.pg.table=subscribers", "--pg", pg.dsn("bench")])]
    results = []
    for name, argv in runs:
        pg.psql("DROP TABLE IF EXISTS age_distribution, age_distribution__staged, "
                "sluice_epochs", db="bench")
        wall, err = timed(argv)
        line = [l for l in err.splitlines() if l.startswith("sluice: done")][0]
        rate = float(line.split("(")[1].split(" M events/s")[0])
        load = float(line.split("loaded in ")[1].split(" s")[0])
        results.append((name, rate, load, wall))
        print(f"{name}: {rate:.2f} M events/s, tables {load:.1f} s, wall {wall:.1f} s",
              flush=True)
    return results


def main(machine):
    rows_data = os.path.join(ROOT, "bench", "data", "pg-rows")
    job_data = os.path.join(ROOT, "bench", "data", "pg-job")
    gen(rows_data, ROWS_EVENTS, 1000)
    gen(job_data, JOB_EVENTS, JOB_SUBS)
    out = os.path.join(ROOT, "out", "bench-pg")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    pg = pgserver.PgServer(durable=True)
    try:
        pg.new_db("bench")
        rows = rows_per_mode(pg, rows_data, out)
        job = reference_job(pg, job_data, out)
    finally:
        pg.close()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    entry = [f"\n## {datetime.date.today().isoformat()} — PostgreSQL sink (postgres), "
             f"commit {commit}\n",
             f"- machine: {machine} (shared: other engineers' builds and tests ran at the "
             "same time, so absolute numbers are low and noisy; compare within the entry)",
             "- server: PostgreSQL 15 on the same machine (127.0.0.1, fsync on, defaults), "
             "started by bench/pg_bench.py",
             f"- rows/s into the sink: `python3 bench/harness.py postgres`, a SQL job copying "
             f"{ROWS_EVENTS:,} generated events (5 columns) into a table:"]
    for name, n, wall in rows:
        entry.append(f"  - {name}: {n:,} rows in {wall:.1f} s = **{n / wall / 1000:.0f} k rows/s**"
                     " (whole job, reading the CSV included)")
    entry.append(f"- reference job (telecom-age, {JOB_EVENTS:,} events, {JOB_SUBS:,} "
                 "subscribers, bench/data/pg-job), events/s as the job reports it (tables "
                 "loaded before):")
    for name, rate, load, wall in job:
        entry.append(f"  - {name}: **{rate:.2f} M events/s**; tables loaded in {load:.1f} s; "
                     f"wall {wall:.1f} s")
    text = "\n".join(entry) + "\n"
    with open(os.path.join(ROOT, "bench", "RESULTS.md"), "a") as f:
        f.write(text)
    print(text)
