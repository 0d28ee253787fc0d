"""The NATS publish wire format: subjects, header blocks and ``HPUB`` frames, as bytes.

Owns the rules for what may go on the wire (documented in the README):

- **Subjects** must be non-empty, without whitespace or control characters, without empty tokens
  (``a..b``, a leading or trailing ``.``) and without wildcard tokens (``*``, ``>``): a publish to
  such a subject can never be stored.
- **Header names** must be printable ASCII without ``:`` (a name that is not is a record error).
- **Header values**: CR and LF are replaced by a space each (a value cannot span lines on the wire),
  leading and trailing whitespace is trimmed (NATS parsers drop it anyway).
- Several values for one name are sent as repeated lines, as Redpanda Connect's ``Header.Add`` does.

A frame is ``HPUB <subject> <reply> <header bytes> <total bytes>\\r\\n<headers><payload>\\r\\n``.
The reply subject changes on every send (it carries the ack token), so frames are kept as a head
(``HPUB <subject> ``) and a tail (everything after the reply) and joined at send time.
Pure module: imports neither aiokafka nor nats.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

HEADER_LINE = b"NATS/1.0\r\n"
CRLF = b"\r\n"

_BAD_SUBJECT_CHARS = re.compile(r"[\x00-\x20\x7f]")
_BAD_HEADER_NAME = re.compile(r"[^\x21-\x39\x3b-\x7e]")  # printable ASCII except ':'
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})


def subject_problem(subject: str) -> str | None:
    """Why ``subject`` cannot be published to, or None when it can."""
    if not subject:
        return "subject is empty"
    if _BAD_SUBJECT_CHARS.search(subject):
        return f"subject {subject!r} contains whitespace or control characters"
    for token in subject.split("."):
        if not token:
            return f"subject {subject!r} has an empty token"
        if token in ("*", ">"):
            return f"subject {subject!r} contains the wildcard token {token!r}"
    return None


def header_name_problem(name: str) -> str | None:
    if not name:
        return "header name is empty"
    if _BAD_HEADER_NAME.search(name):
        return f"header name {name!r} is not printable ASCII without ':'"
    return None


def clean_header_value(value: str) -> str:
    """Apply the header value rule: CR/LF → space, trimmed."""
    return value.translate(_NEWLINES).strip()


def encode_headers(pairs: Iterable[tuple[str, str]]) -> bytes:
    """``[(name, value), ...]`` → a NATS header block. Names must already be valid."""
    parts = [HEADER_LINE]
    for name, value in pairs:
        parts.append(f"{name}: {clean_header_value(value)}\r\n".encode())
    parts.append(CRLF)
    return b"".join(parts)


def encode_header_lines(pairs: Iterable[tuple[str, str]]) -> bytes:
    """Header lines without the ``NATS/1.0`` line and the final blank line (to pre-encode constants)."""
    return b"".join(f"{name}: {clean_header_value(value)}\r\n".encode() for name, value in pairs)


def frame_head(subject: str) -> bytes:
    return b"HPUB " + subject.encode() + b" "


def frame_tail(headers: bytes, payload: bytes) -> bytes:
    """Everything after the reply subject: sizes, header block, payload and the final CRLF."""
    hlen = len(headers)
    return b"".join((b" %d %d\r\n" % (hlen, hlen + len(payload)), headers, payload, CRLF))


def frame(subject: str, reply: str, headers: bytes, payload: bytes) -> bytes:
    """A whole ``HPUB`` frame (tests and one-off publishes)."""
    return frame_head(subject) + reply.encode() + frame_tail(headers, payload)
