"""Message → what goes on the wire: subject, headers, ``Nats-Msg-Id``, size check.

Owns the output mapping of the ``nats_jetstream`` fields ``subject``, ``headers`` and ``metadata``:

0. when ``inject_tracing_map`` is set, ``bridge.core.tracing`` first puts a span's W3C trace context into
   the message's metadata (or payload), so templates and the metadata filter below see it;
1. configured ``headers`` first, in config order, values interpolated per message;
2. then metadata selected by ``metadata.include_prefixes`` / ``include_patterns`` (unanchored
   regular expressions), in metadata order. A metadata key whose name starts with ``Nats-``
   (any case) would change server behaviour (``Nats-Msg-Id``, ``Nats-Expected-*``, ``Nats-TTL``...),
   so it is passed as ``Kafka-Header-<name>`` instead; configured headers may set ``Nats-*`` on purpose;
3. last ``Nats-Msg-Id``: by default the record's identity (``record_id``:
   ``<topic ID>:<topic>-<partition>-<offset>``, or ``<topic>-<partition>-<offset>`` where the broker
   reports no topic IDs), else ``bridge.msg_id`` rendered; none when the configured headers already set
   one or ``msg_id`` is empty. The topic ID tells a recreated topic's records (offsets from 0 again)
   from the old ones, so JetStream does not drop them as duplicates; the pipeline sets it per topic
   with ``set_topic_id`` when it is assigned the topic's partitions.

A record that can never be published raises ``RecordError``: the subject renders invalid, an
interpolation fails, a header name is illegal, or the publish breaks a limit nats-server enforces
(``bridge.core.frames.Limits``: the ``HPUB`` control line over ``max_control_line``, headers plus payload
over ``max_payload``, a header block over JetStream's 64 KiB), checked here, before sending, so the
server never closes the connection for it. ``dead_letter()`` builds the dead-letter publish for such
a record, under the same limits.

Hot path: when the mapping depends on nothing but the topic and partition — subject from
``kafka_topic`` / ``kafka_partition`` (or static), static configured headers, no metadata filter, the
built-in (or no) ``msg_id``, no ``inject_tracing_map`` — ``for_partition()`` returns a
``PartitionRoute`` that has everything but the offset and the payload pre-encoded; a record whose
headers shadow a ``kafka_*`` key takes the general path. Both paths produce the same bytes (the unit
tests compare them). A partition whose subject or static headers could break a limit for some size
within ``max_payload`` gets no fast route: the general path checks each record exactly. Pure module.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from bridge.core.config import MetadataFilter, Templates
from bridge.core.config.rules import compile_pattern
from bridge.core.errors import RecordError
from bridge.core.frames import (
    CRLF,
    HEADER_LINE,
    MAX_CONTROL_LINE,
    MAX_HEADER_BYTES,
    MSG_ID_HEADER,
    Limits,
    clean_header_value,
    control_line_length,
    control_line_problem,
    encode_header_lines,
    frame_head,
    header_name_problem,
    header_size_problem,
    subject_problem,
)
from bridge.core.interpolation import Template
from bridge.core.message import ConsumerRecordLike, Message, text
from bridge.core.tracing import Injector

RENAMED_PREFIX = "Kafka-Header-"
_SUBJECT_CACHE_MAX = 4096
_REASON_MAX = 512  # characters of a RecordError's reason in the dead-letter's Bridge-Error header
_NO_MESSAGE = Message("", 0, 0, None, None, 0)  # static templates render without a message


_SHADOWED = frozenset({"kafka_topic", "kafka_partition", "kafka_offset"})


def record_id(topic_id: str, topic: str, partition: int, offset: int | str) -> str:
    """A record's identity, the default ``Nats-Msg-Id``: ``<topic ID>:<topic>-<partition>-<offset>`` (Kafka
    writes a partition of a topic with an ID as ``<topic ID>:<topic>-<partition>``), or
    ``<topic>-<partition>-<offset>`` when the topic ID is unknown (``""``)."""
    if topic_id:
        return f"{topic_id}:{topic}-{partition}-{offset}"
    return f"{topic}-{partition}-{offset}"


DEAD_LETTER_SUFFIX = "/dead-letter"
"""Appended to the record's identity in its dead-letter publish's ``Nats-Msg-Id``: a record dead-lettered
into the same stream as its data subject must still be stored when it is published again later (once
the cause is fixed), not dropped as a duplicate of its dead-letter."""


STREAM_SIZE_KIND = "stream_size"  # the stream refused the message for its size (max_msg_size, 10054)


def parse_record_id(msg_id: str) -> tuple[str, str, int, int] | None:
    """``record_id``'s inverse: (topic ID or "", topic, partition, offset), None when ``msg_id`` is not one.
    Topic names cannot hold ``:`` and topic IDs (URL-safe base64) cannot either."""
    topic_id, _, rest = msg_id.rpartition(":")
    parts = rest.rsplit("-", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    topic, partition, offset = parts
    if not (partition.isdecimal() and offset.isdecimal() and partition.isascii() and offset.isascii()):
        return None
    return topic_id, topic, int(partition), int(offset)


def msg_id_of(pre: bytes) -> str:
    """The ``Nats-Msg-Id`` value in a frame's header block ("" when it has none)."""
    marker = b"\r\nNats-Msg-Id: "
    start = pre.find(marker)
    if start < 0:
        return ""
    start += len(marker)
    return pre[start : pre.index(b"\r\n", start)].decode()


