"""Records that can never be published, and records whose bytes need a rule, through the real CLI.

README, "Bad records": a record whose subject renders empty, with whitespace, an empty token or a
wildcard token, whose interpolation fails, or whose headers plus payload exceed the server's
``max_payload`` goes to ``bridge.dead_letter.subject`` with ``Bridge-Error``, ``Bridge-Error-Kind``,
``Kafka-Topic``, ``Kafka-Partition``, ``Kafka-Offset`` (and ``Bridge-Payload-Omitted: <size>`` when the
payload itself is too large), and the partition keeps flowing; without a dead-letter subject the
partition stops (exit 1) and nothing past the record is committed, while the other partitions go on.

README, "Bad records", the server's limits: a record whose subject makes the ``HPUB`` protocol line
longer than nats-server's ``max_control_line`` (``bridge.max_control_line``, 4096 by default) or whose
header block is over JetStream's 64 KiB is refused before sending, like the records above: the server
never closes the connection over it, so there is no reconnect loop.

README, "Kafka metadata" / "Text rules": keys and header values that are not UTF-8 are decoded with
U+FFFD, the payload passes byte for byte, CR and LF in header values become spaces, a repeated header
name keeps its last value, a metadata key starting with ``Nats-`` is sent as ``Kafka-Header-<name>``,
a null key is empty, a tombstone has an empty payload and ``kafka_tombstone_message: true``.

Stored messages are read with ``$JS.API.STREAM.MSG.GET`` (raw header bytes, repeated names kept), not
through a client's header parser.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest

from bridge.core.routing import DEAD_LETTER_SUFFIX, parse_record_id
from bridgedev import brokers as devenv
from tests.conftest import Kafka
from tests.support import (
    BridgeProcess,
    Record,
    committed_offsets,
    create_stream,
    create_topic,
    eventually,
    msg_ids,
    produce,
    run_cli,
    stream_count,
    write_config,
)

pytestmark = pytest.mark.integration

MAX_PAYLOAD = 4096


@pytest.fixture(scope="module")
def small_nats() -> Iterator[devenv.NatsServer]:
    """A nats-server whose ``max_payload`` is 4 KiB."""
    with devenv.NatsServer(name="small-payload", extra_conf=f"max_payload: {MAX_PAYLOAD}") as server:
        yield server


@dataclass
class Raw:
    seq: int
    subject: str
    headers: list[tuple[str, bytes]]  # in wire order, repeated names kept, values as stored
    data: bytes

    def get(self, name: str) -> bytes | None:
        values = [v for n, v in self.headers if n == name]
        assert len(values) <= 1, (name, values)
        return values[0] if values else None

    def text(self, name: str) -> str | None:
        value = self.get(name)
        return None if value is None else value.decode()

    @property
    def offset(self) -> tuple[int, int]:
        """(partition, offset) of the source record, from the default ``Nats-Msg-Id``."""
        parsed = parse_record_id((self.text("Nats-Msg-Id") or "").removesuffix(DEAD_LETTER_SUFFIX))
        assert parsed is not None, self.headers
        return parsed[2], parsed[3]


async def raw_stream(url: str, stream: str) -> list[Raw]:
    """Every message of ``stream`` through the JetStream API, headers as raw bytes."""
    nc = await nats.connect(url)
    out: list[Raw] = []
    try:
        info = await nc.jetstream().stream_info(stream)
        for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
            reply = await nc.request(f"$JS.API.STREAM.MSG.GET.{stream}", json.dumps({"seq": seq}).encode(), 5)
            body = json.loads(reply.data)
            if "error" in body:
                continue  # deleted
            m = body["message"]
            headers: list[tuple[str, bytes]] = []
            block = base64.b64decode(m.get("hdrs") or "")
            for line in block.split(b"\r\n")[1:]:
                if line:
                    name, _, value = line.partition(b":")
                    headers.append((name.decode(), value.strip()))
            out.append(Raw(m["seq"], m["subject"], headers, base64.b64decode(m.get("data") or "")))
    finally:
        await nc.close()
    return out


async def set_stream_limit(url: str, stream: str, **limits: int) -> None:
    """Change limits of an existing stream (the operator fixing the cause)."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(stream)
        for name, value in limits.items():
            setattr(info.config, name, value)
        await nc.jetstream().update_stream(info.config)
    finally:
        await nc.close()


def backfill(cfg: Path) -> tuple[int, str, str]:
    done = run_cli("backfill", "-c", str(cfg), "--json", timeout=120)
    return done.returncode, done.stdout, done.stderr


def connection_losses(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "nats_connection_lost" in line]


# ----------------------------------------------------------------------------------- too large


