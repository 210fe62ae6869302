"""Benchmark harness: runs the telecom reference job end to end on
generated data several times and appends median, spread, peak RSS and CPU
to bench/RESULTS.md with the machine, the exact commands and the date.

  full:  50 M events, 10 M subscribers, 20 k cells, 400 areas, 3 runs
  quick: 5 M events, 1 M subscribers, 20 k cells, 400 areas, 1 run (~1 min)

Then the side-by-side part (bench/workloads.py): workloads (a), (c) JSON
and binary, (d), run by sluice and (a), (c) by the Flink peer on the same
inputs, (b) and (c) from Kafka by sluice and the Kafka Streams peer on the
same topics (bench/kafka_workloads.py), result rows checked equal, a second
dated entry with the table.

  harness.py [quick|full] [--peers-only] [--no-peers] [--peers-profile P]
             [--kafka-only]   (the side-by-side part's Kafka workloads (b) and
                               (c)-Kafka alone, bench/kafka_workloads.py)

The side-by-side profile is P, else the same as the first part's, except
that quick runs the side-by-side part at "smoke" size (200 k events) so
`make bench-quick` stays near a minute; `make bench-peers` runs it at
"quick" size (5 M events per workload, ~10 minutes with Flink).

  harness.py postgres: rows/s into PostgreSQL per sink mode and the reference
  job with the PostgreSQL sink against SQLite (bench/pg_bench.py)
"""
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.path.join(ROOT, "build", "sluice")
PROFILES = {
    "full": dict(events=50_000_000, subscribers=10_000_000, cells=20_000, areas=400, runs=3),
    "quick": dict(events=5_000_000, subscribers=1_000_000, cells=20_000, areas=400, runs=1),
}


def machine():
    model = "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.platform()}"


def run(cmd):
    """Runs cmd; returns (wall s, user+sys s, peak RSS MiB of this child)."""
    import tempfile
    with tempfile.TemporaryFile(mode="w+") as errf:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf)
        _, status, rus = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        errf.seek(0)
        err = errf.read()
    return wall, rus.ru_utime + rus.ru_stime, rus.ru_maxrss / 1024, err


def summary(err):
    line = [l for l in err.splitlines() if l.startswith("sluice: done")]
    if not line:
        raise SystemExit("job failed:\n" + err)
    return line[0]


def pct(v, p):
    """The p-th percentile of v (nearest rank)."""
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(round(p / 100 * len(v) + 0.5)) - 1))]


def latency_bench(job_cmd, out, rate=1_000_000, tasks=2):
    """Canary latency at a fixed input rate (issue 10: pipeline p99 <= 20 ms
    at 1 M events/s): source.rate is per source task, canaries every 50 ms
    per partition, exactly-once checkpoints every 1 s. Percentiles come from
    the job's canaries.jsonl (pipeline: injection to the sink's write;
    commit: to the checkpoint commit that makes it visible)."""
    import json
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    cmd = job_cmd + ["--checkpoint-dir", os.path.join(out, "ck"), "--checkpoint-interval-ms",
                     "1000", "--set", f"source.rate={rate // tasks}", "--set",
                     "canary.interval.ms=50"]
    _, cpus, _, err = run(cmd)
    line = summary(err)
    got = float(line.split("(")[1].split(" M events/s")[0])
    rows = []
    with open(os.path.join(out, "canaries.jsonl")) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    res = {"rate": rate, "got": got, "n": len(rows), "cpu": cpus,
           "cmd": cmd}
    for k in ("pipeline_ms", "commit_ms"):
        v = [r[k] for r in rows] or [float("nan")]
        res[k] = (pct(v, 50), pct(v, 99), pct(v, 99.9))
    print(f"latency at {rate / 1e6:.1f} M events/s: got {got:.2f} M/s, {len(rows)} canaries, "
          f"pipeline p50/p99/p99.9 {res['pipeline_ms']} ms, commit {res['commit_ms']} ms",
          flush=True)
    return res


