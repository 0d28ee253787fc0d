"""``verify``: is every record of the Kafka topics in the stream, once, in order and intact?

Owns the orchestration: read every configured partition from Kafka (``bridge.kafka.reader``: from its
first record to the end observed at start, read without a consumer group with the bridge's own
consumer options; records are counted, not offsets: compaction and transaction markers leave gaps),
read the stream up to its last sequence at start (``bridge.jetstream.reader``), reduce both sides to
digests and map the messages back to their records (``bridge.migrate.projection``), and compare per
partition (``bridge.migrate.compare``). A config that cannot map messages back cannot be verified
(exit 2). Messages of other topics are counted as "other"; messages whose default ``Nats-Msg-Id``
names another topic ID (an earlier topic of the same name, deleted and created again) are counted as
"earlier" and not compared. Run it with producers stopped and the bridge caught up
(``kafka_jetstream_bridge_kafka_lag`` at 0), or the newest records show up as missing.
"""

from __future__ import annotations

import time

import structlog
from aiokafka import TopicPartition

from bridge.core.config import Loaded
from bridge.core.errors import ConfigError, Problem, VerifyError
from bridge.jetstream.reader import read_stream, resolve_stream
from bridge.jetstream.streams import admin_connection
from bridge.kafka.reader import KafkaReader
from bridge.migrate.compare import Report, compare
from bridge.migrate.projection import Projection

log = structlog.get_logger("bridge.verify")


async def verify(loaded: Loaded, stream: str | None = None) -> Report:
    """Compare every partition of the configured topics with the stream."""
    started = time.monotonic()
    try:
        projection = Projection.from_loaded(loaded)
    except VerifyError as exc:
        raise ConfigError([Problem("output.nats_jetstream.metadata", 0, exc.detail)], loaded.source) from exc
    async with KafkaReader(loaded.kafka) as reader, admin_connection(loaded) as nc:
        name = await resolve_stream(nc, loaded, stream)
        tps = await reader.partitions()
        kafka: dict[TopicPartition, list[tuple[int, bytes]]] = {tp: [] for tp in tps}
        bounds: dict[TopicPartition, tuple[int, int]] = {}
        async for tp, records, first, end in reader.read(tps):
            bounds[tp] = (first, end)
            kafka[tp].extend((r.offset, projection.kafka_digest(r.key, r.value, r.headers)) for r in records)
        topics = {tp.topic for tp in tps}
        topic_ids = await reader.topic_ids(topics)
        stored: dict[TopicPartition, list[tuple[int, bytes]]] = {tp: [] for tp in tps}
        dead: dict[TopicPartition, list[int]] = {}
        other = unmapped = earlier = 0
        async for msg in read_stream(nc, name):
            where = projection.locate(msg.headers)
            if where is None:
                unmapped += 1
                continue
            if where.topic not in topics:
                other += 1
                continue
            if where.topic_id and topic_ids.get(where.topic) and where.topic_id != topic_ids[where.topic]:
                earlier += 1
                continue
            tp = TopicPartition(where.topic, where.partition)
            if where.dead:
                dead.setdefault(tp, []).append(where.offset)
                continue
            stored.setdefault(tp, []).append((where.offset, projection.stream_digest(msg.headers, msg.data)))
    verdicts = []
    for tp in sorted(set(stored) | set(dead)):
        first, end = bounds.get(tp, (0, 2**63 - 1))  # a partition Kafka does not have: all extra
        verdicts.append(
            compare(
                tp.topic, tp.partition, kafka.get(tp, []), stored.get(tp, []), first, end, dead.get(tp, ())
            )
        )
    report = Report(
        name,
        verdicts,
        other=other,
        earlier=earlier,
        unmapped=unmapped,
        compares_key=projection.compares_key,
        mapping="kafka_* headers" if projection.by_metadata else "Nats-Msg-Id",
        elapsed=time.monotonic() - started,
    )
    log.info(
        "verified",
        stream=name,
        ok=report.ok,
        partitions=len(verdicts),
        records=sum(v.kafka_records for v in verdicts),
        mismatched=[v.name for v in verdicts if not v.ok] or None,
    )
    return report


__all__ = ["verify"]
