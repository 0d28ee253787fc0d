"""One shutdown deadline: ``shutdown_timeout`` is the whole budget, from the stop to the last close.

quix-streams' ``checkpointing/deadline.py`` is the model: the budget is started once (a signal, a run
that ended on its own, a fatal error) and every step of the shutdown reads what is left of it instead
of starting a budget of its own — so a 20 s budget is 20 s for stop fetching → wait for the in-flight
acks → commit → close the consumer → close NATS together. The wait for acks may use at most three
quarters of it (``remaining(reserve=...)``), so that the commit always gets its chance. Pure module.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Deadline"]


class Deadline:
    """``total`` seconds from ``start()`` (the first call wins); ``clock`` is monotonic seconds."""

    __slots__ = ("_clock", "_ends", "total")

    def __init__(self, total: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = max(total, 0.0)
        self._clock = clock
        self._ends: float | None = None

    def start(self) -> None:
        """Start the budget now, unless it was started before."""
        if self._ends is None:
            self._ends = self._clock() + self.total

    @property
    def started(self) -> bool:
        return self._ends is not None

    def remaining(self, reserve: float = 0.0) -> float:
        """Seconds left, less ``reserve`` seconds kept for the steps after this one; never below zero. A
        budget not started yet starts now."""
        self.start()
        assert self._ends is not None
        return max(self._ends - self._clock() - reserve, 0.0)

    @property
    def expired(self) -> bool:
        return self.started and self.remaining() == 0.0
