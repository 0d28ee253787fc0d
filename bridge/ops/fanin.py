"""One HTTP endpoint for the workers of ``--workers N``: the supervisor's ``/ping``, ``/ready``, ``/metrics``.

The supervisor (``bridge.run.workers``) serves the configured ``http`` section (address, ``root_path``
aliases) as a single process does; each worker serves on a free loopback port it reports through a
file (``bridge.ops.http``), which this server reads when it first needs it. Nothing is polled in the
background: every request asks the workers, concurrently, each within ``WORKER_TIMEOUT``.

- ``GET /ping``: ``200 pong`` while every worker process runs; ``503`` naming those that exited
  (so a liveness probe restarts the whole set).
- ``GET /ready``: ``200`` only when every worker's ``/ready`` is 200. The body has the single-process
  shape — ``ready``, ``checks`` (a check passes when it passes on every worker; ``workers_serving``:
  every worker answered), ``failing`` — plus ``workers``: each worker's own answer.
- ``GET /metrics``: every worker's page, each sample labelled ``worker="<i>"`` (families merged so that
  each is written once, as the text format requires), plus ``kafka_jetstream_bridge_workers`` (N) and
  ``kafka_jetstream_bridge_worker_up{worker}`` (1 when that worker's page was read). Per-worker series
  rather than sums: nothing is lost (latency quantiles cannot be added up), and ``sum()`` in a query
  gives the totals.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bridge.core.config import HttpSection
from bridge.ops.http import endpoints, listen, parse_address
from bridge.ops.metrics import PREFIX

log = structlog.get_logger("bridge.http")

WORKER_TIMEOUT = 3.0  # seconds a worker has to answer one request
CHECKS = ("nats_connected", "kafka_assigned", "commits_fresh")


@dataclass(slots=True)
class _Family:
    comments: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)


def _labelled(line: str, worker: int) -> str:
    """``name{a="b"} 1`` → ``name{worker="i",a="b"} 1``; ``name 1`` → ``name{worker="i"} 1``."""
    label = f'worker="{worker}"'
    brace, space = line.find("{"), line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        rest = line[brace + 1 :]
        return f"{line[:brace]}{{{label}{'' if rest.startswith('}') else ','}{rest}"
    return f"{line[:space]}{{{label}}}{line[space:]}"


def merge_pages(pages: Sequence[tuple[int, str]]) -> str:
    """Prometheus text pages of several workers → one page, each sample labelled with its worker."""
    families: dict[str, _Family] = {}
    for worker, text in pages:
        current: _Family | None = None
        for line in text.splitlines():
            if line.startswith(("# HELP ", "# TYPE ")):
                name = line.split(" ", 3)[2]
                current = families.setdefault(name, _Family())
                if len(current.comments) < 2 and line not in current.comments:
                    current.comments.append(line)
            elif line and not line.startswith("#"):
                if current is None:  # a sample without HELP/TYPE: its own family
                    current = families.setdefault(line.split("{", 1)[0].split(" ", 1)[0], _Family())
                current.samples.append(_labelled(line, worker))
    return "".join(line + "\n" for family in families.values() for line in family.comments + family.samples)


class FanIn:
    """The supervisor's HTTP server over ``workers`` processes. ``port_file(i)`` is where worker ``i``
    writes its port; ``exit_code(i)`` is its exit code once it has exited, else None."""

    def __init__(
        self,
        section: HttpSection,
        workers: int,
        port_file: Callable[[int], Path],
        exit_code: Callable[[int], int | None],
    ) -> None:
        self.section = section
        self.workers = workers
        self._port_file = port_file
        self._exit_code = exit_code
        self._ports: dict[int, int] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self.port = 0

    def app(self) -> web.Application:
        app = endpoints(self.section, self._ping, self._ready, self._metrics)
        app.on_cleanup.append(self._close_session)
        return app

    async def _close_session(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def start(self) -> None:
        host, port = parse_address(self.section.address)
        self._runner = await listen(self.app(), self.section.address, host, port)
        bound = self._runner.addresses
        self.port = int(bound[0][1]) if bound else port
        log.info("http_started", address=self.section.address, port=self.port, workers=self.workers)

    async def aclose(self) -> None:
        """Stop serving. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._runner is not None:
            await self._runner.cleanup()
            log.info("http_stopped", address=self.section.address)

    # ------------------------------------------------------------------ the workers

    def _port(self, worker: int) -> int | None:
        port = self._ports.get(worker)
        if port is None:
            try:
                text = self._port_file(worker).read_text()
            except FileNotFoundError:
                return None  # not serving yet
            port = self._ports[worker] = int(text)
        return port

    async def _ask(self, worker: int, path: str) -> tuple[int, str] | str:
        """(status, body) of worker ``worker``'s ``path``, or why it could not be asked."""
        code = self._exit_code(worker)
        if code is not None:
            return f"exited with code {code}"
        port = self._port(worker)
        if port is None:
            return "not serving yet"
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WORKER_TIMEOUT))
        try:
            async with self._session.get(f"http://127.0.0.1:{port}{path}") as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"unreachable: {exc.__class__.__name__} {exc}".strip()

    async def _ask_all(self, path: str) -> list[tuple[int, str] | str]:
        return list(await asyncio.gather(*(self._ask(i, path) for i in range(self.workers))))

    # ------------------------------------------------------------------ handlers

    async def _ping(self, request: web.Request) -> web.Response:
        exited = {i: code for i in range(self.workers) if (code := self._exit_code(i)) is not None}
        if exited:
            text = "; ".join(f"worker {i} exited with code {code}" for i, code in exited.items())
            return web.Response(text=text, status=503)
        return web.Response(text="pong")

    async def _ready(self, request: web.Request) -> web.Response:
        workers: list[dict[str, Any]] = []
        checks = dict.fromkeys(CHECKS, True)
        serving = True
        for worker, answer in enumerate(await self._ask_all("/ready")):
            if isinstance(answer, str):
                serving = False
                workers.append({"worker": worker, "ready": False, "error": answer})
                continue
            status, body = answer
            try:
                report = json.loads(body)
            except ValueError:
                report = {"ready": False, "error": f"HTTP {status}"}
            for name in CHECKS:
                checks[name] = checks[name] and bool(report.get("checks", {}).get(name, False))
            workers.append({"worker": worker, **report, "ready": status == 200})
        checks["workers_serving"] = serving
        ready = all(w["ready"] for w in workers)
        body_out = {
            "ready": ready,
            "checks": checks,
            "failing": [k for k, ok in checks.items() if not ok],
            "workers": workers,
        }
        return web.Response(
            text=json.dumps(body_out), status=200 if ready else 503, content_type="application/json"
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        answers = await self._ask_all("/metrics")
        pages = [(i, a[1]) for i, a in enumerate(answers) if not isinstance(a, str) and a[0] == 200]
        up = {i for i, _ in pages}
        own = [
            f"# HELP {PREFIX}workers Worker processes of this supervisor (--workers).\n",
            f"# TYPE {PREFIX}workers gauge\n",
            f"{PREFIX}workers {self.workers}\n",
            f"# HELP {PREFIX}worker_up 1 when the worker's /metrics was read for this scrape.\n",
            f"# TYPE {PREFIX}worker_up gauge\n",
            *(f'{PREFIX}worker_up{{worker="{i}"}} {1 if i in up else 0}\n' for i in range(self.workers)),
        ]
        body = "".join(own) + merge_pages(pages)
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE_LATEST})
