"""bridge.run.deadline, and the pipeline's shutdown reading it: ``shutdown_timeout`` is the whole budget.

The shutdown is driven with fakes whose every step hangs (the acks never come, the commit, the
consumer's close and NATS's close never return): the steps share the one deadline, so the whole
shutdown takes ``shutdown_timeout``, not a budget per step.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import TopicPartition

from bridge.core.config import parse
from bridge.run.deadline import Deadline
from bridge.run.modes import Continuous
from bridge.run.pipeline import Pipeline, _Running


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_counts_from_the_first_start() -> None:
    clock = Clock()
    deadline = Deadline(20.0, clock)
    assert not deadline.started
    assert not deadline.expired
    clock.now += 5  # nothing counts before the start
    deadline.start()
    assert deadline.started
    assert deadline.remaining() == 20.0
    clock.now += 3
    deadline.start()  # a second start changes nothing
    assert deadline.remaining() == 17.0


def test_every_step_reads_what_is_left() -> None:
    clock = Clock()
    deadline = Deadline(20.0, clock)
    deadline.start()
    assert deadline.remaining(reserve=5.0) == 15.0  # the wait for acks leaves a quarter
    clock.now += 15
    assert deadline.remaining(reserve=5.0) == 0.0
    assert deadline.remaining() == 5.0
    clock.now += 4.5
    assert deadline.remaining() == pytest.approx(0.5)
    clock.now += 10
    assert deadline.remaining() == 0.0  # never below zero
    assert deadline.expired


def test_remaining_starts_a_budget_not_started() -> None:
    clock = Clock()
    deadline = Deadline(2.0, clock)
    assert deadline.remaining() == 2.0
    assert deadline.started


def test_a_negative_budget_is_none() -> None:
    assert Deadline(-1.0).total == 0.0


# ---------------------------------------------------------------------------------------------- the shutdown

CONFIG = """\
input:
  kafka_franz:
    seed_brokers: [127.0.0.1:9]
    topics: [t]
    consumer_group: g
output:
  nats_jetstream:
    urls: [nats://127.0.0.1:9]
    subject: s
shutdown_timeout: {timeout}
"""


class Hangs:
    """Records each step that was started; none of them ever returns."""

    def __init__(self) -> None:
        self.steps: list[str] = []

    async def hang(self, step: str) -> Any:
        self.steps.append(step)
        await asyncio.Event().wait()


class HungSink:
    in_flight = 5

    def __init__(self, hangs: Hangs) -> None:
        self._hangs = hangs

    async def wait_drained(self) -> None:
        await self._hangs.hang("wait for acks")

    async def aclose(self) -> None:
        await self._hangs.hang("close NATS")


class HungSource:
    has_group = True

    def __init__(self, hangs: Hangs) -> None:
        self._hangs = hangs

    async def topic_ids(self, topics: Any) -> dict[str, str]:
        return await self._hangs.hang("commit")  # type: ignore[no-any-return] # never returns

    async def aclose(self) -> None:
        await self._hangs.hang("close the consumer")


def hung_pipeline(timeout: str) -> tuple[Pipeline, _Running, Hangs]:
    pipeline = Pipeline(parse(CONFIG.format(timeout=timeout), environ={}), Continuous())
    hangs = Hangs()
    loop = asyncio.get_running_loop()
    run = _Running(HungSink(hangs), HungSource(hangs), None, loop.create_future())  # type: ignore[arg-type] # fakes
    pipeline._running = run
    ledger = pipeline.checkpointer.assign(TopicPartition("t", 0))  # something to commit
    ledger.track_many([10, 11])
    ledger.ack(10)
    return pipeline, run, hangs


async def test_the_shutdown_takes_the_one_budget_whatever_hangs() -> None:
    pipeline, run, hangs = hung_pipeline("1s")
    stop = asyncio.Event()
    stop.set()  # a signal
    deadline = Deadline(pipeline.config.shutdown_timeout)
    deadline.start()
    began = time.monotonic()
    await pipeline._drain(run, stop, deadline)
    drained = time.monotonic() - began
    await pipeline._shutdown(run.sink, run.source, deadline)
    took = time.monotonic() - began
    assert hangs.steps == ["wait for acks", "commit", "close the consumer", "close NATS"]
    assert 0.7 <= drained <= 0.9  # the wait for acks may take three quarters of it
    assert 1.0 <= took < 1.3  # 1s means 1s: not a budget per step (before: 0.75s + 3 × 2s)


async def test_a_shutdown_after_a_quick_drain_leaves_the_rest_to_the_other_steps() -> None:
    pipeline, run, hangs = hung_pipeline("1s")
    deadline = Deadline(pipeline.config.shutdown_timeout)
    began = time.monotonic()
    await pipeline._shutdown(run.sink, run.source, deadline)  # starts the budget: a run that failed
    took = time.monotonic() - began
    assert hangs.steps == ["commit", "close the consumer", "close NATS"]
    assert 1.0 <= took < 1.3
