"""KafkaSource: the aiokafka consumer behind one small surface.

Owns: building the consumer from ``KafkaSettings`` (brokers, group, TLS, SASL, fetch sizes,
timeouts), subscribing (topics, a pattern, or explicit partitions with start offsets), the
rebalance hooks, pause/resume, positions and high watermarks, and commits of explicit offsets
(never ``commit()`` without offsets). aiokafka's exceptions are translated here into
``bridge.errors``; nothing above this module sees an aiokafka exception.

Security: ``tls`` becomes an ``ssl.SSLContext`` (``bridge.natsopts.ssl_context``; SSL, or SASL_SSL
with ``sasl``), ``sasl`` PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512 (``username``/``password``; the
legacy input's ``user``) or OAUTHBEARER (a static ``token`` and ``extensions``). A refusal during
bootstrap (bad credentials, a certificate that does not verify) is an ``AuthError`` naming it; so is
a security protocol that does not match the listener, recognised by how the bootstrap failed (as
measured against Apache Kafka 4.x):

- ``sasl`` against a PLAINTEXT or SSL listener: the SaslHandshake is answered ILLEGAL_SASL_STATE;
- no ``sasl`` against a SASL listener: ApiVersions is answered, the Metadata request closes the
  connection;
- no ``tls`` against an SSL or SASL_SSL listener: the first request (ApiVersions) closes it;
- ``tls`` against a listener without TLS: the TLS handshake is reset. (Tansu instead waits silently
  for a request: that stays a timeout, with a hint.)
- ``tls`` without ``client_certs`` against a listener that requires one: the handshake completes
  (TLS 1.3), the first request closes the connection.

Compressed record batches are decoded by aiokafka (gzip from the standard library; snappy, lz4 and
zstd with cramjam, a dependency). A batch it cannot decode is an ``UndecodableBatch`` naming the
codec and the partition, never "unreachable".

Without a consumer group (explicit partitions) nothing can be committed: Kafka keeps offsets per
group. Such a run starts from the given offsets (or ``start_offset``) every time.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.abc import AbstractTokenProvider
from aiokafka.errors import (
    AuthenticationFailedError,
    CommitFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    OffsetOutOfRangeError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedCodecError,
    UnsupportedSaslMechanismError,
)

from bridge import kafkaproto, retry
from bridge.config import KafkaSettings
from bridge.errors import AuthError, BridgeError, KafkaUnavailable, LogRewound, UndecodableBatch
from bridge.natsopts import ssl_context

log = structlog.get_logger("bridge.source")

TP = TopicPartition
__all__ = ["TP", "KafkaSource", "RebalanceHooks"]


class RebalanceHooks(Protocol):
    async def partitions_revoked(self, tps: set[TopicPartition]) -> None: ...
    async def partitions_assigned(self, tps: set[TopicPartition]) -> None: ...


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, hooks: RebalanceHooks) -> None:
        self._hooks = hooks

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        tps = set(revoked)
        if tps:
            await self._hooks.partitions_revoked(tps)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        tps = set(assigned)
        if tps:
            await self._hooks.partitions_assigned(tps)


class _StaticToken(AbstractTokenProvider):  # type: ignore[misc]
    """``sasl.token`` (and ``sasl.extensions``) for OAUTHBEARER: a token obtained elsewhere."""

    def __init__(self, token: str, extensions: dict[str, str]) -> None:
        self._token = token
        self._extensions = extensions

    async def token(self) -> str:
        return self._token

    def extensions(self) -> dict[str, str]:
        return dict(self._extensions)


class _BootstrapCauses(logging.Filter):
    """aiokafka only *logs* why each bootstrap broker failed (a SASL or TLS refusal included) and then
    raises a bare "Unable to bootstrap": keep the last cause per broker, and the step it failed at
    (``connect``: TCP, TLS, ApiVersions and SASL; ``metadata``: the first Metadata request), so the error
    can name it. (With ``logger.level`` above ERROR aiokafka does not log it, and the cause stays
    unknown.)"""

    _STEPS = (("Unable connect to", "connect"), ("Unable to request metadata from", "metadata"))

    def __init__(self) -> None:
        super().__init__()
        self.causes: dict[str, BaseException] = {}
        self.steps: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 3 and isinstance(args[2], BaseException):
            msg = str(record.msg)
            for prefix, step in self._STEPS:
                if msg.startswith(prefix):
                    broker = f"{args[0]}:{args[1]}"
                    self.causes[broker] = args[2]
                    self.steps[broker] = step
        return True


_BOOTSTRAP = _BootstrapCauses()
logging.getLogger("aiokafka").addFilter(_BOOTSTRAP)  # aiokafka.client logs as "aiokafka"
kafkaproto.install()  # the bridge never creates topics (bridge.kafkaproto)

_CODEC_MISSING = re.compile(r"Libraries for (\w+) compression codec not found")
_CODEC_UNKNOWN = re.compile(r"Unknown compression codec (\S+)")


def undecodable_batch(exc: UnsupportedCodecError, brokers: str) -> UndecodableBatch:
    """aiokafka names the codec but not the batch: the partition and the batch's offset are locals of
    the fetcher's generator that was decoding it (``PartitionRecords._unpack_records``: ``tp`` and
    ``next_batch``, aiokafka 0.12 – 0.14), read from the traceback. The unit tests decode a real batch
    through that generator."""
    where = "a fetched partition"
    tb = exc.__traceback__
    while tb is not None:  # the innermost frame that knows wins
        local = tb.tb_frame.f_locals
        tp = local.get("tp")
        if isinstance(tp, TopicPartition):
            where = f"{tp.topic}/{tp.partition}"
            batch_offset = getattr(local.get("next_batch"), "base_offset", None)
            if isinstance(batch_offset, int):
                where += f" at offset {batch_offset}"
        tb = tb.tb_next
    said = str(exc)
    if m := _CODEC_MISSING.search(said):
        hint = (
            " (aiokafka decodes snappy, lz4 and zstd with cramjam: pip install 'aiokafka[snappy,lz4,zstd]')"
        )
        return UndecodableBatch(brokers, where, m.group(1), hint)
    if m := _CODEC_UNKNOWN.search(said):
        return UndecodableBatch(brokers, where, f"an unknown codec ({m.group(1)})")
    return UndecodableBatch(brokers, where, f"a codec aiokafka does not support ({said})")


def listener_mismatch(
    cause: BaseException, step: str, server: str, *, tls: bool, sasl: str | None
) -> AuthError | None:
    """The security-protocol mismatch a bootstrap failure shows (see the module docstring), or None."""
    if isinstance(cause, IllegalSaslStateError):
        return AuthError(
            server,
            "the listener does not speak SASL "
            "(is it a PLAINTEXT or SSL listener? check the port or remove sasl)",
            refused="SASL",
        )
    if isinstance(cause, UnsupportedSaslMechanismError) and sasl and "Enabled mechanisms" not in str(cause):
        # answered with the error code alone (aiokafka drops the list of mechanisms the broker sent)
        return AuthError(
            server,
            f"the listener does not offer the SASL mechanism {sasl} "
            "(check sasl.mechanism, and that this listener speaks SASL at all)",
            refused="SASL",
        )
    closed = isinstance(cause, KafkaConnectionError) and str(cause).endswith(" closed")
    if tls and step == "connect" and isinstance(cause, ConnectionResetError | asyncio.IncompleteReadError):
        return AuthError(
            server,
            "the listener reset the connection during the TLS handshake: it does not speak TLS "
            "(is it a PLAINTEXT or SASL_PLAINTEXT listener? check the port or remove tls)",
            refused="TLS",
        )
    if tls and step == "connect" and closed:
        return AuthError(
            server,
            "it closed the connection after the TLS handshake, at the first request, as a listener that "
            "requires a client certificate does to a client without one (set tls.client_certs)",
        )
    if not tls and step == "connect" and closed:
        return AuthError(
            server,
            "it closed the connection at the first request, as a TLS listener does to a client without "
            "TLS (is it an SSL or SASL_SSL listener? check the port or set tls.enabled: true)",
        )
    if not sasl and step == "metadata" and closed:
        return AuthError(
            server,
            "it answered the version request, then closed the connection at the metadata request, as a "
            "SASL listener does to a client without SASL (is it a SASL_PLAINTEXT or SASL_SSL listener? "
            "check the port or set sasl)",
        )
    return None


class KafkaSource:
    def __init__(self, settings: KafkaSettings, hooks: RebalanceHooks) -> None:
        self.settings = settings
        self._hooks = hooks
        self._consumer: Any = None
        self._paused: set[TopicPartition] = set()
        self._closed = False
        self.brokers = ",".join(settings.brokers)

    # ------------------------------------------------------------------ lifecycle

    def _consumer_options(self) -> dict[str, Any]:
        s = self.settings
        opts: dict[str, Any] = {
            "bootstrap_servers": list(s.brokers),
            "client_id": s.client_id,
            "group_id": s.group or None,
            "enable_auto_commit": False,
            "auto_offset_reset": {"earliest": "earliest", "latest": "latest", "committed": "none"}[
                s.start_offset
            ],
            "fetch_max_bytes": s.fetch_max_bytes,
            "fetch_min_bytes": s.fetch_min_bytes,
            "max_partition_fetch_bytes": s.fetch_max_partition_bytes,
            # Capped at 100 ms: a broker that holds a fetch for max_wait although min_bytes are there
            # (Tansu does) adds that much latency; the bench measured p50 81 → 47 ms on Tansu at 5k rec/s.
            # Kafka answers as soon as fetch_min_bytes are there, so for it the cap changes nothing.
            "fetch_max_wait_ms": int(min(s.fetch_max_wait, 0.1) * 1000),
            "isolation_level": s.isolation_level,
            "metadata_max_age_ms": int(s.metadata_max_age * 1000),
            # A JoinGroup answer can legitimately take the rebalance timeout (Kafka) or half the session
            # timeout (Tansu): the request must outlive both.
            "request_timeout_ms": int(
                (max(s.request_timeout, s.rebalance_timeout, s.session_timeout) + 5.0) * 1000
            ),
            "session_timeout_ms": int(s.session_timeout * 1000),
            "heartbeat_interval_ms": int(s.heartbeat_interval * 1000),
            "rebalance_timeout_ms": int(s.rebalance_timeout * 1000),
            "max_poll_interval_ms": max(int(s.rebalance_timeout * 1000), 300_000),
            "client_rack": s.rack_id or None,
        }
        if s.instance_id:
            opts["group_instance_id"] = s.instance_id
        ctx = ssl_context(s.tls, where=f"input.{s.kind}.tls")  # ConfigError if its files do not load
        for broker in s.brokers:
            _BOOTSTRAP.causes.pop(broker, None)
            _BOOTSTRAP.steps.pop(broker, None)
        if ctx is not None:
            opts["ssl_context"] = ctx
        if s.sasl is not None and s.sasl.mechanism != "none":
            opts["security_protocol"] = "SASL_SSL" if ctx is not None else "SASL_PLAINTEXT"
            opts["sasl_mechanism"] = s.sasl.mechanism
            if s.sasl.mechanism == "OAUTHBEARER":
                extensions = {k: v.get_secret_value() for k, v in s.sasl.extensions.items()}
                opts["sasl_oauth_token_provider"] = _StaticToken(s.sasl.token.get_secret_value(), extensions)
            else:
                opts["sasl_plain_username"] = s.sasl.username
                opts["sasl_plain_password"] = s.sasl.password.get_secret_value()
        elif ctx is not None:
            opts["security_protocol"] = "SSL"
        return opts

    def _translate(self, exc: BaseException) -> BridgeError:
        if isinstance(exc, BridgeError):
            return exc
        if isinstance(exc, UnsupportedCodecError):
            return undecodable_batch(exc, self.brokers)
        auth = (
            AuthenticationFailedError, SaslAuthenticationFailed, UnsupportedSaslMechanismError,
            TopicAuthorizationFailedError, GroupAuthorizationFailedError,
        )  # fmt: skip
        if isinstance(exc, KafkaConnectionError) and "Unable to bootstrap" in str(exc):
            found = [b for b in self.settings.brokers if b in _BOOTSTRAP.causes]
            s = self.settings
            sasl = s.sasl.mechanism if s.sasl is not None and s.sasl.mechanism != "none" else None
            for broker in reversed(found):
                mismatch = listener_mismatch(
                    _BOOTSTRAP.causes[broker], _BOOTSTRAP.steps.get(broker, "connect"),
                    f"Kafka ({self.brokers})", tls=s.tls.enabled, sasl=sasl,
                )  # fmt: skip
                if mismatch is not None:
                    return mismatch
            causes = [_BOOTSTRAP.causes[b] for b in found]
            refused = [c for c in causes if isinstance(c, (*auth, ssl.SSLError))]
            if refused:
                exc = refused[-1]
            elif causes:
                detail = f"{exc}: {causes[-1]}"
                if isinstance(causes[-1], TimeoutError) and s.tls.enabled:
                    # Tansu, for one, waits silently for a request after a TLS ClientHello
                    detail += " (no answer to the TLS handshake: does this listener speak TLS?)"
                return KafkaUnavailable(self.brokers, detail)
        if isinstance(exc, auth):
            return AuthError(f"Kafka ({self.brokers})", str(exc) or type(exc).__name__)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return AuthError(
                f"Kafka ({self.brokers})", f"TLS certificate verify failed: {exc.verify_message}"
            )
        if isinstance(exc, ssl.SSLError):
            return AuthError(f"Kafka ({self.brokers})", f"TLS failed: {exc.reason or exc}")
        detail = str(exc) or type(exc).__name__
        return KafkaUnavailable(self.brokers, detail)

    async def start(self) -> None:
        """Connect and subscribe (or assign). Raises KafkaUnavailable / AuthError."""
        async for attempt in retry.kafka_connect(self.brokers):
            with attempt:
                await self._start_once()
        s = self.settings
        if s.explicit:
            tps = [TopicPartition(e.topic, p) for e in s.explicit for p in e.partitions]
            known = await self._known_partitions({e.topic for e in s.explicit})
            missing = [tp for tp in tps if tp not in known]
            if missing:
                names = ", ".join(f"{tp.topic}:{tp.partition}" for tp in missing)
                raise KafkaUnavailable(self.brokers, f"no such partition: {names}")
            self._consumer.assign(tps)
            for e in s.explicit:
                if e.offset is not None:
                    for p in e.partitions:
                        self._consumer.seek(TopicPartition(e.topic, p), e.offset)
            await self._hooks.partitions_assigned(set(tps))
        elif s.regexp:
            pattern = "|".join(f"(?:{t})" for t in s.topics)
            self._consumer.subscribe(pattern=f"^(?:{pattern})$", listener=_Listener(self._hooks))
        else:
            self._consumer.subscribe(topics=list(s.topics), listener=_Listener(self._hooks))
        log.info("kafka_started", brokers=self.brokers, group=s.group or None, topics=list(s.topics) or None)

    async def missing_topics(self) -> list[str]:
        """Named topics (not patterns, not explicit partitions) that the cluster does not have."""
        if self.settings.regexp or self.settings.explicit:
            return []
        try:
            existing = await self._consumer.topics()
        except KafkaError as exc:
            raise self._translate(exc) from exc
        return [t for t in self.settings.topics if t not in existing]

    async def topic_ids(self, topics: Iterable[str]) -> dict[str, str]:
        """Each topic's ID, ``""`` when it does not exist (any more) or the broker reports none."""
        try:
            return await kafkaproto.topic_ids(self._consumer._client, sorted(set(topics)))
        except KafkaError as exc:
            raise self._translate(exc) from exc

    async def _start_once(self) -> None:
        consumer = AIOKafkaConsumer(**self._consumer_options())
        try:
            await consumer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            await _quiet_stop(consumer)
            raise self._translate(exc) from exc
        self._consumer = consumer

    async def _known_partitions(self, topics: set[str]) -> set[TopicPartition]:
        known: set[TopicPartition] = set()
        for topic in topics:
            parts = self._consumer.partitions_for_topic(topic)
            if parts is None:
                await self._consumer._client.force_metadata_update()
                parts = self._consumer.partitions_for_topic(topic) or set()
            known |= {TopicPartition(topic, p) for p in parts}
        return known

    async def aclose(self) -> None:
        """Leave the group and close. Idempotent."""
        if self._closed or self._consumer is None:
            return
        self._closed = True
        await _quiet_stop(self._consumer)

    # ------------------------------------------------------------------ consuming

    async def fetch(self, max_records: int, wait: float) -> dict[TopicPartition, list[Any]]:
        try:
            result: dict[TopicPartition, list[Any]] = await self._consumer.getmany(
                timeout_ms=int(wait * 1000), max_records=max_records
            )
        except OffsetOutOfRangeError as exc:
            # start_offset: committed (no reset policy) and a committed offset past the end of the log
            tp, offset = (
                next(iter(exc.args[0].items())) if exc.args and isinstance(exc.args[0], dict) else (None, 0)
            )
            if tp is None:
                raise self._translate(exc) from exc
            raise LogRewound(
                tp.topic, tp.partition,
                f"offset {offset} is past the end of its log (the topic was deleted and created again, "
                "or truncated)",
            ) from exc  # fmt: skip
        except KafkaError as exc:
            raise self._translate(exc) from exc
        return result

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment())

    def highwater(self, tp: TopicPartition) -> int | None:
        hw: int | None = self._consumer.highwater(tp)
        return hw

    async def position(self, tp: TopicPartition) -> int:
        pos: int = await self._consumer.position(tp)
        return pos

    def set_paused(self, wanted: set[TopicPartition]) -> None:
        """Pause exactly ``wanted`` (among assigned partitions), resume the rest."""
        assigned = self.assignment()
        wanted &= assigned
        newly = wanted - self._paused
        resumed = (self._paused - wanted) & assigned
        if newly:
            self._consumer.pause(*newly)
        if resumed:
            self._consumer.resume(*resumed)
        self._paused = wanted

    async def reset_to_start(self, tps: Sequence[TopicPartition]) -> None:
        """Place partitions where ``start_offset`` says, as if the group had committed nothing for them."""
        policy = self.settings.start_offset
        if policy == "earliest":
            await self._consumer.seek_to_beginning(*tps)
        elif policy == "latest":
            await self._consumer.seek_to_end(*tps)
        else:
            tp = tps[0]
            raise LogRewound(
                tp.topic, tp.partition,
                "its committed offset was made for an earlier topic of the same name, and start_offset: "
                "committed has no other place to start",
            )  # fmt: skip

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._consumer.seek(tp, offset)

    async def seek_to_beginning(self, tps: Sequence[TopicPartition]) -> None:
        await self._consumer.seek_to_beginning(*tps)

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        try:
            result: dict[TopicPartition, int] = await self._consumer.end_offsets(list(tps))
        except KafkaError as exc:
            raise self._translate(exc) from exc
        return result

    async def offsets_for_times(
        self, tps: Sequence[TopicPartition], ts_ms: int
    ) -> dict[TopicPartition, int | None]:
        found = await self._consumer.offsets_for_times({tp: ts_ms for tp in tps})
        return {tp: (None if v is None else v.offset) for tp, v in found.items()}

    async def committed(self, tp: TopicPartition) -> int | None:
        value: int | None = await self._consumer.committed(tp)
        return value

    async def committed_topic_ids(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, str]:
        """The topic ID each partition's committed offset was committed for (``commit(..., topic_ids)``);
        partitions without a commit, or committed by another tool, are left out."""
        if not self.has_group or not tps:
            return {}
        try:
            found = await kafkaproto.committed_metadata(self._consumer, list(tps))
        except KafkaError as exc:
            raise self._translate(exc) from exc
        out: dict[TopicPartition, str] = {}
        for tp, metadata in found.items():
            topic_id = kafkaproto.topic_id_of_commit(metadata)
            if topic_id is not None:
                out[tp] = topic_id
        return out

    @property
    def has_group(self) -> bool:
        return bool(self.settings.group)

    async def commit(
        self, offsets: dict[TopicPartition, int], topic_ids: dict[str, str] | None = None
    ) -> bool:
        """Commit explicit offsets (the next offset to read), each with the ID of the topic it was read
        from (``topic_ids``) as its commit metadata. False when the group is rebalancing or the partitions
        are no longer ours: the revocation hook has committed what was safe."""
        if not offsets or not self.has_group:
            return True
        ids = topic_ids or {}
        payload = {tp: (o, kafkaproto.commit_metadata(ids.get(tp.topic, ""))) for tp, o in offsets.items()}
        try:
            async for attempt in retry.kafka_commit():
                with attempt:
                    try:
                        await self._consumer.commit(payload)
                    except KafkaConnectionError as exc:
                        raise KafkaUnavailable(self.brokers, str(exc)) from exc
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit_skipped", reason=str(exc), partitions=len(offsets))
            return False
        except KafkaUnavailable as exc:
            log.warning("commit_failed", error=str(exc), partitions=len(offsets))
            return False
        except KafkaError as exc:
            if getattr(exc, "retriable", False):
                log.warning("commit_failed", error=str(exc), partitions=len(offsets))
                return False
            raise self._translate(exc) from exc
        return True


async def _quiet_stop(consumer: Any) -> None:
    try:
        await consumer.stop()
    except Exception as exc:  # a consumer that failed to start may fail to stop; nothing is lost
        log.debug("consumer_stop_error", error=str(exc))
