"""One shutdown deadline: ``shutdown_timeout: 3s`` ends a run in about 3 s after SIGTERM, with NATS hung.

The test's own nats-server is SIGSTOPped (it keeps the connection open and reads nothing) while
publishes are in flight, more of them than the socket buffers hold (so closing the connection hangs
too); the bridge's SIGTERM then waits for acks that never come, commits, closes the consumer and the
NATS connection — every step within what is left of the one budget (``bridge.run.deadline``). Before,
each step had a budget of its own: 2.25 s for the acks, then up to 2 s each for the commit, the
consumer and NATS (this test took 4.5 s).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridgedev.brokers import NatsServer
from tests.conftest import Kafka
from tests.integration.ops_support import ops_config, scrape
from tests.support import (
    BridgeProcess,
    Record,
    create_stream,
    create_topic,
    eventually,
    produce,
    sample_records,
)
from tests.support import stream_count as count

pytestmark = pytest.mark.integration

SHUTDOWN_TIMEOUT = 3.0
SLACK = 1.0  # the fetch loop noticing the signal, the HTTP server's close, the interpreter's exit
STUCK = 100  # records of 256 KiB published while NATS is stopped: 25 MiB, more than the sockets buffer


@pytest.fixture
def nats_server() -> NatsServer:
    """A nats-server of this test alone: it is paused."""
    with NatsServer(name="hung-nats") as server:
        yield server


@pytest.mark.parametrize("kafka", ["kafka"], indirect=True)
async def test_shutdown_timeout_bounds_the_stop_with_nats_hung(
    kafka: Kafka, nats_server: NatsServer, names: dict, workdir: Path
) -> None:
    topic, stream, prefix = names["topic"], names["stream"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 2)
    await create_stream(nats_server.url, stream, [prefix + ".>"])
    await produce(kafka.bootstrap, topic, sample_records(2, 10))
    cfg, base = ops_config(
        workdir / "bridge.yaml", brokers=kafka.bootstrap, topics=[topic], group=names["group"],
        nats_url=nats_server.url, subject=prefix + '.${! meta("kafka_partition") }',
        bridge={"ack_timeout": "60s"}, top={"shutdown_timeout": f"{SHUTDOWN_TIMEOUT:g}s"},
    )  # fmt: skip # the config in the order it reads
    with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:

        async def delivered() -> None:
            assert await count(nats_server.url, stream) == 20

        await eventually(delivered, within=60)
        nats_server.pause()
        try:
            value = b"x" * 256 * 1024
            await produce(
                kafka.bootstrap, topic, [Record(i % 2, None, value) for i in range(STUCK)], batch=10
            )

            async def in_flight() -> None:
                assert (await scrape(base)).value("in_flight") == STUCK

            await eventually(in_flight, within=30)  # publishes written, acks never coming
            began = time.monotonic()
            code = bridge.stop(timeout=30)
            took = time.monotonic() - began
        finally:
            nats_server.resume()
    assert code == 0, bridge.logs()[-3000:]
    assert bridge.events("drain_timeout"), bridge.logs()[-3000:]
    assert bridge.events("run_stopped"), bridge.logs()[-3000:]
    assert took < SHUTDOWN_TIMEOUT + SLACK, (took, bridge.logs()[-3000:])
