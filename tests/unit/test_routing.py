"""bridge.core.routing and bridge.core.frames: the exact bytes of each publish.

Routers are built from YAML through ``bridge.config.parse`` (``loaded.templates`` and
``loaded.output.metadata``), so these tests exercise the real config path.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.config import parse
from bridge.core.errors import ConfigError, JetStreamError, RecordError
from bridge.core.frames import (
    clean_header_value,
    encode_header_lines,
    encode_headers,
    frame,
    frame_head,
    frame_tail,
    header_name_problem,
    subject_problem,
)
from bridge.core.message import Message
from bridge.core.routing import STREAM_SIZE_KIND, Envelope, Router, parse_record_id, record_id
from bridge.jetstream.publisher import MAX_REPLY_LEN
from bridge.kafka.protocol import topic_id_text

DEFAULT_SUBJECT = 'kafka.${! meta("kafka_topic") }'


def make_router(
    subject: str = DEFAULT_SUBJECT,
    output: str = "",
    bridge: str = "",
    max_payload: int = 1024 * 1024,
    reply: int = 0,
) -> Router:
    """``output`` is YAML indented under ``nats_jetstream:``; ``bridge`` under ``bridge:`` (its
    ``max_control_line`` reaches the router as the pipeline passes it)."""
    text = (
        "input:\n"
        "  kafka_franz:\n"
        "    seed_brokers: [k:9092]\n"
        "    topics: [orders]\n"
        "    consumer_group: g\n"
        "output:\n"
        "  nats_jetstream:\n"
        "    urls: [nats://n:4222]\n"
        f"    subject: '{subject}'\n"
        + "".join(f"    {line}\n" for line in output.splitlines())
        + ("bridge:\n" + "".join(f"  {line}\n" for line in bridge.splitlines()) if bridge else "")
    )
    loaded = parse(text, environ={})
    return Router(
        loaded.templates, loaded.output.metadata, max_payload=max_payload,
        max_control_line=loaded.config.bridge.max_control_line, reply=reply,
    )  # fmt: skip


def msg(
    value: bytes | None = b'{"id": 1}',
    headers: Sequence[tuple[str, bytes]] = (),
    topic: str = "orders",
    partition: int = 3,
    offset: int = 41,
    key: bytes | None = b"k1",
    timestamp_ms: int = 1_700_000_000_123,
) -> Message:
    return Message(topic, partition, offset, key, value, timestamp_ms, headers)


def split_tail(tail: bytes) -> tuple[bytes, bytes]:
    """Check the sizes in a frame tail; return (header block, payload)."""
    sizes, _, rest = tail.partition(b"\r\n")
    assert sizes.startswith(b" ")
    hlen, total = (int(n) for n in sizes.split())
    assert rest.endswith(b"\r\n")
    body = rest[:-2]
    assert len(body) == total, "total size must be headers plus payload"
    headers, payload = body[:hlen], body[hlen:]
    assert headers.startswith(b"NATS/1.0\r\n")
    assert headers.endswith(b"\r\n\r\n")
    return headers, payload


def header_lines(envelope: Envelope) -> list[str]:
    headers, _ = split_tail(envelope.tail)
    return headers.decode().split("\r\n")[1:-2]


# --------------------------------------------------------------------------- the default publish


def test_default_envelope_exact_bytes() -> None:
    envelope = make_router().route(msg())
    assert envelope.subject == "kafka.orders"
    assert envelope.head == b"HPUB kafka.orders "
    assert envelope.msg_id == "orders-3-41"
    headers = b"NATS/1.0\r\nNats-Msg-Id: orders-3-41\r\n\r\n"
    assert len(headers) == 38
    assert envelope.tail == b" 38 47\r\n" + headers + b'{"id": 1}\r\n'
    assert split_tail(envelope.tail) == (headers, b'{"id": 1}')


def test_head_and_tail_make_an_hpub_frame() -> None:
    envelope = make_router().route(msg())
    assert envelope.head + b"_INBOX.abc.1" + envelope.tail == frame(
        "kafka.orders", "_INBOX.abc.1", b"NATS/1.0\r\nNats-Msg-Id: orders-3-41\r\n\r\n", b'{"id": 1}'
    )


def test_tombstone_has_an_empty_payload() -> None:
    envelope = make_router().route(msg(value=None))
    headers, payload = split_tail(envelope.tail)
    assert payload == b""
    assert envelope.tail == b" 38 38\r\n" + headers + b"\r\n"


def test_binary_payload_is_sent_byte_for_byte() -> None:
    payload = bytes(range(256)) + b"\r\n\r\n"
    _, got = split_tail(make_router().route(msg(value=payload)).tail)
    assert got == payload


# --------------------------------------------------------------------------- headers


def test_configured_headers_then_metadata_then_msg_id() -> None:
    router = make_router(
        output="headers:\n  Content-Type: application/json\n  X-Source: bridge\n"
        "metadata:\n  include_prefixes: [kafka_key, app_]",
    )
    m = msg(headers=[("app_b", b"2"), ("other", b"x"), ("app_a", b"1")])
    assert header_lines(router.route(m)) == [
        "Content-Type: application/json",
        "X-Source: bridge",
        "kafka_key: k1",
        "app_b: 2",
        "app_a: 1",
        "Nats-Msg-Id: orders-3-41",
    ]


def test_dynamic_headers_are_rendered_per_message() -> None:
    router = make_router(output='headers:\n  X-Key: ${! meta("kafka_key") }\n  X-Id: ${! json("id") }')
    assert header_lines(router.route(msg(key=b"a", value=b'{"id": 7}')))[:2] == ["X-Key: a", "X-Id: 7"]
    assert header_lines(router.route(msg(key=b"b", value=b'{"id": 8}')))[:2] == ["X-Key: b", "X-Id: 8"]


def test_configured_headers_keep_config_order_when_mixed() -> None:
    router = make_router(output='headers:\n  A-Dyn: ${! meta("kafka_offset") }\n  B-Static: fixed')
    assert header_lines(router.route(msg()))[:2] == ["A-Dyn: 41", "B-Static: fixed"]


def test_no_metadata_without_a_filter() -> None:
    lines = header_lines(make_router().route(msg(headers=[("h", b"v")])))
    assert lines == ["Nats-Msg-Id: orders-3-41"]


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        (
            "include_prefixes: [kafka_]",
            [
                "kafka_key: k1",
                "kafka_topic: orders",
                "kafka_partition: 3",
                "kafka_offset: 41",
                "kafka_timestamp_unix: 1700000000",
                "kafka_timestamp_ms: 1700000000123",
                "kafka_tombstone_message: false",
            ],
        ),
        (
            "include_prefixes: [kafka_t]",
            [
                "kafka_topic: orders",
                "kafka_timestamp_unix: 1700000000",
                "kafka_timestamp_ms: 1700000000123",
                "kafka_tombstone_message: false",
            ],
        ),
        ("include_patterns: ['_timestamp_unix$']", ["kafka_timestamp_unix: 1700000000"]),
        (
            "include_patterns: [timestamp]",  # unanchored: matches anywhere
            ["kafka_timestamp_unix: 1700000000", "kafka_timestamp_ms: 1700000000123"],
        ),
        ("include_patterns: ['^trace']", ["trace-id: t1"]),
        ("include_patterns: ['id$']", ["trace-id: t1"]),
        (
            "include_prefixes: [trace]\n  include_patterns: ['^kafka_offset$']",
            ["kafka_offset: 41", "trace-id: t1"],  # metadata order, not filter order
        ),
        ("include_prefixes: [nothing]", []),
    ],
)
def test_metadata_filter(metadata: str, expected: list[str]) -> None:
    router = make_router(output=f"metadata:\n  {metadata}")
    m = msg(headers=[("trace-id", b"t1")])
    assert header_lines(router.route(m)) == [*expected, "Nats-Msg-Id: orders-3-41"]


def test_metadata_nats_prefix_is_renamed() -> None:
    router = make_router(output="metadata:\n  include_prefixes: ['']")
    m = msg(
        headers=[
            ("Nats-Expected-Stream", b"other"),
            ("nats-ttl", b"1s"),
            ("NATS-Msg-Id", b"spoof"),
            ("Natsy", b"kept"),
        ]
    )
    lines = header_lines(router.route(m))
    assert lines[-5:] == [
        "Kafka-Header-Nats-Expected-Stream: other",
        "Kafka-Header-nats-ttl: 1s",
        "Kafka-Header-NATS-Msg-Id: spoof",
        "Natsy: kept",
        "Nats-Msg-Id: orders-3-41",
    ]
    assert sum(1 for line in lines if line.lower().startswith("nats-msg-id:")) == 1


def test_configured_nats_msg_id_replaces_the_generated_one() -> None:
    router = make_router(output='headers:\n  Nats-Msg-Id: ${! meta("kafka_key") }-x')
    lines = header_lines(router.route(msg(key=b"abc")))
    assert lines == ["Nats-Msg-Id: abc-x"]


def test_configured_nats_msg_id_in_another_case_is_an_ordinary_header() -> None:
    """nats-server reads Nats-Msg-Id byte for byte: ``nats-msg-id`` would not deduplicate, so it does not
    replace the record's own id (lint says so)."""
    router = make_router(output="headers:\n  nats-msg-id: fixed")
    assert header_lines(router.route(msg())) == ["nats-msg-id: fixed", "Nats-Msg-Id: orders-3-41"]


