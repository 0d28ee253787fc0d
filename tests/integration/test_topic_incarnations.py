"""A topic deleted and created again under the bridge, and topics the bridge must never create.

Apache Kafka restarts a recreated topic's offsets at 0 and gives it a new topic ID. The default
``Nats-Msg-Id`` is ``<topic ID>:<topic>-<partition>-<offset>``, so the new records are stored rather than
dropped as duplicates of the old ones; where the bridge cannot tell which topic a record came from (the
topic was swapped while it held the partition), it stops loudly (exit 1, naming the partition) and
commits nothing of the new topic, and the next run stores it. Every test drives the real CLI with a
YAML config against Apache Kafka 4.4 and nats-server.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from bridge.core.routing import parse_record_id, record_id
from bridge.kafka import protocol
from tests.conftest import KAFKA_PARAMS, Kafka
from tests.support import (
    BridgeProcess,
    Record,
    committed_offsets,
    create_stream,
    create_topic,
    eventually,
    produce,
    read_stream,
    run_cli,
    stream_count,
    topic_id,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("kafka", KAFKA_PARAMS[:1], indirect=True)]

FAST_METADATA = {"metadata_max_age": "200ms"}  # aiokafka refreshes metadata this often (the default is 5m)


async def topic_exists(bootstrap: str, topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return topic in await admin.list_topics()
    finally:
        await admin.close()


async def delete_topic(bootstrap: str, topic: str) -> None:
    """Delete ``topic`` and wait until the broker no longer lists it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()

    async def gone() -> None:
        assert not await topic_exists(bootstrap, topic)

    await eventually(gone, within=30)


async def stays_absent(bootstrap: str, topic: str, seconds: float) -> None:
    """``topic`` does not come to exist during ``seconds`` (a negative property needs a window: with the
    bridge's metadata refreshed every 200 ms, that is many chances for it to create the topic)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while loop.time() < until:
        assert not await topic_exists(bootstrap, topic), f"{topic} was created"
        await asyncio.sleep(0.2)


def values(prefix: str, n: int) -> list[Record]:
    return [Record(0, f"k{i}".encode(), f"{prefix}-{i}".encode()) for i in range(n)]


def by_value(stored: list, topic: str) -> dict[bytes, list[tuple[str, int]]]:
    """payload → [(topic ID, offset)] of every stored copy of it."""
    out: dict[bytes, list[tuple[str, int]]] = {}
    for m in stored:
        parsed = parse_record_id(m.headers["Nats-Msg-Id"])
        assert parsed is not None, m.headers
        assert parsed[1] == topic, m.headers
        out.setdefault(m.data, []).append((parsed[0], parsed[3]))
    return out


async def test_the_bridge_never_creates_a_topic(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """A named topic that does not exist stays absent while ``run`` waits for it, and ``backfill`` refuses
    it (exit 3) without creating it, although the broker allows auto-creation."""
    topic, stream, prefix = names["topic"], names["stream"], names["prefix"]
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=names["group"],
                       nats_url=nats_url, subject=f"{prefix}.x", extra_input=FAST_METADATA)  # fmt: skip
    done = run_cli("backfill", "-c", str(cfg), "--json")
    assert done.returncode == 3, done.stderr[-2000:]
    assert repr(topic) in done.stderr
    assert not await topic_exists(kafka.bootstrap, topic)

    with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:

        async def waiting() -> None:
            assert bridge.events("topic_not_found"), bridge.logs()[-2000:]

        await eventually(waiting, within=30)
        await stays_absent(kafka.bootstrap, topic, 3.0)
        assert bridge.stop(timeout=40) == 0, bridge.logs()[-2000:]


async def test_a_recreated_topic_is_stored_not_dropped_as_duplicates(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """Deleted under a running bridge: the bridge lets go of it (and does not create it again); created
    again with new records at offsets 0..9, the same offsets as the old records: all stored, with the new
    topic ID in their ``Nats-Msg-Id``, committed for the new topic, the run going on."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(kafka.bootstrap, topic, values("old", 20))
    old_id = await topic_id(kafka.bootstrap, topic)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.x", extra_input=FAST_METADATA)  # fmt: skip
    with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:

        async def old_done() -> None:
            assert await stream_count(nats_url, stream) == 20
            assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 20}

        await eventually(old_done, within=60)
        await delete_topic(kafka.bootstrap, topic)

        async def let_go() -> None:
            assert any(topic + "/0" in e.get("partitions", []) for e in bridge.events("partitions_revoked"))

        await eventually(let_go, within=30)
        await stays_absent(kafka.bootstrap, topic, 2.0)

        await create_topic(kafka.bootstrap, topic, 1)
        new_id = await topic_id(kafka.bootstrap, topic)
        assert new_id
        assert new_id != old_id
        await produce(kafka.bootstrap, topic, values("new", 10))

        async def new_done() -> None:
            assert await stream_count(nats_url, stream) == 30
            assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 10}

        await eventually(new_done, within=60)
        assert bridge.stop(timeout=40) == 0, bridge.logs()[-2000:]
    copies = by_value(await read_stream(nats_url, stream), topic)
    assert {v: copies[v] for v in (f"old-{i}".encode() for i in range(20))} == {
        f"old-{i}".encode(): [(old_id, i)] for i in range(20)
    }
    assert {v: copies[v] for v in (f"new-{i}".encode() for i in range(10))} == {
        f"new-{i}".encode(): [(new_id, i)] for i in range(10)
    }
    checked = run_cli("verify", "-c", str(cfg), "--stream", stream, "--json")
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
    verdict = json.loads(checked.stdout)
    assert (verdict["kafka_records"], verdict["stream_messages"], verdict["earlier"]) == (10, 10, 20)


