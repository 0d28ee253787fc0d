"""``make run`` (``python -m bridge dev``): records show within seconds, Ctrl-C stops everything
(issue 13, "First run": a second ``make run`` shows records within 5 s).

Tansu holds each JoinGroup for half the group's session timeout; with the 10 s of the demo config
before, the first records came 5 s after the bridge started. ``configs/local.yaml`` now asks for 2 s.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.support import BridgeProcess, eventually

pytestmark = pytest.mark.integration


async def test_the_demo_shows_records_within_5_seconds_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    started = time.monotonic()
    with BridgeProcess("dev", log_dir=tmp_path, name="demo") as demo:

        async def first_record() -> float:
            lines = demo.stdout_path.read_text().splitlines()
            assert any(line.startswith("  kafka.demo  partition=") for line in lines), lines[-5:]
            return time.monotonic() - started

        seconds = await eventually(first_record, within=60, every=0.05)
        assert seconds <= 5, f"first record after {seconds:.1f}s"
        events = {}
        for line in demo.logs().splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                events.setdefault(event["event"], event)
        joined = _ts(events["partitions_assigned"]) - _ts(events["run_started"])
        assert joined < 2.5, f"the group join took {joined:.1f}s"
        demo.signal(signal.SIGINT)
        assert demo.wait(60) == 0
        out = demo.stdout_path.read_text()
        assert "demo: stopped after" in out
        assert "demo: stopping brokers" in out


def _ts(event: dict) -> float:
    from datetime import datetime

    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
