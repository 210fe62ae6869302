"""Avro and the dead-letter topic against a real broker. Avro interop with
an independent implementation (python3-avro with the single-object framing
written from the specification, tests/kafka/avro_tool.py): sluice reads what
it writes and it reads what sluice writes, values compared exactly.
Undecodable records (CSV and Avro) go to the dead-letter topic with their
reason and topic/partition@offset:line position in headers, the value
masked exactly as in the dead-letter file, no raw identifier."""
import glob
import json
import os
import re
import subprocess
import sys

import pytest

import kafkatest as kt

TOOL = os.path.join(kt.HERE, "avro_tool.py")
COLUMNS = "id BIGINT, name VARCHAR, score DOUBLE, ok BOOLEAN, at TIMESTAMP"
ROWS = [
    {"id": 1, "name": "plain", "score": 0.1, "ok": True, "at": 1767571200000},
    {"id": -9007199254740993, "name": "", "score": -1e300, "ok": False, "at": 0},
    {"id": 9223372036854775807, "name": "ünï,cödé \"q\"\n2nd line", "score": 2.5e-310,
     "ok": None, "at": -1},
    {"id": None, "name": None, "score": None, "ok": None, "at": None},
    {"id": 0, "name": "x" * 3000, "score": 123456789.125, "ok": True, "at": 4102444800123},
]


def avro_python():
    for py in (sys.executable, "/usr/bin/python3"):
        if subprocess.run([py, "-c", "import avro.io"], capture_output=True).returncode == 0:
            return py
    pytest.fail("python3-avro is missing (scripts/install-deps.sh installs it)")


