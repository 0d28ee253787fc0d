"""``kafka-jetstream-bridge bench`` runs every phase against the real brokers and reports each number.

Nothing about speed is asserted (the bench prints numbers; see README "Performance"): this checks
that the command works end to end with small parameters, on both Kafka implementations.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import Kafka


def test_bench_measures_every_phase(kafka: Kafka, nats_url: str, tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "bridge", "bench",
            "--records", "3000", "--size", "100", "--partitions", "3", "--max-in-flight", "256",
            "--kafka-bootstrap", kafka.bootstrap, "--nats-url", nats_url,
            "--workers", "1", "--latency-rate", "500", "--latency-seconds", "2",
            "--output", str(output),
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())
    assert result["params"]["records"] == 3000
    assert result["raw_consume_rps"] > 0
    assert result["raw_publish_rps"] > 0
    for phase in ("mission 1w", "bare 1w"):
        one = result["bridge"][phase]
        assert one["records"] == 3000, phase  # the backfill delivered every record
        assert one["records_per_s"] > 0
        assert one["mb_per_s"] > 0
        assert one["peak_rss_mb"] > 20  # a Python process with the bridge loaded, not a wrong pid
        assert one["cpu_s"] > 0.1  # the bridge process's own CPU time, read when it was reaped
        assert 0 < one["first_record_s"] <= one["wall_s"]  # external nats-server: read from its /jsz
    if "go mission" in result["bridge"]:  # Go and ../shared/peers are on this machine: the same run has it
        assert result["bridge"]["go mission"]["records"] == 3000
        assert "Go reference bridge, mission" in done.stdout
    else:  # not on this machine, or it failed on this broker (franz-go does not negotiate with Tansu)
        assert "Go reference bridge not run:" in done.stdout
        assert result["go_peer"]
    assert result["nats_cpu_s_per_million"] == {}  # a server the bench did not start: no pid to read
    assert result["baseline_rps"] > 0
    assert result["baseline_runtime_rps"] > 0
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] <= result["latency_ms"]["max"]
    assert result["latency_ms"]["warmup_samples"] > 0  # the first second is reported apart
    for row in (
        "a. raw Kafka consume",
        "kafka_* metadata + header + Nats-Msg-Id (the mission), 1 worker(s)",
        "Nats-Msg-Id only (bare), 1 worker(s)",
        "d. plain baseline (asyncio)",
        "e. latency",
    ):
        assert row in done.stdout