def oversized_records() -> list[Record]:
    """Partition 0: offset 1's payload alone is over 4 KiB; offset 3's payload fits but its ``pad``
    header (sent when metadata ``pad`` is included) takes it over. Partition 1: small records."""
    small = [("source", b"test")]
    return [
        Record(0, b"k0", b"ok-0", tuple(small)),
        Record(0, b"k1", b"x" * 5000, tuple(small)),
        Record(0, b"k2", b"ok-2", tuple(small)),
        Record(0, b"k3", b"y" * 2500, (*small, ("pad", b"p" * 1700))),
        Record(0, b"k4", b"ok-4", tuple(small)),
        *(Record(1, b"q", f"p1-{i}".encode(), tuple(small)) for i in range(3)),
    ]


async def test_too_large_goes_to_the_dead_letter_subject_without_sending_it(
    kafka: Kafka, small_nats: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    url = small_nats.url
    await create_topic(kafka.bootstrap, topic, 2)
    await produce(kafka.bootstrap, topic, oversized_records())
    await create_stream(url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group, nats_url=url,
                       subject=prefix + '.data.${! meta("kafka_partition") }',
                       extra_output={"metadata": {"include_patterns": ["^pad$"]}},
                       bridge={"dead_letter": {"subject": f"{prefix}.dlq"}})  # fmt: skip
    code, _, stderr = backfill(cfg)
    assert code == 0, stderr[-3000:]

    stored = await raw_stream(url, stream)
    data = sorted(m.offset for m in stored if m.subject.startswith(f"{prefix}.data."))
    assert data == [(0, 0), (0, 2), (0, 4), (1, 0), (1, 1), (1, 2)]  # the partition kept flowing
    dead = {m.offset: m for m in stored if m.subject == f"{prefix}.dlq"}
    assert sorted(dead) == [(0, 1), (0, 3)]
    for (partition, offset), m in dead.items():
        assert m.text("Bridge-Error-Kind") == "size"
        assert re.fullmatch(
            rf"headers plus payload are \d+ bytes, over the server's max_payload of {MAX_PAYLOAD}",
            m.text("Bridge-Error") or "",
        ), m.headers
        assert m.text("Kafka-Topic") == topic
        assert m.text("Kafka-Partition") == str(partition)
        assert m.text("Kafka-Offset") == str(offset)
    # the payload alone was too large: omitted, its size given; the other one keeps its payload
    assert dead[(0, 1)].text("Bridge-Payload-Omitted") == "5000"
    assert dead[(0, 1)].data == b""
    assert dead[(0, 3)].get("Bridge-Payload-Omitted") is None
    assert dead[(0, 3)].data == b"y" * 2500
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 5, 1: 3}
    # rejected before sending: the server never closed the connection over it
    assert not connection_losses(stderr)
    assert "Maximum Payload" not in small_nats.log_path.read_text()


async def test_too_large_without_dead_letter_stops_its_partition(
    kafka: Kafka, small_nats: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    """No metadata headers (the bridge's per-partition fast path): offset 1 of partition 0 is too large."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    url = small_nats.url
    await create_topic(kafka.bootstrap, topic, 2)
    await produce(kafka.bootstrap, topic, oversized_records())
    await create_stream(url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group, nats_url=url,
                       subject=prefix + '.data.${! meta("kafka_partition") }')  # fmt: skip
    code, stdout, stderr = backfill(cfg)
    assert code == 1, stderr[-3000:]
    summary = json.loads(stdout[stdout.index("{") :])
    stopped = [p["stopped"] for p in summary["partitions"] if p["stopped"]]
    assert len(stopped) == 1, summary
    # the summary says what was not delivered, and why the run failed
    assert [(p["partition"], p["undelivered"]) for p in summary["partitions"]] == [(0, 4), (1, 0)]
    assert summary["error"] == stopped[0]
    assert re.match(
        rf"partition {topic}/0 stopped at offset 1: headers plus payload are \d+ bytes, over the server's "
        rf"max_payload of {MAX_PAYLOAD}",
        stopped[0],
    ), stopped
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 1, 1: 3}
    stored = await raw_stream(url, stream)
    assert sorted(m.offset for m in stored) == [(0, 0), (1, 0), (1, 1), (1, 2)]
    assert not connection_losses(stderr)
    assert "Maximum Payload" not in small_nats.log_path.read_text()


# ----------------------------------------------------------------------------------- server limits

BIG_HEADERS = tuple((f"h{i:04d}", b"v" * 90) for i in range(800))  # a header block of ~80 KB


def limit_records() -> list[Record]:
    """Partition 0: offset 1's 5 KB key makes the subject's protocol line too long. Partition 1: offset
    1's headers (sent as metadata) are over 64 KiB. Partition 2: good records only."""
    return [
        Record(0, b"a", b"p0-0"),
        Record(0, b"k" * 5000, b"p0-1"),
        Record(0, b"c", b"p0-2"),
        Record(1, b"a", b"p1-0"),
        Record(1, b"b", b"p1-1", BIG_HEADERS),
        Record(1, b"c", b"p1-2"),
        Record(2, b"a", b"p2-0"),
        Record(2, b"b", b"p2-1"),
    ]


@pytest.fixture(scope="module")
def limits_nats() -> Iterator[devenv.NatsServer]:
    """A nats-server with the default limits (max_control_line 4096, max_payload 1 MiB) whose log the
    tests read."""
    with devenv.NatsServer(name="default-limits") as server:
        yield server


def limits_config(kafka: Kafka, url: str, names: dict, workdir: Path, dead_letter: bool) -> Path:
    prefix = names["prefix"]
    bridge = {"dead_letter": {"subject": f"{prefix}.dlq"}} if dead_letter else {}
    return write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[names["topic"]],
                        group=names["group"], nats_url=url, subject=prefix + '.k.${! meta("kafka_key") }',
                        extra_output={"metadata": {"include_patterns": [r"^h\d{4}$"]}},
                        bridge=bridge)  # fmt: skip


