"""``LatencyHistogram``: publish → PubAck latency of sampled acks, in fixed buckets (seconds).

Fed by the publisher (one ack in 16, so the hot path pays almost nothing: an increment and a
bisection), read at scrape time by ``bridge.ops.metrics`` as a Prometheus histogram. Pure module.
"""

from __future__ import annotations

import bisect

__all__ = ["LatencyHistogram"]


class LatencyHistogram:
    """Per-bucket counts (the last bucket is +Inf), their sum and how many samples, Prometheus style."""

    BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS) + 1)  # the last bucket is +Inf
        self.total = 0.0
        self.samples = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.BOUNDS, seconds)] += 1
        self.total += seconds
        self.samples += 1
