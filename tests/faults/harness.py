"""The fault suite's instruments: a steady producer, the stream checker, bounded waits, an RSS sampler.

- ``SteadyProducer`` writes keyed records with headers into every partition of a topic at a steady
  rate, in the background, while a fault happens; failed sends are retried (a broker restart), and
  every acknowledged offset is remembered.
- ``check_stream`` reads the whole stream back and computes, per partition: missing offsets,
  duplicates stored, out-of-order pairs (offset order against stream sequence order) and, when given
  the group, the committed offset against the end offset. A record is identified by its
  ``Nats-Msg-Id`` (the bridge's default ``<topic ID>:<topic>-<partition>-<offset>``).
- ``wait_for`` polls a condition with a deadline and returns whether it held (the caller then
  asserts on the counts, which say more than a timeout would).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import psutil
from aiokafka import AIOKafkaProducer

from bridge.core.routing import parse_record_id
from tests.support import BridgeProcess, committed_offsets, end_offsets, read_stream, write_config

SUBJECT_SUFFIX = '${! meta("kafka_partition") }'


# ----------------------------------------------------------------------------------- producing


class SteadyProducer:
    """``total`` records round-robin over ``partitions`` at ``rate`` records/s, as a background task.

    Record ``n`` of partition ``p`` has key ``key-<p>-<n>``, headers ``source: faults`` and ``n: <n>``,
    and a ``value_size``-byte value starting ``p=<p> n=<n>``.
    """

    TICK = 0.05

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        total: int,
        rate: float,
        *,
        value_size: int = 100,
        idempotent: bool = True,
        deadline: float = 120.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.total = total
        self.rate = rate
        self.value_size = value_size
        self.idempotent = idempotent
        self.deadline = deadline
        self.produced = 0
        self.retried = 0
        self.offsets: dict[int, list[int]] = {p: [] for p in range(partitions)}
        self.handed = 0  # records handed to the Kafka client at least once (in order)
        self.task: asyncio.Task[None] | None = None
        self._running = asyncio.Event()
        self._running.set()

    def start(self) -> SteadyProducer:
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    async def wait_produced(self, n: int, within: float = 60.0) -> None:
        """Until ``n`` records are acknowledged by Kafka (raises if the producer failed or time ran out)."""
        ok = await wait_for(lambda: self._reached(n), within=within, every=0.05)
        assert ok, f"the producer reached {self.produced} of {n} records within {within}s"

    async def _reached(self, n: int) -> bool:
        if self.task is not None and self.task.done():
            self.task.result()  # re-raise a failure
        return self.produced >= n

    async def finish(self, within: float = 120.0) -> dict[int, int]:
        """Wait for the last record; returns the end offset of each partition (last acked offset + 1)."""
        assert self.task is not None
        async with asyncio.timeout(within):
            await self.task
        return self.ends

    def mark(self) -> dict[int, int]:
        """Per partition, how many records were handed to the Kafka client so far: every record handed
        over later gets an offset at least this large (one partition's records are appended in order)."""
        return {p: len(range(p, self.handed, self.partitions)) for p in range(self.partitions)}

    @property
    def ends(self) -> dict[int, int]:
        return {p: (max(o) + 1 if o else 0) for p, o in self.offsets.items()}

    def _record(self, i: int) -> tuple[int, bytes, bytes, list[tuple[str, bytes]]]:
        p, n = i % self.partitions, i // self.partitions
        value = f"p={p} n={n} ".encode().ljust(self.value_size, b".")
        return p, f"key-{p}-{n}".encode(), value, [("source", b"faults"), ("n", str(n).encode())]

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=5, acks="all", enable_idempotence=self.idempotent,
            request_timeout_ms=10_000, retry_backoff_ms=200, max_batch_size=256 * 1024,
        )  # fmt: skip
        await producer.start()
        stop_at = time.monotonic() + self.deadline
        per_tick = max(1, round(self.rate * self.TICK))
        try:
            i = 0
            next_at = time.monotonic()
            while i < self.total:
                await self._running.wait()
                batch = list(range(i, min(i + per_tick, self.total)))
                self.handed = batch[-1] + 1
                while batch:
                    if time.monotonic() > stop_at:
                        raise TimeoutError(f"producer: {len(batch)} records unsent after {self.deadline}s")
                    batch = await self._send(producer, batch)
                    if batch:
                        self.retried += len(batch)
                        await asyncio.sleep(0.2)
                i += per_tick
                next_at += self.TICK
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _send(self, producer: AIOKafkaProducer, batch: list[int]) -> list[int]:
        """Send ``batch``; returns the indexes that failed."""
        futures: list[tuple[int, Any]] = []
        failed: list[int] = []
        for i in batch:
            p, key, value, headers = self._record(i)
            try:
                futures.append(
                    (i, await producer.send(self.topic, value, key=key, partition=p, headers=headers))
                )
            except Exception:
                failed.append(i)
        results = await asyncio.gather(*(f for _, f in futures), return_exceptions=True)
        for (i, _), result in zip(futures, results, strict=True):
            if isinstance(result, BaseException):
                failed.append(i)
            else:
                self.offsets[result.partition].append(result.offset)
                self.produced += 1
        return sorted(failed)


