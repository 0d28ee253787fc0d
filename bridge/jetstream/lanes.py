"""Per-partition publish order under retries: the lane state machine. Pure: no asyncio, no nats.

The ordering rule (DESIGN.md: "a retry must not let a later record of the same partition overtake an
earlier one that was not stored"):

- Publishes are grouped in **lanes** (one per Kafka partition). Within a lane they are written in
  order on one connection; the stream stores what one connection sends in that order.
- A publish that fails for a retriable reason (ack timeout, 503 no responders, a JetStream error
  such as "stream offline", the connection lost) **halts its lane**: nothing new of that lane is
  sent; when the lane's other publishes have settled (``retry_due``), its unstored publishes go back
  to the front of the queue in order (``rewind``) and are re-sent — the first one alone (``next_probe``),
  the rest in order once it is stored (``resume``, ``resend``). So a later record never overtakes an
  earlier one that was not stored, and re-sent records that had been stored are dropped by the
  server (same ``Nats-Msg-Id``) and count as delivered. (The halt stops what is not yet written: when
  the server refuses one publish alone — a ``discard: new`` stream full for its size — the ones
  already written behind it may be stored first, which ``stored`` reports as an order violation.)
- A publish that fails for a reason no retry can fix (for example the stream's max message size)
  is settled as ``failed_permanently`` and handed back; its lane keeps flowing.
- A lane of a revoked partition is dropped (``drop``): its unsettled publishes are abandoned (whoever gets
  the partition reads them again), and replies that arrive for them later are ignored.
- The stream must store a lane's publishes in their first-send order (``order``): a publish stored
  after a later one of its lane (not a duplicate) is an order violation, which ``stored`` reports.

A publish moves through ``State``: ``WAITING`` (accepted, not written: in ``waiting``) → ``SENT``
(written, in ``sent``) → ``DONE`` (stored, handed back, or dropped), or → ``FAILED`` (retriable
failure, still in ``sent``) → ``WAITING`` again on ``rewind``. ``sent`` holds written publishes in
order until the oldest ones are ``DONE``; ``outstanding`` counts those on the wire now.

The publisher (``bridge.jetstream.publisher``) drives this machine: it writes what ``send`` marks,
settles each reply or timeout with ``stored`` / ``failed_permanently`` / ``failed``, runs the retry
(backoff, the probe's wait) as a task when ``rewind`` says so, and inlines ``send`` on its hot path.
A publish here is any object with the ``Publish`` attributes; the router's ``Envelope`` carries them,
so a record costs no object of its own.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

__all__ = ["Lane", "Publish", "State"]


class State(enum.IntEnum):
    """Where a publish is in its lane."""

    WAITING = 0  # accepted, not written (in ``Lane.waiting``)
    SENT = 1  # written, no reply yet (in ``Lane.sent``)
    FAILED = 2  # written, failed for a retriable reason: re-sent by the lane's retry
    DONE = 3  # settled: stored, handed back as permanently failed, or dropped


WAITING, SENT, FAILED, DONE = State.WAITING, State.SENT, State.FAILED, State.DONE


class Publish(Protocol):
    """What the lane machine reads and writes on a publish (``bridge.core.routing.Envelope``)."""

    state: int
    token: int  # the reply token of its current send (0: not on the wire)
    order: int  # the token of its first send: a lane's publishes are first sent in record order


P = TypeVar("P", bound=Publish)


class Lane(Generic[P]):
    """The publishes of one partition, in record order (see the module docstring); ``P``: the type of
    its publishes."""

    __slots__ = (
        "dropped",
        "error",
        "halted",
        "max_stored",
        "name",
        "outstanding",
        "retrying",
        "sent",
        "seq_high",
        "seq_stream",
        "seq_streams",
        "waiting",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: deque[P] = deque()  # written, in order (SENT, FAILED or DONE awaiting the head)
        self.waiting: deque[P] = deque()  # accepted, not written, in order
        self.outstanding = 0  # publishes of this lane on the wire right now
        self.max_stored = 0  # the latest (by first send) publish of this lane the stream stored
        # per stream: [the highest stream sequence acknowledged for this lane, its publish's first send];
        # seq_stream / seq_high: the stream of the last ack and its entry (most acks: one dict lookup less)
        self.seq_streams: dict[bytes, list[int]] = {}
        self.seq_stream: bytes | None = None
        self.seq_high: list[int] = [0, 0]
        self.halted = False  # a retriable failure: nothing new is written until the retry resumes it
        self.dropped = False  # revoked: nothing of it is written or settled any more
        self.retrying = False  # a retry (rewind … resume) is under way
        self.error: BaseException | None = None  # the failure that halted the lane

    # -- accepting and writing ----------------------------------------------------------------------

    @property
    def flowing(self) -> bool:
        """New publishes may be written at once: not halted, and nothing waits before them."""
        return not self.halted and not self.waiting

    @property
    def idle(self) -> bool:
        """Nothing of this lane is unsettled."""
        return not self.sent and not self.waiting

    def queue(self, item: P) -> None:
        """Accept ``item`` to be written later, after everything accepted before it."""
        item.token = item.order = 0
        item.state = WAITING
        self.waiting.append(item)

    def disconnected(self, error: BaseException) -> None:
        """There is no connection: a lane with publishes waiting halts (``error``) like a failed one, so
        they are sent by the retry once there is one."""
        if not self.halted and self.waiting:
            self.halted = True
            self.error = error

    def send(self, item: P, token: int) -> None:
        """``item`` is written with the reply token ``token`` (tokens only grow). The publisher inlines
        this for first sends on its hot path."""
        item.token = token
        if not item.order:
            item.order = token
        item.state = SENT
        self.sent.append(item)
        self.outstanding += 1

    # -- settling (a reply, a timeout or a lost connection ends one send) ---------------------------

    def stored(self, item: P, duplicate: bool, seq: int = 0, stream: bytes = b"") -> bool:
        """A PubAck: the stream holds ``item`` at ``seq`` (``duplicate``: it already did). False on an order
        violation (it cannot be undone): ``item`` was stored just now after a later publish of this lane;
        or the stream holds ``item`` at a lower sequence than an earlier publish of this lane — what a
        record refused in an earlier run and stored in this one leaves behind, seen when the later
        records, stored back then, come back as duplicates. Each such inversion is reported once."""
        self.outstanding -= 1
        in_order = True
        if not duplicate:
            if item.order < self.max_stored:
                in_order = False
            else:
                self.max_stored = item.order
        if seq:
            if stream == self.seq_stream:
                high = self.seq_high
            else:
                high = self.seq_streams.setdefault(stream, [0, 0])
                self.seq_stream, self.seq_high = stream, high
            if seq > high[0]:
                high[0], high[1] = seq, item.order
            elif not duplicate or item.order > high[1]:
                # a later record's copy precedes an earlier record's (a new message below the highest
                # sequence is a stream created again, not a reorder)
                in_order = in_order and not duplicate
                high[0], high[1] = seq, item.order
        item.state = DONE
        item.token = 0
        sent = self.sent
        while sent and sent[0].state == DONE:
            sent.popleft()
        return in_order

    def failed_permanently(self, item: P) -> None:
        """No retry can store ``item``: it is handed back; the lane keeps flowing."""
        self.outstanding -= 1
        item.state = DONE
        item.token = 0
        sent = self.sent
        while sent and sent[0].state == DONE:
            sent.popleft()

    def failed(self, item: P, error: BaseException) -> bool:
        """``item`` failed for a retriable reason: the lane halts. True when this halted it."""
        self.outstanding -= 1
        item.state = FAILED
        item.token = 0
        halting = not self.halted
        self.halted = True
        self.error = error
        return halting

    # -- the retry ----------------------------------------------------------------------------------

    @property
    def retry_due(self) -> bool:
        """Halted, nothing of it on the wire, no retry under way: time to ``rewind``."""
        return self.halted and not self.dropped and not self.retrying and self.outstanding == 0

    def rewind(self) -> bool:
        """Everything of this lane not stored goes back to the front of ``waiting``, in order. True: a
        retry starts (``retrying``; the caller runs it: ``next_probe``… ``resume``, ``resend``,
        ``retry_ended``); False: nothing is left to send and the lane flows again."""
        unstored = [p for p in self.sent if p.state != DONE]
        self.sent.clear()
        for p in unstored:
            p.state = WAITING
        self.waiting.extendleft(reversed(unstored))
        if self.waiting:
            self.retrying = True
            return True
        self.halted = False
        return False

    def next_probe(self) -> P | None:
        """The lane's first unstored publish, to be sent alone (``send``) before the others; None when
        nothing waits."""
        return self.waiting.popleft() if self.waiting else None

    def probe_settled(self, item: P) -> bool:
        """The probe's send ended. True when it is settled (stored or handed back); otherwise it goes back
        to the front, as the first of the lane again, and the retry tries again."""
        if item.state == DONE:
            return True
        if item in self.sent:
            self.sent.remove(item)
        item.state = WAITING
        self.waiting.appendleft(item)
        return False

    def give_up(self, item: P) -> None:
        """The retry's probe ``item`` (failed, ``FAILED``) is to be handed back as unsendable rather than
        sent again: it is settled; the retry goes on with the rest (``resume``)."""
        item.state = DONE
        item.token = 0
        if item in self.sent:
            self.sent.remove(item)

    def resume(self) -> None:
        """The probe was settled: the lane flows again; ``resend`` gives the rest in order."""
        self.halted = False
        self.error = None

    def resend(self) -> Iterator[P]:
        """The waiting publishes, first to last, while the lane flows (each to be sent at once: ``send``)."""
        waiting = self.waiting
        while waiting and not self.halted:
            yield waiting.popleft()

    def retry_ended(self) -> None:
        """The retry is over (resumed, given up or cancelled)."""
        self.retrying = False

    # -- revocation ---------------------------------------------------------------------------------

    def drop(self) -> list[P]:
        """Forget a revoked partition's lane: its unsettled publishes are abandoned and returned (those
        with a ``token`` are on the wire: their replies are to be ignored)."""
        self.dropped = True
        abandoned: list[P] = []
        for item in (*self.sent, *self.waiting):
            if item.state != DONE:
                item.state = DONE
                abandoned.append(item)
        self.sent.clear()
        self.waiting.clear()
        self.outstanding = 0
        return abandoned
