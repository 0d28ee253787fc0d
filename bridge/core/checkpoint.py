"""Per-partition ledger of records handed to the sink → the offsets that are safe to commit.

The rule (DESIGN.md): a record becomes committable only when JetStream acknowledged it (or its
dead-letter publish was acknowledged). The commit for a partition is the first record, in consume
order, that is not yet acknowledged — or, when nothing is outstanding, the consumer's position
(which already steps over offsets that carry no record: compacted away, or transaction markers).
Acknowledgements may arrive in any order; nothing is committed past an unacknowledged record.

Each assignment of a partition gets a fresh ``Ledger``; revoking marks it ``revoked`` so that
acknowledgements arriving late for it are ignored (they would otherwise leak into a later
assignment of the same partition). Pure module: imports neither aiokafka nor nats.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterator
from dataclasses import dataclass


class Ledger:
    """Outstanding offsets of one partition assignment, in consume order."""

    __slots__ = ("_acked", "_head", "_pending", "committed", "key", "position", "revoked", "start", "stopped")

    def __init__(self, key: Hashable, position: int | None = None) -> None:
        self.key = key
        # Offsets handed over and not yet known to be acknowledged in order: ``_pending[_head:]``, ascending
        # (consume order). A list with a moving head rather than a deque: an ack out of order is found by
        # bisection, so an offset that was never handed over is never taken for an outstanding one.
        self._pending: list[int] = []
        self._head = 0
        self._acked: set[int] = set()  # acknowledged out of order, still behind an unacknowledged one
        self.position = position  # next offset after everything handed over; None until known
        self.committed: int | None = None  # last offset committed to Kafka for this assignment
        self.start: int | None = position  # where this assignment started reading: no commit is owed for it
        self.revoked = False
        self.stopped = False  # a record here can never be published and no dead-letter route exists

    def track(self, offset: int) -> None:
        """A record was handed to the sink (call in consume order)."""
        self.track_many([offset])

    def track_many(self, offsets: list[int]) -> None:
        """Records were handed to the sink, in consume order."""
        if not offsets:
            return
        if self.start is None:
            self.start = offsets[0]
        self._pending.extend(offsets)
        self.position = offsets[-1] + 1

    def advance(self, position: int) -> None:
        """The consumer's position moved to ``position`` (it never moves back within an assignment).
        The first position a ledger learns is its ``start``."""
        if self.start is None:
            self.start = position
        if self.position is None or position > self.position:
            self.position = position

    def ack(self, offset: int) -> bool:
        """``offset`` was stored (or dead-lettered). False when ignored: revoked, or not outstanding."""
        if self.revoked:
            return False
        pending, head = self._pending, self._head
        if head < len(pending) and pending[head] == offset:
            head += 1
            acked = self._acked
            while acked and head < len(pending) and pending[head] in acked:
                acked.discard(pending[head])
                head += 1
            if head >= 4096 and head * 2 >= len(pending):
                del pending[:head]  # amortized: the acknowledged prefix is dropped in large steps
                head = 0
            self._head = head
            return True
        if head >= len(pending) or offset < pending[head] or offset > pending[-1] or offset in self._acked:
            return False  # not outstanding: acked already, or never tracked
        at = bisect.bisect_left(pending, offset, head)
        if pending[at] != offset:
            return False  # inside the range but never handed over (a gap: compaction, a marker)
        self._acked.add(offset)
        return True

    @property
    def outstanding(self) -> int:
        """Records handed over and not yet acknowledged."""
        return len(self._pending) - self._head - len(self._acked)

    @property
    def first_unacked(self) -> int | None:
        return self._pending[self._head] if self._head < len(self._pending) else None

    def committable(self) -> int | None:
        """The offset to commit now (next record to read), or None when nothing is known yet."""
        if self._head < len(self._pending):
            return self._pending[self._head]
        return self.position

    def needs_commit(self) -> int | None:
        """``committable()`` once it moved past the last commit (before any: past ``start``); else None."""
        offset = self.committable()
        base = self.committed if self.committed is not None else self.start
        if offset is None or (base is not None and offset <= base):
            return None
        return offset


@dataclass(frozen=True, slots=True)
class CheckpointStats:
    partitions: int
    outstanding: int


class Checkpointer:
    """All ledgers of the current assignment, keyed by partition."""

    def __init__(self) -> None:
        self._ledgers: dict[Hashable, Ledger] = {}

    def assign(self, key: Hashable, position: int | None = None) -> Ledger:
        """Start a fresh ledger for ``key`` (a previous one for it is revoked first)."""
        old = self._ledgers.get(key)
        if old is not None:
            old.revoked = True
        ledger = Ledger(key, position)
        self._ledgers[key] = ledger
        return ledger

    def get(self, key: Hashable) -> Ledger | None:
        return self._ledgers.get(key)

    def revoke(self, key: Hashable) -> Ledger | None:
        """Forget ``key``; its ledger is returned (for a last commit) and ignores later acks."""
        ledger = self._ledgers.pop(key, None)
        if ledger is not None:
            ledger.revoked = True
        return ledger

    def to_commit(self) -> dict[Hashable, int]:
        """Offsets that moved since the last commit, per partition."""
        out: dict[Hashable, int] = {}
        for key, ledger in self._ledgers.items():
            offset = ledger.needs_commit()
            if offset is not None:
                out[key] = offset
        return out

    def mark_committed(self, offsets: dict[Hashable, int]) -> None:
        for key, offset in offsets.items():
            ledger = self._ledgers.get(key)
            if ledger is not None and (ledger.committed is None or offset > ledger.committed):
                ledger.committed = offset

    @property
    def outstanding(self) -> int:
        return sum(ledger.outstanding for ledger in self._ledgers.values())

    def __iter__(self) -> Iterator[Ledger]:
        return iter(list(self._ledgers.values()))

    def __len__(self) -> int:
        return len(self._ledgers)

    def statistics(self) -> CheckpointStats:
        return CheckpointStats(partitions=len(self._ledgers), outstanding=self.outstanding)
