"""Redpanda Connect (Benthos) interpolations: ``${! <bloblang query> }`` inside config strings.

This module owns the compile-once / render-per-message path for interpolated config strings
(``subject``, header values, ``msg_id``, ...): a lark LALR grammar parses the whole string at
config load, the parse tree is compiled into Python closures, and ``Template.render`` runs only
those closures. Static text is pre-joined, constant sub-queries are folded at compile time
(literals, ``env()``, ``hostname()``, and methods applied to them), and a template without
dynamic parts renders a constant. Nothing here touches Kafka or NATS.

Template syntax (as Redpanda Connect's field parser):

- literal text with zero or more ``${! query }`` parts; whitespace inside is insignificant;
- ``${{! ... }}`` renders literally as ``${! ... }`` (an escape, not a query);
- everything else is literal, including ``$`` and a plain ``${VAR}``;
- an unclosed ``${!`` or ``${{!`` is a syntax error;
- a query is at most ``MAX_DEPTH`` (64) levels deep, counting each function, method, ``+`` and
  literal from the query's root down to its deepest literal (parentheses are not levels): compiling
  and rendering recurse once per level, so a deeper one (3,000 chained methods, 5,000 nested
  arguments) would exhaust the interpreter's stack instead of being a syntax error.

The supported Bloblang subset:

- functions: ``meta("k")`` / ``meta()``, ``metadata("k")`` / ``metadata()``, ``@k``, ``@"k"``, ``@``,
  ``content()``, ``json()`` / ``json("a.b.0.c")``, ``env("NAME")``, ``hostname()``, ``now()``,
  ``timestamp_unix()``, ``timestamp_unix_milli()``, ``timestamp_unix_micro()``,
  ``timestamp_unix_nano()``, ``uuid_v4()``, ``count("name")``;
- methods: ``.or(x)``, ``.catch(x)``, ``.uppercase()``, ``.lowercase()``, ``.trim()`` /
  ``.trim(cutset)``, ``.trim_prefix(s)``, ``.trim_suffix(s)``, ``.replace_all(old, new)``,
  ``.string()``, ``.number()`` / ``.number(default)``, ``.length()``, ``.contains(v)``,
  ``.not_null()``;
- literals: ``"strings"`` (Go escapes), integers and decimals (optionally negative), ``true``,
  ``false``, ``null``; infix ``+`` (string concatenation or number addition); parentheses.

Anything else (other operators, field paths such as ``this.foo``, named arguments, ``match``,
``if``, ...) is a ``TemplateSyntaxError`` at compile time. Function arguments must be literals;
method arguments may be queries.

Semantics follow Redpanda Connect v4 (``internal/bloblang/query``): ``meta("k")`` is null when the
key is absent or empty, ``metadata("k")`` and ``@k`` only when absent; ``env()`` is null when unset
and, like ``hostname()``, is read once at compile time; ``.number()`` yields a float; values render
as ``IToString`` does (see ``render_value``). A failing query raises ``InterpolationError`` rather
than rendering an empty string.
"""

from __future__ import annotations

import base64
import itertools
import json
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
from decimal import Decimal
from functools import cache
from typing import Any, Final, Protocol

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from bridge.errors import RecordError

__all__ = [
    "MAX_DEPTH",
    "InterpolationError",
    "MessageView",
    "Template",
    "TemplateSyntaxError",
    "render_value",
]


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


MAX_DEPTH: Final = 64


class TemplateSyntaxError(ValueError):
    """A template that cannot be compiled. ``column`` is the 1-based character offset of the problem."""

    def __init__(self, message: str, column: int, template: str) -> None:
        self.message = message
        self.column = column
        self.template = template
        shown = template if len(template) <= 200 else template[:200] + f"… ({len(template):,} characters)"
        super().__init__(f"{message} at column {column}: {shown}")


