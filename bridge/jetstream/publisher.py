"""JetStreamSink: pipelined JetStream publishes with per-partition order, ack timeouts and re-sends.

Owns the NATS connection (made with nats-py, re-made by us under ``retry.nats_connect``), the writes,
the reply inbox and the decoding of replies, the bookkeeping of every unacknowledged publish, the
ack-timeout reaper, and the asyncio side of the lanes: ``bridge.jetstream.lanes`` holds the ordering
rule and the state machine, pure; this module writes what it says to write, settles each reply or
timeout through it, and runs each lane's retry (backoff under ``retry.lane``, the probe's wait).

- Every publish has a deadline (``ack_timeout``): nats-py futures have none of their own, and we
  keep no future per publish at all. Replies come to one wildcard inbox subscription; the reply
  subject carries an integer token that finds the publish.
- After a connection loss every unacknowledged publish is re-sent on the next connection. We do
  not use nats-py's reconnect: its buffer would flush publishes queued behind one lost in the
  socket, storing a later record before an earlier one.
- Every background task (reconnection, connection health check, the reaper, lane retries, writes
  for callbacks) belongs to one ``asyncio.TaskGroup`` that lives from ``start()`` to ``aclose()``:
  an exception one of them did not expect ends the sink (``wait_failed`` raises it) instead of
  being dropped; after ``aclose()`` begins, none is started.

Frames are written as pre-encoded ``HPUB`` bytes (``bridge.core.frames``), one write per fetched
batch, through ``InboxClient.write`` (``bridge.jetstream.client``): nats-py's public ``publish`` takes
headers as a dict (no repeated names, which Redpanda Connect's output sends) and encodes per call.
Replies to the inbox are read by the client's inbox parser (a PubAck costs one regex match there)
instead of nats-py's ``Msg``/queue/task path, which cost more than everything else per record (see
the bench notes in README).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import nats.errors
import structlog

from bridge.core.errors import (
    AckTimeout,
    BridgeError,
    ConnectionLost,
    DeliveryFailed,
    JetStreamError,
    NatsUnavailable,
    NoStreamError,
    PublishError,
    ReconnectsExhausted,
    RecordError,
)
from bridge.core.frames import CRLF
from bridge.core.routing import Envelope, too_large
from bridge.jetstream import lanes
from bridge.jetstream.client import INBOX_PREFIX_LEN, MAX_REPLY_LEN, InboxClient
from bridge.jetstream.errors import translate
from bridge.jetstream.lanes import DONE, SENT
from bridge.jetstream.options import ConnectOptions
from bridge.ops.latency import LatencyHistogram
from bridge.ops.log import redact_text
from bridge.run import retry

__all__ = ["INBOX_PREFIX_LEN", "MAX_REPLY_LEN", "JetStreamSink", "Lane", "SinkStats"]

log = structlog.get_logger("bridge.sink")  # the logger's name is part of the log format: kept

CLOSED_ON_PROBE = (
    3  # connection losses in a row with the same probe alone on the wire: the record is the cause
)

Ctx = TypeVar("Ctx")
T = TypeVar("T")


class Lane(lanes.Lane[Envelope]):
    """A lane (``bridge.jetstream.lanes``) with the publisher's asyncio handles on it."""

    __slots__ = ("closed_on_probe", "idle_waiter", "probing", "retry_task")

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.probing: asyncio.Future[None] | None = None  # the fate of the retry's probe
        self.closed_on_probe = 0  # the connection was lost while the same probe was on the wire alone
        self.retry_task: asyncio.Task[None] | None = None
        self.idle_waiter: asyncio.Event | None = None  # set once nothing of the lane is unsettled


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
    connects: int = 0  # connections established (the first one included)
    connect_failures: int = 0  # connection attempts that failed
    losses: int = 0  # established connections lost


