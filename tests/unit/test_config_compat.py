"""Redpanda Connect files that run unchanged, and lint's words (attack B on the config: items 1, 2, 3,
4, 5, 7, 9, 10, 14, 17 and 18 of its findings).

- what can never work is refused: NATS URLs without a host, with a bad port or whitespace (1),
  a topic named twice (17), more workers than one machine needs (18);
- what changes nothing here is a warning, never "unknown field": tracers, the json_api and logger
  metrics, inert franz and sarama fields, ``http.cors`` (2, 3, 4); Redpanda Connect's skeleton with its
  empty and default sections is accepted (4, 14); what would silently weaken security is refused (4);
- ``regexp_topics_include`` / ``regexp_topics_exclude`` on every franz input (3);
- ``lint --skip-env-var-check`` reports nothing its empty values cause (5);
- a ``bridge.msg_id`` two records can share is a warning (7);
- problems in the user's words: no Python names, the real line of a null key, ``--set`` named (9, 10).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.core.config import load
from bridge.core.errors import ConfigError, Problem
from tests.unit.test_config_rules import BASE, ok, problems  # the same base config and helpers

REPO = Path(__file__).resolve().parents[2]


def input_field(field: str, kind: str = "kafka_franz") -> str:
    """BASE with ``field`` (one YAML line, or several indented by 4) added to its input."""
    text = BASE.replace("    consumer_group: g\n", f"    consumer_group: g\n    {field}\n")
    return text.replace("kafka_franz:", f"{kind}:")


# --------------------------------------------------------------------------- 1. NATS URLs


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nats://127.0.0.1:abc", "URL 'nats://127.0.0.1:abc' has the port 'abc', which is not a number from 1 to 65535"),
        ("nats://127.0.0.1:99999", "has the port '99999', which is not a number from 1 to 65535"),
        ("nats://h:0", "has the port '0'"),
        ("nats://", "URL 'nats://' has no host (write nats://host:4222)"),
        ("nats://:4222", "URL 'nats://:4222' has no host"),
        ("nats://h h:4222", "URL 'nats://h h:4222' has whitespace in its host"),
        ("h:abc", "URL 'h:abc' has the port 'abc'"),
        ("nats://u:sekrit07@:4222", "URL 'nats://***@:4222' has no host"),
        ("nats://[::1", "is not a URL"),
    ],
)  # fmt: skip
def test_a_url_that_names_no_server_is_refused(url: str, message: str) -> None:
    found = problems(BASE.replace("nats://n1:4222", f"'{url}'"))
    assert [(p.path, p.line) for p in found] == [("output.nats_jetstream.urls", 8)]
    assert message in found[0].message
    assert "sekrit07" not in found[0].message


@pytest.mark.parametrize(
    "url", ["nats://[::1]:4222", "nats://h", "nats://h:", "h", "nats://h:4222/", "tls://u:p@h:1"]
)
def test_urls_that_name_a_server_are_accepted(url: str) -> None:
    ok(BASE.replace("nats://n1:4222", f"'{url}'"))


# --------------------------------------------------------------------------- 2. tracers and metrics


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ("tracer:\n  jaeger:\n    agent_address: localhost:6831\n", "tracer.jaeger"),
        ("tracer:\n  gcp_cloudtrace: {project: p}\n", "tracer.gcp_cloudtrace"),
        ("tracer:\n  redpanda: {}\n", "tracer.redpanda"),
        ("metrics:\n  json_api: {}\n", "metrics.json_api"),
        ("metrics:\n  logger: {push_interval: 1m}\n", "metrics.logger"),
    ],
)
def test_tracers_and_metrics_exporters_are_warnings(extra: str, path: str) -> None:
    loaded = ok(BASE + extra)
    assert [(w.path, w.line) for w in loaded.warnings] == [(path, 11)]
    assert f"{path.split('.')[1]} has no effect in this bridge: " in loaded.warnings[0].message


def test_an_unknown_tracer_or_metrics_type_is_still_refused() -> None:
    found = problems(BASE + "tracer:\n  jaegr: {}\nmetrics:\n  statsd: {}\n")
    assert [p.path for p in found] == ["tracer.jaegr", "metrics.statsd"]
    assert "(did you mean jaeger?)" in found[0].message


# --------------------------------------------------------------------------- 3. inert input fields


@pytest.mark.parametrize(
    ("field", "kind"),
    [
        ("partition_buffer_bytes: 1MB", "kafka_franz"),
        ("max_yield_batch_bytes: 32KB", "kafka_franz"),
        ("timely_nacks_maximum_wait: 10s", "kafka_franz"),
        ("timely_nacks_maximum_wait: 10s", "redpanda"),
        ("tcp:\n      connect_timeout: 5s", "kafka_franz"),
        ("tcp:\n      keep_alive: {idle: 1m}", "redpanda"),
        ("timely_nacks_maximum_wait: 10s", "kafka"),
        ("extract_tracing_map: root = @", "kafka"),
    ],
)
def test_inert_fields_of_every_input_are_warnings(field: str, kind: str) -> None:
    text = input_field(field, kind)
    if kind == "kafka":
        text = text.replace("seed_brokers", "addresses")
    loaded = ok(text)
    name = field.split(":")[0]
    assert [(w.path, w.line) for w in loaded.warnings] == [(f"input.{kind}.{name}", 6)]
    assert f"{name} has no effect in this bridge: " in loaded.warnings[0].message


@pytest.mark.parametrize(
    "field",
    [
        "timely_nacks_maximum_wait: ''",
        "tcp:\n      connect_timeout: 0s\n      keep_alive: {idle: 15s, interval: 15s, count: 9}\n"
        "      tcp_user_timeout: 0s",
        "regexp_topics_include: []\n    regexp_topics_exclude: []",
    ],
)
def test_the_reference_pages_defaults_are_silent(field: str) -> None:
    assert ok(input_field(field)).warnings == ()


def test_the_legacy_inputs_instance_id_is_static_membership() -> None:
    text = input_field("instance_id: member-1", "kafka").replace("seed_brokers", "addresses")
    loaded = ok(text)
    assert (loaded.kafka.instance_id, loaded.warnings) == ("member-1", ())
    found = problems(text.replace("member-1\n", "member-1\n    group: {instance_id: member-2}\n"))
    assert "instance_id and group.instance_id differ" in found[0].message


# --------------------------------------------------------------------------- 3. regexp_topics_include/exclude


@pytest.mark.parametrize("kind", ["kafka_franz", "redpanda"])
def test_include_and_exclude_patterns_select_topics(kind: str) -> None:
    """The exclusion is folded into every pattern, so whoever matches topics against the patterns
    (the run's subscription joins them as ``^(?:(?:a)|(?:b))$``, backfill and verify alike) leaves the
    excluded topics out. An exclusion matches anywhere in the name, as Go's ``MatchString``."""
    text = input_field(
        r"regexp_topics_include: ['events\..*', 'audit']"
        + "\n    regexp_topics_exclude: ['\\.internal$', '^events\\.tmp']",
        kind,
    )
    loaded = ok(text.replace("    topics: [orders]\n", ""))
    assert loaded.kafka.regexp
    joined = re.compile("^(?:" + "|".join(f"(?:{t})" for t in loaded.kafka.topics) + ")$")
    chosen = {t for t in ("events.a", "events.a.internal", "events.tmpx", "audit", "audit.internal", "orders", "x.events.a")
              if joined.match(t)}  # fmt: skip
    assert chosen == {"events.a", "audit"}


def test_exclude_without_patterns_and_invalid_patterns_are_refused() -> None:
    found = problems(input_field("regexp_topics_exclude: [x]"))
    assert "regexp_topics_exclude needs topic patterns" in found[0].message
    found = problems(input_field("regexp_topics_include: ['(']").replace("    topics: [orders]\n", ""))
    assert "invalid topic regular expression '('" in found[0].message
    found = problems(input_field("regexp_topics_include: [a]\n    regexp_topics_exclude: ['[']"))
    assert "invalid regexp_topics_exclude regular expression '['" in found[0].message


# --------------------------------------------------------------------------- 4 and 14. Redpanda Connect's skeleton


def test_the_skeleton_rpk_connect_create_writes_is_accepted() -> None:
    skeleton = (
        "http:\n  enabled: true\n  address: 0.0.0.0:4195\n  root_path: /benthos\n  debug_endpoints: false\n"
        '  cert_file: ""\n  key_file: ""\n  cors:\n    enabled: false\n    allowed_origins: []\n'
        '  basic_auth:\n    enabled: false\n    realm: restricted\n    username: ""\n    password_hash: ""\n'
        '    algorithm: sha256\n    salt: ""\n'
        "buffer:\n  none: {}\npipeline:\n  threads: -1\n  processors: []\n"
        "input_resources: []\nprocessor_resources: []\noutput_resources: []\ncache_resources: []\n"
        "rate_limit_resources: []\n"
        "logger:\n  level: INFO\n  format: logfmt\n  add_timestamp: false\n  static_fields:\n    '@service': rpc\n"
        'metrics:\n  prometheus: {}\n  mapping: ""\ntracer:\n  none: {}\nshutdown_delay: 0s\nshutdown_timeout: 20s\n'
        "tests: []\n"
    )
    batching = '    batching:\n      count: 0\n      byte_size: 0\n      period: ""\n      check: ""\n      processors: []\n'
    text = BASE.replace("    consumer_group: g\n", "    consumer_group: g\n" + batching) + skeleton
    assert ok(text).warnings == ()


@pytest.mark.parametrize("policy", ["{count: 10}", "{byte_size: 1MB}", "{period: 1s}", "{check: 'true'}",
                                    "{processors: [{mapping: root = this}]}"])  # fmt: skip
def test_a_batching_policy_that_batches_is_explained(policy: str) -> None:
    found = problems(input_field(f"batching: {policy}"))
    assert [(p.path, p.line) for p in found] == [("input.kafka_franz.batching", 6)]
    assert "batching is not implemented by this bridge" in found[0].message
    assert "max_in_flight" in found[0].message


def test_non_empty_resources_and_tests_are_still_refused() -> None:
    found = problems(BASE + "cache_resources: [{label: c, memory: {}}]\ntests: [{name: t}]\n")
    assert [p.path for p in found] == ["cache_resources", "tests"]


def test_cors_enabled_is_a_warning() -> None:
    loaded = ok(BASE + "http:\n  cors:\n    enabled: true\n    allowed_origins: ['*']\n")
    assert [(w.path, w.line) for w in loaded.warnings] == [("http.cors", 11)]
    assert "cors has no effect in this bridge: no CORS headers are sent" in loaded.warnings[0].message


@pytest.mark.parametrize(
    ("extra", "path", "message"),
    [
        ("http:\n  basic_auth:\n    enabled: true\n    username: u\n    password_hash: h4sh\n",
         "http.basic_auth", "basic_auth is not implemented by this bridge: /ping, /ready and /metrics would be "
                            "served without authentication"),
        ("http:\n  cert_file: /tls/cert.pem\n", "http.cert_file", "TLS on the http server is not implemented"),
        ("http:\n  key_file: /tls/key.pem\n", "http.key_file", "would be served without TLS"),
    ],
)  # fmt: skip
def test_what_would_serve_http_less_safely_than_asked_is_refused(extra: str, path: str, message: str) -> None:
    found = problems(BASE + extra)
    assert [p.path for p in found] == [path]
    assert message in found[0].message
    assert "h4sh" not in found[0].message


# --------------------------------------------------------------------------- 5. --skip-env-var-check


@pytest.mark.parametrize("name", ["backfill.yaml", "secured.yaml"])
def test_skip_env_var_check_passes_the_shipped_configs(name: str) -> None:
    """Without the variables they need, the shipped configs lint as ok: nothing their empty values
    break is a problem."""
    shown: list[Problem] = []
    try:
        load(REPO / "configs" / name, environ={}, skip_env_check=True)
    except ConfigError as exc:  # stopped at a rule the empty values broke: nothing to show (lint: ok)
        shown = exc.problems
    assert shown == []
    with pytest.raises(ConfigError) as info:
        load(REPO / "configs" / name, environ={})  # without the flag, each unset variable is one
    assert all("environment variable" in p.message for p in info.value.problems)


def test_skip_env_var_check_keeps_the_other_problems() -> None:
    text = (REPO / "configs" / "secured.yaml").read_text()
    text = text.replace("    tls_handshake_first:", "    tls_handshake_frist:").replace(
        "level: INFO", "level: LOUD"
    )
    assert "tls_handshake_frist" in text
    assert "LOUD" in text
    found = problems(text, skip_env_check=True)
    assert [p.path for p in found] == ["output.nats_jetstream.tls_handshake_frist", "logger.level"]
    found = problems(BASE.replace("consumer_group: g", "consumer_group: ${G}") + "    max_in_flight: 0\n",
                     skip_env_check=True)  # fmt: skip
    assert [p.path for p in found] == ["output.nats_jetstream.max_in_flight"]


# --------------------------------------------------------------------------- 7. msg_id unique per record


@pytest.mark.parametrize(
    ("msg_id", "topics", "missing"),
    [
        ("fixed", "[orders]", "kafka_partition and kafka_offset"),
        ('${! meta("kafka_key") }', "[orders]", "kafka_partition and kafka_offset"),
        ('${! meta("kafka_offset") }', "[orders]", "kafka_partition:"),
        ('${! meta("kafka_partition") }', "[orders]", "kafka_offset:"),
        ('custom-${! meta("kafka_topic") }-${! meta("kafka_offset") }', "[orders, pay]", "kafka_partition:"),
        ('${! meta("kafka_partition") }-${! meta("kafka_offset") }', "[orders, pay]", "kafka_topic:"),
        ('${! meta("kafka_partition") }-${! meta("kafka_offset") }', "['orders.*']\n    regexp_topics: true",
         "kafka_topic:"),
    ],
)  # fmt: skip
def test_a_msg_id_records_can_share_is_a_warning(msg_id: str, topics: str, missing: str) -> None:
    loaded = ok(BASE.replace("[orders]", topics) + f"bridge:\n  msg_id: '{msg_id}'\n")
    assert [w.path for w in loaded.warnings] == ["bridge.msg_id"]
    message = loaded.warnings[0].message
    assert message.startswith(f"msg_id does not depend on {missing}")
    assert "get the same Nats-Msg-Id, and JetStream drops all but the first of them as duplicates" in message


def test_a_configured_nats_msg_id_header_records_can_share_is_a_warning() -> None:
    """A Nats-Msg-Id among the configured headers replaces the record's identity (the router obeys it):
    one made from the key alone (null keys, repeated keys) would let JetStream drop records as
    duplicates, so it gets the msg_id warning, at the header's path and line."""
    text = BASE + "    headers:\n      Nats-Msg-Id: ${! @kafka_key }\n"
    loaded = ok(text)
    assert [(w.path, w.line) for w in loaded.warnings] == [("output.nats_jetstream.headers.Nats-Msg-Id", 11)]
    message = loaded.warnings[0].message
    assert message.startswith("the header Nats-Msg-Id does not depend on kafka_partition and kafka_offset")
    assert "JetStream drops all but the first of them as duplicates" in message
    assert message.endswith("or remove the header Nats-Msg-Id")
    unique = '${! meta("kafka_partition") }-${! meta("kafka_offset") }'
    assert ok(BASE + f"    headers:\n      Nats-Msg-Id: '{unique}'\n").warnings == ()
    assert ok(BASE + "    headers:\n      Nats-Msg-Idx: ${! @kafka_key }\n").warnings == ()  # another header


@pytest.mark.parametrize(("name", "known"), [("nats-msg-id", "Nats-Msg-Id"), ("NATS-MSG-ID", "Nats-Msg-Id"),
                                             ("nats-expected-stream", "Nats-Expected-Stream"),
                                             ("Nats-Ttl", "Nats-TTL")])  # fmt: skip
def test_a_server_header_in_another_case_is_a_warning(name: str, known: str) -> None:
    """nats-server matches its headers byte for byte: ``nats-msg-id`` is an ordinary header to it (it
    neither deduplicates nor replaces the record's own id), which the user is told."""
    loaded = ok(BASE + f"    headers:\n      {name}: ${{! @kafka_key }}\n")
    assert [(w.path, w.line) for w in loaded.warnings] == [(f"output.nats_jetstream.headers.{name}", 11)]
    message = loaded.warnings[0].message
    assert message.startswith(f"nats-server reads the header {known} only in this spelling: {name} is sent")
    assert ("the record's own Nats-Msg-Id is still sent" in message) is (known == "Nats-Msg-Id")


@pytest.mark.parametrize(
    ("msg_id", "shared"),
    [
        ("${! @kafka_partition }${! @kafka_offset }", "'110'"),
        ("${! @kafka_partition + @kafka_offset }", "'110'"),
        ("${! @kafka_partition.or(@kafka_offset) }", "'0'"),
        ("${! @kafka_offset.catch(@kafka_partition) }-x", "'0-x'"),
        ('${! @kafka_key.or(@kafka_partition + "-" + @kafka_offset) }', "'k'"),
        ('${! @kafka_offset.replace_all("0", "") }-${! @kafka_partition }', "'1-0'"),
    ],
)
def test_an_id_that_reads_partition_and_offset_and_still_repeats_is_a_warning(
    msg_id: str, shared: str
) -> None:
    """Reading kafka_partition and kafka_offset is not enough: the id is rendered for probe records
    (digits that run together, fallbacks that never run, repeated and null keys)."""
    loaded = ok(BASE + f"bridge:\n  msg_id: '{msg_id}'\n")
    assert [w.path for w in loaded.warnings] == ["bridge.msg_id"]
    message = loaded.warnings[0].message
    assert message.startswith("msg_id gives two records the same Nats-Msg-Id (offset ")
    assert f": {shared})" in message


@pytest.mark.parametrize("function", ["now()", "timestamp_unix_milli()", 'count("c")', "uuid_v4()"])
def test_an_id_that_changes_between_sends_is_a_warning(function: str) -> None:
    """A clock, a counter or a random value gives a re-sent record another id (stored twice), and a
    clock or a per-process counter can repeat (dropped as a duplicate)."""
    msg_id = f"${{! @kafka_partition }}-${{! @kafka_offset }}-${{! {function} }}"
    loaded = ok(BASE + f"bridge:\n  msg_id: '{msg_id}'\n")
    assert [w.path for w in loaded.warnings] == ["bridge.msg_id"]
    assert loaded.warnings[0].message.startswith(f"msg_id reads {function.split('(')[0]}(), which changes")


@pytest.mark.parametrize(
    ("msg_id", "topics"),
    [
        ('${! meta("kafka_partition") }-${! meta("kafka_offset") }', "[orders]"),
        (
            '${! meta("kafka_topic") }/${! meta("kafka_partition") }/${! meta("kafka_offset") }',
            "[orders, pay]",
        ),
        ('${! meta("kafka_partition") }-${! meta("kafka_offset") }', "['orders:0', 'orders:1']"),
        ('${! json("id") }', "[orders]"),  # reads the payload: not judged
        ("", "[orders]"),  # no Nats-Msg-Id at all
    ],
)
def test_a_msg_id_unique_per_record_is_not_warned_about(msg_id: str, topics: str) -> None:
    text = BASE.replace("[orders]", topics) + f"bridge:\n  msg_id: '{msg_id}'\n"
    if "orders:0" in topics:
        text = text.replace("    consumer_group: g\n", "")
    assert ok(text).warnings == ()


# --------------------------------------------------------------------------- 9. the user's words


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("    auth: x", "expected a mapping (name: value lines) (got 'x')"),
        ("    tls: true", "expected a mapping (name: value lines) (got true)"),
        ("    metadata: [kafka_]", "expected a mapping (name: value lines) (got ['kafka_'])"),
        ("    max_in_flight:", "expected a whole number (got nothing: the value is empty)"),
        ("    max_in_flight: 0", "must be at least 1 (got 0)"),
        ("    tls_handshake_first: maybe", "expected true or false (got 'maybe')"),
    ],
)
def test_problems_name_no_python_types(field: str, message: str) -> None:
    (found,) = problems(BASE + field + "\n")
    assert found.message == message
    for internal in ("NatsAuth", "TLS", "MetadataFilter", "tuple", "None", "Input should"):
        assert internal not in found.message


