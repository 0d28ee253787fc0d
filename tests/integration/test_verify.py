"""``verify`` after real migrations: a clean copy passes; a deleted, duplicated, changed or foreign
stream message is reported with its offset; transactional and compacted topics count records, not
offsets (Apache Kafka only: Tansu has neither transactions nor compaction)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nats
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridgedev import brokers as devenv
from tests.conftest import Kafka
from tests.support import (
    Record,
    create_stream,
    create_topic,
    eventually,
    produce,
    read_stream,
    run_cli,
    sample_records,
    write_config,
)

pytestmark = pytest.mark.integration

METADATA = {"include_prefixes": ["kafka_"], "include_patterns": ["^source$", "^seq$"]}


def report(stdout: str) -> dict[str, Any]:
    return dict(json.loads(stdout))


def by_partition(rep: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {p["partition"]: p for p in rep["partitions"]}


async def backfill(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path, topics: list[str] | None = None, **extra: Any
) -> Path:
    await create_stream(nats_url, names["stream"], [f"{names['prefix']}.>"])
    cfg = write_config(
        workdir / "c.yaml", brokers=kafka.bootstrap, topics=topics or [names["topic"]],
        group=None if topics else names["group"], nats_url=nats_url,
        subject=names["prefix"] + '.${! meta("kafka_topic") }.${! meta("kafka_partition") }', **extra,
    )  # fmt: skip
    done = run_cli("backfill", "-c", str(cfg), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return cfg


async def test_clean_migration_verifies_and_tampering_is_reported(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic, stream = names["topic"], names["stream"]
    await create_topic(kafka.bootstrap, topic, 3)
    await produce(kafka.bootstrap, topic, sample_records(3, 40))  # keys, headers, tombstones
    # Explicit partitions (no consumer group to join: quicker); verify reads exactly those.
    cfg = await backfill(
        kafka, nats_url, names, workdir, [f"{topic}:0-2"], extra_output={"metadata": METADATA}
    )

    clean = run_cli("verify", "-c", str(cfg))
    assert clean.returncode == 0, clean.stdout + clean.stderr[-2000:]
    assert (
        "OK: 120 records in 3 partitions match the stream (mapped by kafka_* headers; key compared"
        in clean.stdout
    )
    rep = report(run_cli("verify", "-c", str(cfg), "--json").stdout)
    assert rep["ok"]
    assert rep["kafka_records"] == rep["stream_messages"] == 120
    for p in rep["partitions"]:
        assert p["kafka_checksum"] == p["stream_checksum"]
        assert (p["kafka_records"], p["missing"], p["duplicates"], p["extra"]) == (40, [], [], [])

    stored = await read_stream(nats_url, stream)
    seq_of = {(int(m.headers["kafka_partition"]), int(m.headers["kafka_offset"])): m for m in stored}
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await js.delete_msg(stream, seq_of[(1, 5)].seq)  # lost
        twin = seq_of[(2, 3)]  # stored again, with another payload (and no Nats-Msg-Id to stop it)
        headers = {k: v for k, v in twin.headers.items() if k != "Nats-Msg-Id"}
        await js.publish(twin.subject, b"tampered", headers=headers)
        stray = dict(headers, kafka_partition="7", kafka_offset="0")  # a partition the topic does not have
        await js.publish(twin.subject, b"stray", headers=stray)
    finally:
        await nc.close()

    broken = run_cli("verify", "-c", str(cfg))
    assert broken.returncode == 1, broken.stdout
    assert f"{topic}/1: missing offsets 5" in broken.stdout
    assert f"{topic}/2: duplicate offsets 3" in broken.stdout
    assert f"{topic}/7: extra offsets 0" in broken.stdout
    assert "MISMATCH in 3 of 4 partitions" in broken.stdout
    parts = by_partition(report(run_cli("verify", "-c", str(cfg), "--json").stdout))
    assert (parts[0]["missing"], parts[0]["duplicates"]) == ([], [])
    assert parts[0]["kafka_checksum"] == parts[0]["stream_checksum"]
    assert parts[1]["missing"] == [5]
    assert (parts[1]["kafka_records"], parts[1]["stream_messages"]) == (40, 39)
    assert (parts[2]["duplicates"], parts[2]["changed"]) == ([3], [3])
    assert parts[7]["extra"] == [0]


async def transactions(bootstrap: str, topic: str) -> None:
    """Four transactions of 5 records, alternating partitions 0 and 1; the third (on 0) is aborted."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tx-{topic}")
    await producer.start()
    try:
        for t in range(4):
            await producer.begin_transaction()
            for i in range(5):
                await producer.send(topic, f"t{t}-{i}".encode(), key=f"k{i}".encode(), partition=t % 2)
            if t == 2:
                await producer.abort_transaction()
            else:
                await producer.commit_transaction()
    finally:
        await producer.stop()


