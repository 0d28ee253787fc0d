"""Redpanda Connect (Benthos) interpolations: ``${! <bloblang query> }`` inside config strings.

This package owns the compile-once / render-per-message path for interpolated config strings
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

from bridge.core.errors import InterpolationError, TemplateSyntaxError
from bridge.core.interpolation.functions import MessageView
from bridge.core.interpolation.goformat import render_value
from bridge.core.interpolation.grammar import MAX_DEPTH
from bridge.core.interpolation.template import Template

__all__ = [
    "MAX_DEPTH",
    "InterpolationError",
    "MessageView",
    "Template",
    "TemplateSyntaxError",
    "render_value",
]
