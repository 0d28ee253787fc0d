"""The backfill's progress line on a terminal: phase, bar, records of the planned total, rate, ETA.

    backfill assigned ━━━━━━━━━━━━━━━━╸━━━━━━━━━━━━━━━━━━━━━  41,216/100,000  41% 20,608 rec/s ETA 0:00:03

The phase is the pipeline's own (``Pipeline.phase``): ``starting`` (connecting and taking its
partitions: a backfill lists them itself and joins no group, so this lasts a metadata round trip),
``assigned`` (fetching and publishing), ``draining`` (every partition read to its end offset, waiting
for the last acks), ``stopped``. The rate counts from the moment partitions were first held
(``Pipeline.assigned_at``), so the wait before is not in it, and the ETA is what is left at that rate.
The line is redrawn from plain attributes every half second: the only per-record cost is the ack
counter (``advance``).
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn


def rate(done: int, assigned_at: float | None, now: float) -> float | None:
    """Records per second since partitions were first held; None before that (or before any time passed)."""
    if assigned_at is None or now <= assigned_at:
        return None
    return done / (now - assigned_at)


def eta(done: int, total: int | None, per_second: float | None) -> str:
    """``H:MM:SS`` left at ``per_second``; ``-`` when it cannot be told."""
    if total is None or not per_second:
        return "-"
    seconds = max(total - done, 0) / per_second
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class BackfillProgress:
    """A rich progress line on stderr; ``advance`` is the pipeline's ``on_progress`` callback."""

    def __init__(self, console: Console | None = None) -> None:
        self.done = 0
        self._progress = Progress(
            TextColumn("[bold]backfill[/] {task.fields[phase]:<9}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]} rec/s"),
            TextColumn("ETA {task.fields[eta]}"),
            console=console or Console(file=sys.stderr),
            transient=False,
        )
        self._task = self._progress.add_task(
            "backfill", total=None, phase="starting", count="0", rate="-", eta="-"
        )

    def advance(self, n: int) -> None:
        self.done += n

    def show(self, phase: str, total: int | None, assigned_at: float | None, now: float) -> None:
        per_second = rate(self.done, assigned_at, now)
        self._progress.update(
            self._task,
            completed=self.done,
            total=total,
            phase=phase,
            count=f"{self.done:,}" if total is None else f"{self.done:,}/{total:,}",
            rate="-" if per_second is None else f"{per_second:,.0f}",
            eta=eta(self.done, total, per_second),
        )

    def __enter__(self) -> BackfillProgress:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()