def too_large(size: int, max_payload: int) -> RecordError:
    return RecordError(
        f"headers plus payload are {size} bytes, over the server's max_payload of {max_payload}", kind="size"
    )


def check_limits(limits: Limits, fixed: int, hlen: int, total: int) -> None:
    """Raise the ``RecordError`` of the first server limit a publish breaks (``fixed``: its subject's
    ``Limits.line_fixed``)."""
    line = control_line_length(fixed, hlen, total)
    if line > limits.max_control_line:
        raise RecordError(control_line_problem(line, limits.max_control_line), kind="control_line")
    if total > limits.max_payload:
        raise too_large(total, limits.max_payload)
    if hlen > MAX_HEADER_BYTES:
        raise RecordError(header_size_problem(hlen), kind="header_size")


class Envelope:
    """One record's publish. The router fills the wire pieces — the frame is ``head + reply + pre +
    payload + CRLF`` — and the sink then carries the same object with its delivery state (one object
    per record on the hot path instead of two)."""

    __slots__ = (
        "_msg_id",
        "ctx",
        "deadline",
        "head",
        "lane",
        "order",
        "payload",
        "pre",
        "state",
        "subject",
        "token",
    )

    # delivery state, set and read by the publisher (bridge.jetstream.lanes) once it accepted it
    lane: Any  # the sink's Lane
    ctx: Any  # the caller's context, opaque to the sink
    token: int  # the reply token of its current send (0: not on the wire)
    order: int  # the token of its first send: a lane's publishes are first sent in record order
    deadline: float  # when the current send times out (time.monotonic)
    state: int  # a bridge.jetstream.lanes.State

    def __init__(
        self, subject: str, head: bytes, pre: bytes, payload: bytes, msg_id: str | None = None
    ) -> None:
        self.subject = subject
        self.head = head  # b"HPUB <subject> "
        self.pre = pre  # b" <header bytes> <total bytes>\r\n" + the header block
        self.payload = payload
        self._msg_id = msg_id  # None: read back from the header block when asked (logs only)

    @property
    def msg_id(self) -> str:
        if self._msg_id is None:
            self._msg_id = msg_id_of(self.pre)
        return self._msg_id

    @property
    def tail(self) -> bytes:
        """Everything after the reply subject."""
        return self.pre + self.payload + CRLF

    @property
    def size(self) -> int:
        """Headers plus payload, what the server holds against its ``max_payload`` (read back from the
        frame: for re-sends, never on the hot path)."""
        return int(self.pre[1 : self.pre.index(b"\r\n")].split()[1])

    @classmethod
    def build(cls, subject: str, head: bytes, headers: bytes, payload: bytes, msg_id: str) -> Envelope:
        hlen = len(headers)
        return cls(subject, head, b" %d %d\r\n%b" % (hlen, hlen + len(payload), headers), payload, msg_id)


