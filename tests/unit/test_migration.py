"""The pure parts of provisioning, verify and translate: the ``bridge.stream`` section and its lint
warning, subjects and stream updates, verify's projection (checked against the real router), the
comparison, and translate's decision per partition."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from bridge import cli
from bridge.core.config import Loaded, parse
from bridge.core.errors import ConfigError, StreamError, VerifyError
from bridge.core.message import Message
from bridge.core.routing import Router
from bridge.jetstream.streams import NS, desired_config, planned_update, subject_matches, subjects_for
from bridge.migrate.compare import compare, ranges
from bridge.migrate.projection import Projection, checksum
from bridge.migrate.translate import land

BASE = """\
input:
  kafka_franz:
    seed_brokers: [k1:9092]
    topics: [orders]
    consumer_group: g
    commit_period: 5s
output:
  nats_jetstream:
    urls: [nats://n1:4222]
    subject: SUBJECT
"""


def load(extra: str = "", subject: str = 'kafka.${! meta("kafka_topic") }') -> Loaded:
    return parse(BASE.replace("SUBJECT", subject) + textwrap.dedent(extra), source="t.yaml", environ={})


# ------------------------------------------------------------------------------------ config


def test_stream_section_defaults_and_fields() -> None:
    stream = load(
        "bridge:\n  stream:\n    name: ORDERS\n    max_bytes: 1GiB\n    max_age: 24h\n"
    ).config.bridge.stream
    assert stream is not None
    assert (stream.name, stream.storage, stream.replicas, stream.duplicate_window) == (
        "ORDERS",
        "file",
        1,
        120.0,
    )
    assert (stream.max_bytes, stream.max_age, stream.max_msgs, stream.ensure) == (1024**3, 86400.0, -1, True)
    assert stream.model_fields_set == {"name", "max_bytes", "max_age"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("name: a.b", "invalid stream name"),
        (
            "name: S\n    duplicate_window: 2h\n    max_age: 1h",
            "duplicate_window cannot be longer than max_age",
        ),
        ("name: S\n    replicas: 7", "must be at most 5"),
        ("name: S\n    storage: disk", "'file' or 'memory'"),
        ("name: S\n    subjects: ['a..b']", "invalid subject"),
        ("name: S\n    max_msgs: -2", "must be at least -1"),
        ("name: S\n    sealed: true", "unknown field"),
    ],
)
def test_stream_section_problems(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(f"bridge:\n  stream:\n    {body}\n")
    assert any(message in p.message and p.path.startswith("bridge.stream") for p in info.value.problems), (
        info.value.problems
    )


def test_short_duplicate_window_is_a_warning_with_its_line() -> None:
    loaded = load("shutdown_timeout: 20s\nbridge:\n  stream:\n    name: S\n    duplicate_window: 10s\n")
    (warning,) = loaded.warnings
    assert (warning.path, warning.line) == ("bridge.stream.duplicate_window", 15)
    assert "shorter than commit_period plus shutdown_timeout (25s)" in warning.message
    assert not load("bridge:\n  stream:\n    name: S\n    duplicate_window: 25s\n").warnings
    assert not load().warnings  # no stream described: nothing to compare


def test_discard_new_with_a_limit_is_a_warning_with_its_line() -> None:
    """README, "Order per partition": a full discard-new stream refuses a record alone while smaller ones
    behind it are stored (tests/integration/test_bad_records.py shows it on real servers)."""
    loaded = load("bridge:\n  stream:\n    name: S\n    discard: new\n    max_bytes: 1GiB\n    max_msgs: 5\n")
    (warning,) = loaded.warnings
    assert (warning.path, warning.line) == ("bridge.stream.discard", 14)
    assert warning.message.startswith(
        "discard: new with max_bytes and max_msgs: once full, the stream refuses"
    )
    assert not load("bridge:\n  stream:\n    name: S\n    discard: new\n").warnings  # no limit: never full
    assert not load("bridge:\n  stream:\n    name: S\n    max_bytes: 1GiB\n").warnings  # discard: old


def test_lint_prints_warnings_and_still_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        BASE.replace("SUBJECT", "s") + "bridge:\n  stream:\n    name: S\n    duplicate_window: 1s\n"
    )
    assert cli.main(["lint", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}:14: bridge.stream.duplicate_window: warning: duplicate_window (1s)")
    assert out[1] == f"{path}: ok"


# ------------------------------------------------------------------------------------ streams


@pytest.mark.parametrize(
    ("subject", "dead", "expected"),
    [
        ('kafka.${! meta("kafka_topic") }', None, ("kafka.>",)),
        ('kafka.${! meta("kafka_topic") }.${! meta("kafka_partition") }', None, ("kafka.>",)),
        ('a.b.orders-${! meta("kafka_partition") }', None, ("a.b.>",)),
        ("fixed.subject", None, ("fixed.subject",)),
        ('kafka.${! meta("kafka_topic") }', "kafka.dlq", ("kafka.>",)),  # covered: not repeated
        ('kafka.${! meta("kafka_topic") }', "dead.letters", ("kafka.>", "dead.letters")),
    ],
)
def test_subjects_derived_from_the_output(subject: str, dead: str | None, expected: tuple[str, ...]) -> None:
    extra = "bridge:\n  stream:\n    name: S\n" + (f"  dead_letter:\n    subject: {dead}\n" if dead else "")
    assert subjects_for(load(extra, subject)) == expected


def test_subjects_that_cannot_be_derived() -> None:
    with pytest.raises(StreamError, match=r"set bridge.stream.subjects"):
        subjects_for(load("bridge:\n  stream:\n    name: S\n", '${! meta("kafka_topic") }.x'))
    explicit = load("bridge:\n  stream:\n    name: S\n    subjects: [x.>]\n", '${! meta("kafka_topic") }.x')
    assert subjects_for(explicit) == ("x.>",)


@pytest.mark.parametrize(
    ("pattern", "subject", "match"),
    [("a.>", "a.b", True), ("a.>", "a", False), ("a.*", "a.b", True), ("a.*", "a.b.c", False),
     ("a.b", "a.b", True), ("*.>", "x.y.z", True), ("a.b", "a.c", False)],
)  # fmt: skip
def test_subject_matches(pattern: str, subject: str, match: bool) -> None:
    assert subject_matches(pattern, subject) is match


def test_create_sends_every_field_and_update_only_the_written_ones() -> None:
    loaded = load("bridge:\n  stream:\n    name: S\n    duplicate_window: 10m\n    max_msgs: 100\n")
    section = loaded.config.bridge.stream
    assert section is not None
    created = desired_config(section, ("kafka.>",))
    assert created["duplicate_window"] == 600 * NS
    assert (created["max_age"], created["max_bytes"], created["num_replicas"]) == (0, -1, 1)
    assert (created["storage"], created["retention"], created["allow_direct"]) == ("file", "limits", True)
    assert "description" not in created

    current = {**created, "subjects": ["kafka.orders.>", "audit.>"], "duplicate_window": 120 * NS,
               "max_msgs": 100, "max_age": 3600 * NS, "max_bytes": 5000}  # fmt: skip
    updated, changes = planned_update(section, ("kafka.>",), current)
    assert changes == ['subjects: ["kafka.orders.>", "audit.>"] → ["kafka.orders.>", "audit.>", "kafka.>"]',
                       "duplicate_window: 120s → 600s"]  # fmt: skip
    assert (updated["max_age"], updated["max_bytes"]) == (3600 * NS, 5000)  # not written: left alone
    assert planned_update(section, ("kafka.>",), updated)[1] == []


@pytest.mark.parametrize(
    ("written", "current", "change"),
    [
        ("max_bytes: 10MiB", -1, "max_bytes: -1 (no limit) → 10485760 (10 MiB)"),
        ("max_bytes: -1", 1536, "max_bytes: 1536 (1.5 KiB) → -1 (no limit)"),
        ("max_msg_size: 1GiB", 512, "max_msg_size: 512 → 1073741824 (1 GiB)"),
        ("max_msgs: 100", -1, "max_msgs: -1 (no limit) → 100"),
        ("max_msgs_per_subject: -1", 7, "max_msgs_per_subject: 7 → -1 (no limit)"),
    ],
)
def test_streams_ensure_shows_limits_in_their_units(written: str, current: int, change: str) -> None:
    """``streams ensure`` reports a size change with its unit and -1 as what it means."""
    loaded = load(f"bridge:\n  stream:\n    name: S\n    {written}\n")
    section = loaded.config.bridge.stream
    assert section is not None
    field = written.split(":")[0]
    have = {**desired_config(section, ("kafka.>",)), field: current}
    assert planned_update(section, ("kafka.>",), have)[1] == [change]


# ------------------------------------------------------------------------------------ verify


def parse_tail(tail: bytes) -> tuple[dict[str, str], bytes]:
    """The header dict nats-py would hand out for an envelope, and its payload."""
    sizes, _, rest = tail.lstrip(b" ").partition(b"\r\n")
    hlen, total = (int(x) for x in sizes.split())
    block, payload = rest[:hlen], rest[hlen:total]
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().decode()] = value.strip().decode("utf-8", "replace")
    return headers, payload


METADATA_CONFIG = """\
    headers:
      Content-Type: text/plain
      trace: '${! meta("trace") }'
    metadata:
      include_prefixes: [kafka_, x-]
      include_patterns: ['^Nats-', '^trace$']
"""
RECORDS = [
    (b"k1", b"v1", [("x-a", b"1"), ("x-b", b"two\r\nlines"), ("other", b"not sent")]),
    (None, None, [("x-a", b"\xff\xfe"), ("x-a", b"last wins")]),  # tombstone, no key
    (b"key with space", b"", [("Nats-Expected-Stream", b"X"), ("trace", b"abc")]),  # renamed, shadowed
    (b"k4", b"\x00binary\x01", []),
]


@pytest.mark.parametrize("mode", ["metadata", "msg_id"])
def test_projection_digests_what_the_router_sends(mode: str) -> None:
    output = METADATA_CONFIG if mode == "metadata" else "    headers:\n      Content-Type: text/plain\n"
    loaded = parse(BASE.replace("SUBJECT", "s") + output, source="t.yaml", environ={})
    projection = Projection.from_loaded(loaded)
    assert projection.by_metadata is (mode == "metadata")
    assert projection.compares_key is (mode == "metadata")
    router = Router(loaded.templates, loaded.output.metadata)
    for offset, (key, value, headers) in enumerate(RECORDS):
        msg = Message("orders", 2, offset, key, value, 1_700_000_000_000, headers, lag=5)
        stored, payload = parse_tail(router.route(msg).tail)
        located = projection.locate(stored)
        assert located is not None
        assert (located.topic, located.partition, located.offset) == ("orders", 2, offset)
        assert projection.stream_digest(stored, payload) == projection.kafka_digest(key, value, headers), (
            stored
        )
        # Any change to the value, the key (when compared) or a passed header shows.
        assert projection.stream_digest(stored, payload + b"!") != projection.kafka_digest(
            key, value, headers
        )
        if mode == "metadata":
            changed = dict(stored, kafka_key=stored["kafka_key"] + "x")
            assert projection.stream_digest(changed, payload) != projection.kafka_digest(key, value, headers)
            if "x-a" in stored:
                changed = dict(stored, **{"x-a": "other"})
                assert projection.stream_digest(changed, payload) != projection.kafka_digest(
                    key, value, headers
                )


def test_projection_needs_a_way_back_to_the_offsets() -> None:
    loaded = parse(BASE.replace("SUBJECT", "s") + 'bridge:\n  msg_id: ${! meta("kafka_key") }\n',
                   source="t.yaml", environ={})  # fmt: skip
    with pytest.raises(VerifyError, match="include_prefixes: \\[kafka_\\]"):
        Projection.from_loaded(loaded)
    with pytest.raises(VerifyError, match=r"^verify cannot map"):
        Projection.from_loaded(loaded)


def test_translate_names_itself_when_it_cannot_map_back() -> None:
    """Attack B, item 11: translate said "verify cannot map ..."; it fails before connecting."""
    import asyncio

    from bridge.migrate.translate import translate

    loaded = parse(BASE.replace("SUBJECT", "s") + 'bridge:\n  msg_id: ${! meta("kafka_key") }\n',
                   source="t.yaml", environ={})  # fmt: skip
    with pytest.raises(ConfigError) as info:
        asyncio.run(translate(loaded, "app3"))
    (problem,) = info.value.problems
    assert problem.message.startswith("translate cannot map stream messages back to Kafka offsets")


def test_dead_letter_messages_map_by_their_kafka_headers() -> None:
    projection = Projection.from_loaded(load())
    located = projection.locate(
        {"Bridge-Error": "bad", "Kafka-Topic": "a-b", "Kafka-Partition": "3", "Kafka-Offset": "9",
         "Nats-Msg-Id": "a-b-3-9"}
    )  # fmt: skip
    assert located is not None
    assert (located.topic, located.partition, located.offset, located.dead) == ("a-b", 3, 9, True)
    located = projection.locate({"Nats-Msg-Id": "topic-with-dashes-0-12"})
    assert located is not None
    assert (located.topic, located.partition, located.offset) == ("topic-with-dashes", 0, 12)
    assert projection.locate({"Nats-Msg-Id": "no-offset-here"}) is None
    assert projection.locate({}) is None


def d(n: int) -> bytes:
    return bytes([n]) * 16


def test_compare_names_every_difference() -> None:
    kafka = [(o, d(o)) for o in (0, 1, 2, 4, 5, 7, 8)]  # 3 and 6: gaps (markers, compaction)
    stream = [
        (0, d(0)),
        (2, d(2)),
        (1, d(1)),
        (4, d(99)),
        (5, d(5)),
        (5, d(5)),
        (6, d(6)),
        (9, d(9)),
        (8, d(8)),
    ]
    v = compare("t", 0, kafka, stream, first=0, end=9)
    assert v.missing == [7]
    assert v.duplicates == [5]
    assert v.extra == [6]
    assert v.changed == [4]
    assert v.out_of_order == [1]
    assert (v.ahead, v.older) == (1, 0)
    assert (v.kafka_records, v.stream_messages) == (7, 8)
    assert not v.ok


def test_compare_equal_partitions_and_what_is_not_compared() -> None:
    kafka = [(o, d(o)) for o in (10, 11, 13)]
    stream = [(3, d(3)), (10, d(10)), (11, d(11)), (13, d(13)), (14, d(14))]  # older + ahead
    v = compare("t", 1, kafka, stream, first=10, end=14)
    assert v.ok
    assert v.kafka_checksum == v.stream_checksum == checksum(kafka)
    assert (v.older, v.ahead, v.missing, v.extra) == (1, 1, [], [])
    dead = compare("t", 1, kafka[:2], stream[1:3], first=10, end=14, dead=[13])
    assert not dead.ok
    assert (dead.dead_lettered, dead.missing) == ([13], [])


def test_checksum_is_ordered() -> None:
    assert checksum([(0, d(0)), (1, d(1))]) != checksum([(1, d(1)), (0, d(0))])


def test_ranges() -> None:
    assert ranges([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"
    assert ranges(list(range(0, 100, 2)), limit=3) == "0, 2, 4, … (47 more)"


# ------------------------------------------------------------------------------------ translate

TP = TopicPartition("orders", 0)
ENTRIES = [(5, 100, "k.0"), (6, 103, "k.0"), (8, 110, "k.0")]  # offset 7: a gap (compacted)


@pytest.mark.parametrize(
    ("committed", "next_record", "bridge", "status", "seq"),
    [
        (6, 6, None, "ok", 103),
        (7, 8, None, "ok", 110),  # the gap: the first message at or after the commit
        (5, 5, None, "ok", 100),
        (9, None, 9, "at-end", 121),  # consumed everything; the bridge committed as far
        (9, None, None, "at-end", 121),  # ... or the stream holds offset 8
        (10, None, 8, "behind", None),  # the group read offset 9; the stream does not have it
        (9, 9, 9, "behind", None),  # a record at 9 not copied yet
        (3, 3, None, "missing", None),  # the stream starts after a record the group still needs
        (None, None, None, "no-commit", None),
    ],
)
def test_land(
    committed: int | None, next_record: int | None, bridge: int | None, status: str, seq: int | None
) -> None:
    landing = land(TP, committed, next_record, ENTRIES, 120, bridge)
    assert (landing.status, landing.seq) == (status, seq), landing


def test_land_on_an_empty_partition() -> None:
    assert land(TP, 0, None, [], 40, None, log_start=0).status == "at-end"
    assert land(TP, 4, None, [], 40, None, log_start=4).seq == 41
