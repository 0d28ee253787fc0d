"""bridge.jetstream.publisher without a broker: the real ``JetStreamSink`` on a fake client.

The fake stands in for ``bridge.jetstream.client.InboxClient`` (the sink's one seam to nats-py): it
records the frames written and hands the test the sink's reply callbacks, so the test plays the
server: PubAcks, status replies, JetStream errors, a lost connection, a write that fails.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from bridge.core.errors import (
    JetStreamError,
    NoStreamError,
    ReconnectsExhausted,
    RecordError,
)
from bridge.core.frames import encode_headers, frame_head
from bridge.core.routing import Envelope
from bridge.jetstream.client import INBOX_PREFIX_LEN
from bridge.jetstream.options import ConnectOptions
from bridge.jetstream.publisher import JetStreamSink

PREFIX = b"_INBOX." + b"A" * 22 + b"."
TOO_LARGE = b'{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}'
FRAME = re.compile(rb"HPUB (\S+) " + re.escape(PREFIX) + rb"(\d+) ")


class FakeClient:
    """What the sink uses of ``InboxClient``; the test answers its writes through ``on_puback`` and
    ``on_reply``."""

    max_payload = 1024 * 1024
    server_name = "fake"

    def __init__(self) -> None:
        self.blobs: list[bytes] = []
        self.is_connected = False
        self.is_closed = False
        self.fail_writes: BaseException | None = None
        self.closed_cb: Callable[[], Any] | None = None
        self.on_puback: Callable[[int, int, bool, bytes], None] = lambda *a: None
        self.on_reply: Callable[[int, bytes, bytes], None] = lambda *a: None

    async def connect(self, **options: Any) -> None:
        self.closed_cb = options["closed_cb"]
        self.error_cb = options["error_cb"]
        self.is_connected = True
        self.is_closed = False

    def new_inbox_prefix(self) -> bytes:
        return PREFIX

    async def subscribe_inbox(self, prefix: bytes, on_puback: Any, on_reply: Any) -> None:
        assert prefix == PREFIX
        self.on_puback, self.on_reply = on_puback, on_reply

    async def flush(self, timeout: int = 10) -> None:  # noqa: ASYNC109 - nats-py's signature, faked
        return None

    async def write(self, blob: bytes) -> None:
        if self.fail_writes is not None:
            raise self.fail_writes
        self.blobs.append(blob)

    async def close(self) -> None:
        self.is_closed = True
        self.is_connected = False

    def sent(self) -> list[tuple[bytes, int]]:
        """(subject, token) of every frame written, in order."""
        return [(m.group(1), int(m.group(2))) for blob in self.blobs for m in FRAME.finditer(blob)]

    async def lose_connection(self) -> None:
        self.is_connected = False
        self.is_closed = True
        assert self.closed_cb is not None
        await self.closed_cb()


class Outcomes:
    def __init__(self) -> None:
        self.acked: list[tuple[Any, int, bool, bytes]] = []
        self.failed: list[tuple[Any, BaseException]] = []

    def on_ack(self, ctx: Any, seq: int, duplicate: bool, stream: bytes) -> None:
        self.acked.append((ctx, seq, duplicate, stream))

    def on_fail(self, ctx: Any, exc: BaseException) -> None:
        self.failed.append((ctx, exc))


async def started(fake: FakeClient, outcomes: Outcomes, **kwargs: Any) -> JetStreamSink[Any]:
    options = {"max_in_flight": 100, "ack_timeout": 30.0, "retry_timeout": 30.0, "max_reconnects": 0}
    sink: JetStreamSink[Any] = JetStreamSink(
        ConnectOptions(servers=["nats://fake:4222"]), on_ack=outcomes.on_ack, on_fail=outcomes.on_fail,
        client=lambda: fake, **{**options, **kwargs},  # type: ignore[arg-type] # the fake is duck-typed
    )  # fmt: skip # the sink's options, then the test's seam
    await sink.start()
    return sink


def envelopes(n: int, subject: str = "s.0") -> list[Envelope]:
    return [
        Envelope.build(subject, frame_head(subject), encode_headers([]), b"v%d" % i, "") for i in range(n)
    ]


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # a poll with a deadline: the sink's state has no event to wait on
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_publishes_are_written_in_order_and_acks_hand_back_their_context() -> None:
    fake, outcomes = FakeClient(), Outcomes()
    sink = await started(fake, outcomes)
    lane = sink.lane("t/0")
    assert sink.stage(lane, [(e, i) for i, e in enumerate(envelopes(3))]) == 3
    assert fake.sent() == []  # staged: written by the next flush, as one command
    await sink.flush()
    assert len(fake.blobs) == 1
    tokens = [token for _, token in fake.sent()]
    assert tokens == sorted(tokens)
    assert sink.in_flight == 3
    for n, token in enumerate(tokens):
        fake.on_puback(token, 100 + n, n == 2, b"S")
    assert outcomes.acked == [(0, 100, False, b"S"), (1, 101, False, b"S"), (2, 102, True, b"S")]
    assert sink.in_flight == 0
    assert lane.idle
    fake.on_puback(tokens[0], 100, False, b"S")  # a late duplicate reply: ignored
    stats = sink.statistics()
    assert (stats.sent, stats.acked, stats.duplicates, stats.connected) == (3, 3, 1, True)
    assert len(PREFIX) == INBOX_PREFIX_LEN
    await sink.aclose()
    await sink.aclose()  # idempotent
    assert fake.is_closed


async def test_replies_are_decoded_a_permanent_error_is_handed_back_a_retriable_one_resent() -> None:
    fake, outcomes = FakeClient(), Outcomes()
    sink = await started(fake, outcomes)
    lane = sink.lane("t/0")
    sink.stage(lane, [(e, i) for i, e in enumerate(envelopes(2))])
    await sink.flush()
    (_, first), (_, second) = fake.sent()
    fake.on_reply(first, TOO_LARGE, b"")
    ((ctx, error),) = outcomes.failed
    assert ctx == 0
    assert isinstance(error, JetStreamError)
    assert not error.retriable
    assert not lane.halted  # the lane keeps flowing
    fake.on_reply(second, b"", b"NATS/1.0 503\r\n\r\n")  # no responders: retriable
    assert lane.halted
    assert isinstance(lane.error, NoStreamError)
    await until(lambda: len(fake.sent()) == 3)  # after the backoff: the probe, alone
    _, probe = fake.sent()[-1]
    fake.on_reply(probe, b'{"stream":"S","seq":7,"duplicate":false,"domain":"x","batch":"b"}', b"")
    assert outcomes.acked == [(1, 7, False, b"S")]  # a PubAck the fast path did not take
    await until(lambda: not lane.halted)
    assert sink.statistics().resent == 1
    await sink.aclose()


async def test_a_lane_whose_last_publish_failed_for_good_is_idle_at_once() -> None:
    """A revocation waits for its lane to settle (``wait_lane_idle``): a permanent failure settles a
    publish as an ack does, so the wait ends then, not at ``revoke_timeout``."""
    fake, outcomes = FakeClient(), Outcomes()
    sink = await started(fake, outcomes)
    lane = sink.lane("t/0")
    sink.stage(lane, [(e, i) for i, e in enumerate(envelopes(2))])
    await sink.flush()
    (_, first), (_, second) = fake.sent()
    waiting = asyncio.ensure_future(sink.wait_lane_idle(lane))
    fake.on_puback(first, 1, False, b"S")
    await asyncio.sleep(0)
    assert not waiting.done()  # the second is still on the wire
    fake.on_reply(second, TOO_LARGE, b"")
    await asyncio.wait_for(waiting, 1)
    assert lane.idle
    assert [ctx for ctx, _ in outcomes.failed] == [1]
    await sink.aclose()


async def test_a_failing_background_task_ends_the_sink_instead_of_being_dropped() -> None:
    fake, outcomes = FakeClient(), Outcomes()
    sink = await started(fake, outcomes)
    lane = sink.lane("t/0")
    fake.fail_writes = RuntimeError("the socket is gone")
    (envelope,) = envelopes(1)
    sink.publish_nowait([(lane, envelope, "ctx")])  # written by a task of the sink's group
    with pytest.raises(RuntimeError, match="the socket is gone"):
        async with asyncio.timeout(5):
            await sink.wait_failed()
    await sink.aclose()


async def test_a_lost_connection_without_reconnects_is_fatal_after_halting_the_lanes() -> None:
    fake, outcomes = FakeClient(), Outcomes()
    sink = await started(fake, outcomes)
    lane = sink.lane("t/0")
    sink.stage(lane, [(e, i) for i, e in enumerate(envelopes(2))])
    await sink.flush()
    await fake.lose_connection()
    assert lane.halted
    assert lane.outstanding == 0
    assert sink.in_flight == 2  # not acknowledged, not handed back: waiting for a connection
    with pytest.raises(ReconnectsExhausted):
        async with asyncio.timeout(5):
            await sink.wait_failed()
    await sink.aclose()


async def test_a_dropped_lane_abandons_its_publishes_and_ignores_their_replies() -> None:
    fake, outcomes = FakeClient(), Outcomes()
    sink = await started(fake, outcomes)
    lane = sink.lane("t/0")
    sink.stage(lane, [(e, i) for i, e in enumerate(envelopes(3))])
    await sink.flush()
    tokens = [token for _, token in fake.sent()]
    fake.on_puback(tokens[0], 1, False, b"S")
    assert sink.drop_lane(lane) == 2
    assert sink.in_flight == 0
    fake.on_puback(tokens[1], 2, False, b"S")
    assert [ctx for ctx, *_ in outcomes.acked] == [0]
    assert sink.lane("t/0") is not lane  # a partition assigned again gets a new lane
    await sink.aclose()


async def test_a_server_back_with_a_smaller_max_payload_is_never_sent_a_publish_over_it() -> None:
    """nats-server restarted with a lower max_payload: a publish routed under the old one is not re-sent
    (the server would close the connection again, forever) but handed back as a record error of kind
    size; the rest of its lane is re-sent; the caller learns the new max_payload to route by."""
    fake, outcomes = FakeClient(), Outcomes()
    fake.max_payload = 8192
    seen: list[int] = []
    sink = await started(
        fake, outcomes, max_reconnects=3, reconnect_wait=0.01, on_connected=seen.append
    )  # fmt: skip
    lane = sink.lane("t/0")
    big = Envelope.build("s.0", frame_head("s.0"), encode_headers([]), b"x" * 6000, "")
    small = envelopes(2)
    sink.stage(lane, [(small[0], "a"), (big, "big"), (small[1], "b")])
    await sink.flush()
    assert len(fake.sent()) == 3
    fake.blobs.clear()
    fake.max_payload = 4096
    await fake.lose_connection()
    await until(lambda: seen == [8192, 4096])
    await until(lambda: len(fake.sent()) >= 1)  # the probe: the first unstored publish, alone
    fake.on_puback(fake.sent()[0][1], 1, False, b"S")
    await until(lambda: len(fake.sent()) == 2)
    fake.on_puback(fake.sent()[1][1], 2, False, b"S")
    assert [ctx for ctx, *_ in outcomes.acked] == ["a", "b"]
    ((ctx, error),) = outcomes.failed
    assert ctx == "big"
    assert isinstance(error, RecordError)
    assert error.kind == "size"
    assert "4096" in error.reason
    assert all(len(blob) < 4096 for blob in fake.blobs)  # never written
    await sink.aclose()


async def test_a_record_the_server_closes_the_connection_over_is_handed_back_after_three_tries() -> None:
    """A frame the server refuses by closing the connection (a limit the bridge cannot check, such as a
    lower max_control_line): sent alone as the retry's probe, the connection is lost each time; the
    third time it is handed back as a record error and the lane goes on."""
    fake, outcomes = FakeClient(), Outcomes()
    sink = await started(fake, outcomes, max_reconnects=-1, reconnect_wait=0.01)
    lane = sink.lane("t/0")
    poison, ok = envelopes(2)
    sink.stage(lane, [(poison, "poison"), (ok, "ok")])
    await sink.flush()
    for attempt in range(3):
        fake.blobs.clear()
        await fake.lose_connection()
        await until(lambda: len(fake.sent()) == 1)  # the probe, alone
        assert outcomes.failed == [], attempt
    fake.blobs.clear()
    await fake.lose_connection()
    await until(lambda: len(fake.sent()) == 1)  # given up: the lane goes on with the next record
    ((ctx, error),) = outcomes.failed
    assert ctx == "poison"
    assert isinstance(error, RecordError)
    assert error.kind == "connection_closed"
    assert "max_control_line" in error.reason
    fake.on_puback(fake.sent()[0][1], 1, False, b"S")
    await until(lambda: [c for c, *_ in outcomes.acked] == ["ok"])
    assert sink.in_flight == 0
    await sink.aclose()
