"""Allocation-failure sweep (`make allocfail`, issue 11.3): a build where
the N-th allocation fails (-DSL_ALLOC_FAIL, SLUICE_ALLOC_FAIL=N).

- every N through start-up (until the workers start): sluice stops with
  exit status 3 and a `msg="out of memory"` log line, never a signal;
- a sample of N through a short job run that takes checkpoints every
  100 ms: the same clean exit (or success when N is past the run's last
  allocation), and a normal run on the same checkpoint directory then
  recovers and writes exactly the reference output: no checkpoint was left
  corrupt or trusted half-written.

The sample's stride comes from the commit (printed; SLUICE_SEED=N reruns
another), so every commit covers a different residue class of N."""
import os
import re
import sqlite3
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")
FAILING = os.environ.get("SLUICE_ALLOCFAIL_BIN") or os.path.join(ROOT, "build-allocfail",
                                                                 "sluice")
OOM_EXIT = 3
RUN_SAMPLES = int(os.environ.get("ALLOCFAIL_SAMPLES", "60"))


def seed():
    s = os.environ.get("SLUICE_SEED")
    if s:
        return int(s)
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    return int(rev[:8], 16) if rev else 1


def run(binary, argv, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([binary, *map(str, argv)], capture_output=True, text=True,
                          env=env, timeout=120)


def job(data, out, *extra):
    return ["run", "telecom-age", "--events", data / "events",
            "--subscribers", data / "subscribers.csv", "--cells", data / "cells.csv",
            "--key-file", data / "keys.txt", "--db", out / "r.db", "--out-dir", out,
            "--checkpoint-dir", out / "ck", "--checkpoint-interval-ms", 100, "--k", 2,
            "--set", "metrics.address=", "--quiet", *extra]


def rows(db):
    con = sqlite3.connect(db)
    try:
        return sorted(con.execute("SELECT * FROM age_distribution").fetchall())
    finally:
        con.close()


def counts(data, out, *extra):
    r = run(FAILING, job(data, out, *extra), {"SLUICE_ALLOC_COUNT": "1"})
    assert r.returncode == 0, r.stderr
    marks = dict(re.findall(r"sluice-alloc: (\w+) at (\d+)", r.stderr))
    return int(marks["run"]), int(marks["exit"])


def assert_clean_oom(r, n):
    assert r.returncode == OOM_EXIT, (n, r.returncode, r.stderr[-2000:])
    assert 'level=error component=core msg="out of memory"' in r.stderr, (n, r.stderr)


def test_allocation_failures_fail_cleanly_and_recover(tmp_path):
    assert os.path.exists(FAILING), "build it with `make allocfail`"
    data = tmp_path / "data"
    r = run(SLUICE, ["gen", "--out", data, "--events", 5000, "--subscribers", 300,
                     "--cells", 20, "--areas", 2, "--parts", 2, "--seed", 9,
                     "--set", "span.ms=600000"])
    assert r.returncode == 0, r.stderr
    assert run(SLUICE, ["keygen", data / "keys.txt"]).returncode == 0
    ref = tmp_path / "ref"
    assert run(SLUICE, job(data, ref)).returncode == 0
    want = rows(ref / "r.db")
    assert len(want) > 50

    # every N through start-up
    start, _ = counts(data, tmp_path / "count0")
    assert start > 100
    for n in range(1, start + 1):
        out = tmp_path / "s"
        r = run(FAILING, job(data, out), {"SLUICE_ALLOC_FAIL": str(n)})
        assert_clean_oom(r, n)
        subprocess.run(["rm", "-rf", str(out)], check=True)

    # a sample through a run slowed down to take several checkpoints
    slow = ["--set", "source.rate=15000"]
    start, total = counts(data, tmp_path / "count1", *slow)
    s = seed()
    stride = max(1, (total - start) // RUN_SAMPLES)
    first = start + 1 + s % stride
    print(f"allocfail: seed {s}: {start} start-up allocations (all failed in turn), "
          f"run to {total}; sampling every {stride} from {first}")
    restored = 0
    for i, n in enumerate(range(first, total + stride, stride)):
        out = tmp_path / f"r{i}"
        r = run(FAILING, job(data, out, *slow), {"SLUICE_ALLOC_FAIL": str(n)})
        if r.returncode != 0:
            assert_clean_oom(r, n)
        again = run(SLUICE, job(data, out))
        assert again.returncode == 0, (n, again.stderr)
        restored += "restored checkpoint" in again.stderr
        assert rows(out / "r.db") == want, f"N={n}: output differs after recovery"
        subprocess.run(["rm", "-rf", str(out)], check=True)
    assert restored > 0, "no sample failed after a checkpoint: the sweep proves little"
