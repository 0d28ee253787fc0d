"""``dev`` (what ``make run`` runs) through the real CLI: it starts its own brokers (that is what is under
test, so not the suite's), shows records within seconds (issue 13, "First run": a second ``make run``
shows records within 5 s), prints where its ``/metrics`` is and serves it while records flow, and stops
cleanly on Ctrl-C.

Tansu holds each JoinGroup for half the group's session timeout; with the 10 s of the demo config
before, the first records came 5 s after the bridge started. ``configs/local.yaml`` now asks for 2 s.
"""

from __future__ import annotations

import json
import re
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from bridgedev.brokers import free_port
from tests.integration.ops_support import get, scrape
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
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


async def test_the_demo_serves_metrics_and_prints_where(workdir: Path) -> None:
    port = free_port()
    with BridgeProcess("dev", log_dir=workdir, name="dev", env={"HTTP_ADDRESS": f"127.0.0.1:{port}"}) as demo:

        async def printed() -> str:
            text = demo.stdout_path.read_text()
            found = re.search(r"^demo: metrics at (http://\S+)/metrics ", text, re.MULTILINE)
            assert found, text + demo.logs()[-2000:]
            return found.group(1)

        base = await eventually(printed, within=90)
        assert base == f"http://127.0.0.1:{port}"

        async def flowing() -> None:
            m = await scrape(base)
            assert m.raw("input_received", label="kafka_in", path="root.input") >= 30, m.text
            assert m.raw("output_sent", label="bridge-local", path="root.output") >= 30
            assert m.value("records_acked_total") >= 30
            status, body = await get(base + "/ready")
            assert status == 200, body

        await eventually(flowing, within=90)
        demo.signal(signal.SIGINT)
        assert demo.wait(60) == 0, demo.logs()[-3000:]
    out = demo.stdout_path.read_text()
    assert "demo: stopped after" in out
    assert "demo: stopping brokers" in out
