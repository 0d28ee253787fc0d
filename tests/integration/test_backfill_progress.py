"""A backfill on a terminal (a pseudo-terminal here, through the real CLI) shows its progress line: the
pipeline's phase from ``starting`` to ``stopped``, the count against the end offsets, and a rate that
leaves out the wait to join the group (``tests/unit/test_progress.py`` has the arithmetic)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import threading
from pathlib import Path

import pytest

from tests.conftest import Kafka
from tests.support import (
    CHECKOUT,
    bridge_cmd,
    create_stream,
    create_topic,
    produce,
    sample_records,
    write_config,
)

pytestmark = pytest.mark.integration

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LINE = re.compile(r"backfill (\w+)\s.*?([\d,]+)/([\d,]+)\s+(\d+)%\s+([\d,]+|-) rec/s")
ORDER = ["starting", "assigned", "draining", "stopped"]
PHASE = re.compile(r"backfill (starting|assigned|draining|stopped) ")


def on_a_terminal(*args: str, timeout: float = 180) -> tuple[int, str, str]:
    """Run the CLI with stderr on a 160-column pseudo-terminal: (exit code, stdout, the terminal's text)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160"}
    try:
        proc = subprocess.run(bridge_cmd(*args), stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                              cwd=CHECKOUT, env=env, timeout=timeout, text=True)  # fmt: skip
    finally:
        os.close(slave)
        reader.join(timeout=10)
        os.close(master)
    return proc.returncode, proc.stdout, ANSI.sub("", b"".join(chunks).decode(errors="replace"))


async def test_backfill_progress_shows_the_phase_and_a_rate_without_the_wait(
    kafka: Kafka, nats_url: str, names: dict, workdir: Path
) -> None:
    topic, stream, group, prefix = names["topic"], names["stream"], names["group"], names["prefix"]
    await create_topic(kafka.bootstrap, topic, 4)
    await create_stream(nats_url, stream, [f"{prefix}.>"])
    records = sample_records(4, 5000)
    await produce(kafka.bootstrap, topic, records)
    cfg = write_config(workdir / "c.yaml", brokers=kafka.bootstrap, topics=[topic], group=group, nats_url=nats_url,
                       subject=f"{prefix}.p", top={"logger": {"level": "ERROR", "format": "json"}})  # fmt: skip
    code, stdout, screen = on_a_terminal("backfill", "-c", str(cfg), "--from", "earliest")
    assert code == 0, stdout + screen[-3000:]
    lines = [m.groups() for m in LINE.finditer(screen.replace("\r", "\n"))]
    assert lines, screen[-3000:]
    phases = PHASE.findall(screen)
    assert phases[0] == "starting", phases
    assert phases[-1] == "stopped", phases
    assert [ORDER.index(p) for p in phases] == sorted(ORDER.index(p) for p in phases)  # never back
    _, done, total, percent, shown_rate = lines[-1]
    assert (done, total, percent) == ("20,000", "20,000", "100")
    elapsed = float(re.search(r"backfill: 20,000 records in ([\d.]+)s", stdout).group(1))  # type: ignore[union-attr]
    # The summary's time (rounded to 0.1 s) includes connecting and listing the partitions; the rate does not.
    assert int(shown_rate.replace(",", "")) > 20000 / (elapsed + 0.05)
