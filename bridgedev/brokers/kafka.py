"""Apache Kafka, the reference broker: KRaft mode, one combined broker+controller node on loopback
(``ApacheKafka``), or three of them in one cluster (``KafkaCluster``).

Owns fetching the distribution's ``libs/`` once (the ``org.apache.kafka:kafka_2.13`` artifact and its
runtime dependencies, with Maven: ``mvn dependency:copy-dependencies`` on the pom in
``bridgedev/resources``) into a cache outside the repository (``ensure_kafka_libs``), formatting the
storage (``kafka.tools.StorageTool format --standalone``), running ``kafka.Kafka`` with a small heap
and class data sharing (the JVM's start halves once an archive exists), extra listeners with their
own security protocols (``KafkaListener``), and readiness by the wire probe (``bridgedev.brokers.probe``).
A cluster's nodes share one cluster id and a static voter set (``controller.quorum.voters``); each is
formatted without ``--standalone``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import importlib.resources
import os
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import structlog

from bridgedev.brokers.probe import KafkaMetadata, kafka_metadata_probe
from bridgedev.brokers.process import HOST, Broker, free_port

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "KAFKA_JVM_FLAGS",
    "ApacheKafka",
    "KafkaCluster",
    "KafkaListener",
    "ensure_kafka_libs",
    "java_bin",
    "kafka_cache_dir",
]

log = structlog.get_logger("bridgedev.brokers")

_LOG_TAIL_LINES = 20
DEFAULT_KAFKA_VERSION = "4.4.0"

#: JVM flags for the Kafka broker: a small heap and the serial collector (a 2-core CI box has no use
#: for G1's concurrent threads), C1 only (``TieredStopAtLevel=1``: ~0.3 s / 10 % faster start here and
#: plenty for tests; a throughput benchmark may pass ``jvm_args=["-XX:TieredStopAtLevel=4"]`` to get C2
#: back, later flags win), no hsperfdata file in /tmp. Class data sharing (below) matters far more.
KAFKA_JVM_FLAGS: tuple[str, ...] = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Xshare:auto",
    "-Djava.awt.headless=true",
)
#: The same for the short-lived ``StorageTool format`` run.
_TOOL_JVM_FLAGS: tuple[str, ...] = (
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Xshare:auto",
)


def kafka_cache_dir() -> Path:
    """``$KJB_CACHE_DIR``, else ``~/.cache/kafka-jetstream-bridge``."""
    env = os.environ.get("KJB_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kafka-jetstream-bridge"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def ensure_kafka_libs(version: str = DEFAULT_KAFKA_VERSION) -> Path:
    """The directory of Kafka ``version``'s runtime jars, fetched with Maven on first use.

    The jars live in ``<cache>/kafka-<version>/libs``. An fcntl lock serialises parallel callers and a
    marker file (holding a hash of the pom, so editing the pom fetches again) makes later calls skip Maven.
    """
    pom_text = importlib.resources.files("bridgedev").joinpath("resources/kafka-pom.xml").read_text()
    digest = hashlib.sha256(pom_text.encode()).hexdigest()
    root = kafka_cache_dir() / f"kafka-{version}"
    libs = root / "libs"
    marker = root / "complete"

    def done() -> bool:
        return libs.is_dir() and marker.is_file() and marker.read_text().strip() == digest

    if done():
        return libs
    with _file_lock(kafka_cache_dir() / f"kafka-{version}.lock"):
        if done():
            return libs
        mvn = os.environ.get("MVN_BIN") or shutil.which("mvn")
        if not mvn:
            raise RuntimeError(
                "Maven (mvn) is needed once to fetch the Kafka jars; install it or set MVN_BIN"
            )
        root.mkdir(parents=True, exist_ok=True)
        pom = root / "pom.xml"
        pom.write_text(pom_text)
        staging = root / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        began = time.monotonic()
        log.info("kafka.fetching_jars", version=version, into=str(libs))
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
            f"-Dkafka.version={version}",
        ]
        result = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not any(staging.glob("kafka_*.jar")):
            output = "\n".join((result.stdout + result.stderr).splitlines()[-_LOG_TAIL_LINES:])
            raise RuntimeError(
                f"fetching Kafka {version} with Maven failed (exit code {result.returncode}):\n{output}"
            )
        shutil.rmtree(libs, ignore_errors=True)
        for stale in root.glob("cds-*"):  # built against the jars being replaced
            stale.unlink(missing_ok=True)
        staging.rename(libs)
        shutil.rmtree(root / "target", ignore_errors=True)
        marker.write_text(digest + "\n")
        log.info("kafka.jars_fetched", version=version, seconds=round(time.monotonic() - began, 1))
    return libs


def java_bin() -> str:
    """``$JAVA_HOME/bin/java``, else ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise RuntimeError("java not found (Apache Kafka needs Java 17+): install a JDK or set JAVA_HOME")
    return found