class JetStreamSink(Generic[Ctx]):
    """Publishes, each with the caller's context (``Ctx``), handed back with its fate: ``on_ack(ctx,
    stream sequence, duplicate, stream name)`` once stored, ``on_fail(ctx, error)`` when no retry can
    store it. ``client`` makes the client of each connection (``InboxClient``; the unit tests pass a
    fake and play the server)."""

    def __init__(
        self,
        connect_options: ConnectOptions,
        *,
        max_in_flight: int,
        ack_timeout: float,
        retry_timeout: float,
        max_reconnects: int | None,
        reconnect_wait: float = 2.0,
        on_ack: Callable[[Ctx, int, bool, bytes], None],
        on_fail: Callable[[Ctx, BaseException], None],
        on_connected: Callable[[int], None] | None = None,
        client: Callable[[], InboxClient] = InboxClient,
    ) -> None:
        self._options = connect_options
        self._client = client  # makes each connection's client: the one seam to nats-py (tests pass fakes)
        self._servers = ",".join(connect_options.get("servers", []))
        self.max_in_flight = max_in_flight
        self.ack_timeout = ack_timeout
        self.retry_timeout = retry_timeout
        self.max_reconnects = max_reconnects
        self.reconnect_wait = reconnect_wait
        self._on_ack = on_ack
        self._on_fail = on_fail
        self._on_connected = on_connected  # called with the server's max_payload on every connection

        self._nc: InboxClient | None = None
        self._prefix_bytes = b""  # the reply inbox of this connection, b"_INBOX.<nuid>."
        self._tokens = itertools.count(1)
        self._inflight: dict[int, Envelope] = {}  # token → publish, in send order
        self._outbox: list[bytes] = []  # staged frames not yet handed to nats-py
        self._lanes: dict[str, Lane] = {}
        self.in_flight = 0  # accepted and not yet resolved
        # Room again once a full window has drained to this (hysteresis): the fetch loop then takes an
        # eighth of the window at once rather than a few records per ack, so writes, fetches and
        # syscalls come in batches (measured in the bench: see the README's performance notes).
        self._refill_at = max_in_flight - max(1, max_in_flight // 8)
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._drained = asyncio.Event()
        self._drained.set()
        self._connected = asyncio.Event()
        self._fatal: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._group: asyncio.TaskGroup | None = None  # every background task; see the module docstring
        self._supervisor: asyncio.Task[None] | None = None  # the task that holds the group open
        self._reconnecting: asyncio.Task[None] | None = None
        self._probe_turn = asyncio.Lock()  # one lane's retry probe on the wire at a time
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
        self.connects = self.connect_failures = self.losses = 0

    # ------------------------------------------------------------------ connection

    async def start(self) -> None:
        """Open the task group, connect (under the reconnect policy) and start the ack-timeout reaper."""
        ready = asyncio.Event()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(ready))
        await ready.wait()
        await self._connect_with_policy(initial=True)
        self._reaper = self._spawn(self._reap())

    async def _connect_with_policy(self, initial: bool) -> None:
        if not initial and self.max_reconnects == 0:
            raise NatsUnavailable(self._servers, "connection lost and max_reconnects is 0")
        async for attempt in retry.nats_connect(self.max_reconnects, self.reconnect_wait, self._servers):
            with attempt:
                try:
                    await self._connect_once()
                except Exception:
                    self.connect_failures += 1
                    raise

    async def _connect_once(self) -> None:
        self._last_error = None
        if self._options.problem is not None:
            # the TLS material or a credential did not load (bridge.core.tls): no attempt can succeed
            raise self._options.problem

        async def error_cb(exc: Exception) -> None:
            self._last_error = exc

        nc = self._client()
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
        prefix = nc.new_inbox_prefix()
        assert len(prefix) == INBOX_PREFIX_LEN, prefix  # MAX_REPLY_LEN depends on it
        self._prefix_bytes = prefix
        try:
            await nc.subscribe_inbox(prefix, self._on_puback, self._on_reply)
            await nc.flush(timeout=5)
        except Exception as exc:  # closed right after connecting (a refused client certificate, ...)
            self._nc = None
            await _quiet_close(nc)
            raise self._translate(self._last_error or exc) from exc
        self.max_payload = nc.max_payload
        self.server_name = nc.server_name
        if self._on_connected is not None:
            self._on_connected(self.max_payload)  # a server restarted with other limits: route by them
        self._connected.set()
        self.connects += 1
        log.info(
            "nats_connected", servers=self._servers, server=self.server_name, max_payload=self.max_payload
        )

    def _translate(self, exc: BaseException) -> BridgeError:
        return translate(exc, self._servers, tls="tls" in self._options)

    def _closed_cb_for(self, nc: InboxClient) -> Callable[[], Coroutine[Any, Any, None]]:
        async def closed_cb() -> None:
            if nc is self._nc and not self._closing:
                self._connection_lost()

        return closed_cb

    def _connection_lost(self) -> None:
        self._connected.clear()
        self.losses += 1
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
            self._fail_transient(item, ConnectionLost(item.subject))
        if nc is not None and not nc.is_closed:
            self._spawn(_close_lost(nc))
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

    def stage(self, lane: Lane, batch: Iterable[tuple[Envelope, Ctx]]) -> int:
        """Accept one lane's publishes, in record order: they are written by the next ``flush()``.
        Returns how many were accepted. This is the hot path: keep it lean."""
        n = 0
        if not lane.flowing or self._nc is None:
            for item, ctx in batch:
                item.lane = lane
                item.ctx = ctx
                lane.queue(item)
                n += 1
            if self._nc is None and lane.waiting:
                # Disconnected: the lane waits for the next connection like a halted one.
                lane.disconnected(ConnectionLost(lane.waiting[0].subject))
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
                # Lane.send, inlined: a first send, so its order is its token
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

    def publish_nowait(self, batch: Iterable[tuple[Lane, Envelope, Ctx]]) -> None:
        """Accept publishes of any lanes (in record order per lane) from a callback: counted in
        ``in_flight`` at once, written by a task."""
        for lane, envelope, ctx in batch:
            self.stage(lane, ((envelope, ctx),))
        if self._outbox:
            self._spawn(self._write())

    def _stage(self, item: Envelope, now: float) -> None:
        """Give ``item`` a (new) token and put its frame in the outbox (re-sends and probes). A publish over
        the connection's ``max_payload`` (the server came back with a lower one) is never written: it is
        handed back as a record error, as the router would have refused it."""
        token = next(self._tokens)
        item.lane.send(item, token)
        size = item.size
        if size > self.max_payload:
            self._fail(item, too_large(size, self.max_payload))
            return
        item.deadline = now + self.ack_timeout
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
        await nc.write(blob)

    # ------------------------------------------------------------------ replies

    def _on_puback(self, token: int, seq: int, duplicate: bool, stream: bytes) -> None:
        """A PubAck on the inbox (called from the read loop by the inbox parser; must not block)."""
        item = self._inflight.pop(token, None)
        if item is None:
            return  # late: timed out and re-sent, or its lane was dropped
        lane: Lane = item.lane
        if not lane.stored(item, duplicate, seq, stream):
            self._order_violation(lane, item, seq, duplicate)
        self.acked += 1
        if duplicate:
            self.duplicates += 1
        if self.acked & 15 == 0:
            # one ack in 16 feeds the latency histogram (sent → PubAck), cheap enough for the hot path
            self.latency.observe(time.monotonic() - (item.deadline - self.ack_timeout))
        # _resolved(1), inlined
        self.in_flight -= 1
        if self.in_flight <= self._refill_at:
            self._capacity.set()
        if self.in_flight == 0:
            self._drained.set()
        if lane.probing is not None and not lane.probing.done():
            lane.probing.set_result(None)
        if lane.idle_waiter is not None and not lane.sent and not lane.waiting:
            lane.idle_waiter.set()
        if lane.halted:
            self._maybe_retry(lane)
        self._on_ack(item.ctx, seq, duplicate, stream)

    def _on_reply(self, token: int, data: bytes, headers: bytes) -> None:
        """Any other reply on the inbox: status headers, errors, PubAcks with fields we do not know."""
        item = self._inflight.get(token)
        if item is None:
            return  # late: timed out and re-sent, or its lane was dropped
        reply = decode_reply(item.subject, data, headers)
        if isinstance(reply, PublishError):
            del self._inflight[token]
            self._fail(item, reply)
        else:
            self._on_puback(token, *reply)

    def _order_violation(self, lane: Lane, item: Envelope, seq: int, duplicate: bool) -> None:
        """The stream holds ``item`` out of its lane's order: that cannot be undone, so it is counted and
        logged loudly. It happens when the server refused an earlier publish alone for a reason a retry
        fixed (a ``discard: new`` stream full for its size, a per-subject limit, a subject no stream
        bound yet) while the publishes behind it, already written, were stored — in this run (``item``
        stored late) or in an earlier one (``item``, a later record, comes back as a duplicate at a lower
        sequence than the earlier record this run stored); or when a stream lost a publish and accepted
        a later one (an R3 stream electing a leader). Ack timeouts and lost connections are not
        evidence: the publish may well have been stored; only acks and their sequences are."""
        self.reorders += 1
        which = "stored_early" if duplicate else "stored_late"
        log.error("order_violation", lane=lane.name, subject=item.subject, seq=seq, **{which: item.msg_id})

    def _resolved(self, n: int) -> None:
        self.in_flight -= n
        if self.in_flight <= self._refill_at:
            self._capacity.set()
        if self.in_flight == 0:
            self._drained.set()

    def _fail(self, item: Envelope, exc: PublishError | RecordError) -> None:
        if exc.retriable:
            self._fail_transient(item, exc)
            return
        # No retry can store this record: hand it back, keep the lane flowing.
        lane: Lane = item.lane
        lane.failed_permanently(item)
        self.failures += 1
        self._resolved(1)
        if lane.probing is not None and not lane.probing.done():
            lane.probing.set_exception(exc)
        if lane.idle_waiter is not None and lane.idle:
            lane.idle_waiter.set()  # a revocation waiting for the lane: its last publish is settled too
        if lane.halted:
            self._maybe_retry(lane)
        self._on_fail(item.ctx, exc)

    def _fail_transient(self, item: Envelope, exc: BridgeError) -> None:
        lane: Lane = item.lane
        self.failures += 1
        if lane.failed(item, exc):
            log.warning("lane_halted", lane=lane.name, subject=item.subject, error=str(exc))
        if lane.probing is not None and not lane.probing.done():
            lane.probing.set_exception(exc)
        self._maybe_retry(lane)

    # ------------------------------------------------------------------ lane retries

    def _maybe_retry(self, lane: Lane) -> None:
        if lane.retry_due and lane.rewind():
            lane.retry_task = self._spawn(self._retry_lane(lane))

    async def _retry_lane(self, lane: Lane) -> None:
        try:
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
            await self._connected.wait()  # the probe's connection may be gone: re-send on a live one
            lane.resume()
            now = time.monotonic()
            for item in lane.resend():
                self._stage(item, now)
                self.resent += 1
            await self._write()
        finally:
            lane.retry_ended()

    async def _probe(self, lane: Lane) -> None:
        """Send the lane's first unstored publish alone and wait for its fate. Probes go one at a time on
        the connection, so one that closes it is told apart from those it took down with it."""
        async with self._probe_turn:
            await self._probe_alone(lane)

    async def _probe_alone(self, lane: Lane) -> None:
        item = lane.next_probe()
        if item is None:
            return
        lane.probing = asyncio.get_running_loop().create_future()
        self._stage(item, time.monotonic())
        self.resent += 1
        await self._write()
        try:
            await lane.probing
        except (PublishError, RecordError) as exc:
            if item.state == DONE:
                return  # not retriable: handed back through on_fail; the lane goes on
            if isinstance(exc, ConnectionLost) and self._closes_the_connection(lane, item):
                return  # handed back as unsendable; the lane goes on
            raise
        else:
            lane.closed_on_probe = 0
        finally:
            lane.probing = None
            lane.probe_settled(item)  # not settled: back to the front, as the first of the lane again

    def _closes_the_connection(self, lane: Lane, item: Envelope) -> bool:
        """The connection was lost while ``item`` was on the wire alone (the retry's probe). The
        ``CLOSED_ON_PROBE``-th time in a row, ``item`` is taken to be what the server closes it over (a
        limit the bridge could not check, such as a ``max_control_line`` below ``bridge.max_control_line``):
        it is handed back as a record error, so it is dead-lettered or stops its partition instead of
        closing every connection for ever."""
        lane.closed_on_probe += 1
        if lane.closed_on_probe < CLOSED_ON_PROBE:
            return False
        lane.closed_on_probe = 0
        lane.give_up(item)
        self.failures += 1
        self._resolved(1)
        line = len(item.head) - len(b"HPUB ") + MAX_REPLY_LEN + len(item.pre[: item.pre.index(b"\r\n")])
        error = RecordError(
            f"nats-server closed the connection each of the {CLOSED_ON_PROBE} times this record was sent "
            f"alone: its protocol line is about {line:,} bytes, maybe over the server's max_control_line "
            "(set bridge.max_control_line to the server's value)",
            kind="connection_closed",
        )
        log.error("record_closes_the_connection", lane=lane.name, subject=item.subject, times=CLOSED_ON_PROBE)
        self._on_fail(item.ctx, error)
        return True

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

    @property
    def has_room(self) -> bool:
        """New publishes may be accepted: the window is not full, or it drained to its refill mark."""
        return self._capacity.is_set()

    async def wait_drained(self) -> None:
        await self._drained.wait()

    async def wait_failed(self) -> None:
        """Returns never; raises the fatal error (reconnects exhausted, a lane gave up, a background task
        failed)."""
        await self._fatal

    async def wait_lane_idle(self, lane: Lane) -> None:
        if lane.idle:
            return
        lane.idle_waiter = asyncio.Event()
        await lane.idle_waiter.wait()

    def drop_lane(self, lane: Lane) -> int:
        """Forget a revoked partition's lane: its unacknowledged publishes are abandoned (they will be
        read again by whoever gets the partition); late acks for them are ignored. Returns how many."""
        abandoned = lane.drop()
        for item in abandoned:
            if item.token:
                self._inflight.pop(item.token, None)
        if lane.retry_task is not None:
            lane.retry_task.cancel()
        if self._lanes.get(lane.name) is lane:
            del self._lanes[lane.name]
        if abandoned:
            self._resolved(len(abandoned))
        return len(abandoned)

    @property
    def connected(self) -> bool:
        """Connected and acks flowing: a server that stopped answering is not "connected" here."""
        return self._nc is not None and self._nc.is_connected and not self.stalled

    def statistics(self) -> SinkStats:
        return SinkStats(
            in_flight=self.in_flight,
            sent=self.sent,
            acked=self.acked,
            duplicates=self.duplicates,
            resent=self.resent,
            timeouts=self.timeouts,
            failures=self.failures,
            reconnects=self.reconnects,
            reorders=self.reorders,
            connected=self.connected,
            connects=self.connects,
            connect_failures=self.connect_failures,
            losses=self.losses,
        )

    # ------------------------------------------------------------------ lifecycle

    def _set_fatal(self, exc: BaseException) -> None:
        if not self._fatal.done():
            log.error("sink_failed", error=str(exc))
            self._fatal.set_exception(exc)

    async def _supervise(self, ready: asyncio.Event) -> None:
        """Hold the task group open until ``aclose()`` cancels this task (the group then cancels every
        background task and waits for them). A task that fails ends the group: its error becomes fatal."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                ready.set()
                await asyncio.Future()  # until cancelled
        except* Exception as failed:
            error = failed.exceptions[0]
            log.error("sink_task_failed", error=str(error) or type(error).__name__, exc_info=error)
            self._set_fatal(error)
        finally:
            self._group = None

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T] | None:
        """Run ``coro`` in the task group; not at all once ``aclose()`` began or the group ended."""
        group = self._group
        if group is None or self._closing:
            coro.close()
            return None
        try:
            return group.create_task(coro)
        except RuntimeError:  # the group is shutting down: a task of it failed
            coro.close()
            return None

    async def aclose(self) -> None:
        """Stop the background tasks and close the connection. Idempotent."""
        if self._closed:
            return
        self._closed = self._closing = True
        supervisor = self._supervisor
        if supervisor is not None and not supervisor.done():
            supervisor.cancel()
            await asyncio.wait([supervisor])
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


def decode_reply(subject: str, data: bytes, headers: bytes) -> tuple[int, bool, bytes] | PublishError:
    """A reply the inbox parser did not take as a plain PubAck: ``(stream sequence, duplicate, stream
    name)`` when it is one after all, else the failure it says (503 no responders, another status, a
    JetStream API error, something unreadable)."""
    if headers:
        # b"NATS/1.0 503\r\n..." (no responders) or another status line
        line = headers.split(b"\r\n", 1)[0].decode(errors="replace")
        status, _, desc = line[len("NATS/1.0") :].strip().partition(" ")
        if status == "503":
            return NoStreamError(subject)
        if status:
            return PublishError(subject, f"status {status} {desc}".strip())
    try:
        body = json.loads(data)
    except ValueError:
        return PublishError(subject, f"unreadable reply {data[:200]!r}")
    err = body.get("error") if isinstance(body, dict) else None
    if err is not None:
        code, err_code = int(err.get("code", 0)), int(err.get("err_code", 0))
        return JetStreamError(subject, code, err_code, str(err.get("description", "")))
    if not isinstance(body, dict) or "seq" not in body:
        return PublishError(subject, f"unreadable reply {data[:200]!r}")
    return int(body["seq"]), bool(body.get("duplicate", False)), str(body.get("stream", "")).encode()


async def _quiet_close(nc: InboxClient) -> None:
    """Close a client whose connect() failed (it may hold a socket and tasks); nothing to report.
    Bounded: after a failed TLS handshake nats-py's close waits forever for the detached transport."""
    if not nc.is_closed:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await nc.close()


async def _close_lost(nc: InboxClient) -> None:
    """Close a connection the sink gave up on (lost, or stale); its errors are no news."""
    try:
        await nc.close()
    except Exception as exc:  # closing a broken connection: nothing left to do
        log.debug("nats_close_error", error=str(exc))
