"""Golden tests of the venue report (`sluice run venue-report`,
docs/venues.md) against counts computed independently of sluice by SQLite
over the raw generated events (tests/golden/venue_reference.sql):

- every emission (early firings, final rows, slices) equals the reference:
  the exact distinct counts per venue, group and time, with k and the
  release rule (a change below k is held back) applied by this test;
  successive releases of a group differ by 0 or >= k; early emissions grow;
  the final row equals the exact count unless the rule held back a last
  change below k; no published count is below k;
- a subscriber at two venues, or twice at one, counts once per venue;
- the upserting sink keeps one row per key, the final one;
- with time blurring (+-5 min) the counts stay within the documented bound:
  the subscribers with an event within 5 min of a venue's start or end;
- the staged crowd's age skew (mostly 18-34) shows in the staged event's
  distribution, against the background population's.
"""
import collections
import glob
import os
import sqlite3
import subprocess

import pytest

from conftest import sluice, sqlite_import

HERE = os.path.dirname(os.path.abspath(__file__))
START = 1767571200000              # 2026-01-05T00:00:00Z, the generator's default
HOUR = 3600000
K = 16
EVERY = 600000                     # early firings every 10 min
SLICE = 900000                     # 15-minute slices
BANDS = ["unknown", "0-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"]


def gen(data, seed, crowd_cells=None):
    args = ["gen", "--out", data, "--events", 300000, "--subscribers", 30000,
            "--cells", 400, "--areas", 10, "--parts", 2, "--seed", seed,
            "--set", "span.ms=21600000"]
    if crowd_cells:
        args += ["--set", "crowd.size=2500", "--set", f"crowd.cells={crowd_cells}",
                 "--set", "crowd.start=2026-01-05T03:00:00Z"]
    sluice(*args)


def quiet_cells(data, n=4):
    """The n cells with the fewest background events between 03:00 and 06:00:
    a stadium is quiet when no event is on."""
    counts = collections.Counter({c: 0 for c in range(1, 401)})
    for path in glob.glob(os.path.join(data, "events", "events-*.csv")):
        with open(path) as f:
            next(f)
            for line in f:
                ts, _, _, cell, _ = line.split(",", 4)
                if START + 3 * HOUR <= int(ts) < START + 6 * HOUR:
                    counts[int(cell)] += 1
    cells = sorted(counts, key=lambda c: (counts[c], c))[:n]
    return ";".join(map(str, sorted(cells)))


