"""Start and stop policies: continuous replication, or a bounded backfill.

**Continuous** starts where the consumer group left off (or at ``start_offset``) and never finishes
on its own; a signal stops it.

**Backfill** starts at ``earliest``, at the group's ``committed`` offsets, or at the first record at
or after a timestamp, and stops each partition at its end *as observed when it starts*: the larger
of ListOffsets(latest) taken on assignment and the high watermark of the first fetch response for
that partition. The second is needed because some brokers answer ListOffsets low (Tansu 0.6 returns
the last batch's base offset + 1); a partition is only called finished once a fetch response has
reported its high watermark. Records at or past the end are left for a later run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from aiokafka import TopicPartition

from bridge.core.checkpoint import Ledger


class SourceView(Protocol):
    def highwater(self, tp: TopicPartition) -> int | None: ...
    async def position(self, tp: TopicPartition) -> int: ...
    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]: ...
    async def seek_to_beginning(self, tps: list[TopicPartition]) -> None: ...
    async def offsets_for_times(
        self, tps: list[TopicPartition], ts_ms: int
    ) -> dict[TopicPartition, int | None]: ...
    def seek(self, tp: TopicPartition, offset: int) -> None: ...


class Mode(Protocol):
    """What the pipeline asks of a start and stop policy."""

    name: str
    bounded: bool  # the run ends at planned end offsets (a backfill)

    async def on_assigned(self, source: SourceView, tps: Iterable[TopicPartition]) -> None:
        """Place newly assigned partitions (seek) before any of their records is taken."""
        ...

    def on_revoked(self, tps: Iterable[TopicPartition]) -> None: ...

    def limit(self, tp: TopicPartition, source: SourceView) -> int | None:
        """The first offset of ``tp`` not to take (None: no limit)."""
        ...

    def partition_done(self, tp: TopicPartition, ledger: Ledger, source: SourceView) -> bool: ...

    def finished(self, ledgers: Iterable[tuple[TopicPartition, Ledger]], source: SourceView) -> bool: ...

    def planned(self, tp: TopicPartition) -> tuple[int, int] | None:
        """(start, end) of what this run is to deliver of ``tp``; None when the mode plans no end."""
        ...

    def holds_commit(self, tp: TopicPartition, committed: int | None) -> str | None:
        """Why ``tp``'s offsets must not be committed to the group (None: they may be)."""
        ...


class Continuous:
    name = "continuous"
    bounded = False

    async def on_assigned(self, source: SourceView, tps: Iterable[TopicPartition]) -> None:
        return None

    def on_revoked(self, tps: Iterable[TopicPartition]) -> None:
        return None

    def limit(self, tp: TopicPartition, source: SourceView) -> int | None:
        return None

    def partition_done(self, tp: TopicPartition, ledger: Ledger, source: SourceView) -> bool:
        return False

    def finished(self, ledgers: Iterable[tuple[TopicPartition, Ledger]], source: SourceView) -> bool:
        return False

    def planned(self, tp: TopicPartition) -> tuple[int, int] | None:
        return None  # replication has no end

    def holds_commit(self, tp: TopicPartition, committed: int | None) -> str | None:
        return None


def parse_start(value: str) -> str | int:
    """``earliest`` | ``committed`` | an RFC 3339 timestamp (→ epoch milliseconds)."""
    if value in ("earliest", "committed"):
        return value
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--from takes earliest, committed or an RFC 3339 timestamp, not {value!r}") from exc
    if when.tzinfo is None:
        raise ValueError(f"the timestamp {value!r} needs a timezone (for example Z or +02:00)")
    ms = int(when.timestamp() * 1000)
    if ms < 0:
        raise ValueError(
            f"the timestamp {value!r} is before 1970: Kafka timestamps start at 1970-01-01T00:00:00Z"
        )
    return ms


@dataclass(slots=True)
class _Bounds:
    start: int
    listed_end: int
    end: int | None = None  # frozen once a fetch reported the high watermark


class Backfill:
    name = "backfill"
    bounded = True

    def __init__(self, start: str | int = "committed") -> None:
        self.start = start
        self.bounds: dict[TopicPartition, _Bounds] = {}
        self.assigned_once = False

    async def on_assigned(self, source: SourceView, tps: Iterable[TopicPartition]) -> None:
        tps = list(tps)
        if self.start == "earliest":
            await source.seek_to_beginning(tps)
        elif isinstance(self.start, int):
            found = await source.offsets_for_times(tps, self.start)
            ends = await source.end_offsets(tps)
            for tp in tps:
                offset = found.get(tp)
                source.seek(tp, ends[tp] if offset is None else offset)
        ends = await source.end_offsets(tps)
        for tp in tps:
            position = await source.position(tp)
            self.bounds[tp] = _Bounds(start=position, listed_end=ends[tp])
        self.assigned_once = True

    def on_revoked(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self.bounds.pop(tp, None)

    def end(self, tp: TopicPartition, source: SourceView) -> int | None:
        bounds = self.bounds.get(tp)
        if bounds is None:
            return None
        if bounds.end is None:
            hw = source.highwater(tp)
            if hw is None:
                return None
            bounds.end = max(bounds.listed_end, hw)
        return bounds.end

    def limit(self, tp: TopicPartition, source: SourceView) -> int | None:
        return self.end(tp, source)

    def partition_done(self, tp: TopicPartition, ledger: Ledger, source: SourceView) -> bool:
        end = self.end(tp, source)
        if end is None:
            return False
        position = ledger.position if ledger.position is not None else self.bounds[tp].start
        return position >= end

    def finished(self, ledgers: Iterable[tuple[TopicPartition, Ledger]], source: SourceView) -> bool:
        if not self.assigned_once:
            return False
        return all(ledger.stopped or self.partition_done(tp, ledger, source) for tp, ledger in ledgers)

    def planned(self, tp: TopicPartition) -> tuple[int, int] | None:
        """(start, end) of a partition: the end as frozen by the first fetch, ListOffsets' until then."""
        bounds = self.bounds.get(tp)
        if bounds is None:
            return None
        return bounds.start, bounds.listed_end if bounds.end is None else bounds.end

    def holds_commit(self, tp: TopicPartition, committed: int | None) -> str | None:
        """A backfill from a timestamp that starts past the group's committed offset would, by committing,
        move the group over records nobody copied (a later ``run`` would never read them): the group keeps
        its offset for that partition."""
        bounds = self.bounds.get(tp)
        if (
            not isinstance(self.start, int)
            or bounds is None
            or committed is None
            or committed >= bounds.start
        ):
            return None
        return (
            f"the group's committed offset {committed} is before where --from starts ({bounds.start}): "
            f"records {committed}..{bounds.start - 1} were not copied, so the group keeps {committed}"
        )
