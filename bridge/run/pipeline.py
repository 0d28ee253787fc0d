"""The run: KafkaSource → Router → JetStreamSink, acks back into the Checkpointer, commits out.

Owns the loop and its order of work, in one ``asyncio.TaskGroup``:

- **fetch**: ``getmany`` at most ``max_in_flight − in_flight`` records; partitions are paused while
  they have ``checkpoint_limit`` records outstanding, stopped, finished (backfill) or being revoked,
  and all of them while the sink is full — ``getmany`` keeps being called so the group membership
  stays alive. Each record is tracked in its partition's ledger *before* it is published.
- **ack** (sink callback): the ledger records it; the partition's report counts it.
- **commit**: every ``commit_period`` the offsets that moved (``Checkpointer.to_commit``).
- **revocation** (rebalance hook): stop dispatching the partitions, wait up to
  ``bridge.revoke_timeout`` for their in-flight acks, commit what is safe, drop their lanes (late
  acks are ignored).
- **records that can never be published** (``RecordError`` from the router, or a non-retriable
  JetStream error): published to the dead-letter subject when ``bridge.dead_letter`` is set (its
  ack makes the record committable), otherwise the partition stops: nothing past it is committed.

What exists only while running — the sink, the source, the router, the fatal-error future — is built
by ``run()`` into one ``_Running`` object that the loop and the hooks are handed; each record's
context on its way through the sink is a ``Pending``.

Shutdown runs in a fixed order under one deadline (``shutdown_timeout``, ``bridge.run.deadline``,
started by the signal): stop fetching → wait for in-flight acks (three quarters of it at most) →
commit → close the consumer → close NATS, each step with what is left. A fatal error (NATS reconnects
exhausted, a partition that could not deliver within ``bridge.retry_timeout``) still commits what
was acknowledged before the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypeVar

import structlog
from aiokafka import TopicPartition

from bridge.core.checkpoint import Checkpointer, Ledger
from bridge.core.config import Loaded
from bridge.core.errors import (
    BackfillIncomplete,
    BridgeError,
    CommitsRefused,
    ExitCode,
    JetStreamError,
    LogRewound,
    PartitionStopped,
    RecordError,
    TopicNotFound,
    UncommittedAtExit,
)
from bridge.core.message import ConsumerRecordLike, Message
from bridge.core.routing import STREAM_SIZE_KIND, Envelope, MetadataRoute, PartitionRoute, Router
from bridge.jetstream.options import connect_options
from bridge.jetstream.publisher import MAX_REPLY_LEN, JetStreamSink, Lane, SinkStats
from bridge.kafka.source import KafkaSource
from bridge.ops.latency import LatencyHistogram
from bridge.run.deadline import Deadline
from bridge.run.modes import Mode

log = structlog.get_logger("bridge.pipeline")
T = TypeVar("T")

FETCH_WAIT = 0.25  # seconds getmany waits for records before the loop looks around again
DRAIN_SHARE = 0.75  # of the shutdown deadline, at most, waiting for in-flight acks (the rest: commit, close)
COMMIT_LOG_INTERVAL = 60.0  # seconds between periodic commits logged at INFO (the others at DEBUG)


@dataclass(slots=True)
class PartitionReport:
    """What one partition delivered in this run."""

    topic: str
    partition: int
    records: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    first_offset: int | None = None
    last_offset: int | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    stream: str = ""
    start: int | None = None
    end: int | None = None
    committed: int | None = None
    undelivered: int = 0  # backfill: records below the end offset neither stored nor dead-lettered
    stopped: str = ""
    held: str = ""  # why its offsets are not committed to the group (Mode.holds_commit)


@dataclass(frozen=True, slots=True)
class PipelineStats:
    consumed: int
    dead_lettered: int
    commits: int
    commit_failures: int
    commit_seconds: float
    outstanding: int
    partitions: int
    stopped: int
    lag: dict[tuple[str, int], int]
    sink: SinkStats | None


@dataclass(frozen=True, slots=True)
class Health:
    nats_connected: bool
    kafka_assigned: bool
    commits_fresh: bool

    @property
    def ready(self) -> bool:
        return self.nats_connected and self.kafka_assigned and self.commits_fresh


@dataclass(slots=True)
class _Part:
    tp: TopicPartition
    ledger: Ledger
    lane: Lane
    report: PartitionReport
    route: PartitionRoute | MetadataRoute | None = None  # the hot-path route when the config allows one
    topic_id: str = ""  # the ID of the topic incarnation this assignment reads ("" when unknown)
    preparing: bool = False  # assigned, not yet placed by the mode: paused, records not taken
    revoking: bool = False
    # (last offset, fetched at) of each dispatched batch not yet acknowledged: input_latency_ns
    batches: deque[tuple[int, float]] = field(default_factory=deque)


Phase: TypeAlias = Literal["starting", "assigned", "draining", "stopped"]

Pending: TypeAlias = tuple[_Part, ConsumerRecordLike, bool]
"""A record's context through the sink, handed back by its ack or failure: ``(part, record, dead)`` —
``dead``: the publish is the record's dead-letter. A plain tuple on purpose: building a class instance
per record costs a call on the hot path (measured: 31 ns for the tuple, 115 ns for a slotted class,
206 ns for a NamedTuple); the alias types each element."""


@dataclass(slots=True)
class _Running:
    """What exists only while ``run()`` runs: built there, handed to the loop and the hooks."""

    sink: JetStreamSink[Pending]
    source: KafkaSource
    router: Router
    failed: asyncio.Future[None]  # a fatal error outside the sink (a partition's log went back, ...)


@dataclass(slots=True)
class RunResult:
    mode: str
    reports: list[PartitionReport]
    stopped: list[PartitionStopped]
    error: BridgeError | None
    elapsed: float
    stats: SinkStats
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def records(self) -> int:
        return sum(r.records for r in self.reports)

    @property
    def failure(self) -> str | None:
        """Why the run did not succeed: its error, else its stopped partitions; None when it did."""
        if self.error is not None:
            return str(self.error)
        if self.stopped:
            return "; ".join(str(s) for s in self.stopped)
        return None

    @property
    def exit_code(self) -> ExitCode:
        if self.error is not None:
            return self.error.exit_code
        if self.stopped:
            return ExitCode.FAILED
        return ExitCode.OK


class Pipeline:
    def __init__(
        self,
        loaded: Loaded,
        mode: Mode,
        *,
        on_progress: Callable[[int], None] | None = None,
        on_acked: Callable[[ConsumerRecordLike], None] | None = None,
        share: tuple[int, int] = (0, 1),
    ) -> None:
        self.loaded = loaded
        self._share = share  # (i, n): worker i of n (--workers); a bounded run reads its share unjoined
        self.mode = mode
        self.config = loaded.config
        self.settings = loaded.kafka
        self.out = loaded.output
        self._on_progress = on_progress
        self._on_acked = on_acked  # called with each acknowledged Kafka record (the bench's latency probe)
        self.checkpointer = Checkpointer()
        self._parts: dict[TopicPartition, _Part] = {}
        self._reports: dict[TopicPartition, PartitionReport] = {}
        self._stopped: list[PartitionStopped] = []
        self._running: _Running | None = None  # built by run()
        self._sink: JetStreamSink[Pending] | None = None  # built by run(), before it connects
        self._commits = 0
        self.started = asyncio.Event()  # set once both clients are up
        # counters for statistics() / metrics (read at scrape time; nothing per record beyond +=)
        self.consumed = 0
        self.dead_lettered = 0
        self.commit_failures = 0
        self.commit_seconds = 0.0
        self._last_commit_ok = time.monotonic()
        self._commit_logged_at = -math.inf  # when a periodic commit was last logged at INFO
        self.assigned_once = False
        # where the run is, for the backfill's progress line: "starting" (connecting, taking its
        # partitions: a run waits for the group to assign them), "assigned" (fetching), "draining"
        # (fetching done, waiting for the acks), "stopped"; assigned_at: when partitions were first held
        # (a rate excludes the wait before it)
        self.phase: Phase = "starting"
        self.assigned_at: float | None = None
        self.input_latency = LatencyHistogram()  # fetch → PubAck of each batch's last record

    def _active(self) -> _Running:
        """The run-scoped state, for the hooks and callbacks that only come while ``run()`` runs."""
        if self._running is None:
            raise RuntimeError("the pipeline is not running")
        return self._running

    @property
    def labels(self) -> tuple[str, str]:
        """The input's and the output's ``label``: Redpanda Connect's metric label ``label``."""
        return self.config.input.label, self.config.output.label

    @property
    def sink(self) -> JetStreamSink[Pending] | None:
        """The run's sink (None before ``run()`` built it): metrics read its latency histogram."""
        return self._sink

    # ------------------------------------------------------------------ sink callbacks (hot path)

    def _on_ack(self, ctx: Pending, seq: int, duplicate: bool, stream: bytes) -> None:
        part, record, dead = ctx
        offset = record.offset
        if not part.ledger.ack(offset):
            return
        batches = part.batches
        if batches and offset >= batches[0][0]:
            self._batches_acked(batches, offset)
        r = part.report
        r.records += 1
        if r.first_offset is None or offset < r.first_offset:
            r.first_offset = offset
        if r.last_offset is None or offset > r.last_offset:
            r.last_offset = offset
        if duplicate:
            r.duplicates += 1
        else:
            if r.first_seq is None:
                r.first_seq = seq
                r.stream = stream.decode()
            r.last_seq = seq
        if dead:
            r.dead_lettered += 1
            self.dead_lettered += 1
            # said once the dead-letter subject's stream holds it (dead_lettering: when it was routed)
            log.warning(
                "dead_lettered", topic=record.topic, partition=record.partition, offset=offset, seq=seq
            )
        if self._on_progress is not None:
            self._on_progress(1)
        if self._on_acked is not None:
            self._on_acked(record)

    def _batches_acked(self, batches: deque[tuple[int, float]], offset: int) -> None:
        """The last record of the oldest batches in flight is acknowledged: their fetch → ack latency."""
        now = time.monotonic()
        while batches and batches[0][0] <= offset:
            self.input_latency.observe(now - batches.popleft()[1])

    def _on_fail(self, ctx: Pending, exc: BaseException) -> None:
        """A publish no retry can store: dead-letter it, or stop its partition."""
        part, record, dead = ctx
        if part.ledger.revoked:
            return
        msg = record if isinstance(record, Message) else Message.from_record(record)
        error = exc if isinstance(exc, RecordError) else _record_error(exc)
        if dead:
            self._stop_partition(
                part, msg, RecordError(f"dead-letter publish failed: {error.reason}", error.kind), True
            )
            return
        run = self._active()
        envelope = self._dead_letter_envelope(run, part, msg, error)
        if envelope is not None:
            run.sink.publish_nowait([(part.lane, envelope, (part, record, True))])

    def _on_connected(self, max_payload: int) -> None:
        """A (new) NATS connection: a server that came back with another ``max_payload`` is routed by it."""
        run = self._running
        if run is None or run.router.max_payload == max_payload:
            return
        log.warning("max_payload_changed", was=run.router.max_payload, now=max_payload)
        run.router.set_max_payload(max_payload)
        for tp, part in self._parts.items():
            if part.route is not None:
                part.route = run.router.for_partition(tp.topic, tp.partition)

    def _stop_partition(
        self, part: _Part, msg: Message, error: RecordError, dead_letter: bool = False
    ) -> None:
        if part.ledger.stopped:
            return
        part.ledger.stopped = True
        stopped = PartitionStopped(msg.topic, msg.partition, msg.offset, error.reason, dead_letter)
        part.report.stopped = str(stopped)
        self._stopped.append(stopped)
        log.error(
            "partition_stopped",
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            reason=error.reason,
        )

    # ------------------------------------------------------------------ rebalance hooks

    async def partitions_assigned(self, tps: set[TopicPartition]) -> None:
        """New partitions: paused (before any await, so no record of theirs is handed out) while their topic
        IDs are read (part of every default ``Nats-Msg-Id``), the mode places them (seek to earliest / a
        timestamp, end offsets) and their ledgers learn the start."""
        try:
            await self._assign(tps)
        except BridgeError as exc:  # raised into aiokafka's rebalance listener it would only be logged
            self._fail(exc)

    async def _assign(self, tps: set[TopicPartition]) -> None:
        run = self._active()
        source, router = run.source, run.router
        for tp in tps:
            ledger = self.checkpointer.assign(tp)
            report = self._reports.get(tp)
            if report is None:
                report = self._reports[tp] = PartitionReport(tp.topic, tp.partition)
            lane = run.sink.lane(f"{tp.topic}/{tp.partition}")
            self._parts[tp] = _Part(tp, ledger, lane, report, preparing=True)
        source.set_paused(self._paused(run, False))
        ids = await source.topic_ids({tp.topic for tp in tps})
        for topic, topic_id in ids.items():
            router.set_topic_id(topic, topic_id)
        for tp in tps:
            part = self._parts.get(tp)
            if part is not None:
                part.topic_id = ids.get(tp.topic, "")
                part.route = router.for_partition(tp.topic, tp.partition)
        await self._skip_commits_of_other_incarnations(source, tps)
        await self.mode.on_assigned(source, sorted(tps))
        for tp in tps:
            part = self._parts.get(tp)
            if part is None:
                continue  # revoked while we were preparing it
            part.ledger.advance(await source.position(tp))
            if source.has_group:
                part.ledger.committed = await source.committed(tp)
                held = self.mode.holds_commit(tp, part.ledger.committed)
                if held:
                    part.report.held, part.report.committed = held, part.ledger.committed
                    log.warning("commit_held", partition=f"{tp.topic}/{tp.partition}", reason=held)
            bounds = self.mode.planned(tp)
            if bounds is not None and part.report.start is None:
                part.report.start = bounds[0]
            part.preparing = False
        self.assigned_once = True
        if self.assigned_at is None:
            self.assigned_at = time.monotonic()
        if self.phase == "starting":
            self.phase = "assigned"
        log.info("partitions_assigned", partitions=_names(tps))

    async def _skip_commits_of_other_incarnations(
        self, source: KafkaSource, tps: set[TopicPartition]
    ) -> None:
        """A committed offset made for another topic ID (an earlier incarnation of a topic deleted and created
        again, on a broker that kept the group's offsets) says nothing about the new log: such partitions
        start where ``start_offset`` says, as if nothing were committed."""
        committed_for = await source.committed_topic_ids(sorted(tps))
        stale = [
            tp
            for tp, topic_id in committed_for.items()
            if (part := self._parts.get(tp)) is not None and part.topic_id and topic_id != part.topic_id
        ]
        if not stale:
            return
        log.warning(
            "commit_of_earlier_topic_ignored",
            partitions=_names(stale),
            note="the topic was created again since that commit: reading from start_offset",
        )
        await source.reset_to_start(stale)

    async def partitions_revoked(self, tps: set[TopicPartition]) -> None:
        run = self._active()
        parts = [self._parts[tp] for tp in tps if tp in self._parts]
        for part in parts:
            part.revoking = True
        budget = self.config.bridge.revoke_timeout
        started = time.monotonic()
        try:
            async with asyncio.timeout(budget):
                for part in parts:
                    await run.sink.wait_lane_idle(part.lane)
        except TimeoutError:
            log.warning("revoke_timeout", seconds=budget, partitions=_names(p.tp for p in parts))
        offsets = {p.tp: c for p in parts if (c := p.ledger.needs_commit()) is not None}
        if offsets:
            await self._commit(run, offsets, reason="revoked")
        abandoned = 0
        for part in parts:
            self.checkpointer.revoke(part.tp)
            abandoned += run.sink.drop_lane(part.lane)
            del self._parts[part.tp]
        self.mode.on_revoked(tps)
        log.info(
            "partitions_revoked",
            partitions=_names(tps),
            waited=round(time.monotonic() - started, 3),
            committed=len(offsets),
            abandoned=abandoned,
        )

    # ------------------------------------------------------------------ commits

    async def _same_topics(
        self, run: _Running, offsets: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """``offsets`` less those of partitions whose topic is not the one their records were read from any
        more: deleted (nothing to commit to) or created again (its offsets are another log's: committing
        one would skip records of the new log). A partition still held when its topic was created again
        is retired and the run fails (``LogRewound``): records of the new log may have been published
        with the old topic ID, and only a fresh assignment reads it from its start."""
        try:
            now = await run.source.topic_ids({tp.topic for tp in offsets})
        except BridgeError as exc:
            log.warning("commit_skipped", reason=f"topic IDs unavailable: {exc}", partitions=len(offsets))
            return {}
        safe: dict[TopicPartition, int] = {}
        for tp, offset in offsets.items():
            part = self._parts.get(tp)
            current = now.get(tp.topic, "")
            if part is None or current == part.topic_id:
                safe[tp] = offset
            elif not current:
                log.warning("commit_skipped", reason="topic deleted", partition=f"{tp.topic}/{tp.partition}")
            elif part.revoking:
                log.warning(
                    "commit_skipped",
                    reason="topic created again",
                    partition=f"{tp.topic}/{tp.partition}",
                    topic_id=current,
                    read_from=part.topic_id,
                )
            else:
                detail = f"the topic was deleted and created again (topic ID {part.topic_id} → {current})"
                self._rewound(part, LogRewound(tp.topic, tp.partition, detail))
        return safe

    def _rewound(self, part: _Part, error: LogRewound) -> None:
        """Retire a partition whose log is not the one it was reading: nothing more of it is committed, its
        records are not taken, and the run fails."""
        if part.ledger.stopped and part.ledger.revoked:
            return
        part.ledger.stopped = True
        self.checkpointer.revoke(part.tp)  # its acks are ignored and it is never committed again
        part.report.stopped = str(error)
        log.error("log_rewound", topic=part.tp.topic, partition=part.tp.partition, detail=error.detail)
        self._fail(error)

    def _fail(self, error: BaseException) -> None:
        """End the run with ``error`` (once): the fetch loop stops, what is safe is committed."""
        failed = self._active().failed
        if not failed.done():
            failed.set_exception(error)

    async def _commit(self, run: _Running, offsets: dict[TopicPartition, int], reason: str) -> None:
        if not run.source.has_group:
            return
        offsets = {tp: o for tp, o in offsets.items() if not ((p := self._parts.get(tp)) and p.report.held)}
        if not offsets:
            self._last_commit_ok = time.monotonic()  # nothing it may commit is owed
            return
        offsets = await self._same_topics(run, offsets)
        if not offsets:
            return
        started = time.monotonic()
        topic_ids = {tp.topic: part.topic_id for tp in offsets if (part := self._parts.get(tp)) is not None}
        if await run.source.commit(offsets, topic_ids):
            self._last_commit_ok = time.monotonic()
            self.commit_seconds += self._last_commit_ok - started
            self.checkpointer.mark_committed(dict(offsets))
            for tp, offset in offsets.items():
                report = self._reports.get(tp)
                if report is not None:
                    report.committed = offset
            self._commits += 1
            # One line per commit for revocations and shutdown; periodic ones (every commit_period, 1 s by
            # default) at INFO once a minute, the others at DEBUG, so a quiet run does not fill its log.
            say = log.info
            if reason == "periodic":
                if started - self._commit_logged_at < COMMIT_LOG_INTERVAL:
                    say = log.debug
                else:
                    self._commit_logged_at = started
            say(
                "committed",
                reason=reason,
                partitions=len(offsets),
                ms=round((time.monotonic() - started) * 1000, 1),
                offsets={f"{tp.topic}/{tp.partition}": o for tp, o in offsets.items()}
                if len(offsets) <= 16
                else None,
            )
        else:
            self.commit_failures += 1

    async def commit_now(self, reason: str = "periodic") -> None:
        offsets = self.checkpointer.to_commit()
        if offsets:
            await self._commit(self._active(), offsets, reason)
        else:
            self._last_commit_ok = time.monotonic()  # nothing owed counts as up to date

    async def _commit_loop(self) -> None:
        period = self.settings.commit_period
        while True:
            await asyncio.sleep(period)
            await self.commit_now()

    # ------------------------------------------------------------------ fetching

    def _paused(self, run: _Running, full: bool) -> set[TopicPartition]:
        if full:
            return set(self._parts)
        limit = self.settings.checkpoint_limit
        return {
            tp
            for tp, part in self._parts.items()
            if part.preparing
            or part.revoking
            or part.ledger.stopped
            or part.ledger.outstanding >= limit
            or self.mode.partition_done(tp, part.ledger, run.source)
        }

    async def _fetch_loop(self, run: _Running, stop: asyncio.Event) -> bool:
        """Fetch and dispatch until a signal (False) or the mode says the run is finished (True)."""
        sink, source = run.sink, run.source
        while not stop.is_set():
            if self.mode.finished(((tp, p.ledger) for tp, p in self._parts.items()), source):
                return True
            budget = sink.max_in_flight - sink.in_flight if sink.has_room else 0
            source.set_paused(self._paused(run, budget <= 0))
            if budget <= 0:
                # Full: wait for acks, but keep polling so the group sees us alive.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await sink.wait_capacity()
                if not sink.has_room:
                    await source.fetch(max_records=1, wait=0)
                continue
            batch = await source.fetch(max_records=budget, wait=FETCH_WAIT)
            if batch:
                await self._dispatch(run, batch)
            if self.mode.bounded:
                await self._step_over_empty_batches(run, batch)
        return False

    async def _dispatch(self, run: _Running, batch: dict[TopicPartition, list[Any]]) -> None:
        """Hand one fetched batch to the sink: track every record in its ledger, route it, stage it,
        then write the whole batch at once. The per-record loop is the hot path."""
        sink, source, router = run.sink, run.source, run.router
        fetched_at = time.monotonic()
        for tp, records in batch.items():
            part = self._parts.get(tp)
            if part is None or part.preparing:
                # Assigned, but its hook has not run yet: hand these records out again later.
                if tp in source.assignment():
                    source.seek(tp, records[0].offset)
                continue
            ledger = part.ledger
            if part.revoking or ledger.stopped:
                continue  # not ours any more, or stopped: whoever reads next starts at the commit
            if ledger.position is not None and records[0].offset < ledger.position:
                await self._log_went_back(source, part, ledger.position, records[0].offset)
                continue
            complete = True
            limit = self.mode.limit(tp, source)
            if limit is not None and records[-1].offset >= limit:
                records = [r for r in records if r.offset < limit]
                complete = False
            fast = part.route
            highwater = source.highwater(tp)
            items: list[tuple[Envelope, Pending]] = []
            offsets: list[int] = []
            for record in records:
                offset = record.offset
                offsets.append(offset)
                try:
                    if fast is not None:
                        envelope = fast.route_record(record, highwater)
                    else:
                        envelope = router.route(Message.from_record(record, highwater))
                except RecordError as error:
                    dead = self._dead_letter_envelope(
                        run, part, Message.from_record(record, highwater), error
                    )
                    if dead is None:
                        complete = False  # the partition stopped at this (tracked, never acked) record
                        break
                    items.append((dead, (part, record, True)))
                    continue
                items.append((envelope, (part, record, False)))
            ledger.track_many(offsets)
            self.consumed += len(offsets)
            if items:
                sink.stage(part.lane, items)
                part.batches.append((offsets[-1], fetched_at))
            if complete and records:
                ledger.advance(await source.position(tp))
        await sink.flush()

    async def _step_over_empty_batches(self, run: _Running, batch: dict[TopicPartition, list[Any]]) -> None:
        """A bounded run's partitions that got no records may still have moved: past transaction markers and
        aborted transactions (``read_committed`` skips them without handing out a record). Their ledgers
        learn the consumer's position, never past the end, so a backfill whose last offsets hold no
        record still finishes."""
        source = run.source
        for tp, part in self._parts.items():
            if tp in batch or part.preparing or part.revoking or part.ledger.stopped:
                continue
            limit = self.mode.limit(tp, source)
            position = part.ledger.position
            if limit is None or (position is not None and position >= limit):
                continue
            part.ledger.advance(min(await source.position(tp), limit))

    async def _log_went_back(self, source: KafkaSource, part: _Part, expected: int, got: int) -> None:
        """The consumer handed out offset ``got`` after the ones before ``expected``: the log was reset
        under us (aiokafka resets a position that is out of range), so it is not the log we were reading."""
        went = f"its offsets went back from {expected} to {got}"
        try:
            current = (await source.topic_ids({part.tp.topic})).get(part.tp.topic, "")
        except BridgeError:
            current = ""
        tp = part.tp
        if current and current != part.topic_id:
            detail = f"the topic was deleted and created again (topic ID {part.topic_id} → {current}): {went}"
            self._rewound(part, LogRewound(tp.topic, tp.partition, detail))
        elif part.ledger.start == expected and part.report.records == 0:
            # nothing read yet: the place it was to start at (a commit, a configured offset) is past the end
            self._rewound(
                part, LogRewound.start_past_end(tp.topic, tp.partition, expected, source.settings.group, went)
            )
        else:
            detail = f"{went} (the topic was deleted and created again, or its log truncated)"
            self._rewound(part, LogRewound(tp.topic, tp.partition, detail))

    def _dead_letter_envelope(
        self, run: _Running, part: _Part, msg: Message, error: RecordError
    ) -> Envelope | None:
        if run.router.has_dead_letter:
            try:
                envelope = run.router.dead_letter(msg, error)
            except RecordError as dlq_error:
                error = RecordError(
                    f"{error.reason}; dead-letter publish impossible: {dlq_error.reason}", error.kind
                )
            else:
                log.warning(
                    "dead_lettering",
                    topic=msg.topic,
                    partition=msg.partition,
                    offset=msg.offset,
                    reason=error.reason,
                )
                return envelope
        self._stop_partition(part, msg, error)
        return None

    # ------------------------------------------------------------------ observability

    def statistics(self) -> PipelineStats:
        """A snapshot for /metrics and the logs (cheap: no I/O)."""
        lag: dict[tuple[str, int], int] = {}
        run = self._running
        if run is not None:
            for tp, part in self._parts.items():
                hw = run.source.highwater(tp)
                committable = part.ledger.committable()
                if hw is not None and committable is not None:
                    lag[(tp.topic, tp.partition)] = max(hw - committable, 0)
        return PipelineStats(
            consumed=self.consumed,
            dead_lettered=self.dead_lettered,
            commits=self._commits,
            commit_failures=self.commit_failures,
            commit_seconds=self.commit_seconds,
            outstanding=self.checkpointer.outstanding,
            partitions=len(self._parts),
            stopped=len(self._stopped),
            lag=lag,
            sink=None if self._sink is None else self._sink.statistics(),
        )

    def health(self) -> Health:
        """Ready = NATS connected, partitions held (or explicitly assigned), commits not stale."""
        run = self._running
        nats_ok = run is not None and run.sink.connected
        kafka_ok = self.started.is_set() and self.assigned_once and bool(self._parts)
        period = self.settings.commit_period
        stale_after = max(3 * period, 30.0)
        owed = bool(self.checkpointer.to_commit()) if run is not None and run.source.has_group else False
        commits_ok = not owed or (time.monotonic() - self._last_commit_ok) <= stale_after
        return Health(nats_connected=nats_ok, kafka_assigned=kafka_ok, commits_fresh=commits_ok)

    # ------------------------------------------------------------------ the run

    async def run(self, stop: asyncio.Event) -> RunResult:
        started = time.monotonic()
        deadline = Deadline(self.config.shutdown_timeout)  # started by the stop, or when the run ends
        label = self.config.output.label
        sink: JetStreamSink[Pending] = JetStreamSink(
            connect_options(self.out, label),
            max_in_flight=self.out.max_in_flight,
            ack_timeout=self.config.bridge.ack_timeout,
            retry_timeout=self.config.bridge.retry_timeout,
            max_reconnects=self.out.max_reconnects,
            reconnect_wait=self.config.bridge.reconnect_wait,
            on_ack=self._on_ack,
            on_fail=self._on_fail,
            on_connected=self._on_connected,
        )
        self._sink = sink  # its connection attempts are counted from the first
        source: KafkaSource | None = None
        error: BridgeError | None = None
        finished = False  # the mode said so (a backfill reached its ends), not a signal
        try:
            await _unless_stopped(stop, sink.start())
            router = Router(
                self.loaded.templates,
                self.out.metadata,
                sink.max_payload,
                max_control_line=self.config.bridge.max_control_line,
                reply=MAX_REPLY_LEN,
            )
            # a bounded run, or explicit partitions (no group to share them): this worker's share only
            shared = self.mode.bounded or bool(self.settings.explicit)
            source = KafkaSource(self.settings, self, self._share if shared else None)
            run = self._running = _Running(sink, source, router, asyncio.get_running_loop().create_future())
            await _unless_stopped(stop, source.start())
            missing = await _unless_stopped(stop, source.missing_topics())
            if missing and self.mode.bounded:
                raise TopicNotFound(source.brokers, missing)
            if missing:
                log.warning("topic_not_found", topics=missing, note="waiting for it to be created")
            self.started.set()
            log.info("run_started", mode=self.mode.name, max_in_flight=self.out.max_in_flight)
            try:
                async with asyncio.TaskGroup() as tg:
                    watchers = [
                        tg.create_task(sink.wait_failed()),
                        tg.create_task(_wait(run.failed)),
                        tg.create_task(_start_on(stop, deadline)),
                    ]
                    committer = tg.create_task(self._commit_loop())
                    finished = await self._fetch_loop(run, stop)
                    self.phase = "draining"
                    await self._drain(run, stop, deadline)
                    committer.cancel()
                    for watcher in watchers:
                        watcher.cancel()
            except* BridgeError as group:
                first = group.exceptions[0]
                assert isinstance(first, BridgeError)
                error = first
            incomplete = self._incomplete()  # counts what a backfill did not deliver, whatever ended it
            if error is None:
                error = incomplete
        except _Stopped:
            log.info("stopped_while_starting")
        except BridgeError as exc:
            error = exc
        finally:
            self.phase = "draining"
            await self._shutdown(sink, source, deadline)
            self.phase = "stopped"
        if error is None and self.mode.bounded and not finished:
            error = self._incomplete() or BackfillIncomplete({})  # a signal came before its end
        if error is None and self.settings.group:
            # acknowledged offsets the group was not given (a held partition is not owed)
            unsaved = sorted(
                f"{tp.topic}/{tp.partition}"
                for tp, p in self._parts.items()
                if p.ledger.needs_commit() and not p.report.held
            )
            if unsaved:
                # a backfill's commits were refused (a member joined); a run's shutdown commit failed
                unsaved_error = CommitsRefused if self.mode.bounded else UncommittedAtExit
                error = unsaved_error(self.settings.group, unsaved)
        reports = sorted(self._reports.values(), key=lambda r: (r.topic, r.partition))
        if error is not None:
            log.error("run_failed", error=str(error))
        return RunResult(
            mode=self.mode.name,
            reports=reports,
            stopped=list(self._stopped),
            error=error,
            elapsed=time.monotonic() - started,
            stats=sink.statistics(),
        )

    async def _drain(self, run: _Running, stop: asyncio.Event, deadline: Deadline) -> None:
        """Stop fetching (the loop has returned) and wait for the acks: within the shutdown deadline after
        a signal (at most ``DRAIN_SHARE`` of it); a backfill that reached its end offsets waits until
        everything is acknowledged (a failing publish is bounded by ``bridge.retry_timeout``) or a
        signal comes."""
        sink = run.sink
        if not stop.is_set() and self.mode.bounded:
            drained = asyncio.ensure_future(sink.wait_drained())
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({drained, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                drained.cancel()
            if sink.in_flight == 0:
                return
        budget = deadline.remaining(reserve=deadline.total * (1 - DRAIN_SHARE))
        try:
            async with asyncio.timeout(budget):
                await sink.wait_drained()
        except TimeoutError:
            log.warning("drain_timeout", in_flight=sink.in_flight, seconds=round(budget, 3))

    def _incomplete(self) -> BridgeError | None:
        """A backfill that ended (no error) with records up to its end offsets not delivered: the count per
        partition goes into its report, and the run fails."""
        missing: dict[str, int] = {}
        for tp, part in self._parts.items():
            bounds = self.mode.planned(tp)
            if bounds is None or bounds[1] is None:
                continue
            start, end = bounds
            position = part.ledger.position if part.ledger.position is not None else start
            undelivered = part.ledger.outstanding + max(end - position, 0)
            part.report.undelivered = undelivered
            if undelivered and not part.ledger.stopped:  # a stopped partition fails the run on its own
                missing[f"{tp.topic}/{tp.partition}"] = undelivered
        return BackfillIncomplete(missing) if missing else None

    async def _shutdown(
        self, sink: JetStreamSink[Pending], source: KafkaSource | None, deadline: Deadline
    ) -> None:
        """Commit what is safe, leave the group, close NATS: each step with what is left of the deadline."""
        deadline.start()
        if source is not None:
            with contextlib.suppress(TimeoutError, BridgeError):
                async with asyncio.timeout(deadline.remaining()):
                    await self.commit_now(reason="shutdown")
            for tp, part in self._parts.items():
                part.report.committed = part.ledger.committed
                bounds = self.mode.planned(tp)
                if bounds is not None:
                    part.report.start, part.report.end = bounds
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline.remaining()):
                    await source.aclose()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline.remaining()):
                await sink.aclose()
        log.info("run_stopped", commits=self._commits)


def _record_error(exc: BaseException) -> RecordError:
    """A publish error no retry can fix, as the record error it is (its kind names the cause)."""
    if isinstance(exc, JetStreamError) and exc.err_code == 10054:
        return RecordError(str(exc), kind=STREAM_SIZE_KIND)  # the dead-letter goes without the payload
    return RecordError(str(exc), kind="jetstream")


class _Stopped(Exception):
    """A signal came while the run was still connecting: it ends there (``_unless_stopped``)."""


async def _unless_stopped(stop: asyncio.Event, step: Awaitable[T]) -> T:
    """``step`` (connecting, bootstrapping: each may retry for minutes), unless a signal comes first: then
    it is cancelled and ``_Stopped`` raised, so SIGTERM is honoured at any time."""
    if stop.is_set():
        raise _Stopped
    task = asyncio.ensure_future(step)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, BridgeError):
        await task
    raise _Stopped


async def _wait(future: asyncio.Future[None]) -> None:
    await future


async def _start_on(stop: asyncio.Event, deadline: Deadline) -> None:
    """Start the shutdown deadline when the stop comes (a signal): the budget counts from there."""
    await stop.wait()
    deadline.start()


def _names(tps: Iterable[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}/{tp.partition}" for tp in tps)
