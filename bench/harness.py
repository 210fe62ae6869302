"""Benchmark harness: runs the telecom reference job end to end on
generated data several times and appends median, spread, peak RSS and CPU
to bench/RESULTS.md with the machine, the exact commands and the date.

  full:  50 M events, 10 M subscribers, 20 k cells, 400 areas, 3 runs
  quick: 5 M events, 1 M subscribers, 20 k cells, 400 areas, 1 run (~1 min)
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


def main():
    prof = sys.argv[1] if len(sys.argv) > 1 else "quick"
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
    rates, rss, cpu, walls = [], [], [], []
    for i in range(P["runs"]):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        wall, cpus, peak, err = run(job_cmd)
        # the job's own summary gives the processing rate without table loading
        line = [l for l in err.splitlines() if l.startswith("sluice: done")]
        if not line:
            raise SystemExit("job failed:\n" + err)
        rate = float(line[0].split("(")[1].split(" M events/s")[0])
        load = float(line[0].split("loaded in ")[1].split(" s")[0])
        print(f"run {i + 1}: {rate:.2f} M events/s (tables {load:.1f} s), wall {wall:.1f} s, "
              f"cpu {cpus:.1f} s, peak RSS {peak:.0f} MiB", flush=True)
        rates.append(rate); rss.append(peak); cpu.append(cpus); walls.append(wall)
    med = statistics.median(rates)
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