def write_venues(data, crowd):
    """The staged event, a morning fair on the same cells (so people can be
    at two venues), and a venue overlapping the event, in local time +01:00."""
    others = ";".join(str(c) for c in range(5, 41))
    path = os.path.join(data, "venues.csv")
    with open(path, "w") as f:
        f.write("name,start,end,cells,area,tz\n")
        f.write(f"staged-event,2026-01-05T03:00:00Z,2026-01-05T06:00:00Z,{crowd},A0001,\n")
        f.write(f"morning-fair,2026-01-05T00:30:00Z,2026-01-05T02:30:00Z,{crowd};{others},A0002,\n")
        f.write(f"overlap,2026-01-05T05:00:00,2026-01-05T06:30:00,{crowd.split(';')[0]};5-60,"
                "A0003,+01:00\n")
    return {"staged-event": (START + 3 * HOUR, START + 6 * HOUR),
            "morning-fair": (START + HOUR // 2, START + 5 * HOUR // 2),
            "overlap": (START + 4 * HOUR, START + 11 * HOUR // 2)}


def cells_of(text):
    out = []
    for part in text.split(";"):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from conftest import commit_seed
    seed = commit_seed()
    print(f"\nvenue golden tests use seed {seed} (rerun with SLUICE_SEED={seed})")
    tmp = str(tmp_path_factory.mktemp("venue"))
    data = os.path.join(tmp, "data")
    gen(data, seed)
    crowd = quiet_cells(data)
    gen(data, seed, crowd)
    venues = write_venues(data, crowd)
    sluice("keygen", os.path.join(data, "keys.txt"))
    ref = reference(tmp, data, venues, crowd)
    return {"tmp": tmp, "data": data, "venues": venues, "ref": ref, "crowd": crowd}


def reference(tmp, data, venues, crowd):
    db = os.path.join(tmp, "ref.db")
    sqlite_import(db, "events", sorted(glob.glob(os.path.join(data, "events", "*.csv"))))
    sqlite_import(db, "subscribers", [os.path.join(data, "subscribers.csv")])
    con = sqlite3.connect(db)
    con.execute("CREATE INDEX subs_id ON subscribers(msisdn)")
    con.execute("CREATE TABLE venues(name, start_ms INTEGER, end_ms INTEGER)")
    con.execute("CREATE TABLE venue_cells(name, cell INTEGER)")
    con.execute("CREATE TABLE ticks(name, tick INTEGER)")
    con.execute("CREATE TABLE params(slice_ms, blur_ms)")
    con.execute("INSERT INTO params VALUES (?, ?)", (SLICE, 300000))
    cells = {"staged-event": cells_of(crowd),
             "morning-fair": cells_of(crowd) + list(range(5, 41)),
             "overlap": [cells_of(crowd)[0]] + list(range(5, 61))}
    for name, (s, e) in venues.items():
        con.execute("INSERT INTO venues VALUES (?, ?, ?)", (name, s, e))
        con.executemany("INSERT INTO venue_cells VALUES (?, ?)", [(name, c) for c in cells[name]])
        t = s + EVERY
        while t < e:
            con.execute("INSERT INTO ticks VALUES (?, ?)", (name, t))
            t += EVERY
    con.commit()
    con.close()
    with open(os.path.join(HERE, "venue_reference.sql")) as f:
        subprocess.run(["sqlite3", db], input=f.read(), text=True, check=True)
    return db


def run(d, out, *sets):
    args = ["run", "venue-report", "--quiet"]
    base = {"events": os.path.join(d["data"], "events"),
            "subscribers": os.path.join(d["data"], "subscribers.csv"),
            "key.file": os.path.join(d["data"], "keys.txt"),
            "venues": os.path.join(d["data"], "venues.csv"),
            "market.share": os.path.join(d["data"], "market_share.csv"),
            "db": os.path.join(out, "venues.db"), "output.dir": out,
            "metrics.address": "off", "k": K, "emit.every.ms": EVERY, "slice.ms": SLICE,
            "parallelism": 2}
    for kv in sets:
        k, v = kv.split("=", 1)
        base[k] = v
    for k, v in base.items():
        args += ["--set", f"{k}={v}"]
    sluice(*args)
    con = sqlite3.connect(base["db"])
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT rowid AS rid, * FROM venue_report ORDER BY rowid")]
    con.close()
    return rows


def group_key(gender_split):
    return (lambda band, gender: (band, gender)) if gender_split else (lambda band, gender: (band, "*"))


def expected(ref, gender_split, k=K):
    """The emissions the release rule gives on the reference's exact counts:
    live[(venue, band, gender)] = [(as_of, count)], final[...] = count,
    exact[...] = count."""
    con = sqlite3.connect(ref)
    gk = group_key(gender_split)
    ticks = collections.defaultdict(lambda: collections.Counter())
    for venue, tick, band, gender, n in con.execute("SELECT * FROM tick_counts"):
        ticks[(venue, tick)][gk(band, gender)] += n
    exact = collections.Counter()
    for venue, band, gender, n in con.execute("SELECT * FROM final_counts"):
        exact[(venue,) + gk(band, gender)] += n
    tick_list = sorted(con.execute("SELECT name, tick FROM ticks").fetchall())
    ends = dict(con.execute("SELECT name, end_ms FROM venues").fetchall())
    con.close()
    live, final, pub = collections.defaultdict(list), {}, collections.Counter()
    for venue, tick in tick_list:
        for g, c in ticks[(venue, tick)].items():
            key = (venue,) + g
            if c >= k and c - pub[key] >= k:
                pub[key] = c
                live[key].append((tick, c))
    for key, c in exact.items():
        if c < k:
            continue
        prev = pub[key]
        final[key] = c if prev == 0 or c - prev >= k else prev
    return live, final, exact, ends


def test_emissions_equal_reference_with_release_rule(dataset):
    out = os.path.join(dataset["tmp"], "insert")
    rows = run(dataset, out, "sink.mode=insert")
    live, final, exact, ends = expected(dataset["ref"], False)
    got_live = collections.defaultdict(list)
    got_final = {}
    for r in rows:
        if r["report"] != "cumulative":
            continue
        key = (r["venue"], r["age_band"], r["gender"])
        assert r["subscribers"] >= K, r                      # no group below k
        if r["final"]:
            assert key not in got_final, f"two final rows for {key}"
            assert r["as_of"] == ends[r["venue"]]
            got_final[key] = r["subscribers"]
        else:
            assert key not in got_final, f"a live row after the final one: {r}"
            got_live[key].append((r["as_of"], r["subscribers"]))
    assert dict(got_live) == dict(live)
    assert got_final == final
    # the checks above must have had something to check
    assert sum(len(v) for v in live.values()) > 20 and len(final) >= 10
    for key, seq in got_live.items():
        counts = [c for _, c in seq]
        times = [t for t, _ in seq]
        assert times == sorted(times) and len(set(times)) == len(times)
        # monotone, and every release adds >= k people (the differencing defence)
        assert all(b - a >= K for a, b in zip(counts, counts[1:])), (key, counts)
        assert final[key] - counts[-1] == 0 or final[key] - counts[-1] >= K
    held = 0
    for key, c in final.items():
        # the final row is the exact (golden) count, unless the rule held back
        # a last change below k, and then it is within k - 1 of it
        if c != exact[key]:
            held += 1
            assert 0 < exact[key] - c < K
    # With this data the rule holds back about a third of the final counts
    # (7-11 of ~23 over seeds 10-29; 13 of 23 with seed 830627), so "fewer
    # than half" failed for some commits' seeds. What must not happen is a
    # rule that holds back (nearly) every final count.
    assert held < len(final) * 3 / 4, \
        f"the rule held back {held} of {len(final)} final counts"
    # extrapolation: subscribers / market share, rounded to 10
    shares = {}
    with open(os.path.join(dataset["data"], "market_share.csv")) as f:
        next(f)
        for line in f:
            a, s = line.strip().split(",")
            shares[a] = float(s)
    area = {"staged-event": "A0001", "morning-fair": "A0002", "overlap": "A0003"}
    for r in rows:
        if r["report"] == "cumulative":
            want = round(r["subscribers"] / shares[area[r["venue"]]] / 10) * 10
            assert abs(r["extrapolated"] - want) <= 10 and r["extrapolated"] % 10 == 0


def test_slices_equal_reference(dataset):
    out = os.path.join(dataset["tmp"], "slices")
    rows = run(dataset, out, "sink.mode=insert", "emit.every.ms=0")
    con = sqlite3.connect(dataset["ref"])
    pres = {(v, j, b): n for v, j, b, _, n in con.execute(
        "SELECT venue, j, age_band, gender, SUM(n) FROM slice_present GROUP BY venue, j, age_band")}
    arr = {(v, j, b): n for v, j, b, n in con.execute(
        "SELECT venue, j, age_band, SUM(n) FROM slice_arrivals GROUP BY venue, j, age_band")}
    dep = {(v, j, b): n for v, j, b, n in con.execute(
        "SELECT venue, j, age_band, SUM(n) FROM slice_departures GROUP BY venue, j, age_band")}
    starts = dict(con.execute("SELECT name, start_ms FROM venues").fetchall())
    con.close()
    want = {}
    for (v, j, b), n in pres.items():
        if n >= K:
            a, d = arr.get((v, j, b), 0), dep.get((v, j, b), 0)
            want[(v, starts[v] + j * SLICE, b)] = (n, a if a >= K else None, d if d >= K else None)
    got = {(r["venue"], r["slice_start"], r["age_band"]):
           (r["subscribers"], r["arrivals"], r["departures"])
           for r in rows if r["report"] == "slice"}
    assert got == want
    assert len(want) > 20 and any(a is None for _, a, _ in want.values())
    assert any(a is not None and d is not None for _, a, d in want.values())


def test_two_venues_counted_once_each(dataset):
    """People at the fair and at the event count in both reports, once each:
    the reference's per-venue distinct counts already proved the counts;
    here the overlap is shown to exist, so that proof covered it."""
    con = sqlite3.connect(dataset["ref"])
    both = con.execute("SELECT COUNT(*) FROM (SELECT msisdn FROM people GROUP BY msisdn "
                       "HAVING COUNT(DISTINCT venue) >= 2)").fetchone()[0]
    repeat = con.execute("SELECT COUNT(*) FROM (SELECT venue, msisdn FROM hits "
                         "GROUP BY venue, msisdn HAVING COUNT(*) >= 2)").fetchone()[0]
    con.close()
    assert both > 50 and repeat > 1000


def test_upsert_keeps_the_final_row_per_key(dataset):
    out = os.path.join(dataset["tmp"], "upsert")
    rows = run(dataset, out)
    _, final, _, _ = expected(dataset["ref"], False)
    keys = [(r["venue"], r["report"], r["slice_start"], r["age_band"], r["gender"]) for r in rows]
    assert len(keys) == len(set(keys))
    cum = {(r["venue"], r["age_band"], r["gender"]): r["subscribers"]
           for r in rows if r["report"] == "cumulative"}
    assert all(r["final"] == 1 for r in rows)
    assert cum == final


def test_gender_split_equals_reference(dataset):
    out = os.path.join(dataset["tmp"], "gender")
    rows = run(dataset, out, "sink.mode=insert", "by.gender=true", "k=5", "slice.ms=0")
    live, final, _, _ = expected(dataset["ref"], True, k=5)
    got_live, got_final = collections.defaultdict(list), {}
    for r in rows:
        key = (r["venue"], r["age_band"], r["gender"])
        assert r["subscribers"] >= 5
        if r["final"]:
            got_final[key] = r["subscribers"]
        else:
            got_live[key].append((r["as_of"], r["subscribers"]))
    assert got_final == final and dict(got_live) == dict(live)
    assert {g for _, _, g in final} >= {"F", "M"}


def test_blurring_stays_within_documented_bound(dataset):
    out0 = os.path.join(dataset["tmp"], "noblur")
    out1 = os.path.join(dataset["tmp"], "blur")
    common = ("k=2", "emit.every.ms=0", "slice.ms=0")
    plain = run(dataset, out0, *common)
    blurred = run(dataset, out1, *common, "blur.ms=300000")
    again = run(dataset, out1 + "-again", *common, "blur.ms=300000")
    strip = lambda rows: [(r["venue"], r["age_band"], r["subscribers"]) for r in rows]
    assert strip(blurred) == strip(again)          # same key, same input: same noise
    con = sqlite3.connect(dataset["ref"])
    amb = dict(con.execute("SELECT venue, n FROM ambiguous").fetchall())
    con.close()
    p = {(r["venue"], r["age_band"]): r["subscribers"] for r in plain}
    b = {(r["venue"], r["age_band"]): r["subscribers"] for r in blurred}
    changed = 0
    for venue in dataset["venues"]:
        diff = sum(abs(b.get((venue, band), 0) - p.get((venue, band), 0)) for band in BANDS)
        # each ambiguous subscriber moves one count by one; k = 2 may
        # withhold one more per band on either side
        below = sum(1 for band in BANDS if min(b.get((venue, band), 0), p.get((venue, band), 0)) < 2)
        assert diff <= amb.get(venue, 0) + below, (venue, diff, amb.get(venue))
        changed += diff
    assert changed > 0, "blurring should move someone across a venue's boundary"


def test_staged_crowd_skew_is_visible(dataset):
    out = os.path.join(dataset["tmp"], "skew")
    rows = run(dataset, out, "slice.ms=0")
    dist = {r["age_band"]: r["subscribers"] for r in rows
            if r["venue"] == "staged-event" and r["report"] == "cumulative"}
    young = dist.get("18-24", 0) + dist.get("25-34", 0)
    share = young / sum(dist.values())
    con = sqlite3.connect(dataset["ref"])
    total, bg = con.execute(
        "SELECT COUNT(*), SUM(age BETWEEN 18 AND 34) FROM (SELECT "
        "2026 - CAST(substr(birth_date, 1, 4) AS INTEGER) - ('01-05' < substr(birth_date, 6, 5)) "
        "AS age FROM subscribers)").fetchone()
    con.close()
    background = bg / total
    print(f"18-34 share: staged event {share:.2f}, population {background:.2f}")
    assert background < 0.35
    assert share > 0.6


def test_kill_and_resume_reemits_identical_rows(dataset):
    """Checkpointed venue state restores so the rows a resumed run publishes
    are those of an uninterrupted run, each once (exactly-once, insert mode:
    the whole history of early firings is compared)."""
    import signal
    import time
    from conftest import SLUICE
    base = os.path.join(dataset["tmp"], "kill-base")
    want = run(dataset, base, "sink.mode=insert")
    out = os.path.join(dataset["tmp"], "kill")
    ck = os.path.join(out, "ck")
    args = [SLUICE, "run", "venue-report", "--quiet"]
    sets = {"events": os.path.join(dataset["data"], "events"),
            "subscribers": os.path.join(dataset["data"], "subscribers.csv"),
            "key.file": os.path.join(dataset["data"], "keys.txt"),
            "venues": os.path.join(dataset["data"], "venues.csv"),
            "market.share": os.path.join(dataset["data"], "market_share.csv"),
            "db": os.path.join(out, "venues.db"), "output.dir": out,
            "metrics.address": "off", "k": K, "emit.every.ms": EVERY, "slice.ms": SLICE,
            "parallelism": 2, "sink.mode": "insert", "checkpoint.dir": ck,
            "checkpoint.interval.ms": 200}
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    p = subprocess.Popen(args + ["--set", "source.rate=40000"], stderr=subprocess.PIPE)
    deadline = time.time() + 60
    # kill -9 while the staged event is open: some of its early firings
    # are committed, its final rows are not
    def live_rows():
        try:
            con = sqlite3.connect(sets["db"])
            n = con.execute("SELECT COUNT(*), SUM(final) FROM venue_report "
                            "WHERE venue = 'staged-event'").fetchone()
            con.close()
            return n
        except sqlite3.Error:
            return (0, 0)
    while time.time() < deadline and p.poll() is None:
        n, finals = live_rows()
        if n and not finals:
            break
        time.sleep(0.01)
    assert p.poll() is None, "the job ended before it could be killed: slow it down"
    p.send_signal(signal.SIGKILL)
    p.wait()
    n, finals = live_rows()
    assert n > 0 and not finals
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    con = sqlite3.connect(sets["db"])
    con.row_factory = sqlite3.Row
    got = [dict(x) for x in con.execute("SELECT rowid AS rid, * FROM venue_report ORDER BY rowid")]
    con.close()
    key = lambda r: tuple((k, -1 if r[k] is None else r[k]) for k in sorted(r) if k != "rid")
    assert collections.Counter(map(key, got)) == collections.Counter(map(key, want))
    assert len(want) > 50


def test_c_api_example_gives_the_same_rows(dataset):
    """examples/venues/venue_report.c, compiled against the library the
    tests run, publishes the same final rows as `sluice run venue-report`."""
    from conftest import ROOT, SLUICE, link_libs
    bdir = os.path.dirname(SLUICE)
    san = (["-fsanitize=address,undefined"] if "asan" in bdir else
           ["-fsanitize=thread"] if "tsan" in bdir else [])
    exe = os.path.join(dataset["tmp"], "venue_report")
    libs = link_libs()
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *san,
                    "-I", os.path.join(ROOT, "include"),
                    os.path.join(ROOT, "examples", "venues", "venue_report.c"),
                    os.path.join(bdir, "libsluice.a"), *libs, "-lpthread", "-lm", "-o", exe],
                   check=True)
    db = os.path.join(dataset["tmp"], "c-example.db")
    subprocess.run([exe, dataset["data"], db], check=True, capture_output=True)
    con = sqlite3.connect(db)
    got = sorted(con.execute("SELECT venue, age_band, subscribers FROM venue_report "
                             "WHERE report = 'cumulative' AND final = 1").fetchall())
    con.close()
    cli = run(dataset, os.path.join(dataset["tmp"], "c-cli"), "market.share=",
              "emit.every.ms=60000")
    want = sorted((r["venue"], r["age_band"], r["subscribers"]) for r in cli
                  if r["report"] == "cumulative" and r["final"])
    assert got == want and len(got) >= 10
