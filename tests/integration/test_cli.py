"""The command line as a Redpanda Connect or NATS user expects it (issue 13, "Command line" and "lint"),
and the config findings of the attack on issue 10 through the real CLI (F8, F9, F14): every case runs
``python -m bridge``.

- ``run config.yaml`` / ``backfill config.yaml`` (as ``rpk connect run``), ``-c`` kept; ``--version``;
  help and defaults on every flag; every bad command line exits 2 with no internal name in its message;
  ``--set path=value``, ``-e/--env-file``, ``lint --skip-env-var-check``.
- lint: problems sorted by line, warnings for what has no effect, ``logger.format: logfmt`` honoured.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import Kafka
from tests.support import (
    REPO,
    Record,
    create_stream,
    create_topic,
    produce,
    read_stream,
    run_cli,
    write_config,
)

pytestmark = pytest.mark.integration

VALID = """\
input:
  kafka_franz:
    seed_brokers: [127.0.0.1:9]
    topics: [orders]
    consumer_group: g
output:
  nats_jetstream:
    urls: [nats://127.0.0.1:9]
    subject: orders.${! meta("kafka_partition") }
"""


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- version, help


def test_version() -> None:
    version = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert version is not None
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"kafka-jetstream-bridge {version.group(1)}"


@pytest.mark.parametrize(
    "command", ["run", "backfill", "lint", "streams ensure", "verify", "translate", "bench", "dev"]
)
def test_every_flag_has_help(command: str) -> None:
    done = run_cli(*command.split(), "--help")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("options:", 1)[1].splitlines()
    entries = [i for i, line in enumerate(lines) if line.startswith("  -")]
    assert len(entries) >= 2
    for i in entries:
        spec, _, same_line = lines[i].strip().partition("  ")
        next_line = lines[i + 1] if i + 1 < len(lines) else ""
        has_help = same_line.strip() or (
            next_line.startswith(" " * 8) and not next_line.strip().startswith("-")
        )
        assert has_help, f"{command}: no help for {spec!r}"


def test_bench_and_dev_show_their_defaults() -> None:
    """The defaults in ``bench --help`` are the bench's own (bridgedev.bench.Params)."""
    from bridgedev.bench import Params

    text = " ".join(run_cli("bench", "--help", env={"COLUMNS": "400"}).stdout.split("options:", 1)[1].split())
    p = Params()
    for flag, value in [("--records", p.records), ("--size", p.size), ("--partitions", p.partitions),
                        ("--max-in-flight", p.max_in_flight), ("--broker", p.broker),
                        ("--latency-rate", p.latency_rate), ("--latency-seconds", p.latency_seconds),
                        ("--output", p.output), ("--workers", ",".join(map(str, p.workers)))]:  # fmt: skip
        help_text = text.split(flag, 1)[1].split(" --", 1)[0]
        assert f"(default: {value})" in help_text, (flag, help_text)
    dev = " ".join(run_cli("dev", "--help").stdout.split())
    for shown in ("(default: tansu)", "(default: configs/local.yaml)", "(default: 30)"):
        assert shown in dev
    lint = " ".join(run_cli("lint", "--help").stdout.split())
    assert "--skip-env-var-check" in lint
    assert "--env-file" in lint


# --------------------------------------------------------------------------- bad command lines: exit 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "a command is needed: run, backfill, lint, streams, verify, translate, bench, dev"),
        (("rnu",), "unknown command 'rnu' (did you mean run?)"),
        (("streams",), "streams needs a command: ensure"),
        (("streams", "ensur"), "unknown command 'ensur' (did you mean ensure?)"),
        (("run",), "a config file is needed: CONFIG, or -c FILE"),
        (("run", "a.yaml", "-c", "b.yaml"), "give the config file once"),
        (("run", "c.yaml", "--workers", "0"), "argument --workers: must be at least 1, not 0"),
        (("run", "c.yaml", "--workers", "two"), "argument --workers: expected a whole number, not 'two'"),
        (("backfill", "c.yaml", "--workers", "-1"), "argument --workers: must be at least 1, not -1"),
        (("backfill", "c.yaml", "--from", "yesterday"), "argument --from: takes earliest, committed or an RFC 3339"),
        (("backfill", "c.yaml", "--from", "1960-01-01T00:00:00Z"), "is before 1970"),
        (("backfill", "c.yaml", "--from", "2026-01-31T00:00:00"), "needs a timezone"),
        (("lint",), "the following arguments are required: FILE"),
        (("translate", "c.yaml"), "the following arguments are required: --group"),
        (("bench", "--records", "0"), "argument --records: must be at least 1, not 0"),
        (("bench", "--workers", "1,0"), "argument --workers: must be at least 1, not 0"),
        (("bench", "--latency-seconds", "-1"), "argument --latency-seconds: must be 0 or more"),
        (("bench", "--broker", "redpanda"), "argument --broker: invalid choice: 'redpanda'"),
        (("dev", "--records", "-5"), "argument --records: must be at least 1, not -5"),
        (("run", "c.yaml", "--bogus"), "kafka-jetstream-bridge run: error: unrecognized arguments: --bogus"),
        (("streams", "ensure", "c.yaml", "--bogus"), "usage: kafka-jetstream-bridge streams ensure"),
        (("run", "c.yaml", "-e", "/nonexistent/x.env"), "/nonexistent/x.env: cannot read env file"),
        (("run", "c.yaml", "--workers", "1000"), "argument --workers: must be at most 64, not 1000"),
        (("backfill", "c.yaml", "--workers", "65"), "argument --workers: must be at most 64, not 65"),
        (("translate", "c.yaml", "--group", ""), "argument --group: must not be empty"),
    ],
)  # fmt: skip
def test_a_bad_command_line_exits_2_in_the_users_words(
    args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    write(tmp_path, VALID)
    done = run_cli(*(str(tmp_path / a) if a == "c.yaml" else a for a in args), timeout=60)
    assert done.returncode == 2, (args, done.stdout, done.stderr)
    assert message in done.stderr, done.stderr
    for internal in (
        "streams_command",
        "config_file",
        "required: command",
        "cmd_",
        "Traceback",
        "SystemExit",
    ):
        assert internal not in done.stderr + done.stdout


# --------------------------------------------------------------------------- --set, --env-file, lint flags


def test_lint_skip_env_var_check(tmp_path: Path) -> None:
    cfg = write(tmp_path, VALID.replace("consumer_group: g", 'consumer_group: "g${UNSET_X_9}"'))
    done = run_cli("lint", str(cfg))
    assert done.returncode == 2
    assert (
        f"{cfg}:5: input.kafka_franz.consumer_group: environment variable UNSET_X_9 is not set" in done.stdout
    )
    done = run_cli("lint", "--skip-env-var-check", str(cfg))
    assert (done.returncode, done.stdout.strip()) == (0, f"{cfg}: ok")


def test_env_file_sets_variables_for_lint(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        VALID.replace("consumer_group: g", "consumer_group: ${GROUP_FROM_FILE}")
        + "    max_in_flight: ${MIF}\n",
    )
    env = tmp_path / "bridge.env"
    env.write_text("# comment\nexport GROUP_FROM_FILE='grp one'\nOTHER=\"x\"\nMIF=5\n")
    # the file's values override the environment's (MIF=lots would be a problem)
    done = run_cli("lint", "-e", str(env), str(cfg), env={"MIF": "lots"})
    assert (done.returncode, done.stdout.strip()) == (0, f"{cfg}: ok"), done.stdout
    bad = tmp_path / "bad.env"
    bad.write_text("GOOD=1\nthis line is not one\n")
    done = run_cli("lint", "-e", str(bad), str(cfg))
    assert done.returncode == 2
    assert f"{bad}: line 2: not a KEY=value line" in done.stderr


def test_lint_sorts_by_line_and_warns_about_what_has_no_effect(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        VALID.replace("    consumer_group: g\n", "    consumer_grup: g\n    auto_replay_nacks: false\n")
        + "    bogus: 1\ntracer:\n  open_telemetry_collector: {}\nlogger:\n  level: LOUD\n",
    )
    done = run_cli("lint", str(cfg))
    assert done.returncode == 2
    lines = done.stdout.splitlines()
    numbers = [int(line.split(":")[1]) for line in lines]
    assert numbers == sorted(numbers), lines
    assert (
        lines[0] == f"{cfg}:5: input.kafka_franz.consumer_grup: unknown field (did you mean consumer_group?)"
    )
    # what has no effect is said beside the problems, not only once they are fixed
    assert [line.split(": warning:")[0] for line in lines if ": warning: " in line] == [
        f"{cfg}:6: input.kafka_franz.auto_replay_nacks",
        f"{cfg}:13: tracer.open_telemetry_collector",
    ]
    assert len(lines) > 3  # the problems are there too
    fixed = (
        cfg.read_text()
        .replace("consumer_grup", "consumer_group")
        .replace("    bogus: 1\n", "")
        .replace("LOUD", "INFO")
    )
    cfg.write_text(fixed)
    done = run_cli("lint", str(cfg))
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines() == [
        f"{cfg}:6: input.kafka_franz.auto_replay_nacks: warning: auto_replay_nacks has no effect in this bridge: "
        "a record is never dropped here: a failing publish is retried (bridge.retry_timeout) or dead-lettered "
        "(bridge.dead_letter)",
        f"{cfg}:12: tracer.open_telemetry_collector: warning: open_telemetry_collector has no effect in this "
        "bridge: this bridge exports no traces (output.nats_jetstream.inject_tracing_map passes a record's "
        "trace context on in its headers)",
        f"{cfg}: ok",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VALID.replace("    subject:", "    urls: [http://127.0.0.1:4222]\n    subjecttt:"), None),
        (VALID.replace("nats://127.0.0.1:9", "http://127.0.0.1:9"),
         ":8: output.nats_jetstream.urls: URL 'http://127.0.0.1:9': the scheme 'http' is not a NATS scheme"),
        (VALID.replace('orders.${! meta("kafka_partition") }', "'orders.*'"),
         ":9: output.nats_jetstream.subject: subject 'orders.*' contains the wildcard token '*'"),
        (VALID.replace('orders.${! meta("kafka_partition") }', "orders..x"),
         ":9: output.nats_jetstream.subject: subject 'orders..x' has an empty token"),
        (VALID.replace("nats://127.0.0.1:9", "nats://127.0.0.1:abc"),
         ":8: output.nats_jetstream.urls: URL 'nats://127.0.0.1:abc' has the port 'abc', which is not a number"),
        (VALID.replace("nats://127.0.0.1:9", "'nats://h h:4222'"),
         ":8: output.nats_jetstream.urls: URL 'nats://h h:4222' has whitespace in its host"),
        (VALID + "bridge:\n  workers: 1000\n", ":11: bridge.workers: must be at most 64, not 1000"),
        (VALID.replace("topics: [orders]", "topics: [orders, orders]"),
         ":2: input.kafka_franz: topic 'orders' is named twice in topics"),
    ],
)  # fmt: skip
def test_what_can_never_work_exits_2_before_connecting(
    tmp_path: Path, text: str, expected: str | None
) -> None:
    cfg = write(tmp_path, text)
    for args in (("lint", str(cfg)), ("run", str(cfg)), ("backfill", str(cfg))):
        done = run_cli(*args, timeout=60)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        if expected:
            assert f"{cfg}{expected}" in done.stdout + done.stderr


