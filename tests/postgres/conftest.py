"""Fixtures of the PostgreSQL tests: one real server for the session
(pgserver.PgServer), a fresh database per test, the fault tests' fixed
input (tests/fault/harness.py, imported, not copied) with its SQL
reference, and the processes a test started (killed if it fails)."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fault"))
sys.path.insert(0, HERE)

import harness  # noqa: E402  (tests/fault/harness.py)
import pgserver  # noqa: E402

SUBSCRIBERS_DDL = ("CREATE TABLE subscribers (msisdn text PRIMARY KEY, birth_date date, "
                   "gender text, updated_at timestamptz NOT NULL DEFAULT now())")
RESULT_DDL = ("CREATE TABLE age_distribution (window_start timestamptz, "
              "window_end timestamptz, event_type text, area text, age_band text, "
              "events bigint, subscribers bigint, "
              "PRIMARY KEY (window_start, event_type, area, age_band))")


@pytest.fixture(scope="session")
def pg():
    server = pgserver.PgServer()
    yield server
    server.close()


@pytest.fixture
def pgdb(pg, request):
    """A fresh database named after the test."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    return pg.new_db(name)


@pytest.fixture(scope="session")
def ds(tmp_path_factory):
    """The fault tests' fixed input, its SQL reference and baseline."""
    return harness.Dataset(str(tmp_path_factory.mktemp("pg-data")))


@pytest.fixture
def procs():
    started = []
    yield started
    for life in started:
        if life.running():
            life.kill()


def load_subscribers(pg, db, data_dir):
    """The data set's subscribers.csv as the table subscribers (birth_date
    a date, as operators keep it)."""
    pg.psql(SUBSCRIBERS_DDL, db=db)
    tmp = "subscribers_in"
    pg.psql(f"CREATE TABLE {tmp} (msisdn text, birth_date date, gender text)", db=db)
    pg.copy_in(tmp, os.path.join(data_dir, "subscribers.csv"), db=db)
    pg.psql(f"INSERT INTO subscribers (msisdn, birth_date, gender) "
            f"SELECT msisdn, birth_date, gender FROM {tmp}; DROP TABLE {tmp}", db=db)