# ----------------------------------------------------------------------------------- checking


@dataclass
class PartitionCheck:
    partition: int
    start: int  # first offset expected in the stream
    end: int  # end offset (next offset to be written)
    stored: int = 0  # messages of this partition in the stream
    missing: int = 0
    missing_sample: list[int] = field(default_factory=list)
    duplicates: int = 0  # messages stored more than once (extra copies)
    reorders: int = 0  # adjacent pairs, in stream order, whose offsets do not increase
    unexpected: int = 0  # offsets outside [start, end)
    first: int | None = None  # lowest offset stored
    committed: int | None = None


@dataclass
class StreamCheck:
    topic: str
    stream: str
    partitions: dict[int, PartitionCheck]
    messages: int  # the stream's message count (stream info)
    read: int  # messages read back
    foreign: int  # messages not from this topic

    @property
    def missing(self) -> int:
        return sum(c.missing for c in self.partitions.values())

    @property
    def duplicates(self) -> int:
        return sum(c.duplicates for c in self.partitions.values())

    @property
    def reorders(self) -> int:
        return sum(c.reorders for c in self.partitions.values())

    @property
    def unexpected(self) -> int:
        return sum(c.unexpected for c in self.partitions.values())

    def table(self) -> str:
        rows = [f"stream {self.stream}: {self.read} read of {self.messages} stored; {self.foreign} foreign"]
        for c in self.partitions.values():
            rows.append(
                f"  p{c.partition}: [{c.start},{c.end}) stored={c.stored} missing={c.missing}"
                f"{c.missing_sample} dups={c.duplicates} reorders={c.reorders} unexpected={c.unexpected}"
                f" committed={c.committed}"
            )
        return "\n".join(rows)

    def assert_clean(self, *, committed: bool = True) -> None:
        """Per partition: nothing missing, nothing stored twice, stream order = offset order and (with
        ``committed``) the group's committed offset = the end offset."""
        assert self.read == self.messages, self.table()
        assert self.foreign == 0, self.table()
        assert self.missing == 0, self.table()
        assert self.duplicates == 0, self.table()
        assert self.reorders == 0, self.table()
        assert self.unexpected == 0, self.table()
        if committed:
            bad = {p: (c.committed, c.end) for p, c in self.partitions.items() if c.committed != c.end}
            assert not bad, f"committed != end: {bad}\n{self.table()}"


def parse_msg_id(msg_id: str) -> tuple[str, int, int]:
    """(topic, partition, offset) of a default ``Nats-Msg-Id``; ValueError when it is not one."""
    parsed = parse_record_id(msg_id)
    if parsed is None:
        raise ValueError(msg_id)
    return parsed[1], parsed[2], parsed[3]


async def check_stream(
    nats_url: str,
    stream: str,
    topic: str,
    ends: dict[int, int],
    *,
    starts: dict[int, int] | str | None = None,
    bootstrap: str | None = None,
    group: str | None = None,
) -> StreamCheck:
    """Read ``stream`` back and check it against ``[starts[p], ends[p])`` for every partition
    (``starts="first"``: from the lowest offset the stream holds for the partition)."""
    stored = await read_stream(nats_url, stream)
    if starts == "first":
        firsts: dict[int, int] = {}
        for m in stored:
            with contextlib.suppress(ValueError):
                t, p, offset = parse_msg_id(m.headers.get("Nats-Msg-Id", ""))
                if t == topic:
                    firsts[p] = min(firsts.get(p, offset), offset)
        starts = firsts
    assert not isinstance(starts, str)
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().stream_info(stream)
    finally:
        await nc.close()
    checks = {p: PartitionCheck(p, (starts or {}).get(p, 0), end) for p, end in sorted(ends.items())}
    seen: dict[int, set[int]] = {p: set() for p in checks}
    last: dict[int, int] = {}
    foreign = 0
    for m in stored:  # in stream sequence order
        msg_id = m.headers.get("Nats-Msg-Id", "")
        try:
            t, p, offset = parse_msg_id(msg_id)
        except ValueError:
            foreign += 1
            continue
        if t != topic or p not in checks:
            foreign += 1
            continue
        c = checks[p]
        c.stored += 1
        if offset in seen[p]:
            c.duplicates += 1
        seen[p].add(offset)
        if not c.start <= offset < c.end:
            c.unexpected += 1
        if p in last and offset < last[p]:
            c.reorders += 1
        last[p] = offset
        c.first = offset if c.first is None else min(c.first, offset)
    for p, c in checks.items():
        missing = [o for o in range(c.start, c.end) if o not in seen[p]]
        c.missing = len(missing)
        c.missing_sample = missing[:5]
    if bootstrap is not None and group is not None:
        committed = await committed_offsets(bootstrap, group, topic)
        for p, c in checks.items():
            c.committed = committed.get(p)
    return StreamCheck(topic, stream, checks, int(info.state.messages), len(stored), foreign)


