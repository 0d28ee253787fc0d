"""Routing and frame encoding against a real nats-server: every frame the router builds is accepted and
stored byte for byte, or the record is refused (``RecordError``) before anything is sent.

README, "Bad records" and "Text rules"; bridge.core.frames's list of the limits nats-server enforces.

Two parts:

- **the limits are the server's** (deterministic): on a raw connection, frames exactly at each limit the
  router checks are accepted, one byte over is refused by the server — which closes the connection for
  the control line — and the router refuses exactly those; reserved subjects get a permissions error.
- **the property** (Hypothesis): random subject templates built from a small grammar (static tokens,
  dots, wildcards, whitespace, non-ASCII, ``${! meta(...) }`` of the key, the topic, the partition and a
  record header, the payload), configured headers, metadata filters, random keys (bytes, not UTF-8
  included, some long enough for the control line), record headers (random names, values up to past
  64 KiB) and payloads (tombstones included, some near ``max_payload``). Each record is routed by the
  real ``Router`` and published by the real ``JetStreamSink`` (the bridge's own connection, reply
  inbox and frame writes) to a stream on ``p.>``; the test then reads each stored message back through
  ``$JS.API.STREAM.MSG.GET`` and compares subject, raw header block and payload with the frame. The
  connection must never be closed by the server, and nothing may fail but a ``RecordError`` raised
  before sending. ``max_examples`` keeps it to a few seconds.

The sink runs on its own event loop in a thread (Hypothesis drives synchronous tests), on a
nats-server of this module with the default limits.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import string
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats
import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from bridge.core.config import Loaded, parse
from bridge.core.errors import ConfigError, RecordError
from bridge.core.frames import MAX_HEADER_BYTES
from bridge.core.message import Message
from bridge.core.routing import Envelope, Router
from bridge.jetstream.options import connect_options
from bridge.jetstream.publisher import INBOX_PREFIX_LEN, MAX_REPLY_LEN, JetStreamSink
from bridgedev import brokers as devenv
from tests.support import create_stream

pytestmark = pytest.mark.integration

T = TypeVar("T")
STREAM = "WIRE_PROPS"
TOPIC = "wire"


class Portal:
    """An event loop in a thread: ``call`` runs a coroutine there and waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="wire-props", daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class Outcome:
    """What became of one publish: a PubAck's stream sequence, or the failure the sink reported."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    seq: int | None = None
    duplicate: bool = False
    error: BaseException | None = None


class Publisher:
    """The bridge's ``JetStreamSink``, with a result per publish. It reconnects (at once, forever) when the
    server closes its connection, so one failing example does not fail the next ones while Hypothesis
    shrinks: each example checks that the reconnection count did not change."""

    def __init__(self, loaded: Loaded) -> None:
        self.loaded = loaded
        self.sink: JetStreamSink | None = None
        self.nc: Any = None  # a plain nats-py connection for reading the stream back
        self._lanes = itertools.count()

    async def start(self, url: str) -> None:
        self.sink = JetStreamSink(
            connect_options(self.loaded.output, "wire-props"), max_in_flight=1024, ack_timeout=3.0,
            retry_timeout=3.0, max_reconnects=-1, reconnect_wait=0.05, on_ack=self._on_ack, on_fail=self._on_fail,
        )  # fmt: skip
        await self.sink.start()
        self.nc = await nats.connect(url)

    @staticmethod
    def _on_ack(ctx: Outcome, seq: int, duplicate: bool, stream: bytes) -> None:
        ctx.seq = seq
        ctx.duplicate = duplicate
        ctx.done.set()

    @staticmethod
    def _on_fail(ctx: Outcome, exc: BaseException) -> None:
        ctx.error = exc
        ctx.done.set()

    async def publish(self, envelopes: list[Envelope]) -> list[Outcome]:
        """Publish on a lane of their own and wait, polling with a deadline, until each is settled or the
        lane halted on a retriable failure (a lost connection, an ack timeout, a JetStream error): the
        unsettled ones then carry the lane's error. The lane is dropped after."""
        assert self.sink is not None
        outcomes = [Outcome() for _ in envelopes]
        lane = self.sink.lane(f"props-{next(self._lanes)}")
        self.sink.stage(lane, list(zip(envelopes, outcomes, strict=True)))
        await self.sink.flush()
        deadline = time.monotonic() + self.sink.ack_timeout + 1
        # a poll with a deadline: a halted lane sets no event
        while (  # noqa: ASYNC110 - lane.error (the sink's state) has no event to wait on
            not all(o.done.is_set() for o in outcomes) and lane.error is None and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.005)
        for outcome in outcomes:
            if not outcome.done.is_set():
                outcome.error = lane.error or TimeoutError("no acknowledgement")
        self.sink.drop_lane(lane)
        return outcomes

    async def stored(self, seq: int) -> tuple[str, bytes, bytes]:
        """(subject, raw header block, payload) of the stream's message ``seq``."""
        reply = await self.nc.request(
            f"$JS.API.STREAM.MSG.GET.{STREAM}", json.dumps({"seq": seq}).encode(), 5
        )
        message = json.loads(reply.data)["message"]
        return (message["subject"], base64.b64decode(message.get("hdrs") or ""),
                base64.b64decode(message.get("data") or ""))  # fmt: skip

    async def aclose(self) -> None:
        if self.sink is not None:
            await self.sink.aclose()
        if self.nc is not None:
            await self.nc.close()


