"""The command line: ``run``, ``backfill``, ``lint``, ``dev``, ``bench``, ``verify``, ``translate``,
``streams ensure``; signals; exit codes.

Exit codes (``bridge.core.errors.ExitCode``): 0 done; 1 a delivery failed or a partition stopped;
2 the config or the command line is invalid (nothing connected); 3 a broker was unreachable or
refused the credentials (nothing committed); 130 a second signal ended the run at once.

Every line the commands print (results, errors, logs, tracebacks) passes through
``bridge.ops.log.redact_text``: ``main`` installs ``bridge.ops.log.guard_output`` before anything else.

The dev tooling (``bridgedev``: local brokers, ``bench``, the ``dev`` demo) is imported only by the
``dev`` and ``bench`` commands, when they run: no other command loads it, nor its dependencies.

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

from bridge.core import config as config_mod
from bridge.core.errors import BridgeError, ConfigError, ExitCode
from bridge.ops import log as log_mod
from bridge.run import eventloop
from bridge.run.modes import Backfill, Continuous, Mode, parse_start
from bridge.run.pipeline import Pipeline, RunResult

log = structlog.get_logger("bridge.cli")


WORKERS_HELP = "processes in one consumer group on this machine (default: bridge.workers, 1)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kafka-jetstream-bridge",
        description="Kafka/Redpanda → NATS JetStream bridge (Redpanda Connect compatible config).",
    )
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="replicate continuously until SIGTERM/SIGINT")
    run.add_argument("-c", "--config", required=True, help="Redpanda Connect YAML file")
    run.add_argument("--workers", type=int, help=WORKERS_HELP)

    bf = sub.add_parser("backfill", help="publish up to the end offsets seen at start, commit, exit")
    bf.add_argument("-c", "--config", required=True, help="Redpanda Connect YAML file")
    bf.add_argument(
        "--from",
        dest="start",
        default="committed",
        help="earliest | committed (default) | an RFC 3339 timestamp such as 2026-01-31T00:00:00Z",
    )
    bf.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    bf.add_argument("--workers", type=int, help=WORKERS_HELP)

    # The bench's defaults are its own (bridgedev.bench.Params): an option not given stays None here, so
    # that building this parser imports no dev tooling.
    bench = sub.add_parser("bench", help="measure raw Kafka, raw JetStream and the bridge on local brokers")
    bench.add_argument("--records", type=int)
    bench.add_argument("--size", type=int, help="record value size in bytes")
    bench.add_argument("--partitions", type=int)
    bench.add_argument("--max-in-flight", type=int)
    bench.add_argument("--broker", choices=("kafka", "tansu"))
    bench.add_argument("--kafka-bootstrap", help="use this broker instead of starting one")
    bench.add_argument("--nats-url", help="use this nats-server instead of starting one")
    bench.add_argument("--workers", help="worker counts for the backfill phase, e.g. 1,2 (default: 1,2)")
    bench.add_argument("--latency-rate", type=int, help="records/s")
    bench.add_argument("--latency-seconds", type=float, help="0 skips it")
    bench.add_argument("--no-baseline", action="store_true", help="skip the plain-loop baseline")
    bench.add_argument("--nats-replicas", type=int, choices=(1, 3), help="3: a 3-node cluster, R3 streams")
    bench.add_argument("--output", help="where to write the JSON results")

    lint = sub.add_parser("lint", help="validate config files; exit 2 with one line per problem")
    lint.add_argument("files", nargs="+")

    dev = sub.add_parser("dev", help="local brokers + demo topic + stream, then run the bridge on them")
    dev.add_argument(
        "--broker", choices=("tansu", "kafka"), default="tansu", help="Kafka-protocol broker to start"
    )
    dev.add_argument("-c", "--config", default="configs/local.yaml")
    dev.add_argument("--records", type=int, default=30, help="sample records to preload")

    vf = sub.add_parser("verify", help="compare every partition of the Kafka topics with the stream")
    vf.add_argument("-c", "--config", required=True, help="Redpanda Connect YAML file")
    vf.add_argument(
        "--stream", help="the stream to compare with (default: bridge.stream.name, else found by subject)"
    )
    vf.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")

    tr = sub.add_parser("translate", help="a consumer group's committed offsets → stream sequences")
    tr.add_argument("-c", "--config", required=True, help="Redpanda Connect YAML file")
    tr.add_argument("--group", required=True, help="the Kafka consumer group moving to JetStream")
    tr.add_argument("--stream", help="the stream (default: bridge.stream.name, else found by subject)")
    tr.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")

    st = sub.add_parser("streams", help="JetStream stream provisioning")
    st_sub = st.add_subparsers(dest="streams_command", required=True)
    ensure = st_sub.add_parser("ensure", help="create or update the stream described by bridge.stream")
    ensure.add_argument("-c", "--config", required=True, help="Redpanda Connect YAML file")
    return p


# ---------------------------------------------------------------------------- lint


def cmd_lint(files: Sequence[str]) -> int:
    code = ExitCode.OK
    for path in files:
        try:
            loaded = config_mod.load(path)
        except ConfigError as exc:
            code = ExitCode.CONFIG
            for problem in exc.problems:
                where = f"{path}:{problem.line}" if problem.line else path
                print(f"{where}: {problem.path or '<root>'}: {problem.message}")
        else:
            for warning in loaded.warnings:
                where = f"{path}:{warning.line}" if warning.line else path
                print(f"{where}: {warning.path}: warning: {warning.message}")
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
    from bridge.ops import http as http_mod  # aiohttp and prometheus-client: only for run and backfill

    stop = asyncio.Event()
    _install_signals(asyncio.get_running_loop(), stop)
    if not show_progress:
        pipeline = Pipeline(loaded, mode)
        async with http_mod.serving(loaded.config.http, pipeline, mode.name):  # hook: /ping /ready /metrics
            await _provision(loaded)  # hook: bridge.stream
            return await pipeline.run(stop)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} rec/s"),
        TimeRemainingColumn(),
        transient=False,
    ) as progress:
        task = progress.add_task("backfill", total=None, rate="-")
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n

        pipeline = Pipeline(loaded, mode, on_progress=advance)
        async with http_mod.serving(loaded.config.http, pipeline, mode.name):  # hook: /ping /ready /metrics
            await _provision(loaded)  # hook: bridge.stream
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
        "error": None if result.error is None else log_mod.redact_text(str(result.error)),
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
                "undelivered": r.undelivered,
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
        "undelivered",
    ):
        table.add_column(col, justify="right" if col not in ("partition", "stream") else "left")
    for r in result.reports:
        table.add_row(
            f"{r.topic}/{r.partition}",
            f"{r.records:,}",
            _s(r.first_offset),
            _s(r.last_offset),
            r.stream or "-",
            _s(r.first_seq),
            _s(r.last_seq),
            f"{r.duplicates:,}",
            _s(r.committed),
            f"{r.undelivered:,}",
        )
    Console(file=sys.stdout, width=140).print(table)
    for stopped in result.stopped:
        print(f"STOPPED: {stopped}")
    if result.error is not None:
        print(f"FAILED: {log_mod.redact_text(str(result.error))}")


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
    for warning in loaded.warnings:
        log.warning("config_warning", path=warning.path, line=warning.line, message=warning.message)


async def _provision(loaded: config_mod.Loaded) -> None:
    """Before the pipeline connects: create or update ``bridge.stream`` when it asks for it (NATS
    connection attempts as for the pipeline: ``max_reconnects``, ``reconnect_wait`` apart)."""
    section = loaded.config.bridge.stream
    if section is not None and section.ensure:
        from bridge.jetstream import streams

        await streams.ensure(loaded, patient=True)


def _run(loaded: config_mod.Loaded, mode: Mode, show_progress: bool) -> RunResult | int:
    try:
        return eventloop.run(_run_pipeline(loaded, mode, show_progress))
    except BridgeError as exc:  # the HTTP server or the stream could not be set up: nothing consumed
        log.error("start_failed", error=str(exc))
        return int(exc.exit_code)


def _workers(loaded: config_mod.Loaded, flag: int | None) -> int:
    workers = flag if flag is not None else loaded.config.bridge.workers
    if workers < 1:
        raise SystemExit(f"--workers must be at least 1, not {workers}")
    return workers


def cmd_run(path: str, workers: int | None = None) -> int:
    loaded = _load_or_exit(path)
    n = _workers(loaded, workers)
    if n > 1:
        from bridge.run.workers import supervise

        return supervise(["run", "-c", path, "--workers", "1"], n)
    _setup_logging(loaded)
    result = _run(loaded, Continuous(), show_progress=False)
    return result if isinstance(result, int) else int(result.exit_code)


def cmd_backfill(path: str, start: str, as_json: bool, workers: int | None = None) -> int:
    loaded = _load_or_exit(path)
    try:
        begin = parse_start(start)
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n")
        return int(ExitCode.CONFIG)
    n = _workers(loaded, workers)
    if n > 1:
        from bridge.run.workers import supervise

        args = ["backfill", "-c", path, "--from", start, "--workers", "1"] + (["--json"] if as_json else [])
        return supervise(args, n, merge_json=as_json)
    _setup_logging(loaded)
    result = _run(loaded, Backfill(begin), show_progress=sys.stderr.isatty() and not as_json)
    if isinstance(result, int):
        return result
    if as_json:
        print(json.dumps(_summary_json(result), indent=2))
    else:
        _print_summary(result)
    return int(result.exit_code)


def main(argv: Sequence[str] | None = None) -> int:
    log_mod.guard_output()  # every line printed from here on: credentials in URLs masked (bridge.ops.log)
    args = _parser().parse_args(argv)
    if args.command == "lint":
        return cmd_lint(args.files)
    if args.command == "run":
        return cmd_run(args.config, args.workers)
    if args.command == "backfill":
        return cmd_backfill(args.config, args.start, args.json, args.workers)
    if args.command == "bench":
        return cmd_bench(args)
    if args.command == "dev":
        from bridgedev.demo import cmd_dev  # dev tooling: only for this command

        return cmd_dev(args.broker, args.config, args.records)
    if args.command in ("verify", "translate", "streams"):
        return cmd_migration(args)
    raise AssertionError(args.command)


# ---------------------------------------------------------------------------- bench


def cmd_bench(args: argparse.Namespace) -> int:
    """``bench``: the options given over ``bridgedev.bench.Params``' defaults."""
    from bridgedev import bench  # dev tooling: only for this command

    given = {
        "records": args.records,
        "size": args.size,
        "partitions": args.partitions,
        "max_in_flight": args.max_in_flight,
        "broker": args.broker,
        "kafka_bootstrap": args.kafka_bootstrap,
        "nats_url": args.nats_url,
        "latency_rate": args.latency_rate,
        "latency_seconds": args.latency_seconds,
        "nats_replicas": args.nats_replicas,
        "output": args.output,
    }
    params = bench.Params(**{k: v for k, v in given.items() if v is not None})
    if args.workers is not None:
        params.workers = tuple(int(w) for w in args.workers.split(",") if w.strip())
    params.baseline = not args.no_baseline
    return bench.main(params)


