"""Every retry policy of the bridge, as named tenacity policies. Retries live only at the edges.

- ``nats_connect``: (re)establishing the NATS connection, governed by ``max_reconnects`` with
  Redpanda Connect's meaning: unset = 60 attempts, negative = forever, 0 = no reconnect (the first
  connection still gets its one attempt). ``reconnect_wait`` apart (nats.go's default is 2s).
- ``kafka_connect``: bootstrapping the Kafka client at start; bounded so that an unreachable
  cluster fails the run in a known time.
- ``lane``: re-sending a partition's unacknowledged publishes after a failure (exponential
  backoff, capped), giving up after ``bridge.retry_timeout`` (0 = never).
- ``kafka_commit``: a commit that failed for a retriable reason.

Each logs the attempt, the sleep and the error as fields. Only the project's errors whose typed
``retriable`` flag is set (``bridge.core.errors.BridgeError``) are retried: the adapters translate a
client library's exception before a policy sees it.
"""

from __future__ import annotations

from typing import Any

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_never,
    wait_exponential,
    wait_fixed,
)
from tenacity.stop import stop_base

from bridge.core.errors import BridgeError

log = structlog.get_logger("bridge.retry")

DEFAULT_MAX_RECONNECTS = 60


def _is_retriable(exc: BaseException) -> bool:
    return isinstance(exc, BridgeError) and exc.retriable


def _logger(policy: str, **fields: Any) -> Any:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        sleep = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "retrying",
            policy=policy,
            attempt=state.attempt_number,
            sleep=round(sleep, 3),
            error=str(exc),
            **fields,
        )

    return before_sleep


def reconnect_attempts(max_reconnects: int | None) -> int | None:
    """Attempts allowed for one (re)connection: None = forever."""
    if max_reconnects is None:
        return DEFAULT_MAX_RECONNECTS
    if max_reconnects < 0:
        return None
    return max(max_reconnects, 1)


def nats_connect(max_reconnects: int | None, reconnect_wait: float, servers: str) -> AsyncRetrying:
    attempts = reconnect_attempts(max_reconnects)
    stop: stop_base = stop_never if attempts is None else stop_after_attempt(attempts)
    return AsyncRetrying(
        stop=stop,
        wait=wait_fixed(reconnect_wait),
        retry=retry_if_exception(_is_retriable),
        before_sleep=_logger("nats_connect", servers=servers),
        reraise=True,
    )


def kafka_connect(brokers: str, attempts: int = 3) -> AsyncRetrying:
    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.5, max=4),
        retry=retry_if_exception(_is_retriable),
        before_sleep=_logger("kafka_connect", brokers=brokers),
        reraise=True,
    )


def lane(name: str, retry_timeout: float) -> AsyncRetrying:
    stop: stop_base = stop_never if retry_timeout <= 0 else stop_after_delay(retry_timeout)
    return AsyncRetrying(
        stop=stop,
        wait=wait_exponential(multiplier=0.1, min=0.1, max=5),
        retry=retry_if_exception(_is_retriable),
        before_sleep=_logger("lane", lane=name),
        reraise=True,
    )


def kafka_commit(attempts: int = 3) -> AsyncRetrying:
    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.2, max=2),
        retry=retry_if_exception(_is_retriable),
        before_sleep=_logger("kafka_commit"),
        reraise=True,
    )