def tool(*args):
    r = subprocess.run([avro_python(), TOOL] + [str(a) for a in args], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def schema_file(tmp_path):
    r = subprocess.run([kt.SLUICE, "avro-schema", "--schema", COLUMNS], capture_output=True,
                       text=True, check=True)
    p = tmp_path / "schema.json"
    p.write_text(r.stdout)
    return p, r.stderr


def run_sql(tmp, name, text):
    path = os.path.join(tmp, name + ".sql")
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([kt.SLUICE, "run", path, "--set", "metrics.address=", "--set",
                        f"output.dir={tmp}/out-{name}"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, f"{name}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def kcat_files(bootstrap, topic, files):
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-p", "0"] + files,
                   check=True)


def kcat_headers(bootstrap, topic, values=True):
    """(headers dict, value or None) of every committed message of topic."""
    out = []
    for m in kt.kcat_read(bootstrap, topic, fmt="%h\t%s" if values else "%h\t"):
        h, v = m.split("\t", 1)
        out.append((dict(kv.split("=", 1) for kv in h.split(",")), v if values else None))
    return out


def test_sluice_fingerprint_matches_the_specification(tmp_path):
    p, err = schema_file(tmp_path)
    fp, canon = tool("fingerprint", p).split("\n")[:2]
    assert f"0x{fp}" in err, (err, fp, canon)
    # known answers of the specification's test suite
    sys.path.insert(0, kt.HERE)
    import avro_tool
    assert avro_tool.crc64_avro(b'"int"').to_bytes(8, "little").hex() == "8f5c393f1ad57572"
    assert avro_tool.crc64_avro(b'"long"').to_bytes(8, "little").hex() == "b71df49344e154d0"


def test_sluice_reads_avro_that_python_avro_writes(broker, tmp_path):
    p, _ = schema_file(tmp_path)
    (tmp_path / "rows.json").write_text(json.dumps(ROWS))
    msgs = tmp_path / "msgs"
    msgs.mkdir()
    tool("encode", p, tmp_path / "rows.json", msgs)
    kcat_files(broker.bootstrap, "avro-in", sorted(glob.glob(str(msgs / "*.bin"))))
    out = tmp_path / "got.jsonl"
    run_sql(str(tmp_path), "read_avro", f"""
CREATE SOURCE t ({COLUMNS}) WITH (connector = 'kafka', bootstrap.servers = '{broker.bootstrap}',
  topic = 'avro-in', format = 'avro', bounded = 'true');
CREATE SINK o WITH (connector = 'file', path = '{out}', format = 'jsonl') AS SELECT id, name, score, ok, at FROM t;
""")
    got = [json.loads(ln) for ln in open(out)]
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    assert sorted(got, key=key) == sorted(ROWS, key=key)


def test_python_avro_reads_what_sluice_writes(broker, tmp_path):
    p, _ = schema_file(tmp_path)
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    run_sql(str(tmp_path), "write_avro", f"""
SET 'delivery' = 'at-least-once';
CREATE SOURCE t ({COLUMNS}) WITH (connector = 'file', path = '{src}', format = 'jsonl');
CREATE SINK o WITH (connector = 'kafka', bootstrap.servers = '{broker.bootstrap}',
  topic = 'avro-out', format = 'avro') AS SELECT id, name, score, ok, at FROM t;
""")
    raw = subprocess.run(["kcat", "-C", "-b", broker.bootstrap, "-t", "avro-out", "-e", "-q",
                          "-f", "%R%s"], capture_output=True, check=True).stdout
    (tmp_path / "raw.bin").write_bytes(raw)
    got = json.loads(tool("decode", p, tmp_path / "raw.bin"))
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    assert sorted(got, key=key) == sorted(ROWS, key=key)


def test_undecodable_csv_goes_to_the_dead_letter_topic_masked(broker, dataset, tmp_path):
    good = ["1767571200000,491700000429,SMS_SENT,336,,"]
    bad = ["notatime,491700004242,SMS_SENT,1,,",
           "1767571200002,491700004243,NOT_AN_EVENT,2,,",
           "1767571200003,491700004244,SMS_SENT"]
    msgs = [good[0], "\n".join([good[0], bad[0], bad[1]]), bad[2]]
    kt.kcat_produce(broker.bootstrap, "dlq-csv-in", msgs, partition=0)
    out = tmp_path / "got.csv"
    r = run_sql(str(tmp_path), "dlq", f"""
SET 'name' = 'dlq-job';
SET 'key.file' = '{dataset.keys}';
CREATE SOURCE ev (ts TIMESTAMP, msisdn VARCHAR, event_type VARCHAR CHECK (event_type IN
  ('SMS_SENT', 'CALL_PLACED')), cell_id BIGINT, duration_s BIGINT, bytes BIGINT)
  WITH (connector = 'kafka', bootstrap.servers = '{broker.bootstrap}', topic = 'dlq-csv-in',
        bounded = 'true', dead_letter.topic = 'dlq-csv');
CREATE SINK o WITH (connector = 'file', path = '{out}', format = 'csv') AS
SELECT ts, event_type, PSEUDONYMIZE(msisdn) AS subscriber FROM ev;
""")
    letters = kcat_headers(broker.bootstrap, "dlq-csv")
    got = sorted((h["position"], h["reason"], h["job"], v) for h, v in letters)

    def masked(line):  # the identifier column
        f = line.split(",")
        f[1] = "*" * len(f[1])
        return ",".join(f)

    def digits_masked(line):  # fields unmappable: every run of 5+ digits
        return re.sub(r"[0-9]{5,}", lambda m: "*" * len(m.group(0)), line)
    assert got == [("dlq-csv-in/0@1:2", "parse_error:ts", "dlq-job", masked(bad[0])),
                   ("dlq-csv-in/0@1:3", "unknown_value:event_type", "dlq-job", masked(bad[1])),
                   ("dlq-csv-in/0@2:1", "wrong_field_count", "dlq-job",
                    digits_masked(bad[2]))]
    # the same letters as the dead-letter file, and counted
    with open(tmp_path / "out-dlq" / "dead-letters.jsonl") as f:
        file_dl = sorted((d["position"], d["reason"], d["payload"]) for d in map(json.loads, f))
    assert file_dl == [(p, why, v) for p, why, _, v in got]
    assert " 3 dead letters" in r.stderr, r.stderr
    for b in bad:
        assert b.split(",")[1] not in json.dumps(letters), "a raw identifier leaked"


def test_undecodable_avro_goes_to_the_dead_letter_topic(broker, tmp_path):
    p, _ = schema_file(tmp_path)
    (tmp_path / "rows.json").write_text(json.dumps(ROWS[:1]))
    msgs = tmp_path / "msgs"
    msgs.mkdir()
    tool("encode", p, tmp_path / "rows.json", msgs)
    ok = (msgs / "m00000.bin").read_bytes()
    cases = [ok, b"not avro at all", b"\xc3\x01" + bytes(8) + ok[10:], ok[:-3],
             ok + b"\x00", ok]
    files = []
    for i, data in enumerate(cases):
        f = tmp_path / f"case{i}.bin"
        f.write_bytes(data)
        files.append(str(f))
    kcat_files(broker.bootstrap, "avro-bad-in", files)
    out = tmp_path / "got.jsonl"
    r = run_sql(str(tmp_path), "avro_bad", f"""
SET 'name' = 'avro-bad';
CREATE SOURCE t ({COLUMNS}) WITH (connector = 'kafka', bootstrap.servers = '{broker.bootstrap}',
  topic = 'avro-bad-in', format = 'avro', bounded = 'true', dead_letter.topic = 'avro-dlq');
CREATE SINK o WITH (connector = 'file', path = '{out}', format = 'jsonl') AS SELECT id, name, score, ok, at FROM t;
""")
    assert [json.loads(ln) for ln in open(out)] == [ROWS[0], ROWS[0]]
    got = sorted((h["position"], h["reason"])
                 for h, _ in kcat_headers(broker.bootstrap, "avro-dlq", values=False))
    assert got == [("avro-bad-in/0@1:1", "avro_bad_magic"),
                   ("avro-bad-in/0@2:1", "avro_unknown_fingerprint"),
                   ("avro-bad-in/0@3:1", "avro_truncated_datum"),
                   ("avro-bad-in/0@4:1", "avro_trailing_bytes")]
    assert " 4 dead letters" in r.stderr, r.stderr
