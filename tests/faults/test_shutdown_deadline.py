"""``shutdown_timeout`` bounds the whole shutdown, whatever is stuck: with Apache Kafka frozen (SIGSTOP) a
SIGTERM ends the run within the timeout and a small margin, exit 1 (uncommitted records are read again by
the next run), instead of waiting for the broker to come back (545 s in the attack's run)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from bridgedev import brokers as devenv
from tests.support import (
    BridgeProcess,
    create_stream,
    create_topic,
    eventually,
    produce,
    sample_records,
    stream_count,
    write_config,
)

pytestmark = pytest.mark.faults

SHUTDOWN_TIMEOUT = 4.0


async def test_a_frozen_kafka_does_not_hold_the_shutdown_past_its_timeout(
    fault_kafka: devenv.ApacheKafka, nats_server: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(fault_kafka.bootstrap, topic, 2)
    await create_stream(nats_server.url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=fault_kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_server.url, subject=f"{prefix}.x", extra_input={"commit_period": "60s"},
                       top={"shutdown_timeout": f"{SHUTDOWN_TIMEOUT:g}s"})  # fmt: skip
    await produce(fault_kafka.bootstrap, topic, sample_records(2, 50))
    with BridgeProcess("run", str(cfg), log_dir=workdir) as bridge:

        async def stored() -> None:
            assert await stream_count(nats_server.url, stream) == 100, bridge.logs()[-2000:]

        await eventually(stored, within=60)  # acknowledged; the first commit is a minute away
        fault_kafka.pause()
        try:
            signalled = time.monotonic()
            bridge.signal(signal.SIGTERM)
            code = bridge.wait(timeout=60)
            took = time.monotonic() - signalled
        finally:
            fault_kafka.resume()
    assert took <= SHUTDOWN_TIMEOUT + 2.0 + 3.0, f"the shutdown took {took:.1f}s"
    # not a clean stop: the acknowledged records were not committed (the next run reads them again)
    assert code == 1, bridge.logs()[-3000:]
    assert "stopped without committing 2 partition(s)" in bridge.logs() or "shutdown_timeout (4s) passed" in (
        bridge.logs()
    ), bridge.logs()[-3000:]


async def test_a_signal_during_a_slow_group_join_is_bounded_by_the_timeout(
    fault_kafka: devenv.ApacheKafka, nats_server: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    """A member killed with SIGKILL stays in the group until its 30 s session times out; a new run joining
    meanwhile waits in the rebalance. SIGTERM then must not wait for that join (42 s for a 5 s timeout in
    the attack's run)."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(fault_kafka.bootstrap, topic, 2)
    await create_stream(nats_server.url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=fault_kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_server.url, subject=f"{prefix}.x",
                       extra_input={"session_timeout": "30s", "rebalance_timeout": "30s"},
                       top={"shutdown_timeout": f"{SHUTDOWN_TIMEOUT:g}s"})  # fmt: skip
    with BridgeProcess("run", str(cfg), log_dir=workdir, name="first") as first:

        async def assigned() -> None:
            assert first.events("partitions_assigned"), first.logs()[-2000:]

        await eventually(assigned, within=60)
        first.signal(signal.SIGKILL)
        first.wait(timeout=10)
    with BridgeProcess("run", str(cfg), log_dir=workdir, name="second") as second:

        async def joining() -> None:
            assert second.events("run_started"), second.logs()[-2000:]

        await eventually(joining, within=60)
        assert not second.events("partitions_assigned")  # still waiting on the dead member
        signalled = time.monotonic()
        second.signal(signal.SIGTERM)
        code = second.wait(timeout=90)
        took = time.monotonic() - signalled
    assert code in (0, 1), second.logs()[-3000:]
    assert took <= SHUTDOWN_TIMEOUT + 2.0 + 3.0, f"the shutdown took {took:.1f}s"
