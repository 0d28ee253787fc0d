"""The pure core imports neither aiokafka nor nats (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PURE = (
    "bridge.config",
    "bridge.interpolation",
    "bridge.message",
    "bridge.checkpoint",
    "bridge.wire",
    "bridge.router",
    "bridge.errors",
    "bridge.localfiles",
    "bridge.yamldoc",
)
CLIENTS = ("aiokafka", "nats")


def client_modules_after_importing(modules: tuple[str, ...]) -> list[str]:
    code = (
        f"import {', '.join(modules)}; import sys; "
        f"import json; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {CLIENTS!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    found: list[str] = json.loads(result.stdout)
    return found


def test_pure_core_imports_no_client_library() -> None:
    assert client_modules_after_importing(PURE) == []


@pytest.mark.parametrize("module", PURE)
def test_each_pure_module_alone(module: str) -> None:
    assert client_modules_after_importing((module,)) == []


@pytest.mark.parametrize("client", CLIENTS)
def test_the_probe_sees_client_libraries(client: str) -> None:
    """The check can fail: importing a client library shows up in the probe."""
    assert client in client_modules_after_importing((client,))
