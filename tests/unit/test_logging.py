"""``bridge.ops.log``: JSON off a terminal, console on one; stdlib (aiokafka, nats-py) records through the
same renderer; secrets masked wherever they appear."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog

from bridge.ops import log as log_mod


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("aiokafka", "nats")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def capture(monkeypatch: pytest.MonkeyPatch, stream: io.StringIO | None = None) -> io.StringIO:
    """Point sys.stderr at ``stream`` (inside the test: pytest re-installs its own between phases)."""
    stream = io.StringIO() if stream is None else stream
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


def test_json_lines_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = capture(monkeypatch)
    log_mod.setup("INFO")
    structlog.get_logger("bridge.test").info("committed", partitions=3, offsets={"t/0": 10})
    (event,) = lines(stderr)
    assert event["event"] == "committed"
    assert (event["partitions"], event["offsets"]) == (3, {"t/0": 10})
    assert (event["level"], event["logger"]) == ("info", "bridge.test")
    assert event["timestamp"].endswith("Z")


def test_console_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = capture(monkeypatch, Tty())
    log_mod.setup("INFO")
    structlog.get_logger("bridge.test").info("run_started", mode="continuous")
    out = tty.getvalue()
    assert "run_started" in out
    assert "mode" in out
    assert not out.lstrip().startswith("{")


def test_format_json_forces_json_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = capture(monkeypatch, Tty())
    log_mod.setup("INFO", "json", {"service": "bridge-a"})
    structlog.get_logger("bridge.test").warning("revoke_timeout", seconds=10)
    (event,) = lines(tty)
    assert (event["event"], event["service"], event["level"]) == ("revoke_timeout", "bridge-a", "warning")


def test_logfmt_when_asked_for_on_a_terminal_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """``logger.format: logfmt`` (Redpanda Connect's default): key=value lines, structlog's renderer."""
    for stream in (io.StringIO(), Tty()):
        capture(monkeypatch, stream)
        log_mod.setup("INFO", "logfmt", {"service": "b"})
        structlog.get_logger("bridge.test").info("committed", partitions=3, note="two words")
        (line,) = stream.getvalue().splitlines()
        assert line.startswith("timestamp=")
        assert " level=info logger=bridge.test event=committed " in line
        assert "partitions=3" in line
        assert 'note="two words"' in line
        assert "service=b" in line
        structlog.reset_defaults()


def test_no_timestamp_when_add_timestamp_is_false(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = capture(monkeypatch)
    log_mod.setup("INFO", "json", timestamps=False)
    structlog.get_logger("bridge.test").info("x")
    (event,) = lines(stderr)
    assert "timestamp" not in event


def test_client_library_logs_go_through_the_same_renderer(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = capture(monkeypatch)
    log_mod.setup("DEBUG")
    logging.getLogger("aiokafka.consumer.group_coordinator").warning("Heartbeat failed for group %s", "g1")
    logging.getLogger("nats.aio.client").error("nats: encountered error", exc_info=ValueError("boom"))
    logging.getLogger("aiokafka.conn").info("chatty reconnect detail")  # the clients are held at WARNING
    kafka, nats = lines(stderr)
    assert kafka["event"] == "Heartbeat failed for group g1"
    assert (kafka["logger"], kafka["level"]) == ("aiokafka.consumer.group_coordinator", "warning")
    assert (nats["logger"], nats["level"]) == ("nats.aio.client", "error")
    assert "ValueError: boom" in nats["exception"]


def test_levels_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = capture(monkeypatch)
    log_mod.setup("WARN")
    logger = structlog.get_logger("bridge.test")
    logger.info("quiet")
    logger.warning("loud")
    assert [e["event"] for e in lines(stderr)] == ["loud"]


SECRETS = ["hunter2", "tok-3f9a", "SUAM4NKEYSEED", "eyJhbGciOi.jwt", "sasl-pw", "kpass"]


def test_secrets_are_masked_in_keys_values_messages_and_tracebacks(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = capture(monkeypatch)
    log_mod.setup("DEBUG")
    logger = structlog.get_logger("bridge.test")
    logger.info(
        "connecting", password="hunter2", token="tok-3f9a", user_nkey_seed="SUAM4NKEYSEED",
        user_jwt="eyJhbGciOi.jwt", sasl_plain_password="sasl-pw",
        servers="nats://alice:hunter2@127.0.0.1:4222,nats://bob:kpass@10.0.0.1:4222",
    )  # fmt: skip
    logging.getLogger("nats.aio.client").error(
        "could not connect to %s", "nats://alice:hunter2@127.0.0.1:4222"
    )
    try:
        raise ConnectionError("nats://alice:hunter2@127.0.0.1:4222 refused")
    except ConnectionError:
        logger.exception("connect_failed")
        logging.getLogger("aiokafka").exception("bootstrap failed for kafka://u:kpass@host:9092")
    out = stderr.getvalue()
    for secret in SECRETS:
        assert secret not in out, (secret, out)
    events = lines(stderr)
    assert events[0]["password"] == "***"
    assert events[0]["servers"] == "nats://***@127.0.0.1:4222,nats://***@10.0.0.1:4222"
    assert events[1]["event"] == "could not connect to nats://***@127.0.0.1:4222"
    assert "nats://***@127.0.0.1:4222 refused" in events[2]["exception"]


def test_redact_text_leaves_plain_urls_alone() -> None:
    assert log_mod.redact_text("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
    assert log_mod.redact_text("user@example.com wrote") == "user@example.com wrote"
    assert log_mod.redact_text("tls://tok@h:1, nats://u:p@h:2") == "tls://***@h:1, nats://***@h:2"


def test_console_tracebacks_are_plain_text_and_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = capture(monkeypatch, Tty())
    log_mod.setup("INFO")
    password = "hunter2"  # a local: rich's tracebacks would print it
    try:
        raise ConnectionError(f"nats://alice:{password}@127.0.0.1:4222 refused")
    except ConnectionError:
        structlog.get_logger("bridge.test").exception("connect_failed")
    out = tty.getvalue()
    assert "connect_failed" in out
    assert "ConnectionError: nats://***@127.0.0.1:4222 refused" in out
    assert password not in out


# --------------------------------------------------------------------------- one rule for every URL form


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("nats://alice:pw1@h:4222", "nats://***@h:4222"),
        ("tls://alice:pw1@h:4222", "tls://***@h:4222"),
        ("ws://alice:pw1@h:8080/path", "ws://***@h:8080/path"),
        ("wss://alice:pw1@h", "wss://***@h"),
        ("nats://tok-1@h:4222", "nats://***@h:4222"),
        ("nats://al%40ice:p%40ss%2Fw@h:4222", "nats://***@h:4222"),  # percent-encoded
        ("nats://alice:p@ss@h:4222", "nats://***@h:4222"),  # an unencoded @ in the password
        ("nats://alice:pa/ss@h:4222", "nats://***@h:4222"),  # an unencoded / in the password
        ("alice:pw1@h:4222", "***@h:4222"),  # no scheme
        ("tok-1@h:4222", "***@h:4222"),  # no scheme, token only
        ("nats://a:4222,alice:pw1@b:4222", "nats://a:4222,***@b:4222"),  # next to another URL
        ("alice:pw1@b:4222,nats://a:4222", "***@b:4222,nats://a:4222"),
        ("nats://u:p1@a:1,nats://v:p2@b:2", "nats://***@a:1,nats://***@b:2"),
        ("NATS (alice:pw1@h:4222,nats://x:1) unreachable", "NATS (***@h:4222,nats://x:1) unreachable"),
        ('{"error": "alice:pw1@h:4222"}', '{"error": "***@h:4222"}'),
        ("['alice:pw1@h:4222']", "['***@h:4222']"),
        ("servers=alice:pw1@h:4222", "servers=***@h:4222"),
        # the query string of a URL (F9: "NATS (nats://127.0.0.1:45999?token=sekrit07) unreachable")
        (
            "NATS (nats://127.0.0.1:45999?token=sekrit07) unreachable",
            "NATS (nats://127.0.0.1:45999?***) unreachable",
        ),
        ("nats://h:1?token=t&user=u,nats://h:2", "nats://h:1?***,nats://h:2"),
        ("['nats://h:1?token=t']", "['nats://h:1?***']"),
        ("nats://u:p@h:1/?t=x y", "nats://***@h:1/?*** y"),
        # left alone: no credentials
        ("what? no URL?", "what? no URL?"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("user@example.com wrote", "user@example.com wrote"),
        ("subject ${! @kafka_key } and ${!@k}", "subject ${! @kafka_key } and ${!@k}"),
        ("git@github.com:org/repo", "git@github.com:org/repo"),
        ("at 12:30 user@example.com", "at 12:30 user@example.com"),
    ],
)
def test_redact_text_masks_every_url_form(text: str, masked: str) -> None:
    assert log_mod.redact_text(text) == masked


def test_nested_values_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = capture(monkeypatch)
    log_mod.setup("INFO")
    structlog.get_logger("bridge.test").info(
        "connecting", servers=["alice:pw1@h:1", "nats://bob:pw2@h:2"], opts={"password": "pw3", "n": 1}
    )
    (event,) = lines(stderr)
    assert event["servers"] == ["***@h:1", "nats://***@h:2"]
    assert event["opts"] == {"password": "***", "n": 1}


def test_the_output_guard_masks_whole_lines_however_they_are_written() -> None:
    target = io.StringIO()
    out = log_mod.RedactingWriter(target)
    out.write("error: nats://alice:p")  # a URL split between two writes
    assert target.getvalue() == ""  # a partial line waits
    out.write("w1@h:4222 refused\nnext: bob:pw2@h:1")
    assert target.getvalue() == "error: nats://***@h:4222 refused\n"
    out.flush()
    assert target.getvalue() == "error: nats://***@h:4222 refused\nnext: ***@h:1"
    print("FAILED: NATS (tok-1@h:4222)", file=out)
    assert target.getvalue().endswith("FAILED: NATS (***@h:4222)\n")
    out.write("progress 10%\rprogress 20%\r")  # progress bars end lines with \r
    assert target.getvalue().endswith("progress 10%\rprogress 20%\r")


def test_guard_output_wraps_stdout_and_stderr_once(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = Tty(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    log_mod.guard_output()
    log_mod.guard_output()
    assert isinstance(sys.stdout, log_mod.RedactingWriter)
    assert sys.stdout.target is out  # not wrapped twice
    assert sys.stdout.isatty()  # rich and the logger still see a terminal
    assert not sys.stderr.isatty()
    print("nats://alice:pw1@h:1")
    sys.stderr.write("alice:pw1@h:1\n")
    assert (out.getvalue(), err.getvalue()) == ("nats://***@h:1\n", "***@h:1\n")


def test_lines_go_to_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the backfill's progress line is drawn, rich swaps ``sys.stderr`` for a proxy that prints
    above the bar: a log line must reach that proxy, not the stream that was there at setup."""
    capture(monkeypatch)
    log_mod.setup("INFO")
    later = io.StringIO()
    monkeypatch.setattr(sys, "stderr", later)
    structlog.get_logger("bridge.test").info("after_the_swap")
    assert [e["event"] for e in lines(later)] == ["after_the_swap"]


def test_a_coordinator_not_yet_available_is_a_warning_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka logs at ERROR the FindCoordinator answer every fresh cluster gives first (and retries it)."""
    out = capture(monkeypatch)
    log_mod.setup("INFO")
    logging.getLogger("aiokafka.consumer.group_coordinator").error(
        "Group Coordinator Request failed: %s", "[Error 15] GroupCoordinatorNotAvailableError"
    )
    logging.getLogger("aiokafka.consumer.group_coordinator").error("Something else failed")
    assert [(e["level"], e["event"][:30]) for e in lines(out)] == [
        ("warning", "Group Coordinator Request fail"),
        ("error", "Something else failed"),
    ]
