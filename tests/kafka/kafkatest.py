"""Helpers of the Kafka tests: the fixed input (the fault tests' generator
settings, smaller), its independent reference (tests/golden/reference.sql in
sqlite3 over the raw CSV), producing it into a topic with kcat, reading a
topic back with kcat (read_committed), and runs of the reference job on
Kafka (examples/telecom/age_distribution_kafka.sql). The fault tests'
harness (tests/fault/harness.py) is imported, not copied."""
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "fault"))
import harness  # noqa: E402

SLUICE = harness.SLUICE
sluice = harness.sluice
Life = harness.Life
reference_rows = harness.reference_rows
session_seed = harness.session_seed
JOB_SQL = os.path.join(ROOT, "examples", "telecom", "age_distribution_kafka.sql")

EVENTS = 200_000
SUBSCRIBERS = 20_000
CELLS = 500
AREAS = 8
PARTS = 2               # = the broker's num.partitions (broker.py)
SPAN_MS = 3_600_000
PER_MESSAGE = 20        # events batched per Kafka message in the input topic


def now():
    return time.monotonic()


class Dataset:
    """The fixed input (CSV files, one per topic partition) and its SQL
    reference rows."""

    def __init__(self, root):
        self.root = root
        self.data = os.path.join(root, "data")
        sluice("gen", "--out", self.data, "--events", EVENTS, "--subscribers", SUBSCRIBERS,
               "--cells", CELLS, "--areas", AREAS, "--parts", PARTS, "--seed",
               harness.DATA_SEED, "--set", f"span.ms={SPAN_MS}")
        self.keys = os.path.join(self.data, "keys.txt")
        sluice("keygen", self.keys)
        self.reference = reference_rows(root, self.data)
        self.files = sorted(os.path.join(self.data, "events", f)
                            for f in os.listdir(os.path.join(self.data, "events")))
        self.topics = {}

    def lines(self, part):
        with open(self.files[part]) as f:
            f.readline()  # header
            return [ln.rstrip("\n") for ln in f if ln.strip()]

    def topic(self, broker, name="events"):
        """The input produced into `name` (once per session): file i into
        partition i, PER_MESSAGE events per message."""
        if name not in self.topics:  # auto-created with PARTS partitions
            for p in range(PARTS):
                lines = self.lines(p)
                msgs = ["\n".join(lines[i:i + PER_MESSAGE])
                        for i in range(0, len(lines), PER_MESSAGE)]
                kcat_produce(broker.bootstrap, name, msgs, partition=p)
            self.topics[name] = True
        return name


def kcat_produce(bootstrap, topic, messages, partition=None, keys=None):
    """Produces messages (str) with kcat, delimited by \\x1e (so a message
    may hold newlines); keys, if given, are separated from values by \\x1f."""
    if keys is not None:
        messages = [f"{k}\x1f{v}" for k, v in zip(keys, messages)]
    data = "\x1e".join(messages).encode()
    argv = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-D", "\\x1e"]
    if keys is not None:
        argv += ["-K", "\\x1f"]
    if partition is not None:
        argv += ["-p", str(partition)]
    subprocess.run(argv, input=data, check=True)


def kcat_read(bootstrap, topic, committed=True, fmt="%s"):
    """Every message of topic as str, read_committed unless told otherwise."""
    argv = ["kcat", "-C", "-b", bootstrap, "-t", topic, "-e", "-q", "-D", "\x1e",
            "-f", fmt + "\x1e"]
    if committed:
        argv += ["-X", "isolation.level=read_committed"]
    r = subprocess.run(argv, capture_output=True, check=True)
    out = r.stdout.decode()
    return [m for m in out.split("\x1e") if m != ""]


def result_rows(bootstrap, topic):
    """The reference job's committed JSON Lines results, as sorted tuples in
    reference order (duplicates kept, so a repeated row shows)."""
    rows = []
    for m in kcat_read(bootstrap, topic):
        for line in m.split("\n"):
            if line:
                o = json.loads(line)
                rows.append((o["window_start"], o["window_end"], o["event_type"], o["area"],
                             o["age_band"], o["events"], o["subscribers"]))
    return sorted(rows)


def job_argv(ds, bootstrap, in_topic, out_topic, workdir, *more, rate=None,
             interval_ms=200):
    a = [SLUICE, "run", JOB_SQL, "--set", f"data={ds.data}", "--set", f"bootstrap={bootstrap}",
         "--set", f"in_topic={in_topic}", "--set", f"out_topic={out_topic}",
         "--set", "bounded=true", "--set", f"checkpoint.dir={workdir}/ck",
         "--set", f"checkpoint.interval.ms={interval_ms}", "--set", f"output.dir={workdir}/out",
         "--set", f"parallelism={PARTS}", "--set", "metrics.address=", "--quiet"]
    if rate:
        a += ["--set", f"source.rate={rate}"]
    return a + [str(x) for x in more]


def start(procs, argv, log):
    env = dict(os.environ)
    env.pop("SLUICE_CRASH_AT", None)
    life = Life(None, argv, env, log)
    procs.append(life)
    return life


def diff(got, want, n=5):
    """A short description of how two sorted row lists differ."""
    from collections import Counter
    g, w = Counter(got), Counter(want)
    extra = list((g - w).elements())
    missing = list((w - g).elements())
    return (f"{len(got)} rows, reference {len(want)}; {len(extra)} extra (duplicates or "
            f"wrong), e.g. {extra[:n]}; {len(missing)} missing, e.g. {missing[:n]}")
