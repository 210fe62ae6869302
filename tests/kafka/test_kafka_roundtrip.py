"""Round trips between sluice and kcat through a real broker: sluice reads
what kcat writes (CSV and JSON Lines, several records per message, key and
timestamp from the record), kcat reads what sluice writes (CSV and JSON
Lines, exactly-once and at-least-once), undecodable records are
dead-lettered with their topic/partition@offset position and counted, and
bad configuration is an error naming the key. Expected values are computed
here from the input, never taken from sluice."""
import csv
import io
import json
import os
import subprocess

import kafkatest as kt

COLS = ["ts", "event_type", "cell_id", "duration_s", "bytes"]  # no identifier column
SCHEMA = ("ts TIMESTAMP, msisdn VARCHAR, event_type VARCHAR, cell_id BIGINT, "
          "duration_s BIGINT, bytes BIGINT")


def run_sql(tmp, name, text, check=True, quiet=True):
    path = os.path.join(tmp, name + ".sql")
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([kt.SLUICE, "run", path, "--set", "metrics.address=", "--set",
                        f"output.dir={tmp}/out-{name}"] + (["--quiet"] if quiet else []),
                       capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, f"{name}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def file_rows(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    return sorted(tuple(r) for r in rows[1:])  # the file sink writes a header


def projected(lines):
    """The input lines without the msisdn field, as CSV fields."""
    out = []
    for r in csv.reader(io.StringIO("\n".join(lines))):
        out.append((r[0], r[2], r[3], r[4], r[5]))
    return out


def test_sluice_reads_csv_that_kcat_writes(broker, dataset, tmp_path):
    lines = dataset.lines(0)[:3000]
    # one record per message for the first half, 7 per message after
    msgs = lines[:1500] + ["\n".join(lines[i:i + 7]) for i in range(1500, 3000, 7)]
    kt.kcat_produce(broker.bootstrap, "rt-csv-in", msgs)
    out = tmp_path / "got.csv"
    run_sql(str(tmp_path), "read_csv", f"""
CREATE SOURCE ev ({SCHEMA}) WITH (connector = 'kafka', bootstrap.servers = '{broker.bootstrap}',
  topic = 'rt-csv-in', format = 'csv', bounded = 'true');
CREATE SINK o WITH (connector = 'file', path = '{out}', format = 'csv') AS
SELECT {', '.join(COLS)} FROM ev;
""")
    assert file_rows(out) == sorted(projected(lines))


def test_sluice_reads_jsonl_with_key_and_timestamp_from_the_record(broker, tmp_path):
    keys = [f"k{i % 13}" for i in range(500)]
    msgs = [json.dumps({"v": i, "note": f"n{i}"}) for i in range(500)]
    kt.kcat_produce(broker.bootstrap, "rt-json-in", msgs, keys=keys)
    # what kcat sees: key, broker-assigned timestamp and payload
    seen = kt.kcat_read(broker.bootstrap, "rt-json-in", committed=False, fmt="%k\t%T\t%s")
    want = sorted((k, t, str(json.loads(p)["v"]), json.loads(p)["note"])
                  for k, t, p in (m.split("\t", 2) for m in seen))
    assert len(want) == 500
    out = tmp_path / "got.csv"
    run_sql(str(tmp_path), "read_json", f"""
CREATE SOURCE ev (k VARCHAR, t TIMESTAMP, v BIGINT, note VARCHAR) WITH (connector = 'kafka',
  bootstrap.servers = '{broker.bootstrap}', topic = 'rt-json-in', format = 'jsonl',
  key.column = 'k', timestamp.column = 't', bounded = 'true');
CREATE SINK o WITH (connector = 'file', path = '{out}', format = 'csv') AS
SELECT k, t, v, note FROM ev;
""")
    assert file_rows(out) == want


def write_job(broker, topic, fmt, delivery, src, ck):
    return f"""
SET 'delivery' = '{delivery}';
SET 'checkpoint.dir' = '{ck}';
CREATE SOURCE ev ({SCHEMA}) WITH (connector = 'file', path = '{src}');
CREATE SINK o WITH (connector = 'kafka', bootstrap.servers = '{broker.bootstrap}',
  topic = '{topic}', format = '{fmt}', properties.linger.ms = '5') AS
SELECT {', '.join(COLS)} FROM ev;
"""


def test_kcat_reads_csv_that_sluice_writes_exactly_once(broker, dataset, tmp_path):
    run_sql(str(tmp_path), "write_csv", write_job(broker, "rt-csv-out", "csv", "exactly-once",
                                                  dataset.files[1], tmp_path / "ck"))
    got = sorted(tuple(next(csv.reader([m]))) for m in kt.kcat_read(broker.bootstrap,
                                                                     "rt-csv-out"))
    assert got == sorted(projected(dataset.lines(1)))


def test_kcat_reads_jsonl_that_sluice_writes_at_least_once(broker, dataset, tmp_path):
    run_sql(str(tmp_path), "write_json", write_job(broker, "rt-json-out", "jsonl",
                                                   "at-least-once", dataset.files[0],
                                                   tmp_path / "ck"))
    got = []
    for m in kt.kcat_read(broker.bootstrap, "rt-json-out"):
        o = json.loads(m)
        got.append(tuple("" if o[c] is None else str(o[c]) for c in COLS))
    # at-least-once may repeat rows after a failure; this run has none
    assert sorted(got) == sorted(projected(dataset.lines(0)))


def test_undecodable_records_are_dead_lettered_and_counted(broker, dataset, tmp_path):
    good = ["1767571200000,491700000429,SMS_SENT,336,,",
            "1767571200001,491700000430,CALL_PLACED,12,60,"]
    bad = ["notatime,491700004242,SMS_SENT,1,,",
           "1767571200002,491700004243,NOT_AN_EVENT,2,,",
           "1767571200003,491700004244,SMS_SENT"]
    # message 0: good; message 1: good + bad + bad (lines 1-3); message 2: bad
    msgs = [good[0], "\n".join([good[1], bad[0], bad[1]]), bad[2]]
    kt.kcat_produce(broker.bootstrap, "rt-bad-in", msgs, partition=0)
    out = tmp_path / "got.csv"
    r = run_sql(str(tmp_path), "bad", f"""
SET 'key.file' = '{dataset.keys}';
CREATE SOURCE ev (ts TIMESTAMP, msisdn VARCHAR, event_type VARCHAR CHECK (event_type IN
  ('SMS_SENT', 'CALL_PLACED')), cell_id BIGINT, duration_s BIGINT, bytes BIGINT)
  WITH (connector = 'kafka', bootstrap.servers = '{broker.bootstrap}', topic = 'rt-bad-in',
        bounded = 'true');
CREATE SINK o WITH (connector = 'file', path = '{out}', format = 'csv') AS
SELECT {', '.join(COLS)}, PSEUDONYMIZE(msisdn) AS subscriber FROM ev;
""", quiet=False)
    assert sorted(r[:5] for r in file_rows(out)) == sorted(projected(good))
    with open(tmp_path / "out-bad" / "dead-letters.jsonl") as f:
        dl = [json.loads(ln) for ln in f]
    got = sorted((d["position"], d["reason"].split(":")[0]) for d in dl)
    assert got == [("rt-bad-in/0@1:2", "parse_error"), ("rt-bad-in/0@1:3", "unknown_value"),
                   ("rt-bad-in/0@2:1", "wrong_field_count")], dl
    assert " 3 dead letters" in r.stderr, r.stderr  # the counter
    text = json.dumps(dl)
    for b in bad:
        assert b.split(",")[1] not in text, "a raw identifier reached the dead letters"


def test_unknown_librdkafka_property_is_an_error_naming_the_key(broker, tmp_path):
    r = run_sql(str(tmp_path), "badprop", f"""
CREATE SOURCE ev ({SCHEMA}) WITH (connector = 'kafka', bootstrap.servers = '{broker.bootstrap}',
  topic = 'rt-csv-in', properties.fetch.wait.max.ms = '5', properties.no.such.thing = '1');
CREATE SINK o WITH (connector = 'stdout') AS SELECT ts FROM ev;
""", check=False)
    assert r.returncode != 0
    assert "properties.no.such.thing" in r.stderr and "No such configuration property" in r.stderr
    r = run_sql(str(tmp_path), "reserved", f"""
CREATE SOURCE ev ({SCHEMA}) WITH (connector = 'file', path = '{tmp_path}/badprop.sql');
CREATE SINK o WITH (connector = 'kafka', bootstrap.servers = '{broker.bootstrap}', topic = 'x',
  properties.transactional.id = 'mine') AS SELECT ts FROM ev;
""", check=False)
    assert r.returncode != 0 and "properties.transactional.id" in r.stderr, r.stderr


def test_gen_produces_the_events_into_a_topic(broker, tmp_path):
    """`sluice gen --kafka`: the topic holds exactly the generated events
    (batched per message), as the CSV files hold them."""
    d = tmp_path / "g"
    kt.sluice("gen", "--out", d, "--events", 5000, "--subscribers", 500, "--cells", 500,
              "--parts", 2, "--kafka", broker.bootstrap, "--topic", "gen-events",
              "--per-message", 40)
    want = []
    for f in sorted(os.listdir(d / "events")):
        with open(d / "events" / f) as fh:
            want += [ln.rstrip("\n") for ln in fh.readlines()[1:]]
    msgs = kt.kcat_read(broker.bootstrap, "gen-events")
    got = [ln for m in msgs for ln in m.split("\n")]
    assert sorted(got) == sorted(want) and len(got) == 5000
    assert max(len(m.split("\n")) for m in msgs) == 40


def test_consumer_offsets_and_lag_in_metrics(broker, tmp_path):
    """Per-partition progress of a Kafka source in messages: after reading
    the whole (bounded) topic, the offsets sum to the messages produced and
    the lag is 0, in /metrics and /status (served a moment after the run)."""
    import re
    import time
    import urllib.request
    msgs = [json.dumps({"v": i}) for i in range(700)]
    kt.kcat_produce(broker.bootstrap, "rt-lag", msgs)
    path = tmp_path / "lag.sql"
    path.write_text(f"""
CREATE SOURCE ev (v BIGINT) WITH (connector = 'kafka', bootstrap.servers = '{broker.bootstrap}',
  topic = 'rt-lag', format = 'jsonl', bounded = 'true');
CREATE SINK o WITH (connector = 'file', path = '{tmp_path}/lag.csv', format = 'csv') AS
SELECT v FROM ev;
""")
    log = tmp_path / "lag.log"
    with open(log, "w") as f:
        p = subprocess.Popen([kt.SLUICE, "run", str(path), "--set", "metrics.address=127.0.0.1:0",
                              "--set", "metrics.linger.ms=8000",
                              "--set", f"output.dir={tmp_path}/out-lag"],
                             stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline, url = time.time() + 60, None
        while time.time() < deadline:
            text = log.read_text()
            m = re.search(r"dashboard (http://[0-9.:]+/)", text)
            if m and ": done:" in text:
                url = m.group(1)
                break
            assert p.poll() is None, text
            time.sleep(0.1)
        assert url, log.read_text()
        metrics = urllib.request.urlopen(url + "metrics", timeout=10).read().decode()
        offs = [int(v) for v in re.findall(
            r'^sluice_source_offset_messages\{[^}]*\} (\d+)$', metrics, re.M)]
        lags = [int(v) for v in re.findall(
            r'^sluice_source_lag_messages\{[^}]*\} (-?\d+)$', metrics, re.M)]
        assert offs and sum(offs) == 700, metrics
        assert lags and all(v == 0 for v in lags), lags
        st = json.loads(urllib.request.urlopen(url + "status", timeout=10).read())
        assert sum(s["offset_messages"] for s in st["sources"]) == 700
        # a partition nothing was fetched from has no known end (null)
        known = [s for s in st["sources"] if s["end_messages"] is not None]
        assert known and all(s["lag_messages"] == 0 for s in known), st["sources"]
    finally:
        p.kill()
        p.wait()
