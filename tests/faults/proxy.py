"""An in-test TCP proxy on 127.0.0.1 that can forward, stall, drop and resume, and read the NATS wire.

``TcpProxy`` runs its own asyncio loop in a daemon thread, so it keeps forwarding while the test's
loop is busy (blocking broker restarts, ``BridgeProcess.kill()``) and the test controls it with plain
method calls:

- ``stall("both" | "down" | "up")``: stop forwarding in that direction (``down`` = server → client,
  the acks; ``up`` = client → server) without closing anything. Bytes already read are held, the
  socket is no longer read, so TCP flow control pushes back on the sender. New connections are
  accepted and stall the same way.
- ``resume()``: forward again, held bytes first (nothing is lost, nothing is reordered).
- ``drop()``: abort every open connection (both sides see a reset); new connections are accepted.
- ``delay(seconds, direction)``: deliver every byte that much later, in order (slow acks).

With ``nats=True`` the proxy also parses the NATS protocol in both directions (``NatsWire``): every
``HPUB``/``PUB`` with a reply subject is a publish awaiting its PubAck; a ``MSG``/``HMSG`` on that
reply subject settles it. It counts publishes, re-sends of one ``Nats-Msg-Id``, PubAcks with
``"duplicate": true``, errors and 503s, and tracks the distinct message ids sent on live connections
and not yet answered: a lower bound of the bridge's in-flight publishes, observed from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"
_READ = 64 * 1024


@dataclass(frozen=True)
class WireStats:
    publishes: int  # HPUB/PUB frames with a reply subject, re-sends included
    msg_ids: int  # distinct Nats-Msg-Id values published
    resent_ids: int  # Nats-Msg-Id values published more than once
    acks: int  # replies that settled a publish
    duplicate_acks: int  # PubAcks with "duplicate": true
    error_replies: int  # PubAcks with an "error" object, or a status header (503 no responders, ...)
    unacked: (
        int  # distinct message ids sent on connections the client still uses and not yet answered on any, now
    )
    peak_unacked: int  # the largest ``unacked`` seen
    connections: int  # connections accepted so far


class NatsWire:
    """NATS protocol bookkeeping for every connection through the proxy (runs in the proxy's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: Counter[str] = Counter()  # msg id → publishes
        self.publishes = 0
        self.acks = 0
        self.duplicate_acks = 0
        self.error_replies = 0
        self.unacked: Counter[str] = Counter()  # msg id → live unanswered publishes
        self.peak_unacked = 0
        self.connections = 0

    def stats(self) -> WireStats:
        with self._lock:
            return WireStats(
                publishes=self.publishes, msg_ids=len(self.sent),
                resent_ids=sum(1 for n in self.sent.values() if n > 1), acks=self.acks,
                duplicate_acks=self.duplicate_acks, error_replies=self.error_replies,
                unacked=len(self.unacked), peak_unacked=self.peak_unacked, connections=self.connections,
            )  # fmt: skip

    def reset_peak(self) -> None:
        with self._lock:
            self.peak_unacked = len(self.unacked)

    # -- called by _Conn, in the proxy thread

    def published(self, conn: _Conn, reply: str, msg_id: str) -> None:
        with self._lock:
            self.publishes += 1
            self.sent[msg_id] += 1
            if conn.client_gone:
                return
            conn.pending[reply] = msg_id
            self.unacked[msg_id] += 1
            if len(self.unacked) > self.peak_unacked:
                self.peak_unacked = len(self.unacked)

    def replied(self, conn: _Conn, subject: str, headers: bytes, payload: bytes) -> None:
        msg_id = conn.pending.pop(subject, None)
        if msg_id is None:
            return
        with self._lock:
            # answered: the client waits for no other copy of it (a re-send on a new connection while the
            # old one, closed by the client, still drains to a server that was stopped)
            self.unacked.pop(msg_id, None)
            self.acks += 1
            if headers and len(headers.split(b"\r\n", 1)[0].split()) > 1:  # "NATS/1.0 503"
                self.error_replies += 1
                return
            try:
                body = json.loads(payload)
            except ValueError:
                self.error_replies += 1
                return
            if body.get("error") is not None:
                self.error_replies += 1
            elif body.get("duplicate"):
                self.duplicate_acks += 1

    def closed(self, conn: _Conn) -> None:
        with self._lock:
            conn.client_gone = True
            for msg_id in conn.pending.values():
                self._settle(msg_id)
            conn.pending.clear()

    def _settle(self, msg_id: str) -> None:
        n = self.unacked.get(msg_id, 0) - 1
        if n > 0:
            self.unacked[msg_id] = n
        else:
            self.unacked.pop(msg_id, None)


class _Parser:
    """Splits one direction of a NATS connection into operations (line + optional payload)."""

    def __init__(self, on_op: Any) -> None:
        self._buf = bytearray()
        self._on_op = on_op

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            line = bytes(buf[pos:eol])
            args = line.split()
            op = args[0].upper() if args else b""
            has_payload = op in (b"PUB", b"HPUB", b"MSG", b"HMSG")
            size = int(args[-1]) if has_payload else 0  # the last argument is the total size
            end = eol + 2 + size + (2 if has_payload else 0)
            if end > len(buf):
                break
            body = bytes(buf[eol + 2 : eol + 2 + size]) if size else b""
            self._on_op(op, args, body)
            pos = end
        if pos:
            del buf[:pos]


class _Conn:
    def __init__(self, proxy: TcpProxy, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.pending: dict[str, str] = {}  # reply subject → msg id
        self.client_gone = False  # the client closed: what it sent is no longer awaited
        wire = proxy.wire
        self.up = _Parser(self._client_op) if wire is not None else None
        self.down = _Parser(self._server_op) if wire is not None else None

    def _client_op(self, op: bytes, args: list[bytes], body: bytes) -> None:
        wire = self.proxy.wire
        assert wire is not None
        if op == b"HPUB" and len(args) == 5:
            hlen = int(args[3])
            msg_id = ""
            for line in body[:hlen].split(b"\r\n"):
                if line[:12].lower() == b"nats-msg-id:":
                    msg_id = line[12:].strip().decode()
            wire.published(self, args[2].decode(), msg_id or args[2].decode())
        elif op == b"PUB" and len(args) == 4:
            wire.published(self, args[2].decode(), args[2].decode())

    def _server_op(self, op: bytes, args: list[bytes], body: bytes) -> None:
        wire = self.proxy.wire
        assert wire is not None
        if op == b"MSG":
            wire.replied(self, args[1].decode(), b"", body)
        elif op == b"HMSG":
            hlen = int(args[-2])
            wire.replied(self, args[1].decode(), body[:hlen], body[hlen:])

    def abort(self) -> None:
        for w in (self.client, self.server):
            with contextlib.suppress(Exception):
                w.transport.abort()


class TcpProxy:
    """``TcpProxy(upstream_port)`` forwards 127.0.0.1:<port> → 127.0.0.1:<upstream_port>."""

    def __init__(self, upstream_port: int, *, upstream_host: str = HOST, nats: bool = False) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.wire = NatsWire() if nats else None
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._up: asyncio.Event | None = None
        self._down: asyncio.Event | None = None
        self.stalled = ""
        self.accepted = 0
        self._delays = {"up": 0.0, "down": 0.0}

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    # -- control (from any thread)

    def start(self) -> TcpProxy:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(ready,), name="tcp-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the TCP proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def stall(self, direction: str = "both") -> None:
        assert direction in ("both", "up", "down"), direction
        self._call(self._set(up=direction == "down", down=direction == "up"))
        self.stalled = direction

    def delay(self, seconds: float, direction: str = "down") -> None:
        """Deliver what is read in ``direction`` (``up``, ``down`` or ``both``) ``seconds`` later, in order
        (slow acks: publishes stay in flight that much longer)."""
        for d in ("up", "down") if direction == "both" else (direction,):
            self._delays[d] = seconds

    def resume(self) -> None:
        self._call(self._set(up=True, down=True))
        self.stalled = ""

    def drop(self) -> int:
        """Abort every open connection; returns how many."""
        return int(self._call(self._drop()))

    def stats(self) -> WireStats:
        assert self.wire is not None, "start the proxy with nats=True"
        return self.wire.stats()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the proxy's own loop

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            self._up, self._down = asyncio.Event(), asyncio.Event()
            self._up.set()
            self._down.set()
            self._server = await asyncio.start_server(self._accept, HOST, 0)
            self.port = self._server.sockets[0].getsockname()[1]

        loop.run_until_complete(boot())
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _set(self, *, up: bool, down: bool) -> None:
        assert self._up is not None
        assert self._down is not None
        for event, on in ((self._up, up), (self._down, down)):
            if on:
                event.set()
            else:
                event.clear()

    async def _drop(self) -> int:
        conns = list(self._conns)
        for conn in conns:
            conn.abort()
        return len(conns)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._set(up=True, down=True)
        for conn in list(self._conns):
            conn.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            c_writer.transport.abort()
            return
        conn = _Conn(self, c_writer, s_writer)
        self._conns.add(conn)
        if self.wire is not None:
            with self.wire._lock:
                self.wire.connections += 1
        assert self._up is not None
        assert self._down is not None
        try:
            await asyncio.gather(
                self._pump(c_reader, s_writer, self._up, conn.up, conn, "up"),
                self._pump(s_reader, c_writer, self._down, conn.down, conn, "down"),
            )
        finally:
            self._conns.discard(conn)
            if self.wire is not None:
                self.wire.closed(conn)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        gate: asyncio.Event,
        parser: _Parser | None,
        conn: _Conn,
        direction: str,
    ) -> None:
        """Read → (delay) → gate → parse → write, in order. The queue is small, so a stalled or slow
        side pushes back on the other through TCP flow control."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(maxsize=16)

        async def forward() -> None:
            while (item := await queue.get()) is not None:
                due, data = item
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                await gate.wait()
                if parser is not None:
                    parser.feed(data)
                writer.write(data)
                await writer.drain()

        forwarder = loop.create_task(forward())
        try:
            while True:
                data = await reader.read(_READ)
                if not data:
                    break
                await queue.put((loop.time() + self._delays[direction], data))
            if direction == "up" and self.wire is not None:
                # the client has closed: nothing it sent is awaited any more, even while the rest is
                # still queued for a server that is not reading (SIGSTOPped)
                self.wire.closed(conn)
            await queue.put(None)
            await forwarder  # what was read is still delivered
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            forwarder.cancel()
            with contextlib.suppress(BaseException):
                await forwarder
            conn.abort()  # one side gone: the other goes too, as a real connection would