# --------------------------------------------------------------------------- attack B through the CLI


def test_skip_env_var_check_lints_the_shipped_configs_without_their_variables() -> None:
    """Attack B, item 5: the empty values of unset variables broke other rules (no topic, SASL without
    a user, a client certificate without files); a CI job without the secrets could not lint."""
    names = ("configs/backfill.yaml", "configs/secured.yaml")
    done = run_cli("lint", "--skip-env-var-check", *names)
    assert (done.returncode, done.stdout.splitlines()) == (0, [f"{n}: ok" for n in names]), done.stdout


def test_a_redpanda_connect_file_lints_with_warnings_in_plain_words(tmp_path: Path) -> None:
    """Attack B, items 2, 3, 4, 7, 9: the skeleton and inert fields are accepted, tracers warned about,
    a msg_id records share warned about; a problem names no Python type, a null key has its line."""
    cfg = write(
        tmp_path,
        VALID.replace("    consumer_group: g\n", "    consumer_group: g\n    partition_buffer_bytes: 1MB\n"
                      "    regexp_topics_include: []\n    tcp: {connect_timeout: 0s}\n")
        + "bridge:\n  msg_id: ${! meta(\"kafka_key\") }\ninput_resources: []\ntests: []\n"
        + "tracer:\n  jaeger: {agent_address: localhost:6831}\nmetrics:\n  json_api: {}\n  mapping: ''\n"
        + "http:\n  cert_file: ''\n  cors: {enabled: false}\n  basic_auth: {enabled: false}\n",
    )  # fmt: skip
    done = run_cli("lint", str(cfg))
    assert done.returncode == 0, done.stdout
    assert [line.split(": warning:")[0] for line in done.stdout.splitlines()] == [
        f"{cfg}:6: input.kafka_franz.partition_buffer_bytes",
        f"{cfg}:14: bridge.msg_id",
        f"{cfg}:18: tracer.jaeger",
        f"{cfg}:20: metrics.json_api",
        f"{cfg}: ok",
    ]
    assert "JetStream drops all but the first of them as duplicates" in done.stdout
    cfg.write_text(VALID + "    auth: x\n    tls: true\n~: 1\n")
    done = run_cli("lint", str(cfg))
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        f"{cfg}:10: output.nats_jetstream.auth: expected a mapping (name: value lines) (got 'x')",
        f"{cfg}:11: output.nats_jetstream.tls: expected a mapping (name: value lines) (got true)",
        f"{cfg}:12: a key is null (~): a key must be a name (quote it to mean the text)",
    ]


