"""The soak's pure parts: the histogram quantile it reads from ``/metrics``, the stream's store time,
the fault schedule, the options. The whole command runs in tests/integration/test_soak.py."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from bridgedev.soak import SoakParams, _every, _quantile, _stored_ms, parse_args, schedule

INF = float("inf")


def test_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    # 100 samples: 50 under 1 ms, 40 in (1, 2.5] ms, 10 in (2.5, 5] ms
    buckets = [(0.001, 50.0), (0.0025, 90.0), (0.005, 100.0), (INF, 100.0)]
    assert _quantile(buckets, 0.5) == pytest.approx(0.001)
    assert _quantile(buckets, 0.7) == pytest.approx(0.001 + 0.0015 * 20 / 40)
    assert _quantile(buckets, 0.99) == pytest.approx(0.0025 + 0.0025 * 9 / 10)


def test_quantile_in_the_inf_bucket_is_the_last_bound_and_empty_is_nan() -> None:
    assert _quantile([(0.01, 1.0), (INF, 10.0)], 0.99) == 0.01
    assert math.isnan(_quantile([(0.01, 0.0), (INF, 0.0)], 0.5))
    assert math.isnan(_quantile([], 0.5))


def test_stored_ms_reads_nanosecond_rfc3339() -> None:
    expected = datetime(2026, 1, 31, 12, 0, 1, tzinfo=UTC).timestamp() * 1000 + 123.456789
    assert _stored_ms("2026-01-31T12:00:01.123456789Z") == pytest.approx(expected, abs=1e-3)
    assert _stored_ms("2026-01-31T12:00:01Z") == pytest.approx(expected - 123.456789, abs=1e-3)


def test_schedule_every_interval_from_an_offset_within_the_duration() -> None:
    assert _every(20, 0, 60) == [20, 40]
    assert _every(20, 10, 60) == [30, 50]
    assert _every(300, 0, 300) == []


def test_options_take_durations_and_default_to_an_hour() -> None:
    assert parse_args([]) == SoakParams()
    p = parse_args(["--duration", "90s", "--nats-restart-every", "20s", "--bridge-restart-every", "0s"])
    assert (p.duration, p.nats_restart_every, p.bridge_restart_every) == (90.0, 20.0, 0.0)
    assert SoakParams().duration == 3600.0
    assert SoakParams().rate == 2000


def test_restarts_fall_between_samples_and_apart_from_each_other() -> None:
    short = SoakParams(duration=60, sample_every=10, nats_restart_every=20, bridge_restart_every=20)
    assert schedule(short) == [(25, "nats"), (35, "bridge"), (45, "nats"), (55, "bridge")]
    hour = schedule(SoakParams())
    assert [t for t, what in hour if what == "nats"] == [330 + 300 * k for k in range(11)]
    assert [t for t, what in hour if what == "bridge"] == [750, 1350, 1950, 2550, 3150]
    assert all(t % 60 == 30 for t, _ in hour)  # never on a sample
