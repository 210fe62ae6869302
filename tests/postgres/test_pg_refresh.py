"""The subscriber table read from PostgreSQL and refreshed while the job
runs: every subscriber's birth date is changed mid-run (and updated_at with
it), and the windows processed after the next poll use the new dates,
without a restart. The reference for both sides is independent: the SQL
reference (tests/golden/reference.sql) over the raw events with the
subscriber table as it was before, and as it is after the change. Windows
are finished in event-time order while the rate-limited run lasts, so the
result must be: windows equal to the "before" reference, then at most a
few windows that mix both (the two source tasks cross the change at
slightly different event times), then windows equal to the "after"
reference, with enough of each side to show the switch."""
import csv
import os
import re
import subprocess
import time

import harness
from conftest import SUBSCRIBERS_DDL
from pgserver import result_rows

BEFORE, AFTER = "1980-01-01", "2015-06-01"   # age bands 45-54, then 0-17


def rewrite_subscribers(src, dst, birth):
    with open(src, newline="") as f, open(dst, "w", newline="") as g:
        r, w = csv.reader(f), csv.writer(g, lineterminator="\n")
        w.writerow(next(r))
        for row in r:
            if row[1]:
                row[1] = birth
            w.writerow(row)


def data_with(root, data, name, birth):
    d = os.path.join(root, name)
    os.makedirs(d)
    for x in ("events", "cells.csv"):
        os.symlink(os.path.join(data, x), os.path.join(d, x))
    rewrite_subscribers(os.path.join(data, "subscribers.csv"),
                        os.path.join(d, "subscribers.csv"), birth)
    return d


def by_window(rows):
    out = {}
    for r in rows:
        out.setdefault(r[0], set()).add(r)
    return out


def test_subscriber_changes_reach_later_windows(pg, pgdb, tmp_path):
    root = str(tmp_path)
    data = os.path.join(root, "data")
    harness.sluice("gen", "--out", data, "--events", 120_000, "--subscribers", 4000,
                   "--cells", 100, "--areas", 3, "--parts", 2, "--seed", 11,
                   "--set", "span.ms=3600000")
    keys = os.path.join(data, "keys.txt")
    harness.sluice("keygen", keys)
    before = data_with(root, data, "before", BEFORE)
    after = data_with(root, data, "after", AFTER)
    ref_before = by_window(harness.reference_rows(os.path.join(root, "before"), before))
    ref_after = by_window(harness.reference_rows(os.path.join(root, "after"), after))

    pg.psql(SUBSCRIBERS_DDL, db=pgdb)
    pg.psql("CREATE TABLE s_in (msisdn text, birth_date date, gender text)", db=pgdb)
    pg.copy_in("s_in", os.path.join(before, "subscribers.csv"), db=pgdb)
    pg.psql("INSERT INTO subscribers (msisdn, birth_date, gender) "
            "SELECT msisdn, birth_date, gender FROM s_in", db=pgdb)

    out = os.path.join(root, "out")
    argv = [harness.SLUICE, "run", "telecom-age", "--events", os.path.join(data, "events"),
            "--cells", os.path.join(data, "cells.csv"), "--key-file", keys,
            "--pg", pg.dsn(pgdb), "--set", "subscribers.pg.table=subscribers",
            "--set", "subscribers.pg.refresh.ms=200", "--out-dir", out,
            "--parallelism", "2", "--watermark-delay-ms", "5000",
            "--set", "source.rate=12000", "--quiet"]   # ~5 s
    log = os.path.join(root, "job.log")
    with open(log, "w") as f:
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)
    try:
        time.sleep(2.0)
        assert p.poll() is None, open(log).read()
        pg.psql(f"UPDATE subscribers SET birth_date = '{AFTER}', updated_at = now() "
                "WHERE birth_date IS NOT NULL", db=pgdb)
        assert p.wait(timeout=120) == 0, open(log).read()
    finally:
        if p.poll() is None:
            p.kill()
    assert re.search(r"component=table msg=\"refreshed changed rows\" table=subscribers", open(log).read())

    got = by_window(result_rows(pg, pgdb))
    windows = sorted(set(ref_before) | set(ref_after))
    assert sorted(got) == windows
    side = ["before" if got[w] == ref_before.get(w, set()) else
            "after" if got[w] == ref_after.get(w, set()) else "mixed" for w in windows]
    first_after = side.index("after") if "after" in side else len(side)
    last_before = max((i for i, s in enumerate(side) if s == "before"), default=-1)
    summary = "".join(s[0] for s in side)
    assert last_before >= 5, f"too few windows before the change: {summary}"
    assert len(side) - first_after >= 5, f"too few windows after the change: {summary}"
    assert last_before < first_after, f"windows before and after interleave: {summary}"
    assert first_after - last_before - 1 <= 3, f"too many mixed windows: {summary}"
    print(f"\nwindows (b = before, m = mixed, a = after the change): {summary}")
