"""``configs/``: every example passes ``lint`` (the real CLI), and Redpanda Connect sections this bridge
does not implement are lint errors that name them (path and line).

The examples reference secrets and per-deployment values as ``${VAR}`` without defaults; the test sets
each one it finds. Lint checks that the credential files a config names are regular files of at most
1 MiB (not what is in them): for a variable set as such a file, the test writes a small one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.core.config import load
from bridge.core.errors import ConfigError
from tests.support import REPO, run_cli

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
_REQUIRED_VAR = re.compile(r"\$\{(?![!{])([A-Za-z_][A-Za-z0-9_]*)\}")
_FILE_FIELD = re.compile(r"^\s*(?:- )?\w+_file:")


def required_vars(path: Path, files: Path | None = None) -> dict[str, str]:
    """A value for each variable without a default; with ``files``, a variable set as a ``*_file``
    field is a small file written there."""
    env = {name: f"placeholder-{name.lower()}" for name in _REQUIRED_VAR.findall(path.read_text())}
    if files is not None:
        for line in path.read_text().splitlines():
            if _FILE_FIELD.match(line):
                for name in _REQUIRED_VAR.findall(line):
                    env[name] = str(files / name.lower())
                    (files / name.lower()).write_text("placeholder\n")
    return env


def test_the_four_uses_have_an_example() -> None:
    assert {p.stem for p in CONFIGS} >= {"migration", "replication", "backfill", "secured"}


def test_every_example_passes_lint(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    for path in CONFIGS:
        env.update(required_vars(path, tmp_path))
    done = run_cli("lint", *(str(p) for p in CONFIGS), env=env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    for path in CONFIGS:
        assert f"{path}: ok" in done.stdout, done.stdout


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_lint_names_each_required_variable_when_unset(path: Path) -> None:
    needed = required_vars(path)
    if not needed:
        load(path, environ={})
        return
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    messages = " ".join(p.message for p in info.value.problems)
    for name in needed:
        assert f"environment variable {name} is not set" in messages


def test_secured_example_uses_the_secured_fields(tmp_path: Path) -> None:
    secured = REPO / "configs" / "secured.yaml"
    loaded = load(secured, environ=required_vars(secured, tmp_path))
    assert loaded.kafka.sasl is not None
    assert loaded.kafka.sasl.mechanism == "SCRAM-SHA-512"
    assert loaded.kafka.tls.enabled
    out = loaded.output
    assert out.tls.enabled
    assert len(out.tls.client_certs) == 1
    assert out.auth.methods == ["user_credentials_file"]
    assert loaded.templates.tracing is not None


VALID = """\
input:
  kafka_franz:
    seed_brokers: [k:9092]
    topics: [t]
    consumer_group: g
