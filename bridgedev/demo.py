"""The ``dev`` command behind ``make run``: local brokers, a demo topic and stream, the bridge on them.

Starts nats-server and a Kafka-protocol broker (Tansu by default, Apache Kafka with
``--broker kafka``) on free loopback ports, creates the topic ``demo`` (3 partitions) with sample
records and the stream ``DEMO`` (subjects ``kafka.>``), then runs the bridge in continuous mode
with ``configs/local.yaml`` while a producer adds a record a second and every message arriving in
the stream is printed. The bridge serves ``/metrics``, ``/ping`` and ``/ready`` as ``run`` does, at the
config's ``http.address`` (``$HTTP_ADDRESS``, default 127.0.0.1:4195), and the demo prints where.
Ctrl-C stops the bridge gracefully (acks, commit), then the brokers, by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from typing import Any

import nats
from aiokafka import AIOKafkaProducer
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from bridge.core import config as config_mod
from bridge.core.errors import ConfigError, ExitCode, HttpServerError
from bridge.ops import http as http_mod
from bridge.ops import log as log_mod
from bridge.run.modes import Continuous
from bridge.run.pipeline import Pipeline
from bridgedev.brokers import ApacheKafka, NatsServer, Tansu, create_topic

TOPIC = "demo"
STREAM = "DEMO"
SUBJECTS = ["kafka.>"]


def _sample(i: int) -> tuple[bytes, bytes | None, list[tuple[str, bytes]]]:
    key = f"customer-{i % 7}".encode()
    if i % 10 == 9:
        return key, None, [("source", b"demo")]  # a tombstone every tenth record
    value = json.dumps({"order": i, "amount": round(10 + i * 1.5, 2), "at": time.time()}).encode()
    return key, value, [("source", b"demo"), ("trace-id", f"t{i:05d}".encode())]


async def _prepare(bootstrap: str, nats_url: str, records: int) -> None:
    await create_topic(bootstrap, TOPIC, 3)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(records):
            key, value, headers = _sample(i)
            await producer.send(TOPIC, value, key=key, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()
    nc = await nats.connect(nats_url)
    try:
        stream = StreamConfig(name=STREAM, subjects=SUBJECTS, duplicate_window=120)
        await nc.jetstream().add_stream(stream)
    finally:
        await nc.close()
    print(
        f"demo: topic {TOPIC!r} with {records} records on {bootstrap}; "
        f"stream {STREAM} ({SUBJECTS[0]}) on {nats_url}"
    )


async def _produce_forever(bootstrap: str, start: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        i = start
        while True:
            await asyncio.sleep(1.0)
            key, value, headers = _sample(i)
            await producer.send_and_wait(TOPIC, value, key=key, headers=headers)
            i += 1
    finally:
        await producer.stop()


async def _watch(nats_url: str) -> Any:
    nc = await nats.connect(nats_url, name="demo-watcher")

    async def show(msg: Msg) -> None:
        h = msg.headers or {}
        body = msg.data.decode(errors="replace") if msg.data else "<tombstone>"
        print(
            f"  {msg.subject}  partition={h.get('kafka_partition')} offset={h.get('kafka_offset')} "
            f"key={h.get('kafka_key')} msg-id={h.get('Nats-Msg-Id')}  {body[:80]}",
            flush=True,
        )

    await nc.subscribe(SUBJECTS[0], cb=show)
    return nc


async def _dev(loaded: config_mod.Loaded, bootstrap: str, nats_url: str, records: int) -> int:
    await _prepare(bootstrap, nats_url, records)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None

    def on_signal() -> None:
        if stop.is_set():
            main_task.cancel()  # second Ctrl-C: skip the graceful part, brokers still get stopped
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    pipeline = Pipeline(loaded, Continuous())
    async with contextlib.AsyncExitStack() as stack:
        try:
            server = await stack.enter_async_context(
                http_mod.serving(loaded.config.http, pipeline, "continuous")
            )
        except HttpServerError as exc:
            print(f"demo: {exc} (here: HTTP_ADDRESS=127.0.0.1:<port> make run)", file=sys.stderr)
            return int(exc.exit_code)
        watcher = await _watch(nats_url)
        stack.push_async_callback(watcher.close)
        producer = asyncio.create_task(_produce_forever(bootstrap, records))
        if server is not None:
            host = loaded.config.http.address.rpartition(":")[0].strip("[]")
            base = f"http://{host if host not in ('', '0.0.0.0', '::') else '127.0.0.1'}:{server.port}"
            print(f"demo: metrics at {base}/metrics (also {base}/ready, {base}/ping)", flush=True)
        print(
            "demo: bridge running; records arriving in JetStream are printed below. Ctrl-C stops everything.",
            flush=True,
        )
        try:
            result = await pipeline.run(stop)
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
    print(
        f"demo: stopped after {result.records} records "
        f"({result.stats.duplicates} duplicates dropped by JetStream)"
    )
    return int(result.exit_code)


def cmd_dev(broker: str, config_path: str, records: int) -> int:
    # configs/local.yaml's 2 s session timeout: below Apache Kafka's default minimum (6 s)
    kafka: ApacheKafka | Tansu = (
        Tansu()
        if broker == "tansu"
        else ApacheKafka(extra_properties={"group.min.session.timeout.ms": "1000"})
    )
    print(f"demo: starting nats-server and {broker} on 127.0.0.1 ...", flush=True)
    with NatsServer(name="dev-nats") as nats_server, kafka:
        os.environ["KAFKA_BROKERS"] = kafka.bootstrap
        os.environ["NATS_URL"] = nats_server.url
        try:
            loaded = config_mod.load(config_path)
        except ConfigError as exc:
            for problem in exc.problems:
                sys.stderr.write(f"{config_path}:{problem.line}: {problem.path}: {problem.message}\n")
            return int(ExitCode.CONFIG)
        log_mod.setup(loaded.config.logger.level)
        try:
            return asyncio.run(_dev(loaded, kafka.bootstrap, nats_server.url, records))
        except (KeyboardInterrupt, asyncio.CancelledError):
            return int(ExitCode.INTERRUPTED)
        finally:
            print("demo: stopping brokers", flush=True)