def test_configured_headers_may_set_nats_headers() -> None:
    router = make_router(output="headers:\n  Nats-Expected-Stream: ORDERS")
    assert header_lines(router.route(msg())) == ["Nats-Expected-Stream: ORDERS", "Nats-Msg-Id: orders-3-41"]


def test_empty_msg_id_disables_it() -> None:
    envelope = make_router(bridge='msg_id: ""').route(msg())
    assert envelope.msg_id == ""
    assert envelope.tail == b" 12 21\r\nNATS/1.0\r\n\r\n" + b'{"id": 1}\r\n'


def test_custom_msg_id_template() -> None:
    router = make_router(bridge='msg_id: ${! meta("kafka_key") }:${! json("id") }')
    envelope = router.route(msg(key=b"user-9", value=b'{"id": 12}'))
    assert envelope.msg_id == "user-9:12"
    assert header_lines(envelope) == ["Nats-Msg-Id: user-9:12"]


def test_custom_msg_id_reads_the_records_own_metadata_and_the_shadowed_header_apart() -> None:
    router = make_router(
        bridge='msg_id: ${! meta("kafka_topic") }-${! meta("kafka_partition") }-${! meta("Kafka-Header-kafka_topic") }'
    )
    envelope = router.route(msg(headers=[("kafka_topic", b"shadow")]))
    assert envelope.msg_id == "orders-3-shadow"


