"""Golden tests of the telecom-age reference job: sluice's SQLite output
must equal, row for row, the same statistics computed by tests/golden/
reference.sql over the raw CSV input."""
import glob
import json
import os
import sqlite3
import subprocess

from conftest import sluice, sqlite_import

HERE = os.path.dirname(os.path.abspath(__file__))


# the reference job keeps its lookup tables on either backend: run both
STATE_BACKENDS = ("memory", "rocksdb")

def reference_rows(tmp, data, window_ms=60000, k=16):
    ref = os.path.join(tmp, "ref.db")
    sqlite_import(ref, "events", sorted(glob.glob(os.path.join(data, "events", "*.csv"))))
    sqlite_import(ref, "subscribers", [os.path.join(data, "subscribers.csv")])
    sqlite_import(ref, "cells", [os.path.join(data, "cells.csv")])
    con = sqlite3.connect(ref)
    # indexes change no result, only the time the reference takes
    con.execute("CREATE INDEX cells_id ON cells(CAST(cell_id AS INTEGER))")
    con.execute("CREATE INDEX subs_id ON subscribers(msisdn)")
    con.execute("CREATE TABLE params(window_ms, k)")
    con.execute("INSERT INTO params VALUES (?, ?)", (window_ms, k))
    con.commit()
    con.close()
    with open(os.path.join(HERE, "reference.sql")) as f:
        subprocess.run(["sqlite3", ref], input=f.read(), text=True, check=True)
    con = sqlite3.connect(ref)
    rows = con.execute("SELECT * FROM expected").fetchall()
    con.close()
    return sorted(rows)


def sluice_rows(db):
    con = sqlite3.connect(db)
    rows = con.execute("SELECT window_start, window_end, event_type, area, age_band, "
                       "events, subscribers FROM age_distribution").fetchall()
    con.close()
    return sorted(rows)


def run_job(data, out, *extra):
    return sluice("run", "telecom-age", "--events", os.path.join(data, "events"),
                  "--subscribers", os.path.join(data, "subscribers.csv"),
                  "--cells", os.path.join(data, "cells.csv"),
                  "--key-file", os.path.join(data, "keys.txt"),
                  "--db", os.path.join(out, "result.db"), "--out-dir", out, "--quiet", *extra)


def test_generated_input_equals_sql_reference(tmp_path, seed):
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    sluice("gen", "--out", data, "--events", 400000, "--subscribers", 20000, "--cells", 500,
           "--areas", 8, "--parts", 3, "--seed", seed, "--set", "span.ms=3600000")
    sluice("keygen", os.path.join(data, "keys.txt"))
    run_job(data, out, "--parallelism", 2)
    got = sluice_rows(os.path.join(out, "result.db"))
    want = reference_rows(str(tmp_path), data)
    assert len(want) > 100, "the input should publish many groups"
    assert got == want
    # the job withheld some groups: k-anonymity was exercised, not vacuous
    con = sqlite3.connect(os.path.join(str(tmp_path), "ref.db"))
    small = con.execute("SELECT COUNT(*) FROM (SELECT 1 FROM events GROUP BY "
                        "CAST(ts AS INTEGER) / 60000, event_type, cell_id)").fetchone()[0]
    con.close()
    assert small > len(want)


def test_parallelism_does_not_change_the_result(tmp_path, seed):
    data = str(tmp_path / "data")
    sluice("gen", "--out", data, "--events", 100000, "--subscribers", 3000, "--cells", 100,
           "--areas", 4, "--parts", 4, "--seed", seed + 1, "--set", "span.ms=900000")
    sluice("keygen", os.path.join(data, "keys.txt"))
    results = []
    for p in (1, 2, 3):
        out = str(tmp_path / f"out{p}")
        run_job(data, out, "--parallelism", p)
        results.append(sluice_rows(os.path.join(out, "result.db")))
    assert results[0] == results[1] == results[2]
    assert results[0] == reference_rows(str(tmp_path), data)


def test_bad_lines_and_unknown_subscribers(tmp_path):
    """A tiny hand-written case: malformed lines go to dead letters (masked,
    with their position), unknown subscribers fall into 'unknown', k=2."""
    data, out = tmp_path / "data", tmp_path / "out"
    (data / "events").mkdir(parents=True)
    ev = ["ts,msisdn,event_type,cell_id,duration_s,bytes"]
    # minute 0 (2026-01-05T00:00Z): 3 subscribers in area A1
    base = 1767571200000
    for i, m in enumerate(["491700000001", "491700000002", "491700000003"]):
        ev.append(f"{base + i * 1000},{m},SMS_SENT,1,,")
    ev.append(f"{base + 5000},491700000001,SMS_SENT,1,,")
    ev.append(f"{base + 6000},491799999999,SMS_SENT,1,,")   # unknown subscriber
    ev.append(f"{base + 7000},491799999998,SMS_SENT,1,,")   # unknown subscriber
    ev.append(f"{base + 8000},491700000002,TELEPORT,1,,")   # unknown event type: line 8
    ev.append(f"not-a-time,491700000003,SMS_SENT,1,,")       # bad timestamp: line 9
    ev.append(f"{base + 9000},491700000003,SMS_SENT")       # too few fields: line 10
    (data / "events" / "events-000.csv").write_text("\n".join(ev) + "\n")
    (data / "subscribers.csv").write_text(
        "msisdn,birth_date,gender\n491700000001,1990-01-05,F\n"
        "491700000002,1990-01-06,M\n491700000003,1950-06-30,F\n")
    (data / "cells.csv").write_text("cell_id,area\n1,A1\n")
    sluice("keygen", str(data / "keys.txt"))
    run_job(str(data), str(out), "--k", 2)
    rows = sluice_rows(str(out / "result.db"))
    # 491700000001: 36 on 2026-01-05 -> 35-44; ...002: 35 (birthday tomorrow) -> 35-44;
    # ...003: 75 -> 65+ (one subscriber: withheld); unknowns: 2 -> published
    assert rows == [
        (base, base + 60000, "SMS_SENT", "A1", "35-44", 3, 2),
        (base, base + 60000, "SMS_SENT", "A1", "unknown", 2, 2),
    ]
    dead = [json.loads(l) for l in (out / "dead-letters.jsonl").read_text().splitlines()]
    assert sorted(d["reason"].split(":")[0] for d in dead) == \
        ["parse_error", "unknown_value", "wrong_field_count"]
    positions = sorted(int(d["position"].rsplit(":", 1)[1]) for d in dead)
    assert positions == [8, 9, 10]
    for d in dead:
        assert "4917000000" not in d["payload"], "identifier must be masked"
