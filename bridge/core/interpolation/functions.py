"""The function and method library of ``${! }`` queries, as compiled nodes.

Owns what a query can call — functions (``meta()``, ``json()``, ``env()``, ``now()``, ...) and methods
(``.or()``, ``.catch()``, ``.uppercase()``, ``.number()``, ...) — with Redpanda Connect v4's semantics
(``internal/bloblang/query``) and its type errors, and the compiled form every query takes: a ``Node``
(an evaluator, the metadata keys it depends on, its value when constant). Constant sub-queries are
folded here (``apply``). ``MessageView`` is what a query reads from a message. Pure module.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from bridge.core.errors import InterpolationError
from bridge.core.interpolation.goformat import render_value


class MessageView(Protocol):
    """What a template reads from a message."""

    def content(self) -> bytes:
        """The raw payload."""
        ...

    def meta(self, key: str) -> str | None:
        """One metadata value, None when absent."""
        ...

    def metadata(self) -> Mapping[str, str]:
        """All metadata."""
        ...

    def structured(self) -> Any:
        """The payload parsed as JSON (cached by the implementer); ValueError when it is not JSON."""
        ...


Evaluator = Callable[[MessageView], Any]


# -- compiled nodes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """One compiled query: its evaluator, what it depends on, and its value when constant."""

    fn: Evaluator
    keys: frozenset[str] | None  # metadata keys read with literal names; None when it reads more
    const: bool = False
    value: Any = None


def constant(value: Any) -> Node:
    return Node(lambda _msg: value, frozenset(), True, value)


def _failing(error: InterpolationError) -> Node:
    """A constant query that always fails (e.g. ``"x".number()``): raise per render, so catch works."""

    def fail(_msg: MessageView) -> Any:
        raise InterpolationError(error.reason)

    return Node(fail, frozenset())


def union_keys(nodes: Sequence[Node]) -> frozenset[str] | None:
    keys: frozenset[str] = frozenset()
    for node in nodes:
        if node.keys is None:
            return None
        keys |= node.keys
    return keys


# -- values and type errors -----------------------------------------------------------------------


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def _type_error(label: str, value: Any, *expected: str) -> InterpolationError:
    """Bloblang's TypeError text: ``expected string value, got number (5)``."""
    kind = type_name(value)
    wanted = " or ".join(expected) if len(expected) <= 2 else ", ".join(expected[:-1]) + " or " + expected[-1]
    shown = ""
    if kind == "string":
        shown = f' ("{value}")'
    elif kind in ("bool", "number"):
        shown = f" ({render_value(value)})"
    return InterpolationError(f"{label}: expected {wanted} value, got {kind}{shown}")


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


KIND_CHECKS: Final[dict[str, Callable[[Any], bool]]] = {
    "string": lambda v: type(v) is str,
    "number": _is_number,
}


def _equal(left: Any, right: Any) -> bool:
    """Bloblang's ICompare: numbers by value whatever their type; no bool/number crossover."""
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if type(left) is not type(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_equal(v, right[k]) for k, v in left.items())
    return bool(left == right)


def add(left: Any, right: Any) -> Any:
    if (type(left) is str and type(right) is str) or (_is_number(left) and _is_number(right)):
        return left + right
    raise InterpolationError(f"cannot add types {type_name(left)} and {type_name(right)}")


# -- functions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: str  # "string", "number" or "any"
    optional: bool = False
    literal: bool = False  # must be a constant (function arguments always are)


def _all_metadata(msg: MessageView) -> dict[str, str]:
    return dict(msg.metadata())


def _meta_function(args: list[Any]) -> Node:
    """``meta("k")``: the value as a string, null when absent or empty (v4's MetaGetStr)."""
    key = args[0] if args else ""
    if not key:
        return Node(_all_metadata, None)

    def meta(msg: MessageView) -> str | None:
        return msg.meta(key) or None

    return Node(meta, frozenset((key,)))


def metadata_node(key: str) -> Node:
    """``metadata("k")`` and ``@k``: the value, null only when absent; the whole object without a key."""
    if not key:
        return Node(_all_metadata, None)

    def metadata(msg: MessageView) -> str | None:
        return msg.meta(key)

    return Node(metadata, frozenset((key,)))


def _content(msg: MessageView) -> str:
    return msg.content().decode("utf-8", "replace")


def _structured(msg: MessageView, label: str) -> Any:
    try:
        return msg.structured()
    except ValueError as exc:
        raise InterpolationError(f"{label}: {exc}") from exc


_MISSING: Final = object()
_ARRAY_INDEX: Final = re.compile(r"[+-]?[0-9]+")


def _dot_path(path: str) -> tuple[tuple[str, int | None], ...]:
    """gabs' DotPathToSlice (``~1`` is a literal dot, ``~0`` a tilde), each segment with its index."""
    segments = (s.replace("~1", ".").replace("~0", "~") for s in path.split("."))
    return tuple((s, int(s) if _ARRAY_INDEX.fullmatch(s) else None) for s in segments)


