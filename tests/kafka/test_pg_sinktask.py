"""The PostgreSQL sink task (`sluice sink-task`) against a real broker and a
real PostgreSQL server: the reference job's results are produced to a topic
transactionally (the reference job on Kafka with the exactly-once kafka
sink), the sink task writes them into PostgreSQL with its input offsets in
the same transaction. The table must equal the topic read with
read_committed by kcat and the independent reference
(tests/golden/reference.sql in sqlite3) exactly: after kill -9 at random
instants (seed from the commit, printed), with aborted transactions in the
topic, and with a paused task whose partitions moved (it must commit
nothing)."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import kafkatest as kt
from broker import libs_dir

sys.path.insert(0, os.path.join(kt.ROOT, "tests", "postgres"))
import pgserver  # noqa: E402

SCHEMA = ("window_start TIMESTAMP, window_end TIMESTAMP, event_type VARCHAR, area VARCHAR, "
          "age_band VARCHAR, events BIGINT, subscribers BIGINT")
COLS = ("(extract(epoch FROM window_start) * 1000)::bigint, "
        "(extract(epoch FROM window_end) * 1000)::bigint, event_type, area, age_band, "
        "events, subscribers")
KILLS = max(3, int(os.environ.get("PG_TASK_KILLS", "4") or 4))


@pytest.fixture(scope="module")
def pg():
    server = pgserver.PgServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def results(broker, dataset, tmp_path_factory):
    """The reference job's results, produced exactly once into a topic."""
    topic = dataset.topic(broker)
    work = tmp_path_factory.mktemp("pgtask-job")
    life = kt.Life(None, kt.job_argv(dataset, broker.bootstrap, topic, "pgtask-results",
                                     work), dict(os.environ), str(work / "job.log"))
    life.expect_success()
    rows = kt.result_rows(broker.bootstrap, "pgtask-results")
    assert rows == dataset.reference, kt.diff(rows, dataset.reference)
    return "pgtask-results"


def table_rows(pg, db, table="age_distribution"):
    out = pg.psql(f"SELECT {COLS} FROM {table}", db=db)
    return sorted((int(r[0]), int(r[1]), r[2], r[3], r[4], int(r[5]), int(r[6])) for r in out)


def task_argv(bootstrap, topic, pg, db, *more, fmt="jsonl", schema=SCHEMA,
              table="age_distribution", bounded=True):
    return ([kt.SLUICE, "sink-task", "--from-kafka", bootstrap, "--topic", topic,
             "--format", fmt, "--schema", schema, "--pg", pg.dsn(db), "--table", table]
            + (["--bounded"] if bounded else []) + [str(x) for x in more])


def start(procs, argv, log):
    life = kt.Life(None, argv, dict(os.environ), log)
    procs.append(life)
    return life


def test_sink_task_table_equals_topic_and_reference(broker, dataset, results, pg, tmp_path,
                                                   procs):
    db = pg.new_db("sinktask_plain")
    life = start(procs, task_argv(broker.bootstrap, results, pg, db, "--group", "g-plain"),
                 str(tmp_path / "t.log"))
    life.expect_success()
    got = table_rows(pg, db)
    assert got == kt.result_rows(broker.bootstrap, results)
    assert got == dataset.reference, kt.diff(got, dataset.reference)
    # the offsets are in the database, one row per partition, at the end
    offs = pg.psql("SELECT partition, next_offset FROM sluice_offsets ORDER BY 1", db=db)
    assert [r[0] for r in offs] == [str(p) for p in range(kt.PARTS)], offs


