"""Brokers of the fault suite, started per test or per session *here*, never the suite's shared ones:
these tests kill, pause and restart them.

- ``fault_kafka``: one Apache Kafka (the reference broker) per module, for the fault tests that leave
  Kafka alone; the Kafka-restart test starts its own with a persistent log directory.
- ``nats_server``: a fresh nats-server with its own store directory for each test.
- The terminal summary prints the results table of docs/faults.md (fault, records produced, faults
  injected, missing, duplicates stored, reorders, seconds); ``KJB_FAULTS_REPORT=path`` also writes it
  as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from bridgedev import brokers as devenv
from tests.faults.harness import RESULTS


@pytest.fixture(scope="module")
def fault_kafka() -> Iterator[devenv.ApacheKafka]:
    with devenv.ApacheKafka() as broker:
        yield broker


@pytest.fixture
def nats_server() -> Iterator[devenv.NatsServer]:
    with devenv.NatsServer(name="faults-nats") as server:
        yield server


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("fault suite results")
    tr.write_line(
        "| fault | records produced | faults injected | missing | duplicates stored | reorders | seconds | notes |"
    )
    tr.write_line("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in RESULTS:
        tr.write_line(
            f"| {r.fault} | {r.records:,} | {r.faults} | {r.missing} | {r.duplicates} | {r.reorders} "
            f"| {r.seconds:.1f} | {r.notes} |"
        )
    path = os.environ.get("KJB_FAULTS_REPORT")
    if path:
        with open(path, "w") as fh:
            json.dump([dataclasses.asdict(r) for r in RESULTS], fh, indent=2)
