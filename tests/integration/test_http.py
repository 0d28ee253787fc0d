"""The HTTP server of a running bridge: /ping, /ready and /metrics, through the real CLI and YAML.

Metrics are scraped while the bridge replicates and after it caught up, and compared with what was
produced; /ready is watched while the test's own nats-server is killed and started again.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from bridgedev import brokers as devenv
from tests.conftest import Kafka
from tests.integration.ops_support import Scrape, get, ops_config, scrape
from tests.support import (
    BridgeProcess,
    Record,
    create_stream,
    create_topic,
    eventually,
    produce,
    run_cli,
    stream_count,
    write_config,
)

pytestmark = pytest.mark.integration


def keyed(partitions: int, n: int, start: int = 0) -> list[Record]:
    return [Record(i % partitions, f"k{i}".encode(), f"v{i}".encode()) for i in range(start, start + n)]


async def pong(base: str) -> None:
    assert await get(base + "/ping") == (200, "pong")


async def ready(base: str) -> None:
    status, body = await get(base + "/ready")
    assert status == 200, body


async def acked(base: str, n: int) -> None:
    assert (await scrape(base)).value("records_acked_total") == n


async def test_metrics_and_ready_follow_a_run(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 3)
    # 60 good records and one whose subject renders with a space: dead-lettered.
    await produce(kafka.bootstrap, topic, [*keyed(3, 60), Record(1, b"bad key", b"x")])
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg, base = ops_config(
        workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group, nats_url=nats_url,
        subject=prefix + '.${! meta("kafka_partition") }.${! meta("kafka_key") }',
        bridge={"dead_letter": {"subject": prefix + ".dlq"}},
    )  # fmt: skip

    with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:
        await eventually(lambda: pong(base), within=20)

        async def caught_up(total: int) -> None:
            m = await scrape(base)
            assert m.value("records_acked_total") == total, m.text
            assert m.value("records_consumed_total") == total
            lag = m.labelled("kafka_lag")
            assert lag == {frozenset({("topic", topic), ("partition", str(p))}): 0.0 for p in range(3)}, lag
            assert m.value("commits_total") >= 1

        await eventually(lambda: caught_up(61), within=60)
        m = await scrape(base)
        assert m.value("records_published_total") == 61  # 60 + one dead-letter publish
        assert m.value("records_dead_lettered_total") == 1
        assert m.value("records_duplicates_total") == 0
        assert m.value("in_flight") == 0
        assert m.value("partitions_assigned") == 3
        assert m.value("partitions_stopped") == 0
        assert m.value("nats_connected") == 1
        assert m.value("ready") == 1
        assert m.value("health_check", check="commits_fresh") == 1
        assert m.value("commit_latency_seconds_count") == m.value("commits_total")
        assert m.value("commit_failures_total") == 0
        assert m.value("nats_reconnects_total") == 0
        assert m.value("publish_latency_seconds_count") == 61 // 16  # one ack in 16 is sampled
        assert m.value("publish_latency_seconds_bucket", le="+Inf") == 61 // 16
        assert m.value("info", version="0.1.0", mode="continuous") == 1
        # Redpanda Connect's standard names, with its labels (the input's label is "in", the output's
        # "test-bridge": tests.support.write_config)
        inp, out = {"label": "in", "path": "root.input"}, {"label": "test-bridge", "path": "root.output"}
        assert m.raw("input_received", **inp) == 61
        assert m.raw("output_sent", **out) == 61
        assert m.raw("output_batch_sent", **out) == 61
        assert m.raw("output_error", **out) == 0
        assert m.raw("output_connection_up", **out) == 1
        assert m.raw("output_connection_lost", **out) == 0
        assert m.raw("output_connection_failed", **out) == 0
        assert m.raw("input_latency_ns_count", **inp) >= 1  # one per fetched batch
        assert 0 < m.raw("input_latency_ns", quantile="0.99", **inp) < 60e9
        assert m.raw("output_latency_ns_count", **out) == 61 // 16
        status, body = await get(base + "/ready")
        assert status == 200, body
        assert json.loads(body) == {
            "ready": True,
            "checks": {"nats_connected": True, "kafka_assigned": True, "commits_fresh": True},
            "failing": [],
        }

        # While it runs: 30 more records are counted as they arrive.
        await produce(kafka.bootstrap, topic, keyed(3, 30, start=100))
        await eventually(lambda: caught_up(91), within=30)
        assert bridge.stop() == 0

    assert await stream_count(nats_url, stream) == 91
    # One line per commit and per lifecycle change.
    commits = bridge.events("committed")
    assert commits
    assert all(c["partitions"] >= 1 and c["reason"] for c in commits)
    assert commits[-1]["reason"] == "shutdown"
    for event in ("http_started", "nats_connected", "kafka_started", "run_started", "stopping", "run_stopped",
                  "http_stopped"):  # fmt: skip
        assert len(bridge.events(event)) == 1, event
    assert bridge.events("partitions_assigned")

    # A second group copies the same records again: the stream drops all of them as duplicates.
    cfg2, base2 = ops_config(
        workdir / "c2.yaml", brokers=kafka.bootstrap, topics=[topic], group=group + "-again", nats_url=nats_url,
        subject=prefix + '.${! meta("kafka_partition") }.${! meta("kafka_key") }',
        bridge={"dead_letter": {"subject": prefix + ".dlq"}},
    )  # fmt: skip
    with BridgeProcess("run", "-c", str(cfg2), log_dir=workdir, name="again") as again:

        async def all_duplicates() -> None:
            m = await scrape(base2)
            assert m.value("records_acked_total") == 91, m.text
            assert m.value("records_duplicates_total") == 91

        await eventually(all_duplicates, within=60)
        assert again.stop() == 0
    assert await stream_count(nats_url, stream) == 91


@pytest.mark.parametrize("kafka", ["tansu"], indirect=True)
async def test_ready_turns_false_while_nats_is_down(kafka: Kafka, names: dict, workdir: Path) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 2)
    await produce(kafka.bootstrap, topic, keyed(2, 10))
    with devenv.NatsServer(name="ready-nats") as nats_server:
        await create_stream(nats_server.url, stream, [f"{prefix}.>"])
        cfg, base = ops_config(
            workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group, nats_url=nats_server.url,
            subject=prefix + '.${! meta("kafka_partition") }', extra_output={"max_reconnects": -1},
        )  # fmt: skip
        with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:
            await eventually(lambda: ready(base), within=60)
            await eventually(lambda: acked(base, 10), within=30)

            nats_server.kill()

            async def not_ready() -> None:
                status, body = await get(base + "/ready")
                assert status == 503, body
                report = json.loads(body)
                assert report["ready"] is False
                assert report["failing"] == ["nats_connected"], report
                assert report["checks"]["kafka_assigned"] is True

            await eventually(not_ready, within=20)
            await pong(base)  # alive, just not ready
            m = await scrape(base)
            assert m.value("nats_connected") == 0
            assert m.value("ready") == 0
            assert m.value("health_check", check="nats_connected") == 0

            async def attempts_fail() -> float:
                failed = (await scrape(base)).raw(
                    "output_connection_failed", label="test-bridge", path="root.output"
                )
                assert failed >= 1
                return failed

            failed_while_down = await eventually(attempts_fail, within=20)
            nats_server.start()
            await eventually(lambda: ready(base), within=30)
            await produce(kafka.bootstrap, topic, keyed(2, 6, start=10))
            await eventually(lambda: acked(base, 16), within=30)
            m = await scrape(base)
            assert m.value("nats_reconnects_total") >= 1
            out = {"label": "test-bridge", "path": "root.output"}
            assert m.raw("output_connection_lost", **out) >= 1
            assert m.raw("output_connection_up", **out) == 1 + m.value("nats_reconnects_total")
            assert m.raw("output_connection_failed", **out) >= failed_while_down
            assert bridge.stop() == 0
        assert await stream_count(nats_server.url, stream) == 16


async def test_ready_turns_false_while_nats_hangs(kafka: Kafka, names: dict, workdir: Path) -> None:
    """A SIGSTOPped server keeps its TCP connection: /ready must notice the acks stopped, not the socket."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 2)
    await produce(kafka.bootstrap, topic, keyed(2, 10))
    with devenv.NatsServer(name="hang-nats") as nats_server:
        await create_stream(nats_server.url, stream, [f"{prefix}.>"])
        cfg, base = ops_config(
            workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group, nats_url=nats_server.url,
            subject=prefix + '.${! meta("kafka_partition") }', extra_output={"max_reconnects": -1},
            bridge={"ack_timeout": "2s"},
        )  # fmt: skip
        with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:
            await eventually(lambda: ready(base), within=60)
            await eventually(lambda: acked(base, 10), within=30)
            nats_server.pause()
            try:
                await produce(kafka.bootstrap, topic, keyed(2, 4, start=10))  # publishes that get no ack

                async def not_ready() -> None:
                    status, body = await get(base + "/ready")
                    assert status == 503, body
                    assert json.loads(body)["failing"] == ["nats_connected"]

                await eventually(not_ready, within=20)
            finally:
                nats_server.resume()
            await eventually(lambda: ready(base), within=60)
            await eventually(lambda: acked(base, 14), within=60)
            assert bridge.stop() == 0
        assert await stream_count(nats_server.url, stream) == 14


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_address_in_use_fails_before_connecting(workdir: Path, workers: str) -> None:
    """One process, or the supervisor of --workers 2 before it starts any worker: exit 1, the fix named."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = write_config(
            workdir / "c.yaml", brokers="127.0.0.1:1", topics=["t"], group="g", nats_url="nats://127.0.0.1:1",
            subject="s", top={"http": {"address": f"127.0.0.1:{port}"}},
        )  # fmt: skip
        done = run_cli("run", "-c", str(cfg), "--workers", workers, timeout=30)
    assert done.returncode == 1, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    failed = [e for e in events if e["event"] == "start_failed"]
    assert failed
    assert f"127.0.0.1:{port}" in failed[0]["error"]
    assert "set http.address to a free host:port, or http.enabled: false" in failed[0]["error"]
    assert not [e for e in events if e["event"] in ("nats_connected", "kafka_started")]


async def test_workers_share_one_endpoint(kafka: Kafka, nats_url: str, names: dict, workdir: Path) -> None:
    """``run --workers 2``: the supervisor serves the configured address; /ready answers 200 only once both
    workers hold partitions; /metrics has every worker's samples with its ``worker`` label."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 4)
    await produce(kafka.bootstrap, topic, keyed(4, 40))
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg, base = ops_config(
        workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group, nats_url=nats_url,
        subject=prefix + '.${! meta("kafka_partition") }',
    )  # fmt: skip
    with BridgeProcess("run", "-c", str(cfg), "--workers", "2", log_dir=workdir) as bridge:
        await eventually(lambda: pong(base), within=20)

        async def both_ready() -> dict:
            status, body = await get(base + "/ready")
            report = json.loads(body)
            assert status == 200, body
            return report

        report = await eventually(both_ready, within=90)
        assert [w["worker"] for w in report["workers"]] == [0, 1]
        assert all(w["ready"] and w["checks"]["kafka_assigned"] for w in report["workers"])

        async def all_acked() -> Scrape:
            m = await scrape(base)
            per_worker = m.labelled("records_acked_total")
            assert set(per_worker) == {frozenset({("worker", "0")}), frozenset({("worker", "1")})}, m.text
            assert sum(per_worker.values()) == 40
            return m

        m = await eventually(all_acked, within=60)
        assert m.value("workers") == 2
        assert m.value("worker_up", worker="0") == m.value("worker_up", worker="1") == 1
        assert sum(m.labelled("partitions_assigned").values()) == 4
        inp = {"label": "in", "path": "root.input"}
        assert m.raw("input_received", worker="0", **inp) + m.raw("input_received", worker="1", **inp) == 40
        assert bridge.stop() == 0
    # the workers served on loopback ports of their own, not on the configured one
    started = [e for e in bridge.events("http_started")]
    assert [e["address"] for e in started].count(base.removeprefix("http://")) == 1
    assert len(started) == 3
    assert await stream_count(nats_url, stream) == 40
