"""Golden tests of the SQL form of the venue report
(examples/venues/venue_report.sql, docs/venues.md "The report in SQL"):
on generated data with a staged crowd, the SQL job publishes exactly the
rows of `sluice run venue-report` on the same input — every emission of the
history (insert mode: early firings, final rows, slices), and the upserted
table with gender split, time blurring and a projection that renames and
reorders columns. `sluice run venue-report` is itself checked against the
independent SQLite reference (venue_reference.sql) by test_venue_golden.py,
so equal rows here mean the SQL form meets that reference too. Also: the
staged crowd's age skew shows in the SQL job's final rows, `sluice explain`
shows the venue operators, and unsupported forms are errors at their line
and column.
"""
import collections
import os
import sqlite3

import pytest

from conftest import commit_seed, sluice
from test_venue_golden import quiet_cells, write_venues

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EXAMPLE = os.path.join(ROOT, "examples", "venues", "venue_report.sql")
K = 16
EVERY = 600000
SLICE = 900000


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    seed = commit_seed()
    print(f"\nvenue SQL golden tests use seed {seed} (rerun with SLUICE_SEED={seed})")
    tmp = str(tmp_path_factory.mktemp("vsql"))
    d = os.path.join(tmp, "data")
    gen = ["gen", "--out", d, "--events", 150000, "--subscribers", 15000, "--cells", 400,
           "--areas", 10, "--parts", 2, "--seed", seed, "--set", "span.ms=21600000"]
    sluice(*gen)
    crowd = quiet_cells(d)     # a stadium is quiet when no event is on
    sluice(*gen, "--set", "crowd.size=2000", "--set", f"crowd.cells={crowd}",
           "--set", "crowd.start=2026-01-05T03:00:00Z")
    write_venues(d, crowd)     # staged event, a morning fair, an overlap in +01:00
    sluice("keygen", os.path.join(d, "keys.txt"))
    return {"tmp": tmp, "data": d}


def rows(db, cols="*"):
    con = sqlite3.connect(db)
    r = [tuple(x) for x in con.execute(f"SELECT {cols} FROM venue_report")]
    con.close()
    return r


def run_cli(d, name, *sets):
    out = os.path.join(d["tmp"], name)
    db = os.path.join(out, "venues.db")
    base = {"events": os.path.join(d["data"], "events"),
            "subscribers": os.path.join(d["data"], "subscribers.csv"),
            "key.file": os.path.join(d["data"], "keys.txt"),
            "venues": os.path.join(d["data"], "venues.csv"),
            "market.share": os.path.join(d["data"], "market_share.csv"),
            "db": db, "output.dir": out, "metrics.address": "off", "k": K,
            "emit.every.ms": EVERY, "slice.ms": SLICE, "parallelism": 2}
    for kv in sets:
        k, v = kv.split("=", 1)
        base[k] = v
    args = ["run", "venue-report", "--quiet"]
    for k, v in base.items():
        args += ["--set", f"{k}={v}"]
    sluice(*args)
    return db


def run_sql(d, name, script, *sets):
    out = os.path.join(d["tmp"], name)
    db = os.path.join(out, "venues.db")
    args = ["run", script, "--quiet", "--set", f"data={d['data']}",
            "--set", f"venues={os.path.join(d['data'], 'venues.csv')}",
            "--set", f"market_share={os.path.join(d['data'], 'market_share.csv')}",
            "--set", f"db={db}", "--set", f"output.dir={out}", "--set", "parallelism=2",
            "--set", f"k={K}", "--set", f"emit_every_ms={EVERY}", "--set", f"slice_ms={SLICE}"]
    for kv in sets:
        args += ["--set", kv]
    sluice(*args)
    return db


def test_sql_history_equals_cli(data):
    """Insert mode keeps every emission: the SQL job's history is the CLI's,
    row for row (as a multiset: two venues' rows interleave by task)."""
    sql = rows(run_sql(data, "sql-insert", EXAMPLE, "mode=insert"))
    cli = rows(run_cli(data, "cli-insert", "sink.mode=insert"))
    assert collections.Counter(sql) == collections.Counter(cli)
    # not vacuous: early, final and slice rows of the three venues
    kinds = {(r[0], r[1], r[11]) for r in sql}
    for venue in ("staged-event", "morning-fair", "overlap"):
        assert (venue, "cumulative", 0) in kinds and (venue, "cumulative", 1) in kinds
        assert (venue, "slice", 1) in kinds
    assert min(r[6] for r in sql) >= K
    # the staged crowd (mostly 18-34) shows in the SQL job's final distribution
    final = {r[4]: r[6] for r in sql if r[0] == "staged-event" and r[1] == "cumulative"
             and r[11] == 1}
    young = final.get("18-24", 0) + final.get("25-34", 0)
    assert young > 0.6 * sum(final.values()), final