def test_a_problem_from_set_names_the_set_not_a_line() -> None:
    """Attack B, item 10: it said ``local.yaml:19:``, the line of the ``${NATS_URL:...}`` it replaced."""
    done = run_cli(
        "streams", "ensure", "configs/local.yaml", "--set", "output.nats_jetstream.urls.0=http://x"
    )
    assert done.returncode == 2
    assert (
        "configs/local.yaml: output.nats_jetstream.urls: URL 'http://x': the scheme 'http' is not a NATS scheme"
        in done.stderr + done.stdout
    )
    assert "(set by --set output.nats_jetstream.urls.0=…)" in done.stderr + done.stdout


# --------------------------------------------------------------------------- F8, F9, F14 through the CLI


@pytest.mark.parametrize("password", ["*Xk9sekritRUN", "!Xk9sekritBF"])
def test_a_password_yaml_would_misread_never_shows(tmp_path: Path, password: str) -> None:
    """F8: before, lint, run and ``backfill --json`` printed "invalid YAML: found undefined alias
    'Xk9sekritRUN'" / "... the tag '!Xk9sekritBF'". A second problem keeps every command at exit 2."""
    cfg = write(
        tmp_path,
        VALID + "    auth:\n      user: u\n      password: ${NATS_PASSWORD}\n    max_in_flight: lots\n",
    )
    for args in (("lint", str(cfg)), ("run", str(cfg)), ("backfill", str(cfg), "--json")):
        done = run_cli(*args, env={"NATS_PASSWORD": password}, timeout=60)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "sekrit" not in done.stdout + done.stderr
        assert "invalid YAML" not in done.stdout + done.stderr
        assert "output.nats_jetstream.max_in_flight" in done.stdout + done.stderr


