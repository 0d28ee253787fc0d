"""The comparison of one partition's records with its stream messages, and the ``verify`` report.

Owns the verdict per partition: the partition checksum is a digest of ``(offset, digest)`` in offset
order (Kafka) and in stream order (stream): equal checksums mean the same records, once each, in the
same order. Otherwise the verdict lists missing, duplicate, extra, changed and out-of-order offsets.
Stream messages for offsets at or past the Kafka end seen at start ("ahead") or below the partition's
first offset ("older", after Kafka's retention removed them) are counted, not failures; dead-lettered
records are listed and fail the partition. ``Report`` renders the verdicts as a table or JSON. Pure
module.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.migrate.projection import checksum

__all__ = ["LIST_LIMIT", "PartitionVerdict", "Report", "compare", "ranges"]

LIST_LIMIT = 20  # offsets (or ranges) listed per category in the text report


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
    stored_offsets = {o for o, _ in stream}
    # a record dead-lettered once and stored later (published again once the cause was fixed) is delivered
    v = PartitionVerdict(
        topic, partition, first_offset=first, end=end, dead_lettered=sorted(set(dead) - stored_offsets)
    )
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
        for col in (
            "partition",
            "kafka",
            "stream",
            "kafka checksum",
            "stream checksum",
            "missing",
            "dup",
            "extra",
            "changed",
            "order",
            "result",
        ):
            table.add_column(
                col, justify="left" if col in ("partition", "result") or "checksum" in col else "right"
            )
        for p in self.partitions:
            table.add_row(
                p.name,
                f"{p.kafka_records:,}",
                f"{p.stream_messages:,}",
                p.kafka_checksum[:16],
                p.stream_checksum[:16],
                str(len(p.missing)),
                str(len(p.duplicates)),
                str(len(p.extra)),
                str(len(p.changed)),
                str(len(p.out_of_order)),
                "ok" if p.ok else "MISMATCH",
            )
        console.print(table)
        lines = [line.rstrip() for line in buf.getvalue().rstrip("\n").splitlines()]
        for p in self.partitions:
            for label, offsets in (
                ("missing", p.missing),
                ("duplicate", p.duplicates),
                ("extra", p.extra),
                ("changed", p.changed),
                ("out of order", p.out_of_order),
                ("dead-lettered", p.dead_lettered),
            ):
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
