"""bridge.core.config: the Redpanda Connect YAML dialects, defaults, and every problem with path and line.

Configs are written inline; the line numbers asserted below are the 1-based lines of those texts
(every multi-line YAML literal starts on line 1 right after its opening quotes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.core.config import (
    Loaded,
    TopicPartitions,
    load,
    parse,
    parse_duration,
    parse_size,
    substitute_env,
)
from bridge.core.errors import ConfigError, ExitCode, Problem

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


def ok(text: str, environ: dict[str, str] | None = None) -> Loaded:
    return parse(text, source="test.yaml", environ={} if environ is None else environ)


def problems(text: str, environ: dict[str, str] | None = None) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        parse(text, source="test.yaml", environ={} if environ is None else environ)
    assert info.value.problems, "a ConfigError must carry at least one problem"
    assert info.value.exit_code == ExitCode.CONFIG
    return info.value.problems


def where(found: list[Problem]) -> list[tuple[str, int]]:
    return [(p.path, p.line) for p in found]


# --------------------------------------------------------------------------- valid configs


def test_base_config_is_valid() -> None:
    loaded = ok(BASE)
    assert loaded.source == "test.yaml"
    assert loaded.config.input.kind == "kafka_franz"
    assert loaded.kafka.kind == "kafka_franz"
    assert loaded.kafka.brokers == ("k1:9092",)
    assert loaded.kafka.topics == ("orders",)
    assert loaded.kafka.explicit == ()
    assert loaded.kafka.group == "g"
    assert loaded.output.subject == 'kafka.${! meta("kafka_topic") }'
    assert loaded.templates.subject.source == 'kafka.${! meta("kafka_topic") }'
    assert loaded.lines[("output", "nats_jetstream", "subject")] == 9


def test_redpanda_dialect() -> None:
    loaded = ok(
        """\
input:
  redpanda:
    seed_brokers: ["k1:9092,k2:9092", " k3:9092 "]
    topics: ["a,b"]
    consumer_group: grp
    partition_buffer_bytes: 50MB
    max_yield_batch_bytes: 1B
output:
  nats_jetstream:
    urls: [n]
    subject: s
"""
    )
    assert loaded.config.input.kind == "redpanda"
    assert loaded.kafka.kind == "redpanda"
    assert loaded.kafka.brokers == ("k1:9092", "k2:9092", "k3:9092")
    assert loaded.kafka.topics == ("a", "b")
    assert loaded.kafka.group == "grp"
    redpanda = loaded.config.input.redpanda
    assert redpanda is not None
    assert redpanda.partition_buffer_bytes == 50_000_000
    assert redpanda.max_yield_batch_bytes == 1
    # the redpanda input has no checkpoint_limit of its own
    assert loaded.kafka.checkpoint_limit == 1024


def test_legacy_kafka_dialect() -> None:
    loaded = ok(
        """\
input:
  kafka:
    addresses: ["k1:9092,k2:9092", k3:9092]
    topics: [orders, "payments,refunds"]
    consumer_group: legacy
    checkpoint_limit: 7
output:
  nats_jetstream:
    urls: [n]
    subject: s
"""
    )
    assert loaded.config.input.kind == "kafka"
    assert loaded.kafka.kind == "kafka"
    assert loaded.kafka.brokers == ("k1:9092", "k2:9092", "k3:9092")
    assert loaded.kafka.topics == ("orders", "payments", "refunds")
    assert loaded.kafka.group == "legacy"
    assert loaded.kafka.checkpoint_limit == 7
    assert loaded.kafka.commit_period == 1.0  # the sarama input's own default
    assert loaded.kafka.start_offset == "earliest"


def test_legacy_kafka_explicit_partitions_and_start_from_oldest_false() -> None:
    loaded = ok(
        """\
input:
  kafka:
    addresses: [k1:9092]
    topics: ["x:0-1", "y:2"]
    start_from_oldest: false
output:
  nats_jetstream:
    urls: [n]
    subject: s
