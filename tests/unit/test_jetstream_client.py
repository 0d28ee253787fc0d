"""bridge.jetstream.client: the shape of nats-py it relies on, and the reply inbox's parser (PubAck frames
in one match, everything else as nats-py does).

The first test fails when the installed nats-py no longer has what the client uses of its internals.
The fake client below only records what the parser dispatches; the parser is pure code over bytes.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import re
from typing import Any

import pytest
from nats.protocol.parser import Parser

from bridge.jetstream.client import InboxParser

PREFIX = b"_INBOX.abcDEF123."
SID = 7


class Recorder:
    """Stands in for nats-py's client: records each dispatch as a tuple."""

    def __init__(self, as_acks: bool = False) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.as_acks = as_acks  # record plain PubAcks as the fast path reports them

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        if self.as_acks and sid == SID and not headers and data.startswith(b"{"):
            body = json.loads(data)
            if set(body) <= {"stream", "seq", "duplicate", "domain"}:
                # what the fast path reports for the same frame
                token = int(subject[len(PREFIX) :])
                self.events.append(
                    ("ack", token, body["seq"], bool(body.get("duplicate")), body["stream"].encode())
                )
                return
        self.events.append(("msg", sid, subject, reply, data, headers))

    async def _process_err(self, err: str) -> None:
        self.events.append(("err", err))

    async def _process_ping(self) -> None:
        self.events.append(("ping",))

    async def _process_pong(self) -> None:
        self.events.append(("pong",))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.events.append(("info", info))


def inbox_parser(nc: Recorder) -> InboxParser:
    from bridge.jetstream.client import puback_frame

    parser = InboxParser(nc)  # type: ignore[arg-type]
    parser.puback = puback_frame(PREFIX, SID)
    parser.on_puback = lambda token, seq, dup, stream: nc.events.append(("ack", token, seq, dup, stream))
    return parser


def msg(subject: bytes, sid: int, payload: bytes, reply: bytes = b"") -> bytes:
    middle = b" " + reply if reply else b""
    return b"MSG %b %d%b %d\r\n%b\r\n" % (subject, sid, middle, len(payload), payload)


def hmsg(subject: bytes, sid: int, headers: bytes, payload: bytes) -> bytes:
    return b"HMSG %b %d %d %d\r\n%b%b\r\n" % (
        subject,
        sid,
        len(headers),
        len(headers) + len(payload),
        headers,
        payload,
    )


def ack(token: int, body: bytes) -> bytes:
    return msg(PREFIX + str(token).encode(), SID, body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"stream":"ORDERS","seq":1}', (1, False, b"ORDERS")),
        (b'{"stream":"ORDERS","seq":42,"duplicate": true}', (42, True, b"ORDERS")),  # nats-server's spacing
        (b'{"stream":"ORDERS","seq":42,"duplicate":true}', (42, True, b"ORDERS")),
        (b'{"stream":"O","domain":"hub","seq":7}', (7, False, b"O")),
    ],
)
def test_pubacks_take_the_fast_path(body: bytes, expected: tuple[int, bool, bytes]) -> None:
    nc = Recorder()
    parser = inbox_parser(nc)
    seen: list[tuple[Any, ...]] = []
    parser.on_puback = lambda *args: seen.append(args)
    asyncio.run(parser.parse(ack(99, body)))
    assert seen == [(99, *expected)]
    assert nc.events == []
    assert parser.buf == b""


@pytest.mark.parametrize(
    "frame",
    [
        ack(5, b'{"error":{"code":503,"err_code":10077,"description":"stream offline"}}'),
        ack(5, b'{"stream":"ORDERS","seq":1,"batch":"b1"}'),  # a field a later server adds
        ack(5, b'{"stream":"OR\\"D","seq":1}'),  # an escaped quote: json decides
        hmsg(PREFIX + b"5", SID, b"NATS/1.0 503\r\n\r\n", b""),  # no responders
        msg(PREFIX + b"5", SID + 1, b'{"stream":"ORDERS","seq":1}'),  # another subscription
        # a payload that starts like a PubAck: the size in the control line decides
        ack(5, b'{"stream":"ORDERS","seq":1}\r\n0123456789'),
    ],
)
def test_everything_else_goes_to_process_msg(frame: bytes) -> None:
    nc = Recorder()
    parser = inbox_parser(nc)
    parser.on_puback = lambda *args: pytest.fail(f"fast path took {args}")
    asyncio.run(parser.parse(frame))
    assert [e[0] for e in nc.events] == ["msg"]
    assert parser.buf == b""


