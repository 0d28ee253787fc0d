"""bridge.jetstream.lanes: the ordering rule under retries, without asyncio or a broker.

``Wire`` below drives lanes the way the publisher (``bridge.jetstream.publisher``) does, synchronously:
a token table of what is on the wire (a reply for a token not in it is late and ignored), settling
replies, timeouts and a lost connection through the lane, and each lane's retry as explicit steps
(backoff → probe alone → its fate → the rest in order). The unit tests walk the cases one by one; the
stateful property test runs any interleaving of accepts, replies (stored, duplicate, permanent and
retriable failures, late ones), timeouts, connection losses, reconnections, retry steps and
revocations, and checks that a later publish of a lane is never sent (first or again) while an earlier
one of the lane is unstored and not on the wire ahead of it, and that in the end every accepted
publish was stored, handed back as permanently failed, or dropped by revocation — exactly once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bridge.jetstream.lanes import DONE, FAILED, SENT, WAITING, Lane, State


class Item:
    """A publish (``lanes.Publish``): ``seq`` is its place in its lane's record order."""

    __slots__ = ("lane", "order", "seq", "state", "token")

    def __init__(self, lane: str, seq: int) -> None:
        self.lane = lane
        self.seq = seq
        self.state = WAITING
        self.token = 0
        self.order = 0

    def __repr__(self) -> str:
        return f"Item({self.lane}#{self.seq}, {State(self.state).name}, token={self.token})"


class Retriable(Exception):
    pass


@dataclass
class Retry:
    """A lane's retry task, as steps: ``backoff`` (waiting to probe), ``probing`` (the probe is out)."""

    phase: str = "backoff"
    probe: Item | None = None
    outcome: str = ""  # the probe's fate: "", "ok", "permanent", "retriable"


