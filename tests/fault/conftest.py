"""Fixtures of the fault tests: the seed (printed, and again in the summary),
the fixed input with its references, a registry that SIGKILLs leftover
processes, and a small tmpfs. The helpers live in harness.py: a module named
`conftest` is ambiguous when tests/golden is collected in the same run."""
import os
import subprocess

import pytest

from harness import Dataset, kill_counts, rerun_hint, session_seed
# tests/golden/test_golden.py does `from conftest import sluice, sqlite_import`;
# when tests/golden and tests/fault are collected in one run, that name can
# resolve to this module, so it offers them too.
from harness import sluice, sqlite_import  # noqa: F401


@pytest.fixture(scope="session")
def seed():
    s = session_seed()
    print(f"\nfault tests use seed {s} (rerun with {rerun_hint(s)}), "
          f"kills {kill_counts()[0]} / {kill_counts()[1]}")
    return s


def pytest_terminal_summary(terminalreporter):
    s = session_seed()
    terminalreporter.write_line(f"fault tests: seed {s}, kills {kill_counts()[0]} "
                                f"(exactly-once) / {kill_counts()[1]} (others); "
                                f"rerun with {rerun_hint(s)}")


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    return Dataset(str(tmp_path_factory.mktemp("fault-input")))


@pytest.fixture
def procs():
    """Every Life a test starts; SIGKILLed in teardown if still running."""
    lives = []
    yield lives
    for life in lives:
        if life.running():
            life.p.kill()
            life.p.wait()


@pytest.fixture
def tmpfs(tmp_path):
    """A 32 MiB tmpfs mounted for the test (root only; skipped otherwise)."""
    mnt = str(tmp_path / "mnt")
    os.makedirs(mnt)
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs for the disk-full tests")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", mnt],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {r.stderr.strip()}")
    yield mnt
    subprocess.run(["mount", "-o", "remount,rw", mnt], capture_output=True)
    if subprocess.run(["umount", mnt], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", mnt], capture_output=True)
