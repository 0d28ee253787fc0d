"""One error translation per client library: the same refused connection reads the same in every command.

Nothing listens on a port; each command that connects there (``run``, ``backfill``, ``verify``,
``translate``, ``streams ensure``) fails with exit 3 and the very same message (``bridge.kafka.errors``,
``bridge.jetstream.errors``), whichever client it connected with (the pipeline's publisher or the admin
connection; the pipeline's source or the reader of verify and translate).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bridgedev.brokers import free_port
from tests.conftest import Kafka
from tests.support import run_cli, write_config

pytestmark = pytest.mark.integration


def config(path: Path, kafka: str, nats: str, names: dict[str, str]) -> Path:
    return write_config(
        path, brokers=kafka, topics=[names["topic"]], group=names["group"], nats_url=nats,
        subject=names["prefix"] + ".x", extra_output={"max_reconnects": 0},
        bridge={"stream": {"name": names["stream"], "ensure": False}},
    )  # fmt: skip # the config in the order it reads


def failure(command: tuple[str, ...]) -> str:
    """The error a failed command reports (the log's ``run_failed`` for run, its summary line otherwise)."""
    done = run_cli(*command, timeout=120)
    assert done.returncode == 3, (command, done.stdout[-2000:], done.stderr[-2000:])
    if command[0] == "run":
        events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
        (event,) = [e for e in events if e.get("event") == "run_failed"]
        return str(event["error"])
    if command[0] == "backfill":
        (line,) = [line for line in done.stdout.splitlines() if line.startswith("FAILED: ")]
        return line.removeprefix("FAILED: ")
    (line,) = [line for line in done.stderr.splitlines() if " failed: " in line]
    return line.split(" failed: ", 1)[1]


def commands(cfg: Path, group: str, *which: str) -> dict[str, tuple[str, ...]]:
    every = {
        "run": ("run", "-c", str(cfg)),
        "backfill": ("backfill", "-c", str(cfg), "--from", "earliest"),
        "verify": ("verify", "-c", str(cfg)),
        "translate": ("translate", "-c", str(cfg), "--group", group),
        "streams": ("streams", "ensure", "-c", str(cfg)),
    }
    return {name: every[name] for name in which}


@pytest.mark.parametrize("kafka", ["tansu"], indirect=True)
def test_nats_refused_reads_the_same_in_every_command(kafka: Kafka, names: dict, workdir: Path) -> None:
    port = free_port()  # nothing listens there
    cfg = config(workdir / "nats-refused.yaml", kafka.bootstrap, f"nats://127.0.0.1:{port}", names)
    said = {
        name: failure(command)
        for name, command in commands(
            cfg, names["group"], "run", "backfill", "verify", "translate", "streams"
        ).items()
    }
    assert len(set(said.values())) == 1, said
    assert re.match(rf"NATS \(nats://127\.0\.0\.1:{port}\) unreachable: ", said["run"]), said


def test_kafka_refused_reads_the_same_in_every_command(nats_url: str, names: dict, workdir: Path) -> None:
    port = free_port()  # nothing listens there
    cfg = config(workdir / "kafka-refused.yaml", f"127.0.0.1:{port}", nats_url, names)
    said = {
        name: failure(command)
        for name, command in commands(cfg, names["group"], "run", "backfill", "verify", "translate").items()
    }
    assert len(set(said.values())) == 1, said
    assert re.match(rf"Kafka \(127\.0\.0\.1:{port}\) unreachable: ", said["run"]), said
