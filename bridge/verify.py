"""``verify``: is every record of the Kafka topics in the stream, once, in order and intact?

Owns reading both sides of a migration (``translate`` reuses it) and the comparison.

**Kafka side.** Every partition of the configured topics (explicit ``topic:partition`` entries: just
those; regular expressions: the matching topics), from its first record to the end observed at start
(the larger of ListOffsets and the first fetch's high watermark; ListOffsets alone under
``read_committed``), read without a consumer group, with the bridge's own consumer options (TLS, SASL,
isolation level: what the bridge would have read). Records are counted, not offsets: compaction and
transaction markers leave gaps.

**Stream side.** Every message up to the last sequence at start, through an ephemeral pull consumer
(no acks), mapped back to its record by the ``kafka_topic`` / ``kafka_partition`` / ``kafka_offset``
headers when the config's ``metadata`` filter sends them, else by ``Nats-Msg-Id``
(``[<topic ID>:]<topic>-<partition>-<offset>``, the default). A config with neither cannot be
verified (exit 2). Dead-letter messages (``Bridge-Error`` header) are mapped by their ``Kafka-*``
headers and reported as dead-lettered. Messages of other topics are counted as "other"; messages whose
default ``Nats-Msg-Id`` names another topic ID (an earlier topic of the same name, deleted and
created again) are counted as "earlier" and not compared.

**Compared, per partition.** Each record is reduced to a digest (BLAKE2b-128) of

- its key, when the stream messages carry ``kafka_key`` (the metadata filter sends it), else nothing;
- its value, against the payload (a tombstone is an empty payload);
- its headers as the metadata filter passes them (``Nats-*`` names as ``Kafka-Header-*``; values as
  the router writes them), against the stream message's headers minus configured ``headers``, the
  ``kafka_*`` metadata and ``Nats-*`` headers.

The partition checksum is a digest of ``(offset, digest)`` in offset order (Kafka) and in stream
order (stream): equal checksums mean the same records, once each, in the same order. Otherwise the
report lists missing, duplicate, extra, changed and out-of-order offsets. Stream messages for offsets
at or past the Kafka end seen at start ("ahead") or below the partition's first offset ("older", after
Kafka's retention removed them) are counted, not failures. Run it with producers stopped and the bridge
caught up (``kafka_jetstream_bridge_kafka_lag`` at 0), or the newest records show up as missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from bridge import kafkaproto
from bridge.config import KafkaSettings, Loaded
from bridge.errors import BridgeError, ConfigError, ExitCode, KafkaUnavailable, Problem
from bridge.message import text
from bridge.router import RENAMED_PREFIX, parse_record_id
from bridge.source import KafkaSource
from bridge.streams import StreamError, admin_connection, api, stream_info, subjects_for
from bridge.wire import clean_header_value

log = structlog.get_logger("bridge.verify")

KAFKA_METADATA = frozenset(
    {
        "kafka_key", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_lag",
        "kafka_timestamp_unix", "kafka_timestamp_ms", "kafka_tombstone_message",
    }
)  # fmt: skip
DEAD_LETTER = "Bridge-Error"
IDLE_TIMEOUT = 30.0  # seconds a read may make no progress before it is given up
FETCH_BATCH = 1000
LIST_LIMIT = 20  # offsets (or ranges) listed per category in the text report


class VerifyError(BridgeError):
    """The comparison cannot be made (the config cannot map messages back, a topic is missing...)."""

    exit_code = ExitCode.CONFIG

    def __init__(self, detail: str, exit_code: ExitCode = ExitCode.CONFIG) -> None:
        self.detail = detail
        self.exit_code = exit_code
        super().__init__(detail)


# ---------------------------------------------------------------------------------------- projection


@dataclass(frozen=True, slots=True)
class Located:
    topic: str
    partition: int
    offset: int
    dead: bool = False
    topic_id: str = ""  # from the default Nats-Msg-Id, when the message has one


@dataclass(frozen=True, slots=True)
class Projection:
    """How a record looks in the stream under one config: what verify compares and how it maps back."""

    prefixes: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    configured: frozenset[str]  # configured header names, lower case
    compares_key: bool
    by_metadata: bool  # map by kafka_* headers (else by Nats-Msg-Id)

    @classmethod
    def from_loaded(cls, loaded: Loaded) -> Projection:
        out = loaded.output
        configured = frozenset(name.lower() for name in out.headers)
        proj = cls(
            tuple(out.metadata.include_prefixes),
            tuple(re.compile(p) for p in out.metadata.include_patterns),
            configured,
            False,
            False,
        )
        sent = {k for k in ("kafka_key", "kafka_topic", "kafka_partition", "kafka_offset") if proj.passes(k)}
        sent -= configured
        by_metadata = {"kafka_topic", "kafka_partition", "kafka_offset"} <= sent
        default_id = loaded.config.bridge.msg_id is None and "nats-msg-id" not in configured
        if not by_metadata and not default_id:
            raise VerifyError(
                "verify cannot map stream messages back to Kafka offsets with this config: send the "
                "kafka_topic, kafka_partition and kafka_offset metadata (output.nats_jetstream.metadata."
                "include_prefixes: [kafka_]) or keep the default Nats-Msg-Id (leave bridge.msg_id unset)"
            )
        return replace(proj, compares_key="kafka_key" in sent, by_metadata=by_metadata)

    def passes(self, key: str) -> bool:
        return key.startswith(self.prefixes) or any(p.search(key) for p in self.patterns)

    def _kept(self, name: str) -> bool:
        lower = name.lower()
        return lower not in self.configured and name not in KAFKA_METADATA and not lower.startswith("nats-")

    def kafka_digest(
        self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> bytes:
        meta: dict[str, str] = {}
        for name, raw in headers:
            meta[name] = text(raw)  # the last one wins, as in the message metadata
        pairs = []
        for name, value_text in meta.items():
            if name in KAFKA_METADATA or not self.passes(name):
                continue
            out = RENAMED_PREFIX + name if name[:5].lower() == "nats-" else name
            if self._kept(out):
                pairs.append((out, clean_header_value(value_text)))
        shown_key = clean_header_value(text(key)) if self.compares_key else None
        return _digest(shown_key, value or b"", pairs)

    def stream_digest(self, headers: Mapping[str, str], data: bytes) -> bytes:
        pairs = []
        for name, value in headers.items():
            source = name[len(RENAMED_PREFIX) :] if name.startswith(RENAMED_PREFIX) else name
            if source in KAFKA_METADATA or not self.passes(source) or not self._kept(name):
                continue
            pairs.append((name, value))
        shown_key = headers.get("kafka_key", "") if self.compares_key else None
        return _digest(shown_key, data, pairs)

    def locate(self, headers: Mapping[str, str]) -> Located | None:
        """The record a stream message came from, or None when it cannot tell."""
        parsed = parse_record_id(headers.get("Nats-Msg-Id", ""))
        topic_id = parsed[0] if parsed is not None else ""
        try:
            if DEAD_LETTER in headers:
                return Located(
                    headers["Kafka-Topic"],
                    int(headers["Kafka-Partition"]),
                    int(headers["Kafka-Offset"]),
                    True,
                    topic_id,
                )
            if self.by_metadata and "kafka_offset" in headers:
                return Located(
                    headers["kafka_topic"], int(headers["kafka_partition"]), int(headers["kafka_offset"]),
                    topic_id=topic_id,
                )  # fmt: skip
        except (KeyError, ValueError):
            return None
        if parsed is None:
            return None
        return Located(parsed[1], parsed[2], parsed[3], topic_id=topic_id)


def _digest(key: str | None, value: bytes, headers: Iterable[tuple[str, str]]) -> bytes:
    h = hashlib.blake2b(digest_size=16)

    def put(part: bytes) -> None:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)

    put(b"\x00" if key is None else b"\x01" + key.encode())
    put(value)
    for name, val in sorted(headers):
        put(name.encode())
        put(val.encode())
    return h.digest()


def checksum(entries: Iterable[tuple[int, bytes]]) -> str:
    """The ordered checksum of a partition: ``(offset, digest)`` pairs in the given order."""
    h = hashlib.blake2b(digest_size=16)
    for offset, digest in entries:
        h.update(offset.to_bytes(8, "big", signed=True))
        h.update(digest)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------- Kafka


class _NoHooks:
    async def partitions_revoked(self, tps: set[TopicPartition]) -> None:
        return None

    async def partitions_assigned(self, tps: set[TopicPartition]) -> None:
        return None


class KafkaReader:
    """A consumer outside any group (or looking at one group's commits without joining it), built with
    the options the bridge's own source uses (brokers, TLS, SASL, isolation level, timeouts)."""

    def __init__(self, settings: KafkaSettings, group: str | None = None) -> None:
        self.settings = settings
        self.brokers = ",".join(settings.brokers)
        # The source's options, so verify connects exactly as the bridge does.
        options = KafkaSource(settings, _NoHooks())._consumer_options()
        options.update(group_id=group, enable_auto_commit=False, auto_offset_reset="earliest")
        self._options = options
        self._consumer: Any = None

    async def __aenter__(self) -> KafkaReader:
        consumer = AIOKafkaConsumer(**self._options)
        try:
            await consumer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            await _quiet_stop(consumer)
            raise KafkaUnavailable(self.brokers, str(exc) or type(exc).__name__) from exc
        self._consumer = consumer
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await _quiet_stop(self._consumer)
            self._consumer = None

    async def partitions(self) -> list[TopicPartition]:
        """The configured topics' partitions, sorted."""
        s = self.settings
        try:
            known: set[str] = set(await self._consumer.topics())
        except KafkaError as exc:
            raise KafkaUnavailable(self.brokers, str(exc)) from exc
        out: list[TopicPartition] = []
        if s.explicit:
            for entry in s.explicit:
                parts = await self._partitions_of(entry.topic)
                for p in entry.partitions:
                    if p not in parts:
                        raise VerifyError(f"no such partition: {entry.topic}:{p}")
                    out.append(TopicPartition(entry.topic, p))
            return sorted(out)
        if s.regexp:
            pattern = re.compile("|".join(f"(?:{t})" for t in s.topics))
            excluded = [re.compile(x) for x in s.regexp_exclude]
            topics = sorted(
                t for t in known
                if pattern.fullmatch(t) and not t.startswith("__") and not any(x.search(t) for x in excluded)
            )  # fmt: skip
        else:
            missing = [t for t in s.topics if t not in known]
            if missing:
                raise VerifyError(f"no such topic: {', '.join(missing)}")
            topics = list(s.topics)
        for topic in topics:
            out.extend(TopicPartition(topic, p) for p in await self._partitions_of(topic))
        if not out:
            raise VerifyError("the configured topics have no partitions")
        return sorted(out)

    async def topic_ids(self, topics: Iterable[str]) -> dict[str, str]:
        """Each topic's ID (``""``: unknown), to tell its messages from an earlier topic's of that name."""
        try:
            return await kafkaproto.topic_ids(self._consumer._client, sorted(set(topics)))
        except KafkaError as exc:
            raise KafkaUnavailable(self.brokers, str(exc)) from exc

    async def _partitions_of(self, topic: str) -> set[int]:
        parts: set[int] | None = self._consumer.partitions_for_topic(topic)
        if parts is None:
            # topics() fetched metadata into a cluster view of its own; as the source does, ask again
            await self._consumer._client.force_metadata_update()
            parts = self._consumer.partitions_for_topic(topic)
        return parts or set()

    async def read(
        self, tps: Sequence[TopicPartition]
    ) -> AsyncIterator[tuple[TopicPartition, list[Any], int, int]]:
        """Every record of ``tps`` from the first to the end seen at start, in batches:
        ``(tp, records, first_offset, end)``."""
        consumer = self._consumer
        consumer.assign(list(tps))
        try:
            await consumer.seek_to_beginning(*tps)
            listed = await consumer.end_offsets(list(tps))
            firsts = {tp: await consumer.position(tp) for tp in tps}
        except KafkaError as exc:
            raise KafkaUnavailable(self.brokers, str(exc)) from exc
        committed_only = self.settings.isolation_level == "read_committed"
        ends: dict[TopicPartition, int | None] = {}
        pending: set[TopicPartition] = set()
        for tp in tps:
            if listed[tp] > firsts[tp]:
                pending.add(tp)
                ends[tp] = listed[tp] if committed_only else None
            else:
                ends[tp] = firsts[tp]
                yield tp, [], firsts[tp], firsts[tp]
        progress = time.monotonic()
        while pending:
            consumer.pause(*(set(tps) - pending))
            try:
                batch = await consumer.getmany(*pending, timeout_ms=500, max_records=10_000)
            except KafkaError as exc:
                raise KafkaUnavailable(self.brokers, str(exc)) from exc
            if batch:
                progress = time.monotonic()
            for tp in list(pending):
                end = ends[tp]
                if end is None:
                    hw = consumer.highwater(tp)
                    if hw is None:
                        continue
                    end = ends[tp] = max(listed[tp], hw)
                records = [r for r in batch.get(tp, ()) if r.offset < end]
                done = await consumer.position(tp) >= end
                if records or done:
                    yield tp, records, firsts[tp], end
                if done:
                    pending.discard(tp)
            if time.monotonic() - progress > IDLE_TIMEOUT:
                names = ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(pending))
                raise VerifyError(
                    f"Kafka read made no progress for {IDLE_TIMEOUT:g}s on {names}", ExitCode.FAILED
                )

    async def committed(self, tp: TopicPartition) -> int | None:
        try:
            value = await self._consumer.committed(tp)
        except KafkaError as exc:
            raise KafkaUnavailable(self.brokers, str(exc)) from exc
        return None if value is None or value < 0 else int(value)

    async def log_start(self, tp: TopicPartition) -> int:
        """The partition's first offset now (after retention)."""
        try:
            found = await self._consumer.beginning_offsets([tp])
        except KafkaError as exc:
            raise KafkaUnavailable(self.brokers, str(exc)) from exc
        return int(found[tp])

    async def first_record_at(self, tp: TopicPartition, offset: int) -> int | None:
        """The offset of the first record at or after ``offset`` now in the log (None when there is none)."""
        consumer = self._consumer
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if offset >= end:
            return None
        consumer.seek(tp, offset)
        deadline = time.monotonic() + IDLE_TIMEOUT
        while time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=1)
            records = batch.get(tp)
            if records:
                return int(records[0].offset)
            hw = consumer.highwater(tp)
            if hw is not None and await consumer.position(tp) >= max(hw, end):
                return None
        raise VerifyError(f"Kafka read made no progress for {IDLE_TIMEOUT:g}s on {tp.topic}/{tp.partition}",
                          ExitCode.FAILED)  # fmt: skip


