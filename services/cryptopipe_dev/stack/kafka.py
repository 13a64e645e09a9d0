"""A real single-node Apache Kafka 4.1 broker (KRaft: broker and controller in one JVM) on
127.0.0.1, run from the Maven Central jars that scripts/bootstrap.sh puts in $KAFKA_LIBS.

    with KafkaBroker(tmp_path / "kafka") as broker:
        broker.create_topic("trades", partitions=3)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from cryptopipe_dev.stack import paths
from cryptopipe_dev.stack.kafka_tls import NAME as SASL_SSL
from cryptopipe_dev.stack.kafka_tls import SaslSslListener
from cryptopipe_dev.stack.procs import LOOPBACK, ManagedProcess, free_port, port_open, wait_for

log = logging.getLogger(__name__)

NODE_ID = 1

# Per infra-recipes section 6; the comments say why a setting differs from Kafka's default.
_BASE_CONFIG: dict[str, str] = {
    "process.roles": "broker,controller",
    "node.id": str(NODE_ID),
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    # one replica: the internal topics cannot have the default RF 3
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    # 50 partitions each (the default) make the first consumer group / transaction take seconds
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.num.partitions": "4",
    "group.initial.rebalance.delay.ms": "0",  # consumers get partitions at once, not after 3 s
    "num.partitions": "1",
    # topics are created explicitly (as the Strimzi topic operator does in a cluster), so a typo'd
    # topic name fails instead of silently creating a new topic
    "auto.create.topics.enable": "false",
    # a 2-core machine shared with Spark: fewer threads than the defaults (3 network, 8 io)
    "num.network.threads": "2",
    "num.io.threads": "2",
    "background.threads": "2",
    "log.cleaner.threads": "1",
    # The cleaner's dedupe buffer is allocated on the heap whole, at start: the default 128 MiB was
    # most of the broker's live set (168 MiB after a full GC at live rates). It bounds the keys one
    # cleaning pass handles (~24 bytes each); 16 MiB still takes ~700k keys, far more than the
    # compacted internal topics of a local broker hold.
    "log.cleaner.dedupe.buffer.size": str(16 << 20),
    "num.recovery.threads.per.data.dir": "1",
    # After a crash (SIGKILL) the restarted broker is refused ("DUPLICATE_BROKER_REGISTRATION")
    # until its old session expires: 9 s by default, 3 s here. Heartbeats must be well inside it.
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
}

_LOG4J2 = """\
status = warn
# log4j's own shutdown hook races Kafka's and drops the last lines of a shutdown
shutdownHook = disable
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
# per-request and per-partition-state chatter
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def random_cluster_id() -> str:
    """What ``kafka-storage.sh random-uuid`` prints, without starting a JVM for it: 16 random bytes
    as unpadded URL-safe base64; Kafka refuses ids starting with '-' on the command line."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def java_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise paths.MissingDependency("java (>= 17) is not on PATH. Run scripts/bootstrap.sh")
    return found


class KafkaBroker:
    """Single-node KRaft broker in ``work_dir`` (data in ``work_dir/data``, log ``work_dir/kafka.log``).

    ``start()`` returns once the broker is registered, unfenced and answers metadata requests.
    ``stop()`` then ``start()`` again restarts it on the same ports with the same data, which is how
    tests simulate a broker outage.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        libs: Path | None = None,
        heap: str = "512m",
        config: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
        die_with_parent: bool = False,
        sasl_ssl: SaslSslListener | None = None,
    ) -> None:
        self.work_dir = Path(work_dir)
        # one more listener, TLS + SCRAM (kafka_tls.py), next to the plaintext one tests administer with
        self.sasl_ssl = sasl_ssl
        self.libs = libs or paths.kafka_libs()
        self.heap = heap
        self.extra_config = dict(config or {})
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.data_dir = self.work_dir / "data"
        self.log_path = self.work_dir / "kafka.log"
        self.config_path = self.work_dir / "server.properties"
        self.port = 0
        self.controller_port = 0
        self.cluster_id = ""
        self.startup_seconds = 0.0
        self.process: ManagedProcess | None = None
        # name -> advertised port of listeners added with add_listener(); their real ports
        self._advertised: dict[str, int] = {}
        self.listener_ports: dict[str, int] = {}

    @property
    def sasl_ssl_bootstrap(self) -> str:
        if self.sasl_ssl is None or not self.listener_ports.get(SASL_SSL):
            raise RuntimeError("broker not started with a SASL_SSL listener")
        return f"{LOOPBACK}:{self.listener_ports[SASL_SSL]}"

    @property
    def bootstrap(self) -> str:
        if not self.port:
            raise RuntimeError("broker not started")
        return f"{LOOPBACK}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.alive

    def add_listener(self, name: str, advertised_port: int) -> None:
        """Before start(): one more plaintext listener, on a port of its own, that tells its clients
        (in every metadata answer) to connect to ``advertised_port`` instead: a fault proxy listening
        there and forwarding to ``listener_ports[name]`` is then the only way in for them."""
        if self.port:
            raise RuntimeError("add listeners before the broker's first start")
        if not name.isupper() or name in ("PLAINTEXT", "CONTROLLER"):
            raise ValueError(f"listener name {name!r}: upper case, not PLAINTEXT or CONTROLLER")
        self._advertised[name] = advertised_port

    def _listener_names(self) -> list[str]:
        return [*self._advertised, *([SASL_SSL] if self.sasl_ssl is not None else [])]

    def config(self) -> dict[str, str]:
        """The server.properties this broker runs with."""
        extra = {name: self.listener_ports.get(name, 0) for name in self._listener_names()}
        advertised = {**extra, **self._advertised}
        protocols = {name: name if name == SASL_SSL else "PLAINTEXT" for name in extra}
        return {
            **_BASE_CONFIG,
            "listener.security.protocol.map": ",".join(
                [_BASE_CONFIG["listener.security.protocol.map"], *(f"{n}:{protocols[n]}" for n in extra)]
            ),
            "listeners": ",".join(
                [
                    f"PLAINTEXT://{LOOPBACK}:{self.port}",
                    f"CONTROLLER://{LOOPBACK}:{self.controller_port}",
                    *(f"{n}://{LOOPBACK}:{p}" for n, p in extra.items()),
                ]
            ),
            "advertised.listeners": ",".join(
                [f"PLAINTEXT://{LOOPBACK}:{self.port}", *(f"{n}://{LOOPBACK}:{a}" for n, a in advertised.items())]
            ),
            **(self.sasl_ssl.broker_config() if self.sasl_ssl is not None else {}),
            "controller.quorum.voters": f"{NODE_ID}@{LOOPBACK}:{self.controller_port}",
            "log.dirs": str(self.data_dir),
            **self.extra_config,
        }

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        if self.alive:
            return self
        paths.require_jars(self.libs, "Kafka broker classpath")
        classpath = f"{self.libs}/*"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "log4j2.properties").write_text(_LOG4J2)
        began = time.monotonic()
        fresh = not (self.data_dir / "meta.properties").exists()
        # Ports picked by free_port() can be taken before the JVM binds them: retry with new ones.
        # A restart keeps its ports, so clients' bootstrap strings stay valid.
        for attempt in range(3):
            if fresh or not self.port:
                self.port, self.controller_port = _two_free_ports()
                self.listener_ports = {
                    name: _free_port_besides(self.port, self.controller_port) for name in self._listener_names()
                }
            self._write_config()
            if fresh:
                self._format(classpath)
                fresh = False
            self.process = ManagedProcess(
                [java_bin(), *self._jvm_opts(), "-cp", classpath, "kafka.Kafka", str(self.config_path)],
                log_path=self.log_path,
                name="kafka",
                die_with_parent=self.die_with_parent,
            ).start()
            try:
                self._wait_ready()
                break
            except BaseException as exc:
                # never leave a half-started JVM behind, whatever went wrong
                taken = isinstance(exc, RuntimeError) and "Address already in use" in self.process.log_tail(50)
                self.process.stop()
                if not taken or attempt == 2:
                    raise
                log.warning("kafka port taken, retrying", extra={"port": self.port})
                self.port = 0
        self.startup_seconds = time.monotonic() - began
        log.info("kafka ready", extra={"bootstrap": self.bootstrap, "seconds": round(self.startup_seconds, 2)})
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a clean shutdown, ~1-2 s), SIGKILL after ``timeout``."""
        if self.process is not None:
            self.process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, for tests of recovery after an unclean broker death."""
        if self.process is not None:
            self.process.kill(signal.SIGKILL)
            self.process.stop()  # reaps it and closes the log

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- admin ----------------------------------------------------------------------------------

    def admin(self, **overrides: Any) -> KafkaAdminClient:
        """A new admin client for this broker; the caller closes it."""
        return KafkaAdminClient(**{"bootstrap_servers": self.bootstrap, "request_timeout_ms": 10_000, **overrides})

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        *,
        config: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Create ``name`` and return once every partition has a leader (producible at once).

        Idempotent like a KafkaTopic resource: an existing topic with the same partition count is
        accepted (its config is left alone); a different count raises ValueError.
        """
        admin = self.admin()
        try:
            spec = {"num_partitions": partitions, "replication_factor": 1, "configs": dict(config or {})}
            try:
                admin.create_topics({name: spec}, timeout_ms=int(timeout * 1000))
            except TopicAlreadyExistsError:
                existing = len(admin.describe_topics([name])[0]["partitions"])
                if existing != partitions:
                    raise ValueError(f"topic {name} exists with {existing} partitions, not {partitions}") from None
            admin.wait_for_topics([name], timeout_ms=int(timeout * 1000))
        finally:
            admin.close()

    # --- internals ------------------------------------------------------------------------------

    def _jvm_opts(self) -> list[str]:
        return [
            f"-Xmx{self.heap}",
            # a small initial heap that grows as needed, and is given back after a collection (SerialGC
            # honours the free ratios): -Xms256m kept 256 MiB resident for a broker whose live set at
            # live rates is a few tens of MiB
            "-Xms32m",
            "-XX:MinHeapFreeRatio=10",
            "-XX:MaxHeapFreeRatio=30",
            # SerialGC: G1's parallel/concurrent threads buy nothing for a test broker on 2 cores
            "-XX:+UseSerialGC",
            # C1 only: no C2 compiler threads and their arenas, a smaller code cache; a single-node
            # test broker does not need C2's peak speed (as the format step above)
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.work_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.work_dir}",
        ]

    def _write_config(self) -> None:
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in self.config().items()))

    def _format(self, classpath: str) -> None:
        # With a static controller.quorum.voters, `format` needs no --standalone.
        self.cluster_id = random_cluster_id()
        scram = self.sasl_ssl.format_arguments() if self.sasl_ssl is not None else []
        cmd = [
            java_bin(),
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={self.work_dir / 'log4j2.properties'}",
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id,
            "-c",
            str(self.config_path),
            *scram,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        shown = cmd if self.sasl_ssl is None else [*cmd[: -len(scram)], *self.sasl_ssl.format_arguments(redacted=True)]
        with open(self.log_path, "a") as f:
            f.write(f"$ {' '.join(shown)}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            raise RuntimeError(f"kafka storage format failed ({result.returncode}):\n{result.stdout}{result.stderr}")

    def _wait_ready(self) -> None:
        assert self.process is not None
        wait_for(lambda: port_open(LOOPBACK, self.port), self.startup_timeout, "kafka listener", process=self.process)

        def registered() -> bool:
            # The listener opens before the broker has registered with the controller and been
            # unfenced; only then does metadata list it and can topics be created.
            admin = self.admin(request_timeout_ms=3000)
            try:
                brokers = admin.describe_cluster()["brokers"]
                return any(b["broker_id"] == NODE_ID and not b.get("is_fenced") for b in brokers)
            finally:
                admin.close()

        wait_for(
            registered,
            self.startup_timeout,
            "kafka broker registration",
            interval=0.2,
            process=self.process,
            retry_on=(KafkaError, OSError),
        )


def _two_free_ports() -> tuple[int, int]:
    while True:
        a, b = free_port(), free_port()
        if a != b:
            return a, b


def _free_port_besides(*taken: int) -> int:
    while (port := free_port()) in taken:
        pass
    return port


def _megabytes(size: str) -> int:
    units = {"k": 1 / 1024, "m": 1, "g": 1024}
    unit = size[-1].lower()
    return int(float(size[:-1]) * units[unit]) if unit in units else int(size) // (1 << 20)
