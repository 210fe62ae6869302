"""Helpers of the fault tests (kill -9, corrupt checkpoints, full or
read-only checkpoint directories, savepoints): the fixed input and its two
references, lives of the job (one process each, killed or finished), the
result database, and the checkpoint directory as the interface describes it
(DIR/chk-N/ with *.snap files and a MANIFEST written last, DIR/sp-N/ for
savepoints, DIR/sluice.pid).

The input is fixed (a constant generator seed), so its SQL reference and its
uninterrupted baseline are computed once per session. What is random is the
kill schedule: its seed comes from the commit (tests/golden/conftest.py's
commit_seed), is printed, and SLUICE_SEED overrides it; KILLS overrides the
number of random kills."""
import glob
import importlib.util
import math
import os
import re
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(os.path.dirname(HERE), "golden")


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# The golden helpers are loaded under their own names, so they cannot clash
# with tests/fault/conftest.py; test_golden.py imports `conftest` at load
# time, so it is shown the golden one while it loads.
golden_conftest = _load("golden_conftest", os.path.join(GOLDEN, "conftest.py"))
_saved = sys.modules.get("conftest")
sys.modules["conftest"] = golden_conftest
try:
    golden_tests = _load("golden_test_golden", os.path.join(GOLDEN, "test_golden.py"))
finally:
    if _saved is None:
        sys.modules.pop("conftest", None)
    else:
        sys.modules["conftest"] = _saved

SLUICE = golden_conftest.SLUICE
commit_seed = golden_conftest.commit_seed
sluice = golden_conftest.sluice
sqlite_import = golden_conftest.sqlite_import
sluice_rows = golden_tests.sluice_rows


def reference_rows(tmp, data, window_ms=60000, k=16):
    """tests/golden/reference.sql over the raw input, as golden_tests.
    reference_rows computes it, plus one index that changes no result: the
    cell join is on CAST(cell_id AS INTEGER), which SQLite cannot index on
    its own, and without it the join scans every cell per event (20 s here
    instead of 3)."""
    ref = os.path.join(tmp, "ref.db")
    sqlite_import(ref, "events", sorted(glob.glob(os.path.join(data, "events", "*.csv"))))
    sqlite_import(ref, "subscribers", [os.path.join(data, "subscribers.csv")])
    sqlite_import(ref, "cells", [os.path.join(data, "cells.csv")])
    con = sqlite3.connect(ref)
    con.execute("CREATE INDEX cells_by_id ON cells(CAST(cell_id AS INTEGER))")
    con.execute("CREATE TABLE params(window_ms, k)")
    con.execute("INSERT INTO params VALUES (?, ?)", (window_ms, k))
    con.commit()
    with open(os.path.join(GOLDEN, "reference.sql")) as f:
        con.executescript(f.read())
    rows = con.execute("SELECT * FROM expected").fetchall()
    con.close()
    return sorted(rows)

# ---- the fixed input ---------------------------------------------------------
DATA_SEED = 20260105          # fixed: the input never changes between runs
EVENTS = 400_000
SUBSCRIBERS = 20_000
CELLS = 500
AREAS = 8
PARTS = 2                     # = parallelism: one partition per source task
SPAN_MS = 3_600_000
WATERMARK_DELAY_MS = 5000     # > the generator's default out.of.order.ms (2000)
RUN_SECONDS = 3.0             # an uninterrupted rate-limited run lasts about this
RATE = math.ceil(EVENTS / PARTS / RUN_SECONDS)   # records/s per source task
INTERVAL_MS = 100             # the smallest checkpoint interval
KILL_MIN, KILL_MAX = 0.2, 1.5  # random kill instants, seconds after a start
LIFE_TIMEOUT = 120            # a life that should finish must finish by then

# the structured log line (src/core/log.c) of a restore
RESTORED = re.compile(r'component=checkpoint msg="restored checkpoint" epoch=(\d+)')


_session_seed = []


def session_seed():
    """commit_seed(), computed once: HEAD may move while the suite runs."""
    if not _session_seed:
        _session_seed.append(commit_seed())
    return _session_seed[0]


