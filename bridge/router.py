"""Message → what goes on the wire: subject, headers, ``Nats-Msg-Id``, size check.

Owns the output mapping of the ``nats_jetstream`` fields ``subject``, ``headers`` and ``metadata``:

1. configured ``headers`` first, in config order, values interpolated per message;
2. then metadata selected by ``metadata.include_prefixes`` / ``include_patterns`` (unanchored
   regular expressions), in metadata order. A metadata key whose name starts with ``Nats-``
   (any case) would change server behaviour (``Nats-Msg-Id``, ``Nats-Expected-*``, ``Nats-TTL``...),
   so it is passed as ``Kafka-Header-<name>`` instead; configured headers may set ``Nats-*`` on purpose;
3. last ``Nats-Msg-Id`` from ``bridge.msg_id`` (default ``<topic>-<partition>-<offset>``), unless
   the configured headers already set one or ``msg_id`` is empty.

A record that can never be published raises ``RecordError``: the subject renders invalid, an
interpolation fails, a header name is illegal, or headers plus payload exceed the server's
``max_payload`` (checked here, before sending, so the server never closes the connection for it).
``dead_letter()`` builds the dead-letter publish for such a record. Pure module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.config import MetadataFilter, Templates
from bridge.errors import RecordError
from bridge.interpolation import Template
from bridge.message import Message
from bridge.wire import (
    CRLF,
    HEADER_LINE,
    clean_header_value,
    encode_header_lines,
    frame_head,
    frame_tail,
    header_name_problem,
    subject_problem,
)

DEFAULT_MSG_ID = '${! meta("kafka_topic") }-${! meta("kafka_partition") }-${! meta("kafka_offset") }'
RENAMED_PREFIX = "Kafka-Header-"
_SUBJECT_CACHE_MAX = 4096
_NO_MESSAGE = Message("", 0, 0, None, None, 0)  # static templates render without a message


@dataclass(frozen=True, slots=True)
class Envelope:
    """One publish, ready for the sink."""

    subject: str
    head: bytes  # b"HPUB <subject> "
    tail: bytes  # sizes, header block, payload, CRLF
    msg_id: str


class Router:
    def __init__(
        self, templates: Templates, metadata: MetadataFilter, max_payload: int = 1024 * 1024
    ) -> None:
        self.max_payload = max_payload
        self._subject = templates.subject
        self._dead_subject = templates.dead_letter_subject
        self._prefixes = tuple(metadata.include_prefixes)
        self._patterns = tuple(re.compile(p) for p in metadata.include_patterns)
        self._wants_metadata = bool(self._prefixes or self._patterns)
        self._allowed: dict[str, str | None] = {}  # metadata key → header name, or None when filtered out

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
        configured = {k.lower() for k, _ in templates.headers}
        self._msg_id: Template | None = None if "nats-msg-id" in configured else templates.msg_id
        self._fast_msg_id = self._msg_id is not None and self._msg_id.source == DEFAULT_MSG_ID
        self._subject_cache: dict[tuple[str | None, ...], tuple[str, bytes]] = {}
        self._subject_keys = templates.subject.meta_keys

    # -- subjects ----------------------------------------------------------------------------

    def _subject_for(self, msg: Message, template: Template) -> tuple[str, bytes]:
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
        result = (subject, frame_head(subject))
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
        self._allowed[key] = name
        return name

    def _msg_id_for(self, msg: Message) -> str:
        if self._fast_msg_id and not msg.headers:  # a record header may shadow kafka_topic & co.
            return f"{msg.topic}-{msg.partition}-{msg.offset}"
        assert self._msg_id is not None
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

    def route(self, msg: Message) -> Envelope:
        """The publish for ``msg``; raises ``RecordError`` when it can never be published."""
        subject, head = self._subject_for(msg, self._subject)
        msg_id = self._msg_id_for(msg) if self._msg_id is not None else ""
        headers = self._headers(msg, msg_id)
        payload = msg.content()
        size = len(headers) + len(payload)
        if size > self.max_payload:
            raise RecordError(
                f"headers plus payload are {size} bytes, over the server's max_payload of {self.max_payload}",
                kind="size",
            )
        return Envelope(subject, head, frame_tail(headers, payload), msg_id)

    @property
    def has_dead_letter(self) -> bool:
        return self._dead_subject is not None

    def dead_letter(self, msg: Message, error: RecordError) -> Envelope:
        """The dead-letter publish for a record that failed with ``error``: the original payload (or none,
        when it is what is too large) with headers naming the reason and the source record."""
        assert self._dead_subject is not None
        subject, head = self._subject_for(msg, self._dead_subject)
        msg_id = f"{msg.topic}-{msg.partition}-{msg.offset}"
        pairs = [
            ("Bridge-Error", error.reason),
            ("Bridge-Error-Kind", error.kind),
            ("Kafka-Topic", msg.topic),
            ("Kafka-Partition", str(msg.partition)),
            ("Kafka-Offset", str(msg.offset)),
        ]
        payload = msg.content()
        budget = self.max_payload - 1024  # room for the headers above
        if len(payload) > budget:
            pairs.append(("Bridge-Payload-Omitted", str(len(payload))))
            payload = b""
        headers = b"".join(
            (HEADER_LINE, encode_header_lines(pairs), b"Nats-Msg-Id: " + msg_id.encode() + CRLF, CRLF)
        )
        if len(headers) + len(payload) > self.max_payload:
            raise RecordError("dead-letter headers exceed max_payload", kind="size")
        return Envelope(subject, head, frame_tail(headers, payload), msg_id)