# ---------------------------------------------------------------------------- migration commands


def cmd_migration(args: argparse.Namespace) -> int:
    """``verify``, ``translate`` and ``streams ensure``: one-shot commands with their own output."""
    loaded = _load_or_exit(args.config)
    _setup_logging(loaded)
    try:
        if args.command == "verify":
            from bridge.migrate import verify

            report = eventloop.run(verify.verify(loaded, stream=args.stream))
            print(json.dumps(report.as_json(), indent=2) if args.json else report.render())
            return int(ExitCode.OK if report.ok else ExitCode.FAILED)
        if args.command == "translate":
            from bridge.migrate import translate

            result = eventloop.run(translate.translate(loaded, args.group, stream=args.stream))
            print(json.dumps(result.as_json(), indent=2) if args.json else result.render())
            return int(ExitCode.OK if result.ok else ExitCode.FAILED)
        from bridge.jetstream import streams

        if loaded.config.bridge.stream is None:
            sys.stderr.write(f"{args.config}: bridge.stream: required by streams ensure\n")
            return int(ExitCode.CONFIG)
        print(eventloop.run(streams.ensure(loaded)).describe())
        return int(ExitCode.OK)
    except BridgeError as exc:
        sys.stderr.write(f"{args.command} failed: {log_mod.redact_text(str(exc))}\n")
        return int(exc.exit_code)


if __name__ == "__main__":
    raise SystemExit(main())
