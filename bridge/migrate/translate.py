"""``translate``: where a Kafka consumer group's committed position lands in the stream.

For each partition of the configured topics, the group's committed offset ``C`` (the next record it
would read) becomes the sequence of the **first stream message of that partition whose offset is
≥ C**: a JetStream consumer that starts there (``deliver_policy: by_start_sequence``, filtered to
the partition's subject) neither skips nor repeats what the group consumed in Kafka.

Statuses, per partition:

- ``ok``: the message exists; start at its sequence.
- ``at-end``: the group has consumed everything and the bridge has stored it all (the bridge's own
  group committed ≥ C, or the stream holds offset C − 1): start at the stream's next sequence
  (``last_seq + 1``).
- ``behind``: the record the group reads next is not in the stream yet; wait for the bridge and run
  it again.
- ``missing``: the stream jumps over the record the group reads next (a gap: run ``verify``).
- ``no-commit``: the group has no committed offset for the partition.

Exit 0 only when every partition is ``ok`` or ``at-end``. Stream messages are mapped back to their
records as ``verify`` does (``kafka_*`` headers, else ``Nats-Msg-Id``), reading headers only; messages
whose default ``Nats-Msg-Id`` names an earlier topic of the same name (another topic ID) are skipped.

The per-partition start points are only worth giving when each partition's records are on subjects of
their own: the commands filter by subject. So translate refuses (exit 2), saying why, when the subject
depends on anything but the record's topic and partition (its key, payload, offset, the time...: one
partition's records spread over several subjects), or when two partitions render the same subject
(``kafka.${! meta("kafka_topic") }`` with several partitions). The line for one consumer of the
whole stream names only headers the config sends (``kafka_partition`` / ``kafka_offset``, else the
default ``Nats-Msg-Id``), and is left out when it sends neither.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import TopicPartition

from bridge.core.config import Loaded
from bridge.core.errors import ConfigError, InterpolationError, Problem, VerifyError
from bridge.core.frames import MSG_ID_HEADER
from bridge.jetstream.reader import read_stream, resolve_stream
from bridge.jetstream.streams import admin_connection, stream_info
from bridge.kafka.reader import KafkaReader
from bridge.migrate.projection import Projection

log = structlog.get_logger("bridge.translate")

OK_STATUSES = ("ok", "at-end")


@dataclass(slots=True)
class Landing:
    topic: str
    partition: int
    committed: int | None
    seq: int | None = None
    subject: str = ""
    offset: int | None = None  # the offset of the message at ``seq``
    status: str = ""
    detail: str = ""

    @property
    def name(self) -> str:
        return f"{self.topic}/{self.partition}"


@dataclass(slots=True)
class Translation:
    stream: str
    group: str
    partitions: list[Landing] = field(default_factory=list)
    last_seq: int = 0
    elapsed: float = 0.0
    skip_by: str = ""  # how one consumer of the whole stream tells a record's partition and offset

    @property
    def ok(self) -> bool:
        return all(p.status in OK_STATUSES for p in self.partitions)

    @property
    def stream_start(self) -> int | None:
        """Where one consumer of the whole stream would start: the lowest partition start."""
        seqs = [p.seq for p in self.partitions if p.seq is not None]
        return min(seqs) if seqs else None

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "stream": self.stream,
            "group": self.group,
            "last_seq": self.last_seq,
            "stream_start": self.stream_start,
            "partitions": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "committed": p.committed,
                    "seq": p.seq,
                    "offset": p.offset,
                    "subject": p.subject or None,
                    "status": p.status,
                    "detail": p.detail or None,
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
        table = Table(title=f"translate: group {self.group} → stream {self.stream}", title_justify="left")
        for col in ("partition", "committed", "start seq", "offset", "subject", "status"):
            table.add_column(col, justify="left" if col in ("partition", "subject", "status") else "right")
        for p in self.partitions:
            table.add_row(
                p.name,
                _s(p.committed),
                _s(p.seq),
                _s(p.offset),
                p.subject or "-",
                p.status + (f": {p.detail}" if p.detail else ""),
            )
        console.print(table)
        lines = [line.rstrip() for line in buf.getvalue().rstrip("\n").splitlines()]
        for p in self.partitions:
            if p.seq is not None and p.subject:
                command = f"nats consumer add {self.stream} <name> --filter '{p.subject}' --deliver {p.seq}"
                lines.append(f"{command}  # {p.name}")
        if self.ok and self.stream_start is not None and self.skip_by:
            lines.append(
                f"one consumer of the whole stream: --deliver {self.stream_start}, then skip the messages "
                f"whose offset ({self.skip_by}) is below their partition's committed offset"
            )
        lines.append("OK" if self.ok else "NOT READY: some partitions cannot be translated yet (see status)")
        return "\n".join(lines)


def _s(value: int | None) -> str:
    return "-" if value is None else str(value)


@dataclass(slots=True)
class _Index:
    """One partition's messages in the stream: (offset, seq, subject) in sequence order."""

    entries: list[tuple[int, int, str]] = field(default_factory=list)


