"""bridge.core.interpolation: the ${! } template language, pinned function by function.

Expected values follow Redpanda Connect v4's Bloblang (internal/bloblang/query): where our output
looks surprising (``meta`` of an empty value is ``null``, ``1e6`` renders ``1e+06``) that is what
Redpanda Connect produces for the same config.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.core.errors import RecordError
from bridge.core.interpolation import (
    InterpolationError,
    MessageView,
    Template,
    TemplateSyntaxError,
    render_value,
)

REPO = Path(__file__).resolve().parents[2]


class FakeMessage:
    """A MessageView over a payload and a metadata dict."""

    def __init__(self, content: bytes = b"", meta: Mapping[str, str] | None = None) -> None:
        self._content = content
        self._meta = dict(meta or {})

    def content(self) -> bytes:
        return self._content

    def meta(self, key: str) -> str | None:
        return self._meta.get(key)

    def metadata(self) -> Mapping[str, str]:
        return self._meta

    def structured(self) -> Any:
        try:
            return json.loads(self._content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"payload is not valid JSON: {exc}") from exc


class UntouchableMessage:
    """A MessageView that fails the test if a template reads anything from it."""

    def content(self) -> bytes:
        raise AssertionError("content() read")

    def meta(self, key: str) -> str | None:
        raise AssertionError(f"meta({key!r}) read")

    def metadata(self) -> Mapping[str, str]:
        raise AssertionError("metadata() read")

    def structured(self) -> Any:
        raise AssertionError("structured() read")


PAYLOAD = {
    "meta": {"type": "OrderCreated"},
    "id": 42,
    "price": 1.5,
    "name": "  Widget  ",
    "tags": ["a", "b"],
    "items": [{"sku": "x1", "qty": 2}, {"sku": "x2", "qty": 1}, {"qty": 9}],
    "a.b": "dotted",
    "none": None,
    "flag": True,
}
META = {
    "kafka_topic": "orders",
    "kafka_partition": "3",
    "kafka_key": "k-1",
    "Timestamp": "1700000000",
    "empty": "",
    "with space": "spaced",
    "num": "12.50",
}


def message(payload: Any = PAYLOAD, meta: Mapping[str, str] = META) -> FakeMessage:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return FakeMessage(content, meta)


def render(source: str, msg: MessageView | None = None) -> str:
    return Template.compile(source).render(message() if msg is None else msg)


# -- the reference page's examples ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('${! meta("kafka_topic") }', "orders"),
        ('foo.${! json("meta.type") }', "foo.OrderCreated"),
        ('${!meta("Timestamp")}', "1700000000"),
        (
            'orders.${! meta("kafka_topic") }.${! json("meta.type").lowercase() }',
            "orders.orders.ordercreated",
        ),
        ('${! meta("nope") }', "null"),
    ],
)
def test_reference_examples(source: str, expected: str) -> None:
    assert render(source) == expected


# -- literal text, escapes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected", "is_static"),
    [
        ("", "", True),
        ("plain.subject", "plain.subject", True),
        ("a $ b $$ ${VAR} {x} } $", "a $ b $$ ${VAR} {x} } $", True),
        ('${{! meta("kafka_topic") }}', '${! meta("kafka_topic") }', True),
        ("x.${{!not parsed}}.y", "x.${!not parsed}.y", True),
        ("${{ not an escape }}", "${{ not an escape }}", True),
        ('  ${! meta("kafka_topic") }  ', "  orders  ", False),
        ('$${! meta("kafka_topic") }', "$orders", False),
        ('line1\n${! meta("kafka_topic") }\nline3', "line1\norders\nline3", False),
        ('${!\n  meta( "kafka_topic" )\n  .uppercase( )\n}', "ORDERS", False),
        ('${! meta("kafka_topic") }${! meta("kafka_partition") }', "orders3", False),
        ('${{! meta("x") }} then ${! meta("kafka_topic") }', '${! meta("x") } then orders', False),
        ('${! "}" }', "}", False),
    ],
)
def test_literal_text_and_escapes(source: str, expected: str, is_static: bool) -> None:
    template = Template.compile(source)
    assert template.render(message()) == expected
    assert template.is_static is is_static
    assert template.source == source


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("static.subject", "static.subject"),
        ('${{! meta("x") }}', '${! meta("x") }'),
        ('${! "a".uppercase() + "-" + (1 + 2).string() }', "A-3"),
        ('${! "x".number().catch("fallback") }', "fallback"),
        ('${! null.or("n").uppercase() }', "N"),
    ],
)
def test_constant_templates_never_read_the_message(source: str, expected: str) -> None:
    template = Template.compile(source)
    assert template.render(UntouchableMessage()) == expected
    assert template.meta_keys == frozenset()


# -- functions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # meta(): a string, null when absent or empty (v4's MetaGetStr), the whole object without a key
        ('${! meta("kafka_key") }', "k-1"),
        ('${! meta("empty") }', "null"),
        ('${! meta("absent") }', "null"),
        ('${! meta("with space") }', "spaced"),
        # metadata() and @: null only when absent
        ('${! metadata("kafka_key") }', "k-1"),
        ('${! metadata("empty") }', ""),
        ('${! metadata("absent") }', "null"),
        ("${! @kafka_topic }", "orders"),
        ("${! @empty }", ""),
        ("${! @absent }", "null"),
        ('${! @"with space" }', "spaced"),
        ("${! @kafka_topic.uppercase() }", "ORDERS"),
        # content(): the payload as text
        ("${! content() }", json.dumps(PAYLOAD)),
        ("${! content().length() }", str(len(json.dumps(PAYLOAD)))),
        # json(): dot paths, numeric segments index arrays, missing is null, * maps over arrays
        ('${! json("meta.type") }', "OrderCreated"),
        ('${! json("id") }', "42"),
        ('${! json("price") }', "1.5"),
        ('${! json("flag") }', "true"),
        ('${! json("none") }', "null"),
        ('${! json("missing") }', "null"),
        ('${! json("meta.missing.deeper") }', "null"),
        ('${! json("tags.1") }', "b"),
        ('${! json("tags.2") }', "null"),
        ('${! json("tags.-1") }', "null"),
        ('${! json("tags.x") }', "null"),
        ('${! json("items.0.sku") }', "x1"),
        ('${! json("items.*.sku") }', '["x1","x2"]'),
        ('${! json("items.*.qty") }', "[2,1,9]"),
        ('${! json("tags.*") }', '["a","b"]'),
        ('${! json("a~1b") }', "dotted"),
        ('${! json("meta") }', '{"type":"OrderCreated"}'),
        ('${! json("tags") }', '["a","b"]'),
        # literals
        ('${! "quoted \\"text\\"\\t\\u00e9\\x41" }', 'quoted "text"\téA'),
        ("${! 42 }", "42"),
        ("${! -7 }", "-7"),
        ("${! 2.50 }", "2.5"),
        ("${! 3.0 }", "3"),
        ("${! true }", "true"),
        ("${! false }", "false"),
        ("${! null }", "null"),
        ("${! ( 7 ) }", "7"),
    ],
)
def test_functions_and_literals(source: str, expected: str) -> None:
    assert render(source) == expected


@pytest.mark.parametrize("query", ["meta()", 'meta("")', "metadata()", "@"])
def test_metadata_without_a_key_is_the_whole_object(query: str) -> None:
    msg = message(meta={"b": "2", "a": "1", "e": ""})
    assert render(f"${{! {query} }}", msg) == '{"a":"1","b":"2","e":""}'


def test_json_without_path_is_the_whole_payload_with_sorted_keys() -> None:
    msg = message({"z": 1, "a": {"c": [1, 2.5, None], "b": "<&>"}})
    assert render("${! json() }", msg) == '{"a":{"b":"\\u003c\\u0026\\u003e","c":[1,2.5,null]},"z":1}'


def test_content_decodes_invalid_utf8_with_replacement() -> None:
    assert render("${! content() }", FakeMessage(b"ok \xff end")) == "ok \ufffd end"


def test_env_is_read_at_compile_time_and_null_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_INTERP_TEST", "from-env")
    monkeypatch.delenv("BRIDGE_INTERP_UNSET", raising=False)
    template = Template.compile('${! env("BRIDGE_INTERP_TEST") }.${! env("BRIDGE_INTERP_UNSET") }')
    fallback = Template.compile('${! env("BRIDGE_INTERP_UNSET").or("default") }')
    monkeypatch.setenv("BRIDGE_INTERP_TEST", "changed-later")
    assert template.render(UntouchableMessage()) == "from-env.null"
    assert fallback.render(UntouchableMessage()) == "default"


def test_hostname_is_this_machine() -> None:
    assert render("${! hostname() }", UntouchableMessage()) == socket.gethostname()


RFC3339_NANO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")


def test_now_is_rfc3339_nano_in_the_local_zone() -> None:
    before = time.time()
    text = render("${! now() }")
    after = time.time()
    assert RFC3339_NANO.fullmatch(text), text
    fraction = re.search(r"\.(\d+)", text)
    assert fraction is None or not fraction.group(1).endswith("0")  # Go trims trailing zeros
    seconds = re.sub(r"\.\d+", "", text).replace("Z", "+00:00")
    parsed = datetime.fromisoformat(seconds).timestamp()
    assert int(before) <= parsed <= after
    assert datetime.fromisoformat(seconds).utcoffset() == datetime.now().astimezone().utcoffset()


@pytest.mark.parametrize(
    ("function", "per_second"),
    [
        ("timestamp_unix", 1),
        ("timestamp_unix_milli", 1_000),
        ("timestamp_unix_micro", 1_000_000),
        ("timestamp_unix_nano", 1_000_000_000),
    ],
)
def test_timestamps_are_integers_in_their_unit(function: str, per_second: int) -> None:
    template = Template.compile(f"${{! {function}() }}")
    before = time.time_ns() * per_second // 1_000_000_000
    value = int(template.render(UntouchableMessage()))
    after = time.time_ns() * per_second // 1_000_000_000
    assert before <= value <= after
    assert template.meta_keys is None


def test_uuid_v4_is_a_fresh_version_4_uuid_per_render() -> None:
    template = Template.compile("${! uuid_v4() }")
    first, second = template.render(message()), template.render(message())
    assert uuid.UUID(first).version == 4
    assert str(uuid.UUID(first)) == first
    assert first != second


def test_count_starts_at_1_and_is_shared_by_name_across_templates() -> None:
    one = Template.compile('${! count("test-interpolation-shared") }')
    two = Template.compile('n=${! count("test-interpolation-shared") }')
    other = Template.compile('${! count("test-interpolation-other") }')
    assert [one.render(message()), two.render(message()), one.render(message())] == ["1", "n=2", "3"]
    assert other.render(message()) == "1"
    assert one.meta_keys is None


# -- methods -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('${! meta("kafka_topic").uppercase() }', "ORDERS"),
        ('${! "MiXeD".lowercase() }', "mixed"),
        ('${! json("name").trim() }', "Widget"),
        ('${! "\\x1c x \\t".trim() }', "\x1c x"),  # Go's TrimSpace does not trim \x1c
        ('${! "!!hi?!".trim("!?") }', "hi"),
        ('${! "orders.v1".trim_prefix("orders.") }', "v1"),
        ('${! "orders.v1".trim_prefix("nope") }', "orders.v1"),
        ('${! "orders.v1".trim_suffix(".v1") }', "orders"),
        ('${! "a-b-c".replace_all("-", ".") }', "a.b.c"),
        ('${! "a-b".replace_all("-", meta("kafka_partition")) }', "a3b"),
        ('${! json("id").string() }', "42"),
        ('${! json("meta").string().uppercase() }', '{"TYPE":"ORDERCREATED"}'),
        ("${! null.string() }", "null"),
        ("${! true.string() }", "true"),
        ('${! "5".number() }', "5"),
        ('${! meta("num").number() }', "12.5"),
        ('${! "1e3".number() }', "1000"),
        ('${! "-0.25".number() }', "-0.25"),
        ('${! json("id").number() }', "42"),
        ('${! "1234567".number() }', "1.234567e+06"),  # a float64, as Bloblang's .number()
        ('${! "abc".number(7) }', "7"),
        ('${! meta("absent").number(7) }', "7"),
        ('${! "héllo".length() }', "6"),  # bytes, like Go's len()
        ('${! json("tags").length() }', "2"),
        ('${! json("meta").length() }', "1"),
        ('${! "orders.eu".contains("eu") }', "true"),
        ('${! "orders.eu".contains("us") }', "false"),
        ('${! "a5".contains(5) }', "true"),
        ('${! json("items.*.qty").contains(2.0) }', "true"),
        ('${! json("items.*.qty").contains(5) }', "false"),
        ('${! json("tags").contains(true) }', "false"),
        ('${! json("meta").contains("OrderCreated") }', "true"),
        ('${! meta("kafka_topic").not_null() }', "orders"),
        ('${! json("items.0.sku").uppercase().trim_prefix("X") }', "1"),
    ],
)
def test_methods(source: str, expected: str) -> None:
    assert render(source) == expected


@pytest.mark.parametrize(
    ("source", "msg", "expected"),
    [
        # .or: the fallback when the target is null or fails
        ('${! meta("absent").or("dflt") }', message(), "dflt"),
        ('${! meta("empty").or("dflt") }', message(), "dflt"),
        ('${! metadata("empty").or("dflt") }', message(), ""),
        ('${! meta("kafka_topic").or("dflt") }', message(), "orders"),
        ('${! json("missing").or("dflt") }', message(), "dflt"),
        ('${! json("id").or("dflt") }', FakeMessage(b"not json"), "dflt"),
        ('${! meta("absent").or(meta("kafka_key")).or("last") }', message(), "k-1"),
        ('${! meta("absent").or(meta("also_absent")).or("last") }', message(), "last"),
        # .catch: the fallback only when the target fails; null is not a failure
        ('${! json("id").catch("bad") }', FakeMessage(b"not json"), "bad"),
        ('${! json("missing").catch("bad") }', message(), "null"),
        ('${! json("id").uppercase().catch("bad") }', message(), "bad"),
        ('${! json("id").uppercase().catch(json("meta.type")) }', message(), "OrderCreated"),
        ('${! meta("num").number().catch(0) }', message(), "12.5"),
        ('${! meta("kafka_topic").number().catch(0) }', message(), "0"),
        ('${! json("none").not_null().catch("was null") }', message(), "was null"),
        ('${! (meta("absent") + "x").catch("mismatch") }', message(), "mismatch"),
    ],
)
def test_or_and_catch(source: str, msg: FakeMessage, expected: str) -> None:
    assert render(source, msg) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('${! "a" + "b" }', "ab"),
        ("${! 1 + 2 }", "3"),
        ("${! 1 + 2.5 }", "3.5"),
        ("${! 0.25 + 0.5 + 1 }", "1.75"),
        ('${! meta("kafka_topic") + "." + meta("kafka_partition") }', "orders.3"),
        ('${! (meta("kafka_topic") + "-x").uppercase() }', "ORDERS-X"),
        ('${! json("id") + 1 }', "43"),
        ('${! meta("num").number() + 0.5 }', "13"),
    ],
)
def test_plus_concatenates_strings_and_adds_numbers(source: str, expected: str) -> None:
    assert render(source) == expected


# -- render_value ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", "text"),
        ("", ""),
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-7, "-7"),
        (12345678901234567890, "12345678901234567890"),
        (3.0, "3"),
        (1.5, "1.5"),
        (-0.25, "-0.25"),
        (0.1, "0.1"),
        (999999.0, "999999"),
        (123456.5, "123456.5"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (1e21, "1e+21"),
        (1e100, "1e+100"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (0.0, "0"),
        (-0.0, "-0"),
        (float("nan"), "NaN"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (b"raw bytes", "raw bytes"),
        (b"bad \xff", "bad \ufffd"),
        ({"b": 1, "a": [True, None, "x"]}, '{"a":[true,null,"x"],"b":1}'),
        ({"nested": {"z": 1, "y": 2}}, '{"nested":{"y":2,"z":1}}'),
        ([], "[]"),
        ({}, "{}"),
        ({"html": "<a href='x'>&</a>"}, '{"html":"\\u003ca href=\'x\'\\u003e\\u0026\\u003c/a\\u003e"}'),
        ({"text": 'é\n"q"\\'}, '{"text":"é\\n\\"q\\"\\\\"}'),
        ([1e20, 1e21, 1.5e-7, 0.000001, 2.0], "[100000000000000000000,1e+21,1.5e-7,0.000001,2]"),
        ({"bad": float("nan")}, "null"),
    ],
)
def test_render_value(value: Any, expected: str) -> None:
    assert render_value(value) == expected


# -- meta_keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("static.subject", frozenset()),
        ('${{! meta("escaped") }}', frozenset()),
        ('${! meta("kafka_topic") }', frozenset({"kafka_topic"})),
        (
            'x.${! @kafka_topic }.${! metadata("kafka_partition") }',
            frozenset({"kafka_topic", "kafka_partition"}),
        ),
        ('${! @"with space" }', frozenset({"with space"})),
        ('${! meta("a").or(meta("b")).uppercase() }', frozenset({"a", "b"})),
        ('${! meta("a") + meta("b") }', frozenset({"a", "b"})),
        ('${! "x".replace_all("x", meta("c")) }', frozenset({"c"})),
        ('${! env("HOME") }.${! hostname() }.${! "lit" }.${! 5 }', frozenset()),
        ('${! meta("k") }.${! env("HOME").uppercase() }', frozenset({"k"})),
        ("${! meta() }", None),
        ("${! metadata() }", None),
        ("${! @ }", None),
        ('${! meta("") }', None),
        ("${! content() }", None),
        ("${! json() }", None),
        ('${! json("a") }', None),
        ("${! now() }", None),
        ("${! timestamp_unix() }", None),
        ("${! uuid_v4() }", None),
        ('${! count("meta-keys") }', None),
        ('${! meta("a") }.${! json("b") }', None),
        ('${! meta("a").or(json("b")) }', None),
    ],
)
def test_meta_keys(source: str, expected: frozenset[str] | None) -> None:
    assert Template.compile(source).meta_keys == expected


def test_meta_keys_templates_render_the_same_for_the_same_metadata_values() -> None:
    template = Template.compile('${! meta("kafka_topic").uppercase() }.${! @kafka_partition }')
    assert template.meta_keys == frozenset({"kafka_topic", "kafka_partition"})
    one = FakeMessage(b"payload one", {"kafka_topic": "t", "kafka_partition": "1", "other": "x"})
    two = FakeMessage(b"{}", {"kafka_topic": "t", "kafka_partition": "1", "other": "y"})
    assert template.render(one) == template.render(two) == "T.1"


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message_text", "column"),
    [
        ('${! metaa("x") }', "unknown function 'metaa'", 5),
        ('${! meta("kafka_topic")', "unterminated interpolation: expected '}' to close '${!'", 1),
        ('subject.${! meta("a")', "unterminated interpolation: expected '}' to close '${!'", 9),
        ("a ${{! unfinished escape", "unterminated escape '${{!': expected '}}'", 3),
        ('${! meta("a").nope() }', "unknown method 'nope'", 15),
        ("${! meta(1) }", "function 'meta' argument 'key' must be a string, got number (1)", 5),
        ('${! meta("a", "b") }', "function 'meta' expects 0 to 1 arguments, got 2", 5),
        ("${! env() }", "function 'env' expects 1 argument, got 0", 5),
        ('${! uuid_v4("x") }', "function 'uuid_v4' expects 0 arguments, got 1", 5),
        ("${! count(true) }", "function 'count' argument 'name' must be a string, got bool (true)", 5),
        ('${! meta(meta("k")) }', "function 'meta' argument 'key' must be a literal", 5),
        ('${! meta("a").replace_all("x") }', "method 'replace_all' expects 2 arguments, got 1", 15),
        ('${! meta("a").replace_all(1, "x") }', "method 'replace_all' argument 'old' must be a string", 15),
        ('${! meta("a").uppercase("x") }', "method 'uppercase' expects 0 arguments, got 1", 15),
        ('${! meta("a").number(meta("b")) }', "method 'number' argument 'default' must be a literal", 15),
        ('${! meta("a").or() }', "method 'or' expects 1 argument, got 0", 15),
        ('${! "a" + 1 }', "cannot add types string and number", 9),
        ('${! meta("a") - 1 }', "unsupported operator '-' (only '+' is supported)", 15),
        ('${! meta("a") | "b" }', "unsupported operator '|' (only '+' is supported)", 15),
        ('${! meta("a") == "b" }', "unsupported operator '=' (only '+' is supported)", 15),
        ("${! this.foo }", "field access '.foo' is not supported", 10),
        ("${! foo }", "field reference 'foo' is not supported", 5),
        ('${! json("a").b }', "field access '.b' is not supported", 15),
        ('${! "abc }', "unterminated string literal", 5),
        ('${! "a\\q" }', "invalid escape sequence '\\q' in string", 7),
        ('${! "\\u12" }', "invalid escape sequence '\\u12' in string", 6),
        ("${!}", "unexpected '}', expected a query", 4),
        ('${! meta("a") meta("b") }', "unexpected 'meta', expected", 15),
        ('${! meta("a") "b" }', "unexpected '\"b\"', expected", 15),
        ("${! 1.5.5 }", "unexpected '5', expected a method name", 9),
        ('${! meta("a"). }', "unexpected '}', expected a method name", 16),
        ('${! meta("a" }', "unexpected '}', expected", 14),
        ('${! meta("a") ${! meta("b") } }', "unexpected '${!', expected", 15),
    ],
)
def test_syntax_errors_say_what_and_where(source: str, message_text: str, column: int) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        Template.compile(source)
    error = caught.value
    assert message_text in error.message
    assert error.column == column
    assert error.template == source
    assert str(error) == f"{error.message} at column {column}: {source}"
    assert isinstance(error, ValueError)


def test_syntax_error_text_matches_the_documented_example() -> None:
    with pytest.raises(
        TemplateSyntaxError, match=re.escape("unknown function 'metaa' at column 5: ${! metaa(\"x\") }")
    ):
        Template.compile('${! metaa("x") }')


@pytest.mark.parametrize(
    ("source", "msg", "reason"),
    [
        ('${! json("id") }', FakeMessage(b"not json"), 'json("id"): payload is not valid JSON'),
        ("${! json() }", FakeMessage(b""), "json(): payload is not valid JSON"),
        ('${! json("id").uppercase() }', message(), "uppercase(): expected string value, got number (42)"),
        ('${! json("flag").lowercase() }', message(), "lowercase(): expected string value, got bool (true)"),
        ('${! json("meta").trim() }', message(), "trim(): expected string value, got object"),
        ('${! meta("absent").uppercase() }', message(), "uppercase(): expected string value, got null"),
        ('${! meta("kafka_topic").number() }', message(), 'number(): cannot parse "orders" as a number'),
        ('${! " 5".number() }', message(), 'number(): cannot parse " 5" as a number'),
        ('${! json("tags").number() }', message(), "number(): expected number value, got array"),
        (
            '${! json("id").length() }',
            message(),
            "length(): expected string, array or object value, got number",
        ),
        ('${! json("id").contains("4") }', message(), "contains(): expected string, array or object value"),
        ('${! json("none").not_null() }', message(), "not_null(): value is null"),
        ('${! meta("absent") + "x" }', message(), "cannot add types null and string"),
        ('${! json("id") + "x" }', message(), "cannot add types number and string"),
        (
            '${! "a".replace_all("a", json("id")) }',
            message(),
            "replace_all(): expected string value, got number (42)",
        ),
    ],
)
def test_runtime_errors_are_interpolation_errors(source: str, msg: FakeMessage, reason: str) -> None:
    template = Template.compile(source)
    with pytest.raises(InterpolationError) as caught:
        template.render(msg)
    error = caught.value
    assert reason in error.reason
    assert repr(source) in error.reason  # the template is named, for the operator
    assert error.kind == "interpolation"
    assert isinstance(error, RecordError)
    assert str(error) == error.reason


def test_a_constant_that_always_fails_fails_at_render_not_at_compile() -> None:
    template = Template.compile('${! "abc".number() }')
    with pytest.raises(InterpolationError, match='cannot parse "abc"'):
        template.render(UntouchableMessage())


# -- the Template object ---------------------------------------------------------------------------


def test_templates_compare_by_source() -> None:
    assert Template.compile('${! meta("a") }') == Template.compile('${! meta("a") }')
    assert Template.compile('${! meta("a") }') != Template.compile('${! meta("b") }')
    assert len({Template.compile("x"), Template.compile("x")}) == 1
    assert repr(Template.compile("a.${! @b }")) == "Template('a.${! @b }')"


def test_many_parts_render_in_order() -> None:
    source = ".".join(f'${{! meta("k{i}") }}' for i in range(6))
    msg = FakeMessage(meta={f"k{i}": str(i) for i in range(6)})
    template = Template.compile(source)
    assert template.render(msg) == "0.1.2.3.4.5"
    assert template.meta_keys == frozenset(f"k{i}" for i in range(6))


def test_module_does_not_import_kafka_or_nats_clients() -> None:
    code = (
        "import sys, bridge.core.interpolation\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('aiokafka', 'nats', 'kafka'))\n"
        "print(','.join(loaded))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == ""


# -- depth ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "levels"),
    [
        ('meta("k")' + ".uppercase()" * 3000, 3000),
        ('meta("k")' + '.or(meta("k")' * 5000 + ")" * 5000, 5000),
        ('"a"' + ' + "a"' * 3000, 3000),
        ('"a".or(' * 5000 + '"b"' + ")" * 5000, 5000),
    ],
    ids=["3000-chained-methods", "5000-nested-arguments", "3000-additions", "5000-nested-literal-calls"],
)
def test_a_query_deeper_than_the_limit_is_a_syntax_error_not_a_recursion_error(
    query: str, levels: int
) -> None:
    source = "orders.${! " + query + " }"
    with pytest.raises(TemplateSyntaxError) as caught:
        Template.compile(source)
    error = caught.value
    assert error.message == "query nested or chained more than 64 levels deep"
    assert 1 <= error.column <= len(source)
    # the message shows the start of a long template, not all of it
    assert str(error).startswith(f"{error.message} at column {error.column}: orders.${{! ")
    assert str(error).endswith(f"… ({len(source):,} characters)")
    assert len(str(error)) < 400


def test_64_levels_compile_and_render() -> None:
    """A query as deep as the limit works: compile and render recurse once per level, well within the
    interpreter's stack. Levels are the query's nodes from its root down to its deepest literal:
    ``meta("k")`` with 62 methods is 64 (62 methods, the function, its argument)."""
    template = Template.compile('${! meta("k")' + ".uppercase()" * 62 + " }")
    assert template.render(FakeMessage(meta={"k": "ab"})) == "AB"
    with pytest.raises(TemplateSyntaxError, match="more than 64 levels"):
        Template.compile('${! meta("k")' + ".uppercase()" * 63 + " }")
    nested = Template.compile('${! meta("x")' + '.or(meta("x")' * 30 + '.or("deep")' + ")" * 30 + " }")
    assert nested.render(FakeMessage()) == "deep"
    # parentheses are not levels
    assert Template.compile("${! " + "(" * 500 + '"p"' + ")" * 500 + " }").render(FakeMessage()) == "p"


# -- a null or empty key (F16: kept on purpose, documented in the README's Interpolation) -------------


@pytest.mark.parametrize("key", [None, b""], ids=["null-key", "empty-key"])
def test_meta_of_a_missing_key_is_null_while_at_and_metadata_give_empty_text(key: bytes | None) -> None:
    """Redpanda Connect v4's meta() is null for an absent *or empty* value, so a record without a key
    renders ``null`` there; ``@kafka_key`` and ``metadata("kafka_key")`` give the empty text. The
    README says so and advises the latter two."""
    from bridge.core.message import Message

    msg = Message("orders", 0, 7, key, b"v", 1_700_000_000_000)
    assert render('k.${! meta("kafka_key") }', msg) == "k.null"
    assert render("k.${! @kafka_key }", msg) == "k."
    assert render('k.${! metadata("kafka_key") }', msg) == "k."
    assert render('k.${! meta("kafka_key").or("none") }', msg) == "k.none"
