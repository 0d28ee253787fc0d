"""Reading a stream back: every message up to its last sequence at start, and which stream holds the
output's subjects. For ``verify`` and ``translate``.

Owns ``read_stream`` (an ephemeral pull consumer, no acks, in memory, deleted after; headers only when
asked) and ``resolve_stream``: ``--stream``, else ``bridge.stream.name``, else the one stream bound to
the output's subjects (``bridge.jetstream.streams.subjects_for``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import structlog
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from bridge.core.config import Loaded
from bridge.core.errors import ExitCode, StreamError, VerifyError
from bridge.jetstream.streams import api, stream_info, subjects_for

__all__ = ["StreamMessage", "read_stream", "resolve_stream"]

log = structlog.get_logger("bridge.verify")  # the logger's name is part of the log format: kept

FETCH_BATCH = 1000


@dataclass(frozen=True, slots=True)
class StreamMessage:
    seq: int
    subject: str
    headers: Mapping[str, str]
    data: bytes


async def resolve_stream(nc: NatsClient, loaded: Loaded, explicit: str | None) -> str:
    """``--stream``, else ``bridge.stream.name``, else the one stream bound to the output's subjects."""
    if explicit:
        return explicit
    if loaded.config.bridge.stream is not None:
        return loaded.config.bridge.stream.name
    try:
        subjects = subjects_for(loaded)
    except StreamError as exc:
        raise VerifyError(f"{exc.detail}; or name the stream with --stream") from exc
    names: set[str] = set()
    for subject in subjects:
        answer = await api(nc, "STREAM.NAMES", {"subject": subject}, "?")
        names.update(answer.get("streams") or ())
    if len(names) != 1:
        found = ", ".join(sorted(names)) or "none"
        raise VerifyError(
            f"cannot tell which stream holds {', '.join(subjects)} (found: {found}): use --stream"
        )
    return names.pop()


async def read_stream(
    nc: NatsClient, stream: str, *, headers_only: bool = False
) -> AsyncIterator[StreamMessage]:
    """Every message of ``stream`` up to its last sequence now, in sequence order."""
    info = await stream_info(nc, stream)
    if info is None:
        raise VerifyError(f"no stream named {stream!r}", ExitCode.FAILED)
    state = info.get("state", {})
    last = int(state.get("last_seq", 0))
    if not state.get("messages"):
        return
    js = nc.jetstream()
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL,
        headers_only=headers_only or None,
        inactive_threshold=60.0,
        mem_storage=True,
        num_replicas=1,
    )
    consumer = await js.add_consumer(stream, config)
    name = consumer.name
    assert name is not None
    sub = await js.pull_subscribe_bind(consumer=name, stream=stream)
    try:
        while True:
            try:
                msgs = await sub.fetch(batch=FETCH_BATCH, timeout=5)
            except TimeoutError:  # nats.errors.TimeoutError is one: nothing left to deliver
                return
            for msg in msgs:
                meta = msg.metadata
                seq = meta.sequence.stream
                yield StreamMessage(seq, msg.subject, msg.headers or {}, msg.data)
                if seq >= last:
                    return
            if msgs and msgs[-1].metadata.num_pending == 0:
                return
    finally:
        await sub.unsubscribe()
        try:
            await js.delete_consumer(stream, name)
        except (NotFoundError, TimeoutError) as exc:  # ephemeral: it goes away on its own anyway
            log.debug("consumer_delete_failed", error=str(exc))