def test_a_header_named_kafka_topic_cannot_move_a_record_to_another_subject() -> None:
    router = make_router()  # subject kafka.${! meta("kafka_topic") }
    plain = router.route(msg())
    shadowed = router.route(msg(headers=[("kafka_topic", b"payments"), ("kafka_partition", b"0")]))
    assert shadowed.subject == plain.subject


def test_default_msg_id_is_the_records_coordinates_even_when_headers_shadow_them() -> None:
    """Two records must never share the default id: a header named kafka_offset cannot change it."""
    shadowed = msg(headers=[("kafka_topic", b"shadow"), ("kafka_offset", b"0")])
    assert make_router().route(shadowed).msg_id == "orders-3-41"
    # A template written by the user reads the record's own kafka_* too (the headers are Kafka-Header-*).
    spaced = make_router(
        bridge='msg_id: ${!meta("kafka_topic")}-${!meta("kafka_partition")}-${!meta("kafka_offset")}'
    ).route(shadowed)
    assert spaced.msg_id == "orders-3-41"


def test_msg_id_value_cannot_inject_header_lines() -> None:
    router = make_router(bridge='msg_id: ${! meta("id") }')
    envelope = router.route(msg(headers=[("id", b"a\r\nNats-Expected-Stream: other")]))
    assert header_lines(envelope) == ["Nats-Msg-Id: a  Nats-Expected-Stream: other"]


def test_header_values_with_cr_lf_become_spaces() -> None:
    router = make_router(
        output='headers:\n  X-Note: ${! meta("note") }\nmetadata:\n  include_prefixes: [note]',
        bridge='msg_id: ""',
    )
    envelope = router.route(msg(headers=[("note", b" line1\r\nline2\nline3\r ")]))
    assert header_lines(envelope) == ["X-Note: line1  line2 line3", "note: line1  line2 line3"]


def test_non_ascii_header_values_are_utf8() -> None:
    router = make_router(output="metadata:\n  include_prefixes: [city]", bridge='msg_id: ""')
    headers, _ = split_tail(router.route(msg(headers=[("city", "Zürich".encode())])).tail)
    assert headers == "NATS/1.0\r\ncity: Zürich\r\n\r\n".encode()


def test_metadata_key_that_is_not_a_header_name_is_a_record_error() -> None:
    router = make_router(output="metadata:\n  include_prefixes: ['']")
    with pytest.raises(RecordError) as info:
        router.route(msg(headers=[("bad name", b"v")]))
    assert info.value.kind == "header"
    assert "bad name" in info.value.reason


def test_invalid_configured_header_name_rejected_before_the_router() -> None:
    with pytest.raises(ConfigError, match="not printable ASCII"):
        make_router(output="headers:\n  'A:B': x")


# --------------------------------------------------------------------------- record errors


@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        (b"", "subject is empty"),
        (b"a b", "whitespace or control characters"),
        (b"a\tb", "whitespace or control characters"),
        (b"a\x00b", "whitespace or control characters"),
        (b"a.*.b", "wildcard token '*'"),
        (b"a.>", "wildcard token '>'"),
        (b"*", "wildcard token '*'"),
        (b"a..b", "empty token"),
        (b".a", "empty token"),
        (b"a.", "empty token"),
    ],
)
def test_bad_subject_is_a_record_error(subject: bytes, reason: str) -> None:
    router = make_router(subject="${! content() }")
    with pytest.raises(RecordError) as info:
        router.route(msg(value=subject))
    assert info.value.kind == "subject"
    assert reason in info.value.reason


@pytest.mark.parametrize("subject", [b"a", b"a.b.c", b"a*.b>", b"orders-v1.x_y", "ü.x".encode()])
def test_good_subjects(subject: bytes) -> None:
    envelope = make_router(subject="${! content() }").route(msg(value=subject))
    assert envelope.subject == subject.decode()
    assert envelope.head == b"HPUB " + subject + b" "


def test_bad_subject_from_metadata_is_not_cached() -> None:
    router = make_router(subject='a.${! meta("s") }')
    for _ in range(2):
        with pytest.raises(RecordError, match="wildcard"):
            router.route(msg(headers=[("s", b"*")]))
    assert router.route(msg(headers=[("s", b"ok")])).subject == "a.ok"


