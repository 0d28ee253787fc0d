"""The NATS server is not always the one the bridge started with, and SIGTERM may come at any time.

- A nats-server restarted with a lower ``max_payload``: the bridge routes by the new limit from its next
  connection, so a record over it is dead-lettered (or stops its partition), never sent in a loop that
  the server answers by closing the connection; the other partitions go on.
- A server whose ``max_control_line`` is lower than ``bridge.max_control_line``: it closes the
  connection over a frame the bridge let through; after three times alone on the wire the record is
  handed back (dead-lettered, or its partition stops saying what to set), the rest goes on.
- SIGTERM while the bridge is still connecting (a Kafka address that accepts and never answers, NATS
  down with ``max_reconnects: -1``): the run ends within the shutdown budget.

All through the CLI with a YAML config, on Apache Kafka and real nats-servers.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridgedev.brokers import NatsServer, free_port
from tests.conftest import KAFKA_PARAMS, Kafka
from tests.support import (
    BridgeProcess,
    Record,
    committed_offsets,
    create_stream,
    create_topic,
    eventually,
    produce,
    read_stream,
    stream_count,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("kafka", KAFKA_PARAMS[:1], indirect=True)]


async def test_a_server_restarted_with_a_lower_max_payload_gets_no_record_over_it(
    kafka: Kafka, names: dict, workdir: Path
) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    with NatsServer(name="payload-8k", extra_conf="max_payload: 8192") as server:
        await create_topic(kafka.bootstrap, topic, 2)
        await create_stream(server.url, stream, [f"{prefix}.>"])
        cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                           nats_url=server.url, subject=prefix + '.data.${! meta("kafka_partition") }',
                           extra_output={"max_reconnects": -1},
                           bridge={"dead_letter": {"subject": f"{prefix}.dlq"}})  # fmt: skip
        with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:
            await produce(kafka.bootstrap, topic, [Record(p, b"k", b"before") for p in (0, 1)])

            async def first() -> None:
                assert await stream_count(server.url, stream) == 2

            await eventually(first, within=60)
            server.extra_conf = "max_payload: 4096"
            server.restart()

            async def reconnected() -> None:
                assert [e["max_payload"] for e in bridge.events("nats_connected")][-1] == 4096

            await eventually(reconnected, within=60)
            await produce(kafka.bootstrap, topic, [Record(0, b"big", b"x" * 6000)])
            await produce(kafka.bootstrap, topic, [Record(1, b"k", f"p1-{i}".encode()) for i in range(20)])

            async def settled() -> None:
                assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 2, 1: 21}

            await eventually(settled, within=60)
            assert bridge.stop(timeout=40) == 0, bridge.logs()[-3000:]
            assert len(bridge.events("nats_connection_lost")) == 1, bridge.logs()[-3000:]  # the restart alone
        stored = await read_stream(server.url, stream)
        dead = [m for m in stored if m.subject == f"{prefix}.dlq"]
        assert [(m.headers["Bridge-Error-Kind"], m.headers["Bridge-Payload-Omitted"]) for m in dead] == [
            ("size", "6000")
        ]
        assert len([m for m in stored if m.subject == f"{prefix}.data.1"]) == 21
        assert "maximum payload" not in server.log_path.read_text().lower()


async def test_a_record_a_server_closes_the_connection_over_stops_its_partition_not_the_bridge(
    kafka: Kafka, names: dict, workdir: Path
) -> None:
    """A server whose max_control_line (512) is below bridge.max_control_line (4096): it closes the
    connection over a 1,000-byte subject the bridge let through. After the record closed the connection
    three times alone on the wire, it is handed back: its partition stops (no dead-letter subject), the
    other partition goes on, and the run does not loop."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    with NatsServer(name="line-512", extra_conf="max_control_line: 512") as server:
        await create_topic(kafka.bootstrap, topic, 2)
        await create_stream(server.url, stream, [f"{prefix}.>"])
        await produce(kafka.bootstrap, topic, [Record(0, b"k" * 1000, b"v"), Record(1, b"ok", b"v")])
        await produce(kafka.bootstrap, topic, [Record(p, b"ok", b"w") for p in (0, 1)])
        cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                           nats_url=server.url, subject=prefix + '.${! @kafka_key }',
                           extra_output={"max_reconnects": -1},
                           bridge={"retry_timeout": "0s"})  # fmt: skip
        began = time.monotonic()
        with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:

            async def stopped() -> None:
                assert bridge.events("partition_stopped"), bridge.logs()[-3000:]
                assert await committed_offsets(kafka.bootstrap, group, topic) == {1: 2}

            await eventually(stopped, within=60)
            assert time.monotonic() - began < 45
            (event,) = bridge.events("partition_stopped")
            assert (event["partition"], event["offset"]) == (0, 0)
            assert "max_control_line" in event["reason"]
            assert bridge.stop(timeout=40) == 1, bridge.logs()[-3000:]
        assert await committed_offsets(kafka.bootstrap, group, topic) == {1: 2}  # nothing past the record
        stored = await read_stream(server.url, stream)
        assert sorted(m.data for m in stored if m.subject == f"{prefix}.ok") in (
            [b"v", b"w"],
            [b"v", b"w", b"w"],
        )
        assert all(len(m.subject) < 100 for m in stored)