@dataclass
class Wire:
    """The publisher's sequencing, synchronous (see the module docstring)."""

    lanes: dict[str, Lane[Item]] = field(default_factory=dict)
    inflight: dict[int, Item] = field(default_factory=dict)
    retries: dict[str, Retry] = field(default_factory=dict)
    connected: bool = True
    tokens: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    accepted: dict[str, list[Item]] = field(default_factory=dict)
    stored: list[Item] = field(default_factory=list)
    handed_back: list[Item] = field(default_factory=list)
    dropped: list[Item] = field(default_factory=list)
    violations: list[Item] = field(default_factory=list)  # stored after a later one (the stream's doing)
    sends: list[tuple[Item, bool]] = field(default_factory=list)  # (item, again)

    def lane(self, name: str) -> Lane[Item]:
        if name not in self.lanes:
            self.lanes[name] = Lane(name)
            self.accepted[name] = []
        return self.lanes[name]

    # -- sending

    def _send(self, lane: Lane[Item], item: Item, again: bool) -> None:
        """Write ``item``; first check the ordering rule against every earlier publish of its lane."""
        for earlier in self.accepted[lane.name][: item.seq]:
            unstored = earlier.state != DONE
            assert not unstored or earlier.token in self.inflight, (
                f"{item} sent while the earlier {earlier} is unstored and not on the wire"
            )
        token = next(self.tokens)
        lane.send(item, token)
        self.inflight[token] = item
        self.sends.append((item, again))

    def accept(self, name: str, n: int = 1) -> list[Item]:
        lane = self.lane(name)
        items = [Item(name, len(self.accepted[name]) + i) for i in range(n)]
        self.accepted[name] += items
        if not lane.flowing or not self.connected:
            for item in items:
                lane.queue(item)
            if not self.connected and lane.waiting:
                lane.disconnected(Retriable("connection lost"))
            self._maybe_retry(lane)
        else:
            for item in items:
                self._send(lane, item, again=False)
        return items

    # -- replies

    def _probe_fate(self, lane: Lane[Item], item: Item, outcome: str) -> None:
        retry = self.retries.get(lane.name)
        if retry is not None and retry.phase == "probing" and not retry.outcome:
            retry.outcome = outcome

    def reply_stored(self, token: int, duplicate: bool = False) -> bool:
        """A PubAck; False when the token is not on the wire (a late reply: ignored)."""
        item = self.inflight.pop(token, None)
        if item is None:
            return False
        lane = self.lanes[item.lane]
        assert item not in self.stored
        if not lane.stored(item, duplicate):
            self.violations.append(item)
        self.stored.append(item)
        self._probe_fate(lane, item, "ok")
        if lane.halted:
            self._maybe_retry(lane)
        return True

    def reply_failed(self, token: int, permanent: bool) -> bool:
        item = self.inflight.pop(token, None)
        if item is None:
            return False
        self._fail(item, permanent)
        return True

    def _fail(self, item: Item, permanent: bool) -> None:
        lane = self.lanes[item.lane]
        if permanent:
            lane.failed_permanently(item)
            self.handed_back.append(item)
            self._probe_fate(lane, item, "permanent")
            if lane.halted:
                self._maybe_retry(lane)
        else:
            lane.failed(item, Retriable(f"{item} failed"))
            self._probe_fate(lane, item, "retriable")
            self._maybe_retry(lane)

    def time_out(self, token: int) -> None:
        """The reaper: no reply within the ack timeout (a retriable failure)."""
        item = self.inflight.pop(token)
        self._fail(item, permanent=False)

    def lose_connection(self) -> None:
        self.connected = False
        lost = list(self.inflight.values())
        self.inflight.clear()
        for item in lost:
            self._fail(item, permanent=False)

    def reconnect(self) -> None:
        self.connected = True
        for lane in list(self.lanes.values()):
            self._maybe_retry(lane)

    # -- the retry

    def _maybe_retry(self, lane: Lane[Item]) -> None:
        if lane.retry_due and lane.rewind():
            self.retries[lane.name] = Retry()

    def retry_step(self, name: str) -> None:
        """One step of the lane's retry task, when it has one that can move."""
        retry, lane = self.retries.get(name), self.lanes[name]
        if retry is None:
            return
        if retry.phase == "backoff":
            if lane.dropped:
                self._end_retry(lane)
                return
            if not self.connected:
                return  # waits for the connection
            item = lane.next_probe()
            if item is None:
                self._resume(lane)
                return
            retry.phase, retry.probe, retry.outcome = "probing", item, ""
            self._send(lane, item, again=True)
        elif retry.outcome:
            assert retry.probe is not None
            settled = lane.probe_settled(retry.probe)
            if retry.outcome == "retriable":
                assert not settled
                retry.phase, retry.probe, retry.outcome = "backoff", None, ""
            else:
                assert settled
                self._resume(lane)

    def _resume(self, lane: Lane[Item]) -> None:
        lane.resume()
        for item in lane.resend():
            self._send(lane, item, again=True)
        self._end_retry(lane)

    def _end_retry(self, lane: Lane[Item]) -> None:
        del self.retries[lane.name]
        lane.retry_ended()

    # -- revocation

    def revoke(self, name: str) -> list[Item]:
        lane = self.lanes[name]
        abandoned = lane.drop()
        for item in abandoned:
            if item.token:
                self.inflight.pop(item.token, None)
        self.dropped += abandoned
        retry = self.retries.pop(name, None)
        if retry is not None:
            lane.retry_ended()  # the publisher cancels the task; its finally ends the retry
        return abandoned

    # -- observing

    def tokens_of(self, name: str) -> list[int]:
        return [t for t, item in self.inflight.items() if item.lane == name]

    def settle_all(self) -> None:
        """Let everything finish: connect, store whatever is on the wire, let every retry run."""
        self.reconnect()
        for _ in range(10_000):
            if self.inflight:
                self.reply_stored(next(iter(self.inflight)))
            elif self.retries:
                self.retry_step(next(iter(self.retries)))
            else:
                return
        raise AssertionError(f"did not settle: {self.inflight}, {self.retries}")


