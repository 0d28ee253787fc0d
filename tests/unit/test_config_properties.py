"""Property: whatever text the config loader is given, it returns a config or raises ``ConfigError``
(exit code 2 with a message) — never another exception, a hang or a crash — and a value planted in a
secret field never appears in the error.

Three generators, each bounded so the file runs in a few seconds:

- token soup: YAML punctuation, anchors and aliases, tags, merge keys, indentation, ``${VAR}`` /
  ``${VAR:default}`` / ``${! ... }``, unicode, in random order;
- documents: random nested data (shared sub-objects become anchors and aliases when dumped), spliced
  into a valid config at a random place;
- a valid skeleton with random values in random fields (every field of the models, the secret ones
  included), some written as ``${VAR}`` references to a random environment.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.core.config import Loaded, parse
from bridge.core.errors import ConfigError

SETTINGS = settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow], database=None
)
SECRET = "pLaNtEd-5ecret"


def dump(doc: Any, **options: Any) -> str:
    """YAML text of ``doc`` (libyaml's emitter when there is one: the loader under test stays PyYAML's)."""
    return yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), **options)


SKELETON: dict[str, Any] = {
    "input": {"kafka_franz": {"seed_brokers": ["k:9092"], "topics": ["t"], "consumer_group": "g"}},
    "output": {"nats_jetstream": {"urls": ["nats://n:4222"], "subject": 's.${! meta("kafka_partition") }'}},
}

# Fields of every section, where random values go (a random unknown name is added too).
FIELDS: list[tuple[str, ...]] = [
    ("input", "kafka_franz", name)
    for name in ("seed_brokers", "topics", "regexp_topics", "consumer_group", "client_id", "start_offset",
                 "start_from_oldest", "fetch_max_bytes", "fetch_max_wait", "commit_period", "checkpoint_limit",
                 "session_timeout", "tls", "sasl", "multi_header", "transaction_isolation_level")
] + [
    ("output", "nats_jetstream", name)
    for name in ("urls", "subject", "headers", "metadata", "max_in_flight", "max_reconnects", "tls",
                 "tls_handshake_first", "auth", "inject_tracing_map")
] + [
    ("output", "nats_jetstream", "auth", name)
    for name in ("user", "password", "token", "nkey", "nkey_file", "user_credentials_file", "user_jwt",
                 "user_nkey_seed")
] + [
    ("output", "nats_jetstream", "tls", name)
    for name in ("enabled", "skip_cert_verify", "root_cas", "root_cas_file", "client_certs")
] + [
    ("bridge", name)
    for name in ("msg_id", "ack_timeout", "retry_timeout", "workers", "dead_letter", "stream", "reconnect_wait")
] + [
    ("bridge", "stream", name) for name in ("name", "subjects", "replicas", "duplicate_window", "max_bytes")
] + [
    ("http", "address"), ("logger", "level"), ("logger", "static_fields"), ("shutdown_timeout",),
    ("metrics",), ("pipeline", "processors"), ("input", "label"), ("output", "label"),
]  # fmt: skip
SECRET_FIELDS = [f for f in FIELDS if f[-1] in ("password", "token", "nkey", "user_jwt", "user_nkey_seed")]

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
# Values that have broken a parser somewhere: as likely as everything else together.
EDGE_VALUES: list[Any] = [
    "5s", "1m30s", "-1", "1MiB", "9" * 400, "9" * 400 + "s", "9" * 400 + "MiB", "0123", "2026-02-30",
    "earliest", "PLAIN", "OAUTHBEARER", "/dev/zero", "/", "", "a\x00b", "nats://u:p@h:1", "u:p@h:1",
    '${! meta("k") }', "${! " + "(" * 80, '${! meta("k")' + ".uppercase()" * 80 + " }", "@", "\x00",
    10**400, -(10**30), float("inf"), float("nan"), -1, 0, 2**63, [], {}, ["a\x00b"], {"enabled": True},
]  # fmt: skip
EDGES = st.sampled_from(EDGE_VALUES)
scalars = EDGES | (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | text
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(text | st.sampled_from(["<<", "enabled"]), inner, max_size=4)
    ),
    max_leaves=25,
)
environ = st.dictionaries(
    st.sampled_from(["A", "B", "PW", "EMPTY"]),
    st.sampled_from(["", "1", "0123", "x: y", "[a", "nats://u:p@h:1", "\n", "${A}", "* *a", SECRET]) | text,
    max_size=4,
)


def load(source: str, env: dict[str, str]) -> Loaded | ConfigError:
    """``parse``: a config, or the ConfigError it raised (anything else propagates and fails)."""
    try:
        return parse(source, environ=env)
    except ConfigError as exc:
        error = exc
    assert error.problems
    for problem in error.problems:
        assert isinstance(problem.message, str)
        assert problem.message
        assert problem.line >= 0
    return error


# --------------------------------------------------------------------------- token soup

TOKENS = [
    "\n", "\n  ", "\n    ", "\n- ", "- ", ": ", ":", ",", "[", "]", "{", "}", "? ", "&a ", "&b ", "*a", "*b",
    "<<: ", "!!int ", "!!str ", "!!binary ", "!!set ", "!!omap ", "!!timestamp ", "!!python/object ", "! ",
    "'", '"', "|", ">", "#", "---\n", "...\n", "%YAML 1.1\n", "~", "null", "true", "0x1F", "1e3", ".inf",
    "2026-01-31", "${A}", "${B:dflt}", "${PW}", "${EMPTY:}", "${NOPE}", "${! meta(\"k\") }", "${!", "}",
    "input:", "output:", "kafka_franz:", "nats_jetstream:", "seed_brokers:", "urls:", "subject:", "auth:",
    "password:", "tls:", "\t", "\ufeff", "é", "😀", "\x85", "\u2028", "\\", "@", "`",
]  # fmt: skip


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS) | text, max_size=40), environ)
def test_token_soup(tokens: list[str], env: dict[str, str]) -> None:
    load("".join(tokens), env)


# --------------------------------------------------------------------------- documents with aliases


@st.composite
def documents(draw: st.DrawFn) -> str:
    """Random data, some of it shared (dumped as anchors and aliases), under a random key of a valid
    config, or the whole document."""
    shared = draw(values)
    data = draw(st.recursive(values | st.just(shared), lambda i: st.lists(i, max_size=4), max_leaves=12))
    doc: Any = {**SKELETON, draw(st.sampled_from(["metrics", "bridge", "input", "extra", "tracer"])): data}
    if draw(st.booleans()):
        doc = data
    return dump(doc, allow_unicode=draw(st.booleans()), default_flow_style=draw(st.booleans()))


@SETTINGS
@given(documents(), environ)
def test_documents_with_aliases(source: str, env: dict[str, str]) -> None:
    load(source, env)


@SETTINGS
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 120), st.sampled_from(["[", "{a: "]))
def test_bombs_and_nesting(levels: int, fan_out: int, depth: int, opener: str) -> None:
    """Alias bombs of every size and nesting of every depth: a config or a ConfigError, quickly."""
    lines = ["a0: &a0 [x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan_out) + "]")
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    source = dump(SKELETON) + "metrics:\n  m:\n" + "".join(f"    {line}\n" for line in lines)
    load(source + f"  n: {nested}\n", {})


# --------------------------------------------------------------------------- random values in random fields


def put(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = doc
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


@st.composite
def skeletons(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    """The valid skeleton with random values in one to three fields (or unknown ones next to them),
    and some scalars replaced by ``${VAR}`` / ``${VAR:default}``."""
    doc: dict[str, Any] = copy.deepcopy(SKELETON)  # a deep copy
    for field in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3)):
        put(doc, field if draw(st.integers(0, 4)) else (*field[:-1], draw(text) or "x"), draw(values))
    env = draw(environ)
    source = dump(doc, allow_unicode=True)
    for _ in range(draw(st.integers(0, 3))):
        var = draw(st.sampled_from(["A", "B", "PW", "EMPTY", "NOPE"]))
        default = draw(st.sampled_from(["", "d", "0123", "x y"]))
        ref = "${" + var + (":" + default if draw(st.booleans()) else "") + "}"
        source = source.replace(draw(st.sampled_from(["g\n", "t\n", "k:9092\n", "n:4222\n"])), ref + "\n", 1)
    return source, env


def test_every_edge_value_in_every_field() -> None:
    """Not left to chance: each of those values in each field (about 2,800 configs, a few seconds)."""
    crashes = []
    for field in FIELDS:
        for value in EDGE_VALUES:
            doc: dict[str, Any] = copy.deepcopy(SKELETON)
            put(doc, field, value)
            try:
                load(dump(doc, allow_unicode=True), {})
            except Exception as exc:  # collected, to name every crash at once
                crashes.append(f"{'.'.join(field)} = {str(value)[:30]!r}: {type(exc).__name__}: {exc}"[:200])
    assert not crashes, "\n".join(crashes)


@settings(SETTINGS, max_examples=300)
@given(skeletons())
def test_random_values_in_random_fields(case: tuple[str, dict[str, str]]) -> None:
    load(*case)


@SETTINGS
@given(st.sampled_from(SECRET_FIELDS), st.sampled_from([
    SECRET, [SECRET], {"k": SECRET}, [1, SECRET], {"k": [SECRET]}, 20260131,
]), st.lists(st.sampled_from(FIELDS), max_size=2), values)  # fmt: skip
def test_a_planted_secret_never_appears_in_the_error(
    field: tuple[str, ...], secret: Any, others: list[tuple[str, ...]], other: Any
) -> None:
    doc: dict[str, Any] = copy.deepcopy(SKELETON)
    for path in others:  # break other fields too, so that the error has several problems
        if path[: len(field)] != field and field[: len(path)] != path:
            put(doc, path, other)
    put(doc, field, secret)
    result = load(dump(doc), {})
    if isinstance(result, ConfigError):
        assert SECRET not in str(result)
        assert "20260131" not in str(result)
