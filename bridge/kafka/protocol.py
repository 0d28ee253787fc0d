"""What the bridge asks of Kafka beyond aiokafka's public API: the one module that touches its internals.

Owns what aiokafka does not offer, and every use of its private attributes (a consumer's ``_client``
and ``_coordinator``, a connection's ``_versions``):

- **Never create topics.** aiokafka's metadata requests (``aiokafka.client.AIOKafkaClient._metadata_update``)
  ask the broker to auto-create every topic they name (``allow_auto_topic_creation`` defaults to true
  for Metadata v4+), so a consumer subscribed to a deleted topic re-creates it, with the broker's
  default partition count, on its next metadata refresh (measured on Apache Kafka 4.4). ``install()``
  makes aiokafka's ``MetadataRequest`` default to ``allow_auto_topic_creation=False``, for every
  aiokafka client of the process (aiokafka builds the request from a module-level name; a bridge
  process runs only the bridge's clients). Importing the Kafka adapter calls it.
- **Committed for which incarnation.** Every commit carries ``kjb topic_id=<ID>`` as its metadata
  (``commit_metadata``), read back with ``committed_metadata`` (aiokafka's ``committed()`` returns the
  offset alone): an offset committed for an earlier incarnation of a topic is not a place to start in
  the new one (Apache Kafka deletes a deleted topic's committed offsets; not every broker does).
- **Topic IDs.** A topic that is deleted and created again keeps its name and restarts its offsets
  at 0; only its topic ID (a UUID, Metadata v10+, Kafka 2.8+) tells the two incarnations apart.
  ``topic_ids()`` sends Metadata v10–v12 through an aiokafka client (its connections, TLS and SASL)
  and returns each topic's ID in Kafka's own text form (URL-safe base64, 22 characters), ``""``
  when the topic does not exist or the broker reports none.

- **A metadata refresh** (``refresh_metadata``): a consumer's cluster view learns a topic that
  ``topics()`` fetched into a view of its own.
- **Which batch did not decode** (``batch_of``): aiokafka names the codec of a batch it cannot decode,
  not the batch; the partition and offset are locals of its fetcher's generator, read from the
  traceback.

``tests/unit/test_kafka_protocol.py`` fails when the installed aiokafka no longer has the shape these
rely on (the module-level ``MetadataRequest`` name the client builds its requests from, the
flexible-version request machinery).
"""

from __future__ import annotations

import base64
from io import BytesIO
from typing import Any