def sent_seqs(wire: Wire, again: bool | None = None) -> list[int]:
    return [item.seq for item, resent in wire.sends if again is None or resent == again]


# ---------------------------------------------------------------------------------------------- cases


def test_states_are_an_int_enum() -> None:
    assert [s.name for s in State] == ["WAITING", "SENT", "FAILED", "DONE"]
    assert (WAITING, SENT, FAILED, DONE) == (0, 1, 2, 3)


def test_a_flowing_lane_writes_in_order_and_is_idle_once_all_are_stored() -> None:
    wire = Wire()
    items = wire.accept("p0", 3)
    lane = wire.lanes["p0"]
    assert [i.state for i in items] == [SENT] * 3
    assert [i.order for i in items] == [i.token for i in items] == sorted(i.token for i in items)
    assert lane.outstanding == 3
    assert not lane.idle
    for token in wire.tokens_of("p0"):
        assert wire.reply_stored(token)
    assert lane.idle
    assert lane.outstanding == 0
    assert [i.state for i in items] == [DONE] * 3
    assert lane.max_stored == items[-1].order


def test_the_stored_head_leaves_sent_at_once_later_ones_wait_for_it() -> None:
    wire = Wire()
    a, b, c = wire.accept("p0", 3)
    lane = wire.lanes["p0"]
    wire.reply_stored(c.token)
    assert list(lane.sent) == [a, b, c]  # c is stored, but behind a and b
    wire.reply_stored(a.token)
    assert list(lane.sent) == [b, c]
    wire.reply_stored(b.token)
    assert list(lane.sent) == []


def test_a_retriable_failure_halts_the_lane_and_new_publishes_wait() -> None:
    wire = Wire()
    a, _ = wire.accept("p0", 2)
    lane = wire.lanes["p0"]
    wire.reply_failed(a.token, permanent=False)
    assert lane.halted
    assert isinstance(lane.error, Retriable)
    assert a.state == FAILED
    assert not lane.flowing
    (c,) = wire.accept("p0")
    assert c.state == WAITING
    assert list(lane.waiting) == [c]
    assert sent_seqs(wire) == [0, 1]  # c was not written


def test_the_retry_waits_until_nothing_of_the_lane_is_on_the_wire() -> None:
    wire = Wire()
    a, b = wire.accept("p0", 2)
    lane = wire.lanes["p0"]
    wire.reply_failed(a.token, permanent=False)
    assert not lane.retry_due  # b is still on the wire
    assert "p0" not in wire.retries
    wire.reply_stored(b.token)
    assert lane.retrying  # b settled: the retry started
    assert list(lane.waiting) == [a]


def test_rewind_puts_the_unstored_first_in_order_ahead_of_the_waiting() -> None:
    wire = Wire()
    a, b, c, d = wire.accept("p0", 4)
    lane = wire.lanes["p0"]
    wire.reply_failed(b.token, permanent=False)
    (e,) = wire.accept("p0")  # halted: waits
    wire.time_out(d.token)
    wire.reply_stored(c.token)
    wire.lose_connection()  # a: lost
    assert list(lane.waiting) == [a, b, d, e]
    assert all(i.state == WAITING for i in lane.waiting)
    assert c.state == DONE
    assert not lane.sent


def test_the_probe_goes_alone_then_the_rest_in_order() -> None:
    wire = Wire()
    a, b, c = wire.accept("p0", 3)
    wire.lose_connection()
    wire.reconnect()
    wire.retry_step("p0")  # the probe: a, alone
    assert sent_seqs(wire, again=True) == [0]
    assert wire.tokens_of("p0") == [a.token]
    wire.reply_stored(a.token)
    wire.retry_step("p0")  # its fate: stored; the rest in order
    assert sent_seqs(wire, again=True) == [0, 1, 2]
    lane = wire.lanes["p0"]
    assert not lane.halted
    assert lane.error is None
    assert not lane.retrying
    wire.settle_all()
    assert set(wire.stored) == {a, b, c}


