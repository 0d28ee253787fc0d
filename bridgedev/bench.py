"""``kafka-jetstream-bridge bench``: what this machine allows, and how close the bridge gets (``make bench``).

One run starts local brokers (or uses the given ones), preloads N records of S bytes over P
partitions, then measures, printing a table and writing JSON:

a. raw Kafka consume rate (aiokafka ``getmany``, no publishing),
b. raw JetStream publish rate from Python (nats-py, pipelined publishes with a reply inbox and one
   callback counting PubAcks, ``max_in_flight`` outstanding, no Kafka),
c. the bridge's end-to-end backfill (consume → publish → ack → commit), records/s and MB/s, with
   ``workers`` processes in one consumer group (1, then 2),
d. a plain baseline in the same run: one ``publish_async`` future per record, awaited per fetched
   batch, then commit — the usual hand-written loop — and the bridge/baseline ratio. It runs twice:
   as written, on asyncio's loop with Python's default collector (the ratio the table leads with),
   and on the bridge's own runtime (uvloop, the collector of ``bridge.run.eventloop``), so the ratio
   without the runtime's share is printed too,
e. continuous mode: latency from the Kafka record timestamp to the PubAck (p50, p99, max) at a
   steady produce rate. The first ``LATENCY_WARMUP`` seconds of production are reported apart: the
   first records wait for the consumer's first fetch (~200 ms), which is start-up, not steady state
   (they alone made p99 ~120 ms where the steady p99 is ~10 ms),
f. peak RSS of the bridge process during (c),
g. CPU seconds per million records: of the bridge (and the Go peer) in (c), ``getrusage(RUSAGE_CHILDREN)``;
   of nats-server (utime + stime, summed over the nodes, before and after each phase) in (b) with
   ``Nats-Msg-Id``, in (b) again without it, and in (c). Only for servers the bench started itself.
   ``nats_replicas=3`` runs every phase against a 3-node cluster with R3 streams.

Each publish phase writes into a fresh stream (file storage) so no phase is measuring JetStream's
duplicate path. Nothing here is asserted: it prints numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nats
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from nats.js.api import StorageType, StreamConfig

from bridge.core import config as config_mod
from bridge.run import eventloop
from bridge.run.modes import Continuous
from bridge.run.pipeline import Pipeline
from bridgedev import brokers


@dataclass
class Params:
    records: int = 1_000_000
    size: int = 200
    partitions: int = 8
    max_in_flight: int = 1024
    broker: str = "kafka"  # kafka | tansu
    kafka_bootstrap: str = ""
    nats_url: str = ""
    workers: Sequence[int] = (1, 2)
    latency_rate: int = 5000  # records/s produced during the latency phase
    latency_seconds: float = 10.0
    baseline: bool = True
    output: str = "bench-results.json"
    rounds: int = 1  # alternating rounds of the bridge and the Go peer on the same brokers
    go_peer: str = ""  # the Go reference bridge's source (default: ../shared/peers beside the repo, if any)
    nats_replicas: int = 1  # 3: a 3-node NatsCluster and R3 streams


@dataclass
class Result:
    params: dict[str, Any]
    preload_s: float = 0.0
    raw_consume_rps: float = 0.0
    raw_publish_rps: float = 0.0
    raw_publish_no_id_rps: float = 0.0
    nats_cpu_s_per_million: dict[str, float] = field(default_factory=dict)  # phase b → nats-server CPU-s/1M
    bridge: dict[str, dict[str, float]] = field(default_factory=dict)  # phase → numbers (the last round)
    rounds: list[dict[str, dict[str, float]]] = field(default_factory=list)  # every round's phases
    go_peer: str = ""  # why the Go peer did not run, or its binary
    baseline_rps: float = 0.0  # asyncio, default collector
    baseline_runtime_rps: float = 0.0  # the same loop on the bridge's runtime
    latency_ms: dict[str, float] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------- preload

HEADER = [("source", b"bench")]  # one record header each, carried along as a NATS header (the mission)
# The mission's configuration (README): every kafka_* metadata and the record's headers as NATS headers,
# Nats-Msg-Id the record's identity. "bare" sends the Nats-Msg-Id alone.
MISSION_METADATA = {"include_patterns": [".*"]}


async def _preload(bootstrap: str, topic: str, p: Params) -> float:
    await brokers.create_topic(bootstrap, topic, p.partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1024 * 1024, acks=1)
    await producer.start()
    started = time.perf_counter()
    value = os.urandom(p.size // 2).hex().encode()[: p.size].ljust(p.size, b"x")
    try:
        pending: list[asyncio.Future[Any]] = []
        for i in range(p.records):
            pending.append(
                await producer.send(topic, value, key=b"k%d" % i, partition=i % p.partitions, headers=HEADER)
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def _servers(nats_url: str) -> list[str]:
    """A comma list of URLs (a cluster's) as nats-py wants it."""
    return [u.strip() for u in nats_url.split(",") if u.strip()]


async def _stream(nats_url: str, name: str, subjects: list[str], replicas: int = 1) -> None:
    nc = await nats.connect(_servers(nats_url))
    try:
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(
                name=name,
                subjects=subjects,
                storage=StorageType.FILE,
                duplicate_window=600,
                num_replicas=replicas,
            )
        )
    finally:
        await nc.close()


