"""``python -m bridgedev soak`` (``make soak``) end to end, shortened: 60 s at 300 records/s with the
nats-server restarted every 20 s and the bridge restarted every 20 s (10 s apart from them, 5 s from
the samples).

The soak starts its own Apache Kafka and nats-server (it restarts the latter), so it takes no suite
broker. Asserted: exit 0, the audit (0 missing, 0 duplicates stored, 0 reorders, committed = end per
partition, every bridge exit 0), the restarts that happened, a CSV row per sample with RSS, lag and
latency filled in, and a PNG. The RSS verdict is the long run's business (docs/operations.md): a
one-minute run has no warm-up worth the name, so the tolerance is opened here.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_soak_writes_csv_and_plot_and_audits_clean(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "bridgedev", "soak",
            "--duration", "60s", "--rate", "300", "--partitions", "3", "--sample-every", "10s",
            "--nats-restart-every", "20s", "--bridge-restart-every", "20s", "--warmup", "5s",
            "--rss-tolerance", "1.0", "--output-dir", str(tmp_path), "--name", "short",
        ],
        capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    result = json.loads((tmp_path / "short.json").read_text())
    assert result["clean"], result["audit_table"]
    audit = result["audit"]
    assert (audit["missing"], audit["duplicates"], audit["reorders"], audit["foreign"]) == (0, 0, 0, 0)
    assert audit["read"] == audit["stream_messages"] == result["produced"] >= 300 * 50
    for part in audit["partitions"]:
        assert part["stored"] == part["end"] == part["committed"] > 0, part
    assert result["nats_restarts"] == 2  # at 25 s and 45 s
    assert result["bridge_restarts"] == 2  # at 35 s and 55 s
    assert result["bridge_exit_codes"] == [0, 0, 0]  # two restarts and the final stop: SIGTERM, exit 0
    assert result["lag_final"] == 0
    assert result["rss_warm_min_mb"] > 20  # a Python process with the bridge loaded, not a wrong pid
    with (tmp_path / "short.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 6  # one per 10 s, and the one after the drain
    assert {"t_s", "bridge_rss_mb", "lag", "ack_p50_ms", "ack_p99_ms", "stored", "e2e_p99_ms"} <= set(rows[0])
    assert all(float(r["bridge_rss_mb"]) > 20 for r in rows)
    assert rows[-1]["lag"] == "0"
    assert any(r["ack_p99_ms"] and float(r["ack_p99_ms"]) > 0 for r in rows)
    assert any(r["e2e_p99_ms"] for r in rows)  # filled in from the stream read back
    png = (tmp_path / "short.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000
    assert "audit clean" in done.stdout