def assert_never_sent(stderr: str, server: devenv.NatsServer) -> None:
    """Refused before sending: the server never closed the connection, the bridge never reconnected."""
    assert not connection_losses(stderr)
    log = server.log_path.read_text().lower()
    assert "maximum control line" not in log
    assert "maximum payload" not in log


CONTROL_LINE = (
    r"subject makes the protocol line 5,0\d\d bytes, over nats-server's max_control_line of 4096 "
    r"\(bridge\.max_control_line\)"
)
HEADER_SIZE = r"headers are 79,\d\d\d bytes, over JetStream's limit of 65,535 for a message's headers"


async def test_server_limits_go_to_the_dead_letter_subject(
    kafka: Kafka, limits_nats: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    url = limits_nats.url
    await create_topic(kafka.bootstrap, topic, 3)
    await produce(kafka.bootstrap, topic, limit_records())
    await create_stream(url, stream, [f"{prefix}.>"])
    code, stdout, stderr = backfill(limits_config(kafka, url, names, workdir, dead_letter=True))
    assert code == 0, stderr[-3000:]

    stored = await raw_stream(url, stream)
    data = sorted((m.offset, m.data) for m in stored if m.subject != f"{prefix}.dlq")
    assert data == [((0, 0), b"p0-0"), ((0, 2), b"p0-2"), ((1, 0), b"p1-0"), ((1, 2), b"p1-2"),
                    ((2, 0), b"p2-0"), ((2, 1), b"p2-1")]  # fmt: skip
    dead = {m.offset: m for m in stored if m.subject == f"{prefix}.dlq"}
    assert sorted(dead) == [(0, 1), (1, 1)]
    assert dead[(0, 1)].text("Bridge-Error-Kind") == "control_line"
    assert re.fullmatch(CONTROL_LINE, dead[(0, 1)].text("Bridge-Error") or ""), dead[(0, 1)].headers
    assert dead[(1, 1)].text("Bridge-Error-Kind") == "header_size"
    assert re.fullmatch(HEADER_SIZE, dead[(1, 1)].text("Bridge-Error") or ""), dead[(1, 1)].headers
    for (partition, offset), m in dead.items():
        assert (m.text("Kafka-Topic"), m.text("Kafka-Partition"), m.text("Kafka-Offset")) == (
            topic, str(partition), str(offset),
        )  # fmt: skip
        assert m.data == f"p{partition}-{offset}".encode()
    summary = json.loads(stdout[stdout.index("{") :])
    assert summary["exit_code"] == 0
    assert sorted((p["partition"], p["dead_lettered"]) for p in summary["partitions"]) == [
        (0, 1),
        (1, 1),
        (2, 0),
    ]
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 3, 1: 3, 2: 2}
    assert_never_sent(stderr, limits_nats)


