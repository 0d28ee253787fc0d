"""bridge.core.tracing: the ``inject_tracing_map`` recognizer, the spans and W3C context, and the router hook.

End to end (Kafka ``traceparent`` header → NATS header) is in tests/integration/test_output_fields.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence

import pytest

from bridge.core.config import parse
from bridge.core.errors import ConfigError
from bridge.core.message import Message
from bridge.core.routing import Router
from bridge.core.tracing import Injector, TracingMap, parse_mapping, set_path
from tests.unit.test_purity import REPO

TRACEPARENT = re.compile(r"^00-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})$")
PARENT_TRACE, PARENT_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def message(value: bytes | None = b'{"id":1}', headers: Sequence[tuple[str, bytes]] = ()) -> Message:
    return Message("orders", 0, 7, b"k", value, 1_700_000_000_000, headers)


def parent(flags: str = "01") -> tuple[str, bytes]:
    return ("traceparent", f"00-{PARENT_TRACE}-{PARENT_SPAN}-{flags}".encode())


# ----------------------------------------------------------------------------------- the recognizer


@pytest.mark.parametrize(
    "text",
    [
        "meta = @.merge(this)",
        "  meta=@.merge( this )  ",
        "meta = meta().merge(this)",
        "meta = metadata().merge(this)",
        "meta = @ . merge(this)\n",
    ],
)
def test_metadata_merge_forms(text: str) -> None:
    assert parse_mapping(text) == TracingMap(text, "metadata")


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("root.meta.span = this", ("meta", "span")),
        ("root.tracing=this", ("tracing",)),
        ('root."trace context".w3c = this', ("trace context", "w3c")),
    ],
)
def test_payload_path_forms(text: str, path: tuple[str, ...]) -> None:
    assert parse_mapping(text) == TracingMap(text, "payload", path)


@pytest.mark.parametrize(
    "text",
    [
        "meta = @",
        "meta = this",
        "meta = this.merge(@)",
        "root = this",
        "root.meta.span = this.traceparent",
        "meta foo = this",
        "root.a = this\nroot.b = this",
        "root.meta.span = this # comment",
        "",
    ],
)
def test_anything_else_is_not_implemented(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not implemented: this bridge recognizes the documented forms"):
        parse_mapping(text)


BASE = """\
input:
  kafka_franz:
    seed_brokers: [k:9092]
    topics: [orders]
    consumer_group: g
