"""What ``make run`` and ``make test`` install (issue 13, "First run"): the demo gets the bridge and the
local brokers only — not mypy, py-spy, kubernetes-validate, hypothesis, pytest... — and ``make test``
gets everything the suite needs.

Read from pyproject.toml and the Makefile, and checked against the code: every third-party module the
``dev`` demo imports (``bridge``, ``bridgedev.demo``, ``bridgedev.brokers``) comes with the packages
``make run`` installs, dependencies included.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
MAKEFILE = (REPO / "Makefile").read_text()
DEV_ONLY = {"mypy", "py-spy", "kubernetes-validate", "hypothesis", "pytest", "ruff", "trustme", "psutil"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def names(requirements: list[str]) -> set[str]:
    return {norm(Requirement(r).name) for r in requirements}


def recipe(target: str) -> str:
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", MAKEFILE, re.M)
    assert match, target
    return match.group(1)


def prerequisites(target: str) -> str:
    match = re.search(rf"^{re.escape(target)}:(.*)$", MAKEFILE, re.M)
    assert match, target
    return match.group(1)


def test_make_run_installs_the_demo_extra_and_make_test_the_dev_extra() -> None:
    assert "install-run" in prerequisites("run")
    assert "$(RUN_STAMP)" in prerequisites("install-run")
    assert "-e '.[demo]'" in recipe("$(RUN_STAMP)")
    assert "install" in prerequisites("test").split()
    assert "$(DEV_STAMP)" in prerequisites("install")
    assert "-e '.[dev]'" in recipe("$(DEV_STAMP)")


def test_the_demo_installs_no_development_tool() -> None:
    demo = names(PROJECT["dependencies"]) | names(PROJECT["optional-dependencies"]["demo"])
    assert not demo & DEV_ONLY, demo & DEV_ONLY
    dev = names(PROJECT["optional-dependencies"]["dev"])
    assert "kafka-jetstream-bridge" in dev  # dev = demo + the suite's tools
    assert dev | {"kafka-jetstream-bridge"} >= DEV_ONLY


def _closure(requirements: set[str]) -> set[str]:
    """The distributions these requirements install, dependencies included (as installed here)."""
    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(norm(req.name))
    return seen


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_every_module_the_demo_imports_comes_with_make_run() -> None:
    """Fails when the demo's code path imports a package only ``make test`` installs (psutil, say)."""
    files = [
        *(REPO / "bridge").rglob("*.py"),
        REPO / "bridgedev" / "demo.py",
        *(REPO / "bridgedev" / "brokers").rglob("*.py"),
    ]
    modules = (
        set().union(*(_imports(f) for f in files)) - set(sys.stdlib_module_names) - {"bridge", "bridgedev"}
    )
    demo = names(PROJECT["dependencies"]) | names(PROJECT["optional-dependencies"]["demo"])
    # aiokafka's codec extras are part of its requirement ("aiokafka[lz4,snappy,zstd]")
    installed = _closure(demo) | {"cramjam"}
    providers = metadata.packages_distributions()
    missing = {
        m: providers.get(m) for m in modules if not {norm(d) for d in providers.get(m, [])} & installed
    }
    assert not missing, missing