async def test_server_limits_without_dead_letter_stop_their_partitions(
    kafka: Kafka, limits_nats: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    url = limits_nats.url
    await create_topic(kafka.bootstrap, topic, 3)
    await produce(kafka.bootstrap, topic, limit_records())
    await create_stream(url, stream, [f"{prefix}.>"])
    code, stdout, stderr = backfill(limits_config(kafka, url, names, workdir, dead_letter=False))
    assert code == 1, stderr[-3000:]

    summary = json.loads(stdout[stdout.index("{") :])
    stopped = {p["partition"]: p["stopped"] for p in summary["partitions"] if p["stopped"]}
    assert sorted(stopped) == [0, 1], summary
    assert re.match(rf"partition {topic}/0 stopped at offset 1: {CONTROL_LINE}", stopped[0]), stopped
    assert re.match(rf"partition {topic}/1 stopped at offset 1: {HEADER_SIZE}", stopped[1]), stopped
    # nothing past a stopped record is committed; the good partition finished
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 1, 1: 1, 2: 2}
    stored = await raw_stream(url, stream)
    assert sorted(m.offset for m in stored) == [(0, 0), (1, 0), (2, 0), (2, 1)]
    assert_never_sent(stderr, limits_nats)


async def test_dead_letter_subject_over_the_control_line_stops_the_partition(
    kafka: Kafka, limits_nats: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    """The dead-letter subject is interpolated too: when it would break the control line as well, the
    partition stops with both reasons rather than sending it."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    url = limits_nats.url
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(kafka.bootstrap, topic, [r for r in limit_records() if r.partition == 0])
    await create_stream(url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group, nats_url=url,
                       subject=prefix + '.k.${! meta("kafka_key") }',
                       bridge={"dead_letter": {"subject": prefix + '.dlq.${! meta("kafka_key") }'}})  # fmt: skip
    code, stdout, stderr = backfill(cfg)
    assert code == 1, stderr[-3000:]
    summary = json.loads(stdout[stdout.index("{") :])
    [stopped] = [p["stopped"] for p in summary["partitions"] if p["stopped"]]
    assert re.match(
        rf"partition {topic}/0 stopped at offset 1: {CONTROL_LINE}; dead-letter publish impossible: "
        r"subject makes the protocol line 5,0\d\d bytes",
        stopped,
    ), stopped
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 1}
    assert [m.offset for m in await raw_stream(url, stream)] == [(0, 0)]
    assert_never_sent(stderr, limits_nats)


# ----------------------------------------------------------------------------------- subjects and templates

# The subject is the record's ``route`` header; without one, the ``type`` field of its JSON payload
# (an interpolation error when the payload is not JSON).
ROUTED = '${! metadata("route").or(json("type")) }'
# partition → (the bad record's route header, or None: not JSON; the documented reason)
BAD_SUBJECTS = {
    0: (b"", "subject is empty"),
    1: (b"{p}.a b", "subject '{p}.a b' contains whitespace or control characters"),
    2: (b"{p}.*", "subject '{p}.*' contains the wildcard token '*'"),
    3: (b"{p}.>", "subject '{p}.>' contains the wildcard token '>'"),
    4: (b"{p}..x", "subject '{p}..x' has an empty token"),
    5: (None, "payload is not valid JSON"),
}
GOOD = 6  # a partition without bad records


def routed_records(prefix: str) -> list[Record]:
    """Every partition: a good record, a bad one (except ``GOOD``), a good one; good ones go to
    ``<prefix>.ok`` by header or ``<prefix>.json`` by payload."""
    records = []
    for p in range(GOOD + 1):
        records.append(Record(p, b"k", b"first", (("route", f"{prefix}.ok".encode()),)))
        if p in BAD_SUBJECTS:
            route, _ = BAD_SUBJECTS[p]
            if route is None:
                records.append(Record(p, b"k", b"not json"))
            else:
                records.append(Record(p, b"k", b"bad", (("route", route.replace(b"{p}", prefix.encode())),)))
        records.append(Record(p, b"k", json.dumps({"type": f"{prefix}.json"}).encode()))
    return records


async def test_bad_subjects_and_interpolation_errors_go_to_the_dead_letter_subject(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, GOOD + 1)
    await produce(kafka.bootstrap, topic, routed_records(prefix))
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=ROUTED,
                       bridge={"dead_letter": {"subject": f"{prefix}.dlq"}})  # fmt: skip
    code, _, stderr = backfill(cfg)
    assert code == 0, stderr[-3000:]

    stored = await raw_stream(nats_url, stream)
    good = sorted((m.subject, *m.offset) for m in stored if m.subject != f"{prefix}.dlq")
    last = {p: 2 if p in BAD_SUBJECTS else 1 for p in range(GOOD + 1)}
    assert good == sorted(
        [(f"{prefix}.ok", p, 0) for p in range(GOOD + 1)] + [(f"{prefix}.json", p, last[p]) for p in last]
    )
    dead = {m.offset: m for m in stored if m.subject == f"{prefix}.dlq"}
    assert sorted(dead) == [(p, 1) for p in BAD_SUBJECTS]
    for p, (route, reason) in BAD_SUBJECTS.items():
        m = dead[(p, 1)]
        assert m.text("Bridge-Error-Kind") == ("interpolation" if route is None else "subject"), m.headers
        assert reason.format(p=prefix) in (m.text("Bridge-Error") or ""), m.headers
        assert (m.text("Kafka-Topic"), m.text("Kafka-Partition"), m.text("Kafka-Offset")) == (
            topic,
            str(p),
            "1",
        )
        assert m.data == (b"not json" if route is None else b"bad")
    assert await committed_offsets(kafka.bootstrap, group, topic) == {p: last[p] + 1 for p in last}


async def test_bad_subjects_and_interpolation_errors_stop_their_partitions(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, GOOD + 1)
    await produce(kafka.bootstrap, topic, routed_records(prefix))
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=ROUTED)  # fmt: skip
    code, stdout, stderr = backfill(cfg)
    assert code == 1, stderr[-3000:]
    summary = json.loads(stdout[stdout.index("{") :])
    stopped = {p["partition"]: p["stopped"] for p in summary["partitions"] if p["stopped"]}
    assert sorted(stopped) == sorted(BAD_SUBJECTS)
    for p, (_, reason) in BAD_SUBJECTS.items():
        assert stopped[p].startswith(f"partition {topic}/{p} stopped at offset 1: "), stopped[p]
        assert reason.format(p=prefix) in stopped[p], stopped[p]
    # nothing past a bad record is committed; the other partition finished
    expected = {p: 1 for p in BAD_SUBJECTS} | {GOOD: 2}
    assert await committed_offsets(kafka.bootstrap, group, topic) == expected
    stored = await raw_stream(nats_url, stream)
    assert sorted(m.offset for m in stored) == sorted([(p, 0) for p in BAD_SUBJECTS] + [(GOOD, 0), (GOOD, 1)])


# ----------------------------------------------------------------------------------- text rules

HEADERS_1000 = tuple((f"h{i:04d}", f"v{i}".encode()) for i in range(1000))


def text_records() -> list[Record]:
    return [
        # 0: key and a header value not UTF-8, a header value with CR/LF, a binary payload
        Record(0, b"\xff\xfekey", b"payload\xff\x00bytes", (("bin", b"\xffv\xfe"), ("crlf", b"one\r\ntwo\nthree"))),
        # 1: 1,000 headers, and a name that repeats
        Record(0, b"many", b"v1", (*HEADERS_1000, ("dup", b"first"), ("dup", b"last"))),
        # 2: Kafka headers named Nats-*: they would change what the server does
        Record(0, b"nats", b"v2", (("Nats-Msg-Id", b"evil"), ("nats-expected-stream", b"NOPE"), ("Nats-TTL", b"1s"))),
        # 3: a null key
        Record(0, None, b"v3"),
        # 4: a tombstone
        Record(0, b"gone", None),
    ]  # fmt: skip


async def test_keys_headers_and_payloads_follow_the_text_rules(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(kafka.bootstrap, topic, text_records())
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.text",
                       extra_output={"metadata": {"include_prefixes": ["kafka_"],
                                                  "include_patterns": ["^bin$", "^crlf$", r"^h\d{4}$", "^dup$",
                                                                       "(?i)^nats-"]}})  # fmt: skip
    code, _, stderr = backfill(cfg)
    assert code == 0, stderr[-3000:]
    stored = {m.offset[1]: m for m in await raw_stream(nats_url, stream)}
    assert sorted(stored) == [0, 1, 2, 3, 4]

    ids = await msg_ids(kafka.bootstrap, topic, 0, range(5))
    for offset, m in stored.items():
        assert m.text("kafka_topic") == topic
        assert m.text("kafka_partition") == "0"
        assert m.text("kafka_offset") == str(offset)
        assert m.text("Nats-Msg-Id") == ids[offset]
        assert m.text("kafka_tombstone_message") == ("true" if offset == 4 else "false")

    # not UTF-8: U+FFFD replacement characters in metadata; the payload byte for byte
    m = stored[0]
    assert m.get("kafka_key") == "\ufffd\ufffdkey".encode()
    assert m.get("bin") == "\ufffdv\ufffd".encode()
    assert m.data == b"payload\xff\x00bytes"
    # CR and LF become spaces
    assert m.get("crlf") == b"one  two three"

    # 1,000 headers arrive, one line each; a repeated name keeps its last value
    m = stored[1]
    assert [(n, v) for n, v in m.headers if re.fullmatch(r"h\d{4}", n)] == list(HEADERS_1000)
    assert [v for n, v in m.headers if n == "dup"] == [b"last"]

    # Nats-* record headers are renamed; nothing reaches the server under a Nats- name but the msg id
    m = stored[2]
    assert m.get("Kafka-Header-Nats-Msg-Id") == b"evil"
    assert m.get("Kafka-Header-nats-expected-stream") == b"NOPE"
    assert m.get("Kafka-Header-Nats-TTL") == b"1s"
    assert [n for n, _ in m.headers if n.lower().startswith("nats-")] == ["Nats-Msg-Id"]

    # a null key is empty; a tombstone has an empty payload
    assert stored[3].get("kafka_key") == b""
    assert stored[3].data == b"v3"
    assert stored[4].get("kafka_key") == b"gone"
    assert stored[4].data == b""
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 5}


async def test_record_headers_cannot_change_the_default_msg_id(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """README: every publish carries ``Nats-Msg-Id`` = ``<topic>-<partition>-<offset>`` by default, and
    a record is never silently dropped. Records whose Kafka headers are named like the metadata keys
    of the default msg id must still each be stored under their own coordinates."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(
        kafka.bootstrap, topic,
        [
            Record(0, b"a", b"r0"),
            Record(0, b"b", b"r1", (("kafka_offset", b"0"),)),
            Record(0, b"c", b"r2", (("kafka_partition", b"9"), ("kafka_offset", b"0"))),
        ],
    )  # fmt: skip
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.shadow")  # fmt: skip
    code, _, stderr = backfill(cfg)
    assert code == 0, stderr[-3000:]
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 3}
    stored = await raw_stream(nats_url, stream)
    assert [m.data for m in stored] == [b"r0", b"r1", b"r2"]  # none dropped as a "duplicate"
    assert [m.text("Nats-Msg-Id") for m in stored] == await msg_ids(kafka.bootstrap, topic, 0, range(3))


