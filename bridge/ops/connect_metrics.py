"""Redpanda Connect's standard metrics on ``/metrics``, so its dashboards and alerts work unchanged.

Redpanda Connect counts every input and output through two wrappers (benthos
``internal/component/input/async_reader.go`` and ``internal/component/output/async_writer.go``), and
its ``prometheus`` exporter (connect ``internal/impl/prometheus/metrics_prometheus.go``) writes them with
two labels, in this order: ``label`` (the component's ``label``, ``""`` when it has none) and ``path``
(``root.input``, ``root.output``). Counters keep the name as written, without ``_total``; timers are
summaries in nanoseconds with the quantiles 0.5, 0.9 and 0.99 (its default, ``use_histogram_timing:
false``). The same names, types and labels here, read from the pipeline at scrape time:

======================== ======= ===============================================================
name                     type    here
======================== ======= ===============================================================
input_received           counter records read from Kafka
input_latency_ns         summary a fetched batch: fetched → its last record acknowledged by JetStream
output_sent              counter messages stored by JetStream (PubAcks, duplicates and dead-letters
                                 included)
output_batch_sent        counter the same: every message is its own JetStream publish and PubAck, as
                                 Redpanda Connect's ``nats_jetstream`` output writes them
output_error             counter publishes that failed (ack timeouts, lost connections, refusals)
output_latency_ns        summary publish → PubAck, one ack in 16 sampled (``_count`` counts samples)
output_connection_up     counter NATS connections established (the first one included)
output_connection_lost   counter established NATS connections lost
output_connection_failed counter NATS connection attempts that failed
======================== ======= ===============================================================

Quantiles are taken over the latest 1,024 observations (a Go summary keeps a sliding window too); NaN
before the first one, as Go reports them. prometheus-client would render a counter ``x`` as
``x_total`` (OpenMetrics naming), so ``render`` writes these families itself, in the text format
Redpanda Connect's Go client writes; ``bridge.ops.http`` appends them to the registry's output.
"""

from __future__ import annotations

import math

from bridge.ops.latency import LatencyHistogram
from bridge.ops.metrics import Observed  # the one view of the pipeline that operations read

QUANTILES = (0.5, 0.9, 0.99)
INPUT_PATH = "root.input"
OUTPUT_PATH = "root.output"
COUNTER_HELP = "Benthos Counter metric"
TIMER_HELP = "Benthos Timing metric"

NAMES = (
    "input_received",
    "input_latency_ns",
    "output_sent",
    "output_batch_sent",
    "output_error",
    "output_latency_ns",
    "output_connection_up",
    "output_connection_lost",
    "output_connection_failed",
)


def _number(value: float) -> str:
    """As Go writes a sample value: ``5``, ``0.25``, ``NaN``, ``+Inf``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(label: str, path: str, extra: str = "") -> str:
    return f'{{label="{_escape(label)}",path="{path}"{extra}}}'


def _counter(out: list[str], name: str, label: str, path: str, value: float) -> None:
    out += (f"# HELP {name} {COUNTER_HELP}\n", f"# TYPE {name} counter\n")
    out.append(f"{name}{_labels(label, path)} {_number(value)}\n")


def _summary(out: list[str], name: str, label: str, path: str, latency: LatencyHistogram) -> None:
    """A summary of ``latency`` (seconds) in nanoseconds."""
    out += (f"# HELP {name} {TIMER_HELP}\n", f"# TYPE {name} summary\n")
    for q, seconds in zip(QUANTILES, latency.quantiles(QUANTILES), strict=True):
        value = seconds if math.isnan(seconds) else round(seconds * 1e9)  # whole nanoseconds, as Go times
        quantile = f',quantile="{q}"'
        out.append(f"{name}{_labels(label, path, quantile)} {_number(value)}\n")
    out.append(f"{name}_sum{_labels(label, path)} {_number(round(latency.total * 1e9))}\n")
    out.append(f"{name}_count{_labels(label, path)} {_number(latency.samples)}\n")


def render(pipeline: Observed) -> bytes:
    """The families of ``NAMES``, in Prometheus text format 0.0.4."""
    stats = pipeline.statistics()
    sink = stats.sink
    inp, outp = pipeline.labels
    output_latency = pipeline.sink.latency if pipeline.sink is not None else LatencyHistogram()
    out: list[str] = []
    _counter(out, "input_received", inp, INPUT_PATH, stats.consumed)
    _summary(out, "input_latency_ns", inp, INPUT_PATH, pipeline.input_latency)
    acked = sink.acked if sink else 0
    _counter(out, "output_sent", outp, OUTPUT_PATH, acked)
    _counter(out, "output_batch_sent", outp, OUTPUT_PATH, acked)
    _counter(out, "output_error", outp, OUTPUT_PATH, sink.failures if sink else 0)
    _summary(out, "output_latency_ns", outp, OUTPUT_PATH, output_latency)
    _counter(out, "output_connection_up", outp, OUTPUT_PATH, sink.connects if sink else 0)
    _counter(out, "output_connection_lost", outp, OUTPUT_PATH, sink.losses if sink else 0)
    _counter(out, "output_connection_failed", outp, OUTPUT_PATH, sink.connect_failures if sink else 0)
    return "".join(out).encode()