def test_kill_9_at_random_instants_exactly_once(broker, dataset, results, pg, tmp_path,
                                               procs, seed):
    """kill -9 when the table has reached a random number of rows (so the
    kills land whatever the machine's speed), then restart; at the end the
    table is exactly the topic and the reference."""
    db = pg.new_db("sinktask_kills")
    rng = random.Random(seed)
    total = len(dataset.reference)
    # small transactions, so a kill lands between, inside and around commits
    # (static membership: a restarted task takes its predecessor's place in
    # the group at once instead of waiting for its session to expire)
    argv = task_argv(broker.bootstrap, results, pg, db, "--set", "batch.rows=7",
                     "--set", "commit.interval.ms=10", "--group", "g-kills",
                     "--set", "properties.group.instance.id=task-0")

    def count():
        r = pg.psql("SELECT count(*) FROM age_distribution", db=db, check=False)
        return int(r[0][0]) if r else 0
    schedule, landed = [], 0
    for i in range(KILLS):
        life = start(procs, argv, str(tmp_path / f"life-{i}.log"))
        target = (count() if i else 0) + int(rng.uniform(0.02, 0.08) * total)
        reached = kt.harness.poll(lambda: not life.running() or count() >= target, 120,
                                  step=0.01)
        assert reached, life.describe()
        if life.running():
            life.kill()
            landed += 1
            schedule.append(f">={target}({count()} rows)")
        else:
            assert life.p.returncode == 0, life.describe()
            schedule.append(f">={target}(finished)")
    print(f"\nsink task kill schedule (seed {seed}, {total} rows): {' '.join(schedule)}")
    assert landed >= 3, f"only {landed} kills landed: {schedule}"
    last = start(procs, argv, str(tmp_path / "life-final.log"))
    last.expect_success()
    got = table_rows(pg, db)
    assert got == kt.result_rows(broker.bootstrap, results), schedule
    assert got == dataset.reference, (f"seed {seed}, kills {schedule}: "
                                      + kt.diff(got, dataset.reference))


def tx_produce(bootstrap, topic, script):
    libs = libs_dir()
    subprocess.run(["java", "-cp", os.path.join(libs, "*"),
                    os.path.join(kt.HERE, "TxProducer.java"), bootstrap, topic],
                   input="\n".join(script) + "\n", text=True, check=True, timeout=180,
                   capture_output=True)


def test_aborted_transactions_never_reach_postgres(broker, pg, tmp_path, procs):
    topic = "pgtask-aborts"
    schema = "id BIGINT, name VARCHAR"
    script = []
    want = []
    for t in range(6):
        script.append("begin")
        for k in range(5):
            i = t * 100 + k
            part = k % 2
            script.append(f'send {part} {{"id":{i},"name":"tx{t}"}}')
            if t % 2 == 0:
                want.append((i, f"tx{t}"))
        script.append("commit" if t % 2 == 0 else "abort")
    tx_produce(broker.bootstrap, topic, script)
    # librdkafka (so kcat) reads read_committed by default: ask for all
    r = subprocess.run(["kcat", "-C", "-b", broker.bootstrap, "-t", topic, "-e", "-q",
                        "-X", "isolation.level=read_uncommitted"], capture_output=True,
                       text=True, check=True)
    assert len(r.stdout.split()) == 30, "the aborted records must be in the log"
    assert len(kt.kcat_read(broker.bootstrap, topic)) == 15
    db = pg.new_db("sinktask_aborts")
    life = start(procs, task_argv(broker.bootstrap, topic, pg, db, "--group", "g-aborts",
                                  schema=schema, table="items"), str(tmp_path / "t.log"))
    life.expect_success()
    got = sorted((int(a), b) for a, b in pg.psql("SELECT id, name FROM items", db=db))
    assert got == sorted(want)


def test_paused_task_whose_partitions_moved_commits_nothing(broker, dataset, results, pg,
                                                            tmp_path, procs):
    """Two tasks in one group; the first is paused (SIGSTOP) with rows read,
    the group gives its partitions to the second, which finishes. When the
    first resumes, its offsets no longer match the database: it stops with
    an error and commits nothing. The table is still exactly the topic."""
    db = pg.new_db("sinktask_zombie")
    common = ["--group", "g-zombie", "--set", "properties.session.timeout.ms=6000",
              "--set", "properties.heartbeat.interval.ms=500", "--set", "batch.rows=200000",
              "--set", "commit.interval.ms=600000"]
    zombie = start(procs, task_argv(broker.bootstrap, results, pg, db, *common, bounded=False),
                   str(tmp_path / "zombie.log"))
    # wait until it has its partitions and has read rows (unbounded, with a
    # long commit.interval.ms and a large batch: it commits nothing yet)
    assert kt.harness.poll(lambda: "partition assigned" in zombie.output(), 60, step=0.1), \
        zombie.describe()
    time.sleep(1.5)
    zombie.p.send_signal(signal.SIGSTOP)
    assert pg.psql("SELECT count(*) FROM age_distribution", db=db) == [["0"]]
    try:
        other = start(procs, task_argv(broker.bootstrap, results, pg, db, "--group",
                                       "g-zombie", "--set",
                                       "properties.session.timeout.ms=6000"),
                      str(tmp_path / "successor.log"))
        other.expect_success()
    finally:
        zombie.p.send_signal(signal.SIGCONT)
    zombie.p.send_signal(signal.SIGTERM)  # stop: it writes what it read, if it may
    rc = zombie.wait()
    assert rc != 0, f"the paused task was not stopped: {zombie.describe()}"
    assert "took the partition over" in zombie.output(), zombie.describe()
    got = table_rows(pg, db)
    assert got == dataset.reference, kt.diff(got, dataset.reference)


