"""What lint refuses because it can never work, what it says is ignored, and ``--set`` (issue 13's
"lint" section; F9, F14 and F18 of the attack on issue 10)."""

from __future__ import annotations

import pytest

from bridge.core.config import Loaded, parse
from bridge.core.errors import ConfigError, Problem

# Lines 1-9; anything appended starts on line 10.
BASE = """\
input:
  kafka_franz:
    seed_brokers: [k1:9092]
    topics: [orders]
    consumer_group: g
output:
  nats_jetstream:
    urls: [nats://n1:4222]
    subject: kafka.${! meta("kafka_topic") }
"""


def ok(text: str, **kwargs: object) -> Loaded:
    return parse(text, source="test.yaml", environ={}, **kwargs)  # type: ignore[arg-type]


def problems(text: str, **kwargs: object) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        parse(text, source="test.yaml", environ={}, **kwargs)  # type: ignore[arg-type]
    return info.value.problems


# --------------------------------------------------------------------------- subjects


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ("orders.*", "subject 'orders.*' contains the wildcard token '*'"),
        ("orders.>", "subject 'orders.>' contains the wildcard token '>'"),
        ("orders..x", "subject 'orders..x' has an empty token"),
        (".orders", "subject '.orders' has an empty token"),
        ("orders.", "subject 'orders.' has an empty token"),
        ("'orders x'", "subject 'orders x' contains whitespace or control characters"),
        ("$JS.API.x", "subject '$JS.API.x' starts with '$JS.'"),
        ("_INBOX.x", "subject '_INBOX.x' starts with '_INBOX.'"),
        # interpolated: the text every rendering shares already breaks the rule
        ('a..${! meta("kafka_partition") }', "subject 'a..${…}' has an empty token whatever its interpolations give"),
        ("""'*.${! meta("kafka_partition") }'""", "subject '*.${…}' contains the wildcard token '*' whatever"),
        ('${! meta("kafka_topic") }.', "subject '${…}.' has an empty token whatever"),
        ('$SYS.${! meta("kafka_topic") }', "subject '$SYS.${…}' starts with '$SYS.'"),
    ],
)  # fmt: skip
def test_a_subject_that_can_never_be_stored_is_refused(subject: str, message: str) -> None:
    found = problems(BASE.replace('kafka.${! meta("kafka_topic") }', subject))
    assert [(p.path, p.line) for p in found] == [("output.nats_jetstream.subject", 9)]
    assert message in found[0].message


@pytest.mark.parametrize(
    "subject",
    ['a.${! meta("kafka_key") }', '${! meta("kafka_key") }', 'a*b.${! @k }', 'a.${! @k }*', "orders.x", "$KV.b.k",
     'a.${! meta("k") }.${! meta("j") }'],
)  # fmt: skip
def test_a_subject_some_records_can_be_stored_under_is_accepted(subject: str) -> None:
    ok(BASE.replace('kafka.${! meta("kafka_topic") }', subject))


def test_the_dead_letter_subject_obeys_the_same_rule() -> None:
    found = problems(BASE + "bridge:\n  dead_letter:\n    subject: dlq.>\n")
    assert [(p.path, p.line) for p in found] == [("bridge.dead_letter.subject", 12)]


# --------------------------------------------------------------------------- NATS URLs (F9)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:4222", "URL 'http://127.0.0.1:4222': the scheme 'http' is not a NATS scheme"),
        ("https://n:443", "the scheme 'https' is not a NATS scheme"),
        ("kafka://n:9092", "the scheme 'kafka' is not a NATS scheme"),
        ("nats://127.0.0.1:45999?token=sekrit07", "has a query string, which the NATS client ignores"),
        ("nats://n:4222/#frag", "has a fragment, which the NATS client ignores"),
        ("tls://u:pw@n:4222?x=1", "URL 'tls://***@n:4222?…' has a query string"),
    ],
)
def test_a_url_the_nats_client_cannot_use_as_written_is_refused(url: str, message: str) -> None:
    found = problems(BASE.replace("nats://n1:4222", f"'{url}'"))
    assert [(p.path, p.line) for p in found] == [("output.nats_jetstream.urls", 8)]
    assert message in found[0].message
    assert "sekrit07" not in found[0].message
    assert "pw" not in found[0].message


@pytest.mark.parametrize("urls", ["[nats://n:4222]", "[tls://n:4222]", "[ws://n:80, wss://n:443]", "[n:4222]",
                                  "[NATS://n:4222]", "['nats://a:1,nats://b:2']", "[nats://u:p@n:4222]"])  # fmt: skip
def test_nats_schemes_and_no_scheme_are_accepted(urls: str) -> None:
    ok(BASE.replace("[nats://n1:4222]", urls))


# --------------------------------------------------------------------------- explicit offsets (F14)


