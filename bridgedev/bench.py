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
g. CPU seconds per million records: of nats-server (``/proc/<pid>/stat`` utime + stime, summed over
   the nodes, before and after each phase) in (b) with ``Nats-Msg-Id``, in (b) again without it, and
   in (c); of the bridge processes in (c) (``getrusage(RUSAGE_CHILDREN)``). Only for servers the bench
   started itself. ``nats_replicas=3`` runs every phase against a 3-node cluster with R3 streams.

Each publish phase writes into a fresh stream (file storage) so no phase is measuring JetStream's
duplicate path. Nothing here is asserted: it prints numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
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
    nats_replicas: int = 1  # 3: a NatsCluster and R3 streams
    output: str = "bench-results.json"


@dataclass
class Result:
    params: dict[str, Any]
    preload_s: float = 0.0
    raw_consume_rps: float = 0.0
    raw_publish_rps: float = 0.0
    raw_publish_no_id_rps: float = 0.0
    bridge: dict[str, dict[str, float]] = field(default_factory=dict)  # workers → numbers
    baseline_rps: float = 0.0  # asyncio, default collector
    baseline_runtime_rps: float = 0.0  # the same loop on the bridge's runtime
    latency_ms: dict[str, float] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    nats_cpu_s_per_million: dict[str, float] = field(default_factory=dict)  # phase → CPU-s per 1M
    bridge_cpu_s_per_million: dict[str, float] = field(default_factory=dict)  # workers → CPU-s per 1M


def _servers(nats_url: str) -> list[str]:
    """A comma list of URLs (a cluster's) as nats-py wants it."""
    return [u.strip() for u in nats_url.split(",") if u.strip()]


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these processes, from ``/proc/<pid>/stat`` (fields 14 and 15)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ----------------------------------------------------------------------------------- preload


async def _preload(bootstrap: str, topic: str, p: Params) -> float:
    await brokers.create_topic(bootstrap, topic, p.partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1024 * 1024, acks=1)
    await producer.start()
    started = time.perf_counter()
    value = os.urandom(p.size // 2).hex().encode()[: p.size].ljust(p.size, b"x")
    try:
        pending: list[asyncio.Future[Any]] = []
        for i in range(p.records):
            pending.append(await producer.send(topic, value, key=b"k%d" % i, partition=i % p.partitions))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


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
    path: Path, bootstrap: str, nats_url: str, topic: str, group: str, subject: str, p: Params
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
            "nats_jetstream": {"urls": [nats_url], "subject": subject, "max_in_flight": p.max_in_flight}
        },
        "http": {"enabled": False},
        "logger": {"level": "WARN", "format": "json"},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _peak_rss(procs: list[subprocess.Popen[bytes]]) -> tuple[list[int], float]:
    """Wait for the processes, sampling their RSS; returns peak RSS per process and the wall time."""
    import psutil

    started = time.perf_counter()
    peaks = [0] * len(procs)
    handles = [psutil.Process(proc.pid) for proc in procs]
    while any(proc.poll() is None for proc in procs):
        for i, handle in enumerate(handles):
            with contextlib.suppress(psutil.NoSuchProcess):
                peaks[i] = max(peaks[i], handle.memory_info().rss)
        time.sleep(0.05)  # a sampling interval, not synchronisation
    return peaks, time.perf_counter() - started


