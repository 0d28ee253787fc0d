"""How a query result becomes text: Bloblang's ``IToString`` and Go's number and JSON formatting.

Owns ``render_value`` (what a template renders for a value that is not a string) and the Go rules it
follows: ``strconv.FormatFloat(f, 'g', -1, 64)`` for numbers, ``encoding/json``'s text for objects
and arrays (keys sorted, HTML characters escaped, its float forms). Pure module.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

__all__ = ["render_value"]


def render_value(value: Any) -> str:
    """How a query result becomes text, as Bloblang's ``IToString``.

    str as is; None → ``null``; booleans → ``true``/``false``; int → decimal; float → Go's
    ``strconv.FormatFloat(f, 'g', -1, 64)`` (``3.0`` → ``3``, ``1e6`` → ``1e+06``); bytes → UTF-8
    with replacement; objects and arrays → compact JSON with sorted keys, as Go's ``json.Marshal``.
    """
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return] # a str, checked by ``type`` (faster than isinstance)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return _go_float(value)
    if kind is bytes or kind is bytearray:
        return bytes(value).decode("utf-8", "replace")
    try:
        return _go_json(value)
    except ValueError:  # NaN or ±Inf inside a structure: json.Marshal fails, gabs renders null
        return "null"


def _shortest_digits(x: float) -> tuple[str, int]:
    """The shortest round-trip digits of ``x > 0`` and the decimal point: x = 0.DIGITS × 10**point."""
    _, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    return text, len(text) + exponent


def _fixed(digits: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * -point + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]


def _scientific(digits: str, point: int) -> str:
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exponent = point - 1
    return f"{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def _go_float(x: float) -> str:
    """``strconv.FormatFloat(x, 'g', -1, 64)``: %e when the exponent is < -4 or >= 6."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    if x.is_integer() and -1e6 < x < 1e6:
        return str(int(x))
    digits, point = _shortest_digits(abs(x))
    sign = "-" if x < 0 else ""
    if point - 1 < -4 or point - 1 >= 6:
        return sign + _scientific(digits, point)
    return sign + _fixed(digits, point)


def _go_json_float(x: float) -> str:
    """encoding/json's float64 text: 'f' form, 'e' form below 1e-6 or from 1e21 (``e-07`` → ``e-7``)."""
    if math.isnan(x) or math.isinf(x):
        raise ValueError(f"json: unsupported value: {x}")
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    digits, point = _shortest_digits(abs(x))
    sign = "-" if x < 0 else ""
    if abs(x) < 1e-6 or abs(x) >= 1e21:
        text = _scientific(digits, point)
        return sign + re.sub(r"e-0(\d)$", r"e-\1", text)
    return sign + _fixed(digits, point)


# encoding/json escapes these even inside strings (HTML safety, JavaScript line separators).
_GO_JSON_ESCAPES: Final = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _go_json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).translate(_GO_JSON_ESCAPES)


def _go_json(value: Any) -> str:
    """Go ``json.Marshal`` text: no spaces, object keys sorted, HTML characters escaped."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return _go_json_string(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return _go_json_float(value)
    if isinstance(value, Mapping):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(f"{_go_json_string(k)}:{_go_json(v)}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_go_json(v) for v in value) + "]"
    if isinstance(value, (bytes, bytearray)):
        return '"' + base64.b64encode(value).decode("ascii") + '"'
    return _go_json_string(str(value))
