"""The runtime every command runs on: uvloop where it is installed, and a calmer garbage collector.

uvloop is a runtime dependency on Linux and macOS because the bench measured it: end-to-end backfill
of 1,000,000 200-byte records rose from ~72k to ~95k records/s on this project's 2-core reference
machine (brokers on the same cores). Set ``KJB_EVENT_LOOP=asyncio`` to use the standard loop.

The cyclic garbage collector ran a generation-0 pass every 700 allocations: the hot path allocates
a few objects per record, freed by reference counting, so those passes found nothing and cost ~10%
of the end-to-end rate (5 alternating runs each: 69.6k → 76.4k records/s). ``run()`` freezes what
start-up allocated and collects generation 0 every 50,000 allocations instead.
"""

from __future__ import annotations

import asyncio
import gc
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


GC_THRESHOLDS = (50_000, 50, 1000)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the chosen loop, with the collector tuned for the hot path."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)