def _bridge_backfill(
    bootstrap: str, nats_url: str, topic: str, p: Params, workers: int, tmp: Path
) -> dict[str, float]:
    name = f"BENCHBR{workers}{uuid.uuid4().hex[:6].upper()}"
    asyncio.run(_stream(nats_url, name, [f"{name.lower()}.>"], p.nats_replicas))
    group = f"bench-{uuid.uuid4().hex[:8]}"
    cfg = _config(
        tmp / f"bridge-{workers}.yaml",
        bootstrap,
        nats_url,
        topic,
        group,
        name.lower() + '.${! meta("kafka_partition") }',
        p,
    )
    cmd = [sys.executable, "-m", "bridge", "backfill", "-c", str(cfg), "--json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for _ in range(workers)]
    peaks, wall = _peak_rss(procs)
    summaries = []
    for proc in procs:
        out = proc.stdout.read().decode() if proc.stdout else ""
        if proc.stdout:
            proc.stdout.close()
        summaries.append(json.loads(out[out.index("{") :]) if "{" in out else {})
    records = sum(s.get("records", 0) for s in summaries)
    elapsed = max((s.get("elapsed_s", wall) for s in summaries), default=wall)
    asyncio.run(_delete_stream(nats_url, name))
    return {
        "records": records,
        "seconds": round(elapsed, 3),
        "records_per_s": round(records / elapsed, 1) if elapsed else 0.0,
        "mb_per_s": round(records * p.size / elapsed / 1e6, 2) if elapsed else 0.0,
        "peak_rss_mb": round(max(peaks) / 1e6, 1),
        "exit_codes": max(proc.returncode or 0 for proc in procs),
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
            nats_pids: list[int] = []
            if not nats_url and p.nats_replicas > 1:
                cluster = brokers.NatsCluster(p.nats_replicas, name="bench")
                started.append(cluster.start())
                nats_url = cluster.urls
                nats_pids = [s.pid for s in cluster.servers if s.pid is not None]
            elif not nats_url:
                server = brokers.NatsServer(name="bench-nats")
                started.append(server.start())
                nats_url = server.url
                nats_pids = [server.pid] if server.pid is not None else []

            def per_million(seconds: float, records: float) -> float:
                return round(seconds * 1e6 / records, 2) if records else 0.0

            topic = f"bench-{uuid.uuid4().hex[:8]}"
            shape = f"{p.records:,} records of {p.size} bytes over {p.partitions} partitions"
            _say(f"preloading {shape} ({p.broker}) ...")
            result.preload_s = round(asyncio.run(_preload(bootstrap, topic, p)), 2)
            _say("a. raw Kafka consume ...")
            result.raw_consume_rps = round(eventloop.run(_raw_consume(bootstrap, topic, p)), 1)
            _say("b. raw JetStream publish ...")
            cpu = _cpu_seconds(nats_pids)
            result.raw_publish_rps = round(eventloop.run(_raw_publish(nats_url, p)), 1)
            if nats_pids:
                spent = _cpu_seconds(nats_pids) - cpu
                result.nats_cpu_s_per_million["b. publish, Nats-Msg-Id"] = per_million(spent, p.records)
                _say("b. raw JetStream publish without Nats-Msg-Id ...")
                cpu = _cpu_seconds(nats_pids)
                result.raw_publish_no_id_rps = round(
                    eventloop.run(_raw_publish(nats_url, p, msg_id=False)), 1
                )
                spent = _cpu_seconds(nats_pids) - cpu
                result.nats_cpu_s_per_million["b. publish, no Nats-Msg-Id"] = per_million(spent, p.records)
            for workers in p.workers:
                _say(f"c. bridge backfill, {workers} worker(s) ...")
                cpu, children = _cpu_seconds(nats_pids), _children_cpu()
                backfill = _bridge_backfill(bootstrap, nats_url, topic, p, workers, tmp)
                result.bridge[str(workers)] = backfill
                result.bridge_cpu_s_per_million[str(workers)] = per_million(
                    _children_cpu() - children, backfill["records"]
                )
                if nats_pids:
                    result.nats_cpu_s_per_million[f"c. bridge, {workers} worker(s)"] = per_million(
                        _cpu_seconds(nats_pids) - cpu, backfill["records"]
                    )
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


def report(result: Result) -> None:
    from rich.console import Console
    from rich.table import Table

    p = result.params
    table = Table(
        title=f"bench: {p['records']:,} records × {p['size']} B, {p['partitions']} partitions, "
        f"max_in_flight {p['max_in_flight']}, {p['broker']}, R{p.get('nats_replicas', 1)}"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("preload (aiokafka producer)", f"{result.preload_s:.1f} s")
    table.add_row("a. raw Kafka consume", f"{result.raw_consume_rps:,.0f} rec/s")
    table.add_row("b. raw JetStream publish (Python)", f"{result.raw_publish_rps:,.0f} rec/s")
    if result.raw_publish_no_id_rps:
        table.add_row("b. the same without Nats-Msg-Id", f"{result.raw_publish_no_id_rps:,.0f} rec/s")
    floor = min(result.raw_consume_rps, result.raw_publish_rps)
    for workers, b in result.bridge.items():
        table.add_row(
            f"c. bridge backfill, {workers} worker(s)",
            f"{b['records_per_s']:,.0f} rec/s  {b['mb_per_s']:.1f} MB/s  "
            f"({b['records_per_s'] / floor:.2f} × min(a,b))",
        )
        table.add_row(f"f. peak RSS, {workers} worker(s)", f"{b['peak_rss_mb']:.0f} MB per process")
    one = result.bridge.get("1", {}).get("records_per_s", 0.0)
    if result.baseline_rps:
        table.add_row(
            "d. plain baseline (asyncio)",
            f"{result.baseline_rps:,.0f} rec/s  (bridge 1 worker = {one / result.baseline_rps:.1f}×)",
        )
    if result.baseline_runtime_rps:
        tuned = result.baseline_runtime_rps
        table.add_row(
            "d. same, on uvloop + GC clock", f"{tuned:,.0f} rec/s  (bridge 1 worker = {one / tuned:.1f}×)"
        )
    if result.latency_ms:
        lat = result.latency_ms
        table.add_row(
            f"e. latency at {lat['rate']:,} rec/s",
            f"p50 {lat['p50']:.1f} ms  p99 {lat['p99']:.1f} ms  max {lat['max']:.1f} ms",
        )
        table.add_row(
            f"   first {lat['warmup_s']:.0f} s (start-up)",
            f"{lat['warmup_samples']:,} records, max {lat['warmup_max']:.1f} ms",
        )
    for phase, seconds in result.nats_cpu_s_per_million.items():
        table.add_row(f"g. nats-server CPU, {phase}", f"{seconds:.1f} CPU-s per 1M records")
    for workers, seconds in result.bridge_cpu_s_per_million.items():
        table.add_row(f"g. bridge CPU, {workers} worker(s)", f"{seconds:.1f} CPU-s per 1M records")
    Console(file=sys.stdout, width=120).print(table)


def main(p: Params) -> int:
    result = run(p)
    report(result)
    Path(p.output).write_text(json.dumps(asdict(result), indent=2))
    print(f"results written to {p.output}")
    return 0