async def _quiet_stop(consumer: Any) -> None:
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        # aiokafka (aio-libs/aiokafka#647) stopped before its coordinator's task first ran awaits that
        # cancelled task: the NATS side failed at once. Only a cancellation of this task is propagated.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.debug("consumer_stop_error", error="CancelledError from aiokafka's coordinator")
    except Exception as exc:  # a consumer that failed to start may fail to stop; nothing is lost
        log.debug("consumer_stop_error", error=str(exc))


# ---------------------------------------------------------------------------------------- the stream


@dataclass(frozen=True, slots=True)
class StreamMessage:
    seq: int
    subject: str
    headers: Mapping[str, str]
    data: bytes


async def resolve_stream(nc: NatsClient, loaded: Loaded, explicit: str | None) -> str:
    """``--stream``, else ``bridge.stream.name``, else the one stream bound to the output's subjects."""
    if explicit:
        return explicit
    if loaded.config.bridge.stream is not None:
        return loaded.config.bridge.stream.name
    try:
        subjects = subjects_for(loaded)
    except StreamError as exc:
        raise VerifyError(f"{exc.detail}; or name the stream with --stream") from exc
    names: set[str] = set()
    for subject in subjects:
        answer = await api(nc, "STREAM.NAMES", {"subject": subject}, "?")
        names.update(answer.get("streams") or ())
    if len(names) != 1:
        found = ", ".join(sorted(names)) or "none"
        raise VerifyError(
            f"cannot tell which stream holds {', '.join(subjects)} (found: {found}): use --stream"
        )
    return names.pop()