def _lookup(value: Any, path: tuple[tuple[str, int | None], ...]) -> Any:
    """gabs' Search: keys into objects, indexes into arrays, ``*`` maps over an array."""
    for depth, (segment, index) in enumerate(path):
        if isinstance(value, dict):
            value = value.get(segment, _MISSING)
            if value is _MISSING:
                return _MISSING
        elif isinstance(value, list):
            if segment == "*":
                rest = path[depth + 1 :]
                found = [v for v in (_lookup(item, rest) for item in value) if v is not _MISSING]
                return found if found else _MISSING
            if index is None or not 0 <= index < len(value):
                return _MISSING
            value = value[index]
        else:
            return _MISSING
    return value


def _json_function(args: list[Any]) -> Node:
    path = args[0] if args else ""
    label = f'json("{path}")' if path else "json()"
    if not path:
        return Node(lambda msg: _structured(msg, label), None)
    segments = _dot_path(path)
    if any(segment == "*" for segment, _ in segments):

        def json_search(msg: MessageView) -> Any:
            found = _lookup(_structured(msg, label), segments)
            return None if found is _MISSING else found

        return Node(json_search, None)

    def json_path(msg: MessageView) -> Any:  # _lookup unrolled: without a wildcard, missing is null
        value = _structured(msg, label)
        for key, index in segments:
            if isinstance(value, dict):
                value = value.get(key)
            elif isinstance(value, list) and index is not None and 0 <= index < len(value):
                value = value[index]
            else:
                return None
        return value

    return Node(json_path, None)


_COUNTERS: dict[str, Iterator[int]] = {}
_COUNTERS_LOCK: Final = threading.Lock()


def _count_function(args: list[Any]) -> Node:
    """``count("name")``: 1, 2, 3, ... per name, shared by every template in the process."""
    with _COUNTERS_LOCK:
        counter = _COUNTERS.setdefault(args[0], itertools.count(1))
    step = counter.__next__
    return Node(lambda _msg: step(), None)


def _now(_msg: MessageView) -> str:
    """Go's ``time.Now().Format(time.RFC3339Nano)`` in the local zone: trailing zeros trimmed, Z for UTC."""
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    local = datetime.fromtimestamp(seconds).astimezone()
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    offset = local.strftime("%z")  # +hhmm
    zone = "Z" if offset in ("", "+0000", "-0000") else f"{offset[:3]}:{offset[3:5]}"
    return local.strftime("%Y-%m-%dT%H:%M:%S") + fraction + zone


def _dynamic(fn: Evaluator) -> Callable[[list[Any]], Node]:
    return lambda _args: Node(fn, None)


_STRING_KEY: Final = (Param("key", "string", optional=True),)

