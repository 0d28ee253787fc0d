"""``bridge.ops.progress``: the backfill's progress line shows the pipeline's phase, and its rate and ETA
count from the moment partitions were held, not from the start (connecting, or for a run joining a group, can take seconds)."""

from __future__ import annotations

import io

from rich.console import Console

from bridge.ops.progress import BackfillProgress, eta, rate


def test_the_rate_excludes_the_wait_to_join() -> None:
    started, assigned_at = 100.0, 110.0  # ten seconds starting
    assert rate(0, None, started + 5) is None  # still starting: no rate yet
    assert rate(0, assigned_at, assigned_at) is None
    assert rate(1000, assigned_at, assigned_at + 1) == 1000  # not 1000 / 11
    assert rate(3000, assigned_at, assigned_at + 2) == 1500


def test_eta_is_what_is_left_at_that_rate() -> None:
    assert eta(1000, 4000, 1000.0) == "0:00:03"
    assert eta(0, 3_600_000 + 61_000, 1000.0) == "1:01:01"
    assert eta(5, 5, 10.0) == "0:00:00"
    assert eta(10, None, 10.0) == "-"  # end offsets not known yet
    assert eta(10, 100, None) == "-"


def rendered(progress: BackfillProgress, console: Console) -> str:
    progress._progress.refresh()
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_the_line_shows_phase_count_rate_and_eta() -> None:
    console = Console(file=io.StringIO(), width=140, force_terminal=True, color_system=None)
    with BackfillProgress(console) as progress:
        progress.show("starting", None, None, now=5.0)
        first = rendered(progress, console)
        for _ in range(2500):
            progress.advance(1)
        progress.show("assigned", 10_000, assigned_at=10.0, now=11.0)
        second = rendered(progress, console)[len(first) :]
        progress.advance(7500)
        progress.show("draining", 10_000, assigned_at=10.0, now=14.0)
    last = console.file.getvalue().split("\r")[-1]  # type: ignore[attr-defined]  # the line as left
    assert "backfill starting" in first
    assert "- rec/s" in first
    assert "backfill assigned" in second
    assert "2,500/10,000" in second
    assert "2,500 rec/s" in second
    assert "ETA 0:00:03" in second
    assert "backfill draining" in last
    assert "10,000/10,000" in last
    assert "2,500 rec/s" in last