async def read_stream(
    nc: NatsClient, stream: str, *, headers_only: bool = False
) -> AsyncIterator[StreamMessage]:
    """Every message of ``stream`` up to its last sequence now, in sequence order."""
    info = await stream_info(nc, stream)
    if info is None:
        raise VerifyError(f"no stream named {stream!r}", ExitCode.FAILED)
    state = info.get("state", {})
    last = int(state.get("last_seq", 0))
    if not state.get("messages"):
        return
    js = nc.jetstream()
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, headers_only=headers_only or None,
        inactive_threshold=60.0, mem_storage=True, num_replicas=1,
    )  # fmt: skip
    consumer = await js.add_consumer(stream, config)
    name = consumer.name
    assert name is not None
    sub = await js.pull_subscribe_bind(consumer=name, stream=stream)
    try:
        while True:
            try:
                msgs = await sub.fetch(batch=FETCH_BATCH, timeout=5)
            except TimeoutError:  # nats.errors.TimeoutError is one: nothing left to deliver
                return
            for msg in msgs:
                meta = msg.metadata
                seq = meta.sequence.stream
                yield StreamMessage(seq, msg.subject, msg.headers or {}, msg.data)
                if seq >= last:
                    return
            if msgs and msgs[-1].metadata.num_pending == 0:
                return
    finally:
        await sub.unsubscribe()
        try:
            await js.delete_consumer(stream, name)
        except (NotFoundError, TimeoutError) as exc:  # ephemeral: it goes away on its own anyway
            log.debug("consumer_delete_failed", error=str(exc))


