"""workloads.py — the side-by-side part of the benchmark harness: workloads
(a) the reference job from CSV, (c) the Yahoo Streaming Benchmark (JSON and
binary input) and (d) Hello Twitter, each run several times by sluice, and
(a) and (c) also by the Flink peer (bench/peers/flink) on the same files.

Every run's result rows are checked: sluice's (c) and (d) rows against the
reference the generator counted (bench/gen_inputs.py, expected.csv), the
binary variant's against the JSON one's, and Flink's rows against sluice's
from the same run. A mismatch fails the entry loudly (the table says
MISMATCH, and the harness exits non-zero after writing it).

(b) the reference job and (c) YSB from Kafka are run by sluice and the
Kafka Streams peer (bench/peers/kstreams) on the same topics of one broker
started for the run: bench/kafka_workloads.py.

Used by harness.py; `python3 bench/harness.py quick --peers-only` runs only
this part."""
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.path.join(ROOT, "build", "sluice")
FLINK_DIR = os.path.join(ROOT, "bench", "peers", "flink")
FLINK_JAR = os.path.join(FLINK_DIR, "target", "sluice-flink-peer-1.0.jar")
FLINK_CP = os.path.join(FLINK_DIR, "target", "classpath.txt")

# events per workload and profile; the reference job's events span
# span_ms of event time so that its per-minute groups reach k = 16 as a real
# operator's minute does (5 billion a day is 3.5 M events a minute).
PROFILES = {
    "smoke": dict(events=200_000, subscribers=20_000, cells=500, areas=20,
                  span_ms=180_000, sluice_runs=2, flink_runs=1),
    "quick": dict(events=5_000_000, subscribers=1_000_000, cells=20_000, areas=400,
                  span_ms=600_000, sluice_runs=3, flink_runs=1),
    "full": dict(events=50_000_000, subscribers=10_000_000, cells=20_000, areas=400,
                 span_ms=3_600_000, sluice_runs=3, flink_runs=1),
}


def rel(a):
    a = str(a)
    if a == sys.executable:
        return "python3"
    import kafka_workloads
    if kafka_workloads.rel_cp(a, ROOT):
        return kafka_workloads.rel_cp(a, ROOT)
    if os.path.exists(FLINK_CP) and a.startswith(FLINK_JAR + ":"):
        return FLINK_JAR.replace(ROOT + "/", "") + ":$(cat " + FLINK_CP.replace(ROOT + "/", "") + ")"
    return a.replace(ROOT + "/", "")


def show(cmd):
    return " ".join(rel(a) for a in cmd)


def timed(cmd, log):
    """Runs cmd; returns (wall s, cpu s, peak RSS MiB, stderr)."""
    with tempfile.TemporaryFile(mode="w+") as errf:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf)
        _, status, rus = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        errf.seek(0)
        err = errf.read()
    if os.waitstatus_to_exitcode(status) != 0:
        log(f"FAILED ({os.waitstatus_to_exitcode(status)}): {show(cmd)}\n{err[-3000:]}")
        raise SystemExit(1)
    return wall, rus.ru_utime + rus.ru_stime, rus.ru_maxrss / 1024, err


def done_line(err, prefix):
    for line in err.splitlines():
        if line.startswith(prefix) and "done: " in line:
            m = re.search(r"done: (\d+) (?:records|events) in ([0-9.]+) s", line)
            if m:
                return int(m.group(1)), float(m.group(2)), line
    raise SystemExit(f"no summary line starting {prefix!r} in:\n{err[-3000:]}")


def rows_sqlite(db, query):
    con = sqlite3.connect(db)
    out = sorted(",".join(str(v) for v in r) for r in con.execute(query))
    con.close()
    return out


def rows_csv(path):
    with open(path) as f:
        return sorted(l.rstrip("\n") for l in f if l.strip())


# ---- inputs ---------------------------------------------------------------