output:
  nats_jetstream:
    urls: [nats://n:4222]
    subject: s
"""


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        (VALID + "pipeline:\n  processors:\n    - mapping: root = this\n", "pipeline", "pipeline processors are not implemented"),
        (VALID.replace("input:\n", "input:\n  processors: [{mapping: root = this}]\n"), "input", "input processors are not implemented"),
        (VALID.replace("output:\n", "output:\n  processors: [{mapping: root = this}]\n"), "output", "output processors are not implemented"),
        (VALID.replace("  kafka_franz:", "  generate:"), "input.generate", "input type 'generate' is not implemented"),
        (VALID.replace("  kafka_franz:", "  broker:"), "input.broker", "input type 'broker' is not implemented"),
        (VALID.replace("  nats_jetstream:", "  kafka_franz:"), "output.kafka_franz", "output type 'kafka_franz' is not implemented"),
        (VALID.replace("  nats_jetstream:", "  switch:"), "output.switch", "output type 'switch' is not implemented"),
        (VALID + "buffer:\n  memory: {}\n", "buffer.memory", "buffer type 'memory' is not implemented"),
        (VALID + "tracer:\n  zipkin: {}\n", "tracer.zipkin", "tracer type 'zipkin' is not implemented"),
        (VALID + "metrics:\n  statsd: {}\n", "metrics.statsd", "metrics type 'statsd' is not implemented"),
        (VALID + "cache_resources: [{label: c, memory: {}}]\n", "cache_resources", "resources are not implemented"),
        (VALID + "rate_limit_resources: [{label: r, local: {}}]\n", "rate_limit_resources", "resources are not implemented"),
        (VALID + "tests: [{name: t}]\n", "tests", "config unit tests are not implemented"),
        (VALID + "    inject_tracing_map: root = this.foo\n", "output.nats_jetstream.inject_tracing_map", "is not implemented"),
    ],
    ids=["pipeline-processors", "input-processors", "output-processors", "input-generate", "input-broker",
         "output-kafka", "output-switch", "buffer", "tracer", "metrics", "cache-resources",
         "rate-limit-resources", "unit-tests", "bloblang-mapping"],
)  # fmt: skip
def test_unimplemented_sections_are_named(tmp_path: Path, text: str, path: str, message: str) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(config, environ={})
    found = [p for p in info.value.problems if p.path == path]
    assert found, [str(p) for p in info.value.problems]
    assert message in found[0].message
    assert found[0].line > 0


def test_lint_cli_reports_every_problem_with_file_line_and_path(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        VALID
        + "    auth:\n      token: t\n      nkey: SUAX\n"
        + "    tls:\n      enabled: true\n      client_certs:\n        - {cert: a, key: b}\n        - {cert: c, key: d}\n"
        + "pipeline:\n  processors: [{bloblang: root = this}]\n"
    )
    done = run_cli("lint", str(config), timeout=60)
    assert done.returncode == 2
    lines = done.stdout.splitlines()
    assert (
        f"{config}:10: output.nats_jetstream.auth: configure one authentication method, not 2: nkey, token"
        in lines
    )
    assert any(
        line.startswith(f"{config}:13: output.nats_jetstream.tls: client_certs: this bridge presents one")
        for line in lines
    )
    assert (
        f"{config}:18: pipeline: pipeline processors are not implemented by this bridge: records are copied as "
        "they are (key, value, headers); remove them, and transform before Kafka or after JetStream (for "
        "example with a Redpanda Connect pipeline reading the stream), or shape the subject, headers and "
        "Nats-Msg-Id with ${! ... } interpolations" in lines
    )


# ----------------------------------------------------------------------------------- docs/fields.md

# every field of the reference page (Redpanda Connect's nats_jetstream output), as docs/fields.md spells it
REFERENCE_FIELDS = [
    "label", "urls", "max_reconnects", "subject", "headers", "metadata", "metadata.include_prefixes",
    "metadata.include_patterns", "max_in_flight", "tls", "tls.enabled", "tls.skip_cert_verify",
    "tls.enable_renegotiation", "tls.root_cas", "tls.root_cas_file", "tls.client_certs[]",
    "tls.client_certs[].cert", "tls.client_certs[].cert_file", "tls.client_certs[].password",
    "tls_handshake_first", "auth", "auth.nkey_file", "auth.nkey", "auth.user_credentials_file", "auth.user_jwt",
    "auth.user_nkey_seed", "auth.user", "auth.password", "auth.token", "inject_tracing_map",
]  # fmt: skip


def test_fields_table_covers_the_reference_and_names_real_tests() -> None:
    text = (REPO / "docs" / "fields.md").read_text()
    first_column = {
        name
        for line in text.splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`([^`]+)`", line.split("|")[1])
    }
    missing = [field for field in REFERENCE_FIELDS if field not in first_column]
    assert not missing, missing
    current = None  # a `::name` refers to the file named last before it
    for line in text.splitlines():
        for match in re.finditer(r"`(tests/[\w/]+\.py)::(\w+)|`::(\w+)", line):
            if match.group(1):
                current, name = match.group(1), match.group(2)
            else:
                assert current is not None, line
                name = match.group(3)
            assert f"def {name}(" in (REPO / current).read_text(), f"{current}::{name} does not exist"
