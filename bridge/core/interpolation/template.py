"""``Template``: a config string with ``${! }`` queries, compiled once, rendered per message.

Owns the compiler (the parse tree of ``bridge.core.interpolation.grammar`` → the nodes of
``bridge.core.interpolation.functions``, errors pointing into the source) and the renderers: static
text pre-joined, constant queries folded into it, and one closure per template shape (one, two, three
or more queries) so that ``Template.render`` is a single call per message. Pure module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from lark import Token, Tree

from bridge.core.errors import InterpolationError, TemplateSyntaxError
from bridge.core.interpolation.functions import (
    FUNCTIONS,
    KIND_CHECKS,
    METHODS,
    Evaluator,
    MessageView,
    Node,
    Param,
    add,
    apply,
    constant,
    metadata_node,
    type_name,
    typed_argument,
    union_keys,
)
from bridge.core.interpolation.goformat import render_value
from bridge.core.interpolation.grammar import check_depth, parse

__all__ = ["Template"]


class Template:
    """A compiled interpolated string. Build with ``Template.compile``; immutable afterwards."""

    __slots__ = ("is_static", "meta_keys", "render", "source", "texts")

    render: Callable[[MessageView], str]
    """The string for one message; raises ``InterpolationError`` when a query fails.

    An attribute holding the compiled closure rather than a method, which saves a call per render."""

    def __init__(
        self,
        source: str,
        is_static: bool,
        meta_keys: frozenset[str] | None,
        renderer: Callable[[MessageView], str],
        texts: tuple[str, ...] = (),
    ) -> None:
        self.source = source
        # the text around the queries that are not constant: len(texts) == number of such queries + 1
        self.texts = texts
        self.is_static = is_static  # no ${! } part at all (escapes do not count)
        # The metadata keys the rendered value is a pure function of, or None when it also depends
        # on the payload, the clock, a counter, or metadata read without a literal key.
        self.meta_keys = meta_keys
        self.render = renderer

    @classmethod
    def compile(cls, text: str) -> Template:
        """Parse and compile ``text``; raise ``TemplateSyntaxError`` when it is not a valid template."""
        compiler = _Compiler(text)
        parts: list[str | Node] = []
        tree = parse(text)
        check_depth(tree, text)
        for child in tree.children:
            if isinstance(child, Tree):  # an interpolation
                parts.append(compiler.expr(child.children[0]))
            elif child.type == "ESCAPE":  # ${{! x }} is the literal ${! x }
                parts.append("${!" + child[4:-2] + "}")
            else:
                parts.append(str(child))
        is_static = not any(isinstance(part, Node) for part in parts)
        head, pairs, keys = _layout(parts)
        texts = (head, *(tail for _, tail in pairs))
        return cls(text, is_static, keys, _renderer(text, head, pairs), texts)

    def skeleton(self, fill: str) -> str:
        """The text every rendering shares, ``fill`` standing for each query that is not constant."""
        return fill.join(self.texts)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


def _layout(parts: list[str | Node]) -> tuple[str, tuple[tuple[Evaluator, str], ...], frozenset[str] | None]:
    """Fold constant queries into the text; return the leading text, (query, following text) pairs
    and the metadata keys the whole depends on."""
    head: list[str] = []
    pairs: list[tuple[Evaluator, list[str]]] = []
    nodes = [p for p in parts if isinstance(p, Node)]
    for part in parts:
        if isinstance(part, Node) and not part.const:
            pairs.append((part.fn, []))
            continue
        text = part if isinstance(part, str) else render_value(part.value)
        (pairs[-1][1] if pairs else head).append(text)
    return "".join(head), tuple((fn, "".join(tail)) for fn, tail in pairs), union_keys(nodes)


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
    kind = type_name(value)
    return f"{kind} ({render_value(value)})" if kind in ("bool", "number") else kind


class _Compiler:
    """Turns the parse tree of one ``${! }`` query into a ``Node``; errors point into ``source``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, message: str, token: Token) -> TemplateSyntaxError:
        return TemplateSyntaxError(message, (token.start_pos or 0) + 1, self.source)

    def expr(self, tree: Tree[Token] | Token) -> Node:
        assert isinstance(tree, Tree), tree
        rule: Callable[[Tree[Token]], Node] = getattr(self, f"_rule_{tree.data}")
        return rule(tree)

    # literals

    def _rule_string(self, tree: Tree[Token]) -> Node:
        (token,) = tree.children
        assert isinstance(token, Token)
        return constant(self.unquote(token))

    def _rule_number(self, tree: Tree[Token]) -> Node:
        (token,) = tree.children
        assert isinstance(token, Token)
        return constant(float(token) if "." in token else int(token))

    def _rule_true(self, _tree: Tree[Token]) -> Node:
        return constant(True)

    def _rule_false(self, _tree: Tree[Token]) -> Node:
        return constant(False)

    def _rule_null(self, _tree: Tree[Token]) -> Node:
        return constant(None)

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

    def _rule_metadata_ref(self, tree: Tree[Token]) -> Node:
        (token,) = tree.children
        assert isinstance(token, Token)
        key = token[1:]
        if key.startswith('"'):
            key = self.unquote(Token("STRING", key, start_pos=(token.start_pos or 0) + 1))
        return metadata_node(key)

    def arguments(self, tree: Tree[Token] | Token | None) -> list[Node]:
        if tree is None:
            return []
        assert isinstance(tree, Tree)
        return [self.expr(child) for child in tree.children]

    def check_arity(self, what: str, params: tuple[Param, ...], args: list[Node], token: Token) -> None:
        required = sum(not p.optional for p in params)
        if required <= len(args) <= len(params):
            return
        count = str(required) if required == len(params) else f"{required} to {len(params)}"
        plural = "" if count == "1" else "s"
        raise self.error(f"{what} expects {count} argument{plural}, got {len(args)}", token)

    def check_literal(self, what: str, param: Param, arg: Node, token: Token) -> None:
        check = KIND_CHECKS.get(param.kind)
        if check is not None and not check(arg.value):
            raise self.error(
                f"{what} argument '{param.name}' must be a {param.kind}, got {_described(arg.value)}", token
            )

    def _rule_function(self, tree: Tree[Token]) -> Node:
        name, arg_tree = tree.children
        assert isinstance(name, Token)
        spec = FUNCTIONS.get(str(name))
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

    def _rule_method(self, tree: Tree[Token]) -> Node:
        target_tree, name, arg_tree = tree.children
        assert isinstance(name, Token)
        method = METHODS.get(str(name))
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
        checked = [
            typed_argument(arg, param.kind, label) for param, arg in zip(method.params, args, strict=False)
        ]
        return apply(method.impl, target, checked)

    def _rule_add(self, tree: Tree[Token]) -> Node:
        left_tree, plus, right_tree = tree.children
        assert isinstance(plus, Token)
        left, right = self.expr(left_tree), self.expr(right_tree)
        if left.const and right.const:
            try:
                return constant(add(left.value, right.value))
            except InterpolationError as exc:
                raise self.error(exc.reason, plus) from None
        get_left, get_right = left.fn, right.fn
        return Node(lambda msg: add(get_left(msg), get_right(msg)), union_keys([left, right]))

    # unsupported Bloblang

    def _rule_field_reference(self, tree: Tree[Token]) -> Node:
        (name,) = tree.children
        assert isinstance(name, Token)
        raise self.error(
            f"field reference {str(name)!r} is not supported (functions need parentheses; "
            f'read payload fields with json("{name}"))',
            name,
        )

    def _rule_field_access(self, tree: Tree[Token]) -> Node:
        _, name = tree.children
        assert isinstance(name, Token)
        raise self.error(
            f"field access '.{name}' is not supported (methods need parentheses; "
            'read payload fields with json("a.b"))',
            name,
        )