# ---------------------------------------------------------------------------------------- comparison


@dataclass(slots=True)
class PartitionVerdict:
    topic: str
    partition: int
    kafka_records: int = 0
    stream_messages: int = 0
    first_offset: int = 0  # the partition's first offset in Kafka now
    end: int = 0  # the end offset compared up to
    kafka_checksum: str = ""
    stream_checksum: str = ""
    missing: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    out_of_order: list[int] = field(default_factory=list)
    dead_lettered: list[int] = field(default_factory=list)
    ahead: int = 0
    older: int = 0

    @property
    def ok(self) -> bool:
        return self.kafka_checksum == self.stream_checksum and not self.dead_lettered

    @property
    def name(self) -> str:
        return f"{self.topic}/{self.partition}"


def compare(
    topic: str,
    partition: int,
    kafka: list[tuple[int, bytes]],
    stream: list[tuple[int, bytes]],
    first: int,
    end: int,
    dead: Sequence[int] = (),
) -> PartitionVerdict:
    """Kafka's ``(offset, digest)`` in offset order against the stream's in sequence order."""
    v = PartitionVerdict(topic, partition, first_offset=first, end=end, dead_lettered=sorted(set(dead)))
    compared = [(o, d) for o, d in stream if first <= o < end]
    v.ahead = sum(1 for o, _ in stream if o >= end)
    v.older = sum(1 for o, _ in stream if o < first)
    v.kafka_records, v.stream_messages = len(kafka), len(compared)
    v.kafka_checksum = checksum(kafka)
    v.stream_checksum = checksum(compared)
    expected = dict(kafka)
    counts = Counter(o for o, _ in compared)
    dead_set = set(dead)
    v.missing = sorted(o for o in expected if o not in counts and o not in dead_set)
    v.duplicates = sorted(o for o, n in counts.items() if n > 1)
    v.extra = sorted(o for o in counts if o not in expected)
    v.changed = sorted({o for o, d in compared if o in expected and d != expected[o]})
    highest = -1
    disorder = set()
    for o, _ in compared:
        if o < highest and counts[o] == 1:
            disorder.add(o)
        highest = max(highest, o)
    v.out_of_order = sorted(disorder)
    return v


