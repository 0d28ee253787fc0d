"""``--workers N`` through the CLI: a backfill prints one merged summary; explicit partitions (no group to
share them) are split between the workers instead of each reading them all; a worker that dies stops the
others and the supervisor exits with its code."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.conftest import Kafka
from tests.support import (
    BridgeProcess,
    create_stream,
    create_topic,
    eventually,
    produce,
    read_stream,
    run_cli,
    sample_records,
    stream_count,
    write_config,
)

pytestmark = pytest.mark.integration


async def test_backfill_workers_print_one_summary(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 4)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    await produce(kafka.bootstrap, topic, sample_records(4, 25))
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.w")  # fmt: skip
    done = run_cli("backfill", str(cfg), "--workers", "2", timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("backfill: 100 records") == 1, done.stdout
    rows = [line for line in done.stdout.splitlines() if f"{topic}/" in line]
    assert len(rows) == 4, done.stdout
    assert "{" not in done.stdout  # the workers' JSON is merged, not shown


async def test_explicit_partitions_are_split_between_workers(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """No consumer group: nothing shares the partitions but the workers themselves (before: each worker
    read all of them, and every record was published twice, the copies dropped by the duplicate window)."""
    topic, stream, prefix = names["topic"], names["stream"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 4)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    await produce(kafka.bootstrap, topic, sample_records(4, 25))
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[f"{topic}:0-3"], group=None,
                       nats_url=nats_url, subject=f"{prefix}.w")  # fmt: skip
    done = run_cli("backfill", str(cfg), "--json", "--workers", "2", timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("{") :])
    assert [(p["partition"], p["records"], p["duplicates"]) for p in report["partitions"]] == [
        (p, 25, 0) for p in range(4)
    ]
    with BridgeProcess("run", str(cfg), "--workers", "2", log_dir=workdir) as bridge:

        async def both_assigned() -> list[list[str]]:
            assigned = [e["partitions"] for e in bridge.events("partitions_assigned")]
            assert len(assigned) == 2, bridge.logs()[-2000:]
            return assigned

        assigned = await eventually(both_assigned, within=60)
        assert sorted(p for ps in assigned for p in ps) == [f"{topic}/{p}" for p in range(4)]
        assert bridge.stop(timeout=40) == 0, bridge.logs()[-3000:]
    assert await stream_count(nats_url, stream) == 100
    ids = [m.headers["Nats-Msg-Id"] for m in await read_stream(nats_url, stream)]
    assert len(ids) == len(set(ids)) == 100


async def test_a_killed_worker_stops_the_others(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 2)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.w")  # fmt: skip
    with BridgeProcess("run", str(cfg), "--workers", "2", log_dir=workdir) as bridge:

        async def two_workers() -> list[int]:
            children = psutil.Process(bridge.pid).children()
            assert len(children) == 2, bridge.logs()[-2000:]
            assert len(bridge.events("run_started")) == 2, bridge.logs()[-2000:]
            return [c.pid for c in children]

        victim, survivor = await eventually(two_workers, within=60)
        os.kill(victim, signal.SIGKILL)
        assert bridge.wait(timeout=60) == 128 + signal.SIGKILL, bridge.logs()[-3000:]
        assert not psutil.pid_exists(survivor) or psutil.Process(survivor).status() == psutil.STATUS_ZOMBIE
    (exited,) = bridge.events("worker_exited")
    assert exited["exit_code"] == -signal.SIGKILL


async def test_a_backfill_worker_without_partitions_ends(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """Four workers, three partitions: the fourth has nothing to copy and ends (it used to wait forever)."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 3)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    await produce(kafka.bootstrap, topic, sample_records(3, 10))
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.w")  # fmt: skip
    done = run_cli("backfill", str(cfg), "--json", "--workers", "4", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout[done.stdout.index("{") :])
    assert report["records"] == 30
    assert report["workers"] == 4


async def test_a_backfill_whose_topic_pattern_matches_nothing_says_so(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[names["topic"] + "-nothing-.*"],
                       group=names["group"], nats_url=nats_url, subject=f"{names['prefix']}.w",
                       extra_input={"regexp_topics": True})  # fmt: skip
    done = run_cli("backfill", str(cfg), timeout=120)
    assert done.returncode == 3, done.stderr[-3000:]
    assert f"has no topic matching '{names['topic']}-nothing-.*'" in done.stderr + done.stdout
