"""README's module map (the ``## Development`` tree) names every module of ``bridge/`` and ``bridgedev/``,
under its own subpackage, and names no module that does not exist (issue 11: the map matches the tree)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _map_block() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("```\nbridge/\n")
    return text[start + 4 : text.index("```", start + 4)]


def _mapped() -> set[str]:
    """Every module the map names, as a path: ``bridge/core/routing.py``; ``config/`` entries list their
    modules in the text beside them."""
    found: set[str] = set()
    stack: list[tuple[int, str]] = []
    for line in _map_block().splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        entry = line.split()[0]
        if indent < 24:  # a tree entry, not a continued description
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parent = stack[-1][1] if stack else ""
            path = parent + entry
            if entry.endswith("/"):
                stack.append((indent, path))
            elif entry.endswith(".py"):
                found.add(path)
        else:
            path = stack[-1][1] if stack else ""
        # modules named in the description of a package entry: "units.py (durations...)"
        described = line[24:] if indent < 24 else line
        if path.endswith("/"):
            found |= {path + name for name in re.findall(r"(?<![/\w])([a-z_]+\.py)\b", described)}
    return found


def _modules() -> set[str]:
    return {
        str(p.relative_to(ROOT))
        for top in ("bridge", "bridgedev")
        for p in (ROOT / top).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    }


def test_every_module_is_in_the_map() -> None:
    missing = sorted(_modules() - _mapped())
    assert not missing, f"README's module map does not name: {missing}"


def test_the_map_names_only_modules_that_exist() -> None:
    stale = sorted(_mapped() - _modules())
    assert not stale, f"README's module map names modules that do not exist: {stale}"


def test_the_architecture_page_names_only_what_exists() -> None:
    """docs/architecture.md's modules (``core/routing.py``, ``jetstream/lanes.py``, ...) are files under
    bridge/, and the functions and classes it names are defined there."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    modules = set(re.findall(r"\b((?:core|kafka|jetstream|run|ops|migrate)/[a-z_]+\.py)\b", text))
    assert len(modules) >= 15, modules
    missing = sorted(m for m in modules if not (ROOT / "bridge" / m).is_file())
    assert missing == []
    source = "\n".join(p.read_text() for p in (ROOT / "bridge").rglob("*.py"))
    names = {"_dispatch", "track_many", "to_commit", "PartitionRoute", "MetadataRoute", "Envelope", "Router",
             "JetStreamSink", "InboxClient", "InboxParser", "stage", "stored", "Checkpointer"}  # fmt: skip
    assert all(n in text for n in names), sorted(n for n in names if n not in text)
    undefined = sorted(
        n for n in names if not re.search(rf"^\s*(?:async )?(?:def|class) {n}\b", source, re.M)
    )
    assert undefined == []
