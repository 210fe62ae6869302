"""End-to-end latency through Kafka at a fixed input rate (bench/kafka.sh).

A feeder produces events into a topic at RATE events/s (100 per message,
through kcat), each event's `ts` set to the wall clock (ms) when it is
produced. sluice runs a pass-through job (ts, event_type, cell_id) from
that topic to a result topic, and a read_committed reader (kcat, started
before) stamps the wall clock when each result row becomes visible to it.
Latency = visible - produced, per row; p50 and p99 over the rows produced
during the measurement. Run twice:

- delivery=at-least-once: rows are produced as soon as they are computed
  (pipeline latency, through Kafka twice);
- delivery=exactly-once, checkpoint.interval.ms=CK: rows become visible
  when the checkpoint that covers them commits (commit latency).

Then the reference job (age_distribution_kafka.sql) at the same rate with
canaries every 100 ms: its own pipeline and commit latencies from
canaries.jsonl (its results are 1-minute windows, so their latency is the
window; the canaries measure the path).

  python3 bench/kafka_latency.py BOOTSTRAP DATA_DIR WORKDIR [RATE] [SECONDS] [CK_MS]

Prints markdown lines for bench/RESULTS.md."""
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice"))
PER_MESSAGE = 100


def now_ms():
    return int(time.time() * 1000)


def sample_lines(data_dir, n=10000):
    """Event lines of the generated data set, without their ts field."""
    d = os.path.join(data_dir, "events")
    f = sorted(os.listdir(d))[0]
    out = []
    with open(os.path.join(d, f)) as fh:
        fh.readline()
        for line in fh:
            out.append(line.rstrip("\n").split(",", 1)[1])
            if len(out) >= n:
                break
    return out


class Feeder(threading.Thread):
    def __init__(self, bootstrap, topic, lines, rate, seconds):
        super().__init__(daemon=True)
        self.p = subprocess.Popen(["kcat", "-P", "-b", bootstrap, "-t", topic, "-D", "\x1e",
                                   "-X", "linger.ms=2"], stdin=subprocess.PIPE)
        self.lines, self.rate, self.seconds = lines, rate, seconds
        self.sent = 0
        self.t_start = None

    def run(self):
        tick = 0.01
        per_tick = max(1, int(self.rate * tick))
        t0 = time.monotonic()
        self.t_start = now_ms()
        i = 0
        k = 0
        while time.monotonic() - t0 < self.seconds:
            ts = now_ms()
            buf = []
            for _ in range(per_tick // PER_MESSAGE or 1):
                rows = []
                for _ in range(PER_MESSAGE):
                    rows.append(f"{ts},{self.lines[i % len(self.lines)]}")
                    i += 1
                buf.append("\n".join(rows))
            self.p.stdin.write(("\x1e".join(buf) + "\x1e").encode())
            self.p.stdin.flush()
            self.sent = i
            k += 1
            delay = t0 + k * tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self.p.stdin.close()
        self.p.wait()


class Reader(threading.Thread):
    def __init__(self, bootstrap, topic):
        super().__init__(daemon=True)
        self.p = subprocess.Popen(["kcat", "-C", "-u", "-b", bootstrap, "-t", topic, "-q",
                                   "-X", "isolation.level=read_committed", "-f", "%s\x1e"],
                                  stdout=subprocess.PIPE)
        self.lat = []  # (produced ms, latency ms)

    def run(self):
        rest = b""
        while True:
            chunk = self.p.stdout.read1(1 << 16)
            if not chunk:
                return
            t = now_ms()
            rest += chunk
            *msgs, rest = rest.split(b"\x1e")
            for m in msgs:
                for line in m.split(b"\n"):
                    if line:
                        ts = int(line.split(b",", 1)[0])
                        self.lat.append((ts, t - ts))

    def stop(self):
        self.p.terminate()
        self.p.wait()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def passthrough(bootstrap, work, in_topic, delivery, ck_ms):
    out_topic = f"lat-out-{delivery}"
    sql = os.path.join(work, f"pass-{delivery}.sql")
    with open(sql, "w") as f:
        f.write(f"""
SET 'delivery' = '{delivery}';
SET 'checkpoint.dir' = '{work}/ck-{delivery}';
SET 'checkpoint.interval.ms' = '{ck_ms}';
SET 'canary.interval.ms' = '0';
CREATE SOURCE ev (ts TIMESTAMP, msisdn VARCHAR, event_type VARCHAR, cell_id BIGINT,
  duration_s BIGINT, bytes BIGINT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
WITH (connector = 'kafka', bootstrap.servers = '{bootstrap}', topic = '{in_topic}',
      startup.mode = 'latest', properties.fetch.wait.max.ms = '5');
CREATE SINK o WITH (connector = 'kafka', bootstrap.servers = '{bootstrap}',
  topic = '{out_topic}', format = 'csv', records.per.message = '{PER_MESSAGE}',
  properties.linger.ms = '2') AS
SELECT ts, event_type, cell_id FROM ev;
""")
    return sql, out_topic


def measure(bootstrap, data, work, rate, seconds, ck_ms, delivery):
    lines = sample_lines(data)
    in_topic = f"lat-in-{delivery}"
    # create the input topic (auto-creation) before the job looks for it
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", in_topic], input=b"warmup",
                   check=True)
    sql, out_topic = passthrough(bootstrap, work, in_topic, delivery, ck_ms)
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", out_topic], input=b"0,warmup,0",
                   check=True)
    reader = Reader(bootstrap, out_topic)
    reader.start()
    job = subprocess.Popen([SLUICE, "run", sql, "--set", "metrics.address=", "--set",
                            f"output.dir={work}/out-{delivery}", "--set", "parallelism=2",
                            "--quiet"], stderr=subprocess.PIPE)
    time.sleep(4)  # the job is up and assigned (startup.mode latest)
    feeder = Feeder(bootstrap, in_topic, lines, rate, seconds)
    feeder.start()
    feeder.join()
    time.sleep(max(3, 3 * ck_ms / 1000))
    job.send_signal(signal.SIGTERM)
    job.wait(timeout=120)
    time.sleep(1)
    reader.stop()
    lat = [l for ts, l in reader.lat if ts >= feeder.t_start + 2000]  # after warm-up
    return feeder.sent, lat