def land(
    tp: TopicPartition,
    committed: int | None,
    next_record: int | None,
    entries: list[tuple[int, int, str]],
    last_seq: int,
    bridge_committed: int | None,
    log_start: int = 0,
) -> Landing:
    """The decision for one partition (pure, see the module docstring)."""
    out = Landing(tp.topic, tp.partition, committed)
    if committed is None:
        out.status, out.detail = "no-commit", "the group has no committed offset for this partition"
        return out
    hit = next(((o, s, subj) for o, s, subj in entries if o >= committed), None)
    if hit is not None:
        offset, seq, subject = hit
        if next_record is not None and offset > next_record:
            out.status = "missing"
            out.detail = f"offset {next_record} is in Kafka but not in the stream (next stored: {offset})"
            return out
        out.seq, out.offset, out.subject, out.status = seq, offset, subject, "ok"
        return out
    if next_record is not None:
        out.status, out.detail = "behind", f"offset {next_record} is not in the stream yet"
        return out
    stored_below = max((o for o, _, _ in entries), default=None)
    if (
        committed <= log_start  # nothing below the committed offset to copy
        or (bridge_committed is not None and bridge_committed >= committed)
        or (stored_below is not None and stored_below >= committed - 1)
    ):
        out.seq, out.status = last_seq + 1, "at-end"
        out.subject = entries[-1][2] if entries else ""
        return out
    out.status = "behind"
    out.detail = "the bridge has not stored every record below the committed offset yet"
    return out


_PARTITION_KEYS = frozenset({"kafka_topic", "kafka_partition"})
_WHAT_TO_DO = (
    "give each partition its own subjects (for example subject: "
    'kafka.${! meta("kafka_topic") }.${! meta("kafka_partition") }) to move consumers partition by partition'
)


def _subject_problem(loaded: Loaded) -> str | None:
    """Why the subject cannot keep a partition's records on subjects of their own, seen in the
    template alone (None: it is a function of the topic and partition)."""
    template = loaded.templates.subject
    keys = template.meta_keys
    if keys is None:
        reason = "depends on more than the record's topic and partition (its payload, key, the time, ...)"
    elif keys - _PARTITION_KEYS:
        reason = "depends on " + ", ".join(sorted(keys - _PARTITION_KEYS))
    else:
        return None
    return (
        f"the subject {template.source!r} {reason}, so one partition's records are on several subjects and "
        f"no subject filter starts a consumer at one partition's position: {_WHAT_TO_DO}"
    )


class _TopicPartitionView:
    """A message with only a topic and partition: what the subject is rendered from for the check."""

    def __init__(self, tp: TopicPartition) -> None:
        self._meta = {"kafka_topic": tp.topic, "kafka_partition": str(tp.partition)}

    def content(self) -> bytes:
        return b""

    def meta(self, key: str) -> str | None:
        return self._meta.get(key)

    def metadata(self) -> dict[str, str]:
        return dict(self._meta)

    def structured(self) -> object:
        raise ValueError("no payload")


