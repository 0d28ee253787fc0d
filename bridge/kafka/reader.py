"""``KafkaReader``: a consumer outside the bridge's group that reads partitions end to end, for ``verify``
and ``translate``.

Owns reading every partition of the configured topics (explicit ``topic:partition`` entries: just those;
regular expressions: the matching topics) from its first record to the end observed at start (the
larger of ListOffsets and the first fetch's high watermark; ListOffsets alone under ``read_committed``),
without joining a group (or looking at one group's commits without joining it). It connects with the
source's own options (``bridge.kafka.options``: TLS, SASL, isolation level: what the bridge would have
read) and its errors read as the source's do (``bridge.kafka.errors.translate``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bridge.core.config import KafkaSettings
from bridge.core.errors import ExitCode, VerifyError
from bridge.kafka import protocol
from bridge.kafka.errors import forget_causes, translate
from bridge.kafka.options import consumer_options

__all__ = ["IDLE_TIMEOUT", "KafkaReader"]

log = structlog.get_logger("bridge.verify")  # the logger's name is part of the log format: kept

IDLE_TIMEOUT = 30.0  # seconds a read may make no progress before it is given up


class KafkaReader:
    """A consumer outside any group (or looking at one group's commits without joining it), built with
    the options the bridge's own source uses (brokers, TLS, SASL, isolation level, timeouts)."""

    def __init__(self, settings: KafkaSettings, group: str | None = None) -> None:
        self.settings = settings
        self.brokers = ",".join(settings.brokers)
        # The source's options, so verify connects exactly as the bridge does.
        options = consumer_options(settings)
        options.update(group_id=group, enable_auto_commit=False, auto_offset_reset="earliest")
        self._options = options
        self._consumer: Any = None

    async def __aenter__(self) -> KafkaReader:
        forget_causes(self.settings.brokers)
        consumer = AIOKafkaConsumer(**self._options)
        try:
            await consumer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            await _quiet_stop(consumer)
            raise translate(exc, self.settings) from exc
        self._consumer = consumer
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await _quiet_stop(self._consumer)
            self._consumer = None

    async def partitions(self) -> list[TopicPartition]:
        """The configured topics' partitions, sorted."""
        s = self.settings
        try:
            known: set[str] = set(await self._consumer.topics())
        except KafkaError as exc:
            raise translate(exc, self.settings) from exc
        out: list[TopicPartition] = []
        if s.explicit:
            for entry in s.explicit:
                parts = await self._partitions_of(entry.topic)
                for p in entry.partitions:
                    if p not in parts:
                        raise VerifyError(f"no such partition: {entry.topic}:{p}")
                    out.append(TopicPartition(entry.topic, p))
            return sorted(out)
        if s.regexp:
            pattern = re.compile("|".join(f"(?:{t})" for t in s.topics))
            excluded = [re.compile(x) for x in s.regexp_exclude]
            topics = sorted(
                t
                for t in known
                if pattern.fullmatch(t) and not t.startswith("__") and not any(x.search(t) for x in excluded)
            )
        else:
            missing = [t for t in s.topics if t not in known]
            if missing:
                raise VerifyError(f"no such topic: {', '.join(missing)}")
            topics = list(s.topics)
        for topic in topics:
            out.extend(TopicPartition(topic, p) for p in await self._partitions_of(topic))
        if not out:
            raise VerifyError("the configured topics have no partitions")
        return sorted(out)

    async def topic_ids(self, topics: Iterable[str]) -> dict[str, str]:
        """Each topic's ID (``""``: unknown), to tell its messages from an earlier topic's of that name."""
        try:
            return await protocol.consumer_topic_ids(self._consumer, sorted(set(topics)))
        except KafkaError as exc:
            raise translate(exc, self.settings) from exc

    async def _partitions_of(self, topic: str) -> set[int]:
        parts: set[int] | None = self._consumer.partitions_for_topic(topic)
        if parts is None:
            # topics() fetched metadata into a cluster view of its own; as the source does, ask again
            await protocol.refresh_metadata(self._consumer)
            parts = self._consumer.partitions_for_topic(topic)
        return parts or set()

    async def read(
        self, tps: Sequence[TopicPartition]
    ) -> AsyncIterator[tuple[TopicPartition, list[Any], int, int]]:
        """Every record of ``tps`` from the first to the end seen at start, in batches:
        ``(tp, records, first_offset, end)``."""
        consumer = self._consumer
        consumer.assign(list(tps))
        try:
            await consumer.seek_to_beginning(*tps)
            listed = await consumer.end_offsets(list(tps))
            firsts = {tp: await consumer.position(tp) for tp in tps}
        except KafkaError as exc:
            raise translate(exc, self.settings) from exc
        committed_only = self.settings.isolation_level == "read_committed"
        ends: dict[TopicPartition, int | None] = {}
        pending: set[TopicPartition] = set()
        for tp in tps:
            if listed[tp] > firsts[tp]:
                pending.add(tp)
                ends[tp] = listed[tp] if committed_only else None
            else:
                ends[tp] = firsts[tp]
                yield tp, [], firsts[tp], firsts[tp]
        progress = time.monotonic()
        while pending:
            consumer.pause(*(set(tps) - pending))
            try:
                batch = await consumer.getmany(*pending, timeout_ms=500, max_records=10_000)
            except (KafkaError, UnicodeDecodeError) as exc:
                raise translate(exc, self.settings) from exc
            if batch:
                progress = time.monotonic()
            for tp in list(pending):
                end = ends[tp]
                if end is None:
                    hw = consumer.highwater(tp)
                    if hw is None:
                        continue
                    end = ends[tp] = max(listed[tp], hw)
                records = [r for r in batch.get(tp, ()) if r.offset < end]
                done = await consumer.position(tp) >= end
                if records or done:
                    yield tp, records, firsts[tp], end
                if done:
                    pending.discard(tp)
            if time.monotonic() - progress > IDLE_TIMEOUT:
                names = ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(pending))
                raise VerifyError(
                    f"Kafka read made no progress for {IDLE_TIMEOUT:g}s on {names}", ExitCode.FAILED
                )

    async def committed(self, tp: TopicPartition) -> int | None:
        try:
            value = await self._consumer.committed(tp)
        except KafkaError as exc:
            raise translate(exc, self.settings) from exc
        return None if value is None or value < 0 else int(value)

    async def log_start(self, tp: TopicPartition) -> int:
        """The partition's first offset now (after retention)."""
        try:
            found = await self._consumer.beginning_offsets([tp])
        except KafkaError as exc:
            raise translate(exc, self.settings) from exc
        return int(found[tp])

    async def first_record_at(self, tp: TopicPartition, offset: int) -> int | None:
        """The offset of the first record at or after ``offset`` now in the log (None when there is none)."""
        consumer = self._consumer
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if offset >= end:
            return None
        consumer.seek(tp, offset)
        deadline = time.monotonic() + IDLE_TIMEOUT
        while time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=1)
            records = batch.get(tp)
            if records:
                return int(records[0].offset)
            hw = consumer.highwater(tp)
            if hw is not None and await consumer.position(tp) >= max(hw, end):
                return None
        raise VerifyError(
            f"Kafka read made no progress for {IDLE_TIMEOUT:g}s on {tp.topic}/{tp.partition}", ExitCode.FAILED
        )


async def _quiet_stop(consumer: Any) -> None:
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        # aiokafka (aio-libs/aiokafka#647) stopped before its coordinator's task first ran awaits that
        # cancelled task: the NATS side failed at once. Only a cancellation of this task is propagated.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.debug("consumer_stop_error", error="CancelledError from aiokafka's coordinator")
    except Exception as exc:  # a consumer that failed to start may fail to stop; nothing is lost
        log.debug("consumer_stop_error", error=str(exc))
