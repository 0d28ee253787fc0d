"""The local brokers of ``bridgedev.brokers`` against the real binaries: nats-server (single and clustered),
Apache Kafka (KRaft) and Tansu. Each test starts what it needs and leaves nothing running."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import nats
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from nats.js.api import StreamConfig

REPO = Path(__file__).resolve().parents[2]
try:
    from bridgedev import brokers as devenv
except ModuleNotFoundError:  # neither installed nor put on sys.path by a conftest
    sys.path.insert(0, str(REPO))
    from bridgedev import brokers as devenv

pytestmark = pytest.mark.integration

T = TypeVar("T")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def eventually(fn: Callable[[], Awaitable[T]], within: float = 20.0) -> T:
    """``await fn()`` until it stops raising, for up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await fn()
        except Exception:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------------------------
# nats-server


async def test_nats_jetstream_publish_and_restart_keeps_data() -> None:
    with devenv.NatsServer() as server:
        assert server.running
        assert server.url == f"nats://127.0.0.1:{server.port}"
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="DEVENV", subjects=["devenv.>"]))
            ack = await js.publish("devenv.one", b"hello")
            assert (ack.stream, ack.seq) == ("DEVENV", 1)
        finally:
            await nc.close()

        first_pid = server.pid
        server.restart()
        assert server.pid != first_pid
        assert first_pid is not None
        assert not pid_alive(first_pid)

        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            info = await js.stream_info("DEVENV")
            assert info.state.messages == 1
            msg = await js.get_msg("DEVENV", 1)
            assert msg.data == b"hello"
            assert (await js.publish("devenv.two", b"again")).seq == 2
        finally:
            await nc.close()


async def test_nats_pause_and_resume() -> None:
    with devenv.NatsServer() as server:
        nc = await nats.connect(server.url)
        try:
            server.pause()
            assert server.running  # stopped, not dead
            with pytest.raises(TimeoutError):  # a hung server: the monitoring port accepts, nothing answers
                server.healthz()
            server.resume()
            assert server.healthz()
            # (no flush() while paused: a timed-out flush leaves nats-py's PONG queue out of step)
            await nc.jetstream().add_stream(StreamConfig(name="PAUSE", subjects=["pause.>"]))
            assert (await nc.jetstream().publish("pause.x", b"x")).seq == 1
        finally:
            await nc.close()


async def test_nats_extra_conf_and_caller_store_dir(tmp_path: Path) -> None:
    store = tmp_path / "store"
    conf = 'authorization {\n  user: "alice"\n  password: "s3cret"\n}'
    server = devenv.NatsServer(store_dir=store, extra_conf=conf, name="auth-node").start()
    try:
        assert server.healthz(js_enabled_only=True)  # monitoring is unauthenticated plain http
        assert server.monitor("/varz")["server_name"] == "auth-node"
        assert server.monitor("/varz")["auth_required"] is True
        nc = await nats.connect(server.url, user="alice", password="s3cret")
        try:
            await nc.jetstream().add_stream(StreamConfig(name="AUTH", subjects=["auth.>"]))
        finally:
            await nc.close()
    finally:
        pid, work = server.pid, server.work_dir
        server.stop()
    assert pid is not None
    assert not pid_alive(pid)
    assert not server.running
    assert not work.exists()  # our temporary directory is gone ...
    assert (store / "jetstream").is_dir()  # ... the caller's store is not


def test_nats_bad_config_fails_with_log_tail() -> None:
    server = devenv.NatsServer(extra_conf="this is { not valid")
    try:
        with pytest.raises(RuntimeError, match=r"exited before it became ready \(exit code 1\)") as err:
            server.start(timeout=10)
        assert "Parse error on line" in str(err.value)  # nats-server's complaint, from its stderr
        assert not server.running
    finally:
        server.stop()


def test_kill_and_atexit_leave_no_process() -> None:
    server = devenv.NatsServer().start()
    pid = server.pid
    assert pid is not None
    server.kill()
    assert not pid_alive(pid)
    assert server.returncode == -9
    server.start()  # comes back on the same port
    server.stop()

    # a process that forgets to stop its broker: the atexit hook does it
    code = "from bridgedev import brokers\ns = brokers.NatsServer().start()\nprint(s.pid, s.work_dir, flush=True)\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, timeout=60
    ).stdout
    child_pid, work = out.splitlines()[-1].split()  # (after structlog's lines)
    assert not pid_alive(int(child_pid))
    assert not Path(work).exists()


# ---------------------------------------------------------------------------------------------------
# NATS cluster


async def test_nats_cluster_survives_losing_the_stream_leader() -> None:
    with devenv.NatsCluster(3) as cluster:
        assert len(cluster.urls.split(",")) == 3
        nc = await nats.connect(cluster.url_list, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        try:
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="R3", subjects=["r3.>"], num_replicas=3))

            async def publish(subject: str, msg_id: str) -> int:
                # a new R3 stream, or one that just lost its leader, answers "no responders" for a moment
                # (leader election, then interest propagating over the routes); the msg id dedupes retries
                ack = await js.publish(subject, msg_id.encode(), timeout=1, headers={"Nats-Msg-Id": msg_id})
                return ack.seq

            assert await eventually(lambda: publish("r3.a", "1")) == 1

            async def leader_known() -> devenv.NatsServer:
                node = cluster.stream_leader("R3")
                assert node is not None
                return node

            leader = await eventually(leader_known)
            index = cluster.servers.index(leader)
            cluster.kill_node(index)
            assert not leader.running

            assert await eventually(lambda: publish("r3.b", "2")) == 2
            new_leader = await eventually(leader_known)
            assert new_leader is not leader

            cluster.start_node(index)  # rejoins with its store
            info = await js.stream_info("R3")
            assert info.state.messages == 2
            assert info.config.num_replicas == 3
        finally:
            await nc.close()
    assert not any(s.running for s in cluster.servers)


