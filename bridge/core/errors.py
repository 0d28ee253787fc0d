"""Every error of the project: one shallow tree, typed fields, a typed ``retriable`` flag.

Client libraries' exceptions (aiokafka, nats-py) are translated into these at the adapters, each
library by one function (``bridge.kafka.errors.translate``, ``bridge.jetstream.errors.translate``),
with ``raise X from exc``; nothing above the adapters catches a library exception. The retry
policies in ``bridge.run.retry`` read ``BridgeError.retriable``.

```
BridgeError                the CLI's contract: a message, an exit code, retriable or not
├── ConfigError            the config file is invalid: one Problem per finding (path, line)
├── UnavailableError       a broker could not be reached (retriable)
│   ├── KafkaUnavailable
│   ├── TopicNotFound      a backfill names a topic the cluster does not have
│   └── NatsUnavailable
│       └── ReconnectsExhausted  the connection was lost mid-run and max_reconnects ran out
├── AuthError              a broker refused our credentials or certificate, or our security
│                          protocol (SASL/TLS configured or not) does not match its listener
├── PublishError           one publish was not stored (retriable unless said otherwise)
│   ├── NoStreamError      no JetStream stream is bound to the subject (503 no responders)
│   ├── AckTimeout         no PubAck within the ack timeout
│   ├── ConnectionLost     the NATS connection went away with the publish unacknowledged
│   └── JetStreamError     the stream answered with an API error
├── RecordError            a record that can never be published (bad subject, too large, ...)
│   └── InterpolationError a ${! } query failed for one message
├── PartitionStopped       a partition stopped on a RecordError without a dead-letter route
├── UndecodableBatch       a fetched record batch uses a codec this install cannot decode
├── UnreadableRecord       a fetched record aiokafka cannot decode (a header name that is not UTF-8)
├── DeliveryFailed         a partition could not deliver within its retry budget
├── LogRewound             a partition's log went back under the bridge (the topic was deleted and
│                          created again, or truncated): nothing of it is committed from then on
├── UncommittedAtExit      a run stopped with acknowledged offsets it could not commit
├── BackfillIncomplete     a backfill ended with records up to its end offsets not delivered
├── GroupInUse             a backfill's consumer group has members (a run): refused before reading
├── CommitsRefused         a backfill's commits were refused: a member joined its group meanwhile
├── StreamError            JetStream refused a stream operation (streams ensure, verify, translate)
│   └── ApiError           an {"error": ...} answer of the JetStream API
├── VerifyError            verify / translate cannot make the comparison
└── HttpServerError        the HTTP server cannot listen on its address

ValueError
└── TemplateSyntaxError    a ${! } template that does not compile (the loader makes it a Problem)
Exception
└── FileRefused            a local file not read: missing, not a regular file, too large (the loader
                           and the TLS / auth options make it a Problem naming the field)
```

Exit codes (``ExitCode``) map these to the CLI's contract. Pure module: imports neither aiokafka nor
nats.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # delivery failed, a partition stopped, an unexpected error
    CONFIG = 2  # the config (or the command line) is invalid; nothing connected
    UNAVAILABLE = 3  # a broker was unreachable or refused us; nothing committed
    INTERRUPTED = 130  # a second signal: left at once, uncommitted records are read again later


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose. ``retriable``: a retry of the same operation
    may succeed (the policies of ``bridge.run.retry`` read it); ``exit_code``: what the CLI exits with."""

    retriable: bool = False
    exit_code: ExitCode = ExitCode.FAILED


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding in a config file: the dotted path, the 1-based line (0 when unknown), what is wrong."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        path = f"{self.path}: " if self.path else ""  # no path: the file as a whole
        return f"{where}{path}{self.message}"


class ConfigError(BridgeError):
    exit_code = ExitCode.CONFIG

    def __init__(
        self, problems: list[Problem], source: str = "", warnings: list[Problem] | None = None
    ) -> None:
        self.problems = problems
        self.source = source
        self.warnings = warnings or []  # what has no effect, found before the problems stopped the check
        head = f"{source}: " if source else ""
        super().__init__(head + "; ".join(str(p) for p in problems))


