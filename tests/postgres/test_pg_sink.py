"""The postgres sink and table source against a real server: the reference
job reads its subscribers from PostgreSQL and writes its statistics there,
and the rows equal the independent SQL reference (tests/golden/reference.sql
over the raw input, via tests/fault/harness.py) under exactly-once and
at-least-once; an existing table that does not fit is refused with a
message naming the column; a wrong password or a missing database is one
clear error at start; rows the server refuses (a CHECK constraint, a value
too long for its column) go to the dead letters with the server's message
while every other row is written."""
import json
import os
import subprocess
import time

import pytest

import harness
from conftest import RESULT_DDL, load_subscribers
from pgserver import result_rows

SLUICE = harness.SLUICE


def job_argv(ds, dsn, out, *extra):
    d = ds.data
    return [SLUICE, "run", "telecom-age", "--events", os.path.join(d, "events"),
            "--cells", os.path.join(d, "cells.csv"), "--key-file", ds.keys,
            "--set", "subscribers.pg.table=subscribers", "--pg", dsn,
            "--out-dir", out, "--parallelism", str(harness.PARTS),
            "--watermark-delay-ms", str(harness.WATERMARK_DELAY_MS), "--quiet",
            *map(str, extra)]


def run(argv, timeout=120):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return r


@pytest.mark.parametrize("delivery", ["exactly-once", "at-least-once"])
def test_reference_job_on_postgres(pg, pgdb, ds, tmp_path, delivery):
    load_subscribers(pg, pgdb, ds.data)
    r = run(job_argv(ds, pg.dsn(pgdb), tmp_path / "out", "--delivery", delivery,
                     "--checkpoint-dir", tmp_path / "ck", "--checkpoint-interval-ms", 200))
    assert r.returncode == 0, r.stderr
    got = result_rows(pg, pgdb)
    assert got == ds.reference, f"{len(got)} rows, reference {len(ds.reference)}"
    tables = {t[0] for t in pg.psql("SELECT tablename FROM pg_tables WHERE "
                                    "schemaname = 'public'", db=pgdb)}
    if delivery == "exactly-once":
        assert tables == {"age_distribution", "age_distribution__staged",
                          "sluice_epochs", "subscribers"}
        assert pg.psql("SELECT count(*) FROM age_distribution__staged", db=pgdb) == [["0"]]
        marks = pg.psql("SELECT job, sink, task, epoch > 0 FROM sluice_epochs", db=pgdb)
        assert marks == [["telecom-age", "age_distribution", "0", "t"]]
    else:
        assert tables == {"age_distribution", "subscribers"}
    # the created table: typed columns and the result's key as primary key
    cols = pg.psql("SELECT column_name, data_type FROM information_schema.columns "
                   "WHERE table_name = 'age_distribution' ORDER BY ordinal_position", db=pgdb)
    assert cols == [["window_start", "timestamp with time zone"],
                    ["window_end", "timestamp with time zone"], ["event_type", "text"],
                    ["area", "text"], ["age_band", "text"], ["events", "bigint"],
                    ["subscribers", "bigint"]]
    pk = pg.psql("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON "
                 "a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE "
                 "i.indrelid = 'age_distribution'::regclass AND i.indisprimary "
                 "ORDER BY array_position(i.indkey, a.attnum)", db=pgdb)
    assert [c[0] for c in pk] == ["window_start", "event_type", "area", "age_band"]


def test_schema_mismatch_is_refused(pg, pgdb, ds, tmp_path):
    load_subscribers(pg, pgdb, ds.data)
    pg.psql(RESULT_DDL.replace("events bigint", "events text"), db=pgdb)
    t0 = time.monotonic()
    r = run(job_argv(ds, pg.dsn(pgdb), tmp_path / "out"))
    assert r.returncode != 0
    assert time.monotonic() - t0 < 20
    assert ('postgres sink: table age_distribution: column "events" has type text, which '
            "does not hold the stream's BIGINT exactly (use bigint)") in r.stderr, r.stderr
    assert pg.psql("SELECT count(*) FROM age_distribution", db=pgdb) == [["0"]]
    # a missing column is named too
    pg.psql("DROP TABLE age_distribution", db=pgdb)
    pg.psql(RESULT_DDL.replace("subscribers bigint, ", ""), db=pgdb)
    r = run(job_argv(ds, pg.dsn(pgdb), tmp_path / "out2"))
    assert r.returncode != 0
    assert ('postgres sink: table age_distribution has no column "subscribers" '
            "(the stream's BIGINT column)") in r.stderr, r.stderr


def failure_lines(stderr):
    return [l for l in stderr.splitlines() if l.startswith("sluice: failed")
            or "error" in l.lower()]


