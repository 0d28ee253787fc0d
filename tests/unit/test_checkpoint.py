"""bridge.core.checkpoint: nothing is committed past an unacknowledged record, whatever the ack order."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bridge.core.checkpoint import Checkpointer, CheckpointStats, Ledger


def tracked(*offsets: int, position: int | None = None) -> Ledger:
    ledger = Ledger(("t", 0), position)
    for offset in offsets:
        ledger.track(offset)
    return ledger


def test_fresh_ledger_knows_nothing() -> None:
    ledger = Ledger(("t", 0))
    assert ledger.committable() is None
    assert ledger.needs_commit() is None
    assert ledger.outstanding == 0
    assert ledger.first_unacked is None
    assert ledger.revoked is False
    assert ledger.stopped is False


def test_initial_position_is_committable_but_owes_no_commit() -> None:
    """The start of an assignment is where Kafka already is: committing it would move nothing."""
    ledger = Ledger(("t", 0), position=17)
    assert ledger.committable() == 17
    assert ledger.start == 17
    assert ledger.needs_commit() is None
    ledger.track(17)
    ledger.ack(17)
    assert ledger.needs_commit() == 18


def test_in_order_acks() -> None:
    ledger = tracked(0, 1, 2)
    assert ledger.committable() == 0
    assert ledger.outstanding == 3
    for offset, expected in ((0, 1), (1, 2), (2, 3)):
        assert ledger.ack(offset) is True
        assert ledger.committable() == expected
    assert ledger.outstanding == 0
    assert ledger.first_unacked is None


def test_out_of_order_acks_commit_only_to_first_unacked() -> None:
    ledger = tracked(10, 11, 12, 13)
    assert ledger.ack(12) is True
    assert ledger.committable() == 10
    assert ledger.ack(13) is True
    assert ledger.committable() == 10
    assert ledger.outstanding == 2
    assert ledger.ack(11) is True
    assert ledger.committable() == 10  # 10 is still out: nothing past it
    assert ledger.first_unacked == 10
    assert ledger.ack(10) is True
    assert ledger.committable() == 14  # everything acked: one past the last record
    assert ledger.outstanding == 0


@pytest.mark.parametrize(
    ("acks", "commits"),
    [
        ((0, 1, 5, 9), (1, 5, 9, 10)),
        ((9, 5, 1, 0), (0, 0, 0, 10)),
        ((5, 0, 9, 1), (0, 1, 1, 10)),
        ((1, 0, 9, 5), (0, 5, 5, 10)),
    ],
)
def test_gaps_in_offsets(acks: tuple[int, ...], commits: tuple[int, ...]) -> None:
    """Offsets 2-4 and 6-8 carry no record (compacted away, or transaction markers)."""
    ledger = tracked(0, 1, 5, 9)
    got = []
    for offset in acks:
        assert ledger.ack(offset) is True
        got.append(ledger.committable())
    assert tuple(got) == commits


def test_advance_past_trailing_markers() -> None:
    ledger = tracked(0, 1, 5, 9)
    ledger.advance(12)  # the fetch stepped over a commit marker at 10 and 11
    assert ledger.committable() == 0  # records still out: the position does not count yet
    for offset in (0, 1, 5, 9):
        ledger.ack(offset)
    assert ledger.committable() == 12


def test_advance_never_moves_back() -> None:
    ledger = tracked(0)
    ledger.ack(0)
    ledger.advance(5)
    ledger.advance(3)
    assert ledger.position == 5
    assert ledger.committable() == 5


def test_advance_sets_an_unknown_position() -> None:
    ledger = Ledger(("t", 0))
    ledger.advance(3)
    assert ledger.committable() == 3


def test_advance_without_records() -> None:
    ledger = Ledger(("t", 0), position=0)
    ledger.advance(100)  # a partition of only transaction markers
    assert ledger.needs_commit() == 100


def test_needs_commit_only_when_moved() -> None:
    ledger = tracked(0, 1, 2)
    assert ledger.start == 0  # the first tracked record is where this assignment started
    assert ledger.needs_commit() is None
    ledger.committed = 0
    assert ledger.needs_commit() is None
    ledger.ack(1)
    assert ledger.needs_commit() is None  # 0 is still first
    ledger.ack(0)
    assert ledger.needs_commit() == 2
    ledger.committed = 2
    assert ledger.needs_commit() is None
    ledger.ack(2)
    assert ledger.needs_commit() == 3


def test_needs_commit_never_goes_back_below_a_commit() -> None:
    ledger = Ledger(("t", 0), position=5)
    ledger.committed = 8  # committed earlier at a later offset (e.g. a seek back)
    assert ledger.needs_commit() is None


def test_no_commit_is_owed_for_the_start_position() -> None:
    ledger = Ledger(("t", 0))
    ledger.advance(5)
    ledger.start = 5  # the assignment began reading here
    assert ledger.needs_commit() is None
    ledger.track(5)
    assert ledger.needs_commit() is None
    ledger.ack(5)
    assert ledger.needs_commit() == 6
    ledger.committed = 6
    assert ledger.needs_commit() is None


def test_last_commit_takes_precedence_over_start() -> None:
    ledger = Ledger(("t", 0), position=5)
    ledger.start = 5
    ledger.committed = 3  # the group's commit is behind where this assignment starts
    assert ledger.needs_commit() == 5


def test_checkpointer_to_commit_and_mark_committed() -> None:
    cp = Checkpointer()
    a = cp.assign(("t", 0))
    b = cp.assign(("t", 1))
    for offset in (0, 1, 2):
        a.track(offset)
    b.track(7)
    assert cp.to_commit() == {}  # nothing acknowledged yet: no commit owed at the start positions
    cp.mark_committed({("t", 0): 0, ("t", 1): 7})
    assert cp.to_commit() == {}
    a.ack(0)
    a.ack(2)
    assert cp.to_commit() == {("t", 0): 1}
    cp.mark_committed({("t", 0): 1})
    assert a.committed == 1
    assert cp.to_commit() == {}
    b.ack(7)
    assert cp.to_commit() == {("t", 1): 8}


def test_mark_committed_never_goes_back() -> None:
    cp = Checkpointer()
    ledger = cp.assign(("t", 0), position=10)
    cp.mark_committed({("t", 0): 10})
    cp.mark_committed({("t", 0): 4})  # a late, older commit result
    assert ledger.committed == 10


def test_mark_committed_ignores_unknown_partitions() -> None:
    cp = Checkpointer()
    cp.mark_committed({("gone", 0): 5})
    assert cp.get(("gone", 0)) is None
    assert len(cp) == 0


def test_revoked_ledger_ignores_acks() -> None:
    cp = Checkpointer()
    ledger = cp.assign(("t", 0))
    ledger.track(0)
    ledger.track(1)
    revoked = cp.revoke(("t", 0))
    assert revoked is ledger
    assert ledger.revoked is True
    assert ledger.ack(0) is False
    assert ledger.committable() == 0
    assert ledger.outstanding == 2
    assert cp.get(("t", 0)) is None
    assert cp.revoke(("t", 0)) is None


def test_reassigned_partition_is_not_affected_by_late_acks() -> None:
    cp = Checkpointer()
    old = cp.assign(("t", 0))
    for offset in (5, 6, 7):
        old.track(offset)
    cp.revoke(("t", 0))
    new = cp.assign(("t", 0), position=5)  # re-assigned: reads from the last commit again
    for offset in (5, 6, 7):
        new.track(offset)
    assert old.ack(5) is False
    assert old.ack(6) is False
    assert new.committable() == 5
    assert new.outstanding == 3
    assert cp.outstanding == 3
    assert new.ack(5) is True
    assert new.committable() == 6


def test_assign_again_revokes_the_previous_ledger() -> None:
    cp = Checkpointer()
    first = cp.assign(("t", 0))
    first.track(0)
    second = cp.assign(("t", 0))
    assert first.revoked is True
    assert second is not first
    assert second.revoked is False
    assert cp.get(("t", 0)) is second
    assert first.ack(0) is False
    assert second.committable() is None
    assert len(cp) == 1


def test_outstanding_counts() -> None:
    cp = Checkpointer()
    a = cp.assign(("t", 0))
    b = cp.assign(("t", 1))
    for offset in range(5):
        a.track(offset)
    for offset in range(100, 103):
        b.track(offset)
    assert cp.outstanding == 8
    assert cp.statistics() == CheckpointStats(partitions=2, outstanding=8)
    a.ack(3)  # out of order: still counted as acked
    b.ack(100)
    assert a.outstanding == 4
    assert b.outstanding == 2
    assert cp.statistics() == CheckpointStats(partitions=2, outstanding=6)
    cp.revoke(("t", 1))
    assert cp.statistics() == CheckpointStats(partitions=1, outstanding=4)
    assert list(cp) == [a]


def test_duplicate_out_of_order_ack_is_ignored() -> None:
    ledger = tracked(0, 1, 2)
    assert ledger.ack(2) is True
    assert ledger.ack(2) is False
    assert ledger.outstanding == 2
    assert ledger.committable() == 0
    ledger.ack(0)
    ledger.ack(1)
    assert ledger.committable() == 3
    assert ledger.outstanding == 0


def test_duplicate_ack_does_not_move_the_commit() -> None:
    ledger = tracked(0, 1, 2)
    ledger.ack(0)
    ledger.ack(0)
    assert ledger.committable() == 1


def test_duplicate_in_order_ack_is_ignored() -> None:
    ledger = tracked(0, 1)
    assert ledger.ack(0) is True
    assert ledger.ack(0) is False
    assert ledger.outstanding == 1
    assert ledger.committable() == 1


def test_ack_of_an_untracked_offset_is_ignored() -> None:
    ledger = tracked(5)
    assert ledger.ack(3) is False
    assert ledger.outstanding == 1


@pytest.mark.parametrize("seed", range(20))
def test_random_ack_order(seed: int) -> None:
    rng = random.Random(seed)
    offsets = sorted(rng.sample(range(200), rng.randint(1, 60)))  # gaps like a compacted topic
    ledger = Ledger(("t", seed), position=offsets[0])
    for offset in offsets:
        ledger.track(offset)
    end = offsets[-1] + 1 + rng.randint(0, 3)  # trailing markers, sometimes
    ledger.advance(end)
    unacked = set(offsets)
    order = offsets[:]
    rng.shuffle(order)
    committed: int | None = None
    for offset in order:
        assert ledger.ack(offset) is True
        unacked.discard(offset)
        expected = min(unacked) if unacked else end
        assert ledger.committable() == expected
        assert ledger.outstanding == len(unacked)
        # the commit never passes an unacknowledged record and never moves back
        assert committed is None or expected >= committed
        offered = ledger.needs_commit()
        if offered is not None:
            assert committed is None or offered > committed
            ledger.committed = committed = offered
    assert ledger.committable() == end
    assert ledger.needs_commit() is None


# --------------------------------------------------------------------------- property-based


class CheckpointMachine(RuleBasedStateMachine):
    """Random interleavings of what the pipeline does to a Checkpointer — records handed over with gaps
    (compaction, transaction markers), acks in any order (duplicates, late ones after a revocation,
    acks of offsets never tracked), the consumer's position moving past markers, commits, revocations
    and re-assignments — against a model of which offsets were handed over and acknowledged. The rule
    under test: no offset handed over and not acknowledged in the current assignment is ever below what
    ``to_commit`` offers, and a commit never goes back."""

    def __init__(self) -> None:
        super().__init__()
        self.cp = Checkpointer()
        self.next: dict[int, int] = {}  # partition → next offset the consumer hands out
        self.unacked: dict[
            int, set[int]
        ] = {}  # partition → offsets handed over in this assignment, not acked
        self.old: dict[int, list[Ledger]] = {}  # revoked ledgers (late acks arrive on them)
        self.committed: dict[int, int] = {}

    partitions = st.integers(0, 2)

    @rule(p=partitions, start=st.integers(0, 50))
    def assign(self, p: int, start: int) -> None:
        previous = self.cp.get(p)
        if previous is not None:
            self.old.setdefault(p, []).append(previous)
        start = max(start, self.committed.get(p, 0))
        self.cp.assign(p, start)
        self.next[p] = start
        self.unacked[p] = set()

    @rule(p=partitions, gaps=st.lists(st.integers(0, 3), min_size=1, max_size=8))
    def hand_over(self, p: int, gaps: list[int]) -> None:
        ledger = self.cp.get(p)
        if ledger is None:
            return
        offsets = []
        for gap in gaps:
            self.next[p] += gap
            offsets.append(self.next[p])
            self.next[p] += 1
        ledger.track_many(offsets)
        self.unacked[p].update(offsets)

    @rule(p=partitions, markers=st.integers(0, 3))
    def position_moves_past_markers(self, p: int, markers: int) -> None:
        ledger = self.cp.get(p)
        if ledger is None:
            return
        self.next[p] += markers
        ledger.advance(self.next[p])

    @rule(p=partitions, data=st.data())
    def ack(self, p: int, data: st.DataObject) -> None:
        ledger = self.cp.get(p)
        if ledger is None or not self.unacked[p]:
            return
        offset = data.draw(st.sampled_from(sorted(self.unacked[p])))
        assert ledger.ack(offset)
        self.unacked[p].discard(offset)

    @rule(p=partitions, offset=st.integers(0, 200))
    def stray_ack(self, p: int, offset: int) -> None:
        """A duplicate ack, an ack of an offset never tracked, or a late ack for a revoked assignment."""
        for ledger in self.old.get(p, []):
            assert not ledger.ack(offset)
        ledger = self.cp.get(p)
        if ledger is not None and offset not in self.unacked[p]:
            assert not ledger.ack(offset)

    @rule()
    def commit(self) -> None:
        offsets = self.cp.to_commit()
        for p, offset in offsets.items():
            assert offset > self.committed.get(p, -1) or p not in self.committed, (p, offset, self.committed)
            self.committed[p] = offset
        self.cp.mark_committed(offsets)

    @rule(p=partitions)
    def revoke(self, p: int) -> None:
        ledger = self.cp.revoke(p)
        if ledger is not None:
            offset = ledger.needs_commit()
            if offset is not None:
                self.committed[p] = max(offset, self.committed.get(p, offset))
            self.old.setdefault(p, []).append(ledger)
            self.unacked.pop(p, None)

    @invariant()
    def never_past_an_unacknowledged_record(self) -> None:
        for p, offset in self.cp.to_commit().items():
            pending = self.unacked.get(p, set())
            assert not pending or offset <= min(pending), (p, offset, sorted(pending))
        for ledger in self.cp:
            committable = ledger.committable()
            pending = self.unacked.get(ledger.key, set())  # type: ignore[call-overload]
            if pending:
                assert committable == min(pending)
            assert ledger.outstanding == len(pending)


TestCheckpointMachine = CheckpointMachine.TestCase
TestCheckpointMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
