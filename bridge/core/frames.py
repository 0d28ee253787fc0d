"""The NATS publish wire format: subjects, header blocks and ``HPUB`` frames, as bytes.

Owns the rules for what may go on the wire (documented in the README):

- **Subjects** must be non-empty, without whitespace or control characters, without empty tokens
  (``a..b``, a leading or trailing ``.``) and without wildcard tokens (``*``, ``>``): a publish to
  such a subject can never be stored.
- **Header names** must be printable ASCII without ``:`` (a name that is not is a record error).
- **Header values**: CR and LF are replaced by a space each (a value cannot span lines on the wire),
  leading and trailing whitespace is trimmed (NATS parsers drop it anyway).
- Several values for one name are sent as repeated lines, as Redpanda Connect's ``Header.Add`` does.

And the limits nats-server enforces on a publish (``Limits``), all checked before sending (the
router raises ``RecordError`` naming the limit), read in nats-server's source (v2.10 – 2.15):

- **max_control_line** (``server/parser.go``, ``overMaxControlLineLimit``): the arguments of the
  ``HPUB`` line, ``<subject> <reply> <header bytes> <total bytes>`` (neither ``HPUB `` nor the CRLF),
  may be at most ``max_control_line`` bytes (4096 by default; the server does not announce it in its
  INFO, hence ``bridge.max_control_line``). Over it the server answers ``-ERR 'maximum control line
  exceeded'`` and closes the connection, so a re-send can never succeed.
- **max_payload** (``processHeaderPub``): headers plus payload at most the ``max_payload`` of the
  server's INFO; over it, ``-ERR 'Maximum Payload Violation'`` and the connection is closed.
- **headers** (``server/stream.go``): JetStream refuses a header block over 65,535 bytes
  (``JSStreamHeaderExceedsMaximumErr``, 10097) whatever ``max_payload`` is.
- **reserved subjects** (``processInboundClientMsg``): a client may not publish to ``$NRG.`` or
  ``_GR_.`` subjects (``-ERR 'Permissions Violation'``; no reply would ever come). The bridge also
  never publishes a record to a subject the server or its clients give a meaning to: ``$JS.`` (a
  record keyed ``$JS.API.STREAM.DELETE.X`` under ``subject: ${! @kafka_key }`` would call the
  JetStream API), ``$JSC.``, ``$SYS.`` and ``_INBOX.`` (a publish there is a reply to someone's
  request — the bridge's own PubAck inbox included); ``$KV.`` and ``$O.`` are stream subjects and
  allowed.
- **subject length**: the file store keeps a subject's length in 16 bits (``writeMsgRecord``), so
  a subject over 65,535 bytes is refused too (only reachable with a larger ``max_control_line``).

A frame is ``HPUB <subject> <reply> <header bytes> <total bytes>\\r\\n<headers><payload>\\r\\n``.
The reply subject changes on every send (it carries the ack token), so frames are kept as a head
(``HPUB <subject> ``) and a tail (everything after the reply) and joined at send time.
Pure module: imports neither aiokafka nor nats.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

HEADER_LINE = b"NATS/1.0\r\n"
CRLF = b"\r\n"

MAX_CONTROL_LINE = 4096  # nats-server's default max_control_line (server/const.go)
MAX_HEADER_BYTES = 65535  # JetStream's limit on a message's header block (server/stream.go)
MAX_SUBJECT_BYTES = 65535  # the file store's 16-bit subject length
RESERVED_PREFIXES = ("$NRG.", "_GR_.")  # subjects a client may not publish to
# subjects with a meaning to the server or to other clients: a record is never published there
MEANINGFUL_PREFIXES = ("$JS.", "$JSC.", "$SYS.", "_INBOX.")

_BAD_SUBJECT_CHARS = re.compile(r"[\x00-\x20\x7f]")
_BAD_HEADER_NAME = re.compile(r"[^\x21-\x39\x3b-\x7e]")  # printable ASCII except ':'
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})


@dataclass(frozen=True, slots=True)
class Limits:
    """What the server accepts in one publish. ``reply`` is the longest reply subject the sink sends
    (it is part of the control line)."""

    max_payload: int = 1024 * 1024
    max_control_line: int = MAX_CONTROL_LINE
    reply: int = 0

    def line_fixed(self, subject: bytes) -> int:
        """The control line's length without the digits of the two sizes."""
        return len(subject) + self.reply + 3  # three spaces between the four arguments

    def line_always_fits(self, fixed: int) -> bool:
        """True when no header/total size within ``max_payload`` can take the line over the limit."""
        return fixed + 2 * len(str(self.max_payload)) <= self.max_control_line


