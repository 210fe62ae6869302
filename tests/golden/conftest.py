"""Shared fixtures for the golden and integration tests: paths to the
built binary, a per-test work directory, and the run seed (taken from the
commit, printed, settable with SLUICE_SEED)."""
import os
import subprocess
import zlib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")


def commit_seed():
    if os.environ.get("SLUICE_SEED"):
        return int(os.environ["SLUICE_SEED"])
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        head = "no-commit"
    return zlib.crc32(head.encode()) % 1000000


@pytest.fixture(scope="session")
def seed():
    s = commit_seed()
    print(f"\nrandomised tests use seed {s} (rerun with SLUICE_SEED={s})")
    return s


# Golden tests run once per state backend (docs/state.md) in the modules
# whose jobs keep state a backend holds (lookup tables today): a module opts
# in with STATE_BACKENDS = ("memory", "rocksdb"); the others run on memory
# only, so CI does not run every test twice for nothing. The
# `state_backend` fixture sets SLUICE_STATE_BACKEND, and sluice() adds
# `--set state.backend=...` to each `sluice run`.
BACKENDS = ("memory", "rocksdb")


def pytest_generate_tests(metafunc):
    if "state_backend" in metafunc.fixturenames:
        metafunc.parametrize("state_backend",
                             getattr(metafunc.module, "STATE_BACKENDS", ("memory",)),
                             indirect=True)


@pytest.fixture(autouse=True)
def state_backend(request, monkeypatch):
    monkeypatch.setenv("SLUICE_STATE_BACKEND", request.param)
    return request.param


def backend_args(args):
    """`--set state.backend=B` for a `sluice run` when SLUICE_STATE_BACKEND is set."""
    b = os.environ.get("SLUICE_STATE_BACKEND")
    return ["--set", f"state.backend={b}"] if b and args and args[0] == "run" else []


def sluice(*args, check=True, **kw):
    args = [*map(str, args)]
    args += backend_args(args)
    r = subprocess.run([SLUICE, *args], capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"sluice {' '.join(map(str, args))} failed ({r.returncode}):\n"
                             f"{r.stdout}\n{r.stderr}")
    return r


def sqlite_import(db, table, csv_paths):
    """Imports CSV files (with headers) into table as text, via the sqlite3 CLI."""
    cmds = []
    for i, p in enumerate(csv_paths):
        cmds.append(f".import --csv {'--skip 1 ' if i else ''}'{p}' {table}")
    subprocess.run(["sqlite3", db], input="\n".join(cmds) + "\n", text=True, check=True)


def link_libs():
    """The libraries a program linked with libsluice.a needs, as the Makefile
    links them (its pkg-config modules plus pthread and m)."""
    r = subprocess.run(["make", "-s", "--no-print-directory", "-C", ROOT, "print-libs"],
                       capture_output=True, text=True, check=True)
    return r.stdout.split()
