"""How a record looks in the stream under one config: ``Projection``, what ``verify`` and ``translate``
compare and how a stream message maps back to its record.

Owns the mapping back (by the ``kafka_topic`` / ``kafka_partition`` / ``kafka_offset`` headers when the
config's ``metadata`` filter sends them, else by the default ``Nats-Msg-Id``,
``[<topic ID>:]<topic>-<partition>-<offset>``; dead-letter messages by their ``Kafka-*`` headers) and the
digest (BLAKE2b-128) each side of a record is reduced to:

- its key, when the stream messages carry ``kafka_key`` (the metadata filter sends it), else nothing;
- its value, against the payload (a tombstone is an empty payload);
- its headers as the metadata filter passes them (``Nats-*`` names as ``Kafka-Header-*``; values as
  the router writes them), against the stream message's headers minus configured ``headers``, the
  ``kafka_*`` metadata and ``Nats-*`` headers.

``checksum`` digests a partition's ``(offset, digest)`` pairs in order. Pure module.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from bridge.core.config import Loaded
from bridge.core.config.rules import compile_pattern
from bridge.core.errors import VerifyError
from bridge.core.frames import MSG_ID_HEADER, clean_header_value
from bridge.core.message import OWN_KEYS, text
from bridge.core.routing import DEAD_LETTER_SUFFIX, RENAMED_PREFIX, parse_record_id

__all__ = ["DEAD_LETTER", "KAFKA_METADATA", "Located", "Projection", "checksum"]

KAFKA_METADATA = OWN_KEYS  # the kafka_* keys a record's own coordinates set (bridge.core.message)
DEAD_LETTER = "Bridge-Error"


@dataclass(frozen=True, slots=True)
class Located:
    topic: str
    partition: int
    offset: int
    dead: bool = False
    topic_id: str = ""  # from the default Nats-Msg-Id, when the message has one


@dataclass(frozen=True, slots=True)
class Projection:
    """How a record looks in the stream under one config: what verify compares and how it maps back."""

    prefixes: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    configured: frozenset[str]  # configured header names, lower case
    compares_key: bool
    by_metadata: bool  # map by kafka_* headers (else by Nats-Msg-Id)
    record_ids: bool = (
        False  # Nats-Msg-Id is the record identity: preferred (record headers can spoof kafka_*)
    )

    @classmethod
    def from_loaded(cls, loaded: Loaded, command: str = "verify") -> Projection:
        """The projection of ``loaded``'s output; ``command`` (``verify``, ``translate``) is named when
        the config does not let it map messages back to offsets."""
        out = loaded.output
        configured = frozenset(name.lower() for name in out.headers)
        proj = cls(
            tuple(out.metadata.include_prefixes),
            tuple(compile_pattern(p) for p in out.metadata.include_patterns),
            configured,
            False,
            False,
        )
        sent = {k for k in ("kafka_key", "kafka_topic", "kafka_partition", "kafka_offset") if proj.passes(k)}
        sent -= configured
        by_metadata = {"kafka_topic", "kafka_partition", "kafka_offset"} <= sent
        default_id = loaded.config.bridge.msg_id is None and MSG_ID_HEADER not in out.headers
        if not by_metadata and not default_id:
            raise VerifyError(
                f"{command} cannot map stream messages back to Kafka offsets with this config: send the "
                "kafka_topic, kafka_partition and kafka_offset metadata (output.nats_jetstream.metadata."
                "include_prefixes: [kafka_]) or keep the default Nats-Msg-Id (leave bridge.msg_id unset)"
            )
        return replace(proj, compares_key="kafka_key" in sent, by_metadata=by_metadata, record_ids=default_id)

    def passes(self, key: str) -> bool:
        return key.startswith(self.prefixes) or any(p.search(key) for p in self.patterns)

    def _kept(self, name: str) -> bool:
        lower = name.lower()
        return lower not in self.configured and name not in KAFKA_METADATA and not lower.startswith("nats-")

    def kafka_digest(
        self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> bytes:
        meta: dict[str, str] = {}
        for name, raw in headers:
            meta[name] = text(raw)  # the last one wins, as in the message metadata
        pairs = []
        for name, value_text in meta.items():
            if name in KAFKA_METADATA or not self.passes(name):
                continue
            out = RENAMED_PREFIX + name if name[:5].lower() == "nats-" else name
            if self._kept(out):
                pairs.append((out, clean_header_value(value_text)))
        shown_key = clean_header_value(text(key)) if self.compares_key else None
        return _digest(shown_key, value or b"", pairs)

    def stream_digest(self, headers: Mapping[str, str], data: bytes) -> bytes:
        pairs = []
        for name, value in headers.items():
            source = name[len(RENAMED_PREFIX) :] if name.startswith(RENAMED_PREFIX) else name
            if source in KAFKA_METADATA or not self.passes(source) or not self._kept(name):
                continue
            pairs.append((name, value))
        shown_key = headers.get("kafka_key", "") if self.compares_key else None
        return _digest(shown_key, data, pairs)

    def locate(self, headers: Mapping[str, str]) -> Located | None:
        """The record a stream message came from, or None when it cannot tell."""
        msg_id = headers.get("Nats-Msg-Id", "")
        parsed = parse_record_id(msg_id.removesuffix(DEAD_LETTER_SUFFIX))
        topic_id = parsed[0] if parsed is not None else ""
        if self.record_ids and parsed is not None and DEAD_LETTER not in headers:
            # the record's own identity: a record header named kafka_offset cannot move it
            return Located(parsed[1], parsed[2], parsed[3], topic_id=topic_id)
        try:
            if DEAD_LETTER in headers:
                return Located(
                    headers["Kafka-Topic"],
                    int(headers["Kafka-Partition"]),
                    int(headers["Kafka-Offset"]),
                    True,
                    topic_id,
                )
            if self.by_metadata and "kafka_offset" in headers:
                return Located(
                    headers["kafka_topic"],
                    int(headers["kafka_partition"]),
                    int(headers["kafka_offset"]),
                    topic_id=topic_id,
                )
        except (KeyError, ValueError):
            return None
        if parsed is None:
            return None
        return Located(parsed[1], parsed[2], parsed[3], topic_id=topic_id)


def _digest(key: str | None, value: bytes, headers: Iterable[tuple[str, str]]) -> bytes:
    h = hashlib.blake2b(digest_size=16)

    def put(part: bytes) -> None:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)

    put(b"\x00" if key is None else b"\x01" + key.encode())
    put(value)
    for name, val in sorted(headers):
        put(name.encode())
        put(val.encode())
    return h.digest()


def checksum(entries: Iterable[tuple[int, bytes]]) -> str:
    """The ordered checksum of a partition: ``(offset, digest)`` pairs in the given order."""
    h = hashlib.blake2b(digest_size=16)
    for offset, digest in entries:
        h.update(offset.to_bytes(8, "big", signed=True))
        h.update(digest)
    return h.hexdigest()
