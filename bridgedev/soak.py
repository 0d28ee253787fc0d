"""``python -m bridgedev soak`` (``make soak``): the bridge over time, with restarts, on one Kafka + one NATS.

One run starts Apache Kafka (KRaft, one node) and a nats-server on loopback, a topic of ``partitions``
partitions and a file stream with direct gets, then the bridge (``run``, its real CLI and YAML, HTTP on a
free port) and, in this process:

- a producer writing keyed records with headers (``source: soak``, ``n: <n>``) round-robin at a fixed
  ``rate`` (records/s), ``acks=all``, idempotent, for ``duration`` seconds;
- a schedule of faults (``schedule``): the nats-server restarted every ``nats_restart_every`` seconds
  (same store directory), the bridge restarted (SIGTERM, exit 0 expected, a new ``run``) every
  ``bridge_restart_every`` seconds, half a NATS interval apart from the NATS restarts, both half a
  sample interval away from the samples;
- a sample every ``sample_every`` seconds: the bridge's RSS and CPU, nats-server's RSS and CPU, the
  group's lag (end offsets − committed offsets, from Kafka), the bridge's ``kafka_lag`` gauge, the
  publish → PubAck latency p50/p99 of the interval (the bucket deltas of ``/metrics``'
  ``publish_latency_seconds``), records produced and stored, ``/ready``.

At the end the producer stops, the group must commit every end offset, the bridge is stopped (exit 0),
and the whole stream is read back: per partition 0 missing, 0 duplicates stored, 0 reorders (stream
order = offset order). The same read gives the end-to-end latency of every record (stream store time −
Kafka record timestamp, the ``kafka_timestamp_ms`` header), per minute of production: p50, p99, max.

Written into ``output_dir`` (``docs/`` by ``make soak``): ``<name>.csv`` (one row per sample, rewritten
after each one), ``<name>.png`` (RSS, lag, latency, throughput against time, restarts marked) and
``<name>.json`` (parameters, figures, the audit table). RSS is judged after warm-up: samples taken at
least ``warmup`` seconds after their bridge process started; their max must be within ``rss_tolerance``
(10 %) of their min. Exit code 0 when the audit is clean and RSS held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import csv
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
import psutil
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from nats.js.api import StorageType, StreamConfig

from bridge.core.config.units import parse_duration
from bridge.core.routing import parse_record_id
from bridgedev import brokers
from bridgedev.brokers.process import HOST, free_port

__all__ = ["Audit", "SoakParams", "main", "parse_args", "run"]

METRIC = "kafka_jetstream_bridge_"
MB = 1024 * 1024


@dataclass
class SoakParams:
    duration: float = 3600.0
    rate: int = 2000
    partitions: int = 4
    size: int = 200
    sample_every: float = 60.0
    nats_restart_every: float = 300.0  # 0: never
    bridge_restart_every: float = 600.0  # 0: never
    warmup: float = 180.0  # seconds after a bridge process starts before its RSS counts
    rss_tolerance: float = 0.10
    max_in_flight: int = 1024
    duplicate_window: float = 120.0
    output_dir: str = "docs"
    name: str = "soak"


# ----------------------------------------------------------------------------------- samples


@dataclass
class Sample:
    t_s: float  # seconds since production started
    bridge_pid: int
    bridge_uptime_s: float
    bridge_rss_mb: float
    bridge_cpu_pct: float  # of one core, over the interval
    nats_rss_mb: float
    nats_cpu_pct: float
    produced: int
    stored: int
    lag: int  # end offsets − committed offsets (Kafka)
    lag_gauge: int  # Σ kafka_lag{…} on /metrics
    ack_p50_ms: float  # publish → PubAck, this interval, from the histogram's bucket deltas
    ack_p99_ms: float
    ack_samples: int
    ready: int  # /ready answered 200
    nats_restarts: int
    bridge_restarts: int
    warm: int  # counted for the RSS verdict
    e2e_p50_ms: float = float("nan")  # Kafka timestamp → stored, records produced in this minute
    e2e_p99_ms: float = float("nan")
    e2e_max_ms: float = float("nan")


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus ``histogram_quantile`` over (upper bound, cumulative count) pairs; NaN when empty."""
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def scrape(port: int) -> dict[str, Any]:
    """The numbers the soak reads from a bridge's ``/metrics``: histogram buckets, Σ kafka_lag."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    buckets: list[tuple[float, float]] = []
    lag = 0.0
    for line in text.splitlines():
        if line.startswith(METRIC + "publish_latency_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
        elif line.startswith(METRIC + "kafka_lag{"):
            lag += float(line.rsplit(" ", 1)[1])
    return {"buckets": buckets, "lag": lag}


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class CpuClock:
    """CPU seconds of a process between two reads, as a percentage of one core (on the first read of a
    pid: since the process started)."""

    def __init__(self) -> None:
        self._pid = 0
        self._cpu = 0.0
        self._at = 0.0

    def read(self, pid: int) -> tuple[float, float]:
        """(RSS in MB, CPU % since the last read of the same pid)."""
        lived = 0.0
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                rss = proc.memory_info().rss / MB
                times = proc.cpu_times()
        except psutil.Error:
            return float("nan"), float("nan")
        cpu, now = times.user + times.system, time.monotonic()
        if pid == self._pid and now > self._at:
            pct = 100.0 * (cpu - self._cpu) / (now - self._at)
        else:  # a new process: its CPU since it started
            with contextlib.suppress(psutil.Error):
                lived = time.time() - proc.create_time()
            pct = 100.0 * cpu / lived if lived > 0 else 0.0
        self._pid, self._cpu, self._at = pid, cpu, now
        return rss, pct


# ----------------------------------------------------------------------------------- the bridge


class Bridge:
    """``run`` as a child process in its own session, logging JSON to a file; stopped by pid."""

    def __init__(self, config: Path, log_path: Path, http_port: int) -> None:
        self.config = config
        self.log_path = log_path
        self.http_port = http_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.exit_codes: list[int] = []

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "run", "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self, grace: float = 60.0) -> int:
        """SIGTERM, wait for the exit (polled with a deadline), SIGKILL past it (-9 recorded)."""
        proc = self.proc
        if proc is None:
            return 0
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - a child's exit, polled
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        self.proc = None
        self.exit_codes.append(proc.returncode)
        return proc.returncode

    async def wait_ready(self, within: float) -> float:
        """Seconds until ``/ready`` answers 200 (raises past ``within`` or if the process exits)."""
        began = time.monotonic()
        while not await asyncio.to_thread(ready, self.http_port):
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"the bridge exited (see {self.log_path})")
            if time.monotonic() - began > within:
                raise TimeoutError(f"the bridge was not ready within {within:g} s (see {self.log_path})")
            await asyncio.sleep(0.1)
        return time.monotonic() - began


def bridge_config(
    path: Path,
    *,
    bootstrap: str,
    nats_url: str,
    topic: str,
    group: str,
    prefix: str,
    port: int,
    p: SoakParams,
) -> Path:
    doc = {
        "input": {
            "label": "soak",
            "kafka_franz": {
                "seed_brokers": [bootstrap],
                "topics": [topic],
                "consumer_group": group,
                "start_offset": "earliest",
                "commit_period": "1s",
                "session_timeout": "10s",
                "rebalance_timeout": "10s",
            },
        },
        "output": {
            "label": "soak-bridge",
            "nats_jetstream": {
                "urls": [nats_url],
                "subject": prefix + '.${! meta("kafka_partition") }',
                "max_in_flight": p.max_in_flight,
                "max_reconnects": -1,
                "metadata": {"include_prefixes": ["kafka_"]},  # the mission configuration (README)
            },
        },
        "http": {"enabled": True, "address": f"{HOST}:{port}"},
        "logger": {"level": "INFO", "format": "json"},
        "shutdown_timeout": "20s",
        "bridge": {"reconnect_wait": "250ms"},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# ----------------------------------------------------------------------------------- producing


class Producer:
    """``rate`` records/s round-robin over the partitions in ticks of 50 ms; remembers acked offsets."""

    TICK = 0.05

    def __init__(self, bootstrap: str, topic: str, p: SoakParams) -> None:
        self.bootstrap, self.topic, self.p = bootstrap, topic, p
        self.produced = 0
        self.failed_sends = 0
        self.ends: dict[int, int] = dict.fromkeys(range(p.partitions), 0)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=10_000,
            max_batch_size=256 * 1024,
        )
        await producer.start()
        per_tick = max(1, round(self.p.rate * self.TICK))
        i = 0
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                batch = list(range(i, i + per_tick))
                while batch:
                    batch = await self._send(producer, batch)
                    if batch:
                        self.failed_sends += len(batch)
                        await asyncio.sleep(0.2)  # a retry back-off, not synchronisation
                i += per_tick
                next_at += self.TICK
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # pacing the fixed rate
        finally:
            await producer.stop()

    async def _send(self, producer: AIOKafkaProducer, batch: list[int]) -> list[int]:
        parts = self.p.partitions
        futures = []
        for i in batch:
            part, n = i % parts, i // parts
            value = f"p={part} n={n} ".encode().ljust(self.p.size, b".")
            headers = [("source", b"soak"), ("n", str(n).encode())]
            key = f"key-{part}-{n}".encode()
            futures.append(await producer.send(self.topic, value, key=key, partition=part, headers=headers))
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = []
        for i, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                failed.append(i)
            else:
                self.ends[result.partition] = max(self.ends[result.partition], result.offset + 1)
                self.produced += 1
        return failed


# ----------------------------------------------------------------------------------- Kafka and NATS reads


class GroupReader:
    """End offsets and the group's committed offsets, through a consumer that never joins the group."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )

    async def __aenter__(self) -> GroupReader:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def ends(self) -> dict[int, int]:
        return {tp.partition: o for tp, o in (await self.consumer.end_offsets(self.tps)).items()}

    async def committed(self) -> dict[int, int]:
        out = {}
        for tp in self.tps:
            offset = await self.consumer.committed(tp)
            out[tp.partition] = offset if offset is not None and offset >= 0 else 0
        return out

    async def lag(self) -> int:
        ends, committed = await self.ends(), await self.committed()
        return sum(max(0, ends[p] - committed[p]) for p in ends)


