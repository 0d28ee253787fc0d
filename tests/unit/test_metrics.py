"""``bridge.ops.metrics``, ``bridge.ops.connect_metrics`` and ``bridge.ops.http`` against a fake pipeline:
exact values, the histogram's buckets, Redpanda Connect's names, types and labels, /ready's status and
body, the root_path aliases, address parsing, the message of an address in use."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bridge.core.config import HttpSection
from bridge.core.errors import HttpServerError
from bridge.jetstream.publisher import SinkStats
from bridge.ops import connect_metrics
from bridge.ops.connect_metrics import NAMES
from bridge.ops.http import HttpServer, parse_address
from bridge.ops.latency import LatencyHistogram
from bridge.ops.metrics import PREFIX, registry_for
from bridge.run.pipeline import Health, PipelineStats


@dataclass
class FakeSink:
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


@dataclass
class FakePipeline:
    stats: PipelineStats
    state: Health
    sink: FakeSink | None = field(default_factory=FakeSink)
    labels: tuple[str, str] = ("kafka_in", "")
    input_latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def statistics(self) -> PipelineStats:
        return self.stats

    def health(self) -> Health:
        return self.state


SINK = SinkStats(in_flight=7, sent=130, acked=120, duplicates=4, resent=10, timeouts=2, failures=3,
                 reconnects=1, reorders=0, connected=True, connects=2, connect_failures=5, losses=1)  # fmt: skip
STATS = PipelineStats(
    consumed=125, dead_lettered=1, commits=6, commit_failures=1, commit_seconds=0.3, outstanding=5,
    partitions=2, stopped=0, lag={("orders", 0): 3, ("orders", 1): 0}, sink=SINK,
)  # fmt: skip
READY = Health(nats_connected=True, kafka_assigned=True, commits_fresh=True)


def samples(pipeline: FakePipeline) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry_for(pipeline, "continuous")).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name.removeprefix(PREFIX), tuple(sorted(s.labels.items())))] = s.value
    return out


def test_every_metric_reads_the_snapshot() -> None:
    pipeline = FakePipeline(STATS, READY)
    for seconds in (0.0004, 0.003, 0.003, 0.2, 30.0):
        pipeline.sink.latency.observe(seconds)  # type: ignore[union-attr]
    got = samples(pipeline)
    expected = {
        "records_consumed_total": 125, "records_published_total": 120, "records_acked_total": 120,
        "records_duplicates_total": 4, "records_dead_lettered_total": 1, "publishes_resent_total": 10,
        "publish_timeouts_total": 2, "publish_failures_total": 3, "order_violations_total": 0,
        "nats_reconnects_total": 1, "commits_total": 6, "commit_failures_total": 1,
        "commit_latency_seconds_count": 6, "commit_latency_seconds_sum": 0.3, "in_flight": 7, "outstanding": 5,
        "partitions_assigned": 2, "partitions_stopped": 0, "nats_connected": 1, "ready": 1,
        "publish_latency_seconds_count": 5,
    }  # fmt: skip
    for name, value in expected.items():
        assert got[(name, ())] == pytest.approx(value), name
    assert got[("kafka_lag", (("partition", "0"), ("topic", "orders")))] == 3
    assert got[("kafka_lag", (("partition", "1"), ("topic", "orders")))] == 0
    assert got[("info", (("mode", "continuous"), ("version", "0.1.0")))] == 1
    assert got[("health_check", (("check", "commits_fresh"),))] == 1
    # Cumulative buckets from the sink's per-bucket counts.
    bucket = {
        dict(labels)["le"]: v for (name, labels), v in got.items() if name == "publish_latency_seconds_bucket"
    }
    assert (bucket["0.0005"], bucket["0.0025"], bucket["0.005"], bucket["0.25"], bucket["10.0"]) == (
        1,
        1,
        3,
        4,
        4,
    )
    assert bucket["+Inf"] == 5
    assert got[("publish_latency_seconds_sum", ())] == pytest.approx(30.2064)
    assert ("process_cpu_seconds_total", ()) in got  # the process collector rides along


def test_before_the_pipeline_started() -> None:
    idle = PipelineStats(0, 0, 0, 0, 0.0, 0, 0, 0, {}, None)
    got = samples(FakePipeline(idle, Health(False, False, True), sink=None))
    assert got[("records_acked_total", ())] == 0
    assert got[("ready", ())] == 0
    assert got[("health_check", (("check", "nats_connected"),))] == 0
    assert got[("publish_latency_seconds_count", ())] == 0
    assert not [k for k in got if k[0] == "kafka_lag"]


async def client_for(pipeline: FakePipeline, root_path: str = "/benthos") -> TestClient:
    server = HttpServer(HttpSection(address="127.0.0.1:0", root_path=root_path), pipeline, "backfill")
    client = TestClient(TestServer(server._app()))
    await client.start_server()
    return client


async def test_ready_reports_the_failing_checks() -> None:
    pipeline = FakePipeline(STATS, Health(nats_connected=False, kafka_assigned=True, commits_fresh=False))
    client = await client_for(pipeline)
    try:
        resp = await client.get("/ready")
        assert resp.status == 503
        assert resp.content_type == "application/json"
        body = json.loads(await resp.text())
        assert body == {
            "ready": False,
            "checks": {"nats_connected": False, "kafka_assigned": True, "commits_fresh": False},
            "failing": ["nats_connected", "commits_fresh"],
        }
        pipeline.state = READY
        resp = await client.get("/benthos/ready")  # Redpanda Connect's root_path alias
        assert resp.status == 200
        assert json.loads(await resp.text())["failing"] == []
        resp = await client.get("/ping")
        assert (resp.status, await resp.text()) == (200, "pong")
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        assert f"{PREFIX}records_consumed_total 125.0" in await resp.text()
        assert (await client.get("/nope")).status == 404
    finally:
        await client.close()


async def test_no_root_path_alias_when_empty() -> None:
    client = await client_for(FakePipeline(STATS, READY), root_path="")
    try:
        assert (await client.get("/ping")).status == 200
        assert (await client.get("/benthos/ping")).status == 404
    finally:
        await client.close()


async def test_binds_and_reports_its_port() -> None:
    server = HttpServer(HttpSection(address="127.0.0.1:0"), FakePipeline(STATS, READY))
    await server.start()
    try:
        assert server.port > 0
        taken = HttpServer(HttpSection(address=f"127.0.0.1:{server.port}"), FakePipeline(STATS, READY))
        with pytest.raises(HttpServerError, match=f"127.0.0.1:{server.port}") as caught:
            await taken.start()
        assert str(caught.value).endswith(
            "set http.address to a free host:port, or http.enabled: false to serve no HTTP"
        )
    finally:
        await server.aclose()
        await server.aclose()  # idempotent


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("0.0.0.0:4195", ("0.0.0.0", 4195)),
        (":4195", (None, 4195)),
        ("[::1]:8080", ("::1", 8080)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_parse_address(address: str, expected: tuple[str | None, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["4195", "host:", "host:http", "host:70000"])
def test_parse_address_rejects(address: str) -> None:
    with pytest.raises(HttpServerError, match="expected host:port"):
        parse_address(address)


# ----------------------------------------------------------------------------------- Redpanda Connect's names

INPUT = 'label="kafka_in",path="root.input"'
OUTPUT = 'label="",path="root.output"'


async def test_redpanda_connect_names_types_and_labels() -> None:
    """As Redpanda Connect's Prometheus exporter writes them: counters without ``_total``, timers as
    nanosecond summaries with quantiles 0.5/0.9/0.99, labels ``label`` and ``path``."""
    pipeline = FakePipeline(STATS, READY)
    for ms in range(1, 101):  # 1..100 ms
        pipeline.input_latency.observe(ms / 1000)
    pipeline.sink.latency.observe(0.002)  # type: ignore[union-attr]
    client = await client_for(pipeline)
    try:
        text = await (await client.get("/metrics")).text()
    finally:
        await client.close()
    lines = set(text.splitlines())
    for line in [
        "# TYPE input_received counter",
        f"input_received{{{INPUT}}} 125",
        "# TYPE input_latency_ns summary",
        f'input_latency_ns{{{INPUT},quantile="0.5"}} 50000000',
        f'input_latency_ns{{{INPUT},quantile="0.9"}} 90000000',
        f'input_latency_ns{{{INPUT},quantile="0.99"}} 99000000',
        f"input_latency_ns_count{{{INPUT}}} 100",
        f"input_latency_ns_sum{{{INPUT}}} 5050000000",
        "# TYPE output_sent counter",
        f"output_sent{{{OUTPUT}}} 120",
        f"output_batch_sent{{{OUTPUT}}} 120",
        f"output_error{{{OUTPUT}}} 3",
        f'output_latency_ns{{{OUTPUT},quantile="0.99"}} 2000000',
        f"output_latency_ns_count{{{OUTPUT}}} 1",
        f"output_connection_up{{{OUTPUT}}} 2",
        f"output_connection_lost{{{OUTPUT}}} 1",
        f"output_connection_failed{{{OUTPUT}}} 5",
    ]:
        assert line in lines, line
    assert "input_received_total" not in text
    # the whole page still parses, every family once
    families = [f.name for f in text_string_to_metric_families(text)]
    assert len(families) == len(set(families))
    assert set(NAMES) <= set(families)


def test_redpanda_connect_summaries_before_any_sample_are_nan() -> None:
    idle = PipelineStats(0, 0, 0, 0, 0.0, 0, 0, 0, {}, None)
    text = connect_metrics.render(FakePipeline(idle, Health(False, False, True), sink=None)).decode()
    assert f'input_latency_ns{{{INPUT},quantile="0.5"}} NaN' in text
    assert f"output_latency_ns_count{{{OUTPUT}}} 0" in text
    assert f"output_connection_up{{{OUTPUT}}} 0" in text


def test_quantiles_follow_the_latest_samples() -> None:
    latency = LatencyHistogram()
    for _ in range(LatencyHistogram.RECENT):
        latency.observe(5.0)
    for _ in range(LatencyHistogram.RECENT):  # the ring wraps: only these are left
        latency.observe(0.001)
    assert latency.quantiles((0.5, 0.99)) == [0.001, 0.001]
    assert latency.samples == 2 * LatencyHistogram.RECENT
    assert latency.counts[-1] == 0  # the buckets keep every sample