@pytest.mark.parametrize(
    ("subject", "output"),
    [
        ('s.${! json("id") }', ""),
        ("s", 'headers:\n  X-Id: ${! json("id") }'),
    ],
    ids=["subject", "header"],
)
def test_interpolation_failure_is_a_record_error(subject: str, output: str) -> None:
    router = make_router(subject=subject, output=output)
    with pytest.raises(RecordError) as info:
        router.route(msg(value=b"not json"))
    assert info.value.kind == "interpolation"


def test_interpolation_failure_in_msg_id_is_a_record_error() -> None:
    router = make_router(bridge='msg_id: ${! json("id") }')
    with pytest.raises(RecordError) as info:
        router.route(msg(value=b"<xml/>"))
    assert info.value.kind == "interpolation"


def test_size_limit_is_headers_plus_payload() -> None:
    payload = b"x" * 100
    exact = 38 + len(payload)  # the default header block is 38 bytes
    envelope = make_router(max_payload=exact).route(msg(value=payload))
    assert split_tail(envelope.tail) == (b"NATS/1.0\r\nNats-Msg-Id: orders-3-41\r\n\r\n", payload)
    with pytest.raises(RecordError) as info:
        make_router(max_payload=exact - 1).route(msg(value=payload))
    assert info.value.kind == "size"
    assert f"{exact} bytes" in info.value.reason
    assert str(exact - 1) in info.value.reason


# --------------------------------------------------------------------------- dead letters

DEAD = 'dead_letter:\n  subject: dlq.${! meta("kafka_topic") }'


def test_has_dead_letter() -> None:
    assert make_router().has_dead_letter is False
    assert make_router(bridge=DEAD).has_dead_letter is True


def test_dead_letter_envelope() -> None:
    router = make_router(bridge=DEAD)
    error = RecordError("subject 'a..b' has an empty token", kind="subject")
    envelope = router.dead_letter(msg(), error)
    assert envelope.subject == "dlq.orders"
    assert envelope.head == b"HPUB dlq.orders "
    assert envelope.msg_id == "orders-3-41/dead-letter"  # not the record's own id: it can be stored later
    headers, payload = split_tail(envelope.tail)
    assert headers == (
        b"NATS/1.0\r\n"
        b"Bridge-Error: subject 'a..b' has an empty token\r\n"
        b"Bridge-Error-Kind: subject\r\n"
        b"Kafka-Topic: orders\r\n"
        b"Kafka-Partition: 3\r\n"
        b"Kafka-Offset: 41\r\n"
        b"Nats-Msg-Id: orders-3-41/dead-letter\r\n"
        b"\r\n"
    )
    assert payload == b'{"id": 1}'


def test_dead_letter_reason_with_newlines_stays_on_one_line() -> None:
    router = make_router(bridge=DEAD)
    envelope = router.dead_letter(msg(), RecordError("bad\r\nNats-Expected-Stream: x", kind="header"))
    assert header_lines(envelope)[0] == "Bridge-Error: bad  Nats-Expected-Stream: x"
    assert not any(line.startswith("Nats-Expected-Stream") for line in header_lines(envelope))


def test_dead_letter_for_an_oversized_record_omits_the_payload() -> None:
    max_payload = 4096
    router = make_router(bridge=DEAD, max_payload=max_payload)
    payload = b"y" * 5000
    with pytest.raises(RecordError) as info:
        router.route(msg(value=payload))
    assert info.value.kind == "size"
    envelope = router.dead_letter(msg(value=payload), info.value)
    headers, got = split_tail(envelope.tail)
    assert got == b""
    lines = header_lines(envelope)
    assert "Bridge-Error-Kind: size" in lines
    assert "Bridge-Payload-Omitted: 5000" in lines
    assert lines[-1] == "Nats-Msg-Id: orders-3-41/dead-letter"
    assert len(headers) <= max_payload


@pytest.mark.parametrize(
    ("size", "omitted"),
    [(4096 - 1024, False), (4096 - 1024 + 1, True)],
)
def test_dead_letter_payload_budget(size: int, omitted: bool) -> None:
    router = make_router(bridge=DEAD, max_payload=4096)
    envelope = router.dead_letter(msg(value=b"z" * size), RecordError("r", kind="subject"))
    _, payload = split_tail(envelope.tail)
    assert (payload == b"") is omitted
    assert any(line.startswith("Bridge-Payload-Omitted:") for line in header_lines(envelope)) is omitted


def test_dead_letter_subject_is_checked() -> None:
    router = make_router(bridge='dead_letter:\n  subject: dlq.${! meta("missing_key").or("") }')
    with pytest.raises(RecordError) as info:
        router.dead_letter(msg(), RecordError("r", kind="subject"))
    assert info.value.kind == "subject"


# --------------------------------------------------------------------------- server limits

REPLY = MAX_REPLY_LEN  # what the pipeline passes: the longest reply subject the sink sends
KEYED = 'k.${! meta("kafka_key") }'


