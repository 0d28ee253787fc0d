"""bridge.message.Message: the kafka_* metadata table, header rules and the UTF-8 text rule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from bridge.core.message import OWN_KEYS, Message, text


@dataclass(frozen=True)
class FakeRecord:
    """The fields of aiokafka's ConsumerRecord that Message.from_record reads."""

    topic: str = "orders"
    partition: int = 3
    offset: int = 41
    timestamp: int = 1_700_000_000_123
    key: bytes | None = b"order-1"
    value: bytes | None = b'{"id": 1}'
    headers: Sequence[tuple[str, bytes]] = field(default_factory=tuple)


BASE_META = {
    "kafka_key": "order-1",
    "kafka_topic": "orders",
    "kafka_partition": "3",
    "kafka_offset": "41",
    "kafka_timestamp_unix": "1700000000",
    "kafka_timestamp_ms": "1700000000123",
    "kafka_tombstone_message": "false",
}


def test_from_record_copies_the_record() -> None:
    msg = Message.from_record(FakeRecord())
    assert (msg.topic, msg.partition, msg.offset) == ("orders", 3, 41)
    assert msg.key == b"order-1"
    assert msg.value == b'{"id": 1}'
    assert msg.timestamp_ms == 1_700_000_000_123
    assert msg.lag is None
    assert msg.content() == b'{"id": 1}'
    assert msg.tombstone is False
    assert repr(msg) == "Message(orders/3@41)"


def test_metadata_table_without_highwater() -> None:
    msg = Message.from_record(FakeRecord())
    assert dict(msg.metadata()) == BASE_META
    assert msg.meta("kafka_lag") is None


@pytest.mark.parametrize(
    ("highwater", "lag"),
    [
        (42, "0"),  # the record is the last one
        (50, "8"),
        (1000, "958"),
        (41, "0"),  # a stale high watermark never gives a negative lag
    ],
)
def test_kafka_lag_from_highwater(highwater: int, lag: str) -> None:
    msg = Message.from_record(FakeRecord(), highwater=highwater)
    assert msg.meta("kafka_lag") == lag
    assert dict(msg.metadata()) == {**BASE_META, "kafka_lag": lag}


@pytest.mark.parametrize(
    ("timestamp", "unix", "ms"),
    [
        (0, "0", "0"),
        (999, "0", "999"),
        (1000, "1", "1000"),
        (1_700_000_000_999, "1700000000", "1700000000999"),
    ],
)
def test_timestamps(timestamp: int, unix: str, ms: str) -> None:
    msg = Message.from_record(FakeRecord(timestamp=timestamp))
    assert msg.meta("kafka_timestamp_unix") == unix
    assert msg.meta("kafka_timestamp_ms") == ms


def test_values_are_decimal_strings() -> None:
    msg = Message.from_record(FakeRecord(partition=0, offset=10**12))
    assert msg.meta("kafka_partition") == "0"
    assert msg.meta("kafka_offset") == "1000000000000"
    assert all(isinstance(v, str) for v in msg.metadata().values())


def test_null_key_is_empty() -> None:
    msg = Message.from_record(FakeRecord(key=None))
    assert msg.meta("kafka_key") == ""


def test_empty_value_is_not_a_tombstone() -> None:
    msg = Message.from_record(FakeRecord(value=b""))
    assert msg.tombstone is False
    assert msg.content() == b""
    assert msg.meta("kafka_tombstone_message") == "false"


def test_tombstone() -> None:
    msg = Message.from_record(FakeRecord(value=None))
    assert msg.tombstone is True
    assert msg.content() == b""
    assert msg.meta("kafka_tombstone_message") == "true"


def test_headers_become_metadata() -> None:
    msg = Message.from_record(FakeRecord(headers=[("trace-id", b"abc"), ("Content-Type", b"json")]))
    assert dict(msg.metadata()) == {**BASE_META, "trace-id": "abc", "Content-Type": "json"}
    assert msg.meta("trace-id") == "abc"
    assert msg.meta("missing") is None


def test_metadata_order_is_table_then_headers() -> None:
    msg = Message.from_record(FakeRecord(headers=[("z", b"1"), ("a", b"2")]), highwater=50)
    assert list(msg.metadata()) == [*BASE_META, "kafka_lag", "z", "a"]


def test_last_duplicate_header_wins() -> None:
    msg = Message.from_record(FakeRecord(headers=[("h", b"first"), ("other", b"x"), ("h", b"last")]))
    assert msg.meta("h") == "last"
    assert msg.metadata()["h"] == "last"