@pytest.mark.parametrize(
    ("entry", "offset"), [("t:0:0", 0), ("t:0:100", 100), ("t:0:-1", -1), ("t:0:-2", -2), ("t:0", None)]
)
def test_offsets_kafka_franz_accepts(entry: str, offset: int | None) -> None:
    """As Redpanda Connect's kafka_franz: an int64 handed to franz-go's Offset.At, where -1 is the end
    and -2 the start of the partition."""
    loaded = ok(
        BASE.replace("topics: [orders]", f"topics: ['{entry}']").replace("    consumer_group: g\n", "")
    )
    assert loaded.kafka.explicit[0].offset == offset


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("t:0:-5", "offset -5 in 't:0:-5' cannot be sought to: use an offset from 0, -1 (the end of the "
                   "partition) or -2 (its start), as kafka_franz"),
        ("t:0:-3", "offset -3 in 't:0:-3' cannot be sought to"),
        ("t:0:9223372036854775808", "cannot be sought to"),
        ("t:2147483648", "partitions go up to 2,147,483,647"),
        ("t:0-100000", "name more than 65,536 partitions"),
    ],
)  # fmt: skip
def test_what_cannot_be_sought_to_is_refused(entry: str, message: str) -> None:
    """F14: ``t:0:-5`` passed lint, then backfill crashed with "ValueError: Offset must be a positive
    integer"."""
    found = problems(
        BASE.replace("topics: [orders]", f"topics: ['{entry}']").replace("    consumer_group: g\n", "")
    )
    assert [(p.path, p.line) for p in found] == [("input.kafka_franz", 2)]
    assert message in found[0].message


# --------------------------------------------------------------------------- what a problem quotes (F18)


def test_a_problem_quotes_at_most_200_characters_of_a_value() -> None:
    """F18: a 150 KB error line echoed a whole list."""
    value = "[" + ", ".join(f"item{i}" for i in range(20_000)) + "]"
    found = problems(BASE + f"    max_in_flight: {value}\n")
    (problem,) = found
    assert len(problem.message) < 320
    assert "…" in problem.message
    assert problem.message.endswith("characters))")


# --------------------------------------------------------------------------- inert fields


@pytest.mark.parametrize(
    ("extra", "path", "line"),
    [
        ("tracer:\n  open_telemetry_collector: {}\n", "tracer.open_telemetry_collector", 11),
        ("metrics:\n  mapping: root = this\n", "metrics.mapping", 11),
        ("metrics:\n  prometheus:\n    push_url: http://gw:9091\n", "metrics.prometheus.push_url", 12),
        ("http:\n  debug_endpoints: true\n", "http.debug_endpoints", 11),
        ("pipeline:\n  threads: 4\n", "pipeline.threads", 11),
        ("shutdown_delay: 5s\n", "shutdown_delay", 10),
    ],
)
def test_a_field_that_changes_nothing_here_is_a_warning(extra: str, path: str, line: int) -> None:
    loaded = ok(BASE + extra)
    assert [(w.path, w.line) for w in loaded.warnings] == [(path, line)]
    assert "has no effect in this bridge: " in loaded.warnings[0].message


@pytest.mark.parametrize(
    "field", ["auto_replay_nacks: false", "topic_lag_refresh_period: 1s", "conn_idle_timeout: 1s",
              "multi_header: true"],
)  # fmt: skip
def test_inert_input_fields_are_warnings(field: str) -> None:
    loaded = ok(BASE.replace("    consumer_group: g\n", f"    consumer_group: g\n    {field}\n"))
    name = field.split(":")[0]
    assert [(w.path, w.line) for w in loaded.warnings] == [(f"input.kafka_franz.{name}", 6)]


@pytest.mark.parametrize(
    "extra",
    ["tracer:\n  none: {}\n", "http:\n  debug_endpoints: false\n", "pipeline:\n  threads: -1\n",
     "shutdown_delay: 0s\n", "metrics:\n  prometheus: {}\n"],
)  # fmt: skip
def test_values_that_ask_for_nothing_are_not_warned_about(extra: str) -> None:
    assert ok(BASE + extra).warnings == ()


# --------------------------------------------------------------------------- --set


def test_set_changes_fields_by_their_dot_path() -> None:
    loaded = ok(
        BASE,
        sets=(
            "output.nats_jetstream.max_in_flight=256",
            "input.kafka_franz.topics.0=payments",
            'output.nats_jetstream.subject=a.${! meta("kafka_partition") }',
            "bridge.stream.name=ORDERS",
            "output.nats_jetstream.tls_handshake_first=true",
        ),
    )
    assert loaded.output.max_in_flight == 256
    assert loaded.kafka.topics == ("payments",)
    assert loaded.output.subject == 'a.${! meta("kafka_partition") }'
    assert loaded.config.bridge.stream is not None
    assert loaded.config.bridge.stream.name == "ORDERS"
    assert loaded.output.tls_handshake_first is True


def test_a_secret_set_as_digits_is_the_text() -> None:
    loaded = ok(BASE, sets=("output.nats_jetstream.auth.user=u", "output.nats_jetstream.auth.password=0123"))
    assert loaded.output.auth.password is not None
    assert loaded.output.auth.password.get_secret_value() == "0123"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("max_in_flight", "invalid --set expression 'max_in_flight': expected path=value"),
        ("a.b=", "invalid --set expression 'a.b=': expected path=value"),
        ("=5", "invalid --set expression '=5': expected path=value"),
        ("a..b=1", "empty name in the path 'a..b'"),
        ("input.kafka_franz.topics.5=x", "cannot --set it: input.kafka_franz.topics.5 is not an item of the list"),
    ],
)  # fmt: skip
def test_a_set_that_is_not_one_is_a_problem(expression: str, message: str) -> None:
    found = problems(BASE, sets=(expression,))
    assert any(message in p.message for p in found), found


def test_a_problem_in_a_value_set_says_so() -> None:
    found = problems(BASE, sets=("output.nats_jetstream.max_in_flight=lots",))
    assert [(p.path, p.line) for p in found] == [("output.nats_jetstream.max_in_flight", 0)]
    assert found[0].message.endswith("(set by --set output.nats_jetstream.max_in_flight=…)")
