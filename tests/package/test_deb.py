"""test_deb.py — builds the Debian packages (dpkg-buildpackage via
`make package`, about 30 s) and checks them: the exact contents of sluice
and libsluice-dev (dpkg-deb -c), their dependencies against the Makefile's
pkg-config modules, the systemd unit (its settings, and
`systemd-analyze verify` with no warning where systemd-analyze exists), and
the unit's own command line run from the unpacked package: a job started
as the service starts it, stopped with the service's KillSignal, exits 0
and resumes from its checkpoint under the state directory exactly once; and
docs/install.md's example (the packaged reference job, data and key made in
the state directory) run by that command line equals the SQLite reference.

Slow, so not part of `make test`: the CI stage `make package-test` sets
SLUICE_DEB_TEST=1, and then a missing tool is a failure, not a skip.
"""
import os
import re
import shlex
import shutil
import signal
import sqlite3
import glob
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQUIRED = os.environ.get("SLUICE_DEB_TEST") == "1"

pytestmark = pytest.mark.skipif(
    not REQUIRED, reason="set SLUICE_DEB_TEST=1 (make package-test) to build the .deb")


def header_version():
    with open(os.path.join(ROOT, "include", "sluice.h")) as f:
        return re.search(r'^#define SL_VERSION "([^"]+)"', f.read(), re.M).group(1)


def arch():
    return subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    for tool in ("dpkg-buildpackage", "dh", "dpkg-deb"):
        assert shutil.which(tool), tool + " missing: scripts/install-deps.sh --ci"
    b = str(tmp_path_factory.mktemp("debbuild"))
    r = subprocess.run(["make", "--no-print-directory", "-C", ROOT, "package", "B=" + b],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    v, a = header_version(), subprocess.run(
        ["dpkg-architecture", "-qDEB_HOST_ARCH"], capture_output=True, text=True,
        check=True).stdout.strip()
    out = {p: os.path.join(b, "deb", "%s_%s_%s.deb" % (p, v, a))
           for p in ("sluice", "libsluice-dev")}
    for p in out.values():
        assert os.path.exists(p), p
    return out


def contents(deb):
    """Paths in the package (files and links, not directories)."""
    r = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True)
    out = set()
    for line in r.stdout.splitlines():
        f = line.split(None, 5)
        if f[0].startswith("d"):
            continue
        out.add(f[5][1:])  # "./usr/bin/sluice" -> "/usr/bin/sluice", "a -> b" kept
    return out