@dataclass(slots=True)
class Report:
    stream: str
    partitions: list[PartitionVerdict]
    other: int = 0  # stream messages of topics not verified here
    earlier: int = 0  # stream messages of an earlier topic of the same name (another topic ID)
    unmapped: int = 0  # stream messages verify could not map to a record
    compares_key: bool = False
    mapping: str = ""
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.partitions)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "stream": self.stream,
            "mapping": self.mapping,
            "compares_key": self.compares_key,
            "kafka_records": sum(p.kafka_records for p in self.partitions),
            "stream_messages": sum(p.stream_messages for p in self.partitions),
            "other": self.other,
            "earlier": self.earlier,
            "unmapped": self.unmapped,
            "elapsed_s": round(self.elapsed, 3),
            "partitions": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "ok": p.ok,
                    "kafka_records": p.kafka_records,
                    "stream_messages": p.stream_messages,
                    "first_offset": p.first_offset,
                    "end_offset": p.end,
                    "kafka_checksum": p.kafka_checksum,
                    "stream_checksum": p.stream_checksum,
                    "missing": p.missing,
                    "duplicates": p.duplicates,
                    "extra": p.extra,
                    "changed": p.changed,
                    "out_of_order": p.out_of_order,
                    "dead_lettered": p.dead_lettered,
                    "ahead": p.ahead,
                    "older": p.older,
                }
                for p in self.partitions
            ],
        }

    def render(self) -> str:
        from io import StringIO

        from rich.console import Console
        from rich.table import Table

        buf = StringIO()
        console = Console(file=buf, width=160, force_terminal=False, color_system=None)
        table = Table(title=f"verify: Kafka → stream {self.stream}", title_justify="left")
        for col in ("partition", "kafka", "stream", "kafka checksum", "stream checksum", "missing", "dup",
                    "extra", "changed", "order", "result"):  # fmt: skip
            table.add_column(
                col, justify="left" if col in ("partition", "result") or "checksum" in col else "right"
            )
        for p in self.partitions:
            table.add_row(
                p.name, f"{p.kafka_records:,}", f"{p.stream_messages:,}", p.kafka_checksum[:16],
                p.stream_checksum[:16], str(len(p.missing)), str(len(p.duplicates)), str(len(p.extra)),
                str(len(p.changed)), str(len(p.out_of_order)), "ok" if p.ok else "MISMATCH",
            )  # fmt: skip
        console.print(table)
        lines = [line.rstrip() for line in buf.getvalue().rstrip("\n").splitlines()]
        for p in self.partitions:
            for label, offsets in (
                ("missing", p.missing), ("duplicate", p.duplicates), ("extra", p.extra),
                ("changed", p.changed), ("out of order", p.out_of_order), ("dead-lettered", p.dead_lettered),
            ):  # fmt: skip
                if offsets:
                    lines.append(f"{p.name}: {label} offsets {ranges(offsets)}")
            if p.ahead or p.older:
                lines.append(
                    f"{p.name}: not compared: {p.ahead} ahead of the end {p.end}, "
                    f"{p.older} older than the first offset {p.first_offset}"
                )
        records = sum(p.kafka_records for p in self.partitions)
        stored = sum(p.stream_messages for p in self.partitions)
        notes = [f"mapped by {self.mapping}", "key compared" if self.compares_key else "key not compared"]
        if self.other:
            notes.append(f"{self.other} messages of other topics")
        if self.earlier:
            notes.append(f"{self.earlier} messages of earlier topics of the same name, not compared")
        if self.unmapped:
            notes.append(f"{self.unmapped} messages not mapped to a record")
        bad = [p.name for p in self.partitions if not p.ok]
        verdict = (
            f"OK: {records:,} records in {len(self.partitions)} partitions match the stream"
            if self.ok
            else f"MISMATCH in {len(bad)} of {len(self.partitions)} partitions ({', '.join(bad)}): "
            f"{records:,} Kafka records, {stored:,} stream messages"
        )
        lines.append(f"{verdict} ({'; '.join(notes)}; {self.elapsed:.1f}s)")
        return "\n".join(lines)