async def _delete_stream(nats_url: str, name: str) -> None:
    nc = await nats.connect(_servers(nats_url))
    try:
        with contextlib.suppress(Exception):  # cleanup of a bench stream; nothing to report
            await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


# ----------------------------------------------------------------------------------- a. raw consume


async def _raw_consume(bootstrap: str, topic: str, p: Params) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, i) for i in range(p.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started = time.perf_counter()
        n = 0
        while n < p.records:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            n += sum(len(v) for v in batch.values())
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


# ----------------------------------------------------------------------------------- b. raw publish


async def _raw_publish(nats_url: str, p: Params, msg_id: bool = True) -> float:
    name = f"BENCHRAW{uuid.uuid4().hex[:6].upper()}"
    await _stream(nats_url, name, [f"{name.lower()}.>"], p.nats_replicas)
    nc = await nats.connect(_servers(nats_url), pending_size=256 * 1024 * 1024)
    try:
        done = asyncio.Event()
        acked = 0

        async def on_ack(_: Any) -> None:
            nonlocal acked
            acked += 1
            if acked >= p.records:
                done.set()

        inbox = f"_INBOX.{uuid.uuid4().hex}."
        await nc.subscribe(inbox + "*", cb=on_ack)
        payload = b"x" * p.size
        subject = f"{name.lower()}.a"
        started = time.perf_counter()
        sent = 0
        while sent < p.records:
            while sent - acked < p.max_in_flight and sent < p.records:
                headers = {"Nats-Msg-Id": str(sent)} if msg_id else None
                await nc.publish(subject, payload, reply=f"{inbox}{sent}", headers=headers)
                sent += 1
            await asyncio.sleep(0)
        await done.wait()
        return p.records / (time.perf_counter() - started)
    finally:
        await nc.close()
        await _delete_stream(nats_url, name)


# ----------------------------------------------------------------------------------- c. the bridge


def _config(
    path: Path,
    bootstrap: str,
    nats_url: str,
    topic: str,
    group: str,
    subject: str,
    p: Params,
    metadata: bool = True,
) -> Path:
    doc = {
        "input": {
            "kafka_franz": {
                "seed_brokers": [bootstrap],
                "topics": [topic],
                "consumer_group": group,
                "session_timeout": "10s",
                "rebalance_timeout": "10s",
                "start_offset": "earliest",
            }
        },
        "output": {
            "nats_jetstream": {
                "urls": _servers(nats_url),
                "subject": subject,
                "max_in_flight": p.max_in_flight,
                **({"metadata": MISSION_METADATA} if metadata else {}),
            }
        },
        "http": {"enabled": False},
        "logger": {"level": "WARN", "format": "json"},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@dataclass
class _Servers:
    """What the bench can read of the brokers it measures against."""

    nats_url: str
    nats_pids: list[int] = field(default_factory=list)  # the nats-servers the bench started (CPU time read)


class _FirstStored(threading.Thread):
    """Watches a stream from its own thread and event loop: the time its first message was stored."""

    def __init__(self, nats_url: str, stream: str) -> None:
        super().__init__(daemon=True)
        self.nats_url, self.stream = nats_url, stream
        self.at = 0.0  # time.perf_counter() when the stream first held a message
        self.done = threading.Event()

    def run(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        nc = await nats.connect(_servers(self.nats_url))
        try:
            js = nc.jetstream()
            while not self.done.is_set():
                with contextlib.suppress(Exception):  # not there yet, a slow answer: ask again
                    if (await js.stream_info(self.stream)).state.messages:
                        self.at = time.perf_counter()
                        return
                await asyncio.sleep(0.005)  # a polling interval, not synchronisation
        finally:
            await nc.close()


def _cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these (running) processes, summed."""
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += float(times.user + times.system)
    return total


def _measure(
    cmds: list[list[str]], servers: _Servers, stream: str
) -> tuple[list[subprocess.Popen[bytes]], dict[str, float]]:
    """Run the processes to their end, sampling their RSS and watching for the stream's first message;
    returns the processes and peak RSS, wall time, first-record time, their CPU seconds and the
    nats-server's CPU seconds over the run."""
    import psutil

    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    nats_before = _cpu_seconds(servers.nats_pids)
    watcher = _FirstStored(servers.nats_url, stream)
    watcher.start()
    started = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for cmd in cmds]
    peaks = [0] * len(procs)
    handles = [psutil.Process(proc.pid) for proc in procs]
    while any(proc.poll() is None for proc in procs):
        for i, handle in enumerate(handles):
            with contextlib.suppress(psutil.Error):  # the process and its workers (--workers N), each
                for one in (handle, *handle.children(recursive=True)):
                    peaks[i] = max(peaks[i], one.memory_info().rss)
        time.sleep(0.02)  # a sampling interval, not synchronisation
    wall = time.perf_counter() - started
    watcher.done.set()
    watcher.join(5)
    first = watcher.at - started if watcher.at else 0.0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (children.ru_utime - children_before.ru_utime) + (children.ru_stime - children_before.ru_stime)
    return procs, {
        "wall_s": round(wall, 3),
        "first_record_s": round(first, 3),
        "peak_rss_mb": round(max(peaks) / 1e6, 1),
        "cpu_s": round(cpu, 2),
        "nats_cpu_s": round(_cpu_seconds(servers.nats_pids) - nats_before, 2),
    }


def _per_million(value: float, records: int) -> float:
    return round(value * 1_000_000 / records, 2) if records else 0.0


def _bridge_backfill(
    bootstrap: str,
    nats_url: str,
    topic: str,
    p: Params,
    workers: int,
    tmp: Path,
    servers: _Servers,
    metadata: bool = True,
) -> dict[str, float]:
    name = f"BENCHBR{workers}{uuid.uuid4().hex[:6].upper()}"
    asyncio.run(_stream(nats_url, name, [f"{name.lower()}.>"], p.nats_replicas))
    group = f"bench-{uuid.uuid4().hex[:8]}"
    cfg = _config(
        tmp / f"bridge-{workers}-{int(metadata)}.yaml",
        bootstrap,
        nats_url,
        topic,
        group,
        name.lower() + '.${! meta("kafka_partition") }',
        p,
        metadata,
    )
    # --workers N as the CLI runs it: N processes, each with its share of the partitions
    cmds = [[sys.executable, "-m", "bridge", "backfill", "-c", str(cfg), "--json", "--workers", str(workers)]]
    procs, numbers = _measure(cmds, servers, name)
    out = procs[0].stdout.read().decode() if procs[0].stdout else ""
    for proc in procs:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    summary = json.loads(out[out.index("{") :]) if "{" in out else {}
    records = int(summary.get("records", 0))
    elapsed = float(summary.get("elapsed_s", numbers["wall_s"])) or numbers["wall_s"]
    asyncio.run(_delete_stream(nats_url, name))
    return {
        "records": records,
        "seconds": round(elapsed, 3),
        "records_per_s": round(records / elapsed, 1) if elapsed else 0.0,
        "mb_per_s": round(records * p.size / elapsed / 1e6, 2) if elapsed else 0.0,
        "cpu_s_per_1m": _per_million(numbers["cpu_s"], records),
        "nats_cpu_s_per_1m": _per_million(numbers["nats_cpu_s"], records),
        **numbers,
        "exit_codes": max(proc.returncode or 0 for proc in procs),
    }


# ----------------------------------------------------------------------------------- c'. the Go peer


class GoPeerFailed(RuntimeError):
    """The Go reference bridge ran but did not finish (franz-go does not speak to every broker: Tansu)."""


_GO_RATE = re.compile(r"(\d+) records acknowledged in ([\d.]+)s")


def go_peer_binary(source: str = "") -> tuple[Path | None, str]:
    """The Go reference bridge (``../shared/peers`` beside the repository, or ``source``), built once with
    ``go build`` into the cache; (None, why) when Go or the source is missing or the build fails."""
    src = Path(source) if source else Path(__file__).resolve().parents[2] / "shared" / "peers"
    if not (src / "main.go").is_file():
        return None, f"no Go reference bridge at {src} (--go-peer DIR)"
    go = shutil.which("go")
    if go is None:
        return None, "go is not on the PATH"
    digest = hashlib.sha256(
        b"".join((src / n).read_bytes() for n in ("main.go", "go.mod", "go.sum"))
    ).hexdigest()
    binary = brokers.kafka_cache_dir() / f"go-bridge-{digest[:16]}"
    if not binary.is_file():
        binary.parent.mkdir(parents=True, exist_ok=True)
        built = subprocess.run([go, "build", "-o", str(binary), "."], cwd=src, capture_output=True, text=True)
        if built.returncode != 0:
            return None, f"go build failed: {built.stderr.strip()[-500:]}"
    return binary, str(binary)


def _go_backfill(
    binary: Path, bootstrap: str, nats_url: str, topic: str, p: Params, servers: _Servers, metadata: bool
) -> dict[str, float]:
    name = f"BENCHGO{uuid.uuid4().hex[:6].upper()}"
    asyncio.run(_stream(nats_url, name, [f"{name.lower()}.>"], p.nats_replicas))
    cmd = [
        str(binary),
        "-brokers",
        bootstrap,
        "-topic",
        topic,
        "-group",
        f"bench-go-{uuid.uuid4().hex[:8]}",
        "-nats",
        nats_url,
        "-subject",
        name.lower(),
        "-backfill",
        f"-metadata={str(metadata).lower()}",
        "-max-inflight",
        str(p.max_in_flight),
    ]
    procs, numbers = _measure([cmd], servers, name)
    err = procs[0].stderr.read().decode() if procs[0].stderr else ""
    for pipe in (procs[0].stdout, procs[0].stderr):
        if pipe is not None:
            pipe.close()
    asyncio.run(_delete_stream(nats_url, name))
    match = _GO_RATE.search(err)
    if match is None or procs[0].returncode:
        raise GoPeerFailed(err.strip().splitlines()[-1] if err.strip() else f"exit {procs[0].returncode}")
    records, elapsed = int(match.group(1)), float(match.group(2))
    return {
        "records": records,
        "seconds": round(elapsed, 3),
        "records_per_s": round(records / elapsed, 1) if elapsed else 0.0,
        "mb_per_s": round(records * p.size / elapsed / 1e6, 2) if elapsed else 0.0,
        "cpu_s_per_1m": _per_million(numbers["cpu_s"], records),
        "nats_cpu_s_per_1m": _per_million(numbers["nats_cpu_s"], records),
        **numbers,
        "exit_codes": procs[0].returncode or 0,
    }


# ----------------------------------------------------------------------------------- d. plain baseline


async def _baseline(bootstrap: str, nats_url: str, topic: str, p: Params) -> float:
    name = f"BENCHBASE{uuid.uuid4().hex[:6].upper()}"
    await _stream(nats_url, name, [f"{name.lower()}.>"], p.nats_replicas)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-base-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10_000,
    )
    nc = await nats.connect(_servers(nats_url))
    js = nc.jetstream(publish_async_max_pending=p.max_in_flight)
    await consumer.start()
    try:
        n = 0
        started = 0.0
        while n < p.records:
            batch = await consumer.getmany(timeout_ms=1000, max_records=p.max_in_flight)
            if not batch:
                continue
            if not started:
                started = time.perf_counter()
            futures = []
            for tp, records in batch.items():
                subject = f"{name.lower()}.{tp.partition}"
                for r in records:
                    futures.append(
                        await js.publish_async(
                            subject,
                            r.value or b"",
                            headers={"Nats-Msg-Id": f"{tp.topic}-{tp.partition}-{r.offset}"},
                        )
                    )
            await asyncio.gather(*futures)
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in batch.items()})
            n += sum(len(v) for v in batch.values())
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await nc.close()
        await _delete_stream(nats_url, name)