def kill_counts():
    """(exactly-once kills, kills for the weaker guarantees): KILLS sets the
    first (default 20); the others get a quarter of it, at least 5."""
    raw = os.environ.get("KILLS", "").strip()
    n = int(raw) if raw else 20
    if n < 1:
        raise ValueError(f"KILLS must be >= 1, got {raw}")
    return n, max(5, n // 4)


def rerun_hint(seed):
    kills = os.environ.get("KILLS", "").strip()
    return f"make fault SEED={seed}" + (f" KILLS={kills}" if kills else "")


class Dataset:
    """The fixed input, its key file, the SQL reference rows and the rows of
    an uninterrupted run without checkpoints."""

    def __init__(self, root):
        self.root = root
        self.data = os.path.join(root, "data")
        sluice("gen", "--out", self.data, "--events", EVENTS, "--subscribers", SUBSCRIBERS,
               "--cells", CELLS, "--areas", AREAS, "--parts", PARTS, "--seed", DATA_SEED,
               "--set", f"span.ms={SPAN_MS}")
        self.keys = os.path.join(self.data, "keys.txt")
        sluice("keygen", self.keys)
        self.reference = reference_rows(root, self.data)
        out = os.path.join(root, "baseline")
        sluice(*self.job_args(os.path.join(out, "result.db"), out))
        self.baseline = sluice_rows(os.path.join(out, "result.db"))
        self.reference_by_key = {key_of(r): r for r in self.reference}

    def job_args(self, db, out_dir):
        d = self.data
        return ["run", "telecom-age", "--events", os.path.join(d, "events"),
                "--subscribers", os.path.join(d, "subscribers.csv"),
                "--cells", os.path.join(d, "cells.csv"), "--key-file", self.keys,
                "--db", db, "--out-dir", out_dir, "--parallelism", PARTS,
                "--watermark-delay-ms", WATERMARK_DELAY_MS]


def key_of(row):
    """The result's key: (window_start, event_type, area, age_band)."""
    return (row[0], row[2], row[3], row[4])


# ---- processes ---------------------------------------------------------------
class Life:
    """One process of a job, from start to exit (by itself or by a kill)."""

    def __init__(self, job, argv, env, log):
        self.job, self.log = job, log
        self.t0 = time.monotonic()
        with open(log, "wb") as f:
            self.p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env)
        self.killed_at = None

    @property
    def pid(self):
        return self.p.pid

    def running(self):
        return self.p.poll() is None

    def wait_until(self, t):
        """Waits until t seconds after the start; returns the exit code, or
        None if the process still runs then."""
        try:
            return self.p.wait(timeout=max(0.0, self.t0 + t - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None

    def wait(self, timeout=LIFE_TIMEOUT):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.describe()} still ran after {timeout} s")

    def kill(self):
        """SIGKILLs the process; returns its exit code (0 when it had already
        finished by itself, -SIGKILL when the kill landed)."""
        self.killed_at = time.monotonic() - self.t0
        self.p.kill()
        return self.p.wait()

    def output(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def restored(self):
        """The checkpoint this life said it restored, or None."""
        m = RESTORED.findall(self.output())
        return int(m[-1]) if m else None

    def describe(self, tail=2000):
        out = self.output()
        return (f"life of pid {self.pid} ({self.log}), exit {self.p.returncode}"
                + (f", killed at {self.killed_at:.3f} s" if self.killed_at is not None else "")
                + f"; output{' (tail)' if len(out) > tail else ''}:\n{out[-tail:]}")

    def expect_success(self):
        rc = self.wait()
        assert rc == 0, f"the job failed: {self.describe()}"


class Job:
    """The reference job over the fixed input with checkpoints on: one
    checkpoint directory and one result database, shared by every life."""

    def __init__(self, ds, workdir, procs, delivery="exactly-once", rate=RATE, extra=()):
        self.ds, self.dir, self.procs = ds, workdir, procs
        os.makedirs(workdir, exist_ok=True)
        self.ckdir = os.path.join(workdir, "checkpoints")
        self.db = os.path.join(workdir, "result.db")
        self.delivery, self.rate, self.extra = delivery, rate, list(extra)
        self.lives = []

    def argv(self, *more):
        a = self.ds.job_args(self.db, os.path.join(self.dir, "out"))
        a += ["--checkpoint-dir", self.ckdir, "--checkpoint-interval-ms", INTERVAL_MS,
              "--delivery", self.delivery]
        if self.rate:
            a += ["--set", f"source.rate={self.rate}"]
        return [SLUICE] + [str(x) for x in a + self.extra + list(more)]

    def start(self, *more, crash_at=None):
        env = dict(os.environ)
        env.pop("SLUICE_CRASH_AT", None)
        if crash_at:
            env["SLUICE_CRASH_AT"] = crash_at
        log = os.path.join(self.dir, f"life-{len(self.lives):03d}.log")
        life = Life(self, self.argv(*more), env, log)
        self.lives.append(life)
        self.procs.append(life)
        return life

    def run(self, *more):
        """Starts a life and waits for it to finish successfully."""
        life = self.start(*more)
        life.expect_success()
        return life

    def rows(self):
        return db_rows(self.db)

    def complete_checkpoints(self, prefix="chk-"):
        return complete_checkpoints(self.ckdir, prefix)

    def newest_checkpoint(self):
        c = self.complete_checkpoints()
        return max(c) if c else None


def complete_checkpoints(ckdir, prefix="chk-"):
    """{N: path} of the checkpoints (or savepoints, prefix "sp-") whose
    MANIFEST is in place: the manifest is written last, by rename."""
    found = {}
    if not os.path.isdir(ckdir):
        return found
    for name in os.listdir(ckdir):
        m = re.fullmatch(re.escape(prefix) + r"(\d+)", name)
        path = os.path.join(ckdir, name)
        if m and os.path.isfile(os.path.join(path, "MANIFEST")):
            found[int(m.group(1))] = path
    return found


def db_tables(db):
    if not os.path.exists(db):
        return set()
    con = sqlite3.connect(db)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()


def db_rows(db, table="age_distribution"):
    """The visible result rows, sorted; [] before the sink created the table."""
    if table not in db_tables(db):
        return []
    con = sqlite3.connect(db)
    try:
        return sorted(con.execute(
            "SELECT window_start, window_end, event_type, area, age_band, events, "
            f"subscribers FROM {table}").fetchall())
    finally:
        con.close()


def db_count(db, table):
    if table not in db_tables(db):
        return None
    con = sqlite3.connect(db)
    try:
        return con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


# Upserts hide duplicates. A trigger, installed between lives (never while a
# process writes), counts every update of an existing result row and every
# update that changed a value: a replayed row must be identical.
def install_upsert_counter(db):
    if "age_distribution" not in db_tables(db):
        return False
    con = sqlite3.connect(db)
    try:
        con.executescript("""
            CREATE TABLE IF NOT EXISTS fault_upserts(updates INTEGER, changed INTEGER);
            INSERT INTO fault_upserts SELECT 0, 0
              WHERE NOT EXISTS (SELECT 1 FROM fault_upserts);
            CREATE TRIGGER IF NOT EXISTS fault_count_upserts
            AFTER UPDATE ON age_distribution BEGIN
              UPDATE fault_upserts SET updates = updates + 1,
                changed = changed + (OLD.window_end IS NOT NEW.window_end
                  OR OLD.events IS NOT NEW.events
                  OR OLD.subscribers IS NOT NEW.subscribers);
            END;""")
        con.commit()
    finally:
        con.close()
    return True


def upsert_counts(db):
    """(updates, changed) since the counter was installed, or (0, 0)."""
    if "fault_upserts" not in db_tables(db):
        return 0, 0
    con = sqlite3.connect(db)
    try:
        return tuple(con.execute("SELECT updates, changed FROM fault_upserts").fetchone())
    finally:
        con.close()


def poll(cond, timeout, step=0.02):
    """Calls cond until it returns a true value or timeout seconds pass."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)

# ---- the disk-full tests' tmpfs (mounted by the tmpfs fixture) --------------
def remount(mnt, mode, timeout=2.0):
    """Remounts mnt ro or rw; returns the error text, or None on success.
    A read-only remount is refused (EBUSY) while a file on it is open for
    writing, so it is retried until timeout."""
    end = time.monotonic() + timeout
    while True:
        r = subprocess.run(["mount", "-o", f"remount,{mode}", mnt],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return None
        if time.monotonic() >= end:
            return r.stderr.strip() or f"exit {r.returncode}"
        time.sleep(0.005)


def fill(path):
    """Writes path until the file system is full; returns bytes written."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
            buf = b"\0" * chunk
            while True:
                try:
                    n += f.write(buf)
                except OSError:
                    break
    return n

