"""A real PostgreSQL server for the tests: initdb on a temporary directory,
pg_ctl on a free 127.0.0.1 port with its unix socket in the same directory,
stopped afterwards. initdb refuses to run as root, so as root the server
runs as the `postgres` system user (created by the Debian package).

Password authentication (scram-sha-256) on TCP, so a wrong password is a
real refusal; fsync is off: the tests kill sluice, never the machine, and
restarting the server (immediate shutdown) keeps what the OS has.

Queries from the tests go through psql (no Python driver needed)."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

USER = "sluice"
PASSWORD = "sluice-test-pw"


def _bin(name):
    for d in ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    p = shutil.which(name)
    if not p:
        raise RuntimeError(f"{name} not found: install the Debian package postgresql "
                           "(scripts/install-deps.sh)")
    return p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self, durable=False):
        self.durable = durable
        self.root = tempfile.mkdtemp(prefix="sluice-pg-")
        os.chmod(self.root, 0o755)
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "server.log")
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        pw = os.path.join(self.root, "pw")
        with open(pw, "w") as f:
            f.write(PASSWORD + "\n")
        if self.as_postgres:
            shutil.chown(self.root, "postgres")
            shutil.chown(pw, "postgres")
        self._run(_bin("initdb"), "-D", self.data, "-U", USER, f"--pwfile={pw}",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        os.unlink(pw)
        self.start()

    def _run(self, *argv, check=True):
        argv = list(argv)
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        r = subprocess.run(argv, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}):\n"
                               f"{r.stdout}\n{r.stderr}")
        return r

    def start(self):
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                "-c max_connections=50")
        if not self.durable:   # the benchmark keeps PostgreSQL's defaults
            opts += " -c fsync=off -c full_page_writes=off"
        self._run(_bin("pg_ctl"), "-D", self.data, "-l", self.log, "-o", opts, "-w",
                  "-t", "60", "start")

    def stop(self, mode="fast"):
        self._run(_bin("pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop", check=False)

    def close(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, db="postgres", password=PASSWORD):
        return (f"host=127.0.0.1 port={self.port} user={USER} password={password} "
                f"dbname={db} connect_timeout=5")

    def psql(self, sql, db="postgres", check=True):
        """Runs SQL; returns the rows as lists of strings (tab-separated
        unaligned output, NULL as \\N)."""
        env = dict(os.environ, PGPASSWORD=PASSWORD)
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t",
                            "-P", "null=\\N", "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", USER, "-d", db, "-c", sql],
                           capture_output=True, text=True, env=env)
        if check and r.returncode != 0:
            raise AssertionError(f"psql failed: {r.stderr}\n{sql}")
        return [l.split("\t") for l in r.stdout.splitlines() if l]

    def copy_in(self, table, csv_path, db="postgres"):
        env = dict(os.environ, PGPASSWORD=PASSWORD)
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                        "-p", str(self.port), "-U", USER, "-d", db, "-c",
                        f"\\copy {table} FROM '{csv_path}' WITH (FORMAT csv, HEADER true)"],
                       check=True, capture_output=True, text=True, env=env)

    def new_db(self, name):
        self.psql(f'DROP DATABASE IF EXISTS "{name}"')
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def wait_ready(self, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = subprocess.run([_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                               capture_output=True)
            if r.returncode == 0:
                return True
            time.sleep(0.1)
        return False


def result_rows(server, db, table="age_distribution"):
    """The visible result rows as the SQLite sink's tests see them: window
    bounds in epoch milliseconds, sorted."""
    rows = server.psql(
        "SELECT (extract(epoch FROM window_start) * 1000)::bigint, "
        "(extract(epoch FROM window_end) * 1000)::bigint, event_type, area, age_band, "
        f"events, subscribers FROM {table}", db=db)
    return sorted((int(r[0]), int(r[1]), r[2], r[3], r[4], int(r[5]), int(r[6]))
                  for r in rows)