def test_a_password_with_yaml_characters_is_the_password(tmp_path: Path) -> None:
    """F8: ``&x y`` used to be silently the password ``y``: now lint passes and the loaded text is it."""
    cfg = write(tmp_path, VALID + "    auth:\n      user: u\n      password: ${NATS_PASSWORD}\n")
    done = run_cli("lint", str(cfg), env={"NATS_PASSWORD": "&x y"})
    assert (done.returncode, done.stdout.strip()) == (0, f"{cfg}: ok")


@pytest.mark.parametrize("command", ["run", "backfill", "verify", "translate", "streams ensure", "lint"])
def test_a_token_in_a_query_string_is_refused_and_never_printed(tmp_path: Path, command: str) -> None:
    """F9: before, ``NATS (nats://127.0.0.1:45999?token=sekrit07) unreachable`` in run, backfill,
    verify, translate and streams; lint said ok."""
    cfg = write(tmp_path, VALID.replace("[nats://127.0.0.1:9]", '["nats://127.0.0.1:45999?token=sekrit07"]')
                + "bridge:\n  stream: {name: S}\n")  # fmt: skip
    extra = ("--group", "g") if command == "translate" else ()
    done = run_cli(*command.split(), str(cfg), *extra, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "sekrit07" not in done.stdout + done.stderr
    assert "has a query string, which the NATS client ignores" in done.stdout + done.stderr


def test_an_offset_that_cannot_be_sought_is_refused_by_lint_and_backfill(tmp_path: Path) -> None:
    """F14: ``topics: ["t:0:-5"]`` passed lint, then backfill crashed with a ValueError traceback."""
    cfg = write(
        tmp_path,
        VALID.replace("topics: [orders]", 'topics: ["t:0:-5"]').replace("    consumer_group: g\n", ""),
    )
    for args in (("lint", str(cfg)), ("backfill", str(cfg))):
        done = run_cli(*args, timeout=60)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "offset -5 in 't:0:-5' cannot be sought to: use an offset from 0, -1 (the end of the partition) " \
               "or -2 (its start)" in done.stdout + done.stderr  # fmt: skip
        assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- with brokers


async def test_positional_config_set_env_file_and_special_offsets(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """``backfill CONFIG`` as ``rpk connect run CONFIG``; ``--set`` changes the subject; ``-e`` gives the
    variables the config needs; ``topic:p:-2`` reads from the start of the partition, ``:-1`` from
    its end (F14: what kafka_franz accepts)."""
    topic, stream, prefix = names["topic"], names["stream"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 2)
    await produce(kafka.bootstrap, topic, [Record(0, b"k", f"0-{i}".encode()) for i in range(5)])
    for i in range(5):  # one batch each: Tansu's ListOffsets(latest) is the last batch's base + 1
        await produce(kafka.bootstrap, topic, [Record(1, b"k", f"1-{i}".encode())])
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers="${TEST_BROKERS}", topics=[f"{topic}:0:-2", f"{topic}:1:-1"],
                       group=None, nats_url="${TEST_NATS}", subject=f"{prefix}.unused")  # fmt: skip
    env = workdir / "test.env"
    env.write_text(f"TEST_BROKERS={kafka.bootstrap}\nTEST_NATS={nats_url}\n")
    done = run_cli("backfill", str(cfg), "-e", str(env), "--json",
                   "--set", f'output.nats_jetstream.subject={prefix}.p${{! meta("kafka_partition") }}')  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert {p["partition"]: p["records"] for p in report["partitions"]} == {0: 5, 1: 0}
    stored = await read_stream(nats_url, stream)
    assert [(m.subject, m.data) for m in stored] == [(f"{prefix}.p0", f"0-{i}".encode()) for i in range(5)]


async def test_logfmt_when_the_config_asks_for_it(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic, stream, prefix = names["topic"], names["stream"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 1)
    await produce(kafka.bootstrap, topic, [Record(0, b"k", b"v")])
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=names["group"],
                       nats_url=nats_url, subject=f"{prefix}.x", top={"logger": {"level": "INFO", "format": "logfmt"}})  # fmt: skip
    done = run_cli("backfill", "-c", str(cfg), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines
    assert all(re.match(r"^timestamp=\S+ level=\w+ logger=\S+ event=\S+", line) for line in lines), lines[:5]
    assert any("event=committed" in line for line in lines)
