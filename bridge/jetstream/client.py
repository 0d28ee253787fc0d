"""nats-py's client as the publisher uses it: the one module that touches nats-py's internals.

Owns ``InboxClient``, nats-py's ``Client`` with small typed methods for what its public API does not
offer: ``write(blob)`` (pre-encoded frames handed to its write buffer as one command:
``_send_command`` + ``_flush_pending``), ``new_inbox_prefix()`` (a reply inbox from its ``_nuid``),
``server_name`` (from ``_server_info``), ``subscribe_inbox(...)`` (a wildcard subscription on that
inbox whose replies are read by the parser below; it needs the subscription's ``_id``) — and the
reply inbox's read path: PubAck frames parsed in one regex match each.

Every publish gets one reply, so reading replies costs as much as writing publishes. nats-py's
parser handles one frame per loop turn with a state machine: a regex for the control line, a
dict for its arguments, two copies of the payload, a coroutine call per message — then
``_process_msg`` builds a ``Msg``, queues it and wakes a task for it. Measured with py-spy on the
bench (1M records): nats-py's read loop was 47% of the bridge's CPU.

``InboxParser`` keeps nats-py's parser's behaviour and its dispatch to the client (``_process_msg``,
``_process_ping``, ``_process_info``, ...) for every frame, and adds one fast case: a whole
``MSG <inbox><token> <sid> <size>`` frame whose payload is a plain PubAck
(``{"stream":"S","seq":N}``, optionally with ``"domain"`` and ``"duplicate": true``) is matched by
one regex and handed to ``on_puback(token, seq, duplicate, stream)`` synchronously. Anything else
on the inbox — a status header (503 no responders), a JetStream error, a field a later server adds —
goes through ``InboxClient._process_msg`` to ``on_reply(subject, data, headers)``.

The parser keeps no state between reads but the unread bytes: an incomplete frame stays in the
buffer until the rest arrives. These nats-py internals (``Client._ps``, ``Client._nuid``,
``Client._server_info``, ``Client._send_command``, ``Client._flush_pending``, ``Client._process_*``,
``Client._close``, ``Client._pending``/``_pending_data_size``,
``Parser.buf``, ``Subscription._id``, the parser's regular expressions) are pinned by the nats-py
version range in pyproject.toml and covered by ``tests/unit/test_jetstream_client.py``: a test of the
shape relied on (it fails when the installed nats-py no longer has it), byte-for-byte agreement with
nats-py's parser over random splits; and by the integration and the fault suites.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from nats.aio.client import Client as NatsClient
from nats.errors import ProtocolError
from nats.protocol import parser as nats_parser

_CRLF = b"\r\n"
_NEVER = re.compile(rb"(?!)")

# Reply subjects are b"_INBOX.<nuid>.<token>": nats-py's NUIDs are 22 characters, tokens count up from 1
# (20 digits hold any 64-bit count). The router adds this to the control line it checks (bridge.core.frames).
INBOX_PREFIX_LEN = len("_INBOX.") + 22 + 1
MAX_REPLY_LEN = INBOX_PREFIX_LEN + 20

OnPubAck = Callable[[int, int, bool, bytes], None]  # (token, stream sequence, duplicate, stream name)
OnReply = Callable[[int, bytes, bytes], None]  # (token, payload, header block)


def puback_frame(prefix: bytes, sid: int) -> re.Pattern[bytes]:
    """The regex of one whole PubAck frame on the inbox ``prefix``; groups: token, size, body, stream,
    seq, duplicate (the size is checked against the body by the parser)."""
    return re.compile(
        rb"MSG "
        + re.escape(prefix)
        + rb"(\d+) "
        + str(sid).encode()
        + rb" (\d+)\r\n"
        + rb'(\{"stream":"([^"\\]*)",(?:"domain":"[^"\\]*",)?"seq":(\d+)(,\s*"duplicate":\s*true)?\})\r\n'
    )


class InboxParser(nats_parser.Parser):
    """nats-py's parser with a fast case for PubAcks on the reply inbox (see the module docstring)."""

    def __init__(self, nc: NatsClient) -> None:
        super().__init__(nc)
        self.puback: re.Pattern[bytes] = _NEVER
        self.on_puback: OnPubAck = _ignore

    async def parse(self, data: bytes = b"") -> None:
        buf = self.buf
        buf += data
        nc = self.nc
        pos = 0
        end = len(buf)
        match = self.puback.match
        on_puback = self.on_puback
        try:
            while pos < end:
                m = match(buf, pos)
                if m is not None:
                    token, size, body, stream, seq, duplicate = m.groups()
                    if int(size) == len(body):
                        pos = m.end()
                        on_puback(int(token), int(seq), duplicate is not None, stream)
                        continue
                eol = buf.find(_CRLF, pos)
                if eol < 0:
                    break  # an incomplete control line
                line = bytes(buf[pos : eol + 2])
                start = eol + 2
                if line.startswith(b"MSG"):
                    msg = nats_parser.MSG_RE.match(line)
                    if msg is None:
                        raise ProtocolError("nats: malformed MSG")
                    subject, sid, _, reply, size = msg.groups()
                    stop = start + int(size)
                    if stop + 2 > end:
                        break  # wait for the payload
                    payload = bytes(buf[start:stop])
                    pos = stop + 2
                    await nc._process_msg(int(sid), subject, reply or b"", payload, None)
                elif line.startswith(b"HMSG"):
                    msg = nats_parser.HMSG_RE.match(line)
                    if msg is None:
                        raise ProtocolError("nats: malformed MSG")
                    subject, sid, _, reply, header_size, size = msg.groups()
                    stop = start + int(size)
                    if stop + 2 > end:
                        break
                    split = start + int(header_size)
                    headers, payload = bytes(buf[start:split]), bytes(buf[split:stop])
                    pos = stop + 2
                    await nc._process_msg(int(sid), subject, reply or b"", payload, headers)
                elif nats_parser.OK_RE.match(line):
                    pos = start
                elif (err := nats_parser.ERR_RE.match(line)) is not None:
                    pos = start
                    await nc._process_err((err.group(1) or b"").decode().lower())
                elif nats_parser.PING_RE.match(line):
                    pos = start
                    await nc._process_ping()
                elif nats_parser.PONG_RE.match(line):
                    pos = start
                    await nc._process_pong()
                elif (info := nats_parser.INFO_RE.match(line)) is not None:
                    pos = start
                    await nc._process_info(json.loads(info.group(1)))
                else:
                    raise ProtocolError("nats: unknown protocol")
                if self.buf is not buf:
                    return  # the connection was reset while we awaited: these bytes are stale
        finally:
            if pos:
                del buf[:pos]


