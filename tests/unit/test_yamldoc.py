"""bridge.core.config.yamldoc: the config's YAML within limits — alias bombs, deep nesting and recursive aliases are
config errors naming the path and the line, found without expanding them (a few MB); lines and
the written text of plain scalars are recorded for the config."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest
import yaml

from bridge.core.config import parse
from bridge.core.config.yamldoc import MAX_DEPTH, MAX_VALUES, parse_document
from bridge.core.errors import ConfigError, Problem

BASE = """\
input:
  kafka_franz:
    seed_brokers: [k:9092]
    topics: [t]
    consumer_group: g
output:
  nats_jetstream:
    urls: [nats://n:4222]
    subject: s
"""


def billion_laughs(levels: int = 9, fan_out: int = 9) -> str:
    """The classic: each level a list of ``fan_out`` aliases of the level before (9⁹ ≈ 387 million)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghijklmnopqrstuvwxyz"
    for level in range(1, levels):
        name, prev = names[level], names[level - 1]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * fan_out) + "]")
    return "\n".join(lines) + "\n"


# An expanded bomb would never finish (9⁹ values): a generous deadline turns that into a failure instead of
# a hang. It is no speed test — the bound that matters, no expansion, is what ``small`` asserts.
bounded = pytest.mark.timeout(60)


@pytest.fixture
def small() -> Iterator[None]:
    """The case allocates under 20 MB at its peak (tracemalloc)."""
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024**2, peak


def refused(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        parse(text, environ={})
    return info.value.problems


@bounded
@pytest.mark.usefixtures("small")
def test_an_alias_bomb_is_refused_at_the_alias_that_crosses_the_limit() -> None:
    bomb = billion_laughs()
    text = BASE + "metrics:\n  prometheus:\n" + "".join(f"    {line}\n" for line in bomb.splitlines())
    assert len(text) < 1024
    [problem] = refused(text)
    # a holds 10 values, b 1 + 9 × 10 = 91, c 820, d 7,381: with about 8,300 before it, the sixth *d in
    # e brings the document past 50,000
    assert problem == Problem(
        "metrics.prometheus.e[5]", 16, f"alias *d expands the document past {MAX_VALUES:,} values"
    )


@bounded
@pytest.mark.usefixtures("small")
def test_an_alias_bomb_of_mappings_and_merge_keys_is_refused() -> None:
    lines = ["a: &a {x: 1, y: 2}"]
    for i, name in enumerate("bcdefghijk", start=1):
        prev = "abcdefghijk"[i - 1]
        lines.append(f"{name}: &{name} {{" + ", ".join(f"k{j}: *{prev}" for j in range(10)) + "}")
    lines.append("z: {<<: *k}")
    problems = refused(BASE + "\n".join(lines) + "\n")
    assert problems[0].message.endswith(f"expands the document past {MAX_VALUES:,} values")


@bounded
def test_many_values_without_aliases_are_refused_too() -> None:
    text = BASE + "metrics:\n  prometheus: [" + ",".join(["1"] * (MAX_VALUES + 10)) + "]\n"
    [problem] = refused(text)
    assert problem.line == 11
    assert problem.message == f"the document holds more than {MAX_VALUES:,} values"


@bounded
@pytest.mark.usefixtures("small")
@pytest.mark.parametrize(
    ("nested", "path"),
    [
        ("[" * 5000 + "]" * 5000, "metrics.prometheus[0][0][0][0].…"),
        ("{a: " * 5000 + "1" + "}" * 5000, "metrics.prometheus.a.a.a.a.…"),
    ],
    ids=["sequences", "mappings"],
)
def test_nesting_5000_deep_is_refused_with_its_path_and_line(nested: str, path: str) -> None:
    [problem] = refused(BASE + "metrics:\n  prometheus: " + nested + "\n")
    assert problem == Problem(path, 11, f"nested more than {MAX_DEPTH} levels deep")


def test_nesting_up_to_the_limit_is_fine() -> None:
    """A value's path may have 64 parts: metrics.prometheus[0]...[0] with 62 indexes."""
    lists = MAX_DEPTH - 1  # the outermost list is metrics.prometheus itself
    doc = parse_document("metrics:\n  prometheus: " + "[" * lists + "]" * lists + "\n")
    assert doc.data["metrics"]["prometheus"] is not None
    with pytest.raises(ConfigError, match="nested more than 64"):
        parse_document("metrics:\n  prometheus: " + "[" * (lists + 1) + "]" * (lists + 1) + "\n")


@pytest.mark.parametrize(
    "text", ["a: &a [*a]\n", "a: &a {b: *a}\n", "a: &a [1, [2, *a]]\n"], ids=["list", "mapping", "nested"]
)
def test_a_recursive_alias_is_refused(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_document(text)
    [problem] = info.value.problems
    assert problem.line == 1
    assert "refers to a node that contains it (a recursive structure)" in problem.message


def test_aliases_within_the_limits_work_as_before() -> None:
    doc = parse_document("common: &c {a: 1}\nx: *c\ny: {<<: *c, b: 2}\n")
    assert doc.data == {"common": {"a": 1}, "x": {"a": 1}, "y": {"a": 1, "b": 2}}
    assert doc.lines[("x", "a")] == 1  # an alias's paths have the anchor's lines


def test_lines_duplicates_and_the_text_of_plain_scalars() -> None:
    doc = parse_document(
        "a:\n  b: 0123\n  c: '0123'\n  d: 1.50\n  e: true\n  f: 2026-01-31\n  g: ~\n  b: 2\n"
    )
    assert doc.lines[("a", "d")] == 4
    assert [str(p) for p in doc.problems] == ["line 8: a.b: duplicate key"]
    assert doc.raw == {("a", "b"): "2", ("a", "d"): "1.50", ("a", "e"): "true", ("a", "f"): "2026-01-31"}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("x: 2026-02-30\n", "2026-02-30"),  # looks like a date, is not one: the text, as YAML 1.2 reads it
        ("x: 2026-01-31\n", __import__("datetime").date(2026, 1, 31)),
    ],
)
def test_a_timestamp_that_is_not_a_date_is_its_text(text: str, value: object) -> None:
    assert parse_document(text).data == {"x": value}