# ----------------------------------------------------------------------------------- subjects with a meaning


async def test_a_key_naming_a_jetstream_api_subject_never_reaches_the_api(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """``subject: ${! @kafka_key }`` and a hostile key: a publish to ``$JS.API.STREAM.DELETE.<stream>``
    would delete the stream, to ``_INBOX.…`` it would answer somebody's request. Such records are
    dead-lettered; the stream is untouched."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    victim = f"{stream}_VICTIM"
    await create_topic(kafka.bootstrap, topic, 1)
    await create_stream(nats_url, victim, [f"victim.{stream}"])
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    keys = [
        f"{prefix}.ok",
        f"$JS.API.STREAM.DELETE.{victim}",
        "_INBOX.abc.1",
        "$SYS.REQ.SERVER.PING",
        f"{prefix}.ok2",
    ]
    await produce(kafka.bootstrap, topic, [Record(0, k.encode(), b"v") for k in keys])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject='${! @kafka_key }',
                       bridge={"dead_letter": {"subject": f"{prefix}.dlq"}})  # fmt: skip
    code, _, stderr = backfill(cfg)
    assert code == 0, stderr[-3000:]
    stored = await raw_stream(nats_url, stream)
    assert [m.subject for m in stored if m.subject != f"{prefix}.dlq"] == [f"{prefix}.ok", f"{prefix}.ok2"]
    dead = sorted((m.offset[1], m.text("Bridge-Error-Kind")) for m in stored if m.subject == f"{prefix}.dlq")
    assert dead == [(1, "subject"), (2, "subject"), (3, "subject")]
    assert await stream_count(nats_url, victim) == 0  # still there: stream_count raises on a missing stream
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 5}


async def test_a_header_the_stream_rejects_for_good_is_dead_lettered_at_once(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """A configured ``Nats-Expected-Stream`` naming another stream: JetStream answers 10060 for every
    attempt, so the record goes to the dead-letter subject at once instead of being retried until
    ``retry_timeout``."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    await produce(kafka.bootstrap, topic, [Record(0, b"k", f"v{i}".encode()) for i in range(3)])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.data",
                       extra_output={"headers": {"Nats-Expected-Stream": "SOMEWHERE_ELSE"}},
                       bridge={"dead_letter": {"subject": f"{prefix}.dlq"}, "retry_timeout": "5m"})  # fmt: skip
    began = time.monotonic()
    code, _, stderr = backfill(cfg)
    assert code == 0, stderr[-3000:]
    assert time.monotonic() - began < 30
    stored = await raw_stream(nats_url, stream)
    assert [(m.subject, m.text("Bridge-Error-Kind")) for m in stored] == [(f"{prefix}.dlq", "jetstream")] * 3
    assert "10060" in (stored[0].text("Bridge-Error") or "")
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 3}


