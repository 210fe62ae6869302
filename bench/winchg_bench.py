"""winchg_bench.py — what checkpoints every 1 s cost with incremental
(changelog) checkpoints of the memory window state (src/ops/winchg.c)
against full asynchronous snapshots and against no checkpoints (issue 10:
"checkpointing every 1 s costs <= 5 %").

The reference job over real-time-like data (snapshot_bench.py's: event time
advancing about as fast as the wall clock) at a fixed input rate
(source.rate=125000 per task, so every run does the same work), interleaved
runs of: no checkpoints; checkpoints every 1 s with
state.checkpoints.incremental=true (the default: deltas); the same with
=false (full copy-on-write snapshots every time). Reports CPU seconds
(user+sys of the process, /usr/bin/time), bytes written per checkpoint
(the "checkpoint completed" log lines: new_bytes for incremental ones,
snapshot bytes otherwise), the window tasks' pauses ("task paused" lines)
and how many full materialisations and deltas were written.

Usage: bench/winchg_bench.py [--runs N] [--bin PATH]   (run it under nice)
Prints a Markdown table to paste into bench/RESULTS.md. Not a timed test.
"""
import argparse
import os
import re
import statistics as st
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from snapshot_bench import gen, job, ROOT  # noqa: E402

MODES = {"none": [],
         "incremental": ["--checkpoint-interval-ms", "1000"],
         "full": ["--checkpoint-interval-ms", "1000",
                  "--set", "state.checkpoints.incremental=false"]}


def run(sluice, data, mode, out):
    cmd = job(sluice, data, out) + ["--set", "source.rate=125000", "--set", "log.level=debug"]
    if mode != "none":
        cmd += ["--checkpoint-dir", os.path.join(out, "ck")] + MODES[mode]
    tf = os.path.join(out, "time")
    with open(os.path.join(out, "log"), "w") as log:
        subprocess.run(["/usr/bin/time", "-f", "%U %S %e", "-o", tf] + cmd, stdout=log,
                       stderr=subprocess.STDOUT, check=True)
    u, s, e = open(tf).read().split()[-3:]
    text = open(os.path.join(out, "log")).read()
    newb = [int(x) for x in re.findall(r'msg="checkpoint completed" epoch=\d+ ms=\d+ '
                                       r'snapshot_bytes=\d+ new_bytes=(\d+)', text)]
    snapb = [int(x) for x in re.findall(r'msg="completed checkpoint" epoch=\d+ '
                                        r'duration_ms=\d+ bytes=(\d+)', text)]
    pauses = [int(x) for x in re.findall(r'msg="task paused" epoch=\d+ task=[12]\.\d+ '
                                         r'pause_us=(\d+)', text)]
    return {"cpu": float(u) + float(s), "wall": float(e), "bytes": newb or snapb,
            "pauses": pauses, "fulls": text.count('msg="snapshot written"'),
            "deltas": text.count('msg="delta written"')}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "sluice"))
    a = ap.parse_args()
    data = gen(a.bin, 5000000, 1000000, 20000)
    res = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.runs):
            for m in MODES:
                out = os.path.join(tmp, f"{m}-{i}")
                os.makedirs(out)
                r = run(a.bin, data, m, out)
                res[m].append(r)
                print(f"run {i} {m}: cpu {r['cpu']:.2f} s wall {r['wall']:.1f} s", flush=True)
    base = st.median(r["cpu"] for r in res["none"])
    print("| checkpoints every 1 s | CPU s (runs) | median vs none | MB written per "
          "checkpoint, median / max | window task pause, median / p90 / max ms | "
          "full / deltas per run |")
    print("|---|---|---|---|---|---|")
    for m, rs in res.items():
        cpu = st.median(r["cpu"] for r in rs)
        cells = [m, " / ".join(f"{r['cpu']:.2f}" for r in rs), f"{100 * (cpu / base - 1):+.1f} %"]
        b = [x for r in rs for x in r["bytes"]]
        p = sorted(x for r in rs for x in r["pauses"])
        cells.append(f"{st.median(b) / 1e6:.2f} / {max(b) / 1e6:.1f}" if b else "—")
        cells.append(f"{st.median(p) / 1e3:.2f} / {p[int(len(p) * 0.9)] / 1e3:.2f} / "
                     f"{p[-1] / 1e3:.1f}" if p else "—")
        cells.append(f"{st.median(r['fulls'] for r in rs):.0f} / "
                     f"{st.median(r['deltas'] for r in rs):.0f}" if b else "—")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
