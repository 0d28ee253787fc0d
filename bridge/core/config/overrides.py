"""``--set path=value``: a field of the config set from the command line, as ``rpk connect run --set``.

Owns what Redpanda Connect's ``applyOverrides`` does: ``path`` is a dot path into the config
(``output.nats_jetstream.max_in_flight``; a number indexes a list: ``input.kafka_franz.topics.0``), and
``value`` is one YAML plain scalar — ``5`` is a number, ``true`` a boolean, anything else text
(``--set 'output.nats_jetstream.subject=a.${! meta("kafka_partition") }'``); it is never parsed as a
list or a mapping. Mappings on the way are created. Overrides are applied after ``${VAR}`` substitution
and before validation, in the order given; a problem in a value set this way says so.

Pure module: imports neither aiokafka nor nats.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import yaml

from bridge.core.config.yamldoc import Path
from bridge.core.errors import Problem

__all__ = ["apply", "from_set_note"]


def from_set_note(path: Path) -> str:
    """What a problem in a value set by ``--set`` ends with: the expression's path (never its value,
    which may be a secret)."""
    return f"(set by --set {'.'.join(map(str, path))}=…)"


def parse_expression(expression: str) -> tuple[Path, str] | str:
    """``a.b.0=v`` → ``(("a", "b", 0), "v")``, or why it is not an expression."""
    path_text, eq, value = expression.partition("=")
    if not eq or not path_text or not value:
        return f"invalid --set expression {expression[:80]!r}: expected path=value"
    parts: list[str | int] = []
    for part in path_text.split("."):
        if not part:
            return f"invalid --set expression {expression[:80]!r}: empty name in the path {path_text[:80]!r}"
        parts.append(int(part) if part.isdigit() else part)
    return tuple(parts), value


def scalar(value: str) -> Any:
    """One YAML plain scalar's value (``5`` → 5, ``true`` → True); text YAML would read as anything
    but a scalar is the text."""
    try:
        node = yaml.compose(value, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return value
    if not isinstance(node, yaml.ScalarNode) or node.style is not None or node.value != value:
        return value
    return yaml.safe_load(value)


def apply(
    data: Any, expressions: tuple[str, ...], raw: dict[Path, str]
) -> tuple[Any, list[Path], list[Problem]]:
    """Apply each ``--set`` to ``data`` (a mapping, or None for an empty document). Returns the data,
    the paths set and the problems (an expression that is not one, a path through a value that is not
    a mapping or list)."""
    problems: list[Problem] = []
    paths: list[Path] = []
    if data is None:
        data = {}
    for expression in expressions:
        parsed = parse_expression(expression)
        if isinstance(parsed, str):
            problems.append(Problem("", 0, parsed))
            continue
        path, text = parsed
        value = scalar(text)
        where = _container(data, path)
        if isinstance(where, str):
            problems.append(Problem(".".join(map(str, path)), 0, f"cannot --set it: {where}"))
            continue
        container, last = where
        if isinstance(container, list):
            assert isinstance(last, int)
            container[last] = value
        else:
            container[str(last)] = value
        if not isinstance(value, str):
            raw[path] = text  # a secret set as 0123 is the text 0123, as in a file
        paths.append(path)
    return data, paths, problems


def _container(data: Any, path: Path) -> tuple[MutableMapping[str, Any] | list[Any], str | int] | str:
    node = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                return f"{'.'.join(map(str, path[: i + 1]))} is not an item of the list"
            node = node[part]
            continue
        if not isinstance(node, dict):
            return f"{'.'.join(map(str, path[:i]))} is not a mapping"
        key = str(part)
        if key not in node or node[key] is None:
            node[key] = {} if not isinstance(nxt, int) else []
        node = node[key]
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            return f"{'.'.join(map(str, path))} is not an item of the list"
        return node, last
    if not isinstance(node, dict):
        return f"{'.'.join(map(str, path[:-1]))} is not a mapping"
    return node, str(last)