"""
    )
    assert loaded.kafka.explicit == (
        TopicPartitions("x", (0, 1), None),
        TopicPartitions("y", (2,), None),
    )
    assert loaded.kafka.topics == ()
    assert loaded.kafka.start_offset == "latest"


def test_output_urls_comma_split() -> None:
    loaded = ok(
        BASE.replace("urls: [nats://n1:4222]", 'urls: ["nats://a:4222,nats://b:4222", nats://c:4222]')
    )
    assert loaded.output.urls == ("nats://a:4222", "nats://b:4222", "nats://c:4222")


@pytest.mark.parametrize(
    ("topics", "expected"),
    [
        ('["orders:1"]', (TopicPartitions("orders", (1,), None),)),
        ('["a:0-3"]', (TopicPartitions("a", (0, 1, 2, 3), None),)),
        ('["orders:1:100"]', (TopicPartitions("orders", (1,), 100),)),
        ('["orders:2-3:-1"]', (TopicPartitions("orders", (2, 3), -1),)),
        (
            '["a:0", "b:1-2:5"]',
            (TopicPartitions("a", (0,), None), TopicPartitions("b", (1, 2), 5)),
        ),
        ('["a:0,b:4"]', (TopicPartitions("a", (0,), None), TopicPartitions("b", (4,), None))),
    ],
)
def test_explicit_partitions(topics: str, expected: tuple[TopicPartitions, ...]) -> None:
    text = BASE.replace("topics: [orders]", f"topics: {topics}").replace("    consumer_group: g\n", "")
    loaded = ok(text)
    assert loaded.kafka.explicit == expected
    assert loaded.kafka.topics == ()
    assert loaded.kafka.group == ""


def test_defaults() -> None:
    loaded = ok(BASE)
    out = loaded.output
    assert out.max_in_flight == 1024
    assert out.max_reconnects is None
    assert out.headers == {}
    assert out.metadata.include_prefixes == ()
    assert out.metadata.include_patterns == ()
    assert out.tls.enabled is False
    assert loaded.kafka.commit_period == 5.0
    assert loaded.kafka.checkpoint_limit == 1024
    assert loaded.kafka.client_id == "benthos"
    assert loaded.kafka.start_offset == "earliest"
    assert loaded.kafka.isolation_level == "read_uncommitted"
    assert loaded.kafka.sasl is None
    assert loaded.config.input.label == ""
    assert loaded.config.output.label == ""
    assert loaded.config.shutdown_timeout == 20.0
    bridge = loaded.config.bridge
    assert bridge.ack_timeout == 10.0
    assert bridge.dead_letter is None
    assert bridge.max_control_line == 4096  # nats-server's default
    assert bridge.msg_id is None  # the built-in record identity (bridge.core.routing.record_id)
    assert loaded.templates.msg_id is None
    assert loaded.templates.record_id is True
    assert loaded.templates.headers == ()
    assert loaded.templates.dead_letter_subject is None


def test_start_from_oldest_false_means_latest() -> None:
    loaded = ok(BASE.replace("consumer_group: g", "consumer_group: g\n    start_from_oldest: false"))
    assert loaded.kafka.start_offset == "latest"


def test_start_offset_committed_is_kept() -> None:
    loaded = ok(BASE.replace("consumer_group: g", "consumer_group: g\n    start_offset: committed"))
    assert loaded.kafka.start_offset == "committed"


def test_labels() -> None:
    text = BASE.replace("input:\n", "input:\n  label: kafka_in\n").replace(
        "output:\n", "output:\n  label: bridge-local\n"
    )
    loaded = ok(text)
    assert loaded.config.input.label == "kafka_in"
    assert loaded.config.output.label == "bridge-local"


def test_durations_and_sizes_in_fields() -> None:
    loaded = ok(
        """\
input:
  kafka_franz:
    seed_brokers: [k]
    topics: [t]
    consumer_group: g
    commit_period: 250ms
    session_timeout: 1m30s
    fetch_max_bytes: 1MiB
    fetch_max_partition_bytes: 50MB
    fetch_min_bytes: 1B
    checkpoint_limit: 10
output:
  nats_jetstream:
    urls: [n]
    subject: s
shutdown_timeout: 5s
"""
    )
    assert loaded.kafka.commit_period == pytest.approx(0.25)
    assert loaded.kafka.session_timeout == 90.0
    assert loaded.kafka.fetch_max_bytes == 1024 * 1024
    assert loaded.kafka.fetch_max_partition_bytes == 50_000_000
    assert loaded.kafka.fetch_min_bytes == 1
    assert loaded.kafka.checkpoint_limit == 10
    assert loaded.config.shutdown_timeout == 5.0


def test_bridge_section() -> None:
    loaded = ok(
        BASE
        + """\
bridge:
  msg_id: ${! meta("kafka_key") }
  ack_timeout: 5s
  retry_timeout: 1m30s
  revoke_timeout: 250ms
  max_control_line: 8192
  dead_letter:
    subject: dlq.${! meta("kafka_topic") }
