"""``dev`` (what ``make run`` runs) through the real CLI: it starts its own brokers (that is what is under
test, so not the suite's), prints where its ``/metrics`` is, serves it while records flow, and stops
cleanly on Ctrl-C."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from bridgedev.brokers import free_port
from tests.integration.ops_support import get, scrape
from tests.support import BridgeProcess, eventually

pytestmark = pytest.mark.integration


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
