"""Bad input through the real CLI: a clear message, a documented exit code, nothing committed.

Config problems are found before anything connects (exit 2); unreachable brokers fail within a
bounded time (exit 3); records that can never be published stop their partition (exit 1) with
nothing committed past them.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from bridgedev.brokers import free_port
from tests.conftest import Kafka
from tests.support import (
    Record,
    committed_offsets,
    create_stream,
    create_topic,
    produce,
    run_cli,
    stream_count,
    write_config,
)

VALID = """\
input:
  kafka_franz:
    seed_brokers: [127.0.0.1:9]
    topics: [orders]
    consumer_group: g
output:
  nats_jetstream:
    urls: [nats://127.0.0.1:9]
    subject: orders.${! meta("kafka_partition") }
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(VALID.replace("topics: [orders]", "topics: [orders"), r":5: invalid YAML", id="yaml"),
        pytest.param(VALID.replace("    subject:", "    subjekt:"), r":9: output\.nats_jetstream\.subjekt: unknown field", id="unknown"),
        pytest.param(VALID + "    max_in_flight: lots\n", r":10: output\.nats_jetstream\.max_in_flight: expected a whole number", id="type"),
        pytest.param(VALID.replace("consumer_group: g", "consumer_group: ${NO_SUCH_VAR_X}"), r":5: input\.kafka_franz\.consumer_group: environment variable NO_SUCH_VAR_X is not set", id="env"),
        pytest.param(VALID.replace('meta("kafka_partition")', 'metaa("kafka_partition")'), r":9: output\.nats_jetstream\.subject: unknown function 'metaa'", id="template"),
        pytest.param(VALID.replace("kafka_franz:", "amqp_0_9:"), r":2: input\.amqp_0_9: input type 'amqp_0_9' is not implemented", id="component"),
    ],
)  # fmt: skip
def test_config_errors_name_path_and_line(tmp_path: Path, text: str, expected: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    for args in (("lint", str(cfg)), ("run", "-c", str(cfg)), ("backfill", "-c", str(cfg))):
        done = run_cli(*args, timeout=30)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        output = done.stdout + done.stderr
        assert re.search(re.escape(str(cfg)) + expected, output), output


def test_lint_accepts_a_valid_config(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(VALID)
    done = run_cli("lint", str(cfg), timeout=30)
    assert done.returncode == 0, done.stdout
    assert done.stdout.strip() == f"{cfg}: ok"


def test_kafka_unreachable_fails_within_bounded_time(nats_url: str, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    cfg = write_config(tmp_path / "c.yaml", brokers=f"127.0.0.1:{port}", topics=["t"], group="g",
                       nats_url=nats_url, subject="x.y")  # fmt: skip
    started = time.monotonic()
    done = run_cli("backfill", "-c", str(cfg), timeout=90)
    elapsed = time.monotonic() - started
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"Kafka (127.0.0.1:{port}) unreachable" in done.stderr + done.stdout
    assert elapsed < 60


def test_nats_unreachable_fails_within_bounded_time(kafka: Kafka, tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "c.yaml", brokers=kafka.bootstrap, topics=["t"], group="g",
                       nats_url=f"nats://127.0.0.1:{port}", subject="x.y",
                       extra_output={"max_reconnects": 2})  # fmt: skip
    started = time.monotonic()
    done = run_cli("backfill", "-c", str(cfg), timeout=90)
    elapsed = time.monotonic() - started
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"NATS (nats://127.0.0.1:{port}) unreachable" in done.stderr + done.stdout
    assert elapsed < 30


# What each broker answers a SASL handshake on a listener without SASL, as the bridge reports it.
NO_SASL = {
    # Apache Kafka's PLAINTEXT listener: SaslHandshake → ILLEGAL_SASL_STATE
    "kafka": "refused SASL: the listener does not speak SASL (is it a PLAINTEXT or SSL listener? check the port or remove sasl)",
    # Tansu speaks no SASL: SaslHandshake → UNSUPPORTED_SASL_MECHANISM
    "tansu": "refused SASL: the listener does not offer the SASL mechanism PLAIN (check sasl.mechanism, and that this listener speaks SASL at all)",
}


async def test_sasl_against_a_listener_without_sasl_says_so(
    kafka: Kafka, nats_url: str, names: dict, tmp_path: Path
) -> None:
    """README, exit codes: a broker that refuses us is exit 3; the message names the mismatch, not
    "unreachable" (before: "unreachable: ... IllegalSaslStateError")."""
    if kafka.name not in NO_SASL:
        pytest.skip("an external broker's listener may well speak SASL")
    topic, group = names["topic"], names["group"]
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(kafka.bootstrap, topic, [Record(0, b"k", b"v")])
    sasl = [{"mechanism": "PLAIN", "username": "alice", "password": "alice-secret"}]
    cfg = write_config(tmp_path / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{names['prefix']}.x", extra_input={"sasl": sasl})  # fmt: skip
    started = time.monotonic()
    done = run_cli("backfill", "-c", str(cfg), "--json", timeout=90)
    elapsed = time.monotonic() - started
    assert done.returncode == 3, done.stderr[-2000:]
    output = done.stdout + done.stderr
    assert f"Kafka ({kafka.bootstrap}) {NO_SASL[kafka.name]}" in output, output[-2000:]
    assert "unreachable" not in output
    assert elapsed < 30  # refused at once: not retried
    assert await committed_offsets(kafka.bootstrap, group, topic) == {}


async def test_no_stream_for_subject_names_it_and_commits_nothing(
    kafka: Kafka, nats_url: str, names: dict, tmp_path: Path
) -> None:
    topic, group, prefix = names["topic"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(kafka.bootstrap, topic, [Record(0, b"k", b"v%d" % i) for i in range(5)])
    cfg = write_config(tmp_path / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=f"{prefix}.nowhere",
                       bridge={"ack_timeout": "2s", "retry_timeout": "3s"})  # fmt: skip
    done = run_cli("backfill", "-c", str(cfg), timeout=90)
    assert done.returncode == 1, done.stderr[-2000:]
    assert (
        f"publish to '{prefix}.nowhere' failed: no JetStream stream is bound to this subject" in done.stdout
    )
    assert await committed_offsets(kafka.bootstrap, group, topic) == {}


async def test_failing_interpolation_stops_the_partition(
    kafka: Kafka, nats_url: str, names: dict, tmp_path: Path
) -> None:
    """json() on a payload that is not JSON: the partition stops at that record; the one before is committed."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    await produce(
        kafka.bootstrap, topic,
        [Record(0, b"k", b'{"type": "a"}'), Record(0, b"k", b"not json"), Record(0, b"k", b'{"type": "b"}')],
    )  # fmt: skip
    cfg = write_config(tmp_path / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=prefix + '.${! json("type") }')  # fmt: skip
    done = run_cli("backfill", "-c", str(cfg), timeout=90)
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"partition {topic}/0 stopped at offset 1" in done.stdout
    assert "payload is not valid JSON" in done.stdout
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 1}
    assert await stream_count(nats_url, stream) == 1


async def test_failing_interpolation_goes_to_the_dead_letter_subject(
    kafka: Kafka, nats_url: str, names: dict, tmp_path: Path
) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    await produce(
        kafka.bootstrap, topic,
        [Record(0, b"k", b'{"type": "a"}'), Record(0, b"k", b"not json"), Record(0, b"k", b'{"type": "b"}')],
    )  # fmt: skip
    cfg = write_config(tmp_path / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group,
                       nats_url=nats_url, subject=prefix + '.${! json("type") }',
                       bridge={"dead_letter": {"subject": f"{prefix}.dlq"}})  # fmt: skip
    done = run_cli("backfill", "-c", str(cfg), timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    assert await committed_offsets(kafka.bootstrap, group, topic) == {0: 3}
    assert await stream_count(nats_url, stream) == 3


def test_backfill_of_a_missing_topic_fails_fast(
    kafka: Kafka, nats_url: str, names: dict, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "c.yaml", brokers=kafka.bootstrap, topics=[names["topic"]], group=names["group"],
                       nats_url=nats_url, subject="x.y")  # fmt: skip
    started = time.monotonic()
    done = run_cli("backfill", "-c", str(cfg), timeout=90)
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"has no topic '{names['topic']}'" in done.stdout + done.stderr
    assert time.monotonic() - started < 30