def test_a_probe_that_fails_goes_back_to_the_front_and_is_probed_again() -> None:
    wire = Wire()
    a, b = wire.accept("p0", 2)
    wire.lose_connection()
    wire.reconnect()
    wire.retry_step("p0")
    wire.reply_failed(a.token, permanent=False)  # 503 no responders, say
    wire.retry_step("p0")
    lane = wire.lanes["p0"]
    assert list(lane.waiting) == [a, b]
    assert a.state == WAITING
    assert a not in lane.sent
    wire.retry_step("p0")  # after the backoff: a alone again
    assert sent_seqs(wire, again=True) == [0, 0]
    assert a.order == 1  # its first send's token: its place in the lane's order


def test_a_permanent_failure_is_handed_back_and_the_lane_keeps_flowing() -> None:
    wire = Wire()
    a, _ = wire.accept("p0", 2)
    lane = wire.lanes["p0"]
    wire.reply_failed(a.token, permanent=True)  # the stream's max message size, say
    assert wire.handed_back == [a]
    assert a.state == DONE
    assert not lane.halted
    assert lane.flowing
    (c,) = wire.accept("p0")
    assert c.state == SENT


def test_a_permanent_failure_of_the_probe_resumes_the_lane() -> None:
    wire = Wire()
    a, _ = wire.accept("p0", 2)
    wire.lose_connection()
    wire.reconnect()
    wire.retry_step("p0")
    wire.reply_failed(a.token, permanent=True)
    wire.retry_step("p0")
    assert wire.handed_back == [a]
    assert sent_seqs(wire, again=True) == [0, 1]
    assert not wire.lanes["p0"].halted


def test_duplicate_acks_count_as_stored_and_are_no_order_violation() -> None:
    wire = Wire()
    a, b = wire.accept("p0", 2)
    wire.reply_stored(b.token)
    wire.reply_stored(a.token, duplicate=True)  # a was stored before (a re-send the stream dropped)
    assert wire.violations == []
    assert {a, b} <= set(wire.stored)


def test_a_publish_stored_after_a_later_one_is_an_order_violation() -> None:
    wire = Wire()
    a, b = wire.accept("p0", 2)
    wire.reply_stored(b.token)
    wire.reply_stored(a.token, duplicate=False)  # stored just now, after b: cannot be undone
    assert wire.violations == [a]


def _sent(lane: Lane[Item], n: int) -> list[Item]:
    items = [Item(lane.name, i) for i in range(n)]
    for i, item in enumerate(items, 1):
        lane.send(item, i)
    return items


def test_a_reorder_left_by_an_earlier_run_is_reported_once_from_the_stream_sequences() -> None:
    """An earlier run stored records 11..13 (sequences 11..13) while record 10 was refused; this run
    stores 10 (sequence 31) and gets 11..13 back as duplicates at their old, lower sequences: the
    stream holds 11 before 10, reported once, at 11's ack."""
    lane: Lane[Item] = Lane("t/0")
    ten, eleven, twelve, thirteen = _sent(lane, 4)
    assert lane.stored(ten, False, 31, b"S")
    assert not lane.stored(eleven, True, 11, b"S")  # a later record's copy precedes ten's
    assert lane.stored(twelve, True, 12, b"S")  # the same inversion: said once
    assert lane.stored(thirteen, True, 13, b"S")


def test_sequences_in_record_order_are_no_violation_whatever_arrives_first() -> None:
    lane: Lane[Item] = Lane("t/0")
    a, b, c, d = _sent(lane, 4)
    assert lane.stored(b, True, 6, b"S")  # replies out of order, copies in order
    assert lane.stored(a, True, 5, b"S")
    assert lane.stored(c, False, 9, b"S")
    assert lane.stored(d, True, 3, b"DLQ")  # another stream's sequences are not compared


