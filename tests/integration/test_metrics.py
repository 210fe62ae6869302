"""Metrics, status API and dashboard against a running reference job.

- the figures at /metrics match what the job did (rows in SQLite, events read);
- business counters after kill -9 and recovery equal an uninterrupted run's;
- a stalled sink (SQLite locked by another process) shows back pressure
  upstream, and the job still finishes;
- a real Prometheus scrapes sluice (up == 1 and a sluice metric);
- headless Chromium renders the dashboard with real figures of a running job
  (DOM text via --dump-dom, and a screenshot kept in out/test-metrics/).

Prometheus and Chromium are Debian packages; scripts/install-deps.sh installs
them when missing."""
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")
ARTIFACTS = os.path.join(ROOT, "out", "test-metrics")


def ensure_tools():
    if shutil.which("prometheus") and shutil.which("chromium"):
        return
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "install-deps.sh")], check=True)


@pytest.fixture(scope="module")
def data():
    d = tempfile.mkdtemp(prefix="sluice-metrics-")
    # 10 minutes of event time: with 1-second windows the job emits many
    # windows per second of wall time, enough to fill a stalled sink's queue
    subprocess.run([SLUICE, "gen", "--out", f"{d}/data", "--events", "200000",
                    "--subscribers", "20000", "--cells", "100", "--areas", "2",
                    "--parts", "2", "--seed", "7", "--set", "span.ms=600000"],
                   check=True, capture_output=True)
    subprocess.run([SLUICE, "keygen", f"{d}/data/keys.txt"], check=True,
                   capture_output=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Job:
    """A `sluice run telecom-age` with its own metrics port (any free one)."""

    def __init__(self, data, name, *extra, linger_ms=4000):
        self.dir = os.path.join(data, name)
        os.makedirs(self.dir, exist_ok=True)
        self.db = os.path.join(self.dir, "out.db")
        self.log = os.path.join(self.dir, "run.log")
        self.argv = [SLUICE, "run", "telecom-age", "--events", f"{data}/data/events",
                     "--subscribers", f"{data}/data/subscribers.csv",
                     "--cells", f"{data}/data/cells.csv",
                     "--key-file", f"{data}/data/keys.txt", "--db", self.db,
                     "--out-dir", self.dir, "--window-ms", "1000", "--k", "2",
                     "--parallelism", "2",
                     "--set", "metrics.address=127.0.0.1:0",
                     "--set", f"metrics.linger.ms={linger_ms}", *extra]
        self.p = None
        self.url = None

    def start(self):
        self.f = open(self.log, "a")
        self.off = self.f.tell()  # a restart appends to the same log
        self.p = subprocess.Popen(self.argv, stdout=self.f, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            m = re.search(r"dashboard (http://[0-9.:]+/)", self.text())
            if m:
                self.url = m.group(1)
                return self
            assert self.p.poll() is None, open(self.log).read()
            time.sleep(0.05)
        raise AssertionError("no dashboard URL printed:\n" + open(self.log).read())

    def text(self):
        with open(self.log) as f:
            f.seek(self.off)
            return f.read()

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return r.read().decode()

    def metrics(self):
        return parse_metrics(self.get("metrics"))

    def status(self):
        return json.loads(self.get("status"))

    def finished(self):
        t = self.text()
        return "sluice: done" in t or "sluice: failed" in t

    def wait_summary(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline and not self.finished():
            assert self.p.poll() is None or self.finished(), self.text()
            time.sleep(0.05)
        assert "sluice: done" in self.text(), self.text()

    def wait(self, timeout=60):
        rc = self.p.wait(timeout=timeout)
        self.f.close()
        return rc

    def kill(self):
        if self.p and self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def parse_metrics(text):
    """{(name, frozenset(labels)): value}; checks the exposition format."""
    out = {}
    typed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)', line)
        assert m, f"bad sample line: {line!r}"
        name, labels = m.group(1), m.group(3) or ""
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or base in typed, f"{name} has no # TYPE"
        lab = frozenset(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', labels))
        out[(name, lab)] = float(m.group(4))
    return out


def total(metrics, name, **labels):
    want = set(labels.items())
    return sum(v for (n, lab), v in metrics.items() if n == name and want <= set(lab))


def series(metrics, name):
    return {lab: v for (n, lab), v in metrics.items() if n == name}


def rows(db):
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT COUNT(*) FROM age_distribution").fetchone()[0]
    finally:
        con.close()


def test_metric_values_match_what_the_job_did(data):
    job = Job(data, "plain").start()
    job.wait_summary()
    m = job.metrics()  # lingering: the final figures
    assert job.wait() == 0
    written = rows(job.db)
    assert written > 1000
    assert total(m, "sluice_job_records_written_total") == written
    assert total(m, "sluice_job_records_read_total") == 200000
    events = total(m, "sluice_events_total")
    assert events + total(m, "sluice_job_dead_letters_total") == 200000
    for t in ("SMS_SENT", "CALL_PLACED", "DATA_SESSION"):
        assert total(m, "sluice_events_total", event_type=t) > 0
    log = job.text()
    windows = int(re.search(r"(\d+) windows fired", log).group(1))
    suppressed = int(re.search(r"(\d+) groups suppressed", log).group(1))
    assert total(m, "sluice_job_windows_emitted_total") == windows
    assert total(m, "sluice_job_groups_suppressed_total") == suppressed
    # published rows are windows emitted minus groups suppressed
    assert windows - suppressed == written
    assert total(m, "sluice_job_running") == 0
    # source offsets: every partition (one file each, name order) read to its
    # end, and the end is the file's size
    files = sorted(os.listdir(f"{data}/data/events"))
    assert len(files) == 2
    for i, name in enumerate(files):
        size = os.path.getsize(f"{data}/data/events/{name}")
        assert total(m, "sluice_source_offset_bytes", partition=str(i)) == size
        assert total(m, "sluice_source_end_offset_bytes", partition=str(i)) == size
        assert total(m, "sluice_source_lag_bytes", partition=str(i)) == 0
    # no label value may look like a subscriber number
    for (name, lab) in m:
        for _, v in lab:
            assert not re.search(r"[0-9]{8,}", v), (name, lab)


def test_state_cache_metrics_count_every_lookup(data):
    """state.backend=rocksdb: every lookup of the two joins is a row-cache
    hit or a miss, so hits + misses = the events joined. A subscriber absent
    from the table misses once, then its absence is cached: misses >= the
    distinct unknown subscribers (counted here from the CSVs). The tables
    fit their caches and are loaded into them when the job starts, so
    nearly every other lookup hits."""
    job = Job(data, "rocks", "--set", "state.backend=rocksdb").start()
    job.wait_summary()
    m = job.metrics()
    assert job.wait() == 0
    with open(f"{data}/data/subscribers.csv") as f:
        known = {line.split(",")[0] for line in f}
    unknown = set()
    for name in os.listdir(f"{data}/data/events"):
        with open(f"{data}/data/events/{name}") as f:
            next(f)
            unknown.update(m for m in (line.split(",")[1] for line in f) if m not in known)
    unknown = len(unknown)
    assert unknown > 0
    events = total(m, "sluice_events_total")
    assert events == 200000
    for lookup, absent in (("sub", unknown), ("cell_id", 0)):
        hits = total(m, "sluice_state_cache_hits_total", lookup=lookup)
        misses = total(m, "sluice_state_cache_misses_total", lookup=lookup)
        print(f"{lookup}: {hits:.0f} hits, {misses:.0f} misses, {absent} absent")
        assert hits + misses == events, (lookup, hits, misses)
        assert absent <= misses <= absent + 0.02 * events, (lookup, absent, misses)


def test_per_task_metrics_while_running(data):
    job = Job(data, "running", "--set", "source.rate=15000", linger_ms=0).start()
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            m = job.metrics()
            if total(m, "sluice_sink_records_total") > 0 and \
               total(m, "sluice_records_in_per_second") > 0:
                break
            time.sleep(0.3)
        stages = series(m, "sluice_stage_info")
        ops = {dict(lab)["stage"]: dict(lab)["operators"] for lab in stages}
        assert "pseudonymise" in ops["0"] and "window" in ops["1"]
        # a stage's output is the next stage's input (same process, same scrape
        # up to in-flight batches): records out of stage 0 >= records into stage 1
        assert total(m, "sluice_records_out_total", stage="0") >= \
            total(m, "sluice_records_in_total", stage="1")
        assert total(m, "sluice_source_records_total") == \
            total(m, "sluice_records_in_total", stage="0")
        assert total(m, "sluice_input_queue_capacity_batches", stage="1") == 2 * 2 * 8
        # bytes: a source row has 6 columns of >= 8 bytes plus validity
        assert total(m, "sluice_bytes_in_total", stage="0") >= \
            54 * total(m, "sluice_records_in_total", stage="0") > 0
        st = job.status()
        assert st["job"]["state"] == "running"
        assert [s["stage"] for s in st["stages"]] == [0, 1, 2]
        assert st["job"]["in_rate"] > 1000
        assert len(st["tasks"]) == 5
    finally:
        job.kill()


def business(m):
    b = {k: total(m, k) for k in (
        "sluice_job_records_read_total", "sluice_job_records_written_total",
        "sluice_job_windows_emitted_total", "sluice_job_groups_suppressed_total",
        "sluice_job_late_records_total", "sluice_job_dead_letters_total")}
    # events per type (checkpointed by the count_by operator)
    for lab, v in series(m, "sluice_events_total").items():
        b["events:" + dict(lab)["event_type"]] = v
    return b


def test_business_counters_survive_kill_and_recovery(data):
    ref = Job(data, "ref", "--checkpoint-dir", f"{data}/ref/ck",
              "--checkpoint-interval-ms", "300").start()
    ref.wait_summary()
    want = business(ref.metrics())
    assert ref.wait() == 0

    ck = f"{data}/crash/ck"
    job = Job(data, "crash", "--checkpoint-dir", ck, "--checkpoint-interval-ms", "300",
              "--set", "source.rate=20000", linger_ms=0).start()
    deadline = time.time() + 30
    while time.time() < deadline:
        m = job.metrics()
        if total(m, "sluice_checkpoints_completed_total") >= 3 and \
           total(m, "sluice_job_windows_emitted_total") > 0:
            break
        time.sleep(0.2)
    assert total(m, "sluice_checkpoints_completed_total") >= 3
    # lag while running: offsets below the files' sizes, lag = end - offset
    st = job.status()
    assert st["sources"] and all(p["lag_bytes"] == p["end_bytes"] - p["offset_bytes"]
                                 for p in st["sources"])
    assert sum(total(m, "sluice_source_lag_bytes", partition=str(i)) for i in (0, 1)) > 0
    job.p.send_signal(signal.SIGKILL)
    job.wait()
    again = Job(data, "crash", "--checkpoint-dir", ck, "--checkpoint-interval-ms", "300").start()
    st = again.status()
    again.wait_summary()
    m = again.metrics()
    assert again.wait() == 0
    assert total(m, "sluice_checkpoint_restored_epoch") > 0
    assert business(m) == want, (business(m), want)
    assert len([k for k in want if k.startswith("events:")]) >= 5
    assert rows(again.db) == want["sluice_job_records_written_total"]
    assert st["version"]


def test_stalled_sink_shows_back_pressure(data):
    job = Job(data, "stall", "--delivery", "at-least-once", "--set", "sink.flush.ms=20",
              "--set", "exchange.capacity=1", "--set", "source.rate=25000",
              linger_ms=0).start()
    try:
        deadline = time.time() + 20
        while time.time() < deadline and not (os.path.exists(job.db) and
                                              total(job.metrics(), "sluice_sink_records_total") > 0):
            time.sleep(0.1)
        con = sqlite3.connect(job.db, timeout=10, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")  # the sink's next flush now waits
        seen_bp, seen_full = 0.0, 0.0
        t_end = time.time() + 3.5
        while time.time() < t_end:
            m = job.metrics()
            seen_bp = max(seen_bp, max(series(m, "sluice_backpressure_ratio").values() or [0]))
            seen_full = max(seen_full, total(m, "sluice_input_queue_fill_ratio", stage="2"))
            time.sleep(0.25)
        con.execute("COMMIT")
        con.close()
        assert seen_full == 1.0, "the sink's input queue never filled"
        assert seen_bp >= 0.5, f"upstream back pressure only {seen_bp}"
        job.wait_summary()
        assert job.wait() == 0
    finally:
        job.kill()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_prometheus_scrapes_sluice(data):
    ensure_tools()
    job = Job(data, "prom", "--set", "source.rate=2500", linger_ms=0).start()
    target = job.url.split("//")[1].rstrip("/")
    pdir = os.path.join(data, "prom")
    cfg = os.path.join(pdir, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write(f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                f"scrape_configs:\n  - job_name: sluice\n    static_configs:\n"
                f"      - targets: ['{target}']\n")
    pport = free_port()
    plog = open(os.path.join(pdir, "prometheus.log"), "w")
    prom = subprocess.Popen(["prometheus", f"--config.file={cfg}",
                             f"--storage.tsdb.path={pdir}/tsdb",
                             f"--web.listen-address=127.0.0.1:{pport}"],
                            stdout=plog, stderr=subprocess.STDOUT)

    def query(q):
        u = f"http://127.0.0.1:{pport}/api/v1/query?query=" + urllib.request.quote(q)
        with urllib.request.urlopen(u, timeout=5) as r:
            return json.loads(r.read())["data"]["result"]

    try:
        up, recs = [], []
        deadline = time.time() + 40  # targets reach the scraper every ~5 s
        while time.time() < deadline:
            try:
                up = query('up{job="sluice"}')
                recs = query('sum(sluice_source_records_total{job="sluice"})')
            except OSError:
                pass
            if up and up[0]["value"][1] == "1" and recs and float(recs[0]["value"][1]) > 0:
                break
            time.sleep(1)
        assert up and up[0]["value"][1] == "1", open(plog.name).read()[-2000:]
        assert recs and float(recs[0]["value"][1]) > 0
    finally:
        prom.terminate()
        prom.wait(timeout=20)
        job.kill()


def chromium(*args):
    prof = tempfile.mkdtemp(prefix="sluice-chromium-")
    try:
        return subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={prof}", "--window-size=1440,1000",
             "--virtual-time-budget=4000", *args],
            capture_output=True, text=True, timeout=90)
    finally:
        shutil.rmtree(prof, ignore_errors=True)


def test_dashboard_renders_a_running_job(data):
    ensure_tools()
    job = Job(data, "dash", "--checkpoint-dir", f"{data}/dash/ck",
              "--checkpoint-interval-ms", "500", "--set", "source.rate=6000",
              linger_ms=0).start()
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            st = job.status()
            if st["job"]["state"] == "running" and st["checkpoints"]["completed"] >= 2 \
               and len(st["history"]) >= 3:
                break
            time.sleep(0.3)
        dom = chromium("--dump-dom", job.url).stdout
        read_now = job.status()["job"]["records_in"]
        assert "telecom-age" in dom
        assert re.search(r'class="pill running"', dom), dom[:2000]
        for op in ("pseudonymise", "window", "k_anon", "sqlite"):
            assert f"<b>{op}</b>" in dom
        kpi = dict((l, v) for v, l in re.findall(
            r'<div class="v">([^<]*)</div><div class="l">([^<]*)</div>', dom))
        m = re.fullmatch(r"([0-9.]+)( k| M| G)?", kpi["events read"])
        assert m, kpi
        unit = {None: 1, " k": 1e3, " M": 1e6, " G": 1e9}[m.group(2)]
        shown = float(m.group(1)) * unit
        # The dashboard rounds to its last shown decimal: allow half of it.
        decimals = len(m.group(1).partition(".")[2])
        assert 0 < shown <= read_now + unit * 0.5 * 10 ** -decimals
        assert kpi["events / s"] not in ("0", "–")
        assert re.search(r"<td>SMS_SENT</td><td>[0-9.]+( k)?</td>", dom)
        assert "<th>epoch</th>" in dom and "no checkpoint yet" not in dom
        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = os.path.join(ARTIFACTS, "dashboard.png")
        if os.path.exists(shot):
            os.remove(shot)
        chromium(f"--screenshot={shot}", job.url)
        assert os.path.getsize(shot) > 20000
    finally:
        job.kill()