class PartitionRoute:
    """The publish of one partition's records when only the offset and the payload vary."""

    __slots__ = ("_fixed", "_general", "_prefix", "_with_id", "head", "max_payload", "subject")

    def __init__(
        self,
        subject: str,
        static_lines: bytes,
        msg_id_prefix: str | None,
        max_payload: int,
        general: Callable[[ConsumerRecordLike, int | None], Envelope] | None = None,
    ) -> None:
        self._general = general  # the router's path, for records this route does not take
        self.subject = subject
        self.head = frame_head(subject)
        self.max_payload = max_payload
        self._with_id = msg_id_prefix is not None
        block = HEADER_LINE + static_lines
        if msg_id_prefix is None:
            self._prefix = block + CRLF
        else:
            self._prefix = block + b"Nats-Msg-Id: " + msg_id_prefix.encode()
        self._fixed = len(self._prefix) + (4 if self._with_id else 0)  # + the offset's digits and CRLF CRLF

    def route(self, offset: int, value: bytes | None) -> Envelope:
        payload = b"" if value is None else value
        if self._with_id:
            digits = b"%d" % offset
            hlen = self._fixed + len(digits)
            total = hlen + len(payload)
            pre = b" %d %d\r\n%b%b\r\n\r\n" % (hlen, total, self._prefix, digits)
        else:
            hlen = self._fixed
            total = hlen + len(payload)
            pre = b" %d %d\r\n%b" % (hlen, total, self._prefix)
        if total > self.max_payload:
            raise too_large(total, self.max_payload)
        return Envelope(self.subject, self.head, pre, payload)

    def route_record(self, record: ConsumerRecordLike, highwater: int | None) -> Envelope:
        """``route`` for a consumed record; one whose headers shadow ``kafka_*`` takes the general path."""
        headers = record.headers
        if headers and self._general is not None and not self.usable_for(headers):
            return self._general(record, highwater)
        return self.route(record.offset, record.value)

    def header_bytes(self, offset: int) -> int:
        """The size of the header block of the record at ``offset``."""
        return self._fixed + len(b"%d" % offset) if self._with_id else self._fixed

    @staticmethod
    def usable_for(headers: Sequence[tuple[str, bytes]]) -> bool:
        """False when a record header shadows ``kafka_topic`` / ``kafka_partition`` / ``kafka_offset``."""
        return not headers or not any(name in _SHADOWED for name, _ in headers)


# The kafka_* metadata a record carries, in the order Message.metadata() builds it; kafka_lag last, and
# only when the fetch reported a high watermark.
_FIELDS = (
    "kafka_key",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp_unix",
    "kafka_timestamp_ms",
    "kafka_tombstone_message",
    "kafka_lag",
)
_FIXED_FIELDS = frozenset(_FIELDS)
# The per-record values, in the order MetadataRoute formats them (kafka_topic, kafka_partition are constant).
_DYNAMIC = (
    "kafka_key",
    "kafka_offset",
    "kafka_timestamp_unix",
    "kafka_timestamp_ms",
    "kafka_tombstone_message",
    "kafka_lag",
)
# Sentinels of MetadataRoute's header-name cache, told apart by identity: a name not looked at yet, and
# one that is no NATS header name.
_UNSEEN = b"\0unseen"
_REFUSED = b"\0refused"
_TEXT_FIELDS = frozenset({"kafka_key", "kafka_tombstone_message"})  # the others are integers
# A header value that needs no work: printable ASCII without leading or trailing whitespace. Anything
# else (UTF-8, CR/LF, invalid bytes) goes through the text rule of ``bridge.core.message.text`` and
# ``clean_header_value``.
_PLAIN_VALUE = re.compile(rb"(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?")


def _header_value(raw: bytes | None) -> bytes:
    if raw is None:
        return b""
    if _PLAIN_VALUE.fullmatch(raw) is not None:
        return raw
    return clean_header_value(text(raw)).encode()