def test_sink_task_reads_avro_that_python_avro_writes(broker, pg, tmp_path, procs):
    """The same Avro interop as test_kafka_avro_dlq.py, into PostgreSQL;
    NULLs stay NULL, an empty string stays empty."""
    import test_kafka_avro_dlq as av
    p, _ = av.schema_file(tmp_path)
    (tmp_path / "rows.json").write_text(json.dumps(av.ROWS))
    msgs = tmp_path / "msgs"
    msgs.mkdir()
    av.tool("encode", p, tmp_path / "rows.json", msgs)
    av.kcat_files(broker.bootstrap, "pgtask-avro", sorted(str(m) for m in msgs.iterdir()))
    db = pg.new_db("sinktask_avro")
    life = start(procs, task_argv(broker.bootstrap, "pgtask-avro", pg, db, "--group",
                                  "g-avro", fmt="avro", schema=av.COLUMNS, table="items"),
                 str(tmp_path / "t.log"))
    life.expect_success()
    # names as hex: psql would print a newline inside a value as is
    got = pg.psql("SELECT id, encode(convert_to(name, 'UTF8'), 'hex'), score::text, ok, "
                  "(extract(epoch FROM at) * 1000)::bigint FROM items", db=db)

    def cell(v, conv):
        return None if v == "\\N" else conv(v)
    rows = [{"id": cell(r[0], int), "name": cell(r[1], lambda v: bytes.fromhex(v).decode()),
             "score": cell(r[2], float), "ok": cell(r[3], lambda v: v == "t"),
             "at": cell(r[4], int)} for r in got]
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    assert sorted(rows, key=key) == sorted(av.ROWS, key=key)