def line_of(envelope: Envelope, reply: int = REPLY) -> int:
    """The control line nats-server measures: ``<subject> <reply> <hdr> <total>``."""
    sizes = envelope.pre.split(b"\r\n", 1)[0]  # b" <hdr> <total>"
    return len(envelope.head) - len(b"HPUB ") + reply + len(sizes)


def key_for_line(length: int, hlen: int, total: int) -> bytes:
    """A key that makes ``k.<key>``'s control line exactly ``length`` bytes."""
    fixed = len("k.") + REPLY + 3 + len(str(hlen)) + len(str(total))
    return b"x" * (length - fixed)


def test_control_line_at_the_limit_is_sent_one_byte_over_is_a_record_error() -> None:
    router = make_router(subject=KEYED, reply=REPLY)
    hlen = len(b"NATS/1.0\r\nNats-Msg-Id: orders-3-41\r\n\r\n")
    total = hlen + len(b'{"id": 1}')
    envelope = router.route(msg(key=key_for_line(4096, hlen, total)))
    assert line_of(envelope) == 4096
    with pytest.raises(RecordError) as info:
        router.route(msg(key=key_for_line(4097, hlen, total)))
    assert info.value.kind == "control_line"
    assert info.value.reason == (
        "subject makes the protocol line 4,097 bytes, over nats-server's max_control_line of 4096 "
        "(bridge.max_control_line)"
    )


def test_control_line_counts_the_digits_of_the_sizes() -> None:
    """The same subject fits with a 99-byte frame body and not with a 100-byte one (one more digit)."""
    router = make_router(subject=KEYED, reply=REPLY)
    hlen = len(b"NATS/1.0\r\nNats-Msg-Id: orders-3-41\r\n\r\n")
    key = key_for_line(4096, hlen, 99)
    assert line_of(router.route(msg(key=key, value=b"v" * (99 - hlen)))) == 4096
    with pytest.raises(RecordError, match="4,097 bytes"):
        router.route(msg(key=key, value=b"v" * (100 - hlen)))


def test_5kb_key_in_the_subject_is_a_control_line_error() -> None:
    with pytest.raises(RecordError) as info:
        make_router(subject=KEYED, reply=REPLY).route(msg(key=b"k" * 5000))
    assert info.value.kind == "control_line"
    assert "over nats-server's max_control_line of 4096" in info.value.reason


def test_max_control_line_is_configurable() -> None:
    router = make_router(subject=KEYED, bridge="max_control_line: 8192", reply=REPLY)
    assert router.route(msg(key=b"k" * 5000)).subject == "k." + "k" * 5000
    with pytest.raises(RecordError, match="max_control_line of 8192"):
        router.route(msg(key=b"k" * 8192))


def test_header_block_at_64k_is_sent_one_byte_over_is_a_record_error() -> None:
    router = make_router(output="metadata:\n  include_patterns: ['^pad$']")
    base = len(b"NATS/1.0\r\npad: \r\nNats-Msg-Id: orders-3-41\r\n\r\n")
    envelope = router.route(msg(headers=[("pad", b"p" * (65535 - base))]))
    headers, _ = split_tail(envelope.tail)
    assert len(headers) == 65535
    with pytest.raises(RecordError) as info:
        router.route(msg(headers=[("pad", b"p" * (65536 - base))]))
    assert info.value.kind == "header_size"
    assert (
        info.value.reason
        == "headers are 65,536 bytes, over JetStream's limit of 65,535 for a message's headers"
    )


def test_max_payload_is_checked_before_the_header_limit() -> None:
    router = make_router(output="metadata:\n  include_patterns: ['^pad$']", max_payload=4096)
    with pytest.raises(RecordError) as info:
        router.route(msg(headers=[("pad", b"p" * 70000)]))
    assert info.value.kind == "size"


def test_no_fast_route_when_the_subject_could_break_the_control_line() -> None:
    """``for_partition`` gives the hot path only to partitions no record of which can break a limit;
    otherwise every record takes the general path, which checks it exactly."""
    short = make_router(subject='a.${! meta("kafka_topic") }', reply=REPLY)
    assert short.for_partition("orders", 0) is not None
    prefix = "a" * 4030  # "<prefix>.orders" + reply + 3 spaces = 4090 bytes: 6 left for the two sizes
    router = make_router(subject=prefix + '.${! meta("kafka_topic") }', reply=REPLY)
    assert router.for_partition("orders", 0) is None
    assert line_of(router.route(msg(value=b""))) == 4094  # " 38 38"
    with pytest.raises(RecordError, match="4,098 bytes"):
        router.route(msg(value=b"v" * 100_000))  # " 38 100038"


def test_no_fast_route_when_static_headers_could_break_the_header_limit() -> None:
    router = make_router(output=f"headers:\n  Big: {'b' * 65500}")
    assert router.for_partition("orders", 0) is None
    with pytest.raises(RecordError) as info:
        router.route(msg())
    assert info.value.kind == "header_size"


