"""Compressed topics: record batches compressed with each codec Kafka defines are read and delivered.

README, "Kafka input": gzip, snappy, lz4 and zstd batches are decoded (aiokafka; cramjam for the last
three is a dependency of the production install). franz-go — Redpanda's own tools and Redpanda Connect —
compresses with snappy by default, so a bridge that cannot read snappy cannot read Redpanda's topics.

Each partition of one topic is written by a producer with its own codec; before the backfill the test
fetches the raw batches and checks each broker really stored them compressed with that codec (Apache
Kafka keeps the producer's compression; Tansu stores the batches as produced too), so the test cannot
pass on uncompressed data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

from tests.conftest import Kafka
from tests.support import (
    Record,
    committed_offsets,
    create_stream,
    create_topic,
    msg_ids,
    produce,
    read_stream,
    run_cli,
    write_config,
)

pytestmark = pytest.mark.integration

CODECS = {
    "gzip": 1,
    "snappy": 2,
    "lz4": 3,
    "zstd": 4,
}  # partition → codec, in this order; the batch attribute
PER_PARTITION = 60


async def stored_codecs(bootstrap: str, topic: str, partition: int) -> list[int]:
    """The compression attribute of every record batch the broker returns for ``partition`` from offset 0."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client.force_metadata_update()
        node = client.cluster.leader_for_partition(TopicPartition(topic, partition))
        response = await client.send(
            node, FetchRequest(100, 1, 1 << 20, 0, [(topic, [(partition, 0, 1 << 20)])])
        )
        records = MemoryRecords(response.topics[0][1][0][-1])  # the partition's record set is its last field
        codecs = []
        while records.has_next():
            batch = records.next_batch()
            assert batch is not None
            codecs.append(batch.compression_type)
        return codecs
    finally:
        await client.close()


def records_of(partition: int) -> list[Record]:
    return [
        Record(partition, f"key-{partition}-{i}".encode(), f"value {partition}/{i} ".encode() * 8,
               (("seq", str(i).encode()), ("codec", list(CODECS)[partition].encode())))
        for i in range(PER_PARTITION)
    ]  # fmt: skip


async def test_every_codec_is_read_and_delivered_exactly_once(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, len(CODECS))
    for partition, codec in enumerate(CODECS):
        await produce(kafka.bootstrap, topic, records_of(partition), compression=codec)
        stored = await stored_codecs(kafka.bootstrap, topic, partition)
        assert stored, codec
        assert set(stored) == {CODECS[codec]}, (codec, stored)
        assert len(stored) < PER_PARTITION  # batches of several records, not one record each
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=prefix + '.${! meta("kafka_partition") }',
                       extra_output={"metadata": {"include_patterns": ["^seq$", "^codec$", "^kafka_key$"]}})  # fmt: skip

    done = run_cli("backfill", "-c", str(cfg), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["records"] == PER_PARTITION * len(CODECS)
    assert summary["duplicates"] == 0

    messages = await read_stream(nats_url, stream)
    assert len(messages) == PER_PARTITION * len(CODECS)
    assert len({m.headers["Nats-Msg-Id"] for m in messages}) == len(messages)  # each record exactly once
    for partition, codec in enumerate(CODECS):
        got = [m for m in messages if m.subject == f"{prefix}.{partition}"]
        expected = records_of(partition)
        assert [m.headers["Nats-Msg-Id"] for m in got] == await msg_ids(
            kafka.bootstrap, topic, partition, range(PER_PARTITION)
        )
        assert [m.data for m in got] == [r.value for r in expected]  # in offset order
        assert [m.headers["kafka_key"] for m in got] == [r.key.decode() for r in expected if r.key]
        assert [m.headers["seq"] for m in got] == [str(i) for i in range(PER_PARTITION)]
        assert {m.headers["codec"] for m in got} == {codec}
    # committed == the end of every partition (not ListOffsets: Tansu 0.6's is off, see DESIGN.md)
    assert await committed_offsets(kafka.bootstrap, group, topic) == dict.fromkeys(
        range(len(CODECS)), PER_PARTITION
    )


async def test_a_codec_this_install_cannot_decode_is_named(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """An install without cramjam (simulated: a ``cramjam`` module on PYTHONPATH that fails to import, as
    a missing one does) reads a snappy batch: the run names the codec, the partition and the batch's
    offset, exit 1 — not "Kafka unreachable", exit 3, as before — and commits nothing past what it
    delivered."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(kafka.bootstrap, topic, records_of(0)[:5])  # uncompressed: delivered
    await produce(kafka.bootstrap, topic, records_of(0)[5:], compression="snappy")
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=prefix + ".x")  # fmt: skip
    hidden = workdir / "without-cramjam"
    hidden.mkdir()
    (hidden / "cramjam.py").write_text('raise ImportError("cramjam is not installed (hidden by the test)")\n')

    done = run_cli("backfill", "-c", str(cfg), "--json", env={"PYTHONPATH": str(hidden)})
    assert done.returncode == 1, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["error"] == (
        f"Kafka ({kafka.bootstrap}): record batch of {topic}/0 at offset 5 compressed with snappy, which this "
        "install cannot decode (aiokafka decodes snappy, lz4 and zstd with cramjam: "
        "pip install 'aiokafka[snappy,lz4,zstd]')"
    )
    assert "unreachable" not in done.stdout + done.stderr
    # The records before the batch may or may not have been handed out (aiokafka raises while draining the
    # fetch that holds them); whatever was stored is committed, nothing past it.
    stored = len(await read_stream(nats_url, stream))
    assert stored <= 5
    assert (await committed_offsets(kafka.bootstrap, group, topic)).get(0, 0) == stored
