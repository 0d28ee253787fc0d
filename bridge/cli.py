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
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

import structlog

from bridge.core import config as config_mod
from bridge.core.errors import BridgeError, ConfigError, ExitCode, FileRefused, Problem
from bridge.ops import log as log_mod
from bridge.run import eventloop
from bridge.run.modes import Backfill, Continuous, Mode, parse_start
from bridge.run.pipeline import Pipeline, RunResult
from bridge.run.workers import worker_share

log = structlog.get_logger("bridge.cli")


WORKERS_HELP = "processes in one consumer group on this machine (default: bridge.workers, 1)"
COMMANDS = ("run", "backfill", "lint", "streams", "verify", "translate", "bench", "dev")


def _positive(value: str) -> int:
    """An integer of at least 1 (``--workers 0`` is a bad command line: exit 2)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {value[:40]!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def _worker_count(value: str) -> int:
    """``--workers``: at least 1, at most ``bridge.workers``' limit (processes on this machine)."""
    number = _positive(value)
    if number > config_mod.MAX_WORKERS:
        raise argparse.ArgumentTypeError(config_mod.workers_limit(number))
    return number


def _non_empty(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def _non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {value[:40]!r}") from None
    if not number >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value[:40]}")
    return number


def _worker_counts(value: str) -> tuple[int, ...]:
    counts = tuple(_worker_count(part.strip()) for part in value.split(",") if part.strip())
    if not counts:
        raise argparse.ArgumentTypeError("expected worker counts such as 1,2")
    return counts