"""
    )
    bridge = loaded.config.bridge
    assert bridge.max_control_line == 8192
    assert bridge.ack_timeout == 5.0
    assert bridge.retry_timeout == 90.0
    assert bridge.revoke_timeout == pytest.approx(0.25)
    assert loaded.templates.msg_id is not None
    assert loaded.templates.msg_id.source == '${! meta("kafka_key") }'
    assert loaded.templates.dead_letter_subject is not None
    assert loaded.templates.dead_letter_subject.source == 'dlq.${! meta("kafka_topic") }'


def test_empty_msg_id_disables_it() -> None:
    loaded = ok(BASE + 'bridge:\n  msg_id: ""\n')
    assert loaded.templates.msg_id is None


def test_headers_and_metadata_fields() -> None:
    loaded = ok(
        BASE
        + """\
    headers:
      Content-Type: application/json
      X-Key: ${! meta("kafka_key") }
    metadata:
      include_prefixes: [kafka_, app_]
      include_patterns: ['_timestamp_unix$']
    max_in_flight: 64
    max_reconnects: 3
"""
    )
    out = loaded.output
    assert out.headers == {"Content-Type": "application/json", "X-Key": '${! meta("kafka_key") }'}
    assert [name for name, _ in loaded.templates.headers] == ["Content-Type", "X-Key"]
    assert [t.is_static for _, t in loaded.templates.headers] == [True, False]
    assert out.metadata.include_prefixes == ("kafka_", "app_")
    assert out.metadata.include_patterns == ("_timestamp_unix$",)
    assert out.max_in_flight == 64
    assert out.max_reconnects == 3


def test_config_tree_is_frozen() -> None:
    loaded = ok(BASE)
    with pytest.raises(ValueError, match="frozen"):
        loaded.output.max_in_flight = 1


def test_defaults_in_env_substitution_reach_the_tree() -> None:
    text = BASE.replace("[k1:9092]", '["${BROKERS:127.0.0.1:9092}"]')
    assert ok(text).kafka.brokers == ("127.0.0.1:9092",)
    assert ok(text, {"BROKERS": "a:1,b:2"}).kafka.brokers == ("a:1", "b:2")


# --------------------------------------------------------------------------- invalid configs


def test_invalid_yaml_reports_the_line_of_the_syntax_error() -> None:
    found = problems(
        """\
input:
  kafka_franz:
    seed_brokers: [k]
    topics: [t]
   consumer_group: g
output:
  nats_jetstream: {}
