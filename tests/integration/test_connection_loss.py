"""bridge.jetstream.client on a real nats-server: a connection lost while frames are still queued for
it closes cleanly — no exception escapes nats-py's read loop or flusher ("Task exception was never
retrieved" at exit, with the rest of the close skipped: subscriptions, transport, callbacks).

The bridge turns nats-py's own reconnection off (it reconnects under tenacity), so a lost connection
makes nats-py close the client from its read loop; nats-py would then write what is still queued to
the transport that just closed. The queued frames are publishes not yet acknowledged, which the
publisher re-sends on its next connection (the fault suite proves that part).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from bridge.jetstream.client import InboxClient

# The bridge runs on uvloop (bridge.run.eventloop), where the write raises; asyncio's own loop hung
# in drain() instead. Both are run.
LOOPS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


async def connected(nats_url: str) -> tuple[InboxClient, asyncio.Event]:
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    async def on_error(exc: Exception) -> None:
        pass

    nc = InboxClient()
    await nc.connect(
        servers=[nats_url], allow_reconnect=False, closed_cb=on_closed, error_cb=on_error, connect_timeout=2
    )
    return nc, closed


@pytest.mark.parametrize("loop", LOOPS)
def test_a_connection_lost_with_frames_queued_closes_without_a_stray_exception(
    nats_url: str, loop: str
) -> None:
    LOOPS[loop](lost_with_frames_queued(nats_url))


async def lost_with_frames_queued(nats_url: str) -> None:
    nc, closed = await connected(nats_url)
    reading = nc._reading_task
    assert reading is not None
    # Queued, not yet handed to the transport (no flush), when the connection goes.
    await nc._send_command(b"PUB conn.loss 5\r\nhello\r\n")
    assert nc._pending_data_size > 0
    nc._transport._io_writer.transport.abort()  # type: ignore[union-attr]

    await asyncio.wait({reading}, timeout=5)
    assert reading.done()
    assert reading.exception() is None  # nats-py's read loop ended without raising
    await asyncio.wait_for(closed.wait(), 5)  # and the close ran to its callbacks
    assert nc.is_closed
    assert nc._pending_data_size == 0


async def test_frames_queued_at_an_orderly_close_are_still_sent(nats_url: str) -> None:
    """Only a lost connection drops what is queued: ``close()`` on a live one flushes it first."""
    watcher, _ = await connected(nats_url)
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_msg(msg) -> None:  # type: ignore[no-untyped-def]
        await got.put(msg.data)

    await watcher.subscribe("conn.orderly", cb=on_msg)
    await watcher.flush()
    nc, closed = await connected(nats_url)
    await nc._send_command(b"PUB conn.orderly 5\r\nhello\r\n")
    await nc.close()
    assert await asyncio.wait_for(got.get(), 5) == b"hello"
    assert closed.is_set()
    await watcher.close()