class InterpolationError(RecordError):
    """A query that failed while rendering one message (wrong type, payload not JSON, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, kind="interpolation")


Evaluator = Callable[[MessageView], Any]


class Template:
    """A compiled interpolated string. Build with ``Template.compile``; immutable afterwards."""

    __slots__ = ("is_static", "meta_keys", "render", "source")

    render: Callable[[MessageView], str]
    """The string for one message; raises ``InterpolationError`` when a query fails.

    An attribute holding the compiled closure rather than a method, which saves a call per render."""

    def __init__(
        self,
        source: str,
        is_static: bool,
        meta_keys: frozenset[str] | None,
        renderer: Callable[[MessageView], str],
    ) -> None:
        self.source = source
        self.is_static = is_static  # no ${! } part at all (escapes do not count)
        # The metadata keys the rendered value is a pure function of, or None when it also depends
        # on the payload, the clock, a counter, or metadata read without a literal key.
        self.meta_keys = meta_keys
        self.render = renderer

    @classmethod
    def compile(cls, text: str) -> Template:
        """Parse and compile ``text``; raise ``TemplateSyntaxError`` when it is not a valid template."""
        compiler = _Compiler(text)
        parts: list[str | _Node] = []
        tree = _parse(text)
        _check_depth(tree, text)
        for child in tree.children:
            if isinstance(child, Tree):  # an interpolation
                parts.append(compiler.expr(child.children[0]))
            elif child.type == "ESCAPE":  # ${{! x }} is the literal ${! x }
                parts.append("${!" + child[4:-2] + "}")
            else:
                parts.append(str(child))
        is_static = not any(isinstance(part, _Node) for part in parts)
        head, pairs, keys = _layout(parts)
        return cls(text, is_static, keys, _renderer(text, head, pairs))

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


# -- rendering values -----------------------------------------------------------------------------


def render_value(value: Any) -> str:
    """How a query result becomes text, as Bloblang's ``IToString``.

    str as is; None → ``null``; booleans → ``true``/``false``; int → decimal; float → Go's
    ``strconv.FormatFloat(f, 'g', -1, 64)`` (``3.0`` → ``3``, ``1e6`` → ``1e+06``); bytes → UTF-8
    with replacement; objects and arrays → compact JSON with sorted keys, as Go's ``json.Marshal``.
    """
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
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


# -- the grammar ----------------------------------------------------------------------------------

# TEXT is any run without a "${!" or "${{!"; it outranks the ignored whitespace, so spaces in
# literal text are kept, while the contextual lexer only offers TEXT outside of a query.
_GRAMMAR: Final = r"""
    template: (TEXT | ESCAPE | interp)*
    interp: _OPEN expr _CLOSE

    ?expr: postfix
        | expr PLUS postfix                    -> add

    ?postfix: primary
        | postfix "." NAME "(" [args] ")"      -> method
        | postfix "." NAME                     -> field_access

    ?primary: NAME "(" [args] ")"              -> function
        | META                                 -> metadata_ref
        | STRING                               -> string
        | NUMBER                               -> number
        | "true"                               -> true
        | "false"                              -> false
        | "null"                               -> null
        | NAME                                 -> field_reference
        | "(" expr ")"

    args: expr ("," expr)*

    _OPEN: "${!"
    _CLOSE: "}"
    PLUS: "+"
    TEXT.2: /(?:[^$]|\$(?!\{\{?!))+/
    ESCAPE.2: /\$\{\{!.*?\}\}/s
    META: /@(?:[A-Za-z0-9_]+|"(?:[^"\\\n]|\\.)*")?/
    STRING: /"(?:[^"\\\n]|\\.)*"/
    NUMBER: /-?[0-9]+(?:\.[0-9]+)?/
    NAME: /[A-Za-z_][A-Za-z0-9_]*/
    %ignore /[ \t\r\n]+/