async def kafka_ends(bootstrap: str, topic: str, producer: SteadyProducer) -> dict[int, int]:
    """The end offsets, from the producer's acks, checked against the broker's ListOffsets."""
    ends = producer.ends
    listed = await end_offsets(bootstrap, topic, producer.partitions)
    assert listed == ends, f"broker end offsets {listed} != produced {ends}"
    return ends


# ----------------------------------------------------------------------------------- waiting


async def wait_for(cond: Callable[[], Awaitable[bool]], within: float, every: float = 0.2) -> bool:
    """Poll ``await cond()`` until it is true (True) or the deadline passes (False). Exceptions from
    ``cond`` count as false until the deadline, then propagate."""
    deadline = time.monotonic() + within
    while True:
        try:
            if await cond():
                return True
        except Exception:
            if time.monotonic() >= deadline:
                raise
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(every)


async def stream_messages(url: str, stream: str) -> int:
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        info = await nc.jetstream().stream_info(stream)
        return int(info.state.messages)
    finally:
        await nc.close()


async def wait_stored(url: str, stream: str, n: int, within: float) -> bool:
    async def enough() -> bool:
        return await stream_messages(url, stream) >= n

    return await wait_for(enough, within=within, every=0.25)


async def wait_committed(bootstrap: str, group: str, topic: str, ends: dict[int, int], within: float) -> bool:
    async def done() -> bool:
        return await committed_offsets(bootstrap, group, topic) == ends

    return await wait_for(done, within=within, every=0.5)


# ----------------------------------------------------------------------------------- the bridge


def fault_config(
    path: Path,
    *,
    brokers: str,
    topic: str,
    group: str,
    nats_url: str,
    prefix: str,
    extra_output: dict[str, Any] | None = None,
    extra_input: dict[str, Any] | None = None,
    bridge: dict[str, Any] | None = None,
    top: dict[str, Any] | None = None,
) -> Path:
    """A ``run`` config: one subject per partition under ``prefix``, default ``Nats-Msg-Id``."""
    return write_config(
        path, brokers=brokers, topics=[topic], group=group, nats_url=nats_url,
        subject=f"{prefix}.{SUBJECT_SUFFIX}", extra_input=extra_input, extra_output=extra_output,
        bridge=bridge, top=top,
    )  # fmt: skip


def log_problems(logs: str) -> list[str]:
    """Lines of a bridge's stderr that must never appear: tracebacks and escaped commit failures."""
    return [line for line in logs.splitlines() if "Traceback" in line or "CommitFailedError" in line]


def holding(bridge: BridgeProcess) -> set[str]:
    """The partitions a bridge holds now, from its assignment and revocation log events in order."""
    held: set[str] = set()
    for line in bridge.logs().splitlines():
        if '"partitions_' not in line:
            continue
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("event") == "partitions_assigned":
                held |= set(event["partitions"])
            elif event.get("event") == "partitions_revoked":
                held -= set(event["partitions"])
    return held


class Sampler:
    """Calls ``fn`` every ``every`` seconds in a thread while the block runs; failures are skipped."""

    def __init__(self, fn: Callable[[], float], every: float = 0.1) -> None:
        self._fn = fn
        self._every = every
        self._stop = threading.Event()
        self.values: list[float] = []
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.values.append(self._fn())
            self._stop.wait(self._every)

    @property
    def peak(self) -> float:
        return max(self.values, default=0)


def rss(pid: int) -> Callable[[], float]:
    """The resident set size of process ``pid``, in bytes."""
    proc = psutil.Process(pid)
    return lambda: float(proc.memory_info().rss)


def metric(port: int, name: str) -> Callable[[], float]:
    """One unlabelled sample of the bridge's ``/metrics`` (Prometheus text) on 127.0.0.1:``port``."""

    def scrape() -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise LookupError(name)

    return scrape


# ----------------------------------------------------------------------------------- results


@dataclass
class FaultResult:
    """One row of docs/faults.md."""

    fault: str
    records: int
    faults: int
    missing: int
    duplicates: int
    reorders: int
    seconds: float
    notes: str = ""


RESULTS: list[FaultResult] = []


def record_result(
    fault: str, check: StreamCheck, records: int, faults: int, started: float, notes: str = ""
) -> FaultResult:
    result = FaultResult(
        fault, records, faults, check.missing, check.duplicates, check.reorders,
        round(time.monotonic() - started, 1), notes,
    )  # fmt: skip
    RESULTS.append(result)
    return result
