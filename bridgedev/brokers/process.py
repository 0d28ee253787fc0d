"""The broker *process*: start, readiness, stop by pid, and an ``atexit`` hook that stops what is left.

Owns ``Broker``, the base of every local broker (``NatsServer``, ``ApacheKafka``, ``Tansu``): a temporary
directory for its config and logs, a process started in its own session (a Ctrl-C in the parent's
terminal does not reach it), readiness polled until a deadline (a broker that does not come up is
killed and its logs quoted), ``stop`` (SIGTERM, then SIGKILL), ``kill``, ``pause`` / ``resume``
(SIGSTOP / SIGCONT: a hung broker), ``restart`` on the same ports and data, always by pid, never by
name. Every instance is registered with an ``atexit`` hook that stops whatever is still running and
removes the temporary directories created here; directories a caller passed in are never removed.
Set ``KJB_KEEP_DIRS=1`` to keep them (configs and broker logs) for inspection. Also ``free_port``:
free loopback ports chosen up front, so configs can be written before a broker starts.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, NoReturn, Self

import structlog

__all__ = ["HOST", "Broker", "MonitorError", "free_port"]

log = structlog.get_logger("bridgedev.brokers")

HOST = "127.0.0.1"
_LOG_TAIL_LINES = 20


# ---------------------------------------------------------------------------------------------------
# ports and small helpers


_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A free TCP port on 127.0.0.1, chosen by binding port 0; never the same one twice per process."""
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port: int = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("could not find a free port on 127.0.0.1")


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return "(no log file)"
    text = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(text) if text else "(empty)"