@pytest.mark.parametrize(
    "text",
    [
        "x: !!int abc\n",
        "x: !!float abc\n",
        "x: !!bool maybe\n",
        "x: !!timestamp soon\n",
        "x: " + "9" * 5000 + "\n",
    ],
    ids=["int", "float", "bool", "timestamp", "5000-digit-int"],
)
def test_a_value_that_cannot_be_built_is_a_yaml_error_at_its_line(text: str) -> None:
    with pytest.raises(yaml.MarkedYAMLError) as info:
        parse_document(text)
    assert info.value.problem_mark is not None
    assert info.value.problem_mark.line == 0
    assert "abc" not in str(info.value.problem)  # the value may be a secret: never repeated


@pytest.mark.parametrize("text", ["!!int ", "x: !!int\n", "x: !!int ''\n"])
def test_an_empty_int_is_a_yaml_error_too(text: str) -> None:
    """PyYAML's int constructor reads the first character of an empty value (an IndexError, found by
    test_config_properties.py::test_token_soup): a YAML error at its line like the others."""
    with pytest.raises(yaml.MarkedYAMLError) as info:
        parse_document(text)
    assert info.value.problem == "the value cannot be read as !!int (IndexError)"


def test_the_config_names_them_as_invalid_yaml_with_the_line() -> None:
    [problem] = refused(BASE + "bridge:\n  workers: !!int abc\n")
    assert (problem.line, problem.message) == (
        11,
        "invalid YAML: the value cannot be read as !!int (ValueError)",
    )