import aiokafka.admin.client
import aiokafka.client
from aiokafka import TopicPartition
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.types import (
    AbstractType,
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

__all__ = [
    "NoAutoCreateMetadataRequest",
    "batch_of",
    "commit_metadata",
    "committed_metadata",
    "consumer_topic_ids",
    "install",
    "refresh_metadata",
    "topic_id_of_commit",
    "topic_id_text",
    "topic_ids",
]

_ZERO_UUID = bytes(16)
UNKNOWN_TOPIC_OR_PARTITION = 3


class NoAutoCreateMetadataRequest(MetadataRequest):  # type: ignore[misc] # aiokafka is untyped
    """aiokafka's ``MetadataRequest`` that never asks the broker to create a topic."""

    def __init__(self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = False):
        super().__init__(topics, allow_auto_topic_creation=bool(allow_auto_topic_creation))


def install() -> None:
    """Make every aiokafka client of this process send metadata requests that create no topic."""
    aiokafka.client.MetadataRequest = NoAutoCreateMetadataRequest
    aiokafka.admin.client.MetadataRequest = NoAutoCreateMetadataRequest


class _Uuid(AbstractType[bytes]):  # type: ignore[misc] # aiokafka is untyped
    @classmethod
    def encode(cls, value: bytes) -> bytes:
        return value

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        value = data.read(16)
        if len(value) != 16:
            raise ValueError("Buffer underrun decoding a UUID")
        return value


def _response_schema(version: int) -> Schema:
    partition = CompactArray(
        ("error_code", Int16),
        ("partition_index", Int32),
        ("leader_id", Int32),
        ("leader_epoch", Int32),
        ("replica_nodes", CompactArray(Int32)),
        ("isr_nodes", CompactArray(Int32)),
        ("offline_replicas", CompactArray(Int32)),
        ("tags", TaggedFields),
    )
    topic: list[tuple[str, Any]] = [
        ("error_code", Int16),
        ("name", CompactString("utf-8")),
        ("topic_id", _Uuid),
        ("is_internal", Boolean),
        ("partitions", partition),
        ("topic_authorized_operations", Int32),
        ("tags", TaggedFields),
    ]
    fields: list[tuple[str, Any]] = [
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(
                ("node_id", Int32),
                ("host", CompactString("utf-8")),
                ("port", Int32),
                ("rack", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        ("topics", CompactArray(*topic)),
    ]
    if version == 10:
        fields.append(("cluster_authorized_operations", Int32))
    fields.append(("tags", TaggedFields))
    return Schema(*fields)


_REQUEST_SCHEMA = Schema(
    ("topics", CompactArray(("topic_id", _Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields))),
    ("allow_auto_topic_creation", Boolean),
    ("include_topic_authorized_operations", Boolean),
    ("tags", TaggedFields),
)
_REQUEST_SCHEMA_V10 = Schema(
    ("topics", CompactArray(("topic_id", _Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields))),
    ("allow_auto_topic_creation", Boolean),
    ("include_cluster_authorized_operations", Boolean),
    ("include_topic_authorized_operations", Boolean),
    ("tags", TaggedFields),
)


class _MetadataResponse_v10(Response):  # type: ignore[misc] # aiokafka is untyped
    API_KEY = 3
    API_VERSION = 10
    SCHEMA = _response_schema(10)


class _MetadataResponse_v12(Response):  # type: ignore[misc] # aiokafka is untyped
    API_KEY = 3
    API_VERSION = 12
    SCHEMA = _response_schema(12)


class _MetadataRequest_v10(RequestStruct):  # type: ignore[misc] # aiokafka is untyped
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 10
    RESPONSE_TYPE = _MetadataResponse_v10
    SCHEMA = _REQUEST_SCHEMA_V10


class _MetadataRequest_v12(RequestStruct):  # type: ignore[misc] # aiokafka is untyped
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 12
    RESPONSE_TYPE = _MetadataResponse_v12
    SCHEMA = _REQUEST_SCHEMA


class TopicIdsRequest(Request[_MetadataRequest_v10 | _MetadataRequest_v12]):  # type: ignore[misc] # aiokafka is untyped
    """Metadata for named topics, with their topic IDs, creating none."""

    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics

    def build(
        self, request_struct_class: type[_MetadataRequest_v10 | _MetadataRequest_v12]
    ) -> _MetadataRequest_v10 | _MetadataRequest_v12:
        topics: list[tuple[bytes, str, dict[int, bytes]]] = [(_ZERO_UUID, name, {}) for name in self.topics]
        if request_struct_class.API_VERSION == 10:
            return _MetadataRequest_v10(topics, False, False, False, {})
        return _MetadataRequest_v12(topics, False, False, {})


def topic_id_text(raw: bytes) -> str:
    """A topic ID as Kafka prints it (URL-safe base64 without padding); ``""`` for the zero UUID."""
    if raw == _ZERO_UUID:
        return ""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def topic_ids(client: Any, topics: list[str]) -> dict[str, str]:
    """Each topic's ID (``""`` when the topic does not exist or the broker reports no IDs). ``client`` is an
    ``aiokafka.client.AIOKafkaClient`` that has bootstrapped; raises aiokafka's errors as they come."""
    if not topics:
        return {}
    node = client.get_random_node()
    conn = await client._get_conn(node)
    versions = getattr(conn, "_versions", {}) if conn is not None else {}
    if versions.get(3, (0, 0))[1] < 10:
        return dict.fromkeys(topics, "")
    try:
        response = await client.send(node, TopicIdsRequest(list(topics)))
    except NotImplementedError:  # a broker whose oldest Metadata version is newer than v12
        return dict.fromkeys(topics, "")
    found: dict[str, str] = dict.fromkeys(topics, "")
    for error_code, name, raw_id, *_ in response.topics:
        if name in found and error_code == 0:
            found[name] = topic_id_text(raw_id)
    return found


_COMMIT_TAG = "kjb topic_id="


def commit_metadata(topic_id: str) -> str:
    """The metadata string of a commit for a topic with ``topic_id`` (``""``: no ID known)."""
    return f"{_COMMIT_TAG}{topic_id}" if topic_id else ""


def topic_id_of_commit(metadata: str) -> str | None:
    """The topic ID a commit was made for, or None when its metadata is not the bridge's."""
    if metadata.startswith(_COMMIT_TAG):
        return metadata[len(_COMMIT_TAG) :]
    return None


async def committed_metadata(consumer: Any, tps: list[Any]) -> dict[Any, str]:
    """Each partition's committed metadata string (partitions without a commit are left out). ``consumer``
    is a started ``AIOKafkaConsumer`` with a group."""
    found = await consumer._coordinator.fetch_committed_offsets(tps)
    return {tp: (meta.metadata or "") for tp, meta in found.items() if meta is not None and meta.offset >= 0}


async def consumer_topic_ids(consumer: Any, topics: list[str]) -> dict[str, str]:
    """``topic_ids`` through a started ``AIOKafkaConsumer``'s client."""
    return await topic_ids(consumer._client, topics)


async def refresh_metadata(consumer: Any) -> None:
    """Make a started ``AIOKafkaConsumer`` fetch the cluster's metadata now."""
    await consumer._client.force_metadata_update()


def batch_of(exc: BaseException) -> str:
    """Where an ``UnsupportedCodecError`` was raised: ``"<topic>/<partition> at offset <n>"``, from the locals
    of the fetcher's generator that was decoding the batch (``PartitionRecords._unpack_records``: ``tp``
    and ``next_batch``, aiokafka 0.12 – 0.14); ``"a fetched partition"`` when the traceback does not tell.
    ``tests/unit/test_kafka_errors.py`` decodes a real batch through that generator."""
    where = "a fetched partition"
    tb = exc.__traceback__
    while tb is not None:  # the innermost frame that knows wins
        local = tb.tb_frame.f_locals
        tp = local.get("tp")
        if isinstance(tp, TopicPartition):
            where = f"{tp.topic}/{tp.partition}"
            batch_offset = getattr(local.get("next_batch"), "base_offset", None)
            if isinstance(batch_offset, int):
                where += f" at offset {batch_offset}"
        tb = tb.tb_next
    return where


def broker_count(consumer: Any) -> int:
    """How many brokers the started ``consumer``'s cluster metadata lists (0: the bootstrap was answered
    with none, and no request can be routed)."""
    return len(consumer._client.cluster.brokers())


async def group_members(consumer: Any, group: str) -> list[str]:
    """The member ids the group's coordinator lists for ``group`` (empty: nobody is in it). ``consumer`` is
    a started ``AIOKafkaConsumer`` with that ``group_id``; it does not join the group to ask."""
    from aiokafka.protocol.admin import DescribeGroupsRequest

    coordinator = consumer._coordinator
    await coordinator.ensure_coordinator_known()
    response = await consumer._client.send(coordinator.coordinator_id, DescribeGroupsRequest([group]))
    for entry in response.groups:
        error_code, group_id, state = entry[0], entry[1], entry[2]
        if group_id != group or error_code != 0:
            continue
        members = entry[5]
        if state in ("Dead", "Empty"):
            return []
        return [str(member[0]) for member in members]
    return []