def config_doc(url: str, subject: str, headers: dict[str, str], metadata: dict[str, list[str]],
               dead_letter: str | None = None) -> str:  # fmt: skip
    out: dict[str, Any] = {"urls": [url], "subject": subject, "max_reconnects": 0}
    if headers:
        out["headers"] = headers
    if metadata:
        out["metadata"] = metadata
    doc: dict[str, Any] = {
        "input": {"kafka_franz": {"seed_brokers": ["127.0.0.1:9"], "topics": [TOPIC], "consumer_group": "g"}},
        "output": {"nats_jetstream": out},
    }
    if dead_letter is not None:
        doc["bridge"] = {"dead_letter": {"subject": dead_letter}}
    return yaml.safe_dump(doc)


@dataclass
class Env:
    server: devenv.NatsServer
    portal: Portal
    publisher: Publisher
    offsets: Iterator[int]  # unique offsets, so the default Nats-Msg-Ids never repeat across examples


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with devenv.NatsServer(name="wire-props") as server:
        portal = Portal()
        publisher = Publisher(parse(config_doc(server.url, "p.x", {}, {}), environ={}))
        try:
            portal.call(create_stream(server.url, STREAM, ["p.>"]))
            portal.call(publisher.start(server.url))
            yield Env(server, portal, publisher, itertools.count(1000))  # below 1000: the raw publishes
        finally:
            portal.call(publisher.aclose())
            portal.close()


def router_for(loaded: Loaded, sink: JetStreamSink) -> Router:
    """The router as the pipeline builds it."""
    return Router(
        loaded.templates, loaded.output.metadata, sink.max_payload,
        max_control_line=loaded.config.bridge.max_control_line, reply=MAX_REPLY_LEN,
    )  # fmt: skip


# ----------------------------------------------------------------------------------- the limits are the server's