def test_dead_letter_subject_is_checked_against_the_control_line() -> None:
    router = make_router(
        subject=KEYED, bridge='dead_letter:\n  subject: dlq.${! meta("kafka_key") }', reply=REPLY
    )
    with pytest.raises(RecordError) as first:
        router.route(msg(key=b"k" * 5000))
    with pytest.raises(RecordError) as info:
        router.dead_letter(msg(key=b"k" * 5000), first.value)
    assert info.value.kind == "control_line"


def test_dead_letter_of_a_control_line_error() -> None:
    router = make_router(subject=KEYED, bridge=DEAD, reply=REPLY)
    with pytest.raises(RecordError) as info:
        router.route(msg(key=b"k" * 5000))
    envelope = router.dead_letter(msg(key=b"k" * 5000), info.value)
    assert envelope.subject == "dlq.orders"
    lines = header_lines(envelope)
    assert "Bridge-Error-Kind: control_line" in lines
    assert lines[0].startswith("Bridge-Error: subject makes the protocol line 5,0")
    assert split_tail(envelope.tail)[1] == b'{"id": 1}'


def test_dead_letter_reason_is_cut_to_512_characters() -> None:
    router = make_router(bridge=DEAD, max_payload=4096)
    envelope = router.dead_letter(msg(), RecordError("r" * 10_000, kind="interpolation"))
    assert header_lines(envelope)[0] == "Bridge-Error: " + "r" * 511 + "…"


def test_long_subject_in_an_error_is_shortened() -> None:
    router = make_router(subject="${! content() }")
    with pytest.raises(RecordError) as info:
        router.route(msg(value=b"a " + b"x" * 10_000))
    assert (
        info.value.reason
        == f"subject {'a ' + 'x' * 58!r}… (10,002 bytes) contains whitespace or control characters"
    )


# --------------------------------------------------------------------------- subject cache


def test_subject_cache_returns_the_same_subject_for_the_same_topic() -> None:
    router = make_router()
    first = router.route(msg(offset=1, value=b"a"))
    second = router.route(msg(offset=2, value=b"b", partition=0))
    assert first.subject == second.subject == "kafka.orders"
    assert second.subject is first.subject
    assert second.head is first.head
    assert (first.msg_id, second.msg_id) == ("orders-3-1", "orders-0-2")
    third = router.route(msg(topic="payments"))
    assert third.subject == "kafka.payments"
    assert third.head == b"HPUB kafka.payments "


def test_subject_cache_keys_on_every_metadata_key_used() -> None:
    router = make_router(subject='${! meta("kafka_topic") }.${! meta("region") }')
    a = router.route(msg(headers=[("region", b"eu")]))
    b = router.route(msg(headers=[("region", b"us")]))
    c = router.route(msg(headers=[("region", b"eu")], offset=99))
    assert (a.subject, b.subject, c.subject) == ("orders.eu", "orders.us", "orders.eu")


def test_subject_depending_on_payload_is_not_cached_wrongly() -> None:
    router = make_router(subject='t.${! json("kind") }')
    assert router.route(msg(value=b'{"kind": "a"}')).subject == "t.a"
    assert router.route(msg(value=b'{"kind": "b"}')).subject == "t.b"


def test_subject_cache_is_not_fooled_by_a_header_named_kafka_topic() -> None:
    router = make_router(subject='kafka.${! meta("kafka_topic") }.${! meta("Kafka-Header-kafka_topic") }')
    assert router.route(msg(headers=[("kafka_topic", b"renamed")])).subject == "kafka.orders.renamed"
    assert router.route(msg(headers=[("kafka_topic", b"other")])).subject == "kafka.orders.other"


# --------------------------------------------------------------------------- wire


@pytest.mark.parametrize(
    ("subject", "problem"),
    [
        ("orders", None),
        ("a.b.c", None),
        ("a-b_c.D9", None),
        ("a*", None),  # only whole-token wildcards are wildcards
        ("a>.b", None),
        ("$JS.API.x", "a publish there is a request to the server or a reply to a client, never a record"),
        ("$KV.b.k", None),
        ("", "subject is empty"),
        (" ", "whitespace or control characters"),
        ("a b", "whitespace or control characters"),
        ("a\nb", "whitespace or control characters"),
        ("a\rb", "whitespace or control characters"),
        ("a\x7fb", "whitespace or control characters"),
        ("a\x1fb", "whitespace or control characters"),
        (".", "empty token"),
        ("a..b", "empty token"),
        (".a", "empty token"),
        ("a.", "empty token"),
        ("*", "wildcard token '*'"),
        (">", "wildcard token '>'"),
        ("a.*", "wildcard token '*'"),
        ("a.>.b", "wildcard token '>'"),
        ("$NRG.x", "starts with '$NRG.', which nats-server reserves"),
        ("_GR_.x.y", "starts with '_GR_.', which nats-server reserves"),
        ("$NRGx", None),
        ("a.$NRG.x", None),
        ("s." + "x" * 65534, "over the 65,535 bytes JetStream can store"),
        ("s." + "x" * 65533, None),
    ],
)
def test_subject_problem(subject: str, problem: str | None) -> None:
    found = subject_problem(subject)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("Content-Type", True),
        ("Nats-Msg-Id", True),
        ("x", True),
        ("!#$%&'*+-.^_`|~", True),
        ("a;b", True),
        ("", False),
        ("a:b", False),
        (":", False),
        ("a b", False),
        ("a\tb", False),
        ("a\r\nb", False),
        ("é", False),
        ("a\x7f", False),
        ("a\x00", False),
    ],
)
def test_header_name_problem(name: str, ok: bool) -> None:
    assert (header_name_problem(name) is None) is ok