def test_sasl_as_a_mapping_asks_for_a_list() -> None:
    (found,) = problems(input_field("sasl: {mechanism: PLAIN, username: u, password: p}"))
    assert (found.path, found.message) == (
        "input.kafka_franz.sasl",
        "expected a list ([a, b], or one '- item' per line)",
    )


@pytest.mark.parametrize(
    ("extra", "path"), [("~: 1\n", ""), ("    headers:\n      null: x\n", "output.nats_jetstream.headers")]
)
def test_a_null_key_is_named_at_its_line(extra: str, path: str) -> None:
    found = problems(BASE + extra)
    line = 10 if not path else 11
    assert found == [Problem(path, line, f"a key is null ({extra.split()[-2].rstrip(':')}): a key must be a name "
                                         "(quote it to mean the text)")]  # fmt: skip
    assert str(found[0]).startswith(f"line {line}: ")
    assert "None" not in str(found[0])
    assert "<root>" not in str(found[0])


def test_an_unset_variable_as_a_key_has_no_follow_on_problem() -> None:
    found = problems(BASE + "${KEYVAR}: 1\n")
    assert [(p.line, p.message) for p in found] == [
        (10, "environment variable KEYVAR is not set and has no default (${KEYVAR:default})")
    ]


def test_a_problem_of_the_whole_file_has_no_path() -> None:
    (found,) = problems("a: [\n")
    assert str(found).startswith("line ")
    assert "<root>" not in str(found)
    assert found.message.startswith("invalid YAML")


