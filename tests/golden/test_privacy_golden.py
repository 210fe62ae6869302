"""Golden tests of the telecom-age job's privacy options, against references
computed independently of sluice from the raw CSV input:

- key rotation: a dated two-key file whose boundary (midnight UTC) falls in
  the input. Pseudonyms differ per period, but every count must equal
  tests/golden/reference.sql; events before the first key are dead letters.
- k-anonymity by folding (k.fold): the published rows must equal a Python
  model that works on the raw events with exact distinct sets; no row has
  fewer than k distinct subscribers and every event is published once or
  withheld.
- differential privacy (dp.*): runs, is deterministic, and noises counts.
"""
import csv
import datetime
import glob
import json
import os
import secrets
import shutil
import sqlite3

from conftest import sluice
from test_golden import reference_rows, run_job, sluice_rows

DAY = 86400000
START = 1767655800000          # 2026-01-05T23:30:00Z
BOUNDARY = 1767657600000       # 2026-01-06T00:00:00Z: the second key's VALID_FROM


def write_dated_keys(path):
    with open(path, "w") as f:
        f.write("# one key per UTC day\n")
        f.write(f"telecom:2026-01-05 {secrets.token_hex(32)} 2026-01-05\n")
        f.write(f"telecom:2026-01-06 {secrets.token_hex(32)} 2026-01-06\n")
    os.chmod(path, 0o600)


def gen(data, seed, events, subscribers, cells, areas, span_ms, start=None, parts=3):
    args = ["gen", "--out", data, "--events", events, "--subscribers", subscribers,
            "--cells", cells, "--areas", areas, "--parts", parts, "--seed", seed,
            "--set", f"span.ms={span_ms}"]
    if start is not None:
        args += ["--set", f"start={start}"]
    sluice(*args)


def run_unchecked(data, out, *extra):
    return sluice("run", "telecom-age", "--events", os.path.join(data, "events"),
                  "--subscribers", os.path.join(data, "subscribers.csv"),
                  "--cells", os.path.join(data, "cells.csv"),
                  "--key-file", os.path.join(data, "keys.txt"),
                  "--db", os.path.join(out, "x.db"), "--out-dir", out, "--quiet",
                  *extra, check=False)


def test_rotation_across_a_key_boundary_equals_sql_reference(tmp_path, seed):
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    gen(data, seed, 200000, 5000, 300, 6, 3600000, START)   # 23:30 to 00:30
    write_dated_keys(os.path.join(data, "keys.txt"))
    # events older than the first key cannot be pseudonymised: dead letters.
    # (Appended to a partition: a separate short partition of old events
    # with more partitions than tasks loses result rows now and then, a
    # runtime bug reported separately.)
    part = os.path.join(data, "events", "events-000.csv")
    shutil.copy(part, str(tmp_path / "events-000.orig"))
    subs = [r["msisdn"] for r, _ in zip(csv.DictReader(open(os.path.join(data, "subscribers.csv"))),
                                        range(20))]
    with open(part, "a") as f:
        for i, m in enumerate(subs):
            f.write(f"{START - DAY + i * 1000},{m},SMS_SENT,1,,\n")
    run_job(data, out, "--parallelism", 2)
    # both periods are in the input and in the result
    got = sluice_rows(os.path.join(out, "result.db"))
    starts = {row[0] for row in got}
    assert min(starts) < BOUNDARY <= max(starts)
    dead = [json.loads(l) for l in open(os.path.join(out, "dead-letters.jsonl"))]
    assert sum(d["reason"] == "no_key" for d in dead) == len(subs)
    for d in dead:
        assert not any(m in json.dumps(d) for m in subs)
    # the reference over the events that have a key
    shutil.copy(str(tmp_path / "events-000.orig"), part)
    want = reference_rows(str(tmp_path), data)
    assert len(want) > 50
    assert got == want
    # every subscriber of the table joined in both periods: no 'unknown' band
    # beyond what the reference has (the join would fail under the wrong key)
    assert sum(r[4] == "unknown" for r in got) == sum(r[4] == "unknown" for r in want)


def test_rotation_off_uses_the_current_key_for_everything(tmp_path, seed):
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    gen(data, seed + 5, 50000, 2000, 100, 4, 3600000, START)
    write_dated_keys(os.path.join(data, "keys.txt"))
    run_job(data, out, "--set", "rotation=off")
    assert sluice_rows(os.path.join(out, "result.db")) == reference_rows(str(tmp_path), data)
    # a rotation period that is not a multiple of the window is refused
    r = run_unchecked(data, out, "--set", "rotation.period.ms=90000")
    assert r.returncode != 0 and "rotation.period.ms" in r.stderr


# ---- folding -----------------------------------------------------------------
WIDE = {"0-17": "0-34", "18-24": "0-34", "25-34": "0-34", "35-44": "35-54",
        "45-54": "35-54", "55-64": "55+", "65+": "55+"}
LEVELS = [("age_band", WIDE), ("area", None), ("age_band", None)]