def _shared_subjects(loaded: Loaded, tps: list[TopicPartition]) -> str | None:
    """Why partitions cannot be told apart by subject (two render the same one), or None."""
    by_subject: dict[str, list[str]] = {}
    for tp in tps:
        try:
            subject = loaded.templates.subject.render(_TopicPartitionView(tp))
        except InterpolationError as exc:
            return f"the subject cannot be rendered from a topic and partition alone ({exc.reason})"
        by_subject.setdefault(subject, []).append(f"{tp.topic}/{tp.partition}")
    for subject, names in by_subject.items():
        if len(names) > 1:
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            return (
                f"partitions {shown} share the subject {subject!r}: a consumer filtered to it would mix "
                f"their records; {_WHAT_TO_DO}"
            )
    return None


def _skip_by(loaded: Loaded, projection: Projection) -> str:
    """The headers one consumer of the whole stream can read a record's partition and offset from."""
    if projection.by_metadata:
        return "the kafka_partition and kafka_offset headers"
    if loaded.templates.record_id and MSG_ID_HEADER not in loaded.config.output.nats_jetstream.headers:
        return "the end of the Nats-Msg-Id header, <topic>-<partition>-<offset>"
    return ""


async def translate(loaded: Loaded, group: str, stream: str | None = None) -> Translation:
    started = time.monotonic()
    try:
        projection = Projection.from_loaded(loaded, "translate")
    except VerifyError as exc:
        raise ConfigError([Problem("output.nats_jetstream.metadata", 0, exc.detail)], loaded.source) from exc
    problem = _subject_problem(loaded)
    if problem is not None:
        path = ("output", "nats_jetstream", "subject")
        raise ConfigError([loaded.problem(path, problem)], loaded.source)
    bridge_group = loaded.kafka.group or None
    async with (
        KafkaReader(loaded.kafka, group=group) as reader,
        KafkaReader(loaded.kafka, group=bridge_group) as bridge,
        admin_connection(loaded) as nc,
    ):
        name = await resolve_stream(nc, loaded, stream)
        info = await stream_info(nc, name)
        if info is None:
            raise VerifyError(f"no stream named {name!r}")
        tps = await reader.partitions()
        shared = _shared_subjects(loaded, tps)
        if shared is not None:
            raise VerifyError(shared)
        topic_ids = await reader.topic_ids({tp.topic for tp in tps})
        index: dict[TopicPartition, _Index] = {tp: _Index() for tp in tps}
        last_seq = 0
        async for msg in read_stream(nc, name, headers_only=True):
            last_seq = max(last_seq, msg.seq)
            where = projection.locate(msg.headers)
            if where is None or where.dead:
                continue
            if where.topic_id and topic_ids.get(where.topic) and where.topic_id != topic_ids[where.topic]:
                continue  # a message of an earlier topic of the same name: its offsets are another log's
            idx = index.get(TopicPartition(where.topic, where.partition))
            if idx is not None:
                idx.entries.append((where.offset, msg.seq, msg.subject))
        last_seq = max(last_seq, int(info.get("state", {}).get("last_seq", 0)))
        result = Translation(name, group, last_seq=last_seq, skip_by=_skip_by(loaded, projection))
        for tp in tps:
            committed = await reader.committed(tp)
            next_record = None if committed is None else await reader.first_record_at(tp, committed)
            bridge_committed = await bridge.committed(tp) if bridge_group else None
            start = await reader.log_start(tp)
            result.partitions.append(
                land(tp, committed, next_record, index[tp].entries, last_seq, bridge_committed, start)
            )
    result.elapsed = time.monotonic() - started
    log.info(
        "translated",
        stream=name,
        group=group,
        ok=result.ok,
        statuses={p.name: p.status for p in result.partitions},
    )
    return result