"""
    )
    assert len(found) == 1
    assert found[0].path == ""
    assert found[0].line == 5
    assert found[0].message.startswith("invalid YAML")


def test_invalid_yaml_unclosed_flow_sequence() -> None:
    found = problems('input:\n  kafka_franz:\n    seed_brokers: [k\n    topics: ["t"]\nfoo: bar\n')
    assert len(found) == 1
    assert found[0].message.startswith("invalid YAML")
    assert found[0].line >= 3


@pytest.mark.parametrize(
    ("text", "path", "line", "message"),
    [
        pytest.param(
            BASE.replace("    subject:", "    subjekt:"),
            "output.nats_jetstream.subjekt",
            9,
            "unknown field",
            id="unknown-output-field",
        ),
        pytest.param(
            BASE.replace("consumer_group: g", "consumer_group: g\n    max_in_flight: 5"),
            "input.kafka_franz.max_in_flight",
            6,
            "unknown field",
            id="unknown-input-field",
        ),
        pytest.param(
            BASE + "    max_in_flight: lots\n",
            "output.nats_jetstream.max_in_flight",
            10,
            "expected a whole number (got 'lots')",
            id="wrong-type-int",
        ),
        pytest.param(
            BASE + "    max_in_flight: 0\n",
            "output.nats_jetstream.max_in_flight",
            10,
            "must be at least 1 (got 0)",
            id="max-in-flight-zero",
        ),
        pytest.param(
            BASE.replace("urls: [nats://n1:4222]", "urls: 5"),
            "output.nats_jetstream.urls",
            8,
            "(got 5)",
            id="wrong-type-urls",
        ),
        pytest.param(
            BASE.replace("urls: [nats://n1:4222]", "urls: []"),
            "output.nats_jetstream",
            7,
            "at least one NATS server URL",
            id="empty-urls",
        ),
        pytest.param(
            BASE.replace('    subject: kafka.${! meta("kafka_topic") }\n', ""),
            "output.nats_jetstream.subject",
            7,  # the line of the section that lacks it
            "required field is missing",
            id="missing-subject",
        ),
        pytest.param(
            BASE + "logger:\n  level: LOUD\n",
            "logger.level",
            11,
            "(got 'LOUD')",
            id="bad-literal",
        ),
        pytest.param(
            BASE.replace("consumer_group: g", "consumer_group: g\n    commit_period: soon"),
            "input.kafka_franz.commit_period",
            6,
            "invalid duration 'soon'",
            id="bad-duration",
        ),
        pytest.param(
            BASE.replace("consumer_group: g", "consumer_group: g\n    fetch_max_bytes: 1 PiB"),
            "input.kafka_franz.fetch_max_bytes",
            6,
            "invalid byte size",
            id="bad-size",
        ),
        pytest.param(
            BASE.replace("consumer_group: g", "consumer_group: h\n    consumer_group: g"),
            "input.kafka_franz.consumer_group",
            6,
            "duplicate key",
            id="duplicate-key",
        ),
        pytest.param(
            BASE.replace("input:\n  kafka_franz:", "input:\n  amqp_0_9:"),
            "input.amqp_0_9",
            2,
            "input type 'amqp_0_9' is not implemented",
            id="unknown-input-type",
        ),
        pytest.param(
            BASE.replace("output:\n  nats_jetstream:", "output:\n  http_client:"),
            "output.http_client",
            7,
            "output type 'http_client' is not implemented",
            id="unknown-output-type",
        ),
        pytest.param(
            BASE + "pipeline:\n  processors:\n    - mapping: root = this\n",
            "pipeline",
            10,
            "pipeline processors are not implemented",
            id="pipeline-processors",
        ),
        pytest.param(
            BASE.replace("input:\n", "input:\n  processors: [{mapping: root = this}]\n"),
            "input",
            1,
            "input processors are not implemented",
            id="input-processors",
        ),
        pytest.param(
            BASE + "input_resources: [{label: r, generate: {mapping: root = 1}}]\n",
            "input_resources",
            10,
            "resources are not implemented",
            id="resources",
        ),
        pytest.param(
            BASE.replace("    consumer_group: g\n", ""),
            "input.kafka_franz",
            2,
            "consumer group is mandatory",
            id="no-consumer-group",
        ),
        pytest.param(
            BASE.replace("topics: [orders]", "topics: [orders:0]"),
            "input.kafka_franz",
            2,
            "both a consumer group and explicit topic partitions",
            id="group-with-explicit-partitions",
        ),
        pytest.param(
            BASE.replace("topics: [orders]", "topics: [orders:0, payments]").replace(
                "    consumer_group: g\n", ""
            ),
            "input.kafka_franz",
            2,
            "mix of explicit partitions and plain topics",
            id="explicit-mixed-with-plain",
        ),
        pytest.param(
            BASE.replace("topics: [orders]", "topics: [orders:3-1]").replace("    consumer_group: g\n", ""),
            "input.kafka_franz",
            2,
            "invalid partition range",
            id="reversed-range",
        ),
        pytest.param(
            BASE.replace("topics: [orders]", "topics: []"),
            "input.kafka_franz",
            2,
            "at least one topic",
            id="no-topics",
        ),
        pytest.param(
            BASE.replace(
                "consumer_group: g",
                "consumer_group: g\n    start_from_oldest: false\n    start_offset: earliest",
            ),
            "input.kafka_franz",
            2,
            "start_from_oldest cannot be set to false",
            id="start-from-oldest-contradiction",
        ),
        pytest.param(
            BASE.replace('kafka.${! meta("kafka_topic") }', 'kafka.${! meta("kafka_topic" }'),
            "output.nats_jetstream.subject",
            9,
            "unexpected '}'",
            id="bad-subject-template",
        ),
        pytest.param(
            BASE + "    headers:\n      Content-Type: application/json\n      X: ${! nope( }\n",
            "output.nats_jetstream.headers.X",
            12,
            "at column",
            id="bad-header-template",
        ),
        pytest.param(
            BASE + "bridge:\n  msg_id: ${! meta( }\n",
            "bridge.msg_id",
            11,
            "at column",
            id="bad-msg-id-template",
        ),
        pytest.param(
            BASE + "bridge:\n  dead_letter:\n    subject: dlq.${! }\n",
            "bridge.dead_letter.subject",
            12,
            "at column",
            id="bad-dead-letter-template",
        ),
        pytest.param(
            BASE + "bridge:\n  ack_timeout: 0s\n",
            "bridge",
            10,
            "ack_timeout must be above zero",
            id="zero-ack-timeout",
        ),
        pytest.param(
            BASE + "bridge:\n  max_control_line: 100\n",
            "bridge.max_control_line",
            11,
            "must be at least 256",
            id="max-control-line-too-small",
        ),
        pytest.param(
            BASE + "bridge:\n  max_control_line: 4GB\n",
            "bridge.max_control_line",
            11,
            "must be at most 2147483647",
            id="max-control-line-too-large",
        ),
        pytest.param(
            BASE + "    metadata:\n      include_patterns: ['ok', '(']\n",
            "output.nats_jetstream.metadata.include_patterns[1]",
            11,
            "invalid regular expression",
            id="bad-regex",
        ),
        pytest.param(
            BASE + "    auth:\n      token: t\n      nkey: n\n",
            "output.nats_jetstream.auth",
            10,
            "one authentication method, not 2: nkey, token",
            id="two-auth-methods",
        ),
        pytest.param(
            BASE + "    auth:\n      user: u\n",
            "output.nats_jetstream.auth",
            10,
            "user and password must be given together",
            id="user-without-password",
        ),
        pytest.param(
            BASE + "    auth:\n      user_nkey_seed: s\n",
            "output.nats_jetstream.auth",
            10,
            "user_jwt and user_nkey_seed must be given together",
            id="seed-without-jwt",
        ),
        pytest.param(
            BASE
            + "    tls:\n      enabled: true\n      client_certs:\n"
            + "        - cert: c\n          key: k\n          cert_file: c.pem\n          key_file: k.pem\n",
            "output.nats_jetstream.tls.client_certs[0]",
            13,
            "either cert and key, or cert_file and key_file, not both",
            id="client-cert-both-forms",
        ),
        pytest.param(
            BASE + "    tls:\n      client_certs:\n        - cert_file: c.pem\n",
            "output.nats_jetstream.tls.client_certs[0]",
            12,
            "cert_file and key_file must be given together",
            id="client-cert-half-file-pair",
        ),
        pytest.param(
            BASE + "    tls:\n      client_certs:\n        - cert: c\n          bogus: 1\n",
            "output.nats_jetstream.tls.client_certs[0].bogus",
            13,
            "unknown field",
            id="unknown-field-in-list-item",
        ),
        pytest.param(
            BASE + "    inject_tracing_map: meta = @\n",
            "output.nats_jetstream.inject_tracing_map",
            10,
            "not implemented",
            id="tracing-map",
        ),
    ],
)
def test_invalid(text: str, path: str, line: int, message: str) -> None:
    found = problems(text)
    matching = [p for p in found if p.path == path]
    assert matching, f"no problem at {path!r}; got {where(found)}"
    assert matching[0].line == line, found
    assert message in matching[0].message, found


def test_unknown_field_is_the_only_output_problem_for_a_typo() -> None:
    found = problems(BASE.replace("    subject:", "    subjekt:"))
    # the typo also leaves `subject` missing: "did you mean" says so, no second problem
    assert where(found) == [("output.nats_jetstream.subjekt", 9)]
    assert found[0].message == "unknown field (did you mean subject?)"


@pytest.mark.parametrize(
    ("text", "path", "line", "message"),
    [
        (BASE.replace("consumer_group", "consumer_grup"), "input.kafka_franz.consumer_grup", 5,
         "unknown field (did you mean consumer_group?)"),
        (BASE.replace("kafka_franz:", "kafka_franzz:"), "input.kafka_franzz", 2,
         "input type 'kafka_franzz' is not implemented by this bridge (supported: redpanda, kafka_franz, kafka)"
         " (did you mean kafka_franz?)"),
        (BASE.replace("output:", "ouput:"), "ouput", 6, "unknown field (did you mean output?)"),
        (BASE + "logger:\n  levle: DEBUG\n", "logger.levle", 11, "unknown field (did you mean level?)"),
        (BASE + "tracer:\n  nnoe: {}\n", "tracer.nnoe", 11,
         "tracer type 'nnoe' is not implemented by this bridge (did you mean none?)"),
        (BASE + "    tls:\n      enabeld: true\n", "output.nats_jetstream.tls.enabeld", 11,
         "unknown field (did you mean enabled?)"),
    ],
)  # fmt: skip
def test_did_you_mean(text: str, path: str, line: int, message: str) -> None:
    found = problems(text)
    assert [(p.path, p.line, p.message) for p in found] == [(path, line, message)]


def test_nothing_close_is_no_suggestion() -> None:
    found = problems(BASE + "    zzzqqq: 1\n")
    assert [p.message for p in found] == ["unknown field"]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (BASE.replace("    subject:", "    batching: {count: 10}\n    subject:"), "output.nats_jetstream.batching"),
        (BASE.replace("output:\n", "output:\n  batching: {count: 10}\n"), "output.batching"),
    ],
)  # fmt: skip
def test_batching_is_explained(text: str, path: str) -> None:
    found = problems(text)
    assert [p.path for p in found] == [path]
    assert "max_in_flight" in found[0].message
    assert "batching is not implemented" in found[0].message


def test_processors_are_explained() -> None:
    found = problems(BASE + "pipeline:\n  processors: [{mapping: root = this}]\n")
    assert [p.path for p in found] == ["pipeline"]
    assert "records are copied as they are" in found[0].message
    assert "interpolations" in found[0].message


def test_problems_are_sorted_by_line() -> None:
    text = (
        BASE.replace("consumer_group: g", "consumer_group: g\n    commit_perod: 1s")
        + "    bogus: 1\n    headers: {X: '${UNSET_LATE}'}\nlogger:\n  level: LOUD\n"
    )
    found = problems(text)
    assert [p.line for p in found] == [6, 11, 12, 14]


def test_unknown_input_type_alone_is_reported_once() -> None:
    found = problems(BASE.replace("input:\n  kafka_franz:", "input:\n  amqp_0_9:"))
    assert where(found) == [("input.amqp_0_9", 2)]
    assert "amqp_0_9" in found[0].message
    assert "redpanda, kafka_franz, kafka" in found[0].message


def test_two_input_types() -> None:
    text = BASE.replace(
        "output:", "  redpanda:\n    seed_brokers: [k]\n    topics: [t]\n    consumer_group: g\noutput:"
    )
    found = problems(text)
    assert where(found) == [("input", 1)]
    assert "found redpanda, kafka_franz" in found[0].message


def test_unset_env_var_without_default() -> None:
    text = BASE.replace("consumer_group: g", 'consumer_group: "${GROUP}"')
    found = problems(text)
    assert where(found) == [("input.kafka_franz.consumer_group", 5)]
    assert "GROUP" in found[0].message
    assert ok(text, {"GROUP": "from-env"}).kafka.group == "from-env"


def test_unset_env_var_is_the_only_problem_of_its_field() -> None:
    """Unquoted, the emptied value is YAML null, and empty the group is missing: neither follows."""
    found = problems(BASE.replace("consumer_group: g", "consumer_group: ${GROUP}"))
    assert where(found) == [("input.kafka_franz.consumer_group", 5)]
    assert found[0].message == "environment variable GROUP is not set and has no default (${GROUP:default})"


def test_unset_env_vars_at_their_fields_other_problems_kept() -> None:
    text = (
        BASE.replace("[k1:9092]", "[${BROKER}]").replace("nats://n1:4222", "${NATS_URL}") + "    bogus: 1\n"
    )
    found = problems(text)
    assert where(found) == [
        ("input.kafka_franz.seed_brokers[0]", 3),
        ("output.nats_jetstream.urls[0]", 8),
        ("output.nats_jetstream.bogus", 10),
    ]


def test_skip_env_check_leaves_unset_variables_empty() -> None:
    text = BASE.replace("consumer_group: g", 'consumer_group: "g${SUFFIX}"')
    loaded = parse(text, environ={}, skip_env_check=True)
    assert loaded.kafka.group == "g"


def test_unsupported_buffer_has_its_path_and_line() -> None:
    found = problems(BASE + "buffer:\n  memory: {}\n")
    assert where(found) == [("buffer.memory", 11)]
    assert "buffer type 'memory' is not implemented" in found[0].message


def test_an_unknown_tracer_is_reported() -> None:
    found = problems(BASE + "tracer:\n  zipkin: {}\n")
    assert [p.message for p in found] == ["tracer type 'zipkin' is not implemented by this bridge"]


def test_unset_env_var_is_reported_with_invalid_yaml() -> None:
    found = problems("a: ${MISSING}\nb: [\n")
    assert found[0] == Problem(
        "", 1, "environment variable MISSING is not set and has no default (${MISSING:default})"
    )
    assert found[1].message.startswith("invalid YAML")


def test_top_level_must_be_a_mapping() -> None:
    found = problems("- a\n- b\n")
    assert where(found) == [("", 1)]
    assert "mapping" in found[0].message


def test_empty_document_names_both_missing_sections() -> None:
    found = problems("")
    assert sorted(p.path for p in found) == ["input", "output"]
    assert all(p.message == "required field is missing" for p in found)


def test_several_problems_are_all_reported() -> None:
    text = """\
