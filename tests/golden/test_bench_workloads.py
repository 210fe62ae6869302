"""Golden tests of the benchmark workloads and of the binary record format.

Each bench workload (bench/jobs/*.sql: the Yahoo Streaming Benchmark from
JSON and from binary records, Hello Twitter) runs on a small generated input
(bench/gen_inputs.py, seed from the commit) and its rows must equal the
counts the generator made while writing the input, so a fast-but-wrong
change fails here rather than in a benchmark nobody reads.

The binary format (src/io/binrec.c) is also checked on hand-built records,
written here with Python's struct, an encoder independent of sluice: NULL
encodings, a garbled BOOL, bytes after a string's padding, a string outside
its column's domain, a short trailing record. The bad ones must be
dead-lettered with their record number and reason, the identifier column
masked, and the result must equal Python's own computation over the good
ones."""
import json
import math
import os
import sqlite3
import struct
import subprocess
import sys

import pytest

from conftest import ROOT, sluice

GEN = os.path.join(ROOT, "bench", "gen_inputs.py")
N = 30_000


def rows(db, query):
    con = sqlite3.connect(db)
    out = sorted(",".join(str(v) for v in r) for r in con.execute(query))
    con.close()
    return out


def expected(path):
    with open(path) as f:
        return sorted(l.strip() for l in f if l.strip())


@pytest.mark.parametrize("job,kind,query", [
    ("ysb_json.sql", "ysb", "SELECT window_start, window_end, campaign_id, views FROM result"),
    ("ysb_binary.sql", "ysb", "SELECT window_start, window_end, campaign_id, views FROM result"),
    ("twitter.sql", "twitter", "SELECT window_start, window_end, lang, tweets FROM result"),
])
def test_bench_workload(tmp_path, seed, job, kind, query):
    data = tmp_path / "in"
    subprocess.run([sys.executable, GEN, kind, str(data), str(N), str(seed)], check=True)
    out = tmp_path / "out"
    r = sluice("run", os.path.join(ROOT, "bench", "jobs", job), "--set", f"input={data}",
               "--set", f"out={out}", "--set", f"output.dir={out}", "--set", "parallelism=2",
               "--quiet")
    want = expected(data / "expected.csv")
    assert len(want) > 100
    got = rows(str(out / "result.db"), query)
    assert got == want, r.stderr
    dead = out / "dead-letters.jsonl"
    assert not dead.exists() or dead.stat().st_size == 0


# ts TIMESTAMP, msisdn VARCHAR(12), kind VARCHAR(8) in a domain, ok BOOLEAN,
# amount DOUBLE, n BIGINT: 8 + 12 + 8 + 1 + 8 + 8 = 45 bytes a record.
REC = struct.Struct("<q12s8sBdq")
NULL64 = -2**63
JOB = """
SET 'key.file' = '${dir}/keys.txt';
CREATE SOURCE ev (
  ts TIMESTAMP, msisdn VARCHAR, kind VARCHAR CHECK (kind IN ('sms', 'call', 'data')),
  ok BOOLEAN, amount DOUBLE, n BIGINT,
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (connector = 'file', path = '${dir}/ev.bin', format = 'binary',
        'binary.widths' = 'msisdn:12,kind:8');
CREATE SINK result WITH (connector = 'sqlite', path = '${out}/result.db', table = 'result') AS
SELECT window_start, kind, COUNT(*) AS events, SUM(n) AS total, SUM(amount) AS amount,
       COUNT(DISTINCT PSEUDONYMIZE(msisdn)) AS subs
FROM ev WHERE ok GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), kind;
"""


def test_binary_records_golden(tmp_path):
    base = 1_700_000_000_000
    good, bad = [], {}
    recs = []

    def add(ts, msisdn, kind, ok, amount, n, why=None, raw=None):
        r = raw if raw is not None else REC.pack(ts, msisdn, kind, ok, amount, n)
        recs.append(r)
        if why is None:
            good.append((ts, msisdn, kind.rstrip(b"\0").decode(), ok, amount, n))
        else:
            bad[len(recs)] = why

    for i in range(60):  # valid records, NULLs among them
        add(base + i * 500, b"4917%08d" % (i % 7), [b"sms", b"call", b"data"][i % 3],
            0xFF if i % 11 == 0 else (0 if i % 5 == 0 else 1),
            float("nan") if i % 4 == 0 else i * 0.25, NULL64 if i % 6 == 0 else i)
    add(base + 1000, b"491700000001", b"sms", 7, 1.0, 1, "parse_error:ok")
    add(base + 1000, b"4917\0\0\0\0\0001", b"sms", 1, 1.0, 1, "parse_error:msisdn")
    add(base + 1000, b"491700000002", b"fax", 1, 1.0, 1, "unknown_value:kind")
    add(base + 2000, b"491700000003", b"call", 1, 2.5, 5)  # good after the bad ones
    data = b"".join(recs) + b"\x01\x02\x03\x04\x05"  # short last record
    short_no = len(recs) + 1
    d = tmp_path / "in"
    d.mkdir()
    (d / "ev.bin").write_bytes(data)
    sluice("keygen", d / "keys.txt")
    job = tmp_path / "job.sql"
    job.write_text(JOB)
    out = tmp_path / "out"
    sluice("run", job, "--set", f"dir={d}", "--set", f"out={out}", "--set",
           f"output.dir={out}", "--quiet")

    want = {}
    for ts, msisdn, kind, ok, amount, n in good:
        if ok != 1:
            continue
        key = (ts // 10_000 * 10_000, kind)
        e = want.setdefault(key, [0, None, None, set()])
        e[0] += 1
        if n != NULL64:
            e[1] = (e[1] or 0) + n
        if not math.isnan(amount):
            e[2] = (e[2] or 0.0) + amount
        e[3].add(msisdn)
    want_rows = sorted((ws, k, e[0], e[1], e[2], len(e[3])) for (ws, k), e in want.items())
    con = sqlite3.connect(str(out / "result.db"))
    got_rows = sorted(con.execute(
        "SELECT window_start, kind, events, total, amount, subs FROM result").fetchall())
    con.close()
    assert got_rows == want_rows

    dead = [json.loads(l) for l in (out / "dead-letters.jsonl").read_text().splitlines()]
    bad[short_no] = "short_record"
    assert {int(x["position"].rsplit(":", 1)[1]): x["reason"] for x in dead} == bad
    for x in dead:
        assert x["position"].startswith(str(d / "ev.bin") + ":")
        # the identifier's bytes are masked: no digit pair of a msisdn in hex
        assert "3439313730" not in x["payload"], x
    assert any("*" * 24 in x["payload"] for x in dead)


def test_binary_widths_errors(tmp_path):
    (tmp_path / "ev.bin").write_bytes(b"")
    for widths, msg in (("nosuch:4", "'nosuch' is not a STRING column"),
                        ("n:4", "'n' is not a STRING column"),
                        ("s:0", "width of 's' must be 1..4096 bytes"),
                        ("s", "'s' is not column:bytes")):
        job = tmp_path / "job.sql"
        job.write_text(f"""
CREATE SOURCE ev (ts TIMESTAMP, s VARCHAR, n BIGINT)
WITH (connector = 'file', path = '{tmp_path}/ev.bin', format = 'binary',
      'binary.widths' = '{widths}');
CREATE SINK k WITH (connector = 'stdout') AS
SELECT window_start, COUNT(*) AS c FROM ev GROUP BY TUMBLE(ts, INTERVAL '1' SECOND);
""")
        r = sluice("run", job, check=False)
        assert r.returncode != 0
        assert "binary.widths" in r.stderr and msg in r.stderr, r.stderr
