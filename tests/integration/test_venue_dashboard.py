"""The venue report's live distribution on /status, /metrics and the
dashboard: after the job, the counters sluice_venue_subscribers equal the
final rows in SQLite, and headless Chromium renders one bar per age band of
the staged event with those numbers."""
import json
import os
import re
import subprocess
import time
import urllib.request

from test_leak import SLUICE, run
from test_metrics import chromium, ensure_tools


def test_dashboard_shows_the_venue_distribution(tmp_path):
    ensure_tools()
    data, out = tmp_path / "data", tmp_path / "out"
    run("gen", "--out", data, "--events", 100000, "--subscribers", 5000, "--cells", 200,
        "--areas", 4, "--parts", 2, "--seed", 7, "--set", "span.ms=3600000",
        "--set", "crowd.size=1500", "--set", "crowd.cells=1-3",
        "--set", "crowd.start=2026-01-05T00:10:00Z", "--set", "crowd.span.ms=1800000")
    run("keygen", data / "keys.txt")
    os.makedirs(out)
    args = [SLUICE, "run", "venue-report"]
    for k, v in {"events": data / "events", "subscribers": data / "subscribers.csv",
                 "key.file": data / "keys.txt", "venues": data / "venues.csv",
                 "db": out / "venues.db", "output.dir": out, "slice.ms": 0,
                 "metrics.address": "127.0.0.1:0", "metrics.linger.ms": 20000}.items():
        args += ["--set", f"{k}={v}"]
    log = out / "run.log"
    p = subprocess.Popen(list(map(str, args)), stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and "sluice: done" not in log.read_text():
            assert p.poll() is None, log.read_text()
            time.sleep(0.05)
        text = log.read_text()
        assert "sluice: done" in text, text
        url = re.search(r"dashboard (http://[0-9.:]+/)", text).group(1)
        with urllib.request.urlopen(url + "status", timeout=5) as r:
            counters = json.loads(r.read())["counters"]
        import sqlite3
        con = sqlite3.connect(str(out / "venues.db"))
        rows = con.execute("SELECT age_band, subscribers FROM venue_report "
                           "WHERE venue = 'staged-event' AND report = 'cumulative' "
                           "AND final = 1").fetchall()
        con.close()
        assert len(rows) >= 4
        got = {m.group(1): v for k, v in counters.items()
               if (m := re.fullmatch(r'sluice_venue_subscribers\{venue="staged-event",'
                                     r'age_band="([^"]+)",gender="\*"\}', k))}
        assert got == dict(rows)
        assert all(counters[f'sluice_venue_final{{venue="staged-event",age_band="{b}",'
                            'gender="*"}'] == 1 for b, _ in rows)
        dom = chromium("--dump-dom", url).stdout
        card = dom[dom.index('id="venuecard"'):]
        assert 'data-venue="staged-event"' in card and "final" in card
        shown = dict(re.findall(r'<span class="vb">([^<]+)</span>.*?<span class="vn">([^<]+)</span>',
                                card, re.S))
        def value(t):
            m = re.fullmatch(r"([0-9.]+)( k)?", t)
            return float(m.group(1)) * (1000 if m.group(2) else 1)
        assert {b: value(t) for b, t in shown.items()} == {b: float(n) for b, n in rows}
    finally:
        p.kill()
        p.wait()
