"""``--workers N``: N bridge processes in one consumer group on one machine.

Python runs one core per process; Kafka balances partitions across the members of a group, so N
processes with the same config use N cores with no coordination of our own (past one machine,
replicas of the worker in one group do the same). The supervisor starts the children in their own
sessions (a terminal's Ctrl-C reaches only the supervisor), forwards each SIGTERM/SIGINT it gets to
every child once — so a second signal still means "exit at once" — and exits with the worst child's
exit code. For ``backfill --json`` it merges the children's summaries into one. Worker ``i`` (from 0)
serves its HTTP endpoints on the configured port + ``i``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

WORKER_ENV = "KJB_WORKER_INDEX"
WORKERS_ENV = "KJB_WORKERS"


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


def supervise(child_args: Sequence[str], workers: int, merge_json: bool = False) -> int:
    """Run ``python -m bridge <child_args>`` ``workers`` times in parallel; see the module docstring."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bridge", *child_args],
            stdout=subprocess.PIPE if merge_json else None,
            start_new_session=True,
            env={**os.environ, WORKER_ENV: str(i), WORKERS_ENV: str(workers)},
        )
        for i in range(workers)
    ]

    def forward(signum: int, _: FrameType | None) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        outputs = [proc.communicate()[0] if merge_json else None for proc in procs]
        for proc in procs:
            proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if merge_json:
        summaries = []
        for out in outputs:
            text = (out or b"").decode()
            if "{" in text:
                summaries.append(json.loads(text[text.index("{") :]))
        print(json.dumps(_merge(summaries), indent=2))
    return max(proc.returncode if proc.returncode >= 0 else 128 - proc.returncode for proc in procs)
