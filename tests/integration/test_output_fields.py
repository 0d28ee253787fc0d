"""The ``nats_jetstream`` fields that shape what is published, through real runs of the CLI.

``subject`` and ``headers`` with the reference page's own examples, ``metadata.include_prefixes`` /
``include_patterns``, the ``Nats-*`` rename rule (a Kafka header must not change server behaviour),
``max_in_flight`` (measured by a stand-in for JetStream that holds its acks), ``label`` (the connection
name in the server's ``/connz``), ``urls`` (comma items, a dead server beside a live one) and
``inject_tracing_map`` (W3C trace context from a Kafka ``traceparent`` to a NATS header).

The module has its own nats-server (its monitoring port is needed); the Kafka side does not matter
here, so the tests run on the first Kafka implementation only.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from bridgedev.brokers import NatsServer, free_port
from tests.conftest import KAFKA_PARAMS, Kafka
from tests.integration.secured_support import Run, run_backfill
from tests.support import Record, create_stream, create_topic, msg_ids, produce, read_stream

pytestmark = pytest.mark.integration
one_kafka = pytest.mark.parametrize("kafka", KAFKA_PARAMS[:1], indirect=True)

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


@pytest.fixture(scope="module")
def server() -> Iterator[NatsServer]:
    with NatsServer(name="output-fields") as s:
        yield s


async def topic_with(kafka: Kafka, names: dict[str, str], records: list[Record], partitions: int = 1) -> None:
    await create_topic(kafka.bootstrap, names["topic"], partitions)
    await produce(kafka.bootstrap, names["topic"], records)


def backfill(
    kafka: Kafka, names: dict[str, str], workdir: Path, url: str, subject: str, **output: Any
) -> Run:
    label = output.pop("label", None)
    run = run_backfill(
        workdir, brokers=kafka.bootstrap, topics=[names["topic"]], group=names["group"], nats_url=url,
        subject=subject, extra_output=output, label=label,
    )  # fmt: skip
    return run


def ok(run: Run) -> dict[str, Any]:
    assert run.code == 0, run.text[-3000:]
    return run.summary


# ----------------------------------------------------------------------------------- subject and headers


@one_kafka
async def test_reference_subject_and_headers_examples(
    server: NatsServer, kafka: Kafka, names: dict, workdir: Path
) -> None:
    """``subject: foo.${! json("meta.type") }`` and ``headers: {Content-Type: application/json,
    Timestamp: ${!meta("Timestamp")}}``, verbatim from the reference page, rendered per message."""
    records = [
        Record(
            0,
            b"a",
            json.dumps({"meta": {"type": kind}, "n": i}).encode(),
            (("Timestamp", f"ts-{i}".encode()),),
        )
        for i, kind in enumerate(["created", "deleted", "created"])
    ]
    await topic_with(kafka, names, records)
    await create_stream(server.url, names["stream"], ["foo.*"])
    run = backfill(kafka, names, workdir, server.url, 'foo.${! json("meta.type") }',
                   headers={"Content-Type": "application/json", "Timestamp": '${!meta("Timestamp")}'})  # fmt: skip
    assert ok(run)["records"] == 3
    stored = await read_stream(server.url, names["stream"])
    assert [m.subject for m in stored] == ["foo.created", "foo.deleted", "foo.created"]
    assert [m.headers["Timestamp"] for m in stored] == ["ts-0", "ts-1", "ts-2"]
    assert {m.headers["Content-Type"] for m in stored} == {"application/json"}
    assert "kafka_topic" not in stored[0].headers, "no metadata without metadata.include_*"


@one_kafka
@pytest.mark.parametrize("subject", ['${! meta("kafka_topic") }', "foo.bar.baz"])
async def test_reference_subject_examples(
    server: NatsServer, kafka: Kafka, names: dict, workdir: Path, subject: str
) -> None:
    await topic_with(kafka, names, [Record(0, None, b"x"), Record(0, None, b"y")])
    # the module's own server: the literal "foo.bar.baz" belongs to this test alone
    expected = names["topic"] if "kafka_topic" in subject else subject
    await create_stream(server.url, names["stream"], [expected])
    ok(backfill(kafka, names, workdir, server.url, subject))
    assert [m.subject for m in await read_stream(server.url, names["stream"])] == [expected, expected]


@one_kafka
async def test_metadata_include_prefixes_and_patterns(
    server: NatsServer, kafka: Kafka, names: dict, workdir: Path
) -> None:
    """Prefixes and unanchored (RE2-style) patterns select the metadata that become headers, after the
    configured headers and before ``Nats-Msg-Id``."""
    headers = (
        ("foo_a", b"1"),
        ("bar_b", b"2"),
        ("baz_c", b"3"),
        ("content-type", b"text/plain"),
        ("app_id", b"7"),
    )
    await topic_with(kafka, names, [Record(0, b"key", b"v", headers)])
    await create_stream(server.url, names["stream"], [f"{names['prefix']}.>"])
    ok(backfill(kafka, names, workdir, server.url, names["prefix"] + ".x",
                headers={"X-First": "configured"},
                metadata={"include_prefixes": ["foo_", "content-"],
                          "include_patterns": ["_id$", "_timestamp_unix$", "ey$"]}))  # fmt: skip
    [m] = await read_stream(server.url, names["stream"])
    ours = [name for name in m.headers if not name.startswith("Nats-") or name == "Nats-Msg-Id"]
    # configured headers, then metadata in metadata order (kafka_* first, then the record's), then the id
    assert ours == ["X-First", "kafka_key", "kafka_timestamp_unix", "foo_a", "content-type", "app_id",
                    "Nats-Msg-Id"]  # fmt: skip
    assert m.headers["kafka_key"] == "key"  # "ey$" found inside the name: patterns are not anchored


@one_kafka
async def test_match_everything_pattern(server: NatsServer, kafka: Kafka, names: dict, workdir: Path) -> None:
    await topic_with(kafka, names, [Record(0, b"k", b"v", (("h", b"1"),))])
    await create_stream(server.url, names["stream"], [f"{names['prefix']}.>"])
    ok(
        backfill(
            kafka, names, workdir, server.url, names["prefix"] + ".x", metadata={"include_patterns": [".*"]}
        )
    )
    [m] = await read_stream(server.url, names["stream"])
    for key in ("kafka_key", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp_unix",
                "kafka_timestamp_ms", "kafka_tombstone_message", "kafka_lag", "h"):  # fmt: skip
        assert key in m.headers, key


@one_kafka
async def test_kafka_nats_headers_do_not_change_server_behaviour(
    server: NatsServer, kafka: Kafka, names: dict, workdir: Path
) -> None:
    """Kafka headers named ``Nats-*`` reach NATS as ``Kafka-Header-Nats-*``: two records with the same
    ``Nats-Msg-Id`` header are both stored, ``Nats-Expected-Stream: other`` does not get them rejected."""
    spoof = (
        ("Nats-Msg-Id", b"same"),
        ("Nats-Expected-Stream", b"other"),
        ("nats-expected-last-sequence", b"999"),
    )
    await topic_with(kafka, names, [Record(0, b"k", b"one", spoof), Record(0, b"k", b"two", spoof)])
    await create_stream(server.url, names["stream"], [f"{names['prefix']}.>"])
    summary = ok(backfill(kafka, names, workdir, server.url, names["prefix"] + ".x",
                          metadata={"include_patterns": [".*"]}))  # fmt: skip
    assert summary["records"] == 2
    assert summary["duplicates"] == 0
    stored = await read_stream(server.url, names["stream"])
    assert [m.data for m in stored] == [b"one", b"two"]
    for offset, m in enumerate(stored):
        assert m.headers["Kafka-Header-Nats-Msg-Id"] == "same"
        assert m.headers["Kafka-Header-Nats-Expected-Stream"] == "other"
        assert m.headers["Kafka-Header-nats-expected-last-sequence"] == "999"
        assert m.headers["Nats-Msg-Id"] == (await msg_ids(kafka.bootstrap, names["topic"], 0, [offset]))[0]


@one_kafka
async def test_configured_nats_headers_are_sent_on_purpose(
    server: NatsServer, kafka: Kafka, names: dict, workdir: Path
) -> None:
    """The counterpart: ``headers: {Nats-Msg-Id: ...}`` is the operator's choice and is obeyed (it also
    replaces ``bridge.msg_id``): records with the same key are one message to the stream."""
    await topic_with(kafka, names, [Record(0, b"a", b"1"), Record(0, b"b", b"2"), Record(0, b"a", b"3")])
    await create_stream(server.url, names["stream"], [f"{names['prefix']}.>"])
    summary = ok(backfill(kafka, names, workdir, server.url, names["prefix"] + ".x",
                          headers={"Nats-Msg-Id": '${! meta("kafka_key") }'}))  # fmt: skip
    assert (summary["records"], summary["duplicates"]) == (3, 1)
    stored = await read_stream(server.url, names["stream"])
    assert [(m.data, m.headers["Nats-Msg-Id"]) for m in stored] == [(b"1", "a"), (b"2", "b")]


# ----------------------------------------------------------------------------------- connection fields


def closed_connections(server: NatsServer) -> list[dict[str, Any]]:
    return list(server.monitor("/connz?state=closed&limit=4096")["connections"] or [])


@one_kafka
async def test_label_is_the_connection_name(
    server: NatsServer, kafka: Kafka, names: dict, workdir: Path
) -> None:
    label = f"bridge-{names['group']}"
    await topic_with(kafka, names, [Record(0, None, b"x")])
    await create_stream(server.url, names["stream"], [f"{names['prefix']}.>"])
    ok(backfill(kafka, names, workdir, server.url, names["prefix"] + ".x", label=label))
    mine = [c for c in closed_connections(server) if c.get("name") == label]
    assert len(mine) == 1, [c.get("name") for c in closed_connections(server)]
    assert mine[0]["lang"] == "python3"


@one_kafka
@pytest.mark.parametrize("dead_first", [True, False])
async def test_urls_comma_item_with_a_dead_server(
    server: NatsServer, kafka: Kafka, names: dict, workdir: Path, dead_first: bool
) -> None:
    """``urls: ["nats://dead,nats://live"]`` is two servers; with ``max_reconnects: 0`` (one connection
    attempt) the live one is still found, whichever comes first."""
    dead = f"nats://127.0.0.1:{free_port()}"
    urls = f"{dead},{server.url}" if dead_first else f"{server.url},{dead}"
    await topic_with(kafka, names, [Record(0, None, b"x")])
    await create_stream(server.url, names["stream"], [f"{names['prefix']}.>"])
    run = backfill(
        kafka, names, workdir, urls, names["prefix"] + ".x", max_reconnects=0, label=names["group"]
    )
    assert ok(run)["records"] == 1
    assert [c.get("name") for c in closed_connections(server)].count(names["group"]) == 1


@one_kafka
async def test_max_in_flight_bounds_unacknowledged_publishes(
    server: NatsServer, kafka: Kafka, names: dict, workdir: Path
) -> None:
    """A stand-in for JetStream answers the bridge's publishes itself and holds its acks: it acks the
    oldest one only when ``max_in_flight`` are waiting (or when nothing new came for a while, at the
    end). The most it ever sees waiting is exactly ``max_in_flight``."""
    limit, total = 3, 12
    await topic_with(kafka, names, [Record(0, None, f"{i}".encode()) for i in range(total)])
    subject = names["prefix"] + ".x"
    nc = await nats.connect(server.url)
    waiting: list[Any] = []
    most = 0
    seq = 0
    arrived = asyncio.Event()

    async def on_publish(msg: Any) -> None:
        nonlocal most
        waiting.append(msg)
        most = max(most, len(waiting))
        arrived.set()

    async def acker() -> None:
        nonlocal seq
        while True:
            arrived.clear()
            if len(waiting) < limit:
                try:
                    await asyncio.wait_for(arrived.wait(), 0.5)
                    continue
                except TimeoutError:
                    if not waiting:
                        continue
            msg = waiting.pop(0)
            seq += 1
            await nc.publish(msg.reply, json.dumps({"stream": "STANDIN", "seq": seq}).encode())

    await nc.subscribe(subject, cb=on_publish)
    await nc.flush()
    task = asyncio.create_task(acker())
    try:
        run = await asyncio.to_thread(
            backfill, kafka, names, workdir, server.url, subject, max_in_flight=limit
        )
    finally:
        task.cancel()
        await nc.close()
    assert ok(run)["records"] == total
    assert seq == total
    assert most == limit


# ----------------------------------------------------------------------------------- inject_tracing_map


@one_kafka
async def test_inject_tracing_map_metadata_form(
    server: NatsServer, kafka: Kafka, names: dict, workdir: Path
) -> None:
    """``meta = @.merge(this)``: a record with a ``traceparent`` header continues its trace (same trace id,
    a new span id), one without starts a trace; the context reaches NATS through the metadata filter."""
    parent_trace, parent_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    records = [
        Record(0, b"k", b"traced", (("traceparent", f"00-{parent_trace}-{parent_span}-01".encode()),
                                    ("tracestate", b"vendor=1"))),
        Record(0, b"k", b"untraced"),
    ]  # fmt: skip
    await topic_with(kafka, names, records)
    await create_stream(server.url, names["stream"], [f"{names['prefix']}.>"])
    ok(backfill(kafka, names, workdir, server.url, names["prefix"] + ".x",
                inject_tracing_map="meta = @.merge(this)", metadata={"include_prefixes": ["trace"]}))  # fmt: skip
    traced, untraced = await read_stream(server.url, names["stream"])
    got = TRACEPARENT.match(traced.headers["traceparent"])
    assert got is not None
    assert got.group(1) == parent_trace
    assert got.group(2) != parent_span
    assert traced.headers["tracestate"] == "vendor=1"
    fresh = TRACEPARENT.match(untraced.headers["traceparent"])
    assert fresh is not None
    assert fresh.group(1) != parent_trace


@one_kafka
async def test_inject_tracing_map_payload_form(
    server: NatsServer, kafka: Kafka, names: dict, workdir: Path
) -> None:
    """``root.meta.span = this`` writes into the JSON payload (Bloblang's ``root`` is the message), not
    into the metadata: no header appears."""
    await topic_with(kafka, names, [Record(0, b"k", b'{"id": 1}')])
    await create_stream(server.url, names["stream"], [f"{names['prefix']}.>"])
    ok(backfill(kafka, names, workdir, server.url, names["prefix"] + ".x",
                inject_tracing_map="root.meta.span = this", metadata={"include_prefixes": ["trace"]}))  # fmt: skip
    [m] = await read_stream(server.url, names["stream"])
    body = json.loads(m.data)
    assert body["id"] == 1
    assert TRACEPARENT.match(body["meta"]["span"]["traceparent"])
    assert "traceparent" not in m.headers