@contextlib.contextmanager
def _plain_runtime() -> Iterator[None]:
    """Python's default collector (``eventloop.run`` froze start-up objects and raised the threshold)."""
    thresholds = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


# ----------------------------------------------------------------------------------- e. latency

LATENCY_WARMUP = 1.0  # seconds of production at the start reported apart (see the module docstring)


async def _latency(bootstrap: str, nats_url: str, p: Params, tmp: Path) -> dict[str, float]:
    topic = f"bench-lat-{uuid.uuid4().hex[:8]}"
    await brokers.create_topic(bootstrap, topic, p.partitions)
    name = f"BENCHLAT{uuid.uuid4().hex[:6].upper()}"
    await _stream(nats_url, name, [f"{name.lower()}.>"], p.nats_replicas)
    cfg = _config(
        tmp / "latency.yaml",
        bootstrap,
        nats_url,
        topic,
        f"bench-lat-{uuid.uuid4().hex[:8]}",
        name.lower() + '.${! meta("kafka_partition") }',
        p,
    )
    loaded = config_mod.load(cfg)
    acked: list[tuple[int, float]] = []  # (record timestamp, ack time), ms since the epoch

    def on_acked(record: Any) -> None:
        acked.append((record.timestamp, time.time() * 1000))

    stop = asyncio.Event()
    pipeline = Pipeline(loaded, Continuous(), on_acked=on_acked)
    runner = asyncio.create_task(pipeline.run(stop))
    await pipeline.started.wait()
    while not pipeline.assigned_once:  # noqa: ASYNC110 - polling a flag of the pipeline while the group forms
        await asyncio.sleep(0.05)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    total = int(p.latency_rate * p.latency_seconds)
    value = b"x" * p.size
    try:
        started = time.perf_counter()
        for i in range(total):
            due = started + i / p.latency_rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the steady produce rate
            await producer.send(topic, value, partition=i % p.partitions)
        await producer.flush()
        deadline = time.monotonic() + 60
        while len(acked) < total and time.monotonic() < deadline:  # noqa: ASYNC110 - polled with a deadline
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()
        stop.set()
        await runner
        await _delete_stream(nats_url, name)
    if not acked:
        return {}
    first = min(ts for ts, _ in acked)
    steady = sorted(ack - ts for ts, ack in acked if ts >= first + LATENCY_WARMUP * 1000)
    warmup = sorted(ack - ts for ts, ack in acked if ts < first + LATENCY_WARMUP * 1000)
    if not steady:
        return {}
    return {
        "rate": p.latency_rate,
        "samples": len(steady),
        "p50": round(statistics.median(steady), 2),
        "p99": round(steady[min(len(steady) - 1, int(len(steady) * 0.99))], 2),
        "max": round(steady[-1], 2),
        "warmup_s": LATENCY_WARMUP,
        "warmup_samples": len(warmup),
        "warmup_max": round(warmup[-1], 2) if warmup else 0.0,
    }