def _error_excerpt(path: Path, markers: Sequence[str], first: int = 3, context: int = 2) -> str:
    """The first ``first`` lines containing one of ``markers``, each with ``context`` lines after it
    (the exception message of a stack trace): the cause is often far above a log's last lines."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    picked: list[str] = []
    found = 0
    for i, line in enumerate(lines):
        if found < first and any(m in line for m in markers):
            picked.extend(lines[i : i + 1 + context])
            found += 1
    return "\n".join(picked)


def _keep_dirs() -> bool:
    return os.environ.get("KJB_KEEP_DIRS", "").lower() not in ("", "0", "false", "no")


class MonitorError(RuntimeError):
    """A nats-server monitoring endpoint answered with an HTTP error status."""


# ---------------------------------------------------------------------------------------------------
# process management shared by every broker


_registry: set[Broker] = set()
_registry_lock = threading.Lock()


class Broker:
    """One broker process plus the temporary directory holding its config and logs."""

    kind: ClassVar[str] = "broker"
    #: seconds between SIGTERM and SIGKILL in ``stop()`` when the caller does not say
    default_stop_timeout: ClassVar[float] = 10.0
    #: substrings of log lines worth quoting when the broker does not come up
    error_markers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, prefix: str) -> None:
        self._work_dir = Path(tempfile.mkdtemp(prefix=f"kjb-{prefix}-"))
        self._owned_dirs: list[Path] = [self._work_dir]
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._last_returncode: int | None = None
        with _registry_lock:
            _registry.add(self)

    # -- to be provided by subclasses

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write configs, format storage, ... before the process is spawned."""

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _log_files(self) -> list[Path]:
        return [self.stdout_path, self.stderr_path]

    def _env(self) -> dict[str, str] | None:
        return None

    def _describe(self) -> dict[str, Any]:
        return {}

    # -- public surface

    @property
    def work_dir(self) -> Path:
        """The temporary directory with this broker's config files and logs."""
        return self._work_dir

    @property
    def stdout_path(self) -> Path:
        return self._work_dir / "stdout.log"

    @property
    def stderr_path(self) -> Path:
        return self._work_dir / "stderr.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit code of the last process once it has exited (negative: killed by that signal)."""
        if self._proc is not None:
            return self._proc.poll()
        return self._last_returncode

    def start(self, timeout: float = 15) -> Self:
        if self.running:
            raise RuntimeError(f"{self.kind} is already running (pid {self.pid})")
        began = time.monotonic()
        self._launch()
        self._wait_ready(began + timeout, timeout)
        log.info(
            f"{self.kind}.started",
            pid=self.pid,
            seconds=round(time.monotonic() - began, 2),
            **self._describe(),
        )
        return self

    def stop(self, timeout: float | None = None, *, cleanup: bool = True) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; wait for the exit. Removes the temporary
        directories unless ``cleanup=False`` (``restart()`` keeps them)."""
        grace = self.default_stop_timeout if timeout is None else timeout
        if self.running:
            self._terminate()
            self._wait_exit(grace)
        self._reap()
        if cleanup:
            self._cleanup()

    def kill(self) -> None:
        """SIGKILL and wait for the exit. Keeps the data (``start()`` again to bring it back)."""
        if self.running:
            self._send(signal.SIGKILL)
            self._wait_exit(10)
            log.info(f"{self.kind}.killed", pid=self.pid, **self._describe())
        self._reap()

    def pause(self) -> None:
        """SIGSTOP: the process stays alive but answers nothing (a hung broker)."""
        if not self.running:
            raise RuntimeError(f"{self.kind} is not running")
        self._send(signal.SIGSTOP)
        self._paused = True
        log.info(f"{self.kind}.paused", pid=self.pid)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if not self.running:
            raise RuntimeError(f"{self.kind} is not running")
        self._send(signal.SIGCONT)
        self._paused = False
        log.info(f"{self.kind}.resumed", pid=self.pid)

    def restart(self, timeout: float | None = None) -> Self:
        """Graceful stop and start again on the same ports with the same data directories."""
        self.stop(cleanup=False)
        if timeout is None:
            return self.start()
        return self.start(timeout=timeout)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The first error lines and the last lines of each of this broker's log files (for failure
        messages)."""
        parts = []
        for path in self._log_files():
            if path.exists() and path.stat().st_size > 0:
                errors = _error_excerpt(path, self.error_markers) if self.error_markers else ""
                if errors:
                    parts.append(f"--- first errors in {path} ---\n{errors}")
                parts.append(f"--- last {lines} lines of {path} ---\n{_tail(path, lines)}")
        return "\n".join(parts) if parts else f"(no output in {self._work_dir})"

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals

    def _launch(self) -> None:
        """Prepare and spawn, without waiting for readiness."""
        self._reap()
        self._work_dir.mkdir(parents=True, exist_ok=True)  # again, after a stop() removed it
        self._prepare()
        self._spawn()

    def _spawn(self) -> None:
        cmd = self._command()
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self._work_dir,
                env=self._env(),
                start_new_session=True,
            )
        self._paused = False
        with _registry_lock:
            _registry.add(self)
        log.debug(f"{self.kind}.spawned", pid=self._proc.pid, cmd=cmd)

    def _send(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)  # by pid; never by name

    def _terminate(self) -> None:
        self._send(signal.SIGTERM)
        if self._paused:  # a stopped process only sees SIGTERM once continued
            self._send(signal.SIGCONT)
            self._paused = False

    def _wait_exit(self, grace: float) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning(f"{self.kind}.stop_timeout", pid=proc.pid, grace=grace)
            self._send(signal.SIGKILL)
            proc.wait(timeout=30)

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._last_returncode = self._proc.returncode
            self._proc = None
            self._exited(self._last_returncode)

    def _exited(self, returncode: int) -> None:
        """Called once per process, after it has exited and been reaped."""

    def _cleanup(self) -> None:
        with _registry_lock:
            _registry.discard(self)
        existing = [d for d in self._owned_dirs if d.exists()]
        if existing and _keep_dirs():
            log.info(f"{self.kind}.dirs_kept", dirs=[str(d) for d in existing])
            return
        for path in existing:
            shutil.rmtree(path, ignore_errors=True)

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        delay = 0.02
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                self._fail(f"{self.kind} exited before it became ready")
            try:
                if self._is_ready():
                    return
            except (OSError, ValueError, struct.error, http.client.HTTPException, MonitorError):
                pass
            if time.monotonic() >= deadline:
                self._fail(f"{self.kind} did not become ready within {timeout:g} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def _fail(self, reason: str) -> NoReturn:
        """Kill a process that will not come up and raise with its exit code and log tail. The
        temporary directory stays until ``stop()`` (or exit) so it can be inspected."""
        code = self.returncode
        if self.running:
            self._send(signal.SIGKILL)
            self._wait_exit(10)
            self._reap()
            code_text = "killed after the deadline"
        else:
            self._reap()
            code_text = f"exit code {code}"
        log.error(f"{self.kind}.start_failed", reason=reason, exit=code_text, **self._describe())
        raise RuntimeError(f"{reason} ({code_text})\n{self.log_tail()}")


def _stop_all_at_exit() -> None:
    with _registry_lock:
        brokers = list(_registry)
    for broker in brokers:  # SIGTERM everything first, then wait: parallel shutdowns
        with contextlib.suppress(Exception):
            broker._terminate()
    for broker in brokers:
        with contextlib.suppress(Exception):
            broker.stop(timeout=5)


atexit.register(_stop_all_at_exit)
