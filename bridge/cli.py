"""The command line: ``run``, ``backfill``, ``lint``, ``dev``; signals; exit codes.

Exit codes (``bridge.errors.ExitCode``): 0 done; 1 a delivery failed or a partition stopped;
2 the config or the command line is invalid (nothing connected); 3 a broker was unreachable or
refused the credentials (nothing committed); 130 a second signal ended the run at once.

The first SIGTERM/SIGINT stops fetching, waits for the in-flight acks, commits and exits 0. A
second one exits at once: uncommitted records are simply read again by the next run and dropped
by JetStream as duplicates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import structlog

from bridge import config as config_mod
from bridge import log as log_mod
from bridge.errors import ConfigError, ExitCode
from bridge.modes import Backfill, Continuous, Mode, parse_start
from bridge.pipeline import Pipeline, RunResult

log = structlog.get_logger("bridge.cli")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kafka-jetstream-bridge",
        description="Kafka/Redpanda → NATS JetStream bridge (Redpanda Connect compatible config).",
    )
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="replicate continuously until SIGTERM/SIGINT")
    run.add_argument("-c", "--config", required=True, help="Redpanda Connect YAML file")

    bf = sub.add_parser("backfill", help="publish up to the end offsets seen at start, commit, exit")
    bf.add_argument("-c", "--config", required=True, help="Redpanda Connect YAML file")
    bf.add_argument(
        "--from", dest="start", default="committed",
        help="earliest | committed (default) | an RFC 3339 timestamp such as 2026-01-31T00:00:00Z",
    )  # fmt: skip
    bf.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")

    lint = sub.add_parser("lint", help="validate config files; exit 2 with one line per problem")
    lint.add_argument("files", nargs="+")

    dev = sub.add_parser("dev", help="local brokers + demo topic + stream, then run the bridge on them")
    dev.add_argument(
        "--broker", choices=("tansu", "kafka"), default="tansu", help="Kafka-protocol broker to start"
    )
    dev.add_argument("-c", "--config", default="configs/local.yaml")
    dev.add_argument("--records", type=int, default=30, help="sample records to preload")
    return p


# ---------------------------------------------------------------------------- lint


def cmd_lint(files: Sequence[str]) -> int:
    code = ExitCode.OK
    for path in files:
        try:
            config_mod.load(path)
        except ConfigError as exc:
            code = ExitCode.CONFIG
            for problem in exc.problems:
                where = f"{path}:{problem.line}" if problem.line else path
                print(f"{where}: {problem.path or '<root>'}: {problem.message}")
        else:
            print(f"{path}: ok")
    return int(code)


# ---------------------------------------------------------------------------- run / backfill


def _install_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    def on_signal(signum: int) -> None:
        if stop.is_set():
            sys.stderr.write("second signal: exiting now; uncommitted records will be read again\n")
            sys.stderr.flush()
            os._exit(int(ExitCode.INTERRUPTED))
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


async def _run_pipeline(loaded: config_mod.Loaded, mode: Mode, show_progress: bool) -> RunResult:
    stop = asyncio.Event()
    _install_signals(asyncio.get_running_loop(), stop)
    if not show_progress:
        return await Pipeline(loaded, mode).run(stop)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]backfill"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[rate]} rec/s"), TimeRemainingColumn(), transient=False,
    ) as progress:  # fmt: skip
        task = progress.add_task("backfill", total=None, rate="-")
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n

        pipeline = Pipeline(loaded, mode, on_progress=advance)
        runner = asyncio.create_task(pipeline.run(stop))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while not runner.done():
            await asyncio.wait({runner}, timeout=0.5)
            total = _planned_total(mode)
            elapsed = max(loop.time() - t0, 1e-6)
            progress.update(task, completed=done, total=total, rate=f"{done / elapsed:,.0f}")
        return runner.result()


def _planned_total(mode: Mode) -> int | None:
    if not isinstance(mode, Backfill):
        return None
    total = 0
    for bounds in mode.bounds.values():
        if bounds.end is None:
            return None
        total += max(bounds.end - bounds.start, 0)
    return total or None


def _summary_json(result: RunResult) -> dict[str, Any]:
    return {
        "mode": result.mode,
        "exit_code": int(result.exit_code),
        "error": None if result.error is None else str(result.error),
        "elapsed_s": round(result.elapsed, 3),
        "records": result.records,
        "duplicates": result.stats.duplicates,
        "partitions": [
            {
                "topic": r.topic,
                "partition": r.partition,
                "records": r.records,
                "duplicates": r.duplicates,
                "dead_lettered": r.dead_lettered,
                "first_offset": r.first_offset,
                "last_offset": r.last_offset,
                "first_seq": r.first_seq,
                "last_seq": r.last_seq,
                "stream": r.stream,
                "start": r.start,
                "end": r.end,
                "committed": r.committed,
                "stopped": r.stopped or None,
            }
            for r in result.reports
        ],
    }


def _print_summary(result: RunResult) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.mode}: {result.records:,} records in {result.elapsed:.1f}s")
    for col in (
        "partition",
        "records",
        "first offset",
        "last offset",
        "stream",
        "first seq",
        "last seq",
        "dups",
        "committed",
    ):
        table.add_column(col, justify="right" if col not in ("partition", "stream") else "left")
    for r in result.reports:
        table.add_row(
            f"{r.topic}/{r.partition}", f"{r.records:,}", _s(r.first_offset), _s(r.last_offset),
            r.stream or "-", _s(r.first_seq), _s(r.last_seq), f"{r.duplicates:,}", _s(r.committed),
        )  # fmt: skip
    Console(file=sys.stdout, width=140).print(table)
    for stopped in result.stopped:
        print(f"STOPPED: {stopped}")
    if result.error is not None:
        print(f"FAILED: {result.error}")


def _s(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _load_or_exit(path: str) -> config_mod.Loaded:
    try:
        return config_mod.load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            where = f"{path}:{problem.line}" if problem.line else path
            sys.stderr.write(f"{where}: {problem.path or '<root>'}: {problem.message}\n")
        raise SystemExit(int(ExitCode.CONFIG)) from exc


def _setup_logging(loaded: config_mod.Loaded) -> None:
    lg = loaded.config.logger
    fmt = "json" if lg.format == "json" else None
    log_mod.setup(lg.level, fmt, lg.static_fields)


def cmd_run(path: str) -> int:
    loaded = _load_or_exit(path)
    _setup_logging(loaded)
    result = asyncio.run(_run_pipeline(loaded, Continuous(), show_progress=False))
    return int(result.exit_code)


def cmd_backfill(path: str, start: str, as_json: bool) -> int:
    loaded = _load_or_exit(path)
    try:
        begin = parse_start(start)
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n")
        return int(ExitCode.CONFIG)
    _setup_logging(loaded)
    result = asyncio.run(
        _run_pipeline(loaded, Backfill(begin), show_progress=sys.stderr.isatty() and not as_json)
    )
    if as_json:
        print(json.dumps(_summary_json(result), indent=2))
    else:
        _print_summary(result)
    return int(result.exit_code)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "lint":
        return cmd_lint(args.files)
    if args.command == "run":
        return cmd_run(args.config)
    if args.command == "backfill":
        return cmd_backfill(args.config, args.start, args.json)
    if args.command == "dev":
        from bridge.demo import cmd_dev

        return cmd_dev(args.broker, args.config, args.records)
    raise AssertionError(args.command)


if __name__ == "__main__":
    raise SystemExit(main())
