"""Session-wide brokers for the suite, started once and stopped by pid at the end.

- ``nats_url``: a nats-server with JetStream (``NATS_URL`` points the suite at an external one).
- ``kafka``: parametrized over the two real Kafka-protocol implementations, Apache Kafka in KRaft
  mode (jars from Maven Central, cached outside the repo) and Tansu, so every test that takes it
  runs against both (``KAFKA_BOOTSTRAP`` points the suite at one external broker instead).

Tests share the brokers and isolate themselves with unique topic, stream and group names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridgedev import brokers as devenv
from tests.support import unique

KAFKA_PARAMS = ["external"] if os.environ.get("KAFKA_BOOTSTRAP") else ["kafka", "tansu"]


@dataclass(frozen=True)
class Kafka:
    name: str
    bootstrap: str


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    external = os.environ.get("NATS_URL")
    if external:
        yield external
        return
    with devenv.NatsServer(name="suite-nats") as server:
        yield server.url


@pytest.fixture(scope="session", params=KAFKA_PARAMS)
def kafka(request: pytest.FixtureRequest) -> Iterator[Kafka]:
    name = request.param
    if name == "external":
        yield Kafka("external", os.environ["KAFKA_BOOTSTRAP"])
        return
    broker: devenv.ApacheKafka | devenv.Tansu = devenv.ApacheKafka() if name == "kafka" else devenv.Tansu()
    with broker:
        yield Kafka(name, broker.bootstrap)


@pytest.fixture
def names() -> dict[str, str]:
    """Unique topic, stream, group and subject-prefix names for one test."""
    token = unique("t").split("-")[1]
    return {
        "topic": f"topic-{token}",
        "stream": f"S_{token}".upper(),
        "group": f"group-{token}",
        "prefix": f"sub.{token}",
    }


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
