"""The pure core, every module under ``bridge/core/``, imports neither aiokafka nor nats (checked in a fresh
interpreter, each module alone and all together)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CORE = REPO / "bridge" / "core"


def core_modules() -> tuple[str, ...]:
    """Every module (and package) under bridge/core/, found on disk: a new one is checked too."""
    names = []
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return tuple(names)


PURE = core_modules()
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


def test_the_core_is_found() -> None:
    """The list the checks below run over is the whole core (a sample of what must be in it)."""
    for module in ("bridge.core", "bridge.core.errors", "bridge.core.config.loader", "bridge.core.routing",
                   "bridge.core.interpolation.template", "bridge.core.tls", "bridge.core.tracing"):  # fmt: skip
        assert module in PURE, PURE


def test_pure_core_imports_no_client_library() -> None:
    assert client_modules_after_importing(PURE) == []


@pytest.mark.parametrize("module", PURE)
def test_each_pure_module_alone(module: str) -> None:
    assert client_modules_after_importing((module,)) == []


@pytest.mark.parametrize("client", CLIENTS)
def test_the_probe_sees_client_libraries(client: str) -> None:
    """The check can fail: importing a client library shows up in the probe."""
    assert client in client_modules_after_importing((client,))


def test_the_lane_machine_is_pure() -> None:
    """bridge/jetstream/lanes.py (the per-partition order under retries) imports no asyncio and no client
    library: it is unit-tested without an event loop or a broker."""
    code = (
        "import sys; before = set(sys.modules); import bridge.jetstream.lanes; "
        "import json; print(json.dumps(sorted(m for m in set(sys.modules) - before "
        "if m.split('.')[0] in ('asyncio', 'uvloop', 'aiokafka', 'nats'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_suppressions_in_shipped_code_say_why() -> None:
    """bridge/ and bridgedev/ hold no ``fmt: skip`` (the formatter's layout is the house layout), and every
    ``type: ignore`` names its error code and says why after it."""
    bad = []
    for path in sorted([*(REPO / "bridge").rglob("*.py"), *(REPO / "bridgedev").rglob("*.py")]):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(REPO)}:{number}"
            if "fmt: skip" in line or "fmt: off" in line:
                bad.append(f"{where}: formatter switched off")
            _, marker, rest = line.partition("type: ignore")
            if marker and not re.match(r"\[[\w-]+(, *[\w-]+)*\] *(#|-) *\S", rest):
                bad.append(f"{where}: type: ignore without a code and a reason")
    assert bad == []