def _start(value: str) -> str:
    try:
        parse_start(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--from ")) from None
    return value


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows an option's default after its help when it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default:" not in text
            and action.option_strings
            and default not in (None, False, [], (), argparse.SUPPRESS)
        ):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """argparse with errors in the user's words: no internal names, "did you mean" for a command, and
    exit code 2 for every bad command line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.CONFIG), f"{self.prog}: error: {_plain(message)}\n")


def _plain(message: str) -> str:
    """argparse's messages about the command names, in words."""
    import difflib
    import re

    if message == "the following arguments are required: COMMAND":
        return f"a command is needed: {', '.join(COMMANDS)} (see --help)"
    if message == "the following arguments are required: STREAMS-COMMAND":
        return "streams needs a command: ensure (see streams --help)"
    found = re.match(
        r"argument (COMMAND|STREAMS-COMMAND): invalid choice: '(.*?)' \(choose from (.*)\)$", message
    )
    if found:
        known = COMMANDS if found.group(1) == "COMMAND" else ("ensure",)
        close = difflib.get_close_matches(found.group(2), known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"unknown command {found.group(2)[:40]!r}{hint}; the commands are: {', '.join(known)}"
    return message


def _config_arguments(p: argparse.ArgumentParser, *, overrides: bool = True) -> None:
    """The config file (positional, as ``rpk connect run config.yaml``, or ``-c``), ``--set`` and
    ``--env-file``, for every command that reads one config."""
    p.add_argument("config_file", nargs="?", metavar="CONFIG", help="the Redpanda Connect YAML config file")
    p.add_argument("-c", "--config", metavar="FILE", help="the config file (the same as CONFIG)")
    if overrides:
        p.add_argument(
            "-s",
            "--set",
            action="append",
            default=[],
            metavar="PATH=VALUE",
            help="set a field of the config by its dot path, e.g. output.nats_jetstream.max_in_flight=256 "
            "(repeatable, as rpk connect run --set)",
        )
    p.add_argument(
        "-e",
        "--env-file",
        action="append",
        default=[],
        metavar="FILE",
        help="read environment variables from a dotenv file (KEY=value lines) before the config "
        "(repeatable; its values override the environment's)",
    )


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    p = _Parser(
        prog="kafka-jetstream-bridge",
        description="Kafka/Redpanda → NATS JetStream bridge (Redpanda Connect compatible config).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    commands: dict[str, argparse.ArgumentParser] = {}

    run = sub.add_parser("run", help="replicate continuously until SIGTERM/SIGINT")
    _config_arguments(run)
    run.add_argument("--workers", type=_worker_count, metavar="N", help=WORKERS_HELP)
    commands["run"] = run

    bf = sub.add_parser("backfill", help="publish up to the end offsets seen at start, commit, exit")
    _config_arguments(bf)
    bf.add_argument(
        "--from",
        dest="start",
        default="committed",
        type=_start,
        metavar="WHERE",
        help="earliest | committed | an RFC 3339 timestamp such as 2026-01-31T00:00:00Z",
    )
    bf.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    bf.add_argument("--workers", type=_worker_count, metavar="N", help=WORKERS_HELP)
    commands["backfill"] = bf

    lint = sub.add_parser("lint", help="validate config files; exit 2 with one line per problem")
    lint.add_argument("files", nargs="+", metavar="FILE", help="the config files to check")
    lint.add_argument(
        "-e",
        "--env-file",
        action="append",
        default=[],
        metavar="FILE",
        help="read environment variables from a dotenv file before the configs (repeatable)",
    )
    lint.add_argument(
        "--skip-env-var-check",
        action="store_true",
        help="an unset ${VAR} without a default is empty instead of a problem (as rpk connect lint)",
    )
    commands["lint"] = lint

    st = sub.add_parser("streams", help="JetStream stream provisioning")
    st_sub = st.add_subparsers(
        dest="streams_command", required=True, metavar="STREAMS-COMMAND", parser_class=_Parser
    )
    ensure = st_sub.add_parser("ensure", help="create or update the stream described by bridge.stream")
    _config_arguments(ensure)
    commands["streams ensure"] = ensure

    vf = sub.add_parser("verify", help="compare every partition of the Kafka topics with the stream")
    _config_arguments(vf)
    vf.add_argument(
        "--stream", help="the stream to compare with (default: bridge.stream.name, else found by subject)"
    )
    vf.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    commands["verify"] = vf

    tr = sub.add_parser("translate", help="a consumer group's committed offsets → stream sequences")
    _config_arguments(tr)
    tr.add_argument(
        "--group", required=True, type=_non_empty, help="the Kafka consumer group moving to JetStream"
    )
    tr.add_argument("--stream", help="the stream (default: bridge.stream.name, else found by subject)")
    tr.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    commands["translate"] = tr

    # The bench's defaults are its own (bridgedev.bench.Params, written in the help and checked by
    # tests/unit/test_cli.py): an option not given stays None here, so that building this parser imports
    # no dev tooling.
    bench = sub.add_parser("bench", help="measure raw Kafka, raw JetStream and the bridge on local brokers")
    bench.add_argument("--records", type=_positive, metavar="N", help="records to preload (default: 1000000)")
    bench.add_argument("--size", type=_positive, metavar="BYTES", help="record value size (default: 200)")
    bench.add_argument(
        "--partitions", type=_positive, metavar="N", help="partitions of the topic (default: 8)"
    )
    bench.add_argument(
        "--max-in-flight", type=_positive, metavar="N", help="the bridge's max_in_flight (default: 1024)"
    )
    bench.add_argument(
        "--broker", choices=("kafka", "tansu"), help="the Kafka-protocol broker to start (default: kafka)"
    )
    bench.add_argument(
        "--kafka-bootstrap",
        metavar="HOST:PORT",
        help="use this broker instead of starting one (default: start one)",
    )
    bench.add_argument(
        "--nats-url", metavar="URL", help="use this nats-server instead of starting one (default: start one)"
    )
    bench.add_argument(
        "--workers",
        type=_worker_counts,
        metavar="N,N",
        help="worker counts for the backfill phase (default: 1,2)",
    )
    bench.add_argument(
        "--latency-rate",
        type=_positive,
        metavar="N",
        help="records/s during the latency phase (default: 5000)",
    )
    bench.add_argument(
        "--latency-seconds",
        type=_non_negative_float,
        metavar="S",
        help="length of the latency phase, 0 skips it (default: 10.0)",
    )
    bench.add_argument("--no-baseline", action="store_true", help="skip the plain-loop baseline")
    bench.add_argument(
        "--nats-replicas",
        type=int,
        choices=(1, 3),
        help="1: one nats-server; 3: a 3-node cluster and R3 streams (default: 1)",
    )
    bench.add_argument(
        "--rounds",
        type=_positive,
        metavar="N",
        help="alternating rounds of the bridge and the Go peer on the same brokers (default: 1)",
    )
    bench.add_argument(
        "--go-peer",
        metavar="DIR",
        help="the Go reference bridge's source (default: ../shared/peers beside the repository, if any)",
    )
    bench.add_argument(
        "--output", metavar="FILE", help="where to write the JSON results (default: bench-results.json)"
    )
    commands["bench"] = bench

    dev = sub.add_parser("dev", help="local brokers + demo topic + stream, then run the bridge on them")
    dev.add_argument(
        "--broker", choices=("tansu", "kafka"), default="tansu", help="Kafka-protocol broker to start"
    )
    dev.add_argument(
        "-c", "--config", default="configs/local.yaml", metavar="FILE", help="the bridge's config"
    )
    dev.add_argument("--records", type=_positive, default=30, metavar="N", help="sample records to preload")
    commands["dev"] = dev
    return p, commands


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kafka-jetstream-bridge")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


# ---------------------------------------------------------------------------- lint


def _print_problems(
    path: str,
    problems: Sequence[Problem],
    out: TextIO,
    warning: bool = False,
    warnings: Sequence[Problem] = (),
) -> None:
    """One line per problem (each a warning when ``warning``), and ``warnings`` among them, by line."""
    marked = sorted(
        [(p, warning) for p in problems] + [(w, True) for w in warnings], key=lambda pair: pair[0].line
    )
    for problem, is_warning in marked:
        where = f"{path}:{problem.line}" if problem.line else path
        field = f"{problem.path}: " if problem.path else ""  # no path: the file as a whole
        print(f"{where}: {field}{'warning: ' if is_warning else ''}{problem.message}", file=out)


def cmd_lint(files: Sequence[str], skip_env_check: bool = False) -> int:
    code = ExitCode.OK
    for path in files:
        try:
            loaded = config_mod.load(path, skip_env_check=skip_env_check)
        except ConfigError as exc:
            if not exc.problems and skip_env_check:  # only what the empty values of unset variables break
                print(f"{path}: ok")
                continue
            code = ExitCode.CONFIG
            _print_problems(path, exc.problems, sys.stdout, warnings=exc.warnings)
        else:
            _print_problems(path, loaded.warnings, sys.stdout, warning=True)
            print(f"{path}: ok")
    return int(code)


def _read_env_files(files: Sequence[str]) -> None:
    """``-e FILE``: dotenv files (``KEY=value`` lines, ``#`` comments, quotes) into the environment,
    before the config is read, as ``rpk connect --env-file``. Values are taken literally. A file that
    cannot be read or a line that is not ``KEY=value`` is a bad command line (exit 2)."""
    import io

    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    from bridge.core import localfiles

    for name in files:
        try:
            text = localfiles.read_config(name).decode("utf-8")
        except (FileRefused, UnicodeDecodeError) as exc:
            reason = exc.reason if isinstance(exc, FileRefused) else "it is not valid UTF-8"
            sys.stderr.write(f"{name}: cannot read env file: {reason}\n")
            raise SystemExit(int(ExitCode.CONFIG)) from exc
        bad = [b.original.line for b in parse_stream(io.StringIO(text)) if b.error]
        if bad:
            lines = ", ".join(str(n) for n in bad[:5])
            sys.stderr.write(f"{name}: line {lines}: not a KEY=value line\n")
            raise SystemExit(int(ExitCode.CONFIG))
        for key, value in dotenv_values(stream=io.StringIO(text), interpolate=False).items():
            if value is not None:
                os.environ[key] = value


# ---------------------------------------------------------------------------- run / backfill


# After shutdown_timeout a stuck step (a client library that does not give up when cancelled, a broker
# that does not answer) ends the process anyway: "20 s means 20 s", plus this margin.
HARD_STOP_MARGIN = 2.0


def _install_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, shutdown_timeout: float) -> None:
    def hard_stop() -> None:
        sys.stderr.write(
            f"shutdown_timeout ({shutdown_timeout:g}s) passed with the shutdown not done: exiting now; "
            "uncommitted records will be read again\n"
        )
        sys.stderr.flush()
        os._exit(int(ExitCode.FAILED))

    def on_signal(signum: int) -> None:
        if stop.is_set():
            sys.stderr.write("second signal: exiting now; uncommitted records will be read again\n")
            sys.stderr.flush()
            os._exit(int(ExitCode.INTERRUPTED))
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()
        timer = threading.Timer(shutdown_timeout + HARD_STOP_MARGIN, hard_stop)  # a thread: a stuck loop too
        timer.daemon = True
        timer.start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


async def _run_pipeline(loaded: config_mod.Loaded, mode: Mode, show_progress: bool) -> RunResult:
    from bridge.ops import http as http_mod  # aiohttp and prometheus-client: only for run and backfill

    stop = asyncio.Event()
    _install_signals(asyncio.get_running_loop(), stop, loaded.config.shutdown_timeout)
    if not show_progress:
        pipeline = Pipeline(loaded, mode, share=worker_share())
        async with http_mod.serving(loaded.config.http, pipeline, mode.name):  # hook: /ping /ready /metrics
            await _provision(loaded)  # hook: bridge.stream
            return await pipeline.run(stop)
    from bridge.ops.progress import BackfillProgress

    with BackfillProgress() as progress:
        pipeline = Pipeline(loaded, mode, on_progress=progress.advance, share=worker_share())
        loop = asyncio.get_running_loop()

        def show() -> None:  # the phase and the start of the rate are the pipeline's (bridge.ops.progress)
            progress.show(pipeline.phase, _planned_total(mode), pipeline.assigned_at, time.monotonic())

        async with http_mod.serving(loaded.config.http, pipeline, mode.name):  # hook: /ping /ready /metrics
            await _provision(loaded)  # hook: bridge.stream
            runner = loop.create_task(pipeline.run(stop))
            while not runner.done():
                await asyncio.wait({runner}, timeout=0.5)
                show()
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
        "error": None if result.failure is None else log_mod.redact_text(result.failure),
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
                "commit_held": r.held or None,
            }
            for r in result.reports
        ],
    }