@pytest.mark.parametrize(
    ("value", "cleaned"),
    [
        ("plain", "plain"),
        ("  padded\t", "padded"),
        ("a\r\nb", "a  b"),
        ("a\nb\rc", "a b c"),
        ("\r\n", ""),
        ("inner  spaces", "inner  spaces"),
        ("", ""),
    ],
)
def test_clean_header_value(value: str, cleaned: str) -> None:
    assert clean_header_value(value) == cleaned


@pytest.mark.parametrize(
    ("pairs", "block"),
    [
        ([], b"NATS/1.0\r\n\r\n"),
        ([("A", "1")], b"NATS/1.0\r\nA: 1\r\n\r\n"),
        ([("A", "1"), ("A", "2")], b"NATS/1.0\r\nA: 1\r\nA: 2\r\n\r\n"),  # repeated lines, as Header.Add
        ([("B", "x"), ("A", "y")], b"NATS/1.0\r\nB: x\r\nA: y\r\n\r\n"),  # order kept
        ([("A", " v\r\n ")], b"NATS/1.0\r\nA: v\r\n\r\n"),
        ([("A", "")], b"NATS/1.0\r\nA: \r\n\r\n"),
        ([("A", "ü")], "NATS/1.0\r\nA: ü\r\n\r\n".encode()),
    ],
)
def test_encode_headers(pairs: list[tuple[str, str]], block: bytes) -> None:
    assert encode_headers(pairs) == block
    assert encode_header_lines(pairs) == block[len(b"NATS/1.0\r\n") : -2]


@pytest.mark.parametrize(
    ("subject", "reply", "headers", "payload", "expected"),
    [
        (
            "a.b",
            "_INBOX.x",
            b"NATS/1.0\r\n\r\n",
            b"hello",
            b"HPUB a.b _INBOX.x 12 17\r\nNATS/1.0\r\n\r\nhello\r\n",
        ),
        (
            "s",
            "r",
            b"NATS/1.0\r\nA: 1\r\n\r\n",
            b"",
            b"HPUB s r 18 18\r\nNATS/1.0\r\nA: 1\r\n\r\n\r\n",
        ),
        (
            "s",
            "r",
            b"NATS/1.0\r\n\r\n",
            "€".encode(),  # sizes are bytes, not characters
            b"HPUB s r 12 15\r\nNATS/1.0\r\n\r\n" + "€".encode() + b"\r\n",
        ),
    ],
)
def test_frame(subject: str, reply: str, headers: bytes, payload: bytes, expected: bytes) -> None:
    assert frame(subject, reply, headers, payload) == expected
    assert frame_head(subject) + reply.encode() + frame_tail(headers, payload) == expected
    match = re.fullmatch(rb"HPUB (\S+) (\S+) (\d+) (\d+)\r\n(.*)\r\n", expected, re.DOTALL)
    assert match is not None
    assert int(match[3]) == len(headers)
    assert int(match[4]) == len(headers) + len(payload)


# --------------------------------------------------------------------------- the record identity


TOPIC_ID = "1JKahow3RGOciXeVZnUbXQ"  # Kafka prints topic IDs as URL-safe base64, 22 characters


def test_default_msg_id_carries_the_topic_id_once_known() -> None:
    """A topic deleted and created again restarts at offset 0: only its topic ID keeps its records' ids
    apart from the old ones (JetStream would drop them as duplicates)."""
    router = make_router()
    router.set_topic_id("orders", TOPIC_ID)
    envelope = router.route(msg())
    assert envelope.msg_id == f"{TOPIC_ID}:orders-3-41"
    assert header_lines(envelope) == [f"Nats-Msg-Id: {TOPIC_ID}:orders-3-41"]
    router.set_topic_id("orders", "")  # a broker that reports no topic IDs
    assert router.route(msg()).msg_id == "orders-3-41"


def test_partition_route_and_general_route_write_the_same_bytes_with_a_topic_id() -> None:
    router = make_router()
    router.set_topic_id("orders", TOPIC_ID)
    fast = router.for_partition("orders", 3)
    assert fast is not None
    for offset, value in ((0, b""), (41, b'{"id": 1}'), (10**12, None)):
        general = router.route(msg(value=value, offset=offset))
        quick = fast.route(offset, value)
        assert (quick.head, quick.tail) == (general.head, general.tail)
        assert quick.msg_id == general.msg_id == f"{TOPIC_ID}:orders-3-{offset}"