def ensure_inputs(prof, P, log):
    """Generates (or reuses) the inputs of profile prof; returns their dirs
    and the generation commands."""
    base = os.path.join(ROOT, "bench", "data", f"peers-{prof}")
    n = P["events"]
    gens = {
        "telecom": [SLUICE, "gen", "--out", os.path.join(base, "telecom"), "--events", str(n),
                    "--subscribers", str(P["subscribers"]), "--cells", str(P["cells"]),
                    "--areas", str(P["areas"]), "--parts", "2", "--seed", "1",
                    "--set", f"span.ms={P['span_ms']}"],
        "ysb": [sys.executable, os.path.join(ROOT, "bench", "gen_inputs.py"), "ysb",
                os.path.join(base, "ysb"), str(n), "1"],
        "twitter": [sys.executable, os.path.join(ROOT, "bench", "gen_inputs.py"), "twitter",
                    os.path.join(base, "twitter"), str(n), "1"],
    }
    for name, cmd in gens.items():
        d = os.path.join(base, name)
        stamp = os.path.join(d, ".params")
        want = show(cmd)
        if os.path.exists(stamp) and open(stamp).read() == want:
            continue
        shutil.rmtree(d, ignore_errors=True)
        log(f"generating: {want}")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        if name == "telecom":
            subprocess.run([SLUICE, "keygen", os.path.join(d, "keys.txt")], check=True,
                           stdout=subprocess.DEVNULL)
        with open(stamp, "w") as f:
            f.write(want)
    return {k: os.path.join(base, k) for k in gens}, gens


# ---- the Flink peer -------------------------------------------------------

def build_flink(log):
    """Builds the peer with Maven (jars into ~/.m2 at bench time). Returns
    None or the reason it cannot run."""
    if shutil.which("mvn") is None or shutil.which("java") is None:
        return "not run: mvn or java missing (scripts/install-deps.sh --bench)"
    cmd = ["mvn", "-q", "-B", "-f", os.path.join(FLINK_DIR, "pom.xml"), "package",
           "dependency:build-classpath", f"-Dmdep.outputFile={FLINK_CP}"]
    log(f"building the Flink peer: {show(cmd)}")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        log(r.stdout[-3000:] + r.stderr[-3000:])
        return "not run: the Maven build failed (see the harness output)"
    return None


def flink_cmd(cls, args):
    cp = FLINK_JAR + ":" + open(FLINK_CP).read().strip()
    return ["java", "-Xmx8g", "-cp", cp, f"org.sluice.bench.{cls}"] + args


# ---- one workload ---------------------------------------------------------

class Result:
    def __init__(self, name):
        self.name = name
        self.sluice, self.flink, self.kstreams = [], [], []  # (rate M/s, wall, cpu, rss)
        self.rows = None
        self.checks = []  # (what, ok)
        self.cmd = self.flink_cmd = self.ks_cmd = None
        self.broker_cpu = {}  # engine -> the Kafka broker's CPU s during each of its runs
        self.note = ""

    def med(self, which):
        v = [r[0] for r in getattr(self, which)]
        return statistics.median(v) if v else None

    def spread(self, which):
        v = [r[0] for r in getattr(self, which)]
        m = statistics.median(v) if v else 0
        return (max(v) - min(v)) / m * 100 if m else 0

    def ok(self):
        return all(ok for _, ok in self.checks)


def run_sluice(res, cmd, runs, out, query, log):
    res.cmd = cmd
    got = None
    for i in range(runs):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        wall, cpu, rss, err = timed(cmd, log)
        n, secs, _ = done_line(err, "sluice")
        rate = n / secs / 1e6 if secs > 0 else 0
        res.sluice.append((rate, wall, cpu, rss))
        rows = rows_sqlite(*query)
        if got is None:
            got = rows
        elif rows != got:
            res.checks.append((f"sluice run {i + 1} equals run 1", False))
        log(f"  {res.name}: sluice run {i + 1}: {rate:.2f} M events/s, wall {wall:.1f} s, "
            f"cpu {cpu:.1f} s, RSS {rss:.0f} MiB, {len(rows)} rows")
    res.rows = got
    return got