@pytest.mark.parametrize("args,message", [
    (["--set", "batch.rows=0"], "postgres sink task: 'batch.rows' must be an integer in "
                                "[1, 1000000], got '0'"),
    (["--set", "nosuch=1"], "postgres sink task: unknown key 'nosuch'"),
    (["--format", "xml"], "postgres sink task: 'format' must be one of csv|jsonl|avro, "
                          "got 'xml'"),
    (["--set", "properties.no.such.property=1"], "properties.no.such.property"),
])
def test_bad_configuration_is_an_error_naming_the_key(args, message):
    r = subprocess.run([kt.SLUICE, "sink-task", "--from-kafka", "127.0.0.1:1", "--topic", "t",
                        "--schema", "a BIGINT", "--table", "t", "--pg",
                        "host=127.0.0.1 port=1 connect_timeout=1"] + args,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert message in r.stderr, r.stderr


def test_bad_schema_is_an_error_naming_the_column():
    r = subprocess.run([kt.SLUICE, "sink-task", "--from-kafka", "127.0.0.1:1", "--topic", "t",
                        "--schema", "a BIGINT, b BIGNUM", "--table", "t"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "schema: expected 'name TYPE, ...' (TYPE BIGINT, DOUBLE, BOOLEAN, VARCHAR or " \
           "TIMESTAMP) at 'b BIGNUM'" in r.stderr, r.stderr


def assigned(log):
    """The partitions a sink task holds now, from its log."""
    held = set()
    for line in open(log, errors="replace"):
        if 'msg="partitions revoked"' in line:
            held = set()
        elif 'msg="partition assigned"' in line:
            held.add(int(line.split("partition=")[1].split()[0]))
    return held


def test_two_tasks_split_partitions_and_the_survivor_resumes_from_the_database(
        broker, pg, tmp_path, procs):
    """Two tasks started at once in one group (both create the tables: no
    race) split the two partitions; one is killed -9 mid-run; after the
    group's session timeout the other is assigned both, seeks the dead
    one's partition to the offset stored in the database and finishes: the
    table holds every row exactly once."""
    topic, n = "pgtask-split", 12000
    for part in range(2):
        kt.kcat_produce(broker.bootstrap, topic,
                        [f'{{"id":{i},"name":"p{part}"}}' for i in range(part, n, 2)],
                        partition=part)
    db = pg.new_db("sinktask_split")
    argv = task_argv(broker.bootstrap, topic, pg, db, "--group", "g-split",
                     "--set", "batch.rows=3", "--set", "commit.interval.ms=10",
                     "--set", "properties.session.timeout.ms=6000",
                     "--set", "properties.heartbeat.interval.ms=500",
                     schema="id BIGINT, name VARCHAR", table="items")
    a = start(procs, argv, str(tmp_path / "a.log"))
    b = start(procs, argv, str(tmp_path / "b.log"))
    assert kt.harness.poll(lambda: len(assigned(a.log)) == 1 and len(assigned(b.log)) == 1,
                           60, step=0.1), a.describe() + b.describe()
    part_a = assigned(a.log).pop()
    rows = lambda: int(pg.psql(f"SELECT count(*) FROM items WHERE name = 'p{part_a}'",  # noqa
                               db=db)[0][0])
    assert kt.harness.poll(lambda: rows() > 100, 60, step=0.05), a.describe()
    assert a.running() and rows() < n // 2, "task a finished its partition before the kill"
    a.kill()
    stored = int(pg.psql(f"SELECT next_offset FROM sluice_offsets WHERE partition = {part_a}",
                         db=db)[0][0])
    b.expect_success()
    got = sorted(int(r[0]) for r in pg.psql("SELECT id FROM items", db=db))
    assert got == list(range(n))
    # the survivor took the dead task's partition at the offset in the database
    takeover = [ln for ln in open(b.log) if 'msg="partition assigned"' in ln
                and f"partition={part_a} " in ln]
    assert takeover and f"offset={stored}" in takeover[-1], (stored, takeover)
    assert stored > 0


def test_undecodable_messages_go_to_the_dead_letter_topic(broker, pg, tmp_path, procs):
    """Bad rows in the result topic do not stop the task: they are counted,
    logged and produced to dead_letter.topic with reason and position; the
    good rows of the same message are written; the offsets move past them."""
    topic = "pgtask-bad"
    msgs = ['{"id":1,"name":"a"}\n{"id":"x","name":"b"}\n{"id":3,"name":"c"}',
            '{"id":4,"name":"d"}', 'not json at all']
    kt.kcat_produce(broker.bootstrap, topic, msgs, partition=0)
    db = pg.new_db("sinktask_bad")
    life = start(procs, task_argv(broker.bootstrap, topic, pg, db, "--group", "g-bad",
                                  "--set", "dead_letter.topic=pgtask-dlq",
                                  "--set", "name=bad-task",
                                  schema="id BIGINT, name VARCHAR", table="items"),
                 str(tmp_path / "t.log"))
    life.expect_success()
    got = sorted((int(a), b) for a, b in pg.psql("SELECT id, name FROM items", db=db))
    assert got == [(1, "a"), (3, "c"), (4, "d")]
    letters = []
    for m in kt.kcat_read(broker.bootstrap, "pgtask-dlq", fmt="%h\t%s"):
        h, v = m.split("\t", 1)
        h = dict(kv.split("=", 1) for kv in h.split(","))
        letters.append((h["position"], h["reason"], h["job"], v))
    assert sorted(letters) == [
        ("pgtask-bad/0@0:2", "parse_error:id", "bad-task", '{"id":"x","name":"b"}'),
        ("pgtask-bad/0@2:1", "malformed_json", "bad-task", "not json at all")]
    assert pg.psql("SELECT partition, next_offset FROM sluice_offsets ORDER BY 1", db=db) == \
        [["0", "3"], ["1", "0"]]
