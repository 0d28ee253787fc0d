"""The runtime every command runs on: uvloop where it is installed, and a calmer garbage collector.

uvloop is a runtime dependency on Linux and macOS because the bench measured it: end-to-end backfill
of 1,000,000 200-byte records rose from ~72k to ~95k records/s on this project's 2-core reference
machine (brokers on the same cores). Set ``KJB_EVENT_LOOP=asyncio`` to use the standard loop.

The cyclic garbage collector ran a generation-0 pass every 700 allocations: the hot path allocates
a few objects per record, freed by reference counting, so those passes found nothing and cost ~10%
of the end-to-end rate (5 alternating runs each: 69.6k → 76.4k records/s). ``run()`` freezes what
start-up allocated and collects generation 0 every 50,000 allocations instead.

That threshold counts allocations *net of* deallocations, and a steady pipeline frees what it
allocates: the automatic collector then never runs at all. Some libraries leave cyclic garbage
behind, though — aiokafka drops the buffered fetch of a partition when it is paused (here: when a
partition reaches ``checkpoint_limit``), and that object holds a generator that refers back to it,
with the fetched bytes (up to ``max_partition_fetch_bytes``, 1 MiB). With ``max_in_flight`` 2048
and the default ``checkpoint_limit`` 1024 the bridge grew to 500 MB in a 1M-record backfill. So
``run()`` also collects every ``COLLECT_EVERY`` seconds, all generations: the dropped buffers
usually lived through a younger collection first. Measured on that backfill: peak RSS 500 → 129 MB,
flat over the run; the collections took 141 ms of 14 s (1%).
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
COLLECT_EVERY = 1.0  # seconds between clock-driven collections (all generations; ~1% of the CPU)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the chosen loop, with the collector tuned for the hot path."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(_collecting(coro))


async def _collecting(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` with the clock-driven collections of the module docstring."""
    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle | None = None

    def collect() -> None:
        nonlocal handle
        gc.collect()
        handle = loop.call_later(COLLECT_EVERY, collect)

    handle = loop.call_later(COLLECT_EVERY, collect)
    try:
        return await coro
    finally:
        handle.cancel()  # the latest one: collect() replaces it before it returns