def control_line_length(fixed: int, hlen: int, total: int) -> int:
    """What nats-server measures against ``max_control_line`` for an ``HPUB``: its arguments
    ``<subject> <reply> <hlen> <total>``; ``fixed`` is ``Limits.line_fixed(subject)``."""
    return fixed + len(str(hlen)) + len(str(total))


def control_line_problem(length: int, limit: int) -> str:
    return (
        f"subject makes the protocol line {length:,} bytes, over nats-server's max_control_line of "
        f"{limit} (bridge.max_control_line)"
    )


def header_size_problem(hlen: int) -> str:
    return (
        f"headers are {hlen:,} bytes, over JetStream's limit of {MAX_HEADER_BYTES:,} for a message's headers"
    )


def _shown(subject: str) -> str:
    """A subject for an error message: whole when short, else its start and its length."""
    if len(subject) <= 100:
        return repr(subject)
    return f"{subject[:60]!r}… ({len(subject.encode()):,} bytes)"


def subject_problem(subject: str) -> str | None:
    """Why ``subject`` cannot be published to, or None when it can."""
    if not subject:
        return "subject is empty"
    if _BAD_SUBJECT_CHARS.search(subject):
        return f"subject {_shown(subject)} contains whitespace or control characters"
    for token in subject.split("."):
        if not token:
            return f"subject {_shown(subject)} has an empty token"
        if token in ("*", ">"):
            return f"subject {_shown(subject)} contains the wildcard token {token!r}"
    if subject.startswith(RESERVED_PREFIXES):
        prefix = next(p for p in RESERVED_PREFIXES if subject.startswith(p))
        return f"subject {_shown(subject)} starts with {prefix!r}, which nats-server reserves"
    if subject.startswith(MEANINGFUL_PREFIXES):
        prefix = next(p for p in MEANINGFUL_PREFIXES if subject.startswith(p))
        return (
            f"subject {_shown(subject)} starts with {prefix!r}: a publish there is a request to the server "
            "or a reply to a client, never a record"
        )
    if len(subject) > MAX_SUBJECT_BYTES // 4 and len(subject.encode()) > MAX_SUBJECT_BYTES:
        return f"subject {_shown(subject)} is over the {MAX_SUBJECT_BYTES:,} bytes JetStream can store"
    return None


# Headers nats-server acts on, in the only spelling it matches (byte for byte: ``nats-msg-id`` is an
# ordinary header to it, so it neither deduplicates nor checks anything).
SERVER_HEADERS = (
    "Nats-Msg-Id",
    "Nats-Expected-Stream",
    "Nats-Expected-Last-Msg-Id",
    "Nats-Expected-Last-Sequence",
    "Nats-Expected-Last-Subject-Sequence",
    "Nats-Expected-Last-Subject-Sequence-Subject",
    "Nats-Rollup",
    "Nats-TTL",
)
MSG_ID_HEADER = "Nats-Msg-Id"


def misspelt_server_header(name: str) -> str | None:
    """The spelling nats-server matches when ``name`` is one of its headers in another case, else None."""
    for known in SERVER_HEADERS:
        if name != known and name.lower() == known.lower():
            return known
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