def test_wrong_password_and_missing_database(pg, pgdb, ds, tmp_path):
    # the subscriber table is read first: its connection reports the error
    t0 = time.monotonic()
    r = run(job_argv(ds, pg.dsn(pgdb, password="wrong-pw"), tmp_path / "a"))
    assert r.returncode != 0
    assert time.monotonic() - t0 < 20
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert 'password authentication failed for user "sluice"' in lines[0]
    assert "(fatal)" in lines[0] and "wrong-pw" not in lines[0]
    r = run(job_argv(ds, pg.dsn("no_such_db"), tmp_path / "b"))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert 'database "no_such_db" does not exist' in lines[0]
    # the same for the sink alone (subscribers from the CSV file)
    d = ds.data
    r = run([SLUICE, "run", "telecom-age", "--events", os.path.join(d, "events"),
             "--subscribers", os.path.join(d, "subscribers.csv"),
             "--cells", os.path.join(d, "cells.csv"), "--key-file", ds.keys,
             "--pg", pg.dsn(pgdb, password="wrong-pw"), "--out-dir", tmp_path / "c",
             "--quiet"])
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "postgres: cannot connect" in lines[0]
    assert 'password authentication failed for user "sluice"' in lines[0]


def dead_letters(out):
    path = os.path.join(out, "dead-letters.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


@pytest.mark.parametrize("delivery", ["exactly-once", "at-least-once"])
def test_refused_rows_go_to_dead_letters(pg, pgdb, ds, tmp_path, delivery):
    """A CHECK constraint refuses the busiest groups (SQLSTATE 23514), a
    varchar(5) age_band the band 'unknown' (value too long, 22001): under
    exactly-once when the epoch is applied from staging, under
    at-least-once in the COPY itself."""
    load_subscribers(pg, pgdb, ds.data)
    events = sorted(r[5] for r in ds.reference)
    limit = events[len(events) * 98 // 100]  # about 2 % of the rows refused
    pg.psql(RESULT_DDL.replace("events bigint", f"events bigint CONSTRAINT few_events "
                               f"CHECK (events < {limit})")
            .replace("age_band text", "age_band varchar(5)"), db=pgdb)
    out = tmp_path / "out"
    r = run(job_argv(ds, pg.dsn(pgdb), out, "--delivery", delivery,
                     "--checkpoint-dir", tmp_path / "ck", "--checkpoint-interval-ms", 200))
    assert r.returncode == 0, r.stderr
    # age band '0-17' .. '65+' fit varchar(5); 'unknown' (7) does not
    def fits(row):
        return row[5] < limit and len(row[4]) <= 5
    want = [row for row in ds.reference if fits(row)]
    refused = [row for row in ds.reference if not fits(row)]
    assert refused and want
    assert result_rows(pg, pgdb) == want
    letters = dead_letters(out)
    assert len(letters) == len(refused), letters[:3]
    by_reason = {}
    for l in letters:
        assert l["source"] == "postgres sink age_distribution"
        by_reason.setdefault("check" if "few_events" in l["reason"] else "long", []).append(l)
        assert l["reason"].startswith("postgres_rejected: ")
    n_check = sum(1 for row in refused if row[5] >= limit)
    assert len(by_reason.get("check", [])) == n_check
    for l in by_reason.get("check", []):
        assert 'violates check constraint "few_events"' in l["reason"]
        assert "SQLSTATE 23514" in l["reason"]
    for l in by_reason.get("long", []):
        assert "value too long for type character varying(5)" in l["reason"]
        assert "SQLSTATE 22001" in l["reason"]
    # the payload is the row as the sink sent it: its key shows which one
    keys = sorted((l["payload"].split("\t")[2], l["payload"].split("\t")[3],
                   l["payload"].split("\t")[4]) for l in letters)
    assert keys == sorted((row[2], row[3], row[4]) for row in refused)


def test_sql_job_on_postgres(pg, pgdb, ds, tmp_path):
    """examples/telecom/age_distribution_pg.sql: CREATE TABLE ... WITH
    (connector = 'postgres') for the subscribers and CREATE SINK ... WITH
    (connector = 'postgres') for the results."""
    load_subscribers(pg, pgdb, ds.data)
    example = os.path.join(harness.golden_conftest.ROOT, "examples", "telecom",
                           "age_distribution_pg.sql")
    r = run([SLUICE, "run", example, "--set", f"data={ds.data}", "--set",
             f"pg={pg.dsn(pgdb)}", "--set", f"output.dir={tmp_path / 'out'}",
             "--set", "metrics.address=off", "--set", "parallelism=2"])
    assert r.returncode == 0, r.stderr
    got = result_rows(pg, pgdb)
    assert got == ds.reference, f"{len(got)} rows, reference {len(ds.reference)}"