def field(deb, name):
    return subprocess.run(["dpkg-deb", "-f", deb, name], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_sluice_package_contents(debs):
    v, lib = header_version(), "/usr/lib/%s/" % arch()
    want = {"/usr/bin/sluice", lib + "libsluice.so." + v,
            lib + "libsluice.so.0 -> libsluice.so." + v,
            "/lib/systemd/system/sluice@.service",
            "/usr/share/man/man1/sluice.1.gz", "/usr/share/man/man7/sluice-sql.7.gz",
            "/usr/share/doc/sluice/copyright", "/usr/share/doc/sluice/changelog.gz",
            "/usr/share/doc/sluice/LICENSE.gz"}
    want |= {"/usr/share/sluice/dashboard/" + f
             for f in os.listdir(os.path.join(ROOT, "src/obs/dashboard"))}
    for top, _, files in os.walk(os.path.join(ROOT, "examples")):
        for f in files:
            if not f.endswith(".pyc"):
                rel = os.path.relpath(os.path.join(top, f), os.path.join(ROOT, "examples"))
                want.add("/usr/share/sluice/examples/" + rel)
    # dh_installchangelogs installs CHANGELOG.md as changelog.gz
    for d in ("README.md", "install.md", "operations.md", "sql.md",
              "checkpoints.md", "metrics.md", "privacy.md", "canaries.md", "licences.md"):
        want.add("/usr/share/doc/sluice/" + d)
    got = {p for p in contents(debs["sluice"]) if "__pycache__" not in p}
    assert got == want


def test_dev_package_contents(debs):
    lib = "/usr/lib/%s/" % arch()
    assert contents(debs["libsluice-dev"]) == {
        "/usr/include/sluice.h", lib + "libsluice.a", lib + "pkgconfig/sluice.pc",
        lib + "libsluice.so -> libsluice.so.0",
        "/usr/share/doc/libsluice-dev/copyright",
        "/usr/share/doc/libsluice-dev/changelog.gz"}


def pc_package(module):
    """The Debian package that ships MODULE.pc on this machine."""
    d = subprocess.run(["pkg-config", "--variable=pcfiledir", module],
                       capture_output=True, text=True, check=True).stdout.strip()
    r = subprocess.run(["dpkg", "-S", os.path.join(d, module + ".pc")],
                       capture_output=True, text=True, check=True)
    return r.stdout.split(":")[0]


def makefile_pkgs():
    """PKGS as make resolves it (however many lines add to it)."""
    r = subprocess.run(["make", "-C", ROOT, "--no-print-directory", "-p", "-n", "man"],
                       capture_output=True, text=True)
    pkgs = re.search(r"^PKGS :?= (.*)$", r.stdout, re.M).group(1).split()
    assert "openssl" in pkgs, pkgs
    return pkgs


def test_dependencies_follow_the_makefile(debs):
    """Every pkg-config module the build uses is a Build-Depends and a
    dependency of libsluice-dev (sluice.pc lists it in Requires.private);
    the runtime package depends on the shared libraries, found by
    dpkg-shlibdeps."""
    with open(os.path.join(ROOT, "debian", "control")) as f:
        control = f.read()
    build_deps = re.search(r"^Build-Depends:(.*?)^\S", control, re.M | re.S).group(1)
    dev_deps = field(debs["libsluice-dev"], "Depends")
    for m in makefile_pkgs():
        p = pc_package(m)
        assert re.search(r"\b%s\b" % re.escape(p), build_deps), (m, p)
        assert re.search(r"\b%s\b" % re.escape(p), dev_deps), (m, p)
    assert "sluice (= %s)" % header_version() in dev_deps
    deps = field(debs["sluice"], "Depends")
    for p in ("adduser", "libc6", "libssl3", "libsqlite3-0", "zlib1g", "libmicrohttpd12"):
        assert re.search(r"(^|, )%s( |,|$)" % p, deps), (p, deps)


def test_postinst_creates_the_service_user(debs, tmp_path):
    subprocess.run(["dpkg-deb", "-e", debs["sluice"], str(tmp_path / "ctl")], check=True)
    with open(tmp_path / "ctl" / "postinst") as f:
        text = f.read()
    assert re.search(r"adduser --system --group --home /var/lib/sluice", text)
    assert "systemctl --system daemon-reload" in text
    r = subprocess.run(["sh", "-n", str(tmp_path / "ctl" / "postinst")])
    assert r.returncode == 0


@pytest.fixture(scope="module")
def unpacked(debs, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("root"))
    subprocess.run(["dpkg-deb", "-x", debs["sluice"], root], check=True)
    return root


def unit_settings(root):
    with open(os.path.join(root, "lib/systemd/system/sluice@.service")) as f:
        text = f.read().replace("\\\n", " ")
    settings = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)=(.*)$", line)
        if m:
            settings.setdefault(m.group(1), []).append(m.group(2).strip())
    return settings


def test_unit_settings(unpacked):
    s = unit_settings(unpacked)
    assert s["User"] == ["sluice"] and s["Group"] == ["sluice"]
    assert s["StateDirectory"] == ["sluice/%i"]
    assert s["Restart"] == ["on-failure"]
    assert s["KillSignal"] == ["SIGTERM"]
    assert s["RestartPreventExitStatus"] == ["2"]
    exec_start = shlex.split(s["ExecStart"][0])
    assert exec_start[:3] == ["/usr/bin/sluice", "run", "/etc/sluice/%i.sql"]
    assert "checkpoint.dir=/var/lib/sluice/%i/checkpoints" in exec_start