def test_empty_header_value() -> None:
    msg = Message.from_record(FakeRecord(headers=[("h", b"")]))
    assert msg.meta("h") == ""


@pytest.mark.parametrize("key", sorted(OWN_KEYS))
def test_a_header_never_overrides_the_records_own_kafka_metadata(key: str) -> None:
    """A record header named ``kafka_topic`` (say) would move the record to another topic's subject: the
    record's own value stays, the header is kept as ``Kafka-Header-kafka_topic``."""
    record = FakeRecord(headers=[(key, b"from-header")])
    own = Message.from_record(FakeRecord(), highwater=100).metadata().get(key)
    msg = Message.from_record(record, highwater=100)
    assert msg.meta(key) == own  # meta() before metadata()
    assert msg.metadata()[key] == own
    assert msg.meta(f"Kafka-Header-{key}") == "from-header"


@pytest.mark.parametrize("headers", [(), [("x", b"y")]], ids=["no-headers", "with-headers"])
@pytest.mark.parametrize("key", ["kafka_topic", "kafka_partition", "kafka_offset", "kafka_key", "x", "nope"])
def test_meta_fast_path_agrees_with_metadata(headers: Sequence[tuple[str, bytes]], key: str) -> None:
    fresh = Message.from_record(FakeRecord(headers=headers))
    first = fresh.meta(key)  # before the metadata is built
    built = Message.from_record(FakeRecord(headers=headers))
    table = built.metadata()
    assert first == table.get(key)
    assert built.meta(key) == table.get(key)  # after it is built
    assert fresh.meta(key) == first


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ""),
        (b"", ""),
        (b"plain", "plain"),
        ("héllo €".encode(), "héllo €"),
        (b"\xff", "\ufffd"),
        (b"ok\xc3", "ok\ufffd"),  # truncated multi-byte sequence
        (b"a\x80b", "a\ufffdb"),
        (b"\x00\x01", "\x00\x01"),  # valid UTF-8 control characters are kept
    ],
)
def test_text_rule(raw: bytes | None, expected: str) -> None:
    assert text(raw) == expected


def test_non_utf8_key_and_header_decode_with_replacement() -> None:
    msg = Message.from_record(
        FakeRecord(key=b"k\xff\xfe", headers=[("bin", b"\x80abc"), ("ok", "ü".encode())])
    )
    assert msg.meta("kafka_key") == "k\ufffd\ufffd"
    assert msg.meta("bin") == "\ufffdabc"
    assert msg.meta("ok") == "ü"


def test_payload_is_never_decoded() -> None:
    payload = b"\xff\x00\xfe binary"
    msg = Message.from_record(FakeRecord(value=payload))
    assert msg.content() is payload


def test_structured_parses_json() -> None:
    msg = Message.from_record(FakeRecord(value=b'{"a": [1, 2], "b": null}'))
    assert msg.structured() == {"a": [1, 2], "b": None}


def test_structured_parses_once() -> None:
    msg = Message.from_record(FakeRecord(value=b'{"a": 1}'))
    first = msg.structured()
    assert msg.structured() is first


@pytest.mark.parametrize("value", [b"not json", b"{", b"", None, b"\xff\xfe"])
def test_structured_raises_value_error_for_non_json(value: bytes | None) -> None:
    msg = Message.from_record(FakeRecord(value=value))
    with pytest.raises(ValueError, match="payload is not valid JSON"):
        msg.structured()
    # a failure is not cached as a value: it fails again
    with pytest.raises(ValueError, match="payload is not valid JSON"):
        msg.structured()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(b"1", 1), (b'"s"', "s"), (b"null", None), (b"[true]", [True]), (b" 2.5 ", 2.5)],
)
def test_structured_json_scalars(value: bytes, expected: object) -> None:
    assert Message.from_record(FakeRecord(value=value)).structured() == expected


def test_constructor_defaults() -> None:
    msg = Message("t", 0, 7, None, None, 5000)
    assert msg.headers == ()
    assert msg.lag is None
    assert dict(msg.metadata()) == {
        "kafka_key": "",
        "kafka_topic": "t",
        "kafka_partition": "0",
        "kafka_offset": "7",
        "kafka_timestamp_unix": "5",
        "kafka_timestamp_ms": "5000",
        "kafka_tombstone_message": "true",
    }