"""


@cache
def _parser() -> Lark:
    return Lark(_GRAMMAR, start="template", parser="lalr", lexer="contextual")


_TERMINAL_NAMES: Final = {
    "_CLOSE": "'}'",
    "PLUS": "'+'",
    "DOT": "'.'",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
}
_QUERY_STARTS: Final = frozenset({"NAME", "META", "STRING", "NUMBER", "TRUE", "FALSE", "NULL", "LPAR"})
_OPERATORS: Final = frozenset("-*/%|&!=<>?:")  # Bloblang operators this subset does not have
# Only for error messages: the first lexeme of the text the parser could not accept.
_LEXEME: Final = re.compile(r'"(?:[^"\\\n]|\\.)*"|[A-Za-z0-9_]+|\$\{\{?!|.', re.DOTALL)


def _expected(names: set[str]) -> str:
    if names == {"NAME"}:
        return "a method name"
    wanted = {_TERMINAL_NAMES.get(name, name.lower()) for name in names - _QUERY_STARTS}
    if names & _QUERY_STARTS:
        wanted.add("a query")
    return " or ".join(sorted(wanted))


def _unexpected(rest: str, expected: set[str]) -> str:
    """Why the parser stopped at the start of ``rest``."""
    match = _LEXEME.match(rest)
    lexeme = match.group() if match else rest[:1]
    if lexeme == '"':
        return "unterminated string literal"
    if lexeme in _OPERATORS:
        return f"unsupported operator {lexeme!r} (only '+' is supported)"
    return f"unexpected {lexeme!r}, expected {_expected(expected)}"


def _parse(text: str) -> Tree[Token]:
    try:
        return _parser().parse(text)
    except UnexpectedCharacters as exc:  # TEXT matches all but an unterminated "${{!"
        pos = exc.pos_in_stream or 0
        if text.startswith("${{!", pos):
            raise TemplateSyntaxError("unterminated escape '${{!': expected '}}'", pos + 1, text) from None
        raise TemplateSyntaxError(_unexpected(text[pos:], set(exc.allowed or ())), pos + 1, text) from None
    except UnexpectedToken as exc:
        if exc.token.type == "$END":
            opened = text.rfind("${!") + 1
            raise TemplateSyntaxError(
                "unterminated interpolation: expected '}' to close '${!'", opened, text
            ) from None
        pos = exc.token.start_pos or 0
        raise TemplateSyntaxError(_unexpected(text[pos:], set(exc.expected)), pos + 1, text) from None
    except UnexpectedInput as exc:
        raise TemplateSyntaxError(f"invalid template ({exc})", (exc.pos_in_stream or 0) + 1, text) from None


def _check_depth(tree: Tree[Token], text: str) -> None:
    """Refuse a query deeper than ``MAX_DEPTH`` before anything recurses over it (iteratively)."""
    stack: list[tuple[Tree[Token] | Token, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, Tree):
            continue
        if depth > MAX_DEPTH + 1:  # the template and interp levels do not count
            raise TemplateSyntaxError(
                f"query nested or chained more than {MAX_DEPTH} levels deep", _first_column(node), text
            )
        step = 0 if node.data == "args" else 1  # an argument list is not a level of its own
        stack.extend((child, depth + step) for child in node.children)


def _first_column(tree: Tree[Token]) -> int:
    """The 1-based column of the first token under ``tree``."""
    node: Tree[Token] | Token = tree
    while isinstance(node, Tree):
        tokens = [c for c in node.children if c is not None]
        if not tokens:
            return 1
        node = tokens[0]
    return (node.start_pos or 0) + 1


# -- compiled nodes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    """One compiled query: its evaluator, what it depends on, and its value when constant."""

    fn: Evaluator
    keys: frozenset[str] | None  # metadata keys read with literal names; None when it reads more
    const: bool = False
    value: Any = None


def _constant(value: Any) -> _Node:
    return _Node(lambda _msg: value, frozenset(), True, value)


def _failing(error: InterpolationError) -> _Node:
    """A constant query that always fails (e.g. ``"x".number()``): raise per render, so catch works."""

    def fail(_msg: MessageView) -> Any:
        raise InterpolationError(error.reason)

    return _Node(fail, frozenset())


def _union_keys(nodes: Sequence[_Node]) -> frozenset[str] | None:
    keys: frozenset[str] = frozenset()
    for node in nodes:
        if node.keys is None:
            return None
        keys |= node.keys
    return keys


def _layout(parts: list[str | _Node]) -> tuple[str, tuple[tuple[Evaluator, str], ...], frozenset[str] | None]:
    """Fold constant queries into the text; return the leading text, (query, following text) pairs
    and the metadata keys the whole depends on."""
    head: list[str] = []
    pairs: list[tuple[Evaluator, list[str]]] = []
    nodes = [p for p in parts if isinstance(p, _Node)]
    for part in parts:
        if isinstance(part, _Node) and not part.const:
            pairs.append((part.fn, []))
            continue
        text = part if isinstance(part, str) else render_value(part.value)
        (pairs[-1][1] if pairs else head).append(text)
    return "".join(head), tuple((fn, "".join(tail)) for fn, tail in pairs), _union_keys(nodes)


def _located(exc: InterpolationError, source: str) -> InterpolationError:
    return InterpolationError(f"{exc.reason} (in {source!r})")


def _renderer(
    source: str, head: str, pairs: tuple[tuple[Evaluator, str], ...]
) -> Callable[[MessageView], str]:
    """The render closure for one template, specialised for the common shapes."""
    if not pairs:
        return lambda _msg: head
    if len(pairs) == 1:
        ((fn, tail),) = pairs

        def render_one(msg: MessageView) -> str:
            try:
                value = fn(msg)
            except InterpolationError as exc:
                raise _located(exc, source) from exc
            return value if type(value) is str else render_value(value)

        def render_around(msg: MessageView) -> str:
            try:
                value = fn(msg)
            except InterpolationError as exc:
                raise _located(exc, source) from exc
            return f"{head}{value if type(value) is str else render_value(value)}{tail}"

        return render_around if head or tail else render_one

    if len(pairs) == 2:
        (first, middle), (second, tail) = pairs

        def render_two(msg: MessageView) -> str:
            try:
                a, b = first(msg), second(msg)
            except InterpolationError as exc:
                raise _located(exc, source) from exc
            a = a if type(a) is str else render_value(a)
            b = b if type(b) is str else render_value(b)
            return f"{head}{a}{middle}{b}{tail}"

        return render_two
    if len(pairs) == 3:
        (first, middle), (second, middle2), (third, tail) = pairs

        def render_three(msg: MessageView) -> str:
            try:
                a, b, c = first(msg), second(msg), third(msg)
            except InterpolationError as exc:
                raise _located(exc, source) from exc
            a = a if type(a) is str else render_value(a)
            b = b if type(b) is str else render_value(b)
            c = c if type(c) is str else render_value(c)
            return f"{head}{a}{middle}{b}{middle2}{c}{tail}"

        return render_three

    def render_many(msg: MessageView) -> str:
        out = head
        try:
            for fn, tail in pairs:
                value = fn(msg)
                out += (value if type(value) is str else render_value(value)) + tail
        except InterpolationError as exc:
            raise _located(exc, source) from exc
        return out

    return render_many


# -- values and type errors -----------------------------------------------------------------------


def _type_name(value: Any) -> str:
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
    kind = _type_name(value)
    wanted = " or ".join(expected) if len(expected) <= 2 else ", ".join(expected[:-1]) + " or " + expected[-1]
    shown = ""
    if kind == "string":
        shown = f' ("{value}")'
    elif kind in ("bool", "number"):
        shown = f" ({render_value(value)})"
    return InterpolationError(f"{label}: expected {wanted} value, got {kind}{shown}")


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


_KIND_CHECKS: Final[dict[str, Callable[[Any], bool]]] = {
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


def _add(left: Any, right: Any) -> Any:
    if (type(left) is str and type(right) is str) or (_is_number(left) and _is_number(right)):
        return left + right
    raise InterpolationError(f"cannot add types {_type_name(left)} and {_type_name(right)}")


# -- functions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    kind: str  # "string", "number" or "any"
    optional: bool = False
    literal: bool = False  # must be a constant (function arguments always are)


def _all_metadata(msg: MessageView) -> dict[str, str]:
    return dict(msg.metadata())


def _meta_function(args: list[Any]) -> _Node:
    """``meta("k")``: the value as a string, null when absent or empty (v4's MetaGetStr)."""
    key = args[0] if args else ""
    if not key:
        return _Node(_all_metadata, None)

    def meta(msg: MessageView) -> str | None:
        return msg.meta(key) or None

    return _Node(meta, frozenset((key,)))


def _metadata_node(key: str) -> _Node:
    """``metadata("k")`` and ``@k``: the value, null only when absent; the whole object without a key."""
    if not key:
        return _Node(_all_metadata, None)

    def metadata(msg: MessageView) -> str | None:
        return msg.meta(key)

    return _Node(metadata, frozenset((key,)))


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


def _json_function(args: list[Any]) -> _Node:
    path = args[0] if args else ""
    label = f'json("{path}")' if path else "json()"
    if not path:
        return _Node(lambda msg: _structured(msg, label), None)
    segments = _dot_path(path)
    if any(segment == "*" for segment, _ in segments):

        def json_search(msg: MessageView) -> Any:
            found = _lookup(_structured(msg, label), segments)
            return None if found is _MISSING else found

        return _Node(json_search, None)

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

    return _Node(json_path, None)


_COUNTERS: dict[str, Iterator[int]] = {}
_COUNTERS_LOCK: Final = threading.Lock()


def _count_function(args: list[Any]) -> _Node:
    """``count("name")``: 1, 2, 3, ... per name, shared by every template in the process."""
    with _COUNTERS_LOCK:
        counter = _COUNTERS.setdefault(args[0], itertools.count(1))
    step = counter.__next__
    return _Node(lambda _msg: step(), None)


def _now(_msg: MessageView) -> str:
    """Go's ``time.Now().Format(time.RFC3339Nano)`` in the local zone: trailing zeros trimmed, Z for UTC."""
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    local = datetime.fromtimestamp(seconds).astimezone()
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    offset = local.strftime("%z")  # +hhmm
    zone = "Z" if offset in ("", "+0000", "-0000") else f"{offset[:3]}:{offset[3:5]}"
    return local.strftime("%Y-%m-%dT%H:%M:%S") + fraction + zone


def _dynamic(fn: Evaluator) -> Callable[[list[Any]], _Node]:
    return lambda _args: _Node(fn, None)


_STRING_KEY: Final = (_Param("key", "string", optional=True),)

_FUNCTIONS: Final[dict[str, tuple[tuple[_Param, ...], Callable[[list[Any]], _Node]]]] = {
    "meta": (_STRING_KEY, _meta_function),
    "metadata": (_STRING_KEY, lambda args: _metadata_node(args[0] if args else "")),
    "content": ((), _dynamic(_content)),
    "json": ((_Param("path", "string", optional=True),), _json_function),
    "env": ((_Param("name", "string"),), lambda args: _constant(os.environ.get(args[0]))),
    "hostname": ((), lambda _args: _constant(socket.gethostname())),
    "now": ((), _dynamic(_now)),
    "timestamp_unix": ((), _dynamic(lambda _msg: time.time_ns() // 1_000_000_000)),
    "timestamp_unix_milli": ((), _dynamic(lambda _msg: time.time_ns() // 1_000_000)),
    "timestamp_unix_micro": ((), _dynamic(lambda _msg: time.time_ns() // 1_000)),
    "timestamp_unix_nano": ((), _dynamic(lambda _msg: time.time_ns())),
    "uuid_v4": ((), _dynamic(lambda _msg: str(uuid.uuid4()))),
    "count": ((_Param("name", "string"),), _count_function),
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


def _number_method(target: _Node, args: list[_Node]) -> _Node:
    """``.number()``, or ``.number(default)`` which also replaces a failing target."""
    converted = _apply(_to_number, target, [])
    return _recover(converted, _constant(float(args[0].value)), on_null=False) if args else converted


@dataclass(frozen=True, slots=True)
class _Method:
    params: tuple[_Param, ...]
    impl: Callable[..., Any] | None = None  # (target value, *argument values) -> value
    build: Callable[[_Node, list[_Node]], _Node] | None = None  # when not a plain function of values


_METHODS: Final[dict[str, _Method]] = {
    "or": _Method((_Param("fallback", "any"),), build=lambda t, args: _recover(t, args[0], on_null=True)),
    "catch": _Method((_Param("fallback", "any"),), build=lambda t, args: _recover(t, args[0], on_null=False)),
    "uppercase": _Method((), _uppercase),
    "lowercase": _Method((), _lowercase),
    "trim": _Method((_Param("cutset", "string", optional=True),), _trim),
    "trim_prefix": _Method((_Param("prefix", "string"),), _trim_prefix),
    "trim_suffix": _Method((_Param("suffix", "string"),), _trim_suffix),
    "replace_all": _Method((_Param("old", "string"), _Param("new", "string")), _replace_all),
    "string": _Method((), render_value),
    "number": _Method((_Param("default", "number", optional=True, literal=True),), build=_number_method),
    "length": _Method((), _length),
    "contains": _Method((_Param("value", "any"),), _contains),
    "not_null": _Method((), _not_null),
}


def _apply(impl: Callable[..., Any], target: _Node, args: Sequence[_Node]) -> _Node:
    """``impl(target, *args)`` as a node: folded when everything is constant, else a closure."""
    keys = _union_keys([target, *args])
    if target.const and all(a.const for a in args):
        try:
            return _constant(impl(target.value, *(a.value for a in args)))
        except InterpolationError as exc:
            return _failing(exc)
    get = target.fn
    if not args:
        return _Node(lambda msg: impl(get(msg)), keys)
    if all(a.const for a in args):
        values = tuple(a.value for a in args)
        if len(values) == 1:
            (only,) = values
            return _Node(lambda msg: impl(get(msg), only), keys)
        return _Node(lambda msg: impl(get(msg), *values), keys)
    getters = tuple(a.fn for a in args)
    return _Node(lambda msg: impl(get(msg), *[g(msg) for g in getters]), keys)


def _recover(target: _Node, fallback: _Node, on_null: bool) -> _Node:
    """``.catch(fallback)`` (on_null False) or ``.or(fallback)`` (on_null True)."""
    keys = _union_keys([target, fallback])
    if target.const:
        return fallback if on_null and target.value is None else target
    get, other = target.fn, fallback.fn

    def recover(msg: MessageView) -> Any:
        try:
            value = get(msg)
        except InterpolationError:
            return other(msg)
        return other(msg) if on_null and value is None else value

    return _Node(recover, keys)


def _checked(node: _Node, kind: str, label: str) -> _Node:
    """A dynamic argument whose type is only known per message."""
    check = _KIND_CHECKS.get(kind)
    if check is None or node.const:
        return node
    get = node.fn

    def argument(msg: MessageView) -> Any:
        value = get(msg)
        if check(value):
            return value
        raise _type_error(label, value, kind)

    return _Node(argument, node.keys)


# -- compiling parse trees ------------------------------------------------------------------------

_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
}
_HEX_WIDTHS: Final = {"x": 2, "u": 4, "U": 8}


def _described(value: Any) -> str:
    kind = _type_name(value)
    return f"{kind} ({render_value(value)})" if kind in ("bool", "number") else kind


class _Compiler:
    """Turns the parse tree of one ``${! }`` query into a ``_Node``; errors point into ``source``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, message: str, token: Token) -> TemplateSyntaxError:
        return TemplateSyntaxError(message, (token.start_pos or 0) + 1, self.source)

    def expr(self, tree: Tree[Token] | Token) -> _Node:
        assert isinstance(tree, Tree), tree
        rule: Callable[[Tree[Token]], _Node] = getattr(self, f"_rule_{tree.data}")
        return rule(tree)

    # literals

    def _rule_string(self, tree: Tree[Token]) -> _Node:
        (token,) = tree.children
        assert isinstance(token, Token)
        return _constant(self.unquote(token))

    def _rule_number(self, tree: Tree[Token]) -> _Node:
        (token,) = tree.children
        assert isinstance(token, Token)
        return _constant(float(token) if "." in token else int(token))

    def _rule_true(self, _tree: Tree[Token]) -> _Node:
        return _constant(True)

    def _rule_false(self, _tree: Tree[Token]) -> _Node:
        return _constant(False)

    def _rule_null(self, _tree: Tree[Token]) -> _Node:
        return _constant(None)

    def unquote(self, token: Token) -> str:
        """A Go double-quoted string literal (strconv.Unquote)."""
        body, out, i = token[1:-1], [], 0
        while i < len(body):
            char = body[i]
            if char != "\\":
                out.append(char)
                i += 1
                continue
            escape = body[i + 1]
            column = (token.start_pos or 0) + 2 + i
            if escape in _ESCAPES:
                out.append(_ESCAPES[escape])
                i += 2
            elif escape in _HEX_WIDTHS or escape in "01234567":
                width, base, start = (
                    (_HEX_WIDTHS[escape], 16, i + 2) if escape in _HEX_WIDTHS else (3, 8, i + 1)
                )
                digits = body[start : start + width]
                try:
                    if len(digits) != width:
                        raise ValueError(digits)
                    code = int(digits, base)
                    if base == 8 and code > 0xFF:
                        raise ValueError(digits)
                    out.append(chr(code))
                except ValueError:
                    raise TemplateSyntaxError(
                        f"invalid escape sequence '\\{escape}{digits}' in string", column, self.source
                    ) from None
                i = start + width
            else:
                raise TemplateSyntaxError(
                    f"invalid escape sequence '\\{escape}' in string", column, self.source
                )
        return "".join(out)

    # metadata, functions, methods

    def _rule_metadata_ref(self, tree: Tree[Token]) -> _Node:
        (token,) = tree.children
        assert isinstance(token, Token)
        key = token[1:]
        if key.startswith('"'):
            key = self.unquote(Token("STRING", key, start_pos=(token.start_pos or 0) + 1))
        return _metadata_node(key)

    def arguments(self, tree: Tree[Token] | Token | None) -> list[_Node]:
        if tree is None:
            return []
        assert isinstance(tree, Tree)
        return [self.expr(child) for child in tree.children]

    def check_arity(self, what: str, params: tuple[_Param, ...], args: list[_Node], token: Token) -> None:
        required = sum(not p.optional for p in params)
        if required <= len(args) <= len(params):
            return
        count = str(required) if required == len(params) else f"{required} to {len(params)}"
        plural = "" if count == "1" else "s"
        raise self.error(f"{what} expects {count} argument{plural}, got {len(args)}", token)

    def check_literal(self, what: str, param: _Param, arg: _Node, token: Token) -> None:
        check = _KIND_CHECKS.get(param.kind)
        if check is not None and not check(arg.value):
            raise self.error(
                f"{what} argument '{param.name}' must be a {param.kind}, got {_described(arg.value)}", token
            )

    def _rule_function(self, tree: Tree[Token]) -> _Node:
        name, arg_tree = tree.children
        assert isinstance(name, Token)
        spec = _FUNCTIONS.get(str(name))
        if spec is None:
            raise self.error(f"unknown function {str(name)!r}", name)
        params, build = spec
        what = f"function {str(name)!r}"
        args = self.arguments(arg_tree)
        self.check_arity(what, params, args, name)
        for param, arg in zip(params, args, strict=False):
            if not arg.const:
                raise self.error(f"{what} argument '{param.name}' must be a literal", name)
            self.check_literal(what, param, arg, name)
        return build([arg.value for arg in args])

    def _rule_method(self, tree: Tree[Token]) -> _Node:
        target_tree, name, arg_tree = tree.children
        assert isinstance(name, Token)
        method = _METHODS.get(str(name))
        if method is None:
            raise self.error(f"unknown method {str(name)!r}", name)
        target, args = self.expr(target_tree), self.arguments(arg_tree)
        what = f"method {str(name)!r}"
        self.check_arity(what, method.params, args, name)
        for param, arg in zip(method.params, args, strict=False):
            if arg.const:
                self.check_literal(what, param, arg, name)
            elif param.literal:
                raise self.error(f"{what} argument '{param.name}' must be a literal", name)
        if method.build is not None:
            return method.build(target, args)
        assert method.impl is not None
        label = f"{name}()"
        checked = [_checked(arg, param.kind, label) for param, arg in zip(method.params, args, strict=False)]
        return _apply(method.impl, target, checked)

    def _rule_add(self, tree: Tree[Token]) -> _Node:
        left_tree, plus, right_tree = tree.children
        assert isinstance(plus, Token)
        left, right = self.expr(left_tree), self.expr(right_tree)
        if left.const and right.const:
            try:
                return _constant(_add(left.value, right.value))
            except InterpolationError as exc:
                raise self.error(exc.reason, plus) from None
        get_left, get_right = left.fn, right.fn
        return _Node(lambda msg: _add(get_left(msg), get_right(msg)), _union_keys([left, right]))

    # unsupported Bloblang

    def _rule_field_reference(self, tree: Tree[Token]) -> _Node:
        (name,) = tree.children
        assert isinstance(name, Token)
        raise self.error(
            f"field reference {str(name)!r} is not supported (functions need parentheses; "
            f'read payload fields with json("{name}"))',
            name,
        )

    def _rule_field_access(self, tree: Tree[Token]) -> _Node:
        _, name = tree.children
        assert isinstance(name, Token)
        raise self.error(
            f"field access '.{name}' is not supported (methods need parentheses; "
            'read payload fields with json("a.b"))',
            name,
        )
