"""The ``${! }`` template grammar (lark, LALR) and its syntax errors.

Owns the grammar of the Bloblang subset (``bridge.core.interpolation`` lists it), turning lark's parse
errors into ``TemplateSyntaxError`` with a column and a plain reason (``unexpected '*', expected ...``,
``unsupported operator``, ``unterminated interpolation``), and the depth limit: a query at most
``MAX_DEPTH`` levels deep, checked iteratively before anything recurses over the tree. Pure module.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Final

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from bridge.core.errors import TemplateSyntaxError

__all__ = ["MAX_DEPTH", "check_depth", "parse"]

MAX_DEPTH: Final = 64

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


def parse(text: str) -> Tree[Token]:
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


def check_depth(tree: Tree[Token], text: str) -> None:
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
