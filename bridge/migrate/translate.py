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
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import TopicPartition

from bridge.core.config import Loaded
from bridge.core.errors import ConfigError, Problem, VerifyError
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
        if self.ok and self.stream_start is not None:
            lines.append(
                f"one consumer of the whole stream: --deliver {self.stream_start}, then skip messages whose "
                "kafka_offset is below their partition's committed offset"
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


async def translate(loaded: Loaded, group: str, stream: str | None = None) -> Translation:
    started = time.monotonic()
    try:
        projection = Projection.from_loaded(loaded)
    except VerifyError as exc:
        raise ConfigError([Problem("output.nats_jetstream.metadata", 0, exc.detail)], loaded.source) from exc
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
        result = Translation(name, group, last_seq=last_seq)
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