class UnavailableError(BridgeError):
    retriable = True
    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, what: str, detail: str) -> None:
        self.what = what
        self.detail = detail
        super().__init__(f"{what} unreachable: {detail}")


class KafkaUnavailable(UnavailableError):
    def __init__(self, brokers: str, detail: str) -> None:
        super().__init__(f"Kafka ({brokers})", detail)


class TopicNotFound(UnavailableError):
    retriable = False

    def __init__(self, brokers: str, topics: list[str], matching: bool = False) -> None:
        self.topics = topics
        names = ", ".join(repr(t) for t in topics)
        BridgeError.__init__(self, f"Kafka ({brokers}) has no topic {'matching ' if matching else ''}{names}")
        self.what = f"Kafka ({brokers})"
        self.detail = "topic not found"


class NatsUnavailable(UnavailableError):
    def __init__(self, servers: str, detail: str) -> None:
        super().__init__(f"NATS ({servers})", detail)


class AuthError(BridgeError):
    """``refused``: what the server refused ("the connection", "SASL", "TLS")."""

    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, server: str, detail: str, refused: str = "the connection") -> None:
        self.server = server
        self.detail = detail
        super().__init__(f"{server} refused {refused}: {detail}")


class PublishError(BridgeError):
    """A publish that was not stored. ``subject`` names where it was going."""

    retriable = True

    def __init__(self, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"publish to {subject!r} failed: {reason}")


class NoStreamError(PublishError):
    def __init__(self, subject: str) -> None:
        super().__init__(subject, "no JetStream stream is bound to this subject (503 no responders)")


class AckTimeout(PublishError):
    def __init__(self, subject: str, seconds: float) -> None:
        super().__init__(subject, f"no acknowledgement within {seconds:g}s")


class ConnectionLost(PublishError):
    def __init__(self, subject: str) -> None:
        super().__init__(subject, "the NATS connection was lost before the acknowledgement")


class JetStreamError(PublishError):
    """An API error from the stream (``{"error": {...}}`` in the PubAck)."""

    # Errors that no retry of the same message can fix: the record is the problem.
    PERMANENT_ERR_CODES = frozenset(
        {
            10054,  # message size exceeds maximum allowed
            10097,  # header size exceeds maximum allowed of 64k
            10071,  # wrong last sequence
            10164,  # wrong last sequence (constant form)
            10070,  # wrong last msg id
            10060,  # expected stream does not match (a configured Nats-Expected-Stream header)
            10063,  # expected stream sequence does not match
            10193,  # missing sequence for expected last sequence per subject
            10165,  # invalid per-message TTL (a configured Nats-TTL header)
            10166,  # per-message TTL is disabled on the stream
            10168,
            10169,
            10170,
            10171,
            10172,  # message counters (Nats-Incr): disabled, missing, ...
            10177,
            10179,
            10205,
            10207,  # batch publish headers the stream does not take
            10188,
            10189,
            10190,
            10191,
            10192,
            10203,
            10212,
            10223,  # message schedules headers
            10227,  # stream source header not allowed
        }
    )

    def __init__(self, subject: str, code: int, err_code: int, description: str) -> None:
        self.code = code
        self.err_code = err_code
        self.description = description
        super().__init__(subject, f"JetStream error {code}/{err_code}: {description}")
        self.retriable = err_code not in self.PERMANENT_ERR_CODES


class RecordError(BridgeError):
    """A record that no retry can publish: the reason is in the record or the config."""

    def __init__(self, reason: str, kind: str) -> None:
        self.reason = reason
        self.kind = kind  # short machine-readable cause: subject, size, interpolation, header, ...
        super().__init__(reason)