def _print_summary(result: RunResult) -> None:
    print_summary(_summary_json(result))


def print_summary(summary: dict[str, Any]) -> None:
    """The summary table of a run's JSON summary (``_summary_json``, or the merge of ``--workers N``)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['mode']}: {summary['records']:,} records in {summary['elapsed_s']:.1f}s")
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
    parts = summary["partitions"]
    for r in parts:
        table.add_row(
            f"{r['topic']}/{r['partition']}",
            f"{r['records']:,}",
            _s(r["first_offset"]),
            _s(r["last_offset"]),
            r["stream"] or "-",
            _s(r["first_seq"]),
            _s(r["last_seq"]),
            f"{r['duplicates']:,}",
            _s(r["committed"]),
            f"{r.get('undelivered', 0):,}",
        )
    Console(file=sys.stdout, width=140).print(table)
    for r in parts:
        if r.get("stopped"):
            print(f"STOPPED: {r['stopped']}")
        if r.get("commit_held"):
            print(f"NOT COMMITTED: {r['topic']}/{r['partition']}: {r['commit_held']}")
    if summary.get("error"):
        print(f"FAILED: {summary['error']}")


def _s(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _load_or_exit(path: str, sets: Sequence[str] = ()) -> config_mod.Loaded:
    try:
        return config_mod.load(path, sets=tuple(sets))
    except ConfigError as exc:
        _print_problems(path, exc.problems, sys.stderr)
        raise SystemExit(int(ExitCode.CONFIG)) from exc


def _setup_logging(loaded: config_mod.Loaded, warnings: bool = True) -> None:
    lg = loaded.config.logger
    # logfmt only when written: unset, the default is JSON off a terminal, readable lines on one
    fmt = lg.format if "format" in lg.model_fields_set else None
    log_mod.setup(lg.level, fmt, lg.static_fields, timestamps=lg.add_timestamp)
    for warning in loaded.warnings if warnings else ():
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
    return flag if flag is not None else loaded.config.bridge.workers


def _set_args(sets: Sequence[str]) -> list[str]:
    return [arg for expression in sets for arg in ("--set", expression)]


def cmd_run(path: str, workers: int | None = None, sets: Sequence[str] = ()) -> int:
    loaded = _load_or_exit(path, sets)
    n = _workers(loaded, workers)
    if n > 1:
        from bridge.run.workers import supervise

        _setup_logging(loaded, warnings=False)  # the supervisor's own lines; each worker warns itself
        return supervise(["run", path, "--workers", "1", *_set_args(sets)], n, http=loaded.config.http)
    _setup_logging(loaded)
    result = _run(loaded, Continuous(), show_progress=False)
    return result if isinstance(result, int) else int(result.exit_code)


def cmd_backfill(
    path: str, start: str, as_json: bool, workers: int | None = None, sets: Sequence[str] = ()
) -> int:
    loaded = _load_or_exit(path, sets)
    begin = parse_start(start)  # checked by the parser
    n = _workers(loaded, workers)
    if n > 1:
        from bridge.run.workers import supervise

        # the workers report in JSON (and draw no progress line); the supervisor prints one summary
        args = ["backfill", path, "--from", start, "--workers", "1", "--json", *_set_args(sets)]
        _setup_logging(loaded, warnings=False)  # the supervisor's own lines; each worker warns itself
        render = None if as_json else print_summary
        return supervise(args, n, merge_json=True, http=loaded.config.http, render=render)
    _setup_logging(loaded)
    result = _run(loaded, Backfill(begin), show_progress=sys.stderr.isatty() and not as_json)
    if isinstance(result, int):
        return result
    if as_json:
        print(json.dumps(_summary_json(result), indent=2))
    else:
        _print_summary(result)
    return int(result.exit_code)


def _config_path(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The config file of a command: CONFIG or ``-c FILE`` (one of them, once)."""
    positional, flag = args.config_file, args.config
    if positional and flag and positional != flag:
        parser.error(f"give the config file once: {positional!r} and -c {flag!r} were both given")
    path: str | None = positional or flag
    if not path:
        parser.error("a config file is needed: CONFIG, or -c FILE")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    log_mod.guard_output()  # every line printed from here on: credentials in URLs masked (bridge.ops.log)
    parser, commands = _parser()
    args, extra = parser.parse_known_args(argv)
    command = args.command if args.command != "streams" else "streams ensure"
    if extra:  # said with the command's own usage, not the top level's (exit 2)
        commands.get(command, parser).error(f"unrecognized arguments: {' '.join(extra)}")
    _read_env_files(getattr(args, "env_file", []) or [])
    if command == "lint":
        return cmd_lint(args.files, args.skip_env_var_check)
    if command == "bench":
        return cmd_bench(args)
    if command == "dev":
        from bridgedev.demo import cmd_dev  # dev tooling: only for this command

        return cmd_dev(args.broker, args.config, args.records)
    path = _config_path(args, commands[command])
    if command == "run":
        return cmd_run(path, args.workers, args.set)
    if command == "backfill":
        return cmd_backfill(path, args.start, args.json, args.workers, args.set)
    return cmd_migration(args, path)


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
        "rounds": args.rounds,
        "go_peer": args.go_peer,
    }
    params = bench.Params(**{k: v for k, v in given.items() if v is not None})
    if args.workers is not None:
        params.workers = args.workers
    params.baseline = not args.no_baseline
    return bench.main(params)


# ---------------------------------------------------------------------------- migration commands


def cmd_migration(args: argparse.Namespace, path: str) -> int:
    """``verify``, ``translate`` and ``streams ensure``: one-shot commands with their own output."""
    loaded = _load_or_exit(path, args.set)
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
            sys.stderr.write(f"{path}: bridge.stream: required by streams ensure\n")
            return int(ExitCode.CONFIG)
        print(eventloop.run(streams.ensure(loaded)).describe())
        return int(ExitCode.OK)
    except BridgeError as exc:
        sys.stderr.write(f"{args.command} failed: {log_mod.redact_text(str(exc))}\n")
        return int(exc.exit_code)


if __name__ == "__main__":
    raise SystemExit(main())
