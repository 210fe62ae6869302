"""Queryable state: GET /state/<operator>?key=... against a running job.

A SQL job counts events and distinct subscribers per key and minute with
k = 3, its source throttled so the one window stays open while we ask:
- key a (5 events, all read early) answers exactly its final row;
- key b (3000 events, being read) answers counts that only grow and never
  exceed the final row;
- key c (2 subscribers < k) answers "suppressed", like the sink withholds it;
- answers keep coming while checkpoints run every 100 ms;
- a wrong key is 400, an unknown operator 404, and a job whose k-anonymity
  the window cannot apply per key (a map between window and k) is 403."""
import json
import os
import re
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")

JOB = """
CREATE SOURCE s (ts TIMESTAMP, k VARCHAR, sub BIGINT,
  WATERMARK FOR ts AS ts - INTERVAL '5' MINUTE)
  WITH (connector = 'file', path = '${input}');
CREATE SINK o WITH (connector = 'sqlite', path = '${db}', table = 'o',
  k_anonymity = '3', k_column = 'subs') AS
SELECT window_start, window_end, k, COUNT(*) AS n, COUNT(DISTINCT sub) AS subs
FROM s GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), k%s;
"""


def start(tmp_path, name, job_text, *extra):
    inp = tmp_path / "in.csv"
    if not inp.exists():
        rows = ["ts,k,sub"] + [f"{1000 + i},a,{i}" for i in range(5)] \
            + [f"{2000 + i},c,{i}" for i in range(2)] \
            + [f"{6000 + i},b,{i % 50}" for i in range(3000)]
        inp.write_text("\n".join(rows) + "\n")
    job = tmp_path / f"{name}.sql"
    job.write_text(job_text)
    log = open(tmp_path / f"{name}.log", "w")
    p = subprocess.Popen([SLUICE, "run", str(job), "--set", f"input={inp}",
                          "--set", f"db={tmp_path}/{name}.db",
                          "--set", f"output.dir={tmp_path}/{name}",
                          "--set", "metrics.address=127.0.0.1:0",
                          "--set", "source.rate=600", *extra],
                         stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while time.time() < deadline:
        m = re.search(r"dashboard (http://[0-9.:]+/)", open(log.name).read())
        if m:
            return p, m.group(1), log.name
        assert p.poll() is None, open(log.name).read()
        time.sleep(0.05)
    raise AssertionError(open(log.name).read())


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_state_answers_match_the_sink(tmp_path):
    p, url, log = start(tmp_path, "q", JOB % "", "--set", "checkpoint.dir=" +
                        str(tmp_path / "ck"), "--set", "checkpoint.interval.ms=100")
    try:
        # wait until key a's five rows have been read
        deadline = time.time() + 20
        while time.time() < deadline:
            st, body = get(url + "state/window?key=a")
            if st == 200 and body["windows"] and body["windows"][0]["n"] == 5:
                break
            time.sleep(0.05)
        a = body["windows"]
        b_seen = []
        answers = 0
        while p.poll() is None and len(b_seen) < 30:
            st, body = get(url + "state/window?key=b")
            if st == 404:  # the job has finished meanwhile
                break
            assert st == 200, body
            answers += 1
            if body["windows"]:
                b_seen.append(body["windows"][0]["n"])
            time.sleep(0.05)
        assert answers >= 5, "queries must be answered while checkpoints run"
        st, c = get(url + "state/window?key=c")
        assert st in (200, 404), c
        if st == 200:
            assert c["windows"] == [{"window_start": 0, "window_end": 60000, "k": "c",
                                     "suppressed": True}]
        st, e = get(url + "state/window?key=a,b")
        assert st in (400, 404) and "error" in e
        st, e = get(url + "state/nothing?key=a")
        assert st == 404 and "no queryable operator" in e["error"]
        assert p.wait(timeout=60) == 0, open(log).read()
    finally:
        if p.poll() is None:
            p.kill()
    con = sqlite3.connect(str(tmp_path / "q.db"))
    final = {r[2]: r for r in con.execute("SELECT window_start, window_end, k, n, subs FROM o")}
    con.close()
    assert "c" not in final, "below k: withheld by the sink too"
    assert a == [{"window_start": 0, "window_end": 60000, "k": "a", "n": 5, "subs": 5}]
    assert final["a"] == (0, 60000, "a", 5, 5)
    assert b_seen and b_seen == sorted(b_seen), b_seen
    assert 0 < b_seen[0] and b_seen[-1] <= final["b"][3] == 3000


def test_state_refused_when_k_cannot_apply_per_key(tmp_path):
    # a map between the window and k-anonymity: k is not pushed into the window
    job = JOB.replace("SELECT window_start, window_end, k,", "SELECT window_start, k,") \
        % ""
    p, url, log = start(tmp_path, "r", job)
    try:
        st, body = get(url + "state/window?key=a")
        assert st == 403 and "k-anonymity" in body["error"], body
    finally:
        p.kill()
        p.wait()
