"""Every local file the bridge reads because a config names it, read within bounds.

Owns the one reader for the config file itself and for credential files (``auth.nkey_file``,
``auth.user_credentials_file``, ``tls.root_cas_file``, ``tls.client_certs[].cert_file`` /
``key_file``), so that no path in a config can make the process read without end, block, or
allocate more than a small, fixed amount:

- a **config file** is at most ``CONFIG_LIMIT`` (1 MiB). It may be a pipe (``-c <(envsubst < f)``):
  then it is read up to the limit; a directory is refused.
- a **credential file** must be a regular file of at most ``CREDENTIAL_LIMIT`` (1 MiB). Its type is
  checked with ``os.stat`` before it is opened, so a directory, FIFO, device or socket is refused
  without being opened; it is opened with ``O_NONBLOCK`` and checked again on the open descriptor,
  so a path swapped for a FIFO in between cannot block either.

``FileRefused`` (``bridge.core.errors``) says why, without the path: the caller names the config
field and the path. Pure module: imports neither aiokafka nor nats.
"""

from __future__ import annotations

import os
import stat
from typing import Final

from bridge.core.errors import ConfigError, FileRefused, Problem

__all__ = [
    "CONFIG_LIMIT",
    "CREDENTIAL_LIMIT",
    "FileRefused",
    "over_limit",
    "read_config",
    "read_credential",
    "read_field",
    "size_text",
]

CONFIG_LIMIT: Final = 1024 * 1024
CREDENTIAL_LIMIT: Final = 1024 * 1024
_CHUNK: Final = 64 * 1024


def read_config(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a config file (a regular file or a pipe), at most ``CONFIG_LIMIT``."""
    return _read(path, CONFIG_LIMIT, regular_only=False)


def read_credential(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a credential file: a regular file of at most ``CREDENTIAL_LIMIT``."""
    return _read(path, CREDENTIAL_LIMIT, regular_only=True)


def read_field(path: str, where: str) -> bytes:
    """``read_credential`` for the credential file a config field names: a refusal is a ``ConfigError``
    naming the field (``where``, a dotted path) and the file."""
    try:
        return read_credential(path)
    except FileRefused as exc:
        raise ConfigError([Problem(where, 0, f"cannot read {path!r}: {exc.reason}")]) from exc


def size_text(n: int) -> str:
    """``1048576`` → ``1 MiB``, ``52428800`` → ``50 MiB``, ``1536`` → ``1.5 KiB``."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def over_limit(size: int, limit: int) -> str:
    """``1.5 MiB, more than the 1 MiB allowed``; exact bytes when the rounded sizes would read alike
    (``1,048,577 bytes, more than the 1,048,576 bytes allowed``)."""
    shown, allowed = size_text(size), size_text(limit)
    if shown == allowed:
        shown, allowed = f"{size:,} bytes", f"{limit:,} bytes"
    return f"{shown}, more than the {allowed} allowed"


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "regular file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def _check(st: os.stat_result, limit: int, regular_only: bool) -> None:
    kind = _kind(st.st_mode)
    if kind == "directory":
        raise FileRefused("it is a directory")
    if regular_only and kind != "regular file":
        raise FileRefused(f"it is a {kind}, not a regular file")
    if kind == "regular file" and st.st_size > limit:
        raise FileRefused(f"it is {over_limit(st.st_size, limit)}")


def _read(path: str | os.PathLike[str], limit: int, *, regular_only: bool) -> bytes:
    if "\0" in os.fspath(path):
        raise FileRefused("the file name contains a NUL character")
    try:
        _check(os.stat(path), limit, regular_only)
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | (os.O_NONBLOCK if regular_only else 0)
        fd = os.open(path, flags)
    except OSError as exc:
        raise FileRefused(exc.strerror or type(exc).__name__) from exc
    try:
        _check(os.fstat(fd), limit, regular_only)  # the file opened is the file checked
        chunks: list[bytes] = []
        total = 0
        while total <= limit:  # one byte past the limit tells a file that grew, or a pipe, is too large
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise FileRefused(exc.strerror or type(exc).__name__) from exc
    finally:
        os.close(fd)
    if total > limit:
        raise FileRefused(f"it is larger than the {size_text(limit)} allowed")
    return b"".join(chunks)
