"""Fixtures of the Kafka tests: one real Kafka broker (KRaft, jars from Maven
Central, cached) per session, the seed (printed), and a registry of the
processes a test starts, SIGKILLed in teardown. Helpers are in kafkatest.py:
a module named `conftest` is ambiguous when several test folders run."""
import shutil
import tempfile

import pytest

import kafkatest
from broker import Broker


@pytest.fixture(scope="session")
def broker():
    t0 = kafkatest.now()
    d = tempfile.mkdtemp(prefix="sluice-kafka-broker-")
    b = Broker(d).start()
    print(f"\nkafka broker {b.version} on {b.bootstrap} ({d}), ready in "
          f"{kafkatest.now() - t0:.1f} s")
    yield b
    b.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def seed():
    s = kafkatest.session_seed()
    print(f"\nkafka tests use seed {s} (rerun with SLUICE_SEED={s})")
    return s


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"kafka tests: seed {kafkatest.session_seed()}; rerun with "
                                f"SLUICE_SEED={kafkatest.session_seed()}")


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    return kafkatest.Dataset(str(tmp_path_factory.mktemp("kafka-input")))


@pytest.fixture
def procs():
    lives = []
    yield lives
    for life in lives:
        if life.running():
            life.p.kill()
            life.p.wait()
