#!/usr/bin/env python3
"""snapshot_bench.py — what checkpoints cost a running job (issue 10: "checkpointing
every 1 s costs <= 5 %", "canary pipeline latency p99 <= 20 ms at 1 M events/s").

The reference job over real-time-like data (event time advancing about as fast
as the wall clock, so the open 60 s window holds every event's pseudonym in its
exact distinct-count sets, as in production), run with one or more sluice
binaries (e.g. before and after a change) side by side:

  1. throughput: unthrottled runs without checkpoints and with exactly-once
     checkpoints every 1 s, interleaved (same machine state), reporting
     events/s, CPU seconds, and the checkpoints' longest task pause;
  2. canary latency at a fixed input rate with checkpoints every 1 s and
     every 10 s: pipeline and commit p50/p99/p99.9 from canaries.jsonl, and
     the task pauses from the job's metrics summary line.

Usage: bench/snapshot_bench.py [--runs N] [--rate R] [--events N] NAME=BINARY ...
Prints a Markdown block to paste into bench/RESULTS.md. Not a timed test.
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


def one(cmd, out):
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    _, cpu, _, err = harness.run(cmd)
    line = harness.summary(err)
    res = {"rate": float(line.split("(")[1].split(" M events/s")[0]), "cpu": cpu}
    m = re.search(r"(\d+) checkpoints \(\d+ failed; last (\d+) ms, (\d+) bytes, longest task "
                  r"pause (\d+) us\)", line)
    if m:
        res.update(count=int(m.group(1)), last_ms=int(m.group(2)), bytes=int(m.group(3)),
                   pause_us=int(m.group(4)))
    return res, err


def latency(cmd, out, rate, interval_ms):
    cmd = cmd + ["--checkpoint-dir", os.path.join(out, "ck"), "--checkpoint-interval-ms",
                 str(interval_ms), "--set", f"source.rate={rate // 2}", "--set",
                 "canary.interval.ms=50"]
    res, _ = one(cmd, out)
    with open(os.path.join(out, "canaries.jsonl")) as f:
        rows = [json.loads(x) for x in f if x.strip()]
    res["n"] = len(rows)
    for k in ("pipeline_ms", "commit_ms"):
        v = [r[k] for r in rows] or [float("nan")]
        res[k] = (harness.pct(v, 50), harness.pct(v, 99), harness.pct(v, 99.9))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=int, default=1_000_000, help="events/s, both tasks")
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--subscribers", type=int, default=1_000_000)
    ap.add_argument("--span-ms", type=int, default=20_000,
                    help="event time the input spans (real time at events/span)")
    ap.add_argument("bins", nargs="+", help="NAME=path/to/sluice")
    a = ap.parse_args()
    bins = [b.split("=", 1) for b in a.bins]
    data = gen(bins[0][1], a.events, a.subscribers, a.span_ms)
    out = os.path.join(ROOT, "out", "snapbench")
    res = {n: {"no": [], "ck": []} for n, _ in bins}
    for i in range(a.runs):
        for name, b in bins:  # interleaved: every binary sees the same machine state
            r0, _ = one(job(b, data, out), out)
            r1, _ = one(job(b, data, out) + ["--checkpoint-dir", os.path.join(out, "ck"),
                                              "--checkpoint-interval-ms", "1000"], out)
            res[name]["no"].append(r0)
            res[name]["ck"].append(r1)
            print(f"run {i + 1} {name}: without {r0['rate']:.3f} M/s {r0['cpu']:.1f} s cpu; "
                  f"with 1 s checkpoints {r1['rate']:.3f} M/s {r1['cpu']:.1f} s cpu, "
                  f"{r1.get('count')} checkpoints, longest pause {r1.get('pause_us', 0) / 1000:.1f} ms",
                  flush=True)
    lat = {}
    for name, b in bins:
        for iv in (1000, 10000):
            lat[(name, iv)] = latency(job(b, data, out), out, a.rate, iv)
            r = lat[(name, iv)]
            print(f"latency {name} every {iv} ms: got {r['rate']:.3f} M/s, {r['n']} canaries, "
                  f"pipeline {r['pipeline_ms']}, commit {r['commit_ms']}, longest pause "
                  f"{r.get('pause_us', 0) / 1000:.1f} ms", flush=True)
    print(f"\nmachine: {harness.machine()}; load {os.getloadavg()[0]:.1f} at the end")
    print(f"data: {a.events} events, {a.subscribers} subscribers, span {a.span_ms} ms; "
          f"runs {a.runs}\n")
    print("| binary | events/s without | with 1 s checkpoints | loss | CPU s without / with | "
          "CPU cost | longest task pause (median run) |")
    print("|---|---|---|---|---|---|---|")
    for name, _ in bins:
        no, ck = res[name]["no"], res[name]["ck"]
        rn, rc = statistics.median(r["rate"] for r in no), statistics.median(r["rate"] for r in ck)
        cn, cc = statistics.median(r["cpu"] for r in no), statistics.median(r["cpu"] for r in ck)
        pu = statistics.median(r.get("pause_us", 0) for r in ck) / 1000
        print(f"| {name} | {rn:.3f} M | {rc:.3f} M | {(rc / rn - 1) * 100:+.1f} % | "
              f"{cn:.1f} / {cc:.1f} | {(cc / cn - 1) * 100:+.1f} % | {pu:.1f} ms |")
    print(f"\n| binary | checkpoints | input rate asked / processed | canaries | pipeline p50 / p99 / "
          "p99.9 ms | commit p50 / p99 ms | longest task pause |")
    print("|---|---|---|---|---|---|---|")
    for (name, iv), r in lat.items():
        p, c = r["pipeline_ms"], r["commit_ms"]
        print(f"| {name} | every {iv // 1000} s | {a.rate / 1e6:.2f} / {r['rate']:.2f} M/s | "
              f"{r['n']} | {p[0]:.1f} / {p[1]:.1f} / {p[2]:.1f} | {c[0]:.0f} / {c[1]:.0f} | "
              f"{r.get('pause_us', 0) / 1000:.1f} ms |")


if __name__ == "__main__":
    main()
