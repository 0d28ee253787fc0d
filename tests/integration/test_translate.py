"""``translate``: a consumer group's committed offsets become stream sequences a JetStream consumer can
start at without skipping or repeating records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.conftest import Kafka
from tests.support import (
    Record,
    create_stream,
    create_topic,
    msg_ids,
    produce,
    read_stream,
    run_cli,
    write_config,
)  # fmt: skip

pytestmark = pytest.mark.integration


async def commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit offsets for ``group`` as its consumers would have (without joining it)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(topic, p): o for p, o in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


def translate(cfg: Path, group: str) -> tuple[int, dict[str, Any]]:
    done = run_cli("translate", "-c", str(cfg), "--group", group, "--json")
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return done.returncode, json.loads(done.stdout)


def records(partition: int, start: int, n: int) -> list[Record]:
    return [
        Record(partition, f"k{i}".encode(), f"p{partition}-{i}".encode()) for i in range(start, start + n)
    ]


async def test_committed_offsets_land_on_stream_sequences(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic, stream, prefix = names["topic"], names["stream"], names["prefix"]
    app = names["group"] + "-app"  # the consumers moving to JetStream
    await create_topic(kafka.bootstrap, topic, 3)
    await produce(kafka.bootstrap, topic, [r for p in range(3) for r in records(p, 0, 20)])
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    # Explicit partitions, no group (the bridge then commits nothing: quicker, and translate must judge
    # "caught up" from the stream alone); default metadata: Nats-Msg-Id only, which translate maps back.
    cfg = write_config(
        workdir / "c.yaml", brokers=kafka.bootstrap, topics=[f"{topic}:0-2"], group=None, nats_url=nats_url,
        subject=prefix + '.${! meta("kafka_partition") }',
    )  # fmt: skip
    assert run_cli("backfill", "-c", str(cfg)).returncode == 0
    stored = {m.seq: m for m in await read_stream(nats_url, stream)}
    last_seq = max(stored)

    await commit(kafka.bootstrap, app, topic, {0: 7, 1: 20})  # partition 2: never committed
    code, result = translate(cfg, app)
    assert code == 1  # partition 2 has no commit
    parts = {p["partition"]: p for p in result["partitions"]}
    assert parts[0]["status"] == "ok"
    assert parts[0]["offset"] == 7
    assert [stored[parts[0]["seq"]].headers["Nats-Msg-Id"]] == await msg_ids(kafka.bootstrap, topic, 0, [7])
    assert stored[parts[0]["seq"]].subject == parts[0]["subject"] == f"{prefix}.0"
    assert (parts[1]["status"], parts[1]["seq"]) == ("at-end", last_seq + 1)
    assert (parts[2]["status"], parts[2]["seq"]) == ("no-commit", None)

    await commit(kafka.bootstrap, app, topic, {2: 0})
    code, result = translate(cfg, app)
    assert code == 0, result
    parts = {p["partition"]: p for p in result["partitions"]}
    assert [stored[parts[2]["seq"]].headers["Nats-Msg-Id"]] == await msg_ids(kafka.bootstrap, topic, 2, [0])
    assert result["stream_start"] == min(p["seq"] for p in result["partitions"])

    # New records on partition 0 the app already consumed but the bridge has not copied yet.
    await produce(kafka.bootstrap, topic, records(0, 20, 5))
    await commit(kafka.bootstrap, app, topic, {0: 22})
    code, result = translate(cfg, app)
    assert code == 1
    assert {p["partition"]: p["status"] for p in result["partitions"]}[0] == "behind"

    assert run_cli("backfill", "-c", str(cfg)).returncode == 0  # the bridge catches up
    code, result = translate(cfg, app)
    assert code == 0, result
    landing = {p["partition"]: p for p in result["partitions"]}[0]
    stored = {m.seq: m for m in await read_stream(nats_url, stream)}
    assert [stored[landing["seq"]].headers["Nats-Msg-Id"]] == await msg_ids(kafka.bootstrap, topic, 0, [22])
    # Nothing of partition 0 below the landing sequence is at or past the committed offset: no skip, no repeat.
    before = [m for s, m in stored.items() if s < landing["seq"] and m.subject == f"{prefix}.0"]
    assert max(int(m.headers["Nats-Msg-Id"].rsplit("-", 1)[1]) for m in before) == 21

    text = run_cli("translate", "-c", str(cfg), "--group", app)
    assert (
        f"nats consumer add {stream} <name> --filter '{prefix}.0' --deliver {landing['seq']}" in text.stdout
    )


# --------------------------------------------------------------------------- subjects that mix partitions


@pytest.mark.parametrize(
    ("subject", "why"),
    [
        ('.${! json("type") }', "depends on more than the record's topic and partition"),
        ('.${! meta("kafka_partition") }.${! meta("kafka_key") }', "depends on kafka_key"),
        ('.${! @kafka_partition }.${! timestamp_unix() }', "depends on more than the record's topic and partition"),
    ],
)  # fmt: skip
def test_a_subject_that_spreads_a_partition_is_refused_before_connecting(
    names: dict, workdir: Path, subject: str, why: str
) -> None:
    """Issue 13: consumer commands filtered by subject would miss or mix records: refuse and say why."""
    cfg = write_config(workdir / "c.yaml", brokers="127.0.0.1:9", topics=["t"], group="g",
                       nats_url="nats://127.0.0.1:9", subject=names["prefix"] + subject)  # fmt: skip
    done = run_cli("translate", str(cfg), "--group", "app")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nats consumer add" not in done.stdout
    assert f"{cfg}:" in done.stderr
    assert "output.nats_jetstream.subject: the subject " in done.stderr
    assert why in done.stderr
    assert "give each partition its own subjects" in done.stderr


async def test_partitions_sharing_a_subject_are_refused(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic, stream, prefix = names["topic"], names["stream"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 3)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=names["group"],
                       nats_url=nats_url, subject=prefix + '.${! meta("kafka_topic") }')  # fmt: skip
    done = run_cli("translate", str(cfg), "--group", "app")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "nats consumer add" not in done.stdout
    assert (
        f"partitions {topic}/0, {topic}/1, {topic}/2 share the subject '{prefix}.{topic}': a consumer "
        "filtered to it would mix their records" in done.stderr
    )


@pytest.mark.parametrize(
    ("metadata", "named", "absent"),
    [
        ({}, "offset (the end of the Nats-Msg-Id header, <topic>-<partition>-<offset>)", "kafka_offset"),
        ({"metadata": {"include_prefixes": ["kafka_"]}}, "offset (the kafka_partition and kafka_offset headers)", "Nats-Msg-Id"),
    ],
)  # fmt: skip
async def test_the_whole_stream_hint_names_only_headers_the_config_sends(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path, metadata: dict, named: str, absent: str
) -> None:
    topic, stream, prefix = names["topic"], names["stream"], names["prefix"]
    app = names["group"] + "-app"
    await create_topic(kafka.bootstrap, topic, 2)
    await produce(kafka.bootstrap, topic, [r for p in range(2) for r in records(p, 0, 5)])
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[f"{topic}:0-1"], group=None,
                       nats_url=nats_url, subject=prefix + '.${! meta("kafka_partition") }',
                       extra_output=metadata)  # fmt: skip
    assert run_cli("backfill", str(cfg)).returncode == 0
    await commit(kafka.bootstrap, app, topic, {0: 2, 1: 3})
    done = run_cli("translate", str(cfg), "--group", app)
    assert done.returncode == 0, done.stdout + done.stderr
    (hint,) = [
        line for line in done.stdout.splitlines() if line.startswith("one consumer of the whole stream")
    ]
    assert named in hint
    assert absent not in hint
