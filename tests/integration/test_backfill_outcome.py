"""``backfill`` exits 0 only when every record up to its end offsets was stored, acknowledged as a duplicate
or dead-lettered; otherwise it exits non-zero and its summary says, per partition, how many were not
delivered. A Kubernetes backfill Job must never report success for records that are not in the stream.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tests.conftest import KAFKA_PARAMS, Kafka
from tests.support import (
    BridgeProcess,
    Record,
    committed_offsets,
    create_stream,
    create_topic,
    eventually,
    produce,
    run_cli,
    stream_count,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("kafka", KAFKA_PARAMS[:1], indirect=True)]

QUICK_FAILURE = {"ack_timeout": "1s", "retry_timeout": "3s"}


def report(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{") :])


async def test_backfill_with_no_stream_for_the_subject_fails_and_counts_what_was_not_delivered(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic, group, prefix = names["topic"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 2)
    await produce(
        kafka.bootstrap, topic, [Record(p, b"k", f"v{i}".encode()) for i in range(5) for p in (0, 1)]
    )
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.nostream", bridge=QUICK_FAILURE)  # fmt: skip
    done = run_cli("backfill", "-c", str(cfg), "--json", timeout=90)
    assert done.returncode == 1, done.stderr[-3000:]
    summary = report(done.stdout)
    assert summary["exit_code"] == 1
    assert summary["records"] == 0
    assert [(p["partition"], p["undelivered"]) for p in summary["partitions"]] == [(0, 5), (1, 5)]
    assert "no JetStream stream" in summary["error"], summary["error"]
    assert await committed_offsets(kafka.bootstrap, group, topic) == {}

    table = run_cli("backfill", "-c", str(cfg), timeout=90)  # the table says the same
    assert table.returncode == 1
    assert "undelivered" in table.stdout
    assert "FAILED" in table.stdout


async def test_backfill_stopped_by_a_signal_before_its_end_is_not_a_success(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """SIGTERM while the stream cannot store (its subject has no stream yet): the backfill commits what
    was acknowledged (nothing), exits 1 and says what was not delivered."""
    topic, group, prefix, stream = names["topic"], names["group"], names["prefix"], names["stream"]
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(kafka.bootstrap, topic, [Record(0, b"k", f"v{i}".encode()) for i in range(20)])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.later",
                       bridge={"ack_timeout": "1s", "retry_timeout": "0s"})  # fmt: skip
    with BridgeProcess("backfill", "-c", str(cfg), "--json", log_dir=workdir) as bridge:

        async def retrying() -> None:
            assert bridge.events("lane_halted"), bridge.logs()[-2000:]

        await eventually(retrying, within=30)
        bridge.signal(signal.SIGTERM)
        assert bridge.wait(timeout=40) == 1, bridge.logs()[-2000:]
        summary = report(bridge.stdout_path.read_text())
    assert [(p["partition"], p["undelivered"]) for p in summary["partitions"]] == [(0, 20)]
    assert "backfill incomplete" in summary["error"]

    await create_stream(nats_url, stream, [f"{prefix}.>"])  # the same backfill once the stream exists
    done = run_cli("backfill", "-c", str(cfg), "--json", timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [(p["partition"], p["undelivered"]) for p in report(done.stdout)["partitions"]] == [(0, 0)]

    async def stored() -> None:
        assert await stream_count(nats_url, stream) == 20

    await eventually(stored, within=10)
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 20}


async def test_backfill_read_committed_ends_when_an_open_transaction_is_aborted(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """``read_committed`` with a transaction open at start: the end offsets include its records, which
    are never handed out once it is aborted. The backfill steps over them (and the abort marker) and
    ends with everything delivered, instead of waiting for ever."""
    topic, group, prefix, stream = names["topic"], names["group"], names["prefix"], names["stream"]
    await create_topic(kafka.bootstrap, topic, 1)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    await produce(kafka.bootstrap, topic, [Record(0, b"k", f"v{i}".encode()) for i in range(10)])
    txn = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=f"txn-{topic}")
    await txn.start()
    try:
        await txn.begin_transaction()
        for i in range(5):
            await txn.send_and_wait(topic, f"aborted{i}".encode(), partition=0)
        cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                           nats_url=nats_url, subject=f"{prefix}.data",
                           extra_input={"transaction_isolation_level": "read_committed"})  # fmt: skip
        with BridgeProcess("backfill", "-c", str(cfg), "--json", log_dir=workdir) as bridge:

            async def committed_ones() -> None:
                assert await stream_count(nats_url, stream) == 10

            await eventually(committed_ones, within=60)
            await txn.abort_transaction()
            assert bridge.wait(timeout=60) == 0, bridge.logs()[-3000:]
            summary = report(bridge.stdout_path.read_text())
    finally:
        await txn.stop()
    assert summary["records"] == 10
    assert [(p["partition"], p["undelivered"]) for p in summary["partitions"]] == [(0, 0)]
    assert await stream_count(nats_url, stream) == 10
    assert (await committed_offsets(kafka.bootstrap, group, topic))[0] >= 15


async def group_state(bootstrap: str, group: str) -> tuple[str, int]:
    """(state, members) of a consumer group, from its coordinator."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        (entry,) = response.groups
        return entry[2], len(entry[5])
    finally:
        await admin.close()