output:
  nats_jetstream:
    urls: [nats://n:4222]
    subject: s
"""


def test_lint_names_the_field_and_its_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse(BASE + "    inject_tracing_map: root = this.without_this_field\n", environ={})
    [problem] = info.value.problems
    assert (problem.path, problem.line) == ("output.nats_jetstream.inject_tracing_map", 10)
    assert "not implemented" in problem.message


def test_config_carries_the_recognized_mapping() -> None:
    loaded = parse(BASE + "    inject_tracing_map: meta = @.merge(this)\n", environ={})
    assert loaded.templates.tracing == TracingMap("meta = @.merge(this)", "metadata")
    assert parse(BASE, environ={}).templates.tracing is None


# ----------------------------------------------------------------------------------- spans and context


@pytest.fixture(scope="module")
def injector() -> Injector:
    return Injector(parse_mapping("meta = @.merge(this)"))


def test_a_record_without_context_starts_a_new_sampled_trace(injector: Injector) -> None:
    first, second = injector.carrier(message()), injector.carrier(message())
    assert set(first) == {"traceparent"}
    a, b = TRACEPARENT.match(first["traceparent"]), TRACEPARENT.match(second["traceparent"])
    assert a
    assert b
    assert int(a["flags"], 16) & 1, "sampled (the SDK also sets W3C level 2's random-trace-id bit)"
    assert a["trace"] != b["trace"], "each message is its own trace"


@pytest.mark.parametrize("flags", ["01", "00"])
def test_a_record_traceparent_is_continued(injector: Injector, flags: str) -> None:
    """Same trace id, a new span id, the sampling decision kept (ParentBased)."""
    out = injector.carrier(message(headers=[parent(flags)]))
    got = TRACEPARENT.match(out["traceparent"])
    assert got
    assert got["trace"] == PARENT_TRACE
    assert got["span"] != PARENT_SPAN
    assert got["flags"] == flags


def test_tracestate_is_carried_and_header_names_are_case_insensitive(injector: Injector) -> None:
    headers = [("TraceParent", parent()[1]), ("tracestate", b"vendor=abc")]
    out = injector.carrier(message(headers=headers))
    assert out["tracestate"] == "vendor=abc"
    assert out["traceparent"].split("-")[1] == PARENT_TRACE


def test_an_invalid_traceparent_starts_a_new_trace(injector: Injector) -> None:
    out = injector.carrier(message(headers=[("traceparent", b"00-zzzz-nope-01")]))
    got = TRACEPARENT.match(out["traceparent"])
    assert got
    assert got["trace"] != PARENT_TRACE


def test_metadata_form_merges_into_metadata(injector: Injector) -> None:
    msg = message(headers=[parent(), ("other", b"x")])
    injector(msg)
    meta = msg.metadata()
    assert meta["traceparent"].split("-")[1] == PARENT_TRACE
    assert meta["traceparent"] != parent()[1].decode(), "the record's value is replaced by the new span's"
    assert meta["other"] == "x"
    assert meta["kafka_topic"] == "orders"
    assert msg.content() == b'{"id":1}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"id":1,"meta":{"x":2}}', {"id": 1, "meta": {"x": 2, "span": "CTX"}}),
        (b'{"id":1,"meta":"scalar"}', {"id": 1, "meta": {"span": "CTX"}}),
        (b"not json", {"meta": {"span": "CTX"}}),
        (b"[1,2]", {"meta": {"span": "CTX"}}),
        (None, {"meta": {"span": "CTX"}}),
    ],
    ids=["object", "scalar-on-the-path", "not-json", "array", "tombstone"],
)
def test_payload_form_sets_the_path_like_bloblang(value: bytes | None, expected: dict) -> None:
    msg = message(value)
    Injector(parse_mapping("root.meta.span = this"))(msg)
    body = json.loads(msg.content())
    ctx = body["meta"]["span"]
    assert set(ctx) == {"traceparent"}
    body["meta"]["span"] = "CTX"
    assert body == expected
    assert msg.meta("kafka_tombstone_message") == ("true" if value is None else "false")
    assert msg.structured() == json.loads(msg.content())  # the JSON cache follows the new payload


def test_set_path_creates_objects() -> None:
    assert set_path({"a": 1}, ("b", "c"), 2) == {"a": 1, "b": {"c": 2}}
    assert set_path(None, ("x",), 1) == {"x": 1}


# ----------------------------------------------------------------------------------- the router hook


def router(output: str) -> Router:
    loaded = parse(BASE + "".join(f"    {line}\n" for line in output.splitlines()), environ={})
    return Router(loaded.templates, loaded.output.metadata)


def header_lines(tail: bytes) -> list[str]:
    block = tail.split(b"\r\n\r\n")[0]
    return [line.decode() for line in block.split(b"\r\n")[2:]]


def test_trace_context_reaches_headers_through_the_metadata_filter() -> None:
    r = router("inject_tracing_map: meta = @.merge(this)\nmetadata:\n  include_prefixes: [trace]\n"
               "headers:\n  X-Parent: ${! meta(\"traceparent\") }")  # fmt: skip
    assert r.for_partition("orders", 0) is None, "tracing needs the general path"
    lines = header_lines(r.route(message(headers=[parent()])).tail)
    names = [line.split(":")[0] for line in lines]
    assert names == ["X-Parent", "traceparent", "Nats-Msg-Id"]
    values = dict(line.split(": ", 1) for line in lines)
    assert values["X-Parent"] == values["traceparent"], "templates see the injected metadata"
    assert values["traceparent"].split("-")[1] == PARENT_TRACE


def test_without_a_metadata_filter_the_context_stays_in_metadata() -> None:
    lines = header_lines(router("inject_tracing_map: meta = @.merge(this)").route(message()).tail)
    assert [line.split(":")[0] for line in lines] == ["Nats-Msg-Id"]


def test_payload_form_through_the_router() -> None:
    envelope = router("inject_tracing_map: root.meta.span = this").route(message())
    body = json.loads(envelope.payload)
    assert body["id"] == 1
    assert TRACEPARENT.match(body["meta"]["span"]["traceparent"])


def test_no_opentelemetry_import_without_the_field() -> None:
    """A config without inject_tracing_map pays nothing: OpenTelemetry is not even imported."""
    code = (
        "import sys\n"
        "from bridge.core.config import parse\n"
        "from bridge.core.routing import Router\n"
        f"loaded = parse({BASE!r}, environ={{}})\n"
        "Router(loaded.templates, loaded.output.metadata)\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
