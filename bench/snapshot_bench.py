#!/usr/bin/env python3
"""snapshot_bench.py — what checkpoints cost a running job (issue 10: "checkpointing
every 1 s costs <= 5 %", "canary pipeline latency p99 <= 20 ms at 1 M events/s").

The reference job over real-time-like data (event time advancing about as fast
as the wall clock, so the open 60 s window holds every event's pseudonym in its
exact distinct-count sets, as in production), with synchronous window snapshots
(checkpoint.async=false: the task serialises its state at the barrier, as
before the asynchronous snapshots) and asynchronous ones (the default), side
by side in one run:

  1. throughput: unthrottled runs without checkpoints and with exactly-once
     checkpoints every 1 s, interleaved (same machine state): events/s, CPU
     seconds, and the task pauses of every checkpoint (from the job's
     "completed checkpoint" log lines, max_task_pause_us);
  2. canary latency at fixed input rates with checkpoints every 1 s and
     every 10 s: pipeline and commit p50/p99/p99.9 from canaries.jsonl.

Usage: bench/snapshot_bench.py [--runs N] [--rates R,R] [--events N] [--bin PATH]
Prints Markdown tables to paste into bench/RESULTS.md. Not a timed test.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ROOT = harness.ROOT


def gen(sluice, events, subs, span_ms):
    data = os.path.join(ROOT, "bench", "data", f"snap-{events}-{subs}-{span_ms}")
    if not os.path.exists(os.path.join(data, "keys.txt")):
        shutil.rmtree(data, ignore_errors=True)
        subprocess.run([sluice, "gen", "--out", data, "--events", str(events), "--subscribers",
                        str(subs), "--cells", "20000", "--areas", "400", "--parts", "2",
                        "--seed", "1", "--set", f"span.ms={span_ms}"], check=True)
        subprocess.run([sluice, "keygen", os.path.join(data, "keys.txt")], check=True)
    return data


def job(sluice, data, out):
    return [sluice, "run", "telecom-age", "--events", os.path.join(data, "events"),
            "--subscribers", os.path.join(data, "subscribers.csv"),
            "--cells", os.path.join(data, "cells.csv"),
            "--key-file", os.path.join(data, "keys.txt"),
            "--db", os.path.join(out, "bench.db"), "--out-dir", out]


PAUSE = re.compile(r'msg="completed checkpoint" epoch=\d+ duration_ms=(\d+) bytes=(\d+) '
                   r'max_task_pause_us=(\d+)')


TASK = re.compile(r'msg="task paused" epoch=(\d+) task=\d+\.\d+ pause_us=(\d+) '
                  r'precommit_us=(\d+)')


def one(cmd, out):
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    _, cpu, _, err = harness.run(cmd)
    line = harness.summary(err)
    res = {"rate": float(line.split("(")[1].split(" M events/s")[0]), "cpu": cpu}
    # every checkpoint but the final one (taken after every window fired)
    ck = [tuple(int(x) for x in m) for m in PAUSE.findall(err)][:-1]
    res["pauses_ms"] = [c[2] / 1000 for c in ck]
    # per task (log.level=debug): the pause without the sink's precommit
    tp = [(int(e), int(p) - int(c)) for e, p, c in TASK.findall(err)]
    last = max((e for e, _ in tp), default=0)
    res["snap_ms"] = [p / 1000 for e, p in tp if e != last]
    res["mb"] = max((c[1] / 2**20 for c in ck), default=0)
    return res


def latency(cmd, out, rate, interval_ms):
    cmd = cmd + ["--checkpoint-dir", os.path.join(out, "ck"), "--checkpoint-interval-ms",
                 str(interval_ms), "--set", f"source.rate={rate // 2}", "--set",
                 "canary.interval.ms=50"]
    res = one(cmd, out)
    with open(os.path.join(out, "canaries.jsonl")) as f:
        rows = [json.loads(x) for x in f if x.strip()]
    res["n"] = len(rows)
    for k in ("pipeline_ms", "commit_ms"):
        v = [r[k] for r in rows] or [float("nan")]
        res[k] = (harness.pct(v, 50), harness.pct(v, 99), harness.pct(v, 99.9))
    return res


def pauses(rs, key="pauses_ms"):
    p = sorted(x for r in rs for x in r[key])
    if not p:
        return "—"
    return f"{statistics.median(p):.1f} / {max(p):.1f} ms ({len(p)})"


MODES = [("synchronous (checkpoint.async=false)", ["--set", "checkpoint.async=false"]),
         ("asynchronous (default)", [])]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rates", default="500000,1000000", help="events/s, both tasks")
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--subscribers", type=int, default=1_000_000)
    ap.add_argument("--span-ms", type=int, default=20_000,
                    help="event time the input spans")
    ap.add_argument("--bin", default=harness.SLUICE)
    a = ap.parse_args()
    data = gen(a.bin, a.events, a.subscribers, a.span_ms)
    out = os.path.join(ROOT, "out", "snapbench")
    base = job(a.bin, data, out) + ["--set", "log.level=debug"]
    ck1 = ["--checkpoint-dir", os.path.join(out, "ck"), "--checkpoint-interval-ms", "1000"]
    no, res = [], {m: [] for m, _ in MODES}
    for i in range(a.runs):  # interleaved: every variant sees the same machine state
        no.append(one(base, out))
        print(f"run {i + 1} without checkpoints: {no[-1]['rate']:.3f} M/s, "
              f"{no[-1]['cpu']:.1f} s cpu", flush=True)
        for m, extra in MODES:
            r = one(base + ck1 + extra, out)
            res[m].append(r)
            print(f"run {i + 1} {m}: {r['rate']:.3f} M/s, {r['cpu']:.1f} s cpu, pauses "
                  f"{r['pauses_ms']} ms, largest snapshot {r['mb']:.1f} MiB", flush=True)
    lat = {}
    for rate in (int(x) for x in a.rates.split(",")):
        for iv in (1000, 10000):
            for m, extra in MODES:
                r = latency(base + extra, out, rate, iv)
                lat[(rate, iv, m)] = r
                print(f"latency {rate} every {iv} ms {m}: {r['rate']:.3f} M/s, {r['n']} "
                      f"canaries, pipeline {r['pipeline_ms']}, commit {r['commit_ms']}, "
                      f"pauses {pauses([r])}", flush=True)
    print(f"\nmachine: {harness.machine()}; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"data: `sluice gen --events {a.events} --subscribers {a.subscribers} --cells 20000 "
          f"--areas 400 --parts 2 --seed 1 --set span.ms={a.span_ms}`; {a.runs} runs of "
          f"each, interleaved\n")
    rn = statistics.median(r["rate"] for r in no)
    cn = statistics.median(r["cpu"] for r in no)
    print("| checkpoints every 1 s | events/s (median) | vs without | CPU s (median) | "
          "vs without | longest task pause per checkpoint, median / max (checkpoints) | "
          "task pauses without the sink's precommit, median / max (task snapshots) | "
          "largest snapshot |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| none | {rn:.3f} M | — | {cn:.2f} | — | — | — | — |")
    for m, _ in MODES:
        rs = res[m]
        rc = statistics.median(r["rate"] for r in rs)
        cc = statistics.median(r["cpu"] for r in rs)
        print(f"| {m} | {rc:.3f} M | {(rc / rn - 1) * 100:+.1f} % | {cc:.2f} | "
              f"{(cc / cn - 1) * 100:+.1f} % | {pauses(rs)} | {pauses(rs, 'snap_ms')} | "
              f"{max(r['mb'] for r in rs):.1f} MiB |")
    print("\n| input rate | checkpoints | snapshots | processed | canaries | pipeline p50 / p99 / "
          "p99.9 ms | commit p50 / p99 ms | longest task pause median / max | without "
          "precommit |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (rate, iv, m), r in lat.items():
        p, c = r["pipeline_ms"], r["commit_ms"]
        print(f"| {rate / 1e6:.2f} M/s | every {iv // 1000} s | {m.split(' ')[0]} | "
              f"{r['rate']:.2f} M/s | {r['n']} | {p[0]:.1f} / {p[1]:.1f} / {p[2]:.1f} | "
              f"{c[0]:.0f} / {c[1]:.0f} | {pauses([r])} | {pauses([r], 'snap_ms')} |")


if __name__ == "__main__":
    main()
