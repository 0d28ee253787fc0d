"""A record header name that is not UTF-8 (Kafka allows any bytes; aiokafka decodes names as UTF-8 and
cannot parse the batch): ``backfill``, ``run`` and ``verify`` stop with a message naming the partition and
the batch, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import KAFKA_PARAMS, Kafka
from tests.support import BridgeProcess, create_stream, create_topic, run_cli, write_config

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("kafka", KAFKA_PARAMS[:1], indirect=True)]

# aiokafka's pure-Python encoder calls str.encode on a header name: a str whose encode gives other bytes
# sends a name no UTF-8 decoder reads (as franz-go or librdkafka can send)
PRODUCE = """
import asyncio, sys
from aiokafka import AIOKafkaProducer

class Raw(str):
    def encode(self, *args, **kwargs):
        return b"\\xff\\xfeevil"

async def main():
    producer = AIOKafkaProducer(bootstrap_servers=sys.argv[1])
    await producer.start()
    try:
        await producer.send_and_wait(sys.argv[2], b"bad", partition=0, headers=[(Raw("x"), b"v")])
    finally:
        await producer.stop()

asyncio.run(main())
"""


async def test_a_header_name_that_is_not_utf8_stops_with_its_partition_named(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    env = {**os.environ, "AIOKAFKA_NO_EXTENSIONS": "1"}
    subprocess.run(  # noqa: ASYNC221 - a one-off producer process, before the bridge starts
        [sys.executable, "-c", PRODUCE, kafka.bootstrap, topic], check=True, env=env, timeout=60
    )
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.data")  # fmt: skip
    said = f"a record in the batch of {topic}/0 at offset 0 cannot be read: a record header name that is not UTF-8"
    for command in ("backfill", "verify"):
        done = run_cli(command, str(cfg), timeout=120)
        assert done.returncode == 1, (command, done.stdout[-2000:], done.stderr[-2000:])
        assert said in done.stdout + done.stderr, (command, done.stdout[-2000:], done.stderr[-2000:])
        assert "Traceback" not in done.stdout + done.stderr
    with BridgeProcess("run", str(cfg), log_dir=workdir) as bridge:
        assert bridge.wait(timeout=60) == 1
    assert said in bridge.logs()
    assert "Traceback" not in bridge.logs()
