"""kafka_workloads.py — the Kafka workloads of the side-by-side benchmark:
(b) the reference job from Kafka and (c) the Yahoo Streaming Benchmark from
Kafka, each run by sluice and by the Kafka Streams peer
(bench/peers/kstreams) reading the same topics of one real broker.

The inputs are produced once per harness run into a broker that the run
starts (tests/kafka/broker.py: Apache Kafka 4.1.1, KRaft, one node on this
machine, jars from Maven Central cached in ~/.cache/sluice):

- (b) `sluice gen --kafka B --topic telecom` with the generation settings
  of workload (a) (same seed, so the same events), CSV, 100 events per
  message, file i into partition i; subscribers and cells stay files that
  both engines load; `sluice keygen` writes the key both pseudonymise with.
- (c) the events of `bench/gen_inputs.py ysb` (the files workload (c)
  reads), one JSON event per message as the benchmark's producer writes
  them, part i into partition i, produced with kcat (idempotent producer).

sluice runs examples/telecom/age_distribution_kafka.sql and
bench/jobs/ysb_kafka.sql with bounded = 'true' (read to the end offsets
found at start, then fire every window and commit), parallelism 2,
exactly-once checkpoints every 10 s, results to a Kafka topic per run
(transactional). The peer runs with processing.guarantee=exactly_once_v2,
two stream threads, a commit every 10 s, results to a topic. Both engines'
result topics are read with read_committed; every run's rows must equal
the independent reference (the generator's counts for (c), sluice's rows
of the same run for the peer) — the table says MISMATCH otherwise.

Used by workloads.py (harness.py side by side) and by
tests/kafka/test_bench_kafka.py, which runs sluice's half of both workloads
on a small input in `make test`."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the tests' sanitizer stages point SLUICE_BIN at their build (tests/golden/conftest.py)
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")
KS_DIR = os.path.join(ROOT, "bench", "peers", "kstreams")
KS_JAR = os.path.join(KS_DIR, "target", "sluice-kstreams-peer-1.0.jar")
KS_CP = os.path.join(KS_DIR, "target", "classpath.txt")
TELECOM_SQL = os.path.join(ROOT, "examples", "telecom", "age_distribution_kafka.sql")
YSB_SQL = os.path.join(ROOT, "bench", "jobs", "ysb_kafka.sql")
PARTS = 2                     # input partitions = the files' parts = parallelism
CHECKPOINT_MS = 10_000        # sluice's checkpoint interval = the peer's commit interval
TELECOM_COLS = ("window_start", "window_end", "event_type", "area", "age_band", "events",
                "subscribers")
YSB_COLS = ("window_start", "window_end", "campaign_id", "views")


def broker_module():
    sys.path.insert(0, os.path.join(ROOT, "tests", "kafka"))
    import broker
    return broker


def missing_tools():
    """None, or why a Kafka broker cannot run here."""
    for tool in ("java", "mvn", "kcat"):
        if shutil.which(tool) is None:
            return f"not run: {tool} missing (scripts/install-deps.sh --bench)"
    return None


# ---- inputs ---------------------------------------------------------------

def produce_telecom(bootstrap, gen_argv, out, topic):
    """`sluice gen` with the arguments gen_argv (without --out) into out,
    its events also into topic; then `sluice keygen out/keys.txt`. Returns
    the generation command."""
    cmd = [SLUICE, "gen", "--out", out] + [str(a) for a in gen_argv] + \
        ["--kafka", bootstrap, "--topic", topic]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([SLUICE, "keygen", os.path.join(out, "keys.txt")], check=True,
                   stdout=subprocess.DEVNULL)
    return cmd


def produce_lines(bootstrap, topic, files):
    """Each line of files[i] as one message into partition i (kcat,
    idempotent producer, so one run writes each line once). Returns the
    commands."""
    cmds = []
    for p, path in enumerate(files):
        cmd = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-p", str(p), "-z", "none",
               "-X", "enable.idempotence=true", "-X", "linger.ms=20", "-l", path]
        subprocess.run(cmd, check=True)
        cmds.append(cmd)
    return cmds


def ysb_files(ysb_dir):
    return [os.path.join(ysb_dir, "events", f"part-{p}.jsonl") for p in range(PARTS)]


# ---- sluice ---------------------------------------------------------------

def _common(bootstrap, out_topic, workdir):
    return ["--set", f"bootstrap={bootstrap}", "--set", f"out_topic={out_topic}",
            "--set", "bounded=true", "--set", f"checkpoint.dir={workdir}/ck",
            "--set", f"checkpoint.interval.ms={CHECKPOINT_MS}",
            "--set", f"output.dir={workdir}", "--set", f"parallelism={PARTS}",
            "--set", "metrics.address="]


def sluice_telecom_cmd(data, bootstrap, in_topic, out_topic, workdir):
    """Workload (b): the reference job on Kafka, bounded."""
    return [SLUICE, "run", TELECOM_SQL, "--set", f"data={data}",
            "--set", f"in_topic={in_topic}"] + _common(bootstrap, out_topic, workdir)


def sluice_ysb_cmd(ysb_dir, bootstrap, in_topic, out_topic, workdir):
    """Workload (c) from Kafka, bounded."""
    return [SLUICE, "run", YSB_SQL, "--set", f"input={ysb_dir}",
            "--set", f"topic={in_topic}"] + _common(bootstrap, out_topic, workdir)


def topic_rows(bootstrap, topic, cols):
    """The committed JSON Lines rows of topic as sorted CSV strings in
    column order cols (duplicates kept, so a repeated row shows)."""
    r = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-e", "-q",
                        "-X", "isolation.level=read_committed", "-f", "%s\n"],
                       capture_output=True, check=True)
    rows = []
    for line in r.stdout.decode().splitlines():
        if line.strip():
            o = json.loads(line)
            rows.append(",".join(str(o[c]) for c in cols))
    return sorted(rows)


def proc_cpu(pid):
    """User + system CPU seconds process pid has used so far (/proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the Kafka Streams peer ----------------------------------------------

def build_kstreams(log, show):
    """Builds the peer with Maven (jars into ~/.m2 at bench time). Returns
    None or the reason it cannot run."""
    why = missing_tools()
    if why:
        return why
    cmd = ["mvn", "-q", "-B", "-f", os.path.join(KS_DIR, "pom.xml"), "package",
           "dependency:build-classpath", f"-Dmdep.outputFile={KS_CP}"]
    log(f"building the Kafka Streams peer: {show(cmd)}")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        log(r.stdout[-3000:] + r.stderr[-3000:])
        return "not run: the Maven build failed (see the harness output)"
    return None


def ks_cmd(cls, args):
    cp = KS_JAR + ":" + open(KS_CP).read().strip()
    return ["java", "-Xmx8g", "-cp", cp, f"org.sluice.bench.kstreams.{cls}"] + \
        [str(a) for a in args]


def rel_cp(a, root):
    """The peer's classpath argument, shortened for the entry."""
    if os.path.exists(KS_CP) and a.startswith(KS_JAR + ":"):
        return KS_JAR.replace(root + "/", "") + ":$(cat " + KS_CP.replace(root + "/", "") + ")"
    return None


# ---- the two workloads in the harness ------------------------------------

def side_by_side(W, P, dirs, telecom_gen_argv, log, peers):
    """Runs (b) and (c)-Kafka; W is bench/workloads.py (Result, timed,
    done_line, show), P the profile, dirs the generated input dirs,
    telecom_gen_argv workload (a)'s `sluice gen` arguments after --out.
    Returns (results, generation commands, why the peer did not run)."""
    b = W.Result("(b) reference job, Kafka")
    c = W.Result("(c) YSB, Kafka")
    why = missing_tools()
    if why:
        b.note = c.note = why.replace("not run", "not run (the broker is a JVM, inputs go "
                                                 "in with kcat)")
        return [b, c], {}, why
    ks_skip = build_kstreams(log, W.show) if peers else "not run (--no-peers)"
    broker = broker_module()
    os.makedirs(os.path.join(ROOT, "out"), exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench-kafka-work-", dir=os.path.join(ROOT, "out"))
    out = os.path.join(ROOT, "out", "bench-kafka")
    gens = {}
    br = broker.Broker(os.path.join(work, "broker"))
    try:
        log("starting a Kafka broker (tests/kafka/broker.py)")
        br.start(timeout=300)
        B = br.bootstrap
        topics = ["telecom", "ysb"] + [f"{w}-sluice-{i}" for w in ("telecom", "ysb")
                                       for i in range(P["sluice_runs"])]
        procs = [subprocess.Popen(br._java(
            "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", B, "--create",
            "--if-not-exists", "--topic", t, "--partitions",
            str(PARTS if t in ("telecom", "ysb") else 1), "--replication-factor", "1"),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for t in topics]
        errs = [p.communicate()[1] for p in procs]
        if any(p.returncode for p in procs):
            raise SystemExit("could not create the topics:\n" + b"".join(errs).decode()[-3000:])
        tdata = os.path.join(work, "telecom")
        log("producing (b)'s events: sluice gen --kafka")
        gens["telecom (Kafka)"] = produce_telecom(B, telecom_gen_argv, tdata, "telecom")
        log("producing (c)'s events: kcat, one JSON event per message")
        shown = produce_lines(B, "ysb", ysb_files(dirs["ysb"]))[0]
        gens["ysb (Kafka), i = 0, 1"] = [a.replace("part-0", "part-$i") if "part-0" in a else
                                         ("$i" if a == "0" else a) for a in shown]
        n = P["events"]

        def sluice_runs(res, mk, cols, check):
            got = None
            for i in range(P["sluice_runs"]):
                shutil.rmtree(out, ignore_errors=True)
                os.makedirs(out)
                topic = f"{'telecom' if cols is TELECOM_COLS else 'ysb'}-sluice-{i}"
                cmd = mk(topic)
                res.cmd = cmd
                b0 = proc_cpu(br.proc.pid)
                wall, cpu, rss, err = W.timed(cmd, log)
                bcpu = proc_cpu(br.proc.pid) - b0
                res.broker_cpu.setdefault("sluice", []).append(bcpu)
                k, secs, _ = W.done_line(err, "sluice")
                rate = k / secs / 1e6 if secs > 0 else 0
                res.sluice.append((rate, wall, cpu, rss))
                rows = topic_rows(B, topic, cols)
                log(f"  {res.name}: sluice run {i + 1}: {rate:.2f} M events/s, wall {wall:.1f} s, "
                    f"cpu {cpu:.1f} s (broker {bcpu:.1f} s), RSS {rss:.0f} MiB, {len(rows)} rows")
                if got is None:
                    got = rows
                elif rows != got:
                    res.checks.append((f"sluice run {i + 1} equals run 1", False))
            res.rows = got
            check(got)
            return got

        def ks_runs(res, cls, args, want):
            for i in range(P["flink_runs"]):
                fo = os.path.join(ROOT, "out", f"kstreams-{cls}.csv")
                cmd = ks_cmd(cls, ["--bootstrap", B, "--out", fo, "--records", n,
                                   "--parallelism", PARTS, "--commit-ms", CHECKPOINT_MS] + args)
                res.ks_cmd = cmd
                b0 = proc_cpu(br.proc.pid)
                wall, cpu, rss, err = W.timed(cmd, log)
                bcpu = proc_cpu(br.proc.pid) - b0
                res.broker_cpu.setdefault("Kafka Streams", []).append(bcpu)
                k, secs, line = W.done_line(err, "kstreams:")
                rate = k / secs / 1e6 if secs > 0 else 0
                res.kstreams.append((rate, wall, cpu, rss))
                rows = W.rows_csv(fo)
                ok = rows == want
                res.checks.append((f"Kafka Streams run {i + 1} rows == sluice rows "
                                   f"({len(rows)} vs {len(want)})", ok))
                log(f"  {res.name}: kafka streams run {i + 1}: {rate:.3f} M events/s, wall "
                    f"{wall:.1f} s, cpu {cpu:.1f} s (broker {bcpu:.1f} s), RSS {rss:.0f} MiB, "
                    f"{len(rows)} rows, "
                    f"{'EQUAL to sluice' if ok else 'MISMATCH with sluice'}\n    {line}")
                if not ok:
                    diff = sorted(set(rows) ^ set(want))[:10]
                    log("  first differing rows: " + "; ".join(diff))

        # (b) the reference job from Kafka
        want = sluice_runs(b, lambda t: sluice_telecom_cmd(tdata, B, "telecom", t, out),
                           TELECOM_COLS,
                           lambda g: b.checks.append((f"sluice wrote rows ({len(g)})", len(g) > 0)))
        if ks_skip is None:
            ks_runs(b, "TelecomAge", ["--topic", "telecom",
                                      "--subscribers", os.path.join(tdata, "subscribers.csv"),
                                      "--cells", os.path.join(tdata, "cells.csv"),
                                      "--key-file", os.path.join(tdata, "keys.txt"),
                                      # the whole span: one stream thread may run that far
                                      # ahead of the other (at full scale 10 min did not do)
                                      "--skew-ms", str(P["span_ms"])], want)
        # (c) YSB from Kafka
        expected = W.rows_csv(os.path.join(dirs["ysb"], "expected.csv"))
        want = sluice_runs(c, lambda t: sluice_ysb_cmd(dirs["ysb"], B, "ysb", t, out),
                           YSB_COLS,
                           lambda g: c.checks.append(
                               (f"sluice rows == generator's count ({len(g)} rows)",
                                g == expected)))
        if ks_skip is None:
            ks_runs(c, "Ysb", ["--topic", "ysb",
                               "--campaigns", os.path.join(dirs["ysb"], "campaigns.csv")], want)
    finally:
        br.stop()
        shutil.rmtree(work, ignore_errors=True)
    if ks_skip:
        b.note = c.note = ks_skip
    return [b, c], gens, ks_skip
