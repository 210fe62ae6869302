"""Structured logging: one logfmt line per event (ts, level, component,
msg, key=value pairs) to stderr or to `log.file`; `log.level` filters by
severity; a bad level or an unwritable file is an error naming the key;
SIGHUP reopens the file after logrotate moved it (create mode)."""
import os
import re
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")
LINE = re.compile(r'^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=(error|warn|info|debug) '
                  r'component=[a-z]+ msg="(?:[^"\\]|\\.)*"( [a-z_]+=\S+)*$')


def sluice(*args, check=True):
    r = subprocess.run([SLUICE, *map(str, args)], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def dataset(tmp, events=20000):
    data = tmp / "data"
    sluice("gen", "--out", data, "--events", events, "--subscribers", 2000, "--cells", 50,
           "--areas", 4, "--parts", 2, "--seed", 5, "--set", "span.ms=1800000")
    sluice("keygen", data / "keys.txt")
    # two malformed lines: warn-level dead-letter events of the lookup load
    with open(data / "subscribers.csv", "a") as f:
        f.write("not,a,subscriber,row,at,all\nx\n")
    return data


def job(data, out, *extra):
    return ["run", "telecom-age", "--events", data / "events",
            "--subscribers", data / "subscribers.csv", "--cells", data / "cells.csv",
            "--key-file", data / "keys.txt", "--db", out / "r.db", "--out-dir", out,
            "--checkpoint-dir", out / "ck", "--checkpoint-interval-ms", 100,
            "--set", "metrics.address=", "--quiet", *extra]


def test_log_file_lines_are_logfmt_and_levels_filter(tmp_path):
    data = dataset(tmp_path)
    out = tmp_path / "out"
    log = tmp_path / "sluice.log"
    # a first run that is killed leaves a checkpoint; the second restores it
    argv = [SLUICE, *map(str, job(data, out, "--set", "source.rate=10000"))]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30  # kill once a checkpoint is complete
    while time.time() < deadline and p.poll() is None and not (
            (out / "ck").exists() and any((out / "ck" / n / "MANIFEST").exists()
                                          for n in os.listdir(out / "ck"))):
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = sluice(*job(data, out, "--set", f"log.file={log}", "--set", "log.level=info"))
    lines = log.read_text().splitlines()
    assert lines, "the log file holds the run's events"
    for l in lines:
        assert LINE.match(l), l
    assert any('component=checkpoint msg="restored checkpoint" epoch=' in l for l in lines)
    # the library's events went to the file, not to stderr
    assert "restored checkpoint" not in r.stderr
    # level=error keeps the file empty of info events
    out2, log2 = tmp_path / "out2", tmp_path / "quiet.log"
    sluice(*job(data, out2, "--set", f"log.file={log2}", "--set", "log.level=error"))
    assert not any(" level=info " in l or " level=warn " in l
                   for l in log2.read_text().splitlines())


def test_bad_log_settings_name_the_key(tmp_path):
    data = dataset(tmp_path, events=2000)
    r = sluice(*job(data, tmp_path / "o1", "--set", "log.level=loud"), check=False)
    assert r.returncode != 0
    assert "'log.level'" in r.stderr and "error|warn|info|debug" in r.stderr, r.stderr
    r = sluice(*job(data, tmp_path / "o2", "--set",
                    f"log.file={tmp_path}/no/such/dir/x.log"), check=False)
    assert r.returncode != 0
    assert "'log.file'" in r.stderr and "no/such/dir/x.log" in r.stderr, r.stderr


def test_sighup_reopens_the_log_file(tmp_path):
    data = dataset(tmp_path, events=60000)
    out = tmp_path / "out"
    log = tmp_path / "sluice.log"
    argv = [SLUICE, *map(str, job(data, out, "--set", f"log.file={log}",
                                  "--set", "source.rate=15000"))]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while not (log.exists() and log.stat().st_size > 0) and time.time() < deadline:
            time.sleep(0.05)
        assert log.exists() and log.stat().st_size > 0, "the lookup load logged"
        os.rename(log, tmp_path / "sluice.log.1")  # what logrotate does
        p.send_signal(signal.SIGHUP)
        while not log.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert log.exists(), "SIGHUP created a new log file"
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    new = log.read_text().splitlines()
    assert 'component=log msg="log file reopened"' in new[0], new
    old = (tmp_path / "sluice.log.1").read_text()
    assert "log file reopened" not in old
