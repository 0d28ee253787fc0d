"""Faults on the NATS side: restarts, an outage longer than ``max_reconnects``, a JetStream cluster
losing its stream leader, stalled and dropped connections (lost and delayed acks), a SIGSTOPped
server (backpressure), and a stream that is missing or deleted mid-run.

A producer writes keyed records with headers into a multi-partition topic while the fault happens;
then the stream is read back and checked per partition (missing, duplicates stored, reorders,
committed = end).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import nats
import pytest

from bridgedev import brokers as devenv
from tests.faults.harness import (
    Sampler,
    SteadyProducer,
    check_stream,
    fault_config,
    kafka_ends,
    log_problems,
    metric,
    record_result,
    rss,
    stream_messages,
    wait_committed,
    wait_for,
    wait_stored,
)
from tests.faults.proxy import TcpProxy
from tests.support import (
    BridgeProcess,
    committed_offsets,
    create_stream,
    create_topic,
    delete_stream,
    run_cli,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

MB = 1024 * 1024


async def grows_by(url: str, stream: str, n: int, within: float = 60, total: int | None = None) -> bool:
    """Wait until ``n`` more messages are stored than now (or ``total``, when that comes first)."""
    base = await stream_messages(url, stream)
    target = base + n if total is None else min(base + n, total)

    async def grown() -> bool:
        return await stream_messages(url, stream) >= target

    return await wait_for(grown, within=within)


async def test_nats_server_restarted_mid_run(
    fault_kafka: devenv.ApacheKafka, nats_server: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    """nats-server is restarted twice (same store directory); the bridge reconnects within
    ``max_reconnects`` and re-sends what was not acknowledged."""
    started = time.monotonic()
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    bootstrap, url = fault_kafka.bootstrap, nats_server.url
    partitions, total, restarts = 4, 10_000, 2
    await create_topic(bootstrap, topic, partitions)
    await create_stream(url, stream, [f"{prefix}.>"], duplicate_window=600)
    cfg = fault_config(workdir / "c.yaml", brokers=bootstrap, topic=topic, group=group, nats_url=url,
                       prefix=prefix, extra_output={"max_reconnects": 30})  # fmt: skip
    producer = SteadyProducer(bootstrap, topic, partitions, total, rate=600).start()
    with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:
        for _ in range(restarts):
            assert await grows_by(url, stream, 1000, total=total), bridge.logs()[-3000:]
            nats_server.restart()
        await producer.finish()
        ends = await kafka_ends(bootstrap, topic, producer)
        await wait_stored(url, stream, sum(ends.values()), within=90)
        await wait_committed(bootstrap, group, topic, ends, within=30)
        assert bridge.stop(timeout=40) == 0, bridge.logs()[-3000:]
    check = await check_stream(url, stream, topic, ends, bootstrap=bootstrap, group=group)
    lost = bridge.events("nats_connection_lost")
    record_result("nats-server restarted mid-run (same store)", check, producer.produced, restarts, started,
                  f"{len(lost)} connection losses, {len(bridge.events('nats_connected'))} connects")  # fmt: skip
    check.assert_clean()
    assert len(lost) == restarts, lost
    assert len(bridge.events("nats_connected")) == restarts + 1
    assert not log_problems(bridge.logs())


async def test_nats_down_longer_than_max_reconnects(
    fault_kafka: devenv.ApacheKafka, nats_server: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    """NATS stops for longer than ``max_reconnects`` × ``reconnect_wait``: the run fails with a clear
    error, having committed only offsets the stream holds; a later run completes the job."""
    started = time.monotonic()
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    bootstrap, url = fault_kafka.bootstrap, nats_server.url
    partitions, total = 4, 8_000
    await create_topic(bootstrap, topic, partitions)
    await create_stream(url, stream, [f"{prefix}.>"], duplicate_window=600)
    cfg = fault_config(workdir / "c.yaml", brokers=bootstrap, topic=topic, group=group, nats_url=url,
                       prefix=prefix, extra_output={"max_reconnects": 3})  # fmt: skip
    producer = SteadyProducer(bootstrap, topic, partitions, total, rate=800).start()
    with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:
        assert await grows_by(url, stream, 2000, total=total), bridge.logs()[-3000:]
        nats_server.stop(cleanup=False)  # down; its store stays
        try:
            code = bridge.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the bridge did not give up: " + bridge.logs()[-3000:])
    await producer.finish()
    nats_server.start()

    failed = bridge.events("run_failed")
    assert code != 0
    assert failed, bridge.logs()[-3000:]
    assert f"NATS ({url}) unreachable" in failed[-1]["error"], failed
    # Committed only what the stream holds: every offset below the commit is stored.
    committed = await committed_offsets(bootstrap, group, topic)
    assert committed, "nothing was committed before the outage"
    partial = await check_stream(url, stream, topic, committed)
    assert partial.missing == 0, partial.table()
    assert partial.duplicates == 0, partial.table()

    # A later run (a bounded backfill from the committed offsets) completes the job.
    ends = await kafka_ends(bootstrap, topic, producer)
    done = run_cli("backfill", "-c", str(cfg), "--json", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    check = await check_stream(url, stream, topic, ends, bootstrap=bootstrap, group=group)
    record_result("NATS down longer than max_reconnects, then a second run", check, producer.produced, 1,
                  started, f"first run exit {code}; committed at failure {sum(committed.values())}")  # fmt: skip
    check.assert_clean()
    assert not log_problems(bridge.logs())


async def test_reconnects_exhausted_mid_run_exit_code_is_1(
    fault_kafka: devenv.ApacheKafka, nats_server: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    """README, Reconnection: "When the attempts run out the run fails (exit 1) having committed only
    acknowledged offsets". Exit 3 means "unreachable ...; nothing committed", which is not the case."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    bootstrap, url = fault_kafka.bootstrap, nats_server.url
    await create_topic(bootstrap, topic, 1)
    await create_stream(url, stream, [f"{prefix}.>"])
    producer = SteadyProducer(bootstrap, topic, 1, 100, rate=1000).start()
    await producer.finish()
    cfg = fault_config(workdir / "c.yaml", brokers=bootstrap, topic=topic, group=group, nats_url=url,
                       prefix=prefix, extra_output={"max_reconnects": 2})  # fmt: skip
    with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:
        assert await wait_committed(bootstrap, group, topic, {0: 100}, within=60), bridge.logs()[-3000:]
        nats_server.stop(cleanup=False)
        code = bridge.wait(timeout=60)
    assert await committed_offsets(bootstrap, group, topic) == {0: 100}
    assert code == 1, bridge.logs()[-2000:]