# ----------------------------------------------------------------------------------- the run


def run(p: Params) -> Result:
    result = Result(params=asdict(p))
    result.machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory(prefix="kjb-bench-") as tmpdir:
        tmp = Path(tmpdir)
        started: list[Any] = []
        try:
            bootstrap, nats_url = p.kafka_bootstrap, p.nats_url
            if not bootstrap:
                kafka: Any = (
                    brokers.ApacheKafka(jvm_args=["-XX:TieredStopAtLevel=4"])
                    if p.broker == "kafka"
                    else brokers.Tansu()
                )
                started.append(kafka.start())
                bootstrap = kafka.bootstrap
            servers = _Servers(nats_url)
            if not nats_url and p.nats_replicas > 1:
                cluster = brokers.NatsCluster(p.nats_replicas, name="bench")
                started.append(cluster.start())
                nats_url = cluster.urls
                servers = _Servers(nats_url, [s.pid for s in cluster.servers if s.pid is not None])
            elif not nats_url:
                server = brokers.NatsServer(name="bench-nats")
                started.append(server.start())
                nats_url = server.url
                servers = _Servers(nats_url, [server.pid] if server.pid is not None else [])
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            shape = f"{p.records:,} records of {p.size} bytes over {p.partitions} partitions"
            _say(f"preloading {shape} ({p.broker}) ...")
            result.preload_s = round(asyncio.run(_preload(bootstrap, topic, p)), 2)
            _say("a. raw Kafka consume ...")
            result.raw_consume_rps = round(eventloop.run(_raw_consume(bootstrap, topic, p)), 1)
            _say("b. raw JetStream publish ...")
            cpu = _cpu_seconds(servers.nats_pids)
            result.raw_publish_rps = round(eventloop.run(_raw_publish(nats_url, p)), 1)
            if servers.nats_pids:
                spent = _cpu_seconds(servers.nats_pids) - cpu
                result.nats_cpu_s_per_million["b. publish, Nats-Msg-Id"] = _per_million(spent, p.records)
                _say("b. raw JetStream publish without Nats-Msg-Id ...")
                cpu = _cpu_seconds(servers.nats_pids)
                result.raw_publish_no_id_rps = round(
                    eventloop.run(_raw_publish(nats_url, p, msg_id=False)), 1
                )
                spent = _cpu_seconds(servers.nats_pids) - cpu
                result.nats_cpu_s_per_million["b. publish, no Nats-Msg-Id"] = _per_million(spent, p.records)
            binary, why = go_peer_binary(p.go_peer)
            result.go_peer = why
            for round_no in range(1, p.rounds + 1):
                phases: dict[str, dict[str, float]] = {}
                tag = f" (round {round_no} of {p.rounds})" if p.rounds > 1 else ""
                for metadata in (True, False):
                    kind = "mission" if metadata else "bare"
                    if binary is not None:
                        _say(f"c. Go reference bridge, {kind}{tag} ...")
                        try:
                            phases[f"go {kind}"] = _go_backfill(
                                binary, bootstrap, nats_url, topic, p, servers, metadata
                            )
                        except GoPeerFailed as exc:
                            result.go_peer = f"it failed on this broker: {exc}"
                            binary = None
                    for workers in p.workers if metadata else (1,):
                        _say(f"c. bridge backfill, {kind}, {workers} worker(s){tag} ...")
                        phases[f"{kind} {workers}w"] = _bridge_backfill(
                            bootstrap, nats_url, topic, p, workers, tmp, servers, metadata
                        )
                result.rounds.append(phases)
            result.bridge = result.rounds[-1] if result.rounds else {}
            if p.baseline:
                _say("d. plain baseline (a future per record, awaited per batch), asyncio ...")
                with _plain_runtime():
                    result.baseline_rps = round(asyncio.run(_baseline(bootstrap, nats_url, topic, p)), 1)
                _say("d. plain baseline on the bridge's runtime (uvloop, GC clock) ...")
                result.baseline_runtime_rps = round(
                    eventloop.run(_baseline(bootstrap, nats_url, topic, p)), 1
                )
            if p.latency_seconds > 0:
                _say(f"e. continuous latency at {p.latency_rate:,} records/s ...")
                result.latency_ms = eventloop.run(_latency(bootstrap, nats_url, p, tmp))
        finally:
            for broker in reversed(started):
                broker.stop()
    return result


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _phase_medians(result: Result) -> dict[str, dict[str, float]]:
    """Each phase's median over the rounds (one round: its numbers)."""
    names = [name for phases in result.rounds for name in phases]
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(names):
        runs = [phases[name] for phases in result.rounds if name in phases]
        out[name] = {
            key: _median([r[key] for r in runs]) for key in runs[0] if isinstance(runs[0][key], int | float)
        }
    return out