def checkpoint_run(job_cmd, out):
    """One run with exactly-once checkpoints every second: rate, CPU and the
    job's checkpoint figures."""
    import re
    ck = os.path.join(out, "ck")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    _, cpus, _, err = run(job_cmd + ["--checkpoint-dir", ck, "--checkpoint-interval-ms", "1000"])
    line = summary(err)
    res = {"rate": float(line.split("(")[1].split(" M events/s")[0]), "cpu": cpus}
    m = re.search(r"(\d+) checkpoints \(\d+ failed; last (\d+) ms, (\d+) bytes, longest task "
                  r"pause (\d+) us\)", line)
    res.update(count=int(m.group(1)), last_ms=int(m.group(2)), bytes=int(m.group(3)),
               pause_us=int(m.group(4)))
    print(f"with checkpoints every 1 s: {line}", flush=True)
    return res


def top_epoch(db):
    """The newest epoch marker the job has committed into its SQLite result."""
    import sqlite3
    try:
        con = sqlite3.connect(db, timeout=0.05)
        v = con.execute("SELECT MAX(epoch) FROM sluice_epochs").fetchone()[0]
        con.close()
        return v or 0
    except sqlite3.Error:
        return 0


def restart_after_kill(cmd, db):
    """A slow first life of cmd (checkpoints on), kill -9, a restart at full
    speed: (seconds from the restart until db holds a newer epoch marker,
    the restart's stderr). The first life runs 8 s, but never ends before
    its first epoch is committed: it loads the tables and writes their
    images (docs/state.md "Table images") before it reads an event."""
    import signal
    p = subprocess.Popen(cmd + ["--set", "source.rate=200000"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    time.sleep(8)
    while top_epoch(db) == 0 and p.poll() is None and time.monotonic() - t0 < 300:
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = top_epoch(db)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    restart = None
    while p.poll() is None and restart is None:
        if top_epoch(db) > before:
            restart = time.monotonic() - t0
        time.sleep(0.01)
    _, err = p.communicate()
    if restart is None:
        restart = time.monotonic() - t0
    return restart, err


def checkpoint_bench(job_cmd, out, ck_runs):
    """Throughput with checkpoints every second (the median of the runs made
    interleaved with the runs without, so both see the same machine), and
    the time from a restart after kill -9 to the first newly committed
    output."""
    ck = os.path.join(out, "ck")
    res = dict(ck_runs[len(ck_runs) // 2])
    res["rate"] = statistics.median(r["rate"] for r in ck_runs)
    res["cpu"] = statistics.median(r["cpu"] for r in ck_runs)
    res["runs"] = len(ck_runs)
    # restart latency: run slowly, kill, restart at full speed, watch the epoch markers
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    db = job_cmd[job_cmd.index("--db") + 1]
    cmd = job_cmd + ["--checkpoint-dir", ck, "--checkpoint-interval-ms", "200"]
    restart, err = restart_after_kill(cmd, db)
    load = float(summary(err).split("loaded in ")[1].split(" s")[0])
    res.update(restart_s=restart, load_s=load)
    print(f"restart to first new output: {restart:.2f} s (tables {load:.2f} s)", flush=True)
    return res


def main():
    if sys.argv[1:2] == ["postgres"]:  # bench/pg_bench.py: rows/s per mode, job vs SQLite
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import pg_bench
        return pg_bench.main(machine())
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    prof = args[0] if args else "quick"
    # bench-quick stays about a minute: its side-by-side part runs the
    # plumbing-sized profile; `make bench-peers` runs the 5 M-event one
    peers_prof = {"quick": "smoke"}.get(prof, prof)
    if "--peers-profile" in sys.argv:
        peers_prof = sys.argv[sys.argv.index("--peers-profile") + 1]
        args.remove(peers_prof)
        prof = args[0] if args else "quick"
    if "--peers-only" not in sys.argv and "--kafka-only" not in sys.argv:
        reference_entry(prof)
    side_by_side(peers_prof, "--no-peers" not in sys.argv, "--kafka-only" in sys.argv)
    if prof == "full" and "--peers-only" not in sys.argv and "--kafka-only" not in sys.argv:
        kafka_entry()


def kafka_entry():
    """bench/kafka.sh (a real broker: throughput and latency through Kafka),
    appended to RESULTS.md; skipped with a message without Java/Maven/kcat."""
    r = subprocess.run(["bash", os.path.join(ROOT, "bench", "kafka.sh")],
                       capture_output=True, text=True)
    sys.stderr.write(r.stderr)
    if r.returncode != 0:
        raise SystemExit("bench/kafka.sh failed (see above)")
    if r.stdout.strip():
        with open(os.path.join(ROOT, "bench", "RESULTS.md"), "a") as f:
            f.write("\n" + r.stdout)
        print(r.stdout)


def side_by_side(prof, peers, kafka_only=False):
    import workloads
    log = lambda m: print(m, flush=True)
    results, gens, skip = workloads.side_by_side(prof, log, peers, kafka_only)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    entry = workloads.entry(prof, results, gens, skip, machine(), commit,
                            datetime.date.today().isoformat())
    with open(os.path.join(ROOT, "bench", "RESULTS.md"), "a") as f:
        f.write(entry)
    print(entry)
    if not all(r.ok() for r in results):
        raise SystemExit("result rows differ: see the checks above (entry written)")


def reference_entry(prof):
    P = PROFILES[prof]
    data = os.path.join(ROOT, "bench", "data", f"{prof}")
    stamp = os.path.join(data, "params")
    params = f"{P['events']} {P['subscribers']} {P['cells']} {P['areas']}"
    gen_cmd = [SLUICE, "gen", "--out", data, "--events", str(P["events"]),
               "--subscribers", str(P["subscribers"]), "--cells", str(P["cells"]),
               "--areas", str(P["areas"]), "--parts", "2", "--seed", "1"]
    if not (os.path.exists(stamp) and open(stamp).read() == params):
        shutil.rmtree(data, ignore_errors=True)
        print("generating:", " ".join(gen_cmd), flush=True)
        subprocess.run(gen_cmd, check=True)
        subprocess.run([SLUICE, "keygen", os.path.join(data, "keys.txt")], check=True)
        with open(stamp, "w") as f:
            f.write(params)
    out = os.path.join(ROOT, "out", "bench")
    job_cmd = [SLUICE, "run", "telecom-age", "--events", os.path.join(data, "events"),
               "--subscribers", os.path.join(data, "subscribers.csv"),
               "--cells", os.path.join(data, "cells.csv"),
               "--key-file", os.path.join(data, "keys.txt"),
               "--db", os.path.join(out, "bench.db"), "--out-dir", out]
    rates, rss, cpu, walls, ck_runs = [], [], [], [], []
    for i in range(P["runs"]):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        wall, cpus, peak, err = run(job_cmd)
        # the job's own summary gives the processing rate without table loading
        line = summary(err)
        rate = float(line.split("(")[1].split(" M events/s")[0])
        load = float(line.split("loaded in ")[1].split(" s")[0])
        print(f"run {i + 1}: {rate:.2f} M events/s (tables {load:.1f} s), wall {wall:.1f} s, "
              f"cpu {cpus:.1f} s, peak RSS {peak:.0f} MiB", flush=True)
        rates.append(rate); rss.append(peak); cpu.append(cpus); walls.append(wall)
        ck_runs.append(checkpoint_run(job_cmd, out))  # interleaved: same machine state
    ck = checkpoint_bench(job_cmd, out, ck_runs)
    # latency on the same population replayed at the speed of real time:
    # event time advances as fast as the wall clock at 1 M events/s
    rt = data + "-realtime"
    rt_span = P["events"] * 1000 // 1_000_000
    rt_params = f"{params} {rt_span}"
    rt_stamp = os.path.join(rt, "params")
    if not (os.path.exists(rt_stamp) and open(rt_stamp).read() == rt_params):
        shutil.rmtree(rt, ignore_errors=True)
        subprocess.run(gen_cmd[:3] + [rt] + gen_cmd[4:] + ["--set", f"span.ms={rt_span}"],
                       check=True)
        shutil.copy(os.path.join(data, "keys.txt"), os.path.join(rt, "keys.txt"))
        with open(rt_stamp, "w") as f:
            f.write(rt_params)
    rt_cmd = [a.replace(data, rt) for a in job_cmd]
    lat = latency_bench(rt_cmd, out)
    lat["span"] = rt_span
    med = statistics.median(rates)
    ck["loss"] = (ck["rate"] / med - 1) * 100 if med else 0
    ck["cpu_loss"] = (ck["cpu"] / statistics.median(cpu) - 1) * 100 if cpu else 0
    spread = (max(rates) - min(rates)) / med * 100 if med else 0
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    entry = f"""
## {datetime.date.today().isoformat()} — telecom-age end to end ({prof}), commit {commit}

- machine: {machine()}
- data: `{' '.join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in gen_cmd)}`
- command: `{' '.join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in job_cmd)}`
- runs: {P['runs']}; events/s (processing, tables loaded before): median **{med:.2f} M/s**,
  spread {spread:.1f} % (min {min(rates):.2f}, max {max(rates):.2f})
- wall per run (incl. loading {P['subscribers']:,} subscribers): median {statistics.median(walls):.1f} s;
  CPU (user+sys) median {statistics.median(cpu):.1f} s; peak RSS max {max(rss):.0f} MiB
- targets (issue 2): ≥ 2 M events/s first, ≥ 8 M events/s goal
- with checkpoints every 1 s (exactly-once; median of {ck['runs']} runs, each right after a run
  without): {ck['rate']:.2f} M events/s, i.e. {ck['loss']:+.1f} % against the median without (goal: ≤ 5 % loss); {ck['count']} checkpoints, the last took
  {ck['last_ms']} ms and {ck['bytes'] / 1e6:.1f} MB, longest task pause {ck['pause_us'] / 1000:.1f} ms;
  CPU (user+sys) {ck['cpu']:.1f} s against {statistics.median(cpu):.1f} s without ({ck['cpu_loss']:+.1f} %,
  the steadier figure on a shared machine)
- canary latency at a fixed {lat['rate'] / 1e6:.0f} M events/s on the same population replayed
  in real time (`sluice gen ... --set span.ms={lat['span']}`; `{' '.join(a for a in lat['cmd'][-6:])}`):
  the job {'kept up' if lat['got'] >= 0.95 * lat['rate'] / 1e6 else 'fell behind (queueing latency)'}: {lat['got']:.2f} M events/s processed; {lat['n']} canaries; pipeline p50 / p99 / p99.9
  **{lat['pipeline_ms'][0]:.1f} / {lat['pipeline_ms'][1]:.1f} / {lat['pipeline_ms'][2]:.1f} ms** (goal: p99 ≤ 20 ms);
  commit {lat['commit_ms'][0]:.0f} / {lat['commit_ms'][1]:.0f} / {lat['commit_ms'][2]:.0f} ms (≈ the 1 s checkpoint interval under exactly-once)
- restart after kill -9 (checkpoints every 200 ms): first new output {ck['restart_s']:.2f} s after
  the restart, of which {ck['load_s']:.2f} s loading the lookup tables (goal: ≤ 1 s)
"""
    path = os.path.join(ROOT, "bench", "RESULTS.md")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write("# Benchmark results\n\nAppended by `make bench` / `make bench-quick` "
                    "(bench/harness.py). Compare ratios within one entry: the machines are "
                    "noisy.\n")
    with open(path, "a") as f:
        f.write(entry)
    print(entry)


if __name__ == "__main__":
    main()
