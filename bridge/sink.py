"""JetStreamSink: pipelined JetStream publishes with per-partition order, ack timeouts and re-sends.

Owns the NATS connection (made with nats-py, re-made by us under ``retry.nats_connect``), the
reply inbox, the bookkeeping of every unacknowledged publish, and the ordering rule:

- Publishes are grouped in **lanes** (one per Kafka partition). Within a lane they are written in
  order on one connection; the stream stores what one connection sends in that order.
- A publish that fails for a retriable reason (ack timeout, 503 no responders, a JetStream error
  such as "stream offline", the connection lost) **halts its lane**: nothing new of that lane is
  sent; when the lane's other publishes have settled, its unacknowledged publishes are re-sent in
  order under ``retry.lane`` — the first one alone (a probe), the rest pipelined once it is stored.
  So a later record never overtakes an earlier one that was not stored, and re-sent records that
  had been stored are dropped by the server (same ``Nats-Msg-Id``) and count as delivered.
- A publish that fails for a reason no retry can fix (for example the stream's max message size)
  is handed back with ``on_fail``; its lane keeps flowing.
- Every publish has a deadline (``ack_timeout``): nats-py futures have none of their own, and we
  keep no future per publish at all. Replies come to one wildcard inbox subscription; the reply
  subject carries an integer token that finds the publish.
- After a connection loss every unacknowledged publish is re-sent on the next connection. We do
  not use nats-py's reconnect: its buffer would flush publishes queued behind one lost in the
  socket, storing a later record before an earlier one.

Frames are written as pre-encoded ``HPUB`` bytes (``bridge.wire``), one write per fetched batch,
through nats-py's internal ``_send_command``/``_flush_pending``: nats-py's public ``publish`` takes
headers as a dict (no repeated names, which Redpanda Connect's output sends) and encodes per call.
Replies to the inbox are read by ``bridge.inbox`` (a PubAck costs one regex match there) instead of
nats-py's ``Msg``/queue/task path, which cost more than everything else per record (see the bench
notes in README). These internals are pinned by the nats-py version range in pyproject.toml and
covered by the unit, integration and fault suites.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import structlog
from nats.aio.client import Client as NatsClient

from bridge import retry
from bridge.errors import (
    AckTimeout,
    AuthError,
    BridgeError,
    ConnectionLost,
    DeliveryFailed,
    JetStreamError,
    NatsUnavailable,
    NoStreamError,
    PublishError,
    ReconnectsExhausted,
)
from bridge.inbox import InboxClient
from bridge.log import redact_text
from bridge.router import Envelope
from bridge.wire import CRLF

log = structlog.get_logger("bridge.sink")


# Publish states
WAITING, SENT, FAILED, DONE = 0, 1, 2, 3

# Reply subjects are b"_INBOX.<nuid>.<token>": nats-py's NUIDs are 22 characters, tokens count up from 1
# (20 digits hold any 64-bit count). The router adds this to the control line it checks (bridge.wire).
INBOX_PREFIX_LEN = len("_INBOX.") + 22 + 1
MAX_REPLY_LEN = INBOX_PREFIX_LEN + 20


class Lane:
    """The publishes of one partition, in record order."""

    __slots__ = (
        "dropped",
        "error",
        "halted",
        "idle",
        "max_stored",
        "name",
        "outstanding",
        "probe",
        "retry_task",
        "sent",
        "waiting",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: deque[Envelope] = deque()  # written, in order (SENT, FAILED or DONE awaiting the head)
        self.waiting: deque[Envelope] = deque()  # accepted, not written, in order
        self.outstanding = 0  # publishes of this lane on the wire right now
        self.max_stored = 0  # the latest (by first send) publish of this lane the stream stored
        self.halted = False
        self.dropped = False
        self.error: BaseException | None = None  # the failure that halted the lane
        self.probe: asyncio.Future[None] | None = None
        self.retry_task: asyncio.Task[None] | None = None
        self.idle: asyncio.Event | None = None

    @property
    def pending(self) -> int:
        return sum(1 for p in self.sent if p.state != DONE) + len(self.waiting)


@dataclass(frozen=True, slots=True)
class SinkStats:
    in_flight: int
    sent: int
    acked: int
    duplicates: int
    resent: int
    timeouts: int
    failures: int
    reconnects: int
    reorders: int
    connected: bool


class LatencyHistogram:
    """Publish → PubAck latency of sampled acks, in fixed buckets (seconds), Prometheus style."""

    BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS) + 1)  # the last bucket is +Inf
        self.total = 0.0
        self.samples = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.BOUNDS, seconds)] += 1
        self.total += seconds
        self.samples += 1


OnAck = Callable[[Any, int, bool, bytes], None]  # (ctx, stream sequence, duplicate, stream name)
OnFail = Callable[[Any, BaseException], None]


class JetStreamSink:
    def __init__(
        self,
        connect_options: dict[str, Any],
        *,
        max_in_flight: int,
        ack_timeout: float,
        retry_timeout: float,
        max_reconnects: int | None,
        reconnect_wait: float = 2.0,
        on_ack: OnAck,
        on_fail: OnFail,
    ) -> None:
        self._options = connect_options
        self._servers = ",".join(connect_options.get("servers", []))
        self.max_in_flight = max_in_flight
        self.ack_timeout = ack_timeout
        self.retry_timeout = retry_timeout
        self.max_reconnects = max_reconnects
        self.reconnect_wait = reconnect_wait
        self._on_ack = on_ack
        self._on_fail = on_fail

        self._nc: NatsClient | None = None
        self._prefix_bytes = b""  # the reply inbox of this connection, b"_INBOX.<nuid>."
        self._tokens = itertools.count(1)
        self._inflight: dict[int, Envelope] = {}  # token → publish, in send order
        self._outbox: list[bytes] = []  # staged frames not yet handed to nats-py
        self._lanes: dict[str, Lane] = {}
        self.in_flight = 0  # accepted and not yet resolved
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._drained = asyncio.Event()
        self._drained.set()
        self._connected = asyncio.Event()
        self._fatal: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconnecting: asyncio.Task[None] | None = None
        self._health: asyncio.Task[None] | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._last_error: BaseException | None = None
        self.stalled = False  # publishes outstanding and no ack for ack_timeout (see _reap)
        self.max_payload = 1024 * 1024
        self.server_name = ""

        self.latency = LatencyHistogram()
        self.sent = self.acked = self.duplicates = self.resent = 0
        self.timeouts = self.failures = self.reconnects = self.reorders = 0

    # ------------------------------------------------------------------ connection

    async def start(self) -> None:
        """Connect (under the reconnect policy) and start the ack-timeout reaper."""
        await self._connect_with_policy(initial=True)
        self._reaper = self._spawn(self._reap())

    async def _connect_with_policy(self, initial: bool) -> None:
        if not initial and self.max_reconnects == 0:
            raise NatsUnavailable(self._servers, "connection lost and max_reconnects is 0")
        async for attempt in retry.nats_connect(self.max_reconnects, self.reconnect_wait, self._servers):
            with attempt:
                await self._connect_once()

    async def _connect_once(self) -> None:
        self._last_error = None
        problem = getattr(self._options, "problem", None)
        if problem is not None:
            raise problem  # the TLS material did not load (bridge.natsopts): no attempt can succeed

        async def error_cb(exc: Exception) -> None:
            self._last_error = exc

        nc = InboxClient()
        try:
            await nc.connect(
                **self._options,
                error_cb=error_cb,
                closed_cb=self._closed_cb_for(nc),
                ping_interval=10,
                max_outstanding_pings=3,
            )
        except nats.errors.NoServersError as exc:
            await _quiet_close(nc)
            raise self._translate(self._last_error or exc) from exc
        except Exception as exc:
            await _quiet_close(nc)
            raise self._translate(exc) from exc
        self._nc = nc
        prefix = f"_INBOX.{nc._nuid.next().decode()}."
        self._prefix_bytes = prefix.encode()
        assert len(self._prefix_bytes) == INBOX_PREFIX_LEN, prefix  # MAX_REPLY_LEN depends on it
        try:
            sub = await nc.subscribe(prefix + "*")
            nc.watch_inbox(self._prefix_bytes, sub._id, self._on_puback, self._on_reply)
            await nc.flush(timeout=5)
        except Exception as exc:  # closed right after connecting (a refused client certificate, ...)
            self._nc = None
            await _quiet_close(nc)
            raise self._translate(self._last_error or exc) from exc
        self.max_payload = nc.max_payload
        self.server_name = str(nc._server_info.get("server_name", ""))
        self._connected.set()
        log.info(
            "nats_connected", servers=self._servers, server=self.server_name, max_payload=self.max_payload
        )

    def _translate(self, exc: BaseException) -> BridgeError:
        if isinstance(exc, BridgeError):
            return exc
        servers = redact_text(self._servers)
        server = f"NATS ({servers})"
        if isinstance(exc, nats.errors.AuthorizationError) or "authorization" in str(exc).lower():
            said = str(exc).removeprefix("nats: ").strip("'")
            said = "" if said == "authorization failed" else f" ({said})"
            return AuthError(server, f"authorization failed{said}: check the credentials (auth or urls)")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return AuthError(server, f"TLS certificate verify failed: {exc.verify_message}")
        if isinstance(exc, ssl.SSLError):
            reason = str(exc.reason or exc)
            if "CERTIFICATE_REQUIRED" in reason:
                reason = f"the server requires a client certificate (tls.client_certs): {reason}"
            return AuthError(server, f"TLS failed: {reason}")
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, nats.errors.NoServersError):
            detail = "no server could be reached"
        elif isinstance(exc, ConnectionResetError | BrokenPipeError) and "tls" in self._options:
            # TLS 1.3: a server that wants a client certificate may close before its alert is read
            detail += (
                " (the server closed the connection after the TLS handshake:"
                " if it requires a client certificate, set tls.client_certs)"
            )
        elif "expecting INFO" in detail or isinstance(exc, TimeoutError):
            # a server that expects the TLS handshake first sends nothing, or closes, until it gets one
            detail += " (no NATS greeting: a server with TLS handshake_first needs tls_handshake_first: true)"
        return NatsUnavailable(servers, detail)

    def _closed_cb_for(self, nc: NatsClient) -> Callable[[], Any]:
        async def closed_cb() -> None:
            if nc is self._nc and not self._closing:
                self._connection_lost()

        return closed_cb

    def _connection_lost(self) -> None:
        self._connected.clear()
        nc, self._nc = self._nc, None
        lost = list(self._inflight.values())
        self._inflight.clear()
        self._outbox.clear()
        log.warning(
            "nats_connection_lost",
            servers=self._servers,
            unacked=len(lost),
            error=str(self._last_error or ""),
        )
        for item in lost:
            item.lane.outstanding -= 1
            self._fail_transient(item, ConnectionLost(item.subject))
        if nc is not None and not nc.is_closed:
            self._spawn(nc.close())
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = self._spawn(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            await self._connect_with_policy(initial=False)
        except BridgeError as exc:
            attempts = retry.reconnect_attempts(self.max_reconnects) or 0
            self._set_fatal(ReconnectsExhausted(redact_text(self._servers), attempts, exc))
            return
        self.reconnects += 1
        for lane in list(self._lanes.values()):
            self._maybe_retry(lane)

    # ------------------------------------------------------------------ publishing

    def lane(self, name: str) -> Lane:
        lane = self._lanes.get(name)
        if lane is None or lane.dropped:
            lane = self._lanes[name] = Lane(name)
        return lane

    def stage(self, lane: Lane, batch: Iterable[tuple[Envelope, Any]]) -> int:
        """Accept one lane's publishes, in record order: they are written by the next ``flush()``.
        Returns how many were accepted. This is the hot path: keep it lean."""
        n = 0
        if lane.halted or lane.waiting or self._nc is None:
            for item, ctx in batch:
                item.lane = lane
                item.ctx = ctx
                item.token = item.order = 0
                item.state = WAITING
                lane.waiting.append(item)
                n += 1
            if self._nc is None and not lane.halted and lane.waiting:
                # Disconnected: the lane waits for the next connection like a halted one.
                lane.halted = True
                lane.error = ConnectionLost(lane.waiting[0].subject)
            self._maybe_retry(lane)
        else:
            deadline = time.monotonic() + self.ack_timeout
            tokens = self._tokens
            inflight = self._inflight
            sent = lane.sent
            out = self._outbox
            prefix = self._prefix_bytes
            for item, ctx in batch:
                item.lane = lane
                item.ctx = ctx
                token = next(tokens)
                item.token = item.order = token
                item.deadline = deadline
                item.state = SENT
                sent.append(item)
                inflight[token] = item
                out += (item.head, b"%b%d" % (prefix, token), item.pre, item.payload, CRLF)
                n += 1
            lane.outstanding += n
            self.sent += n
        self.in_flight += n
        if self.in_flight >= self.max_in_flight:
            self._capacity.clear()
        if self.in_flight:
            self._drained.clear()
        return n

    async def flush(self) -> None:
        """Write everything staged."""
        await self._write()

    async def publish(self, batch: Iterable[tuple[Lane, Envelope, Any]]) -> None:
        """Accept publishes of any lanes (in record order per lane) and write them."""
        for lane, envelope, ctx in batch:
            self.stage(lane, ((envelope, ctx),))
        await self._write()

    def publish_nowait(self, batch: Iterable[tuple[Lane, Envelope, Any]]) -> None:
        """``publish`` for callbacks: accepted (counted in ``in_flight``) at once, written by a task."""
        for lane, envelope, ctx in batch:
            self.stage(lane, ((envelope, ctx),))
        if self._outbox:
            self._spawn(self._write())

    def _stage(self, item: Envelope, now: float) -> None:
        """Give ``item`` a (new) token and put its frame in the outbox (re-sends and probes)."""
        token = next(self._tokens)
        item.token = token
        if not item.order:
            item.order = token
        item.deadline = now + self.ack_timeout
        item.state = SENT
        item.lane.sent.append(item)
        item.lane.outstanding += 1
        self._inflight[token] = item
        self.sent += 1
        self._outbox += (item.head, b"%b%d" % (self._prefix_bytes, token), item.pre, item.payload, CRLF)

    async def _write(self) -> None:
        """Hand the outbox to nats-py as one command. The join, the clear and nats-py's append happen
        with no suspension in between, so concurrent writers keep staging order."""
        nc = self._nc
        if not self._outbox or nc is None or not nc.is_connected:
            return  # staged items are in _inflight; the connection-lost path re-sends them
        blob = b"".join(self._outbox)
        self._outbox.clear()
        await nc._send_command(blob)
        await nc._flush_pending()

    # ------------------------------------------------------------------ replies

    def _on_puback(self, token: int, seq: int, duplicate: bool, stream: bytes) -> None:
        """A plain PubAck on the inbox (called from the read loop, ``bridge.inbox``; must not block)."""
        item = self._inflight.pop(token, None)
        if item is None:
            return  # late: timed out and re-sent, or its lane was dropped
        item.lane.outstanding -= 1
        self._ack(item, seq, duplicate, stream)

    def _on_reply(self, token: int, data: bytes, headers: bytes) -> None:
        """Any other reply on the inbox: status headers, errors, PubAcks with fields we do not know."""
        item = self._inflight.pop(token, None)
        if item is None:
            return  # late: timed out and re-sent, or its lane was dropped
        item.lane.outstanding -= 1
        if headers:
            # b"NATS/1.0 503\r\n..." (no responders) or another status line
            line = headers.split(b"\r\n", 1)[0].decode(errors="replace")
            status, _, desc = line[len("NATS/1.0") :].strip().partition(" ")
            if status == "503":
                self._fail(item, NoStreamError(item.subject))
                return
            if status:
                self._fail(item, PublishError(item.subject, f"status {status} {desc}".strip()))
                return
        try:
            body = json.loads(data)
        except ValueError:
            self._fail(item, PublishError(item.subject, f"unreadable reply {data[:200]!r}"))
            return
        err = body.get("error") if isinstance(body, dict) else None
        if err is not None:
            code, err_code = int(err.get("code", 0)), int(err.get("err_code", 0))
            self._fail(item, JetStreamError(item.subject, code, err_code, str(err.get("description", ""))))
            return
        if not isinstance(body, dict) or "seq" not in body:
            self._fail(item, PublishError(item.subject, f"unreadable reply {data[:200]!r}"))
            return
        stream = str(body.get("stream", "")).encode()
        self._ack(item, int(body["seq"]), bool(body.get("duplicate", False)), stream)

    def _ack(self, item: Envelope, seq: int, duplicate: bool, stream: bytes) -> None:
        lane = item.lane
        if not duplicate:
            # Stored just now. A later publish of the lane already stored means they are out of order.
            if item.order < lane.max_stored:
                self._order_violation(lane, item)
            else:
                lane.max_stored = item.order
        item.state = DONE
        item.token = 0
        sent = lane.sent
        while sent and sent[0].state == DONE:
            sent.popleft()
        self.acked += 1
        if duplicate:
            self.duplicates += 1
        if self.acked & 15 == 0:
            # one ack in 16 feeds the latency histogram (sent → PubAck), cheap enough for the hot path
            self.latency.observe(time.monotonic() - (item.deadline - self.ack_timeout))
        # _resolved(1), inlined
        self.in_flight -= 1
        if self.in_flight < self.max_in_flight:
            self._capacity.set()
        if self.in_flight == 0:
            self._drained.set()
        if lane.probe is not None and not lane.probe.done():
            lane.probe.set_result(None)
        if lane.idle is not None and not sent and not lane.waiting:
            lane.idle.set()
        if lane.halted:
            self._maybe_retry(lane)
        self._on_ack(item.ctx, seq, duplicate, stream)

    def _order_violation(self, lane: Lane, item: Envelope) -> None:
        """The stream stored ``item`` after a later publish of its lane: that cannot be undone (it can only
        happen when a stream lost a publish it then accepted a later one for, as an R3 stream might while
        electing a leader), so it is counted and logged loudly. Ack timeouts and lost connections are
        not evidence: the publish may well have been stored; only a non-duplicate ack here is."""
        self.reorders += 1
        log.error("order_violation", lane=lane.name, subject=item.subject, stored_late=item.msg_id)

    def _resolved(self, n: int) -> None:
        self.in_flight -= n
        if self.in_flight < self.max_in_flight:
            self._capacity.set()
        if self.in_flight == 0:
            self._drained.set()

    def _fail(self, item: Envelope, exc: BaseException) -> None:
        if getattr(exc, "retriable", False):
            self._fail_transient(item, exc)
            return
        # No retry can store this record: hand it back, keep the lane flowing.
        item.state = DONE
        item.token = 0
        lane = item.lane
        while lane.sent and lane.sent[0].state == DONE:
            lane.sent.popleft()
        self.failures += 1
        self._resolved(1)
        if lane.probe is not None and not lane.probe.done():
            lane.probe.set_exception(exc)
        if lane.halted:
            self._maybe_retry(lane)
        self._on_fail(item.ctx, exc)

    def _fail_transient(self, item: Envelope, exc: BaseException) -> None:
        item.state = FAILED
        item.token = 0
        lane = item.lane
        self.failures += 1
        if not lane.halted:
            log.warning("lane_halted", lane=lane.name, subject=item.subject, error=str(exc))
        lane.halted = True
        lane.error = exc
        if lane.probe is not None and not lane.probe.done():
            lane.probe.set_exception(exc)
        self._maybe_retry(lane)

    # ------------------------------------------------------------------ lane retries

    def _maybe_retry(self, lane: Lane) -> None:
        if not lane.halted or lane.dropped or lane.outstanding > 0:
            return
        if lane.retry_task is not None and not lane.retry_task.done():
            return
        # Everything of this lane not yet stored goes back to the front of the queue, in order.
        unstored = [p for p in lane.sent if p.state != DONE]
        lane.sent.clear()
        for p in unstored:
            p.state = WAITING
        lane.waiting.extendleft(reversed(unstored))
        if lane.waiting:
            lane.retry_task = self._spawn(self._retry_lane(lane))
        else:
            lane.halted = False

    async def _retry_lane(self, lane: Lane) -> None:
        try:
            async for attempt in retry.lane(lane.name, self.retry_timeout):
                with attempt:
                    if lane.dropped:
                        return
                    if lane.error is not None and attempt.retry_state.attempt_number == 1:
                        raise lane.error  # first pass through tenacity: wait before the first re-send
                    await self._connected.wait()
                    await self._probe(lane)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if not lane.dropped:
                self._set_fatal(DeliveryFailed(f"lane {lane.name}", exc))
            return
        lane.halted = False
        lane.error = None
        now = time.monotonic()
        while lane.waiting and not lane.halted:
            self._stage(lane.waiting.popleft(), now)
            self.resent += 1
        await self._write()

    async def _probe(self, lane: Lane) -> None:
        """Send the lane's first unstored publish alone and wait for its fate."""
        if not lane.waiting:
            return
        item = lane.waiting.popleft()
        lane.probe = asyncio.get_running_loop().create_future()
        self._stage(item, time.monotonic())
        self.resent += 1
        await self._write()
        try:
            await lane.probe
        except PublishError:
            if item.state == DONE:
                return  # not retriable: handed back through on_fail; the lane goes on
            raise
        finally:
            lane.probe = None
            if item.state != DONE:
                # Failed: back to the front, as the first of the lane again.
                if item in lane.sent:
                    lane.sent.remove(item)
                item.state = WAITING
                lane.waiting.appendleft(item)

    # ------------------------------------------------------------------ timeouts and health

    async def _reap(self) -> None:
        """Time out publishes past their deadline, and notice a stall: publishes outstanding and no ack
        for ``ack_timeout`` (a hung server keeps the TCP connection open). Runs ten times per timeout."""
        interval = min(max(self.ack_timeout / 10, 0.05), 1.0)
        last_acked, last_progress = self.acked, time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            if self.acked != last_acked or not self._inflight:
                last_acked, last_progress = self.acked, now
            self.stalled = now - last_progress >= self.ack_timeout
            expired = []
            for token, item in self._inflight.items():
                if item.deadline > now:
                    break
                expired.append(token)
            for token in expired:
                item = self._inflight.pop(token)
                item.lane.outstanding -= 1
                self.timeouts += 1
                self._fail_transient(item, AckTimeout(item.subject, self.ack_timeout))
            if expired and (self._health is None or self._health.done()):
                self._health = self._spawn(self._check_connection())

    async def _check_connection(self) -> None:
        """Acks timed out: make sure the connection still answers a PING, or replace it."""
        nc = self._nc
        if nc is None:
            return
        try:
            await nc.flush(timeout=max(int(min(self.ack_timeout, 5.0)), 1))
        except Exception as exc:
            if nc is self._nc and not self._closing:
                self._last_error = exc
                log.warning(
                    "nats_connection_stale", servers=self._servers, error=str(exc) or type(exc).__name__
                )
                self._connection_lost()

    # ------------------------------------------------------------------ for the pipeline

    async def wait_capacity(self) -> None:
        await self._capacity.wait()

    async def wait_drained(self) -> None:
        await self._drained.wait()

    async def wait_failed(self) -> None:
        """Returns never; raises the fatal error (reconnects exhausted, a lane gave up)."""
        await self._fatal

    async def wait_lane_idle(self, lane: Lane) -> None:
        if not lane.sent and not lane.waiting:
            return
        lane.idle = asyncio.Event()
        await lane.idle.wait()

    def drop_lane(self, lane: Lane) -> int:
        """Forget a revoked partition's lane: its unacknowledged publishes are abandoned (they will be
        read again by whoever gets the partition); late acks for them are ignored. Returns how many."""
        lane.dropped = True
        dropped = 0
        for item in itertools.chain(lane.sent, lane.waiting):
            if item.state != DONE:
                if item.token:
                    self._inflight.pop(item.token, None)
                item.state = DONE
                dropped += 1
        lane.sent.clear()
        lane.waiting.clear()
        lane.outstanding = 0
        if lane.retry_task is not None:
            lane.retry_task.cancel()
        if self._lanes.get(lane.name) is lane:
            del self._lanes[lane.name]
        if dropped:
            self._resolved(dropped)
        return dropped

    @property
    def connected(self) -> bool:
        """Connected and acks flowing: a server that stopped answering is not "connected" here."""
        return self._nc is not None and self._nc.is_connected and not self.stalled

    def statistics(self) -> SinkStats:
        return SinkStats(
            in_flight=self.in_flight, sent=self.sent, acked=self.acked, duplicates=self.duplicates,
            resent=self.resent, timeouts=self.timeouts, failures=self.failures,
            reconnects=self.reconnects, reorders=self.reorders, connected=self.connected,
        )  # fmt: skip

    # ------------------------------------------------------------------ lifecycle

    def _set_fatal(self, exc: BaseException) -> None:
        if not self._fatal.done():
            log.error("sink_failed", error=str(exc))
            self._fatal.set_exception(exc)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        """Close the connection and stop background tasks. Idempotent."""
        if self._closed:
            return
        self._closed = self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self._fatal.done():
            self._fatal.cancel()
        elif not self._fatal.cancelled():
            self._fatal.exception()  # retrieved: the pipeline already reported it
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            try:
                await nc.close()
            except Exception as exc:  # closing a broken connection: nothing left to do
                log.debug("nats_close_error", error=str(exc))


async def _quiet_close(nc: NatsClient) -> None:
    """Close a client whose connect() failed (it may hold a socket and tasks); nothing to report.
    Bounded: after a failed TLS handshake nats-py's close waits forever for the detached transport."""
    if not nc.is_closed:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await nc.close()