# ---------------------------------------------------------------------------------------------------
# Apache Kafka


PLAIN_JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    'username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";'
)


async def test_apache_kafka_round_trip_sasl_listener_and_restart() -> None:
    sasl = devenv.KafkaListener("SASL_PLAINTEXT", "SASL_PLAINTEXT")
    kafka = devenv.ApacheKafka(
        extra_listeners=[sasl],
        extra_properties={
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
        },
    )
    with kafka:
        assert kafka.bootstrap == f"127.0.0.1:{kafka.port}"
        assert kafka.listener_bootstrap("SASL_PLAINTEXT") == f"127.0.0.1:{sasl.port}"
        assert "SASL_PLAINTEXT:SASL_PLAINTEXT" in kafka.properties()["listener.security.protocol.map"]
        # Created, not auto-created by the first produce: once bridge.kafka.source is imported (at the
        # suite's collection), no aiokafka client of the process asks a broker to create a topic.
        await devenv.create_topic(kafka.bootstrap, "devenv", 1)

        # created explicitly: a process that imported the bridge's Kafka adapter creates no topics
        # (bridge.kafkaproto), and the suite imports it
        await devenv.create_topic(kafka.bootstrap, "devenv", 1)
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(3):
                await producer.send_and_wait("devenv", f"m{i}".encode(), partition=0)
        finally:
            await producer.stop()

        # the extra listener really authenticates
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka.listener_bootstrap("SASL_PLAINTEXT"),
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_plain_username="alice",
            sasl_plain_password="alice-secret",
        )
        await producer.start()
        try:
            await producer.send_and_wait("devenv", b"m3", partition=0)
        finally:
            await producer.stop()

        tp = TopicPartition("devenv", 0)
        consumer = AIOKafkaConsumer(
            "devenv", bootstrap_servers=kafka.bootstrap, group_id="g1", auto_offset_reset="earliest",
            enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        try:
            got = [(await consumer.getone()).value for _ in range(4)]
            assert got == [b"m0", b"m1", b"m2", b"m3"]
            await consumer.commit({tp: 3})
        finally:
            await consumer.stop()

        first_pid = kafka.pid
        kafka.restart()
        assert first_pid is not None
        assert not pid_alive(first_pid)
        assert kafka.log_path.stat().st_size > 0

        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap, group_id="g1", auto_offset_reset="earliest",
            enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        try:

            async def survived() -> None:
                # the group's offset survived; right after the restart the coordinator may still be
                # loading the offsets topic and answer None: ask again until the deadline
                assert await consumer.committed(tp) == 3

            await eventually(survived)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            data = await consumer.getmany(tp, timeout_ms=10_000)
            assert [r.value for r in data[tp]] == [b"m0", b"m1", b"m2", b"m3"]  # and the records
        finally:
            await consumer.stop()
        pid = kafka.pid
    assert pid is not None
    assert not pid_alive(pid)
    assert not kafka.work_dir.exists()


def test_apache_kafka_start_failure_quotes_the_cause() -> None:
    kafka = devenv.ApacheKafka()
    with socket.socket() as squatter:  # someone else has the port
        squatter.bind(("127.0.0.1", kafka.port))
        squatter.listen()
        try:
            with pytest.raises(RuntimeError, match=r"exited before it became ready \(exit code 1\)") as err:
                kafka.start(timeout=60)
            assert "Address already in use" in str(err.value)
            assert not kafka.running
        finally:
            kafka.stop()


def test_ensure_kafka_libs_is_cached() -> None:
    libs = devenv.ensure_kafka_libs()
    began = time.monotonic()
    assert devenv.ensure_kafka_libs() == libs
    assert time.monotonic() - began < 1  # the marker short-circuits Maven
    jars = {p.name for p in libs.glob("*.jar")}
    assert f"kafka_2.13-{devenv.DEFAULT_KAFKA_VERSION}.jar" in jars
    assert any(j.startswith("log4j-slf4j-impl") for j in jars)  # or the broker logs nothing


# ---------------------------------------------------------------------------------------------------
# Tansu


async def test_tansu_round_trip() -> None:
    with devenv.Tansu() as tansu:
        admin = AIOKafkaAdminClient(bootstrap_servers=tansu.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("devenv", num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait("devenv", b"hello", partition=0)
        finally:
            await producer.stop()
        tp = TopicPartition("devenv", 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=tansu.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            data = await consumer.getmany(tp, timeout_ms=10_000)
            assert [r.value for r in data[tp]] == [b"hello"]
        finally:
            await consumer.stop()
        pid = tansu.pid
    assert pid is not None
    assert not pid_alive(pid)
