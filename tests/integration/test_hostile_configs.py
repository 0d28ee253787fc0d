"""Configs that would exhaust the process, through the real CLI on real brokers: each ends in exit 2
with a message naming the field (or the file) and the line, within seconds and well under 200 MB,
before anything connects.

Each command runs under a small wrapper (``BOUNDED``) that caps its address space at 4 GB and its time
at 60 s (so that a regression fails here instead of taking the machine) and reports its peak RSS.
Before these limits existed: the alias bomb ran 30 s and 3.7 GB into a MemoryError traceback, nesting
5,000 deep and 3,000 chained methods ended in RecursionError tracebacks, the 50 MB config took 60 s
and 780 MB (and was "ok"), credential files at /dev/zero or a 2 GiB file ran into MemoryError, at a
FIFO the run blocked for good and ignored SIGTERM — and ``lint`` said ok to every file case.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import Kafka
from tests.support import REPO, bridge_cmd, write_config

pytestmark = pytest.mark.integration
on_apache_kafka = pytest.mark.parametrize("kafka", ["kafka"], indirect=True)

SECONDS = 5.0  # wall time of one command, interpreter start included
RSS_MB = 200

# Runs one command with its address space capped; prints its exit code, wall time, peak RSS, output.
BOUNDED = r"""
import json, resource, subprocess, sys, time
limit = 4 * 1024**3
started = time.monotonic()
try:
    done = subprocess.run(
        sys.argv[1:], capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    )
    code, out, err = done.returncode, done.stdout, done.stderr
except subprocess.TimeoutExpired as exc:
    code, out, err = "timeout", exc.stdout or "", exc.stderr or ""
    out, err = [x.decode(errors="replace") if isinstance(x, bytes) else x for x in (out, err)]
print(json.dumps({
    "code": code, "seconds": time.monotonic() - started, "out": out[-4000:], "err": err[-4000:],
    "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
}))
"""


@dataclass(frozen=True)
class Bounded:
    args: tuple[str, ...]
    code: int | str
    seconds: float
    rss_mb: float
    text: str

    def check(self, expected: str) -> None:
        """Exit 2, ``expected`` (a regex) in the output, within the time and memory bounds."""
        assert self.code == 2, (self.args, self.code, self.text[-3000:])
        assert re.search(expected, self.text), (self.args, expected, self.text[-3000:])
        assert self.seconds < SECONDS, (self.args, self.seconds)
        assert self.rss_mb < RSS_MB, (self.args, self.rss_mb)
        assert "Traceback" not in self.text, self.text[-3000:]


def bounded(*args: str) -> Bounded:
    done = subprocess.run(
        [sys.executable, "-c", BOUNDED, *bridge_cmd(*args)], capture_output=True, text=True, timeout=90, cwd=REPO
    )  # fmt: skip
    result = json.loads(done.stdout)
    return Bounded(args, result["code"], result["seconds"], result["rss_mb"], result["out"] + result["err"])


def every_command(cfg: Path) -> list[Bounded]:
    """lint, run and backfill on ``cfg``, two at a time (the machine has two cores)."""
    commands = [("lint", str(cfg)), ("run", "-c", str(cfg)), ("backfill", "-c", str(cfg), "--json")]
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda args: bounded(*args), commands))


@pytest.fixture
def base(kafka: Kafka, nats_url: str, names: dict, workdir: Path) -> dict:
    """A working config on the real brokers (the hostile part is added by each test)."""
    path = write_config(
        workdir / "base.yaml", brokers=kafka.bootstrap, topics=[names["topic"]], group=names["group"],
        nats_url=nats_url, subject=names["prefix"] + '.${! meta("kafka_partition") }',
        extra_output={"max_reconnects": 0},
    )  # fmt: skip
    doc: dict = yaml.safe_load(path.read_text())
    return doc


def write(path: Path, doc: dict, tail: str = "") -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False) + tail)
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def key_line(path: Path, dotted: str) -> int:
    """The 1-based line of the key at ``dotted`` (``a.b[0].c``), from PyYAML's own node marks."""
    node = yaml.compose(path.read_text())
    line = 0
    for part in re.findall(r"[^.\[\]]+", dotted):
        if isinstance(node, yaml.SequenceNode):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            key, node = next((k, v) for k, v in node.value if k.value == part)
            line = key.start_mark.line + 1
    return line


# --------------------------------------------------------------------------- the YAML and the templates