def test_dead_letter_id_carries_the_topic_id() -> None:
    router = make_router(bridge=DEAD)
    router.set_topic_id("orders", TOPIC_ID)
    envelope = router.dead_letter(msg(), RecordError("bad", kind="subject"))
    assert envelope.msg_id == f"{TOPIC_ID}:orders-3-41/dead-letter"


def test_custom_msg_id_has_no_topic_id() -> None:
    router = make_router(bridge='msg_id: ${! meta("kafka_key") }')
    router.set_topic_id("orders", TOPIC_ID)
    assert router.route(msg()).msg_id == "k1"


@pytest.mark.parametrize(
    ("msg_id", "parsed"),
    [
        ("orders-3-41", ("", "orders", 3, 41)),
        (f"{TOPIC_ID}:orders-3-41", (TOPIC_ID, "orders", 3, 41)),
        ("a-b-c-0-7", ("", "a-b-c", 0, 7)),
        ("Ab-_x:my.topic_v2-12-0", ("Ab-_x", "my.topic_v2", 12, 0)),
        ("orders-3", None),
        ("orders-x-1", None),
        ("-3-41", None),
        ("orders-3-٣", None),  # a non-ASCII digit is no offset
        ("", None),
    ],
)
def test_parse_record_id(msg_id: str, parsed: tuple[str, str, int, int] | None) -> None:
    assert parse_record_id(msg_id) == parsed


KAFKA_TOPIC = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=249)
TOPIC_IDS = st.one_of(st.just(""), st.binary(min_size=16, max_size=16).map(topic_id_text))


@given(KAFKA_TOPIC, TOPIC_IDS, st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1))
def test_record_id_round_trips(topic: str, topic_id: str, partition: int, offset: int) -> None:
    """Every topic Kafka allows, with or without a topic ID: verify and translate map the id back."""
    assert parse_record_id(record_id(topic_id, topic, partition, offset)) == (
        topic_id,
        topic,
        partition,
        offset,
    )


@given(KAFKA_TOPIC, st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1))
def test_record_ids_of_two_incarnations_never_collide(topic: str, partition: int, a: int, b: int) -> None:
    old, new = topic_id_text(b"\x01" * 16), topic_id_text(b"\x02" * 16)
    assert record_id(old, topic, partition, a) != record_id(new, topic, partition, b)


@pytest.mark.parametrize(
    "subject",
    [
        "$JS.API.STREAM.DELETE.ORDERS",
        "$JS.ACK.S.C.1.2.3.4.5",
        "$JSC.R.x",
        "$SYS.REQ.SERVER.PING",
        "_INBOX.abc.1",
    ],
)
def test_subjects_with_a_meaning_to_the_server_or_a_client_are_refused(subject: str) -> None:
    problem = subject_problem(subject)
    assert problem is not None
    assert "never a record" in problem


@pytest.mark.parametrize("subject", ["$KV.bucket.key", "$O.store.C.x", "orders.$JS.API", "inbox._INBOX"])
def test_stream_subjects_with_dollars_are_allowed(subject: str) -> None:
    assert subject_problem(subject) is None


@pytest.mark.parametrize(
    ("err_code", "retriable"), [(10060, False), (10165, False), (10054, False), (10008, True)]
)
def test_jetstream_errors_no_retry_can_fix_are_permanent(err_code: int, retriable: bool) -> None:
    assert JetStreamError("s", 400, err_code, "x").retriable is retriable


def test_dead_letter_of_a_record_the_stream_refused_for_its_size_omits_the_payload() -> None:
    """JetStream's max_msg_size (10054) is the stream's, below the server's max_payload: the dead-letter
    publish into a stream with the same limit would be refused too, so it goes without the payload."""
    router = make_router(bridge=DEAD)
    payload = b"z" * 2000
    envelope = router.dead_letter(
        msg(value=payload), RecordError("JetStream error 400/10054", STREAM_SIZE_KIND)
    )
    _, got = split_tail(envelope.tail)
    assert got == b""
    assert "Bridge-Payload-Omitted: 2000" in header_lines(envelope)


def test_router_follows_a_new_max_payload() -> None:
    router = make_router(max_payload=4096)
    with pytest.raises(RecordError):
        router.route(msg(value=b"x" * 5000))
    router.set_max_payload(8192)
    assert router.route(msg(value=b"x" * 5000)).size == 5000 + len(split_tail(router.route(msg()).tail)[0])
    route = router.for_partition("orders", 3)
    assert route is not None
    assert route.max_payload == 8192


def test_envelope_size_is_headers_plus_payload() -> None:
    envelope = make_router().route(msg(value=b"abc"))
    headers, payload = split_tail(envelope.tail)
    assert envelope.size == len(headers) + len(payload)


def test_record_header_names_are_not_cached_without_bound() -> None:
    """Header names are the producer's: one with an id in every name must not grow the router forever."""
    router = make_router(output="metadata:\n  include_prefixes: [h]")
    for i in range(5000):
        router.route(msg(headers=[(f"h{i}", b"v")]))
    assert len(router._allowed) <= 4096
