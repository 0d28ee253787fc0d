"""``LatencyHistogram``: latencies in fixed buckets (seconds), and the most recent ones for quantiles.

Two are kept: publish → PubAck of sampled acks, fed by the publisher (one ack in 16, so the hot path pays
almost nothing: an increment, a bisection and a store), and fetch → PubAck of a fetched batch's last
record, fed by the pipeline once per batch. Read at scrape time by ``bridge.ops.metrics`` as a Prometheus
histogram and by ``bridge.ops.connect_metrics`` as Redpanda Connect's summaries (``quantiles``: over the
``RECENT`` latest observations, as a Go summary's sliding window keeps the recent ones). Pure module.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

__all__ = ["LatencyHistogram"]


class LatencyHistogram:
    """Per-bucket counts (the last bucket is +Inf), their sum and how many samples, Prometheus style;
    the latest ``RECENT`` samples in a ring."""

    BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
    RECENT = 1024  # a power of two: the ring index is a mask

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS) + 1)  # the last bucket is +Inf
        self.total = 0.0
        self.samples = 0
        self._recent = [0.0] * self.RECENT

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.BOUNDS, seconds)] += 1
        self.total += seconds
        self._recent[self.samples & (self.RECENT - 1)] = seconds
        self.samples += 1

    def quantiles(self, qs: Iterable[float]) -> list[float]:
        """The ``qs`` quantiles (nearest rank) of the latest ``RECENT`` samples; NaN before any sample, as a
        Go summary reports them."""
        recent = sorted(self._recent[: min(self.samples, self.RECENT)])
        if not recent:
            return [math.nan for _ in qs]
        return [recent[min(max(math.ceil(q * len(recent)) - 1, 0), len(recent) - 1)] for q in qs]
