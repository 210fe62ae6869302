"""Leak scan of the venue report (docs/venues.md): with a staged crowd,
time blurring, checkpoints, a kill -9 and a restart, no file the job
writes (results, checkpoints with the venue state, dead letters, log) holds
a raw subscriber id, as text or as a 64-bit integer in either byte order.
The scan itself is shown able to fail in test_leak.py."""
import os
import signal
import sqlite3
import subprocess
import time

from test_leak import SLUICE, raw_ids, run, scan


def test_venue_report_leaks_no_identifier(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    run("gen", "--out", data, "--events", 150000, "--subscribers", 5000, "--cells", 200,
        "--areas", 4, "--parts", 2, "--seed", 7, "--set", "span.ms=1800000",
        "--set", "crowd.size=800", "--set", "crowd.cells=1-3",
        "--set", "crowd.start=2026-01-05T00:05:00Z", "--set", "crowd.span.ms=1200000")
    run("keygen", data / "keys.txt")
    ids = raw_ids(str(data))
    args = [SLUICE, "run", "venue-report"]
    for k, v in {"events": data / "events", "subscribers": data / "subscribers.csv",
                 "key.file": data / "keys.txt", "venues": data / "venues.csv",
                 "market.share": data / "market_share.csv", "db": out / "venues.db",
                 "output.dir": out, "checkpoint.dir": out / "ck",
                 "checkpoint.interval.ms": 100, "blur.ms": 60000, "k": 5,
                 "metrics.address": "off"}.items():
        args += ["--set", f"{k}={v}"]
    os.makedirs(out)
    log = open(out / "job.log", "w")
    p = subprocess.Popen([*map(str, args), "--set", "source.rate=60000"], stdout=log,
                         stderr=log)
    deadline = time.time() + 30
    def checkpointed():
        ck = out / "ck"
        return ck.is_dir() and any(n.startswith("chk-") for n in os.listdir(ck))
    while time.time() < deadline and p.poll() is None and not checkpointed():
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = subprocess.run(list(map(str, args)), stdout=log, stderr=log)
    log.close()
    assert r.returncode == 0, open(out / "job.log").read()
    assert any(n.startswith("chk-") for n in os.listdir(out / "ck"))
    con = sqlite3.connect(str(out / "venues.db"))
    assert con.execute("SELECT COUNT(*) FROM venue_report").fetchone()[0] > 0
    con.close()
    assert scan(str(out), ids) == []
