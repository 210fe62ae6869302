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


class LiveProducer:
    """Produces the dataset's events into `topic` WHILE a job runs: one kcat
    per partition (file i into partition i, PER_MESSAGE events per message)
    fed by a thread at a steady `rate` messages/s per partition, until
    finish() is called; then the rest goes at once, and finally one end
    record per partition, a day after the input, so every partition's
    watermark passes every window of the input (an unbounded job fires
    them all). The end records' own window never closes and would be
    withheld by k-anonymity anyway (one subscriber).

    written(dir) writes exactly what was produced (the end records
    included) as the events/*.csv of a data folder for the SQL reference;
    produced() is the number of messages sent so far."""

    END_MSISDN = "491799999999"

    def __init__(self, ds, bootstrap, topic, rate):
        import threading
        self.ds, self.topic, self.rate = ds, topic, rate
        self.parts = [ds.lines(p) for p in range(PARTS)]
        last = max(int(ln.split(",", 1)[0]) for lines in self.parts for ln in lines)
        self.ends = [f"{last + 86_400_000},{self.END_MSISDN},SMS_SENT,1,," for _ in
                     range(PARTS)]
        self.msgs = [["\n".join(lines[i:i + PER_MESSAGE])
                      for i in range(0, len(lines), PER_MESSAGE)] for lines in self.parts]
        self.sent = [0] * PARTS
        self.kcats = [subprocess.Popen(["kcat", "-P", "-b", bootstrap, "-t", topic, "-D",
                                        "\\x1e", "-p", str(p)], stdin=subprocess.PIPE)
                      for p in range(PARTS)]
        self._finish = threading.Event()
        self.error = None
        self.t_finish = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _send(self, p, msg):
        self.kcats[p].stdin.write(msg.encode() + b"\x1e")
        self.kcats[p].stdin.flush()

    def _run(self):
        try:
            t0 = time.monotonic()
            total = max(len(m) for m in self.msgs)
            for i in range(total):
                if not self._finish.is_set():  # steady: message i at t0 + i / rate
                    delay = t0 + i / self.rate - time.monotonic()
                    if delay > 0:
                        self._finish.wait(delay)
                for p in range(PARTS):
                    if i < len(self.msgs[p]):
                        self._send(p, self.msgs[p][i])
                        self.sent[p] += 1
            self.t_finish = time.monotonic()
            for p in range(PARTS):
                self._send(p, self.ends[p])
                self.kcats[p].stdin.close()
            for k in self.kcats:
                k.wait(60)
        except Exception as e:  # reported by finish()
            self.error = e

    def produced(self):
        return sum(self.sent)

    def remaining(self):
        return sum(len(m) for m in self.msgs) - self.produced()

    def finish(self, timeout=120):
        """Sends the rest at once and the end records; waits for kcat."""
        self._finish.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the producer did not finish"
        assert self.error is None, f"producer: {self.error}"
        assert all(k.returncode == 0 for k in self.kcats), "kcat failed"

    def stop(self):
        """Teardown: ends the kcat processes whatever their state."""
        self._finish.set()
        for k in self.kcats:
            if k.poll() is None:
                k.kill()
                k.wait()

    def written(self, root):
        """A data folder (links to the lookup tables and the key file) whose
        events/*.csv hold exactly what was produced."""
        data = os.path.join(root, "data")
        os.makedirs(os.path.join(data, "events"), exist_ok=True)
        for name in ("subscribers.csv", "cells.csv", "keys.txt"):
            os.symlink(os.path.join(self.ds.data, name), os.path.join(data, name))
        for p in range(PARTS):
            with open(os.path.join(data, "events", f"events-{p:03d}.csv"), "w") as f:
                f.write("ts,msisdn,event_type,cell_id,duration_s,bytes\n")
                for m in self.msgs[p][:self.sent[p]]:
                    f.write(m + "\n")
                f.write(self.ends[p] + "\n")
        return data