def run_flink(res, cmd, runs, out_csv, want, log):
    res.flink_cmd = cmd
    for i in range(runs):
        wall, cpu, rss, err = timed(cmd, log)
        n, secs, line = done_line(err, "flink:")
        rate = n / secs / 1e6 if secs > 0 else 0
        res.flink.append((rate, wall, cpu, rss))
        rows = rows_csv(out_csv)
        ok = rows == want
        res.checks.append((f"Flink run {i + 1} rows == sluice rows ({len(rows)} vs {len(want)})",
                           ok))
        log(f"  {res.name}: flink run {i + 1}: {rate:.3f} M events/s, wall {wall:.1f} s, "
            f"cpu {cpu:.1f} s, RSS {rss:.0f} MiB, {len(rows)} rows, "
            f"{'EQUAL to sluice' if ok else 'MISMATCH with sluice'}")
        if not ok:
            diff = sorted(set(rows) ^ set(want))[:10]
            log("  first differing rows: " + "; ".join(diff))


def side_by_side(prof, log, peers=True, kafka_only=False):
    P = PROFILES[prof]
    dirs, gens = ensure_inputs(prof, P, log)
    n = P["events"]
    if kafka_only:  # (b) and (c) from Kafka alone (harness.py --kafka-only)
        import kafka_workloads
        kafka, kgens, ks_skip = kafka_workloads.side_by_side(
            sys.modules[__name__], P, dirs, gens["telecom"][4:], log, peers)
        gens = {k: v for k, v in gens.items() if k in ("telecom", "ysb")}
        gens.update(kgens)
        return kafka, gens, ("not run (--kafka-only)", ks_skip)
    flink_skip = build_flink(log) if peers else "not run (--no-peers)"
    out = os.path.join(ROOT, "out", "bench-peers")
    results = []

    # (a) the reference job, CSV in, exactly-once checkpoints every 10 s, SQLite out
    t = dirs["telecom"]
    a = Result("(a) reference job, CSV")
    db = os.path.join(out, "a.db")
    cmd = [SLUICE, "run", "telecom-age", "--events", os.path.join(t, "events"),
           "--subscribers", os.path.join(t, "subscribers.csv"),
           "--cells", os.path.join(t, "cells.csv"), "--key-file", os.path.join(t, "keys.txt"),
           "--db", db, "--out-dir", out, "--parallelism", "2",
           "--checkpoint-dir", os.path.join(out, "ck"), "--checkpoint-interval-ms", "10000"]
    q = ("SELECT window_start, window_end, event_type, area, age_band, events, subscribers "
         "FROM age_distribution")
    want = run_sluice(a, cmd, P["sluice_runs"], out, (db, q), log)
    a.checks.append((f"sluice wrote rows ({len(want)})", len(want) > 0))
    if flink_skip is None:
        fo = os.path.join(ROOT, "out", "flink-a.csv")
        run_flink(a, flink_cmd("TelecomAge", [
            "--events", os.path.join(t, "events"), "--subscribers",
            os.path.join(t, "subscribers.csv"), "--cells", os.path.join(t, "cells.csv"),
            "--key-file", os.path.join(t, "keys.txt"), "--out", fo, "--records", str(n),
            "--parallelism", "2"]), P["flink_runs"], fo, want, log)
    results.append(a)

    # (b) and (c) from Kafka: sluice and the Kafka Streams peer (kafka_workloads.py)
    import kafka_workloads
    kafka, kgens, ks_skip = kafka_workloads.side_by_side(
        sys.modules[__name__], P, dirs, gens["telecom"][4:], log, peers)
    gens.update(kgens)
    results.append(kafka[0])

    # (c) YSB, JSON and binary
    y = dirs["ysb"]
    expected = rows_csv(os.path.join(y, "expected.csv"))
    c = Result("(c) YSB, JSON")
    db = os.path.join(out, "result.db")
    q = "SELECT window_start, window_end, campaign_id, views FROM result"
    job = lambda f: [SLUICE, "run", os.path.join(ROOT, "bench", "jobs", f), "--set",
                     f"input={y}", "--set", f"out={out}", "--set", f"output.dir={out}",
                     "--set", "parallelism=2"]
    got = run_sluice(c, job("ysb_json.sql"), P["sluice_runs"], out, (db, q), log)
    c.checks.append((f"sluice rows == generator's count ({len(got)} rows)", got == expected))
    if flink_skip is None:
        fo = os.path.join(ROOT, "out", "flink-c.csv")
        run_flink(c, flink_cmd("Ysb", ["--input", y, "--out", fo, "--records", str(n),
                                       "--parallelism", "2"]), P["flink_runs"], fo, got, log)
    results.append(c)
    cb = Result("(c) YSB, binary")
    got_b = run_sluice(cb, job("ysb_binary.sql"), P["sluice_runs"], out, (db, q), log)
    cb.checks.append(("sluice rows == the JSON variant's", got_b == got))
    cb.note = "sluice only (the same events as fixed-width records, src/io/binrec.c)"
    results.append(cb)
    results.append(kafka[1])

    # (d) Hello Twitter
    tw = dirs["twitter"]
    d = Result("(d) Hello Twitter")
    cmd = [SLUICE, "run", os.path.join(ROOT, "bench", "jobs", "twitter.sql"), "--set",
           f"input={tw}", "--set", f"out={out}", "--set", f"output.dir={out}",
           "--set", "parallelism=2"]
    got = run_sluice(d, cmd, P["sluice_runs"], out,
                     (db, "SELECT window_start, window_end, lang, tweets FROM result"), log)
    d.checks.append((f"sluice rows == generator's count ({len(got)} rows)",
                     got == rows_csv(os.path.join(tw, "expected.csv"))))
    d.note = "no peer asked for"
    results.append(d)
    return results, gens, (flink_skip, ks_skip)


