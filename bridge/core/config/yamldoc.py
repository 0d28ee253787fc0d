"""A config's YAML text → Python data, the line of every key and item, within fixed limits.

Owns the one YAML parse of a config (PyYAML's safe loader: plain data, no Python objects) and what
``bridge.core.config`` needs from its nodes besides the data:

- ``lines``: dotted path → 1-based line of every key and item (aliases walked as if expanded), and
  duplicate keys as problems;
- ``raw``: the source text of every plain scalar that YAML resolves to something other than a string
  (``20260131``, ``0123``, ``1.50``, ``true``, ``2026-01-31``), so that a field that takes text gets
  what was written, as Go's YAML decoder gives a string field (``bridge.core.config.secrets`` uses it).

Limits, enforced while the nodes are composed, before anything is built from them — a small file
can otherwise describe an enormous document (a "billion laughs" alias bomb: 750 bytes, 10⁹ values)
or one deep enough to exhaust the interpreter's stack:

- at most ``MAX_VALUES`` values (every scalar, sequence and mapping, keys included) once aliases
  are expanded; an alias is counted with everything it expands to, so the check costs one addition;
- at most ``MAX_DEPTH`` levels of nesting;
- no alias to a node that contains it (a recursive structure).

Each is a ``ConfigError`` naming the path and the line where the limit was crossed. The size of the
text itself is bounded by ``bridge.core.localfiles``. Pure module: imports neither aiokafka nor nats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import yaml

from bridge.core.errors import ConfigError, Problem

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUES",
    "Document",
    "Path",
    "ScalarFill",
    "dotted",
    "line_for",
    "parse_document",
]

MAX_VALUES: Final = 50_000
MAX_DEPTH: Final = 64

Path = tuple[str | int, ...]
_STR_TAG: Final = "tag:yaml.org,2002:str"
_NULL_TAG: Final = "tag:yaml.org,2002:null"


@dataclass(frozen=True, slots=True)
class Document:
    data: Any
    lines: Mapping[Path, int]
    raw: Mapping[Path, str]  # the written text of plain non-string scalars
    problems: tuple[Problem, ...]  # duplicate keys


class ScalarFill(Protocol):
    """Changes scalars once composed, before lines and data are read from them
    (``bridge.core.config.envsubst.Substitution``: the values of ``${VAR}`` references)."""

    def fill(self, node: yaml.ScalarNode) -> None:
        """Called once for every scalar node (keys included), before anything reads it."""

    def at(self, node: yaml.ScalarNode, path: Path) -> None:
        """Called for every path a scalar is reached by (keys: the path of the key)."""


def dotted(path: Path) -> str:
    """``("input", "kafka_franz", "sasl", 0, "password")`` → ``input.kafka_franz.sasl[0].password``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def line_for(lines: Mapping[Path, int], path: Path) -> int:
    """The line of ``path``, or of its nearest ancestor that has one (0 when none does)."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get((), 0)


class _Limited(Exception):
    """A limit crossed while composing: raised out of PyYAML's composer, turned into a ConfigError."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        if len(path) > 8:  # a path 64 levels deep says no more than its first levels do
            path = (*path[:6], "…")
        self.problem = Problem(dotted(path), line, message)
        super().__init__(message)


