"""Property: the per-partition fast path (``PartitionRoute``) and the general path (``Router.route``)
put the same bytes on the wire wherever both apply, and refuse the same records.

Configs are drawn from what the fast path accepts — a subject made of static tokens, ``kafka_topic``
and ``kafka_partition``, static configured headers, the default or no ``msg_id`` — over random topics,
partitions, offsets (up to 2**63 - 1), keys, payloads (tombstones included) and record headers that do
not shadow the coordinates; ``max_payload`` and ``max_control_line`` are drawn small enough that some
records break them. Where ``for_partition`` declines (a limit could be reached), the general path
decides alone, and that is checked too: it routes or refuses, nothing else.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge.core.config import parse
from bridge.core.errors import RecordError
from bridge.core.message import Message
from bridge.core.routing import MetadataRoute, PartitionRoute, Router
from bridge.jetstream.publisher import MAX_REPLY_LEN

TOPIC_CHARS = string.ascii_letters + string.digits + "._-"  # what Kafka allows in a topic name
WORD = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)
SUBJECT_PART = st.one_of(
    WORD, st.sampled_from(['${! meta("kafka_topic") }', '${! meta("kafka_partition") }'])
)
HEADER_NAME = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=20)
HEADER_VALUE = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="${}"), max_size=30
)


@st.composite
def configs(draw: st.DrawFn) -> dict:
    parts = draw(st.lists(SUBJECT_PART, min_size=1, max_size=4))
    subject = ".".join(parts)
    if draw(st.booleans()):
        subject = (
            "p" * draw(st.integers(1, 4000)) + "." + subject
        )  # near the control line (".x" lint refuses)
    out: dict = {"urls": ["nats://127.0.0.1:4222"], "subject": subject}
    headers = draw(st.dictionaries(HEADER_NAME, HEADER_VALUE, max_size=3))
    if headers:
        out["headers"] = headers
    bridge: dict = {"max_control_line": draw(st.sampled_from([4096, 1024, 300]))}
    if draw(st.booleans()):
        bridge["msg_id"] = ""
    return {
        "input": {"kafka_franz": {"seed_brokers": ["k:9092"], "topics": ["t"], "consumer_group": "g"}},
        "output": {"nats_jetstream": out},
        "bridge": bridge,
    }


RECORD_HEADERS = st.lists(
    st.tuples(HEADER_NAME.filter(lambda n: n not in ("kafka_topic", "kafka_partition", "kafka_offset")),
              st.binary(max_size=20)),
    max_size=3,
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(
    config=configs(),
    topic=st.text(alphabet=TOPIC_CHARS, min_size=1, max_size=249),
    partition=st.integers(0, 2**31 - 1),
    offsets=st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=5),
    key=st.none() | st.binary(max_size=30),
    values=st.lists(st.none() | st.binary(max_size=300), min_size=1, max_size=5),
    headers=RECORD_HEADERS,
    max_payload=st.sampled_from([1024 * 1024, 256, 120]),
)
def test_fast_and_general_paths_agree(
    config: dict, topic: str, partition: int, offsets: list[int], key: bytes | None,
    values: list[bytes | None], headers: list[tuple[str, bytes]], max_payload: int,
) -> None:  # fmt: skip
    loaded = parse(yaml.safe_dump(config), environ={})
    router = Router(
        loaded.templates, loaded.output.metadata, max_payload,
        max_control_line=loaded.config.bridge.max_control_line, reply=MAX_REPLY_LEN,
    )  # fmt: skip
    fast = router.for_partition(topic, partition)
    assert PartitionRoute.usable_for(headers)
    for offset, value in zip(offsets, values, strict=False):
        msg = Message(topic, partition, offset, key, value, 1_700_000_000_000, headers)
        try:
            general = router.route(msg)
        except RecordError as exc:
            general_error: RecordError | None = exc
        else:
            general_error = None
        event("general path only" if fast is None else "compared")
        event(f"refused: {general_error.kind}" if general_error else "routed")
        if fast is None:
            continue  # the general path decides alone: it routed or raised a RecordError, nothing else
        if general_error is not None:
            with pytest.raises(RecordError) as refused:
                fast.route(offset, value)
            assert (refused.value.kind, refused.value.reason) == (general_error.kind, general_error.reason)
            continue
        envelope = fast.route(offset, value)
        assert envelope.subject == general.subject
        assert envelope.head == general.head
        assert envelope.pre == general.pre
        assert envelope.payload == general.payload
        assert envelope.tail == general.tail
        assert envelope.msg_id == general.msg_id


# --------------------------------------------------------------------------- the kafka_* metadata route


@dataclass(frozen=True)
class Rec:
    """The fields of aiokafka's ConsumerRecord the routes read."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


