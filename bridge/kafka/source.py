"""KafkaSource: the aiokafka consumer the run reads from, behind one small surface.

Owns: the consumer (built from ``bridge.kafka.options``), subscribing (topics, a pattern, or explicit
partitions with start offsets), the rebalance hooks, pause/resume, positions and high watermarks, and
commits of explicit offsets (never ``commit()`` without offsets), each carrying the ID of the topic it
was read from (``bridge.kafka.protocol``). aiokafka's exceptions become the project's through
``bridge.kafka.errors.translate``; nothing above this module sees an aiokafka exception.

Compressed record batches are decoded by aiokafka (gzip from the standard library; snappy, lz4 and
zstd with cramjam, a dependency). A batch it cannot decode is an ``UndecodableBatch`` naming the
codec and the partition, never "unreachable".

Without a consumer group (explicit partitions) nothing can be committed: Kafka keeps offsets per
group. Such a run starts from the given offsets (or ``start_offset``) every time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, OffsetOutOfRangeError

from bridge.core.config import KafkaSettings
from bridge.core.config.kafka import OFFSET_END, OFFSET_START
from bridge.core.errors import GroupInUse, KafkaUnavailable, LogRewound, TopicNotFound
from bridge.kafka import protocol
from bridge.kafka.errors import forget_causes, translate
from bridge.kafka.options import consumer_options
from bridge.run import retry

log = structlog.get_logger("bridge.source")  # the logger's name is part of the log format: kept

TP = TopicPartition
__all__ = ["TP", "KafkaSource", "RebalanceHooks"]


class RebalanceHooks(Protocol):
    async def partitions_revoked(self, tps: set[TopicPartition]) -> None: ...
    async def partitions_assigned(self, tps: set[TopicPartition]) -> None: ...


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc] # aiokafka is untyped
    def __init__(self, hooks: RebalanceHooks) -> None:
        self._hooks = hooks

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        tps = set(revoked)
        if tps:
            await self._hooks.partitions_revoked(tps)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        tps = set(assigned)
        if tps:
            await self._hooks.partitions_assigned(tps)


def _share_of(tps: Sequence[TopicPartition], share: tuple[int, int]) -> list[TopicPartition]:
    """``--workers N``: worker ``i`` of ``N`` takes every N-th partition of ``tps``, from the i-th."""
    index, count = share
    return [tp for i, tp in enumerate(tps) if i % count == index]


class KafkaSource:
    def __init__(
        self, settings: KafkaSettings, hooks: RebalanceHooks, share: tuple[int, int] | None = None
    ) -> None:
        self.settings = settings
        self._hooks = hooks
        # (i, n): read the i-th of every n of the topics' partitions without joining the group (a backfill:
        # it knows its partitions and end offsets up front; the group only keeps its offsets). None: join.
        self._share = share
        self._consumer: Any = None
        self._paused: set[TopicPartition] = set()
        self._closed = False
        self.brokers = ",".join(settings.brokers)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect and subscribe (or assign). Raises KafkaUnavailable / AuthError."""
        async for attempt in retry.kafka_connect(self.brokers):
            with attempt:
                await self._start_once()
        s = self.settings
        if s.explicit:
            tps = [TopicPartition(e.topic, p) for e in s.explicit for p in e.partitions]
            if self._share is not None:
                tps = _share_of(tps, self._share)
            known = await self._known_partitions({e.topic for e in s.explicit})
            missing = [tp for tp in tps if tp not in known]
            if missing:
                names = ", ".join(f"{tp.topic}:{tp.partition}" for tp in missing)
                raise KafkaUnavailable(self.brokers, f"no such partition: {names}")
            self._consumer.assign(tps)
            for e in s.explicit:
                if e.offset is None:
                    continue
                explicit = [tp for tp in (TopicPartition(e.topic, p) for p in e.partitions) if tp in tps]
                if not explicit:
                    continue
                if e.offset == OFFSET_END:  # franz-go's Offset.At(-1), as kafka_franz
                    await self._consumer.seek_to_end(*explicit)
                elif e.offset == OFFSET_START:  # At(-2)
                    await self._consumer.seek_to_beginning(*explicit)
                else:
                    for tp in explicit:
                        self._consumer.seek(tp, e.offset)
            await self._hooks.partitions_assigned(set(tps))
        elif self._share is not None:
            await self._assign_share(*self._share)
        elif s.regexp:
            pattern = "|".join(f"(?:{t})" for t in s.topics)
            self._consumer.subscribe(pattern=f"^(?:{pattern})$", listener=_Listener(self._hooks))
        else:
            self._consumer.subscribe(topics=list(s.topics), listener=_Listener(self._hooks))
        log.info("kafka_started", brokers=self.brokers, group=s.group or None, topics=list(s.topics) or None)

    async def _assign_share(self, index: int, count: int) -> None:
        """Take this process's share of the topics' partitions, without a group join: the first record is
        read in a fetch's time instead of a rebalance's. The group's committed offsets are where it
        starts and where it commits, so a group with members (a ``run``) is refused: both would commit
        the same partitions."""
        s = self.settings
        if protocol.broker_count(self._consumer) == 0:
            # e.g. an OAUTHBEARER login Apache Kafka answers with an empty broker list: nothing to ask
            raise KafkaUnavailable(
                self.brokers,
                "the bootstrap was answered with no brokers in the cluster metadata (check that this is the "
                "listener the brokers advertise, and the sasl credentials)",
            )
        if s.group:
            try:
                members = await protocol.group_members(self._consumer, s.group)
            except KafkaError as exc:
                raise translate(exc, s) from exc
            if members:
                raise GroupInUse(s.group, len(members))
        try:
            existing = await self._consumer.topics()
        except KafkaError as exc:
            raise translate(exc, s) from exc
        if s.regexp:
            pattern = re.compile("|".join(f"(?:{t})" for t in s.topics))
            topics = sorted(t for t in existing if pattern.fullmatch(t) and not t.startswith("__"))
            if not topics:
                raise TopicNotFound(self.brokers, list(s.topics), matching=True)  # nothing to copy
        else:
            topics = [t for t in s.topics if t in existing]  # missing ones: missing_topics() says so
        mine = _share_of(sorted(await self._known_partitions(set(topics))), (index, count))
        self._consumer.assign(mine)
        # even none (more workers than partitions): the backfill then has nothing to wait for and ends
        await self._hooks.partitions_assigned(set(mine))

    async def missing_topics(self) -> list[str]:
        """Named topics (not patterns, not explicit partitions) that the cluster does not have."""
        if self.settings.regexp or self.settings.explicit:
            return []
        try:
            existing = await self._consumer.topics()
        except KafkaError as exc:
            raise translate(exc, self.settings) from exc
        return [t for t in self.settings.topics if t not in existing]

    async def topic_ids(self, topics: Iterable[str]) -> dict[str, str]:
        """Each topic's ID, ``""`` when it does not exist (any more) or the broker reports none."""
        try:
            return await protocol.consumer_topic_ids(self._consumer, sorted(set(topics)))
        except KafkaError as exc:
            raise translate(exc, self.settings) from exc

    async def _start_once(self) -> None:
        options = consumer_options(self.settings)
        forget_causes(self.settings.brokers)
        consumer = AIOKafkaConsumer(**options)
        try:
            await consumer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            await _quiet_stop(consumer)
            raise translate(exc, self.settings) from exc
        self._consumer = consumer

    async def _known_partitions(self, topics: set[str]) -> set[TopicPartition]:
        known: set[TopicPartition] = set()
        for topic in topics:
            parts = self._consumer.partitions_for_topic(topic)
            if parts is None:
                await protocol.refresh_metadata(self._consumer)
                parts = self._consumer.partitions_for_topic(topic) or set()
            known |= {TopicPartition(topic, p) for p in parts}
        return known

    async def aclose(self) -> None:
        """Leave the group and close. Idempotent."""
        if self._closed or self._consumer is None:
            return
        self._closed = True
        await _quiet_stop(self._consumer)

    # ------------------------------------------------------------------ consuming

    async def fetch(self, max_records: int, wait: float) -> dict[TopicPartition, list[Any]]:
        try:
            result: dict[TopicPartition, list[Any]] = await self._consumer.getmany(
                timeout_ms=int(wait * 1000), max_records=max_records
            )
        except OffsetOutOfRangeError as exc:
            # start_offset: committed (no reset policy) and a committed offset past the end of the log
            tp, offset = (
                next(iter(exc.args[0].items())) if exc.args and isinstance(exc.args[0], dict) else (None, 0)
            )
            if tp is None:
                raise translate(exc, self.settings) from exc
            raise LogRewound.start_past_end(tp.topic, tp.partition, offset, self.settings.group) from exc
        except (KafkaError, UnicodeDecodeError) as exc:  # a header name aiokafka cannot decode
            raise translate(exc, self.settings) from exc
        return result

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment())

    def highwater(self, tp: TopicPartition) -> int | None:
        hw: int | None = self._consumer.highwater(tp)
        return hw

    async def position(self, tp: TopicPartition) -> int:
        pos: int = await self._consumer.position(tp)
        return pos

    def set_paused(self, wanted: set[TopicPartition]) -> None:
        """Pause exactly ``wanted`` (among assigned partitions), resume the rest."""
        assigned = self.assignment()
        wanted &= assigned
        newly = wanted - self._paused
        resumed = (self._paused - wanted) & assigned
        if newly:
            self._consumer.pause(*newly)
        if resumed:
            self._consumer.resume(*resumed)
        self._paused = wanted

    async def reset_to_start(self, tps: Sequence[TopicPartition]) -> None:
        """Place partitions where ``start_offset`` says, as if the group had committed nothing for them."""
        policy = self.settings.start_offset
        if policy == "earliest":
            await self._consumer.seek_to_beginning(*tps)
        elif policy == "latest":
            await self._consumer.seek_to_end(*tps)
        else:
            tp = tps[0]
            raise LogRewound(
                tp.topic,
                tp.partition,
                "its committed offset was made for an earlier topic of the same name, and start_offset: "
                "committed has no other place to start",
            )

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._consumer.seek(tp, offset)

    async def seek_to_beginning(self, tps: Sequence[TopicPartition]) -> None:
        await self._consumer.seek_to_beginning(*tps)

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        try:
            result: dict[TopicPartition, int] = await self._consumer.end_offsets(list(tps))
        except KafkaError as exc:
            raise translate(exc, self.settings) from exc
        return result

    async def offsets_for_times(
        self, tps: Sequence[TopicPartition], ts_ms: int
    ) -> dict[TopicPartition, int | None]:
        found = await self._consumer.offsets_for_times({tp: ts_ms for tp in tps})
        return {tp: (None if v is None else v.offset) for tp, v in found.items()}

    async def committed(self, tp: TopicPartition) -> int | None:
        value: int | None = await self._consumer.committed(tp)
        return value

    async def committed_topic_ids(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, str]:
        """The topic ID each partition's committed offset was committed for (``commit(..., topic_ids)``);
        partitions without a commit, or committed by another tool, are left out."""
        if not self.has_group or not tps:
            return {}
        try:
            found = await protocol.committed_metadata(self._consumer, list(tps))
        except KafkaError as exc:
            raise translate(exc, self.settings) from exc
        out: dict[TopicPartition, str] = {}
        for tp, metadata in found.items():
            topic_id = protocol.topic_id_of_commit(metadata)
            if topic_id is not None:
                out[tp] = topic_id
        return out

    @property
    def has_group(self) -> bool:
        return bool(self.settings.group)

    async def commit(
        self, offsets: dict[TopicPartition, int], topic_ids: dict[str, str] | None = None
    ) -> bool:
        """Commit explicit offsets (the next offset to read), each with the ID of the topic it was read
        from (``topic_ids``) as its commit metadata. False when the group is rebalancing or the partitions
        are no longer ours: the revocation hook has committed what was safe."""
        if not offsets or not self.has_group:
            return True
        ids = topic_ids or {}
        payload = {tp: (o, protocol.commit_metadata(ids.get(tp.topic, ""))) for tp, o in offsets.items()}
        try:
            async for attempt in retry.kafka_commit():
                with attempt:
                    try:
                        await self._consumer.commit(payload)
                    except KafkaError as exc:
                        if exc.retriable:  # aiokafka's own flag: the policy retries the translated error
                            raise translate(exc, self.settings) from exc
                        raise
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit_skipped", reason=str(exc), partitions=len(offsets))
            return False
        except KafkaUnavailable as exc:
            log.warning("commit_failed", error=str(exc), partitions=len(offsets))
            return False
        except KafkaError as exc:
            raise translate(exc, self.settings) from exc
        return True


async def _quiet_stop(consumer: Any) -> None:
    try:
        await consumer.stop()
    except Exception as exc:  # a consumer that failed to start may fail to stop; nothing is lost
        log.debug("consumer_stop_error", error=str(exc))