def test_a_stream_created_again_restarts_its_sequences_without_a_violation() -> None:
    """The stream was deleted and created again under the run: new messages get sequences from 1."""
    lane: Lane[Item] = Lane("t/0")
    a, b, c = _sent(lane, 3)
    assert lane.stored(a, False, 900, b"S")
    assert lane.stored(b, False, 1, b"S")  # new, below the highest: a new stream, not a reorder
    assert lane.stored(c, True, 2, b"S")  # and the next one after it, in order


def test_a_late_reply_to_a_timed_out_send_is_ignored() -> None:
    wire = Wire()
    (a,) = wire.accept("p0")
    old = a.token
    wire.time_out(old)
    wire.retry_step("p0")  # the probe: a again, with a new token
    assert a.token != old
    assert not wire.reply_stored(old)  # late: its send timed out
    assert a.state == SENT
    assert wire.reply_stored(a.token, duplicate=True)  # the re-send: already stored
    assert wire.stored == [a]


def test_connection_loss_fails_everything_on_the_wire_and_waits_for_the_next_connection() -> None:
    wire = Wire()
    a, b = wire.accept("p0", 1) + wire.accept("p1", 1)
    wire.lose_connection()
    assert not wire.inflight
    for name in ("p0", "p1"):
        lane = wire.lanes[name]
        assert lane.halted
        assert lane.outstanding == 0
        assert lane.retrying
    wire.retry_step("p0")  # no connection: the probe waits
    assert sent_seqs(wire, again=True) == []
    (c,) = wire.accept("p0")  # accepted while disconnected: waits
    assert c.state == WAITING
    wire.settle_all()
    assert set(wire.stored) == {a, b, c}


def test_a_lane_that_accepts_while_disconnected_halts() -> None:
    wire = Wire()
    wire.accept("p0")
    wire.settle_all()
    wire.connected = False
    (a,) = wire.accept("p0")
    lane = wire.lanes["p0"]
    assert lane.halted
    assert isinstance(lane.error, Retriable)
    assert a.state == WAITING
    assert lane.retrying  # due at once: nothing on the wire; the retry waits for a connection


def test_nothing_left_to_resend_lets_the_lane_flow_again() -> None:
    lane: Lane[Item] = Lane("p0")
    item = Item("p0", 0)
    lane.send(item, 1)
    lane.failed(item, Retriable("x"))
    item.state = DONE  # settled meanwhile (revoked elsewhere, say)
    assert lane.retry_due
    assert lane.rewind() is False
    assert not lane.halted
    assert not lane.retrying


def test_revocation_drops_the_unsettled_and_their_late_replies_are_ignored() -> None:
    wire = Wire()
    a, b, c = wire.accept("p0", 3)
    wire.reply_stored(a.token)
    wire.reply_failed(b.token, permanent=False)
    token_c = c.token
    abandoned = wire.revoke("p0")
    lane = wire.lanes["p0"]
    assert abandoned == [b, c]
    assert lane.dropped
    assert not lane.retry_due
    assert lane.idle
    assert lane.outstanding == 0
    assert b.state == c.state == DONE
    assert not wire.reply_stored(token_c)  # late: ignored


def test_a_revoked_lane_retries_nothing() -> None:
    wire = Wire()
    (a,) = wire.accept("p0")
    wire.lose_connection()
    wire.revoke("p0")
    wire.reconnect()
    assert "p0" not in wire.retries
    assert sent_seqs(wire, again=True) == []
    assert wire.dropped == [a]


@pytest.mark.parametrize("probe_fails", [False, True])
def test_lanes_are_independent(probe_fails: bool) -> None:
    wire = Wire()
    a, b = wire.accept("p0", 2)
    (c,) = wire.accept("p1")
    wire.reply_failed(a.token, permanent=False)
    (d,) = wire.accept("p1")  # p0 halted: p1 flows on
    assert d.state == SENT
    wire.reply_stored(b.token)
    wire.retry_step("p0")
    if probe_fails:
        wire.reply_failed(a.token, permanent=False)
        wire.retry_step("p0")
    assert not wire.lanes["p1"].halted
    wire.settle_all()
    assert set(wire.stored) == {a, b, c, d}


