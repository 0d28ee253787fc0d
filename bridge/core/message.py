"""One Kafka record as the bridge sees it: payload plus the ``kafka_*`` metadata of Redpanda Connect.

Owns the metadata mapping (names, and how values stringify: decimal integers, ``true``/``false``)
and the text rule for bytes: Kafka keys and header values are bytes, metadata values are text.
Bytes that are valid UTF-8 become that text; other bytes are decoded with U+FFFD replacement
characters (the payload itself is never decoded: it goes to NATS byte for byte).

| key                       | value                                                        |
|---------------------------|--------------------------------------------------------------|
| ``kafka_key``             | the record key (empty when the key is null)                  |
| ``kafka_topic``           | topic name                                                   |
| ``kafka_partition``       | partition number                                             |
| ``kafka_offset``          | record offset                                                |
| ``kafka_lag``             | high watermark − offset − 1, when the fetch reported it      |
| ``kafka_timestamp_unix``  | record timestamp, seconds since the epoch                    |
| ``kafka_timestamp_ms``    | record timestamp, milliseconds since the epoch               |
| ``kafka_tombstone_message`` | ``true`` when the value is null, else ``false``            |
| *each record header*      | its value; when a name repeats, the last one wins            |

Metadata is built lazily, on the first ``meta()`` / ``metadata()`` call: most pipelines read only a
key or two. Pure module: imports neither aiokafka nor nats.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class ConsumerRecordLike(Protocol):
    """The fields of ``aiokafka.structs.ConsumerRecord`` this module reads."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


def text(raw: bytes | None) -> str:
    """Kafka bytes → metadata text (the module's UTF-8 rule)."""
    if raw is None:
        return ""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode(errors="replace")


_UNSET: Any = object()


# The kafka_* keys the bridge sets from the record itself. A record header of one of these names cannot
# change them: ``kafka_topic: payments`` on a record of ``orders`` would otherwise move it to another
# topic's subject, out of its partition's order. Such a header is kept as ``Kafka-Header-<name>``
# (Redpanda Connect lets the header win; here the record's own coordinates do).
OWN_KEYS = frozenset(
    {
        "kafka_key",
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "kafka_lag",
        "kafka_timestamp_unix",
        "kafka_timestamp_ms",
        "kafka_tombstone_message",
    }
)
SHADOW_PREFIX = "Kafka-Header-"


class Message:
    """A record plus its metadata. Treated as immutable once built; slots keep it small."""

    __slots__ = (
        "_json",
        "_meta",
        "headers",
        "key",
        "lag",
        "offset",
        "partition",
        "timestamp_ms",
        "topic",
        "value",
    )

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int,
        headers: Sequence[tuple[str, bytes]] = (),
        lag: int | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.timestamp_ms = timestamp_ms
        self.headers = headers
        self.lag = lag
        self._meta: dict[str, str] | None = None
        self._json: Any = _UNSET

    @classmethod
    def from_record(cls, record: ConsumerRecordLike, highwater: int | None = None) -> Message:
        lag = None if highwater is None else max(highwater - record.offset - 1, 0)
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            record.timestamp,
            record.headers,
            lag,
        )

    @property
    def tombstone(self) -> bool:
        return self.value is None

    # -- MessageView (bridge.core.interpolation) ----------------------------------------------

    def content(self) -> bytes:
        return b"" if self.value is None else self.value

    def meta(self, key: str) -> str | None:
        meta = self._meta
        if meta is None:
            if not self.headers:
                # Fast path for the keys subject templates use most; no header can shadow them.
                if key == "kafka_topic":
                    return self.topic
                if key == "kafka_partition":
                    return str(self.partition)
                if key == "kafka_offset":
                    return str(self.offset)
            return self.metadata().get(key)
        return meta.get(key)

    def metadata(self) -> Mapping[str, str]:
        meta = self._meta
        if meta is None:
            ts = self.timestamp_ms
            meta = {
                "kafka_key": text(self.key),
                "kafka_topic": self.topic,
                "kafka_partition": str(self.partition),
                "kafka_offset": str(self.offset),
                "kafka_timestamp_unix": str(ts // 1000),
                "kafka_timestamp_ms": str(ts),
                "kafka_tombstone_message": "true" if self.value is None else "false",
            }
            if self.lag is not None:
                meta["kafka_lag"] = str(self.lag)
            for name, raw in self.headers:
                meta[SHADOW_PREFIX + name if name in OWN_KEYS else name] = text(raw)
            self._meta = meta
        return meta

    def merge_metadata(self, values: Mapping[str, str]) -> None:
        """Set metadata keys (``values`` win over the record's). Only ``inject_tracing_map`` mutates a
        message, before it is routed; metadata is built here if it was not yet."""
        meta = self.metadata()
        assert isinstance(meta, dict)
        meta.update(values)

    def replace_content(self, value: bytes) -> None:
        """Replace the payload (``inject_tracing_map``'s ``root.<path> = this`` form), before routing.
        The metadata keeps describing the record (``kafka_tombstone_message`` included)."""
        self.metadata()
        self.value = value
        self._json = _UNSET

    def structured(self) -> Any:
        if self._json is _UNSET:
            try:
                self._json = json.loads(self.content())
            except (ValueError, UnicodeDecodeError) as exc:
                raise ValueError(f"payload is not valid JSON: {exc}") from exc
        return self._json

    def __repr__(self) -> str:
        return f"Message({self.topic}/{self.partition}@{self.offset})"
