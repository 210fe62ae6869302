"""test_install.py — `make install` into a temporary DESTDIR, as a user
would install sluice from source, then use it the way a user would:
compile and run a C program against the installed header and library found
with pkg-config (shared and static), run the installed `sluice`, and
`make uninstall`. Also checks that the version lives in one place.

Run: python3 -m pytest -q tests/package/test_install.py (part of make test).
"""
import os
import random
import re
import shutil
import subprocess
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "/opt/sl"  # not /usr/local: proves PREFIX is honoured everywhere


def header_version():
    with open(os.path.join(ROOT, "include", "sluice.h")) as f:
        m = re.search(r'^#define SL_VERSION "([^"]+)"', f.read(), re.M)
    return m.group(1)


def seed():
    """From the commit (printed), or SLUICE_SEED, so a failure reproduces."""
    s = os.environ.get("SLUICE_SEED")
    if not s:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        s = str(int(head[:8], 16)) if head else "1"
    print("seed", s)
    return int(s)


def make(*args, **kw):
    r = subprocess.run(["make", "--no-print-directory", "-C", ROOT, *args],
                       capture_output=True, text=True, **kw)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("destdir"))
    make("-j2", "install", "DESTDIR=" + d, "PREFIX=" + PREFIX)
    return d


def installed(dest):
    """Every file and symlink under dest, as 'path' or 'path -> target'."""
    out = set()
    for top, dirs, files in os.walk(dest):
        for n in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            p = os.path.join(top, n)
            rel = "/" + os.path.relpath(p, dest)
            out.add(rel + (" -> " + os.readlink(p) if os.path.islink(p) else ""))
    return out


def test_installed_files_are_exactly_the_documented_set(dest):
    v = header_version()
    lib = PREFIX + "/lib/"
    want = {
        PREFIX + "/bin/sluice",
        lib + "libsluice.so." + v,
        lib + "libsluice.so.0 -> libsluice.so." + v,
        lib + "libsluice.so -> libsluice.so.0",
        lib + "libsluice.a",
        lib + "pkgconfig/sluice.pc",
        PREFIX + "/include/sluice.h",
        PREFIX + "/share/man/man1/sluice.1",
        PREFIX + "/share/man/man7/sluice-sql.7",
    }
    want |= {PREFIX + "/share/sluice/dashboard/" + f
             for f in os.listdir(os.path.join(ROOT, "src/obs/dashboard"))}
    for top, _, files in os.walk(os.path.join(ROOT, "examples")):
        for f in files:
            if f.endswith(".pyc"):
                continue
            rel = os.path.relpath(os.path.join(top, f), os.path.join(ROOT, "examples"))
            want.add(PREFIX + "/share/sluice/examples/" + rel)
    want |= {PREFIX + "/share/doc/sluice/" + os.path.basename(f) for f in
             ["README.md", "CHANGELOG.md", "LICENSE", "docs/install.md",
              "docs/operations.md", "docs/sql.md", "docs/checkpoints.md",
              "docs/metrics.md", "docs/privacy.md", "docs/canaries.md",
              "docs/licences.md"]}
    got = {p for p in installed(dest) if "__pycache__" not in p}
    assert got == want
    mode = os.stat(dest + PREFIX + "/bin/sluice").st_mode & 0o777
    assert mode == 0o755


def test_shared_library_has_soname_and_version(dest):
    so = dest + PREFIX + "/lib/libsluice.so." + header_version()
    r = subprocess.run(["readelf", "-d", so], capture_output=True, text=True, check=True)
    assert re.search(r"\(SONAME\)\s+Library soname: \[libsluice\.so\.0\]", r.stdout)


def pkg_config(dest, *args):
    env = dict(os.environ, PKG_CONFIG_PATH=dest + PREFIX + "/lib/pkgconfig",
               PKG_CONFIG_SYSROOT_DIR=dest)
    env.pop("PKG_CONFIG_LIBDIR", None)
    r = subprocess.run(["pkg-config", *args, "sluice"], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_pkg_config_file(dest):
    assert pkg_config(dest, "--modversion") == [header_version()]
    # (then the private requirements' flags, e.g. OpenSSL's p11-kit directory)
    assert pkg_config(dest, "--cflags")[0] == "-I" + dest + PREFIX + "/include"
    assert pkg_config(dest, "--libs") == ["-L" + dest + PREFIX + "/lib", "-lsluice"]
    static = pkg_config(dest, "--static", "--libs")
    for lib in ("-lsluice", "-lssl", "-lcrypto", "-lsqlite3", "-lz",
                "-lmicrohttpd", "-lpthread", "-lm"):
        assert lib in static


def csv_input(tmp_path):
    """Random rows and two malformed lines; returns the path and the
    expected (rows, sum, dead letters)."""
    rnd = random.Random(seed())
    lines, rows, total = ["id,amount"], 0, 0
    bad = set(rnd.sample(range(1, 2000), 2))
    for i in range(1, 2001):
        if i in bad:
            lines.append("%d,not-a-number" % i)
            continue
        a = rnd.randint(-10**6, 10**6)
        lines.append("%d,%d" % (i, a))
        rows += 1
        total += a
    p = tmp_path / "in.csv"
    p.write_text("\n".join(lines) + "\n")
    return str(p), (rows, total, len(bad))


def run_sumjob(exe, csv, out, env=None):
    r = subprocess.run([exe, csv, out], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"rows (\d+) sum (-?\d+) dead (\d+) version (\S+)\n", r.stdout)
    assert m, r.stdout
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))), m.group(4)