def _kafka_uuid() -> str:
    """A random id in Kafka's ``Uuid`` text form (what ``StorageTool random-uuid`` prints)."""
    while True:
        text = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


@dataclass(frozen=True)
class KafkaListener:
    """An extra named listener, e.g. ``KafkaListener("SASL_PLAINTEXT", "SASL_PLAINTEXT")`` or
    ``KafkaListener("EXTERNAL", "SASL_SSL")``. Its mechanisms/JAAS/keystores go into
    ``extra_properties`` under ``listener.name.<name lowercased>.…``."""

    name: str
    security_protocol: str
    port: int = field(default_factory=free_port)


_LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <File name="file" fileName="{path}" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
    <!-- the full "... values:" dumps of every config object: thousands of lines per start -->
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="WARN"/>
    <Root level="INFO">
      <AppenderRef ref="file"/>
    </Root>
  </Loggers>
</Configuration>
"""


class ApacheKafka(Broker):
    """Apache Kafka in KRaft mode: one combined broker+controller node on 127.0.0.1.

    ``extra_properties`` are merged over the generated ``server.properties``; ``extra_listeners`` add
    named listeners with their own ports and security protocols (see :meth:`listener_bootstrap`), e.g.::

        sasl = KafkaListener("SASL_PLAINTEXT", "SASL_PLAINTEXT")
        ApacheKafka(extra_listeners=[sasl], extra_properties={
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config":
                'org.apache.kafka.common.security.plain.PlainLoginModule required '
                'user_alice="alice-secret";',
        })

    The log dir is formatted on the first start only; ``restart()`` (and ``kill()`` + ``start()``) reuse
    the ports and the data, so topics and committed offsets survive. A caller-passed ``log_dir`` is kept
    after ``stop()``; a new instance can reuse it if it is given the same ``controller_port`` (the KRaft
    voter set stores that endpoint). ``log_path`` is the broker's log4j log (INFO, config dumps muted).
    """

    kind = "kafka"
    default_stop_timeout = 30.0
    error_markers = (" ERROR ", " FATAL ")

    def __init__(
        self,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        log_dir: Path | None = None,
        version: str = DEFAULT_KAFKA_VERSION,
        extra_properties: Mapping[str, str] | None = None,
        extra_listeners: Sequence[KafkaListener] = (),
        jvm_args: Sequence[str] = (),
        format_args: Sequence[str] = (),
        node_id: int = 1,
        class_data_sharing: bool = True,
        quorum_voters: str | None = None,
        cluster_id: str | None = None,
    ) -> None:
        names = {"PLAINTEXT", "CONTROLLER"}
        for listener in extra_listeners:
            if listener.name.upper() in names:
                raise ValueError(f"duplicate Kafka listener name {listener.name!r}")
            names.add(listener.name.upper())
        super().__init__("kafka")
        self.version = version
        self.port = port if port is not None else free_port()
        self.controller_port = controller_port if controller_port is not None else free_port()
        self.log_dir = Path(log_dir) if log_dir is not None else self._work_dir / "data"
        self.extra_properties = dict(extra_properties or {})
        self.extra_listeners = list(extra_listeners)
        self.jvm_args = list(jvm_args)  # after KAFKA_JVM_FLAGS, so they win
        self.format_args = list(format_args)  # e.g. ["--add-scram", "SCRAM-SHA-256=[name=u,password=p]"]
        self.node_id = node_id
        self.class_data_sharing = class_data_sharing
        # a static voter set ("1@host:port,2@host:port,..."): a member of a KafkaCluster; None: standalone
        self.quorum_voters = quorum_voters
        self.cluster_id = cluster_id
        self._cds_pending: Path | None = None
        self._served = False  # the current process has answered a Metadata request
        self.config_path = self._work_dir / "server.properties"
        self.log4j_path = self._work_dir / "log4j2.xml"
        self.log_path = self._work_dir / "server.log"
        self._libs: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def listener_port(self, name: str) -> int:
        """The port of a listener by name (``PLAINTEXT``, ``CONTROLLER`` or an extra one)."""
        upper = name.upper()
        if upper == "PLAINTEXT":
            return self.port
        if upper == "CONTROLLER":
            return self.controller_port
        for listener in self.extra_listeners:
            if listener.name.upper() == upper:
                return listener.port
        raise KeyError(name)

    def listener_bootstrap(self, name: str) -> str:
        return f"{HOST}:{self.listener_port(name)}"

    def start(self, timeout: float = 90) -> Self:
        return super().start(timeout)

    def properties(self) -> dict[str, str]:
        """The ``server.properties`` this broker runs with."""
        client_listeners = [("PLAINTEXT", "PLAINTEXT", self.port)] + [
            (lst.name.upper(), lst.security_protocol.upper(), lst.port) for lst in self.extra_listeners
        ]
        all_listeners = [*client_listeners, ("CONTROLLER", "PLAINTEXT", self.controller_port)]
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "listeners": ",".join(f"{n}://{HOST}:{p}" for n, _, p in all_listeners),
            "advertised.listeners": ",".join(f"{n}://{HOST}:{p}" for n, _, p in client_listeners),
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": ",".join(f"{n}:{proto}" for n, proto, _ in all_listeners),
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
        }
        if self.quorum_voters:
            props["controller.quorum.voters"] = self.quorum_voters
        else:
            props["controller.quorum.bootstrap.servers"] = f"{HOST}:{self.controller_port}"
        props.update(self.extra_properties)
        return props

    def _java_cmd(self, main: str, *args: str, flags: Sequence[str]) -> list[str]:
        assert self._libs is not None
        return [
            java_bin(),
            *flags,
            f"-Dlog4j2.configurationFile={self.log4j_path}",
            "-cp",
            f"{self._libs}/*",
            main,
            *args,
        ]

    def _prepare(self) -> None:
        self._libs = ensure_kafka_libs(self.version)
        props = self.properties()
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self.log4j_path.write_text(_LOG4J2_XML.format(path=self.log_path))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if (self.log_dir / "meta.properties").exists():
            return  # formatted before: keep the data (restart)
        cluster_id = self.cluster_id or _kafka_uuid()
        standalone = [] if self.quorum_voters else ["--standalone"]
        cmd = self._java_cmd(
            "kafka.tools.StorageTool",
            "format",
            *standalone,
            "-t",
            cluster_id,
            "-c",
            str(self.config_path),
            *self.format_args,
            flags=[*_TOOL_JVM_FLAGS, *self._cds_read_flags()],
        )
        began = time.monotonic()
        result = subprocess.run(cmd, cwd=self._work_dir, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-_LOG_TAIL_LINES:])
            raise RuntimeError(f"kafka storage format failed (exit code {result.returncode}):\n{output}")
        log.debug("kafka.formatted", cluster_id=cluster_id, seconds=round(time.monotonic() - began, 2))

    def _command(self) -> list[str]:
        flags = [
            *KAFKA_JVM_FLAGS,
            f"-XX:ErrorFile={self._work_dir}/hs_err_%p.log",
            *self._cds_flags(),
            *self.jvm_args,
        ]
        return self._java_cmd("kafka.Kafka", str(self.config_path), flags=flags)

    # Class data sharing: the JVM spends most of Kafka's ~3 s start loading and verifying ~5k classes.
    # The first broker that exits gracefully dumps the classes it loaded into a dynamic CDS archive next
    # to the jars; later starts map that archive and come up in about half the time. The JVM validates
    # the archive itself (JDK build, class path, jar mtimes) and silently ignores one that does not fit.

    def _cds_archive(self) -> Path | None:
        if not self.class_data_sharing or os.environ.get("KJB_KAFKA_CDS", "1") in ("0", "false", "no"):
            return None
        if self._libs is None:
            return None
        java = Path(os.path.realpath(java_bin()))
        with contextlib.suppress(OSError):
            key = f"{java}:{java.stat().st_mtime_ns}:{self._libs.stat().st_mtime_ns}"
            return self._libs.parent / f"cds-{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsa"
        return None

    def _cds_read_flags(self) -> list[str]:
        archive = self._cds_archive()
        if archive is None or not archive.is_file():
            return []
        return [f"-XX:SharedArchiveFile={archive}", "-Xlog:cds*=error"]

    def _cds_flags(self) -> list[str]:
        self._cds_pending = None
        self._served = False
        if read := self._cds_read_flags():
            return read
        archive = self._cds_archive()
        if archive is None:
            return []
        for stale in archive.parent.glob("cds-*.partial"):  # from a parent that died mid-run
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > 3600:
                    stale.unlink()
        self._cds_pending = archive.with_name(f"{archive.stem}.{os.getpid()}.{id(self):x}.partial")
        # -Xlog: the dump lists thousands of skipped classes as warnings
        return [f"-XX:ArchiveClassesAtExit={self._cds_pending}", "-Xlog:cds*=error"]

    def _exited(self, returncode: int) -> None:
        pending, self._cds_pending = self._cds_pending, None
        if pending is None or not pending.is_file():
            return
        # SIGKILL: maybe in the middle of writing it; never ready: it holds only part of the classes
        if returncode == -signal.SIGKILL or not self._served:
            pending.unlink(missing_ok=True)
            return
        with contextlib.suppress(OSError):
            pending.replace(pending.with_name(pending.name.split(".", 1)[0] + ".jsa"))
            log.debug("kafka.cds_archive_written", path=str(pending.parent))

    def _log_files(self) -> list[Path]:
        return [self.log_path, self.stderr_path, self.stdout_path]

    def _describe(self) -> dict[str, Any]:
        return {"bootstrap": self.bootstrap, "version": self.version}

    def _is_ready(self) -> bool:
        self._served = bool(kafka_metadata_probe(HOST, self.port, timeout=2.0).brokers)
        return self._served


class KafkaCluster:
    """``n`` Apache Kafka nodes (KRaft, each a combined broker+controller) on 127.0.0.1, one cluster.

    The voter set is static (``controller.quorum.voters``, every node's controller port), the cluster id
    is formatted into every node's log directory, and the defaults are those of a cluster that must
    not lose an acknowledged write to one node's loss: ``default.replication.factor`` ``n``,
    ``min.insync.replicas`` ``min_insync`` (2), the internal topics (offsets, transactions, share state)
    at replication ``n`` with ``min.isr`` ``min_insync``. Nodes are ``ApacheKafka`` objects in
    :attr:`nodes` (node ids 1..n); ``kill_node(i)`` / ``start_node(i)`` bring one down and back on the
    same ports with its data; :meth:`leader` names the node leading a partition, from the wire probe.
    """

    def __init__(
        self,
        n: int = 3,
        *,
        min_insync: int = 2,
        extra_properties: Mapping[str, str] | None = None,
        version: str = DEFAULT_KAFKA_VERSION,
    ) -> None:
        if n < 1 or not 1 <= min_insync <= n:
            raise ValueError(f"a cluster of {n} nodes with min.insync.replicas {min_insync}")
        self.cluster_id = _kafka_uuid()
        controller_ports = [free_port() for _ in range(n)]
        voters = ",".join(f"{i + 1}@{HOST}:{port}" for i, port in enumerate(controller_ports))
        rf, isr = str(n), str(min_insync)
        props = {
            "default.replication.factor": rf,
            "min.insync.replicas": isr,
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            "unclean.leader.election.enable": "false",
            **(extra_properties or {}),
        }
        self.nodes = [
            ApacheKafka(
                node_id=i + 1,
                controller_port=controller_ports[i],
                quorum_voters=voters,
                cluster_id=self.cluster_id,
                extra_properties=props,
                version=version,
            )
            for i in range(n)
        ]

    @property
    def bootstrap(self) -> str:
        """Every node's address, comma-joined (what aiokafka and the bridge's ``seed_brokers`` accept)."""
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def running(self) -> bool:
        return all(node.running for node in self.nodes)

    def start(self, timeout: float = 120) -> Self:
        """Start every node at once (a quorum needs a majority before any broker registers) and wait
        until each answers Metadata and the first lists every broker."""
        began = time.monotonic()
        deadline = began + timeout
        started: list[ApacheKafka] = []
        try:
            for node in self.nodes:
                if not node.running:
                    node._launch()
                    started.append(node)
            for node in started:
                node._wait_ready(deadline, timeout)
            self.wait_brokers(len(self.nodes), within=max(1.0, deadline - time.monotonic()))
        except BaseException:
            for node in started:
                node.kill()
            raise
        log.info(
            "kafka_cluster.started",
            nodes=len(self.nodes),
            bootstrap=self.bootstrap,
            seconds=round(time.monotonic() - began, 2),
        )
        return self

    def stop(self, timeout: float = 30) -> None:
        for node in self.nodes:
            node._terminate()
        for node in self.nodes:
            node.stop(timeout=timeout)

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index`` (0-based) and wait for its exit; its data stays."""
        self.nodes[index].kill()

    def start_node(self, index: int, timeout: float = 90) -> ApacheKafka:
        return self.nodes[index].start(timeout=timeout)

    def metadata(self) -> KafkaMetadata:
        """The cluster's metadata, from the first running node that answers."""
        problems = []
        for node in self.nodes:
            if node.running:
                try:
                    return kafka_metadata_probe(HOST, node.port, timeout=2.0)
                except (OSError, ValueError, struct.error) as exc:
                    problems.append(f"{node.bootstrap}: {exc}")
        raise RuntimeError(f"no Kafka node answered Metadata: {problems or 'none running'}")

    def index_of(self, node_id: int) -> int:
        for i, node in enumerate(self.nodes):
            if node.node_id == node_id:
                return i
        raise KeyError(node_id)

    def leader(self, topic: str, partition: int) -> int | None:
        """The index in :attr:`nodes` of ``partition``'s leader, None while it has none."""
        found = self.metadata().partitions.get((topic, partition))
        if found is None or found.leader < 0:
            return None
        return self.index_of(found.leader)

    def in_sync(self, topic: str, partition: int) -> list[int]:
        """The indexes in :attr:`nodes` of ``partition``'s in-sync replicas."""
        found = self.metadata().partitions.get((topic, partition))
        return [] if found is None else sorted(self.index_of(n) for n in found.isr)

    def wait_brokers(self, n: int, within: float = 60) -> None:
        """Until the metadata lists ``n`` brokers (a restarted node registered again)."""
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(RuntimeError):
                if len(self.metadata().brokers) >= n:
                    return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the Kafka cluster did not list {n} brokers within {within:g} s")
            time.sleep(0.1)

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