async def raw_publish(url: str, frame: bytes) -> bytes:
    """Send ``frame`` then PING on a fresh raw connection; what the server answered until PONG, EOF (the
    server closed the connection) or 5 s. The reply subjects are ``_INBOX.raw.>``."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        await reader.readline()  # INFO
        writer.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,'
                     b'"protocol":1}\r\nSUB _INBOX.raw.> 1\r\n' + frame + b"PING\r\n")  # fmt: skip
        await writer.drain()
        said = b""
        try:
            async with asyncio.timeout(5):
                while b"PONG\r\n" not in said:
                    chunk = await reader.read(65536)
                    if not chunk:
                        return said + b"<closed>"
                    said += chunk
                if b"HPUB" in frame and b"-ERR" not in said:
                    while b"MSG _INBOX.raw." not in said:  # the PubAck follows the PONG
                        chunk = await reader.read(65536)
                        if not chunk:
                            return said + b"<closed>"
                        said += chunk
        except TimeoutError:
            said += b"<timeout>"
        return said
    finally:
        writer.close()


def longest_reply() -> bytes:
    """A reply subject as long as any the sink sends: ``_INBOX.raw.`` padded to the inbox prefix's length,
    then 20 digits."""
    prefix = b"_INBOX.raw."
    return (
        prefix
        + b"r" * (INBOX_PREFIX_LEN - len(prefix) - 1)
        + b"."
        + b"9" * (MAX_REPLY_LEN - INBOX_PREFIX_LEN)
    )


def test_limits_match_the_server(env: Env) -> None:
    """At each limit the router checks the server stores the frame; one byte over, the router refuses the
    record and the server refuses the frame."""
    sink = env.publisher.sink
    assert sink is not None
    reply = longest_reply()
    assert len(reply) == MAX_REPLY_LEN

    def frame_of(envelope: Envelope) -> bytes:
        return envelope.head + reply + envelope.tail

    # the control line: a subject from the key, at 4096 bytes and at 4097
    loaded = parse(config_doc(env.server.url, 'p.${! meta("kafka_key") }', {}, {}), environ={})
    router = router_for(loaded, sink)
    hlen = len(b"NATS/1.0\r\nNats-Msg-Id: wire-0-7\r\n\r\n")
    fixed = len("p.") + MAX_REPLY_LEN + 3 + len(str(hlen)) * 2  # an empty payload: total == hlen
    at_limit = Message(TOPIC, 0, 7, b"k" * (4096 - fixed), b"", 0)
    over = Message(TOPIC, 0, 7, b"k" * (4097 - fixed), b"", 0)
    envelope = router.route(at_limit)
    assert len(frame_of(envelope).split(b"\r\n", 1)[0]) - len(b"HPUB ") == 4096
    said = env.portal.call(raw_publish(env.server.url, frame_of(envelope)))
    assert b"-ERR" not in said, said[:300]
    assert b'"stream":"' + STREAM.encode() in said, said[:300]
    with pytest.raises(RecordError) as info:
        router.route(over)
    assert info.value.kind == "control_line"
    unchecked = envelope.head[:-1] + b"k " + reply + envelope.tail  # the same frame, one byte longer
    said = env.portal.call(raw_publish(env.server.url, unchecked))
    assert said.lower().startswith(b"-err 'maximum control line exceeded'"), said[:300]
    assert said.endswith(b"<closed>")

    # the header block: 65,535 bytes stored, 65,536 refused by JetStream
    loaded = parse(config_doc(env.server.url, "p.h", {}, {"include_patterns": ["^pad$"]}), environ={})
    router = router_for(loaded, sink)
    base = len(b"NATS/1.0\r\npad: \r\nNats-Msg-Id: wire-0-8\r\n\r\n")
    envelope = router.route(Message(TOPIC, 0, 8, None, b"x", 0, [("pad", b"p" * (MAX_HEADER_BYTES - base))]))
    said = env.portal.call(raw_publish(env.server.url, frame_of(envelope)))
    assert b'"stream":"' + STREAM.encode() in said, said[:300]
    with pytest.raises(RecordError) as info:
        router.route(Message(TOPIC, 0, 9, None, b"x", 0, [("pad", b"p" * (MAX_HEADER_BYTES + 1 - base))]))
    assert info.value.kind == "header_size"
    unchecked = (
        envelope.head
        + reply
        + envelope.tail.replace(b"pad: p", b"pad: pp", 1)
        .replace(b"wire-0-8", b"wire-0-9")
        .replace(
            b" %d %d\r\n" % (MAX_HEADER_BYTES, MAX_HEADER_BYTES + 1),
            b" %d %d\r\n" % (MAX_HEADER_BYTES + 1, MAX_HEADER_BYTES + 2),
            1,
        )
    )
    said = env.portal.call(raw_publish(env.server.url, unchecked))
    assert b"header size exceeds maximum allowed of 64k" in said, said[:300]

    # reserved subjects: a fixed one is refused by the config (lint), one made from the record by the
    # router; the server answers them with a permissions error only
    keyed = parse(config_doc(env.server.url, '${! meta("kafka_key") }', {}, {}), environ={})
    for subject in ("$NRG.x", "_GR_.x"):
        with pytest.raises(ConfigError, match="reserves"):
            parse(config_doc(env.server.url, subject, {}, {}), environ={})
        with pytest.raises(RecordError, match="reserves"):
            router_for(keyed, sink).route(Message(TOPIC, 0, 10, subject.encode(), b"x", 0))
        said = env.portal.call(
            raw_publish(
                env.server.url, b"HPUB %b %b 12 13\r\nNATS/1.0\r\n\r\nx\r\n" % (subject.encode(), reply)
            )
        )
        assert b"Permissions Violation for Publish" in said, said[:300]


# ----------------------------------------------------------------------------------- the property

WORD = st.text(alphabet="abcXYZ019-_é", min_size=1, max_size=6)  # non-ASCII included
ODD = st.sampled_from(["*", ">", "a b", "\t", "\u00a0", "$", "..", "x*", ">y"])  # wildcards, whitespace
META = st.sampled_from([
    '${! meta("kafka_key") }', '${! meta("kafka_key") }', '${! meta("kafka_topic") }',
    '${! meta("kafka_partition") }', '${! meta("h") }', '${! content() }',
])  # fmt: skip
PIECE = st.one_of(WORD, WORD, META, META, META, ODD)
TOKEN = st.lists(PIECE, min_size=1, max_size=2).map("".join)  # a subject token, made of one or two pieces
HEADER_NAME = st.one_of(
    st.sampled_from(["h", "X-Trace", "Nats-Msg-Id", "nats-expected-last-sequence", "kafka_key"]),
    st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=12),
    st.text(alphabet=": é\x7f", min_size=1, max_size=3),  # not header names
)
LONG = st.integers(3900, 4150).map(lambda n: Filler(n, b"k"))  # keys that put a subject near the control line


@st.composite
def keys(draw: st.DrawFn) -> bytes | Filler | None:
    return draw(st.one_of(
        st.none(),
        st.text(alphabet="abc-_é€", min_size=1, max_size=16).map(str.encode),
        st.binary(max_size=24),  # not UTF-8, control bytes: U+FFFD in metadata
        LONG, LONG,
        st.integers(1300, 1400).map(lambda n: Filler(n, b"\xff")),  # U+FFFD is 3 bytes: ~4 KB in a subject
    ))  # fmt: skip


@dataclass(frozen=True)
class Filler:
    """``size`` bytes of one value, drawn as a size so a failing example prints short."""

    size: int
    byte: bytes

    @property
    def bytes(self) -> bytes:
        return self.byte * self.size


@st.composite
def header_values(draw: st.DrawFn) -> bytes | Filler:
    if draw(st.integers(0, 12)) == 0:
        return Filler(draw(st.integers(65400, 65600)), b"v")  # around JetStream's 64 KiB for the header block
    return draw(st.binary(max_size=40))


@st.composite
def payloads(draw: st.DrawFn) -> bytes | Filler | None:
    if draw(st.integers(0, 25)) == 0:
        return Filler(draw(st.integers(1024 * 1024 - 200, 1024 * 1024 + 10)), b"x")  # around max_payload
    return draw(st.none() | st.binary(max_size=64))


def real(value: bytes | Filler | None) -> bytes | None:
    return value.bytes if isinstance(value, Filler) else value


@st.composite
def setups(draw: st.DrawFn) -> tuple[str, dict[str, str], dict[str, list[str]], str | None]:
    subject = ".".join(["p", *draw(st.lists(TOKEN, min_size=1, max_size=4))])  # the stream binds p.>
    headers = draw(st.dictionaries(st.sampled_from(["X-A", "X-Key"]),
                                   st.sampled_from(["static", '${! meta("kafka_key") }', '${! meta("h") }']),
                                   max_size=2))  # fmt: skip
    if draw(st.booleans()):
        headers["Nats-Expected-Stream"] = STREAM  # a server-interpreted header, configured on purpose
    metadata = draw(st.sampled_from([{}, {"include_prefixes": ["kafka_"]}, {"include_patterns": ["."]}]))
    dead_letter = draw(st.sampled_from([None, "p.dlq", 'p.dlq.${! meta("kafka_key") }']))
    return subject, headers, metadata, dead_letter


RECORDS = st.lists(
    st.tuples(keys(), payloads(), st.lists(st.tuples(HEADER_NAME, header_values()), max_size=3)),
    min_size=1, max_size=4,
)  # fmt: skip


@settings(max_examples=300, deadline=None, database=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])  # fmt: skip
@given(setup=setups(), records=RECORDS)
def test_frames_are_stored_as_built_or_refused_before_sending(
    env: Env, setup: tuple[str, dict[str, str], dict[str, list[str]], str | None],
    records: list[tuple[bytes | Filler | None, bytes | Filler | None, list[tuple[str, bytes | Filler]]]],
) -> None:  # fmt: skip
    """Every record, and the dead-letter publish of every refused one, is stored exactly as routed or
    refused by the router."""
    subject, headers, metadata, dead_letter = setup
    try:
        loaded = parse(config_doc(env.server.url, subject, headers, metadata, dead_letter), environ={})
    except ConfigError as exc:
        # refused before any record: a subject whose fixed part can never be stored (lint says so too)
        refused = exc
    else:
        refused = None
    if refused is not None:
        assert all(p.path.endswith("subject") for p in refused.problems), refused
        event("config refused")
        return
    sink = env.publisher.sink
    assert sink is not None
    router = router_for(loaded, sink)
    before = sink.statistics()
    envelopes = []
    for key, value, record_headers in records:
        pairs = [(name, real(raw) or b"") for name, raw in record_headers]
        msg = Message(TOPIC, 0, next(env.offsets), real(key), real(value), 1_700_000_000_000, pairs)
        try:
            envelopes.append(router.route(msg))
            event("routed")
        except RecordError as exc:
            event(f"refused: {exc.kind}")
            if router.has_dead_letter:
                try:
                    envelopes.append(router.dead_letter(msg, exc))
                    event("dead-lettered")
                except RecordError as dead:
                    event(f"dead letter refused: {dead.kind}")
    if not envelopes:
        return
    outcomes = env.portal.call(env.publisher.publish(envelopes))
    for envelope, outcome in zip(envelopes, outcomes, strict=True):
        assert outcome.error is None, f"{envelope.subject[:80]!r}: {outcome.error}"
        assert outcome.seq is not None
        assert not outcome.duplicate
        line = len(envelope.head) - len(b"HPUB ") + MAX_REPLY_LEN + len(envelope.pre.split(b"\r\n", 1)[0])
        event("stored, control line over 4,000 bytes" if line > 4000 else "stored")
        stored_subject, stored_headers, stored_data = env.portal.call(env.publisher.stored(outcome.seq))
        assert stored_subject == envelope.subject
        assert (
            stored_headers == envelope.pre.split(b"\r\n", 1)[1]
        )  # pre: the sizes line, then the header block
        assert stored_data == envelope.payload
    after = sink.statistics()
    assert after.reconnects == before.reconnects, "the server closed the bridge's connection"
    assert after.failures == before.failures
    assert after.connected