def test_c_program_against_installed_shared_library(dest, tmp_path):
    exe = str(tmp_path / "sumjob")
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror",
                    os.path.join(ROOT, "tests/package/sumjob.c"), "-o", exe,
                    *pkg_config(dest, "--cflags"), *pkg_config(dest, "--libs")],
                   check=True)
    env = dict(os.environ, LD_LIBRARY_PATH=dest + PREFIX + "/lib")
    ldd = subprocess.run(["ldd", exe], capture_output=True, text=True, env=env).stdout
    assert re.search(r"libsluice\.so\.0 => " + re.escape(dest + PREFIX) + r"/lib/", ldd), ldd
    csv, want = csv_input(tmp_path)
    got, version = run_sumjob(exe, csv, str(tmp_path / "out"), env)
    assert got == want
    assert version == header_version()


def test_c_program_against_installed_static_library(dest, tmp_path):
    """libsluice.a with the system libraries shared, as docs/install.md
    shows: the private requirements' --libs (pkg-config --static would also
    ask for static OpenSSL and GnuTLS, which Debian does not ship)."""
    exe = str(tmp_path / "sumjob-static")
    reqs = pkg_config(dest, "--print-requires-private")
    r = subprocess.run(["pkg-config", "--libs", *reqs], capture_output=True, text=True,
                       check=True)
    libs = ["-L" + dest + PREFIX + "/lib", "-Wl,-Bstatic", "-lsluice", "-Wl,-Bdynamic",
            *r.stdout.split(), "-lpthread", "-lm"]
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror",
                    os.path.join(ROOT, "tests/package/sumjob.c"), "-o", exe,
                    *pkg_config(dest, "--cflags"), *libs], check=True)
    ldd = subprocess.run(["ldd", exe], capture_output=True, text=True).stdout
    assert "libsluice" not in ldd
    csv, want = csv_input(tmp_path)
    got, version = run_sumjob(exe, csv, str(tmp_path / "out"))
    assert got == want
    assert version == header_version()


def test_installed_sluice_runs(dest):
    exe = dest + PREFIX + "/bin/sluice"
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "sluice %s\n" % header_version())
    r = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("run", "explain", "gen", "keygen", "savepoint"):
        assert re.search(r"^  %s " % cmd, r.stdout, re.M), cmd
    r = subprocess.run([exe, "run", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("usage: sluice run telecom-age")


def test_installed_sluice_serves_the_installed_dashboard(dest, tmp_path):
    """The installed binary finds PREFIX/share/sluice/dashboard next to
    itself (no source tree around): the page it serves is the installed
    file byte for byte."""
    exe = dest + PREFIX + "/bin/sluice"
    (tmp_path / "in.csv").write_text("ts,n\n1000,1\n2000,2\n")
    job = tmp_path / "j.sql"
    job.write_text(
        "CREATE SOURCE s (ts TIMESTAMP, n BIGINT) WITH (connector = 'file', "
        "path = '%s');\n"
        "CREATE SINK o WITH (connector = 'file', path = '%s', format = 'csv') AS "
        "SELECT n FROM s;\n" % (tmp_path / "in.csv", tmp_path / "out.csv"))
    p = subprocess.Popen([exe, "run", str(job), "--set", "metrics.address=127.0.0.1:0",
                          "--set", "metrics.linger.ms=20000",
                          "--set", "output.dir=" + str(tmp_path / "dl")],
                         stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))
    try:
        line = p.stderr.readline()
        m = re.search(r"dashboard (http://127\.0\.0\.1:\d+/)", line)
        assert m, line
        page = urllib.request.urlopen(m.group(1), timeout=10).read()
        with open(dest + PREFIX + "/share/sluice/dashboard/index.html", "rb") as f:
            assert page == f.read()
    finally:
        p.kill()
        p.wait()


def test_reinstall_elsewhere_then_uninstall(dest, tmp_path):
    """Installing twice gives the same files (no examples/examples), a
    second PREFIX gets its own sluice.pc, and uninstall removes it all."""
    d = str(tmp_path / "d")
    make("install", "DESTDIR=" + d, "PREFIX=/usr/local")
    first = installed(d)
    make("install", "DESTDIR=" + d, "PREFIX=/usr/local")
    assert installed(d) == first
    assert first == {p.replace(PREFIX, "/usr/local", 1) for p in installed(dest)}
    with open(d + "/usr/local/lib/pkgconfig/sluice.pc") as f:
        assert "prefix=/usr/local\n" in f.read()
    make("uninstall", "DESTDIR=" + d, "PREFIX=/usr/local")
    assert installed(d) == set()


def test_version_lives_in_one_place():
    v = header_version()
    with open(os.path.join(ROOT, "debian", "changelog")) as f:
        first = f.readline()
    assert re.match(r"sluice \(%s(-\d+)?\) " % re.escape(v), first), first
    with open(os.path.join(ROOT, "CHANGELOG.md")) as f:
        assert re.search(r"^## %s " % re.escape(v), f.read(), re.M)
    r = subprocess.run(["make", "-s", "-C", ROOT, "--no-print-directory", "-p", "-n", "man"],
                       capture_output=True, text=True)
    assert re.search(r"^VERSION := %s$" % re.escape(v), r.stdout, re.M)
