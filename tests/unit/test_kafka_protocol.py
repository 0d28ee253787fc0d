"""bridge.kafka.protocol: the shape of aiokafka it relies on, and the requests it builds.

These fail when an aiokafka release moves what the module patches or reuses (the integration suite
shows the behaviour on real brokers: tests/integration/test_topic_incarnations.py).
"""

from __future__ import annotations

import inspect
import struct
from io import BytesIO

import aiokafka.admin.client
import aiokafka.client
import pytest
from aiokafka.protocol.metadata import MetadataRequest

from bridge.kafka import protocol, source  # importing the source installs the patch


def test_the_client_builds_its_metadata_requests_from_the_module_level_name() -> None:
    """What ``install()`` replaces must be what ``AIOKafkaClient._metadata_update`` calls."""
    code = inspect.getsource(aiokafka.client.AIOKafkaClient._metadata_update)
    assert "MetadataRequest(" in code
    assert source.protocol is protocol
    assert aiokafka.client.MetadataRequest is protocol.NoAutoCreateMetadataRequest
    assert aiokafka.admin.client.MetadataRequest is protocol.NoAutoCreateMetadataRequest


@pytest.mark.parametrize("version", [4, 5])
def test_metadata_requests_never_ask_for_auto_creation(version: int) -> None:
    struct_class = next(c for c in MetadataRequest._CLASSES if version == c.API_VERSION)
    built = protocol.NoAutoCreateMetadataRequest(["orders"]).build(struct_class)
    assert built.allow_auto_topic_creation is False
    # aiokafka's own default, which the patch exists for
    assert MetadataRequest(["orders"]).build(struct_class).allow_auto_topic_creation is True


@pytest.mark.parametrize(
    ("versions", "expected"), [((0, 13), 12), ((0, 12), 12), ((0, 11), 10), ((10, 10), 10)]
)
def test_topic_ids_request_takes_the_newest_version_the_broker_has(
    versions: tuple[int, int], expected: int
) -> None:
    built = protocol.TopicIdsRequest(["a", "b"]).prepare({3: versions})
    assert expected == built.API_VERSION
    assert built.FLEXIBLE_VERSION is True
    data = built.encode()
    assert b"\x02a" in data
    assert b"\x02b" in data
    assert data.endswith(b"\x00\x00\x00")  # no auto-creation, no authorized operations, no tags


def _compact(text: str) -> bytes:
    return bytes([len(text) + 1]) + text.encode()


def _response_v12(topics: list[tuple[int, str, bytes]]) -> bytes:
    """A Metadata v12 response body as a broker writes it (no brokers, one empty partition list)."""
    out = struct.pack(">i", 0) + b"\x01" + b"\x00" + struct.pack(">i", 1)  # throttle, brokers, cluster, ctrl
    out += bytes([len(topics) + 1])
    for error_code, name, raw_id in topics:
        out += struct.pack(">h", error_code) + _compact(name) + raw_id + b"\x00" + b"\x01"
        out += struct.pack(">i", 0) + b"\x00"  # authorized operations, tags
    return out + b"\x00"


def test_topic_ids_response_is_read() -> None:
    raw = bytes(range(16))
    body = _response_v12([(0, "orders", raw), (3, "gone", bytes(16))])
    response = protocol._MetadataResponse_v12.decode(BytesIO(body))
    rows = [(t[0], t[1], protocol.topic_id_text(t[2])) for t in response.topics]
    assert rows == [(0, "orders", "AAECAwQFBgcICQoLDA0ODw"), (3, "gone", "")]


def test_commit_metadata_names_the_topic_id_and_nothing_else_is_ours() -> None:
    assert protocol.commit_metadata("") == ""
    tagged = protocol.commit_metadata("AAECAwQFBgcICQoLDA0ODw")
    assert protocol.topic_id_of_commit(tagged) == "AAECAwQFBgcICQoLDA0ODw"
    assert protocol.topic_id_of_commit("") is None
    assert protocol.topic_id_of_commit("some other tool's metadata") is None