def live_url(cluster: devenv.NatsCluster) -> str:
    return next(s.url for s in cluster.servers if s.running)


async def replicas_current(cluster: devenv.NatsCluster, stream: str) -> bool:
    nc = await nats.connect(live_url(cluster), connect_timeout=2, allow_reconnect=False)
    try:
        info = await nc.jetstream().stream_info(stream)
    finally:
        await nc.close()
    c = info.cluster
    if c is None or not c.leader or len(c.replicas or []) != 2:
        return False
    return all(r.current and not r.offline for r in c.replicas or [])


async def test_stream_leader_killed_in_a_three_node_cluster(
    fault_kafka: devenv.ApacheKafka, names: dict, workdir: Path
) -> None:
    """An R3 stream on three clustered nats-servers; its leader is killed twice mid-run (and brought
    back after a new leader took over). The bridge knows all three URLs."""
    started = time.monotonic()
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    bootstrap = fault_kafka.bootstrap
    partitions, total, kills = 4, 12_000, 2
    await create_topic(bootstrap, topic, partitions)
    with devenv.NatsCluster(3, name=f"c{names['group'][-6:]}") as cluster:
        await create_stream(cluster.servers[0].url, stream, [f"{prefix}.>"], num_replicas=3,
                            duplicate_window=600)  # fmt: skip
        assert await wait_for(lambda: replicas_current(cluster, stream), within=30)
        cfg = fault_config(workdir / "c.yaml", brokers=bootstrap, topic=topic, group=group,
                           nats_url=cluster.urls, prefix=prefix,
                           extra_output={"max_reconnects": 30}, bridge={"ack_timeout": "2s"})  # fmt: skip
        producer = SteadyProducer(bootstrap, topic, partitions, total, rate=500).start()
        killed: list[str] = []
        with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:
            for _ in range(kills):
                assert await grows_by(live_url(cluster), stream, 1000, total=total), bridge.logs()[-3000:]
                leader = cluster.stream_leader(stream)
                assert leader is not None
                index = cluster.index_of(leader.name)
                cluster.kill_node(index)
                killed.append(leader.name)

                async def new_leader(old: str = leader.name) -> bool:
                    now = cluster.stream_leader(stream)
                    return now is not None and now.name != old

                assert await wait_for(new_leader, within=30)
                # the bridge stores again through the new leader (lanes re-send after their backoff)
                assert await grows_by(live_url(cluster), stream, 500, total=total), bridge.logs()[-3000:]
                cluster.start_node(index)
                assert await wait_for(lambda: replicas_current(cluster, stream), within=30)
            await producer.finish()
            ends = await kafka_ends(bootstrap, topic, producer)
            await wait_stored(live_url(cluster), stream, sum(ends.values()), within=90)
            await wait_committed(bootstrap, group, topic, ends, within=30)
            assert bridge.stop(timeout=40) == 0, bridge.logs()[-3000:]
        assert await wait_for(lambda: replicas_current(cluster, stream), within=30)
        leader = cluster.stream_leader(stream)
        assert leader is not None
        # read from the leader's node: direct gets are answered by a local replica first
        check = await check_stream(leader.url, stream, topic, ends, bootstrap=bootstrap, group=group)
    record_result("JetStream R3 cluster, stream leader killed", check, producer.produced, kills, started,
                  f"killed {', '.join(killed)}; {len(bridge.events('lane_halted'))} lane halts")  # fmt: skip
    check.assert_clean()
    assert not log_problems(bridge.logs())


