"""The event loop every command runs on: uvloop where it is installed, asyncio's otherwise.

uvloop is a runtime dependency on Linux and macOS because the bench measured it: end-to-end backfill
of 1,000,000 200-byte records rose from ~72k to ~95k records/s on this project's 2-core reference
machine (brokers on the same cores). Set ``KJB_EVENT_LOOP=asyncio`` to use the standard loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's default."""
    if os.environ.get("KJB_EVENT_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)