def _ignore(token: int, seq: int, duplicate: bool, stream: bytes) -> None:
    pass


class InboxClient(NatsClient):
    """nats-py's client with the reply inbox short-circuited: once ``watch_inbox`` names it, PubAcks
    go to ``on_puback(token, seq, duplicate, stream)`` from the parser and other messages on it to
    ``on_reply(token, data, headers)``, both called synchronously from the read loop."""

    reply_sid = -1
    _prefix_len = 0
    _on_reply: OnReply

    def __init__(self) -> None:
        super().__init__()
        self._ps: InboxParser = InboxParser(self)

    _orderly_close = False

    async def close(self) -> None:
        self._orderly_close = True
        await super().close()

    async def _close(self, status: int, do_cbs: bool = True) -> None:
        if not self._orderly_close:
            # nats-py closes the client itself when the connection is lost, goes stale or is refused by
            # the server (the bridge turns nats-py's reconnection off). What is still queued cannot go
            # out then: written to the transport that just closed it raises out of nats-py's task
            # (uvloop: "the handler is closed"), drain() waits on a stale peer, and either way the rest
            # of the close (closed_cb, which tells the publisher the connection is gone) never runs.
            # The queued frames are unacknowledged publishes, re-sent by the publisher on its next
            # connection. ``close()`` on a live connection still sends them first.
            self._pending = []
            self._pending_data_size = 0
        await super()._close(status, do_cbs)

    async def write(self, blob: bytes) -> None:
        """Hand pre-encoded frames to the connection's write buffer as one command and wake its flusher
        (``publish`` would take one subject and a dict of headers per call)."""
        await self._send_command(blob)
        await self._flush_pending()

    def new_inbox_prefix(self) -> bytes:
        """A fresh reply inbox, ``b"_INBOX.<nuid>."`` (``INBOX_PREFIX_LEN`` bytes)."""
        return b"_INBOX." + bytes(self._nuid.next()) + b"."

    @property
    def server_name(self) -> str:
        """The ``server_name`` of the server's INFO ("" when it sent none)."""
        return str(self._server_info.get("server_name", ""))

    async def subscribe_inbox(self, prefix: bytes, on_puback: OnPubAck, on_reply: OnReply) -> None:
        """Subscribe to ``prefix`` + ``*`` and read its replies with ``watch_inbox``."""
        sub = await self.subscribe(prefix.decode() + "*")
        self.watch_inbox(prefix, sub._id, on_puback, on_reply)

    def watch_inbox(self, prefix: bytes, sid: int, on_puback: OnPubAck, on_reply: OnReply) -> None:
        self.reply_sid = sid
        self._prefix_len = len(prefix)
        self._on_reply = on_reply
        self._ps.puback = puback_frame(prefix, sid)
        self._ps.on_puback = on_puback

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        if sid == self.reply_sid:
            try:
                token = int(subject[self._prefix_len :])
            except ValueError:
                return  # not a reply subject we made
            self._on_reply(token, data, headers)
            return
        await super()._process_msg(sid, subject, reply, data, headers)