def test_unit_verifies(unpacked, tmp_path):
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze not installed")
    with open(os.path.join(unpacked, "lib/systemd/system/sluice@.service")) as f:
        text = f.read()
    # an instance of the template, with the unpacked binary (verify checks
    # that ExecStart's program exists and is executable)
    path = tmp_path / "sluice@demo.service"
    path.write_text(text.replace("/usr/bin/sluice", unpacked + "/usr/bin/sluice"))
    r = subprocess.run([tool, "verify", "--man=no", str(path)], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stderr.strip() == "" and r.stdout.strip() == "", \
        r.stdout + r.stderr


JOB = """CREATE SOURCE s (ts TIMESTAMP, n BIGINT)
  WITH (connector = 'file', path = 'in', follow = 'true', poll.ms = '50');
CREATE SINK o WITH (connector = 'sqlite', path = 'result.db', table = 't') AS
SELECT ts, n FROM s;
"""


def service_command(root, tmp_path, name="demo", job=JOB):
    """ExecStart of sluice@NAME with /etc and /var/lib moved under tmp_path
    and the unpacked binary, as systemd would run it (SLUICE_OPTS from the
    instance's env file)."""
    etc, state = tmp_path / "etc", tmp_path / "var" / name
    etc.mkdir()
    state.mkdir(parents=True)
    (etc / (name + ".sql")).write_text(job)
    opts = "--set metrics.address=127.0.0.1:0 --set checkpoint.interval.ms=200"
    argv = []
    for a in shlex.split(unit_settings(root)["ExecStart"][0]):
        a = a.replace("%i", name).replace("/usr/bin/sluice", root + "/usr/bin/sluice")
        a = a.replace("/etc/sluice/", str(etc) + "/")
        a = a.replace("/var/lib/sluice/" + name, str(state))
        argv += shlex.split(opts) if a == "$SLUICE_OPTS" else [a]
    return argv, state


def rows(db):
    if not os.path.exists(db):
        return []
    c = sqlite3.connect(db)
    try:
        return sorted(c.execute("SELECT ts, n FROM t").fetchall())
    except sqlite3.OperationalError:
        return []
    finally:
        c.close()


def wait_for(pred, seconds):
    end = time.time() + seconds
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_service_command_stops_gracefully_and_resumes(unpacked, tmp_path):
    argv, state = service_command(unpacked, tmp_path)
    (state / "in").mkdir()
    first = [(1000 * i, i) for i in range(1, 501)]
    second = [(1000 * i, i) for i in range(501, 801)]
    (state / "in" / "a.csv").write_text("ts,n\n" + "".join("%d,%d\n" % r for r in first))
    db = str(state / "result.db")
    log = open(tmp_path / "run1.log", "w+")
    p = subprocess.Popen(argv, cwd=str(state), stderr=log)
    try:
        assert wait_for(lambda: rows(db) == first, 30), open(tmp_path / "run1.log").read()
        p.send_signal(signal.SIGTERM)  # KillSignal
        assert p.wait(timeout=120) == 0  # well inside TimeoutStopSec
    finally:
        if p.poll() is None:
            p.kill()
    ck = state / "checkpoints"
    assert any(os.path.exists(ck / d / "MANIFEST") for d in os.listdir(ck)), os.listdir(ck)
    (state / "in" / "b.csv").write_text("ts,n\n" + "".join("%d,%d\n" % r for r in second))
    log2 = open(tmp_path / "run2.log", "w+")
    p = subprocess.Popen(argv, cwd=str(state), stderr=log2)
    try:
        assert wait_for(lambda: len(rows(db)) >= len(first + second), 30), \
            open(tmp_path / "run2.log").read()
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=120) == 0
    finally:
        if p.poll() is None:
            p.kill()
    assert rows(db) == first + second  # each row exactly once across the restart


def reference_rows(tmp, data, window_ms=60000, k=16):
    """The reference job's result computed by SQLite over the raw CSV files
    (tests/golden/reference.sql, independent of sluice)."""
    ref = os.path.join(tmp, "ref.db")
    for table, files in (("events", sorted(glob.glob(os.path.join(data, "events", "*.csv")))),
                         ("subscribers", [os.path.join(data, "subscribers.csv")]),
                         ("cells", [os.path.join(data, "cells.csv")])):
        cmds = [".import --csv %s'%s' %s" % ("--skip 1 " if i else "", f, table)
                for i, f in enumerate(files)]
        subprocess.run(["sqlite3", ref], input="\n".join(cmds) + "\n", text=True, check=True)
    con = sqlite3.connect(ref)
    con.execute("CREATE TABLE params(window_ms, k)")
    con.execute("INSERT INTO params VALUES (?, ?)", (window_ms, k))
    con.commit()
    con.close()
    with open(os.path.join(ROOT, "tests", "golden", "reference.sql")) as f:
        subprocess.run(["sqlite3", ref], input=f.read(), text=True, check=True)
    con = sqlite3.connect(ref)
    rows = sorted(con.execute("SELECT * FROM expected").fetchall())
    con.close()
    return rows


def test_install_guide_example_runs_as_the_service_would(unpacked, tmp_path):
    """docs/install.md step 3 and 4 with the packaged files: the packaged
    example job as /etc/sluice/ages.sql, data and key made in the state
    directory with the packaged sluice, then the unit's command line. The
    bounded job exits 0 and its result equals the reference computed by
    SQLite over the raw input."""
    exe = unpacked + "/usr/bin/sluice"
    with open(unpacked + "/usr/share/sluice/examples/telecom/age_distribution.sql") as f:
        job = f.read()
    argv, state = service_command(unpacked, tmp_path, "ages", job)
    data = str(state / "data")
    subprocess.run([exe, "gen", "--out", data, "--events", "40000", "--subscribers", "1500",
                    "--cells", "60", "--areas", "3", "--seed", "11",
                    "--set", "span.ms=1200000"], check=True, capture_output=True)
    subprocess.run([exe, "keygen", data + "/keys.txt"], check=True)
    r = subprocess.run(argv, cwd=str(state), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "dashboard http://127.0.0.1:" in r.stderr  # the journal's first line
    con = sqlite3.connect(str(state / "out" / "demo.db"))
    got = sorted(con.execute("SELECT window_start, window_end, event_type, area, age_band, "
                             "events, subscribers FROM age_distribution").fetchall())
    con.close()
    want = reference_rows(str(tmp_path), data)
    assert len(want) > 20
    assert got == want
    assert os.path.isdir(state / "checkpoints")