# --------------------------------------------------------------------------- 10. --set named


def test_a_url_set_by_set_points_at_the_set_not_the_file() -> None:
    found = problems(BASE, sets=("output.nats_jetstream.urls.0=http://x",))
    assert [(p.path, p.line) for p in found] == [("output.nats_jetstream.urls", 0)]
    assert found[0].message.endswith("(set by --set output.nats_jetstream.urls.0=…)")
    assert found[0].message.startswith("URL 'http://x': the scheme 'http' is not a NATS scheme")


def test_a_problem_found_after_loading_names_the_set() -> None:
    """``translate`` checks the subject after loading: ``Loaded.problem`` says where it came from."""
    path = ("output", "nats_jetstream", "subject")
    loaded = ok(BASE, sets=('output.nats_jetstream.subject=kafka.${! json("type") }',))
    assert loaded.problem(path, "bad") == Problem(
        "output.nats_jetstream.subject", 0, "bad (set by --set output.nats_jetstream.subject=…)"
    )
    assert ok(BASE).problem(path, "bad") == Problem("output.nats_jetstream.subject", 9, "bad")


# --------------------------------------------------------------------------- 17 and 18


@pytest.mark.parametrize(
    ("topics", "message"),
    [
        ("[orders, orders]", "topic 'orders' is named twice in topics"),
        ("['orders,orders']", "topic 'orders' is named twice in topics"),
        ("['orders:0', 'orders:0-2']", "partition orders:0 is named twice in topics"),
    ],
)
def test_a_topic_named_twice_is_refused(topics: str, message: str) -> None:
    text = BASE.replace("[orders]", topics)
    if ":0" in topics:
        text = text.replace("    consumer_group: g\n", "")
    found = problems(text)
    assert [(p.path, p.line) for p in found] == [("input.kafka_franz", 2)]
    assert message in found[0].message


def test_workers_are_capped() -> None:
    assert ok(BASE + "bridge:\n  workers: 64\n").config.bridge.workers == 64
    (found,) = problems(BASE + "bridge:\n  workers: 1000\n")
    assert (found.path, found.line) == ("bridge.workers", 11)
    assert found.message.startswith("must be at most 64, not 1000: workers are processes on this machine")
