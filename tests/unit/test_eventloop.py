"""bridge.run.eventloop: the tuned collector still frees cyclic garbage, on a clock."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import pytest

from bridge.run import eventloop


class Buffer:
    """Stands for what aiokafka drops when a partition is paused: an object in a cycle with its data."""

    def __init__(self) -> None:
        self.data = bytes(1024 * 1024)
        self.me = self


def test_cyclic_garbage_is_freed_although_allocations_never_reach_the_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(eventloop, "COLLECT_EVERY", 0.05)
    thresholds = gc.get_threshold()

    async def drop_cycles_and_wait() -> float:
        refs = [weakref.ref(Buffer()) for _ in range(20)]
        assert gc.get_count()[0] < eventloop.GC_THRESHOLDS[0]  # no automatic collection is due
        started = time.monotonic()
        deadline = started + 5.0
        while any(r() is not None for r in refs):
            assert time.monotonic() < deadline, "cyclic garbage was not collected"
            await asyncio.sleep(0.01)
        return time.monotonic() - started

    try:
        waited = eventloop.run(drop_cycles_and_wait())
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
    assert waited < 1.0


def test_the_clock_stops_with_the_coroutine(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(eventloop, "COLLECT_EVERY", 0.01)
    monkeypatch.setattr(eventloop.gc, "collect", lambda *a: calls.append(1) or 0)
    thresholds = gc.get_threshold()

    async def short() -> str:
        await asyncio.sleep(0.1)
        return "done"

    try:
        assert eventloop.run(short()) == "done"
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
    assert calls  # it ran while the coroutine did
    seen = len(calls)
    time.sleep(0.05)
    assert len(calls) == seen
