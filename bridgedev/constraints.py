"""``deploy/constraints.txt``: the bridge's runtime dependencies pinned at the versions it was tested with.

The image (``deploy/Dockerfile``) installs with ``pip install -c deploy/constraints.txt .`` and ``make
install`` with the same file, so the versions in the image are the ones the suite ran against. The file
is generated from the installed environment, never written by hand:

    .venv/bin/python -m bridgedev.constraints deploy/constraints.txt      # also `make constraints`

``runtime_pins()`` walks ``kafka-jetstream-bridge``'s ``Requires-Dist`` (the ``dev`` extra left out,
the extras a requirement names followed, markers evaluated for this interpreter: the image's Python
and platform) through the installed distributions' metadata and returns each one's version.
``tests/unit/test_constraints.py`` checks the file against it.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DIST = "kafka-jetstream-bridge"
HEADER = (
    "# The bridge's runtime dependencies at the versions the suite ran with; the image installs with\n"
    "# `pip install -c deploy/constraints.txt .`. Generated: `make constraints` (bridgedev/constraints.py).\n"
)


def _applies(marker: Marker | None, extras: set[str]) -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({"extra": extra}) for extra in extras or {""})


def runtime_pins(dist: str = DIST) -> dict[str, str]:
    """Canonical name → installed version of every distribution ``dist`` needs at run time."""
    pins: dict[str, str] = {}
    todo: list[tuple[str, set[str]]] = [(dist, set())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        key = (canonicalize_name(name), frozenset(extras))
        if key in seen:
            continue
        seen.add(key)
        found = metadata.distribution(name)
        if canonicalize_name(name) != canonicalize_name(dist):
            pins[canonicalize_name(name)] = found.version
        for line in found.requires or []:
            req = Requirement(line)
            if _applies(req.marker, extras):
                todo.append((req.name, set(req.extras)))
    return dict(sorted(pins.items()))


def render(pins: dict[str, str]) -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in pins.items())


def main(argv: list[str]) -> int:
    target = Path(argv[0] if argv else "deploy/constraints.txt")
    target.write_text(render(runtime_pins()))
    print(f"{target}: {len(runtime_pins())} runtime dependencies pinned")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
