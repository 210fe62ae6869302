"""Production checks: canary records injected at every source partition
travel the whole reference job apart from real data, are verified at the
sink with their pipeline and commit latencies, never appear among results,
are reported missing when dropped by a fault hook, and cause no false alarm
after a kill and a clean restore."""
import json
import os
import re
import signal
import sqlite3
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")
SUMMARY = re.compile(r"canaries (\d+) injected / (\d+) seen / (\d+) committed / (\d+) missing")


def sluice(*args, env=None, check=True):
    r = subprocess.run([SLUICE, *map(str, args)], capture_output=True, text=True, env=env)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def dataset(tmp):
    data = tmp / "data"
    sluice("gen", "--out", data, "--events", 200000, "--subscribers", 5000, "--cells", 100,
           "--areas", 4, "--parts", 2, "--seed", 11, "--set", "span.ms=1800000")
    sluice("keygen", data / "keys.txt")
    return data


def job(data, out, *extra):
    return ["run", "telecom-age", "--events", data / "events",
            "--subscribers", data / "subscribers.csv", "--cells", data / "cells.csv",
            "--key-file", data / "keys.txt", "--db", out / "r.db", "--out-dir", out,
            "--checkpoint-dir", out / "ck", "--checkpoint-interval-ms", 200,
            "--set", "canary.interval.ms=50", "--set", "source.rate=50000",
            "--set", "metrics.address=", *extra]


def rows(db):
    con = sqlite3.connect(db)
    r = sorted(con.execute("SELECT * FROM age_distribution").fetchall())
    con.close()
    return r


def test_canaries_travel_apart_and_are_measured(tmp_path):
    data = dataset(tmp_path)
    plain = tmp_path / "plain"
    sluice(*job(data, plain, "--set", "canary.interval.ms=0"))
    out = tmp_path / "out"
    r = sluice(*job(data, out))
    inj, seen, committed, missing = map(int, SUMMARY.search(r.stderr).groups())
    assert inj >= 10 and seen == inj and committed == inj and missing == 0, r.stderr
    log = [json.loads(l) for l in (out / "canaries.jsonl").read_text().splitlines()]
    assert len(log) == committed
    assert {c["partition"] for c in log} == {0, 1}, "every partition injects"
    for c in log:
        assert 0 <= c["pipeline_ms"] <= c["commit_ms"], c
    # never among results, never counted: identical to a run without canaries
    assert rows(out / "r.db") == rows(plain / "r.db")
    # the sink records each one in its own table, sluice_canaries
    con = sqlite3.connect(out / "r.db")
    recorded = con.execute("SELECT job, sink, canary, seen_at, epoch FROM sluice_canaries "
                           "ORDER BY seen_at").fetchall()
    con.close()
    assert len(recorded) == seen, (len(recorded), seen)
    assert {r[:2] for r in recorded} == {("telecom-age", "age_distribution")}
    assert all(1 <= r[2] <= 255 and r[4] >= 1 for r in recorded), recorded[:3]


def test_dropped_canary_is_reported_missing(tmp_path):
    data = dataset(tmp_path)
    out = tmp_path / "out"
    env = dict(os.environ, SLUICE_FAULT="drop-canary:3")
    r = sluice(*job(data, out, "--set", "canary.timeout.ms=300"), env=env)
    inj, seen, committed, missing = map(int, SUMMARY.search(r.stderr).groups())
    assert missing == 1 and seen == inj - 1, r.stderr
    assert re.search(r"level=warn component=canary msg=\"canary missing[^\"]*\" "
                     r"canary=\d+ partition=\d after_s=", r.stderr), r.stderr


def test_no_false_alarm_after_recovery(tmp_path):
    data = dataset(tmp_path)
    out = tmp_path / "out"
    argv = [SLUICE, *map(str, job(data, out, "--set", "canary.timeout.ms=500"))]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.8)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = subprocess.run(argv, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "restored checkpoint" in r.stderr
    inj, seen, committed, missing = map(int, SUMMARY.search(r.stderr).groups())
    assert missing == 0 and committed == inj, r.stderr