class Silent:
    def __init__(self, port: int, held: list[socket.socket]) -> None:
        self.port = port
        self.held = held


@pytest.fixture
def silent_port() -> Iterator[Silent]:
    """A TCP port on 127.0.0.1 that accepts connections and never says a word (a hung broker)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield Silent(listener.getsockname()[1], held)
    done.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.mark.parametrize("command", ["run", "backfill"])
async def test_sigterm_while_kafka_never_answers_ends_the_run_within_the_budget(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path, silent_port: Silent, command: str
) -> None:
    cfg = write_config(workdir / "c.yaml", brokers=f"127.0.0.1:{silent_port.port}", topics=[names["topic"]],
                       group=names["group"], nats_url=nats_url, subject=f"{names['prefix']}.x",
                       top={"shutdown_timeout": "5s"})  # fmt: skip
    args = ("--json",) if command == "backfill" else ()
    with BridgeProcess(command, "-c", str(cfg), *args, log_dir=workdir) as bridge:

        async def bootstrapping() -> None:
            assert silent_port.held, bridge.logs()[-2000:]  # the bridge is waiting for Kafka's answer

        await eventually(bootstrapping, within=30)
        stopped = time.monotonic()
        bridge.signal()
        code = bridge.wait(timeout=30)
        assert time.monotonic() - stopped < 5 + 3, bridge.logs()[-2000:]
    if command == "run":
        assert code == 0, bridge.logs()[-2000:]
    else:  # a backfill stopped before it read anything did not deliver its records
        assert code == 1, bridge.logs()[-2000:]
        summary = json.loads(bridge.stdout_path.read_text())
        assert "stopped before it started reading" in summary["error"]


async def test_sigterm_while_nats_is_down_and_reconnects_are_unbounded_ends_the_run(
    kafka: Kafka, names: dict, workdir: Path
) -> None:
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[names["topic"]],
                       group=names["group"], nats_url=f"nats://127.0.0.1:{free_port()}",
                       subject=f"{names['prefix']}.x", extra_output={"max_reconnects": -1},
                       top={"shutdown_timeout": "5s"})  # fmt: skip
    with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:

        async def retrying() -> None:
            assert bridge.events("retrying"), bridge.logs()[-2000:]

        await eventually(retrying, within=30)
        stopped = time.monotonic()
        bridge.signal()
        assert bridge.wait(timeout=30) == 0, bridge.logs()[-2000:]
        assert time.monotonic() - stopped < 5 + 3
