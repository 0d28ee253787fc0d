"""``python -m bridgedev soak …``: dev commands that are not the bridge's own CLI (``make soak``)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m bridgedev soak [--help | options]")
        return 0 if argv else 2
    if argv[0] == "soak":
        from bridgedev import soak

        return soak.main(argv[1:])
    print(f"unknown command {argv[0]!r}; known: soak", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