SCRIPT = """
SET 'key.file' = '${data}/keys.txt';
CREATE SOURCE events (ts TIMESTAMP, msisdn VARCHAR, event_type VARCHAR, cell_id BIGINT,
  duration_s BIGINT, bytes BIGINT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
  WITH (connector = 'file', path = '${data}/events', format = 'csv');
CREATE TABLE subscribers (msisdn VARCHAR, birth_date TIMESTAMP, gender VARCHAR,
  PRIMARY KEY (msisdn)) WITH (connector = 'file', path = '${data}/subscribers.csv');
CREATE TABLE venues (name VARCHAR, start TIMESTAMP, "end" TIMESTAMP, cells VARCHAR,
  area VARCHAR, tz VARCHAR, PRIMARY KEY (name))
  WITH (connector = 'file', path = '${venues}', market_share = '${market_share}');
CREATE SINK venue_report WITH (connector = 'sqlite', path = '${db}', k_anonymity = '${k}',
  emit_every_ms = '${emit_every_ms}', slice_ms = '${slice_ms}', blur_ms = '300000') AS
SELECT age_band AS band, venue AS place, gender AS sex, report, slice_start,
       COUNT(DISTINCT PSEUDONYMIZE(e.msisdn)) AS people, extrapolated, final
FROM events AS e
JOIN subscribers FOR SYSTEM_TIME AS OF e.ts AS s ON s.msisdn = PSEUDONYMIZE(e.msisdn)
GROUP BY VENUE(e.ts, e.cell_id, venues), AGE_BAND(s.birth_date), s.gender;
"""


def test_sql_upsert_gender_blur_projection(data):
    """Upsert (the default), split by gender, times blurred +-5 min, columns
    renamed and reordered: the upserted table equals the CLI's with the same
    options, and holds one row per key, the final one."""
    script = os.path.join(data["tmp"], "gender_blur.sql")
    with open(script, "w") as f:
        f.write(SCRIPT)
    sql = rows(run_sql(data, "sql-upsert", script),
               "place, report, slice_start, band, sex, people, extrapolated, final")
    cli = rows(run_cli(data, "cli-upsert", "by.gender=true", "blur.ms=300000"),
               "venue, report, slice_start, age_band, gender, subscribers, extrapolated, final")
    assert sorted(sql) == sorted(cli)
    keys = [r[:5] for r in sql]
    assert len(keys) == len(set(keys))
    assert {r[4] for r in sql} >= {"F", "M"}
    assert all(r[7] == 1 for r in sql if r[0] == "staged-event" and r[1] == "cumulative")


def test_sql_where_equals_cli_on_filtered_input(data):
    """WHERE filters events before the report, on source and table columns:
    the SQL job with WHERE e.event_type <> 'SMS_RECEIVED' AND s.gender = 'F'
    publishes the rows the CLI job publishes for gender F (by.gender=true)
    on input files from which the SMS_RECEIVED lines were removed (by this
    test, independently of sluice)."""
    filt = os.path.join(data["tmp"], "filtered", "events")
    os.makedirs(filt, exist_ok=True)
    dropped = 0
    for name in os.listdir(os.path.join(data["data"], "events")):
        with open(os.path.join(data["data"], "events", name)) as f, \
                open(os.path.join(filt, name), "w") as out:
            for i, line in enumerate(f):
                if i and line.split(",", 3)[2] == "SMS_RECEIVED":
                    dropped += 1
                    continue
                out.write(line)
    assert dropped > 0
    with open(EXAMPLE) as f:
        text = f.read()
    text = text.replace("GROUP BY VENUE(", "WHERE e.event_type <> 'SMS_RECEIVED' AND "
                        "s.gender = 'F'\nGROUP BY VENUE(", 1)
    script = os.path.join(data["tmp"], "where.sql")
    with open(script, "w") as f:
        f.write(text)
    sql = rows(run_sql(data, "sql-where", script, "mode=insert"),
               "venue, report, slice_start, age_band, subscribers, extrapolated, arrivals, "
               "departures, as_of, final")
    cli = rows(run_cli(data, "cli-where", f"events={filt}", "by.gender=true",
                       "sink.mode=insert"),
               "venue, report, slice_start, age_band, subscribers, extrapolated, arrivals, "
               "departures, as_of, final")
    cli_f = rows(os.path.join(data["tmp"], "cli-where", "venues.db"),
                 "gender")
    assert collections.Counter(sql) == collections.Counter(
        r for r, g in zip(cli, cli_f) if g == ("F",))
    assert len(sql) > 20


