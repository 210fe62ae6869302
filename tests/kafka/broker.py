"""A real Apache Kafka broker for the tests (KRaft, one node acting as broker
and controller, on free 127.0.0.1 ports, in a temporary directory).

The jars come from Maven Central through tests/kafka/pom.xml
(`mvn dependency:copy-dependencies`) and are cached outside the repository in
~/.cache/sluice/kafka-<version>/libs (SLUICE_KAFKA_CACHE overrides the root);
the first resolution downloads ~90 jars (about 25 s on this machine), later
ones reuse the cache. Nothing here is committed but the pom.

Use from Python (tests/kafka/conftest.py starts one broker per session):
    b = Broker(workdir); b.start(); b.bootstrap ... b.stop()
or from a shell (bench, manual runs):
    python3 tests/kafka/broker.py start DIR   # prints host:port, leaves it running
    python3 tests/kafka/broker.py stop DIR
"""
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = os.environ.get("SLUICE_KAFKA_VERSION", "4.1.1")
CACHE = os.environ.get("SLUICE_KAFKA_CACHE",
                       os.path.join(os.path.expanduser("~"), ".cache", "sluice"))


def libs_dir(version=VERSION):
    """Resolves the broker's jars into the cache (once) and returns the dir."""
    d = os.path.join(CACHE, f"kafka-{version}", "libs")
    done = os.path.join(d, ".complete")
    if os.path.exists(done):
        return d
    tmp = d + f".tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.time()
    subprocess.run(["mvn", "-q", "-B", "-f", os.path.join(HERE, "pom.xml"),
                    "dependency:copy-dependencies", "-DincludeScope=runtime",
                    f"-Dkafka.version={version}", f"-DoutputDirectory={tmp}"],
                   check=True)
    shutil.rmtree(d, ignore_errors=True)
    os.rename(tmp, d)
    with open(done, "w") as f:
        f.write(f"resolved in {time.time() - t0:.1f} s\n")
    print(f"kafka {version}: jars resolved into {d} in {time.time() - t0:.1f} s",
          file=sys.stderr)
    return d


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LOG4J = """status = warn
appender.f.type = File
appender.f.name = f
appender.f.fileName = {log}
appender.f.layout.type = PatternLayout
appender.f.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.f.ref = f
logger.kafka.name = org.apache.kafka
logger.kafka.level = warn
"""


class Broker:
    """One KRaft broker+controller. Ports are chosen once, so a restart
    (stop then start) keeps the same bootstrap address and data."""

    def __init__(self, workdir, version=VERSION):
        self.dir = workdir
        self.version = version
        self.proc = None
        os.makedirs(workdir, exist_ok=True)
        self.port = free_port()
        self.cport = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.props = os.path.join(workdir, "server.properties")
        with open(self.props, "w") as f:
            f.write(f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{self.cport}
listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={os.path.join(workdir, 'data')}
num.partitions=2
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
transaction.max.timeout.ms=900000
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
auto.create.topics.enable=true
""")
        with open(os.path.join(workdir, "log4j2.properties"), "w") as f:
            f.write(LOG4J.format(log=os.path.join(workdir, "server.log")))
        self.formatted = False

    def _java(self, *args):
        cp = os.path.join(libs_dir(self.version), "*")
        return ["java", "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={os.path.join(self.dir, 'log4j2.properties')}",
                "-cp", cp] + list(args)

    def start(self, timeout=90):
        if not self.formatted:
            cid = "-"
            while cid.startswith("-"):  # StorageTool would read "-..." as an option
                cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            subprocess.run(self._java("kafka.tools.StorageTool", "format", "-t", cid,
                                      "-c", self.props), check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.formatted = True
        out = open(os.path.join(self.dir, "stdout.log"), "ab")
        self.proc = subprocess.Popen(self._java("kafka.Kafka", self.props),
                                     stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        with open(os.path.join(self.dir, "broker.pid"), "w") as f:
            f.write(str(self.proc.pid))
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kafka broker exited {self.proc.returncode}; "
                                   f"see {self.dir}/stdout.log and server.log")
            r = subprocess.run(["kcat", "-L", "-b", self.bootstrap, "-m", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            if r.returncode == 0 and b"1 brokers" in r.stdout:
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"kafka broker not ready after {timeout} s; see {self.dir}")

    def stop(self, kill=False):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def create_topic(self, topic, partitions=1, compact=False):
        args = ["org.apache.kafka.tools.TopicCommand", "--bootstrap-server",
                self.bootstrap, "--create", "--if-not-exists", "--topic", topic,
                "--partitions", str(partitions), "--replication-factor", "1"]
        if compact:
            args += ["--config", "cleanup.policy=compact"]
        subprocess.run(self._java(*args), check=True, stdout=subprocess.DEVNULL)


def main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    d = os.path.abspath(argv[2])
    if argv[1] == "start":
        b = Broker(d).start()
        with open(os.path.join(d, "bootstrap"), "w") as f:
            f.write(b.bootstrap)
        b.proc = None  # leave it running
        print(b.bootstrap)
        return 0
    try:
        with open(os.path.join(d, "broker.pid")) as f:
            pid = int(f.read())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError) as e:
        print(f"no broker to stop in {d}: {e}", file=sys.stderr)
        return 1
    for _ in range(300):  # the broker flushes its logs on the way out
        try:
            os.kill(pid, 0)
        except OSError:
            return 0
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
