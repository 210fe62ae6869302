"""Leak scan: raw subscriber identifiers must never escape the first
operator. Runs the reference job with checkpoints, a kill and a restart,
dead letters, stderr and the structured log file, then scans every file it wrote for any raw msisdn,
as text and as a 64-bit integer in either byte order. The scan proves it
can fail: a planted control file holding one raw id must be found."""
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")


def run(*args, **kw):
    return subprocess.run([SLUICE, *map(str, args)], capture_output=True, text=True,
                          check=True, **kw)


def raw_ids(data):
    ids = set()
    with open(os.path.join(data, "subscribers.csv")) as f:
        next(f)
        for line in f:
            ids.add(line.split(",", 1)[0])
    for name in os.listdir(os.path.join(data, "events")):
        with open(os.path.join(data, "events", name)) as f:
            next(f)
            for line in f:
                ids.add(line.split(",", 2)[1])
    return {i for i in ids if re.fullmatch(r"[0-9]{12}", i)}


def scan(root, ids):
    """Every (file, form) where a raw id appears under root."""
    text = re.compile(rb"(?<![0-9])[0-9]{12}(?![0-9])")
    ints = {int(i) for i in ids}
    swapped = {int.from_bytes(v.to_bytes(8, "little"), "big") for v in ints}
    wanted = ints | swapped
    byte_ids = {i.encode() for i in ids}
    hits = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                data = f.read()
            if any(m in byte_ids for m in text.findall(data)):
                hits.append((path, "text"))
            for off in range(8):
                n = (len(data) - off) // 8
                if n <= 0:
                    continue
                words = set(memoryview(data)[off:off + n * 8].cast("Q"))
                if words & wanted:
                    hits.append((path, f"binary@{off}"))
                    break
    return hits


# The default job, and the job with every privacy option: a dated key file
# whose boundary (midnight UTC) falls in the input (rotation, a table
# pseudonymised under both keys), folding and differential privacy (their
# state is in the checkpoints too).
VARIANTS = {
    "default": ([], None),
    "rotation-fold-dp": (["--set", "k.fold=age_band:wide,area,age_band",
                          "--set", "dp.epsilon=1", "--set", "dp.max.contrib=5",
                          "--set", "dp.budget=50"], "2026-01-05T23:45:00Z"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_raw_identifier_in_any_output(tmp_path, variant):
    extra, start = VARIANTS[variant]
    data, out = tmp_path / "data", tmp_path / "out"
    run("gen", "--out", data, "--events", 150000, "--subscribers", 5000, "--cells", 200,
        "--areas", 4, "--parts", 2, "--seed", 7, "--set", "span.ms=1800000",
        *(["--set", f"start={start}"] if start else []))
    if start:
        with open(data / "keys.txt", "w") as f:
            f.write(f"telecom:1 {secrets.token_hex(32)} 2026-01-05\n"
                    f"telecom:2 {secrets.token_hex(32)} 2026-01-06\n")
        os.chmod(data / "keys.txt", 0o600)  # sluice refuses readable key files
    else:
        run("keygen", data / "keys.txt")
    # malformed lines carrying raw ids: they must reach dead letters masked
    bad = ("1767571200000,491700001234,TELEPORT,1,,\n"
           "not-a-time,491700004321,SMS_SENT,1,,\n"
           "491700005555,SMS_SENT\n"
           '"unterminated,491700006666,SMS_SENT,1,,\n')
    with open(data / "events" / "events-000.csv", "a") as f:
        f.write(bad)
    ids = raw_ids(str(data)) | {"491700001234", "491700004321", "491700005555",
                                "491700006666"}
    args = [SLUICE, "run", "telecom-age", "--events", data / "events",
            "--subscribers", data / "subscribers.csv", "--cells", data / "cells.csv",
            "--key-file", data / "keys.txt", "--db", out / "result.db", "--out-dir", out,
            "--checkpoint-dir", out / "ck", "--checkpoint-interval-ms", 100,
            "--set", f"log.file={out / 'sluice.log'}", "--set", "log.level=debug", *extra]
    os.makedirs(out)
    log = open(out / "job.log", "w")
    p = subprocess.Popen([*map(str, args), "--set", "source.rate=100000"], stdout=log,
                         stderr=log)
    time.sleep(1.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = subprocess.run(list(map(str, args)), stdout=log, stderr=log)
    log.close()
    assert r.returncode == 0, open(out / "job.log").read()
    # the structured log (log.file, scanned below with everything else)
    assert "msg=\"restored checkpoint\"" in open(out / "sluice.log").read()
    assert os.path.getsize(out / "dead-letters.jsonl") > 0
    assert any(n.startswith("chk-") for n in os.listdir(out / "ck"))
    con = sqlite3.connect(str(out / "result.db"))
    assert con.execute("SELECT COUNT(*) FROM age_distribution").fetchone()[0] > 0
    con.close()

    hits = scan(str(out), ids)
    assert hits == [], f"raw identifiers found: {hits}"

    # the scan can fail: a planted id, once as text and once as an integer
    (out / "control-text").write_text("x 491700001234 y\n")
    (out / "control-bin").write_bytes(b"\x00" * 3 + int("491700004321").to_bytes(8, "big"))
    found = {os.path.basename(p) for p, _ in scan(str(out), ids)}
    assert found == {"control-text", "control-bin"}