async def test_acks_lost_and_delayed_through_a_stalling_proxy(
    fault_kafka: devenv.ApacheKafka, nats_server: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    """A TCP proxy between bridge and NATS holds the acks (server → client), then everything, then
    the publishes (client → server), each time until ack timeouts fired, and drops the connection
    once. Publishes are re-sent with the same Nats-Msg-Id (the server answers "duplicate" for those
    it had stored); no publish hangs: in-flight returns to 0 and the run stops cleanly."""
    started = time.monotonic()
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    bootstrap = fault_kafka.bootstrap
    partitions, total = 4, 10_000
    await create_topic(bootstrap, topic, partitions)
    await create_stream(nats_server.url, stream, [f"{prefix}.>"], duplicate_window=600)
    with TcpProxy(nats_server.port, nats=True) as proxy:
        cfg = fault_config(workdir / "c.yaml", brokers=bootstrap, topic=topic, group=group,
                           nats_url=proxy.url, prefix=prefix, extra_output={"max_reconnects": -1},
                           bridge={"ack_timeout": "1s"})  # fmt: skip
        producer = SteadyProducer(bootstrap, topic, partitions, total, rate=600).start()
        faults = 0
        with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:
            for direction in ("down", "both", "up"):
                assert await grows_by(nats_server.url, stream, 800, total=total), bridge.logs()[-3000:]
                timeouts = len(bridge.events("lane_halted"))
                proxy.stall(direction)
                faults += 1

                async def timed_out(before: int = timeouts) -> bool:
                    return any(
                        "no acknowledgement within 1s" in e["error"]
                        for e in bridge.events("lane_halted")[before:]
                    )

                fired = await wait_for(timed_out, within=30)
                proxy.resume()
                assert fired, bridge.logs()[-3000:]
            assert await grows_by(nats_server.url, stream, 800, total=total), bridge.logs()[-3000:]
            connects = len(bridge.events("nats_connected"))
            assert proxy.drop() >= 1
            faults += 1

            async def reconnected() -> bool:
                return len(bridge.events("nats_connected")) > connects

            assert await wait_for(reconnected, within=30), bridge.logs()[-3000:]
            await producer.finish()
            ends = await kafka_ends(bootstrap, topic, producer)
            await wait_stored(nats_server.url, stream, sum(ends.values()), within=90)
            await wait_committed(bootstrap, group, topic, ends, within=30)
            in_flight = proxy.stats().unacked
            assert bridge.stop(timeout=40) == 0, bridge.logs()[-3000:]
        wire = proxy.stats()
    check = await check_stream(nats_server.url, stream, topic, ends, bootstrap=bootstrap, group=group)
    record_result("acks lost/delayed: proxy stalls down/both/up, then drops", check, producer.produced, faults,
                  started, f"{wire.resent_ids} msg ids re-sent, {wire.duplicate_acks} duplicate acks, "
                  f"{len(bridge.events('lane_halted'))} lane halts")  # fmt: skip
    check.assert_clean()
    assert in_flight == 0, wire
    assert wire.resent_ids > 0, wire
    assert wire.duplicate_acks > 0, wire
    assert not bridge.events("drain_timeout")
    assert not log_problems(bridge.logs())


async def test_late_acks_are_not_reported_as_reorders(
    fault_kafka: devenv.ApacheKafka, nats_server: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    """Acks held by the proxy (server → client) until the first ack timeout fires, then released:
    the stream order is intact (checked), so the bridge must not log ``order_violation``."""
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    bootstrap = fault_kafka.bootstrap
    await create_topic(bootstrap, topic, 1)
    await create_stream(nats_server.url, stream, [f"{prefix}.>"], duplicate_window=600)
    with TcpProxy(nats_server.port, nats=True) as proxy:
        cfg = fault_config(workdir / "c.yaml", brokers=bootstrap, topic=topic, group=group,
                           nats_url=proxy.url, prefix=prefix, extra_output={"max_reconnects": -1},
                           bridge={"ack_timeout": "1s"})  # fmt: skip
        total = 5_000
        producer = SteadyProducer(bootstrap, topic, 1, total, rate=500).start()
        with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:
            for _ in range(3):
                assert await grows_by(nats_server.url, stream, 300, total=total), bridge.logs()[-3000:]
                halts = len(bridge.events("lane_halted"))
                proxy.stall("down")

                async def timed_out(before: int = halts) -> bool:
                    return len(bridge.events("lane_halted")) > before

                fired = await wait_for(timed_out, within=30, every=0.05)
                proxy.resume()
                assert fired
            await producer.finish()
            ends = await kafka_ends(bootstrap, topic, producer)
            await wait_committed(bootstrap, group, topic, ends, within=60)
            assert bridge.stop(timeout=40) == 0, bridge.logs()[-3000:]
    check = await check_stream(nats_server.url, stream, topic, ends, bootstrap=bootstrap, group=group)
    check.assert_clean()  # the stream's order is intact...
    assert not bridge.events("order_violation")  # ...so no reorder may be reported


async def test_backpressure_while_nats_is_stopped(
    fault_kafka: devenv.ApacheKafka, nats_server: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    """nats-server is SIGSTOPped for 20 s while records keep arriving in Kafka. In-flight publishes,
    read from the bridge's own ``/metrics`` and counted on the wire by the proxy, never exceed
    ``max_in_flight``; the bridge's RSS stays flat; the consumer keeps its group membership."""
    started = time.monotonic()
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    bootstrap = fault_kafka.bootstrap
    partitions, total, max_in_flight, pause = 4, 14_000, 64, 20.0
    await create_topic(bootstrap, topic, partitions)
    await create_stream(nats_server.url, stream, [f"{prefix}.>"], duplicate_window=600)
    http_port = devenv.free_port()
    with TcpProxy(nats_server.port, nats=True) as proxy:
        cfg = fault_config(workdir / "c.yaml", brokers=bootstrap, topic=topic, group=group,
                           nats_url=proxy.url, prefix=prefix,
                           extra_output={"max_reconnects": -1, "max_in_flight": max_in_flight},
                           top={"http": {"enabled": True, "address": f"127.0.0.1:{http_port}"}})  # fmt: skip
        producer = SteadyProducer(bootstrap, topic, partitions, total, rate=400).start()
        with (
            BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge,
            Sampler(metric(http_port, "kafka_jetstream_bridge_in_flight"), every=0.05) as in_flight,
        ):
            assert await grows_by(nats_server.url, stream, 1500, total=total), bridge.logs()[-3000:]
            with Sampler(rss(bridge.pid)) as before:
                await producer.wait_produced(producer.produced + 400)  # ~1 s of steady running
            nats_server.pause()
            pause_started = time.monotonic()
            produced_at_pause = producer.produced
            try:
                with Sampler(rss(bridge.pid)) as during:
                    # the fault lasts 20 s; meanwhile the producer keeps writing
                    await producer.wait_produced(produced_at_pause + 2000, within=pause)
                    remaining = pause - (time.monotonic() - pause_started)
                    await wait_for(_false, within=max(remaining, 0))
            finally:
                nats_server.resume()
            revoked_during = bridge.events("partitions_revoked")
            await producer.finish()
            ends = await kafka_ends(bootstrap, topic, producer)
            await wait_stored(nats_server.url, stream, sum(ends.values()), within=90)
            await wait_committed(bootstrap, group, topic, ends, within=30)
            assert bridge.stop(timeout=40) == 0, bridge.logs()[-3000:]
        wire = proxy.stats()
    check = await check_stream(nats_server.url, stream, topic, ends, bootstrap=bootstrap, group=group)
    growth = (during.peak - before.peak) / MB
    record_result("backpressure: nats-server SIGSTOPped 20 s, max_in_flight 64", check, producer.produced, 1,
                  started, f"peak in-flight {in_flight.peak:.0f} (/metrics, {len(in_flight.values)} samples), "
                  f"{wire.peak_unacked} (wire); RSS peak {during.peak / MB:.0f} MB during the pause "
                  f"({growth:+.1f} MB)")  # fmt: skip
    check.assert_clean()
    assert len(in_flight.values) > 100, "the bridge's /metrics could not be read"
    assert in_flight.peak <= max_in_flight, in_flight.peak
    assert 0 < wire.peak_unacked <= max_in_flight, wire
    assert growth < 30, (before.peak / MB, during.peak / MB)
    assert not revoked_during, revoked_during
    assert len(bridge.events("partitions_assigned")) == 1
    assert not log_problems(bridge.logs())


async def _false() -> bool:
    return False


async def test_no_stream_then_stream_deleted_mid_run(
    fault_kafka: devenv.ApacheKafka, nats_server: devenv.NatsServer, names: dict, workdir: Path
) -> None:
    """No stream is bound to the subjects at start: every partition halts with an error naming its
    subject and nothing is committed; once the stream exists everything is delivered. Then the
    stream is deleted mid-run: nothing is committed past what the new stream holds, and after it is
    recreated the run completes."""
    started = time.monotonic()
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    bootstrap, url = fault_kafka.bootstrap, nats_server.url
    partitions, total = 3, 9_000
    await create_topic(bootstrap, topic, partitions)
    cfg = fault_config(workdir / "c.yaml", brokers=bootstrap, topic=topic, group=group, nats_url=url,
                       prefix=prefix, bridge={"ack_timeout": "1s", "retry_timeout": "0s"})  # fmt: skip
    subjects = {f"{prefix}.{p}" for p in range(partitions)}
    producer = SteadyProducer(bootstrap, topic, partitions, total, rate=600).start()
    with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:
        # 1. No stream: each partition halts, the error names its subject; nothing is committed.
        async def all_halted() -> bool:
            named = {
                e["subject"] for e in bridge.events("lane_halted")
                if "no JetStream stream is bound to this subject" in e["error"] and e["subject"] in e["error"]
            }  # fmt: skip
            return named == subjects

        assert await wait_for(all_halted, within=60), bridge.logs()[-3000:]
        await producer.wait_produced(producer.produced + 1200)  # > 2 commit periods of records
        assert await committed_offsets(bootstrap, group, topic) == {}
        await create_stream(url, stream, [f"{prefix}.>"], duplicate_window=600)
        assert await grows_by(url, stream, 2000, total=total), bridge.logs()[-3000:]
        first = await check_stream(url, stream, topic, await committed_offsets(bootstrap, group, topic))
        assert (first.missing, first.duplicates, first.reorders) == (0, 0, 0), first.table()

        # 2. The stream is deleted while records flow; the commits must not pass the failure.
        halts = len(bridge.events("lane_halted"))
        await delete_stream(url, stream)
        after_delete = producer.mark()  # every record handed over from now on was produced after it
        seen: dict[int, int] = {}

        async def sample_commits() -> None:
            for p, offset in (await committed_offsets(bootstrap, group, topic)).items():
                seen[p] = max(seen.get(p, 0), offset)

        async def halted_again() -> bool:
            await sample_commits()
            return len({e["subject"] for e in bridge.events("lane_halted")[halts:]}) == partitions

        assert await wait_for(halted_again, within=60), bridge.logs()[-3000:]
        target = min(producer.produced + 1200, total)  # the outage lasts > 2 commit periods

        async def outage_over() -> bool:
            await sample_commits()  # the commits seen during the outage, several per commit period
            return producer.produced >= target

        assert await wait_for(outage_over, within=30, every=0.3)
        await create_stream(url, stream, [f"{prefix}.>"], duplicate_window=600)
        await producer.finish()
        ends = await kafka_ends(bootstrap, topic, producer)
        await wait_committed(bootstrap, group, topic, ends, within=90)
        assert bridge.stop(timeout=40) == 0, bridge.logs()[-3000:]
    check = await check_stream(url, stream, topic, ends, starts="first", bootstrap=bootstrap, group=group)
    record_result("no stream at start, then the stream deleted mid-run and recreated", check, producer.produced,
                  2, started, f"first offsets in the recreated stream {[c.start for c in check.partitions.values()]}")  # fmt: skip
    check.assert_clean()
    for p, c in check.partitions.items():
        # everything produced after the deletion is in the new stream, and no commit passed its start
        assert c.start <= after_delete[p], (p, c.start, after_delete)
        assert seen.get(p, 0) <= c.start, (p, seen, c.start)
    assert not log_problems(bridge.logs())