input:
  kafka_franz:
    seed_brokers: [k]
    topics: [t]
    consumer_group: g
    commit_perod: 1s
output:
  nats_jetstream:
    urls: [n]
    subject: s
    max_in_flight: lots
    auth:
      user: u
logger:
  level: LOUD
"""
    found = problems(text)
    assert sorted(where(found)) == [
        ("input.kafka_franz.commit_perod", 6),
        ("logger.level", 15),
        ("output.nats_jetstream.auth", 12),
        ("output.nats_jetstream.max_in_flight", 11),
    ]


def test_several_late_problems_are_all_reported() -> None:
    """Problems found after the model validated (input normalization, templates, regexes) together."""
    text = """\
input:
  kafka_franz:
    seed_brokers: [k]
    topics: [t]
output:
  nats_jetstream:
    urls: [n]
    subject: ${! meta( }
    headers:
      A: ok
      B: ${! oops( }
    metadata:
      include_patterns: ['[']
bridge:
  msg_id: ${! }
"""
    found = problems(text)
    assert sorted(where(found)) == [
        ("bridge.msg_id", 15),
        ("input.kafka_franz", 2),
        ("output.nats_jetstream.headers.B", 11),
        ("output.nats_jetstream.metadata.include_patterns[0]", 13),
        ("output.nats_jetstream.subject", 8),
    ]


def test_config_error_message_lists_every_problem_with_source() -> None:
    with pytest.raises(ConfigError) as info:
        parse(BASE + "    max_in_flight: lots\n    bogus: 1\n", source="pipe.yaml", environ={})
    text = str(info.value)
    assert text.startswith("pipe.yaml: ")
    assert "line 10: output.nats_jetstream.max_in_flight" in text
    assert "line 11: output.nats_jetstream.bogus: unknown field" in text
    assert info.value.source == "pipe.yaml"


def test_invalid_configured_header_name_is_a_config_problem() -> None:
    found = problems(BASE + "    headers:\n      Bad Name: x\n")
    assert where(found) == [("output.nats_jetstream.headers.Bad Name", 11)]


# --------------------------------------------------------------------------- env substitution


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("a: ${VAR}", {"VAR": "x"}, "a: x"),
        ("a: ${VAR:def}", {}, "a: def"),
        ("a: ${VAR:def}", {"VAR": "set"}, "a: set"),
        ("a: ${VAR:def}", {"VAR": ""}, "a: def"),  # set but empty: the default, as Redpanda Connect
        ("a: ${VAR}", {"VAR": ""}, "a: "),  # set but empty, no default: empty, not a problem
        ("a: ${VAR:}", {}, "a: "),  # an empty default is a default
        ("a: ${VAR:127.0.0.1:9092}", {}, "a: 127.0.0.1:9092"),  # colons in the default
        ("a: ${VAR:x y}", {}, "a: x y"),
        ('s: ${! meta("x") }', {}, 's: ${! meta("x") }'),
        ('s: ${!meta("x")}', {"meta": "no"}, 's: ${!meta("x")}'),
        ('s: ${{! meta("x") }}', {}, 's: ${{! meta("x") }}'),
        ('s: ${A}.${B:b}.${C}-${! meta("k") }', {"A": "a", "C": "c"}, 's: a.b.c-${! meta("k") }'),
        ("a: $VAR", {"VAR": "x"}, "a: $VAR"),  # only the braced form
        ("a: ${_X1}", {"_X1": "ok"}, "a: ok"),
        ("a: ${1X}", {"1X": "no"}, "a: ${1X}"),  # not a variable name
    ],
)
def test_substitute_env(text: str, environ: dict[str, str], expected: str) -> None:
    out, found = substitute_env(text, environ)
    assert out == expected
    assert found == []


def test_substitute_env_reports_each_unset_variable_with_its_line() -> None:
    text = "a: ${ONE}\nb: ok\nc: ${TWO} ${THREE:d} ${FOUR}\n"
    out, found = substitute_env(text, {})
    assert out == "a: \nb: ok\nc:  d \n"
    assert [(p.line, p.path) for p in found] == [(1, ""), (3, ""), (3, "")]
    assert ["ONE" in found[0].message, "TWO" in found[1].message, "FOUR" in found[2].message] == [True] * 3


def test_substitute_env_value_is_inserted_verbatim() -> None:
    """Substitution is textual, before YAML parsing (as in Redpanda Connect)."""
    value = "a: b # c, [d] {e} *f &g !h"
    out, found = substitute_env('subject: "${S}"', {"S": value})
    assert found == []
    assert out == f'subject: "{value}"'


def test_yaml_special_characters_survive_in_a_quoted_field() -> None:
    text = BASE.replace("consumer_group: g", 'consumer_group: "${GROUP}"')
    value = "grp: #1, [x] {y} *z &w !v |u >t"
    assert ok(text, {"GROUP": value}).kafka.group == value


def test_env_default_with_yaml_special_characters() -> None:
    text = BASE.replace("consumer_group: g", 'consumer_group: "${GROUP:a: b # c}"')
    assert ok(text).kafka.group == "a: b # c"


def test_env_value_in_template_is_compiled() -> None:
    text = BASE.replace(
        'subject: kafka.${! meta("kafka_topic") }', 'subject: ${PREFIX}.${! meta("kafka_topic") }'
    )
    loaded = ok(text, {"PREFIX": "events"})
    assert loaded.templates.subject.source == 'events.${! meta("kafka_topic") }'


def test_env_value_with_newline_cannot_inject_yaml() -> None:
    out, _ = substitute_env('a: "${V}"\nb: 1\n', {"V": "x\ny"})
    assert out == 'a: "x\\ny"\nb: 1\n'


# --------------------------------------------------------------------------- scalar parsers


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5s", 5.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1h", 3600.0),
        ("1h2m3.5s", 3723.5),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("100us", 1e-4),
        ("100µs", 1e-4),
        ("10ns", 1e-8),
        (" 5s ", 5.0),
        ("0", 0.0),
        ("0s", 0.0),
        (5, 5.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["5", "5 s", "1d", "s", "5s5", "-1s", "1m 30s", "abc", "5S", True, None, [1], {"s": 5}],
)
def test_parse_duration_errors(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize("value", ["9" * 400 + "s", "2562048h", 10**400, 1e300, float("inf"), float("nan")])
def test_parse_duration_out_of_range(value: object) -> None:
    """Longer than Go's largest duration (int64 nanoseconds): refused, as Redpanda Connect does, and
    never an infinite or OverflowError-raising number of seconds."""
    with pytest.raises(ValueError, match="out of range"):
        parse_duration(value)


def test_the_longest_duration() -> None:
    assert parse_duration("2562047h47m16s") == pytest.approx(9223372036.0)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("1B", 1),
        ("1b", 1),
        ("1", 1),
        ("1KB", 1000),
        ("1K", 1000),
        ("1kb", 1000),
        ("1KiB", 1024),
        ("1.5KiB", 1536),
        ("32KiB", 32 * 1024),
        ("1MiB", 1024 * 1024),
        ("1Mi", 1024 * 1024),
        ("50MB", 50_000_000),
        (" 2 MB ", 2_000_000),
        ("1GiB", 1024**3),
        ("1GB", 10**9),
        ("1TB", 10**12),
        (1024, 1024),
        (0, 0),
    ],
)
def test_parse_size(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["", "MB", "1e3", "-1", "1PB", "1 KiBB", "one", True, 1.5, None, ["1B"]])
def test_parse_size_errors(value: object) -> None:
    with pytest.raises(ValueError, match="byte size"):
        parse_size(value)


@pytest.mark.parametrize("value", ["9" * 400, "20000000TiB", "18446744073709551616"])
def test_parse_size_too_large(value: str) -> None:
    """Past an unsigned 64-bit number, as go-humanize says: not an OverflowError."""
    with pytest.raises(ValueError, match="too large"):
        parse_size(value)


# --------------------------------------------------------------------------- load()


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(BASE, encoding="utf-8")
    loaded = load(path, environ={})
    assert loaded.source == str(path)
    assert loaded.kafka.topics == ("orders",)


def test_load_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert not isinstance(info.value, OSError)
    assert info.value.source == str(path)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].line == 0
    assert "cannot read config file" in info.value.problems[0].message


def test_load_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path, environ={})


def test_load_reports_problems_with_the_file_as_source(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BASE + "    bogus: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(str(path), environ={})
    assert info.value.source == str(path)
    assert where(info.value.problems) == [("output.nats_jetstream.bogus", 10)]


def test_load_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(BASE.replace("consumer_group: g", "consumer_group: caf\xe9").encode("latin-1"))
    with pytest.raises(ConfigError):
        load(path, environ={})