class PartitionStopped(BridgeError):
    def __init__(
        self, topic: str, partition: int, offset: int, reason: str, dead_letter: bool = False
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.reason = reason
        why = "its dead-letter publish failed too" if dead_letter else "no dead-letter subject configured"
        super().__init__(
            f"partition {topic}/{partition} stopped at offset {offset}: {reason} "
            f"({why}; nothing past this offset is committed)"
        )


class UndecodableBatch(BridgeError):
    """A fetched record batch is compressed with a codec this install cannot decode (``codec``: its name,
    or ``an unknown codec (0x05)``). No retry can read it; what was delivered before is committed."""

    def __init__(self, brokers: str, where: str, codec: str, hint: str = "") -> None:
        self.where = where
        self.codec = codec
        super().__init__(
            f"Kafka ({brokers}): record batch of {where} compressed with {codec}, "
            f"which this install cannot decode{hint}"
        )


class UnreadableRecord(BridgeError):
    """A fetched record aiokafka cannot decode although its batch's codec is known: a record header name
    that is not UTF-8 (aiokafka decodes header names as UTF-8; Kafka allows any bytes). The whole batch
    fails to parse, so no record of it can be routed or dead-lettered: the run stops, naming the batch;
    what was delivered before is committed."""

    def __init__(self, brokers: str, where: str, what: str) -> None:
        self.where = where
        super().__init__(
            f"Kafka ({brokers}): a record in the batch of {where} cannot be read: {what}. No record of that "
            "batch can be copied; remove or rewrite it (for example by moving the group past it once its "
            "records are copied by other means)"
        )


class DeliveryFailed(BridgeError):
    def __init__(self, lane: str, cause: BaseException) -> None:
        self.lane = lane
        self.cause = cause
        super().__init__(f"{lane}: gave up delivering: {cause}")


class ReconnectsExhausted(NatsUnavailable):
    """Lost mid-run and not re-established within ``max_reconnects``: what was acknowledged before is
    committed, so this is a failed run (exit 1), not an unreachable broker at start (exit 3)."""

    retriable = False
    exit_code = ExitCode.FAILED

    def __init__(self, servers: str, attempts: int, cause: BaseException) -> None:
        self.attempts = attempts
        self.cause = cause
        reason = cause.detail if isinstance(cause, UnavailableError) else str(cause)
        super().__init__(
            servers,
            f"connection lost; gave up after {attempts} reconnection attempts (max_reconnects): {reason}",
        )


class LogRewound(BridgeError):
    """A partition held by this run now holds other records at the offsets the run read: the topic was
    deleted and created again under the same name (its topic ID changed), or its log was truncated. The
    run stops without committing anything more for the partition; the next run reads the new log from
    its ``start_offset`` with the new topic ID in every ``Nats-Msg-Id``."""

    AGAIN = "run the bridge again to read the new log from start_offset"

    def __init__(self, topic: str, partition: int, detail: str, remedy: str = AGAIN) -> None:
        self.topic = topic
        self.partition = partition
        self.detail = detail
        self.remedy = remedy
        super().__init__(
            f"partition {topic}/{partition}: {detail}; nothing more is committed for it: {remedy}"
        )

    @classmethod
    def start_past_end(cls, topic: str, partition: int, offset: int, group: str, end: str = "") -> LogRewound:
        """The offset a partition was to start at is past the end of its log: a group's commit (made for an
        earlier topic of that name, or before the log was truncated) or a configured ``topic:p:offset``."""
        where = f" ({end})" if end else ""
        if group:
            return cls(
                topic,
                partition,
                f"the committed offset {offset} of group {group!r} is past the end of the log{where}: the "
                "topic was deleted and created again, or truncated, since that commit",
                "reset the group's offset (kafka-consumer-groups --reset-offsets --to-earliest "
                f"--group {group} --topic {topic}:{partition} --execute) or use another consumer_group",
            )
        return cls(
            topic,
            partition,
            f"the configured start offset {offset} is past the end of the log{where}",
            "configure an offset within the log",
        )


class GroupInUse(BridgeError):
    """A backfill reads without joining its consumer group, from the group's committed offsets, and
    commits to them: a group with members (a ``run``) would commit the same partitions."""

    def __init__(self, group: str, members: int) -> None:
        self.group = group
        self.members = members
        super().__init__(
            f"consumer group {group!r} has {members} active member(s) (a run of the bridge?): a backfill "
            "in it would commit the partitions they hold; stop them first, or backfill in another "
            "consumer_group"
        )


class CommitsRefused(BridgeError):
    """A backfill delivered its records but its commits were refused: a member joined its group since it
    started (a ``run``), so the group's offsets do not show what the backfill stored."""

    def __init__(self, group: str, partitions: list[str]) -> None:
        self.group = group
        self.partitions = partitions
        super().__init__(
            f"the commits of {len(partitions)} partition(s) ({', '.join(partitions[:8])}) were refused: a "
            f"member joined consumer group {group!r} while the backfill ran; what it stored is in the "
            "stream, but the group's offsets were not moved"
        )


class UncommittedAtExit(BridgeError):
    """A run stopped with acknowledged records whose offsets it could not commit (Kafka did not answer the
    shutdown's commit): nothing is lost, the next run reads them again (JetStream drops the copies within
    ``duplicate_window``), but this was not a clean stop."""

    def __init__(self, group: str, partitions: list[str]) -> None:
        self.group = group
        self.partitions = partitions
        super().__init__(
            f"stopped without committing {len(partitions)} partition(s) ({', '.join(partitions[:8])}) to "
            f"consumer group {group!r}: Kafka did not take the shutdown's commit; the next run reads those "
            "records again"
        )


class BackfillIncomplete(BridgeError):
    """Records up to a backfill's end offsets were neither stored, acknowledged as duplicates nor
    dead-lettered when it ended."""

    def __init__(self, undelivered: dict[str, int]) -> None:
        self.undelivered = undelivered
        total = sum(undelivered.values())
        parts = ", ".join(f"{name}: {n:,}" for name, n in sorted(undelivered.items()))
        if not undelivered:  # stopped before any partition was placed: nothing is known of its ends
            super().__init__("backfill incomplete: stopped before it started reading")
            return
        super().__init__(f"backfill incomplete: {total:,} records not delivered ({parts})")


class StreamError(BridgeError):
    """JetStream refused a stream operation, or the stream cannot be described from the config."""

    exit_code = ExitCode.FAILED

    def __init__(self, stream: str, detail: str) -> None:
        self.stream = stream
        self.detail = detail
        super().__init__(f"stream {stream}: {detail}")


class ApiError(StreamError):
    """An ``{"error": ...}`` answer of the JetStream API."""

    STREAM_NOT_FOUND = 10059

    def __init__(self, stream: str, code: int, err_code: int, description: str) -> None:
        self.code = code
        self.err_code = err_code
        self.description = description
        super().__init__(stream, f"JetStream error {code}/{err_code}: {description}")


class VerifyError(BridgeError):
    """The comparison cannot be made (the config cannot map messages back, a topic is missing...)."""

    exit_code = ExitCode.CONFIG

    def __init__(self, detail: str, exit_code: ExitCode = ExitCode.CONFIG) -> None:
        self.detail = detail
        self.exit_code = exit_code
        super().__init__(detail)


class HttpServerError(BridgeError):
    exit_code = ExitCode.FAILED

    def __init__(self, address: str, detail: str) -> None:
        self.address = address
        self.detail = detail
        super().__init__(f"HTTP server cannot listen on {address}: {detail}")


class TemplateSyntaxError(ValueError):
    """A template that cannot be compiled. ``column`` is the 1-based character offset of the problem."""

    def __init__(self, message: str, column: int, template: str) -> None:
        self.message = message
        self.column = column
        self.template = template
        shown = template if len(template) <= 200 else template[:200] + f"… ({len(template):,} characters)"
        super().__init__(f"{message} at column {column}: {shown}")


class InterpolationError(RecordError):
    """A query that failed while rendering one message (wrong type, payload not JSON, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, kind="interpolation")


class FileRefused(Exception):
    """A file that is not read: missing, unreadable, not a regular file, or over its size limit."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
