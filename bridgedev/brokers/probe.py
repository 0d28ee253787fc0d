"""The Kafka wire probe: one ApiVersions v0 and one non-flexible Metadata request (v1..v8) on a blocking
socket, so a broker's readiness can be polled from CLI code, fixtures and a running event loop alike,
with no client library. The answer also names each partition's leader, replicas and in-sync replicas
(``KafkaCluster`` finds a partition's leader with it).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KafkaMetadata", "PartitionMetadata", "kafka_metadata_probe"]


class _KafkaProbeError(ValueError):
    """The broker answered, but not with something the probe can use (yet)."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return bytes(buf)


def _kafka_call(sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    client_id = b"kjb-devenv-probe"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    message = header + body
    sock.sendall(struct.pack(">i", len(message)) + message)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    if not 4 <= size <= 16 * 1024 * 1024:
        raise _KafkaProbeError(f"implausible response size {size}: not a Kafka broker?")
    payload = _recv_exact(sock, size)
    (got,) = struct.unpack_from(">i", payload, 0)
    if got != correlation_id:
        raise _KafkaProbeError(f"correlation id {got} != {correlation_id}")
    return payload[4:]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> Any:
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str | None:
        length: int = self.take(">h")
        if length < 0:
            return None
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        return raw.decode()


@dataclass(frozen=True)
class PartitionMetadata:
    """One partition as the broker sees it: its error code, leader (-1: none), replicas and ISR (node ids)."""

    error: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True)
class KafkaMetadata:
    """What :func:`kafka_metadata_probe` learned: the brokers as (node id, host, port), the controller,
    and every partition of every topic by (topic, partition)."""

    brokers: list[tuple[int, str, int]]
    controller_id: int
    partitions: dict[tuple[str, int], PartitionMetadata] = field(default_factory=dict)


def _int32s(reader: _Reader) -> tuple[int, ...]:
    return tuple(reader.take(">i") for _ in range(max(0, reader.take(">i"))))


def kafka_metadata_probe(host: str, port: int, timeout: float = 2.0) -> KafkaMetadata:
    """One ApiVersions + Metadata round trip over a plain TCP socket; raises if it does not work."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        reader = _Reader(_kafka_call(sock, 18, 0, 1, b""))  # ApiVersions v0
        error: int = reader.take(">h")
        if error not in (0, 35):  # 35: UNSUPPORTED_VERSION still lists the versions
            raise _KafkaProbeError(f"ApiVersions error {error}")
        versions: dict[int, tuple[int, int]] = {}
        for _ in range(reader.take(">i")):
            key, low, high = reader.take(">hhh")
            versions[key] = (low, high)
        if 3 not in versions:
            raise _KafkaProbeError("broker does not list Metadata")
        low, high = versions[3]
        version = min(high, 8)  # v9+ is the flexible encoding
        if version < max(low, 1):
            raise _KafkaProbeError(f"no usable Metadata version in {low}..{high}")
        body = struct.pack(">i", -1)  # null topic list: all topics
        if version >= 4:
            body += b"\x00"  # allow_auto_topic_creation
        if version >= 8:
            body += b"\x00\x00"  # include cluster/topic authorized operations
        reader = _Reader(_kafka_call(sock, 3, version, 2, body))
        if version >= 3:
            reader.take(">i")  # throttle_time_ms
        brokers = []
        for _ in range(reader.take(">i")):
            node_id: int = reader.take(">i")
            broker_host = reader.string() or ""
            broker_port: int = reader.take(">i")
            reader.string()  # rack
            brokers.append((node_id, broker_host, broker_port))
        if version >= 2:
            reader.string()  # cluster_id
        controller_id: int = reader.take(">i")
        partitions: dict[tuple[str, int], PartitionMetadata] = {}
        for _ in range(max(0, reader.take(">i"))):
            reader.take(">h")  # the topic's error code
            topic = reader.string() or ""
            reader.take(">b")  # is_internal
            for _ in range(max(0, reader.take(">i"))):
                error, index, leader = reader.take(">hii")
                if version >= 7:
                    reader.take(">i")  # leader epoch
                replicas, isr = _int32s(reader), _int32s(reader)
                if version >= 5:
                    _int32s(reader)  # offline replicas
                partitions[(topic, index)] = PartitionMetadata(error, leader, replicas, isr)
            if version >= 8:
                reader.take(">i")  # topic authorized operations
        return KafkaMetadata(brokers=brokers, controller_id=controller_id, partitions=partitions)
