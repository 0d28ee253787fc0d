"""aiokafka's exceptions → the project's errors: ``translate(exc, settings)``, the one translation of the
Kafka side, used by the source, the reader, ``verify`` and ``translate`` alike (httpx's
``map_exceptions`` is the model), so a refused connection reads the same in every command.

A refusal during bootstrap (bad credentials, a certificate that does not verify) is an ``AuthError``
naming it; so is a security protocol that does not match the listener, recognised by how the bootstrap
failed (``listener_mismatch``, as measured against Apache Kafka 4.x):

- ``sasl`` against a PLAINTEXT or SSL listener: the SaslHandshake is answered ILLEGAL_SASL_STATE;
- no ``sasl`` against a SASL listener: ApiVersions is answered, the Metadata request closes the
  connection;
- no ``tls`` against an SSL or SASL_SSL listener: the first request (ApiVersions) closes it;
- ``tls`` against a listener without TLS: the TLS handshake is reset. (Tansu instead waits silently
  for a request: that stays a timeout, with a hint.)
- ``tls`` without ``client_certs`` against a listener that requires one: the handshake completes
  (TLS 1.3), the first request closes the connection.

aiokafka only *logs* why each bootstrap broker failed and then raises a bare "Unable to bootstrap":
a logging filter keeps the last cause per broker (``forget_causes`` clears them before a client
starts). A record batch aiokafka cannot decode is an ``UndecodableBatch`` naming the codec and the
partition (``undecodable_batch``), never "unreachable". Anything else is ``KafkaUnavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Iterable

from aiokafka.errors import (
    AuthenticationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedCodecError,
    UnsupportedSaslMechanismError,
)

from bridge.core.config import KafkaSettings
from bridge.core.errors import AuthError, BridgeError, KafkaUnavailable, UndecodableBatch, UnreadableRecord
from bridge.kafka.protocol import batch_of

__all__ = ["forget_causes", "listener_mismatch", "translate", "undecodable_batch"]

_AUTH = (
    AuthenticationFailedError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
)


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

_CODEC_MISSING = re.compile(r"Libraries for (\w+) compression codec not found")
_CODEC_UNKNOWN = re.compile(r"Unknown compression codec (\S+)")


def undecodable_batch(exc: UnsupportedCodecError, brokers: str) -> UndecodableBatch:
    """aiokafka names the codec but not the batch: the partition and the batch's offset come from the
    fetcher's generator that was decoding it (``bridge.kafka.protocol.batch_of``)."""
    where = batch_of(exc)
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


def forget_causes(brokers: Iterable[str]) -> None:
    """Drop what earlier bootstraps left for ``brokers``: call before a client starts."""
    for broker in brokers:
        _BOOTSTRAP.causes.pop(broker, None)
        _BOOTSTRAP.steps.pop(broker, None)


def translate(exc: BaseException, settings: KafkaSettings) -> BridgeError:
    """The project's error for an aiokafka (or socket, TLS) exception met talking to ``settings``' brokers."""
    if isinstance(exc, BridgeError):
        return exc
    brokers = ",".join(settings.brokers)
    if isinstance(exc, UnsupportedCodecError):
        return undecodable_batch(exc, brokers)
    if isinstance(exc, UnicodeDecodeError):  # aiokafka decodes header names as UTF-8
        return UnreadableRecord(brokers, batch_of(exc), "a record header name that is not UTF-8")
    if isinstance(exc, KafkaConnectionError) and "Unable to bootstrap" in str(exc):
        found = [b for b in settings.brokers if b in _BOOTSTRAP.causes]
        s = settings
        sasl = s.sasl.mechanism if s.sasl is not None and s.sasl.mechanism != "none" else None
        for broker in reversed(found):
            mismatch = listener_mismatch(
                _BOOTSTRAP.causes[broker],
                _BOOTSTRAP.steps.get(broker, "connect"),
                f"Kafka ({brokers})",
                tls=s.tls.enabled,
                sasl=sasl,
            )
            if mismatch is not None:
                return mismatch
        causes = [_BOOTSTRAP.causes[b] for b in found]
        refused = [c for c in causes if isinstance(c, (*_AUTH, ssl.SSLError))]
        if refused:
            exc = refused[-1]
        elif causes:
            cause = causes[-1]
            said = str(cause) or type(cause).__name__
            if isinstance(cause, TimeoutError | asyncio.TimeoutError):
                said = "the broker accepted the connection but did not answer in time"
            detail = f"{exc}: {said}"
            if isinstance(causes[-1], TimeoutError) and s.tls.enabled:
                # Tansu, for one, waits silently for a request after a TLS ClientHello
                detail += " (no answer to the TLS handshake: does this listener speak TLS?)"
            return KafkaUnavailable(brokers, detail)
    if isinstance(exc, _AUTH):
        return AuthError(f"Kafka ({brokers})", str(exc) or type(exc).__name__)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return AuthError(f"Kafka ({brokers})", f"TLS certificate verify failed: {exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        return AuthError(f"Kafka ({brokers})", f"TLS failed: {exc.reason or exc}")
    detail = str(exc) or type(exc).__name__
    return KafkaUnavailable(brokers, detail)