def conversation(rng: random.Random) -> bytes:
    frames = [b'INFO {"server_id":"x","max_payload":1048576}\r\n', b"+OK\r\n"]
    for token in range(1, 400):
        kind = rng.random()
        if kind < 0.7:
            dup = b',"duplicate": true' if rng.random() < 0.2 else b""
            frames.append(ack(token, b'{"stream":"S%d","seq":%d%b}' % (token % 3, token * 11, dup)))
        elif kind < 0.75:
            frames.append(hmsg(PREFIX + str(token).encode(), SID, b"NATS/1.0 503\r\n\r\n", b""))
        elif kind < 0.8:
            frames.append(hmsg(b"other.subject", 3, b"NATS/1.0\r\nA: b\r\n\r\n", b"payload\r\nwith CRLF"))
        elif kind < 0.85:
            frames.append(
                msg(b"_INBOX.req.1", 2, b'{"type":"io.nats.jetstream.api.v1.stream_info_response"}', b"r.1")
            )
        elif kind < 0.9:
            frames.append(msg(b"empty", 4, b""))
        elif kind < 0.93:
            frames.append(b"PING\r\n")
        elif kind < 0.96:
            frames.append(b"PONG\r\n")
        elif kind < 0.98:
            frames.append(ack(token, b'{"error":{"code":400,"description":"bad"}}'))
        else:
            frames.append(b"-ERR 'Stale Connection'\r\n")
    return b"".join(frames)


async def feed(parser: Parser, data: bytes, rng: random.Random) -> None:
    pos = 0
    while pos < len(data):
        step = rng.choice((1, 2, 7, 30, 100, 1000, 32768))
        await parser.parse(data[pos : pos + step])
        pos += step


@pytest.mark.parametrize("seed", range(20))
def test_agrees_with_nats_py_over_any_split(seed: int) -> None:
    rng = random.Random(seed)
    data = conversation(rng)
    ours, theirs = Recorder(), Recorder(as_acks=True)
    asyncio.run(feed(inbox_parser(ours), data, random.Random(seed * 7919)))
    asyncio.run(feed(Parser(theirs), data, random.Random(seed * 104729)))
    assert ours.events == theirs.events
    assert sum(1 for e in ours.events if e[0] == "ack") > 200


def test_unknown_protocol_is_an_error() -> None:
    from nats.errors import ProtocolError

    parser = inbox_parser(Recorder())
    with pytest.raises(ProtocolError):
        asyncio.run(parser.parse(b"WHAT is this\r\n"))


def test_a_reset_during_a_dispatch_drops_the_stale_bytes() -> None:
    nc = Recorder()
    parser = inbox_parser(nc)

    async def reset_on_ping() -> None:
        nc.events.append(("ping",))
        parser.reset()  # what nats-py does when the connection is re-made

    nc._process_ping = reset_on_ping  # type: ignore[method-assign]
    asyncio.run(parser.parse(b"PING\r\n" + ack(1, b'{"stream":"S","seq":1}')))
    assert nc.events == [("ping",)]
    assert parser.buf == b""


def test_the_client_hands_other_inbox_replies_over_with_their_token() -> None:
    from bridge.jetstream.client import InboxClient

    replies: list[tuple[int, bytes, bytes]] = []

    async def scenario() -> None:
        client = InboxClient()
        client.watch_inbox(
            PREFIX, SID, lambda *a: pytest.fail(f"fast path took {a}"), lambda *a: replies.append(a)
        )
        status = b"NATS/1.0 503\r\n\r\n"
        await client._process_msg(SID, PREFIX + b"12", b"", b"", status)
        await client._process_msg(SID, PREFIX + b"not-a-token", b"", b"x", b"")  # not ours: ignored
        await client._process_msg(SID + 1, PREFIX + b"13", b"", b"y", b"")  # another subscription
        assert client._ps.puback.pattern.startswith(b"MSG " + PREFIX.replace(b".", b"\\."))

    asyncio.run(scenario())
    assert replies == [(12, b"", b"NATS/1.0 503\r\n\r\n")]