def ranges(offsets: Sequence[int], limit: int = LIST_LIMIT) -> str:
    """``[1, 2, 3, 7]`` → ``"1-3, 7"`` (at most ``limit`` items, then how many more)."""
    items: list[str] = []
    start = prev = offsets[0]
    for o in [*offsets[1:], None]:
        if o is not None and o == prev + 1:
            prev = o
            continue
        items.append(str(start) if start == prev else f"{start}-{prev}")
        if o is not None:
            start = prev = o
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


async def verify(loaded: Loaded, stream: str | None = None) -> Report:
    """Compare every partition of the configured topics with the stream."""
    started = time.monotonic()
    try:
        projection = Projection.from_loaded(loaded)
    except VerifyError as exc:
        raise ConfigError([Problem("output.nats_jetstream.metadata", 0, exc.detail)], loaded.source) from exc
    async with KafkaReader(loaded.kafka) as reader, admin_connection(loaded) as nc:
        name = await resolve_stream(nc, loaded, stream)
        tps = await reader.partitions()
        kafka: dict[TopicPartition, list[tuple[int, bytes]]] = {tp: [] for tp in tps}
        bounds: dict[TopicPartition, tuple[int, int]] = {}
        async for tp, records, first, end in reader.read(tps):
            bounds[tp] = (first, end)
            kafka[tp].extend((r.offset, projection.kafka_digest(r.key, r.value, r.headers)) for r in records)
        topics = {tp.topic for tp in tps}
        topic_ids = await reader.topic_ids(topics)
        stored: dict[TopicPartition, list[tuple[int, bytes]]] = {tp: [] for tp in tps}
        dead: dict[TopicPartition, list[int]] = {}
        other = unmapped = earlier = 0
        async for msg in read_stream(nc, name):
            where = projection.locate(msg.headers)
            if where is None:
                unmapped += 1
                continue
            if where.topic not in topics:
                other += 1
                continue
            if where.topic_id and topic_ids.get(where.topic) and where.topic_id != topic_ids[where.topic]:
                earlier += 1
                continue
            tp = TopicPartition(where.topic, where.partition)
            if where.dead:
                dead.setdefault(tp, []).append(where.offset)
                continue
            stored.setdefault(tp, []).append((where.offset, projection.stream_digest(msg.headers, msg.data)))
    verdicts = []
    for tp in sorted(set(stored) | set(dead)):
        first, end = bounds.get(tp, (0, 2**63 - 1))  # a partition Kafka does not have: all extra
        verdicts.append(
            compare(
                tp.topic, tp.partition, kafka.get(tp, []), stored.get(tp, []), first, end, dead.get(tp, ())
            )
        )
    report = Report(
        name, verdicts, other=other, earlier=earlier, unmapped=unmapped, compares_key=projection.compares_key,
        mapping="kafka_* headers" if projection.by_metadata else "Nats-Msg-Id",
        elapsed=time.monotonic() - started,
    )  # fmt: skip
    log.info(
        "verified",
        stream=name,
        ok=report.ok,
        partitions=len(verdicts),
        records=sum(v.kafka_records for v in verdicts),
        mismatched=[v.name for v in verdicts if not v.ok] or None,
    )
    return report


__all__ = ["KafkaReader", "Projection", "Report", "VerifyError", "compare", "read_stream", "verify"]