def reference_canaries(bootstrap, data, work, rate, seconds, ck_ms):
    lines = sample_lines(data)
    in_topic = "lat-in-ref"
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", in_topic], input=b"warmup",
                   check=True)
    out = os.path.join(work, "out-ref")
    job = subprocess.Popen([SLUICE, "run", os.path.join(ROOT, "examples", "telecom",
                                                        "age_distribution_kafka.sql"),
                            "--set", f"data={data}", "--set", f"bootstrap={bootstrap}",
                            "--set", f"in_topic={in_topic}", "--set", "out_topic=lat-ref-out",
                            "--set", f"checkpoint.dir={work}/ck-ref",
                            "--set", f"checkpoint.interval.ms={ck_ms}",
                            "--set", "canary.interval.ms=100", "--set", f"output.dir={out}",
                            "--set", "metrics.address=", "--set", "parallelism=2", "--quiet"],
                           stderr=subprocess.PIPE)
    time.sleep(6)  # loads the subscriber table first
    feeder = Feeder(bootstrap, in_topic, lines, rate, seconds)
    feeder.start()
    feeder.join()
    time.sleep(3)
    job.send_signal(signal.SIGTERM)
    job.wait(timeout=120)
    pipe, commit = [], []
    path = os.path.join(out, "canaries.jsonl")
    if os.path.exists(path):
        for ln in open(path):
            o = json.loads(ln)
            pipe.append(o["pipeline_ms"])
            commit.append(o["commit_ms"])
    return feeder.sent, pipe, commit


def main():
    bootstrap, data, work = sys.argv[1:4]
    rate = int(sys.argv[4]) if len(sys.argv) > 4 else 100_000
    seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 20
    ck_ms = int(sys.argv[6]) if len(sys.argv) > 6 else 1000
    for delivery in ("at-least-once", "exactly-once"):
        sent, lat = measure(bootstrap, data, work, rate, seconds, ck_ms, delivery)
        what = ("pipeline (produced as computed)" if delivery == "at-least-once"
                else f"commit (visible at the checkpoint's commit, every {ck_ms} ms)")
        if lat:
            print(f"- pass-through job, {delivery}, {rate:,} events/s for {seconds:.0f} s "
                  f"({sent:,} events): produce → visible to a read_committed reader, "
                  f"{what}: p50 **{pct(lat, 50)} ms**, p99 **{pct(lat, 99)} ms** "
                  f"(max {max(lat)} ms, {len(lat):,} rows measured)")
        else:
            print(f"- pass-through job, {delivery}: no rows measured (see {work})")
    sent, pipe, commit = reference_canaries(bootstrap, data, work, rate, seconds, ck_ms)
    if pipe:
        print(f"- reference job, exactly-once, checkpoints every {ck_ms} ms, {rate:,} "
              f"events/s ({sent:,} events), canaries every 100 ms ({len(pipe)} seen): "
              f"pipeline latency p50 {statistics.median(pipe):.0f} ms, p99 "
              f"{pct(pipe, 99):.0f} ms; commit latency p50 {statistics.median(commit):.0f} "
              f"ms, p99 {pct(commit, 99):.0f} ms")
    else:
        print(f"- reference job: no canaries recorded (see {work}/out-ref)")


if __name__ == "__main__":
    main()
