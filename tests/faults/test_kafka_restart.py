"""The Kafka broker restarted mid-run: Apache Kafka (the reference broker) with a persistent log
directory, so topics, records and the group's committed offsets survive the restart.

A producer writes keyed records with headers into a multi-partition topic while the broker goes
down and comes back (failed sends are retried); then the stream is read back and checked per
partition (missing, duplicates stored, reorders, committed = end).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridgedev import brokers as devenv
from tests.faults.harness import (
    SteadyProducer,
    check_stream,
    fault_config,
    kafka_ends,
    log_problems,
    record_result,
    stream_messages,
    wait_committed,
    wait_for,
    wait_stored,
)
from tests.support import BridgeProcess, create_stream, create_topic

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[devenv.ApacheKafka]:
    with devenv.ApacheKafka(log_dir=tmp_path / "kafka-logs") as broker:
        yield broker


async def test_kafka_broker_restarted_mid_run(
    own_kafka: devenv.ApacheKafka, nats_server: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    started = time.monotonic()
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    bootstrap, url = own_kafka.bootstrap, nats_server.url
    partitions, total, restarts = 4, 10_000, 2
    await create_topic(bootstrap, topic, partitions)
    await create_stream(url, stream, [f"{prefix}.>"], duplicate_window=600)
    cfg = fault_config(workdir / "c.yaml", brokers=bootstrap, topic=topic, group=group, nats_url=url,
                       prefix=prefix)  # fmt: skip
    producer = SteadyProducer(bootstrap, topic, partitions, total, rate=500).start()
    downtime: list[float] = []
    with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:
        for _ in range(restarts):
            base = await stream_messages(url, stream)

            async def flowing(base: int = base) -> bool:
                return await stream_messages(url, stream) >= base + 1000

            assert await wait_for(flowing, within=90), bridge.logs()[-3000:]
            began = time.monotonic()
            own_kafka.restart()
            downtime.append(time.monotonic() - began)
        await producer.finish(within=180)
        ends = await kafka_ends(bootstrap, topic, producer)
        await wait_stored(url, stream, sum(ends.values()), within=90)
        await wait_committed(bootstrap, group, topic, ends, within=60)
        assert bridge.stop(timeout=40) == 0, bridge.logs()[-3000:]
    check = await check_stream(url, stream, topic, ends, bootstrap=bootstrap, group=group)
    record_result("Kafka broker restarted mid-run (persistent log dir)", check, producer.produced, restarts,
                  started, "broker down for " + ", ".join(f"{d:.1f}s" for d in downtime) + " (stop + start)")  # fmt: skip
    check.assert_clean()
    assert not log_problems(bridge.logs())