def _part(index: object) -> str | int:
    """The path element of a node from PyYAML's ``compose_node(parent, index)``: a sequence index,
    a mapping value's key node, or None for a mapping key."""
    if isinstance(index, int):
        return index
    if isinstance(index, yaml.ScalarNode):
        return str(index.value)
    return "<key>"


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting values (aliases expanded) and depth while it composes."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._path: list[str | int] = []
        self._sizes: dict[yaml.Node, int] = {}  # a composed node → its value count, aliases expanded
        self._total = 0

    def _count(self, count: int, line: int, message: str) -> None:
        self._total += count
        if self._total > MAX_VALUES:
            raise _Limited(tuple(self._path), line, message)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # ``index`` is a sequence index, a mapping value's key node, or None for a mapping key
        if parent is not None:
            self._path.append(_part(index))
        try:
            return self._compose(parent, index)
        finally:
            if parent is not None:
                self._path.pop()

    def _compose(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call] # types-PyYAML leaves it untyped
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            assert node is not None
            size = self._sizes.get(node)
            if size is None:  # composed but not finished: the alias is inside its own anchor
                raise _Limited(
                    tuple(self._path),
                    line,
                    f"alias *{event.anchor} refers to a node that contains it (a recursive structure)",
                )
            self._count(size, line, f"alias *{event.anchor} expands the document past {MAX_VALUES:,} values")
            return node
        if len(self._path) > MAX_DEPTH:
            raise _Limited(tuple(self._path), line, f"nested more than {MAX_DEPTH} levels deep")
        node = super().compose_node(parent, index)
        assert node is not None
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        self._sizes[node] = 1 + sum(self._sizes[c] for c in children)
        self._count(1, line, f"the document holds more than {MAX_VALUES:,} values")
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """PyYAML's, with a value its constructor cannot build (``!!int x``, an empty ``!!int``, an int of
        5,000 digits, ``!!bool maybe``) reported as a YAML error at its line rather than a Python
        exception."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            # neither the value nor the exception's text: the value may be a secret
            kind = str(node.tag).rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"the value cannot be read as !!{kind} ({type(exc).__name__})", node.start_mark
            ) from None

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        """A plain scalar that only looks like a date (``2026-02-30``) is the text written, as YAML 1.2
        (which has no timestamps) and Redpanda Connect read it."""
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            return str(node.value)


_BoundedLoader.add_constructor("tag:yaml.org,2002:timestamp", _BoundedLoader.construct_yaml_timestamp)


def parse_document(text: str, source: str = "", fill: ScalarFill | None = None) -> Document:
    """Compose ``text`` within the limits, let ``fill`` change its scalars, map its lines, then build
    the data from the same nodes. Raises ``ConfigError`` for a limit and ``yaml.YAMLError`` for text
    that is not YAML."""
    loader = _BoundedLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except _Limited as exc:
            raise ConfigError([exc.problem], source) from None
        lines: dict[Path, int] = {}
        raw: dict[Path, str] = {}
        problems: list[Problem] = []
        if root is not None:
            if fill is not None:
                _fill(root, fill)
            lines[()] = root.start_mark.line + 1
            _walk(root, (), lines, raw, problems, loader, fill)
            # construct after the walk: PyYAML rewrites merge keys (<<) in the nodes as it constructs
            data = loader.construct_document(root)
        else:
            data = None
    finally:
        loader.dispose()
    return Document(data, lines, raw, tuple(problems))


def _fill(root: yaml.Node, fill: ScalarFill) -> None:
    """``fill.fill`` once for every scalar node (an alias's node is one node, filled once)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            fill.fill(node)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)


def _resolve(resolver: yaml.resolver.BaseResolver, node: yaml.ScalarNode) -> Any:
    """The tag YAML resolves a plain scalar's text to."""
    return resolver.resolve(yaml.ScalarNode, node.value, (True, False))  # type: ignore[no-untyped-call] # types-PyYAML leaves it untyped


def _null_key(key: yaml.Node, resolver: yaml.resolver.BaseResolver) -> bool:
    """A key written as null (``~``, ``null``): the data has None there, which no field is. An empty
    key is not one of these: it comes from a ``${VAR}`` (whose problem says so)."""
    return (
        isinstance(key, yaml.ScalarNode)
        and key.style is None
        and key.value != ""
        and key.tag == _NULL_TAG
        and _resolve(resolver, key) == _NULL_TAG
    )


def _walk(
    root: yaml.Node,
    base: Path,
    lines: dict[Path, int],
    raw: dict[Path, str],
    problems: list[Problem],
    resolver: yaml.resolver.BaseResolver,
    fill: ScalarFill | None = None,
) -> None:
    """Record lines, raw scalars and duplicate keys of every path (aliases expanded: bounded by the
    value count, and no deeper than ``MAX_DEPTH``, which the composer enforced); tell ``fill`` where
    each scalar is."""
    stack: list[tuple[yaml.Node, Path]] = [(root, base)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            children: list[tuple[yaml.Node, Path]] = []
            for key, value in node.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else "<key>"
                sub = (*path, name)
                if name in seen:
                    problems.append(Problem(dotted(sub), key.start_mark.line + 1, "duplicate key"))
                if _null_key(key, resolver):
                    problems.append(
                        Problem(
                            dotted(path),
                            key.start_mark.line + 1,
                            f"a key is null ({name}): a key must be a name (quote it to mean the text)",
                        )
                    )
                seen.add(name)
                lines[sub] = key.start_mark.line + 1
                if fill is not None and isinstance(key, yaml.ScalarNode):
                    fill.at(key, sub)
                children.append((value, sub))
            stack.extend(reversed(children))  # depth first, in document order
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, i)] = item.start_mark.line + 1
            stack.extend((item, (*path, i)) for i, item in reversed(list(enumerate(node.value))))
        elif isinstance(node, yaml.ScalarNode) and fill is not None:
            fill.at(node, path)
        if (
            isinstance(node, yaml.ScalarNode)
            and node.style is None
            and node.tag not in (_STR_TAG, _NULL_TAG)
            # resolved from its text, not tagged otherwise (``!!binary ...`` is not text)
            and node.tag == _resolve(resolver, node)
        ):
            raw[path] = str(node.value)