async def test_backfill_reads_without_joining_its_group_and_commits_to_it(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """A backfill knows its partitions and end offsets up front: it reads them without a group join (its
    first record is read in a fetch's time, not a rebalance's), starts from the group's committed
    offsets and commits to the group, which stays without members all along."""
    topic, group, prefix, stream = names["topic"], names["group"], names["prefix"], names["stream"]
    await create_topic(kafka.bootstrap, topic, 3)
    await produce(
        kafka.bootstrap, topic, [Record(p, b"k", f"v{i}".encode()) for i in range(10) for p in range(3)]
    )
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.data", bridge={"ack_timeout": "1s"})  # fmt: skip
    with BridgeProcess("backfill", "-c", str(cfg), "--json", log_dir=workdir) as bridge:

        async def reading() -> None:  # no stream yet: the records wait, the backfill is mid-way
            assert bridge.events("lane_halted"), bridge.logs()[-2000:]

        await eventually(reading, within=30)
        assert (await group_state(kafka.bootstrap, group))[1] == 0  # nobody joined the group
        await create_stream(nats_url, stream, [f"{prefix}.>"])
        assert bridge.wait(timeout=60) == 0, bridge.logs()[-3000:]
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 10, 1: 10, 2: 10}
    assert not bridge.events("partitions_revoked")


async def test_backfill_refuses_a_group_with_members(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """A `run` holds the group: a backfill in it would commit the partitions the run holds, so it stops
    before reading (exit 1), naming the group."""
    topic, group, prefix, stream = names["topic"], names["group"], names["prefix"], names["stream"]
    await create_topic(kafka.bootstrap, topic, 1)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.data")  # fmt: skip
    with BridgeProcess("run", "-c", str(cfg), log_dir=workdir, name="run") as run:

        async def member() -> None:
            assert run.events("partitions_assigned"), run.logs()[-2000:]

        await eventually(member, within=60)
        await produce(kafka.bootstrap, topic, [Record(0, b"k", b"v")])
        done = run_cli("backfill", "-c", str(cfg), "--json", timeout=60)
        assert done.returncode == 1, done.stderr[-3000:]
        assert f"consumer group {group!r} has 1 active member(s)" in report(done.stdout)["error"]
        assert run.stop(timeout=40) == 0


async def test_a_member_joining_during_the_backfill_makes_its_commits_refused(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """A `run` joins the group while the backfill runs: the broker refuses the backfill's commits (they
    would move the run's partitions), and the backfill says so (exit 1) instead of reporting success."""
    topic, group, prefix, stream = names["topic"], names["group"], names["prefix"], names["stream"]
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(kafka.bootstrap, topic, [Record(0, b"k", f"v{i}".encode()) for i in range(10)])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.data", bridge={"ack_timeout": "1s"})  # fmt: skip
    with BridgeProcess("backfill", "-c", str(cfg), "--json", log_dir=workdir, name="backfill") as backfill:

        async def reading() -> None:
            assert backfill.events("lane_halted"), backfill.logs()[-2000:]

        await eventually(reading, within=30)
        with BridgeProcess("run", "-c", str(cfg), log_dir=workdir, name="run") as run:

            async def member() -> None:
                assert (await group_state(kafka.bootstrap, group))[1] == 1

            await eventually(member, within=60)
            await create_stream(nats_url, stream, [f"{prefix}.>"])
            assert backfill.wait(timeout=60) == 1, backfill.logs()[-3000:]
            summary = report(backfill.stdout_path.read_text())
            assert "were refused: a member joined consumer group" in summary["error"]
            assert run.stop(timeout=40) == 0
    assert await stream_count(nats_url, stream) == 10  # stored once, whoever published it


async def test_a_backfill_from_a_timestamp_never_moves_the_group_over_records_nobody_copied(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """The group has committed 5 of 10 records; ``--from`` a time after all of them starts at the end: it
    copies nothing, and committing the end would make the next ``run`` skip records 5..9 for good. The
    group keeps 5, the summary says why, and the next backfill from the group's offsets copies them."""
    topic, group, prefix, stream = names["topic"], names["group"], names["prefix"], names["stream"]
    await create_topic(kafka.bootstrap, topic, 1)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.data")  # fmt: skip
    await produce(kafka.bootstrap, topic, [Record(0, b"k", f"v{i}".encode()) for i in range(5)])
    assert run_cli("backfill", str(cfg), "--json").returncode == 0
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 5}
    await produce(kafka.bootstrap, topic, [Record(0, b"k", f"v{i}".encode()) for i in range(5, 10)])

    future = run_cli("backfill", str(cfg), "--from", "2099-01-01T00:00:00Z")
    assert future.returncode == 0, future.stderr[-3000:]
    assert f"NOT COMMITTED: {topic}/0: the group's committed offset 5 is before where --from starts (10)" in (
        future.stdout
    ), future.stdout
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 5}

    past = run_cli("backfill", str(cfg), "--json", "--from", "1970-01-02T00:00:00Z")  # starts at 0 ≤ 5
    assert past.returncode == 0, past.stderr[-3000:]
    assert report(past.stdout)["partitions"][0]["commit_held"] is None
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 10}
    assert await stream_count(nats_url, stream) == 10