async def test_a_record_the_stream_refused_is_dead_lettered_without_payload_and_stored_when_sent_again(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """The stream's own max_msg_size (smaller than the server's max_payload) refuses a record after it was
    sent (JetStream 10054): it is dead-lettered without its payload (a dead-letter in the same stream
    would be refused too), and its dead-letter does not carry the record's own Nats-Msg-Id, so once the
    stream takes larger messages a second backfill stores the record instead of dropping it as a
    duplicate."""
    topic, stream, prefix = names["topic"], names["stream"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await create_stream(nats_url, stream, [f"{prefix}.>"], max_msg_size=500)
    await produce(kafka.bootstrap, topic, [Record(0, b"k", b"small"), Record(0, b"k", b"B" * 1000),
                                           Record(0, b"k", b"small2")])  # fmt: skip
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=names["group"],
                       nats_url=nats_url, subject=f"{prefix}.data",
                       bridge={"dead_letter": {"subject": f"{prefix}.dlq"}})  # fmt: skip
    code, _, stderr = backfill(cfg)
    assert code == 0, stderr[-3000:]
    stored = await raw_stream(nats_url, stream)
    assert [m.data for m in stored if m.subject == f"{prefix}.data"] == [b"small", b"small2"]
    (dead,) = [m for m in stored if m.subject == f"{prefix}.dlq"]
    assert (dead.offset[1], dead.text("Bridge-Error-Kind")) == (1, "stream_size")
    assert (dead.data, dead.text("Bridge-Payload-Omitted")) == (b"", "1000")

    await set_stream_limit(nats_url, stream, max_msg_size=4096)
    again = write_config(workdir / "again.yaml", brokers=kafka.bootstrap, topics=[topic],
                         group=names["group"] + "-again", nats_url=nats_url, subject=f"{prefix}.data")  # fmt: skip
    code, stdout, stderr = backfill(again)
    assert code == 0, stderr[-3000:]
    summary = json.loads(stdout[stdout.index("{") :])
    assert (summary["records"], summary["duplicates"]) == (3, 2)  # the refused one is new to the stream
    stored = await raw_stream(nats_url, stream)
    assert [m.data for m in stored if m.subject == f"{prefix}.data"] == [b"small", b"small2", b"B" * 1000]


async def test_a_record_refused_alone_while_later_ones_are_stored_is_reported_as_an_order_violation(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """README, "Order per partition": the server judges each publish on its own. A stream with
    ``max_bytes`` and ``discard: new`` refuses a large record for a reason a retry may fix ("maximum bytes
    exceeded") while the small records after it, already on the wire, fit and are stored. The bridge
    cannot unsend them: it re-sends the refused record once the stream takes it, loses nothing, commits
    nothing early — and says so: an ``order_violation`` error line (and ``order_violations_total``)."""
    topic, stream, prefix = names["topic"], names["stream"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await create_stream(nats_url, stream, [f"{prefix}.>"], max_bytes=2000, discard="new")
    payloads = [b"s0" * 50, b"B" * 3000, b"s2" * 50, b"s3" * 50]
    await produce(kafka.bootstrap, topic, [Record(0, b"k", p) for p in payloads])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=names["group"],
                       nats_url=nats_url, subject=f"{prefix}.data",
                       bridge={"retry_timeout": "5m"})  # fmt: skip
    with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:

        async def halted() -> list:
            assert bridge.proc.poll() is None, bridge.logs()[-3000:]
            events = bridge.events("lane_halted")
            assert events, "no lane halted yet"
            return events

        (event, *_) = await eventually(halted)
        assert "maximum bytes exceeded" in event["error"]
        assert await stream_count(nats_url, stream) == 3  # the records after it were stored
        await set_stream_limit(nats_url, stream, max_bytes=1 << 20)

        async def all_stored() -> None:
            assert await stream_count(nats_url, stream) == 4

        await eventually(all_stored)

        async def committed() -> None:
            assert await committed_offsets(kafka.bootstrap, names["group"], topic) == {0: 4}

        await eventually(committed)
        assert bridge.stop() == 0, bridge.logs()[-3000:]
    stored = await raw_stream(nats_url, stream)
    assert [m.data for m in stored] == [payloads[0], payloads[2], payloads[3], payloads[1]]
    (violation,) = bridge.events("order_violation")
    assert violation["stored_late"].endswith(f"{topic}-0-1")


@pytest.mark.parametrize("name", ["bad name", "tab\tname", "Zürich", "a:b", ""])
async def test_a_header_name_nats_cannot_carry_makes_a_bad_record_not_a_renamed_header(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path, name: str
) -> None:
    """README, "Text rules": Kafka allows any header name, NATS only printable ASCII without ':'. A record
    whose selected headers include such a name goes to the dead-letter subject whole (kind ``header``),
    with nothing renamed or dropped; the records around it are stored."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    records = [Record(0, b"k", b"v0", (("ok", b"1"),)),
               Record(0, b"k", b"v1", (("ok", b"2"), (name, b"odd"))),
               Record(0, b"k", b"v2", (("ok", b"3"),))]  # fmt: skip
    await produce(kafka.bootstrap, topic, records)
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.data",
                       extra_output={"metadata": {"include_patterns": [".*"]}},
                       bridge={"dead_letter": {"subject": f"{prefix}.dlq"}})  # fmt: skip
    code, _, stderr = backfill(cfg)
    assert code == 0, stderr[-3000:]
    # routed (with the reason), then acknowledged by the dead-letter subject's stream: one line each
    assert [e["offset"] for e in events(stderr, "dead_lettering")] == [1]
    assert "header name" in events(stderr, "dead_lettering")[0]["reason"]
    assert [e["offset"] for e in events(stderr, "dead_lettered")] == [1]
    stored = await raw_stream(nats_url, stream)
    assert [(m.subject, m.data, m.text("ok")) for m in stored if m.subject.endswith(".data")] == [
        (f"{prefix}.data", b"v0", "1"), (f"{prefix}.data", b"v2", "3")
    ]  # fmt: skip
    (dead,) = [m for m in stored if m.subject == f"{prefix}.dlq"]
    assert (dead.offset, dead.data, dead.text("Bridge-Error-Kind")) == ((0, 1), b"v1", "header")
    assert "header name" in (dead.text("Bridge-Error") or "")
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 3}


def events(stderr: str, name: str) -> list[dict]:
    found = []
    for line in stderr.splitlines():
        if line.startswith("{") and json.loads(line).get("event") == name:
            found.append(json.loads(line))
    return found


async def test_a_reorder_left_by_an_earlier_run_is_reported_by_the_run_that_stores_the_record(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """README, "Order per partition": a record refused alone until ``retry_timeout`` ends the run (exit 1,
    nothing committed past it) while the records behind it were stored. The next run, once the stream
    takes it, stores it after them: the later records come back as duplicates at lower stream
    sequences, which the bridge reports as an ``order_violation`` (``stored_early``)."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await create_stream(nats_url, stream, [f"{prefix}.>"], max_bytes=2000, discard="new")
    payloads = [b"s0" * 50, b"B" * 3000, b"s2" * 50, b"s3" * 50]
    await produce(kafka.bootstrap, topic, [Record(0, b"k", p) for p in payloads])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.data", bridge={"retry_timeout": "3s"})  # fmt: skip
    code, stdout, stderr = backfill(cfg)
    assert code == 1, stderr[-3000:]
    assert [p["undelivered"] for p in json.loads(stdout[stdout.index("{") :])["partitions"]] == [1]
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 1}  # not past the refused one
    assert not events(stderr, "order_violation")  # nothing stored out of order yet: 1 is not stored

    await set_stream_limit(nats_url, stream, max_bytes=1 << 20)
    code, stdout, stderr = backfill(cfg)
    assert code == 0, stderr[-3000:]
    stored = await raw_stream(nats_url, stream)
    assert [m.data for m in stored] == [payloads[0], payloads[2], payloads[3], payloads[1]]
    (violation,) = events(stderr, "order_violation")
    assert violation["stored_early"].endswith(f"{topic}-0-2")
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 4}


async def test_a_dead_letter_no_stream_takes_is_never_said_dead_lettered(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """A bad record routed to a dead-letter subject no stream binds: ``dead_lettering`` says where it was
    sent, ``dead_lettered`` is never written (nothing holds it), the backfill counts it undelivered,
    exits 1 and commits nothing past it."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await create_stream(nats_url, stream, [f"{prefix}.data"])  # the dead-letter subject is not bound
    records = [Record(0, b"k", b"v0"), Record(0, b"k", b"v1", (("bad name", b"x"),)), Record(0, b"k", b"v2")]
    await produce(kafka.bootstrap, topic, records)
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.data",
                       extra_output={"metadata": {"include_patterns": [".*"]}},
                       bridge={"dead_letter": {"subject": f"{prefix}.dlq"}, "retry_timeout": "2s"})  # fmt: skip
    code, stdout, stderr = backfill(cfg)
    assert code == 1, stderr[-3000:]
    assert [e["offset"] for e in events(stderr, "dead_lettering")] == [1]
    assert events(stderr, "dead_lettered") == []
    (part,) = json.loads(stdout[stdout.index("{") :])["partitions"]
    assert (part["dead_lettered"], part["undelivered"]) == (0, 1)
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 1}