@pytest.mark.parametrize("kafka", ["kafka"], indirect=True)
async def test_transactional_topic_counts_records_not_offsets(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic = names["topic"]
    await create_topic(kafka.bootstrap, topic, 2)
    await transactions(kafka.bootstrap, topic)
    # read_committed: the aborted records and the commit markers are offsets without records.
    cfg = await backfill(
        kafka, nats_url, names, workdir, extra_input={"transaction_isolation_level": "read_committed"}
    )  # default metadata: no kafka_* headers, so verify maps by Nats-Msg-Id
    done = run_cli("verify", "-c", str(cfg), "--json")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    rep = report(done.stdout)
    assert (rep["mapping"], rep["compares_key"]) == ("Nats-Msg-Id", False)
    parts = by_partition(rep)
    # partition 0: 5 committed + marker, 5 aborted + marker; partition 1: twice 5 committed + marker
    assert (parts[0]["kafka_records"], parts[0]["end_offset"]) == (5, 12)
    assert (parts[1]["kafka_records"], parts[1]["end_offset"]) == (10, 12)

    # A message for an offset inside a gap (an aborted record's) is extra.
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(
            f"{names['prefix']}.{topic}.0", b"ghost", headers={"Nats-Msg-Id": f"{topic}-0-6"}
        )
    finally:
        await nc.close()
    broken = run_cli("verify", "-c", str(cfg))
    assert broken.returncode == 1
    assert f"{topic}/0: extra offsets 6" in broken.stdout


async def test_compacted_topic_counts_records_not_offsets(nats_url: str, names: dict, workdir: Path) -> None:
    """Compaction has removed superseded records before the copy: gaps in the offsets."""
    topic = names["topic"]
    # The suite's broker cleans every 15 s; this one every 100 ms.
    with devenv.ApacheKafka(extra_properties={"log.cleaner.backoff.ms": "100"}) as broker:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            configs = {"cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
                       "min.compaction.lag.ms": "0", "delete.retention.ms": "100"}  # fmt: skip
            await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=configs)])
        finally:
            await admin.close()
        await produce(broker.bootstrap, topic, [Record(0, f"k{i}".encode(), b"v1") for i in range(10)])
        await produce(broker.bootstrap, topic, [Record(0, f"k{i}".encode(), b"v2") for i in range(10)])

        async def compacted() -> None:
            # Each new record rolls the (100 ms old) segment, so the cleaner can take the older ones.
            await produce(broker.bootstrap, topic, [Record(0, b"filler", b"f")])
            offsets = [m["offset"] for m in await kafka_offsets(broker.bootstrap, topic)]
            assert offsets[0] >= 10, offsets

        await eventually(compacted, within=60, every=0.3)
        kafka = Kafka("compacting", broker.bootstrap)
        cfg = await backfill(kafka, nats_url, names, workdir, extra_output={"metadata": METADATA})
        done = run_cli("verify", "-c", str(cfg), "--json")
        assert done.returncode == 0, done.stdout + done.stderr[-2000:]
        part = by_partition(report(done.stdout))[0]
        assert part["kafka_records"] == part["stream_messages"] < part["end_offset"]
        assert part["first_offset"] == 0  # compaction keeps the log start: the gaps are inside


async def kafka_offsets(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[dict[str, Any]] = []
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500)
            out.extend({"offset": r.offset, "key": r.key} for r in batch.get(tp, []))
        return out
    finally:
        await consumer.stop()


@pytest.mark.parametrize("kafka", ["kafka"], indirect=True)
async def test_record_headers_named_like_kafka_metadata_cannot_mislead_verify(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """A record header ``kafka_offset: 999`` overrides the metadata (Redpanda Connect's rule: the last one
    wins), so the stream message carries it; verify maps messages by the default Nats-Msg-Id, the
    record's own identity, and finds every record in place."""
    topic, stream, prefix = names["topic"], names["stream"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    spoof = (("kafka_offset", b"999"), ("kafka_partition", b"7"))
    await produce(
        kafka.bootstrap, topic, [Record(0, b"k", f"v{i}".encode(), spoof if i == 1 else ()) for i in range(3)]
    )
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=names["group"],
                       nats_url=nats_url, subject=f"{prefix}.data",
                       extra_output={"metadata": {"include_prefixes": ["kafka_"]}})  # fmt: skip
    assert run_cli("backfill", "-c", str(cfg)).returncode == 0
    checked = run_cli("verify", "-c", str(cfg), "--stream", stream, "--json")
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
    assert json.loads(checked.stdout)["partitions"][0]["missing"] == []
