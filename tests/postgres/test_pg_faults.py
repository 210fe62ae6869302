"""Faults against a real PostgreSQL server: the reference job writing to
PostgreSQL (subscribers read from it too) is killed with SIGKILL at random
instants (the kill schedule's seed comes from the commit, printed;
SLUICE_SEED overrides it, PG_KILLS sets the number of kills), and the
server is stopped for 10 s in the middle of a run and started again. In
both cases the final rows equal the independent SQL reference
(tests/golden/reference.sql over the raw input), no result row is ever
rewritten (a trigger counts updates, which the upserting sink would
otherwise hide), and between lives every visible row is final and the
visible set only grows."""
import os
import random
import signal
import time

import harness
from conftest import RESULT_DDL, load_subscribers
from pgserver import result_rows

KILLED = -signal.SIGKILL

COUNTER = """
CREATE TABLE fault_upserts (updates bigint, changed bigint);
INSERT INTO fault_upserts VALUES (0, 0);
CREATE FUNCTION fault_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE fault_upserts SET updates = updates + 1,
    changed = changed + (OLD IS DISTINCT FROM NEW)::int;
  RETURN NEW;
END $$;
CREATE TRIGGER fault_count AFTER UPDATE ON age_distribution
  FOR EACH ROW EXECUTE FUNCTION fault_count();
"""


def prepare(pg, db, ds):
    load_subscribers(pg, db, ds.data)
    pg.psql(RESULT_DDL, db=db)
    pg.psql(COUNTER, db=db)


def upserts(pg, db):
    return tuple(int(v) for v in pg.psql("SELECT updates, changed FROM fault_upserts",
                                         db=db)[0])


def pg_job(ds, tmp_path, procs, pg, db):
    return harness.Job(ds, str(tmp_path), procs,
                       extra=["--pg", pg.dsn(db), "--set", "subscribers.pg.table=subscribers",
                              "--quiet"])


def check_visible(pg, db, ds, seen):
    rows = result_rows(pg, db)
    assert set(rows) <= set(ds.reference), "a visible row is not final"
    assert seen <= set(rows), "rows disappeared"
    return set(rows)


def test_kill9_exactly_once(pg, pgdb, ds, tmp_path, procs):
    seed = harness.session_seed()
    kills = int(os.environ.get("PG_KILLS") or "8")
    print(f"\npostgres kill schedule: seed {seed}, {kills} kills "
          f"(rerun with SLUICE_SEED={seed} PG_KILLS={kills})")
    rnd = random.Random(seed)
    prepare(pg, pgdb, ds)
    job = pg_job(ds, tmp_path, procs, pg, pgdb)
    seen, landed = set(), 0
    for _ in range(kills):
        life = job.start()
        rc = life.wait_until(rnd.uniform(harness.KILL_MIN, harness.KILL_MAX))
        if rc is None:
            rc = life.kill()
        if rc == KILLED:
            landed += 1
        else:
            assert rc == 0, life.describe()
        seen = check_visible(pg, pgdb, ds, seen)
        if rc == 0:
            break
    job.run()
    got = result_rows(pg, pgdb)
    assert got == ds.reference, f"{len(got)} rows, reference {len(ds.reference)}"
    assert upserts(pg, pgdb) == (0, 0), "result rows were written more than once"
    assert pg.psql("SELECT count(*) FROM age_distribution__staged", db=pgdb) == [["0"]]
    assert landed >= 1, "no kill landed while the job ran"


def test_server_down_10s_mid_run(pg, pgdb, ds, tmp_path, procs):
    """Stopped (immediate shutdown: in-flight transactions are cut) for
    10 s while the job runs with checkpoints, then started: the sink
    reconnects and the job finishes with the exact result."""
    prepare(pg, pgdb, ds)
    job = pg_job(ds, tmp_path, procs, pg, pgdb)
    life = job.start()
    assert life.wait_until(1.0) is None, life.describe()
    pg.stop("immediate")
    down = time.monotonic()
    time.sleep(10)
    assert life.running(), "the job gave up while the server was down: " + life.describe()
    pg.start()
    assert pg.wait_ready()
    life.expect_success()
    assert time.monotonic() - down >= 10
    out = life.output()
    assert "reconnecting" in out and "reconnected" in out, out[-2000:]
    got = result_rows(pg, pgdb)
    assert got == ds.reference, f"{len(got)} rows, reference {len(ds.reference)}"
    assert upserts(pg, pgdb) == (0, 0), "result rows were written more than once"
