"""The config's scalar types: Go durations, human byte sizes, comma lists, secrets, YAML lists as tuples.

Owns how a scalar written in a Redpanda Connect config becomes a value: ``parse_duration`` (``"1m30s"``
→ seconds, at most Go's largest duration), ``parse_size`` (``"1MiB"`` → bytes, as go-humanize), broker
lists with comma items split, secrets as ``SecretStr`` (text only, never shown in a problem), and
YAML sequences as tuples (the models are frozen). The ``Annotated`` types here are what the models of
``bridge.core.config.models`` are written with. Pure module.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr
from pydantic_core import PydanticCustomError

__all__ = [
    "AnyList",
    "ByteSize",
    "CommaList",
    "Duration",
    "Secret",
    "StrList",
    "as_tuple",
    "parse_duration",
    "parse_size",
]

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_MAX_DURATION = (2**63 - 1) / 1e9  # Go's time.Duration: int64 nanoseconds, about 292 years


def parse_duration(value: object) -> float:
    """A Go duration string (``"5s"``, ``"1m30s"``, ``"250ms"``) → seconds. Plain numbers are seconds.
    At most Go's largest duration (about 292 years), as Redpanda Connect refuses longer ones."""
    seconds = _duration(value)
    if not abs(seconds) <= _MAX_DURATION:  # NaN too
        raise ValueError(f"duration {str(value)[:40]!r} is out of range (at most 2562047h47m16s)")
    return seconds


def _duration(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '5s'")
    if isinstance(value, int | float):
        return float(value) if abs(value) <= _MAX_DURATION else math.inf
    if not isinstance(value, str):
        raise ValueError("expected a duration such as '5s'")
    text = value.strip()
    if text in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"invalid duration {value!r} (use Go syntax such as '500ms', '5s', '1m30s')")
    return total


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?)([bB]?)\s*$")


def parse_size(value: object) -> int:
    """A human byte size (``"1MiB"``, ``"50MB"``, ``"1B"``, ``1024``) → bytes, as go-humanize parses it."""
    if isinstance(value, bool):
        raise ValueError("expected a byte size such as '1MiB'")
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a byte size such as '1MiB'")
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"invalid byte size {value!r} (such as '1B', '32KiB', '50MiB')")
    number, prefix, binary, _ = match.groups()
    power = " kmgt".index(prefix.lower()) if prefix else 0
    base = 1024 if binary else 1000
    size = float(number) * base**power
    if not size < 2**64:  # go-humanize: "too large" past an unsigned 64-bit number
        raise ValueError(f"byte size {value[:40]!r} is too large")
    return int(size)


Duration = Annotated[float, BeforeValidator(parse_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_size)]


def _split_commas(items: object) -> object:
    """``["a,b", "c"]`` → ``("a", "b", "c")``: Redpanda Connect expands comma items in broker lists."""
    if isinstance(items, str):
        items = [items]
    if isinstance(items, list | tuple):
        out: list[object] = []
        for item in items:
            if isinstance(item, str):
                out.extend(part.strip() for part in item.split(",") if part.strip())
            else:
                out.append(item)
        return tuple(out)
    return items


CommaList = Annotated[tuple[str, ...], BeforeValidator(_split_commas)]


def _secret_text(value: object) -> object:
    """A secret is text. (A plain YAML scalar was already replaced by the text written, in ``parse``.)"""
    if isinstance(value, str | SecretStr):
        return value
    raise PydanticCustomError("secret_type", "expected a string (the value is not shown: it is a secret)")


Secret = Annotated[SecretStr, BeforeValidator(_secret_text)]

# YAML sequences arrive as lists; the frozen tree keeps tuples.
as_tuple = BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)
StrList = Annotated[tuple[str, ...], as_tuple]
AnyList = Annotated[tuple[Any, ...], as_tuple]
