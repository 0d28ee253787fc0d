"""Helpers shared by the integration and fault suites: topics, records, streams, configs, the CLI.

Everything talks to real brokers on 127.0.0.1. Waiting is always a poll with a deadline on an
observable condition (``eventually``), never a bare sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nats
import yaml
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from bridge.core.routing import record_id
from bridge.kafka import protocol
from bridgedev import brokers as devenv

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
# The checkout whose bridge the CLI helpers run (``KJB_BRIDGE_CHECKOUT``: another one, to show a test
# failing on an earlier version of the code with the same venv).
CHECKOUT = Path(os.environ.get("KJB_BRIDGE_CHECKOUT", REPO))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def eventually(fn: Callable[[], Awaitable[T]], within: float = 30.0, every: float = 0.2) -> T:
    """``await fn()`` until it returns without raising (AssertionError included), or re-raise at the deadline."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await fn()
        except Exception:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(every)


# ----------------------------------------------------------------------------------- Kafka


@dataclass(frozen=True)
class Record:
    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


async def create_topic(bootstrap: str, topic: str, partitions: int, replication_factor: int = 1) -> None:
    """``devenv.create_topic``, then wait until the broker's metadata shows every partition."""
    await devenv.create_topic(bootstrap, topic, partitions, replication_factor)

    async def metadata_ready() -> None:
        probe = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await probe.start()
        try:
            described = await probe.describe_topics([topic])
            assert described, described
            assert len(described[0]["partitions"]) == partitions, described
        finally:
            await probe.close()

    await eventually(metadata_ready, within=20)


async def produce(
    bootstrap: str, topic: str, records: Iterable[Record], *, batch: int = 500, compression: str | None = None
) -> int:
    """Produce records (in order per partition); returns how many. ``compression``: the producer's
    ``compression_type`` (gzip, snappy, lz4, zstd), so the broker stores compressed batches."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024, compression_type=compression
    )
    await producer.start()
    n = 0
    try:
        pending: list[asyncio.Future[Any]] = []
        for r in records:
            pending.append(
                await producer.send(topic, r.value, key=r.key, partition=r.partition, headers=list(r.headers))
            )
            n += 1
            if len(pending) >= batch:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n


def sample_records(partitions: int, per_partition: int, *, tombstone_every: int = 10) -> list[Record]:
    """Keyed records with headers; every ``tombstone_every``-th record of a partition is a tombstone."""
    out = []
    for i in range(per_partition):
        for p in range(partitions):
            key = f"key-{p}-{i}".encode()
            value = (
                None
                if tombstone_every and i % tombstone_every == tombstone_every - 1
                else f"value {p}/{i}".encode()
            )
            out.append(Record(p, key, value, (("source", b"test"), ("seq", str(i).encode()))))
    return out


async def topic_id(bootstrap: str, topic: str) -> str:
    """``topic``'s ID as Kafka prints it (``""`` when the broker reports none): the default ``Nats-Msg-Id``
    starts with it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return (await protocol.topic_ids(admin._client, [topic]))[topic]
    finally:
        await admin.close()


async def msg_ids(bootstrap: str, topic: str, partition: int, offsets: Iterable[int]) -> list[str]:
    """The default ``Nats-Msg-Id`` of each of these records (``bridge.core.routing.record_id``)."""
    tid = await topic_id(bootstrap, topic)
    return [record_id(tid, topic, partition, o) for o in offsets]


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets for ``topic`` (partitions without a commit are absent). Read with
    OffsetFetch through a consumer that never joins the group (the admin client's OffsetFetch version is
    not understood by every broker)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        out = {}
        for p in sorted(partitions):
            offset = await consumer.committed(TopicPartition(topic, p))
            if offset is not None and offset >= 0:
                out[p] = offset
        return out
    finally:
        await consumer.stop()


# ----------------------------------------------------------------------------------- NATS


@dataclass
class Stored:
    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes


async def create_stream(url: str, name: str, subjects: Sequence[str], **extra: Any) -> None:
    """A stream with direct gets allowed (``read_stream`` uses batched direct gets)."""
    extra.setdefault("allow_direct", True)
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(StreamConfig(name=name, subjects=list(subjects), **extra))
    finally:
        await nc.close()


async def delete_stream(url: str, name: str) -> None:
    nc = await nats.connect(url)
    try:
        with contextlib.suppress(NotFoundError):
            await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