def test_sql_explain_shows_the_venue_plan(data):
    r = sluice("explain", EXAMPLE, "--set", f"data={data['data']}", "--set", "blur_ms=300000")
    out = r.stdout
    assert "blur_time ts +-300000 ms" in out and "watermark delay 5000 + 300000 ms" in out
    assert "event time ts, watermark delay 305000 ms" in out
    assert "venue_assign: one row per venue of venues" in out
    assert "stage 2: keyed by venue" in out
    assert "early firings every 60000 ms" in out and "k = 16" in out
    assert "key=venue,report,slice_start,age_band,gender" in out


BAD = [
    # (replace this, with that, expected "line:col: message" prefix)
    ("GROUP BY VENUE(e.ts, e.cell_id, venues), AGE_BAND(s.birth_date);",
     "GROUP BY VENUE(e.ts, e.cell_id, venues), AGE_BAND(s.birth_date), e.event_type, s.gender;",
     "60:80: GROUP BY VENUE(...): 's.gender' is a second column"),
    ("AGE_BAND(s.birth_date);", "AGE_BAND(s.birth_date) HAVING COUNT(*) > 3;",
     "60:81: HAVING is not supported in a venue report"),
    ("FROM events AS e\n", "FROM events AS e\nJOIN events AS f ON e.cell_id = f.cell_id\n",
     "59:1: a venue report joins lookup tables only"),
    ("blur_ms = '${blur_ms:-0}'", "blur_ms = '-1'",
     "52:13: venue report sink: 'blur_ms' must be an integer in [0, 3600000], got '-1'"),
    ("       extrapolated, arrivals,", "       e.bytes, arrivals,",
     "57:8: a venue report's SELECT takes its columns by name"),
    ("VENUE(e.ts, e.cell_id, venues)", "VENUE(e.ts, e.cell_id, venuez)",
     "60:33: VENUE: unknown table 'venuez'"),
    ("  cells VARCHAR,", "  cellz VARCHAR,",
     "39:3: venue table 'venues': column 'cellz' is not a column of a venue file"),
    ("k_anonymity = '${k:-16}',", "k_anonymity = '${k:-16}', dp_epsilon = '1',",
     "49:29: 'dp_epsilon' is not used by a venue report"),
]


@pytest.mark.parametrize("old,new,msg", BAD, ids=[m.split(": ", 1)[1][:30] for _, _, m in BAD])
def test_sql_unsupported_forms_are_errors_at_line_and_column(data, old, new, msg):
    with open(EXAMPLE) as f:
        text = f.read()
    assert old in text
    bad = os.path.join(data["tmp"], "bad.sql")
    with open(bad, "w") as f:
        f.write(text.replace(old, new, 1))
    r = sluice("explain", bad, "--set", f"data={data['data']}", check=False)
    assert r.returncode != 0
    assert f"{bad}:{msg}" in r.stderr, r.stderr


def test_sql_bad_venue_file_names_its_line(data):
    path = os.path.join(data["tmp"], "bad_venues.csv")
    with open(path, "w") as f:
        f.write("name,start,end,cells\nx,2026-01-05T01:00:00Z,2026-01-05T00:00:00Z,1\n")
    r = sluice("run", EXAMPLE, "--quiet", "--set", f"data={data['data']}", "--set",
               f"venues={path}", "--set", "market_share=", "--set",
               f"db={os.path.join(data['tmp'], 'never.db')}", check=False)
    assert r.returncode != 0
    assert f"venue_report.sql:43:3: venues: {path}:2: start" in r.stderr, r.stderr