class MetadataRoute:
    """The publish of one partition's records when the ``kafka_*`` metadata (and record headers) become
    headers: everything constant for the partition — the subject, configured headers, the
    ``kafka_topic`` and ``kafka_partition`` lines, the ``Nats-Msg-Id`` prefix — is pre-encoded in one
    format per partition, and each record costs one formatting of its key, offset, timestamps, tombstone
    flag, lag and its own header lines. It writes the bytes the general path writes (a property test
    compares them); records it cannot do so for — a record header that shadows a ``kafka_*`` key or
    repeats a name, a header name that is no NATS header, a limit broken — take the general path
    (``general``), which also raises their record errors."""

    __slots__ = (
        "_every",
        "_fmt",
        "_fmt_lag",
        "_general",
        "_names",
        "_pick",
        "_pick_lag",
        "_router",
        "_with_id",
        "head",
        "max_payload",
        "subject",
    )

    def __init__(
        self,
        subject: str,
        topic: str,
        partition: int,
        static_lines: bytes,
        msg_id_prefix: str | None,
        max_payload: int,
        router: Router,
        general: Callable[[ConsumerRecordLike, int | None], Envelope],
    ) -> None:
        self.subject = subject
        self.head = frame_head(subject)
        self.max_payload = max_payload
        self._router = router
        self._general = general
        constant = {"kafka_topic": topic.encode(), "kafka_partition": b"%d" % partition}
        # The header block's format: configured and constant lines as they are, a placeholder for each
        # dynamic kafka_* value the metadata filter keeps, then the record's own header lines (%b), then
        # the Nats-Msg-Id with the offset's digits (%d) or the block's end.
        tail = (
            CRLF
            if msg_id_prefix is None
            else b"Nats-Msg-Id: " + msg_id_prefix.replace("%", "%%").encode() + b"%d\r\n\r\n"
        )
        formats: dict[bool, tuple[bytes, tuple[int, ...]]] = {}
        for with_lag in (False, True):
            fmt = HEADER_LINE + static_lines.replace(b"%", b"%%")
            picked: list[int] = []
            for key in _FIELDS:
                if key == "kafka_lag" and not with_lag:
                    continue
                if router._header_name(key) is None:
                    continue  # the metadata filter leaves it out
                line = key.encode() + b": "
                if key in constant:
                    fmt += line + constant[key].replace(b"%", b"%%") + CRLF
                else:
                    fmt += line + (b"%b" if key in _TEXT_FIELDS else b"%d") + CRLF
                    picked.append(_DYNAMIC.index(key))
            formats[with_lag] = (fmt + b"%b" + tail, tuple(picked))
        self._fmt, self._pick = formats[False]
        self._fmt_lag, self._pick_lag = formats[True]
        # every dynamic value is sent, in _DYNAMIC's order (the mission's configuration): no picking
        self._every = self._pick_lag == tuple(range(len(_DYNAMIC)))
        if msg_id_prefix is None:
            self._fmt += b"%b"  # takes b"" where the id takes the offset (route_record passes ``_id_arg``)
            self._fmt_lag += b"%b"
        self._with_id = msg_id_prefix is not None
        self._names: dict[str, bytes | None] = {}  # record header name → its line's start, None: not sent

    def _record_lines(self, headers: Sequence[tuple[str, bytes]]) -> bytes | None:
        """The header lines of a record's own headers, or None when the general path must build them."""
        names = self._names
        if len(headers) == 1:
            name, raw = headers[0]
            start = names.get(name, _UNSEEN)
            if start is _UNSEEN:
                if name in _FIXED_FIELDS:
                    return None  # it shadows a kafka_* key: the general path
                start = self._line_start(name)
                if start is _REFUSED:
                    return None
            if start is None:
                return b""
            return (
                start
                + (raw if raw is not None and _PLAIN_VALUE.fullmatch(raw) else _header_value(raw))
                + CRLF
            )
        out = []
        seen: set[str] = set()
        for name, raw in headers:
            if name in _FIXED_FIELDS:
                return None  # it shadows a kafka_* key (in place, as a dict does): the general path
            if name in seen:
                return None  # repeated: the last one wins, in the first one's place
            seen.add(name)
            start = names.get(name, _UNSEEN)
            if start is _UNSEEN:
                start = self._line_start(name)
                if start is _REFUSED:
                    return None
            if start is not None:
                out.append(start + _header_value(raw) + CRLF)
        return b"".join(out)

    def _line_start(self, name: str) -> bytes | None:
        """``b"<header name>: "`` of a record header (None: the metadata filter leaves it out; ``_REFUSED``:
        no NATS header name, the general path raises its record error), remembered up to a bound."""
        header = self._router._header_name(name)
        start = None
        if header is not None:
            if header_name_problem(header):
                return _REFUSED
            start = header.encode() + b": "
        if len(self._names) < _SUBJECT_CACHE_MAX:
            self._names[name] = start
        return start

    def route_record(self, record: ConsumerRecordLike, highwater: int | None) -> Envelope:
        headers = record.headers
        if headers:
            extra = self._record_lines(headers)
            if extra is None:
                return self._general(record, highwater)
        else:
            extra = b""
        value = record.value
        offset = record.offset
        ts = record.timestamp
        key = record.key
        if key is None:
            key = b""
        elif _PLAIN_VALUE.fullmatch(key) is None:
            key = _header_value(key)
        tombstone = b"true" if value is None else b"false"
        last: int | bytes = offset if self._with_id else b""  # the Nats-Msg-Id's digits
        if highwater is None:
            fields: tuple[bytes | int, ...] = (key, offset, ts // 1000, ts, tombstone)
            if self._every:
                block = self._fmt % (*fields, extra, last)
            else:
                block = self._fmt % (*[fields[i] for i in self._pick], extra, last)
        else:
            lag = highwater - offset - 1
            if lag < 0:
                lag = 0
            if self._every:
                block = self._fmt_lag % (key, offset, ts // 1000, ts, tombstone, lag, extra, last)
            else:
                fields = (key, offset, ts // 1000, ts, tombstone, lag)
                block = self._fmt_lag % (*[fields[i] for i in self._pick_lag], extra, last)
        payload = b"" if value is None else value
        hlen = len(block)
        total = hlen + len(payload)
        if total > self.max_payload or hlen > MAX_HEADER_BYTES:
            return self._general(record, highwater)  # it raises the record error, with its reason
        return Envelope(self.subject, self.head, b" %d %d\r\n%b" % (hlen, total, block), payload)


class Router:
    def __init__(
        self,
        templates: Templates,
        metadata: MetadataFilter,
        max_payload: int = 1024 * 1024,
        *,
        max_control_line: int = MAX_CONTROL_LINE,
        reply: int = 0,
    ) -> None:
        """``max_payload`` from the server's INFO, ``max_control_line`` from ``bridge.max_control_line``,
        ``reply``: the longest reply subject the sink sends."""
        self.max_payload = max_payload
        self.limits = Limits(max_payload, max_control_line, reply)
        self._subject = templates.subject
        self._dead_subject = templates.dead_letter_subject
        self._prefixes = tuple(metadata.include_prefixes)
        self._patterns = tuple(compile_pattern(p) for p in metadata.include_patterns)
        self._wants_metadata = bool(self._prefixes or self._patterns)
        self._allowed: dict[str, str | None] = {}  # metadata key → header name, or None when filtered out
        # inject_tracing_map: applied to each message before anything else reads it (bridge.core.tracing)
        self._inject = None if templates.tracing is None else Injector(templates.tracing)

        for name, _ in templates.headers:
            problem = header_name_problem(name)
            if problem:
                raise ValueError(problem)
        # Configured headers in config order: runs of static ones pre-encoded, templates kept to render.
        self._configured: list[bytes | tuple[str, Template]] = []
        for name, template in templates.headers:
            if template.is_static:
                line = encode_header_lines([(name, template.render(_NO_MESSAGE))])
                if self._configured and isinstance(self._configured[-1], bytes):
                    self._configured[-1] += line
                else:
                    self._configured.append(line)
            else:
                self._configured.append((name, template))
        self._static_only = all(isinstance(part, bytes) for part in self._configured)
        self._static_lines = b"".join(p for p in self._configured if isinstance(p, bytes))
        # The configured headers set the id (in the one spelling nats-server reads): obeyed, nothing added.
        own_id = any(k == MSG_ID_HEADER for k, _ in templates.headers)
        self._msg_id: Template | None = None if own_id else templates.msg_id
        self._record_id = templates.record_id and not own_id  # the built-in identity (record_id)
        self._topic_ids: dict[str, str] = {}  # topic → its ID (set_topic_id), "" when unknown
        self._subject_cache: dict[tuple[str | None, ...], tuple[str, bytes, int]] = {}
        self._subject_keys = templates.subject.meta_keys

    # -- subjects ----------------------------------------------------------------------------

    def _subject_for(self, msg: Message, template: Template) -> tuple[str, bytes, int]:
        """(subject, frame head, the control line's length without the size digits)."""
        keys = self._subject_keys if template is self._subject else None
        if keys is not None:
            cache_key = tuple(msg.meta(k) for k in keys)
            hit = self._subject_cache.get(cache_key)
            if hit is not None:
                return hit
        subject = template.render(msg)
        problem = subject_problem(subject)
        if problem:
            raise RecordError(problem, kind="subject")
        head = frame_head(subject)
        result = (subject, head, self.limits.line_fixed(head[5:-1]))
        if keys is not None:
            if len(self._subject_cache) >= _SUBJECT_CACHE_MAX:
                self._subject_cache.clear()
            self._subject_cache[cache_key] = result
        return result

    # -- headers -----------------------------------------------------------------------------

    def _header_name(self, key: str) -> str | None:
        try:
            return self._allowed[key]
        except KeyError:
            pass
        name: str | None = None
        if key.startswith(self._prefixes) or any(p.search(key) for p in self._patterns):
            name = RENAMED_PREFIX + key if key[:5].lower() == "nats-" else key
        if len(self._allowed) < _SUBJECT_CACHE_MAX:  # record header names are the producer's: bounded
            self._allowed[key] = name
        return name

    def _msg_id_for(self, msg: Message) -> str:
        if self._record_id:
            # The default id is the record's own coordinates, never metadata a record header could shadow:
            # two records must never share an id (JetStream would drop the second as a duplicate).
            return record_id(self._topic_ids.get(msg.topic, ""), msg.topic, msg.partition, msg.offset)
        if self._msg_id is None:
            return ""
        return clean_header_value(self._msg_id.render(msg))

    def _headers(self, msg: Message, msg_id: str) -> bytes:
        parts = [HEADER_LINE]
        if self._static_only:
            parts.append(self._static_lines)
        else:
            for part in self._configured:
                if isinstance(part, bytes):
                    parts.append(part)
                else:
                    parts.append(encode_header_lines([(part[0], part[1].render(msg))]))
        if self._wants_metadata:
            selected = []
            for key, value in msg.metadata().items():
                name = self._header_name(key)
                if name is not None:
                    problem = header_name_problem(name)
                    if problem:
                        raise RecordError(
                            f"metadata {key!r} cannot be a NATS header: {problem}", kind="header"
                        )
                    selected.append((name, value))
            parts.append(encode_header_lines(selected))
        if msg_id:
            parts.append(b"Nats-Msg-Id: " + msg_id.encode() + CRLF)
        parts.append(CRLF)
        return b"".join(parts)

    # -- public ------------------------------------------------------------------------------

    def set_max_payload(self, max_payload: int) -> None:
        """The server's ``max_payload`` changed (it restarted with another): route by the new one. Routes
        from ``for_partition`` carry the old one: build them again."""
        self.max_payload = max_payload
        self.limits = replace(self.limits, max_payload=max_payload)

    def set_topic_id(self, topic: str, topic_id: str) -> None:
        """The ID of ``topic``'s incarnation (``""``: unknown): part of the default ``Nats-Msg-Id``."""
        self._topic_ids[topic] = topic_id

    def route_record(self, record: ConsumerRecordLike, highwater: int | None) -> Envelope:
        """The general path for a consumed record (what the fast routes fall back to)."""
        return self.route(Message.from_record(record, highwater))

    def for_partition(self, topic: str, partition: int) -> PartitionRoute | MetadataRoute | None:
        """The hot-path route of one partition, or None when this config needs the general path."""
        keys = self._subject_keys
        if (
            keys is None
            or not keys <= {"kafka_topic", "kafka_partition"}
            or not self._static_only
            or self._msg_id is not None
            or self._inject is not None
        ):
            return None
        probe = Message(topic, partition, 0, None, None, 0)
        subject = self._subject.render(probe)
        if subject_problem(subject):
            return None  # the general path raises the record error with its reason
        id_prefix = (
            record_id(self._topic_ids.get(topic, ""), topic, partition, "") if self._record_id else None
        )
        route: PartitionRoute | MetadataRoute
        if self._wants_metadata:
            route = MetadataRoute(
                subject,
                topic,
                partition,
                self._static_lines,
                id_prefix,
                self.max_payload,
                self,
                self.route_record,
            )
            # every limit but the control line is checked per record
            if not self.limits.line_always_fits(self.limits.line_fixed(route.head[5:-1])):
                return None
            return route
        route = PartitionRoute(subject, self._static_lines, id_prefix, self.max_payload, self.route_record)
        # The fast path checks max_payload only: it is used when no other limit can be broken.
        worst_hlen = route.header_bytes(offset=2**63 - 1)
        if not self.limits.line_always_fits(self.limits.line_fixed(route.head[5:-1])) or (
            worst_hlen > MAX_HEADER_BYTES
        ):
            return None  # the general path checks each record exactly
        return route

    def route(self, msg: Message) -> Envelope:
        """The publish for ``msg``; raises ``RecordError`` when it can never be published."""
        if self._inject is not None:
            self._inject(msg)
        subject, head, fixed = self._subject_for(msg, self._subject)
        msg_id = self._msg_id_for(msg)
        headers = self._headers(msg, msg_id)
        payload = msg.content()
        check_limits(self.limits, fixed, len(headers), len(headers) + len(payload))
        return Envelope.build(subject, head, headers, payload, msg_id)

    @property
    def has_dead_letter(self) -> bool:
        return self._dead_subject is not None

    def dead_letter(self, msg: Message, error: RecordError) -> Envelope:
        """The dead-letter publish for a record that failed with ``error``: the original payload (or none,
        when it is what is too large) with headers naming the reason and the source record."""
        assert self._dead_subject is not None
        subject, head, fixed = self._subject_for(msg, self._dead_subject)
        msg_id = record_id(self._topic_ids.get(msg.topic, ""), msg.topic, msg.partition, msg.offset)
        msg_id += DEAD_LETTER_SUFFIX
        reason = error.reason
        if len(reason) > _REASON_MAX:
            reason = reason[: _REASON_MAX - 1] + "…"
        pairs = [
            ("Bridge-Error", reason),
            ("Bridge-Error-Kind", error.kind),
            ("Kafka-Topic", msg.topic),
            ("Kafka-Partition", str(msg.partition)),
            ("Kafka-Offset", str(msg.offset)),
        ]
        payload = msg.content()
        budget = self.max_payload - 1024  # room for the headers above
        if len(payload) > budget or error.kind == STREAM_SIZE_KIND:
            pairs.append(("Bridge-Payload-Omitted", str(len(payload))))
            payload = b""
        headers = b"".join(
            (HEADER_LINE, encode_header_lines(pairs), b"Nats-Msg-Id: " + msg_id.encode() + CRLF, CRLF)
        )
        if len(headers) + len(payload) > self.max_payload:
            raise RecordError("dead-letter headers exceed max_payload", kind="size")
        check_limits(self.limits, fixed, len(headers), len(headers) + len(payload))
        return Envelope.build(subject, head, headers, payload, msg_id)
