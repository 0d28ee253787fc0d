"""bridge.core.localfiles: the config file and credential files are read within bounds, never blocking.

And the config checks every credential file it names when it loads (so ``lint`` reports them), with
the field's dotted path and line; files of a ``tls`` block that is not enabled are never read.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bridge.core import localfiles
from bridge.core.config import load, parse
from bridge.core.errors import ConfigError, Problem
from bridge.core.localfiles import CONFIG_LIMIT, CREDENTIAL_LIMIT, FileRefused, read_config, read_credential

pytestmark = pytest.mark.timeout(20)  # a FIFO that blocks would hang here, not fail: bound it


@contextmanager
def reads_little() -> Iterator[None]:
    """Allocates under 8 MiB at its peak: a 2 GiB file or /dev/zero was refused, not read."""
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024**2, peak


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def huge(tmp_path: Path) -> Path:
    """A sparse 2 GiB file: costs nothing on disk, would cost 2 GiB of memory if read."""
    path = tmp_path / "huge.bin"
    with open(path, "wb") as fh:
        fh.truncate(2 * 1024**3)
    return path


def test_a_small_regular_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"SUAB\n")
    assert read_credential(tmp_path / "f") == b"SUAB\n"
    assert read_config(tmp_path / "f") == b"SUAB\n"


@pytest.mark.parametrize("read", [read_config, read_credential])
def test_exactly_the_limit_is_read_one_byte_more_is_refused(tmp_path: Path, read) -> None:
    limit = CONFIG_LIMIT if read is read_config else CREDENTIAL_LIMIT
    (tmp_path / "f").write_bytes(b"x" * limit)
    assert len(read(tmp_path / "f")) == limit
    (tmp_path / "f").write_bytes(b"x" * (limit + 1))
    # the rounded sizes would both read "1 MiB": the exact bytes are shown (F18)
    with pytest.raises(FileRefused, match=r"^it is 1,048,577 bytes, more than the 1,048,576 bytes allowed$"):
        read(tmp_path / "f")


@pytest.mark.parametrize("read", [read_config, read_credential])
def test_a_huge_file_is_refused_before_it_is_read(huge: Path, read) -> None:
    with reads_little(), pytest.raises(FileRefused, match=r"^it is 2 GiB, more than the 1 MiB allowed$"):
        read(huge)


@pytest.mark.parametrize("read", [read_config, read_credential])
def test_a_directory_is_refused(tmp_path: Path, read) -> None:
    with pytest.raises(FileRefused, match=r"^it is a directory$"):
        read(tmp_path)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileRefused, match=r"^No such file or directory$"):
        read_credential(tmp_path / "nope")


@pytest.mark.parametrize("read", [read_config, read_credential])
def test_a_name_with_a_nul_character_is_refused(read) -> None:
    """os.stat would raise ValueError, not OSError (tests/unit/test_config_properties.py found it)."""
    with pytest.raises(FileRefused, match=r"^the file name contains a NUL character$"):
        read("a\x00b")


@pytest.mark.parametrize(
    ("path", "kind"), [("/dev/zero", "character device"), ("/dev/urandom", "character device")]
)
def test_a_credential_file_must_be_a_regular_file(path: str, kind: str) -> None:
    with pytest.raises(FileRefused, match=f"^it is a {kind}, not a regular file$"):
        read_credential(path)


def test_a_fifo_credential_is_refused_without_blocking(fifo: Path) -> None:
    """Nobody writes to the FIFO: opening it for reading would block forever (and ignore SIGTERM)."""
    with pytest.raises(FileRefused, match=r"^it is a FIFO \(named pipe\), not a regular file$"):
        read_credential(fifo)


def test_a_file_swapped_for_a_fifo_after_the_check_does_not_block(
    fifo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The type is checked again on the opened descriptor, and the open itself does not block."""
    (tmp_path / "r").write_text("x")
    regular = os.stat(tmp_path / "r")  # a regular file's stat, returned for the FIFO's path
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: regular if Path(p) == fifo else real_stat(p, *a, **k))
    with pytest.raises(FileRefused, match="FIFO"):
        read_credential(fifo)


def test_a_config_may_come_from_a_pipe() -> None:
    """``run -c <(envsubst < bridge.yaml)``: the config is a pipe, read to its end."""
    r, w = os.pipe()
    try:
        os.write(w, b"input: {}\n")
        os.close(w)
        assert read_config(f"/dev/fd/{r}") == b"input: {}\n"
    finally:
        os.close(r)


