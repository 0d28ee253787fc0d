"""Stream provisioning against a real nats-server: ``streams ensure`` and ``bridge.stream.ensure`` at start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nats
import pytest

from bridgedev import brokers as devenv
from tests.conftest import Kafka
from tests.integration.ops_support import get, ops_config
from tests.support import (
    BridgeProcess,
    create_topic,
    eventually,
    produce,
    run_cli,
    sample_records,
    stream_count,
    write_config,
)

pytestmark = pytest.mark.integration

NS = 1_000_000_000


async def info(url: str, name: str) -> dict[str, Any]:
    nc = await nats.connect(url)
    try:
        msg = await nc.request(f"$JS.API.STREAM.INFO.{name}", b"", timeout=5)
    finally:
        await nc.close()
    answer: dict[str, Any] = json.loads(msg.data)
    return answer


async def set_config(url: str, name: str, **changes: Any) -> None:
    """Change the stream behind the bridge's back, as an operator would."""
    current = (await info(url, name))["config"]
    nc = await nats.connect(url)
    try:
        msg = await nc.request(
            f"$JS.API.STREAM.UPDATE.{name}", json.dumps({**current, **changes}).encode(), 5
        )
        assert "error" not in json.loads(msg.data), msg.data
    finally:
        await nc.close()


def config(path: Path, nats_url: str, names: dict, stream: dict[str, Any], **kwargs: Any) -> Path:
    return write_config(
        path, brokers="127.0.0.1:1", topics=["t"], group="g", nats_url=nats_url,
        subject=names["prefix"] + '.${! meta("kafka_topic") }',
        bridge={"stream": {"name": names["stream"], **stream}, **kwargs},
    )  # fmt: skip


async def test_ensure_creates_then_updates_only_what_the_config_says(
    nats_url: str, names: dict, workdir: Path
) -> None:
    stream, prefix = names["stream"], names["prefix"]
    dlq = f"dlq.{prefix.split('.')[1]}"
    spec = {"storage": "memory", "duplicate_window": "10m", "max_age": "1h", "max_msgs": 1000}
    cfg = config(workdir / "c.yaml", nats_url, names, spec, dead_letter={"subject": dlq + ".dead"})

    created = run_cli("streams", "ensure", "-c", str(cfg))
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines()[0] == f"stream {stream} created (subjects {prefix}.>, {dlq}.dead)"
    cur = (await info(nats_url, stream))["config"]
    assert cur["subjects"] == [f"{prefix}.>", f"{dlq}.dead"]
    assert (cur["storage"], cur["num_replicas"], cur["duplicate_window"]) == ("memory", 1, 600 * NS)
    assert (cur["max_age"], cur["max_msgs"], cur["max_bytes"]) == (3600 * NS, 1000, -1)
    assert cur["allow_direct"] is True

    again = run_cli("streams", "ensure", "-c", str(cfg))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"stream {stream} unchanged (subjects {prefix}.>, {dlq}.dead)"

    # An operator adds a subject and a per-subject limit; the config then changes two fields.
    await set_config(
        nats_url, stream, subjects=[f"{prefix}.>", f"{dlq}.dead", "audit.>"], max_msgs_per_subject=50
    )
    spec.update(duplicate_window="20m", max_bytes="10MiB")
    cfg = config(workdir / "c.yaml", nats_url, names, spec, dead_letter={"subject": dlq + ".dead"})
    updated = run_cli("streams", "ensure", "-c", str(cfg))
    assert updated.returncode == 0, updated.stderr
    lines = updated.stdout.splitlines()
    assert lines[0].startswith(f"stream {stream} updated")
    assert sorted(line.strip() for line in lines[1:]) == [
        "duplicate_window: 600s → 1200s",
        "max_bytes: -1 (no limit) → 10485760 (10 MiB)",
    ]
    cur = (await info(nats_url, stream))["config"]
    assert cur["duplicate_window"] == 1200 * NS
    assert cur["max_bytes"] == 10 * 1024 * 1024
    assert cur["max_msgs"] == 1000
    assert cur["max_msgs_per_subject"] == 50  # not in the config: left as the operator set it
    assert "audit.>" in cur["subjects"]  # derived subjects are added, never removed

    # What JetStream cannot change is reported with its reason, exit 1.
    spec["storage"] = "file"
    cfg = config(workdir / "c.yaml", nats_url, names, spec, dead_letter={"subject": dlq + ".dead"})
    refused = run_cli("streams", "ensure", "-c", str(cfg))
    assert refused.returncode == 1, refused.stdout
    assert f"stream {stream}: JetStream error" in refused.stderr
    assert "storage" in refused.stderr.lower()