async def stream_count(url: str, name: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(name)
        return int(info.state.messages)
    finally:
        await nc.close()


async def read_stream(url: str, name: str) -> list[Stored]:
    """Every message of the stream in sequence order, with headers exactly as stored (repeated names kept)."""
    nc = await nats.connect(url)
    out: list[Stored] = []
    try:
        js = nc.jetstream()
        info = await js.stream_info(name)
        first, last = info.state.first_seq, info.state.last_seq
        if info.state.messages == 0:
            return []
        seq = first
        while seq <= last:
            batch = min(last - seq + 1, 512)
            req = json.dumps({"seq": seq, "batch": batch}).encode()
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            await nc.publish(f"$JS.API.DIRECT.GET.{name}", req, reply=inbox)
            got = 0
            while True:
                msg = await sub.next_msg(timeout=10)
                status = msg.headers.get("Status") if msg.headers else None
                if status == "204" or status == "404":
                    break
                headers = dict(msg.headers or {})
                s = int(headers.pop("Nats-Sequence"))
                subject = headers.pop("Nats-Subject")
                for k in (
                    "Nats-Stream",
                    "Nats-Time-Stamp",
                    "Nats-Num-Pending",
                    "Nats-Last-Sequence",
                    "Nats-UpTo-Sequence",
                ):
                    headers.pop(k, None)
                out.append(Stored(s, subject, headers, msg.data))
                got += 1
                seq = s + 1
                if got >= batch:
                    break
            await sub.unsubscribe()
            if got == 0:
                break
    finally:
        await nc.close()
    return out


# ----------------------------------------------------------------------------------- /metrics

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def exposed(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text page under the exact name written, as Prometheus itself reads
    it (prometheus-client's parser renames a counter's samples to ``<name>_total``)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match, line
            name, labels, value = match.groups()
            out[(name, frozenset(_LABEL.findall(labels or "")))] = float(value)
    return out


# ----------------------------------------------------------------------------------- configs and the CLI


def write_config(path: Path, *, brokers: str, topics: Sequence[str], group: str | None, nats_url: str,
                 subject: str, extra_input: dict[str, Any] | None = None,
                 extra_output: dict[str, Any] | None = None, bridge: dict[str, Any] | None = None,
                 top: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """A Redpanda Connect config for the bridge (kafka_franz input, nats_jetstream output)."""
    inp: dict[str, Any] = {
        "seed_brokers": [brokers],
        "topics": list(topics),
        "start_offset": "earliest",
        "commit_period": "1s",
        "session_timeout": "10s",
        "rebalance_timeout": "10s",
    }
    if group:
        inp["consumer_group"] = group
    inp.update(extra_input or {})
    out: dict[str, Any] = {"urls": [nats_url], "subject": subject, "max_reconnects": 5}
    out.update(extra_output or {})
    doc: dict[str, Any] = {
        "input": {"label": "in", "kafka_franz": inp},
        "output": {"label": "test-bridge", "nats_jetstream": out},
        "http": {"enabled": False},
        "logger": {"level": "INFO", "format": "json"},
        "shutdown_timeout": "20s",
        "bridge": {"reconnect_wait": "200ms", **(bridge or {})},
    }
    doc.update(top or {})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def bridge_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bridge", *args]


def run_cli(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI to completion."""
    return subprocess.run(
        bridge_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=CHECKOUT,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


class BridgeProcess:
    """A ``run`` (or any long-running) bridge process, stopped by pid."""

    def __init__(
        self, *args: str, log_dir: Path, name: str = "bridge", env: dict[str, str] | None = None
    ) -> None:
        self.stdout_path = log_dir / f"{name}.out"
        self.stderr_path = log_dir / f"{name}.err"
        self._out = open(self.stdout_path, "w")  # noqa: SIM115 - closed in wait()
        self._err = open(self.stderr_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            bridge_cmd(*args), stdout=self._out, stderr=self._err, cwd=CHECKOUT, env={**os.environ, **(env or {})},
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is not None:
                self._out.close()
                self._err.close()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then wait (SIGKILL if it does not exit in time, and fail loudly)."""
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.wait(10)
            raise

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(30)

    def logs(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        """Structured log events called ``name`` (JSON lines on stderr)."""
        out = []
        for line in self.logs().splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == name:
                out.append(event)
        return out

    def __enter__(self) -> BridgeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()
        self._err.close()
