"""``backfill`` exits 0 only when every record up to its end offsets was stored, acknowledged as a duplicate
or dead-lettered; otherwise it exits non-zero and its summary says, per partition, how many were not
delivered. A Kubernetes backfill Job must never report success for records that are not in the stream.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import KAFKA_PARAMS, Kafka
from tests.support import (
    BridgeProcess,
    Record,
    committed_offsets,
    create_stream,
    create_topic,
    eventually,
    produce,
    run_cli,
    stream_count,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("kafka", KAFKA_PARAMS[:1], indirect=True)]

QUICK_FAILURE = {"ack_timeout": "1s", "retry_timeout": "3s"}


def report(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{") :])


async def test_backfill_with_no_stream_for_the_subject_fails_and_counts_what_was_not_delivered(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic, group, prefix = names["topic"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 2)
    await produce(
        kafka.bootstrap, topic, [Record(p, b"k", f"v{i}".encode()) for i in range(5) for p in (0, 1)]
    )
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.nostream", bridge=QUICK_FAILURE)  # fmt: skip
    done = run_cli("backfill", "-c", str(cfg), "--json", timeout=90)
    assert done.returncode == 1, done.stderr[-3000:]
    summary = report(done.stdout)
    assert summary["exit_code"] == 1
    assert summary["records"] == 0
    assert [(p["partition"], p["undelivered"]) for p in summary["partitions"]] == [(0, 5), (1, 5)]
    assert "no JetStream stream" in summary["error"], summary["error"]
    assert await committed_offsets(kafka.bootstrap, group, topic) == {}

    table = run_cli("backfill", "-c", str(cfg), timeout=90)  # the table says the same
    assert table.returncode == 1
    assert "undelivered" in table.stdout
    assert "FAILED" in table.stdout


async def test_backfill_stopped_by_a_signal_before_its_end_is_not_a_success(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """SIGTERM while the stream cannot store (its subject has no stream yet): the backfill commits what
    was acknowledged (nothing), exits 1 and says what was not delivered."""
    topic, group, prefix, stream = names["topic"], names["group"], names["prefix"], names["stream"]
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(kafka.bootstrap, topic, [Record(0, b"k", f"v{i}".encode()) for i in range(20)])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.later",
                       bridge={"ack_timeout": "1s", "retry_timeout": "0s"})  # fmt: skip
    with BridgeProcess("backfill", "-c", str(cfg), "--json", log_dir=workdir) as bridge:

        async def retrying() -> None:
            assert bridge.events("lane_halted"), bridge.logs()[-2000:]

        await eventually(retrying, within=30)
        bridge.signal(signal.SIGTERM)
        assert bridge.wait(timeout=40) == 1, bridge.logs()[-2000:]
        summary = report(bridge.stdout_path.read_text())
    assert [(p["partition"], p["undelivered"]) for p in summary["partitions"]] == [(0, 20)]
    assert "backfill incomplete" in summary["error"]

    await create_stream(nats_url, stream, [f"{prefix}.>"])  # the same backfill once the stream exists
    done = run_cli("backfill", "-c", str(cfg), "--json", timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [(p["partition"], p["undelivered"]) for p in report(done.stdout)["partitions"]] == [(0, 0)]

    async def stored() -> None:
        assert await stream_count(nats_url, stream) == 20

    await eventually(stored, within=10)
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 20}


async def test_backfill_read_committed_ends_when_an_open_transaction_is_aborted(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """``read_committed`` with a transaction open at start: the end offsets include its records, which
    are never handed out once it is aborted. The backfill steps over them (and the abort marker) and
    ends with everything delivered, instead of waiting for ever."""
    topic, group, prefix, stream = names["topic"], names["group"], names["prefix"], names["stream"]
    await create_topic(kafka.bootstrap, topic, 1)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    await produce(kafka.bootstrap, topic, [Record(0, b"k", f"v{i}".encode()) for i in range(10)])
    txn = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=f"txn-{topic}")
    await txn.start()
    try:
        await txn.begin_transaction()
        for i in range(5):
            await txn.send_and_wait(topic, f"aborted{i}".encode(), partition=0)
        cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                           nats_url=nats_url, subject=f"{prefix}.data",
                           extra_input={"transaction_isolation_level": "read_committed"})  # fmt: skip
        with BridgeProcess("backfill", "-c", str(cfg), "--json", log_dir=workdir) as bridge:

            async def committed_ones() -> None:
                assert await stream_count(nats_url, stream) == 10

            await eventually(committed_ones, within=60)
            await txn.abort_transaction()
            assert bridge.wait(timeout=60) == 0, bridge.logs()[-3000:]
            summary = report(bridge.stdout_path.read_text())
    finally:
        await txn.stop()
    assert summary["records"] == 10
    assert [(p["partition"], p["undelivered"]) for p in summary["partitions"]] == [(0, 0)]
    assert await stream_count(nats_url, stream) == 10
    assert (await committed_offsets(kafka.bootstrap, group, topic))[0] >= 15
