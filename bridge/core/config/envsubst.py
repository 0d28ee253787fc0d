"""``${VAR}`` and ``${VAR:default}`` in a config: found in the text, put into the YAML as the text they are.

Owns the environment side of loading a config:

- **Finding references** as Redpanda Connect does: ``${NAME}``, ``${NAME:default}``; a default may hold
  ``${...}`` groups (``${A:${B}}``), taken literally, not expanded (Redpanda Connect's
  ``TestEnvSwapping``: ``${DOES_NOT_EXIST:${BENTHOS.TEST}}`` → ``${BENTHOS.TEST}``); a variable that is
  set but empty takes the default; an unset one without a default is a problem at its line.
  ``${! ... }`` and ``${{...}}`` are not references.
- **Inserting values as the text they are.** Redpanda Connect pastes a value into the text before
  parsing, so a value YAML reads differently (``*x``, ``!tag``, ``&a b``, ``a: b``, ``x #y``, ``[a``)
  becomes an alias, a tag, an anchor, a mapping, a comment or a syntax error — and the error quotes
  the value. Here each reference is first replaced by a placeholder token of letters and digits; the
  YAML is composed from that text; then each scalar holding placeholders gets the values put in. A
  plain scalar that is then exactly what YAML would read back as plain (``5``, ``true``, ``0123``,
  ``nats://h:4222``) is resolved as YAML would (a number, a boolean, ...); anything else is the string
  it is. So ``password: ${P}`` with ``P='&x y'`` is the password ``&x y``, whatever the characters.
  Values keep their newlines (a PEM certificate in ``${CERT}`` is the certificate).
- **The size of the result**: the text with every value in place is at most ``localfiles.CONFIG_LIMIT``
  (1 MiB, as the file), counted while the references are found — the large text is never built — so
  5,000 references to a 120 KB variable are refused at once, naming the reference that crossed it.
- **Problems never show a value**: ``reword`` replaces every substituted value (of at least
  ``SHOWN_MIN`` characters) in a problem's text by its ``${NAME}``.

Pure module: imports neither aiokafka nor nats.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import yaml

from bridge.core.config.yamldoc import dotted
from bridge.core.errors import Problem
from bridge.core.localfiles import CONFIG_LIMIT, size_text

__all__ = [
    "SHOWN_MIN",
    "Reference",
    "Substitution",
    "scan",
    "size_problem",
    "substitute_text",
    "unset_problem",
]

# ${NAME} or ${NAME:default}; a default is any text without '}' except whole ${...} groups, as
# Redpanda Connect's envRegex. Not ${! ...} (an interpolation) nor ${{...}} (an escape).
_ENV_REF: Final = re.compile(r"\$\{(?![!{])([A-Za-z_][A-Za-z0-9_]*)(?::((?:\$\{[^}]+\}|[^}])*))?\}")
_NESTED: Final = re.compile(r"\$\{[^}]*\}")
SHOWN_MIN: Final = 4  # shorter values are not searched for in problem texts (they would garble them)

_STR: Final = "tag:yaml.org,2002:str"
_NULL: Final = "tag:yaml.org,2002:null"
_RESOLVED: Final = frozenset(
    "tag:yaml.org,2002:" + kind for kind in ("str", "int", "float", "bool", "null", "timestamp")
)
# What a plain scalar may be and still be read back as exactly this text: a first character that
# starts a plain scalar, no ': ' (a key) or ' #' (a comment), no flow indicator (the scalar may be
# inside [...] or {...}), no line break or tab, nothing trailing (space, ':').
_PLAIN_SAFE: Final = re.compile(
    r"""
    (?!.*(?:\x20\#|:\x20))
    (?:[^-?:,\[\]{}#&*!|>'"%@`\s]|[-?:](?=[^\s,\[\]{}]))
    [^\n\r\t,\[\]{}]*
    (?<![\s:])\Z
    """,
    re.VERBOSE | re.DOTALL,
)
_EXPLICIT_TAG: Final = re.compile(r"(?:&\S+\s+)?!")


@dataclass(frozen=True, slots=True)
class Reference:
    """One ``${...}`` in the text."""

    name: str
    line: int
    value: str | None  # None: unset, no default
    from_default: bool
    nested_default: bool  # the default holds ${...}, taken literally
    skipped: bool = False  # unset without a default, taken as empty (lint --skip-env-var-check)


@dataclass(slots=True)
class Substitution:
    """The references of one config text and its placeholder text (what YAML composes)."""

    text: str  # the config with each reference replaced by its placeholder
    references: list[Reference] = field(default_factory=list)
    too_large: int | None = None  # the index of the reference that took the text past the limit
    paths: dict[int, tuple[str | int, ...]] = field(default_factory=dict)  # reference → first path
    _token: str = ""
    _pattern: re.Pattern[str] = field(default_factory=lambda: re.compile("(?!)"))
    _in_node: dict[int, list[int]] = field(default_factory=dict)  # id(node) → its references

    def placeholder(self, index: int) -> str:
        return f"{self._token}{index}x"

    @property
    def unset(self) -> list[int]:
        """The references to a variable that is not set and has no default."""
        return [i for i, ref in enumerate(self.references) if ref.value is None]

    @property
    def skipped(self) -> list[int]:
        """The references to an unset variable taken as empty (``lint --skip-env-var-check``)."""
        return [i for i, ref in enumerate(self.references) if ref.skipped]

    # ------------------------------------------------------------------ into the composed YAML
    # (``bridge.core.config.yamldoc.ScalarFill``)

    def fill(self, node: yaml.ScalarNode) -> None:
        """Put the values into one scalar node (called once per node, before anything reads it).
        Past the size limit nothing is put in: the references are only located."""
        if self._token not in node.value:
            return
        written = node.value
        self._in_node[id(node)] = [int(m.group(1)) for m in self._pattern.finditer(written)]
        if self.too_large is not None:
            return
        refs = self.references
        node.value = self._pattern.sub(lambda m: refs[int(m.group(1))].value or "", written)
        if node.style is None and not _EXPLICIT_TAG.match(self.text, node.start_mark.index):
            # plain and untagged: YAML resolves the result, when YAML would read it back as written
            tag = str(yaml.resolver.Resolver().resolve(yaml.ScalarNode, node.value, (True, False)))  # type: ignore[no-untyped-call] # types-PyYAML leaves it untyped
            safe = node.value == "" or _PLAIN_SAFE.match(node.value) is not None
            if tag == _NULL and node.value:
                safe = False  # a value "null" or "~" is that text; only an empty value is null
            node.tag = tag if safe and tag in _RESOLVED else _STR

    def at(self, node: yaml.ScalarNode, path: tuple[str | int, ...]) -> None:
        """Where a scalar is (every path it is reached by, aliases included; the first one is kept)."""
        for index in self._in_node.get(id(node), ()):
            self.paths.setdefault(index, path)

    # ------------------------------------------------------------------ problems

    def reword(self, problem: Problem) -> Problem:
        """``problem`` with every substituted value in its text shown as its ``${NAME}``."""
        message, path = problem.message, problem.path
        for ref in self._shown_values():
            assert ref.value is not None
            message = message.replace(ref.value, "${" + ref.name + "}")
            path = path.replace(ref.value, "${" + ref.name + "}")
        if (message, path) == (problem.message, problem.path):
            return problem
        return Problem(path, problem.line, message)

    def _shown_values(self) -> list[Reference]:
        """One reference per distinct value worth hiding, the longest values first."""
        seen: dict[str, Reference] = {}
        for ref in self.references:
            if ref.value is not None and len(ref.value) >= SHOWN_MIN:
                seen.setdefault(ref.value, ref)
        return sorted(seen.values(), key=lambda r: -len(r.value or ""))


def scan(text: str, environ: Mapping[str, str], *, skip_unset: bool = False) -> Substitution:
    """Find every reference of ``text``, resolve it in ``environ`` and build the placeholder text.

    A variable that is not set and has no default has the value None (``unset``); with
    ``skip_unset`` (``lint --skip-env-var-check``) it is empty instead. The size of the text with the
    values in place is counted as the references are found; past ``CONFIG_LIMIT`` the reference that
    crossed it is ``too_large`` (``size_problem`` names it once its field is known)."""
    token = _fresh_token(text)
    out = Substitution(text="", _token=token, _pattern=re.compile(re.escape(token) + r"(\d+)x"))
    sizes: dict[str, int] = {}
    total = len(text.encode())
    pieces: list[str] = []
    last = 0
    for match in _ENV_REF.finditer(text):
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        from_default = skipped = False
        if not value and default is not None:
            value, from_default = default, True
        elif value is None and skip_unset:
            value, skipped = "", True
        index = len(out.references)
        nested = from_default and bool(_NESTED.search(value or ""))
        line = text.count("\n", 0, match.start()) + 1
        out.references.append(Reference(name, line, value, from_default, nested, skipped))
        size = sizes.get(value or "")
        if size is None:
            size = sizes[value or ""] = len((value or "").encode())
        total += size - len(match.group(0).encode())
        if total > CONFIG_LIMIT and out.too_large is None:
            out.too_large = index
        pieces.append(text[last : match.start()])
        pieces.append(out.placeholder(index))
        last = match.end()
    pieces.append(text[last:])
    out.text = "".join(pieces)
    return out


def unset_problem(ref: Reference, path: str) -> Problem:
    return Problem(
        path,
        ref.line,
        f"environment variable {ref.name} is not set and has no default (${{{ref.name}:default}})",
    )


def size_problem(sub: Substitution) -> Problem:
    """The problem of a text that ``${...}`` values take past the limit, at the reference that did."""
    assert sub.too_large is not None
    ref = sub.references[sub.too_large]
    path = sub.paths.get(sub.too_large, ())
    return Problem(
        dotted(path),
        ref.line,
        f"with ${{{ref.name}}} (reference {sub.too_large + 1:,} of {len(sub.references):,}) substituted, "
        f"the config is larger than the {size_text(CONFIG_LIMIT)} a config file may be",
    )


def substitute_text(text: str, environ: Mapping[str, str]) -> tuple[str, list[Problem]]:
    """The text Redpanda Connect parses: every reference replaced by its value, newlines escaped as
    ``\\n`` (its ``ReplaceEnvVariables``), and a problem per unset variable. The loader does not parse
    this text (see the module docstring); it shows what Redpanda Connect would see."""
    sub = scan(text, environ)
    refs = sub.references
    out = sub._pattern.sub(lambda m: (refs[int(m.group(1))].value or "").replace("\n", "\\n"), sub.text)
    return out, [unset_problem(refs[i], "") for i in sub.unset]


def _fresh_token(text: str) -> str:
    """Letters and digits that do not occur in ``text``: the placeholder prefix."""
    while True:
        token = "kjbenv" + secrets.token_hex(6) + "n"
        if token not in text:
            return token