# ---------------------------------------------------------------------------------------------- nats-py's shape


def params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_nats_py_still_has_the_shape_the_client_relies_on() -> None:
    """Every nats-py internal bridge.jetstream.client touches, as it uses it: names, signatures, types.
    A nats-py release that moves one of them fails here, not in production."""
    from nats.aio.client import Client
    from nats.aio.subscription import Subscription
    from nats.protocol import parser

    # what the client's write(), dispatch and parser override call, with the arguments they pass
    coroutines = {
        "_send_command": ["self", "cmd", "priority"],
        "_flush_pending": ["self", "force_flush"],
        "_process_msg": ["self", "sid", "subject", "reply", "data", "headers"],
        "_process_err": ["self", "err_msg"],
        "_process_ping": ["self"],
        "_process_pong": ["self"],
        "_process_info": ["self", "info", "initial_connection"],
        "subscribe": ["self", "subject", "queue", "cb", "future", "max_msgs", "pending_msgs_limit",
                      "pending_bytes_limit"],
        "flush": ["self", "timeout"],
        "close": ["self"],
        "_close": ["self", "status", "do_cbs"],  # InboxClient drops what is queued when nats-py closes itself
    }  # fmt: skip # one method per line, its parameters as nats-py names them
    for name, expected in coroutines.items():
        method = getattr(Client, name)
        assert inspect.iscoroutinefunction(method), name
        assert params(method)[: len(expected)] == expected, (name, params(method))
    for name in ("max_payload", "is_connected", "is_closed"):
        assert isinstance(getattr(Client, name), property), name

    # the state a client has from its constructor on: the parser (replaced by ours), the NUID, the INFO
    nc = Client()
    assert type(nc._ps) is parser.Parser
    assert isinstance(nc._ps.buf, bytearray)
    assert callable(nc._ps.reset)
    assert nc._ps.nc is nc
    assert params(parser.Parser.__init__) == ["self", "nc"]
    assert inspect.iscoroutinefunction(parser.Parser.parse)
    nuid = nc._nuid.next()
    assert isinstance(nuid, bytes | bytearray)
    assert len(nuid) == 22  # INBOX_PREFIX_LEN and so MAX_REPLY_LEN depend on it
    assert isinstance(nc._server_info, dict)
    assert nc._pending == []  # the write queue _close would flush
    assert nc._pending_data_size == 0
    assert Subscription(nc, id=7)._id == 7  # subscribe_inbox() reads the subscription's sid there

    # the control-line expressions the inbox parser matches with, and the groups it unpacks
    groups = {"MSG_RE": 5, "HMSG_RE": 6, "OK_RE": 0, "ERR_RE": 1, "PING_RE": 0, "PONG_RE": 0, "INFO_RE": 1}
    for name, count in groups.items():
        pattern = getattr(parser, name)
        assert isinstance(pattern, re.Pattern), name
        assert pattern.groups == count, name
    msg = parser.MSG_RE.match(b"MSG _INBOX.x.12 7 42\r\n")
    assert msg is not None
    assert msg.groups() == (b"_INBOX.x.12", b"7", None, None, b"42")
    hmsg = parser.HMSG_RE.match(b"HMSG _INBOX.x.12 7 r.1 16 20\r\n")
    assert hmsg is not None
    assert hmsg.groups() == (b"_INBOX.x.12", b"7", b"r.1 ", b"r.1", b"16", b"20")


def test_the_client_makes_inboxes_of_the_length_the_router_reserves() -> None:
    from bridge.jetstream.client import INBOX_PREFIX_LEN, MAX_REPLY_LEN, InboxClient

    client = InboxClient()
    prefix = client.new_inbox_prefix()
    assert len(prefix) == INBOX_PREFIX_LEN
    assert re.fullmatch(rb"_INBOX\.[0-9A-Za-z]{22}\.", prefix)
    assert client.new_inbox_prefix() != prefix
    assert MAX_REPLY_LEN == INBOX_PREFIX_LEN + 20
    assert isinstance(client._ps, InboxParser)
    assert client.server_name == ""
    client._server_info = {"server_name": "n1"}
    assert client.server_name == "n1"
