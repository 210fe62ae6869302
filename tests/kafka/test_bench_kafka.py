"""The benchmark's Kafka workloads in `make test`: (b) the reference job
from Kafka and (c) the Yahoo Streaming Benchmark from Kafka, sluice's half
exactly as bench/kafka_workloads.py runs it in the side-by-side benchmark
(the same producers, the same commands, the same reading back with
read_committed), on a small input against the session's real broker, so a
fast-but-wrong change fails here rather than in a benchmark nobody reads.

The rows are compared with independent references: for (b)
tests/golden/reference.sql in sqlite3 over the raw input files (the events
`sluice gen --kafka` produced), for (c) the counts bench/gen_inputs.py made
while writing the events. The input's seed comes from the commit (printed
by the fixture). The Kafka Streams peer is not run here: it needs Maven
Central and minutes of JVM; the bench run checks its rows equal sluice's."""
import os
import subprocess
import sys

import kafkatest as kt

sys.path.insert(0, os.path.join(kt.ROOT, "bench"))
import kafka_workloads as kw  # noqa: E402

GEN = os.path.join(kt.ROOT, "bench", "gen_inputs.py")


def run(cmd):
    r = subprocess.run([str(a) for a in cmd], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def no_dead_letters(workdir):
    dead = os.path.join(workdir, "dead-letters.jsonl")
    assert not os.path.exists(dead) or os.path.getsize(dead) == 0, open(dead).read()[:2000]


def test_reference_job_from_kafka_as_benched(broker, tmp_path, seed):
    data, work = str(tmp_path / "data"), str(tmp_path / "work")
    topic = f"bench-telecom-{seed}"
    kw.produce_telecom(broker.bootstrap, ["--events", 40_000, "--subscribers", 3_000,
                                          "--cells", 200, "--areas", 4, "--parts", kw.PARTS,
                                          "--seed", seed, "--set", "span.ms=300000"],
                       data, topic)
    run(kw.sluice_telecom_cmd(data, broker.bootstrap, topic, topic + "-out", work))
    got = kw.topic_rows(broker.bootstrap, topic + "-out", kw.TELECOM_COLS)
    want = sorted(",".join(str(v) for v in row)
                  for row in kt.reference_rows(str(tmp_path), data))
    assert len(want) > 50, "the reference is too small to test anything"
    assert got == want, kt.diff(got, want)
    no_dead_letters(work)


def test_ysb_from_kafka_as_benched(broker, tmp_path, seed):
    ysb, work = str(tmp_path / "ysb"), str(tmp_path / "work")
    subprocess.run([sys.executable, GEN, "ysb", ysb, "20000", str(seed)], check=True)
    topic = f"bench-ysb-{seed}"
    kw.produce_lines(broker.bootstrap, topic, kw.ysb_files(ysb))
    offsets = subprocess.run(["kcat", "-Q", "-b", broker.bootstrap, "-t", f"{topic}:0:-1",
                              "-t", f"{topic}:1:-1"], capture_output=True, text=True,
                             check=True).stdout
    assert offsets.count("offset 10000") == 2, offsets  # one message per event, per part
    run(kw.sluice_ysb_cmd(ysb, broker.bootstrap, topic, topic + "-out", work))
    got = kw.topic_rows(broker.bootstrap, topic + "-out", kw.YSB_COLS)
    with open(os.path.join(ysb, "expected.csv")) as f:
        want = sorted(line.strip() for line in f if line.strip())
    assert len(want) > 100
    assert got == want, kt.diff(got, want)
    no_dead_letters(work)
