"""Exactly-once end to end against a real broker: the reference job reads
the fixed input from a Kafka topic and writes its statistics to a Kafka
topic with a transactional producer; sluice is killed with SIGKILL at
random instants (seeded from the commit, printed) and restarted, and the
broker is restarted mid-run. The results read with
isolation.level=read_committed must equal the independent reference
(tests/golden/reference.sql in sqlite3 over the raw input): nothing lost,
nothing repeated."""
import os
import random
import signal
import time

import kafkatest as kt

KILLS = max(5, int(os.environ.get("KAFKA_KILLS", "5") or 5))
RATE = 10_000  # records/s per source task: an uninterrupted run lasts ~10 s


def test_uninterrupted_run_equals_reference(broker, dataset, tmp_path, procs):
    topic = dataset.topic(broker)
    life = kt.start(procs, kt.job_argv(dataset, broker.bootstrap, topic, "eos-plain",
                                       tmp_path), str(tmp_path / "life.log"))
    life.expect_success()
    got = kt.result_rows(broker.bootstrap, "eos-plain")
    assert got == dataset.reference, kt.diff(got, dataset.reference)
    assert len(got) > 100, "the reference is too small to test anything"


def test_kill_9_at_random_instants_exactly_once(broker, dataset, tmp_path, procs, seed):
    topic = dataset.topic(broker)
    rng = random.Random(seed)
    argv = kt.job_argv(dataset, broker.bootstrap, topic, "eos-kills", tmp_path, rate=RATE,
                       interval_ms=150)
    schedule, landed = [], 0
    for i in range(KILLS):
        life = kt.start(procs, argv, str(tmp_path / f"life-{i:02d}.log"))
        at = rng.uniform(0.5, 2.0)
        rc = life.wait_until(at)
        if rc is None:
            life.kill()
            landed += 1
            schedule.append(f"{at:.2f}s(restored {life.restored()})")
        else:
            assert rc == 0, f"life {i} failed: {life.describe()}"
            schedule.append(f"{at:.2f}s(finished)")
    print(f"\nkill schedule (seed {seed}): {' '.join(schedule)}")
    assert landed == KILLS, f"only {landed} of {KILLS} kills landed: {schedule}"
    last = kt.start(procs, argv, str(tmp_path / "life-final.log"))
    last.expect_success()
    got = kt.result_rows(broker.bootstrap, "eos-kills")
    assert got == dataset.reference, (f"seed {seed}, kills {schedule}: "
                                      + kt.diff(got, dataset.reference))


def test_broker_restart_mid_run(broker, dataset, tmp_path, procs):
    """The broker goes away for 10 s while the job runs: sluice retries,
    the job waits, and it resumes with nothing lost or repeated."""
    topic = dataset.topic(broker)
    argv = kt.job_argv(dataset, broker.bootstrap, topic, "eos-broker-restart", tmp_path,
                       rate=15_000, interval_ms=300)
    life = kt.start(procs, argv, str(tmp_path / "life.log"))
    assert life.wait_until(2.0) is None, f"the job ended too early: {life.describe()}"
    t0 = time.monotonic()
    broker.stop(kill=True)
    time.sleep(10)
    broker.start()
    print(f"\nbroker down for {time.monotonic() - t0:.1f} s")
    life.expect_success()
    got = kt.result_rows(broker.bootstrap, "eos-broker-restart")
    assert got == dataset.reference, kt.diff(got, dataset.reference)


def test_paused_zombie_is_fenced_and_commits_nothing(broker, dataset, tmp_path, procs):
    """An instance is paused (SIGSTOP) mid-run and a replacement starts from
    the same checkpoints with the same transactional ids; when the old one
    resumes, the broker refuses its commits (its producer epoch is stale)
    and it stops. The committed output is still exactly the reference."""
    topic = dataset.topic(broker)
    argv = kt.job_argv(dataset, broker.bootstrap, topic, "eos-zombie", tmp_path, rate=15_000,
                       interval_ms=200)
    zombie = kt.start(procs, argv, str(tmp_path / "zombie.log"))
    # pause it mid-run: after it committed some epochs
    assert kt.harness.poll(lambda: len(kt.harness.complete_checkpoints(
        str(tmp_path / "ck"))) >= 3, 60, step=0.05), zombie.describe()
    assert zombie.running(), f"the job ended too early: {zombie.describe()}"
    zombie.p.send_signal(signal.SIGSTOP)
    try:
        successor = kt.start(procs, argv, str(tmp_path / "successor.log"))
        successor.expect_success()
    finally:
        zombie.p.send_signal(signal.SIGCONT)
    rc = zombie.wait()
    assert rc != 0, f"the zombie was not stopped: {zombie.describe()}"
    assert "fenced" in zombie.output().lower() or "epoch" in zombie.output().lower(), \
        zombie.describe()
    got = kt.result_rows(broker.bootstrap, "eos-zombie")
    assert got == dataset.reference, kt.diff(got, dataset.reference)