@pytest.mark.parametrize("new_records", [5, 30], ids=["shorter", "longer"])
async def test_a_topic_swapped_while_the_bridge_holds_it_stops_the_run_and_the_next_run_stores_it(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path, new_records: int
) -> None:
    """The bridge is frozen (SIGSTOP) while the topic is deleted and created again, so it never sees the
    topic gone: it finds either offsets going back (the new log is shorter than its position) or, at its
    next commit, a new topic ID (longer: it may have published new records under the old ID). Either way
    it exits 1 naming the partition, commits nothing of the new topic, and the next run stores every
    new record once under the new topic ID."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(kafka.bootstrap, topic, values("old", 20))
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.x")  # fmt: skip
    with BridgeProcess("run", "-c", str(cfg), log_dir=workdir, name="first") as bridge:

        async def old_done() -> None:
            assert await stream_count(nats_url, stream) == 20
            assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 20}

        await eventually(old_done, within=60)
        bridge.signal(signal.SIGSTOP)
        try:
            await delete_topic(kafka.bootstrap, topic)
            await create_topic(kafka.bootstrap, topic, 1)
            await produce(kafka.bootstrap, topic, values("new", new_records))
        finally:
            bridge.signal(signal.SIGCONT)
        assert bridge.wait(timeout=60) == 1, bridge.logs()[-3000:]
        rewound = [(e["topic"], e["partition"]) for e in bridge.events("log_rewound")]
        assert rewound == [(topic, 0)], bridge.logs()[-3000:]
        assert f"partition {topic}/0" in bridge.logs()
    new_id = await topic_id(kafka.bootstrap, topic)
    assert await committed_offsets(kafka.bootstrap, group, topic) == {}, "nothing of the new topic committed"

    with BridgeProcess("run", "-c", str(cfg), log_dir=workdir, name="second") as again:

        async def new_done() -> None:
            assert await committed_offsets(kafka.bootstrap, group, topic) == {0: new_records}

        await eventually(new_done, within=60)
        assert again.stop(timeout=40) == 0, again.logs()[-2000:]
    copies = by_value(await read_stream(nats_url, stream), topic)
    for i in range(new_records):
        stored_as_new = [c for c in copies.get(f"new-{i}".encode(), []) if c[0] == new_id]
        assert stored_as_new == [(new_id, i)], (i, copies.get(f"new-{i}".encode()))


async def commit_with_metadata(bootstrap: str, group: str, topic: str, offset: int, metadata: str) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(offset, metadata)})
    finally:
        await consumer.stop()


async def test_a_commit_made_for_an_earlier_topic_of_the_same_name_is_not_a_start(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """A broker that keeps a deleted topic's committed offsets (Apache Kafka deletes them; not every
    broker does): the bridge's commits name the topic ID they were made for, so an offset committed for
    another topic ID is ignored and the partition starts where ``start_offset`` says."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(kafka.bootstrap, topic, values("new", 10))
    await commit_with_metadata(
        kafka.bootstrap, group, topic, 6, protocol.commit_metadata(protocol.topic_id_text(b"\x07" * 16))
    )
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.x")  # fmt: skip
    done = run_cli("backfill", "-c", str(cfg), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "commit_of_earlier_topic_ignored" in done.stderr
    stored = await read_stream(nats_url, stream)
    tid = await topic_id(kafka.bootstrap, topic)
    assert [m.headers["Nats-Msg-Id"] for m in stored] == [record_id(tid, topic, 0, i) for i in range(10)]
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 10}


@pytest.mark.parametrize("start_offset", ["earliest", "committed"])
async def test_a_committed_offset_past_the_end_of_the_log_stops_the_run(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path, start_offset: str
) -> None:
    """The fallback where topic IDs cannot tell (a commit without one, a truncated log): the group's offset
    is past the end of the log, so the log is not the one it was committed for. The run stops (exit 1)
    naming the partition and how to reset the group's offset, publishes nothing and leaves the commit
    as it was."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(kafka.bootstrap, topic, values("v", 5))
    await commit_with_metadata(kafka.bootstrap, group, topic, 100, "")
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.x",
                       extra_input={"start_offset": start_offset})  # fmt: skip
    done = run_cli("backfill", "-c", str(cfg), "--json")
    assert done.returncode == 1, done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("{") :])
    assert f"partition {topic}/0" in report["error"], report["error"]
    assert f"the committed offset 100 of group {group!r} is past the end of the log" in report["error"]
    # what to do, since running again would meet the same commit
    assert (
        f"kafka-consumer-groups --reset-offsets --to-earliest --group {group} --topic {topic}:0"
        in (report["error"])
    )
    assert await stream_count(nats_url, stream) == 0
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 100}