def band(birth, ws):
    if not birth:
        return "unknown"
    d = datetime.datetime.fromtimestamp(ws / 1000, datetime.timezone.utc).date()
    y, m, dd = (int(x) for x in birth[:10].split("-"))
    age = d.year - y - ((d.month, d.day) < (m, dd))
    if age < 0:
        return "unknown"
    for hi, name in ((17, "0-17"), (24, "18-24"), (34, "25-34"), (44, "35-44"),
                     (54, "45-54"), (64, "55-64")):
        if age <= hi:
            return name
    return "65+"


def fold_model(data, window_ms, k):
    """Published rows {(ws, type, area, band): (events, subscribers)}, the
    events withheld and the total, from the raw CSV with exact sets."""
    births = {r["msisdn"]: r["birth_date"] for r in
              csv.DictReader(open(os.path.join(data, "subscribers.csv")))}
    areas = {int(r["cell_id"]): r["area"] for r in
             csv.DictReader(open(os.path.join(data, "cells.csv")))}
    groups = {}   # (ws, type) -> {(area, band): [events, set]}
    total = 0
    for path in sorted(glob.glob(os.path.join(data, "events", "*.csv"))):
        for r in csv.DictReader(open(path)):
            ws = int(r["ts"]) // window_ms * window_ms
            key = (areas.get(int(r["cell_id"]), "unknown"), band(births.get(r["msisdn"]), ws))
            g = groups.setdefault((ws, r["event_type"]), {}).setdefault(key, [0, set()])
            g[0] += 1
            g[1].add(r["msisdn"])
            total += 1
    published, withheld = {}, 0
    for (ws, typ), gs in groups.items():
        pub = {key: g for key, g in gs.items() if len(g[1]) >= k}
        cand = [(key, g) for key, g in gs.items() if len(g[1]) < k]
        for col, mapping in LEVELS:
            merged = {}
            for (area, bnd), g in cand:
                if col == "area":
                    area = "*" if mapping is None else mapping.get(area, area)
                else:
                    bnd = "*" if mapping is None else mapping.get(bnd, bnd)
                m = merged.setdefault((area, bnd), [0, set()])
                m[0] += g[0]
                m[1] |= g[1]
            cand = []
            for key, m in merged.items():
                if key in pub:
                    pub[key][0] += m[0]
                    pub[key][1] |= m[1]
                elif len(m[1]) >= k:
                    pub[key] = m
                else:
                    cand.append((key, m))
        withheld += sum(m[0] for _, m in cand)
        for (area, bnd), g in pub.items():
            published[(ws, typ, area, bnd)] = (g[0], len(g[1]))
    return published, withheld, total


def test_folding_publishes_no_group_below_k_and_keeps_totals(tmp_path, seed):
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    k = 16
    gen(data, seed + 9, 120000, 6000, 300, 8, 900000)
    sluice("keygen", os.path.join(data, "keys.txt"))
    run_job(data, out, "--parallelism", 3, "--set", "k.fold=age_band:wide,area,age_band",
            "--k", k)
    got = {(r[0], r[2], r[3], r[4]): (r[5], r[6])
           for r in sluice_rows(os.path.join(out, "result.db"))}
    want, withheld, total = fold_model(data, 60000, k)
    assert all(subs >= k for _, subs in want.values())
    assert sum(ev for ev, _ in want.values()) + withheld == total
    assert got == want
    # folding happened at several levels, and it published more events than
    # suppression alone (the reference with k) does
    assert any(key[2] == "*" for key in got) and any(key[3] in WIDE.values() for key in got)
    plain = reference_rows(str(tmp_path), data, k=k)
    assert sum(ev for ev, _ in got.values()) > sum(r[5] for r in plain)
    # the fold option is checked: a column that cannot be folded is refused
    r = run_unchecked(data, out, "--set", "k.fold=event_type")
    assert r.returncode != 0 and "k.fold" in r.stderr


def test_differential_privacy_is_deterministic_and_noised(tmp_path, seed):
    data = str(tmp_path / "data")
    # one partition: which c events of a subscriber are kept follows arrival
    # order, deterministic when a subscriber's events come from one partition
    gen(data, seed + 13, 60000, 3000, 100, 4, 600000, parts=1)
    sluice("keygen", os.path.join(data, "keys.txt"))
    dp = ["--set", "dp.epsilon=1", "--set", "dp.max.contrib=5", "--set", "dp.budget=20"]
    runs = []
    for i in range(2):
        out = str(tmp_path / f"out{i}")
        run_job(data, out, "--parallelism", 1 + i, *dp)
        runs.append(sluice_rows(os.path.join(out, "result.db")))
    assert runs[0] == runs[1] and len(runs[0]) > 10
    plain = reference_rows(str(tmp_path), data)
    assert runs[0] != plain
    # DP without its other parameters is refused (no defaults)
    r = run_unchecked(data, str(tmp_path / "bad"), "--set", "dp.epsilon=1")
    assert r.returncode != 0 and "dp.max.contrib" in r.stderr