async def test_explicit_subjects_replace_the_streams(nats_url: str, names: dict, workdir: Path) -> None:
    stream, prefix = names["stream"], names["prefix"]
    cfg = config(workdir / "c.yaml", nats_url, names, {"subjects": [f"{prefix}.a.>"]})
    assert run_cli("streams", "ensure", "-c", str(cfg)).returncode == 0
    cfg = config(workdir / "c.yaml", nats_url, names, {"subjects": [f"{prefix}.>"]})
    done = run_cli("streams", "ensure", "-c", str(cfg))
    assert done.returncode == 0, done.stderr
    assert f'subjects: ["{prefix}.a.>"] → ["{prefix}.>"]' in done.stdout
    assert (await info(nats_url, stream))["config"]["subjects"] == [f"{prefix}.>"]


async def test_ensure_failures_exit_codes(names: dict, workdir: Path) -> None:
    with devenv.NatsServer(name="no-js", jetstream=False) as plain:
        cfg = config(workdir / "c.yaml", plain.url, names, {})
        done = run_cli("streams", "ensure", "-c", str(cfg))
        assert done.returncode == 1, done.stderr
        assert "JetStream is not enabled" in done.stderr
    unreachable = config(workdir / "u.yaml", f"nats://127.0.0.1:{devenv.free_port()}", names, {})
    done = run_cli("streams", "ensure", "-c", str(unreachable))
    assert done.returncode == 3, done.stderr
    assert "unreachable" in done.stderr
    no_section = write_config(workdir / "n.yaml", brokers="127.0.0.1:1", topics=["t"], group="g",
                              nats_url="nats://127.0.0.1:1", subject="s")  # fmt: skip
    done = run_cli("streams", "ensure", "-c", str(no_section))
    assert done.returncode == 2
    assert "bridge.stream" in done.stderr


@pytest.mark.parametrize("kafka", ["tansu"], indirect=True)
async def test_backfill_provisions_its_stream_first_and_waits_for_nats(
    kafka: Kafka, names: dict, workdir: Path
) -> None:
    topic, stream = names["topic"], names["stream"]
    await create_topic(kafka.bootstrap, topic, 2)
    records = sample_records(2, 15)
    await produce(kafka.bootstrap, topic, records)
    nats_server = devenv.NatsServer(name="late-nats")  # not started yet
    try:
        cfg, base = ops_config(
            workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=names["group"],
            nats_url=nats_server.url, subject=names["prefix"] + '.${! meta("kafka_partition") }',
            extra_output={"max_reconnects": -1}, bridge={"stream": {"name": stream, "duplicate_window": "5m"}},
        )  # fmt: skip
        with BridgeProcess("backfill", "-c", str(cfg), "--json", log_dir=workdir) as bridge:

            async def waiting() -> None:
                assert bridge.events("retrying")  # an attempt found no server; the policy waits
                assert await get(base + "/ping") == (200, "pong")  # served while provisioning waits
                status, body = await get(base + "/ready")
                assert status == 503
                assert json.loads(body)["failing"][0] == "nats_connected"

            await eventually(waiting, within=20)
            nats_server.start()
            assert bridge.wait(60) == 0, bridge.logs()[-3000:]
        assert bridge.events("stream_ensured")[0]["action"] == "created"
        assert await stream_count(nats_server.url, stream) == len(records)
        assert (await info(nats_server.url, stream))["config"]["duplicate_window"] == 300 * NS
    finally:
        nats_server.stop()