KAFKA_ROWS = ("(b) reference job, Kafka", "(c) YSB, Kafka")
TARGETS = {"(a) reference job, CSV": 8.0, "(c) YSB, JSON": 5.0, "(c) YSB, binary": 12.0}


def entry(prof, results, gens, skips, machine, commit, date):
    P = PROFILES[prof]
    flink_skip, ks_skip = skips
    names = ", ".join(r.name.split(" ")[0] for r in results)
    names = ", ".join(dict.fromkeys(names.split(", ")))
    lines = [f"\n## {date} — side by side: sluice, Flink and Kafka Streams on workloads {names} "
             f"({prof}, {P['events']:,} events each), commit {commit}\n",
             f"- machine: {machine}",
             "- **load**: measured while about 7 engineers built and tested on the same 2 "
             "cores; only the ratios measured in this run mean anything, the absolute "
             "figures do not. The lead reruns this at full scale on a quiet machine.",
             "- events/s: records read / processing time as each engine reports it (sluice: "
             "its `done` line, tables loaded before; Flink: the job's net runtime on the "
             "MiniCluster, JVM and cluster start-up and table loading before it). Both at "
             "parallelism 2, local, reading the same files (two parts each).",
             "- CPU: user + system seconds of the whole process (sluice: including loading "
             "its tables; Flink: including JVM start-up, JIT, GC and the MiniCluster). On a "
             "shared machine this is the steadier comparison: a process that waits for a "
             "core does not accumulate CPU time.",
             "- (b) and (c) from Kafka (bench/kafka_workloads.py): one broker on this machine "
             "(tests/kafka/broker.py, Kafka 4.1.1, KRaft), inputs produced once into 2-partition "
             "topics, sluice (bounded, exactly-once checkpoints every 10 s) and Kafka Streams "
             "(exactly_once_v2, 2 stream threads, commit every 10 s) each reading the same "
             "topics and writing a result topic, read back read_committed. Kafka Streams' time "
             "runs from RUNNING (after its first rebalance) to its last row read committed; "
             "its CPU includes the JVM's start. The broker's CPU during each engine's runs "
             "is listed under the table, not in the CPU columns.",
             "- result rows: every run's rows compared; see the checks below the table."]
    for k, cmd in gens.items():
        lines.append(f"- data ({k}): `{show(cmd)}`")
    lines += ["", "| workload | sluice M events/s (median, spread, runs) | Flink M events/s "
              "| sluice / peer | CPU s sluice / peer | Kafka Streams M events/s | target (sluice) "
              "| rows | rows checked |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if not r.sluice:
            lines.append(f"| {r.name} | {r.note} | — | — | — | {r.note} | — | — | — |")
            continue
        s = (f"**{r.med('sluice'):.2f}** ({r.spread('sluice'):.0f} %, {len(r.sluice)})")
        scpu = statistics.median(x[2] for x in r.sluice)
        cpu = f"{scpu:.1f}"
        if r.flink:
            f = f"{r.med('flink'):.3f} ({r.spread('flink'):.0f} %, {len(r.flink)})"
            ratio = f"**{r.med('sluice') / r.med('flink'):.0f}×**"
            fcpu = statistics.median(x[2] for x in r.flink)
            cpu = f"{scpu:.1f} / {fcpu:.1f} (**{fcpu / scpu:.0f}×**)"
        elif r.kstreams:
            f = "—"
            ratio = f"**{r.med('sluice') / r.med('kstreams'):.0f}×**"
            kcpu = statistics.median(x[2] for x in r.kstreams)
            cpu = f"{scpu:.1f} / {kcpu:.1f} (**{kcpu / scpu:.0f}×**)"
        else:
            f = flink_skip if r.name in ("(a) reference job, CSV", "(c) YSB, JSON") and \
                flink_skip else ("—" if r.name in KAFKA_ROWS else (r.note or "—"))
            ratio = "—"
        ks = "—"  # Kafka Streams runs (b) and the Kafka form of (c)
        if r.kstreams:
            ks = f"{r.med('kstreams'):.3f} ({r.spread('kstreams'):.0f} %, {len(r.kstreams)})"
        elif r.name in KAFKA_ROWS:
            ks = ks_skip or "—"
        tgt = TARGETS.get(r.name)
        tgt = (f"≥ {tgt:g} M/s: {'met' if r.med('sluice') >= tgt else 'missed'}"
               if tgt else "—")
        ok = "equal" if r.ok() else "**MISMATCH**"
        lines.append(f"| {r.name} | {s} | {f} | {ratio} | {cpu} | {ks} | {tgt} | "
                     f"{len(r.rows or [])} | {ok} |")
    lines.append("")
    for r in results:
        if not r.sluice:
            continue
        rss = max(x[3] for x in r.sluice)
        cpu = statistics.median(x[2] for x in r.sluice)
        wall = statistics.median(x[1] for x in r.sluice)
        lines.append(f"- {r.name}: sluice `{show(r.cmd)}` — wall median {wall:.1f} s, CPU "
                     f"{cpu:.1f} s, peak RSS {rss:.0f} MiB")
        if r.flink:
            lines.append(f"  - Flink `{show(r.flink_cmd)}` — wall median "
                         f"{statistics.median(x[1] for x in r.flink):.1f} s, CPU "
                         f"{statistics.median(x[2] for x in r.flink):.1f} s, peak RSS "
                         f"{max(x[3] for x in r.flink):.0f} MiB")
        if r.kstreams:
            lines.append(f"  - Kafka Streams `{show(r.ks_cmd)}` — wall median "
                         f"{statistics.median(x[1] for x in r.kstreams):.1f} s, CPU "
                         f"{statistics.median(x[2] for x in r.kstreams):.1f} s, peak RSS "
                         f"{max(x[3] for x in r.kstreams):.0f} MiB")
        if r.broker_cpu:
            lines.append("  - the broker's CPU during the runs (median, not in the CPU columns): " +
                         ", ".join(f"{k} {statistics.median(v):.1f} s"
                                   for k, v in r.broker_cpu.items()))
        for what, ok in r.checks:
            lines.append(f"  - check: {what}: {'ok' if ok else 'FAILED'}")
    return "\n".join(lines) + "\n"