def billion_laughs() -> str:
    """The classic: nine levels, each a list of ten aliases of the one before: 10⁹ "lol"s."""
    lines = ["a: &a [" + ", ".join(['"lol"'] * 10) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    return "".join(f"    {line}\n" for line in lines)


@on_apache_kafka
def test_an_alias_bomb(base: dict, workdir: Path) -> None:
    bomb = billion_laughs()
    assert len(bomb) < 750, len(bomb)
    cfg = write(workdir / "bomb.yaml", base, "metrics:\n  prometheus:\n" + bomb)
    line = line_of(cfg, "e: &e")
    for run in every_command(cfg):
        run.check(
            rf"bomb\.yaml:{line}: metrics\.prometheus\.e\[\d\]: alias \*d expands the document past 50,000 values"
        )


@on_apache_kafka
def test_yaml_nested_5000_deep(base: dict, workdir: Path) -> None:
    cfg = write(workdir / "deep.yaml", base, "metrics:\n  prometheus: " + "[" * 5000 + "]" * 5000 + "\n")
    line = line_of(cfg, "prometheus: [[[")
    for run in every_command(cfg):
        run.check(
            rf"deep\.yaml:{line}: metrics\.prometheus\[0\]\[0\]\[0\]\[0\]\.…: nested more than 64 levels deep"
        )


@on_apache_kafka
@pytest.mark.parametrize(
    "query",
    ['meta("kafka_partition")' + ".uppercase()" * 3000, '"p"' + '.or(meta("k")' * 5000 + ")" * 5000],
    ids=["3000-chained-methods", "5000-nested-arguments"],
)
def test_an_interpolation_too_deep(base: dict, workdir: Path, query: str) -> None:
    base["output"]["nats_jetstream"]["subject"] = "orders.${! " + query + " }"
    cfg = write(workdir / "template.yaml", base)
    line = line_of(cfg, "subject:")
    for run in every_command(cfg):
        run.check(
            rf"template\.yaml:{line}: output\.nats_jetstream\.subject: query nested or chained more than 64 levels deep"
        )


@on_apache_kafka
def test_a_50_mb_config(base: dict, workdir: Path) -> None:
    cfg = write(workdir / "big.yaml", base, "metrics:\n  prometheus:\n    padding:\n")
    with open(cfg, "a") as fh:
        line = "      - " + "a" * 70 + "\n"
        fh.write(line * (50 * 1024 * 1024 // len(line)))
    for run in every_command(cfg):
        run.check(r"big\.yaml: cannot read config file: it is 50 MiB, more than the 1 MiB allowed")


# --------------------------------------------------------------------------- credential files


@pytest.fixture
def hostile_files(workdir: Path) -> dict[str, tuple[str, str]]:
    """Each kind of file no credential may be: the path, and what the error says."""
    fifo = workdir / "fifo"
    os.mkfifo(fifo)
    huge = workdir / "huge.bin"
    with open(huge, "wb") as fh:
        fh.truncate(2 * 1024**3)  # sparse: nothing on disk
    return {
        "dev-zero": ("/dev/zero", "it is a character device, not a regular file"),
        "fifo": (str(fifo), r"it is a FIFO \(named pipe\), not a regular file"),
        "directory": (str(workdir), "it is a directory"),
        "huge": (str(huge), "it is 2 GiB, more than the 1 MiB allowed"),
    }


KINDS = ["dev-zero", "fifo", "directory", "huge"]
FIELDS = [
    "output.nats_jetstream.auth.{auth}",
    "output.nats_jetstream.tls.root_cas_file",
    "output.nats_jetstream.tls.client_certs[0].cert_file",
    "output.nats_jetstream.tls.client_certs[0].key_file",
    "input.kafka_franz.tls.root_cas_file",
]


@on_apache_kafka
@pytest.mark.parametrize("auth", ["nkey_file", "user_credentials_file"])
@pytest.mark.parametrize("rotation", range(4))
def test_credential_files_that_are_not_regular_small_files(
    base: dict, workdir: Path, hostile_files: dict[str, tuple[str, str]], auth: str, rotation: int
) -> None:
    """Every credential file field at once, each pointing at another kind of file; over the rotations
    every field meets every kind. lint, run and backfill name each field, its line and the file."""
    kind = {field: KINDS[(i + rotation) % len(KINDS)] for i, field in enumerate(FIELDS)}
    path = {field: hostile_files[k][0] for field, k in kind.items()}
    out = base["output"]["nats_jetstream"]
    out["auth"] = {auth: path[FIELDS[0]]}
    out["tls"] = {"enabled": True, "root_cas_file": path[FIELDS[1]],
                  "client_certs": [{"cert_file": path[FIELDS[2]], "key_file": path[FIELDS[3]]}]}  # fmt: skip
    base["input"]["kafka_franz"]["tls"] = {"enabled": True, "root_cas_file": path[FIELDS[4]]}
    cfg = write(workdir / "creds.yaml", base)
    for run in every_command(cfg):
        for field in FIELDS:
            name = field.format(auth=auth)
            reason = hostile_files[kind[field]][1]
            run.check(
                rf"creds\.yaml:{key_line(cfg, name)}: {re.escape(name)}: cannot read '{re.escape(path[field])}': {reason}"
            )