# ---------------------------------------------------------------------------------------------- property

LANES = st.sampled_from(["p0", "p1"])


class LaneMachine(RuleBasedStateMachine):
    """Any interleaving; ``Wire._send`` asserts the ordering rule at every send."""

    def __init__(self) -> None:
        super().__init__()
        self.wire = Wire()

    @rule(name=LANES, n=st.integers(1, 4))
    def accept(self, name: str, n: int) -> None:
        while name in self.wire.lanes and self.wire.lanes[name].dropped:
            name += "+"  # a partition assigned again gets a new lane (the publisher's lane(name) does)
        self.wire.accept(name, n)

    @precondition(lambda self: bool(self.wire.inflight))
    @rule(data=st.data(), duplicate=st.booleans())
    def store(self, data: st.DataObject, duplicate: bool) -> None:
        token = data.draw(st.sampled_from(sorted(self.wire.inflight)))
        self.wire.reply_stored(token, duplicate)

    @precondition(lambda self: bool(self.wire.inflight))
    @rule(data=st.data(), permanent=st.booleans())
    def fail(self, data: st.DataObject, permanent: bool) -> None:
        token = data.draw(st.sampled_from(sorted(self.wire.inflight)))
        self.wire.reply_failed(token, permanent)

    @precondition(lambda self: bool(self.wire.inflight))
    @rule(data=st.data())
    def time_out(self, data: st.DataObject) -> None:
        self.wire.time_out(data.draw(st.sampled_from(sorted(self.wire.inflight))))

    @rule(token=st.integers(1, 60), duplicate=st.booleans())
    def late_reply(self, token: int, duplicate: bool) -> None:
        """A reply for any token: ignored unless it is on the wire right now."""
        if token not in self.wire.inflight:
            assert not self.wire.reply_stored(token, duplicate)

    @precondition(lambda self: self.wire.connected)
    @rule()
    def lose_connection(self) -> None:
        self.wire.lose_connection()

    @precondition(lambda self: not self.wire.connected)
    @rule()
    def reconnect(self) -> None:
        self.wire.reconnect()

    @precondition(lambda self: bool(self.wire.retries))
    @rule(data=st.data())
    def retry_step(self, data: st.DataObject) -> None:
        self.wire.retry_step(data.draw(st.sampled_from(sorted(self.wire.retries))))

    @precondition(lambda self: any(not lane.dropped for lane in self.wire.lanes.values()))
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        live = sorted(name for name, lane in self.wire.lanes.items() if not lane.dropped)
        self.wire.revoke(data.draw(st.sampled_from(live)))

    @invariant()
    def the_books_agree(self) -> None:
        wire = self.wire
        for token, item in wire.inflight.items():
            assert item.token == token
            assert item.state == SENT
        for name, lane in wire.lanes.items():
            assert lane.outstanding == len(wire.tokens_of(name))
            assert all(item.state == WAITING for item in lane.waiting)
            assert not lane.sent or lane.sent[0].state != DONE
            assert lane.retrying == (name in wire.retries)
            assert lane.halted or not lane.waiting  # only a halted lane holds publishes back

    def teardown(self) -> None:
        wire = self.wire
        wire.settle_all()
        outcomes = [*wire.stored, *wire.handed_back, *wire.dropped]
        accepted = [item for items in wire.accepted.values() for item in items]
        assert sorted(map(id, outcomes)) == sorted(map(id, accepted))  # each exactly once
        assert all(item.state == DONE for item in accepted)
        for lane in wire.lanes.values():
            assert lane.idle
            assert lane.dropped or not lane.halted


TestLaneMachine = LaneMachine.TestCase
TestLaneMachine.settings = settings(max_examples=400, stateful_step_count=50, deadline=None)