def report(result: Result) -> None:
    from rich.console import Console
    from rich.table import Table

    p = result.params
    rounds = len(result.rounds)
    table = Table(
        title=f"bench: {p['records']:,} records × {p['size']} B with a header, {p['partitions']} partitions, "
        f"max_in_flight {p['max_in_flight']}, {p['broker']}, R{p.get('nats_replicas', 1)}"
        + (f", medians of {rounds} alternating rounds" if rounds > 1 else "")
    )
    table.add_column("measure")
    table.add_column("rec/s", justify="right")
    table.add_column("CPU-s / 1M", justify="right")
    table.add_column("peak RSS", justify="right")
    table.add_column("first record", justify="right")
    table.add_column("nats-server CPU-s / 1M", justify="right")
    table.add_column("vs Go", justify="right")
    phases = _phase_medians(result)
    labels = {
        "mission": "kafka_* metadata + header + Nats-Msg-Id (the mission)",
        "bare": "Nats-Msg-Id only (bare)",
    }
    for kind in ("mission", "bare"):
        go = phases.get(f"go {kind}")
        if go:
            table.add_row(
                f"Go reference bridge, {kind}",
                f"{go['records_per_s']:,.0f}",
                f"{go['cpu_s_per_1m']:.1f}",
                f"{go['peak_rss_mb']:.0f} MB",
                f"{go['first_record_s']:.2f} s",
                f"{go['nats_cpu_s_per_1m']:.1f}",
                "1.00",
            )
        for name, b in phases.items():
            if not name.startswith(kind + " "):
                continue
            workers = name.split()[-1].removesuffix("w")
            ratio = f"{b['records_per_s'] / go['records_per_s']:.2f}" if go and go["records_per_s"] else "-"
            table.add_row(
                f"bridge, {labels[kind]}, {workers} worker(s)",
                f"{b['records_per_s']:,.0f}",
                f"{b['cpu_s_per_1m']:.1f}",
                f"{b['peak_rss_mb']:.0f} MB",
                f"{b['first_record_s']:.2f} s",
                f"{b['nats_cpu_s_per_1m']:.1f}",
                ratio,
            )
    Console(file=sys.stdout, width=160).print(table)
    mission, bare = phases.get("mission 1w"), phases.get("bare 1w")
    if mission and bare and mission["records_per_s"]:
        cost = bare["records_per_s"] / mission["records_per_s"]
        cpu = mission["cpu_s_per_1m"] / max(bare["cpu_s_per_1m"], 1e-9)
        print(f"metadata costs {cost:.2f} × the bare rate ({cpu:.2f} × its CPU per record)")
    go_m, go_b = phases.get("go mission"), phases.get("go bare")
    if go_m and go_b and go_m["records_per_s"]:
        print(f"Go: metadata costs {go_b['records_per_s'] / go_m['records_per_s']:.2f} × the bare rate")
    if not go_m:
        print(f"Go reference bridge not run: {result.go_peer}")
    other = Table(title="stages and latency")
    other.add_column("measure")
    other.add_column("value", justify="right")
    other.add_row("preload (aiokafka producer)", f"{result.preload_s:.1f} s")
    other.add_row("a. raw Kafka consume", f"{result.raw_consume_rps:,.0f} rec/s")
    other.add_row("b. raw JetStream publish (Python)", f"{result.raw_publish_rps:,.0f} rec/s")
    if result.raw_publish_no_id_rps:
        other.add_row("b. the same without Nats-Msg-Id", f"{result.raw_publish_no_id_rps:,.0f} rec/s")
    for phase, seconds in result.nats_cpu_s_per_million.items():
        other.add_row(f"g. nats-server CPU, {phase}", f"{seconds:.1f} CPU-s per 1M records")
    one = mission["records_per_s"] if mission else 0.0
    if result.baseline_rps:
        other.add_row(
            "d. plain baseline (asyncio)",
            f"{result.baseline_rps:,.0f} rec/s  (bridge 1 worker = {one / result.baseline_rps:.1f}×)",
        )
    if result.baseline_runtime_rps:
        tuned = result.baseline_runtime_rps
        other.add_row(
            "d. same, on uvloop + GC clock", f"{tuned:,.0f} rec/s  (bridge 1 worker = {one / tuned:.1f}×)"
        )
    if result.latency_ms:
        lat = result.latency_ms
        other.add_row(
            f"e. latency at {lat['rate']:,} rec/s",
            f"p50 {lat['p50']:.1f} ms  p99 {lat['p99']:.1f} ms  max {lat['max']:.1f} ms",
        )
        other.add_row(
            f"   first {lat['warmup_s']:.0f} s (start-up)",
            f"{lat['warmup_samples']:,} records, max {lat['warmup_max']:.1f} ms",
        )
    Console(file=sys.stdout, width=120).print(other)


def main(p: Params) -> int:
    result = run(p)
    report(result)
    Path(p.output).write_text(json.dumps(asdict(result), indent=2))
    print(f"results written to {p.output}")
    return 0