async def stream_messages(url: str, stream: str) -> int:
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False, error_cb=_quiet)
    try:
        return int((await nc.jetstream().stream_info(stream)).state.messages)
    finally:
        await nc.close()


async def _quiet(exc: Exception) -> None:
    """nats-py's error callback for the soak's own short connections: a refused connection while the
    nats-server restarts is expected (the sample records -1), not worth a traceback."""


def _stored_ms(stamp: str) -> float:
    """``Nats-Time-Stamp`` (RFC 3339, nanoseconds, UTC) → ms since the epoch."""
    whole, _, frac = stamp.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(whole + "+00:00").timestamp()
    return seconds * 1000 + float("0." + (frac or "0")) * 1000


@dataclass
class PartitionAudit:
    partition: int
    end: int
    stored: int = 0
    missing: int = 0
    duplicates: int = 0
    reorders: int = 0
    unexpected: int = 0
    committed: int = 0


@dataclass
class Audit:
    stream_messages: int
    read: int
    foreign: int
    partitions: list[PartitionAudit]
    e2e_ms: dict[int, dict[str, float]] = field(default_factory=dict)  # minute → p50, p99, max, n

    @property
    def clean(self) -> bool:
        return (
            self.read == self.stream_messages
            and self.foreign == 0
            and all(
                a.missing == a.duplicates == a.reorders == a.unexpected == 0 and a.committed == a.end
                for a in self.partitions
            )
        )

    def table(self) -> str:
        rows = [
            "| partition | end offset | stored | missing | duplicates stored | reorders | committed |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for a in self.partitions:
            rows.append(
                f"| {a.partition} | {a.end:,} | {a.stored:,} | {a.missing} | {a.duplicates} | {a.reorders} "
                f"| {a.committed:,} |"
            )
        return "\n".join(rows)


async def audit_stream(
    url: str, stream: str, topic: str, ends: dict[int, int], committed: dict[int, int], start_ms: float
) -> Audit:
    """Read the whole stream with batched direct gets; check every partition against ``[0, end)``."""
    seen = {p: bytearray(end) for p, end in ends.items()}
    checks = {p: PartitionAudit(p, end, committed=committed.get(p, 0)) for p, end in ends.items()}
    last: dict[int, int] = {}
    latencies: dict[int, array.array[float]] = {}
    read = foreign = 0
    nc = await nats.connect(url, pending_size=256 * MB)
    try:
        info = await nc.jetstream().stream_info(stream)
        seq, last_seq = info.state.first_seq, info.state.last_seq
        while info.state.messages and seq <= last_seq:
            batch = min(last_seq - seq + 1, 1024)
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox, pending_msgs_limit=4 * batch)
            request = json.dumps({"seq": seq, "batch": batch}).encode()
            await nc.publish(f"$JS.API.DIRECT.GET.{stream}", request, reply=inbox)
            got = 0
            while got < batch:
                msg = await sub.next_msg(timeout=10)
                headers = msg.headers or {}
                if headers.get("Status") in ("204", "404"):
                    break
                got += 1
                read += 1
                seq = int(headers["Nats-Sequence"]) + 1
                parsed = parse_record_id(headers.get("Nats-Msg-Id", ""))
                if parsed is None or parsed[1] != topic or parsed[2] not in checks:
                    foreign += 1
                    continue
                part, offset = parsed[2], parsed[3]
                c = checks[part]
                c.stored += 1
                if not 0 <= offset < c.end:
                    c.unexpected += 1
                elif seen[part][offset]:
                    c.duplicates += 1
                else:
                    seen[part][offset] = 1
                if part in last and offset < last[part]:
                    c.reorders += 1
                last[part] = offset
                kafka_ms = float(headers.get("kafka_timestamp_ms", "nan"))
                if kafka_ms == kafka_ms:
                    minute = int((kafka_ms - start_ms) // 60_000)
                    latencies.setdefault(minute, array.array("d")).append(
                        _stored_ms(headers["Nats-Time-Stamp"]) - kafka_ms
                    )
            await sub.unsubscribe()
            if got == 0:
                break
    finally:
        await nc.close()
    for p, c in checks.items():
        c.missing = c.end - sum(seen[p])
    e2e = {}
    for minute, values in sorted(latencies.items()):
        ordered = sorted(values)
        e2e[minute] = {
            "p50": round(statistics.median(ordered), 2),
            "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
            "max": round(ordered[-1], 2),
            "n": len(ordered),
        }
    return Audit(int(info.state.messages), read, foreign, list(checks.values()), e2e)


# ----------------------------------------------------------------------------------- the run


@dataclass
class SoakResult:
    params: dict[str, Any]
    seconds: float = 0.0
    produced: int = 0
    nats_restarts: int = 0
    bridge_restarts: int = 0
    bridge_exit_codes: list[int] = field(default_factory=list)
    ready_after_restart_s: list[float] = field(default_factory=list)
    drain_s: float = 0.0
    rss_warm_min_mb: float = 0.0
    rss_warm_max_mb: float = 0.0
    rss_warm_spread: float = 0.0  # max / min − 1
    rss_ok: bool = False
    lag_max: int = 0
    lag_final: int = 0
    ack_p50_ms_median: float = 0.0
    ack_p99_ms_max: float = 0.0
    e2e_ms: dict[str, float] = field(default_factory=dict)  # over every record
    audit: dict[str, Any] = field(default_factory=dict)
    audit_table: str = ""
    clean: bool = False


class Soak:
    def __init__(self, p: SoakParams, tmp: Path) -> None:
        self.p = p
        self.tmp = tmp
        self.samples: list[Sample] = []
        self.out = Path(p.output_dir)
        self.nats_restarts = 0
        self.bridge_restarts = 0
        self.ready_after: list[float] = []
        self.events: list[tuple[float, str]] = []  # (t_s, "nats" | "bridge")
        self._t0 = 0.0
        self._bridge_cpu = CpuClock()
        self._nats_cpu = CpuClock()
        self._prev_buckets: tuple[int, list[tuple[float, float]]] = (0, [])

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    async def run(self) -> SoakResult:
        p = self.p
        result = SoakResult(params=asdict(p))
        self.out.mkdir(parents=True, exist_ok=True)
        kafka = brokers.ApacheKafka()
        server = brokers.NatsServer(name="soak-nats")
        started_brokers: list[brokers.Broker] = []
        try:
            started_brokers.append(await asyncio.to_thread(kafka.start))
            started_brokers.append(await asyncio.to_thread(server.start))
            tag = uuid.uuid4().hex[:8]
            topic, group, stream, prefix = f"soak-{tag}", f"soak-{tag}", f"SOAK{tag.upper()}", f"soak{tag}"
            await brokers.create_topic(kafka.bootstrap, topic, p.partitions)
            nc = await nats.connect(server.url)
            try:
                await nc.jetstream().add_stream(
                    StreamConfig(
                        name=stream,
                        subjects=[f"{prefix}.>"],
                        storage=StorageType.FILE,
                        duplicate_window=p.duplicate_window,
                        allow_direct=True,
                    )
                )
            finally:
                await nc.close()
            port = free_port()
            cfg = bridge_config(
                self.tmp / "soak.yaml",
                bootstrap=kafka.bootstrap,
                nats_url=server.url,
                topic=topic,
                group=group,
                prefix=prefix,
                port=port,
                p=p,
            )
            bridge = Bridge(cfg, self.tmp / "bridge.log", port)
            bridge.start()
            await bridge.wait_ready(120)
            producer = Producer(kafka.bootstrap, topic, p)
            self._t0 = time.monotonic()
            start_ms = time.time() * 1000
            _say(f"soak: {p.rate:,} records/s for {p.duration:g} s; bridge log {bridge.log_path}")
            async with GroupReader(kafka.bootstrap, group, topic, p.partitions) as reader:
                produce = asyncio.create_task(producer.run())
                try:
                    await asyncio.gather(
                        self._faults(bridge, server),
                        self._sampler(bridge, server, producer, reader, stream),
                        self._until_done(producer, produce),
                    )
                finally:
                    producer.stop()
                    await produce
                result.seconds = round(self.elapsed(), 1)
                ends = producer.ends
                listed = await reader.ends()
                if listed != ends:
                    raise AssertionError(f"broker end offsets {listed} != produced {ends}")
                drain = time.monotonic()
                while await reader.committed() != ends:
                    if time.monotonic() - drain > 300:
                        break
                    await asyncio.sleep(0.5)
                result.drain_s = round(time.monotonic() - drain, 1)
                await self._sample(bridge, server, producer, reader, stream)
                committed = await reader.committed()
            code = await bridge.stop()
            _say(f"soak: bridge stopped (exit {code}); reading the stream back ...")
            audit = await audit_stream(server.url, stream, topic, ends, committed, start_ms)
            self._finish(result, audit, bridge, producer)
        finally:
            for broker in reversed(started_brokers):
                await asyncio.to_thread(broker.stop)
        return result

    async def _until_done(self, producer: Producer, produce: asyncio.Task[None]) -> None:
        while self.elapsed() < self.p.duration:
            if produce.done():
                produce.result()
                raise RuntimeError("the producer stopped early")
            await asyncio.sleep(min(1.0, max(0.0, self.p.duration - self.elapsed())))
        producer.stop()

    def _schedule(self) -> list[tuple[float, str]]:
        return schedule(self.p)

    async def _faults(self, bridge: Bridge, server: brokers.NatsServer) -> None:
        for at, what in self._schedule():
            await asyncio.sleep(max(0.0, at - self.elapsed()))  # the fault schedule, not synchronisation
            if self.elapsed() >= self.p.duration:
                return
            self.events.append((self.elapsed(), what))
            if what == "nats":
                await asyncio.to_thread(server.restart)
                self.nats_restarts += 1
            else:
                code = await bridge.stop()
                if code != 0:
                    raise RuntimeError(f"the bridge exited {code} on SIGTERM (see {bridge.log_path})")
                bridge.start()
                self.ready_after.append(round(await bridge.wait_ready(120), 2))
                self.bridge_restarts += 1
            _say(f"soak: {self.elapsed():7.0f} s  {what} restarted")

    async def _sampler(
        self, bridge: Bridge, server: brokers.NatsServer, producer: Producer, reader: GroupReader, stream: str
    ) -> None:
        next_at = self.p.sample_every
        while next_at <= self.p.duration + 1e-6:
            await asyncio.sleep(max(0.0, next_at - self.elapsed()))  # the sampling interval
            await self._sample(bridge, server, producer, reader, stream)
            next_at += self.p.sample_every

    async def _sample(
        self, bridge: Bridge, server: brokers.NatsServer, producer: Producer, reader: GroupReader, stream: str
    ) -> None:
        pid = bridge.pid if bridge.proc is not None else 0
        rss, cpu = self._bridge_cpu.read(pid) if pid else (float("nan"), float("nan"))
        nats_rss, nats_cpu = (
            self._nats_cpu.read(server.pid) if server.pid and server.running else (float("nan"), float("nan"))
        )
        try:
            scraped = await asyncio.to_thread(scrape, bridge.http_port)
        except (urllib.error.URLError, OSError):
            scraped = {"buckets": [], "lag": float("nan")}
        prev_pid, prev = self._prev_buckets
        buckets = scraped["buckets"]
        if prev_pid == pid and len(prev) == len(buckets):
            delta = [(b, c - pc) for (b, c), (_, pc) in zip(buckets, prev, strict=True)]
        else:
            delta = buckets
        if buckets:
            self._prev_buckets = (pid, buckets)
        try:
            stored = await stream_messages(server.url, stream)
        except Exception:  # nats-server restarting: the column stays empty for this sample
            stored = -1
        uptime = time.monotonic() - bridge.started_at
        sample = Sample(
            t_s=round(self.elapsed(), 1),
            bridge_pid=pid,
            bridge_uptime_s=round(uptime, 1),
            bridge_rss_mb=round(rss, 1),
            bridge_cpu_pct=round(cpu, 1),
            nats_rss_mb=round(nats_rss, 1),
            nats_cpu_pct=round(nats_cpu, 1),
            produced=producer.produced,
            stored=stored,
            lag=await reader.lag(),
            lag_gauge=int(scraped["lag"]) if scraped["lag"] == scraped["lag"] else -1,
            ack_p50_ms=round(_quantile(delta, 0.5) * 1000, 2),
            ack_p99_ms=round(_quantile(delta, 0.99) * 1000, 2),
            ack_samples=int(delta[-1][1]) if delta else 0,
            ready=int(await asyncio.to_thread(ready, bridge.http_port)),
            nats_restarts=self.nats_restarts,
            bridge_restarts=self.bridge_restarts,
            warm=int(uptime >= self.p.warmup and rss == rss),
        )
        self.samples.append(sample)
        self._write_csv()
        _say(
            f"soak: {sample.t_s:7.0f} s  rss {sample.bridge_rss_mb:6.1f} MB"
            f"  cpu {sample.bridge_cpu_pct:5.1f} %"
            f"  lag {sample.lag:6,}  ack p50 {sample.ack_p50_ms:6.2f} p99 {sample.ack_p99_ms:7.2f} ms"
            f"  stored {sample.stored:,}"
        )

    def _write_csv(self) -> None:
        path = self.out / f"{self.p.name}.csv"
        names = list(Sample.__dataclass_fields__)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(names)
            for s in self.samples:
                writer.writerow([_cell(getattr(s, n)) for n in names])

    def _finish(self, result: SoakResult, audit: Audit, bridge: Bridge, producer: Producer) -> None:
        p = self.p
        for s in self.samples:  # the minute of production that ended at this sample
            minute = int(s.t_s // 60) - 1 if s.t_s >= 60 else 0
            e2e = audit.e2e_ms.get(minute)
            if e2e and s.t_s <= p.duration + 1:
                s.e2e_p50_ms, s.e2e_p99_ms, s.e2e_max_ms = e2e["p50"], e2e["p99"], e2e["max"]
        self._write_csv()
        warm = [s.bridge_rss_mb for s in self.samples if s.warm]
        result.produced = producer.produced
        result.nats_restarts, result.bridge_restarts = self.nats_restarts, self.bridge_restarts
        result.bridge_exit_codes = bridge.exit_codes
        result.ready_after_restart_s = self.ready_after
        if warm:
            result.rss_warm_min_mb, result.rss_warm_max_mb = min(warm), max(warm)
            result.rss_warm_spread = round(max(warm) / min(warm) - 1, 4)
            result.rss_ok = result.rss_warm_spread <= p.rss_tolerance
        result.lag_max = max((s.lag for s in self.samples), default=0)
        result.lag_final = self.samples[-1].lag if self.samples else 0
        acked = [s for s in self.samples if s.ack_samples]
        if acked:
            result.ack_p50_ms_median = round(statistics.median(s.ack_p50_ms for s in acked), 2)
            result.ack_p99_ms_max = round(max(s.ack_p99_ms for s in acked), 2)
        if audit.e2e_ms:
            result.e2e_ms = {
                "p50_median": round(statistics.median(v["p50"] for v in audit.e2e_ms.values()), 2),
                "p99_max": max(v["p99"] for v in audit.e2e_ms.values()),
                "max": max(v["max"] for v in audit.e2e_ms.values()),
            }
        result.audit = {
            "stream_messages": audit.stream_messages,
            "read": audit.read,
            "foreign": audit.foreign,
            "missing": sum(a.missing for a in audit.partitions),
            "duplicates": sum(a.duplicates for a in audit.partitions),
            "reorders": sum(a.reorders for a in audit.partitions),
            "partitions": [asdict(a) for a in audit.partitions],
        }
        result.audit_table = audit.table()
        result.clean = audit.clean and all(code == 0 for code in bridge.exit_codes)
        plot(self.samples, self.events, result, self.out / f"{p.name}.png")
        (self.out / f"{p.name}.json").write_text(json.dumps(asdict(result), indent=2) + "\n")


def schedule(p: SoakParams) -> list[tuple[float, str]]:
    """When to restart what: nats-server every ``nats_restart_every`` seconds, half a sample interval
    after a sample (a sample never meets a restart half-done), the bridge every
    ``bridge_restart_every`` seconds, half a NATS interval after a NATS restart."""
    plan: list[tuple[float, str]] = []
    nats_offset = p.sample_every / 2
    if p.nats_restart_every > 0:
        plan += [(t, "nats") for t in _every(p.nats_restart_every, nats_offset, p.duration)]
    if p.bridge_restart_every > 0:
        half = (p.nats_restart_every / 2) // p.sample_every * p.sample_every  # whole samples apart
        offset = nats_offset + (max(half, p.sample_every) if p.nats_restart_every > 0 else 0.0)
        plan += [(t, "bridge") for t in _every(p.bridge_restart_every, offset, p.duration)]
    return sorted(plan)


def _every(interval: float, offset: float, duration: float) -> list[float]:
    out, t = [], offset + interval
    while t < duration:
        out.append(t)
        t += interval
    return out


def _cell(value: Any) -> Any:
    return "" if isinstance(value, float) and value != value else value


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------- the plot


def plot(
    samples: Sequence[Sample], events: Sequence[tuple[float, str]], result: SoakResult, path: Path
) -> None:
    """Four panels against minutes: bridge RSS (warm samples marked), lag, latency, records stored."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.t_s / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(11, 11), sharex=True)
    p = result.params
    fig.suptitle(
        f"soak: {p['rate']:,} records/s × {result.seconds / 60:.0f} min, {p['partitions']} partitions — "
        f"{result.nats_restarts} nats-server restarts, {result.bridge_restarts} bridge restarts — audit "
        f"{result.audit.get('missing')} missing / {result.audit.get('duplicates')} dup / "
        f"{result.audit.get('reorders')} reorders",
        fontsize=10,
    )
    ax = axes[0]
    ax.plot(minutes, [s.bridge_rss_mb for s in samples], ".-", color="tab:blue", label="bridge RSS")
    warm = [(m, s.bridge_rss_mb) for m, s in zip(minutes, samples, strict=True) if s.warm]
    if warm:
        ax.plot(*zip(*warm, strict=True), "o", color="tab:blue", mfc="none", label="after warm-up (judged)")
        band = (result.rss_warm_min_mb, result.rss_warm_min_mb * (1 + p["rss_tolerance"]))
        ax.axhspan(*band, color="tab:green", alpha=0.12, label=f"min + {p['rss_tolerance']:.0%}")
    ax.set_ylabel("RSS (MB)")
    ax.legend(loc="lower right", fontsize=8)
    ax = axes[1]
    ax.plot(minutes, [s.lag for s in samples], ".-", color="tab:orange", label="lag (end − committed)")
    ax.set_ylabel("records")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[2]
    ax.plot(minutes, [s.ack_p50_ms for s in samples], ".-", label="publish→ack p50 (/metrics)")
    ax.plot(minutes, [s.ack_p99_ms for s in samples], ".-", label="publish→ack p99 (/metrics)")
    ax.plot(minutes, [s.e2e_p50_ms for s in samples], "x--", label="Kafka ts→stored p50")
    ax.plot(minutes, [s.e2e_p99_ms for s in samples], "x--", label="Kafka ts→stored p99")
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    ax = axes[3]
    ax.plot(minutes, [s.produced for s in samples], ".-", label="produced")
    ax.plot(minutes, [s.stored if s.stored >= 0 else float("nan") for s in samples], ".-", label="stored")
    ax.set_ylabel("records")
    ax.set_xlabel("minutes")
    ax.legend(loc="upper left", fontsize=8)
    for ax in axes:
        for t, what in events:
            ax.axvline(t / 60, color="tab:red" if what == "nats" else "tab:purple", alpha=0.3, lw=1)
        ax.grid(alpha=0.3)
    axes[0].plot([], [], color="tab:red", alpha=0.5, label="nats-server restart")
    axes[0].plot([], [], color="tab:purple", alpha=0.5, label="bridge restart")
    axes[0].legend(loc="lower right", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------------- the command


def parse_args(argv: Sequence[str]) -> SoakParams:
    d = SoakParams()
    parser = argparse.ArgumentParser(prog="python -m bridgedev soak", description=__doc__.split("\n\n")[0])
    dur = parse_duration
    parser.add_argument("--duration", type=dur, default=d.duration, help="e.g. 60m (default), 90s, 2h")
    parser.add_argument("--rate", type=int, default=d.rate, help="records/s (default %(default)s)")
    parser.add_argument("--partitions", type=int, default=d.partitions)
    parser.add_argument("--size", type=int, default=d.size, help="record value bytes")
    parser.add_argument("--sample-every", type=dur, default=d.sample_every, help="default 60s")
    parser.add_argument(
        "--nats-restart-every", type=dur, default=d.nats_restart_every, help="default 5m; 0 never"
    )
    parser.add_argument(
        "--bridge-restart-every", type=dur, default=d.bridge_restart_every, help="default 10m; 0 never"
    )
    parser.add_argument("--warmup", type=dur, default=d.warmup, help="per bridge process (default 3m)")
    parser.add_argument("--rss-tolerance", type=float, default=d.rss_tolerance)
    parser.add_argument("--max-in-flight", type=int, default=d.max_in_flight)
    parser.add_argument("--duplicate-window", type=dur, default=d.duplicate_window)
    parser.add_argument("--output-dir", default=d.output_dir, help="CSV, PNG and JSON go here (default docs)")
    parser.add_argument("--name", default=d.name, help="file name stem (default soak)")
    args = parser.parse_args(argv)
    return SoakParams(**vars(args))


def run(p: SoakParams) -> SoakResult:
    """One soak. Its working directory (the bridge's config and log) is removed when the audit is
    clean and kept, and named, otherwise."""
    from bridge.run import eventloop

    tmp = Path(tempfile.mkdtemp(prefix="kjb-soak-"))
    result = None
    try:
        result = eventloop.run(Soak(p, tmp).run())
        return result
    finally:
        if result is not None and result.clean:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            _say(f"soak: kept {tmp} (bridge config and log)")


def main(argv: Sequence[str]) -> int:
    p = parse_args(argv)
    result = run(p)
    out = Path(p.output_dir)
    print(result.audit_table)
    print(
        f"soak: {result.seconds:.0f} s, {result.produced:,} records, {result.nats_restarts} nats-server and "
        f"{result.bridge_restarts} bridge restarts; RSS after warm-up {result.rss_warm_min_mb}–"
        f"{result.rss_warm_max_mb} MB ({result.rss_warm_spread:+.1%}); lag max {result.lag_max:,}, final "
        f"{result.lag_final}; ack p50 {result.ack_p50_ms_median} ms, p99 max {result.ack_p99_ms_max} ms; "
        f"end-to-end {result.e2e_ms}; audit {'clean' if result.clean else 'FAILED'}"
    )
    print(f"written: {out / (p.name + '.csv')}, {out / (p.name + '.png')}, {out / (p.name + '.json')}")
    return 0 if result.clean and result.rss_ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
