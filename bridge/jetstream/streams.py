"""Stream provisioning: make the JetStream stream match ``bridge.stream``, and admin connections.

Owns:

- ``subjects_for(loaded)``: the stream's subjects: ``bridge.stream.subjects``, else derived from the
  output subject (and the dead-letter subject): the static tokens before the first ``${! }`` plus
  ``>`` (``kafka.${! meta("kafka_topic") }`` → ``kafka.>``); a static subject is taken as it is.
- ``ensure(loaded)``: create the stream, or update it, through the raw JetStream API (``$JS.API.
  STREAM.INFO|CREATE|UPDATE``) so that fields this client library does not know survive an update.
  On update only the fields written in the config are enforced, plus the subjects: explicit
  ``subjects`` replace the stream's; derived ones are added to them. Changes the server refuses
  (storage type, for example) come back as ``StreamError`` with the server's description.
- ``admin_connection(loaded)``: one short NATS connection with the output's URLs, TLS and auth, for
  ``streams ensure``, ``verify`` and ``translate``; connection failures become ``NatsUnavailable``
  or ``AuthError`` through the publisher's own translation (``bridge.jetstream.errors``).

Durations travel in nanoseconds on the wire; ``max_*`` limits use ``-1`` for unlimited and
``max_age`` ``0``, as JetStream does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import structlog
from nats.aio.client import Client as NatsClient

from bridge.core.config import Loaded, StreamSection
from bridge.core.errors import ApiError, StreamError
from bridge.jetstream.errors import translate
from bridge.jetstream.options import connect_options, split_url_credentials
from bridge.ops.log import redact_text
from bridge.run import retry

log = structlog.get_logger("bridge.streams")

API_TIMEOUT = 5.0
NS = 1_000_000_000

# StreamSection field → (JetStream API key, conversion to the wire value)
_FIELDS: dict[str, tuple[str, Any]] = {
    "storage": ("storage", str),
    "replicas": ("num_replicas", int),
    "retention": ("retention", str),
    "discard": ("discard", str),
    "duplicate_window": ("duplicate_window", lambda s: round(s * NS)),
    "max_age": ("max_age", lambda s: round(s * NS)),
    "max_bytes": ("max_bytes", int),
    "max_msgs": ("max_msgs", int),
    "max_msgs_per_subject": ("max_msgs_per_subject", int),
    "max_msg_size": ("max_msg_size", int),
    "compression": ("compression", str),
    "allow_direct": ("allow_direct", bool),
    "description": ("description", str),
}
_DURATIONS = {"duplicate_window", "max_age"}


# ---------------------------------------------------------------------------------------- subjects


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard match: ``*`` is one token, a final ``>`` one or more tokens."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(s) == len(p)


def _wildcard_for(template: str) -> str | None:
    """The subjects a (possibly interpolated) subject template can render to, as one wildcard."""
    start = template.find("${!")
    if start < 0:
        return template
    tokens = template[:start].split(".")
    complete = tokens[:-1]  # the last token is (partly) interpolated
    if not complete or not all(complete):
        return None
    return ".".join(complete) + ".>"


def subjects_for(loaded: Loaded) -> tuple[str, ...]:
    """The stream's subjects: configured, or derived from the output (and dead-letter) subject."""
    section = loaded.config.bridge.stream
    if section is not None and section.subjects:
        return section.subjects
    name = section.name if section is not None else "?"
    templates = [loaded.output.subject]
    if loaded.config.bridge.dead_letter is not None:
        templates.append(loaded.config.bridge.dead_letter.subject)
    derived: list[str] = []
    for template in templates:
        wildcard = _wildcard_for(template)
        if wildcard is None:
            raise StreamError(
                name,
                f"cannot derive the stream's subjects from {template!r} (its first token is "
                "interpolated): set bridge.stream.subjects",
            )
        derived.append(wildcard)
    # Drop subjects another one covers: a stream's subjects may not overlap.
    out: list[str] = []
    for subject in derived:
        if any(other != subject and subject_matches(other, subject) for other in derived):
            continue
        if subject not in out:
            out.append(subject)
    return tuple(out)


# ---------------------------------------------------------------------------------------- config


def desired_config(section: StreamSection, subjects: tuple[str, ...]) -> dict[str, Any]:
    """The full stream config for a create (every field, defaults included)."""
    cfg: dict[str, Any] = {"name": section.name, "subjects": list(subjects)}
    for attr, (key, convert) in _FIELDS.items():
        value = getattr(section, attr)
        if attr == "description" and not value:
            continue
        cfg[key] = convert(value)
    return cfg


_SIZES = ("max_bytes", "max_msg_size")
_LIMITS = ("max_bytes", "max_msg_size", "max_msgs", "max_msgs_per_subject")
_UNITS = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def _show(attr: str, value: Any) -> str:
    """A field's value as ``streams ensure`` reports a change: durations in seconds, limits with what -1
    means, sizes with their unit (``10485760 (10 MiB)``)."""
    if attr in _DURATIONS and isinstance(value, int | float):
        return f"{value / NS:g}s"
    if attr in _LIMITS and value == -1:
        return "-1 (no limit)"
    if attr in _SIZES and isinstance(value, int) and value > 0:
        for unit, size in _UNITS:
            if value >= size:
                return f"{value} ({value / size:.3g} {unit})"
    return json.dumps(value)


