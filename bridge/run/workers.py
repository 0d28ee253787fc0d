"""``--workers N``: N bridge processes in one consumer group on one machine.

Python runs one core per process; Kafka balances partitions across the members of a group, so N
processes with the same config use N cores with no coordination of our own (past one machine,
replicas of the worker in one group do the same). The supervisor starts the children in their own
sessions (a terminal's Ctrl-C reaches only the supervisor), forwards each SIGTERM/SIGINT it gets to
every child once — so a second signal still means "exit at once" — and exits with the worst child's
exit code. A worker that fails or is killed before any signal makes the supervisor stop the others
and exit with its code (so that Kubernetes or compose restarts the whole, rather than the process
running on with a share of its partitions unread). ``backfill`` workers report in JSON and the
supervisor prints one summary, merged (a table, or JSON with ``--json``). A backfill joins no
group: worker ``i`` of ``N`` ($KJB_WORKER_INDEX, $KJB_WORKERS) reads every N-th partition from the
i-th (``worker_share``).

One HTTP endpoint serves them all: the supervisor listens on the configured ``http.address``
(``bridge.ops.fanin``: ``/ping``, ``/ready`` ready only when every worker is, ``/metrics`` with a
``worker`` label), each worker on a free loopback port it writes to the file ``$KJB_WORKER_HTTP_FILE``
names. An address the supervisor cannot bind ends it (exit 1) before any worker starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from bridge.core.config import HttpSection
from bridge.core.errors import BridgeError

log = structlog.get_logger("bridge.workers")

WORKER_HTTP_ENV = "KJB_WORKER_HTTP_FILE"  # where a worker writes the port it serves HTTP on
WORKER_ENV = "KJB_WORKER_INDEX"  # this worker's index, from 0
WORKERS_ENV = "KJB_WORKERS"  # how many workers the supervisor started


def worker_index() -> int:
    """This process's index among ``--workers`` siblings (0 when it runs alone)."""
    value = os.environ.get(WORKER_ENV, "0")
    return int(value) if value.isdigit() else 0


def worker_share() -> tuple[int, int]:
    """(index, count) of this process among its ``--workers`` siblings: a backfill reads the partitions
    whose position in the sorted list is ``index`` modulo ``count`` (it joins no group to share them)."""
    value = os.environ.get(WORKERS_ENV, "1")
    count = int(value) if value.isdigit() and int(value) > 0 else 1
    return min(worker_index(), count - 1), count


def _merge_partition(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """One partition reported by two workers (it moved between them in a rebalance)."""

    def pick(key: str, fn: Any) -> Any:
        values = [v for v in (a.get(key), b.get(key)) if v is not None]
        return fn(values) if values else None

    merged = dict(a)
    for key in ("records", "duplicates", "dead_lettered"):
        merged[key] = a.get(key, 0) + b.get(key, 0)
    for key in ("first_offset", "first_seq", "start"):
        merged[key] = pick(key, min)
    for key in ("last_offset", "last_seq", "end", "committed"):
        merged[key] = pick(key, max)
    merged["stopped"] = a.get("stopped") or b.get("stopped")
    merged["stream"] = a.get("stream") or b.get("stream")
    return merged


def _merge(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    by_partition: dict[tuple[str, int], dict[str, Any]] = {}
    for s in summaries:
        for p in s.get("partitions", []):
            key = (p["topic"], p["partition"])
            by_partition[key] = _merge_partition(by_partition[key], p) if key in by_partition else p
    partitions = [by_partition[k] for k in sorted(by_partition)]
    errors = [s["error"] for s in summaries if s.get("error")]
    return {
        "mode": summaries[0].get("mode", "backfill") if summaries else "backfill",
        "workers": len(summaries),
        "exit_code": max((s.get("exit_code", 1) for s in summaries), default=1),
        "error": "; ".join(errors) or None,
        "elapsed_s": max((s.get("elapsed_s", 0.0) for s in summaries), default=0.0),
        "records": sum(s.get("records", 0) for s in summaries),
        "duplicates": sum(s.get("duplicates", 0) for s in summaries),
        "partitions": partitions,
    }


def supervise(
    child_args: Sequence[str],
    workers: int,
    merge_json: bool = False,
    http: HttpSection | None = None,
    render: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """Run ``python -m bridge <child_args>`` ``workers`` times in parallel; see the module docstring.
    ``merge_json``: the children print JSON summaries, merged into one, printed as JSON or by ``render``."""
    return asyncio.run(
        _supervise(child_args, workers, merge_json, http or HttpSection(enabled=False), render)
    )


async def _supervise(
    child_args: Sequence[str],
    workers: int,
    merge_json: bool,
    http: HttpSection,
    render: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    from bridge.ops.fanin import FanIn  # aiohttp: only when the supervisor serves HTTP

    ports = Path(tempfile.mkdtemp(prefix="kjb-workers-"))
    procs: list[asyncio.subprocess.Process] = []

    def exit_code(i: int) -> int | None:
        return procs[i].returncode if i < len(procs) else None

    server = FanIn(http, workers, lambda i: ports / f"worker-{i}.port", exit_code) if http.enabled else None
    try:
        if server is not None:
            try:
                await server.start()
            except BridgeError as exc:
                log.error("start_failed", error=str(exc))
                return int(exc.exit_code)
        signalled = False

        def forward(signum: int) -> None:
            nonlocal signalled
            signalled = True
            for proc in procs:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signum)

        # before the first worker starts: a signal while they start reaches those already started
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, forward, sig)
        for i in range(workers):
            if signalled:
                break
            env = {**os.environ, WORKER_ENV: str(i), WORKERS_ENV: str(workers)}
            if server is not None:
                env[WORKER_HTTP_ENV] = str(ports / f"worker-{i}.port")
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bridge",
                    *child_args,
                    stdout=asyncio.subprocess.PIPE if merge_json else None,
                    start_new_session=True,
                    env=env,
                )
            )

        talks = [asyncio.ensure_future(proc.communicate()) for proc in procs]
        pending = set(talks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                i = talks.index(task)
                code = procs[i].returncode
                if code and not signalled:
                    # a worker that failed or was killed: the rest stop too, and the supervisor exits
                    # with its code, so that whatever restarts the process (Kubernetes, compose) does
                    log.error("worker_exited", worker=i, exit_code=code, action="stopping the other workers")
                    forward(signal.SIGTERM)
        outputs = [task.result() for task in talks]
    finally:
        if server is not None:
            await server.aclose()
        shutil.rmtree(ports, ignore_errors=True)
    if merge_json:
        summaries = []
        for out, _ in outputs:
            text = (out or b"").decode()
            if "{" in text:
                summaries.append(json.loads(text[text.index("{") :]))
        merged = _merge(summaries)
        if render is not None:
            render(merged)
        else:
            print(json.dumps(merged, indent=2))
    codes = [proc.returncode if proc.returncode is not None else 1 for proc in procs]
    return max((code if code >= 0 else 128 - code for code in codes), default=0)