FUNCTIONS: Final[dict[str, tuple[tuple[Param, ...], Callable[[list[Any]], Node]]]] = {
    "meta": (_STRING_KEY, _meta_function),
    "metadata": (_STRING_KEY, lambda args: metadata_node(args[0] if args else "")),
    "content": ((), _dynamic(_content)),
    "json": ((Param("path", "string", optional=True),), _json_function),
    "env": ((Param("name", "string"),), lambda args: constant(os.environ.get(args[0]))),
    "hostname": ((), lambda _args: constant(socket.gethostname())),
    "now": ((), _dynamic(_now)),
    "timestamp_unix": ((), _dynamic(lambda _msg: time.time_ns() // 1_000_000_000)),
    "timestamp_unix_milli": ((), _dynamic(lambda _msg: time.time_ns() // 1_000_000)),
    "timestamp_unix_micro": ((), _dynamic(lambda _msg: time.time_ns() // 1_000)),
    "timestamp_unix_nano": ((), _dynamic(lambda _msg: time.time_ns())),
    "uuid_v4": ((), _dynamic(lambda _msg: str(uuid.uuid4()))),
    "count": ((Param("name", "string"),), _count_function),
}


# -- methods --------------------------------------------------------------------------------------


def _not_string(label: str, value: Any) -> InterpolationError:
    return _type_error(label, value, "string")


def _uppercase(value: Any) -> str:
    if type(value) is str:
        return value.upper()
    raise _not_string("uppercase()", value)


def _lowercase(value: Any) -> str:
    if type(value) is str:
        return value.lower()
    raise _not_string("lowercase()", value)


# Go's unicode.IsSpace, which strings.TrimSpace uses (Python's strip() also drops \x1c-\x1f).
_GO_SPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)


def _trim(value: Any, cutset: str | None = None) -> str:
    if type(value) is str:
        return value.strip(_GO_SPACE if cutset is None else cutset)
    raise _not_string("trim()", value)


def _trim_prefix(value: Any, prefix: str) -> str:
    if type(value) is str:
        return value.removeprefix(prefix)
    raise _not_string("trim_prefix()", value)


def _trim_suffix(value: Any, suffix: str) -> str:
    if type(value) is str:
        return value.removesuffix(suffix)
    raise _not_string("trim_suffix()", value)


def _replace_all(value: Any, old: str, new: str) -> str:
    if type(value) is str:
        return value.replace(old, new)
    raise _not_string("replace_all()", value)


def _parse_number(text: str) -> float:
    """strconv.ParseFloat: no surrounding spaces or underscores, out of range is an error."""
    try:
        if text != text.strip() or "_" in text:
            raise ValueError(text)
        number = float(text)
    except ValueError:
        raise InterpolationError(f'number(): cannot parse "{text}" as a number') from None
    if math.isinf(number) and "inf" not in text.lower():
        raise InterpolationError(f'number(): "{text}" is out of range')
    return number


def _to_number(value: Any) -> float:
    if type(value) is str:
        return _parse_number(value)
    if _is_number(value):
        return float(value)
    raise _type_error("number()", value, "number")


def _length(value: Any) -> int:
    if type(value) is str:
        return len(value.encode("utf-8"))  # Go's len(): bytes
    if isinstance(value, (bytes, bytearray, list, dict)):
        return len(value)
    raise _type_error("length()", value, "string", "array", "object")


def _contains(value: Any, needle: Any) -> bool:
    if type(value) is str:
        return render_value(needle) in value
    if isinstance(value, list):
        return any(_equal(needle, item) for item in value)
    if isinstance(value, dict):
        return any(_equal(needle, item) for item in value.values())
    raise _type_error("contains()", value, "string", "array", "object")


def _not_null(value: Any) -> Any:
    if value is None:
        raise InterpolationError("not_null(): value is null")
    return value


def _number_method(target: Node, args: list[Node]) -> Node:
    """``.number()``, or ``.number(default)`` which also replaces a failing target."""
    converted = apply(_to_number, target, [])
    return _recover(converted, constant(float(args[0].value)), on_null=False) if args else converted


@dataclass(frozen=True, slots=True)
class _Method:
    params: tuple[Param, ...]
    impl: Callable[..., Any] | None = None  # (target value, *argument values) -> value
    build: Callable[[Node, list[Node]], Node] | None = None  # when not a plain function of values


METHODS: Final[dict[str, _Method]] = {
    "or": _Method((Param("fallback", "any"),), build=lambda t, args: _recover(t, args[0], on_null=True)),
    "catch": _Method((Param("fallback", "any"),), build=lambda t, args: _recover(t, args[0], on_null=False)),
    "uppercase": _Method((), _uppercase),
    "lowercase": _Method((), _lowercase),
    "trim": _Method((Param("cutset", "string", optional=True),), _trim),
    "trim_prefix": _Method((Param("prefix", "string"),), _trim_prefix),
    "trim_suffix": _Method((Param("suffix", "string"),), _trim_suffix),
    "replace_all": _Method((Param("old", "string"), Param("new", "string")), _replace_all),
    "string": _Method((), render_value),
    "number": _Method((Param("default", "number", optional=True, literal=True),), build=_number_method),
    "length": _Method((), _length),
    "contains": _Method((Param("value", "any"),), _contains),
    "not_null": _Method((), _not_null),
}


def apply(impl: Callable[..., Any], target: Node, args: Sequence[Node]) -> Node:
    """``impl(target, *args)`` as a node: folded when everything is constant, else a closure."""
    keys = union_keys([target, *args])
    if target.const and all(a.const for a in args):
        try:
            return constant(impl(target.value, *(a.value for a in args)))
        except InterpolationError as exc:
            return _failing(exc)
    get = target.fn
    if not args:
        return Node(lambda msg: impl(get(msg)), keys)
    if all(a.const for a in args):
        values = tuple(a.value for a in args)
        if len(values) == 1:
            (only,) = values
            return Node(lambda msg: impl(get(msg), only), keys)
        return Node(lambda msg: impl(get(msg), *values), keys)
    getters = tuple(a.fn for a in args)
    return Node(lambda msg: impl(get(msg), *[g(msg) for g in getters]), keys)


def _recover(target: Node, fallback: Node, on_null: bool) -> Node:
    """``.catch(fallback)`` (on_null False) or ``.or(fallback)`` (on_null True)."""
    keys = union_keys([target, fallback])
    if target.const:
        return fallback if on_null and target.value is None else target
    get, other = target.fn, fallback.fn

    def recover(msg: MessageView) -> Any:
        try:
            value = get(msg)
        except InterpolationError:
            return other(msg)
        return other(msg) if on_null and value is None else value

    return Node(recover, keys)


def typed_argument(node: Node, kind: str, label: str) -> Node:
    """A dynamic argument whose type is only known per message."""
    check = KIND_CHECKS.get(kind)
    if check is None or node.const:
        return node
    get = node.fn

    def argument(msg: MessageView) -> Any:
        value = get(msg)
        if check(value):
            return value
        raise _type_error(label, value, kind)

    return Node(argument, node.keys)