METADATA_FILTERS = st.sampled_from(
    [
        {"include_prefixes": ["kafka_"]},
        {"include_patterns": [".*"]},
        {"include_prefixes": ["kafka_"], "include_patterns": ["^source$", "seq"]},
        {"include_patterns": ["^kafka_(key|offset)$", "^x"]},
        {"include_prefixes": ["kafka_t", "nats", "Nats-"]},
        {"include_patterns": ["lag|tomb"]},
    ]
)
ANY_HEADER_NAME = st.one_of(
    HEADER_NAME,
    st.sampled_from(
        [
            "kafka_key",
            "kafka_offset",
            "kafka_lag",
            "kafka_topic",
            "Nats-Msg-Id",
            "nats-ttl",
            "source",
            "seq",
            "x",
            "bad:name",
            "",
            "ünï",
        ]
    ),
)
HEADER_BYTES = st.one_of(
    st.binary(max_size=20),
    st.sampled_from([b"plain", b" padded ", b"a\r\nb", "ü".encode(), b"\xff\xfe", b"", b"%d %b"]),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(
    metadata=METADATA_FILTERS,
    static=st.dictionaries(HEADER_NAME, HEADER_VALUE, max_size=2),
    msg_id=st.sampled_from([None, ""]),
    topic_id=st.sampled_from(["", "1JKahow3RGOciXeVZnUbXQ"]),
    topic=st.text(alphabet=TOPIC_CHARS, min_size=1, max_size=40),
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 2),
    timestamp=st.one_of(st.just(-1), st.integers(0, 2**53)),
    key=st.none() | HEADER_BYTES,
    value=st.none() | st.binary(max_size=300),
    headers=st.lists(st.tuples(ANY_HEADER_NAME, HEADER_BYTES), max_size=4),
    lag=st.none() | st.integers(0, 10**6),
    max_payload=st.sampled_from([1024 * 1024, 400, 200]),
)
def test_the_metadata_route_writes_what_the_general_path_writes(
    metadata: dict, static: dict, msg_id: str | None, topic_id: str, topic: str, partition: int,
    offset: int, timestamp: int, key: bytes | None, value: bytes | None,
    headers: list[tuple[str, bytes]], lag: int | None, max_payload: int,
) -> None:  # fmt: skip
    out: dict = {"urls": ["nats://127.0.0.1:4222"], "subject": 'k.${! meta("kafka_partition") }',
                 "metadata": metadata}  # fmt: skip
    if static:
        out["headers"] = static
    config = {
        "input": {"kafka_franz": {"seed_brokers": ["k:9092"], "topics": ["t"], "consumer_group": "g"}},
        "output": {"nats_jetstream": out},
        "bridge": {} if msg_id is None else {"msg_id": msg_id},
    }
    loaded = parse(yaml.safe_dump(config), environ={})
    router = Router(loaded.templates, loaded.output.metadata, max_payload, reply=MAX_REPLY_LEN)
    router.set_topic_id(topic, topic_id)
    fast = router.for_partition(topic, partition)
    assert isinstance(fast, MetadataRoute)
    highwater = None if lag is None else offset + 1 + lag
    record = Rec(topic, partition, offset, timestamp, key, value, tuple(headers))
    try:
        general = router.route(Message.from_record(record, highwater))
    except RecordError as exc:
        general_error: RecordError | None = exc
    else:
        general_error = None
    if general_error is not None:
        event(f"refused: {general_error.kind}")
        for _ in range(2):  # the second time with the route's header names remembered
            with pytest.raises(RecordError) as refused:
                fast.route_record(record, highwater)
            assert (refused.value.kind, refused.value.reason) == (general_error.kind, general_error.reason)
        return
    event("routed")
    for _ in range(2):  # the second time with the route's header names remembered
        envelope = fast.route_record(record, highwater)
        assert (envelope.subject, envelope.head) == (general.subject, general.head)
        assert envelope.pre == general.pre
        assert envelope.payload == general.payload
        assert envelope.msg_id == general.msg_id
