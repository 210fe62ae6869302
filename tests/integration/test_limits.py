"""Resource limits (docs/operations.md): each cap holds and is enforced with
back pressure or a clear error naming its key, never unbounded growth.

- window.max.groups: one group more than the cap stops the job with an
  error naming the key and the count (cap + 1);
- deadletter.max.count / .max.bytes: the dead-letter file stops at the cap,
  the rest is counted as dropped (metric) or, with deadletter.overflow=fail,
  the job stops with an error naming the key;
- exchange.max.bytes: a channel holding that many bytes takes no further
  batch (back pressure, as exchange.capacity does for their number); the
  smallest cap only slows the job down, its output equals the uncapped
  run's (the cap itself: tests/unit/test_limits.c).
- max.line.bytes (file source) is covered by tests/unit/test_file_source.c
  (a longer line is dead-lettered as line_too_long with its file:line)."""
import json
import os
import re
import sqlite3
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")
BAD = 30  # malformed event lines appended to the input


def sluice(*args, check=True):
    r = subprocess.run([SLUICE, *map(str, args)], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def dataset(tmp, events=100000):
    data = tmp / "data"
    sluice("gen", "--out", data, "--events", events, "--subscribers", 5000, "--cells", 50,
           "--areas", 4, "--parts", 2, "--seed", 3, "--set", "span.ms=1800000")
    sluice("keygen", data / "keys.txt")
    with open(data / "events" / "events-000.csv", "a") as f:
        for i in range(BAD):
            f.write(f"not-a-time-{i},x,SMS_SENT,1,,\n")
    return data


def job(data, out, *extra):
    return ["run", "telecom-age", "--events", data / "events",
            "--subscribers", data / "subscribers.csv", "--cells", data / "cells.csv",
            "--key-file", data / "keys.txt", "--db", out / "r.db", "--out-dir", out,
            "--set", "metrics.address=", *extra]


def rows(db):
    con = sqlite3.connect(db)
    try:
        return sorted(con.execute("SELECT * FROM age_distribution").fetchall())
    finally:
        con.close()


def test_window_max_groups_stops_with_an_error(tmp_path):
    data = dataset(tmp_path, events=20000)
    r = sluice(*job(data, tmp_path / "o", "--set", "window.max.groups=7",
                    "--parallelism", 1), check=False)
    assert r.returncode != 0
    m = re.search(r"holds (\d+) open \(window, key\) groups, more than "
                  r"'window.max.groups' \(7\)", r.stderr)
    assert m, r.stderr
    assert int(m.group(1)) == 8  # the first group past the cap
    # a cap the job fits under changes nothing
    ok = sluice(*job(data, tmp_path / "ok", "--set", "window.max.groups=100000"))
    ref = sluice(*job(data, tmp_path / "ref"))
    assert ok.returncode == 0 and rows(tmp_path / "ok" / "r.db") == rows(tmp_path / "ref" / "r.db")


def letters(out):
    with open(out / "dead-letters.jsonl") as f:
        return [json.loads(l) for l in f]


def test_dead_letter_caps(tmp_path):
    data = dataset(tmp_path, events=20000)
    # uncapped: every bad line is written with its position
    full = tmp_path / "full"
    sluice(*job(data, full))
    assert len(letters(full)) == BAD
    assert all(re.search(r"events-000\.csv:\d+$", d["position"]) for d in letters(full))
    # count cap: the file holds exactly the cap, the log says so once
    cnt = tmp_path / "cnt"
    r = sluice(*job(data, cnt, "--set", "deadletter.max.count=10"))
    assert len(letters(cnt)) == 10
    assert r.stderr.count("dead-letter cap reached") == 1, r.stderr
    assert "key=deadletter.max.count cap=10" in r.stderr
    assert re.search(r"(\d+) dead letters", r.stderr).group(1) == str(BAD)
    # byte cap: writing stops at the first letter that reaches it
    byt = tmp_path / "byt"
    sluice(*job(data, byt, "--set", "deadletter.max.bytes=1000"))
    size = os.path.getsize(byt / "dead-letters.jsonl")
    one = os.path.getsize(full / "dead-letters.jsonl") / BAD
    assert 1000 <= size < 1000 + 2 * one and len(letters(byt)) < BAD
    # fail: the job stops with the key named
    r = sluice(*job(data, tmp_path / "fail", "--set", "deadletter.max.count=5",
                    "--set", "deadletter.overflow=fail"), check=False)
    assert r.returncode != 0
    assert "more than 'deadletter.max.count' (5)" in r.stderr, r.stderr


def test_exchange_byte_cap_is_back_pressure(tmp_path):
    """The cap itself is proven on the channel (tests/unit/test_limits.c:
    the bytes held never pass the cap by more than one batch). Here: the
    smallest cap (1 byte: every channel holds one batch at a time) only
    slows the job; its output equals the uncapped run's."""
    data = dataset(tmp_path, events=60000)
    common = ["--window-ms", 1000, "--k", 2, "--parallelism", 2]
    sluice(*job(data, tmp_path / "free", *common))
    sluice(*job(data, tmp_path / "capped", *common, "--set", "exchange.max.bytes=1"))
    assert rows(tmp_path / "capped" / "r.db") == rows(tmp_path / "free" / "r.db")
    assert len(rows(tmp_path / "free" / "r.db")) > 100
