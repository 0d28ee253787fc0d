"""The bridge at cluster shape, on loopback: 3 Apache Kafka brokers (KRaft, topic replication factor 3,
``min.insync.replicas`` 2), 3 clustered nats-servers with an R3 stream, and bridge replicas in one
consumer group, each a ``run`` process with its own HTTP port.

While a producer writes keyed records with headers (``acks=all``, idempotent), one after the other:
the leader broker of partition 0 is killed (SIGKILL; restarted once a new leader serves), the stream's
leader nats-server is killed (SIGKILL; restarted once a new leader stores), one replica gets
``kill -9``, and a fourth replica starts. Then, per partition: 0 missing, 0 duplicates stored,
0 reorders, committed = end, every live replica's ``kafka_lag`` back to 0.

``/ready`` is polled on every replica all along (every 100 ms) and held to docs/operations.md: 200 only
while NATS is connected, the consumer holds partitions and commits are not stale; 503 otherwise, the
JSON body naming the failing checks. So: every answer's status agrees with its body; ``commits_fresh``
never fails (no commit is owed for 30 s here); a replica only fails ``nats_connected`` after a
nats-server was killed; the new replica answers 503 ``kafka_assigned`` until the group gives it
partitions, then 200; the killed one stops answering; at the end every live replica answers 200.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bridgedev import brokers as devenv
from bridgedev.brokers.process import free_port
from tests.faults.harness import (
    SteadyProducer,
    check_stream,
    fault_config,
    holding,
    kafka_ends,
    log_problems,
    metric,
    record_result,
    wait_committed,
    wait_for,
    wait_stored,
)
from tests.support import BridgeProcess, create_stream, create_topic, stream_count

pytestmark = [pytest.mark.faults, pytest.mark.timeout(480)]

CHECKS = {"nats_connected", "kafka_assigned", "commits_fresh"}
MAX_IN_FLIGHT = 256  # per replica: bounds what a fault can make a replica send again
GROUP = {"session_timeout": "6s", "rebalance_timeout": "10s", "heartbeat_interval": "1s"}


@dataclass
class Answer:
    t: float  # seconds since the test started
    status: int | None  # None: no answer (connection refused, timeout)
    body: dict | None


@dataclass
class ReadyPoller:
    """Polls every replica's ``/ready`` in a thread; replicas can be added while it runs."""

    began: float
    ports: dict[str, int] = field(default_factory=dict)
    answers: dict[str, list[Answer]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, port: int) -> None:
        with self._lock:
            self.ports[name] = port
            self.answers[name] = []

    def run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                targets = list(self.ports.items())
            for name, port in targets:
                status: int | None
                body: dict | None = None
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as resp:
                        status, body = resp.status, json.loads(resp.read())
                except urllib.error.HTTPError as exc:
                    status, body = exc.code, json.loads(exc.read() or b"null")
                except (urllib.error.URLError, OSError, ValueError):
                    status = None
                self.answers[name].append(Answer(time.monotonic() - self.began, status, body))
            self._stop.wait(0.1)

    def __enter__(self) -> ReadyPoller:
        self._thread = threading.Thread(target=self.run, name="ready-poller", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def unready_spans(self, name: str) -> list[tuple[float, float, set[str]]]:
        """(from, to, failing checks) of each run of 503 answers of one replica."""
        spans: list[tuple[float, float, set[str]]] = []
        current: tuple[float, float, set[str]] | None = None
        for a in self.answers[name]:
            if a.status == 503 and a.body is not None:
                failing = set(a.body["failing"])
                current = (current[0], a.t, current[2] | failing) if current else (a.t, a.t, failing)
            elif current is not None:
                spans.append(current)
                current = None
        if current is not None:
            spans.append(current)
        return spans


def lag_sum(port: int) -> float:
    """Σ ``kafka_lag{topic,partition}`` on a replica's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in resp.read().decode().splitlines()
            if line.startswith("kafka_jetstream_bridge_kafka_lag{")
        )


async def test_kafka_and_nats_clusters_with_replicas_in_one_group(names: dict, workdir: Path) -> None:
    began = time.monotonic()
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    partitions, total, rate = 6, 32_000, 400
    events: list[tuple[float, str]] = []

    def event(what: str) -> None:
        events.append((round(time.monotonic() - began, 1), what))

    with devenv.KafkaCluster(3) as kafka, devenv.NatsCluster(3, name="kjbc") as cluster:
        event("brokers up")
        bootstrap = kafka.bootstrap

        def nats_url() -> list[str]:
            return [s.url for s in cluster.servers if s.running]

        await create_topic(bootstrap, topic, partitions, replication_factor=3)
        await create_stream(nats_url(), stream, [f"{prefix}.>"], num_replicas=3, duplicate_window=600)
        replicas: dict[str, BridgeProcess] = {}
        every: list[BridgeProcess] = []
        ports: dict[str, int] = {}

        first_leader = cluster.stream_leader(stream)
        assert first_leader is not None

        def start(name: str, urls: str = cluster.urls) -> None:
            ports[name] = free_port()
            cfg = fault_config(
                workdir / f"{name}.yaml", brokers=bootstrap, topic=topic, group=group, nats_url=urls,
                prefix=prefix, extra_input=GROUP,
                extra_output={"max_reconnects": -1, "max_in_flight": MAX_IN_FLIGHT},
                top={"http": {"enabled": True, "address": f"127.0.0.1:{ports[name]}"}},
            )  # fmt: skip
            replicas[name] = BridgeProcess("run", "-c", str(cfg), log_dir=workdir, name=name)
            every.append(replicas[name])
            poller.add(name, ports[name])
            event(f"replica {name} started")

        async def settled() -> bool:
            """Every live replica holds partitions, none twice, all covered."""
            held = [holding(proc) for proc in replicas.values()]
            union = set().union(*held)
            return all(held) and len(union) == partitions and sum(map(len, held)) == partitions

        async def all_ready() -> bool:
            return all(poller.answers[n] and poller.answers[n][-1].status == 200 for n in replicas)

        async def grows(n: int) -> None:
            counted: list[int] = []

            async def count() -> bool:
                # right after a leader election STREAM.INFO can go unanswered for seconds: ask again
                counted.append(await stream_count(nats_url(), stream))
                return True

            assert await wait_for(count, within=60)
            target = min(counted[-1] + n, total)

            async def grown() -> bool:
                return await stream_count(nats_url(), stream) >= target

            assert await wait_for(grown, within=90), {k: p.logs()[-2000:] for k, p in replicas.items()}

        with ReadyPoller(began) as poller:
            try:
                # r1 knows only the stream leader's URL: at least one replica is on the server killed in
                # step 2 and must re-send what it had in flight there once that server is back
                start("r1", first_leader.url)
                for name in ("r2", "r3"):
                    start(name)
                assert await wait_for(settled, within=60), {k: p.logs()[-2000:] for k, p in replicas.items()}
                assert await wait_for(all_ready, within=30), poller.answers
                event("3 replicas ready")
                producer = SteadyProducer(
                    bootstrap, topic, partitions, total, rate=rate, deadline=300
                ).start()

                # 1. the leader broker of partition 0
                await grows(3000)
                leader = kafka.leader(topic, 0)
                assert leader is not None
                kafka.kill_node(leader)
                event(f"kafka node {leader + 1} (leader of partition 0) killed")

                async def new_kafka_leader(old: int = leader) -> bool:
                    return kafka.leader(topic, 0) not in (None, old)

                assert await wait_for(new_kafka_leader, within=60)
                event(f"kafka partition 0 led by node index {kafka.leader(topic, 0)}")
                await grows(2000)
                kafka.start_node(leader)
                event(f"kafka node {leader + 1} restarted")

                async def kafka_in_sync() -> bool:
                    return all(len(kafka.in_sync(topic, p)) == 3 for p in range(partitions))

                assert await wait_for(kafka_in_sync, within=90)
                event("every partition has 3 in-sync replicas")

                # 2. the JetStream stream leader
                await grows(2000)
                nats_leader = cluster.stream_leader(stream)
                assert nats_leader is not None
                # the leader by its own account too, not only by another node's (possibly stale) view
                assert cluster.stream_leader(stream, view=nats_leader) is nats_leader
                assert nats_leader is first_leader, "the stream leader moved before it was killed"
                nats_index = cluster.index_of(nats_leader.name)
                on_leader = int(nats_leader.monitor("/connz")["num_connections"])  # only replicas by now
                cluster.kill_node(nats_index)
                event(f"nats-server {nats_leader.name} (stream leader, {on_leader} replicas on it) killed")

                async def new_stream_leader(old: str = nats_leader.name) -> bool:
                    now = cluster.stream_leader(stream)
                    return now is not None and now.name != old

                assert await wait_for(new_stream_leader, within=30)
                event("new stream leader elected")
                await grows(2000)
                cluster.start_node(nats_index)
                event(f"nats-server {nats_leader.name} restarted")

                # 3. kill -9 of one replica
                await grows(2000)
                victim = "r2"
                killed_at = time.monotonic() - began
                replicas.pop(victim).kill()
                event(f"replica {victim} killed (-9)")
                assert await wait_for(settled, within=60), {k: p.logs()[-2000:] for k, p in replicas.items()}
                event("r1, r3 hold every partition")

                # 4. a fourth replica
                await grows(2000)
                start("r4")
                assert await wait_for(settled, within=60), {k: p.logs()[-2000:] for k, p in replicas.items()}
                event("r1, r3, r4 hold every partition")
                producing_until_faults_done = producer.produced < total

                await producer.finish(within=300)
                event("producer done")
                ends = await kafka_ends(bootstrap, topic, producer)
                assert await wait_stored(nats_url(), stream, sum(ends.values()), within=120)
                assert await wait_committed(bootstrap, group, topic, ends, within=60)

                async def lag_zero() -> bool:
                    return all(lag_sum(ports[n]) == 0 for n in replicas)

                assert await wait_for(lag_zero, within=30)
                assert await wait_for(all_ready, within=30), {n: poller.answers[n][-3:] for n in replicas}
                event("lag 0 on every replica, every replica ready")
                assigned = {
                    n: metric(ports[n], "kafka_jetstream_bridge_partitions_assigned")() for n in replicas
                }
                resent = {
                    n: metric(ports[n], "kafka_jetstream_bridge_publishes_resent_total")() for n in replicas
                }
                duplicates = {
                    n: metric(ports[n], "kafka_jetstream_bridge_records_duplicates_total")() for n in replicas
                }
                final_at = time.monotonic() - began
                codes = {n: replicas.pop(n).stop(timeout=40) for n in list(replicas)}
            finally:
                for proc in every:
                    proc.__exit__()
        leader_now = cluster.stream_leader(stream)
        assert leader_now is not None
        check = await check_stream(leader_now.url, stream, topic, ends, bootstrap=bootstrap, group=group)

    seconds = time.monotonic() - began
    answers = poller.answers
    spans = {n: poller.unready_spans(n) for n in answers}
    nats_killed_at = next(t for t, what in events if "(stream leader" in what)
    r4_started = next(t for t, what in events if what == "replica r4 started")
    longest = {n: max((b - a for a, b, _ in s), default=0.0) for n, s in spans.items()}
    record_result(
        "clusters: 3 Kafka brokers (RF 3, min ISR 2), R3 stream on 3 nats-servers, 3→4 replicas", check,
        producer.produced, 4, began,
        f"partition leader and stream leader killed and restarted, a replica kill -9, a fourth started; "
        f"longest 503 per replica {', '.join(f'{n} {v:.1f}s' for n, v in sorted(longest.items()))}",
    )  # fmt: skip
    report = "\n".join(f"{t:7.1f} s  {what}" for t, what in events)
    print(f"\n{check.table()}\n{report}\nunready spans: {spans}\nre-sent {resent}, duplicate acks {duplicates}"
          f"\ntest took {seconds:.0f} s")  # fmt: skip

    check.assert_clean()
    assert codes == dict.fromkeys(codes, 0), codes
    assert sum(assigned.values()) == partitions, assigned
    assert producing_until_faults_done, "the producer finished before the last fault: widen total"
    # What the faults cost in re-sends, on the replicas alive at the end (r2's counters died with it):
    # a lost connection or a halted lane sends its in-flight publishes again, at most MAX_IN_FLIGHT per
    # replica and fault; the duplicates the stream dropped are those re-sends plus what r2 had read and
    # not committed (a commit period of its share) and the fourth replica's takeover.
    assert resent["r1"] > 0, resent  # r1 was on the killed stream leader: it re-sent there
    assert sum(resent.values()) <= 8 * MAX_IN_FLIGHT, resent
    assert sum(duplicates.values()) <= 5 * MAX_IN_FLIGHT + 800, duplicates
    for proc in every:
        assert not log_problems(proc.logs()), proc.logs()[-3000:]
    # /ready as docs/operations.md has it
    for name, seen in answers.items():
        served = next(i for i, a in enumerate(seen) if a.status == 200)  # connected and assigned once
        for i, a in enumerate(seen):
            if a.status is None:
                continue
            assert a.status in (200, 503), (name, a)
            assert a.body is not None, (name, a)
            assert set(a.body["checks"]) == CHECKS, (name, a)
            failing = {k for k, ok in a.body["checks"].items() if not ok}
            assert set(a.body["failing"]) == failing, (name, a)
            assert a.body["ready"] is (a.status == 200) is (not failing), (name, a)
            assert "commits_fresh" not in failing, (name, a)  # nothing owed for 30 s in this test
            if "nats_connected" in failing and i > served:
                assert a.t >= nats_killed_at, (name, a)  # NATS connected all along until a server died
    # r1 and r3 ran from the start to the end: ready then, and every unready span ended
    for name in ("r1", "r3"):
        last = [a for a in answers[name] if a.t <= final_at][-1]
        assert last.status == 200, answers[name][-5:]
    # the killed replica answered 200 before the kill, and nothing after it (once the socket closed)
    r2 = answers["r2"]
    assert any(a.status == 200 for a in r2 if a.t < killed_at)
    assert all(a.status is None for a in r2 if a.t > killed_at + 1), [a for a in r2 if a.t > killed_at + 1][
        :3
    ]
    # the fourth replica: 503 kafka_assigned until the group gave it partitions, then 200
    r4 = [a for a in answers["r4"] if a.status is not None]
    first_ok = next(i for i, a in enumerate(r4) if a.status == 200)
    assert first_ok > 0, r4[:3]  # HTTP serves before the consumer is assigned: 503 first
    assert all(a.status == 503 and "kafka_assigned" in a.body["failing"] for a in r4[:first_ok]), r4[
        :first_ok
    ]
    assert [a for a in r4 if a.t <= final_at][-1].status == 200
    assert r4[0].t >= r4_started
