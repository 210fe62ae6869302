#!/usr/bin/env python3
"""The reference job on the memory and the RocksDB state backends, side by
side: events/s, CPU (user + sys), peak RSS, table load time, and the
RocksDB row cache's hit rate per table (from its log line). Prints a
Markdown table for bench/RESULTS.md; not a test (no timing is asserted).

  python3 bench/state_bench.py DATA [--runs 3] [--uniform] [--set K=V ...]

DATA is a directory made by `sluice gen --out DATA ... --parts 2` plus
`sluice keygen DATA/keys.txt`; it is generated when missing, at the quick
scale (5 M events, 1 M subscribers) unless --events/--subscribers say
otherwise. --uniform rewrites the events' subscribers uniformly at random
over the table (seed 1) into DATA-uniform/ first: the generator's own
distribution is skewed (density ~ 1/sqrt(rank)).
"""
import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")


def gen(data, events, subscribers):
    if os.path.isdir(os.path.join(data, "events")):
        return
    subprocess.run([SLUICE, "gen", "--out", data, "--events", str(events),
                    "--subscribers", str(subscribers), "--cells", "20000",
                    "--areas", "400", "--parts", "2", "--seed", "1"], check=True)
    subprocess.run([SLUICE, "keygen", os.path.join(data, "keys.txt")], check=True)


def uniform(data, subscribers):
    out = data.rstrip("/") + "-uniform"
    if os.path.isdir(os.path.join(out, "events")):
        return out
    os.makedirs(os.path.join(out, "events"))
    for f in ("subscribers.csv", "cells.csv", "keys.txt"):
        shutil.copy(os.path.join(data, f), os.path.join(out, f))
    rng = random.Random(1)
    for name in sorted(os.listdir(os.path.join(data, "events"))):
        with open(os.path.join(data, "events", name)) as f, \
                open(os.path.join(out, "events", name), "w") as w:
            w.write(next(f))
            for line in f:
                p = line.split(",", 2)
                w.write(f"{p[0]},{491700000000 + rng.randrange(subscribers)},{p[2]}")
    return out


def run(data, backend, extra):
    out = tempfile.mkdtemp(prefix="sluice-state-bench-")
    try:
        cmd = ["/usr/bin/time", "-f", "TIME %e %U %S %M", SLUICE, "run", "telecom-age",
               "--events", os.path.join(data, "events"),
               "--subscribers", os.path.join(data, "subscribers.csv"),
               "--cells", os.path.join(data, "cells.csv"),
               "--key-file", os.path.join(data, "keys.txt"),
               "--db", os.path.join(out, "r.db"), "--out-dir", out,
               "--set", f"state.backend={backend}", "--set", "metrics.address="]
        for kv in extra:
            cmd += ["--set", kv]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
        err = r.stderr
        wall, user, sys_, rss = re.search(r"TIME (\S+) (\S+) (\S+) (\d+)", err).groups()
        done = re.search(r"done: (\d+) events in ([0-9.]+) s \(([0-9.]+) M events/s; "
                         r"tables loaded in ([0-9.]+) s\)", err)
        caches = sorted(((int(m.group(1)), int(m.group(2)), int(m.group(3)))
                         for m in re.finditer(r"row cache of a RocksDB table.*? "
                                              r"rows=(\d+) hits=(\d+) misses=(\d+)",
                                              err)), reverse=True)  # larger first
        rows = subprocess.run(["sqlite3", os.path.join(out, "r.db"),
                               "SELECT * FROM age_distribution ORDER BY 1,2,3,4,5"],
                              capture_output=True, text=True).stdout
        return dict(wall=float(wall), cpu=float(user) + float(sys_), rss=int(rss) / 1024,
                    events=int(done.group(1)), proc=float(done.group(2)),
                    rate=float(done.group(3)), load=float(done.group(4)),
                    caches=caches, rows=hash(rows))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--subscribers", type=int, default=1_000_000)
    ap.add_argument("--uniform", action="store_true")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--backends", default="memory,rocksdb")
    a = ap.parse_args()
    gen(a.data, a.events, a.subscribers)
    data = uniform(a.data, a.subscribers) if a.uniform else a.data
    res = {b: [] for b in a.backends.split(",")}
    for i in range(a.runs):  # interleaved, so load on the machine hits both
        for b in res:
            r = run(data, b, a.sets)
            print(f"run {i + 1} {b}: {r['rate']:.2f} M events/s, cpu {r['cpu']:.2f} s, "
                  f"wall {r['wall']:.2f} s (tables {r['load']:.2f} s), "
                  f"rss {r['rss']:.0f} MiB, caches {r['caches']}", flush=True)
            res[b].append(r)
    if len({r["rows"] for rs in res.values() for r in rs}) != 1:
        sys.exit("MISMATCH: the backends' result rows differ")
    load = os.getloadavg()
    print(f"\nload average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
          f"medians of {a.runs} runs; identical result rows\n")
    print("| backend | events/s (processing) | processing wall | tables loaded | "
          "CPU user+sys | peak RSS | row cache hit rate (subscribers / cells) |")
    print("|---|---|---|---|---|---|---|")
    for b, rs in res.items():
        med = lambda k: statistics.median(r[k] for r in rs)
        hit = "—"
        if rs[0]["caches"]:
            # the larger table (subscribers) first, then cells
            parts = []
            for j in range(len(rs[0]["caches"])):
                h = statistics.median(r["caches"][j][1] / max(1, r["caches"][j][1] +
                                                          r["caches"][j][2]) for r in rs)
                parts.append(f"{100 * h:.1f} %")
            hit = " / ".join(parts)
        print(f"| {b} | {med('rate'):.2f} M/s | {med('proc'):.2f} s | {med('load'):.2f} s | "
              f"{med('cpu'):.2f} s | {med('rss'):.0f} MiB | {hit} |")


if __name__ == "__main__":
    main()
