"""The HTTP server of ``run`` and ``backfill``: ``/ping``, ``/ready``, ``/metrics``.

Configured as in Redpanda Connect by the top-level ``http:`` section (``enabled``, ``address``
default ``0.0.0.0:4195``, ``root_path`` default ``/benthos``: every endpoint answers both at
``/<name>`` and ``<root_path>/<name>``). It runs as aiohttp handlers in the run's own event loop,
so handlers read the pipeline's state directly, without locks, and never block.

- ``GET /ping``: alive; ``200 pong`` as soon as the process serves HTTP.
- ``GET /ready``: ``200`` only while NATS is connected, the consumer holds its partitions and
  commits are not stale (``Pipeline.health()``); otherwise ``503``. The body is JSON either way:
  ``{"ready": false, "checks": {...}, "failing": ["nats_connected"]}``.
- ``GET /metrics``: Prometheus text format: ``bridge.ops.metrics`` and Redpanda Connect's standard
  names (``bridge.ops.connect_metrics``), read at scrape time.

``serving()`` starts the server before the pipeline connects (so ``/ping`` answers during start-up
and ``/ready`` says why it is not ready yet) and stops it after the run. An address that cannot be
bound is ``HttpServerError`` (exit code 1) before anything connects, saying how to fix it: another
``http.address``, or ``http.enabled: false``.

A worker of ``--workers N`` (``bridge.run.workers``) does not serve the configured address: it binds a
free port on 127.0.0.1 and writes it to the file ``$KJB_WORKER_HTTP_FILE`` names, and the supervisor
serves the one endpoint for all of them (``bridge.ops.fanin``).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.core.config import HttpSection
from bridge.core.errors import HttpServerError
from bridge.ops import connect_metrics
from bridge.ops.metrics import Observed, registry_for
from bridge.run.workers import WORKER_HTTP_ENV

log = structlog.get_logger("bridge.http")

FIX = "set http.address to a free host:port, or http.enabled: false to serve no HTTP"


def parse_address(address: str) -> tuple[str | None, int]:
    """``"0.0.0.0:4195"``, ``":4195"`` (every interface), ``"[::1]:4195"`` → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise HttpServerError(address, "expected host:port, such as 0.0.0.0:4195")
    host = host.strip("[]")
    return (host or None), int(port)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def endpoints(section: HttpSection, ping: Handler, ready: Handler, metrics: Handler) -> web.Application:
    """``/ping``, ``/ready`` and ``/metrics``, also under ``http.root_path`` when one is set (the worker's
    server and the ``--workers`` supervisor's alike)."""
    app = web.Application()
    root = "/" + section.root_path.strip("/") if section.root_path.strip("/") else ""
    for name, handler in (("ping", ping), ("ready", ready), ("metrics", metrics)):
        app.router.add_get(f"/{name}", handler)
        if root:
            app.router.add_get(f"{root}/{name}", handler)
    return app


class HttpServer:
    def __init__(self, section: HttpSection, pipeline: Observed, mode: str = "") -> None:
        self.section = section
        self._pipeline = pipeline
        self._registry = registry_for(pipeline, mode)
        self._runner: web.AppRunner | None = None
        self._closed = False
        self.port = 0

    def _app(self) -> web.Application:
        return endpoints(self.section, self._ping, self._ready, self._metrics)

    async def start(self) -> None:
        host, port = parse_address(self.section.address)
        report_to = os.environ.get(WORKER_HTTP_ENV)
        if report_to:
            host, port = "127.0.0.1", 0  # a worker: the supervisor serves the configured address
        self._runner = await listen(self._app(), self.section.address, host, port)
        bound = self._runner.addresses
        self.port = int(bound[0][1]) if bound else port
        if report_to:
            _report_port(report_to, self.port)
        address = f"{host}:{self.port}" if report_to else self.section.address
        log.info("http_started", address=address, port=self.port)

    async def aclose(self) -> None:
        """Stop serving. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._runner is not None:
            await self._runner.cleanup()
            log.info("http_stopped", address=self.section.address)

    # ------------------------------------------------------------------ handlers

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong")

    async def _ready(self, request: web.Request) -> web.Response:
        health = self._pipeline.health()
        checks = {
            "nats_connected": health.nats_connected,
            "kafka_assigned": health.kafka_assigned,
            "commits_fresh": health.commits_fresh,
        }
        body = {"ready": health.ready, "checks": checks, "failing": [k for k, ok in checks.items() if not ok]}
        return web.Response(
            text=json.dumps(body), status=200 if health.ready else 503, content_type="application/json"
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._registry) + connect_metrics.render(self._pipeline)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _report_port(path: str, port: int) -> None:
    """Write ``port`` to ``path`` for the supervisor, whole or not at all (it never reads half a number)."""
    with open(path + ".tmp", "w") as out:
        out.write(str(port))
    os.replace(path + ".tmp", path)


async def listen(app: web.Application, address: str, host: str | None, port: int) -> web.AppRunner:
    """Serve ``app`` on ``host:port``; a failure to bind is ``HttpServerError`` saying how to fix it."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise HttpServerError(address, f"{exc.strerror or exc}; {FIX}") from exc
    return runner


@asynccontextmanager
async def serving(
    section: HttpSection, pipeline: Observed, mode: str = ""
) -> AsyncIterator[HttpServer | None]:
    """Serve ``pipeline``'s endpoints for the duration of the block (nothing when ``enabled: false``)."""
    if not section.enabled:
        yield None
        return
    server = HttpServer(section, pipeline, mode)
    await server.start()
    try:
        yield server
    finally:
        await server.aclose()
