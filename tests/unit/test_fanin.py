"""``bridge.ops.fanin``: the supervisor's one endpoint over ``--workers N``, in front of real worker HTTP
servers (``bridge.ops.http``) over fake pipelines: /ready only when every worker is, /ping while every
worker runs, /metrics with a ``worker`` label on every sample; the worker side (a loopback port written
to its file); an address in use names the fix."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.core.config import HttpSection
from bridge.core.errors import HttpServerError
from bridge.ops.fanin import FanIn, merge_pages
from bridge.ops.http import HttpServer
from bridge.run.pipeline import Health
from bridge.run.workers import WORKER_HTTP_ENV
from tests.support import exposed
from tests.unit.test_metrics import READY, STATS, FakePipeline


def test_merged_pages_write_each_family_once_with_the_worker_label() -> None:
    a = '# HELP x_total X.\n# TYPE x_total counter\nx_total 1.0\n# HELP y Y.\n# TYPE y gauge\ny{t="a"} 2\n'
    b = '# HELP x_total X.\n# TYPE x_total counter\nx_total 3.0\n# HELP y Y.\n# TYPE y gauge\ny{t="a"} 4\n'
    assert merge_pages([(0, a), (1, b)]) == (
        '# HELP x_total X.\n# TYPE x_total counter\nx_total{worker="0"} 1.0\nx_total{worker="1"} 3.0\n'
        '# HELP y Y.\n# TYPE y gauge\ny{worker="0",t="a"} 2\ny{worker="1",t="a"} 4\n'
    )


@dataclass
class Workers:
    pipelines: list[FakePipeline]
    dir: Path
    exited: dict[int, int]


@pytest.fixture
async def workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Workers]:
    """Two worker HTTP servers as ``--workers 2`` starts them: each on a loopback port written to its file."""
    pipelines = [FakePipeline(STATS, READY), FakePipeline(STATS, READY)]
    servers = []
    for i, pipeline in enumerate(pipelines):
        monkeypatch.setenv(WORKER_HTTP_ENV, str(tmp_path / f"w{i}"))
        server = HttpServer(HttpSection(address="0.0.0.0:4195"), pipeline, "continuous")
        await server.start()  # not 4195: a free loopback port, written to the file
        assert (tmp_path / f"w{i}").read_text() == str(server.port) != "4195"
        servers.append(server)
    try:
        yield Workers(pipelines, tmp_path, {})
    finally:
        for server in servers:
            await server.aclose()


async def client_for(w: Workers, n: int = 2) -> TestClient:
    fanin = FanIn(HttpSection(address="127.0.0.1:0"), n, lambda i: w.dir / f"w{i}", w.exited.get)
    client = TestClient(TestServer(fanin.app()))
    await client.start_server()
    return client


async def test_ready_only_when_every_worker_is(workers: Workers) -> None:
    client = await client_for(workers)
    try:
        resp = await client.get("/ready")
        assert resp.status == 200
        body = json.loads(await resp.text())
        assert body["ready"] is True
        assert body["failing"] == []
        assert [w["worker"] for w in body["workers"]] == [0, 1]

        workers.pipelines[1].state = Health(nats_connected=False, kafka_assigned=True, commits_fresh=True)
        resp = await client.get("/benthos/ready")  # the root_path alias, as a single process has
        assert resp.status == 503
        body = json.loads(await resp.text())
        assert body["failing"] == ["nats_connected"]
        assert body["checks"]["kafka_assigned"] is True
        assert body["workers"][0]["ready"] is True
        assert body["workers"][1]["failing"] == ["nats_connected"]
    finally:
        await client.close()


async def test_a_worker_not_serving_yet_or_exited(workers: Workers) -> None:
    client = await client_for(workers, n=3)  # worker 2 has written no port yet
    try:
        resp = await client.get("/ready")
        assert resp.status == 503
        body = json.loads(await resp.text())
        assert body["failing"] == ["workers_serving"]
        assert body["workers"][2] == {"worker": 2, "ready": False, "error": "not serving yet"}
        assert (await client.get("/ping")).status == 200

        workers.exited[2] = 1
        resp = await client.get("/ping")
        assert (resp.status, await resp.text()) == (503, "worker 2 exited with code 1")
        body = json.loads(await (await client.get("/ready")).text())
        assert body["workers"][2]["error"] == "exited with code 1"
    finally:
        await client.close()


async def test_metrics_of_every_worker_with_its_label(workers: Workers) -> None:
    workers.pipelines[1].stats = STATS.__class__(**{**_fields(STATS), "consumed": 7})
    client = await client_for(workers, n=3)
    try:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    finally:
        await client.close()
    got = exposed(text)
    prefix = "kafka_jetstream_bridge_"
    assert got[(prefix + "records_consumed_total", frozenset({("worker", "0")}))] == 125
    assert got[(prefix + "records_consumed_total", frozenset({("worker", "1")}))] == 7
    inp = {("label", "kafka_in"), ("path", "root.input")}
    assert got[("input_received", frozenset({("worker", "1"), *inp}))] == 7
    assert got[(prefix + "workers", frozenset())] == 3
    assert [got[(prefix + "worker_up", frozenset({("worker", str(i))}))] for i in range(3)] == [1, 1, 0]
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))  # one family, one group


def _fields(stats: object) -> dict[str, object]:
    return {name: getattr(stats, name) for name in stats.__slots__}  # type: ignore[attr-defined]


async def test_an_address_in_use_says_how_to_fix_it(workers: Workers) -> None:
    first = FanIn(HttpSection(address="127.0.0.1:0"), 1, lambda i: workers.dir / "w0", workers.exited.get)
    await first.start()
    try:
        taken = FanIn(
            HttpSection(address=f"127.0.0.1:{first.port}"), 1, lambda i: workers.dir, workers.exited.get
        )
        with pytest.raises(HttpServerError) as caught:
            await taken.start()
        message = str(caught.value)
        assert f"127.0.0.1:{first.port}" in message
        assert "set http.address to a free host:port, or http.enabled: false" in message
    finally:
        await first.aclose()
        await first.aclose()  # idempotent
