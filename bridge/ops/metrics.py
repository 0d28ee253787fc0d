"""Prometheus metrics, read from the pipeline at scrape time.

Owns ``PipelineCollector``, a prometheus-client custom collector: every scrape takes one
``Pipeline.statistics()`` / ``Pipeline.health()`` snapshot and the sink's latency histogram and turns
them into metric families. Nothing is counted per record here: the pipeline and the sink keep plain
integer counters, and this module only reads them, so metrics cost nothing in the hot path.

Every name starts with ``kafka_jetstream_bridge_`` (``PREFIX``); the list, with meanings, is in
``docs/operations.md``. ``registry_for(pipeline)`` builds a registry holding this collector plus
prometheus-client's process and platform collectors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from bridge import __version__
from bridge.ops.latency import LatencyHistogram
from bridge.run.pipeline import Health, PipelineStats

PREFIX = "kafka_jetstream_bridge_"


class HasLatency(Protocol):
    @property
    def latency(self) -> LatencyHistogram: ...


class Observed(Protocol):
    """What the collector and the HTTP server read: ``bridge.run.pipeline.Pipeline`` provides it."""

    @property
    def sink(self) -> HasLatency | None: ...

    @property
    def labels(self) -> tuple[str, str]: ...

    @property
    def input_latency(self) -> LatencyHistogram: ...

    def statistics(self) -> PipelineStats: ...

    def health(self) -> Health: ...


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


class PipelineCollector(Collector):
    def __init__(self, pipeline: Observed, mode: str = "") -> None:
        self._pipeline = pipeline
        self._mode = mode

    def collect(self) -> Iterator[Metric]:
        stats = self._pipeline.statistics()
        health = self._pipeline.health()
        sink = stats.sink
        sent = sink.sent if sink else 0
        resent = sink.resent if sink else 0

        info = GaugeMetricFamily(
            PREFIX + "info", "Version and mode of this bridge.", labels=["version", "mode"]
        )
        info.add_metric([__version__, self._mode], 1)
        yield info

        yield _counter(
            "records_consumed", "Records read from Kafka and handed to the router.", stats.consumed
        )
        yield _counter(
            "records_published",
            "Publishes written to NATS, first attempts only (dead-letter publishes included).",
            sent - resent,
        )
        yield _counter(
            "records_acked",
            "PubAcks received from JetStream (duplicates included).",
            sink.acked if sink else 0,
        )
        yield _counter(
            "records_duplicates",
            "PubAcks marked duplicate: the stream already held that Nats-Msg-Id.",
            sink.duplicates if sink else 0,
        )
        yield _counter(
            "records_dead_lettered",
            "Records published to the dead-letter subject and acked.",
            stats.dead_lettered,
        )
        yield _counter("publishes_resent", "Publishes sent again after a failure or a reconnect.", resent)
        yield _counter(
            "publish_timeouts",
            "Publishes without a PubAck within bridge.ack_timeout.",
            sink.timeouts if sink else 0,
        )
        yield _counter(
            "publish_failures", "Publishes that failed (retriable or not).", sink.failures if sink else 0
        )
        yield _counter(
            "order_violations",
            "Records stored after an earlier record of their partition that was not stored.",
            sink.reorders if sink else 0,
        )
        yield _counter(
            "nats_reconnects", "NATS connections re-established after a loss.", sink.reconnects if sink else 0
        )
        yield _counter("commits", "Successful Kafka offset commits.", stats.commits)
        yield _counter(
            "commit_failures", "Kafka offset commits that failed or were skipped.", stats.commit_failures
        )
        yield SummaryMetricFamily(
            PREFIX + "commit_latency_seconds",
            "Time spent in successful Kafka offset commits.",
            count_value=stats.commits,
            sum_value=stats.commit_seconds,
        )

        yield _gauge(
            "in_flight", "Publishes not yet acknowledged by JetStream.", sink.in_flight if sink else 0
        )
        yield _gauge("outstanding", "Records read from Kafka and not yet committable.", stats.outstanding)
        yield _gauge("partitions_assigned", "Kafka partitions this instance holds.", stats.partitions)
        yield _gauge(
            "partitions_stopped", "Partitions stopped on a record that can never be published.", stats.stopped
        )
        lag = GaugeMetricFamily(
            PREFIX + "kafka_lag",
            "Records of the partition not yet committable: high watermark minus the committable offset.",
            labels=["topic", "partition"],
        )
        for (topic, partition), value in sorted(stats.lag.items()):
            lag.add_metric([topic, str(partition)], value)
        yield lag

        yield _gauge(
            "nats_connected", "1 while the NATS connection is up.", 1 if health.nats_connected else 0
        )
        yield _gauge("ready", "1 while /ready answers 200.", 1 if health.ready else 0)
        checks = GaugeMetricFamily(
            PREFIX + "health_check", "Each readiness check: 1 passes, 0 fails.", labels=["check"]
        )
        for name, ok in _checks(health).items():
            checks.add_metric([name], 1 if ok else 0)
        yield checks

        latency = self._pipeline.sink.latency if self._pipeline.sink is not None else LatencyHistogram()
        yield _histogram(latency)


def _checks(health: Health) -> dict[str, bool]:
    return {
        "nats_connected": health.nats_connected,
        "kafka_assigned": health.kafka_assigned,
        "commits_fresh": health.commits_fresh,
    }


def _histogram(latency: LatencyHistogram) -> HistogramMetricFamily:
    """The sink's fixed-bucket histogram (per-bucket counts) → Prometheus cumulative buckets."""
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip(latency.BOUNDS, latency.counts, strict=False):
        cumulative += count
        buckets.append((str(float(bound)), cumulative))
    cumulative += latency.counts[-1]
    buckets.append(("+Inf", cumulative))
    return HistogramMetricFamily(
        PREFIX + "publish_latency_seconds",
        "Publish → PubAck latency, sampled (one ack in 16).",
        buckets=buckets,
        sum_value=latency.total,
    )


def registry_for(pipeline: Observed, mode: str = "") -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(pipeline, mode))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
