"""Which config fields are secrets, read from the models, and the text YAML gave for them.

Owns the list of secret fields (``secret_paths``: every ``SecretStr`` under ``Config``, with ``[*]`` /
``{*}`` for any item / key), ``is_secret`` (the loader never shows a value at such a path in a problem)
and ``secret_text_as_written``: a secret YAML resolved to a number, boolean or date (``password: 0123``,
often from an unquoted ``${VAR}``) is replaced by the text written there, as Redpanda Connect reads it.
Pure module.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr

from bridge.core.config.models import Config

__all__ = ["is_secret", "secret_paths", "secret_text_as_written"]

_ANY_INDEX, _ANY_KEY = "[*]", "{*}"  # in a secret's path: any sequence item, any mapping key


def _secret_fields(tp: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The paths of every ``SecretStr`` under the model type ``tp``, read from the models themselves."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        yield from _secret_fields(args[0], prefix)
    elif tp is SecretStr:
        yield prefix
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, field in tp.model_fields.items():
            yield from _secret_fields(field.annotation, (*prefix, name))
    elif origin in (Union, types.UnionType):
        for arg in args:
            yield from _secret_fields(arg, prefix)
    elif origin in (tuple, list):
        yield from _secret_fields(args[0], (*prefix, _ANY_INDEX))
    elif origin is dict:
        yield from _secret_fields(args[1], (*prefix, _ANY_KEY))


@cache
def secret_paths() -> tuple[tuple[str, ...], ...]:
    """Every secret field of a config, ``[*]`` / ``{*}`` standing for any item / key."""
    return tuple(_secret_fields(Config))


def _matches(part: str | int, pattern: str) -> bool:
    if pattern == _ANY_INDEX:
        return isinstance(part, int)
    return pattern == _ANY_KEY or part == pattern


def is_secret(loc: tuple[str | int, ...]) -> bool:
    """Whether a value at ``loc`` is a secret, or holds only secrets (``sasl[0].extensions``)."""
    for pattern in secret_paths():
        n = min(len(loc), len(pattern))
        if not all(_matches(loc[i], pattern[i]) for i in range(n)):
            continue
        if len(loc) >= len(pattern) or all(p in (_ANY_INDEX, _ANY_KEY) for p in pattern[len(loc) :]):
            return True
    return False


def secret_text_as_written(data: Any, raw: Mapping[tuple[str | int, ...], str]) -> None:
    """Replace each secret that YAML read as a number, boolean or date by the text written there."""
    for pattern in secret_paths():
        stack: list[tuple[Any, tuple[str | int, ...], int]] = [(data, (), 0)]
        while stack:
            node, path, depth = stack.pop()
            step = pattern[depth]
            if isinstance(node, dict):
                items = [(k, v) for k, v in node.items() if _matches(str(k), step) or step == _ANY_KEY]
            elif isinstance(node, list) and step == _ANY_INDEX:
                items = list(enumerate(node))
            else:
                continue
            for key, value in items:
                sub = (*path, key if isinstance(key, int) and isinstance(node, list) else str(key))
                if depth + 1 < len(pattern):
                    stack.append((value, sub, depth + 1))
                elif not isinstance(value, str) and sub in raw:
                    node[key] = raw[sub]
