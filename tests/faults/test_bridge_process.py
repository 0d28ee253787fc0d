"""Faults of the bridge process itself: ``kill -9`` mid-run, and members joining and leaving a group.

A producer writes keyed records with headers into a multi-partition topic while the fault happens;
then the stream is read back and checked per partition (missing, duplicates stored, reorders,
committed = end).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridgedev import brokers as devenv
from tests.faults.harness import (
    SteadyProducer,
    check_stream,
    fault_config,
    holding,
    kafka_ends,
    log_problems,
    record_result,
    stream_messages,
    wait_committed,
    wait_for,
    wait_stored,
)
from tests.faults.proxy import TcpProxy
from tests.support import BridgeProcess, create_stream, create_topic

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

FAST_GROUP = {"session_timeout": "6s", "rebalance_timeout": "10s", "heartbeat_interval": "1s"}


async def test_kill_9_during_a_continuous_run(
    fault_kafka: devenv.ApacheKafka, nats_server: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    """SIGKILL the bridge three times while records flow; each time a new one takes over from the
    committed offsets and re-sends what was not committed (dropped by the stream as duplicates)."""
    started = time.monotonic()
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    bootstrap, url = fault_kafka.bootstrap, nats_server.url
    partitions, total, kills = 4, 12_000, 3
    await create_topic(bootstrap, topic, partitions)
    await create_stream(url, stream, [f"{prefix}.>"], duplicate_window=600)
    proxy = TcpProxy(nats_server.port, nats=True).start()  # only counts: re-sends, duplicate acks
    cfg = fault_config(workdir / "c.yaml", brokers=bootstrap, topic=topic, group=group, nats_url=proxy.url,
                       prefix=prefix, extra_input=FAST_GROUP)  # fmt: skip
    producer = SteadyProducer(bootstrap, topic, partitions, total, rate=600).start()
    procs = [BridgeProcess("run", "-c", str(cfg), log_dir=workdir, name="bridge-0")]
    try:
        for k in range(kills):
            # Kill once this bridge has committed and goes on publishing: 300 more records stored
            # since its first commit (the records of the last commit period are in flight or acked).
            proc = procs[-1]

            async def committed_once(proc: BridgeProcess = proc) -> bool:
                return bool(proc.events("committed"))

            assert await wait_for(committed_once, within=60), proc.logs()[-3000:]
            base = await stream_messages(url, stream)

            async def publishing(base: int = base) -> bool:
                return await stream_messages(url, stream) >= base + 300

            assert await wait_for(publishing, within=60), procs[-1].logs()[-3000:]
            procs[-1].kill()
            assert procs[-1].proc.returncode == -9
            procs.append(BridgeProcess("run", "-c", str(cfg), log_dir=workdir, name=f"bridge-{k + 1}"))
        await producer.finish()
        ends = await kafka_ends(bootstrap, topic, producer)
        await wait_stored(url, stream, sum(ends.values()), within=90)
        await wait_committed(bootstrap, group, topic, ends, within=30)
        assert procs[-1].stop(timeout=40) == 0, procs[-1].logs()[-3000:]
    finally:
        for proc in procs:
            proc.__exit__()
        proxy.stop()
    check = await check_stream(url, stream, topic, ends, bootstrap=bootstrap, group=group)
    wire = proxy.stats()
    record_result("kill -9 of the bridge (run), restarted each time", check, producer.produced, kills, started,
                  f"{wire.resent_ids} records published again, {wire.duplicate_acks} dropped as duplicates")  # fmt: skip
    check.assert_clean()
    assert wire.duplicate_acks > 0, "no kill hit uncommitted records: the test proved nothing"
    assert not log_problems(procs[-1].logs())


async def test_members_join_and_leave_a_group_of_three(
    fault_kafka: devenv.ApacheKafka, nats_server: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    """Three bridges in one group; members start and stop (SIGTERM) while records flow. Acks come back
    250 ms late (through a delaying proxy), so every revocation has publishes in flight to wait for.
    Every revocation commits within the rebalance timeout, no commit failure escapes, every exit is 0."""
    started = time.monotonic()
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    bootstrap, url = fault_kafka.bootstrap, nats_server.url
    partitions, total, rebalance_timeout = 6, 15_000, 10.0
    await create_topic(bootstrap, topic, partitions)
    await create_stream(url, stream, [f"{prefix}.>"], duplicate_window=600)
    proxy = TcpProxy(nats_server.port, nats=True).start()
    proxy.delay(0.25, "down")
    cfg = fault_config(workdir / "c.yaml", brokers=bootstrap, topic=topic, group=group, nats_url=proxy.url,
                       prefix=prefix, extra_input=FAST_GROUP)  # fmt: skip
    producer = SteadyProducer(bootstrap, topic, partitions, total, rate=600).start()
    members: dict[str, BridgeProcess] = {}
    every: list[BridgeProcess] = []
    codes: dict[str, int] = {}
    changes = 0

    def start(name: str) -> None:
        nonlocal changes
        members[name] = BridgeProcess("run", "-c", str(cfg), log_dir=workdir, name=name)
        every.append(members[name])
        changes += 1

    def stop(name: str) -> None:
        nonlocal changes
        proc = members.pop(name)
        codes[name] = proc.stop(timeout=40)
        changes += 1

    async def settled() -> bool:
        """Every running member holds partitions, none twice, all of them covered."""
        held: list[set[str]] = []
        for proc in members.values():
            mine = holding(proc)
            if not mine:
                return False
            held.append(mine)
        union = set().union(*held)
        return len(union) == partitions and sum(map(len, held)) == partitions

    try:
        for step in ("+a", "+b", "+c", "-a", "+d", "-b"):
            (start if step[0] == "+" else stop)(step[1:])
            assert await wait_for(settled, within=60), {n: p.logs()[-1500:] for n, p in members.items()}
            await producer.wait_produced(min(producer.produced + 1500, total))
        await producer.finish()
        ends = await kafka_ends(bootstrap, topic, producer)
        await wait_stored(url, stream, sum(ends.values()), within=90)
        await wait_committed(bootstrap, group, topic, ends, within=30)
        injected = changes
        for name in list(members):
            stop(name)
    finally:
        for proc in every:
            proc.__exit__()
        proxy.stop()
    check = await check_stream(url, stream, topic, ends, bootstrap=bootstrap, group=group)
    revocations = [e for proc in every for e in proc.events("partitions_revoked")]
    waited = max((e["waited"] for e in revocations), default=0.0)
    abandoned = sum(e["abandoned"] for e in revocations)
    record_result("rebalances: 3 bridges in one group, members started and stopped (acks +250 ms)", check,
                  producer.produced, injected, started,
                  f"{len(revocations)} revocations, longest wait {waited:.2f}s, {abandoned} publishes "
                  f"abandoned; {proxy.stats().duplicate_acks} duplicates dropped by the stream")  # fmt: skip
    check.assert_clean()
    assert codes == dict.fromkeys(codes, 0), codes
    assert revocations
    assert all(e["waited"] < rebalance_timeout for e in revocations), revocations
    assert max(e["waited"] for e in revocations) > 0.1, "no revocation had acks to wait for"
    for proc in every:
        assert not log_problems(proc.logs()), proc.logs()[-3000:]
        assert not proc.events("revoke_timeout")