def planned_update(
    section: StreamSection, subjects: tuple[str, ...], current: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The updated config (``current`` with the enforced fields changed) and the changes, described."""
    updated = dict(current)
    changes: list[str] = []
    have = list(current.get("subjects") or [])
    if section.subjects:
        wanted = list(subjects)
        if sorted(have) != sorted(wanted):
            updated["subjects"] = wanted
            changes.append(f"subjects: {json.dumps(have)} → {json.dumps(wanted)}")
    else:
        missing = [s for s in subjects if not any(subject_matches(h, s) for h in have)]
        if missing:
            updated["subjects"] = have + missing
            changes.append(f"subjects: {json.dumps(have)} → {json.dumps(updated['subjects'])}")
    for attr in sorted(section.model_fields_set & set(_FIELDS)):
        key, convert = _FIELDS[attr]
        value = convert(getattr(section, attr))
        old = current.get(key, "" if attr == "description" else None)
        if attr == "compression" and old is None:
            old = "none"
        if old != value:
            updated[key] = value
            changes.append(f"{attr}: {_show(attr, old)} → {_show(attr, value)}")
    return updated, changes


# ---------------------------------------------------------------------------------------- NATS


@asynccontextmanager
async def admin_connection(loaded: Loaded) -> AsyncIterator[NatsClient]:
    """A short-lived NATS connection made like the publisher's (URLs, TLS, auth), closed on exit."""
    # checked: TLS material or credentials that do not load are a ConfigError, not a plain connection
    opts = connect_options(loaded.output, loaded.config.output.label or "kafka-jetstream-bridge").checked()
    servers = ",".join(opts.get("servers", []))
    last: list[BaseException] = []

    async def error_cb(exc: Exception) -> None:
        last.append(exc)

    nc = NatsClient()
    try:
        await nc.connect(**opts, error_cb=error_cb)
    except Exception as exc:
        cause = last[-1] if last and isinstance(exc, nats.errors.NoServersError) else exc
        raise translate(cause, servers, tls="tls" in opts) from exc
    try:
        yield nc
    finally:
        if not nc.is_closed:
            try:
                await nc.close()
            except Exception as exc:  # closing a broken connection: nothing left to do
                log.debug("nats_close_error", error=str(exc))


async def api(nc: NatsClient, subject: str, body: dict[str, Any] | None, stream: str) -> dict[str, Any]:
    """One JetStream API request; an ``{"error": ...}`` answer raises ``StreamError``."""
    payload = b"" if body is None else json.dumps(body).encode()
    try:
        msg = await nc.request(f"$JS.API.{subject}", payload, timeout=API_TIMEOUT)
    except nats.errors.NoRespondersError as exc:
        raise StreamError(stream, "JetStream is not enabled on this server (no responders)") from exc
    except nats.errors.TimeoutError as exc:
        raise StreamError(stream, f"no answer from the JetStream API within {API_TIMEOUT:g}s") from exc
    answer: dict[str, Any] = json.loads(msg.data)
    error = answer.get("error")
    if error:
        raise ApiError(
            stream,
            int(error.get("code", 0)),
            int(error.get("err_code", 0)),
            str(error.get("description", "")),
        )
    return answer


async def stream_info(nc: NatsClient, name: str) -> dict[str, Any] | None:
    """The raw ``STREAM.INFO`` answer, or None when there is no such stream."""
    try:
        return await api(nc, f"STREAM.INFO.{name}", None, name)
    except ApiError as exc:
        if exc.err_code == ApiError.STREAM_NOT_FOUND or exc.code == 404:
            return None
        raise


@dataclass(frozen=True, slots=True)
class Ensured:
    stream: str
    action: str  # created | updated | unchanged
    subjects: tuple[str, ...]
    changes: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        head = f"stream {self.stream} {self.action} (subjects {', '.join(self.subjects)})"
        return head + "".join(f"\n  {c}" for c in self.changes)


async def ensure_with(nc: NatsClient, loaded: Loaded) -> Ensured:
    section = loaded.config.bridge.stream
    if section is None:
        raise StreamError("?", "no bridge.stream section in the config")
    subjects = subjects_for(loaded)
    info = await stream_info(nc, section.name)
    if info is None:
        cfg = desired_config(section, subjects)
        created = await api(nc, f"STREAM.CREATE.{section.name}", cfg, section.name)
        result = Ensured(section.name, "created", subjects, (), created.get("config", cfg))
    else:
        current = info.get("config", {})
        updated, changes = planned_update(section, subjects, current)
        if not changes:
            result = Ensured(section.name, "unchanged", tuple(current.get("subjects") or ()), (), current)
        else:
            answer = await api(nc, f"STREAM.UPDATE.{section.name}", updated, section.name)
            config = answer.get("config", updated)
            result = Ensured(
                section.name, "updated", tuple(config.get("subjects") or ()), tuple(changes), config
            )
    log.info(
        "stream_ensured",
        stream=result.stream,
        action=result.action,
        subjects=list(result.subjects),
        changes=list(result.changes) or None,
    )
    return result


async def ensure(loaded: Loaded, *, patient: bool = False) -> Ensured:
    """Create or update ``bridge.stream`` (one admin connection). ``patient``: connect under the
    pipeline's own policy (``max_reconnects`` attempts, ``reconnect_wait`` apart), as ``run`` does."""
    if not patient:
        async with admin_connection(loaded) as nc:
            return await ensure_with(nc, loaded)
    servers = redact_text(",".join(split_url_credentials(loaded.output.urls)[0]))
    policy = retry.nats_connect(loaded.output.max_reconnects, loaded.config.bridge.reconnect_wait, servers)
    async for attempt in policy:
        with attempt:
            async with admin_connection(loaded) as nc:
                return await ensure_with(nc, loaded)
    raise AssertionError("unreachable: the policy re-raises its last error")