def test_an_endless_config_stream_stops_at_the_limit() -> None:
    with reads_little(), pytest.raises(FileRefused, match=r"^it is larger than the 1 MiB allowed$"):
        read_config("/dev/zero")


def test_sizes_are_written_for_people() -> None:
    assert [localfiles.size_text(n) for n in (512, 1536, 1024**2, 50 * 1024**2, 2 * 1024**3)] == [
        "512 bytes", "1.5 KiB", "1 MiB", "50 MiB", "2 GiB",
    ]  # fmt: skip


# --------------------------------------------------------------------------- the config's credential files

BASE = """\
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
# Every credential file field, in a block appended at line 10; each field is on line 12. {p}: the file.
FIELDS = {
    "output.nats_jetstream.auth.nkey_file": "    auth:\n\n      nkey_file: {p}\n",
    "output.nats_jetstream.auth.user_credentials_file": "    auth:\n\n      user_credentials_file: {p}\n",
    "output.nats_jetstream.tls.root_cas_file": "    tls:\n      enabled: true\n      root_cas_file: {p}\n",
    "output.nats_jetstream.tls.client_certs[0].cert_file": "    tls:\n      enabled: true\n      client_certs: [{{cert_file: {p}, key_file: {ok}}}]\n",
    "output.nats_jetstream.tls.client_certs[0].key_file": "    tls:\n      enabled: true\n      client_certs: [{{cert_file: {ok}, key_file: {p}}}]\n",
}


def with_field(field: str, path: Path | str, ok: Path) -> str:
    return BASE + FIELDS[field].format(p=path, ok=ok)


@pytest.fixture
def files(tmp_path: Path, fifo: Path, huge: Path) -> dict[str, tuple[Path | str, str]]:
    (tmp_path / "ok.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    return {
        "dev-zero": ("/dev/zero", "it is a character device, not a regular file"),
        "fifo": (fifo, "it is a FIFO (named pipe), not a regular file"),
        "directory": (tmp_path, "it is a directory"),
        "huge": (huge, "it is 2 GiB, more than the 1 MiB allowed"),
        "missing": (tmp_path / "missing", "No such file or directory"),
    }


@pytest.mark.parametrize("case", ["dev-zero", "fifo", "directory", "huge", "missing"])
@pytest.mark.parametrize("field", list(FIELDS))
def test_every_credential_file_is_checked_when_the_config_loads(
    field: str, case: str, files: dict[str, tuple[Path | str, str]], tmp_path: Path
) -> None:
    path, reason = files[case]
    with reads_little(), pytest.raises(ConfigError) as info:
        parse(with_field(field, path, tmp_path / "ok.pem"), environ={})
    assert info.value.problems == [Problem(field, 12, f"cannot read {str(path)!r}: {reason}")]


def test_the_kafka_inputs_tls_files_are_checked_too(tmp_path: Path) -> None:
    text = BASE.replace(
        "    consumer_group: g\n",
        "    consumer_group: g\n    tls:\n      enabled: true\n      root_cas_file: /dev/zero\n",
    )
    with pytest.raises(ConfigError) as info:
        parse(text, environ={})
    assert info.value.problems == [
        Problem(
            "input.kafka_franz.tls.root_cas_file", 8,
            "cannot read '/dev/zero': it is a character device, not a regular file",
        )
    ]  # fmt: skip


def test_files_of_a_tls_block_that_is_not_enabled_are_not_read() -> None:
    """Redpanda Connect ignores such a block; so does the bridge (it never reads these files)."""
    parse(BASE + "    tls:\n      enabled: false\n      root_cas_file: /dev/zero\n", environ={})


def test_readable_credential_files_pass(tmp_path: Path) -> None:
    (tmp_path / "u.nk").write_text("SU...\n")
    parse(BASE + f"    auth:\n      nkey_file: {tmp_path / 'u.nk'}\n", environ={})


def test_a_config_file_over_the_limit_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with open(path, "wb") as fh:
        fh.write(BASE.encode())
        fh.truncate(50 * 1024**2)
    with reads_little(), pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert [str(p) for p in info.value.problems] == [
        "cannot read config file: it is 50 MiB, more than the 1 MiB allowed"
    ]
