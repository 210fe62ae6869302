"""Endpoint security of `sluice run`'s HTTP server (docs/operations.md).

- it binds 127.0.0.1 unless metrics.address says otherwise;
- static files come from a fixed set: traversal attempts, encoded or not,
  get 404 and never a file from outside the dashboard directory;
- with metrics.token.file, /metrics, /status and the dashboard need the
  token (Bearer, or Basic with the token as password); a missing or wrong
  token gets 401, /healthz stays open; a token file others can read, and a
  key file others can read, stop the job at start with a clear error;
- oversized requests (headers, URL, a body) are refused, and requests beyond
  metrics.rate.limit per second get 429.

Requests go through http.client and raw sockets so that paths reach the
server exactly as written (urllib would normalise them)."""
import base64
import http.client
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "build", "sluice")
TOKEN = "s3cret-token-0123456789abcdef"


@pytest.fixture(scope="module")
def data():
    d = tempfile.mkdtemp(prefix="sluice-endpoint-")
    subprocess.run([SLUICE, "gen", "--out", f"{d}/data", "--events", "2000",
                    "--subscribers", "200", "--cells", "10", "--areas", "2",
                    "--parts", "1", "--seed", "3"], check=True, capture_output=True)
    subprocess.run([SLUICE, "keygen", f"{d}/data/keys.txt"], check=True,
                   capture_output=True)
    tok = f"{d}/token"
    with open(tok, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(tok, 0o600)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def argv(d, name, *extra, key=None):
    out = os.path.join(d, name)
    os.makedirs(out, exist_ok=True)
    return [SLUICE, "run", "telecom-age", "--events", f"{d}/data/events",
            "--subscribers", f"{d}/data/subscribers.csv",
            "--cells", f"{d}/data/cells.csv",
            "--key-file", key or f"{d}/data/keys.txt", "--db", f"{out}/out.db",
            "--out-dir", out, "--k", "2", *extra]


class Server:
    """A short job that keeps serving its final figures for a while."""

    def __init__(self, d, name, *extra):
        self.log = os.path.join(d, name + ".log")
        self.f = open(self.log, "w")
        self.p = subprocess.Popen(argv(d, name, "--set", "metrics.linger.ms=60000", *extra),
                                  stdout=self.f, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            m = re.search(r"dashboard http://([0-9.]+):([0-9]+)/", open(self.log).read())
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                return
            assert self.p.poll() is None, open(self.log).read()
            time.sleep(0.05)
        raise AssertionError("no dashboard URL:\n" + open(self.log).read())

    def get(self, path, headers=None, method="GET", body=None):
        c = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            c.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
            for k, v in (headers or {}).items():
                c.putheader(k, v)
            c.endheaders(body)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def raw(self, data):
        """Sends bytes, returns the status code of the answer (0: none)."""
        with socket.create_connection((self.host, self.port), timeout=10) as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            buf = b""
            try:
                while b"\r\n" not in buf:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
            except (ConnectionResetError, socket.timeout):
                pass
        m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
        return int(m.group(1)) if m else 0

    def stop(self):
        self.p.kill()
        self.p.wait()
        self.f.close()


@pytest.fixture(scope="module")
def open_server(data):
    s = Server(data, "open", "--set", "metrics.address=127.0.0.1:0")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def token_server(data):
    s = Server(data, "auth", "--set", "metrics.address=127.0.0.1:0",
               "--set", f"metrics.token.file={data}/token",
               "--set", "metrics.rate.limit=0")
    yield s
    s.stop()


def test_binds_loopback_by_default(data):
    # without metrics.address: 127.0.0.1 (port 9464, or any free one if taken)
    s = Server(data, "default")
    try:
        assert s.host == "127.0.0.1"
        status, _, body = s.get("/healthz")
        assert (status, body) == (200, b"ok\n")
    finally:
        s.stop()


def test_static_files_from_a_fixed_set(open_server):
    status, h, body = open_server.get("/")
    assert status == 200 and b"<html" in body.lower()
    assert open_server.get("/app.js")[0] == 200
    assert open_server.get("/style.css")[0] == 200
    secret = open(os.path.join(ROOT, "src", "obs", "server.c"), "rb").read()[:200]
    ddir = os.path.join(ROOT, "src", "obs", "dashboard")
    dash = [open(os.path.join(ddir, f), "rb").read() for f in os.listdir(ddir)]
    for path in ["/../../../../etc/passwd", "/..%2f..%2f..%2fetc%2fpasswd",
                 "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd",
                 "/../server.c", "/..%2fserver.c", "/dashboard/../server.c",
                 "/./index.html", "/index.html/", "/.hidden", "/index.html%00.js",
                 "/..\\..\\etc\\passwd", "/app.js?x=/../../etc/passwd#"]:
        status, _, body = open_server.get(path)
        # 404, or (a query string, a NUL the server cuts at) a dashboard file
        assert status == 404 or (status == 200 and body in dash), path
        assert b"root:" not in body and secret not in body, path


def test_open_server_needs_no_token(open_server):
    assert open_server.get("/status")[0] == 200
    assert open_server.get("/metrics")[0] == 200


def test_missing_or_wrong_token_is_refused(token_server):
    for path in ["/metrics", "/status", "/", "/index.html", "/app.js"]:
        status, h, body = token_server.get(path)
        assert status == 401, path
        assert b"sluice_" not in body and b"{" not in body, path
        www = h.get("WWW-Authenticate", "")
        assert www.startswith("Bearer" if path in ("/metrics", "/status") else "Basic"), www
        for bad in ["Bearer wrong-token-0123456789abcdef", "Bearer " + TOKEN[:-1],
                    "Bearer " + TOKEN + "x", "Bearer", "Basic " +
                    base64.b64encode(b"admin:wrong").decode(), "Basic !!!", TOKEN]:
            assert token_server.get(path, {"Authorization": bad})[0] == 401, (path, bad)
    assert token_server.get("/healthz")[0] == 200


def test_right_token_is_accepted(token_server):
    auth = {"Authorization": "Bearer " + TOKEN}
    status, _, body = token_server.get("/metrics", auth)
    assert status == 200 and b"sluice_build_info" in body
    status, _, body = token_server.get("/status", auth)
    assert status == 200 and body.startswith(b"{")
    basic = {"Authorization": "Basic " + base64.b64encode(f"me:{TOKEN}".encode()).decode()}
    assert token_server.get("/", basic)[0] == 200
    assert token_server.get("/status", basic)[0] == 200


def test_oversized_requests_are_refused(token_server):
    s = token_server
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n"
    assert s.raw(big) in (0, 413, 414, 431)
    many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(400)) + b"\r\n"
    assert s.raw(many) in (0, 413, 414, 431)
    assert s.raw(b"GET /" + b"a" * 4000 + b" HTTP/1.1\r\nHost: x\r\n\r\n") in (0, 414, 431)
    assert s.get("/healthz", method="POST", body=b"x" * 100,
                 headers={"Content-Length": "100"})[0] in (405, 413)
    assert s.get("/healthz", headers={"Content-Length": "5"}, body=b"hello")[0] == 413
    # the server still answers normally afterwards
    assert s.get("/healthz")[0] == 200


def test_rate_limit(data):
    s = Server(data, "rate", "--set", "metrics.address=127.0.0.1:0",
               "--set", "metrics.rate.limit=5")
    try:
        time.sleep(1.1)
        codes = [s.get("/healthz") for _ in range(20)]
        assert sum(1 for c in codes if c[0] == 429) >= 10, [c[0] for c in codes]
        assert all(c[1].get("Retry-After") == "1" for c in codes if c[0] == 429)
        time.sleep(1.1)
        assert s.get("/healthz")[0] == 200
    finally:
        s.stop()


def run_fails(cmd, *want):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, r.stdout + r.stderr
    for w in want:
        assert w in r.stderr, r.stderr
    return r


def test_readable_token_file_is_refused(data):
    tok = f"{data}/token-open"
    with open(tok, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(tok, 0o644)
    run_fails(argv(data, "tokbad", "--set", "metrics.address=127.0.0.1:0",
                   "--set", f"metrics.token.file={tok}"),
              "metrics.token.file", tok, "too open", "chmod 600")
    short = f"{data}/token-short"
    with open(short, "w") as f:
        f.write("short\n")
    os.chmod(short, 0o600)
    run_fails(argv(data, "tokshort", "--set", "metrics.address=127.0.0.1:0",
                   "--set", f"metrics.token.file={short}"), "16 to")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_readable_key_file_is_refused(data, mode):
    key = f"{data}/keys-{mode:o}.txt"
    shutil.copy(f"{data}/data/keys.txt", key)
    os.chmod(key, mode)
    r = run_fails(argv(data, f"key{mode:o}", "--set", "metrics.address=off", key=key),
                  key, f"{mode:04o}", "too open", "chmod 600")
    secret = open(key).read().split()[-1]
    assert secret not in r.stderr
